//! `tether-mock-azure`: a real, stateful, in-memory HTTP server that speaks the Azure Resource
//! Manager (ARM) and Entra ID shapes for the resources Tether's adapters manage: sources (App
//! Service and Functions sites, Container Apps, user-assigned identities), targets (PostgreSQL,
//! MySQL, Azure SQL, Storage, Key Vault, Service Bus, Redis, Cosmos DB, App Configuration),
//! `Microsoft.Authorization` role assignments at any scope, a small SQL data plane for database
//! principals, and any other resource stored generically. Its token endpoint issues RS256 JWTs
//! verifiable with its JWKS.
//!
//! It is embedded in-process by `tether dev`, run standalone by `tether mock-azure`, and used by
//! end-to-end tests through its unauthenticated `/admin` API (fault injection, recorded calls,
//! state snapshots, reset, applications, token minting, key rotation). See
//! `docs/mock-azure.md` for the HTTP surface.
//!
//! This crate must never depend on another tether crate: adapters must not be able to tell it
//! from Azure, so it shares no code with them.
//!
//! Module map: `arm` dispatches and routes requests, `resources` holds generic resource
//! semantics, `providers` the per-namespace specifics, `authorization` role assignments and
//! definitions, `dataplane` the SQL data plane, `auth` the Entra ID endpoints and bearer checks,
//! `keys` the signing keys, `directory` the applications, `faults` the fault rules, `admin` the
//! admin API, `state` the backend, `demo` the demo seed.

mod admin;
mod arm;
mod auth;
mod authorization;
mod dataplane;
pub mod demo;
mod directory;
mod error;
mod faults;
mod keys;
mod providers;
mod resources;
mod state;

pub use auth::{MintError, TokenSpec};
pub use directory::{Application, ApplicationSpec, RegisterError};

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use std::path::{Path, PathBuf};

use axum::Router;
use axum::extract::{Request, State as Extract};
use axum::http::{HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::Response;
use serde_json::Value;

use crate::error::new_uuid;
use crate::state::State;

/// How the mock is configured; immutable for the lifetime of a [`MockAzure`].
#[derive(Clone)]
pub struct Config {
    /// The only tenant the token endpoint serves (`POST /{tenant_id}/oauth2/v2.0/token`).
    pub tenant_id: String,
    /// Client credentials the token endpoint accepts. Each is an application whose service
    /// principal object id (`oid` of its tokens) is derived from the tenant and client id, so it
    /// is the same in every run; more can be registered at run time
    /// ([`MockAzure::register_application`]).
    pub clients: Vec<ClientCredential>,
    /// Extra opaque bearer tokens accepted on ARM routes and the data plane besides the mock's
    /// own JWTs (`tether dev` passes its dev token here). They never expire.
    pub accepted_tokens: Vec<String>,
    /// What the backend contains at start and after `POST /admin/reset`.
    pub seed: Seed,
    /// When set, the resources are loaded from this JSON file at start (if it exists) instead
    /// of the seed, and written back after every change (atomically: a temporary file renamed
    /// over it). `tether dev` keeps it in its data directory, so demo resources survive a
    /// restart along with the linkers in its database.
    pub state_file: Option<PathBuf>,
}

impl Config {
    /// The demo tenant and client from [`demo`], with [`Seed::Demo`] and no extra tokens.
    pub fn demo() -> Self {
        Self {
            tenant_id: demo::TENANT_ID.to_owned(),
            clients: vec![ClientCredential {
                client_id: demo::CLIENT_ID.to_owned(),
                client_secret: demo::CLIENT_SECRET.to_owned(),
            }],
            accepted_tokens: Vec::new(),
            seed: Seed::Demo,
            state_file: None,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("tenant_id", &self.tenant_id)
            .field("clients", &self.clients)
            .field(
                "accepted_tokens",
                &format_args!("[{} redacted]", self.accepted_tokens.len()),
            )
            .field("seed", &self.seed)
            .field("state_file", &self.state_file)
            .finish()
    }
}

/// A client-credentials pair accepted by the token endpoint. `Debug` redacts the secret.
#[derive(Clone)]
pub struct ClientCredential {
    /// The application (client) id; compared case-insensitively.
    pub client_id: String,
    /// The client secret; compared exactly.
    pub client_secret: String,
}

impl fmt::Debug for ClientCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredential")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .finish()
    }
}

/// The initial contents of the backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Seed {
    /// No resource groups and no resources.
    #[default]
    Empty,
    /// The resources listed in [`demo`].
    Demo,
}

/// Handle to one mock Azure backend. Cheap to clone; clones share the same state.
#[derive(Clone)]
pub struct MockAzure {
    shared: Arc<Shared>,
}

struct Shared {
    config: Config,
    /// The seeded resources, restored by a reset.
    seeded: BTreeMap<String, Value>,
    /// All mutable state. A std mutex: it is only ever locked inside synchronous code, never
    /// across an `.await`.
    state: Mutex<State>,
    /// Serializes writes of the state file, so a later snapshot is never overwritten by an
    /// earlier one.
    persist: tokio::sync::Mutex<()>,
}

/// The `x-ms-request-id` of the request being handled, set by [`request_ids`].
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub(crate) String);

impl MockAzure {
    /// Creates a backend holding the configured seed, or the contents of the state file when
    /// one is configured and exists. A state file that cannot be read is reported and ignored.
    pub fn new(config: Config) -> Self {
        keys::prewarm();
        let seeded = seed(&config);
        let mut state = State::default();
        state.directory = directory::Directory::new(&config.tenant_id, &config.clients);
        match config.state_file.as_deref().map(load_state) {
            Some(Ok(Some(resources))) => state.resources = resources,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "the mock state file is unreadable; starting from the seed");
                state.resources = seeded.clone();
            }
            Some(Ok(None)) | None => state.resources = seeded.clone(),
        }
        Self {
            shared: Arc::new(Shared {
                config,
                seeded,
                state: Mutex::new(state),
                persist: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The whole HTTP surface: ARM routes, the token endpoint and `/admin`.
    ///
    /// Every response carries a fresh `x-ms-request-id` and echoes `x-ms-correlation-request-id`.
    pub fn router(&self) -> Router {
        Router::new()
            .merge(admin::routes())
            .fallback(arm::handle)
            .layer(middleware::from_fn_with_state(self.clone(), persist))
            .layer(middleware::from_fn(request_ids))
            .with_state(self.clone())
    }

    /// Serves [`Self::router`] on a bound listener until `shutdown` resolves, then finishes the
    /// in-flight requests and returns. Errors only if the listener fails.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// The configuration the backend was created with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Every stored entry keyed by its lower-cased id, as `GET /admin/state` returns it: resource
    /// groups, resources, each site's `.../config/appsettings`, container app revisions, role
    /// assignments, and the internal `{id}/$secret` (keys, secret values) and
    /// `{id}/$principals/{name}` (database users) entries. Deterministic order.
    pub fn snapshot(&self) -> BTreeMap<String, Value> {
        self.lock().resources.clone()
    }

    /// Restores the configured seed exactly as it was made at start (same generated keys and
    /// identity ids) and clears fault rules, recorded calls and pending operations; the
    /// directory, issued tokens and signing keys stay. Same as `POST /admin/reset`.
    pub fn reset(&self) {
        let mut state = self.lock();
        state.clear_for_reset();
        state.resources = self.shared.seeded.clone();
    }

    /// `{base_url}/{tenant}/v2.0`: the issuer (`iss`) of the tokens this mock signs when it is
    /// reached at `base_url` (scheme and authority, e.g. `http://127.0.0.1:8090`).
    pub fn issuer(&self, base_url: &str) -> String {
        auth::issuer(base_url, &self.shared.config.tenant_id)
    }

    /// `{base_url}/{tenant}/discovery/v2.0/keys`: where the signing keys are published.
    pub fn jwks_uri(&self, base_url: &str) -> String {
        format!(
            "{}/{}/discovery/v2.0/keys",
            base_url.trim_end_matches('/'),
            self.shared.config.tenant_id
        )
    }

    /// Registers an application (service principal) that may then get tokens; same as
    /// `POST /admin/applications`. The returned value includes the client secret.
    pub fn register_application(
        &self,
        spec: ApplicationSpec,
    ) -> Result<Application, RegisterError> {
        let tenant = &self.shared.config.tenant_id;
        self.lock().directory.register(tenant, spec)
    }

    /// Every application: the configured clients first, then the registered ones.
    pub fn applications(&self) -> Vec<Application> {
        self.lock().directory.list().to_vec()
    }

    /// Signs an access token for `client_id` with audience `audience`, valid from now for
    /// `lifetime`, as if the mock reached at `base_url` had issued it (see [`Self::issuer`]).
    pub async fn mint_token(
        &self,
        base_url: &str,
        client_id: &str,
        audience: &str,
        lifetime: std::time::Duration,
    ) -> Result<String, MintError> {
        let mut spec = TokenSpec::new(client_id, audience);
        spec.lifetime_secs = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
        self.mint_token_with(base_url, &spec).await
    }

    /// Signs an access token exactly as described (expired, not yet valid, extra claims...);
    /// same as `POST /admin/tokens`. Waits for the signing key if it is still being generated.
    pub async fn mint_token_with(
        &self,
        base_url: &str,
        spec: &TokenSpec,
    ) -> Result<String, MintError> {
        let key = self.signing_key().await.map_err(|_| MintError::Signing)?;
        let mut state = self.lock();
        auth::mint(
            &mut state,
            &self.shared.config,
            &key,
            base_url,
            spec,
            chrono::Utc::now(),
        )
    }

    /// Replaces the signing key with a freshly generated one and returns its `kid`. With
    /// `keep_old` the previous key stays in the JWKS (its tokens stay valid); without it, only
    /// the new key is published and tokens signed before are refused.
    pub async fn rotate_signing_key(&self, keep_old: bool) -> Result<String, MintError> {
        self.signing_key().await.map_err(|_| MintError::Signing)?;
        let key = keys::fresh_key().await.map_err(|_| MintError::Signing)?;
        let kid = key.kid.clone();
        self.lock().keys.rotate(key, keep_old);
        Ok(kid)
    }

    /// The current signing key, adopting the process's first key on first use.
    pub(crate) async fn signing_key(&self) -> Result<Arc<keys::SigningKey>, keys::KeyError> {
        if let Some(key) = self.lock().keys.current.clone() {
            return Ok(key);
        }
        let first = keys::first_key().await?;
        let mut state = self.lock();
        Ok(state.keys.current.get_or_insert(first).clone())
    }

    /// Locks the state. A poisoned lock is recovered rather than wedging every later request:
    /// this is a test double, and handlers do not panic in practice (no unwraps).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MockAzure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockAzure")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

fn load_state(path: &Path) -> std::io::Result<Option<BTreeMap<String, Value>>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Middleware: after every request that may have changed something, writes the resources to
/// the state file (when one is configured).
async fn persist(Extract(mock): Extract<MockAzure>, request: Request, next: Next) -> Response {
    let changes = request.method() != Method::GET && request.method() != Method::HEAD;
    let response = next.run(request).await;
    if let (true, Some(path)) = (changes, mock.shared.config.state_file.as_deref()) {
        let _ordered = mock.shared.persist.lock().await;
        let bytes =
            serde_json::to_vec_pretty(&mock.snapshot()).expect("resources serialize to json");
        let tmp = path.with_extension("json.tmp");
        // Readable by the owner only: the state holds secrets (keys, passwords in settings).
        let written = async {
            let mut file = tokio::fs::OpenOptions::new();
            file.write(true).create(true).truncate(true);
            #[cfg(unix)]
            file.mode(0o600);
            let mut file = file.open(&tmp).await?;
            tokio::io::AsyncWriteExt::write_all(&mut file, &bytes).await?;
            file.sync_all().await?;
            drop(file);
            tokio::fs::rename(&tmp, path).await
        };
        if let Err(e) = written.await {
            tracing::warn!(error = %e, path = %path.display(), "could not write the mock state file");
        }
    }
    response
}

/// The resources of the configured seed (generated once per mock, so a reset restores the
/// very same keys and ids).
fn seed(config: &Config) -> BTreeMap<String, Value> {
    let mut state = State::default();
    match config.seed {
        Seed::Empty => {}
        Seed::Demo => demo::seed(&mut state, &config.tenant_id),
    }
    state.resources
}

/// Middleware: mints the request id, exposes it to handlers, and sets the id headers.
async fn request_ids(mut request: Request, next: Next) -> Response {
    let request_id = new_uuid().to_string();
    let correlation = request
        .headers()
        .get("x-ms-correlation-request-id")
        .cloned();
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert("x-ms-request-id", value);
    }
    if let Some(correlation) = correlation {
        headers.insert("x-ms-correlation-request-id", correlation);
    }
    response
}
