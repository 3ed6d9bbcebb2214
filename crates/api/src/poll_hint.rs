//! How long a client should wait before polling an operation again: short while the operation
//! is young, growing with its age up to the configured `Retry-After`.
//!
//! Most linker sagas end within tens of milliseconds, so a fixed `Retry-After: 10` kept an SDK
//! waiting ten seconds for a saga that had long finished. The hint is the operation's age
//! (a client that follows it polls at roughly 2×, 4×, 8×… the time of its first poll),
//! at least [`FIRST`] and at most the configured maximum.
//!
//! Sub-second hints travel in `retry-after-ms` (read by azure-core for Python, azcore for Go
//! and Azure.Core for .NET). azure-core reads `Retry-After` *before* `retry-after-ms`, and
//! `Retry-After` is whole seconds (never 0: a 0 makes azure-core fall back to its 30 s
//! default), so a status answer whose hint is below a second carries `retry-after-ms` alone.
//! From one second on both headers are sent, `Retry-After` rounded up. The first answer of a
//! long-running operation (the `201`/`202` of a PUT, PATCH, DELETE or action) keeps
//! `Retry-After` in any case, as ARM's conventions require: the SDKs poll once at once after
//! it, before sleeping, so its hint only matters to clients that sleep first.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use chrono::{DateTime, Utc};

/// The shortest hint: a little more than a poll's own round trip.
pub const FIRST: Duration = Duration::from_millis(25);

/// The `retry-after-ms` header.
static RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");

/// The hint for an operation accepted at `start` (in the future under clock skew between
/// replicas: treated as just accepted), capped at `max`.
pub fn for_operation(start: DateTime<Utc>, now: DateTime<Utc>, max: Duration) -> Duration {
    let age = (now - start).to_std().unwrap_or_default();
    hint(age, max)
}

/// The hint for an operation of age `age`: the age itself, within [`FIRST`]..=`max`.
pub fn hint(age: Duration, max: Duration) -> Duration {
    age.clamp(FIRST, max.max(FIRST))
}

/// Writes `hint` as polling headers. `seconds_always`: send `Retry-After` (rounded up, at
/// least 1) even when the hint is shorter than a second.
pub fn insert(headers: &mut HeaderMap, hint: Duration, seconds_always: bool) {
    let millis = u64::try_from(hint.as_millis()).unwrap_or(u64::MAX);
    headers.insert(RETRY_AFTER_MS.clone(), HeaderValue::from(millis));
    if seconds_always || hint >= Duration::from_secs(1) {
        let seconds = millis.div_ceil(1000).max(1);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(10);

    #[test]
    fn a_young_operation_gets_a_short_hint_that_grows_with_its_age() {
        assert_eq!(hint(Duration::ZERO, MAX), FIRST);
        assert_eq!(
            hint(Duration::from_millis(40), MAX),
            Duration::from_millis(40)
        );
        assert_eq!(hint(Duration::from_secs(3), MAX), Duration::from_secs(3));
        assert_eq!(hint(Duration::from_secs(3600), MAX), MAX);
    }

    #[test]
    fn the_start_in_the_future_is_a_new_operation() {
        let now = Utc::now();
        let later = now + chrono::Duration::seconds(5);
        assert_eq!(for_operation(later, now, MAX), FIRST);
    }

    #[test]
    fn sub_second_hints_travel_in_milliseconds_only_unless_seconds_are_required() {
        let mut headers = HeaderMap::new();
        insert(&mut headers, Duration::from_millis(40), false);
        assert_eq!(headers["retry-after-ms"], "40");
        assert!(headers.get(header::RETRY_AFTER).is_none());

        let mut headers = HeaderMap::new();
        insert(&mut headers, Duration::from_millis(40), true);
        assert_eq!(headers["retry-after-ms"], "40");
        assert_eq!(headers[header::RETRY_AFTER], "1");

        let mut headers = HeaderMap::new();
        insert(&mut headers, Duration::from_millis(2500), false);
        assert_eq!(headers["retry-after-ms"], "2500");
        assert_eq!(headers[header::RETRY_AFTER], "3");
    }
}
