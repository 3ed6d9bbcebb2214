//! `tether-store`: the only crate that speaks SQL. One [`Store`] trait with a Postgres backend
//! (production, replicated between regions) and a SQLite backend (embedded default for
//! `tether dev`), the migrations runner, and the [`tether_saga::SagaStore`] implementation.
//!
//! Saga completion is where the two meet: [`tether_saga::SagaStore::saga_finish`] ends the
//! saga, its operation and the linker's provisioning state in one commit.
//!
//! Must never depend on axum or reqwest.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tether_model::authz::{AuditRecord, RoleAssignment, RoleAssignmentId, Scope};
use tether_model::ids::{InstanceId, LinkerId, LinkerRef, OperationId, ResourceId};
use tether_model::linker::{Linker, TargetService};
use tether_model::operation::Operation;
use tether_saga::{NewSaga, SagaStore};

mod authz;
mod postgres;
pub mod replication;
mod rows;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

pub use authz::{AssignmentWrite, AuditQuery, MAX_PAGE, Placement, RoleAssignmentQuery};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost a race or hit a uniqueness rule; the message says which.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The database could not be reached, dropped the connection, or is shutting down.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A store call took longer than the configured query timeout and was abandoned.
    #[error("a database call took longer than {0:?}")]
    TimedOut(Duration),
    /// A linker with this name exists (a create raced another create of the same linker).
    #[error("a linker with this name exists")]
    LinkerExists,
    /// The database answered with an error.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// A stored row could not be decoded (a bug or manual tampering).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database URL names no supported backend.
    #[error("unsupported database url scheme '{0}': use postgres:// or sqlite://")]
    InvalidUrl(String),
    /// Another linker on the same source already writes this configuration key.
    #[error("the configuration key '{key}' is already written by linker '{linker}'")]
    KeyConflict {
        /// The key.
        key: String,
        /// The linker that writes it.
        linker: String,
    },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            StoreError::Unavailable(e)
        } else {
            StoreError::Database(e)
        }
    }
}

/// Errors that say the database (or the connection to it) is unavailable right now, not that
/// the statement was wrong: retrying later may succeed, so clients get `503` + `Retry-After`.
/// A lost connection ([`connection_lost`]), an exhausted or closed pool, and Postgres's 53300
/// (too many connections), 40001/40P01 (serialization failure, deadlock), 25006 (a write
/// reached a read-only standby: a region between leadership and promotion). SQLite: busy and
/// locked.
fn is_unavailable(e: &sqlx::Error) -> bool {
    if connection_lost(e) {
        return true;
    }
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => matches!(
            db.code().unwrap_or_default().as_ref(),
            "53300" | "40001" | "40P01" | "25006" | "5" | "6" | "517"
        ),
        _ => false,
    }
}

/// Errors after which the connection cannot be used again: it failed (I/O, TLS, protocol), or
/// Postgres ended the session (class 08, connection exception; 57P01-57P03, shutdown, crash,
/// cannot connect now).
pub(crate) fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
        }
        _ => false,
    }
}

impl From<StoreError> for tether_saga::SagaStoreError {
    fn from(e: StoreError) -> Self {
        tether_saga::SagaStoreError::Backend(Box::new(e))
    }
}

/// Settings of a store connection.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Connections in the pool (SQLite: readers; it has one writer).
    pub max_connections: u32,
    /// Longest wait for a pooled connection.
    pub acquire_timeout: Duration,
    /// Longest time one store call may take end to end before it is abandoned as a fault
    /// ([`StoreError::TimedOut`]); Postgres also enforces it as `statement_timeout`, so a
    /// hung query cannot hold a connection, and through TCP keep-alives.
    pub query_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(10),
        }
    }
}

/// Runs one store call within `limit`; a call that takes longer is dropped (its transaction,
/// if any, rolls back with its connection) and reported as [`StoreError::TimedOut`].
pub(crate) async fn timed<T, E: From<StoreError>>(
    limit: Duration,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or_else(|_| Err(StoreError::TimedOut(limit).into()))
}

impl From<StoreError> for tether_model::Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => tether_model::Error::conflict(
                "AnotherOperationInProgress",
                format!("the linker changed concurrently ({what}); retry the request"),
            ),
            StoreError::LinkerExists => tether_model::Error::conflict(
                "AnotherOperationInProgress",
                "the linker was created concurrently; retry the request",
            ),
            StoreError::KeyConflict { key, linker } => tether_model::Error::conflict(
                "ConfigurationKeyConflict",
                format!(
                    "the configuration key '{key}' is already written by linker '{linker}' on this source; rename it with configurationInfo.customizedKeys"
                ),
            ),
            StoreError::Unavailable(_) | StoreError::TimedOut(_) => {
                tether_model::Error::unavailable("the database is unavailable", e)
            }
            other => tether_model::Error::internal("store failure", other),
        }
    }
}

/// How an operation changes its linker when it begins.
#[derive(Debug, Clone)]
pub enum LinkerChange {
    /// Insert a new linker that writes `keys` (configuration key names, compared
    /// case-insensitively).
    /// [`StoreError::LinkerExists`] if one with that name exists (checked first, under the
    /// source's lock), [`StoreError::KeyConflict`] if another linker on the source writes one
    /// of the keys.
    Create {
        /// The linker.
        linker: Linker,
        /// The configuration keys it writes.
        keys: Vec<String>,
    },
    /// Replace an idle linker's spec with this one (its `generation` already bumped), if the
    /// stored generation is still `expected_generation`. The replaced spec (and keys) are
    /// kept and restored if the operation fails.
    Update {
        /// The new state of the linker.
        linker: Linker,
        /// The generation the caller read.
        expected_generation: i64,
        /// The configuration keys it writes.
        keys: Vec<String>,
    },
    /// Mark an idle linker `Deleting`, if its generation is still `expected_generation`.
    Delete {
        /// The linker.
        id: LinkerId,
        /// The generation the caller read.
        expected_generation: i64,
    },
    /// A linker is being created or updated: ask that saga to cancel (it unwinds at its next
    /// step boundary) and queue this delete to run after it. Conflict if the generation
    /// moved or a delete is already queued.
    CancelAndDelete {
        /// The linker.
        id: LinkerId,
        /// The generation the caller read.
        expected_generation: i64,
    },
    /// Leave the linker alone (validation).
    Nothing,
}

/// How an operation began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Begun {
    /// The saga waits for an earlier saga of its chain; the executor adopts it when its turn
    /// comes, so the caller must not start it.
    pub queued: bool,
}

/// A saga as operators see it (`GET /admin/sagas`).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SagaSummary {
    /// Its id.
    pub id: tether_model::ids::SagaId,
    /// Its definition (`linker-create`…).
    pub name: String,
    /// `running`, `unwinding`, `stuck`, `succeeded`, `failed` or `canceled`.
    pub state: String,
    /// The replica that owns (or last owned) it.
    pub owner: String,
    /// Its adoption generation.
    pub generation: i64,
    /// When its lease expires (for a stuck saga: when it is retried).
    pub lease_expires_at: chrono::DateTime<chrono::Utc>,
    /// Its last change.
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// The saga it waits for, if queued.
    pub blocked_by: Option<tether_model::ids::SagaId>,
    /// Whether cancellation was asked for.
    pub cancel_requested: bool,
    /// The failure that made it unwind.
    pub error: Option<serde_json::Value>,
    /// The last failure of an undo (why a saga is stuck).
    pub undo_error: Option<serde_json::Value>,
    /// Its operation.
    pub operation_id: Option<OperationId>,
    /// The linker its operation acts on.
    pub resource_id: Option<String>,
}

/// What a housekeeping pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Finished operations removed.
    pub operations: u64,
    /// Finished sagas (with their logs) removed.
    pub sagas: u64,
}

/// Everything that starts an operation, written in one transaction.
#[derive(Debug, Clone)]
pub struct OperationBegin {
    /// The linker change.
    pub change: LinkerChange,
    /// The operation record (status `InProgress`).
    pub operation: Operation,
    /// The saga that will do the work.
    pub saga: NewSaga,
    /// The audit record of the request that begins the operation, stored in the same
    /// commit: an accepted write is never without its record.
    pub audit: Option<AuditRecord>,
}

/// What a linker's last successful create or update applied.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedRecord {
    /// The record, as the application wrote it.
    pub record: serde_json::Value,
    /// The keys of its items this linker may remove when no other linker holds them: those a
    /// connection created (handed on from linkers that held them and are gone).
    pub created: Vec<String>,
}

/// Persistence for linkers, operations and sagas. Every method is one short transaction;
/// none is held across a call to anything else.
#[async_trait]
pub trait Store: SagaStore {
    /// Readiness: writes this replica's heartbeat row (a real write, refused by a read-only
    /// standby) and removes rows of replicas silent for a day. Idempotent.
    async fn heartbeat(&self, instance: &InstanceId) -> Result<(), StoreError>;

    /// Whether the database is a standby replaying WAL (read-only): Postgres
    /// `pg_is_in_recovery()`; SQLite never is.
    async fn in_recovery(&self) -> Result<bool, StoreError>;

    /// A linker by scope and name (case-insensitive).
    async fn linker_get(&self, at: &LinkerRef) -> Result<Option<Linker>, StoreError>;

    /// Up to `limit` linkers of a scope, ordered by lower-cased name, starting after the
    /// lower-cased name `after` (keyset paging: flat cost however many linkers exist).
    async fn linkers_list(
        &self,
        scope: &ResourceId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Linker>, StoreError>;

    /// For a new linker's key naming: the target service of one linker of the scope whose
    /// spec's `kind` is among `kinds` (if any), and those of the linkers stored without a spec
    /// (the first release's: only their target tells their kind). Index-backed, so flat in the
    /// number of linkers on the scope. (The one field of the opaque spec a store reads.)
    async fn linker_targets(
        &self,
        scope: &ResourceId,
        kinds: &[String],
    ) -> Result<Vec<TargetService>, StoreError>;

    /// What a linker's last successful create or update applied (`None` if none has).
    async fn linker_applied(&self, id: LinkerId) -> Result<Option<AppliedRecord>, StoreError>;

    /// Which of `keys` (applied-item keys) another linker than `id` holds.
    async fn items_held_elsewhere(
        &self,
        id: LinkerId,
        keys: &[String],
    ) -> Result<Vec<String>, StoreError>;

    /// Starts an operation: applies the linker change, stores the operation and the saga, in
    /// one commit. A saga with a chain is queued behind the unfinished saga at the end of its
    /// chain, if any. [`StoreError::Conflict`] when the linker changed since it was read.
    async fn operation_begin(&self, begin: &OperationBegin) -> Result<Begun, StoreError>;

    /// An operation by id, with its saga's stuck undo if there is one.
    async fn operation_get(&self, id: OperationId) -> Result<Option<Operation>, StoreError>;

    /// Sagas in `state` (every unfinished one when `None`), most recently changed first.
    async fn sagas_list(
        &self,
        state: Option<tether_saga::SagaState>,
        limit: u32,
    ) -> Result<Vec<SagaSummary>, StoreError>;

    /// Makes a stuck saga due for its retry now. False if it is not stuck.
    async fn saga_retry_now(&self, id: tether_model::ids::SagaId) -> Result<bool, StoreError>;

    /// How many sagas are in each unfinished state (for metrics).
    async fn saga_counts(&self) -> Result<Vec<(tether_saga::SagaState, u64)>, StoreError>;

    /// Removes finished sagas (their logs and operations with them) that ended more than
    /// `older_than` ago.
    async fn purge_finished(&self, older_than: std::time::Duration) -> Result<Purged, StoreError>;

    /// Stores a role assignment unless its name or its (scope, role, principal) is taken;
    /// [`AssignmentWrite`] says which happened. Replaying an identical create is harmless.
    async fn role_assignment_create(
        &self,
        assignment: &RoleAssignment,
    ) -> Result<AssignmentWrite, StoreError>;

    /// A role assignment by name, wherever it is.
    async fn role_assignment_get(
        &self,
        id: RoleAssignmentId,
    ) -> Result<Option<RoleAssignment>, StoreError>;

    /// Removes the assignment `id` if it is at `scope` (case-insensitively) and returns it;
    /// `None` when there is none there (deleting twice is harmless).
    async fn role_assignment_delete(
        &self,
        scope: &Scope,
        id: RoleAssignmentId,
    ) -> Result<Option<RoleAssignment>, StoreError>;

    /// Role assignments matching `query`, ordered by name (keyset paging on `after`).
    async fn role_assignments_list(
        &self,
        query: &RoleAssignmentQuery,
    ) -> Result<Vec<RoleAssignment>, StoreError>;

    /// Appends an audit record (replaying the same id is harmless).
    async fn audit_append(&self, record: &AuditRecord) -> Result<(), StoreError>;

    /// Audit records matching `query`, newest first (keyset paging on `before`).
    async fn audit_page(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;

    /// Removes at most `max_rows` of the oldest audit records older than `before`; returns how
    /// many it removed (call again while it returns `max_rows`).
    async fn audit_purge(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        max_rows: u32,
    ) -> Result<u64, StoreError>;
}

/// Opens the store a database URL names (`postgres://…` or `sqlite://…`) and applies the
/// migrations (concurrent runners are serialized by sqlx).
pub async fn connect(url: &str, options: &StoreOptions) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url, options).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url, options).await?))
    } else {
        Err(StoreError::InvalidUrl(
            url.split(':').next().unwrap_or_default().to_string(),
        ))
    }
}
