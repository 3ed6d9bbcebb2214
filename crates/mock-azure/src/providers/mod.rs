//! Provider-specific behaviour: which resource types the mock knows, and for each what Azure
//! computes, validates, hides, creates alongside, answers asynchronously, or serves as actions.
//! Everything else is stored generically by `resources`.
//!
//! One module per provider namespace; this one dispatches. Secret material (keys, secret
//! values) never goes into a resource as GET returns it: it is stored next to the resource under
//! the state key `{resource key}/$secret` (see [`secret_key`]), which no ARM route serves, and
//! is revealed only by the POST actions that reveal it in Azure.

mod appconfig;
mod containerapps;
mod cosmos;
mod databases;
mod identity;
mod keyvault;
mod redis;
mod servicebus;
mod storage;
mod web;

use std::net::Ipv4Addr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::error::ArmError;
use crate::resources::ProviderPath;
use crate::state::State;

pub(crate) use web::{get_app_settings, put_app_settings};

/// The resource types with behaviour beyond generic storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    WebSite,
    WebAppSettings,
    UserAssignedIdentity,
    ContainerApp,
    ContainerAppRevision,
    PgServer,
    PgDatabase,
    PgFirewallRule,
    MySqlServer,
    MySqlDatabase,
    MySqlFirewallRule,
    SqlServer,
    SqlDatabase,
    SqlFirewallRule,
    StorageAccount,
    StorageService,
    KeyVault,
    KeyVaultSecret,
    ServiceBusNamespace,
    ServiceBusAuthorizationRule,
    ServiceBusNetworkRuleSet,
    Redis,
    RedisFirewallRule,
    RedisAccessPolicyAssignment,
    RedisDatabase,
    CosmosAccount,
    CosmosSqlDatabase,
    CosmosSqlRoleDefinition,
    CosmosSqlRoleAssignment,
    AppConfigurationStore,
    Generic,
}

/// How writes of a kind are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteMode {
    /// `PUT` 201/200 with the resource, `DELETE` 200/204.
    Sync,
    /// `PUT` and `DELETE` answer `202 Accepted` without a body plus the operation headers
    /// (`PATCH` stays synchronous).
    Accepted,
    /// Like Container Apps: `PUT` 201/200 with the resource plus `Azure-AsyncOperation`,
    /// `PATCH` and `DELETE` `202 Accepted` with the operation headers.
    AsyncWithBody,
}

/// Recognises a provider path (`rest` alternates type and name; names are ignored).
pub(crate) fn classify(namespace: &str, rest: &[String]) -> Kind {
    let ns = namespace.to_ascii_lowercase();
    let lower: Vec<String> = rest.iter().map(|s| s.to_ascii_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    match (ns.as_str(), lower.as_slice()) {
        ("microsoft.web", ["sites", _]) => Kind::WebSite,
        ("microsoft.web", ["sites", _, "config", "appsettings"]) => Kind::WebAppSettings,
        ("microsoft.managedidentity", ["userassignedidentities", _]) => Kind::UserAssignedIdentity,
        ("microsoft.app", ["containerapps", _]) => Kind::ContainerApp,
        ("microsoft.app", ["containerapps", _, "revisions", _]) => Kind::ContainerAppRevision,
        ("microsoft.dbforpostgresql", ["flexibleservers", _]) => Kind::PgServer,
        ("microsoft.dbforpostgresql", ["flexibleservers", _, "databases", _]) => Kind::PgDatabase,
        ("microsoft.dbforpostgresql", ["flexibleservers", _, "firewallrules", _]) => {
            Kind::PgFirewallRule
        }
        ("microsoft.dbformysql", ["flexibleservers", _]) => Kind::MySqlServer,
        ("microsoft.dbformysql", ["flexibleservers", _, "databases", _]) => Kind::MySqlDatabase,
        ("microsoft.dbformysql", ["flexibleservers", _, "firewallrules", _]) => {
            Kind::MySqlFirewallRule
        }
        ("microsoft.sql", ["servers", _]) => Kind::SqlServer,
        ("microsoft.sql", ["servers", _, "databases", _]) => Kind::SqlDatabase,
        ("microsoft.sql", ["servers", _, "firewallrules", _]) => Kind::SqlFirewallRule,
        ("microsoft.storage", ["storageaccounts", _]) => Kind::StorageAccount,
        (
            "microsoft.storage",
            [
                "storageaccounts",
                _,
                "blobservices" | "queueservices" | "tableservices" | "fileservices",
                _,
            ],
        ) => Kind::StorageService,
        ("microsoft.keyvault", ["vaults", _]) => Kind::KeyVault,
        ("microsoft.keyvault", ["vaults", _, "secrets", _]) => Kind::KeyVaultSecret,
        ("microsoft.servicebus", ["namespaces", _]) => Kind::ServiceBusNamespace,
        ("microsoft.servicebus", ["namespaces", _, "authorizationrules", _])
        | (
            "microsoft.servicebus",
            [
                "namespaces",
                _,
                "queues" | "topics",
                _,
                "authorizationrules",
                _,
            ],
        ) => Kind::ServiceBusAuthorizationRule,
        ("microsoft.servicebus", ["namespaces", _, "networkrulesets", _]) => {
            Kind::ServiceBusNetworkRuleSet
        }
        ("microsoft.cache", ["redis", _]) => Kind::Redis,
        ("microsoft.cache", ["redis", _, "firewallrules", _]) => Kind::RedisFirewallRule,
        ("microsoft.cache", ["redis", _, "accesspolicyassignments", _]) => {
            Kind::RedisAccessPolicyAssignment
        }
        ("microsoft.cache", ["redis", _, "databases", _]) => Kind::RedisDatabase,
        ("microsoft.documentdb", ["databaseaccounts", _]) => Kind::CosmosAccount,
        ("microsoft.documentdb", ["databaseaccounts", _, "sqldatabases", _]) => {
            Kind::CosmosSqlDatabase
        }
        ("microsoft.documentdb", ["databaseaccounts", _, "sqlroledefinitions", _]) => {
            Kind::CosmosSqlRoleDefinition
        }
        ("microsoft.documentdb", ["databaseaccounts", _, "sqlroleassignments", _]) => {
            Kind::CosmosSqlRoleAssignment
        }
        ("microsoft.appconfiguration", ["configurationstores", _]) => Kind::AppConfigurationStore,
        _ => Kind::Generic,
    }
}

/// The `type` Azure reports for a known kind (`None`: the caller's casing is kept).
pub(crate) fn canonical_type(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::WebSite => "Microsoft.Web/sites",
        Kind::WebAppSettings => "Microsoft.Web/sites/config",
        Kind::UserAssignedIdentity => "Microsoft.ManagedIdentity/userAssignedIdentities",
        Kind::ContainerApp => "Microsoft.App/containerApps",
        Kind::ContainerAppRevision => "Microsoft.App/containerApps/revisions",
        Kind::PgServer => "Microsoft.DBforPostgreSQL/flexibleServers",
        Kind::PgDatabase => "Microsoft.DBforPostgreSQL/flexibleServers/databases",
        Kind::PgFirewallRule => "Microsoft.DBforPostgreSQL/flexibleServers/firewallRules",
        Kind::MySqlServer => "Microsoft.DBforMySQL/flexibleServers",
        Kind::MySqlDatabase => "Microsoft.DBforMySQL/flexibleServers/databases",
        Kind::MySqlFirewallRule => "Microsoft.DBforMySQL/flexibleServers/firewallRules",
        Kind::SqlServer => "Microsoft.Sql/servers",
        Kind::SqlDatabase => "Microsoft.Sql/servers/databases",
        Kind::SqlFirewallRule => "Microsoft.Sql/servers/firewallRules",
        Kind::StorageAccount => "Microsoft.Storage/storageAccounts",
        Kind::KeyVault => "Microsoft.KeyVault/vaults",
        Kind::KeyVaultSecret => "Microsoft.KeyVault/vaults/secrets",
        Kind::ServiceBusNamespace => "Microsoft.ServiceBus/Namespaces",
        Kind::ServiceBusNetworkRuleSet => "Microsoft.ServiceBus/Namespaces/NetworkRuleSets",
        Kind::Redis => "Microsoft.Cache/Redis",
        Kind::RedisFirewallRule => "Microsoft.Cache/Redis/firewallRules",
        Kind::RedisAccessPolicyAssignment => "Microsoft.Cache/Redis/accessPolicyAssignments",
        Kind::RedisDatabase => "Microsoft.Cache/Redis/databases",
        Kind::CosmosAccount => "Microsoft.DocumentDB/databaseAccounts",
        Kind::CosmosSqlDatabase => "Microsoft.DocumentDB/databaseAccounts/sqlDatabases",
        Kind::CosmosSqlRoleDefinition => "Microsoft.DocumentDB/databaseAccounts/sqlRoleDefinitions",
        Kind::CosmosSqlRoleAssignment => "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments",
        Kind::AppConfigurationStore => "Microsoft.AppConfiguration/configurationStores",
        // These depend on the path (`blobServices` vs `queueServices`, namespace vs queue
        // rules): storage and servicebus fix them in `finalize`.
        Kind::StorageService | Kind::ServiceBusAuthorizationRule | Kind::Generic => return None,
    })
}

/// Tracked (top-level) resources and SQL databases must carry a location.
pub(crate) fn requires_location(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::WebSite
            | Kind::UserAssignedIdentity
            | Kind::ContainerApp
            | Kind::PgServer
            | Kind::MySqlServer
            | Kind::SqlServer
            | Kind::SqlDatabase
            | Kind::StorageAccount
            | Kind::KeyVault
            | Kind::ServiceBusNamespace
            | Kind::Redis
            | Kind::CosmosAccount
            | Kind::AppConfigurationStore
    )
}

/// How PUT, PATCH and DELETE of a kind are answered.
pub(crate) fn write_mode(kind: Kind) -> WriteMode {
    match kind {
        Kind::PgDatabase
        | Kind::PgFirewallRule
        | Kind::MySqlDatabase
        | Kind::MySqlFirewallRule
        | Kind::SqlDatabase
        | Kind::CosmosSqlDatabase
        | Kind::CosmosSqlRoleAssignment
        | Kind::RedisAccessPolicyAssignment => WriteMode::Accepted,
        Kind::ContainerApp => WriteMode::AsyncWithBody,
        _ => WriteMode::Sync,
    }
}

/// Kinds that only the provider writes (revisions) or that are computed (Redis databases):
/// PUT, PATCH and DELETE answer `405`.
pub(crate) fn read_only(kind: Kind) -> bool {
    matches!(kind, Kind::ContainerAppRevision | Kind::RedisDatabase)
}

/// What a provider sees while finalizing a write.
pub(crate) struct Ctx<'a> {
    pub(crate) state: &'a State,
    pub(crate) path: &'a ProviderPath,
    /// The stored resource before this write, if any.
    pub(crate) existing: Option<&'a Value>,
    pub(crate) tenant_id: &'a str,
    pub(crate) now: DateTime<Utc>,
}

impl Ctx<'_> {
    /// The resource's stored secret material, if any.
    pub(crate) fn secret(&self) -> Option<&Value> {
        self.state.resources.get(&secret_key(&self.path.key()))
    }

    /// The stored parent resource (for nested kinds).
    pub(crate) fn parent(&self) -> Option<&Value> {
        self.path
            .parent()
            .and_then(|parent| self.state.resources.get(&parent.key()))
    }

    /// A previously stored field of the resource (to keep computed values stable).
    pub(crate) fn kept(&self, pointer: &str) -> Option<Value> {
        self.existing.and_then(|e| e.pointer(pointer)).cloned()
    }
}

/// What a write stores beside the resource itself.
#[derive(Debug, Default)]
pub(crate) struct Extras {
    /// New secret material for `{key}/$secret` (`None`: leave it as it is; `Some(Null)`:
    /// remove it).
    pub(crate) secret: Option<Value>,
    /// Other entries to write by state key: default children, their secrets, revisions.
    pub(crate) entries: Vec<(String, Value)>,
}

/// The state key of a resource's secret material.
pub(crate) fn secret_key(resource_key: &str) -> String {
    format!("{resource_key}/$secret")
}

/// Validates a resource about to be stored, adds what the provider computes and removes what
/// it never returns; returns what must be stored beside it.
pub(crate) fn finalize(
    ctx: &Ctx<'_>,
    kind: Kind,
    resource: &mut Map<String, Value>,
) -> Result<Extras, ArmError> {
    let name = ctx.path.name().to_owned();
    match kind {
        Kind::WebSite => web::finalize_site(ctx, &name, resource),
        Kind::UserAssignedIdentity => {
            identity::finalize_user_assigned(ctx, resource);
            Ok(Extras::default())
        }
        Kind::ContainerApp => containerapps::finalize(ctx, &name, resource),
        Kind::PgServer | Kind::MySqlServer | Kind::SqlServer => {
            databases::finalize_server(ctx, kind, &name, resource)
        }
        Kind::PgDatabase | Kind::MySqlDatabase | Kind::SqlDatabase => {
            databases::finalize_database(ctx, kind, resource);
            Ok(Extras::default())
        }
        Kind::PgFirewallRule | Kind::MySqlFirewallRule | Kind::SqlFirewallRule => {
            databases::validate_firewall_rule(&name, properties_mut(resource))?;
            Ok(Extras::default())
        }
        Kind::StorageAccount => storage::finalize_account(ctx, &name, resource),
        Kind::StorageService => {
            storage::finalize_service(ctx, resource)?;
            Ok(Extras::default())
        }
        Kind::KeyVault => {
            keyvault::finalize_vault(ctx, &name, resource)?;
            Ok(Extras::default())
        }
        Kind::KeyVaultSecret => keyvault::finalize_secret(ctx, &name, resource),
        Kind::ServiceBusNamespace => servicebus::finalize_namespace(ctx, &name, resource),
        Kind::ServiceBusAuthorizationRule => servicebus::finalize_rule(ctx, resource),
        Kind::ServiceBusNetworkRuleSet => {
            servicebus::finalize_network_rule_set(ctx, &name, resource)?;
            Ok(Extras::default())
        }
        Kind::Redis => redis::finalize_cache(ctx, &name, resource),
        Kind::RedisFirewallRule => {
            redis::validate_firewall_rule(&name, properties_mut(resource))?;
            Ok(Extras::default())
        }
        Kind::RedisAccessPolicyAssignment => {
            redis::validate_access_policy_assignment(ctx, resource)?;
            Ok(Extras::default())
        }
        Kind::CosmosAccount => cosmos::finalize_account(ctx, &name, resource),
        Kind::CosmosSqlDatabase => {
            cosmos::finalize_sql_database(ctx, &name, resource);
            Ok(Extras::default())
        }
        Kind::CosmosSqlRoleDefinition => {
            cosmos::validate_role_definition(&name)?;
            Ok(Extras::default())
        }
        Kind::CosmosSqlRoleAssignment => {
            cosmos::validate_role_assignment(ctx, &name, resource)?;
            Ok(Extras::default())
        }
        Kind::AppConfigurationStore => appconfig::finalize_store(ctx, &name, resource),
        Kind::WebAppSettings | Kind::ContainerAppRevision | Kind::RedisDatabase | Kind::Generic => {
            Ok(Extras::default())
        }
    }
}

/// Resources that exist without being stored (Redis `databases/{n}`, Cosmos built-in role
/// definitions); `None` when the path is no such resource (or its parent is missing).
pub(crate) fn virtual_get(state: &State, path: &ProviderPath) -> Option<Value> {
    match path.kind() {
        Kind::RedisDatabase => redis::database(state, path),
        Kind::CosmosSqlRoleDefinition => cosmos::built_in_role_definition(state, path),
        _ => None,
    }
}

/// Virtual members of a collection, listed after the stored ones.
pub(crate) fn virtual_list(state: &State, collection: &ProviderPath) -> Vec<Value> {
    cosmos::built_in_role_definitions(state, collection)
}

/// `POST {resource}/{action}`: `None` when the resource type has no such action.
pub(crate) fn action(
    state: &mut State,
    target: &ProviderPath,
    action: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Option<Result<Value, ArmError>> {
    let action = action.to_ascii_lowercase();
    match (target.kind(), action.as_str()) {
        (Kind::WebAppSettings, "list") => {
            let site = target.parent()?;
            Some(get_app_settings(state, &site))
        }
        (Kind::StorageAccount, "listkeys") => Some(storage::list_keys(state, target)),
        (Kind::StorageAccount, "regeneratekey") => {
            Some(storage::regenerate_key(state, target, body, now))
        }
        (Kind::ServiceBusAuthorizationRule, "listkeys") => {
            Some(servicebus::list_keys(state, target))
        }
        (Kind::ServiceBusAuthorizationRule, "regeneratekeys") => {
            Some(servicebus::regenerate_keys(state, target, body))
        }
        (Kind::Redis, "listkeys") => Some(redis::list_keys(state, target)),
        (Kind::Redis, "regeneratekey") => Some(redis::regenerate_key(state, target, body)),
        (Kind::CosmosAccount, "listkeys") => Some(cosmos::list_keys(state, target, false)),
        (Kind::CosmosAccount, "readonlykeys") => Some(cosmos::list_keys(state, target, true)),
        (Kind::CosmosAccount, "listconnectionstrings") => {
            Some(cosmos::list_connection_strings(state, target))
        }
        (Kind::AppConfigurationStore, "listkeys") => Some(appconfig::list_keys(state, target)),
        (Kind::ContainerApp, "listsecrets") => Some(containerapps::list_secrets(state, target)),
        _ => None,
    }
}

/// The stored resource and its secret material, or `ResourceNotFound`.
pub(crate) fn with_secret<'a>(
    state: &'a State,
    path: &ProviderPath,
) -> Result<(&'a Value, &'a Value), ArmError> {
    let resource = crate::resources::get_ref(state, path)?;
    let secret = state
        .resources
        .get(&secret_key(&path.key()))
        .ok_or_else(|| crate::resources::resource_not_found(path))?;
    Ok((resource, secret))
}

/// The `properties` object, created (or replacing a non-object) if needed.
pub(crate) fn properties_mut(resource: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let properties = resource.entry("properties").or_insert(Value::Null);
    if !properties.is_object() {
        *properties = Value::Object(Map::new());
    }
    properties
        .as_object_mut()
        .expect("properties was just made an object")
}

/// Sets `field` to `default` unless it already holds a value of the same JSON type.
pub(crate) fn default_field(object: &mut Map<String, Value>, field: &str, default: Value) {
    let same_type = object.get(field).is_some_and(|v| {
        std::mem::discriminant(v) == std::mem::discriminant(&default) && !v.is_null()
    });
    if !same_type {
        object.insert(field.to_owned(), default);
    }
}

/// A random access key: `bytes` random bytes in standard base64, like Azure's keys.
pub(crate) fn random_key(bytes: usize) -> String {
    let raw: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    STANDARD.encode(raw)
}

/// FNV-1a: a stable hash (std's `DefaultHasher` output may change between Rust releases).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `400 InvalidParameterValue` naming a parameter, as the database providers answer.
pub(crate) fn invalid_parameter(parameter: &str) -> ArmError {
    ArmError::bad_request(
        "InvalidParameterValue",
        format!("Invalid value given for parameter {parameter}. Specify a valid parameter value."),
    )
}

/// An IPv4 address, or an IPv4 CIDR range with a prefix of at most `max_prefix` bits.
pub(crate) fn is_ipv4_or_cidr(value: &str, max_prefix: u8) -> bool {
    match value.split_once('/') {
        None => value.parse::<Ipv4Addr>().is_ok(),
        Some((address, prefix)) => {
            address.parse::<Ipv4Addr>().is_ok()
                && !prefix.starts_with('+')
                && prefix.parse::<u8>().is_ok_and(|p| p <= max_prefix)
        }
    }
}

/// The objects of the array `object[field]` (absent or null: none); `Err` when it is not an
/// array of objects.
pub(crate) fn object_array<'a>(
    object: &'a Map<String, Value>,
    field: &str,
) -> Result<Vec<&'a Map<String, Value>>, ()> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(|i| i.as_object().ok_or(())).collect(),
        Some(_) => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_rules_accept_addresses_and_bounded_cidrs() {
        assert!(is_ipv4_or_cidr("1.2.3.4", 32));
        assert!(is_ipv4_or_cidr("1.2.3.0/24", 32));
        assert!(!is_ipv4_or_cidr("1.2.3.4/32", 30));
        assert!(!is_ipv4_or_cidr("1.2.3.4/33", 32));
        assert!(!is_ipv4_or_cidr("1.2.3/24", 32));
        assert!(!is_ipv4_or_cidr("::1", 32));
        assert!(!is_ipv4_or_cidr("1.2.3.4/+8", 32));
    }

    #[test]
    fn paths_classify_case_insensitively() {
        let rest = |s: &str| s.split('/').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            classify("microsoft.CACHE", &rest("Redis/r/databases/0")),
            Kind::RedisDatabase
        );
        assert_eq!(
            classify(
                "Microsoft.ServiceBus",
                &rest("namespaces/n/queues/q/authorizationRules/r")
            ),
            Kind::ServiceBusAuthorizationRule
        );
        assert_eq!(
            classify(
                "Microsoft.Storage",
                &rest("storageAccounts/s/blobServices/default")
            ),
            Kind::StorageService
        );
        assert_eq!(classify("Contoso.X", &rest("a/b")), Kind::Generic);
    }
}
