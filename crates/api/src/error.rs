//! The one mapping from service errors to HTTP: status by kind, the ARM error envelope
//! `{"error":{"code","message","target"?}}`, and the headers some statuses need.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tether_model::{Error, ErrorChain, ErrorKind};

use crate::render::json_response;

/// `Retry-After` of a retryable error that names no time of its own.
const DEFAULT_RETRY_AFTER_SECS: u32 = 5;

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
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
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
            ErrorKind::Unavailable | ErrorKind::TooManyRequests => {
                let secs = self.0.retry_after().unwrap_or(DEFAULT_RETRY_AFTER_SECS);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            _ => {}
        }
        response
    }
}

/// An error body for a response some layer answered without one (axum's 405, the timeout's
/// 408, the body limit's 413, the load shedder's 503): the same status with ARM's envelope,
/// so every error a client sees has `{"error":{"code","message"}}`.
pub fn for_status(status: StatusCode) -> ApiError {
    let (kind, code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            ErrorKind::MethodNotAllowed,
            "MethodNotAllowed",
            "the method is not allowed",
        ),
        StatusCode::REQUEST_TIMEOUT => (
            ErrorKind::RequestTimeout,
            "RequestTimeout",
            "the request was not received or handled in time",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            ErrorKind::PayloadTooLarge,
            "RequestBodyTooLarge",
            "the request body is larger than 4 MB",
        ),
        StatusCode::SERVICE_UNAVAILABLE => (
            ErrorKind::Unavailable,
            "ServerBusy",
            "the service is busy; retry the request",
        ),
        StatusCode::NOT_FOUND => (ErrorKind::NotFound, "NotFound", "no such route"),
        s if s.is_client_error() => (
            ErrorKind::InvalidInput,
            "BadRequest",
            "the request is not valid",
        ),
        _ => (
            ErrorKind::Internal,
            "InternalServerError",
            "an unexpected error occurred",
        ),
    };
    ApiError(Error::new(kind, code, message))
}
