//! `tether probe`: the failover prober of one region pair (DESIGN §5, docs/failover.md).
//! It reads a TOML file (`[probe]`, `[probe.dns]`, `[probe.journey]`, `[metrics]`, `[log]`;
//! `TETHER__SECTION__KEY` environment variables override it), then runs
//! [`tether_failover::probe::Prober`] with the real ports: the HTTP journey as the region
//! probe, Postgres for the lag and the promotion, etcd for leadership, RFC 2136 for DNS.
//! `GET /metrics` on `[metrics] listen` exposes the transitions in the Prometheus format.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::ExposeSecret;
use serde::Deserialize;
use tether_failover::config::ProbeConfig;
use tether_failover::decide::OperatorInput;
use tether_failover::dns::Rfc2136;
use tether_failover::journey::HttpJourney;
use tether_failover::leader::PairControl;
use tether_failover::probe::{PgPromoter, Prober};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::LogConfig;
use crate::{cancel_on_signal, telemetry};

/// The prober's configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeFile {
    probe: ProbeConfig,
    #[serde(default)]
    metrics: MetricsConfig,
    #[serde(default)]
    log: LogConfig,
}

/// `[metrics]`: where `GET /metrics` is served (none when absent).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsConfig {
    listen: Option<SocketAddr>,
}

fn load(file: &Path) -> anyhow::Result<ProbeFile> {
    if !file.exists() {
        return Err(anyhow!(
            "configuration file '{}' does not exist",
            file.display()
        ));
    }
    Figment::new()
        .merge(Toml::file(file))
        .merge(Env::prefixed("TETHER__").split("__"))
        .extract()
        .map_err(|e| anyhow!("invalid configuration: {e}"))
}

/// Runs the prober until SIGINT or SIGTERM.
pub async fn run(file: &Path) -> anyhow::Result<()> {
    let ProbeFile {
        probe: config,
        metrics,
        log,
    } = load(file)?;
    telemetry::init(log.format);
    let policy = config.policy()?;
    let shell = config.shell()?;
    let journey = HttpJourney::new(config.journey.clone(), shell.probe_timeout)
        .context("invalid probe.journey")?;
    let promoter = PgPromoter::new(
        config.primary_database_url.expose_secret(),
        config.standby_database_url.expose_secret(),
        &config.standby_application_name,
        config.promote_wait()?,
    )
    .context("invalid probe database urls")?;
    let leadership = PairControl::connect(config.keys()?, shell.observe_timeout)
        .await
        .context("could not reach etcd (probe.etcd_endpoints)")?;
    let dns = Rfc2136::new(&config.dns).context("invalid probe.dns")?;

    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let render = crate::metrics_render();
    if let Some(addr) = metrics.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("could not listen on {addr} (metrics.listen)"))?;
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let render = render.clone();
                async move { render() }
            }),
        );
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the metrics listener failed");
            }
        });
        info!(%addr, "prober metrics on /metrics");
    }
    // Operator input (failover now, lag-gate override) is not wired to anything yet: the
    // sender stays here so the prober always sees the defaults.
    let (_operator, operator_rx) = tokio::sync::watch::channel(OperatorInput::default());
    let prober = Prober::new(
        policy.clone(),
        shell,
        Arc::new(journey),
        Arc::new(promoter),
        Arc::new(leadership),
        Arc::new(dns),
        operator_rx,
    );
    println!(
        "tether probe watching {} (standby {})",
        policy.active, policy.standby
    );
    prober.run(shutdown).await;
    Ok(())
}
