//! The `SagaStore` port: what the engine needs from persistence. `tether-store` implements it
//! on Postgres and SQLite; [`crate::memory::MemoryStore`] implements it for unit tests.
//!
//! Every write is conditional on the caller's [`Lease`] (owner + generation): a replica that
//! lost its saga to another one gets [`SagaStoreError::Fenced`] and must stop. Every step
//! commit also carries the writer's leadership [`Epoch`]: the store keeps the largest epoch
//! ever committed and refuses an older one ([`SagaStoreError::StaleEpoch`]), so a replica of
//! a region that lost leadership can never commit again, whatever its lease says.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tether_model::fencing::Epoch;
use tether_model::ids::{InstanceId, SagaId};

use crate::step::StepError;

/// Where a saga is in its life. Persisted: never rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaState {
    /// Running its steps forward.
    Running,
    /// A step failed (or cancellation was asked for): undoing completed steps in reverse.
    Unwinding,
    /// An undo kept failing; a reconciler retries it later. Visible to operators.
    Stuck,
    /// Every step succeeded.
    Succeeded,
    /// Unwound after a failure.
    Failed,
    /// Unwound after a cancellation.
    Canceled,
}

impl SagaState {
    /// The persisted spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SagaState::Running => "running",
            SagaState::Unwinding => "unwinding",
            SagaState::Stuck => "stuck",
            SagaState::Succeeded => "succeeded",
            SagaState::Failed => "failed",
            SagaState::Canceled => "canceled",
        }
    }

    /// Parses the persisted spelling.
    pub fn parse(value: &str) -> Option<Self> {
        use SagaState::*;
        [Running, Unwinding, Stuck, Succeeded, Failed, Canceled]
            .into_iter()
            .find(|s| s.as_str() == value)
    }

    /// True once the saga will never run again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SagaState::Succeeded | SagaState::Failed | SagaState::Canceled
        )
    }
}

/// The right to write a saga's log: who owns it and in which adoption generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The owning replica.
    pub owner: InstanceId,
    /// Bumped each time another replica adopts the saga.
    pub generation: i64,
}

/// A saga as stored.
#[derive(Debug, Clone)]
pub struct SagaRecord {
    /// Its id.
    pub id: SagaId,
    /// The saga definition's name (`linker-create`).
    pub name: String,
    /// Its params (never secrets in clear text).
    pub params: Value,
    /// Its state.
    pub state: SagaState,
    /// Its owner and generation (kept after the end, for the record).
    pub lease: Lease,
    /// Whether cancellation was requested.
    pub cancel_requested: bool,
    /// The error that made it unwind (or get stuck).
    pub error: Option<StepError>,
}

/// The kinds of log events. Persisted: never rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The step's action may have begun.
    Started,
    /// The action finished; `data` is its output.
    Succeeded,
    /// The action failed permanently; `data` is the [`StepError`].
    Failed,
    /// The undo may have begun.
    UndoStarted,
    /// The undo finished.
    UndoFinished,
    /// The undo failed past its deadline; `data` is the [`StepError`].
    UndoFailed,
}

impl EventKind {
    /// The persisted spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Succeeded => "succeeded",
            EventKind::Failed => "failed",
            EventKind::UndoStarted => "undo_started",
            EventKind::UndoFinished => "undo_finished",
            EventKind::UndoFailed => "undo_failed",
        }
    }

    /// Parses the persisted spelling.
    pub fn parse(value: &str) -> Option<Self> {
        use EventKind::*;
        [
            Started,
            Succeeded,
            Failed,
            UndoStarted,
            UndoFinished,
            UndoFailed,
        ]
        .into_iter()
        .find(|k| k.as_str() == value)
    }
}

/// One log entry, unique per (saga, step, kind): writing it twice is harmless.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SagaEvent {
    /// The step's name.
    pub step: String,
    /// What happened.
    pub kind: EventKind,
    /// The output or error, when the kind has one.
    pub data: Option<Value>,
}

impl SagaEvent {
    /// An event without data.
    pub fn new(step: &str, kind: EventKind) -> Self {
        Self {
            step: step.to_string(),
            kind,
            data: None,
        }
    }

    /// An event with data.
    pub fn with_data(step: &str, kind: EventKind, data: Value) -> Self {
        Self {
            step: step.to_string(),
            kind,
            data: Some(data),
        }
    }
}

/// A saga to insert, built by [`crate::SagaDef::instantiate`]. The application stores it in
/// the same transaction as the domain change that asked for it.
#[derive(Debug, Clone)]
pub struct NewSaga {
    /// Its id.
    pub id: SagaId,
    /// The definition's name.
    pub name: String,
    /// Its params.
    pub params: Value,
    /// The replica that will run it first (generation 1).
    pub owner: InstanceId,
    /// Sagas of one chain run one at a time, in the order they were stored (for linkers: the
    /// source resource, whose settings are read, merged and written back). `None`: no order.
    pub chain: Option<String>,
    /// How long the first lease lasts.
    pub lease_ttl: Duration,
    /// The log's first entry: `started` of step one.
    pub first_event: SagaEvent,
}

/// How a saga ended.
#[derive(Debug, Clone, PartialEq)]
pub enum SagaOutcome {
    /// Every step succeeded; holds the last step's output.
    Succeeded(Value),
    /// A step failed and everything was undone.
    Failed(StepError),
    /// Cancellation was requested and everything was undone.
    Canceled(StepError),
}

impl SagaOutcome {
    /// The terminal state this outcome stores.
    pub fn state(&self) -> SagaState {
        match self {
            SagaOutcome::Succeeded(_) => SagaState::Succeeded,
            SagaOutcome::Failed(_) => SagaState::Failed,
            SagaOutcome::Canceled(_) => SagaState::Canceled,
        }
    }
}

/// What a conditional log write reports back.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ack {
    /// Someone asked for the saga to be canceled.
    pub cancel_requested: bool,
}

/// What ending a saga reports back.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ended {
    /// Another unfinished saga shares its chain: one queued behind it may start now.
    pub chain_waits: bool,
}

/// Errors of the saga store.
#[derive(Debug, thiserror::Error)]
pub enum SagaStoreError {
    /// The lease no longer belongs to the caller (another replica adopted the saga).
    #[error("the saga is owned by another replica or generation")]
    Fenced,
    /// A newer leadership epoch has committed: this replica's region no longer leads.
    #[error("a newer leadership epoch has committed")]
    StaleEpoch,
    /// The saga does not exist.
    #[error("saga not found")]
    NotFound,
    /// The store could not be reached or failed.
    #[error("saga store failure")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Persistence for the engine. Every method is one short transaction.
#[async_trait]
pub trait SagaStore: Send + Sync + 'static {
    /// Loads a saga and its whole log (in write order).
    async fn saga_load(&self, id: SagaId) -> Result<(SagaRecord, Vec<SagaEvent>), SagaStoreError>;

    /// Appends `events` (ignoring ones already present), optionally moves the saga to
    /// `state` (storing `error` with it when given, keeping the earlier one otherwise), and
    /// sets the lease to expire `ttl` from now — in one commit, and only if `lease` still
    /// holds and `epoch` is not older than the largest epoch committed (which it then
    /// becomes, and is written on the saga). For a `Stuck` saga the caller passes the retry delay as `ttl`: once it passes,
    /// any replica may adopt the saga again (and adoption moves it back to `Unwinding`).
    async fn saga_record(
        &self,
        id: SagaId,
        lease: &Lease,
        ttl: Duration,
        events: &[SagaEvent],
        state: Option<(SagaState, Option<&StepError>)>,
        epoch: Epoch,
    ) -> Result<Ack, SagaStoreError>;

    /// Appends `events` and ends the saga with `outcome` in one commit, only if `lease`
    /// still holds and `epoch` is not stale (as for [`SagaStore::saga_record`]). Implementations apply the outcome's domain effects (the linker's state,
    /// the operation's status) in the same commit.
    async fn saga_finish(
        &self,
        id: SagaId,
        lease: &Lease,
        events: &[SagaEvent],
        outcome: &SagaOutcome,
        epoch: Epoch,
    ) -> Result<Ended, SagaStoreError>;

    /// Extends the leases of the unfinished sagas among `ids` that `owner` still holds, and
    /// returns those (a saga missing from the answer was adopted by someone else, or has just
    /// been ended by its final commit).
    async fn saga_renew_leases(
        &self,
        owner: &InstanceId,
        ids: &[SagaId],
        ttl: Duration,
    ) -> Result<Vec<SagaId>, SagaStoreError>;

    /// Takes over up to `limit` unfinished sagas whose lease has expired (their owner died,
    /// they are stuck and due for a retry, or they were queued behind another saga of their
    /// chain) and that no unfinished saga blocks: owner becomes `owner`, generation + 1, and a
    /// stuck saga goes back to `Unwinding`.
    async fn saga_adopt_expired(
        &self,
        owner: &InstanceId,
        ttl: Duration,
        limit: u32,
    ) -> Result<Vec<(SagaId, Lease)>, SagaStoreError>;

    /// Gives up every lease `owner` holds at once (graceful shutdown), so others adopt
    /// without waiting for expiry.
    async fn saga_release_all(&self, owner: &InstanceId) -> Result<(), SagaStoreError>;

    /// Gives up one lease, if `lease` still holds: the saga may be adopted `after` from now
    /// (by this replica or another). Used when its driver failed without an outcome.
    async fn saga_release(
        &self,
        id: SagaId,
        lease: &Lease,
        after: Duration,
    ) -> Result<(), SagaStoreError>;
}
