//! The unauthenticated admin API under `/admin` (fault rules, recorded calls, state snapshot,
//! reset, token revocation). It is meant for loopback use by tests and operators only, and is
//! never subject to fault injection or call recording.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::json;

use crate::MockAzure;
use crate::error::{ArmError, empty_response, json_response};
use crate::faults::FaultSpec;

/// The `/admin` routes.
pub(crate) fn routes() -> Router<MockAzure> {
    Router::new()
        .route(
            "/admin/faults",
            post(add_fault).get(list_faults).delete(clear_faults),
        )
        .route("/admin/faults/{id}", delete(remove_fault))
        .route("/admin/calls", get(list_calls).delete(clear_calls))
        .route("/admin/state", get(snapshot))
        .route("/admin/reset", post(reset))
        .route("/admin/tokens", delete(revoke_tokens))
}

async fn add_fault(State(mock): State<MockAzure>, body: Bytes) -> Response {
    let spec: FaultSpec = match serde_json::from_slice(&body) {
        Ok(spec) => spec,
        Err(e) => return ArmError::invalid_content(e).into_response(),
    };
    match mock.lock().faults.add(spec) {
        Ok(id) => json_response(StatusCode::CREATED, &json!({ "id": id })),
        Err(e) => ArmError::bad_request("InvalidFaultRule", e.to_string()).into_response(),
    }
}

async fn list_faults(State(mock): State<MockAzure>) -> Response {
    let faults = json!({ "faults": mock.lock().faults.list() });
    json_response(StatusCode::OK, &faults)
}

async fn clear_faults(State(mock): State<MockAzure>) -> Response {
    mock.lock().faults.clear();
    empty_response(StatusCode::NO_CONTENT)
}

async fn remove_fault(State(mock): State<MockAzure>, Path(id): Path<String>) -> Response {
    let removed = id.parse().is_ok_and(|id| mock.lock().faults.remove(id));
    if removed {
        empty_response(StatusCode::NO_CONTENT)
    } else {
        ArmError::not_found("NotFound", format!("Fault rule {id} does not exist.")).into_response()
    }
}

async fn list_calls(State(mock): State<MockAzure>) -> Response {
    let calls = json!({ "calls": mock.lock().calls });
    json_response(StatusCode::OK, &calls)
}

async fn clear_calls(State(mock): State<MockAzure>) -> Response {
    mock.lock().calls.clear();
    empty_response(StatusCode::NO_CONTENT)
}

async fn snapshot(State(mock): State<MockAzure>) -> Response {
    json_response(StatusCode::OK, &json!({ "resources": mock.snapshot() }))
}

async fn reset(State(mock): State<MockAzure>) -> Response {
    mock.reset();
    empty_response(StatusCode::NO_CONTENT)
}

async fn revoke_tokens(State(mock): State<MockAzure>) -> Response {
    mock.lock().revoke_tokens();
    empty_response(StatusCode::NO_CONTENT)
}
