//! `tether-store`: the only crate that speaks SQL. One [`Store`] trait with a Postgres backend
//! (production, replicated between regions) and a SQLite backend (embedded default for
//! `tether dev`), the migrations runner, and the [`tether_saga::SagaStore`] implementation.
//!
//! Saga completion is where the two meet: [`tether_saga::SagaStore::saga_finish`] ends the
//! saga, its operation and the linker's provisioning state in one commit.
//!
//! Must never depend on axum or reqwest.

use std::sync::Arc;

use async_trait::async_trait;
use tether_model::ids::{LinkerId, LinkerRef, OperationId, ResourceId};
use tether_model::linker::Linker;
use tether_model::operation::Operation;
use tether_saga::{NewSaga, SagaStore};

mod postgres;
mod rows;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost a race or hit a uniqueness rule; the message says which.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The database could not be reached (or timed out).
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// The database answered with an error.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// A stored row could not be decoded (a bug or manual tampering).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database URL names no supported backend.
    #[error("unsupported database url scheme '{0}': use postgres:// or sqlite://")]
    InvalidUrl(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                StoreError::Unavailable(e)
            }
            other => StoreError::Database(other),
        }
    }
}

impl From<StoreError> for tether_model::Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => tether_model::Error::conflict(
                "AnotherOperationInProgress",
                format!("the linker changed concurrently ({what}); retry the request"),
            ),
            StoreError::Unavailable(_) => {
                tether_model::Error::unavailable("the database is unavailable", e)
            }
            other => tether_model::Error::internal("store failure", other),
        }
    }
}

/// How an operation changes its linker when it begins.
#[derive(Debug, Clone)]
pub enum LinkerChange {
    /// Insert a new linker. [`StoreError::Conflict`] if one with that name exists.
    Create(Linker),
    /// Replace an idle linker's spec with this one (its `generation` already bumped), if the
    /// stored generation is still `expected_generation`. The replaced spec is kept and
    /// restored if the operation fails.
    Update {
        /// The new state of the linker.
        linker: Linker,
        /// The generation the caller read.
        expected_generation: i64,
    },
    /// Mark an idle linker `Deleting`, if its generation is still `expected_generation`.
    Delete {
        /// The linker.
        id: LinkerId,
        /// The generation the caller read.
        expected_generation: i64,
    },
    /// Leave the linker alone (validation).
    Nothing,
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
}

/// Persistence for linkers, operations and sagas. Every method is one short transaction;
/// none is held across a call to anything else.
#[async_trait]
pub trait Store: SagaStore {
    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

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

    /// Starts an operation: applies the linker change, stores the operation and the saga, in
    /// one commit. [`StoreError::Conflict`] when the linker changed since it was read.
    async fn operation_begin(&self, begin: &OperationBegin) -> Result<(), StoreError>;

    /// An operation by id.
    async fn operation_get(&self, id: OperationId) -> Result<Option<Operation>, StoreError>;
}

/// Opens the store a database URL names (`postgres://…` or `sqlite://…`) and applies the
/// migrations (concurrent runners are serialized by sqlx).
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else {
        Err(StoreError::InvalidUrl(
            url.split(':').next().unwrap_or_default().to_string(),
        ))
    }
}
