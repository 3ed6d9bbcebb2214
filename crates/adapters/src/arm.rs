//! A small Azure Resource Manager client: bearer tokens from an OAuth2 client-credentials
//! endpoint (cached, refreshed before expiry and after a 401), bounded retries of transient
//! failures honouring `Retry-After`, and long-running-operation polling
//! (`Azure-AsyncOperation`, then `Location`). It never logs request or response bodies.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
pub use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::Call;
use crate::error::{AdapterError, ErrorKind, scrub};

/// Where ARM and the token endpoint are, and who we are.
#[derive(Clone)]
pub struct ArmConfig {
    /// ARM's base URL, e.g. `https://management.azure.com`.
    pub endpoint: Url,
    /// The token authority's base URL, e.g. `https://login.microsoftonline.com`.
    pub authority: Url,
    /// The tenant to get tokens from.
    pub tenant_id: String,
    /// Our application (client) id.
    pub client_id: String,
    /// Our client secret.
    pub client_secret: SecretString,
    /// How many times a transient failure is retried within one call.
    pub max_retries: u32,
    /// The longest `Retry-After` honoured within one call; longer waits are left to the caller.
    pub max_retry_after: Duration,
    /// Timeout of each HTTP request.
    pub request_timeout: Duration,
    /// How long to follow a long-running operation before giving up (as a transient error).
    pub lro_timeout: Duration,
    /// The largest response body read; a larger one is a protocol error.
    pub max_response_bytes: usize,
    /// The SQL data plane of database servers (statements that create and drop database
    /// users for identities), if one is configured.
    pub sql_data_plane: Option<Url>,
    /// Sent as `User-Agent` (names the replica).
    pub user_agent: String,
}

impl std::fmt::Debug for ArmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmConfig")
            .field("endpoint", &self.endpoint.as_str())
            .field("authority", &self.authority.as_str())
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// The default of [`ArmConfig::max_response_bytes`].
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// The longest `Retry-After` believed; a backend asking for more is taken to mean this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The bounds on a token's `expires_in` that are believed (seconds).
const TOKEN_LIFETIME_SECS: std::ops::RangeInclusive<u64> = 60..=24 * 3600;

/// An ARM client. Cheap to clone; clones share the token cache.
#[derive(Clone)]
pub struct ArmClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    config: ArmConfig,
    token: tokio::sync::Mutex<Option<Token>>,
}

struct Token {
    value: SecretString,
    refresh_at: Instant,
}

/// A successful response, its body read but not parsed: a caller that needs no body (a write
/// whose reply is only followed) pays nothing for it, and one that knows its shape parses it
/// straight into that type.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    /// The call, for errors (`GET …/sites/x`).
    what: String,
}

impl Reply {
    /// The body as JSON of type `T` (an empty body is `null`).
    fn json<T: DeserializeOwned>(&self) -> Result<T, AdapterError> {
        let parsed = if self.body.is_empty() {
            serde_json::from_value(Value::Null)
        } else {
            serde_json::from_slice(&self.body)
        };
        parsed.map_err(|_| {
            AdapterError::new(
                ErrorKind::Protocol,
                &self.what,
                "InvalidResponse",
                "the response body is not the JSON expected",
            )
        })
    }
}

/// `body` as a JSON request body.
fn json_body<B: Serialize + ?Sized>(body: &B) -> Result<Vec<u8>, AdapterError> {
    serde_json::to_vec(body).map_err(|e| {
        AdapterError::new(
            ErrorKind::Protocol,
            "serialize a request body",
            "InvalidRequest",
            e.to_string(),
        )
    })
}

impl ArmClient {
    /// A client for `config`.
    pub fn new(config: ArmConfig) -> Result<Self, AdapterError> {
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| {
                AdapterError::new(
                    ErrorKind::Protocol,
                    "build http client",
                    "ClientSetup",
                    e.to_string(),
                )
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                config,
                token: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// GETs a resource. `NotFound` errors when it is absent.
    pub async fn get(
        &self,
        call: &Call,
        path: &str,
        api_version: &str,
    ) -> Result<Value, AdapterError> {
        let url = self.url(path, api_version)?;
        self.send(call, Method::GET, url, None).await?.json()
    }

    /// PUTs a resource (create or replace) and follows a long-running operation to its end;
    /// returns the resource as it ends up.
    pub async fn put<B: Serialize + ?Sized>(
        &self,
        call: &Call,
        path: &str,
        api_version: &str,
        body: &B,
    ) -> Result<Value, AdapterError> {
        let url = self.url(path, api_version)?;
        let body = json_body(body)?;
        let reply = self
            .send(call, Method::PUT, url.clone(), Some(&body))
            .await?;
        if self.follow(call, &reply).await? {
            return self.send(call, Method::GET, url, None).await?.json();
        }
        reply.json()
    }

    /// PUTs or PATCHes a resource and follows a long-running operation to its end, without
    /// reading the resource back.
    pub async fn write<B: Serialize + ?Sized>(
        &self,
        call: &Call,
        method: Method,
        path: &str,
        api_version: &str,
        body: &B,
    ) -> Result<(), AdapterError> {
        let url = self.url(path, api_version)?;
        let body = json_body(body)?;
        let reply = self.send(call, method, url, Some(&body)).await?;
        self.follow(call, &reply).await.map(|_| ())
    }

    /// GETs a collection with an OData `$filter`.
    pub async fn get_filtered(
        &self,
        call: &Call,
        path: &str,
        api_version: &str,
        filter: &str,
    ) -> Result<Value, AdapterError> {
        let mut url = self.url(path, api_version)?;
        url.query_pairs_mut().append_pair("$filter", filter);
        self.send(call, Method::GET, url, None).await?.json()
    }

    /// Whether a SQL data plane is configured.
    pub fn has_sql_data_plane(&self) -> bool {
        self.inner.config.sql_data_plane.is_some()
    }

    /// Runs SQL statements on a database through the configured SQL data plane (with this
    /// client's credentials); `NotFound`-kind `Unsupported` error when none is configured.
    pub async fn sql(&self, call: &Call, body: &Value) -> Result<Value, AdapterError> {
        let url = self.inner.config.sql_data_plane.clone().ok_or_else(|| {
            AdapterError::new(
                ErrorKind::BadRequest,
                "POST SQL data plane",
                "DatabaseUsersUnsupported",
                "no SQL data plane is configured (azure.sql_data_plane)",
            )
        })?;
        let body = json_body(body)?;
        self.send(call, Method::POST, url, Some(&body))
            .await?
            .json()
    }

    /// POSTs an action and returns its body as `T`.
    pub async fn post<T: DeserializeOwned>(
        &self,
        call: &Call,
        path: &str,
        api_version: &str,
        body: Option<&Value>,
    ) -> Result<T, AdapterError> {
        let url = self.url(path, api_version)?;
        let body = body.map(json_body).transpose()?;
        self.send(call, Method::POST, url, body.as_deref())
            .await?
            .json()
    }

    /// DELETEs a resource and follows a long-running operation to its end. A resource that is
    /// already gone is success.
    pub async fn delete(
        &self,
        call: &Call,
        path: &str,
        api_version: &str,
    ) -> Result<(), AdapterError> {
        let url = self.url(path, api_version)?;
        match self.send(call, Method::DELETE, url, None).await {
            Ok(reply) => self.follow(call, &reply).await.map(|_| ()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn url(&self, path: &str, api_version: &str) -> Result<Url, AdapterError> {
        let mut url = self.inner.config.endpoint.clone();
        url.path_segments_mut()
            .map_err(|()| {
                AdapterError::new(
                    ErrorKind::Protocol,
                    "build url",
                    "BadEndpoint",
                    "the ARM endpoint cannot be a base URL",
                )
            })?
            .pop_if_empty()
            .extend(path.split('/').filter(|s| !s.is_empty()));
        url.query_pairs_mut()
            .append_pair("api-version", api_version);
        Ok(url)
    }

    /// Follows a long-running operation if the reply started one. Returns whether it did.
    async fn follow(&self, call: &Call, reply: &Reply) -> Result<bool, AdapterError> {
        let async_op = header(&reply.headers, "azure-asyncoperation");
        let location = header(&reply.headers, "location");
        if reply.status != StatusCode::ACCEPTED && async_op.is_none() {
            return Ok(false);
        }
        let (url, via_status) = match (async_op, location) {
            (Some(u), _) => (u, true),
            (None, Some(u)) => (u, false),
            (None, None) => return Ok(false),
        };
        let url = self.same_origin(&url)?;
        let deadline = Instant::now() + self.inner.config.lro_timeout;
        let mut delay = Duration::ZERO;
        loop {
            tokio::time::sleep(delay).await;
            let poll = self.send(call, Method::GET, url.clone(), None).await?;
            let done = if via_status {
                let body: Value = poll.json()?;
                match body
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                {
                    "Succeeded" => true,
                    "Failed" | "Canceled" => {
                        let error = body.get("error");
                        let text = |k: &str| {
                            error
                                .and_then(|e| e.get(k))
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string()
                        };
                        return Err(AdapterError {
                            kind: ErrorKind::Conflict,
                            operation: "long-running operation".into(),
                            status: None,
                            code: Some(text("code"))
                                .filter(|c| is_code(c))
                                .unwrap_or_else(|| "OperationFailed".into()),
                            message: scrub(&text("message")),
                            retry_after: None,
                        });
                    }
                    _ => false,
                }
            } else {
                poll.status != StatusCode::ACCEPTED
            };
            if done {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Err(AdapterError::new(
                    ErrorKind::Unavailable,
                    "long-running operation",
                    "OperationTimedOut",
                    "the backend's long-running operation did not finish in time",
                ));
            }
            delay = retry_after(&poll.headers)
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(10));
        }
    }

    /// Polling URLs come from the backend: only follow ones on the ARM endpoint we were
    /// configured with, so our bearer token never goes anywhere else.
    fn same_origin(&self, url: &str) -> Result<Url, AdapterError> {
        let parsed = Url::parse(url)
            .ok()
            .filter(|u| u.origin() == self.inner.config.endpoint.origin());
        parsed.ok_or_else(|| {
            AdapterError::new(
                ErrorKind::Protocol,
                "long-running operation",
                "UntrustedPollingUrl",
                "the backend returned a polling URL outside the configured ARM endpoint",
            )
        })
    }

    async fn send(
        &self,
        call: &Call,
        method: Method,
        url: Url,
        body: Option<&[u8]>,
    ) -> Result<Reply, AdapterError> {
        let config = &self.inner.config;
        let what = format!("{method} {}", describe(url.path()));
        let mut attempt = 0;
        let mut refreshed = false;
        loop {
            let token = self.token(call).await?;
            let mut request = self
                .inner
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.expose_secret())
                .header("x-ms-client-request-id", request_id())
                .header("x-ms-correlation-request-id", &call.correlation_id)
                .timeout(config.request_timeout);
            if let Some(body) = body {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.to_vec());
            }
            let error = match request.send().await {
                Err(e) => transport(&what, &e),
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    match read_body(response, config.max_response_bytes, &what).await {
                        Err(e) => e,
                        Ok(body) if status.is_success() => {
                            debug!(operation = %what, status = status.as_u16(), "arm call succeeded");
                            return Ok(Reply {
                                status,
                                headers,
                                body,
                                what,
                            });
                        }
                        Ok(bytes) => {
                            if status == StatusCode::UNAUTHORIZED && !refreshed {
                                refreshed = true;
                                *self.inner.token.lock().await = None;
                                continue;
                            }
                            http_error(&what, status, &headers, &bytes)
                        }
                    }
                }
            };
            let wait = error.retry_after.unwrap_or_else(|| backoff(attempt));
            if !error.is_transient()
                || attempt >= config.max_retries
                || wait > config.max_retry_after
            {
                return Err(error);
            }
            warn!(operation = %what, code = %error.code, ?wait, attempt, "transient ARM failure; retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// A valid access token, fetched (single-flight) when missing or about to expire.
    async fn token(&self, call: &Call) -> Result<SecretString, AdapterError> {
        let mut cached = self.inner.token.lock().await;
        if let Some(t) = cached.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(t.value.clone());
        }
        let config = &self.inner.config;
        let what = "POST token endpoint";
        let mut url = config.authority.clone();
        url.path_segments_mut()
            .map_err(|()| {
                AdapterError::new(
                    ErrorKind::Protocol,
                    what,
                    "BadAuthority",
                    "the token authority cannot be a base URL",
                )
            })?
            .pop_if_empty()
            .extend([config.tenant_id.as_str(), "oauth2", "v2.0", "token"]);
        let scope = format!(
            "{}/.default",
            config.endpoint.as_str().trim_end_matches('/')
        );
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", config.client_id.as_str()),
            ("client_secret", config.client_secret.expose_secret()),
            ("scope", scope.as_str()),
        ];
        let mut attempt = 0;
        loop {
            let sent = self
                .inner
                .http
                .post(url.clone())
                .header("x-ms-correlation-request-id", &call.correlation_id)
                .form(&form)
                .timeout(config.request_timeout)
                .send()
                .await;
            let error = match sent {
                Err(e) => transport(what, &e),
                Ok(response) if response.status().is_success() => {
                    let bytes = read_body(response, config.max_response_bytes, what).await?;
                    let body: Value = serde_json::from_slice(&bytes).map_err(|_| {
                        AdapterError::new(
                            ErrorKind::Protocol,
                            what,
                            "InvalidTokenResponse",
                            "the token response is not JSON",
                        )
                    })?;
                    let token = body
                        .get("access_token")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            AdapterError::new(
                                ErrorKind::Protocol,
                                what,
                                "InvalidTokenResponse",
                                "the token response has no access_token",
                            )
                        })?;
                    let lifetime = body
                        .get("expires_in")
                        .and_then(Value::as_u64)
                        .unwrap_or(300)
                        .clamp(*TOKEN_LIFETIME_SECS.start(), *TOKEN_LIFETIME_SECS.end());
                    // Refresh a little early so a token never expires in flight.
                    let refresh_in = Duration::from_secs(
                        lifetime.saturating_sub(lifetime.min(300) / 5 + 1).max(1),
                    );
                    let value = SecretString::from(token.to_string());
                    let now = Instant::now();
                    *cached = Some(Token {
                        value: value.clone(),
                        refresh_at: now.checked_add(refresh_in).unwrap_or(now),
                    });
                    return Ok(value);
                }
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    let bytes = read_body(response, config.max_response_bytes, what)
                        .await
                        .unwrap_or_default();
                    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    let code = body
                        .get("error")
                        .and_then(Value::as_str)
                        .filter(|c| is_code(c))
                        .unwrap_or("TokenRequestFailed");
                    let message = scrub(
                        body.get("error_description")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                    );
                    let kind = kind_of(status);
                    let kind = if kind == ErrorKind::BadRequest {
                        ErrorKind::Unauthorized
                    } else {
                        kind
                    };
                    AdapterError {
                        kind,
                        operation: what.into(),
                        status: Some(status.as_u16()),
                        code: code.into(),
                        message,
                        retry_after: retry_after(&headers),
                    }
                }
            };
            let wait = error.retry_after.unwrap_or_else(|| backoff(attempt));
            if !error.is_transient()
                || attempt >= config.max_retries
                || wait > config.max_retry_after
            {
                return Err(error);
            }
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

fn request_id() -> String {
    format!("{:032x}", rand::rng().random::<u128>())
}

/// A loggable description of a path: the resource type, not the names.
fn describe(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments
        .iter()
        .rposition(|s| s.eq_ignore_ascii_case("providers"))
    {
        Some(at) => {
            let ns = segments.get(at + 1).copied().unwrap_or_default();
            let types: Vec<&str> = segments[at + 2..].iter().step_by(2).copied().collect();
            format!("{ns}/{}", types.join("/"))
        }
        None => path.to_string(),
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `Retry-After` as seconds or an HTTP date, capped at [`MAX_RETRY_AFTER`].
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() {
        // Too many digits for a u64 is simply "very long".
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
        wait.to_std().unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Reads a response body, refusing one larger than `limit` bytes.
async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
    what: &str,
) -> Result<Vec<u8>, AdapterError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport(what, &e))? {
        if body.len() + chunk.len() > limit {
            return Err(AdapterError::new(
                ErrorKind::Protocol,
                what,
                "ResponseTooLarge",
                "the backend's response is too large",
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A backend error code worth passing on: a short identifier, not free text.
fn is_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn backoff(attempt: u32) -> Duration {
    let cap = 200u64.saturating_mul(1 << attempt.min(6)).min(5_000);
    Duration::from_millis(rand::rng().random_range(cap / 2..=cap))
}

fn kind_of(status: StatusCode) -> ErrorKind {
    match status.as_u16() {
        404 => ErrorKind::NotFound,
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Forbidden,
        409 | 412 => ErrorKind::Conflict,
        408 | 500 | 502 | 503 | 504 => ErrorKind::Unavailable,
        429 => ErrorKind::Throttled,
        s if s >= 500 => ErrorKind::Unavailable,
        _ => ErrorKind::BadRequest,
    }
}

fn http_error(what: &str, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> AdapterError {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = parsed.get("error");
    let text = |k: &str| {
        error
            .and_then(|e| e.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    AdapterError {
        kind: kind_of(status),
        operation: what.to_string(),
        status: Some(status.as_u16()),
        code: text("code").filter(|c| is_code(c)).unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("Error")
                .replace(' ', "")
        }),
        message: scrub(&text("message").unwrap_or_default()),
        retry_after: retry_after(headers),
    }
}

/// A failure without a response, in our words: the transport's own text (which names the
/// backend's URL) goes to the logs only.
fn transport(what: &str, e: &reqwest::Error) -> AdapterError {
    warn!(operation = %what, error = %tether_model::ErrorChain(e), "backend call failed without a response");
    let (code, message) = if e.is_timeout() {
        ("BackendTimeout", "the backend did not answer in time")
    } else {
        ("BackendUnreachable", "the backend could not be reached")
    };
    AdapterError::new(ErrorKind::Transport, what, code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_paths_by_type_only() {
        assert_eq!(
            describe(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/app/config/appsettings/list"
            ),
            "Microsoft.Web/sites/config/list"
        );
        assert_eq!(
            describe(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg/firewallRules/r"
            ),
            "Microsoft.DBforPostgreSQL/flexibleServers/firewallRules"
        );
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        h.insert(RETRY_AFTER, later.parse().unwrap());
        let wait = retry_after(&h).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
        for absurd in ["18446744073709551615", "99999999999999999999999"] {
            h.insert(RETRY_AFTER, absurd.parse().unwrap());
            assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        }
    }

    #[test]
    fn statuses_map_to_kinds() {
        assert!(
            AdapterError {
                kind: kind_of(StatusCode::TOO_MANY_REQUESTS),
                ..AdapterError::new(ErrorKind::Protocol, "", "", "")
            }
            .is_transient()
        );
        assert!(
            !AdapterError {
                kind: kind_of(StatusCode::BAD_REQUEST),
                ..AdapterError::new(ErrorKind::Protocol, "", "", "")
            }
            .is_transient()
        );
        assert_eq!(kind_of(StatusCode::NOT_FOUND), ErrorKind::NotFound);
        assert_eq!(kind_of(StatusCode::GATEWAY_TIMEOUT), ErrorKind::Unavailable);
    }
}
