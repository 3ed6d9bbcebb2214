//! The authenticator against tokens signed with fixed test keys: every way a token can be
//! wrong, the clock-skew edges, and the key cache (one refresh per unknown kid and interval,
//! single flight, rotation, an issuer that is down).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Map, Value, json};
use tether_adapters::jwks::{Jwk, JwkSet};

use super::*;
use crate::auth::testing::{Fixed, MemoryKeySource, TestIssuer, TestKey};

const TENANT: &str = "aaaaaaaa-0000-4000-8000-000000000001";
const OID: &str = "0b0b0b0b-0000-4000-8000-000000000001";
const AUD: &str = "https://management.azure.com";
const NOW: i64 = 1_800_000_000;

struct Fixture {
    auth: Authenticator,
    keys: Arc<MemoryKeySource>,
    issuer: TestIssuer,
    rsa: TestKey,
    ec: TestKey,
}

fn fixture() -> Fixture {
    fixture_with(|_| {})
}

fn fixture_with(tweak: impl FnOnce(&mut AuthSettings)) -> Fixture {
    let issuer = TestIssuer::new("https://login.example", TENANT);
    let rsa = TestKey::fixed(Fixed::Rsa1, "rsa-1");
    let ec = TestKey::fixed(Fixed::Ec1, "ec-1");
    let keys = Arc::new(MemoryKeySource::default());
    keys.publish(&issuer.issuer, &[&rsa, &ec]);
    let mut settings = AuthSettings {
        issuers: vec![IssuerSettings {
            issuer: issuer.issuer.clone(),
            jwks_uri: None,
            tenant_id: Some(TENANT.to_uppercase()),
        }],
        audiences: vec![AUD.into(), "api://tether".into()],
        ..AuthSettings::default()
    };
    tweak(&mut settings);
    Fixture {
        auth: Authenticator::new(settings, keys.clone()),
        keys,
        issuer,
        rsa,
        ec,
    }
}

impl Fixture {
    fn claims(&self) -> Map<String, Value> {
        self.issuer.claims(OID, AUD, NOW)
    }

    fn token(&self) -> String {
        self.rsa.sign(&self.claims())
    }

    fn with(&self, key: &TestKey, change: impl FnOnce(&mut Map<String, Value>)) -> String {
        let mut claims = self.claims();
        change(&mut claims);
        key.sign(&claims)
    }

    async fn check(&self, token: &str) -> Result<Principal, AuthError> {
        self.auth.verify(token, NOW).await
    }
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

fn invalid(result: Result<Principal, AuthError>) -> &'static str {
    match result {
        Err(AuthError::Invalid(why)) => why,
        other => panic!("expected an invalid token, got {other:?}"),
    }
}

#[tokio::test]
async fn valid_rs256_and_es256_tokens_name_their_principal() {
    let f = fixture();
    let p = f.check(&f.token()).await.unwrap();
    assert_eq!(p.object_id.as_str(), OID);
    assert_eq!(p.tenant_id, TENANT);
    assert_eq!(p.app_id.as_deref(), Some(format!("app-{OID}").as_str()));
    assert_eq!(p.kind, PrincipalKind::Application);
    assert_eq!(p.issuer, f.issuer.issuer);
    assert_eq!(p.caller().name, format!("app-{OID}"));

    let p = f.check(&f.ec.sign(&f.claims())).await.unwrap();
    assert_eq!(p.object_id.as_str(), OID);

    // A user token: `scp`, a name, `sub` only; the array audience with one accepted value.
    let user = f.with(&f.rsa, |c| {
        c.remove("oid");
        c.remove("idtyp");
        c.insert("sub".into(), json!("User-Sub_1"));
        c.insert("scp".into(), json!("user_impersonation"));
        c.insert("name".into(), json!("Ada\u{7} Lovelace"));
        c.insert("aud".into(), json!(["other", "api://tether"]));
    });
    let p = f.check(&user).await.unwrap();
    assert_eq!(p.object_id.as_str(), "User-Sub_1");
    assert_eq!(p.kind, PrincipalKind::User);
    assert_eq!(p.caller().name, "Ada Lovelace");
    assert_eq!(f.keys.fetches(), 1, "one fetch served every key");
}

#[tokio::test]
async fn a_wrong_or_missing_signature_is_refused() {
    let f = fixture();
    // Signed by another key under a published kid.
    let other = TestKey::fixed(Fixed::Rsa2, "rsa-1");
    assert_eq!(
        invalid(f.check(&other.sign(&f.claims())).await),
        "its signature does not verify"
    );
    // A payload changed after signing.
    let token = f.token();
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims = f.claims();
    claims.insert("oid".into(), json!("ffffffff-0000-4000-8000-000000000001"));
    let tampered = format!("{}.{}.{}", parts[0], b64(&Value::Object(claims)), parts[2]);
    assert_eq!(
        invalid(f.check(&tampered).await),
        "its signature does not verify"
    );
    // A signature that is not base64url.
    let garbled = format!("{}.{}.%%%", parts[0], parts[1]);
    assert_eq!(
        invalid(f.check(&garbled).await),
        "its signature does not verify"
    );
    // An ES256 signature by another P-256 key.
    let other_ec = TestKey::fixed(Fixed::Ec2, "ec-1");
    assert_eq!(
        invalid(f.check(&other_ec.sign(&f.claims())).await),
        "its signature does not verify"
    );
}

#[tokio::test]
async fn alg_none_hs256_and_algorithm_confusion_are_refused() {
    let f = fixture();
    let claims = Value::Object(f.claims());
    // alg none, with no signature and with one borrowed from a real token.
    let none = b64(&json!({"alg": "none", "kid": "rsa-1", "typ": "JWT"}));
    let unsigned = format!("{none}.{}.", b64(&claims));
    assert_eq!(invalid(f.check(&unsigned).await), "it is not a signed JWT");
    let real = f.token();
    let borrowed = format!(
        "{none}.{}.{}",
        b64(&claims),
        real.split('.').nth(2).unwrap()
    );
    assert_eq!(
        invalid(f.check(&borrowed).await),
        "its signing algorithm is not accepted"
    );
    for alg in [
        "None", "NONE", "HS384", "HS512", "RS384", "PS256", "ES384", "EdDSA",
    ] {
        let header = b64(&json!({"alg": alg, "kid": "rsa-1"}));
        let token = format!(
            "{header}.{}.{}",
            b64(&claims),
            real.split('.').nth(2).unwrap()
        );
        assert_eq!(
            invalid(f.check(&token).await),
            "its signing algorithm is not accepted",
            "{alg}"
        );
    }
    // HS256 "signed" with the RSA public key's bytes as the shared secret (the classic
    // confusion attack), under the RSA key's kid.
    let n = f.rsa.jwk().n.unwrap();
    for secret in [n.as_bytes().to_vec(), URL_SAFE_NO_PAD.decode(&n).unwrap()] {
        let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("rsa-1".into());
        let forged =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret)).unwrap();
        assert_eq!(
            invalid(f.check(&forged).await),
            "its signing algorithm is not accepted"
        );
    }
    // ES256 claimed over the RSA key (and RS256 over the EC key).
    let ec_over_rsa = {
        let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("rsa-1".into());
        let signed = f.ec.sign(&f.claims());
        let parts: Vec<&str> = signed.split('.').collect();
        format!(
            "{}.{}.{}",
            b64(&serde_json::to_value(&header).unwrap()),
            parts[1],
            parts[2]
        )
    };
    assert_eq!(
        invalid(f.check(&ec_over_rsa).await),
        "its signing algorithm does not match its key"
    );
    let rsa_as_ec = TestKey::fixed(Fixed::Rsa1, "ec-1");
    assert_eq!(
        invalid(f.check(&rsa_as_ec.sign(&f.claims())).await),
        "its signing algorithm does not match its key"
    );
    // Critical header extensions are not understood, so refused.
    let crit = {
        let signed = f.token();
        let parts: Vec<&str> = signed.split('.').collect();
        let header = b64(&json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"]}));
        format!("{header}.{}.{}", parts[1], parts[2])
    };
    assert_eq!(
        invalid(f.check(&crit).await),
        "it has critical header extensions"
    );
}

#[tokio::test]
async fn lifetimes_hold_within_the_skew_only() {
    let f = fixture();
    let at = |exp: i64, nbf: i64| {
        f.with(&f.rsa, |c| {
            c.insert("exp".into(), json!(exp));
            c.insert("nbf".into(), json!(nbf));
        })
    };
    // Skew is 60 s: expired 59 s ago still passes, 60 s ago does not.
    assert!(f.check(&at(NOW - 59, NOW - 100)).await.is_ok());
    assert_eq!(
        f.check(&at(NOW - 60, NOW - 100)).await.unwrap_err(),
        AuthError::Expired {
            exp: NOW - 60,
            now: NOW
        }
    );
    assert!(matches!(
        f.check(&at(NOW - 3600, NOW - 7200)).await,
        Err(AuthError::Expired { .. })
    ));
    // Valid from 60 s ahead passes, 61 s ahead does not.
    assert!(f.check(&at(NOW + 600, NOW + 60)).await.is_ok());
    assert_eq!(
        invalid(f.check(&at(NOW + 600, NOW + 61)).await),
        "it is not valid yet"
    );
    // No expiry at all, or a malformed one.
    let no_exp = f.with(&f.rsa, |c| {
        c.remove("exp");
    });
    assert_eq!(invalid(f.check(&no_exp).await), "it has no expiry");
    let text_exp = f.with(&f.rsa, |c| {
        c.insert("exp".into(), json!("tomorrow"));
    });
    assert_eq!(invalid(f.check(&text_exp).await), "it has no expiry");
    // A skew of zero is exact.
    let strict = fixture_with(|s| s.clock_skew = Duration::ZERO);
    let expiring = strict.with(&strict.rsa, |c| {
        c.insert("exp".into(), json!(NOW + 1));
    });
    assert!(strict.check(&expiring).await.is_ok());
    let expired = strict.with(&strict.rsa, |c| {
        c.insert("exp".into(), json!(NOW));
    });
    assert!(strict.check(&expired).await.is_err());
}

#[tokio::test]
async fn audience_issuer_tenant_and_subject_are_required() {
    let f = fixture();
    let wrong_aud = f.with(&f.rsa, |c| {
        c.insert("aud".into(), json!("https://management.azure.com/"));
    });
    let err = f.check(&wrong_aud).await.unwrap_err();
    assert_eq!(err.code(), "InvalidAuthenticationTokenAudience");
    let no_aud = f.with(&f.rsa, |c| {
        c.remove("aud");
    });
    assert_eq!(
        f.check(&no_aud).await.unwrap_err().code(),
        "InvalidAuthenticationTokenAudience"
    );

    // An issuer that is not configured: refused without fetching anything.
    let fetches = f.keys.fetches();
    let stranger = TestIssuer::new("https://evil.example", TENANT);
    let foreign = f.rsa.sign(&stranger.claims(OID, AUD, NOW));
    let err = f.check(&foreign).await.unwrap_err();
    assert_eq!(err.code(), "InvalidAuthenticationTokenTenant");
    assert_eq!(f.keys.fetches(), fetches);
    // Issuers match exactly: no trailing slash, no other casing.
    for iss in [
        format!("{}/", f.issuer.issuer),
        f.issuer.issuer.to_uppercase(),
    ] {
        let token = f.with(&f.rsa, |c| {
            c.insert("iss".into(), json!(iss));
        });
        assert_eq!(
            f.check(&token).await.unwrap_err().code(),
            "InvalidAuthenticationTokenTenant"
        );
    }
    // The issuer is pinned to its tenant.
    let other_tenant = f.with(&f.rsa, |c| {
        c.insert("tid".into(), json!("bbbbbbbb-0000-4000-8000-000000000001"));
    });
    assert_eq!(
        f.check(&other_tenant).await.unwrap_err().code(),
        "InvalidAuthenticationTokenTenant"
    );
    for (claim, why) in [("tid", "it names no tenant")] {
        let token = f.with(&f.rsa, |c| {
            c.remove(claim);
        });
        assert_eq!(invalid(f.check(&token).await), why);
    }
    let no_subject = f.with(&f.rsa, |c| {
        c.remove("oid");
        c.remove("sub");
    });
    assert_eq!(invalid(f.check(&no_subject).await), "it names no principal");
    let bad_subject = f.with(&f.rsa, |c| {
        c.insert("oid".into(), json!("a b"));
    });
    assert_eq!(
        invalid(f.check(&bad_subject).await),
        "its principal id is malformed"
    );
}

#[tokio::test]
async fn malformed_and_oversized_tokens_and_headers_are_refused() {
    let f = fixture();
    for junk in ["", "abc", "a.b", "a.b.c.d", "..", "!!.!!.!!", "e30.e30.x"] {
        assert!(
            matches!(f.check(junk).await, Err(AuthError::Invalid(_))),
            "{junk:?}"
        );
    }
    let huge = f.with(&f.rsa, |c| {
        c.insert("pad".into(), json!("x".repeat(20_000)));
    });
    assert_eq!(invalid(f.check(&huge).await), "it is too large");
    assert_eq!(
        f.auth.authenticate(None).await.unwrap_err(),
        AuthError::MissingHeader
    );
    for header in [
        &b"Basic abc"[..],
        b"Bearer",
        b"Bearer   ",
        b"\xff\xfe",
        b"token",
    ] {
        assert_eq!(
            f.auth.authenticate(Some(header)).await.unwrap_err(),
            AuthError::BadHeader
        );
    }
    // A real, current token through the header parser (any scheme casing, extra spaces).
    let now = chrono::Utc::now().timestamp();
    let token = f.rsa.sign(&f.issuer.claims(OID, AUD, now));
    let header = format!("bearer  {token} ");
    assert!(f.auth.authenticate(Some(header.as_bytes())).await.is_ok());
}

#[tokio::test]
async fn errors_never_echo_the_token() {
    let f = fixture();
    let token = f.with(&f.rsa, |c| {
        c.insert("exp".into(), json!(NOW - 3600));
    });
    for err in [
        f.check(&token).await.unwrap_err(),
        AuthError::MissingHeader,
        AuthError::Invalid("x"),
    ] {
        let challenge = err.challenge("https://login.example/t\"x");
        assert!(challenge.starts_with("Bearer authorization_uri=\"https://login.example/tx\""));
        assert!(challenge.contains("error=\"invalid_token\""));
        let error = Error::from(err);
        assert_eq!(error.kind(), ErrorKind::Unauthenticated);
        for text in [challenge.as_str(), error.client_message()] {
            assert!(!text.contains(&token[..40]));
            assert!(!text.contains(token.split('.').nth(2).unwrap()));
        }
    }
    assert_eq!(
        f.auth.authorization_uri(),
        format!("https://login.example/{TENANT}")
    );
}

#[tokio::test(start_paused = true)]
async fn an_unknown_kid_refreshes_at_most_once_per_interval() {
    let f = fixture();
    assert!(f.check(&f.token()).await.is_ok());
    assert_eq!(f.keys.fetches(), 1);
    // The advance takes the first fetch out of the rate limit's window.
    tokio::time::advance(Duration::from_secs(31)).await;
    let unknown = |kid: &str| TestKey::fixed(Fixed::Rsa1, kid).sign(&f.claims());
    assert_eq!(
        invalid(f.check(&unknown("nope-1")).await),
        "its signing key is not published by its issuer"
    );
    assert_eq!(
        f.keys.fetches(),
        2,
        "exactly one refresh for the unknown kid"
    );
    for i in 0..20 {
        assert!(f.check(&unknown(&format!("nope-x{i}"))).await.is_err());
    }
    assert_eq!(f.keys.fetches(), 2, "no more within the interval");
    // A flood of concurrent random kids after the interval: one fetch between them.
    tokio::time::advance(Duration::from_secs(31)).await;
    let tokens: Vec<String> = (0..50).map(|i| unknown(&format!("flood-{i}"))).collect();
    let checks = tokens.iter().map(|t| f.check(t));
    let results = futures_util::future::join_all(checks).await;
    assert!(results.iter().all(Result::is_err));
    assert_eq!(f.keys.fetches(), 3, "single flight");
    // Known keys keep working throughout, without fetching.
    assert!(f.check(&f.token()).await.is_ok());
    assert_eq!(f.keys.fetches(), 3);
}

#[tokio::test(start_paused = true)]
async fn rotated_keys_are_picked_up_and_retired_ones_dropped() {
    let f = fixture();
    let old_token = f.token();
    assert!(f.check(&old_token).await.is_ok());
    // The issuer rotates, keeping the old key published.
    let new = TestKey::fixed(Fixed::Rsa2, "rsa-2");
    f.keys.publish(&f.issuer.issuer, &[&new, &f.rsa]);
    tokio::time::advance(Duration::from_secs(31)).await;
    let new_token = new.sign(&f.claims());
    assert!(
        f.check(&new_token).await.is_ok(),
        "the new kid triggers a refresh"
    );
    assert!(
        f.check(&old_token).await.is_ok(),
        "the old key is still published"
    );
    assert_eq!(f.keys.fetches(), 2);
    // The issuer drops the old key; once the cached keys are old, they are fetched again.
    f.keys.publish(&f.issuer.issuer, &[&new]);
    assert!(
        f.check(&old_token).await.is_ok(),
        "within keys_max_age the cached key is still trusted"
    );
    tokio::time::advance(Duration::from_secs(3601)).await;
    assert_eq!(
        invalid(f.check(&old_token).await),
        "its signing key is not published by its issuer"
    );
    assert!(f.check(&new_token).await.is_ok());
    assert_eq!(f.keys.fetches(), 3);
}

#[tokio::test(start_paused = true)]
async fn an_issuer_that_is_down_keeps_its_cached_keys() {
    let f = fixture();
    f.keys.set_failing(true);
    assert_eq!(
        f.check(&f.token()).await.unwrap_err(),
        AuthError::KeysUnavailable,
        "no keys yet: 503, not 401"
    );
    assert_eq!(
        Error::from(AuthError::KeysUnavailable).kind(),
        ErrorKind::Unavailable
    );
    tokio::time::advance(Duration::from_secs(31)).await;
    f.keys.set_failing(false);
    assert!(f.check(&f.token()).await.is_ok());
    f.keys.set_failing(true);
    tokio::time::advance(Duration::from_secs(7200)).await;
    assert!(
        f.check(&f.token()).await.is_ok(),
        "stale keys are used while the issuer cannot be reached"
    );
    assert_eq!(f.keys.fetches(), 3);
}

#[tokio::test]
async fn unusable_published_keys_are_ignored() {
    let f = fixture();
    let weak = Jwk {
        n: Some(URL_SAFE_NO_PAD.encode([0xC5u8; 128])),
        kid: Some("weak".into()),
        ..f.rsa.jwk()
    };
    let encryption = Jwk {
        key_use: Some("enc".into()),
        kid: Some("enc".into()),
        ..f.rsa.jwk()
    };
    let other_alg = Jwk {
        alg: Some("RS512".into()),
        kid: Some("rs512".into()),
        ..f.rsa.jwk()
    };
    let secret = Jwk {
        kty: "oct".into(),
        kid: Some("oct".into()),
        ..f.rsa.jwk()
    };
    let good = Jwk {
        kid: Some("good".into()),
        ..f.rsa.jwk()
    };
    f.keys.publish_set(
        &f.issuer.issuer,
        JwkSet {
            keys: vec![weak, encryption, other_alg, secret, good],
        },
    );
    for kid in ["weak", "enc", "rs512", "oct"] {
        let token = TestKey::fixed(Fixed::Rsa1, kid).sign(&f.claims());
        assert_eq!(
            invalid(f.check(&token).await),
            "its signing key is not published by its issuer",
            "{kid}"
        );
    }
    let token = TestKey::fixed(Fixed::Rsa1, "good").sign(&f.claims());
    assert!(f.check(&token).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_verified_token_is_trusted_for_a_minute_and_never_past_its_expiry() {
    // Keys are fetched again once 10 s old; a verified token is trusted for as long.
    let f = fixture_with(|s| {
        s.keys_max_age = Duration::from_secs(10);
        s.refresh_min_interval = Duration::from_secs(1);
    });
    assert!(f.check(&f.token()).await.is_ok(), "keys fetched at 0 s");
    tokio::time::advance(Duration::from_secs(9)).await;
    let token = f.with(&f.rsa, |c| {
        c.insert("exp".into(), json!(NOW + 30));
    });
    assert!(
        f.auth.verify(&token, NOW).await.is_ok(),
        "trusted until 19 s"
    );
    let other = TestKey::fixed(Fixed::Rsa2, "rsa-2");
    f.keys.publish(&f.issuer.issuer, &[&other]);
    tokio::time::advance(Duration::from_secs(2)).await;
    // A token never seen before, signed with the withdrawn key, is refused (the keys are
    // stale and fetched again) ...
    let unseen = f.with(&f.rsa, |c| {
        c.insert("exp".into(), json!(NOW + 31));
    });
    assert_eq!(
        invalid(f.auth.verify(&unseen, NOW + 2).await),
        "its signing key is not published by its issuer"
    );
    // ... while the verified one is taken on trust,
    assert!(f.auth.verify(&token, NOW + 2).await.is_ok());
    // never past its expiry (30 s + 60 s of skew): then it is checked again, and refused,
    assert!(f.auth.verify(&token, NOW + 90).await.is_err());
    // and not after its trust ran out.
    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(
        invalid(f.auth.verify(&token, NOW + 11).await),
        "its signing key is not published by its issuer"
    );
}
