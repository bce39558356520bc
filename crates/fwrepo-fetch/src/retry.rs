//! Retries with jittered exponential backoff ("full jitter": a uniform delay up to a cap that
//! doubles per attempt), only for errors [`Error::is_transient`] says may pass.

use std::time::Duration;

use rand::Rng;

use crate::error::Error;

/// How often and how patiently to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 means no retry.
    pub attempts: u32,
    /// Cap of the first delay; doubles per attempt.
    pub base: Duration,
    /// Cap of any delay.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 4, base: Duration::from_millis(250), max: Duration::from_secs(8) }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1` (so `attempt` is 1 after the first failure).
    pub fn delay(&self, attempt: u32) -> Duration {
        let cap = self.base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(self.max);
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }

    /// Whether to try again after `error` on attempt number `attempt` (1-based).
    pub fn should_retry(&self, error: &Error, attempt: u32) -> bool {
        attempt < self.attempts && error.is_transient()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_a_doubling_cap() {
        let p = RetryPolicy { attempts: 10, base: Duration::from_millis(100), max: Duration::from_secs(1) };
        for attempt in 1..10 {
            let cap = Duration::from_millis(100 * (1 << (attempt - 1))).min(Duration::from_secs(1));
            for _ in 0..50 {
                assert!(p.delay(attempt) <= cap);
            }
        }
    }

    #[test]
    fn only_transient_errors_are_retried() {
        let p = RetryPolicy::default();
        let status = |status| Error::Status { path: "/x".into(), status };
        assert!(p.should_retry(&status(500), 1));
        assert!(p.should_retry(&status(503), 3));
        assert!(!p.should_retry(&status(503), 4), "attempts are bounded");
        for s in [401, 403, 404] {
            assert!(!p.should_retry(&status(s), 1), "{s}");
        }
        let wrong = Error::ChunkMismatch { path: "/x".into(), chunk: fwrepo_chunk::Digest::of(b""), offset: 0 };
        assert!(!p.should_retry(&wrong, 1));
        assert!(p.should_retry(&Error::Truncated { path: "/x".into(), got: 1, expected: 2 }, 1));
    }
}
