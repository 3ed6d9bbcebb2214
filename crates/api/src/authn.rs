//! Authentication of every request but the public ones (health, readiness, metrics, OpenAPI
//! documents): the middleware verifies the bearer JWT and hands the handlers a [`Principal`]
//! in the request's extensions, or answers ARM's `401` with a `WWW-Authenticate` challenge.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tether_app::Caller;
use tether_app::auth::{AuthError, Principal, Security};
use tether_model::{Error, ErrorKind};

use crate::{ApiError, ApiState};

/// Middleware: authenticates the request.
pub(crate) async fn middleware(
    State(state): State<Arc<ApiState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let security = state.config.security.clone();
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    match security.authenticator.authenticate(header).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(e) => {
            let error = Error::from(e.clone());
            crate::audit::refusal(
                &state,
                request.extensions().get::<crate::audit::RequestIds>(),
                None,
                "authenticate",
                request.uri().path(),
                &error,
            )
            .await;
            unauthorized(&security, &e)
        }
    }
}

/// ARM's `401` for `e` (or `503` when the issuer's keys are unavailable), with the
/// `WWW-Authenticate` challenge.
pub(crate) fn unauthorized(security: &Security, e: &AuthError) -> Response {
    let mut response = ApiError(Error::from(e.clone())).into_response();
    if response.status() == StatusCode::UNAUTHORIZED {
        let challenge = e.challenge(&security.authenticator.authorization_uri());
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
    }
    response
}

fn not_authenticated() -> Error {
    Error::new(
        ErrorKind::Unauthenticated,
        "AuthenticationFailed",
        "Authentication failed. The 'Authorization' header is missing.",
    )
}

impl ApiState {
    /// The verified principal of a request (the middleware put it there).
    pub(crate) fn principal<'a>(&self, parts: &'a Parts) -> Result<&'a Principal, Error> {
        parts
            .extensions
            .get::<Principal>()
            .ok_or_else(not_authenticated)
    }

    /// Who made a request, for `systemData`.
    pub(crate) fn caller(&self, parts: &Parts) -> Result<Caller, Error> {
        self.principal(parts).map(Principal::caller)
    }

    /// Guards an operator endpoint: the principal needs `action` at `/` (the Tether Operator
    /// role, or Owner/Contributor at the root).
    pub(crate) async fn operator(
        &self,
        principal: Option<&Principal>,
        action: &str,
    ) -> Result<(), Error> {
        let who = principal.ok_or_else(not_authenticated)?;
        self.config
            .security
            .authorizer
            .require_operator(who, action)
            .await
    }
}
