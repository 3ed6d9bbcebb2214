//! The Postgres epoch fence (`tether_fence`, migrations/postgres) under concurrency, on a
//! throw-away database: a new leader's raise waits for a commit that passed the check under
//! the old epoch, and every later check of the old epoch fails. (What the fence refuses is
//! in the store contract, on both backends.)

#![allow(
    clippy::unwrap_used,
    reason = "test helpers may panic: a panic is a test failure"
)]

use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tether_store::testing::TestDb;

/// Waits (30 s at most) until some session waits for the fence's advisory lock.
async fn someone_waits_for_the_fence(observer: &mut PgConnection) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (waiting,): (i64,) = sqlx::query_as(
            "select count(*) from pg_locks
             where locktype = 'advisory' and classid = 1952805992 and objid = 1 and not granted",
        )
        .fetch_one(&mut *observer)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nobody waited for the fence"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_raise_waits_for_commits_under_the_old_epoch_and_then_refuses_them() {
    let db = TestDb::postgres().await.unwrap();
    drop(
        tether_store::connect(&db.url, &tether_store::StoreOptions::default())
            .await
            .unwrap(),
    );
    let mut old_leader = PgConnection::connect(&db.url).await.unwrap();
    let mut observer = PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("select tether_fence(5)")
        .execute(&mut old_leader)
        .await
        .unwrap();

    // A commit of epoch 5 passes the check and has not committed yet.
    let mut in_flight = old_leader.begin().await.unwrap();
    sqlx::query("select tether_fence(5)")
        .execute(&mut *in_flight)
        .await
        .unwrap();

    // The new leader's raise to 7 waits for it.
    let url = db.url.clone();
    let raise = tokio::spawn(async move {
        let mut new_leader = PgConnection::connect(&url).await.unwrap();
        sqlx::query("select tether_fence(7)")
            .execute(&mut new_leader)
            .await
    });
    someone_waits_for_the_fence(&mut observer).await;
    assert!(!raise.is_finished(), "the raise did not wait");
    in_flight.commit().await.unwrap();
    raise.await.unwrap().unwrap();

    // From now on epoch 5 is refused, with the fence's own code.
    let err = sqlx::query("select tether_fence(5)")
        .execute(&mut old_leader)
        .await
        .unwrap_err();
    let code = err.as_database_error().and_then(|e| e.code());
    assert_eq!(code.as_deref(), Some("TF001"), "{err}");
    let (stored,): (i64,) = sqlx::query_as("select epoch from saga_fence")
        .fetch_one(&mut observer)
        .await
        .unwrap();
    assert_eq!(stored, 7);
    sqlx::query("select tether_fence(7)")
        .execute(&mut old_leader)
        .await
        .unwrap();
    drop((old_leader, observer));
    db.drop_database().await.unwrap();
}
