//! The store contract: every `Store` and `SagaStore` behaviour, run against Postgres and
//! SQLite, each test on a fresh database.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers may panic: a panic is a test failure"
)]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use tether_model::authz::{AuditId, AuditOutcome, AuditRecord, PrincipalId};
use tether_model::configuration::KeyNaming;
use tether_model::fencing::Epoch;
use tether_model::ids::{InstanceId, LinkerId, LinkerName, LinkerRef, OperationId, ResourceId};
use tether_model::linker::{Linker, LinkerProperties, Sealed, SystemData};
use tether_model::operation::{Operation, OperationKind, OperationState, ProvisioningState};
use tether_saga::{
    EventKind, Lease, NewSaga, SagaEvent, SagaOutcome, SagaState, SagaStoreError, StepError,
};
use tether_store::testing::TestDb;
use tether_store::{AuditQuery, LinkerChange, OperationBegin, Store, StoreError};

/// The epoch of a single-region writer.
const E0: Epoch = Epoch::ZERO;

const SCOPE: &str = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Web/sites/App";

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test] async fn $name() {
                let db = tether_store::testing::TestDb::postgres().await.expect("create a test database");
                super::run(db, super::$name).await;
            })*
        }
        mod sqlite {
            $(#[tokio::test] async fn $name() {
                let db = tether_store::testing::TestDb::sqlite().expect("create a test database");
                super::run(db, super::$name).await;
            })*
        }
    };
}

contract!(
    linkers_are_found_case_insensitively_with_the_callers_casing,
    list_pages_by_keyset,
    a_second_create_of_the_same_name_conflicts,
    updates_are_conditional_on_generation_and_idleness,
    saga_log_writes_are_fenced_and_idempotent,
    finishing_a_create_settles_linker_and_operation_in_one_commit,
    a_failed_update_restores_the_previous_spec,
    a_successful_delete_removes_the_linker,
    validation_results_are_kept_on_the_operation,
    expired_leases_are_adopted_with_a_new_generation,
    stuck_sagas_wait_for_their_retry_time,
    released_leases_are_adoptable_at_once,
    sagas_of_one_chain_queue_behind_each_other,
    a_delete_cancels_a_running_create_and_runs_after_it,
    two_linkers_on_one_source_never_share_a_key,
    stuck_sagas_are_listed_reported_and_retried_on_request,
    finished_sagas_and_operations_are_purged_by_age,
    applied_records_are_kept_and_shared_items_pass_to_the_last_holder,
    a_commit_with_an_older_epoch_is_refused,
    heartbeats_are_writes_and_sqlite_is_never_a_standby,
    an_operations_audit_record_commits_with_it,
);

/// Two replicas on one database (on SQLite, two processes on one file) write at once: a
/// heartbeat loop on one, creates on the other. Neither is refused for the other's lock (a
/// SQLite transaction that read before writing used to be, at once, when the other had just
/// committed).
#[tokio::test]
async fn two_replicas_writing_at_once_wait_for_each_other() {
    for db in [
        TestDb::postgres().await.expect("create a test database"),
        TestDb::sqlite().expect("create a test database"),
    ] {
        let options = tether_store::StoreOptions::default();
        let a = tether_store::connect(&db.url, &options).await.unwrap();
        let b = tether_store::connect(&db.url, &options).await.unwrap();
        let beats = async {
            for _ in 0..300 {
                a.heartbeat(&me()).await.unwrap();
            }
        };
        let creates = async {
            for i in 0..100 {
                let (name, key) = (format!("l{i}"), format!("K{i}"));
                begin_chained_create(b.as_ref(), SCOPE, &name, &name, keys(&[&key]))
                    .await
                    .unwrap();
            }
        };
        tokio::join!(beats, creates);
        db.drop_database().await.expect("drop the test database");
    }
}

async fn run<F, Fut>(db: TestDb, test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let store = tether_store::connect(&db.url, &tether_store::StoreOptions::default())
        .await
        .expect("connect and migrate");
    test(store).await;
    db.drop_database().await.expect("drop the test database");
}

fn me() -> InstanceId {
    InstanceId::generate("test")
}

fn linker(scope: &str, name: &str) -> Linker {
    let now = Utc::now();
    let properties: LinkerProperties = serde_json::from_value(json!({
        "targetService": {"type": "AzureResource", "id": "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg/databases/db"},
        "authInfo": {"authType": "secret", "name": "app"},
        "clientType": "python"
    }))
    .unwrap();
    Linker {
        id: LinkerId::new(),
        at: LinkerRef {
            scope: ResourceId::parse(scope).unwrap(),
            name: LinkerName::parse(name).unwrap(),
        },
        properties,
        secret: Some(Sealed(vec![1, 2, 3])),
        key_naming: KeyNaming::Plain,
        provisioning_state: ProvisioningState::Accepted,
        system_data: SystemData {
            created_by: "tester".into(),
            created_by_type: "User".into(),
            created_at: now,
            last_modified_by: "tester".into(),
            last_modified_by_type: "User".into(),
            last_modified_at: now,
        },
        generation: 1,
        operation: None,
        next_operation: None,
        previous: None,
        spec: Some(json!({"version": 1, "kind": "postgresql"})),
    }
}

fn new_saga(owner: &InstanceId, ttl: Duration) -> NewSaga {
    NewSaga {
        id: tether_model::ids::SagaId::new(),
        name: "linker-create".into(),
        params: json!({"p": 1}),
        owner: owner.clone(),
        chain: None,
        lease_ttl: ttl,
        first_event: SagaEvent::new("resolve", EventKind::Started),
    }
}

fn chained(owner: &InstanceId, chain: &str) -> NewSaga {
    NewSaga {
        chain: Some(chain.to_string()),
        ..new_saga(owner, Duration::from_secs(30))
    }
}

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// Starts a create of `l` and returns the operation, the saga id and its lease.
async fn begin_create(
    store: &dyn Store,
    l: Linker,
    owner: &InstanceId,
) -> (Operation, tether_model::ids::SagaId, Lease) {
    begin_create_holding(store, l, owner, Vec::new()).await
}

/// [`begin_create`] of a linker that writes the configuration `keys`.
async fn begin_create_holding(
    store: &dyn Store,
    mut l: Linker,
    owner: &InstanceId,
    keys: Vec<String>,
) -> (Operation, tether_model::ids::SagaId, Lease) {
    let op = Operation::start(OperationKind::Create, &l);
    l.operation = Some(op.id);
    let saga = new_saga(owner, Duration::from_secs(30));
    let id = saga.id;
    store
        .operation_begin(&OperationBegin {
            change: LinkerChange::Create { linker: l, keys },
            operation: op.clone(),
            saga,
            audit: None,
        })
        .await
        .unwrap();
    let lease = Lease {
        owner: owner.clone(),
        generation: 1,
    };
    (op, id, lease)
}

/// Creates `l` and finishes its create: the linker as stored, idle, and the lease (owner,
/// generation 1) every new saga of `owner` starts with.
async fn created(store: &dyn Store, l: Linker, owner: &InstanceId) -> (Linker, Lease) {
    let at = l.at.clone();
    let (_, id, lease) = begin_create(store, l, owner).await;
    store
        .saga_finish(id, &lease, &[], &SagaOutcome::Succeeded(json!(null)), E0)
        .await
        .unwrap();
    (store.linker_get(&at).await.unwrap().unwrap(), lease)
}

async fn poll<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn linkers_are_found_case_insensitively_with_the_callers_casing(store: Arc<dyn Store>) {
    let l = linker(SCOPE, "OrdersDb");
    begin_create(store.as_ref(), l.clone(), &me()).await;
    let other_casing = LinkerRef {
        scope: ResourceId::parse(&SCOPE.to_ascii_lowercase()).unwrap(),
        name: LinkerName::parse("ORDERSDB").unwrap(),
    };
    let got = store
        .linker_get(&other_casing)
        .await
        .unwrap()
        .expect("found");
    assert_eq!(got.at.scope.as_str(), SCOPE);
    assert_eq!(got.at.name.as_str(), "OrdersDb");
    assert_eq!(got.properties, l.properties);
    assert_eq!(got.secret, l.secret);
    assert_eq!(got.provisioning_state, ProvisioningState::Accepted);
    assert!(got.operation.is_some());
    let missing = LinkerRef {
        scope: other_casing.scope.clone(),
        name: LinkerName::parse("nope").unwrap(),
    };
    assert!(store.linker_get(&missing).await.unwrap().is_none());
}

async fn list_pages_by_keyset(store: Arc<dyn Store>) {
    let owner = me();
    for name in ["e", "B", "a", "D", "c"] {
        begin_create(store.as_ref(), linker(SCOPE, name), &owner).await;
    }
    // Another scope's linkers never show up.
    begin_create(
        store.as_ref(),
        linker(&SCOPE.replace("App", "Other"), "a"),
        &owner,
    )
    .await;
    let scope = ResourceId::parse(SCOPE).unwrap();
    let first = store.linkers_list(&scope, None, 2).await.unwrap();
    let names: Vec<_> = first
        .iter()
        .map(|l| l.at.name.as_str().to_string())
        .collect();
    assert_eq!(names, ["a", "B"]);
    let after = first.last().unwrap().at.name.key();
    let rest = store.linkers_list(&scope, Some(&after), 10).await.unwrap();
    let names: Vec<_> = rest
        .iter()
        .map(|l| l.at.name.as_str().to_string())
        .collect();
    assert_eq!(names, ["c", "D", "e"]);

    // For key naming: one linker of a kind asked for, of this scope only, and every linker
    // stored without a spec.
    let kinds = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let expected = linker(SCOPE, "x").properties.target_service.unwrap();
    let targets = store
        .linker_targets(&scope, &kinds(&["redis", "postgresql"]))
        .await
        .unwrap();
    assert_eq!(targets, std::slice::from_ref(&expected));
    assert!(
        store
            .linker_targets(&scope, &kinds(&["redis"]))
            .await
            .unwrap()
            .is_empty()
    );
    let empty = ResourceId::parse(&SCOPE.replace("App", "Empty")).unwrap();
    assert!(
        store
            .linker_targets(&empty, &kinds(&["postgresql"]))
            .await
            .unwrap()
            .is_empty()
    );
    let mut legacy = linker(SCOPE, "legacy");
    legacy.spec = None;
    begin_create(store.as_ref(), legacy, &me()).await;
    let targets = store
        .linker_targets(&scope, &kinds(&["redis"]))
        .await
        .unwrap();
    assert_eq!(targets, [expected]);
}

async fn a_second_create_of_the_same_name_conflicts(store: Arc<dyn Store>) {
    let s = store.as_ref();
    begin_chained_create(s, SCOPE, "db", "app", keys(&["K1"]))
        .await
        .unwrap();
    // Even with the same keys (a retried create), the answer is that the linker exists,
    // never that another linker holds its keys.
    let err = begin_chained_create(s, SCOPE, "DB", "app", keys(&["K1"]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LinkerExists), "{err:?}");
}

async fn updates_are_conditional_on_generation_and_idleness(store: Arc<dyn Store>) {
    let owner = me();
    let (_, saga, lease) = begin_create(store.as_ref(), linker(SCOPE, "db"), &owner).await;
    let at = LinkerRef {
        scope: ResourceId::parse(SCOPE).unwrap(),
        name: LinkerName::parse("db").unwrap(),
    };
    let current = store.linker_get(&at).await.unwrap().unwrap();
    let update = |current: &Linker| update_of(current, Vec::new(), None);
    // Busy: the create is still running.
    assert!(matches!(
        store.operation_begin(&update(&current)).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .saga_finish(saga, &lease, &[], &SagaOutcome::Succeeded(json!(null)), E0)
        .await
        .unwrap();
    let idle = store.linker_get(&at).await.unwrap().unwrap();
    assert_eq!(idle.provisioning_state, ProvisioningState::Succeeded);
    assert!(idle.generation > current.generation);
    // Stale generation.
    assert!(matches!(
        store.operation_begin(&update(&current)).await,
        Err(StoreError::Conflict(_))
    ));
    store.operation_begin(&update(&idle)).await.unwrap();
    let updating = store.linker_get(&at).await.unwrap().unwrap();
    assert_eq!(updating.provisioning_state, ProvisioningState::Updating);
    // The same read cannot be used twice.
    assert!(matches!(
        store.operation_begin(&update(&idle)).await,
        Err(StoreError::Conflict(_))
    ));
}

async fn saga_log_writes_are_fenced_and_idempotent(store: Arc<dyn Store>) {
    let owner = me();
    let (_, id, lease) = begin_create(store.as_ref(), linker(SCOPE, "db"), &owner).await;
    let ttl = Duration::from_secs(30);
    let events = [
        SagaEvent::with_data("resolve", EventKind::Succeeded, json!({"fqdn": "x"})),
        SagaEvent::new("network", EventKind::Started),
    ];
    let ack = store
        .saga_record(id, &lease, ttl, &events, None, E0)
        .await
        .unwrap();
    assert!(!ack.cancel_requested);
    // A retried write is harmless, even with other data or an entry twice: the first entry of
    // a (step, kind) stays.
    let retried = [
        SagaEvent::with_data("resolve", EventKind::Succeeded, json!({"fqdn": "y"})),
        SagaEvent::new("network", EventKind::Started),
        SagaEvent::with_data("network", EventKind::Succeeded, json!({"rules": 1})),
        SagaEvent::with_data("network", EventKind::Succeeded, json!({"rules": 2})),
    ];
    store
        .saga_record(id, &lease, ttl, &retried, None, E0)
        .await
        .unwrap();
    let (record, log) = store.saga_load(id).await.unwrap();
    assert_eq!(record.state, SagaState::Running);
    assert_eq!(record.params, json!({"p": 1}));
    let kinds: Vec<_> = log.iter().map(|e| (e.step.as_str(), e.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("resolve", EventKind::Started),
            ("resolve", EventKind::Succeeded),
            ("network", EventKind::Started),
            ("network", EventKind::Succeeded)
        ]
    );
    assert_eq!(log[1].data, Some(json!({"fqdn": "x"})));
    assert_eq!(log[3].data, Some(json!({"rules": 1})));

    for stale in [
        Lease {
            owner: owner.clone(),
            generation: 2,
        },
        Lease {
            owner: me(),
            generation: 1,
        },
    ] {
        let err = store
            .saga_record(id, &stale, ttl, &events, None, E0)
            .await
            .unwrap_err();
        assert!(matches!(err, SagaStoreError::Fenced), "{err:?}");
        let err = store
            .saga_finish(id, &stale, &[], &SagaOutcome::Succeeded(json!(1)), E0)
            .await
            .unwrap_err();
        assert!(matches!(err, SagaStoreError::Fenced), "{err:?}");
    }
    let failure = StepError::permanent("Boom", "network failed");
    store
        .saga_record(
            id,
            &lease,
            ttl,
            &[],
            Some((SagaState::Unwinding, Some(&failure))),
            E0,
        )
        .await
        .unwrap();
    let (record, _) = store.saga_load(id).await.unwrap();
    assert_eq!(
        (record.state, record.error),
        (SagaState::Unwinding, Some(failure))
    );
}

async fn finishing_a_create_settles_linker_and_operation_in_one_commit(store: Arc<dyn Store>) {
    let l = linker(SCOPE, "db");
    let at = l.at.clone();
    let (op, id, lease) = begin_create(store.as_ref(), l, &me()).await;
    let before = store.operation_get(op.id).await.unwrap().unwrap();
    assert_eq!(before.status, OperationState::InProgress);
    assert_eq!(before.resource_id, op.resource_id);
    let done = [SagaEvent::with_data(
        "configuration",
        EventKind::Succeeded,
        json!({"k": 1}),
    )];
    store
        .saga_finish(
            id,
            &lease,
            &done,
            &SagaOutcome::Succeeded(json!({"k": 1})),
            E0,
        )
        .await
        .unwrap();
    let after = store.operation_get(op.id).await.unwrap().unwrap();
    assert_eq!(after.status, OperationState::Succeeded);
    assert!(after.end_time.is_some());
    assert_eq!(after.result, None, "a create has no result body");
    let l = store.linker_get(&at).await.unwrap().unwrap();
    assert_eq!(
        (l.provisioning_state, l.operation),
        (ProvisioningState::Succeeded, None)
    );
    let (record, log) = store.saga_load(id).await.unwrap();
    assert_eq!(record.state, SagaState::Succeeded);
    let last: Vec<_> = log.iter().map(|e| (e.step.as_str(), e.kind)).collect();
    assert_eq!(
        last,
        [
            ("resolve", EventKind::Started),
            ("configuration", EventKind::Succeeded)
        ]
    );
    assert_eq!(log[1].data, Some(json!({"k": 1})));
    // A finished saga takes no more writes, even from its owner.
    let err = store
        .saga_record(id, &lease, Duration::from_secs(1), &[], None, E0)
        .await
        .unwrap_err();
    assert!(matches!(err, SagaStoreError::Fenced));
    assert!(
        store
            .operation_get(OperationId::new())
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_failed_update_restores_the_previous_spec(store: Arc<dyn Store>) {
    let owner = me();
    let original = linker(SCOPE, "db");
    let at = original.at.clone();
    let (current, lease) = created(store.as_ref(), original.clone(), &owner).await;

    let mut next = current.clone();
    next.properties.client_type = Some(tether_model::linker::ClientType::Java);
    next.secret = Some(Sealed(vec![9, 9]));
    next.spec = Some(json!({"version": 2}));
    next.generation += 1;
    next.provisioning_state = ProvisioningState::Updating;
    let op = Operation::start(OperationKind::Update, &next);
    next.operation = Some(op.id);
    let saga = new_saga(&owner, Duration::from_secs(30));
    let (update_id, op_id) = (saga.id, op.id);
    store
        .operation_begin(&OperationBegin {
            change: LinkerChange::Update {
                expected_generation: current.generation,
                linker: next,
                keys: Vec::new(),
            },
            operation: op,
            saga,
            audit: None,
        })
        .await
        .unwrap();
    let shown = store.linker_get(&at).await.unwrap().unwrap();
    assert_eq!(
        shown.properties.client_type,
        Some(tether_model::linker::ClientType::Java)
    );
    let previous = shown
        .previous
        .expect("the replaced spec is kept while the update runs");
    assert_eq!(
        (previous.properties, previous.secret, previous.spec),
        (
            original.properties.clone(),
            original.secret.clone(),
            original.spec.clone()
        )
    );
    assert_eq!(shown.spec, Some(json!({"version": 2})));

    let error = StepError::permanent("TargetUnavailable", "the server is gone");
    store
        .saga_finish(update_id, &lease, &[], &SagaOutcome::Failed(error), E0)
        .await
        .unwrap();
    let reverted = store.linker_get(&at).await.unwrap().unwrap();
    assert_eq!(reverted.properties, original.properties);
    assert_eq!(reverted.secret, original.secret);
    assert_eq!(reverted.spec, original.spec);
    assert!(reverted.previous.is_none());
    assert_eq!(reverted.provisioning_state, ProvisioningState::Failed);
    let op = store.operation_get(op_id).await.unwrap().unwrap();
    assert_eq!(op.status, OperationState::Failed);
    let err = op.error.unwrap();
    assert_eq!(
        (err.code.as_str(), err.message.as_str()),
        ("TargetUnavailable", "the server is gone")
    );
}

async fn a_successful_delete_removes_the_linker(store: Arc<dyn Store>) {
    let owner = me();
    let l = linker(SCOPE, "db");
    let at = l.at.clone();
    let (current, lease) = created(store.as_ref(), l, &owner).await;
    let op = Operation::start(OperationKind::Delete, &current);
    let saga = new_saga(&owner, Duration::from_secs(30));
    let (delete_id, op_id) = (saga.id, op.id);
    store
        .operation_begin(&OperationBegin {
            change: LinkerChange::Delete {
                id: current.id,
                expected_generation: current.generation,
            },
            operation: op,
            saga,
            audit: None,
        })
        .await
        .unwrap();
    assert_eq!(
        store
            .linker_get(&at)
            .await
            .unwrap()
            .unwrap()
            .provisioning_state,
        ProvisioningState::Deleting
    );
    store
        .saga_finish(
            delete_id,
            &lease,
            &[],
            &SagaOutcome::Succeeded(json!(null)),
            E0,
        )
        .await
        .unwrap();
    assert!(store.linker_get(&at).await.unwrap().is_none());
    assert_eq!(
        store.operation_get(op_id).await.unwrap().unwrap().status,
        OperationState::Succeeded
    );
}

async fn validation_results_are_kept_on_the_operation(store: Arc<dyn Store>) {
    let owner = me();
    let l = linker(SCOPE, "db");
    let at = l.at.clone();
    let (current, lease) = created(store.as_ref(), l, &owner).await;
    let op = Operation::start(OperationKind::Validate, &current);
    let saga = new_saga(&owner, Duration::from_secs(30));
    let (validate_id, op_id) = (saga.id, op.id);
    store
        .operation_begin(&OperationBegin {
            change: LinkerChange::Nothing,
            operation: op,
            saga,
            audit: None,
        })
        .await
        .unwrap();
    let result = json!({"isConnectionAvailable": true});
    store
        .saga_finish(
            validate_id,
            &lease,
            &[],
            &SagaOutcome::Succeeded(result.clone()),
            E0,
        )
        .await
        .unwrap();
    let op = store.operation_get(op_id).await.unwrap().unwrap();
    assert_eq!(
        (op.status, op.result),
        (OperationState::Succeeded, Some(result))
    );
    assert_eq!(
        store.linker_get(&at).await.unwrap().unwrap(),
        current,
        "validation leaves the linker alone"
    );
}

async fn expired_leases_are_adopted_with_a_new_generation(store: Arc<dyn Store>) {
    let owner = me();
    let (_, id, lease) = begin_create(store.as_ref(), linker(SCOPE, "db"), &owner).await;
    let other = me();
    assert!(
        store
            .saga_adopt_expired(&other, Duration::from_secs(30), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .saga_renew_leases(&owner, &[id], Duration::from_millis(1))
            .await
            .unwrap(),
        vec![id]
    );
    let adopted = poll("adoption", || async {
        let a = store
            .saga_adopt_expired(&other, Duration::from_secs(30), 10)
            .await
            .unwrap();
        (!a.is_empty()).then_some(a)
    })
    .await;
    assert_eq!(
        adopted,
        vec![(
            id,
            Lease {
                owner: other.clone(),
                generation: 2
            }
        )]
    );
    // The old owner is fenced and can no longer renew.
    assert!(
        store
            .saga_renew_leases(&owner, &[id], Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store
            .saga_record(id, &lease, Duration::from_secs(1), &[], None, E0)
            .await,
        Err(SagaStoreError::Fenced)
    ));
    let (record, _) = store.saga_load(id).await.unwrap();
    assert_eq!(
        record.lease,
        Lease {
            owner: other,
            generation: 2
        }
    );
}

async fn stuck_sagas_wait_for_their_retry_time(store: Arc<dyn Store>) {
    let owner = me();
    let (_, id, lease) = begin_create(store.as_ref(), linker(SCOPE, "db"), &owner).await;
    let undo_error = StepError::permanent("UndoFailed", "cannot remove");
    let events = [SagaEvent::with_data(
        "network",
        EventKind::UndoFailed,
        serde_json::to_value(&undo_error).unwrap(),
    )];
    store
        .saga_record(
            id,
            &lease,
            Duration::from_secs(3600),
            &events,
            Some((SagaState::Stuck, None)),
            E0,
        )
        .await
        .unwrap();
    let (record, _) = store.saga_load(id).await.unwrap();
    assert_eq!(record.state, SagaState::Stuck);
    assert!(
        store
            .saga_adopt_expired(&me(), Duration::from_secs(30), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Renewal does not keep a stuck saga (nobody runs it), and its retry time comes.
    assert!(
        store
            .saga_renew_leases(&owner, &[id], Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
    store
        .saga_record(
            id,
            &lease,
            Duration::from_millis(1),
            &[],
            Some((SagaState::Stuck, None)),
            E0,
        )
        .await
        .unwrap();
    let retrier = me();
    poll("the stuck saga's retry", || async {
        let a = store
            .saga_adopt_expired(&retrier, Duration::from_secs(30), 10)
            .await
            .unwrap();
        (!a.is_empty()).then_some(())
    })
    .await;
    let (record, _) = store.saga_load(id).await.unwrap();
    assert_eq!(record.state, SagaState::Unwinding);
}

async fn released_leases_are_adoptable_at_once(store: Arc<dyn Store>) {
    let owner = me();
    let (_, id, _) = begin_create(store.as_ref(), linker(SCOPE, "db"), &owner).await;
    store.saga_release_all(&owner).await.unwrap();
    let other = me();
    let adopted = poll("adoption", || async {
        let a = store
            .saga_adopt_expired(&other, Duration::from_secs(30), 10)
            .await
            .unwrap();
        (!a.is_empty()).then_some(a)
    })
    .await;
    assert_eq!(adopted[0].0, id);
}

/// Begins a create of linker `name` on `scope` whose saga is in `chain`.
async fn begin_chained_create(
    store: &dyn Store,
    scope: &str,
    name: &str,
    chain: &str,
    keys: Vec<String>,
) -> Result<(Operation, tether_model::ids::SagaId, tether_store::Begun), StoreError> {
    begin_audited_create(store, scope, name, chain, keys, None).await
}

/// [`begin_chained_create`] with the request's audit record.
async fn begin_audited_create(
    store: &dyn Store,
    scope: &str,
    name: &str,
    chain: &str,
    keys: Vec<String>,
    audit: Option<AuditRecord>,
) -> Result<(Operation, tether_model::ids::SagaId, tether_store::Begun), StoreError> {
    let mut l = linker(scope, name);
    let op = Operation::start(OperationKind::Create, &l);
    l.operation = Some(op.id);
    let saga = chained(&me(), chain);
    let id = saga.id;
    let begun = store
        .operation_begin(&OperationBegin {
            change: LinkerChange::Create { linker: l, keys },
            operation: op.clone(),
            saga,
            audit,
        })
        .await?;
    Ok((op, id, begun))
}

/// The audit record of the request that begins an operation, as the HTTP layer writes it.
fn request_record(scope: &str, status: u16) -> AuditRecord {
    use chrono::SubsecRound;
    AuditRecord {
        id: AuditId::new(),
        time: Utc::now().trunc_subsecs(6),
        principal_id: Some(PrincipalId::parse("00000000-0000-4000-8000-00000000a11c").unwrap()),
        tenant_id: Some("tenant".into()),
        app_id: None,
        action: "Microsoft.ServiceLinker/linkers/write".into(),
        scope: Some(scope.to_string()),
        target: Some("/subscriptions/x/resourceGroups/rg/providers/Microsoft.Cache/redis/r".into()),
        operation_id: Some(OperationId::new()),
        correlation_id: Some("corr".into()),
        request_id: Some("req".into()),
        outcome: AuditOutcome::Accepted,
        status,
        error_code: None,
    }
}

async fn audit_records(store: &dyn Store) -> Vec<AuditRecord> {
    store
        .audit_page(&AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap()
}

async fn an_operations_audit_record_commits_with_it(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let created = request_record(SCOPE, 201);
    let (_, saga, _) =
        begin_audited_create(s, SCOPE, "a", "app", keys(&["K1"]), Some(created.clone()))
            .await
            .unwrap();
    assert_eq!(audit_records(s).await, vec![created.clone()]);

    // A begin that stores nothing stores no record either.
    let refused = |name: &'static str, key: &'static str| {
        let record = request_record(SCOPE, 201);
        begin_audited_create(s, SCOPE, name, "app", keys(&[key]), Some(record))
    };
    let err = refused("A", "K9").await.unwrap_err();
    assert!(matches!(err, StoreError::LinkerExists), "{err:?}");
    let err = refused("b", "k1").await.unwrap_err();
    assert!(matches!(err, StoreError::KeyConflict { .. }), "{err:?}");
    assert_eq!(audit_records(s).await, vec![created.clone()]);

    // An update (a transaction of several statements) keeps its record too.
    succeed(s, saga).await;
    let at = LinkerRef {
        scope: ResourceId::parse(SCOPE).unwrap(),
        name: LinkerName::parse("a").unwrap(),
    };
    let current = s.linker_get(&at).await.unwrap().unwrap();
    let updated = request_record(SCOPE, 200);
    s.operation_begin(&update_of(&current, keys(&["K1"]), Some(updated.clone())))
        .await
        .unwrap();
    let mut stored = audit_records(s).await;
    stored.sort_by_key(|r| r.status);
    assert_eq!(stored, vec![updated, created]);
}

/// Ends a saga successfully under the lease it holds now.
async fn succeed(store: &dyn Store, saga: tether_model::ids::SagaId) {
    let (record, _) = store.saga_load(saga).await.unwrap();
    store
        .saga_finish(
            saga,
            &record.lease,
            &[],
            &SagaOutcome::Succeeded(json!(null)),
            E0,
        )
        .await
        .unwrap();
}

/// The begin of an update of `current` (its generation bumped, a new operation and saga).
fn update_of(current: &Linker, keys: Vec<String>, audit: Option<AuditRecord>) -> OperationBegin {
    let mut next = current.clone();
    next.generation += 1;
    next.provisioning_state = ProvisioningState::Updating;
    let op = Operation::start(OperationKind::Update, &next);
    next.operation = Some(op.id);
    OperationBegin {
        change: LinkerChange::Update {
            expected_generation: current.generation,
            linker: next,
            keys,
        },
        operation: op,
        saga: new_saga(&me(), Duration::from_secs(30)),
        audit,
    }
}

async fn adopt(store: &dyn Store) -> Vec<(tether_model::ids::SagaId, Lease)> {
    store
        .saga_adopt_expired(&me(), Duration::from_secs(30), 10)
        .await
        .unwrap()
}

async fn sagas_of_one_chain_queue_behind_each_other(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let (_, first, begun) = begin_chained_create(s, SCOPE, "a", "app", Vec::new())
        .await
        .unwrap();
    assert!(!begun.queued);
    let (_, second, begun) = begin_chained_create(s, SCOPE, "b", "app", Vec::new())
        .await
        .unwrap();
    assert!(begun.queued);
    let (_, third, begun) = begin_chained_create(s, SCOPE, "c", "app", Vec::new())
        .await
        .unwrap();
    assert!(begun.queued);
    let (_, _, begun) = begin_chained_create(s, SCOPE, "d", "elsewhere", Vec::new())
        .await
        .unwrap();
    assert!(!begun.queued, "another chain is not held up");

    // Queued sagas have expired leases but wait for their predecessor.
    assert!(adopt(s).await.is_empty());
    succeed(s, first).await;
    let adopted = poll("the second saga's turn", || async {
        Some(adopt(s).await).filter(|a| !a.is_empty())
    })
    .await;
    assert_eq!(
        adopted.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![second]
    );
    assert_eq!(adopted[0].1.generation, 2);
    s.saga_finish(
        second,
        &adopted[0].1,
        &[],
        &SagaOutcome::Failed(StepError::permanent("X", "y")),
        E0,
    )
    .await
    .unwrap();
    let adopted = poll("the third saga's turn", || async {
        Some(adopt(s).await).filter(|a| !a.is_empty())
    })
    .await;
    assert_eq!(adopted[0].0, third);
}

async fn a_delete_cancels_a_running_create_and_runs_after_it(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let (create_op, create_saga, _) = begin_chained_create(s, SCOPE, "db", "app", Vec::new())
        .await
        .unwrap();
    let at = LinkerRef {
        scope: ResourceId::parse(SCOPE).unwrap(),
        name: LinkerName::parse("db").unwrap(),
    };
    let current = s.linker_get(&at).await.unwrap().unwrap();
    let delete = |current: &Linker| {
        let op = Operation::start(OperationKind::Delete, current);
        OperationBegin {
            change: LinkerChange::CancelAndDelete {
                id: current.id,
                expected_generation: current.generation,
            },
            operation: op,
            saga: chained(&me(), "app"),
            audit: None,
        }
    };
    let first_delete = delete(&current);
    let (delete_op, delete_saga) = (first_delete.operation.id, first_delete.saga.id);
    assert!(s.operation_begin(&first_delete).await.unwrap().queued);
    // Only one delete can be queued.
    let now = s.linker_get(&at).await.unwrap().unwrap();
    assert_eq!(now.next_operation, Some(delete_op));
    assert!(matches!(
        s.operation_begin(&delete(&now)).await,
        Err(StoreError::Conflict(_))
    ));

    // The create learns about the cancellation at its next log write.
    let (record, _) = s.saga_load(create_saga).await.unwrap();
    let lease = record.lease;
    let ack = s
        .saga_record(create_saga, &lease, Duration::from_secs(30), &[], None, E0)
        .await
        .unwrap();
    assert!(ack.cancel_requested);
    let canceled = StepError::permanent(tether_saga::CANCELED, "the operation was canceled");
    s.saga_finish(
        create_saga,
        &lease,
        &[],
        &SagaOutcome::Canceled(canceled),
        E0,
    )
    .await
    .unwrap();
    let queued = s.linker_get(&at).await.unwrap().unwrap();
    assert_eq!(
        (queued.provisioning_state, queued.operation),
        (ProvisioningState::Deleting, Some(delete_op))
    );
    assert_eq!(
        s.operation_get(create_op.id).await.unwrap().unwrap().status,
        OperationState::Canceled
    );

    let adopted = poll("the delete's turn", || async {
        Some(adopt(s).await).filter(|a| !a.is_empty())
    })
    .await;
    assert_eq!(adopted[0].0, delete_saga);
    s.saga_finish(
        delete_saga,
        &adopted[0].1,
        &[],
        &SagaOutcome::Succeeded(json!(null)),
        E0,
    )
    .await
    .unwrap();
    assert!(s.linker_get(&at).await.unwrap().is_none());
    assert_eq!(
        s.operation_get(delete_op).await.unwrap().unwrap().status,
        OperationState::Succeeded
    );
}

async fn two_linkers_on_one_source_never_share_a_key(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let (_, a_saga, _) = begin_chained_create(s, SCOPE, "a", "app", keys(&["K1", "K2"]))
        .await
        .unwrap();
    succeed(s, a_saga).await;
    let err = begin_chained_create(s, SCOPE, "b", "app", keys(&["K2"]))
        .await
        .unwrap_err();
    match err {
        StoreError::KeyConflict { key, linker } => {
            assert_eq!((key.as_str(), linker.as_str()), ("K2", "a"))
        }
        other => panic!("expected a key conflict, got {other:?}"),
    }
    let at = |name: &str| LinkerRef {
        scope: ResourceId::parse(SCOPE).unwrap(),
        name: LinkerName::parse(name).unwrap(),
    };
    assert!(
        s.linker_get(&at("b")).await.unwrap().is_none(),
        "nothing was written"
    );
    // Keys compare case-insensitively.
    let err = begin_chained_create(s, SCOPE, "c", "app", keys(&["K9", "k1"]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::KeyConflict { key, linker } if key == "k1" && linker == "a"),
        "{err:?}"
    );
    begin_chained_create(s, SCOPE, "b", "app", keys(&["K3"]))
        .await
        .unwrap();
    begin_chained_create(
        s,
        &SCOPE.replace("App", "Other"),
        "b",
        "other",
        keys(&["K1"]),
    )
    .await
    .unwrap();

    // While "a" is updated to K4, its old keys stay held: the update may fail and restore them.
    let current = s.linker_get(&at("a")).await.unwrap().unwrap();
    let mut next = current.clone();
    next.generation += 1;
    let op = Operation::start(OperationKind::Update, &next);
    next.operation = Some(op.id);
    let saga = new_saga(&me(), Duration::from_secs(30));
    let update_saga = saga.id;
    s.operation_begin(&OperationBegin {
        change: LinkerChange::Update {
            linker: next,
            expected_generation: current.generation,
            keys: keys(&["K4"]),
        },
        operation: op,
        saga,
        audit: None,
    })
    .await
    .unwrap();
    assert!(matches!(
        begin_chained_create(s, SCOPE, "c", "app", keys(&["K1"])).await,
        Err(StoreError::KeyConflict { .. })
    ));
    assert!(matches!(
        begin_chained_create(s, SCOPE, "c", "app", keys(&["k4"])).await,
        Err(StoreError::KeyConflict { .. })
    ));
    let (record, _) = s.saga_load(update_saga).await.unwrap();
    s.saga_finish(
        update_saga,
        &record.lease,
        &[],
        &SagaOutcome::Failed(StepError::permanent("X", "y")),
        E0,
    )
    .await
    .unwrap();
    // The failed update put K1 and K2 back and released K4.
    assert!(matches!(
        begin_chained_create(s, SCOPE, "c", "app", keys(&["K1"])).await,
        Err(StoreError::KeyConflict { .. })
    ));
    begin_chained_create(s, SCOPE, "c", "app", keys(&["K4"]))
        .await
        .unwrap();
}

async fn stuck_sagas_are_listed_reported_and_retried_on_request(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let (op, id, lease) = begin_create(s, linker(SCOPE, "db"), &me()).await;
    let failure = StepError::permanent("TargetNotFound", "the target is gone");
    let ttl = Duration::from_secs(30);
    s.saga_record(
        id,
        &lease,
        ttl,
        &[],
        Some((SagaState::Unwinding, Some(&failure))),
        E0,
    )
    .await
    .unwrap();
    let undo = StepError::permanent("AuthorizationFailed", "cannot remove the rule");
    let events = [SagaEvent::with_data(
        "network",
        EventKind::UndoFailed,
        serde_json::to_value(&undo).unwrap(),
    )];
    s.saga_record(
        id,
        &lease,
        Duration::from_secs(3600),
        &events,
        Some((SagaState::Stuck, None)),
        E0,
    )
    .await
    .unwrap();

    let reported = s.operation_get(op.id).await.unwrap().unwrap();
    assert_eq!(reported.status, OperationState::InProgress);
    assert_eq!(reported.error.unwrap().code, "TargetNotFound");
    assert_eq!(reported.stuck.unwrap().code, "AuthorizationFailed");

    let listed = s.sagas_list(Some(SagaState::Stuck), 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].operation_id, Some(op.id));
    assert_eq!(
        listed[0].undo_error.as_ref().unwrap()["code"],
        "AuthorizationFailed"
    );
    assert!(listed[0].lease_expires_at > Utc::now() + chrono::Duration::minutes(30));
    assert_eq!(
        s.sagas_list(None, 10).await.unwrap().len(),
        1,
        "unfinished sagas by default"
    );
    assert!(
        s.sagas_list(Some(SagaState::Succeeded), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.saga_counts().await.unwrap(), vec![(SagaState::Stuck, 1)]);

    assert!(adopt(s).await.is_empty(), "not due yet");
    assert!(s.saga_retry_now(id).await.unwrap());
    let adopted = poll("the retry", || async {
        Some(adopt(s).await).filter(|a| !a.is_empty())
    })
    .await;
    assert_eq!(adopted[0].0, id);
    assert_eq!(s.saga_load(id).await.unwrap().0.state, SagaState::Unwinding);
    assert!(!s.saga_retry_now(id).await.unwrap(), "only stuck sagas");
}

async fn finished_sagas_and_operations_are_purged_by_age(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let (done_op, done, lease) = begin_create(s, linker(SCOPE, "done"), &me()).await;
    s.saga_finish(done, &lease, &[], &SagaOutcome::Succeeded(json!(null)), E0)
        .await
        .unwrap();
    let (running_op, running, _) = begin_create(s, linker(SCOPE, "running"), &me()).await;
    assert_eq!(
        s.purge_finished(Duration::from_secs(3600)).await.unwrap(),
        tether_store::Purged::default()
    );
    let purged = poll("the purge", || async {
        let p = s.purge_finished(Duration::ZERO).await.unwrap();
        (p.sagas > 0).then_some(p)
    })
    .await;
    assert_eq!(
        purged,
        tether_store::Purged {
            operations: 1,
            sagas: 1
        }
    );
    assert!(s.operation_get(done_op.id).await.unwrap().is_none());
    assert!(matches!(
        s.saga_load(done).await,
        Err(SagaStoreError::NotFound)
    ));
    assert!(
        s.operation_get(running_op.id).await.unwrap().is_some(),
        "unfinished work is kept"
    );
    assert!(s.saga_load(running).await.is_ok());
}

/// A connection Postgres terminates in the middle of a statement (SQLSTATE 57P01, as on a
/// failover or an administrator's `pg_terminate_backend`) is "unavailable" (a 503 the client
/// may retry), not a generic database error (a 500).
#[tokio::test]
async fn a_connection_terminated_mid_statement_is_unavailable() {
    use sqlx::Connection;
    let db = TestDb::postgres().await.unwrap();
    let mut victim = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let (pid,): (i32,) = sqlx::query_as("select pg_backend_pid()")
        .fetch_one(&mut victim)
        .await
        .unwrap();
    let sleeping = tokio::spawn(async move {
        sqlx::query("select pg_sleep(30)")
            .execute(&mut victim)
            .await
            .unwrap_err()
    });
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    // Terminate it once the sleep is running (poll with a deadline).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (active,): (bool,) = sqlx::query_as(
            "select exists(select 1 from pg_stat_activity where pid = $1 and query like 'select pg_sleep%')",
        )
        .bind(pid)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        if active {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the statement never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sqlx::query("select pg_terminate_backend($1)")
        .bind(pid)
        .execute(&mut admin)
        .await
        .unwrap();
    let error = tokio::time::timeout(Duration::from_secs(10), sleeping)
        .await
        .expect("the terminated statement returned")
        .unwrap();
    let mapped = StoreError::from(error);
    assert!(matches!(mapped, StoreError::Unavailable(_)), "{mapped:?}");
    let client: tether_model::Error = mapped.into();
    assert_eq!(client.kind(), tether_model::ErrorKind::Unavailable);
    admin.close().await.unwrap();
    db.drop_database().await.unwrap();
}

/// A pool of one connection, for the tests of how the store reuses connections.
async fn one_connection(db: &TestDb) -> Arc<dyn Store> {
    let options = tether_store::StoreOptions {
        max_connections: 1,
        ..tether_store::StoreOptions::default()
    };
    tether_store::connect(&db.url, &options).await.unwrap()
}

/// Polls (with a deadline) until `query` (a boolean) is true.
async fn until(admin: &mut sqlx::PgConnection, what: &str, query: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (done,): (bool,) = sqlx::query_as(query).fetch_one(&mut *admin).await.unwrap();
        if done {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The store's pool takes a connection back without a round trip (no ping), so a connection
/// the database ends while it sits idle must still fail only the statement that finds it
/// broken: the pool closes it, and the next statement gets a fresh one.
#[tokio::test]
async fn a_connection_ended_while_idle_fails_one_statement_only() {
    use sqlx::Connection;
    let db = TestDb::postgres().await.unwrap();
    let store = one_connection(&db).await;
    assert!(!store.in_recovery().await.unwrap());
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let tethers =
        "from pg_stat_activity where datname = current_database() and application_name = 'tether'";
    let (ended,): (i64,) = sqlx::query_as(&format!(
        "select count(pg_terminate_backend(pid)) {tethers}"
    ))
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(ended, 1, "the pool holds one connection");
    until(
        &mut admin,
        "the connection never ended",
        &format!("select not exists (select 1 {tethers})"),
    )
    .await;

    let first = store.in_recovery().await;
    assert!(
        matches!(first, Err(StoreError::Unavailable(_))),
        "{first:?}"
    );
    assert!(
        !store.in_recovery().await.unwrap(),
        "the next statement gets a fresh connection"
    );
    admin.close().await.unwrap();
    db.drop_database().await.unwrap();
}

/// A caller that gives up on a statement (a timeout, a dropped request) leaves it running on
/// its connection. The next statement on that connection must get its own answer, not the
/// abandoned one's.
#[tokio::test]
async fn a_statement_given_up_on_does_not_answer_the_next_one() {
    use sqlx::Connection;
    let db = TestDb::postgres().await.unwrap();
    let store = one_connection(&db).await;
    let (a, b) = (linker(SCOPE, "a"), linker(SCOPE, "b"));
    let (at_a, at_b) = (a.at.clone(), b.at.clone());
    begin_create(store.as_ref(), a, &me()).await;
    begin_create(store.as_ref(), b, &me()).await;

    // Hold the linker table so that reading `a` waits, and give up on that read.
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut lock = admin.begin().await.unwrap();
    sqlx::query("lock table linker in access exclusive mode")
        .execute(&mut *lock)
        .await
        .unwrap();
    let given_up = tokio::time::timeout(Duration::from_millis(300), store.linker_get(&at_a)).await;
    assert!(
        given_up.is_err(),
        "the read waited for the lock: {given_up:?}"
    );
    lock.commit().await.unwrap();

    let read = store.linker_get(&at_b).await.unwrap().expect("b exists");
    assert_eq!(read.at, at_b);
    let read = store.linker_get(&at_a).await.unwrap().expect("a exists");
    assert_eq!(read.at, at_a);
    admin.close().await.unwrap();
    db.drop_database().await.unwrap();
}

/// A saga's final output carrying an applied record of `(key, created)` items.
fn applied(items: &[(&str, bool)]) -> serde_json::Value {
    let items: Vec<_> = items
        .iter()
        .map(|(key, created)| json!({"key": key, "created": created, "what": {"kind": "x"}}))
        .collect();
    json!({"keys": [], "applied": {"items": items}})
}

/// Creates `l` and finishes its create with `output`.
async fn created_with(store: &dyn Store, l: Linker, output: serde_json::Value) -> Linker {
    let at = l.at.clone();
    let (_, id, lease) = begin_create(store, l, &me()).await;
    store
        .saga_finish(id, &lease, &[], &SagaOutcome::Succeeded(output), E0)
        .await
        .unwrap();
    store.linker_get(&at).await.unwrap().unwrap()
}

/// Runs an update or delete of `current` to its end with `outcome`.
async fn finish_change(store: &dyn Store, current: &Linker, delete: bool, outcome: SagaOutcome) {
    let owner = me();
    let mut next = current.clone();
    next.generation += 1;
    let (kind, change) = if delete {
        let change = LinkerChange::Delete {
            id: current.id,
            expected_generation: current.generation,
        };
        (OperationKind::Delete, change)
    } else {
        (OperationKind::Update, LinkerChange::Nothing)
    };
    let op = Operation::start(kind, &next);
    next.operation = Some(op.id);
    let change = match change {
        LinkerChange::Nothing => LinkerChange::Update {
            linker: next,
            expected_generation: current.generation,
            keys: Vec::new(),
        },
        other => other,
    };
    let saga = new_saga(&owner, Duration::from_secs(30));
    let id = saga.id;
    store
        .operation_begin(&OperationBegin {
            change,
            operation: op,
            saga,
            audit: None,
        })
        .await
        .unwrap();
    let lease = Lease {
        owner,
        generation: 1,
    };
    store
        .saga_finish(id, &lease, &[], &outcome, E0)
        .await
        .unwrap();
}

async fn created_keys(store: &dyn Store, l: &Linker) -> Vec<String> {
    let mut keys = store.linker_applied(l.id).await.unwrap().unwrap().created;
    keys.sort();
    keys
}

async fn applied_records_are_kept_and_shared_items_pass_to_the_last_holder(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let bare = created_with(s, linker(SCOPE, "bare"), json!(null)).await;
    assert_eq!(
        s.linker_applied(bare.id).await.unwrap(),
        None,
        "no record, no applied state"
    );

    let a = created_with(s, linker(SCOPE, "a"), applied(&[("x", true), ("y", false)])).await;
    let record = s.linker_applied(a.id).await.unwrap().unwrap();
    assert_eq!(record.record["items"][0]["key"], "x");
    assert_eq!(record.created, vec!["x".to_string()]);

    // b finds x already there (created by a): b may remove it once a is gone.
    let b = created_with(s, linker(SCOPE, "b"), applied(&[("x", false), ("z", true)])).await;
    assert_eq!(created_keys(s, &b).await, keys(&["x", "z"]));
    let xyz = keys(&["x", "y", "z"]);
    assert_eq!(
        s.items_held_elsewhere(a.id, &xyz).await.unwrap(),
        keys(&["x", "z"])
    );
    assert_eq!(
        s.items_held_elsewhere(b.id, &xyz).await.unwrap(),
        keys(&["x", "y"])
    );

    // A failed update keeps the record it had.
    let failed = SagaOutcome::Failed(StepError::permanent("Boom", "boom"));
    finish_change(s, &b, false, failed).await;
    assert_eq!(created_keys(s, &b).await, keys(&["x", "z"]));

    // a successful update replaces it.
    let a = s.linker_get(&a.at).await.unwrap().unwrap();
    finish_change(
        s,
        &a,
        false,
        SagaOutcome::Succeeded(applied(&[("x", false)])),
    )
    .await;
    assert_eq!(
        created_keys(s, &a).await,
        keys(&["x"]),
        "x stays a connection's to remove"
    );

    // Deleting a leaves b the only holder of x.
    let a = s.linker_get(&a.at).await.unwrap().unwrap();
    finish_change(s, &a, true, SagaOutcome::Succeeded(json!({"keys": []}))).await;
    assert!(s.linker_get(&a.at).await.unwrap().is_none());
    assert!(s.items_held_elsewhere(b.id, &xyz).await.unwrap().is_empty());
    assert_eq!(created_keys(s, &b).await, keys(&["x", "z"]));

    // A deleted linker's items go with it: c, which finds q, did not create it.
    let q = created_with(s, linker(SCOPE, "q"), applied(&[("q", true)])).await;
    finish_change(s, &q, true, SagaOutcome::Succeeded(json!({"keys": []}))).await;
    let c = created_with(s, linker(SCOPE, "c"), applied(&[("q", false)])).await;
    assert!(created_keys(s, &c).await.is_empty());
}

/// A purged saga and a deleted linker leave no rows of theirs behind on Postgres, where no
/// foreign key removes them (triggers do, migration 20261206000001).
#[tokio::test]
async fn deleted_parents_leave_no_rows_behind() {
    use sqlx::Connection;
    let db = TestDb::postgres().await.expect("create a test database");
    let store = tether_store::connect(&db.url, &tether_store::StoreOptions::default())
        .await
        .expect("connect and migrate");
    let s = store.as_ref();
    let l = linker(SCOPE, "gone");
    let at = l.at.clone();
    let (_, id, lease) = begin_create_holding(s, l, &me(), keys(&["K1"])).await;
    let output = SagaOutcome::Succeeded(applied(&[("i", true)]));
    s.saga_finish(id, &lease, &[], &output, E0).await.unwrap();
    let gone = s.linker_get(&at).await.unwrap().unwrap();
    let kept = created_with(s, linker(SCOPE, "kept"), applied(&[("j", true)])).await;
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let counts = "select (select count(*) from saga_event), (select count(*) from operation),
                         (select count(*) from linker_item), (select count(*) from linker_key)";
    let before: (i64, i64, i64, i64) = sqlx::query_as(counts).fetch_one(&mut admin).await.unwrap();
    assert_eq!((before.1, before.2, before.3), (2, 2, 1), "{before:?}");
    assert!(before.0 > 0, "the sagas have logs");

    finish_change(s, &gone, true, SagaOutcome::Succeeded(json!({"keys": []}))).await;
    assert!(s.linker_get(&gone.at).await.unwrap().is_none());
    poll("the purge", || async {
        let p = s.purge_finished(Duration::ZERO).await.unwrap();
        (p.sagas > 0).then_some(p)
    })
    .await;
    let after: (i64, i64, i64, i64) = sqlx::query_as(counts).fetch_one(&mut admin).await.unwrap();
    assert_eq!(after, (0, 0, 1, 0), "only kept's item is left");
    assert!(s.linker_get(&kept.at).await.unwrap().is_some());
    db.drop_database().await.expect("drop the test database");
}

async fn a_commit_with_an_older_epoch_is_refused(store: Arc<dyn Store>) {
    let (_, id, lease) = begin_create(store.as_ref(), linker(SCOPE, "db"), &me()).await;
    let (_, other, other_lease) = begin_create(store.as_ref(), linker(SCOPE, "cache"), &me()).await;
    let ttl = Duration::from_secs(30);
    let started = [SagaEvent::new("network", EventKind::Started)];
    // Region A leads at epoch 5 and commits.
    store
        .saga_record(id, &lease, ttl, &started, None, Epoch::new(5))
        .await
        .unwrap();
    // Region B takes over at epoch 7 and commits (another saga: the fence is global).
    store
        .saga_record(other, &other_lease, ttl, &started, None, Epoch::new(7))
        .await
        .unwrap();
    // A stale writer of A can commit nothing any more, whatever its lease says.
    let done = [SagaEvent::new("network", EventKind::Succeeded)];
    let err = store
        .saga_record(id, &lease, ttl, &done, None, Epoch::new(5))
        .await
        .unwrap_err();
    assert!(matches!(err, SagaStoreError::StaleEpoch), "{err:?}");
    let err = store
        .saga_finish(
            id,
            &lease,
            &done,
            &SagaOutcome::Succeeded(json!(1)),
            Epoch::new(6),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, SagaStoreError::StaleEpoch), "{err:?}");
    let (record, log) = store.saga_load(id).await.unwrap();
    assert_eq!(record.state, SagaState::Running);
    assert!(
        !log.iter().any(|e| e.kind == EventKind::Succeeded),
        "nothing of the refused commits was written"
    );
    // The current epoch (and a newer one) commit.
    store
        .saga_record(id, &lease, ttl, &done, None, Epoch::new(7))
        .await
        .unwrap();
    store
        .saga_finish(
            id,
            &lease,
            &[],
            &SagaOutcome::Succeeded(json!(1)),
            Epoch::new(8),
        )
        .await
        .unwrap();
    let err = store
        .saga_record(other, &other_lease, ttl, &[], None, Epoch::new(7))
        .await
        .unwrap_err();
    assert!(matches!(err, SagaStoreError::StaleEpoch), "{err:?}");
}

async fn heartbeats_are_writes_and_sqlite_is_never_a_standby(store: Arc<dyn Store>) {
    let owner = me();
    store.heartbeat(&owner).await.unwrap();
    store.heartbeat(&owner).await.unwrap();
    store.heartbeat(&me()).await.unwrap();
    assert!(!store.in_recovery().await.unwrap());
}
