//! The real [`RegionProbe`]: a deep check of the active region's replicas
//! (`GET /readyz?role=active`)
//! followed by the synthetic user journey through the public HTTP API — create, get,
//! validate, update and delete one probe connection on probe resources — authenticated
//! with a bearer token from an OAuth2 client-credentials endpoint (the mock backend's in
//! the local topology, Entra ID's in a real one).
//!
//! The journey is Ok only when every step succeeded and every long-running operation
//! ended `Succeeded`. Operation status URLs are followed on the replica that answered (their
//! path and query, not their host: the host names the public DNS name, which points at the
//! region the prober may be judging as dead). The shell bounds a whole probe by
//! [`crate::probe::ShellConfig::probe_timeout`]; polling here is bounded on its own too.

use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::probe::{ProbeError, RegionProbe};

/// The journey's settings (`[probe.journey]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JourneyConfig {
    /// Base URLs of the active region's replicas (`http://127.0.0.11:25080`), 1 to 16.
    pub replicas: Vec<String>,
    /// The OAuth2 token endpoint (client credentials).
    pub token_url: String,
    /// The prober's client id.
    pub client_id: String,
    /// Its secret.
    pub client_secret: SecretString,
    /// The scope asked for (default ARM's).
    #[serde(default = "default_scope")]
    pub scope: String,
    /// The probe connection's source resource id.
    pub source_id: String,
    /// Its target resource id (a database the secret-auth connection points at).
    pub target_id: String,
    /// The probe connection's name (default `tether-probe`).
    #[serde(default = "default_connection_name")]
    pub connection_name: String,
    /// The api-version the journey speaks (default `2022-05-01`).
    #[serde(default = "default_api_version")]
    pub api_version: String,
}

fn default_scope() -> String {
    "https://management.azure.com/.default".into()
}
fn default_connection_name() -> String {
    "tether-probe".into()
}
fn default_api_version() -> String {
    "2022-05-01".into()
}

/// Most status polls of one operation (at [`POLL_EVERY`], a bound of its own besides the
/// shell's probe timeout).
const MAX_POLLS: u32 = 600;
/// Time between status polls.
const POLL_EVERY: Duration = Duration::from_millis(25);
/// A token is renewed this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// The deep check plus the synthetic journey, over HTTP.
pub struct HttpJourney {
    config: JourneyConfig,
    http: reqwest::Client,
    token: Mutex<Option<(String, Instant)>>,
}

fn failed(step: &'static str, message: impl Into<String>) -> ProbeError {
    ProbeError::Journey {
        step,
        message: message.into(),
    }
}

impl HttpJourney {
    /// A journey whose every HTTP request is bounded by `request_timeout`.
    pub fn new(config: JourneyConfig, request_timeout: Duration) -> Result<Self, ProbeError> {
        if config.replicas.is_empty() || config.replicas.len() > 16 {
            return Err(failed("config", "give 1 to 16 replica URLs"));
        }
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(request_timeout)
            .build()
            .map_err(|e| failed("config", format!("http client: {e}")))?;
        Ok(Self {
            config,
            http,
            token: Mutex::new(None),
        })
    }

    /// The first replica whose `/readyz?role=active` answers 200: it leads, its database is
    /// a primary that took a heartbeat write, its saga loop runs (all are asked at once).
    async fn ready_replica(&self) -> Result<String, ProbeError> {
        let checks = self.config.replicas.iter().map(|base| async move {
            let url = format!("{}/readyz?role=active", base.trim_end_matches('/'));
            match self.http.get(&url).send().await {
                Ok(r) if r.status().is_success() => Ok(base.trim_end_matches('/').to_string()),
                Ok(r) => Err(format!("{base}: {}", r.status())),
                Err(e) => Err(format!("{base}: {}", reqwest_reason(&e))),
            }
        });
        let results = futures_util::future::join_all(checks).await;
        let mut reasons = Vec::new();
        for result in results {
            match result {
                Ok(base) => return Ok(base),
                Err(reason) => reasons.push(reason),
            }
        }
        Err(failed("readyz", reasons.join("; ")))
    }

    async fn bearer(&self) -> Result<String, ProbeError> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        #[derive(Deserialize)]
        struct TokenReply {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let reply = self
            .http
            .post(&self.config.token_url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.config.client_id.as_str()),
                ("client_secret", self.config.client_secret.expose_secret()),
                ("scope", self.config.scope.as_str()),
            ])
            .send()
            .await
            .map_err(|e| failed("token", reqwest_reason(&e)))?;
        if !reply.status().is_success() {
            return Err(failed("token", format!("status {}", reply.status())));
        }
        let reply: TokenReply = reply
            .json()
            .await
            .map_err(|e| failed("token", reqwest_reason(&e)))?;
        let lifetime = Duration::from_secs(reply.expires_in.unwrap_or(300).min(86_400));
        let until = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
        *cached = Some((reply.access_token.clone(), until));
        Ok(reply.access_token)
    }

    /// One call; a `401` drops the cached token (the next probe gets a new one).
    async fn call(
        &self,
        step: &'static str,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<(reqwest::StatusCode, Option<String>, Value), ProbeError> {
        let token = self.bearer().await?;
        let mut request = self.http.request(method, url).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let reply = request
            .send()
            .await
            .map_err(|e| failed(step, reqwest_reason(&e)))?;
        let status = reply.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            *self.token.lock().await = None;
        }
        let operation = reply
            .headers()
            .get("azure-asyncoperation")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = reply
            .text()
            .await
            .map_err(|e| failed(step, reqwest_reason(&e)))?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok((status, operation, body))
    }

    /// Follows a long-running operation on `base` until it ends; Ok only if it succeeded.
    async fn finish(
        &self,
        step: &'static str,
        base: &str,
        operation: Option<String>,
    ) -> Result<Value, ProbeError> {
        let Some(operation) = operation else {
            return Ok(Value::Null);
        };
        let url = rebase(base, &operation).ok_or_else(|| failed(step, "bad status url"))?;
        for _ in 0..MAX_POLLS {
            let (status, _, body) = self.call(step, reqwest::Method::GET, &url, None).await?;
            if !status.is_success() {
                return Err(failed(step, format!("status poll answered {status}")));
            }
            match body["status"].as_str() {
                Some("Succeeded") => return Ok(body),
                Some("Failed" | "Canceled") => {
                    return Err(failed(step, format!("operation ended {}", body["status"])));
                }
                _ => tokio::time::sleep(POLL_EVERY).await,
            }
        }
        Err(failed(step, "operation did not finish"))
    }

    /// The journey on one replica.
    async fn journey(&self, base: &str) -> Result<(), ProbeError> {
        use reqwest::Method;
        let c = &self.config;
        let linker = format!(
            "{base}{}/providers/Microsoft.ServiceLinker/linkers/{}",
            c.source_id, c.connection_name
        );
        let url = |suffix: &str| format!("{linker}{suffix}?api-version={}", c.api_version);
        let properties = |password: &str| {
            json!({"properties": {
                "targetService": {"type": "AzureResource", "id": c.target_id},
                "authInfo": {"authType": "secret", "name": "probeuser",
                             "secretInfo": {"secretType": "rawValue", "value": password}},
                "clientType": "python",
            }})
        };
        let expect = |step, status: reqwest::StatusCode, body: &Value| {
            if status.is_success() {
                Ok(())
            } else {
                Err(failed(
                    step,
                    format!("{status} {}", body["error"]["code"].as_str().unwrap_or("")),
                ))
            }
        };

        let (status, op, body) = self
            .call(
                "create",
                Method::PUT,
                &url(""),
                Some(&properties("probe-1")),
            )
            .await?;
        expect("create", status, &body)?;
        self.finish("create", base, op).await?;

        let (status, _, body) = self.call("get", Method::GET, &url(""), None).await?;
        expect("get", status, &body)?;
        if body["properties"]["provisioningState"] != "Succeeded" {
            return Err(failed("get", "the connection is not provisioned"));
        }

        let (status, op, body) = self
            .call("validate", Method::POST, &url("/validateLinker"), None)
            .await?;
        expect("validate", status, &body)?;
        self.finish("validate", base, op).await?;

        let (status, op, body) = self
            .call(
                "update",
                Method::PATCH,
                &url(""),
                Some(&properties("probe-2")),
            )
            .await?;
        expect("update", status, &body)?;
        self.finish("update", base, op).await?;

        let (status, op, body) = self.call("delete", Method::DELETE, &url(""), None).await?;
        expect("delete", status, &body)?;
        self.finish("delete", base, op).await?;
        Ok(())
    }
}

#[async_trait]
impl RegionProbe for HttpJourney {
    async fn probe(&self) -> Result<(), ProbeError> {
        let base = self.ready_replica().await?;
        self.journey(&base).await
    }
}

/// `base` followed by the path and query of `url`.
fn rebase(base: &str, url: &str) -> Option<String> {
    let url = reqwest::Url::parse(url).ok()?;
    let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
    Some(format!("{base}{}{query}", url.path()))
}

/// A short reason for a client error (its chain, without the URL's query).
fn reqwest_reason(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_decode() {
        "bad body"
    } else {
        "request failed"
    };
    match error.status() {
        Some(status) => format!("{kind} ({status})"),
        None => kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_urls_are_followed_on_the_replica_that_answered() {
        assert_eq!(
            rebase(
                "http://127.0.0.11:25080",
                "http://api.tether.test:25080/subscriptions/s/providers/Microsoft.ServiceLinker/locations/westus/operationStatuses/x?api-version=2022-05-01"
            )
            .unwrap(),
            "http://127.0.0.11:25080/subscriptions/s/providers/Microsoft.ServiceLinker/locations/westus/operationStatuses/x?api-version=2022-05-01"
        );
        assert_eq!(rebase("http://b", "not a url"), None);
    }
}
