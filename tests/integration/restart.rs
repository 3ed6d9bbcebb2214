//! A server stopped in the middle of a saga finishes it after it starts again: killed at once
//! (its lease expires, then the new process adopts the saga) or stopped gracefully (it
//! releases its leases, so the new process adopts at once).

use std::time::Duration;

use serde_json::json;
use tether_test_utils::{Backend, Replica, TestEnv, eventually};

use crate::support::{
    PG_DATABASE_ID, PG_SERVER_ID, WEB_APP_ID, env, on_both_backends, secret_linker,
};

on_both_backends!(
    a_killed_server_finishes_its_saga_after_restart,
    a_stopped_server_hands_its_saga_over_at_restart
);

async fn a_killed_server_finishes_its_saga_after_restart(backend: Backend) {
    interrupted(backend, |r| Box::pin(r.kill())).await;
}

async fn a_stopped_server_hands_its_saga_over_at_restart(backend: Backend) {
    interrupted(backend, |r| Box::pin(r.stop())).await;
}

type Stop = for<'a> fn(
    &'a mut Replica,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;

async fn interrupted(backend: Backend, stop: Stop) {
    let env = env(backend).await;
    let mut replica = env.spawn().await;
    // Every firewall rule takes 1.5 s to create, so the saga is mid-step when we stop it.
    env.mock
        .fault(json!({"method": "PUT", "path": "**/firewallRules/*", "count": null, "action": {"delay": {"ms": 1500}}}))
        .await;
    let accepted = replica
        .api
        .put_linker(
            WEB_APP_ID,
            "orders",
            secret_linker(PG_DATABASE_ID, "pw", "python", true),
        )
        .await;
    assert_eq!(accepted.status, 201);
    let status_path = accepted
        .header("azure-asyncoperation")
        .unwrap()
        .trim_start_matches(&replica.url)
        .to_string();

    // The mock records a call when it arrives: once the first (slow) rule PUT is recorded,
    // the saga is inside the network step, waiting on it.
    let rule_put = |p: &str| p.contains("/firewallRules/");
    wait_for_calls(&env, "PUT", rule_put, 1).await;
    stop(&mut replica).await;
    let puts_before = count_calls(&env, "PUT", |p| p.contains("/firewallRules/")).await;
    assert!(
        puts_before < 2,
        "the saga was not interrupted mid-step ({puts_before} rules already made)"
    );

    replica.restart(None).await;
    let done = replica
        .api
        .wait_url(
            &format!("{}{status_path}", replica.url),
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    let linker = replica.api.get_linker(WEB_APP_ID, "orders").await;
    assert_eq!(linker.body["properties"]["provisioningState"], "Succeeded");
    assert!(
        env.mock
            .app_settings(WEB_APP_ID)
            .await
            .contains_key("AZURE_POSTGRESQL_CONNECTIONSTRING")
    );
    assert_eq!(env.mock.firewall_rules(PG_SERVER_ID).await.len(), 2);
    env.teardown().await;
}

async fn count_calls(env: &TestEnv, method: &str, path: impl Fn(&str) -> bool) -> usize {
    env.mock
        .calls()
        .await
        .iter()
        .filter(|c| c["method"] == method && c["path"].as_str().is_some_and(&path))
        .count()
}

async fn wait_for_calls(
    env: &TestEnv,
    method: &str,
    path: impl Fn(&str) -> bool + Copy,
    at_least: usize,
) {
    eventually(
        Duration::from_secs(30),
        Duration::from_millis(20),
        async || {
            if count_calls(env, method, path).await < at_least {
                Err(format!(
                    "the saga never reached the expected {method} calls"
                ))
            } else {
                Ok(())
            }
        },
    )
    .await;
}
