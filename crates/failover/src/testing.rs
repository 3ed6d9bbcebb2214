//! Throw-away servers for tests (feature `testing`): a single-node etcd ([`EtcdServer`])
//! and an authoritative BIND with a TSIG key ([`BindServer`]), each a child process on
//! random loopback ports with its own temporary directory. They are killed when dropped
//! (`kill_on_drop`), and their logs are kept in the directory for failure messages.
//!
//! Nothing here sleeps to synchronise: starting polls the server until it answers, with a
//! deadline ([`poll_until`]).

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use tokio::net::{TcpListener as AsyncTcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::task::JoinSet;

use crate::dns::{DnsName, DnsProvider, Rfc2136, Rfc2136Config, Transport, TsigKey};

/// An error of a test helper: what went wrong, with the server's log tail when there is one.
pub type TestingError = std::io::Error;

fn error(message: impl Into<String>) -> TestingError {
    std::io::Error::other(message.into())
}

/// Polls `probe` every `every` until it returns `Ok`, or fails with the last complaint
/// after `timeout`.
pub async fn poll_until<T, F, Fut>(
    timeout: Duration,
    every: Duration,
    mut probe: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(value) => return Ok(value),
            Err(missing) if tokio::time::Instant::now() >= deadline => {
                return Err(format!("after {timeout:?}: {missing}"));
            }
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}

/// A loopback port that was free a moment ago, for TCP and UDP alike.
pub fn free_port() -> Result<u16, TestingError> {
    for _ in 0..50 {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(error("no free loopback port for both TCP and UDP"))
}

/// The last lines of a log file, for failure messages.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn spawn_logged(command: &mut Command, log: &Path) -> Result<Child, TestingError> {
    let out = std::fs::File::create(log)?;
    let err = out.try_clone()?;
    command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
}

/// A single-member etcd cluster on random loopback ports with a temporary data directory.
pub struct EtcdServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
}

impl EtcdServer {
    /// Starts `etcd` and waits (up to 30 s) until it answers.
    pub async fn start() -> Result<Self, TestingError> {
        let mut server = Self {
            child: None,
            dir: tempfile::tempdir()?,
            client_port: free_port()?,
            peer_port: free_port()?,
        };
        server.spawn().await?;
        Ok(server)
    }

    /// The client URL (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The log file.
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// Kills the server (SIGKILL) and waits until it is gone. Its data stays.
    pub async fn kill(&mut self) -> Result<(), TestingError> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Starts it again on the same ports and data (after [`EtcdServer::kill`]).
    pub async fn restart(&mut self) -> Result<(), TestingError> {
        self.kill().await?;
        self.spawn().await
    }

    async fn spawn(&mut self) -> Result<(), TestingError> {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut command = Command::new("etcd");
        command
            .arg("--name=test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg("--log-level=warn");
        let log = self.log();
        self.child = Some(spawn_logged(&mut command, &log).map_err(|e| {
            error(format!(
                "cannot start etcd (apt-get install etcd-server): {e}"
            ))
        })?);
        let endpoint = self.endpoint();
        poll_until(
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async {
                let options = etcd_client::ConnectOptions::new()
                    .with_connect_timeout(Duration::from_secs(1))
                    .with_timeout(Duration::from_secs(1));
                let mut client = etcd_client::Client::connect([endpoint.as_str()], Some(options))
                    .await
                    .map_err(|e| e.to_string())?;
                client.status().await.map_err(|e| e.to_string())?;
                Ok(())
            },
        )
        .await
        .map_err(|e| error(format!("etcd did not start: {e}\n{}", log_tail(&log))))
    }
}

/// Where Debian installs BIND's server.
pub fn named_binary() -> Result<PathBuf, TestingError> {
    ["/usr/sbin/named", "/usr/bin/named", "/sbin/named"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| error("named not found (apt-get install bind9)"))
}

/// An authoritative BIND for one zone on a random loopback port, accepting updates signed
/// with a fresh TSIG key (HMAC-SHA256).
pub struct BindServer {
    _child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    zone: String,
    key_name: String,
    secret: String,
}

impl BindServer {
    /// Starts `named -g` for `zone` (e.g. `tether.test.`) holding the A records `records`
    /// (relative names, e.g. `("api", 127.0.0.11)`), and waits (up to 30 s) until it answers.
    pub async fn start(zone: &str, records: &[(&str, Ipv4Addr)]) -> Result<Self, TestingError> {
        let zone = DnsName::parse(zone)
            .map_err(|e| error(e.to_string()))?
            .to_string();
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let key_name = "tether-key.".to_string();
        let secret = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
        let d = dir.path().display();
        let conf = format!(
            r#"options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
}};
controls {{ }};
key "{key_name}" {{
    algorithm hmac-sha256;
    secret "{secret}";
}};
zone "{zone}" {{
    type primary;
    file "{d}/zone.db";
    allow-update {{ key "{key_name}"; }};
}};
"#
        );
        let mut zone_file = format!(
            "$ORIGIN {zone}\n$TTL 60\n@ IN SOA ns.{zone} admin.{zone} 1 3600 600 86400 60\n@ IN NS ns.{zone}\nns IN A 127.0.0.1\n"
        );
        for (name, addr) in records {
            zone_file.push_str(&format!("{name} IN A {addr}\n"));
        }
        std::fs::write(dir.path().join("named.conf"), conf)?;
        std::fs::write(dir.path().join("zone.db"), zone_file)?;
        let log = dir.path().join("named.log");
        let mut command = Command::new(named_binary()?);
        command
            .arg("-g")
            .arg("-c")
            .arg(dir.path().join("named.conf"));
        let child = spawn_logged(&mut command, &log)?;
        let server = Self {
            _child: child,
            dir,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            zone: zone.clone(),
            key_name,
            secret,
        };
        let dns = Rfc2136::new(&server.config(Transport::Tcp)).map_err(|e| error(e.to_string()))?;
        let ns = DnsName::parse(&format!("ns.{zone}")).map_err(|e| error(e.to_string()))?;
        poll_until(
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async {
                let record = dns.read(&ns).await.map_err(|e| format!("{e:#?}"))?;
                if record.addrs.contains(&Ipv4Addr::LOCALHOST) {
                    Ok(())
                } else {
                    Err(format!("zone not loaded yet: {record:?}"))
                }
            },
        )
        .await
        .map_err(|e| error(format!("named did not start: {e}\n{}", log_tail(&log))))?;
        Ok(server)
    }

    /// Where it listens (TCP and UDP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The zone, absolute.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The TSIG key it accepts.
    pub fn key(&self) -> TsigKey {
        TsigKey {
            name: self.key_name.clone(),
            secret: self.secret.clone().into(),
        }
    }

    /// A provider configuration for it.
    pub fn config(&self, transport: Transport) -> Rfc2136Config {
        Rfc2136Config {
            server: self.addr,
            zone: self.zone.clone(),
            transport,
            timeout_ms: 2000,
            tsig: self.key(),
        }
    }

    /// Its log so far (`named -g` output).
    pub fn log(&self) -> String {
        log_tail(&self.dir.path().join("named.log"))
    }
}

/// A TCP proxy on a random loopback port whose links can be cut: put it between a client
/// and a server to simulate a network partition.
pub struct TcpProxy {
    addr: SocketAddr,
    tasks: JoinSet<()>,
}

impl TcpProxy {
    /// Starts forwarding every connection to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Result<Self, TestingError> {
        let listener = AsyncTcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let upstream = upstream.to_string();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut links = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                links.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(Self { addr, tasks })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://` + its address (for etcd endpoints).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cuts every link and stops listening: connections in flight break, new ones are
    /// refused.
    pub async fn cut(&mut self) {
        // The links live in a set owned by the accepting task; they go with it.
        self.tasks.shutdown().await;
    }
}
