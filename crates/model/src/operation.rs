//! Long-running operations and provisioning states, as ARM clients see them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ErrorDetail;
use crate::ids::{LinkerId, OperationId};
use crate::linker::Linker;

/// What an operation does. Persisted: never rename a variant's wire name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OperationKind {
    /// PUT of a new linker.
    Create,
    /// PUT replacing, or PATCH of, an existing linker.
    Update,
    /// DELETE of a linker.
    Delete,
    /// POST `validateLinker`.
    Validate,
}

impl OperationKind {
    /// Every kind.
    pub const ALL: [OperationKind; 4] = [Self::Create, Self::Update, Self::Delete, Self::Validate];

    /// The persisted name.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Create => "create",
            OperationKind::Update => "update",
            OperationKind::Delete => "delete",
            OperationKind::Validate => "validate",
        }
    }

    /// Parses a persisted name.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == value)
    }
}

/// The status of an operation: exactly ARM's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationState {
    /// Not finished.
    InProgress,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error; every side effect was undone.
    Failed,
    /// Stopped on request; every side effect was undone.
    Canceled,
}

impl OperationState {
    /// The wire (and persisted) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationState::InProgress => "InProgress",
            OperationState::Succeeded => "Succeeded",
            OperationState::Failed => "Failed",
            OperationState::Canceled => "Canceled",
        }
    }

    /// Parses the persisted spelling.
    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::InProgress,
            Self::Succeeded,
            Self::Failed,
            Self::Canceled,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }

    /// True for `Succeeded`, `Failed` and `Canceled`.
    pub fn is_terminal(self) -> bool {
        self != OperationState::InProgress
    }
}

/// One long-running operation, as stored and as its status endpoint reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// The operation id (in the status URL).
    pub id: OperationId,
    /// What it does.
    pub kind: OperationKind,
    /// The linker it acts on.
    pub linker_id: LinkerId,
    /// The lower-cased subscription of the linker's scope; polls from others get 404.
    pub subscription: String,
    /// The ARM id of the linker, in the caller's casing.
    pub resource_id: String,
    /// Current status.
    pub status: OperationState,
    /// When it was accepted.
    pub start_time: DateTime<Utc>,
    /// When it reached a terminal status.
    pub end_time: Option<DateTime<Utc>>,
    /// Why it failed or was canceled; while its rollback is stuck, the failure that started
    /// the rollback.
    pub error: Option<ErrorDetail>,
    /// While `InProgress`: the error of an undo that keeps failing (the saga is stuck and
    /// retried automatically).
    pub stuck: Option<ErrorDetail>,
    /// The result body of an action (the `ValidateResult` of a validation).
    pub result: Option<Value>,
}

impl Operation {
    /// A new operation of `kind` on `linker`, in progress from now.
    pub fn start(kind: OperationKind, linker: &Linker) -> Self {
        Operation {
            id: OperationId::new(),
            kind,
            linker_id: linker.id,
            subscription: linker.at.scope.subscription().to_ascii_lowercase(),
            resource_id: linker.at.resource_id(),
            status: OperationState::InProgress,
            start_time: Utc::now(),
            end_time: None,
            error: None,
            stuck: None,
            result: None,
        }
    }
}

/// The `provisioningState` of a linker. Persisted: never rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProvisioningState {
    /// A create was accepted and is running.
    Accepted,
    /// An update is running.
    Updating,
    /// A delete is running.
    Deleting,
    /// The last operation succeeded.
    Succeeded,
    /// The last operation failed and was rolled back.
    Failed,
    /// The last operation was canceled and rolled back.
    Canceled,
}

impl ProvisioningState {
    /// The wire (and persisted) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ProvisioningState::Accepted => "Accepted",
            ProvisioningState::Updating => "Updating",
            ProvisioningState::Deleting => "Deleting",
            ProvisioningState::Succeeded => "Succeeded",
            ProvisioningState::Failed => "Failed",
            ProvisioningState::Canceled => "Canceled",
        }
    }

    /// Parses the persisted spelling.
    pub fn parse(value: &str) -> Option<Self> {
        use ProvisioningState::*;
        [Accepted, Updating, Deleting, Succeeded, Failed, Canceled]
            .into_iter()
            .find(|s| s.as_str() == value)
    }
}
