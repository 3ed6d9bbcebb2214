//! Request throttling as ARM does it: token buckets per principal and per subscription, each
//! for reads (GET, HEAD) and for writes (every other method) separately, so pollers never
//! starve writes. A request over a budget gets `429 SubscriptionRequestsThrottled` with ARM's
//! message and `Retry-After` (whole seconds, rounded up); every answered request reports the
//! budget left in `x-ms-ratelimit-remaining-subscription-reads` / `-writes`.
//!
//! Buckets are `governor` keyed limiters (GCRA). Their number is bounded: idle buckets are
//! dropped once the count passes [`ThrottleSettings::max_keys`], and if that is not enough (a
//! flood of distinct keys) the limiter starts afresh, so memory stays bounded whatever ids
//! requests name. Subscriptions are keyed only by canonical GUIDs, principals by their verified
//! object id.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use tether_app::auth::Principal;
use tether_model::{Error, ErrorKind};

use crate::{ApiError, ApiState};

/// Budgets (each applies to reads and to writes separately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// Requests a principal may make per minute, sustained.
    pub per_principal_per_minute: u32,
    /// Requests a principal may make at once after being idle.
    pub principal_burst: u32,
    /// Requests all principals together may make per minute on one subscription.
    pub per_subscription_per_minute: u32,
    /// Requests all principals together may make at once on one subscription.
    pub subscription_burst: u32,
    /// Most buckets kept per limiter before idle ones are dropped.
    pub max_keys: usize,
}

impl Default for ThrottleSettings {
    /// ARM's defaults: 250 at once refilling 25/s per principal; 15 times that per
    /// subscription.
    fn default() -> Self {
        Self {
            per_principal_per_minute: 1500,
            principal_burst: 250,
            per_subscription_per_minute: 22_500,
            subscription_burst: 3750,
            max_keys: 100_000,
        }
    }
}

/// Reads or writes: separate budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// GET and HEAD.
    Read,
    /// Everything else.
    Write,
}

impl Class {
    /// The class of a method.
    pub fn of(method: &Method) -> Self {
        if method == Method::GET || method == Method::HEAD {
            Class::Read
        } else {
            Class::Write
        }
    }

    fn word(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Write => "write",
        }
    }

    /// The header reporting the budget left.
    pub fn remaining_header(self) -> &'static str {
        match self {
            Class::Read => "x-ms-ratelimit-remaining-subscription-reads",
            Class::Write => "x-ms-ratelimit-remaining-subscription-writes",
        }
    }
}

type Limiter =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// One keyed limiter whose number of keys is bounded.
struct Bounded {
    quota: Quota,
    max_keys: usize,
    limiter: RwLock<Arc<Limiter>>,
    checks: AtomicU64,
}

/// How often (in checks) the number of keys is looked at.
const SWEEP_EVERY: u64 = 256;

impl Bounded {
    fn new(per_minute: u32, burst: u32, max_keys: usize) -> Self {
        let quota =
            Quota::per_minute(NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN));
        Self {
            quota,
            max_keys: max_keys.max(1),
            limiter: RwLock::new(Arc::new(Self::fresh(quota))),
            checks: AtomicU64::new(0),
        }
    }

    fn fresh(quota: Quota) -> Limiter {
        RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>()
    }

    fn current(&self) -> Arc<Limiter> {
        self.limiter
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes one request from `key`'s bucket: the budget left, or how long to wait.
    fn check(&self, key: &str) -> Result<u32, Duration> {
        let limiter = self.current();
        let key = key.to_string();
        let outcome = match limiter.check_key(&key) {
            Ok(snapshot) => Ok(snapshot.remaining_burst_capacity()),
            Err(not_until) => Err(not_until.wait_time_from(limiter.clock().now())),
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == 0
            || limiter.len() > self.max_keys
        {
            self.sweep(&limiter);
        }
        outcome
    }

    /// Drops idle buckets when there are too many; starts afresh if that is not enough.
    fn sweep(&self, limiter: &Limiter) {
        if limiter.len() <= self.max_keys {
            return;
        }
        limiter.retain_recent();
        limiter.shrink_to_fit();
        if limiter.len() > self.max_keys {
            metrics::counter!("tether_throttle_resets_total").increment(1);
            tracing::warn!(
                keys = limiter.len(),
                "too many throttling buckets are busy; starting afresh"
            );
            *self.limiter.write().unwrap_or_else(PoisonError::into_inner) =
                Arc::new(Self::fresh(self.quota));
        }
    }

    fn len(&self) -> usize {
        self.current().len()
    }
}

/// Why a request was throttled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttled {
    /// Seconds until a retry can succeed (at least 1).
    pub retry_after: u32,
    /// ARM's message.
    pub message: String,
}

impl From<Throttled> for Error {
    fn from(t: Throttled) -> Self {
        Error::new(
            ErrorKind::TooManyRequests,
            "SubscriptionRequestsThrottled",
            t.message,
        )
        .with_retry_after(t.retry_after)
    }
}

/// The per-principal and per-subscription budgets of one replica.
pub struct Throttle {
    principal: [Bounded; 2],
    subscription: [Bounded; 2],
}

impl Throttle {
    /// Budgets as configured.
    pub fn new(settings: &ThrottleSettings) -> Self {
        let p = || {
            Bounded::new(
                settings.per_principal_per_minute,
                settings.principal_burst,
                settings.max_keys,
            )
        };
        let s = || {
            Bounded::new(
                settings.per_subscription_per_minute,
                settings.subscription_burst,
                settings.max_keys,
            )
        };
        Self {
            principal: [p(), p()],
            subscription: [s(), s()],
        }
    }

    /// Takes one request of `class` from the principal's and then the subscription's budget.
    /// Returns the budget left (the subscription's when there is one), or why it is refused.
    pub fn check(
        &self,
        class: Class,
        principal: Option<&str>,
        subscription: Option<&str>,
    ) -> Result<u32, Throttled> {
        let i = class as usize;
        let seconds = |wait: Duration| {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            u32::try_from(secs.clamp(1, 3600)).unwrap_or(3600)
        };
        let mut remaining = u32::MAX;
        if let Some(who) = principal {
            remaining = self.principal[i].check(who).map_err(|wait| {
                let secs = seconds(wait);
                Throttled {
                    retry_after: secs,
                    message: format!(
                        "Number of {} requests for principal '{who}' exceeded the limit. Try again after {secs} seconds.",
                        class.word()
                    ),
                }
            })?;
        }
        if let Some(sub) = subscription {
            remaining = self.subscription[i].check(sub).map_err(|wait| {
                let secs = seconds(wait);
                Throttled {
                    retry_after: secs,
                    message: format!(
                        "Number of {} requests for subscription '{sub}' exceeded the limit. Try again after {secs} seconds.",
                        class.word()
                    ),
                }
            })?;
        }
        Ok(remaining)
    }

    /// Buckets held (for tests and metrics).
    pub fn keys(&self) -> usize {
        self.principal
            .iter()
            .chain(self.subscription.iter())
            .map(Bounded::len)
            .sum()
    }
}

/// The subscription a path addresses (`/subscriptions/{guid}/...`), lower-cased; `None` when
/// the path names none or not a canonical GUID.
pub fn subscription_of(path: &str) -> Option<String> {
    let trimmed = path.trim_start_matches('/');
    let mut segments = trimmed.split('/');
    let first = segments.next()?;
    let sub = segments.next()?;
    (first.eq_ignore_ascii_case("subscriptions") && tether_model::ids::is_canonical_guid(sub))
        .then(|| sub.to_ascii_lowercase())
}

/// Middleware: throttles by the authenticated principal (when there is one) and by the
/// subscription the path names.
pub(crate) async fn middleware(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(throttle) = state.throttle.as_ref() else {
        return next.run(request).await;
    };
    let class = Class::of(request.method());
    let principal = request
        .extensions()
        .get::<Principal>()
        .map(|p| p.object_id.to_string());
    let subscription = subscription_of(request.uri().path());
    match throttle.check(class, principal.as_deref(), subscription.as_deref()) {
        Ok(remaining) => {
            let mut response = next.run(request).await;
            if remaining != u32::MAX {
                response
                    .headers_mut()
                    .insert(class.remaining_header(), HeaderValue::from(remaining));
            }
            response
        }
        Err(throttled) => {
            metrics::counter!("tether_throttled_total", "class" => class.word()).increment(1);
            let who = request.extensions().get::<Principal>().cloned();
            let error = Error::from(throttled);
            crate::audit::refusal(
                &state,
                request.extensions().get::<crate::audit::RequestIds>(),
                who.as_ref(),
                "throttle",
                request.uri().path(),
                &error,
            )
            .await;
            let mut response = ApiError(error).into_response();
            response
                .headers_mut()
                .insert(class.remaining_header(), HeaderValue::from(0));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(max_keys: usize) -> Throttle {
        Throttle::new(&ThrottleSettings {
            per_principal_per_minute: 60,
            principal_burst: 2,
            per_subscription_per_minute: 60,
            subscription_burst: 3,
            max_keys,
        })
    }

    const SUB: &str = "11111111-2222-3333-4444-555555555555";

    #[test]
    fn a_principal_gets_its_burst_then_429_with_a_whole_second_retry() {
        let t = small(100);
        assert_eq!(t.check(Class::Write, Some("alice"), None), Ok(1));
        assert_eq!(t.check(Class::Write, Some("alice"), None), Ok(0));
        let refused = t.check(Class::Write, Some("alice"), None).unwrap_err();
        assert_eq!(
            refused.retry_after, 1,
            "60/min: one more in at most a second"
        );
        assert_eq!(
            refused.message,
            "Number of write requests for principal 'alice' exceeded the limit. Try again after 1 seconds."
        );
        let error = Error::from(refused);
        assert_eq!(
            (error.kind(), error.code(), error.retry_after()),
            (
                ErrorKind::TooManyRequests,
                "SubscriptionRequestsThrottled",
                Some(1)
            )
        );
        // Reads have their own budget; other principals theirs.
        assert!(t.check(Class::Read, Some("alice"), None).is_ok());
        assert!(t.check(Class::Write, Some("bob"), None).is_ok());
    }

    #[test]
    fn a_subscription_is_shared_by_its_principals() {
        let t = small(100);
        for who in ["a", "b", "c"] {
            assert!(t.check(Class::Read, Some(who), Some(SUB)).is_ok());
        }
        let refused = t.check(Class::Read, Some("d"), Some(SUB)).unwrap_err();
        assert!(
            refused
                .message
                .starts_with(&format!("Number of read requests for subscription '{SUB}'")),
            "{}",
            refused.message
        );
        assert!(t.check(Class::Read, Some("d"), Some("other")).is_ok());
    }

    #[test]
    fn buckets_stay_bounded_whatever_keys_are_sent() {
        let t = small(50);
        for i in 0..5000 {
            let _ = t.check(Class::Read, Some(&format!("p{i}")), Some(&format!("s{i}")));
            assert!(t.keys() <= 2 * 50 + 2, "{} keys after {i}", t.keys());
        }
    }

    #[test]
    fn subscriptions_are_read_from_paths() {
        assert_eq!(
            subscription_of(&format!(
                "/subscriptions/{}/resourceGroups/x",
                SUB.to_uppercase()
            )),
            Some(SUB.to_string())
        );
        assert_eq!(
            subscription_of(&format!("//SUBSCRIPTIONS/{SUB}")),
            Some(SUB.into())
        );
        assert_eq!(subscription_of("/subscriptions/not-a-guid/x"), None);
        assert_eq!(
            subscription_of("/providers/Microsoft.ServiceLinker/operations"),
            None
        );
        assert_eq!(subscription_of("/"), None);
    }
}
