//! Fault injection over HTTP: fail before/after, throttle, delay, counts, globs, scope.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use tether_mock_azure::demo;

use crate::support::{TestServer, expect_error, in_demo_rg, json};

#[tokio::test]
async fn fail_before_changes_nothing() {
    let server = TestServer::demo().await;
    let before = server.state().await;
    server
        .add_fault(json!({"method": "PUT", "path": "**/sites/*", "count": 1,
            "action": {"fail": {"status": 503}}}))
        .await;
    let site = in_demo_rg("Microsoft.Web/sites/new-site");
    let response = server.put(&site, json!({"location": "westus"})).await;
    expect_error(response, 503, "ServiceUnavailable").await;
    assert_eq!(server.state().await, before);
    // The rule is exhausted: the retry goes through.
    assert_eq!(
        server
            .put(&site, json!({"location": "westus"}))
            .await
            .status(),
        201
    );
}

#[tokio::test]
async fn fail_after_applies_the_change_and_loses_the_response() {
    let server = TestServer::demo().await;
    server
        .add_fault(
            json!({"method": "put", "path": "**/firewallRules/*", "count": 1, "when": "after",
            "action": {"fail": {"status": 500, "code": "InternalServerError", "message": "boom"}}}),
        )
        .await;
    let rule = format!("{}/firewallRules/lost", demo::PG_SERVER_ID);
    let body = json!({"properties": {"startIpAddress": "1.1.1.1", "endIpAddress": "1.1.1.1"}});
    let response = server.put(&rule, body).await;
    let error = expect_error(response, 500, "InternalServerError").await;
    assert_eq!(error["error"]["message"], "boom");
    assert_eq!(server.get(&rule).await.status(), 200);
}

#[tokio::test]
async fn throttle_answers_429_with_retry_after() {
    let server = TestServer::demo().await;
    server
        .add_fault(
            json!({"method": "*", "path": "/subscriptions/*/resourceGroups/*", "count": 2,
            "action": {"throttle": {"retryAfter": 2}}}),
        )
        .await;
    for _ in 0..2 {
        let response = server.get(demo::RESOURCE_GROUP_ID).await;
        assert_eq!(response.headers()["retry-after"], "2");
        expect_error(response, 429, "TooManyRequests").await;
    }
    assert_eq!(server.get(demo::RESOURCE_GROUP_ID).await.status(), 200);
    let faults = server.admin_get("/admin/faults").await;
    assert_eq!(faults["faults"][0]["remaining"], 0);
    assert_eq!(faults["faults"][0]["hits"], 2);
}

#[tokio::test]
async fn delay_waits_without_blocking_other_calls() {
    let server = TestServer::demo().await;
    server
        .add_fault(
            json!({"method": "GET", "path": "**/sites/demo-web", "count": 1,
            "action": {"delay": {"ms": 800}}}),
        )
        .await;
    let started = Instant::now();
    let slow = tokio::spawn(server.arm(Method::GET, demo::WEB_APP_ID).send());
    // Wait until the delayed call is in flight (recorded, unfinished) before racing it.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let calls = server.calls().await;
        if calls
            .iter()
            .any(|c| c["faultId"].is_u64() && c["status"].is_null())
        {
            break;
        }
        assert!(Instant::now() < deadline, "the delayed call never arrived");
        tokio::task::yield_now().await;
    }
    assert_eq!(server.get(demo::API_APP_ID).await.status(), 200);
    assert!(
        !slow.is_finished(),
        "a concurrent call was blocked by the delay"
    );
    let response = slow.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(800));
    let calls = server.calls().await;
    let delayed = calls.iter().find(|c| c["faultId"].is_u64()).unwrap();
    assert_eq!(delayed["faulted"], false);
    assert_eq!(delayed["status"], 200);
}

#[tokio::test]
async fn rules_match_by_method_and_glob_in_order() {
    let server = TestServer::demo().await;
    server
        .add_fault(
            json!({"method": "DELETE", "path": "**/FIREWALLRULES/*", "count": null,
            "action": {"fail": {"status": 409}}}),
        )
        .await;
    server
        .add_fault(json!({"path": "**/databases/orders", "count": 1,
            "action": {"fail": {"status": 502}}}))
        .await;
    server
        .add_fault(json!({"path": "**/databases/*", "count": 1,
            "action": {"fail": {"status": 504}}}))
        .await;
    // Method and glob must both match.
    assert_eq!(server.get(demo::PG_SERVER_ID).await.status(), 200);
    let rule = format!("{}/firewallRules/r1", demo::PG_SERVER_ID);
    expect_error(server.delete(&rule).await, 409, "Conflict").await;
    expect_error(server.delete(&rule).await, 409, "Conflict").await;
    // The first live rule wins; once exhausted the next one applies, then none.
    expect_error(server.get(demo::PG_DATABASE_ID).await, 502, "BadGateway").await;
    expect_error(
        server.get(demo::PG_DATABASE_ID).await,
        504,
        "GatewayTimeout",
    )
    .await;
    assert_eq!(server.get(demo::PG_DATABASE_ID).await.status(), 200);

    let cleared = server
        .client
        .delete(server.url("/admin/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 204);
    assert_eq!(server.admin_get("/admin/faults").await["faults"], json!([]));
    assert_eq!(server.delete(&rule).await.status(), 204);
}

#[tokio::test]
async fn faults_apply_to_tokens_and_operation_polls_but_not_admin() {
    let server = TestServer::demo().await;
    let id = server
        .add_fault(json!({"path": "**", "count": 1, "action": {"fail": {"status": 503}}}))
        .await;
    // /admin is never faulted and does not consume the rule.
    assert_eq!(
        server.admin_get("/admin/faults").await["faults"][0]["remaining"],
        1
    );
    let response = server
        .token_response(demo::TENANT_ID, demo::CLIENT_ID, demo::CLIENT_SECRET)
        .await;
    assert_eq!(response.status(), 503);
    assert_eq!(json(response).await["error"], "temporarily_unavailable");
    let token = server.token().await;
    assert!(!token.is_empty());

    let rule = format!("{}/firewallRules/polled", demo::PG_SERVER_ID);
    let body = json!({"properties": {"startIpAddress": "1.1.1.1", "endIpAddress": "1.1.1.1"}});
    let response = server.put(&rule, body).await;
    let status_url = response.headers()["azure-asyncoperation"]
        .to_str()
        .unwrap()
        .to_owned();
    server
        .add_fault(
            json!({"method": "GET", "path": "**/azureAsyncOperation/*", "count": 1,
            "action": {"fail": {"status": 500}}}),
        )
        .await;
    let poll = || server.client.get(&status_url).bearer_auth(&token).send();
    expect_error(poll().await.unwrap(), 500, "InternalServerError").await;
    assert_eq!(json(poll().await.unwrap()).await["status"], "Succeeded");

    let removed = server
        .client
        .delete(server.url(&format!("/admin/faults/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
}

#[tokio::test]
async fn invalid_rules_are_rejected() {
    let server = TestServer::demo().await;
    for rule in [
        json!({"path": "**", "action": {"throttle": {"retryAfter": 1}}, "when": "after"}),
        json!({"path": "**", "action": {"fail": {"status": 302}}}),
        json!({"path": "**", "action": {"explode": {}}}),
        json!({"action": {"fail": {"status": 500}}}),
    ] {
        let response = server
            .client
            .post(server.url("/admin/faults"))
            .json(&rule)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{rule}");
    }
    assert_eq!(server.admin_get("/admin/faults").await["faults"], json!([]));
}
