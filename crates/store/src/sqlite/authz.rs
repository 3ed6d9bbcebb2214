//! Role assignment and audit SQL for SQLite. Times are unix microseconds; lists of scopes are
//! bound as JSON arrays (`json_each`), since SQLite has no array binds.

use chrono::{DateTime, Utc};
use sqlx::SqlitePool;
use tether_model::authz::{AuditRecord, PrincipalId, RoleAssignment, RoleAssignmentId, Scope};
use uuid::Uuid;

use crate::StoreError;
use crate::authz::{
    AssignmentParts, AssignmentWrite, AuditParts, AuditQuery, Placement, RoleAssignmentQuery,
    ancestor_keys, audit_scope_key, page,
};
use crate::rows::corrupt;

const ASSIGNMENT_COLUMNS: &str = "id, scope, role_definition_id, principal_id, principal_type,
    description, created_by, created_us";

#[derive(sqlx::FromRow)]
struct AssignmentRow {
    id: Uuid,
    scope: String,
    role_definition_id: Uuid,
    principal_id: String,
    principal_type: String,
    description: Option<String>,
    created_by: Option<String>,
    created_us: i64,
}

fn from_micros(what: &str, us: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| corrupt(what, "time out of range"))
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
            created_on: from_micros("role_assignment", r.created_us)?,
        })
    }
}

pub(super) async fn assignment_create(
    pool: &SqlitePool,
    a: &RoleAssignment,
) -> Result<AssignmentWrite, StoreError> {
    let mut tx = super::write_tx(pool).await?;
    let inserted = sqlx::query(
        "insert into role_assignment (id, scope, scope_key, role_definition_id, principal_id,
            principal_type, description, created_by, created_us)
         values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
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
    .bind(a.created_on.timestamp_micros())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 1 {
        tx.commit().await?;
        return Ok(AssignmentWrite::Created(a.clone()));
    }
    let same_name: Option<AssignmentRow> = sqlx::query_as(&format!(
        "select {ASSIGNMENT_COLUMNS} from role_assignment where id = ?1"
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
         where scope_key = ?1 and role_definition_id = ?2 and principal_id = ?3",
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
    pool: &SqlitePool,
    id: RoleAssignmentId,
) -> Result<Option<RoleAssignment>, StoreError> {
    let row: Option<AssignmentRow> = sqlx::query_as(&format!(
        "select {ASSIGNMENT_COLUMNS} from role_assignment where id = ?1"
    ))
    .bind(id.as_uuid())
    .fetch_optional(pool)
    .await?;
    row.map(RoleAssignment::try_from).transpose()
}

pub(super) async fn assignment_delete(
    pool: &SqlitePool,
    scope: &Scope,
    id: RoleAssignmentId,
) -> Result<Option<RoleAssignment>, StoreError> {
    let row: Option<AssignmentRow> = sqlx::query_as(&format!(
        "delete from role_assignment where id = ?1 and scope_key = ?2
         returning {ASSIGNMENT_COLUMNS}"
    ))
    .bind(id.as_uuid())
    .bind(scope.key())
    .fetch_optional(pool)
    .await?;
    row.map(RoleAssignment::try_from).transpose()
}

pub(super) async fn assignments_list(
    pool: &SqlitePool,
    query: &RoleAssignmentQuery,
) -> Result<Vec<RoleAssignment>, StoreError> {
    let (around, below) = match &query.scope {
        None => (None, None),
        Some((scope, placement)) => (
            Some(serde_json::to_string(&ancestor_keys(scope)).map_err(|e| corrupt("scope", e))?),
            (*placement == Placement::AtAboveOrBelow).then(|| below_prefix(scope)),
        ),
    };
    let rows: Vec<AssignmentRow> = sqlx::query_as(&format!(
        "select {ASSIGNMENT_COLUMNS} from role_assignment
         where (?1 is null or scope_key in (select value from json_each(?1))
                or (?2 is not null and substr(scope_key, 1, length(?2)) = ?2))
           and (?3 is null or principal_id = ?3)
           and (?4 is null or id > ?4)
         order by id limit ?5"
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

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: Uuid,
    time_us: i64,
    principal_id: Option<String>,
    tenant_id: Option<String>,
    app_id: Option<String>,
    action: String,
    scope: Option<String>,
    target: Option<String>,
    operation_id: Option<Uuid>,
    correlation_id: Option<String>,
    request_id: Option<String>,
    outcome: String,
    status: i64,
    error_code: Option<String>,
}

pub(super) async fn audit_append<'e>(
    db: impl sqlx::SqliteExecutor<'e>,
    r: &AuditRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "insert into audit (id, time_us, principal_id, tenant_id, app_id, action, scope,
            scope_key, target, operation_id, correlation_id, request_id, outcome, status,
            error_code)
         values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         on conflict (id) do nothing",
    )
    .bind(r.id.as_uuid())
    .bind(r.time.timestamp_micros())
    .bind(r.principal_id.as_ref().map(PrincipalId::as_str))
    .bind(r.tenant_id.as_deref())
    .bind(r.app_id.as_deref())
    .bind(&r.action)
    .bind(r.scope.as_deref())
    .bind(audit_scope_key(r))
    .bind(r.target.as_deref())
    .bind(r.operation_id.map(|o| o.as_uuid()))
    .bind(r.correlation_id.as_deref())
    .bind(r.request_id.as_deref())
    .bind(r.outcome.as_str())
    .bind(i64::from(r.status))
    .bind(r.error_code.as_deref())
    .execute(db)
    .await?;
    Ok(())
}

pub(super) async fn audit_page(
    pool: &SqlitePool,
    q: &AuditQuery,
) -> Result<Vec<AuditRecord>, StoreError> {
    let (scope_key, below) = match &q.scope {
        None | Some(Scope::Root) => (None, None),
        Some(scope) => (Some(scope.key().to_string()), Some(below_prefix(scope))),
    };
    let rows: Vec<AuditRow> = sqlx::query_as(
        "select id, time_us, principal_id, tenant_id, app_id, action, scope, target,
            operation_id, correlation_id, request_id, outcome, status, error_code
         from audit
         where (?1 is null or principal_id = ?1)
           and (?2 is null or scope_key = ?2 or substr(scope_key, 1, length(?3)) = ?3)
           and (?4 is null or outcome = ?4)
           and (?5 is null or time_us >= ?5)
           and (?6 is null or time_us < ?6)
           and (?7 is null or time_us < ?7 or (time_us = ?7 and id < ?8))
         order by time_us desc, id desc limit ?9",
    )
    .bind(q.principal.as_ref().map(PrincipalId::as_str))
    .bind(scope_key)
    .bind(below)
    .bind(q.outcome.map(|o| o.as_str()))
    .bind(q.since.map(|t| t.timestamp_micros()))
    .bind(q.until.map(|t| t.timestamp_micros()))
    .bind(q.before.map(|(t, _)| t.timestamp_micros()))
    .bind(q.before.map(|(_, id)| id.as_uuid()))
    .bind(page(q.limit))
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            AuditRecord::try_from(AuditParts {
                id: r.id,
                time: from_micros("audit", r.time_us)?,
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
                status: r.status,
                error_code: r.error_code,
            })
        })
        .collect()
}

pub(super) async fn audit_purge(
    pool: &SqlitePool,
    before: DateTime<Utc>,
    max_rows: u32,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "delete from audit where id in
            (select id from audit where time_us < ?1 order by time_us limit ?2)",
    )
    .bind(before.timestamp_micros())
    .bind(i64::from(max_rows))
    .execute(pool)
    .await?
    .rows_affected())
}
