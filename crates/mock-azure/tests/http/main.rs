//! End-to-end tests of the mock over real HTTP: one binary, one module per concern.

// `allow-unwrap-in-tests` covers `#[test]` functions only; the shared helpers are test code too.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] fns: a panic is the failure report"
)]

mod admin;
mod auth;
mod authorization;
mod dataplane;
mod faults;
mod providers;
mod resources;
mod sources;
mod support;
mod targets;
