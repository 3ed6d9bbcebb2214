//! A test environment (a fresh database, the mock backend, a shared secret key) and real
//! `tether serve` processes on it, so tests can kill, restart and multiply replicas.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use rand::Rng;
use tether_store::testing::TestDb;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::api::Api;
use crate::mock::Mock;

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh Postgres database from `DATABASE_URL` (or the local default).
    Postgres,
    /// A SQLite file in a temporary directory.
    Sqlite,
}

/// Settings of one replica, on top of the test defaults (short leases and timeouts).
#[derive(Debug, Clone, Default)]
pub struct ReplicaOptions {
    /// Extra environment variables (`TETHER__…` overrides, `TETHER_CRASH_POINT`).
    pub env: Vec<(String, String)>,
}

impl ReplicaOptions {
    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
}

/// A database, a mock backend and the settings every replica shares.
pub struct TestEnv {
    /// The mock Azure backend.
    pub mock: Mock,
    /// The bearer token of the API: a JWT the mock signed for the demo client, which every
    /// replica makes Owner of everything (the mock accepts it on its ARM routes too).
    pub token: String,
    db: TestDb,
    dir: tempfile::TempDir,
    bin: PathBuf,
    key: String,
    replicas: std::sync::atomic::AtomicUsize,
}

impl TestEnv {
    /// A fresh environment for the `tether` binary at `bin` (`env!("CARGO_BIN_EXE_tether")`).
    pub async fn new(bin: &str, backend: Backend) -> Self {
        let db = match backend {
            Backend::Postgres => TestDb::postgres()
                .await
                .expect("create a Postgres test database"),
            Backend::Sqlite => TestDb::sqlite().expect("create a SQLite test database"),
        };
        let key =
            base64::engine::general_purpose::STANDARD.encode(rand::rng().random::<[u8; 32]>());
        let mock = Mock::start(&format!("test-{:032x}", rand::rng().random::<u128>())).await;
        let token = mock.token(tether_mock_azure::demo::CLIENT_ID).await;
        Self {
            mock,
            token,
            db,
            dir: tempfile::tempdir().expect("a temporary directory"),
            bin: PathBuf::from(bin),
            key,
            replicas: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// An environment on copies of an earlier installation's files (as `tether dev` keeps
    /// them in its data directory): a SQLite `database`, the mock backend's `mock_state` file
    /// and the secrets `key` that sealed the database's secrets. The originals are never
    /// written.
    pub async fn restored(bin: &str, database: &Path, mock_state: &Path, key: &str) -> Self {
        let mut env = Self::new(bin, Backend::Sqlite).await;
        let file = env
            .db
            .url
            .strip_prefix("sqlite://")
            .expect("a SQLite test database is a file");
        std::fs::copy(database, file).expect("copy the database");
        let state = env.dir.path().join("mock-azure.json");
        std::fs::copy(mock_state, &state).expect("copy the mock state");
        env.mock = Mock::start_from_state(&env.token, &state).await;
        // The token must come from the issuer the replicas trust: this mock.
        env.token = env.mock.token(tether_mock_azure::demo::CLIENT_ID).await;
        env.key = key.to_string();
        env
    }

    /// The URL of the test database.
    pub fn database_url(&self) -> &str {
        &self.db.url
    }

    /// The store backend's name.
    pub fn backend(&self) -> &'static str {
        self.db.backend()
    }

    /// Starts a replica with the test defaults and waits until it listens.
    pub async fn spawn(&self) -> Replica {
        self.spawn_with(ReplicaOptions::default()).await
    }

    /// Starts a replica with extra settings and waits until it listens.
    pub async fn spawn_with(&self, options: ReplicaOptions) -> Replica {
        let n = self
            .replicas
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let config = self.dir.path().join(format!("replica-{n}.toml"));
        std::fs::write(&config, self.config_text(n)).expect("write the replica's config");
        let logs = self.dir.path().join(format!("replica-{n}"));
        let log = logs.with_extension("0.log");
        let (child, url) = launch(&self.bin, &config, &log, &options).await;
        Replica {
            api: Api::new(&url, &self.token),
            url,
            child,
            logs,
            log,
            starts: 1,
            config,
            options,
            bin: self.bin.clone(),
        }
    }

    fn config_text(&self, n: usize) -> String {
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
trusted_hosts = ["127.0.0.1"]
public_scheme = "http"
retry_after_secs = 1
instance_name = "replica-{n}"
shutdown_grace_secs = 3

[database]
url = "{db}"

[auth]
audiences = ["{audience}"]
allow_http_issuers = true
bootstrap_owners = ["{owner}"]
[[auth.issuers]]
issuer = "{issuer}"
tenant_id = "{tenant}"

[secrets]
key = "{key}"

[azure]
arm_endpoint = "{mock}"
authority = "{mock}"
tenant_id = "{tenant}"
client_id = "{client}"
client_secret = "{secret}"
max_retries = 2
request_timeout_secs = 10
sql_data_plane = "{mock}/dataplane/sql"

# One principal makes every request of a test, chaos loops included: a larger budget than
# the defaults (throttling itself is tested with its own settings).
[throttle]
per_principal_per_minute = 60000
principal_burst = 10000

[sagas]
lease_ttl_secs = 2
adopt_interval_secs = 0.25
step_timeout_secs = 8
undo_timeout_secs = 8
stuck_retry_secs = 3

[log]
format = "text"
"#,
            db = self.db.url,
            audience = crate::mock::ARM_AUDIENCE,
            owner = tether_mock_azure::demo::CLIENT_OBJECT_ID,
            issuer = self.mock.issuer(),
            key = self.key,
            mock = self.mock.url,
            tenant = tether_mock_azure::demo::TENANT_ID,
            client = tether_mock_azure::demo::CLIENT_ID,
            secret = tether_mock_azure::demo::CLIENT_SECRET,
        )
    }

    /// Drops the test database. Skipped when a test fails, leaving it for inspection.
    pub async fn teardown(self) {
        let TestEnv { db, .. } = self;
        db.drop_database().await.expect("drop the test database");
    }
}

/// Starts `tether serve` and waits for the line announcing its address.
async fn launch(
    bin: &std::path::Path,
    config: &std::path::Path,
    log: &std::path::Path,
    options: &ReplicaOptions,
) -> (Child, String) {
    let mut child = start(bin, config, log, options);
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(url) = line.strip_prefix("tether listening on ") {
                return Some(url.to_string());
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    match url {
        Some(url) => (child, url),
        None => {
            let _ = child.start_kill();
            panic!("the replica did not start; its log:\n{}", tail(log));
        }
    }
}

fn start(
    bin: &std::path::Path,
    config: &std::path::Path,
    log: &std::path::Path,
    options: &ReplicaOptions,
) -> Child {
    let verbose = std::env::var("TEST_LOG").is_ok_and(|v| v == "1");
    let stderr = if verbose {
        Stdio::inherit()
    } else {
        Stdio::from(std::fs::File::create(log).expect("create the replica log"))
    };
    let mut command = Command::new(bin);
    command
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .envs(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true);
    command.spawn().expect("start the tether binary")
}

fn tail(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// One running `tether serve` process.
pub struct Replica {
    /// Its base URL.
    pub url: String,
    /// A client of its API.
    pub api: Api,
    child: Child,
    /// Log files are `<logs>.<start>.log`.
    logs: PathBuf,
    log: PathBuf,
    starts: usize,
    config: PathBuf,
    options: ReplicaOptions,
    bin: PathBuf,
}

impl Replica {
    /// The process id, while it runs (for reading its memory use from `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Stops the process gracefully (SIGTERM) and waits for it to exit.
    pub async fn stop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
    }

    /// Waits for the process to exit by itself (a crash point) and returns whether it did
    /// within `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .is_ok()
    }

    /// Starts the process again with the same configuration (a new port and identity),
    /// optionally with different extra settings.
    pub async fn restart(&mut self, options: Option<ReplicaOptions>) {
        self.kill().await;
        if let Some(options) = options {
            self.options = options;
        }
        self.log = self.logs.with_extension(format!("{}.log", self.starts));
        self.starts += 1;
        let (child, url) = launch(&self.bin, &self.config, &self.log, &self.options).await;
        self.api = self.api.rebased(&url);
        self.url = url;
        self.child = child;
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- log of the replica at {} ---\n{}",
                self.url,
                tail(&self.log)
            );
        }
        let _ = self.child.start_kill();
    }
}
