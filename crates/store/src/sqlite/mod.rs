//! The SQLite backend: the embedded store of `tether dev` and single-node installs. Writes go
//! through a one-connection pool (SQLite has one writer anyway, and this rules out
//! `SQLITE_BUSY` upgrades); reads use a small pool of their own. Lease times come from this
//! process's clock, which is the only clock a single node has.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use tether_model::fencing::Epoch;
use tether_model::ids::{InstanceId, LinkerId, LinkerRef, OperationId, ResourceId, SagaId};
use tether_model::linker::{Linker, TargetService};
use tether_model::operation::Operation;
use tether_saga::{
    Ack, Ended, Lease, SagaEvent, SagaOutcome, SagaRecord, SagaState, SagaStore, SagaStoreError,
    StepError,
};

use tether_model::authz::{AuditRecord, RoleAssignment, RoleAssignmentId, Scope};

use crate::{
    AppliedRecord, AssignmentWrite, AuditQuery, Begun, OperationBegin, Purged, RoleAssignmentQuery,
    SagaSummary, Store, StoreError, StoreOptions,
};

mod authz;
mod linker;
mod saga;

/// A SQLite-backed [`Store`].
#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    timeout: Duration,
}

impl SqliteStore {
    /// Opens (creating if needed, readable by its owner only) the database file of a
    /// `sqlite://PATH` URL, in WAL mode, and applies the migrations.
    pub async fn connect(url: &str, store: &StoreOptions) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(store.query_timeout);
        create_private(options.get_filename())?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(store.acquire_timeout)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("../../migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|e| StoreError::Database(e.into()))?;
        // A local file cannot drop a connection: no ping before each acquisition.
        let reader = SqlitePoolOptions::new()
            .max_connections(store.max_connections.clamp(1, 8))
            .acquire_timeout(store.acquire_timeout)
            .test_before_acquire(false)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self {
            writer,
            reader,
            timeout: store.query_timeout,
        })
    }
}

/// Creates the database file with mode 0600 if it does not exist yet (SQLite gives its WAL and
/// shared-memory files the same mode), so secrets sealed in it are not readable by others.
fn create_private(path: &std::path::Path) -> Result<(), StoreError> {
    if path.as_os_str().is_empty() || path == std::path::Path::new(":memory:") {
        return Ok(());
    }
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    match open.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Unavailable(sqlx::Error::Io(e))),
    }
}

/// A write transaction that takes the database's write lock when it begins (`BEGIN
/// IMMEDIATE`). A deferred one that read first cannot take the lock once another process (a
/// second replica on the same file) has committed since its read: SQLite then refuses it at
/// once ("database is locked") instead of waiting out the busy timeout.
async fn write_tx(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

/// Milliseconds since the epoch, the unit of `saga.lease_expires_ms`.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl Store for SqliteStore {
    async fn heartbeat(&self, instance: &InstanceId) -> Result<(), StoreError> {
        let beat = async {
            let mut tx = write_tx(&self.writer).await?;
            let now = now_ms();
            sqlx::query(
                "insert into replica_heartbeat (instance, beat_ms) values (?1, ?2)
                 on conflict (instance) do update set beat_ms = excluded.beat_ms",
            )
            .bind(instance.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("delete from replica_heartbeat where beat_ms < ?1")
                .bind(now - ms(Duration::from_secs(86_400)))
                .execute(&mut *tx)
                .await?;
            Ok(tx.commit().await?)
        };
        crate::timed(self.timeout, beat).await
    }

    async fn in_recovery(&self) -> Result<bool, StoreError> {
        Ok(false)
    }

    async fn linker_get(&self, at: &LinkerRef) -> Result<Option<Linker>, StoreError> {
        crate::timed(self.timeout, linker::get(&self.reader, at)).await
    }

    async fn linkers_list(
        &self,
        scope: &ResourceId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Linker>, StoreError> {
        crate::timed(
            self.timeout,
            linker::list(&self.reader, scope, after, limit),
        )
        .await
    }

    async fn linker_targets(
        &self,
        scope: &ResourceId,
        kinds: &[String],
    ) -> Result<Vec<TargetService>, StoreError> {
        crate::timed(self.timeout, linker::targets(&self.reader, scope, kinds)).await
    }

    async fn linker_applied(&self, id: LinkerId) -> Result<Option<AppliedRecord>, StoreError> {
        crate::timed(self.timeout, linker::applied(&self.reader, id)).await
    }

    async fn items_held_elsewhere(
        &self,
        id: LinkerId,
        keys: &[String],
    ) -> Result<Vec<String>, StoreError> {
        crate::timed(self.timeout, linker::held_elsewhere(&self.reader, id, keys)).await
    }

    async fn operation_begin(&self, begin: &OperationBegin) -> Result<Begun, StoreError> {
        crate::timed(self.timeout, linker::operation_begin(&self.writer, begin)).await
    }

    async fn operation_get(&self, id: OperationId) -> Result<Option<Operation>, StoreError> {
        crate::timed(self.timeout, linker::operation_get(&self.reader, id)).await
    }

    async fn sagas_list(
        &self,
        state: Option<SagaState>,
        limit: u32,
    ) -> Result<Vec<SagaSummary>, StoreError> {
        crate::timed(self.timeout, saga::list(&self.reader, state, limit)).await
    }

    async fn saga_retry_now(&self, id: SagaId) -> Result<bool, StoreError> {
        crate::timed(self.timeout, saga::retry_now(&self.writer, id)).await
    }

    async fn saga_counts(&self) -> Result<Vec<(SagaState, u64)>, StoreError> {
        crate::timed(self.timeout, saga::counts(&self.reader)).await
    }

    async fn purge_finished(&self, older_than: Duration) -> Result<Purged, StoreError> {
        crate::timed(self.timeout, saga::purge(&self.writer, older_than)).await
    }

    async fn role_assignment_create(
        &self,
        assignment: &RoleAssignment,
    ) -> Result<AssignmentWrite, StoreError> {
        crate::timed(
            self.timeout,
            authz::assignment_create(&self.writer, assignment),
        )
        .await
    }

    async fn role_assignment_get(
        &self,
        id: RoleAssignmentId,
    ) -> Result<Option<RoleAssignment>, StoreError> {
        crate::timed(self.timeout, authz::assignment_get(&self.reader, id)).await
    }

    async fn role_assignment_delete(
        &self,
        scope: &Scope,
        id: RoleAssignmentId,
    ) -> Result<Option<RoleAssignment>, StoreError> {
        crate::timed(
            self.timeout,
            authz::assignment_delete(&self.writer, scope, id),
        )
        .await
    }

    async fn role_assignments_list(
        &self,
        query: &RoleAssignmentQuery,
    ) -> Result<Vec<RoleAssignment>, StoreError> {
        crate::timed(self.timeout, authz::assignments_list(&self.reader, query)).await
    }

    async fn audit_append(&self, record: &AuditRecord) -> Result<(), StoreError> {
        crate::timed(self.timeout, authz::audit_append(&self.writer, record)).await
    }

    async fn audit_page(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        crate::timed(self.timeout, authz::audit_page(&self.reader, query)).await
    }

    async fn audit_purge(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        max_rows: u32,
    ) -> Result<u64, StoreError> {
        crate::timed(
            self.timeout,
            authz::audit_purge(&self.writer, before, max_rows),
        )
        .await
    }
}

#[async_trait]
impl SagaStore for SqliteStore {
    async fn saga_load(&self, id: SagaId) -> Result<(SagaRecord, Vec<SagaEvent>), SagaStoreError> {
        // Read through the writer so a saga always sees its own latest commit.
        crate::timed(self.timeout, saga::load(&self.writer, id)).await
    }

    async fn saga_record(
        &self,
        id: SagaId,
        lease: &Lease,
        ttl: Duration,
        events: &[SagaEvent],
        state: Option<(SagaState, Option<&StepError>)>,
        epoch: Epoch,
    ) -> Result<Ack, SagaStoreError> {
        crate::timed(
            self.timeout,
            saga::record(&self.writer, id, lease, ttl, events, state, epoch),
        )
        .await
    }

    async fn saga_finish(
        &self,
        id: SagaId,
        lease: &Lease,
        events: &[SagaEvent],
        outcome: &SagaOutcome,
        epoch: Epoch,
    ) -> Result<Ended, SagaStoreError> {
        crate::timed(
            self.timeout,
            saga::finish(&self.writer, id, lease, events, outcome, epoch),
        )
        .await
    }

    async fn saga_renew_leases(
        &self,
        owner: &InstanceId,
        ids: &[SagaId],
        ttl: Duration,
    ) -> Result<Vec<SagaId>, SagaStoreError> {
        crate::timed(self.timeout, saga::renew(&self.writer, owner, ids, ttl)).await
    }

    async fn saga_adopt_expired(
        &self,
        owner: &InstanceId,
        ttl: Duration,
        limit: u32,
    ) -> Result<Vec<(SagaId, Lease)>, SagaStoreError> {
        crate::timed(
            self.timeout,
            saga::adopt_expired(&self.writer, owner, ttl, limit),
        )
        .await
    }

    async fn saga_release(
        &self,
        id: SagaId,
        lease: &Lease,
        after: Duration,
    ) -> Result<(), SagaStoreError> {
        crate::timed(self.timeout, saga::release(&self.writer, id, lease, after)).await
    }

    async fn saga_release_all(&self, owner: &InstanceId) -> Result<(), SagaStoreError> {
        crate::timed(self.timeout, saga::release_all(&self.writer, owner)).await
    }
}
