//! `tether-adapters`: every side effect on a source or a target goes through one of the small
//! capability traits here. A source or target kind offers the capabilities it has and no
//! others ([`SourceAdapters`], [`TargetAdapters`]), so a connection asks "can this target take
//! IP rules?" rather than implementing one wide trait with stubs.
//!
//! The Azure implementations ([`azure`]) speak the real Azure Resource Manager REST API over
//! reqwest ([`arm::ArmClient`]); targets that differ only in data (api-version, JSON pointers,
//! key actions, role names, all in the catalogue) share one generic adapter. Base URLs are
//! configuration, so the same code talks to the mock backend in development and tests and to
//! Azure in production.
//!
//! Verbs state their idempotency: `ensure_*` creates or leaves what exists, `remove_*` treats
//! "already gone" as success, `apply_*` converges to the requested state.
//!
//! Must never depend on axum or on the mock (it is only a dev-dependency, for tests).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tether_model::catalog::{Catalog, Dialect};
use tether_model::facts::Facts;
use tether_model::ids::ResourceId;

pub mod arm;
pub mod azure;
mod error;
pub mod jwks;

pub use error::{AdapterError, ErrorKind, scrub};

/// Who is calling, for the backend's logs: the correlation id of every request (the saga id,
/// so all calls of one operation can be found together).
#[derive(Debug, Clone)]
pub struct Call {
    /// Sent as `x-ms-correlation-request-id`.
    pub correlation_id: String,
}

impl Call {
    /// A call context correlated by `id`.
    pub fn correlated(id: impl std::fmt::Display) -> Self {
        Self {
            correlation_id: id.to_string(),
        }
    }
}

/// What a target is: an ARM resource, or an endpoint outside Azure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "value")]
pub enum TargetRef {
    /// An ARM resource id.
    Arm(ResourceId),
    /// An endpoint (a Confluent bootstrap server, a URL of a self-hosted server).
    Endpoint(String),
}

impl TargetRef {
    /// The ARM id, for an ARM target.
    pub fn arm(&self) -> Option<&ResourceId> {
        match self {
            TargetRef::Arm(id) => Some(id),
            TargetRef::Endpoint(_) => None,
        }
    }
}

impl std::fmt::Display for TargetRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetRef::Arm(id) => f.write_str(id.as_str()),
            TargetRef::Endpoint(e) => f.write_str(e),
        }
    }
}

/// What a connection needs to know about its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceFacts {
    /// The public IPv4 addresses the source's outbound traffic comes from.
    pub outbound_ips: Vec<Ipv4Addr>,
}

/// One configuration entry of a source: its value, and whether it is kept as a secret
/// (a container app secret referenced by `secretRef`; app settings have no such notion).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    /// The value (may be a secret: never log it).
    pub value: String,
    /// Whether the source keeps it as a secret.
    #[serde(default)]
    pub secret: bool,
}

impl std::fmt::Debug for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Setting({} chars, secret: {})",
            self.value.len(),
            self.secret
        )
    }
}

/// Configuration entries to set and to remove on a source; every other entry is left as is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsChange {
    /// Entries to write.
    pub set: BTreeMap<String, Setting>,
    /// Entries to delete.
    pub remove: BTreeSet<String>,
}

/// Where a source keeps configuration: an App Service app's settings, or the environment of
/// one container of a container app (`scope`).
#[async_trait]
pub trait SourceSettings: Send + Sync + 'static {
    /// Reads the source's outbound addresses. `NotFound` when it does not exist.
    async fn facts(&self, call: &Call, source: &ResourceId) -> Result<SourceFacts, AdapterError>;

    /// Reads the configuration entries (secret values resolved). No side effects.
    async fn read_settings(
        &self,
        call: &Call,
        source: &ResourceId,
        scope: Option<&str>,
    ) -> Result<BTreeMap<String, Setting>, AdapterError>;

    /// Sets and removes entries, preserving all others. Idempotent: applying the same change
    /// twice leaves the same state, and a change that alters nothing writes nothing.
    async fn apply_settings(
        &self,
        call: &Call,
        source: &ResourceId,
        scope: Option<&str>,
        change: &SettingsChange,
    ) -> Result<(), AdapterError>;
}

/// A managed identity as a source holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    /// The identity's object (principal) id.
    pub principal_id: String,
    /// Its client (application) id, for user-assigned identities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// The managed identities of a source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceIdentity {
    /// The system-assigned identity, when enabled.
    pub system: Option<Principal>,
    /// The user-assigned identities attached, by lower-cased resource id.
    pub user: BTreeMap<String, Principal>,
}

/// A change of a source's managed identities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityChange {
    /// Enable the system-assigned identity.
    EnableSystem,
    /// Disable it.
    DisableSystem,
    /// Attach a user-assigned identity (its resource id).
    Attach(ResourceId),
    /// Detach one.
    Detach(ResourceId),
}

/// A source's managed identities.
#[async_trait]
pub trait SourceIdentities: Send + Sync + 'static {
    /// The identities the source holds now. No side effects.
    async fn identity(
        &self,
        call: &Call,
        source: &ResourceId,
    ) -> Result<SourceIdentity, AdapterError>;

    /// Applies one change, leaving the other identities as they are; a change already in
    /// effect writes nothing. Returns the identities after it.
    async fn apply_identity(
        &self,
        call: &Call,
        source: &ResourceId,
        change: &IdentityChange,
    ) -> Result<SourceIdentity, AdapterError>;
}

/// The facts of a target (host, port, database, endpoint…), none secret.
#[async_trait]
pub trait TargetFacts: Send + Sync + 'static {
    /// Reads the facts. `NotFound` when the target does not exist. No side effects.
    async fn facts(&self, call: &Call, target: &TargetRef) -> Result<Facts, AdapterError>;
}

/// A target's keys (`listKeys`-style actions), for secret auth without a caller's secret.
#[async_trait]
pub trait AccessKeys: Send + Sync + 'static {
    /// Lists the keys as secret facts. No side effects.
    async fn keys(&self, call: &Call, target: &TargetRef) -> Result<Facts, AdapterError>;
}

/// A firewall rule admitting an IPv4 range to a target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FirewallRule {
    /// The rule's name on the target.
    pub name: String,
    /// First address.
    pub start: Ipv4Addr,
    /// Last address.
    pub end: Ipv4Addr,
}

/// Named firewall rules on a target (database servers, caches).
#[async_trait]
pub trait FirewallRules: Send + Sync + 'static {
    /// The rules whose names start with `prefix`. No side effects.
    async fn rules(
        &self,
        call: &Call,
        target: &TargetRef,
        prefix: &str,
    ) -> Result<Vec<FirewallRule>, AdapterError>;

    /// Creates the rule, or updates it to match. Idempotent.
    async fn ensure_rule(
        &self,
        call: &Call,
        target: &TargetRef,
        rule: &FirewallRule,
    ) -> Result<(), AdapterError>;

    /// Deletes the rule; one (or a target) already gone is success.
    async fn remove_rule(
        &self,
        call: &Call,
        target: &TargetRef,
        name: &str,
    ) -> Result<(), AdapterError>;
}

/// Unnamed IP rules on a target (Storage, Key Vault, Cosmos DB, Service Bus network ACLs).
#[async_trait]
pub trait IpRules: Send + Sync + 'static {
    /// The addresses or CIDR blocks admitted now. No side effects.
    async fn ip_rules(
        &self,
        call: &Call,
        target: &TargetRef,
    ) -> Result<BTreeSet<String>, AdapterError>;

    /// Adds `add` and removes `remove`, keeping every other entry. Idempotent; a change that
    /// alters nothing writes nothing.
    async fn apply_ip_rules(
        &self,
        call: &Call,
        target: &TargetRef,
        add: &BTreeSet<String>,
        remove: &BTreeSet<String>,
    ) -> Result<(), AdapterError>;
}

/// Whom a grant is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grantee {
    /// The object (principal) id.
    pub principal_id: String,
    /// The client (application) id, when known (user-assigned identities, service principals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// A database user name for it, where the grant is a database user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
}

/// One grant to make on a target for a grantee: what the catalogue's `identity` entries and
/// the caller's `roles` become.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Grant {
    /// An ARM role assignment at `scope` (a role name or a role definition id).
    Role {
        /// The scope (the target's resource).
        scope: ResourceId,
        /// The role name or definition id.
        role: String,
    },
    /// A database user mapped to the grantee, on a server's database.
    DatabaseUser {
        /// The server's host name.
        host: String,
        /// The database.
        database: String,
        /// The dialect.
        dialect: Dialect,
    },
    /// An Azure Cache for Redis access policy assignment on a cache.
    RedisAccessPolicy {
        /// The cache.
        cache: ResourceId,
        /// The policy name.
        policy: String,
    },
    /// A Cosmos DB SQL role assignment on an account.
    CosmosSqlRole {
        /// The account.
        account: ResourceId,
        /// The SQL role definition id (a GUID).
        role: String,
    },
}

impl Grant {
    /// A stable identity of the grant for one grantee: the same grant made for another linker
    /// has the same key (so linkers can share it).
    pub fn key(&self, grantee: &Grantee) -> String {
        let who = &grantee.principal_id;
        match self {
            Grant::Role { scope, role } => {
                format!("role:{}:{}:{who}", scope.key(), role.to_ascii_lowercase())
            }
            Grant::DatabaseUser { host, database, .. } => format!(
                "dbuser:{}:{}:{}",
                host.to_ascii_lowercase(),
                database.to_ascii_lowercase(),
                grantee
                    .user_name
                    .as_deref()
                    .unwrap_or(who)
                    .to_ascii_lowercase()
            ),
            Grant::RedisAccessPolicy { cache, policy } => format!(
                "redis:{}:{}:{who}",
                cache.key(),
                policy.to_ascii_lowercase()
            ),
            Grant::CosmosSqlRole { account, role } => {
                format!(
                    "cosmos:{}:{}:{who}",
                    account.key(),
                    role.to_ascii_lowercase()
                )
            }
        }
    }
}

/// What ensuring a grant found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Ensured {
    /// It was made now (so it is this connection's to remove).
    Created,
    /// It existed already (someone else's: never removed by this connection).
    Existed,
}

/// Grants on targets: role assignments, database users, data-plane policies.
#[async_trait]
pub trait Grants: Send + Sync + 'static {
    /// Makes the grant, under `name` where the grant has names (derived by the caller, so a
    /// rerun finds its own). Idempotent.
    async fn ensure_grant(
        &self,
        call: &Call,
        grant: &Grant,
        grantee: &Grantee,
        name: &str,
    ) -> Result<Ensured, AdapterError>;

    /// Whether the grant exists (under any name). No side effects.
    async fn grant_exists(
        &self,
        call: &Call,
        grant: &Grant,
        grantee: &Grantee,
    ) -> Result<bool, AdapterError>;

    /// Removes the grant made under `name` (or, for database users, the user); already gone
    /// is success.
    async fn remove_grant(
        &self,
        call: &Call,
        grant: &Grant,
        grantee: &Grantee,
        name: &str,
    ) -> Result<(), AdapterError>;
}

/// Secrets kept in a Key Vault, referenced from a source's settings.
#[async_trait]
pub trait SecretVault: Send + Sync + 'static {
    /// Stores `value` as secret `name` in `vault` (a new version when it changed); returns
    /// the secret's URI. Idempotent.
    async fn put_secret(
        &self,
        call: &Call,
        vault: &ResourceId,
        name: &str,
        value: &str,
    ) -> Result<String, AdapterError>;

    /// Deletes the secret; already gone is success.
    async fn remove_secret(
        &self,
        call: &Call,
        vault: &ResourceId,
        name: &str,
    ) -> Result<(), AdapterError>;
}

/// A user-assigned managed identity, found by its client id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentity {
    /// Its ARM id.
    pub id: ResourceId,
    /// Its principal and client ids.
    pub principal: Principal,
}

/// The directory of user-assigned identities.
#[async_trait]
pub trait Identities: Send + Sync + 'static {
    /// The user-assigned identity with `client_id` in `subscription`, if any.
    async fn find(
        &self,
        call: &Call,
        subscription: &str,
        client_id: &str,
    ) -> Result<Option<UserIdentity>, AdapterError>;
}

/// The capabilities of one source kind.
#[derive(Clone)]
pub struct SourceAdapters {
    /// Its configuration.
    pub settings: Arc<dyn SourceSettings>,
    /// Its managed identities.
    pub identity: Arc<dyn SourceIdentities>,
}

/// The capabilities of one target kind; `None` where the kind does not have one.
#[derive(Clone)]
pub struct TargetAdapters {
    /// Its facts.
    pub facts: Arc<dyn TargetFacts>,
    /// Its keys.
    pub keys: Option<Arc<dyn AccessKeys>>,
    /// Named firewall rules.
    pub firewall: Option<Arc<dyn FirewallRules>>,
    /// Unnamed IP rules.
    pub ip_rules: Option<Arc<dyn IpRules>>,
}

/// Every adapter, looked up by catalogue kind name.
#[derive(Clone)]
pub struct Adapters {
    /// The catalogue the kinds come from.
    pub catalog: &'static Catalog,
    sources: BTreeMap<String, SourceAdapters>,
    targets: BTreeMap<String, TargetAdapters>,
    /// Grants on any target.
    pub grants: Arc<dyn Grants>,
    /// Key Vault secrets.
    pub vault: Arc<dyn SecretVault>,
    /// The directory of user-assigned identities.
    pub identities: Arc<dyn Identities>,
    /// Whether database users can be created (a SQL data plane is configured).
    pub database_users: bool,
}

impl Adapters {
    /// A registry over `catalog` with the shared capabilities; add kinds with
    /// [`Adapters::with_source`] and [`Adapters::with_target`].
    pub fn new(
        catalog: &'static Catalog,
        grants: Arc<dyn Grants>,
        vault: Arc<dyn SecretVault>,
        identities: Arc<dyn Identities>,
        database_users: bool,
    ) -> Self {
        Self {
            catalog,
            sources: BTreeMap::new(),
            targets: BTreeMap::new(),
            grants,
            vault,
            identities,
            database_users,
        }
    }

    /// Registers the capabilities of a source kind.
    pub fn with_source(mut self, kind: &str, adapters: SourceAdapters) -> Self {
        self.sources.insert(kind.to_string(), adapters);
        self
    }

    /// Registers the capabilities of a target kind.
    pub fn with_target(mut self, kind: &str, adapters: TargetAdapters) -> Self {
        self.targets.insert(kind.to_string(), adapters);
        self
    }

    /// The capabilities of a source kind.
    pub fn source(&self, kind: &str) -> Option<&SourceAdapters> {
        self.sources.get(kind)
    }

    /// The capabilities of a target kind.
    pub fn target(&self, kind: &str) -> Option<&TargetAdapters> {
        self.targets.get(kind)
    }
}
