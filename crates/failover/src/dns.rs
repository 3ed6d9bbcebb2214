//! Moving clients between regions through DNS: the [`DnsProvider`] port, its RFC 2136
//! implementation ([`Rfc2136`]: dynamic updates signed with TSIG, compare-and-swap through
//! update prerequisites) and an in-memory [`FakeDns`] for other crates' tests.
//!
//! The service's state in DNS is a [`ServiceRecord`]: the A records of the service name and
//! the epoch of the leader that wrote them, kept in a TXT record `"tether-epoch=N"` at
//! `_tether-epoch.<name>`. A compare-and-swap names the whole expected state (A records and
//! epoch, "RRset exists (value dependent)" or "RRset does not exist" prerequisites) and the
//! server applies the update only if both still match, so two probers never undo each
//! other's work and a prober acting for an old epoch cannot overwrite a newer one.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use hickory_client::client::Client;
use hickory_proto::ProtoError;
use hickory_proto::dnssec::rdata::tsig::TsigAlgorithm;
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::op::{
    Message, MessageFinalizer, MessageType, MessageVerifier, OpCode, Query, ResponseCode,
    UpdateMessage,
};
use hickory_proto::rr::rdata::{A, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::runtime::TokioRuntimeProvider;
use hickory_proto::tcp::TcpClientStream;
use hickory_proto::udp::UdpClientStream;
use hickory_proto::xfer::{DnsHandle, DnsResponse, FirstAnswer};
use secrecy::{ExposeSecret, SecretString};

use crate::types::{Epoch, ServiceRecord};

/// The label under the service name that holds the epoch TXT record.
const EPOCH_LABEL: &str = "_tether-epoch";
/// The TXT value's prefix.
const EPOCH_PREFIX: &str = "tether-epoch=";
/// The largest record TTL accepted (one day).
pub const MAX_RECORD_TTL: Duration = Duration::from_secs(86_400);
/// The largest request timeout accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// TSIG clock fudge, in seconds (the RFC 8945 recommendation).
const TSIG_FUDGE: u16 = 300;

/// Errors of DNS providers.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A name is not a valid DNS name, or is outside the provider's zone.
    #[error("invalid dns name '{name}': {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// The provider's configuration is invalid.
    #[error("invalid dns configuration: {0}")]
    InvalidConfig(&'static str),
    /// The server could not be reached or did not answer in time.
    #[error("dns server unavailable")]
    Unavailable(#[source] ProtoError),
    /// The server did not answer within the timeout.
    #[error("dns server did not answer within {0:?}")]
    Timeout(Duration),
    /// The server refused our TSIG signature (wrong key, unknown key, clock skew), or is
    /// not authoritative for the zone.
    #[error("dns update not authorized (wrong TSIG key, or server not authoritative)")]
    NotAuthorized,
    /// The server refused the request (its update policy does not allow it).
    #[error("dns server refused the request")]
    Refused,
    /// The server answered with another error code.
    #[error("dns server answered {0}")]
    Server(ResponseCode),
    /// The epoch record holds something we did not write.
    #[error("unexpected epoch record at {name}: {reason}")]
    UnexpectedRecord {
        /// Its name.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// The outcome of a compare-and-swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    /// The record was the expected one and now is the new one.
    Swapped,
    /// The record was not the expected one; nothing changed.
    PreconditionFailed,
}

/// A fully-qualified DNS name (the service's name). Parsed once, at configuration time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DnsName(Name);

impl DnsName {
    /// Parses a name; a missing final dot is added (names are always absolute here).
    pub fn parse(name: &str) -> Result<Self, DnsError> {
        let invalid = |reason| DnsError::InvalidName {
            name: name.chars().take(256).collect(),
            reason,
        };
        if name.is_empty() || name.len() > 253 {
            return Err(invalid("must be 1 to 253 characters"));
        }
        let mut parsed = Name::from_ascii(name).map_err(|_| invalid("not a valid dns name"))?;
        if parsed.is_root() {
            return Err(invalid("the root is not a service name"));
        }
        parsed.set_fqdn(true);
        Ok(Self(parsed.to_lowercase()))
    }

    fn epoch_name(&self) -> Result<Name, DnsError> {
        self.0
            .prepend_label(EPOCH_LABEL)
            .map_err(|_| DnsError::InvalidName {
                name: self.to_string(),
                reason: "too long to hold the epoch record",
            })
    }
}

impl std::fmt::Display for DnsName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Reads and switches the service's DNS record. Implementations are shared
/// (`Arc<dyn DnsProvider>`) and safe to call concurrently.
#[async_trait]
pub trait DnsProvider: Send + Sync + 'static {
    /// The current state of `name`: its A records (empty when there are none) and its epoch.
    async fn read(&self, name: &DnsName) -> Result<ServiceRecord, DnsError>;

    /// Replaces the state of `name` with `new` (its records with `ttl`), if and only if it
    /// is exactly `expected` now (the same set of addresses and the same epoch, absent
    /// included). Atomic: either everything changes or nothing does. Idempotent in the sense
    /// that repeating a swap that happened answers [`Swap::PreconditionFailed`] and changes
    /// nothing; callers read again to see where things stand.
    async fn compare_and_swap(
        &self,
        name: &DnsName,
        expected: &ServiceRecord,
        new: &ServiceRecord,
        ttl: Duration,
    ) -> Result<Swap, DnsError>;
}

/// How to reach the DNS server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP (default: no truncation, one connection per operation).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

/// The TSIG key updates are signed with (HMAC-SHA256).
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsigKey {
    /// The key's name, as the server knows it (e.g. `tether-key.`).
    pub name: String,
    /// The shared secret, base64 (as `tsig-keygen` prints it).
    pub secret: SecretString,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// Configuration of [`Rfc2136`] (the `[failover.dns]` section, later).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rfc2136Config {
    /// The primary (authoritative) server that accepts updates.
    pub server: SocketAddr,
    /// The zone the service name lives in (its SOA owner, e.g. `tether.test.`).
    pub zone: String,
    /// TCP or UDP (default TCP).
    #[serde(default)]
    pub transport: Transport,
    /// Timeout of one request, in milliseconds (default 2000, at most 60000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// The TSIG key.
    pub tsig: TsigKey,
}

fn default_timeout_ms() -> u64 {
    2000
}

/// A [`DnsProvider`] that speaks RFC 2136 dynamic updates, signed with TSIG, to one
/// authoritative server (BIND, Knot, PowerDNS…). Reads are signed too, and go to the same
/// server, so they see what the updates change. Every operation opens its own connection.
pub struct Rfc2136 {
    server: SocketAddr,
    zone: Name,
    transport: Transport,
    timeout: Duration,
    signer: Arc<dyn MessageFinalizer>,
}

impl std::fmt::Debug for Rfc2136 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rfc2136")
            .field("server", &self.server)
            .field("zone", &self.zone)
            .field("transport", &self.transport)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Rfc2136 {
    /// Checks the configuration and builds the provider (no network yet).
    pub fn new(config: &Rfc2136Config) -> Result<Self, DnsError> {
        let zone = DnsName::parse(&config.zone)?.0;
        let timeout = Duration::from_millis(config.timeout_ms);
        if timeout.is_zero() || timeout > MAX_TIMEOUT {
            return Err(DnsError::InvalidConfig(
                "timeout_ms must be between 1 and 60000",
            ));
        }
        let key_name = Name::from_ascii(&config.tsig.name)
            .ok()
            .filter(|n| !n.is_root())
            .ok_or(DnsError::InvalidConfig("tsig.name is not a valid key name"))?;
        let secret = base64::engine::general_purpose::STANDARD
            .decode(config.tsig.secret.expose_secret().trim())
            .map_err(|_| DnsError::InvalidConfig("tsig.secret is not base64"))?;
        if secret.len() < 16 {
            return Err(DnsError::InvalidConfig(
                "tsig.secret is shorter than 16 bytes",
            ));
        }
        let signer = TSigner::new(secret, TsigAlgorithm::HmacSha256, key_name, TSIG_FUDGE)
            .map_err(|_| DnsError::InvalidConfig("hmac-sha256 is not available"))?;
        Ok(Self {
            server: config.server,
            zone,
            transport: config.transport,
            timeout,
            signer: Arc::new(SignEverything(signer)),
        })
    }

    fn check_in_zone(&self, name: &DnsName) -> Result<(), DnsError> {
        if self.zone.zone_of(&name.0) {
            Ok(())
        } else {
            Err(DnsError::InvalidName {
                name: name.to_string(),
                reason: "outside the provider's zone",
            })
        }
    }

    /// Sends one message on a fresh connection and returns the (verified) answer.
    async fn exchange(&self, message: Message) -> Result<DnsResponse, DnsError> {
        let work = async {
            let provider = TokioRuntimeProvider::new();
            let (client, background) = match self.transport {
                Transport::Tcp => {
                    let (stream, handle) =
                        TcpClientStream::new(self.server, None, Some(self.timeout), provider);
                    let mut connect = Client::with_timeout(
                        stream,
                        handle,
                        self.timeout,
                        Some(self.signer.clone()),
                    )
                    .await
                    .map_err(DnsError::Unavailable)?;
                    // Queries are not sent with EDNS: BIND answers an update with EDNS
                    // the same either way, and plain messages are simpler to sign.
                    connect.0.disable_edns();
                    (connect.0, tokio::spawn(connect.1))
                }
                Transport::Udp => {
                    let stream = UdpClientStream::builder(self.server, provider)
                        .with_timeout(Some(self.timeout))
                        .with_signer(Some(self.signer.clone()))
                        .build();
                    let mut connect = Client::connect(stream)
                        .await
                        .map_err(DnsError::Unavailable)?;
                    connect.0.disable_edns();
                    (connect.0, tokio::spawn(connect.1))
                }
            };
            let answer = client.send(message).first_answer().await;
            drop(client);
            background.abort();
            answer.map_err(DnsError::Unavailable)
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| DnsError::Timeout(self.timeout))?
    }

    async fn query(&self, name: Name, rtype: RecordType) -> Result<Vec<Record>, DnsError> {
        let mut message = Message::new();
        message
            .set_id(rand::random())
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(false);
        message.add_query(Query::query(name.clone(), rtype));
        let response = self.exchange(message).await?;
        match response.response_code() {
            ResponseCode::NoError | ResponseCode::NXDomain => Ok(response
                .answers()
                .iter()
                .filter(|r| r.record_type() == rtype && r.name() == &name)
                .cloned()
                .collect()),
            other => Err(rcode_error(other)),
        }
    }
}

/// Signs every message (queries included), and lets an unsigned NOTAUTH answer through as
/// what it is — a refusal — instead of a signature error: servers do not sign their
/// answer to a request whose signature they could not check (RFC 8945 §5.3.2). Only that
/// answer code skips verification, and it can only make an operation fail.
struct SignEverything(TSigner);

impl MessageFinalizer for SignEverything {
    fn finalize_message(
        &self,
        message: &Message,
        current_time: u32,
    ) -> Result<(Vec<Record>, Option<MessageVerifier>), ProtoError> {
        let (records, verifier) = self.0.finalize_message(message, current_time)?;
        let verifier = verifier.map(|mut verify| -> MessageVerifier {
            Box::new(move |answer: &[u8]| match verify(answer) {
                Ok(response) => Ok(response),
                Err(error) => match DnsResponse::from_buffer(answer.to_vec()) {
                    Ok(response) if response.response_code() == ResponseCode::NotAuth => {
                        Ok(response)
                    }
                    _ => Err(error),
                },
            })
        });
        Ok((records, verifier))
    }

    fn should_finalize_message(&self, _message: &Message) -> bool {
        true
    }
}

fn rcode_error(code: ResponseCode) -> DnsError {
    match code {
        ResponseCode::NotAuth => DnsError::NotAuthorized,
        ResponseCode::Refused => DnsError::Refused,
        other => DnsError::Server(other),
    }
}

fn epoch_text(epoch: Epoch) -> String {
    format!("{EPOCH_PREFIX}{epoch}")
}

fn parse_epoch(name: &Name, records: &[Record]) -> Result<Option<Epoch>, DnsError> {
    let unexpected = |reason| DnsError::UnexpectedRecord {
        name: name.to_string(),
        reason,
    };
    match records {
        [] => Ok(None),
        [record] => {
            let RData::TXT(txt) = record.data() else {
                return Err(unexpected("not a TXT record"));
            };
            let [text] = txt.txt_data() else {
                return Err(unexpected("not a single string"));
            };
            std::str::from_utf8(text)
                .ok()
                .and_then(|t| t.strip_prefix(EPOCH_PREFIX))
                .and_then(|n| n.parse::<u64>().ok())
                .and_then(Epoch::new)
                .map(Some)
                .ok_or_else(|| unexpected("not 'tether-epoch=N'"))
        }
        _ => Err(unexpected("more than one record")),
    }
}

/// Seconds since the epoch, for nothing but a sanity check of TSIG's time window.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn ttl_secs(ttl: Duration) -> Result<u32, DnsError> {
    if ttl < Duration::from_secs(1) || ttl > MAX_RECORD_TTL {
        return Err(DnsError::InvalidConfig(
            "record ttl must be between 1 s and one day",
        ));
    }
    u32::try_from(ttl.as_secs())
        .map_err(|_| DnsError::InvalidConfig("record ttl must be between 1 s and one day"))
}

/// A prerequisite or a deletion that names an RRset without data.
fn rrset_marker(name: &Name, rtype: RecordType, class: DNSClass) -> Record {
    let mut record = Record::update0(name.clone(), 0, rtype);
    record.set_dns_class(class);
    record
}

#[async_trait]
impl DnsProvider for Rfc2136 {
    async fn read(&self, name: &DnsName) -> Result<ServiceRecord, DnsError> {
        self.check_in_zone(name)?;
        let epoch_name = name.epoch_name()?;
        let a = self.query(name.0.clone(), RecordType::A).await?;
        let txt = self.query(epoch_name.clone(), RecordType::TXT).await?;
        let addrs = a
            .iter()
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
        Ok(ServiceRecord {
            addrs,
            epoch: parse_epoch(&epoch_name, &txt)?,
        })
    }

    async fn compare_and_swap(
        &self,
        name: &DnsName,
        expected: &ServiceRecord,
        new: &ServiceRecord,
        ttl: Duration,
    ) -> Result<Swap, DnsError> {
        self.check_in_zone(name)?;
        let ttl = ttl_secs(ttl)?;
        let epoch_name = name.epoch_name()?;
        let owner = &name.0;

        let mut message = Message::new();
        message
            .set_id(rand::random())
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Update)
            .set_recursion_desired(false);
        let mut zone = Query::new();
        zone.set_name(self.zone.clone())
            .set_query_class(DNSClass::IN)
            .set_query_type(RecordType::SOA);
        message.add_zone(zone);

        // Prerequisites (RFC 2136 §2.4): the A RRset is exactly `expected.addrs` ("RRset
        // exists (value dependent)": the whole set, TTL 0), or absent ("RRset does not
        // exist": class NONE, no data); the same for the epoch TXT.
        if expected.addrs.is_empty() {
            message.add_pre_requisite(rrset_marker(owner, RecordType::A, DNSClass::NONE));
        } else {
            for addr in &expected.addrs {
                message.add_pre_requisite(Record::from_rdata(owner.clone(), 0, RData::A(A(*addr))));
            }
        }
        match expected.epoch {
            None => message.add_pre_requisite(rrset_marker(
                &epoch_name,
                RecordType::TXT,
                DNSClass::NONE,
            )),
            Some(epoch) => message.add_pre_requisite(Record::from_rdata(
                epoch_name.clone(),
                0,
                RData::TXT(TXT::new(vec![epoch_text(epoch)])),
            )),
        }

        // Updates (§2.5): delete both RRsets whole (class ANY), then add the new records.
        message.add_update(rrset_marker(owner, RecordType::A, DNSClass::ANY));
        for addr in &new.addrs {
            message.add_update(Record::from_rdata(owner.clone(), ttl, RData::A(A(*addr))));
        }
        message.add_update(rrset_marker(&epoch_name, RecordType::TXT, DNSClass::ANY));
        if let Some(epoch) = new.epoch {
            message.add_update(Record::from_rdata(
                epoch_name.clone(),
                ttl,
                RData::TXT(TXT::new(vec![epoch_text(epoch)])),
            ));
        }

        let response = self.exchange(message).await?;
        match response.response_code() {
            ResponseCode::NoError => Ok(Swap::Swapped),
            // The prerequisites did not hold.
            ResponseCode::NXRRSet
            | ResponseCode::YXRRSet
            | ResponseCode::NXDomain
            | ResponseCode::YXDomain => Ok(Swap::PreconditionFailed),
            ResponseCode::NotAuth => {
                tracing::warn!(
                    server = %self.server,
                    unix_time = unix_now(),
                    "dns update not authorized: check the TSIG key and the clocks"
                );
                Err(DnsError::NotAuthorized)
            }
            other => Err(rcode_error(other)),
        }
    }
}

/// An in-memory [`DnsProvider`] with the same compare-and-swap semantics, for tests of the
/// prober and of other crates. It can be told to fail, to test error paths.
#[derive(Debug, Default, Clone)]
pub struct FakeDns {
    inner: Arc<Mutex<FakeDnsState>>,
}

#[derive(Debug, Default)]
struct FakeDnsState {
    records: HashMap<DnsName, (ServiceRecord, Duration)>,
    fail_next: u32,
    fail_next_swaps: u32,
    swaps: u32,
}

impl FakeDns {
    /// An empty fake.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a name's state directly (with a 60 s TTL).
    pub fn set(&self, name: &DnsName, record: ServiceRecord) {
        self.lock()
            .records
            .insert(name.clone(), (record, Duration::from_secs(60)));
    }

    /// The state of a name and the TTL it was written with.
    pub fn get(&self, name: &DnsName) -> Option<(ServiceRecord, Duration)> {
        self.lock().records.get(name).cloned()
    }

    /// The next `n` calls fail with [`DnsError::Timeout`].
    pub fn fail_next(&self, n: u32) {
        self.lock().fail_next = n;
    }

    /// The next `n` compare-and-swaps (only) fail with [`DnsError::Timeout`].
    pub fn fail_next_swaps(&self, n: u32) {
        self.lock().fail_next_swaps = n;
    }

    /// How many swaps happened.
    pub fn swaps(&self) -> u32 {
        self.lock().swaps
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeDnsState> {
        // A panic while holding the lock can only come from a test; keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_failure(state: &mut FakeDnsState) -> Result<(), DnsError> {
        if state.fail_next > 0 {
            state.fail_next -= 1;
            return Err(DnsError::Timeout(Duration::ZERO));
        }
        Ok(())
    }
}

#[async_trait]
impl DnsProvider for FakeDns {
    async fn read(&self, name: &DnsName) -> Result<ServiceRecord, DnsError> {
        let mut state = self.lock();
        Self::take_failure(&mut state)?;
        Ok(state
            .records
            .get(name)
            .map(|(r, _)| r.clone())
            .unwrap_or_default())
    }

    async fn compare_and_swap(
        &self,
        name: &DnsName,
        expected: &ServiceRecord,
        new: &ServiceRecord,
        ttl: Duration,
    ) -> Result<Swap, DnsError> {
        ttl_secs(ttl)?;
        let mut state = self.lock();
        Self::take_failure(&mut state)?;
        if state.fail_next_swaps > 0 {
            state.fail_next_swaps -= 1;
            return Err(DnsError::Timeout(Duration::ZERO));
        }
        let current = state
            .records
            .get(name)
            .map(|(r, _)| r.clone())
            .unwrap_or_default();
        if &current != expected {
            return Ok(Swap::PreconditionFailed);
        }
        state.records.insert(name.clone(), (new.clone(), ttl));
        state.swaps += 1;
        Ok(Swap::Swapped)
    }
}

/// A convenience for configuration and tests: the addresses as a record without epoch.
pub fn addrs(addrs: &[Ipv4Addr]) -> ServiceRecord {
    ServiceRecord::new(addrs.iter().copied(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> DnsName {
        DnsName::parse(s).unwrap()
    }

    #[test]
    fn names_are_absolute_and_lowercase() {
        assert_eq!(name("API.Tether.test").to_string(), "api.tether.test.");
        assert!(DnsName::parse("").is_err());
        assert!(DnsName::parse(".").is_err());
        assert!(DnsName::parse("a..b").is_err());
        assert!(DnsName::parse(&"a.".repeat(200)).is_err());
    }

    #[test]
    fn config_is_checked() {
        let config = |secret: &str, timeout_ms| Rfc2136Config {
            server: "127.0.0.1:53".parse().unwrap(),
            zone: "tether.test.".into(),
            transport: Transport::Tcp,
            timeout_ms,
            tsig: TsigKey {
                name: "tether-key".into(),
                secret: secret.to_string().into(),
            },
        };
        let good = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0";
        assert!(Rfc2136::new(&config(good, 2000)).is_ok());
        assert!(matches!(
            Rfc2136::new(&config("not base64!", 2000)),
            Err(DnsError::InvalidConfig(_))
        ));
        assert!(matches!(
            Rfc2136::new(&config("c2hvcnQ=", 2000)),
            Err(DnsError::InvalidConfig(_))
        ));
        assert!(matches!(
            Rfc2136::new(&config(good, 0)),
            Err(DnsError::InvalidConfig(_))
        ));
        assert!(matches!(
            Rfc2136::new(&config(good, 600_000)),
            Err(DnsError::InvalidConfig(_))
        ));
        // Secrets never show in debug output.
        let debug = format!("{:?}", config(good, 2000));
        assert!(!debug.contains(good), "{debug}");
    }

    #[tokio::test]
    async fn names_outside_the_zone_are_refused_before_any_network() {
        let dns = Rfc2136::new(&Rfc2136Config {
            // Nothing listens there; the check must come first.
            server: "127.0.0.1:9".parse().unwrap(),
            zone: "tether.test.".into(),
            transport: Transport::Udp,
            timeout_ms: 100,
            tsig: TsigKey {
                name: "k".into(),
                secret: "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0".to_string().into(),
            },
        })
        .unwrap();
        let err = dns
            .compare_and_swap(
                &name("api.example.com"),
                &ServiceRecord::default(),
                &addrs(&[Ipv4Addr::LOCALHOST]),
                Duration::from_secs(5),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, DnsError::InvalidName { .. }), "{err}");
    }

    #[tokio::test]
    async fn the_fake_compares_and_swaps() {
        let dns = FakeDns::new();
        let n = name("api.tether.test");
        let a = addrs(&[Ipv4Addr::new(127, 0, 0, 10)]);
        let b = ServiceRecord::new([Ipv4Addr::new(127, 0, 0, 20)], Epoch::new(3));
        let ttl = Duration::from_secs(5);
        assert_eq!(dns.read(&n).await.unwrap(), ServiceRecord::default());
        assert_eq!(
            dns.compare_and_swap(&n, &ServiceRecord::default(), &a, ttl)
                .await
                .unwrap(),
            Swap::Swapped
        );
        assert_eq!(
            dns.compare_and_swap(&n, &ServiceRecord::default(), &b, ttl)
                .await
                .unwrap(),
            Swap::PreconditionFailed
        );
        assert_eq!(
            dns.compare_and_swap(&n, &a, &b, ttl).await.unwrap(),
            Swap::Swapped
        );
        assert_eq!(dns.read(&n).await.unwrap(), b);
        dns.fail_next(1);
        assert!(dns.read(&n).await.is_err());
        assert!(dns.read(&n).await.is_ok());
        assert_eq!(dns.swaps(), 2);
    }
}
