//! `tether-bench`: one-command throughput benchmarks of Tether against bare axum + sqlx
//! reference handlers, on one machine and one Postgres (see `docs/benchmarks.md`).
//!
//! ```sh
//! cargo run --release -p tether-bench -- all
//! ```
//!
//! The bench is a black-box client: it builds and starts the real `tether serve` release binary
//! on a fresh database, the mock Azure backend (`tether mock-azure`) as a separate process, and
//! its own reference server (`tether-bench reference`, also a separate process), then drives
//! them with `wrk` or its own HTTP client. It depends on no tether crate, so it keeps measuring
//! the binary while the crates are rewritten.
//!
//! Deviation from STYLE.md §2 (only `store` names sqlx, only `api`/`mock-azure` name axum): the
//! reference handler *is* a bare axum + sqlx program by definition; it lives here and nowhere
//! else, and no other crate depends on this one.

mod figures;
mod procs;
mod reference;
mod report;
mod sdk;
mod setup;
mod wrk;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Throughput benchmarks of Tether versus bare axum + sqlx handlers.
#[derive(Debug, Parser)]
#[command(name = "tether-bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// GET one linker versus the reference GET of one jsonb row (wrk, back-to-back pairs).
    Get(Opts),
    /// Completed create sagas per second versus reference upserts per second.
    Create(Opts),
    /// Wall clock of the official Python SDK's `begin_create_or_update(...).result()`.
    Sdk(Opts),
    /// Per-create cost on a source holding 1 versus 300 linkers.
    Scale(Opts),
    /// Every figure above, in that order, on one Tether instance.
    All(Opts),
    /// The reference server alone (the other subcommands start it as a child process).
    Reference(reference::Args),
}

/// Options shared by every figure.
#[derive(Debug, Clone, Args)]
pub struct Opts {
    /// Seconds of each measured run (each half of a pair).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds of load before each measured run starts counting (create figure only; wrk
    /// runs get a separate warm-up run of this length).
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Concurrent HTTP connections of every load.
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Back-to-back (reference, Tether) pairs per throughput figure; the median ratio is reported.
    #[arg(long, default_value_t = 3)]
    pub pairs: u32,
    /// Admin URL of the Postgres server; the bench creates (and drops) its databases there.
    #[arg(
        long,
        env = "BENCH_ADMIN_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub admin_url: String,
    /// The `tether` binary to measure. Default: build `target/release/tether` with cargo first.
    #[arg(long)]
    pub tether_bin: Option<PathBuf>,
    /// Connection pool size of the reference server (Tether's Postgres pool is 16).
    #[arg(long, default_value_t = 16)]
    pub ref_pool: u32,
    /// Create figure: at most this many accepted create sagas unfinished at once.
    #[arg(long, default_value_t = 64)]
    pub in_flight: u32,
    /// Create figure: fresh sources (web apps, each with its own database) per Tether run;
    /// creates go round-robin over them.
    #[arg(long, default_value_t = 256)]
    pub sources: u32,
    /// SDK figure: number of timed creates (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub sdk_runs: u32,
    /// SDK figure: `azure-mgmt-servicelinker` version installed in the cached virtualenv.
    #[arg(long, default_value = "1.1.0")]
    pub sdk_version: String,
    /// SDK figure: total mock latency of one create saga, in milliseconds (a delay rule).
    #[arg(long, default_value_t = 15)]
    pub saga_latency_ms: u64,
    /// Scale figure: linkers already on the crowded source.
    #[arg(long, default_value_t = 300)]
    pub scale_linkers: u32,
    /// Scale figure: creates measured on each source.
    #[arg(long, default_value_t = 100)]
    pub scale_creates: u32,
    /// Record a CPU profile of the tether process during each Tether load into this folder
    /// (`perf record --call-graph dwarf`; needs `perf`).
    #[arg(long)]
    pub perf_dir: Option<PathBuf>,
    /// Also append the JSON result lines to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep the databases (and print their names) instead of dropping them.
    #[arg(long)]
    pub keep: bool,
}

fn main() -> ExitCode {
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
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Reference(args) => reference::serve(args).await,
            Command::Get(opts) => figures::run(&opts, &[figures::Figure::Get]).await,
            Command::Create(opts) => figures::run(&opts, &[figures::Figure::Create]).await,
            Command::Sdk(opts) => figures::run(&opts, &[figures::Figure::Sdk]).await,
            Command::Scale(opts) => figures::run(&opts, &[figures::Figure::Scale]).await,
            Command::All(opts) => figures::run(&opts, &figures::Figure::ALL).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
