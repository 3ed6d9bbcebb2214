//! Entra ID (AAD) client-credentials token endpoint and bearer-token checks on ARM routes.
//!
//! Error shapes and codes follow Entra ID: an unknown tenant is `400 invalid_request`
//! (AADSTS90002), an unknown client id `400 unauthorized_client` (AADSTS700016) and a wrong or
//! missing secret `401 invalid_client` (AADSTS7000215/7000216). Secrets are never logged.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::Config;
use crate::error::{ArmError, json_response, new_uuid};
use crate::state::{State, TOKEN_LIFETIME_SECS};

/// An Entra ID error: HTTP status, `error`, AADSTS number and description.
struct AadError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    description: String,
}

impl AadError {
    fn missing(parameter: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            code: 900_144,
            description: format!(
                "The request body must contain the following parameter: '{parameter}'."
            ),
        }
    }
}

/// An Entra ID style error body (`error`, `error_description`, ...).
pub(crate) fn aad_error_body(
    error: &str,
    description: &str,
    codes: &[u32],
    now: DateTime<Utc>,
) -> Value {
    let trace_id = new_uuid().to_string();
    let correlation_id = new_uuid().to_string();
    json!({
        "error": error,
        "error_description": description,
        "error_codes": codes,
        "timestamp": now.format("%Y-%m-%d %H:%M:%SZ").to_string(),
        "trace_id": trace_id,
        "correlation_id": correlation_id,
    })
}

/// `POST /{tenant}/oauth2/v2.0/token` with a client-credentials form body.
pub(crate) fn token(
    state: &mut State,
    config: &Config,
    tenant: &str,
    form: &[u8],
    now: DateTime<Utc>,
) -> Response {
    match issue(state, config, tenant, form, now) {
        Ok(access_token) => {
            let body = json!({
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME_SECS,
                "ext_expires_in": TOKEN_LIFETIME_SECS,
                "access_token": access_token,
            });
            let mut response = json_response(StatusCode::OK, &body);
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store, no-cache"),
            );
            response
        }
        Err(e) => {
            let description = format!("AADSTS{}: {}", e.code, e.description);
            json_response(
                e.status,
                &aad_error_body(e.error, &description, &[e.code], now),
            )
        }
    }
}

fn issue(
    state: &mut State,
    config: &Config,
    tenant: &str,
    form: &[u8],
    now: DateTime<Utc>,
) -> Result<String, AadError> {
    if !tenant.eq_ignore_ascii_case(&config.tenant_id) {
        return Err(AadError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            code: 90_002,
            description: format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        });
    }
    let fields: HashMap<String, String> = form_urlencoded::parse(form).into_owned().collect();
    let field = |name: &str| fields.get(name).filter(|v| !v.is_empty());
    let grant_type = field("grant_type").ok_or_else(|| AadError::missing("grant_type"))?;
    if grant_type != "client_credentials" {
        return Err(AadError {
            status: StatusCode::BAD_REQUEST,
            error: "unsupported_grant_type",
            code: 70_003,
            description: format!("The app requested an unsupported grant type '{grant_type}'."),
        });
    }
    let client_id = field("client_id").ok_or_else(|| AadError::missing("client_id"))?;
    field("scope").ok_or_else(|| AadError::missing("scope"))?;
    let client = config
        .clients
        .iter()
        .find(|c| c.client_id.eq_ignore_ascii_case(client_id))
        .ok_or_else(|| AadError {
            status: StatusCode::BAD_REQUEST,
            error: "unauthorized_client",
            code: 700_016,
            description: format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'."
            ),
        })?;
    let secret = field("client_secret").ok_or_else(|| AadError {
        status: StatusCode::UNAUTHORIZED,
        error: "invalid_client",
        code: 7_000_216,
        description: "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.".to_owned(),
    })?;
    if *secret != client.client_secret {
        return Err(AadError {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            code: 7_000_215,
            description: format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        });
    }
    tracing::debug!(client_id = %client.client_id, "mock azure issued a token");
    Ok(state.issue_token(now))
}

/// Requires `Authorization: Bearer <token>` with an issued, unexpired or configured token.
pub(crate) fn check_bearer(
    state: &State,
    config: &Config,
    headers: &HeaderMap,
    host: &str,
    now: DateTime<Utc>,
) -> Result<(), ArmError> {
    let challenge = |description: &str| {
        format!(
            "Bearer authorization_uri=\"http://{host}/{}\", error=\"invalid_token\", error_description=\"{description}\"",
            config.tenant_id
        )
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ArmError::new(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        )
        .with_header(
            header::WWW_AUTHENTICATE,
            challenge("The authentication failed because of missing 'Authorization' header."),
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(token) = token else {
        return Err(ArmError::new(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is provided in an invalid format.",
        )
        .with_header(
            header::WWW_AUTHENTICATE,
            challenge("The 'Authorization' header is provided in an invalid format."),
        ));
    };
    let accepted = config.accepted_tokens.iter().any(|t| t == token);
    if accepted || state.token_is_valid(token, now) {
        return Ok(());
    }
    Err(ArmError::new(
        StatusCode::UNAUTHORIZED,
        "InvalidAuthenticationToken",
        "The access token is invalid or has expired.",
    )
    .with_header(
        header::WWW_AUTHENTICATE,
        challenge("The access token is invalid or has expired."),
    ))
}
