//! Operator endpoints: the sagas that are running, unwinding or stuck, a way to retry a stuck
//! one now instead of at its next retry time, and the audit trail. They need an operator
//! action at the root scope `/` (the Tether Operator role, or Owner or Contributor at `/`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde_json::json;
use tether_app::SagaState;
use tether_app::auth::roles::actions;
use tether_app::auth::{AuditQuery, Principal};
use tether_model::authz::{AuditId, AuditOutcome, PrincipalId, Scope};
use tether_model::{Error, ErrorKind};
use uuid::Uuid;

use crate::audit::{Ended, RequestIds, Subject, outcome};
use crate::render::{empty_response, json_response};
use crate::{ApiError, ApiState};

/// `GET /admin/sagas[?state=running|unwinding|stuck|succeeded|failed|canceled][&limit=N]`:
/// unfinished sagas by default, most recently changed first, at most `limit` (default 500,
/// at most 10000).
pub async fn sagas(
    State(state): State<Arc<ApiState>>,
    principal: Option<Extension<Principal>>,
    ids: Option<Extension<RequestIds>>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let action = actions::OPERATOR_SAGAS_LIST;
    operator(&state, principal.as_deref(), ids.as_deref(), action).await?;
    let filter = match query.get("state") {
        None => None,
        Some(s) => Some(SagaState::parse(s).ok_or_else(|| {
            Error::invalid("InvalidParameter", format!("unknown saga state '{s}'"))
                .with_target("state")
        })?),
    };
    let limit = match query.get("limit") {
        None => 500,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=10_000).contains(l))
            .ok_or_else(|| {
                Error::invalid("InvalidParameter", "limit must be between 1 and 10000")
                    .with_target("limit")
            })?,
    };
    let sagas = state.app.sagas(filter, limit).await?;
    Ok(json_response(StatusCode::OK, &json!({ "value": sagas })))
}

/// `POST /admin/sagas/{id}/retry`: a stuck saga is retried at once (202); 409 if it is not
/// stuck. Audited.
pub async fn retry(
    State(state): State<Arc<ApiState>>,
    principal: Option<Extension<Principal>>,
    ids: Option<Extension<RequestIds>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let action = actions::OPERATOR_SAGAS_RETRY;
    operator(&state, principal.as_deref(), ids.as_deref(), action).await?;
    let result = async {
        let id = id
            .parse()
            .map_err(|_| Error::new(ErrorKind::NotFound, "SagaNotFound", "no such saga"))?;
        if state.app.saga_retry(id).await? {
            Ok(empty_response(StatusCode::ACCEPTED))
        } else {
            Err(Error::conflict("SagaNotStuck", "the saga is not stuck (or does not exist)").into())
        }
    }
    .await;
    if let Some(who) = principal.as_deref() {
        let scope = format!("/admin/sagas/{id}");
        let subject = Subject {
            action,
            scope: &scope,
            target: None,
            operation: None,
        };
        outcome(&state, ids.as_deref(), who, subject, Ended::of(&result)).await;
    }
    result
}

/// `GET /admin/audit[?principal=ID][&scope=ARM-SCOPE][&outcome=accepted|refused|failed]
/// [&since=RFC3339][&until=RFC3339][&limit=N][&continuationToken=T]`: audit records, newest
/// first, at most `limit` (default 100, at most 1000) per page; `continuationToken` (and
/// `nextLink`, which carries it with the same filters) continues after the page.
pub async fn audit(
    State(state): State<Arc<ApiState>>,
    principal: Option<Extension<Principal>>,
    ids: Option<Extension<RequestIds>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let action = actions::OPERATOR_AUDIT_LIST;
    operator(&state, principal.as_deref(), ids.as_deref(), action).await?;
    let security = &state.config.security;
    let param = |name: &str| query.get(name).map(String::as_str);
    let invalid = |name: &str, why: &str| {
        ApiError(Error::invalid("InvalidParameter", format!("{name} {why}")).with_target(name))
    };
    let time = |name: &str| -> Result<Option<DateTime<Utc>>, ApiError> {
        param(name)
            .map(|t| {
                DateTime::parse_from_rfc3339(t)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| invalid(name, "must be an RFC 3339 time"))
            })
            .transpose()
    };
    let limit = match param("limit") {
        None => 100,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| invalid("limit", "must be between 1 and 1000"))?,
    };
    let audit_query = AuditQuery {
        principal: param("principal")
            .map(PrincipalId::parse)
            .transpose()
            .map_err(|_| invalid("principal", "is not a valid principal id"))?,
        scope: param("scope")
            .map(Scope::parse)
            .transpose()
            .map_err(|_| invalid("scope", "is not a valid scope"))?,
        outcome: param("outcome")
            .map(|o| {
                AuditOutcome::parse(o)
                    .ok_or_else(|| invalid("outcome", "must be accepted, refused or failed"))
            })
            .transpose()?,
        since: time("since")?,
        until: time("until")?,
        before: param("continuationToken")
            .map(|t| decode_token(t).ok_or_else(|| invalid("continuationToken", "is not valid")))
            .transpose()?,
        limit,
    };
    let page = security.audit.page(audit_query).await?;
    let mut body = json!({ "value": page.records });
    if let Some(next) = page.next {
        let token = encode_token(next);
        let base = state.config.base_url.for_request(&headers)?;
        let mut link = form_urlencoded::Serializer::new(String::new());
        let mut keys: Vec<&String> = query.keys().collect();
        keys.sort();
        for key in keys {
            if key != "continuationToken" {
                link.append_pair(key, &query[key]);
            }
        }
        link.append_pair("continuationToken", &token);
        body["continuationToken"] = json!(token);
        body["nextLink"] = json!(format!("{base}/admin/audit?{}", link.finish()));
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// Checks the operator action; a refusal of an authenticated principal is audited.
async fn operator(
    state: &ApiState,
    principal: Option<&Principal>,
    ids: Option<&RequestIds>,
    action: &str,
) -> Result<(), ApiError> {
    let checked = state.operator(principal, action).await;
    if let (Err(e), Some(who)) = (&checked, principal) {
        let refused: Result<Response, ApiError> = Err(ApiError(Error::new(
            e.kind(),
            e.code().to_string(),
            e.client_message().to_string(),
        )));
        let subject = Subject {
            action,
            scope: "/",
            target: None,
            operation: None,
        };
        outcome(state, ids, who, subject, Ended::of(&refused)).await;
    }
    Ok(checked?)
}

/// The opaque continuation token of a `(time, id)` position.
fn encode_token((time, id): (DateTime<Utc>, AuditId)) -> String {
    let raw = format!("{}.{}", time.timestamp_micros(), id.as_uuid().simple());
    URL_SAFE_NO_PAD.encode(raw)
}

fn decode_token(token: &str) -> Option<(DateTime<Utc>, AuditId)> {
    if token.len() > 128 {
        return None;
    }
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    let (micros, id) = raw.split_once('.')?;
    let time = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((time, AuditId::from_uuid(Uuid::try_parse(id).ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_tokens_round_trip_and_refuse_junk() {
        let at = DateTime::from_timestamp_micros(1_800_000_000_123_456).unwrap();
        let id = AuditId::new();
        let token = encode_token((at, id));
        assert_eq!(decode_token(&token), Some((at, id)));
        for junk in [
            "",
            "x",
            "!!!",
            &"A".repeat(500),
            &URL_SAFE_NO_PAD.encode("1.nope"),
        ] {
            assert_eq!(decode_token(junk), None, "{junk}");
        }
    }
}
