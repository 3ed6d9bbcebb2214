//! Adapter errors: what kind of failure, whether retrying may help, and the backend's own code
//! and message (ARM error bodies never contain our secrets, so they are safe to pass on).

use std::time::Duration;

/// What went wrong when talking to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The resource does not exist.
    NotFound,
    /// The backend rejected the request as invalid.
    BadRequest,
    /// Our credentials were refused.
    Unauthorized,
    /// Our identity may not do this.
    Forbidden,
    /// The resource is in a conflicting state.
    Conflict,
    /// Throttled (429).
    Throttled,
    /// The backend failed or is unavailable (5xx).
    Unavailable,
    /// The connection failed, was reset, or timed out.
    Transport,
    /// The backend answered something we cannot understand.
    Protocol,
}

/// A failed backend call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} failed ({kind:?}{status}): {code}: {message}", status = self.status.map(|s| format!(", HTTP {s}")).unwrap_or_default())]
pub struct AdapterError {
    /// The kind.
    pub kind: ErrorKind,
    /// What we were doing (`GET Microsoft.Web/sites`), for messages.
    pub operation: String,
    /// The HTTP status, when there was a response.
    pub status: Option<u16>,
    /// The backend's error code (or ours, for transport and protocol errors).
    pub code: String,
    /// The backend's error message.
    pub message: String,
    /// The backend's `Retry-After`, if any.
    pub retry_after: Option<Duration>,
}

impl AdapterError {
    /// An error with no HTTP response behind it.
    pub fn new(
        kind: ErrorKind,
        operation: impl Into<String>,
        code: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            operation: operation.into(),
            status: None,
            code: code.to_string(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// True when retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Throttled | ErrorKind::Unavailable | ErrorKind::Transport
        )
    }

    /// True for "it is not there".
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }
}
