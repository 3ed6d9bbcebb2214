//! `tether-adapters`: every side effect on a source or target goes through a
//! [`SourceAdapter`] or [`TargetAdapter`]. The Azure implementation ([`azure`]) speaks the
//! real Azure Resource Manager REST API over reqwest ([`arm::ArmClient`]); its base URLs are
//! configuration, so the same code talks to the mock backend in development and tests and to
//! Azure in production.
//!
//! Verbs state their idempotency: `ensure_*` creates or leaves what exists, `remove_*` treats
//! "already gone" as success, `apply_*` converges to the requested state.
//!
//! Must never depend on axum or on the mock (it is only a dev-dependency, for tests).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tether_model::catalog::{SourceSpec, TargetSpec};
use tether_model::ids::ResourceId;

pub mod arm;
pub mod azure;
mod error;
pub mod jwks;

pub use error::{AdapterError, ErrorKind, scrub};

/// Who is calling, for the backend's logs: the correlation id of every request (the saga id,
/// so all calls of one operation can be found together).
#[derive(Debug, Clone)]
pub struct Call {
    /// Sent as `x-ms-correlation-request-id`.
    pub correlation_id: String,
}

impl Call {
    /// A call context correlated by `id`.
    pub fn correlated(id: impl std::fmt::Display) -> Self {
        Self {
            correlation_id: id.to_string(),
        }
    }
}

/// What a connection needs to know about its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceFacts {
    /// The public IPv4 addresses the source's outbound traffic comes from.
    pub outbound_ips: Vec<Ipv4Addr>,
}

/// What a connection needs to know about its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetFacts {
    /// The host clients connect to.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The database (or other endpoint-specific) name.
    pub database: String,
}

/// A firewall rule admitting an IPv4 range to a target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FirewallRule {
    /// The rule's name on the target.
    pub name: String,
    /// First address.
    pub start: Ipv4Addr,
    /// Last address.
    pub end: Ipv4Addr,
}

/// Configuration entries to set and to remove on a source; every other entry is left as is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsChange {
    /// Entries to write (values may be secrets: never log them).
    pub set: BTreeMap<String, String>,
    /// Entries to delete.
    pub remove: BTreeSet<String>,
}

/// A source compute resource (where configuration is written).
#[async_trait]
pub trait SourceAdapter: Send + Sync + 'static {
    /// Reads the source's facts. `NotFound` when it does not exist. No side effects.
    async fn facts(&self, call: &Call, source: &ResourceId) -> Result<SourceFacts, AdapterError>;

    /// Reads the source's configuration entries. No side effects.
    async fn read_settings(
        &self,
        call: &Call,
        source: &ResourceId,
    ) -> Result<BTreeMap<String, String>, AdapterError>;

    /// Sets and removes entries, preserving all others. Idempotent: applying the same change
    /// twice leaves the same state, and a change that alters nothing writes nothing.
    async fn apply_settings(
        &self,
        call: &Call,
        source: &ResourceId,
        change: &SettingsChange,
    ) -> Result<(), AdapterError>;
}

/// A target service (what is connected to).
#[async_trait]
pub trait TargetAdapter: Send + Sync + 'static {
    /// Reads the endpoint facts of the target. `NotFound` when it does not exist.
    async fn facts(&self, call: &Call, target: &ResourceId) -> Result<TargetFacts, AdapterError>;

    /// The target's firewall rules whose names start with `prefix`. No side effects.
    async fn firewall_rules(
        &self,
        call: &Call,
        target: &ResourceId,
        prefix: &str,
    ) -> Result<Vec<FirewallRule>, AdapterError>;

    /// Creates the rule, or updates it to match. Idempotent.
    async fn ensure_firewall_rule(
        &self,
        call: &Call,
        target: &ResourceId,
        rule: &FirewallRule,
    ) -> Result<(), AdapterError>;

    /// Deletes the rule; a rule (or target) that is already gone is success.
    async fn remove_firewall_rule(
        &self,
        call: &Call,
        target: &ResourceId,
        name: &str,
    ) -> Result<(), AdapterError>;
}

/// The adapters of every source and target kind, looked up by catalogue entry.
#[derive(Clone, Default)]
pub struct Adapters {
    sources: Vec<(&'static str, Arc<dyn SourceAdapter>)>,
    targets: Vec<(&'static str, Arc<dyn TargetAdapter>)>,
}

impl Adapters {
    /// Registers the adapter of a source kind.
    pub fn with_source(
        mut self,
        spec: &'static SourceSpec,
        adapter: Arc<dyn SourceAdapter>,
    ) -> Self {
        self.sources.push((spec.name, adapter));
        self
    }

    /// Registers the adapter of a target kind.
    pub fn with_target(
        mut self,
        spec: &'static TargetSpec,
        adapter: Arc<dyn TargetAdapter>,
    ) -> Self {
        self.targets.push((spec.name, adapter));
        self
    }

    /// The adapter of a source kind.
    pub fn source(&self, spec: &SourceSpec) -> Option<Arc<dyn SourceAdapter>> {
        self.sources
            .iter()
            .find(|(n, _)| *n == spec.name)
            .map(|(_, a)| a.clone())
    }

    /// The adapter of a target kind.
    pub fn target(&self, spec: &TargetSpec) -> Option<Arc<dyn TargetAdapter>> {
        self.targets
            .iter()
            .find(|(n, _)| *n == spec.name)
            .map(|(_, a)| a.clone())
    }
}
