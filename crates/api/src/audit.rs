//! Writing the audit trail from the HTTP layer: the outcome of every handled write and
//! refusal ([`outcome`]), and refusals that happen before any handler — bad tokens and
//! throttling ([`refusal`]) — whose recording is itself rate-limited, so a flood of them cannot
//! turn into a flood of database writes (the excess is counted in
//! `tether_audit_refusals_dropped_total`).

use axum::http::StatusCode;
use axum::response::Response;
use tether_app::auth::{AuditEntry, Principal};
use tether_model::authz::AuditOutcome;
use tether_model::ids::OperationId;
use tether_model::{Error, ErrorKind};

use crate::error::status_for;
use crate::{ApiError, ApiState};

/// The ids of the request being handled (set by the request-context middleware).
#[derive(Debug, Clone)]
pub(crate) struct RequestIds {
    /// `x-ms-request-id` of the response.
    pub request_id: String,
    /// `x-ms-correlation-request-id` (received or minted).
    pub correlation_id: String,
}

fn ids(request: Option<&RequestIds>) -> (Option<String>, Option<String>) {
    match request {
        Some(ids) => (
            Some(ids.correlation_id.clone()),
            Some(ids.request_id.clone()),
        ),
        None => (None, None),
    }
}

/// Whether an error is a refusal (not authenticated, not authorized, throttled) rather than
/// a failure of an authorized request.
fn is_refusal(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Unauthenticated | ErrorKind::Forbidden | ErrorKind::TooManyRequests
    )
}

/// Records a refusal made before any handler ran (`401`, `429`), within the refusal budget.
pub(crate) async fn refusal(
    state: &ApiState,
    request: Option<&RequestIds>,
    who: Option<&Principal>,
    action: &str,
    path: &str,
    error: &Error,
) {
    let security = &state.config.security;
    if state.refusal_budget.check().is_err() {
        metrics::counter!("tether_audit_refusals_dropped_total").increment(1);
        return;
    }
    let (correlation, request) = ids(request);
    let entry = AuditEntry::new(
        who,
        action,
        AuditOutcome::Refused,
        status_for(error.kind()).as_u16(),
    )
    .scope(path)
    .request(correlation, request)
    .error_code(error.code());
    security.audit.record(entry).await;
}

/// What a handled request was about, for its audit record.
pub(crate) struct Subject<'a> {
    /// The action checked.
    pub action: &'a str,
    /// The scope it was checked over.
    pub scope: &'a str,
    /// The other resource the request named.
    pub target: Option<&'a str>,
    /// The operation it started.
    pub operation: Option<OperationId>,
}

/// How a handled request ended, as its audit record needs it (a response body is not
/// `Sync`, so the record is made from this summary).
pub(crate) struct Ended {
    outcome: AuditOutcome,
    status: u16,
    code: Option<String>,
}

impl Ended {
    /// Whether the request was refused (audited even when it was a read).
    pub(crate) fn is_refusal(&self) -> bool {
        self.outcome == AuditOutcome::Refused
    }

    /// Summarizes a handler's result: accepted (2xx), refused (401, 403, 429) or failed.
    pub(crate) fn of(result: &Result<Response, ApiError>) -> Self {
        match result {
            Ok(response) => Self {
                outcome: if response.status().is_success() {
                    AuditOutcome::Accepted
                } else {
                    AuditOutcome::Failed
                },
                status: response.status().as_u16(),
                code: None,
            },
            Err(ApiError(e)) => Self {
                outcome: if is_refusal(e) {
                    AuditOutcome::Refused
                } else {
                    AuditOutcome::Failed
                },
                status: status_for(e.kind()).as_u16(),
                code: Some(e.code().to_string()),
            },
        }
    }
}

/// Records how a handled request ended.
pub(crate) async fn outcome(
    state: &ApiState,
    request: Option<&RequestIds>,
    who: &Principal,
    subject: Subject<'_>,
    ended: Ended,
) {
    let entry = entry(request, who, subject, ended);
    state.config.security.audit.record(entry).await;
}

/// The record of a write about to be accepted with `status`, exactly as [`outcome`] would
/// write it after the response; the store keeps it with the operation instead.
pub(crate) fn accepted(
    request: Option<&RequestIds>,
    who: &Principal,
    subject: Subject<'_>,
    status: StatusCode,
) -> AuditEntry {
    let ended = Ended {
        outcome: AuditOutcome::Accepted,
        status: status.as_u16(),
        code: None,
    };
    entry(request, who, subject, ended)
}

fn entry(
    request: Option<&RequestIds>,
    who: &Principal,
    subject: Subject<'_>,
    ended: Ended,
) -> AuditEntry {
    let (correlation, request) = ids(request);
    let mut entry = AuditEntry::new(Some(who), subject.action, ended.outcome, ended.status)
        .scope(subject.scope)
        .request(correlation, request);
    if let Some(target) = subject.target {
        entry = entry.target(target);
    }
    if let Some(operation) = subject.operation {
        entry = entry.operation(operation);
    }
    if let Some(code) = ended.code {
        entry = entry.error_code(code);
    }
    entry
}
