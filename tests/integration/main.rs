//! End-to-end tests: real `tether serve` processes against the mock Azure backend, on
//! Postgres and on SQLite, through the HTTP API (every response checked against the OpenAPI
//! document of its api-version).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers may panic: a panic is a test failure"
)]

mod authorization;
mod authz;
mod catalogue;
mod chaos;
mod conventions;
mod crash;
mod faults;
mod hostile;
mod lifecycle;
mod operators;
#[cfg(feature = "regions")]
mod regions;
mod restart;
mod rollback;
mod sdk;
mod support;
mod upgrade;
