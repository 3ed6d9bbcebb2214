//! The RSA keys the token endpoint signs with: generation, the JWKS entries, signing and
//! signature checks, and the per-mock key ring (current key plus retired keys kept in the JWKS).
//!
//! Key generation is slow in debug builds (a 2048-bit key takes 1-8 s there, ~0.1 s with
//! optimisation), so the first key is generated once per process on a background thread
//! started by [`prewarm`] and shared by every mock of the process; waiting for it happens on a
//! blocking thread ([`first_key`]), never on a runtime thread. Rotation always generates a fresh
//! key. Signing and verification use `ring` (through `jsonwebtoken`) and are fast everywhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};

/// Modulus size of the signing keys: what Entra ID uses, and the minimum `ring` verifies.
const KEY_BITS: usize = 2048;

/// Why a key could not be made.
#[derive(Debug, Clone, thiserror::Error)]
#[error("could not generate an rsa signing key: {0}")]
pub(crate) struct KeyError(String);

/// One RS256 signing key with its key id.
pub(crate) struct SigningKey {
    /// The `kid` of the JWT header and the JWKS entry.
    pub(crate) kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// base64url (unpadded) modulus and exponent, as the JWKS publishes them.
    n: String,
    e: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a fresh 2048-bit key with a random `kid`. CPU-heavy: call it on a blocking
    /// thread.
    pub(crate) fn generate() -> Result<Self, KeyError> {
        let mut rng = rsa::rand_core::OsRng;
        let private =
            rsa::RsaPrivateKey::new(&mut rng, KEY_BITS).map_err(|e| KeyError(e.to_string()))?;
        let der = private
            .to_pkcs1_der()
            .map_err(|e| KeyError(e.to_string()))?;
        let n = URL_SAFE_NO_PAD.encode(private.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(private.e().to_bytes_be());
        let decoding =
            DecodingKey::from_rsa_components(&n, &e).map_err(|e| KeyError(e.to_string()))?;
        // Entra ID key ids are 27 base64url characters (a 20-byte thumbprint).
        let kid = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 20]>());
        Ok(Self {
            kid,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            decoding,
            n,
            e,
        })
    }

    /// The JWKS entry, shaped like Entra ID's (without the certificate chain, which the mock
    /// does not have).
    pub(crate) fn jwk(&self, issuer: &str) -> Value {
        json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "n": self.n,
            "e": self.e,
            "alg": "RS256",
            "issuer": issuer,
        })
    }

    /// Signs claims as an RS256 JWT with `typ: JWT` and this key's `kid`.
    pub(crate) fn sign(&self, claims: &Value) -> Result<String, KeyError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| KeyError(e.to_string()))
    }

    /// The claims of a token whose RS256 signature this key verifies; `None` otherwise. Claims
    /// are not checked here (see `auth`), only the signature.
    pub(crate) fn verify(&self, token: &str) -> Option<Value> {
        let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Value>(token, &self.decoding, &validation)
            .ok()
            .map(|data| data.claims)
    }
}

/// The first key of every mock in this process, generated once.
static FIRST_KEY: OnceLock<Result<Arc<SigningKey>, KeyError>> = OnceLock::new();

fn first_key_blocking() -> Result<Arc<SigningKey>, KeyError> {
    FIRST_KEY
        .get_or_init(|| SigningKey::generate().map(Arc::new))
        .clone()
}

/// Starts generating the process's first key in the background, unless it exists already.
pub(crate) fn prewarm() {
    if FIRST_KEY.get().is_none() {
        // A second concurrent prewarm just waits inside `get_or_init` and exits.
        std::thread::spawn(first_key_blocking);
    }
}

/// The process's first key, waiting (off the runtime threads) until it is generated.
pub(crate) async fn first_key() -> Result<Arc<SigningKey>, KeyError> {
    if let Some(key) = FIRST_KEY.get() {
        return key.clone();
    }
    tokio::task::spawn_blocking(first_key_blocking)
        .await
        .map_err(|e| KeyError(e.to_string()))?
}

/// A freshly generated key (for rotation), generated off the runtime threads.
pub(crate) async fn fresh_key() -> Result<Arc<SigningKey>, KeyError> {
    tokio::task::spawn_blocking(SigningKey::generate)
        .await
        .map_err(|e| KeyError(e.to_string()))?
        .map(Arc::new)
}

/// The keys of one mock: the current signing key and the retired keys still published.
#[derive(Debug, Default)]
pub(crate) struct KeyRing {
    /// `None` until the first key is needed (see [`crate::MockAzure::signing_key`]).
    pub(crate) current: Option<Arc<SigningKey>>,
    /// Older keys kept in the JWKS by a rotation with `keepOld`, newest first.
    pub(crate) retired: Vec<Arc<SigningKey>>,
    /// The claims of tokens already verified, so a client that presents the same token on
    /// every call (as clients do until it expires) costs one RSA verification, not one per
    /// call. Emptied by a rotation; at most [`VERIFIED_CAPACITY`] entries.
    verified: Mutex<HashMap<String, Value>>,
}

/// Most verified tokens remembered; the cache starts over when full.
const VERIFIED_CAPACITY: usize = 1024;

impl KeyRing {
    /// Every published key, current first.
    pub(crate) fn published(&self) -> impl Iterator<Item = &Arc<SigningKey>> {
        self.current.iter().chain(self.retired.iter())
    }

    /// Makes `key` current; the previous current key is retired when `keep_old`, else dropped
    /// along with every retired key.
    pub(crate) fn rotate(&mut self, key: Arc<SigningKey>, keep_old: bool) {
        match self.current.replace(key) {
            Some(old) if keep_old => self.retired.insert(0, old),
            _ => {}
        }
        if !keep_old {
            self.retired.clear();
        }
        self.verified_tokens().clear();
    }

    /// The claims of a token signed by a published key (matched by `kid`), if any.
    pub(crate) fn verify(&self, token: &str) -> Option<Value> {
        if let Some(claims) = self.verified_tokens().get(token) {
            return Some(claims.clone());
        }
        let kid = jsonwebtoken::decode_header(token).ok()?.kid?;
        let claims = self
            .published()
            .find(|key| key.kid == kid)
            .and_then(|key| key.verify(token))?;
        let mut verified = self.verified_tokens();
        if verified.len() >= VERIFIED_CAPACITY {
            verified.clear();
        }
        verified.insert(token.to_owned(), claims.clone());
        Some(claims)
    }

    fn verified_tokens(&self) -> MutexGuard<'_, HashMap<String, Value>> {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn signed_tokens_verify_only_with_published_keys() {
        let first = Arc::new(SigningKey::generate().unwrap());
        let second = Arc::new(SigningKey::generate().unwrap());
        assert_ne!(first.kid, second.kid);
        let token = first.sign(&json!({"sub": "x"})).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(first.kid.as_str()));
        assert_eq!(header.typ.as_deref(), Some("JWT"));

        let mut ring = KeyRing::default();
        assert!(ring.verify(&token).is_none(), "no key published yet");
        ring.rotate(first.clone(), false);
        assert_eq!(ring.verify(&token).unwrap()["sub"], "x");
        assert_eq!(ring.verified_tokens().len(), 1);
        assert_eq!(
            ring.verify(&token).unwrap()["sub"],
            "x",
            "answered from the cache"
        );
        ring.rotate(second.clone(), true);
        assert_eq!(ring.published().count(), 2);
        assert!(ring.verify(&token).is_some(), "kept keys still verify");
        ring.rotate(Arc::new(SigningKey::generate().unwrap()), false);
        assert_eq!(ring.published().count(), 1);
        assert!(
            ring.verify(&token).is_none(),
            "dropped keys do not, cached or not"
        );
        assert!(ring.verified_tokens().is_empty());
        // A token signed by another key under a published kid fails the signature check.
        let forged = second.sign(&json!({"sub": "x"})).unwrap();
        let mut parts: Vec<&str> = forged.split('.').collect();
        let own = first.sign(&json!({"sub": "x"})).unwrap();
        parts[0] = own.split('.').next().unwrap();
        let mut only_first = KeyRing::default();
        only_first.rotate(first, false);
        assert!(only_first.verify(&parts.join(".")).is_none());
        let jwk = second.jwk("iss");
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["e"], "AQAB");
    }
}
