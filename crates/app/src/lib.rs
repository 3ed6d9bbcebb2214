//! `tether-app`: the linker use-cases ([`App`]) and the concrete sagas that carry them out.
//!
//! A write is checked synchronously ([`spec`]), stored with its operation and saga in one
//! transaction, and run by the saga executor on this replica (any replica adopts it if this
//! one dies). Secrets are sealed with the configured key before they reach the store.
//!
//! Must never depend on axum.

use std::sync::Arc;
use std::time::Duration;

use tether_adapters::Adapters;
use tether_model::fencing::{Epoch, WriteGate};
use tether_model::ids::{InstanceId, SagaId};
use tether_saga::{Executor, ExecutorConfig};
use tether_store::{Purged, Store};

pub mod applied;
pub mod auth;
pub mod linkers;
pub mod sagas;
pub mod secrets;
pub mod spec;
#[cfg(feature = "testing")]
pub mod testing;

pub use linkers::{Accepted, AllowAll, AuditAccepted, NamedResources, Page};
pub use sagas::DEFAULT_MAX_VALIDATIONS;
pub use sagas::LinkerCtx;
pub use secrets::SecretBox;
pub use tether_saga::SagaState;
pub use tether_store::SagaSummary;

/// Who made a request, as `systemData` records it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The identity (user name, application id).
    pub name: String,
    /// `User`, `Application`, `ManagedIdentity` or `Key`.
    pub kind: String,
}

/// The application: use-cases over the store, the adapters and the saga executor.
#[derive(Clone)]
pub struct App {
    store: Arc<dyn Store>,
    ctx: Arc<LinkerCtx>,
    secrets: Arc<SecretBox>,
    executor: Executor<LinkerCtx>,
    gate: Arc<dyn WriteGate>,
}

impl App {
    /// Wires the use-cases and an executor acting as replica `me`, running at most
    /// `max_validations` validations at once (within the executor's own cap). `tenant_id` is
    /// the tenant written for service principals. `gate` says whether this replica may
    /// write (its region leads): writes and saga steps wait for it to open.
    #[expect(
        clippy::too_many_arguments,
        reason = "the wiring of every part, called from the server and the test harness only"
    )]
    pub fn new(
        store: Arc<dyn Store>,
        adapters: Adapters,
        secrets: SecretBox,
        me: InstanceId,
        config: ExecutorConfig,
        gate: Arc<dyn WriteGate>,
        max_validations: usize,
        tenant_id: String,
    ) -> Self {
        let secrets = Arc::new(secrets);
        let ctx = Arc::new(LinkerCtx {
            adapters,
            secrets: secrets.clone(),
            store: store.clone(),
            tenant_id,
        });
        let saga_store: Arc<dyn tether_saga::SagaStore> = store.clone();
        let executor = Executor::new(
            saga_store,
            ctx.clone(),
            me,
            config,
            gate.clone(),
            sagas::definitions(max_validations),
        );
        Self {
            store,
            ctx,
            secrets,
            executor,
            gate,
        }
    }

    /// The epoch this replica may write with now; `None` while its region does not lead
    /// (writes are then refused with [`tether_model::Error::region_not_active`]).
    pub fn write_epoch(&self) -> Option<Epoch> {
        self.gate.epoch()
    }

    /// Readiness: the database takes a write (this replica's heartbeat row) and its role.
    pub async fn heartbeat(&self) -> Result<(), tether_model::Error> {
        Ok(self.store.heartbeat(self.executor.instance()).await?)
    }

    /// Whether the database is a read-only standby.
    pub async fn database_in_recovery(&self) -> Result<bool, tether_model::Error> {
        Ok(self.store.in_recovery().await?)
    }

    /// The saga executor (the server runs its background duties).
    pub fn executor(&self) -> &Executor<LinkerCtx> {
        &self.executor
    }

    /// Up to `limit` sagas in `state` (every unfinished one when `None`), most recently
    /// changed first, for operators.
    pub async fn sagas(
        &self,
        state: Option<SagaState>,
        limit: u32,
    ) -> Result<Vec<SagaSummary>, tether_model::Error> {
        Ok(self.store.sagas_list(state, limit).await?)
    }

    /// Makes a stuck saga due for its retry now; false if it is not stuck.
    pub async fn saga_retry(&self, id: SagaId) -> Result<bool, tether_model::Error> {
        Ok(self.store.saga_retry_now(id).await?)
    }

    /// Sets the `tether_sagas{state}` gauges from the database (every replica sees the same).
    pub async fn refresh_gauges(&self) -> Result<(), tether_model::Error> {
        let counts = self.store.saga_counts().await?;
        for state in [SagaState::Running, SagaState::Unwinding, SagaState::Stuck] {
            let n = counts
                .iter()
                .find(|(s, _)| *s == state)
                .map_or(0, |(_, n)| *n);
            metrics::gauge!("tether_sagas", "state" => state.as_str()).set(n as f64);
        }
        Ok(())
    }

    /// Removes finished operations and sagas older than `retention` (any replica may run
    /// this; it is idempotent).
    pub async fn housekeeping(&self, retention: Duration) -> Result<Purged, tether_model::Error> {
        let purged = self.store.purge_finished(retention).await?;
        metrics::counter!("tether_purged_sagas_total").increment(purged.sagas);
        Ok(purged)
    }
}
