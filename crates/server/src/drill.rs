//! `tether drill`: runs the failover drill of `tether_failover::drill` against a running
//! two-region deployment (`deploy/local-regions/drill.sh` fills in the arguments from the
//! topology's environment file) and prints its report, whose last line is
//! `RTO <seconds> s, lost <n> acknowledged, max writable regions <k>`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use secrecy::SecretString;
use tether_failover::dns::{DnsName, Rfc2136, Rfc2136Config, Transport, TsigKey};
use tether_failover::drill::{DrillConfig, run};

/// Options of `tether drill`.
#[derive(Debug, clap::Args)]
pub struct DrillArgs {
    /// The DNS server clients resolve the service name at.
    #[arg(long, env = "DNS_SERVER")]
    dns_server: SocketAddr,
    /// Its zone.
    #[arg(long, env = "DNS_ZONE")]
    dns_zone: String,
    /// The service's DNS name.
    #[arg(long, env = "DNS_SERVICE_NAME")]
    service_name: String,
    /// The port the replicas listen on.
    #[arg(long, env = "SERVICE_PORT")]
    port: u16,
    /// The TSIG key name (reads are signed).
    #[arg(long, env = "DNS_TSIG_KEY_NAME")]
    tsig_name: String,
    /// The TSIG secret (base64).
    #[arg(long, env = "DNS_TSIG_SECRET", hide_env_values = true)]
    tsig_secret: SecretString,
    /// How long a client reuses a DNS answer, seconds (the record TTL).
    #[arg(long, default_value_t = 5.0)]
    dns_cache_secs: f64,
    /// The OAuth2 token endpoint.
    #[arg(long)]
    token_url: String,
    /// The client id.
    #[arg(long)]
    client_id: String,
    /// Its secret.
    #[arg(long, env = "DRILL_CLIENT_SECRET", hide_env_values = true)]
    client_secret: SecretString,
    /// The connections' source resource id.
    #[arg(long)]
    source_id: String,
    /// Their target resource id.
    #[arg(long)]
    target_id: String,
    /// A region and its replicas: `a=http://127.0.0.11:25080,http://127.0.0.12:25080`
    /// (repeat per region).
    #[arg(long = "region", value_parser = parse_region)]
    regions: Vec<(String, Vec<String>)>,
    /// The prober's /metrics URL (for the timings).
    #[arg(long, env = "PROBE_METRICS_URL")]
    prober_metrics: Option<String>,
    /// The shell command that kills region A.
    #[arg(long)]
    kill: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    clients: u32,
    /// The earliest kill, seconds into the load.
    #[arg(long, default_value_t = 5.0)]
    kill_after_min_secs: f64,
    /// The latest kill.
    #[arg(long, default_value_t = 15.0)]
    kill_after_max_secs: f64,
    /// Load after recovery, seconds.
    #[arg(long, default_value_t = 5.0)]
    after_recovery_secs: f64,
    /// Give up on recovery this long after the kill, seconds.
    #[arg(long, default_value_t = 120.0)]
    recovery_timeout_secs: f64,
}

fn parse_region(s: &str) -> Result<(String, Vec<String>), String> {
    let (name, urls) = s
        .split_once('=')
        .ok_or_else(|| "expected name=url,url".to_string())?;
    Ok((
        name.to_string(),
        urls.split(',').map(str::to_string).collect(),
    ))
}

fn secs(name: &str, value: f64) -> anyhow::Result<Duration> {
    if !(0.0..=3600.0).contains(&value) {
        return Err(anyhow!("--{name} must be between 0 and 3600 seconds"));
    }
    Ok(Duration::from_secs_f64(value))
}

/// Runs the drill and prints its report.
pub async fn run_drill(args: DrillArgs) -> anyhow::Result<()> {
    let dns = Rfc2136::new(&Rfc2136Config {
        server: args.dns_server,
        zone: args.dns_zone,
        transport: Transport::Tcp,
        timeout_ms: 2000,
        tsig: TsigKey {
            name: args.tsig_name,
            secret: args.tsig_secret,
        },
    })
    .context("invalid dns settings")?;
    let config = DrillConfig {
        service_name: DnsName::parse(&args.service_name).context("--service-name")?,
        port: args.port,
        dns_cache: secs("dns-cache-secs", args.dns_cache_secs)?,
        token_url: args.token_url,
        client_id: args.client_id,
        client_secret: args.client_secret,
        source_id: args.source_id,
        target_id: args.target_id,
        regions: args.regions.into_iter().collect::<BTreeMap<_, _>>(),
        prober_metrics: args.prober_metrics,
        kill: args.kill,
        clients: args.clients,
        kill_window: (
            secs("kill-after-min-secs", args.kill_after_min_secs)?,
            secs("kill-after-max-secs", args.kill_after_max_secs)?,
        ),
        after_recovery: secs("after-recovery-secs", args.after_recovery_secs)?,
        recovery_timeout: secs("recovery-timeout-secs", args.recovery_timeout_secs)?,
        request_timeout: Duration::from_secs(5),
        sample_every: Duration::from_millis(100),
    };
    let report = run(config, Arc::new(dns)).await?;
    for line in report.lines() {
        println!("{line}");
    }
    Ok(())
}
