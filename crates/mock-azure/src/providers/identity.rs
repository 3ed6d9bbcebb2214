//! Managed identities: the `identity` block of sources (sites, container apps, database servers)
//! and `Microsoft.ManagedIdentity/userAssignedIdentities`.
//!
//! Like ARM: `SystemAssigned` gets a principal id that stays stable while it remains enabled;
//! `UserAssigned` entries must name existing user-assigned identities and report *their*
//! principal and client ids; `None` removes the block.

use serde_json::{Map, Value, json};

use super::{Ctx, properties_mut};
use crate::error::{ArmError, new_uuid};

/// Applies the requested `identity` of a resource being written.
pub(super) fn apply(ctx: &Ctx<'_>, resource: &mut Map<String, Value>) -> Result<(), ArmError> {
    let Some(requested) = resource.get("identity").cloned() else {
        return Ok(());
    };
    let kind = requested
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("None")
        .to_owned();
    let has = |wanted: &str| {
        kind.split(',')
            .any(|part| part.trim().eq_ignore_ascii_case(wanted))
    };
    let (system, user) = (has("SystemAssigned"), has("UserAssigned"));
    if !system && !user {
        resource.remove("identity");
        return Ok(());
    }
    let previous = ctx.existing.and_then(|e| e.get("identity"));
    let mut identity = Map::new();
    identity.insert("type".into(), kind.clone().into());
    if system {
        let previous_principal = previous
            .filter(|p| {
                p.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.to_ascii_lowercase().contains("systemassigned"))
            })
            .and_then(|p| p.get("principalId"))
            .cloned();
        identity.insert(
            "principalId".into(),
            previous_principal.unwrap_or_else(|| new_uuid().to_string().into()),
        );
        identity.insert("tenantId".into(), ctx.tenant_id.into());
    }
    if user {
        let requested_ids = requested
            .get("userAssignedIdentities")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut ids = Map::new();
        for uai_id in requested_ids.keys() {
            ids.insert(uai_id.clone(), user_assigned_entry(ctx, uai_id)?);
        }
        identity.insert("userAssignedIdentities".into(), Value::Object(ids));
    }
    resource.insert("identity".into(), Value::Object(identity));
    Ok(())
}

/// `{principalId, clientId}` of an existing user-assigned identity, or 400 like ARM.
fn user_assigned_entry(ctx: &Ctx<'_>, uai_id: &str) -> Result<Value, ArmError> {
    let is_uai = |r: &&Value| {
        r["type"].as_str().is_some_and(|t| {
            t.eq_ignore_ascii_case("Microsoft.ManagedIdentity/userAssignedIdentities")
        })
    };
    let uai = ctx
        .state
        .resources
        .get(&uai_id.trim_end_matches('/').to_lowercase())
        .filter(is_uai)
        .ok_or_else(|| {
            ArmError::bad_request(
                "FailedIdentityOperation",
                format!(
                    "Identity operation for resource '{}' failed with error 'Resource '{uai_id}' was not found.'.",
                    ctx.path.id()
                ),
            )
        })?;
    Ok(json!({
        "principalId": uai["properties"]["principalId"],
        "clientId": uai["properties"]["clientId"],
    }))
}

/// A user-assigned identity: `tenantId`, `principalId` and `clientId`, stable across writes.
pub(super) fn finalize_user_assigned(ctx: &Ctx<'_>, resource: &mut Map<String, Value>) {
    let kept = |field: &str| {
        ctx.kept(&format!("/properties/{field}"))
            .unwrap_or_else(|| new_uuid().to_string().into())
    };
    let (principal, client) = (kept("principalId"), kept("clientId"));
    let properties = properties_mut(resource);
    properties.insert("tenantId".into(), ctx.tenant_id.into());
    properties.insert("principalId".into(), principal);
    properties.insert("clientId".into(), client);
}
