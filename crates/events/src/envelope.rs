//! The webhook envelope of the hosted API (COMPAT.md, "Webhooks"), built from one event of
//! the store's log.
//!
//! ```json
//! {"type": "video.live_stream.active", "id": "<event UUID>",
//!  "created_at": "2026-11-25T19:20:44.123000Z",
//!  "object": {"type": "live_stream", "id": "<live stream ID>"},
//!  "environment": {"name": "production", "id": "onair"},
//!  "data": {<the live stream as of the event>, "created_at": 1764098444,
//!           "connected": true, "recording": true},
//!  "attempts": [], "accessor": null, "accessor_source": null, "request_id": null}
//! ```

use serde_json::{json, Map, Value};
use store::{event_type, Asset, Event, LifecycleState};

use crate::Environment;

/// The envelope of `event`, ready to serialize (it is signed over its serialized bytes).
pub fn envelope(event: &Event, environment: &Environment) -> Value {
    json!({
        "type": event.event_type,
        "id": event.id,
        "created_at": iso8601_micros(event.created_at_ms),
        "object": object(event),
        "environment": {"name": environment.name, "id": environment.id},
        "data": data(event),
        "attempts": [],
        "accessor": null,
        "accessor_source": null,
        "request_id": null,
    })
}

/// What the event is about: the asset for `video.asset.*`, else the live stream.
fn object(event: &Event) -> Value {
    if event_type::is_asset(&event.event_type) {
        let id = event
            .object
            .get("id")
            .and_then(Value::as_str)
            .or(event.broadcast_id.as_deref());
        json!({"type": "asset", "id": id})
    } else {
        json!({"type": "live_stream", "id": event.live_stream_id})
    }
}

/// The object as of the event, in webhook form. An asset: see [`Asset::webhook_data`]. A live
/// stream: `created_at` a number of unix seconds (the REST object has a string), plus
/// `connected` and `recording` from the lifecycle state.
fn data(event: &Event) -> Value {
    if event_type::is_asset(&event.event_type) {
        return Asset::webhook_data(&event.object);
    }
    let mut data = match &event.object {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    if let Some(created) = data.get_mut("created_at") {
        let seconds = match created {
            Value::String(s) => s.parse::<i64>().ok(),
            Value::Number(n) => n.as_i64(),
            _ => None,
        };
        if let Some(seconds) = seconds {
            *created = Value::from(seconds);
        }
    }
    let state = state_of(event);
    data.insert("connected".to_owned(), Value::Bool(is_connected(state)));
    data.insert("recording".to_owned(), Value::Bool(is_recording(state)));
    Value::Object(data)
}

/// The lifecycle state as of `event`: logged with it, or (for events written before the state
/// was logged) what its type says, idle when it says nothing.
pub fn state_of(event: &Event) -> LifecycleState {
    event.state.unwrap_or(match event.event_type.as_str() {
        event_type::CONNECTED => LifecycleState::Connected,
        event_type::RECORDING => LifecycleState::Recording,
        event_type::ACTIVE => LifecycleState::Active,
        event_type::DISCONNECTED => LifecycleState::Disconnected,
        _ => LifecycleState::Idle,
    })
}

/// `data.connected`: an encoder is connected.
pub fn is_connected(state: LifecycleState) -> bool {
    matches!(
        state,
        LifecycleState::Connected | LifecycleState::Recording | LifecycleState::Active
    )
}

/// `data.recording`: media is being recorded.
pub fn is_recording(state: LifecycleState) -> bool {
    matches!(state, LifecycleState::Recording | LifecycleState::Active)
}

/// Unix milliseconds as ISO 8601 UTC with microseconds: `2026-11-25T19:20:44.123000Z`.
pub fn iso8601_micros(unix_ms: i64) -> String {
    let millis = store::iso8601_millis(unix_ms);
    format!("{}000Z", millis.trim_end_matches('Z'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str, state: Option<LifecycleState>) -> Event {
        Event {
            seq: 7,
            id: "3a56ac3d-33da-4366-855b-f592d898409d".to_owned(),
            live_stream_id: "LS1".to_owned(),
            stream_seq: 3,
            event_type: event_type.to_owned(),
            broadcast_id: Some("B1".to_owned()),
            created_at_ms: 1_795_634_444_123,
            object: json!({"id": "LS1", "status": "active", "created_at": "1795634400",
                           "stream_key": "k", "playback_ids": [{"id": "p", "policy": "public"}]}),
            state,
        }
    }

    #[test]
    fn asset_events_carry_the_asset() {
        let mut e = event("video.asset.ready", Some(LifecycleState::Idle));
        e.object = json!({"id": "B1", "created_at": "1795634400", "status": "ready",
            "live_stream_id": "LS1", "recording_times": [
                {"started_at": "2026-11-25T19:20:44.123Z", "duration": 2.5, "type": "content"}]});
        let env = envelope(&e, &Environment::default());
        assert_eq!(env["object"], json!({"type": "asset", "id": "B1"}));
        assert_eq!(env["data"]["created_at"], 1_795_634_400);
        assert_eq!(env["data"]["status"], "ready");
        assert_eq!(
            env["data"]["recording_times"][0]["started_at"],
            json!({"seconds": 1_795_634_444_i64, "nanos": 123_000_000})
        );
        assert!(env["data"].get("connected").is_none());
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            iso8601_micros(1_795_634_444_123),
            "2026-11-25T19:20:44.123000Z"
        );
        assert_eq!(
            iso8601_micros(951_782_400_000),
            "2000-02-29T00:00:00.000000Z"
        );
        assert_eq!(iso8601_micros(-1), "1969-12-31T23:59:59.999000Z");
        assert_eq!(
            iso8601_micros(4_107_542_399_999),
            "2100-02-28T23:59:59.999000Z"
        );
    }

    #[test]
    fn envelope_shape() {
        let env = Environment::default();
        let v = envelope(
            &event(event_type::ACTIVE, Some(LifecycleState::Active)),
            &env,
        );
        assert_eq!(v["type"], "video.live_stream.active");
        assert_eq!(v["id"], "3a56ac3d-33da-4366-855b-f592d898409d");
        assert_eq!(v["created_at"], "2026-11-25T19:20:44.123000Z");
        assert_eq!(v["object"], json!({"type": "live_stream", "id": "LS1"}));
        assert_eq!(
            v["environment"],
            json!({"name": "production", "id": "onair"})
        );
        assert_eq!(v["attempts"], json!([]));
        for null in ["accessor", "accessor_source", "request_id"] {
            assert!(v.get(null).is_some_and(Value::is_null), "{null}");
        }
        let data = &v["data"];
        assert_eq!(data["created_at"], json!(1_795_634_400_i64));
        assert_eq!(data["status"], "active");
        assert_eq!(data["stream_key"], "k");
        assert_eq!(data["connected"], true);
        assert_eq!(data["recording"], true);
        assert_eq!(v.as_object().map(Map::len), Some(10));
    }

    #[test]
    fn flags_follow_the_state() {
        use LifecycleState::*;
        let cases = [
            (Idle, false, false),
            (Connected, true, false),
            (Recording, true, true),
            (Active, true, true),
            (Disconnected, false, false),
        ];
        for (state, connected, recording) in cases {
            let v = envelope(
                &event(event_type::UPDATED, Some(state)),
                &Environment::default(),
            );
            assert_eq!(v["data"]["connected"], connected, "{state}");
            assert_eq!(v["data"]["recording"], recording, "{state}");
        }
        // Events logged before the state was: the type decides.
        let old = envelope(&event(event_type::RECORDING, None), &Environment::default());
        assert_eq!(old["data"]["recording"], true);
        let old = envelope(&event(event_type::CREATED, None), &Environment::default());
        assert_eq!(old["data"]["connected"], false);
    }
}
