//! The bench environment: fresh databases, the three servers (Tether, the mock Azure backend,
//! the reference), seeding through the mock's ARM API, and small clients of Tether's API and
//! metrics.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use base64::Engine;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::process::Command;

use crate::Opts;
use crate::procs::Server;

/// The api-version the benchmark speaks (the stable SDK's).
pub const API_VERSION: &str = "2022-05-01";
/// The mock's demo subscription (docs/mock-azure.md).
pub const SUBSCRIPTION: &str = "11111111-2222-3333-4444-555555555555";
/// The resource group the bench seeds everything in.
pub const RESOURCE_GROUP: &str = "rg-bench";
/// The mock's demo token endpoint credentials (docs/mock-azure.md; published demo values).
const MOCK_TENANT: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const MOCK_CLIENT_ID: &str = "tether-dev-client";
const MOCK_CLIENT_SECRET: &str = "tether-dev-secret";
/// The demo client's object id (the `oid` of its tokens), made Owner of everything.
const MOCK_CLIENT_OBJECT_ID: &str = "08e5fa31-2314-8299-b025-dd969cba3c96";

/// Everything a figure needs, started once per bench command.
pub struct Env {
    pub opts: Opts,
    /// This run's folder (`target/bench/<timestamp>`): configs, logs, wrk scripts, profiles.
    pub work: PathBuf,
    pub http: reqwest::Client,
    /// The bearer token the bench presents (see [`acquire_token`]).
    pub token: String,
    pub tether: Server,
    pub mock: Server,
    pub reference: Server,
    pub tether_db: String,
    pub ref_db: String,
    admin: PgPool,
}

/// The bearer token the bench presents to Tether: a JWT from the mock's token endpoint for
/// the demo client (client credentials), whom Tether's configuration makes Owner.
pub async fn acquire_token(http: &reqwest::Client, mock_url: &str) -> anyhow::Result<String> {
    let response: serde_json::Value = http
        .post(format!("{mock_url}/{MOCK_TENANT}/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", MOCK_CLIENT_ID),
            ("client_secret", MOCK_CLIENT_SECRET),
            ("scope", "https://management.azure.com/.default"),
        ])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    response["access_token"]
        .as_str()
        .map(str::to_string)
        .context("the mock's token endpoint returned no access_token")
}

/// The repository root (this crate is `crates/bench`).
pub fn workspace_root() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.join("../..").canonicalize().unwrap_or(dir)
}

/// The cargo target folder (`CARGO_TARGET_DIR` or `<root>/target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The `tether` binary to measure: the given one, or `target/release/tether` freshly built.
async fn tether_binary(opts: &Opts) -> anyhow::Result<PathBuf> {
    if let Some(bin) = &opts.tether_bin {
        return Ok(bin.clone());
    }
    eprintln!("building the tether release binary (cargo build --release --bin tether)…");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--bin", "tether"])
        .current_dir(workspace_root())
        .status()
        .await
        .context("run cargo build")?;
    if !status.success() {
        bail!("cargo build --release --bin tether failed ({status})");
    }
    Ok(target_dir().join("release/tether"))
}

fn now_id() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!("{secs}_{}", std::process::id())
}

fn database_url(admin: &str, name: &str) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(admin).context("parse the admin URL")?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

impl Env {
    /// Creates two fresh databases and starts the mock, Tether and the reference server.
    pub async fn start(opts: &Opts) -> anyhow::Result<Self> {
        let bin = tether_binary(opts).await?;
        let id = now_id();
        let work = target_dir().join("bench").join(&id);
        std::fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;

        let admin = PgPoolOptions::new()
            .max_connections(2)
            .connect(&opts.admin_url)
            .await
            .with_context(|| format!("connect to {}", opts.admin_url))?;
        let tether_db = format!("tether_bench_{id}");
        let ref_db = format!("tether_bench_ref_{id}");
        for db in [&tether_db, &ref_db] {
            sqlx::query(&format!("create database \"{db}\""))
                .execute(&admin)
                .await
                .with_context(|| format!("create database {db}"))?;
        }

        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(60))
            .build()?;
        let configured = format!("bench-{:032x}", rand::rng().random::<u128>());

        let mut mock = Command::new(&bin);
        mock.args(["mock-azure", "--listen", "127.0.0.1:0", "--accept-token"])
            .arg(&configured)
            .env("RUST_LOG", "warn");
        let mock = Server::start(
            mock,
            "mock Azure backend listening on ",
            &work.join("mock.log"),
        )
        .await?;

        let config = work.join("tether.toml");
        std::fs::write(
            &config,
            tether_config(&database_url(&opts.admin_url, &tether_db)?, &mock.url),
        )?;
        let mut tether = Command::new(&bin);
        tether.arg("serve").arg("--config").arg(&config);
        // Tether as deployed: default log level (info) and format (json), no overrides.
        tether.env_remove("RUST_LOG");
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TETHER__") {
                tether.env_remove(key);
            }
        }
        let tether =
            Server::start(tether, "tether listening on ", &work.join("tether.log")).await?;

        let mut reference = Command::new(std::env::current_exe()?);
        reference
            .args(["reference", "--database-url"])
            .arg(database_url(&opts.admin_url, &ref_db)?)
            .arg("--pool")
            .arg(opts.ref_pool.to_string());
        let reference = Server::start(
            reference,
            crate::reference::LISTENING,
            &work.join("reference.log"),
        )
        .await?;

        let token = acquire_token(&http, &mock.url).await?;
        let env = Self {
            opts: opts.clone(),
            work,
            http,
            token,
            tether,
            mock,
            reference,
            tether_db,
            ref_db,
            admin,
        };
        env.arm_put(
            &format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}"),
            json!({"location": "westus"}),
        )
        .await?;
        eprintln!(
            "tether {} (pid {}), mock {} (pid {}), reference {} (pid {}); files in {}",
            env.tether.url,
            env.tether.pid,
            env.mock.url,
            env.mock.pid,
            env.reference.url,
            env.reference.pid,
            env.work.display()
        );
        Ok(env)
    }

    /// Stops the servers and drops the databases (unless `--keep`).
    pub async fn stop(self) {
        self.tether.stop().await;
        self.mock.stop().await;
        self.reference.stop().await;
        for db in [&self.tether_db, &self.ref_db] {
            if self.opts.keep {
                eprintln!("kept database {db}");
                continue;
            }
            let drop = format!("drop database if exists \"{db}\" with (force)");
            if let Err(e) = sqlx::query(&drop).execute(&self.admin).await {
                eprintln!("warning: could not drop database {db}: {e}");
            }
        }
        self.admin.close().await;
    }

    // ---- the mock's ARM API (seeding) ----

    async fn arm_put(&self, id: &str, body: Value) -> anyhow::Result<()> {
        let response = self
            .http
            .put(format!("{}{id}?api-version=2023-12-01", self.mock.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("seed {id}"))?;
        let status = response.status();
        if !status.is_success() {
            bail!(
                "seed {id}: {status} {}",
                response.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Seeds a web app named `name` with its own PostgreSQL server and database, and returns
    /// the source to link from and the target to link to.
    pub async fn seed_source(&self, name: &str) -> anyhow::Result<Source> {
        let rg = format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}");
        let site = format!("{rg}/providers/Microsoft.Web/sites/{name}");
        let server = format!("{rg}/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg-{name}");
        let db = format!("{server}/databases/db");
        self.arm_put(
            &site,
            json!({"location": "westus", "kind": "app",
                   "properties": {"outboundIpAddresses": "20.51.7.1,20.51.7.2"}}),
        )
        .await?;
        self.arm_put(
            &server,
            json!({"location": "westus",
                   "properties": {"administratorLogin": "pgadmin", "version": "16"}}),
        )
        .await?;
        self.arm_put(&db, json!({"properties": {}})).await?;
        Ok(Source { site, db })
    }

    /// Seeds many sources, 16 at a time.
    pub async fn seed_sources(self: &Arc<Self>, names: Vec<String>) -> anyhow::Result<Vec<Source>> {
        let mut out = Vec::with_capacity(names.len());
        for chunk in names.chunks(16) {
            let mut set = tokio::task::JoinSet::new();
            for (i, name) in chunk.iter().enumerate() {
                let env = Arc::clone(self);
                let name = name.clone();
                set.spawn(async move { (i, env.seed_source(&name).await) });
            }
            let mut seeded: Vec<(usize, Source)> = Vec::with_capacity(chunk.len());
            while let Some(joined) = set.join_next().await {
                let (i, source) = joined?;
                seeded.push((i, source?));
            }
            seeded.sort_by_key(|(i, _)| *i);
            out.extend(seeded.into_iter().map(|(_, s)| s));
        }
        Ok(out)
    }

    /// Adds a fault rule to the mock (`docs/mock-azure.md`).
    pub async fn mock_fault(&self, rule: Value) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}/admin/faults", self.mock.url))
            .json(&rule)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("add a mock fault rule: {}", response.status());
        }
        Ok(())
    }

    pub async fn mock_clear_faults(&self) -> anyhow::Result<()> {
        self.http
            .delete(format!("{}/admin/faults", self.mock.url))
            .send()
            .await?;
        Ok(())
    }

    /// The mock's recorded calls (method, path), then forgets them.
    pub async fn mock_take_calls(&self) -> anyhow::Result<Vec<(String, String)>> {
        let body: Value = self
            .http
            .get(format!("{}/admin/calls", self.mock.url))
            .send()
            .await?
            .json()
            .await?;
        self.http
            .delete(format!("{}/admin/calls", self.mock.url))
            .send()
            .await?;
        Ok(body["calls"]
            .as_array()
            .map(|calls| {
                calls
                    .iter()
                    .map(|c| {
                        let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
                        (s("method"), s("path"))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    // ---- Tether's API ----

    pub fn linker_url(&self, site: &str, name: &str) -> String {
        linker_url(&self.tether.url, site, name)
    }

    /// PUTs a new linker; the status and the `Azure-AsyncOperation` URL.
    pub async fn put_linker(&self, source: &Source, name: &str) -> anyhow::Result<StatusCode> {
        let response = self
            .http
            .put(self.linker_url(&source.site, name))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(linker_body(&source.db))
            .send()
            .await?;
        Ok(response.status())
    }

    /// GETs a linker: status and body.
    pub async fn get_linker(&self, site: &str, name: &str) -> anyhow::Result<(StatusCode, Value)> {
        let response = self
            .http
            .get(self.linker_url(site, name))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// Polls a linker until its provisioning state is terminal; the state and the time waited.
    pub async fn wait_linker(&self, site: &str, name: &str) -> anyhow::Result<(String, Duration)> {
        let start = Instant::now();
        loop {
            let (status, body) = self.get_linker(site, name).await?;
            let state = body["properties"]["provisioningState"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if status == StatusCode::OK
                && matches!(state.as_str(), "Succeeded" | "Failed" | "Canceled")
            {
                return Ok((state, start.elapsed()));
            }
            if start.elapsed() > Duration::from_secs(120) {
                bail!("linker {name} is still {status} {state} after 120 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Tether's saga counters from `GET /metrics`.
    pub async fn metrics(&self) -> anyhow::Result<SagaCounts> {
        let text = self
            .http
            .get(format!("{}/metrics", self.tether.url))
            .send()
            .await?
            .text()
            .await?;
        Ok(SagaCounts::parse(&text))
    }

    /// DELETEs a linker; the status.
    pub async fn delete_linker(&self, site: &str, name: &str) -> anyhow::Result<StatusCode> {
        let response = self
            .http
            .delete(self.linker_url(site, name))
            .bearer_auth(&self.token)
            .send()
            .await?;
        Ok(response.status())
    }

    /// Polls `/metrics` every `every` until at least `finished` sagas named `saga` have ended
    /// (or `timeout` passed); the last counts and how many scrapes it took.
    pub async fn wait_sagas(
        &self,
        saga: &str,
        finished: f64,
        every: Duration,
        timeout: Duration,
    ) -> anyhow::Result<(SagaCounts, u32)> {
        let start = Instant::now();
        let mut scrapes = 0;
        loop {
            let counts = self.metrics().await?;
            scrapes += 1;
            if counts.finished_of(saga) >= finished {
                return Ok((counts, scrapes));
            }
            if start.elapsed() > timeout {
                bail!(
                    "only {} of {finished} {saga} sagas finished within {timeout:?}",
                    counts.finished_of(saga)
                );
            }
            tokio::time::sleep(every).await;
        }
    }

    // ---- Postgres ----

    /// The pids of the Postgres backends connected to a database.
    pub async fn backends(&self, db: &str) -> Vec<u32> {
        sqlx::query_as::<_, (i32,)>("select pid from pg_stat_activity where datname = $1")
            .bind(db)
            .fetch_all(&self.admin)
            .await
            .map(|rows| rows.into_iter().map(|(p,)| p as u32).collect())
            .unwrap_or_default()
    }

    /// Committed transactions in a database so far (`pg_stat_database.xact_commit`, which
    /// busy backends report at most once a second, idle ones within ten seconds).
    pub async fn commits(&self, db: &str) -> i64 {
        sqlx::query_as::<_, (i64,)>("select xact_commit from pg_stat_database where datname = $1")
            .bind(db)
            .fetch_one(&self.admin)
            .await
            .map(|(n,)| n)
            .unwrap_or_default()
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.work.join(file)
    }
}

/// A seeded source (web app) and its own target database.
#[derive(Debug, Clone)]
pub struct Source {
    pub site: String,
    pub db: String,
}

pub fn linker_path(site: &str, name: &str) -> String {
    format!("{site}/providers/Microsoft.ServiceLinker/linkers/{name}?api-version={API_VERSION}")
}

pub fn linker_url(base: &str, site: &str, name: &str) -> String {
    format!("{base}{}", linker_path(site, name))
}

/// The PUT body of a linker: a PostgreSQL database, user name and password, firewall rules —
/// what the SDK e2e test creates.
pub fn linker_body(db: &str) -> String {
    json!({"properties": {
        "targetService": {"type": "AzureResource", "id": db},
        "authInfo": {"authType": "secret", "name": "benchuser",
                     "secretInfo": {"secretType": "rawValue", "value": "bench pw 1"}},
        "clientType": "python",
        "vNetSolution": {"type": "firewall"},
    }})
    .to_string()
}

/// A saga name without its version suffix: `linker-create-v3` (today's create) counts as
/// `linker-create` (the first release's, still run for old in-flight sagas).
fn family(saga: &str) -> &str {
    match saga.rsplit_once("-v") {
        Some((base, v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => saga,
    }
}

/// `tether_saga_outcomes_total{saga="linker-create",outcome=…}`, every saga's finished count
/// (by family: versions of one saga count together), and the `tether_sagas` gauges.
#[derive(Debug, Clone, Default)]
pub struct SagaCounts {
    pub create_outcomes: BTreeMap<String, f64>,
    /// Finished sagas by saga name.
    pub finished: BTreeMap<String, f64>,
    pub running: f64,
}

impl SagaCounts {
    fn parse(text: &str) -> Self {
        let mut counts = Self::default();
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let label = |key: &str| {
                let start = series.find(&format!("{key}=\""))? + key.len() + 2;
                let len = series[start..].find('"')?;
                Some(series[start..start + len].to_string())
            };
            if series.starts_with("tether_saga_outcomes_total{") {
                let saga = family(&label("saga").unwrap_or_default()).to_string();
                if saga == "linker-create" {
                    let outcome = label("outcome").unwrap_or_default();
                    *counts.create_outcomes.entry(outcome).or_default() += value;
                }
                *counts.finished.entry(saga).or_default() += value;
            } else if series.starts_with("tether_sagas{") {
                if let Some("running" | "unwinding") = label("state").as_deref() {
                    counts.running += value;
                }
            }
        }
        counts
    }

    pub fn create_finished(&self) -> f64 {
        self.create_outcomes.values().sum()
    }

    pub fn finished_of(&self, saga: &str) -> f64 {
        self.finished.get(saga).copied().unwrap_or_default()
    }

    pub fn create_succeeded(&self) -> f64 {
        self.create_outcomes
            .get("succeeded")
            .copied()
            .unwrap_or_default()
    }
}

/// `tether serve`'s configuration: the defaults of `deploy/tether.toml` (notably
/// `retry_after_secs = 10`), on loopback, against the mock, which is also the token issuer.
/// Throttling is off: one principal makes every request of a throughput figure.
fn tether_config(database_url: &str, mock: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD.encode(rand::rng().random::<[u8; 32]>());
    format!(
        r#"# Written by tether-bench.
[server]
listen = "127.0.0.1:0"
location = "westus"
instance_name = "bench"
# Polling URLs follow the Host the clients call (the port is chosen at start).
trusted_hosts = ["127.0.0.1"]
public_scheme = "http"

[database]
url = "{database_url}"

[auth]
audiences = ["https://management.azure.com"]
allow_http_issuers = true
bootstrap_owners = ["{MOCK_CLIENT_OBJECT_ID}"]
[[auth.issuers]]
issuer = "{mock}/{MOCK_TENANT}/v2.0"
tenant_id = "{MOCK_TENANT}"

[throttle]
enabled = false

[secrets]
key = "{key}"

[azure]
arm_endpoint = "{mock}"
authority = "{mock}"
tenant_id = "{MOCK_TENANT}"
client_id = "{MOCK_CLIENT_ID}"
client_secret = "{MOCK_CLIENT_SECRET}"
"#
    )
}

/// Writes `text` to `path` (creating folders).
pub fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::family;

    #[test]
    fn versions_of_a_saga_count_together() {
        assert_eq!(family("linker-create-v2"), "linker-create");
        assert_eq!(family("linker-create"), "linker-create");
        assert_eq!(family("linker-validate"), "linker-validate");
    }
}
