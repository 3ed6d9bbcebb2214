//! Azure implementations of the capabilities, over [`crate::arm::ArmClient`]: App Service and
//! Container Apps sources, one generic adapter for every ARM target (its differences are data
//! in the catalogue), endpoint targets, and the shared grants, Key Vault secrets and identity
//! directory.

use std::sync::Arc;

use tether_model::catalog::{Catalog, ServiceType, SettingsKind};

use crate::arm::ArmClient;
use crate::{Adapters, SourceAdapters, TargetAdapters};

mod container_app;
mod endpoint;
mod grants;
mod identity;
mod target;
mod vault;
mod web_app;

pub use container_app::ContainerAppSource;
pub use endpoint::{EndpointTarget, endpoint_facts};
pub use grants::ArmGrants;
pub use identity::ArmIdentities;
pub use target::ArmTarget;
pub use vault::KeyVaultSecrets;
pub use web_app::WebAppSource;

/// Every Azure adapter for the kinds of `catalog`, sharing one ARM client.
pub fn adapters(arm: ArmClient, catalog: &'static Catalog) -> Adapters {
    let mut adapters = Adapters::new(
        catalog,
        Arc::new(ArmGrants::new(arm.clone())),
        Arc::new(KeyVaultSecrets::new(arm.clone())),
        Arc::new(ArmIdentities::new(arm.clone())),
        arm.has_sql_data_plane(),
    );
    for source in &catalog.sources {
        let api = source.api_version.clone();
        let capabilities = match source.settings {
            SettingsKind::AppSettings => {
                let web = Arc::new(WebAppSource::new(arm.clone(), api));
                SourceAdapters {
                    settings: web.clone(),
                    identity: web,
                }
            }
            SettingsKind::ContainerEnv => {
                let app = Arc::new(ContainerAppSource::new(arm.clone(), api));
                SourceAdapters {
                    settings: app.clone(),
                    identity: app,
                }
            }
        };
        adapters = adapters.with_source(&source.name, capabilities);
    }
    for kind in &catalog.targets {
        let capabilities = match kind.service_type {
            ServiceType::AzureResource => {
                let target = Arc::new(ArmTarget::new(arm.clone(), kind));
                TargetAdapters {
                    facts: target.clone(),
                    keys: kind.keys.is_some().then(|| target.clone() as _),
                    firewall: target.firewall().then(|| target.clone() as _),
                    ip_rules: target.ip_rules().then(|| target.clone() as _),
                }
            }
            _ => TargetAdapters {
                facts: Arc::new(EndpointTarget::new(kind)),
                keys: None,
                firewall: None,
                ip_rules: None,
            },
        };
        adapters = adapters.with_target(&kind.name, capabilities);
    }
    adapters
}
