//! Relational database targets: PostgreSQL flexible servers, MySQL flexible servers and Azure
//! SQL servers, their databases and firewall rules.
//!
//! Servers get their FQDN and state, never store the administrator password, and support
//! managed identity. Database users (data plane) live in `crate::dataplane`.

use std::net::Ipv4Addr;

use serde_json::{Map, Value};

use super::{Ctx, Extras, Kind, default_field, identity, invalid_parameter, properties_mut};
use crate::error::{ArmError, new_uuid};

/// The DNS suffix of a server kind's FQDN.
pub(crate) fn fqdn_suffix(kind: Kind) -> &'static str {
    match kind {
        Kind::MySqlServer => "mysql.database.azure.com",
        Kind::SqlServer => "database.windows.net",
        _ => "postgres.database.azure.com",
    }
}

/// A server: identity, FQDN, state; the administrator password is accepted and discarded.
pub(super) fn finalize_server(
    ctx: &Ctx<'_>,
    kind: Kind,
    name: &str,
    resource: &mut Map<String, Value>,
) -> Result<Extras, ArmError> {
    identity::apply(ctx, resource)?;
    let properties = properties_mut(resource);
    properties.remove("administratorLoginPassword");
    properties.insert(
        "fullyQualifiedDomainName".into(),
        format!("{}.{}", name.to_lowercase(), fqdn_suffix(kind)).into(),
    );
    properties.insert("state".into(), "Ready".into());
    if kind == Kind::SqlServer {
        default_field(properties, "version", "12.0".into());
        default_field(properties, "publicNetworkAccess", "Enabled".into());
    }
    Ok(Extras::default())
}

/// A database: default charset and collation (and, for Azure SQL, status and a stable id).
pub(super) fn finalize_database(ctx: &Ctx<'_>, kind: Kind, resource: &mut Map<String, Value>) {
    let database_id = ctx
        .kept("/properties/databaseId")
        .unwrap_or_else(|| new_uuid().to_string().into());
    let properties = properties_mut(resource);
    match kind {
        Kind::PgDatabase => {
            default_field(properties, "charset", "UTF8".into());
            default_field(properties, "collation", "en_US.utf8".into());
        }
        Kind::MySqlDatabase => {
            default_field(properties, "charset", "utf8mb4".into());
            default_field(properties, "collation", "utf8mb4_0900_ai_ci".into());
        }
        _ => {
            default_field(
                properties,
                "collation",
                "SQL_Latin1_General_CP1_CI_AS".into(),
            );
            properties.insert("status".into(), "Online".into());
            properties.insert("databaseId".into(), database_id);
        }
    }
}

/// Firewall rules of all three servers: a name of word characters, `-` and `.` (1-128), and
/// `startIpAddress` <= `endIpAddress`, both IPv4.
pub(super) fn validate_firewall_rule(
    name: &str,
    properties: &Map<String, Value>,
) -> Result<(), ArmError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
