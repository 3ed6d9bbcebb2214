//! Who may do what: the ARM scopes role assignments are made at, principal ids, role
//! assignments, and audit records. The role definitions and the decision function live in
//! `tether-app` (`auth::roles`, `auth::policy`); this module holds only the data they share
//! with the store.
//!
//! Scopes follow ARM: `/` (the root), `/subscriptions/{sub}`, a resource group, or any
//! resource id. An assignment at a scope applies to it and to everything below it; ids are
//! compared case-insensitively ([`Scope::key`]) while the caller's casing is kept for display.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Error;
use crate::ids::{OperationId, ResourceId};

/// An ARM scope: the root `/` or a resource id (subscription, resource group, resource or a
/// child of one, such as a linker).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Scope {
    /// `/`: every subscription.
    Root,
    /// A subscription, resource group or resource.
    Resource(ResourceId),
}

impl Scope {
    /// Parses `/` (also `//`) as the root and anything else as a resource id
    /// ([`ResourceId::parse`]: `400 LinkedInvalidPropertyId` when malformed).
    pub fn parse(input: &str) -> Result<Self, Error> {
        match input {
            "/" | "//" => Ok(Scope::Root),
            _ => ResourceId::parse(input).map(Scope::Resource),
        }
    }

    /// The scope as the caller spelled it: `/` or the resource id.
    pub fn as_str(&self) -> &str {
        match self {
            Scope::Root => "/",
            Scope::Resource(id) => id.as_str(),
        }
    }

    /// The lower-cased scope used for comparisons: `/` or [`ResourceId::key`].
    pub fn key(&self) -> &str {
        match self {
            Scope::Root => "/",
            Scope::Resource(id) => id.key(),
        }
    }

    /// The subscription id (as spelled), `None` for the root.
    pub fn subscription(&self) -> Option<&str> {
        match self {
            Scope::Root => None,
            Scope::Resource(id) => Some(id.subscription()),
        }
    }

    /// True when an assignment at `self` applies at `other`: `other` is `self` or lies below
    /// it (case-insensitively). `/subscriptions/s/resourceGroups/rg` covers
    /// `/subscriptions/s/resourceGroups/rg/providers/...` but not `.../resourceGroups/rg2`.
    pub fn covers(&self, other: &Scope) -> bool {
        covers_key(self.key(), other.key())
    }

    /// This scope and every scope that encloses it, outermost (the root) first: the scopes
    /// whose assignments apply here.
    pub fn ancestors(&self) -> Vec<Scope> {
        let mut out = vec![Scope::Root];
        if let Scope::Resource(id) = self {
            let raw = id.as_str();
            // Every prefix that ends at a segment boundary and parses is an enclosing scope
            // (`/subscriptions/s`, `.../resourceGroups/rg`, `.../providers/N/t/n`, ...).
            for (at, _) in raw.match_indices('/').skip(1) {
                if let Ok(prefix) = ResourceId::parse(&raw[..at]) {
                    out.push(Scope::Resource(prefix));
                }
            }
            out.push(self.clone());
        }
        out
    }
}

/// [`Scope::covers`] on keys: `outer` is `/`, equal to `inner`, or a prefix of it ending at a
/// segment boundary.
pub fn covers_key(outer: &str, inner: &str) -> bool {
    outer == "/"
        || inner == outer
        || (inner.len() > outer.len()
            && inner.starts_with(outer)
            && inner.as_bytes()[outer.len()] == b'/')
}

impl From<ResourceId> for Scope {
    fn from(id: ResourceId) -> Self {
        Scope::Resource(id)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({})", self.as_str())
    }
}

impl TryFrom<String> for Scope {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Error> {
        Scope::parse(&value)
    }
}

impl From<Scope> for String {
    fn from(scope: Scope) -> String {
        scope.as_str().to_string()
    }
}

/// The id of a principal (user, application, managed identity, group): a token's `oid`
/// (or `sub`), an assignment's `principalId`. GUIDs are lower-cased, so one principal has one
/// spelling; other subjects (non-Entra issuers) are kept as they are.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PrincipalId(String);

/// The longest principal id accepted.
pub const MAX_PRINCIPAL_ID_LEN: usize = 128;

impl PrincipalId {
    /// Validates an id: 1-128 ASCII letters, digits and `- . _ : @ |`. Errors are
    /// `400 InvalidPrincipalId`.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let ok = !input.is_empty()
            && input.len() <= MAX_PRINCIPAL_ID_LEN
            && input
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:@|".contains(&b));
        if !ok {
            return Err(Error::invalid(
                "InvalidPrincipalId",
                "A valid principal ID must be provided for role assignment.",
            )
            .with_target("properties.principalId"));
        }
        if crate::ids::is_canonical_guid(input) {
            Ok(Self(input.to_ascii_lowercase()))
        } else {
            Ok(Self(input.to_string()))
        }
    }

    /// Whether the id is a GUID (what ARM requires in role assignments).
    pub fn is_guid(&self) -> bool {
        crate::ids::is_canonical_guid(&self.0)
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PrincipalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PrincipalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrincipalId({})", self.0)
    }
}

impl TryFrom<String> for PrincipalId {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Error> {
        PrincipalId::parse(&value)
    }
}

impl From<PrincipalId> for String {
    fn from(id: PrincipalId) -> String {
        id.0
    }
}

/// The name (a GUID) of a role assignment: the last segment of
/// `{scope}/providers/Microsoft.Authorization/roleAssignments/{name}`. Unique across scopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RoleAssignmentId(Uuid);

impl RoleAssignmentId {
    /// A fresh random name (for assignments Tether makes itself, e.g. bootstrap owners).
    #[expect(
        clippy::disallowed_methods,
        reason = "the one sanctioned place that mints role assignment names"
    )]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    /// Parses a name; errors are ARM's `400 InvalidRoleAssignmentId`.
    pub fn parse(input: &str) -> Result<Self, Error> {
        if !crate::ids::is_canonical_guid(input) {
            return Err(Error::invalid(
                "InvalidRoleAssignmentId",
                format!(
                    "The role assignment ID '{}' is not valid. The role assignment ID must be a GUID.",
                    crate::error::quoted(input)
                ),
            ));
        }
        Uuid::parse_str(input).map(Self).map_err(|_| {
            Error::invalid(
                "InvalidRoleAssignmentId",
                "The role assignment ID must be a GUID.",
            )
        })
    }

    /// Wraps a value read back from storage.
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The raw value, for storage.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for RoleAssignmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What kind of principal an assignment names (ARM's `principalType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PrincipalType {
    /// A user.
    User,
    /// A group.
    Group,
    /// An application or managed identity.
    ServicePrincipal,
    /// A group from another tenant.
    ForeignGroup,
    /// A device.
    Device,
}

impl PrincipalType {
    /// Every type, in ARM's spelling.
    pub const ALL: [PrincipalType; 5] = [
        PrincipalType::User,
        PrincipalType::Group,
        PrincipalType::ServicePrincipal,
        PrincipalType::ForeignGroup,
        PrincipalType::Device,
    ];

    /// ARM's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalType::User => "User",
            PrincipalType::Group => "Group",
            PrincipalType::ServicePrincipal => "ServicePrincipal",
            PrincipalType::ForeignGroup => "ForeignGroup",
            PrincipalType::Device => "Device",
        }
    }

    /// Parses ARM's spelling, ignoring case; `400 InvalidPrincipalType` otherwise.
    pub fn parse(input: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(input))
            .ok_or_else(|| {
                Error::invalid(
                    "InvalidPrincipalType",
                    format!(
                        "The principal type '{}' is not valid.",
                        crate::error::quoted(input)
                    ),
                )
                .with_target("properties.principalType")
            })
    }
}

/// A role assignment: `principal` holds the role `role_definition` at `scope` and everything
/// below it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleAssignment {
    /// Its name.
    pub id: RoleAssignmentId,
    /// Where it applies (and below).
    pub scope: Scope,
    /// The GUID of the role definition (`.../roleDefinitions/{guid}`).
    pub role_definition: Uuid,
    /// Who holds the role.
    pub principal: PrincipalId,
    /// What kind of principal that is.
    pub principal_type: PrincipalType,
    /// Free text (at most [`MAX_DESCRIPTION_LEN`] characters).
    pub description: Option<String>,
    /// When it was made.
    pub created_on: DateTime<Utc>,
    /// Who made it (`None` for assignments made by configuration).
    pub created_by: Option<PrincipalId>,
}

/// The longest assignment description accepted.
pub const MAX_DESCRIPTION_LEN: usize = 1024;

/// How an [`AuditRecord`]'s request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutcome {
    /// Authorized and accepted (a long-running operation may still fail later).
    Accepted,
    /// Refused: not authenticated, not authorized, or throttled.
    Refused,
    /// Authorized, then failed (invalid input, conflict, dependency failure).
    Failed,
}

impl AuditOutcome {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Accepted => "accepted",
            AuditOutcome::Refused => "refused",
            AuditOutcome::Failed => "failed",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(input: &str) -> Option<Self> {
        [
            AuditOutcome::Accepted,
            AuditOutcome::Refused,
            AuditOutcome::Failed,
        ]
        .into_iter()
        .find(|o| o.as_str().eq_ignore_ascii_case(input))
    }
}

/// The id of one audit record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AuditId(Uuid);

impl AuditId {
    /// A fresh random id.
    #[expect(
        clippy::disallowed_methods,
        reason = "the one sanctioned place that mints audit ids"
    )]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    /// Wraps a value read back from storage (or a continuation token).
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The raw value.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

/// One line of the audit trail: who asked to do what, where, and how it ended. Written for
/// every accepted write and every refusal; never holds a token, a secret or a request body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Its id.
    pub id: AuditId,
    /// When the decision was made (microsecond precision, as stored).
    pub time: DateTime<Utc>,
    /// The caller's object id; `None` when the request was not authenticated.
    pub principal_id: Option<PrincipalId>,
    /// The caller's tenant (`tid`).
    pub tenant_id: Option<String>,
    /// The caller's application id (`appid`/`azp`).
    pub app_id: Option<String>,
    /// The action asked for (`Microsoft.ServiceLinker/linkers/write`, ...).
    pub action: String,
    /// The scope the action was asked over (the linker's or assignment's id).
    pub scope: Option<String>,
    /// The other resource the request named (a linker's target), if any.
    pub target: Option<String>,
    /// The long-running operation started for it.
    pub operation_id: Option<OperationId>,
    /// `x-ms-correlation-request-id`: also sent on every backend call made for the request.
    pub correlation_id: Option<String>,
    /// `x-ms-request-id` of the response.
    pub request_id: Option<String>,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// The HTTP status answered.
    pub status: u16,
    /// The ARM error code answered, if any.
    pub error_code: Option<String>,
}

/// Bounds on the text an audit record keeps (longer values are cut).
pub mod audit_limits {
    /// Actions and error codes.
    pub const SHORT: usize = 256;
    /// Correlation, request, tenant and application ids.
    pub const ID: usize = 128;
    /// Scopes and targets (resource ids are at most 2048 bytes; a linker id adds a little).
    pub const RESOURCE: usize = 4096;
}

impl AuditRecord {
    /// Cuts every free-text field to its bound and drops control characters, so a record
    /// is small and printable whatever a client sent.
    pub fn clipped(mut self) -> Self {
        fn clip(s: &mut String, max: usize) {
            s.retain(|c| !c.is_control());
            if s.len() > max {
                let mut cut = max;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
            }
        }
        use audit_limits::{ID, RESOURCE, SHORT};
        clip(&mut self.action, SHORT);
        for (field, max) in [
            (&mut self.tenant_id, ID),
            (&mut self.app_id, ID),
            (&mut self.scope, RESOURCE),
            (&mut self.target, RESOURCE),
            (&mut self.correlation_id, ID),
            (&mut self.request_id, ID),
            (&mut self.error_code, SHORT),
        ] {
            if let Some(s) = field {
                clip(s, max);
            }
        }
        // The database keeps microseconds: keep the same here, so a record reads back equal.
        let micros = self.time.timestamp_micros();
        self.time = DateTime::from_timestamp_micros(micros).unwrap_or(self.time);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "/subscriptions/11111111-2222-3333-4444-555555555555";

    fn scope(s: &str) -> Scope {
        Scope::parse(s).unwrap()
    }

    #[test]
    fn scopes_cover_what_lies_below_them_only() {
        let rg = scope(&format!("{SUB}/resourceGroups/RG"));
        let site = scope(&format!(
            "{SUB}/resourcegroups/rg/providers/Microsoft.Web/sites/app"
        ));
        let linker = scope(&format!(
            "{SUB}/resourceGroups/rg/providers/Microsoft.Web/sites/app/providers/Microsoft.ServiceLinker/linkers/db"
        ));
        assert!(Scope::Root.covers(&site));
        assert!(scope(SUB).covers(&site));
        assert!(rg.covers(&site));
        assert!(site.covers(&linker));
        assert!(site.covers(&site));
        assert!(!site.covers(&rg));
        assert!(!rg.covers(&scope(&format!("{SUB}/resourceGroups/rg2"))));
        assert!(!rg.covers(&Scope::Root));
        assert!(
            !scope(&format!(
                "{SUB}/resourceGroups/rg/providers/Microsoft.Web/sites/ap"
            ))
            .covers(&site)
        );
        assert!(
            !scope("/subscriptions/11111111-2222-3333-4444-555555555556").covers(&site),
            "another subscription"
        );
    }

    #[test]
    fn ancestors_are_every_enclosing_scope() {
        let linker = scope(&format!(
            "{SUB}/resourceGroups/rg/providers/Microsoft.Web/sites/app/providers/Microsoft.ServiceLinker/linkers/db"
        ));
        let keys: Vec<String> = linker
            .ancestors()
            .iter()
            .map(|s| s.key().to_string())
            .collect();
        let sub = SUB.to_string();
        assert_eq!(
            keys,
            vec![
                "/".to_string(),
                sub.clone(),
                format!("{sub}/resourcegroups/rg"),
                format!("{sub}/resourcegroups/rg/providers/microsoft.web/sites/app"),
                format!(
                    "{sub}/resourcegroups/rg/providers/microsoft.web/sites/app/providers/microsoft.servicelinker/linkers/db"
                ),
            ]
        );
        assert_eq!(Scope::Root.ancestors(), vec![Scope::Root]);
        for a in linker.ancestors() {
            assert!(a.covers(&linker));
        }
    }

    #[test]
    fn principal_ids() {
        let id = PrincipalId::parse("0A1B2C3D-0000-4000-8000-00000000000F").unwrap();
        assert_eq!(id.as_str(), "0a1b2c3d-0000-4000-8000-00000000000f");
        assert!(id.is_guid());
        assert_eq!(
            PrincipalId::parse("auth0|Abc").unwrap().as_str(),
            "auth0|Abc"
        );
        for bad in ["", "a b", "x'y", "a\u{0}", &"a".repeat(129)] {
            assert_eq!(
                PrincipalId::parse(bad).unwrap_err().code(),
                "InvalidPrincipalId"
            );
        }
    }

    #[test]
    fn audit_records_are_clipped() {
        let r = AuditRecord {
            id: AuditId::new(),
            time: Utc::now(),
            principal_id: None,
            tenant_id: None,
            app_id: None,
            action: "a\nb".repeat(200),
            scope: Some("é".repeat(5000)),
            target: None,
            operation_id: None,
            correlation_id: Some("c".repeat(1000)),
            request_id: None,
            outcome: AuditOutcome::Refused,
            status: 401,
            error_code: None,
        }
        .clipped();
        assert!(r.action.len() <= audit_limits::SHORT && !r.action.contains('\n'));
        assert!(r.scope.unwrap().len() <= audit_limits::RESOURCE);
        assert_eq!(r.correlation_id.unwrap().len(), audit_limits::ID);
        assert_eq!(r.time.timestamp_subsec_nanos() % 1000, 0);
    }
}
