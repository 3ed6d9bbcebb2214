//! The `tether` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, LogFormat};
use crate::{Application, cancel_on_signal, dev, telemetry};

/// Tether: a self-hostable control plane for service connections (the Microsoft.ServiceLinker API).
#[derive(Debug, Parser)]
#[command(name = "tether", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one API replica (any number share one Postgres database).
    Serve {
        /// The configuration file (TOML); `TETHER__SECTION__KEY` environment variables override it.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run everything in one process for a first try: the API, an embedded SQLite store and
    /// a mock Azure backend seeded with demo resources.
    Dev(dev::DevArgs),
    /// Apply the database migrations and exit.
    Migrate {
        /// The database URL (`postgres://…` or `sqlite://…`).
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Run the mock Azure Resource Manager backend on its own, seeded with the demo resources.
    MockAzure {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
        /// A bearer token to accept on ARM routes besides the tokens the mock issues.
        #[arg(long)]
        accept_token: Vec<String>,
        /// Start with no resources instead of the demo ones.
        #[arg(long)]
        empty: bool,
        /// Keep the resources in this JSON file (loaded at start when it exists, rewritten
        /// after every change).
        #[arg(long)]
        state_file: Option<PathBuf>,
    },
    /// Run the failover prober of a region pair: probes the active region, and fails over
    /// to the standby when it is down (see docs/failover.md).
    #[cfg(feature = "regions")]
    Probe {
        /// The configuration file (TOML); `TETHER__SECTION__KEY` environment variables override it.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the failover drill against a running two-region deployment: client load through
    /// the DNS name, region A killed at a random moment, a report of RTO and lost writes.
    #[cfg(feature = "regions")]
    Drill(Box<crate::drill::DrillArgs>),
}

/// Parses the command line, runs the command, and turns its error into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { config } => {
            let config = Config::load(&config)?;
            telemetry::init(config.log.format);
            let app = Application::build(&config).await?;
            // A stable line on stdout for supervisors and test harnesses (logs go to stderr).
            println!("tether listening on http://{}", app.local_addr());
            let shutdown = CancellationToken::new();
            cancel_on_signal(shutdown.clone());
            app.run_until_stopped(shutdown).await
        }
        Command::Dev(args) => dev::run(args).await,
        #[cfg(feature = "regions")]
        Command::Probe { config } => crate::probe::run(&config).await,
        #[cfg(feature = "regions")]
        Command::Drill(args) => crate::drill::run_drill(*args).await,
        Command::Migrate { database_url } => {
            telemetry::init(LogFormat::Text);
            tether_store::connect(&database_url, &tether_store::StoreOptions::default())
                .await
                .context("migration failed")?;
            println!("migrations applied");
            Ok(())
        }
        Command::MockAzure {
            listen,
            accept_token,
            empty,
            state_file,
        } => {
            telemetry::init(LogFormat::Text);
            let mut config = tether_mock_azure::Config::demo();
            config.accepted_tokens = accept_token;
            config.state_file = state_file;
            if empty {
                config.seed = tether_mock_azure::Seed::Empty;
            }
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("could not listen on {listen}"))?;
            println!(
                "mock Azure backend listening on http://{}",
                listener.local_addr()?
            );
            let shutdown = CancellationToken::new();
            cancel_on_signal(shutdown.clone());
            tether_mock_azure::MockAzure::new(config)
                .serve(listener, async move { shutdown.cancelled().await })
                .await
                .context("the mock backend failed")
        }
    }
}
