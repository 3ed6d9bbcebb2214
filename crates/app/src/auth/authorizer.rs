//! The authorizer: decides requests against the principal's role assignments (read from the
//! store, cached briefly per principal) and manages role assignments with ARM's rules.
//!
//! Decisions fail closed: a store error is an error, never an "allowed". The cache holds at
//! most [`AuthorizerSettings::cache_max_principals`] principals for at most
//! [`AuthorizerSettings::cache_ttl`]; a write through this authorizer drops the affected
//! principal's entry at once, and other replicas see it within the TTL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use tether_model::authz::{
    MAX_DESCRIPTION_LEN, PrincipalId, PrincipalType, RoleAssignment, RoleAssignmentId, Scope,
};
use tether_model::error::quoted;
use tether_model::ids::ResourceId;
use tether_model::{Error, ErrorKind};
use tether_store::{AssignmentWrite, Placement, RoleAssignmentQuery, Store};
use tokio::time::Instant;
use uuid::Uuid;

use super::roles::{self, actions};
use super::{Principal, policy};

/// The most role assignments one principal may hold (authorization reads them all).
pub const MAX_ASSIGNMENTS_PER_PRINCIPAL: usize = 2000;
/// The most role assignments at or below one subscription (ARM's limit).
pub const MAX_ASSIGNMENTS_PER_SUBSCRIPTION: usize = 4000;

/// Cache settings.
#[derive(Debug, Clone)]
pub struct AuthorizerSettings {
    /// How long a principal's assignments are reused before being read again.
    pub cache_ttl: Duration,
    /// The most principals cached at once.
    pub cache_max_principals: usize,
}

impl Default for AuthorizerSettings {
    fn default() -> Self {
        Self {
            cache_ttl: Duration::from_secs(5),
            cache_max_principals: 10_000,
        }
    }
}

/// What an assignment request asks for (the body of a role assignment PUT).
#[derive(Debug, Clone)]
pub struct AssignmentSpec {
    /// The role's GUID.
    pub role_definition: Uuid,
    /// Who gets it.
    pub principal: PrincipalId,
    /// What kind of principal (default `ServicePrincipal`... as the caller said).
    pub principal_type: PrincipalType,
    /// Free text.
    pub description: Option<String>,
}

/// ARM's `$filter` on role assignment lists.
#[derive(Debug, Clone, Default)]
pub struct AssignmentFilter {
    /// `atScope()`: only assignments at the scope or above it.
    pub at_scope: bool,
    /// `principalId eq '…'` / `assignedTo('…')`.
    pub principal: Option<PrincipalId>,
}

/// A principal's assignments, read once, to decide many things (filtering a list).
#[derive(Debug, Clone)]
pub struct Permissions {
    principal: PrincipalId,
    assignments: Arc<Vec<RoleAssignment>>,
}

impl Permissions {
    /// Whether the principal may perform `action` over `scope`.
    pub fn allows(&self, action: &str, scope: &Scope) -> bool {
        policy::allows(&self.assignments, &self.principal, action, scope)
    }

    /// The assignments they were computed from.
    pub fn assignments(&self) -> &[RoleAssignment] {
        &self.assignments
    }
}

struct Cached {
    at: Instant,
    assignments: Arc<Vec<RoleAssignment>>,
}

/// Decides requests and manages role assignments.
pub struct Authorizer {
    store: Arc<dyn Store>,
    settings: AuthorizerSettings,
    cache: Mutex<HashMap<PrincipalId, Cached>>,
}

impl Authorizer {
    /// An authorizer over the store's role assignments.
    pub fn new(store: Arc<dyn Store>, settings: AuthorizerSettings) -> Self {
        Self {
            store,
            settings,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The principal's assignments (from the cache when fresh).
    pub async fn permissions(&self, who: &Principal) -> Result<Permissions, Error> {
        let principal = who.object_id.clone();
        if let Some(hit) = self.cached(&principal) {
            return Ok(Permissions {
                principal,
                assignments: hit,
            });
        }
        let assignments = Arc::new(self.load(&principal).await?);
        let mut cache = self.lock();
        if cache.len() >= self.settings.cache_max_principals {
            let ttl = self.settings.cache_ttl;
            cache.retain(|_, c| c.at.elapsed() < ttl);
            if cache.len() >= self.settings.cache_max_principals {
                cache.clear();
            }
        }
        cache.insert(
            principal.clone(),
            Cached {
                at: Instant::now(),
                assignments: assignments.clone(),
            },
        );
        Ok(Permissions {
            principal,
            assignments,
        })
    }

    fn cached(&self, principal: &PrincipalId) -> Option<Arc<Vec<RoleAssignment>>> {
        let cache = self.lock();
        cache
            .get(principal)
            .filter(|c| c.at.elapsed() < self.settings.cache_ttl)
            .map(|c| c.assignments.clone())
    }

    async fn load(&self, principal: &PrincipalId) -> Result<Vec<RoleAssignment>, Error> {
        let mut all = self
            .store
            .role_assignments_list(&RoleAssignmentQuery {
                scope: None,
                principal: Some(principal.clone()),
                after: None,
                limit: (MAX_ASSIGNMENTS_PER_PRINCIPAL + 1) as u32,
            })
            .await?;
        if all.len() > MAX_ASSIGNMENTS_PER_PRINCIPAL {
            // Never more than the bound (creation enforces it; this is a guard): deciding on
            // fewer assignments can only deny, never grant.
            tracing::warn!(principal = %principal, "a principal holds more role assignments than the limit");
            all.truncate(MAX_ASSIGNMENTS_PER_PRINCIPAL);
        }
        Ok(all)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PrincipalId, Cached>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets a principal's cached assignments (after they changed).
    pub fn invalidate(&self, principal: &PrincipalId) {
        self.lock().remove(principal);
    }

    /// Whether `who` may perform `action` over `scope`.
    pub async fn can(&self, who: &Principal, action: &str, scope: &Scope) -> Result<bool, Error> {
        Ok(self.permissions(who).await?.allows(action, scope))
    }

    /// `Ok` when `who` may perform `action` over `scope`, else `403 AuthorizationFailed`.
    pub async fn require(&self, who: &Principal, action: &str, scope: &Scope) -> Result<(), Error> {
        if self.can(who, action, scope).await? {
            Ok(())
        } else {
            Err(denied(who, action, scope.as_str()))
        }
    }

    /// For a write that names other resources (a linker's target, key vault, identity...):
    /// `action` over `scope`, and write access ([`policy::named_resource_action`]) to each
    /// named resource; `403 AuthorizationFailed` naming the first action and scope missing.
    pub async fn require_with_named(
        &self,
        who: &Principal,
        action: &str,
        scope: &Scope,
        named: &[ResourceId],
    ) -> Result<(), Error> {
        let permissions = self.permissions(who).await?;
        if !permissions.allows(action, scope) {
            return Err(denied(who, action, scope.as_str()));
        }
        for resource in named {
            let needed = policy::named_resource_action(resource);
            if !permissions.allows(&needed, &Scope::Resource(resource.clone())) {
                return Err(denied(who, &needed, resource.as_str()));
            }
        }
        Ok(())
    }

    /// `Ok` when `who` may use the operator endpoint guarded by `action` (checked at `/`).
    pub async fn require_operator(&self, who: &Principal, action: &str) -> Result<(), Error> {
        self.require(who, action, &Scope::Root).await
    }

    /// Creates the assignment `id` at `scope` (ARM's PUT): `who` needs
    /// `Microsoft.Authorization/roleAssignments/write` there. Returns the assignment and
    /// whether it is new (a replay of an identical PUT returns the stored one).
    pub async fn assignment_put(
        &self,
        who: &Principal,
        scope: &Scope,
        id: RoleAssignmentId,
        spec: AssignmentSpec,
    ) -> Result<(RoleAssignment, bool), Error> {
        self.require(who, actions::ROLE_ASSIGNMENTS_WRITE, scope)
            .await?;
        if roles::role(spec.role_definition).is_none() {
            return Err(role_does_not_exist(&spec.role_definition.to_string()));
        }
        if !spec.principal.is_guid() {
            return Err(Error::invalid(
                "InvalidPrincipalId",
                "A valid principal ID must be provided for role assignment.",
            )
            .with_target("properties.principalId"));
        }
        if spec
            .description
            .as_deref()
            .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_LEN)
        {
            return Err(Error::invalid(
                "InvalidParameter",
                format!("the description is longer than {MAX_DESCRIPTION_LEN} characters"),
            )
            .with_target("properties.description"));
        }
        let assignment = RoleAssignment {
            id,
            scope: scope.clone(),
            role_definition: spec.role_definition,
            principal: spec.principal,
            principal_type: spec.principal_type,
            description: spec.description,
            created_on: now(),
            created_by: Some(who.object_id.clone()),
        };
        if self.store.role_assignment_get(id).await?.is_none() {
            self.check_limits(&assignment).await?;
        }
        self.store_assignment(assignment).await
    }

    async fn check_limits(&self, a: &RoleAssignment) -> Result<(), Error> {
        let exceeded = || {
            Error::invalid(
                "RoleAssignmentLimitExceeded",
                "No more role assignments can be created: the principal or the subscription holds the most allowed.",
            )
        };
        let principal = RoleAssignmentQuery {
            scope: None,
            principal: Some(a.principal.clone()),
            after: None,
            limit: MAX_ASSIGNMENTS_PER_PRINCIPAL as u32,
        };
        if self.store.role_assignments_list(&principal).await?.len()
            >= MAX_ASSIGNMENTS_PER_PRINCIPAL
        {
            return Err(exceeded());
        }
        // A subscription's assignments are counted with everything inside it; the root's
        // on their own (they do not count against any subscription's).
        let container = match a.scope.subscription() {
            Some(sub) => (
                Scope::parse(&format!("/subscriptions/{sub}"))?,
                Placement::AtAboveOrBelow,
            ),
            None => (Scope::Root, Placement::AtOrAbove),
        };
        let around = RoleAssignmentQuery {
            scope: Some(container),
            principal: None,
            after: None,
            limit: MAX_ASSIGNMENTS_PER_SUBSCRIPTION as u32,
        };
        if self.store.role_assignments_list(&around).await?.len()
            >= MAX_ASSIGNMENTS_PER_SUBSCRIPTION
        {
            return Err(exceeded());
        }
        Ok(())
    }

    async fn store_assignment(&self, a: RoleAssignment) -> Result<(RoleAssignment, bool), Error> {
        let written = self.store.role_assignment_create(&a).await?;
        self.invalidate(&a.principal);
        match written {
            AssignmentWrite::Created(a) => Ok((a, true)),
            AssignmentWrite::Existing(a) => Ok((a, false)),
            AssignmentWrite::Duplicate(existing) => Err(Error::conflict(
                "RoleAssignmentExists",
                format!(
                    "The role assignment already exists. The ID of the existing role assignment is {}.",
                    existing.as_uuid().simple()
                ),
            )),
            AssignmentWrite::NameTaken(_) => Err(Error::invalid(
                "RoleAssignmentUpdateNotPermitted",
                "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
            )),
        }
    }

    /// The assignment `id` at `scope` (`404 RoleAssignmentNotFound` when there is none
    /// there); `who` needs `Microsoft.Authorization/roleAssignments/read` at the scope.
    pub async fn assignment_get(
        &self,
        who: &Principal,
        scope: &Scope,
        id: RoleAssignmentId,
    ) -> Result<RoleAssignment, Error> {
        self.require(who, actions::ROLE_ASSIGNMENTS_READ, scope)
            .await?;
        self.store
            .role_assignment_get(id)
            .await?
            .filter(|a| a.scope == *scope)
            .ok_or_else(|| assignment_not_found(id))
    }

    /// Deletes the assignment `id` at `scope` and returns it (`None` when there was none);
    /// `who` needs `Microsoft.Authorization/roleAssignments/delete` at the scope.
    pub async fn assignment_delete(
        &self,
        who: &Principal,
        scope: &Scope,
        id: RoleAssignmentId,
    ) -> Result<Option<RoleAssignment>, Error> {
        self.require(who, actions::ROLE_ASSIGNMENTS_DELETE, scope)
            .await?;
        let removed = self.store.role_assignment_delete(scope, id).await?;
        if let Some(a) = &removed {
            self.invalidate(&a.principal);
        }
        Ok(removed)
    }

    /// Assignments around `scope` as ARM lists them (at, above and below it; only at and
    /// above with `atScope()`), ordered by name, after `after`, at most `limit`; `who` needs
    /// `Microsoft.Authorization/roleAssignments/read` at the scope.
    pub async fn assignments_list(
        &self,
        who: &Principal,
        scope: &Scope,
        filter: &AssignmentFilter,
        after: Option<RoleAssignmentId>,
        limit: u32,
    ) -> Result<Vec<RoleAssignment>, Error> {
        self.require(who, actions::ROLE_ASSIGNMENTS_READ, scope)
            .await?;
        let placement = if filter.at_scope {
            Placement::AtOrAbove
        } else {
            Placement::AtAboveOrBelow
        };
        Ok(self
            .store
            .role_assignments_list(&RoleAssignmentQuery {
                scope: Some((scope.clone(), placement)),
                principal: filter.principal.clone(),
                after,
                limit,
            })
            .await?)
    }

    /// Makes `principal` Owner at `scope` unless it already is (configuration's bootstrap
    /// owners); true when an assignment was created. Safe to run on every replica at once.
    pub async fn bootstrap_owner(
        &self,
        principal: &PrincipalId,
        scope: &Scope,
    ) -> Result<bool, Error> {
        let assignment = RoleAssignment {
            id: RoleAssignmentId::new(),
            scope: scope.clone(),
            role_definition: roles::OWNER.id,
            principal: principal.clone(),
            principal_type: PrincipalType::ServicePrincipal,
            description: Some("bootstrap owner (auth.bootstrap_owners)".into()),
            created_on: now(),
            created_by: None,
        };
        match self.store.role_assignment_create(&assignment).await? {
            AssignmentWrite::Created(_) => {
                self.invalidate(principal);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// ARM's `403 AuthorizationFailed`.
pub(crate) fn denied(who: &Principal, action: &str, scope: &str) -> Error {
    let oid = &who.object_id;
    Error::new(
        ErrorKind::Forbidden,
        "AuthorizationFailed",
        format!(
            "The client '{oid}' with object id '{oid}' does not have authorization to perform action '{action}' over scope '{}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
            quoted_long(scope)
        ),
    )
}

/// A scope quoted in full (ids are bounded to 2 KB, unlike [`quoted`]'s 80 characters), with
/// control characters escaped.
fn quoted_long(value: &str) -> String {
    value.chars().flat_map(char::escape_default).collect()
}

/// `400 RoleDefinitionDoesNotExist`.
pub(crate) fn role_does_not_exist(id: &str) -> Error {
    Error::invalid(
        "RoleDefinitionDoesNotExist",
        format!(
            "The specified role definition with ID '{}' does not exist.",
            quoted(id)
        ),
    )
    .with_target("properties.roleDefinitionId")
}

/// `404 RoleAssignmentNotFound`.
fn assignment_not_found(id: RoleAssignmentId) -> Error {
    Error::new(
        ErrorKind::NotFound,
        "RoleAssignmentNotFound",
        format!("The role assignment '{id}' is not found."),
    )
}

/// Now, at the microsecond precision the store keeps.
fn now() -> chrono::DateTime<Utc> {
    let t = Utc::now();
    chrono::DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

#[cfg(test)]
mod tests;
