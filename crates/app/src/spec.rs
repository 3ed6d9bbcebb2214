//! From linker properties to a [`ConnectionSpec`]: every check that can be made before any
//! side effect (supported source, target, auth, client type and network options, configuration
//! keys that render), so bad requests fail synchronously with a 400 naming the property.
//! A spec is what the sagas converge the backend to.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use tether_adapters::{FirewallRule, SourceFacts, TargetFacts};
use tether_model::Error;
use tether_model::catalog::{self, TargetSpec};
use tether_model::configuration::{self, KeyNaming};
use tether_model::ids::{LinkerRef, ResourceId};
use tether_model::linker::{
    ActionType, AllowType, AuthInfo, AuthType, ClientType, ConfigurationInfo, LinkerProperties,
    Sealed, SecretInfo, TargetService, VNetSolutionType,
};

/// A checked connection: what the backend should look like for one linker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionSpec {
    /// The target resource.
    pub target: ResourceId,
    /// The auth type.
    pub auth: AuthType,
    /// The user name the source signs in with.
    pub user: String,
    /// The password, sealed for the linker.
    pub secret: Sealed,
    /// The client type (key names and formats).
    pub client: ClientType,
    /// First or further connection of its target type on the source.
    pub naming: KeyNaming,
    /// Configuration options.
    pub configuration: Option<ConfigurationInfo>,
    /// Network access to set up on the target.
    pub firewall: Firewall,
}

/// Firewall rules a connection wants on its target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Firewall {
    /// Admit the source's outbound addresses (`vNetSolution.type: firewall`).
    pub source_ips: bool,
    /// Extra ranges (`publicNetworkSolution.firewallRules.ipRanges`).
    pub ranges: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// Admit Azure services (`firewallRules.azureServices: "true"`).
    pub azure_services: bool,
}

impl ConnectionSpec {
    /// The catalogue entry of the target.
    pub fn target_spec(&self) -> &'static TargetSpec {
        catalog::target_for(&self.target).expect("a checked spec has a supported target")
    }

    /// The configuration request this spec renders.
    pub fn configuration_request(&self) -> configuration::Request<'_> {
        configuration::Request {
            target: self.target_spec(),
            auth: self.auth,
            client: self.client,
            naming: &self.naming,
            info: self.configuration.as_ref(),
        }
    }

    /// The configuration keys this connection writes into the source (none when it opted
    /// out of configuration).
    pub fn written_keys(&self) -> Vec<String> {
        let request = self.configuration_request();
        if request.opted_out() {
            return Vec::new();
        }
        request.key_names().unwrap_or_default()
    }

    /// The endpoint its configuration values are built from, given the target's facts.
    pub fn endpoint(&self, target: &TargetFacts) -> configuration::Endpoint {
        configuration::Endpoint {
            host: target.host.clone(),
            port: target.port,
            database: target.database.clone(),
            user: self.user.clone(),
        }
    }

    /// The firewall rules it wants, given the source's facts.
    pub fn firewall_rules(&self, prefix: &str, source: &SourceFacts) -> Vec<FirewallRule> {
        let mut rules = Vec::new();
        if self.firewall.source_ips {
            rules.extend(source.outbound_ips.iter().map(|ip| rule(prefix, *ip, *ip)));
        }
        rules.extend(
            self.firewall
                .ranges
                .iter()
                .map(|(start, end)| rule(prefix, *start, *end)),
        );
        if self.firewall.azure_services {
            rules.push(FirewallRule {
                name: format!("{prefix}azure"),
                start: Ipv4Addr::UNSPECIFIED,
                end: Ipv4Addr::UNSPECIFIED,
            });
        }
        rules.sort();
        rules.dedup_by(|a, b| a.name == b.name);
        rules
    }
}

fn rule(prefix: &str, start: Ipv4Addr, end: Ipv4Addr) -> FirewallRule {
    let dashed = |ip: Ipv4Addr| ip.to_string().replace('.', "-");
    let name = if start == end {
        format!("{prefix}{}", dashed(start))
    } else {
        format!("{prefix}{}_{}", dashed(start), dashed(end))
    };
    FirewallRule { name, start, end }
}

/// The name prefix of every firewall rule a linker owns: `tether-` and 12 hex digits of a
/// stable hash (FNV-1a 64) of its lower-cased id. Derived from the id, not stored, so a rerun
/// or a later delete finds the rules again — even ones left by an earlier linker of that name.
pub fn rule_prefix(linker: &LinkerRef) -> String {
    let hash = linker
        .resource_id()
        .to_ascii_lowercase()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    format!("tether-{:012x}-", hash >> 16)
}

/// Checks properties against what Tether supports and builds the spec. `secret` is the
/// sealed password (the caller resolved a new or a kept one); `naming` was decided by the
/// caller. Errors are 400s whose `target` names the property.
pub fn check(
    at: &LinkerRef,
    props: &LinkerProperties,
    secret: Option<Sealed>,
    naming: KeyNaming,
) -> Result<ConnectionSpec, Error> {
    let source = catalog::source_for(&at.scope).ok_or_else(|| {
        let supported: Vec<_> = catalog::SOURCES.iter().map(|s| s.resource_type).collect();
        invalid(
            "resourceUri",
            format!(
                "the source resource type '{}' is not supported; supported: {}",
                at.scope.resource_type().unwrap_or_default(),
                supported.join(", ")
            ),
        )
    })?;
    let target_id = match &props.target_service {
        None => {
            return Err(invalid(
                "properties.targetService",
                "properties.targetService is required",
            ));
        }
        Some(TargetService::AzureResource(r)) => {
            if r.resource_properties.is_some() {
                return Err(invalid(
                    "properties.targetService.resourceProperties",
                    "resourceProperties applies only to Key Vault and App Configuration targets",
                ));
            }
            let id = r.id.as_deref().ok_or_else(|| {
                invalid(
                    "properties.targetService.id",
                    "properties.targetService.id is required",
                )
            })?;
            ResourceId::parse(id).map_err(|e| e.with_target("properties.targetService.id"))?
        }
        Some(_) => {
            return Err(invalid(
                "properties.targetService.type",
                "only targetService.type 'AzureResource' is supported",
            ));
        }
    };
    let target = catalog::target_for(&target_id).ok_or_else(|| {
        let supported: Vec<_> = catalog::TARGETS.iter().map(|t| t.resource_type).collect();
        invalid(
            "properties.targetService.id",
            format!(
                "the target resource type '{}' is not supported; supported: {}",
                target_id.resource_type().unwrap_or_default(),
                supported.join(", ")
            ),
        )
    })?;

    let auth = props
        .auth_info
        .as_ref()
        .ok_or_else(|| invalid("properties.authInfo", "properties.authInfo is required"))?;
    let auth_type = auth.auth_type();
    if !target.auth_types().contains(&auth_type) {
        let supported: Vec<_> = target.auth_types().iter().map(|a| a.as_str()).collect();
        return Err(invalid(
            "properties.authInfo.authType",
            format!(
                "authType '{}' is not supported from {} to {}; supported: {}",
                auth_type.as_str(),
                source.name,
                target.name,
                supported.join(", ")
            ),
        ));
    }
    let AuthInfo::Secret(secret_auth) = auth else {
        unreachable!("only secret auth is in the catalogue");
    };
    let user = secret_auth
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| {
            invalid(
                "properties.authInfo.name",
                "authInfo.authType 'secret' requires authInfo.name",
            )
        })?;
    match &secret_auth.secret_info {
        None | Some(SecretInfo::RawValue { .. }) => {}
        Some(_) => {
            return Err(invalid(
                "properties.authInfo.secretInfo.secretType",
                "only secretInfo.secretType 'rawValue' is supported",
            ));
        }
    }
    let secret = secret.ok_or_else(|| {
        invalid(
            "properties.authInfo.secretInfo",
            "authInfo.authType 'secret' requires authInfo.secretInfo with secretType 'rawValue' and a value",
        )
    })?;

    let client = props.client_type.unwrap_or(ClientType::None);
    if !target.client_types(auth_type).any(|c| c == client) {
        let supported: Vec<_> = target.client_types(auth_type).map(|c| c.as_str()).collect();
        return Err(invalid(
            "properties.clientType",
            format!(
                "clientType '{}' is not supported for {} with authType '{}'; supported: {}",
                client.as_str(),
                target.name,
                auth_type.as_str(),
                supported.join(", ")
            ),
        ));
    }

    if props
        .secret_store
        .as_ref()
        .is_some_and(|s| s.key_vault_id.is_some())
    {
        return Err(invalid(
            "properties.secretStore.keyVaultId",
            "storing secrets in Key Vault (secretStore.keyVaultId) is not supported yet",
        ));
    }
    if let Some(info) = &props.configuration_info {
        if info
            .configuration_store
            .as_ref()
            .is_some_and(|v| !v.is_null())
        {
            return Err(invalid(
                "properties.configurationInfo.configurationStore",
                "writing configuration to App Configuration is not supported yet",
            ));
        }
        if info.dapr_properties.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(invalid(
                "properties.configurationInfo.daprProperties",
                "daprProperties applies only to clientType 'dapr'",
            ));
        }
    }
    let firewall = firewall(props, target)?;
    let spec = ConnectionSpec {
        target: target_id,
        auth: auth_type,
        user,
        secret,
        client,
        naming,
        configuration: props.configuration_info.clone(),
        firewall,
    };
    // Render the key names now, so a bad rename or addition is a synchronous 400.
    spec.configuration_request().key_names()?;
    Ok(spec)
}

fn firewall(props: &LinkerProperties, target: &TargetSpec) -> Result<Firewall, Error> {
    let mut firewall = Firewall::default();
    match props.v_net_solution.as_ref().and_then(|v| v.solution_type) {
        None => {}
        Some(VNetSolutionType::Firewall) if target.firewall => firewall.source_ips = true,
        Some(other) => {
            let name = serde_json::to_value(other)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string));
            return Err(invalid(
                "properties.vNetSolution.type",
                format!(
                    "vNetSolution.type '{}' is not supported for {}; use 'firewall' or leave it empty",
                    name.unwrap_or_default(),
                    target.name
                ),
            ));
        }
    }
    let Some(public) = &props.public_network_solution else {
        return Ok(firewall);
    };
    if public.action == Some(ActionType::OptOut) {
        return Ok(firewall);
    }
    let Some(rules) = &public.firewall_rules else {
        return Ok(firewall);
    };
    if rules.caller_client_ip == Some(AllowType::True) {
        return Err(invalid(
            "properties.publicNetworkSolution.firewallRules.callerClientIP",
            "callerClientIP applies to location-based connectors (local development), not to linkers",
        ));
    }
    if !target.firewall
        && (rules.azure_services == Some(AllowType::True)
            || rules.ip_ranges.as_ref().is_some_and(|r| !r.is_empty()))
    {
        return Err(invalid(
            "properties.publicNetworkSolution.firewallRules",
            format!("firewall rules are not supported for {}", target.name),
        ));
    }
    firewall.azure_services = rules.azure_services == Some(AllowType::True);
    for range in rules.ip_ranges.iter().flatten() {
        let parsed = parse_range(range).ok_or_else(|| {
            invalid(
                "properties.publicNetworkSolution.firewallRules.ipRanges",
                format!("'{range}' is not an IPv4 address, CIDR block (a.b.c.d/n) or range (a.b.c.d-e.f.g.h)"),
            )
        })?;
        firewall.ranges.push(parsed);
    }
    Ok(firewall)
}

fn parse_range(text: &str) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let text = text.trim();
    if let Some((start, end)) = text.split_once('-') {
        let (start, end): (Ipv4Addr, Ipv4Addr) =
            (start.trim().parse().ok()?, end.trim().parse().ok()?);
        return (start <= end).then_some((start, end));
    }
    if let Some((base, bits)) = text.split_once('/') {
        let base: Ipv4Addr = base.parse().ok()?;
        let bits: u32 = bits.parse().ok().filter(|b| *b <= 32)?;
        let mask = if bits == 0 {
            0
        } else {
            u32::MAX << (32 - bits)
        };
        let start = u32::from(base) & mask;
        return Some((Ipv4Addr::from(start), Ipv4Addr::from(start | !mask)));
    }
    let ip: Ipv4Addr = text.parse().ok()?;
    Some((ip, ip))
}

fn invalid(target: &str, message: impl Into<String>) -> Error {
    Error::invalid("InvalidParameter", message).with_target(target)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use tether_model::ids::LinkerName;

    use super::*;

    const SITE: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Web/sites/app";
    const DB: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg/databases/orders";

    fn at() -> LinkerRef {
        LinkerRef {
            scope: ResourceId::parse(SITE).unwrap(),
            name: LinkerName::parse("db").unwrap(),
        }
    }

    fn props(extra: Value) -> LinkerProperties {
        let mut base = json!({
            "targetService": {"type": "AzureResource", "id": DB},
            "authInfo": {"authType": "secret", "name": "app", "secretInfo": {"secretType": "rawValue", "value": "pw"}},
            "clientType": "python"
        });
        tether_model::merge::merge_patch(&mut base, &extra);
        LinkerProperties::from_json(base).unwrap()
    }

    fn sealed() -> Option<Sealed> {
        Some(Sealed(vec![1]))
    }

    fn target_of(extra: Value) -> String {
        check(&at(), &props(extra), sealed(), KeyNaming::Plain)
            .unwrap_err()
            .target()
            .unwrap()
            .to_string()
    }

    #[test]
    fn a_supported_connection_becomes_a_spec() {
        let spec = check(
            &at(),
            &props(json!({"vNetSolution": {"type": "firewall"}})),
            sealed(),
            KeyNaming::Plain,
        )
        .unwrap();
        assert_eq!(spec.user, "app");
        assert_eq!(spec.client, ClientType::Python);
        assert!(spec.firewall.source_ips);
        assert_eq!(spec.written_keys(), ["AZURE_POSTGRESQL_CONNECTIONSTRING"]);
        let none_client = check(
            &at(),
            &props(json!({"clientType": null})),
            sealed(),
            KeyNaming::Plain,
        )
        .unwrap();
        assert_eq!(none_client.client, ClientType::None);
    }

    #[test]
    fn unsupported_requests_name_the_property() {
        assert_eq!(
            target_of(json!({"targetService": null})),
            "properties.targetService"
        );
        assert_eq!(
            target_of(json!({"targetService": {"id": "/subscriptions/x"}})),
            "properties.targetService.id"
        );
        assert_eq!(
            target_of(json!({"targetService": {"id": SITE}})),
            "properties.targetService.id",
            "a web app is not a target"
        );
        assert_eq!(
            target_of(json!({"authInfo": {"authType": "systemAssignedIdentity"}})),
            "properties.authInfo.authType"
        );
        assert_eq!(
            target_of(json!({"authInfo": {"name": null}})),
            "properties.authInfo.name"
        );
        assert_eq!(
            target_of(json!({"clientType": "dapr"})),
            "properties.clientType"
        );
        assert_eq!(
            target_of(json!({"vNetSolution": {"type": "privateLink"}})),
            "properties.vNetSolution.type"
        );
        assert_eq!(
            target_of(json!({"secretStore": {"keyVaultId": "/x"}})),
            "properties.secretStore.keyVaultId"
        );
        assert_eq!(
            target_of(
                json!({"publicNetworkSolution": {"firewallRules": {"ipRanges": ["300.1.1.1"]}}})
            ),
            "properties.publicNetworkSolution.firewallRules.ipRanges"
        );
        assert_eq!(
            target_of(json!({"configurationInfo": {"customizedKeys": {"NOPE": "X"}}})),
            "properties.configurationInfo.customizedKeys"
        );
        let no_secret = check(&at(), &props(json!({})), None, KeyNaming::Plain).unwrap_err();
        assert_eq!(no_secret.target(), Some("properties.authInfo.secretInfo"));
        let other_source = LinkerRef {
            scope: ResourceId::parse(
                &SITE.replace("Microsoft.Web/sites", "Microsoft.App/containerApps"),
            )
            .unwrap(),
            ..at()
        };
        assert_eq!(
            check(&other_source, &props(json!({})), sealed(), KeyNaming::Plain)
                .unwrap_err()
                .target(),
            Some("resourceUri")
        );
    }

    #[test]
    fn firewall_rules_cover_source_addresses_ranges_and_azure_services() {
        let spec = check(
            &at(),
            &props(json!({
                "vNetSolution": {"type": "firewall"},
                "publicNetworkSolution": {"firewallRules": {"ipRanges": ["10.0.0.0/30", "1.1.1.1-1.1.1.9", "20.42.0.1"], "azureServices": "true"}}
            })),
            sealed(),
            KeyNaming::Plain,
        )
        .unwrap();
        let facts = SourceFacts {
            outbound_ips: vec!["20.42.0.1".parse().unwrap(), "20.42.0.2".parse().unwrap()],
        };
        let names: Vec<_> = spec
            .firewall_rules("p-", &facts)
            .into_iter()
            .map(|r| (r.name, r.start.to_string(), r.end.to_string()))
            .collect();
        assert_eq!(
            names,
            [
                (
                    "p-1-1-1-1_1-1-1-9".to_string(),
                    "1.1.1.1".to_string(),
                    "1.1.1.9".to_string()
                ),
                (
                    "p-10-0-0-0_10-0-0-3".into(),
                    "10.0.0.0".into(),
                    "10.0.0.3".into()
                ),
                ("p-20-42-0-1".into(), "20.42.0.1".into(), "20.42.0.1".into()),
                ("p-20-42-0-2".into(), "20.42.0.2".into(), "20.42.0.2".into()),
                ("p-azure".into(), "0.0.0.0".into(), "0.0.0.0".into()),
            ]
        );
        let opted_out = check(&at(), &props(json!({"publicNetworkSolution": {"action": "optOut", "firewallRules": {"ipRanges": ["1.1.1.1"]}}})), sealed(), KeyNaming::Plain).unwrap();
        assert!(opted_out.firewall_rules("p-", &facts).is_empty());
    }

    #[test]
    fn rule_prefixes_are_stable_and_case_insensitive() {
        let p = rule_prefix(&at());
        assert!(
            p.starts_with("tether-") && p.len() == "tether-".len() + 13,
            "{p}"
        );
        let upper = LinkerRef {
            scope: ResourceId::parse(
                &SITE
                    .to_uppercase()
                    .replace("SUBSCRIPTIONS", "subscriptions"),
            )
            .unwrap(),
            name: LinkerName::parse("DB").unwrap(),
        };
        assert_eq!(rule_prefix(&upper), p);
        let other = LinkerRef {
            name: LinkerName::parse("db2").unwrap(),
            ..at()
        };
        assert_ne!(rule_prefix(&other), p);
    }
}
