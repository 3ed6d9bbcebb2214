//! The audit trail: one record per accepted write and per refusal (who, what, where, which
//! other resource, which operation, correlation and request ids, how it ended), paged for
//! operators, purged after the retention period.
//!
//! An accepted PUT or PATCH stores its record in the commit that accepts it (see
//! [`crate::AuditAccepted`]). Every other record is written once the request is answered, and
//! recording it never fails the request: a store failure is logged and counted
//! (`tether_audit_write_failures_total`) instead.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tether_model::Error;
use tether_model::authz::{AuditId, AuditOutcome, AuditRecord};
use tether_model::ids::OperationId;
use tether_store::{AuditQuery, Store};

use super::Principal;

/// The largest audit page served.
pub const MAX_AUDIT_PAGE: u32 = 1000;
/// Rows removed per purge statement; a purge loops over such batches.
const PURGE_BATCH: u32 = 5000;
/// Batches per purge pass (the rest waits for the next pass).
const PURGE_BATCHES: usize = 100;

/// What to record about one decision (see [`AuditRecord`] for the fields).
#[derive(Debug, Clone)]
pub struct AuditEntry {
    record: AuditRecord,
}

impl AuditEntry {
    /// A decision about `action` asked by `who` (`None`: not authenticated), answered with
    /// `status`.
    pub fn new(
        who: Option<&Principal>,
        action: impl Into<String>,
        outcome: AuditOutcome,
        status: u16,
    ) -> Self {
        Self {
            record: AuditRecord {
                id: AuditId::new(),
                time: Utc::now(),
                principal_id: who.map(|p| p.object_id.clone()),
                tenant_id: who.map(|p| p.tenant_id.clone()),
                app_id: who.and_then(|p| p.app_id.clone()),
                action: action.into(),
                scope: None,
                target: None,
                operation_id: None,
                correlation_id: None,
                request_id: None,
                outcome,
                status,
                error_code: None,
            },
        }
    }

    /// The scope the action was over.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.record.scope = Some(scope.into());
        self
    }

    /// The other resource the request named (a linker's target).
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.record.target = Some(target.into());
        self
    }

    /// The operation started for the request.
    pub fn operation(mut self, id: OperationId) -> Self {
        self.record.operation_id = Some(id);
        self
    }

    /// The request's correlation id (sent on every backend call made for it) and request id.
    pub fn request(mut self, correlation_id: Option<String>, request_id: Option<String>) -> Self {
        self.record.correlation_id = correlation_id;
        self.record.request_id = request_id;
        self
    }

    /// The ARM error code answered.
    pub fn error_code(mut self, code: impl Into<String>) -> Self {
        self.record.error_code = Some(code.into());
        self
    }

    /// The record as it will be stored.
    pub fn record(&self) -> &AuditRecord {
        &self.record
    }

    /// The record to store: every free-text field cut to its bound.
    pub fn into_record(self) -> AuditRecord {
        self.record.clipped()
    }
}

/// Counts a record stored (by [`AuditLog::record`], or with the operation it accepted).
pub(crate) fn count_recorded(record: &AuditRecord) {
    metrics::counter!("tether_audit_records_total", "outcome" => record.outcome.as_str())
        .increment(1);
}

/// One page of audit records and where the next one starts.
#[derive(Debug, Clone)]
pub struct AuditPage {
    /// Newest first.
    pub records: Vec<AuditRecord>,
    /// The `(time, id)` to continue strictly after, when the page was full.
    pub next: Option<(DateTime<Utc>, AuditId)>,
}

/// Writes and reads the audit trail.
pub struct AuditLog {
    store: Arc<dyn Store>,
    retention: Duration,
}

impl AuditLog {
    /// An audit log keeping records for `retention`.
    pub fn new(store: Arc<dyn Store>, retention: Duration) -> Self {
        Self { store, retention }
    }

    /// Appends a record; failures are logged and counted, never returned.
    pub async fn record(&self, entry: AuditEntry) {
        let record = entry.into_record();
        if let Err(e) = self.store.audit_append(&record).await {
            metrics::counter!("tether_audit_write_failures_total").increment(1);
            tracing::error!(
                error = %tether_model::ErrorChain(&e),
                action = %record.action,
                outcome = record.outcome.as_str(),
                "could not write an audit record"
            );
        } else {
            count_recorded(&record);
        }
    }

    /// A page of records matching `query` (its limit capped at [`MAX_AUDIT_PAGE`]).
    pub async fn page(&self, mut query: AuditQuery) -> Result<AuditPage, Error> {
        query.limit = query.limit.clamp(1, MAX_AUDIT_PAGE);
        let records = self.store.audit_page(&query).await?;
        let next = match records.last() {
            Some(last) if records.len() == query.limit as usize => Some((last.time, last.id)),
            _ => None,
        };
        Ok(AuditPage { records, next })
    }

    /// Removes records older than the retention period, in bounded batches; returns how many.
    pub async fn purge(&self) -> Result<u64, Error> {
        let retention = chrono::Duration::from_std(self.retention)
            .unwrap_or_else(|_| chrono::Duration::days(36_500));
        let before = Utc::now() - retention;
        let mut removed = 0;
        for _ in 0..PURGE_BATCHES {
            let n = self.store.audit_purge(before, PURGE_BATCH).await?;
            removed += n;
            if n < u64::from(PURGE_BATCH) {
                break;
            }
        }
        metrics::counter!("tether_audit_purged_total").increment(removed);
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use tether_model::authz::PrincipalId;
    use tether_store::testing::TestDb;

    use super::*;
    use crate::auth::PrincipalKind;

    #[tokio::test]
    async fn records_are_written_paged_and_purged() {
        let db = TestDb::sqlite().unwrap();
        let store = tether_store::connect(&db.url, &tether_store::StoreOptions::default())
            .await
            .unwrap();
        let log = AuditLog::new(store.clone(), Duration::from_secs(3600));
        let who = Principal {
            object_id: PrincipalId::parse("aaaaaaaa-0000-4000-8000-000000000001").unwrap(),
            tenant_id: "tenant".into(),
            app_id: Some("app".into()),
            name: None,
            kind: PrincipalKind::Application,
            issuer: "https://issuer".into(),
        };
        let operation = OperationId::new();
        for i in 0..5 {
            log.record(
                AuditEntry::new(
                    Some(&who),
                    "Microsoft.ServiceLinker/linkers/write",
                    AuditOutcome::Accepted,
                    201,
                )
                .scope(format!(
                    "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg{i}"
                ))
                .target("/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/data")
                .operation(operation)
                .request(Some("c\u{0}orr".into()), Some("req".into())),
            )
            .await;
        }
        log.record(
            AuditEntry::new(None, "authenticate", AuditOutcome::Refused, 401)
                .error_code("InvalidAuthenticationToken"),
        )
        .await;
        let first = log
            .page(AuditQuery {
                limit: 4,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(first.records.len(), 4);
        assert_eq!(first.records[0].action, "authenticate", "newest first");
        assert_eq!(first.records[0].principal_id, None);
        assert_eq!(first.records[1].principal_id.as_ref(), Some(&who.object_id));
        assert_eq!(first.records[1].correlation_id.as_deref(), Some("corr"));
        assert_eq!(first.records[1].operation_id, Some(operation));
        let rest = log
            .page(AuditQuery {
                limit: 4,
                before: first.next,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(rest.records.len(), 2);
        assert!(rest.next.is_none());
        // Nothing is old enough to go; with no retention everything goes.
        assert_eq!(log.purge().await.unwrap(), 0);
        let none = AuditLog::new(store, Duration::ZERO);
        assert_eq!(none.purge().await.unwrap(), 6);
    }
}
