//! The one mapping from service errors to HTTP: status by kind, the ARM error envelope
//! `{"error":{"code","message","target"?}}`, and the headers some statuses need.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tether_model::{Error, ErrorChain, ErrorKind};

use crate::render::json_response;

/// A service error on its way to the client.
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

/// The status of each error kind.
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_for(self.0.kind());
        if status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED {
            tracing::error!(error = %ErrorChain(&self.0), "request failed");
        } else {
            tracing::debug!(code = self.0.code(), "request rejected");
        }
        let mut response = json_response(status, &json!({ "error": self.0.detail() }));
        let headers = response.headers_mut();
        if let Ok(code) = HeaderValue::from_str(self.0.code()) {
            headers.insert("x-ms-error-code", code);
        }
        match self.0.kind() {
            ErrorKind::Unauthenticated => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            // Only retryable statuses say when to retry: azure-core retries any error that
            // carries Retry-After, whatever the method.
            ErrorKind::Unavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
            }
            _ => {}
        }
        response
    }
}
