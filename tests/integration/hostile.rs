//! Hostile clients and a hostile backend: odd bytes in every part of a request, forged
//! hosts, partial and slow requests, oversized bodies and fields, absurd `Retry-After`
//! values, a slow backend, a database that drops its connections, a SIGTERM under a held
//! request, and retries sent to another replica. Tether keeps answering with ARM errors, and
//! every operation it accepted still ends.

use std::time::{Duration, Instant};

use serde_json::json;
use tether_test_utils::{Backend, ReplicaOptions, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{PG_DATABASE_ID, WEB_APP_ID, env, secret_linker};

const LINKERS: &str = "/providers/Microsoft.ServiceLinker/linkers";

/// The address (`host:port`) of a replica's URL.
fn addr(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

/// Reads whatever a server sends on `stream` until it closes the connection or `timeout`
/// passes; `None` on timeout.
async fn read_until_closed(stream: &mut TcpStream, timeout: Duration) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(timeout, stream.read_to_end(&mut received)).await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&received).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn odd_bytes_anywhere_in_a_request_get_an_arm_client_error() {
    let env = env(Backend::Sqlite).await;
    let r = env.spawn().await;
    let api = &r.api;
    let paths = [
        "/providers/Microsoft.ServiceLinker/operations?api-version=123456789%C3%A9".to_string(),
        "/providers/Microsoft.ServiceLinker/operations?api-version=%FF%FE".to_string(),
        "/providers/Microsoft.ServiceLinker/operations?api-version=2022-05-01%00".to_string(),
        format!("{WEB_APP_ID}{LINKERS}/%E2%9C%93?api-version=2022-05-01"),
        format!("{WEB_APP_ID}{LINKERS}/..?api-version=2022-05-01"),
        format!("{WEB_APP_ID}%2F..%2F..{LINKERS}?api-version=2022-05-01"),
        "/subscriptions/{11111111-2222-3333-4444-555555555555}/resourceGroups/rg/providers/Microsoft.Web/sites/a/providers/Microsoft.ServiceLinker/linkers?api-version=2022-05-01".to_string(),
        "/subscriptions/11111111222233334444555555555555/resourceGroups/rg/providers/Microsoft.Web/sites/a/providers/Microsoft.ServiceLinker/linkers?api-version=2022-05-01".to_string(),
        format!("/{}{LINKERS}?api-version=2022-05-01", "x/".repeat(2000)),
        format!("{WEB_APP_ID}{LINKERS}?api-version=2022-05-01&%24top=99999999999999999999"),
        format!("{WEB_APP_ID}{LINKERS}?api-version=2022-05-01&%24skipToken=%F0%9F%92%A9"),
    ];
    for path in &paths {
        let reply = api.send(api.raw("GET", path)).await;
        assert!(
            (400..500).contains(&reply.status),
            "{path}: {} {}",
            reply.status,
            reply.text
        );
    }
    let non_ascii = api
        .send(api.raw(
            "GET",
            "/providers/Microsoft.ServiceLinker/operations?api-version=123456789%C3%A9",
        ))
        .await;
    assert_eq!(non_ascii.code(), "InvalidApiVersionParameter");
    // The replica is still there.
    let ops = api
        .call("GET", "/providers/Microsoft.ServiceLinker/operations", None)
        .await;
    assert_eq!(ops.status, 200);
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn links_never_follow_a_forged_host() {
    let env = env(Backend::Sqlite).await;
    let r = env.spawn().await;
    let api = &r.api;
    let path = format!("{WEB_APP_ID}{LINKERS}/db?api-version=2022-05-01");
    let body = json!({"properties": secret_linker(PG_DATABASE_ID, "pw", "python", true)});
    let forged = api
        .send(
            api.raw("PUT", &path)
                .header("host", "attacker.example")
                .json(&body),
        )
        .await;
    assert_eq!((forged.status, forged.code()), (400, "InvalidHostHeader"));
    assert!(
        api.get_linker(WEB_APP_ID, "db").await.status == 404,
        "nothing was written"
    );
    let accepted = api
        .put_linker(WEB_APP_ID, "db", body["properties"].clone())
        .await;
    assert_eq!(accepted.status, 201, "{}", accepted.text);
    let poll = accepted.header("azure-asyncoperation").unwrap();
    assert!(
        poll.starts_with(&format!("{}/subscriptions/", r.url)),
        "{poll}"
    );
    api.wait(&accepted).await;
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn partial_requests_are_cut_off_and_never_hold_a_shutdown() {
    let env = env(Backend::Sqlite).await;
    let mut r = env
        .spawn_with(
            ReplicaOptions::default()
                .env("TETHER__SERVER__HEADER_TIMEOUT_SECS", "1")
                .env("TETHER__SERVER__BODY_TIMEOUT_SECS", "1")
                .env("TETHER__SERVER__SHUTDOWN_GRACE_SECS", "2"),
        )
        .await;
    // Half a request head: the connection is closed after the header timeout.
    let mut half_head = TcpStream::connect(addr(&r.url)).await.unwrap();
    half_head
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    assert!(
        read_until_closed(&mut half_head, Duration::from_secs(10))
            .await
            .is_some(),
        "a half-sent request head held its connection open"
    );

    // A body shorter than its Content-Length: 408 with an ARM body after the body timeout.
    let mut short_body = TcpStream::connect(addr(&r.url)).await.unwrap();
    let head = format!(
        "PUT {WEB_APP_ID}{LINKERS}/db?api-version=2022-05-01 HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"prop",
        env.token
    );
    short_body.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut short_body, Duration::from_secs(10))
        .await
        .expect("the server answered a stalled body");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"RequestTimeout\""), "{answer}");

    // SIGTERM while a client holds a request open: the process still exits promptly.
    let mut held = TcpStream::connect(addr(&r.url)).await.unwrap();
    held.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    r.stop().await;
    assert!(
        r.wait_exit(Duration::from_secs(1)).await,
        "the replica did not exit"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the shutdown waited {:?} for a held request",
        started.elapsed()
    );
    env.teardown().await;
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_bodies_are_refused_without_being_read() {
    let env = env(Backend::Sqlite).await;
    let r = env.spawn().await;
    let pid = r.pid().unwrap();
    let before = rss_kib(pid);
    let mut clients = Vec::new();
    for i in 0..4 {
        let url = r.url.clone();
        let token = env.token.clone();
        clients.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr(&url)).await.unwrap();
            let head = format!(
                "PUT {WEB_APP_ID}{LINKERS}/big{i}?api-version=2022-05-01 HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                 Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n",
                50 * 1024 * 1024
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            // Send a few MB; the answer comes without the server reading them all.
            let chunk = vec![b' '; 1024 * 1024];
            for _ in 0..4 {
                if stream.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            read_until_closed(&mut stream, Duration::from_secs(10)).await
        }));
    }
    for client in clients {
        let answer = client.await.unwrap().unwrap_or_default();
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 413"),
            "{answer}"
        );
    }
    let after = rss_kib(pid);
    assert!(
        after < before + 32 * 1024,
        "resident memory grew from {before} KiB to {after} KiB"
    );
    let api = &r.api;
    let plain = api
        .send(
            api.raw(
                "PUT",
                &format!("{WEB_APP_ID}{LINKERS}/db?api-version=2022-05-01"),
            )
            .header("content-type", "text/plain")
            .body(json!({"properties": {}}).to_string()),
        )
        .await;
    assert_eq!((plain.status, plain.code()), (415, "UnsupportedMediaType"));
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fields_and_pages_are_bounded() {
    let env = env(Backend::Sqlite).await;
    let r = env
        .spawn_with(ReplicaOptions::default().env("TETHER__SERVER__PAGE_BYTES", "16384"))
        .await;
    let api = &r.api;
    let mut big_scope = secret_linker(PG_DATABASE_ID, "pw", "python", false);
    big_scope["scope"] = json!("s".repeat(3 * 1024 * 1024));
    let reply = api.put_linker(WEB_APP_ID, "db", big_scope).await;
    assert_eq!(
        (reply.status, reply.body["error"]["target"].as_str()),
        (400, Some("properties.scope"))
    );
    let mut big_config = secret_linker(PG_DATABASE_ID, "pw", "python", false);
    big_config["configurationInfo"] =
        json!({"additionalConfigurations": {"BIG": "v".repeat(3 * 1024 * 1024)}});
    let reply = api
        .version("2024-04-01")
        .put_linker(WEB_APP_ID, "db", big_config)
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert!(!reply.text.contains("vvvv"), "the value is not echoed");

    // Seven linkers of about 6 KB each: pages of at most 16 KiB still reach every one.
    let api24 = api.version("2024-04-01");
    for i in 0..7 {
        let mut p = secret_linker(PG_DATABASE_ID, "pw", "python", false);
        p["configurationInfo"] = json!({"additionalConfigurations": {
            format!("EXTRA_{i}_A"): "a".repeat(2000),
            format!("EXTRA_{i}_B"): "b".repeat(2000),
            format!("EXTRA_{i}_C"): "c".repeat(2000),
        }});
        let accepted = api24.put_linker(WEB_APP_ID, &format!("big{i}"), p).await;
        assert_eq!(accepted.status, 201, "{}", accepted.text);
        api24.wait(&accepted).await;
    }
    let mut names = Vec::new();
    let mut page = api24.list_linkers(WEB_APP_ID).await;
    let mut pages = 1;
    loop {
        assert!(
            page.text.len() <= 16384 + 8192,
            "a page of {} bytes",
            page.text.len()
        );
        names.extend(
            page.body["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["name"].as_str().unwrap().to_string()),
        );
        let Some(next) = page.body["nextLink"].as_str().map(str::to_string) else {
            break;
        };
        page = api24.call_url("GET", &next, None).await;
        pages += 1;
    }
    assert!(pages >= 3, "the byte cap cut pages: {pages}");
    assert_eq!(names, (0..7).map(|i| format!("big{i}")).collect::<Vec<_>>());
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_backend_cannot_stall_an_operation_or_leak_its_address() {
    let env = env(Backend::Sqlite).await;
    let r = env
        .spawn_with(ReplicaOptions::default().env("TETHER__AZURE__REQUEST_TIMEOUT_SECS", "1"))
        .await;
    let api = &r.api;
    // An absurd Retry-After on every firewall rule write: the operation fails, in time.
    env.mock
        .fault(
            json!({"method": "PUT", "path": "**/firewallRules/*", "count": null,
            "action": {"throttle": {"retryAfter": u64::MAX}}}),
        )
        .await;
    let accepted = api
        .put_linker(
            WEB_APP_ID,
            "db",
            secret_linker(PG_DATABASE_ID, "pw", "python", true),
        )
        .await;
    let status = api.wait(&accepted).await;
    assert_eq!(status["status"], "Failed", "{status}");
    env.mock.clear_faults().await;

    // A backend slower than the request timeout: Failed, in Tether's words.
    env.mock
        .fault(json!({"method": "GET", "path": "**/sites/*", "count": null,
            "action": {"delay": {"ms": 3000}}}))
        .await;
    let accepted = api
        .put_linker(
            WEB_APP_ID,
            "db",
            secret_linker(PG_DATABASE_ID, "pw", "java", false),
        )
        .await;
    let status = api.wait(&accepted).await;
    assert_eq!(status["status"], "Failed", "{status}");
    let message = status["error"]["message"].as_str().unwrap();
    assert!(
        !message.contains("http") && !message.contains("127.0.0.1"),
        "{message}"
    );
    assert_eq!(status["error"]["code"], "BackendTimeout", "{status}");
    env.mock.clear_faults().await;

    // The source is not stuck behind either: the next operation succeeds.
    let accepted = api
        .put_linker(
            WEB_APP_ID,
            "db",
            secret_linker(PG_DATABASE_ID, "pw", "go", true),
        )
        .await;
    assert_eq!(api.wait(&accepted).await["status"], "Succeeded");
    env.teardown().await;
}

/// A TCP proxy between a replica and Postgres that the test can cut and restore.
struct Proxy {
    port: u16,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (upstream, flag, conns) = (upstream.to_string(), open.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !flag.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                conns.lock().unwrap().push(task.abort_handle());
            }
        });
        Self {
            port,
            open,
            connections,
        }
    }

    /// Drops every connection and refuses new ones, like a database that went away.
    fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_database_is_a_503_with_retry_after_then_recovers() {
    let env = env(Backend::Postgres).await;
    let url = env.database_url().to_string();
    let rest = url.strip_prefix("postgres://").unwrap();
    let (auth, after_at) = rest.split_once('@').unwrap();
    let (hostport, db) = after_at.split_once('/').unwrap();
    let proxy = Proxy::start(hostport).await;
    let proxied = format!("postgres://{auth}@127.0.0.1:{}/{db}", proxy.port);
    let r = env
        .spawn_with(
            ReplicaOptions::default()
                .env("TETHER__DATABASE__URL", &proxied)
                .env("TETHER__DATABASE__ACQUIRE_TIMEOUT_SECS", "1")
                .env("TETHER__DATABASE__QUERY_TIMEOUT_SECS", "2"),
        )
        .await;
    let api = &r.api;
    assert_eq!(api.get_linker(WEB_APP_ID, "db").await.status, 404);
    proxy.cut();
    let down = api.get_linker(WEB_APP_ID, "db").await;
    assert_eq!(
        (down.status, down.code()),
        (503, "ServiceUnavailable"),
        "{}",
        down.text
    );
    assert!(down.header("retry-after").is_some());
    proxy.restore();
    eventually(
        Duration::from_secs(20),
        Duration::from_millis(200),
        async || {
            let reply = api.get_linker(WEB_APP_ID, "db").await;
            match reply.status {
                404 => Ok(()),
                other => Err(format!("still {other}")),
            }
        },
    )
    .await;
    env.teardown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_sent_to_another_replica_gets_the_first_attempt_s_operation() {
    let env = env(Backend::Postgres).await;
    // Replica A commits the create, then dies before it answers.
    let mut a = env
        .spawn_with(
            ReplicaOptions::default().env("TETHER_CRASH_POINT", "linker-create-v3:begin:after"),
        )
        .await;
    let b = env.spawn().await;
    let properties = secret_linker(PG_DATABASE_ID, "pw-retried", "python", true);
    let path = tether_test_utils::Api::linker_path(WEB_APP_ID, "db");
    let first = a
        .api
        .try_call("PUT", &path, Some(&json!({ "properties": properties })))
        .await;
    assert!(
        first.is_none(),
        "replica A answered instead of crashing: {first:?}"
    );
    assert!(a.wait_exit(Duration::from_secs(10)).await);
    let retried = b.api.put_linker(WEB_APP_ID, "db", properties.clone()).await;
    assert!(
        matches!(retried.status, 200 | 201),
        "{} {}",
        retried.status,
        retried.text
    );
    let status = b.api.wait(&retried).await;
    assert_eq!(status["status"], "Succeeded", "{status}");

    // Identical PUTs racing on two replicas: both answers name one operation, never a 409.
    let c = env.spawn().await;
    for i in 0..5 {
        let name = format!("race{i}");
        let p = secret_linker(PG_DATABASE_ID, &format!("pw-{i}"), "python", false);
        let (x, y) = tokio::join!(
            b.api.put_linker(WEB_APP_ID, &name, p.clone()),
            c.api.put_linker(WEB_APP_ID, &name, p.clone())
        );
        for reply in [&x, &y] {
            assert!(matches!(reply.status, 200 | 201), "{}", reply.text);
        }
        // One operation: the same status path (each replica names itself as the host).
        let path = |r: &tether_test_utils::Reply| {
            let url = r.header("azure-asyncoperation").unwrap_or_default();
            reqwest::Url::parse(url).unwrap().path().to_string()
        };
        assert_eq!(path(&x), path(&y));
        b.api.wait(&x).await;
    }
    env.teardown().await;
}

/// A client that sends a whole PUT and hangs up at once (its request future dropped by the
/// server) leaves either no linker or one whose operation runs to its end — never an operation
/// stuck until a lease expires, nor a half-configured backend.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_hangs_up_leaves_a_finished_operation_or_none() {
    let env = env(Backend::Postgres).await;
    let r = env.spawn().await;
    let names: Vec<String> = (0..6).map(|i| format!("gone{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        // Different databases' keys would collide: one linker per app setting key, so each
        // linker opts out of configuration and only the network is set up.
        let mut properties = secret_linker(PG_DATABASE_ID, "pw", "python", true);
        properties["configurationInfo"] = json!({"action": "optOut"});
        let body = json!({ "properties": properties }).to_string();
        let request = format!(
            "PUT {WEB_APP_ID}{LINKERS}/{name}?api-version=2024-04-01 HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Authorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            env.token,
            body.len()
        );
        let mut stream = TcpStream::connect(addr(&r.url)).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        // Hang up at different moments: at once, or after the server started answering.
        if i % 2 == 1 {
            let mut first = [0u8; 1];
            let _ = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut first)).await;
        }
        drop(stream);
    }
    for name in &names {
        let settled = r
            .api
            .settled(WEB_APP_ID, name, Duration::from_secs(60))
            .await;
        if let Some(linker) = settled {
            assert_eq!(
                linker["properties"]["provisioningState"], "Succeeded",
                "{name}: {linker}"
            );
        }
    }
    // Whatever exists is fully in place: each linker's rule per outbound address of the app
    // (two), nothing else.
    let rules = env.mock.firewall_rules(crate::support::PG_SERVER_ID).await;
    let listed = r.api.list_linkers(WEB_APP_ID).await;
    let count = listed.body["value"].as_array().map_or(0, Vec::len);
    assert_eq!(
        rules.len(),
        2 * count,
        "rules {rules:?} for {count} linkers"
    );
    env.teardown().await;
}
