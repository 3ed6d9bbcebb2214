//! Token endpoint (JWTs checked against the JWKS), OpenID metadata, applications, minted and
//! rotated tokens, bearer checks, api-version rule, request-id headers, unknown routes.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::Method;
use serde_json::{Value, json};
use tether_mock_azure::demo;

use crate::support::{API_VERSION, TestServer, expect_error, json};

/// Verifies a token with the keys of the mock's JWKS (RS256, issuer, audience, expiry) and
/// returns its claims and `kid`.
async fn verify(server: &TestServer, token: &str, audience: &str) -> (Value, String) {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let kid = header.kid.unwrap();
    let jwks = server
        .admin_get(&format!("/{}/discovery/v2.0/keys", demo::TENANT_ID))
        .await;
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("kid {kid} is not in {jwks}"));
    assert_eq!(jwk["kty"], "RSA");
    assert_eq!(jwk["use"], "sig");
    assert_eq!(jwk["alg"], "RS256");
    let key =
        DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap())
            .unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = 0;
    validation.set_audience(&[audience]);
    validation.set_issuer(&[server.issuer()]);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Value>(token, &key, &validation).unwrap();
    (data.claims, kid)
}

#[tokio::test]
async fn tokens_are_rs256_jwts_with_entra_v2_app_claims() {
    let server = TestServer::demo().await;
    let before = chrono::Utc::now().timestamp();
    let token = server.token().await;
    let (claims, _) = verify(&server, &token, "https://management.azure.com").await;
    assert_eq!(claims["iss"], server.issuer());
    assert_eq!(claims["tid"], demo::TENANT_ID);
    assert_eq!(claims["appid"], demo::CLIENT_ID);
    assert_eq!(claims["azp"], demo::CLIENT_ID);
    assert_eq!(claims["oid"], demo::CLIENT_OBJECT_ID);
    assert_eq!(claims["sub"], demo::CLIENT_OBJECT_ID);
    assert_eq!(claims["idtyp"], "app");
    assert_eq!(claims["ver"], "2.0");
    let iat = claims["iat"].as_i64().unwrap();
    assert!(iat >= before && iat <= chrono::Utc::now().timestamp());
    assert_eq!(claims["nbf"].as_i64().unwrap(), iat);
    assert_eq!(claims["exp"].as_i64().unwrap(), iat + 3599);
    let again = server.token().await;
    let (other, _) = verify(&server, &again, "https://management.azure.com").await;
    assert_ne!(other["jti"], claims["jti"], "every token gets its own id");
    assert_eq!(other["uti"], other["jti"]);

    // Other audiences come from the scope, minus `/.default`.
    let response = server
        .client
        .post(server.url(&format!("/{}/oauth2/v2.0/token", demo::TENANT_ID)))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", demo::CLIENT_ID),
            ("client_secret", demo::CLIENT_SECRET),
            ("scope", "api://tether/.default"),
        ])
        .send()
        .await
        .unwrap();
    let token = json(response).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    verify(&server, &token, "api://tether").await;
    // ... and ARM refuses a token for another audience.
    let response = server.get_with(demo::RESOURCE_GROUP_ID, &token).await;
    expect_error(response, 401, "InvalidAuthenticationTokenAudience").await;
}

#[tokio::test]
async fn openid_metadata_points_at_the_keys_and_the_token_endpoint() {
    let server = TestServer::demo().await;
    let config = server
        .admin_get(&format!(
            "/{}/v2.0/.well-known/openid-configuration",
            demo::TENANT_ID
        ))
        .await;
    assert_eq!(config["issuer"], server.issuer());
    assert_eq!(
        config["jwks_uri"],
        server.url(&format!("/{}/discovery/v2.0/keys", demo::TENANT_ID))
    );
    assert_eq!(
        config["token_endpoint"],
        server.url(&format!("/{}/oauth2/v2.0/token", demo::TENANT_ID))
    );
    assert_eq!(
        config["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );
    assert_eq!(server.issuer(), server.mock.issuer(&server.base));
    assert_eq!(config["jwks_uri"], server.mock.jwks_uri(&server.base));
    let response = server
        .client
        .get(
            server
                .url("/bbbbbbbb-0000-4000-8000-000000000001/v2.0/.well-known/openid-configuration"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(json(response).await["error"], "invalid_tenant");
}

#[tokio::test]
async fn registered_applications_get_tokens_with_their_object_id() {
    let server = TestServer::demo().await;
    let response = server
        .client
        .post(server.url("/admin/applications"))
        .json(&json!({"displayName": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let alice = json(response).await;
    assert_eq!(alice["displayName"], "alice");
    assert_eq!(alice["tenantId"], demo::TENANT_ID);
    let client_id = alice["clientId"].as_str().unwrap();
    let secret = alice["clientSecret"].as_str().unwrap();
    let response = server
        .token_response(demo::TENANT_ID, client_id, secret)
        .await;
    assert_eq!(response.status(), 200);
    let token = json(response).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (claims, _) = verify(&server, &token, "https://management.azure.com").await;
    assert_eq!(claims["oid"], alice["objectId"]);
    assert_eq!(claims["appid"], client_id);
    assert_eq!(
        server
            .get_with(demo::RESOURCE_GROUP_ID, &token)
            .await
            .status(),
        200
    );

    // Chosen ids, duplicates, and the listing (which never shows secrets).
    let chosen = json!({"displayName": "bob", "clientId": "bob-app", "clientSecret": "bob-secret"});
    let response = server
        .client
        .post(server.url("/admin/applications"))
        .json(&chosen)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let response = server
        .client
        .post(server.url("/admin/applications"))
        .json(&json!({"displayName": "bob again", "clientId": "BOB-APP"}))
        .send()
        .await
        .unwrap();
    expect_error(response, 409, "ApplicationExists").await;
    let response = server
        .client
        .post(server.url("/admin/applications"))
        .json(&json!({"displayName": ""}))
        .send()
        .await
        .unwrap();
    expect_error(response, 400, "InvalidApplication").await;
    assert_eq!(
        server
            .token_response(demo::TENANT_ID, "bob-app", "bob-secret")
            .await
            .status(),
        200
    );
    let listed = server.admin_get("/admin/applications").await;
    let listed = listed["value"].as_array().unwrap();
    let ids: Vec<&str> = listed
        .iter()
        .map(|a| a["clientId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![demo::CLIENT_ID, client_id, "bob-app"]);
    assert_eq!(listed[0]["objectId"], demo::CLIENT_OBJECT_ID);
    let text = serde_json::to_string(listed).unwrap();
    assert!(
        !text.contains("bob-secret")
            && !text.contains(secret)
            && !text.contains(demo::CLIENT_SECRET)
    );

    // Registered applications survive a reset, like issued tokens.
    server
        .client
        .post(server.url("/admin/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(server.applications_len().await, 3);
}

#[tokio::test]
async fn minted_tokens_cover_expired_early_and_odd_tokens() {
    let server = &TestServer::demo().await;
    let mint = |body: Value| async move {
        let response = server
            .client
            .post(server.url("/admin/tokens"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        json(response).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let ok = mint(json!({"clientId": demo::CLIENT_ID, "extraClaims": {"roles": ["x"]}})).await;
    let (claims, _) = verify(server, &ok, "https://management.azure.com").await;
    assert_eq!(claims["roles"], json!(["x"]));
    assert_eq!(
        server.get_with(demo::RESOURCE_GROUP_ID, &ok).await.status(),
        200
    );

    let expired = mint(json!({"clientId": demo::CLIENT_ID, "lifetimeSecs": -10})).await;
    let response = server.get_with(demo::RESOURCE_GROUP_ID, &expired).await;
    expect_error(response, 401, "ExpiredAuthenticationToken").await;

    let early = mint(json!({"clientId": demo::CLIENT_ID, "notBeforeSecs": 600})).await;
    let response = server.get_with(demo::RESOURCE_GROUP_ID, &early).await;
    expect_error(response, 401, "InvalidAuthenticationToken").await;

    let other_tenant = mint(json!({"clientId": demo::CLIENT_ID,
        "extraClaims": {"iss": "http://elsewhere/cccccccc-0000-4000-8000-000000000001/v2.0"}}))
    .await;
    let response = server
        .get_with(demo::RESOURCE_GROUP_ID, &other_tenant)
        .await;
    expect_error(response, 401, "InvalidAuthenticationTokenTenant").await;

    let own_audience = mint(json!({"clientId": demo::CLIENT_ID, "audience": server.base})).await;
    assert_eq!(
        server
            .get_with(demo::RESOURCE_GROUP_ID, &own_audience)
            .await
            .status(),
        200
    );

    // A tampered token fails its signature check.
    let mut parts: Vec<String> = ok.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].chars().rev().collect();
    let response = server
        .get_with(demo::RESOURCE_GROUP_ID, &parts.join("."))
        .await;
    expect_error(response, 401, "InvalidAuthenticationToken").await;

    let response = server
        .client
        .post(server.url("/admin/tokens"))
        .json(&json!({"clientId": "nobody"}))
        .send()
        .await
        .unwrap();
    expect_error(response, 404, "ApplicationNotFound").await;

    // The in-process API signs the same way.
    let token = server
        .mock
        .mint_token(
            &server.base,
            demo::CLIENT_ID,
            "api://tether",
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();
    let (claims, _) = verify(server, &token, "api://tether").await;
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        60
    );
}

#[tokio::test]
async fn rotation_keeps_or_drops_the_old_key() {
    let server = &TestServer::demo().await;
    let old = server.token().await;
    let (_, old_kid) = verify(server, &old, "https://management.azure.com").await;
    let rotate = |keep_old: bool| async move {
        let response = server
            .client
            .post(server.url("/admin/signing-keys/rotate"))
            .json(&json!({ "keepOld": keep_old }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        json(response).await["kid"].as_str().unwrap().to_owned()
    };
    let kids = |jwks: Value| -> Vec<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    let jwks_path = format!("/{}/discovery/v2.0/keys", demo::TENANT_ID);

    let second_kid = rotate(true).await;
    assert_eq!(
        kids(server.admin_get(&jwks_path).await),
        vec![second_kid.clone(), old_kid.clone()]
    );
    let new = server.token().await;
    let (_, kid) = verify(server, &new, "https://management.azure.com").await;
    assert_eq!(kid, second_kid, "new tokens use the new key");
    assert_eq!(
        server
            .get_with(demo::RESOURCE_GROUP_ID, &old)
            .await
            .status(),
        200
    );

    let third_kid = rotate(false).await;
    assert_eq!(kids(server.admin_get(&jwks_path).await), vec![third_kid]);
    for token in [&old, &new] {
        let response = server.get_with(demo::RESOURCE_GROUP_ID, token).await;
        expect_error(response, 401, "InvalidAuthenticationToken").await;
    }
    let fresh = server.token().await;
    assert_eq!(
        server
            .get_with(demo::RESOURCE_GROUP_ID, &fresh)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn client_credentials_token_is_accepted_on_arm_routes() {
    let server = TestServer::demo().await;
    let response = server
        .token_response(demo::TENANT_ID, demo::CLIENT_ID, demo::CLIENT_SECRET)
        .await;
    assert_eq!(response.status(), 200);
    let body = json(response).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT");

    let url = server.url(&format!(
        "{}?api-version={API_VERSION}",
        demo::RESOURCE_GROUP_ID
    ));
    let response = server
        .client
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await["id"], demo::RESOURCE_GROUP_ID);

    // Revoked tokens stop working; configured tokens do not depend on the token endpoint.
    let revoked = server
        .client
        .delete(server.url("/admin/tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    let response = server
        .client
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    expect_error(response, 401, "InvalidAuthenticationToken").await;
    assert_eq!(server.get(demo::RESOURCE_GROUP_ID).await.status(), 200);
    // Tokens issued after the revocation work.
    let fresh = server.token().await;
    assert_eq!(
        server
            .get_with(demo::RESOURCE_GROUP_ID, &fresh)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn token_endpoint_rejects_bad_requests_like_entra_id() {
    let server = TestServer::demo().await;
    let cases = [
        (
            "bbbbbbbb-0000-4000-8000-000000000001",
            demo::CLIENT_ID,
            demo::CLIENT_SECRET,
            400,
            "invalid_request",
        ),
        (
            demo::TENANT_ID,
            "someone-else",
            demo::CLIENT_SECRET,
            400,
            "unauthorized_client",
        ),
        (
            demo::TENANT_ID,
            demo::CLIENT_ID,
            "wrong",
            401,
            "invalid_client",
        ),
    ];
    for (tenant, client, secret, status, error) in cases {
        let response = server.token_response(tenant, client, secret).await;
        assert_eq!(response.status(), status, "{tenant} {client}");
        let body: Value = json(response).await;
        assert_eq!(body["error"], error);
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .starts_with("AADSTS")
        );
        assert!(!body.to_string().contains(demo::CLIENT_SECRET));
    }
    let response = server
        .client
        .post(server.url(&format!("/{}/oauth2/v2.0/token", demo::TENANT_ID)))
        .form(&[("grant_type", "password"), ("client_id", demo::CLIENT_ID)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(json(response).await["error"], "unsupported_grant_type");
    let response = server
        .client
        .post(server.url(&format!("/{}/oauth2/v2.0/token", demo::TENANT_ID)))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", demo::CLIENT_ID),
            ("client_secret", demo::CLIENT_SECRET),
            ("scope", "https://management.azure.com"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(json(response).await["error"], "invalid_scope");
}

#[tokio::test]
async fn arm_routes_require_a_bearer_token() {
    let server = TestServer::demo().await;
    let url = server.url(&format!("{}?api-version={API_VERSION}", demo::WEB_APP_ID));
    let response = server.client.get(&url).send().await.unwrap();
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    expect_error(response, 401, "AuthenticationFailed").await;

    let response = server
        .client
        .get(&url)
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("www-authenticate"));
    expect_error(response, 401, "InvalidAuthenticationToken").await;

    let response = server
        .client
        .get(&url)
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    expect_error(response, 401, "AuthenticationFailed").await;
}

#[tokio::test]
async fn arm_routes_require_an_api_version() {
    let server = TestServer::demo().await;
    for query in ["", "?api-version=", "?other=1"] {
        let response = server
            .client
            .get(server.url(&format!("{}{query}", demo::WEB_APP_ID)))
            .bearer_auth(crate::support::TEST_TOKEN)
            .send()
            .await
            .unwrap();
        let body = expect_error(response, 400, "MissingApiVersionParameter").await;
        assert_eq!(
            body["error"]["message"],
            "The api-version query parameter (?api-version=) is required for all requests."
        );
    }
}

#[tokio::test]
async fn responses_carry_request_ids_and_echo_correlation_ids() {
    let server = TestServer::demo().await;
    let first = server
        .arm(Method::GET, demo::WEB_APP_ID)
        .header("x-ms-correlation-request-id", "corr-1")
        .send()
        .await
        .unwrap();
    let second = server.get("/subscriptions/nope").await;
    let id = |r: &reqwest::Response| r.headers()["x-ms-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id(&first), id(&second));
    assert!(uuid_like(&id(&first)));
    assert_eq!(first.headers()["x-ms-correlation-request-id"], "corr-1");
    assert!(!second.headers().contains_key("x-ms-correlation-request-id"));
    expect_error(second, 400, "InvalidSubscriptionId").await;
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

#[tokio::test]
async fn unknown_paths_are_arm_not_found() {
    let server = TestServer::demo().await;
    let response = server
        .client
        .get(server.url("/nothing/here"))
        .send()
        .await
        .unwrap();
    expect_error(response, 404, "NotFound").await;
    let path = format!("/subscriptions/{}/whatever", demo::SUBSCRIPTION_ID);
    expect_error(server.get(&path).await, 404, "NotFound").await;
    let response = server
        .client
        .get(server.url("/admin/nope"))
        .send()
        .await
        .unwrap();
    expect_error(response, 404, "NotFound").await;
}

#[tokio::test]
async fn the_mock_itself_is_an_accepted_audience_and_its_keys_can_be_faulted() {
    let server = TestServer::demo().await;
    // What a client derives from its endpoint: `{endpoint}/.default`.
    let response = server
        .client
        .post(server.url(&format!("/{}/oauth2/v2.0/token", demo::TENANT_ID)))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", demo::CLIENT_ID),
            ("client_secret", demo::CLIENT_SECRET),
            ("scope", &format!("{}/.default", server.base)),
        ])
        .send()
        .await
        .unwrap();
    let token = json(response).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (claims, _) = verify(&server, &token, &server.base).await;
    assert_eq!(claims["aud"], server.base);
    assert_eq!(
        server
            .get_with(demo::RESOURCE_GROUP_ID, &token)
            .await
            .status(),
        200
    );

    let keys = format!("/{}/discovery/v2.0/keys", demo::TENANT_ID);
    server
        .add_fault(json!({"method": "GET", "path": keys, "count": 1,
            "action": {"fail": {"status": 503}}}))
        .await;
    let response = server.client.get(server.url(&keys)).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(json(response).await["error"], "temporarily_unavailable");
    assert_eq!(
        server.admin_get(&keys).await["keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
