//! The small typed values failover passes around: region and pair names, the leadership
//! epoch, and the service's DNS record state.
//!
//! TODO-cleanup: `RegionName` and `Epoch` belong in `tether-model` once the server and the
//! saga engine need them (the epoch is written next to every saga step commit).

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid {what} '{value}': use 1 to 63 characters a-z, 0-9 and '-', not starting or ending with '-'"
)]
pub struct InvalidName {
    /// What kind of name.
    pub what: &'static str,
    /// The refused value (names are not secret).
    pub value: String,
}

fn check_name(what: &'static str, value: &str) -> Result<(), InvalidName> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && !value.starts_with('-')
        && !value.ends_with('-')
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(InvalidName {
            what,
            value: value.chars().take(80).collect(),
        })
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Parses a name: 1 to 63 characters `a-z`, `0-9` and `-` (it is used in etcd
            /// keys, metric labels and logs, so it is kept boring).
            pub fn parse(value: &str) -> Result<Self, InvalidName> {
                check_name($what, value)?;
                Ok(Self(value.to_string()))
            }

            /// The name.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A region: a set of `tether serve` replicas sharing one Postgres primary (DESIGN §5).
    RegionName,
    "region name"
);
name_type!(
    /// A region pair (an active region and its standby): the unit that has one leader.
    PairName,
    "pair name"
);

/// The leadership epoch of a pair: the etcd `create_revision` of the pair's leader key.
/// Every new leader creates the key afresh, so epochs only grow; a writer that carries an
/// older epoch than the current one is stale and must not commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(u64);

impl Epoch {
    /// An epoch from an etcd revision; `None` for revisions that cannot be epochs (≤ 0).
    pub fn from_revision(revision: i64) -> Option<Self> {
        u64::try_from(revision).ok().filter(|r| *r > 0).map(Self)
    }

    /// An epoch from its number; `None` for 0.
    pub fn new(value: u64) -> Option<Self> {
        (value > 0).then_some(Self(value))
    }

    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What DNS says about the service name: its A records and the epoch of the leader that
/// wrote them last (a TXT record next to them; `None` when there is none, e.g. before the
/// first failover). Compare-and-swap compares both, so a controller acting for an old epoch
/// can never overwrite the work of a newer one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceRecord {
    /// The A records (IPv4 only for now: TODO-robustness AAAA).
    pub addrs: BTreeSet<Ipv4Addr>,
    /// The epoch written next to them.
    pub epoch: Option<Epoch>,
}

impl ServiceRecord {
    /// A record pointing at `addrs` written for `epoch`.
    pub fn new(addrs: impl IntoIterator<Item = Ipv4Addr>, epoch: Option<Epoch>) -> Self {
        Self {
            addrs: addrs.into_iter().collect(),
            epoch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(RegionName::parse("region-a").is_ok());
        assert!(RegionName::parse("a1").is_ok());
        for bad in ["", "-a", "a-", "A", "a/b", "a b", &"x".repeat(64)] {
            assert!(RegionName::parse(bad).is_err(), "{bad:?}");
        }
        let e = PairName::parse("Pair/1").unwrap_err();
        assert_eq!(e.what, "pair name");
    }

    #[test]
    fn epochs_come_from_positive_revisions() {
        assert_eq!(Epoch::from_revision(0), None);
        assert_eq!(Epoch::from_revision(-3), None);
        assert_eq!(Epoch::from_revision(7).map(Epoch::get), Some(7));
        assert!(Epoch::new(2) > Epoch::new(1));
    }
}
