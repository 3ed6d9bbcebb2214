//! Where token-signing keys come from: the [`KeySource`] port (an issuer's JSON Web Key Set)
//! and its HTTP implementation, [`HttpKeySource`], which finds an issuer's `jwks_uri` through
//! OpenID Connect discovery (`{issuer}/.well-known/openid-configuration`) unless it is
//! configured, and fetches the key set.
//!
//! Everything an issuer sends is bounded: one timeout per request, at most
//! [`HttpKeySourceConfig::max_response_bytes`] read, no redirects followed, at most
//! [`MAX_KEYS`] keys kept, and only `https` URLs unless plain `http` is explicitly allowed (the
//! mock backend of `tether dev` and the tests).

use std::time::Duration;

use async_trait::async_trait;
use reqwest::Url;
use serde::Deserialize;
use serde_json::Value;

/// The most keys one key set may contribute (Entra ID publishes a handful).
pub const MAX_KEYS: usize = 64;

/// One public key as a key set publishes it (RFC 7517). Only the members Tether uses are read;
/// whether the key is usable (type, curve, algorithm) is decided by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Jwk {
    /// Key type: `RSA` or `EC` are the ones Tether verifies with.
    pub kty: String,
    /// Key id, matched against a token's `kid`.
    #[serde(default)]
    pub kid: Option<String>,
    /// The algorithm the key is for, when the issuer says.
    #[serde(default)]
    pub alg: Option<String>,
    /// `sig` or `enc`, when the issuer says.
    #[serde(default, rename = "use")]
    pub key_use: Option<String>,
    /// RSA modulus (base64url).
    #[serde(default)]
    pub n: Option<String>,
    /// RSA exponent (base64url).
    #[serde(default)]
    pub e: Option<String>,
    /// EC curve (`P-256`).
    #[serde(default)]
    pub crv: Option<String>,
    /// EC x coordinate (base64url).
    #[serde(default)]
    pub x: Option<String>,
    /// EC y coordinate (base64url).
    #[serde(default)]
    pub y: Option<String>,
}

/// An issuer's published keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwkSet {
    /// The keys, in the issuer's order (entries that are not keys are skipped).
    pub keys: Vec<Jwk>,
}

impl JwkSet {
    /// Reads a key set document (`{"keys":[...]}`): entries that are not objects with a
    /// `kty` are skipped rather than failing the whole set, and at most [`MAX_KEYS`] are kept.
    pub fn from_json(body: &[u8]) -> Result<Self, KeySourceError> {
        let doc: Value = serde_json::from_slice(body)
            .map_err(|_| KeySourceError::new("the key set is not JSON"))?;
        let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
            return Err(KeySourceError::new("the key set has no 'keys' array"));
        };
        let keys = entries
            .iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
            .take(MAX_KEYS)
            .collect();
        Ok(Self { keys })
    }
}

/// Why an issuer's keys could not be fetched. The message names the step, never a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeySourceError(String);

impl KeySourceError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// A source of issuers' signing keys.
#[async_trait]
pub trait KeySource: Send + Sync + 'static {
    /// The current key set of `issuer`: from `jwks_uri` when given, else from the
    /// `jwks_uri` its OpenID metadata names. No side effects; callers cache and rate-limit.
    async fn fetch(&self, issuer: &str, jwks_uri: Option<&str>) -> Result<JwkSet, KeySourceError>;
}

/// Settings of [`HttpKeySource`].
#[derive(Debug, Clone)]
pub struct HttpKeySourceConfig {
    /// Timeout of each request (connect, send, read).
    pub timeout: Duration,
    /// Largest metadata or key set document read.
    pub max_response_bytes: usize,
    /// Allow `http://` issuers and key URLs (development and tests only).
    pub allow_http: bool,
}

impl Default for HttpKeySourceConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_response_bytes: 256 * 1024,
            allow_http: false,
        }
    }
}

/// Fetches key sets over HTTP(S).
#[derive(Clone)]
pub struct HttpKeySource {
    http: reqwest::Client,
    config: HttpKeySourceConfig,
}

impl HttpKeySource {
    /// A key source with its own HTTP client (no redirects: a key URL is used as published).
    pub fn new(config: HttpKeySourceConfig) -> Result<Self, KeySourceError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("tether/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| KeySourceError::new("could not build the http client"))?;
        Ok(Self { http, config })
    }

    /// `url` parsed, if its scheme is allowed and it carries no credentials.
    fn checked(&self, url: &str, what: &str) -> Result<Url, KeySourceError> {
        let parsed =
            Url::parse(url).map_err(|_| KeySourceError::new(format!("the {what} is not a URL")))?;
        let scheme_ok =
            parsed.scheme() == "https" || (self.config.allow_http && parsed.scheme() == "http");
        if !scheme_ok {
            return Err(KeySourceError::new(format!(
                "the {what} must be https (plain http only when allowed)"
            )));
        }
        if parsed.host_str().is_none()
            || !parsed.username().is_empty()
            || parsed.password().is_some()
        {
            return Err(KeySourceError::new(format!(
                "the {what} must name a host and carry no credentials"
            )));
        }
        Ok(parsed)
    }

    async fn get(&self, url: Url, what: &str) -> Result<Vec<u8>, KeySourceError> {
        let mut response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                KeySourceError::new(if e.is_timeout() {
                    format!("the {what} request timed out")
                } else {
                    format!("the {what} request failed")
                })
            })?;
        if !response.status().is_success() {
            return Err(KeySourceError::new(format!(
                "the {what} request answered {}",
                response.status().as_u16()
            )));
        }
        let limit = self.config.max_response_bytes;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|_| KeySourceError::new(format!("the {what} response could not be read")))?
        {
            if body.len() + chunk.len() > limit {
                return Err(KeySourceError::new(format!(
                    "the {what} response is larger than {limit} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The `jwks_uri` of an issuer's OpenID metadata, whose `issuer` must be exactly `issuer`.
    async fn discover(&self, issuer: &str) -> Result<String, KeySourceError> {
        let what = "OpenID metadata";
        let url = self.checked(
            &format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            ),
            "issuer",
        )?;
        let body = self.get(url, what).await?;
        let doc: Value = serde_json::from_slice(&body)
            .map_err(|_| KeySourceError::new("the OpenID metadata is not JSON"))?;
        if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err(KeySourceError::new(
                "the OpenID metadata names another issuer",
            ));
        }
        doc.get("jwks_uri")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| KeySourceError::new("the OpenID metadata has no jwks_uri"))
    }
}

#[async_trait]
impl KeySource for HttpKeySource {
    async fn fetch(&self, issuer: &str, jwks_uri: Option<&str>) -> Result<JwkSet, KeySourceError> {
        let uri = match jwks_uri {
            Some(uri) => uri.to_string(),
            None => self.discover(issuer).await?,
        };
        let url = self.checked(&uri, "jwks_uri")?;
        JwkSet::from_json(&self.get(url, "key set").await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_sets_skip_what_they_cannot_read() {
        let set = JwkSet::from_json(
            br#"{"keys":[{"kty":"RSA","kid":"a","n":"x","e":"AQAB","x5c":["..."],"issuer":"i"},
                          "junk", {"kid":"no-kty"}, {"kty":"EC","crv":"P-256","x":"1","y":"2","use":"sig"}]}"#,
        )
        .unwrap();
        assert_eq!(set.keys.len(), 2);
        assert_eq!(set.keys[0].kid.as_deref(), Some("a"));
        assert_eq!(set.keys[1].key_use.as_deref(), Some("sig"));
        assert!(JwkSet::from_json(b"[]").is_err());
        assert!(JwkSet::from_json(b"{").is_err());
        let many = format!(
            r#"{{"keys":[{}]}}"#,
            vec![r#"{"kty":"RSA"}"#; 500].join(",")
        );
        assert_eq!(
            JwkSet::from_json(many.as_bytes()).unwrap().keys.len(),
            MAX_KEYS
        );
    }

    #[test]
    fn only_https_unless_http_is_allowed() {
        let strict = HttpKeySource::new(HttpKeySourceConfig::default()).unwrap();
        assert!(strict.checked("https://login.example/k", "x").is_ok());
        assert!(strict.checked("http://127.0.0.1:1/k", "x").is_err());
        assert!(
            strict
                .checked("https://user:pw@login.example/k", "x")
                .is_err()
        );
        assert!(strict.checked("file:///etc/passwd", "x").is_err());
        let lax = HttpKeySource::new(HttpKeySourceConfig {
            allow_http: true,
            ..HttpKeySourceConfig::default()
        })
        .unwrap();
        assert!(lax.checked("http://127.0.0.1:1/k", "x").is_ok());
        assert!(lax.checked("ftp://127.0.0.1:1/k", "x").is_err());
    }
}
