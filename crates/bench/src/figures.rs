//! The four figures: GET, create, SDK wall clock and per-create cost at scale.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::{Mutex, Semaphore};

use crate::Opts;
use crate::procs::{self, Perf};
use crate::report::{Report, median, percentile, ratio};
use crate::setup::{Env, Source};
use crate::{sdk, wrk};

/// A figure the bench can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    Get,
    Create,
    Sdk,
    Scale,
}

impl Figure {
    pub const ALL: [Figure; 4] = [Figure::Get, Figure::Create, Figure::Sdk, Figure::Scale];
}

/// Starts the environment, measures `figures` in order, prints the table, and always stops
/// every process it started.
pub async fn run(opts: &Opts, figures: &[Figure]) -> anyhow::Result<()> {
    // The reference server is this very binary: a debug build would handicap it.
    if cfg!(debug_assertions) {
        bail!("measure with a release build: cargo run --release -p tether-bench -- …");
    }
    if figures
        .iter()
        .any(|f| matches!(f, Figure::Get | Figure::Create))
    {
        let wrk = tokio::process::Command::new("wrk")
            .arg("--version")
            .output()
            .await;
        if wrk.is_err() {
            bail!("wrk is not installed (apt-get install -y wrk)");
        }
    }
    let env = Arc::new(Env::start(opts).await?);
    let mut report = Report::new(opts.json.clone());
    let date = chrono_free_date();
    report.row(format!(
        "tether-bench on {} CPUs, {date}: wrk -t{} -c{} -d{}s, {} pair(s)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        opts.threads,
        opts.connections,
        opts.duration,
        opts.pairs
    ));
    let mut result = Ok(());
    for figure in figures {
        let done = match figure {
            Figure::Get => get(&env, &mut report).await,
            Figure::Create => create(&env, &mut report).await,
            Figure::Sdk => sdk_figure(&env, &mut report).await,
            Figure::Scale => scale(&env, &mut report).await,
        };
        if let Err(e) = done {
            result = Err(e).with_context(|| format!("the {figure:?} figure failed"));
            break;
        }
    }
    report.print_table();
    match Arc::try_unwrap(env) {
        Ok(env) => env.stop().await,
        Err(_) => eprintln!("warning: the environment is still shared; servers die with the bench"),
    }
    result
}

/// Today's date (UTC) from the system clock, without a date crate.
fn chrono_free_date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// CPU seconds of Tether, the mock, the reference and each backend of a database, and the
/// time, at one moment.
struct Cpu {
    at: Instant,
    tether: f64,
    mock: f64,
    reference: f64,
    backends: std::collections::BTreeMap<u32, f64>,
}

impl Cpu {
    async fn now(env: &Env, db: &str) -> Self {
        let backends = env.backends(db).await;
        Self {
            at: Instant::now(),
            tether: procs::cpu_secs(env.tether.pid),
            mock: procs::cpu_secs(env.mock.pid),
            reference: procs::cpu_secs(env.reference.pid),
            backends: backends.iter().map(|&p| (p, procs::cpu_secs(p))).collect(),
        }
    }

    /// CPU seconds the database's backends used since `before`: backends that connected in
    /// between count whole; those that left in between are lost (pools rarely replace one).
    fn db_since(&self, before: &Cpu) -> f64 {
        self.backends
            .iter()
            .map(|(pid, now)| now - before.backends.get(pid).copied().unwrap_or(0.0))
            .sum()
    }
}

async fn perf_start(env: &Env, name: &str) -> anyhow::Result<Option<Perf>> {
    let Some(dir) = &env.opts.perf_dir else {
        return Ok(None);
    };
    std::fs::create_dir_all(dir)?;
    let out = dir.join(format!("{name}.perf.data"));
    eprintln!("profiling tether into {}", out.display());
    let perf = Perf::start(env.tether.pid, &out)?;
    // perf needs a moment to attach before the load starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(Some(perf))
}

// ---------------------------------------------------------------------------------------------
// GET

/// wrk against one linker GET versus the reference GET of one jsonb row holding the same body.
async fn get(env: &Arc<Env>, report: &mut Report) -> anyhow::Result<()> {
    let opts = &env.opts;
    let source = env.seed_source("get-src").await?;
    let name = "bench-get";
    let status = env.put_linker(&source, name).await?;
    if !status.is_success() {
        bail!("creating the linker to GET answered {status}");
    }
    let (state, _) = env.wait_linker(&source.site, name).await?;
    if state != "Succeeded" {
        bail!("the linker to GET ended {state}");
    }
    let (_, body) = env.get_linker(&source.site, name).await?;
    // The reference row holds the very document Tether returns, so both move the same bytes.
    let ref_url = format!("{}/ref/bench-get", env.reference.url);
    let put = env.http.put(&ref_url).json(&body).send().await?;
    if put.status() != StatusCode::OK {
        bail!("seeding the reference row answered {}", put.status());
    }
    let tether_url = env.linker_url(&source.site, name);
    let auth = vec![format!("Authorization: Bearer {}", env.token)];
    let script = env.path("get.lua");
    wrk::get_script(&script)?;
    let load = |url: String, headers: Vec<String>, secs: u64| {
        let script = script.clone();
        async move {
            wrk::run(
                opts.threads,
                opts.connections,
                Duration::from_secs(secs),
                &script,
                &headers,
                &url,
            )
            .await
        }
    };
    if opts.warmup > 0 {
        load(ref_url.clone(), vec![], opts.warmup).await?;
        load(tether_url.clone(), auth.clone(), opts.warmup).await?;
    }
    let mut ratios = Vec::new();
    let (mut refs, mut tethers) = (Vec::new(), Vec::new());
    for pair in 1..=opts.pairs {
        let c0 = Cpu::now(env, &env.ref_db).await;
        let r = load(ref_url.clone(), vec![], opts.duration).await?;
        let c1 = Cpu::now(env, &env.ref_db).await;
        let t0 = Cpu::now(env, &env.tether_db).await;
        let t = load(tether_url.clone(), auth.clone(), opts.duration).await?;
        let t1 = Cpu::now(env, &env.tether_db).await;
        if r.status_errors + r.socket_errors + t.status_errors + t.socket_errors > 0 {
            eprintln!(
                "warning: errors in pair {pair}: reference {} status / {} socket, tether {} / {}",
                r.status_errors, r.socket_errors, t.status_errors, t.socket_errors
            );
        }
        let rr = r.ok_per_sec();
        let tr = t.ok_per_sec();
        let q = ratio(tr, rr);
        ratios.push(q);
        refs.push(rr);
        tethers.push(tr);
        let us = |cpu: f64, n: u64| ratio(cpu * 1e6, n as f64);
        report.emit(json!({
            "figure": "get", "kind": "pair", "pair": pair,
            "reference": {"req_per_s": rr, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms,
                          "errors": r.status_errors + r.socket_errors,
                          "server_cpu_us_per_req": us(c1.reference - c0.reference, r.requests),
                          "db_cpu_us_per_req": us(c1.db_since(&c0), r.requests)},
            "tether": {"req_per_s": tr, "p50_ms": t.p50_ms, "p99_ms": t.p99_ms,
                       "errors": t.status_errors + t.socket_errors,
                       "server_cpu_us_per_req": us(t1.tether - t0.tether, t.requests),
                       "db_cpu_us_per_req": us(t1.db_since(&t0), t.requests)},
            "ratio": q,
        }));
        report.row(format!(
            "GET    pair {pair}: reference {rr:>8.0} req/s (p99 {:>6.1} ms, {:>4.0} µs CPU/req)   tether {tr:>8.0} req/s (p99 {:>6.1} ms, {:>4.0} µs CPU/req)   ratio {q:.3}",
            r.p99_ms,
            us(c1.reference - c0.reference, r.requests),
            t.p99_ms,
            us(t1.tether - t0.tether, t.requests),
        ));
    }
    let m = median(&ratios);
    report.emit(json!({
        "figure": "get", "kind": "summary", "pairs": opts.pairs,
        "reference_req_per_s": median(&refs), "tether_req_per_s": median(&tethers),
        "median_ratio": m, "goal": 0.60, "min_ratio": ratios.iter().copied().fold(f64::INFINITY, f64::min),
    }));
    report.row(format!(
        "GET    median: reference {:.0} req/s, tether {:.0} req/s, ratio {m:.3} (goal >= 0.60 every run)",
        median(&refs),
        median(&tethers)
    ));
    if let Some(perf) = perf_start(env, "get").await? {
        load(tether_url.clone(), auth.clone(), opts.duration).await?;
        perf.stop().await;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Create

/// What one closed-loop create run measured.
struct CreateRun {
    completed_per_s: f64,
    succeeded: f64,
    finished: f64,
    accepted: u64,
    rejected: u64,
    put_p50_ms: f64,
    put_p99_ms: f64,
    tether_cpu_ms: f64,
    mock_cpu_ms: f64,
    db_cpu_ms: f64,
    commits: f64,
}

/// Reference upserts (wrk) versus completed create sagas (the bench's own closed-loop client),
/// back to back.
async fn create(env: &Arc<Env>, report: &mut Report) -> anyhow::Result<()> {
    let opts = &env.opts;
    // The reference PUT carries the same body as Tether's PUTs.
    let body = crate::setup::linker_body(&format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg-c/databases/db",
        crate::setup::SUBSCRIPTION,
        crate::setup::RESOURCE_GROUP
    ));
    let ref_base = format!("{}/ref/x", env.reference.url);
    let mut ratios = Vec::new();
    let (mut refs, mut tethers) = (Vec::new(), Vec::new());
    for pair in 1..=opts.pairs {
        let script = env.path(&format!("put-{pair}.lua"));
        wrk::put_script(&script, &format!("/ref/p{pair}-"), &body)?;
        if pair == 1 && opts.warmup > 0 {
            let warm = env.path("put-warmup.lua");
            wrk::put_script(&warm, "/ref/warmup-", &body)?;
            wrk::run(
                opts.threads,
                opts.connections,
                Duration::from_secs(opts.warmup),
                &warm,
                &[],
                &ref_base,
            )
            .await?;
        }
        let c0 = Cpu::now(env, &env.ref_db).await;
        let r = wrk::run(
            opts.threads,
            opts.connections,
            Duration::from_secs(opts.duration),
            &script,
            &[],
            &ref_base,
        )
        .await?;
        let c1 = Cpu::now(env, &env.ref_db).await;
        if r.status_errors + r.socket_errors > 0 {
            eprintln!(
                "warning: reference upserts had {} status and {} socket errors",
                r.status_errors, r.socket_errors
            );
        }

        eprintln!("seeding {} sources for pair {pair}…", opts.sources);
        let names = (0..opts.sources).map(|j| format!("c{pair}-{j}")).collect();
        let sources = Arc::new(env.seed_sources(names).await?);
        let t = create_load(env, sources, &format!("c{pair}"), false).await?;

        let rr = r.ok_per_sec();
        let q = ratio(t.completed_per_s, rr);
        ratios.push(q);
        refs.push(rr);
        tethers.push(t.completed_per_s);
        let per = |x: f64| ratio(x, t.finished);
        report.emit(json!({
            "figure": "create", "kind": "pair", "pair": pair,
            "reference": {"upserts_per_s": rr, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms,
                          "errors": r.status_errors + r.socket_errors,
                          "server_cpu_us_per_upsert": ratio((c1.reference - c0.reference) * 1e6, r.requests as f64),
                          "db_cpu_us_per_upsert": ratio(c1.db_since(&c0) * 1e6, r.requests as f64)},
            "tether": {"completed_sagas_per_s": t.completed_per_s, "finished_in_window": t.finished,
                       "succeeded_in_window": t.succeeded, "puts_accepted": t.accepted,
                       "puts_rejected": t.rejected, "put_p50_ms": t.put_p50_ms, "put_p99_ms": t.put_p99_ms,
                       "tether_cpu_ms_per_create": per(t.tether_cpu_ms),
                       "mock_cpu_ms_per_create": per(t.mock_cpu_ms),
                       "db_cpu_ms_per_create": per(t.db_cpu_ms),
                       "db_transactions_per_create_approx": per(t.commits)},
            "ratio": q,
        }));
        report.row(format!(
            "CREATE pair {pair}: reference {rr:>8.0} upserts/s (p99 {:>6.1} ms)   tether {:>7.1} sagas/s ({:.0} ok of {:.0}, PUT p99 {:.0} ms, {:.1} ms tether CPU/create)   ratio {q:.4}",
            r.p99_ms,
            t.completed_per_s,
            t.succeeded,
            t.finished,
            t.put_p99_ms,
            per(t.tether_cpu_ms),
        ));
        if t.succeeded < t.finished {
            eprintln!(
                "warning: {} create sagas did not succeed; see {}",
                t.finished - t.succeeded,
                env.path("tether.log").display()
            );
        }
    }
    let m = median(&ratios);
    report.emit(json!({
        "figure": "create", "kind": "summary", "pairs": opts.pairs,
        "reference_upserts_per_s": median(&refs), "tether_completed_sagas_per_s": median(&tethers),
        "median_ratio": m, "goal": 0.08,
    }));
    report.row(format!(
        "CREATE median: reference {:.0} upserts/s, tether {:.1} completed sagas/s, ratio {m:.4} (goal >= 0.08)",
        median(&refs),
        median(&tethers)
    ));
    if env.opts.perf_dir.is_some() {
        let names = (0..opts.sources).map(|j| format!("cp-{j}")).collect();
        let sources = Arc::new(env.seed_sources(names).await?);
        create_load(env, sources, "cp", true).await?;
    }
    Ok(())
}

/// The closed-loop create driver: `connections` workers PUT new linkers (round-robin over
/// `sources`, a new name each) while fewer than `in_flight` accepted sagas are unfinished; a
/// monitor polls `/metrics` every 50 ms and lets one more PUT go per finished saga. After the
/// warm-up, the sagas finished in the next `duration` seconds are counted; then the load stops
/// and the backlog (at most `in_flight`) drains before the function returns.
async fn create_load(
    env: &Arc<Env>,
    sources: Arc<Vec<Source>>,
    prefix: &str,
    profile: bool,
) -> anyhow::Result<CreateRun> {
    let opts = &env.opts;
    let start_counts = env.metrics().await?;
    let gate = Arc::new(Semaphore::new(opts.in_flight as usize));
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));

    let monitor = {
        let (env, gate, stop) = (Arc::clone(env), Arc::clone(&gate), Arc::clone(&stop));
        let mut seen = start_counts.create_finished();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if let Ok(counts) = env.metrics().await {
                    let now = counts.create_finished();
                    if now > seen {
                        gate.add_permits((now - seen) as usize);
                        seen = now;
                    }
                }
            }
        })
    };
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..opts.connections {
        let (env, gate, stop) = (Arc::clone(env), Arc::clone(&gate), Arc::clone(&stop));
        let (next, accepted, rejected) = (
            Arc::clone(&next),
            Arc::clone(&accepted),
            Arc::clone(&rejected),
        );
        let (sources, latencies, prefix) = (
            Arc::clone(&sources),
            Arc::clone(&latencies),
            prefix.to_string(),
        );
        workers.spawn(async move {
            loop {
                let Ok(permit) = gate.acquire().await else {
                    return;
                };
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                permit.forget();
                let i = next.fetch_add(1, Ordering::Relaxed);
                let source = &sources[(i % sources.len() as u64) as usize];
                let sent = Instant::now();
                let status = env.put_linker(source, &format!("{prefix}-{i}")).await;
                let ms = sent.elapsed().as_secs_f64() * 1e3;
                match status {
                    Ok(s) if s.is_success() => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                        latencies.lock().await.push(ms);
                    }
                    other => {
                        rejected.fetch_add(1, Ordering::Relaxed);
                        if rejected.load(Ordering::Relaxed) <= 3 {
                            eprintln!("warning: a create PUT failed: {other:?}");
                        }
                        gate.add_permits(1);
                    }
                }
            }
        });
    }

    let measured = async {
        tokio::time::sleep(Duration::from_secs(opts.warmup)).await;
        let perf = if profile {
            perf_start(env, "create").await?
        } else {
            None
        };
        latencies.lock().await.clear();
        let m0 = env.metrics().await?;
        let c0 = Cpu::now(env, &env.tether_db).await;
        let x0 = env.commits(&env.tether_db).await;
        tokio::time::sleep(Duration::from_secs(opts.duration)).await;
        let m1 = env.metrics().await?;
        let c1 = Cpu::now(env, &env.tether_db).await;
        let x1 = env.commits(&env.tether_db).await;
        if let Some(perf) = perf {
            perf.stop().await;
        }
        anyhow::Ok((m0, m1, c0, c1, x0, x1))
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    gate.close();
    while workers.join_next().await.is_some() {}
    let _ = monitor.await;
    let (m0, m1, c0, c1, x0, x1) = measured?;

    // Drain the backlog so the next measurement starts from an idle Tether.
    let total = start_counts.create_finished() + accepted.load(Ordering::Relaxed) as f64;
    env.wait_sagas(
        "linker-create",
        total,
        Duration::from_millis(100),
        Duration::from_secs(600),
    )
    .await?;

    let secs = (c1.at - c0.at).as_secs_f64();
    let finished = m1.create_finished() - m0.create_finished();
    let lat = latencies.lock().await.clone();
    Ok(CreateRun {
        completed_per_s: ratio(finished, secs),
        succeeded: m1.create_succeeded() - m0.create_succeeded(),
        finished,
        accepted: accepted.load(Ordering::Relaxed),
        rejected: rejected.load(Ordering::Relaxed),
        put_p50_ms: percentile(&lat, 50.0),
        put_p99_ms: percentile(&lat, 99.0),
        tether_cpu_ms: (c1.tether - c0.tether) * 1e3,
        mock_cpu_ms: (c1.mock - c0.mock) * 1e3,
        db_cpu_ms: c1.db_since(&c0) * 1e3,
        commits: (x1 - x0) as f64,
    })
}

// ---------------------------------------------------------------------------------------------
// SDK

/// The official SDK's `begin_create_or_update(...).result()` wall clock for a saga whose mock
/// latency is `saga_latency_ms` (one delay rule on the app settings PUT), next to the saga's
/// own duration seen by a client polling every 2 ms.
async fn sdk_figure(env: &Arc<Env>, report: &mut Report) -> anyhow::Result<()> {
    let opts = &env.opts;
    let runs = opts.sdk_runs.max(1);
    let python = sdk::python(&opts.sdk_version).await?;
    let names = (0..runs)
        .flat_map(|i| [format!("sdk-{i}"), format!("raw-{i}")])
        .collect();
    let seeded = env.seed_sources(names).await?;
    env.mock_fault(json!({
        "method": "PUT", "path": "**/config/appsettings",
        "action": {"delay": {"ms": opts.saga_latency_ms}},
    }))
    .await?;
    let measured = async {
        // The saga alone: PUT, then GET every 2 ms until a terminal state.
        let mut raw = Vec::new();
        for (i, source) in seeded.iter().skip(1).step_by(2).enumerate() {
            let name = format!("raw-{i}");
            let sent = Instant::now();
            let status = env.put_linker(source, &name).await?;
            if !status.is_success() {
                bail!("a create PUT answered {status}");
            }
            let (state, _) = env.wait_linker(&source.site, &name).await?;
            if state != "Succeeded" {
                bail!("a create ended {state}");
            }
            raw.push(sent.elapsed().as_secs_f64());
        }
        let plan: Vec<_> = seeded
            .iter()
            .step_by(2)
            .enumerate()
            .map(|(i, s)| json!({"site": s.site, "db": s.db, "name": format!("sdk-{i}")}))
            .collect();
        let plan_path = env.path("sdk-plan.json");
        crate::setup::write(&plan_path, &serde_json::to_string(&plan)?)?;
        let results = sdk::time_creates(
            &python,
            &env.tether.url,
            &env.token,
            &plan_path,
            Duration::from_secs(120 * u64::from(runs)),
        )
        .await?;
        anyhow::Ok((raw, results))
    }
    .await;
    env.mock_clear_faults().await?;
    let (raw, results) = measured?;
    let walls: Vec<f64> = results
        .iter()
        .filter_map(|r| r["wall_s"].as_f64())
        .collect();
    for r in &results {
        if r["state"] != "Succeeded" {
            eprintln!("warning: an SDK create ended {}", r["state"]);
        }
    }
    let m = median(&walls);
    let saga = median(&raw);
    report.emit(json!({
        "figure": "sdk", "kind": "summary", "sdk": format!("azure-mgmt-servicelinker {}", opts.sdk_version),
        "saga_latency_ms": opts.saga_latency_ms, "runs": walls, "median_wall_s": m,
        "saga_alone_s": raw, "median_saga_alone_s": saga, "goal_s": 1.0,
    }));
    report.row(format!(
        "SDK    begin_create_or_update().result(): median {m:.2} s over {} runs ({}), saga alone {:.0} ms (goal <= 1 s)",
        walls.len(),
        walls
            .iter()
            .map(|w| format!("{w:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        saga * 1e3
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Scale

/// Per-create cost on a source holding 1, then `scale_linkers`, linkers: each measured create
/// runs alone (PUT, wait for its saga through `/metrics`, then DELETE it unmeasured so the
/// source keeps its count), and the CPU of Tether, the mock and Tether's Postgres backends is
/// read around it at nanosecond resolution. Every linker has its own target database, so only
/// the source is crowded.
async fn scale(env: &Arc<Env>, report: &mut Report) -> anyhow::Result<()> {
    let opts = &env.opts;
    let mut cases = vec![1, opts.scale_linkers];
    cases.dedup();
    let mut summary = Vec::new();
    for existing in cases {
        let tag = format!("s{existing}");
        eprintln!("scale: seeding a source with {existing} linkers…");
        let source = env.seed_source(&format!("{tag}-src")).await?;
        let targets = env
            .seed_sources(
                (0..existing + opts.scale_creates)
                    .map(|i| format!("{tag}-t{i}"))
                    .collect(),
            )
            .await?;
        let before = env.metrics().await?.finished_of("linker-create");
        for (i, target) in targets.iter().take(existing as usize).enumerate() {
            let on = Source {
                site: source.site.clone(),
                db: target.db.clone(),
            };
            let status = env.put_linker(&on, &format!("e{i}")).await?;
            if !status.is_success() {
                bail!("seeding linker e{i} answered {status}");
            }
        }
        let (counts, _) = env
            .wait_sagas(
                "linker-create",
                before + f64::from(existing),
                Duration::from_millis(100),
                Duration::from_secs(900),
            )
            .await?;
        if counts.create_succeeded() < counts.create_finished() {
            eprintln!("warning: some seeding creates did not succeed");
        }

        let mut wall = Vec::new();
        let mut put_ms = Vec::new();
        let (mut tether_ms, mut mock_ms, mut db_ms) = (Vec::new(), Vec::new(), Vec::new());
        let mut calls = std::collections::BTreeMap::<String, f64>::new();
        let backends = env.backends(&env.tether_db).await;
        let scrape = scrape_cost(env, &backends).await?;
        env.mock_take_calls().await?;
        let mut failed = 0;
        for k in 0..opts.scale_creates as usize {
            let on = Source {
                site: source.site.clone(),
                db: targets[existing as usize + k].db.clone(),
            };
            let name = format!("m{k}");
            let counts = env.metrics().await?;
            let (c, d) = (
                counts.finished_of("linker-create"),
                counts.finished_of("linker-delete"),
            );
            let succeeded = counts.create_succeeded();
            let cpu = |env: &Env| {
                (
                    procs::cpu_secs_fine(env.tether.pid),
                    procs::cpu_secs_fine(env.mock.pid),
                    procs::cpu_secs_fine_of(&backends),
                )
            };
            let (t0, m0, d0) = cpu(env);
            let sent = Instant::now();
            let status = env.put_linker(&on, &name).await?;
            put_ms.push(sent.elapsed().as_secs_f64() * 1e3);
            if !status.is_success() {
                bail!("a measured create answered {status}");
            }
            let (after, scrapes) = env
                .wait_sagas(
                    "linker-create",
                    c + 1.0,
                    Duration::from_millis(2),
                    Duration::from_secs(120),
                )
                .await?;
            wall.push(sent.elapsed().as_secs_f64() * 1e3);
            let (t1, m1, d1) = cpu(env);
            // Minus what the `/metrics` scrapes that waited for the saga cost.
            let scrapes = f64::from(scrapes);
            tether_ms.push((t1 - t0 - scrapes * scrape.0) * 1e3);
            mock_ms.push((m1 - m0) * 1e3);
            db_ms.push((d1 - d0 - scrapes * scrape.1) * 1e3);
            if after.create_succeeded() <= succeeded {
                failed += 1;
            }
            for (method, path) in env.mock_take_calls().await? {
                *calls.entry(call_kind(&method, &path)).or_default() += 1.0;
            }
            // Back to `existing` linkers, outside the measurement.
            let status = env.delete_linker(&source.site, &name).await?;
            if !status.is_success() {
                bail!("deleting {name} answered {status}");
            }
            env.wait_sagas(
                "linker-delete",
                d + 1.0,
                Duration::from_millis(5),
                Duration::from_secs(120),
            )
            .await?;
            env.mock_take_calls().await?;
        }
        let n = f64::from(opts.scale_creates.max(1));
        let calls: serde_json::Map<String, serde_json::Value> =
            calls.into_iter().map(|(k, v)| (k, json!(v / n))).collect();
        let total_calls: f64 = calls.values().filter_map(|v| v.as_f64()).sum();
        let line = json!({
            "figure": "scale", "kind": "case", "existing_linkers": existing,
            "creates": opts.scale_creates, "failed": failed,
            "wall_ms_median": median(&wall), "wall_ms_p90": percentile(&wall, 90.0),
            "put_ms_median": median(&put_ms),
            "tether_cpu_ms_median": median(&tether_ms),
            "tether_cpu_ms_mean": tether_ms.iter().sum::<f64>() / n,
            "mock_cpu_ms_median": median(&mock_ms), "db_cpu_ms_median": median(&db_ms),
            "metrics_scrape_cost_us": {"tether": scrape.0 * 1e6, "db": scrape.1 * 1e6},
            "backend_calls_per_create": total_calls, "backend_calls_by_kind": calls,
        });
        report.emit(line.clone());
        report.row(format!(
            "SCALE  {existing:>4} linkers on the source: create {:>6.1} ms wall (PUT {:>5.1} ms), tether CPU {:>5.2} ms, db CPU {:>5.2} ms, mock CPU {:>5.2} ms, {total_calls:.1} backend calls{}",
            median(&wall),
            median(&put_ms),
            median(&tether_ms),
            median(&db_ms),
            median(&mock_ms),
            if failed > 0 { format!(", {failed} FAILED") } else { String::new() },
        ));
        summary.push((existing, median(&wall), median(&tether_ms)));
    }
    if let [(a, wa, ca), .., (b, wb, cb)] = summary.as_slice() {
        report.emit(json!({
            "figure": "scale", "kind": "summary", "small": a, "large": b,
            "wall_ratio": ratio(*wb, *wa), "tether_cpu_ratio": ratio(*cb, *ca), "goal": "flat (ratio ~ 1)",
        }));
        report.row(format!(
            "SCALE  {b} vs {a} linkers: wall x{:.2}, tether CPU x{:.2} (goal: flat)",
            ratio(*wb, *wa),
            ratio(*cb, *ca)
        ));
    }
    Ok(())
}

/// The CPU seconds (Tether, its Postgres backends) one `GET /metrics` costs, measured idle over
/// 200 scrapes, so the scale figure can subtract the scrapes that waited for each saga.
async fn scrape_cost(env: &Env, backends: &[u32]) -> anyhow::Result<(f64, f64)> {
    const N: u32 = 200;
    let (t0, d0) = (
        procs::cpu_secs_fine(env.tether.pid),
        procs::cpu_secs_fine_of(backends),
    );
    for _ in 0..N {
        env.metrics().await?;
    }
    let (t1, d1) = (
        procs::cpu_secs_fine(env.tether.pid),
        procs::cpu_secs_fine_of(backends),
    );
    let n = f64::from(N);
    Ok(((t1 - t0) / n, (d1 - d0) / n))
}

/// A recorded mock call as `METHOD <resource type>`: `PUT firewallRules/*`,
/// `GET firewallRules (list)`, `POST appsettings/list`, `POST token`…
fn call_kind(method: &str, path: &str) -> String {
    const COLLECTIONS: [&str; 8] = [
        "sites",
        "flexibleServers",
        "databases",
        "firewallRules",
        "azureAsyncOperation",
        "operationResults",
        "resourceGroups",
        "subscriptions",
    ];
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.last() == Some(&"token") {
        return format!("{method} token");
    }
    let is_collection = |s: &str| COLLECTIONS.iter().any(|c| c.eq_ignore_ascii_case(s));
    let kind = match segments.as_slice() {
        [.., last] if is_collection(last) => format!("{last} (list)"),
        [.., parent, _] if is_collection(parent) => format!("{parent}/*"),
        [.., parent, last] => format!("{parent}/{last}"),
        [one] => one.to_string(),
        [] => String::new(),
    };
    format!("{method} {kind}")
}
