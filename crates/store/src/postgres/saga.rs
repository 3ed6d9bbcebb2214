//! Saga SQL for Postgres. Every write is conditional on (owner, generation) and an unfinished
//! state; log entries are keyed by (saga, step, kind) and inserted with `on conflict do nothing`.

use std::time::Duration;

use serde_json::Value;
use sqlx::Connection as _;
use sqlx::types::Json;
use tether_model::fencing::Epoch;
use tether_model::ids::{InstanceId, SagaId};
use tether_saga::{
    Ack, Ended, Lease, SagaEvent, SagaOutcome, SagaRecord, SagaState, SagaStoreError, StepError,
};
use uuid::Uuid;

use super::pool::Pool;
use crate::StoreError;
use crate::rows::{
    Completion, EventRow, SAGA_COLUMNS, SAGA_SUMMARY_SELECT, SagaRow, SagaSummaryRow, backend,
    corrupt, step_error_json, to_json,
};

fn events_json(events: &[SagaEvent]) -> Json<Value> {
    Json(to_json(&events))
}

pub(super) async fn load(
    pool: &Pool,
    id: SagaId,
) -> Result<(SagaRecord, Vec<SagaEvent>), SagaStoreError> {
    let row: Option<SagaRow> =
        sqlx::query_as(&format!("select {SAGA_COLUMNS} from saga where id = $1"))
            .bind(id.as_uuid())
            .fetch_optional(pool)
            .await
            .map_err(backend)?;
    let record = SagaRecord::try_from(row.ok_or(SagaStoreError::NotFound)?).map_err(backend)?;
    let events: Vec<EventRow> =
        sqlx::query_as("select step, kind, data from saga_event where saga_id = $1 order by seq")
            .bind(id.as_uuid())
            .fetch_all(pool)
            .await
            .map_err(backend)?;
    let events = events
        .into_iter()
        .map(SagaEvent::try_from)
        .collect::<Result<_, _>>()
        .map_err(backend)?;
    Ok((record, events))
}

/// The SQLSTATE `tether_fence` fails with when a newer epoch has committed.
const STALE_EPOCH: &str = "TF001";

/// A failed statement, with a refusal by the epoch fence told apart.
fn fenced(e: sqlx::Error) -> SagaStoreError {
    match &e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some(STALE_EPOCH) => {
            SagaStoreError::StaleEpoch
        }
        _ => backend(e),
    }
}

/// One statement, so one round trip and its own commit: the epoch fence (`tether_fence`,
/// whose lock lasts until that commit), the conditional saga update, then the log insert
/// only if that update matched.
pub(super) async fn record(
    pool: &Pool,
    id: SagaId,
    lease: &Lease,
    ttl: Duration,
    events: &[SagaEvent],
    state: Option<(SagaState, Option<&StepError>)>,
    epoch: Epoch,
) -> Result<Ack, SagaStoreError> {
    let row: Option<(bool,)> = sqlx::query_as(
        "with f as materialized (select tether_fence($8) as ok), s as (
            update saga set lease_expires_at = now() + make_interval(secs => $4),
                state = coalesce($5, state), error = coalesce($6, error), updated_at = now(),
                epoch = $8
            where id = $1 and owner = $2 and generation = $3
              and state in ('running', 'unwinding', 'stuck') and (select ok from f)
            returning cancel_requested
         ), e as (
            insert into saga_event (saga_id, step, kind, data)
            select $1, x.step, x.kind, x.data
            from jsonb_to_recordset($7) as x(step text, kind text, data jsonb)
            where exists (select 1 from s)
            on conflict do nothing
         )
         select cancel_requested from s",
    )
    .bind(id.as_uuid())
    .bind(lease.owner.as_str())
    .bind(lease.generation)
    .bind(ttl.as_secs_f64())
    .bind(state.map(|(s, _)| s.as_str()))
    .bind(state.and_then(|(_, e)| e).map(step_error_json))
    .bind(events_json(events))
    .bind(epoch.as_i64())
    .fetch_optional(pool)
    .await
    .map_err(fenced)?;
    let (cancel_requested,) = row.ok_or(SagaStoreError::Fenced)?;
    Ok(Ack { cancel_requested })
}

/// Ends the saga, its operation and the linker's state in one call (`tether_end_saga`,
/// migration 20261204000000), so in one commit.
pub(super) async fn finish(
    pool: &Pool,
    id: SagaId,
    lease: &Lease,
    events: &[SagaEvent],
    outcome: &SagaOutcome,
    epoch: Epoch,
) -> Result<Ended, SagaStoreError> {
    let error = match outcome {
        SagaOutcome::Succeeded(_) => None,
        SagaOutcome::Failed(e) | SagaOutcome::Canceled(e) => Some(step_error_json(e)),
    };
    let (chain_waits,): (Option<bool>,) =
        sqlx::query_as("select tether_end_saga($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(id.as_uuid())
            .bind(lease.owner.as_str())
            .bind(lease.generation)
            .bind(outcome.state().as_str())
            .bind(error)
            .bind(epoch.as_i64())
            .bind(events_json(events))
            .bind(Json(Completion::by_kind(outcome)))
            .fetch_one(pool)
            .await
            .map_err(fenced)?;
    let chain_waits = chain_waits.ok_or(SagaStoreError::Fenced)?;
    Ok(Ended { chain_waits })
}

pub(super) async fn renew(
    pool: &Pool,
    owner: &InstanceId,
    ids: &[SagaId],
    ttl: Duration,
) -> Result<Vec<SagaId>, SagaStoreError> {
    let ids: Vec<Uuid> = ids.iter().map(|i| i.as_uuid()).collect();
    let held: Vec<(Uuid,)> = sqlx::query_as(
        "update saga set lease_expires_at = now() + make_interval(secs => $3)
         where owner = $1 and id = any($2) and state in ('running', 'unwinding')
         returning id",
    )
    .bind(owner.as_str())
    .bind(&ids)
    .bind(ttl.as_secs_f64())
    .fetch_all(pool)
    .await
    .map_err(backend)?;
    Ok(held
        .into_iter()
        .map(|(id,)| SagaId::from_uuid(id))
        .collect())
}

pub(super) async fn adopt_expired(
    pool: &Pool,
    owner: &InstanceId,
    ttl: Duration,
    limit: u32,
) -> Result<Vec<(SagaId, Lease)>, SagaStoreError> {
    let adopted: Vec<(Uuid, i64)> = sqlx::query_as(
        "with due as (
            select s.id from saga s
            where s.state in ('running', 'unwinding', 'stuck') and s.lease_expires_at < now()
              and not exists (select 1 from saga b where b.id = s.blocked_by
                              and b.state in ('running', 'unwinding', 'stuck'))
            order by s.lease_expires_at
            limit $3
            for update of s skip locked
         )
         update saga s set owner = $1, generation = s.generation + 1,
             lease_expires_at = now() + make_interval(secs => $2),
             state = case when s.state = 'stuck' then 'unwinding' else s.state end,
             updated_at = now()
         from due where s.id = due.id
         returning s.id, s.generation",
    )
    .bind(owner.as_str())
    .bind(ttl.as_secs_f64())
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(backend)?;
    Ok(adopted
        .into_iter()
        .map(|(id, generation)| {
            let lease = Lease {
                owner: owner.clone(),
                generation,
            };
            (SagaId::from_uuid(id), lease)
        })
        .collect())
}

pub(super) async fn release(
    pool: &Pool,
    id: SagaId,
    lease: &Lease,
    after: Duration,
) -> Result<(), SagaStoreError> {
    sqlx::query(
        "update saga set lease_expires_at = now() + make_interval(secs => $4)
         where id = $1 and owner = $2 and generation = $3 and state in ('running', 'unwinding')",
    )
    .bind(id.as_uuid())
    .bind(lease.owner.as_str())
    .bind(lease.generation)
    .bind(after.as_secs_f64())
    .execute(pool)
    .await
    .map_err(backend)?;
    Ok(())
}

pub(super) async fn release_all(pool: &Pool, owner: &InstanceId) -> Result<(), SagaStoreError> {
    sqlx::query(
        "update saga set lease_expires_at = now() where owner = $1 and state in ('running', 'unwinding')",
    )
    .bind(owner.as_str())
    .execute(pool)
    .await
    .map_err(backend)?;
    Ok(())
}

pub(super) async fn list(
    pool: &Pool,
    state: Option<SagaState>,
    limit: u32,
) -> Result<Vec<crate::SagaSummary>, StoreError> {
    let rows: Vec<SagaSummaryRow> = sqlx::query_as(&format!(
        "{SAGA_SUMMARY_SELECT},
            (extract(epoch from s.lease_expires_at) * 1000)::bigint as lease_expires_ms
         from saga s left join operation o on o.saga_id = s.id
         where ($1::text is null and s.state in ('running', 'unwinding', 'stuck')) or s.state = $1
         order by s.updated_at desc limit $2"
    ))
    .bind(state.map(SagaState::as_str))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(SagaSummaryRow::into_summary).collect())
}

pub(super) async fn retry_now(pool: &Pool, id: SagaId) -> Result<bool, StoreError> {
    let done =
        sqlx::query("update saga set lease_expires_at = now() where id = $1 and state = 'stuck'")
            .bind(id.as_uuid())
            .execute(pool)
            .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn counts(pool: &Pool) -> Result<Vec<(SagaState, u64)>, StoreError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "select state, count(*) from saga where state in ('running', 'unwinding', 'stuck') group by state",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(state, n)| {
            let state = SagaState::parse(&state).ok_or_else(|| corrupt("saga.state", &state))?;
            Ok((state, u64::try_from(n).unwrap_or_default()))
        })
        .collect()
}

pub(super) async fn purge(pool: &Pool, older_than: Duration) -> Result<crate::Purged, StoreError> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.raw.begin().await?;
    let old = "select id from saga where state in ('succeeded', 'failed', 'canceled')
               and updated_at < now() - make_interval(secs => $1)";
    let operations = sqlx::query(&format!("delete from operation where saga_id in ({old})"))
        .bind(older_than.as_secs_f64())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let sagas = sqlx::query(&format!("delete from saga where id in ({old})"))
        .bind(older_than.as_secs_f64())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(crate::Purged { operations, sagas })
}
