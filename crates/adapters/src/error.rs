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

/// The longest backend message passed on to clients, in characters.
const MAX_MESSAGE_CHARS: usize = 300;

/// A backend's error message made fit to show a client: control characters dropped, URLs
/// replaced by `<url>` (they can name internal endpoints), and cut to
/// [`MAX_MESSAGE_CHARS`].
pub fn scrub(message: &str) -> String {
    let mut out = String::new();
    for (i, word) in message.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let lower = word.to_ascii_lowercase();
        if lower.contains("http://") || lower.contains("https://") {
            out.push_str("<url>");
        } else {
            out.extend(word.chars().filter(|c| !c.is_control()));
        }
        if out.chars().count() > MAX_MESSAGE_CHARS {
            break;
        }
    }
    if out.chars().count() > MAX_MESSAGE_CHARS {
        out = out.chars().take(MAX_MESSAGE_CHARS).collect();
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubbing_removes_urls_and_control_characters_and_caps() {
        assert_eq!(
            scrub("error sending request for url (http://10.0.0.5:8081/subscriptions/x)\n"),
            "error sending request for url <url>"
        );
        assert_eq!(scrub("Resource 'x' not found."), "Resource 'x' not found.");
        let long = scrub(&"word ".repeat(500));
        assert!(long.chars().count() <= MAX_MESSAGE_CHARS + 3, "{long}");
        assert!(long.ends_with("..."));
    }
}
