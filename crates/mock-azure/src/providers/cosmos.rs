//! `Microsoft.DocumentDB/databaseAccounts` (2024-05-15): endpoint, IP rules, keys
//! (`listKeys`, `readonlykeys`, `listConnectionStrings`), SQL databases, the built-in SQL role
//! definitions and SQL role assignments.

use serde_json::{Map, Value, json};

use super::{
    Ctx, Extras, default_field, is_ipv4_or_cidr, object_array, properties_mut, random_key,
    with_secret,
};
use crate::error::{ArmError, new_uuid};
use crate::resources::{self, ProviderPath};
use crate::state::State;

/// The built-in data-plane roles of every account: (name, role name, data actions).
const BUILT_IN_ROLES: [(&str, &str, &[&str]); 2] = [
    (
        "00000000-0000-0000-0000-000000000001",
        "Cosmos DB Built-in Data Reader",
        &[
            "Microsoft.DocumentDB/databaseAccounts/readMetadata",
            "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/executeQuery",
            "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/readChangeFeed",
            "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/read",
        ],
    ),
    (
        "00000000-0000-0000-0000-000000000002",
        "Cosmos DB Built-in Data Contributor",
        &[
            "Microsoft.DocumentDB/databaseAccounts/readMetadata",
            "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/*",
            "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/*",
        ],
    ),
];

/// An account: kind and offer defaults, `documentEndpoint`, locations, IP rules; keys created
/// with it.
pub(super) fn finalize_account(
    ctx: &Ctx<'_>,
    name: &str,
    resource: &mut Map<String, Value>,
) -> Result<Extras, ArmError> {
    default_field(resource, "kind", "GlobalDocumentDB".into());
    let location = resource
        .get("location")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let properties = properties_mut(resource);
    let endpoint = format!("https://{}.documents.azure.com:443/", name.to_lowercase());
    properties.insert("documentEndpoint".into(), endpoint.into());
    properties.insert("provisioningState".into(), "Succeeded".into());
    default_field(properties, "databaseAccountOfferType", "Standard".into());
    default_field(properties, "publicNetworkAccess", "Enabled".into());
    default_field(properties, "disableLocalAuth", false.into());
    default_field(
        properties,
        "locations",
        json!([{"locationName": location, "failoverPriority": 0, "isZoneRedundant": false}]),
    );
    default_field(properties, "ipRules", json!([]));
    let rules = object_array(properties, "ipRules")
        .map_err(|()| bad("ipRules must be an array of objects."))?;
    for rule in rules {
        let value = rule
            .get("ipAddressOrRange")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !is_ipv4_or_cidr(value, 32) {
            return Err(bad(&format!(
                "The ipAddressOrRange '{value}' is not a valid IPv4 address or range."
            )));
        }
    }
    let keys = || {
        json!({
            "primaryMasterKey": random_key(64),
            "secondaryMasterKey": random_key(64),
            "primaryReadonlyMasterKey": random_key(64),
            "secondaryReadonlyMasterKey": random_key(64),
        })
    };
    Ok(Extras {
        secret: ctx.secret().is_none().then(keys),
        entries: Vec::new(),
    })
}

fn bad(message: &str) -> ArmError {
    ArmError::bad_request("BadRequest", message)
}

/// A SQL database: `properties.resource.id` defaults to the name; system fields added.
pub(super) fn finalize_sql_database(ctx: &Ctx<'_>, name: &str, resource: &mut Map<String, Value>) {
    let rid = ctx
        .kept("/properties/resource/_rid")
        .unwrap_or_else(|| new_uuid().simple().to_string()[..8].to_owned().into());
    let ts = ctx.now.timestamp();
    let properties = properties_mut(resource);
    let mut inner = properties
        .get("resource")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    default_field(&mut inner, "id", name.into());
    inner.insert("_rid".into(), rid);
    inner.insert("_ts".into(), ts.into());
    inner.insert("_etag".into(), format!("\"{}\"", new_uuid()).into());
    inner.insert("_colls".into(), "colls/".into());
    inner.insert("_users".into(), "users/".into());
    properties.insert("resource".into(), Value::Object(inner));
    properties.remove("options");
}

/// Custom role definitions may be stored; their name must be a GUID and not a built-in one.
pub(super) fn validate_role_definition(name: &str) -> Result<(), ArmError> {
    if uuid::Uuid::try_parse(name).is_err() || BUILT_IN_ROLES.iter().any(|(id, ..)| *id == name) {
        return Err(bad(&format!(
            "The role definition id '{name}' must be a GUID that is not a built-in role."
        )));
    }
    Ok(())
}

/// A SQL role assignment: GUID name, a role definition of this account (built-in or stored),
/// a scope inside the account, and a GUID principal.
pub(super) fn validate_role_assignment(
    ctx: &Ctx<'_>,
    name: &str,
    resource: &mut Map<String, Value>,
) -> Result<(), ArmError> {
    if uuid::Uuid::try_parse(name).is_err() {
        return Err(bad(&format!(
            "The role assignment id '{name}' must be a GUID."
        )));
    }
    let account = ctx.path.parent().ok_or_else(|| bad("missing account"))?;
    let account_id = ctx
        .parent()
        .and_then(|a| a["id"].as_str())
        .unwrap_or_default()
        .to_owned();
    let properties = properties_mut(resource);
    let text = |field: &str| {
        properties
            .get(field)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| bad(&format!("The property '{field}' is required.")))
    };
    let role = text("roleDefinitionId")?;
    let scope = text("scope")?;
    let principal = text("principalId")?;
    let role_prefix = format!("{}/sqlroledefinitions/", account.key());
    let role_name = role
        .to_lowercase()
        .strip_prefix(&role_prefix)
        .map(str::to_owned)
        .filter(|n| !n.contains('/'));
    let role_exists = role_name.as_deref().is_some_and(|n| {
        BUILT_IN_ROLES.iter().any(|(id, ..)| *id == n)
            || ctx
                .state
                .resources
                .contains_key(&format!("{role_prefix}{n}"))
    });
    if !role_exists {
        return Err(bad(&format!(
            "The provided SQL Role Definition Id '{role}' does not exist in this account."
        )));
    }
    let scope_lower = scope.trim_end_matches('/').to_lowercase();
    let in_account =
        scope_lower == account.key() || scope_lower.starts_with(&format!("{}/", account.key()));
    if !in_account {
        return Err(bad(&format!(
            "The provided scope '{scope}' is not a valid scope within the account '{account_id}'."
        )));
    }
    if uuid::Uuid::try_parse(&principal).is_err() {
        return Err(bad(&format!(
            "The principal id '{principal}' must be a GUID."
        )));
    }
    properties.insert("provisioningState".into(), "Succeeded".into());
    Ok(())
}

fn role_definition(account: &Value, (id, role_name, actions): (&str, &str, &[&str])) -> Value {
    let account_id = account["id"].as_str().unwrap_or_default();
    json!({
        "id": format!("{account_id}/sqlRoleDefinitions/{id}"),
        "name": id,
        "type": "Microsoft.DocumentDB/databaseAccounts/sqlRoleDefinitions",
        "properties": {
            "roleName": role_name,
            "type": "BuiltInRole",
            "assignableScopes": [account_id],
            "permissions": [{"dataActions": actions, "notDataActions": []}],
        },
    })
}

/// A built-in role definition of an existing account, addressed by its GUID.
pub(super) fn built_in_role_definition(state: &State, path: &ProviderPath) -> Option<Value> {
    let role = BUILT_IN_ROLES.iter().find(|(id, ..)| *id == path.name())?;
    let account = resources::get_ref(state, &path.parent()?).ok()?;
    Some(role_definition(account, *role))
}

/// The built-in role definitions when `collection` is an account's `sqlRoleDefinitions`.
pub(super) fn built_in_role_definitions(state: &State, collection: &ProviderPath) -> Vec<Value> {
    let is_collection = collection.rest.len() == 3
        && collection
            .namespace
            .eq_ignore_ascii_case("Microsoft.DocumentDB")
        && collection.rest[0].eq_ignore_ascii_case("databaseAccounts")
        && collection.rest[2].eq_ignore_ascii_case("sqlRoleDefinitions");
    let account = collection
        .parent()
        .filter(|_| is_collection)
        .and_then(|account| resources::get_ref(state, &account).ok());
    match account {
        Some(account) => BUILT_IN_ROLES
            .iter()
            .map(|role| role_definition(account, *role))
            .collect(),
        None => Vec::new(),
    }
}

/// `POST .../listKeys` (all four keys) or `.../readonlykeys` (the read-only two).
pub(super) fn list_keys(
    state: &State,
    account: &ProviderPath,
    read_only: bool,
) -> Result<Value, ArmError> {
    let (_, secret) = with_secret(state, account)?;
    if read_only {
        return Ok(json!({
            "primaryReadonlyMasterKey": secret["primaryReadonlyMasterKey"],
            "secondaryReadonlyMasterKey": secret["secondaryReadonlyMasterKey"],
        }));
    }
    Ok(secret.clone())
}

/// `POST .../listConnectionStrings`: the four SQL connection strings.
pub(super) fn list_connection_strings(
    state: &State,
    account: &ProviderPath,
) -> Result<Value, ArmError> {
    let (resource, secret) = with_secret(state, account)?;
    let endpoint = resource["properties"]["documentEndpoint"]
        .as_str()
        .unwrap_or_default();
    let strings: Vec<Value> = [
        (
            "primaryMasterKey",
            "Primary SQL Connection String",
            "Primary",
        ),
        (
            "secondaryMasterKey",
            "Secondary SQL Connection String",
            "Secondary",
        ),
        (
            "primaryReadonlyMasterKey",
            "Primary Read-Only SQL Connection String",
            "PrimaryReadonly",
        ),
        (
            "secondaryReadonlyMasterKey",
            "Secondary Read-Only SQL Connection String",
            "SecondaryReadonly",
        ),
    ]
    .iter()
    .map(|(field, description, kind)| {
        json!({
            "connectionString": format!(
                "AccountEndpoint={endpoint};AccountKey={};",
                secret[*field].as_str().unwrap_or_default()
            ),
            "description": description,
            "keyKind": kind,
            "type": "Sql",
        })
    })
    .collect();
    Ok(json!({ "connectionStrings": strings }))
}
