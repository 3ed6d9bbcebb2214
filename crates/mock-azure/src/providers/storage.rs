//! `Microsoft.Storage/storageAccounts` (2023-01-01): endpoints, network ACLs, the default
//! blob/queue/table/file services, and the two account keys (`listKeys`, `regenerateKey`).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::{
    Ctx, Extras, default_field, is_ipv4_or_cidr, object_array, properties_mut, random_key,
    secret_key, with_secret,
};
use crate::error::{ArmError, rfc3339};
use crate::resources::ProviderPath;
use crate::state::State;

/// The default services every account has (each with one child, `default`).
const SERVICES: [&str; 4] = [
    "blobServices",
    "queueServices",
    "tableServices",
    "fileServices",
];

/// An account: name rules, sku/kind defaults, endpoints, network ACLs; creates the default
/// services and the keys.
pub(super) fn finalize_account(
    ctx: &Ctx<'_>,
    name: &str,
    resource: &mut Map<String, Value>,
) -> Result<Extras, ArmError> {
    let name_ok = (3..=24).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !name_ok {
        return Err(ArmError::bad_request(
            "AccountNameInvalid",
            format!(
                "{name} is not a valid storage account name. Storage account name must be between 3 and 24 characters in length and use numbers and lower-case letters only."
            ),
        ));
    }
    default_field(resource, "kind", "StorageV2".into());
    default_field(
        resource,
        "sku",
        json!({"name": "Standard_LRS", "tier": "Standard"}),
    );
    let location = resource.get("location").cloned().unwrap_or(Value::Null);
    let created = ctx
        .kept("/properties/creationTime")
        .unwrap_or_else(|| rfc3339(ctx.now).into());
    let properties = properties_mut(resource);
    validate_network_acls(properties)?;
    let endpoint = |service: &str| format!("https://{name}.{service}.core.windows.net/");
    properties.insert(
        "primaryEndpoints".into(),
        json!({
            "blob": endpoint("blob"),
            "queue": endpoint("queue"),
            "table": endpoint("table"),
            "file": endpoint("file"),
            "dfs": endpoint("dfs"),
        }),
    );
    properties.insert("primaryLocation".into(), location);
    properties.insert("statusOfPrimary".into(), "available".into());
    properties.insert("provisioningState".into(), "Succeeded".into());
    properties.insert("creationTime".into(), created);
    default_field(properties, "minimumTlsVersion", "TLS1_2".into());
    default_field(properties, "allowBlobPublicAccess", false.into());
    default_field(properties, "publicNetworkAccess", "Enabled".into());

    let key = ctx.path.key();
    let id = resource
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut extras = Extras::default();
    if ctx.secret().is_none() {
        extras.secret = Some(new_keys(ctx.now));
    }
    for collection in SERVICES {
        let service_key = format!("{key}/{}/default", collection.to_lowercase());
        if !ctx.state.resources.contains_key(&service_key) {
            let mut properties = json!({"cors": {"corsRules": []}});
            if collection == "blobServices" {
                properties["deleteRetentionPolicy"] =
                    json!({"allowPermanentDelete": false, "enabled": false});
            }
            extras.entries.push((
                service_key,
                json!({
                    "id": format!("{id}/{collection}/default"),
                    "name": "default",
                    "type": format!("Microsoft.Storage/storageAccounts/{collection}"),
                    "properties": properties,
                }),
            ));
        }
    }
    Ok(extras)
}

/// `networkAcls`: defaults like Azure; `defaultAction` Allow/Deny; IP rules are IPv4 addresses
/// or CIDR ranges up to /30 (Azure refuses /31 and /32 ranges), with action `Allow`.
fn validate_network_acls(properties: &mut Map<String, Value>) -> Result<(), ArmError> {
    let acls = properties.entry("networkAcls").or_insert_with(|| json!({}));
    let Value::Object(acls) = acls else {
        return Err(acl_failure("networkAcls must be an object"));
    };
    default_field(acls, "bypass", "AzureServices".into());
    default_field(acls, "virtualNetworkRules", json!([]));
    default_field(acls, "ipRules", json!([]));
    default_field(acls, "defaultAction", "Allow".into());
    let action_ok = acls["defaultAction"]
        .as_str()
        .is_some_and(|a| a == "Allow" || a == "Deny");
    if !action_ok {
        return Err(acl_failure("defaultAction must be Allow or Deny"));
    }
    let rules = object_array(acls, "ipRules").map_err(|()| acl_failure("invalid ipRules"))?;
    let mut normalized = Vec::new();
    for rule in rules {
        let value = rule
            .get("value")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !is_ipv4_or_cidr(value, 30) {
            return Err(acl_failure(&format!("Invalid IP/CIDR: {value}")));
        }
        normalized.push(json!({"value": value, "action": "Allow"}));
    }
    acls.insert("ipRules".into(), Value::Array(normalized));
    Ok(())
}

fn acl_failure(detail: &str) -> ArmError {
    ArmError::bad_request(
        "NetworkAclsValidationFailure",
        format!("Validation of network acls failure: {detail}."),
    )
}

/// `blobServices/default` and friends: the name must be `default`.
pub(super) fn finalize_service(
    ctx: &Ctx<'_>,
    resource: &mut Map<String, Value>,
) -> Result<(), ArmError> {
    if !ctx.path.name().eq_ignore_ascii_case("default") {
        return Err(ArmError::bad_request(
            "InvalidResourceName",
            "The only supported service name is 'default'.",
        ));
    }
    let collection = ctx.path.rest[ctx.path.rest.len() - 2].clone();
    let canonical = SERVICES
        .iter()
        .find(|c| c.eq_ignore_ascii_case(&collection))
        .map_or(collection.as_str(), |c| c);
    resource.insert(
        "type".into(),
        format!("Microsoft.Storage/storageAccounts/{canonical}").into(),
    );
    resource.insert("name".into(), "default".into());
    Ok(())
}

fn new_keys(now: DateTime<Utc>) -> Value {
    let created = rfc3339(now);
    json!({"keys": [
        {"keyName": "key1", "value": random_key(64), "permissions": "FULL", "creationTime": created},
        {"keyName": "key2", "value": random_key(64), "permissions": "FULL", "creationTime": created},
    ]})
}

/// `POST .../listKeys`: `{"keys":[{keyName,value,permissions,creationTime}]}`.
pub(super) fn list_keys(state: &State, account: &ProviderPath) -> Result<Value, ArmError> {
    let (_, secret) = with_secret(state, account)?;
    Ok(secret.clone())
}

/// `POST .../regenerateKey` `{"keyName":"key1"|"key2"}`: a new value for that key, then the
/// keys as `listKeys` returns them.
pub(super) fn regenerate_key(
    state: &mut State,
    account: &ProviderPath,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Value, ArmError> {
    let (_, secret) = with_secret(state, account)?;
    let mut secret = secret.clone();
    let wanted = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|b| b["keyName"].as_str().map(str::to_lowercase))
        .filter(|k| k == "key1" || k == "key2")
        .ok_or_else(|| {
            ArmError::bad_request(
                "InvalidValuesForRequestParameters",
                "Values for request parameters are invalid: keyName.",
            )
        })?;
    if let Some(keys) = secret["keys"].as_array_mut() {
        for key in keys.iter_mut().filter(|k| k["keyName"] == wanted.as_str()) {
            key["value"] = random_key(64).into();
            key["creationTime"] = rfc3339(now).into();
        }
    }
    state
        .resources
        .insert(secret_key(&account.key()), secret.clone());
    Ok(secret)
}
