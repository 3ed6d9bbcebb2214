//! `Microsoft.App/containerApps` (2024-03-01): identity, secrets (names only in GET, values
//! through `listSecrets`), containers whose env may reference secrets, revisions, and the
//! computed outbound addresses and ingress FQDN.
//!
//! Every change of the template or of the secrets creates a revision
//! `{app}--{suffix}` (the template's `revisionSuffix` when given and unused, else a 7-digit
//! counter) and deactivates the previous one (single revision mode). Secret values live in the
//! app's `$secret` entry as `{"values": {name: value}}`.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::{Ctx, Extras, fnv1a, identity, properties_mut, secret_key};
use crate::error::{ArmError, rfc3339};
use crate::resources::ProviderPath;
use crate::state::State;

/// An app: validates secrets and env references, keeps secret values aside, creates a
/// revision when the template or the secrets change, and computes the read-only fields.
pub(super) fn finalize(
    ctx: &Ctx<'_>,
    name: &str,
    resource: &mut Map<String, Value>,
) -> Result<Extras, ArmError> {
    identity::apply(ctx, resource)?;
    let location = resource
        .get("location")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let app_id = resource["id"].as_str().unwrap_or_default().to_owned();
    let previous_values = ctx
        .secret()
        .and_then(|s| s["values"].as_object())
        .cloned()
        .unwrap_or_default();
    let properties = properties_mut(resource);
    let mut configuration = properties
        .get("configuration")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let (visible, values) = secrets(configuration.get("secrets"), &previous_values)?;
    let secret_names: BTreeSet<String> = visible
        .iter()
        .filter_map(|s| s["name"].as_str().map(str::to_owned))
        .collect();
    configuration.insert("secrets".into(), Value::Array(visible.clone()));
    let mut template = properties
        .get("template")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if !template.contains_key("containers") {
        template.insert("containers".into(), json!([]));
    }
    check_containers(&template, &secret_names)?;

    let environment = properties
        .get("managedEnvironmentId")
        .or_else(|| properties.get("environmentId"))
        .and_then(Value::as_str)
        .unwrap_or("mock-environment")
        .to_lowercase();
    let domain = format!(
        "{:010x}.{location}.azurecontainerapps.io",
        fnv1a(environment.as_bytes()) & 0xff_ffff_ffff
    );
    if let Some(Value::Object(ingress)) = configuration.get_mut("ingress") {
        ingress.insert(
            "fqdn".into(),
            format!("{}.{domain}", name.to_lowercase()).into(),
        );
    }

    let template_value = Value::Object(template.clone());
    let changed = ctx.existing.is_none()
        || ctx.kept("/properties/template").as_ref() != Some(&template_value)
        || ctx.kept("/properties/configuration/secrets").as_ref() != Some(&Value::Array(visible))
        || previous_values != values;
    let mut extras = Extras {
        secret: Some(if values.is_empty() {
            Value::Null
        } else {
            json!({ "values": values })
        }),
        entries: Vec::new(),
    };
    let latest = if changed {
        let revision = new_revision(ctx, name, &app_id, &template, &mut extras);
        Value::String(revision)
    } else {
        ctx.kept("/properties/latestRevisionName")
            .unwrap_or(Value::Null)
    };

    properties.insert("configuration".into(), Value::Object(configuration));
    properties.insert("template".into(), template_value);
    properties.insert("provisioningState".into(), "Succeeded".into());
    properties.insert("runningStatus".into(), "Running".into());
    properties.insert("latestRevisionName".into(), latest.clone());
    properties.insert("latestReadyRevisionName".into(), latest.clone());
    if properties["configuration"].get("ingress").is_some() {
        let revision = latest.as_str().unwrap_or_default();
        properties.insert(
            "latestRevisionFqdn".into(),
            format!("{revision}.{domain}").into(),
        );
    }
    let (outbound, _) = super::web::generated_outbound_ips(&ctx.path.key());
    let outbound: Vec<&str> = outbound.split(',').collect();
    properties.insert("outboundIpAddresses".into(), json!(outbound));
    Ok(extras)
}

/// The visible secrets (`[{name}]`, or `[{name, keyVaultUrl, identity}]`) and the values of
/// the value secrets. A secret without value keeps its previous value.
fn secrets(
    requested: Option<&Value>,
    previous: &Map<String, Value>,
) -> Result<(Vec<Value>, Map<String, Value>), ArmError> {
    let invalid = |detail: String| ArmError::bad_request("ContainerAppSecretInvalid", detail);
    let items = match requested {
        None | Some(Value::Null) => return Ok((Vec::new(), Map::new())),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(invalid("configuration.secrets must be an array.".into())),
    };
    let mut visible = Vec::new();
    let mut values = Map::new();
    let mut seen = BTreeSet::new();
    for item in items {
        let name = item["name"].as_str().unwrap_or_default();
        let name_ok = !name.is_empty()
            && name.len() <= 253
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !name_ok {
            return Err(invalid(format!(
                "Invalid secret name '{name}': a secret name must consist of lower case alphanumeric characters, '-' or '.', and start and end with an alphanumeric character."
            )));
        }
        if !seen.insert(name.to_owned()) {
            return Err(invalid(format!(
                "The secret '{name}' is defined more than once."
            )));
        }
        if let Some(url) = item["keyVaultUrl"].as_str() {
            let mut entry = json!({"name": name, "keyVaultUrl": url});
            if let Some(identity) = item.get("identity").filter(|i| i.is_string()) {
                entry["identity"] = identity.clone();
            }
            visible.push(entry);
            continue;
        }
        let value = match item.get("value") {
            Some(Value::String(value)) => value.clone(),
            None | Some(Value::Null) => previous
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| invalid(format!("The secret '{name}' has no value.")))?,
            Some(_) => {
                return Err(invalid(format!(
                    "The value of secret '{name}' must be a string."
                )));
            }
        };
        values.insert(name.to_owned(), value.into());
        visible.push(json!({ "name": name }));
    }
    Ok((visible, values))
}

/// Containers need a name and an image; env entries a name and either a value or a
/// `secretRef` naming an existing secret.
fn check_containers(
    template: &Map<String, Value>,
    secret_names: &BTreeSet<String>,
) -> Result<(), ArmError> {
    let invalid = |detail: String| ArmError::bad_request("ContainerAppInvalidTemplate", detail);
    let containers = template["containers"]
        .as_array()
        .ok_or_else(|| invalid("template.containers must be an array.".into()))?;
    for container in containers {
        let name = container["name"].as_str().unwrap_or_default();
        if name.is_empty() || !container["image"].is_string() {
            return Err(invalid(
                "Every container needs a 'name' and an 'image'.".into(),
            ));
        }
        let env = match container.get("env") {
            None | Some(Value::Null) => continue,
            Some(Value::Array(env)) => env,
            Some(_) => {
                return Err(invalid(format!(
                    "The env of container '{name}' must be an array."
                )));
            }
        };
        for variable in env {
            if !variable["name"].is_string() {
                return Err(invalid(format!(
                    "An env entry of container '{name}' has no name."
                )));
            }
            if let Some(reference) = variable.get("secretRef").filter(|r| !r.is_null()) {
                let reference = reference.as_str().unwrap_or_default();
                if !secret_names.contains(reference) {
                    return Err(ArmError::bad_request(
                        "ContainerAppSecretRefNotFound",
                        format!(
                            "SecretRef '{reference}' defined for container '{name}' not found."
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Adds the new revision (and the deactivated previous one) to `extras`; returns its name.
fn new_revision(
    ctx: &Ctx<'_>,
    app: &str,
    app_id: &str,
    template: &Map<String, Value>,
    extras: &mut Extras,
) -> String {
    let app_key = ctx.path.key();
    let collection = format!("{app_key}/revisions");
    let existing = ctx.state.list_collection(&collection);
    let taken = |suffix: &str| {
        ctx.state
            .resources
            .contains_key(&format!("{collection}/{app}--{suffix}").to_lowercase())
    };
    let requested = template
        .get("revisionSuffix")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && !taken(s));
    let mut counter = existing.len() + 1;
    let suffix = match requested {
        Some(suffix) => suffix.to_owned(),
        None => loop {
            let candidate = format!("{counter:07}");
            if !taken(&candidate) {
                break candidate;
            }
            counter += 1;
        },
    };
    let revision = format!("{app}--{suffix}");
    for mut old in existing {
        if old["properties"]["active"] == true {
            old["properties"]["active"] = false.into();
            old["properties"]["trafficWeight"] = 0.into();
            old["properties"]["runningState"] = "Stopped".into();
            let key = format!(
                "{collection}/{}",
                old["name"].as_str().unwrap_or_default().to_lowercase()
            );
            extras.entries.push((key, old));
        }
    }
    extras.entries.push((
        format!("{collection}/{}", revision.to_lowercase()),
        json!({
            "id": format!("{app_id}/revisions/{revision}"),
            "name": revision,
            "type": "Microsoft.App/containerApps/revisions",
            "properties": {
                "createdTime": rfc3339(ctx.now),
                "template": template,
                "active": true,
                "replicas": 1,
                "trafficWeight": 100,
                "healthState": "Healthy",
                "provisioningState": "Provisioned",
                "runningState": "Running",
            },
        }),
    ));
    revision
}

/// `POST .../listSecrets`: `{"value":[{name, value}]}` (Key Vault references: `{name,
/// keyVaultUrl, identity}`).
pub(super) fn list_secrets(state: &State, app: &ProviderPath) -> Result<Value, ArmError> {
    let resource = crate::resources::get_ref(state, app)?;
    let values = state
        .resources
        .get(&secret_key(&app.key()))
        .and_then(|s| s["values"].as_object())
        .cloned()
        .unwrap_or_default();
    let listed: Vec<Value> = resource["properties"]["configuration"]["secrets"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|secret| {
            let name = secret["name"].as_str().unwrap_or_default();
            match values.get(name) {
                Some(value) => json!({"name": name, "value": value}),
                None => secret.clone(),
            }
        })
        .collect();
    Ok(json!({ "value": listed }))
}
