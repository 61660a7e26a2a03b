//! When to try an undelivered event again, and when to give up on it.

use std::time::Duration;

/// Increasing delays between attempts: `initial`, doubling up to `max`, for `give_up_after`
/// from when the event happened (the hosted API retries for 24 hours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Longest delay between two attempts.
    pub max: Duration,
    /// No new attempt starts later than this after the event happened; then the event is
    /// recorded as failed and delivery moves on.
    pub give_up_after: Duration,
}

impl RetryPolicy {
    /// 1 s.
    pub const DEFAULT_INITIAL: Duration = Duration::from_secs(1);
    /// 10 min.
    pub const DEFAULT_MAX: Duration = Duration::from_secs(600);
    /// 24 h.
    pub const DEFAULT_GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);

    /// The delay after failed attempt number `attempt` (1 for the first attempt).
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.initial.saturating_mul(1u32 << doublings).min(self.max)
    }

    /// The delay before the next attempt after attempt `attempt` failed `elapsed` after the
    /// event happened; `None` when it would start after [`RetryPolicy::give_up_after`].
    pub fn next_delay(&self, attempt: u32, elapsed: Duration) -> Option<Duration> {
        let delay = self.delay(attempt);
        (elapsed.saturating_add(delay) <= self.give_up_after).then_some(delay)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Self::DEFAULT_INITIAL,
            max: Self::DEFAULT_MAX,
            give_up_after: Self::DEFAULT_GIVE_UP_AFTER,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_second_to_ten_minutes() {
        let p = RetryPolicy::default();
        let secs: Vec<u64> = (1..=12).map(|a| p.delay(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(600));
        assert_eq!(p.delay(0), Duration::from_secs(1));
    }

    #[test]
    fn gives_up_after_a_day() {
        let p = RetryPolicy::default();
        // Walk the schedule as delivery does (attempts themselves take no time here).
        let mut elapsed = Duration::ZERO;
        let mut attempt = 1;
        while let Some(delay) = p.next_delay(attempt, elapsed) {
            elapsed += delay;
            attempt += 1;
        }
        assert!(elapsed <= p.give_up_after);
        assert!(elapsed + p.max > p.give_up_after);
        // 10 doubling steps (1023 s), then 10-minute steps to the end of the day.
        assert_eq!(attempt, 1 + 10 + (24 * 3600 - 1023) / 600);
        assert_eq!(p.next_delay(1, p.give_up_after), None);
    }
}
