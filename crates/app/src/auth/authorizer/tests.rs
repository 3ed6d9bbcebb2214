//! The authorizer over a real (SQLite) store: decisions with ARM's wording, the rule for
//! named resources, role assignment management with ARM's errors, and the cache.

use std::sync::Arc;
use std::time::Duration;

use tether_model::authz::{PrincipalId, PrincipalType, RoleAssignmentId, Scope};
use tether_model::ids::ResourceId;
use tether_store::Store;
use tether_store::testing::TestDb;

use super::*;
use crate::auth::roles::{
    CONTRIBUTOR, OWNER, READER, RoleDefinition, SERVICE_LINKER_CONTRIBUTOR,
    USER_ACCESS_ADMINISTRATOR,
};
use crate::auth::{Principal, PrincipalKind};

const SUB: &str = "/subscriptions/11111111-2222-3333-4444-555555555555";
const SUB2: &str = "/subscriptions/22222222-2222-3333-4444-555555555555";
const ALICE: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const BOB: &str = "bbbbbbbb-0000-4000-8000-000000000002";
const CAROL: &str = "cccccccc-0000-4000-8000-000000000003";

struct Fixture {
    authz: Authorizer,
    store: Arc<dyn Store>,
    _db: TestDb,
}

async fn fixture(settings: AuthorizerSettings) -> Fixture {
    let db = TestDb::sqlite().unwrap();
    let store = tether_store::connect(&db.url, &tether_store::StoreOptions::default())
        .await
        .unwrap();
    Fixture {
        authz: Authorizer::new(store.clone(), settings),
        store,
        _db: db,
    }
}

fn principal(oid: &str) -> Principal {
    Principal {
        object_id: PrincipalId::parse(oid).unwrap(),
        tenant_id: "t".into(),
        app_id: None,
        name: None,
        kind: PrincipalKind::Application,
        issuer: "https://issuer".into(),
    }
}

fn scope(s: &str) -> Scope {
    Scope::parse(s).unwrap()
}

fn spec(role: &RoleDefinition, who: &str) -> AssignmentSpec {
    AssignmentSpec {
        role_definition: role.id,
        principal: PrincipalId::parse(who).unwrap(),
        principal_type: PrincipalType::User,
        description: None,
    }
}

impl Fixture {
    /// Grants directly in the store (as configuration would), bypassing the checks, and drops
    /// the principal's cached assignments.
    async fn grant(&self, at: &str, role: &RoleDefinition, who: &str) -> RoleAssignmentId {
        let id = self.grant_behind_its_back(at, role, who).await;
        self.authz.invalidate(&PrincipalId::parse(who).unwrap());
        id
    }

    /// Grants directly in the store, leaving the authorizer's cache as it is (as another
    /// replica's write would).
    async fn grant_behind_its_back(
        &self,
        at: &str,
        role: &RoleDefinition,
        who: &str,
    ) -> RoleAssignmentId {
        let id = RoleAssignmentId::new();
        let a = RoleAssignment {
            id,
            scope: scope(at),
            role_definition: role.id,
            principal: PrincipalId::parse(who).unwrap(),
            principal_type: PrincipalType::User,
            description: None,
            created_on: now(),
            created_by: None,
        };
        self.store.role_assignment_create(&a).await.unwrap();
        id
    }
}

fn linker(rg: &str) -> Scope {
    scope(&format!(
        "{SUB}/resourceGroups/{rg}/providers/Microsoft.Web/sites/web/providers/Microsoft.ServiceLinker/linkers/db"
    ))
}

fn database(sub: &str, rg: &str) -> ResourceId {
    ResourceId::parse(&format!(
        "{sub}/resourceGroups/{rg}/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg/databases/orders"
    ))
    .unwrap()
}

#[tokio::test]
async fn refusals_use_arms_wording() {
    let f = fixture(AuthorizerSettings::default()).await;
    f.grant(&format!("{SUB}/resourceGroups/app"), &READER, ALICE)
        .await;
    let alice = principal(ALICE);
    assert!(
        f.authz
            .require(&alice, actions::LINKERS_READ, &linker("app"))
            .await
            .is_ok()
    );
    let err = f
        .authz
        .require(&alice, actions::LINKERS_WRITE, &linker("app"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden);
    assert_eq!(err.code(), "AuthorizationFailed");
    assert_eq!(
        err.client_message(),
        format!(
            "The client '{ALICE}' with object id '{ALICE}' does not have authorization to perform action 'Microsoft.ServiceLinker/linkers/write' over scope '{}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
            linker("app")
        )
    );
    assert!(
        !f.authz
            .can(&principal(BOB), actions::LINKERS_READ, &linker("app"))
            .await
            .unwrap(),
        "no assignment, no access"
    );
}

#[tokio::test]
async fn a_write_needs_write_access_to_every_named_resource() {
    let f = fixture(AuthorizerSettings::default()).await;
    let who = principal(ALICE);
    f.grant(&format!("{SUB}/resourceGroups/app"), &CONTRIBUTOR, ALICE)
        .await;
    let write = |target: ResourceId| {
        let (authz, who) = (&f.authz, &who);
        async move {
            authz
                .require_with_named(who, actions::LINKERS_WRITE, &linker("app"), &[target])
                .await
        }
    };
    // The same group: Contributor there covers the target too.
    assert!(write(database(SUB, "app")).await.is_ok());
    // Another group: no role there.
    let err = write(database(SUB, "data")).await.unwrap_err();
    assert_eq!(err.code(), "AuthorizationFailed");
    assert!(err.client_message().contains(
        "'Microsoft.DBforPostgreSQL/flexibleServers/databases/write' over scope '/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/data/"
    ));
    // Reader or ServiceLinker Contributor on the target's group is not enough.
    f.grant(&format!("{SUB}/resourceGroups/data"), &READER, ALICE)
        .await;
    f.grant(
        &format!("{SUB}/resourceGroups/data"),
        &SERVICE_LINKER_CONTRIBUTOR,
        ALICE,
    )
    .await;
    assert!(write(database(SUB, "data")).await.is_err());
    // Contributor on the target's server (above the database) is.
    f.grant(
        &format!(
            "{SUB}/resourceGroups/data/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg"
        ),
        &CONTRIBUTOR,
        ALICE,
    )
    .await;
    assert!(write(database(SUB, "data")).await.is_ok());
    // Another subscription: Owner of the first one does not reach it.
    f.grant(SUB, &OWNER, ALICE).await;
    assert!(write(database(SUB2, "data")).await.is_err());
    // And without the source action, the target's rights do not help.
    let bob = principal(BOB);
    f.grant(SUB2, &OWNER, BOB).await;
    let err = f
        .authz
        .require_with_named(
            &bob,
            actions::LINKERS_WRITE,
            &linker("app"),
            &[database(SUB2, "data")],
        )
        .await
        .unwrap_err();
    assert!(
        err.client_message()
            .contains("Microsoft.ServiceLinker/linkers/write")
    );
}

#[tokio::test]
async fn assignments_are_managed_with_arms_rules() {
    let f = fixture(AuthorizerSettings::default()).await;
    let rg = scope(&format!("{SUB}/resourceGroups/app"));
    f.grant(SUB, &OWNER, ALICE).await;
    f.grant(SUB, &CONTRIBUTOR, BOB).await;
    let (alice, bob) = (principal(ALICE), principal(BOB));

    // Contributor may not assign roles; Owner may.
    let id = RoleAssignmentId::new();
    let err = f
        .authz
        .assignment_put(&bob, &rg, id, spec(&READER, CAROL))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "AuthorizationFailed");
    assert!(
        err.client_message()
            .contains("Microsoft.Authorization/roleAssignments/write")
    );
    let (created, new) = f
        .authz
        .assignment_put(&alice, &rg, id, spec(&READER, CAROL))
        .await
        .unwrap();
    assert!(new);
    assert_eq!(created.created_by.as_ref(), Some(&alice.object_id));
    // A replay is harmless; a change, a second name for the same grant, or nonsense is not.
    let (again, new) = f
        .authz
        .assignment_put(&alice, &rg, id, spec(&READER, CAROL))
        .await
        .unwrap();
    assert!(!new);
    assert_eq!(again, created);
    let code = |r: Result<(RoleAssignment, bool), Error>| r.unwrap_err().code().to_string();
    assert_eq!(
        code(
            f.authz
                .assignment_put(&alice, &rg, id, spec(&OWNER, CAROL))
                .await
        ),
        "RoleAssignmentUpdateNotPermitted"
    );
    let err = f
        .authz
        .assignment_put(&alice, &rg, RoleAssignmentId::new(), spec(&READER, CAROL))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.kind()),
        ("RoleAssignmentExists", ErrorKind::Conflict)
    );
    assert!(
        err.client_message()
            .contains(&id.as_uuid().simple().to_string())
    );
    let mut unknown = spec(&READER, CAROL);
    unknown.role_definition = Uuid::nil();
    assert_eq!(
        code(
            f.authz
                .assignment_put(&alice, &rg, RoleAssignmentId::new(), unknown)
                .await
        ),
        "RoleDefinitionDoesNotExist"
    );
    let mut not_guid = spec(&READER, CAROL);
    not_guid.principal = PrincipalId::parse("someone").unwrap();
    assert_eq!(
        code(
            f.authz
                .assignment_put(&alice, &rg, RoleAssignmentId::new(), not_guid)
                .await
        ),
        "InvalidPrincipalId"
    );
    let mut long = spec(&OWNER, CAROL);
    long.description = Some("x".repeat(2000));
    assert_eq!(
        code(
            f.authz
                .assignment_put(&alice, &rg, RoleAssignmentId::new(), long)
                .await
        ),
        "InvalidParameter"
    );
    // An Owner of a group cannot assign at the subscription above it.
    let carol = principal(CAROL);
    f.grant(&format!("{SUB}/resourceGroups/app"), &OWNER, CAROL)
        .await;
    assert_eq!(
        code(
            f.authz
                .assignment_put(
                    &carol,
                    &scope(SUB),
                    RoleAssignmentId::new(),
                    spec(&OWNER, CAROL)
                )
                .await
        ),
        "AuthorizationFailed"
    );
    // A User Access Administrator can assign.
    f.grant(SUB2, &USER_ACCESS_ADMINISTRATOR, BOB).await;
    assert!(
        f.authz
            .assignment_put(
                &bob,
                &scope(SUB2),
                RoleAssignmentId::new(),
                spec(&READER, CAROL)
            )
            .await
            .is_ok()
    );

    // Reads and deletes happen at the assignment's own scope.
    assert_eq!(
        f.authz.assignment_get(&alice, &rg, id).await.unwrap(),
        created
    );
    assert_eq!(
        f.authz
            .assignment_get(&alice, &scope(SUB), id)
            .await
            .unwrap_err()
            .code(),
        "RoleAssignmentNotFound"
    );
    assert_eq!(
        f.authz
            .assignment_delete(&bob, &rg, id)
            .await
            .unwrap_err()
            .code(),
        "AuthorizationFailed"
    );
    assert_eq!(
        f.authz
            .assignment_delete(&alice, &scope(SUB), id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        f.authz.assignment_delete(&alice, &rg, id).await.unwrap(),
        Some(created)
    );
    assert_eq!(
        f.authz.assignment_delete(&alice, &rg, id).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn lists_follow_placement_and_filters_and_need_read() {
    let f = fixture(AuthorizerSettings::default()).await;
    let rg = format!("{SUB}/resourceGroups/app");
    let site = format!("{rg}/providers/Microsoft.Web/sites/web");
    f.grant(SUB, &READER, ALICE).await;
    f.grant(&rg, &CONTRIBUTOR, BOB).await;
    f.grant(&site, &OWNER, CAROL).await;
    let alice = principal(ALICE);
    let list = |at: &str, filter: AssignmentFilter| {
        let (authz, alice, at) = (&f.authz, &alice, scope(at));
        async move {
            authz
                .assignments_list(alice, &at, &filter, None, 100)
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!(list(&rg, AssignmentFilter::default()).await, 3);
    let at_scope = AssignmentFilter {
        at_scope: true,
        principal: None,
    };
    assert_eq!(list(&rg, at_scope).await, 2);
    let bobs = AssignmentFilter {
        at_scope: false,
        principal: Some(PrincipalId::parse(BOB).unwrap()),
    };
    assert_eq!(list(SUB, bobs).await, 1);
    // Without read at the scope: 403.
    let err = f
        .authz
        .assignments_list(
            &principal(BOB),
            &scope(SUB),
            &AssignmentFilter::default(),
            None,
            10,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "AuthorizationFailed");
}

#[tokio::test]
async fn bootstrap_owners_are_made_once() {
    let f = fixture(AuthorizerSettings::default()).await;
    let alice = PrincipalId::parse(ALICE).unwrap();
    assert!(f.authz.bootstrap_owner(&alice, &Scope::Root).await.unwrap());
    assert!(!f.authz.bootstrap_owner(&alice, &Scope::Root).await.unwrap());
    let who = principal(ALICE);
    assert!(
        f.authz
            .can(&who, actions::OPERATOR_AUDIT_LIST, &Scope::Root)
            .await
            .unwrap()
    );
    assert!(
        f.authz
            .can(&who, actions::LINKERS_DELETE, &linker("any"))
            .await
            .unwrap()
    );
}

// Real time (the store does real IO, which paused time would race): a TTL long enough that
// the first check after the grant cannot outlive it, then a poll with a deadline.
#[tokio::test]
async fn the_cache_is_short_lived_bounded_and_dropped_on_writes() {
    let ttl = Duration::from_secs(2);
    let f = fixture(AuthorizerSettings {
        cache_ttl: ttl,
        cache_max_principals: 3,
    })
    .await;
    let alice = principal(ALICE);
    let target = linker("app");
    let cached_at = tokio::time::Instant::now();
    assert!(
        !f.authz
            .can(&alice, actions::LINKERS_READ, &target)
            .await
            .unwrap()
    );
    // A grant behind the authorizer's back is seen once the entry expires, not before.
    f.grant_behind_its_back(SUB, &READER, ALICE).await;
    let seen = f
        .authz
        .can(&alice, actions::LINKERS_READ, &target)
        .await
        .unwrap();
    assert!(!seen || cached_at.elapsed() >= ttl, "served from the cache");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f
        .authz
        .can(&alice, actions::LINKERS_READ, &target)
        .await
        .unwrap()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cache never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cached_at.elapsed() >= ttl);
    // A grant through the authorizer is seen at once.
    f.grant(SUB, &OWNER, BOB).await;
    let bob = principal(BOB);
    assert!(
        f.authz
            .can(&bob, actions::LINKERS_WRITE, &target)
            .await
            .unwrap()
    );
    let id = RoleAssignmentId::new();
    f.authz
        .assignment_put(&bob, &scope(SUB), id, spec(&CONTRIBUTOR, ALICE))
        .await
        .unwrap();
    assert!(
        f.authz
            .can(&alice, actions::LINKERS_WRITE, &target)
            .await
            .unwrap()
    );
    f.authz
        .assignment_delete(&bob, &scope(SUB), id)
        .await
        .unwrap();
    assert!(
        !f.authz
            .can(&alice, actions::LINKERS_WRITE, &target)
            .await
            .unwrap()
    );
    // Never more than the bound.
    for i in 0..10 {
        let who = principal(&format!("dddddddd-0000-4000-8000-00000000000{i}"));
        f.authz
            .can(&who, actions::LINKERS_READ, &target)
            .await
            .unwrap();
        assert!(f.authz.lock().len() <= 3);
    }
}
