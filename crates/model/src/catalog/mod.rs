//! What Tether can connect, built at load time from data: the connection matrix
//! (`data/connection-matrix.json`: key names, documented values, the supported source × target
//! × auth × client cells) and Tether's own per-kind facts (`data/targets.toml`: how a kind is
//! recognised, where each fact comes from, how keys are listed, network access granted and an
//! identity given access, and how documented examples become value templates).
//!
//! Nothing here is hand-typed per key: adding a target of an existing shape is one entry in
//! `targets.toml`. [`catalog`] loads both files once; the tests check that every matrix entry
//! of a supported kind renders and that every template uses only facts its kind declares.

use std::sync::LazyLock;

use serde_json::{Map, Value};

use crate::Error;
use crate::ids::ResourceId;
use crate::linker::{AuthType, ClientType};

pub mod coverage;
mod load;
pub mod template;

pub use template::{Key, Segment, Syntax, Template, percent_encode};

/// The whole catalogue.
#[derive(Debug)]
pub struct Catalog {
    /// Every source kind.
    pub sources: Vec<SourceKind>,
    /// Every target kind.
    pub targets: Vec<TargetKind>,
}

/// A kind of source compute resource.
#[derive(Debug)]
pub struct SourceKind {
    /// The matrix name (`webapp`, `containerapp`).
    pub name: String,
    /// Its ARM resource type.
    pub resource_type: String,
    /// The ARM api-version its adapter uses.
    pub api_version: String,
    /// Where configuration goes.
    pub settings: SettingsKind,
}

/// Where a source keeps its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SettingsKind {
    /// App Service app settings (secrets as plain settings or Key Vault references).
    AppSettings,
    /// Environment variables of one container of a container app (`properties.scope`),
    /// secrets as container app secrets referenced by `secretRef`.
    ContainerEnv,
}

/// The kind of `targetService` that names a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum ServiceType {
    /// An ARM resource id.
    AzureResource,
    /// A Confluent Cloud Kafka bootstrap server endpoint.
    ConfluentBootstrapServer,
    /// A Confluent schema registry endpoint.
    ConfluentSchemaRegistry,
    /// A URL of a server outside Azure.
    SelfHostedServer,
}

impl ServiceType {
    /// The wire spelling (`targetService.type`).
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::AzureResource => "AzureResource",
            ServiceType::ConfluentBootstrapServer => "ConfluentBootstrapServer",
            ServiceType::ConfluentSchemaRegistry => "ConfluentSchemaRegistry",
            ServiceType::SelfHostedServer => "SelfHostedServer",
        }
    }
}

/// A kind of target service.
#[derive(Debug)]
pub struct TargetKind {
    /// Tether's name of the kind (the matrix key for Azure targets).
    pub name: String,
    /// The matrix entry its keys and values come from.
    pub matrix: String,
    /// A human name.
    pub display_name: String,
    /// How a request names it.
    pub service_type: ServiceType,
    /// ARM resource type of target ids (Azure targets).
    pub resource_type: Option<String>,
    /// URL schemes of self-hosted endpoints.
    pub schemes: Vec<String>,
    /// ARM api-version of its resources.
    pub api_version: Option<String>,
    /// Whether facts, keys, network and roles live on the target or its parent (a database's
    /// server, a storage account's blob service's account).
    pub resource: ResourceAt,
    /// The `<CLOUD>_<TYPE>` prefixes of its keys.
    pub prefixes: Vec<String>,
    /// Where secret auth gets its secret.
    pub secret: SecretSource,
    /// How keys are listed, for secret auth without a secret.
    pub keys: Option<KeysSpec>,
    /// How network access is granted.
    pub network: Option<Network>,
    /// What an identity gets.
    pub identity: Vec<IdentityGrant>,
    /// Where each fact comes from.
    pub facts: Vec<FactSpec>,
    /// Auth types per source kind name, API spelling, the first the default.
    pub auth: Vec<(String, Vec<AuthType>)>,
    /// Supported client types, the first the default.
    pub clients: Vec<ClientType>,
    /// Templates per (auth type, client type).
    pub cells: Vec<Cell>,
}

/// Which resource holds a target's facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ResourceAt {
    /// The target itself.
    #[default]
    Target,
    /// The target's parent resource.
    Parent,
}

/// Where secret auth gets its secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SecretSource {
    /// The caller sends a user name and a password (or a Key Vault reference).
    Caller,
    /// Tether lists the target's keys at run time; the caller sends nothing.
    Keys,
    /// Secret auth is not supported.
    None,
}

/// A `listKeys`-style action and the facts its response holds (all secret).
#[derive(Debug, Clone)]
pub struct KeysSpec {
    /// The action's path below the resource (`listKeys`, `authorizationRules/X/listKeys`).
    pub action: String,
    /// Fact name → JSON pointer into the response.
    pub facts: Vec<(String, String)>,
}

/// How network access to a target is granted.
#[derive(Debug, Clone)]
pub enum Network {
    /// Named firewall-rule children of the resource (`{collection}/{name}` with start and end
    /// address fields).
    FirewallRules {
        /// The child collection.
        collection: String,
        /// The start address field.
        start: String,
        /// The end address field.
        end: String,
        /// Rule names may hold only letters and digits (Azure Cache for Redis).
        alphanumeric_names: bool,
    },
    /// Unnamed IP rules in an array of the resource (or of a child of it).
    IpRules {
        /// A child resource holding the rules (`networkRuleSets/default`), if not the resource.
        child: Option<String>,
        /// JSON pointer of the array.
        pointer: String,
        /// The field holding the address or CIDR.
        field: String,
        /// Other fields every entry carries (`action: Allow`).
        extra: Map<String, Value>,
    },
}

/// What an identity (a managed identity or a service principal) gets on a target.
#[derive(Debug, Clone, PartialEq)]
pub enum IdentityGrant {
    /// ARM role assignments on the resource (role names; the caller's `roles` replace them).
    Role {
        /// Role definition names.
        roles: Vec<String>,
    },
    /// A database user mapped to the identity, created through the server's SQL data plane.
    DatabaseUser {
        /// The SQL dialect.
        dialect: Dialect,
    },
    /// An Azure Cache for Redis access policy assignment.
    RedisAccessPolicy {
        /// The access policy name.
        policy: String,
    },
    /// A Cosmos DB SQL (data-plane) role assignment.
    CosmosSqlRole {
        /// The SQL role definition id.
        role: String,
    },
}

/// The SQL dialect of a database server's data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Dialect {
    /// Azure Database for PostgreSQL.
    Postgres,
    /// Azure Database for MySQL.
    Mysql,
    /// Azure SQL Database.
    Sql,
}

/// A fact a target provides and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactSpec {
    /// The fact's name (as templates reference it).
    pub name: String,
    /// Its source.
    pub source: FactSource,
}

/// Where a fact comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FactSource {
    /// A JSON pointer into the resource.
    Pointer(String),
    /// The host of the URL at a JSON pointer into the resource.
    UrlHost(String),
    /// A constant.
    Constant(String),
    /// The target id's own name.
    TargetName,
    /// The resource's name (the target's, or its parent's).
    ResourceName,
    /// The target id's subscription.
    Subscription,
    /// The target id's resource group.
    ResourceGroup,
    /// The endpoint of an endpoint target, as sent.
    Endpoint,
    /// The host of an endpoint URL.
    EndpointHost,
    /// The port of an endpoint URL, or a default.
    EndpointPort(String),
    /// The path of an endpoint URL (without its leading `/`), or a default.
    EndpointPath(String),
    /// The caller's secret (a self-hosted server's password standing in for a key).
    Password,
}

/// The templates of one (auth type, client type) cell.
#[derive(Debug, Clone)]
pub struct Cell {
    /// The auth type whose configuration this is (`secret` also serves `accessKey`).
    pub auth: AuthType,
    /// The client type.
    pub client: ClientType,
    /// The entries, in the documented order.
    pub entries: Vec<Template>,
}

impl TargetKind {
    /// How the catalogue operations (`configurationNames`) name the kind: its upper-cased ARM
    /// resource type (`MICROSOFT.APPCONFIGURATION/CONFIGURATIONSTORES`), or the
    /// `targetService` type of a target without an ARM id.
    pub fn service_name(&self) -> String {
        match &self.resource_type {
            Some(resource_type) => resource_type.to_ascii_uppercase(),
            None => self.service_type.as_str().to_string(),
        }
    }

    /// The templates of one auth type and client type, if supported.
    pub fn templates(&self, auth: AuthType, client: ClientType) -> Option<&[Template]> {
        let auth = match auth {
            AuthType::AccessKey => AuthType::Secret,
            other => other,
        };
        self.cells
            .iter()
            .find(|c| c.auth == auth && c.client == client)
            .map(|c| c.entries.as_slice())
    }

    /// The auth types supported from a source kind, the first the default.
    pub fn auth_types(&self, source: &str) -> &[AuthType] {
        self.auth
            .iter()
            .find(|(s, _)| s == source)
            .map(|(_, a)| a.as_slice())
            .unwrap_or_default()
    }

    /// The client types supported with an auth type.
    pub fn client_types(&self, auth: AuthType) -> impl Iterator<Item = ClientType> + '_ {
        self.clients
            .iter()
            .copied()
            .filter(move |c| self.templates(auth, *c).is_some())
    }

    /// The facts this kind provides with an auth type: its own, the keys' (for secret auth
    /// of a keyed target), and the auth's (user, password, client id…).
    pub fn facts_with(&self, auth: AuthType) -> Vec<&str> {
        let mut names: Vec<&str> = self.facts.iter().map(|f| f.name.as_str()).collect();
        if matches!(auth, AuthType::Secret | AuthType::AccessKey) {
            names.extend(
                self.keys
                    .iter()
                    .flat_map(|k| k.facts.iter().map(|(n, _)| n.as_str())),
            );
        }
        names.extend(auth_facts(auth));
        names
    }

    /// Whether the kind admits the source through firewall or IP rules.
    pub fn has_network(&self) -> bool {
        self.network.is_some()
    }
}

/// The facts an auth type contributes to configuration values.
pub fn auth_facts(auth: AuthType) -> &'static [&'static str] {
    match auth {
        AuthType::Secret | AuthType::AccessKey => &["user", "password"],
        AuthType::SystemAssignedIdentity => &["user", "principalId"],
        AuthType::UserAssignedIdentity => &["user", "principalId", "clientId"],
        AuthType::ServicePrincipalSecret => &[
            "user",
            "principalId",
            "clientId",
            "clientSecret",
            "tenantId",
        ],
        _ => &["user"],
    }
}

impl Catalog {
    /// The source kind of a resource id.
    pub fn source_for(&self, id: &ResourceId) -> Option<&SourceKind> {
        self.sources.iter().find(|s| id.is_type(&s.resource_type))
    }

    /// The target kind of an ARM id.
    pub fn target_for_id(&self, id: &ResourceId) -> Option<&TargetKind> {
        self.targets.iter().find(|t| {
            t.service_type == ServiceType::AzureResource
                && t.resource_type.as_deref().is_some_and(|rt| id.is_type(rt))
        })
    }

    /// The target kind of an endpoint target: Confluent types by type, self-hosted servers
    /// by the URL's scheme.
    pub fn target_for_endpoint(&self, service: ServiceType, endpoint: &str) -> Option<&TargetKind> {
        let scheme = endpoint
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase());
        self.targets.iter().find(|t| {
            t.service_type == service
                && (service != ServiceType::SelfHostedServer
                    || scheme
                        .as_deref()
                        .is_some_and(|s| t.schemes.iter().any(|x| x == s)))
        })
    }

    /// A target kind by name.
    pub fn target(&self, name: &str) -> Option<&TargetKind> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// A source kind by name.
    pub fn source(&self, name: &str) -> Option<&SourceKind> {
        self.sources.iter().find(|s| s.name == name)
    }
}

static CATALOG: LazyLock<Result<Catalog, String>> = LazyLock::new(|| {
    load::build(
        include_str!("../../data/connection-matrix.json"),
        include_str!("../../data/targets.toml"),
    )
});

/// The catalogue, loaded from the data files on first use. The data is compiled in and
/// checked by tests; were it ever malformed, every caller gets a `500` naming the problem
/// in the logs (and `tether serve` refuses to start) rather than a panic.
pub fn catalog() -> Result<&'static Catalog, Error> {
    CATALOG.as_ref().map_err(|why| {
        Error::internal(
            "the connection catalogue is malformed",
            std::io::Error::other(why.clone()),
        )
    })
}

#[cfg(test)]
mod tests;
