//! `tether-api`: the ARM-shaped HTTP surface of `Microsoft.ServiceLinker` — authentication,
//! routing of `{resourceUri}` paths, the api-version gate, long-running operations with
//! status and result URLs, paging, the ARM error envelope, request and correlation ids — plus
//! health endpoints and the OpenAPI documents it implements.
//!
//! Must never depend on sqlx.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use http_body_util::BodyExt;
use serde_json::json;
use tether_app::App;
use tether_app::auth::Security;
use tether_model::{Error, ErrorKind};
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tracing::Instrument;

mod admin;
mod audit;
mod authn;
pub mod authorization;
mod catalogue;
mod error;
mod guard;
mod handlers;
mod poll_hint;
mod region;
mod render;
mod routes;
mod serve;
pub mod throttle;

pub use error::ApiError;
pub use handlers::MAX_BODY;
pub use region::{LeaseState, RegionReport, RegionStatus};
pub use serve::serve;
pub use throttle::ThrottleSettings;

/// Where the absolute URLs the API hands out (operation status, results, next pages) point.
/// They are never built from an untrusted `Host` header: a forged one would send clients,
/// with their bearer tokens, elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseUrl {
    /// The service's public URL (scheme and host, no path), e.g. `https://tether.example.net`.
    Fixed(String),
    /// The request's own `Host`, over `scheme`, when it is one of `hosts` (`host` matches any
    /// port, `host:port` that port only); requests naming another host are refused.
    TrustedHosts {
        /// `http` or `https`.
        scheme: String,
        /// The accepted host names, lower case.
        hosts: Vec<String>,
    },
}

impl BaseUrl {
    /// The base URL for a request with these headers, or `400 InvalidHostHeader`.
    pub fn for_request(&self, headers: &HeaderMap) -> Result<String, Error> {
        match self {
            BaseUrl::Fixed(url) => Ok(url.trim_end_matches('/').to_string()),
            BaseUrl::TrustedHosts { scheme, hosts } => {
                let host = headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_ascii_lowercase)
                    .filter(|h| Self::trusted(hosts, h))
                    .ok_or_else(|| {
                        Error::invalid(
                            "InvalidHostHeader",
                            "the request's Host header does not name this service",
                        )
                    })?;
                Ok(format!("{scheme}://{host}"))
            }
        }
    }

    fn trusted(hosts: &[String], host: &str) -> bool {
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        hosts.iter().any(|h| h == host || h == name)
    }
}

/// The HTTP limits: how long a client may take, how many may be served at once, how large a
/// list page may grow, how long a shutdown waits.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Time to send the request line and headers; the connection is closed after it.
    pub header_timeout: Duration,
    /// Longest wait for the next piece of a request body.
    pub body_timeout: Duration,
    /// Time to handle one request, body included; `408` after it.
    pub request_timeout: Duration,
    /// Connections open at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Requests handled at once; further ones get `503 ServerBusy` at once.
    pub max_requests: usize,
    /// Largest list page, in bytes of rendered linkers; a page ends early (with a `nextLink`)
    /// rather than grow past it.
    pub page_bytes: usize,
    /// How long a graceful shutdown lets requests in flight finish.
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_requests: 256,
            page_bytes: 1024 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// HTTP-level settings.
#[derive(Clone)]
pub struct ApiConfig {
    /// Where polling and paging URLs point.
    pub base_url: BaseUrl,
    /// Timeouts and caps.
    pub limits: HttpLimits,
    /// The location segment of operation URLs (the service's home location, lower case).
    pub location: String,
    /// The longest polling hint (`Retry-After` seconds) of a long-running operation; younger
    /// operations get shorter hints (see `poll_hint`).
    pub retry_after: u32,
    /// Renders the process's metrics in the Prometheus text format (`GET /metrics`).
    pub metrics: MetricsRender,
    /// JWT authentication, role-based authorization and the audit trail.
    pub security: Arc<Security>,
    /// Throttling budgets per principal and subscription; `None`: no throttling.
    pub throttle: Option<ThrottleSettings>,
    /// Most refusals made before any handler (bad tokens, throttling) written to the audit
    /// trail per second; the rest are only counted.
    pub refusal_audit_per_sec: u32,
    /// The region's leadership, for readiness; `None` without regions (always active).
    pub region: Option<Arc<dyn RegionReport>>,
}

/// Renders metrics in the Prometheus text format.
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// Shared handler state.
pub struct ApiState {
    app: App,
    config: ApiConfig,
    throttle: Option<throttle::Throttle>,
    refusal_budget: governor::DefaultDirectRateLimiter,
    /// The last database readiness check, reused for a second.
    db_check: std::sync::Mutex<Option<region::DbCheck>>,
}

/// The whole HTTP surface, with the limits of [`harden`].
///
/// Health, readiness, metrics and the OpenAPI documents are public and cheap; everything
/// else (ARM routes, `/admin`) is authenticated, then throttled.
pub fn router(app: App, config: ApiConfig) -> Router {
    let limits = config.limits.clone();
    let throttle = config.throttle.as_ref().map(throttle::Throttle::new);
    let per_sec = std::num::NonZeroU32::new(config.refusal_audit_per_sec.max(1))
        .unwrap_or(std::num::NonZeroU32::MIN);
    let state = Arc::new(ApiState {
        app,
        config,
        throttle,
        refusal_budget: governor::RateLimiter::direct(governor::Quota::per_second(per_sec)),
        db_check: std::sync::Mutex::new(None),
    });
    let public: Router<Arc<ApiState>> = Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/readyz", get(region::ready))
        .route("/openapi/{file}", get(openapi))
        .route("/metrics", get(metrics));
    let protected: Router<Arc<ApiState>> = Router::new()
        .route("/admin/sagas", get(admin::sagas))
        .route("/admin/sagas/{id}/retry", axum::routing::post(admin::retry))
        .route("/admin/audit", get(admin::audit))
        .fallback(handlers::dispatch)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            throttle::middleware,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            authn::middleware,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            region::refuse_writes,
        ));
    harden(public.merge(protected).with_state(state), &limits)
}

/// Wraps routes in the limits every request gets: a handler panic becomes an ARM `500`,
/// requests beyond `max_requests` get `503` at once, a request slower than
/// `request_timeout` gets `408`, bodies are bounded in size and in time between their
/// pieces, every response carries request and correlation ids, and every error ARM's body.
fn harden(routes: Router, limits: &HttpLimits) -> Router {
    // One semaphore for every route (a plain concurrency limit would give each its own).
    let shed = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
            error::for_status(StatusCode::SERVICE_UNAVAILABLE).into_response()
        }))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(limits.max_requests));
    routes
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(middleware::from_fn(refuse_oversized))
        .layer(RequestBodyTimeoutLayer::new(limits.body_timeout))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(shed)
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                // The panic message itself is logged by the panic hook; the client sees a
                // generic 500.
                tracing::error!("a request handler panicked");
                error::for_status(StatusCode::INTERNAL_SERVER_ERROR).into_response()
            },
        ))
        .layer(middleware::from_fn(request_context))
}

/// Prometheus metrics: this process's counters plus the saga gauges, which a background task
/// refreshes from the database (a scrape never queries it).
async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
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

/// How long the rest of a refused body is read and dropped.
const DISCARD_FOR: Duration = Duration::from_secs(5);

/// Answers `413` at once to a request whose declared length is over [`MAX_BODY`], reading
/// and dropping the rest of its body in the background for at most [`DISCARD_FOR`]: a socket
/// closed with unread data in it resets the connection, and a client still sending would
/// then see a reset instead of the `413`. Nothing is kept, and the connection limit bounds
/// how many such bodies are read at once. (Bodies without a declared length are cut off at
/// the limit while they stream, by `RequestBodyLimitLayer` and the handlers.)
async fn refuse_oversized(request: Request, next: Next) -> Response {
    if handlers::declared_length(request.headers()).is_none_or(|n| n <= MAX_BODY as u64) {
        return next.run(request).await;
    }
    let mut body = request.into_body();
    tokio::spawn(async move {
        let drain = async { while let Some(Ok(_)) = body.frame().await {} };
        let _ = tokio::time::timeout(DISCARD_FOR, drain).await;
    });
    error::for_status(StatusCode::PAYLOAD_TOO_LARGE).into_response()
}

/// True for a read answered without error, whose access log line is at `debug`.
fn is_quiet_read(method: &axum::http::Method, status: StatusCode) -> bool {
    (method == axum::http::Method::GET || method == axum::http::Method::HEAD)
        && !status.is_client_error()
        && !status.is_server_error()
}

/// Request and correlation ids, the request's span and its access log line (at `debug` for
/// successful reads, else `info`).
async fn request_context(mut request: Request, next: Next) -> Response {
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
    request.extensions_mut().insert(audit::RequestIds {
        request_id: request_id.clone(),
        correlation_id: correlation.clone(),
    });
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
    let status = response.status();
    let elapsed_ms = started.elapsed().as_millis() as u64;
    span.in_scope(|| {
        // Successful reads are the bulk of the traffic and change nothing: their line is at
        // `debug` (formatting and writing it was a tenth of a GET's CPU). Writes, refusals and
        // failures stay at `info`.
        if is_quiet_read(&method, status) {
            tracing::debug!(status = status.as_u16(), elapsed_ms, "request finished");
        } else {
            tracing::info!(status = status.as_u16(), elapsed_ms, "request finished");
        }
    });
    // Errors answered by a layer (axum's 405, the timeout's 408, the body limit's 413, the
    // load shedder's 503) have no ARM body: give them one.
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if (response.status().is_client_error() || response.status().is_server_error()) && !json {
        response = error::for_status(response.status()).into_response();
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::routing::{get, put};
    use tower::ServiceExt;

    use super::*;

    fn limits() -> HttpLimits {
        HttpLimits {
            request_timeout: Duration::from_millis(200),
            max_requests: 1,
            ..HttpLimits::default()
        }
    }

    async fn boom() -> &'static str {
        panic!("boom")
    }

    /// Requests inside `/slow` right now.
    static INSIDE_SLOW: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    async fn slow() {
        INSIDE_SLOW.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }

    fn hardened() -> Router {
        let routes = Router::new()
            .route("/panic", get(boom))
            .route("/slow", get(slow))
            .route(
                "/body",
                put(|body: axum::body::Bytes| async move { body.len().to_string() }),
            );
        harden(routes, &limits())
    }

    async fn send(router: Router, request: Request) -> (StatusCode, serde_json::Value, HeaderMap) {
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or_default(),
            headers,
        )
    }

    fn get_request(path: &str) -> Request {
        Request::builder().uri(path).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_an_arm_500() {
        let (status, body, headers) = send(hardened(), get_request("/panic")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], "InternalServerError");
        assert!(
            !body.to_string().contains("boom"),
            "the panic stays internal"
        );
        assert!(headers.contains_key("x-ms-request-id"));
    }

    #[tokio::test]
    async fn a_slow_request_answers_an_arm_408() {
        let (status, body, _) = send(hardened(), get_request("/slow")).await;
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(body["error"]["code"], "RequestTimeout");
    }

    #[tokio::test]
    async fn requests_past_the_cap_are_shed_with_an_arm_503() {
        let router = hardened();
        let entered = INSIDE_SLOW.load(std::sync::atomic::Ordering::SeqCst);
        let busy = tokio::spawn(send(router.clone(), get_request("/slow")));
        let inside = async {
            while INSIDE_SLOW.load(std::sync::atomic::Ordering::SeqCst) == entered {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), inside)
            .await
            .expect("the first request reached its handler");
        // The first request holds the only slot until it times out: one sent meanwhile is shed.
        let (status, body, headers) = send(router.clone(), get_request("/panic")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "ServerBusy");
        assert!(headers.contains_key(header::RETRY_AFTER));
        assert_eq!(busy.await.unwrap().0, StatusCode::REQUEST_TIMEOUT);
    }

    #[tokio::test]
    async fn a_declared_oversized_body_is_refused_at_once_with_an_arm_413() {
        let request = Request::builder()
            .method("PUT")
            .uri("/body")
            .header(header::CONTENT_LENGTH, (MAX_BODY + 1).to_string())
            .body(Body::from_stream(futures_util::stream::pending::<
                Result<axum::body::Bytes, std::io::Error>,
            >()))
            .unwrap();
        let (status, body, _) = send(hardened(), request).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["error"]["code"], "RequestBodyTooLarge");
    }

    #[test]
    fn trusted_hosts_match_with_or_without_port() {
        let base = BaseUrl::TrustedHosts {
            scheme: "http".into(),
            hosts: vec!["127.0.0.1".into(), "tether.local:8443".into()],
        };
        let with_host = |h: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_str(h).unwrap());
            base.for_request(&headers)
        };
        assert_eq!(
            with_host("127.0.0.1:9000").unwrap(),
            "http://127.0.0.1:9000"
        );
        assert_eq!(
            with_host("TETHER.local:8443").unwrap(),
            "http://tether.local:8443"
        );
        for forged in [
            "evil.example",
            "tether.local:9999",
            "127.0.0.1.evil.example",
            "evil/x",
        ] {
            assert_eq!(
                with_host(forged).unwrap_err().code(),
                "InvalidHostHeader",
                "{forged}"
            );
        }
        assert!(base.for_request(&HeaderMap::new()).is_err());
    }
}
