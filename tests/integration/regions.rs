//! Two regions on one machine (`regions` feature): a real etcd, a Postgres primary (region
//! a) with a streaming standby (region b), and a `tether serve` replica per region. Region a
//! serves writes while b serves reads and answers writes `503 RegionNotActive`; a saga
//! started in a stops halfway when a dies; after a's lease is gone, b's database promoted
//! and b leading, b accepts writes and finishes a's saga; and a commit carrying a's epoch
//! is refused by the promoted database. And a region cut off from etcd fences itself (reads
//! served, writes refused) before the standby can lead: never two active regions.

use std::time::Duration;

use serde_json::Value;
use tether_failover::leader::{PairControl, PairKeys};
use tether_failover::testing::{EtcdServer, TcpProxy};
use tether_failover::{PairName, RegionName};
use tether_model::fencing::Epoch;
use tether_model::ids::{InstanceId, SagaId};
use tether_saga::{Lease, SagaStoreError};
use tether_store::replication::Replication;
use tether_store::replication::testing::PgPair;
use tether_test_utils::{Backend, Replica, ReplicaOptions, eventually};

use crate::support::{PG_DATABASE_2_ID, PG_DATABASE_ID, WEB_APP_ID, env, secret_linker};

/// The leader key's lease TTL (the smallest allowed: quick, with room for a loaded machine).
const TTL_SECS: u64 = 2;
/// Bound for anything that takes a few lease TTLs.
const SOON: Duration = Duration::from_secs(60);

fn region(name: &str, database: &str, etcd: &str) -> ReplicaOptions {
    ReplicaOptions::default()
        .env("TETHER__DATABASE__URL", database)
        .env("TETHER__REGION__NAME", name)
        .env("TETHER__REGION__PAIR", "ab")
        .env("TETHER__REGION__ETCD_ENDPOINTS", &format!("[\"{etcd}\"]"))
        .env("TETHER__REGION__LEASE_TTL_SECS", &TTL_SECS.to_string())
        .env("TETHER__REGION__ROLE_CHECK_INTERVAL_MS", "200")
}

/// `/readyz` of a replica (status and body), `None` while it does not answer.
async fn readyz(replica: &Replica) -> Option<(u16, Value)> {
    let reply = reqwest::get(format!("{}/readyz", replica.url)).await.ok()?;
    let status = reply.status().as_u16();
    Some((status, reply.json().await.ok()?))
}

/// Waits until the replica reports `role` and is ready in it; returns its readiness body.
async fn ready_as(replica: &Replica, role: &str) -> Value {
    eventually(SOON, Duration::from_millis(100), async || {
        match readyz(replica).await {
            Some((200, body)) if body["role"] == role => Ok(body),
            other => Err(format!("{} not yet {role}: {other:?}", replica.url)),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_standby_region_takes_over_and_finishes_the_active_region_s_sagas() {
    takeover(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_with_synchronous_replication() {
    takeover(true).await;
}

/// The takeover, with the primary's commits waiting for the standby or not.
async fn takeover(synchronous: bool) {
    let etcd = EtcdServer::start().await.unwrap();
    let pair = PgPair::start(synchronous).await.unwrap();
    let env = env(Backend::Postgres).await;
    let (primary_url, standby_url) = (pair.primary.url(), pair.standby.url());

    // Region a: active. Its replica migrates the primary and takes the leader key.
    let mut a = env
        .spawn_with(region("a", &primary_url, &etcd.endpoint()))
        .await;
    let ready_a = ready_as(&a, "active").await;
    assert_eq!(ready_a["database"]["role"], "primary");
    assert_eq!(ready_a["region"]["lease"], "leader");
    let epoch_a = ready_a["epoch"]
        .as_u64()
        .expect("an active replica has an epoch");

    // Region b: passive on the streaming standby.
    let b = env
        .spawn_with(region("b", &standby_url, &etcd.endpoint()))
        .await;
    let ready_b = ready_as(&b, "passive").await;
    assert_eq!(ready_b["database"]["role"], "standby");
    assert_eq!(ready_b["region"]["leader"], "a");
    let probe = reqwest::get(format!("{}/readyz?role=active", b.url))
        .await
        .unwrap();
    assert_eq!(probe.status(), 503, "b is not active");

    // a serves writes.
    let first = secret_linker(PG_DATABASE_ID, "pw-first-1", "python", false);
    let accepted = a.api.put_linker(WEB_APP_ID, "first", first.clone()).await;
    assert_eq!(a.api.wait(&accepted).await["status"], "Succeeded");

    // b serves reads (once replicated) and refuses writes with the ARM error shape.
    eventually(SOON, Duration::from_millis(100), async || {
        match b.api.get_linker(WEB_APP_ID, "first").await.status {
            200 => Ok(()),
            s => Err(format!("not replicated yet: {s}")),
        }
    })
    .await;
    let refused = b.api.put_linker(WEB_APP_ID, "second", first.clone()).await;
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert_eq!(refused.code(), "RegionNotActive");
    assert!(refused.header("retry-after").is_some());
    let refused = b.api.delete_linker(WEB_APP_ID, "first").await;
    assert_eq!((refused.status, refused.code()), (503, "RegionNotActive"));

    // a starts a saga and dies right after its first step's side effect.
    let step = tether_app::sagas::definitions(1)
        .iter()
        .find(|d| d.name() == tether_app::sagas::LINKER_CREATE)
        .map(|d| d.step_names()[0])
        .unwrap();
    let crash = region("a", &primary_url, &etcd.endpoint()).env(
        "TETHER_CRASH_POINT",
        &format!("{}:{step}:after", tether_app::sagas::LINKER_CREATE),
    );
    a.restart(Some(crash)).await;
    ready_as(&a, "active").await;
    let second = secret_linker(PG_DATABASE_2_ID, "pw-second-1", "java", false);
    let path = tether_test_utils::Api::linker_path(WEB_APP_ID, "second");
    let _ = a
        .api
        .try_call(
            "PUT",
            &path,
            Some(&serde_json::json!({ "properties": second })),
        )
        .await;
    assert!(a.wait_exit(Duration::from_secs(30)).await, "a crashed");
    eventually(SOON, Duration::from_millis(100), async || {
        let reply = b.api.get_linker(WEB_APP_ID, "second").await;
        match reply.body["properties"]["provisioningState"].as_str() {
            Some("Accepted" | "Creating") => Ok(()),
            other => Err(format!(
                "the in-flight saga is not replicated yet: {other:?}"
            )),
        }
    })
    .await;

    // The prober's sequence: bar a from leading again, wait for its lease to run out,
    // promote b's database; b's replica, eligible now, takes the leader key itself.
    let keys = PairKeys {
        endpoints: vec![etcd.endpoint()],
        prefix: "/tether".into(),
        pair: PairName::parse("ab").unwrap(),
    };
    let control = PairControl::connect(keys, Duration::from_secs(2))
        .await
        .unwrap();
    control
        .request_step_down(&RegionName::parse("a").unwrap())
        .await
        .unwrap();
    eventually(SOON, Duration::from_millis(100), async || {
        match control.leader().await {
            Ok(None) => Ok(()),
            other => Err(format!("a still leads: {other:?}")),
        }
    })
    .await;
    let standby = Replication::connect(&standby_url).await.unwrap();
    standby.promote(Duration::from_secs(30)).await.unwrap();

    let ready_b = ready_as(&b, "active").await;
    assert_eq!(ready_b["database"]["role"], "primary");
    assert_eq!(ready_b["database"]["heartbeat"], true);
    let epoch_b = ready_b["epoch"].as_u64().unwrap();
    assert!(epoch_b > epoch_a, "a new leader, a newer epoch");

    // b adopts a's saga and finishes it; the operation's status says so through b.
    let linker = b
        .api
        .settled(WEB_APP_ID, "second", SOON)
        .await
        .expect("the linker exists");
    assert_eq!(linker["properties"]["provisioningState"], "Succeeded");

    // b accepts writes.
    let accepted = b
        .api
        .put_linker(
            WEB_APP_ID,
            "third",
            secret_linker(PG_DATABASE_ID, "pw-third-1", "go", false),
        )
        .await;
    assert_eq!(accepted.status, 201, "{}", accepted.text);
    assert_eq!(b.api.wait(&accepted).await["status"], "Succeeded");

    // A stale writer of a cannot commit a saga step on the promoted database: its epoch is
    // older than the one b committed with.
    let store = tether_store::connect(&standby_url, &tether_store::StoreOptions::default())
        .await
        .unwrap();
    let lease = Lease {
        owner: InstanceId::generate("stale-a"),
        generation: 1,
    };
    let stale = store
        .saga_record(
            SagaId::new(),
            &lease,
            Duration::from_secs(10),
            &[],
            None,
            Epoch::new(epoch_a),
        )
        .await;
    assert!(
        matches!(stale, Err(SagaStoreError::StaleEpoch)),
        "{stale:?}"
    );
    // The same call at b's epoch gets past the fence (and finds no such saga).
    let current = store
        .saga_record(
            SagaId::new(),
            &lease,
            Duration::from_secs(10),
            &[],
            None,
            Epoch::new(epoch_b),
        )
        .await;
    assert!(
        matches!(
            current,
            Err(SagaStoreError::Fenced | SagaStoreError::NotFound)
        ),
        "{current:?}"
    );
    drop(b);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_region_cut_off_from_etcd_stops_writing_before_the_standby_leads() {
    let etcd = EtcdServer::start().await.unwrap();
    let mut link = TcpProxy::start(etcd.endpoint().trim_start_matches("http://"))
        .await
        .unwrap();
    let pair = PgPair::start(false).await.unwrap();
    let env = env(Backend::Postgres).await;
    let (primary_url, standby_url) = (pair.primary.url(), pair.standby.url());
    // Region a reaches etcd only through a link the test cuts.
    let a = env.spawn_with(region("a", &primary_url, &link.url())).await;
    ready_as(&a, "active").await;
    let b = env
        .spawn_with(region("b", &standby_url, &etcd.endpoint()))
        .await;
    ready_as(&b, "passive").await;

    // Watch both replicas for the whole test: never are both active at once.
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = tokio::spawn({
        let (a_url, b_url, stop) = (a.url.clone(), b.url.clone(), watching.clone());
        async move {
            let active = async |url: &str| {
                reqwest::get(format!("{url}/readyz?role=active"))
                    .await
                    .is_ok_and(|r| r.status() == 200)
            };
            let mut samples = 0u32;
            while stop.load(std::sync::atomic::Ordering::SeqCst) {
                let (a, b) = tokio::join!(active(&a_url), active(&b_url));
                assert!(!(a && b), "two active regions");
                samples += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            samples
        }
    });

    link.cut().await;
    // a fences itself within its lease TTL: it still serves reads, refuses writes.
    let fenced = eventually(SOON, Duration::from_millis(50), async || {
        match readyz(&a).await {
            Some((200, body)) if body["role"] == "passive" => Ok(body),
            other => Err(format!("a not fenced yet: {other:?}")),
        }
    })
    .await;
    assert_eq!(fenced["region"]["lease"], "fenced");
    assert_eq!(
        fenced["database"]["role"], "primary",
        "its database is still writable"
    );
    let refused = a
        .api
        .put_linker(
            WEB_APP_ID,
            "cut",
            secret_linker(PG_DATABASE_ID, "pw-cut-1", "python", false),
        )
        .await;
    assert_eq!((refused.status, refused.code()), (503, "RegionNotActive"));

    // The prober's sequence; b leads, a (writable database, no etcd) still refuses writes.
    let keys = PairKeys {
        endpoints: vec![etcd.endpoint()],
        prefix: "/tether".into(),
        pair: PairName::parse("ab").unwrap(),
    };
    let control = PairControl::connect(keys, Duration::from_secs(2))
        .await
        .unwrap();
    control
        .request_step_down(&RegionName::parse("a").unwrap())
        .await
        .unwrap();
    eventually(SOON, Duration::from_millis(100), async || {
        match control.leader().await {
            Ok(None) => Ok(()),
            other => Err(format!("a's key is still held: {other:?}")),
        }
    })
    .await;
    Replication::connect(&standby_url)
        .await
        .unwrap()
        .promote(Duration::from_secs(30))
        .await
        .unwrap();
    ready_as(&b, "active").await;
    let accepted = b
        .api
        .put_linker(
            WEB_APP_ID,
            "after",
            secret_linker(PG_DATABASE_ID, "pw-after-1", "python", false),
        )
        .await;
    assert_eq!(b.api.wait(&accepted).await["status"], "Succeeded");
    let refused = a
        .api
        .put_linker(
            WEB_APP_ID,
            "late",
            secret_linker(PG_DATABASE_ID, "pw-late-1", "python", false),
        )
        .await;
    assert_eq!((refused.status, refused.code()), (503, "RegionNotActive"));

    watching.store(false, std::sync::atomic::Ordering::SeqCst);
    let samples = watcher.await.expect("no two active regions");
    assert!(samples > 0);
    drop((a, b));
    env.teardown().await;
}
