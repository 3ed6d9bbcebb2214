//! The prober's IO shell (STYLE §8): every interval it observes the pair — the active
//! region's probe, the leader key, the standby database, DNS — hands the observation to
//! [`decide`], logs and counts the transitions, and carries out the decision through four
//! small ports: [`RegionProbe`], [`Promoter`], [`Leadership`] and
//! [`DnsProvider`]. After an action it observes again at once (without probing again), so
//! one tick can run the sequence as far as the world allows.
//!
//! Implementations here: [`Leadership`] for [`PairControl`] (etcd) and [`PgPromoter`]
//! (Postgres through `tether-store`); the real [`RegionProbe`] is
//! [`crate::journey::HttpJourney`].
//!
//! Metrics (transitions only, never raw probes): `tether_failover_health_transitions_total{to}`,
//! `tether_failover_phase_transitions_total{to}`, `tether_failover_refusals_total`,
//! `tether_failover_actions_total{action,outcome}`, `tether_failover_active_down`, and the
//! wall-clock time each health and phase was last entered
//! (`tether_failover_{health,phase}_entered_seconds`), which the drill reads.
//!
//! Stop it with the cancellation token; it finishes the action in progress first (each is
//! bounded by [`ShellConfig::action_timeout`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tether_store::replication::{Promotion, Replication};
use tokio::sync::watch;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use crate::decide::{
    Action, DbRole, Decision, Health, LagSample, LeaderObservation, Observation, OperatorInput,
    Phase, Policy, ProbeOutcome, RegionHealth, StandbyObservation, Transition, decide,
};
use crate::dns::{DnsName, DnsProvider, Swap};
use crate::leader::{ErrorChain, PairControl};
use crate::types::{Epoch, RegionName};

/// Errors of the prober's ports.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The synthetic journey failed at a step.
    #[error("probe failed at {step}: {message}")]
    Journey {
        /// The step (`create`, `get`, …).
        step: &'static str,
        /// What went wrong (safe to log).
        message: String,
    },
    /// A database call failed.
    #[error("database call failed")]
    Database(#[source] tether_store::StoreError),
    /// An etcd call failed.
    #[error("etcd call failed")]
    Leadership(#[source] crate::leader::LeaderError),
    /// A DNS call failed.
    #[error("dns call failed")]
    Dns(#[source] crate::dns::DnsError),
    /// No standby with the expected name is connected to the primary.
    #[error("standby '{0}' is not connected to the primary")]
    StandbyNotConnected(String),
    /// A call did not finish in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// Probes the active region: deep check plus the synthetic user journey. Ok only when the
/// whole journey succeeded.
#[async_trait]
pub trait RegionProbe: Send + Sync + 'static {
    /// One probe. The shell bounds it by [`ShellConfig::probe_timeout`].
    async fn probe(&self) -> Result<(), ProbeError>;
}

/// The standby's database, and the primary's view of the standby's lag.
#[async_trait]
pub trait Promoter: Send + Sync + 'static {
    /// The standby database's role.
    async fn standby_role(&self) -> Result<DbRole, ProbeError>;
    /// The standby's lag as the primary measures it (fails when the primary is down).
    async fn lag(&self) -> Result<LagSample, ProbeError>;
    /// Promotes the standby. Idempotent.
    async fn promote(&self) -> Result<(), ProbeError>;
}

/// The pair's leadership, as the prober drives it.
#[async_trait]
pub trait Leadership: Send + Sync + 'static {
    /// Who leads; `None` when the key is vacant.
    async fn leader(&self) -> Result<Option<(RegionName, Epoch)>, ProbeError>;
    /// Whether a step-down request for `region` stands.
    async fn step_down_requested(&self, region: &RegionName) -> Result<bool, ProbeError>;
    /// Records a step-down request for `region`. Idempotent.
    async fn request_step_down(&self, region: &RegionName) -> Result<(), ProbeError>;
    /// Removes it. Idempotent.
    async fn clear_step_down(&self, region: &RegionName) -> Result<(), ProbeError>;
    /// Takes the leader key for `region` if it is vacant, under a lease of `ttl`.
    /// Idempotent.
    async fn take(&self, region: &RegionName, ttl: Duration) -> Result<(), ProbeError>;
}

/// The shell's own settings (the decision's are in [`Policy`]).
#[derive(Debug, Clone)]
pub struct ShellConfig {
    /// Time between ticks (default 5 s).
    pub interval: Duration,
    /// Bound of one probe (default 2 s).
    pub probe_timeout: Duration,
    /// Bound of one observation call (etcd, Postgres, DNS; default 2 s).
    pub observe_timeout: Duration,
    /// Bound of one action (default 30 s: a promotion may take a while).
    pub action_timeout: Duration,
    /// The service's DNS name.
    pub service_name: DnsName,
    /// TTL of the records written at failover (default 5 s).
    pub record_ttl: Duration,
    /// Most decisions per tick (default 8).
    pub max_steps_per_tick: u32,
}

impl ShellConfig {
    /// Checks the settings are within sane bounds (they come from configuration).
    pub fn validate(&self) -> Result<(), &'static str> {
        let within = |d: Duration, lo_ms: u64, hi_s: u64| {
            d >= Duration::from_millis(lo_ms) && d <= Duration::from_secs(hi_s)
        };
        if !within(self.interval, 100, 600) {
            return Err("interval must be between 100 ms and 10 min");
        }
        if !within(self.probe_timeout, 10, 60) || self.probe_timeout > self.interval {
            return Err("probe timeout must be between 10 ms and 60 s, and at most the interval");
        }
        if !within(self.observe_timeout, 10, 60) {
            return Err("observe timeout must be between 10 ms and 60 s");
        }
        if !within(self.action_timeout, 100, 600) {
            return Err("action timeout must be between 100 ms and 10 min");
        }
        if !within(self.record_ttl, 1000, 86_400) {
            return Err("record ttl must be between 1 s and one day");
        }
        if self.max_steps_per_tick == 0 || self.max_steps_per_tick > 64 {
            return Err("max steps per tick must be between 1 and 64");
        }
        Ok(())
    }

    /// The defaults of DESIGN §5 for a service name.
    pub fn default_for(service_name: DnsName) -> Self {
        Self {
            interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(2),
            observe_timeout: Duration::from_secs(2),
            action_timeout: Duration::from_secs(30),
            service_name,
            record_ttl: Duration::from_secs(5),
            max_steps_per_tick: 8,
        }
    }
}

/// What the prober publishes (for `/metrics`, the drill's report and tests).
#[derive(Debug, Clone, Default)]
pub struct ProberStatus {
    /// The decision state.
    pub state: RegionHealth,
    /// When each phase was first entered, in order (the failover's timeline).
    pub timeline: Vec<(&'static str, Instant)>,
    /// Actions carried out, in order, with their outcome.
    pub actions: Vec<(Action, Result<(), String>)>,
}

/// The prober for one pair.
pub struct Prober {
    policy: Policy,
    config: ShellConfig,
    probe: Arc<dyn RegionProbe>,
    promoter: Arc<dyn Promoter>,
    leadership: Arc<dyn Leadership>,
    dns: Arc<dyn DnsProvider>,
    operator: watch::Receiver<OperatorInput>,
    status: watch::Sender<ProberStatus>,
    last_lag: Option<LagSample>,
    last_step_down: bool,
}

/// The period of the extra steps between ticks: probes while the active region is suspect,
/// and looks at the leader key while a failover waits for it to go (the fence wait is
/// measured from when the key is first *seen* vacant, so looking only every interval would
/// add up to an interval to every failover).
const QUICK_STEP: Duration = Duration::from_secs(1);

async fn bounded<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, ProbeError>>,
) -> Result<T, ProbeError> {
    timeout(limit, call)
        .await
        .map_err(|_| ProbeError::Timeout(limit))?
}

impl Prober {
    /// A prober. `operator` carries operator input (failover now, lag-gate override).
    pub fn new(
        policy: Policy,
        config: ShellConfig,
        probe: Arc<dyn RegionProbe>,
        promoter: Arc<dyn Promoter>,
        leadership: Arc<dyn Leadership>,
        dns: Arc<dyn DnsProvider>,
        operator: watch::Receiver<OperatorInput>,
    ) -> Self {
        let (status, _) = watch::channel(ProberStatus::default());
        Self {
            policy,
            config,
            probe,
            promoter,
            leadership,
            dns,
            operator,
            status,
            last_lag: None,
            last_step_down: false,
        }
    }

    /// Subscribes to the prober's status.
    pub fn status(&self) -> watch::Receiver<ProberStatus> {
        self.status.subscribe()
    }

    /// Runs until cancelled: one tick every interval, plus extra steps in between: a probe
    /// every [`QUICK_STEP`] while the active region is suspect (so the failures that make
    /// it down come as fast as the policy's window allows, not one interval apart), and,
    /// while a failover waits on the leader key, an observation (without a probe) every
    /// [`QUICK_STEP`] while the key is held and the moment the fence wait can end, so
    /// that the wait does not also wait for the next interval.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut ticks = tokio::time::interval(self.config.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = self.next_wake();
            let (wake_at, probe) = wake.unwrap_or((Instant::now(), false));
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticks.tick() => self.step(true).await,
                _ = tokio::time::sleep_until(wake_at), if wake.is_some() => self.step(probe).await,
            }
        }
    }

    /// When to step again before the next tick, and whether with a probe.
    fn next_wake(&self) -> Option<(Instant, bool)> {
        let soon = Instant::now() + QUICK_STEP.min(self.config.interval);
        let state = &self.status.borrow().state;
        match state.phase {
            Phase::Idle if matches!(state.health, Health::Suspect { .. }) => Some((soon, true)),
            Phase::FenceWait {
                vacant_since: Some(since),
                ..
            } => {
                let at =
                    Instant::from_std(since + self.policy.lease_ttl + self.policy.fence_margin);
                (at > Instant::now()).then_some((at, false))
            }
            Phase::StepDownRequested { .. }
            | Phase::FenceWait {
                vacant_since: None, ..
            } => Some((soon, false)),
            _ => None,
        }
    }

    /// One tick: probe and observe, decide, act; observe again after each action (without
    /// probing) until nothing more is to be done or the per-tick bound is reached.
    pub async fn tick(&mut self) {
        self.step(true).await;
    }

    async fn step(&mut self, probe_first: bool) {
        let mut with_probe = probe_first;
        for _ in 0..self.config.max_steps_per_tick.max(1) {
            let obs = self.observe(with_probe).await;
            with_probe = false;
            let state = self.status.borrow().state.clone();
            let decision = decide(&state, obs, &self.policy);
            self.report(&state, &decision);
            let Decision { next, action, .. } = decision;
            self.status.send_modify(|s| s.state = next);
            match action {
                Some(action) => {
                    let outcome = self.act(&action).await;
                    if let Err(error) = &outcome {
                        tracing::error!(action = ?action, error = %ErrorChain(error), "failover action failed");
                    }
                    metrics::counter!(
                        "tether_failover_actions_total",
                        "action" => action_name(&action),
                        "outcome" => if outcome.is_ok() { "ok" } else { "error" },
                    )
                    .increment(1);
                    let failed = outcome.is_err();
                    self.status.send_modify(|s| {
                        s.actions
                            .push((action, outcome.map_err(|e| ErrorChain(&e).to_string())))
                    });
                    if failed {
                        break;
                    }
                }
                None => break,
            }
        }
    }

    fn report(&self, before: &RegionHealth, decision: &Decision) {
        for transition in &decision.transitions {
            match transition {
                Transition::Health { from, to } => {
                    tracing::warn!(region = %self.policy.active, from, to, "active region health changed");
                    metrics::counter!("tether_failover_health_transitions_total", "to" => *to)
                        .increment(1);
                    metrics::gauge!("tether_failover_health_entered_seconds", "health" => *to)
                        .set(unix_now());
                }
                Transition::Phase { from, to } => {
                    tracing::warn!(active = %self.policy.active, standby = %self.policy.standby, from, to, "failover phase changed");
                    metrics::counter!("tether_failover_phase_transitions_total", "to" => *to)
                        .increment(1);
                    metrics::gauge!("tether_failover_phase_entered_seconds", "phase" => *to)
                        .set(unix_now());
                    let now = Instant::now();
                    self.status.send_modify(|s| s.timeline.push((to, now)));
                }
                Transition::Refused(refusal) => {
                    tracing::error!(active = %self.policy.active, standby = %self.policy.standby, ?refusal, phase = before.phase.name(), "failover refused");
                    metrics::counter!("tether_failover_refusals_total").increment(1);
                }
            }
        }
        let next = &decision.next;
        metrics::gauge!("tether_failover_active_down").set(if next.health.name() == "down" {
            1.0
        } else {
            0.0
        });
    }

    async fn observe(&mut self, with_probe: bool) -> Observation {
        let limit = self.config.observe_timeout;
        let probe = async {
            if !with_probe {
                return None;
            }
            match bounded(self.config.probe_timeout, self.probe.probe()).await {
                Ok(()) => Some(ProbeOutcome::Ok),
                Err(error) => {
                    tracing::info!(region = %self.policy.active, error = %ErrorChain(&error), "probe failed");
                    Some(ProbeOutcome::Failed)
                }
            }
        };
        let leader = bounded(limit, self.leadership.leader());
        let step_down = bounded(
            limit,
            self.leadership.step_down_requested(&self.policy.active),
        );
        let role = bounded(limit, self.promoter.standby_role());
        // The lag is sampled once per tick, with the probe, within a quarter of the bound of
        // the other observations (a healthy primary answers in milliseconds): a dead
        // primary makes the call wait for its whole bound, and the tick's decision, or the
        // observations between ticks (after an action, during the fence wait), must not
        // wait for it too. The last sample stands.
        let lag = async {
            if with_probe {
                Some(bounded(limit / 4, self.promoter.lag()).await)
            } else {
                None
            }
        };
        let dns = bounded(limit, async {
            self.dns
                .read(&self.config.service_name)
                .await
                .map_err(ProbeError::Dns)
        });
        let (probe, leader, step_down, role, lag, dns) =
            tokio::join!(probe, leader, step_down, role, lag, dns);
        if let Some(Ok(lag)) = lag {
            // The last measurement stands when the primary can no longer be asked.
            self.last_lag = Some(lag);
        }
        if let Ok(requested) = step_down {
            self.last_step_down = requested;
        }
        Observation {
            now: Instant::now().into_std(),
            probe,
            leader: match leader {
                Ok(Some((region, epoch))) => LeaderObservation::Held { region, epoch },
                Ok(None) => LeaderObservation::Vacant,
                Err(_) => LeaderObservation::Unknown,
            },
            step_down_recorded: self.last_step_down,
            standby: StandbyObservation {
                role: role.ok(),
                lag: self.last_lag,
            },
            dns: dns.ok(),
            operator: *self.operator.borrow(),
        }
    }

    async fn act(&self, action: &Action) -> Result<(), ProbeError> {
        let limit = self.config.action_timeout;
        tracing::warn!(?action, "failover action");
        match action {
            Action::RequestStepDown => {
                bounded(
                    limit,
                    self.leadership.request_step_down(&self.policy.active),
                )
                .await
            }
            Action::ClearStepDown => {
                bounded(limit, self.leadership.clear_step_down(&self.policy.active)).await
            }
            Action::Promote => bounded(limit, self.promoter.promote()).await,
            Action::TakeLeadership => {
                bounded(
                    limit,
                    self.leadership
                        .take(&self.policy.standby, self.policy.lease_ttl),
                )
                .await
            }
            Action::SwitchDns { expected, new } => {
                let swap = bounded(limit, async {
                    self.dns
                        .compare_and_swap(
                            &self.config.service_name,
                            expected,
                            new,
                            self.config.record_ttl,
                        )
                        .await
                        .map_err(ProbeError::Dns)
                })
                .await?;
                if swap == Swap::PreconditionFailed {
                    // Someone changed it in between: the next observation reads it again.
                    tracing::warn!(name = %self.config.service_name, "dns changed under us; reading it again");
                }
                Ok(())
            }
        }
    }
}

/// Seconds since the Unix epoch, for the `*_entered_seconds` gauges (wall clock, so that
/// the drill can set them against its own timeline; never used for a decision).
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn action_name(action: &Action) -> &'static str {
    match action {
        Action::RequestStepDown => "request_step_down",
        Action::ClearStepDown => "clear_step_down",
        Action::Promote => "promote",
        Action::TakeLeadership => "take_leadership",
        Action::SwitchDns { .. } => "switch_dns",
    }
}

#[async_trait]
impl Leadership for PairControl {
    async fn leader(&self) -> Result<Option<(RegionName, Epoch)>, ProbeError> {
        PairControl::leader(self)
            .await
            .map_err(ProbeError::Leadership)
    }

    async fn step_down_requested(&self, region: &RegionName) -> Result<bool, ProbeError> {
        Ok(self
            .step_down_requests()
            .await
            .map_err(ProbeError::Leadership)?
            .contains(region))
    }

    async fn request_step_down(&self, region: &RegionName) -> Result<(), ProbeError> {
        PairControl::request_step_down(self, region)
            .await
            .map_err(ProbeError::Leadership)
    }

    async fn clear_step_down(&self, region: &RegionName) -> Result<(), ProbeError> {
        PairControl::clear_step_down(self, region)
            .await
            .map_err(ProbeError::Leadership)
    }

    async fn take(&self, region: &RegionName, ttl: Duration) -> Result<(), ProbeError> {
        PairControl::take(self, region, ttl)
            .await
            .map(|_| ())
            .map_err(ProbeError::Leadership)
    }
}

/// [`Promoter`] over Postgres: the standby's role from the standby, the lag from the
/// primary's `pg_stat_replication` (the standby's `application_name`), promotion with
/// `pg_promote`.
#[derive(Debug, Clone)]
pub struct PgPromoter {
    primary: Replication,
    standby: Replication,
    standby_name: String,
    promote_wait: Duration,
}

impl PgPromoter {
    /// Connects lazily to both (the primary may be down when the prober starts).
    /// `standby_name` is the standby's `application_name` on the primary (its
    /// `cluster_name`); `promote_wait` bounds `pg_promote`'s wait.
    pub fn new(
        primary_url: &str,
        standby_url: &str,
        standby_name: &str,
        promote_wait: Duration,
    ) -> Result<Self, ProbeError> {
        Ok(Self {
            primary: Replication::connect_lazy(primary_url).map_err(ProbeError::Database)?,
            standby: Replication::connect_lazy(standby_url).map_err(ProbeError::Database)?,
            standby_name: standby_name.to_string(),
            promote_wait,
        })
    }
}

#[async_trait]
impl Promoter for PgPromoter {
    async fn standby_role(&self) -> Result<DbRole, ProbeError> {
        Ok(
            match self.standby.role().await.map_err(ProbeError::Database)? {
                tether_store::replication::DbRole::Primary => DbRole::Primary,
                tether_store::replication::DbRole::Standby => DbRole::Standby,
            },
        )
    }

    async fn lag(&self) -> Result<LagSample, ProbeError> {
        let replicas = self
            .primary
            .replicas()
            .await
            .map_err(ProbeError::Database)?;
        let replica = replicas
            .iter()
            .find(|r| r.application_name == self.standby_name && r.state == "streaming")
            .ok_or_else(|| ProbeError::StandbyNotConnected(self.standby_name.clone()))?;
        Ok(LagSample {
            // Unknown byte lag counts as the worst: the gate refuses it.
            bytes: replica.flush_lag_bytes.unwrap_or(u64::MAX),
            delay: replica.flush_lag.unwrap_or_default(),
            synchronous: replica.is_synchronous(),
        })
    }

    async fn promote(&self) -> Result<(), ProbeError> {
        match self
            .standby
            .promote(self.promote_wait)
            .await
            .map_err(ProbeError::Database)?
        {
            Promotion::Promoted | Promotion::AlreadyPrimary => Ok(()),
            // Not finished in time: the next observation shows whether it did.
            Promotion::NotYet => Err(ProbeError::Timeout(self.promote_wait)),
        }
    }
}

#[cfg(test)]
mod tests;
