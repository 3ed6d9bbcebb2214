//! Linker and operation SQL for Postgres.

use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Transaction};
use tether_model::ids::{LinkerRef, OperationId, ResourceId};
use tether_model::linker::Linker;
use tether_model::operation::Operation;
use tether_saga::NewSaga;

use crate::rows::{
    LINKER_COLUMNS, LinkerRow, LinkerValues, OPERATION_COLUMNS, OperationRow, to_json,
};
use crate::{LinkerChange, OperationBegin, StoreError};

pub(super) async fn get(pool: &PgPool, at: &LinkerRef) -> Result<Option<Linker>, StoreError> {
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
    pool: &PgPool,
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

pub(super) async fn operation_get(
    pool: &PgPool,
    id: OperationId,
) -> Result<Option<Operation>, StoreError> {
    let row: Option<OperationRow> = sqlx::query_as(&format!(
        "select {OPERATION_COLUMNS} from operation where id = $1"
    ))
    .bind(id.as_uuid())
    .fetch_optional(pool)
    .await?;
    row.map(Operation::try_from).transpose()
}

pub(super) async fn operation_begin(
    pool: &PgPool,
    begin: &OperationBegin,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    insert_saga(&mut tx, &begin.saga).await?;
    let op = &begin.operation;
    match &begin.change {
        LinkerChange::Create(linker) => insert_linker(&mut tx, linker).await?,
        LinkerChange::Update {
            linker,
            expected_generation,
        } => {
            let v = LinkerValues::of(linker);
            let done = sqlx::query(
                "update linker set scope = $2, name = $3, properties = $4, secret = $5,
                    provisioning_state = $6, system_data = $7, generation = $8, operation_id = $9,
                    previous_properties = properties, previous_secret = secret, updated_at = now()
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
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::Conflict("the linker was modified or is busy"));
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
                return Err(StoreError::Conflict("the linker was modified or is busy"));
            }
        }
        LinkerChange::Nothing => {}
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
    tx.commit().await?;
    Ok(())
}

async fn insert_linker(
    tx: &mut Transaction<'_, Postgres>,
    linker: &Linker,
) -> Result<(), StoreError> {
    let v = LinkerValues::of(linker);
    let inserted = sqlx::query(
        "insert into linker (id, scope_key, name_key, scope, name, properties, secret, key_naming,
            provisioning_state, system_data, generation, operation_id)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
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
    .execute(&mut **tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::Conflict(
            "a linker with this name was created concurrently",
        ));
    }
    Ok(())
}

async fn insert_saga(tx: &mut Transaction<'_, Postgres>, saga: &NewSaga) -> Result<(), StoreError> {
    sqlx::query(
        "insert into saga (id, name, params, state, owner, generation, lease_expires_at)
         values ($1, $2, $3, 'running', $4, 1, now() + make_interval(secs => $5))",
    )
    .bind(saga.id.as_uuid())
    .bind(&saga.name)
    .bind(Json(&saga.params))
    .bind(saga.owner.as_str())
    .bind(saga.lease_ttl.as_secs_f64())
    .execute(&mut **tx)
    .await?;
    sqlx::query("insert into saga_event (saga_id, step, kind, data) values ($1, $2, $3, $4)")
        .bind(saga.id.as_uuid())
        .bind(&saga.first_event.step)
        .bind(saga.first_event.kind.as_str())
        .bind(saga.first_event.data.as_ref().map(|d| Json(to_json(d))))
        .execute(&mut **tx)
        .await?;
    Ok(())
}
