//! The store contract for role assignments and the audit trail, run against Postgres and
//! SQLite, each test on a fresh database.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers may panic: a panic is a test failure"
)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tether_model::authz::{
    AuditId, AuditOutcome, AuditRecord, PrincipalId, PrincipalType, RoleAssignment,
    RoleAssignmentId, Scope,
};
use tether_model::ids::OperationId;
use tether_store::testing::TestDb;
use tether_store::{AssignmentWrite, AuditQuery, Placement, RoleAssignmentQuery, Store};
use uuid::Uuid;

const SUB: &str = "/subscriptions/11111111-2222-3333-4444-555555555555";
const OTHER_SUB: &str = "/subscriptions/99999999-2222-3333-4444-555555555555";
const OWNER: Uuid = Uuid::from_u128(0x8e3af657_a8ff_443c_a75c_2fe8c4bcb635);
const READER: Uuid = Uuid::from_u128(0xacdd72a7_3385_48ef_bd42_f606fba81ae7);
const ALICE: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const BOB: &str = "bbbbbbbb-0000-4000-8000-000000000002";

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
    assignments_are_created_once_and_replays_are_harmless,
    a_second_name_for_the_same_grant_is_a_duplicate,
    a_taken_name_cannot_be_changed,
    assignments_are_deleted_only_at_their_scope,
    listing_at_a_scope_follows_arm_placement,
    listing_pages_by_name_and_filters_by_principal,
    audit_records_page_newest_first_with_filters,
    audit_records_are_purged_by_age_in_batches,
);

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

fn scope(s: &str) -> Scope {
    Scope::parse(s).unwrap()
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

fn assignment(at: &str, role: Uuid, principal: &str) -> RoleAssignment {
    RoleAssignment {
        id: RoleAssignmentId::new(),
        scope: scope(at),
        role_definition: role,
        principal: PrincipalId::parse(principal).unwrap(),
        principal_type: PrincipalType::ServicePrincipal,
        description: Some("for tests".into()),
        created_on: now(),
        created_by: Some(PrincipalId::parse(BOB).unwrap()),
    }
}

async fn create(store: &dyn Store, a: &RoleAssignment) {
    assert_eq!(
        store.role_assignment_create(a).await.unwrap(),
        AssignmentWrite::Created(a.clone())
    );
}

fn names(list: &[RoleAssignment]) -> Vec<RoleAssignmentId> {
    let mut ids: Vec<RoleAssignmentId> = list.iter().map(|a| a.id).collect();
    ids.sort();
    ids
}

async fn assignments_are_created_once_and_replays_are_harmless(store: Arc<dyn Store>) {
    let a = assignment(&format!("{SUB}/resourceGroups/RG-App"), OWNER, ALICE);
    create(&*store, &a).await;
    assert_eq!(
        store.role_assignment_get(a.id).await.unwrap().as_ref(),
        Some(&a),
        "read back exactly, casing of the scope kept"
    );
    // The same assignment again (with other casing in the scope): a replay.
    let mut replay = a.clone();
    replay.scope = scope(&format!("{SUB}/resourcegroups/rg-app"));
    replay.created_on = now();
    assert_eq!(
        store.role_assignment_create(&replay).await.unwrap(),
        AssignmentWrite::Existing(a.clone())
    );
    // A root assignment reads back as the root.
    let root = assignment("/", OWNER, BOB);
    create(&*store, &root).await;
    assert_eq!(
        store
            .role_assignment_get(root.id)
            .await
            .unwrap()
            .unwrap()
            .scope,
        Scope::Root
    );
    assert!(
        store
            .role_assignment_get(RoleAssignmentId::new())
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_second_name_for_the_same_grant_is_a_duplicate(store: Arc<dyn Store>) {
    let a = assignment(&format!("{SUB}/resourceGroups/rg"), READER, ALICE);
    create(&*store, &a).await;
    let mut again = assignment(&format!("{SUB}/resourceGroups/RG"), READER, ALICE);
    again.principal = PrincipalId::parse(&ALICE.to_uppercase()).unwrap();
    assert_eq!(
        store.role_assignment_create(&again).await.unwrap(),
        AssignmentWrite::Duplicate(a.id)
    );
    assert!(store.role_assignment_get(again.id).await.unwrap().is_none());
    // Another role, another principal or another scope is a new grant.
    create(
        &*store,
        &assignment(&format!("{SUB}/resourceGroups/rg"), OWNER, ALICE),
    )
    .await;
    create(
        &*store,
        &assignment(&format!("{SUB}/resourceGroups/rg"), READER, BOB),
    )
    .await;
    create(&*store, &assignment(SUB, READER, ALICE)).await;
}

async fn a_taken_name_cannot_be_changed(store: Arc<dyn Store>) {
    let a = assignment(SUB, READER, ALICE);
    create(&*store, &a).await;
    for changed in [
        RoleAssignment {
            role_definition: OWNER,
            ..a.clone()
        },
        RoleAssignment {
            principal: PrincipalId::parse(BOB).unwrap(),
            ..a.clone()
        },
        RoleAssignment {
            scope: scope(OTHER_SUB),
            ..a.clone()
        },
    ] {
        assert_eq!(
            store.role_assignment_create(&changed).await.unwrap(),
            AssignmentWrite::NameTaken(a.clone())
        );
    }
    assert_eq!(store.role_assignment_get(a.id).await.unwrap(), Some(a));
}

async fn assignments_are_deleted_only_at_their_scope(store: Arc<dyn Store>) {
    let a = assignment(&format!("{SUB}/resourceGroups/rg"), READER, ALICE);
    create(&*store, &a).await;
    assert!(
        store
            .role_assignment_delete(&scope(SUB), a.id)
            .await
            .unwrap()
            .is_none(),
        "an assignment is addressed under its own scope"
    );
    assert_eq!(
        store
            .role_assignment_delete(&scope(&format!("{SUB}/RESOURCEGROUPS/RG")), a.id)
            .await
            .unwrap(),
        Some(a.clone())
    );
    assert!(
        store
            .role_assignment_delete(&a.scope, a.id)
            .await
            .unwrap()
            .is_none(),
        "deleting twice is harmless"
    );
    assert!(store.role_assignment_get(a.id).await.unwrap().is_none());
    // The name is free again.
    create(&*store, &a).await;
}

async fn listing_at_a_scope_follows_arm_placement(store: Arc<dyn Store>) {
    let site = format!("{SUB}/resourceGroups/rg_1/providers/Microsoft.Web/sites/app");
    let root = assignment("/", OWNER, ALICE);
    let sub = assignment(SUB, READER, ALICE);
    let rg = assignment(&format!("{SUB}/resourceGroups/rg_1"), READER, BOB);
    let at_site = assignment(&site, OWNER, BOB);
    let linker = assignment(
        &format!("{site}/providers/Microsoft.ServiceLinker/linkers/db"),
        READER,
        BOB,
    );
    // Look-alikes that must never match: a sibling group whose name extends the first (and
    // would match a LIKE pattern with '_' as a wildcard), and another subscription.
    let sibling = assignment(&format!("{SUB}/resourceGroups/rg_10"), OWNER, BOB);
    let lookalike = assignment(&format!("{SUB}/resourceGroups/rgx1"), OWNER, BOB);
    let other = assignment(OTHER_SUB, OWNER, ALICE);
    for a in [
        &root, &sub, &rg, &at_site, &linker, &sibling, &lookalike, &other,
    ] {
        create(&*store, a).await;
    }
    let list = |at: &str, placement| {
        let store = store.clone();
        let query = RoleAssignmentQuery {
            scope: Some((scope(at), placement)),
            principal: None,
            after: None,
            limit: 100,
        };
        async move { names(&store.role_assignments_list(&query).await.unwrap()) }
    };
    let ids = |list: &[&RoleAssignment]| {
        let mut ids: Vec<RoleAssignmentId> = list.iter().map(|a| a.id).collect();
        ids.sort();
        ids
    };
    let rg_id = format!("{SUB}/RESOURCEGROUPS/RG_1");
    assert_eq!(
        list(&rg_id, Placement::AtOrAbove).await,
        ids(&[&root, &sub, &rg])
    );
    assert_eq!(
        list(&rg_id, Placement::AtAboveOrBelow).await,
        ids(&[&root, &sub, &rg, &at_site, &linker])
    );
    assert_eq!(
        list(&site, Placement::AtOrAbove).await,
        ids(&[&root, &sub, &rg, &at_site])
    );
    assert_eq!(list(SUB, Placement::AtOrAbove).await, ids(&[&root, &sub]));
    assert_eq!(list("/", Placement::AtOrAbove).await, ids(&[&root]));
    assert_eq!(
        list("/", Placement::AtAboveOrBelow).await.len(),
        8,
        "everything is below the root"
    );
}

async fn listing_pages_by_name_and_filters_by_principal(store: Arc<dyn Store>) {
    let mut alices = Vec::new();
    for i in 0..5 {
        let a = assignment(&format!("{SUB}/resourceGroups/rg{i}"), READER, ALICE);
        create(&*store, &a).await;
        alices.push(a.id);
        create(
            &*store,
            &assignment(&format!("{SUB}/resourceGroups/rg{i}"), READER, BOB),
        )
        .await;
    }
    alices.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .role_assignments_list(&RoleAssignmentQuery {
                scope: None,
                principal: Some(PrincipalId::parse(&ALICE.to_uppercase()).unwrap()),
                after,
                limit: 2,
            })
            .await
            .unwrap();
        assert!(page.len() <= 2);
        assert!(page.iter().all(|a| a.principal.as_str() == ALICE));
        seen.extend(page.iter().map(|a| a.id));
        match page.last() {
            Some(last) if page.len() == 2 => after = Some(last.id),
            _ => break,
        }
    }
    assert_eq!(seen, alices, "every one once, in name order");
}

fn record(
    t: DateTime<Utc>,
    principal: Option<&str>,
    at: &str,
    outcome: AuditOutcome,
) -> AuditRecord {
    AuditRecord {
        id: AuditId::new(),
        time: t,
        principal_id: principal.map(|p| PrincipalId::parse(p).unwrap()),
        tenant_id: Some("tenant".into()),
        app_id: Some("app".into()),
        action: "Microsoft.ServiceLinker/linkers/write".into(),
        scope: Some(at.to_string()),
        target: Some(format!(
            "{SUB}/resourceGroups/data/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg/databases/db"
        )),
        operation_id: Some(OperationId::new()),
        correlation_id: Some("corr".into()),
        request_id: Some("req".into()),
        outcome,
        status: 201,
        error_code: None,
    }
}

async fn audit_records_page_newest_first_with_filters(store: Arc<dyn Store>) {
    let t0 = now() - chrono::Duration::minutes(10);
    let rg_a = format!(
        "{SUB}/resourceGroups/a/providers/Microsoft.Web/sites/s/providers/Microsoft.ServiceLinker/linkers/l"
    );
    let rg_b = format!(
        "{SUB}/resourceGroups/b/providers/Microsoft.Web/sites/s/providers/Microsoft.ServiceLinker/linkers/l"
    );
    let mut all = Vec::new();
    for i in 0..7 {
        // Two records share each time: the id breaks the tie.
        let t = t0 + chrono::Duration::seconds(i / 2);
        let (who, at, outcome) = match i % 3 {
            0 => (Some(ALICE), &rg_a, AuditOutcome::Accepted),
            1 => (Some(BOB), &rg_b, AuditOutcome::Refused),
            _ => (None, &rg_a, AuditOutcome::Refused),
        };
        let r = record(t, who, at, outcome);
        store.audit_append(&r).await.unwrap();
        store.audit_append(&r).await.unwrap(); // a replay is harmless
        all.push(r);
    }
    all.sort_by_key(|r| std::cmp::Reverse((r.time, r.id)));
    // Pages of 3, newest first, each continuing strictly after the last.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .audit_page(&AuditQuery {
                before,
                limit: 3,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        seen.extend(page.iter().cloned());
        match page.last() {
            Some(last) if page.len() == 3 => before = Some((last.time, last.id)),
            _ => break,
        }
    }
    assert_eq!(
        seen, all,
        "every record once, newest first, read back unchanged"
    );

    let query = |q: AuditQuery| {
        let store = store.clone();
        async move {
            store
                .audit_page(&AuditQuery { limit: 100, ..q })
                .await
                .unwrap()
        }
    };
    let refused = query(AuditQuery {
        outcome: Some(AuditOutcome::Refused),
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(refused.len(), 4);
    let bobs = query(AuditQuery {
        principal: Some(PrincipalId::parse(BOB).unwrap()),
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(bobs.len(), 2);
    let under_a = query(AuditQuery {
        scope: Some(scope(&format!("{SUB}/resourcegroups/A"))),
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(under_a.len(), 5);
    assert!(
        under_a
            .iter()
            .all(|r| r.scope.as_deref() == Some(rg_a.as_str()))
    );
    let exact = query(AuditQuery {
        scope: Some(scope(&rg_b)),
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(exact.len(), 2);
    let window = query(AuditQuery {
        since: Some(t0 + chrono::Duration::seconds(1)),
        until: Some(t0 + chrono::Duration::seconds(3)),
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(window.len(), 4);
}

async fn audit_records_are_purged_by_age_in_batches(store: Arc<dyn Store>) {
    let old = now() - chrono::Duration::days(100);
    for i in 0..5 {
        store
            .audit_append(&record(
                old + chrono::Duration::seconds(i),
                Some(ALICE),
                SUB,
                AuditOutcome::Accepted,
            ))
            .await
            .unwrap();
    }
    let fresh = record(now(), Some(ALICE), SUB, AuditOutcome::Accepted);
    store.audit_append(&fresh).await.unwrap();
    let cutoff = now() - chrono::Duration::from_std(Duration::from_secs(90 * 86_400)).unwrap();
    assert_eq!(store.audit_purge(cutoff, 2).await.unwrap(), 2);
    assert_eq!(store.audit_purge(cutoff, 2).await.unwrap(), 2);
    assert_eq!(store.audit_purge(cutoff, 2).await.unwrap(), 1);
    assert_eq!(store.audit_purge(cutoff, 2).await.unwrap(), 0);
    let left = store
        .audit_page(&AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(left, vec![fresh]);
}
