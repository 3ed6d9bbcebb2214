//! Upgrading from the first release: a SQLite database that release wrote, holding an idle
//! linker it created (App Service → PostgreSQL, password, firewall rules), and its mock
//! backend's state are opened by this build. The linker reads as it was, the first
//! release's validation still runs, and an update and a delete (each on its own, or one after
//! the other) converge the backend from what the first release applied (it stored no applied
//! record) — a delete back to exactly the state before the first release created the linker. The fixtures, and how they were made,
//! are in `tests/fixtures/upgrade-v1/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tether_test_utils::{Api, TestEnv};

use crate::support::{BIN, PG_DATABASE_ID, PG_SERVER_ID, WEB_APP_ID, differences, secret_linker};

/// The password the first release was given; the mock's state holds it in the app settings.
const V1_PASSWORD: &str = "Upgrade-v1-pw-1";
const NEW_PASSWORD: &str = "Upgrade-v2-pw-2";
/// The linker's firewall rules, named by the first release from the linker's rule prefix.
const RULES: [&str; 2] = [
    "tether-3a09fa229c8d-20-42-0-1",
    "tether-3a09fa229c8d-20-42-0-2",
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/upgrade-v1")
        .join(name)
}

fn json_fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A mock backend's resources by lower-cased id (a state file, or `/admin/state`).
fn state_fixture(name: &str) -> BTreeMap<String, Value> {
    serde_json::from_value(json_fixture(name)).unwrap()
}

/// This build on copies of the first release's database, mock state and key.
async fn restored() -> TestEnv {
    let key = std::fs::read_to_string(fixture("secret.key")).unwrap();
    let env = TestEnv::restored(
        BIN,
        &fixture("tether.db"),
        &fixture("mock-azure.json"),
        key.trim(),
    )
    .await;
    // The mock ignores a state file it cannot read: make sure it holds the first release's.
    let loaded = env.mock.state().await;
    let saved = state_fixture("mock-azure.json");
    assert!(
        loaded == saved,
        "the mock did not load the saved state: {:#?}",
        differences(&saved, &loaded)
    );
    env
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_release_linker_is_updated_and_deleted_by_this_release() {
    let env = restored().await;
    let replica = env.spawn().await;
    let api = &replica.api;
    api.forbid(V1_PASSWORD);
    api.forbid(NEW_PASSWORD);

    // The linker reads exactly as the first release served it.
    let got = api.get_linker(WEB_APP_ID, "orders").await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.body, json_fixture("linker.json"));

    // Its validation runs the first release's checks, which all pass.
    let accepted = api.validate(WEB_APP_ID, "orders").await;
    assert_eq!(accepted.status, 202, "{}", accepted.text);
    let done = api.wait(&accepted).await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    assert_eq!(
        done["properties"]["isConnectionAvailable"], true,
        "{done:#}"
    );
    let before_update = env.mock.state().await;
    assert_eq!(
        before_update,
        state_fixture("mock-azure.json"),
        "a validation changed the backend"
    );

    // An update with another client type and password rewrites the setting in place and
    // keeps the first release's firewall rules (same linker, same addresses).
    let accepted = api
        .put_linker(
            WEB_APP_ID,
            "orders",
            secret_linker(PG_DATABASE_ID, NEW_PASSWORD, "java", true),
        )
        .await;
    assert!(
        accepted.status == 200 || accepted.status == 201,
        "{}",
        accepted.text
    );
    let done = api.wait(&accepted).await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    let settings = env.mock.app_settings(WEB_APP_ID).await;
    assert_eq!(
        settings,
        BTreeMap::from([
            (
                "AZURE_POSTGRESQL_CONNECTIONSTRING".to_string(),
                format!(
                    "jdbc:postgresql://demo-pg.postgres.database.azure.com:5432/orders?sslmode=require&user=appuser&password={NEW_PASSWORD}"
                ),
            ),
            ("WEBSITE_RUN_FROM_PACKAGE".to_string(), "1".to_string()),
        ])
    );
    let rules = env.mock.firewall_rules(PG_SERVER_ID).await;
    assert_eq!(
        rules.keys().map(String::as_str).collect::<Vec<_>>(),
        RULES,
        "{rules:?}"
    );
    let after_update = env.mock.state().await;
    let changed: Vec<String> = crate::support::changed(&before_update, &after_update)
        .into_iter()
        .collect();
    assert_eq!(
        changed,
        [format!("{WEB_APP_ID}/config/appsettings").to_ascii_lowercase()],
        "{:#?}",
        differences(&before_update, &after_update)
    );

    // The linker is now this release's: it reads with its new client type, and lists its
    // configuration.
    let got = api.get_linker(WEB_APP_ID, "orders").await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.body["properties"]["clientType"], "java");
    assert_eq!(got.body["properties"]["provisioningState"], "Succeeded");
    let listed = api.list_configurations(WEB_APP_ID, "orders").await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(
        listed.body,
        json!({"configurations": [{
            "name": "AZURE_POSTGRESQL_CONNECTIONSTRING",
            "value": "jdbc:postgresql://demo-pg.postgres.database.azure.com:5432/orders?sslmode=require&user=appuser&password=<redacted>",
        }]})
    );

    deleted_to_a_clean_slate(&env, api).await;
    drop(replica);
    env.teardown().await;
}

/// A delete straight after the upgrade removes what the first release applied (it stored no
/// applied record: the setting and the rules are derived from its spec).
#[tokio::test(flavor = "multi_thread")]
async fn a_first_release_linker_is_deleted_by_this_release() {
    let env = restored().await;
    let replica = env.spawn().await;
    replica.api.forbid(V1_PASSWORD);
    deleted_to_a_clean_slate(&env, &replica.api).await;
    drop(replica);
    env.teardown().await;
}

/// Deletes the linker: the backend is then exactly as it was before the first release
/// created it (that release left nothing else behind).
async fn deleted_to_a_clean_slate(env: &TestEnv, api: &Api) {
    let accepted = api.delete_linker(WEB_APP_ID, "orders").await;
    assert_eq!(accepted.status, 202, "{}", accepted.text);
    let done = api.wait(&accepted).await;
    assert_eq!(done["status"], "Succeeded", "{done}");
    let got = api.get_linker(WEB_APP_ID, "orders").await;
    assert_eq!(got.status, 404, "{}", got.text);
    let clean = state_fixture("mock-before.json");
    let after = env.mock.state().await;
    assert!(
        after == clean,
        "the backend is not as before the first release's create: {:#?}",
        differences(&clean, &after)
    );
}

/// `listConfigurations` of a first-release linker answers what that release answered.
#[tokio::test(flavor = "multi_thread")]
async fn a_first_release_linker_lists_its_configurations() {
    let env = restored().await;
    let replica = env.spawn().await;
    replica.api.forbid(V1_PASSWORD);
    let listed = replica.api.list_configurations(WEB_APP_ID, "orders").await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.body, json_fixture("list-configurations.json"));
    drop(replica);
    env.teardown().await;
}
