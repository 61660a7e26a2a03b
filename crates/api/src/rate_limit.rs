//! Per-access-token rate limits: one token bucket per token and class of request.
//!
//! The seeds limit `POST` requests to a sustained 1 per second and every other method to 5
//! per second, "with the ability to burst above this for short periods". Each access token has
//! two buckets (one per class) holding up to `burst` requests and refilled continuously at
//! the sustained rate; a request takes one, and a request finding less than one is refused
//! with the time until one will be there.
//!
//! The limiter is in memory and driven by the caller's clock (`now` is a parameter), so it is
//! deterministic under test. The map is behind a sync mutex that is never held across an
//! `.await`. It cannot grow without bound: a bucket that has refilled completely is the same
//! as a new one and is dropped at the next periodic prune, and at the configured maximum the
//! least recently used token's buckets make room.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::RateLimit;

/// How often idle buckets are swept out.
pub(crate) const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Which budget a request draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestClass {
    /// `POST`: creating things.
    Post,
    /// Every other method.
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(limit: &RateLimit, now: Instant) -> Self {
        Bucket {
            tokens: f64::from(limit.burst),
            updated: now,
        }
    }

    fn refill(&mut self, limit: &RateLimit, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.per_second).min(f64::from(limit.burst));
        self.updated = now;
    }

    /// Whether the bucket would be full at `now` (then it is indistinguishable from a new one).
    fn is_full_at(&self, limit: &RateLimit, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens + elapsed * limit.per_second >= f64::from(limit.burst)
    }
}

/// The two buckets of one access token.
#[derive(Debug)]
struct TokenBuckets {
    post: Bucket,
    other: Bucket,
    last_seen: Instant,
}

#[derive(Debug)]
struct State {
    /// The limits (`None`: unlimited); under the lock because a reload changes them.
    post: Option<RateLimit>,
    other: Option<RateLimit>,
    tokens: HashMap<String, TokenBuckets>,
    last_prune: Instant,
}

/// Token buckets for every access token that made a request recently.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    max_tokens: usize,
    state: Mutex<State>,
}

impl RateLimiter {
    /// A limiter with these limits (`None`: unlimited) keeping at most `max_tokens` tokens'
    /// buckets.
    pub(crate) fn new(
        post: Option<RateLimit>,
        other: Option<RateLimit>,
        max_tokens: usize,
        now: Instant,
    ) -> Self {
        RateLimiter {
            max_tokens: max_tokens.max(1),
            state: Mutex::new(State {
                post,
                other,
                tokens: HashMap::new(),
                last_prune: now,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves consistent data (plain numbers).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one request from `token_id`'s bucket for `class`; `Err(wait)` when it is empty,
    /// with the time until a request will be accepted.
    pub(crate) fn check(
        &self,
        token_id: &str,
        class: RequestClass,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut state = self.lock();
        let limit = match class {
            RequestClass::Post => state.post,
            RequestClass::Other => state.other,
        };
        let Some(limit) = limit else {
            return Ok(());
        };
        if now.saturating_duration_since(state.last_prune) >= PRUNE_INTERVAL {
            self.prune(&mut state, now);
        }
        if !state.tokens.contains_key(token_id) {
            if state.tokens.len() >= self.max_tokens {
                self.prune(&mut state, now);
            }
            if state.tokens.len() >= self.max_tokens {
                evict_least_recently_used(&mut state.tokens);
            }
            let buckets = new_buckets(&state, now);
            state.tokens.insert(token_id.to_owned(), buckets);
        }
        let Some(buckets) = state.tokens.get_mut(token_id) else {
            return Ok(());
        };
        buckets.last_seen = now;
        let bucket = match class {
            RequestClass::Post => &mut buckets.post,
            RequestClass::Other => &mut buckets.other,
        };
        bucket.refill(&limit, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - bucket.tokens;
            Err(Duration::from_secs_f64(missing / limit.per_second))
        }
    }

    /// Replaces the limits (a configuration reload). Every token starts again with a full
    /// bucket of the new size: buckets sized for the old limits cannot be carried over.
    pub(crate) fn set_limits(&self, post: Option<RateLimit>, other: Option<RateLimit>) {
        let mut state = self.lock();
        state.post = post;
        state.other = other;
        state.tokens.clear();
    }

    /// Drops every token whose buckets would be full by now.
    fn prune(&self, state: &mut State, now: Instant) {
        let full = |bucket: &Bucket, limit: &Option<RateLimit>| {
            limit.as_ref().is_none_or(|l| bucket.is_full_at(l, now))
        };
        let (post, other) = (state.post, state.other);
        state
            .tokens
            .retain(|_, b| !(full(&b.post, &post) && full(&b.other, &other)));
        state.last_prune = now;
    }

    /// Tokens with buckets in memory.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().tokens.len()
    }
}

fn new_buckets(state: &State, now: Instant) -> TokenBuckets {
    let unlimited = RateLimit {
        per_second: 1.0,
        burst: 1,
    };
    TokenBuckets {
        post: Bucket::full(state.post.as_ref().unwrap_or(&unlimited), now),
        other: Bucket::full(state.other.as_ref().unwrap_or(&unlimited), now),
        last_seen: now,
    }
}

fn evict_least_recently_used(tokens: &mut HashMap<String, TokenBuckets>) {
    let oldest = tokens
        .iter()
        .min_by_key(|(_, b)| b.last_seen)
        .map(|(id, _)| id.clone());
    if let Some(id) = oldest {
        tokens.remove(&id);
    }
}

/// Whole seconds for `Retry-After`: rounded up, at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max_tokens: usize, now: Instant) -> RateLimiter {
        RateLimiter::new(
            Some(RateLimit {
                per_second: 1.0,
                burst: 3,
            }),
            Some(RateLimit {
                per_second: 5.0,
                burst: 2,
            }),
            max_tokens,
            now,
        )
    }

    #[test]
    fn burst_then_sustained_rate() {
        let t0 = Instant::now();
        let l = limiter(10, t0);
        for _ in 0..3 {
            assert!(l.check("a", RequestClass::Post, t0).is_ok());
        }
        let wait = l.check("a", RequestClass::Post, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        assert_eq!(retry_after_secs(wait), 1);
        // Half a second later there is half a token: still refused, 0.5 s to go.
        let wait = l
            .check("a", RequestClass::Post, t0 + Duration::from_millis(500))
            .unwrap_err();
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
        assert!(l
            .check("a", RequestClass::Post, t0 + Duration::from_secs(1))
            .is_ok());
        // The other class and other tokens have their own buckets.
        assert!(l.check("a", RequestClass::Other, t0).is_ok());
        assert!(l.check("b", RequestClass::Post, t0).is_ok());
        assert!(l.check("a", RequestClass::Other, t0).is_ok());
        assert!(l.check("a", RequestClass::Other, t0).is_err());
        assert!(l
            .check("a", RequestClass::Other, t0 + Duration::from_millis(200))
            .is_ok());
    }

    #[test]
    fn unlimited_classes_are_never_refused() {
        let t0 = Instant::now();
        let l = RateLimiter::new(None, None, 1, t0);
        for _ in 0..1000 {
            assert!(l.check("a", RequestClass::Post, t0).is_ok());
        }
        assert_eq!(l.len(), 0);
    }

    #[test]
    fn new_limits_apply_to_the_next_request() {
        let t0 = Instant::now();
        let l = RateLimiter::new(None, None, 10, t0);
        assert!(l.check("a", RequestClass::Other, t0).is_ok());
        let tight = RateLimit {
            per_second: 1.0,
            burst: 1,
        };
        l.set_limits(None, Some(tight));
        assert!(l.check("a", RequestClass::Other, t0).is_ok());
        assert!(l.check("a", RequestClass::Other, t0).is_err());
        assert!(l.check("a", RequestClass::Post, t0).is_ok());
        // Off again: never refused.
        l.set_limits(None, None);
        for _ in 0..10 {
            assert!(l.check("a", RequestClass::Other, t0).is_ok());
        }
    }

    #[test]
    fn idle_buckets_are_pruned() {
        let t0 = Instant::now();
        let l = limiter(1000, t0);
        for i in 0..100 {
            assert!(l.check(&format!("t{i}"), RequestClass::Post, t0).is_ok());
        }
        assert_eq!(l.len(), 100);
        // After the prune interval every bucket has refilled: the next request sweeps them.
        let later = t0 + PRUNE_INTERVAL;
        assert!(l.check("new", RequestClass::Other, later).is_ok());
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn never_more_than_the_maximum() {
        let t0 = Instant::now();
        let l = limiter(5, t0);
        for i in 0..50 {
            let now = t0 + Duration::from_millis(i);
            // Each token empties its bucket, so nothing is prunable.
            for _ in 0..3 {
                let _ = l.check(&format!("t{i}"), RequestClass::Post, now);
            }
            assert!(l.len() <= 5);
        }
        // The most recent token kept its (empty) bucket.
        assert!(l
            .check("t49", RequestClass::Post, t0 + Duration::from_millis(49))
            .is_err());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
    }
}
