//! The mock Azure backend, running inside the test process (so it outlives any `tether`
//! process a test kills), with helpers over its admin API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tether_mock_azure::{Config, MockAzure};

/// The audience of ARM tokens (what Tether accepts, as the Azure SDKs ask for it).
pub const ARM_AUDIENCE: &str = "https://management.azure.com";

/// A running mock backend.
pub struct Mock {
    /// Its base URL.
    pub url: String,
    http: reqwest::Client,
    token: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Mock {
    /// Starts the demo-seeded mock on a random port; it also accepts `token` on ARM routes.
    pub async fn start(token: &str) -> Self {
        Self::start_with(token, None).await
    }

    /// Like [`Mock::start`], but holding the resources of a mock state file
    /// (`Config::state_file`, as `tether dev` writes it), which the mock rewrites after every
    /// change: pass a copy.
    pub(crate) async fn start_from_state(token: &str, state_file: &Path) -> Self {
        assert!(
            state_file.is_file(),
            "no state file {}",
            state_file.display()
        );
        Self::start_with(token, Some(state_file.to_path_buf())).await
    }

    async fn start_with(token: &str, state_file: Option<PathBuf>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the mock");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let mut config = Config::demo();
        config.accepted_tokens = vec![token.to_string()];
        config.state_file = state_file;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(MockAzure::new(config).serve(listener, async move {
            let _ = stopped.await;
        }));
        Self {
            url,
            http: reqwest::Client::new(),
            token: token.to_string(),
            _stop: stop,
        }
    }

    /// The issuer of the tokens the mock signs (its token endpoint's tenant).
    pub fn issuer(&self) -> String {
        format!("{}/{}/v2.0", self.url, tether_mock_azure::demo::TENANT_ID)
    }

    /// A JWT the mock signs for the registered application `client_id`, for ARM's audience,
    /// valid for a day.
    pub async fn token(&self, client_id: &str) -> String {
        let body = json!({"clientId": client_id, "audience": ARM_AUDIENCE, "lifetimeSecs": 86_400});
        let minted = self
            .admin(reqwest::Method::POST, "tokens", Some(body))
            .await;
        minted["access_token"]
            .as_str()
            .expect("a minted token")
            .to_string()
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method, format!("{}/admin/{path}", self.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the mock answers");
        let status = response.status();
        let text = response.text().await.expect("a body");
        assert!(status.is_success(), "mock admin {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Every resource by lower-cased id: the backend's whole state.
    pub async fn state(&self) -> BTreeMap<String, Value> {
        let body = self.admin(reqwest::Method::GET, "state", None).await;
        serde_json::from_value(body["resources"].clone()).expect("a resource map")
    }

    /// One resource, if it exists.
    pub async fn resource(&self, id: &str) -> Option<Value> {
        self.state().await.remove(&id.to_ascii_lowercase())
    }

    /// A web app's app settings.
    pub async fn app_settings(&self, site_id: &str) -> BTreeMap<String, String> {
        let settings = self
            .resource(&format!("{site_id}/config/appsettings"))
            .await;
        settings
            .and_then(|s| serde_json::from_value(s["properties"].clone()).ok())
            .unwrap_or_default()
    }

    /// The names of a PostgreSQL server's firewall rules, with their ranges.
    pub async fn firewall_rules(&self, server_id: &str) -> BTreeMap<String, (String, String)> {
        let prefix = format!("{}/firewallrules/", server_id.to_ascii_lowercase());
        self.state()
            .await
            .into_iter()
            .filter(|(id, _)| id.starts_with(&prefix))
            .map(|(_, r)| {
                let text = |k: &str| r["properties"][k].as_str().unwrap_or_default().to_string();
                (
                    r["name"].as_str().unwrap_or_default().to_string(),
                    (text("startIpAddress"), text("endIpAddress")),
                )
            })
            .collect()
    }

    /// Every recorded ARM and token call.
    pub async fn calls(&self) -> Vec<Value> {
        let body = self.admin(reqwest::Method::GET, "calls", None).await;
        body["calls"].as_array().cloned().unwrap_or_default()
    }

    /// Pairs of writes (PUT, PATCH, DELETE) to the same resource whose time spans overlapped.
    /// Sagas that change a resource are serialized — within a replica, across replicas and
    /// across adoptions — so a correct run has none.
    pub async fn overlapping_writes(&self) -> Vec<String> {
        let calls = self.calls().await;
        let time = |c: &Value, k: &str| {
            c[k].as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_micros())
        };
        let writes: Vec<(String, i64, i64, &Value)> = calls
            .iter()
            .filter(|c| matches!(c["method"].as_str(), Some("PUT" | "PATCH" | "DELETE")))
            .filter_map(|c| {
                let path = c["path"].as_str()?.to_ascii_lowercase();
                Some((path, time(c, "startedAt")?, time(c, "finishedAt")?, c))
            })
            .collect();
        let mut overlaps = Vec::new();
        for (i, a) in writes.iter().enumerate() {
            for b in &writes[i + 1..] {
                if a.0 == b.0 && a.1 < b.2 && b.1 < a.2 {
                    overlaps.push(format!(
                        "{} {} by {} overlaps {} by {}",
                        a.3["method"], a.0, a.3["userAgent"], b.3["method"], b.3["userAgent"]
                    ));
                }
            }
        }
        overlaps
    }

    /// Revokes every token the mock issued, so clients must fetch new ones.
    pub async fn revoke_tokens(&self) {
        self.admin(reqwest::Method::DELETE, "tokens", None).await;
    }

    /// Adds a fault rule (see docs/mock-azure.md).
    pub async fn fault(&self, rule: Value) {
        self.admin(reqwest::Method::POST, "faults", Some(rule))
            .await;
    }

    /// Removes every fault rule.
    pub async fn clear_faults(&self) {
        self.admin(reqwest::Method::DELETE, "faults", None).await;
    }

    /// Creates or replaces a resource through ARM, as a user would seed one.
    pub async fn put_resource(&self, id: &str, body: Value) -> Value {
        let response = self
            .http
            .put(format!("{}{id}?api-version=2023-12-01", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("the mock answers");
        assert!(
            response.status().is_success(),
            "seeding {id}: {}",
            response.status()
        );
        response.json().await.unwrap_or(json!(null))
    }
}
