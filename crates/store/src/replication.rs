//! Postgres streaming-replication helpers for failover and readiness (DESIGN §5): the
//! database's role ([`Replication::role`]), replication lag as the standby sees it
//! ([`Replication::standby_status`]) and as the primary sees it
//! ([`Replication::replicas`], from `pg_stat_replication`), promotion
//! ([`Replication::promote`], `pg_promote`) and the synchronous-commit settings
//! ([`Replication::sync_settings`]).
//!
//! A [`Replication`] handle has its own small pool and applies no migrations: it is pointed
//! at a standby as readily as at a primary. LSNs are read as byte offsets
//! (`lsn - '0/0'`), so nothing here needs a `pg_lsn` decoder.
//!
//! With the `testing` feature, [`testing::PgPair`] starts a primary and a streaming standby
//! of their own (PostgreSQL binaries, as the `postgres` user) for tests.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::StoreError;

/// Longest promotion wait accepted by [`Replication::promote`].
pub const MAX_PROMOTE_WAIT: Duration = Duration::from_secs(600);

/// A WAL position, as a byte offset from `0/0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Bytes from `earlier` to `self` (0 if `earlier` is ahead).
    pub fn bytes_since(self, earlier: Lsn) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Postgres' own notation.
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// A database's role in replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbRole {
    /// Not in recovery: accepts writes.
    Primary,
    /// In recovery (a standby): read-only.
    Standby,
}

/// Replication as a standby sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct StandbyStatus {
    /// The last WAL position received and flushed from the primary.
    pub receive_lsn: Option<Lsn>,
    /// The last WAL position replayed.
    pub replay_lsn: Option<Lsn>,
    /// Received but not yet replayed (what a promotion still has to apply).
    pub replay_backlog_bytes: u64,
    /// Age of the last replayed transaction's commit (grows while the primary is idle, so
    /// it is an upper bound of the lag, not the lag).
    pub last_replayed_commit_age: Option<Duration>,
    /// Whether the WAL receiver is streaming from the primary right now.
    pub streaming: bool,
    /// When the standby last heard from the primary, as an age.
    pub last_message_age: Option<Duration>,
}

/// One standby, as the primary sees it (`pg_stat_replication`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaStatus {
    /// The standby's `application_name` (its `cluster_name` unless its connection sets one).
    pub application_name: String,
    /// Its address.
    pub client_addr: Option<String>,
    /// `startup`, `catchup`, `streaming`, `backup` or `stopping`.
    pub state: String,
    /// `async`, `potential`, `sync` or `quorum`.
    pub sync_state: String,
    /// WAL written on the primary and not yet flushed to disk by the standby: what the
    /// standby would lose if promoted now.
    pub flush_lag_bytes: Option<u64>,
    /// WAL written on the primary and not yet replayed by the standby.
    pub replay_lag_bytes: Option<u64>,
    /// The primary's measure of the flush delay (`None` when idle).
    pub flush_lag: Option<Duration>,
    /// The primary's measure of the replay delay (`None` when idle).
    pub replay_lag: Option<Duration>,
}

impl ReplicaStatus {
    /// Whether the standby acknowledges commits synchronously.
    pub fn is_synchronous(&self) -> bool {
        self.sync_state == "sync" || self.sync_state == "quorum"
    }
}

/// The synchronous-commit settings in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSettings {
    /// `synchronous_commit` (`on`, `remote_apply`, `remote_write`, `local`, `off`).
    pub synchronous_commit: String,
    /// `synchronous_standby_names` (empty: asynchronous replication).
    pub synchronous_standby_names: String,
}

impl SyncSettings {
    /// Whether commits wait for a standby (some standby is named and commits wait at
    /// least for its flush… or its write, with `remote_write`).
    pub fn waits_for_standby(&self) -> bool {
        !self.synchronous_standby_names.trim().is_empty()
            && matches!(
                self.synchronous_commit.as_str(),
                "on" | "remote_apply" | "remote_write"
            )
    }
}

/// The outcome of [`Replication::promote`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promotion {
    /// The standby is now a primary.
    Promoted,
    /// It was a primary already: nothing done.
    AlreadyPrimary,
    /// Promotion was signalled but had not finished within the wait (it may still).
    NotYet,
}

/// Replication queries against one Postgres server.
#[derive(Debug, Clone)]
pub struct Replication {
    pool: PgPool,
}

/// A duration from seconds read from the database; `None` for NULL, negative or absurd
/// values (clock skew between the servers can make intervals negative).
fn secs(value: Option<f64>) -> Option<Duration> {
    value
        .filter(|v| v.is_finite() && *v >= 0.0 && *v < 1e9)
        .map(Duration::from_secs_f64)
}

fn lsn(value: Option<i64>) -> Option<Lsn> {
    value.and_then(|v| u64::try_from(v).ok()).map(Lsn)
}

impl Replication {
    /// Connects with a small pool of its own (2 connections, 5 s to acquire one).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    /// Like [`Replication::connect`], but connects on first use: for a prober that must
    /// start while the server it watches is down. Fails only on a malformed URL.
    pub fn connect_lazy(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy(url)?;
        Ok(Self { pool })
    }

    /// Whether the server is in recovery (a standby).
    pub async fn is_in_recovery(&self) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar("select pg_is_in_recovery()")
            .fetch_one(&self.pool)
            .await?)
    }

    /// The server's role.
    pub async fn role(&self) -> Result<DbRole, StoreError> {
        Ok(if self.is_in_recovery().await? {
            DbRole::Standby
        } else {
            DbRole::Primary
        })
    }

    /// The primary's current WAL write position. Errors on a standby.
    pub async fn current_wal_lsn(&self) -> Result<Lsn, StoreError> {
        let value: Option<i64> =
            sqlx::query_scalar("select (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8")
                .fetch_one(&self.pool)
                .await?;
        lsn(value).ok_or_else(|| StoreError::Corrupt("negative wal position".into()))
    }

    /// Replication as seen from a standby; `None` on a primary.
    pub async fn standby_status(&self) -> Result<Option<StandbyStatus>, StoreError> {
        type Row = (bool, Option<i64>, Option<i64>, Option<f64>);
        let (in_recovery, receive, replay, commit_age): Row = sqlx::query_as(
            "select pg_is_in_recovery(),
                    (pg_last_wal_receive_lsn() - '0/0'::pg_lsn)::int8,
                    (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8,
                    extract(epoch from now() - pg_last_xact_replay_timestamp())::float8",
        )
        .fetch_one(&self.pool)
        .await?;
        if !in_recovery {
            return Ok(None);
        }
        let receiver: Option<(String, Option<f64>)> = sqlx::query_as(
            "select status, extract(epoch from now() - last_msg_receipt_time)::float8
               from pg_stat_wal_receiver",
        )
        .fetch_optional(&self.pool)
        .await?;
        let (receive_lsn, replay_lsn) = (lsn(receive), lsn(replay));
        let backlog = match (receive_lsn, replay_lsn) {
            (Some(received), Some(replayed)) => received.bytes_since(replayed),
            _ => 0,
        };
        Ok(Some(StandbyStatus {
            receive_lsn,
            replay_lsn,
            replay_backlog_bytes: backlog,
            last_replayed_commit_age: secs(commit_age),
            streaming: receiver.as_ref().is_some_and(|(s, _)| s == "streaming"),
            last_message_age: receiver.and_then(|(_, age)| secs(age)),
        }))
    }

    /// The standbys connected to this primary (empty on a standby or with none connected).
    pub async fn replicas(&self) -> Result<Vec<ReplicaStatus>, StoreError> {
        type Row = (
            String,
            Option<String>,
            String,
            String,
            Option<i64>,
            Option<i64>,
            Option<f64>,
            Option<f64>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "select application_name,
                    host(client_addr),
                    state,
                    sync_state,
                    case when pg_is_in_recovery() then null
                         else (pg_current_wal_lsn() - flush_lsn)::int8 end,
                    case when pg_is_in_recovery() then null
                         else (pg_current_wal_lsn() - replay_lsn)::int8 end,
                    extract(epoch from flush_lag)::float8,
                    extract(epoch from replay_lag)::float8
               from pg_stat_replication
              order by application_name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(application_name, client_addr, state, sync_state, flush, replay, fl, rl)| {
                    ReplicaStatus {
                        application_name,
                        client_addr,
                        state,
                        sync_state,
                        flush_lag_bytes: flush.and_then(|v| u64::try_from(v).ok()),
                        replay_lag_bytes: replay.and_then(|v| u64::try_from(v).ok()),
                        flush_lag: secs(fl),
                        replay_lag: secs(rl),
                    }
                },
            )
            .collect())
    }

    /// Promotes a standby (`pg_promote(true, wait)`), waiting up to `wait` (clamped to
    /// 1 s – 10 min) for it to finish. Idempotent: on a primary it does nothing.
    pub async fn promote(&self, wait: Duration) -> Result<Promotion, StoreError> {
        let wait = wait.clamp(Duration::from_secs(1), MAX_PROMOTE_WAIT);
        if !self.is_in_recovery().await? {
            return Ok(Promotion::AlreadyPrimary);
        }
        let seconds = i32::try_from(wait.as_secs()).unwrap_or(i32::MAX);
        let done: bool = match sqlx::query_scalar("select pg_promote(true, $1)")
            .bind(seconds)
            .fetch_one(&self.pool)
            .await
        {
            Ok(done) => done,
            // Another promoter won the race between our check and our call.
            Err(sqlx::Error::Database(e))
                if e.message().contains("recovery is not in progress") =>
            {
                return Ok(Promotion::AlreadyPrimary);
            }
            Err(e) => return Err(e.into()),
        };
        Ok(if done {
            Promotion::Promoted
        } else {
            Promotion::NotYet
        })
    }

    /// The synchronous-commit settings in force for this connection.
    pub async fn sync_settings(&self) -> Result<SyncSettings, StoreError> {
        let (synchronous_commit, synchronous_standby_names): (String, String) = sqlx::query_as(
            "select current_setting('synchronous_commit'),
                    current_setting('synchronous_standby_names')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(SyncSettings {
            synchronous_commit,
            synchronous_standby_names,
        })
    }

    /// Runs one SQL statement (no binds) — for tests and drills that need to write or
    /// pause replay; never used with input from outside.
    #[cfg(feature = "testing")]
    pub async fn execute(&self, sql: &str) -> Result<u64, StoreError> {
        Ok(sqlx::query(sql).execute(&self.pool).await?.rows_affected())
    }
}

#[cfg(feature = "testing")]
pub mod testing {
    //! A primary and a streaming standby of their own, for tests: `initdb`, `postgres` and
    //! `pg_basebackup -R` from the PostgreSQL binaries (`$PG_BIN`, or the newest
    //! `/usr/lib/postgresql/*/bin`), run as the `postgres` user when the test runs as root,
    //! on random loopback ports, under a temporary directory. The servers are killed when
    //! the pair is dropped.

    use std::path::{Path, PathBuf};
    use std::process::Stdio;
    use std::time::Duration;

    use tokio::process::{Child, Command};

    use super::Replication;

    type Error = std::io::Error;

    fn error(message: impl Into<String>) -> Error {
        std::io::Error::other(message.into())
    }

    /// The directory holding `initdb`, `postgres` and `pg_basebackup`.
    pub fn pg_bin() -> Result<PathBuf, Error> {
        if let Ok(dir) = std::env::var("PG_BIN") {
            return Ok(PathBuf::from(dir));
        }
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = e.path().join("bin");
                bin.join("postgres").is_file().then_some((version, bin))
            })
            .collect();
        versions.sort();
        versions
            .pop()
            .map(|(_, bin)| bin)
            .ok_or_else(|| error("no PostgreSQL binaries under /usr/lib/postgresql (set PG_BIN)"))
    }

    /// The uid and gid of `postgres` when we are root (Postgres refuses to run as root).
    fn postgres_user() -> Result<Option<(u32, u32)>, Error> {
        // /proc/self belongs to the process's effective user.
        let root = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
        if !root {
            return Ok(None);
        }
        std::fs::read_to_string("/etc/passwd")?
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                if fields.first() != Some(&"postgres") || fields.len() < 4 {
                    return None;
                }
                Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
            })
            .map(Some)
            .ok_or_else(|| error("running as root and no 'postgres' user to run the servers"))
    }

    fn free_port() -> Result<u16, Error> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    }

    fn command(bin: &Path, program: &str, user: Option<(u32, u32)>) -> Command {
        let mut command = Command::new(bin.join(program));
        if let Some((uid, gid)) = user {
            command.uid(uid).gid(gid);
        }
        command.stdin(Stdio::null()).kill_on_drop(true);
        command
    }

    async fn run(mut command: Command, what: &str) -> Result<(), Error> {
        let output = command.output().await?;
        if output.status.success() {
            Ok(())
        } else {
            Err(error(format!(
                "{what} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )))
        }
    }

    /// One running server.
    pub struct PgServer {
        child: Option<Child>,
        port: u16,
        data: PathBuf,
        log: PathBuf,
        args: Vec<String>,
        bin: PathBuf,
        user: Option<(u32, u32)>,
    }

    impl PgServer {
        /// `postgres://postgres@127.0.0.1:PORT/postgres`.
        pub fn url(&self) -> String {
            format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
        }

        /// Its port.
        pub fn port(&self) -> u16 {
            self.port
        }

        /// Its data directory.
        pub fn data_dir(&self) -> &Path {
            &self.data
        }

        /// The last lines of its log.
        pub fn log(&self) -> String {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        }

        /// Kills it (SIGKILL: a crash) and waits for the postmaster to go.
        pub async fn kill(&mut self) -> Result<(), Error> {
            if let Some(mut child) = self.child.take() {
                child.kill().await?;
            }
            Ok(())
        }

        /// Starts it again (after [`PgServer::kill`]) and waits until it answers.
        pub async fn restart(&mut self) -> Result<(), Error> {
            self.kill().await?;
            self.spawn().await
        }

        async fn spawn(&mut self) -> Result<(), Error> {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)?;
            let mut cmd = command(&self.bin, "postgres", self.user);
            cmd.arg("-D")
                .arg(&self.data)
                .arg("-p")
                .arg(self.port.to_string())
                .args(&self.args)
                .stdout(log.try_clone()?)
                .stderr(log);
            self.child = Some(cmd.spawn()?);
            let url = self.url();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                match Replication::connect(&url).await {
                    Ok(r) if r.is_in_recovery().await.is_ok() => return Ok(()),
                    _ if tokio::time::Instant::now() > deadline => {
                        return Err(error(format!("postgres did not start:\n{}", self.log())));
                    }
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
    }

    /// A primary and a standby streaming from it.
    pub struct PgPair {
        /// The primary (`cluster_name` `tether_a`).
        pub primary: PgServer,
        /// The standby (`cluster_name` `tether_b`; its `application_name` on the primary).
        pub standby: PgServer,
        _dir: tempfile::TempDir,
    }

    impl PgPair {
        /// Creates and starts both and waits until the standby streams. With
        /// `synchronous`, the primary's commits wait for the standby's flush
        /// (`synchronous_standby_names = 'tether_b'`).
        pub async fn start(synchronous: bool) -> Result<Self, Error> {
            let bin = pg_bin()?;
            let user = postgres_user()?;
            let dir = tempfile::tempdir()?;
            if let Some((uid, gid)) = user {
                std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
            }
            let socket_dir = dir.path().display().to_string();
            let a = dir.path().join("a");
            let b = dir.path().join("b");

            let mut initdb = command(&bin, "initdb", user);
            initdb.arg("-D").arg(&a).args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]);
            run(initdb, "initdb").await?;

            let common = |name: &str| {
                vec![
                    "-k".to_string(),
                    socket_dir.clone(),
                    "-c".into(),
                    "listen_addresses=127.0.0.1".into(),
                    "-c".into(),
                    format!("cluster_name={name}"),
                    "-c".into(),
                    "fsync=off".into(),
                    "-c".into(),
                    "max_connections=20".into(),
                    "-c".into(),
                    "shared_buffers=16MB".into(),
                ]
            };
            let mut primary_args = common("tether_a");
            primary_args.extend([
                "-c".into(),
                "wal_level=replica".into(),
                "-c".into(),
                "max_wal_senders=4".into(),
            ]);
            if synchronous {
                primary_args.extend(["-c".into(), "synchronous_standby_names=tether_b".into()]);
            }
            let mut primary = PgServer {
                child: None,
                port: free_port()?,
                data: a,
                log: dir.path().join("a.log"),
                args: primary_args,
                bin: bin.clone(),
                user,
            };
            primary.spawn().await?;

            let mut basebackup = command(&bin, "pg_basebackup", user);
            basebackup
                .args(["-h", "127.0.0.1", "-p", &primary.port.to_string()])
                .args(["-U", "postgres", "-D"])
                .arg(&b)
                .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"]);
            run(basebackup, "pg_basebackup").await?;

            let mut standby = PgServer {
                child: None,
                port: free_port()?,
                data: b,
                log: dir.path().join("b.log"),
                args: common("tether_b"),
                bin,
                user,
            };
            standby.spawn().await?;

            let pair = Self {
                primary,
                standby,
                _dir: dir,
            };
            pair.wait_streaming().await?;
            Ok(pair)
        }

        /// Waits (up to 60 s) until the primary sees the standby streaming.
        pub async fn wait_streaming(&self) -> Result<(), Error> {
            let primary = Replication::connect(&self.primary.url())
                .await
                .map_err(|e| error(e.to_string()))?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let replicas = primary.replicas().await.map_err(|e| error(e.to_string()))?;
                if replicas
                    .iter()
                    .any(|r| r.application_name == "tether_b" && r.state == "streaming")
                {
                    return Ok(());
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(error(format!(
                        "the standby never streamed: {replicas:?}\n{}",
                        self.standby.log()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
