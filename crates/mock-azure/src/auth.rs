//! Entra ID (v2 endpoints): the client-credentials token endpoint issuing RS256 JWTs, the OpenID
//! metadata and JWKS, token minting for tests, and bearer-token checks on ARM routes.
//!
//! Error shapes and codes follow Entra ID: an unknown tenant is `400 invalid_request`
//! (AADSTS90002), an unknown client id `400 unauthorized_client` (AADSTS700016), a wrong or
//! missing secret `401 invalid_client` (AADSTS7000215/7000216), a scope without `/.default`
//! `400 invalid_scope` (AADSTS1002012). ARM answers bad tokens with its own 401 codes
//! (`InvalidAuthenticationToken`, `ExpiredAuthenticationToken`,
//! `InvalidAuthenticationTokenAudience`, `InvalidAuthenticationTokenTenant`). Secrets are never
//! logged.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value, json};

use crate::Config;
use crate::directory::Application;
use crate::error::{ArmError, json_response, new_uuid};
use crate::keys::SigningKey;
use crate::state::State;

/// Lifetime of an issued access token, as Entra ID reports it in `expires_in`.
pub(crate) const TOKEN_LIFETIME_SECS: i64 = 3599;
/// Largest lifetime or not-before offset a minted token may have (ten years).
const MAX_OFFSET_SECS: i64 = 10 * 365 * 24 * 3600;

/// The audiences ARM accepts besides the mock's own base URL.
const ARM_AUDIENCES: [&str; 4] = [
    "https://management.core.windows.net/",
    "https://management.core.windows.net",
    "https://management.azure.com/",
    "https://management.azure.com",
];

/// `{base}/{tenant}/v2.0`: the `iss` of every token and the OpenID `issuer`.
pub(crate) fn issuer(base: &str, tenant: &str) -> String {
    format!("{}/{tenant}/v2.0", base.trim_end_matches('/'))
}

/// What a minted token carries; see `POST /admin/tokens`.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    /// The application the token is for (its object id becomes `oid` and `sub`).
    pub client_id: String,
    /// `aud`.
    pub audience: String,
    /// `exp - iat` in seconds; negative makes a token that is already expired.
    pub lifetime_secs: i64,
    /// `nbf - iat` in seconds; positive makes a token that is not valid yet.
    pub not_before_secs: i64,
    /// Claims added to (or replacing) the standard ones.
    pub extra_claims: Map<String, Value>,
}

impl TokenSpec {
    /// A standard token for `client_id` and `audience` with Entra's default lifetime.
    pub fn new(client_id: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            audience: audience.into(),
            lifetime_secs: TOKEN_LIFETIME_SECS,
            not_before_secs: 0,
            extra_claims: Map::new(),
        }
    }
}

/// Why a token could not be minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// No application has this client id.
    #[error("no application has client id {0}")]
    UnknownClient(String),
    /// The lifetime or not-before offset is out of range (at most ten years either way).
    #[error("the token lifetime or not-before offset is out of range")]
    OutOfRange,
    /// The audience is empty.
    #[error("the audience must not be empty")]
    Audience,
    /// The signing key could not be made or used.
    #[error("the token could not be signed")]
    Signing,
}

/// Signs a token for a registered application and records it for revocation.
pub(crate) fn mint(
    state: &mut State,
    config: &Config,
    key: &SigningKey,
    base: &str,
    spec: &TokenSpec,
    now: DateTime<Utc>,
) -> Result<String, MintError> {
    let application = state
        .directory
        .find(&spec.client_id)
        .cloned()
        .ok_or_else(|| MintError::UnknownClient(spec.client_id.clone()))?;
    if spec.lifetime_secs.abs() > MAX_OFFSET_SECS || spec.not_before_secs.abs() > MAX_OFFSET_SECS {
        return Err(MintError::OutOfRange);
    }
    if spec.audience.trim().is_empty() {
        return Err(MintError::Audience);
    }
    let jti = new_uuid().simple().to_string();
    let claims = claims(config, &application, base, spec, &jti, now);
    let token = key.sign(&claims).map_err(|_| MintError::Signing)?;
    let expires = now + Duration::seconds(spec.lifetime_secs);
    state.directory.track(jti, now, expires);
    Ok(token)
}

/// The claims of an Entra ID v2 app-only access token.
fn claims(
    config: &Config,
    application: &Application,
    base: &str,
    spec: &TokenSpec,
    jti: &str,
    now: DateTime<Utc>,
) -> Value {
    let iat = now.timestamp();
    let mut claims = json!({
        "aud": spec.audience,
        "iss": issuer(base, &config.tenant_id),
        "iat": iat,
        "nbf": iat + spec.not_before_secs,
        "exp": iat + spec.lifetime_secs,
        "azp": application.client_id,
        "azpacr": "1",
        "appid": application.client_id,
        "appidacr": "1",
        "idtyp": "app",
        "oid": application.object_id,
        "sub": application.object_id,
        "tid": config.tenant_id,
        "ver": "2.0",
        "jti": jti,
        "uti": jti,
    });
    if let Value::Object(fields) = &mut claims {
        for (name, value) in &spec.extra_claims {
            fields.insert(name.clone(), value.clone());
        }
    }
    claims
}

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

    fn unknown_tenant(tenant: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            code: 90_002,
            description: format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        }
    }

    fn server_error() -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "server_error",
            code: 50_000,
            description: "There was an error issuing a token.".to_owned(),
        }
    }

    fn into_response(self, now: DateTime<Utc>) -> Response {
        let description = format!("AADSTS{}: {}", self.code, self.description);
        json_response(
            self.status,
            &aad_error_body(self.error, &description, &[self.code], now),
        )
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
///
/// `key` is `None` only if key generation failed, which is answered as a server error.
pub(crate) fn token(
    state: &mut State,
    config: &Config,
    key: Option<&SigningKey>,
    tenant: &str,
    form: &[u8],
    base: &str,
    now: DateTime<Utc>,
) -> Response {
    match issue(state, config, key, tenant, form, base, now) {
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
        Err(e) => e.into_response(now),
    }
}

fn issue(
    state: &mut State,
    config: &Config,
    key: Option<&SigningKey>,
    tenant: &str,
    form: &[u8],
    base: &str,
    now: DateTime<Utc>,
) -> Result<String, AadError> {
    if !tenant.eq_ignore_ascii_case(&config.tenant_id) {
        return Err(AadError::unknown_tenant(tenant));
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
    let scope = field("scope").ok_or_else(|| AadError::missing("scope"))?;
    let audience = audience_of_scope(scope)?;
    let client = state.directory.find(client_id).ok_or_else(|| AadError {
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
    let spec = TokenSpec::new(client.client_id.clone(), audience);
    let key = key.ok_or_else(AadError::server_error)?;
    let token = mint(state, config, key, base, &spec, now).map_err(|_| AadError::server_error())?;
    tracing::debug!(client_id = %spec.client_id, "mock azure issued a token");
    Ok(token)
}

/// The audience of a client-credentials scope: exactly one `{resource}/.default`.
fn audience_of_scope(scope: &str) -> Result<String, AadError> {
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    let invalid = |code, description: String| AadError {
        status: StatusCode::BAD_REQUEST,
        error: "invalid_scope",
        code,
        description,
    };
    match scopes.as_slice() {
        [one] => one
            .strip_suffix("/.default")
            .filter(|resource| !resource.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| invalid(1_002_012, format!(
                "The provided value for scope {one} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ))),
        _ => Err(invalid(
            70_011,
            format!("The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."),
        )),
    }
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`.
pub(crate) fn openid_configuration(config: &Config, tenant: &str, base: &str) -> Response {
    if !tenant.eq_ignore_ascii_case(&config.tenant_id) {
        return tenant_not_found(tenant);
    }
    let base = base.trim_end_matches('/');
    let tenant = &config.tenant_id;
    let v2 = format!("{base}/{tenant}/oauth2/v2.0");
    let body = json!({
        "issuer": issuer(base, tenant),
        "token_endpoint": format!("{v2}/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
        "authorization_endpoint": format!("{v2}/authorize"),
        "device_authorization_endpoint": format!("{v2}/devicecode"),
        "end_session_endpoint": format!("{v2}/logout"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "azp", "appid", "idtyp",
            "oid", "tid", "ver", "jti", "uti"],
        "request_uri_parameter_supported": false,
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "tenant_region_scope": null,
        "cloud_instance_name": "microsoftonline.com",
    });
    json_response(StatusCode::OK, &body)
}

/// `GET /{tenant}/discovery/v2.0/keys`: every published key, current first.
pub(crate) fn jwks(state: &State, config: &Config, tenant: &str, base: &str) -> Response {
    if !tenant.eq_ignore_ascii_case(&config.tenant_id) {
        return tenant_not_found(tenant);
    }
    let issuer = issuer(base, &config.tenant_id);
    let keys: Vec<Value> = state.keys.published().map(|k| k.jwk(&issuer)).collect();
    json_response(StatusCode::OK, &json!({ "keys": keys }))
}

fn tenant_not_found(tenant: &str) -> Response {
    let error = AadError::unknown_tenant(tenant);
    let description = format!("AADSTS{}: {}", error.code, error.description);
    json_response(
        StatusCode::BAD_REQUEST,
        &aad_error_body("invalid_tenant", &description, &[error.code], Utc::now()),
    )
}

/// Which `aud` a route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Audience {
    /// ARM's audiences or the mock's own base URL.
    Arm,
    /// Any audience (the data plane: database tokens have their own).
    Any,
}

/// Requires `Authorization: Bearer <token>`: one of [`Config::accepted_tokens`], or a JWT of
/// this mock (published key, unexpired, valid now, issuer of this tenant, accepted audience,
/// not revoked).
pub(crate) fn check_bearer(
    state: &State,
    config: &Config,
    headers: &HeaderMap,
    host: &str,
    audience: Audience,
    now: DateTime<Utc>,
) -> Result<(), ArmError> {
    let challenge = |description: &str| {
        format!(
            "Bearer authorization_uri=\"http://{host}/{}\", error=\"invalid_token\", error_description=\"{description}\"",
            config.tenant_id
        )
    };
    let unauthorized = |code: &str, message: String| {
        ArmError::new(StatusCode::UNAUTHORIZED, code, message.clone())
            .with_header(header::WWW_AUTHENTICATE, challenge(&message))
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
    if config.accepted_tokens.iter().any(|t| t == token) {
        return Ok(());
    }
    let invalid = || {
        unauthorized(
            "InvalidAuthenticationToken",
            "The access token is invalid.".to_owned(),
        )
    };
    let claims = state.keys.verify(token).ok_or_else(invalid)?;
    let number = |name: &str| claims.get(name).and_then(Value::as_i64);
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let (Some(exp), Some(nbf)) = (number("exp"), number("nbf")) else {
        return Err(invalid());
    };
    let at = |secs: i64| {
        DateTime::from_timestamp(secs, 0)
            .map(|t| t.format("%m/%d/%Y %H:%M:%S").to_string())
            .unwrap_or_default()
    };
    if exp <= now.timestamp() {
        return Err(unauthorized(
            "ExpiredAuthenticationToken",
            format!(
                "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                at(exp),
                at(now.timestamp())
            ),
        ));
    }
    if nbf > now.timestamp() {
        return Err(unauthorized(
            "InvalidAuthenticationToken",
            format!(
                "The access token is not valid before UTC time '{}'.",
                at(nbf)
            ),
        ));
    }
    let issuer = text("iss").unwrap_or_default();
    if !issuer_of_tenant(issuer, &config.tenant_id) {
        return Err(unauthorized(
            "InvalidAuthenticationTokenTenant",
            format!(
                "The access token is from the wrong issuer '{issuer}'. It must match the tenant '{}' associated with this subscription.",
                config.tenant_id
            ),
        ));
    }
    let own = [format!("http://{host}"), format!("http://{host}/")];
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let accepted_audience = audiences
        .iter()
        .any(|aud| ARM_AUDIENCES.contains(aud) || own.iter().any(|o| o == aud));
    if audience == Audience::Arm && !accepted_audience {
        return Err(unauthorized(
            "InvalidAuthenticationTokenAudience",
            format!(
                "The access token has been obtained for wrong audience or resource '{}'. It should exactly match with one of the allowed audiences '{}'.",
                audiences.join(","),
                ARM_AUDIENCES.join("','")
            ),
        ));
    }
    if state
        .directory
        .is_revoked(text("jti").or(text("uti")), number("iat"))
    {
        return Err(unauthorized(
            "InvalidAuthenticationToken",
            "The access token has been revoked.".to_owned(),
        ));
    }
    Ok(())
}

/// Whether `iss` is `{scheme}://{authority}/{tenant}/v2.0` for the configured tenant. Any
/// authority is accepted, so a token minted for `localhost:P` works on `127.0.0.1:P`.
fn issuer_of_tenant(iss: &str, tenant: &str) -> bool {
    let Some(rest) = iss
        .strip_prefix("http://")
        .or_else(|| iss.strip_prefix("https://"))
    else {
        return false;
    };
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        [authority, t, "v2.0"] => !authority.is_empty() && t.eq_ignore_ascii_case(tenant),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_map_to_audiences_like_entra() {
        assert_eq!(
            audience_of_scope("https://management.azure.com/.default")
                .ok()
                .unwrap(),
            "https://management.azure.com"
        );
        assert_eq!(
            audience_of_scope("https://management.core.windows.net//.default")
                .ok()
                .unwrap(),
            "https://management.core.windows.net/"
        );
        assert!(audience_of_scope("https://management.azure.com").is_err());
        assert!(audience_of_scope("/.default").is_err());
        assert!(audience_of_scope("a/.default b/.default").is_err());
    }

    #[test]
    fn issuers_must_name_the_tenant() {
        assert!(issuer_of_tenant("http://127.0.0.1:1/T/v2.0", "t"));
        assert!(issuer_of_tenant("https://login.example/t/v2.0", "t"));
        assert!(!issuer_of_tenant("http://127.0.0.1:1/other/v2.0", "t"));
        assert!(!issuer_of_tenant("http://127.0.0.1:1/t", "t"));
        assert!(!issuer_of_tenant("ftp://x/t/v2.0", "t"));
        assert_eq!(issuer("http://h:1/", "t"), "http://h:1/t/v2.0");
    }
}
