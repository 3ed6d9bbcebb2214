//! The official Python SDK in a virtualenv cached under `target/bench/`, and the script that
//! times its creates (`benches/sdk_create.py`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::process::Command;

use crate::setup::{target_dir, workspace_root};

const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);

/// The python of a virtualenv holding `azure-mgmt-servicelinker=={version}` (and `six`, which
/// 1.1.0 imports), built once in `target/bench/sdk-venv-{version}` and reused while its marker
/// file names the same requirement.
pub async fn python(version: &str) -> anyhow::Result<PathBuf> {
    let dir = target_dir()
        .join("bench")
        .join(format!("sdk-venv-{version}"));
    let requirement = format!("azure-mgmt-servicelinker=={version}");
    let marker = dir.join("tether-bench-ready");
    let python = dir.join("bin/python");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m.trim() == requirement) && python.exists() {
        return Ok(python);
    }
    eprintln!("creating the SDK virtualenv {} …", dir.display());
    let _ = std::fs::remove_dir_all(&dir);
    run(
        Command::new("python3").arg("-m").arg("venv").arg(&dir),
        "python3 -m venv",
    )
    .await?;
    run(
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &requirement,
            "six",
        ]),
        "pip install",
    )
    .await?;
    std::fs::write(&marker, &requirement)?;
    Ok(python)
}

async fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let output = tokio::time::timeout(INSTALL_TIMEOUT, command.kill_on_drop(true).output())
        .await
        .with_context(|| format!("{what} did not finish in {INSTALL_TIMEOUT:?}"))?
        .with_context(|| format!("run {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Runs the timing script over `plan` (a JSON list of `{site, db, name}`); one result per item.
pub async fn time_creates(
    python: &Path,
    api_url: &str,
    token: &str,
    plan: &Path,
    timeout: Duration,
) -> anyhow::Result<Vec<Value>> {
    let script = workspace_root().join("benches/sdk_create.py");
    let output = tokio::time::timeout(
        timeout,
        Command::new(python)
            .arg(&script)
            .args([api_url, token])
            .arg(plan)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("the SDK script did not finish in {timeout:?}"))?
    .context("run the SDK script")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "the SDK script failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).context("parse an SDK result line"))
        .collect()
}
