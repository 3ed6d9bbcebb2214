//! App Service web and function apps (`Microsoft.Web/sites`) as connection sources: outbound
//! addresses from the site, configuration in its app settings (replaced as a whole by ARM, so
//! read, merged and written back), and its managed identities.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use async_trait::async_trait;
use serde_json::{Value, json};
use tether_model::ids::ResourceId;

use super::identity;
use crate::arm::ArmClient;
use crate::{
    AdapterError, Call, ErrorKind, IdentityChange, Setting, SettingsChange, SourceFacts,
    SourceIdentities, SourceIdentity, SourceSettings,
};

/// The App Service source adapter.
pub struct WebAppSource {
    arm: ArmClient,
    api: String,
}

impl WebAppSource {
    /// An adapter over `arm` speaking `api` (the catalogue's api-version).
    pub fn new(arm: ArmClient, api: String) -> Self {
        Self { arm, api }
    }

    async fn settings(
        &self,
        call: &Call,
        source: &ResourceId,
    ) -> Result<BTreeMap<String, String>, AdapterError> {
        let path = format!("{}/config/appsettings/list", source.as_str());
        let mut body = self.arm.post(call, &path, &self.api, None).await?;
        // Taken, not copied: the dictionary holds every setting of the app.
        let Some(Value::Object(properties)) = body.get_mut("properties").map(Value::take) else {
            return Ok(BTreeMap::new());
        };
        properties
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                _ => Err(AdapterError::new(
                    ErrorKind::Protocol,
                    "read app settings",
                    "InvalidResponse",
                    format!("app setting '{k}' is not a string"),
                )),
            })
            .collect()
    }
}

/// Parses outbound addresses: a comma-separated string (sites) or an array (container apps).
pub(super) fn outbound_ips(value: &Value) -> Vec<Ipv4Addr> {
    let texts: Vec<&str> = match value {
        Value::String(s) => s.split(',').collect(),
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let mut ips: Vec<Ipv4Addr> = texts
        .iter()
        .filter_map(|ip| ip.trim().parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

#[async_trait]
impl SourceSettings for WebAppSource {
    async fn facts(&self, call: &Call, source: &ResourceId) -> Result<SourceFacts, AdapterError> {
        let site = self.arm.get(call, source.as_str(), &self.api).await?;
        Ok(SourceFacts {
            outbound_ips: outbound_ips(&site["properties"]["outboundIpAddresses"]),
        })
    }

    async fn read_settings(
        &self,
        call: &Call,
        source: &ResourceId,
        _scope: Option<&str>,
    ) -> Result<BTreeMap<String, Setting>, AdapterError> {
        Ok(self
            .settings(call, source)
            .await?
            .into_iter()
            .map(|(k, value)| {
                let setting = Setting {
                    value,
                    secret: false,
                };
                (k, setting)
            })
            .collect())
    }

    /// App settings have no separate secret storage: a secret is a setting (or, with a
    /// secret store, a Key Vault reference the caller already put in its value).
    async fn apply_settings(
        &self,
        call: &Call,
        source: &ResourceId,
        _scope: Option<&str>,
        change: &SettingsChange,
    ) -> Result<(), AdapterError> {
        let mut settings = self.settings(call, source).await?;
        let mut changed = false;
        for key in &change.remove {
            changed |= settings.remove(key).is_some();
        }
        for (key, setting) in &change.set {
            if settings.get(key) != Some(&setting.value) {
                settings.insert(key.clone(), setting.value.clone());
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
        let path = format!("{}/config/appsettings", source.as_str());
        self.arm
            .put(call, &path, &self.api, &json!({ "properties": settings }))
            .await?;
        Ok(())
    }
}

#[async_trait]
impl SourceIdentities for WebAppSource {
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
