//! The linker resource model: one strict serde model of `LinkerProperties` that is the
//! superset of every supported api-version (see `api_version` for what older versions lack).
//!
//! Secrets (`x-ms-secret` properties) are [`Secret`]s marked `skip_serializing`: they can be
//! read from a request but no serialization of a model (a response, a log line, a database
//! row, a saga log entry) can ever contain them. Code that must persist a secret takes it out
//! explicitly with [`LinkerProperties::take_secret`] and seals it.

use std::collections::BTreeMap;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A write-only secret value: deserializable, never serializable, redacted in `Debug`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Self(SecretString::from(value))
    }
    /// The clear text. Call it only where the value leaves for its destination.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// `LinkerProperties`: the body of a linker. Unknown properties are rejected.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinkerProperties {
    /// What to connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_service: Option<TargetService>,
    /// How the source authenticates to the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_info: Option<AuthInfo>,
    /// The application's client type; selects the configuration key names and formats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_type: Option<ClientType>,
    /// Read-only; accepted in requests and ignored (the service sets it).
    #[serde(default, skip_serializing)]
    pub provisioning_state: Option<Value>,
    /// Private networking set-up (or `firewall`, Tether's explicit public-firewall option).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v_net_solution: Option<VNetSolution>,
    /// The Key Vault to keep secrets in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_store: Option<SecretStore>,
    /// Where in the source the connection applies (container, namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Public network (firewall) set-up on the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_network_solution: Option<PublicNetworkSolution>,
    /// Options shaping the generated configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_info: Option<ConfigurationInfo>,
}

impl LinkerProperties {
    /// Reads `properties` from a request body, within the size limits of [`crate::limits`].
    /// Errors are `400 InvalidRequestContent` naming the offending path; messages about
    /// `authInfo` values never quote the value.
    pub fn from_json(properties: Value) -> Result<Self, crate::Error> {
        crate::limits::check_properties(&properties)?;
        serde_path_to_error::deserialize(properties).map_err(|e| {
            let path = e.path().to_string();
            let detail = e.inner().to_string();
            // serde quotes offending values; under `authInfo` a value may be a secret. (The
            // path stops at tagged enums, so it cannot tell which field failed there.)
            let may_echo = detail.starts_with("invalid type") || detail.starts_with("invalid value");
            let detail = if path.starts_with("authInfo") && may_echo {
                "a value has the wrong type or is not allowed (values under authInfo are not echoed)".to_string()
            } else {
                detail
            };
            let target = if path == "." {
                "properties".to_string()
            } else {
                format!("properties.{path}")
            };
            crate::Error::invalid("InvalidRequestContent", format!("{target}: {detail}")).with_target(target)
        })
    }

    /// Moves the auth secret (password, client secret, certificate) out of the model, leaving
    /// `None` behind, so the rest can be stored and shown.
    pub fn take_secret(&mut self) -> Option<Secret> {
        self.auth_info
            .as_mut()
            .and_then(AuthInfo::secret_slot)
            .and_then(Option::take)
    }

    /// Puts a secret taken by [`LinkerProperties::take_secret`] back where it came from.
    /// Does nothing when the auth type has no secret field.
    pub fn restore_secret(&mut self, secret: Option<Secret>) {
        if let Some(slot) = self.auth_info.as_mut().and_then(AuthInfo::secret_slot) {
            *slot = secret;
        }
    }

    /// The secret currently held, if any.
    pub fn secret(&self) -> Option<&Secret> {
        match self.auth_info.as_ref()? {
            AuthInfo::Secret(a) => match a.secret_info.as_ref()? {
                SecretInfo::RawValue { value } => value.as_ref(),
                _ => None,
            },
            AuthInfo::ServicePrincipalSecret(a) => a.secret.as_ref(),
            AuthInfo::ServicePrincipalCertificate(a) => a.certificate.as_ref(),
            AuthInfo::EasyAuthMicrosoftEntraId(a) => a.secret.as_ref(),
            _ => None,
        }
    }
}

/// `TargetServiceBase`, discriminated by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum TargetService {
    /// An Azure resource, by ARM id.
    AzureResource(AzureResource),
    /// A Confluent Cloud Kafka bootstrap server.
    ConfluentBootstrapServer(EndpointTarget),
    /// A Confluent schema registry.
    ConfluentSchemaRegistry(EndpointTarget),
    /// A server that is not an Azure resource.
    SelfHostedServer(EndpointTarget),
    /// A Microsoft Fabric endpoint (preview).
    FabricPlatform(EndpointTarget),
}

/// `AzureResource` target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AzureResource {
    /// The target's ARM id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Target-kind specific options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_properties: Option<AzureResourceProperties>,
}

/// A target identified by an endpoint (Confluent, self-hosted, Fabric).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointTarget {
    /// The endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// `AzureResourcePropertiesBase`, discriminated by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum AzureResourceProperties {
    /// Key Vault options.
    KeyVault(KeyVaultProperties),
    /// App Configuration options (preview).
    AppConfig(AppConfigProperties),
}

/// `AzureKeyVaultProperties`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyVaultProperties {
    /// Mount through the Secrets Store CSI driver (AKS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_as_kubernetes_csi_driver: Option<bool>,
}

/// `AzureAppConfigProperties`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppConfigProperties {
    /// Use the App Configuration Kubernetes extension (AKS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_with_kubernetes_extension: Option<bool>,
}

/// `AuthInfoBase`, discriminated by `authType`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "authType")]
pub enum AuthInfo {
    /// A user name and a password (or a reference to one).
    #[serde(rename = "secret")]
    Secret(SecretAuthInfo),
    /// The source's system-assigned managed identity.
    #[serde(rename = "systemAssignedIdentity")]
    SystemAssignedIdentity(IdentityAuthInfo),
    /// A user-assigned managed identity.
    #[serde(rename = "userAssignedIdentity")]
    UserAssignedIdentity(UserAssignedIdentityAuthInfo),
    /// A service principal with a client secret.
    #[serde(rename = "servicePrincipalSecret")]
    ServicePrincipalSecret(ServicePrincipalSecretAuthInfo),
    /// A service principal with a certificate.
    #[serde(rename = "servicePrincipalCertificate")]
    ServicePrincipalCertificate(ServicePrincipalCertificateAuthInfo),
    /// The target's access keys.
    #[serde(rename = "accessKey")]
    AccessKey(AccessKeyAuthInfo),
    /// The signed-in user (local development).
    #[serde(rename = "userAccount")]
    UserAccount(UserAccountAuthInfo),
    /// App Service Easy Auth with Microsoft Entra ID.
    #[serde(rename = "easyAuthMicrosoftEntraID")]
    EasyAuthMicrosoftEntraId(EasyAuthAuthInfo),
}

impl AuthInfo {
    /// The wire name of the auth type.
    pub fn auth_type(&self) -> AuthType {
        match self {
            AuthInfo::Secret(_) => AuthType::Secret,
            AuthInfo::SystemAssignedIdentity(_) => AuthType::SystemAssignedIdentity,
            AuthInfo::UserAssignedIdentity(_) => AuthType::UserAssignedIdentity,
            AuthInfo::ServicePrincipalSecret(_) => AuthType::ServicePrincipalSecret,
            AuthInfo::ServicePrincipalCertificate(_) => AuthType::ServicePrincipalCertificate,
            AuthInfo::AccessKey(_) => AuthType::AccessKey,
            AuthInfo::UserAccount(_) => AuthType::UserAccount,
            AuthInfo::EasyAuthMicrosoftEntraId(_) => AuthType::EasyAuthMicrosoftEntraId,
        }
    }

    fn secret_slot(&mut self) -> Option<&mut Option<Secret>> {
        match self {
            AuthInfo::Secret(a) => match a.secret_info.as_mut()? {
                SecretInfo::RawValue { value } => Some(value),
                _ => None,
            },
            AuthInfo::ServicePrincipalSecret(a) => Some(&mut a.secret),
            AuthInfo::ServicePrincipalCertificate(a) => Some(&mut a.certificate),
            AuthInfo::EasyAuthMicrosoftEntraId(a) => Some(&mut a.secret),
            _ => None,
        }
    }
}

/// `AuthType` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuthType {
    /// `secret`
    #[serde(rename = "secret")]
    Secret,
    /// `systemAssignedIdentity`
    #[serde(rename = "systemAssignedIdentity")]
    SystemAssignedIdentity,
    /// `userAssignedIdentity`
    #[serde(rename = "userAssignedIdentity")]
    UserAssignedIdentity,
    /// `servicePrincipalSecret`
    #[serde(rename = "servicePrincipalSecret")]
    ServicePrincipalSecret,
    /// `servicePrincipalCertificate`
    #[serde(rename = "servicePrincipalCertificate")]
    ServicePrincipalCertificate,
    /// `accessKey`
    #[serde(rename = "accessKey")]
    AccessKey,
    /// `userAccount`
    #[serde(rename = "userAccount")]
    UserAccount,
    /// `easyAuthMicrosoftEntraID`
    #[serde(rename = "easyAuthMicrosoftEntraID")]
    EasyAuthMicrosoftEntraId,
}

impl AuthType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::Secret => "secret",
            AuthType::SystemAssignedIdentity => "systemAssignedIdentity",
            AuthType::UserAssignedIdentity => "userAssignedIdentity",
            AuthType::ServicePrincipalSecret => "servicePrincipalSecret",
            AuthType::ServicePrincipalCertificate => "servicePrincipalCertificate",
            AuthType::AccessKey => "accessKey",
            AuthType::UserAccount => "userAccount",
            AuthType::EasyAuthMicrosoftEntraId => "easyAuthMicrosoftEntraID",
        }
    }
}

/// `AuthMode`: whether the service performs the auth set-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AuthMode {
    /// Do the set-up (default).
    OptInAllAuth,
    /// Skip it.
    OptOutAllAuth,
}

/// `DeleteOrUpdateBehavior`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeleteOrUpdateBehavior {
    /// Keep earlier set-up.
    Default,
    /// Undo earlier set-up.
    ForcedCleanup,
}

/// `SecretAuthInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretAuthInfo {
    /// Whether to do the auth set-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_mode: Option<AuthMode>,
    /// The user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The password, or a reference to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_info: Option<SecretInfo>,
}

/// `SecretInfoBase`, discriminated by `secretType`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "secretType")]
pub enum SecretInfo {
    /// The secret itself (write-only).
    #[serde(rename = "rawValue")]
    RawValue {
        /// The clear-text secret; never serialized.
        #[serde(default, skip_serializing)]
        value: Option<Secret>,
    },
    /// A Key Vault secret URI.
    #[serde(rename = "keyVaultSecretUri")]
    KeyVaultSecretUri {
        /// The URI.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
    },
    /// A secret in the vault of `secretStore` (AKS).
    #[serde(rename = "keyVaultSecretReference", rename_all = "camelCase")]
    KeyVaultSecretReference {
        /// The secret name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The secret version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
}

/// `SystemAssignedIdentityAuthInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityAuthInfo {
    /// Whether to do the auth set-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_mode: Option<AuthMode>,
    /// Database user mapped to the identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// Clean-up behaviour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_or_update_behavior: Option<DeleteOrUpdateBehavior>,
    /// Role names to assign instead of the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
}

/// `UserAssignedIdentityAuthInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserAssignedIdentityAuthInfo {
    /// Whether to do the auth set-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_mode: Option<AuthMode>,
    /// Database user mapped to the identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// The identity's client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The identity's subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// Clean-up behaviour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_or_update_behavior: Option<DeleteOrUpdateBehavior>,
    /// Role names to assign instead of the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
}

/// `ServicePrincipalSecretAuthInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePrincipalSecretAuthInfo {
    /// Whether to do the auth set-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_mode: Option<AuthMode>,
    /// Database user mapped to the principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// Application (client) id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Object id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    /// Client secret; never serialized.
    #[serde(default, skip_serializing)]
    pub secret: Option<Secret>,
    /// Clean-up behaviour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_or_update_behavior: Option<DeleteOrUpdateBehavior>,
    /// Role names to assign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
}

/// `ServicePrincipalCertificateAuthInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePrincipalCertificateAuthInfo {
    /// Whether to do the auth set-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_mode: Option<AuthMode>,
    /// Application (client) id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Object id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    /// Certificate material; never serialized.
    #[serde(default, skip_serializing)]
    pub certificate: Option<Secret>,
    /// Clean-up behaviour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_or_update_behavior: Option<DeleteOrUpdateBehavior>,
    /// Role names to assign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
}

/// `AccessKeyInfoBase`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessKeyAuthInfo {
    /// Whether to do the auth set-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_mode: Option<AuthMode>,
    /// Which permissions the key must grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
}

/// `UserAccountAuthInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserAccountAuthInfo {
    /// Whether to do the auth set-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_mode: Option<AuthMode>,
    /// Database user mapped to the signed-in user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// The user's object id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    /// Clean-up behaviour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_or_update_behavior: Option<DeleteOrUpdateBehavior>,
    /// Role names to assign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
}

/// `EasyAuthMicrosoftEntraIDAuthInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EasyAuthAuthInfo {
    /// Whether to do the auth set-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_mode: Option<AuthMode>,
    /// Entra application client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Entra application secret; never serialized.
    #[serde(default, skip_serializing)]
    pub secret: Option<Secret>,
    /// Clean-up behaviour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_or_update_behavior: Option<DeleteOrUpdateBehavior>,
}

/// `ClientType`: the application's language or framework.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ClientType {
    /// `none`: discrete host/port/user keys.
    #[serde(rename = "none")]
    None,
    /// `dotnet`
    #[serde(rename = "dotnet")]
    Dotnet,
    /// `java`
    #[serde(rename = "java")]
    Java,
    /// `python`
    #[serde(rename = "python")]
    Python,
    /// `go`
    #[serde(rename = "go")]
    Go,
    /// `php`
    #[serde(rename = "php")]
    Php,
    /// `ruby`
    #[serde(rename = "ruby")]
    Ruby,
    /// `django`
    #[serde(rename = "django")]
    Django,
    /// `nodejs`
    #[serde(rename = "nodejs")]
    Nodejs,
    /// `springBoot`
    #[serde(rename = "springBoot")]
    SpringBoot,
    /// `kafka-springBoot`
    #[serde(rename = "kafka-springBoot")]
    KafkaSpringBoot,
    /// `jms-springBoot`
    #[serde(rename = "jms-springBoot")]
    JmsSpringBoot,
    /// `dapr`
    #[serde(rename = "dapr")]
    Dapr,
}

impl ClientType {
    /// Every client type, in the order of the spec's enum.
    pub const ALL: [ClientType; 13] = [
        ClientType::None,
        ClientType::Dotnet,
        ClientType::Java,
        ClientType::Python,
        ClientType::Go,
        ClientType::Php,
        ClientType::Ruby,
        ClientType::Django,
        ClientType::Nodejs,
        ClientType::SpringBoot,
        ClientType::KafkaSpringBoot,
        ClientType::JmsSpringBoot,
        ClientType::Dapr,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientType::None => "none",
            ClientType::Dotnet => "dotnet",
            ClientType::Java => "java",
            ClientType::Python => "python",
            ClientType::Go => "go",
            ClientType::Php => "php",
            ClientType::Ruby => "ruby",
            ClientType::Django => "django",
            ClientType::Nodejs => "nodejs",
            ClientType::SpringBoot => "springBoot",
            ClientType::KafkaSpringBoot => "kafka-springBoot",
            ClientType::JmsSpringBoot => "jms-springBoot",
            ClientType::Dapr => "dapr",
        }
    }

    /// Spring clients use Spring property names, not `<CLOUD>_<TYPE>_<NAME>` keys.
    pub fn is_spring(self) -> bool {
        matches!(
            self,
            ClientType::SpringBoot | ClientType::KafkaSpringBoot | ClientType::JmsSpringBoot
        )
    }
}

/// `VNetSolution`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VNetSolution {
    /// `serviceEndpoint`, `privateLink`, or Tether's `firewall`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub solution_type: Option<VNetSolutionType>,
    /// Clean-up behaviour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_or_update_behavior: Option<DeleteOrUpdateBehavior>,
}

/// `VNetSolutionType`. The spec's enum is extensible; `firewall` is Tether's explicit request
/// for public-network firewall rules that admit the source's outbound addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum VNetSolutionType {
    /// Service endpoint on the source's subnet.
    ServiceEndpoint,
    /// An existing private endpoint.
    PrivateLink,
    /// Firewall rules for the source's outbound IP addresses.
    Firewall,
}

/// `SecretStore`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretStore {
    /// The Key Vault to store secrets in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_vault_id: Option<String>,
    /// The secret name to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_vault_secret_name: Option<String>,
}

/// `ActionType` of network and configuration options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ActionType {
    /// Do it (default).
    Enable,
    /// Leave it alone.
    OptOut,
}

/// `AllowType`: the strings `"true"` / `"false"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AllowType {
    /// `"true"`
    #[serde(rename = "true")]
    True,
    /// `"false"`
    #[serde(rename = "false")]
    False,
}

/// `PublicNetworkSolution`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublicNetworkSolution {
    /// Clean-up behaviour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_or_update_behavior: Option<DeleteOrUpdateBehavior>,
    /// `enable` (default) or `optOut`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionType>,
    /// Rules to add on the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall_rules: Option<FirewallRules>,
}

/// `FirewallRules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FirewallRules {
    /// Addresses or ranges (`a.b.c.d`, `a.b.c.d/n`, `a.b.c.d-e.f.g.h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_ranges: Option<Vec<String>>,
    /// Allow Azure services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_services: Option<AllowType>,
    /// Allow the caller's client IP (location-based connectors only).
    #[serde(
        default,
        rename = "callerClientIP",
        skip_serializing_if = "Option::is_none"
    )]
    pub caller_client_ip: Option<AllowType>,
}

/// `ConfigurationInfo`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigurationInfo {
    /// Clean-up behaviour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_or_update_behavior: Option<DeleteOrUpdateBehavior>,
    /// `enable` (default) writes the settings into the source; `optOut` does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionType>,
    /// Renames: default key → custom key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customized_keys: Option<BTreeMap<String, String>>,
    /// Dapr options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dapr_properties: Option<Value>,
    /// Extra settings to write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_configurations: Option<BTreeMap<String, String>>,
    /// Extra `key=value` pairs appended to a generated connection string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_connection_string_properties: Option<BTreeMap<String, String>>,
    /// Write into an App Configuration store instead of the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_store: Option<Value>,
}

/// Who made a change, as ARM's `systemData` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemData {
    /// Identity that created the resource.
    pub created_by: String,
    /// `User`, `Application`, `ManagedIdentity` or `Key`.
    pub created_by_type: String,
    /// Creation time (UTC).
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Identity of the last modification.
    pub last_modified_by: String,
    /// Kind of that identity.
    pub last_modified_by_type: String,
    /// Time of the last modification (UTC).
    pub last_modified_at: chrono::DateTime<chrono::Utc>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> Result<LinkerProperties, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn secrets_are_read_but_never_written() {
        let mut p = parse(json!({
            "targetService": {"type": "AzureResource", "id": "/x"},
            "authInfo": {"authType": "secret", "name": "app", "secretInfo": {"secretType": "rawValue", "value": "hunter2"}},
            "clientType": "python"
        }))
        .unwrap();
        assert_eq!(p.secret().unwrap().expose(), "hunter2");
        let shown = serde_json::to_string(&p).unwrap();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains(r#""secretInfo":{"secretType":"rawValue"}"#),
            "{shown}"
        );
        assert!(!format!("{p:?}").contains("hunter2"));

        let taken = p.take_secret().unwrap();
        assert!(p.secret().is_none());
        p.restore_secret(Some(taken));
        assert_eq!(p.secret().unwrap().expose(), "hunter2");
    }

    #[test]
    fn service_principal_secrets_are_write_only_too() {
        let p = parse(json!({"authInfo": {
            "authType": "servicePrincipalSecret", "clientId": "c", "principalId": "p", "secret": "s3cr3t"
        }}))
        .unwrap();
        assert_eq!(p.secret().unwrap().expose(), "s3cr3t");
        assert!(!serde_json::to_string(&p).unwrap().contains("s3cr3t"));
    }

    #[test]
    fn request_errors_name_the_path_and_hide_secrets() {
        let err =
            LinkerProperties::from_json(json!({"authInfo": {"authType": "secret", "nmae": "x"}}))
                .unwrap_err();
        assert_eq!(err.code(), "InvalidRequestContent");
        assert_eq!(err.target(), Some("properties.authInfo"));
        assert!(err.detail().message.contains("nmae"), "{err}");
        for bad in [json!(["hunter2"]), json!(31337), json!({"hunter2": true})] {
            let err = LinkerProperties::from_json(json!({"authInfo": {"authType": "secret",
                "secretInfo": {"secretType": "rawValue", "value": bad}}}))
            .unwrap_err();
            assert_eq!(err.target(), Some("properties.authInfo"));
            let message = err.detail().message;
            assert!(
                !message.contains("hunter2") && !message.contains("31337"),
                "{message}"
            );
        }
        let err = LinkerProperties::from_json(json!({"clientType": "cobol"})).unwrap_err();
        assert!(
            err.detail().message.contains("cobol") && err.detail().message.contains("python"),
            "{err}"
        );
    }

    #[test]
    fn unknown_fields_and_values_are_rejected() {
        assert!(parse(json!({"bogus": 1})).is_err());
        assert!(parse(json!({"authInfo": {"authType": "secret", "bogus": 1}})).is_err());
        assert!(parse(json!({"authInfo": {"authType": "telepathy"}})).is_err());
        assert!(parse(json!({"targetService": {"type": "AzureResource", "idd": "x"}})).is_err());
        assert!(parse(json!({"clientType": "cobol"})).is_err());
        assert!(parse(json!({"authInfo": {"name": "no discriminator"}})).is_err());
    }

    #[test]
    fn read_only_and_null_properties_are_accepted() {
        let nulls =
            parse(json!({"vNetSolution": null, "secretStore": null, "scope": null})).unwrap();
        assert_eq!(nulls, LinkerProperties::default());
        let p =
            parse(json!({"provisioningState": "Succeeded", "vNetSolution": {"type": "firewall"}}))
                .unwrap();
        assert_eq!(
            p.v_net_solution.unwrap().solution_type,
            Some(VNetSolutionType::Firewall)
        );
        assert!(p.provisioning_state.is_some());
    }

    #[test]
    fn round_trips_the_spec_example_shapes() {
        let body = json!({
            "targetService": {"type": "AzureResource", "id": "/subscriptions/x",
                "resourceProperties": {"type": "KeyVault", "connectAsKubernetesCsiDriver": true}},
            "authInfo": {"authType": "userAssignedIdentity", "clientId": "c", "subscriptionId": "s", "roles": ["Reader"]},
            "clientType": "springBoot",
            "publicNetworkSolution": {"action": "enable", "firewallRules": {"ipRanges": ["1.2.3.4"], "callerClientIP": "true", "azureServices": "false"}},
            "configurationInfo": {"customizedKeys": {"A": "B"}, "additionalConfigurations": {"C": "D"}}
        });
        let p = parse(body.clone()).unwrap();
        assert_eq!(serde_json::to_value(&p).unwrap(), body);
    }
}

/// A secret encrypted at rest (AEAD ciphertext with its nonce). Opaque outside the code that
/// holds the key; safe to store, log by length, or put in saga params.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sealed(#[serde(with = "base64_bytes")] pub Vec<u8>);

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}

mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        STANDARD
            .decode(String::deserialize(d)?)
            .map_err(serde::de::Error::custom)
    }
}

/// A linker as stored: its identity, its spec (without secrets), its sealed secret, and its
/// lifecycle fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Linker {
    /// Internal id.
    pub id: crate::ids::LinkerId,
    /// Where it lives (source resource + name), in the caller's latest casing.
    pub at: crate::ids::LinkerRef,
    /// The properties as last written, secrets removed.
    pub properties: LinkerProperties,
    /// The auth secret, sealed.
    pub secret: Option<Sealed>,
    /// How its configuration keys are named (fixed when it was created).
    pub key_naming: crate::configuration::KeyNaming,
    /// Its provisioning state.
    pub provisioning_state: crate::operation::ProvisioningState,
    /// ARM `systemData`.
    pub system_data: SystemData,
    /// Optimistic-concurrency generation, bumped by every write.
    pub generation: i64,
    /// The operation running on it, if any.
    pub operation: Option<crate::ids::OperationId>,
    /// An operation queued behind the running one (a delete that canceled it).
    pub next_operation: Option<crate::ids::OperationId>,
    /// While an update runs: the spec it replaced, which comes back if the update fails.
    pub previous: Option<PreviousSpec>,
    /// The checked connection it was accepted with (opaque here: the application's), so a
    /// stored linker is never checked again; `None` for linkers the first release stored.
    pub spec: Option<serde_json::Value>,
}

/// The spec an update replaced.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviousSpec {
    /// Its properties, secrets removed.
    pub properties: LinkerProperties,
    /// Its sealed secret.
    pub secret: Option<Sealed>,
    /// Its checked connection.
    pub spec: Option<serde_json::Value>,
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    use super::*;

    /// Keys the model knows, so generated objects reach deep into it, plus arbitrary ones.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "targetService",
                "authInfo",
                "clientType",
                "vNetSolution",
                "secretStore",
                "scope",
                "publicNetworkSolution",
                "configurationInfo",
                "type",
                "id",
                "authType",
                "name",
                "secretInfo",
                "secretType",
                "value",
                "customizedKeys",
                "additionalConfigurations",
                "roles",
                "clientId",
                "secret",
                "firewallRules",
                "ipRanges",
                "action",
                "endpoint",
                "resourceProperties",
                "provisioningState",
            ])
            .prop_map(str::to_string),
            any::<String>(),
        ]
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<String>().prop_map(Value::String),
            prop::sample::select(vec![
                "secret",
                "AzureResource",
                "rawValue",
                "python",
                "firewall"
            ])
            .prop_map(|s| json!(s)),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_json_parses_or_gets_a_400_and_round_trips(value in json()) {
            match LinkerProperties::from_json(value) {
                Ok(mut p) => {
                    // Read-only: accepted in requests, never shown.
                    p.provisioning_state = None;
                    let secret = p.take_secret();
                    let shown = serde_json::to_value(&p).unwrap();
                    let mut again = LinkerProperties::from_json(shown).unwrap();
                    again.restore_secret(secret.clone());
                    p.restore_secret(secret);
                    prop_assert_eq!(again, p);
                }
                Err(e) => prop_assert_eq!(e.code(), "InvalidRequestContent"),
            }
        }
    }
}
