//! Size limits of what a caller may store: every string, list and map in a linker's
//! `properties`, and the whole of them. A stored linker is read on every GET and list, written
//! into saga params and compared on retries, so its size is bounded up front with a clear
//! 400 rather than discovered later as memory or latency.

use serde_json::Value;

use crate::Error;

/// The largest serialized `properties` of a linker (secrets included), in bytes.
pub const MAX_PROPERTIES_BYTES: usize = 64 * 1024;
/// The longest string value, in characters (ARM ids, names, endpoints, setting values).
pub const MAX_STRING_CHARS: usize = 2048;
/// The longest secret value (a password or client secret), in characters.
pub const MAX_SECRET_CHARS: usize = 8 * 1024;
/// The longest certificate (base64 PEM or PFX), in characters.
pub const MAX_CERTIFICATE_CHARS: usize = 32 * 1024;
/// The longest map key (a configuration key name), in characters.
pub const MAX_KEY_CHARS: usize = 256;
/// The most entries of a list or map.
pub const MAX_ENTRIES: usize = 64;

/// Checks `properties` (a linker body's `properties`, before it is parsed) against the limits
/// above. Errors are `400 InvalidRequestContent` naming the property; values are never quoted.
pub fn check_properties(properties: &Value) -> Result<(), Error> {
    walk(properties, &mut vec!["properties".to_string()])?;
    let size = serde_json::to_vec(properties).map_or(usize::MAX, |b| b.len());
    if size > MAX_PROPERTIES_BYTES {
        return Err(too_large(
            "properties",
            format!(
                "the linker properties are {size} bytes; at most {MAX_PROPERTIES_BYTES} are accepted"
            ),
        ));
    }
    Ok(())
}

fn walk(value: &Value, path: &mut Vec<String>) -> Result<(), Error> {
    match value {
        Value::String(s) => {
            let limit = string_limit(path.last().map(String::as_str).unwrap_or_default());
            let chars = s.chars().count();
            if chars > limit {
                return Err(too_large(
                    &path.join("."),
                    format!(
                        "{} has {chars} characters; at most {limit} are accepted",
                        path.join(".")
                    ),
                ));
            }
            Ok(())
        }
        Value::Array(items) => {
            entries(path, items.len())?;
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                walk(item, path)?;
                path.pop();
            }
            Ok(())
        }
        Value::Object(map) => {
            entries(path, map.len())?;
            for (key, item) in map {
                if key.chars().count() > MAX_KEY_CHARS {
                    return Err(too_large(
                        &path.join("."),
                        format!(
                            "{} has a key longer than {MAX_KEY_CHARS} characters",
                            path.join(".")
                        ),
                    ));
                }
                path.push(key.clone());
                walk(item, path)?;
                path.pop();
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

/// Secret fields get room for long passwords and certificates; everything else the default.
fn string_limit(field: &str) -> usize {
    match field {
        "certificate" => MAX_CERTIFICATE_CHARS,
        "secret" | "value" => MAX_SECRET_CHARS,
        _ => MAX_STRING_CHARS,
    }
}

fn entries(path: &[String], n: usize) -> Result<(), Error> {
    if n > MAX_ENTRIES {
        let at = path.join(".");
        return Err(too_large(
            &at,
            format!("{at} has {n} entries; at most {MAX_ENTRIES} are accepted"),
        ));
    }
    Ok(())
}

fn too_large(target: &str, message: String) -> Error {
    Error::invalid("InvalidRequestContent", message).with_target(target)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn accepts_ordinary_properties() {
        let p = json!({
            "targetService": {"type": "AzureResource", "id": "/subscriptions/x"},
            "authInfo": {"authType": "secret", "name": "u", "secretInfo": {"secretType": "rawValue", "value": "p".repeat(5000)}},
            "configurationInfo": {"additionalConfigurations": {"A": "b"}},
        });
        check_properties(&p).unwrap();
    }

    #[test]
    fn refuses_oversized_fields_naming_them() {
        let target = |p: Value| {
            check_properties(&p)
                .unwrap_err()
                .target()
                .unwrap()
                .to_string()
        };
        assert_eq!(
            target(json!({"scope": "s".repeat(3000)})),
            "properties.scope"
        );
        let many: serde_json::Map<String, Value> =
            (0..65).map(|i| (format!("K{i}"), json!("v"))).collect();
        assert_eq!(
            target(json!({"configurationInfo": {"additionalConfigurations": many}})),
            "properties.configurationInfo.additionalConfigurations"
        );
        assert_eq!(
            target(json!({"configurationInfo": {"customizedKeys": {"k".repeat(300): "v"}}})),
            "properties.configurationInfo.customizedKeys"
        );
        assert_eq!(
            target(json!({"authInfo": {"roles": ["r".repeat(2049)]}})),
            "properties.authInfo.roles.0"
        );
        let huge: serde_json::Map<String, Value> = (0..60)
            .map(|i| (format!("K{i}"), json!("v".repeat(2000))))
            .collect();
        assert_eq!(
            target(json!({"configurationInfo": {"additionalConfigurations": huge}})),
            "properties"
        );
    }

    #[test]
    fn messages_never_quote_values() {
        let err =
            check_properties(&json!({"authInfo": {"secret": "hunter2".repeat(2000)}})).unwrap_err();
        assert!(!err.detail().message.contains("hunter2"));
    }
}
