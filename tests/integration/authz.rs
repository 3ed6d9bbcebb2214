//! JWT authentication and role assignments on a real replica, with the mock Azure backend as
//! the token issuer: tokens from its client-credentials endpoint and its admin minting API,
//! keys discovered through its OpenID metadata, key rotation; and the official
//! `azure-mgmt-authorization` SDK managing role assignments (`tests/python/authz_sdk.py`).
//!
//! The replica runs in JWT mode through environment overrides of `[auth]`; the demo client
//! (`tether-dev-client`) is its bootstrap Owner at `/`.

use std::time::Duration;

use serde_json::{Value, json};
use tether_mock_azure::demo;
use tether_test_utils::{Backend, ReplicaOptions};
use tokio::process::Command;

use crate::support::env;

const AUD: &str = "https://management.azure.com";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/authz_sdk.py");
const SDK: &str = "azure-mgmt-authorization==4.0.0";

/// `[auth]` in JWT mode, trusting the mock at `mock_url`; keys refreshed quickly so rotations
/// show within a test.
fn jwt(mock_url: &str) -> ReplicaOptions {
    let tenant = demo::TENANT_ID;
    ReplicaOptions::default()
        .env(
            "TETHER__AUTH__ISSUERS",
            &format!(r#"[{{issuer="{mock_url}/{tenant}/v2.0", tenant_id="{tenant}"}}]"#),
        )
        .env("TETHER__AUTH__AUDIENCES", &format!(r#"["{AUD}"]"#))
        .env("TETHER__AUTH__ALLOW_HTTP_ISSUERS", "true")
        .env(
            "TETHER__AUTH__BOOTSTRAP_OWNERS",
            &format!(r#"["{}"]"#, demo::CLIENT_OBJECT_ID),
        )
        .env("TETHER__AUTH__JWKS_REFRESH_MIN_INTERVAL_SECS", "0.2")
        .env("TETHER__AUTH__JWKS_MAX_AGE_SECS", "1")
        .env("TETHER__AUTH__ASSIGNMENT_CACHE_SECS", "1")
}

async fn post(url: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

/// A client-credentials token from the mock's token endpoint.
async fn token(mock: &str, client: &str, secret: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{mock}/{}/oauth2/v2.0/token", demo::TENANT_ID))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client),
            ("client_secret", secret),
            ("scope", "https://management.azure.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

/// A token minted through the mock's admin API (any lifetime, audience or claims).
async fn mint(mock: &str, spec: Value) -> String {
    let body = post(&format!("{mock}/admin/tokens"), spec).await;
    body["access_token"].as_str().unwrap().to_string()
}

async fn get(url: &str, token: Option<&str>) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, headers)
}

/// Polls `check` every 100 ms until it holds, failing after 20 s.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let probe = || {
        let checked = check();
        let what = what.to_string();
        async move { if checked.await { Ok(()) } else { Err(what) } }
    };
    tether_test_utils::eventually(Duration::from_secs(20), Duration::from_millis(100), probe).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_verified_against_the_issuers_published_keys() {
    let env = env(Backend::Sqlite).await;
    let mock = env.mock.url.clone();
    let replica = env.spawn_with(jwt(&mock)).await;
    let definitions = format!(
        "{}/providers/Microsoft.Authorization/roleDefinitions?api-version=2022-04-01",
        replica.url
    );
    let owner = token(&mock, demo::CLIENT_ID, demo::CLIENT_SECRET).await;

    let (status, body, headers) = get(&definitions, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("AuthenticationFailed"))
    );
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with(&format!(
            "Bearer authorization_uri=\"{mock}/{}\"",
            demo::TENANT_ID
        )),
        "{challenge}"
    );
    let (status, _, _) = get(&definitions, Some(&owner)).await;
    assert_eq!(status, 200);
    // A bearer token that is not a JWT is refused.
    let (status, _, _) = get(&definitions, Some("test-0123456789abcdef")).await;
    assert_eq!(status, 401);

    let expired = mint(
        &mock,
        json!({"clientId": demo::CLIENT_ID, "lifetimeSecs": -120}),
    )
    .await;
    let early = mint(
        &mock,
        json!({"clientId": demo::CLIENT_ID, "notBeforeSecs": 600}),
    )
    .await;
    let other_audience = mint(
        &mock,
        json!({"clientId": demo::CLIENT_ID, "audience": "api://other"}),
    )
    .await;
    let other_issuer = mint(
        &mock,
        json!({"clientId": demo::CLIENT_ID, "extraClaims": {"iss": format!("http://evil.example/{}/v2.0", demo::TENANT_ID)}}),
    )
    .await;
    let other_tenant = mint(
        &mock,
        json!({"clientId": demo::CLIENT_ID, "extraClaims": {"tid": "bbbbbbbb-0000-4000-8000-000000000001"}}),
    )
    .await;
    let tampered = {
        let at = owner.rfind('.').unwrap() + 20;
        let mut bytes = owner.clone().into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    };
    for (token, code) in [
        (expired, "ExpiredAuthenticationToken"),
        (early, "InvalidAuthenticationToken"),
        (other_audience, "InvalidAuthenticationTokenAudience"),
        (other_issuer, "InvalidAuthenticationTokenTenant"),
        (other_tenant, "InvalidAuthenticationTokenTenant"),
        (tampered, "InvalidAuthenticationToken"),
    ] {
        let (status, body, _) = get(&definitions, Some(&token)).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some(code)),
            "{body}"
        );
    }

    // Rotation keeping the old key: new tokens (an unknown kid) are accepted once the keys are
    // fetched again, old ones still are.
    let rotate_url = format!("{mock}/admin/signing-keys/rotate");
    let rotate = |keep_old: bool| post(&rotate_url, json!({"keepOld": keep_old}));
    rotate(true).await;
    let newer = token(&mock, demo::CLIENT_ID, demo::CLIENT_SECRET).await;
    until("a token signed by the new key is accepted", || async {
        get(&definitions, Some(&newer)).await.0 == 200
    })
    .await;
    assert_eq!(
        get(&definitions, Some(&owner)).await.0,
        200,
        "the old key is still published"
    );
    // Rotation dropping the old keys: their tokens are refused once the cached keys age.
    rotate(false).await;
    let newest = token(&mock, demo::CLIENT_ID, demo::CLIENT_SECRET).await;
    until("tokens of dropped keys are refused", || async {
        get(&definitions, Some(&owner)).await.0 == 401
            && get(&definitions, Some(&newer)).await.0 == 401
    })
    .await;
    assert_eq!(get(&definitions, Some(&newest)).await.0, 200);

    // Public routes need no token; the refusals above are in the audit trail, which the
    // bootstrap owner (Owner at '/') may read.
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            get(&format!("{}{path}", replica.url), None).await.0,
            200,
            "{path}"
        );
    }
    let (status, audit, _) = get(
        &format!("{}/admin/audit?outcome=refused&limit=1000", replica.url),
        Some(&newest),
    )
    .await;
    assert_eq!(status, 200, "{audit}");
    let codes: Vec<&str> = audit["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "authenticate")
        .filter_map(|r| r["errorCode"].as_str())
        .collect();
    for code in [
        "AuthenticationFailed",
        "ExpiredAuthenticationToken",
        "InvalidAuthenticationTokenAudience",
        "InvalidAuthenticationTokenTenant",
        "InvalidAuthenticationToken",
    ] {
        assert!(codes.contains(&code), "{code} not audited: {codes:?}");
    }
    drop(replica);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_authorization_sdk_manages_role_assignments() {
    let python = crate::sdk::venv_with("sdk-venv-authorization-4.0.0", &[SDK]).await;
    let env = env(Backend::Postgres).await;
    let mock = env.mock.url.clone();
    let replica = env.spawn_with(jwt(&mock)).await;
    let bob = post(
        &format!("{mock}/admin/applications"),
        json!({"displayName": "bob"}),
    )
    .await;
    let run_id = env.token.trim_start_matches("test-")[..10].to_string();
    let mut command = Command::new(&python);
    command
        .arg(SCRIPT)
        .args([
            replica.url.as_str(),
            &mock,
            demo::TENANT_ID,
            demo::SUBSCRIPTION_ID,
            &run_id,
            demo::CLIENT_ID,
            demo::CLIENT_SECRET,
            bob["clientId"].as_str().unwrap(),
            bob["clientSecret"].as_str().unwrap(),
            bob["objectId"].as_str().unwrap(),
        ])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("the SDK script finished in time")
        .expect("run the SDK script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("--- azure-mgmt-authorization ---\n{stdout}");
    assert!(
        output.status.success(),
        "the SDK script failed\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Every write the script made and every refusal it met is in the audit trail.
    let owner = token(&mock, demo::CLIENT_ID, demo::CLIENT_SECRET).await;
    let (status, audit, _) = get(
        &format!("{}/admin/audit?limit=1000", replica.url),
        Some(&owner),
    )
    .await;
    assert_eq!(status, 200);
    let records = audit["value"].as_array().unwrap();
    let count = |principal: &str, action: &str, outcome: &str| {
        records
            .iter()
            .filter(|r| {
                r["principalId"] == principal && r["action"] == action && r["outcome"] == outcome
            })
            .count()
    };
    let bob_oid = bob["objectId"].as_str().unwrap();
    let write = "Microsoft.Authorization/roleAssignments/write";
    let delete = "Microsoft.Authorization/roleAssignments/delete";
    assert_eq!(
        count(demo::CLIENT_OBJECT_ID, write, "accepted"),
        2,
        "create and its replay"
    );
    assert_eq!(
        count(demo::CLIENT_OBJECT_ID, write, "failed"),
        1,
        "the duplicate (409)"
    );
    assert_eq!(
        count(demo::CLIENT_OBJECT_ID, delete, "accepted"),
        2,
        "delete, then the 204"
    );
    assert_eq!(count(bob_oid, write, "refused"), 1);
    assert_eq!(count(bob_oid, delete, "refused"), 1);
    drop(replica);
    env.teardown().await;
}
