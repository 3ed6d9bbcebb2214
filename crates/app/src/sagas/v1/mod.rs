//! The first saga definitions, frozen: `linker-create`, `linker-update`, `linker-delete` and
//! `linker-validate` as the first release shipped them (App Service → PostgreSQL flexible,
//! password, firewall rules). A saga started by that release finishes here with the steps and
//! the params and outputs format it started with; new operations use the current definitions
//! (`crate::sagas`). The golden fixtures in `tests/fixtures/v1` pin the formats.
//!
//! Nothing here may change behaviour. Its steps reach the backend through the current
//! capabilities, wrapped to the shapes they were written against.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tether_adapters::{
    AdapterError, Call, FirewallRule, Setting, SourceAdapters, SourceFacts, TargetAdapters,
    TargetRef,
};
use tether_model::catalog::TargetKind;
use tether_model::configuration::{self, Reveal};
use tether_model::facts::Facts;
use tether_model::ids::{LinkerId, LinkerRef, ResourceId};
use tether_saga::{SagaDef, StepError};

use super::LinkerCtx;

pub mod spec;
mod steps;
mod validate;

pub use spec::ConnectionSpec;
pub use steps::{ConfigurationOut, NetworkOut, Resolved};

/// `linker-create` (first release).
pub const LINKER_CREATE: &str = "linker-create";
/// `linker-update` (first release).
pub const LINKER_UPDATE: &str = "linker-update";
/// `linker-delete` (first release).
pub const LINKER_DELETE: &str = "linker-delete";
/// `linker-validate` (first release).
pub const LINKER_VALIDATE: &str = "linker-validate";

/// The params of create, update and delete (first release).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkerParams {
    /// The linker (its sealed secrets are bound to this id).
    pub linker_id: LinkerId,
    /// Where it lives.
    pub linker: LinkerRef,
    /// The specs the backend may hold.
    pub before: Vec<ConnectionSpec>,
    /// The desired spec.
    pub after: Option<ConnectionSpec>,
}

/// The params of a validation (first release).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidateParams {
    /// The linker.
    pub linker_id: LinkerId,
    /// Where it lives.
    pub linker: LinkerRef,
    /// Its spec.
    pub spec: ConnectionSpec,
}

/// The first release's saga definitions.
pub fn definitions() -> Vec<SagaDef<LinkerCtx>> {
    use steps::{Configuration, Network, Resolve};
    vec![
        SagaDef::new(LINKER_CREATE)
            .step(Resolve)
            .step(Network)
            .step(Configuration),
        SagaDef::new(LINKER_UPDATE)
            .step(Resolve)
            .step(Network)
            .step(Configuration),
        SagaDef::new(LINKER_DELETE)
            .step(Resolve)
            .step(Configuration)
            .step(Network),
        SagaDef::new(LINKER_VALIDATE).step(validate::Validate),
    ]
}

/// What the first release knew about a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetFacts {
    /// The host clients connect to.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The database name.
    pub database: String,
}

/// Settings to set and remove, as the first release's steps build them.
#[derive(Debug, Clone, Default)]
pub struct SettingsChange {
    /// Entries to write.
    pub set: BTreeMap<String, String>,
    /// Entries to delete.
    pub remove: BTreeSet<String>,
}

/// A source, through the current capabilities.
pub struct Source(SourceAdapters);

impl Source {
    async fn facts(&self, call: &Call, source: &ResourceId) -> Result<SourceFacts, AdapterError> {
        self.0.settings.facts(call, source).await
    }

    async fn read_settings(
        &self,
        call: &Call,
        source: &ResourceId,
    ) -> Result<BTreeMap<String, String>, AdapterError> {
        let settings = self.0.settings.read_settings(call, source, None).await?;
        Ok(settings.into_iter().map(|(k, s)| (k, s.value)).collect())
    }

    async fn apply_settings(
        &self,
        call: &Call,
        source: &ResourceId,
        change: &SettingsChange,
    ) -> Result<(), AdapterError> {
        let change = tether_adapters::SettingsChange {
            set: change
                .set
                .iter()
                .map(|(k, v)| {
                    let setting = Setting {
                        value: v.clone(),
                        secret: false,
                    };
                    (k.clone(), setting)
                })
                .collect(),
            remove: change.remove.clone(),
        };
        self.0
            .settings
            .apply_settings(call, source, None, &change)
            .await
    }
}

/// A target, through the current capabilities.
pub struct Target {
    kind: &'static TargetKind,
    adapters: TargetAdapters,
}

impl Target {
    async fn facts(&self, call: &Call, target: &ResourceId) -> Result<TargetFacts, AdapterError> {
        let facts = self
            .adapters
            .facts
            .facts(call, &TargetRef::Arm(target.clone()))
            .await?;
        let value = |name: &str| facts.value(name).unwrap_or_default().to_string();
        Ok(TargetFacts {
            host: value("host"),
            port: value("port").parse().unwrap_or_default(),
            database: value("database"),
        })
    }

    fn firewall(&self) -> Result<&Arc<dyn tether_adapters::FirewallRules>, AdapterError> {
        self.adapters.firewall.as_ref().ok_or_else(|| {
            AdapterError::new(
                tether_adapters::ErrorKind::BadRequest,
                "firewall rules",
                "Unsupported",
                format!("{} has no firewall rules", self.kind.name),
            )
        })
    }

    async fn firewall_rules(
        &self,
        call: &Call,
        target: &ResourceId,
        prefix: &str,
    ) -> Result<Vec<FirewallRule>, AdapterError> {
        self.firewall()?
            .rules(call, &TargetRef::Arm(target.clone()), prefix)
            .await
    }

    async fn ensure_firewall_rule(
        &self,
        call: &Call,
        target: &ResourceId,
        rule: &FirewallRule,
    ) -> Result<(), AdapterError> {
        self.firewall()?
            .ensure_rule(call, &TargetRef::Arm(target.clone()), rule)
            .await
    }

    async fn remove_firewall_rule(
        &self,
        call: &Call,
        target: &ResourceId,
        name: &str,
    ) -> Result<(), AdapterError> {
        self.firewall()?
            .remove_rule(call, &TargetRef::Arm(target.clone()), name)
            .await
    }
}

impl LinkerCtx {
    fn v1_source(&self, scope: &ResourceId) -> Result<Source, StepError> {
        self.adapters
            .catalog
            .source_for(scope)
            .and_then(|kind| self.adapters.source(&kind.name))
            .map(|a| Source(a.clone()))
            .ok_or_else(|| {
                StepError::permanent(
                    "UnsupportedSource",
                    format!("no adapter for the source '{scope}'"),
                )
            })
    }

    fn v1_target(&self, id: &ResourceId) -> Result<Target, StepError> {
        self.adapters
            .catalog
            .target_for_id(id)
            .and_then(|kind| {
                let adapters = self.adapters.target(&kind.name)?.clone();
                Some(Target { kind, adapters })
            })
            .ok_or_else(|| {
                StepError::permanent(
                    "UnsupportedTarget",
                    format!("no adapter for the target '{id}'"),
                )
            })
    }

    /// The configuration entries of a first-release spec, with the real password.
    fn v1_configuration(
        &self,
        spec: &ConnectionSpec,
        linker: LinkerId,
        target: &TargetFacts,
    ) -> Result<Vec<configuration::Entry>, StepError> {
        let password = self
            .secrets
            .open_str(&spec.secret, linker.as_uuid().as_bytes())
            .map_err(|_| {
                StepError::permanent(
                    "SecretUnavailable",
                    "the linker's secret could not be decrypted with the configured key",
                )
            })?;
        let password = secrecy::ExposeSecret::expose_secret(&password).to_string();
        let request = spec
            .configuration_request()
            .map_err(|e| StepError::permanent(e.code().to_string(), e.detail().message))?;
        request
            .render(&v1_facts(spec, target, password), Reveal::Secrets)
            .map_err(|e| StepError::permanent(e.code().to_string(), e.detail().message))
    }

    /// `listConfigurations` of a first-release linker, as that release answered it: the
    /// entries of its spec from the target's facts read now, the password redacted.
    pub(crate) async fn v1_configurations(
        &self,
        linker: LinkerId,
        spec: &ConnectionSpec,
    ) -> Result<Vec<configuration::Entry>, tether_model::Error> {
        use tether_model::{Error, ErrorKind};
        let target = self
            .v1_target(&spec.target)
            .map_err(|e| Error::new(ErrorKind::Unavailable, "TargetUnsupported", e.message))?;
        let facts = target
            .facts(&Call::correlated(linker), &spec.target)
            .await
            .map_err(crate::linkers::target_unreadable(&spec.target))?;
        let redacted = configuration::REDACTED.to_string();
        spec.configuration_request()?
            .render(&v1_facts(spec, &facts, redacted), Reveal::Redact)
    }
}

/// The facts a first-release spec renders from.
fn v1_facts(spec: &ConnectionSpec, target: &TargetFacts, password: String) -> Facts {
    let mut facts = Facts::new();
    facts.set("host", target.host.clone());
    facts.set("port", target.port.to_string());
    facts.set("database", target.database.clone());
    facts.set("user", spec.user.clone());
    facts.set_secret("password", password);
    facts
}
