//! Sources: function apps, user-assigned identities, and container apps (secrets, env
//! references, revisions, asynchronous writes).

use reqwest::Method;
use serde_json::{Value, json};
use tether_mock_azure::demo;

use crate::support::{TestServer, accepted, expect_error, in_demo_rg, json};

#[tokio::test]
async fn function_apps_are_sites_with_their_kind() {
    let server = TestServer::demo().await;
    let func = json(server.get(demo::FUNCTION_APP_ID).await).await;
    assert_eq!(func["type"], "Microsoft.Web/sites");
    assert_eq!(func["kind"], "functionapp");
    assert_eq!(
        func["properties"]["defaultHostName"],
        "demo-func.azurewebsites.net"
    );
    let settings = format!("{}/config/appsettings", demo::FUNCTION_APP_ID);
    assert_eq!(
        json(server.get(&settings).await).await["properties"],
        json!({})
    );
    let patched = json(
        server
            .patch(demo::FUNCTION_APP_ID, json!({"tags": {"a": "b"}}))
            .await,
    )
    .await;
    assert_eq!(patched["kind"], "functionapp", "a PATCH keeps the kind");
}

#[tokio::test]
async fn user_assigned_identities_get_stable_computed_ids() {
    let server = TestServer::demo().await;
    let path = in_demo_rg("Microsoft.ManagedIdentity/userAssignedIdentities/id-1");
    expect_error(server.put(&path, json!({})).await, 400, "LocationRequired").await;
    let created = server.put(&path, json!({"location": "westus"})).await;
    assert_eq!(created.status(), 201);
    let created = json(created).await;
    assert_eq!(
        created["type"],
        "Microsoft.ManagedIdentity/userAssignedIdentities"
    );
    assert_eq!(created["properties"]["tenantId"], demo::TENANT_ID);
    for field in ["principalId", "clientId"] {
        let id = created["properties"][field].as_str().unwrap();
        assert!(uuid::Uuid::try_parse(id).is_ok(), "{field}: {id}");
    }
    let replaced = json(
        server
            .put(&path, json!({"location": "westus", "tags": {"x": "y"}}))
            .await,
    )
    .await;
    assert_eq!(replaced["properties"], created["properties"]);
}

fn app_body(secrets: Value, env: Value) -> Value {
    json!({
        "location": "westus",
        "properties": {
            "configuration": {"secrets": secrets},
            "template": {"containers": [{"name": "main", "image": "nginx", "env": env}]},
        },
    })
}

#[tokio::test]
async fn container_app_writes_are_asynchronous_and_keep_secret_values_hidden() {
    let server = TestServer::demo().await;
    let path = in_demo_rg("Microsoft.App/containerApps/shop");
    let body = app_body(
        json!([{"name": "db-password", "value": "hunter2"}]),
        json!([{"name": "DB_PASSWORD", "secretRef": "db-password"}, {"name": "MODE", "value": "x"}]),
    );
    let created = server.put(&path, body).await;
    assert_eq!(created.status(), 201);
    let status_url = created.headers()["azure-asyncoperation"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(status_url.contains("/providers/Microsoft.App/locations/westus/"));
    let text = created.text().await.unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    let app: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(app["type"], "Microsoft.App/containerApps");
    assert_eq!(
        app["properties"]["configuration"]["secrets"],
        json!([{"name": "db-password"}])
    );
    assert_eq!(app["properties"]["latestRevisionName"], "shop--0000001");
    assert_eq!(app["properties"]["provisioningState"], "Succeeded");
    assert_eq!(
        app["properties"]["outboundIpAddresses"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let status = server
        .client
        .get(&status_url)
        .bearer_auth(crate::support::TEST_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(json(status).await["status"], "Succeeded");

    let got = server.get(&path).await.text().await.unwrap();
    assert!(!got.contains("hunter2"));
    let secrets = json(server.post(&format!("{path}/listSecrets"), None).await).await;
    assert_eq!(
        secrets,
        json!({"value": [{"name": "db-password", "value": "hunter2"}]})
    );

    // A PATCH (202) that only changes the env keeps the secret value and makes a revision.
    let patch = json!({"properties": {"template": {"containers": [{"name": "main", "image": "nginx",
        "env": [{"name": "DB_PASSWORD", "secretRef": "db-password"}]}]}}});
    let response = server.patch(&path, patch).await;
    accepted(&response);
    let app = json(server.get(&path).await).await;
    assert_eq!(app["properties"]["latestRevisionName"], "shop--0000002");
    let secrets = json(server.post(&format!("{path}/listSecrets"), None).await).await;
    assert_eq!(secrets["value"][0]["value"], "hunter2");
    let revisions = json(server.get(&format!("{path}/revisions")).await).await;
    let revisions = revisions["value"].as_array().unwrap();
    assert_eq!(revisions.len(), 2);
    let active: Vec<&Value> = revisions
        .iter()
        .filter(|r| r["properties"]["active"] == true)
        .collect();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0]["name"], "shop--0000002");

    // Tags alone make no revision; a new secret value does.
    server.patch(&path, json!({"tags": {"t": "1"}})).await;
    assert_eq!(
        json(server.get(&path).await).await["properties"]["latestRevisionName"],
        "shop--0000002"
    );
    let rotated = app_body(
        json!([{"name": "db-password", "value": "hunter3"}]),
        json!([{"name": "DB_PASSWORD", "secretRef": "db-password"}]),
    );
    assert_eq!(server.put(&path, rotated).await.status(), 200);
    let app = json(server.get(&path).await).await;
    assert_eq!(app["properties"]["latestRevisionName"], "shop--0000003");

    // Revisions are read-only; the whole app goes away with a 202.
    let revision = format!("{path}/revisions/shop--0000001");
    let response = server.put(&revision, json!({})).await;
    expect_error(response, 405, "MethodNotAllowed").await;
    assert_eq!(server.get(&revision).await.status(), 200);
    accepted(&server.delete(&path).await);
    let state = server.state().await;
    assert!(
        !state
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with(&path.to_lowercase())),
        "the app, its revisions and its secrets are gone"
    );
}

#[tokio::test]
async fn container_apps_validate_secrets_and_references() {
    let server = TestServer::demo().await;
    let path = in_demo_rg("Microsoft.App/containerApps/bad");
    let cases = [
        (
            app_body(json!([]), json!([{"name": "X", "secretRef": "missing"}])),
            "ContainerAppSecretRefNotFound",
        ),
        (
            app_body(json!([{"name": "Upper", "value": "v"}]), json!([])),
            "ContainerAppSecretInvalid",
        ),
        (
            app_body(json!([{"name": "s"}]), json!([])),
            "ContainerAppSecretInvalid",
        ),
        (
            app_body(
                json!([{"name": "s", "value": "a"}, {"name": "s", "value": "b"}]),
                json!([]),
            ),
            "ContainerAppSecretInvalid",
        ),
    ];
    for (body, code) in cases {
        expect_error(server.put(&path, body).await, 400, code).await;
    }
    assert_eq!(server.get(&path).await.status(), 404);
    // Key Vault references are kept as references and need no value.
    let body = app_body(
        json!([{"name": "kv", "keyVaultUrl": "https://demo-kv.vault.azure.net/secrets/x",
            "identity": "system"}]),
        json!([{"name": "X", "secretRef": "kv"}]),
    );
    let app = json(server.put(&path, body).await).await;
    assert_eq!(
        app["properties"]["configuration"]["secrets"][0]["keyVaultUrl"],
        "https://demo-kv.vault.azure.net/secrets/x"
    );
    let secrets = json(server.post(&format!("{path}/listSecrets"), None).await).await;
    assert_eq!(secrets["value"][0]["identity"], "system");
    // The demo app has one container `main` and no secrets.
    let demo_app = json(server.get(demo::CONTAINER_APP_ID).await).await;
    assert_eq!(
        demo_app["properties"]["configuration"]["secrets"],
        json!([])
    );
    let response = server
        .arm(
            Method::POST,
            &format!("{}/listSecrets", demo::CONTAINER_APP_ID),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(json(response).await, json!({"value": []}));
}
