//! JSON merge patch (RFC 7396) for PATCH requests, with one ARM-specific rule: when a patch
//! object changes the discriminator of a polymorphic object (`authType`, `secretType`,
//! `type`), it replaces the object instead of merging into it, because the fields of the old
//! subtype do not belong to the new one.

use serde_json::Value;

const DISCRIMINATORS: [&str; 3] = ["authType", "secretType", "type"];

/// Applies `patch` to `target` in place.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() || changes_discriminator(target, patch) {
        *target = Value::Object(serde_json::Map::new());
    }
    let Value::Object(target_map) = target else {
        unreachable!("target was just made an object");
    };
    for (key, value) in patch_map {
        if value.is_null() {
            target_map.remove(key);
        } else {
            merge_patch(target_map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

fn changes_discriminator(target: &Value, patch: &Value) -> bool {
    DISCRIMINATORS
        .iter()
        .any(|d| match (target.get(d), patch.get(d)) {
            (Some(old), Some(new)) => old != new && !new.is_null(),
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rfc7396_semantics() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
        let mut doc = json!({"a": [1, 2]});
        merge_patch(&mut doc, &json!({"a": [3]}));
        assert_eq!(doc, json!({"a": [3]}));
    }

    #[test]
    fn same_subtype_merges() {
        let mut doc = json!({"authInfo": {"authType": "secret", "name": "u", "secretInfo": {"secretType": "rawValue"}}});
        merge_patch(
            &mut doc,
            &json!({"authInfo": {"authType": "secret", "name": "v"}}),
        );
        assert_eq!(
            doc,
            json!({"authInfo": {"authType": "secret", "name": "v", "secretInfo": {"secretType": "rawValue"}}})
        );
    }

    #[test]
    fn a_new_subtype_replaces() {
        let mut doc = json!({"authInfo": {"authType": "secret", "name": "u"}});
        merge_patch(
            &mut doc,
            &json!({"authInfo": {"authType": "systemAssignedIdentity"}}),
        );
        assert_eq!(
            doc,
            json!({"authInfo": {"authType": "systemAssignedIdentity"}})
        );
    }
}
