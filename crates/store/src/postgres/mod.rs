//! The Postgres backend: the production store. Lease times come from the database clock
//! (`now()`), so replicas with skewed clocks still agree on who owns a saga.

use std::time::Duration;

use async_trait::async_trait;
use std::str::FromStr;

use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};
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
mod pool;
mod saga;

use pool::Pool;

/// How much longer than the application's own bound the server's `statement_timeout` is:
/// enough that the application always gives up first (see [`PgStore::connect`]).
pub const SERVER_TIMEOUT_MARGIN: Duration = Duration::from_secs(2);

/// A Postgres-backed [`Store`].
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    timeout: Duration,
}

impl PgStore {
    /// Connects (with a bounded pool) and applies the migrations. Every session gets
    /// `lock_timeout` (the query timeout), `statement_timeout` (the query timeout plus
    /// [`SERVER_TIMEOUT_MARGIN`]), an idle-in-transaction timeout, and TCP keep-alives, so
    /// neither a slow query nor a dead peer holds a connection for long.
    ///
    /// Synchronous replication: a commit waits for the standby. Postgres ends that wait
    /// early when the statement is canceled — by `statement_timeout` too — and then reports
    /// the commit as *successful* with only a WARNING ("canceling wait for synchronous
    /// replication"): the commit is local, not replicated, and would be lost by a failover.
    /// So the application bounds the wait itself: every store call is abandoned after the
    /// query timeout ([`StoreError::TimedOut`], a failure; its connection is dropped), which
    /// always fires before the server's `statement_timeout` can cancel the wait.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let millis = options.query_timeout.as_millis().to_string();
        let statement_millis = options
            .query_timeout
            .saturating_add(SERVER_TIMEOUT_MARGIN)
            .as_millis()
            .to_string();
        let connect = PgConnectOptions::from_str(url)?
            .application_name("tether")
            .options([
                ("statement_timeout", statement_millis.as_str()),
                ("lock_timeout", millis.as_str()),
                ("idle_in_transaction_session_timeout", millis.as_str()),
                ("tcp_keepalives_idle", "10"),
                ("tcp_keepalives_interval", "5"),
                ("tcp_keepalives_count", "3"),
            ]);
        // No ping around each use (see pool.rs): a connection the database dropped fails at
        // most the one statement that finds it broken, which the caller sees as a transient
        // error (503 with Retry-After) and may retry.
        let pool = Pool::new(
            connect.clone(),
            options.max_connections as usize,
            options.acquire_timeout,
        )?;
        // A standby is read-only: its schema is the primary's, replicated (the primary's
        // replicas migrate it).
        let (recovering,): (bool,) = sqlx::query_as("select pg_is_in_recovery()")
            .fetch_one(&pool)
            .await?;
        if recovering {
            tracing::info!("the database is a standby: migrations are left to the primary");
        } else {
            let mut conn = PgConnection::connect_with(&connect).await?;
            sqlx::migrate!("../../migrations/postgres")
                .run(&mut conn)
                .await
                .map_err(|e| StoreError::Database(e.into()))?;
            conn.close().await?;
        }
        Ok(Self {
            pool,
            timeout: options.query_timeout,
        })
    }
}

#[async_trait]
impl Store for PgStore {
    async fn heartbeat(&self, instance: &InstanceId) -> Result<(), StoreError> {
        let beat = async {
            let mut conn = self.pool.acquire().await?;
            let mut tx = conn.raw.begin().await?;
            sqlx::query(
                "insert into replica_heartbeat (instance, beat_at) values ($1, now())
                 on conflict (instance) do update set beat_at = excluded.beat_at",
            )
            .bind(instance.as_str())
            .execute(&mut *tx)
            .await?;
            sqlx::query("delete from replica_heartbeat where beat_at < now() - interval '1 day'")
                .execute(&mut *tx)
                .await?;
            Ok(tx.commit().await?)
        };
        crate::timed(self.timeout, beat).await
    }

    async fn in_recovery(&self) -> Result<bool, StoreError> {
        let query = async {
            let (recovering,): (bool,) = sqlx::query_as("select pg_is_in_recovery()")
                .fetch_one(&self.pool)
                .await?;
            Ok(recovering)
        };
        crate::timed(self.timeout, query).await
    }

    async fn linker_get(&self, at: &LinkerRef) -> Result<Option<Linker>, StoreError> {
        crate::timed(self.timeout, linker::get(&self.pool, at)).await
    }

    async fn linkers_list(
        &self,
        scope: &ResourceId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Linker>, StoreError> {
        crate::timed(self.timeout, linker::list(&self.pool, scope, after, limit)).await
    }

    async fn linker_targets(
        &self,
        scope: &ResourceId,
        kinds: &[String],
    ) -> Result<Vec<TargetService>, StoreError> {
        crate::timed(self.timeout, linker::targets(&self.pool, scope, kinds)).await
    }

    async fn linker_applied(&self, id: LinkerId) -> Result<Option<AppliedRecord>, StoreError> {
        crate::timed(self.timeout, linker::applied(&self.pool, id)).await
    }

    async fn items_held_elsewhere(
        &self,
        id: LinkerId,
        keys: &[String],
    ) -> Result<Vec<String>, StoreError> {
        crate::timed(self.timeout, linker::held_elsewhere(&self.pool, id, keys)).await
    }

    async fn operation_begin(&self, begin: &OperationBegin) -> Result<Begun, StoreError> {
        crate::timed(self.timeout, linker::operation_begin(&self.pool, begin)).await
    }

    async fn operation_get(&self, id: OperationId) -> Result<Option<Operation>, StoreError> {
        crate::timed(self.timeout, linker::operation_get(&self.pool, id)).await
    }

    async fn sagas_list(
        &self,
        state: Option<SagaState>,
        limit: u32,
    ) -> Result<Vec<SagaSummary>, StoreError> {
        crate::timed(self.timeout, saga::list(&self.pool, state, limit)).await
    }

    async fn saga_retry_now(&self, id: SagaId) -> Result<bool, StoreError> {
        crate::timed(self.timeout, saga::retry_now(&self.pool, id)).await
    }

    async fn saga_counts(&self) -> Result<Vec<(SagaState, u64)>, StoreError> {
        crate::timed(self.timeout, saga::counts(&self.pool)).await
    }

    async fn purge_finished(&self, older_than: Duration) -> Result<Purged, StoreError> {
        crate::timed(self.timeout, saga::purge(&self.pool, older_than)).await
    }

    async fn role_assignment_create(
        &self,
        assignment: &RoleAssignment,
    ) -> Result<AssignmentWrite, StoreError> {
        crate::timed(
            self.timeout,
            authz::assignment_create(&self.pool, assignment),
        )
        .await
    }

    async fn role_assignment_get(
        &self,
        id: RoleAssignmentId,
    ) -> Result<Option<RoleAssignment>, StoreError> {
        crate::timed(self.timeout, authz::assignment_get(&self.pool, id)).await
    }

    async fn role_assignment_delete(
        &self,
        scope: &Scope,
        id: RoleAssignmentId,
    ) -> Result<Option<RoleAssignment>, StoreError> {
        crate::timed(
            self.timeout,
            authz::assignment_delete(&self.pool, scope, id),
        )
        .await
    }

    async fn role_assignments_list(
        &self,
        query: &RoleAssignmentQuery,
    ) -> Result<Vec<RoleAssignment>, StoreError> {
        crate::timed(self.timeout, authz::assignments_list(&self.pool, query)).await
    }

    async fn audit_append(&self, record: &AuditRecord) -> Result<(), StoreError> {
        crate::timed(self.timeout, authz::audit_append(&self.pool, record)).await
    }

    async fn audit_page(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        crate::timed(self.timeout, authz::audit_page(&self.pool, query)).await
    }

    async fn audit_purge(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        max_rows: u32,
    ) -> Result<u64, StoreError> {
        crate::timed(
            self.timeout,
            authz::audit_purge(&self.pool, before, max_rows),
        )
        .await
    }
}

#[async_trait]
impl SagaStore for PgStore {
    async fn saga_load(&self, id: SagaId) -> Result<(SagaRecord, Vec<SagaEvent>), SagaStoreError> {
        crate::timed(self.timeout, saga::load(&self.pool, id)).await
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
            saga::record(&self.pool, id, lease, ttl, events, state, epoch),
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
            saga::finish(&self.pool, id, lease, events, outcome, epoch),
        )
        .await
    }

    async fn saga_renew_leases(
        &self,
        owner: &InstanceId,
        ids: &[SagaId],
        ttl: Duration,
    ) -> Result<Vec<SagaId>, SagaStoreError> {
        crate::timed(self.timeout, saga::renew(&self.pool, owner, ids, ttl)).await
    }

    async fn saga_adopt_expired(
        &self,
        owner: &InstanceId,
        ttl: Duration,
        limit: u32,
    ) -> Result<Vec<(SagaId, Lease)>, SagaStoreError> {
        crate::timed(
            self.timeout,
            saga::adopt_expired(&self.pool, owner, ttl, limit),
        )
        .await
    }

    async fn saga_release(
        &self,
        id: SagaId,
        lease: &Lease,
        after: Duration,
    ) -> Result<(), SagaStoreError> {
        crate::timed(self.timeout, saga::release(&self.pool, id, lease, after)).await
    }

    async fn saga_release_all(&self, owner: &InstanceId) -> Result<(), SagaStoreError> {
        crate::timed(self.timeout, saga::release_all(&self.pool, owner)).await
    }
}
