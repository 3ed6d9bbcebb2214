//! `Microsoft.KeyVault/vaults` (2023-07-01) and their secrets through ARM.
//!
//! A secret's value is never part of the resource: it is kept, with its current version, in the
//! secret's `$secret` entry (`{"value","version"}`), visible in `GET /admin/state`. Every change
//! of the value makes a new version (`secretUriWithVersion`).

use serde_json::{Map, Value, json};

use super::{Ctx, Extras, default_field, is_ipv4_or_cidr, object_array, properties_mut};
use crate::error::{ArmError, new_uuid};

/// A vault: tenant and sku defaults, `vaultUri`, access model, network ACLs.
pub(super) fn finalize_vault(
    ctx: &Ctx<'_>,
    name: &str,
    resource: &mut Map<String, Value>,
) -> Result<(), ArmError> {
    let properties = properties_mut(resource);
    default_field(properties, "tenantId", ctx.tenant_id.into());
    default_field(
        properties,
        "sku",
        json!({"family": "A", "name": "standard"}),
    );
    default_field(properties, "accessPolicies", json!([]));
    default_field(properties, "enableRbacAuthorization", false.into());
    default_field(properties, "publicNetworkAccess", "Enabled".into());
    properties.insert(
        "vaultUri".into(),
        format!("https://{}.vault.azure.net/", name.to_lowercase()).into(),
    );
    properties.insert("provisioningState".into(), "Succeeded".into());
    let acls = properties.entry("networkAcls").or_insert_with(|| json!({}));
    let Value::Object(acls) = acls else {
        return Err(bad_acls("networkAcls must be an object"));
    };
    default_field(acls, "bypass", "AzureServices".into());
    default_field(acls, "defaultAction", "Allow".into());
    default_field(acls, "virtualNetworkRules", json!([]));
    default_field(acls, "ipRules", json!([]));
    let rules = object_array(acls, "ipRules").map_err(|()| bad_acls("invalid ipRules"))?;
    for rule in rules {
        let value = rule
            .get("value")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !is_ipv4_or_cidr(value, 32) {
            return Err(bad_acls(&format!(
                "'{value}' is not a valid IP address or range"
            )));
        }
    }
    Ok(())
}

fn bad_acls(detail: &str) -> ArmError {
    ArmError::bad_request(
        "BadRequest",
        format!("Invalid value for networkAcls: {detail}."),
    )
}

/// A secret: name rules; the value moves to the `$secret` entry; URIs and attributes.
pub(super) fn finalize_secret(
    ctx: &Ctx<'_>,
    name: &str,
    resource: &mut Map<String, Value>,
) -> Result<Extras, ArmError> {
    let name_ok = (1..=127).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !name_ok {
        return Err(ArmError::bad_request(
            "BadRequest",
            format!(
                "The secret name '{name}' is invalid: it must be 1-127 characters of letters, digits and '-'."
            ),
        ));
    }
    let vault_uri = ctx
        .parent()
        .and_then(|vault| vault["properties"]["vaultUri"].as_str())
        .unwrap_or_default()
        .to_owned();
    let location = ctx.parent().and_then(|v| v.get("location")).cloned();
    let previous = ctx.secret().cloned();
    let properties = properties_mut(resource);
    let requested = properties.remove("value");
    let (value, version) = match (requested, &previous) {
        (Some(Value::String(value)), Some(previous)) if previous["value"] == value.as_str() => {
            (value, previous["version"].clone())
        }
        (Some(Value::String(value)), _) => (value, new_uuid().simple().to_string().into()),
        (None, Some(previous)) => (
            previous["value"].as_str().unwrap_or_default().to_owned(),
            previous["version"].clone(),
        ),
        _ => {
            return Err(ArmError::bad_request(
                "BadRequest",
                "The secret value ('properties.value', a string) is required.",
            ));
        }
    };
    let version_text = version.as_str().unwrap_or_default().to_owned();
    let created = ctx
        .kept("/properties/attributes/created")
        .unwrap_or_else(|| ctx.now.timestamp().into());
    let updated = if previous.as_ref().is_some_and(|p| p["version"] == version) {
        ctx.kept("/properties/attributes/updated")
            .unwrap_or_else(|| ctx.now.timestamp().into())
    } else {
        ctx.now.timestamp().into()
    };
    let mut attributes = properties
        .get("attributes")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    default_field(&mut attributes, "enabled", true.into());
    attributes.insert("created".into(), created);
    attributes.insert("updated".into(), updated);
    properties.insert("attributes".into(), Value::Object(attributes));
    properties.insert(
        "secretUri".into(),
        format!("{vault_uri}secrets/{name}").into(),
    );
    properties.insert(
        "secretUriWithVersion".into(),
        format!("{vault_uri}secrets/{name}/{version_text}").into(),
    );
    if let Some(location) = location {
        resource.insert("location".into(), location);
    }
    Ok(Extras {
        secret: Some(json!({"value": value, "version": version})),
        entries: Vec::new(),
    })
}
