//! Saga SQL for SQLite. Every write is conditional on (owner, generation) and an unfinished
//! state; log entries are keyed by (saga, step, kind) and inserted with `on conflict do nothing`.

use std::time::Duration;

use chrono::Utc;
use sqlx::types::Json;
use sqlx::{Sqlite, SqlitePool, Transaction};
use tether_model::fencing::Epoch;
use tether_model::ids::{InstanceId, SagaId};
use tether_model::operation::OperationKind;
use tether_saga::{
    Ack, Ended, Lease, SagaEvent, SagaOutcome, SagaRecord, SagaState, SagaStoreError, StepError,
};
use uuid::Uuid;

use super::linker::{record_applied, release_items};
use super::{ms, now_ms};
use crate::StoreError;
use crate::rows::{
    Completion, EventRow, LinkerEffect, SAGA_COLUMNS, SAGA_SUMMARY_SELECT, SagaRow, SagaSummaryRow,
    backend, corrupt, step_error_json,
};

const UNFINISHED: &str = "state in ('running', 'unwinding', 'stuck')";

pub(super) async fn load(
    pool: &SqlitePool,
    id: SagaId,
) -> Result<(SagaRecord, Vec<SagaEvent>), SagaStoreError> {
    let row: Option<SagaRow> =
        sqlx::query_as(&format!("select {SAGA_COLUMNS} from saga where id = ?1"))
            .bind(id.as_uuid())
            .fetch_optional(pool)
            .await
            .map_err(backend)?;
    let record = SagaRecord::try_from(row.ok_or(SagaStoreError::NotFound)?).map_err(backend)?;
    let events: Vec<EventRow> =
        sqlx::query_as("select step, kind, data from saga_event where saga_id = ?1 order by rowid")
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

async fn append(
    tx: &mut Transaction<'_, Sqlite>,
    id: SagaId,
    events: &[SagaEvent],
) -> Result<(), SagaStoreError> {
    let now = Utc::now();
    for event in events {
        sqlx::query(
            "insert into saga_event (saga_id, step, kind, data, created_at) values (?1, ?2, ?3, ?4, ?5)
             on conflict do nothing",
        )
        .bind(id.as_uuid())
        .bind(&event.step)
        .bind(event.kind.as_str())
        .bind(event.data.as_ref().map(Json))
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    }
    Ok(())
}

/// Raises the stored epoch to `epoch` if it is newer, and refuses `epoch` if a newer one is
/// stored (SQLite has one writer: the check and the caller's commit are not interleaved).
async fn check_epoch(tx: &mut Transaction<'_, Sqlite>, epoch: Epoch) -> Result<(), SagaStoreError> {
    let (stored,): (i64,) =
        sqlx::query_as("update saga_fence set epoch = max(epoch, ?1) where id = 1 returning epoch")
            .bind(epoch.as_i64())
            .fetch_one(&mut **tx)
            .await
            .map_err(backend)?;
    if stored > epoch.as_i64() {
        return Err(SagaStoreError::StaleEpoch);
    }
    Ok(())
}

pub(super) async fn record(
    pool: &SqlitePool,
    id: SagaId,
    lease: &Lease,
    ttl: Duration,
    events: &[SagaEvent],
    state: Option<(SagaState, Option<&StepError>)>,
    epoch: Epoch,
) -> Result<Ack, SagaStoreError> {
    let mut tx = super::write_tx(pool).await.map_err(backend)?;
    check_epoch(&mut tx, epoch).await?;
    let row: Option<(bool,)> = sqlx::query_as(&format!(
        "update saga set lease_expires_ms = ?4, state = coalesce(?5, state), error = coalesce(?6, error),
            updated_at = ?7, epoch = ?8
         where id = ?1 and owner = ?2 and generation = ?3 and {UNFINISHED}
         returning cancel_requested"
    ))
    .bind(id.as_uuid())
    .bind(lease.owner.as_str())
    .bind(lease.generation)
    .bind(now_ms() + ms(ttl))
    .bind(state.map(|(s, _)| s.as_str()))
    .bind(state.and_then(|(_, e)| e).map(step_error_json))
    .bind(Utc::now())
    .bind(epoch.as_i64())
    .fetch_optional(&mut *tx)
    .await
    .map_err(backend)?;
    let (cancel_requested,) = row.ok_or(SagaStoreError::Fenced)?;
    append(&mut tx, id, events).await?;
    tx.commit().await.map_err(backend)?;
    Ok(Ack { cancel_requested })
}

pub(super) async fn finish(
    pool: &SqlitePool,
    id: SagaId,
    lease: &Lease,
    events: &[SagaEvent],
    outcome: &SagaOutcome,
    epoch: Epoch,
) -> Result<Ended, SagaStoreError> {
    let mut tx = super::write_tx(pool).await.map_err(backend)?;
    check_epoch(&mut tx, epoch).await?;
    let now = Utc::now();
    let error = match outcome {
        SagaOutcome::Succeeded(_) => None,
        SagaOutcome::Failed(e) | SagaOutcome::Canceled(e) => Some(step_error_json(e)),
    };
    let ended: Option<(bool,)> = sqlx::query_as(&format!(
        "update saga set state = ?4, error = coalesce(?5, error), updated_at = ?6, epoch = ?7
         where id = ?1 and owner = ?2 and generation = ?3 and {UNFINISHED}
         returning exists (select 1 from saga b where b.chain = saga.chain and b.id <> saga.id
                           and b.{UNFINISHED})"
    ))
    .bind(id.as_uuid())
    .bind(lease.owner.as_str())
    .bind(lease.generation)
    .bind(outcome.state().as_str())
    .bind(error)
    .bind(now)
    .bind(epoch.as_i64())
    .fetch_optional(&mut *tx)
    .await
    .map_err(backend)?;
    let (chain_waits,) = ended.ok_or(SagaStoreError::Fenced)?;
    append(&mut tx, id, events).await?;

    let op: Option<(Uuid, String, Uuid)> =
        sqlx::query_as("select id, kind, linker_id from operation where saga_id = ?1")
            .bind(id.as_uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
    if let Some((op_id, kind, linker_id)) = op {
        let kind =
            OperationKind::parse(&kind).ok_or_else(|| backend(corrupt("operation.kind", &kind)))?;
        let done = Completion::of(kind, outcome).map_err(backend)?;
        sqlx::query("update operation set status = ?2, error = ?3, result = ?4, end_time = ?5 where id = ?1")
            .bind(op_id)
            .bind(done.status.as_str())
            .bind(done.error)
            .bind(done.result)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let linker_sql = match done.linker {
            LinkerEffect::None => None,
            LinkerEffect::Settle(state) => Some((
                "update linker set operation_id = next_operation_id, next_operation_id = null,
                    provisioning_state = case when next_operation_id is null then ?3 else 'Deleting' end,
                    previous_properties = null, previous_secret = null, previous_keys = null,
                    previous_spec = null,
                    generation = generation + 1, updated_at = ?4
                 where id = ?1 and operation_id = ?2",
                Some(state),
            )),
            LinkerEffect::Revert(state) => Some((
                "update linker set properties = coalesce(previous_properties, properties),
                    secret = case when previous_properties is null then secret else previous_secret end,
                    keys = coalesce(previous_keys, keys),
                    spec = case when previous_properties is null then spec else previous_spec end,
                    operation_id = next_operation_id, next_operation_id = null,
                    provisioning_state = case when next_operation_id is null then ?3 else 'Deleting' end,
                    previous_properties = null, previous_secret = null, previous_keys = null,
                    previous_spec = null,
                    generation = generation + 1, updated_at = ?4
                 where id = ?1 and operation_id = ?2",
                Some(state),
            )),
            LinkerEffect::Remove => Some(("delete from linker where id = ?1 and operation_id = ?2", None)),
        };
        if let Some(applied) = &done.applied {
            record_applied(&mut tx, linker_id, op_id, applied)
                .await
                .map_err(backend)?;
        }
        if matches!(done.linker, LinkerEffect::Remove) {
            release_items(&mut tx, linker_id).await.map_err(backend)?;
        }
        if let Some((sql, state)) = linker_sql {
            let mut q = sqlx::query(sql).bind(linker_id).bind(op_id);
            if let Some(state) = state {
                q = q.bind(state.as_str()).bind(now);
            }
            q.execute(&mut *tx).await.map_err(backend)?;
        }
    }
    tx.commit().await.map_err(backend)?;
    Ok(Ended { chain_waits })
}

pub(super) async fn renew(
    pool: &SqlitePool,
    owner: &InstanceId,
    ids: &[SagaId],
    ttl: Duration,
) -> Result<Vec<SagaId>, SagaStoreError> {
    let ids: Vec<String> = ids
        .iter()
        .map(|i| i.as_uuid().simple().to_string())
        .collect();
    let held: Vec<(Uuid,)> = sqlx::query_as(
        "update saga set lease_expires_ms = ?3
         where owner = ?1 and lower(hex(id)) in (select value from json_each(?2))
           and state in ('running', 'unwinding')
         returning id",
    )
    .bind(owner.as_str())
    .bind(Json(&ids))
    .bind(now_ms() + ms(ttl))
    .fetch_all(pool)
    .await
    .map_err(backend)?;
    Ok(held
        .into_iter()
        .map(|(id,)| SagaId::from_uuid(id))
        .collect())
}

pub(super) async fn adopt_expired(
    pool: &SqlitePool,
    owner: &InstanceId,
    ttl: Duration,
    limit: u32,
) -> Result<Vec<(SagaId, Lease)>, SagaStoreError> {
    // The single writer connection serializes this with every other write.
    let adopted: Vec<(Uuid, i64)> = sqlx::query_as(&format!(
        "update saga set owner = ?1, generation = generation + 1, lease_expires_ms = ?2,
            state = case when state = 'stuck' then 'unwinding' else state end, updated_at = ?5
         where id in (
            select s.id from saga s where s.{UNFINISHED} and s.lease_expires_ms < ?3
              and not exists (select 1 from saga b where b.id = s.blocked_by and b.{UNFINISHED})
            order by s.lease_expires_ms limit ?4
         )
         returning id, generation"
    ))
    .bind(owner.as_str())
    .bind(now_ms() + ms(ttl))
    .bind(now_ms())
    .bind(i64::from(limit))
    .bind(Utc::now())
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
    pool: &SqlitePool,
    id: SagaId,
    lease: &Lease,
    after: Duration,
) -> Result<(), SagaStoreError> {
    sqlx::query(
        "update saga set lease_expires_ms = ?4
         where id = ?1 and owner = ?2 and generation = ?3 and state in ('running', 'unwinding')",
    )
    .bind(id.as_uuid())
    .bind(lease.owner.as_str())
    .bind(lease.generation)
    .bind(now_ms().saturating_add(ms(after)))
    .execute(pool)
    .await
    .map_err(backend)?;
    Ok(())
}

pub(super) async fn release_all(
    pool: &SqlitePool,
    owner: &InstanceId,
) -> Result<(), SagaStoreError> {
    sqlx::query("update saga set lease_expires_ms = ?2 where owner = ?1 and state in ('running', 'unwinding')")
        .bind(owner.as_str())
        .bind(now_ms())
        .execute(pool)
        .await
        .map_err(backend)?;
    Ok(())
}

pub(super) async fn list(
    pool: &SqlitePool,
    state: Option<SagaState>,
    limit: u32,
) -> Result<Vec<crate::SagaSummary>, StoreError> {
    let rows: Vec<SagaSummaryRow> = sqlx::query_as(&format!(
        "{SAGA_SUMMARY_SELECT}, s.lease_expires_ms
         from saga s left join operation o on o.saga_id = s.id
         where (?1 is null and s.{UNFINISHED}) or s.state = ?1
         order by s.updated_at desc limit ?2"
    ))
    .bind(state.map(SagaState::as_str))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(SagaSummaryRow::into_summary).collect())
}

pub(super) async fn retry_now(pool: &SqlitePool, id: SagaId) -> Result<bool, StoreError> {
    let done =
        sqlx::query("update saga set lease_expires_ms = ?2 where id = ?1 and state = 'stuck'")
            .bind(id.as_uuid())
            .bind(now_ms())
            .execute(pool)
            .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn counts(pool: &SqlitePool) -> Result<Vec<(SagaState, u64)>, StoreError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
        "select state, count(*) from saga where {UNFINISHED} group by state"
    ))
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(state, n)| {
            let state = SagaState::parse(&state).ok_or_else(|| corrupt("saga.state", &state))?;
            Ok((state, u64::try_from(n).unwrap_or_default()))
        })
        .collect()
}

pub(super) async fn purge(
    pool: &SqlitePool,
    older_than: Duration,
) -> Result<crate::Purged, StoreError> {
    let mut tx = super::write_tx(pool).await?;
    let cutoff =
        Utc::now() - chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
    let old = "select id from saga where state in ('succeeded', 'failed', 'canceled') and updated_at < ?1";
    let operations = sqlx::query(&format!("delete from operation where saga_id in ({old})"))
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let sagas = sqlx::query(&format!("delete from saga where id in ({old})"))
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(crate::Purged { operations, sagas })
}
