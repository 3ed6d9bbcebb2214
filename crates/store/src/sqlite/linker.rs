//! Linker and operation SQL for SQLite.

use chrono::Utc;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{Sqlite, SqlitePool, Transaction};
use tether_model::ids::{LinkerId, LinkerRef, OperationId, ResourceId};
use tether_model::linker::{Linker, TargetService};
use tether_model::operation::Operation;
use tether_saga::NewSaga;
use uuid::Uuid;

use super::{ms, now_ms};
use crate::rows::{
    AppliedRows, LINKER_COLUMNS, LinkerRow, LinkerValues, OPERATION_SELECT, OperationRow,
    OtherKeys, check_keys, to_json,
};
use crate::{AppliedRecord, Begun, LinkerChange, OperationBegin, StoreError};

pub(super) async fn get(pool: &SqlitePool, at: &LinkerRef) -> Result<Option<Linker>, StoreError> {
    let row: Option<LinkerRow> = sqlx::query_as(&format!(
        "select {LINKER_COLUMNS} from linker where scope_key = ?1 and name_key = ?2"
    ))
    .bind(at.scope.key())
    .bind(at.name.key())
    .fetch_optional(pool)
    .await?;
    row.map(Linker::try_from).transpose()
}

pub(super) async fn list(
    pool: &SqlitePool,
    scope: &ResourceId,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<Linker>, StoreError> {
    let rows: Vec<LinkerRow> = sqlx::query_as(&format!(
        "select {LINKER_COLUMNS} from linker
         where scope_key = ?1 and (?2 is null or name_key > ?2)
         order by name_key limit ?3"
    ))
    .bind(scope.key())
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(Linker::try_from).collect()
}

pub(super) async fn targets(
    pool: &SqlitePool,
    scope: &ResourceId,
    kinds: &[String],
) -> Result<Vec<TargetService>, StoreError> {
    let rows: Vec<(Option<Json<TargetService>>,)> = sqlx::query_as(
        "select * from (select json_extract(properties, '$.targetService') from linker
                        where scope_key = ?1
                          and json_extract(spec, '$.kind') in (select value from json_each(?2))
                        limit 1)
         union all
         select json_extract(properties, '$.targetService') from linker
         where scope_key = ?1 and spec is null",
    )
    .bind(scope.key())
    .bind(Json(kinds))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().filter_map(|(t,)| t.map(|t| t.0)).collect())
}

pub(super) async fn operation_get(
    pool: &SqlitePool,
    id: OperationId,
) -> Result<Option<Operation>, StoreError> {
    let row: Option<OperationRow> = sqlx::query_as(&format!("{OPERATION_SELECT} where o.id = ?1"))
        .bind(id.as_uuid())
        .fetch_optional(pool)
        .await?;
    row.map(Operation::try_from).transpose()
}

pub(super) async fn operation_begin(
    pool: &SqlitePool,
    begin: &OperationBegin,
) -> Result<Begun, StoreError> {
    let mut tx = super::write_tx(pool).await?;
    let queued = insert_saga(&mut tx, &begin.saga).await?;
    let op = &begin.operation;
    let now = Utc::now();
    let conflict = || StoreError::Conflict("the linker was modified or is busy");
    match &begin.change {
        LinkerChange::Create { linker, keys } => {
            // The name first: a retried create must learn that its linker exists (and
            // find its operation), not that "another" linker holds its keys.
            insert_linker(&mut tx, linker, keys).await?;
            check_keys(keys, other_keys(&mut tx, linker, keys).await?)?;
        }
        LinkerChange::Update {
            linker,
            expected_generation,
            keys,
        } => {
            check_keys(keys, other_keys(&mut tx, linker, keys).await?)?;
            let v = LinkerValues::of(linker);
            let done = sqlx::query(
                "update linker set scope = ?2, name = ?3, properties = ?4, secret = ?5,
                    provisioning_state = ?6, system_data = ?7, generation = ?8, operation_id = ?9,
                    keys = ?12, spec = ?13, previous_properties = properties,
                    previous_secret = secret, previous_keys = keys, previous_spec = spec,
                    updated_at = ?11
                 where id = ?1 and generation = ?10 and operation_id is null",
            )
            .bind(v.id)
            .bind(&v.scope)
            .bind(&v.name)
            .bind(&v.properties)
            .bind(&v.secret)
            .bind(v.provisioning_state)
            .bind(&v.system_data)
            .bind(v.generation)
            .bind(v.operation_id)
            .bind(expected_generation)
            .bind(now)
            .bind(Json(keys))
            .bind(&v.spec)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(conflict());
            }
        }
        LinkerChange::Delete {
            id,
            expected_generation,
        } => {
            let done = sqlx::query(
                "update linker set provisioning_state = 'Deleting', operation_id = ?2,
                    generation = generation + 1, updated_at = ?4
                 where id = ?1 and generation = ?3 and operation_id is null",
            )
            .bind(id.as_uuid())
            .bind(op.id.as_uuid())
            .bind(expected_generation)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(conflict());
            }
        }
        LinkerChange::CancelAndDelete {
            id,
            expected_generation,
        } => {
            let running: Option<(Uuid,)> = sqlx::query_as(
                "update linker set next_operation_id = ?2, generation = generation + 1, updated_at = ?4
                 where id = ?1 and generation = ?3 and operation_id is not null and next_operation_id is null
                 returning operation_id",
            )
            .bind(id.as_uuid())
            .bind(op.id.as_uuid())
            .bind(expected_generation)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let (running,) = running.ok_or_else(conflict)?;
            sqlx::query(
                "update saga set cancel_requested = 1, updated_at = ?2
                 where id = (select saga_id from operation where id = ?1) and state = 'running'",
            )
            .bind(running)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        LinkerChange::Nothing => {}
    }
    sqlx::query(
        "insert into operation (id, kind, linker_id, subscription, resource_id, saga_id, status, start_time)
         values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .bind(op.id.as_uuid())
    .bind(op.kind.as_str())
    .bind(op.linker_id.as_uuid())
    .bind(&op.subscription)
    .bind(&op.resource_id)
    .bind(begin.saga.id.as_uuid())
    .bind(op.status.as_str())
    .bind(op.start_time)
    .execute(&mut *tx)
    .await?;
    if let Some(record) = &begin.audit {
        super::authz::audit_append(&mut *tx, record).await?;
    }
    tx.commit().await?;
    Ok(Begun { queued })
}

/// The (name, keys, keys before a running update) of the source's other linkers that hold
/// one of `mine` (ASCII case-insensitively, as `check_keys` compares): the database filters,
/// so the answer stays small however many linkers the source has (the single writer
/// serializes this check with every other write).
async fn other_keys(
    tx: &mut Transaction<'_, Sqlite>,
    linker: &Linker,
    mine: &[String],
) -> Result<Vec<OtherKeys>, StoreError> {
    if mine.is_empty() {
        return Ok(Vec::new());
    }
    let wanted: Vec<String> = mine.iter().map(|k| k.to_ascii_lowercase()).collect();
    // SQLite's lower() folds ASCII only, as check_keys compares.
    Ok(sqlx::query_as(
        "select name, keys, previous_keys from linker
         where scope_key = ?1 and id <> ?2
           and exists (select 1 from json_each(keys) as k
                       where lower(k.value) in (select value from json_each(?3))
                       union all
                       select 1 from json_each(coalesce(previous_keys, '[]')) as p
                       where lower(p.value) in (select value from json_each(?3)))",
    )
    .bind(linker.at.scope.key())
    .bind(linker.id.as_uuid())
    .bind(Json(&wanted))
    .fetch_all(&mut **tx)
    .await?)
}

async fn insert_linker(
    tx: &mut Transaction<'_, Sqlite>,
    linker: &Linker,
    keys: &[String],
) -> Result<(), StoreError> {
    let v = LinkerValues::of(linker);
    let now = Utc::now();
    let inserted = sqlx::query(
        "insert into linker (id, scope_key, name_key, scope, name, properties, secret, key_naming,
            provisioning_state, system_data, generation, operation_id, keys, spec, created_at,
            updated_at)
         values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?14, ?15, ?13, ?13)
         on conflict (scope_key, name_key) do nothing",
    )
    .bind(v.id)
    .bind(&v.scope_key)
    .bind(&v.name_key)
    .bind(&v.scope)
    .bind(&v.name)
    .bind(&v.properties)
    .bind(&v.secret)
    .bind(&v.key_naming)
    .bind(v.provisioning_state)
    .bind(&v.system_data)
    .bind(v.generation)
    .bind(v.operation_id)
    .bind(now)
    .bind(Json(keys))
    .bind(&v.spec)
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::LinkerExists);
    }
    Ok(())
}

/// Inserts the saga and its first log entry, queued behind its chain's tail (the unfinished
/// saga of the chain nothing waits for yet) when there is one; a queued saga's lease is
/// expired at once so whichever replica finishes the tail adopts it. Returns whether it is
/// queued.
async fn insert_saga(tx: &mut Transaction<'_, Sqlite>, saga: &NewSaga) -> Result<bool, StoreError> {
    let now = Utc::now();
    let blocked_by: Option<Uuid> = match &saga.chain {
        None => None,
        Some(chain) => sqlx::query_as::<_, (Uuid,)>(
            "select s.id from saga s
             where s.chain = ?1 and s.state in ('running', 'unwinding', 'stuck')
               and not exists (select 1 from saga t where t.blocked_by = s.id
                               and t.state in ('running', 'unwinding', 'stuck'))
             limit 1",
        )
        .bind(chain)
        .fetch_optional(&mut **tx)
        .await?
        .map(|(id,)| id),
    };
    let lease = if blocked_by.is_some() {
        now_ms()
    } else {
        now_ms() + ms(saga.lease_ttl)
    };
    sqlx::query(
        "insert into saga (id, name, params, state, owner, generation, lease_expires_ms, chain, blocked_by,
            created_at, updated_at)
         values (?1, ?2, ?3, 'running', ?4, 1, ?5, ?6, ?7, ?8, ?8)",
    )
    .bind(saga.id.as_uuid())
    .bind(&saga.name)
    .bind(Json(&saga.params))
    .bind(saga.owner.as_str())
    .bind(lease)
    .bind(&saga.chain)
    .bind(blocked_by)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query("insert into saga_event (saga_id, step, kind, data, created_at) values (?1, ?2, ?3, ?4, ?5)")
        .bind(saga.id.as_uuid())
        .bind(&saga.first_event.step)
        .bind(saga.first_event.kind.as_str())
        .bind(saga.first_event.data.as_ref().map(|d| Json(to_json(d))))
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(blocked_by.is_some())
}

/// What a linker's last successful create or update applied, with the keys it may remove.
pub(super) async fn applied(
    pool: &SqlitePool,
    id: LinkerId,
) -> Result<Option<AppliedRecord>, StoreError> {
    let row: Option<(Option<Json<Value>>,)> =
        sqlx::query_as("select applied from linker where id = ?1")
            .bind(id.as_uuid())
            .fetch_optional(pool)
            .await?;
    let Some((Some(Json(record)),)) = row else {
        return Ok(None);
    };
    let created: Vec<(String,)> =
        sqlx::query_as("select item_key from linker_item where linker_id = ?1 and created")
            .bind(id.as_uuid())
            .fetch_all(pool)
            .await?;
    Ok(Some(AppliedRecord {
        record,
        created: created.into_iter().map(|(k,)| k).collect(),
    }))
}

/// Which of `keys` another linker holds.
pub(super) async fn held_elsewhere(
    pool: &SqlitePool,
    id: LinkerId,
    keys: &[String],
) -> Result<Vec<String>, StoreError> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "select distinct item_key from linker_item
         where item_key in (select value from json_each(?2)) and linker_id <> ?1
         order by item_key",
    )
    .bind(id.as_uuid())
    .bind(Json(keys))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(k,)| k).collect())
}

/// Keeps a successful create's or update's applied record with its linker (still running
/// operation `op`) and replaces the linker's items.
pub(super) async fn record_applied(
    tx: &mut Transaction<'_, Sqlite>,
    linker: Uuid,
    op: Uuid,
    applied: &AppliedRows,
) -> Result<(), StoreError> {
    let done = sqlx::query("update linker set applied = ?3 where id = ?1 and operation_id = ?2")
        .bind(linker)
        .bind(op)
        .bind(&applied.record)
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(());
    }
    release_items(tx, linker).await?;
    sqlx::query("delete from linker_item where linker_id = ?1")
        .bind(linker)
        .execute(&mut **tx)
        .await?;
    for (key, created) in applied.keys.iter().zip(&applied.created) {
        sqlx::query(
            "insert into linker_item (linker_id, item_key, created)
             values (?1, ?2, ?3 or exists (select 1 from linker_item h where h.item_key = ?2 and h.created))
             on conflict do nothing",
        )
        .bind(linker)
        .bind(key)
        .bind(created)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Hands the items a linker created to the other linkers that hold them, so the last holder
/// removes them.
pub(super) async fn release_items(
    tx: &mut Transaction<'_, Sqlite>,
    linker: Uuid,
) -> Result<(), StoreError> {
    sqlx::query(
        "update linker_item set created = 1
         where linker_id <> ?1 and not created
           and item_key in (select item_key from linker_item where linker_id = ?1 and created)",
    )
    .bind(linker)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
