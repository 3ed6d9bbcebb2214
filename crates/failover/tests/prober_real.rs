//! The prober against real components — etcd, a Postgres primary with its streaming
//! standby, and BIND — with only the probe of the active region faked (the synthetic
//! journey through Tether's API comes with `tether serve`'s region awareness): region A
//! fails, and the prober steps it down, waits out the fence, promotes B's database, gives B
//! the leader key with a higher epoch and flips the DNS record — and A's leadership was
//! never confirmed past the moment B's database was promoted. Twice: region A failing but
//! still talking to etcd (it releases the key when asked), and region A cut off from
//! everything (a partition: its lease has to run out).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers may panic: a panic is a test failure"
)]

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tether_failover::decide::{OperatorInput, Phase, Policy};
use tether_failover::dns::{DnsName, DnsProvider, Rfc2136, Transport};
use tether_failover::leader::{LeaderConfig, LeaderState, Leadership, PairControl, PairKeys};
use tether_failover::probe::{PgPromoter, ProbeError, Prober, RegionProbe, ShellConfig};
use tether_failover::testing::{BindServer, EtcdServer, TcpProxy, poll_until};
use tether_failover::{PairName, RegionName, ServiceRecord};
use tether_store::replication::testing::PgPair;
use tether_store::replication::{DbRole, Replication};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const A1: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
const A2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 12);
const B1: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 21);
const B2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 22);
const TTL: Duration = Duration::from_secs(3);

fn region(name: &str) -> RegionName {
    RegionName::parse(name).unwrap()
}

/// The active region's probe: healthy until told otherwise.
struct Switch(AtomicBool);

#[async_trait]
impl RegionProbe for Switch {
    async fn probe(&self) -> Result<(), ProbeError> {
        if self.0.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(ProbeError::Journey {
                step: "create",
                message: "region a answers 500".into(),
            })
        }
    }
}

#[tokio::test]
async fn a_failing_region_is_failed_over_across_real_etcd_postgres_and_bind() {
    failover(false).await;
}

#[tokio::test]
async fn a_partitioned_region_fences_itself_before_the_standby_is_promoted() {
    failover(true).await;
}

async fn failover(partition: bool) {
    let etcd = EtcdServer::start().await.unwrap();
    // Region A reaches etcd through a link the test can cut.
    let mut link = TcpProxy::start(etcd.endpoint().trim_start_matches("http://"))
        .await
        .unwrap();
    let bind = BindServer::start("tether.test.", &[("api", A1), ("api", A2)])
        .await
        .unwrap();
    let pg = PgPair::start(false).await.unwrap();
    let keys = PairKeys {
        endpoints: vec![etcd.endpoint()],
        prefix: "/tether".into(),
        pair: PairName::parse("pair-1").unwrap(),
    };
    let cancel = CancellationToken::new();

    // One member per region. A's database is the primary: eligible. B's is a standby: it
    // only joins a key that names it.
    let member = |name: &str, eligible: bool, endpoint: String| {
        let (tx, rx) = watch::channel(eligible);
        let config = LeaderConfig {
            keys: PairKeys {
                endpoints: vec![endpoint],
                ..keys.clone()
            },
            region: region(name),
            ttl: TTL,
        };
        (
            Leadership::start(config, rx, cancel.child_token()).unwrap(),
            tx,
        )
    };
    let (a, _a_eligible) = member("a", true, link.url());
    let (b, _b_eligible) = member("b", false, etcd.endpoint());
    let e1 = poll_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async { a.epoch_if_leader().ok_or(format!("a is {:?}", a.state())) },
    )
    .await
    .unwrap();

    let service = DnsName::parse("api.tether.test.").unwrap();
    let dns = Arc::new(Rfc2136::new(&bind.config(Transport::Tcp)).unwrap());
    let policy = Policy {
        lease_ttl: TTL,
        fence_margin: Duration::from_millis(500),
        min_down_window: Duration::from_secs(1),
        min_recovery_window: Duration::from_secs(1),
        step_down_timeout: TTL * 4,
        ..Policy::default_for(region("a"), region("b"), [B1, B2].into())
    };
    policy.validate().unwrap();
    let shell = ShellConfig {
        interval: Duration::from_millis(500),
        probe_timeout: Duration::from_millis(200),
        observe_timeout: Duration::from_secs(2),
        action_timeout: Duration::from_secs(20),
        ..ShellConfig::default_for(service.clone())
    };
    shell.validate().unwrap();
    let probe = Arc::new(Switch(AtomicBool::new(true)));
    let (_operator, operator_rx) = watch::channel(OperatorInput::default());
    let prober = Prober::new(
        policy,
        shell,
        probe.clone(),
        Arc::new(
            PgPromoter::new(
                &pg.primary.url(),
                &pg.standby.url(),
                "tether_b",
                Duration::from_secs(20),
            )
            .unwrap(),
        ),
        Arc::new(
            PairControl::connect(keys.clone(), Duration::from_secs(2))
                .await
                .unwrap(),
        ),
        dns.clone(),
        operator_rx,
    );
    let status = prober.status();
    let prober_task = tokio::spawn(prober.run(cancel.child_token()));

    // Healthy: a few ticks, nothing happens (and the lag gets measured).
    poll_until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            let s = status.borrow();
            if s.state.phase == Phase::Idle && s.actions.is_empty() {
                Ok(())
            } else {
                Err(format!("{s:?}"))
            }
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(status.borrow().actions.is_empty());

    // Region A fails its journeys: either it still talks to etcd (and will release the
    // key when asked), or it is cut off from everything.
    let failed_at = tokio::time::Instant::now();
    if partition {
        link.cut().await;
    }
    probe.0.store(false, Ordering::SeqCst);
    poll_until(
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let s = status.borrow();
            match s.state.phase {
                Phase::Done { .. } => Ok(()),
                _ => Err(format!("{s:?}")),
            }
        },
    )
    .await
    .unwrap();
    let status = status.borrow().clone();
    let Phase::Done { epoch: e2 } = status.state.phase else {
        unreachable!()
    };
    assert!(e2 > e1, "epochs grow: {e1} then {e2}");

    // B's database was promoted, B's member leads at the new epoch, A's does not.
    let standby = Replication::connect(&pg.standby.url()).await.unwrap();
    assert_eq!(standby.role().await.unwrap(), DbRole::Primary);
    poll_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            match b.state() {
                LeaderState::Leader { epoch } if epoch == e2 => Ok(()),
                other => Err(format!("b is {other:?}")),
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(a.epoch_if_leader(), None);

    // DNS points at B, with B's epoch, in BIND itself.
    assert_eq!(
        dns.read(&service).await.unwrap(),
        ServiceRecord::new([B1, B2], Some(e2))
    );

    // Never two leaders: A's leadership was never confirmed past the promotion.
    let promoting_at = status
        .timeline
        .iter()
        .find(|(phase, _)| *phase == "promoting")
        .map(|(_, at)| *at)
        .unwrap();
    let a_until = a.confirmed_until().unwrap();
    assert!(
        a_until < promoting_at,
        "a led until {a_until:?}, promotion began at {promoting_at:?}"
    );
    if partition {
        // Cut off, A could not release anything: its leadership ran out by itself, within
        // a TTL of the cut.
        assert!(a_until <= failed_at + TTL);
        assert_eq!(a.state(), LeaderState::Fenced);
    }
    // The actions, in order (repeats of an idempotent request aside).
    let mut actions: Vec<String> = status
        .actions
        .iter()
        .map(|(a, _)| {
            format!("{a:?}")
                .split([' ', '{'])
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    actions.dedup();
    assert_eq!(
        actions,
        ["RequestStepDown", "Promote", "TakeLeadership", "SwitchDns"]
    );

    cancel.cancel();
    prober_task.await.unwrap();
    a.stopped().await;
    b.stopped().await;
}
