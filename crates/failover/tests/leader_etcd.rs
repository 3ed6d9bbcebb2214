//! Leadership against a real single-node etcd (Debian package `etcd-server`) started by the
//! test on random loopback ports: campaigning, epochs, sharing a lease within a region,
//! step-down, and self-fencing when etcd is out of reach — before anyone else can lead.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers may panic: a panic is a test failure"
)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_failover::leader::{
    LeaderConfig, LeaderState, Leadership, PairControl, PairKeys, StateWatch, wait_for_state,
};
use tether_failover::testing::{EtcdServer, TcpProxy};
use tether_failover::{Epoch, PairName, RegionName};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Short, to keep the tests quick, with room for a loaded CI machine (a keep-alive every
/// second, a deadline three seconds after each).
const TTL: Duration = Duration::from_secs(3);
/// Generous bound for things that should happen "at once" (a watch event, a campaign).
const SOON: Duration = Duration::from_secs(10);
/// Scheduling slack on top of the TTL when checking when the fencing was published (the
/// deadline itself is checked exactly).
const SLACK: Duration = Duration::from_millis(1500);

fn region(name: &str) -> RegionName {
    RegionName::parse(name).unwrap()
}

fn keys(endpoint: &str) -> PairKeys {
    PairKeys {
        endpoints: vec![endpoint.to_string()],
        prefix: "/tether-test".into(),
        pair: PairName::parse("pair-1").unwrap(),
    }
}

struct Member {
    leadership: Leadership,
    cancel: CancellationToken,
    eligible: watch::Sender<bool>,
    history: Arc<Mutex<Vec<(Instant, LeaderState)>>>,
    watch: StateWatch,
}

fn member(endpoint: &str, name: &str, eligible: bool) -> Member {
    let cancel = CancellationToken::new();
    let (eligible_tx, eligible_rx) = watch::channel(eligible);
    let config = LeaderConfig {
        keys: keys(endpoint),
        region: region(name),
        ttl: TTL,
    };
    let leadership = Leadership::start(config, eligible_rx, cancel.clone()).unwrap();
    // Every state change, with the instant it was published (by the member itself, so
    // the order between members does not depend on when this task runs).
    let mut changes = leadership.subscribe();
    let (state, since) = changes.current_since();
    let history = Arc::new(Mutex::new(vec![(since, state)]));
    let log = history.clone();
    tokio::spawn(async move {
        while changes.changed().await.is_some() {
            let (state, since) = changes.current_since();
            log.lock().unwrap().push((since, state));
        }
    });
    let watch = leadership.subscribe();
    Member {
        leadership,
        cancel,
        eligible: eligible_tx,
        history,
        watch,
    }
}

impl Member {
    async fn wait(&mut self, what: &str, pred: impl Fn(&LeaderState) -> bool) -> LeaderState {
        match wait_for_state(&mut self.watch, SOON, pred).await {
            Some(state) => state,
            None => panic!("{what}: still {:?} after {SOON:?}", self.leadership.state()),
        }
    }

    async fn leads(&mut self) -> Epoch {
        match self
            .wait("leads", |s| matches!(s, LeaderState::Leader { .. }))
            .await
        {
            LeaderState::Leader { epoch } => epoch,
            other => unreachable!("{other:?}"),
        }
    }

    /// When the member first entered a state matching `pred` after `after`.
    fn first(&self, after: Instant, pred: impl Fn(&LeaderState) -> bool) -> Option<Instant> {
        self.history
            .lock()
            .unwrap()
            .iter()
            .find(|(at, s)| *at >= after && pred(s))
            .map(|(at, _)| *at)
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.leadership.stopped().await;
    }
}

fn follower_of(leader: &str) -> impl Fn(&LeaderState) -> bool + '_ {
    move |s| matches!(s, LeaderState::Follower { leader: Some(l), .. } if l.as_str() == leader)
}

#[tokio::test]
async fn the_first_campaigner_leads_and_a_step_down_hands_over_with_a_higher_epoch() {
    let etcd = EtcdServer::start().await.unwrap();
    let mut a = member(&etcd.endpoint(), "a", true);
    let e1 = a.leads().await;
    assert_eq!(a.leadership.epoch_if_leader(), Some(e1));

    let mut b = member(&etcd.endpoint(), "b", true);
    let seen = b.wait("b follows a", follower_of("a")).await;
    assert_eq!(
        seen,
        LeaderState::Follower {
            leader: Some(region("a")),
            epoch: Some(e1)
        }
    );
    assert_eq!(b.leadership.epoch_if_leader(), None);

    let control = PairControl::connect(keys(&etcd.endpoint()), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(control.leader().await.unwrap(), Some((region("a"), e1)));

    a.leadership.step_down().await.unwrap();
    assert_eq!(a.leadership.epoch_if_leader(), None);
    let e2 = b.leads().await;
    assert!(e2 > e1, "epochs grow: {e1} then {e2}");
    a.wait("a follows b", follower_of("b")).await;
    assert_eq!(control.leader().await.unwrap(), Some((region("b"), e2)));
    // The step-down stands: a does not campaign again, even once the key is vacant and
    // another region's request comes and goes.
    assert_eq!(control.step_down_requests().await.unwrap(), [region("a")]);
    b.leadership.step_down().await.unwrap();
    assert_eq!(
        control.step_down_requests().await.unwrap(),
        [region("a"), region("b")]
    );
    a.wait("a sees nobody lead", |s| {
        matches!(s, LeaderState::Follower { leader: None, .. })
    })
    .await;
    control.clear_step_down(&region("b")).await.unwrap();
    let e3 = b.leads().await;
    assert!(e3 > e2);
    assert_eq!(a.leadership.epoch_if_leader(), None);
    // Once a's request is cleared, a may lead again — when b lets go.
    control.clear_step_down(&region("a")).await.unwrap();
    b.leadership.step_down().await.unwrap();
    let e4 = a.leads().await;
    assert!(e4 > e3);

    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn members_of_one_region_share_the_lease_and_only_eligible_ones_create_it() {
    let etcd = EtcdServer::start().await.unwrap();
    // Not eligible (its database is a standby): it never creates the key.
    let mut a1 = member(&etcd.endpoint(), "a", false);
    a1.wait("a1 sees nobody lead", |s| {
        matches!(s, LeaderState::Follower { leader: None, .. })
    })
    .await;
    let mut a2 = member(&etcd.endpoint(), "a", true);
    let epoch = a2.leads().await;
    // a1 joins the key that names its region, without eligibility, at the same epoch.
    assert_eq!(a1.leads().await, epoch);

    // With a2 gone (without releasing), a1 alone keeps the region leading past several TTLs.
    a2.stop().await;
    let until = Instant::now() + TTL * 3;
    while Instant::now() < until {
        assert_eq!(a1.leadership.epoch_if_leader(), Some(epoch));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Eligibility changes are noticed at once.
    a1.eligible.send(false).unwrap();
    a1.leadership.step_down().await.unwrap();
    a1.wait("a1 stopped leading", |s| {
        !matches!(s, LeaderState::Leader { .. })
    })
    .await;
    a1.stop().await;
}

#[tokio::test]
async fn a_step_down_request_from_the_prober_releases_the_lease_at_once() {
    let etcd = EtcdServer::start().await.unwrap();
    let mut a = member(&etcd.endpoint(), "a", true);
    let e1 = a.leads().await;
    let mut b = member(&etcd.endpoint(), "b", false);
    b.wait("b follows a", follower_of("a")).await;
    let control = PairControl::connect(keys(&etcd.endpoint()), Duration::from_secs(2))
        .await
        .unwrap();

    control.request_step_down(&region("a")).await.unwrap();
    a.wait("a released", |s| !matches!(s, LeaderState::Leader { .. }))
        .await;
    tether_failover::testing::poll_until(SOON, Duration::from_millis(50), || async {
        match control.leader().await {
            Ok(None) => Ok(()),
            other => Err(format!("leader key still {other:?}")),
        }
    })
    .await
    .unwrap();
    // (Without the release, a's keep-alives would hold the key forever: the poll above
    // would time out.)

    // The prober takes the key for b (b's member is not eligible, but joins it).
    let (leader, e2) = control
        .take(&region("b"), TTL)
        .await
        .unwrap()
        .expect("someone leads");
    assert_eq!(leader, region("b"));
    assert!(e2 > e1);
    assert_eq!(b.leads().await, e2);
    // The lease lives on through b's keep-alives, beyond the TTL it was created with.
    let until = Instant::now() + TTL * 2;
    while Instant::now() < until {
        assert_eq!(b.leadership.epoch_if_leader(), Some(e2));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(control.leader().await.unwrap(), Some((region("b"), e2)));
    // Taking again changes nothing.
    assert_eq!(
        control.take(&region("b"), TTL).await.unwrap(),
        Some((region("b"), e2))
    );
    a.wait("a follows b", follower_of("b")).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_leader_cut_off_from_etcd_fences_itself_before_anyone_else_leads() {
    let etcd = EtcdServer::start().await.unwrap();
    let mut proxy = TcpProxy::start(etcd.endpoint().trim_start_matches("http://"))
        .await
        .unwrap();
    let mut a = member(&proxy.url(), "a", true);
    let e1 = a.leads().await;
    let mut b = member(&etcd.endpoint(), "b", true);
    b.wait("b follows a", follower_of("a")).await;

    let cut = Instant::now();
    proxy.cut().await;

    let e2 = match wait_for_state(&mut b.watch, TTL * 5, |s| {
        matches!(s, LeaderState::Leader { .. })
    })
    .await
    {
        Some(LeaderState::Leader { epoch }) => epoch,
        other => panic!("b never led: {other:?}; a is {:?}", a.leadership.state()),
    };
    assert!(e2 > e1, "the new leader's epoch is higher: {e1} then {e2}");

    let b_leads = b
        .first(cut, |s| matches!(s, LeaderState::Leader { .. }))
        .expect("b leads");
    // The safety property: a's leadership was never confirmed beyond the instant b
    // started leading (a's last deadline comes from a keep-alive sent before the cut).
    let a_until = a.leadership.confirmed_until().expect("a led");
    assert!(
        a_until <= cut + TTL,
        "a counted itself leader until +{:?} after the cut (TTL {TTL:?})",
        a_until - cut
    );
    assert!(
        a_until < b_leads,
        "a led until +{:?}, b led from +{:?}: two leaders at once",
        a_until - cut,
        b_leads - cut
    );
    // And a's own state says so soon after its deadline.
    let fenced = a
        .first(cut, |s| !matches!(s, LeaderState::Leader { .. }))
        .expect("a fenced itself");
    assert!(
        fenced - cut <= TTL + SLACK,
        "a published its fencing {:?} after the cut (TTL {TTL:?})",
        fenced - cut
    );
    assert_eq!(a.leadership.epoch_if_leader(), None);
    assert_eq!(a.leadership.state(), LeaderState::Fenced);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_leader_fences_itself_within_the_ttl_when_etcd_dies() {
    let mut etcd = EtcdServer::start().await.unwrap();
    let mut a = member(&etcd.endpoint(), "a", true);
    let e1 = a.leads().await;
    let killed = Instant::now();
    etcd.kill().await.unwrap();
    a.wait("a fenced", |s| matches!(s, LeaderState::Fenced))
        .await;
    assert!(a.leadership.confirmed_until().unwrap() <= killed + TTL);
    let fenced = a
        .first(killed, |s| matches!(s, LeaderState::Fenced))
        .unwrap();
    assert!(
        fenced - killed <= TTL + SLACK,
        "fenced {:?} after etcd died",
        fenced - killed
    );
    assert_eq!(a.leadership.epoch_if_leader(), None);

    // etcd comes back: the region leads again (its old lease may have survived the
    // restart, so the epoch is at least the old one).
    etcd.restart().await.unwrap();
    let again = a.leads().await;
    assert!(again >= e1);
    a.stop().await;
}

#[tokio::test]
async fn bad_configuration_is_refused() {
    let cancel = CancellationToken::new();
    let (_tx, rx) = watch::channel(true);
    let mut config = LeaderConfig::new(
        vec!["http://127.0.0.1:1".into()],
        PairName::parse("p").unwrap(),
        region("a"),
    );
    config.ttl = Duration::from_secs(1);
    assert!(Leadership::start(config.clone(), rx.clone(), cancel.clone()).is_err());
    config.ttl = Duration::from_secs(10);
    config.keys.endpoints.clear();
    assert!(Leadership::start(config.clone(), rx.clone(), cancel.clone()).is_err());
    config.keys.endpoints = vec!["http://127.0.0.1:1".into()];
    config.keys.prefix = "no-slash".into();
    assert!(Leadership::start(config, rx, cancel).is_err());
}
