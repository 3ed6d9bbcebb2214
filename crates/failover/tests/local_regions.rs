//! `deploy/local-regions/`: up.sh brings the two-region topology up (two Postgres clusters
//! with streaming replication, three etcd members, BIND), check.sh finds every component
//! answering, up.sh again changes nothing, and down.sh leaves no process and no state
//! behind. Runs on its own port range and state directory, without the tether processes
//! (`WITH_TETHER=0`: this crate cannot build the binary; the end-to-end failover test in
//! `tests/` runs the whole topology).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers may panic: a panic is a test failure"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local-regions")
}

struct Topology {
    state: tempfile::TempDir,
    port_base: u16,
}

impl Topology {
    fn run(&self, script: &str, extra_env: &[(&str, &str)]) -> Output {
        Command::new("bash")
            .arg(scripts().join(script))
            .env("TETHER_REGIONS_DIR", self.state_dir())
            .env("PORT_BASE", self.port_base.to_string())
            .env("WITH_TETHER", "0")
            .envs(extra_env.iter().copied())
            .output()
            .unwrap()
    }

    fn state_dir(&self) -> PathBuf {
        self.state.path().join("regions")
    }

    /// Processes whose command line names our state directory.
    fn leftovers(&self) -> Vec<String> {
        let needle = self.state_dir().display().to_string();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(&needle))
            .collect()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Whatever happened, leave nothing running.
        let _ = self.run("down.sh", &[]);
    }
}

fn ok(output: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn up_check_and_down_leave_nothing_behind() {
    // A port range of its own, away from the default (25000) and the ephemeral range.
    let port_base = 20_000 + (std::process::id() % 12) as u16 * 1000;
    let topology = Topology {
        state: tempfile::tempdir().unwrap(),
        port_base,
    };

    ok(&topology.run("up.sh", &[("SYNC", "1")]), "up.sh");
    let status = ok(&topology.run("check.sh", &[]), "check.sh");
    for component in [
        "postgres A 127.0.0.10",
        "postgres B 127.0.0.20",
        "streaming sync",
        "etcd a 127.0.0.10",
        "etcd b 127.0.0.20",
        "etcd witness 127.0.0.30",
        "dns api.tether.test -> 127.0.0.11 127.0.0.12",
    ] {
        assert!(status.contains(component), "{component}:\n{status}");
    }
    let env = std::fs::read_to_string(topology.state_dir().join("env")).unwrap();
    assert!(env.contains("DNS_TSIG_SECRET="), "{env}");

    // Idempotent: a second up starts nothing new.
    let again = ok(&topology.run("up.sh", &[]), "up.sh again");
    assert!(!again.contains("started"), "{again}");
    assert!(again.contains("already running"), "{again}");
    assert!(!topology.leftovers().is_empty());

    let down = ok(&topology.run("down.sh", &[]), "down.sh");
    assert!(down.contains("removed"), "{down}");
    assert_eq!(topology.leftovers(), Vec::<String>::new());
    assert!(!topology.state_dir().exists());
    // And again: nothing to do.
    ok(&topology.run("down.sh", &[]), "down.sh again");
    // check.sh says so.
    assert!(!topology.run("check.sh", &[]).status.success());
}

#[test]
fn up_refuses_a_directory_that_is_not_its_own() {
    let topology = Topology {
        state: tempfile::tempdir().unwrap(),
        port_base: 20_000,
    };
    std::fs::create_dir_all(topology.state_dir()).unwrap();
    std::fs::write(topology.state_dir().join("precious"), "keep me").unwrap();
    let up = topology.run("up.sh", &[]);
    assert!(!up.status.success());
    assert!(String::from_utf8_lossy(&up.stderr).contains("not ours"));
    // down.sh (also run on drop) must not remove it either.
    ok(&topology.run("down.sh", &[]), "down.sh");
    assert!(topology.state_dir().join("precious").exists());
}
