//! The executor: runs sagas step by step, logs each boundary in one commit, retries
//! transient failures with backoff, unwinds on permanent ones, renews leases, adopts sagas
//! whose owner died, and stops a saga the moment its lease can no longer be trusted.
//!
//! Region fencing: the executor asks its [`WriteGate`] before each step attempt and right
//! before each commit (whose epoch it writes). While the gate is closed (the region is a
//! standby or fenced) it runs no step, commits nothing, renews no lease and adopts nothing:
//! its sagas stop and their leases run out, so whichever region leads adopts them.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use rand::Rng;
use serde_json::Value;
use tether_model::fencing::{Epoch, WriteGate};
use tether_model::ids::{InstanceId, SagaId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::log::{self, CANCELED, Position};
use crate::step::{Step, StepCx, StepError};
use crate::store::{
    EventKind, Lease, NewSaga, SagaEvent, SagaOutcome, SagaRecord, SagaState, SagaStore,
    SagaStoreError,
};

/// A saga definition: a name, ordered steps, and optionally how many of its sagas one
/// replica runs at once.
pub struct SagaDef<C> {
    name: &'static str,
    steps: Vec<Arc<dyn Step<C>>>,
    slots: Option<Arc<Semaphore>>,
    /// The first step of the tail that runs in one commit ([`SagaDef::rest_in_one_commit`]).
    together_from: Option<usize>,
}

impl<C: Send + Sync + 'static> SagaDef<C> {
    /// A definition with no steps yet. `name` is persisted: never rename a shipped saga.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            steps: Vec::new(),
            slots: None,
            together_from: None,
        }
    }

    /// The steps appended after this call run without a commit between them: the commit
    /// before the first of them logs them all as started, and the saga's final commit logs
    /// their outputs. One commit per saga fewer for each step after the first.
    ///
    /// What the steps must allow, since a crash or failure anywhere among them unwinds every
    /// one of them: each undo is harmless when its run never happened, and reads no output of
    /// another step of the tail (it may never have been logged). Changing where a shipped
    /// saga's tail starts changes how its logs are read: ship it under a new saga name.
    ///
    /// Panics before the first step: a saga's first commit logs only its first step.
    pub fn rest_in_one_commit(mut self) -> Self {
        assert!(!self.steps.is_empty(), "a saga's first step runs alone");
        self.together_from = Some(self.steps.len());
        self
    }

    /// Runs at most `n` sagas of this definition at once on one replica (within the
    /// executor's overall cap); more wait for a free slot, their leases kept.
    pub fn max_concurrent(mut self, n: usize) -> Self {
        self.slots = Some(Arc::new(Semaphore::new(n.max(1))));
        self
    }

    /// Appends a step.
    pub fn step(mut self, step: impl Step<C>) -> Self {
        self.steps.push(Arc::new(step));
        self
    }

    /// The saga's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The step names in order.
    pub fn step_names(&self) -> Vec<&'static str> {
        self.steps.iter().map(|s| s.name()).collect()
    }

    /// A new saga of this definition, owned by `owner` for `lease_ttl`, in `chain`, ready to
    /// be stored.
    pub fn instantiate(
        &self,
        params: Value,
        owner: InstanceId,
        lease_ttl: Duration,
        chain: Option<String>,
    ) -> NewSaga {
        let first = self
            .steps
            .first()
            .expect("a saga has at least one step")
            .name();
        NewSaga {
            id: SagaId::new(),
            name: self.name.to_string(),
            params,
            owner,
            chain,
            lease_ttl,
            first_event: SagaEvent::new(first, EventKind::Started),
        }
    }
}

/// Executor settings. The defaults suit production; tests shorten them.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// How long a lease lasts without renewal. A dead replica's sagas are adopted after this.
    pub lease_ttl: Duration,
    /// How long one step's action may keep retrying transient errors before the saga unwinds.
    pub step_timeout: Duration,
    /// How long one undo may keep retrying before the saga is marked stuck.
    pub undo_timeout: Duration,
    /// How long a stuck saga waits before a reconciler retries its undo.
    pub stuck_retry: Duration,
    /// How often to look for sagas to adopt.
    pub adopt_interval: Duration,
    /// First retry delay; doubles per attempt, with full jitter.
    pub backoff_base: Duration,
    /// Largest retry delay.
    pub backoff_max: Duration,
    /// Sagas this replica runs at once; more wait for a slot (their leases kept), and
    /// adoption takes no more than the free slots.
    pub max_running: usize,
    /// Test aid: run every action and every undo twice (the second action's output is the one
    /// kept). Tests then check that the end state is what one run gives.
    pub repeat_each_step: bool,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(15),
            step_timeout: Duration::from_secs(120),
            undo_timeout: Duration::from_secs(300),
            stuck_retry: Duration::from_secs(300),
            adopt_interval: Duration::from_secs(5),
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            max_running: 64,
            repeat_each_step: false,
        }
    }
}

/// Runs sagas. Cheap to clone; all clones share one set of running sagas.
pub struct Executor<C> {
    inner: Arc<Inner<C>>,
}

impl<C> Clone for Executor<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<C> {
    store: Arc<dyn SagaStore>,
    ctx: Arc<C>,
    me: InstanceId,
    config: ExecutorConfig,
    gate: Arc<dyn WriteGate>,
    defs: HashMap<&'static str, SagaDef<C>>,
    running: Mutex<HashMap<SagaId, Arc<LeaseClock>>>,
    /// One permit per saga allowed to run steps at once.
    slots: Arc<Semaphore>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Signalled when a saga ends here and another of its chain is unfinished: the one queued
    /// behind it may now be adopted.
    finished: tokio::sync::Notify,
    /// When the background loop last looked for work (readiness reports its age).
    last_pass: Mutex<Option<Instant>>,
}

/// A saga as its caller just stored it (see [`Executor::stored`]).
pub struct Stored {
    record: SagaRecord,
    events: Vec<SagaEvent>,
}

/// Why a saga stopped without reaching an end (someone else, or a later adoption, finishes it).
#[derive(Debug)]
enum Stop {
    LeaseLost,
    /// The write gate is closed or a newer epoch committed: the region does not lead.
    NotLeader,
    Shutdown,
    UnknownSaga(String),
    /// The engine itself (not a step) panicked: the lease is released for a later retry.
    Panicked,
}

enum Failure {
    Stop(Stop),
    Step(StepError),
}

impl<C: Send + Sync + 'static> Executor<C> {
    /// An executor for `defs`, acting as replica `me`, writing only while `gate` is open.
    pub fn new(
        store: Arc<dyn SagaStore>,
        ctx: Arc<C>,
        me: InstanceId,
        config: ExecutorConfig,
        gate: Arc<dyn WriteGate>,
        defs: Vec<SagaDef<C>>,
    ) -> Self {
        let defs = defs.into_iter().map(|d| (d.name, d)).collect();
        let slots = Arc::new(Semaphore::new(config.max_running.max(1)));
        Self {
            inner: Arc::new(Inner {
                store,
                ctx,
                me,
                config,
                gate,
                defs,
                running: Mutex::new(HashMap::new()),
                slots,
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                finished: tokio::sync::Notify::new(),
                last_pass: Mutex::new(None),
            }),
        }
    }

    /// This replica's identity.
    pub fn instance(&self) -> &InstanceId {
        &self.inner.me
    }

    /// A new saga of definition `name` in `chain`, owned by this replica, for the caller to
    /// store in its own transaction and then [`Executor::start`] — unless the store queued it
    /// behind another saga of its chain: an adoption pass starts it when its turn comes.
    ///
    /// Panics if `name` is not registered: that is a wiring bug.
    pub fn new_saga(&self, name: &str, params: Value, chain: Option<String>) -> NewSaga {
        let def = self
            .inner
            .defs
            .get(name)
            .expect("saga definition is registered");
        def.instantiate(
            params,
            self.inner.me.clone(),
            self.inner.config.lease_ttl,
            chain,
        )
    }

    /// Starts running a saga this replica owns (one just stored, generation 1). Does nothing
    /// if it is already running here.
    pub fn start(&self, id: SagaId) {
        let lease = Lease {
            owner: self.inner.me.clone(),
            generation: 1,
        };
        self.inner.spawn(id, lease, None);
    }

    /// What [`Executor::start_stored`] needs of `saga` once its caller has stored it: the
    /// record and log as just written, so the executor does not read them back.
    pub fn stored(&self, saga: &NewSaga) -> Stored {
        Stored {
            record: SagaRecord {
                id: saga.id,
                name: saga.name.clone(),
                params: saga.params.clone(),
                state: SagaState::Running,
                lease: Lease {
                    owner: saga.owner.clone(),
                    generation: 1,
                },
                cancel_requested: false,
                error: None,
            },
            events: vec![saga.first_event.clone()],
        }
    }

    /// [`Executor::start`] for a saga its caller has just stored (committed, not queued),
    /// without reading it back. A cancellation requested in between is seen at the first
    /// log write (which reports it), as one requested while a step runs; a lease lost in
    /// between fences that write.
    pub fn start_stored(&self, stored: Stored) {
        let lease = stored.record.lease.clone();
        self.inner.spawn(stored.record.id, lease, Some(stored));
    }

    /// Runs the background duties until `shutdown` is cancelled: lease renewal and adoption of
    /// sagas whose lease expired (a dead replica's, or stuck ones due for a retry). On
    /// shutdown it stops every saga it runs and releases their leases so others adopt them
    /// at once.
    ///
    /// Renewal runs on a task of its own, so a slow adoption query can never delay it.
    pub async fn run(&self, shutdown: CancellationToken) {
        let inner = &self.inner;
        let renewals = tokio::spawn({
            let inner = inner.clone();
            let shutdown = shutdown.clone();
            async move {
                let mut renew = tokio::time::interval(inner.config.lease_ttl / 3);
                renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = renew.tick() => inner.renew_leases().await,
                    }
                }
            }
        });
        let mut adopt = tokio::time::interval(inner.config.adopt_interval);
        adopt.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = adopt.tick() => inner.adopt_expired().await,
                // A saga ended here: a saga queued behind it in its chain can start now.
                _ = inner.finished.notified() => inner.adopt_expired().await,
            }
            *inner.last_pass.lock().expect("lock poisoned") = Some(Instant::now());
        }
        let _ = renewals.await;
        inner.shutdown.cancel();
        inner.tasks.close();
        inner.tasks.wait().await;
        // A replica that may not write leaves its leases to run out.
        if inner.gate.epoch().is_none() {
            return;
        }
        if let Err(e) = inner.store.saga_release_all(&inner.me).await {
            warn!(error = %tether_model::ErrorChain(&e), "could not release saga leases on shutdown");
        }
    }

    /// How long ago the background loop last looked for sagas to adopt (`None` before its
    /// first pass): readiness reports it to catch a stalled loop.
    pub fn last_pass_age(&self) -> Option<Duration> {
        let last = *self.inner.last_pass.lock().expect("lock poisoned");
        last.map(|t| t.elapsed())
    }

    /// The ids of the sagas running in this process right now.
    pub fn running(&self) -> Vec<SagaId> {
        self.inner
            .running
            .lock()
            .expect("lock poisoned")
            .keys()
            .copied()
            .collect()
    }
}

impl<C: Send + Sync + 'static> Inner<C> {
    fn spawn(self: &Arc<Self>, id: SagaId, lease: Lease, stored: Option<Stored>) {
        let clock = {
            let mut running = self.running.lock().expect("lock poisoned");
            if running.contains_key(&id) || self.shutdown.is_cancelled() {
                return;
            }
            let clock = Arc::new(LeaseClock::new(self.trusted_until(Instant::now())));
            running.insert(id, clock.clone());
            clock
        };
        let this = self.clone();
        let span = info_span!("saga", saga_id = %id, generation = lease.generation);
        self.tasks.spawn(
            async move {
                // Leaves the running set however the task ends, a panic included, so its
                // lease is never renewed for a saga nobody drives.
                let _running = Running { inner: &this, id };
                let driven = AssertUnwindSafe(this.drive(id, &lease, &clock, stored))
                    .catch_unwind()
                    .await
                    .unwrap_or(Err(Stop::Panicked));
                match driven {
                    Ok(()) => {}
                    Err(Stop::LeaseLost) => {
                        metrics::counter!("tether_saga_leases_lost_total").increment(1);
                        info!("lease lost; another replica continues the saga")
                    }
                    Err(Stop::NotLeader) => {
                        metrics::counter!("tether_saga_paused_not_leader_total").increment(1);
                        match this.gate.epoch() {
                            None => info!("the region does not lead; the saga is left to the leading region"),
                            // The gate is open yet the store refused the epoch: a newer
                            // leader committed, or the fence outlived a reset of the epochs.
                            Some(epoch) => warn!(epoch = %epoch, "the store holds a newer epoch than this region's; the saga is left to the leading region (see docs/failover.md if this persists)"),
                        }
                    }
                    Err(Stop::Shutdown) => info!("stopped for shutdown; another replica continues the saga"),
                    Err(Stop::UnknownSaga(name)) => {
                        warn!(saga = %name, "no definition for this saga here; leaving it to a replica that has one")
                    }
                    Err(Stop::Panicked) => {
                        metrics::counter!("tether_saga_panics_total").increment(1);
                        tracing::error!(retry_in = ?this.config.stuck_retry, "the saga engine panicked; the saga is released and retried later");
                        let retry = this.config.stuck_retry;
                        if let Err(e) = this.store.saga_release(id, &lease, retry).await {
                            warn!(error = %tether_model::ErrorChain(&e), "could not release the saga's lease; it expires on its own");
                        }
                    }
                }
            }
            .instrument(span),
        );
    }

    /// A slot to run a saga of `def`: the executor's, then the definition's own, if any.
    async fn slots(
        &self,
        def: &SagaDef<C>,
    ) -> Option<(OwnedSemaphorePermit, Option<OwnedSemaphorePermit>)> {
        let overall = self.slots.clone().acquire_owned().await.ok()?;
        let own = match &def.slots {
            Some(slots) => Some(slots.clone().acquire_owned().await.ok()?),
            None => None,
        };
        Some((overall, own))
    }

    /// The instant until which a lease renewed (or taken) at `sent` may be trusted.
    fn trusted_until(&self, sent: Instant) -> Instant {
        sent.checked_add(self.trusted_lease()).unwrap_or(sent)
    }

    /// How long after sending a renewal we still trust the lease: its TTL minus a margin, so we
    /// stop before anyone else may adopt (they wait for the full TTL after the commit).
    fn trusted_lease(&self) -> Duration {
        self.config.lease_ttl.mul_f64(0.8)
    }

    /// The epoch to commit with, read right before the commit. A closed gate counts as a
    /// stale epoch: no commit of this replica may happen.
    fn epoch(&self) -> Result<Epoch, SagaStoreError> {
        self.gate.epoch().ok_or(SagaStoreError::StaleEpoch)
    }

    async fn renew_leases(&self) {
        // Not leading: the leases run out, and with them the sagas' clocks here.
        if self.gate.epoch().is_none() {
            return;
        }
        let (ids, clocks): (Vec<SagaId>, Vec<Arc<LeaseClock>>) = {
            let running = self.running.lock().expect("lock poisoned");
            running.iter().map(|(id, c)| (*id, c.clone())).unzip()
        };
        if ids.is_empty() {
            return;
        }
        let sent = Instant::now();
        match self
            .store
            .saga_renew_leases(&self.me, &ids, self.config.lease_ttl)
            .await
        {
            Ok(held) => {
                for (id, clock) in ids.iter().zip(clocks) {
                    if held.contains(id) {
                        clock.extend(self.trusted_until(sent));
                    } else if !clock.ending.load(Ordering::Acquire) {
                        clock.revoke();
                    }
                }
            }
            // The clocks run out on their own; the sagas stop before anyone can adopt them.
            Err(e) => warn!(error = %tether_model::ErrorChain(&e), "lease renewal failed"),
        }
    }

    async fn adopt_expired(self: &Arc<Self>) {
        if self.gate.epoch().is_none() {
            return;
        }
        // Take no more than this replica can run now: others with free slots adopt the rest.
        let free = self.slots.available_permits().min(32);
        if free == 0 {
            return;
        }
        match self
            .store
            .saga_adopt_expired(&self.me, self.config.lease_ttl, free as u32)
            .await
        {
            Ok(adopted) => {
                for (id, lease) in adopted {
                    metrics::counter!("tether_saga_adoptions_total").increment(1);
                    info!(saga_id = %id, generation = lease.generation, "adopted saga");
                    self.spawn(id, lease, None);
                }
            }
            Err(e) => warn!(error = %tether_model::ErrorChain(&e), "saga adoption failed"),
        }
    }

    async fn drive(
        &self,
        id: SagaId,
        lease: &Lease,
        clock: &LeaseClock,
        stored: Option<Stored>,
    ) -> Result<(), Stop> {
        let (record, events) = match stored {
            Some(Stored { record, events }) => (record, events),
            None => self.with_store(clock, || self.store.saga_load(id)).await?,
        };
        if &record.lease != lease {
            return Err(Stop::LeaseLost);
        }
        if record.state.is_terminal() {
            return Ok(());
        }
        let def = self
            .defs
            .get(record.name.as_str())
            .ok_or_else(|| Stop::UnknownSaga(record.name.clone()))?;
        let _slots = tokio::select! {
            biased;
            _ = clock.lost() => return Err(Stop::LeaseLost),
            _ = self.shutdown.cancelled() => return Err(Stop::Shutdown),
            slots = self.slots(def) => slots.ok_or(Stop::Shutdown)?,
        };
        let names = def.step_names();
        let mut run = Run {
            inner: self,
            def,
            id,
            lease,
            clock,
            started_through: log::last_touched(&names, &events).unwrap_or(0),
            unlogged: Vec::new(),
            names,
            params: Arc::new(record.params.clone()),
            outputs: Arc::new(log::outputs(&events)),
        };
        match log::position(&run.names, &record, &events) {
            Position::Forward { next } => run.forward(next, record.cancel_requested).await,
            Position::Unwind { pending, error } => run.unwind(pending, error).await,
        }
    }

    /// Calls the store, retrying backend failures while the lease is still trusted.
    async fn with_store<T, F, Fut>(&self, clock: &LeaseClock, mut call: F) -> Result<T, Stop>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SagaStoreError>>,
    {
        let mut attempt = 0;
        loop {
            // A store call that hangs must not outlive the lease: past it, another replica
            // may own the saga, and this one has to stop.
            let result = tokio::select! {
                biased;
                _ = clock.lost() => return Err(Stop::LeaseLost),
                r = call() => r,
            };
            match result {
                Ok(v) => return Ok(v),
                Err(SagaStoreError::Fenced | SagaStoreError::NotFound) => {
                    clock.revoke();
                    return Err(Stop::LeaseLost);
                }
                Err(SagaStoreError::StaleEpoch) => {
                    clock.revoke();
                    return Err(Stop::NotLeader);
                }
                Err(SagaStoreError::Backend(e)) => {
                    warn!(error = %tether_model::ErrorChain(e.as_ref()), "saga store call failed; retrying");
                    let delay = self.backoff(attempt);
                    tokio::select! {
                        biased;
                        _ = clock.lost() => return Err(Stop::LeaseLost),
                        _ = self.shutdown.cancelled() => return Err(Stop::Shutdown),
                        _ = tokio::time::sleep(delay) => {}
                    }
                    attempt += 1;
                }
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .config
            .backoff_base
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.config.backoff_max);
        let millis = cap.as_millis().max(1) as u64;
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
    }
}

/// One drive of one saga.
struct Run<'a, C> {
    inner: &'a Inner<C>,
    def: &'a SagaDef<C>,
    id: SagaId,
    lease: &'a Lease,
    clock: &'a LeaseClock,
    names: Vec<&'static str>,
    params: Arc<Value>,
    /// Shared with the running step's context; copied only if a step is still holding it.
    outputs: Arc<std::collections::BTreeMap<String, Value>>,
    /// The last step the log has (or the pending commit will have) as started: past the
    /// step running now when it is one of a tail run in one commit.
    started_through: usize,
    /// Outputs of the tail's steps that succeeded since the last commit, for the next one.
    unlogged: Vec<SagaEvent>,
}

impl<C: Send + Sync + 'static> Run<'_, C> {
    fn cx(&self) -> StepCx<C> {
        StepCx {
            saga_id: self.id,
            params: self.params.clone(),
            outputs: self.outputs.clone(),
            ctx: self.inner.ctx.clone(),
        }
    }

    fn set_output(&mut self, step: &str, output: &Value) {
        Arc::make_mut(&mut self.outputs).insert(step.to_string(), output.clone());
    }

    /// From step `k` on, the steps that can tell they have nothing to do: each is logged as
    /// started and succeeded in `events` (the commit the caller is about to make) instead of
    /// a commit of its own. Returns the first step that must run (`names.len()`: none).
    /// Nothing is lost by a crash before that commit: a skipped step did nothing, and the
    /// next run decides again.
    fn skip_idle(&mut self, mut k: usize, events: &mut Vec<SagaEvent>) -> usize {
        while let Some(step) = self.def.steps.get(k).cloned() {
            let name = self.names[k];
            let Some(output) = step.skip(&self.cx()) else {
                break;
            };
            crash_point(self.def.name, name, "before");
            debug!(step = name, "nothing to do; step skipped");
            crash_point(self.def.name, name, "after");
            self.set_output(name, &output);
            if k > self.started_through {
                events.push(SagaEvent::new(name, EventKind::Started));
            }
            events.push(SagaEvent::with_data(name, EventKind::Succeeded, output));
            k += 1;
        }
        k
    }

    /// The events of the next commit: the tail's outputs not logged yet, then `more`.
    fn with_unlogged(&mut self, more: impl IntoIterator<Item = SagaEvent>) -> Vec<SagaEvent> {
        let mut events = std::mem::take(&mut self.unlogged);
        events.extend(more);
        events
    }

    /// Records that the saga unwinds with `error` from step `k` on (with `failed`, the event
    /// of `k`'s failure) and unwinds every step logged as started, the newest first.
    async fn unwind_from(
        &mut self,
        k: usize,
        failed: Option<SagaEvent>,
        error: StepError,
    ) -> Result<(), Stop> {
        let last = k.max(self.started_through);
        let undo = SagaEvent::new(self.names[last], EventKind::UndoStarted);
        let events = self.with_unlogged(failed.into_iter().chain([undo]));
        self.record(&events, Some((SagaState::Unwinding, Some(&error))))
            .await?;
        self.unwind((0..=last).rev().collect(), error).await
    }

    async fn forward(&mut self, next: usize, mut cancel: bool) -> Result<(), Stop> {
        let n = self.names.len();
        let mut k = next;
        while k < n {
            let name = self.names[k];
            if cancel {
                let error = StepError::permanent(CANCELED, "the operation was canceled");
                return self.unwind_from(k, None, error).await;
            }
            let step = self.def.steps[k].clone();
            let cx = self.cx();
            debug!(step = name, "running step");
            crash_point(self.def.name, name, "before");
            let mut result = self
                .attempt(self.inner.config.step_timeout, || step.run(&cx))
                .await;
            if self.inner.config.repeat_each_step && result.is_ok() {
                result = self
                    .attempt(self.inner.config.step_timeout, || step.run(&cx))
                    .await;
            }
            drop(cx);
            crash_point(self.def.name, name, "after");
            match result {
                Ok(output) => {
                    self.set_output(name, &output);
                    let mut events = self.with_unlogged([SagaEvent::with_data(
                        name,
                        EventKind::Succeeded,
                        output,
                    )]);
                    k = self.skip_idle(k + 1, &mut events);
                    if k == n {
                        let last = self.outputs.get(self.names[n - 1]).cloned();
                        let outcome = SagaOutcome::Succeeded(last.unwrap_or(Value::Null));
                        return self.finish(&events, outcome).await;
                    }
                    if k <= self.started_through {
                        // Inside a tail run in one commit: logged as started already.
                        self.unlogged = events;
                        continue;
                    }
                    let through = match self.def.together_from {
                        Some(tail) if k >= tail => n - 1,
                        _ => k,
                    };
                    events.extend(
                        (k..=through).map(|j| SagaEvent::new(self.names[j], EventKind::Started)),
                    );
                    self.started_through = through;
                    cancel = self.record(&events, None).await?.cancel_requested;
                }
                Err(Failure::Stop(stop)) => return Err(stop),
                Err(Failure::Step(error)) => {
                    warn!(step = name, code = %error.code, message = %error.message, "step failed; unwinding");
                    let data = serde_json::to_value(&error).expect("step errors serialize");
                    let failed = SagaEvent::with_data(name, EventKind::Failed, data);
                    return self.unwind_from(k, Some(failed), error).await;
                }
            }
        }
        // Every step succeeded but the end was not recorded (we crashed right before it).
        let last = self
            .outputs
            .get(self.names[n - 1])
            .cloned()
            .unwrap_or(Value::Null);
        self.finish(&[], SagaOutcome::Succeeded(last)).await
    }

    async fn unwind(&mut self, pending: Vec<usize>, error: StepError) -> Result<(), Stop> {
        let outcome = if error.code == CANCELED {
            SagaOutcome::Canceled(error)
        } else {
            SagaOutcome::Failed(error)
        };
        for (i, &j) in pending.iter().enumerate() {
            let name = self.names[j];
            let step = self.def.steps[j].clone();
            let cx = self.cx();
            debug!(step = name, "undoing step");
            crash_point(self.def.name, name, "undo-before");
            let mut result = self
                .attempt(self.inner.config.undo_timeout, || step.undo(&cx))
                .await;
            if self.inner.config.repeat_each_step && result.is_ok() {
                result = self
                    .attempt(self.inner.config.undo_timeout, || step.undo(&cx))
                    .await;
            }
            crash_point(self.def.name, name, "undo-after");
            match result {
                Ok(()) => {
                    let done = SagaEvent::new(name, EventKind::UndoFinished);
                    match pending.get(i + 1) {
                        None => return self.finish(&[done], outcome).await,
                        Some(&next) => {
                            let started = SagaEvent::new(self.names[next], EventKind::UndoStarted);
                            self.record(&[done, started], None).await?;
                        }
                    }
                }
                Err(Failure::Stop(stop)) => return Err(stop),
                Err(Failure::Step(undo_error)) => {
                    warn!(
                        step = name,
                        code = %undo_error.code,
                        message = %undo_error.message,
                        retry_in = ?self.inner.config.stuck_retry,
                        "undo keeps failing; the saga is stuck until a reconciler retries it"
                    );
                    let data = serde_json::to_value(&undo_error).expect("step errors serialize");
                    let events = [SagaEvent::with_data(name, EventKind::UndoFailed, data)];
                    let store = &self.inner.store;
                    let stuck = Some((SagaState::Stuck, None));
                    let ttl = self.inner.config.stuck_retry;
                    self.inner
                        .with_store(self.clock, || async {
                            let epoch = self.inner.epoch()?;
                            store
                                .saga_record(self.id, self.lease, ttl, &events, stuck, epoch)
                                .await
                        })
                        .await?;
                    self.clock.revoke();
                    metrics::counter!("tether_saga_stuck_total", "saga" => self.def.name)
                        .increment(1);
                    return Ok(());
                }
            }
        }
        self.finish(&[], outcome).await
    }

    /// Runs `op`, retrying transient errors with backoff until `timeout`, and gives up at
    /// once if the lease can no longer be trusted or the process shuts down. A panic inside
    /// `op` is a permanent error of the step (its message stays in the logs).
    async fn attempt<T, F, Fut>(&self, timeout: Duration, mut op: F) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StepError>>,
    {
        let start = Instant::now();
        let deadline = start.checked_add(timeout).unwrap_or(start);
        let mut attempt = 0;
        loop {
            if self.inner.gate.epoch().is_none() {
                return Err(Failure::Stop(Stop::NotLeader));
            }
            let result = tokio::select! {
                biased;
                _ = self.clock.lost() => return Err(Failure::Stop(Stop::LeaseLost)),
                _ = self.inner.shutdown.cancelled() => return Err(Failure::Stop(Stop::Shutdown)),
                r = AssertUnwindSafe(op()).catch_unwind() => r.unwrap_or_else(|_| Err(panicked())),
            };
            let error = match result {
                Ok(v) => return Ok(v),
                Err(e) if e.transient => e,
                Err(e) => return Err(Failure::Step(e)),
            };
            // A server's Retry-After may be absurd: a wait past the deadline ends the retries.
            let delay = self
                .inner
                .backoff(attempt)
                .max(error.retry_after.unwrap_or_default());
            let retry_at = Instant::now().checked_add(delay);
            if retry_at.is_none_or(|at| at > deadline) {
                return Err(Failure::Step(StepError {
                    transient: false,
                    ..error
                }));
            }
            debug!(code = %error.code, ?delay, "transient step error; retrying");
            metrics::counter!("tether_saga_step_retries_total", "saga" => self.def.name)
                .increment(1);
            tokio::select! {
                biased;
                _ = self.clock.lost() => return Err(Failure::Stop(Stop::LeaseLost)),
                _ = self.inner.shutdown.cancelled() => return Err(Failure::Stop(Stop::Shutdown)),
                _ = tokio::time::sleep(delay) => {}
            }
            attempt += 1;
        }
    }

    async fn record(
        &self,
        events: &[SagaEvent],
        state: Option<(SagaState, Option<&StepError>)>,
    ) -> Result<crate::store::Ack, Stop> {
        let sent = Instant::now();
        let store = &self.inner.store;
        let ttl = self.inner.config.lease_ttl;
        let ack = self
            .inner
            .with_store(self.clock, || async {
                let epoch = self.inner.epoch()?;
                store
                    .saga_record(self.id, self.lease, ttl, events, state, epoch)
                    .await
            })
            .await?;
        self.clock.extend(self.inner.trusted_until(sent));
        Ok(ack)
    }

    async fn finish(&self, events: &[SagaEvent], outcome: SagaOutcome) -> Result<(), Stop> {
        let store = &self.inner.store;
        self.clock.ending.store(true, Ordering::Release);
        let ended = self
            .inner
            .with_store(self.clock, || async {
                let epoch = self.inner.epoch()?;
                store
                    .saga_finish(self.id, self.lease, events, &outcome, epoch)
                    .await
            })
            .await?;
        let result = outcome.state().as_str();
        metrics::counter!("tether_saga_outcomes_total", "saga" => self.def.name, "outcome" => result).increment(1);
        match &outcome {
            SagaOutcome::Succeeded(_) => info!(saga = self.def.name, "saga succeeded"),
            SagaOutcome::Failed(e) | SagaOutcome::Canceled(e) => {
                info!(saga = self.def.name, code = %e.code, "saga unwound")
            }
        }
        if ended.chain_waits {
            self.inner.finished.notify_one();
        }
        Ok(())
    }
}

/// The error a panicking step becomes: permanent, so the saga unwinds (or, in an undo, is
/// marked stuck and retried later).
fn panicked() -> StepError {
    StepError::permanent(
        "InternalServerError",
        "the step failed unexpectedly; its changes are being undone",
    )
}

/// Removes a saga from the running set when its task ends, however it ends.
struct Running<'a, C> {
    inner: &'a Inner<C>,
    id: SagaId,
}

impl<C> Drop for Running<'_, C> {
    fn drop(&mut self) {
        if let Ok(mut running) = self.inner.running.lock() {
            running.remove(&self.id);
        }
    }
}

/// How long this replica may still trust its lease on one saga.
struct LeaseClock {
    valid_until: Mutex<Instant>,
    revoked: tokio::sync::Notify,
    /// Set once the saga's final commit is sent. A renewal that then misses the saga may be
    /// seeing that very commit, not an adoption, so it does not revoke the lease: the commit
    /// is conditional on the lease, and a real loss comes back from it as fenced.
    ending: AtomicBool,
}

impl LeaseClock {
    fn new(until: Instant) -> Self {
        Self {
            valid_until: Mutex::new(until),
            revoked: tokio::sync::Notify::new(),
            ending: AtomicBool::new(false),
        }
    }

    fn extend(&self, until: Instant) {
        let mut v = self.valid_until.lock().expect("lock poisoned");
        if until > *v {
            *v = until;
        }
    }

    fn revoke(&self) {
        *self.valid_until.lock().expect("lock poisoned") = Instant::now();
        self.revoked.notify_waiters();
    }

    /// Resolves once the lease can no longer be trusted.
    async fn lost(&self) {
        loop {
            let until = *self.valid_until.lock().expect("lock poisoned");
            if Instant::now() >= until {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = self.revoked.notified() => {}
            }
        }
    }
}

/// Aborts the process at a named point when `TETHER_CRASH_POINT=<saga>:<step>:<when>` is set
/// (`when`: `before`, `after`, `undo-before`, `undo-after`; the application adds
/// `<saga>:begin:after`, right after the commit that starts a saga). Compiled only with the
/// `crash-points` feature, which release builds never enable.
#[cfg(feature = "crash-points")]
pub fn crash_point(saga: &str, step: &str, when: &str) {
    if std::env::var("TETHER_CRASH_POINT").is_ok_and(|p| p == format!("{saga}:{step}:{when}")) {
        eprintln!("crash point {saga}:{step}:{when} reached; aborting");
        std::process::abort();
    }
}

/// Without the `crash-points` feature: nothing.
#[cfg(not(feature = "crash-points"))]
pub fn crash_point(_saga: &str, _step: &str, _when: &str) {}
