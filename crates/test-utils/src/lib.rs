//! `tether-test-utils`: the end-to-end test harness (a dev-dependency only).
//!
//! A [`TestEnv`] is a fresh database (Postgres or SQLite), the mock Azure backend running in
//! the test process, and the settings its replicas share; [`TestEnv::spawn`] starts a real
//! `tether serve` process on a random port, so tests can kill and restart replicas. [`Api`]
//! checks every response against the OpenAPI document of its api-version and for leaked
//! secrets. Test logs stay in files unless `TEST_LOG=1`.

mod api;
mod app;
mod mock;
pub mod openapi;

pub use api::{Api, Reply, check_exchange, spec};
pub use app::{Backend, Replica, ReplicaOptions, TestEnv};
pub use mock::Mock;
