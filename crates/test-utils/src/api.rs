//! A client of Tether's API for tests. Every response is checked: against the OpenAPI
//! document of the api-version it was requested with (status code and body), for ARM's
//! headers, and for leaks of any secret a test sent earlier.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::openapi::{API_VERSIONS, OpenApi};

/// The document of an api-version, loaded once per test binary. Tether writes one value into
/// an extensible enum: `vNetSolution.type: firewall` (its explicit firewall option).
pub fn spec(version: &str) -> &'static OpenApi {
    static SPECS: OnceLock<HashMap<&'static str, OpenApi>> = OnceLock::new();
    let specs = SPECS.get_or_init(|| {
        API_VERSIONS
            .iter()
            .map(|v| {
                let api = OpenApi::load(v).expect("load the OpenAPI document");
                (*v, api.allow_extension("vNetSolutionType", "firewall"))
            })
            .collect()
    });
    specs
        .get(version)
        .unwrap_or_else(|| panic!("no OpenAPI document for {version}"))
}

/// A response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// The body as JSON (`null` when empty).
    pub body: Value,
    /// The raw body.
    pub text: String,
}

impl Reply {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The ARM error code of an error response.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

/// A client bound to one replica and one api-version.
#[derive(Clone)]
pub struct Api {
    base: String,
    token: String,
    version: String,
    http: reqwest::Client,
    secrets: Arc<Mutex<Vec<String>>>,
}

impl Api {
    /// A client of the API at `base`, using api-version 2022-05-01 until told otherwise.
    pub fn new(base: &str, token: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            version: API_VERSIONS[0].to_string(),
            http: reqwest::Client::new(),
            secrets: Arc::default(),
        }
    }

    /// The same client using another api-version.
    pub fn version(&self, version: &str) -> Self {
        Self {
            version: version.to_string(),
            ..self.clone()
        }
    }

    /// The same client (and leak checks) against another base URL.
    pub fn rebased(&self, base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            ..self.clone()
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Remembers a secret; any later response containing it fails the test.
    pub fn forbid(&self, secret: &str) {
        self.secrets.lock().expect("lock").push(secret.to_string());
    }

    /// `METHOD {base}{path}?api-version=…` with an optional JSON body, checked.
    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let url = format!("{}{path}?api-version={}", self.base, self.version);
        self.call_url(method, &url, body).await
    }

    /// A request to an absolute URL (a polling or next link), checked.
    pub async fn call_url(&self, method: &str, url: &str, body: Option<&Value>) -> Reply {
        self.try_call_url(method, url, body)
            .await
            .expect("the API answers")
    }

    /// Like [`Api::call`], but `None` when the server is gone before it answers (it was
    /// killed, or crashed at a crash point): the request may or may not have been accepted.
    pub async fn try_call(&self, method: &str, path: &str, body: Option<&Value>) -> Option<Reply> {
        let url = format!("{}{path}?api-version={}", self.base, self.version);
        self.try_call_url(method, &url, body).await
    }

    /// `GET {base}{path_and_query}` (a path with its own query, like a status URL's), checked;
    /// `None` when the server does not answer.
    pub async fn try_get(&self, path_and_query: &str) -> Option<Reply> {
        let url = format!("{}{path_and_query}", self.base);
        self.try_call_url("GET", &url, None).await
    }

    async fn try_call_url(&self, method: &str, url: &str, body: Option<&Value>) -> Option<Reply> {
        let method: Method = method.parse().expect("an HTTP method");
        let mut request = self
            .http
            .request(method.clone(), url)
            .bearer_auth(&self.token);
        if let Some(body) = body {
            for secret in secrets_in(body) {
                self.forbid(&secret);
            }
            request = request.json(body);
        }
        let reply = self.exchange(request).await?;
        self.check(&method, url, &reply);
        Some(reply)
    }

    /// Polls a linker until no operation runs on it and returns its body, or `None` once it is
    /// gone (404).
    pub async fn settled(&self, scope: &str, name: &str, timeout: Duration) -> Option<Value> {
        crate::eventually(timeout, Duration::from_millis(100), async || {
            let reply = self.get_linker(scope, name).await;
            if reply.status == 404 {
                return Ok(None);
            }
            assert_eq!(reply.status, 200, "{}", reply.text);
            let state = reply.body["properties"]["provisioningState"]
                .as_str()
                .unwrap_or_default();
            if matches!(state, "Succeeded" | "Failed" | "Canceled") {
                Ok(Some(reply.body))
            } else {
                Err(format!("linker {name} still {state}"))
            }
        })
        .await
    }

    /// Sends a request built by the test (for malformed requests), with only the leak and
    /// header checks.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        self.exchange(request).await.expect("the API answers")
    }

    /// Sends a request and checks what every answer must satisfy: no leaked secret, an
    /// `x-ms-request-id`, JSON bodies with ARM's content type, ARM error bodies. `None` when
    /// the server does not answer.
    async fn exchange(&self, request: reqwest::RequestBuilder) -> Option<Reply> {
        let response = request.send().await.ok()?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.ok()?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        let reply = Reply {
            status,
            headers,
            body,
            text,
        };
        for secret in self.secrets.lock().expect("lock").iter() {
            assert!(
                !leaks(&reply.text, secret),
                "a response leaked a secret: {}",
                reply.text
            );
        }
        assert!(
            reply.header("x-ms-request-id").is_some(),
            "no x-ms-request-id"
        );
        if !reply.text.is_empty() {
            assert_eq!(
                reply.header("content-type"),
                Some("application/json; charset=utf-8")
            );
            assert!(
                reply.body.is_object(),
                "the body is not a JSON object: {}",
                reply.text
            );
        }
        if reply.status >= 400 {
            assert!(
                reply.body["error"]["code"].is_string()
                    && reply.body["error"]["message"].is_string(),
                "not an ARM error: {}",
                reply.text
            );
        }
        Some(reply)
    }

    /// A request with no credentials.
    pub fn anonymous(&self, method: &str, path_and_query: &str) -> reqwest::RequestBuilder {
        let method: Method = method.parse().expect("an HTTP method");
        self.http
            .request(method, format!("{}{path_and_query}", self.base))
    }

    /// A request with credentials and no checks on its shape.
    pub fn raw(&self, method: &str, path_and_query: &str) -> reqwest::RequestBuilder {
        self.anonymous(method, path_and_query)
            .bearer_auth(&self.token)
    }

    /// Checks a response against the document of the version the URL asked for.
    fn check(&self, method: &Method, url: &str, reply: &Reply) {
        let parsed = reqwest::Url::parse(url).expect("an absolute URL");
        let version = parsed
            .query_pairs()
            .find(|(k, _)| k == "api-version")
            .map(|(_, v)| v.into_owned())
            .filter(|v| API_VERSIONS.contains(&v.as_str()));
        let Some(version) = version else { return };
        let api = spec(&version);
        let path = parsed.path();
        let body = (!reply.text.is_empty()).then_some(&reply.body);
        let result = check_exchange(api, method.as_str(), path, reply.status, body);
        if let Err(violations) = result {
            panic!(
                "{method} {path} ({version}) answered {} with a body the OpenAPI document rejects:\n  {}\nbody: {}",
                reply.status,
                violations.join("\n  "),
                reply.text
            );
        }
    }

    /// The path of a linker.
    pub fn linker_path(scope: &str, name: &str) -> String {
        format!("{scope}/providers/Microsoft.ServiceLinker/linkers/{name}")
    }

    /// PUT a linker with these `properties`.
    pub async fn put_linker(&self, scope: &str, name: &str, properties: Value) -> Reply {
        self.call(
            "PUT",
            &Self::linker_path(scope, name),
            Some(&json!({ "properties": properties })),
        )
        .await
    }

    /// PATCH a linker with these `properties`.
    pub async fn patch_linker(&self, scope: &str, name: &str, properties: Value) -> Reply {
        self.call(
            "PATCH",
            &Self::linker_path(scope, name),
            Some(&json!({ "properties": properties })),
        )
        .await
    }

    /// GET a linker.
    pub async fn get_linker(&self, scope: &str, name: &str) -> Reply {
        self.call("GET", &Self::linker_path(scope, name), None)
            .await
    }

    /// DELETE a linker.
    pub async fn delete_linker(&self, scope: &str, name: &str) -> Reply {
        self.call("DELETE", &Self::linker_path(scope, name), None)
            .await
    }

    /// List the linkers of a scope (first page).
    pub async fn list_linkers(&self, scope: &str) -> Reply {
        self.call(
            "GET",
            &format!("{scope}/providers/Microsoft.ServiceLinker/linkers"),
            None,
        )
        .await
    }

    /// POST `validateLinker`.
    pub async fn validate(&self, scope: &str, name: &str) -> Reply {
        self.call(
            "POST",
            &format!("{}/validateLinker", Self::linker_path(scope, name)),
            None,
        )
        .await
    }

    /// POST `listConfigurations`.
    pub async fn list_configurations(&self, scope: &str, name: &str) -> Reply {
        self.call(
            "POST",
            &format!("{}/listConfigurations", Self::linker_path(scope, name)),
            None,
        )
        .await
    }

    /// Follows an accepted operation's `Azure-AsyncOperation` URL until a terminal status
    /// (polling with a deadline) and returns the final status body.
    pub async fn wait(&self, accepted: &Reply) -> Value {
        let url = accepted
            .header("azure-asyncoperation")
            .unwrap_or_else(|| {
                panic!(
                    "no Azure-AsyncOperation header on {}: {}",
                    accepted.status, accepted.text
                )
            })
            .to_string();
        self.wait_url(&url, Duration::from_secs(60)).await
    }

    /// Polls a status URL until a terminal status or `timeout`.
    pub async fn wait_url(&self, url: &str, timeout: Duration) -> Value {
        crate::eventually(timeout, Duration::from_millis(100), async || {
            let reply = self.call_url("GET", url, None).await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            match reply.body["status"].as_str().unwrap_or_default() {
                "Succeeded" | "Failed" | "Canceled" => Ok(reply.body),
                "InProgress" => {
                    assert!(
                        reply.header("retry-after").is_some()
                            || reply.header("retry-after-ms").is_some(),
                        "no Retry-After nor retry-after-ms while in progress"
                    );
                    Err(format!("the operation did not finish: {}", reply.text))
                }
                other => panic!("unexpected operation status {other:?}"),
            }
        })
        .await
    }
}

/// Checks one response against a document: an operation of the document by its declared
/// responses; an operation status as ARM's `OperationStatusResult` plus `resourceId` and, for a
/// finished validation, its `ValidateResult` under `properties`; a 200 from an operation's
/// `Location` URL (only validations have one with a body) as `ValidateOperationResult`; any
/// other error as an `ErrorResponse`.
pub fn check_exchange(
    api: &OpenApi,
    method: &str,
    path: &str,
    status: u16,
    body: Option<&Value>,
) -> Result<(), Vec<String>> {
    if let Some(op) = api.operation_for(method, path) {
        return api.check_response(&op, status, body);
    }
    let body = body.unwrap_or(&Value::Null);
    if path.contains("/operationResults/") && status == 200 {
        api.check_definition("ValidateOperationResult", body)
    } else if path.contains("/operationStatuses/") && status == 200 {
        let mut status = body.clone();
        let result = status.as_object_mut().and_then(|m| {
            m.remove("resourceId");
            m.remove("properties")
        });
        let mut errors = api
            .check_definition("OperationStatusResult", &status)
            .err()
            .unwrap_or_default();
        if let Some(result) = result {
            errors.extend(
                api.check_definition("ValidateResult", &result)
                    .err()
                    .unwrap_or_default(),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    } else if status >= 400 {
        api.check_definition("ErrorResponse", body)
    } else {
        Ok(())
    }
}

/// The secret values of a request body (`authInfo` secrets).
fn secrets_in(body: &Value) -> Vec<String> {
    let auth = &body["properties"]["authInfo"];
    // A Key Vault secret's URI is not a secret (the API returns it); a raw value is.
    let raw = match auth["secretInfo"]["secretType"].as_str() {
        Some("keyVaultSecretUri") => &Value::Null,
        _ => &auth["secretInfo"]["value"],
    };
    [raw, &auth["secret"], &auth["certificate"]]
        .into_iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// Whether `text` holds `secret`. A secret shorter than [`WHOLE_WORD_BELOW`] characters counts
/// only where it stands as a word of its own (not inside a run of letters, digits, `-` or `_`):
/// a two-letter password such as `pw` occurs by chance in every few dozen random paging tokens,
/// while a leak puts it between delimiters (`password=pw;`, `"pw"`, `:pw@`).
fn leaks(text: &str, secret: &str) -> bool {
    if secret.chars().count() >= WHOLE_WORD_BELOW {
        return text.contains(secret);
    }
    let word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices(secret).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + secret.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

/// Secrets at least this long are looked for anywhere in a response.
const WHOLE_WORD_BELOW: usize = 8;

#[cfg(test)]
mod leak_tests {
    use super::leaks;

    #[test]
    fn short_secrets_count_only_as_words_of_their_own() {
        let token = "AZpTC11hT1I3SfxW6wf8hk3Jf632NC8Jqgxl1VPG8RpwYqkjadYOSMcYAS8UHQ";
        assert!(!leaks(token, "pw"), "inside a paging token");
        for leaked in ["password=pw;", r#"{"password":"pw"}"#, "user:pw@host", "pw"] {
            assert!(leaks(leaked, "pw"), "{leaked}");
        }
        assert!(
            leaks("xxpw-long-secretxx", "pw-long-secret"),
            "long secrets: anywhere"
        );
    }
}
