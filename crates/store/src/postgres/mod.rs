//! The Postgres backend: the production store. Lease times come from the database clock
//! (`now()`), so replicas with skewed clocks still agree on who owns a saga.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tether_model::ids::{InstanceId, LinkerRef, OperationId, ResourceId, SagaId};
use tether_model::linker::Linker;
use tether_model::operation::Operation;
use tether_saga::{
    Ack, Lease, SagaEvent, SagaOutcome, SagaRecord, SagaState, SagaStore, SagaStoreError, StepError,
};

use crate::{Begun, OperationBegin, Purged, SagaSummary, Store, StoreError};

mod linker;
mod saga;

/// A Postgres-backed [`Store`].
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects (with a bounded pool) and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        sqlx::migrate!("../../migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(e.into()))?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn linker_get(&self, at: &LinkerRef) -> Result<Option<Linker>, StoreError> {
        linker::get(&self.pool, at).await
    }

    async fn linkers_list(
        &self,
        scope: &ResourceId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Linker>, StoreError> {
        linker::list(&self.pool, scope, after, limit).await
    }

    async fn operation_begin(&self, begin: &OperationBegin) -> Result<Begun, StoreError> {
        linker::operation_begin(&self.pool, begin).await
    }

    async fn operation_get(&self, id: OperationId) -> Result<Option<Operation>, StoreError> {
        linker::operation_get(&self.pool, id).await
    }

    async fn sagas_list(
        &self,
        state: Option<SagaState>,
        limit: u32,
    ) -> Result<Vec<SagaSummary>, StoreError> {
        saga::list(&self.pool, state, limit).await
    }

    async fn saga_retry_now(&self, id: SagaId) -> Result<bool, StoreError> {
        saga::retry_now(&self.pool, id).await
    }

    async fn saga_counts(&self) -> Result<Vec<(SagaState, u64)>, StoreError> {
        saga::counts(&self.pool).await
    }

    async fn purge_finished(&self, older_than: Duration) -> Result<Purged, StoreError> {
        saga::purge(&self.pool, older_than).await
    }
}

#[async_trait]
impl SagaStore for PgStore {
    async fn saga_load(&self, id: SagaId) -> Result<(SagaRecord, Vec<SagaEvent>), SagaStoreError> {
        saga::load(&self.pool, id).await
    }

    async fn saga_record(
        &self,
        id: SagaId,
        lease: &Lease,
        ttl: Duration,
        events: &[SagaEvent],
        state: Option<(SagaState, Option<&StepError>)>,
    ) -> Result<Ack, SagaStoreError> {
        saga::record(&self.pool, id, lease, ttl, events, state).await
    }

    async fn saga_finish(
        &self,
        id: SagaId,
        lease: &Lease,
        events: &[SagaEvent],
        outcome: &SagaOutcome,
    ) -> Result<(), SagaStoreError> {
        saga::finish(&self.pool, id, lease, events, outcome).await
    }

    async fn saga_renew_leases(
        &self,
        owner: &InstanceId,
        ids: &[SagaId],
        ttl: Duration,
    ) -> Result<Vec<SagaId>, SagaStoreError> {
        saga::renew(&self.pool, owner, ids, ttl).await
    }

    async fn saga_adopt_expired(
        &self,
        owner: &InstanceId,
        ttl: Duration,
        limit: u32,
    ) -> Result<Vec<(SagaId, Lease)>, SagaStoreError> {
        saga::adopt_expired(&self.pool, owner, ttl, limit).await
    }

    async fn saga_release_all(&self, owner: &InstanceId) -> Result<(), SagaStoreError> {
        saga::release_all(&self.pool, owner).await
    }
}
