//! Linker and operation SQL for Postgres.

use serde_json::Value;
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::types::Json;
use sqlx::{Connection as _, Postgres, Transaction};
use tether_model::ids::{LinkerId, LinkerRef, OperationId, ResourceId};
use tether_model::linker::{Linker, TargetService};
use tether_model::operation::Operation;
use tether_saga::NewSaga;
use uuid::Uuid;

use super::authz::{AuditRow, audit_append};
use super::pool::Pool;
use crate::rows::{
    LINKER_COLUMNS, LinkerRow, LinkerValues, OPERATION_SELECT, OperationRow, OtherKeys, check_keys,
    to_json,
};
use crate::{AppliedRecord, Begun, LinkerChange, OperationBegin, StoreError};

pub(super) async fn get(pool: &Pool, at: &LinkerRef) -> Result<Option<Linker>, StoreError> {
    let row: Option<LinkerRow> = sqlx::query_as(&format!(
        "select {LINKER_COLUMNS} from linker where scope_key = $1 and name_key = $2"
    ))
    .bind(at.scope.key())
    .bind(at.name.key())
    .fetch_optional(pool)
    .await?;
    row.map(Linker::try_from).transpose()
}

pub(super) async fn list(
    pool: &Pool,
    scope: &ResourceId,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<Linker>, StoreError> {
    let rows: Vec<LinkerRow> = sqlx::query_as(&format!(
        "select {LINKER_COLUMNS} from linker
         where scope_key = $1 and ($2::text is null or name_key > $2)
         order by name_key limit $3"
    ))
    .bind(scope.key())
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(Linker::try_from).collect()
}

pub(super) async fn targets(
    pool: &Pool,
    scope: &ResourceId,
    kinds: &[String],
) -> Result<Vec<TargetService>, StoreError> {
    let rows: Vec<(Option<Json<TargetService>>,)> = sqlx::query_as(
        "(select properties->'targetService' from linker
          where scope_key = $1 and spec->>'kind' = any($2) limit 1)
         union all
         select properties->'targetService' from linker where scope_key = $1 and spec is null",
    )
    .bind(scope.key())
    .bind(kinds)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().filter_map(|(t,)| t.map(|t| t.0)).collect())
}

pub(super) async fn operation_get(
    pool: &Pool,
    id: OperationId,
) -> Result<Option<Operation>, StoreError> {
    let row: Option<OperationRow> = sqlx::query_as(&format!("{OPERATION_SELECT} where o.id = $1"))
        .bind(id.as_uuid())
        .fetch_optional(pool)
        .await?;
    row.map(Operation::try_from).transpose()
}

pub(super) async fn operation_begin(
    pool: &Pool,
    begin: &OperationBegin,
) -> Result<Begun, StoreError> {
    // A create, the hot path, is one call; the other changes are a transaction of a few
    // statements.
    if let LinkerChange::Create { linker, keys } = &begin.change {
        return begin_create(pool, begin, linker, keys).await;
    }
    let mut conn = pool.acquire().await?;
    let mut tx = conn.raw.begin().await?;
    let queued = insert_saga(&mut tx, &begin.saga).await?;
    let op = &begin.operation;
    let conflict = || StoreError::Conflict("the linker was modified or is busy");
    match &begin.change {
        LinkerChange::Update {
            linker,
            expected_generation,
            keys,
        } => {
            check_keys(keys, other_keys(&mut tx, linker, keys).await?)?;
            let v = LinkerValues::of(linker);
            let done = sqlx::query(
                "update linker set scope = $2, name = $3, properties = $4, secret = $5,
                    provisioning_state = $6, system_data = $7, generation = $8, operation_id = $9,
                    keys = $11, spec = $12, previous_properties = properties,
                    previous_secret = secret, previous_keys = keys, previous_spec = spec,
                    updated_at = now()
                 where id = $1 and generation = $10 and operation_id is null",
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
                "update linker set provisioning_state = 'Deleting', operation_id = $2,
                    generation = generation + 1, updated_at = now()
                 where id = $1 and generation = $3 and operation_id is null",
            )
            .bind(id.as_uuid())
            .bind(op.id.as_uuid())
            .bind(expected_generation)
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
                "update linker set next_operation_id = $2, generation = generation + 1, updated_at = now()
                 where id = $1 and generation = $3 and operation_id is not null and next_operation_id is null
                 returning operation_id",
            )
            .bind(id.as_uuid())
            .bind(op.id.as_uuid())
            .bind(expected_generation)
            .fetch_optional(&mut *tx)
            .await?;
            let (running,) = running.ok_or_else(conflict)?;
            sqlx::query(
                "update saga set cancel_requested = true, updated_at = now()
                 where id = (select saga_id from operation where id = $1) and state = 'running'",
            )
            .bind(running)
            .execute(&mut *tx)
            .await?;
        }
        // (A create was begun above.)
        LinkerChange::Create { .. } | LinkerChange::Nothing => {}
    }
    sqlx::query(
        "insert into operation (id, kind, linker_id, subscription, resource_id, saga_id, status, start_time)
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
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
        audit_append(&mut *tx, record).await?;
    }
    tx.commit().await?;
    Ok(Begun { queued })
}

/// The (name, keys, keys before a running update) of the source's other linkers that hold
/// one of `mine` (ASCII case-insensitively, as [`check_keys`] compares), found through the
/// `linker_key` index its trigger maintains: the cost stays flat however many linkers the
/// source has. Runs under the chain's lock, which serializes writers of one source.
async fn other_keys(
    tx: &mut Transaction<'_, Postgres>,
    linker: &Linker,
    mine: &[String],
) -> Result<Vec<OtherKeys>, StoreError> {
    if mine.is_empty() {
        return Ok(Vec::new());
    }
    let mine = lowercase(mine);
    // The index of `linker_key` first: `linker` is read only when another linker holds a
    // key, so a plan kept from when `linker` was small cannot make the common case scan it
    // (see migration 20261205000000).
    let held: bool = sqlx::query_scalar(
        "select exists (select 1 from linker_key
                        where scope_key = $1 and key = any($3) and linker_id <> $2)",
    )
    .bind(linker.at.scope.key())
    .bind(linker.id.as_uuid())
    .bind(&mine)
    .fetch_one(&mut **tx)
    .await?;
    if !held {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_as(
        // `= any(array(…))`, not `in (…)`: an index lookup by id, without the join search
        // that made planning cost five times the execution.
        "select name, keys, previous_keys from linker
         where id = any(array(select linker_id from linker_key
                              where scope_key = $1 and key = any($3)))
           and id <> $2",
    )
    .bind(linker.at.scope.key())
    .bind(linker.id.as_uuid())
    .bind(&mine)
    .fetch_all(&mut **tx)
    .await?)
}

/// A create in one call (`tether_begin_create`, migration 20261204000000): under the source's
/// lock, the name and key checks, then the linker, its saga, its operation and the request's
/// audit record, or nothing.
async fn begin_create(
    pool: &Pool,
    begin: &OperationBegin,
    linker: &Linker,
    keys: &[String],
) -> Result<Begun, StoreError> {
    let (saga, op) = (&begin.saga, &begin.operation);
    let v = LinkerValues::of(linker);
    let (outcome, queued, holders): (String, Option<bool>, Option<Json<Vec<OtherKeys>>>) =
        bind_saga(
            sqlx::query_as(
                "select outcome, queued, holders from tether_begin_create($1, $2, $3, $4, $5,
                    $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21,
                    $22, $23, $24, $25, $26, $27, $28, $29, $30::audit)",
            ),
            saga,
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
        .bind(Json(keys))
        .bind(&v.spec)
        .bind(lowercase(keys))
        .bind(op.id.as_uuid())
        .bind(op.kind.as_str())
        .bind(&op.subscription)
        .bind(&op.resource_id)
        .bind(op.status.as_str())
        .bind(op.start_time)
        .bind(begin.audit.as_ref().map(AuditRow::of))
        .fetch_one(pool)
        .await?;
    match outcome.as_str() {
        "created" => Ok(Begun {
            queued: queued.unwrap_or(false),
        }),
        "exists" => Err(StoreError::LinkerExists),
        "conflict" => {
            check_keys(keys, holders.map(|h| h.0).unwrap_or_default())?;
            Err(StoreError::Corrupt(
                "tether_begin_create: key holders that hold none of the keys".into(),
            ))
        }
        other => Err(StoreError::Corrupt(format!(
            "tether_begin_create: outcome {other}"
        ))),
    }
}

/// Keys as `linker_key` holds them (ASCII-lower-cased, as [`check_keys`] compares).
fn lowercase(keys: &[String]) -> Vec<String> {
    keys.iter().map(|k| k.to_ascii_lowercase()).collect()
}

/// Inserts the saga and its first log entry, queued behind its chain's tail if the chain has
/// one (`tether_begin_saga`, migration 20261203000000: one round trip). Returns whether it is
/// queued.
async fn insert_saga(
    tx: &mut Transaction<'_, Postgres>,
    saga: &NewSaga,
) -> Result<bool, StoreError> {
    let (queued,): (bool,) = bind_saga(
        sqlx::query_as("select tether_begin_saga($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
        saga,
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok(queued)
}

/// Binds a new saga as `tether_begin_saga` takes it (its first nine parameters).
fn bind_saga<'q, O>(
    query: QueryAs<'q, Postgres, O, PgArguments>,
    saga: &'q NewSaga,
) -> QueryAs<'q, Postgres, O, PgArguments> {
    query
        .bind(saga.id.as_uuid())
        .bind(&saga.name)
        .bind(Json(&saga.params))
        .bind(saga.owner.as_str())
        .bind(saga.lease_ttl.as_secs_f64())
        .bind(&saga.chain)
        .bind(&saga.first_event.step)
        .bind(saga.first_event.kind.as_str())
        .bind(saga.first_event.data.as_ref().map(|d| Json(to_json(d))))
}

/// What a linker's last successful create or update applied, with the keys it may remove.
pub(super) async fn applied(
    pool: &Pool,
    id: LinkerId,
) -> Result<Option<AppliedRecord>, StoreError> {
    let row: Option<(Option<Json<Value>>, Vec<String>)> = sqlx::query_as(
        "select applied,
                array(select item_key from linker_item where linker_id = $1 and created)
         from linker where id = $1",
    )
    .bind(id.as_uuid())
    .fetch_optional(pool)
    .await?;
    let Some((Some(Json(record)), created)) = row else {
        return Ok(None);
    };
    Ok(Some(AppliedRecord { record, created }))
}

/// Which of `keys` another linker holds.
pub(super) async fn held_elsewhere(
    pool: &Pool,
    id: LinkerId,
    keys: &[String],
) -> Result<Vec<String>, StoreError> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "select distinct item_key from linker_item where item_key = any($2) and linker_id <> $1
         order by item_key",
    )
    .bind(id.as_uuid())
    .bind(keys)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(k,)| k).collect())
}
