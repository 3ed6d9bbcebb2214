//! The Azure adapters, looked up by catalogue kind, against the mock ARM backend over real
//! HTTP: every capability (source settings and identities, target facts, keys, firewall and IP
//! rules, grants, Key Vault secrets, the identity directory) checked against the backend's
//! state, idempotency included; and the ARM client underneath: retries, throttling, token
//! refresh, long-running operations, hostile responses.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers may panic: a panic is a test failure"
)]

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether_adapters::arm::{ArmClient, ArmConfig};
use tether_adapters::{
    AdapterError, Adapters, Call, Ensured, ErrorKind, FirewallRule, Grant, Grantee, IdentityChange,
    Setting, SettingsChange, SourceAdapters, SourceFacts, SourceIdentities, SourceIdentity,
    TargetAdapters, TargetRef,
};
use tether_mock_azure::demo;
use tether_model::catalog::{Dialect, catalog};
use tether_model::facts::Facts;
use tether_model::ids::ResourceId;
use tether_test_utils::Mock;

/// The demo-seeded mock. The extra token it accepts is only for seeding resources
/// (`Mock::put_resource`): the adapters must get their tokens from its token endpoint.
async fn start() -> Mock {
    Mock::start("seeding-only").await
}

fn arm_config(mock: &Mock) -> ArmConfig {
    ArmConfig {
        endpoint: mock.url.parse().unwrap(),
        authority: mock.url.parse().unwrap(),
        tenant_id: demo::TENANT_ID.into(),
        client_id: demo::CLIENT_ID.into(),
        client_secret: demo::CLIENT_SECRET.to_string().into(),
        max_retries: 3,
        max_retry_after: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        lro_timeout: Duration::from_secs(10),
        max_response_bytes: tether_adapters::arm::DEFAULT_MAX_RESPONSE_BYTES,
        sql_data_plane: Some(format!("{}/dataplane/sql", mock.url).parse().unwrap()),
        user_agent: "tether-test".into(),
    }
}

fn adapters_with(config: ArmConfig) -> Adapters {
    tether_adapters::azure::adapters(ArmClient::new(config).unwrap(), catalog().unwrap())
}

fn adapters(mock: &Mock) -> Adapters {
    adapters_with(arm_config(mock))
}

fn source<'a>(adapters: &'a Adapters, kind: &str) -> &'a SourceAdapters {
    adapters
        .source(kind)
        .unwrap_or_else(|| panic!("no source kind {kind}"))
}

fn target<'a>(adapters: &'a Adapters, kind: &str) -> &'a TargetAdapters {
    adapters
        .target(kind)
        .unwrap_or_else(|| panic!("no target kind {kind}"))
}

fn id(s: &str) -> ResourceId {
    ResourceId::parse(s).unwrap()
}

fn arm(s: &str) -> TargetRef {
    TargetRef::Arm(id(s))
}

fn call() -> Call {
    Call::correlated("test-correlation")
}

/// `demo-web`'s facts: the call the client-behaviour tests make.
async fn web_app_facts(adapters: &Adapters) -> Result<SourceFacts, AdapterError> {
    source(adapters, "webapp")
        .settings
        .facts(&call(), &id(demo::WEB_APP_ID))
        .await
}

fn plain(value: &str) -> Setting {
    Setting {
        value: value.into(),
        secret: false,
    }
}

fn secret(value: &str) -> Setting {
    Setting {
        value: value.into(),
        secret: true,
    }
}

fn change(set: &[(&str, Setting)], remove: &[&str]) -> SettingsChange {
    SettingsChange {
        set: set
            .iter()
            .map(|(k, s)| (k.to_string(), s.clone()))
            .collect(),
        remove: remove.iter().map(|k| k.to_string()).collect(),
    }
}

fn facts(pairs: &[(&str, &str)]) -> Facts {
    let mut facts = Facts::new();
    for (name, value) in pairs {
        facts.set(name, *value);
    }
    facts
}

fn strings(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// How many writes (PUT, PATCH, DELETE) the backend has received: a change already in effect
/// must add none.
async fn writes(mock: &Mock) -> usize {
    mock.calls()
        .await
        .iter()
        .filter(|c| matches!(c["method"].as_str(), Some("PUT" | "PATCH" | "DELETE")))
        .count()
}

/// Runs `op` twice, returning the second result: the second run must write nothing (`what`,
/// a change already in effect, is left alone).
async fn twice<T, F: Future<Output = T>>(mock: &Mock, what: &str, op: impl Fn() -> F) -> T {
    op().await;
    let before = writes(mock).await;
    let again = op().await;
    assert_eq!(writes(mock).await, before, "{what} again writes nothing");
    again
}

/// An entry of the backend's state that must exist.
async fn entry(mock: &Mock, id: &str) -> Value {
    mock.resource(id)
        .await
        .unwrap_or_else(|| panic!("{id} is not in the mock's state"))
}

/// Asserts that `actual` has every field of `expected` (recursively) with the same value.
fn assert_fields(actual: &Value, expected: &Value) {
    match expected.as_object() {
        Some(fields) => fields
            .iter()
            .for_each(|(field, value)| assert_fields(&actual[field], value)),
        None => assert_eq!(actual, expected),
    }
}

// ---------------------------------------------------------------------------------------
// Sources: settings

#[tokio::test]
async fn web_app_facts_and_settings() {
    let mock = start().await;
    let adapters = adapters(&mock);
    let settings = &source(&adapters, "webapp").settings;
    let app = id(demo::WEB_APP_ID);
    assert_eq!(
        web_app_facts(&adapters).await.unwrap().outbound_ips,
        [Ipv4Addr::new(20, 42, 0, 1), Ipv4Addr::new(20, 42, 0, 2)]
    );

    let add = change(&[("A", plain("1")), ("B", secret("two words"))], &["GONE"]);
    twice(&mock, "the same settings", || async {
        settings
            .apply_settings(&call(), &app, None, &add)
            .await
            .unwrap()
    })
    .await;
    let stored = mock.app_settings(demo::WEB_APP_ID).await;
    assert_eq!(
        stored,
        [
            ("A", "1"),
            ("B", "two words"),
            ("WEBSITE_RUN_FROM_PACKAGE", "1")
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into(),
        "others are preserved"
    );
    let read = settings.read_settings(&call(), &app, None).await.unwrap();
    assert_eq!(
        (&read["B"], &read["WEBSITE_RUN_FROM_PACKAGE"]),
        (&plain("two words"), &plain("1")),
        "app settings have no secret kind"
    );

    settings
        .apply_settings(&call(), &app, None, &change(&[], &["A", "B"]))
        .await
        .unwrap();
    assert_eq!(
        mock.app_settings(demo::WEB_APP_ID)
            .await
            .keys()
            .collect::<Vec<_>>(),
        ["WEBSITE_RUN_FROM_PACKAGE"]
    );
    assert!(
        mock.calls()
            .await
            .iter()
            .all(|c| c["correlationId"] == "test-correlation"
                || c["path"].as_str().unwrap().contains("oauth2"))
    );
}

/// How many revisions `demo-aca` has had.
async fn revisions(mock: &Mock) -> usize {
    let prefix = format!("{}/revisions/", demo::CONTAINER_APP_ID.to_ascii_lowercase());
    mock.state()
        .await
        .keys()
        .filter(|k| k.starts_with(&prefix))
        .count()
}

#[tokio::test]
async fn container_app_settings_keep_secret_values_as_referenced_secrets() {
    let mock = start().await;
    let adapters = adapters(&mock);
    let settings = &source(&adapters, "containerapp").settings;
    let app = id(demo::CONTAINER_APP_ID);
    let add = change(
        &[("DB_HOST", plain("h")), ("DB_PASSWORD", secret("pw"))],
        &[],
    );
    twice(&mock, "the same settings", || async {
        settings
            .apply_settings(&call(), &app, Some("main"), &add)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(
        revisions(&mock).await,
        2,
        "one revision more than the seed's"
    );

    let stored = entry(&mock, demo::CONTAINER_APP_ID).await;
    let properties = &stored["properties"];
    assert_eq!(
        properties["template"]["containers"][0]["env"],
        json!([{"name": "DB_HOST", "value": "h"}, {"name": "DB_PASSWORD", "secretRef": "db-password"}])
    );
    assert_eq!(
        properties["configuration"]["secrets"],
        json!([{"name": "db-password"}])
    );
    let secrets_at = format!("{}/$secret", demo::CONTAINER_APP_ID);
    assert_eq!(
        entry(&mock, &secrets_at).await,
        json!({"values": {"db-password": "pw"}})
    );
    assert_eq!(
        settings
            .read_settings(&call(), &app, Some("main"))
            .await
            .unwrap(),
        add.set
    );

    settings
        .apply_settings(&call(), &app, Some("main"), &change(&[], &["DB_PASSWORD"]))
        .await
        .unwrap();
    let properties = entry(&mock, demo::CONTAINER_APP_ID).await["properties"].clone();
    assert_eq!(
        properties["template"]["containers"][0]["env"],
        json!([{"name": "DB_HOST", "value": "h"}])
    );
    assert_eq!(properties["configuration"]["secrets"], json!([]));
    assert_eq!(mock.resource(&secrets_at).await, None);
}

#[tokio::test]
async fn a_missing_container_is_an_error_and_writes_nothing() {
    let mock = start().await;
    let adapters = adapters(&mock);
    let settings = &source(&adapters, "containerapp").settings;
    let app = id(demo::CONTAINER_APP_ID);
    let err = settings
        .apply_settings(
            &call(),
            &app,
            Some("sidecar"),
            &change(&[("A", plain("1"))], &[]),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind, err.code.as_str()),
        (ErrorKind::BadRequest, "ContainerNotFound")
    );
    let err = settings
        .read_settings(&call(), &app, Some("sidecar"))
        .await
        .unwrap_err();
    assert_eq!(err.code, "ContainerNotFound");
    assert_eq!(writes(&mock).await, 0);
}

// ---------------------------------------------------------------------------------------
// Sources: managed identities

/// Applies `change` twice (the second time must write nothing); returns the identities
/// after it, which a fresh read must see too.
async fn apply_identity_twice(
    mock: &Mock,
    identities: &dyn SourceIdentities,
    source: &ResourceId,
    change: IdentityChange,
) -> SourceIdentity {
    let after = twice(mock, &format!("{change:?}"), || async {
        identities
            .apply_identity(&call(), source, &change)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(identities.identity(&call(), source).await.unwrap(), after);
    after
}

/// The user-assigned identities the backend holds for a source, lower-cased.
async fn stored_user_identities(mock: &Mock, source: &str) -> BTreeSet<String> {
    let stored = entry(mock, source).await;
    stored["identity"]["userAssignedIdentities"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(id, _)| id.to_ascii_lowercase())
        .collect()
}

/// Takes a source through its identities' life: system identity on, two user-assigned
/// identities attached, one detached, system identity off.
async fn identity_lifecycle(mock: &Mock, adapters: &Adapters, kind: &str, source_id: &str) {
    let identities = source(adapters, kind).identity.as_ref();
    let app = id(source_id);
    let (uai, other) = (id(demo::IDENTITY_ID), id(&other_identity()));
    let apply = |change| apply_identity_twice(mock, identities, &app, change);

    let on = apply(IdentityChange::EnableSystem).await;
    let system = on.system.clone().expect("a system identity");
    assert_eq!(
        entry(mock, source_id).await["identity"]["principalId"],
        system.principal_id.as_str()
    );

    apply(IdentityChange::Attach(uai.clone())).await;
    let both = apply(IdentityChange::Attach(other.clone())).await;
    let attached = strings(&[uai.key(), other.key()]);
    assert_eq!(both.user.keys().cloned().collect::<BTreeSet<_>>(), attached);
    assert_eq!(stored_user_identities(mock, source_id).await, attached);
    let uai_properties = entry(mock, demo::IDENTITY_ID).await["properties"].clone();
    let principal = &both.user[uai.key()];
    assert_eq!(
        (
            principal.principal_id.as_str(),
            principal.client_id.as_deref()
        ),
        (
            uai_properties["principalId"].as_str().unwrap(),
            uai_properties["clientId"].as_str()
        )
    );
    assert_eq!(both.system, on.system, "the system principal is kept");

    let detached = apply(IdentityChange::Detach(uai)).await;
    let left = strings(&[other.key()]);
    assert_eq!(detached.user.keys().cloned().collect::<BTreeSet<_>>(), left);
    assert_eq!(stored_user_identities(mock, source_id).await, left);
    assert_eq!(detached.system, on.system);

    let off = apply(IdentityChange::DisableSystem).await;
    assert_eq!((off.system, off.user), (None, detached.user));
    assert_eq!(
        entry(mock, source_id).await["identity"]["type"],
        "UserAssigned"
    );
}

/// A second user-assigned identity, seeded by [`seed_other_identity`].
fn other_identity() -> String {
    demo::IDENTITY_ID.replace("demo-identity", "other-identity")
}

async fn seed_other_identity(mock: &Mock) -> Value {
    mock.put_resource(&other_identity(), json!({"location": demo::LOCATION}))
        .await
}

#[tokio::test]
async fn source_identities_are_enabled_attached_detached_and_disabled() {
    let mock = start().await;
    let adapters = adapters(&mock);
    seed_other_identity(&mock).await;
    identity_lifecycle(&mock, &adapters, "webapp", demo::WEB_APP_ID).await;
    identity_lifecycle(&mock, &adapters, "containerapp", demo::CONTAINER_APP_ID).await;
}

#[tokio::test]
async fn user_assigned_identities_are_found_by_client_id() {
    let mock = start().await;
    let adapters = adapters(&mock);
    let other = seed_other_identity(&mock).await;
    for (identity_id, properties) in [
        (
            demo::IDENTITY_ID.to_string(),
            entry(&mock, demo::IDENTITY_ID).await["properties"].clone(),
        ),
        (other_identity(), other["properties"].clone()),
    ] {
        let client_id = properties["clientId"].as_str().unwrap();
        let found = adapters
            .identities
            .find(
                &call(),
                demo::SUBSCRIPTION_ID,
                &client_id.to_ascii_uppercase(),
            )
            .await
            .unwrap()
            .expect("the identity is found");
        assert_eq!(found.id.key(), id(&identity_id).key());
        assert_eq!(found.principal.principal_id, properties["principalId"]);
        assert_eq!(found.principal.client_id.as_deref(), Some(client_id));
    }
    let unknown = adapters
        .identities
        .find(
            &call(),
            demo::SUBSCRIPTION_ID,
            "0f0f0f0f-0000-4000-8000-000000000000",
        )
        .await
        .unwrap();
    assert_eq!(unknown, None);
}

// ---------------------------------------------------------------------------------------
// Targets: facts, keys, network

#[tokio::test]
async fn missing_resources_are_not_found() {
    let mock = start().await;
    let adapters = adapters(&mock);
    let ghost_app = demo::WEB_APP_ID.replace("demo-web", "ghost");
    let err = source(&adapters, "webapp")
        .settings
        .facts(&call(), &id(&ghost_app))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    let ghost_db = demo::PG_DATABASE_ID.replace("orders", "ghost");
    let err = target(&adapters, "postgres-flexible")
        .facts
        .facts(&call(), &arm(&ghost_db))
        .await
        .unwrap_err();
    assert!(err.is_not_found() && !err.is_transient());
}

#[tokio::test]
async fn target_facts_come_from_the_resource_the_catalogue_names() {
    let mock = start().await;
    let adapters = adapters(&mock);
    let blob = format!("{}/blobServices/default", demo::STORAGE_ACCOUNT_ID);
    let redis = format!("{}/databases/0", demo::REDIS_ID);
    let cases: [(&str, &str, Facts); 7] = [
        (
            "postgres-flexible",
            demo::PG_DATABASE_ID,
            facts(&[
                ("host", "demo-pg.postgres.database.azure.com"),
                ("port", "5432"),
                ("database", "orders"),
                ("server", "demo-pg"),
            ]),
        ),
        (
            "mysql-flexible",
            demo::MYSQL_DATABASE_ID,
            facts(&[
                ("host", "demo-mysql.mysql.database.azure.com"),
                ("port", "3306"),
                ("database", "shop"),
                ("server", "demo-mysql"),
            ]),
        ),
        (
            "storage-blob",
            &blob,
            facts(&[
                ("endpoint", "https://demostorage.blob.core.windows.net/"),
                ("account", "demostorage"),
            ]),
        ),
        (
            "keyvault",
            demo::KEY_VAULT_ID,
            facts(&[("vaultUri", "https://demo-kv.vault.azure.net/")]),
        ),
        (
            "servicebus",
            demo::SERVICE_BUS_ID,
            facts(&[("namespace", "demo-sb.servicebus.windows.net")]),
        ),
        (
            "redis",
            &redis,
            facts(&[
                ("host", "demo-redis.redis.cache.windows.net"),
                ("port", "6380"),
                ("database", "0"),
            ]),
        ),
        (
            "cosmos-sql",
            demo::COSMOS_DATABASE_ID,
            facts(&[
                ("endpoint", "https://demo-cosmos.documents.azure.com:443/"),
                ("database", "catalog"),
                ("account", "demo-cosmos"),
                ("subscription", demo::SUBSCRIPTION_ID),
                ("resourceGroup", demo::RESOURCE_GROUP),
            ]),
        ),
    ];
    for (kind, target_id, expected) in cases {
        let found = target(&adapters, kind)
            .facts
            .facts(&call(), &arm(target_id))
            .await
            .unwrap();
        assert_eq!(found, expected, "{kind}");
    }
}

#[tokio::test]
async fn endpoint_targets_are_parsed_without_any_call() {
    let mock = start().await;
    let adapters = adapters(&mock);
    let self_hosted = target(&adapters, "self-hosted-postgres");
    assert!(self_hosted.keys.is_none() && self_hosted.firewall.is_none());
    let endpoint = |e: &str| TargetRef::Endpoint(e.into());
    let found = self_hosted
        .facts
        .facts(&call(), &endpoint("postgres://h:6432/db"))
        .await
        .unwrap();
    assert_eq!(
        found,
        facts(&[
            ("host", "h"),
            ("port", "6432"),
            ("database", "db"),
            ("server", "h")
        ])
    );
    let err = self_hosted
        .facts
        .facts(&call(), &endpoint("postgres://h:6432"))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind, err.code.as_str()),
        (ErrorKind::BadRequest, "InvalidEndpoint")
    );
    assert!(mock.calls().await.is_empty(), "no HTTP call at all");
}

/// A value of a resource's secret material in the backend (`{id}/$secret`).
async fn stored_secret(mock: &Mock, id: &str, pointer: &str) -> String {
    let secret = entry(mock, &format!("{id}/$secret")).await;
    secret
        .pointer(pointer)
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn access_keys_are_the_backends_keys_marked_secret() {
    let mock = start().await;
    let adapters = adapters(&mock);
    let root_rule = format!(
        "{}/authorizationRules/RootManageSharedAccessKey",
        demo::SERVICE_BUS_ID
    );
    let storage_key = stored_secret(&mock, demo::STORAGE_ACCOUNT_ID, "/keys/0/value").await;
    let bus_key = stored_secret(&mock, &root_rule, "/primaryKey").await;
    let redis_key = stored_secret(&mock, demo::REDIS_ID, "/primaryKey").await;
    let cases = [
        (
            "storage-blob",
            format!("{}/blobServices/default", demo::STORAGE_ACCOUNT_ID),
            vec![("key", storage_key)],
        ),
        (
            "servicebus",
            demo::SERVICE_BUS_ID.to_string(),
            vec![
                ("key", bus_key),
                ("keyName", "RootManageSharedAccessKey".to_string()),
            ],
        ),
        (
            "redis",
            format!("{}/databases/0", demo::REDIS_ID),
            vec![("key", redis_key)],
        ),
    ];
    for (kind, target_id, expected) in cases {
        let keys = target(&adapters, kind)
            .keys
            .as_ref()
            .unwrap_or_else(|| panic!("{kind} has keys"))
            .keys(&call(), &arm(&target_id))
            .await
            .unwrap();
        assert_eq!(keys.names().count(), expected.len(), "{kind}: {keys:?}");
        for (name, value) in expected {
            let fact = keys
                .get(name)
                .unwrap_or_else(|| panic!("{kind} has {name}"));
            assert!(fact.secret, "{kind} {name} is secret");
            assert!(!value.is_empty());
            assert_eq!(fact.value, value, "{kind} {name}");
        }
        assert_eq!(keys.public(), Facts::new(), "{kind}: nothing public");
    }
    assert!(
        target(&adapters, "keyvault").keys.is_none(),
        "a kind without keys has no key capability"
    );
}

/// Takes a firewall rule through ensure (twice), list and remove (twice) on a target, checking
/// the backend's rule (at `{server}/firewallRules/{name}`, fields `start_field`, `end_field`).
async fn firewall_lifecycle(
    mock: &Mock,
    adapters: &Adapters,
    kind: &str,
    (target_id, server_id): (&str, &str),
    (start_field, end_field): (&str, &str),
) {
    let firewall = target(adapters, kind)
        .firewall
        .as_ref()
        .unwrap_or_else(|| panic!("{kind} has firewall rules"));
    let db = arm(target_id);
    let rule = FirewallRule {
        name: "tetherabc2042001".into(),
        start: Ipv4Addr::new(20, 42, 0, 1),
        end: Ipv4Addr::new(20, 42, 0, 9),
    };
    firewall.ensure_rule(&call(), &db, &rule).await.unwrap();
    firewall.ensure_rule(&call(), &db, &rule).await.unwrap();
    let rule_id = format!("{server_id}/firewallRules/{}", rule.name);
    let stored = entry(mock, &rule_id).await["properties"].clone();
    assert_eq!(
        (&stored[start_field], &stored[end_field]),
        (&json!("20.42.0.1"), &json!("20.42.0.9")),
        "{kind}"
    );
    assert_eq!(
        firewall.rules(&call(), &db, "tetherabc").await.unwrap(),
        std::slice::from_ref(&rule),
        "{kind}"
    );
    assert!(
        firewall
            .rules(&call(), &db, "other")
            .await
            .unwrap()
            .is_empty()
    );

    firewall
        .remove_rule(&call(), &db, &rule.name)
        .await
        .unwrap();
    firewall
        .remove_rule(&call(), &db, &rule.name)
        .await
        .unwrap();
    assert_eq!(mock.resource(&rule_id).await, None, "{kind}");
}

#[tokio::test]
async fn postgres_facts_and_firewall_rules_through_long_running_operations() {
    let mock = start().await;
    let adapters = adapters(&mock);
    let found = target(&adapters, "postgres-flexible")
        .facts
        .facts(&call(), &arm(demo::PG_DATABASE_ID))
        .await
        .unwrap();
    assert_eq!(
        (
            found.value("host"),
            found.value("port"),
            found.value("database")
        ),
        (
            Some("demo-pg.postgres.database.azure.com"),
            Some("5432"),
            Some("orders")
        )
    );
    firewall_lifecycle(
        &mock,
        &adapters,
        "postgres-flexible",
        (demo::PG_DATABASE_ID, demo::PG_SERVER_ID),
        ("startIpAddress", "endIpAddress"),
    )
    .await;
    // The PUT and DELETE answered 202 and the adapter polled the operation status.
    assert!(
        mock.calls()
            .await
            .iter()
            .any(|c| c["path"].as_str().unwrap().contains("azureAsyncOperation"))
    );
}

#[tokio::test]
async fn firewall_rules_of_the_other_kinds_that_have_them() {
    let mock = start().await;
    let adapters = adapters(&mock);
    let redis = format!("{}/databases/0", demo::REDIS_ID);
    let cases = [
        (
            "mysql-flexible",
            demo::MYSQL_DATABASE_ID,
            demo::MYSQL_SERVER_ID,
            ("startIpAddress", "endIpAddress"),
        ),
        (
            "sql",
            demo::SQL_DATABASE_ID,
            demo::SQL_SERVER_ID,
            ("startIpAddress", "endIpAddress"),
        ),
        (
            "redis",
            redis.as_str(),
            demo::REDIS_ID,
            ("startIP", "endIP"),
        ),
    ];
    for (kind, target_id, server_id, fields) in cases {
        firewall_lifecycle(&mock, &adapters, kind, (target_id, server_id), fields).await;
    }
}

/// Where a kind's IP rules live in the backend: the resource holding them, the array's JSON
/// pointer and each entry's address field. Written out here, not read from the catalogue,
/// so a wrong catalogue entry fails.
struct IpRulesAt {
    kind: &'static str,
    target: String,
    holder: String,
    pointer: &'static str,
    field: &'static str,
}

/// Adds a foreign entry, then ours, removes ours; checks the backend's array each time, that
/// repeating a change writes nothing, and that the holder's other settings survive.
async fn ip_rules_lifecycle(mock: &Mock, adapters: &Adapters, at: &IpRulesAt) {
    let rules = target(adapters, at.kind)
        .ip_rules
        .as_ref()
        .unwrap_or_else(|| panic!("{} has IP rules", at.kind));
    let target = arm(&at.target);
    let stored = || async {
        let holder = entry(mock, &at.holder).await;
        let entries = holder
            .pointer(at.pointer)
            .unwrap()
            .as_array()
            .unwrap()
            .clone();
        let values: BTreeSet<String> = entries
            .iter()
            .map(|e| e[at.field].as_str().unwrap().to_string())
            .collect();
        (holder, values)
    };
    let (original, _) = stored().await;
    let apply = |add: &[&str], remove: &[&str]| {
        let (add, remove) = (strings(add), strings(remove));
        let target = &target;
        async move {
            twice(
                mock,
                &format!("{}: +{add:?} -{remove:?}", at.kind),
                || async {
                    rules
                        .apply_ip_rules(&call(), target, &add, &remove)
                        .await
                        .unwrap()
                },
            )
            .await
        }
    };

    apply(&["198.51.100.7"], &[]).await;
    apply(&["20.42.0.1", "203.0.113.0/24"], &["20.42.0.2"]).await;
    let all = strings(&["198.51.100.7", "20.42.0.1", "203.0.113.0/24"]);
    assert_eq!(stored().await.1, all, "{}", at.kind);
    assert_eq!(rules.ip_rules(&call(), &target).await.unwrap(), all);

    apply(&[], &["20.42.0.1", "203.0.113.0/24"]).await;
    let (holder, values) = stored().await;
    assert_eq!(
        values,
        strings(&["198.51.100.7"]),
        "{}: others are kept",
        at.kind
    );
    let default_action = at.pointer.replace("ipRules", "defaultAction");
    assert_eq!(
        holder.pointer(&default_action),
        original.pointer(&default_action),
        "{}: the holder's other settings are kept",
        at.kind
    );
}

#[tokio::test]
async fn ip_rules_are_added_and_removed_keeping_the_others() {
    let mock = start().await;
    let adapters = adapters(&mock);
    let network_rule_set = format!("{}/networkRuleSets/default", demo::SERVICE_BUS_ID);
    let cases = [
        IpRulesAt {
            kind: "storage-blob",
            target: format!("{}/blobServices/default", demo::STORAGE_ACCOUNT_ID),
            holder: demo::STORAGE_ACCOUNT_ID.into(),
            pointer: "/properties/networkAcls/ipRules",
            field: "value",
        },
        IpRulesAt {
            kind: "servicebus",
            target: demo::SERVICE_BUS_ID.into(),
            holder: network_rule_set,
            pointer: "/properties/ipRules",
            field: "ipMask",
        },
        IpRulesAt {
            kind: "keyvault",
            target: demo::KEY_VAULT_ID.into(),
            holder: demo::KEY_VAULT_ID.into(),
            pointer: "/properties/networkAcls/ipRules",
            field: "value",
        },
        IpRulesAt {
            kind: "cosmos-sql",
            target: demo::COSMOS_DATABASE_ID.into(),
            holder: demo::COSMOS_ACCOUNT_ID.into(),
            pointer: "/properties/ipRules",
            field: "ipAddressOrRange",
        },
    ];
    for at in &cases {
        ip_rules_lifecycle(&mock, &adapters, at).await;
    }
}

// ---------------------------------------------------------------------------------------
// Grants

const PRINCIPAL: &str = "6b2f1c7e-0000-4000-8000-000000000001";
const CLIENT: &str = "6b2f1c7e-0000-4000-8000-0000000000c1";
const STRANGER: &str = "6b2f1c7e-0000-4000-8000-000000000002";

fn grantee(principal: &str, user: &str) -> Grantee {
    Grantee {
        principal_id: principal.into(),
        client_id: Some(CLIENT.into()),
        user_name: Some(user.into()),
    }
}

/// Takes a grant through ensure (twice: `rerun` is what the second ensure reports), exists,
/// remove (twice), checking the backend's entry at `stored_at` for `expected` fields.
async fn grant_lifecycle(
    mock: &Mock,
    adapters: &Adapters,
    (grant, name): (&Grant, &str),
    (stored_at, expected): (&str, Value),
    rerun: Ensured,
) {
    let grants = adapters.grants.as_ref();
    let ours = grantee(PRINCIPAL, "aad_web");
    let stranger = grantee(STRANGER, "aad_stranger");
    let exists = |who| async move { grants.grant_exists(&call(), grant, who).await.unwrap() };
    assert!(!exists(&ours).await, "{grant:?} is not there yet");
    assert_eq!(
        grants
            .ensure_grant(&call(), grant, &ours, name)
            .await
            .unwrap(),
        Ensured::Created,
        "{grant:?}"
    );
    assert_fields(&entry(mock, stored_at).await, &expected);
    assert_eq!(
        grants
            .ensure_grant(&call(), grant, &ours, name)
            .await
            .unwrap(),
        rerun,
        "{grant:?} again"
    );
    assert!(exists(&ours).await, "{grant:?}");
    assert!(!exists(&stranger).await, "{grant:?} is not the stranger's");

    grants
        .remove_grant(&call(), grant, &ours, name)
        .await
        .unwrap();
    assert_eq!(mock.resource(stored_at).await, None, "{grant:?} removed");
    assert!(!exists(&ours).await);
    grants
        .remove_grant(&call(), grant, &ours, name)
        .await
        .unwrap();
}

const ASSIGNMENT: &str = "0d2c9a4e-1b3f-4c5d-8e6f-7a8b9c0d1e2f";
/// The documented id of `Storage Blob Data Contributor`.
const BLOB_CONTRIBUTOR: &str = "ba92f5b4-2d11-453d-a403-e96b0029c9fe";

#[tokio::test]
async fn role_assignments_are_ensured_checked_and_removed() {
    let mock = start().await;
    let adapters = adapters(&mock);
    let storage = id(demo::STORAGE_ACCOUNT_ID);
    let role = |role: &str| Grant::Role {
        scope: storage.clone(),
        role: role.into(),
    };
    let contributor = role("Storage Blob Data Contributor");
    let assignment = |name: &str| {
        format!(
            "{}/providers/Microsoft.Authorization/roleAssignments/{name}",
            demo::STORAGE_ACCOUNT_ID
        )
    };
    let expected = json!({"properties": {
        "principalId": PRINCIPAL,
        "scope": demo::STORAGE_ACCOUNT_ID,
        "roleDefinitionId": format!(
            "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{BLOB_CONTRIBUTOR}",
            demo::SUBSCRIPTION_ID
        ),
    }});
    // A rerun under the same name finds the assignment it made: still ours to remove.
    grant_lifecycle(
        &mock,
        &adapters,
        (&contributor, ASSIGNMENT),
        (&assignment(ASSIGNMENT), expected),
        Ensured::Created,
    )
    .await;

    let grants = adapters.grants.as_ref();
    let ours = &grantee(PRINCIPAL, "aad_web");
    let contributor = &contributor;
    let ensure = |name| async move {
        grants
            .ensure_grant(&call(), contributor, ours, name)
            .await
            .unwrap()
    };
    assert_eq!(ensure(ASSIGNMENT).await, Ensured::Created);
    // The same role, principal and scope under another name is someone else's.
    let another = "5e1d7c3b-2a4f-4e6d-9c8b-1a2b3c4d5e6f";
    assert_eq!(ensure(another).await, Ensured::Existed);
    assert_eq!(mock.resource(&assignment(another)).await, None);
    // A role named by its definition id is the same grant; another role is not.
    let exists = |grant| async move { grants.grant_exists(&call(), &grant, ours).await.unwrap() };
    assert!(exists(role(BLOB_CONTRIBUTOR)).await);
    assert!(!exists(role("Reader")).await);
}

#[tokio::test]
async fn database_users_through_the_sql_data_plane() {
    let mock = start().await;
    let adapters = adapters(&mock);
    assert!(adapters.database_users);
    let principals = |holder: &str| format!("{holder}/$principals/aad_web");
    let cases = [
        (
            Dialect::Postgres,
            "demo-pg.postgres.database.azure.com",
            "orders",
            principals(demo::PG_SERVER_ID),
            json!({"objectId": PRINCIPAL, "databasePrivileges": {"orders": ["ALL"]}}),
        ),
        (
            Dialect::Mysql,
            "demo-mysql.mysql.database.azure.com",
            "shop",
            principals(demo::MYSQL_SERVER_ID),
            json!({"identifiedBy": CLIENT, "databasePrivileges": {"shop": ["ALL"]}}),
        ),
        (
            Dialect::Sql,
            "demo-sql.database.windows.net",
            "reports",
            principals(demo::SQL_DATABASE_ID),
            json!({"objectId": PRINCIPAL, "roles": ["db_datareader", "db_datawriter", "db_ddladmin"]}),
        ),
    ];
    for (dialect, host, database, stored_at, expected) in cases {
        let user = Grant::DatabaseUser {
            host: host.into(),
            database: database.into(),
            dialect,
        };
        // A user that exists is reported as such: the caller decides whose it is.
        grant_lifecycle(
            &mock,
            &adapters,
            (&user, "unused"),
            (&stored_at, expected),
            Ensured::Existed,
        )
        .await;
    }

    let mut config = arm_config(&mock);
    config.sql_data_plane = None;
    let without = adapters_with(config);
    assert!(!without.database_users);
    let user = Grant::DatabaseUser {
        host: "demo-pg.postgres.database.azure.com".into(),
        database: "orders".into(),
        dialect: Dialect::Postgres,
    };
    let err = without
        .grants
        .ensure_grant(&call(), &user, &grantee(PRINCIPAL, "aad_web"), "unused")
        .await
        .unwrap_err();
    assert_eq!(err.code, "DatabaseUsersUnsupported");
}

#[tokio::test]
async fn redis_access_policies_and_cosmos_sql_roles() {
    let mock = start().await;
    let adapters = adapters(&mock);
    let policy = Grant::RedisAccessPolicy {
        cache: id(demo::REDIS_ID),
        policy: "Data Owner".into(),
    };
    grant_lifecycle(
        &mock,
        &adapters,
        (&policy, "tetherweb"),
        (
            &format!("{}/accessPolicyAssignments/tetherweb", demo::REDIS_ID),
            json!({"properties": {"accessPolicyName": "Data Owner", "objectId": PRINCIPAL}}),
        ),
        Ensured::Created,
    )
    .await;

    let contributor = "00000000-0000-0000-0000-000000000002";
    let role = Grant::CosmosSqlRole {
        account: id(demo::COSMOS_ACCOUNT_ID),
        role: contributor.into(),
    };
    grant_lifecycle(
        &mock,
        &adapters,
        (&role, ASSIGNMENT),
        (
            &format!("{}/sqlRoleAssignments/{ASSIGNMENT}", demo::COSMOS_ACCOUNT_ID),
            json!({"properties": {
                "principalId": PRINCIPAL,
                "scope": demo::COSMOS_ACCOUNT_ID,
                "roleDefinitionId": format!("{}/sqlRoleDefinitions/{contributor}", demo::COSMOS_ACCOUNT_ID),
            }}),
        ),
        Ensured::Created,
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Key Vault secrets

#[tokio::test]
async fn vault_secrets_are_put_versioned_and_removed() {
    let mock = start().await;
    let adapters = adapters(&mock);
    let vault = adapters.vault.as_ref();
    let kv = id(demo::KEY_VAULT_ID);
    let secret_id = format!("{}/secrets/db-password", demo::KEY_VAULT_ID);
    let held = || async { entry(&mock, &format!("{secret_id}/$secret")).await };

    let uri = vault
        .put_secret(&call(), &kv, "db-password", "pw-1")
        .await
        .unwrap();
    assert_eq!(uri, "https://demo-kv.vault.azure.net/secrets/db-password");
    assert_eq!(
        entry(&mock, &secret_id).await["properties"]["secretUri"],
        uri.as_str()
    );
    let first = held().await;
    assert_eq!(first["value"], "pw-1");

    let again = vault
        .put_secret(&call(), &kv, "db-password", "pw-1")
        .await
        .unwrap();
    assert_eq!(
        (again.as_str(), held().await),
        (uri.as_str(), first.clone()),
        "same value, same version"
    );
    vault
        .put_secret(&call(), &kv, "db-password", "pw-2")
        .await
        .unwrap();
    let second = held().await;
    assert_eq!(second["value"], "pw-2");
    assert_ne!(
        second["version"], first["version"],
        "a new value is a new version"
    );

    vault
        .remove_secret(&call(), &kv, "db-password")
        .await
        .unwrap();
    assert_eq!(mock.resource(&secret_id).await, None);
    assert_eq!(mock.resource(&format!("{secret_id}/$secret")).await, None);
    vault
        .remove_secret(&call(), &kv, "db-password")
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// The ARM client: retries, throttling, tokens, hostile backends

#[tokio::test]
async fn transient_failures_are_retried_and_permanent_ones_are_not() {
    let mock = start().await;
    let adapters = adapters(&mock);
    mock.fault(json!({"method": "GET", "path": "**/sites/demo-web", "count": 2, "action": {"fail": {"status": 503}}}))
        .await;
    web_app_facts(&adapters).await.unwrap();
    let gets = mock
        .calls()
        .await
        .iter()
        .filter(|c| c["method"] == "GET")
        .count();
    assert_eq!(gets, 3);

    mock.fault(json!({"method": "GET", "path": "**/sites/demo-web", "count": 1, "action": {"fail": {"status": 400, "code": "BadThing"}}}))
        .await;
    let err = web_app_facts(&adapters).await.unwrap_err();
    assert_eq!(
        (err.kind, err.code.as_str(), err.status),
        (ErrorKind::BadRequest, "BadThing", Some(400))
    );

    mock.fault(json!({"method": "GET", "path": "**/sites/demo-web", "count": 10, "action": {"fail": {"status": 500}}}))
        .await;
    let err = web_app_facts(&adapters).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}

/// Makes the next `GET` of a site answer 429 with `Retry-After: seconds`.
async fn throttle_next_site_read(mock: &Mock, seconds: u64) {
    mock.fault(json!({"method": "GET", "path": "**/sites/*", "count": 1,
        "action": {"throttle": {"retryAfter": seconds}}}))
        .await;
}

#[tokio::test]
async fn throttling_honours_retry_after() {
    let mock = start().await;
    let adapters = adapters(&mock);
    throttle_next_site_read(&mock, 1).await;
    let started = Instant::now();
    web_app_facts(&adapters).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));

    // A Retry-After longer than we wait within one call is handed back to the caller.
    throttle_next_site_read(&mock, 60).await;
    let err = web_app_facts(&adapters).await.unwrap_err();
    assert_eq!(
        (err.kind, err.retry_after),
        (ErrorKind::Throttled, Some(Duration::from_secs(60)))
    );
}

#[tokio::test]
async fn an_absurd_retry_after_is_capped_not_obeyed() {
    let mock = start().await;
    let adapters = adapters(&mock);
    throttle_next_site_read(&mock, u64::MAX).await;
    let started = Instant::now();
    let err = web_app_facts(&adapters).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "no waiting");
    assert_eq!(err.kind, ErrorKind::Throttled);
    assert_eq!(err.retry_after, Some(Duration::from_secs(3600)));
}

#[tokio::test]
async fn tokens_are_cached_and_refreshed_after_a_401() {
    let mock = start().await;
    let adapters = adapters(&mock);
    web_app_facts(&adapters).await.unwrap();
    web_app_facts(&adapters).await.unwrap();
    let token_calls = |calls: &[Value]| {
        calls
            .iter()
            .filter(|c| c["path"].as_str().unwrap().contains("oauth2"))
            .count()
    };
    assert_eq!(token_calls(&mock.calls().await), 1, "the token is cached");
    mock.revoke_tokens().await;
    web_app_facts(&adapters).await.unwrap();
    assert_eq!(
        token_calls(&mock.calls().await),
        2,
        "a 401 fetches a new token once"
    );
}

#[tokio::test]
async fn bad_credentials_are_a_permanent_error() {
    let mock = start().await;
    let mut config = arm_config(&mock);
    config.client_secret = "wrong".to_string().into();
    let err = web_app_facts(&adapters_with(config)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    assert!(
        !err.to_string().contains("wrong"),
        "the secret never appears in errors"
    );
}

#[tokio::test]
async fn a_slow_backend_fails_in_our_words_without_its_url() {
    let mock = start().await;
    // The mock's first token waits for its signing key (generated once per process): get one
    // with the default timeout so that the short one below applies to the ARM call only.
    web_app_facts(&adapters(&mock)).await.unwrap();
    let mut config = arm_config(&mock);
    config.request_timeout = Duration::from_secs(1);
    config.max_retries = 0;
    let adapters = adapters_with(config);
    web_app_facts(&adapters).await.unwrap();
    mock.fault(json!({"method": "GET", "path": "**/sites/*", "count": 1,
        "action": {"delay": {"ms": 5000}}}))
        .await;
    let err = web_app_facts(&adapters).await.unwrap_err();
    assert_eq!(
        (err.kind, err.code.as_str()),
        (ErrorKind::Transport, "BackendTimeout")
    );
    let shown = err.to_string();
    assert!(
        !shown.contains("http://") && !shown.contains("127.0.0.1"),
        "{shown}"
    );
}

/// A raw HTTP/1.1 response with a JSON body.
fn http_response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A backend that answers every request with `response`, for shapes the mock does not
/// produce. Returns its base URL.
async fn raw_backend(response: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(&response).await;
            });
        }
    });
    url
}

#[tokio::test]
async fn oversized_and_hostile_responses_are_refused_safely() {
    let huge = format!("{{\"access_token\":\"{}\"}}", "x".repeat(20 * 1024 * 1024));
    let url = raw_backend(http_response("200 OK", &huge)).await;
    let mut config = arm_config(&start().await);
    config.endpoint = url.parse().unwrap();
    config.authority = url.parse().unwrap();
    config.max_retries = 0;
    let err = web_app_facts(&adapters_with(config.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.code, "ResponseTooLarge", "{err}");

    // An error body with a URL and control characters in its message, and an endless
    // expires_in: the message is scrubbed, nothing overflows.
    let hostile =
        "{\"error\":{\"code\":\"Nope\",\"message\":\"see http://10.1.2.3/internal \\u0007now\"}}";
    let url = raw_backend(http_response("400 Bad Request", hostile)).await;
    config.endpoint = url.parse().unwrap();
    let token = "{\"access_token\":\"t\",\"expires_in\":18446744073709551615}";
    let authority = raw_backend(http_response("200 OK", token)).await;
    config.authority = authority.parse().unwrap();
    let err = web_app_facts(&adapters_with(config)).await.unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.message.as_str()),
        ("Nope", "see <url> now")
    );
}
