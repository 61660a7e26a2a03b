//! Failed authentication, per client address: a budget of failures that refills slowly, and
//! log lines that say who is guessing without saying what they guessed.
//!
//! Without it a client can try hundreds of access token secrets a second. Each address gets
//! [`FAILURE_BURST`] failures at once, refilled at [`FAILURES_PER_SECOND`]; an address with
//! no failure left gets `429 Too Many Requests` (with `Retry-After`) before its credentials
//! are even looked at, so a correct guess is useless to it too. Successful requests never
//! draw on the budget, so a client with a valid token is not slowed down by others' failures
//! (unless it shares their address and keeps sending wrong credentials itself).
//!
//! Failures are logged at most once per [`LOG_INTERVAL`] per address (with a count): the
//! address, the token ID tried (not a secret: the seeds call it safe to log), never the
//! secret. As for the per-token limiter, time is a parameter and the map is bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Failures one address may make at once.
pub(crate) const FAILURE_BURST: f64 = 10.0;

/// Failures per second an address earns back.
pub(crate) const FAILURES_PER_SECOND: f64 = 0.5;

/// Failures of one address are logged at most this often.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Addresses tracked at most; beyond it, the ones whose budget refilled are dropped, then
/// the least recently seen.
const MAX_ADDRESSES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    budget: f64,
    updated: Instant,
    /// Failures since the last log line, and when it was written.
    unlogged: u64,
    logged_at: Option<Instant>,
}

impl Entry {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.budget = (self.budget + elapsed * FAILURES_PER_SECOND).min(FAILURE_BURST);
        self.updated = now;
    }
}

/// The failure budgets of client addresses.
#[derive(Debug)]
pub(crate) struct AuthFailures {
    entries: Mutex<HashMap<IpAddr, Entry>>,
    /// Off ([`crate::ApiConfig::limit_failed_logins`]): failures are still logged, never
    /// refused. Atomic: a configuration reload turns it on or off.
    limit: AtomicBool,
}

impl Default for AuthFailures {
    fn default() -> Self {
        AuthFailures::new(true)
    }
}

impl AuthFailures {
    pub(crate) fn new(limit: bool) -> Self {
        AuthFailures {
            entries: Mutex::default(),
            limit: AtomicBool::new(limit),
        }
    }

    /// Turns refusing on or off (a configuration reload).
    pub(crate) fn set_limit(&self, limit: bool) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, Entry>> {
        // Plain numbers: consistent even after a panic elsewhere.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err(wait)` when `ip` has no failure left: refuse the request without checking its
    /// credentials, and say when to come back.
    pub(crate) fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        if !self.limit.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(&ip) else {
            return Ok(());
        };
        entry.refill(now);
        if entry.budget >= 1.0 {
            return Ok(());
        }
        let wait = (1.0 - entry.budget) / FAILURES_PER_SECOND;
        Err(Duration::from_secs_f64(wait))
    }

    /// Records a failed authentication from `ip` with token ID `token_id` (empty when the
    /// credentials were missing or malformed), and logs it if this address was not logged
    /// within [`LOG_INTERVAL`].
    pub(crate) fn record(&self, ip: IpAddr, token_id: &str, now: Instant) {
        let mut entries = self.lock();
        if entries.len() >= MAX_ADDRESSES && !entries.contains_key(&ip) {
            entries.retain(|_, e| {
                let mut refilled = *e;
                refilled.refill(now);
                refilled.budget < FAILURE_BURST
            });
            if entries.len() >= MAX_ADDRESSES {
                if let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.updated)
                    .map(|(ip, _)| *ip)
                {
                    entries.remove(&oldest);
                }
            }
        }
        let entry = entries.entry(ip).or_insert(Entry {
            budget: FAILURE_BURST,
            updated: now,
            unlogged: 0,
            logged_at: None,
        });
        entry.refill(now);
        entry.budget = (entry.budget - 1.0).max(0.0);
        entry.unlogged += 1;
        if entry
            .logged_at
            .is_none_or(|t| now.saturating_duration_since(t) >= LOG_INTERVAL)
        {
            // Token IDs are at most 64 characters of the caller's choosing: cut them short.
            let shown: String = token_id.chars().take(32).collect();
            tracing::warn!(
                client = %ip,
                token_id = %shown,
                failures = entry.unlogged,
                limited = entry.budget < 1.0,
                "API authentication failed"
            );
            entry.unlogged = 0;
            entry.logged_at = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_a_burst_of_failures_then_waits() {
        let failures = AuthFailures::default();
        let a = IpAddr::from([10, 0, 0, 1]);
        let b = IpAddr::from([10, 0, 0, 2]);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(failures.check(a, t0).is_ok());
            failures.record(a, "guess", t0);
        }
        let wait = failures.check(a, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(2));
        // Other addresses are not affected.
        assert!(failures.check(b, t0).is_ok());
        // The budget refills: one failure every two seconds.
        let later = t0 + Duration::from_secs(2);
        assert!(failures.check(a, later).is_ok());
        failures.record(a, "guess", later);
        assert!(failures.check(a, later).is_err());
        assert!(failures.check(a, later + Duration::from_secs(20)).is_ok());
    }

    #[test]
    fn the_map_stays_bounded() {
        let failures = AuthFailures::default();
        let t0 = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 100) {
            failures.record(IpAddr::from(i.to_be_bytes()), "x", t0);
        }
        assert!(failures.lock().len() <= MAX_ADDRESSES);
    }
}
