//! The store's side of authorization and audit: what the role-assignment and audit methods of
//! [`crate::Store`] take and return, and the row decoding both backends share. The SQL lives in
//! `postgres/authz.rs` and `sqlite/authz.rs`.

use chrono::{DateTime, Utc};
use tether_model::authz::{
    AuditId, AuditOutcome, AuditRecord, PrincipalId, PrincipalType, RoleAssignment,
    RoleAssignmentId, Scope,
};
use tether_model::ids::OperationId;
use uuid::Uuid;

use crate::StoreError;
use crate::rows::corrupt;

/// The largest page any list method returns, whatever it was asked for.
pub const MAX_PAGE: u32 = 5000;

/// Which assignments around a scope a listing returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// At the scope or above it (ARM's `$filter=atScope()`): those that apply there.
    AtOrAbove,
    /// At, above or below the scope (ARM's unfiltered list).
    AtAboveOrBelow,
}

/// Which role assignments to list. Results are ordered by id, `after` is exclusive.
#[derive(Debug, Clone)]
pub struct RoleAssignmentQuery {
    /// Around this scope (`None`: anywhere).
    pub scope: Option<(Scope, Placement)>,
    /// Only this principal's.
    pub principal: Option<PrincipalId>,
    /// Keyset paging: only ids greater than this.
    pub after: Option<RoleAssignmentId>,
    /// At most this many (capped at [`MAX_PAGE`]).
    pub limit: u32,
}

/// What [`crate::Store::role_assignment_create`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignmentWrite {
    /// The assignment was stored.
    Created(RoleAssignment),
    /// An identical assignment (same name, scope, role and principal) was already stored: a
    /// replayed create. Nothing changed.
    Existing(RoleAssignment),
    /// Another assignment already gives this principal this role at this scope (ARM's
    /// `409 RoleAssignmentExists`). Nothing changed.
    Duplicate(RoleAssignmentId),
    /// The name is taken by a different assignment (ARM's `400
    /// RoleAssignmentUpdateNotPermitted`: assignments cannot be changed). Nothing changed.
    NameTaken(RoleAssignment),
}

/// Which audit records to page through, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this principal's.
    pub principal: Option<PrincipalId>,
    /// Only actions at or below this scope.
    pub scope: Option<Scope>,
    /// Only this outcome.
    pub outcome: Option<AuditOutcome>,
    /// Only records at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only records before this time.
    pub until: Option<DateTime<Utc>>,
    /// Keyset paging: only records strictly older than this `(time, id)`.
    pub before: Option<(DateTime<Utc>, AuditId)>,
    /// At most this many (capped at [`MAX_PAGE`]).
    pub limit: u32,
}

/// A role assignment row, as both backends read it (times converted by the caller).
pub(crate) struct AssignmentParts {
    pub id: Uuid,
    pub scope: String,
    pub role_definition_id: Uuid,
    pub principal_id: String,
    pub principal_type: String,
    pub description: Option<String>,
    pub created_by: Option<String>,
    pub created_on: DateTime<Utc>,
}

impl TryFrom<AssignmentParts> for RoleAssignment {
    type Error = StoreError;
    fn try_from(row: AssignmentParts) -> Result<Self, StoreError> {
        let what = "role_assignment";
        Ok(RoleAssignment {
            id: RoleAssignmentId::from_uuid(row.id),
            scope: Scope::parse(&row.scope).map_err(|e| corrupt(what, e))?,
            role_definition: row.role_definition_id,
            principal: PrincipalId::parse(&row.principal_id).map_err(|e| corrupt(what, e))?,
            principal_type: PrincipalType::parse(&row.principal_type)
                .map_err(|e| corrupt(what, e))?,
            description: row.description,
            created_on: row.created_on,
            created_by: row
                .created_by
                .map(|p| PrincipalId::parse(&p))
                .transpose()
                .map_err(|e| corrupt(what, e))?,
        })
    }
}

/// An audit row, as both backends read it (times converted by the caller).
pub(crate) struct AuditParts {
    pub id: Uuid,
    pub time: DateTime<Utc>,
    pub principal_id: Option<String>,
    pub tenant_id: Option<String>,
    pub app_id: Option<String>,
    pub action: String,
    pub scope: Option<String>,
    pub target: Option<String>,
    pub operation_id: Option<Uuid>,
    pub correlation_id: Option<String>,
    pub request_id: Option<String>,
    pub outcome: String,
    pub status: i64,
    pub error_code: Option<String>,
}

impl TryFrom<AuditParts> for AuditRecord {
    type Error = StoreError;
    fn try_from(row: AuditParts) -> Result<Self, StoreError> {
        let what = "audit";
        Ok(AuditRecord {
            id: AuditId::from_uuid(row.id),
            time: row.time,
            principal_id: row
                .principal_id
                .map(|p| PrincipalId::parse(&p))
                .transpose()
                .map_err(|e| corrupt(what, e))?,
            tenant_id: row.tenant_id,
            app_id: row.app_id,
            action: row.action,
            scope: row.scope,
            target: row.target,
            operation_id: row.operation_id.map(OperationId::from_uuid),
            correlation_id: row.correlation_id,
            request_id: row.request_id,
            outcome: AuditOutcome::parse(&row.outcome)
                .ok_or_else(|| corrupt(what, format!("unknown outcome '{}'", row.outcome)))?,
            status: u16::try_from(row.status).map_err(|e| corrupt(what, e))?,
            error_code: row.error_code,
        })
    }
}

/// The lower-cased scope an audit record is filed under (for filtering by scope), if its
/// scope parses; an unparseable scope is kept for display but matches no scope filter.
pub(crate) fn audit_scope_key(record: &AuditRecord) -> Option<String> {
    record
        .scope
        .as_deref()
        .and_then(|s| Scope::parse(s).ok())
        .map(|s| s.key().to_string())
}

/// The keys of every scope whose assignments apply at `scope`.
pub(crate) fn ancestor_keys(scope: &Scope) -> Vec<String> {
    scope
        .ancestors()
        .iter()
        .map(|s| s.key().to_string())
        .collect()
}

/// `limit` capped at [`MAX_PAGE`], as a SQL bind.
pub(crate) fn page(limit: u32) -> i64 {
    i64::from(limit.clamp(1, MAX_PAGE))
}
