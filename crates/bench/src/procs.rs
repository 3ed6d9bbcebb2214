//! Child processes (the servers, wrk, perf) and their CPU time.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Clock ticks per second of `/proc/<pid>/stat` times (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
const CLK_TCK: f64 = 100.0;

/// A server the bench started; killed when dropped.
pub struct Server {
    pub url: String,
    pub pid: u32,
    child: Child,
}

impl Server {
    /// Starts `command` with stderr to `log` and waits (60 s at most) for the stdout line
    /// `<announce>http://ADDR`.
    pub async fn start(mut command: Command, announce: &str, log: &Path) -> anyhow::Result<Self> {
        let stderr = std::fs::File::create(log)
            .with_context(|| format!("create the log {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true);
        let mut child = command.spawn().context("start a server")?;
        let pid = child.id().context("a started child has a pid")?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        let mut lines = BufReader::new(stdout).lines();
        let found = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix(announce) {
                    return Some(url.trim().to_string());
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        let Some(url) = found else {
            let _ = child.start_kill();
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(30).collect();
            bail!(
                "the server did not announce '{announce}…'; end of {}:\n{}",
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { url, pid, child })
    }

    /// Stops the server (SIGKILL) and reaps it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// CPU seconds (user + system) a process has used so far, or 0 when it is gone.
pub fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name (field 2) may hold spaces; fields after it are plain numbers.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / CLK_TCK
}

/// CPU seconds a process's live threads have run, at nanosecond resolution (the sum of
/// `/proc/<pid>/task/*/schedstat`), for short windows where `cpu_secs`'s 10 ms ticks are too
/// coarse. Threads that exited in the window are missed (Tether's runtime keeps its workers).
pub fn cpu_secs_fine(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let mut ns = 0u64;
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        ns += text
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0);
    }
    ns as f64 / 1e9
}

/// `cpu_secs_fine` of a set of processes.
pub fn cpu_secs_fine_of(pids: &[u32]) -> f64 {
    pids.iter().map(|&p| cpu_secs_fine(p)).sum()
}

/// A `perf record` attached to one process, stopped (SIGINT, so it writes its file) by `stop`.
pub struct Perf {
    child: Child,
}

impl Perf {
    pub fn start(pid: u32, out: &Path) -> anyhow::Result<Self> {
        let log = std::fs::File::create(out.with_extension("log"))?;
        let child = Command::new("perf")
            .args(["record", "-F", "499", "--call-graph", "dwarf,32768", "-p"])
            .arg(pid.to_string())
            .arg("-o")
            .arg(out)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .context("start perf record (is linux-perf installed?)")?;
        Ok(Self { child })
    }

    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(120), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
