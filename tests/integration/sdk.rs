//! The official Azure Python SDK (`azure-mgmt-servicelinker`) drives a real replica, unchanged,
//! in both published flavours: stable 1.1.0 (api-version 2022-05-01) on SQLite and pre-release
//! 1.2.0b3 (2024-07-01-preview) on Postgres. `tests/python/sdk_e2e.py` runs the lifecycle and
//! checks the mock's state; this module prepares one cached virtualenv per SDK version, runs the
//! script, and checks every HTTP exchange the SDK logged against the OpenAPI document of the
//! api-version it asked for, and for leaks of the password.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tether_test_utils::Backend;
use tokio::process::Command;

use crate::support::env;

/// The script the SDK runs.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sdk_e2e.py");

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

async fn sdk_lifecycle(sdk: &str, api_version: &str, backend: Backend) {
    let python = venv(sdk).await;
    let env = env(backend).await;
    let replica = env.spawn().await;
    // The token is random hex: a run id unique across runs and concurrent tests.
    let run_id = env.token.trim_start_matches("test-")[..10].to_string();
    let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sdk-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join(format!("{sdk}-{run_id}.jsonl"));

    let mut command = Command::new(&python);
    command
        .arg(SCRIPT)
        .args([&replica.url, &env.token, &env.mock.url, &run_id])
        .arg(&log)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .kill_on_drop(true);
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("the SDK script did not finish in {SCRIPT_TIMEOUT:?}"))
        .expect("run the SDK script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!(
        "--- azure-mgmt-servicelinker {sdk} on {} ---\n{stdout}",
        env.backend()
    );
    assert!(
        output.status.success(),
        "the SDK script failed ({}); exchanges in {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        output.status,
        log.display()
    );

    let exchanges: Vec<Value> = std::fs::read_to_string(&log)
        .expect("the script wrote its exchange log")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    check_exchanges(&exchanges, api_version, &password_for(&run_id));
    std::fs::remove_file(&log).unwrap();
    drop(replica);
    env.teardown().await;
}

/// The password the script sends (its `password_for`: keep in sync).
fn password_for(run_id: &str) -> String {
    format!("pw {run_id} it's a \\ test")
}

/// Checks the SDK's exchanges: each against the OpenAPI document of `api_version` (which every
/// request must have asked for), with the rules of `tether_test_utils::Api::check`; none leaks
/// the password in any encoding; every verb of the lifecycle was used.
fn check_exchanges(exchanges: &[Value], api_version: &str, password: &str) {
    let api = tether_test_utils::spec(api_version);
    let leaks = [
        password.to_string(),
        password.replace('\\', "\\\\").replace('\'', "\\'"),
        tether_model::configuration::percent_encode(password),
        serde_json::to_string(password)
            .unwrap()
            .trim_matches('"')
            .to_string(),
    ];
    let mut methods = BTreeSet::new();
    for exchange in exchanges {
        let method = exchange["method"].as_str().unwrap();
        let url = reqwest::Url::parse(exchange["url"].as_str().unwrap()).unwrap();
        let status = u16::try_from(exchange["status"].as_u64().unwrap()).unwrap();
        let text = exchange["text"].as_str().unwrap();
        let body = (!text.is_empty()).then_some(&exchange["body"]);
        let what = format!("{method} {url} answered {status}");
        methods.insert(method.to_string());

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
                "{what}: the response leaked the password: {text}"
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
    let expected: BTreeSet<String> = ["DELETE", "GET", "PATCH", "POST", "PUT"]
        .map(String::from)
        .into();
    assert!(
        methods.is_superset(&expected),
        "the SDK used only {methods:?}"
    );
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
