//! The unauthenticated admin API under `/admin` (fault rules, recorded calls, state snapshot,
//! reset, applications, token minting and revocation, signing-key rotation). It is meant for loopback use by tests and operators only, and is
//! never subject to fault injection or call recording.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::{ArmError, empty_response, json_response};
use crate::faults::FaultSpec;
use crate::{ApplicationSpec, MintError, MockAzure, RegisterError, TokenSpec};

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
        .route("/admin/tokens", post(mint_token).delete(revoke_tokens))
        .route(
            "/admin/applications",
            post(register_application).get(list_applications),
        )
        .route("/admin/signing-keys/rotate", post(rotate_signing_key))
}

/// Parses a JSON body into `T`, or answers `400 InvalidRequestContent`.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ArmError> {
    serde_json::from_slice(body).map_err(ArmError::invalid_content)
}

/// `http://{Host}` of an admin request: the base URL tokens minted through it name.
fn base(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
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
    mock.lock().directory.revoke(chrono::Utc::now());
    empty_response(StatusCode::NO_CONTENT)
}

/// The body of `POST /admin/applications`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ApplicationBody {
    display_name: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
}

async fn register_application(State(mock): State<MockAzure>, body: Bytes) -> Response {
    let body: ApplicationBody = match parse(&body) {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let spec = ApplicationSpec {
        display_name: body.display_name,
        client_id: body.client_id,
        client_secret: body.client_secret,
    };
    match mock.register_application(spec) {
        Ok(app) => json_response(
            StatusCode::CREATED,
            &json!({
                "clientId": app.client_id,
                "clientSecret": app.client_secret,
                "objectId": app.object_id,
                "tenantId": app.tenant_id,
                "displayName": app.display_name,
            }),
        ),
        Err(e @ RegisterError::Exists(_)) => {
            ArmError::new(StatusCode::CONFLICT, "ApplicationExists", e.to_string()).into_response()
        }
        Err(e) => ArmError::bad_request("InvalidApplication", e.to_string()).into_response(),
    }
}

async fn list_applications(State(mock): State<MockAzure>) -> Response {
    json_response(StatusCode::OK, &json!({ "value": mock.applications() }))
}

/// The body of `POST /admin/tokens`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TokenBody {
    client_id: String,
    #[serde(default)]
    audience: Option<String>,
    #[serde(default)]
    lifetime_secs: Option<i64>,
    #[serde(default)]
    not_before_secs: Option<i64>,
    #[serde(default)]
    extra_claims: Map<String, Value>,
}

async fn mint_token(State(mock): State<MockAzure>, headers: HeaderMap, body: Bytes) -> Response {
    let body: TokenBody = match parse(&body) {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let mut spec = TokenSpec::new(
        body.client_id,
        body.audience
            .unwrap_or_else(|| "https://management.azure.com".to_owned()),
    );
    spec.lifetime_secs = body.lifetime_secs.unwrap_or(spec.lifetime_secs);
    spec.not_before_secs = body.not_before_secs.unwrap_or(0);
    spec.extra_claims = body.extra_claims;
    match mock.mint_token_with(&base(&headers), &spec).await {
        Ok(token) => json_response(StatusCode::OK, &json!({ "access_token": token })),
        Err(e @ MintError::UnknownClient(_)) => {
            ArmError::not_found("ApplicationNotFound", e.to_string()).into_response()
        }
        Err(e @ MintError::Signing) => ArmError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SigningFailed",
            e.to_string(),
        )
        .into_response(),
        Err(e) => ArmError::bad_request("InvalidTokenRequest", e.to_string()).into_response(),
    }
}

/// The body of `POST /admin/signing-keys/rotate`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RotateBody {
    #[serde(default)]
    keep_old: bool,
}

async fn rotate_signing_key(State(mock): State<MockAzure>, body: Bytes) -> Response {
    let body: RotateBody = if body.is_empty() {
        RotateBody { keep_old: false }
    } else {
        match parse(&body) {
            Ok(body) => body,
            Err(e) => return e.into_response(),
        }
    };
    match mock.rotate_signing_key(body.keep_old).await {
        Ok(kid) => json_response(StatusCode::OK, &json!({ "kid": kid })),
        Err(e) => ArmError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "SigningFailed",
            e.to_string(),
        )
        .into_response(),
    }
}
