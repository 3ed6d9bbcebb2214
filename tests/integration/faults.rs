//! A backend fault at every write of every auth path unwinds to the starting state. Each
//! scenario is first run without faults to learn the writes it makes (from the mock's call
//! log); then, for each write, the same operation runs again with that write failing —
//! before the backend applies it, and after (a lost response) — and must fail with the mock
//! exactly as it was before the operation. The failed linker is then deleted, which must
//! leave nothing either.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tether_mock_azure::demo;
use tether_test_utils::{Api, Backend, TestEnv};

use crate::support::{comparable, differences, env};

const NAME: &str = "faulty";

/// The writes a call log holds after `from`: (method, path, occurrence) of each PUT, PATCH,
/// DELETE and POST in order — the occurrence counts earlier calls with the same method and
/// path, so a fault with that `skip` hits exactly this call.
fn writes(calls: &[Value], from: usize) -> Vec<(String, String, usize)> {
    let mut seen: Vec<(String, String, usize)> = Vec::new();
    for c in &calls[from..] {
        let (Some(method), Some(path)) = (c["method"].as_str(), c["path"].as_str()) else {
            continue;
        };
        if !matches!(method, "PUT" | "PATCH" | "DELETE" | "POST") || path.contains("/oauth2/") {
            continue;
        }
        // A name derived from an identity's principal (which changes each time the identity
        // is enabled) matches by its collection.
        let path = match path.rsplit_once('/') {
            Some((parent, last)) if tether_model::ids::is_canonical_guid(last) => {
                format!("{parent}/*")
            }
            _ => path.to_string(),
        };
        let occurrence = seen
            .iter()
            .filter(|(m, p, _)| m == method && *p == path)
            .count();
        seen.push((method.to_string(), path, occurrence));
    }
    seen
}

async fn state(env: &TestEnv) -> BTreeMap<String, Value> {
    comparable(env.mock.state().await)
}

async fn settle(api: &Api, reply: &tether_test_utils::Reply) -> Value {
    assert!((200..=202).contains(&reply.status), "{}", reply.text);
    api.wait(reply).await
}

/// Runs `after` on `source` with every write failing in turn; `before` (if any) is the
/// connection already in place.
async fn every_write_fails(source: &str, before: Option<Value>, after: Value) {
    let env = env(Backend::Sqlite).await;
    let server = env.spawn().await;
    let api = &server.api;
    let before = match before {
        Some(b) => Some(resolved(&env, b).await),
        None => None,
    };
    let after = resolved(&env, after).await;
    if let Some(before) = &before {
        let done = settle(api, &api.put_linker(source, NAME, before.clone()).await).await;
        assert_eq!(done["status"], "Succeeded", "{done}");
    }
    let start = state(&env).await;
    let from = env.mock.calls().await.len();
    let done = settle(api, &api.put_linker(source, NAME, after.clone()).await).await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    let writes = writes(&env.mock.calls().await, from);
    assert!(
        writes.len() >= 2,
        "the scenario makes too few writes: {writes:?}"
    );
    // Back to the start.
    let reset = match &before {
        Some(before) => api.put_linker(source, NAME, before.clone()).await,
        None => api.delete_linker(source, NAME).await,
    };
    assert_eq!(settle(api, &reset).await["status"], "Succeeded");
    let left = differences(&start, &state(&env).await);
    assert!(left.is_empty(), "the reset left changes: {left:#?}");

    for (method, path, skip) in &writes {
        for when in ["before", "after"] {
            let point = format!("{method} {path} (call {}) failing {when}", skip + 1);
            let fail = json!({"status": 400, "code": "InjectedFault"});
            env.mock
                .fault(
                    json!({"method": method, "path": path, "count": 1, "skip": skip,
                              "when": when, "action": {"fail": fail}}),
                )
                .await;
            let done = settle(api, &api.put_linker(source, NAME, after.clone()).await).await;
            env.mock.clear_faults().await;
            assert_eq!(done["status"], "Failed", "{point}: {done}");
            let left = differences(&start, &state(&env).await);
            assert!(left.is_empty(), "{point}: the rollback left {left:#?}");
            if before.is_none() {
                let reply = api.delete_linker(source, NAME).await;
                if reply.status == 202 {
                    assert_eq!(settle(api, &reply).await["status"], "Succeeded", "{point}");
                }
                let left = differences(&start, &state(&env).await);
                assert!(
                    left.is_empty(),
                    "{point}: deleting the failed linker left {left:#?}"
                );
            }
        }
    }
    env.teardown().await;
}

fn target(id: &str) -> Value {
    json!({"type": "AzureResource", "id": id})
}

/// Stands for the demo identity's client id (the mock makes it up when it starts).
const IDENTITY: &str = "$demo-identity-client-id";

/// `properties` with [`IDENTITY`] replaced by the mock's client id.
async fn resolved(env: &TestEnv, properties: Value) -> Value {
    let identity = env.mock.resource(demo::IDENTITY_ID).await.unwrap();
    let client_id = identity["properties"]["clientId"].as_str().unwrap();
    serde_json::from_str(&properties.to_string().replace(IDENTITY, client_id)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn system_identity_with_a_database_user_and_firewall_rules() {
    let after = json!({
        "targetService": target(demo::PG_DATABASE_ID),
        "authInfo": {"authType": "systemAssignedIdentity"},
        "clientType": "python",
        "vNetSolution": {"type": "firewall"},
    });
    every_write_fails(demo::WEB_APP_ID, None, after).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn user_identity_with_a_role_and_ip_rules() {
    let after = json!({
        "targetService": target(&format!("{}/blobServices/default", demo::STORAGE_ACCOUNT_ID)),
        "authInfo": {"authType": "userAssignedIdentity", "clientId": IDENTITY},
        "clientType": "dotnet",
        "vNetSolution": {"type": "firewall"},
    });
    every_write_fails(demo::WEB_APP_ID, None, after).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn service_principal_with_control_and_data_plane_roles() {
    let after = json!({
        "targetService": target(demo::COSMOS_DATABASE_ID),
        "authInfo": {
            "authType": "servicePrincipalSecret",
            "clientId": "6c1d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f",
            "principalId": "2b3c4d5e-6f70-4812-9a3b-4c5d6e7f8091",
            "secret": "sp-secret-faults",
        },
        "clientType": "python",
    });
    every_write_fails(demo::CONTAINER_APP_ID, None, after).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn system_identity_with_a_redis_access_policy() {
    let after = json!({
        "targetService": target(&format!("{}/databases/0", demo::REDIS_ID)),
        "authInfo": {"authType": "systemAssignedIdentity"},
        "clientType": "python",
        "vNetSolution": {"type": "firewall"},
    });
    every_write_fails(demo::CONTAINER_APP_ID, None, after).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn listed_keys_kept_in_a_key_vault() {
    let after = json!({
        "targetService": target(demo::SERVICE_BUS_ID),
        "authInfo": {"authType": "secret"},
        "clientType": "dotnet",
        "secretStore": {"keyVaultId": demo::KEY_VAULT_ID},
    });
    every_write_fails(demo::WEB_APP_ID, None, after).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_from_a_user_identity_to_a_password_in_a_key_vault() {
    let before = json!({
        "targetService": target(demo::MYSQL_DATABASE_ID),
        "authInfo": {"authType": "userAssignedIdentity", "clientId": IDENTITY},
        "clientType": "java",
        "vNetSolution": {"type": "firewall"},
    });
    let after = json!({
        "targetService": target(demo::MYSQL_DATABASE_ID),
        "authInfo": {"authType": "secret", "name": "shopper", "secretInfo": {"secretType": "rawValue", "value": "Faulty-Pa55"}},
        "clientType": "java",
        "secretStore": {"keyVaultId": demo::KEY_VAULT_ID},
    });
    every_write_fails(demo::CONTAINER_APP_ID, Some(before), after).await;
}
