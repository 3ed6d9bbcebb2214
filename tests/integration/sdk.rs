//! The official Azure Python SDK (`azure-mgmt-servicelinker`) drives a real replica, unchanged,
//! in both published flavours: stable 1.1.0 (api-version 2022-05-01) on SQLite and pre-release
//! 1.2.0b3 (2024-07-01-preview) on Postgres. `tests/python/sdk_e2e.py` runs one connection's
//! lifecycle and checks the mock's state; `tests/python/sdk_sample.py` runs a random sample of
//! catalogue cells (the seed is printed; `TETHER_SAMPLE_SEED` replays one). This module prepares
//! one cached virtualenv per SDK version, runs the scripts, and checks every HTTP exchange the
//! SDK logged against the OpenAPI document of the api-version it asked for, and for leaks of
//! the secrets sent.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde_json::{Value, json};
use tether_mock_azure::demo;
use tether_model::catalog::ServiceType;
use tether_model::linker::AuthType;
use tether_test_utils::{Backend, TestEnv};
use tokio::process::Command;

use crate::catalogue::{self, PASSWORD, SP_SECRET};
use crate::support::{comparable, differences, env};

/// The scripts the SDK runs.
const LIFECYCLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sdk_e2e.py");
const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sdk_sample.py");

/// Cells per sample.
const SAMPLE_SIZE: usize = 20;

/// Bounds on the subprocesses (a first `pip install` downloads a few megabytes).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread")]
async fn the_stable_sdk_drives_a_connection_through_its_life() {
    sdk_lifecycle("1.1.0", "2022-05-01", Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_preview_sdk_drives_a_connection_through_its_life() {
    sdk_lifecycle("1.2.0b3", "2024-07-01-preview", Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_random_sample_of_cells_works_through_the_stable_sdk() {
    sdk_sample("1.1.0", "2022-05-01", Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_random_sample_of_cells_works_through_the_preview_sdk() {
    sdk_sample("1.2.0b3", "2024-07-01-preview", Backend::Postgres).await;
}

async fn sdk_lifecycle(sdk: &str, api_version: &str, backend: Backend) {
    let python = venv(sdk).await;
    let env = env(backend).await;
    let replica = env.spawn().await;
    let run_id = run_id();
    let log = log_path(sdk, &run_id);
    let args = [
        replica.url.clone(),
        env.token.clone(),
        env.mock.url.clone(),
        run_id.clone(),
    ];
    let exchanges = run_script(
        &python,
        LIFECYCLE,
        &args,
        &log,
        &format!("{sdk} on {}", env.backend()),
    )
    .await;
    check_exchanges(&exchanges, api_version, &[password_for(&run_id)]);
    let methods: BTreeSet<&str> = exchanges
        .iter()
        .filter_map(|e| e["method"].as_str())
        .collect();
    let expected: BTreeSet<&str> = ["DELETE", "GET", "PATCH", "POST", "PUT"].into();
    assert!(
        methods.is_superset(&expected),
        "the SDK used only {methods:?}"
    );
    drop(replica);
    env.teardown().await;
}

/// Runs a random sample of the catalogue's cells (those `api_version` can express) through the
/// SDK; the mock must end as it began.
async fn sdk_sample(sdk: &str, api_version: &str, backend: Backend) {
    let python = venv(sdk).await;
    let env = env(backend).await;
    let replica = env.spawn().await;
    let seed: u64 = std::env::var("TETHER_SAMPLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("sample seed {seed} (replay with TETHER_SAMPLE_SEED={seed})");
    let cases = sample(&env, api_version, seed).await;
    let run_id = run_id();
    let cases_path = log_path(sdk, &format!("{run_id}-cases"));
    std::fs::write(&cases_path, serde_json::to_vec_pretty(&cases).unwrap()).unwrap();
    let start = comparable(env.mock.state().await);

    let log = log_path(sdk, &run_id);
    let args = [
        replica.url.clone(),
        env.token.clone(),
        env.mock.url.clone(),
        cases_path.display().to_string(),
    ];
    let what = format!("{sdk} on {}, seed {seed}", env.backend());
    let exchanges = run_script(&python, SAMPLE, &args, &log, &what).await;
    check_exchanges(
        &exchanges,
        api_version,
        &[PASSWORD.to_string(), SP_SECRET.to_string()],
    );
    let left = differences(&start, &comparable(env.mock.state().await));
    assert!(
        left.is_empty(),
        "{what}: the mock did not end as it began: {left:#?}"
    );
    std::fs::remove_file(&cases_path).unwrap();
    drop(replica);
    env.teardown().await;
}

/// `SAMPLE_SIZE` cells from App Service, Functions and Container Apps sources, as cases for
/// `sdk_sample.py`.
async fn sample(env: &TestEnv, api_version: &str, seed: u64) -> Vec<Value> {
    // `accessKey` and self-hosted servers came with 2024-04-01.
    let expressible = |cell: &catalogue::Cell| {
        api_version != "2022-05-01"
            || (cell.auth != AuthType::AccessKey
                && cell.kind.service_type != ServiceType::SelfHostedServer)
    };
    let mut cells: Vec<catalogue::Cell> = [
        (demo::WEB_APP_ID, "webapp"),
        (demo::FUNCTION_APP_ID, "webapp"),
        (demo::CONTAINER_APP_ID, "containerapp"),
    ]
    .into_iter()
    .flat_map(|(source, kind)| catalogue::cells(source, kind, true))
    .filter(expressible)
    .collect();
    cells.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let matrix = catalogue::matrix();
    let client_id = catalogue::identity_client_id(env).await;
    cells
        .iter()
        .take(SAMPLE_SIZE)
        .enumerate()
        .map(|(i, cell)| {
            json!({
                "source": cell.source,
                "name": format!("sample{i}"),
                "label": cell.label(),
                "properties": cell.properties(&client_id),
                "keys": cell.documented(&matrix).keys().collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// A run id unique across runs and concurrent tests (lower-case: the mock lower-cases host
/// names built from it, as Azure does).
fn run_id() -> String {
    format!("{:010x}", rand::random::<u64>() & 0xff_ffff_ffff)
}

/// Where a script's exchange log (or its input) goes.
fn log_path(sdk: &str, name: &str) -> PathBuf {
    let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sdk-logs");
    std::fs::create_dir_all(&logs).unwrap();
    logs.join(format!("{sdk}-{name}.jsonl"))
}

/// Runs an SDK script with `args` and the exchange log path, fails the test if it fails, and
/// returns the logged exchanges (removing the log).
async fn run_script(
    python: &Path,
    script: &str,
    args: &[String],
    log: &Path,
    what: &str,
) -> Vec<Value> {
    let mut command = Command::new(python);
    command
        .arg(script)
        .args(args)
        .arg(log)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .kill_on_drop(true);
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("the SDK script did not finish in {SCRIPT_TIMEOUT:?}"))
        .expect("run the SDK script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("--- azure-mgmt-servicelinker {what} ---\n{stdout}");
    assert!(
        output.status.success(),
        "the SDK script failed ({}); exchanges in {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        output.status,
        log.display()
    );
    let exchanges = std::fs::read_to_string(log)
        .expect("the script wrote its exchange log")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    std::fs::remove_file(log).unwrap();
    exchanges
}

/// The password the script sends (its `password_for`: keep in sync).
fn password_for(run_id: &str) -> String {
    format!("pw {run_id} it's a \\ test")
}

/// Checks the SDK's exchanges: each against the OpenAPI document of `api_version` (which every
/// request must have asked for), with the rules of `tether_test_utils::Api::check`; none leaks
/// the secrets in any encoding.
fn check_exchanges(exchanges: &[Value], api_version: &str, secrets: &[String]) {
    let api = tether_test_utils::spec(api_version);
    let leaks: Vec<String> = secrets
        .iter()
        .flat_map(|secret| {
            [
                secret.clone(),
                secret.replace('\\', "\\\\").replace('\'', "\\'"),
                tether_model::configuration::percent_encode(secret),
                serde_json::to_string(secret)
                    .unwrap()
                    .trim_matches('"')
                    .to_string(),
            ]
        })
        .collect();
    for exchange in exchanges {
        let method = exchange["method"].as_str().unwrap();
        let url = reqwest::Url::parse(exchange["url"].as_str().unwrap()).unwrap();
        let status = u16::try_from(exchange["status"].as_u64().unwrap()).unwrap();
        let text = exchange["text"].as_str().unwrap();
        let body = (!text.is_empty()).then_some(&exchange["body"]);
        let what = format!("{method} {url} answered {status}");

        let version = url
            .query_pairs()
            .find(|(k, _)| k == "api-version")
            .map(|(_, v)| v.into_owned());
        assert_eq!(
            version.as_deref(),
            Some(api_version),
            "{what}: not the SDK's api-version"
        );
        for leak in &leaks {
            assert!(
                !text.contains(leak.as_str()),
                "{what}: the response leaked a secret: {text}"
            );
        }
        assert!(
            exchange["headers"]["x-ms-request-id"].is_string(),
            "{what}: no x-ms-request-id"
        );
        if let Some(body) = body {
            assert!(
                body.is_object(),
                "{what}: the body is not a JSON object: {text}"
            );
        }
        if let Err(violations) =
            tether_test_utils::check_exchange(api, method, url.path(), status, body)
        {
            panic!(
                "{what} with a body the OpenAPI document of {api_version} rejects:\n  {}\nbody: {text}",
                violations.join("\n  ")
            );
        }
    }
}

/// The python of a virtualenv holding `azure-mgmt-servicelinker=={sdk}`, cached under the
/// target's temporary folder (`sdk-venv-<version>`) for later runs.
async fn venv(sdk: &str) -> PathBuf {
    let requirement = format!("azure-mgmt-servicelinker=={sdk}");
    venv_with(&format!("sdk-venv-{sdk}"), &[&requirement, "six"]).await
}

/// The python of a virtualenv named `name` holding `requirements` (the first one names it in
/// its marker file), cached under the target's temporary folder for later runs.
///
/// Idempotent and safe between concurrent test processes: a virtualenv is built in a folder of
/// its own and renamed into place only after its marker file is written, so the cached folder is
/// either absent or complete (one without the marker, from an older layout or a manual copy, is
/// rebuilt); when two processes race, the first rename wins and the other drops its copy. A
/// virtualenv survives the rename because we run only `bin/python` (which finds its
/// `pyvenv.cfg` next to itself), never the console scripts whose shebangs hold the old path.
pub(crate) async fn venv_with(name: &str, requirements: &[&str]) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = root.join(name);
    // The marker names the first requirement (the SDK under test), as it always has.
    let requirement = requirements.first().copied().unwrap_or_default();
    let marker = |dir: &Path| dir.join("tether-sdk-ready");
    let ready = |dir: &Path| {
        std::fs::read_to_string(marker(dir)).is_ok_and(|m| m.trim() == requirement)
            && dir.join("bin/python").exists()
    };
    if ready(&dir) {
        return dir.join("bin/python");
    }

    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let building = root.join(format!("{name}.building-{}-{nanos}", std::process::id()));
    run(
        Command::new("python3").arg("-m").arg("venv").arg(&building),
        "python3 -m venv",
    )
    .await;
    run(
        Command::new(building.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(requirements),
        "pip install",
    )
    .await;
    std::fs::write(marker(&building), requirement).unwrap();

    if dir.exists() && !ready(&dir) {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if std::fs::rename(&building, &dir).is_err() {
        // Another process renamed its copy in first.
        let _ = std::fs::remove_dir_all(&building);
        assert!(
            ready(&dir),
            "could not put the virtualenv in place at {}",
            dir.display()
        );
    }
    dir.join("bin/python")
}

/// Runs a setup command to completion, within `INSTALL_TIMEOUT`, failing the test on error.
async fn run(command: &mut Command, what: &str) {
    let output = tokio::time::timeout(INSTALL_TIMEOUT, command.kill_on_drop(true).output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish in {INSTALL_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
