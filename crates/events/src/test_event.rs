//! One signed sample webhook, for checking a receiver by hand (`onair webhooks test URL`).

use bytes::Bytes;
use serde_json::json;
use store::{event_type, Event, LifecycleState};

use crate::delivery::{unix_ms, unix_secs};
use crate::http::{HttpTransport, Transport};
use crate::{envelope, signature, Environment, WebhookEndpoint, WebhookError};

/// The ID of the sample live stream (no such stream exists).
pub const TEST_LIVE_STREAM_ID: &str = "onair-test-live-stream";

/// The sample event: `video.live_stream.updated` about an idle live stream
/// [`TEST_LIVE_STREAM_ID`], in the same envelope as real deliveries.
pub fn test_event() -> Event {
    let now_ms = unix_ms();
    Event {
        seq: 0,
        // UUID-shaped and different every call (milliseconds in the last group).
        id: format!(
            "00000000-0000-4000-8000-{:012x}",
            now_ms.rem_euclid(1 << 48)
        ),
        live_stream_id: TEST_LIVE_STREAM_ID.to_owned(),
        stream_seq: 0,
        event_type: event_type::UPDATED.to_owned(),
        broadcast_id: None,
        created_at_ms: now_ms,
        object: json!({
            "id": TEST_LIVE_STREAM_ID,
            "status": "idle",
            "created_at": (now_ms / 1000).to_string(),
            "stream_key": "onair-test-stream-key",
            "playback_ids": [],
            "latency_mode": "standard",
            "reconnect_window": 60,
            "max_continuous_duration": 43200,
            "new_asset_settings": {"playback_policy": ["public"]},
            "recent_asset_ids": [],
            "passthrough": "onair webhooks test",
        }),
        state: Some(LifecycleState::Idle),
    }
}

/// POSTs [`test_event`], signed with `endpoint`'s secret, once (no retries, the usual
/// [`crate::ATTEMPT_TIMEOUT`]). Returns the event and the answer's status code, or why there
/// was no answer.
pub async fn send_test_event(
    endpoint: &WebhookEndpoint,
    environment: &Environment,
) -> Result<(Event, Result<u16, String>), WebhookError> {
    let transport = HttpTransport::new()?;
    let event = test_event();
    let body = Bytes::from(envelope::envelope(&event, environment).to_string());
    let signature = signature::header_value(endpoint.secret(), unix_secs(), &body);
    let result = transport.post(endpoint.url(), &signature, body).await;
    Ok((event, result))
}
