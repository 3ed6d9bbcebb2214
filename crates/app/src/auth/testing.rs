//! Test support (feature `testing`): an in-memory issuer that signs tokens with fixed test
//! keys (two RSA, two P-256), and an in-memory [`KeySource`] that publishes their key sets and
//! counts fetches. Never use these keys outside tests.

#![allow(
    clippy::expect_used,
    reason = "test support: the fixed keys are known to be valid"
)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};
use tether_adapters::jwks::{Jwk, JwkSet, KeySource, KeySourceError};

use super::testkeys;

/// One of the fixed test keys.
#[derive(Clone)]
pub struct TestKey {
    /// The `kid` it is published and signs under.
    pub kid: String,
    /// RS256 or ES256.
    pub alg: Algorithm,
    encoding: EncodingKey,
    jwk: Jwk,
}

/// Which fixed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixed {
    /// The first RSA key.
    Rsa1,
    /// The second RSA key.
    Rsa2,
    /// The first P-256 key.
    Ec1,
    /// The second P-256 key.
    Ec2,
}

impl TestKey {
    /// A fixed key published as `kid`.
    pub fn fixed(which: Fixed, kid: &str) -> Self {
        let der = |b64: &str| STANDARD.decode(b64).expect("a fixed test key");
        let (alg, encoding, jwk) = match which {
            Fixed::Rsa1 | Fixed::Rsa2 => {
                let (pkcs1, n) = if which == Fixed::Rsa1 {
                    (testkeys::RSA1_PKCS1, testkeys::RSA1_N)
                } else {
                    (testkeys::RSA2_PKCS1, testkeys::RSA2_N)
                };
                (
                    Algorithm::RS256,
                    EncodingKey::from_rsa_der(&der(pkcs1)),
                    Jwk {
                        kty: "RSA".into(),
                        kid: Some(kid.into()),
                        alg: Some("RS256".into()),
                        key_use: Some("sig".into()),
                        n: Some(n.into()),
                        e: Some("AQAB".into()),
                        crv: None,
                        x: None,
                        y: None,
                    },
                )
            }
            Fixed::Ec1 | Fixed::Ec2 => {
                let (pkcs8, x, y) = if which == Fixed::Ec1 {
                    (testkeys::EC1_PKCS8, testkeys::EC1_X, testkeys::EC1_Y)
                } else {
                    (testkeys::EC2_PKCS8, testkeys::EC2_X, testkeys::EC2_Y)
                };
                (
                    Algorithm::ES256,
                    EncodingKey::from_ec_der(&der(pkcs8)),
                    Jwk {
                        kty: "EC".into(),
                        kid: Some(kid.into()),
                        alg: None,
                        key_use: Some("sig".into()),
                        n: None,
                        e: None,
                        crv: Some("P-256".into()),
                        x: Some(x.into()),
                        y: Some(y.into()),
                    },
                )
            }
        };
        Self {
            kid: kid.to_string(),
            alg,
            encoding,
            jwk,
        }
    }

    /// Its public JWK.
    pub fn jwk(&self) -> Jwk {
        self.jwk.clone()
    }

    /// Signs `claims` with this key, its algorithm and its `kid`.
    pub fn sign(&self, claims: &Map<String, Value>) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signing with a test key")
    }
}

/// A test issuer: its `iss`, tenant and standard claims.
#[derive(Debug, Clone)]
pub struct TestIssuer {
    /// `iss`.
    pub issuer: String,
    /// `tid`.
    pub tenant: String,
}

impl TestIssuer {
    /// An issuer shaped like Entra ID's v2 endpoint for `tenant`.
    pub fn new(base: &str, tenant: &str) -> Self {
        Self {
            issuer: format!("{base}/{tenant}/v2.0"),
            tenant: tenant.to_string(),
        }
    }

    /// The claims of an app-only access token for `object_id`, audience `aud`, valid from
    /// `now` for an hour.
    pub fn claims(&self, object_id: &str, aud: &str, now: i64) -> Map<String, Value> {
        let claims = json!({
            "iss": self.issuer,
            "aud": aud,
            "tid": self.tenant,
            "oid": object_id,
            "sub": object_id,
            "appid": format!("app-{object_id}"),
            "azp": format!("app-{object_id}"),
            "idtyp": "app",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
        });
        match claims {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }
}

/// Key sets held in memory, by issuer; counts fetches and can be made to fail.
#[derive(Default)]
pub struct MemoryKeySource {
    sets: Mutex<HashMap<String, JwkSet>>,
    fetches: AtomicUsize,
    failing: AtomicBool,
}

impl MemoryKeySource {
    /// Publishes exactly `keys` for `issuer`.
    pub fn publish(&self, issuer: &str, keys: &[&TestKey]) {
        let set = JwkSet {
            keys: keys.iter().map(|k| k.jwk()).collect(),
        };
        self.sets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(issuer.to_string(), set);
    }

    /// Publishes a raw key set for `issuer`.
    pub fn publish_set(&self, issuer: &str, set: JwkSet) {
        self.sets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(issuer.to_string(), set);
    }

    /// How many fetches were made.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Makes every fetch fail (or succeed again).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

#[async_trait]
impl KeySource for MemoryKeySource {
    async fn fetch(&self, issuer: &str, _jwks_uri: Option<&str>) -> Result<JwkSet, KeySourceError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        // Let concurrent callers pile up behind the single flight, as a real fetch would.
        tokio::task::yield_now().await;
        if self.failing.load(Ordering::SeqCst) {
            return Err(KeySourceError::new("the issuer is down"));
        }
        self.sets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(issuer)
            .cloned()
            .ok_or_else(|| KeySourceError::new("unknown issuer"))
    }
}
