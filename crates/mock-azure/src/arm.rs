//! Dispatch of every non-admin request: call recording, fault injection, authentication, the
//! `api-version` rule, and routing of ARM paths (matched case-insensitively, duplicate slashes
//! tolerated) to resource groups, provider resources and long-running operation status.

use axum::Extension;
use axum::body::{Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::auth::Audience;
use crate::error::{ArmError, empty_response, json_response, rfc3339};
use crate::faults::{Effect, Injected};
use crate::keys::SigningKey;
use crate::providers::{self, Kind, WriteMode};
use crate::resources::{self, ProviderPath};
use crate::state::{CallRecord, OperationOutcome, State as Backend};
use crate::{Config, MockAzure, RequestId, auth, authorization, dataplane};

/// Largest request body the mock reads.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// One incoming request, with its path split into percent-decoded, non-empty segments.
struct Call {
    method: Method,
    raw_path: String,
    segments: Vec<String>,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

impl Call {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// The `Host` the client used; absolute URLs we hand out point back at it.
    fn host(&self) -> String {
        self.header(header::HOST.as_str())
            .unwrap_or_else(|| "localhost".to_owned())
    }

    /// `http://{Host}`: the mock's external base URL as this client sees it.
    fn base(&self) -> String {
        format!("http://{}", self.host())
    }

    fn api_version(&self) -> Option<String> {
        let query = self.query.as_deref()?;
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, v)| k.eq_ignore_ascii_case("api-version") && !v.is_empty())
            .map(|(_, v)| v.into_owned())
    }

    /// The body as a JSON object, or `InvalidRequestContent`.
    fn object_body(&self) -> Result<Map<String, Value>, ArmError> {
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(object)) => Ok(object),
            Ok(_) => Err(ArmError::invalid_content("expected a JSON object")),
            Err(e) => Err(ArmError::invalid_content(e)),
        }
    }
}

/// The broad kind of a non-admin request.
enum Route {
    Token { tenant: String },
    OpenIdConfiguration { tenant: String },
    Keys { tenant: String },
    DataPlaneSql,
    Arm,
    Admin,
    Unknown,
}

impl Route {
    /// Whether answering needs the signing key (which may still be being generated).
    fn needs_key(&self) -> bool {
        matches!(self, Route::Token { .. } | Route::Keys { .. })
    }
}

fn classify(method: &Method, segments: &[String]) -> Route {
    let lower: Vec<String> = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    let tenant = || segments[0].clone();
    match lower.as_slice() {
        [_, "oauth2", "v2.0", "token"] if method == Method::POST => {
            Route::Token { tenant: tenant() }
        }
        [_, "v2.0", ".well-known", "openid-configuration"] if method == Method::GET => {
            Route::OpenIdConfiguration { tenant: tenant() }
        }
        [_, "discovery", "v2.0", "keys"] if method == Method::GET => {
            Route::Keys { tenant: tenant() }
        }
        ["dataplane", "sql"] if method == Method::POST => Route::DataPlaneSql,
        ["subscriptions", ..] | ["providers", ..] => Route::Arm,
        ["admin", ..] => Route::Admin,
        _ => Route::Unknown,
    }
}

/// Splits a path into non-empty, percent-decoded segments.
pub(crate) fn split_path(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

/// The fallback handler: everything that is not an `/admin` route.
pub(crate) async fn handle(
    State(mock): State<MockAzure>,
    Extension(request_id): Extension<RequestId>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, MAX_BODY_BYTES).await else {
        return ArmError::invalid_content("the body could not be read or is too large")
            .into_response();
    };
    let call = Call {
        method: parts.method,
        raw_path: parts.uri.path().to_owned(),
        segments: split_path(parts.uri.path()),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
    };
    let route = classify(&call.method, &call.segments);
    if matches!(route, Route::Admin) {
        return ArmError::no_route(call.method.as_str(), &call.raw_path).into_response();
    }

    let record = CallRecord {
        seq: 0,
        method: call.method.to_string(),
        path: call.raw_path.clone(),
        query: call.query.clone(),
        status: None,
        started_at: rfc3339(Utc::now()),
        finished_at: None,
        faulted: false,
        fault_id: None,
        request_id: request_id.0.clone(),
        client_request_id: call.header("x-ms-client-request-id"),
        correlation_id: call.header("x-ms-correlation-request-id"),
        user_agent: call.header(header::USER_AGENT.as_str()),
    };
    let (seq, fault) = {
        let mut state = mock.lock();
        let fault = state.faults.take(call.method.as_str(), &call.segments);
        let record = CallRecord {
            fault_id: fault.as_ref().map(|f| f.id),
            ..record
        };
        (state.call_started(record), fault)
    };

    let effect = fault.map(|f| f.effect());
    if let Some(Effect::Delay(delay)) = &effect {
        tokio::time::sleep(*delay).await;
    }
    let applies = !matches!(&effect, Some(Effect::Respond { after: false, .. }));
    // Only the key-dependent routes wait for the key (possibly still being generated).
    let key = if applies && route.needs_key() {
        mock.signing_key().await.ok()
    } else {
        None
    };
    let (response, faulted) = match effect {
        None | Some(Effect::Delay(_)) => (process(&mock, &route, &call, key.as_deref()), false),
        Some(Effect::Respond { injected, after }) => {
            if after {
                // A lost response: the state change happens, the client sees the error.
                drop(process(&mock, &route, &call, key.as_deref()));
            }
            (injected_response(&route, &injected), true)
        }
    };
    let status = response.status().as_u16();
    mock.lock()
        .call_finished(seq, status, rfc3339(Utc::now()), faulted);
    tracing::debug!(method = %call.method, path = %call.raw_path, status, faulted, "mock azure call");
    response
}

/// Handles a call against the backend. The state lock is held only inside this synchronous call.
fn process(mock: &MockAzure, route: &Route, call: &Call, key: Option<&SigningKey>) -> Response {
    let now = Utc::now();
    let config = mock.config();
    let mut state = mock.lock();
    let base = call.base();
    match route {
        Route::Token { tenant } => {
            auth::token(&mut state, config, key, tenant, &call.body, &base, now)
        }
        Route::OpenIdConfiguration { tenant } => auth::openid_configuration(config, tenant, &base),
        Route::Keys { tenant } => auth::jwks(&state, config, tenant, &base),
        Route::DataPlaneSql => {
            let host = call.host();
            match auth::check_bearer(&state, config, &call.headers, &host, Audience::Any, now) {
                Ok(()) => dataplane::run(&mut state, &call.body),
                Err(e) => e.into_response(),
            }
        }
        Route::Arm => {
            arm(&mut state, config, call, now).unwrap_or_else(IntoResponse::into_response)
        }
        Route::Admin | Route::Unknown => {
            ArmError::no_route(call.method.as_str(), &call.raw_path).into_response()
        }
    }
}

/// Renders an injected fault: an Entra ID body on the token endpoint, an ARM body elsewhere.
fn injected_response(route: &Route, injected: &Injected) -> Response {
    let status = StatusCode::from_u16(injected.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = injected
        .message
        .clone()
        .unwrap_or_else(|| match injected.retry_after {
            Some(seconds) => {
                format!("The request is being throttled. Please retry after {seconds} seconds.")
            }
            None => format!(
                "The request failed with status {} (injected by mock-azure fault rule {}).",
                status.as_u16(),
                injected.rule_id
            ),
        });
    let entra = matches!(
        route,
        Route::Token { .. } | Route::OpenIdConfiguration { .. } | Route::Keys { .. }
    );
    let mut response = if entra {
        let default = if matches!(status.as_u16(), 429 | 503) {
            "temporarily_unavailable"
        } else {
            "server_error"
        };
        let error = injected.code.as_deref().unwrap_or(default);
        json_response(
            status,
            &auth::aad_error_body(error, &message, &[], Utc::now()),
        )
    } else {
        let code = injected
            .code
            .clone()
            .unwrap_or_else(|| default_code(status).to_owned());
        ArmError::new(status, &code, message).into_response()
    };
    if let Some(seconds) = injected.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

fn default_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "BadRequest",
        401 => "AuthenticationFailed",
        403 => "AuthorizationFailed",
        404 => "NotFound",
        409 => "Conflict",
        412 => "PreconditionFailed",
        429 => "TooManyRequests",
        500 => "InternalServerError",
        502 => "BadGateway",
        503 => "ServiceUnavailable",
        504 => "GatewayTimeout",
        _ => "InjectedFault",
    }
}

fn method_not_allowed(method: &Method) -> ArmError {
    ArmError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("The requested resource does not support http method '{method}'."),
    )
}

fn missing_api_version() -> ArmError {
    ArmError::bad_request(
        "MissingApiVersionParameter",
        "The api-version query parameter (?api-version=) is required for all requests.",
    )
}

fn ok(body: &Value) -> Response {
    json_response(StatusCode::OK, body)
}

/// ARM routes: authentication, then `api-version`, then the path.
fn arm(
    state: &mut Backend,
    config: &Config,
    call: &Call,
    now: DateTime<Utc>,
) -> Result<Response, ArmError> {
    auth::check_bearer(
        state,
        config,
        &call.headers,
        &call.host(),
        Audience::Arm,
        now,
    )?;
    let api_version = call.api_version().ok_or_else(missing_api_version)?;
    let s = &call.segments;
    let lower: Vec<String> = s.iter().map(|x| x.to_ascii_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    if let Some(sub) = s.get(1).filter(|_| lower[0] == "subscriptions") {
        let is_guid = sub.len() == 36 && uuid::Uuid::try_parse(sub).is_ok();
        if !is_guid {
            return Err(ArmError::bad_request(
                "InvalidSubscriptionId",
                format!("The provided subscription identifier '{sub}' is malformed or invalid."),
            ));
        }
    }
    let is_operation = matches!(
        lower.as_slice(),
        ["subscriptions", _, "providers", _, "locations", _, _, _]
    );
    if let Some((scope, rest)) = authorization::split(s).filter(|_| !is_operation) {
        let answer = authorization::handle(
            state,
            &call.method,
            call.query.as_deref(),
            &call.body,
            &scope,
            &rest,
            now,
        )?;
        return match answer {
            Some((status, Some(body))) => Ok(json_response(status, &body)),
            Some((status, None)) => Ok(empty_response(status)),
            None => Err(ArmError::no_route(call.method.as_str(), &call.raw_path)),
        };
    }
    match lower.as_slice() {
        ["subscriptions", _] if call.method == Method::GET => Ok(ok(&json!({
            "id": format!("/subscriptions/{}", s[1]),
            "subscriptionId": s[1],
            "tenantId": config.tenant_id,
            "displayName": "Tether mock subscription",
            "state": "Enabled",
        }))),
        ["subscriptions", _, "resourcegroups"] if call.method == Method::GET => Ok(ok(
            &json!({ "value": resources::list_resource_groups(state, &s[1]) }),
        )),
        ["subscriptions", _, "resourcegroups", _] => resource_group(state, call, &s[1], &s[3]),
        [
            "subscriptions",
            _,
            "resourcegroups",
            _,
            "providers",
            _,
            _,
            ..,
        ] => {
            let path = ProviderPath {
                sub: s[1].clone(),
                rg: s[3].clone(),
                namespace: s[5].clone(),
                rest: s[6..].to_vec(),
            };
            provider(state, config, call, &path, &api_version, now)
        }
        [
            "subscriptions",
            _,
            "providers",
            _,
            "locations",
            _,
            kind @ ("azureasyncoperation" | "operationresults"),
            _,
        ] => operation(state, call, &s[7], *kind == "operationresults"),
        ["subscriptions", _, "providers", _, _] if call.method == Method::GET => Ok(ok(
            &json!({ "value": resources::list_in_subscription(state, &s[1], &s[3], &s[4]) }),
        )),
        _ => Err(ArmError::no_route(call.method.as_str(), &call.raw_path)),
    }
}

fn resource_group(
    state: &mut Backend,
    call: &Call,
    sub: &str,
    rg: &str,
) -> Result<Response, ArmError> {
    match call.method {
        Method::GET => Ok(ok(&resources::get_resource_group(state, sub, rg)?)),
        Method::HEAD => resources::get_resource_group(state, sub, rg)
            .map(|_| empty_response(StatusCode::NO_CONTENT)),
        Method::PUT => {
            let written = resources::put_resource_group(state, sub, rg, &call.object_body()?)?;
            Ok(written_response(&written))
        }
        Method::PATCH => Ok(ok(&resources::patch_resource_group(
            state,
            sub,
            rg,
            &call.object_body()?,
        )?)),
        Method::DELETE => Ok(deleted_response(resources::delete_resource_group(
            state, sub, rg,
        ))),
        _ => Err(method_not_allowed(&call.method)),
    }
}

fn written_response(written: &resources::Written) -> Response {
    let status = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    json_response(status, &written.resource)
}

fn deleted_response(existed: bool) -> Response {
    empty_response(if existed {
        StatusCode::OK
    } else {
        StatusCode::NO_CONTENT
    })
}

/// `.../providers/{namespace}/...`: a resource, a collection, or an action.
fn provider(
    state: &mut Backend,
    config: &Config,
    call: &Call,
    path: &ProviderPath,
    api_version: &str,
    now: DateTime<Utc>,
) -> Result<Response, ArmError> {
    let tenant = &config.tenant_id;
    // `$secret` and `$principals` entries are internal: no ARM route reaches them.
    if path.rest.iter().any(|s| s.starts_with('$')) {
        return Err(ArmError::no_route(call.method.as_str(), &call.raw_path));
    }
    if !path.is_resource() {
        return match call.method {
            Method::GET => Ok(ok(&json!({ "value": resources::list(state, path)? }))),
            Method::POST => action(state, call, path, now),
            _ => Err(method_not_allowed(&call.method)),
        };
    }
    let kind = path.kind();
    if kind == Kind::WebAppSettings {
        let site = path
            .parent()
            .ok_or_else(|| ArmError::no_route(call.method.as_str(), &call.raw_path))?;
        return match call.method {
            Method::GET => Ok(ok(&providers::get_app_settings(state, &site)?)),
            Method::PUT => Ok(ok(&providers::put_app_settings(
                state,
                &site,
                &call.object_body()?,
            )?)),
            _ => Err(method_not_allowed(&call.method)),
        };
    }
    let read = matches!(call.method, Method::GET | Method::HEAD);
    if !read && providers::read_only(kind) {
        return Err(method_not_allowed(&call.method));
    }
    let mode = providers::write_mode(kind);
    let operation = |state: &mut Backend, outcome| {
        let location = operation_location(state, path);
        let op_id = state.start_operation(outcome, now);
        OperationUrls::new(call, path, &location, &op_id, api_version)
    };
    match call.method {
        Method::GET => Ok(ok(&resources::get(state, path)?)),
        Method::HEAD => resources::get(state, path).map(|_| empty_response(StatusCode::NO_CONTENT)),
        Method::PUT => {
            let written = resources::put(state, path, &call.object_body()?, tenant)?;
            let outcome = OperationOutcome::Put { key: path.key() };
            Ok(match mode {
                WriteMode::Sync => written_response(&written),
                WriteMode::Accepted => operation(state, outcome).accepted(),
                WriteMode::AsyncWithBody => {
                    let response = written_response(&written);
                    operation(state, outcome).attach(response, false)
                }
            })
        }
        Method::PATCH => {
            let patched = resources::patch(state, path, &call.object_body()?, tenant)?;
            Ok(match mode {
                WriteMode::AsyncWithBody => {
                    let outcome = OperationOutcome::Put { key: path.key() };
                    operation(state, outcome).accepted()
                }
                WriteMode::Sync | WriteMode::Accepted => ok(&patched),
            })
        }
        Method::DELETE => {
            let location = operation_location(state, path);
            let existed = resources::delete(state, path)?;
            if existed && mode != WriteMode::Sync {
                let op_id = state.start_operation(OperationOutcome::Delete, now);
                Ok(OperationUrls::new(call, path, &location, &op_id, api_version).accepted())
            } else {
                Ok(deleted_response(existed))
            }
        }
        _ => Err(method_not_allowed(&call.method)),
    }
}

/// POST on `{resource}/{action}` (`listKeys`, `listSecrets`, `config/appsettings/list`...).
fn action(
    state: &mut Backend,
    call: &Call,
    path: &ProviderPath,
    now: DateTime<Utc>,
) -> Result<Response, ArmError> {
    let target = ProviderPath {
        rest: path.rest[..path.rest.len() - 1].to_vec(),
        ..path.clone()
    };
    if !target.is_resource() {
        return Err(ArmError::no_route(call.method.as_str(), &call.raw_path));
    }
    match providers::action(state, &target, path.name(), &call.body, now) {
        Some(result) => Ok(ok(&result?)),
        None => Err(ArmError::no_route(call.method.as_str(), &call.raw_path)),
    }
}

/// The location in operation URLs: the resource's own, else its nearest parent's, else
/// `global`.
fn operation_location(state: &Backend, path: &ProviderPath) -> String {
    let mut current = Some(path.clone());
    while let Some(p) = current {
        if let Some(location) = state
            .resources
            .get(&p.key())
            .and_then(|r| r["location"].as_str())
        {
            return location.to_owned();
        }
        current = p.parent();
    }
    "global".to_owned()
}

/// The `Azure-AsyncOperation` and `Location` URLs of an operation whose change is applied.
struct OperationUrls {
    status: String,
    result: String,
}

impl OperationUrls {
    fn new(
        call: &Call,
        path: &ProviderPath,
        location: &str,
        op_id: &str,
        api_version: &str,
    ) -> Self {
        let namespace = providers::canonical_type(path.kind())
            .and_then(|t| t.split('/').next())
            .unwrap_or(&path.namespace)
            .to_owned();
        let base = format!(
            "{}/subscriptions/{}/providers/{namespace}/locations/{location}",
            call.base(),
            path.sub
        );
        let query: String = form_urlencoded::byte_serialize(api_version.as_bytes()).collect();
        Self {
            status: format!("{base}/azureAsyncOperation/{op_id}?api-version={query}"),
            result: format!("{base}/operationResults/{op_id}?api-version={query}"),
        }
    }

    /// `202 Accepted` without a body.
    fn accepted(self) -> Response {
        self.attach(empty_response(StatusCode::ACCEPTED), true)
    }

    /// Adds `Azure-AsyncOperation`, `Retry-After` and (optionally) `Location`.
    fn attach(self, mut response: Response, with_location: bool) -> Response {
        let headers = response.headers_mut();
        let mut values = vec![
            ("azure-asyncoperation", self.status),
            (header::RETRY_AFTER.as_str(), "1".to_owned()),
        ];
        if with_location {
            values.push((header::LOCATION.as_str(), self.result));
        }
        for (name, value) in values {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }
}

/// The status (`azureAsyncOperation`) and result (`operationResults`) URLs of an operation.
fn operation(
    state: &Backend,
    call: &Call,
    op_id: &str,
    result: bool,
) -> Result<Response, ArmError> {
    if call.method != Method::GET {
        return Err(method_not_allowed(&call.method));
    }
    let op = state
        .operations
        .get(&op_id.to_ascii_lowercase())
        .ok_or_else(|| {
            ArmError::not_found(
                "NotFound",
                format!("The operation '{op_id}' was not found."),
            )
        })?;
    if !result {
        return Ok(ok(&json!({
            "name": op_id,
            "status": "Succeeded",
            "startTime": rfc3339(op.started),
            "endTime": rfc3339(op.ended),
        })));
    }
    match &op.outcome {
        OperationOutcome::Delete => Ok(empty_response(StatusCode::NO_CONTENT)),
        OperationOutcome::Put { key } => state.resources.get(key).map(ok).ok_or_else(|| {
            ArmError::not_found(
                "ResourceNotFound",
                "The resource created by this operation no longer exists.",
            )
        }),
    }
}
