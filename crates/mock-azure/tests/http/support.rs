//! Test harness: spawns a mock on `127.0.0.1:0` and offers small request helpers.

use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use tether_mock_azure::{Config, MockAzure, demo};
use tokio::sync::oneshot;

/// A bearer token the test config accepts without the token endpoint.
pub const TEST_TOKEN: &str = "test-accepted-token";
/// The api-version the helpers append.
pub const API_VERSION: &str = "2024-08-01";

/// A running mock; shut down when dropped.
pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub mock: MockAzure,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestServer {
    /// The demo seed, plus [`TEST_TOKEN`] as an accepted token.
    pub async fn demo() -> Self {
        let mut config = Config::demo();
        config.accepted_tokens.push(TEST_TOKEN.to_owned());
        Self::start(config).await
    }

    pub async fn start(config: Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mock = MockAzure::new(config);
        let (tx, rx) = oneshot::channel::<()>();
        let server = mock.clone();
        tokio::spawn(async move {
            server
                .serve(listener, async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            mock,
            shutdown: Some(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An authenticated ARM request with `api-version` appended.
    pub fn arm(&self, method: Method, path: &str) -> RequestBuilder {
        let sep = if path.contains('?') { '&' } else { '?' };
        self.client
            .request(
                method,
                self.url(&format!("{path}{sep}api-version={API_VERSION}")),
            )
            .bearer_auth(TEST_TOKEN)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.arm(Method::GET, path).send().await.unwrap()
    }

    pub async fn put(&self, path: &str, body: Value) -> Response {
        self.arm(Method::PUT, path)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn patch(&self, path: &str, body: Value) -> Response {
        self.arm(Method::PATCH, path)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// An ARM POST (an action) with an optional JSON body.
    pub async fn post(&self, path: &str, body: Option<Value>) -> Response {
        let request = self.arm(Method::POST, path);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        request.send().await.unwrap()
    }

    /// A GET with another bearer token.
    pub async fn get_with(&self, path: &str, token: &str) -> Response {
        let sep = if path.contains('?') { '&' } else { '?' };
        self.client
            .get(self.url(&format!("{path}{sep}api-version={API_VERSION}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// The issuer of the tokens this server signs.
    pub fn issuer(&self) -> String {
        format!("{}/{}/v2.0", self.base, demo::TENANT_ID)
    }

    pub async fn applications_len(&self) -> usize {
        self.admin_get("/admin/applications").await["value"]
            .as_array()
            .unwrap()
            .len()
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.arm(Method::DELETE, path).send().await.unwrap()
    }

    /// Requests a token for the demo client.
    pub async fn token_response(&self, tenant: &str, client_id: &str, secret: &str) -> Response {
        self.client
            .post(self.url(&format!("/{tenant}/oauth2/v2.0/token")))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
                ("scope", "https://management.azure.com/.default"),
            ])
            .send()
            .await
            .unwrap()
    }

    pub async fn token(&self) -> String {
        let response = self
            .token_response(demo::TENANT_ID, demo::CLIENT_ID, demo::CLIENT_SECRET)
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Adds a fault rule and returns its id.
    pub async fn add_fault(&self, rule: Value) -> u64 {
        let response = self
            .client
            .post(self.url("/admin/faults"))
            .json(&rule)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        json(response).await["id"].as_u64().unwrap()
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        json(response).await
    }

    pub async fn calls(&self) -> Vec<Value> {
        self.admin_get("/admin/calls").await["calls"]
            .as_array()
            .unwrap()
            .clone()
    }

    pub async fn state(&self) -> Value {
        self.admin_get("/admin/state").await["resources"].clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn json(response: Response) -> Value {
    response.json().await.unwrap()
}

/// Asserts an ARM error response and returns its body.
pub async fn expect_error(response: Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status, "unexpected status");
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    let body = json(response).await;
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(body["error"]["message"].is_string());
    body
}

/// Checks a 202 with the operation headers and returns the (Azure-AsyncOperation, Location)
/// URLs.
pub fn accepted(response: &Response) -> (String, String) {
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["retry-after"], "1");
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
    (header("azure-asyncoperation"), header("location"))
}

/// `{RESOURCE_GROUP_ID}/providers/{rest}`.
pub fn in_demo_rg(rest: &str) -> String {
    format!("{}/providers/{rest}", demo::RESOURCE_GROUP_ID)
}
