use std::collections::BTreeSet;

use serde_json::Value;

use super::*;
use crate::catalog::{TargetKind, catalog};

fn pg() -> &'static TargetKind {
    catalog().unwrap().target("postgres-flexible").unwrap()
}

fn request<'a>(
    client: ClientType,
    naming: &'a KeyNaming,
    info: Option<&'a ConfigurationInfo>,
) -> Request<'a> {
    Request {
        target: pg(),
        auth: AuthType::Secret,
        client,
        naming,
        info,
    }
}

fn facts(password: &str) -> Facts {
    let mut f = Facts::new();
    f.set("host", "pgsrv.postgres.database.azure.com");
    f.set("port", "5432");
    f.set("database", "ordersdb");
    f.set("server", "pgsrv");
    f.set("user", "appuser");
    f.set_secret("password", password);
    f
}

fn matrix() -> Value {
    serde_json::from_str(include_str!("../../data/connection-matrix.json")).unwrap()
}

/// The matrix's examples keep the documentation's placeholders (sometimes misspelled);
/// replace them with the concrete values our renderer gets.
fn concrete(example: &str) -> String {
    [
        (
            "<PostgreSQL-server-name>.postgres.database.azure.com",
            "pgsrv.postgres.database.azure.com",
        ),
        (
            "<your-postgres-server-name>.postgres.database.azure.com",
            "pgsrv.postgres.database.azure.com",
        ),
        ("<database-name>", "ordersdb"),
        ("<username>", "appuser"),
        ("<database-password>", "pw"),
        ("<password>", "pw"),
    ]
    .iter()
    .fold(example.to_string(), |s, (from, to)| s.replace(from, to))
}

#[test]
fn postgres_secret_keys_and_values_match_the_matrix() {
    let m = matrix();
    let cells = m["targets"]["postgres-flexible"]["configurations"]["secret"]
        .as_object()
        .unwrap();
    let mut checked = 0;
    for client in pg().client_types(AuthType::Secret) {
        let documented = cells
            .get(client.as_str())
            .or_else(|| cells.get("*"))
            .unwrap();
        let ours = request(client, &KeyNaming::Plain, None)
            .render(&facts("pw"), Reveal::Secrets)
            .unwrap();
        let want: BTreeSet<_> = documented
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        let got: BTreeSet<_> = ours.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(got, want, "key names for {client:?}");
        for doc in documented.as_array().unwrap() {
            let name = doc["name"].as_str().unwrap();
            let mut expected = concrete(doc["example"].as_str().unwrap());
            if client == ClientType::Dotnet {
                // The matrix notes that the newest doc omits the password a real secret
                // connection needs; we append it in ADO.NET syntax.
                assert!(
                    doc["note"]
                        .as_str()
                        .unwrap()
                        .contains("Password=<password>")
                );
                expected.push_str("Password=pw;");
            }
            let entry = ours.iter().find(|e| e.name == name).unwrap();
            assert_eq!(entry.value, expected, "value of {name} for {client:?}");
        }
        checked += 1;
    }
    assert_eq!(
        checked, 10,
        "every documented client type of postgres-flexible"
    );
}

#[test]
fn further_connections_carry_the_connection_name() {
    let naming = KeyNaming::named("orders-ro");
    let names = request(ClientType::Python, &naming, None)
        .key_names()
        .unwrap();
    assert_eq!(names, vec!["AZURE_POSTGRESQL_ORDERS_RO_CONNECTIONSTRING"]);
    // Spring property names are never prefixed.
    let names = request(ClientType::SpringBoot, &naming, None)
        .key_names()
        .unwrap();
    assert!(names.contains(&"spring.datasource.url".to_string()));
}

#[test]
fn values_are_escaped_for_their_syntax() {
    let tricky = "p@ss word;'\"\\=&";
    let render = |client| {
        request(client, &KeyNaming::Plain, None)
            .render(&facts(tricky), Reveal::Secrets)
            .unwrap()
            .remove(0)
            .value
    };
    assert!(
        render(ClientType::Python).ends_with(r#"password='p@ss word;\'"\\=&'"#),
        "{}",
        render(ClientType::Python)
    );
    assert!(
        render(ClientType::Dotnet).ends_with(r#"Password="p@ss word;'""\=&";"#),
        "{}",
        render(ClientType::Dotnet)
    );
    assert!(
        render(ClientType::Java).ends_with("password=p%40ss%20word%3B%27%22%5C%3D%26"),
        "{}",
        render(ClientType::Java)
    );
}

#[test]
fn redaction_hides_the_secret() {
    let entries = request(ClientType::Python, &KeyNaming::Plain, None)
        .render(&facts("pw"), Reveal::Redact)
        .unwrap();
    assert!(entries[0].value.ends_with("password=<redacted>"));
    assert!(!entries[0].holds_secret);
    let jdbc = request(ClientType::Java, &KeyNaming::Plain, None)
        .render(&facts("pw"), Reveal::Redact)
        .unwrap();
    assert!(
        jdbc[0].value.ends_with("&password=<redacted>"),
        "the marker is not escaped: {}",
        jdbc[0].value
    );
    let revealed = request(ClientType::Python, &KeyNaming::Plain, None)
        .render(&facts("pw"), Reveal::Secrets)
        .unwrap();
    assert!(revealed[0].holds_secret);
    assert!(!format!("{revealed:?}").contains("pw"));
}

#[test]
fn a_missing_fact_is_an_error_not_a_panic() {
    let mut partial = Facts::new();
    partial.set("host", "h");
    let err = request(ClientType::Python, &KeyNaming::Plain, None)
        .render(&partial, Reveal::Secrets)
        .unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::Internal);
}

#[test]
fn configuration_info_renames_appends_and_adds() {
    let info = ConfigurationInfo {
        customized_keys: Some(
            [("AZURE_POSTGRESQL_CONNECTIONSTRING".into(), "DB_URL".into())].into(),
        ),
        additional_configurations: Some([("FEATURE_X".into(), "on".into())].into()),
        additional_connection_string_properties: Some(
            [("connect_timeout".into(), "10".into())].into(),
        ),
        ..Default::default()
    };
    let entries = request(ClientType::Python, &KeyNaming::Plain, Some(&info))
        .render(&facts("pw"), Reveal::Secrets)
        .unwrap();
    assert_eq!(entries[0].name, "DB_URL");
    assert!(entries[0].value.ends_with("password=pw connect_timeout=10"));
    assert_eq!(
        (entries[1].name.as_str(), entries[1].value.as_str()),
        ("FEATURE_X", "on")
    );
    assert_eq!(
        request(ClientType::Python, &KeyNaming::Plain, Some(&info))
            .key_names()
            .unwrap(),
        ["DB_URL", "FEATURE_X"]
    );
}

#[test]
fn configuration_info_errors_are_client_errors() {
    let bad_rename = ConfigurationInfo {
        customized_keys: Some([("NOT_GENERATED".into(), "X".into())].into()),
        ..Default::default()
    };
    let collision = ConfigurationInfo {
        additional_configurations: Some(
            [("AZURE_POSTGRESQL_CONNECTIONSTRING".into(), "x".into())].into(),
        ),
        ..Default::default()
    };
    let bad_name = ConfigurationInfo {
        additional_configurations: Some([("has space".into(), "x".into())].into()),
        ..Default::default()
    };
    for info in [bad_rename, collision, bad_name] {
        let err = request(ClientType::Python, &KeyNaming::Plain, Some(&info))
            .key_names()
            .unwrap_err();
        assert_eq!(err.code(), "InvalidParameter", "{err:?}");
    }
}
