//! Shared work: three replicas on one Postgres database take a bounded load of several hundred
//! PUT / PATCH / DELETE requests across ~100 linkers on a dozen apps, with latency and ~5 %
//! injected faults in the mock, while one replica is killed (SIGKILL) mid-run and started
//! again. Then: every operation is terminal, no saga is left unfinished, no two writes to one
//! resource ever overlapped (so no side effect ran twice at once), and the mock holds exactly
//! what the final linkers imply.
//!
//! What a linker implies: its current spec when a create or update of it succeeded since it
//! was last created (a failed update rolls back to that spec, which its properties show
//! again); nothing when none did (a failed create leaves a `Failed` linker and no trace).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tether_model::ids::{LinkerName, LinkerRef, ResourceId};
use tether_test_utils::{Api, Backend, Reply, eventually};

use crate::support::{
    API_APP_ID, PG_DATABASE_2_ID, PG_DATABASE_ID, PG_SERVER_ID, WEB_APP_ID, env, secret_linker,
};

const EXTRA_APPS: usize = 10;
const LINKERS: usize = 96;
const REQUESTS: usize = 360;
const IN_FLIGHT: usize = 12;
const CLIENTS: [&str; 9] = [
    "python", "go", "php", "ruby", "nodejs", "none", "django", "java", "dotnet",
];

/// A finished saga of a linker: when it ended, its definition, its end state.
type Finished = (chrono::DateTime<chrono::FixedOffset>, String, String);

struct Linker {
    app: String,
    name: String,
    target: &'static str,
    password: String,
}

enum Request {
    Put(Value),
    Patch(Value),
    Delete,
}

fn workload(linkers: &[Linker]) -> Vec<(usize, Request)> {
    let mut rng = StdRng::seed_from_u64(0x7e7_4e5);
    (0..REQUESTS)
        .map(|_| {
            let i = rng.random_range(0..linkers.len());
            let l = &linkers[i];
            let client = CLIENTS[rng.random_range(0..CLIENTS.len())];
            let request = match rng.random_range(0..100) {
                0..55 => Request::Put(secret_linker(
                    l.target,
                    &l.password,
                    client,
                    rng.random_bool(0.5),
                )),
                55..75 => Request::Patch(json!({ "clientType": client })),
                _ => Request::Delete,
            };
            (i, request)
        })
        .collect()
}

/// Sends a request to the replicas in turn, starting at `first`, until one answers (a killed
/// replica does not); a lost answer is retried elsewhere — a repeated PUT, PATCH or DELETE
/// returns the operation it started, if it did. A `503` or `429` is retried too, as the Azure
/// SDKs' retry policy does: under this load a replica may run out of database connections for a
/// moment, and says so with `Retry-After`.
async fn send(apis: &RwLock<Vec<Api>>, first: usize, l: &Linker, request: &Request) -> Reply {
    let path = &Api::linker_path(&l.app, &l.name);
    let mut attempt = first;
    eventually(Duration::from_secs(60), Duration::from_millis(50), || {
        let api = next(apis, &mut attempt);
        async move {
            let reply = match request {
                Request::Put(p) => {
                    api.try_call("PUT", path, Some(&json!({ "properties": p })))
                        .await
                }
                Request::Patch(p) => {
                    api.try_call("PATCH", path, Some(&json!({ "properties": p })))
                        .await
                }
                Request::Delete => api.try_call("DELETE", path, None).await,
            };
            match reply {
                Some(r) if matches!(r.status, 429 | 503) => {
                    Err(format!("replicas stayed busy: {} {}", r.status, r.text))
                }
                Some(r) => Ok(r),
                None => Err("no replica answered".to_string()),
            }
        }
    })
    .await
}

/// Follows an operation to its end like an SDK poller does, asking whichever replica is alive
/// (the one that accepted it may have been killed). Returns the final status.
async fn finish(apis: &RwLock<Vec<Api>>, first: usize, url: &str) -> String {
    let path = &url[url.find("/subscriptions/").expect("a status URL")..];
    let mut attempt = first;
    eventually(Duration::from_secs(120), Duration::from_millis(100), || {
        let api = next(apis, &mut attempt);
        async move {
            let status = api.try_get(path).await;
            match status.as_ref().and_then(|s| s.body["status"].as_str()) {
                Some(state) if state != "InProgress" => Ok(state.to_string()),
                _ => Err(format!("operation {path} never ended")),
            }
        }
    })
    .await
}

/// The replica whose turn it is (a killed one is replaced in place), moving the turn on.
fn next(apis: &RwLock<Vec<Api>>, attempt: &mut usize) -> Api {
    let apis = apis.read().unwrap();
    let api = apis[*attempt % apis.len()].clone();
    *attempt += 1;
    api
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_share_the_work_through_a_crash() {
    let env = env(Backend::Postgres).await;
    let mut apps = vec![WEB_APP_ID.to_string(), API_APP_ID.to_string()];
    for i in 0..EXTRA_APPS {
        let id = WEB_APP_ID.replace("demo-web", &format!("chaos-{i}"));
        let body = json!({"location": "westus", "kind": "app",
                          "properties": {"outboundIpAddresses": format!("20.60.{i}.1,20.60.{i}.2")}});
        env.mock.put_resource(&id, body).await;
        apps.push(id);
    }
    let linkers: Vec<Linker> = (0..LINKERS)
        .map(|i| Linker {
            app: apps[i % apps.len()].clone(),
            name: format!("l{i:03}"),
            target: if i % 2 == 0 {
                PG_DATABASE_ID
            } else {
                PG_DATABASE_2_ID
            },
            password: format!("pw{i}"),
        })
        .collect();
    let base_settings: BTreeMap<String, BTreeMap<String, String>> = {
        let mut base = BTreeMap::new();
        for app in &apps {
            base.insert(app.to_ascii_lowercase(), env.mock.app_settings(app).await);
        }
        base
    };

    let mut replicas = vec![env.spawn().await, env.spawn().await, env.spawn().await];
    let apis = Arc::new(RwLock::new(
        replicas.iter().map(|r| r.api.clone()).collect::<Vec<_>>(),
    ));
    // ~5 % faults in front of a little latency on every ARM call: transient 503s (retried),
    // and refused or lost-answer writes (the operation unwinds).
    for rule in [
        json!({"path": "/subscriptions/**", "probability": 0.03, "action": {"fail": {"status": 503}}}),
        json!({"method": "PUT", "path": "**/firewallRules/*", "probability": 0.05, "when": "after",
               "action": {"fail": {"status": 409, "code": "InjectedFault"}}}),
        json!({"method": "PUT", "path": "**/config/appsettings", "probability": 0.05,
               "action": {"fail": {"status": 409, "code": "InjectedFault"}}}),
        json!({"path": "/subscriptions/**", "action": {"delay": {"ms": 20}}}),
    ] {
        env.mock.fault(rule).await;
    }

    let linkers = Arc::new(linkers);
    let accepted = Arc::new(Mutex::new(Vec::<(usize, String)>::new()));
    let statuses = Arc::new(Mutex::new(BTreeMap::<u16, usize>::new()));
    let work = workload(&linkers);
    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for (n, (i, request)) in work.into_iter().enumerate() {
        if n == REQUESTS / 3 {
            replicas[1].kill().await;
        }
        if n == 2 * REQUESTS / 3 {
            replicas[1].restart(None).await;
            apis.write().unwrap()[1] = replicas[1].api.clone();
        }
        let permit = permits.clone().acquire_owned().await.unwrap();
        let (apis, linkers, accepted, statuses) = (
            apis.clone(),
            linkers.clone(),
            accepted.clone(),
            statuses.clone(),
        );
        tasks.spawn(async move {
            let l = &linkers[i];
            let reply = send(&apis, n, l, &request).await;
            *statuses.lock().unwrap().entry(reply.status).or_default() += 1;
            assert!(
                matches!(reply.status, 200 | 201 | 202 | 204 | 404 | 409),
                "{} {}: {}",
                reply.status,
                l.name,
                reply.text
            );
            if let Some(url) = reply.header("azure-asyncoperation") {
                accepted.lock().unwrap().push((i, url.to_string()));
                // Like an SDK caller: wait for the result before the next request.
                finish(&apis, n, url).await;
            }
            drop(permit);
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let api = replicas[0].api.clone();

    // Quiescence: no saga left running, unwinding or stuck.
    eventually(
        Duration::from_secs(120),
        Duration::from_millis(200),
        async || {
            let unfinished = api.send(api.raw("GET", "/admin/sagas")).await;
            match unfinished.body["value"].as_array() {
                Some(sagas) if sagas.is_empty() => Ok(()),
                _ => Err(format!("sagas never finished: {}", unfinished.text)),
            }
        },
    )
    .await;
    // Every accepted operation is terminal (asked through a live replica).
    let accepted = accepted.lock().unwrap().clone();
    assert!(
        accepted.len() > REQUESTS / 3,
        "too few operations were accepted: {}",
        accepted.len()
    );
    let mut outcomes = BTreeMap::<String, usize>::new();
    for (_, url) in &accepted {
        let path_and_query = &url[url.find("/subscriptions/").unwrap()..];
        let status = api
            .call_url("GET", &format!("{}{path_and_query}", api.base()), None)
            .await;
        let state = status.body["status"]
            .as_str()
            .unwrap_or_else(|| panic!("{}", status.text))
            .to_string();
        assert!(
            matches!(state.as_str(), "Succeeded" | "Failed" | "Canceled"),
            "{}",
            status.text
        );
        *outcomes.entry(state).or_default() += 1;
    }
    println!(
        "answers: {:?}; operations: {outcomes:?}",
        statuses.lock().unwrap()
    );
    assert!(
        outcomes.get("Failed").is_some_and(|n| *n > 0),
        "the injected faults failed no operation"
    );

    let overlaps = env.mock.overlapping_writes().await;
    assert!(
        overlaps.is_empty(),
        "concurrent writes to one resource: {overlaps:#?}"
    );

    // What the linkers imply, from the finished sagas (most recent first).
    let mut history: BTreeMap<String, Vec<Finished>> = BTreeMap::new();
    for state in ["succeeded", "failed", "canceled"] {
        let reply = api
            .send(api.raw("GET", &format!("/admin/sagas?state={state}&limit=10000")))
            .await;
        for saga in reply.body["value"].as_array().unwrap() {
            let text = |k: &str| saga[k].as_str().unwrap().to_string();
            let ended = chrono::DateTime::parse_from_rfc3339(&text("updatedAt")).unwrap();
            let resource = text("resourceId").to_ascii_lowercase();
            history
                .entry(resource)
                .or_default()
                .push((ended, text("name"), text("state")));
        }
    }
    let mut expected_settings = base_settings.clone();
    let mut expected_rules = BTreeMap::new();
    let mut implied = 0;
    for l in linkers.iter() {
        let current = api.get_linker(&l.app, &l.name).await;
        if current.status == 404 {
            continue;
        }
        let id = Api::linker_path(&l.app, &l.name).to_ascii_lowercase();
        let mut sagas = history.remove(&id).unwrap_or_default();
        sagas.sort();
        let since_created = sagas
            .iter()
            .rposition(|(_, name, state)| name == "linker-delete-v2" && state == "succeeded")
            .map_or(&sagas[..], |at| &sagas[at + 1..]);
        let holds = since_created
            .iter()
            .any(|(_, name, state)| name != "linker-delete-v2" && state == "succeeded");
        if !holds {
            continue;
        }
        implied += 1;
        let configs = api.list_configurations(&l.app, &l.name).await;
        let settings = expected_settings
            .get_mut(&l.app.to_ascii_lowercase())
            .unwrap();
        for entry in configs.body["configurations"].as_array().unwrap() {
            let value = entry["value"]
                .as_str()
                .unwrap()
                .replace("<redacted>", &l.password);
            settings.insert(entry["name"].as_str().unwrap().to_string(), value);
        }
        if current.body["properties"]["vNetSolution"]["type"] == "firewall" {
            let at = LinkerRef {
                scope: ResourceId::parse(&l.app).unwrap(),
                name: LinkerName::parse(&l.name).unwrap(),
            };
            let prefix = tether_app::spec::rule_prefix(&at);
            let site = env.mock.resource(&l.app).await.unwrap();
            for ip in site["properties"]["outboundIpAddresses"]
                .as_str()
                .unwrap()
                .split(',')
            {
                expected_rules.insert(
                    format!("{prefix}{}", ip.replace('.', "-")),
                    (ip.to_string(), ip.to_string()),
                );
            }
        }
    }
    assert!(implied > 0, "no linker holds a connection at the end");
    for app in &apps {
        assert_eq!(
            env.mock.app_settings(app).await,
            expected_settings[&app.to_ascii_lowercase()],
            "the settings of {app} are not what its linkers imply"
        );
    }
    let rules: BTreeMap<String, (String, String)> = env
        .mock
        .firewall_rules(PG_SERVER_ID)
        .await
        .into_iter()
        .filter(|(name, _)| name.starts_with("tether-"))
        .collect();
    assert_eq!(
        rules, expected_rules,
        "the firewall rules are not what the linkers imply"
    );
    drop(replicas);
    env.teardown().await;
}
