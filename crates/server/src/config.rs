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
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
}

/// `[server]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Public base URL (scheme and host) for polling and paging URLs; defaults to the
    /// request's `Host` over http.
    #[serde(default)]
    pub public_url: Option<String>,
    /// The location segment of operation URLs.
    #[serde(default = "default_location")]
    pub location: String,
    /// `Retry-After` on long-running operations, in seconds (1-600).
    #[serde(default = "default_retry_after")]
    pub retry_after_secs: u32,
    /// A readable name for this replica (its saga-ownership id adds a random suffix).
    #[serde(default = "default_instance_name")]
    pub instance_name: String,
}

/// `[database]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://…` (production) or `sqlite://…` (single node).
    pub url: String,
}

/// `[auth]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The bearer token callers must present.
    #[serde(serialize_with = "expose")]
    // TODO-security: replace with JWT validation against configured issuers (JWKS) and
    // scope-based authorization, as DESIGN §6 describes.
    pub token: SecretString,
    /// The identity recorded in `systemData` for that token's callers.
    #[serde(default = "default_principal")]
    pub principal: String,
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
    /// How often a replica removes the expired ones.
    pub interval_secs: f64,
}

impl Default for HousekeepingConfig {
    fn default() -> Self {
        Self {
            retention_hours: 24.0,
            interval_secs: 300.0,
        }
    }
}

impl HousekeepingConfig {
    /// The retention period.
    pub fn retention(&self) -> Duration {
        Duration::from_secs_f64(self.retention_hours * 3600.0)
    }

    /// The pass interval.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(self.interval_secs)
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

/// `Config` is serializable only so `tether dev` can layer its defaults under the environment
/// overrides inside figment; that serialization never leaves the process.
fn expose<S: serde::Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    use secrecy::ExposeSecret;
    s.serialize_str(secret.expose_secret())
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
fn default_principal() -> String {
    "tether-admin".into()
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

    /// Checks values serde cannot: URLs, the key, ranges.
    fn check(&self) -> anyhow::Result<()> {
        self.secret_box()?;
        self.arm(&InstanceId::from_stored(self.server.instance_name.clone()))?;
        if !(1..=600).contains(&self.server.retry_after_secs) {
            return Err(anyhow!(
                "invalid configuration: server.retry_after_secs must be between 1 and 600"
            ));
        }
        if let Some(url) = &self.server.public_url {
            Url::parse(url).with_context(|| {
                format!("invalid configuration: server.public_url '{url}' is not a URL")
            })?;
        }
        let s = &self.sagas;
        for (key, value) in [
            ("sagas.lease_ttl_secs", s.lease_ttl_secs),
            ("sagas.step_timeout_secs", s.step_timeout_secs),
            ("sagas.undo_timeout_secs", s.undo_timeout_secs),
            ("sagas.stuck_retry_secs", s.stuck_retry_secs),
            ("sagas.adopt_interval_secs", s.adopt_interval_secs),
            (
                "housekeeping.retention_hours",
                self.housekeeping.retention_hours,
            ),
            (
                "housekeeping.interval_secs",
                self.housekeeping.interval_secs,
            ),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(anyhow!(
                    "invalid configuration: {key} must be a positive number of seconds"
                ));
            }
        }
        Ok(())
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
            user_agent: format!("tether/{} ({me})", env!("CARGO_PKG_VERSION")),
        })
    }

    /// The executor settings of `[sagas]`.
    pub fn executor(&self) -> ExecutorConfig {
        let s = &self.sagas;
        ExecutorConfig {
            lease_ttl: Duration::from_secs_f64(s.lease_ttl_secs),
            step_timeout: Duration::from_secs_f64(s.step_timeout_secs),
            undo_timeout: Duration::from_secs_f64(s.undo_timeout_secs),
            stuck_retry: Duration::from_secs_f64(s.stuck_retry_secs),
            adopt_interval: Duration::from_secs_f64(s.adopt_interval_secs),
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
[database]
url = "postgres://postgres@127.0.0.1/tether"
[auth]
token = "t0ken"
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
                VALID.replace("[auth]\ntoken = \"t0ken\"", "[auth]"),
                "token",
            ),
            (
                format!("{VALID}\n[sagas]\nlease_ttl_secs = -1\n"),
                "sagas.lease_ttl_secs",
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
}
