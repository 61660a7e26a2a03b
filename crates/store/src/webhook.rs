//! Webhook delivery's bookkeeping: how far each endpoint has got in the event log, and the
//! events delivery gave up on.
//!
//! An endpoint is named by an `endpoint_key` chosen by the delivery code (a hash of its URL;
//! never its secret). The store only keeps the numbers; retries and signatures live in the
//! `events` crate.

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Longest `endpoint_key` accepted.
pub const MAX_ENDPOINT_KEY_LEN: usize = 128;

/// An event delivery gave up on (every attempt failed for the whole retry period).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookFailure {
    /// The endpoint (see the module doc).
    pub endpoint_key: String,
    /// [`Event::seq`](crate::Event::seq) of the event.
    pub event_seq: u64,
    /// [`Event::id`](crate::Event::id) of the event.
    pub event_id: String,
    /// How many attempts were made.
    pub attempts: u64,
    /// Why the last attempt failed (status code or error; never the secret).
    pub reason: String,
    /// When delivery gave up, unix milliseconds.
    pub failed_at_ms: i64,
}

/// Checks an endpoint key before it is written.
pub(crate) fn check_endpoint_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > MAX_ENDPOINT_KEY_LEN {
        return Err(StoreError::invalid(
            "endpoint_key",
            format!("must be 1 to {MAX_ENDPOINT_KEY_LEN} bytes"),
        ));
    }
    Ok(())
}
