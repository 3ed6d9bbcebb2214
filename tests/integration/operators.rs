//! What operators rely on: a rollback that keeps failing is never dropped — the saga is
//! `stuck`, visible in the operation status, the admin listing and the metrics, and retried
//! (automatically, or at once on request) until it ends — and finished operations are removed
//! after the retention period.

use std::time::Duration;

use serde_json::json;
use tether_test_utils::{Backend, ReplicaOptions, eventually};

use crate::support::{PG_DATABASE_ID, WEB_APP_ID, env, secret_linker};

#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_that_keeps_failing_is_visible_and_retried() {
    let env = env(Backend::Postgres).await;
    // The saga gauges are refreshed in the background (scrapes never query the database).
    let replica = env
        .spawn_with(
            ReplicaOptions::default().env("TETHER__HOUSEKEEPING__GAUGES_INTERVAL_SECS", "0.2"),
        )
        .await;
    let api = &replica.api;
    let clean = env.mock.state().await;
    // The create fails at its last step, and removing the rules it made keeps failing.
    env.mock
        .fault(json!({"method": "PUT", "path": "**/config/appsettings", "count": 1,
                      "action": {"fail": {"status": 409, "code": "InjectedFault", "message": "settings locked"}}}))
        .await;
    env.mock
        .fault(json!({"method": "DELETE", "path": "**/firewallRules/*",
                      "action": {"fail": {"status": 403, "code": "AuthorizationFailed", "message": "no permission"}}}))
        .await;
    let accepted = api
        .put_linker(
            WEB_APP_ID,
            "db",
            secret_linker(PG_DATABASE_ID, "pw", "python", true),
        )
        .await;
    let url = accepted.header("azure-asyncoperation").unwrap().to_string();

    // The operation stays InProgress, and its status says why.
    let status = eventually(
        Duration::from_secs(30),
        Duration::from_millis(100),
        async || {
            let status = api.call_url("GET", &url, None).await;
            if status.body["error"]["code"] == "RollbackStuck" {
                Ok(status)
            } else {
                Err(format!("never reported stuck: {}", status.text))
            }
        },
    )
    .await;
    assert_eq!(status.body["status"], "InProgress");
    let details = &status.body["error"]["details"];
    assert_eq!(
        details[0]["code"], "InjectedFault",
        "the failure that started the rollback"
    );
    assert_eq!(
        details[1]["code"], "AuthorizationFailed",
        "the undo that keeps failing"
    );

    let stuck = api.send(api.raw("GET", "/admin/sagas?state=stuck")).await;
    let sagas = stuck.body["value"].as_array().unwrap();
    assert_eq!(sagas.len(), 1, "{}", stuck.text);
    assert_eq!(sagas[0]["name"], "linker-create-v3");
    assert_eq!(sagas[0]["undoError"]["code"], "AuthorizationFailed");
    let id = sagas[0]["id"].as_str().unwrap().to_string();
    let metrics = eventually(
        Duration::from_secs(10),
        Duration::from_millis(100),
        async || {
            let metrics = reqwest::get(format!("{}/metrics", replica.url))
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            if metrics.contains(r#"tether_sagas{state="stuck"} 1"#) {
                Ok(metrics)
            } else {
                Err(format!("the stuck gauge never showed: {metrics}"))
            }
        },
    )
    .await;
    assert!(metrics.contains("tether_saga_stuck_total"), "{metrics}");

    // The operator fixes the permission and asks for the retry now.
    env.mock.clear_faults().await;
    let retried = api
        .send(api.raw("POST", &format!("/admin/sagas/{id}/retry")))
        .await;
    assert_eq!(retried.status, 202, "{}", retried.text);
    let done = api.wait_url(&url, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "Failed");
    assert_eq!(done["error"]["code"], "InjectedFault");
    assert_eq!(env.mock.state().await, clean, "the rollback finished");
    let again = api
        .send(api.raw("POST", &format!("/admin/sagas/{id}/retry")))
        .await;
    assert_eq!((again.status, again.code()), (409, "SagaNotStuck"));
    let anonymous = api.send(api.anonymous("GET", "/admin/sagas")).await;
    assert_eq!(anonymous.status, 401);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn finished_operations_are_removed_after_the_retention_period() {
    let env = env(Backend::Sqlite).await;
    let options = ReplicaOptions::default()
        .env("TETHER__HOUSEKEEPING__RETENTION_HOURS", "0.0003")
        .env("TETHER__HOUSEKEEPING__INTERVAL_SECS", "0.2");
    let replica = env.spawn_with(options).await;
    let api = &replica.api;
    let accepted = api
        .put_linker(
            WEB_APP_ID,
            "db",
            secret_linker(PG_DATABASE_ID, "pw", "python", false),
        )
        .await;
    let url = accepted.header("azure-asyncoperation").unwrap().to_string();
    assert_eq!(api.wait(&accepted).await["status"], "Succeeded");
    eventually(
        Duration::from_secs(30),
        Duration::from_millis(100),
        async || match api.call_url("GET", &url, None).await.status {
            404 => Ok(()),
            _ => Err("the operation was never removed".into()),
        },
    )
    .await;
    let finished = api
        .send(api.raw("GET", "/admin/sagas?state=succeeded"))
        .await;
    assert_eq!(
        finished.body["value"],
        json!([]),
        "the saga log went with it"
    );
    assert_eq!(
        api.get_linker(WEB_APP_ID, "db").await.status,
        200,
        "the linker stays"
    );
    env.teardown().await;
}
