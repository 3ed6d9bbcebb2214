//! `Microsoft.ServiceBus/namespaces` (2021-11-01): endpoint, the `RootManageSharedAccessKey`
//! rule created with the namespace, shared-access rules (namespace, queue or topic level) with
//! `listKeys`/`regenerateKeys`, and the `networkRuleSets/default` IP rules.

use serde_json::{Map, Value, json};

use super::{
    Ctx, Extras, default_field, is_ipv4_or_cidr, object_array, properties_mut, random_key,
    secret_key, with_secret,
};
use crate::error::{ArmError, rfc3339};
use crate::resources::ProviderPath;
use crate::state::State;

/// The rule every namespace is created with.
pub(crate) const ROOT_RULE: &str = "RootManageSharedAccessKey";

/// A namespace: sku default, endpoint, status; creates the root rule (and its keys) and the
/// default network rule set.
pub(super) fn finalize_namespace(
    ctx: &Ctx<'_>,
    name: &str,
    resource: &mut Map<String, Value>,
) -> Result<Extras, ArmError> {
    default_field(
        resource,
        "sku",
        json!({"name": "Standard", "tier": "Standard"}),
    );
    let created = ctx
        .kept("/properties/createdAt")
        .unwrap_or_else(|| rfc3339(ctx.now).into());
    let id = resource["id"].as_str().unwrap_or_default().to_owned();
    let location = resource.get("location").cloned().unwrap_or(Value::Null);
    let properties = properties_mut(resource);
    let host = format!("{}.servicebus.windows.net", name.to_lowercase());
    properties.insert(
        "serviceBusEndpoint".into(),
        format!("https://{host}:443/").into(),
    );
    properties.insert(
        "metricId".into(),
        format!("{}:{}", ctx.path.sub, name.to_lowercase()).into(),
    );
    properties.insert("status".into(), "Active".into());
    properties.insert("provisioningState".into(), "Succeeded".into());
    properties.insert("createdAt".into(), created.clone());
    properties.insert("updatedAt".into(), created);
    default_field(properties, "publicNetworkAccess", "Enabled".into());
    default_field(properties, "disableLocalAuth", false.into());

    let key = ctx.path.key();
    let mut extras = Extras::default();
    let rule_key = format!("{key}/authorizationrules/{}", ROOT_RULE.to_lowercase());
    if !ctx.state.resources.contains_key(&rule_key) {
        extras.entries.push((
            rule_key.clone(),
            json!({
                "id": format!("{id}/authorizationRules/{ROOT_RULE}"),
                "name": ROOT_RULE,
                "type": "Microsoft.ServiceBus/Namespaces/AuthorizationRules",
                "location": location,
                "properties": {"rights": ["Listen", "Manage", "Send"]},
            }),
        ));
        extras.entries.push((secret_key(&rule_key), new_keys()));
    }
    let rules_key = format!("{key}/networkrulesets/default");
    if !ctx.state.resources.contains_key(&rules_key) {
        extras.entries.push((
            rules_key,
            json!({
                "id": format!("{id}/networkRuleSets/default"),
                "name": "default",
                "type": "Microsoft.ServiceBus/Namespaces/NetworkRuleSets",
                "location": location,
                "properties": {
                    "defaultAction": "Allow",
                    "publicNetworkAccess": "Enabled",
                    "trustedServiceAccessEnabled": false,
                    "virtualNetworkRules": [],
                    "ipRules": [],
                },
            }),
        ));
    }
    Ok(extras)
}

fn new_keys() -> Value {
    json!({"primaryKey": random_key(32), "secondaryKey": random_key(32)})
}

/// A shared-access rule: `rights` a non-empty set of Listen/Send/Manage, where Manage needs
/// the other two; gets keys when created.
pub(super) fn finalize_rule(
    ctx: &Ctx<'_>,
    resource: &mut Map<String, Value>,
) -> Result<Extras, ArmError> {
    let entity_level = ctx.path.rest.len() > 4;
    let type_name = if entity_level {
        let entity = if ctx.path.rest[2].eq_ignore_ascii_case("queues") {
            "Queues"
        } else {
            "Topics"
        };
        format!("Microsoft.ServiceBus/Namespaces/{entity}/AuthorizationRules")
    } else {
        "Microsoft.ServiceBus/Namespaces/AuthorizationRules".to_owned()
    };
    resource.insert("type".into(), type_name.into());
    let properties = properties_mut(resource);
    let rights: Vec<String> = properties
        .get("rights")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let known = ["Listen", "Send", "Manage"];
    let canonical: Option<Vec<&str>> = rights
        .iter()
        .map(|r| known.iter().copied().find(|k| k.eq_ignore_ascii_case(r)))
        .collect();
    let valid = canonical.as_ref().is_some_and(|c| {
        !c.is_empty() && (!c.contains(&"Manage") || (c.contains(&"Listen") && c.contains(&"Send")))
    });
    let Some(mut canonical) = canonical.filter(|_| valid) else {
        return Err(ArmError::bad_request(
            "BadRequest",
            "The rights of an authorization rule must be a non-empty set of 'Listen', 'Send' and 'Manage'; 'Manage' requires 'Listen' and 'Send'.",
        ));
    };
    canonical.sort_unstable();
    canonical.dedup();
    properties.insert("rights".into(), json!(canonical));
    Ok(Extras {
        secret: ctx.secret().is_none().then(new_keys),
        entries: Vec::new(),
    })
}

/// `networkRuleSets/default`: `defaultAction` Allow/Deny, IP rules `{ipMask, action: Allow}`.
pub(super) fn finalize_network_rule_set(
    ctx: &Ctx<'_>,
    name: &str,
    resource: &mut Map<String, Value>,
) -> Result<(), ArmError> {
    if !name.eq_ignore_ascii_case("default") {
        return Err(ArmError::bad_request(
            "BadRequest",
            "The only network rule set of a namespace is 'default'.",
        ));
    }
    resource.insert("name".into(), "default".into());
    if let Some(location) = ctx.parent().and_then(|ns| ns.get("location")) {
        resource.insert("location".into(), location.clone());
    }
    let properties = properties_mut(resource);
    default_field(properties, "defaultAction", "Allow".into());
    default_field(properties, "publicNetworkAccess", "Enabled".into());
    default_field(properties, "trustedServiceAccessEnabled", false.into());
    default_field(properties, "virtualNetworkRules", json!([]));
    let action_ok = properties["defaultAction"]
        .as_str()
        .is_some_and(|a| a == "Allow" || a == "Deny");
    let rules = object_array(properties, "ipRules");
    let bad = |detail: String| ArmError::bad_request("BadRequest", detail);
    if !action_ok {
        return Err(bad("defaultAction must be 'Allow' or 'Deny'.".into()));
    }
    let rules = rules.map_err(|()| bad("ipRules must be an array of objects.".into()))?;
    let mut normalized = Vec::new();
    for rule in rules {
        let mask = rule
            .get("ipMask")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !is_ipv4_or_cidr(mask, 32) {
            return Err(bad(format!(
                "The ipMask '{mask}' is not a valid IPv4 address or range."
            )));
        }
        normalized.push(json!({"ipMask": mask, "action": "Allow"}));
    }
    properties.insert("ipRules".into(), Value::Array(normalized));
    Ok(())
}

/// The keys of a rule, with connection strings, as `listKeys` returns them.
fn keys_view(rule: &ProviderPath, secret: &Value) -> Value {
    let namespace = rule.rest.get(1).map_or("", String::as_str).to_lowercase();
    let entity = match rule.rest.get(3).filter(|_| rule.rest.len() > 4) {
        Some(entity) => format!(";EntityPath={entity}"),
        None => String::new(),
    };
    let name = rule.name();
    let connection = |key: &Value| {
        format!(
            "Endpoint=sb://{namespace}.servicebus.windows.net/;SharedAccessKeyName={name};SharedAccessKey={}{entity}",
            key.as_str().unwrap_or_default()
        )
    };
    json!({
        "primaryConnectionString": connection(&secret["primaryKey"]),
        "secondaryConnectionString": connection(&secret["secondaryKey"]),
        "primaryKey": secret["primaryKey"],
        "secondaryKey": secret["secondaryKey"],
        "keyName": name,
    })
}

/// `POST .../authorizationRules/{rule}/listKeys`.
pub(super) fn list_keys(state: &State, rule: &ProviderPath) -> Result<Value, ArmError> {
    let (resource, secret) = with_secret(state, rule)?;
    let mut path = rule.clone();
    if let Some(name) = resource["name"].as_str() {
        if let Some(last) = path.rest.last_mut() {
            *last = name.to_owned();
        }
    }
    Ok(keys_view(&path, secret))
}

/// `POST .../regenerateKeys` `{"keyType":"PrimaryKey"|"SecondaryKey"}`.
pub(super) fn regenerate_keys(
    state: &mut State,
    rule: &ProviderPath,
    body: &[u8],
) -> Result<Value, ArmError> {
    let (_, secret) = with_secret(state, rule)?;
    let mut secret = secret.clone();
    let field = match serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|b| b["keyType"].as_str().map(str::to_ascii_lowercase))
        .as_deref()
    {
        Some("primarykey") => "primaryKey",
        Some("secondarykey") => "secondaryKey",
        _ => {
            return Err(ArmError::bad_request(
                "BadRequest",
                "keyType must be 'PrimaryKey' or 'SecondaryKey'.",
            ));
        }
    };
    secret[field] = random_key(32).into();
    state
        .resources
        .insert(secret_key(&rule.key()), secret.clone());
    list_keys(state, rule)
}
