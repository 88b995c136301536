//! Per-key token buckets for the push API.
//!
//! Each push integration has a bucket of `burst` tokens refilled at
//! `requests_per_minute / 60` tokens a second; a request takes one token
//! or is refused with the time until the next token. Tokens are counted
//! in millionths with integer arithmetic. Buckets live in the process: a
//! host behind a load balancer allows each key its limit per process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use trueup_store::imports::PushIntegrationId;

use crate::lock::lock;

/// Requests a push key may send per minute unless an admin sets another
/// limit: 100 a second, Gradient's published limit.
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 6_000;

/// Requests a push key may send at once (one second's worth at the
/// default rate).
pub const DEFAULT_BURST: u32 = 100;

/// Millionths of a token per token.
const MICRO: u128 = 1_000_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Millionths of tokens.
    tokens: u128,
    at: Instant,
    requests_per_minute: u32,
    burst: u32,
}

/// The buckets of every push key seen by this process.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    buckets: Mutex<HashMap<PushIntegrationId, Bucket>>,
}

impl RateLimiter {
    /// Takes a token of `key`'s bucket at `now`, or says how long until one
    /// is there. A changed limit applies at once (the bucket is clamped to
    /// the new burst).
    pub(crate) fn take(
        &self,
        key: PushIntegrationId,
        requests_per_minute: u32,
        burst: u32,
        now: Instant,
    ) -> Result<(), Duration> {
        let rate = u128::from(requests_per_minute.max(1));
        let capacity = u128::from(burst.max(1)) * MICRO;
        let mut buckets = lock(&self.buckets);
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: capacity,
            at: now,
            requests_per_minute,
            burst,
        });
        if bucket.requests_per_minute != requests_per_minute || bucket.burst != burst {
            bucket.requests_per_minute = requests_per_minute;
            bucket.burst = burst;
        }
        let elapsed = now.saturating_duration_since(bucket.at).as_nanos();
        // rate tokens per 60 s = rate × 10⁶ millionths per 6 × 10¹⁰ ns.
        let refill = elapsed.saturating_mul(rate) / 60_000;
        bucket.tokens = bucket.tokens.saturating_add(refill).min(capacity);
        bucket.at = now;
        if bucket.tokens >= MICRO {
            bucket.tokens -= MICRO;
            return Ok(());
        }
        let missing = MICRO - bucket.tokens;
        let nanos = (missing * 60_000).div_ceil(rate);
        Err(Duration::from_nanos(
            u64::try_from(nanos).unwrap_or(u64::MAX),
        ))
    }
}

/// `Retry-After` seconds for a wait: rounded up, at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: PushIntegrationId = PushIntegrationId(1);

    #[test]
    fn a_burst_is_allowed_then_the_rate() {
        let limiter = RateLimiter::default();
        let start = Instant::now();
        // 60 a minute = 1 a second, burst 3.
        for _ in 0..3 {
            assert_eq!(limiter.take(KEY, 60, 3, start), Ok(()));
        }
        let wait = limiter
            .take(KEY, 60, 3, start)
            .expect_err("the burst is spent");
        assert_eq!(wait, Duration::from_secs(1));
        // Half a second later: half a token, half a second to go.
        let half = start + Duration::from_millis(500);
        assert_eq!(
            limiter.take(KEY, 60, 3, half),
            Err(Duration::from_millis(500))
        );
        assert_eq!(
            limiter.take(KEY, 60, 3, start + Duration::from_secs(1)),
            Ok(())
        );
        // Ten idle minutes refill only up to the burst.
        let later = start + Duration::from_secs(600);
        for _ in 0..3 {
            assert_eq!(limiter.take(KEY, 60, 3, later), Ok(()));
        }
        assert!(limiter.take(KEY, 60, 3, later).is_err());
    }

    #[test]
    fn keys_have_their_own_buckets_and_new_limits_apply_at_once() {
        let limiter = RateLimiter::default();
        let now = Instant::now();
        assert_eq!(limiter.take(KEY, 1, 1, now), Ok(()));
        assert_eq!(limiter.take(KEY, 1, 1, now), Err(Duration::from_secs(60)));
        assert_eq!(limiter.take(PushIntegrationId(2), 1, 1, now), Ok(()));
        // Raising the rate shortens the wait for the next token.
        assert_eq!(
            limiter.take(KEY, 6_000, 100, now),
            Err(Duration::from_millis(10))
        );
        // Lowering the burst clamps what was saved up.
        let later = now + Duration::from_secs(10);
        assert_eq!(limiter.take(KEY, 6_000, 2, later), Ok(()));
        assert_eq!(limiter.take(KEY, 6_000, 2, later), Ok(()));
        assert!(limiter.take(KEY, 6_000, 2, later).is_err());
    }

    #[test]
    fn the_default_is_a_hundred_a_second() {
        let limiter = RateLimiter::default();
        let now = Instant::now();
        for _ in 0..DEFAULT_BURST {
            assert_eq!(
                limiter.take(KEY, DEFAULT_REQUESTS_PER_MINUTE, DEFAULT_BURST, now),
                Ok(())
            );
        }
        let wait = limiter
            .take(KEY, DEFAULT_REQUESTS_PER_MINUTE, DEFAULT_BURST, now)
            .expect_err("over the limit");
        assert_eq!(wait, Duration::from_millis(10));
        assert_eq!(retry_after_secs(wait), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(60)), 60);
        assert_eq!(retry_after_secs(Duration::from_millis(60_001)), 61);
    }
}
