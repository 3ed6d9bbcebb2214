//! From linker properties to a [`ConnectionSpec`]: every check that can be made before any
//! side effect (a supported source and target kind, an auth type and client type the matrix
//! lists for them, network and secret-store options the target takes, configuration keys that
//! render), so a bad request fails synchronously with a 400 naming the property. A spec is
//! what the sagas converge the backend to, and it is stored with the linker: reading a stored
//! linker never runs these checks again.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use tether_adapters::{FirewallRule, Grant, TargetRef};
use tether_model::Error;
use tether_model::catalog::{
    Catalog, IdentityGrant, Network, SecretSource, ServiceType, TargetKind,
};
use tether_model::configuration::{self, KeyNaming};
use tether_model::ids::{LinkerId, LinkerRef, ResourceId};
use tether_model::linker::{
    ActionType, AllowType, AuthInfo, AuthMode, AuthType, AzureResourceProperties, ClientType,
    ConfigurationInfo, LinkerProperties, Sealed, SecretInfo, TargetService, VNetSolutionType,
};

/// A checked connection: what the backend should look like for one linker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionSpec {
    /// The source kind (`webapp`, `containerapp`).
    pub source: String,
    /// The target.
    pub target: TargetRef,
    /// The target kind (a catalogue name).
    pub kind: String,
    /// How the source authenticates.
    pub auth: Auth,
    /// The auth type the configuration is written for (`secret` for keys the target hands
    /// out, `accessKey` when the request said so).
    pub auth_type: AuthType,
    /// The client type (key names and formats).
    pub client: ClientType,
    /// First or further connection of its target kind on the source.
    pub naming: KeyNaming,
    /// Configuration options.
    pub configuration: Option<ConfigurationInfo>,
    /// Network access to set up on the target.
    pub network: NetworkAccess,
    /// A Key Vault that keeps the connection's secret settings; the source then holds Key
    /// Vault references.
    pub secret_store: Option<SecretStore>,
    /// The container a container app's configuration goes to (`None`: its only one).
    pub scope: Option<String>,
}

/// Where secret settings are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretStore {
    /// The vault.
    pub vault: ResourceId,
    /// The secret name (`keyVaultSecretName`); derived from the linker and key otherwise.
    pub name: Option<String>,
}

/// How the source authenticates to the target: every auth type the API has that a supported
/// cell uses, typed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Auth {
    /// A user name and password from the caller, sealed for the linker and the target.
    Secret {
        /// The user name.
        user: String,
        /// The password.
        password: Sealed,
    },
    /// A user name and a Key Vault secret URI holding the password: the source gets a Key
    /// Vault reference where the password goes.
    SecretReference {
        /// The user name.
        user: String,
        /// The Key Vault secret URI.
        uri: String,
    },
    /// The target's keys, listed at run time and never stored in clear.
    TargetKeys,
    /// The source's system-assigned identity.
    SystemIdentity(IdentityOptions),
    /// A user-assigned identity, by client id.
    UserIdentity {
        /// Its client id.
        client_id: String,
        /// The subscription it is in.
        subscription: String,
        /// Options.
        options: IdentityOptions,
    },
    /// A service principal with a client secret.
    ServicePrincipal {
        /// Its client (application) id.
        client_id: String,
        /// Its object (principal) id.
        principal_id: String,
        /// The client secret, sealed.
        secret: Sealed,
        /// Options.
        options: IdentityOptions,
    },
}

/// Options of an identity: what it gets on the target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityOptions {
    /// The database user name for it (databases).
    pub user_name: Option<String>,
    /// Roles to assign instead of the target kind's defaults.
    pub roles: Vec<String>,
    /// `authMode: optOutAllAuth`: write the configuration, grant nothing.
    pub opt_out: bool,
}

/// Network access a connection wants on its target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkAccess {
    /// Admit the source's outbound addresses (`vNetSolution.type: firewall`).
    pub source_ips: bool,
    /// Extra ranges (`publicNetworkSolution.firewallRules.ipRanges`).
    pub ranges: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// Admit Azure services (`firewallRules.azureServices: "true"`).
    pub azure_services: bool,
}

impl Auth {
    /// The identity options, for identity auth types.
    pub fn identity(&self) -> Option<&IdentityOptions> {
        match self {
            Auth::SystemIdentity(o)
            | Auth::UserIdentity { options: o, .. }
            | Auth::ServicePrincipal { options: o, .. } => Some(o),
            _ => None,
        }
    }

    /// The user name written into the configuration, when there is one.
    pub fn user(&self) -> Option<&str> {
        match self {
            Auth::Secret { user, .. } | Auth::SecretReference { user, .. } => Some(user),
            other => other.identity().and_then(|o| o.user_name.as_deref()),
        }
    }
}

impl ConnectionSpec {
    /// The catalogue entry of the target.
    pub fn kind(&self) -> Result<&'static TargetKind, Error> {
        tether_model::catalog::catalog()?
            .target(&self.kind)
            .ok_or_else(|| {
                Error::internal(
                    format!("the stored target kind '{}' is unknown", self.kind),
                    std::io::Error::other("unknown target kind"),
                )
            })
    }

    /// The configuration request this spec renders.
    pub fn configuration_request(&self) -> Result<configuration::Request<'_>, Error> {
        Ok(configuration::Request {
            target: self.kind()?,
            auth: self.auth_type,
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

    /// Whether the configuration is written at all.
    pub fn writes_configuration(&self) -> bool {
        self.configuration.as_ref().and_then(|c| c.action) != Some(ActionType::OptOut)
    }

    /// The grants the target kind makes for an identity (the caller's roles replacing the
    /// default roles), given the target's facts; none for other auth types or with
    /// `optOutAllAuth`.
    pub fn grants(&self, facts: &tether_model::facts::Facts) -> Result<Vec<Grant>, Error> {
        let Some(options) = self.auth.identity().filter(|o| !o.opt_out) else {
            return Ok(Vec::new());
        };
        let kind = self.kind()?;
        let Some(id) = self.target.arm() else {
            return Ok(Vec::new());
        };
        let resource = match kind.resource {
            tether_model::catalog::ResourceAt::Target => id.clone(),
            tether_model::catalog::ResourceAt::Parent => id.parent().unwrap_or_else(|| id.clone()),
        };
        let mut grants = Vec::new();
        for grant in &kind.identity {
            match grant {
                IdentityGrant::Role { roles } => {
                    let roles = if options.roles.is_empty() {
                        roles
                    } else {
                        &options.roles
                    };
                    grants.extend(roles.iter().map(|role| Grant::Role {
                        scope: resource.clone(),
                        role: role.clone(),
                    }));
                }
                IdentityGrant::DatabaseUser { dialect } => grants.push(Grant::DatabaseUser {
                    host: facts.value("host").unwrap_or_default().to_string(),
                    database: facts.value("database").unwrap_or(id.name()).to_string(),
                    dialect: *dialect,
                }),
                IdentityGrant::RedisAccessPolicy { policy } => {
                    grants.push(Grant::RedisAccessPolicy {
                        cache: resource.clone(),
                        policy: policy.clone(),
                    })
                }
                IdentityGrant::CosmosSqlRole { role } => grants.push(Grant::CosmosSqlRole {
                    account: resource.clone(),
                    role: role.clone(),
                }),
            }
        }
        Ok(grants)
    }

    /// The named firewall rules it wants on the target, given the source's addresses.
    pub fn firewall_rules(&self, prefix: &str, outbound: &[Ipv4Addr]) -> Vec<FirewallRule> {
        firewall_rules(
            prefix,
            self.network.source_ips.then_some(outbound),
            &self.network.ranges,
            self.network.azure_services,
        )
    }

    /// The unnamed IP rules (addresses and CIDR blocks) it wants, given the source's addresses.
    pub fn ip_rules(&self, outbound: &[Ipv4Addr]) -> std::collections::BTreeSet<String> {
        let mut values: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        if self.network.source_ips {
            values.extend(outbound.iter().map(Ipv4Addr::to_string));
        }
        for (start, end) in &self.network.ranges {
            values.extend(cidrs(*start, *end));
        }
        values
    }
}

/// What sealed secrets of a linker are bound to: the linker and the target, so a stored
/// secret never opens for another target.
pub fn secret_owner(linker: LinkerId, target: &TargetRef) -> Vec<u8> {
    let mut owner = linker.as_uuid().as_bytes().to_vec();
    owner.extend_from_slice(b"|");
    match target {
        TargetRef::Arm(id) => owner.extend_from_slice(id.key().as_bytes()),
        TargetRef::Endpoint(e) => owner.extend_from_slice(e.to_ascii_lowercase().as_bytes()),
    }
    owner
}

/// The rules for source addresses, ranges and Azure services, named under `prefix`.
pub fn firewall_rules(
    prefix: &str,
    outbound: Option<&[Ipv4Addr]>,
    ranges: &[(Ipv4Addr, Ipv4Addr)],
    azure_services: bool,
) -> Vec<FirewallRule> {
    let mut rules = Vec::new();
    rules.extend(
        outbound
            .into_iter()
            .flatten()
            .map(|ip| rule(prefix, *ip, *ip)),
    );
    rules.extend(ranges.iter().map(|(start, end)| rule(prefix, *start, *end)));
    if azure_services {
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

fn rule(prefix: &str, start: Ipv4Addr, end: Ipv4Addr) -> FirewallRule {
    let dashed = |ip: Ipv4Addr| ip.to_string().replace('.', "-");
    let name = if start == end {
        format!("{prefix}{}", dashed(start))
    } else {
        format!("{prefix}{}_{}", dashed(start), dashed(end))
    };
    FirewallRule { name, start, end }
}

/// The smallest list of CIDR blocks covering `start..=end` (a single address is bare).
pub fn cidrs(start: Ipv4Addr, end: Ipv4Addr) -> Vec<String> {
    let (mut at, end) = (u64::from(u32::from(start)), u64::from(u32::from(end)));
    let mut out = Vec::new();
    while at <= end {
        let mut bits = 0u32;
        while bits < 32 && at % (1u64 << (bits + 1)) == 0 && at + (1u64 << (bits + 1)) - 1 <= end {
            bits += 1;
        }
        let ip = Ipv4Addr::from(at as u32);
        out.push(if bits == 0 {
            ip.to_string()
        } else {
            format!("{ip}/{}", 32 - bits)
        });
        at += 1u64 << bits;
    }
    out
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

/// The secret the request sent, or the one the stored linker keeps (the caller resolves
/// which; see `linkers::write`).
pub enum SecretInput {
    /// None: refused where a secret is required.
    Missing,
    /// Sealed for this linker and target.
    Sealed(Sealed),
}

/// Everything [`check`] reads.
pub struct Request<'a> {
    /// The catalogue.
    pub catalog: &'static Catalog,
    /// Where the linker lives.
    pub at: &'a LinkerRef,
    /// Its properties.
    pub props: &'a LinkerProperties,
    /// The secret (password or client secret), resolved by the caller.
    pub secret: SecretInput,
    /// Key naming, decided by the caller.
    pub naming: KeyNaming,
    /// Whether database users can be made (a SQL data plane is configured).
    pub database_users: bool,
}

/// Where a request names its target: the kind and the reference.
pub fn target_of(
    catalog: &'static Catalog,
    props: &LinkerProperties,
) -> Result<(&'static TargetKind, TargetRef), Error> {
    match &props.target_service {
        None => Err(invalid(
            "properties.targetService",
            "properties.targetService is required",
        )),
        Some(service) => target_of_service(catalog, service),
    }
}

/// [`target_of`] for a target service on its own.
pub fn target_of_service(
    catalog: &'static Catalog,
    service: &TargetService,
) -> Result<(&'static TargetKind, TargetRef), Error> {
    match service {
        TargetService::AzureResource(r) => {
            let id = r.id.as_deref().ok_or_else(|| {
                invalid(
                    "properties.targetService.id",
                    "properties.targetService.id is required",
                )
            })?;
            let id =
                ResourceId::parse(id).map_err(|e| e.with_target("properties.targetService.id"))?;
            let kind = catalog.target_for_id(&id).ok_or_else(|| {
                let supported: Vec<_> = catalog
                    .targets
                    .iter()
                    .filter_map(|t| t.resource_type.as_deref())
                    .collect();
                invalid(
                    "properties.targetService.id",
                    format!(
                        "the target resource type '{}' is not supported; supported: {}",
                        id.resource_type().unwrap_or_default(),
                        supported.join(", ")
                    ),
                )
            })?;
            Ok((kind, TargetRef::Arm(id)))
        }
        other => {
            let (service, target) = match other {
                TargetService::ConfluentBootstrapServer(e) => {
                    (ServiceType::ConfluentBootstrapServer, e)
                }
                TargetService::ConfluentSchemaRegistry(e) => {
                    (ServiceType::ConfluentSchemaRegistry, e)
                }
                TargetService::SelfHostedServer(e) => (ServiceType::SelfHostedServer, e),
                _ => {
                    return Err(invalid(
                        "properties.targetService.type",
                        "this targetService.type is not supported",
                    ));
                }
            };
            let endpoint = target
                .endpoint
                .as_deref()
                .filter(|e| !e.trim().is_empty())
                .ok_or_else(|| {
                    invalid(
                        "properties.targetService.endpoint",
                        "properties.targetService.endpoint is required",
                    )
                })?;
            let kind = catalog.target_for_endpoint(service, endpoint).ok_or_else(|| {
                let schemes: Vec<_> = catalog
                    .targets
                    .iter()
                    .flat_map(|t| t.schemes.iter().map(|s| format!("{s}://")))
                    .collect();
                invalid(
                    "properties.targetService.endpoint",
                    format!(
                        "the endpoint names no supported server; a self-hosted server's URL starts with one of {}",
                        schemes.join(", ")
                    ),
                )
            })?;
            tether_adapters::azure::endpoint_facts(kind, endpoint)
                .map_err(|why| invalid("properties.targetService.endpoint", why))?;
            Ok((kind, TargetRef::Endpoint(endpoint.to_string())))
        }
    }
}

/// Checks properties against what Tether supports and builds the spec. Errors are 400s whose
/// `target` names the property.
pub fn check(r: Request<'_>) -> Result<ConnectionSpec, Error> {
    let props = r.props;
    let source = r.catalog.source_for(&r.at.scope).ok_or_else(|| {
        let supported: Vec<_> = r
            .catalog
            .sources
            .iter()
            .map(|s| s.resource_type.as_str())
            .collect();
        invalid(
            "resourceUri",
            format!(
                "the source resource type '{}' is not supported; supported: {}",
                r.at.scope.resource_type().unwrap_or_default(),
                supported.join(", ")
            ),
        )
    })?;
    let (kind, target) = target_of(r.catalog, props)?;
    if let Some(TargetService::AzureResource(res)) = &props.target_service {
        match &res.resource_properties {
            None => {}
            Some(AzureResourceProperties::KeyVault(k))
                if kind.matrix == "keyvault"
                    && k.connect_as_kubernetes_csi_driver == Some(true) =>
            {
                return Err(invalid(
                    "properties.targetService.resourceProperties",
                    "connectAsKubernetesCsiDriver applies to Kubernetes sources",
                ));
            }
            Some(AzureResourceProperties::AppConfig(a))
                if kind.matrix == "appconfig"
                    && a.connect_with_kubernetes_extension == Some(true) =>
            {
                return Err(invalid(
                    "properties.targetService.resourceProperties",
                    "connectWithKubernetesExtension applies to Kubernetes sources",
                ));
            }
            Some(AzureResourceProperties::KeyVault(_)) if kind.matrix == "keyvault" => {}
            Some(AzureResourceProperties::AppConfig(_)) if kind.matrix == "appconfig" => {}
            Some(_) => {
                return Err(invalid(
                    "properties.targetService.resourceProperties",
                    "resourceProperties applies only to Key Vault and App Configuration targets",
                ));
            }
        }
    }

    let auth_info = props
        .auth_info
        .as_ref()
        .ok_or_else(|| invalid("properties.authInfo", "properties.authInfo is required"))?;
    let auth_type = auth_info.auth_type();
    let supported = kind.auth_types(&source.name);
    if !supported.contains(&auth_type) {
        let names: Vec<_> = supported.iter().map(|a| a.as_str()).collect();
        return Err(invalid(
            "properties.authInfo.authType",
            format!(
                "authType '{}' is not supported from {} to {}; supported: {}",
                auth_type.as_str(),
                source.name,
                kind.name,
                names.join(", ")
            ),
        ));
    }
    let auth = auth(&r, kind, auth_info)?;
    if auth.identity().is_some_and(|o| !o.opt_out)
        && kind
            .identity
            .iter()
            .any(|g| matches!(g, IdentityGrant::DatabaseUser { .. }))
        && !r.database_users
    {
        return Err(invalid(
            "properties.authInfo.authType",
            format!(
                "an identity needs a database user on {}, and no SQL data plane is configured (azure.sql_data_plane)",
                kind.name
            ),
        ));
    }

    let client = match props.client_type {
        Some(c) => c,
        None if kind.client_types(auth_type).any(|c| c == ClientType::None) => ClientType::None,
        None => kind
            .client_types(auth_type)
            .next()
            .unwrap_or(ClientType::None),
    };
    if kind.templates(auth_type, client).is_none() {
        let names: Vec<_> = kind.client_types(auth_type).map(|c| c.as_str()).collect();
        return Err(invalid(
            "properties.clientType",
            format!(
                "clientType '{}' is not supported for {} with authType '{}'; supported: {}",
                client.as_str(),
                kind.name,
                auth_type.as_str(),
                names.join(", ")
            ),
        ));
    }

    let scope = match (source.settings, props.scope.as_deref()) {
        (tether_model::catalog::SettingsKind::ContainerEnv, Some(s)) if !s.trim().is_empty() => {
            Some(s.to_string())
        }
        // Without a name, the app's only container (the step fails if it has several).
        (tether_model::catalog::SettingsKind::ContainerEnv, _) | (_, None) => None,
        (_, Some(_)) => {
            return Err(invalid(
                "properties.scope",
                "properties.scope applies to container apps (the container's name)",
            ));
        }
    };

    let secret_store = match &props.secret_store {
        Some(store) => match &store.key_vault_id {
            Some(id) => {
                let vault = ResourceId::parse(id)
                    .map_err(|e| e.with_target("properties.secretStore.keyVaultId"))?;
                if !vault.is_type("Microsoft.KeyVault/vaults") {
                    return Err(invalid(
                        "properties.secretStore.keyVaultId",
                        "secretStore.keyVaultId must be a Key Vault (Microsoft.KeyVault/vaults)",
                    ));
                }
                let name = store.key_vault_secret_name.clone();
                if let Some(n) = &name {
                    let ok = !n.is_empty()
                        && n.len() <= 100
                        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                    if !ok {
                        return Err(invalid(
                            "properties.secretStore.keyVaultSecretName",
                            "a Key Vault secret name is 1-100 letters, digits and '-'",
                        ));
                    }
                }
                Some(SecretStore { vault, name })
            }
            None if store.key_vault_secret_name.is_some() => {
                return Err(invalid(
                    "properties.secretStore.keyVaultId",
                    "secretStore.keyVaultSecretName needs secretStore.keyVaultId",
                ));
            }
            None => None,
        },
        None => None,
    };
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
    let network = network(props, kind)?;
    let spec = ConnectionSpec {
        source: source.name.clone(),
        target,
        kind: kind.name.clone(),
        auth,
        auth_type,
        client,
        naming: r.naming,
        configuration: props.configuration_info.clone(),
        network,
        secret_store,
        scope,
    };
    // Render the key names now, so a bad rename or addition is a synchronous 400.
    spec.configuration_request()?.key_names()?;
    if let Auth::SecretReference { .. } = &spec.auth {
        secret_reference_fits(&spec)?;
    }
    Ok(spec)
}

/// A Key Vault reference replaces a whole setting: the password must be a setting of its
/// own, not part of a connection string.
fn secret_reference_fits(spec: &ConnectionSpec) -> Result<(), Error> {
    let kind = spec.kind()?;
    let templates = kind
        .templates(spec.auth_type, spec.client)
        .unwrap_or_default();
    let embedded = templates
        .iter()
        .any(|t| t.facts().any(|f| f == "password") && t.segments.len() > 1);
    if embedded {
        return Err(invalid(
            "properties.authInfo.secretInfo",
            format!(
                "clientType '{}' puts the password inside a connection string, which a Key Vault secret reference cannot; use a client type with a separate password setting (for example 'none')",
                spec.client.as_str()
            ),
        ));
    }
    Ok(())
}

fn auth(r: &Request<'_>, kind: &TargetKind, info: &AuthInfo) -> Result<Auth, Error> {
    let sealed = || match &r.secret {
        SecretInput::Sealed(s) => Some(s.clone()),
        SecretInput::Missing => None,
    };
    let opt_out = |mode: Option<AuthMode>| mode == Some(AuthMode::OptOutAllAuth);
    let database = kind
        .identity
        .iter()
        .any(|g| matches!(g, IdentityGrant::DatabaseUser { .. }));
    let options = |user_name: &Option<String>, roles: &Option<Vec<String>>, mode| {
        let user_name = match user_name {
            Some(name) => Some(db_user(name)?),
            None if database => Some(default_db_user(r.at)),
            None => None,
        };
        Ok::<_, Error>(IdentityOptions {
            user_name,
            roles: roles.clone().unwrap_or_default(),
            opt_out: opt_out(mode),
        })
    };
    match info {
        AuthInfo::Secret(s) if kind.secret == SecretSource::Keys => {
            if s.name.is_some() || s.secret_info.is_some() {
                return Err(invalid(
                    "properties.authInfo",
                    format!(
                        "{} hands out its keys: secret auth takes no name or secretInfo",
                        kind.name
                    ),
                ));
            }
            Ok(Auth::TargetKeys)
        }
        AuthInfo::AccessKey(_) => Ok(Auth::TargetKeys),
        AuthInfo::Secret(s) => {
            let user = s
                .name
                .clone()
                .filter(|n| !n.trim().is_empty())
                .ok_or_else(|| {
                    invalid(
                        "properties.authInfo.name",
                        "authInfo.authType 'secret' requires authInfo.name",
                    )
                })?;
            match &s.secret_info {
                Some(SecretInfo::KeyVaultSecretUri { value }) => {
                    let uri = value
                        .clone()
                        .filter(|v| v.starts_with("https://"))
                        .ok_or_else(|| {
                            invalid(
                                "properties.authInfo.secretInfo.value",
                                "a keyVaultSecretUri is an https URI of a Key Vault secret",
                            )
                        })?;
                    Ok(Auth::SecretReference { user, uri })
                }
                Some(SecretInfo::KeyVaultSecretReference { .. }) => Err(invalid(
                    "properties.authInfo.secretInfo.secretType",
                    "keyVaultSecretReference applies to Kubernetes sources; use rawValue or keyVaultSecretUri",
                )),
                None | Some(SecretInfo::RawValue { .. }) => {
                    let password = sealed().ok_or_else(|| {
                        invalid(
                            "properties.authInfo.secretInfo",
                            "authInfo.authType 'secret' requires authInfo.secretInfo with secretType 'rawValue' and a value (the stored one is kept only while the target, user name and auth type stay the same)",
                        )
                    })?;
                    Ok(Auth::Secret { user, password })
                }
            }
        }
        AuthInfo::SystemAssignedIdentity(i) => Ok(Auth::SystemIdentity(options(
            &i.user_name,
            &i.roles,
            i.auth_mode,
        )?)),
        AuthInfo::UserAssignedIdentity(i) => {
            let client_id = i.client_id.clone().ok_or_else(|| {
                invalid(
                    "properties.authInfo.clientId",
                    "authInfo.authType 'userAssignedIdentity' requires authInfo.clientId",
                )
            })?;
            let subscription = match &i.subscription_id {
                Some(s) if tether_model::ids::is_canonical_guid(s) => s.clone(),
                Some(_) => {
                    return Err(invalid(
                        "properties.authInfo.subscriptionId",
                        "authInfo.subscriptionId must be a GUID",
                    ));
                }
                None => r.at.scope.subscription().to_string(),
            };
            Ok(Auth::UserIdentity {
                client_id,
                subscription,
                options: options(&i.user_name, &i.roles, i.auth_mode)?,
            })
        }
        AuthInfo::ServicePrincipalSecret(sp) => {
            let client_id = sp.client_id.clone().ok_or_else(|| {
                invalid(
                    "properties.authInfo.clientId",
                    "authInfo.authType 'servicePrincipalSecret' requires authInfo.clientId",
                )
            })?;
            let principal_id = sp.principal_id.clone().ok_or_else(|| {
                invalid(
                    "properties.authInfo.principalId",
                    "authInfo.authType 'servicePrincipalSecret' requires authInfo.principalId",
                )
            })?;
            let secret = sealed().ok_or_else(|| {
                invalid(
                    "properties.authInfo.secret",
                    "authInfo.authType 'servicePrincipalSecret' requires authInfo.secret (the stored one is kept only while the target and the principal stay the same)",
                )
            })?;
            Ok(Auth::ServicePrincipal {
                client_id,
                principal_id,
                secret,
                options: options(&sp.user_name, &sp.roles, sp.auth_mode)?,
            })
        }
        other => Err(invalid(
            "properties.authInfo.authType",
            format!("authType '{}' is not supported", other.auth_type().as_str()),
        )),
    }
}

/// A caller's database user name: 1-63 letters, digits and `_` (it goes into SQL
/// statements).
fn db_user(name: &str) -> Result<String, Error> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(invalid(
            "properties.authInfo.userName",
            "authInfo.userName is 1-63 letters, digits and '_'",
        ));
    }
    Ok(name.to_string())
}

/// The database user of an identity when the caller names none: `aad_` and the linker's
/// name, every other character `_` (Service Connector's convention).
fn default_db_user(at: &LinkerRef) -> String {
    format!("aad_{}", at.name.as_str())
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(63)
        .collect()
}

fn network(props: &LinkerProperties, kind: &TargetKind) -> Result<NetworkAccess, Error> {
    let mut access = NetworkAccess::default();
    match props.v_net_solution.as_ref().and_then(|v| v.solution_type) {
        None => {}
        Some(VNetSolutionType::Firewall) if kind.has_network() => access.source_ips = true,
        Some(other) => {
            let name = serde_json::to_value(other)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string));
            return Err(invalid(
                "properties.vNetSolution.type",
                format!(
                    "vNetSolution.type '{}' is not supported for {}{}",
                    name.unwrap_or_default(),
                    kind.name,
                    if kind.has_network() {
                        "; use 'firewall' or leave it empty"
                    } else {
                        "; leave it empty"
                    }
                ),
            ));
        }
    }
    let Some(public) = &props.public_network_solution else {
        return Ok(access);
    };
    if public.action == Some(ActionType::OptOut) {
        return Ok(access);
    }
    let Some(rules) = &public.firewall_rules else {
        return Ok(access);
    };
    if rules.caller_client_ip == Some(AllowType::True) {
        return Err(invalid(
            "properties.publicNetworkSolution.firewallRules.callerClientIP",
            "callerClientIP applies to location-based connectors (local development), not to linkers",
        ));
    }
    let wants_ranges = rules.ip_ranges.as_ref().is_some_and(|r| !r.is_empty());
    if !kind.has_network() && (rules.azure_services == Some(AllowType::True) || wants_ranges) {
        return Err(invalid(
            "properties.publicNetworkSolution.firewallRules",
            format!("firewall rules are not supported for {}", kind.name),
        ));
    }
    if rules.azure_services == Some(AllowType::True) {
        if !matches!(kind.network, Some(Network::FirewallRules { .. })) {
            return Err(invalid(
                "properties.publicNetworkSolution.firewallRules.azureServices",
                format!("azureServices is not supported for {}", kind.name),
            ));
        }
        access.azure_services = true;
    }
    for range in rules.ip_ranges.iter().flatten() {
        let parsed = parse_range(range).ok_or_else(|| {
            invalid(
                "properties.publicNetworkSolution.firewallRules.ipRanges",
                format!(
                    "'{}' is not an IPv4 address, CIDR block (a.b.c.d/n) or range (a.b.c.d-e.f.g.h)",
                    tether_model::error::quoted(range)
                ),
            )
        })?;
        access.ranges.push(parsed);
    }
    Ok(access)
}

/// Parses `a.b.c.d`, `a.b.c.d/n` or `a.b.c.d-e.f.g.h`.
pub fn parse_range(text: &str) -> Option<(Ipv4Addr, Ipv4Addr)> {
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
mod tests;
