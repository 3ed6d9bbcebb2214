//! The RFC 2136 provider against a real BIND (`named`, Debian package `bind9`) started by
//! the test on a random loopback port: reads, compare-and-swap, stale expectations, and
//! updates signed with the wrong key.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers may panic: a panic is a test failure"
)]

use std::net::Ipv4Addr;
use std::time::Duration;

use tether_failover::dns::{DnsError, DnsName, DnsProvider, Rfc2136, Swap, Transport, TsigKey};
use tether_failover::testing::BindServer;
use tether_failover::{Epoch, ServiceRecord};

const A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
const A2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 12);
const B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 21);
const TTL: Duration = Duration::from_secs(5);

async fn bind() -> BindServer {
    BindServer::start("tether.test.", &[("api", A), ("api", A2)])
        .await
        .expect("start named")
}

fn api() -> DnsName {
    DnsName::parse("api.tether.test").unwrap()
}

async fn read_cas_and_stale(transport: Transport) {
    let server = bind().await;
    let dns = Rfc2136::new(&server.config(transport)).unwrap();

    // The zone file's records, no epoch yet.
    let start = dns.read(&api()).await.unwrap();
    assert_eq!(start, ServiceRecord::new([A, A2], None));

    // Flip to B for epoch 7.
    let flipped = ServiceRecord::new([B], Epoch::new(7));
    assert_eq!(
        dns.compare_and_swap(&api(), &start, &flipped, TTL)
            .await
            .unwrap(),
        Swap::Swapped,
        "{}",
        server.log()
    );
    assert_eq!(dns.read(&api()).await.unwrap(), flipped);

    // A second prober still believing the old state changes nothing.
    let back = ServiceRecord::new([A], Epoch::new(6));
    assert_eq!(
        dns.compare_and_swap(&api(), &start, &back, TTL)
            .await
            .unwrap(),
        Swap::PreconditionFailed
    );
    // Nor does one that knows the addresses but not the epoch, or only part of the set.
    assert_eq!(
        dns.compare_and_swap(&api(), &ServiceRecord::new([B], None), &back, TTL)
            .await
            .unwrap(),
        Swap::PreconditionFailed
    );
    assert_eq!(
        dns.compare_and_swap(&api(), &ServiceRecord::new([A], None), &back, TTL)
            .await
            .unwrap(),
        Swap::PreconditionFailed
    );
    assert_eq!(dns.read(&api()).await.unwrap(), flipped);

    // A name with no records at all: "does not exist" prerequisites.
    let fresh = DnsName::parse("new.tether.test.").unwrap();
    assert_eq!(dns.read(&fresh).await.unwrap(), ServiceRecord::default());
    assert_eq!(
        dns.compare_and_swap(&fresh, &ServiceRecord::default(), &flipped, TTL)
            .await
            .unwrap(),
        Swap::Swapped
    );
    assert_eq!(
        dns.compare_and_swap(&fresh, &ServiceRecord::default(), &flipped, TTL)
            .await
            .unwrap(),
        Swap::PreconditionFailed,
        "a repeated swap from 'absent' must fail once the records exist"
    );
    // And back to nothing.
    assert_eq!(
        dns.compare_and_swap(&fresh, &flipped, &ServiceRecord::default(), TTL)
            .await
            .unwrap(),
        Swap::Swapped
    );
    assert_eq!(dns.read(&fresh).await.unwrap(), ServiceRecord::default());
}

#[tokio::test]
async fn reads_and_swaps_over_tcp() {
    read_cas_and_stale(Transport::Tcp).await;
}

#[tokio::test]
async fn reads_and_swaps_over_udp() {
    read_cas_and_stale(Transport::Udp).await;
}

#[tokio::test]
async fn updates_signed_with_a_wrong_key_are_refused() {
    let server = bind().await;
    let good = Rfc2136::new(&server.config(Transport::Tcp)).unwrap();
    let start = good.read(&api()).await.unwrap();
    let flipped = ServiceRecord::new([B], Epoch::new(7));

    // The right key name with another secret, then an unknown key name.
    let wrong_secret = TsigKey {
        secret: "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZy0="
            .to_string()
            .into(),
        ..server.key()
    };
    let unknown_name = TsigKey {
        name: "someone-else.".into(),
        ..server.key()
    };
    for key in [wrong_secret, unknown_name] {
        for transport in [Transport::Tcp, Transport::Udp] {
            let mut config = server.config(transport);
            config.tsig = key.clone();
            let bad = Rfc2136::new(&config).unwrap();
            let err = bad
                .compare_and_swap(&api(), &start, &flipped, TTL)
                .await
                .unwrap_err();
            assert!(
                matches!(err, DnsError::NotAuthorized),
                "{transport:?}: {err:?}\n{}",
                server.log()
            );
        }
    }
    // Nothing changed.
    assert_eq!(good.read(&api()).await.unwrap(), start);
}

#[tokio::test]
async fn names_outside_the_zone_and_dead_servers_are_errors() {
    let server = bind().await;
    let dns = Rfc2136::new(&server.config(Transport::Tcp)).unwrap();
    let outside = DnsName::parse("api.example.com").unwrap();
    assert!(matches!(
        dns.read(&outside).await,
        Err(DnsError::InvalidName { .. })
    ));

    // A port nothing listens on: an error within the timeout, not a hang.
    let mut config = server.config(Transport::Udp);
    config
        .server
        .set_port(tether_failover::testing::free_port().unwrap());
    config.timeout_ms = 300;
    let dead = Rfc2136::new(&config).unwrap();
    let started = std::time::Instant::now();
    let err = dead.read(&api()).await.unwrap_err();
    assert!(
        matches!(err, DnsError::Timeout(_) | DnsError::Unavailable(_)),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}
