//! App Service web and function apps (`Microsoft.Web/sites`) as connection sources: outbound
//! addresses from the site, configuration in its app settings (replaced as a whole by ARM, so
//! read, merged and written back), and its managed identities.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tether_model::ids::ResourceId;

use super::identity;
use crate::arm::{ArmClient, Method};
use crate::{
    AdapterError, Call, IdentityChange, Setting, SettingsChange, SourceFacts, SourceIdentities,
    SourceIdentity, SourceSettings,
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

    /// Every setting of the app, parsed straight from the response (no JSON tree first): the
    /// dictionary grows with the app's connections, and a create reads it twice.
    async fn settings(
        &self,
        call: &Call,
        source: &ResourceId,
    ) -> Result<BTreeMap<String, String>, AdapterError> {
        let path = format!("{}/config/appsettings/list", source.as_str());
        let list: AppSettings = self.arm.post(call, &path, &self.api, None).await?;
        Ok(list.properties)
    }
}

/// The app settings resource (`…/config/appsettings`) as read and written: names to string
/// values. A reply without the dictionary, or with a value that is not a string, is an error,
/// never an empty dictionary: the merged dictionary is written back whole, so reading nothing
/// would remove every setting of the app.
#[derive(Serialize, Deserialize)]
struct AppSettings {
    properties: BTreeMap<String, String>,
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
        // Written without a copy, and the dictionary ARM echoes back is not parsed.
        let path = format!("{}/config/appsettings", source.as_str());
        let body = AppSettings {
            properties: settings,
        };
        self.arm
            .write(call, Method::PUT, &path, &self.api, &body)
            .await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_settings_are_a_dictionary_of_strings_or_an_error() {
        let read = |body: &str| serde_json::from_str::<AppSettings>(body).map(|s| s.properties);
        let settings = read(r#"{"id": "x", "properties": {"A": "1", "B": ""}}"#).unwrap();
        assert_eq!(settings.len(), 2);
        assert!(read(r#"{"properties": {}}"#).unwrap().is_empty());
        for bad in [
            r#"{"id": "x"}"#,
            r#"{"properties": null}"#,
            r#"{"properties": {"A": 1}}"#,
            r#"{"properties": ["A"]}"#,
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }
}
