//! The demo seed ([`crate::Seed::Demo`]): ids of the seeded tenant, client and resources, and the
//! function that creates them. These values are documented for users in `docs/mock-azure.md`;
//! never change them casually.

use serde_json::{Value, json};

use crate::resources::{self, ProviderPath};
use crate::state::State;

/// Tenant served by the demo token endpoint (`POST /{TENANT_ID}/oauth2/v2.0/token`).
pub const TENANT_ID: &str = "aaaaaaaa-0000-4000-8000-000000000001";
/// Client id accepted by the demo token endpoint.
pub const CLIENT_ID: &str = "tether-dev-client";
/// Client secret of [`CLIENT_ID`]. A published demo value, not a secret.
pub const CLIENT_SECRET: &str = "tether-dev-secret";
/// Object id of [`CLIENT_ID`]'s service principal: `oid` and `sub` of its tokens.
pub const CLIENT_OBJECT_ID: &str = "08e5fa31-2314-8299-b025-dd969cba3c96";
/// The demo subscription.
pub const SUBSCRIPTION_ID: &str = "11111111-2222-3333-4444-555555555555";
/// The demo resource group name.
pub const RESOURCE_GROUP: &str = "rg-demo";
/// Location of every demo resource.
pub const LOCATION: &str = "westus";
/// The demo resource group id.
pub const RESOURCE_GROUP_ID: &str =
    "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-demo";
/// App Service app `demo-web` (outbound IPs `20.42.0.1,20.42.0.2`).
pub const WEB_APP_ID: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-demo/providers/Microsoft.Web/sites/demo-web";
/// App Service app `demo-api` (outbound IP `20.42.1.1`).
pub const API_APP_ID: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-demo/providers/Microsoft.Web/sites/demo-api";
/// PostgreSQL flexible server `demo-pg`.
pub const PG_SERVER_ID: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-demo/providers/Microsoft.DBforPostgreSQL/flexibleServers/demo-pg";
/// Database `orders` on `demo-pg`.
pub const PG_DATABASE_ID: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-demo/providers/Microsoft.DBforPostgreSQL/flexibleServers/demo-pg/databases/orders";
/// Database `inventory` on `demo-pg`.
pub const PG_DATABASE_2_ID: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-demo/providers/Microsoft.DBforPostgreSQL/flexibleServers/demo-pg/databases/inventory";

/// Function app `demo-func` (kind `functionapp`).
pub const FUNCTION_APP_ID: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-demo/providers/Microsoft.Web/sites/demo-func";
/// Container app `demo-aca` (one container `main`, no secrets).
pub const CONTAINER_APP_ID: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-demo/providers/Microsoft.App/containerApps/demo-aca";
/// User-assigned identity `demo-identity`.
pub const IDENTITY_ID: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-demo/providers/Microsoft.ManagedIdentity/userAssignedIdentities/demo-identity";
/// MySQL flexible server `demo-mysql`.
pub const MYSQL_SERVER_ID: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-demo/providers/Microsoft.DBforMySQL/flexibleServers/demo-mysql";
/// Database `shop` on `demo-mysql`.
pub const MYSQL_DATABASE_ID: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-demo/providers/Microsoft.DBforMySQL/flexibleServers/demo-mysql/databases/shop";
/// Azure SQL server `demo-sql`.
pub const SQL_SERVER_ID: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-demo/providers/Microsoft.Sql/servers/demo-sql";
/// Database `reports` on `demo-sql`.
pub const SQL_DATABASE_ID: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-demo/providers/Microsoft.Sql/servers/demo-sql/databases/reports";
/// Storage account `demostorage` (with its default blob/queue/table/file services).
pub const STORAGE_ACCOUNT_ID: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-demo/providers/Microsoft.Storage/storageAccounts/demostorage";
/// Key vault `demo-kv`.
pub const KEY_VAULT_ID: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-demo/providers/Microsoft.KeyVault/vaults/demo-kv";
/// Service Bus namespace `demo-sb`.
pub const SERVICE_BUS_ID: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-demo/providers/Microsoft.ServiceBus/namespaces/demo-sb";
/// Redis cache `demo-redis`.
pub const REDIS_ID: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-demo/providers/Microsoft.Cache/redis/demo-redis";
/// Cosmos DB account `demo-cosmos`.
pub const COSMOS_ACCOUNT_ID: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-demo/providers/Microsoft.DocumentDB/databaseAccounts/demo-cosmos";
/// SQL database `catalog` of `demo-cosmos`.
pub const COSMOS_DATABASE_ID: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-demo/providers/Microsoft.DocumentDB/databaseAccounts/demo-cosmos/sqlDatabases/catalog";
/// App Configuration store `demo-appconfig`.
pub const APP_CONFIG_ID: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-demo/providers/Microsoft.AppConfiguration/configurationStores/demo-appconfig";

/// Parses one of the demo ids above into a provider path.
fn path(id: &str) -> ProviderPath {
    let segments: Vec<String> = id
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    ProviderPath::parse(&segments).expect("demo ids are provider paths")
}

fn object(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

fn site(outbound: &str, possible: &str) -> serde_json::Map<String, Value> {
    object(json!({
        "location": LOCATION,
        "kind": "app",
        "properties": {
            "outboundIpAddresses": outbound,
            "possibleOutboundIpAddresses": possible,
        },
    }))
}

/// Creates the demo resources through the same code paths ARM requests use.
pub(crate) fn seed(state: &mut State, tenant_id: &str) {
    let location = object(json!({ "location": LOCATION }));
    resources::put_resource_group(state, SUBSCRIPTION_ID, RESOURCE_GROUP, &location)
        .expect("the demo resource group is valid");
    let settings = object(json!({ "properties": { "WEBSITE_RUN_FROM_PACKAGE": "1" } }));
    for (id, outbound, possible) in [
        (
            WEB_APP_ID,
            "20.42.0.1,20.42.0.2",
            "20.42.0.1,20.42.0.2,20.42.0.3",
        ),
        (API_APP_ID, "20.42.1.1", "20.42.1.1,20.42.1.2,20.42.1.3"),
    ] {
        let site_path = path(id);
        resources::put(state, &site_path, &site(outbound, possible), tenant_id)
            .expect("the demo site is valid");
        crate::providers::put_app_settings(state, &site_path, &settings)
            .expect("the demo app settings are valid");
    }
    let server = object(json!({
        "location": LOCATION,
        "properties": { "administratorLogin": "pgadmin", "version": "16" },
    }));
    resources::put(state, &path(PG_SERVER_ID), &server, tenant_id)
        .expect("the demo server is valid");
    let database =
        object(json!({ "properties": { "charset": "UTF8", "collation": "en_US.utf8" } }));
    for id in [PG_DATABASE_ID, PG_DATABASE_2_ID] {
        resources::put(state, &path(id), &database, tenant_id).expect("the demo database is valid");
    }
    let located =
        |properties: Value| object(json!({"location": LOCATION, "properties": properties}));
    let resources: [(&str, serde_json::Map<String, Value>); 14] = [
        (
            FUNCTION_APP_ID,
            object(json!({"location": LOCATION, "kind": "functionapp", "properties": {}})),
        ),
        (
            CONTAINER_APP_ID,
            located(
                json!({"configuration": {"secrets": []}, "template": {"containers": [
                    {"name": "main", "image": "mcr.microsoft.com/k8se/quickstart:latest", "env": []},
                ]}}),
            ),
        ),
        (IDENTITY_ID, located(json!({}))),
        (
            MYSQL_SERVER_ID,
            located(json!({"administratorLogin": "mysqladmin", "version": "8.0.21"})),
        ),
        (MYSQL_DATABASE_ID, object(json!({"properties": {}}))),
        (
            SQL_SERVER_ID,
            located(json!({"administratorLogin": "sqladmin"})),
        ),
        (SQL_DATABASE_ID, located(json!({}))),
        (STORAGE_ACCOUNT_ID, located(json!({}))),
        (KEY_VAULT_ID, located(json!({}))),
        (SERVICE_BUS_ID, located(json!({}))),
        (REDIS_ID, located(json!({}))),
        (COSMOS_ACCOUNT_ID, located(json!({}))),
        (
            COSMOS_DATABASE_ID,
            object(json!({"properties": {"resource": {"id": "catalog"}}})),
        ),
        (APP_CONFIG_ID, located(json!({}))),
    ];
    for (id, body) in resources {
        resources::put(state, &path(id), &body, tenant_id).expect("the demo resource is valid");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_client_object_id_is_the_derived_one() {
        assert_eq!(
            crate::directory::derived_object_id(TENANT_ID, CLIENT_ID),
            CLIENT_OBJECT_ID
        );
    }

    #[test]
    fn ids_are_consistent() {
        assert_eq!(
            RESOURCE_GROUP_ID,
            format!("/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}")
        );
        for id in [
            WEB_APP_ID,
            API_APP_ID,
            PG_SERVER_ID,
            FUNCTION_APP_ID,
            CONTAINER_APP_ID,
            IDENTITY_ID,
            MYSQL_SERVER_ID,
            SQL_SERVER_ID,
            STORAGE_ACCOUNT_ID,
            KEY_VAULT_ID,
            SERVICE_BUS_ID,
            REDIS_ID,
            COSMOS_ACCOUNT_ID,
            APP_CONFIG_ID,
        ] {
            assert!(id.starts_with(&format!("{RESOURCE_GROUP_ID}/providers/")));
        }
        assert_eq!(PG_DATABASE_ID, format!("{PG_SERVER_ID}/databases/orders"));
        assert_eq!(
            PG_DATABASE_2_ID,
            format!("{PG_SERVER_ID}/databases/inventory")
        );
        assert_eq!(
            MYSQL_DATABASE_ID,
            format!("{MYSQL_SERVER_ID}/databases/shop")
        );
        assert_eq!(
            SQL_DATABASE_ID,
            format!("{SQL_SERVER_ID}/databases/reports")
        );
        assert_eq!(
            COSMOS_DATABASE_ID,
            format!("{COSMOS_ACCOUNT_ID}/sqlDatabases/catalog")
        );
    }

    #[test]
    fn seed_creates_the_documented_resources() {
        let mut state = State::default();
        seed(&mut state, TENANT_ID);
        let get = |id: &str| state.resources.get(&id.to_lowercase()).cloned().unwrap();
        let web = get(WEB_APP_ID);
        assert_eq!(web["kind"], "app");
        assert_eq!(
            web["properties"]["outboundIpAddresses"],
            "20.42.0.1,20.42.0.2"
        );
        assert_eq!(
            web["properties"]["defaultHostName"],
            "demo-web.azurewebsites.net"
        );
        assert_eq!(web["properties"]["state"], "Running");
        assert!(web.get("identity").is_none());
        let settings = get(&format!("{WEB_APP_ID}/config/appsettings"));
        assert_eq!(
            settings["properties"],
            json!({"WEBSITE_RUN_FROM_PACKAGE": "1"})
        );
        let pg = get(PG_SERVER_ID);
        assert_eq!(
            pg["properties"]["fullyQualifiedDomainName"],
            "demo-pg.postgres.database.azure.com"
        );
        assert_eq!(pg["properties"]["version"], "16");
        assert_eq!(get(PG_DATABASE_2_ID)["properties"]["charset"], "UTF8");
        assert_eq!(
            get(API_APP_ID)["properties"]["outboundIpAddresses"],
            "20.42.1.1"
        );
        let func = get(FUNCTION_APP_ID);
        assert_eq!(func["kind"], "functionapp");
        assert_eq!(func["type"], "Microsoft.Web/sites");
        let aca = get(CONTAINER_APP_ID);
        assert_eq!(aca["properties"]["latestRevisionName"], "demo-aca--0000001");
        assert_eq!(
            aca["properties"]["template"]["containers"][0]["name"],
            "main"
        );
        assert!(get(IDENTITY_ID)["properties"]["clientId"].is_string());
        assert_eq!(
            get(MYSQL_SERVER_ID)["properties"]["fullyQualifiedDomainName"],
            "demo-mysql.mysql.database.azure.com"
        );
        assert_eq!(
            get(SQL_SERVER_ID)["properties"]["fullyQualifiedDomainName"],
            "demo-sql.database.windows.net"
        );
        assert_eq!(get(SQL_DATABASE_ID)["properties"]["status"], "Online");
        assert!(get(&format!("{STORAGE_ACCOUNT_ID}/blobServices/default")).is_object());
        assert_eq!(
            get(KEY_VAULT_ID)["properties"]["vaultUri"],
            "https://demo-kv.vault.azure.net/"
        );
        assert!(
            get(&format!(
                "{SERVICE_BUS_ID}/authorizationRules/RootManageSharedAccessKey"
            ))
            .is_object()
        );
        assert_eq!(
            get(REDIS_ID)["properties"]["hostName"],
            "demo-redis.redis.cache.windows.net"
        );
        assert_eq!(
            get(COSMOS_DATABASE_ID)["properties"]["resource"]["id"],
            "catalog"
        );
        assert_eq!(
            get(APP_CONFIG_ID)["properties"]["endpoint"],
            "https://demo-appconfig.azconfig.io"
        );
        // The rg, 3 sites + their app settings, the container app + its revision, the
        // identity, 3 servers + 4 databases, the storage account + 4 services + keys, the vault,
        // the namespace + root rule + its keys + network rule set, the cache + keys, the
        // Cosmos account + keys + database, the store + keys.
        assert_eq!(state.resources.len(), 35);
    }
}
