//! The shell with in-memory fakes of its ports, on a paused clock: a whole failover with
//! default settings, the lag gate and its override, and an abort when the active region
//! keeps its lease.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use super::*;
use crate::decide::{AbortReason, Refusal};
use crate::dns::FakeDns;
use crate::types::ServiceRecord;

const A1: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
const B1: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 21);

fn region(name: &str) -> RegionName {
    RegionName::parse(name).unwrap()
}

/// The pair as the fakes see it.
struct World {
    probe_ok: bool,
    leader: Option<(RegionName, Epoch)>,
    step_downs: BTreeSet<RegionName>,
    role: DbRole,
    lag: Option<LagSample>,
    next_epoch: u64,
    /// The active region's members release the key when asked (they are alive but
    /// failing), or keep it (they are fine as far as etcd knows).
    releases_on_request: bool,
    /// What happened, when.
    log: Vec<(&'static str, Instant)>,
    /// Made to fail this many DNS swaps once the standby is promoted.
    dns_after_promote: Option<(FakeDns, u32)>,
}

#[derive(Clone)]
struct Fake(Arc<Mutex<World>>);

impl Fake {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(World {
            probe_ok: true,
            leader: Some((region("a"), Epoch::new(5).unwrap())),
            step_downs: BTreeSet::new(),
            role: DbRole::Standby,
            lag: Some(LagSample {
                bytes: 100,
                delay: Duration::from_millis(10),
                synchronous: false,
            }),
            next_epoch: 9,
            releases_on_request: true,
            log: Vec::new(),
            dns_after_promote: None,
        })))
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.0.lock().unwrap()
    }

    fn at(&self, what: &str) -> Option<Instant> {
        self.world()
            .log
            .iter()
            .find(|(w, _)| *w == what)
            .map(|(_, at)| *at)
    }
}

#[async_trait]
impl RegionProbe for Fake {
    async fn probe(&self) -> Result<(), ProbeError> {
        if self.world().probe_ok {
            Ok(())
        } else {
            Err(ProbeError::Journey {
                step: "create",
                message: "503".into(),
            })
        }
    }
}

#[async_trait]
impl Promoter for Fake {
    async fn standby_role(&self) -> Result<DbRole, ProbeError> {
        Ok(self.world().role)
    }

    async fn lag(&self) -> Result<LagSample, ProbeError> {
        let w = self.world();
        // The primary is down once its region fails: no fresh sample then.
        match (w.probe_ok, w.lag) {
            (true, Some(lag)) => Ok(lag),
            _ => Err(ProbeError::StandbyNotConnected("tether_b".into())),
        }
    }

    async fn promote(&self) -> Result<(), ProbeError> {
        let mut w = self.world();
        w.role = DbRole::Primary;
        w.log.push(("promote", Instant::now()));
        if let Some((dns, n)) = &w.dns_after_promote {
            dns.fail_next_swaps(*n);
        }
        Ok(())
    }
}

#[async_trait]
impl Leadership for Fake {
    async fn leader(&self) -> Result<Option<(RegionName, Epoch)>, ProbeError> {
        Ok(self.world().leader.clone())
    }

    async fn step_down_requested(&self, region: &RegionName) -> Result<bool, ProbeError> {
        Ok(self.world().step_downs.contains(region))
    }

    async fn request_step_down(&self, r: &RegionName) -> Result<(), ProbeError> {
        let mut w = self.world();
        w.step_downs.insert(r.clone());
        w.log.push(("request_step_down", Instant::now()));
        if w.releases_on_request && w.leader.as_ref().is_some_and(|(l, _)| l == r) {
            w.leader = None;
            w.log.push(("released", Instant::now()));
        }
        Ok(())
    }

    async fn clear_step_down(&self, r: &RegionName) -> Result<(), ProbeError> {
        let mut w = self.world();
        w.step_downs.remove(r);
        w.log.push(("clear_step_down", Instant::now()));
        Ok(())
    }

    async fn take(&self, r: &RegionName, _ttl: Duration) -> Result<(), ProbeError> {
        let mut w = self.world();
        if w.leader.is_none() && !w.step_downs.contains(r) {
            let epoch = Epoch::new(w.next_epoch).unwrap();
            w.leader = Some((r.clone(), epoch));
            w.log.push(("take", Instant::now()));
        }
        Ok(())
    }
}

#[test]
fn settings_are_bounded() {
    assert_eq!(ShellConfig::default_for(api()).validate(), Ok(()));
    let mut c = ShellConfig::default_for(api());
    c.interval = Duration::from_secs(3600);
    assert!(c.validate().is_err());
    let mut c = ShellConfig::default_for(api());
    c.probe_timeout = Duration::from_secs(10);
    assert!(c.validate().is_err(), "a probe longer than the interval");
    let mut c = ShellConfig::default_for(api());
    c.record_ttl = Duration::ZERO;
    assert!(c.validate().is_err());
    let p = Policy::default_for(region("a"), region("b"), [B1].into());
    assert_eq!(p.validate(), Ok(()));
    assert!(
        Policy {
            failure_threshold: 0,
            ..p.clone()
        }
        .validate()
        .is_err()
    );
    assert!(
        Policy {
            lease_ttl: Duration::from_secs(1),
            ..p.clone()
        }
        .validate()
        .is_err()
    );
    assert!(
        Policy {
            standby: region("a"),
            ..p.clone()
        }
        .validate()
        .is_err()
    );
    assert!(
        Policy {
            standby_addrs: BTreeSet::new(),
            ..p
        }
        .validate()
        .is_err()
    );
}

fn api() -> DnsName {
    DnsName::parse("api.tether.test").unwrap()
}

struct Setup {
    fake: Fake,
    dns: FakeDns,
    operator: watch::Sender<OperatorInput>,
    status: watch::Receiver<ProberStatus>,
    cancel: CancellationToken,
    policy: Policy,
}

fn start() -> Setup {
    let fake = Fake::new();
    let dns = FakeDns::new();
    dns.set(&api(), ServiceRecord::new([A1], None));
    let policy = Policy::default_for(region("a"), region("b"), [B1].into());
    let (operator, operator_rx) = watch::channel(OperatorInput::default());
    let prober = Prober::new(
        policy.clone(),
        ShellConfig::default_for(api()),
        Arc::new(fake.clone()),
        Arc::new(fake.clone()),
        Arc::new(fake.clone()),
        Arc::new(dns.clone()),
        operator_rx,
    );
    let status = prober.status();
    let cancel = CancellationToken::new();
    tokio::spawn(prober.run(cancel.clone()));
    Setup {
        fake,
        dns,
        operator,
        status,
        cancel,
        policy,
    }
}

/// Waits (virtual time) until the status matches, or panics after `limit`.
async fn until(
    status: &watch::Receiver<ProberStatus>,
    limit: Duration,
    what: &str,
    pred: impl Fn(&ProberStatus) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        if pred(&status.borrow()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: after {limit:?}: {:?}",
            status.borrow()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_failover_with_default_settings_finishes_within_the_rto() {
    let s = start();
    // Healthy for a while: nothing happens.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(s.status.borrow().state.phase, Phase::Idle);
    assert!(s.status.borrow().actions.is_empty());

    let failed_at = Instant::now();
    s.fake.world().probe_ok = false;
    until(&s.status, Duration::from_secs(120), "failover done", |st| {
        matches!(st.state.phase, Phase::Done { .. })
    })
    .await;
    let done_at = Instant::now();

    let status = s.status.borrow().clone();
    let actions: Vec<&'static str> = status.actions.iter().map(|(a, _)| action_name(a)).collect();
    assert_eq!(
        actions,
        [
            "request_step_down",
            "promote",
            "take_leadership",
            "switch_dns"
        ]
    );
    assert!(status.actions.iter().all(|(_, outcome)| outcome.is_ok()));
    let epoch = Epoch::new(9).unwrap();
    assert_eq!(status.state.phase, Phase::Done { epoch });
    assert_eq!(
        s.dns.get(&api()).map(|(r, _)| r),
        Some(ServiceRecord::new([B1], Some(epoch)))
    );
    assert_eq!(
        s.dns.get(&api()).map(|(_, ttl)| ttl),
        Some(Duration::from_secs(5))
    );

    // The fence wait: promotion a whole TTL plus margin after the key went.
    let released = s.fake.at("released").unwrap();
    let promoted = s.fake.at("promote").unwrap();
    assert!(promoted >= released + s.policy.lease_ttl + s.policy.fence_margin);
    // The RTO budget of DESIGN §5, with default settings. Here: the third failed probe
    // 10 s after the first, then the fence wait (TTL + margin = 11 s) ends between two
    // ticks and the rest follows at once.
    assert!(
        done_at - failed_at <= Duration::from_secs(22),
        "took {:?}: {:?}",
        done_at - failed_at,
        status.timeline
    );
    // The timeline has every phase, in order.
    let phases: Vec<&str> = status.timeline.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        phases,
        [
            "step_down_requested",
            "fence_wait",
            "lag_gate",
            "promoting",
            "taking_leadership",
            "switching_dns",
            "done"
        ]
    );
    s.cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_lagging_standby_is_not_promoted_until_an_operator_says_so() {
    let s = start();
    s.fake.world().lag = Some(LagSample {
        bytes: 1 << 30,
        delay: Duration::from_secs(30),
        synchronous: false,
    });
    tokio::time::sleep(Duration::from_secs(6)).await;
    s.fake.world().probe_ok = false;
    until(
        &s.status,
        Duration::from_secs(120),
        "lag gate refuses",
        |st| matches!(st.state.refusal, Some(Refusal::LagTooHigh { .. })),
    )
    .await;
    // It stays refused.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(s.status.borrow().state.phase, Phase::LagGate);
    assert_eq!(s.fake.at("promote"), None);
    assert_eq!(s.dns.swaps(), 0);

    s.operator
        .send(OperatorInput {
            override_lag_gate: true,
            ..OperatorInput::default()
        })
        .unwrap();
    until(&s.status, Duration::from_secs(30), "failover done", |st| {
        matches!(st.state.phase, Phase::Done { .. })
    })
    .await;
    assert!(s.fake.at("promote").is_some());
    s.cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_region_that_keeps_its_lease_is_never_failed_over() {
    let s = start();
    s.fake.world().releases_on_request = false;
    // One healthy tick first: the lag is measured while the primary answers.
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.fake.world().probe_ok = false;
    until(&s.status, Duration::from_secs(120), "aborted", |st| {
        st.state.phase
            == Phase::Aborted {
                reason: AbortReason::ActiveStillLeads,
            }
            && st.state.refusal == Some(Refusal::ActiveStillLeads)
    })
    .await;
    // The request was withdrawn, nothing was promoted, DNS untouched.
    assert!(s.fake.world().step_downs.is_empty());
    assert!(s.fake.at("clear_step_down").is_some());
    assert_eq!(s.fake.at("promote"), None);
    assert_eq!(s.dns.swaps(), 0);
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(s.fake.at("promote"), None);

    // Once its lease does go (it lost etcd too), the failover runs.
    s.fake.world().leader = None;
    until(&s.status, Duration::from_secs(60), "failover done", |st| {
        matches!(st.state.phase, Phase::Done { .. })
    })
    .await;
    s.cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn without_a_lag_measurement_nothing_is_promoted() {
    let s = start();
    // The primary fails before the prober ever measured the standby's lag.
    s.fake.world().probe_ok = false;
    until(&s.status, Duration::from_secs(120), "lag unknown", |st| {
        st.state.refusal == Some(Refusal::LagUnknown)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(s.fake.at("promote"), None);
    s.cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn dns_failures_are_retried_until_the_switch_lands() {
    let s = start();
    s.fake.world().dns_after_promote = Some((s.dns.clone(), 2));
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.fake.world().probe_ok = false;
    until(&s.status, Duration::from_secs(120), "failover done", |st| {
        matches!(st.state.phase, Phase::Done { .. })
    })
    .await;
    let switches: Vec<bool> = s
        .status
        .borrow()
        .actions
        .iter()
        .filter(|(a, _)| action_name(a) == "switch_dns")
        .map(|(_, outcome)| outcome.is_ok())
        .collect();
    assert_eq!(switches, [false, false, true]);
    assert_eq!(s.dns.swaps(), 1);
    s.cancel.cancel();
}
