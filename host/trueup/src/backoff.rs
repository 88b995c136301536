//! One exponential backoff for everything that retries: failed jobs, PSA
//! write-backs and connector calls during a pull.
//!
//! Written here rather than taken from `backon`: only the pull retries in a
//! loop; jobs and write-backs store the time of their next attempt in the
//! queue and are claimed again later, so what they need is the delay for
//! attempt N, not a retry driver.

use std::time::Duration;

/// Attempts past this many no longer double the delay (2^16 × any first
/// delay in use is far past every cap, and the exponent stays small).
const MAX_DOUBLINGS: u32 = 16;

/// A delay that starts at `first` and doubles per attempt, never above `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first failed attempt.
    pub first: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Backoff {
    /// A backoff from `first` doubling up to `max`.
    #[must_use]
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self { first, max }
    }

    /// The delay before the attempt after `attempts` failed ones (counting
    /// from 1): `first × 2^(attempts − 1)`, capped at `max`. `attempts` of 0
    /// is treated as 1.
    #[must_use]
    pub fn delay(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(MAX_DOUBLINGS));
        self.first.saturating_mul(factor).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_first_delay_up_to_the_cap() {
        let backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(600));
        let cases = [
            (0, 5),
            (1, 5),
            (2, 10),
            (3, 20),
            (7, 320),
            (8, 600),
            (30, 600),
            (u32::MAX, 600),
        ];
        for (attempts, secs) in cases {
            assert_eq!(
                backoff.delay(attempts),
                Duration::from_secs(secs),
                "attempts {attempts}"
            );
        }
    }

    #[test]
    fn a_huge_first_delay_saturates_instead_of_overflowing() {
        let backoff = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(backoff.delay(20), Duration::MAX);
    }
}
