//! Configuration of failover, as the server will read it (serde, `deny_unknown_fields`,
//! defaults of DESIGN §5), checked and turned into the domain types: [`RegionConfig`] for a
//! `tether serve` replica's leadership member, [`ProbeConfig`] for `tether probe`. Every
//! duration and size is bounded; a bad value is an error naming the key.
//!
//! Phase 2 wires these into the `[region]` and `[probe]` sections of the server's
//! configuration (the server crate owns the file format and the environment overrides).

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Deserialize;

use crate::decide::Policy;
use crate::dns::{DnsName, Rfc2136Config};
use crate::journey::JourneyConfig;
use crate::leader::{DEFAULT_PREFIX, LeaderConfig, PairKeys};
use crate::probe::ShellConfig;
use crate::types::{PairName, RegionName};

/// A configuration error: which key, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid failover setting '{key}': {reason}")]
pub struct ConfigError {
    /// The key (`probe.interval_secs`, …).
    pub key: &'static str,
    /// Why.
    pub reason: &'static str,
}

fn bad(key: &'static str, reason: &'static str) -> ConfigError {
    ConfigError { key, reason }
}

fn secs(key: &'static str, value: u64, min: u64, max: u64) -> Result<Duration, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(Duration::from_secs(value))
    } else {
        Err(bad(key, "out of range"))
    }
}

fn millis(key: &'static str, value: u64, min: u64, max: u64) -> Result<Duration, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(Duration::from_millis(value))
    } else {
        Err(bad(key, "out of range"))
    }
}

/// A replica's region settings (`[region]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    /// This replica's region.
    pub name: RegionName,
    /// The pair it belongs to.
    pub pair: PairName,
    /// etcd client URLs (1 to 16).
    pub etcd_endpoints: Vec<String>,
    /// Key prefix in etcd (default `/tether`).
    #[serde(default = "default_prefix")]
    pub etcd_prefix: String,
    /// Lease TTL in seconds (default 10, 2–120).
    #[serde(default = "default_ttl_secs")]
    pub lease_ttl_secs: u64,
}

fn default_prefix() -> String {
    DEFAULT_PREFIX.to_string()
}
fn default_ttl_secs() -> u64 {
    10
}

impl RegionConfig {
    /// The leadership member's configuration.
    pub fn leader_config(&self) -> Result<LeaderConfig, ConfigError> {
        let ttl = secs("region.lease_ttl_secs", self.lease_ttl_secs, 2, 120)?;
        if self.etcd_endpoints.is_empty() || self.etcd_endpoints.len() > 16 {
            return Err(bad("region.etcd_endpoints", "give 1 to 16 URLs"));
        }
        if !self.etcd_prefix.starts_with('/') || self.etcd_prefix.ends_with('/') {
            return Err(bad("region.etcd_prefix", "start with '/', no trailing '/'"));
        }
        Ok(LeaderConfig {
            keys: PairKeys {
                endpoints: self.etcd_endpoints.clone(),
                prefix: self.etcd_prefix.clone(),
                pair: self.pair.clone(),
            },
            region: self.name.clone(),
            ttl,
        })
    }
}

/// The prober's settings (`[probe]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// The pair.
    pub pair: PairName,
    /// The active region.
    pub active: RegionName,
    /// Its standby.
    pub standby: RegionName,
    /// The standby's public addresses (what DNS points at after failover).
    pub standby_addrs: Vec<Ipv4Addr>,
    /// etcd client URLs.
    pub etcd_endpoints: Vec<String>,
    /// Key prefix in etcd (default `/tether`).
    #[serde(default = "default_prefix")]
    pub etcd_prefix: String,
    /// The active region's database (for the lag measurement).
    pub primary_database_url: secrecy::SecretString,
    /// The standby's database (role, promotion).
    pub standby_database_url: secrecy::SecretString,
    /// The standby's `application_name` on the primary (default `tether_b`).
    #[serde(default = "default_standby_name")]
    pub standby_application_name: String,
    /// The service's DNS name.
    pub service_name: String,
    /// The DNS server and TSIG key.
    pub dns: Rfc2136Config,
    /// The active region's replicas and the synthetic journey's credentials and resources.
    pub journey: JourneyConfig,
    /// Seconds between probes (default 5, 1–600).
    #[serde(default = "d5")]
    pub interval_secs: u64,
    /// Probe timeout in milliseconds (default 2000, 10–60000, at most the interval).
    #[serde(default = "d2000")]
    pub timeout_ms: u64,
    /// Consecutive failures before the region is down (default 3, 1–100).
    #[serde(default = "d3")]
    pub failure_threshold: u32,
    /// …spanning at least this many seconds (default 8, 0–3600).
    #[serde(default = "d8")]
    pub min_down_window_secs: u64,
    /// Consecutive successes before a down region is up again (default 3, 1–100).
    #[serde(default = "d3")]
    pub recovery_threshold: u32,
    /// …spanning at least this many seconds (default 8, 0–3600).
    #[serde(default = "d8")]
    pub min_recovery_window_secs: u64,
    /// The replicas' lease TTL in seconds (default 10, 2–120; must match theirs).
    #[serde(default = "default_ttl_secs")]
    pub lease_ttl_secs: u64,
    /// Fence margin in milliseconds (default 1000, 0–60000).
    #[serde(default = "d1000")]
    pub fence_margin_ms: u64,
    /// Seconds the active region may keep its lease after a step-down request before the
    /// failover is aborted (default 30; at least TTL + margin, at most 3600).
    #[serde(default = "d30")]
    pub step_down_timeout_secs: u64,
    /// Largest lag in bytes for automatic promotion (default 16 MiB).
    #[serde(default = "default_max_lag_bytes")]
    pub max_lag_bytes: u64,
    /// Largest lag in milliseconds for automatic promotion (default 1000, ≤ 3600000).
    #[serde(default = "d1000")]
    pub max_lag_ms: u64,
    /// Fail over without an operator (default true).
    #[serde(default = "yes")]
    pub automatic: bool,
    /// TTL of the DNS records written at failover, seconds (default 5, 1–86400).
    #[serde(default = "d5")]
    pub record_ttl_secs: u64,
    /// How long `pg_promote` may wait, seconds (default 30, 1–600).
    #[serde(default = "d30")]
    pub promote_wait_secs: u64,
}

fn default_standby_name() -> String {
    "tether_b".into()
}
fn default_max_lag_bytes() -> u64 {
    16 * 1024 * 1024
}
fn d3() -> u32 {
    3
}
fn d5() -> u64 {
    5
}
fn d8() -> u64 {
    8
}
fn d30() -> u64 {
    30
}
fn d1000() -> u64 {
    1000
}
fn d2000() -> u64 {
    2000
}
fn yes() -> bool {
    true
}

impl ProbeConfig {
    /// The decision function's policy.
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        let lease_ttl = secs("probe.lease_ttl_secs", self.lease_ttl_secs, 2, 120)?;
        let fence_margin = millis("probe.fence_margin_ms", self.fence_margin_ms, 0, 60_000)?;
        let step_down_timeout = secs(
            "probe.step_down_timeout_secs",
            self.step_down_timeout_secs,
            1,
            3600,
        )?;
        if step_down_timeout < lease_ttl + fence_margin {
            return Err(bad(
                "probe.step_down_timeout_secs",
                "must be at least the lease ttl plus the fence margin",
            ));
        }
        if self.standby_addrs.is_empty() || self.standby_addrs.len() > 64 {
            return Err(bad("probe.standby_addrs", "give 1 to 64 addresses"));
        }
        if self.active == self.standby {
            return Err(bad("probe.standby", "must differ from probe.active"));
        }
        let threshold = |key, n: u32| {
            if (1..=100).contains(&n) {
                Ok(n)
            } else {
                Err(bad(key, "out of range"))
            }
        };
        let policy = Policy {
            active: self.active.clone(),
            standby: self.standby.clone(),
            standby_addrs: self.standby_addrs.iter().copied().collect(),
            failure_threshold: threshold("probe.failure_threshold", self.failure_threshold)?,
            min_down_window: secs(
                "probe.min_down_window_secs",
                self.min_down_window_secs,
                0,
                3600,
            )?,
            recovery_threshold: threshold("probe.recovery_threshold", self.recovery_threshold)?,
            min_recovery_window: secs(
                "probe.min_recovery_window_secs",
                self.min_recovery_window_secs,
                0,
                3600,
            )?,
            lease_ttl,
            fence_margin,
            step_down_timeout,
            max_lag_bytes: self.max_lag_bytes,
            max_lag_delay: millis("probe.max_lag_ms", self.max_lag_ms, 0, 3_600_000)?,
            automatic: self.automatic,
        };
        policy.validate().map_err(|reason| bad("probe", reason))?;
        Ok(policy)
    }

    /// The shell's settings.
    pub fn shell(&self) -> Result<ShellConfig, ConfigError> {
        let service_name = DnsName::parse(&self.service_name)
            .map_err(|_| bad("probe.service_name", "not a valid dns name"))?;
        let interval = secs("probe.interval_secs", self.interval_secs, 1, 600)?;
        let probe_timeout = millis("probe.timeout_ms", self.timeout_ms, 10, 60_000)?;
        if probe_timeout > interval {
            return Err(bad("probe.timeout_ms", "must be at most the interval"));
        }
        let shell = ShellConfig {
            interval,
            probe_timeout,
            record_ttl: secs("probe.record_ttl_secs", self.record_ttl_secs, 1, 86_400)?,
            ..ShellConfig::default_for(service_name)
        };
        shell.validate().map_err(|reason| bad("probe", reason))?;
        Ok(shell)
    }

    /// The etcd keys of the pair.
    pub fn keys(&self) -> Result<PairKeys, ConfigError> {
        if self.etcd_endpoints.is_empty() || self.etcd_endpoints.len() > 16 {
            return Err(bad("probe.etcd_endpoints", "give 1 to 16 URLs"));
        }
        if !self.etcd_prefix.starts_with('/') || self.etcd_prefix.ends_with('/') {
            return Err(bad("probe.etcd_prefix", "start with '/', no trailing '/'"));
        }
        Ok(PairKeys {
            endpoints: self.etcd_endpoints.clone(),
            prefix: self.etcd_prefix.clone(),
            pair: self.pair.clone(),
        })
    }

    /// `pg_promote`'s wait.
    pub fn promote_wait(&self) -> Result<Duration, ConfigError> {
        secs("probe.promote_wait_secs", self.promote_wait_secs, 1, 600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe_json() -> serde_json::Value {
        serde_json::json!({
            "pair": "pair-1",
            "active": "a",
            "standby": "b",
            "standby_addrs": ["127.0.0.21", "127.0.0.22"],
            "etcd_endpoints": ["http://127.0.0.10:2379"],
            "primary_database_url": "postgres://postgres@127.0.0.10/tether",
            "standby_database_url": "postgres://postgres@127.0.0.20/tether",
            "service_name": "api.tether.test",
            "dns": {
                "server": "127.0.0.1:53",
                "zone": "tether.test.",
                "tsig": { "name": "tether-key", "secret": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0" }
            },
            "journey": {
                "replicas": ["http://127.0.0.11:25080"],
                "token_url": "http://127.0.0.30:25081/t/oauth2/v2.0/token",
                "client_id": "prober",
                "client_secret": "secret",
                "source_id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/probe",
                "target_id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/p/databases/probe"
            }
        })
    }

    fn parse(v: serde_json::Value) -> ProbeConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn defaults_are_design_section_5() {
        let c = parse(probe_json());
        let policy = c.policy().unwrap();
        assert_eq!(
            policy,
            Policy::default_for(
                RegionName::parse("a").unwrap(),
                RegionName::parse("b").unwrap(),
                [Ipv4Addr::new(127, 0, 0, 21), Ipv4Addr::new(127, 0, 0, 22)].into()
            )
        );
        let shell = c.shell().unwrap();
        assert_eq!(shell.interval, Duration::from_secs(5));
        assert_eq!(shell.probe_timeout, Duration::from_secs(2));
        assert_eq!(shell.record_ttl, Duration::from_secs(5));
        assert_eq!(c.promote_wait().unwrap(), Duration::from_secs(30));
        assert_eq!(
            c.keys().unwrap().leader_key(),
            "/tether/pairs/pair-1/leader"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let with = |key: &str, value: serde_json::Value| {
            let mut v = probe_json();
            v[key] = value;
            parse(v)
        };
        let cases = [
            (
                with("interval_secs", 0.into()).shell(),
                "probe.interval_secs",
            ),
            (with("timeout_ms", 9000.into()).shell(), "probe.timeout_ms"),
            (
                with("record_ttl_secs", 0.into()).shell(),
                "probe.record_ttl_secs",
            ),
            (
                with("service_name", "bad..name".into()).shell(),
                "probe.service_name",
            ),
        ];
        for (result, key) in cases {
            assert_eq!(result.unwrap_err().key, key);
        }
        let cases = [
            (
                with("lease_ttl_secs", 1.into()).policy(),
                "probe.lease_ttl_secs",
            ),
            (
                with("failure_threshold", 0.into()).policy(),
                "probe.failure_threshold",
            ),
            (
                with("step_down_timeout_secs", 5.into()).policy(),
                "probe.step_down_timeout_secs",
            ),
            (with("standby", "a".into()).policy(), "probe.standby"),
            (
                with("standby_addrs", serde_json::json!([])).policy(),
                "probe.standby_addrs",
            ),
            (
                with("max_lag_ms", u64::MAX.into()).policy(),
                "probe.max_lag_ms",
            ),
        ];
        for (result, key) in cases {
            assert_eq!(result.unwrap_err().key, key);
        }
        assert!(with("promote_wait_secs", 0.into()).promote_wait().is_err());
        // Unknown keys and bad names are refused by the parser.
        let mut v = probe_json();
        v["intervall_secs"] = 5.into();
        assert!(serde_json::from_value::<ProbeConfig>(v).is_err());
        let mut v = probe_json();
        v["active"] = "A/1".into();
        assert!(serde_json::from_value::<ProbeConfig>(v).is_err());
    }

    #[test]
    fn region_settings() {
        let c: RegionConfig = serde_json::from_value(serde_json::json!({
            "name": "a",
            "pair": "pair-1",
            "etcd_endpoints": ["http://127.0.0.10:2379"],
        }))
        .unwrap();
        let l = c.leader_config().unwrap();
        assert_eq!(l.ttl, Duration::from_secs(10));
        assert_eq!(l.keys.prefix, "/tether");
        let c = RegionConfig {
            lease_ttl_secs: 500,
            ..c
        };
        assert_eq!(c.leader_config().unwrap_err().key, "region.lease_ttl_secs");
    }
}
