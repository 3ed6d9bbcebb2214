//! Regional failover end to end, on the whole `deploy/local-regions/` topology (two Postgres
//! clusters, three etcd members, BIND, the mock backend, four `tether serve` replicas and
//! `tether probe`), with short intervals:
//! - the drill (`drill.sh`: client load through the DNS name, region A killed at a random
//!   moment) in async and in sync mode: every acknowledged operation terminal, at most one
//!   writable region at any sample, none lost in sync mode. Timings are printed, never
//!   asserted;
//! - a partition: region A cut off from etcd and from the prober by proxies the test
//!   cuts, while it keeps running: A fences itself before B is promoted, and two regions are
//!   never writable at once.
//!
//! Each test has its own state directory and port range, and runs down.sh whatever happens.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tether_failover::testing::TcpProxy;

use crate::support::BIN;

/// Short failover timings: a lease of 3 s, a probe every second (2 failures over 1 s).
const FAST: &[(&str, &str)] = &[
    ("LEASE_TTL_SECS", "3"),
    ("PROBE_INTERVAL_SECS", "1"),
    ("PROBE_TIMEOUT_MS", "1000"),
    ("PROBE_FAILURES", "2"),
    ("PROBE_MIN_DOWN_WINDOW_SECS", "1"),
    ("RECORD_TTL_SECS", "1"),
];

/// The binary under test: `TETHER_BIN` when set (a copy that a concurrent build cannot
/// replace during the minutes these tests run), else the one cargo built.
fn binary() -> String {
    std::env::var("TETHER_BIN").unwrap_or_else(|_| BIN.to_string())
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local-regions")
}

struct Topology {
    dir: tempfile::TempDir,
    port_base: u16,
}

impl Topology {
    /// A topology on a port range of its own (`slot` tells the tests of this file apart,
    /// the process id concurrent runs): below the ephemeral range, away from the default
    /// (25000) and from the infrastructure test's (20000–31000).
    fn new(slot: u16) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            port_base: 10_000 + slot * 1000 + (std::process::id() % 3) as u16 * 3000,
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("regions")
    }

    async fn run(&self, script: &str, env: &[(&str, String)], args: &[&str]) -> Output {
        tokio::process::Command::new("bash")
            .arg(scripts().join(script))
            .args(args)
            .env("TETHER_REGIONS_DIR", self.state())
            .env("PORT_BASE", self.port_base.to_string())
            .env("TETHER_BIN", binary())
            .envs(FAST.iter().map(|(k, v)| (*k, *v)))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .kill_on_drop(true)
            .output()
            .await
            .unwrap()
    }

    fn port(&self, offset: u16) -> u16 {
        self.port_base + offset
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Whatever happened, leave nothing running.
        let _ = std::process::Command::new("bash")
            .arg(scripts().join("down.sh"))
            .env("TETHER_REGIONS_DIR", self.state())
            .env("PORT_BASE", self.port_base.to_string())
            .output();
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

/// The number before `label` in `line` (`"lost 0 acknowledged"`, "lost" → 0).
fn number_after(line: &str, label: &str) -> usize {
    line.split(label)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("no number after {label:?} in {line:?}"))
}

async fn drill(sync: bool) {
    let topology = Topology::new(u16::from(sync));
    let sync_env = [("SYNC", if sync { "1" } else { "0" }.to_string())];
    let report = ok(
        &topology
            .run(
                "drill.sh",
                &sync_env,
                &[
                    "--clients",
                    "2",
                    "--kill-after-min-secs",
                    "2",
                    "--kill-after-max-secs",
                    "6",
                    "--after-recovery-secs",
                    "2",
                    "--recovery-timeout-secs",
                    "90",
                ],
            )
            .await,
        "drill.sh",
    );
    // The report, for the record (timings are not asserted).
    println!("{report}");
    let last = report.lines().last().unwrap();
    assert!(last.starts_with("RTO "), "{report}");
    assert!(!last.starts_with("RTO - s"), "no recovery:\n{report}");
    assert_eq!(number_after(last, "max writable regions"), 1, "{report}");
    if sync {
        assert_eq!(number_after(last, "lost"), 0, "{report}");
    }
    let terminal = report
        .lines()
        .find(|l| l.starts_with("operations terminal"))
        .unwrap();
    assert_eq!(number_after(terminal, "not terminal"), 0, "{report}");
    assert!(
        number_after(terminal, "operations terminal") > 0,
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_drill_recovers_region_a_loss_in_async_mode() {
    drill(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_drill_loses_no_acknowledged_write_in_sync_mode() {
    drill(true).await;
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Whether any of `replicas` says its role is active (its region leads).
async fn active(http: &reqwest::Client, replicas: &[String]) -> bool {
    for base in replicas {
        if let Ok(reply) = http.get(format!("{base}/readyz")).send().await
            && let Ok(body) = reply.json::<Value>().await
            && body["role"] == "active"
        {
            return true;
        }
    }
    false
}

/// The wall-clock time the prober entered `phase`, from its metrics.
async fn phase_entered(http: &reqwest::Client, metrics: &str, phase: &str) -> Option<f64> {
    let text = http.get(metrics).send().await.ok()?.text().await.ok()?;
    let prefix = format!("tether_failover_phase_entered_seconds{{phase=\"{phase}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partitioned_region_fences_itself_before_the_standby_is_promoted() {
    let topology = Topology::new(2);
    let etcd_port = topology.port(379);
    let tether_port = topology.port(80);
    // Region A's links to the others, each through a proxy the test cuts: its replicas to
    // every etcd member, the prober to its replicas and to its database.
    let mut proxies = Vec::new();
    for member in ["127.0.0.10", "127.0.0.20", "127.0.0.30"] {
        proxies.push(
            TcpProxy::start(&format!("{member}:{etcd_port}"))
                .await
                .unwrap(),
        );
    }
    let etcd: Vec<String> = proxies.iter().map(TcpProxy::url).collect();
    let a_direct = [
        format!("http://127.0.0.11:{tether_port}"),
        format!("http://127.0.0.12:{tether_port}"),
    ];
    let b_direct = [
        format!("http://127.0.0.21:{tether_port}"),
        format!("http://127.0.0.22:{tether_port}"),
    ];
    let mut probed = Vec::new();
    for addr in ["127.0.0.11", "127.0.0.12"] {
        let proxy = TcpProxy::start(&format!("{addr}:{tether_port}"))
            .await
            .unwrap();
        probed.push(proxy.url());
        proxies.push(proxy);
    }
    let db = TcpProxy::start(&format!("127.0.0.10:{}", topology.port(432)))
        .await
        .unwrap();
    let primary = format!("postgres://postgres@{}/tether", db.addr());
    proxies.push(db);

    ok(
        &topology
            .run(
                "up.sh",
                &[
                    ("A_ETCD_ENDPOINTS", etcd.join(",")),
                    ("PROBE_ACTIVE_URLS", probed.join(",")),
                    ("PROBE_PRIMARY_DATABASE_URL", primary),
                ],
                &[],
            )
            .await,
        "up.sh",
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    tether_test_utils::eventually(
        Duration::from_secs(60),
        Duration::from_millis(100),
        async || {
            if active(&http, &a_direct).await {
                Ok(())
            } else {
                Err("region a is not active".to_string())
            }
        },
    )
    .await;
    let metrics = format!("http://127.0.0.30:{}/metrics", topology.port(90));

    // Cut A off, then watch both regions until B is active and DNS switched.
    let cut_at = unix_now();
    for proxy in &mut proxies {
        proxy.cut().await;
    }
    let mut last_a_active = None;
    let mut first_b_active = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let (a, b) = tokio::join!(active(&http, &a_direct), active(&http, &b_direct));
        let now = unix_now();
        assert!(!(a && b), "both regions writable at {now}");
        if a {
            last_a_active = Some(now);
        }
        if b && first_b_active.is_none() {
            first_b_active = Some(now);
        }
        if first_b_active.is_some() && phase_entered(&http, &metrics, "done").await.is_some() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let log =
                std::fs::read_to_string(topology.state().join("probe.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "no failover within 90 s of the cut (b active: {first_b_active:?}); the prober's log ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let promoted = phase_entered(&http, &metrics, "promoting").await.unwrap();
    let fenced = last_a_active.unwrap_or(cut_at);
    println!(
        "cut at 0 s; A last seen active at {:.2} s; B promoted at {:.2} s; B active at {:.2} s",
        fenced - cut_at,
        promoted - cut_at,
        first_b_active.unwrap() - cut_at
    );
    assert!(
        fenced < promoted,
        "region a was still active at {fenced}, after b's promotion at {promoted}"
    );
    // A stays fenced: its database is still a primary, but it cannot confirm a lease.
    assert!(!active(&http, &a_direct).await);
}
