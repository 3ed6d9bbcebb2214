//! The replication helpers against a real primary and streaming standby that each test
//! creates (`initdb` + `pg_basebackup -R`, random loopback ports, a temporary directory):
//! roles, lag from both sides, promotion, synchronous replication.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers may panic: a panic is a test failure"
)]

use std::time::Duration;

use tether_store::replication::testing::PgPair;
use tether_store::replication::{DbRole, Promotion, Replication};

async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(missing) => assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: after 30 s: {missing}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn roles_lag_from_both_sides_and_promotion() {
    let pair = PgPair::start(false).await.unwrap();
    let primary = Replication::connect(&pair.primary.url()).await.unwrap();
    let standby = Replication::connect(&pair.standby.url()).await.unwrap();

    assert_eq!(primary.role().await.unwrap(), DbRole::Primary);
    assert_eq!(standby.role().await.unwrap(), DbRole::Standby);
    assert!(primary.standby_status().await.unwrap().is_none());

    let replicas = primary.replicas().await.unwrap();
    assert_eq!(replicas.len(), 1, "{replicas:?}");
    assert_eq!(replicas[0].application_name, "tether_b");
    assert_eq!(replicas[0].state, "streaming");
    assert_eq!(replicas[0].sync_state, "async");
    assert!(!replicas[0].is_synchronous());
    assert!(
        !primary.sync_settings().await.unwrap().waits_for_standby(),
        "asynchronous by default"
    );

    // Pause replay on the standby, write on the primary: the standby receives but does not
    // replay, and both sides see it.
    standby
        .execute("select pg_wal_replay_pause()")
        .await
        .unwrap();
    primary
        .execute(
            "create table t as select g, repeat('x', 100) as v from generate_series(1, 20000) g",
        )
        .await
        .unwrap();
    let written = primary.current_wal_lsn().await.unwrap();
    let status = eventually("the standby receives the write", || async {
        let s = standby.standby_status().await.unwrap().unwrap();
        match s.receive_lsn {
            Some(received) if received >= written => Ok(s),
            _ => Err(format!("{s:?}, primary at {written}")),
        }
    })
    .await;
    assert!(status.streaming, "{status:?}");
    assert!(
        status.replay_backlog_bytes > 1_000_000,
        "about 2 MB written and not replayed: {status:?}"
    );
    let seen = eventually("the primary sees the replay lag", || async {
        let r = primary.replicas().await.unwrap().remove(0);
        match (r.flush_lag_bytes, r.replay_lag_bytes) {
            (Some(0), Some(replay)) if replay > 1_000_000 => Ok(r),
            _ => Err(format!("{r:?}")),
        }
    })
    .await;
    assert_eq!(seen.state, "streaming");

    // Resume: the lag goes.
    standby
        .execute("select pg_wal_replay_resume()")
        .await
        .unwrap();
    eventually("the standby catches up", || async {
        let s = standby.standby_status().await.unwrap().unwrap();
        if s.replay_backlog_bytes == 0 && s.replay_lsn >= Some(written) {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    eventually("the primary sees it caught up", || async {
        let r = primary.replicas().await.unwrap().remove(0);
        if r.replay_lag_bytes == Some(0) {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await;

    // A standby refuses writes; after promotion it takes them, with the data replicated.
    assert!(
        standby
            .execute("insert into t values (0, 'no')")
            .await
            .is_err()
    );
    assert_eq!(
        standby.promote(Duration::from_secs(30)).await.unwrap(),
        Promotion::Promoted
    );
    assert_eq!(standby.role().await.unwrap(), DbRole::Primary);
    assert!(standby.standby_status().await.unwrap().is_none());
    assert_eq!(
        standby
            .execute("insert into t values (0, 'yes')")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        standby.execute("select * from t").await.unwrap(),
        20_001,
        "every replicated row is there"
    );
    // Idempotent.
    assert_eq!(
        standby.promote(Duration::from_secs(30)).await.unwrap(),
        Promotion::AlreadyPrimary
    );
    assert_eq!(
        primary.promote(Duration::from_secs(30)).await.unwrap(),
        Promotion::AlreadyPrimary
    );
}

#[tokio::test]
async fn synchronous_replication_is_reported() {
    let pair = PgPair::start(true).await.unwrap();
    let primary = Replication::connect(&pair.primary.url()).await.unwrap();
    let settings = primary.sync_settings().await.unwrap();
    assert_eq!(settings.synchronous_standby_names, "tether_b");
    assert_eq!(settings.synchronous_commit, "on");
    assert!(settings.waits_for_standby());
    let replica = eventually("the standby is synchronous", || async {
        let r = primary.replicas().await.unwrap();
        match r.first() {
            Some(r) if r.is_synchronous() => Ok(r.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(replica.sync_state, "sync");
    // A commit returns only once the standby has flushed it: no flush lag afterwards.
    primary.execute("create table s (x int)").await.unwrap();
    primary.execute("insert into s values (1)").await.unwrap();
    let r = primary.replicas().await.unwrap().remove(0);
    assert_eq!(r.flush_lag_bytes, Some(0), "{r:?}");

    // With the standby gone, a commit waits: bounded here by the statement timeout, and
    // a timed-out wait is an error, never a success.
    let mut pair = pair;
    pair.standby.kill().await.unwrap();
    eventually("the primary notices the standby left", || async {
        let r = primary.replicas().await.unwrap();
        if r.is_empty() {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await;
    let started = std::time::Instant::now();
    let waited = tokio::time::timeout(
        Duration::from_millis(500),
        primary.execute("insert into s values (2)"),
    )
    .await;
    assert!(waited.is_err(), "the commit must wait for the standby");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_commit_waiting_for_a_lost_synchronous_standby_fails_never_succeeds() {
    let mut pair = PgPair::start(true).await.unwrap();
    let options = tether_store::StoreOptions {
        query_timeout: Duration::from_secs(1),
        ..tether_store::StoreOptions::default()
    };
    let store = tether_store::connect(&pair.primary.url(), &options)
        .await
        .unwrap();
    let me = tether_model::ids::InstanceId::generate("sync");
    store.heartbeat(&me).await.unwrap();
    let primary = Replication::connect(&pair.primary.url()).await.unwrap();
    pair.standby.kill().await.unwrap();
    eventually("the primary notices the standby left", || async {
        let r = primary.replicas().await.unwrap();
        if r.is_empty() {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    })
    .await;
    // The commit waits for the standby; the store gives up after its query timeout and
    // reports a failure, before the server's statement timeout could turn the canceled wait
    // into a "successful" commit with a warning.
    let err = store.heartbeat(&me).await.unwrap_err();
    assert!(
        matches!(err, tether_store::StoreError::TimedOut(_)),
        "{err:?}"
    );
    // Later writes fail too (waiting, or behind the row lock the unreplicated commit holds).
    for _ in 0..2 {
        assert!(store.heartbeat(&me).await.is_err());
    }
}
