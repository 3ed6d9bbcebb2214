//! The in-memory backend: stored resources, long-running operations, the directory (applications
//! and issued tokens), signing keys, fault rules and recorded calls. Everything lives in one [`State`] behind one mutex (see `lib.rs`); every
//! method here is synchronous so the lock can never be held across an `.await`.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::directory::Directory;
use crate::error::new_uuid;
use crate::faults::FaultTable;
use crate::keys::KeyRing;

/// A long-running operation started by an asynchronous PUT or DELETE.
#[derive(Debug, Clone)]
pub(crate) struct Operation {
    pub(crate) started: DateTime<Utc>,
    pub(crate) ended: DateTime<Utc>,
    pub(crate) outcome: OperationOutcome,
}

/// What the operation's `Location` (operationResults) URL answers.
#[derive(Debug, Clone)]
pub(crate) enum OperationOutcome {
    /// 200 with the resource stored under this key (404 if it is gone since).
    Put { key: String },
    /// 204.
    Delete,
}

/// One recorded ARM or token call, as listed by `GET /admin/calls`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CallRecord {
    pub(crate) seq: u64,
    pub(crate) method: String,
    /// The path exactly as received (duplicate slashes and casing kept).
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    /// `null` while the call is still in flight.
    pub(crate) status: Option<u16>,
    pub(crate) started_at: String,
    pub(crate) finished_at: Option<String>,
    /// True when a fail or throttle rule produced the response.
    pub(crate) faulted: bool,
    /// The fault rule consumed by the call, including delay rules.
    pub(crate) fault_id: Option<u64>,
    pub(crate) request_id: String,
    pub(crate) client_request_id: Option<String>,
    pub(crate) correlation_id: Option<String>,
    pub(crate) user_agent: Option<String>,
}

/// The whole mutable backend.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Lower-cased resource id -> the resource exactly as GET returns it.
    pub(crate) resources: BTreeMap<String, Value>,
    /// Lower-cased operation id -> operation.
    pub(crate) operations: HashMap<String, Operation>,
    /// Registered applications and issued-token bookkeeping.
    pub(crate) directory: Directory,
    /// The token signing keys.
    pub(crate) keys: KeyRing,
    pub(crate) faults: FaultTable,
    pub(crate) calls: Vec<CallRecord>,
    next_call_seq: u64,
}

impl State {
    /// Clears resources, operations, faults and calls; the directory, issued tokens, signing keys
    /// and sequence counters stay.
    pub(crate) fn clear_for_reset(&mut self) {
        self.resources.clear();
        self.operations.clear();
        self.faults.clear();
        self.calls.clear();
    }

    /// Removes a resource and everything nested under it; true if the resource existed.
    pub(crate) fn remove_tree(&mut self, key: &str) -> bool {
        let existed = self.resources.remove(key).is_some();
        let prefix = format!("{key}/");
        self.resources.retain(|k, _| !k.starts_with(&prefix));
        existed
    }

    /// The resources directly inside a collection key (one more segment, no deeper nesting).
    pub(crate) fn list_collection(&self, collection_key: &str) -> Vec<Value> {
        let prefix = format!("{collection_key}/");
        self.resources
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k[prefix.len()..].contains('/'))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Records a new operation and returns its id.
    pub(crate) fn start_operation(
        &mut self,
        outcome: OperationOutcome,
        now: DateTime<Utc>,
    ) -> String {
        let id = new_uuid().to_string();
        self.operations.insert(
            id.clone(),
            Operation {
                started: now,
                ended: now,
                outcome,
            },
        );
        id
    }

    /// Appends an in-flight call record and returns its sequence number (1-based, never reused).
    pub(crate) fn call_started(&mut self, mut record: CallRecord) -> u64 {
        self.next_call_seq += 1;
        record.seq = self.next_call_seq;
        self.calls.push(record);
        self.next_call_seq
    }

    /// Completes a call record; a no-op if the calls were cleared meanwhile.
    pub(crate) fn call_finished(
        &mut self,
        seq: u64,
        status: u16,
        finished_at: String,
        faulted: bool,
    ) {
        if let Ok(index) = self.calls.binary_search_by_key(&seq, |c| c.seq) {
            let call = &mut self.calls[index];
            call.status = Some(status);
            call.finished_at = Some(finished_at);
            call.faulted = faulted;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn remove_tree_and_collections_respect_segment_boundaries() {
        let mut state = State::default();
        for key in ["/a/b", "/a/b/c/1", "/a/b/c/2", "/a/b/c/2/d/x", "/a/b-x"] {
            state.resources.insert(key.into(), json!(key));
        }
        assert_eq!(
            state.list_collection("/a/b/c"),
            vec![json!("/a/b/c/1"), json!("/a/b/c/2")]
        );
        assert!(state.remove_tree("/a/b"));
        assert_eq!(state.resources.keys().collect::<Vec<_>>(), vec!["/a/b-x"]);
        assert!(!state.remove_tree("/a/b"));
    }
}
