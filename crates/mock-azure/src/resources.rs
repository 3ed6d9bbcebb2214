//! Generic ARM resources: resource groups, resource paths, and the create/replace/merge/delete/list
//! semantics every resource type shares. Provider-specific rules are delegated to `providers`.
//!
//! Ids keep the caller's casing from the creating PUT; lookups use the lower-cased id as the key.

use serde_json::{Map, Value, json};

use crate::error::ArmError;
use crate::providers;
use crate::state::State;

/// Top-level body fields a PUT or PATCH may set; anything else is ignored, as ARM does.
const WRITABLE_FIELDS: [&str; 6] = ["location", "kind", "tags", "identity", "sku", "properties"];

/// The resource type of resource groups.
pub(crate) const RESOURCE_GROUP_TYPE: &str = "Microsoft.Resources/resourceGroups";

/// `/subscriptions/{sub}/resourceGroups/{rg}/providers/{namespace}/{rest..}`, caller casing.
///
/// `rest` alternates type and name; an even length addresses a resource, an odd length a
/// collection (or, for POST, an action on the resource before it).
#[derive(Debug, Clone)]
pub(crate) struct ProviderPath {
    pub(crate) sub: String,
    pub(crate) rg: String,
    pub(crate) namespace: String,
    pub(crate) rest: Vec<String>,
}

impl ProviderPath {
    /// Parses `/subscriptions/{sub}/resourceGroups/{rg}/providers/{namespace}/{type}/{name}...`
    /// (keywords in any casing); `None` for anything else.
    pub(crate) fn parse(segments: &[String]) -> Option<Self> {
        let keyword = |i: usize, word: &str| {
            segments
                .get(i)
                .is_some_and(|s| s.eq_ignore_ascii_case(word))
        };
        let ok = segments.len() >= 8
            && keyword(0, "subscriptions")
            && keyword(2, "resourceGroups")
            && keyword(4, "providers");
        ok.then(|| Self {
            sub: segments[1].clone(),
            rg: segments[3].clone(),
            namespace: segments[5].clone(),
            rest: segments[6..].to_vec(),
        })
    }

    /// The id in caller casing with canonical keyword casing.
    pub(crate) fn id(&self) -> String {
        format!(
            "{}/providers/{}/{}",
            resource_group_id(&self.sub, &self.rg),
            self.namespace,
            self.rest.join("/")
        )
    }

    /// The state key: the lower-cased id.
    pub(crate) fn key(&self) -> String {
        self.id().to_lowercase()
    }

    /// Whether the path addresses a single resource rather than a collection.
    pub(crate) fn is_resource(&self) -> bool {
        !self.rest.is_empty() && self.rest.len() % 2 == 0
    }

    /// The enclosing resource of a nested resource or collection, if any.
    pub(crate) fn parent(&self) -> Option<ProviderPath> {
        let keep = if self.is_resource() {
            self.rest.len().checked_sub(2)?
        } else {
            self.rest.len().checked_sub(1)?
        };
        (keep >= 2).then(|| ProviderPath {
            rest: self.rest[..keep].to_vec(),
            ..self.clone()
        })
    }

    /// The last segment (the resource name, or the collection's type).
    pub(crate) fn name(&self) -> &str {
        self.rest.last().map_or("", String::as_str)
    }

    /// The provider-specific behaviour of the addressed resource type.
    pub(crate) fn kind(&self) -> providers::Kind {
        providers::classify(&self.namespace, &self.rest)
    }

    /// `Namespace/type[/childType]`: canonical casing for known types, caller casing otherwise.
    pub(crate) fn type_name(&self) -> String {
        match providers::canonical_type(self.kind()) {
            Some(canonical) => canonical.to_owned(),
            None => {
                let types: Vec<&str> = self.rest.iter().step_by(2).map(String::as_str).collect();
                format!("{}/{}", self.namespace, types.join("/"))
            }
        }
    }

    /// `Namespace/type/name[/childType/childName]`, as Azure quotes it in error messages.
    fn display(&self) -> String {
        format!("{}/{}", self.namespace, self.rest.join("/"))
    }
}

/// The result of a PUT.
pub(crate) struct Written {
    /// True when the resource did not exist before (201), false when replaced (200).
    pub(crate) created: bool,
    pub(crate) resource: Value,
}

/// `/subscriptions/{sub}/resourceGroups/{rg}` in caller casing.
pub(crate) fn resource_group_id(sub: &str, rg: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}")
}

fn resource_group_key(sub: &str, rg: &str) -> String {
    resource_group_id(sub, rg).to_lowercase()
}

fn resource_group_not_found(rg: &str) -> ArmError {
    ArmError::not_found(
        "ResourceGroupNotFound",
        format!("Resource group '{rg}' could not be found."),
    )
}

/// Azure's normalised location form: lower case without spaces (`West US` -> `westus`).
pub(crate) fn normalize_location(location: &str) -> String {
    location
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_lowercase()
}

/// Creates or replaces a resource group; `location` is required.
pub(crate) fn put_resource_group(
    state: &mut State,
    sub: &str,
    rg: &str,
    body: &Map<String, Value>,
) -> Result<Written, ArmError> {
    let key = resource_group_key(sub, rg);
    let existing = state.resources.get(&key);
    let location = match body.get("location").and_then(Value::as_str) {
        Some(location) if !location.trim().is_empty() => normalize_location(location),
        _ => return Err(location_required()),
    };
    let mut resource = json!({
        "id": existing.and_then(|e| e.get("id")).cloned().unwrap_or_else(|| resource_group_id(sub, rg).into()),
        "name": existing.and_then(|e| e.get("name")).cloned().unwrap_or_else(|| rg.into()),
        "type": RESOURCE_GROUP_TYPE,
        "location": location,
        "properties": {"provisioningState": "Succeeded"},
    });
    if let Some(tags) = body.get("tags").filter(|t| !t.is_null()) {
        resource["tags"] = tags.clone();
    }
    let created = existing.is_none();
    state.resources.insert(key, resource.clone());
    Ok(Written { created, resource })
}

/// Reads a resource group.
pub(crate) fn get_resource_group(state: &State, sub: &str, rg: &str) -> Result<Value, ArmError> {
    state
        .resources
        .get(&resource_group_key(sub, rg))
        .cloned()
        .ok_or_else(|| resource_group_not_found(rg))
}

/// Merges `tags` into a resource group (the only mutable field besides location).
pub(crate) fn patch_resource_group(
    state: &mut State,
    sub: &str,
    rg: &str,
    body: &Map<String, Value>,
) -> Result<Value, ArmError> {
    let key = resource_group_key(sub, rg);
    let resource = state
        .resources
        .get_mut(&key)
        .ok_or_else(|| resource_group_not_found(rg))?;
    if let Some(tags) = body.get("tags") {
        merge_patch(&mut resource["tags"], tags);
        if resource["tags"].is_null() {
            if let Some(object) = resource.as_object_mut() {
                object.remove("tags");
            }
        }
    }
    Ok(resource.clone())
}

/// Deletes a resource group and everything in it; true if it existed.
pub(crate) fn delete_resource_group(state: &mut State, sub: &str, rg: &str) -> bool {
    state.remove_tree(&resource_group_key(sub, rg))
}

/// Every resource group of a subscription.
pub(crate) fn list_resource_groups(state: &State, sub: &str) -> Vec<Value> {
    state.list_collection(&format!("/subscriptions/{sub}/resourcegroups").to_lowercase())
}

/// Every top-level resource of `{namespace}/{type}` in a subscription, across its resource
/// groups (`GET /subscriptions/{sub}/providers/{namespace}/{type}`), in id order.
pub(crate) fn list_in_subscription(
    state: &State,
    sub: &str,
    namespace: &str,
    resource_type: &str,
) -> Vec<Value> {
    let prefix = format!("/subscriptions/{sub}/resourcegroups/").to_lowercase();
    let provider = format!("/providers/{namespace}/{resource_type}/").to_lowercase();
    state
        .resources
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter(|(k, _)| {
            let rest = &k[prefix.len()..];
            // `{rg}/providers/{ns}/{type}/{name}`, nothing nested below it.
            rest.split_once('/').is_some_and(|(_, after_rg)| {
                let after_rg = format!("/{after_rg}");
                after_rg
                    .strip_prefix(&provider)
                    .is_some_and(|name| !name.is_empty() && !name.contains('/'))
            })
        })
        .map(|(_, v)| v.clone())
        .collect()
}

/// Checks that the resource group and (for nested paths) the parent resource exist.
fn check_scope(state: &State, path: &ProviderPath) -> Result<(), ArmError> {
    if !state
        .resources
        .contains_key(&resource_group_key(&path.sub, &path.rg))
    {
        return Err(resource_group_not_found(&path.rg));
    }
    if let Some(parent) = path.parent() {
        if !state.resources.contains_key(&parent.key()) {
            return Err(ArmError::not_found(
                "ParentResourceNotFound",
                format!(
                    "Can not perform requested operation on nested resource. Parent resource '{}' not found.",
                    parent.name()
                ),
            ));
        }
    }
    Ok(())
}

/// `404 ResourceNotFound` for a provider path.
pub(crate) fn resource_not_found(path: &ProviderPath) -> ArmError {
    ArmError::not_found(
        "ResourceNotFound",
        format!(
            "The Resource '{}' under resource group '{}' was not found.",
            path.display(),
            path.rg
        ),
    )
}

fn location_required() -> ArmError {
    ArmError::bad_request(
        "LocationRequired",
        "The location property is required for this definition.",
    )
}

/// Reads one resource (stored, or computed like Redis databases).
pub(crate) fn get(state: &State, path: &ProviderPath) -> Result<Value, ArmError> {
    check_scope(state, path)?;
    if let Some(computed) = providers::virtual_get(state, path) {
        return Ok(computed);
    }
    get_ref(state, path).cloned()
}

/// Borrows one stored resource.
pub(crate) fn get_ref<'a>(state: &'a State, path: &ProviderPath) -> Result<&'a Value, ArmError> {
    check_scope(state, path)?;
    state
        .resources
        .get(&path.key())
        .ok_or_else(|| resource_not_found(path))
}

/// Whether a resource exists (stored or computed).
pub(crate) fn exists(state: &State, path: &ProviderPath) -> bool {
    state.resources.contains_key(&path.key()) || providers::virtual_get(state, path).is_some()
}

/// Lists the resources of a collection path (`.../flexibleServers/pg/firewallRules`).
pub(crate) fn list(state: &State, path: &ProviderPath) -> Result<Vec<Value>, ArmError> {
    check_scope(state, path)?;
    let mut listed = state.list_collection(&path.key());
    listed.extend(providers::virtual_list(state, path));
    Ok(listed)
}

/// Creates (or fully replaces) a resource, applying the provider's rules.
pub(crate) fn put(
    state: &mut State,
    path: &ProviderPath,
    body: &Map<String, Value>,
    tenant_id: &str,
) -> Result<Written, ArmError> {
    check_scope(state, path)?;
    let key = path.key();
    let existing = state.resources.get(&key).cloned();
    let (resource, extras) = build(state, path, existing.as_ref(), body, tenant_id)?;
    store(state, &key, &resource, extras);
    Ok(Written {
        created: existing.is_none(),
        resource,
    })
}

/// JSON-merge-patches (RFC 7386) the writable fields of an existing resource.
pub(crate) fn patch(
    state: &mut State,
    path: &ProviderPath,
    body: &Map<String, Value>,
    tenant_id: &str,
) -> Result<Value, ArmError> {
    check_scope(state, path)?;
    let key = path.key();
    let existing = state
        .resources
        .get(&key)
        .cloned()
        .ok_or_else(|| resource_not_found(path))?;
    let mut merged = Value::Object(writable(&existing));
    for field in WRITABLE_FIELDS {
        if let Some(change) = body.get(field) {
            merge_patch(&mut merged[field], change);
        }
    }
    let merged = writable(&merged);
    let (resource, extras) = build(state, path, Some(&existing), &merged, tenant_id)?;
    store(state, &key, &resource, extras);
    Ok(resource)
}

/// Deletes a resource and its children; true if it existed.
pub(crate) fn delete(state: &mut State, path: &ProviderPath) -> Result<bool, ArmError> {
    check_scope(state, path)?;
    Ok(state.remove_tree(&path.key()))
}

/// The writable fields of a resource body, dropping nulls.
fn writable(resource: &Value) -> Map<String, Value> {
    WRITABLE_FIELDS
        .iter()
        .filter_map(|field| {
            resource
                .get(field)
                .filter(|v| !v.is_null())
                .map(|v| ((*field).to_owned(), v.clone()))
        })
        .collect()
}

/// Assembles the stored form of a resource from its request body, with what the provider
/// stores beside it.
fn build(
    state: &State,
    path: &ProviderPath,
    existing: Option<&Value>,
    body: &Map<String, Value>,
    tenant_id: &str,
) -> Result<(Value, providers::Extras), ArmError> {
    let kept = |field: &str, fallback: String| {
        existing
            .and_then(|e| e.get(field))
            .cloned()
            .unwrap_or(Value::String(fallback))
    };
    let mut resource = Map::new();
    resource.insert("id".into(), kept("id", path.id()));
    resource.insert("name".into(), kept("name", path.name().to_owned()));
    resource.insert("type".into(), Value::String(path.type_name()));
    for (field, value) in writable(&Value::Object(body.clone())) {
        resource.insert(field, value);
    }
    if let Some(Value::String(location)) = resource.get_mut("location") {
        *location = normalize_location(location);
    }
    let kind = path.kind();
    if providers::requires_location(kind) && !resource.contains_key("location") {
        return Err(location_required());
    }
    let ctx = providers::Ctx {
        state,
        path,
        existing,
        tenant_id,
        now: chrono::Utc::now(),
    };
    let extras = providers::finalize(&ctx, kind, &mut resource)?;
    Ok((Value::Object(resource), extras))
}

/// Writes a resource and what the provider stores beside it.
fn store(state: &mut State, key: &str, resource: &Value, extras: providers::Extras) {
    state.resources.insert(key.to_owned(), resource.clone());
    match extras.secret {
        Some(Value::Null) => {
            state.resources.remove(&providers::secret_key(key));
        }
        Some(secret) => {
            state.resources.insert(providers::secret_key(key), secret);
        }
        None => {}
    }
    for (entry_key, entry) in extras.entries {
        state.resources.insert(entry_key, entry);
    }
}

/// RFC 7386 JSON merge patch: objects merge recursively, `null` removes, anything else replaces.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(changes) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(fields) = target {
        for (name, change) in changes {
            if change.is_null() {
                fields.remove(name);
            } else {
                merge_patch(fields.entry(name.clone()).or_insert(Value::Null), change);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        merge_patch(
            &mut target,
            &json!({"a": null, "b": {"c": 5, "d": null}, "e": {"x": 1}, "f": "new"}),
        );
        assert_eq!(target, json!({"b": {"c": 5}, "e": {"x": 1}, "f": "new"}));
    }

    #[test]
    fn provider_paths_know_their_parent_and_type() {
        let path = ProviderPath {
            sub: "S".into(),
            rg: "Rg".into(),
            namespace: "Contoso.Things".into(),
            rest: vec!["Widgets".into(), "w1".into(), "Parts".into(), "p1".into()],
        };
        assert_eq!(
            path.id(),
            "/subscriptions/S/resourceGroups/Rg/providers/Contoso.Things/Widgets/w1/Parts/p1"
        );
        assert_eq!(path.type_name(), "Contoso.Things/Widgets/Parts");
        let parent = path.parent().unwrap();
        assert_eq!(parent.rest, vec!["Widgets", "w1"]);
        assert!(parent.parent().is_none());
        assert_eq!(normalize_location("West US 2"), "westus2");
    }
}
