//! Token endpoint, bearer checks, api-version rule, request-id headers, unknown routes.

use reqwest::Method;
use serde_json::Value;
use tether_mock_azure::demo;

use crate::support::{API_VERSION, TestServer, expect_error, json};

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
