//! The linker sagas. Create, update and delete share their steps, because each step converges
//! the backend from what it is towards a desired spec and its undo converges it back to a
//! snapshot taken before any change:
//!
//! | saga | steps |
//! |---|---|
//! | `linker-create` | `resolve` → `network` → `configuration` |
//! | `linker-update` | `resolve` → `network` → `configuration` |
//! | `linker-delete` | `resolve` → `configuration` → `network` |
//! | `linker-validate` | `validate` |
//!
//! Saga and step names are persisted: never rename them.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tether_adapters::{AdapterError, Adapters, SourceAdapter, TargetAdapter, TargetFacts};
use tether_model::catalog;
use tether_model::configuration::{self, Password};
use tether_model::ids::{LinkerId, LinkerRef, ResourceId};
use tether_saga::{SagaDef, StepError};

use crate::secrets::SecretBox;
use crate::spec::ConnectionSpec;

mod steps;
mod validate;

pub use steps::{CONFIGURATION, NETWORK, RESOLVE};

/// `linker-create`.
pub const LINKER_CREATE: &str = "linker-create";
/// `linker-update`.
pub const LINKER_UPDATE: &str = "linker-update";
/// `linker-delete`.
pub const LINKER_DELETE: &str = "linker-delete";
/// `linker-validate`.
pub const LINKER_VALIDATE: &str = "linker-validate";

/// What the steps work with: the adapters and the key that opens sealed secrets.
pub struct LinkerCtx {
    /// Source and target adapters.
    pub adapters: Adapters,
    /// Opens the linker's sealed password and the steps' sealed snapshots.
    pub secrets: Arc<SecretBox>,
}

/// The params of create, update and delete: the specs the backend may hold now (`before`:
/// none for a create, one for an update, and for a delete queued behind an update both the
/// update's spec and the one it would restore if it fails) and the one to converge to
/// (`after`, none for a delete).
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

/// The params of a validation.
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

/// The default of how many validations one replica runs at once.
pub const DEFAULT_MAX_VALIDATIONS: usize = 16;

/// Every saga definition; validations are capped at `max_validations` at once per replica.
pub fn definitions(max_validations: usize) -> Vec<SagaDef<LinkerCtx>> {
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
        SagaDef::new(LINKER_VALIDATE)
            .step(validate::Validate)
            .max_concurrent(max_validations),
    ]
}

impl LinkerCtx {
    fn source(&self, scope: &ResourceId) -> Result<Arc<dyn SourceAdapter>, StepError> {
        catalog::source_for(scope)
            .and_then(|spec| self.adapters.source(spec))
            .ok_or_else(|| {
                StepError::permanent(
                    "UnsupportedSource",
                    format!("no adapter for the source '{scope}'"),
                )
            })
    }

    fn target(&self, id: &ResourceId) -> Result<Arc<dyn TargetAdapter>, StepError> {
        catalog::target_for(id)
            .and_then(|spec| self.adapters.target(spec))
            .ok_or_else(|| {
                StepError::permanent(
                    "UnsupportedTarget",
                    format!("no adapter for the target '{id}'"),
                )
            })
    }

    /// The configuration entries of `spec`, with the real password (for writing into the
    /// source or comparing with what it holds; never for showing).
    fn configuration(
        &self,
        spec: &ConnectionSpec,
        linker: LinkerId,
        target: &TargetFacts,
    ) -> Result<Vec<configuration::Entry>, StepError> {
        let password: SecretString = self
            .secrets
            .open_str(&spec.secret, linker.as_uuid().as_bytes())
            .map_err(|_| {
                StepError::permanent(
                    "SecretUnavailable",
                    "the linker's secret could not be decrypted with the configured key",
                )
            })?;
        spec.configuration_request()
            .render(
                &spec.endpoint(target),
                Password::Reveal(password.expose_secret()),
            )
            .map_err(|e| StepError::permanent(e.code().to_string(), e.detail().message))
    }
}

/// Maps an adapter failure to a step error: transient ones are retried by the engine; a
/// missing resource gets the caller's code and message; the rest carry the backend's words.
fn step_error(e: AdapterError, not_found: impl FnOnce() -> (&'static str, String)) -> StepError {
    if e.is_not_found() {
        let (code, message) = not_found();
        return StepError::permanent(code, message);
    }
    let message = if e.message.is_empty() {
        format!("{} failed", e.operation)
    } else {
        format!("{} failed: {}", e.operation, e.message)
    };
    let error = if e.is_transient() {
        StepError::transient(e.code, message)
    } else {
        StepError::permanent(e.code, message)
    };
    error.with_retry_after(e.retry_after)
}
