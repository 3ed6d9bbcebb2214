//! The HTTP key source against the mock's Entra ID endpoints: discovery, key sets, rotation,
//! and the issuer's failures (errors, slowness, a metadata document naming another issuer).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers may panic: a panic is a test failure"
)]

use std::time::Duration;

use serde_json::json;
use tether_adapters::jwks::{HttpKeySource, HttpKeySourceConfig, KeySource};
use tether_mock_azure::{Config, MockAzure, demo};

struct Running {
    mock: MockAzure,
    url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mock = MockAzure::new(Config::demo());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(mock.clone().serve(listener, async move {
        let _ = stopped.await;
    }));
    Running {
        mock,
        url,
        _stop: stop,
    }
}

fn source(timeout: Duration) -> HttpKeySource {
    HttpKeySource::new(HttpKeySourceConfig {
        timeout,
        allow_http: true,
        ..HttpKeySourceConfig::default()
    })
    .unwrap()
}

async fn fault(url: &str, rule: serde_json::Value) {
    let status = reqwest::Client::new()
        .post(format!("{url}/admin/faults"))
        .json(&rule)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success());
}

fn kid_of(token: &str) -> String {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn discovers_the_key_set_and_follows_rotation() {
    let m = start().await;
    let issuer = m.mock.issuer(&m.url);
    let token = m
        .mock
        .mint_token(
            &m.url,
            demo::CLIENT_ID,
            "api://tether",
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let keys = source(Duration::from_secs(5));
    let set = keys.fetch(&issuer, None).await.unwrap();
    assert_eq!(set.keys.len(), 1);
    assert_eq!(set.keys[0].kid.as_deref(), Some(kid_of(&token).as_str()));
    assert_eq!(set.keys[0].kty, "RSA");

    let new_kid = m.mock.rotate_signing_key(true).await.unwrap();
    let jwks_uri = m.mock.jwks_uri(&m.url);
    let set = keys.fetch(&issuer, Some(&jwks_uri)).await.unwrap();
    let kids: Vec<String> = set.keys.iter().filter_map(|k| k.kid.clone()).collect();
    assert_eq!(
        kids,
        vec![new_kid.clone(), kid_of(&token)],
        "current first, old kept"
    );

    m.mock.rotate_signing_key(false).await.unwrap();
    let set = keys.fetch(&issuer, None).await.unwrap();
    assert_eq!(set.keys.len(), 1);
    assert_ne!(set.keys[0].kid.as_deref(), Some(new_kid.as_str()));
}

#[tokio::test]
async fn refuses_what_an_issuer_should_not_send() {
    let m = start().await;
    let issuer = m.mock.issuer(&m.url);
    let keys = source(Duration::from_secs(5));

    // Metadata that names another issuer (here: the configured one with a trailing slash).
    let err = keys.fetch(&format!("{issuer}/"), None).await.unwrap_err();
    assert!(err.to_string().contains("another issuer"), "{err}");

    // Plain http is refused unless allowed.
    let strict = HttpKeySource::new(HttpKeySourceConfig::default()).unwrap();
    assert!(strict.fetch(&issuer, None).await.is_err());

    // An issuer that fails, then one that is too slow.
    fault(
        &m.url,
        json!({"path": "**/discovery/v2.0/keys", "count": 1, "action": {"fail": {"status": 503}}}),
    )
    .await;
    let err = keys.fetch(&issuer, None).await.unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    fault(
        &m.url,
        json!({"path": "**/openid-configuration", "count": 1, "action": {"delay": {"ms": 3000}}}),
    )
    .await;
    let slow = source(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let err = slow.fetch(&issuer, None).await.unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));

    // A key set larger than the limit.
    let tiny = HttpKeySource::new(HttpKeySourceConfig {
        max_response_bytes: 64,
        allow_http: true,
        ..HttpKeySourceConfig::default()
    })
    .unwrap();
    let err = tiny
        .fetch(&issuer, Some(&m.mock.jwks_uri(&m.url)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");

    // And afterwards it works again.
    assert_eq!(keys.fetch(&issuer, None).await.unwrap().keys.len(), 1);
}
