//! App Service web apps (`Microsoft.Web/sites`) as connection sources: outbound addresses from
//! the site, configuration in its app settings.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use async_trait::async_trait;
use serde_json::{Value, json};
use tether_model::ids::ResourceId;

use crate::arm::ArmClient;
use crate::{AdapterError, Call, ErrorKind, SettingsChange, SourceAdapter, SourceFacts};

const API_VERSION: &str = "2023-12-01";

/// The web app source adapter.
pub struct WebAppSource {
    arm: ArmClient,
}

impl WebAppSource {
    /// An adapter over `arm`.
    pub fn new(arm: ArmClient) -> Self {
        Self { arm }
    }
}

#[async_trait]
impl SourceAdapter for WebAppSource {
    async fn facts(&self, call: &Call, source: &ResourceId) -> Result<SourceFacts, AdapterError> {
        let site = self.arm.get(call, source.as_str(), API_VERSION).await?;
        let ips = site
            .pointer("/properties/outboundIpAddresses")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut outbound_ips: Vec<Ipv4Addr> = ips
            .split(',')
            .filter_map(|ip| ip.trim().parse().ok())
            .collect();
        outbound_ips.sort();
        outbound_ips.dedup();
        Ok(SourceFacts { outbound_ips })
    }

    async fn read_settings(
        &self,
        call: &Call,
        source: &ResourceId,
    ) -> Result<BTreeMap<String, String>, AdapterError> {
        let path = format!("{}/config/appsettings/list", source.as_str());
        let body = self.arm.post(call, &path, API_VERSION, None).await?;
        let Some(Value::Object(properties)) = body.get("properties") else {
            return Ok(BTreeMap::new());
        };
        properties
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(AdapterError::new(
                    ErrorKind::Protocol,
                    "read app settings",
                    "InvalidResponse",
                    format!("app setting '{k}' is not a string"),
                )),
            })
            .collect()
    }

    /// App settings are replaced as a whole by ARM, so this reads them, merges the change and
    /// writes them back (skipping the write when nothing changes).
    async fn apply_settings(
        &self,
        call: &Call,
        source: &ResourceId,
        change: &SettingsChange,
    ) -> Result<(), AdapterError> {
        let current = self.read_settings(call, source).await?;
        let mut next = current.clone();
        for key in &change.remove {
            next.remove(key);
        }
        next.extend(change.set.iter().map(|(k, v)| (k.clone(), v.clone())));
        if next == current {
            return Ok(());
        }
        let path = format!("{}/config/appsettings", source.as_str());
        self.arm
            .put(call, &path, API_VERSION, &json!({ "properties": next }))
            .await?;
        Ok(())
    }
}
