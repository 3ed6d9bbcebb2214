//! The tenant's directory: the applications (service principals) that may get tokens, their
//! stable object ids, and the bookkeeping of issued tokens needed for revocation.
//!
//! Applications come from [`crate::Config::clients`] (object ids derived from the tenant and
//! client id, so they are the same in every run) and from `POST /admin/applications` (random
//! object ids). Neither the directory nor the token bookkeeping is part of the resource state:
//! `POST /admin/reset` keeps them, and the state file does not hold them.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};
use rand::Rng as _;
use rand::distr::Alphanumeric;
use serde::Serialize;

use crate::error::new_uuid;

/// Most applications a directory holds (a bound on `POST /admin/applications`).
pub(crate) const MAX_APPLICATIONS: usize = 10_000;
/// Most issued tokens tracked for revocation; beyond it the oldest entries are forgotten
/// (a forgotten token falls back to its second-precision `iat`).
const MAX_TRACKED_TOKENS: usize = 100_000;

/// A registered application and its service principal. `Debug` redacts the secret.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    /// The application (client) id; compared case-insensitively.
    pub client_id: String,
    /// The client secret. Never listed by `GET /admin/applications`.
    #[serde(skip)]
    pub client_secret: String,
    /// The service principal's object id: `oid` and `sub` of its tokens.
    pub object_id: String,
    /// The tenant the application lives in.
    pub tenant_id: String,
    /// A human name.
    pub display_name: String,
}

impl fmt::Debug for Application {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Application")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("object_id", &self.object_id)
            .field("tenant_id", &self.tenant_id)
            .field("display_name", &self.display_name)
            .finish()
    }
}

/// What to register: every field but the display name is generated when absent.
#[derive(Debug, Clone, Default)]
pub struct ApplicationSpec {
    /// A human name (required, 1-256 characters).
    pub display_name: String,
    /// The client id to use; a new GUID when `None`.
    pub client_id: Option<String>,
    /// The client secret to use; a new Entra-style secret when `None`.
    pub client_secret: Option<String>,
}

/// Why an application could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The display name is empty or longer than 256 characters.
    #[error("the display name must have 1 to 256 characters")]
    DisplayName,
    /// A client id or secret is empty or longer than 256 characters.
    #[error("the {0} must have 1 to 256 characters")]
    Field(&'static str),
    /// Another application already has this client id.
    #[error("an application with client id {0} already exists")]
    Exists(String),
    /// The directory is full.
    #[error("the directory already holds {MAX_APPLICATIONS} applications")]
    Full,
}

/// Registered applications plus issued-token bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    applications: Vec<Application>,
    /// `jti` -> (issue instant, expiry) of the tokens issued here, for revocation.
    issued: HashMap<String, (DateTime<Utc>, DateTime<Utc>)>,
    /// Tokens issued at or before this instant are refused (`DELETE /admin/tokens`).
    revoked_before: Option<DateTime<Utc>>,
}

impl Directory {
    /// A directory holding the configured clients.
    pub(crate) fn new(tenant_id: &str, clients: &[crate::ClientCredential]) -> Self {
        let applications = clients
            .iter()
            .map(|c| Application {
                client_id: c.client_id.clone(),
                client_secret: c.client_secret.clone(),
                object_id: derived_object_id(tenant_id, &c.client_id),
                tenant_id: tenant_id.to_owned(),
                display_name: c.client_id.clone(),
            })
            .collect();
        Self {
            applications,
            ..Self::default()
        }
    }

    /// The application with this client id (case-insensitive).
    pub(crate) fn find(&self, client_id: &str) -> Option<&Application> {
        self.applications
            .iter()
            .find(|a| a.client_id.eq_ignore_ascii_case(client_id))
    }

    /// Every application, in registration order.
    pub(crate) fn list(&self) -> &[Application] {
        &self.applications
    }

    /// Registers an application.
    pub(crate) fn register(
        &mut self,
        tenant_id: &str,
        spec: ApplicationSpec,
    ) -> Result<Application, RegisterError> {
        let bounded = |s: &str| (1..=256).contains(&s.chars().count());
        if !bounded(spec.display_name.trim()) {
            return Err(RegisterError::DisplayName);
        }
        if spec.client_id.as_deref().is_some_and(|c| !bounded(c)) {
            return Err(RegisterError::Field("client id"));
        }
        if spec.client_secret.as_deref().is_some_and(|c| !bounded(c)) {
            return Err(RegisterError::Field("client secret"));
        }
        if self.applications.len() >= MAX_APPLICATIONS {
            return Err(RegisterError::Full);
        }
        let client_id = spec.client_id.unwrap_or_else(|| new_uuid().to_string());
        if self.find(&client_id).is_some() {
            return Err(RegisterError::Exists(client_id));
        }
        let application = Application {
            client_id,
            client_secret: spec.client_secret.unwrap_or_else(new_client_secret),
            object_id: new_uuid().to_string(),
            tenant_id: tenant_id.to_owned(),
            display_name: spec.display_name,
        };
        self.applications.push(application.clone());
        Ok(application)
    }

    /// Remembers an issued token for revocation, forgetting expired ones.
    pub(crate) fn track(&mut self, jti: String, at: DateTime<Utc>, expires: DateTime<Utc>) {
        self.issued.retain(|_, (_, expiry)| *expiry > at);
        if self.issued.len() >= MAX_TRACKED_TOKENS {
            if let Some(oldest) = self
                .issued
                .iter()
                .min_by_key(|(_, (issued, _))| *issued)
                .map(|(jti, _)| jti.clone())
            {
                self.issued.remove(&oldest);
            }
        }
        self.issued.insert(jti, (at, expires));
    }

    /// Refuses every token issued up to `now`.
    pub(crate) fn revoke(&mut self, now: DateTime<Utc>) {
        self.revoked_before = Some(now);
    }

    /// Whether a token (by `jti`, else by its `iat`) was revoked.
    pub(crate) fn is_revoked(&self, jti: Option<&str>, iat: Option<i64>) -> bool {
        let Some(revoked) = self.revoked_before else {
            return false;
        };
        let issued = jti
            .and_then(|jti| self.issued.get(jti))
            .map(|(at, _)| *at)
            .or_else(|| iat.and_then(|iat| DateTime::from_timestamp(iat, 0)));
        issued.is_none_or(|at| at <= revoked)
    }
}

/// A stable object id for a configured client: a version-8 (custom) uuid from two FNV-1a
/// hashes of the tenant and client id, so it is the same in every run.
pub(crate) fn derived_object_id(tenant_id: &str, client_id: &str) -> String {
    let seed = format!(
        "{}/{}",
        tenant_id.to_ascii_lowercase(),
        client_id.to_ascii_lowercase()
    );
    let high = crate::providers::fnv1a(format!("object-id-1#{seed}").as_bytes());
    let low = crate::providers::fnv1a(format!("object-id-2#{seed}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&high.to_be_bytes());
    bytes[8..].copy_from_slice(&low.to_be_bytes());
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// An Entra-style client secret: 40 characters with a `~` after a 3-character prefix.
fn new_client_secret() -> String {
    let body: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(37)
        .map(char::from)
        .collect();
    format!("{}8Q~{}", &body[..2], &body[2..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn configured_clients_get_stable_object_ids() {
        let a = derived_object_id("T", "client");
        assert_eq!(a, derived_object_id("t", "CLIENT"));
        assert_ne!(a, derived_object_id("t", "other"));
        assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 8);
    }

    #[test]
    fn registration_validates_and_refuses_duplicates() {
        let mut dir = Directory::default();
        let spec = |name: &str, id: Option<&str>| ApplicationSpec {
            display_name: name.into(),
            client_id: id.map(str::to_owned),
            client_secret: None,
        };
        let app = dir.register("t", spec("alice", None)).unwrap();
        assert_eq!(app.client_secret.len(), 40);
        assert!(uuid::Uuid::parse_str(&app.client_id).is_ok());
        dir.register("t", spec("bob", Some("Bob-App"))).unwrap();
        assert_eq!(
            dir.register("t", spec("bob2", Some("bob-app")))
                .unwrap_err(),
            RegisterError::Exists("bob-app".into())
        );
        assert_eq!(
            dir.register("t", spec(" ", None)).unwrap_err(),
            RegisterError::DisplayName
        );
        assert_eq!(dir.list().len(), 2);
        assert!(dir.find("BOB-APP").is_some());
    }

    #[test]
    fn revocation_refuses_tokens_issued_up_to_the_instant() {
        let mut dir = Directory::default();
        let now = Utc::now();
        let hour = Duration::hours(1);
        dir.track("old".into(), now, now + hour);
        assert!(!dir.is_revoked(Some("old"), None));
        dir.revoke(now + Duration::milliseconds(1));
        dir.track("new".into(), now + Duration::milliseconds(2), now + hour);
        assert!(dir.is_revoked(Some("old"), None));
        assert!(!dir.is_revoked(Some("new"), None));
        // Unknown tokens fall back to their iat (seconds).
        assert!(dir.is_revoked(None, Some(now.timestamp() - 1)));
        assert!(!dir.is_revoked(None, Some(now.timestamp() + 5)));
        assert!(dir.is_revoked(None, None));
    }
}
