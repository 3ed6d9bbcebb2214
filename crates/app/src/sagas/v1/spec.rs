//! The first release's checked spec (frozen): the shape its sagas' params carry, and how a
//! linker that release stored is read back into one (for its in-flight sagas and for
//! converging it away when it is next updated or deleted).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use tether_adapters::{FirewallRule, SourceFacts};
use tether_model::Error;
use tether_model::catalog::{TargetKind, catalog};
use tether_model::configuration::{self, KeyNaming};
use tether_model::ids::ResourceId;
use tether_model::linker::{
    ActionType, AllowType, AuthInfo, AuthType, ClientType, ConfigurationInfo, LinkerProperties,
    Sealed, TargetService, VNetSolutionType,
};

pub use crate::spec::rule_prefix;

/// A checked connection of the first release.
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
    pub fn kind(&self) -> Result<&'static TargetKind, Error> {
        catalog()?.target_for_id(&self.target).ok_or_else(|| {
            Error::invalid(
                "InvalidParameter",
                format!("the target '{}' is of no supported kind", self.target),
            )
        })
    }

    /// The configuration request this spec renders.
    pub fn configuration_request(&self) -> Result<configuration::Request<'_>, Error> {
        Ok(configuration::Request {
            target: self.kind()?,
            auth: self.auth,
            client: self.client,
            naming: &self.naming,
            info: self.configuration.as_ref(),
        })
    }

    /// The configuration keys this connection writes into the source (none when it opted
    /// out of configuration).
    pub fn written_keys(&self) -> Vec<String> {
        match self.configuration_request() {
            Ok(request) if !request.opted_out() => request.key_names().unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Whether the target takes firewall rules.
    pub fn has_firewall(&self) -> bool {
        self.kind().is_ok_and(TargetKind::has_network)
    }

    /// The firewall rules it wants, given the source's facts.
    pub fn firewall_rules(&self, prefix: &str, source: &SourceFacts) -> Vec<FirewallRule> {
        crate::spec::firewall_rules(
            prefix,
            self.firewall
                .source_ips
                .then_some(source.outbound_ips.as_slice()),
            &self.firewall.ranges,
            self.firewall.azure_services,
        )
    }
}

/// Reads back the spec a first-release linker was stored with: its target, user, client
/// type, configuration and firewall options. Only what that release could store is read; no
/// admission check runs (a stored linker stays manageable whatever the checks become).
pub fn stored(
    props: &LinkerProperties,
    secret: Option<Sealed>,
    naming: KeyNaming,
) -> Result<ConnectionSpec, Error> {
    let corrupt = |what: &str| {
        Error::internal(
            format!("a stored first-release linker has no {what}"),
            std::io::Error::other("legacy linker"),
        )
    };
    let target = match &props.target_service {
        Some(TargetService::AzureResource(r)) => {
            ResourceId::parse(r.id.as_deref().ok_or_else(|| corrupt("target id"))?)?
        }
        _ => return Err(corrupt("target")),
    };
    let user = match &props.auth_info {
        Some(AuthInfo::Secret(s)) => s.name.clone().ok_or_else(|| corrupt("user name"))?,
        _ => return Err(corrupt("secret auth")),
    };
    let mut firewall = Firewall {
        source_ips: props.v_net_solution.as_ref().and_then(|v| v.solution_type)
            == Some(VNetSolutionType::Firewall),
        ..Firewall::default()
    };
    if let Some(public) = props
        .public_network_solution
        .as_ref()
        .filter(|p| p.action != Some(ActionType::OptOut))
    {
        if let Some(rules) = &public.firewall_rules {
            firewall.azure_services = rules.azure_services == Some(AllowType::True);
            firewall.ranges = rules
                .ip_ranges
                .iter()
                .flatten()
                .filter_map(|r| crate::spec::parse_range(r))
                .collect();
        }
    }
    Ok(ConnectionSpec {
        target,
        auth: AuthType::Secret,
        user,
        secret: secret.ok_or_else(|| corrupt("secret"))?,
        client: props.client_type.unwrap_or(ClientType::None),
        naming,
        configuration: props.configuration_info.clone(),
        firewall,
    })
}
