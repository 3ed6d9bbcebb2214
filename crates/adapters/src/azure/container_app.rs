//! Container apps (`Microsoft.App/containerApps`) as connection sources: configuration is the
//! environment of one container (the linker's `scope`); secret values are container app
//! secrets referenced by `secretRef`, and a Key Vault reference
//! (`@Microsoft.KeyVault(SecretUri=…)`, what App Service understands) becomes a secret with a
//! `keyVaultUrl` read through the app's system identity. Every change creates a new revision.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use tether_model::ids::ResourceId;

use super::identity;
use super::web_app::outbound_ips;
use crate::arm::{ArmClient, Method};
use crate::{
    AdapterError, Call, ErrorKind, IdentityChange, Setting, SettingsChange, SourceFacts,
    SourceIdentities, SourceIdentity, SourceSettings,
};

/// The Container Apps source adapter.
pub struct ContainerAppSource {
    arm: ArmClient,
    api: String,
}

/// The prefix and suffix of a Key Vault reference in a setting's value.
const KV_REF: (&str, &str) = ("@Microsoft.KeyVault(SecretUri=", ")");

/// The secret a setting's value is kept in: the key in lower case, every character other
/// than a letter or digit a `-` (container app secret names are DNS-like).
pub fn secret_name(key: &str) -> String {
    let name: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name.trim_matches('-').chars().take(253).collect()
}

/// One container app secret as written back: a value or a Key Vault URL.
#[derive(Clone, PartialEq)]
enum Secret {
    Value(String),
    KeyVault { url: String, identity: Value },
}

/// What a container app holds that settings touch.
struct App {
    secrets: BTreeMap<String, Secret>,
    containers: Vec<Value>,
    index: usize,
}

impl ContainerAppSource {
    /// An adapter over `arm` speaking `api`.
    pub fn new(arm: ArmClient, api: String) -> Self {
        Self { arm, api }
    }

    async fn load(
        &self,
        call: &Call,
        source: &ResourceId,
        scope: Option<&str>,
    ) -> Result<App, AdapterError> {
        let app = self.arm.get(call, source.as_str(), &self.api).await?;
        let containers = app["properties"]["template"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let index = match scope {
            Some(name) => containers
                .iter()
                .position(|c| c["name"].as_str() == Some(name))
                .ok_or_else(|| {
                    AdapterError::new(
                        ErrorKind::BadRequest,
                        "find container",
                        "ContainerNotFound",
                        format!("the container app has no container named '{name}'"),
                    )
                })?,
            None if containers.len() == 1 => 0,
            None => {
                return Err(AdapterError::new(
                    ErrorKind::BadRequest,
                    "find container",
                    "ContainerNotSpecified",
                    "the container app has several containers: name one in properties.scope",
                ));
            }
        };
        let path = format!("{}/listSecrets", source.as_str());
        let listed: Value = self.arm.post(call, &path, &self.api, None).await?;
        let values: BTreeMap<&str, &str> = listed["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| Some((s["name"].as_str()?, s["value"].as_str()?)))
            .collect();
        let mut secrets = BTreeMap::new();
        for s in app["properties"]["configuration"]["secrets"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let Some(name) = s["name"].as_str() else {
                continue;
            };
            let secret = match s["keyVaultUrl"].as_str() {
                Some(url) => Secret::KeyVault {
                    url: url.to_string(),
                    identity: s.get("identity").cloned().unwrap_or(Value::Null),
                },
                None => Secret::Value(values.get(name).copied().unwrap_or_default().to_string()),
            };
            secrets.insert(name.to_string(), secret);
        }
        Ok(App {
            secrets,
            containers,
            index,
        })
    }
}

impl App {
    fn env(&self) -> Vec<Value> {
        self.containers[self.index]["env"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn settings(&self) -> BTreeMap<String, Setting> {
        self.env()
            .iter()
            .filter_map(|e| {
                let name = e["name"].as_str()?.to_string();
                let setting = match e["secretRef"].as_str() {
                    Some(r) => Setting {
                        value: match self.secrets.get(r) {
                            Some(Secret::Value(v)) => v.clone(),
                            Some(Secret::KeyVault { url, .. }) => {
                                format!("{}{url}{}", KV_REF.0, KV_REF.1)
                            }
                            None => String::new(),
                        },
                        secret: true,
                    },
                    None => Setting {
                        value: e["value"].as_str().unwrap_or_default().to_string(),
                        secret: false,
                    },
                };
                Some((name, setting))
            })
            .collect()
    }

    /// Applies a change; returns whether anything changed.
    fn apply(&mut self, change: &SettingsChange) -> bool {
        let before = (self.env(), self.secrets.clone());
        let mut env: Vec<Value> = self.env();
        for key in change.remove.iter().chain(change.set.keys()) {
            env.retain(|e| e["name"].as_str() != Some(key));
        }
        for (key, setting) in &change.set {
            if setting.secret {
                let name = secret_name(key);
                let secret = match setting
                    .value
                    .strip_prefix(KV_REF.0)
                    .and_then(|v| v.strip_suffix(KV_REF.1))
                {
                    Some(url) => Secret::KeyVault {
                        url: url.to_string(),
                        identity: json!("system"),
                    },
                    None => Secret::Value(setting.value.clone()),
                };
                self.secrets.insert(name.clone(), secret);
                env.push(json!({"name": key, "secretRef": name}));
            } else {
                env.push(json!({"name": key, "value": setting.value}));
            }
        }
        // A secret a changed key referenced goes once nothing references it (a setting that
        // was secret and is removed, or is now plain).
        for key in change.remove.iter().chain(change.set.keys()) {
            let name = json!(secret_name(key));
            let others = self
                .containers
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != self.index);
            let referenced = env.iter().any(|e| e["secretRef"] == name)
                || others
                    .flat_map(|(_, c)| c["env"].as_array().into_iter().flatten())
                    .any(|e| e["secretRef"] == name);
            if !referenced {
                self.secrets.remove(&secret_name(key));
            }
        }
        env.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        let mut sorted_before = before.0.clone();
        sorted_before.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        if let Value::Object(container) = &mut self.containers[self.index] {
            container.insert("env".into(), Value::Array(env.clone()));
        }
        sorted_before != env || before.1 != self.secrets
    }

    fn body(&self) -> Value {
        let secrets: Vec<Value> = self
            .secrets
            .iter()
            .map(|(name, s)| match s {
                Secret::Value(v) => json!({"name": name, "value": v}),
                Secret::KeyVault { url, identity } => {
                    let mut m = Map::new();
                    m.insert("name".into(), json!(name));
                    m.insert("keyVaultUrl".into(), json!(url));
                    if !identity.is_null() {
                        m.insert("identity".into(), identity.clone());
                    }
                    Value::Object(m)
                }
            })
            .collect();
        json!({"properties": {
            "configuration": {"secrets": secrets},
            "template": {"containers": self.containers},
        }})
    }
}

#[async_trait]
impl SourceSettings for ContainerAppSource {
    async fn facts(&self, call: &Call, source: &ResourceId) -> Result<SourceFacts, AdapterError> {
        let app = self.arm.get(call, source.as_str(), &self.api).await?;
        Ok(SourceFacts {
            outbound_ips: outbound_ips(&app["properties"]["outboundIpAddresses"]),
        })
    }

    async fn read_settings(
        &self,
        call: &Call,
        source: &ResourceId,
        scope: Option<&str>,
    ) -> Result<BTreeMap<String, Setting>, AdapterError> {
        Ok(self.load(call, source, scope).await?.settings())
    }

    async fn apply_settings(
        &self,
        call: &Call,
        source: &ResourceId,
        scope: Option<&str>,
        change: &SettingsChange,
    ) -> Result<(), AdapterError> {
        let mut app = self.load(call, source, scope).await?;
        if !app.apply(change) {
            return Ok(());
        }
        self.arm
            .write(call, Method::PATCH, source.as_str(), &self.api, &app.body())
            .await
    }
}

#[async_trait]
impl SourceIdentities for ContainerAppSource {
    async fn identity(
        &self,
        call: &Call,
        source: &ResourceId,
    ) -> Result<SourceIdentity, AdapterError> {
        identity::read(&self.arm, call, source, &self.api).await
    }

    async fn apply_identity(
        &self,
        call: &Call,
        source: &ResourceId,
        change: &IdentityChange,
    ) -> Result<SourceIdentity, AdapterError> {
        identity::apply(&self.arm, call, source, &self.api, change).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> App {
        App {
            secrets: [("other".to_string(), Secret::Value("x".into()))].into(),
            containers: vec![json!({"name": "main", "env": [{"name": "KEEP", "value": "1"}]})],
            index: 0,
        }
    }

    #[test]
    fn secrets_become_secret_refs_and_key_vault_references_key_vault_urls() {
        let mut a = app();
        let change = SettingsChange {
            set: [
                (
                    "AZURE_X_HOST".to_string(),
                    Setting {
                        value: "h".into(),
                        secret: false,
                    },
                ),
                (
                    "AZURE_X_PASSWORD".to_string(),
                    Setting {
                        value: "pw".into(),
                        secret: true,
                    },
                ),
                (
                    "AZURE_X_KEY".to_string(),
                    Setting {
                        value: "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/s)"
                            .into(),
                        secret: true,
                    },
                ),
            ]
            .into(),
            remove: Default::default(),
        };
        assert!(a.apply(&change));
        let settings = a.settings();
        assert_eq!(settings["AZURE_X_PASSWORD"].value, "pw");
        assert!(settings["AZURE_X_PASSWORD"].secret);
        assert_eq!(settings["KEEP"].value, "1");
        let body = a.body();
        let secrets = body["properties"]["configuration"]["secrets"]
            .as_array()
            .unwrap();
        assert!(secrets.contains(&json!({"name": "azure-x-key", "keyVaultUrl": "https://v.vault.azure.net/secrets/s", "identity": "system"})));
        assert!(secrets.contains(&json!({"name": "other", "value": "x"})));
        // The same change again changes nothing; removing drops the env and its own secret.
        assert!(!a.apply(&change));
        let remove = SettingsChange {
            set: Default::default(),
            remove: ["AZURE_X_PASSWORD".to_string()].into(),
        };
        assert!(a.apply(&remove));
        assert!(!a.secrets.contains_key("azure-x-password"));
        assert!(a.secrets.contains_key("other"));
    }

    #[test]
    fn secret_names_are_dns_like() {
        assert_eq!(
            secret_name("AZURE_POSTGRESQL_CONNECTIONSTRING"),
            "azure-postgresql-connectionstring"
        );
        assert_eq!(
            secret_name("spring.datasource.password"),
            "spring-datasource-password"
        );
    }
}
