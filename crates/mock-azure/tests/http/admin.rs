//! Recorded calls, state snapshots and reset.

use reqwest::Method;
use serde_json::json;
use tether_mock_azure::demo;

use crate::support::{TestServer, in_demo_rg};

#[tokio::test]
async fn calls_are_recorded_in_arrival_order() {
    let server = TestServer::demo().await;
    server.token().await;
    server
        .arm(Method::GET, &format!("{}?x=1", demo::WEB_APP_ID))
        .header("x-ms-client-request-id", "client-1")
        .header("x-ms-correlation-request-id", "corr-1")
        .header("user-agent", "tether-test/1")
        .send()
        .await
        .unwrap();
    server
        .add_fault(json!({"path": "**", "count": 1, "action": {"fail": {"status": 500}}}))
        .await;
    server.delete(demo::PG_DATABASE_ID).await;

    let calls = server.calls().await;
    assert_eq!(calls.len(), 3, "{calls:#?}");
    let token = &calls[0];
    assert_eq!(token["method"], "POST");
    assert_eq!(
        token["path"],
        format!("/{}/oauth2/v2.0/token", demo::TENANT_ID)
    );
    assert_eq!(token["status"], 200);
    let get = &calls[1];
    assert_eq!(
        get["seq"].as_u64().unwrap(),
        token["seq"].as_u64().unwrap() + 1
    );
    assert_eq!(get["path"], demo::WEB_APP_ID);
    assert_eq!(get["query"], "x=1&api-version=2024-08-01");
    assert_eq!(get["status"], 200);
    assert_eq!(get["faulted"], false);
    assert_eq!(get["clientRequestId"], "client-1");
    assert_eq!(get["correlationId"], "corr-1");
    assert_eq!(get["userAgent"], "tether-test/1");
    let started = get["startedAt"].as_str().unwrap();
    assert!(started.ends_with('Z') && started.contains('.'), "{started}");
    assert!(get["finishedAt"].as_str().unwrap() >= started);
    let faulted = &calls[2];
    assert_eq!(faulted["method"], "DELETE");
    assert_eq!(faulted["status"], 500);
    assert_eq!(faulted["faulted"], true);

    let cleared = server
        .client
        .delete(server.url("/admin/calls"))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 204);
    assert_eq!(server.calls().await, Vec::<serde_json::Value>::new());
}

#[tokio::test]
async fn state_snapshots_are_stable_and_reset_restores_the_seed() {
    let server = TestServer::demo().await;
    let seeded = server.state().await;
    let keys: Vec<&String> = seeded.as_object().unwrap().keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "keys are ordered");
    assert_eq!(keys.len(), 35);
    assert!(
        seeded
            .get(format!(
                "{}/config/appsettings",
                demo::API_APP_ID.to_lowercase()
            ))
            .is_some()
    );
    assert_eq!(
        seeded[demo::RESOURCE_GROUP_ID.to_lowercase()]["location"],
        "westus"
    );

    let token = server.token().await;
    let site = in_demo_rg("Microsoft.Web/sites/extra");
    server
        .put(
            &site,
            json!({"location": "westus", "identity": {"type": "SystemAssigned"}}),
        )
        .await;
    let changed = server.state().await;
    assert_ne!(changed, seeded);
    assert_eq!(
        server.state().await,
        changed,
        "identity ids are stable across reads"
    );
    server
        .add_fault(json!({"path": "/nothing", "action": {"fail": {"status": 500}}}))
        .await;

    let reset = server
        .client
        .post(server.url("/admin/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 204);
    assert_eq!(server.state().await, seeded);
    assert_eq!(server.admin_get("/admin/faults").await["faults"], json!([]));
    assert_eq!(server.calls().await.len(), 0);
    assert_eq!(json!(server.mock.snapshot()), seeded);
    // Issued tokens survive a reset.
    let url = server.url(&format!("{}?api-version=1", demo::WEB_APP_ID));
    let response = server
        .client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
