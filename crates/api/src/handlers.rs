//! One handler per ARM operation, reached from [`dispatch`] after authentication, routing and
//! the api-version gate.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;
use tether_app::auth::AuditEntry;
use tether_app::auth::roles::actions;
use tether_app::{Accepted, Caller, NamedResources};
use tether_model::authz::Scope;
use tether_model::ids::{LinkerRef, OperationId, PROVIDER_NAMESPACE, ResourceId};
use tether_model::linker::{ConfigurationInfo, LinkerProperties};
use tether_model::operation::{Operation, OperationKind, OperationState};
use tether_model::{ApiVersion, Error, ErrorKind};

use crate::ApiState;
use crate::audit::{self, Subject};
use crate::catalogue;
use crate::error::ApiError;
use crate::guard::linker_scope;
use crate::poll_hint;
use crate::render::{self, empty_response, json_response};
use crate::routes::{self, Action, Query, Route};

/// ARM's request body limit.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// The fallback handler: every ARM route goes through here.
pub async fn dispatch(State(state): State<Arc<ApiState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    match handle(&state, &parts, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn handle(state: &ApiState, parts: &Parts, body: Body) -> Result<Response, ApiError> {
    let caller = state.caller(parts)?;
    let route = routes::parse(parts.uri.path())?;
    tracing::Span::current().record("route", route.name());
    let query = Query::parse(parts.uri.query())?;
    // Microsoft.Authorization (role assignments and definitions) has its own api-versions.
    if let Route::Authorization(route) = route {
        return crate::authorization::handle(state, parts, route, body).await;
    }
    let version = query.version()?;
    let cx = Cx {
        state,
        version,
        base: state.config.base_url.for_request(&parts.headers)?,
    };
    let method = parts.method.clone();
    match (method, route) {
        (Method::GET, Route::Operations) => Ok(json_response(StatusCode::OK, &render::operations())),
        (Method::GET, Route::ConfigurationNames) => cx.configuration_names(parts, &query),
        (Method::GET, Route::DaprConfigurations) => {
            defined_since_2024(version, "daprConfigurations")?;
            Ok(json_response(StatusCode::OK, &json!({ "value": [] })))
        }
        (Method::GET, Route::Linkers(scope)) => cx.list(&scope, parts, &query).await,
        (Method::GET, Route::Linker(at)) => {
            cx.guarded(parts, actions::LINKERS_READ, &at, async { Ok(cx.get(&at).await?.into()) }).await
        }
        (Method::PUT, Route::Linker(at)) => {
            let body = read_body(parts, body).await?;
            cx.guarded(parts, actions::LINKERS_WRITE, &at, cx.put(&at, body, &caller, parts)).await
        }
        (Method::PATCH, Route::Linker(at)) => {
            let body = read_body(parts, body).await?;
            cx.guarded(parts, actions::LINKERS_WRITE, &at, cx.patch(&at, body, &caller, parts)).await
        }
        (Method::DELETE, Route::Linker(at)) => {
            cx.guarded(parts, actions::LINKERS_DELETE, &at, cx.delete(&at)).await
        }
        (Method::POST, Route::LinkerAction(at, Action::Validate)) => {
            cx.guarded(parts, actions::LINKERS_VALIDATE, &at, cx.validate(&at)).await
        }
        (Method::POST, Route::LinkerAction(at, Action::ListConfigurations)) => {
            let action = actions::LINKERS_LIST_CONFIGURATIONS;
            cx.guarded(parts, action, &at, async { Ok(cx.configurations(&at, None).await?.into()) }).await
        }
        (Method::POST, Route::LinkerAction(at, Action::GenerateConfigurations)) => {
            defined_since_2024(version, "generateConfigurations")?;
            let info = match read_json(parts, body).await? {
                Some(info) => Some(configuration_info(info)?),
                None => None,
            };
            // It reveals what listConfigurations does, for another configurationInfo.
            let action = actions::LINKERS_LIST_CONFIGURATIONS;
            cx.guarded(parts, action, &at, async { Ok(cx.configurations(&at, info).await?.into()) }).await
        }
        (Method::GET, Route::OperationStatus { subscription, id }) => cx.status(&subscription, id, parts).await,
        (Method::GET, Route::OperationResult { subscription, id }) => cx.result(&subscription, id, parts).await,
        (_, Route::Unsupported(what)) => Err(Error::new(
            ErrorKind::NotImplemented,
            "NotImplemented",
            format!("the '{what}' operations of {PROVIDER_NAMESPACE} are not supported by this service yet"),
        )
        .into()),
        (method, route) => Err(Error::new(
            ErrorKind::MethodNotAllowed,
            "MethodNotAllowed",
            format!("the method '{method}' is not allowed on '{}'", route.name()),
        )
        .into()),
    }
}

/// Reads a JSON object body: `application/json` (else `415`), at most [`MAX_BODY`] bytes
/// (else `413`, at once when the declared length says so: nothing more is read), arriving
/// without long pauses (else `408`).
async fn read_body(parts: &Parts, body: Body) -> Result<Value, Error> {
    read_json(parts, body)
        .await?
        .ok_or_else(|| Error::invalid("InvalidRequestContent", "the request body is required"))
}

/// Like [`read_body`], for an optional body: `None` when the request has none.
async fn read_json(parts: &Parts, body: Body) -> Result<Option<Value>, Error> {
    let too_large = || {
        Error::new(
            ErrorKind::PayloadTooLarge,
            "RequestBodyTooLarge",
            "the request body is larger than 4 MB",
        )
    };
    let declared = declared_length(&parts.headers);
    // (A declared length over the limit was refused before routing: `refuse_oversized`.)
    // HTTP/1.1: a request with neither length nor chunked encoding has no body.
    let chunked = parts.headers.contains_key(header::TRANSFER_ENCODING);
    if declared == Some(0) || (declared.is_none() && !chunked) {
        return Ok(None);
    }
    if !is_json(&parts.headers) {
        return Err(Error::new(
            ErrorKind::UnsupportedMediaType,
            "UnsupportedMediaType",
            "the request body must be JSON (Content-Type: application/json)",
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|e| body_error(&e).unwrap_or_else(too_large))?;
    if bytes.is_empty() {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v @ Value::Object(_)) => Ok(Some(v)),
        Ok(_) => Err(Error::invalid(
            "InvalidRequestContent",
            "the request body must be a JSON object",
        )),
        Err(e) => Err(Error::invalid(
            "InvalidRequestContent",
            format!("the request body is not valid JSON: {e}"),
        )),
    }
}

/// The `ConfigurationInfo` body of `generateConfigurations`, within the limits and with the
/// errors of a linker's `properties.configurationInfo`.
fn configuration_info(body: Value) -> Result<ConfigurationInfo, Error> {
    let properties = LinkerProperties::from_json(json!({ "configurationInfo": body }))?;
    Ok(properties.configuration_info.unwrap_or_default())
}

/// Refuses an operation that api-version 2022-05-01 does not define.
fn defined_since_2024(version: ApiVersion, operation: &str) -> Result<(), Error> {
    match version {
        ApiVersion::V2022_05_01 => Err(Error::invalid(
            "InvalidResourceType",
            format!(
                "the resource type '{operation}' could not be found in the namespace '{PROVIDER_NAMESPACE}' for api version '{}'",
                version.as_str()
            ),
        )),
        ApiVersion::V2024_04_01 | ApiVersion::V2024_07_01Preview => Ok(()),
    }
}

/// The body length a request declares (`Content-Length`), if it declares one.
pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// True when the request declares a JSON body (`application/json`, or a `+json` type, with
/// any parameters).
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence
            .get(essence.len().saturating_sub(5)..)
            .is_some_and(|tail| tail.eq_ignore_ascii_case("+json"))
}

/// Why a body could not be read: `None` when it exceeded the size limit, a `408` when it
/// stalled, a `400` when the connection failed under it.
fn body_error(e: &axum::Error) -> Option<Error> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if err.is::<http_body_util::LengthLimitError>() {
            return None;
        }
        if err.is::<tower_http::timeout::TimeoutError>() {
            return Some(Error::new(
                ErrorKind::RequestTimeout,
                "RequestTimeout",
                "the request body was not received in time",
            ));
        }
        cause = err.source();
    }
    Some(Error::invalid(
        "InvalidRequestContent",
        "the request body could not be read",
    ))
}

/// Takes `properties` out of a linker body; the read-only envelope fields are ignored and
/// anything else is rejected.
fn properties_of(mut body: Value, required: bool) -> Result<Value, Error> {
    let map = body.as_object_mut().expect("read_body returns objects");
    if let Some(unknown) = map
        .keys()
        .find(|k| !["properties", "id", "name", "type", "systemData"].contains(&k.as_str()))
    {
        return Err(Error::invalid(
            "InvalidRequestContent",
            format!("the property '{unknown}' is not allowed in a linker body"),
        )
        .with_target(unknown.clone()));
    }
    match map.remove("properties") {
        Some(p @ Value::Object(_)) => Ok(p),
        None | Some(Value::Null) if !required => Ok(json!({})),
        Some(Value::Null) | None => Err(Error::invalid(
            "InvalidRequestContent",
            "the linker body requires 'properties'",
        )
        .with_target("properties")),
        Some(_) => Err(
            Error::invalid("InvalidRequestContent", "'properties' must be an object")
                .with_target("properties"),
        ),
    }
}

/// A URL we built as a header value. Our URLs come from the configured base URL or a trusted
/// `Host` (itself a header value), so this fails only on a bug.
fn url_header(url: &str) -> Result<HeaderValue, Error> {
    HeaderValue::from_str(url)
        .map_err(|e| Error::internal("an operation URL is not a valid header value", e))
}

/// A handled linker request, with what its audit record names.
struct Done {
    response: Response,
    /// The resource the change connects to (a target id or endpoint).
    target: Option<String>,
    /// The operation it started.
    operation: Option<OperationId>,
    /// Its audit record was stored with the operation (`guarded` writes none).
    audited: bool,
}

/// A failed linker request, with the resource it named when that is known (for its audit
/// record: a write refused for its target names it).
struct Failed {
    error: ApiError,
    target: Option<String>,
}

impl From<ApiError> for Failed {
    fn from(error: ApiError) -> Self {
        Failed {
            error,
            target: None,
        }
    }
}

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        ApiError::from(e).into()
    }
}

impl From<Response> for Done {
    fn from(response: Response) -> Self {
        Done {
            response,
            target: None,
            operation: None,
            audited: false,
        }
    }
}

/// The caller's right to use what a linker's spec names besides its source (the target, the
/// secret store, the identity): `action` must cover each of them too.
struct NamedCheck<'a> {
    state: &'a ApiState,
    parts: &'a Parts,
    action: &'static str,
    scope: Scope,
    /// The first resource a check was asked about (the target), for the audit record.
    named: std::sync::Mutex<Option<String>>,
}

impl NamedCheck<'_> {
    /// What a failed write named, for its audit record.
    fn failed(&self, e: Error) -> Failed {
        let target = self
            .named
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        Failed {
            error: e.into(),
            target,
        }
    }
}

#[async_trait::async_trait]
impl NamedResources for NamedCheck<'_> {
    async fn allow(&self, named: &[ResourceId]) -> Result<(), Error> {
        if let Some(first) = named.first() {
            self.named
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get_or_insert_with(|| first.as_str().to_string());
        }
        self.state
            .authorize(self.parts, self.action, &self.scope, named)
            .await
    }
}

/// What a linker connects to, for its audit record.
fn target_of(linker: &tether_model::linker::Linker) -> Option<String> {
    use tether_model::linker::TargetService;
    match linker.properties.target_service.as_ref()? {
        TargetService::AzureResource(r) => r.id.clone(),
        TargetService::ConfluentBootstrapServer(e)
        | TargetService::ConfluentSchemaRegistry(e)
        | TargetService::SelfHostedServer(e) => e.endpoint.clone(),
        _ => None,
    }
}

/// What every handler needs.
struct Cx<'a> {
    state: &'a ApiState,
    version: ApiVersion,
    base: String,
}

impl Cx<'_> {
    /// Runs a linker request: checks that the caller may perform `action` on the linker
    /// before anything is read (so a refusal reveals nothing), runs `handle`, and records the
    /// request in the audit trail.
    async fn guarded(
        &self,
        parts: &Parts,
        action: &'static str,
        at: &LinkerRef,
        handle: impl std::future::Future<Output = Result<Done, Failed>> + Send,
    ) -> Result<Response, ApiError> {
        let done = async {
            self.state
                .authorize(parts, action, &linker_scope(at)?, &[])
                .await?;
            handle.await
        }
        .await;
        let (result, target, operation, audited) = match done {
            Ok(d) => (Ok(d.response), d.target, d.operation, d.audited),
            Err(f) => (Err(f.error), f.target, None, false),
        };
        if !audited {
            let scope = at.resource_id();
            self.state
                .audit(parts, action, &scope, target.as_deref(), operation, &result)
                .await;
        }
        result
    }

    fn operation_path(&self, subscription: &str, kind: &str, id: OperationId) -> String {
        format!(
            "/subscriptions/{subscription}/providers/{PROVIDER_NAMESPACE}/locations/{}/{kind}/{id}",
            self.state.config.location
        )
    }

    fn operation_url(&self, subscription: &str, kind: &str, id: OperationId) -> String {
        format!(
            "{}{}?api-version={}",
            self.base,
            self.operation_path(subscription, kind, id),
            self.version
        )
    }

    /// How long the client should wait before polling `op` again (see [`poll_hint`]).
    fn poll_hint(&self, op: &Operation) -> std::time::Duration {
        let max = std::time::Duration::from_secs(u64::from(self.state.config.retry_after));
        poll_hint::for_operation(op.start_time, chrono::Utc::now(), max)
    }

    /// Adds the polling headers of an accepted operation.
    fn poll_headers(
        &self,
        headers: &mut HeaderMap,
        at: &LinkerRef,
        id: OperationId,
        location: bool,
    ) -> Result<(), Error> {
        let subscription = at.scope.subscription();
        headers.insert(
            "azure-asyncoperation",
            url_header(&self.operation_url(subscription, "operationStatuses", id))?,
        );
        if location {
            headers.insert(
                header::LOCATION,
                url_header(&self.operation_url(subscription, "operationResults", id))?,
            );
        }
        // The SDKs poll once at once after this answer; `Retry-After` stays for the others.
        poll_hint::insert(headers, poll_hint::FIRST, true);
        Ok(())
    }

    /// The answer to an accepted PUT or PATCH: the linker in its non-terminal state, with
    /// the operation's polling headers.
    fn accepted(&self, status: StatusCode, accepted: &Accepted) -> Result<Response, Error> {
        let mut response = json_response(status, &render::linker(&accepted.linker, self.version));
        self.poll_headers(
            response.headers_mut(),
            &accepted.linker.at,
            accepted.operation,
            false,
        )?;
        Ok(response)
    }

    async fn get(&self, at: &LinkerRef) -> Result<Response, ApiError> {
        let linker = self.state.app.linker_get(at).await?;
        Ok(json_response(
            StatusCode::OK,
            &render::linker(&linker, self.version),
        ))
    }

    fn configuration_names(&self, parts: &Parts, query: &Query) -> Result<Response, ApiError> {
        defined_since_2024(self.version, "configurationNames")?;
        let filter = catalogue::Filter::parse(query.filter.as_deref())?;
        let catalog = tether_model::catalog::catalog()?;
        let (value, next) =
            catalogue::configuration_names(catalog, &filter, query.skip_token.as_deref())?;
        let mut body = json!({ "value": value });
        if let Some(token) = next {
            let filter = query.filter.as_deref().map(|f| ("$filter", f.to_string()));
            body["nextLink"] = json!(self.next_link(parts, filter, &token));
        }
        Ok(json_response(StatusCode::OK, &body))
    }

    /// The `nextLink` of a page of this request's collection: the api-version, the query
    /// parameter that shapes the pages (if any) and `$skipToken`.
    fn next_link(&self, parts: &Parts, shaping: Option<(&str, String)>, token: &str) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("api-version", self.version.as_str());
        if let Some((name, value)) = shaping {
            query.append_pair(name, &value);
        }
        query.append_pair("$skipToken", token);
        format!("{}{}?{}", self.base, parts.uri.path(), query.finish())
    }

    async fn list(
        &self,
        scope: &tether_model::ids::ResourceId,
        parts: &Parts,
        query: &Query,
    ) -> Result<Response, ApiError> {
        let app = &self.state.app;
        let permissions = self.state.permissions(parts).await?;
        let mut page = app
            .linkers_list(scope, query.skip_token.as_deref(), query.top)
            .await?;
        // Only what the caller may read (the next link still continues after the page).
        page.linkers.retain(|l| {
            linker_scope(&l.at).is_ok_and(|s| permissions.allows(actions::LINKERS_READ, &s))
        });
        // A page ends early rather than grow past the byte cap (but never empty): the next
        // link then continues after the last linker it holds.
        let cap = self.state.config.limits.page_bytes;
        let mut size = 0;
        let mut value: Vec<Value> = Vec::with_capacity(page.linkers.len());
        let mut next = page.next;
        for linker in &page.linkers {
            let rendered = render::linker(linker, self.version);
            size += serde_json::to_vec(&rendered).map_or(0, |b| b.len());
            if size > cap && !value.is_empty() {
                let last = &page.linkers[value.len() - 1];
                next = Some(app.page_token(scope, last));
                break;
            }
            value.push(rendered);
        }
        let mut body = json!({ "value": value });
        if let Some(token) = next {
            let top = query.top.map(|t| ("$top", t.to_string()));
            body["nextLink"] = json!(self.next_link(parts, top, &token));
        }
        Ok(json_response(StatusCode::OK, &body))
    }

    /// The check of what a write's spec names, over the linker's scope.
    fn named_check<'a>(
        &'a self,
        parts: &'a Parts,
        at: &LinkerRef,
    ) -> Result<NamedCheck<'a>, Error> {
        Ok(NamedCheck {
            state: self.state,
            parts,
            action: actions::LINKERS_WRITE,
            scope: linker_scope(at)?,
            named: std::sync::Mutex::new(None),
        })
    }

    /// The answer to an accepted write, for its audit record too.
    fn written(&self, status: StatusCode, accepted: &Accepted) -> Result<Done, Error> {
        Ok(Done {
            response: self.accepted(status, accepted)?,
            target: target_of(&accepted.linker),
            operation: Some(accepted.operation),
            audited: accepted.audited,
        })
    }

    /// The audit record [`Cx::guarded`] would write for a write accepted with `status`, for the
    /// store to keep with the operation instead (`None` without a principal, as there).
    fn audit_accepted(
        &self,
        parts: &Parts,
        at: &LinkerRef,
        accepted: &Accepted,
        status: StatusCode,
    ) -> Option<AuditEntry> {
        let who = self.state.principal(parts).ok()?;
        let target = target_of(&accepted.linker);
        let subject = Subject {
            action: actions::LINKERS_WRITE,
            scope: &at.resource_id(),
            target: target.as_deref(),
            operation: Some(accepted.operation),
        };
        Some(audit::accepted(
            parts.extensions.get(),
            who,
            subject,
            status,
        ))
    }

    async fn put(
        &self,
        at: &LinkerRef,
        body: Value,
        caller: &Caller,
        parts: &Parts,
    ) -> Result<Done, Failed> {
        let properties = properties_of(body, true)?;
        self.version.check_request(&properties)?;
        let properties = LinkerProperties::from_json(properties)?;
        let named = self.named_check(parts, at)?;
        let status = |accepted: &Accepted| {
            if accepted.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            }
        };
        let audit =
            |accepted: &Accepted| self.audit_accepted(parts, at, accepted, status(accepted));
        let accepted = self
            .state
            .app
            .linker_put(at.clone(), properties, caller, &named, Some(&audit))
            .await
            .map_err(|e| named.failed(e))?;
        Ok(self.written(status(&accepted), &accepted)?)
    }

    async fn patch(
        &self,
        at: &LinkerRef,
        body: Value,
        caller: &Caller,
        parts: &Parts,
    ) -> Result<Done, Failed> {
        let patch = properties_of(body, false)?;
        self.version.check_request(&patch)?;
        let named = self.named_check(parts, at)?;
        // Linker_Update declares 200 and 201 in every version; 201 is its async answer.
        let status = StatusCode::CREATED;
        let audit = |accepted: &Accepted| self.audit_accepted(parts, at, accepted, status);
        let accepted = self
            .state
            .app
            .linker_patch(at.clone(), &patch, caller, &named, Some(&audit))
            .await
            .map_err(|e| named.failed(e))?;
        Ok(self.written(status, &accepted)?)
    }

    async fn delete(&self, at: &LinkerRef) -> Result<Done, Failed> {
        let Some(operation) = self.state.app.linker_delete(at.clone()).await? else {
            return Ok(empty_response(StatusCode::NO_CONTENT).into());
        };
        Ok(self.started(at, operation)?)
    }

    async fn validate(&self, at: &LinkerRef) -> Result<Done, Failed> {
        let operation = self.state.app.linker_validate(at).await?;
        Ok(self.started(at, operation)?)
    }

    /// `202` with the polling headers of an operation an action started.
    fn started(&self, at: &LinkerRef, operation: OperationId) -> Result<Done, ApiError> {
        let mut response = empty_response(StatusCode::ACCEPTED);
        self.poll_headers(response.headers_mut(), at, operation, true)?;
        Ok(Done {
            response,
            target: None,
            operation: Some(operation),
            audited: false,
        })
    }

    async fn configurations(
        &self,
        at: &LinkerRef,
        info: Option<ConfigurationInfo>,
    ) -> Result<Response, ApiError> {
        let entries = self.state.app.linker_configurations(at, info).await?;
        let configurations: Vec<Value> = entries
            .iter()
            .map(|e| json!({"name": e.name, "value": e.value}))
            .collect();
        Ok(json_response(
            StatusCode::OK,
            &json!({ "configurations": configurations }),
        ))
    }

    /// An operation of this subscription that the caller may read; unknown, foreign and
    /// forbidden ids are the same 404.
    async fn operation(
        &self,
        subscription: &str,
        id: Option<OperationId>,
        parts: &Parts,
    ) -> Result<Operation, ApiError> {
        let not_found = || {
            Error::new(
                ErrorKind::NotFound,
                "OperationNotFound",
                "the operation was not found",
            )
        };
        let found = match id {
            Some(id) => self.state.app.operation_get(id).await?,
            None => None,
        };
        let op = found
            .filter(|op| op.subscription == subscription)
            .ok_or_else(not_found)?;
        let scope = Scope::parse(&op.resource_id).map_err(|_| not_found())?;
        self.state
            .authorize_or_hide(parts, actions::OPERATION_STATUSES_READ, &scope, not_found)
            .await?;
        Ok(op)
    }

    async fn status(
        &self,
        subscription: &str,
        id: Option<OperationId>,
        parts: &Parts,
    ) -> Result<Response, ApiError> {
        let op = self.operation(subscription, id, parts).await?;
        let path = self.operation_path(subscription, "operationStatuses", op.id);
        let mut response = json_response(StatusCode::OK, &render::operation_status(&op, &path));
        if !op.status.is_terminal() {
            poll_hint::insert(response.headers_mut(), self.poll_hint(&op), false);
        }
        Ok(response)
    }

    /// The `Location` protocol: 202 while running, then what the synchronous call would have
    /// answered.
    async fn result(
        &self,
        subscription: &str,
        id: Option<OperationId>,
        parts: &Parts,
    ) -> Result<Response, ApiError> {
        let op = self.operation(subscription, id, parts).await?;
        match op.status {
            OperationState::InProgress => {
                let mut response = empty_response(StatusCode::ACCEPTED);
                let headers = response.headers_mut();
                let url = self.operation_url(subscription, "operationResults", op.id);
                headers.insert(header::LOCATION, url_header(&url)?);
                poll_hint::insert(headers, self.poll_hint(&op), false);
                Ok(response)
            }
            OperationState::Succeeded => match op.kind {
                OperationKind::Delete => Ok(empty_response(StatusCode::NO_CONTENT)),
                OperationKind::Validate => Ok(json_response(
                    StatusCode::OK,
                    &render::validate_operation_result(&op),
                )),
                OperationKind::Create | OperationKind::Update => {
                    let Route::Linker(at) = routes::parse(&op.resource_id)? else {
                        let why = "an operation's resource id is not a linker id";
                        return Err(
                            Error::new(ErrorKind::Internal, "InternalServerError", why).into()
                        );
                    };
                    self.get(&at).await
                }
            },
            OperationState::Failed | OperationState::Canceled => {
                let status = if op.status == OperationState::Failed {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::CONFLICT
                };
                let error = op.error.unwrap_or_else(|| {
                    tether_model::ErrorDetail::new("OperationFailed", "the operation failed")
                });
                Ok(json_response(status, &json!({ "error": error })))
            }
        }
    }
}
