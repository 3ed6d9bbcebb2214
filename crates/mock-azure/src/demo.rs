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

/// Parses one of the demo ids above into a provider path.
fn path(id: &str) -> ProviderPath {
    let segments: Vec<String> = id
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    ProviderPath {
        sub: segments[1].clone(),
        rg: segments[3].clone(),
        namespace: segments[5].clone(),
        rest: segments[6..].to_vec(),
    }
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
        for id in [WEB_APP_ID, API_APP_ID, PG_SERVER_ID] {
            assert!(id.starts_with(&format!("{RESOURCE_GROUP_ID}/providers/")));
        }
        assert_eq!(PG_DATABASE_ID, format!("{PG_SERVER_ID}/databases/orders"));
        assert_eq!(
            PG_DATABASE_2_ID,
            format!("{PG_SERVER_ID}/databases/inventory")
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
        assert_eq!(state.resources.len(), 8);
    }
}
