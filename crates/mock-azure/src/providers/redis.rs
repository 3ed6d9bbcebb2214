//! `Microsoft.Cache/redis` (2023-08-01): host and ports, access keys (`listKeys`,
//! `regenerateKey`), firewall rules (`startIP`/`endIP`), Entra access-policy assignments, and
//! the computed `databases/{0..15}` children Service Connector's target ids end with.

use std::net::Ipv4Addr;

use serde_json::{Map, Value, json};

use super::{Ctx, Extras, default_field, properties_mut, random_key, secret_key, with_secret};
use crate::error::ArmError;
use crate::resources::{self, ProviderPath};
use crate::state::State;

/// The access policies every cache has.
pub(crate) const BUILT_IN_ACCESS_POLICIES: [&str; 3] =
    ["Data Owner", "Data Contributor", "Data Reader"];
/// Number of logical databases of a cache (`databases/0` to `databases/15`).
const DATABASES: u32 = 16;

/// A cache: sku default, host name, ports, version; keys created with it.
pub(super) fn finalize_cache(
    ctx: &Ctx<'_>,
    name: &str,
    resource: &mut Map<String, Value>,
) -> Result<Extras, ArmError> {
    let properties = properties_mut(resource);
    default_field(
        properties,
        "sku",
        json!({"name": "Standard", "family": "C", "capacity": 1}),
    );
    default_field(properties, "enableNonSslPort", false.into());
    default_field(properties, "minimumTlsVersion", "1.2".into());
    default_field(properties, "redisVersion", "6.0".into());
    default_field(properties, "redisConfiguration", json!({}));
    default_field(properties, "publicNetworkAccess", "Enabled".into());
    properties.insert(
        "hostName".into(),
        format!("{}.redis.cache.windows.net", name.to_lowercase()).into(),
    );
    properties.insert("port".into(), 6379.into());
    properties.insert("sslPort".into(), 6380.into());
    properties.insert("provisioningState".into(), "Succeeded".into());
    properties.insert("accessKeys".into(), Value::Null);
    Ok(Extras {
        secret: ctx
            .secret()
            .is_none()
            .then(|| json!({"primaryKey": random_key(32), "secondaryKey": random_key(32)})),
        entries: Vec::new(),
    })
}

/// Firewall rules: alphanumeric names, `startIP` <= `endIP`, both IPv4.
pub(super) fn validate_firewall_rule(
    name: &str,
    properties: &Map<String, Value>,
) -> Result<(), ArmError> {
    let bad = |detail: String| ArmError::bad_request("BadRequest", detail);
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(bad(format!(
            "The firewall rule name '{name}' is invalid: only letters and digits are allowed."
        )));
    }
    let address = |field: &str| {
        properties
            .get(field)
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
            .ok_or_else(|| bad(format!("'{field}' must be an IPv4 address.")))
    };
    if address("startIP")? > address("endIP")? {
        return Err(bad("'startIP' must not be greater than 'endIP'.".into()));
    }
    Ok(())
}

/// Access-policy assignments: `accessPolicyName` (a built-in policy or a stored
/// `accessPolicies/{name}`), `objectId` and `objectIdAlias` are required.
pub(super) fn validate_access_policy_assignment(
    ctx: &Ctx<'_>,
    resource: &mut Map<String, Value>,
) -> Result<(), ArmError> {
    let properties = properties_mut(resource);
    let text = |field: &str| {
        properties
            .get(field)
            .and_then(Value::as_str)
            .filter(|v| !v.trim().is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                ArmError::bad_request("BadRequest", format!("The property '{field}' is required."))
            })
    };
    let policy = text("accessPolicyName")?;
    text("objectId")?;
    text("objectIdAlias")?;
    let cache_key = ctx.path.parent().map(|p| p.key()).unwrap_or_default();
    let exists = BUILT_IN_ACCESS_POLICIES
        .iter()
        .any(|p| p.eq_ignore_ascii_case(&policy))
        || ctx.state.resources.contains_key(&format!(
            "{cache_key}/accesspolicies/{}",
            policy.to_lowercase()
        ));
    if !exists {
        return Err(ArmError::bad_request(
            "BadRequest",
            format!("The access policy '{policy}' does not exist."),
        ));
    }
    properties.insert("provisioningState".into(), "Succeeded".into());
    Ok(())
}

/// `databases/{n}`: a minimal resource for n in 0..16 of an existing cache.
pub(super) fn database(state: &State, path: &ProviderPath) -> Option<Value> {
    let cache = path.parent()?;
    let cache = resources::get_ref(state, &cache).ok()?;
    let name = path.name();
    let number: u32 = name.parse().ok().filter(|n| *n < DATABASES)?;
    (number.to_string() == name).then(|| {
        json!({
            "id": format!("{}/databases/{name}", cache["id"].as_str().unwrap_or_default()),
            "name": name,
            "type": "Microsoft.Cache/Redis/databases",
        })
    })
}

/// `POST .../listKeys`: `{primaryKey, secondaryKey}`.
pub(super) fn list_keys(state: &State, cache: &ProviderPath) -> Result<Value, ArmError> {
    Ok(with_secret(state, cache)?.1.clone())
}

/// `POST .../regenerateKey` `{"keyType":"Primary"|"Secondary"}`: the new keys.
pub(super) fn regenerate_key(
    state: &mut State,
    cache: &ProviderPath,
    body: &[u8],
) -> Result<Value, ArmError> {
    let mut secret = with_secret(state, cache)?.1.clone();
    let field = match serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|b| b["keyType"].as_str().map(str::to_ascii_lowercase))
        .as_deref()
    {
        Some("primary") => "primaryKey",
        Some("secondary") => "secondaryKey",
        _ => {
            return Err(ArmError::bad_request(
                "BadRequest",
                "keyType must be 'Primary' or 'Secondary'.",
            ));
        }
    };
    secret[field] = random_key(32).into();
    state
        .resources
        .insert(secret_key(&cache.key()), secret.clone());
    Ok(secret)
}
