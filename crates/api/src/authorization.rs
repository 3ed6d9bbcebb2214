//! `Microsoft.Authorization` at any scope, in ARM's shapes, so stock tools
//! (`azure-mgmt-authorization`, `az role assignment`) manage who may do what:
//!
//! - `PUT|GET|DELETE {scope}/providers/Microsoft.Authorization/roleAssignments/{name}`
//! - `GET {scope}/providers/Microsoft.Authorization/roleAssignments[?$filter=atScope()|principalId eq '…'|assignedTo('…')]`
//! - `GET {scope}/providers/Microsoft.Authorization/roleDefinitions[/{id}][?$filter=roleName eq '…'|type eq '…']`
//!
//! `{scope}` is empty (the root `/`), a subscription, a resource group or any resource id
//! (a linker included). Writes need `Microsoft.Authorization/roleAssignments/write|delete` on
//! the scope (Owner or User Access Administrator there or above); reads need `.../read`.
//! Role definitions are Tether's fixed set and readable by any authenticated caller. Accepted
//! api-versions: [`API_VERSIONS`] (the 2022-04-01 shape is served to all).

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use chrono::SecondsFormat;
use serde_json::{Map, Value, json};
use tether_app::auth::roles::{self, RoleDefinition, actions};
use tether_app::auth::{AssignmentFilter, AssignmentSpec, Principal, Security};
use tether_model::authz::{PrincipalId, PrincipalType, RoleAssignment, RoleAssignmentId, Scope};
use tether_model::error::quoted;
use tether_model::ids::is_canonical_guid;
use tether_model::{Error, ErrorKind};
use uuid::Uuid;

use crate::audit::{Ended, Subject, outcome};
use crate::render::{empty_response, json_response};
use crate::{ApiError, ApiState};

/// The `Microsoft.Authorization` api-versions served (clients' defaults among them:
/// `azure-mgmt-authorization` 4.x uses 2022-04-01).
pub const API_VERSIONS: [&str; 7] = [
    "2015-07-01",
    "2018-01-01-preview",
    "2018-09-01-preview",
    "2020-04-01-preview",
    "2020-08-01-preview",
    "2020-10-01-preview",
    "2022-04-01",
];

/// The largest role assignment body read.
const MAX_BODY: usize = 64 * 1024;
/// Role assignments per list page.
const PAGE: u32 = 500;

const NAMESPACE: &str = "Microsoft.Authorization";

/// What an authorization path addresses.
#[derive(Debug, Clone)]
pub enum AuthzRoute {
    /// `{scope}/providers/Microsoft.Authorization/roleAssignments`
    Assignments(Scope),
    /// `{scope}/providers/Microsoft.Authorization/roleAssignments/{name}`
    Assignment(Scope, String),
    /// `{scope}/providers/Microsoft.Authorization/roleDefinitions`
    Definitions(Scope),
    /// `{scope}/providers/Microsoft.Authorization/roleDefinitions/{id}`
    Definition(Scope, String),
}

impl AuthzRoute {
    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            AuthzRoute::Assignments(_) => "roleAssignments",
            AuthzRoute::Assignment(..) => "roleAssignment",
            AuthzRoute::Definitions(_) => "roleDefinitions",
            AuthzRoute::Definition(..) => "roleDefinition",
        }
    }
}

/// Recognizes `…/providers/Microsoft.Authorization/{roleAssignments|roleDefinitions}[/{x}]`
/// at the end of a (decoded) path; everything before it is the scope. `None` for any other
/// path.
pub(crate) fn route(segments: &[String]) -> Result<Option<AuthzRoute>, Error> {
    let is = |s: &str, k: &str| s.eq_ignore_ascii_case(k);
    let n = segments.len();
    for tail in [1, 2] {
        let Some(at) = n.checked_sub(2 + tail) else {
            continue;
        };
        if !(is(&segments[at], "providers") && is(&segments[at + 1], NAMESPACE)) {
            continue;
        }
        let rest: Vec<&str> = segments[at + 2..].iter().map(String::as_str).collect();
        let known = matches!(rest.as_slice(), [c, ..] if is(c, "roleAssignments") || is(c, "roleDefinitions"));
        if !known {
            continue;
        }
        let scope = if segments[..at].iter().all(String::is_empty) {
            Scope::Root
        } else {
            Scope::parse(&format!("/{}", segments[..at].join("/")))?
        };
        return Ok(Some(match rest.as_slice() {
            [c] if is(c, "roleAssignments") => AuthzRoute::Assignments(scope),
            [c, name] if is(c, "roleAssignments") => {
                AuthzRoute::Assignment(scope, (*name).to_string())
            }
            [_] => AuthzRoute::Definitions(scope),
            [_, id] => AuthzRoute::Definition(scope, (*id).to_string()),
            _ => continue,
        }));
    }
    Ok(None)
}

/// The query of an authorization request.
struct AuthzQuery {
    filter: Option<String>,
    skip_token: Option<String>,
}

impl AuthzQuery {
    fn parse(query: Option<&str>, resource_type: &str) -> Result<Self, Error> {
        let mut version = None;
        let mut filter = None;
        let mut skip_token = None;
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match key.to_ascii_lowercase().as_str() {
                "api-version" => version = Some(value.into_owned()),
                "$filter" => filter = Some(value.into_owned()),
                "$skiptoken" => skip_token = Some(value.into_owned()),
                _ => {}
            }
        }
        match version.as_deref() {
            None | Some("") => Err(Error::invalid(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )),
            Some(v) if API_VERSIONS.contains(&v) => Ok(Self { filter, skip_token }),
            Some(v) => Err(Error::invalid(
                "NoRegisteredProviderFound",
                format!(
                    "No registered resource provider found for API version '{}' and type '{resource_type}'. The supported api-versions are '{}'.",
                    quoted(v),
                    API_VERSIONS.join(", ")
                ),
            )),
        }
    }
}

/// Serves an authorization route (after authentication and the ARM query checks). Every
/// write and every refusal is audited.
pub(crate) async fn handle(
    state: &ApiState,
    parts: &Parts,
    route: AuthzRoute,
    body: Body,
) -> Result<Response, ApiError> {
    let who = state.principal(parts)?.clone();
    let kind = match route {
        AuthzRoute::Assignments(_) | AuthzRoute::Assignment(..) => "roleAssignments",
        _ => "roleDefinitions",
    };
    let query = AuthzQuery::parse(parts.uri.query(), kind)?;
    let (action, scope, target) = match &route {
        AuthzRoute::Assignments(scope) => (actions::ROLE_ASSIGNMENTS_READ, scope.clone(), None),
        AuthzRoute::Assignment(scope, name) => {
            let action = match parts.method {
                Method::PUT => actions::ROLE_ASSIGNMENTS_WRITE,
                Method::DELETE => actions::ROLE_ASSIGNMENTS_DELETE,
                _ => actions::ROLE_ASSIGNMENTS_READ,
            };
            (action, scope.clone(), Some(assignment_path(scope, name)))
        }
        AuthzRoute::Definitions(scope) | AuthzRoute::Definition(scope, _) => {
            (actions::ROLE_DEFINITIONS_READ, scope.clone(), None)
        }
    };
    let result = serve(state, parts, &who, route, query, body).await;
    let write = !matches!(parts.method, Method::GET | Method::HEAD);
    let ended = Ended::of(&result);
    if write || ended.is_refusal() {
        let subject = Subject {
            action,
            scope: scope.as_str(),
            target: target.as_deref(),
            operation: None,
        };
        outcome(state, parts.extensions.get(), &who, subject, ended).await;
    }
    result
}

async fn serve(
    state: &ApiState,
    parts: &Parts,
    who: &Principal,
    route: AuthzRoute,
    query: AuthzQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let security = state.config.security.clone();
    let authorizer = &security.authorizer;
    match (&parts.method, route) {
        (&Method::GET, AuthzRoute::Definitions(scope)) => {
            let wanted = definition_filter(query.filter.as_deref())?;
            let value: Vec<Value> = roles::ROLES
                .iter()
                .filter(|r| wanted(r))
                .map(|r| definition_json(&scope, r))
                .collect();
            Ok(json_response(StatusCode::OK, &json!({ "value": value })))
        }
        (&Method::GET, AuthzRoute::Definition(scope, id)) => {
            let role = Uuid::parse_str(&id)
                .ok()
                .filter(|_| is_canonical_guid(&id))
                .and_then(roles::role)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::NotFound,
                        "RoleDefinitionDoesNotExist",
                        format!(
                            "The specified role definition with ID '{}' does not exist.",
                            quoted(&id)
                        ),
                    )
                })?;
            Ok(json_response(
                StatusCode::OK,
                &definition_json(&scope, role),
            ))
        }
        (&Method::GET, AuthzRoute::Assignments(scope)) => {
            let filter = assignment_filter(query.filter.as_deref())?;
            let after = match query.skip_token.as_deref() {
                None => None,
                Some(token) => Some(
                    Uuid::try_parse(token)
                        .map(RoleAssignmentId::from_uuid)
                        .map_err(|_| {
                            Error::invalid("InvalidParameter", "the $skipToken is not valid")
                                .with_target("$skipToken")
                        })?,
                ),
            };
            let page = authorizer
                .assignments_list(who, &scope, &filter, after, PAGE)
                .await?;
            let value: Vec<Value> = page.iter().map(assignment_json).collect();
            let mut body = json!({ "value": value });
            if let (Some(last), true) = (page.last(), page.len() == PAGE as usize) {
                let base = state.config.base_url.for_request(&parts.headers)?;
                let mut next = form_urlencoded::Serializer::new(String::new());
                for (key, value) in
                    form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
                {
                    if !key.eq_ignore_ascii_case("$skipToken") {
                        next.append_pair(&key, &value);
                    }
                }
                next.append_pair("$skipToken", &last.id.as_uuid().simple().to_string());
                body["nextLink"] = json!(format!("{base}{}?{}", parts.uri.path(), next.finish()));
            }
            Ok(json_response(StatusCode::OK, &body))
        }
        (&Method::GET, AuthzRoute::Assignment(scope, name)) => {
            let Ok(id) = RoleAssignmentId::parse(&name) else {
                authorizer
                    .require(who, actions::ROLE_ASSIGNMENTS_READ, &scope)
                    .await?;
                return Err(assignment_not_found(&name).into());
            };
            let found = authorizer.assignment_get(who, &scope, id).await?;
            Ok(json_response(StatusCode::OK, &assignment_json(&found)))
        }
        (&Method::PUT, AuthzRoute::Assignment(scope, name)) => {
            put(&security, parts, who, &scope, &name, body).await
        }
        (&Method::DELETE, AuthzRoute::Assignment(scope, name)) => {
            let Ok(id) = RoleAssignmentId::parse(&name) else {
                // Never a valid name, so never there: like deleting what is gone.
                authorizer
                    .require(who, actions::ROLE_ASSIGNMENTS_DELETE, &scope)
                    .await?;
                return Ok(empty_response(StatusCode::NO_CONTENT));
            };
            Ok(match authorizer.assignment_delete(who, &scope, id).await? {
                Some(removed) => json_response(StatusCode::OK, &assignment_json(&removed)),
                None => empty_response(StatusCode::NO_CONTENT),
            })
        }
        (method, route) => Err(Error::new(
            ErrorKind::MethodNotAllowed,
            "MethodNotAllowed",
            format!(
                "The requested resource does not support http method '{method}' on '{}'.",
                route.name()
            ),
        )
        .into()),
    }
}

/// A role assignment PUT: 201 when created, 200 when an identical one existed.
async fn put(
    security: &Security,
    parts: &Parts,
    who: &Principal,
    scope: &Scope,
    name: &str,
    body: Body,
) -> Result<Response, ApiError> {
    // As ARM: who may not write here learns nothing about what their body would have done.
    security
        .authorizer
        .require(who, actions::ROLE_ASSIGNMENTS_WRITE, scope)
        .await?;
    let id = RoleAssignmentId::parse(name)?;
    let body = read_json(&parts.headers, body).await?;
    let spec = assignment_spec(body)?;
    let (assignment, created) = security
        .authorizer
        .assignment_put(who, scope, id, spec)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(status, &assignment_json(&assignment)))
}

/// Reads a JSON object body of at most [`MAX_BODY`] bytes.
async fn read_json(headers: &HeaderMap, body: Body) -> Result<Map<String, Value>, Error> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|v| v == "application/json" || v.ends_with("+json"));
    if !json {
        return Err(Error::new(
            ErrorKind::UnsupportedMediaType,
            "UnsupportedMediaType",
            "the request body must be JSON (Content-Type: application/json)",
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        Error::new(
            ErrorKind::PayloadTooLarge,
            "RequestBodyTooLarge",
            format!("the request body is larger than {MAX_BODY} bytes or could not be read"),
        )
    })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::invalid(
            "InvalidRequestContent",
            "the request body must be a JSON object",
        )),
        Err(_) => Err(Error::invalid(
            "InvalidRequestContent",
            "the request body is not valid JSON",
        )),
    }
}

/// The assignment a PUT body asks for. Read-only and envelope fields are ignored; conditions
/// and delegation (ABAC, delegated identities) are not supported and refused when set.
fn assignment_spec(mut body: Map<String, Value>) -> Result<AssignmentSpec, Error> {
    if let Some(unknown) = body
        .keys()
        .find(|k| !["properties", "id", "name", "type"].contains(&k.as_str()))
    {
        return Err(Error::invalid(
            "InvalidRequestContent",
            format!("the property '{}' is not allowed", quoted(unknown)),
        ));
    }
    let Some(Value::Object(properties)) = body.remove("properties") else {
        return Err(Error::invalid(
            "InvalidRequestContent",
            "the role assignment body requires 'properties'",
        )
        .with_target("properties"));
    };
    let text = |key: &str| -> Result<Option<&str>, Error> {
        match properties.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(Error::invalid(
                "InvalidRequestContent",
                format!("'properties.{key}' must be a string"),
            )
            .with_target(format!("properties.{key}"))),
        }
    };
    for key in properties.keys() {
        let known = [
            "roleDefinitionId",
            "principalId",
            "principalType",
            "description",
            "condition",
            "conditionVersion",
            "delegatedManagedIdentityResourceId",
            "canDelegate",
            "scope",
            "createdOn",
            "updatedOn",
            "createdBy",
            "updatedBy",
        ];
        if !known.contains(&key.as_str()) {
            return Err(Error::invalid(
                "InvalidRequestContent",
                format!("the property 'properties.{}' is not allowed", quoted(key)),
            ));
        }
    }
    for unsupported in [
        "condition",
        "conditionVersion",
        "delegatedManagedIdentityResourceId",
    ] {
        if text(unsupported)?.is_some() {
            return Err(Error::invalid(
                "InvalidParameter",
                format!("'properties.{unsupported}' is not supported by this service"),
            )
            .with_target(format!("properties.{unsupported}")));
        }
    }
    if properties
        .get("canDelegate")
        .is_some_and(|v| v != &Value::Null && v != &Value::Bool(false))
    {
        return Err(Error::invalid(
            "InvalidParameter",
            "'properties.canDelegate' is not supported by this service",
        )
        .with_target("properties.canDelegate"));
    }
    let role_id = text("roleDefinitionId")?.ok_or_else(|| {
        Error::invalid(
            "InvalidRoleDefinitionId",
            "The role definition ID is required.",
        )
        .with_target("properties.roleDefinitionId")
    })?;
    let principal = text("principalId")?
        .ok_or_else(|| {
            Error::invalid(
                "InvalidPrincipalId",
                "A valid principal ID must be provided for role assignment.",
            )
            .with_target("properties.principalId")
        })
        .and_then(PrincipalId::parse)?;
    let principal_type = match text("principalType")? {
        None => PrincipalType::ServicePrincipal,
        Some(t) => PrincipalType::parse(t)?,
    };
    Ok(AssignmentSpec {
        role_definition: role_definition_guid(role_id)?,
        principal,
        principal_type,
        description: text("description")?.map(str::to_string),
    })
}

/// The GUID of `[{scope}]/providers/Microsoft.Authorization/roleDefinitions/{guid}`.
fn role_definition_guid(id: &str) -> Result<Uuid, Error> {
    let invalid = || {
        Error::invalid(
            "InvalidRoleDefinitionId",
            format!("The role definition ID '{}' is not valid.", quoted(id)),
        )
        .with_target("properties.roleDefinitionId")
    };
    let marker = "/providers/microsoft.authorization/roledefinitions/";
    let lower = id.to_ascii_lowercase();
    let at = lower.rfind(marker).ok_or_else(invalid)?;
    let (prefix, guid) = (&id[..at], &id[at + marker.len()..]);
    if !prefix.is_empty() && Scope::parse(prefix).is_err() {
        return Err(invalid());
    }
    if !is_canonical_guid(guid) {
        return Err(invalid());
    }
    Uuid::parse_str(guid).map_err(|_| invalid())
}

/// `$filter` of assignment lists: `atScope()`, `principalId eq '{id}'` and
/// `assignedTo('{id}')`, joined by `and`.
fn assignment_filter(filter: Option<&str>) -> Result<AssignmentFilter, Error> {
    let mut out = AssignmentFilter::default();
    let Some(filter) = filter else { return Ok(out) };
    for clause in split_and(filter) {
        let clause = clause.trim();
        let quoted_value = |rest: &str| {
            rest.trim()
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .map(str::to_string)
        };
        if clause.is_empty() {
            continue;
        } else if clause.eq_ignore_ascii_case("atScope()") {
            out.at_scope = true;
        } else if let Some(value) =
            strip_prefix_ci(clause, "principalId eq ").and_then(quoted_value)
        {
            out.principal = Some(PrincipalId::parse(&value)?);
        } else if let Some(value) = strip_prefix_ci(clause, "assignedTo(")
            .and_then(|r| r.trim().strip_suffix(')'))
            .and_then(quoted_value)
        {
            out.principal = Some(PrincipalId::parse(&value)?);
        } else {
            return Err(unsupported_filter(filter));
        }
    }
    Ok(out)
}

/// `$filter` of definition lists: `roleName eq '{name}'` or `type eq '{BuiltInRole|CustomRole}'`.
fn definition_filter(filter: Option<&str>) -> Result<impl Fn(&RoleDefinition) -> bool, Error> {
    let (field, value) = match filter.map(str::trim).filter(|f| !f.is_empty()) {
        None => (None, String::new()),
        Some(f) => {
            let parsed = [("roleName", "roleName eq "), ("type", "type eq ")]
                .into_iter()
                .find_map(|(field, prefix)| {
                    let value = strip_prefix_ci(f, prefix)?
                        .trim()
                        .strip_prefix('\'')?
                        .strip_suffix('\'')?
                        .replace("''", "'");
                    Some((Some(field), value))
                });
            parsed.ok_or_else(|| unsupported_filter(f))?
        }
    };
    Ok(move |r: &RoleDefinition| match field {
        None => true,
        Some("roleName") => r.name.eq_ignore_ascii_case(&value),
        Some(_) => r.role_type.eq_ignore_ascii_case(&value),
    })
}

fn split_and(filter: &str) -> Vec<&str> {
    let lower = filter.to_ascii_lowercase();
    let mut parts = Vec::new();
    let mut start = 0;
    for (at, _) in lower.match_indices(" and ") {
        parts.push(&filter[start..at]);
        start = at + 5;
    }
    parts.push(&filter[start..]);
    parts
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

fn unsupported_filter(filter: &str) -> Error {
    Error::invalid(
        "UnsupportedQuery",
        format!("The filter '{}' is not supported.", quoted(filter)),
    )
    .with_target("$filter")
}

fn assignment_not_found(name: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        "RoleAssignmentNotFound",
        format!("The role assignment '{}' is not found.", quoted(name)),
    )
}

/// `{scope}` as it prefixes `/providers/...` (empty for the root).
fn prefix(scope: &Scope) -> &str {
    match scope {
        Scope::Root => "",
        Scope::Resource(id) => id.as_str(),
    }
}

fn assignment_path(scope: &Scope, name: &str) -> String {
    format!(
        "{}/providers/{NAMESPACE}/roleAssignments/{name}",
        prefix(scope)
    )
}

/// ARM's role assignment body (2022-04-01).
fn assignment_json(a: &RoleAssignment) -> Value {
    let role = match a.scope.subscription() {
        Some(sub) => format!(
            "/subscriptions/{sub}/providers/{NAMESPACE}/roleDefinitions/{}",
            a.role_definition
        ),
        None => format!(
            "/providers/{NAMESPACE}/roleDefinitions/{}",
            a.role_definition
        ),
    };
    let at = a.created_on.to_rfc3339_opts(SecondsFormat::Micros, true);
    let by = a.created_by.as_ref().map(PrincipalId::as_str);
    json!({
        "id": assignment_path(&a.scope, &a.id.to_string()),
        "name": a.id.to_string(),
        "type": "Microsoft.Authorization/roleAssignments",
        "properties": {
            "roleDefinitionId": role,
            "principalId": a.principal.as_str(),
            "principalType": a.principal_type.as_str(),
            "scope": a.scope.as_str(),
            "condition": null,
            "conditionVersion": null,
            "description": a.description,
            "createdOn": at,
            "updatedOn": at,
            "createdBy": by,
            "updatedBy": by,
            "delegatedManagedIdentityResourceId": null,
        }
    })
}

/// ARM's role definition body.
fn definition_json(scope: &Scope, r: &RoleDefinition) -> Value {
    json!({
        "id": format!("{}/providers/{NAMESPACE}/roleDefinitions/{}", prefix(scope), r.id),
        "name": r.id.to_string(),
        "type": "Microsoft.Authorization/roleDefinitions",
        "properties": {
            "roleName": r.name,
            "type": r.role_type,
            "description": r.description,
            "assignableScopes": ["/"],
            "permissions": [{
                "actions": r.actions,
                "notActions": r.not_actions,
                "dataActions": [],
                "notDataActions": [],
            }],
            "createdOn": "2015-02-02T21:55:09.8806423Z",
            "updatedOn": "2024-01-01T00:00:00.0000000Z",
            "createdBy": null,
            "updatedBy": null,
        }
    })
}

#[cfg(test)]
mod tests;
