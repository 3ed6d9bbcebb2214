//! Leadership of a region pair in etcd, and fencing (DESIGN §5).
//!
//! Two keys per pair, under `{prefix}/pairs/{pair}/`:
//!
//! - `leader` — the name of the leading region, attached to an etcd lease. Its
//!   `create_revision` is the pair's [`Epoch`]: every new leader creates the key afresh, so
//!   epochs only grow.
//! - `step-down/{region}` — a request that `region` step down and not campaign while the
//!   request stands (one key per region, so a request for one region never lifts
//!   another's). The prober writes it ([`PairControl::request_step_down`]); the region's
//!   members watch it and release the key; an operator removes it at failback
//!   ([`PairControl::clear_step_down`]). This is how "ask the current leader to step down"
//!   works: a well-known key the leader watches, rather than a lease revoke by the
//!   controller, so that the request also keeps the old region — whose database may still
//!   be a writable, diverged primary — from campaigning again.
//!
//! Every replica of a region runs a [`Leadership`] member. The members of one region share
//! one lease: the first to find the key vacant creates it under a fresh lease (a
//! transaction: create only if absent and the step-down key did not change); the others
//! find it holding their region's name and keep the same lease alive. Any of them keeps
//! the region leading, and each one fences itself on its own.
//!
//! **Self-fencing.** A member is [`LeaderState::Leader`] only while a keep-alive it *sent*
//! at `t` has been confirmed with TTL `ttl` and `now < t + ttl`. etcd restarts the lease's
//! clock when it *receives* the keep-alive (after `t`), so the lease cannot expire — and
//! nobody else can create the key — before `t + ttl`: the member is fenced before anyone can
//! take over. [`Leadership::epoch_if_leader`] checks that deadline against the clock on
//! every call, so a stalled task cannot keep a stale `Leader` state alive.
//!
//! A member also stops leading at once when it sees the key deleted or rewritten, or a
//! step-down request naming its region. Stopping the member (cancel) does not release the
//! key: the region's other replicas may still hold it. [`Leadership::step_down`] does.

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue, PutOptions, Txn,
    TxnOp, WatchOptions, WatchStream,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use crate::types::{Epoch, PairName, RegionName};

/// Shortest lease TTL accepted (etcd's own floor is about 1.5 s with default timings).
pub const MIN_TTL: Duration = Duration::from_secs(2);
/// Longest lease TTL accepted.
pub const MAX_TTL: Duration = Duration::from_secs(120);
/// The default lease TTL (DESIGN §5).
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/tether";
/// Longest key prefix accepted.
const MAX_PREFIX_LEN: usize = 200;
/// Most endpoints accepted.
const MAX_ENDPOINTS: usize = 16;

/// Errors of leadership.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The configuration is invalid.
    #[error("invalid leadership configuration: {0}")]
    InvalidConfig(&'static str),
    /// etcd answered with an error or could not be reached.
    #[error("etcd request failed")]
    Etcd(#[source] etcd_client::Error),
    /// etcd did not answer in time.
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    /// A key holds something that is not a region name.
    #[error("the etcd key '{key}' holds an invalid value")]
    Corrupt {
        /// The key.
        key: String,
    },
    /// The member's task has stopped.
    #[error("the leadership member has stopped")]
    Stopped,
}

/// Where the pair's keys are and how to reach etcd.
#[derive(Debug, Clone)]
pub struct PairKeys {
    /// etcd client URLs (`http://127.0.0.1:2379`, …).
    pub endpoints: Vec<String>,
    /// Key prefix (default `/tether`).
    pub prefix: String,
    /// The pair.
    pub pair: PairName,
}

impl PairKeys {
    fn validate(&self) -> Result<(), LeaderError> {
        if self.endpoints.is_empty() || self.endpoints.len() > MAX_ENDPOINTS {
            return Err(LeaderError::InvalidConfig(
                "etcd endpoints: give 1 to 16 URLs",
            ));
        }
        if !self.prefix.starts_with('/')
            || self.prefix.len() > MAX_PREFIX_LEN
            || self.prefix.ends_with('/')
        {
            return Err(LeaderError::InvalidConfig(
                "etcd prefix: start with '/', no trailing '/', at most 200 characters",
            ));
        }
        Ok(())
    }

    fn dir(&self) -> String {
        format!("{}/pairs/{}/", self.prefix, self.pair)
    }

    /// The leader key.
    pub fn leader_key(&self) -> String {
        format!("{}leader", self.dir())
    }

    /// The key of a step-down request for `region`.
    pub fn step_down_key(&self, region: &RegionName) -> String {
        format!("{}step-down/{region}", self.dir())
    }
}

/// A member's configuration.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// The pair's keys.
    pub keys: PairKeys,
    /// This member's region.
    pub region: RegionName,
    /// The lease TTL for leases this member creates (default 10 s, 2–120 s).
    pub ttl: Duration,
}

impl LeaderConfig {
    /// A configuration with the default prefix and TTL.
    pub fn new(endpoints: Vec<String>, pair: PairName, region: RegionName) -> Self {
        Self {
            keys: PairKeys {
                endpoints,
                prefix: DEFAULT_PREFIX.to_string(),
                pair,
            },
            region,
            ttl: DEFAULT_TTL,
        }
    }

    fn validate(&self) -> Result<(), LeaderError> {
        self.keys.validate()?;
        if self.ttl < MIN_TTL || self.ttl > MAX_TTL {
            return Err(LeaderError::InvalidConfig(
                "lease ttl must be between 2 s and 120 s",
            ));
        }
        Ok(())
    }

    /// How long one etcd request may take: a quarter of the TTL, so that several
    /// keep-alives fit in one TTL.
    fn request_timeout(&self) -> Duration {
        self.ttl / 4
    }
}

/// What a member knows about the pair's leadership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderState {
    /// This member's region leads at `epoch`, and the lease is confirmed.
    Leader {
        /// The epoch.
        epoch: Epoch,
    },
    /// Another region leads (`leader`, at `epoch`), or nobody does (`None`).
    Follower {
        /// The leading region.
        leader: Option<RegionName>,
        /// Its epoch.
        epoch: Option<Epoch>,
    },
    /// This member must not write: it lost leadership or could not confirm it in time, and
    /// does not know yet who leads. Also the state before the first look at etcd.
    Fenced,
}

/// The published state, with the instant leadership stops being confirmed.
#[derive(Debug, Clone)]
struct Published {
    state: LeaderState,
    valid_until: Option<Instant>,
    /// The latest `valid_until` ever published (kept after fencing).
    confirmed_until: Option<Instant>,
    /// When `state` was published.
    since: Instant,
}

enum Command {
    StepDown(oneshot::Sender<Result<(), LeaderError>>),
}

/// One member of a region's leadership: campaigns, keeps the lease alive, fences itself.
/// Runs in its own task until the cancellation token fires or the handle is dropped.
pub struct Leadership {
    state: watch::Receiver<Published>,
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
    /// Dropping the handle stops the member too (without releasing the key).
    _stop: tokio_util::sync::DropGuard,
}

impl Leadership {
    /// Starts a member. `eligible` says whether it may *create* the leader key when it is
    /// vacant (the server sets it while its database is writable); joining a key that
    /// already names the member's region needs no eligibility. Connects lazily and retries
    /// forever: etcd being down only keeps it from leading.
    pub fn start(
        config: LeaderConfig,
        eligible: watch::Receiver<bool>,
        cancel: CancellationToken,
    ) -> Result<Self, LeaderError> {
        config.validate()?;
        let cancel = cancel.child_token();
        let stop = cancel.clone().drop_guard();
        let (state_tx, state) = watch::channel(Published {
            state: LeaderState::Fenced,
            valid_until: None,
            confirmed_until: None,
            since: Instant::now(),
        });
        let (commands, command_rx) = mpsc::channel(4);
        let member = Member {
            config,
            eligible,
            cancel,
            state: state_tx,
            commands: command_rx,
        };
        let task = tokio::spawn(member.run());
        Ok(Self {
            state,
            commands,
            task,
            _stop: stop,
        })
    }

    /// The current state.
    pub fn state(&self) -> LeaderState {
        self.state.borrow().state.clone()
    }

    /// The epoch to write with, if this member leads *now*: the state is `Leader` and its
    /// last confirmed keep-alive has not run out. Writers call it right before each commit.
    pub fn epoch_if_leader(&self) -> Option<Epoch> {
        let published = self.state.borrow();
        match (&published.state, published.valid_until) {
            (LeaderState::Leader { epoch }, Some(until)) if Instant::now() < until => Some(*epoch),
            _ => None,
        }
    }

    /// The instant up to which this member's leadership was last confirmed (the sent-time
    /// of its last confirmed keep-alive plus the TTL), kept after it is fenced: it never
    /// counted itself leader after this instant. `None` if it never led.
    pub fn confirmed_until(&self) -> Option<Instant> {
        self.state.borrow().confirmed_until
    }

    /// A receiver of state changes.
    pub fn subscribe(&self) -> StateWatch {
        StateWatch(self.state.clone())
    }

    /// Releases leadership: records a step-down request naming this member's region (so
    /// that no member of it campaigns again until an operator clears it) and revokes the
    /// lease (deleting the leader key). Ok when done or when the region did not lead.
    pub async fn step_down(&self) -> Result<(), LeaderError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::StepDown(tx))
            .await
            .map_err(|_| LeaderError::Stopped)?;
        rx.await.map_err(|_| LeaderError::Stopped)?
    }

    /// Waits until the member's task has ended (after cancellation).
    pub async fn stopped(self) {
        let Self { task, _stop, .. } = self;
        // Keep the guard until the task ends: waiting must not be what stops it.
        let _ = task.await;
        drop(_stop);
    }
}

/// Watches a member's state.
#[derive(Debug, Clone)]
pub struct StateWatch(watch::Receiver<Published>);

impl StateWatch {
    /// The current state.
    pub fn current(&self) -> LeaderState {
        self.0.borrow().state.clone()
    }

    /// The current state and when it was published.
    pub fn current_since(&self) -> (LeaderState, Instant) {
        let published = self.0.borrow();
        (published.state.clone(), published.since)
    }

    /// Waits for the next change and returns the new state; `None` once the member stopped.
    pub async fn changed(&mut self) -> Option<LeaderState> {
        self.0.changed().await.ok()?;
        Some(self.current())
    }
}

/// What one read of the pair's keys found.
#[derive(Debug, Clone)]
struct View {
    revision: i64,
    leader: Option<KeyValue>,
    /// Regions asked to step down, with the mod revision of their request.
    step_downs: Vec<(RegionName, i64)>,
}

impl View {
    fn barred(&self, region: &RegionName) -> bool {
        self.step_downs.iter().any(|(r, _)| r == region)
    }

    /// The mod revision of `region`'s step-down request, 0 when there is none (what etcd
    /// compares a missing key's mod revision with).
    fn step_down_revision(&self, region: &RegionName) -> i64 {
        self.step_downs
            .iter()
            .find(|(r, _)| r == region)
            .map(|(_, rev)| *rev)
            .unwrap_or(0)
    }
}

async fn connect(keys: &PairKeys, request_timeout: Duration) -> Result<Client, LeaderError> {
    let options = ConnectOptions::new()
        .with_connect_timeout(request_timeout)
        .with_timeout(request_timeout)
        .with_keep_alive(request_timeout, request_timeout)
        // A member cut off from the etcd leader must not be told stale things.
        .with_require_leader(true);
    timeout(
        request_timeout,
        Client::connect(&keys.endpoints, Some(options)),
    )
    .await
    .map_err(|_| LeaderError::Timeout(request_timeout))?
    .map_err(LeaderError::Etcd)
}

async fn bounded<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, LeaderError> {
    timeout(limit, call)
        .await
        .map_err(|_| LeaderError::Timeout(limit))?
        .map_err(LeaderError::Etcd)
}

fn region_of(kv: &KeyValue) -> Result<RegionName, LeaderError> {
    std::str::from_utf8(kv.value())
        .ok()
        .and_then(|v| RegionName::parse(v).ok())
        .ok_or_else(|| LeaderError::Corrupt {
            key: String::from_utf8_lossy(kv.key())
                .chars()
                .take(200)
                .collect(),
        })
}

async fn read_view(
    client: &mut Client,
    keys: &PairKeys,
    limit: Duration,
) -> Result<View, LeaderError> {
    let response = bounded(
        limit,
        client.get(keys.dir(), Some(GetOptions::new().with_prefix())),
    )
    .await?;
    let revision = response.header().map(|h| h.revision()).unwrap_or_default();
    let leader_key = keys.leader_key();
    let step_down_dir = format!("{}step-down/", keys.dir());
    let mut view = View {
        revision,
        leader: None,
        step_downs: Vec::new(),
    };
    for kv in response.kvs() {
        if kv.key() == leader_key.as_bytes() {
            view.leader = Some(kv.clone());
        } else if let Some(name) = kv.key().strip_prefix(step_down_dir.as_bytes()) {
            let region = std::str::from_utf8(name)
                .ok()
                .and_then(|n| RegionName::parse(n).ok())
                .ok_or_else(|| LeaderError::Corrupt {
                    key: String::from_utf8_lossy(kv.key())
                        .chars()
                        .take(200)
                        .collect(),
                })?;
            view.step_downs.push((region, kv.mod_revision()));
        }
    }
    Ok(view)
}

/// Why a member stopped leading.
enum LeadEnd {
    /// Cancelled.
    Cancelled,
    /// Lost or gave up: look again.
    Lost,
}

struct Member {
    config: LeaderConfig,
    eligible: watch::Receiver<bool>,
    cancel: CancellationToken,
    state: watch::Sender<Published>,
    commands: mpsc::Receiver<Command>,
}

impl Member {
    fn publish(&self, state: LeaderState, valid_until: Option<Instant>) {
        self.state.send_if_modified(|p| {
            let changed = p.state != state;
            if changed {
                tracing::info!(
                    region = %self.config.region,
                    pair = %self.config.keys.pair,
                    from = ?p.state,
                    to = ?state,
                    "leadership changed"
                );
                p.since = Instant::now();
            }
            p.state = state;
            p.valid_until = valid_until;
            p.confirmed_until = p.confirmed_until.max(valid_until);
            changed
        });
    }

    async fn run(mut self) {
        let limit = self.config.request_timeout();
        let mut backoff = Duration::from_millis(100);
        let mut client: Option<Client> = None;
        loop {
            if self.cancel.is_cancelled() {
                break;
            }
            let result = async {
                let c = match client.as_mut() {
                    Some(c) => c,
                    None => client.insert(connect(&self.config.keys, limit).await?),
                };
                let view = read_view(c, &self.config.keys, limit).await?;
                Ok::<_, LeaderError>((c.clone(), view))
            }
            .await;
            let (mut c, view) = match result {
                Ok(ok) => {
                    backoff = Duration::from_millis(100);
                    ok
                }
                Err(error) => {
                    tracing::warn!(region = %self.config.region, error = %ErrorChain(&error), "cannot read the leader key");
                    client = None;
                    if self.pause(backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(limit);
                    continue;
                }
            };
            let barred = view.barred(&self.config.region);
            let ours = view
                .leader
                .as_ref()
                .is_some_and(|kv| kv.value() == self.config.region.as_str().as_bytes());
            let end = match &view.leader {
                Some(kv) if ours && !barred && kv.lease() != 0 => {
                    match Epoch::from_revision(kv.create_revision()) {
                        Some(epoch) => {
                            Some(self.lead(&mut c, kv.lease(), epoch, view.revision).await)
                        }
                        None => None,
                    }
                }
                None if !barred && *self.eligible.borrow() => {
                    match self.campaign(&mut c, &view).await {
                        Ok(Some((lease, epoch))) => {
                            Some(self.lead(&mut c, lease, epoch, epoch.get() as i64).await)
                        }
                        Ok(None) => continue,
                        Err(error) => {
                            tracing::warn!(region = %self.config.region, error = %ErrorChain(&error), "campaign failed");
                            client = None;
                            if self.pause(backoff).await {
                                break;
                            }
                            continue;
                        }
                    }
                }
                _ => None,
            };
            match end {
                Some(LeadEnd::Cancelled) => break,
                Some(LeadEnd::Lost) => {
                    // Look again, but never in a tight loop.
                    if self.pause(Duration::from_millis(100)).await {
                        break;
                    }
                    continue;
                }
                None => {}
            }
            // Not leading: publish who does and wait for something to change.
            let (leader, epoch) = match &view.leader {
                Some(kv) => (
                    region_of(kv).ok(),
                    Epoch::from_revision(kv.create_revision()),
                ),
                None => (None, None),
            };
            self.publish(LeaderState::Follower { leader, epoch }, None);
            if self.wait_for_change(&mut c, view.revision).await {
                break;
            }
        }
        self.publish(LeaderState::Fenced, None);
    }

    /// Sleeps, answering commands; true if cancelled.
    async fn pause(&mut self, duration: Duration) -> bool {
        let until = Instant::now() + duration;
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return true,
                _ = sleep_until(until) => return false,
                Some(command) = self.commands.recv() => self.not_leading(command),
            }
        }
    }

    fn not_leading(&self, command: Command) {
        match command {
            // Not leading: nothing to release. The request is recorded by the prober,
            // not by a member that does not lead.
            Command::StepDown(reply) => {
                let _ = reply.send(Ok(()));
            }
        }
    }

    /// Waits until the pair's keys change after `revision`, eligibility changes, a TTL
    /// passes (a safety net), or cancellation; true if cancelled.
    async fn wait_for_change(&mut self, client: &mut Client, revision: i64) -> bool {
        let limit = self.config.request_timeout();
        let until = Instant::now() + self.config.ttl;
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let mut stream = bounded(limit, client.watch(self.config.keys.dir(), Some(options)))
            .await
            .ok();
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return true,
                _ = sleep_until(until) => return false,
                Ok(()) = self.eligible.changed() => return false,
                Some(command) = self.commands.recv() => self.not_leading(command),
                message = next_event(&mut stream) => match message {
                    // Anything at all: look again.
                    Some(_) | None => return false,
                },
            }
        }
    }

    /// Creates the leader key under a fresh lease if it is vacant and the step-down key is
    /// unchanged since `view`. The lease and its epoch if we won.
    async fn campaign(
        &mut self,
        client: &mut Client,
        view: &View,
    ) -> Result<Option<(i64, Epoch)>, LeaderError> {
        let limit = self.config.request_timeout();
        let keys = &self.config.keys;
        let ttl = i64::try_from(self.config.ttl.as_secs()).unwrap_or(i64::MAX);
        let lease = bounded(limit, client.lease_grant(ttl, None)).await?;
        let txn = Txn::new()
            .when([
                Compare::create_revision(keys.leader_key(), CompareOp::Equal, 0),
                Compare::mod_revision(
                    keys.step_down_key(&self.config.region),
                    CompareOp::Equal,
                    view.step_down_revision(&self.config.region),
                ),
            ])
            .and_then([TxnOp::put(
                keys.leader_key(),
                self.config.region.as_str(),
                Some(PutOptions::new().with_lease(lease.id())),
            )]);
        let response = bounded(limit, client.txn(txn)).await;
        let won = match &response {
            Ok(r) if r.succeeded() => r.header().and_then(|h| Epoch::from_revision(h.revision())),
            _ => None,
        };
        if won.is_none() {
            // Lost the race (or failed): the unused lease goes.
            let _ = bounded(limit, client.lease_revoke(lease.id())).await;
        }
        response?;
        Ok(won.map(|epoch| (lease.id(), epoch)))
    }

    /// Leads with `lease` at `epoch` until the lease cannot be confirmed, the key changes,
    /// a step-down is requested, or cancellation.
    async fn lead(
        &mut self,
        client: &mut Client,
        lease: i64,
        epoch: Epoch,
        revision: i64,
    ) -> LeadEnd {
        let limit = self.config.request_timeout();
        let keys = self.config.keys.clone();
        let leader_key = keys.leader_key();
        let step_down_key = keys.step_down_key(&self.config.region);
        // `valid_until` is the fencing deadline: sent-time of the last confirmed
        // keep-alive plus the TTL etcd granted.
        let mut valid_until: Option<Instant> = None;
        let mut keeper: Option<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)> =
            None;
        let mut in_flight: Option<Instant> = None;
        let mut next_keep_alive = Instant::now();
        let mut interval = self.config.ttl / 3;
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let mut watch = bounded(limit, client.watch(keys.dir(), Some(options)))
            .await
            .ok();
        // When to try again to watch, while there is no watch.
        let mut watch_retry_at = Instant::now() + Duration::from_millis(500);
        let far = || Instant::now() + Duration::from_secs(3600);

        let end = loop {
            // The soonest of: the fencing deadline, the next keep-alive, a stuck one.
            let fence_at = valid_until.unwrap_or_else(far);
            let send_at = if in_flight.is_some() {
                far()
            } else {
                next_keep_alive
            };
            let stuck_at = in_flight.map(|t| t + limit).unwrap_or_else(far);
            tokio::select! {
                _ = self.cancel.cancelled() => break LeadEnd::Cancelled,
                _ = sleep_until(fence_at), if valid_until.is_some() => {
                    tracing::warn!(region = %self.config.region, %epoch, "lease not confirmed in time: fenced");
                    break LeadEnd::Lost;
                }
                _ = sleep_until(stuck_at), if in_flight.is_some() => {
                    // No answer: start a new stream at once.
                    keeper = None;
                    in_flight = None;
                    next_keep_alive = Instant::now();
                }
                _ = sleep_until(send_at), if in_flight.is_none() => {
                    let sent_at = Instant::now();
                    if keeper.is_none() {
                        match bounded(limit, client.lease_keep_alive(lease)).await {
                            Ok(k) => keeper = Some(k),
                            Err(error) => {
                                if lease_gone(&error) {
                                    tracing::warn!(region = %self.config.region, %epoch, "lease gone: fenced");
                                    break LeadEnd::Lost;
                                }
                                next_keep_alive = Instant::now() + interval.min(Duration::from_millis(500));
                                continue;
                            }
                        }
                    }
                    if let Some((k, _)) = keeper.as_mut() {
                        if k.keep_alive().await.is_ok() {
                            in_flight = Some(sent_at);
                        } else {
                            keeper = None;
                            next_keep_alive = Instant::now();
                        }
                    }
                }
                answer = next_keep_alive_answer(&mut keeper), if keeper.is_some() => match answer {
                    Some(ttl) if ttl > 0 => {
                        if let Some(sent_at) = in_flight.take() {
                            let granted = Duration::from_secs(ttl.unsigned_abs());
                            valid_until = Some(sent_at + granted);
                            interval = granted / 3;
                            next_keep_alive = sent_at + interval;
                            self.publish(LeaderState::Leader { epoch }, valid_until);
                        }
                    }
                    Some(_) => {
                        tracing::warn!(region = %self.config.region, %epoch, "lease expired: fenced");
                        break LeadEnd::Lost;
                    }
                    None => {
                        keeper = None;
                        in_flight = None;
                        next_keep_alive = Instant::now();
                    }
                },
                event = next_event(&mut watch), if watch.is_some() => match event {
                    Some(events) => {
                        let mut lost = false;
                        let mut asked = false;
                        for (kind, kv) in events {
                            if kv.key() == leader_key.as_bytes()
                                && (kind == EventType::Delete
                                    || kv.create_revision() != epoch.get() as i64
                                    || kv.value() != self.config.region.as_str().as_bytes())
                            {
                                lost = true;
                            }
                            if kv.key() == step_down_key.as_bytes() && kind == EventType::Put {
                                asked = true;
                            }
                        }
                        if lost {
                            tracing::warn!(region = %self.config.region, %epoch, "leader key gone or taken: fenced");
                            break LeadEnd::Lost;
                        }
                        if asked {
                            tracing::info!(region = %self.config.region, %epoch, "step-down requested: releasing the lease");
                            self.publish(LeaderState::Fenced, None);
                            let _ = bounded(limit, client.lease_revoke(lease)).await;
                            break LeadEnd::Lost;
                        }
                    }
                    None => {
                        // The watch broke (or was cancelled by a compaction): watch again.
                        watch = None;
                        watch_retry_at = Instant::now();
                    }
                },
                // TODO-robustness: these calls hold up the loop for up to two request
                // timeouts; `epoch_if_leader` checks the deadline itself, so this only delays
                // keep-alives, never extends leadership.
                _ = sleep_until(watch_retry_at), if watch.is_none() => {
                    // Re-check the key (we may have missed events), then watch from there.
                    match read_view(client, &keys, limit).await {
                        Ok(view) => {
                            let still_ours = view.leader.as_ref().is_some_and(|kv| {
                                kv.create_revision() == epoch.get() as i64 && kv.lease() == lease
                            });
                            if !still_ours {
                                tracing::warn!(region = %self.config.region, %epoch, "leader key gone or taken: fenced");
                                break LeadEnd::Lost;
                            }
                            if view.barred(&self.config.region) {
                                tracing::info!(region = %self.config.region, %epoch, "step-down requested: releasing the lease");
                                self.publish(LeaderState::Fenced, None);
                                let _ = bounded(limit, client.lease_revoke(lease)).await;
                                break LeadEnd::Lost;
                            }
                            let options = WatchOptions::new()
                                .with_prefix()
                                .with_start_revision(view.revision + 1);
                            watch = bounded(limit, client.watch(keys.dir(), Some(options))).await.ok();
                        }
                        Err(_) => watch = None,
                    }
                    watch_retry_at = Instant::now() + Duration::from_millis(500);
                }
                Some(command) = self.commands.recv() => match command {
                    Command::StepDown(reply) => {
                        self.publish(LeaderState::Fenced, None);
                        let result = self.release(client, lease).await;
                        let _ = reply.send(result);
                        break LeadEnd::Lost;
                    }
                },
            }
        };
        self.publish(LeaderState::Fenced, None);
        end
    }

    /// Records the step-down request for our region, then revokes the lease.
    async fn release(&self, client: &mut Client, lease: i64) -> Result<(), LeaderError> {
        let limit = self.config.request_timeout();
        bounded(
            limit,
            client.put(
                self.config.keys.step_down_key(&self.config.region),
                "member",
                None,
            ),
        )
        .await?;
        match bounded(limit, client.lease_revoke(lease)).await {
            Err(LeaderError::Etcd(e)) if lease_gone(&e) => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

fn lease_gone(error: &impl std::fmt::Display) -> bool {
    let text = error.to_string();
    text.contains("lease not found") || text.contains("requested lease not found")
}

/// The next keep-alive answer's TTL; `None` when the stream ended or failed.
async fn next_keep_alive_answer(
    keeper: &mut Option<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)>,
) -> Option<i64> {
    match keeper {
        Some((_, stream)) => match stream.message().await {
            Ok(Some(answer)) => Some(answer.ttl()),
            _ => None,
        },
        None => std::future::pending().await,
    }
}

/// The next batch of events (kind, key-value); `None` when the watch ended, failed or was
/// cancelled (compaction); pending forever without a watch.
async fn next_event(stream: &mut Option<WatchStream>) -> Option<Vec<(EventType, KeyValue)>> {
    let Some(s) = stream.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        match s.message().await {
            Ok(Some(response)) if response.canceled() => {
                *stream = None;
                return None;
            }
            Ok(Some(response)) => {
                let events: Vec<_> = response
                    .events()
                    .iter()
                    .filter_map(|e| e.kv().map(|kv| (e.event_type(), kv.clone())))
                    .collect();
                if !events.is_empty() {
                    return Some(events);
                }
                // A "created" or progress notification: keep reading.
            }
            _ => {
                *stream = None;
                return None;
            }
        }
    }
}

/// The prober's handle on a pair: reads who leads, asks a region to step down, takes the
/// key for the standby. Holds no lease of its own beyond [`PairControl::take`].
#[derive(Clone)]
pub struct PairControl {
    client: Client,
    keys: PairKeys,
    limit: Duration,
}

impl std::fmt::Debug for PairControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairControl")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl PairControl {
    /// Connects (each request bounded by `request_timeout`, at most 30 s).
    pub async fn connect(keys: PairKeys, request_timeout: Duration) -> Result<Self, LeaderError> {
        keys.validate()?;
        if request_timeout.is_zero() || request_timeout > Duration::from_secs(30) {
            return Err(LeaderError::InvalidConfig(
                "request timeout must be between 1 ms and 30 s",
            ));
        }
        let client = connect(&keys, request_timeout).await?;
        Ok(Self {
            client,
            keys,
            limit: request_timeout,
        })
    }

    /// Who leads, at which epoch; `None` when the key is vacant.
    pub async fn leader(&self) -> Result<Option<(RegionName, Epoch)>, LeaderError> {
        let view = read_view(&mut self.client.clone(), &self.keys, self.limit).await?;
        match view.leader {
            None => Ok(None),
            Some(kv) => {
                let epoch = Epoch::from_revision(kv.create_revision()).ok_or_else(|| {
                    LeaderError::Corrupt {
                        key: self.keys.leader_key(),
                    }
                })?;
                Ok(Some((region_of(&kv)?, epoch)))
            }
        }
    }

    /// The regions asked to step down (requests that stand).
    pub async fn step_down_requests(&self) -> Result<Vec<RegionName>, LeaderError> {
        Ok(read_view(&mut self.client.clone(), &self.keys, self.limit)
            .await?
            .step_downs
            .into_iter()
            .map(|(r, _)| r)
            .collect())
    }

    /// Asks `region` to step down: its leading members release the key at once, and none
    /// of its members campaigns while the request stands. Idempotent.
    pub async fn request_step_down(&self, region: &RegionName) -> Result<(), LeaderError> {
        bounded(
            self.limit,
            self.client
                .clone()
                .put(self.keys.step_down_key(region), "prober", None),
        )
        .await?;
        Ok(())
    }

    /// Removes the step-down request for `region` (a failback, or an aborted failover):
    /// its members may campaign again. Idempotent.
    pub async fn clear_step_down(&self, region: &RegionName) -> Result<(), LeaderError> {
        bounded(
            self.limit,
            self.client
                .clone()
                .delete(self.keys.step_down_key(region), None),
        )
        .await?;
        Ok(())
    }

    /// Creates the leader key for `region` if it is vacant, under a fresh lease of `ttl`
    /// that this handle does not keep alive: the region's members find the key naming their
    /// region and keep the lease alive; if none does within `ttl`, the key expires. The
    /// epoch of whoever leads afterwards (ours if we created it).
    pub async fn take(
        &self,
        region: &RegionName,
        ttl: Duration,
    ) -> Result<Option<(RegionName, Epoch)>, LeaderError> {
        if ttl < MIN_TTL || ttl > MAX_TTL {
            return Err(LeaderError::InvalidConfig(
                "lease ttl must be between 2 s and 120 s",
            ));
        }
        let mut client = self.client.clone();
        let view = read_view(&mut client, &self.keys, self.limit).await?;
        if view.leader.is_none() && !view.barred(region) {
            let secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
            let lease = bounded(self.limit, client.lease_grant(secs, None)).await?;
            let txn = Txn::new()
                .when([
                    Compare::create_revision(self.keys.leader_key(), CompareOp::Equal, 0),
                    Compare::mod_revision(
                        self.keys.step_down_key(region),
                        CompareOp::Equal,
                        view.step_down_revision(region),
                    ),
                ])
                .and_then([TxnOp::put(
                    self.keys.leader_key(),
                    region.as_str(),
                    Some(PutOptions::new().with_lease(lease.id())),
                )]);
            let won = bounded(self.limit, client.txn(txn)).await?.succeeded();
            if !won {
                let _ = bounded(self.limit, client.lease_revoke(lease.id())).await;
            }
        }
        self.leader().await
    }
}

/// Displays an error with its sources (`a: b: c`).
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// Waits until `watch` shows a state matching `pred`, or `limit` passes.
pub async fn wait_for_state(
    watch: &mut StateWatch,
    limit: Duration,
    pred: impl Fn(&LeaderState) -> bool,
) -> Option<LeaderState> {
    let deadline = Instant::now() + limit;
    loop {
        let current = watch.current();
        if pred(&current) {
            return Some(current);
        }
        tokio::select! {
            _ = sleep_until(deadline) => return None,
            changed = watch.changed() => changed?,
        };
    }
}
