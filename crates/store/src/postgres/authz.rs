//! Role assignment and audit SQL for Postgres.

use chrono::{DateTime, Utc};
use sqlx::Connection as _;
use tether_model::authz::{AuditRecord, PrincipalId, RoleAssignment, RoleAssignmentId, Scope};
use uuid::Uuid;

use super::pool::Pool;
use crate::StoreError;
use crate::authz::{
    AssignmentParts, AssignmentWrite, AuditParts, AuditQuery, Placement, RoleAssignmentQuery,
    ancestor_keys, audit_scope_key, page,
};

const ASSIGNMENT_COLUMNS: &str = "id, scope, role_definition_id, principal_id, principal_type,
    description, created_by, created_at";

#[derive(sqlx::FromRow)]
struct AssignmentRow {
    id: Uuid,
    scope: String,
    role_definition_id: Uuid,
    principal_id: String,
    principal_type: String,
    description: Option<String>,
    created_by: Option<String>,
    created_at: DateTime<Utc>,
}

impl TryFrom<AssignmentRow> for RoleAssignment {
    type Error = StoreError;
    fn try_from(r: AssignmentRow) -> Result<Self, StoreError> {
        RoleAssignment::try_from(AssignmentParts {
            id: r.id,
            scope: r.scope,
            role_definition_id: r.role_definition_id,
            principal_id: r.principal_id,
            principal_type: r.principal_type,
            description: r.description,
            created_by: r.created_by,
            created_on: r.created_at,
        })
    }
}

pub(super) async fn assignment_create(
    pool: &Pool,
    a: &RoleAssignment,
) -> Result<AssignmentWrite, StoreError> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.raw.begin().await?;
    let inserted = sqlx::query(
        "insert into role_assignment (id, scope, scope_key, role_definition_id, principal_id,
            principal_type, description, created_by, created_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         on conflict do nothing",
    )
    .bind(a.id.as_uuid())
    .bind(a.scope.as_str())
    .bind(a.scope.key())
    .bind(a.role_definition)
    .bind(a.principal.as_str())
    .bind(a.principal_type.as_str())
    .bind(a.description.as_deref())
    .bind(a.created_by.as_ref().map(PrincipalId::as_str))
    .bind(a.created_on)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 1 {
        tx.commit().await?;
        return Ok(AssignmentWrite::Created(a.clone()));
    }
    let same_name: Option<AssignmentRow> = sqlx::query_as(&format!(
        "select {ASSIGNMENT_COLUMNS} from role_assignment where id = $1"
    ))
    .bind(a.id.as_uuid())
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = same_name {
        let existing = RoleAssignment::try_from(row)?;
        let same = existing.scope == a.scope
            && existing.role_definition == a.role_definition
            && existing.principal == a.principal;
        return Ok(if same {
            AssignmentWrite::Existing(existing)
        } else {
            AssignmentWrite::NameTaken(existing)
        });
    }
    let duplicate: Option<Uuid> = sqlx::query_scalar(
        "select id from role_assignment
         where scope_key = $1 and role_definition_id = $2 and principal_id = $3",
    )
    .bind(a.scope.key())
    .bind(a.role_definition)
    .bind(a.principal.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    match duplicate {
        Some(id) => Ok(AssignmentWrite::Duplicate(RoleAssignmentId::from_uuid(id))),
        None => Err(StoreError::Conflict(
            "the conflicting role assignment was removed concurrently",
        )),
    }
}

pub(super) async fn assignment_get(
    pool: &Pool,
    id: RoleAssignmentId,
) -> Result<Option<RoleAssignment>, StoreError> {
    let row: Option<AssignmentRow> = sqlx::query_as(&format!(
        "select {ASSIGNMENT_COLUMNS} from role_assignment where id = $1"
    ))
    .bind(id.as_uuid())
    .fetch_optional(pool)
    .await?;
    row.map(RoleAssignment::try_from).transpose()
}

pub(super) async fn assignment_delete(
    pool: &Pool,
    scope: &Scope,
    id: RoleAssignmentId,
) -> Result<Option<RoleAssignment>, StoreError> {
    let row: Option<AssignmentRow> = sqlx::query_as(&format!(
        "delete from role_assignment where id = $1 and scope_key = $2
         returning {ASSIGNMENT_COLUMNS}"
    ))
    .bind(id.as_uuid())
    .bind(scope.key())
    .fetch_optional(pool)
    .await?;
    row.map(RoleAssignment::try_from).transpose()
}

pub(super) async fn assignments_list(
    pool: &Pool,
    query: &RoleAssignmentQuery,
) -> Result<Vec<RoleAssignment>, StoreError> {
    let (around, below) = match &query.scope {
        None => (None, None),
        Some((scope, placement)) => (
            Some(ancestor_keys(scope)),
            (*placement == Placement::AtAboveOrBelow).then(|| below_prefix(scope)),
        ),
    };
    let rows: Vec<AssignmentRow> = sqlx::query_as(&format!(
        "select {ASSIGNMENT_COLUMNS} from role_assignment
         where ($1::text[] is null or scope_key = any($1)
                or ($2::text is not null and substr(scope_key, 1, length($2)) = $2))
           and ($3::text is null or principal_id = $3)
           and ($4::uuid is null or id > $4)
         order by id limit $5"
    ))
    .bind(around)
    .bind(below)
    .bind(query.principal.as_ref().map(PrincipalId::as_str))
    .bind(query.after.map(|a| a.as_uuid()))
    .bind(page(query.limit))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(RoleAssignment::try_from).collect()
}

/// What every scope strictly below `scope` starts with.
fn below_prefix(scope: &Scope) -> String {
    match scope {
        Scope::Root => "/".to_string(),
        Scope::Resource(id) => format!("{}/", id.key()),
    }
}

/// A row of the `audit` table, read as columns or written as the table's composite type: it
/// binds as one parameter (`$1::audit`), here and in `tether_begin_create` (the audit record
/// of the request that begins a create, stored in the same commit).
#[derive(sqlx::FromRow, sqlx::Type)]
#[sqlx(type_name = "audit")]
pub(super) struct AuditRow {
    id: Uuid,
    time: DateTime<Utc>,
    principal_id: Option<String>,
    tenant_id: Option<String>,
    app_id: Option<String>,
    action: String,
    scope: Option<String>,
    scope_key: Option<String>,
    target: Option<String>,
    operation_id: Option<Uuid>,
    correlation_id: Option<String>,
    request_id: Option<String>,
    outcome: String,
    status: i32,
    error_code: Option<String>,
}

impl AuditRow {
    pub fn of(r: &AuditRecord) -> Self {
        AuditRow {
            id: r.id.as_uuid(),
            time: r.time,
            principal_id: r.principal_id.as_ref().map(|p| p.as_str().to_string()),
            tenant_id: r.tenant_id.clone(),
            app_id: r.app_id.clone(),
            action: r.action.clone(),
            scope: r.scope.clone(),
            scope_key: audit_scope_key(r),
            target: r.target.clone(),
            operation_id: r.operation_id.map(|o| o.as_uuid()),
            correlation_id: r.correlation_id.clone(),
            request_id: r.request_id.clone(),
            outcome: r.outcome.as_str().to_string(),
            status: i32::from(r.status),
            error_code: r.error_code.clone(),
        }
    }
}

pub(super) async fn audit_append<'e>(
    db: impl sqlx::PgExecutor<'e>,
    r: &AuditRecord,
) -> Result<(), StoreError> {
    sqlx::query("insert into audit select ($1::audit).* on conflict (id) do nothing")
        .bind(AuditRow::of(r))
        .execute(db)
        .await?;
    Ok(())
}

pub(super) async fn audit_page(
    pool: &Pool,
    q: &AuditQuery,
) -> Result<Vec<AuditRecord>, StoreError> {
    let (scope_key, below) = match &q.scope {
        None | Some(Scope::Root) => (None, None),
        Some(scope) => (Some(scope.key().to_string()), Some(below_prefix(scope))),
    };
    let rows: Vec<AuditRow> = sqlx::query_as(
        "select id, time, principal_id, tenant_id, app_id, action, scope, scope_key, target,
            operation_id, correlation_id, request_id, outcome, status, error_code
         from audit
         where ($1::text is null or principal_id = $1)
           and ($2::text is null or scope_key = $2 or substr(scope_key, 1, length($3)) = $3)
           and ($4::text is null or outcome = $4)
           and ($5::timestamptz is null or time >= $5)
           and ($6::timestamptz is null or time < $6)
           and ($7::timestamptz is null or time < $7 or (time = $7 and id < $8))
         order by time desc, id desc limit $9",
    )
    .bind(q.principal.as_ref().map(PrincipalId::as_str))
    .bind(scope_key)
    .bind(below)
    .bind(q.outcome.map(|o| o.as_str()))
    .bind(q.since)
    .bind(q.until)
    .bind(q.before.map(|(t, _)| t))
    .bind(q.before.map(|(_, id)| id.as_uuid()))
    .bind(page(q.limit))
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            AuditRecord::try_from(AuditParts {
                id: r.id,
                time: r.time,
                principal_id: r.principal_id,
                tenant_id: r.tenant_id,
                app_id: r.app_id,
                action: r.action,
                scope: r.scope,
                target: r.target,
                operation_id: r.operation_id,
                correlation_id: r.correlation_id,
                request_id: r.request_id,
                outcome: r.outcome,
                status: i64::from(r.status),
                error_code: r.error_code,
            })
        })
        .collect()
}

pub(super) async fn audit_purge(
    pool: &Pool,
    before: DateTime<Utc>,
    max_rows: u32,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "delete from audit where id in
            (select id from audit where time < $1 order by time limit $2)",
    )
    .bind(before)
    .bind(i64::from(max_rows))
    .execute(pool)
    .await?
    .rows_affected())
}
