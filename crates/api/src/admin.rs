//! Operator endpoints (authenticated with the API's bearer token): the sagas that are running,
//! unwinding or stuck, and a way to retry a stuck one now instead of at its next retry time.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;
use tether_app::SagaState;
use tether_model::{Error, ErrorKind};

use crate::render::{empty_response, json_response};
use crate::{ApiError, ApiState};

/// `GET /admin/sagas[?state=running|unwinding|stuck|succeeded|failed|canceled][&limit=N]`:
/// unfinished sagas by default, most recently changed first, at most `limit` (default 500,
/// at most 10000).
pub async fn sagas(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    state.authenticate(&headers)?;
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
/// stuck.
pub async fn retry(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.authenticate(&headers)?;
    let id = id
        .parse()
        .map_err(|_| Error::new(ErrorKind::NotFound, "SagaNotFound", "no such saga"))?;
    if state.app.saga_retry(id).await? {
        Ok(empty_response(StatusCode::ACCEPTED))
    } else {
        Err(Error::conflict("SagaNotStuck", "the saga is not stuck (or does not exist)").into())
    }
}
