//! `tether-failover`: regional failover for a pair of regions (DESIGN §5).
//!
//! It owns:
//! - [`decide`]: the prober's pure decision function — health with hysteresis and the
//!   failover sequence (step down → fence wait → lag gate → promote → take leadership →
//!   DNS compare-and-swap) as explicit states;
//! - [`leader`]: leadership of a pair in etcd — the leader key under a lease, the epoch
//!   (the key's `create_revision`), self-fencing when the lease cannot be confirmed,
//!   step-down;
//! - [`dns`]: the [`dns::DnsProvider`] port with an RFC 2136 implementation (TSIG-signed,
//!   compare-and-swap through prerequisites) and an in-memory fake;
//! - [`probe`]: the IO shell that feeds observations to `decide` and carries out its
//!   decisions through small traits;
//! - [`journey`]: the real region probe — `/readyz` of the replicas plus the synthetic
//!   journey through the public API;
//! - [`drill`]: the failover drill — client load through DNS, a kill, and the report;
//! - [`config`]: the settings, with the defaults of DESIGN §5 and bounds on every value.
//!
//! Depends on `tether-store` (Postgres replication helpers) and nothing above it; it must
//! never depend on the API's axum routes, the app or the saga engine.

pub mod config;
pub mod decide;
pub mod dns;
pub mod drill;
pub mod journey;
pub mod leader;
pub mod probe;
#[cfg(feature = "testing")]
pub mod testing;
pub mod types;

pub use types::{Epoch, InvalidName, PairName, RegionName, ServiceRecord};
