//! Microsoft.Web and Microsoft.DBforPostgreSQL specifics: computed fields, identity, app
//! settings, firewall rules and databases as long-running operations.

use reqwest::Method;
use serde_json::{Value, json};
use tether_mock_azure::demo;

use crate::support::{TestServer, accepted, expect_error, in_demo_rg, json};

#[tokio::test]
async fn sites_get_computed_fields_and_stable_identities() {
    let server = TestServer::demo().await;
    let path = in_demo_rg("Microsoft.Web/sites/My-Site");
    let site = json(
        server
            .put(&path, json!({"location": "westus", "kind": "app"}))
            .await,
    )
    .await;
    assert_eq!(site["type"], "Microsoft.Web/sites");
    assert_eq!(
        site["properties"]["defaultHostName"],
        "my-site.azurewebsites.net"
    );
    assert_eq!(site["properties"]["state"], "Running");
    let outbound = site["properties"]["outboundIpAddresses"]
        .as_str()
        .unwrap()
        .to_owned();
    let possible = site["properties"]["possibleOutboundIpAddresses"]
        .as_str()
        .unwrap();
    assert!(possible.starts_with(&outbound));
    assert!(outbound.split(',').all(|ip| ip.starts_with("20.")));

    // Deterministic from the id: a fresh mock computes the same addresses.
    let other = TestServer::demo().await;
    let again = json(other.put(&path, json!({"location": "westus"})).await).await;
    assert_eq!(
        again["properties"]["outboundIpAddresses"],
        outbound.as_str()
    );

    let enabled = json(
        server
            .patch(&path, json!({"identity": {"type": "SystemAssigned"}}))
            .await,
    )
    .await;
    let principal = enabled["identity"]["principalId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(enabled["identity"]["tenantId"], demo::TENANT_ID);
    let tagged = json(server.patch(&path, json!({"tags": {"t": "1"}})).await).await;
    assert_eq!(tagged["identity"]["principalId"], principal.as_str());
    // A user-assigned identity must exist; the entry reports the identity's own ids.
    let uai = in_demo_rg("Microsoft.ManagedIdentity/userAssignedIdentities/u");
    let with_uai = |uai: &str| {
        json!({"location": "westus", "identity": {"type": "SystemAssigned, UserAssigned",
            "userAssignedIdentities": {uai: {}}}})
    };
    let missing = server.put(&path, with_uai(&uai)).await;
    expect_error(missing, 400, "FailedIdentityOperation").await;
    let identity = json(server.put(&uai, json!({"location": "westus"})).await).await;
    let both = json(server.put(&path, with_uai(&uai)).await).await;
    assert_eq!(both["identity"]["principalId"], principal.as_str());
    assert_eq!(
        both["identity"]["userAssignedIdentities"][&uai],
        json!({"principalId": identity["properties"]["principalId"],
            "clientId": identity["properties"]["clientId"]})
    );
    assert_eq!(server.state().await[path.to_lowercase()], both);

    let disabled = json(
        server
            .patch(&path, json!({"identity": {"type": "None"}}))
            .await,
    )
    .await;
    assert!(disabled.get("identity").is_none());
    let reenabled = json(
        server
            .patch(&path, json!({"identity": {"type": "SystemAssigned"}}))
            .await,
    )
    .await;
    assert_ne!(reenabled["identity"]["principalId"], principal.as_str());
}

#[tokio::test]
async fn app_settings_are_replaced_as_a_whole() {
    let server = TestServer::demo().await;
    let settings = format!("{}/config/appsettings", demo::WEB_APP_ID);
    let initial = json(server.get(&settings).await).await;
    assert_eq!(
        initial,
        json!({"id": settings, "name": "appsettings", "type": "Microsoft.Web/sites/config",
            "location": "westus", "properties": {"WEBSITE_RUN_FROM_PACKAGE": "1"}})
    );

    let put = server
        .put(&settings, json!({"properties": {"A": "1", "B": "2"}}))
        .await;
    assert_eq!(put.status(), 200);
    assert_eq!(json(put).await["properties"], json!({"A": "1", "B": "2"}));
    let put = json(
        server
            .put(&settings, json!({"properties": {"C": "3"}}))
            .await,
    )
    .await;
    assert_eq!(put["properties"], json!({"C": "3"}));
    let listed = server
        .arm(
            Method::POST,
            &format!("{}/CONFIG/AppSettings/list", demo::WEB_APP_ID),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    assert_eq!(json(listed).await, put);
    assert_eq!(json(server.get(&settings).await).await, put);

    let bad = server.put(&settings, json!({"properties": {"N": 1}})).await;
    expect_error(bad, 400, "BadRequest").await;
    assert_eq!(
        json(server.get(&settings).await).await,
        put,
        "a rejected PUT changes nothing"
    );

    let missing = in_demo_rg("Microsoft.Web/sites/nope/config/appsettings");
    expect_error(server.get(&missing).await, 404, "ResourceNotFound").await;
    expect_error(
        server.put(&missing, json!({"properties": {}})).await,
        404,
        "ResourceNotFound",
    )
    .await;

    assert_eq!(server.delete(demo::WEB_APP_ID).await.status(), 200);
    let state = server.state().await;
    assert!(state.get(settings.to_lowercase()).is_none());
    assert!(state.get(demo::WEB_APP_ID.to_lowercase()).is_none());
}

#[tokio::test]
async fn postgres_servers_hide_the_password_and_compute_fields() {
    let server = TestServer::demo().await;
    let path = in_demo_rg("Microsoft.DBforPostgreSQL/flexibleServers/Other-PG");
    let body = json!({"location": "eastus", "properties": {"administratorLogin": "a",
        "administratorLoginPassword": "hunter2", "version": "15"}});
    let created = server.put(&path, body).await;
    assert_eq!(created.status(), 201);
    let text = created.text().await.unwrap();
    assert!(!text.contains("hunter2"));
    let created: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        created["properties"]["fullyQualifiedDomainName"],
        "other-pg.postgres.database.azure.com"
    );
    assert_eq!(created["properties"]["state"], "Ready");
    assert!(!server.state().await.to_string().contains("hunter2"));
}

#[tokio::test]
async fn firewall_rules_are_long_running_operations() {
    let server = TestServer::demo().await;
    let rule = format!("{}/firewallRules/allow-web", demo::PG_SERVER_ID);
    let body = json!({"properties": {"startIpAddress": "20.42.0.1", "endIpAddress": "20.42.0.2"}});
    let response = server.put(&rule, body).await;
    let (status_url, location_url) = accepted(&response);
    assert!(response.bytes().await.unwrap().is_empty());
    let prefix = format!(
        "{}/subscriptions/{}/providers/Microsoft.DBforPostgreSQL/locations/westus/",
        server.base,
        demo::SUBSCRIPTION_ID
    );
    assert!(
        status_url.starts_with(&format!("{prefix}azureAsyncOperation/")),
        "{status_url}"
    );
    assert!(status_url.ends_with("?api-version=2024-08-01"));
    assert!(location_url.starts_with(&format!("{prefix}operationResults/")));

    let poll = |url: String| {
        server
            .client
            .get(url)
            .bearer_auth(crate::support::TEST_TOKEN)
            .send()
    };
    let status = json(poll(status_url.clone()).await.unwrap()).await;
    assert_eq!(status["status"], "Succeeded");
    assert!(status["startTime"].is_string() && status["endTime"].is_string());
    assert_eq!(
        status["name"].as_str().unwrap(),
        status_url
            .rsplit('/')
            .next()
            .unwrap()
            .split('?')
            .next()
            .unwrap()
    );
    let result = poll(location_url).await.unwrap();
    assert_eq!(result.status(), 200);
    let result = json(result).await;
    assert_eq!(result["id"], rule);
    assert_eq!(
        result["type"],
        "Microsoft.DBforPostgreSQL/flexibleServers/firewallRules"
    );
    assert_eq!(json(server.get(&rule).await).await, result);

    let deleted = server.delete(&rule).await;
    let (status_url, location_url) = accepted(&deleted);
    assert_eq!(
        json(poll(status_url).await.unwrap()).await["status"],
        "Succeeded"
    );
    assert_eq!(poll(location_url).await.unwrap().status(), 204);
    expect_error(server.get(&rule).await, 404, "ResourceNotFound").await;
    assert_eq!(server.delete(&rule).await.status(), 204);
}

#[tokio::test]
async fn databases_are_long_running_with_defaults() {
    let server = TestServer::demo().await;
    let db = format!("{}/databases/billing", demo::PG_SERVER_ID);
    let response = server.put(&db, json!({"properties": {}})).await;
    accepted(&response);
    let got = json(server.get(&db).await).await;
    assert_eq!(
        got["properties"],
        json!({"charset": "UTF8", "collation": "en_US.utf8"})
    );
    assert_eq!(
        got["type"],
        "Microsoft.DBforPostgreSQL/flexibleServers/databases"
    );
    accepted(&server.delete(&db).await);
    // Deleting the server takes its databases with it.
    assert_eq!(server.delete(demo::PG_SERVER_ID).await.status(), 200);
    assert!(
        server
            .state()
            .await
            .get(demo::PG_DATABASE_ID.to_lowercase())
            .is_none()
    );
}

#[tokio::test]
async fn invalid_firewall_rules_are_rejected() {
    let server = TestServer::demo().await;
    let rule = |name: &str| format!("{}/firewallRules/{name}", demo::PG_SERVER_ID);
    let ips = |start: &str, end: &str| json!({"properties": {"startIpAddress": start, "endIpAddress": end}});
    let cases = [
        (rule("r"), ips("10.0.0.2", "10.0.0.1")),
        (rule("r"), ips("10.0.0.256", "10.0.0.1")),
        (rule("r"), ips("::1", "::1")),
        (
            rule("r"),
            json!({"properties": {"startIpAddress": "10.0.0.1"}}),
        ),
        (rule("r"), json!({})),
        (rule("bad%20name"), ips("10.0.0.1", "10.0.0.1")),
        (rule(&"a".repeat(129)), ips("10.0.0.1", "10.0.0.1")),
    ];
    for (path, body) in cases {
        let response = server.put(&path, body.clone()).await;
        expect_error(response, 400, "InvalidParameterValue").await;
    }
    let rules = json(
        server
            .get(&format!("{}/firewallRules", demo::PG_SERVER_ID))
            .await,
    )
    .await;
    assert_eq!(rules, json!({"value": []}));
    accepted(
        &server
            .put(&rule("ok.rule_1-x"), ips("0.0.0.0", "255.255.255.255"))
            .await,
    );
}
