//! Bearer-token authentication: a JWT is accepted when it is signed (RS256 or ES256 only, with
//! the algorithm the issuer's key is for) by a key a configured issuer publishes, its `iss` is
//! exactly a configured issuer, its `aud` a configured audience, its `exp`/`nbf` hold within
//! the allowed clock skew, and it names a principal (`oid` or `sub`) and a tenant (`tid`).
//!
//! Keys come from a [`KeySource`] and are cached per issuer. A token naming an unknown `kid`
//! makes the issuer's key set be fetched again, but at most once per
//! [`AuthSettings::refresh_min_interval`] and by one task at a time (the others wait for it,
//! within a bound), so a flood of made-up key ids cannot hammer the issuer. Keys older than
//! [`AuthSettings::keys_max_age`] are refreshed on use; if the issuer is unreachable, the
//! keys in hand stay in use.
//!
//! Nothing here logs or echoes a token: errors say what was wrong, never what was sent, except
//! for short, escaped quotes of the `aud`/`iss`/`tid` claims (ARM's messages name them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tether_adapters::jwks::{Jwk, KeySource};
use tether_model::authz::PrincipalId;
use tether_model::error::quoted;
use tether_model::{Error, ErrorKind};
use tokio::time::Instant;

use super::{Principal, PrincipalKind};

/// One trusted issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerSettings {
    /// The exact `iss` its tokens carry, e.g. `https://login.microsoftonline.com/{tenant}/v2.0`.
    pub issuer: String,
    /// Where its keys are; discovered from `{issuer}/.well-known/openid-configuration` when
    /// `None`.
    pub jwks_uri: Option<String>,
    /// When set, the `tid` its tokens must carry (compared ignoring case).
    pub tenant_id: Option<String>,
}

/// How tokens are checked.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// The issuers trusted; a token from any other is refused without a network call.
    pub issuers: Vec<IssuerSettings>,
    /// Accepted `aud` values (exact match; list `https://management.azure.com` and
    /// `https://management.azure.com/` both if clients use both).
    pub audiences: Vec<String>,
    /// Tolerance on `exp` and `nbf`.
    pub clock_skew: Duration,
    /// Longest token accepted, in bytes.
    pub max_token_bytes: usize,
    /// An issuer's keys are fetched at most once per this interval.
    pub refresh_min_interval: Duration,
    /// Keys older than this are fetched again when next used.
    pub keys_max_age: Duration,
    /// Longest a request waits for a key fetch (its own or one in flight).
    pub refresh_wait: Duration,
    /// `authorization_uri` of the `WWW-Authenticate` challenge; by default the first issuer
    /// without its `/v2.0` suffix (Entra's authority for the tenant).
    pub authorization_uri: Option<String>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            audiences: Vec::new(),
            clock_skew: Duration::from_secs(60),
            max_token_bytes: 16 * 1024,
            refresh_min_interval: Duration::from_secs(30),
            keys_max_age: Duration::from_secs(3600),
            refresh_wait: Duration::from_secs(15),
            authorization_uri: None,
        }
    }
}

/// Why a request is not authenticated. Converts to ARM's `401` errors (or `503` when the
/// issuer's keys cannot be had); [`AuthError::challenge`] is the `WWW-Authenticate` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization` header.
    MissingHeader,
    /// The header is not `Bearer <token>`.
    BadHeader,
    /// The token is malformed, unsigned, signed with a refused algorithm or an unknown key,
    /// its signature does not verify, it is not valid yet, or it lacks a required claim.
    Invalid(&'static str),
    /// `exp` (plus the skew) has passed.
    Expired {
        /// `exp`, unix seconds.
        exp: i64,
        /// The time of the check, unix seconds.
        now: i64,
    },
    /// No accepted audience.
    Audience {
        /// The token's audiences, quoted.
        presented: String,
        /// The accepted ones.
        allowed: String,
    },
    /// `iss` is not a trusted issuer, or `tid` is not the issuer's tenant.
    Issuer {
        /// The token's `iss` (or `tid`), quoted.
        presented: String,
    },
    /// The issuer's keys could not be fetched and none are cached (`503`).
    KeysUnavailable,
}

impl AuthError {
    /// ARM's error code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingHeader | AuthError::BadHeader => "AuthenticationFailed",
            AuthError::Invalid(_) => "InvalidAuthenticationToken",
            AuthError::Expired { .. } => "ExpiredAuthenticationToken",
            AuthError::Audience { .. } => "InvalidAuthenticationTokenAudience",
            AuthError::Issuer { .. } => "InvalidAuthenticationTokenTenant",
            AuthError::KeysUnavailable => "ServiceUnavailable",
        }
    }

    /// The `WWW-Authenticate` value of the 401: fixed text only, never anything the client
    /// sent.
    pub fn challenge(&self, authorization_uri: &str) -> String {
        let description = match self {
            AuthError::MissingHeader => {
                "The authentication failed because of missing 'Authorization' header."
            }
            AuthError::BadHeader => "The 'Authorization' header is provided in an invalid format.",
            AuthError::Invalid(_) => "The access token is invalid.",
            AuthError::Expired { .. } => "The access token has expired.",
            AuthError::Audience { .. } => "The access token was issued for another audience.",
            AuthError::Issuer { .. } => "The access token is from an untrusted issuer or tenant.",
            AuthError::KeysUnavailable => "The token issuer's keys are unavailable.",
        };
        let uri: String = authorization_uri
            .chars()
            .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
            .collect();
        format!(
            "Bearer authorization_uri=\"{uri}\", error=\"invalid_token\", error_description=\"{description}\""
        )
    }
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl From<AuthError> for Error {
    fn from(e: AuthError) -> Self {
        let unauthenticated =
            |message: String| Error::new(ErrorKind::Unauthenticated, e.code(), message);
        match &e {
            AuthError::MissingHeader => {
                unauthenticated("Authentication failed. The 'Authorization' header is missing.".into())
            }
            AuthError::BadHeader => unauthenticated(
                "Authentication failed. The 'Authorization' header is provided in an invalid format."
                    .into(),
            ),
            AuthError::Invalid(why) => {
                unauthenticated(format!("The access token is invalid: {why}."))
            }
            AuthError::Expired { exp, now } => unauthenticated(format!(
                "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                utc(*exp),
                utc(*now)
            )),
            AuthError::Audience { presented, allowed } => unauthenticated(format!(
                "The access token has been obtained for wrong audience or resource '{presented}'. It should exactly match with one of the allowed audiences '{allowed}'."
            )),
            AuthError::Issuer { presented } => unauthenticated(format!(
                "The access token is from the wrong issuer '{presented}'. It must match one of the issuers and tenants trusted by this service."
            )),
            AuthError::KeysUnavailable => Error::new(
                ErrorKind::Unavailable,
                "ServiceUnavailable",
                "the signing keys of the token's issuer are unavailable",
            )
            .with_retry_after(5),
        }
    }
}

/// ARM's time format in token errors (`MM/dd/yyyy HH:mm:ss`).
fn utc(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%m/%d/%Y %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// A key a token may be verified with, and the one algorithm it verifies.
struct VerifyKey {
    alg: Algorithm,
    key: DecodingKey,
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, Arc<VerifyKey>>,
    /// When the keys in hand were fetched.
    fetched_at: Option<Instant>,
    /// When a fetch was last tried (successful or not): the rate limit's clock.
    attempted_at: Option<Instant>,
}

struct IssuerState {
    settings: IssuerSettings,
    keys: RwLock<Keys>,
    /// Held by the one task fetching this issuer's keys.
    refresh: tokio::sync::Mutex<()>,
}

/// How long a verified token is taken on trust at most (never past its expiry, nor longer
/// than the issuer's keys are kept without fetching them again).
const VERIFIED_FOR: Duration = Duration::from_secs(60);
/// The most tokens taken on trust at once; the set is emptied when it is full.
const VERIFIED_MAX: usize = 10_000;

/// A token verified recently: who it names, when it expires (unix seconds, with the skew),
/// and until when that holds without checking its signature again.
struct Verified {
    principal: Principal,
    expires: i64,
    trusted_until: Instant,
}

/// Verifies bearer tokens. Cheap to share (`Arc`); holds the key caches.
///
/// A client sends the same token with every request for up to an hour, and the RSA signature
/// check is most of what authentication costs, so a token that verified is taken on trust for
/// [`VERIFIED_FOR`] or `keys_max_age`, whichever is shorter, and never past its expiry (with
/// the skew). It is found by its SHA-256, so only a byte-identical token matches. A key the
/// issuer withdraws thus stops its tokens within twice `keys_max_age`.
pub struct Authenticator {
    settings: AuthSettings,
    source: Arc<dyn KeySource>,
    issuers: Vec<IssuerState>,
    verified: Mutex<HashMap<[u8; 32], Verified>>,
}

impl Authenticator {
    /// An authenticator trusting `settings.issuers`, fetching their keys from `source`.
    pub fn new(settings: AuthSettings, source: Arc<dyn KeySource>) -> Self {
        let issuers = settings
            .issuers
            .iter()
            .map(|s| IssuerState {
                settings: s.clone(),
                keys: RwLock::new(Keys::default()),
                refresh: tokio::sync::Mutex::new(()),
            })
            .collect();
        Self {
            settings,
            source,
            issuers,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// `authorization_uri` for `WWW-Authenticate` challenges.
    pub fn authorization_uri(&self) -> String {
        if let Some(uri) = &self.settings.authorization_uri {
            return uri.clone();
        }
        self.settings
            .issuers
            .first()
            .map(|i| {
                let issuer = i.issuer.trim_end_matches('/');
                issuer.strip_suffix("/v2.0").unwrap_or(issuer).to_string()
            })
            .unwrap_or_default()
    }

    /// Fetches every issuer's keys once (at start, so the first requests do not wait).
    /// Failures are logged; requests retry them under the rate limit.
    pub async fn prefetch(&self) {
        for issuer in &self.issuers {
            self.refresh(issuer).await;
        }
    }

    /// Authenticates the value of an `Authorization` header (`None` when absent), now.
    pub async fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Principal, AuthError> {
        let Some(value) = authorization else {
            return Err(AuthError::MissingHeader);
        };
        let token = std::str::from_utf8(value)
            .ok()
            .map(str::trim)
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::BadHeader)?;
        self.verify(token, chrono::Utc::now().timestamp()).await
    }

    /// Verifies a token as of `now` (unix seconds).
    pub async fn verify(&self, token: &str, now: i64) -> Result<Principal, AuthError> {
        let result = self.verify_inner(token, now).await;
        if let Err(e) = &result {
            metrics::counter!("tether_auth_failures_total", "code" => e.code()).increment(1);
        }
        result
    }

    async fn verify_inner(&self, token: &str, now: i64) -> Result<Principal, AuthError> {
        if token.len() > self.settings.max_token_bytes {
            return Err(AuthError::Invalid("it is too large"));
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let verified = || self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        let trusted = |v: &&Verified| now < v.expires && Instant::now() < v.trusted_until;
        if let Some(known) = verified().get(&digest).filter(trusted) {
            return Ok(known.principal.clone());
        }
        let (principal, exp) = self.verify_signed(token, now).await?;
        let skew = i64::try_from(self.settings.clock_skew.as_secs()).unwrap_or(i64::MAX);
        let mut known = verified();
        if known.len() >= VERIFIED_MAX {
            known.clear();
        }
        known.insert(
            digest,
            Verified {
                principal: principal.clone(),
                expires: exp.saturating_add(skew),
                trusted_until: Instant::now() + VERIFIED_FOR.min(self.settings.keys_max_age),
            },
        );
        Ok(principal)
    }

    /// Verifies a token's signature and claims as of `now`; returns whom it names and its
    /// expiry.
    async fn verify_signed(&self, token: &str, now: i64) -> Result<(Principal, i64), AuthError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Invalid("it is not a signed JWT"));
        };
        if header.is_empty() || payload.is_empty() || signature.is_empty() {
            return Err(AuthError::Invalid("it is not a signed JWT"));
        }
        let header = decode_object(header).ok_or(AuthError::Invalid("its header is malformed"))?;
        if header.contains_key("crit") {
            return Err(AuthError::Invalid("it has critical header extensions"));
        }
        let alg = match header.get("alg").and_then(Value::as_str) {
            Some("RS256") => Algorithm::RS256,
            Some("ES256") => Algorithm::ES256,
            _ => return Err(AuthError::Invalid("its signing algorithm is not accepted")),
        };
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .ok_or(AuthError::Invalid("it names no signing key"))?;
        let claims =
            decode_object(payload).ok_or(AuthError::Invalid("its claims are malformed"))?;
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.settings.issuer == iss)
            .ok_or_else(|| AuthError::Issuer {
                presented: quoted(iss),
            })?;

        let key = self.key(issuer, kid).await?;
        // The algorithm is the key's, never the token's: a token cannot pick HS256 to be
        // checked with the RSA key's bytes as a shared secret, or ES256 against an RSA key.
        if key.alg != alg {
            return Err(AuthError::Invalid(
                "its signing algorithm does not match its key",
            ));
        }
        let signed = token.len() - signature.len() - 1;
        let verified =
            jsonwebtoken::crypto::verify(signature, &token.as_bytes()[..signed], &key.key, key.alg)
                .unwrap_or(false);
        if !verified {
            return Err(AuthError::Invalid("its signature does not verify"));
        }
        let principal = self.check_claims(&issuer.settings, &claims, now)?;
        let exp = number(&claims, "exp").ok_or(AuthError::Invalid("it has no expiry"))?;
        Ok((principal, exp))
    }

    fn check_claims(
        &self,
        issuer: &IssuerSettings,
        claims: &Map<String, Value>,
        now: i64,
    ) -> Result<Principal, AuthError> {
        let skew = i64::try_from(self.settings.clock_skew.as_secs()).unwrap_or(i64::MAX);
        let exp = number(claims, "exp").ok_or(AuthError::Invalid("it has no expiry"))?;
        if now >= exp.saturating_add(skew) {
            return Err(AuthError::Expired { exp, now });
        }
        if let Some(nbf) = number(claims, "nbf") {
            if now.saturating_add(skew) < nbf {
                return Err(AuthError::Invalid("it is not valid yet"));
            }
        } else if claims.contains_key("nbf") {
            return Err(AuthError::Invalid("its not-before time is malformed"));
        }
        let audiences: Vec<&str> = match claims.get("aud") {
            Some(Value::String(aud)) => vec![aud.as_str()],
            Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !audiences
            .iter()
            .any(|a| self.settings.audiences.iter().any(|ok| ok == a))
        {
            return Err(AuthError::Audience {
                presented: quoted(&audiences.join(",")),
                allowed: self.settings.audiences.join("','"),
            });
        }
        let tid = claims
            .get("tid")
            .and_then(Value::as_str)
            .filter(|t| is_id(t))
            .ok_or(AuthError::Invalid("it names no tenant"))?;
        if issuer
            .tenant_id
            .as_deref()
            .is_some_and(|want| !want.eq_ignore_ascii_case(tid))
        {
            return Err(AuthError::Issuer {
                presented: quoted(tid),
            });
        }
        let subject = claims
            .get("oid")
            .or_else(|| claims.get("sub"))
            .and_then(Value::as_str)
            .ok_or(AuthError::Invalid("it names no principal"))?;
        let object_id = PrincipalId::parse(subject)
            .map_err(|_| AuthError::Invalid("its principal id is malformed"))?;
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        let app_id = text("appid")
            .or_else(|| text("azp"))
            .filter(|a| is_id(a))
            .map(str::to_string);
        let name = ["name", "preferred_username", "upn", "unique_name"]
            .iter()
            .find_map(|c| text(c))
            .map(display_name)
            .filter(|n| !n.is_empty());
        let kind = if claims.contains_key("xms_mirid") {
            PrincipalKind::ManagedIdentity
        } else {
            match text("idtyp") {
                Some("app") => PrincipalKind::Application,
                Some("user") => PrincipalKind::User,
                _ if claims.contains_key("scp") => PrincipalKind::User,
                _ => PrincipalKind::Application,
            }
        };
        Ok(Principal {
            object_id,
            tenant_id: tid.to_ascii_lowercase(),
            app_id,
            name,
            kind,
            issuer: issuer.issuer.clone(),
        })
    }

    /// The key `kid` of `issuer`, fetching the issuer's key set when the key is unknown or
    /// the keys are old (rate-limited; keys in hand are kept if the issuer is unreachable).
    async fn key(&self, issuer: &IssuerState, kid: &str) -> Result<Arc<VerifyKey>, AuthError> {
        let (found, fresh) = self.lookup(issuer, kid);
        if let (Some(key), true) = (&found, fresh) {
            return Ok(key.clone());
        }
        self.refresh(issuer).await;
        let (found, _) = self.lookup(issuer, kid);
        match found {
            Some(key) => Ok(key),
            None if read(&issuer.keys).fetched_at.is_none() => Err(AuthError::KeysUnavailable),
            None => Err(AuthError::Invalid(
                "its signing key is not published by its issuer",
            )),
        }
    }

    fn lookup(&self, issuer: &IssuerState, kid: &str) -> (Option<Arc<VerifyKey>>, bool) {
        let keys = read(&issuer.keys);
        let fresh = keys
            .fetched_at
            .is_some_and(|at| at.elapsed() < self.settings.keys_max_age);
        (keys.by_kid.get(kid).cloned(), fresh)
    }

    /// Fetches an issuer's keys unless a fetch was tried within the minimum interval. One
    /// task fetches; the others wait for it (at most `refresh_wait`) and then use its result.
    async fn refresh(&self, issuer: &IssuerState) {
        let wait = self.settings.refresh_wait;
        let Ok(_guard) = tokio::time::timeout(wait, issuer.refresh.lock()).await else {
            return;
        };
        let recently = read(&issuer.keys)
            .attempted_at
            .is_some_and(|at| at.elapsed() < self.settings.refresh_min_interval);
        if recently {
            return;
        }
        write(&issuer.keys).attempted_at = Some(Instant::now());
        let settings = &issuer.settings;
        let fetched = tokio::time::timeout(
            wait,
            self.source
                .fetch(&settings.issuer, settings.jwks_uri.as_deref()),
        )
        .await;
        match fetched {
            Ok(Ok(set)) => {
                let by_kid: HashMap<String, Arc<VerifyKey>> = set
                    .keys
                    .iter()
                    .filter_map(|jwk| Some((jwk.kid.clone()?, Arc::new(verify_key(jwk)?))))
                    .collect();
                metrics::counter!("tether_jwks_fetches_total", "outcome" => "ok").increment(1);
                tracing::info!(issuer = %settings.issuer, keys = by_kid.len(), "fetched the issuer's signing keys");
                let mut keys = write(&issuer.keys);
                keys.by_kid = by_kid;
                keys.fetched_at = Some(Instant::now());
            }
            Ok(Err(e)) => {
                metrics::counter!("tether_jwks_fetches_total", "outcome" => "error").increment(1);
                tracing::warn!(issuer = %settings.issuer, error = %e, "could not fetch the issuer's signing keys");
            }
            Err(_) => {
                metrics::counter!("tether_jwks_fetches_total", "outcome" => "error").increment(1);
                tracing::warn!(issuer = %settings.issuer, "fetching the issuer's signing keys timed out");
            }
        }
    }
}

fn read(keys: &RwLock<Keys>) -> std::sync::RwLockReadGuard<'_, Keys> {
    keys.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(keys: &RwLock<Keys>) -> std::sync::RwLockWriteGuard<'_, Keys> {
    keys.write().unwrap_or_else(PoisonError::into_inner)
}

/// The verification key of a published key, if Tether accepts it: an RSA key of at least
/// 2048 bits for RS256 or a P-256 key for ES256, for signatures, whose `alg` (if stated)
/// agrees.
fn verify_key(jwk: &Jwk) -> Option<VerifyKey> {
    if jwk.key_use.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    match jwk.kty.as_str() {
        "RSA" if jwk.alg.as_deref().is_none_or(|a| a == "RS256") => {
            let (n, e) = (jwk.n.as_deref()?, jwk.e.as_deref()?);
            let modulus = URL_SAFE_NO_PAD.decode(n).ok()?;
            let significant = modulus.iter().skip_while(|b| **b == 0).count();
            if significant < 256 {
                return None;
            }
            Some(VerifyKey {
                alg: Algorithm::RS256,
                key: DecodingKey::from_rsa_components(n, e).ok()?,
            })
        }
        "EC" if jwk.crv.as_deref() == Some("P-256")
            && jwk.alg.as_deref().is_none_or(|a| a == "ES256") =>
        {
            Some(VerifyKey {
                alg: Algorithm::ES256,
                key: DecodingKey::from_ec_components(jwk.x.as_deref()?, jwk.y.as_deref()?).ok()?,
            })
        }
        _ => None,
    }
}

/// A base64url (unpadded) JSON object.
fn decode_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A numeric date claim (integer, or a float taken at its whole seconds).
fn number(claims: &Map<String, Value>, name: &str) -> Option<i64> {
    let value = claims.get(name)?;
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.is_finite() && f.abs() < 1e15)
            .map(|f| f.floor() as i64)
    })
}

/// A tenant or application id: 1-128 ASCII letters, digits, `-` and `.`.
fn is_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// A display name as kept: control characters removed, at most 256 characters.
fn display_name(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_control())
        .take(256)
        .collect()
}

#[cfg(test)]
mod tests;
