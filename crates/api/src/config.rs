//! The API's settings: body size, request timeout and rate limits.

use std::time::Duration;

use crate::error::ConfigError;

/// Largest accepted request body (64 KiB): a live stream with every option set is ~2 KiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// A request that takes longer than this is answered `408` (30 s).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Sustained `POST` requests per second per access token (the seeds: "1 request per second").
pub const DEFAULT_POST_RATE_PER_SECOND: f64 = 1.0;
/// `POST` requests an access token may make at once before the sustained rate applies.
pub const DEFAULT_POST_BURST: u32 = 10;
/// Sustained requests per second per access token for every other method (the seeds: 5).
pub const DEFAULT_OTHER_RATE_PER_SECOND: f64 = 5.0;
/// Requests of other methods an access token may make at once: ten seconds' worth, because
/// SDK flows read back-to-back (auto-paging a list, retrieve after each change).
pub const DEFAULT_OTHER_BURST: u32 = 50;
/// Most rate-limit buckets kept in memory; beyond it the least recently used one is dropped.
pub const DEFAULT_MAX_RATE_LIMIT_BUCKETS: usize = 10_000;

/// A token bucket: `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second (> 0).
    pub per_second: f64,
    /// Bucket size: how many requests may arrive at once (>= 1).
    pub burst: u32,
}

impl RateLimit {
    fn validate(&self, class: &'static str) -> Result<(), ConfigError> {
        if !(self.per_second.is_finite() && self.per_second > 0.0) {
            return Err(ConfigError::RateLimit {
                class,
                reason: format!(
                    "the rate must be a positive number of requests per second, got {}",
                    self.per_second
                ),
            });
        }
        if self.burst == 0 {
            return Err(ConfigError::RateLimit {
                class,
                reason: "the burst must be at least 1".to_owned(),
            });
        }
        Ok(())
    }
}

/// Settings of the REST API.
///
/// `None` for a rate limit turns limiting off for that class of requests (for benchmarks and
/// trusted single-user setups).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfig {
    /// Largest accepted request body in bytes; larger ones get `413`.
    pub max_body_bytes: usize,
    /// Time allowed for one request, body upload included; slower ones get `408`.
    pub request_timeout: Duration,
    /// Limit of `POST` requests per access token.
    pub post_rate_limit: Option<RateLimit>,
    /// Limit of every other method (`GET`, `PUT`, `PATCH`, `DELETE`, ...) per access token.
    pub other_rate_limit: Option<RateLimit>,
    /// Most token buckets kept in memory.
    pub max_rate_limit_buckets: usize,
    /// Refuse (`429`) a client address that keeps failing authentication (10 failures at
    /// once, then one every 2 s); failures are logged either way. Off only for tools that
    /// test the API's answers to bad credentials (the conformance test).
    pub limit_failed_logins: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            post_rate_limit: Some(RateLimit {
                per_second: DEFAULT_POST_RATE_PER_SECOND,
                burst: DEFAULT_POST_BURST,
            }),
            other_rate_limit: Some(RateLimit {
                per_second: DEFAULT_OTHER_RATE_PER_SECOND,
                burst: DEFAULT_OTHER_BURST,
            }),
            max_rate_limit_buckets: DEFAULT_MAX_RATE_LIMIT_BUCKETS,
            limit_failed_logins: true,
        }
    }
}

impl ApiConfig {
    /// Checks the values, so that the binary can refuse a bad configuration before it binds
    /// a port.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes == 0 {
            return Err(ConfigError::MaxBodyBytes);
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::RequestTimeout);
        }
        if let Some(limit) = &self.post_rate_limit {
            limit.validate("POST")?;
        }
        if let Some(limit) = &self.other_rate_limit {
            limit.validate("other methods")?;
        }
        if self.max_rate_limit_buckets == 0 {
            return Err(ConfigError::MaxRateLimitBuckets);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_seeds() {
        let c = ApiConfig::default();
        assert!(c.validate().is_ok());
        assert_eq!(c.post_rate_limit.map(|l| l.per_second), Some(1.0));
        assert_eq!(c.other_rate_limit.map(|l| l.per_second), Some(5.0));
        assert_eq!(c.max_body_bytes, 65_536);
    }

    #[test]
    fn bad_values_are_refused() {
        let bad = [
            ApiConfig {
                max_body_bytes: 0,
                ..ApiConfig::default()
            },
            ApiConfig {
                request_timeout: Duration::ZERO,
                ..ApiConfig::default()
            },
            ApiConfig {
                post_rate_limit: Some(RateLimit {
                    per_second: 0.0,
                    burst: 1,
                }),
                ..ApiConfig::default()
            },
            ApiConfig {
                other_rate_limit: Some(RateLimit {
                    per_second: f64::NAN,
                    burst: 1,
                }),
                ..ApiConfig::default()
            },
            ApiConfig {
                other_rate_limit: Some(RateLimit {
                    per_second: 1.0,
                    burst: 0,
                }),
                ..ApiConfig::default()
            },
            ApiConfig {
                max_rate_limit_buckets: 0,
                ..ApiConfig::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
        let unlimited = ApiConfig {
            post_rate_limit: None,
            other_rate_limit: None,
            ..ApiConfig::default()
        };
        assert!(unlimited.validate().is_ok());
    }
}
