//! Managed identities: the `identity` object that sites and container apps share (read, and
//! changed one identity at a time with a PATCH), and the directory of user-assigned
//! identities (`Microsoft.ManagedIdentity/userAssignedIdentities`), searched by client id.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use tether_model::ids::ResourceId;

use crate::arm::{ArmClient, Method};
use crate::{
    AdapterError, Call, Identities, IdentityChange, Principal, SourceIdentity, UserIdentity,
};

const IDENTITIES_API: &str = "2023-01-31";

/// The identities a resource body holds.
pub(super) fn parse(resource: &Value) -> SourceIdentity {
    let identity = &resource["identity"];
    let kind = identity["type"]
        .as_str()
        .unwrap_or("None")
        .to_ascii_lowercase();
    let system = kind.contains("systemassigned").then(|| Principal {
        principal_id: identity["principalId"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        client_id: None,
    });
    let user = identity["userAssignedIdentities"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(id, v)| {
            let principal = Principal {
                principal_id: v["principalId"].as_str().unwrap_or_default().to_string(),
                client_id: v["clientId"].as_str().map(str::to_string),
            };
            (id.to_ascii_lowercase(), principal)
        })
        .collect();
    SourceIdentity { system, user }
}

/// The `identity` body after `change` to `resource` (as read), or `None` when it is already
/// in effect. User-assigned identities keep the spelling `resource` has them under, and a
/// detached one that leaves others is sent as `null`: a PATCH merges (RFC 7386), so leaving
/// it out would keep it.
fn changed(resource: &Value, change: &IdentityChange) -> Option<Value> {
    let mut system = parse(resource).system.is_some();
    // Lower-cased id -> the id as spelled.
    let mut users: BTreeMap<String, String> = resource["identity"]["userAssignedIdentities"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(id, _)| (id.to_ascii_lowercase(), id.clone()))
        .collect();
    let mut detached = None;
    match change {
        IdentityChange::EnableSystem if !system => system = true,
        IdentityChange::DisableSystem if system => system = false,
        IdentityChange::Attach(id) if !users.contains_key(id.key()) => {
            users.insert(id.key().to_string(), id.as_str().to_string());
        }
        IdentityChange::Detach(id) if users.contains_key(id.key()) => {
            detached = users.remove(id.key());
        }
        _ => return None,
    }
    let kind = match (system, !users.is_empty()) {
        (true, true) => "SystemAssigned, UserAssigned",
        (true, false) => "SystemAssigned",
        (false, true) => "UserAssigned",
        (false, false) => "None",
    };
    let mut identity = Map::new();
    identity.insert("type".into(), kind.into());
    if !users.is_empty() {
        let mut ids: Map<String, Value> = users.into_values().map(|id| (id, json!({}))).collect();
        ids.extend(detached.map(|id| (id, Value::Null)));
        identity.insert("userAssignedIdentities".into(), Value::Object(ids));
    }
    Some(json!({ "identity": identity }))
}

/// Reads a resource's identities.
pub(super) async fn read(
    arm: &ArmClient,
    call: &Call,
    resource: &ResourceId,
    api: &str,
) -> Result<SourceIdentity, AdapterError> {
    Ok(parse(&arm.get(call, resource.as_str(), api).await?))
}

/// Applies one identity change to a resource with a PATCH (nothing when it is in effect) and
/// returns the identities after it.
pub(super) async fn apply(
    arm: &ArmClient,
    call: &Call,
    resource: &ResourceId,
    api: &str,
    change: &IdentityChange,
) -> Result<SourceIdentity, AdapterError> {
    let current = arm.get(call, resource.as_str(), api).await?;
    let Some(body) = changed(&current, change) else {
        return Ok(parse(&current));
    };
    arm.write(call, Method::PATCH, resource.as_str(), api, &body)
        .await?;
    read(arm, call, resource, api).await
}

/// The user-assigned identities of the subscriptions Tether can see.
pub struct ArmIdentities {
    arm: ArmClient,
}

impl ArmIdentities {
    /// A directory over `arm`.
    pub fn new(arm: ArmClient) -> Self {
        Self { arm }
    }
}

#[async_trait]
impl Identities for ArmIdentities {
    async fn find(
        &self,
        call: &Call,
        subscription: &str,
        client_id: &str,
    ) -> Result<Option<UserIdentity>, AdapterError> {
        let path = format!(
            "/subscriptions/{subscription}/providers/Microsoft.ManagedIdentity/userAssignedIdentities"
        );
        let body = self.arm.get(call, &path, IDENTITIES_API).await?;
        let found = body["value"].as_array().into_iter().flatten().find(|v| {
            v["properties"]["clientId"]
                .as_str()
                .is_some_and(|c| c.eq_ignore_ascii_case(client_id))
        });
        let Some(found) = found else { return Ok(None) };
        let id = found["id"]
            .as_str()
            .and_then(|id| ResourceId::parse(id).ok())
            .ok_or_else(|| {
                AdapterError::new(
                    crate::ErrorKind::Protocol,
                    "list user-assigned identities",
                    "InvalidResponse",
                    "an identity has no valid id",
                )
            })?;
        Ok(Some(UserIdentity {
            id,
            principal: Principal {
                principal_id: found["properties"]["principalId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                client_id: found["properties"]["clientId"].as_str().map(str::to_string),
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_compute_the_whole_identity_or_nothing() {
        let none = json!({});
        assert_eq!(
            changed(&none, &IdentityChange::EnableSystem),
            Some(json!({"identity": {"type": "SystemAssigned"}}))
        );
        assert_eq!(changed(&none, &IdentityChange::DisableSystem), None);
        let uai = ResourceId::parse("/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/Id").unwrap();
        let both = json!({"identity": {"type": "SystemAssigned", "principalId": "p"}});
        let attached = changed(&both, &IdentityChange::Attach(uai.clone())).unwrap();
        assert_eq!(attached["identity"]["type"], "SystemAssigned, UserAssigned");
        assert!(attached["identity"]["userAssignedIdentities"][uai.as_str()].is_object());
        let with_user = json!({"identity": {"type": "UserAssigned",
            "userAssignedIdentities": {uai.as_str(): {"principalId": "u", "clientId": "c"}}}});
        assert_eq!(
            parse(&with_user).user[uai.key()].client_id.as_deref(),
            Some("c")
        );
        assert_eq!(
            changed(&with_user, &IdentityChange::Detach(uai.clone())),
            Some(json!({"identity": {"type": "None"}}))
        );
        // Detaching one of two: the other is kept as spelled, the detached one is nulled.
        let other = "/subscriptions/S/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/Other";
        let with_two = json!({"identity": {"type": "UserAssigned",
            "userAssignedIdentities": {uai.as_str(): {}, other: {}}}});
        assert_eq!(
            changed(&with_two, &IdentityChange::Detach(uai.clone())),
            Some(json!({"identity": {"type": "UserAssigned",
                "userAssignedIdentities": {other: {}, uai.as_str(): null}}}))
        );
    }
}
