//! `tether-server`: the `tether` binary's library. [`Application::build`] wires the store, the
//! adapters, the use-cases, the saga executor and the HTTP API from a [`config::Config`];
//! [`cli`] holds the subcommands (`serve`, `dev`, `migrate`, `mock-azure`).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tether_adapters::arm::ArmClient;
use tether_adapters::jwks::HttpKeySource;
use tether_api::ApiConfig;
use tether_app::App;
use tether_app::auth::{AuditLog, Authenticator, Authorizer, AuthorizerSettings, Security};
use tether_model::fencing::{SingleRegion, WriteGate};
use tether_model::ids::InstanceId;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub mod cli;
pub mod config;
mod dev;
#[cfg(feature = "regions")]
mod region;
pub mod telemetry;

use config::Config;

/// A built, not yet running, Tether replica.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    app: App,
    security: Arc<Security>,
    limits: tether_api::HttpLimits,
    housekeeping: config::HousekeepingConfig,
}

impl Application {
    /// Connects to the database (applying migrations), builds every part and binds the
    /// listener.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let store = tether_store::connect(&config.database.url, &config.store())
            .await
            .context("could not open the database (database.url)")?;
        let (gate, region) = region_parts(config, &store)?;
        let me = InstanceId::generate(&config.server.instance_name);
        let arm = ArmClient::new(config.arm(&me)?).map_err(|e| anyhow::anyhow!("{e}"))?;
        let catalog = tether_model::catalog::catalog().map_err(|e| {
            anyhow::anyhow!("the built-in catalogue is invalid: {}", e.detail().message)
        })?;
        let security = security(config, &store).await?;
        let app = App::new(
            store,
            tether_adapters::azure::adapters(arm, catalog),
            config.secret_box()?,
            me.clone(),
            config.executor(),
            gate,
            config.sagas.max_validations,
            config.azure.tenant_id.clone(),
        );
        let limits = config.http_limits();
        let api = ApiConfig {
            base_url: config.base_url()?,
            limits: limits.clone(),
            location: config.server.location.to_ascii_lowercase().replace(' ', ""),
            retry_after: config.server.retry_after_secs,
            metrics: metrics_render(),
            security: security.clone(),
            throttle: config.throttle(),
            refusal_audit_per_sec: config.audit.refusals_per_sec,
            region,
        };
        let router = tether_api::router(app.clone(), api);
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| {
                format!(
                    "could not listen on {} (server.listen)",
                    config.server.listen
                )
            })?;
        info!(instance = %me, addr = %listener.local_addr()?, "tether replica ready");
        Ok(Self {
            listener,
            router,
            app,
            security,
            limits,
            housekeeping: config.housekeeping.clone(),
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves requests and runs sagas until `shutdown` is cancelled, then stops accepting,
    /// gives requests in flight `server.shutdown_grace_secs` to finish, stops the sagas it runs
    /// and releases their leases so another replica (or the next start) adopts them at once.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let executor = self.app.executor().clone();
        let sagas = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { executor.run(shutdown).await }
        });
        tokio::spawn(housekeeping(
            self.app.clone(),
            self.security.clone(),
            self.housekeeping.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(gauges(
            self.app.clone(),
            self.housekeeping.gauges_interval(),
            shutdown.clone(),
        ));
        // Warm the key caches so the first requests do not wait for the issuers.
        let security = self.security.clone();
        tokio::spawn(async move { security.authenticator.prefetch().await });
        let stop = shutdown.clone();
        tether_api::serve(self.listener, self.router, &self.limits, async move {
            stop.cancelled().await
        })
        .await;
        shutdown.cancel();
        sagas.await.context("the saga executor panicked")?;
        Ok(())
    }
}

/// The write gate, and the region's view for readiness (`None` without regions).
type RegionParts = (
    Arc<dyn WriteGate>,
    Option<Arc<dyn tether_api::RegionReport>>,
);

/// The write gate and the readiness view: a leadership member when `[region]` is set
/// (`regions` feature), otherwise a gate that is always open.
#[cfg(feature = "regions")]
fn region_parts(
    config: &Config,
    store: &Arc<dyn tether_store::Store>,
) -> anyhow::Result<RegionParts> {
    match &config.region {
        Some(section) => {
            let region = Arc::new(region::Region::start(section, store.clone())?);
            Ok((region.clone(), Some(region)))
        }
        None => Ok((Arc::new(SingleRegion), None)),
    }
}

/// Without the `regions` feature: always active.
#[cfg(not(feature = "regions"))]
fn region_parts(
    _config: &Config,
    _store: &Arc<dyn tether_store::Store>,
) -> anyhow::Result<RegionParts> {
    Ok((Arc::new(SingleRegion), None))
}

/// JWT authentication, authorization and the audit trail; the bootstrap owners are made
/// Owner (idempotently, on every replica whose database is writable: a standby has the
/// primary's, replicated).
async fn security(
    config: &Config,
    store: &Arc<dyn tether_store::Store>,
) -> anyhow::Result<Arc<Security>> {
    let keys = HttpKeySource::new(config.key_source()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let security = Arc::new(Security {
        authenticator: Authenticator::new(config.auth_settings(), Arc::new(keys)),
        authorizer: Authorizer::new(
            store.clone(),
            AuthorizerSettings {
                cache_ttl: std::time::Duration::try_from_secs_f64(
                    config.auth.assignment_cache_secs,
                )
                .unwrap_or(std::time::Duration::from_secs(5)),
                ..AuthorizerSettings::default()
            },
        ),
        audit: AuditLog::new(store.clone(), config.audit_retention()),
    });
    let scope = tether_model::authz::Scope::parse(&config.auth.bootstrap_scope)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if store
        .in_recovery()
        .await
        .context("could not read the database's role")?
    {
        info!("the database is a standby: bootstrap owners are made by the active region");
        return Ok(security);
    }
    for owner in &config.auth.bootstrap_owners {
        let owner =
            tether_model::authz::PrincipalId::parse(owner).map_err(|e| anyhow::anyhow!("{e}"))?;
        let created = security
            .authorizer
            .bootstrap_owner(&owner, &scope)
            .await
            .with_context(|| format!("could not make {owner} Owner (auth.bootstrap_owners)"))?;
        if created {
            info!(principal = %owner, scope = %scope, "made a bootstrap owner");
        }
    }
    Ok(security)
}

/// Removes expired finished operations, saga logs and audit records every interval until
/// shutdown.
async fn housekeeping(
    app: App,
    security: Arc<Security>,
    config: config::HousekeepingConfig,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(config.interval());
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {
                // Removing rows is a write: only the leading region does it.
                if app.write_epoch().is_none() {
                    continue;
                }
                match app.housekeeping(config.retention()).await {
                    Ok(purged) if purged.sagas > 0 => {
                        info!(sagas = purged.sagas, operations = purged.operations, "removed finished operations");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %tether_model::ErrorChain(&e), "housekeeping failed"),
                }
                match security.audit.purge().await {
                    Ok(0) => {}
                    Ok(n) => info!(records = n, "removed expired audit records"),
                    Err(e) => tracing::warn!(error = %tether_model::ErrorChain(&e), "audit housekeeping failed"),
                }
            }
        }
    }
}

/// Refreshes the `tether_sagas{state}` gauges from the database every interval (the first
/// at once), so `GET /metrics` never queries the database.
async fn gauges(app: App, interval: std::time::Duration, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {
                if let Err(e) = app.refresh_gauges().await {
                    tracing::warn!(error = %tether_model::ErrorChain(&e), "could not refresh the saga gauges");
                }
            }
        }
    }
}

/// The process-wide Prometheus recorder (installed once), as a renderer for `GET /metrics`.
fn metrics_render() -> tether_api::MetricsRender {
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    let handle = HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .ok()
        })
        .clone();
    Arc::new(move || handle.as_ref().map(|h| h.render()).unwrap_or_default())
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing a SIGTERM handler cannot fail");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        info!("shutting down");
        token.cancel();
    });
}
