//! The typed configuration of `tether serve`: a TOML file overridden by `TETHER__SECTION__KEY`
//! environment variables, checked at start-up so a bad value fails fast with its key's name.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tether_adapters::arm::{ArmConfig, Url};
use tether_api::{BaseUrl, HttpLimits};
use tether_app::SecretBox;
use tether_model::ids::InstanceId;
use tether_saga::ExecutorConfig;

/// Everything `tether serve` reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP server settings.
    pub server: ServerConfig,
    /// The store.
    pub database: DatabaseConfig,
    /// Caller authentication.
    pub auth: AuthConfig,
    /// Encryption of secrets at rest.
    pub secrets: SecretsConfig,
    /// The Azure Resource Manager backend.
    pub azure: AzureConfig,
    /// Saga execution.
    #[serde(default)]
    pub sagas: SagasConfig,
    /// Removal of finished operations and saga logs.
    #[serde(default)]
    pub housekeeping: HousekeepingConfig,
    /// Request throttling per principal and per subscription.
    #[serde(default)]
    pub throttle: ThrottleConfig,
    /// The audit trail.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// The replica's region (`[region]`, `regions` feature): absent, the replica runs
    /// alone and is always active.
    #[cfg(feature = "regions")]
    #[serde(default)]
    pub region: Option<RegionSection>,
}

/// `[region]`: the region this replica belongs to and where its leadership lives (see
/// docs/failover.md). Checked through [`tether_failover::config::RegionConfig`].
#[cfg(feature = "regions")]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSection {
    /// This replica's region (`a-z`, `0-9`, `-`; 1 to 63 characters).
    pub name: String,
    /// The pair of regions it belongs to (same spelling).
    pub pair: String,
    /// etcd client URLs (1 to 16).
    pub etcd_endpoints: Vec<String>,
    /// Key prefix in etcd.
    #[serde(default = "default_etcd_prefix")]
    pub etcd_prefix: String,
    /// Lease TTL in seconds (2-120); the prober's `lease_ttl_secs` must match.
    #[serde(default = "default_lease_ttl_secs")]
    pub lease_ttl_secs: u64,
    /// The region's public endpoint (what DNS points at while it is active), reported by
    /// `/readyz`.
    #[serde(default)]
    pub public_endpoint: Option<String>,
    /// How often the database's role is read to decide eligibility, in milliseconds
    /// (100-60000).
    #[serde(default = "default_role_check_interval_ms")]
    pub role_check_interval_ms: u64,
}

#[cfg(feature = "regions")]
fn default_etcd_prefix() -> String {
    tether_failover::leader::DEFAULT_PREFIX.to_string()
}
#[cfg(feature = "regions")]
fn default_lease_ttl_secs() -> u64 {
    10
}
#[cfg(feature = "regions")]
fn default_role_check_interval_ms() -> u64 {
    1000
}

#[cfg(feature = "regions")]
impl RegionSection {
    /// The leadership member's settings, checked.
    pub fn leader_config(&self) -> anyhow::Result<tether_failover::leader::LeaderConfig> {
        use tether_failover::{PairName, RegionName};
        let invalid =
            |key: &str, e: &dyn std::fmt::Display| anyhow!("invalid configuration: {key}: {e}");
        let config = tether_failover::config::RegionConfig {
            name: RegionName::parse(&self.name).map_err(|e| invalid("region.name", &e))?,
            pair: PairName::parse(&self.pair).map_err(|e| invalid("region.pair", &e))?,
            etcd_endpoints: self.etcd_endpoints.clone(),
            etcd_prefix: self.etcd_prefix.clone(),
            lease_ttl_secs: self.lease_ttl_secs,
        };
        Ok(config.leader_config()?)
    }

    /// How often the database's role is read.
    pub fn role_check_interval(&self) -> Duration {
        Duration::from_millis(self.role_check_interval_ms)
    }

    fn check(&self) -> anyhow::Result<()> {
        self.leader_config()?;
        if !(100..=60_000).contains(&self.role_check_interval_ms) {
            return Err(anyhow!(
                "invalid configuration: region.role_check_interval_ms must be between 100 and 60000"
            ));
        }
        Ok(())
    }
}

/// `[server]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The URL clients reach this service at (scheme and host); polling and paging URLs are
    /// built from it. Required unless `trusted_hosts` is set.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Instead of `public_url`: the host names (`host` or `host:port`) a request's `Host`
    /// may name; URLs are then built from the request's `Host` over `public_scheme`, and
    /// requests naming any other host are refused.
    #[serde(default)]
    pub trusted_hosts: Vec<String>,
    /// The scheme of URLs built from a trusted `Host`.
    #[serde(default = "default_scheme")]
    pub public_scheme: String,
    /// The location segment of operation URLs.
    #[serde(default = "default_location")]
    pub location: String,
    /// `Retry-After` on long-running operations, in seconds (1-600).
    #[serde(default = "default_retry_after")]
    pub retry_after_secs: u32,
    /// A readable name for this replica (its saga-ownership id adds a random suffix).
    #[serde(default = "default_instance_name")]
    pub instance_name: String,
    /// Time for a client to send a request's line and headers.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: f64,
    /// Longest pause between two pieces of a request body.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: f64,
    /// Time to handle one request, body included (`408` after it).
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: f64,
    /// Connections open at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Requests handled at once; more get `503 ServerBusy`.
    #[serde(default = "default_max_requests")]
    pub max_requests: usize,
    /// Largest list page, in bytes.
    #[serde(default = "default_page_bytes")]
    pub page_bytes: usize,
    /// How long a graceful stop lets requests in flight finish.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: f64,
}

impl ServerConfig {
    /// The settings of a server on `listen` with every default (and neither a public URL nor
    /// trusted hosts yet).
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            public_url: None,
            trusted_hosts: Vec::new(),
            public_scheme: default_scheme(),
            location: default_location(),
            retry_after_secs: default_retry_after(),
            instance_name: default_instance_name(),
            header_timeout_secs: default_header_timeout(),
            body_timeout_secs: default_body_timeout(),
            request_timeout_secs: default_request_timeout_secs(),
            max_connections: default_max_connections(),
            max_requests: default_max_requests(),
            page_bytes: default_page_bytes(),
            shutdown_grace_secs: default_shutdown_grace(),
        }
    }
}

/// `[database]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://…` (production) or `sqlite://…` (single node).
    pub url: String,
    /// Connections in the pool.
    #[serde(default = "default_db_connections")]
    pub max_connections: u32,
    /// Longest wait for a pooled connection before answering `503`.
    #[serde(default = "default_acquire_timeout")]
    pub acquire_timeout_secs: f64,
    /// Longest time one store call (query or transaction) may take, end to end, before it
    /// is abandoned as a database fault (`503`); Postgres also gets it as `statement_timeout`.
    #[serde(default = "default_query_timeout")]
    pub query_timeout_secs: f64,
}

impl DatabaseConfig {
    /// The settings of a database at `url` with every default.
    pub fn new(url: String) -> Self {
        Self {
            url,
            max_connections: default_db_connections(),
            acquire_timeout_secs: default_acquire_timeout(),
            query_timeout_secs: default_query_timeout(),
        }
    }
}

/// `[auth]`: JWT authentication (`issuers`, `audiences`, ...).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The token issuers trusted (at least one).
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
    /// Accepted `aud` values (exact match).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Tolerance on `exp` and `nbf`, in seconds (0-600).
    #[serde(default = "default_clock_skew")]
    pub clock_skew_secs: f64,
    /// Allow `http://` issuers and key URLs (development and tests only).
    #[serde(default)]
    pub allow_http_issuers: bool,
    /// An issuer's keys are fetched at most once per this interval (unknown `kid`s included).
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_min_interval_secs: f64,
    /// Cached keys older than this are fetched again when next used.
    #[serde(default = "default_jwks_max_age")]
    pub jwks_max_age_secs: f64,
    /// Timeout of each OpenID metadata or key set request.
    #[serde(default = "default_jwks_timeout")]
    pub jwks_timeout_secs: f64,
    /// Longest bearer token accepted, in bytes.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Principal object ids made Owner at `bootstrap_scope` at start (idempotent).
    #[serde(default)]
    pub bootstrap_owners: Vec<String>,
    /// Where bootstrap owners are made Owner: `/` (everything) or a subscription.
    #[serde(default = "default_bootstrap_scope")]
    pub bootstrap_scope: String,
    /// How long a principal's role assignments are reused before being read again; grants
    /// and revocations made on another replica take effect within it.
    #[serde(default = "default_assignment_cache")]
    pub assignment_cache_secs: f64,
    /// `authorization_uri` of `WWW-Authenticate` challenges (default: the first issuer
    /// without `/v2.0`).
    #[serde(default)]
    pub authorization_uri: Option<String>,
}

impl AuthConfig {
    /// Trusting `issuers` for tokens of `audiences`, every other setting at its default.
    pub fn trusting(issuers: Vec<IssuerConfig>, audiences: Vec<String>) -> Self {
        Self {
            issuers,
            audiences,
            clock_skew_secs: default_clock_skew(),
            allow_http_issuers: false,
            jwks_refresh_min_interval_secs: default_jwks_refresh(),
            jwks_max_age_secs: default_jwks_max_age(),
            jwks_timeout_secs: default_jwks_timeout(),
            max_token_bytes: default_max_token_bytes(),
            bootstrap_owners: Vec::new(),
            bootstrap_scope: default_bootstrap_scope(),
            assignment_cache_secs: default_assignment_cache(),
            authorization_uri: None,
        }
    }
}

/// One trusted issuer in `[[auth.issuers]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The exact `iss` of its tokens (`https://login.microsoftonline.com/{tenant}/v2.0`).
    pub issuer: String,
    /// Its key set; discovered from `{issuer}/.well-known/openid-configuration` if absent.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// The `tid` its tokens must carry, if pinned.
    #[serde(default)]
    pub tenant_id: Option<String>,
}

/// `[throttle]`: token buckets per principal and per subscription, each for reads and for
/// writes separately.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Whether requests are throttled at all.
    pub enabled: bool,
    /// Sustained requests per minute per principal.
    pub per_principal_per_minute: u32,
    /// Requests a principal may make at once.
    pub principal_burst: u32,
    /// Sustained requests per minute per subscription (all principals together).
    pub per_subscription_per_minute: u32,
    /// Requests a subscription may take at once.
    pub subscription_burst: u32,
    /// Most buckets tracked per limiter (memory bound).
    pub max_keys: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        let d = tether_api::ThrottleSettings::default();
        Self {
            enabled: true,
            per_principal_per_minute: d.per_principal_per_minute,
            principal_burst: d.principal_burst,
            per_subscription_per_minute: d.per_subscription_per_minute,
            subscription_burst: d.subscription_burst,
            max_keys: d.max_keys,
        }
    }
}

/// `[audit]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// How long audit records are kept.
    pub retention_days: f64,
    /// Most refusals before any handler (bad tokens, throttling) recorded per second; the
    /// rest are counted only, so a flood cannot become a flood of writes.
    pub refusals_per_sec: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            retention_days: 90.0,
            refusals_per_sec: 20,
        }
    }
}

/// `[secrets]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// The AEAD key: 32 random bytes, base64-encoded (`openssl rand -base64 32`).
    #[serde(serialize_with = "expose")]
    pub key: SecretString,
}

/// `[azure]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    /// ARM's base URL.
    #[serde(default = "default_arm")]
    pub arm_endpoint: String,
    /// The token authority's base URL.
    #[serde(default = "default_authority")]
    pub authority: String,
    /// The tenant of our service principal.
    pub tenant_id: String,
    /// Our service principal's client id.
    pub client_id: String,
    /// Its client secret.
    #[serde(serialize_with = "expose")]
    pub client_secret: SecretString,
    /// Retries of a transient failure within one ARM call.
    #[serde(default = "default_arm_retries")]
    pub max_retries: u32,
    /// Timeout of each ARM request, in seconds.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// The URL of a SQL data plane: an endpoint that runs statements on a database server
    /// with our credentials (`POST {server, database, statements}`), used to make database
    /// users for identities. Without it, identity auth to SQL databases is refused with 400.
    #[serde(default)]
    pub sql_data_plane: Option<String>,
}

/// `[sagas]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SagasConfig {
    /// Lease time; a dead replica's sagas are adopted this long after its last renewal.
    pub lease_ttl_secs: f64,
    /// How long one step retries transient errors before the operation unwinds.
    pub step_timeout_secs: f64,
    /// How long one undo retries before the saga is marked stuck.
    pub undo_timeout_secs: f64,
    /// How long a stuck saga waits before it is retried.
    pub stuck_retry_secs: f64,
    /// How often to look for sagas to adopt.
    pub adopt_interval_secs: f64,
    /// Sagas a replica runs at once; more wait for a free slot (their leases kept).
    pub max_running: usize,
    /// Of those, validations at once.
    pub max_validations: usize,
    /// Test aid: run every step's action and undo twice.
    pub repeat_each_step: bool,
}

impl Default for SagasConfig {
    fn default() -> Self {
        let d = ExecutorConfig::default();
        Self {
            lease_ttl_secs: d.lease_ttl.as_secs_f64(),
            step_timeout_secs: d.step_timeout.as_secs_f64(),
            undo_timeout_secs: d.undo_timeout.as_secs_f64(),
            stuck_retry_secs: d.stuck_retry.as_secs_f64(),
            adopt_interval_secs: d.adopt_interval.as_secs_f64(),
            max_running: d.max_running,
            max_validations: tether_app::DEFAULT_MAX_VALIDATIONS,
            repeat_each_step: false,
        }
    }
}

/// `[housekeeping]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HousekeepingConfig {
    /// How long finished operations (and their saga logs) are kept; ARM clients may poll an
    /// operation long after it ended.
    pub retention_hours: f64,
    /// How often a replica removes the expired ones (and expired audit records).
    pub interval_secs: f64,
    /// How often the saga gauges of `/metrics` are read from the database (a scrape never
    /// queries it).
    pub gauges_interval_secs: f64,
}

impl Default for HousekeepingConfig {
    fn default() -> Self {
        Self {
            retention_hours: 24.0,
            interval_secs: 300.0,
            gauges_interval_secs: 15.0,
        }
    }
}

impl HousekeepingConfig {
    /// The retention period.
    pub fn retention(&self) -> Duration {
        secs(self.retention_hours * 3600.0)
    }

    /// The pass interval.
    pub fn interval(&self) -> Duration {
        secs(self.interval_secs)
    }

    /// The gauge refresh interval.
    pub fn gauges_interval(&self) -> Duration {
        secs(self.gauges_interval_secs)
    }
}

/// `[log]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `json` (for log shippers) or `text`.
    #[serde(default)]
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// Human-readable lines.
    Text,
}

/// The longest duration any setting may hold: a year.
const MAX_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// A checked number of seconds as a duration (`check` bounds every value first; anything
/// else saturates instead of panicking).
fn secs(value: f64) -> Duration {
    Duration::try_from_secs_f64(value.clamp(0.0, MAX_SECS)).unwrap_or(Duration::ZERO)
}

/// `Config` is serializable only so `tether dev` can layer its defaults under the environment
/// overrides inside figment; that serialization never leaves the process.
fn expose<S: serde::Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    use secrecy::ExposeSecret;
    s.serialize_str(secret.expose_secret())
}

fn default_scheme() -> String {
    "https".into()
}
fn default_header_timeout() -> f64 {
    10.0
}
fn default_body_timeout() -> f64 {
    10.0
}
fn default_request_timeout_secs() -> f64 {
    30.0
}
fn default_max_connections() -> usize {
    1024
}
fn default_max_requests() -> usize {
    256
}
fn default_page_bytes() -> usize {
    1024 * 1024
}
fn default_shutdown_grace() -> f64 {
    10.0
}
fn default_db_connections() -> u32 {
    16
}
fn default_acquire_timeout() -> f64 {
    5.0
}
fn default_query_timeout() -> f64 {
    10.0
}
fn default_location() -> String {
    "local".into()
}
fn default_retry_after() -> u32 {
    10
}
fn default_instance_name() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| "tether".into())
}
fn default_clock_skew() -> f64 {
    60.0
}
fn default_jwks_refresh() -> f64 {
    30.0
}
fn default_jwks_max_age() -> f64 {
    3600.0
}
fn default_jwks_timeout() -> f64 {
    10.0
}
fn default_max_token_bytes() -> usize {
    16 * 1024
}
fn default_bootstrap_scope() -> String {
    "/".into()
}
fn default_assignment_cache() -> f64 {
    5.0
}

fn default_arm() -> String {
    "https://management.azure.com".into()
}
fn default_authority() -> String {
    "https://login.microsoftonline.com".into()
}
fn default_arm_retries() -> u32 {
    3
}
fn default_request_timeout() -> u64 {
    30
}

impl Config {
    /// Reads `file`, then `TETHER__SECTION__KEY` overrides, and checks the result.
    pub fn load(file: &Path) -> anyhow::Result<Self> {
        if !file.exists() {
            return Err(anyhow!(
                "configuration file '{}' does not exist",
                file.display()
            ));
        }
        Self::extract(Figment::new().merge(Toml::file(file)))
    }

    /// Builds a configuration from `base` (serializable defaults, as `tether dev` does),
    /// then applies the environment overrides and checks it.
    pub fn from_base(base: &Config) -> anyhow::Result<Self> {
        Self::extract(Figment::from(Serialized::defaults(base)))
    }

    fn extract(figment: Figment) -> anyhow::Result<Self> {
        let config: Config = figment
            .merge(Env::prefixed("TETHER__").split("__"))
            .extract()
            .map_err(|e| anyhow!("invalid configuration: {e}"))?;
        config.check()?;
        Ok(config)
    }

    /// Checks values serde cannot: URLs, the key, ranges. Every duration and size taken from
    /// the configuration is bounded here, so nothing later can overflow on it.
    fn check(&self) -> anyhow::Result<()> {
        self.secret_box()?;
        self.arm(&InstanceId::from_stored(self.server.instance_name.clone()))?;
        self.base_url()?;
        #[cfg(feature = "regions")]
        if let Some(region) = &self.region {
            region.check()?;
        }
        let invalid = |key: &str, why: &str| anyhow!("invalid configuration: {key} {why}");
        if !(1..=600).contains(&self.server.retry_after_secs) {
            return Err(invalid(
                "server.retry_after_secs",
                "must be between 1 and 600",
            ));
        }
        let (sv, s, db) = (&self.server, &self.sagas, &self.database);
        for (key, value) in [
            ("server.header_timeout_secs", sv.header_timeout_secs),
            ("server.body_timeout_secs", sv.body_timeout_secs),
            ("server.request_timeout_secs", sv.request_timeout_secs),
            ("server.shutdown_grace_secs", sv.shutdown_grace_secs),
            ("database.acquire_timeout_secs", db.acquire_timeout_secs),
            ("database.query_timeout_secs", db.query_timeout_secs),
            ("sagas.lease_ttl_secs", s.lease_ttl_secs),
            ("sagas.step_timeout_secs", s.step_timeout_secs),
            ("sagas.undo_timeout_secs", s.undo_timeout_secs),
            ("sagas.stuck_retry_secs", s.stuck_retry_secs),
            ("sagas.adopt_interval_secs", s.adopt_interval_secs),
            (
                "housekeeping.retention_hours",
                self.housekeeping.retention_hours * 3600.0,
            ),
            (
                "housekeeping.interval_secs",
                self.housekeeping.interval_secs,
            ),
            (
                "housekeeping.gauges_interval_secs",
                self.housekeeping.gauges_interval_secs,
            ),
            (
                "auth.jwks_refresh_min_interval_secs",
                self.auth.jwks_refresh_min_interval_secs,
            ),
            ("auth.jwks_max_age_secs", self.auth.jwks_max_age_secs),
            ("auth.jwks_timeout_secs", self.auth.jwks_timeout_secs),
            ("audit.retention_days", self.audit.retention_days * 86_400.0),
        ] {
            if !(value.is_finite() && value > 0.0 && value <= MAX_SECS) {
                return Err(invalid(
                    key,
                    "must be a positive number of seconds, at most a year",
                ));
            }
        }
        for (key, value, min, max) in [
            ("server.max_connections", sv.max_connections, 1, 1_000_000),
            ("server.max_requests", sv.max_requests, 1, 1_000_000),
            ("server.page_bytes", sv.page_bytes, 16 * 1024, 64 << 20),
            (
                "database.max_connections",
                db.max_connections as usize,
                1,
                10_000,
            ),
            ("sagas.max_running", s.max_running, 1, 100_000),
            ("sagas.max_validations", s.max_validations, 1, 100_000),
            ("azure.max_retries", self.azure.max_retries as usize, 0, 10),
            (
                "azure.request_timeout_secs",
                self.azure.request_timeout_secs as usize,
                1,
                3600,
            ),
            (
                "auth.max_token_bytes",
                self.auth.max_token_bytes,
                1024,
                64 * 1024,
            ),
            (
                "throttle.per_principal_per_minute",
                self.throttle.per_principal_per_minute as usize,
                1,
                10_000_000,
            ),
            (
                "throttle.principal_burst",
                self.throttle.principal_burst as usize,
                1,
                10_000_000,
            ),
            (
                "throttle.per_subscription_per_minute",
                self.throttle.per_subscription_per_minute as usize,
                1,
                10_000_000,
            ),
            (
                "throttle.subscription_burst",
                self.throttle.subscription_burst as usize,
                1,
                10_000_000,
            ),
            ("throttle.max_keys", self.throttle.max_keys, 16, 10_000_000),
            (
                "audit.refusals_per_sec",
                self.audit.refusals_per_sec as usize,
                1,
                100_000,
            ),
        ] {
            if !(min..=max).contains(&value) {
                return Err(invalid(key, &format!("must be between {min} and {max}")));
            }
        }
        self.check_auth()
    }

    /// Checks `[auth]`: issuers, well-formed issuer URLs, audiences, the bootstrap
    /// principals and scope, the bounded durations.
    fn check_auth(&self) -> anyhow::Result<()> {
        let a = &self.auth;
        let invalid = |key: &str, why: String| anyhow!("invalid configuration: {key} {why}");
        if a.issuers.is_empty() {
            return Err(invalid(
                "auth.issuers",
                "is required: the token issuers callers authenticate with".into(),
            ));
        }
        if a.audiences.is_empty() || a.audiences.iter().any(|x| x.trim().is_empty()) {
            return Err(invalid(
                "auth.audiences",
                "must list the accepted audiences when issuers are configured".into(),
            ));
        }
        for (i, issuer) in a.issuers.iter().enumerate() {
            let urls = [
                ("issuer", Some(&issuer.issuer)),
                ("jwks_uri", issuer.jwks_uri.as_ref()),
            ];
            for (field, url) in urls {
                let Some(url) = url else { continue };
                let ok = Url::parse(url).is_ok_and(|u| {
                    (u.scheme() == "https" || (a.allow_http_issuers && u.scheme() == "http"))
                        && u.host_str().is_some()
                });
                if !ok {
                    return Err(invalid(
                        &format!("auth.issuers[{i}].{field}"),
                        format!(
                            "'{url}' must be an https URL (http only with auth.allow_http_issuers)"
                        ),
                    ));
                }
            }
        }
        if !(a.clock_skew_secs.is_finite() && (0.0..=600.0).contains(&a.clock_skew_secs)) {
            return Err(invalid(
                "auth.clock_skew_secs",
                "must be between 0 and 600".into(),
            ));
        }
        if !(a.assignment_cache_secs.is_finite()
            && (0.0..=300.0).contains(&a.assignment_cache_secs))
        {
            return Err(invalid(
                "auth.assignment_cache_secs",
                "must be between 0 and 300".into(),
            ));
        }
        for owner in &a.bootstrap_owners {
            tether_model::authz::PrincipalId::parse(owner).map_err(|_| {
                invalid(
                    "auth.bootstrap_owners",
                    format!("'{owner}' is not a principal id"),
                )
            })?;
        }
        let scope = tether_model::authz::Scope::parse(&a.bootstrap_scope)
            .map_err(|e| invalid("auth.bootstrap_scope", e.client_message().to_string()))?;
        if !matches!(scope, tether_model::authz::Scope::Root)
            && scope.as_str().split('/').filter(|s| !s.is_empty()).count() != 2
        {
            return Err(invalid(
                "auth.bootstrap_scope",
                "must be '/' or a subscription ('/subscriptions/{id}')".into(),
            ));
        }
        Ok(())
    }

    /// The authenticator settings of `[auth]`.
    pub fn auth_settings(&self) -> tether_app::auth::AuthSettings {
        let a = &self.auth;
        let timeout = secs(a.jwks_timeout_secs);
        tether_app::auth::AuthSettings {
            issuers: a
                .issuers
                .iter()
                .map(|i| tether_app::auth::IssuerSettings {
                    issuer: i.issuer.clone(),
                    jwks_uri: i.jwks_uri.clone(),
                    tenant_id: i.tenant_id.clone(),
                })
                .collect(),
            audiences: a.audiences.clone(),
            clock_skew: secs(a.clock_skew_secs),
            max_token_bytes: a.max_token_bytes,
            refresh_min_interval: secs(a.jwks_refresh_min_interval_secs),
            keys_max_age: secs(a.jwks_max_age_secs),
            // A request waits for one fetch at most (plus discovery): two timeouts.
            refresh_wait: timeout.saturating_mul(2),
            authorization_uri: a.authorization_uri.clone(),
        }
    }

    /// The key source settings of `[auth]`.
    pub fn key_source(&self) -> tether_adapters::jwks::HttpKeySourceConfig {
        tether_adapters::jwks::HttpKeySourceConfig {
            timeout: secs(self.auth.jwks_timeout_secs),
            allow_http: self.auth.allow_http_issuers,
            ..tether_adapters::jwks::HttpKeySourceConfig::default()
        }
    }

    /// The throttling budgets, `None` when throttling is off.
    pub fn throttle(&self) -> Option<tether_api::ThrottleSettings> {
        let t = &self.throttle;
        t.enabled.then_some(tether_api::ThrottleSettings {
            per_principal_per_minute: t.per_principal_per_minute,
            principal_burst: t.principal_burst,
            per_subscription_per_minute: t.per_subscription_per_minute,
            subscription_burst: t.subscription_burst,
            max_keys: t.max_keys,
        })
    }

    /// How long audit records are kept.
    pub fn audit_retention(&self) -> Duration {
        secs(self.audit.retention_days * 86_400.0)
    }

    /// Where the API's absolute URLs point: `server.public_url`, or trusted `Host` headers.
    pub fn base_url(&self) -> anyhow::Result<BaseUrl> {
        let sv = &self.server;
        let invalid = |key: &str, why: String| anyhow!("invalid configuration: {key} {why}");
        match (&sv.public_url, sv.trusted_hosts.is_empty()) {
            (Some(url), _) => {
                let parsed = Url::parse(url)
                    .map_err(|_| invalid("server.public_url", format!("'{url}' is not a URL")))?;
                let plain = matches!(parsed.scheme(), "http" | "https")
                    && parsed.host_str().is_some()
                    && parsed.path() == "/"
                    && parsed.query().is_none()
                    && parsed.fragment().is_none();
                if !plain {
                    return Err(invalid(
                        "server.public_url",
                        format!("'{url}' must be an http(s) origin without path or query"),
                    ));
                }
                Ok(BaseUrl::Fixed(parsed.origin().ascii_serialization()))
            }
            (None, false) => {
                if !matches!(sv.public_scheme.as_str(), "http" | "https") {
                    return Err(invalid(
                        "server.public_scheme",
                        "must be 'http' or 'https'".into(),
                    ));
                }
                Ok(BaseUrl::TrustedHosts {
                    scheme: sv.public_scheme.clone(),
                    hosts: sv
                        .trusted_hosts
                        .iter()
                        .map(|h| h.to_ascii_lowercase())
                        .collect(),
                })
            }
            (None, true) => Err(invalid(
                "server.public_url",
                "is required (or list the hosts clients use in server.trusted_hosts): polling and paging URLs are never built from an untrusted Host header".into(),
            )),
        }
    }

    /// The HTTP limits of `[server]`.
    pub fn http_limits(&self) -> HttpLimits {
        let sv = &self.server;
        HttpLimits {
            header_timeout: secs(sv.header_timeout_secs),
            body_timeout: secs(sv.body_timeout_secs),
            request_timeout: secs(sv.request_timeout_secs),
            max_connections: sv.max_connections,
            max_requests: sv.max_requests,
            page_bytes: sv.page_bytes,
            shutdown_grace: secs(sv.shutdown_grace_secs),
        }
    }

    /// The store settings of `[database]`.
    pub fn store(&self) -> tether_store::StoreOptions {
        let db = &self.database;
        tether_store::StoreOptions {
            max_connections: db.max_connections,
            acquire_timeout: secs(db.acquire_timeout_secs),
            query_timeout: secs(db.query_timeout_secs),
        }
    }

    /// The secret box for `secrets.key`.
    pub fn secret_box(&self) -> anyhow::Result<SecretBox> {
        SecretBox::from_base64(&self.secrets.key)
            .map_err(|why| anyhow!("invalid configuration: secrets.key {why}"))
    }

    /// The ARM client settings of `[azure]`, for the replica `me` (named in the User-Agent,
    /// so the backend's logs say which replica made each call).
    pub fn arm(&self, me: &InstanceId) -> anyhow::Result<ArmConfig> {
        let a = &self.azure;
        let url = |key: &str, value: &str| {
            Url::parse(value)
                .with_context(|| format!("invalid configuration: {key} '{value}' is not a URL"))
        };
        Ok(ArmConfig {
            endpoint: url("azure.arm_endpoint", &a.arm_endpoint)?,
            authority: url("azure.authority", &a.authority)?,
            tenant_id: a.tenant_id.clone(),
            client_id: a.client_id.clone(),
            client_secret: a.client_secret.clone(),
            max_retries: a.max_retries,
            max_retry_after: Duration::from_secs(30),
            request_timeout: Duration::from_secs(a.request_timeout_secs),
            lro_timeout: Duration::from_secs(300),
            max_response_bytes: tether_adapters::arm::DEFAULT_MAX_RESPONSE_BYTES,
            sql_data_plane: a
                .sql_data_plane
                .as_deref()
                .map(|u| url("azure.sql_data_plane", u))
                .transpose()?,
            user_agent: format!("tether/{} ({me})", env!("CARGO_PKG_VERSION")),
        })
    }

    /// The executor settings of `[sagas]`.
    pub fn executor(&self) -> ExecutorConfig {
        let s = &self.sagas;
        ExecutorConfig {
            lease_ttl: secs(s.lease_ttl_secs),
            step_timeout: secs(s.step_timeout_secs),
            undo_timeout: secs(s.undo_timeout_secs),
            stuck_retry: secs(s.stuck_retry_secs),
            adopt_interval: secs(s.adopt_interval_secs),
            max_running: s.max_running,
            repeat_each_step: s.repeat_each_step,
            ..ExecutorConfig::default()
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::result_large_err,
    reason = "figment::Jail closures return figment::Error"
)]
mod tests {
    use super::*;

    const VALID: &str = r#"
[server]
listen = "127.0.0.1:8080"
public_url = "https://tether.example.net"
[database]
url = "postgres://postgres@127.0.0.1/tether"
[auth]
audiences = ["https://management.azure.com"]
[[auth.issuers]]
issuer = "https://login.microsoftonline.com/t/v2.0"
[secrets]
key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
[azure]
tenant_id = "t"
client_id = "c"
client_secret = "s"
"#;

    /// Loads `text` inside a figment jail: jails run one at a time, so a test that sets
    /// environment variables cannot leak them into another.
    fn load(text: &str) -> anyhow::Result<Config> {
        let mut out = None;
        figment::Jail::expect_with(|jail| {
            jail.create_file("tether.toml", text)?;
            out = Some(Config::load(Path::new("tether.toml")));
            Ok(())
        });
        out.expect("the jail ran")
    }

    #[test]
    fn loads_a_valid_file_with_defaults() {
        let c = load(VALID).unwrap();
        assert_eq!(c.server.retry_after_secs, 10);
        assert_eq!(c.azure.arm_endpoint, "https://management.azure.com");
        assert_eq!(c.executor().lease_ttl, Duration::from_secs(15));
        assert!(
            !format!("{c:?}").contains("t0ken"),
            "secrets stay out of Debug"
        );
        assert_eq!(
            c.base_url().unwrap(),
            BaseUrl::Fixed("https://tether.example.net".into())
        );
        let trusted = load(&VALID.replace(
            "public_url = \"https://tether.example.net\"",
            "trusted_hosts = [\"LocalHost\", \"127.0.0.1:8080\"]\npublic_scheme = \"http\"",
        ))
        .unwrap();
        assert_eq!(
            trusted.base_url().unwrap(),
            BaseUrl::TrustedHosts {
                scheme: "http".into(),
                hosts: vec!["localhost".into(), "127.0.0.1:8080".into()]
            }
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (VALID.replace("127.0.0.1:8080", "nowhere"), "listen"),
            (
                VALID.replace("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "short"),
                "secrets.key",
            ),
            (
                VALID.replace("[azure]", "[azure]\narm_endpoint = \"not a url\""),
                "azure.arm_endpoint",
            ),
            (VALID.replace("[database]\nurl", "[database]\nulr"), "ulr"),
            (
                VALID.replace("issuer = \"https://login.microsoftonline.com/t/v2.0\"", ""),
                "issuer",
            ),
            (
                VALID.replace(
                    "[[auth.issuers]]\nissuer = \"https://login.microsoftonline.com/t/v2.0\"",
                    "",
                ),
                "auth.issuers",
            ),
            (
                format!("{VALID}\n[sagas]\nlease_ttl_secs = -1\n"),
                "sagas.lease_ttl_secs",
            ),
            (
                format!("{VALID}\n[sagas]\nstep_timeout_secs = 1e300\n"),
                "sagas.step_timeout_secs",
            ),
            (
                VALID.replace("public_url = \"https://tether.example.net\"", ""),
                "server.public_url",
            ),
            (
                VALID.replace(
                    "https://tether.example.net",
                    "https://tether.example.net/x?y",
                ),
                "server.public_url",
            ),
            (
                VALID.replace("[database]", "[database]\nmax_connections = 0"),
                "database.max_connections",
            ),
            (
                VALID.replace(
                    "[azure]",
                    "[azure]\nrequest_timeout_secs = 9223372036854775807",
                ),
                "azure.request_timeout_secs",
            ),
        ];
        for (text, key) in cases {
            let err = format!("{:#}", load(&text).unwrap_err());
            assert!(err.contains(key), "{key}: {err}");
        }
        assert!(
            format!(
                "{:#}",
                Config::load(Path::new("/no/such/file.toml")).unwrap_err()
            )
            .contains("does not exist")
        );
    }

    #[test]
    fn the_deploy_template_loads_once_its_secrets_are_set() {
        let template = include_str!("../../../deploy/tether.toml");
        let err = format!("{:#}", load(template).unwrap_err());
        assert!(
            err.contains("secrets.key"),
            "the template's placeholder key is refused: {err}"
        );
        figment::Jail::expect_with(|jail| {
            jail.create_file("tether.toml", template)?;
            jail.set_env(
                "TETHER__SECRETS__KEY",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            );
            let c = Config::load(Path::new("tether.toml")).map_err(|e| e.to_string())?;
            assert_eq!(c.server.location, "westus");
            assert_eq!(c.log.format, LogFormat::Json);
            Ok(())
        });
    }

    const JWT: &str = r#"
[server]
listen = "127.0.0.1:8080"
public_url = "https://tether.example.net"
[database]
url = "postgres://postgres@127.0.0.1/tether"
[auth]
audiences = ["https://management.azure.com", "https://management.azure.com/"]
clock_skew_secs = 30
bootstrap_owners = ["0A1B2C3D-0000-4000-8000-00000000000F"]
[[auth.issuers]]
issuer = "https://login.microsoftonline.com/aaaaaaaa-0000-4000-8000-000000000001/v2.0"
tenant_id = "aaaaaaaa-0000-4000-8000-000000000001"
[[auth.issuers]]
issuer = "https://sts.example/"
jwks_uri = "https://sts.example/keys"
[secrets]
key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
[azure]
tenant_id = "t"
client_id = "c"
client_secret = "s"
[throttle]
per_principal_per_minute = 120
[audit]
retention_days = 30
"#;

    #[test]
    fn jwt_authentication_is_configured_by_issuers() {
        let c = load(JWT).unwrap();
        let a = c.auth_settings();
        assert_eq!(a.issuers.len(), 2);
        assert_eq!(
            a.issuers[1].jwks_uri.as_deref(),
            Some("https://sts.example/keys")
        );
        assert_eq!(
            a.issuers[0].tenant_id.as_deref(),
            Some("aaaaaaaa-0000-4000-8000-000000000001")
        );
        assert_eq!(a.clock_skew, Duration::from_secs(30));
        assert_eq!(a.max_token_bytes, 16 * 1024);
        assert_eq!(a.refresh_min_interval, Duration::from_secs(30));
        assert!(!c.key_source().allow_http);
        let t = c.throttle().unwrap();
        assert_eq!((t.per_principal_per_minute, t.principal_burst), (120, 250));
        assert_eq!(c.audit_retention(), Duration::from_secs(30 * 86_400));
        assert_eq!(c.housekeeping.gauges_interval(), Duration::from_secs(15));
        let off = load(&JWT.replace("[throttle]", "[throttle]\nenabled = false")).unwrap();
        assert!(off.throttle().is_none());
    }

    #[test]
    fn bad_auth_values_name_their_key() {
        let cases = [
            (JWT.replace("audiences = [", "audiences_ = ["), "audiences_"),
            (
                JWT.replace(
                    "audiences = [\"https://management.azure.com\", \"https://management.azure.com/\"]",
                    "audiences = []",
                ),
                "auth.audiences",
            ),
            (
                JWT.replace("https://sts.example/\"", "http://sts.example/\""),
                "auth.issuers[1].issuer",
            ),
            (
                JWT.replace("https://sts.example/keys", "keys"),
                "auth.issuers[1].jwks_uri",
            ),
            (JWT.replace("clock_skew_secs = 30", "clock_skew_secs = 3600"), "auth.clock_skew_secs"),
            (
                JWT.replace("0A1B2C3D-0000-4000-8000-00000000000F", "not a principal"),
                "auth.bootstrap_owners",
            ),
            (
                JWT.replace(
                    "clock_skew_secs = 30",
                    "bootstrap_scope = \"/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg\"",
                ),
                "auth.bootstrap_scope",
            ),
            (
                JWT.replace("clock_skew_secs = 30", "max_token_bytes = 10"),
                "auth.max_token_bytes",
            ),
            (
                JWT.replace("per_principal_per_minute = 120", "per_principal_per_minute = 0"),
                "throttle.per_principal_per_minute",
            ),
            (
                JWT.replace("retention_days = 30", "retention_days = -1"),
                "audit.retention_days",
            ),
        ];
        for (text, key) in cases {
            let err = format!("{:#}", load(&text).unwrap_err());
            assert!(err.contains(key), "{key}: {err}");
        }
        // Plain http issuers are accepted when allowed (the mock of `tether dev`).
        let http = JWT
            .replace("https://sts.example/\"", "http://127.0.0.1:8081/t/v2.0\"")
            .replace("[auth]", "[auth]\nallow_http_issuers = true");
        assert!(load(&http).unwrap().key_source().allow_http);
    }

    #[test]
    fn issuers_can_come_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("tether.toml", VALID)?;
            jail.set_env(
                "TETHER__AUTH__ISSUERS",
                r#"[{issuer="http://127.0.0.1:9/t/v2.0", tenant_id="t"}]"#,
            );
            jail.set_env("TETHER__AUTH__AUDIENCES", r#"["api://tether"]"#);
            jail.set_env("TETHER__AUTH__ALLOW_HTTP_ISSUERS", "true");
            jail.set_env(
                "TETHER__AUTH__BOOTSTRAP_OWNERS",
                r#"["08e5fa31-2314-8299-b025-dd969cba3c96"]"#,
            );
            let c = Config::load(Path::new("tether.toml")).map_err(|e| format!("{e:#}"))?;
            assert_eq!(c.auth.issuers[0].issuer, "http://127.0.0.1:9/t/v2.0");
            assert_eq!(c.auth.issuers[0].tenant_id.as_deref(), Some("t"));
            assert_eq!(c.auth.audiences, vec!["api://tether".to_string()]);
            assert_eq!(c.auth.bootstrap_owners.len(), 1);
            Ok(())
        });
    }

    #[test]
    fn environment_overrides_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("tether.toml", VALID)?;
            jail.set_env("TETHER__DATABASE__URL", "sqlite:///tmp/x.db");
            jail.set_env("TETHER__SAGAS__LEASE_TTL_SECS", "2.5");
            let c = Config::load(Path::new("tether.toml")).map_err(|e| e.to_string())?;
            assert_eq!(c.database.url, "sqlite:///tmp/x.db");
            assert_eq!(c.executor().lease_ttl, Duration::from_millis(2500));
            jail.set_env("TETHER__SERVER__RETRY_AFTER_SECS", "0");
            let err = Config::load(Path::new("tether.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("server.retry_after_secs"), "{err}");
            Ok(())
        });
    }

    #[cfg(feature = "regions")]
    #[test]
    fn a_region_section_is_read_with_defaults_and_checked() {
        let region = "\n[region]\nname = \"a\"\npair = \"ab\"\netcd_endpoints = [\"http://127.0.0.1:2379\"]\n";
        let config = load(&format!("{VALID}{region}")).unwrap();
        let section = config.region.expect("a region");
        assert_eq!(
            (section.lease_ttl_secs, section.etcd_prefix.as_str()),
            (10, "/tether")
        );
        assert_eq!(section.role_check_interval(), Duration::from_secs(1));
        assert!(
            load(VALID).unwrap().region.is_none(),
            "no section: no regions"
        );
        for (bad, key) in [
            (region.replace("\"a\"", "\"A B\""), "region.name"),
            (region.replace("\"ab\"", "\"\""), "region.pair"),
            (
                format!("{region}lease_ttl_secs = 1\n"),
                "region.lease_ttl_secs",
            ),
            (
                region.replace("[\"http://127.0.0.1:2379\"]", "[]"),
                "region.etcd_endpoints",
            ),
            (
                format!("{region}role_check_interval_ms = 0\n"),
                "region.role_check_interval_ms",
            ),
        ] {
            let err = format!("{:#}", load(&format!("{VALID}{bad}")).unwrap_err());
            assert!(err.contains(key), "{key}: {err}");
        }
    }
}
