//! What the ARM handlers call to authorize and audit a request, so that wiring a handler is a
//! couple of lines: [`ApiState::authorize`] before doing anything (with every resource the
//! request names besides the one it addresses), [`ApiState::permissions`] to filter a list,
//! [`ApiState::authorize_or_hide`] where a refusal must look like absence (operation
//! statuses), and [`ApiState::audit`] with the handler's result.

use axum::http::request::Parts;
use axum::response::Response;
use tether_app::auth::Permissions;
use tether_model::Error;
use tether_model::authz::Scope;
use tether_model::ids::{LinkerRef, OperationId, ResourceId};

use crate::audit::{Ended, Subject, outcome};
use crate::{ApiError, ApiState};

/// The scope a linker's actions are checked over: its own id (below its source).
pub(crate) fn linker_scope(at: &LinkerRef) -> Result<Scope, Error> {
    Scope::parse(&at.resource_id())
}

impl ApiState {
    /// `Ok` when the caller may perform `action` over `scope` and write each of `named`
    /// (a linker's target, key vault, identity, configuration store); else `403
    /// AuthorizationFailed` naming what is missing.
    pub(crate) async fn authorize(
        &self,
        parts: &Parts,
        action: &str,
        scope: &Scope,
        named: &[ResourceId],
    ) -> Result<(), Error> {
        let who = self.principal(parts)?;
        self.config
            .security
            .authorizer
            .require_with_named(who, action, scope, named)
            .await
    }

    /// Like [`Self::authorize`], but a refusal is answered with `hidden()` (a `404`), so the
    /// existence of what is addressed is not revealed.
    pub(crate) async fn authorize_or_hide(
        &self,
        parts: &Parts,
        action: &str,
        scope: &Scope,
        hidden: impl FnOnce() -> Error,
    ) -> Result<(), Error> {
        match self.authorize(parts, action, scope, &[]).await {
            Err(e) if e.kind() == tether_model::ErrorKind::Forbidden => Err(hidden()),
            other => other,
        }
    }

    /// The caller's permissions, to show only what it may read in a list.
    pub(crate) async fn permissions(&self, parts: &Parts) -> Result<Permissions, Error> {
        let who = self.principal(parts)?;
        self.config.security.authorizer.permissions(who).await
    }

    /// Records a handled request in the audit trail: writes always, reads only when refused.
    /// (The result is read at once, so the returned future does not hold it: a response body
    /// is not `Sync`.)
    pub(crate) fn audit<'a>(
        &'a self,
        parts: &'a Parts,
        action: &'a str,
        scope: &'a str,
        target: Option<&'a str>,
        operation: Option<OperationId>,
        result: &Result<Response, ApiError>,
    ) -> impl std::future::Future<Output = ()> + Send + 'a {
        let ended = Ended::of(result);
        async move {
            let Ok(who) = self.principal(parts) else {
                return;
            };
            let write = !matches!(
                parts.method,
                axum::http::Method::GET | axum::http::Method::HEAD
            );
            if write || ended.is_refusal() {
                let subject = Subject {
                    action,
                    scope,
                    target,
                    operation,
                };
                outcome(self, parts.extensions.get(), who, subject, ended).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::http::{Method, Request, StatusCode};
    use tether_app::auth::testing::{MemoryKeySource, TestIssuer};
    use tether_app::auth::{
        AuditLog, AuditQuery, AuthSettings, Authenticator, Authorizer, AuthorizerSettings,
        Principal, PrincipalKind, Security, roles,
    };

    use tether_model::ErrorKind;
    use tether_model::authz::{AuditOutcome, PrincipalId};
    use tether_model::ids::LinkerName;
    use tether_store::testing::TestDb;

    use super::*;
    use crate::{ApiConfig, BaseUrl, HttpLimits};

    const SUB: &str = "/subscriptions/11111111-2222-3333-4444-555555555555";
    const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";

    async fn state() -> (ApiState, TestDb) {
        let db = TestDb::sqlite().unwrap();
        let store = tether_store::connect(&db.url, &tether_store::StoreOptions::default())
            .await
            .unwrap();
        let app = tether_app::testing::offline_app(store.clone());
        let security = Arc::new(Security {
            authenticator: Authenticator::new(
                AuthSettings::default(),
                Arc::new(MemoryKeySource::default()),
            ),
            authorizer: Authorizer::new(store.clone(), AuthorizerSettings::default()),
            audit: AuditLog::new(store, Duration::from_secs(3600)),
        });
        let config = ApiConfig {
            base_url: BaseUrl::Fixed("https://tether.example".into()),
            limits: HttpLimits::default(),
            location: "local".into(),
            retry_after: 1,
            metrics: Arc::new(String::new),
            security,
            throttle: None,
            refusal_audit_per_sec: 100,
            region: None,
        };
        let state = ApiState {
            app,
            config,
            throttle: None,
            refusal_budget: governor::RateLimiter::direct(governor::Quota::per_second(
                std::num::NonZeroU32::MIN,
            )),
            db_check: std::sync::Mutex::new(None),
        };
        (state, db)
    }

    fn parts(method: Method, who: Option<&str>) -> Parts {
        let (mut parts, ()) = Request::builder()
            .method(method)
            .uri("/x")
            .body(())
            .unwrap()
            .into_parts();
        if let Some(oid) = who {
            parts.extensions.insert(Principal {
                object_id: PrincipalId::parse(oid).unwrap(),
                tenant_id: "t".into(),
                app_id: None,
                name: None,
                kind: PrincipalKind::User,
                issuer: TestIssuer::new("https://i", "t").issuer,
            });
        }
        parts
    }

    fn linker(rg: &str) -> LinkerRef {
        LinkerRef {
            scope: ResourceId::parse(&format!(
                "{SUB}/resourceGroups/{rg}/providers/Microsoft.Web/sites/web"
            ))
            .unwrap(),
            name: LinkerName::parse("db").unwrap(),
        }
    }

    #[tokio::test]
    async fn handlers_authorize_filter_hide_and_audit_through_the_state() {
        let (state, _db) = state().await;
        let security = state.config.security.clone();
        security
            .authorizer
            .bootstrap_owner(
                &PrincipalId::parse(ALICE).unwrap(),
                &Scope::parse(&format!("{SUB}/resourceGroups/app")).unwrap(),
            )
            .await
            .unwrap();
        let write = roles::actions::LINKERS_WRITE;
        let put = parts(Method::PUT, Some(ALICE));
        let scope = linker_scope(&linker("app")).unwrap();
        let target = ResourceId::parse(&format!(
            "{SUB}/resourceGroups/data/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg/databases/d"
        ))
        .unwrap();
        assert!(state.authorize(&put, write, &scope, &[]).await.is_ok());
        let refused = state
            .authorize(&put, write, &scope, std::slice::from_ref(&target))
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::Forbidden);
        let other = linker_scope(&linker("other")).unwrap();
        let hidden = state
            .authorize_or_hide(&put, write, &other, || {
                Error::new(ErrorKind::NotFound, "OperationNotFound", "gone")
            })
            .await
            .unwrap_err();
        assert_eq!(hidden.code(), "OperationNotFound");
        let permissions = state.permissions(&put).await.unwrap();
        assert!(permissions.allows(write, &scope));
        assert!(!permissions.allows(write, &other));
        // No principal: 401, never a pass.
        let anonymous = parts(Method::PUT, None);
        assert_eq!(
            state
                .authorize(&anonymous, write, &scope, &[])
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::Unauthenticated
        );

        // Audit: an accepted write and a refused one are recorded, an accepted read is not.
        let ok: Result<Response, ApiError> = Ok(crate::render::empty_response(StatusCode::CREATED));
        state
            .audit(
                &put,
                write,
                scope.as_str(),
                Some(target.as_str()),
                None,
                &ok,
            )
            .await;
        let no: Result<Response, ApiError> = Err(ApiError(refused));
        state
            .audit(
                &put,
                write,
                scope.as_str(),
                Some(target.as_str()),
                None,
                &no,
            )
            .await;
        let get = parts(Method::GET, Some(ALICE));
        state
            .audit(
                &get,
                roles::actions::LINKERS_READ,
                scope.as_str(),
                None,
                None,
                &ok,
            )
            .await;
        let page = security
            .audit
            .page(AuditQuery {
                limit: 10,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        let mut outcomes: Vec<&str> = page.records.iter().map(|r| r.outcome.as_str()).collect();
        outcomes.sort();
        assert_eq!(outcomes, vec!["accepted", "refused"]);
        assert!(
            page.records
                .iter()
                .all(|r| r.target.as_deref() == Some(target.as_str())
                    && r.action == write
                    && r.outcome != AuditOutcome::Failed)
        );
    }
}
