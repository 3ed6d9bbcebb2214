//! The Azure adapters against the mock ARM backend over real HTTP: shapes, idempotency,
//! retries, throttling, token refresh and long-running operations.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers may panic: a panic is a test failure"
)]

use std::time::Duration;

use serde_json::{Value, json};
use tether_adapters::arm::{ArmClient, ArmConfig};
use tether_adapters::{Adapters, Call, ErrorKind, FirewallRule, SettingsChange};
use tether_mock_azure::demo;
use tether_model::catalog::{POSTGRES_FLEXIBLE, WEB_APP};
use tether_model::ids::ResourceId;
use tether_test_utils::Mock;

/// The demo-seeded mock. Its extra accepted token goes unused here: the adapters must get
/// their tokens from its token endpoint.
async fn start() -> Mock {
    Mock::start("unused-by-adapters").await
}

fn arm_config(mock: &Mock) -> ArmConfig {
    ArmConfig {
        endpoint: mock.url.parse().unwrap(),
        authority: mock.url.parse().unwrap(),
        tenant_id: demo::TENANT_ID.into(),
        client_id: demo::CLIENT_ID.into(),
        client_secret: demo::CLIENT_SECRET.to_string().into(),
        max_retries: 3,
        max_retry_after: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        lro_timeout: Duration::from_secs(10),
        max_response_bytes: tether_adapters::arm::DEFAULT_MAX_RESPONSE_BYTES,
        user_agent: "tether-test".into(),
    }
}

fn adapters(mock: &Mock) -> Adapters {
    tether_adapters::azure::adapters(ArmClient::new(arm_config(mock)).unwrap())
}

fn id(s: &str) -> ResourceId {
    ResourceId::parse(s).unwrap()
}

fn call() -> Call {
    Call::correlated("test-correlation")
}

#[tokio::test]
async fn web_app_facts_and_settings() {
    let mock = start().await;
    let source = adapters(&mock).source(&WEB_APP).unwrap();
    let app = id(demo::WEB_APP_ID);
    let facts = source.facts(&call(), &app).await.unwrap();
    assert_eq!(
        facts.outbound_ips,
        [
            "20.42.0.1".parse::<std::net::Ipv4Addr>().unwrap(),
            "20.42.0.2".parse().unwrap()
        ]
    );

    let change = SettingsChange {
        set: [
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "two words".to_string()),
        ]
        .into(),
        remove: ["GONE".to_string()].into(),
    };
    source.apply_settings(&call(), &app, &change).await.unwrap();
    let settings = source.read_settings(&call(), &app).await.unwrap();
    assert_eq!(settings.get("A").map(String::as_str), Some("1"));
    assert_eq!(
        settings.get("WEBSITE_RUN_FROM_PACKAGE").map(String::as_str),
        Some("1"),
        "others are preserved"
    );

    // Applying the same change again writes nothing.
    let puts_before = mock
        .calls()
        .await
        .iter()
        .filter(|c| c["method"] == "PUT")
        .count();
    source.apply_settings(&call(), &app, &change).await.unwrap();
    let puts_after = mock
        .calls()
        .await
        .iter()
        .filter(|c| c["method"] == "PUT")
        .count();
    assert_eq!(puts_before, puts_after);

    let removal = SettingsChange {
        remove: ["A".to_string(), "B".to_string()].into(),
        ..SettingsChange::default()
    };
    source
        .apply_settings(&call(), &app, &removal)
        .await
        .unwrap();
    let settings = source.read_settings(&call(), &app).await.unwrap();
    assert_eq!(
        settings.keys().collect::<Vec<_>>(),
        ["WEBSITE_RUN_FROM_PACKAGE"]
    );
    assert!(
        mock.calls()
            .await
            .iter()
            .all(|c| c["correlationId"] == "test-correlation"
                || c["path"].as_str().unwrap().contains("oauth2"))
    );
}

#[tokio::test]
async fn missing_resources_are_not_found() {
    let mock = start().await;
    let adapters = adapters(&mock);
    let ghost_app = demo::WEB_APP_ID.replace("demo-web", "ghost");
    let err = adapters
        .source(&WEB_APP)
        .unwrap()
        .facts(&call(), &id(&ghost_app))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    let ghost_db = demo::PG_DATABASE_ID.replace("orders", "ghost");
    let err = adapters
        .target(&POSTGRES_FLEXIBLE)
        .unwrap()
        .facts(&call(), &id(&ghost_db))
        .await
        .unwrap_err();
    assert!(err.is_not_found() && !err.is_transient());
}

#[tokio::test]
async fn postgres_facts_and_firewall_rules_through_long_running_operations() {
    let mock = start().await;
    let target = adapters(&mock).target(&POSTGRES_FLEXIBLE).unwrap();
    let db = id(demo::PG_DATABASE_ID);
    let facts = target.facts(&call(), &db).await.unwrap();
    assert_eq!(
        (facts.host.as_str(), facts.port, facts.database.as_str()),
        ("demo-pg.postgres.database.azure.com", 5432, "orders")
    );

    let rule = FirewallRule {
        name: "tether-abc-20-42-0-1".into(),
        start: "20.42.0.1".parse().unwrap(),
        end: "20.42.0.1".parse().unwrap(),
    };
    target
        .ensure_firewall_rule(&call(), &db, &rule)
        .await
        .unwrap();
    target
        .ensure_firewall_rule(&call(), &db, &rule)
        .await
        .unwrap();
    let rule_id = format!("{}/firewallRules/{}", demo::PG_SERVER_ID, rule.name);
    assert_eq!(
        mock.resource(&rule_id).await.unwrap()["properties"]["startIpAddress"],
        "20.42.0.1"
    );
    // The PUT answered 202 and the adapter polled the operation status.
    assert!(
        mock.calls()
            .await
            .iter()
            .any(|c| c["path"].as_str().unwrap().contains("azureAsyncOperation"))
    );
    assert_eq!(
        target
            .firewall_rules(&call(), &db, "tether-abc-")
            .await
            .unwrap(),
        vec![rule.clone()]
    );
    assert!(
        target
            .firewall_rules(&call(), &db, "other-")
            .await
            .unwrap()
            .is_empty()
    );

    target
        .remove_firewall_rule(&call(), &db, &rule.name)
        .await
        .unwrap();
    target
        .remove_firewall_rule(&call(), &db, &rule.name)
        .await
        .unwrap();
    assert!(mock.resource(&rule_id).await.is_none());
}

#[tokio::test]
async fn transient_failures_are_retried_and_permanent_ones_are_not() {
    let mock = start().await;
    let source = adapters(&mock).source(&WEB_APP).unwrap();
    let app = id(demo::WEB_APP_ID);
    mock.fault(json!({"method": "GET", "path": "**/sites/demo-web", "count": 2, "action": {"fail": {"status": 503}}}))
        .await;
    source.facts(&call(), &app).await.unwrap();
    let gets = mock
        .calls()
        .await
        .iter()
        .filter(|c| c["method"] == "GET")
        .count();
    assert_eq!(gets, 3);

    mock.fault(json!({"method": "GET", "path": "**/sites/demo-web", "count": 1, "action": {"fail": {"status": 400, "code": "BadThing"}}}))
        .await;
    let err = source.facts(&call(), &app).await.unwrap_err();
    assert_eq!(
        (err.kind, err.code.as_str(), err.status),
        (ErrorKind::BadRequest, "BadThing", Some(400))
    );

    mock.fault(json!({"method": "GET", "path": "**/sites/demo-web", "count": 10, "action": {"fail": {"status": 500}}}))
        .await;
    let err = source.facts(&call(), &app).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn throttling_honours_retry_after() {
    let mock = start().await;
    let source = adapters(&mock).source(&WEB_APP).unwrap();
    mock.fault(json!({"method": "GET", "path": "**/sites/*", "count": 1, "action": {"throttle": {"retryAfter": 1}}}))
        .await;
    let started = std::time::Instant::now();
    source.facts(&call(), &id(demo::WEB_APP_ID)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));

    // A Retry-After longer than we wait within one call is handed back to the caller.
    mock.fault(json!({"method": "GET", "path": "**/sites/*", "count": 1, "action": {"throttle": {"retryAfter": 60}}}))
        .await;
    let err = source
        .facts(&call(), &id(demo::WEB_APP_ID))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind, err.retry_after),
        (ErrorKind::Throttled, Some(Duration::from_secs(60)))
    );
}

#[tokio::test]
async fn tokens_are_cached_and_refreshed_after_a_401() {
    let mock = start().await;
    let source = adapters(&mock).source(&WEB_APP).unwrap();
    let app = id(demo::WEB_APP_ID);
    source.facts(&call(), &app).await.unwrap();
    source.facts(&call(), &app).await.unwrap();
    let token_calls = |calls: &[Value]| {
        calls
            .iter()
            .filter(|c| c["path"].as_str().unwrap().contains("oauth2"))
            .count()
    };
    assert_eq!(token_calls(&mock.calls().await), 1, "the token is cached");
    mock.revoke_tokens().await;
    source.facts(&call(), &app).await.unwrap();
    assert_eq!(
        token_calls(&mock.calls().await),
        2,
        "a 401 fetches a new token once"
    );
}

#[tokio::test]
async fn bad_credentials_are_a_permanent_error() {
    let mock = start().await;
    let mut config = arm_config(&mock);
    config.client_secret = "wrong".to_string().into();
    let adapters = tether_adapters::azure::adapters(ArmClient::new(config).unwrap());
    let err = adapters
        .source(&WEB_APP)
        .unwrap()
        .facts(&call(), &id(demo::WEB_APP_ID))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized);
    assert!(
        !err.to_string().contains("wrong"),
        "the secret never appears in errors"
    );
}

#[tokio::test]
async fn an_absurd_retry_after_is_capped_not_obeyed() {
    let mock = start().await;
    let source = adapters(&mock).source(&WEB_APP).unwrap();
    mock.fault(json!({"method": "GET", "path": "**/sites/*", "count": 1,
        "action": {"throttle": {"retryAfter": u64::MAX}}}))
        .await;
    let started = std::time::Instant::now();
    let err = source
        .facts(&call(), &id(demo::WEB_APP_ID))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "no waiting");
    assert_eq!(err.kind, ErrorKind::Throttled);
    assert_eq!(err.retry_after, Some(Duration::from_secs(3600)));
}

#[tokio::test]
async fn a_slow_backend_fails_in_our_words_without_its_url() {
    let mock = start().await;
    let mut config = arm_config(&mock);
    config.request_timeout = Duration::from_millis(300);
    config.max_retries = 0;
    let adapters = tether_adapters::azure::adapters(ArmClient::new(config).unwrap());
    // The mock makes its signing key on first use, which can outlast the 300 ms budget on a
    // busy machine: have it made (through the admin API, no timeout) before the clock matters.
    let minted = reqwest::Client::new()
        .post(format!("{}/admin/tokens", mock.url))
        .json(&json!({"clientId": demo::CLIENT_ID}))
        .send()
        .await
        .unwrap();
    assert!(minted.status().is_success());
    // The token first, so only the ARM call is slow.
    let source = adapters.source(&WEB_APP).unwrap();
    source.facts(&call(), &id(demo::WEB_APP_ID)).await.unwrap();
    mock.fault(json!({"method": "GET", "path": "**/sites/*", "count": 1,
        "action": {"delay": {"ms": 2000}}}))
        .await;
    let err = source
        .facts(&call(), &id(demo::WEB_APP_ID))
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind, err.code.as_str()),
        (ErrorKind::Transport, "BackendTimeout")
    );
    let shown = err.to_string();
    assert!(
        !shown.contains("http://") && !shown.contains("127.0.0.1"),
        "{shown}"
    );
}

/// A backend that answers every request with `response` (raw HTTP/1.1), for shapes the mock
/// does not produce.
async fn raw_backend(response: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(&response).await;
            });
        }
    });
    url
}

#[tokio::test]
async fn oversized_and_hostile_responses_are_refused_safely() {
    let huge = {
        let body = format!("{{\"access_token\":\"{}\"}}", "x".repeat(20 * 1024 * 1024));
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let url = raw_backend(huge.into_bytes()).await;
    let mut config = arm_config(&start().await);
    config.endpoint = url.parse().unwrap();
    config.authority = url.parse().unwrap();
    config.max_retries = 0;
    let adapters = tether_adapters::azure::adapters(ArmClient::new(config.clone()).unwrap());
    let err = adapters
        .source(&WEB_APP)
        .unwrap()
        .facts(&call(), &id(demo::WEB_APP_ID))
        .await
        .unwrap_err();
    assert_eq!(err.code, "ResponseTooLarge", "{err}");

    // An error body with a URL and control characters in its message, and an endless
    // expires_in: the message is scrubbed, nothing overflows.
    let hostile =
        "{\"error\":{\"code\":\"Nope\",\"message\":\"see http://10.1.2.3/internal \\u0007now\"}}";
    let url = raw_backend(
        format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{hostile}",
            hostile.len()
        )
        .into_bytes(),
    )
    .await;
    config.endpoint = url.parse().unwrap();
    let token = "{\"access_token\":\"t\",\"expires_in\":18446744073709551615}";
    let authority = raw_backend(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{token}",
            token.len()
        )
        .into_bytes(),
    )
    .await;
    config.authority = authority.parse().unwrap();
    let adapters = tether_adapters::azure::adapters(ArmClient::new(config).unwrap());
    let err = adapters
        .source(&WEB_APP)
        .unwrap()
        .facts(&call(), &id(demo::WEB_APP_ID))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.message.as_str()),
        ("Nope", "see <url> now")
    );
}
