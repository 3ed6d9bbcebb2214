//! The ARM error model of the mock and the small response helpers every route shares.
//!
//! Wire messages deliberately copy Azure's wording (capitalised, with a trailing period) because
//! clients match on them; the Rust `Display` of [`ArmError`] follows our lowercase convention.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// The content type Azure uses for every JSON response.
pub(crate) const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// An error answered as an ARM error body `{"error":{"code","message"}}`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("arm error {status} {code}")]
pub(crate) struct ArmError {
    pub(crate) status: StatusCode,
    pub(crate) code: String,
    pub(crate) message: String,
    /// Extra response headers (`WWW-Authenticate`, `Retry-After`).
    pub(crate) headers: Vec<(HeaderName, String)>,
}

impl ArmError {
    /// An error with an explicit status, code and client-facing message.
    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// 400 with the given code.
    pub(crate) fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 with the given code.
    pub(crate) fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// The answer for a path the mock does not serve.
    pub(crate) fn no_route(method: &str, path: &str) -> Self {
        Self::not_found(
            "NotFound",
            format!(
                "No HTTP resource was found that matches the request URI '{path}' for method '{method}'."
            ),
        )
    }

    /// The answer for a body that is not the JSON the route expects.
    pub(crate) fn invalid_content(detail: impl std::fmt::Display) -> Self {
        Self::bad_request(
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{detail}'."),
        )
    }

    /// Adds a response header.
    pub(crate) fn with_header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The JSON body Azure sends for this error.
    pub(crate) fn body(&self) -> Value {
        json!({"error": {"code": self.code, "message": self.message}})
    }
}

impl IntoResponse for ArmError {
    fn into_response(self) -> Response {
        let mut response = json_response(self.status, &self.body());
        for (name, value) in &self.headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                response.headers_mut().insert(name.clone(), value);
            }
        }
        response
    }
}

/// A JSON response with Azure's content type.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    response
}

/// An empty response (DELETE 200/204, 202 Accepted).
pub(crate) fn empty_response(status: StatusCode) -> Response {
    status.into_response()
}

/// A fresh random uuid: request ids, operation ids, principal ids and tokens.
///
/// The workspace funnels `Uuid::new_v4` through `tether-model`'s typed ids, but this crate must
/// not depend on any other tether crate, and every id minted here is an opaque wire value.
#[expect(
    clippy::disallowed_methods,
    reason = "mock-azure mints opaque wire ids and must not depend on tether-model"
)]
pub(crate) fn new_uuid() -> uuid::Uuid {
    uuid::Uuid::new_v4()
}

/// RFC 3339 with milliseconds and a `Z` suffix, the format Azure uses for timestamps.
pub(crate) fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}
