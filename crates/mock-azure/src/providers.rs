//! Provider-specific behaviour: `Microsoft.Web/sites` (computed host name and outbound IPs,
//! managed identity, app settings) and `Microsoft.DBforPostgreSQL/flexibleServers` (computed
//! FQDN, databases, firewall-rule validation, asynchronous child operations).

use std::net::Ipv4Addr;

use serde_json::{Map, Value, json};

use crate::error::{ArmError, new_uuid};
use crate::resources::{self, ProviderPath};
use crate::state::State;

/// The resource types with behaviour beyond generic storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    WebSite,
    WebAppSettings,
    PgServer,
    PgDatabase,
    PgFirewallRule,
    Generic,
}

/// Recognises a provider path (`rest` alternates type and name; names are ignored).
pub(crate) fn classify(namespace: &str, rest: &[String]) -> Kind {
    let ns = namespace.to_ascii_lowercase();
    let lower: Vec<String> = rest.iter().map(|s| s.to_ascii_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    match (ns.as_str(), lower.as_slice()) {
        ("microsoft.web", ["sites", _]) => Kind::WebSite,
        ("microsoft.web", ["sites", _, "config", "appsettings"]) => Kind::WebAppSettings,
        ("microsoft.dbforpostgresql", ["flexibleservers", _]) => Kind::PgServer,
        ("microsoft.dbforpostgresql", ["flexibleservers", _, "databases", _]) => Kind::PgDatabase,
        ("microsoft.dbforpostgresql", ["flexibleservers", _, "firewallrules", _]) => {
            Kind::PgFirewallRule
        }
        _ => Kind::Generic,
    }
}

/// The `type` Azure reports for a known kind.
pub(crate) fn canonical_type(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::WebSite => Some("Microsoft.Web/sites"),
        Kind::WebAppSettings => Some("Microsoft.Web/sites/config"),
        Kind::PgServer => Some("Microsoft.DBforPostgreSQL/flexibleServers"),
        Kind::PgDatabase => Some("Microsoft.DBforPostgreSQL/flexibleServers/databases"),
        Kind::PgFirewallRule => Some("Microsoft.DBforPostgreSQL/flexibleServers/firewallRules"),
        Kind::Generic => None,
    }
}

/// Tracked top-level resources must carry a location.
pub(crate) fn requires_location(kind: Kind) -> bool {
    matches!(kind, Kind::WebSite | Kind::PgServer)
}

/// Kinds whose PUT and DELETE answer `202 Accepted` with an async operation, like Azure.
pub(crate) fn is_async(kind: Kind) -> bool {
    matches!(kind, Kind::PgDatabase | Kind::PgFirewallRule)
}

/// Validates a resource about to be stored and adds the fields the provider computes.
pub(crate) fn finalize(
    kind: Kind,
    name: &str,
    resource: &mut Map<String, Value>,
    existing: Option<&Value>,
    tenant_id: &str,
) -> Result<(), ArmError> {
    match kind {
        Kind::WebSite => {
            apply_identity(resource, existing, tenant_id);
            let id = resource
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or(name)
                .to_lowercase();
            let properties = properties_mut(resource);
            properties.insert(
                "defaultHostName".into(),
                format!("{}.azurewebsites.net", name.to_lowercase()).into(),
            );
            properties.insert("state".into(), "Running".into());
            let (outbound, possible) = generated_outbound_ips(&id);
            for (field, generated) in [
                ("outboundIpAddresses", outbound),
                ("possibleOutboundIpAddresses", possible),
            ] {
                let previous = existing.and_then(|e| e["properties"].get(field)).cloned();
                if !properties.get(field).is_some_and(Value::is_string) {
                    properties.insert(field.into(), previous.unwrap_or(generated.into()));
                }
            }
        }
        Kind::PgServer => {
            apply_identity(resource, existing, tenant_id);
            let properties = properties_mut(resource);
            properties.remove("administratorLoginPassword");
            properties.insert(
                "fullyQualifiedDomainName".into(),
                format!("{}.postgres.database.azure.com", name.to_lowercase()).into(),
            );
            properties.insert("state".into(), "Ready".into());
        }
        Kind::PgDatabase => {
            let properties = properties_mut(resource);
            for (field, default) in [("charset", "UTF8"), ("collation", "en_US.utf8")] {
                if !properties.get(field).is_some_and(Value::is_string) {
                    properties.insert(field.into(), default.into());
                }
            }
        }
        Kind::PgFirewallRule => validate_firewall_rule(name, properties_mut(resource))?,
        Kind::WebAppSettings | Kind::Generic => {}
    }
    Ok(())
}

/// The `properties` object, created (or replacing a non-object) if needed.
fn properties_mut(resource: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let properties = resource.entry("properties").or_insert(Value::Null);
    if !properties.is_object() {
        *properties = Value::Object(Map::new());
    }
    properties
        .as_object_mut()
        .expect("properties was just made an object")
}

/// Managed identity like ARM: `SystemAssigned` gets a principal id that stays stable while it
/// remains enabled, `UserAssigned` entries get principal and client ids, `None` removes it.
fn apply_identity(resource: &mut Map<String, Value>, existing: Option<&Value>, tenant_id: &str) {
    let Some(requested) = resource.get("identity").cloned() else {
        return;
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
        return;
    }
    let previous = existing.and_then(|e| e.get("identity"));
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
        identity.insert("tenantId".into(), tenant_id.into());
    }
    if user {
        let requested_ids = requested
            .get("userAssignedIdentities")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let previous_ids = previous
            .and_then(|p| p.get("userAssignedIdentities"))
            .and_then(Value::as_object);
        let mut ids = Map::new();
        for uai_id in requested_ids.keys() {
            let kept = previous_ids.and_then(|prev| {
                prev.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(uai_id))
                    .map(|(_, v)| v.clone())
            });
            let entry = kept.unwrap_or_else(|| {
                json!({"principalId": new_uuid().to_string(), "clientId": new_uuid().to_string()})
            });
            ids.insert(uai_id.clone(), entry);
        }
        identity.insert("userAssignedIdentities".into(), Value::Object(ids));
    }
    resource.insert("identity".into(), Value::Object(identity));
}

/// Deterministic outbound addresses in 20.0.0.0/8 from a hash of the (lower-cased) id.
fn generated_outbound_ips(id: &str) -> (String, String) {
    let ips: Vec<String> = (0..4u8)
        .map(|i| {
            let h = fnv1a(format!("{id}#{i}").as_bytes());
            format!(
                "20.{}.{}.{}",
                (h >> 16) & 0xff,
                (h >> 8) & 0xff,
                1 + (h & 0xff) % 254
            )
        })
        .collect();
    (ips[..2].join(","), ips.join(","))
}

/// FNV-1a: a stable hash (std's `DefaultHasher` output may change between Rust releases).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn invalid_parameter(parameter: &str) -> ArmError {
    ArmError::bad_request(
        "InvalidParameterValue",
        format!("Invalid value given for parameter {parameter}. Specify a valid parameter value."),
    )
}

/// Firewall rule rules of Azure Database for PostgreSQL flexible server.
fn validate_firewall_rule(name: &str, properties: &Map<String, Value>) -> Result<(), ArmError> {
    let name_ok = (1..=128).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !name_ok {
        return Err(invalid_parameter("firewallRuleName"));
    }
    let address = |field: &str| {
        properties
            .get(field)
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
            .ok_or_else(|| invalid_parameter(field))
    };
    let start = address("startIpAddress")?;
    let end = address("endIpAddress")?;
    if start > end {
        return Err(ArmError::bad_request(
            "InvalidParameterValue",
            format!(
                "The start IP address '{start}' must be less than or equal to the end IP address '{end}'."
            ),
        ));
    }
    Ok(())
}

/// The state key of a site's app settings resource.
fn app_settings_key(site_key: &str) -> String {
    format!("{site_key}/config/appsettings")
}

fn app_settings_resource(site: &Value, settings: Map<String, Value>) -> Value {
    let site_id = site["id"].as_str().unwrap_or_default();
    json!({
        "id": format!("{site_id}/config/appsettings"),
        "name": "appsettings",
        "type": "Microsoft.Web/sites/config",
        "location": site["location"],
        "properties": settings,
    })
}

/// After a site is written: make sure its app settings exist and follow its location.
pub(crate) fn sync_app_settings(state: &mut State, site_key: &str, site: &Value) {
    let key = app_settings_key(site_key);
    let settings = state
        .resources
        .get(&key)
        .and_then(|s| s["properties"].as_object())
        .cloned()
        .unwrap_or_default();
    state
        .resources
        .insert(key, app_settings_resource(site, settings));
}

/// Replaces a site's whole app settings dictionary; every value must be a string.
pub(crate) fn put_app_settings(
    state: &mut State,
    site: &ProviderPath,
    body: &Map<String, Value>,
) -> Result<Value, ArmError> {
    let site_resource = resources::get(state, site)?;
    let settings = match body.get("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(settings)) => settings.clone(),
        Some(_) => {
            return Err(ArmError::bad_request(
                "BadRequest",
                "The app settings 'properties' must be an object of string values.",
            ));
        }
    };
    if let Some((name, _)) = settings.iter().find(|(_, v)| !v.is_string()) {
        return Err(ArmError::bad_request(
            "BadRequest",
            format!("The value of app setting '{name}' must be a string."),
        ));
    }
    let resource = app_settings_resource(&site_resource, settings);
    state
        .resources
        .insert(app_settings_key(&site.key()), resource.clone());
    Ok(resource)
}

/// A site's app settings (an empty dictionary if none were ever set).
pub(crate) fn get_app_settings(state: &State, site: &ProviderPath) -> Result<Value, ArmError> {
    let site_resource = resources::get(state, site)?;
    let settings = state
        .resources
        .get(&app_settings_key(&site.key()))
        .and_then(|s| s["properties"].as_object())
        .cloned()
        .unwrap_or_default();
    Ok(app_settings_resource(&site_resource, settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_ips_are_deterministic_and_in_20_slash_8() {
        let (outbound, possible) = generated_outbound_ips("/subscriptions/x/a");
        assert_eq!(
            generated_outbound_ips("/subscriptions/x/a"),
            (outbound.clone(), possible.clone())
        );
        assert!(possible.starts_with(&outbound));
        for ip in possible.split(',') {
            let ip: Ipv4Addr = ip.parse().unwrap();
            assert_eq!(ip.octets()[0], 20);
        }
        assert_ne!(generated_outbound_ips("/subscriptions/x/b").0, outbound);
    }

    #[test]
    fn firewall_rules_are_validated() {
        let props = |s: &str, e: &str| {
            json!({"startIpAddress": s, "endIpAddress": e})
                .as_object()
                .unwrap()
                .clone()
        };
        assert!(validate_firewall_rule("ok_rule-1.x", &props("1.2.3.4", "1.2.3.4")).is_ok());
        assert!(validate_firewall_rule("bad name", &props("1.2.3.4", "1.2.3.4")).is_err());
        assert!(validate_firewall_rule(&"a".repeat(129), &props("1.2.3.4", "1.2.3.4")).is_err());
        assert!(validate_firewall_rule("r", &props("1.2.3.5", "1.2.3.4")).is_err());
        assert!(validate_firewall_rule("r", &props("1.2.3", "1.2.3.4")).is_err());
        assert!(validate_firewall_rule("r", &Map::new()).is_err());
    }

    #[test]
    fn system_identity_principal_is_stable_until_disabled() {
        let mut first = json!({"identity": {"type": "SystemAssigned"}})
            .as_object()
            .unwrap()
            .clone();
        apply_identity(&mut first, None, "t");
        let principal = first["identity"]["principalId"].clone();
        assert!(principal.is_string());
        let existing = Value::Object(first);
        let mut again = json!({"identity": {"type": "SystemAssigned, UserAssigned",
            "userAssignedIdentities": {"/x/uai": {}}}})
        .as_object()
        .unwrap()
        .clone();
        apply_identity(&mut again, Some(&existing), "t");
        assert_eq!(again["identity"]["principalId"], principal);
        assert!(again["identity"]["userAssignedIdentities"]["/x/uai"]["clientId"].is_string());
        let mut none = json!({"identity": {"type": "None"}})
            .as_object()
            .unwrap()
            .clone();
        apply_identity(&mut none, Some(&existing), "t");
        assert!(!none.contains_key("identity"));
    }
}
