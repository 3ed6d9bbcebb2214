//! The prober's decision function (STYLE §8): [`decide`] turns what the prober knows
//! ([`RegionHealth`]) and what it just saw ([`Observation`]) into what to do next
//! ([`Decision`]). It reads no clock and no network — time comes in as
//! [`Observation::now`] — so every transition and every refusal is covered by table tests.
//!
//! Two things are tracked:
//!
//! - the **health** of the active region, with hysteresis: `Up` → `Suspect` on a failed
//!   probe → `Down` after [`Policy::failure_threshold`] consecutive failures spanning at
//!   least [`Policy::min_down_window`]; back through `Recovering`
//!   ([`Policy::recovery_threshold`] successes over [`Policy::min_recovery_window`]) to `Up`;
//! - the **failover phase**, the sequence of DESIGN §5 as explicit states:
//!   `Idle` → `StepDownRequested` → `FenceWait` → `LagGate` → `Promoting` →
//!   `TakingLeadership` → `SwitchingDns` → `Done`.
//!
//! Every action is idempotent and is repeated until an observation shows its effect, so the
//! shell is a plain reconciler: observe, decide, act, repeat. A prober that restarts in the
//! middle resumes from what etcd, Postgres and DNS say (a recorded step-down request puts it
//! back into the fence wait).
//!
//! Safety rules encoded here (the split-brain argument is in `docs/failover.md`):
//! - nothing is promoted before the active region's leader key has been vacant for a whole
//!   lease TTL plus [`Policy::fence_margin`], measured from when the prober first saw it
//!   vacant: every holder of that lease fenced itself before that instant;
//! - if the active region keeps its lease despite the step-down request (it is alive as far
//!   as etcd can tell — the prober may be the one cut off), the failover is aborted;
//! - promotion is refused when the standby is unreachable, or lags beyond the bounds,
//!   or its lag is unknown, unless an operator overrides the lag gate.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::types::{Epoch, RegionName, ServiceRecord};

/// The prober's settings for one pair. Built once from configuration; see
/// [`Policy::default_for`] for the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The region that is active now (the one probed).
    pub active: RegionName,
    /// Its standby, promoted on failover.
    pub standby: RegionName,
    /// The standby's public addresses: what the service's DNS name points at after failover.
    pub standby_addrs: BTreeSet<Ipv4Addr>,
    /// Consecutive failed probes before the active region is `Down` (default 3).
    pub failure_threshold: u32,
    /// The first and the last of those failures must be at least this far apart
    /// (default 8 s: three probes 5 s apart, with room for tick jitter).
    pub min_down_window: Duration,
    /// Consecutive good probes before a `Down` region is `Up` again (default 3).
    pub recovery_threshold: u32,
    /// The first and the last of those successes must be at least this far apart (default 8 s).
    pub min_recovery_window: Duration,
    /// The leader lease's TTL (default 10 s; must match the replicas' setting).
    pub lease_ttl: Duration,
    /// Extra wait after the TTL, for clock-rate differences between machines (default 1 s).
    pub fence_margin: Duration,
    /// How long the active region may keep its lease after being asked to step down before
    /// the failover is aborted (default 3 × TTL).
    pub step_down_timeout: Duration,
    /// Largest replication lag, in bytes of WAL, that still allows automatic promotion
    /// (default 16 MiB).
    pub max_lag_bytes: u64,
    /// Largest replication lag, in time, that still allows automatic promotion (default 1 s,
    /// the async-mode RPO goal of DESIGN §5).
    pub max_lag_delay: Duration,
    /// Whether the prober fails over on its own (default true). When false it only reports,
    /// and an operator starts the failover ([`OperatorInput::failover_now`]).
    pub automatic: bool,
}

impl Policy {
    /// Checks the settings are within sane bounds (they come from configuration).
    pub fn validate(&self) -> Result<(), &'static str> {
        let hour = Duration::from_secs(3600);
        if self.active == self.standby {
            return Err("the active and the standby region must differ");
        }
        if self.standby_addrs.is_empty() || self.standby_addrs.len() > 64 {
            return Err("give the standby 1 to 64 addresses");
        }
        if !(1..=100).contains(&self.failure_threshold)
            || !(1..=100).contains(&self.recovery_threshold)
        {
            return Err("thresholds must be between 1 and 100");
        }
        if self.min_down_window > hour || self.min_recovery_window > hour {
            return Err("windows must be at most an hour");
        }
        if self.lease_ttl < crate::leader::MIN_TTL || self.lease_ttl > crate::leader::MAX_TTL {
            return Err("lease ttl must be between 2 s and 120 s");
        }
        if self.fence_margin > Duration::from_secs(60) {
            return Err("fence margin must be at most 60 s");
        }
        if self.step_down_timeout < self.lease_ttl + self.fence_margin
            || self.step_down_timeout > hour
        {
            return Err("step-down timeout must be between ttl + margin and an hour");
        }
        if self.max_lag_delay > hour {
            return Err("max lag delay must be at most an hour");
        }
        Ok(())
    }

    /// The defaults of DESIGN §5 for a pair.
    pub fn default_for(
        active: RegionName,
        standby: RegionName,
        standby_addrs: BTreeSet<Ipv4Addr>,
    ) -> Self {
        let lease_ttl = Duration::from_secs(10);
        Self {
            active,
            standby,
            standby_addrs,
            failure_threshold: 3,
            min_down_window: Duration::from_secs(8),
            recovery_threshold: 3,
            min_recovery_window: Duration::from_secs(8),
            lease_ttl,
            fence_margin: Duration::from_secs(1),
            step_down_timeout: lease_ttl * 3,
            max_lag_bytes: 16 * 1024 * 1024,
            max_lag_delay: Duration::from_secs(1),
            automatic: true,
        }
    }
}

/// The result of one probe of the active region (deep check + synthetic journey).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The journey completed in time.
    Ok,
    /// It failed or timed out.
    Failed,
}

/// Who holds the pair's leader key, as far as the prober can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderObservation {
    /// etcd could not be read.
    Unknown,
    /// Nobody holds it.
    Vacant,
    /// `region` holds it, since `epoch`.
    Held {
        /// The holder.
        region: RegionName,
        /// Its epoch.
        epoch: Epoch,
    },
}

/// The standby database's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbRole {
    /// Accepts writes (promoted, or never a standby).
    Primary,
    /// In recovery, replaying the primary's WAL.
    Standby,
}

/// How far behind the primary the standby was at the last measurement (from the primary's
/// `pg_stat_replication`, taken while it was still reachable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LagSample {
    /// WAL the primary has written that the standby has not flushed.
    pub bytes: u64,
    /// The primary's measure of the flush delay.
    pub delay: Duration,
    /// The standby was a synchronous standby: every acknowledged commit is on it.
    pub synchronous: bool,
}

/// What the prober knows about the standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandbyObservation {
    /// Its database's role; `None` when it could not be reached.
    pub role: Option<DbRole>,
    /// The last lag measurement; `None` when there is none.
    pub lag: Option<LagSample>,
}

/// What an operator asked for (read by the shell from etcd or the prober's admin endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OperatorInput {
    /// Start the failover now, whatever the health (and even when not automatic).
    pub failover_now: bool,
    /// Promote even when the lag gate would refuse (accepting data loss).
    pub override_lag_gate: bool,
}

/// Everything one tick of the prober saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// When (the prober's monotonic clock).
    pub now: Instant,
    /// The probe of the active region; `None` when this observation has no new probe result
    /// (the shell observes again right after acting, without probing again), which leaves
    /// the health as it was.
    pub probe: Option<ProbeOutcome>,
    /// The pair's leader key.
    pub leader: LeaderObservation,
    /// A step-down request naming the active region is recorded in etcd.
    pub step_down_recorded: bool,
    /// The standby.
    pub standby: StandbyObservation,
    /// The service's DNS record; `None` when it could not be read.
    pub dns: Option<ServiceRecord>,
    /// Operator input.
    pub operator: OperatorInput,
}

/// The health of the active region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Probes pass.
    Up,
    /// `failures` consecutive probes failed, the first at `since`.
    Suspect {
        /// Consecutive failures so far.
        failures: u32,
        /// When the first of them was seen.
        since: Instant,
    },
    /// Declared down.
    Down,
    /// `successes` consecutive probes passed after being down, the first at `since`.
    Recovering {
        /// Consecutive successes so far.
        successes: u32,
        /// When the first of them was seen.
        since: Instant,
    },
}

impl Health {
    /// The state's name, for logs and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Suspect { .. } => "suspect",
            Health::Down => "down",
            Health::Recovering { .. } => "recovering",
        }
    }
}

/// The failover sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Watching.
    Idle,
    /// Asking the active region to step down (until etcd records the request), since `at`.
    StepDownRequested {
        /// When the failover started.
        at: Instant,
    },
    /// Waiting until the active region's lease is gone and every holder has fenced itself.
    FenceWait {
        /// When the failover started.
        requested_at: Instant,
        /// When the leader key was first seen vacant.
        vacant_since: Option<Instant>,
    },
    /// The active region is fenced; checking the standby's lag before promoting it.
    LagGate,
    /// Promoting the standby's database, since `since`.
    Promoting {
        /// When promotion was first asked for.
        since: Instant,
    },
    /// Taking the leader key for the standby region.
    TakingLeadership,
    /// Pointing the service's DNS name at the standby, for `epoch`.
    SwitchingDns {
        /// The standby's new epoch.
        epoch: Epoch,
    },
    /// The standby is active at `epoch`. Failback is a planned, operator-started
    /// switchover; the prober does nothing more for this pair.
    Done {
        /// The new epoch.
        epoch: Epoch,
    },
    /// The failover was abandoned before promotion. The step-down request is removed;
    /// the failover starts again if the region is down with its leader key vacant, and
    /// ends when the region is up.
    Aborted {
        /// Why.
        reason: AbortReason,
    },
}

/// Why a failover was abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortReason {
    /// The active region kept its lease for [`Policy::step_down_timeout`] after being asked
    /// to step down: etcd still hears from it, so the prober may be the one cut off.
    ActiveStillLeads,
    /// The active region came back up (through `Recovering`) before anything was promoted.
    ActiveRecovered,
}

impl Phase {
    /// The phase's name, for logs and metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::StepDownRequested { .. } => "step_down_requested",
            Phase::FenceWait { .. } => "fence_wait",
            Phase::LagGate => "lag_gate",
            Phase::Promoting { .. } => "promoting",
            Phase::TakingLeadership => "taking_leadership",
            Phase::SwitchingDns { .. } => "switching_dns",
            Phase::Done { .. } => "done",
            Phase::Aborted { .. } => "aborted",
        }
    }

    /// Whether the old active region can still come back without a failback (nothing has
    /// been promoted yet).
    fn before_promotion(&self) -> bool {
        matches!(
            self,
            Phase::StepDownRequested { .. } | Phase::FenceWait { .. } | Phase::LagGate
        )
    }
}

/// Why the prober does not go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The active region is down but automatic failover is off.
    AutomaticFailoverDisabled,
    /// The standby's database cannot be reached.
    StandbyUnreachable,
    /// The standby's database is not in recovery before any promotion: something else
    /// promoted it, and an operator must look.
    StandbyNotInRecovery,
    /// No lag measurement of the standby exists.
    LagUnknown,
    /// The standby lags beyond the bounds.
    LagTooHigh {
        /// Bytes behind.
        bytes: u64,
        /// Time behind.
        delay: Duration,
    },
    /// The active region kept its lease after being asked to step down.
    ActiveStillLeads,
    /// A region other than the standby took the leader key after the step-down.
    LeaderKeyTakenByOther,
}

/// What changed, for logs and metrics ("report transitions, not raw probes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The active region's health changed.
    Health {
        /// From.
        from: &'static str,
        /// To.
        to: &'static str,
    },
    /// The failover moved on.
    Phase {
        /// From.
        from: &'static str,
        /// To.
        to: &'static str,
    },
    /// The prober started refusing to go on, for this reason.
    Refused(Refusal),
}

/// Something for the shell to do. Each is idempotent; the shell does it and observes again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Record a step-down request naming [`Policy::active`] in etcd (its leaders release the
    /// lease, and its replicas stop campaigning while the request stands).
    RequestStepDown,
    /// Remove the step-down request: the active region may lead again.
    ClearStepDown,
    /// Promote the standby's database (`pg_promote()`; a no-op if already promoted).
    Promote,
    /// Take the pair's leader key for [`Policy::standby`] (create it if vacant).
    TakeLeadership,
    /// Compare-and-swap the service's DNS record.
    SwitchDns {
        /// What it must be now.
        expected: ServiceRecord,
        /// What it becomes.
        new: ServiceRecord,
    },
}

/// What the prober carries from one tick to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionHealth {
    /// The active region's health.
    pub health: Health,
    /// The failover's progress.
    pub phase: Phase,
    /// The refusal in force, if any (reported once, when it starts).
    pub refusal: Option<Refusal>,
}

impl Default for RegionHealth {
    fn default() -> Self {
        Self {
            health: Health::Up,
            phase: Phase::Idle,
            refusal: None,
        }
    }
}

/// The outcome of one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The state for the next tick.
    pub next: RegionHealth,
    /// What to do now, if anything.
    pub action: Option<Action>,
    /// What changed.
    pub transitions: Vec<Transition>,
}

/// Decides what to do after an observation. Pure: same inputs, same decision.
pub fn decide(state: &RegionHealth, obs: Observation, policy: &Policy) -> Decision {
    let mut transitions = Vec::new();
    let health = next_health(state.health, &obs, policy);
    if health.name() != state.health.name() {
        transitions.push(Transition::Health {
            from: state.health.name(),
            to: health.name(),
        });
    }

    // Phases that complete on this observation lead straight into the next one, so a
    // single tick can go from the end of the fence wait to asking for promotion. Bounded:
    // the sequence has fewer steps than this.
    let recovered = matches!(state.health, Health::Recovering { .. }) && health == Health::Up;
    let mut phase = state.phase;
    let (mut action, mut refusal) = (None, None);
    for _ in 0..10 {
        match step(phase, health, recovered, &obs, policy) {
            Step::Go { to, action: then } => {
                if to.name() != phase.name() {
                    transitions.push(Transition::Phase {
                        from: phase.name(),
                        to: to.name(),
                    });
                }
                phase = to;
                if then.is_some() {
                    action = then;
                    break;
                }
            }
            Step::Stay {
                action: then,
                refusal: refused,
            } => {
                action = then;
                refusal = refused;
                break;
            }
        }
    }
    if let Some(r) = refusal {
        if state.refusal != Some(r) {
            transitions.push(Transition::Refused(r));
        }
    }
    Decision {
        next: RegionHealth {
            health,
            phase,
            refusal,
        },
        action,
        transitions,
    }
}

fn next_health(health: Health, obs: &Observation, p: &Policy) -> Health {
    let now = obs.now;
    let down_after = |failures: u32, since: Instant| {
        if failures >= p.failure_threshold
            && now.saturating_duration_since(since) >= p.min_down_window
        {
            Health::Down
        } else {
            Health::Suspect { failures, since }
        }
    };
    let up_after = |successes: u32, since: Instant| {
        if successes >= p.recovery_threshold
            && now.saturating_duration_since(since) >= p.min_recovery_window
        {
            Health::Up
        } else {
            Health::Recovering { successes, since }
        }
    };
    let Some(probe) = obs.probe else {
        return health;
    };
    match (health, probe) {
        (Health::Up, ProbeOutcome::Ok) => Health::Up,
        (Health::Up, ProbeOutcome::Failed) => down_after(1, now),
        (Health::Suspect { .. }, ProbeOutcome::Ok) => Health::Up,
        (Health::Suspect { failures, since }, ProbeOutcome::Failed) => {
            down_after(failures.saturating_add(1), since)
        }
        (Health::Down, ProbeOutcome::Ok) => up_after(1, now),
        (Health::Down, ProbeOutcome::Failed) => Health::Down,
        (Health::Recovering { successes, since }, ProbeOutcome::Ok) => {
            up_after(successes.saturating_add(1), since)
        }
        (Health::Recovering { .. }, ProbeOutcome::Failed) => Health::Down,
    }
}

enum Step {
    /// Move to another phase, doing `action` (if any) there.
    Go { to: Phase, action: Option<Action> },
    /// Stay, possibly (re)doing `action`, possibly refusing.
    Stay {
        action: Option<Action>,
        refusal: Option<Refusal>,
    },
}

fn stay(action: Option<Action>) -> Step {
    Step::Stay {
        action,
        refusal: None,
    }
}

fn refuse(refusal: Refusal) -> Step {
    Step::Stay {
        action: None,
        refusal: Some(refusal),
    }
}

fn step(phase: Phase, health: Health, recovered: bool, obs: &Observation, p: &Policy) -> Step {
    let now = obs.now;
    // Before anything is promoted, a region that came back up ends the failover.
    if phase.before_promotion() && recovered && !obs.operator.failover_now {
        return Step::Go {
            to: Phase::Aborted {
                reason: AbortReason::ActiveRecovered,
            },
            action: Some(Action::ClearStepDown),
        };
    }
    match phase {
        Phase::Idle => {
            if obs.step_down_recorded {
                // A step-down request stands (a restarted prober, or another prober of the
                // pair): resume from the fence wait, measuring it afresh.
                return Step::Go {
                    to: Phase::FenceWait {
                        requested_at: now,
                        vacant_since: None,
                    },
                    action: None,
                };
            }
            if health != Health::Down && !obs.operator.failover_now {
                return stay(None);
            }
            if !p.automatic && !obs.operator.failover_now {
                return refuse(Refusal::AutomaticFailoverDisabled);
            }
            match obs.standby.role {
                None => refuse(Refusal::StandbyUnreachable),
                Some(DbRole::Primary) => refuse(Refusal::StandbyNotInRecovery),
                Some(DbRole::Standby) => Step::Go {
                    to: Phase::StepDownRequested { at: now },
                    action: Some(Action::RequestStepDown),
                },
            }
        }
        Phase::StepDownRequested { at } => {
            if obs.step_down_recorded {
                Step::Go {
                    to: Phase::FenceWait {
                        requested_at: at,
                        vacant_since: None,
                    },
                    action: None,
                }
            } else {
                stay(Some(Action::RequestStepDown))
            }
        }
        Phase::FenceWait {
            requested_at,
            vacant_since,
        } => match &obs.leader {
            LeaderObservation::Unknown => stay(None),
            LeaderObservation::Held { region, epoch } if *region == p.standby => {
                // Someone (another prober of the pair) already finished promotion and took
                // the key: carry on from there.
                Step::Go {
                    to: Phase::SwitchingDns { epoch: *epoch },
                    action: None,
                }
            }
            LeaderObservation::Held { region, .. } if *region == p.active => {
                if now.saturating_duration_since(requested_at) >= p.step_down_timeout {
                    Step::Go {
                        to: Phase::Aborted {
                            reason: AbortReason::ActiveStillLeads,
                        },
                        action: Some(Action::ClearStepDown),
                    }
                } else if vacant_since.is_some() {
                    // The key came back: the wait starts over when it goes again.
                    Step::Go {
                        to: Phase::FenceWait {
                            requested_at,
                            vacant_since: None,
                        },
                        action: None,
                    }
                } else {
                    stay(Some(Action::RequestStepDown))
                }
            }
            LeaderObservation::Held { .. } => refuse(Refusal::LeaderKeyTakenByOther),
            LeaderObservation::Vacant => {
                let since = vacant_since.unwrap_or(now);
                if now.saturating_duration_since(since) >= p.lease_ttl + p.fence_margin {
                    Step::Go {
                        to: Phase::LagGate,
                        action: None,
                    }
                } else if vacant_since.is_none() {
                    Step::Go {
                        to: Phase::FenceWait {
                            requested_at,
                            vacant_since: Some(now),
                        },
                        action: None,
                    }
                } else {
                    stay(None)
                }
            }
        },
        Phase::LagGate => match obs.standby.role {
            None => refuse(Refusal::StandbyUnreachable),
            // Promoted already (by us before a restart, or by another prober): the lag
            // gate no longer applies.
            Some(DbRole::Primary) => Step::Go {
                to: Phase::TakingLeadership,
                action: None,
            },
            Some(DbRole::Standby) => {
                let gate = match obs.standby.lag {
                    None => Err(Refusal::LagUnknown),
                    Some(lag) if lag.synchronous => Ok(()),
                    Some(lag) if lag.bytes <= p.max_lag_bytes && lag.delay <= p.max_lag_delay => {
                        Ok(())
                    }
                    Some(lag) => Err(Refusal::LagTooHigh {
                        bytes: lag.bytes,
                        delay: lag.delay,
                    }),
                };
                match gate {
                    Err(refusal) if !obs.operator.override_lag_gate => refuse(refusal),
                    _ => Step::Go {
                        to: Phase::Promoting { since: now },
                        action: Some(Action::Promote),
                    },
                }
            }
        },
        Phase::Promoting { .. } => match obs.standby.role {
            Some(DbRole::Primary) => Step::Go {
                to: Phase::TakingLeadership,
                action: Some(Action::TakeLeadership),
            },
            _ => stay(Some(Action::Promote)),
        },
        Phase::TakingLeadership => match &obs.leader {
            LeaderObservation::Held { region, epoch } if *region == p.standby => Step::Go {
                to: Phase::SwitchingDns { epoch: *epoch },
                action: switch_dns(obs, p, *epoch),
            },
            LeaderObservation::Held { .. } => refuse(Refusal::LeaderKeyTakenByOther),
            LeaderObservation::Vacant => stay(Some(Action::TakeLeadership)),
            LeaderObservation::Unknown => stay(None),
        },
        Phase::SwitchingDns { epoch } => match &obs.dns {
            None => stay(None),
            Some(record) if record.addrs == p.standby_addrs && record.epoch >= Some(epoch) => {
                Step::Go {
                    to: Phase::Done { epoch },
                    action: None,
                }
            }
            // A newer leader already wrote DNS: our switch is obsolete.
            Some(record) if record.epoch > Some(epoch) => Step::Go {
                to: Phase::Done { epoch },
                action: None,
            },
            Some(_) => stay(switch_dns(obs, p, epoch)),
        },
        Phase::Done { .. } => stay(None),
        Phase::Aborted { reason } => {
            if obs.step_down_recorded {
                stay(Some(Action::ClearStepDown))
            } else if health == Health::Up {
                Step::Go {
                    to: Phase::Idle,
                    action: None,
                }
            } else if health == Health::Down && obs.leader == LeaderObservation::Vacant {
                Step::Go {
                    to: Phase::StepDownRequested { at: now },
                    action: Some(Action::RequestStepDown),
                }
            } else if reason == AbortReason::ActiveStillLeads {
                refuse(Refusal::ActiveStillLeads)
            } else {
                stay(None)
            }
        }
    }
}

/// The DNS switch for `epoch`, when the current record is known and not already newer.
fn switch_dns(obs: &Observation, p: &Policy, epoch: Epoch) -> Option<Action> {
    let current = obs.dns.as_ref()?;
    if current.epoch > Some(epoch)
        || (current.addrs == p.standby_addrs && current.epoch == Some(epoch))
    {
        return None;
    }
    Some(Action::SwitchDns {
        expected: current.clone(),
        new: ServiceRecord {
            addrs: p.standby_addrs.clone(),
            epoch: Some(epoch),
        },
    })
}

#[cfg(test)]
mod tests;
