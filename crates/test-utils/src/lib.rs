//! `tether-test-utils`: the end-to-end test harness (a dev-dependency only).
//!
//! A [`TestEnv`] is a fresh database (Postgres or SQLite), the mock Azure backend running in
//! the test process, and the settings its replicas share; [`TestEnv::spawn`] starts a real
//! `tether serve` process on a random port, so tests can kill and restart replicas. [`Api`]
//! checks the responses to its typed calls against the OpenAPI document of their api-version,
//! and every response for leaked secrets. Test logs stay in files unless `TEST_LOG=1`.

mod api;
mod app;
mod mock;
pub mod openapi;

pub use api::{Api, Reply, check_exchange, spec};
pub use app::{Backend, Replica, ReplicaOptions, TestEnv};
pub use mock::Mock;

use std::time::Duration;

/// Runs `probe` every `every` until it returns `Ok`, and panics with the last `Err` (what is
/// still missing) once `timeout` has passed. Tests synchronise with this, never with a sleep.
pub async fn eventually<T, F>(timeout: Duration, every: Duration, mut probe: impl FnMut() -> F) -> T
where
    F: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(done) => return done,
            Err(missing) => assert!(
                tokio::time::Instant::now() < deadline,
                "after {timeout:?}: {missing}"
            ),
        }
        tokio::time::sleep(every).await;
    }
}
