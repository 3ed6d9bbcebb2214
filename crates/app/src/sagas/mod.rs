//! The linker sagas. Create, update and delete share their steps: each converges one part of
//! the backend from what the linker applied before (its stored [`Applied`] record, read in
//! `resolve`) towards the desired spec, and its undo converges back to what `resolve`
//! snapshotted before any change:
//!
//! | saga | steps |
//! |---|---|
//! | `linker-create-v3` | `resolve` → `identity` → `auth` → `secret_store` → (`network` → `configuration`, in one commit) |
//! | `linker-update-v3` | the same |
//! | `linker-delete-v2` | `resolve` → `configuration` → `secret_store` → `network` → `auth` → `identity` |
//! | `linker-validate-v2` | `validate` |
//!
//! `network` and `configuration` run without a commit between them
//! ([`SagaDef::rest_in_one_commit`]): both undos converge to what `resolve` snapshotted and
//! read nothing else, so each is harmless when its run never happened.
//!
//! The first release's definitions (`linker-create`, …) are frozen in [`v1`], and
//! `linker-create-v2` and `linker-update-v2` (the same steps, each committed on its own) here,
//! so sagas an earlier release started finish as they began: a replica of that release runs
//! only the names it knows. Saga and step names are persisted: never rename them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tether_adapters::{AdapterError, Adapters, SourceAdapters, TargetAdapters};
use tether_model::ids::{LinkerId, LinkerRef};
use tether_saga::{SagaDef, StepError};
use tether_store::Store;

use crate::applied::Applied;
use crate::secrets::SecretBox;
use crate::spec::ConnectionSpec;

pub(crate) mod steps;
pub mod v1;
mod validate;

pub use steps::{
    AuthOut, CONFIGURATION, ConfigurationOut, IdentityOut, NetworkOut, Resolved, SecretsOut,
};

/// `linker-create-v3`.
pub const LINKER_CREATE: &str = "linker-create-v3";
/// `linker-update-v3`.
pub const LINKER_UPDATE: &str = "linker-update-v3";
/// `linker-delete-v2`.
pub const LINKER_DELETE: &str = "linker-delete-v2";
/// `linker-validate-v2`.
pub const LINKER_VALIDATE: &str = "linker-validate-v2";

/// The default of how many validations one replica runs at once.
pub const DEFAULT_MAX_VALIDATIONS: usize = 16;

/// What the steps work with.
pub struct LinkerCtx {
    /// Every adapter.
    pub adapters: Adapters,
    /// Opens the linker's sealed secrets and the steps' sealed snapshots.
    pub secrets: Arc<SecretBox>,
    /// Read-only views the steps need: what a linker applied, and what others hold.
    pub store: Arc<dyn Store>,
    /// The tenant of service principals (`AZURE_*_TENANTID`).
    pub tenant_id: String,
}

/// The params of create, update and delete: the linker, and the spec to converge to (none
/// for a delete). What the backend holds now is read from the store when the saga runs (after
/// every earlier saga of the source has ended).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkerParams {
    /// The linker.
    pub linker_id: LinkerId,
    /// Where it lives.
    pub linker: LinkerRef,
    /// The desired spec.
    pub after: Option<ConnectionSpec>,
    /// What a first-release linker applied (it stored no record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy: Option<Applied>,
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

/// Every saga definition, current and frozen; validations are capped at `max_validations`
/// at once per replica.
pub fn definitions(max_validations: usize) -> Vec<SagaDef<LinkerCtx>> {
    use steps::{Auth, Configuration, Identity, Network, Resolve, SecretStore};
    // Create and update: the same steps; `together`: `network` and `configuration` in one commit.
    let create_or_update = |name, new_linker, together: bool| {
        let def = SagaDef::new(name)
            .step(Resolve { new_linker })
            .step(Identity)
            .step(Auth)
            .step(SecretStore);
        let def = if together {
            def.rest_in_one_commit()
        } else {
            def
        };
        def.step(Network).step(Configuration)
    };
    let mut defs = vec![
        create_or_update(LINKER_CREATE, true, true),
        create_or_update(LINKER_UPDATE, false, true),
        create_or_update("linker-create-v2", true, false),
        create_or_update("linker-update-v2", false, false),
        SagaDef::new(LINKER_DELETE)
            .step(Resolve { new_linker: false })
            .step(Configuration)
            .step(SecretStore)
            .step(Network)
            .step(Auth)
            .step(Identity),
        SagaDef::new(LINKER_VALIDATE)
            .step(validate::Validate)
            .max_concurrent(max_validations),
    ];
    defs.extend(v1::definitions());
    defs
}

impl LinkerCtx {
    /// The capabilities of a source kind.
    fn source(&self, kind: &str) -> Result<&SourceAdapters, StepError> {
        self.adapters.source(kind).ok_or_else(|| {
            StepError::permanent(
                "UnsupportedSource",
                format!("no adapter for {kind} sources"),
            )
        })
    }

    /// Which of `keys` another linker than `linker` holds. No keys (a new linker's): no
    /// round trip.
    async fn held_elsewhere(
        &self,
        linker: LinkerId,
        keys: &[String],
    ) -> Result<Vec<String>, StepError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.store
            .items_held_elsewhere(linker, keys)
            .await
            .map_err(|e| {
                StepError::transient("StoreUnavailable", format!("reading shared items: {e}"))
            })
    }

    /// The capabilities of a target kind.
    fn target(&self, kind: &str) -> Result<&TargetAdapters, StepError> {
        self.adapters.target(kind).ok_or_else(|| {
            StepError::permanent(
                "UnsupportedTarget",
                format!("no adapter for {kind} targets"),
            )
        })
    }
}

/// Maps an adapter failure to a step error: transient ones are retried by the engine; a
/// missing resource gets the caller's code and message; the rest carry the backend's words
/// (scrubbed by the adapters).
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

/// A model error met inside a step (a bug or corrupt data): permanent.
fn model_error(e: tether_model::Error) -> StepError {
    StepError::permanent(e.code().to_string(), e.detail().message)
}
