//! Engine tests on the in-memory store, with tokio's clock paused (time advances only when
//! every task is idle, so leases and backoff are exercised without real waiting).

use std::collections::{BTreeSet, HashMap};
use std::future::pending;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tether_model::fencing::Epoch;
use tether_model::ids::{InstanceId, SagaId};
use tokio_util::sync::CancellationToken;

use crate::memory::MemoryStore;
use crate::{
    Ack, Ended, EventKind, Executor, ExecutorConfig, Lease, SagaDef, SagaEvent, SagaOutcome,
    SagaRecord, SagaState, SagaStore, SagaStoreError, Step, StepCx, StepError,
};

/// A fake backend the test steps act on.
#[derive(Default)]
struct World {
    items: Mutex<BTreeSet<String>>,
    log: Mutex<Vec<String>>,
    fail: Mutex<Option<&'static str>>,
    transient: Mutex<HashMap<&'static str, u32>>,
    hang: Option<&'static str>,
    /// Step `b` of the saga tagged `gated` waits until this is notified.
    gate: tokio::sync::Notify,
    undo_fail: Mutex<Option<&'static str>>,
    /// The action of this step panics.
    panic_run: Option<&'static str>,
    /// The undo of this step panics.
    panic_undo: Option<&'static str>,
    /// The `Retry-After` of transient errors (default 1 s).
    retry_after: Option<Duration>,
}

impl World {
    fn items(&self) -> Vec<String> {
        self.items.lock().unwrap().iter().cloned().collect()
    }

    /// The undos that ran, in order.
    fn undos(&self) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|l| l.starts_with("undo"))
            .cloned()
            .collect()
    }
}

struct Put(&'static str);

#[async_trait]
impl Step<World> for Put {
    fn name(&self) -> &'static str {
        self.0
    }

    async fn run(&self, cx: &StepCx<World>) -> Result<Value, StepError> {
        let w = cx.ctx();
        if w.hang == Some(self.0) {
            pending::<()>().await;
        }
        let params: Value = cx.params()?;
        let tag = params["tag"].as_str().unwrap_or_default().to_string();
        w.log
            .lock()
            .unwrap()
            .push(format!("start {} {tag}", self.0));
        assert_ne!(w.panic_run, Some(self.0), "step {} panics", self.0);
        if self.0 == "b" && tag == "gated" {
            w.gate.notified().await;
        }
        if let Some(n) = w
            .transient
            .lock()
            .unwrap()
            .get_mut(self.0)
            .filter(|n| **n > 0)
        {
            *n -= 1;
            let after = w.retry_after.unwrap_or(Duration::from_secs(1));
            return Err(
                StepError::transient("Throttled", "try later").with_retry_after(Some(after))
            );
        }
        w.log.lock().unwrap().push(format!("run {} {tag}", self.0));
        w.items.lock().unwrap().insert(self.0.to_string());
        if *w.fail.lock().unwrap() == Some(self.0) {
            // Fails after its side effect, like a call whose response was lost.
            return Err(StepError::permanent("Boom", format!("{} failed", self.0)));
        }
        Ok(json!({"put": self.0, "tag": params["tag"]}))
    }

    async fn undo(&self, cx: &StepCx<World>) -> Result<(), StepError> {
        let w = cx.ctx();
        assert_ne!(w.panic_undo, Some(self.0), "undo {} panics", self.0);
        if *w.undo_fail.lock().unwrap() == Some(self.0) {
            return Err(StepError::permanent("UndoBoom", "cannot undo"));
        }
        w.log.lock().unwrap().push(format!("undo {}", self.0));
        w.items.lock().unwrap().remove(self.0);
        Ok(())
    }
}

/// A step with nothing to do: it says so in `skip`, and its run (which should never happen)
/// leaves a trace.
struct Idle(&'static str);

#[async_trait]
impl Step<World> for Idle {
    fn name(&self) -> &'static str {
        self.0
    }

    async fn run(&self, cx: &StepCx<World>) -> Result<Value, StepError> {
        cx.ctx().log.lock().unwrap().push(format!("run {}", self.0));
        Ok(json!({"idle": self.0}))
    }

    async fn undo(&self, cx: &StepCx<World>) -> Result<(), StepError> {
        cx.ctx()
            .log
            .lock()
            .unwrap()
            .push(format!("undo {}", self.0));
        Ok(())
    }

    fn skip(&self, _cx: &StepCx<World>) -> Option<Value> {
        Some(json!({"idle": self.0}))
    }
}

fn config() -> ExecutorConfig {
    ExecutorConfig {
        lease_ttl: Duration::from_secs(10),
        step_timeout: Duration::from_secs(30),
        undo_timeout: Duration::from_secs(30),
        stuck_retry: Duration::from_secs(60),
        adopt_interval: Duration::from_secs(1),
        ..ExecutorConfig::default()
    }
}

fn abc() -> SagaDef<World> {
    SagaDef::new("test-abc")
        .step(Put("a"))
        .step(Put("b"))
        .step(Put("c"))
}

struct Harness {
    store: Arc<MemoryStore>,
    world: Arc<World>,
    exec: Executor<World>,
    stop: CancellationToken,
}

fn harness(world: World, config: ExecutorConfig, def: SagaDef<World>) -> Harness {
    let store = Arc::new(MemoryStore::default());
    harness_on(store.clone(), store, world, config, def)
}

/// A harness whose executor reaches `store` through `seen` (a wrapper around it).
fn harness_on(
    store: Arc<MemoryStore>,
    seen: Arc<dyn SagaStore>,
    world: World,
    config: ExecutorConfig,
    def: SagaDef<World>,
) -> Harness {
    let world = Arc::new(world);
    let exec = Executor::new(
        seen,
        world.clone(),
        InstanceId::generate("a"),
        config,
        Arc::new(tether_model::fencing::SingleRegion),
        vec![def],
    );
    let stop = CancellationToken::new();
    let background = exec.clone();
    let token = stop.clone();
    tokio::spawn(async move { background.run(token).await });
    Harness {
        store,
        world,
        exec,
        stop,
    }
}

impl Harness {
    fn submit(&self, name: &str) -> SagaId {
        self.submit_in(name, "t1", None)
    }

    /// Stores a saga with a tag in a chain and starts it unless it is queued (handing the
    /// executor what was stored, as the service does).
    fn submit_in(&self, name: &str, tag: &str, chain: Option<&str>) -> SagaId {
        let saga = self
            .exec
            .new_saga(name, json!({ "tag": tag }), chain.map(str::to_string));
        let id = saga.id;
        let stored = self.exec.stored(&saga);
        if self.store.insert(saga) {
            self.exec.start_stored(stored);
        }
        id
    }
}

async fn wait_terminal(store: &MemoryStore, id: SagaId) -> SagaOutcome {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
    loop {
        if let Some((state, Some(outcome))) = store.state(id) {
            assert!(state.is_terminal());
            return outcome;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "saga did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_state(store: &MemoryStore, id: SagaId, want: SagaState) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
    while store.state(id).map(|s| s.0) != Some(want) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "saga never reached {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The saga's log as `step Kind` lines, in order.
fn kinds(store: &MemoryStore, id: SagaId) -> Vec<String> {
    store
        .events(id)
        .iter()
        .map(|e| format!("{} {:?}", e.step, e.kind))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn runs_every_step_and_reports_the_last_output() {
    let h = harness(World::default(), config(), abc());
    let id = h.submit("test-abc");
    let outcome = wait_terminal(&h.store, id).await;
    assert_eq!(
        outcome,
        SagaOutcome::Succeeded(json!({"put": "c", "tag": "t1"}))
    );
    assert_eq!(h.world.items(), ["a", "b", "c"]);
    let kinds: Vec<_> = h
        .store
        .events(id)
        .iter()
        .map(|e| (e.step.clone(), e.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("a".to_string(), EventKind::Started),
            ("a".to_string(), EventKind::Succeeded),
            ("b".to_string(), EventKind::Started),
            ("b".to_string(), EventKind::Succeeded),
            ("c".to_string(), EventKind::Started),
            ("c".to_string(), EventKind::Succeeded),
        ]
    );
    h.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn steps_with_nothing_to_do_share_the_commit_of_the_step_before() {
    let def = || {
        SagaDef::new("test-idle")
            .step(Put("a"))
            .step(Idle("x"))
            .step(Idle("y"))
            .step(Put("c"))
            .step(Idle("z"))
    };
    let h = harness(World::default(), config(), def());
    let id = h.submit("test-idle");
    let outcome = wait_terminal(&h.store, id).await;
    assert_eq!(outcome, SagaOutcome::Succeeded(json!({"idle": "z"})));
    // One commit after `a` (with x and y), one that finishes (with z): not five.
    assert_eq!(h.store.commits(), 2);
    assert_eq!(
        kinds(&h.store, id),
        [
            "a Started",
            "a Succeeded",
            "x Started",
            "x Succeeded",
            "y Started",
            "y Succeeded",
            "c Started",
            "c Succeeded",
            "z Started",
            "z Succeeded",
        ]
    );
    let log = h.world.log.lock().unwrap().clone();
    assert!(
        log.iter()
            .all(|l| !l.starts_with("run x") && !l.starts_with("run y")),
        "{log:?}"
    );
    h.stop.cancel();

    // A skipped step is logged as started, so a failure after it undoes it like any other.
    let world = World::default();
    *world.fail.lock().unwrap() = Some("c");
    let h = harness(world, config(), def());
    let id = h.submit("test-idle");
    assert!(matches!(
        wait_terminal(&h.store, id).await,
        SagaOutcome::Failed(_)
    ));
    let undos = h.world.undos();
    assert_eq!(undos, ["undo c", "undo y", "undo x", "undo a"]);
    h.stop.cancel();
}

/// `a`, then `b` and `c` in one commit (with an idle `x` between them).
fn a_then_together() -> SagaDef<World> {
    SagaDef::new("test-together")
        .step(Put("a"))
        .rest_in_one_commit()
        .step(Put("b"))
        .step(Idle("x"))
        .step(Put("c"))
}

#[tokio::test(start_paused = true)]
async fn a_tail_in_one_commit_is_started_together_and_logged_at_the_end() {
    let h = harness(World::default(), config(), a_then_together());
    let id = h.submit("test-together");
    let outcome = wait_terminal(&h.store, id).await;
    assert_eq!(
        outcome,
        SagaOutcome::Succeeded(json!({"put": "c", "tag": "t1"}))
    );
    assert_eq!(h.world.items(), ["a", "b", "c"]);
    // One commit after `a` (starting the whole tail), one that finishes: not three.
    assert_eq!(h.store.commits(), 2);
    assert_eq!(
        kinds(&h.store, id),
        [
            "a Started",
            "a Succeeded",
            "b Started",
            "x Started",
            "c Started",
            "b Succeeded",
            "x Succeeded",
            "c Succeeded",
        ]
    );
    h.stop.cancel();

    // A failure anywhere in the tail undoes all of it, steps that never ran included (their
    // undo must be harmless), then what came before.
    for failing in ["b", "c"] {
        let world = World::default();
        *world.fail.lock().unwrap() = Some(failing);
        let h = harness(world, config(), a_then_together());
        let id = h.submit("test-together");
        let SagaOutcome::Failed(err) = wait_terminal(&h.store, id).await else {
            panic!("{failing}: expected a failure")
        };
        assert_eq!(err.code, "Boom");
        assert!(
            h.world.items().is_empty(),
            "{failing}: {:?}",
            h.world.items()
        );
        let undos = h.world.undos();
        assert_eq!(undos, ["undo c", "undo x", "undo b", "undo a"], "{failing}");
        let events = kinds(&h.store, id);
        assert!(
            events.contains(&format!("{failing} Failed"))
                && events.contains(&"c UndoStarted".to_string()),
            "{failing}: {events:?}"
        );
        h.stop.cancel();
    }
}

#[tokio::test(start_paused = true)]
async fn a_tail_cut_short_by_a_dead_owner_runs_again_from_its_first_step() {
    // Replica A hangs in `c`, after `b` ran: nothing of the tail is logged but its start.
    let t = hung_owner_and_adopter(a_then_together, "c");
    assert!(matches!(
        wait_terminal(&t.store, t.id).await,
        SagaOutcome::Succeeded(_)
    ));
    assert_eq!(t.world_a.items(), ["a", "b"]);
    // B resumed at the tail's first step (its output was never logged) and ran it all.
    assert_eq!(t.world_b.items(), ["b", "c"]);
    let started = kinds(&t.store, t.id);
    let started = started.iter().filter(|k| k.ends_with("Started")).count();
    assert_eq!(started, 4, "each step is logged as started once");
    t.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_failure_at_any_step_unwinds_to_a_clean_slate() {
    for failing in ["a", "b", "c"] {
        for repeat in [false, true] {
            let world = World::default();
            *world.fail.lock().unwrap() = Some(failing);
            let h = harness(
                world,
                ExecutorConfig {
                    repeat_each_step: repeat,
                    ..config()
                },
                abc(),
            );
            let id = h.submit("test-abc");
            let outcome = wait_terminal(&h.store, id).await;
            let SagaOutcome::Failed(err) = outcome else {
                panic!("expected failure, got {outcome:?}")
            };
            assert_eq!(err.code, "Boom");
            assert!(
                h.world.items().is_empty(),
                "leftovers after {failing} failed: {:?}",
                h.world.items()
            );
            // The failed step is undone too (its call may have had its effect), newest first.
            let undos = h.world.undos();
            let upto = ["a", "b", "c"].iter().position(|s| *s == failing).unwrap();
            let mut expected: Vec<String> = ["a", "b", "c"][..=upto]
                .iter()
                .rev()
                .map(|s| format!("undo {s}"))
                .collect();
            if repeat {
                expected = expected.into_iter().flat_map(|u| [u.clone(), u]).collect();
            }
            assert_eq!(undos, expected);
            h.stop.cancel();
        }
    }
}

#[tokio::test(start_paused = true)]
async fn repeating_each_step_gives_the_same_end_state() {
    let h = harness(
        World::default(),
        ExecutorConfig {
            repeat_each_step: true,
            ..config()
        },
        abc(),
    );
    let id = h.submit("test-abc");
    assert!(matches!(
        wait_terminal(&h.store, id).await,
        SagaOutcome::Succeeded(_)
    ));
    assert_eq!(h.world.items(), ["a", "b", "c"]);
    let runs = h
        .world
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("run "))
        .count();
    assert_eq!(runs, 6, "each action ran twice");
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_honouring_retry_after() {
    let world = World::default();
    world.transient.lock().unwrap().insert("b", 3);
    let h = harness(world, config(), abc());
    let started = tokio::time::Instant::now();
    let id = h.submit("test-abc");
    assert!(matches!(
        wait_terminal(&h.store, id).await,
        SagaOutcome::Succeeded(_)
    ));
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "three retries each waited at least Retry-After"
    );
    assert_eq!(h.world.items(), ["a", "b", "c"]);
}

#[tokio::test(start_paused = true)]
async fn transient_errors_past_the_step_deadline_unwind() {
    let world = World::default();
    world.transient.lock().unwrap().insert("b", u32::MAX);
    let h = harness(
        world,
        ExecutorConfig {
            step_timeout: Duration::from_secs(5),
            ..config()
        },
        abc(),
    );
    let id = h.submit("test-abc");
    let SagaOutcome::Failed(err) = wait_terminal(&h.store, id).await else {
        panic!("expected failure")
    };
    assert_eq!(err.code, "Throttled");
    assert!(!err.transient, "a final error is recorded as permanent");
    assert!(h.world.items().is_empty());
}

/// Two replicas on one store: A runs a saga and hangs in one of its steps (as if frozen or
/// crashed), never renewing its lease; B runs its background duties, so it adopts the saga
/// once A's lease expires.
struct Adoption {
    store: Arc<MemoryStore>,
    id: SagaId,
    a: Executor<World>,
    world_a: Arc<World>,
    world_b: Arc<World>,
    stop: CancellationToken,
}

fn hung_owner_and_adopter(def: fn() -> SagaDef<World>, hang: &'static str) -> Adoption {
    let store = Arc::new(MemoryStore::default());
    let replica = |name: &str, world: &Arc<World>| {
        Executor::new(
            store.clone(),
            world.clone(),
            InstanceId::generate(name),
            config(),
            Arc::new(tether_model::fencing::SingleRegion),
            vec![def()],
        )
    };
    let world_a = Arc::new(World {
        hang: Some(hang),
        ..World::default()
    });
    let a = replica("a", &world_a);
    let saga = a.new_saga(def().name(), json!({}), None);
    let id = saga.id;
    store.insert(saga);
    a.start(id);

    let world_b = Arc::new(World::default());
    let b = replica("b", &world_b);
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move { b.run(token).await });
    Adoption {
        store,
        id,
        a,
        world_a,
        world_b,
        stop,
    }
}

#[tokio::test(start_paused = true)]
async fn a_dead_owner_s_saga_is_adopted_and_finished_by_another_replica() {
    let t = hung_owner_and_adopter(abc, "b");
    let outcome = wait_terminal(&t.store, t.id).await;
    assert!(matches!(outcome, SagaOutcome::Succeeded(_)));
    // A did step a; B resumed at b (A's step b never got past its hang) and did b and c.
    assert_eq!(t.world_a.items(), ["a"]);
    assert_eq!(t.world_b.items(), ["b", "c"]);
    assert!(
        t.a.running().is_empty(),
        "A stopped itself when its lease ran out"
    );
    let (record, _) = crate::SagaStore::saga_load(t.store.as_ref(), t.id)
        .await
        .unwrap();
    assert_eq!(record.lease.generation, 2);
    t.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_fenced_owner_cannot_write() {
    let store = Arc::new(MemoryStore::default());
    let exec = Executor::new(
        store.clone(),
        Arc::new(World::default()),
        InstanceId::generate("a"),
        config(),
        Arc::new(tether_model::fencing::SingleRegion),
        vec![abc()],
    );
    let saga = exec.new_saga("test-abc", json!({}), None);
    let id = saga.id;
    store.insert(saga);
    let stale = crate::Lease {
        owner: exec.instance().clone(),
        generation: 1,
    };
    tokio::time::advance(Duration::from_secs(11)).await;
    let adopted = crate::SagaStore::saga_adopt_expired(
        store.as_ref(),
        &InstanceId::generate("b"),
        Duration::from_secs(10),
        10,
    )
    .await
    .unwrap();
    assert_eq!(adopted.len(), 1);
    let err = crate::SagaStore::saga_record(
        store.as_ref(),
        id,
        &stale,
        Duration::from_secs(10),
        &[],
        None,
        tether_model::fencing::Epoch::ZERO,
    )
    .await;
    assert!(matches!(err, Err(crate::SagaStoreError::Fenced)));
    // Starting the stale owner does nothing: it sees the lease is gone.
    exec.start(id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !exec.running().is_empty() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.state(id).unwrap().0, SagaState::Running);
}

#[tokio::test(start_paused = true)]
async fn an_undo_that_keeps_failing_gets_stuck_then_is_retried() {
    let world = World::default();
    *world.fail.lock().unwrap() = Some("c");
    *world.undo_fail.lock().unwrap() = Some("b");
    let h = harness(
        world,
        ExecutorConfig {
            undo_timeout: Duration::from_secs(5),
            ..config()
        },
        abc(),
    );
    let id = h.submit("test-abc");
    wait_state(&h.store, id, SagaState::Stuck).await;
    assert_eq!(h.world.items(), ["a", "b"], "c was undone, b could not be");

    // The operator fixes the cause; the reconciler retries after `stuck_retry`.
    *h.world.undo_fail.lock().unwrap() = None;
    let SagaOutcome::Failed(err) = wait_terminal(&h.store, id).await else {
        panic!("expected failure")
    };
    assert_eq!(
        err.code, "Boom",
        "the original error is what the operation reports"
    );
    assert!(h.world.items().is_empty());
}

#[tokio::test(start_paused = true)]
async fn cancellation_unwinds_at_the_next_step_boundary() {
    let store = Arc::new(MemoryStore::default());
    let world = Arc::new(World::default());
    let exec = Executor::new(
        store.clone(),
        world.clone(),
        InstanceId::generate("a"),
        config(),
        Arc::new(tether_model::fencing::SingleRegion),
        vec![abc()],
    );
    let saga = exec.new_saga("test-abc", json!({}), None);
    let id = saga.id;
    store.insert(saga);
    store.request_cancel(id);
    exec.start(id);
    let outcome = wait_terminal(&store, id).await;
    let SagaOutcome::Canceled(err) = outcome else {
        panic!("expected cancellation, got {outcome:?}")
    };
    assert_eq!(err.code, crate::CANCELED);
    assert!(world.items().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_tail_sees_a_cancellation_only_at_the_commit_that_starts_it() {
    // Requested before that commit: the commit reports it, and the whole tail is unwound.
    let h = harness(World::default(), config(), a_then_together());
    let id = h.submit("test-together");
    h.store.request_cancel(id);
    assert!(matches!(
        wait_terminal(&h.store, id).await,
        SagaOutcome::Canceled(_)
    ));
    assert_eq!(h.world.undos(), ["undo c", "undo x", "undo b", "undo a"]);
    assert!(h.world.items().is_empty());
    h.stop.cancel();

    // Requested while the tail runs: no commit sees it, and the saga ends as it would have.
    let h = harness(World::default(), config(), a_then_together());
    let id = h.submit_in("test-together", "gated", None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !h
        .world
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l == "start b gated")
    {
        assert!(tokio::time::Instant::now() < deadline, "b never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.store.request_cancel(id);
    h.world.gate.notify_one();
    assert!(matches!(
        wait_terminal(&h.store, id).await,
        SagaOutcome::Succeeded(_)
    ));
    assert_eq!(h.world.items(), ["a", "b", "c"]);
    h.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_cancellation_between_storing_and_starting_is_seen_at_the_first_step_boundary() {
    let h = harness(World::default(), config(), abc());
    let saga = h.exec.new_saga("test-abc", json!({}), None);
    let id = saga.id;
    let stored = h.exec.stored(&saga);
    h.store.insert(saga);
    h.store.request_cancel(id);
    // What was stored does not say so: the first log write reports it.
    h.exec.start_stored(stored);
    let outcome = wait_terminal(&h.store, id).await;
    let SagaOutcome::Canceled(err) = outcome else {
        panic!("expected cancellation, got {outcome:?}")
    };
    assert_eq!(err.code, crate::CANCELED);
    assert!(h.world.items().is_empty());
    h.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn sagas_of_one_chain_run_one_at_a_time_in_order() {
    let h = harness(World::default(), config(), abc());
    let first = h.submit_in("test-abc", "gated", Some("app-1"));
    let second = h.submit_in("test-abc", "second", Some("app-1"));
    let third = h.submit_in("test-abc", "third", Some("app-1"));
    let elsewhere = h.submit_in("test-abc", "elsewhere", Some("app-2"));
    // Another chain is not held up.
    assert!(matches!(
        wait_terminal(&h.store, elsewhere).await,
        SagaOutcome::Succeeded(_)
    ));
    // The first saga is held inside step b; the others have not started.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(h.store.state(second).unwrap().0, SagaState::Running);
    assert!(
        !h.world
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.ends_with("second") || l.ends_with("third"))
    );
    h.world.gate.notify_one();
    for id in [first, second, third] {
        assert!(matches!(
            wait_terminal(&h.store, id).await,
            SagaOutcome::Succeeded(_)
        ));
    }
    let starts: Vec<String> = h
        .world
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("start a") && !l.ends_with("elsewhere"))
        .cloned()
        .collect();
    assert_eq!(starts, ["start a gated", "start a second", "start a third"]);
    // Each saga ended before the next one began.
    let log = h.world.log.lock().unwrap().clone();
    let position = |entry: &str| log.iter().position(|l| l == entry).unwrap();
    assert!(position("run c gated") < position("start a second"));
    assert!(position("run c second") < position("start a third"));
    h.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_panicking_step_unwinds_and_frees_the_saga() {
    let h = harness(
        World {
            panic_run: Some("b"),
            ..World::default()
        },
        config(),
        abc(),
    );
    let id = h.submit_in("test-abc", "t1", Some("chain"));
    let outcome = wait_terminal(&h.store, id).await;
    let SagaOutcome::Failed(err) = outcome else {
        panic!("expected a failure, got {outcome:?}")
    };
    assert_eq!(err.code, "InternalServerError");
    assert!(h.world.items().is_empty(), "a was undone");
    assert!(h.exec.running().is_empty(), "the saga left the running set");
    // The next saga of its chain is not stuck behind it.
    let next = h.submit_in("test-abc", "t2", Some("chain"));
    assert!(matches!(
        wait_terminal(&h.store, next).await,
        SagaOutcome::Failed(_)
    ));
    h.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_panicking_undo_marks_the_saga_stuck_not_running() {
    let world = World {
        panic_undo: Some("a"),
        ..World::default()
    };
    *world.fail.lock().unwrap() = Some("b");
    let h = harness(world, config(), abc());
    let id = h.submit("test-abc");
    wait_state(&h.store, id, SagaState::Stuck).await;
    assert!(h.exec.running().is_empty());
    h.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn an_absurd_retry_after_ends_the_retries_instead_of_overflowing() {
    let world = World {
        retry_after: Some(Duration::from_millis(u64::MAX)),
        ..World::default()
    };
    world.transient.lock().unwrap().insert("b", 1);
    let h = harness(world, config(), abc());
    let id = h.submit("test-abc");
    let outcome = wait_terminal(&h.store, id).await;
    let SagaOutcome::Failed(err) = outcome else {
        panic!("expected a failure, got {outcome:?}")
    };
    assert_eq!(err.code, "Throttled");
    assert!(!err.transient);
    assert!(h.exec.running().is_empty());
    h.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn no_more_sagas_run_than_the_cap_allows() {
    let h = harness(
        World::default(),
        ExecutorConfig {
            max_running: 1,
            ..config()
        },
        abc(),
    );
    let gated = h.submit_in("test-abc", "gated", None);
    let other = h.submit_in("test-abc", "other", None);
    let log = |line: &str| h.world.log.lock().unwrap().iter().any(|l| l == line);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !log("start b gated") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gated saga never started b"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Leases are renewed and adoption runs meanwhile; the second saga still waits.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(!log("start a other"), "a second saga ran past the cap");
    assert_eq!(h.exec.running().len(), 2, "both are held (leases kept)");
    h.world.gate.notify_one();
    for id in [gated, other] {
        assert!(matches!(
            wait_terminal(&h.store, id).await,
            SagaOutcome::Succeeded(_)
        ));
    }
    h.stop.cancel();
}

/// A write gate a test opens and closes.
#[derive(Default)]
struct TestGate(Mutex<Option<tether_model::fencing::Epoch>>);

impl TestGate {
    fn set(&self, epoch: Option<u64>) {
        *self.0.lock().unwrap() = epoch.map(tether_model::fencing::Epoch::new);
    }
}

impl tether_model::fencing::WriteGate for TestGate {
    fn epoch(&self) -> Option<tether_model::fencing::Epoch> {
        *self.0.lock().unwrap()
    }
}

#[tokio::test(start_paused = true)]
async fn a_region_that_stops_leading_stops_its_sagas_and_the_new_leader_finishes_them() {
    use tether_model::fencing::Epoch;
    let store = Arc::new(MemoryStore::default());
    let (gate_a, gate_b) = (Arc::new(TestGate::default()), Arc::new(TestGate::default()));
    gate_a.set(Some(1));
    let world_a = Arc::new(World::default());
    let a = Executor::new(
        store.clone(),
        world_a.clone(),
        InstanceId::generate("a"),
        config(),
        gate_a.clone(),
        vec![abc()],
    );
    let world_b = Arc::new(World::default());
    let b = Executor::new(
        store.clone(),
        world_b.clone(),
        InstanceId::generate("b"),
        config(),
        gate_b.clone(),
        vec![abc()],
    );
    let stop = CancellationToken::new();
    for exec in [a.clone(), b.clone()] {
        let token = stop.clone();
        tokio::spawn(async move { exec.run(token).await });
    }
    let saga = a.new_saga("test-abc", json!({"tag": "gated"}), None);
    let id = saga.id;
    store.insert(saga);
    a.start(id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !world_a
        .log
        .lock()
        .unwrap()
        .contains(&"start b gated".to_string())
    {
        assert!(tokio::time::Instant::now() < deadline, "A reached step b");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A loses leadership inside step b: the step's result is never committed.
    gate_a.set(None);
    world_a.gate.notify_one();
    while !a.running().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "A stopped the saga");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // B does not lead yet: the saga waits, whatever its lease says.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(b.running().is_empty() && store.state(id).unwrap().0 == SagaState::Running);
    let kinds = |s: &str| {
        store
            .events(id)
            .iter()
            .filter(|e| e.step == s)
            .map(|e| e.kind)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        kinds("b"),
        [EventKind::Started],
        "A committed nothing past b's start"
    );

    // B leads at a newer epoch: it adopts the saga and finishes it (b rerun, then c).
    world_b.gate.notify_one();
    gate_b.set(Some(2));
    let outcome = wait_terminal(&store, id).await;
    assert!(matches!(outcome, SagaOutcome::Succeeded(_)));
    assert_eq!(world_b.items(), ["b", "c"]);

    // A commit carrying the old epoch is refused, whatever the lease.
    let (record, _) = crate::SagaStore::saga_load(store.as_ref(), id)
        .await
        .unwrap();
    let stale = crate::SagaStore::saga_record(
        store.as_ref(),
        id,
        &record.lease,
        Duration::from_secs(10),
        &[],
        None,
        Epoch::new(1),
    )
    .await;
    assert!(matches!(stale, Err(crate::SagaStoreError::StaleEpoch)));
    stop.cancel();
}

/// A store whose final commits answer only after the next lease renewal that missed the
/// saga (because it had ended) has been acted upon: the race between a saga's end and a
/// renewal, made certain.
struct RenewalMeetsFinish {
    inner: Arc<MemoryStore>,
    missed: AtomicBool,
    renewed: tokio::sync::Notify,
}

#[async_trait]
impl SagaStore for RenewalMeetsFinish {
    async fn saga_load(&self, id: SagaId) -> Result<(SagaRecord, Vec<SagaEvent>), SagaStoreError> {
        self.inner.saga_load(id).await
    }

    async fn saga_record(
        &self,
        id: SagaId,
        lease: &Lease,
        ttl: Duration,
        events: &[SagaEvent],
        state: Option<(SagaState, Option<&StepError>)>,
        epoch: Epoch,
    ) -> Result<Ack, SagaStoreError> {
        self.inner
            .saga_record(id, lease, ttl, events, state, epoch)
            .await
    }

    async fn saga_finish(
        &self,
        id: SagaId,
        lease: &Lease,
        events: &[SagaEvent],
        outcome: &SagaOutcome,
        epoch: Epoch,
    ) -> Result<Ended, SagaStoreError> {
        let ended = self
            .inner
            .saga_finish(id, lease, events, outcome, epoch)
            .await;
        self.renewed.notified().await;
        ended
    }

    async fn saga_renew_leases(
        &self,
        owner: &InstanceId,
        ids: &[SagaId],
        ttl: Duration,
    ) -> Result<Vec<SagaId>, SagaStoreError> {
        // Renewals run one after another: when this one starts, the executor has acted on
        // the one that missed.
        if self.missed.swap(false, Ordering::SeqCst) {
            self.renewed.notify_one();
        }
        let held = self.inner.saga_renew_leases(owner, ids, ttl).await?;
        if held.len() < ids.len() {
            self.missed.store(true, Ordering::SeqCst);
        }
        Ok(held)
    }

    async fn saga_adopt_expired(
        &self,
        owner: &InstanceId,
        ttl: Duration,
        limit: u32,
    ) -> Result<Vec<(SagaId, Lease)>, SagaStoreError> {
        self.inner.saga_adopt_expired(owner, ttl, limit).await
    }

    async fn saga_release_all(&self, owner: &InstanceId) -> Result<(), SagaStoreError> {
        self.inner.saga_release_all(owner).await
    }

    async fn saga_release(
        &self,
        id: SagaId,
        lease: &Lease,
        after: Duration,
    ) -> Result<(), SagaStoreError> {
        self.inner.saga_release(id, lease, after).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_renewal_that_meets_a_saga_ending_does_not_take_its_end_for_a_lost_lease() {
    let store = Arc::new(MemoryStore::default());
    let seen = Arc::new(RenewalMeetsFinish {
        inner: store.clone(),
        missed: AtomicBool::new(false),
        renewed: tokio::sync::Notify::new(),
    });
    // No periodic adoption within the test: the queued saga can only start when the first
    // one's runner sees its end and hands over the chain.
    let config = ExecutorConfig {
        adopt_interval: Duration::from_secs(24 * 3600),
        ..config()
    };
    let h = harness_on(store, seen, World::default(), config, abc());
    let first = h.submit_in("test-abc", "first", Some("app-1"));
    let queued = h.submit_in("test-abc", "queued", Some("app-1"));
    for id in [first, queued] {
        let outcome = tokio::time::timeout(Duration::from_secs(600), wait_terminal(&h.store, id))
            .await
            .expect("the queued saga starts when the first ends, not at the next adoption");
        assert!(matches!(outcome, SagaOutcome::Succeeded(_)));
    }
    h.stop.cancel();
}
