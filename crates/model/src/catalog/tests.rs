//! The catalogue against the matrix: every documented entry of a supported kind is a template
//! that renders, under the documented key name, from facts its kind declares.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;
use crate::configuration::{KeyNaming, Request, Reveal};
use crate::facts::Facts;

fn matrix() -> Value {
    serde_json::from_str(include_str!("../../data/connection-matrix.json")).unwrap()
}

/// Every fact a template could use, each a distinct marker without special characters.
fn markers() -> Facts {
    let mut facts = Facts::new();
    for name in [
        "host",
        "port",
        "database",
        "server",
        "endpoint",
        "account",
        "namespace",
        "vaultUri",
        "subscription",
        "resourceGroup",
        "user",
        "principalId",
        "clientId",
        "tenantId",
    ] {
        facts.set(name, format!("M{name}"));
    }
    for name in ["password", "clientSecret", "key", "keyName", "keyId"] {
        facts.set_secret(name, format!("S{name}"));
    }
    facts
}

#[test]
fn the_catalogue_loads() {
    let c = catalog().unwrap();
    assert!(c.targets.len() >= 14, "{}", c.targets.len());
    assert_eq!(c.sources.len(), 2);
}

#[test]
fn every_documented_entry_of_a_supported_kind_renders_under_its_key() {
    let m = matrix();
    let c = catalog().unwrap();
    let mut rendered = 0;
    for t in &c.targets {
        let documented = &m["targets"][&t.matrix]["configurations"];
        for cell in &t.cells {
            let request = Request {
                target: t,
                auth: cell.auth,
                client: cell.client,
                naming: &KeyNaming::Plain,
                info: None,
            };
            let entries = request
                .render(&markers(), Reveal::Secrets)
                .unwrap_or_else(|e| panic!("{} {:?} {:?}: {e:?}", t.name, cell.auth, cell.client));
            let by_client = &documented[cell.auth.as_str()];
            let doc = by_client
                .get(cell.client.as_str())
                .or_else(|| by_client.get("*"))
                .unwrap();
            let want: BTreeSet<&str> = doc
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap())
                .filter(|name| {
                    // Confluent's entry holds two endpoints' keys; each kind takes its own.
                    t.matrix != "confluent-cloud"
                        || t.prefixes
                            .iter()
                            .any(|p| name.starts_with(&format!("{p}_")))
                        || cell
                            .entries
                            .iter()
                            .any(|e| e.key == Key::Exact(name.to_string()))
                })
                .collect();
            let got: BTreeSet<&str> = entries.iter().map(|e| e.name.as_str()).collect();
            assert_eq!(got, want, "{} {:?} {:?}", t.name, cell.auth, cell.client);
            for e in &entries {
                assert!(
                    !e.value.contains(['<', '>']),
                    "{} {:?} {:?} {}: a placeholder is left in '{}'",
                    t.name,
                    cell.auth,
                    cell.client,
                    e.name,
                    e.value
                );
                rendered += 1;
            }
        }
    }
    assert!(rendered > 500, "{rendered} entries rendered");
}

#[test]
fn templates_use_only_facts_their_kind_declares() {
    for t in &catalog().unwrap().targets {
        for cell in &t.cells {
            let declared = t.facts_with(cell.auth);
            for template in &cell.entries {
                for fact in template.facts() {
                    assert!(
                        declared.contains(&fact),
                        "{} {:?} {:?}: '{fact}' is not declared ({declared:?})",
                        t.name,
                        cell.auth,
                        cell.client
                    );
                }
            }
        }
    }
}

#[test]
fn secret_cells_carry_the_secret() {
    // A password connection writes its password; a keyed one its key.
    for t in &catalog().unwrap().targets {
        let secret_fact = match t.secret {
            SecretSource::Caller if t.matrix == "redis" => "key",
            SecretSource::Caller => "password",
            SecretSource::Keys => "key",
            SecretSource::None => continue,
        };
        for cell in t.cells.iter().filter(|c| c.auth == AuthType::Secret) {
            assert!(
                cell.entries
                    .iter()
                    .any(|e| e.facts().any(|f| f == secret_fact)),
                "{} {:?}: no entry carries the {secret_fact}",
                t.name,
                cell.client
            );
        }
    }
}

#[test]
fn auth_types_follow_the_matrix_per_source() {
    let m = matrix();
    let c = catalog().unwrap();
    let pg = c.target("postgres-flexible").unwrap();
    assert_eq!(
        pg.auth_types("webapp"),
        [
            AuthType::Secret,
            AuthType::SystemAssignedIdentity,
            AuthType::UserAssignedIdentity,
            AuthType::ServicePrincipalSecret
        ]
    );
    let blob = c.target("storage-blob").unwrap();
    assert_eq!(
        blob.auth_types("containerapp")[0],
        AuthType::SystemAssignedIdentity
    );
    assert!(blob.auth_types("webapp").contains(&AuthType::AccessKey));
    assert!(!pg.auth_types("webapp").contains(&AuthType::AccessKey));
    let kv = c.target("keyvault").unwrap();
    assert!(!kv.auth_types("webapp").contains(&AuthType::Secret));
    // Functions apps are sites too: their lists must equal the web apps'.
    for t in &c.targets {
        let entry = &m["targets"][&t.matrix]["supported_auth_types_cli"];
        assert_eq!(entry["webapp"], entry["functionapp"], "{}", t.name);
    }
    let self_hosted = c.target("self-hosted-postgres").unwrap();
    assert_eq!(self_hosted.auth_types("webapp"), [AuthType::Secret]);
}

#[test]
fn kinds_are_found_by_id_type_and_endpoint() {
    let c = catalog().unwrap();
    let id = |s: &str| ResourceId::parse(s).unwrap();
    let site = id(
        "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/microsoft.web/Sites/app",
    );
    assert_eq!(c.source_for(&site).unwrap().name, "webapp");
    assert!(c.target_for_id(&site).is_none());
    let blob = id(
        "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a/blobServices/default",
    );
    assert_eq!(c.target_for_id(&blob).unwrap().name, "storage-blob");
    let pg = c
        .target_for_endpoint(
            ServiceType::SelfHostedServer,
            "PostgreSQL://db.example:5433/app",
        )
        .unwrap();
    assert_eq!(pg.name, "self-hosted-postgres");
    assert!(
        c.target_for_endpoint(ServiceType::SelfHostedServer, "ftp://x")
            .is_none()
    );
    assert_eq!(
        c.target_for_endpoint(
            ServiceType::ConfluentSchemaRegistry,
            "https://psrc-1.confluent.cloud"
        )
        .unwrap()
        .name,
        "confluent-schema-registry"
    );
}

#[test]
fn malformed_data_is_an_error_not_a_panic() {
    let m = include_str!("../../data/connection-matrix.json");
    assert!(load::build("{", "").is_err());
    assert!(load::build(m, "[[target]]\nname = 1").is_err());
    let unknown_fact = r#"
[[source]]
name = "webapp"
resource_type = "Microsoft.Web/sites"
api_version = "x"
settings = "appSettings"
[[target]]
name = "redis"
secret = "keys"
facts = { host = "@nowhere" }
"#;
    let err = load::build(m, unknown_fact).unwrap_err();
    assert!(err.contains("@nowhere"), "{err}");
    let leftover = unknown_fact.replace("@nowhere", "/properties/hostName");
    let err = load::build(m, &leftover).unwrap_err();
    assert!(err.contains("placeholder"), "{err}");
}

#[test]
fn the_connections_document_is_rendered_from_the_catalogue() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/connections.md");
    let rendered = coverage::render(catalog().unwrap());
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(path, &rendered).unwrap();
    }
    let current = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        current == rendered,
        "docs/connections.md is out of date: run `UPDATE_DOCS=1 cargo test -p tether-model`"
    );
}
