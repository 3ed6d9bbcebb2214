//! Builds the [`Catalog`] from the connection matrix and `targets.toml`. Every problem in the
//! data is an `Err` naming the kind, cell and key it concerns.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    Catalog, Cell, Dialect, FactSource, FactSpec, IdentityGrant, Key, KeysSpec, Network,
    ResourceAt, SecretSource, ServiceType, SettingsKind, SourceKind, TargetKind, Template,
};
use crate::linker::{AuthType, ClientType};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Data {
    source: Vec<SourceRow>,
    target: Vec<TargetRow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceRow {
    name: String,
    resource_type: String,
    api_version: String,
    settings: SettingsKind,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct TargetRow {
    name: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    matrix: Option<String>,
    #[serde(default)]
    like: Option<String>,
    #[serde(default)]
    service_type: Option<ServiceType>,
    #[serde(default)]
    resource_type: Option<String>,
    #[serde(default)]
    schemes: Vec<String>,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    resource: ResourceAt,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    keys_named: Vec<String>,
    secret: SecretSource,
    #[serde(default)]
    keys: Option<KeysRow>,
    #[serde(default)]
    network: Option<NetworkRow>,
    #[serde(default)]
    identity: Vec<IdentityRow>,
    facts: BTreeMap<String, String>,
    #[serde(default)]
    substitute: Vec<[String; 2]>,
    #[serde(default)]
    whole: BTreeMap<String, String>,
    #[serde(default)]
    append: Vec<AppendRow>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct KeysRow {
    action: String,
    facts: BTreeMap<String, String>,
}

#[derive(Deserialize, Clone)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
enum NetworkRow {
    FirewallRules {
        collection: String,
        start: String,
        end: String,
        #[serde(default)]
        alphanumeric_names: bool,
    },
    IpRules {
        #[serde(default)]
        child: Option<String>,
        pointer: String,
        field: String,
        #[serde(default)]
        extra: Map<String, Value>,
    },
}

#[derive(Deserialize, Clone)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
enum IdentityRow {
    Role { roles: Vec<String> },
    DatabaseUser { dialect: Dialect },
    RedisAccessPolicy { policy: String },
    CosmosSqlRole { role: String },
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct AppendRow {
    auth: String,
    client: String,
    key: String,
    text: String,
}

/// The source kinds whose auth lists the catalogue reads from the matrix.
const SOURCES: [&str; 2] = ["webapp", "containerapp"];

/// Builds the catalogue from the matrix (JSON) and Tether's data (TOML).
pub(super) fn build(matrix: &str, data: &str) -> Result<Catalog, String> {
    let matrix: Value =
        serde_json::from_str(matrix).map_err(|e| format!("connection-matrix.json: {e}"))?;
    let data: Data = toml::from_str(data).map_err(|e| format!("targets.toml: {e}"))?;
    let sources = data
        .source
        .into_iter()
        .map(|s| SourceKind {
            name: s.name,
            resource_type: s.resource_type,
            api_version: s.api_version,
            settings: s.settings,
        })
        .collect();
    let mut targets = Vec::with_capacity(data.target.len());
    for row in &data.target {
        let row = inherit(row, &data.target)?;
        targets.push(target(&row, &matrix).map_err(|e| format!("target {}: {e}", row.name))?);
    }
    Ok(Catalog { sources, targets })
}

/// A row that is `like` another takes the other's matrix entry, prefix, key filter and
/// template rules; its own service type, schemes, facts and auth rules stay.
fn inherit(row: &TargetRow, rows: &[TargetRow]) -> Result<TargetRow, String> {
    let Some(like) = &row.like else {
        return Ok(row.clone());
    };
    let base = rows
        .iter()
        .find(|r| &r.name == like)
        .ok_or_else(|| format!("target {}: like '{like}' names no target", row.name))?;
    Ok(TargetRow {
        matrix: Some(base.matrix.clone().unwrap_or_else(|| base.name.clone())),
        prefix: base.prefix.clone(),
        keys_named: base.keys_named.clone(),
        substitute: base.substitute.clone(),
        whole: base.whole.clone(),
        append: base.append.clone(),
        ..row.clone()
    })
}

fn target(row: &TargetRow, matrix: &Value) -> Result<TargetKind, String> {
    let key = row.matrix.clone().unwrap_or_else(|| row.name.clone());
    let entry = &matrix["targets"][&key];
    if !entry.is_object() {
        return Err(format!("no matrix entry '{key}'"));
    }
    let facts = row
        .facts
        .iter()
        .map(|(name, source)| {
            Ok(FactSpec {
                name: name.clone(),
                source: fact_source(source)
                    .ok_or_else(|| format!("fact '{name}' has an unknown source '{source}'"))?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let service_type = row.service_type.unwrap_or(ServiceType::AzureResource);
    let prefixes: Vec<String> = match &row.prefix {
        Some(p) => vec![p.clone()],
        None => entry["config_prefix"]
            .as_str()
            .ok_or("no config_prefix")?
            .split('/')
            .map(|p| p.trim().to_string())
            .collect(),
    };
    let undocumented = matrix["cli_client_types_without_docs"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut clients = Vec::new();
    for c in entry["supported_client_types_cli"]
        .as_array()
        .ok_or("no supported_client_types_cli")?
    {
        let name = c.as_str().ok_or("a client type is not a string")?;
        match serde_json::from_value::<ClientType>(Value::String(name.into())) {
            Ok(client) => clients.push(client),
            Err(_) if undocumented.contains_key(name) => {}
            Err(_) => return Err(format!("unknown client type '{name}'")),
        }
    }
    let self_hosted = service_type == ServiceType::SelfHostedServer;
    let mut cells = Vec::new();
    for (auth_key, by_client) in entry["configurations"]
        .as_object()
        .ok_or("no configurations")?
    {
        let auth: AuthType = serde_json::from_value(Value::String(auth_key.clone()))
            .map_err(|_| format!("unknown auth type '{auth_key}'"))?;
        if self_hosted && auth != AuthType::Secret {
            continue;
        }
        let by_client = by_client.as_object().ok_or("a cell set is not an object")?;
        for &client in &clients {
            let Some(entries) = by_client
                .get(client.as_str())
                .or_else(|| by_client.get("*"))
            else {
                continue;
            };
            let mut templates = Vec::new();
            for e in entries.as_array().ok_or("a cell is not a list")? {
                let name = e["name"].as_str().ok_or("an entry has no name")?;
                if !wanted(row, &prefixes, name) {
                    continue;
                }
                let example = e["example"].as_str().ok_or("an entry has no example")?;
                let value = template_text(row, auth_key, client.as_str(), name, example);
                let key = key_of(&prefixes, name);
                let meaning = e["meaning"].as_str().unwrap_or_default();
                templates.push(
                    Template::parse(key, &value)
                        .map_err(|why| format!("{auth_key}/{}/{name}: {why}", client.as_str()))?
                        .described(meaning),
                );
            }
            if !templates.is_empty() {
                cells.push(Cell {
                    auth,
                    client,
                    entries: templates,
                });
            }
        }
    }
    let has_cell = |auth: AuthType| cells.iter().any(|c| c.auth == auth);
    let mut auth = Vec::new();
    for source in SOURCES {
        let listed = entry["supported_auth_types_cli"][source]
            .as_array()
            .ok_or_else(|| format!("no supported_auth_types_cli for {source}"))?;
        let mut types = Vec::new();
        for cli in listed {
            let cli = cli.as_str().ok_or("an auth type is not a string")?;
            let api: &[AuthType] = match cli {
                "secret" => &[AuthType::Secret],
                "secret(auto)" => &[AuthType::Secret, AuthType::AccessKey],
                "system-managed-identity" => &[AuthType::SystemAssignedIdentity],
                "user-managed-identity" => &[AuthType::UserAssignedIdentity],
                "service-principal" => &[AuthType::ServicePrincipalSecret],
                _ => &[],
            };
            for a in api {
                let secret = matches!(a, AuthType::Secret | AuthType::AccessKey);
                let usable = has_cell(if secret { AuthType::Secret } else { *a })
                    && (!self_hosted || *a == AuthType::Secret)
                    && !(secret && row.secret == SecretSource::None)
                    && !(*a == AuthType::AccessKey && row.secret != SecretSource::Keys);
                if usable && !types.contains(a) {
                    types.push(*a);
                }
            }
        }
        auth.push((source.to_string(), types));
    }
    Ok(TargetKind {
        name: row.name.clone(),
        matrix: key,
        display_name: row
            .display_name
            .as_deref()
            .or(entry["display_name"].as_str())
            .unwrap_or(&row.name)
            .to_string(),
        service_type,
        resource_type: row.resource_type.clone(),
        schemes: row.schemes.clone(),
        api_version: row.api_version.clone(),
        resource: row.resource,
        prefixes,
        secret: row.secret,
        keys: row.keys.as_ref().map(|k| KeysSpec {
            action: k.action.clone(),
            facts: k.facts.clone().into_iter().collect(),
        }),
        network: row.network.clone().map(|n| match n {
            NetworkRow::FirewallRules {
                collection,
                start,
                end,
                alphanumeric_names,
            } => Network::FirewallRules {
                collection,
                start,
                end,
                alphanumeric_names,
            },
            NetworkRow::IpRules {
                child,
                pointer,
                field,
                extra,
            } => Network::IpRules {
                child,
                pointer,
                field,
                extra,
            },
        }),
        identity: row
            .identity
            .iter()
            .cloned()
            .map(|i| match i {
                IdentityRow::Role { roles } => IdentityGrant::Role { roles },
                IdentityRow::DatabaseUser { dialect } => IdentityGrant::DatabaseUser { dialect },
                IdentityRow::RedisAccessPolicy { policy } => {
                    IdentityGrant::RedisAccessPolicy { policy }
                }
                IdentityRow::CosmosSqlRole { role } => IdentityGrant::CosmosSqlRole { role },
            })
            .collect(),
        facts,
        auth,
        clients,
        cells,
    })
}

/// Whether a matrix entry belongs to this kind: one of its prefixes, or one of the exact keys
/// it names when it takes only part of a matrix entry (Confluent's two endpoints).
fn wanted(row: &TargetRow, prefixes: &[String], name: &str) -> bool {
    if row.prefix.is_none() {
        return true;
    }
    prefixes.iter().any(|p| name.starts_with(&format!("{p}_")))
        || row.keys_named.iter().any(|k| k == name)
}

fn key_of(prefixes: &[String], name: &str) -> Key {
    prefixes
        .iter()
        .find_map(|p| {
            name.strip_prefix(&format!("{p}_"))
                .map(|suffix| Key::Suffix {
                    prefix: p.clone(),
                    suffix: suffix.to_string(),
                })
        })
        .unwrap_or_else(|| Key::Exact(name.to_string()))
}

/// A documented example turned into a template: a `whole` replacement when the example is
/// exactly that text, else every substitution (longest first), then any `append`.
fn template_text(row: &TargetRow, auth: &str, client: &str, key: &str, example: &str) -> String {
    let mut text = match row.whole.get(example) {
        Some(replacement) => replacement.clone(),
        None => {
            let mut rules: Vec<&[String; 2]> = row.substitute.iter().collect();
            rules.sort_by_key(|[from, _]| std::cmp::Reverse(from.len()));
            rules.iter().fold(example.to_string(), |text, [from, to]| {
                text.replace(from, to)
            })
        }
    };
    for a in &row.append {
        if a.auth == auth && a.client == client && a.key == key {
            text.push_str(&a.text);
        }
    }
    text
}

fn fact_source(text: &str) -> Option<FactSource> {
    if text.starts_with('/') {
        return Some(FactSource::Pointer(text.to_string()));
    }
    if let Some(pointer) = text.strip_prefix("host:") {
        return Some(FactSource::UrlHost(pointer.to_string()));
    }
    if let Some(value) = text.strip_prefix('=') {
        return Some(FactSource::Constant(value.to_string()));
    }
    let (name, default) = match text.split_once(':') {
        Some((name, default)) => (name, default.to_string()),
        None => (text, String::new()),
    };
    Some(match name {
        "@name" => FactSource::TargetName,
        "@resourceName" => FactSource::ResourceName,
        "@subscription" => FactSource::Subscription,
        "@resourceGroup" => FactSource::ResourceGroup,
        "@endpoint" => FactSource::Endpoint,
        "@endpointHost" => FactSource::EndpointHost,
        "@endpointPort" => FactSource::EndpointPort(default),
        "@endpointPath" => FactSource::EndpointPath(default),
        "@password" => FactSource::Password,
        _ => return None,
    })
}
