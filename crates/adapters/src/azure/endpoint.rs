//! Targets named by an endpoint rather than an ARM id (Confluent Cloud bootstrap servers and
//! schema registries, servers outside Azure): their facts come from the endpoint itself, and
//! they have no network, key or identity capabilities.

use async_trait::async_trait;
use tether_model::catalog::{FactSource, TargetKind};
use tether_model::facts::Facts;

use crate::arm::Url;
use crate::{AdapterError, Call, ErrorKind, TargetFacts, TargetRef};

/// An endpoint target kind of the catalogue.
pub struct EndpointTarget {
    kind: &'static TargetKind,
}

impl EndpointTarget {
    /// The adapter of `kind`.
    pub fn new(kind: &'static TargetKind) -> Self {
        Self { kind }
    }
}

/// The facts of an endpoint (`postgresql://host:5433/app`, `pkc-1.confluent.cloud:9092`).
/// `Err` names what is missing; no side effects.
pub fn endpoint_facts(kind: &TargetKind, endpoint: &str) -> Result<Facts, String> {
    let url = endpoint
        .contains("://")
        .then(|| Url::parse(endpoint).ok())
        .flatten();
    let mut facts = Facts::new();
    for spec in &kind.facts {
        let value = match &spec.source {
            FactSource::Endpoint => endpoint.to_string(),
            FactSource::EndpointHost => url
                .as_ref()
                .and_then(|u| u.host_str())
                .filter(|h| !h.is_empty())
                .ok_or("the endpoint must be a URL with a host")?
                .to_string(),
            FactSource::EndpointPort(default) => url
                .as_ref()
                .and_then(Url::port)
                .map(|p| p.to_string())
                .unwrap_or_else(|| default.clone()),
            FactSource::EndpointPath(default) => {
                let path = url
                    .as_ref()
                    .map(|u| u.path().trim_start_matches('/').to_string())
                    .unwrap_or_default();
                if path.is_empty() {
                    if default.is_empty() {
                        return Err("the endpoint URL must name a database in its path".into());
                    }
                    default.clone()
                } else {
                    path
                }
            }
            FactSource::Constant(c) => c.clone(),
            // The caller's password is an auth fact, filled in by the connection.
            _ => continue,
        };
        facts.set(&spec.name, value);
    }
    Ok(facts)
}

#[async_trait]
impl TargetFacts for EndpointTarget {
    async fn facts(&self, _call: &Call, target: &TargetRef) -> Result<Facts, AdapterError> {
        let TargetRef::Endpoint(endpoint) = target else {
            return Err(AdapterError::new(
                ErrorKind::BadRequest,
                "resolve target",
                "InvalidTarget",
                "an endpoint target needs an endpoint",
            ));
        };
        endpoint_facts(self.kind, endpoint).map_err(|why| {
            AdapterError::new(
                ErrorKind::BadRequest,
                "resolve target",
                "InvalidEndpoint",
                why,
            )
        })
    }
}
