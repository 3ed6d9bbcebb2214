//! The prober's real region probe (`tether_failover::journey::HttpJourney`) against real
//! `tether serve` replicas: the whole journey passes on a healthy region and leaves no probe
//! connection behind; it fails at the deep check once every replica is gone, and passes
//! through any replica that is still ready.

use std::time::Duration;

use tether_failover::journey::{HttpJourney, JourneyConfig};
use tether_failover::probe::{ProbeError, RegionProbe};
use tether_mock_azure::demo;
use tether_test_utils::Backend;

use crate::support::{PG_DATABASE_ID, WEB_APP_ID, env};

fn journey(replicas: Vec<String>, mock: &str) -> HttpJourney {
    HttpJourney::new(
        JourneyConfig {
            replicas,
            token_url: format!("{mock}/{}/oauth2/v2.0/token", demo::TENANT_ID),
            client_id: demo::CLIENT_ID.into(),
            client_secret: demo::CLIENT_SECRET.to_string().into(),
            scope: "https://management.azure.com/.default".into(),
            source_id: WEB_APP_ID.into(),
            target_id: PG_DATABASE_ID.into(),
            connection_name: "tether-probe".into(),
            api_version: "2022-05-01".into(),
        },
        Duration::from_secs(10),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_journey_passes_through_any_ready_replica_and_fails_when_none_is() {
    let env = env(Backend::Postgres).await;
    let mut first = env.spawn().await;
    let second = env.spawn().await;
    let start = env.mock.state().await;
    let probe = journey(vec![first.url.clone(), second.url.clone()], &env.mock.url);

    probe.probe().await.unwrap();
    // Twice: the second run finds nothing left by the first.
    probe.probe().await.unwrap();
    assert_eq!(
        second
            .api
            .get_linker(WEB_APP_ID, "tether-probe")
            .await
            .status,
        404
    );
    assert_eq!(env.mock.state().await, start, "the journey leaves no trace");

    first.kill().await;
    probe.probe().await.unwrap();

    let only_dead = journey(vec![first.url.clone()], &env.mock.url);
    match only_dead.probe().await {
        Err(ProbeError::Journey { step, .. }) => assert_eq!(step, "readyz"),
        other => panic!("expected a failed deep check, got {other:?}"),
    }
    env.teardown().await;
}
