//! What a replica says about its region: writes refused while the region does not lead
//! ([`refuse_writes`]: `503 RegionNotActive` + `Retry-After`, reads served), and readiness
//! (`GET /readyz`: a real heartbeat write, the database's role, the lease, the saga loop).
//!
//! The leadership itself lives in the server (etcd, behind the `regions` feature); this
//! module sees it through [`RegionReport`] and the application's write gate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tether_model::Error;

use crate::render::json_response;
use crate::{ApiError, ApiState};

/// A replica's view of its region's leadership, for readiness.
pub trait RegionReport: Send + Sync + 'static {
    /// The current view.
    fn report(&self) -> RegionStatus;
}

/// Lease states, as `/readyz` spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    /// This replica's region leads, its lease confirmed.
    Leader,
    /// Another region leads, or nobody does.
    Follower,
    /// This replica could not confirm its lease (or has not looked yet): it must not write.
    Fenced,
}

/// One look at the region's leadership.
#[derive(Debug, Clone, Serialize)]
pub struct RegionStatus {
    /// This replica's region.
    pub region: String,
    /// Its pair.
    pub pair: String,
    /// The region's public endpoint, if configured.
    pub public_endpoint: Option<String>,
    /// The lease state.
    pub lease: LeaseState,
    /// The leading region, when known.
    pub leader: Option<String>,
    /// The leader's epoch, when known.
    pub epoch: Option<u64>,
    /// How much longer this replica's last confirmed keep-alive lets it lead (0 once
    /// past; absent if it never led).
    pub confirmed_for_ms: Option<u64>,
}

/// Refuses writes while this replica may not write (its region is a standby or fenced):
/// `503 RegionNotActive` with `Retry-After`, before authentication, so a standby does no
/// work (and writes no audit record) for them. Reads pass.
pub(crate) async fn refuse_writes(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    if changes_state(request.method(), request.uri().path()) && state.app.write_epoch().is_none() {
        metrics::counter!("tether_writes_refused_total", "reason" => "region_not_active")
            .increment(1);
        return ApiError(Error::region_not_active()).into_response();
    }
    next.run(request).await
}

/// Whether a request may change state: every method but GET, HEAD and OPTIONS, except the
/// read-only `listConfigurations` action.
fn changes_state(method: &Method, path: &str) -> bool {
    match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => false,
        Method::POST => !path
            .to_ascii_lowercase()
            .trim_end_matches('/')
            .ends_with("/listconfigurations"),
        _ => true,
    }
}

/// How long a database check is reused: a flood of probes costs at most one heartbeat
/// write per interval. Leadership is read live on every probe.
const DB_CHECK_CACHE: Duration = Duration::from_secs(1);

/// The saga loop is stalled once its last pass is older than this (it passes every adopt
/// interval, 5 s by default; one pass may wait for a query timeout).
const SAGA_LOOP_STALE: Duration = Duration::from_secs(30);

/// The database's answer to a readiness check.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DbCheck {
    /// `primary` (writable) or `standby` (in recovery); absent when it did not answer.
    role: Option<&'static str>,
    /// The heartbeat row was written (attempted on a primary only).
    heartbeat: bool,
    /// Why the check failed, if it did (safe for anyone: no internals).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip)]
    at: Option<Instant>,
}

/// `/readyz?role=active`: 200 only when this replica is active.
#[derive(Debug, Deserialize)]
pub(crate) struct ReadyQuery {
    role: Option<String>,
}

/// Readiness. The body always says why; the status is 200 when the replica can serve its
/// role now:
/// - **active** — its region leads (or it runs without regions), the database is a primary
///   and took the heartbeat write, and the saga loop is not stalled: it serves reads and
///   writes and runs sagas;
/// - **passive** — its region does not lead (standby or fenced) and the database answers:
///   it serves reads and answers writes `503 RegionNotActive`.
///
/// Otherwise 503 (the database does not answer, an active replica cannot write, or its saga
/// loop stalled). `?role=active` (or `passive`) also answers 503 for the other role, for
/// probes and load balancers that want only active replicas.
pub(crate) async fn ready(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ReadyQuery>,
) -> Response {
    let region = state.config.region.as_ref().map(|r| r.report());
    let leads = region
        .as_ref()
        .is_none_or(|r| r.lease == LeaseState::Leader)
        && state.app.write_epoch().is_some();
    let db = db_check(&state, leads).await;
    let loop_age = state.app.executor().last_pass_age();
    let loop_fresh = loop_age.is_none_or(|age| age < SAGA_LOOP_STALE);
    let (role, ready) = if leads {
        let ok = db.role == Some("primary") && db.heartbeat && loop_fresh;
        ("active", ok)
    } else {
        ("passive", db.role.is_some())
    };
    let wanted = query.role.as_deref().is_none_or(|want| want == role);
    let status = if ready && wanted {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "role": role,
        "database": db,
        "epoch": state.app.write_epoch().map(|e| e.get()),
        "region": region,
        "saga_loop_age_ms": loop_age.map(|a| a.as_millis() as u64),
    });
    json_response(status, &body)
}

/// Asks the database its role and, when this replica should be writing, writes the
/// heartbeat row; reused for [`DB_CHECK_CACHE`].
async fn db_check(state: &ApiState, write: bool) -> DbCheck {
    let cached = state
        .db_check
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if let Some(check) = cached
        .filter(|c| c.at.is_some_and(|t| t.elapsed() < DB_CHECK_CACHE) && (c.heartbeat || !write))
    {
        return check;
    }
    let mut check = DbCheck {
        role: None,
        heartbeat: false,
        error: None,
        at: Some(Instant::now()),
    };
    match state.app.database_in_recovery().await {
        Ok(true) => check.role = Some("standby"),
        Ok(false) => check.role = Some("primary"),
        Err(e) => check.error = Some(e.client_message().to_string()),
    }
    if write && check.role == Some("primary") {
        match state.app.heartbeat().await {
            Ok(()) => check.heartbeat = true,
            Err(e) => check.error = Some(e.client_message().to_string()),
        }
    }
    *state
        .db_check
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(check.clone());
    check
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_state_changing_requests_are_writes() {
        let path = "/subscriptions/s/providers/Microsoft.ServiceLinker/linkers/db";
        assert!(!changes_state(&Method::GET, path));
        assert!(!changes_state(&Method::HEAD, path));
        for method in [Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(changes_state(&method, path), "{method}");
        }
        assert!(changes_state(
            &Method::POST,
            &format!("{path}/validateLinker")
        ));
        assert!(!changes_state(
            &Method::POST,
            &format!("{path}/listConfigurations")
        ));
        assert!(changes_state(&Method::POST, "/admin/sagas/x/retry"));
    }
}
