//! Table tests of [`decide`]: every health transition, every phase transition, every refusal.

use super::*;

fn region(name: &str) -> RegionName {
    RegionName::parse(name).unwrap()
}

fn epoch(n: u64) -> Epoch {
    Epoch::new(n).unwrap()
}

const A_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 10);
const B_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 20);

fn policy() -> Policy {
    Policy::default_for(region("a"), region("b"), [B_ADDR].into())
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A fixed origin for the test's clock: only differences matter.
fn t(base: Instant, s: u64) -> Instant {
    base + secs(s)
}

/// A healthy pair: A leads at epoch 5, DNS points at A, B is a standby 1 KiB behind.
fn healthy(now: Instant) -> Observation {
    Observation {
        now,
        probe: Some(ProbeOutcome::Ok),
        leader: LeaderObservation::Held {
            region: region("a"),
            epoch: epoch(5),
        },
        step_down_recorded: false,
        standby: StandbyObservation {
            role: Some(DbRole::Standby),
            lag: Some(LagSample {
                bytes: 1024,
                delay: Duration::from_millis(20),
                synchronous: false,
            }),
        },
        dns: Some(ServiceRecord::new([A_ADDR], None)),
        operator: OperatorInput::default(),
    }
}

fn state(health: Health, phase: Phase) -> RegionHealth {
    RegionHealth {
        health,
        phase,
        refusal: None,
    }
}

#[test]
fn health_has_hysteresis() {
    let b = Instant::now();
    let p = policy();
    let failed = |s| Observation {
        probe: Some(ProbeOutcome::Failed),
        ..healthy(t(b, s))
    };
    let ok = |s| healthy(t(b, s));
    // (name, health before, observation, health after)
    let cases: Vec<(&str, Health, Observation, Health)> = vec![
        ("up stays up", Health::Up, ok(0), Health::Up),
        (
            "a failure makes it suspect",
            Health::Up,
            failed(0),
            Health::Suspect {
                failures: 1,
                since: t(b, 0),
            },
        ),
        (
            "failures are counted",
            Health::Suspect {
                failures: 1,
                since: t(b, 0),
            },
            failed(5),
            Health::Suspect {
                failures: 2,
                since: t(b, 0),
            },
        ),
        (
            "the threshold across the window makes it down",
            Health::Suspect {
                failures: 2,
                since: t(b, 0),
            },
            failed(10),
            Health::Down,
        ),
        (
            "the threshold inside the window is not enough",
            Health::Suspect {
                failures: 2,
                since: t(b, 0),
            },
            failed(3),
            Health::Suspect {
                failures: 3,
                since: t(b, 0),
            },
        ),
        (
            "one success clears suspicion",
            Health::Suspect {
                failures: 2,
                since: t(b, 0),
            },
            ok(10),
            Health::Up,
        ),
        ("down stays down", Health::Down, failed(20), Health::Down),
        (
            "a success after down is only recovering",
            Health::Down,
            ok(20),
            Health::Recovering {
                successes: 1,
                since: t(b, 20),
            },
        ),
        (
            "a failure while recovering is down again",
            Health::Recovering {
                successes: 2,
                since: t(b, 20),
            },
            failed(25),
            Health::Down,
        ),
        (
            "recovery needs the window",
            Health::Recovering {
                successes: 2,
                since: t(b, 20),
            },
            ok(22),
            Health::Recovering {
                successes: 3,
                since: t(b, 20),
            },
        ),
        (
            "recovery needs the count and the window",
            Health::Recovering {
                successes: 2,
                since: t(b, 20),
            },
            ok(30),
            Health::Up,
        ),
    ];
    for (name, before, obs, after) in cases {
        // Keep the failover out of it: the standby is unreachable, so nothing starts.
        let mut obs = obs;
        obs.standby.role = None;
        let d = decide(&state(before, Phase::Idle), obs, &p);
        assert_eq!(d.next.health, after, "{name}");
        let changed = before.name() != after.name();
        assert_eq!(
            d.transitions.contains(&Transition::Health {
                from: before.name(),
                to: after.name()
            }),
            changed,
            "{name}: {:?}",
            d.transitions
        );
    }
}

/// One row: the state before, what was seen, and what must follow.
struct Row {
    name: &'static str,
    before: RegionHealth,
    obs: Observation,
    phase: Phase,
    action: Option<Action>,
    refusal: Option<Refusal>,
}

fn check(rows: Vec<Row>) {
    let p = policy();
    for row in rows {
        let d = decide(&row.before, row.obs, &p);
        assert_eq!(d.next.phase, row.phase, "{}: phase", row.name);
        assert_eq!(d.action, row.action, "{}: action", row.name);
        assert_eq!(d.next.refusal, row.refusal, "{}: refusal", row.name);
        if row.before.phase.name() != row.phase.name() {
            assert!(
                d.transitions.iter().any(|tr| matches!(tr,
                    Transition::Phase { to, .. } if *to == row.phase.name())),
                "{}: phase transition reported: {:?}",
                row.name,
                d.transitions
            );
        }
        if let Some(r) = row.refusal {
            assert!(
                d.transitions.contains(&Transition::Refused(r)),
                "{}: refusal reported",
                row.name
            );
        }
    }
}

#[test]
fn the_failover_sequence_step_by_step() {
    let b = Instant::now();
    let down_failed = |s| Observation {
        probe: Some(ProbeOutcome::Failed),
        ..healthy(t(b, s))
    };
    let recorded = |s| Observation {
        step_down_recorded: true,
        ..down_failed(s)
    };
    let vacant = |s| Observation {
        leader: LeaderObservation::Vacant,
        ..recorded(s)
    };
    let promoted = |s| Observation {
        standby: StandbyObservation {
            role: Some(DbRole::Primary),
            lag: None,
        },
        ..vacant(s)
    };
    let b_leads = |s| Observation {
        leader: LeaderObservation::Held {
            region: region("b"),
            epoch: epoch(9),
        },
        ..promoted(s)
    };
    let fence = |vacant_since| Phase::FenceWait {
        requested_at: t(b, 0),
        vacant_since,
    };
    check(vec![
        Row {
            name: "healthy: nothing to do",
            before: state(Health::Up, Phase::Idle),
            obs: healthy(t(b, 0)),
            phase: Phase::Idle,
            action: None,
            refusal: None,
        },
        Row {
            name: "suspect: nothing to do yet",
            before: state(Health::Up, Phase::Idle),
            obs: down_failed(0),
            phase: Phase::Idle,
            action: None,
            refusal: None,
        },
        Row {
            name: "down: ask the active region to step down",
            before: state(Health::Down, Phase::Idle),
            obs: down_failed(0),
            phase: Phase::StepDownRequested { at: t(b, 0) },
            action: Some(Action::RequestStepDown),
            refusal: None,
        },
        Row {
            name: "the request is not recorded yet: ask again",
            before: state(Health::Down, Phase::StepDownRequested { at: t(b, 0) }),
            obs: down_failed(1),
            phase: Phase::StepDownRequested { at: t(b, 0) },
            action: Some(Action::RequestStepDown),
            refusal: None,
        },
        Row {
            name: "recorded, still held: fence wait, keep asking",
            before: state(Health::Down, Phase::StepDownRequested { at: t(b, 0) }),
            obs: recorded(1),
            phase: fence(None),
            action: Some(Action::RequestStepDown),
            refusal: None,
        },
        Row {
            name: "the key goes: the wait starts",
            before: state(Health::Down, fence(None)),
            obs: vacant(2),
            phase: fence(Some(t(b, 2))),
            action: None,
            refusal: None,
        },
        Row {
            name: "not a whole TTL plus margin yet",
            before: state(Health::Down, fence(Some(t(b, 2)))),
            obs: vacant(12),
            phase: fence(Some(t(b, 2))),
            action: None,
            refusal: None,
        },
        Row {
            name: "etcd unreadable: keep waiting",
            before: state(Health::Down, fence(Some(t(b, 2)))),
            obs: Observation {
                leader: LeaderObservation::Unknown,
                ..vacant(20)
            },
            phase: fence(Some(t(b, 2))),
            action: None,
            refusal: None,
        },
        Row {
            name: "the key came back: the wait starts over, keep asking",
            before: state(Health::Down, fence(Some(t(b, 2)))),
            obs: recorded(5),
            phase: fence(None),
            action: Some(Action::RequestStepDown),
            refusal: None,
        },
        Row {
            name: "TTL plus margin passed, lag fine: promote",
            before: state(Health::Down, fence(Some(t(b, 2)))),
            obs: vacant(13),
            phase: Phase::Promoting { since: t(b, 13) },
            action: Some(Action::Promote),
            refusal: None,
        },
        Row {
            name: "not promoted yet: promote again",
            before: state(Health::Down, Phase::Promoting { since: t(b, 13) }),
            obs: vacant(14),
            phase: Phase::Promoting { since: t(b, 13) },
            action: Some(Action::Promote),
            refusal: None,
        },
        Row {
            name: "promoted: take leadership",
            before: state(Health::Down, Phase::Promoting { since: t(b, 13) }),
            obs: promoted(14),
            phase: Phase::TakingLeadership,
            action: Some(Action::TakeLeadership),
            refusal: None,
        },
        Row {
            name: "the key is still vacant: take it again",
            before: state(Health::Down, Phase::TakingLeadership),
            obs: promoted(15),
            phase: Phase::TakingLeadership,
            action: Some(Action::TakeLeadership),
            refusal: None,
        },
        Row {
            name: "the standby leads: switch DNS with its epoch",
            before: state(Health::Down, Phase::TakingLeadership),
            obs: b_leads(15),
            phase: Phase::SwitchingDns { epoch: epoch(9) },
            action: Some(Action::SwitchDns {
                expected: ServiceRecord::new([A_ADDR], None),
                new: ServiceRecord::new([B_ADDR], Some(epoch(9))),
            }),
            refusal: None,
        },
        Row {
            name: "DNS unreadable: wait",
            before: state(Health::Down, Phase::SwitchingDns { epoch: epoch(9) }),
            obs: Observation {
                dns: None,
                ..b_leads(16)
            },
            phase: Phase::SwitchingDns { epoch: epoch(9) },
            action: None,
            refusal: None,
        },
        Row {
            name: "DNS switched: done",
            before: state(Health::Down, Phase::SwitchingDns { epoch: epoch(9) }),
            obs: Observation {
                dns: Some(ServiceRecord::new([B_ADDR], Some(epoch(9)))),
                ..b_leads(16)
            },
            phase: Phase::Done { epoch: epoch(9) },
            action: None,
            refusal: None,
        },
        Row {
            name: "a newer epoch wrote DNS: done without writing",
            before: state(Health::Down, Phase::SwitchingDns { epoch: epoch(9) }),
            obs: Observation {
                dns: Some(ServiceRecord::new([A_ADDR], Some(epoch(12)))),
                ..b_leads(16)
            },
            phase: Phase::Done { epoch: epoch(9) },
            action: None,
            refusal: None,
        },
        Row {
            name: "done stays done, whatever happens",
            before: state(Health::Down, Phase::Done { epoch: epoch(9) }),
            obs: down_failed(100),
            phase: Phase::Done { epoch: epoch(9) },
            action: None,
            refusal: None,
        },
    ]);
}

#[test]
fn refusals_and_aborts() {
    let b = Instant::now();
    let failed = |s| Observation {
        probe: Some(ProbeOutcome::Failed),
        ..healthy(t(b, s))
    };
    let vacant = |s| Observation {
        leader: LeaderObservation::Vacant,
        step_down_recorded: true,
        ..failed(s)
    };
    let lag = |bytes, ms, synchronous| StandbyObservation {
        role: Some(DbRole::Standby),
        lag: Some(LagSample {
            bytes,
            delay: Duration::from_millis(ms),
            synchronous,
        }),
    };
    let fence_done = Phase::FenceWait {
        requested_at: t(b, 0),
        vacant_since: Some(t(b, 0)),
    };
    check(vec![
        Row {
            name: "standby unreachable: refuse to start",
            before: state(Health::Down, Phase::Idle),
            obs: Observation {
                standby: StandbyObservation {
                    role: None,
                    lag: None,
                },
                ..failed(0)
            },
            phase: Phase::Idle,
            action: None,
            refusal: Some(Refusal::StandbyUnreachable),
        },
        Row {
            name: "standby already writable before we did anything: refuse",
            before: state(Health::Down, Phase::Idle),
            obs: Observation {
                standby: StandbyObservation {
                    role: Some(DbRole::Primary),
                    lag: None,
                },
                ..failed(0)
            },
            phase: Phase::Idle,
            action: None,
            refusal: Some(Refusal::StandbyNotInRecovery),
        },
        Row {
            name: "lag unknown: refuse promotion",
            before: state(Health::Down, fence_done),
            obs: Observation {
                standby: StandbyObservation {
                    role: Some(DbRole::Standby),
                    lag: None,
                },
                ..vacant(11)
            },
            phase: Phase::LagGate,
            action: None,
            refusal: Some(Refusal::LagUnknown),
        },
        Row {
            name: "too many bytes behind: refuse promotion",
            before: state(Health::Down, Phase::LagGate),
            obs: Observation {
                standby: lag(64 << 20, 10, false),
                ..vacant(12)
            },
            phase: Phase::LagGate,
            action: None,
            refusal: Some(Refusal::LagTooHigh {
                bytes: 64 << 20,
                delay: Duration::from_millis(10),
            }),
        },
        Row {
            name: "too far behind in time: refuse promotion",
            before: state(Health::Down, Phase::LagGate),
            obs: Observation {
                standby: lag(10, 5000, false),
                ..vacant(12)
            },
            phase: Phase::LagGate,
            action: None,
            refusal: Some(Refusal::LagTooHigh {
                bytes: 10,
                delay: Duration::from_millis(5000),
            }),
        },
        Row {
            name: "a synchronous standby passes the gate whatever the lag",
            before: state(Health::Down, Phase::LagGate),
            obs: Observation {
                standby: lag(64 << 20, 5000, true),
                ..vacant(12)
            },
            phase: Phase::Promoting { since: t(b, 12) },
            action: Some(Action::Promote),
            refusal: None,
        },
        Row {
            name: "the operator overrides the lag gate",
            before: state(Health::Down, Phase::LagGate),
            obs: Observation {
                standby: lag(64 << 20, 5000, false),
                operator: OperatorInput {
                    override_lag_gate: true,
                    ..OperatorInput::default()
                },
                ..vacant(12)
            },
            phase: Phase::Promoting { since: t(b, 12) },
            action: Some(Action::Promote),
            refusal: None,
        },
        Row {
            name: "the override does not help an unreachable standby",
            before: state(Health::Down, Phase::LagGate),
            obs: Observation {
                standby: StandbyObservation {
                    role: None,
                    lag: None,
                },
                operator: OperatorInput {
                    override_lag_gate: true,
                    ..OperatorInput::default()
                },
                ..vacant(12)
            },
            phase: Phase::LagGate,
            action: None,
            refusal: Some(Refusal::StandbyUnreachable),
        },
        Row {
            name: "the active region keeps its lease past the timeout: abort",
            before: state(
                Health::Down,
                Phase::FenceWait {
                    requested_at: t(b, 0),
                    vacant_since: None,
                },
            ),
            obs: Observation {
                step_down_recorded: true,
                ..failed(30)
            },
            phase: Phase::Aborted {
                reason: AbortReason::ActiveStillLeads,
            },
            action: Some(Action::ClearStepDown),
            refusal: None,
        },
        Row {
            name: "aborted: the request is removed until it is gone",
            before: state(
                Health::Down,
                Phase::Aborted {
                    reason: AbortReason::ActiveStillLeads,
                },
            ),
            obs: Observation {
                step_down_recorded: true,
                ..failed(31)
            },
            phase: Phase::Aborted {
                reason: AbortReason::ActiveStillLeads,
            },
            action: Some(Action::ClearStepDown),
            refusal: None,
        },
        Row {
            name: "aborted, active still leads: refuse",
            before: state(
                Health::Down,
                Phase::Aborted {
                    reason: AbortReason::ActiveStillLeads,
                },
            ),
            obs: failed(32),
            phase: Phase::Aborted {
                reason: AbortReason::ActiveStillLeads,
            },
            action: None,
            refusal: Some(Refusal::ActiveStillLeads),
        },
        Row {
            name: "aborted, then the lease goes: start again",
            before: state(
                Health::Down,
                Phase::Aborted {
                    reason: AbortReason::ActiveStillLeads,
                },
            ),
            obs: Observation {
                leader: LeaderObservation::Vacant,
                ..failed(40)
            },
            phase: Phase::StepDownRequested { at: t(b, 40) },
            action: Some(Action::RequestStepDown),
            refusal: None,
        },
        Row {
            name: "aborted, then the region is up: idle",
            before: state(
                Health::Recovering {
                    successes: 2,
                    since: t(b, 30),
                },
                Phase::Aborted {
                    reason: AbortReason::ActiveStillLeads,
                },
            ),
            obs: healthy(t(b, 40)),
            phase: Phase::Idle,
            action: None,
            refusal: None,
        },
        Row {
            name: "the active region recovers before promotion: abort and let it lead",
            before: state(
                Health::Recovering {
                    successes: 2,
                    since: t(b, 20),
                },
                Phase::LagGate,
            ),
            obs: Observation {
                probe: Some(ProbeOutcome::Ok),
                ..vacant(30)
            },
            phase: Phase::Aborted {
                reason: AbortReason::ActiveRecovered,
            },
            action: Some(Action::ClearStepDown),
            refusal: None,
        },
        Row {
            name: "recovery after promotion changes nothing",
            before: state(
                Health::Recovering {
                    successes: 2,
                    since: t(b, 20),
                },
                Phase::Promoting { since: t(b, 20) },
            ),
            obs: Observation {
                probe: Some(ProbeOutcome::Ok),
                ..vacant(30)
            },
            phase: Phase::Promoting { since: t(b, 20) },
            action: Some(Action::Promote),
            refusal: None,
        },
        Row {
            name: "another region took the key after the step-down: refuse",
            before: state(Health::Down, Phase::TakingLeadership),
            obs: Observation {
                leader: LeaderObservation::Held {
                    region: region("c"),
                    epoch: epoch(11),
                },
                ..vacant(20)
            },
            phase: Phase::TakingLeadership,
            action: None,
            refusal: Some(Refusal::LeaderKeyTakenByOther),
        },
    ]);
}

#[test]
fn an_observation_without_a_probe_leaves_the_health_alone() {
    let b = Instant::now();
    let before = Health::Suspect {
        failures: 2,
        since: b,
    };
    let d = decide(
        &state(before, Phase::Idle),
        Observation {
            probe: None,
            ..healthy(t(b, 30))
        },
        &policy(),
    );
    assert_eq!(d.next.health, before);
    assert!(d.transitions.is_empty());
}

#[test]
fn manual_mode_waits_for_the_operator() {
    let b = Instant::now();
    let p = Policy {
        automatic: false,
        ..policy()
    };
    let obs = Observation {
        probe: Some(ProbeOutcome::Failed),
        ..healthy(b)
    };
    let d = decide(&state(Health::Down, Phase::Idle), obs.clone(), &p);
    assert_eq!(d.next.phase, Phase::Idle);
    assert_eq!(d.action, None);
    assert_eq!(d.next.refusal, Some(Refusal::AutomaticFailoverDisabled));
    assert!(
        d.transitions
            .contains(&Transition::Refused(Refusal::AutomaticFailoverDisabled))
    );

    // Reported once, not on every tick.
    let again = decide(&d.next, obs.clone(), &p);
    assert_eq!(again.next.refusal, Some(Refusal::AutomaticFailoverDisabled));
    assert!(again.transitions.is_empty(), "{:?}", again.transitions);

    // The operator starts it, even while the region looks healthy.
    let go = decide(
        &state(Health::Up, Phase::Idle),
        Observation {
            operator: OperatorInput {
                failover_now: true,
                ..OperatorInput::default()
            },
            ..healthy(b)
        },
        &p,
    );
    assert_eq!(go.next.phase, Phase::StepDownRequested { at: b });
    assert_eq!(go.action, Some(Action::RequestStepDown));
}

#[test]
fn a_restarted_prober_resumes_from_a_recorded_step_down() {
    let b = Instant::now();
    let p = policy();
    // Fresh state (health Up), but etcd says the step-down was requested and the key is
    // vacant: resume in the fence wait, measured from now.
    let d = decide(
        &RegionHealth::default(),
        Observation {
            step_down_recorded: true,
            leader: LeaderObservation::Vacant,
            ..healthy(b)
        },
        &p,
    );
    assert_eq!(
        d.next.phase,
        Phase::FenceWait {
            requested_at: b,
            vacant_since: Some(b)
        }
    );
    // Already promoted and leading by a previous run: straight to DNS.
    let d = decide(
        &RegionHealth::default(),
        Observation {
            step_down_recorded: true,
            leader: LeaderObservation::Held {
                region: region("b"),
                epoch: epoch(9),
            },
            ..healthy(b)
        },
        &p,
    );
    assert_eq!(d.next.phase, Phase::SwitchingDns { epoch: epoch(9) });
    assert!(matches!(d.action, Some(Action::SwitchDns { .. })));
}

/// Drives the whole sequence tick by tick, as the shell would, from healthy to done, and
/// checks the order of actions and that promotion never comes before the fence wait ended.
#[test]
fn a_full_failover_in_order_within_the_budget() {
    let b = Instant::now();
    let p = policy();
    let mut st = RegionHealth::default();
    let mut world = healthy(b);
    let mut actions = Vec::new();
    let mut vacant_at = None;
    let mut promoted_at = None;
    for tick in 0..40u64 {
        let now = t(b, tick * 5);
        world.now = now;
        if tick >= 1 {
            // Region A dies at tick 1: probes fail; its lease expires 10 s later.
            world.probe = Some(ProbeOutcome::Failed);
        }
        if tick == 3 && world.leader != LeaderObservation::Vacant {
            world.leader = LeaderObservation::Vacant;
            vacant_at = Some(now);
        }
        let d = decide(&st, world.clone(), &p);
        st = d.next;
        if let Some(a) = d.action {
            // The shell's effects.
            match &a {
                Action::RequestStepDown => world.step_down_recorded = true,
                Action::Promote => {
                    promoted_at = Some(now);
                    world.standby.role = Some(DbRole::Primary);
                }
                Action::TakeLeadership => {
                    world.leader = LeaderObservation::Held {
                        region: region("b"),
                        epoch: epoch(9),
                    }
                }
                Action::SwitchDns { new, .. } => world.dns = Some(new.clone()),
                Action::ClearStepDown => panic!("no abort expected"),
            }
            if actions.last() != Some(&a) {
                actions.push(a);
            }
        }
        if matches!(st.phase, Phase::Done { .. }) {
            break;
        }
    }
    assert_eq!(st.phase, Phase::Done { epoch: epoch(9) });
    assert_eq!(
        actions
            .iter()
            .map(std::mem::discriminant)
            .collect::<Vec<_>>(),
        [
            Action::RequestStepDown,
            Action::Promote,
            Action::TakeLeadership,
            Action::SwitchDns {
                expected: ServiceRecord::default(),
                new: ServiceRecord::default()
            },
        ]
        .iter()
        .map(std::mem::discriminant)
        .collect::<Vec<_>>()
    );
    let (vacant_at, promoted_at) = (vacant_at.unwrap(), promoted_at.unwrap());
    assert!(promoted_at >= vacant_at + p.lease_ttl + p.fence_margin);
    assert_eq!(
        world.dns,
        Some(ServiceRecord::new([B_ADDR], Some(epoch(9))))
    );
}
