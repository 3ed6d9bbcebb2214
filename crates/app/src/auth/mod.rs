//! Who may do what: authentication of bearer JWTs ([`Authenticator`]), ARM's role-based
//! authorization over scopes ([`roles`], [`policy`], [`Authorizer`]), and the audit trail
//! ([`AuditLog`]). The HTTP layer (`tether-api`) calls these; nothing here knows HTTP.
//!
//! Every request carries a verified [`Principal`]; an operation is allowed only when one of
//! the principal's role assignments covers its scope with a role granting its action, and a
//! write that names another resource (a linker's target) also needs write access to that
//! resource. See `docs/security.md`.

use std::fmt;

use tether_model::authz::PrincipalId;

use crate::Caller;

mod audit;
mod authorizer;
pub mod policy;
pub mod roles;
mod token;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(any(test, feature = "testing"))]
mod testkeys;

pub(crate) use audit::count_recorded;
pub use audit::{AuditEntry, AuditLog, AuditPage};
pub use authorizer::{
    AssignmentFilter, AssignmentSpec, Authorizer, AuthorizerSettings,
    MAX_ASSIGNMENTS_PER_PRINCIPAL, MAX_ASSIGNMENTS_PER_SUBSCRIPTION, Permissions,
};
pub use tether_store::AuditQuery;
pub use token::{AuthError, AuthSettings, Authenticator, IssuerSettings};

/// What kind of identity a token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    /// A person (`idtyp: user`, or a delegated token with `scp`).
    User,
    /// An application's service principal (`idtyp: app`).
    Application,
    /// A managed identity (an app-only token with `xms_mirid`).
    ManagedIdentity,
}

impl PrincipalKind {
    /// ARM's spelling in `systemData.*ByType`.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "User",
            PrincipalKind::Application => "Application",
            PrincipalKind::ManagedIdentity => "ManagedIdentity",
        }
    }
}

/// A verified caller: the claims of a token whose signature, issuer, audience and lifetime
/// checked out.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal {
    /// `oid` (or `sub` when the issuer sends no `oid`): what role assignments name.
    pub object_id: PrincipalId,
    /// `tid`.
    pub tenant_id: String,
    /// `appid` or `azp`: the client application.
    pub app_id: Option<String>,
    /// A display name (`name`, `preferred_username`, `upn` or `unique_name`), if any.
    pub name: Option<String>,
    /// User, application or managed identity.
    pub kind: PrincipalKind,
    /// The issuer that vouched for it (`iss`).
    pub issuer: String,
}

impl Principal {
    /// Who made a request, as `systemData` records it: a user's name (or object id), an
    /// application's client id (or object id).
    pub fn caller(&self) -> Caller {
        let name = match self.kind {
            PrincipalKind::User => self.name.clone(),
            PrincipalKind::Application | PrincipalKind::ManagedIdentity => self.app_id.clone(),
        }
        .unwrap_or_else(|| self.object_id.to_string());
        Caller {
            name,
            kind: self.kind.as_str().to_string(),
        }
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("object_id", &self.object_id)
            .field("tenant_id", &self.tenant_id)
            .field("app_id", &self.app_id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Everything the HTTP layer needs to secure requests: who the caller is, what it may do,
/// and the record of what it did.
pub struct Security {
    /// Verifies bearer tokens.
    pub authenticator: Authenticator,
    /// Decides and manages role assignments.
    pub authorizer: Authorizer,
    /// Records decisions.
    pub audit: AuditLog,
}
