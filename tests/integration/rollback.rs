//! A fault at any step of create, update and delete leaves the backend exactly as it was and
//! the linker `Failed` with a useful error. Faults are injected through the mock's admin API,
//! both before a call takes effect and after (the change is made but the response is lost).

use serde_json::{Value, json};
use tether_test_utils::{Api, Backend, ReplicaOptions, TestEnv};

use crate::support::{PG_DATABASE_ID, WEB_APP_ID, env, on_both_backends, secret_linker};

on_both_backends!(
    a_failed_create_leaves_no_trace,
    a_failed_update_restores_the_previous_connection,
    a_failed_delete_keeps_the_connection,
    every_step_run_twice_gives_the_same_end_state,
);

const NAME: &str = "orders";

fn fail(method: &str, path: &str, when: &str) -> Value {
    json!({"method": method, "path": path, "count": 1, "when": when, "action": {"fail": {"status": 409, "code": "InjectedFault", "message": "injected by the test"}}})
}

/// The faults that hit each step of a create (and of an update, whose steps are the same).
fn create_faults() -> Vec<(&'static str, Value)> {
    vec![
        (
            "resolve: the target server cannot be read",
            fail("GET", "**/flexibleServers/demo-pg", "before"),
        ),
        (
            "resolve: the settings cannot be read",
            fail("POST", "**/config/appsettings/list", "before"),
        ),
        (
            "network: a rule is refused",
            fail("PUT", "**/firewallRules/*", "before"),
        ),
        (
            "network: a rule is made but the answer is lost",
            fail("PUT", "**/firewallRules/*", "after"),
        ),
        (
            "network: the second rule is made but the answer is lost",
            fail("PUT", "**/firewallRules/*-20-42-0-2", "after"),
        ),
        (
            "configuration: the settings are refused",
            fail("PUT", "**/config/appsettings", "before"),
        ),
        (
            "configuration: the settings are written but the answer is lost",
            fail("PUT", "**/config/appsettings", "after"),
        ),
    ]
}

async fn expect_failed(api: &Api, env: &TestEnv, accepted: &tether_test_utils::Reply, what: &str) {
    assert!(
        accepted.status == 200 || accepted.status == 201 || accepted.status == 202,
        "{what}: {}",
        accepted.text
    );
    let done = api.wait(accepted).await;
    assert_eq!(done["status"], "Failed", "{what}: {done}");
    assert!(
        done["error"]["code"].is_string() && done["error"]["message"].is_string(),
        "{what}: {done}"
    );
    env.mock.clear_faults().await;
}

async fn a_failed_create_leaves_no_trace(backend: Backend) {
    let env = env(backend).await;
    let replica = env.spawn().await;
    let api = &replica.api;
    let clean = env.mock.state().await;
    for (what, fault) in create_faults() {
        env.mock.fault(fault).await;
        let accepted = api
            .put_linker(
                WEB_APP_ID,
                NAME,
                secret_linker(PG_DATABASE_ID, "pw", "python", true),
            )
            .await;
        expect_failed(api, &env, &accepted, what).await;
        assert_eq!(env.mock.state().await, clean, "{what}: the backend changed");
        let linker = api.get_linker(WEB_APP_ID, NAME).await;
        assert_eq!(
            linker.body["properties"]["provisioningState"], "Failed",
            "{what}"
        );
        // A failed linker can be deleted (which also sweeps anything left behind).
        let deleted = api.delete_linker(WEB_APP_ID, NAME).await;
        assert_eq!(api.wait(&deleted).await["status"], "Succeeded", "{what}");
        assert_eq!(env.mock.state().await, clean, "{what}");
    }
    env.teardown().await;
}

/// Creates the linker (python, firewall rules) and returns the backend state after.
async fn connected(api: &Api, env: &TestEnv) -> std::collections::BTreeMap<String, Value> {
    let created = api
        .put_linker(
            WEB_APP_ID,
            NAME,
            secret_linker(PG_DATABASE_ID, "pw1", "python", true),
        )
        .await;
    assert_eq!(api.wait(&created).await["status"], "Succeeded");
    env.mock.state().await
}

async fn a_failed_update_restores_the_previous_connection(backend: Backend) {
    let env = env(backend).await;
    let replica = env.spawn().await;
    let api = &replica.api;
    let connected = connected(api, &env).await;
    let before = api.get_linker(WEB_APP_ID, NAME).await.body["properties"].clone();
    // The update changes every part: another password and client type, no firewall rules.
    let mut faults = create_faults();
    faults.extend([
        (
            "network: a rule is removed but the answer is lost",
            fail("DELETE", "**/firewallRules/*", "after"),
        ),
        (
            "network: the second removal is refused",
            fail("DELETE", "**/firewallRules/*-20-42-0-2", "before"),
        ),
    ]);
    for (what, fault) in faults {
        let refused_create_only = what.contains("rule is refused") || what.contains("rule is made");
        if refused_create_only {
            continue; // an update to "no firewall" makes no rules
        }
        env.mock.fault(fault).await;
        let accepted = api
            .put_linker(
                WEB_APP_ID,
                NAME,
                secret_linker(PG_DATABASE_ID, "pw2", "java", false),
            )
            .await;
        expect_failed(api, &env, &accepted, what).await;
        assert_eq!(
            env.mock.state().await,
            connected,
            "{what}: the backend changed"
        );
        let linker = api.get_linker(WEB_APP_ID, NAME).await;
        assert_eq!(
            linker.body["properties"]["provisioningState"], "Failed",
            "{what}"
        );
        let mut shown = linker.body["properties"].clone();
        shown["provisioningState"] = before["provisioningState"].clone();
        assert_eq!(
            shown, before,
            "{what}: the linker shows the connection that is still in place"
        );
    }
    // The kept spec (with the old password) still applies cleanly.
    let patched = api.patch_linker(WEB_APP_ID, NAME, json!({})).await;
    assert_eq!(api.wait(&patched).await["status"], "Succeeded");
    assert_eq!(env.mock.state().await, connected);
    env.teardown().await;
}

async fn a_failed_delete_keeps_the_connection(backend: Backend) {
    let env = env(backend).await;
    let replica = env.spawn().await;
    let api = &replica.api;
    let connected = connected(api, &env).await;
    let faults = [
        (
            "resolve: the source cannot be read",
            fail("GET", "**/sites/demo-web", "before"),
        ),
        (
            "configuration: the settings are written but the answer is lost",
            fail("PUT", "**/config/appsettings", "after"),
        ),
        (
            "network: a rule is removed but the answer is lost",
            fail("DELETE", "**/firewallRules/*", "after"),
        ),
        (
            "network: the second removal is refused",
            fail("DELETE", "**/firewallRules/*-20-42-0-2", "before"),
        ),
    ];
    for (what, fault) in faults {
        env.mock.fault(fault).await;
        let accepted = api.delete_linker(WEB_APP_ID, NAME).await;
        assert_eq!(accepted.status, 202, "{what}");
        expect_failed(api, &env, &accepted, what).await;
        assert_eq!(
            env.mock.state().await,
            connected,
            "{what}: the backend changed"
        );
        let linker = api.get_linker(WEB_APP_ID, NAME).await;
        assert_eq!(
            linker.body["properties"]["provisioningState"], "Failed",
            "{what}"
        );
    }
    env.teardown().await;
}

/// With every action and undo run twice, each operation ends where a single run ends.
async fn every_step_run_twice_gives_the_same_end_state(backend: Backend) {
    let env = env(backend).await;
    let once = env.spawn().await;
    let twice = env
        .spawn_with(ReplicaOptions::default().env("TETHER__SAGAS__REPEAT_EACH_STEP", "true"))
        .await;
    let clean = env.mock.state().await;
    let mut ends = Vec::new();
    for replica in [&once, &twice] {
        let api = &replica.api;
        let mut states = Vec::new();
        let created = api
            .put_linker(
                WEB_APP_ID,
                NAME,
                secret_linker(PG_DATABASE_ID, "pw1", "python", true),
            )
            .await;
        assert_eq!(api.wait(&created).await["status"], "Succeeded");
        states.push(env.mock.state().await);
        let updated = api
            .put_linker(
                WEB_APP_ID,
                NAME,
                secret_linker(PG_DATABASE_ID, "pw2", "nodejs", false),
            )
            .await;
        assert_eq!(api.wait(&updated).await["status"], "Succeeded");
        states.push(env.mock.state().await);
        env.mock
            .fault(fail("PUT", "**/config/appsettings", "after"))
            .await;
        let failing = api
            .put_linker(
                WEB_APP_ID,
                NAME,
                secret_linker(PG_DATABASE_ID, "pw3", "go", true),
            )
            .await;
        expect_failed(api, &env, &failing, "a failed update").await;
        states.push(env.mock.state().await);
        let deleted = api.delete_linker(WEB_APP_ID, NAME).await;
        assert_eq!(api.wait(&deleted).await["status"], "Succeeded");
        assert_eq!(env.mock.state().await, clean);
        ends.push(states);
    }
    assert_eq!(
        ends[0], ends[1],
        "repeating every step changed an end state"
    );
    env.teardown().await;
}
