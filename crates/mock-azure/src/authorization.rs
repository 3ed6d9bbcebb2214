//! `Microsoft.Authorization` (2022-04-01) at any scope: role assignments (stored under
//! `{scope}/providers/Microsoft.Authorization/roleAssignments/{guid}`) and the built-in role
//! definitions (a fixed table with Azure's real ids, never stored).
//!
//! Rules copied from Azure: the assignment name is a GUID, the role definition must exist
//! (`400 RoleDefinitionDoesNotExist`), the same (scope, role, principal) under another name is
//! `409 RoleAssignmentExists`, an existing assignment cannot be changed
//! (`400 RoleAssignmentUpdateNotPermitted`), and the scope must exist (except a subscription).

use axum::http::{Method, StatusCode};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::error::{ArmError, rfc3339};
use crate::resources::{self, ProviderPath};
use crate::state::State;

/// Built-in roles: (id, name, description, actions, data actions).
const BUILT_IN_ROLES: [(&str, &str, &str); 22] = [
    (
        "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        "Owner",
        "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.",
    ),
    (
        "b24988ac-6180-42a0-ab88-20f7382dd24c",
        "Contributor",
        "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC.",
    ),
    (
        "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        "Reader",
        "View all resources, but does not allow you to make any changes.",
    ),
    (
        "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
        "User Access Administrator",
        "Lets you manage user access to Azure resources.",
    ),
    (
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
        "Storage Blob Data Owner",
        "Provides full access to Azure Storage blob containers and data, including assigning POSIX access control.",
    ),
    (
        "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
        "Storage Blob Data Contributor",
        "Allows for read, write and delete access to Azure Storage blob containers and data.",
    ),
    (
        "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
        "Storage Blob Data Reader",
        "Allows for read access to Azure Storage blob containers and data.",
    ),
    (
        "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
        "Storage Queue Data Contributor",
        "Allows for read, write, and delete access to Azure Storage queues and queue messages.",
    ),
    (
        "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
        "Storage Table Data Contributor",
        "Allows for read, write and delete access to Azure Storage tables and entities.",
    ),
    (
        "69566ab7-960f-475b-8e7c-b3118f30c6bd",
        "Storage File Data Privileged Contributor",
        "Allows for read, write, delete, and modify ACLs on files/directories in Azure file shares.",
    ),
    (
        "4633458b-17de-408a-b874-0445c86b69e6",
        "Key Vault Secrets User",
        "Read secret contents.",
    ),
    (
        "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
        "Key Vault Secrets Officer",
        "Perform any action on the secrets of a key vault, except manage permissions.",
    ),
    (
        "00482a5a-887f-4fb3-b363-3b7fe8e74483",
        "Key Vault Administrator",
        "Perform all data plane operations on a key vault and all objects in it.",
    ),
    (
        "090c5cfd-751d-490a-894a-3ce6f1109419",
        "Azure Service Bus Data Owner",
        "Allows for full access to Azure Service Bus resources.",
    ),
    (
        "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39",
        "Azure Service Bus Data Sender",
        "Allows for send access to Azure Service Bus resources.",
    ),
    (
        "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0",
        "Azure Service Bus Data Receiver",
        "Allows for receive access to Azure Service Bus resources.",
    ),
    (
        "f526a384-b230-433a-b45c-95f59c4a2dec",
        "Azure Event Hubs Data Owner",
        "Allows for full access to Azure Event Hubs resources.",
    ),
    (
        "5ae67dd6-50cb-40e7-96ff-dc2bfa4b606b",
        "App Configuration Data Owner",
        "Allows full access to App Configuration data.",
    ),
    (
        "516239f1-63e1-4d78-a4de-a74fb236a071",
        "App Configuration Data Reader",
        "Allows read access to App Configuration data.",
    ),
    (
        "e0f68234-74aa-48ed-b826-c38b57376e17",
        "Redis Cache Contributor",
        "Lets you manage Redis caches, but not access to them.",
    ),
    (
        "fbdf93bf-df7d-467e-a4d2-9458aa1360c8",
        "Cosmos DB Account Reader Role",
        "Can read Azure Cosmos DB account data.",
    ),
    (
        "5bd9cd88-fe45-4216-938b-f97437e15450",
        "DocumentDB Account Contributor",
        "Lets you manage Azure Cosmos DB accounts, but not access data in them.",
    ),
];

/// The principal types Azure accepts.
const PRINCIPAL_TYPES: [&str; 5] = [
    "User",
    "Group",
    "ServicePrincipal",
    "ForeignGroup",
    "Device",
];

/// Splits a path at `providers/Microsoft.Authorization` placed where a provider segment may
/// stand (root, subscription, resource group, after a resource): `(scope, rest)`.
pub(crate) fn split(segments: &[String]) -> Option<(Vec<String>, Vec<String>)> {
    let lower: Vec<String> = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
    let at = (0..lower.len().saturating_sub(1)).find(|&i| {
        lower[i] == "providers"
            && lower[i + 1] == "microsoft.authorization"
            && match i {
                0 => true,
                2 => lower[0] == "subscriptions",
                4 => lower[0] == "subscriptions" && lower[2] == "resourcegroups",
                _ => {
                    i >= 8
                        && (i - 6) % 2 == 0
                        && lower[0] == "subscriptions"
                        && lower[2] == "resourcegroups"
                        && lower[4] == "providers"
                }
            }
    })?;
    Some((segments[..at].to_vec(), segments[at + 2..].to_vec()))
}

/// The answer of an authorization route: status and optional body.
pub(crate) type Answer = (StatusCode, Option<Value>);

/// Serves `{scope}/providers/Microsoft.Authorization/{rest}`.
pub(crate) fn handle(
    state: &mut State,
    method: &Method,
    query: Option<&str>,
    body: &[u8],
    scope: &[String],
    rest: &[String],
    now: DateTime<Utc>,
) -> Result<Option<Answer>, ArmError> {
    let lower: Vec<String> = rest.iter().map(|s| s.to_ascii_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    let scope_id = scope_id(scope);
    let filter = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "$filter")
            .map(|(_, v)| v.into_owned())
    });
    Ok(Some(match (lower.as_slice(), method) {
        (["roledefinitions"], &Method::GET) => {
            check_scope(state, scope, true)?;
            let wanted = match filter.as_deref() {
                None => None,
                Some(f) => Some(role_name_filter(f)?),
            };
            let value: Vec<Value> = BUILT_IN_ROLES
                .iter()
                .filter(|(_, name, _)| {
                    wanted
                        .as_deref()
                        .is_none_or(|w| name.eq_ignore_ascii_case(w))
                })
                .map(|role| role_definition(&scope_id, *role))
                .collect();
            (StatusCode::OK, Some(json!({ "value": value })))
        }
        (["roledefinitions", id], &Method::GET) => {
            check_scope(state, scope, true)?;
            let role = BUILT_IN_ROLES
                .iter()
                .find(|(guid, ..)| guid.eq_ignore_ascii_case(id))
                .ok_or_else(|| {
                    ArmError::not_found(
                        "RoleDefinitionDoesNotExist",
                        format!("The specified role definition with ID '{id}' does not exist."),
                    )
                })?;
            (StatusCode::OK, Some(role_definition(&scope_id, *role)))
        }
        _ if scope.is_empty() => return Ok(None),
        (["roleassignments"], &Method::GET) => {
            check_scope(state, scope, false)?;
            let value = list_assignments(state, &scope_id, filter.as_deref())?;
            (StatusCode::OK, Some(json!({ "value": value })))
        }
        (["roleassignments", _], &Method::GET) => {
            check_scope(state, scope, false)?;
            let key = assignment_key(&scope_id, &rest[1]);
            let found = state.resources.get(&key).cloned().ok_or_else(|| {
                ArmError::not_found(
                    "RoleAssignmentNotFound",
                    format!("The role assignment '{}' is not found.", rest[1]),
                )
            })?;
            (StatusCode::OK, Some(found))
        }
        (["roleassignments", _], &Method::PUT) => {
            check_scope(state, scope, false)?;
            let assignment = put_assignment(state, scope, &scope_id, &rest[1], body, now)?;
            (StatusCode::CREATED, Some(assignment))
        }
        (["roleassignments", _], &Method::DELETE) => {
            check_scope(state, scope, false)?;
            match state.resources.remove(&assignment_key(&scope_id, &rest[1])) {
                Some(removed) => (StatusCode::OK, Some(removed)),
                None => (StatusCode::NO_CONTENT, None),
            }
        }
        (["roleassignments" | "roledefinitions", ..], _) => {
            return Err(ArmError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("The requested resource does not support http method '{method}'."),
            ));
        }
        _ => return Ok(None),
    }))
}

/// `/`-joined scope in caller casing (`""` for the root).
fn scope_id(scope: &[String]) -> String {
    scope.iter().map(|s| format!("/{s}")).collect()
}

fn assignment_key(scope_id: &str, name: &str) -> String {
    format!("{scope_id}/providers/Microsoft.Authorization/roleAssignments/{name}").to_lowercase()
}

/// The scope must exist: the root (role definitions only) and subscriptions always do.
fn check_scope(state: &State, scope: &[String], root_ok: bool) -> Result<(), ArmError> {
    match scope.len() {
        0 if root_ok => Ok(()),
        2 => Ok(()),
        4 => resources::get_resource_group(state, &scope[1], &scope[3]).map(|_| ()),
        _ => {
            let path = ProviderPath::parse(scope)
                .filter(ProviderPath::is_resource)
                .ok_or_else(|| {
                    ArmError::bad_request(
                        "InvalidScope",
                        format!("The scope '{}' is not valid.", scope_id(scope)),
                    )
                })?;
            if resources::exists(state, &path) {
                Ok(())
            } else {
                resources::get(state, &path).map(|_| ())
            }
        }
    }
}

fn role_definition(scope_id: &str, (id, name, description): (&str, &str, &str)) -> Value {
    let (actions, not_actions): (&[&str], &[&str]) = match name {
        "Owner" => (&["*"], &[]),
        "Contributor" => (
            &["*"],
            &[
                "Microsoft.Authorization/*/Delete",
                "Microsoft.Authorization/*/Write",
                "Microsoft.Authorization/elevateAccess/Action",
            ],
        ),
        "User Access Administrator" => (&["*/read", "Microsoft.Authorization/*"], &[]),
        _ => (&["*/read"], &[]),
    };
    json!({
        "id": format!("{scope_id}/providers/Microsoft.Authorization/roleDefinitions/{id}"),
        "name": id,
        "type": "Microsoft.Authorization/roleDefinitions",
        "properties": {
            "roleName": name,
            "type": "BuiltInRole",
            "description": description,
            "assignableScopes": ["/"],
            "permissions": [{
                "actions": actions,
                "notActions": not_actions,
                "dataActions": [],
                "notDataActions": [],
            }],
            "createdOn": "2015-02-02T21:55:09.8806423Z",
            "updatedOn": "2024-01-01T00:00:00.0000000Z",
            "createdBy": null,
            "updatedBy": null,
        },
    })
}

/// `roleName eq 'X'` (the only role-definition filter served).
fn role_name_filter(filter: &str) -> Result<String, ArmError> {
    let quoted = filter
        .trim()
        .strip_prefix("roleName eq ")
        .map(str::trim)
        .and_then(|v| v.strip_prefix('\'')?.strip_suffix('\''));
    quoted
        .map(|v| v.replace("''", "'"))
        .ok_or_else(|| unsupported_filter(filter))
}

fn unsupported_filter(filter: &str) -> ArmError {
    ArmError::bad_request(
        "UnsupportedQuery",
        format!("The filter '{filter}' is not supported."),
    )
}

/// The built-in role a `roleDefinitionId` names: `/providers/...` or
/// `/subscriptions/{sub}/providers/...` + `Microsoft.Authorization/roleDefinitions/{guid}`.
fn resolve_role(role_definition_id: &str) -> Result<&'static str, ArmError> {
    let segments: Vec<&str> = role_definition_id
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let lower: Vec<String> = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    let id = match lower.as_slice() {
        [
            "providers",
            "microsoft.authorization",
            "roledefinitions",
            id,
        ]
        | [
            "subscriptions",
            _,
            "providers",
            "microsoft.authorization",
            "roledefinitions",
            id,
        ] => *id,
        _ => {
            return Err(ArmError::bad_request(
                "InvalidRoleDefinitionId",
                format!("The role definition ID '{role_definition_id}' is not valid."),
            ));
        }
    };
    BUILT_IN_ROLES
        .iter()
        .find(|(guid, ..)| guid.eq_ignore_ascii_case(id))
        .map(|(guid, ..)| *guid)
        .ok_or_else(|| {
            ArmError::bad_request(
                "RoleDefinitionDoesNotExist",
                format!("The specified role definition with ID '{id}' does not exist."),
            )
        })
}

fn put_assignment(
    state: &mut State,
    scope: &[String],
    scope_id: &str,
    name: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Value, ArmError> {
    if uuid::Uuid::try_parse(name).is_err() {
        return Err(ArmError::bad_request(
            "InvalidRoleAssignmentId",
            format!(
                "The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."
            ),
        ));
    }
    let body: Value = serde_json::from_slice(body).map_err(ArmError::invalid_content)?;
    let properties = body.get("properties").cloned().unwrap_or(Value::Null);
    let text = |field: &str| {
        properties
            .get(field)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let role_id = text("roleDefinitionId").ok_or_else(|| {
        ArmError::bad_request(
            "InvalidRoleDefinitionId",
            "The role definition ID is required.",
        )
    })?;
    let role = resolve_role(&role_id)?;
    let principal = text("principalId")
        .filter(|p| uuid::Uuid::try_parse(p).is_ok())
        .ok_or_else(|| {
            ArmError::bad_request(
                "InvalidPrincipalId",
                "A valid principal ID must be provided for role assignment.",
            )
        })?
        .to_lowercase();
    let principal_type = match text("principalType") {
        None => "ServicePrincipal".to_owned(),
        Some(t) => PRINCIPAL_TYPES
            .iter()
            .find(|p| p.eq_ignore_ascii_case(&t))
            .map(|p| (*p).to_owned())
            .ok_or_else(|| {
                ArmError::bad_request(
                    "InvalidPrincipalType",
                    format!("The principal type '{t}' is not valid."),
                )
            })?,
    };
    let sub = &scope[1];
    let key = assignment_key(scope_id, name);
    let role_of = |a: &Value| {
        a["properties"]["roleDefinitionId"]
            .as_str()
            .and_then(|r| r.rsplit('/').next())
            .map(str::to_ascii_lowercase)
    };
    let same = |a: &Value| {
        role_of(a).as_deref() == Some(role)
            && a["properties"]["principalId"].as_str() == Some(principal.as_str())
    };
    if let Some(existing) = state.resources.get(&key) {
        if same(existing) {
            return Ok(existing.clone());
        }
        return Err(ArmError::bad_request(
            "RoleAssignmentUpdateNotPermitted",
            "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
        ));
    }
    let scope_lower = scope_id.to_lowercase();
    if let Some(duplicate) = assignments(state)
        .find(|(_, a)| {
            a["properties"]["scope"].as_str().map(str::to_lowercase) == Some(scope_lower.clone())
                && same(a)
        })
        .map(|(_, a)| a["id"].clone())
    {
        return Err(ArmError::new(
            StatusCode::CONFLICT,
            "RoleAssignmentExists",
            format!(
                "The role assignment already exists. The ID of the existing role assignment is {}.",
                duplicate
                    .as_str()
                    .unwrap_or_default()
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
            ),
        ));
    }
    let at = rfc3339(now);
    let assignment = json!({
        "id": format!("{scope_id}/providers/Microsoft.Authorization/roleAssignments/{name}"),
        "name": name,
        "type": "Microsoft.Authorization/roleAssignments",
        "properties": {
            "roleDefinitionId": format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role}"),
            "principalId": principal,
            "principalType": principal_type,
            "scope": scope_id,
            "condition": properties.get("condition").cloned().unwrap_or(Value::Null),
            "conditionVersion": properties.get("conditionVersion").cloned().unwrap_or(Value::Null),
            "description": properties.get("description").cloned().unwrap_or(Value::Null),
            "createdOn": at,
            "updatedOn": at,
            "createdBy": null,
            "updatedBy": null,
            "delegatedManagedIdentityResourceId": null,
        },
    });
    state.resources.insert(key, assignment.clone());
    Ok(assignment)
}

/// Every stored role assignment with its key.
fn assignments(state: &State) -> impl Iterator<Item = (&String, &Value)> {
    state
        .resources
        .iter()
        .filter(|(k, _)| k.contains("/providers/microsoft.authorization/roleassignments/"))
}

/// Role assignments that apply to a scope: at, above or below it; `atScope()` keeps at and
/// above, `principalId eq '{id}'` keeps one principal's (clauses joined by ` and `).
fn list_assignments(
    state: &State,
    scope_id: &str,
    filter: Option<&str>,
) -> Result<Vec<Value>, ArmError> {
    let mut at_scope = false;
    let mut principal: Option<String> = None;
    for clause in filter.unwrap_or_default().split(" and ").map(str::trim) {
        if clause.is_empty() {
            continue;
        }
        if clause.eq_ignore_ascii_case("atScope()") {
            at_scope = true;
        } else if let Some(value) = clause
            .strip_prefix("principalId eq ")
            .map(str::trim)
            .and_then(|v| v.strip_prefix('\'')?.strip_suffix('\''))
        {
            principal = Some(value.to_lowercase());
        } else {
            return Err(unsupported_filter(filter.unwrap_or_default()));
        }
    }
    let target = scope_id.to_lowercase();
    Ok(assignments(state)
        .map(|(_, a)| a)
        .filter(|a| {
            let scope = a["properties"]["scope"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase();
            let at_or_above = scope == target || target.starts_with(&format!("{scope}/"));
            let below = scope.starts_with(&format!("{target}/"));
            let placed = at_or_above || (!at_scope && below);
            let whose = principal
                .as_deref()
                .is_none_or(|p| a["properties"]["principalId"].as_str() == Some(p));
            placed && whose
        })
        .cloned()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Vec<String> {
        path.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn authorization_paths_split_at_any_scope() {
        let (scope, rest) = split(&segs(
            "/providers/Microsoft.Authorization/roleDefinitions/x",
        ))
        .unwrap();
        assert!(scope.is_empty());
        assert_eq!(rest, vec!["roleDefinitions", "x"]);
        let (scope, _) = split(&segs(
            "/subscriptions/s/providers/microsoft.authorization/roleAssignments",
        ))
        .unwrap();
        assert_eq!(scope, vec!["subscriptions", "s"]);
        let (scope, _) = split(&segs(
            "/subscriptions/s/resourceGroups/r/providers/Microsoft.Cache/redis/c/databases/0/providers/Microsoft.Authorization/roleAssignments/a",
        ))
        .unwrap();
        assert_eq!(scope.len(), 10);
        assert!(
            split(&segs(
                "/subscriptions/s/resourceGroups/r/providers/Microsoft.Web/sites/x"
            ))
            .is_none()
        );
        // A name "providers" in a name position is not a provider segment.
        assert!(split(&segs("/subscriptions/s/resourceGroups/r/providers/N/t/providers/Microsoft.Authorization/x")).is_none());
    }

    #[test]
    fn role_ids_resolve_in_both_forms() {
        assert_eq!(
            resolve_role("/providers/Microsoft.Authorization/roleDefinitions/ACDD72A7-3385-48EF-BD42-F606FBA81AE7").unwrap(),
            "acdd72a7-3385-48ef-bd42-f606fba81ae7"
        );
        assert!(resolve_role("/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/b24988ac-6180-42a0-ab88-20f7382dd24c").is_ok());
        assert_eq!(
            resolve_role("/providers/Microsoft.Authorization/roleDefinitions/00000000-0000-0000-0000-000000000000").unwrap_err().code,
            "RoleDefinitionDoesNotExist"
        );
        assert_eq!(
            resolve_role("nonsense").unwrap_err().code,
            "InvalidRoleDefinitionId"
        );
    }
}
