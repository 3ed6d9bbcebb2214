//! Shared fixtures: the binary under test, demo resources, linker bodies.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
pub use tether_mock_azure::demo::{
    API_APP_ID, IDENTITY_ID, PG_DATABASE_2_ID, PG_DATABASE_ID, PG_SERVER_ID, WEB_APP_ID,
};
use tether_test_utils::{Backend, TestEnv};

/// The `tether` binary built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_tether");

/// A fresh environment.
pub async fn env(backend: Backend) -> TestEnv {
    TestEnv::new(BIN, backend).await
}

/// `properties` of a secret-auth connection to `target`.
pub fn secret_linker(target: &str, password: &str, client: &str, firewall: bool) -> Value {
    let mut properties = json!({
        "targetService": {"type": "AzureResource", "id": target},
        "authInfo": {"authType": "secret", "name": "appuser", "secretInfo": {"secretType": "rawValue", "value": password}},
        "clientType": client,
    });
    if firewall {
        properties["vNetSolution"] = json!({"type": "firewall"});
    }
    properties
}

/// Generates one `#[tokio::test]` per backend for each listed `async fn(Backend)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                super::$name(tether_test_utils::Backend::Postgres).await;
            })*
        }
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                super::$name(tether_test_utils::Backend::Sqlite).await;
            })*
        }
    };
}
pub(crate) use on_both_backends;

/// The mock's state without what a container app keeps of its history (revisions), which no
/// delete undoes.
pub fn comparable(mut state: BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    state.retain(|id, _| !id.contains("/revisions/"));
    for resource in state.values_mut() {
        if let Some(p) = resource
            .get_mut("properties")
            .and_then(Value::as_object_mut)
        {
            p.remove("latestRevisionName");
            p.remove("latestReadyRevisionName");
        }
    }
    state
}

/// The ids that differ between two states.
pub fn changed(
    before: &BTreeMap<String, Value>,
    after: &BTreeMap<String, Value>,
) -> BTreeSet<String> {
    before
        .keys()
        .chain(after.keys())
        .filter(|id| before.get(*id) != after.get(*id))
        .cloned()
        .collect()
}

/// Where two states differ, as `id` + JSON pointer: before → after (for failure messages).
pub fn differences(
    before: &BTreeMap<String, Value>,
    after: &BTreeMap<String, Value>,
) -> Vec<String> {
    fn walk(at: String, a: &Value, b: &Value, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                    let null = Value::Null;
                    walk(
                        format!("{at}/{k}"),
                        x.get(k).unwrap_or(&null),
                        y.get(k).unwrap_or(&null),
                        out,
                    );
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (p, q)) in x.iter().zip(y).enumerate() {
                    walk(format!("{at}/{i}"), p, q, out);
                }
            }
            _ if a != b => out.push(format!("{at}: {a} -> {b}")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for id in changed(before, after) {
        let null = Value::Null;
        walk(
            id.clone(),
            before.get(&id).unwrap_or(&null),
            after.get(&id).unwrap_or(&null),
            &mut out,
        );
    }
    out
}
