//! Every cell of the catalogue, end to end: for each target kind, auth type the matrix lists
//! from the source, and client type, a connection is created against the mock, its written
//! keys compared with the matrix and its values with the matrix's documented shapes, its side
//! effects (identity, grants, rules) checked in the mock's state, and its delete must leave
//! the mock exactly as it was. The cells come from the catalogue, so a new kind or client is
//! tested without touching this file (beyond naming a demo resource for a new kind).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use tether_mock_azure::demo;
use tether_model::catalog::{
    IdentityGrant, Network, SecretSource, ServiceType, TargetKind, catalog,
};
use tether_model::linker::{AuthType, ClientType};
use tether_test_utils::{Api, Backend, TestEnv};

use crate::support::{changed, comparable, env};

const NAME: &str = "cell";
pub(crate) const PASSWORD: &str = "Cell-Pa55word-1f9e";
const SP_CLIENT: &str = "6c1d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f";
const SP_PRINCIPAL: &str = "2b3c4d5e-6f70-4812-9a3b-4c5d6e7f8091";
pub(crate) const SP_SECRET: &str = "sp-Secret-for-cells-77ab";
const VAULT_REFERENCE: &str = "https://demo-kv.vault.azure.net/secrets/db-password";

/// The demo resource (or endpoint) each target kind connects to.
fn demo_target(kind: &TargetKind) -> Value {
    let id = match kind.name.as_str() {
        "postgres-flexible" => demo::PG_DATABASE_ID.to_string(),
        "mysql-flexible" => demo::MYSQL_DATABASE_ID.to_string(),
        "sql" => demo::SQL_DATABASE_ID.to_string(),
        "storage-blob" => format!("{}/blobServices/default", demo::STORAGE_ACCOUNT_ID),
        "storage-queue" => format!("{}/queueServices/default", demo::STORAGE_ACCOUNT_ID),
        "keyvault" => demo::KEY_VAULT_ID.to_string(),
        "servicebus" => demo::SERVICE_BUS_ID.to_string(),
        "redis" => format!("{}/databases/0", demo::REDIS_ID),
        "cosmos-sql" => demo::COSMOS_DATABASE_ID.to_string(),
        "appconfig" => demo::APP_CONFIG_ID.to_string(),
        other => {
            let (service, endpoint) = match other {
                "confluent-bootstrap-server" => (
                    "ConfluentBootstrapServer",
                    "pkc-demo.eastus.azure.confluent.cloud:9092",
                ),
                "confluent-schema-registry" => (
                    "ConfluentSchemaRegistry",
                    "https://psrc-demo.westus2.azure.confluent.cloud",
                ),
                "self-hosted-postgres" => {
                    ("SelfHostedServer", "postgresql://db.internal:5432/orders")
                }
                "self-hosted-mysql" => ("SelfHostedServer", "mysql://db.internal:3306/shop"),
                "self-hosted-redis" => ("SelfHostedServer", "rediss://cache.internal:6380/0"),
                _ => panic!("name a demo resource for the catalogue kind '{other}' in this test"),
            };
            return json!({"type": service, "endpoint": endpoint});
        }
    };
    json!({"type": "AzureResource", "id": id})
}

/// The resource a kind's facts, rules and grants live on (lower-cased, as the mock keys it).
fn home(kind: &TargetKind) -> Option<String> {
    let id = demo_target(kind)["id"].as_str()?.to_ascii_lowercase();
    Some(match kind.resource {
        tether_model::catalog::ResourceAt::Target => id,
        tether_model::catalog::ResourceAt::Parent => {
            id.rsplitn(3, '/').nth(2).unwrap_or_default().to_string()
        }
    })
}

/// One cell.
pub(crate) struct Cell {
    pub source: &'static str,
    pub kind: &'static TargetKind,
    pub auth: AuthType,
    pub client: ClientType,
    /// A Key Vault reference instead of the password.
    pub reference: bool,
}

impl Cell {
    pub fn label(&self) -> String {
        format!(
            "{} -> {} {} {}{}",
            self.source.rsplit('/').next().unwrap_or_default(),
            self.kind.name,
            self.auth.as_str(),
            self.client.as_str(),
            if self.reference {
                " (Key Vault reference)"
            } else {
                ""
            }
        )
    }

    pub fn properties(&self, identity_client_id: &str) -> Value {
        let auth = match self.auth {
            AuthType::Secret if self.kind.secret == SecretSource::Keys => {
                json!({"authType": "secret"})
            }
            AuthType::Secret if self.reference => json!({
                "authType": "secret", "name": "appuser",
                "secretInfo": {"secretType": "keyVaultSecretUri", "value": VAULT_REFERENCE},
            }),
            AuthType::Secret => json!({
                "authType": "secret", "name": "appuser",
                "secretInfo": {"secretType": "rawValue", "value": PASSWORD},
            }),
            AuthType::AccessKey => json!({"authType": "accessKey"}),
            AuthType::SystemAssignedIdentity => json!({"authType": "systemAssignedIdentity"}),
            AuthType::UserAssignedIdentity => {
                json!({"authType": "userAssignedIdentity", "clientId": identity_client_id})
            }
            AuthType::ServicePrincipalSecret => json!({
                "authType": "servicePrincipalSecret", "clientId": SP_CLIENT,
                "principalId": SP_PRINCIPAL, "secret": SP_SECRET,
            }),
            other => panic!("no request for auth type {other:?} in this test"),
        };
        let mut properties = json!({
            "targetService": demo_target(self.kind),
            "authInfo": auth,
            "clientType": self.client.as_str(),
        });
        if self.kind.has_network() {
            properties["vNetSolution"] = json!({"type": "firewall"});
        }
        properties
    }

    /// The keys the matrix documents for the cell.
    pub fn documented(&self, matrix: &Value) -> BTreeMap<String, String> {
        let auth = match self.auth {
            AuthType::AccessKey => AuthType::Secret,
            other => other,
        };
        let by_client = &matrix["targets"][&self.kind.matrix]["configurations"][auth.as_str()];
        let entries = by_client
            .get(self.client.as_str())
            .or_else(|| by_client.get("*"))
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("{}: the matrix documents no entries", self.label()));
        let own = |name: &str| {
            // Confluent's entry holds both endpoints' keys; each kind writes its own.
            self.kind.matrix != "confluent-cloud"
                || self
                    .kind
                    .prefixes
                    .iter()
                    .any(|p| name.starts_with(&format!("{p}_")))
                || self
                    .kind
                    .templates(auth, self.client)
                    .unwrap_or_default()
                    .iter()
                    .any(|t| t.key == tether_model::catalog::Key::Exact(name.to_string()))
        };
        entries
            .iter()
            .filter_map(|e| {
                Some((
                    e["name"].as_str()?.to_string(),
                    e["example"].as_str().unwrap_or_default().to_string(),
                ))
            })
            .filter(|(name, _)| own(name))
            .collect()
    }

    /// The grants an identity of this cell gets, as id fragments of the mock's resources.
    fn grant_marks(&self) -> Vec<&'static str> {
        let identity = matches!(
            self.auth,
            AuthType::SystemAssignedIdentity
                | AuthType::UserAssignedIdentity
                | AuthType::ServicePrincipalSecret
        );
        if !identity {
            return Vec::new();
        }
        self.kind
            .identity
            .iter()
            .map(|g| match g {
                IdentityGrant::Role { .. } => "/providers/microsoft.authorization/roleassignments/",
                IdentityGrant::DatabaseUser { .. } => "/$principals/",
                IdentityGrant::RedisAccessPolicy { .. } => "/accesspolicyassignments/",
                IdentityGrant::CosmosSqlRole { .. } => "/sqlroleassignments/",
            })
            .collect()
    }
}

/// Every cell from `source` (a catalogue source kind at a demo resource), each client type
/// when `all_clients`, else the kind's default client.
pub(crate) fn cells(source: &'static str, source_kind: &str, all_clients: bool) -> Vec<Cell> {
    let mut cells = Vec::new();
    for kind in &catalog().unwrap().targets {
        for &auth in kind.auth_types(source_kind) {
            let clients: Vec<ClientType> = kind.client_types(auth).collect();
            let chosen = if all_clients {
                clients.clone()
            } else {
                clients[..1].to_vec()
            };
            for client in chosen {
                cells.push(Cell {
                    source,
                    kind,
                    auth,
                    client,
                    reference: false,
                });
            }
            let whole_password = kind.templates(auth, ClientType::None).is_some_and(|ts| {
                ts.iter()
                    .any(|t| t.segments.len() == 1 && t.facts().eq(["password"]))
            });
            if auth == AuthType::Secret && kind.secret == SecretSource::Caller && whole_password {
                cells.push(Cell {
                    source,
                    kind,
                    auth,
                    client: ClientType::None,
                    reference: true,
                });
            }
        }
    }
    cells
}

/// The literal structure of a documented value (what is left around its placeholders, quotes
/// dropped), which the written value must contain in order. A placeholder followed by a
/// domain (`<server>.postgres.database.azure.com`) is a host name as a whole.
fn structure(example: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut depth = 0;
    let mut host = false;
    let mut chars = example.chars().peekable();
    while let Some(c) = chars.next() {
        if host && (c.is_ascii_alphanumeric() || c == '.' || c == '-') {
            continue;
        }
        host = false;
        match c {
            '<' | '{' => {
                depth += 1;
                pieces.push(std::mem::take(&mut current));
            }
            '>' | '}' if depth > 0 => {
                depth -= 1;
                host = depth == 0 && chars.peek() == Some(&'.');
            }
            // A placeholder whose `<` the document dropped: it began after the last
            // structural character.
            '>' => {
                let keep = current
                    .rfind(['/', '=', ';', ':', '@', '?', '&'])
                    .map_or(0, |i| i + 1);
                current.truncate(keep);
                pieces.push(std::mem::take(&mut current));
                host = chars.peek() == Some(&'.');
            }
            '"' => {}
            _ if depth == 0 => current.push(c),
            _ => {}
        }
    }
    pieces.push(current);
    pieces
        .into_iter()
        .filter(|p| p.len() >= 2 && p.contains(['=', ';', ':', '/', '@', '?', '&']))
        .collect()
}

fn has_structure(value: &str, example: &str) -> bool {
    let mut rest = value;
    structure(example)
        .iter()
        .all(|piece| match rest.find(piece.as_str()) {
            Some(at) => {
                rest = &rest[at + piece.len()..];
                true
            }
            None => false,
        })
}

/// The source's configuration as written: name → value (a container app's secret settings
/// resolved through their `secretRef`), and which are secret references.
async fn written(env: &TestEnv, source: &str) -> BTreeMap<String, (String, bool)> {
    if source.contains("/Microsoft.Web/sites/") {
        return env
            .mock
            .app_settings(source)
            .await
            .into_iter()
            .map(|(k, v)| (k, (v, false)))
            .collect();
    }
    let state = env.mock.state().await;
    let app = &state[&source.to_ascii_lowercase()];
    // Secret values are kept aside, as ARM returns them only through `listSecrets`.
    let values = &state
        .get(&format!("{}/$secret", source.to_ascii_lowercase()))
        .map_or(Value::Null, |s| s["values"].clone());
    let secrets: BTreeMap<&str, &Value> = app["properties"]["configuration"]["secrets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["name"].as_str()?, s)))
        .collect();
    let mut settings = BTreeMap::new();
    for e in app["properties"]["template"]["containers"][0]["env"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = e["name"].as_str().unwrap().to_string();
        let entry = match e["secretRef"].as_str() {
            Some(r) => {
                let secret = secrets
                    .get(r)
                    .unwrap_or_else(|| panic!("{name}: no secret '{r}'"));
                let value = values[r].as_str().or(secret["keyVaultUrl"].as_str());
                (value.unwrap_or_default().to_string(), true)
            }
            None => (e["value"].as_str().unwrap_or_default().to_string(), false),
        };
        settings.insert(name, entry);
    }
    settings
}

/// Runs one cell: create, check, delete, compare.
async fn run(env: &TestEnv, api: &Api, matrix: &Value, identity_client_id: &str, cell: &Cell) {
    let label = cell.label();
    // `accessKey` and `SelfHostedServer` came with 2024-04-01.
    let newer =
        cell.auth == AuthType::AccessKey || cell.kind.service_type == ServiceType::SelfHostedServer;
    let api = &if newer {
        api.version("2024-07-01-preview")
    } else {
        api.clone()
    };
    let before = comparable(env.mock.state().await);
    let reply = api
        .put_linker(cell.source, NAME, cell.properties(identity_client_id))
        .await;
    assert!(
        reply.status == 200 || reply.status == 201,
        "{label}: {}",
        reply.text
    );
    let done = api.wait(&reply).await;
    assert_eq!(done["status"], "Succeeded", "{label}: {done}");
    let after = comparable(env.mock.state().await);

    // The written keys are the matrix's, each value shaped like its documented example.
    let documented = cell.documented(matrix);
    let settings = written(env, cell.source).await;
    let mine: BTreeMap<&String, &(String, bool)> = settings
        .iter()
        .filter(|(k, _)| documented.contains_key(*k))
        .collect();
    assert_eq!(
        mine.keys().copied().collect::<Vec<_>>(),
        documented.keys().collect::<Vec<_>>(),
        "{label}: the written keys are not the documented ones"
    );
    for (key, (value, _)) in &mine {
        let example = &documented[*key];
        assert!(!value.is_empty(), "{label}: {key} is empty");
        if cell.reference && value.starts_with("@Microsoft.KeyVault(") {
            assert_eq!(
                value,
                &format!("@Microsoft.KeyVault(SecretUri={VAULT_REFERENCE})")
            );
            continue;
        }
        assert!(
            has_structure(value, example),
            "{label}: {key} = '{value}' is not shaped like the documented '{example}'"
        );
    }
    let listed = api.list_configurations(cell.source, NAME).await;
    assert_eq!(listed.status, 200, "{label}: {}", listed.text);
    let listed: BTreeSet<&str> = listed.body["configurations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        listed,
        documented.keys().map(String::as_str).collect(),
        "{label}: listConfigurations"
    );

    // Side effects: the source (settings, identity), the target's home (rules, ACLs, keys
    // untouched), grants; nothing else.
    let touched = changed(&before, &after);
    let source = cell.source.to_ascii_lowercase();
    let home = home(cell.kind);
    for mark in cell.grant_marks() {
        assert!(
            touched.iter().any(|id| id.contains(mark)),
            "{label}: no grant like {mark}"
        );
    }
    if cell.kind.has_network() {
        let rules = match &cell.kind.network {
            Some(Network::FirewallRules { .. }) => "/firewallrules/tether",
            _ => home.as_deref().unwrap_or_default(),
        };
        assert!(
            touched.iter().any(|id| id.contains(rules)),
            "{label}: no network rule"
        );
    }
    let expected = |id: &String| {
        id.starts_with(&source)
            || home.as_deref().is_some_and(|h| id.starts_with(h))
            || cell.grant_marks().iter().any(|m| id.contains(m))
    };
    let stray: Vec<&String> = touched.iter().filter(|id| !expected(id)).collect();
    assert!(stray.is_empty(), "{label}: unexpected writes to {stray:?}");

    let reply = api.delete_linker(cell.source, NAME).await;
    if reply.status == 202 {
        let done = api.wait(&reply).await;
        assert_eq!(done["status"], "Succeeded", "{label}: delete {done}");
    }
    let end = comparable(env.mock.state().await);
    let left = changed(&before, &end);
    assert!(left.is_empty(), "{label}: the delete left {left:?}");
}

/// The reference matrix.
pub(crate) fn matrix() -> Value {
    serde_json::from_str(include_str!(
        "../../crates/model/data/connection-matrix.json"
    ))
    .unwrap()
}

/// The demo user-assigned identity's client id (the mock makes it up when it starts).
pub(crate) async fn identity_client_id(env: &TestEnv) -> String {
    let identity = env.mock.resource(demo::IDENTITY_ID).await.unwrap();
    identity["properties"]["clientId"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn every_cell(backend: Backend, source: &'static str, source_kind: &str, all_clients: bool) {
    let env = env(backend).await;
    let server = env.spawn().await;
    let api = &server.api;
    for secret in [PASSWORD, SP_SECRET] {
        api.forbid(secret);
    }
    let matrix: Value = serde_json::from_str(include_str!(
        "../../crates/model/data/connection-matrix.json"
    ))
    .unwrap();
    let identity = env.mock.resource(demo::IDENTITY_ID).await.unwrap();
    let client_id = identity["properties"]["clientId"]
        .as_str()
        .unwrap()
        .to_string();
    let cells = cells(source, source_kind, all_clients);
    assert!(cells.len() >= 40, "only {} cells", cells.len());
    for cell in &cells {
        run(&env, api, &matrix, &client_id, cell).await;
    }
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_cell_works_from_an_app_service_app() {
    every_cell(Backend::Postgres, demo::WEB_APP_ID, "webapp", true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_target_and_auth_type_works_from_a_container_app() {
    every_cell(
        Backend::Sqlite,
        demo::CONTAINER_APP_ID,
        "containerapp",
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_target_and_auth_type_works_from_a_functions_app() {
    every_cell(Backend::Sqlite, demo::FUNCTION_APP_ID, "webapp", false).await;
}
