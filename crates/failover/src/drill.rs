//! The failover drill (`tether drill`): a bounded client load through the service's DNS
//! name, region A killed at a random moment, and a report of what failover cost.
//!
//! - **Load**: `clients` tasks each create connections (`PUT`, a secret-auth connection with
//!   a unique name) one after the other through `http://<service name>:<port>`, resolving
//!   the name at the DNS server (as a client would, caching an answer for `dns_cache`). A
//!   create is *acknowledged* when the service answered it with a success status.
//! - **Kill**: `kill` (a shell command) runs once, at a random moment in `kill_window`.
//! - **Recovery**: the first acknowledged create sent after the kill (all times are
//!   measured from the kill's start; the kill itself takes a moment). The load goes on for
//!   `after_recovery`, then stops. Everything is bounded by `recovery_timeout`.
//! - **Audit**: every acknowledged connection is read back through the name (present or
//!   lost), and every acknowledged operation is followed to a terminal status (bounded).
//! - **Writable regions**: all along, every `sample_every`, each replica's `/readyz` is
//!   read; a region counts as writable at a sample when one of its replicas says it is (see
//!   [`replica_writable`]). The report gives the most seen at once.
//! - **Timings** come from the prober's `/metrics` (the wall-clock time each health and
//!   phase was entered), set against the kill.
//!
//! The last line of the report is exactly
//! `RTO <seconds> s, lost <n> acknowledged, max writable regions <k>`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::dns::{DnsName, DnsProvider};

/// Errors that stop a drill.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// A setting is unusable.
    #[error("invalid drill setting: {0}")]
    Config(String),
    /// No token could be had before the load.
    #[error("could not get a token: {0}")]
    Token(String),
    /// The kill command could not be run or failed.
    #[error("the kill command failed: {0}")]
    Kill(String),
}

/// What the drill needs.
#[derive(Debug, Clone)]
pub struct DrillConfig {
    /// The service's DNS name.
    pub service_name: DnsName,
    /// The port the replicas listen on.
    pub port: u16,
    /// How long a client reuses a DNS answer (the record TTL a real client honours).
    pub dns_cache: Duration,
    /// The OAuth2 token endpoint (client credentials).
    pub token_url: String,
    /// The client id.
    pub client_id: String,
    /// Its secret.
    pub client_secret: SecretString,
    /// The source of the connections created.
    pub source_id: String,
    /// Their target.
    pub target_id: String,
    /// Each region's replicas (base URLs), for the writable-regions samples.
    pub regions: BTreeMap<String, Vec<String>>,
    /// The prober's `/metrics` URL (timings), if any.
    pub prober_metrics: Option<String>,
    /// The command that kills region A (`sh -c`).
    pub kill: String,
    /// Concurrent clients (1–64).
    pub clients: u32,
    /// The kill comes at a random moment in this window after the load starts.
    pub kill_window: (Duration, Duration),
    /// The load goes on this long after the first acknowledged write after the kill.
    pub after_recovery: Duration,
    /// Give up waiting for recovery after this long from the kill.
    pub recovery_timeout: Duration,
    /// One request's bound.
    pub request_timeout: Duration,
    /// Writable-region sampling period.
    pub sample_every: Duration,
}

/// One acknowledged create.
#[derive(Debug, Clone)]
struct Acked {
    name: String,
    sent: SystemTime,
    at: SystemTime,
    operation: Option<String>,
}

/// The drill's findings.
#[derive(Debug, Clone)]
pub struct DrillReport {
    /// Seconds from the kill to the active region seen down.
    pub detection: Option<f64>,
    /// …to the end of the fence wait.
    pub fencing: Option<f64>,
    /// …to the standby promoted.
    pub promotion: Option<f64>,
    /// …to the DNS record switched.
    pub dns: Option<f64>,
    /// Seconds from the kill to the first acknowledged write after it (None: no recovery).
    pub rto: Option<f64>,
    /// Acknowledged before the kill.
    pub acked_before: usize,
    /// Present after failover, of those acknowledged before the kill.
    pub present_before: usize,
    /// Acknowledged in total.
    pub acked_total: usize,
    /// Present after failover, of all acknowledged.
    pub present_total: usize,
    /// Acknowledged operations that reached a terminal status.
    pub terminal: usize,
    /// Acknowledged operations not terminal within the audit's bound.
    pub not_terminal: usize,
    /// Requests that failed (not acknowledged).
    pub failed_requests: usize,
    /// The most regions writable at one sample.
    pub max_writable: usize,
    /// Seconds into the load when the kill came.
    pub kill_at: f64,
}

impl DrillReport {
    /// Acknowledged writes missing after failover.
    pub fn lost(&self) -> usize {
        self.acked_total - self.present_total
    }

    /// The report's lines; the last one is the summary line.
    pub fn lines(&self) -> Vec<String> {
        let t = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |s| format!("{s:.1} s"));
        vec![
            format!("kill at +{:.1} s into the load", self.kill_at),
            format!("detection  {} (active region down)", t(self.detection)),
            format!("fencing    {} (fence wait over)", t(self.fencing)),
            format!("promotion  {} (standby promoted)", t(self.promotion)),
            format!("dns        {} (record switched)", t(self.dns)),
            format!(
                "total      {} (first acknowledged write after the kill)",
                t(self.rto)
            ),
            format!(
                "acknowledged before the kill {}, present after failover {}",
                self.acked_before, self.present_before
            ),
            format!(
                "acknowledged in total {}, present {}, failed requests {}",
                self.acked_total, self.present_total, self.failed_requests
            ),
            format!(
                "operations terminal {}, not terminal {}",
                self.terminal, self.not_terminal
            ),
            format!(
                "RTO {} s, lost {} acknowledged, max writable regions {}",
                self.rto
                    .map_or_else(|| "-".to_string(), |s| format!("{s:.1}")),
                self.lost(),
                self.max_writable
            ),
        ]
    }
}

/// Whether a replica's `/readyz` answer says it accepts writes: its `role` is `active` (its
/// region leads and it holds a write epoch), ready or not — a conservative count: an active
/// replica whose database is failing still counts. Passive (standby or fenced) replicas
/// answer writes 503.
pub fn replica_writable(body: &Value) -> bool {
    body["role"] == "active"
}

/// Resolves the service name at the DNS server, caching an answer for a while (like a
/// stub resolver honouring the record's TTL). Every request opens its own connection (no
/// pool), so a client follows DNS as soon as its cached answer expires.
struct DnsResolver {
    dns: Arc<dyn DnsProvider>,
    name: DnsName,
    cache: Duration,
    cached: Cached,
}

/// The last answer and when it came.
type Cached = Arc<Mutex<Option<(Vec<SocketAddr>, Instant)>>>;

fn lock(cached: &Cached) -> std::sync::MutexGuard<'_, Option<(Vec<SocketAddr>, Instant)>> {
    cached
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl reqwest::dns::Resolve for DnsResolver {
    fn resolve(&self, _: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let hit = lock(&self.cached)
            .as_ref()
            .filter(|(_, at)| at.elapsed() < self.cache)
            .map(|(addrs, _)| addrs.clone());
        let dns = self.dns.clone();
        let name = self.name.clone();
        let cached = self.cached.clone();
        Box::pin(async move {
            let mut addrs = match hit {
                Some(addrs) => addrs,
                None => {
                    let record = dns.read(&name).await?;
                    let addrs: Vec<SocketAddr> = record
                        .addrs
                        .iter()
                        .map(|ip| SocketAddr::new((*ip).into(), 0))
                        .collect();
                    *lock(&cached) = Some((addrs.clone(), Instant::now()));
                    addrs
                }
            };
            // Spread the load over the replicas.
            if !addrs.is_empty() {
                let first = rand::rng().random_range(0..addrs.len());
                addrs.rotate_left(first);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn unix(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// Shared state of the load.
#[derive(Default)]
struct Ledger {
    acked: Vec<Acked>,
    failed: usize,
}

/// Runs the drill. Bounded: the load stops at recovery + `after_recovery`, or at
/// `recovery_timeout` after the kill; the audit has bounds of its own.
pub async fn run(
    config: DrillConfig,
    dns: Arc<dyn DnsProvider>,
) -> Result<DrillReport, DrillError> {
    if config.clients == 0 || config.clients > 64 {
        return Err(DrillError::Config("clients must be 1 to 64".into()));
    }
    if config.kill_window.0 > config.kill_window.1 {
        return Err(DrillError::Config("the kill window is empty".into()));
    }
    let resolver = DnsResolver {
        dns,
        name: config.service_name.clone(),
        cache: config.dns_cache,
        cached: Arc::default(),
    };
    let client = reqwest::Client::builder()
        .dns_resolver(Arc::new(resolver))
        .pool_max_idle_per_host(0)
        .timeout(config.request_timeout)
        .connect_timeout(config.request_timeout)
        .build()
        .map_err(|e| DrillError::Config(format!("http client: {e}")))?;
    let direct = reqwest::Client::builder()
        .timeout(config.request_timeout)
        .build()
        .map_err(|e| DrillError::Config(format!("http client: {e}")))?;
    let token = token(&direct, &config).await?;
    let base = format!(
        "http://{}:{}",
        config.service_name.to_string().trim_end_matches('.'),
        config.port
    );

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = CancellationToken::new();
    let started = SystemTime::now();
    let sampler = tokio::spawn(sample_writable(
        direct.clone(),
        config.regions.clone(),
        config.sample_every,
        stop.clone(),
    ));
    let mut clients = tokio::task::JoinSet::new();
    for n in 0..config.clients {
        clients.spawn(load(
            client.clone(),
            base.clone(),
            token.clone(),
            config.clone(),
            n,
            ledger.clone(),
            stop.clone(),
        ));
    }

    let (lo, hi) = config.kill_window;
    let wait = lo + (hi - lo).mul_f64(rand::rng().random::<f64>());
    tokio::time::sleep(wait).await;
    let killed = SystemTime::now();
    let kill = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&config.kill)
        .status()
        .await;
    let kill_done = SystemTime::now();
    match kill {
        Ok(status) if status.success() => {}
        Ok(status) => {
            stop.cancel();
            return Err(DrillError::Kill(format!("exit status {status}")));
        }
        Err(e) => {
            stop.cancel();
            return Err(DrillError::Kill(e.to_string()));
        }
    }

    let deadline = Instant::now() + config.recovery_timeout;
    // Recovery: the first acknowledgement of a request sent once region A was dead (one
    // sent before may still have been acknowledged by A while the kill went on).
    let first_after = |l: &Ledger| {
        l.acked
            .iter()
            .filter(|a| a.sent > kill_done)
            .map(|a| a.at)
            .min()
    };
    let mut recovered = None;
    while Instant::now() < deadline {
        let first = first_after(&lock_ledger(&ledger));
        if let Some(at) = first {
            recovered = Some(at);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if recovered.is_some() {
        tokio::time::sleep(config.after_recovery).await;
    }
    stop.cancel();
    while clients.join_next().await.is_some() {}
    // A sampler that panicked saw nothing: report more regions than one could ever be.
    let max_writable = sampler.await.unwrap_or(usize::MAX);

    let (acked, failed) = {
        let l = lock_ledger(&ledger);
        (l.acked.clone(), l.failed)
    };
    let audit = audit(&client, &base, &token, &config, &acked).await;
    let timings = match &config.prober_metrics {
        Some(url) => prober_timings(&direct, url).await,
        None => BTreeMap::new(),
    };
    let since_kill = |key: &str| {
        timings
            .get(key)
            .map(|t| t - unix(killed))
            .filter(|d| *d >= 0.0)
    };
    let before: Vec<&Acked> = acked.iter().filter(|a| a.at <= kill_done).collect();
    Ok(DrillReport {
        detection: since_kill("health:down"),
        fencing: since_kill("phase:lag_gate"),
        promotion: since_kill("phase:taking_leadership"),
        dns: since_kill("phase:done"),
        rto: recovered.map(|at| unix(at) - unix(killed)),
        acked_before: before.len(),
        present_before: before
            .iter()
            .filter(|a| audit.present.contains(&a.name))
            .count(),
        acked_total: acked.len(),
        present_total: audit.present.len(),
        terminal: audit.terminal,
        not_terminal: acked.len() - audit.terminal,
        failed_requests: failed,
        max_writable,
        kill_at: unix(killed) - unix(started),
    })
}

fn lock_ledger(ledger: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    ledger
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn token(http: &reqwest::Client, config: &DrillConfig) -> Result<String, DrillError> {
    let reply = http
        .post(&config.token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", config.client_id.as_str()),
            ("client_secret", config.client_secret.expose_secret()),
            ("scope", "https://management.azure.com/.default"),
        ])
        .send()
        .await
        .map_err(|e| DrillError::Token(e.to_string()))?;
    let body: Value = reply
        .json()
        .await
        .map_err(|e| DrillError::Token(e.to_string()))?;
    body["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| DrillError::Token("no access_token in the answer".into()))
}

fn linker_url(base: &str, config: &DrillConfig, name: &str) -> String {
    format!(
        "{base}{}/providers/Microsoft.ServiceLinker/linkers/{name}?api-version=2022-05-01",
        config.source_id
    )
}

/// One client: creates connections one after the other until stopped.
async fn load(
    http: reqwest::Client,
    base: String,
    token: String,
    config: DrillConfig,
    client: u32,
    ledger: Arc<Mutex<Ledger>>,
    stop: CancellationToken,
) {
    let run = rand::rng().random::<u32>();
    for n in 0u64.. {
        if stop.is_cancelled() {
            return;
        }
        let name = format!("drill-{run:08x}-{client}-{n}");
        let body = json!({"properties": {
            "targetService": {"type": "AzureResource", "id": config.target_id},
            "authInfo": {"authType": "secret", "name": "drilluser",
                         "secretInfo": {"secretType": "rawValue", "value": format!("pw-{n}")}},
            "clientType": "python",
        }});
        let sent_at = SystemTime::now();
        let sent = http
            .put(linker_url(&base, &config, &name))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await;
        let acked = match sent {
            Ok(reply) if reply.status().is_success() => Some(
                reply
                    .headers()
                    .get("azure-asyncoperation")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
            ),
            _ => None,
        };
        let failed = acked.is_none();
        {
            let mut l = lock_ledger(&ledger);
            match acked {
                Some(operation) => l.acked.push(Acked {
                    name,
                    sent: sent_at,
                    at: SystemTime::now(),
                    operation,
                }),
                None => l.failed += 1,
            }
        }
        if failed {
            // A failed request is retried after a pause, as the SDKs back off.
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }
}

struct Audit {
    present: std::collections::BTreeSet<String>,
    terminal: usize,
}

/// Reads every acknowledged connection back and follows its operation to the end.
async fn audit(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    config: &DrillConfig,
    acked: &[Acked],
) -> Audit {
    let mut present = std::collections::BTreeSet::new();
    let mut terminal = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    for a in acked {
        // Present: a 200 (a 404 is lost). Other answers are retried until the deadline.
        while Instant::now() < deadline {
            let reply = http
                .get(linker_url(base, config, &a.name))
                .bearer_auth(token)
                .send()
                .await;
            match reply.map(|r| r.status().as_u16()) {
                Ok(200) => {
                    present.insert(a.name.clone());
                    break;
                }
                Ok(404) => break,
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        let Some(operation) = &a.operation else {
            terminal += 1;
            continue;
        };
        // The operation's own URL: it names the service's DNS name, which the client
        // resolves (clients poll operation status through the name).
        while Instant::now() < deadline {
            let status = match http.get(operation).bearer_auth(token).send().await {
                Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
                _ => None,
            };
            match status.as_ref().and_then(|s| s["status"].as_str()) {
                Some("Succeeded" | "Failed" | "Canceled") => {
                    terminal += 1;
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    Audit { present, terminal }
}

/// Samples every replica's `/readyz` until stopped; the most regions writable at once.
async fn sample_writable(
    http: reqwest::Client,
    regions: BTreeMap<String, Vec<String>>,
    every: Duration,
    stop: CancellationToken,
) -> usize {
    let mut most = 0;
    while !stop.is_cancelled() {
        let mut writable = 0;
        for replicas in regions.values() {
            let checks = replicas.iter().map(|base| {
                let http = http.clone();
                async move {
                    let reply = http
                        .get(format!("{}/readyz", base.trim_end_matches('/')))
                        .timeout(every.max(Duration::from_millis(200)))
                        .send()
                        .await
                        .ok()?;
                    let body = reply.json::<Value>().await.unwrap_or(Value::Null);
                    Some(replica_writable(&body))
                }
            });
            let answers = futures_util::future::join_all(checks).await;
            if answers.into_iter().any(|a| a == Some(true)) {
                writable += 1;
            }
        }
        most = most.max(writable);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
    most
}

/// The wall-clock times the prober last entered each health (`health:down`) and phase
/// (`phase:done`), from its `/metrics`.
async fn prober_timings(http: &reqwest::Client, url: &str) -> BTreeMap<String, f64> {
    let Ok(reply) = http.get(url).send().await else {
        return BTreeMap::new();
    };
    let text = reply.text().await.unwrap_or_default();
    parse_timings(&text)
}

fn parse_timings(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        for (metric, label, kind) in [
            (
                "tether_failover_health_entered_seconds{",
                "health=\"",
                "health",
            ),
            (
                "tether_failover_phase_entered_seconds{",
                "phase=\"",
                "phase",
            ),
        ] {
            let Some(rest) = line.strip_prefix(metric) else {
                continue;
            };
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            let Some(name) = labels
                .split_once(label)
                .and_then(|(_, v)| v.split_once('"'))
                .map(|(v, _)| v)
            else {
                continue;
            };
            if let Ok(value) = value.trim().parse::<f64>() {
                out.insert(format!("{kind}:{name}"), value);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prober_timings_are_read_from_its_metrics() {
        let text = "# TYPE tether_failover_phase_entered_seconds gauge\n\
            tether_failover_phase_entered_seconds{phase=\"done\"} 1796111075.4326022\n\
            tether_failover_health_entered_seconds{health=\"down\"} 1796111064.5\n\
            tether_failover_active_down 1\n";
        let t = parse_timings(text);
        assert_eq!(t.get("phase:done"), Some(&1796111075.4326022));
        assert_eq!(t.get("health:down"), Some(&1796111064.5));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn only_a_replica_that_says_so_is_writable() {
        assert!(replica_writable(
            &json!({"status": "ready", "role": "active"})
        ));
        assert!(replica_writable(
            &json!({"status": "not_ready", "role": "active"})
        ));
        assert!(!replica_writable(
            &json!({"status": "ready", "role": "passive"})
        ));
        assert!(!replica_writable(&json!({"status": "ready"})));
    }

    #[test]
    fn the_summary_line_is_last() {
        let report = DrillReport {
            detection: Some(10.0),
            fencing: Some(21.0),
            promotion: Some(21.2),
            dns: Some(21.3),
            rto: Some(24.04),
            acked_before: 10,
            present_before: 9,
            acked_total: 20,
            present_total: 19,
            terminal: 20,
            not_terminal: 0,
            failed_requests: 40,
            max_writable: 1,
            kill_at: 7.0,
        };
        assert_eq!(
            report.lines().last().unwrap(),
            "RTO 24.0 s, lost 1 acknowledged, max writable regions 1"
        );
    }
}
