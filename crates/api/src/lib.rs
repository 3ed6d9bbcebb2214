//! `tether-api`: the ARM-shaped HTTP surface of `Microsoft.ServiceLinker` — authentication,
//! routing of `{resourceUri}` paths, the api-version gate, long-running operations with
//! status and result URLs, paging, the ARM error envelope, request and correlation ids — plus
//! health endpoints and the OpenAPI documents it implements.
//!
//! Must never depend on sqlx.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tether_app::{App, Caller};
use tether_model::{Error, ErrorKind};
use tracing::Instrument;

mod admin;
mod error;
mod handlers;
mod render;
mod routes;

pub use error::ApiError;

/// HTTP-level settings.
#[derive(Clone)]
pub struct ApiConfig {
    /// The public base URL of the API (scheme and host, no path), used for polling and paging
    /// URLs. When unset, `http://` plus the request's `Host` header.
    pub public_url: Option<String>,
    /// The location segment of operation URLs (the service's home location, lower case).
    pub location: String,
    /// `Retry-After` seconds on long-running operations.
    pub retry_after: u32,
    /// The bearer token that authenticates callers.
    pub token: SecretString,
    /// The identity recorded in `systemData` for callers of that token.
    pub principal: String,
    /// Renders the process's metrics in the Prometheus text format (`GET /metrics`).
    pub metrics: MetricsRender,
}

/// Renders metrics in the Prometheus text format.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// Shared handler state.
pub struct ApiState {
    app: App,
    config: ApiConfig,
}

impl ApiState {
    /// Checks the bearer token (in constant time) and says who the caller is.
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, Error> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(Error::new(
                ErrorKind::Unauthenticated,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            ));
        };
        let presented = value.to_str().ok().and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        });
        let expected = self.config.token.expose_secret().as_bytes();
        match presented {
            Some(token) if constant_time_eq(token.as_bytes(), expected) => Ok(Caller {
                name: self.config.principal.clone(),
                kind: "User".into(),
            }),
            _ => Err(Error::new(
                ErrorKind::Unauthenticated,
                "InvalidAuthenticationToken",
                "The access token is invalid.",
            )),
        }
    }

    fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.config.public_url {
            return url.trim_end_matches('/').to_string();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}")
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The whole HTTP surface.
pub fn router(app: App, config: ApiConfig) -> Router {
    let state = Arc::new(ApiState { app, config });
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/readyz", get(ready))
        .route("/openapi/{file}", get(openapi))
        .route("/metrics", get(metrics))
        .route("/admin/sagas", get(admin::sagas))
        .route("/admin/sagas/{id}/retry", axum::routing::post(admin::retry))
        .fallback(handlers::dispatch)
        .with_state(state)
        .layer(middleware::from_fn(request_context))
}

async fn ready(State(state): State<Arc<ApiState>>) -> Response {
    match state.app.ready().await {
        Ok(()) => axum::Json(json!({"status": "ready"})).into_response(),
        Err(e) => ApiError(e).into_response(),
    }
}

/// Prometheus metrics: this process's counters plus the saga gauges read from the database.
async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    if let Err(e) = state.app.refresh_gauges().await {
        return ApiError(e).into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        (state.config.metrics)(),
    )
        .into_response()
}

/// The OpenAPI documents this service implements, as published by Microsoft.
async fn openapi(Path(file): Path<String>) -> Response {
    let doc = match file.as_str() {
        "2022-05-01.json" => include_str!("../openapi/2022-05-01/servicelinker.json"),
        "2024-04-01.json" => include_str!("../openapi/2024-04-01/servicelinker.json"),
        "2024-07-01-preview.json" => {
            include_str!("../openapi/2024-07-01-preview/servicelinker.json")
        }
        _ => {
            return ApiError(Error::new(
                ErrorKind::NotFound,
                "NotFound",
                "no such document",
            ))
            .into_response();
        }
    };
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        doc,
    )
        .into_response()
}

/// Request and correlation ids, the request's span and its access log line.
async fn request_context(request: Request, next: Next) -> Response {
    #[expect(
        clippy::disallowed_methods,
        reason = "x-ms-request-id is a fresh GUID per request"
    )]
    let request_id = uuid::Uuid::new_v4().to_string();
    let (correlation, client_request_id, echo_client_id) = {
        let text = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        (
            text("x-ms-correlation-request-id").unwrap_or_else(|| request_id.clone()),
            text("x-ms-client-request-id"),
            text("x-ms-return-client-request-id").is_some_and(|v| v.eq_ignore_ascii_case("true")),
        )
    };
    let method = request.method().clone();
    let span = tracing::info_span!(
        "request",
        method = %method,
        route = tracing::field::Empty,
        request_id = %request_id,
        correlation_id = %correlation,
        client_request_id = client_request_id.as_deref().unwrap_or_default(),
    );
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request finished"
        );
    });
    // axum's own 405 (a health or document route with the wrong method) has no ARM body.
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && !response.headers().contains_key(header::CONTENT_TYPE)
    {
        response = ApiError(Error::new(
            ErrorKind::MethodNotAllowed,
            "MethodNotAllowed",
            "the method is not allowed",
        ))
        .into_response();
    }
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("x-ms-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&correlation) {
        headers.insert("x-ms-correlation-request-id", v);
    }
    if let (true, Some(id)) = (echo_client_id, client_request_id) {
        if let Ok(v) = HeaderValue::from_str(&id) {
            headers.insert("x-ms-client-request-id", v);
        }
    }
    response
}
