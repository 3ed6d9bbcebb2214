//! Region fencing: the leadership epoch written next to every saga step commit, and the
//! [`WriteGate`] a replica asks before it writes. The gate's implementation (etcd leadership)
//! lives in the server; the crates below it only see this trait.

use std::fmt;

use crate::Error;

/// The pair's leadership epoch: the fencing token. It only grows (each new leader gets a
/// larger one); a commit carrying an older epoch than the one stored is refused.
/// Single-region deployments write [`Epoch::ZERO`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(u64);

impl Epoch {
    /// The epoch of a replica that runs without regions (always allowed to write).
    pub const ZERO: Epoch = Epoch(0);

    /// The epoch `value`.
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The raw value.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// As stored (`bigint`); epochs beyond `i64::MAX` saturate, which etcd revisions never reach.
    pub fn as_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Whether this replica may write now, and with which epoch. Writers ask right before each
/// commit; the answer may change at any time (a region loses or gains leadership).
pub trait WriteGate: Send + Sync + 'static {
    /// `Some(epoch)` while this replica's region leads with a confirmed lease; `None` when it
    /// must not write (standby, fenced, or not yet confirmed).
    fn epoch(&self) -> Option<Epoch>;
}

/// The gate of a replica without regions: always open, at [`Epoch::ZERO`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleRegion;

impl WriteGate for SingleRegion {
    fn epoch(&self) -> Option<Epoch> {
        Some(Epoch::ZERO)
    }
}

/// Stable ARM code of a write refused because this replica's region is not active.
pub const REGION_NOT_ACTIVE: &str = "RegionNotActive";

/// `Retry-After` of [`REGION_NOT_ACTIVE`]: the default DNS record TTL at failover, after
/// which a client resolving the service name again reaches the active region.
pub const REGION_RETRY_AFTER_SECS: u32 = 5;

impl Error {
    /// 503 `RegionNotActive` + `Retry-After`: this replica's region is a standby or fenced;
    /// reads are served, writes go to the active region (retry through the service name).
    pub fn region_not_active() -> Self {
        Error::new(
            crate::ErrorKind::Unavailable,
            REGION_NOT_ACTIVE,
            "this region is not active; retry the request",
        )
        .with_retry_after(REGION_RETRY_AFTER_SECS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_order_and_saturate() {
        assert!(Epoch::new(2) > Epoch::new(1));
        assert_eq!(Epoch::new(u64::MAX).as_i64(), i64::MAX);
        assert_eq!(SingleRegion.epoch(), Some(Epoch::ZERO));
    }

    #[test]
    fn region_not_active_is_a_retryable_503() {
        let e = Error::region_not_active();
        assert_eq!(e.kind(), crate::ErrorKind::Unavailable);
        assert_eq!(e.code(), REGION_NOT_ACTIVE);
        assert_eq!(e.retry_after(), Some(REGION_RETRY_AFTER_SECS));
    }
}
