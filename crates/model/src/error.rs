//! The transport-agnostic service error: a kind (which the API maps to a status code), a
//! stable ARM `code`, a message that is safe to show the client, and internal context for logs.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What went wrong, coarsely; `tether-api` maps each kind to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// 400: the request is malformed or semantically invalid.
    InvalidInput,
    /// 401: no or bad credentials.
    Unauthenticated,
    /// 403: the caller is known but may not do this (`AuthorizationFailed`).
    Forbidden,
    /// 404: the resource (or operation) does not exist.
    NotFound,
    /// 405: the route exists but not for this method.
    MethodNotAllowed,
    /// 408: the client did not send its request in time.
    RequestTimeout,
    /// 409: the resource is busy or in a conflicting state.
    Conflict,
    /// 413: the request body is too large.
    PayloadTooLarge,
    /// 415: the request body is not JSON.
    UnsupportedMediaType,
    /// 429: the caller sent too many requests; retry after the time given.
    TooManyRequests,
    /// 501: a documented operation Tether does not serve yet.
    NotImplemented,
    /// 503: a dependency is unavailable; the client should retry later.
    Unavailable,
    /// 500: a bug. The client sees a generic message.
    Internal,
}

/// The service error. `message` is always safe for clients; the `source` chain is for logs.
pub struct Error {
    kind: ErrorKind,
    code: Cow<'static, str>,
    message: String,
    target: Option<String>,
    retry_after: Option<u32>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    /// A client error with an explicit kind and ARM code.
    pub fn new(
        kind: ErrorKind,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            code: code.into(),
            message: message.into(),
            target: None,
            retry_after: None,
            source: None,
        }
    }

    /// 400 with the given ARM code (`InvalidParameter`, `InvalidRequestContent`, ...).
    pub fn invalid(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, code, message)
    }

    /// 404 `ResourceNotFound` in ARM's wording.
    pub fn resource_not_found(resource_type: &str, name: &str, scope: &str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            "ResourceNotFound",
            format!("The Resource '{resource_type}/{name}' under scope '{scope}' was not found."),
        )
    }

    /// 409 `AnotherOperationInProgress`.
    pub fn conflict(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }

    /// 500: a bug or an unexpected dependency failure. The client sees only a generic message;
    /// `context` and `source` go to the logs.
    pub fn internal(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            kind: ErrorKind::Internal,
            code: Cow::Borrowed("InternalServerError"),
            message: context.into(),
            target: None,
            retry_after: None,
            source: Some(source.into()),
        }
    }

    /// 503 `ServiceUnavailable`: a dependency (the database) is unreachable.
    pub fn unavailable(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            kind: ErrorKind::Unavailable,
            code: Cow::Borrowed("ServiceUnavailable"),
            message: context.into(),
            target: None,
            retry_after: None,
            source: Some(source.into()),
        }
    }

    /// Sets the ARM `target` (the offending property path).
    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// Tells the client when to retry (`Retry-After`, in seconds); only the retryable kinds
    /// (`Unavailable`, `TooManyRequests`) send it.
    pub fn with_retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The `Retry-After` hint, if set.
    pub fn retry_after(&self) -> Option<u32> {
        self.retry_after
    }

    /// The coarse kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The stable ARM error code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The ARM `target`, if any.
    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    /// The message to show the client. For `Internal` and `Unavailable` errors this is generic:
    /// their detailed message is internal context.
    pub fn client_message(&self) -> &str {
        match self.kind {
            ErrorKind::Internal => {
                "The server encountered an internal error. Please retry the request."
            }
            ErrorKind::Unavailable => {
                "The service is temporarily unavailable. Please retry the request."
            }
            _ => &self.message,
        }
    }

    /// The client-facing body of this error.
    pub fn detail(&self) -> ErrorDetail {
        ErrorDetail {
            code: self.code.to_string(),
            message: self.client_message().to_string(),
            target: self.target.clone(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", ErrorChain(self))
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The ARM error detail: `{"code","message","target"?}`. Persisted with failed operations,
/// so it is serde-serializable and holds nothing but client-safe text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable PascalCase code.
    pub code: String,
    /// Human-readable, client-safe message.
    pub message: String,
    /// The offending property, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl ErrorDetail {
    /// A detail with no target.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            target: None,
        }
    }
}

/// Displays an error and its whole `source()` chain: `outer: inner: innermost`.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            write!(f, ": {cause}")?;
            next = cause.source();
        }
        Ok(())
    }
}

/// How much of a caller's input an error message quotes.
const QUOTE_LIMIT: usize = 80;

/// A caller's input as an error message quotes it: escaped (control and non-ASCII characters
/// as `\u{..}`), and cut at [`QUOTE_LIMIT`] characters, so a message is always short and
/// printable whatever was sent.
pub fn quoted(value: &str) -> String {
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        if i == QUOTE_LIMIT {
            out.push_str("...");
            break;
        }
        out.extend(c.escape_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_context_from_clients() {
        let io = std::io::Error::other("disk on fire");
        let err = Error::internal("writing the linker row", io);
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert!(!err.detail().message.contains("disk"));
        assert!(format!("{err:?}").contains("disk on fire"));
    }

    #[test]
    fn client_errors_keep_code_message_and_target() {
        let err = Error::invalid("InvalidParameter", "bad thing").with_target("properties.x");
        let d = err.detail();
        assert_eq!(
            (d.code.as_str(), d.message.as_str(), d.target.as_deref()),
            ("InvalidParameter", "bad thing", Some("properties.x"))
        );
    }
}
