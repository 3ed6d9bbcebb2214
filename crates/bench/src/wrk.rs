//! Runs `wrk` with a generated Lua script whose `done` hook prints one JSON line.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::process::Command;

use crate::setup::write;

/// What one wrk run measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct WrkResult {
    /// Completed requests (any status).
    pub requests: u64,
    pub duration_s: f64,
    /// Requests with a status >= 400.
    pub status_errors: u64,
    /// Connect, read, write errors and timeouts.
    pub socket_errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl WrkResult {
    /// Successful requests per second.
    pub fn ok_per_sec(&self) -> f64 {
        if self.duration_s <= 0.0 {
            return 0.0;
        }
        self.requests.saturating_sub(self.status_errors) as f64 / self.duration_s
    }
}

const DONE: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%.0f,"duration_us":%.0f,"status_errors":%.0f,"socket_errors":%.0f,"p50_us":%.0f,"p99_us":%.0f}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"#;

/// A script for GETs of the command line's URL.
pub fn get_script(path: &Path) -> anyhow::Result<()> {
    write(path, DONE)
}

/// A script for PUTs of `body` to `{prefix}{thread}-{n}`: a new id on every request.
pub fn put_script(path: &Path, prefix: &str, body: &str) -> anyhow::Result<()> {
    let script = format!(
        r#"
wrk.method = "PUT"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local counter = 0
function request()
  counter = counter + 1
  return wrk.format(nil, "{prefix}" .. (tid or 0) .. "-" .. counter)
end
{DONE}"#
    );
    write(path, &script)
}

/// Runs wrk for `duration` against `url` (whose path a PUT script replaces).
pub async fn run(
    threads: u32,
    connections: u32,
    duration: Duration,
    script: &Path,
    headers: &[String],
    url: &str,
) -> anyhow::Result<WrkResult> {
    let mut command = Command::new("wrk");
    command
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .args(["--timeout", "10s", "-s"])
        .arg(script);
    for header in headers {
        command.arg("-H").arg(header);
    }
    command
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // Bounded: wrk stops itself after `duration`; this is a guard against a hang.
    let output = tokio::time::timeout(duration + Duration::from_secs(60), command.output())
        .await
        .context("wrk did not stop")?
        .context("run wrk (apt-get install wrk)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("WRKJSON ")) else {
        bail!(
            "wrk printed no result ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let v: Value = serde_json::from_str(line).context("parse wrk's result line")?;
    let n = |k: &str| v[k].as_f64().unwrap_or_default();
    Ok(WrkResult {
        requests: n("requests") as u64,
        duration_s: n("duration_us") / 1e6,
        status_errors: n("status_errors") as u64,
        socket_errors: n("socket_errors") as u64,
        p50_ms: n("p50_us") / 1e3,
        p99_ms: n("p99_us") / 1e3,
    })
}
