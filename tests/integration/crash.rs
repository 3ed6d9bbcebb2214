//! Crash-proof sagas. The binary under test has crash points (`TETHER_CRASH_POINT=
//! <saga>:<step>:<before|after|undo-before|undo-after>` aborts the process right there). For
//! every step of create, update and delete (as the saga definitions list them), a replica
//! crashes right before and right after the step's side effect; then either the same server
//! restarts, or a second replica adopts the saga. Each operation must end exactly as it would
//! have without the crash, with the mock backend holding exactly the expected state — no
//! leaked setting, firewall rule, identity, grant or database user — and no two writes to one
//! resource ever overlapping in time.
//!
//! The connection exercises every step: created with a user-assigned identity (attached to
//! the app, a database user for it) and firewall rules; updated to a service principal (the
//! identity detached, its database user dropped, a new one made, the rules removed).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use tether_app::sagas::{LINKER_CREATE, LINKER_DELETE, LINKER_UPDATE, definitions};
use tether_test_utils::{Api, Backend, ReplicaOptions, TestEnv};

use crate::support::{IDENTITY_ID, PG_DATABASE_ID, WEB_APP_ID, env};

const NAME: &str = "orders";
const SETTLE: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Saga {
    Create,
    Update,
    Delete,
}

impl Saga {
    fn name(self) -> &'static str {
        match self {
            Saga::Create => LINKER_CREATE,
            Saga::Update => LINKER_UPDATE,
            Saga::Delete => LINKER_DELETE,
        }
    }

    /// The steps, as the shipped definition runs them.
    fn steps(self) -> Vec<&'static str> {
        definitions(1)
            .iter()
            .find(|d| d.name() == self.name())
            .map(|d| d.step_names())
            .unwrap_or_else(|| panic!("no saga definition named {}", self.name()))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Recovery {
    /// The crashed server starts again.
    Restart,
    /// Another replica on the same database adopts the saga when the lease expires.
    Adopt,
}

type State = BTreeMap<String, Value>;

/// The backend states a linker moves between, recorded once without crashes.
struct States {
    clean: State,
    connected: State,
    updated: State,
}

/// A user-assigned identity, and firewall rules for the app's addresses.
async fn connected(env: &TestEnv) -> Value {
    let identity = env
        .mock
        .resource(IDENTITY_ID)
        .await
        .expect("the demo identity");
    json!({
        "targetService": {"type": "AzureResource", "id": PG_DATABASE_ID},
        "authInfo": {"authType": "userAssignedIdentity", "clientId": identity["properties"]["clientId"]},
        "clientType": "python",
        "vNetSolution": {"type": "firewall"},
    })
}

/// A service principal, another client type, no firewall rules.
fn updated() -> Value {
    json!({
        "targetService": {"type": "AzureResource", "id": PG_DATABASE_ID},
        "authInfo": {
            "authType": "servicePrincipalSecret",
            "clientId": "0f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b",
            "principalId": "7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d",
            "secret": "sp-secret-crash-test",
        },
        "clientType": "java",
    })
}

async fn succeed(api: &Api, reply: tether_test_utils::Reply) {
    assert_eq!(
        api.wait(&reply).await["status"],
        "Succeeded",
        "{}",
        reply.text
    );
}

async fn record_states(env: &TestEnv, api: &Api) -> States {
    let clean = env.mock.state().await;
    succeed(
        api,
        api.put_linker(WEB_APP_ID, NAME, connected(env).await).await,
    )
    .await;
    let connected = env.mock.state().await;
    succeed(api, api.put_linker(WEB_APP_ID, NAME, updated()).await).await;
    let updated = env.mock.state().await;
    succeed(api, api.delete_linker(WEB_APP_ID, NAME).await).await;
    assert_eq!(env.mock.state().await, clean);
    States {
        clean,
        connected,
        updated,
    }
}

/// Brings the backend to the state `saga` starts from.
async fn prepare(saga: Saga, api: &Api, env: &TestEnv, states: &States) {
    if api.get_linker(WEB_APP_ID, NAME).await.status == 200 {
        succeed(api, api.delete_linker(WEB_APP_ID, NAME).await).await;
    }
    if saga != Saga::Create {
        succeed(
            api,
            api.put_linker(WEB_APP_ID, NAME, connected(env).await).await,
        )
        .await;
        assert_eq!(env.mock.state().await, states.connected);
    }
}

/// Sends the request that starts `saga`; the answer may be lost when the crash comes first.
async fn start(saga: Saga, api: &Api, env: &TestEnv) {
    let path = Api::linker_path(WEB_APP_ID, NAME);
    let _ = match saga {
        Saga::Create => {
            let properties = connected(env).await;
            api.try_call("PUT", &path, Some(&json!({"properties": properties})))
                .await
        }
        Saga::Update => {
            api.try_call("PUT", &path, Some(&json!({"properties": updated()})))
                .await
        }
        Saga::Delete => api.try_call("DELETE", &path, None).await,
    };
}

fn crash_at(saga: Saga, step: &str, when: &str) -> ReplicaOptions {
    ReplicaOptions::default().env(
        "TETHER_CRASH_POINT",
        &format!("{}:{step}:{when}", saga.name()),
    )
}

/// Crashes `saga` at every forward crash point and checks it ends as if nothing happened.
async fn crash_every_step(saga: Saga, backend: Backend, recovery: Recovery) {
    let env = env(backend).await;
    let mut server = env.spawn().await;
    let states = record_states(&env, &server.api).await;
    for step in saga.steps() {
        for when in ["before", "after"] {
            let point = format!("{}:{step}:{when}", saga.name());
            prepare(saga, &server.api, &env, &states).await;
            let survivor = match recovery {
                Recovery::Restart => {
                    server.restart(Some(crash_at(saga, step, when))).await;
                    start(saga, &server.api, &env).await;
                    assert!(
                        server.wait_exit(Duration::from_secs(30)).await,
                        "{point}: no crash"
                    );
                    server.restart(Some(ReplicaOptions::default())).await;
                    server.api.clone()
                }
                Recovery::Adopt => {
                    let mut crashing = env.spawn_with(crash_at(saga, step, when)).await;
                    start(saga, &crashing.api, &env).await;
                    assert!(
                        crashing.wait_exit(Duration::from_secs(30)).await,
                        "{point}: no crash"
                    );
                    server.api.clone()
                }
            };
            let linker = survivor.settled(WEB_APP_ID, NAME, SETTLE).await;
            let state = linker.map(|l| l["properties"]["provisioningState"].clone());
            let (want, expected) = match saga {
                Saga::Create => (Some(json!("Succeeded")), &states.connected),
                Saga::Update => (Some(json!("Succeeded")), &states.updated),
                Saga::Delete => (None, &states.clean),
            };
            assert_eq!(
                state, want,
                "{point}: the operation did not end as it would have without the crash"
            );
            assert_eq!(
                &env.mock.state().await,
                expected,
                "{point}: the backend is not exactly as expected"
            );
        }
    }
    let overlaps = env.mock.overlapping_writes().await;
    assert!(
        overlaps.is_empty(),
        "concurrent writes to one resource: {overlaps:#?}"
    );
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_create_crashed_at_any_step_finishes_after_a_restart() {
    crash_every_step(Saga::Create, Backend::Sqlite, Recovery::Restart).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_crashed_at_any_step_finishes_after_a_restart() {
    crash_every_step(Saga::Update, Backend::Sqlite, Recovery::Restart).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delete_crashed_at_any_step_finishes_after_a_restart() {
    crash_every_step(Saga::Delete, Backend::Sqlite, Recovery::Restart).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_create_crashed_at_any_step_is_finished_by_another_replica() {
    crash_every_step(Saga::Create, Backend::Postgres, Recovery::Adopt).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_crashed_at_any_step_is_finished_by_another_replica() {
    crash_every_step(Saga::Update, Backend::Postgres, Recovery::Adopt).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delete_crashed_at_any_step_is_finished_by_another_replica() {
    crash_every_step(Saga::Delete, Backend::Postgres, Recovery::Adopt).await;
}

/// The fault that makes each saga fail at its last step (configuration for create and
/// update, detaching the identity for delete), so it unwinds through every undo.
fn last_step_fault(saga: Saga) -> Value {
    let (method, path) = match saga {
        Saga::Delete => ("PATCH", "**/Microsoft.Web/sites/demo-web"),
        _ => ("PUT", "**/config/appsettings"),
    };
    json!({"method": method, "path": path, "count": 1, "when": "after",
           "action": {"fail": {"status": 409, "code": "InjectedFault"}}})
}

/// Crashes an unwinding saga at every undo crash point, and once right after the action of
/// the step before the failing one (so the undo follows an action whose success was never
/// logged). The restarted server finishes the unwind: the operation fails and the backend is
/// exactly as before it.
async fn crash_every_undo(saga: Saga) {
    let env = env(Backend::Postgres).await;
    let mut server = env.spawn().await;
    let states = record_states(&env, &server.api).await;
    let steps = saga.steps();
    let mut points: Vec<(&str, &str)> = steps
        .iter()
        .flat_map(|s| [(*s, "undo-before"), (*s, "undo-after")])
        .collect();
    points.push((steps[steps.len() - 2], "after"));
    for (step, when) in points {
        let point = format!("{}:{step}:{when}", saga.name());
        prepare(saga, &server.api, &env, &states).await;
        env.mock.fault(last_step_fault(saga)).await;
        server.restart(Some(crash_at(saga, step, when))).await;
        start(saga, &server.api, &env).await;
        assert!(
            server.wait_exit(Duration::from_secs(30)).await,
            "{point}: no crash"
        );
        server.restart(Some(ReplicaOptions::default())).await;
        let linker = server.api.settled(WEB_APP_ID, NAME, SETTLE).await;
        let linker = linker.unwrap_or_else(|| panic!("{point}: the linker is gone"));
        assert_eq!(
            linker["properties"]["provisioningState"], "Failed",
            "{point}"
        );
        let before = if saga == Saga::Create {
            &states.clean
        } else {
            &states.connected
        };
        assert_eq!(
            &env.mock.state().await,
            before,
            "{point}: the backend is not as it was"
        );
        env.mock.clear_faults().await;
    }
    let overlaps = env.mock.overlapping_writes().await;
    assert!(
        overlaps.is_empty(),
        "concurrent writes to one resource: {overlaps:#?}"
    );
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_create_crashed_while_unwinding_still_leaves_no_trace() {
    crash_every_undo(Saga::Create).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_update_crashed_while_unwinding_restores_the_connection() {
    crash_every_undo(Saga::Update).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_delete_crashed_while_unwinding_keeps_the_connection() {
    crash_every_undo(Saga::Delete).await;
}
