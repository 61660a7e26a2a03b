//! Simulcast targets: where a live stream is to be restreamed.
//!
//! The store has no operations for simulcast targets yet, so the API keeps them here, in
//! memory, keyed by live stream ID behind a sync mutex that is never held across an `.await`.
//! They are returned in the live stream's `simulcast_targets` and through their own routes,
//! always with status `idle` (nothing pushes them yet), and are lost on restart. Each live
//! stream has at most [`MAX_TARGETS_PER_LIVE_STREAM`], and a deleted live stream's targets go
//! with it, so the map is bounded by the live streams in the store.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;
use store::{LiveStream, MAX_PASSTHROUGH_CHARS, MAX_URL_LEN};

use crate::body::{optional_string, Object};
use crate::error::ApiError;

/// Most simulcast targets one live stream may have.
pub const MAX_TARGETS_PER_LIVE_STREAM: usize = 10;
/// Longest accepted simulcast `stream_key`, in bytes.
pub const MAX_TARGET_STREAM_KEY_LEN: usize = 1024;

/// A simulcast target as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub(crate) struct SimulcastTarget {
    pub(crate) id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) passthrough: Option<String>,
    /// Always `idle` (nothing restreams yet).
    #[schema(value_type = String, pattern = "^(idle|starting|broadcasting|errored)$")]
    pub(crate) status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stream_key: Option<String>,
    pub(crate) url: String,
}

/// A validated request for a new target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewTarget {
    url: String,
    stream_key: Option<String>,
    passthrough: Option<String>,
}

impl NewTarget {
    /// Validates a `{url, stream_key, passthrough}` object; errors are named after `field`
    /// (`url`, or `simulcast_targets` when the target came inside a live stream body).
    pub(crate) fn from_object(object: &Object, prefix: &str) -> Result<NewTarget, ApiError> {
        let invalid = |name: &str, reason: &str| {
            ApiError::InvalidParameters(format!("invalid {prefix}{name}: {reason}"))
        };
        let url = optional_string(object, "url")
            .map_err(|_| invalid("url", "must be a string"))?
            .ok_or_else(|| invalid("url", "is required"))?;
        check_url(&url).map_err(|reason| invalid("url", reason))?;
        let stream_key = optional_string(object, "stream_key")
            .map_err(|_| invalid("stream_key", "must be a string"))?;
        if let Some(key) = &stream_key {
            if key.len() > MAX_TARGET_STREAM_KEY_LEN || key.chars().any(char::is_control) {
                return Err(invalid(
                    "stream_key",
                    "must be at most 1024 bytes without control characters",
                ));
            }
        }
        let passthrough = optional_string(object, "passthrough")
            .map_err(|_| invalid("passthrough", "must be a string"))?;
        if let Some(p) = &passthrough {
            if p.chars().count() > MAX_PASSTHROUGH_CHARS {
                return Err(invalid("passthrough", "must be at most 255 characters"));
            }
        }
        Ok(NewTarget {
            url,
            stream_key,
            passthrough,
        })
    }

    /// The `simulcast_targets` of a create-live-stream body, validated (absent or `null`:
    /// none).
    pub(crate) fn list_from_body(object: &Object) -> Result<Vec<NewTarget>, ApiError> {
        let items = match object.get("simulcast_targets") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(_) => {
                return Err(ApiError::InvalidParameters(
                    "invalid simulcast_targets: must be an array".to_owned(),
                ))
            }
        };
        if items.len() > MAX_TARGETS_PER_LIVE_STREAM {
            return Err(too_many());
        }
        items
            .iter()
            .map(|item| match item {
                Value::Object(o) => NewTarget::from_object(o, "simulcast_targets[]."),
                _ => Err(ApiError::InvalidParameters(
                    "invalid simulcast_targets: each target must be an object".to_owned(),
                )),
            })
            .collect()
    }
}

fn too_many() -> ApiError {
    ApiError::InvalidParameters(format!(
        "invalid simulcast_targets: a live stream has at most {MAX_TARGETS_PER_LIVE_STREAM} \
         simulcast targets"
    ))
}

/// An RTMP, RTMPS or SRT URL with a host.
fn check_url(url: &str) -> Result<(), &'static str> {
    if url.len() > MAX_URL_LEN {
        return Err("must be at most 2048 bytes");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace");
    }
    let lower = url.to_ascii_lowercase();
    let rest = ["rtmp://", "rtmps://", "srt://"]
        .iter()
        .find_map(|scheme| lower.strip_prefix(scheme));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        _ => Err("must be an rtmp://, rtmps:// or srt:// URL with a host"),
    }
}

/// Simulcast targets by live stream ID.
#[derive(Debug, Default)]
pub(crate) struct SimulcastTargets {
    by_live_stream: Mutex<HashMap<String, Vec<SimulcastTarget>>>,
}

impl SimulcastTargets {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<SimulcastTarget>>> {
        self.by_live_stream
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Adds targets to a live stream; refused (nothing added) past the per-stream maximum.
    pub(crate) fn add(
        &self,
        live_stream_id: &str,
        new: Vec<NewTarget>,
    ) -> Result<Vec<SimulcastTarget>, ApiError> {
        if new.is_empty() {
            return Ok(Vec::new());
        }
        let mut map = self.lock();
        let targets = map.entry(live_stream_id.to_owned()).or_default();
        if targets.len() + new.len() > MAX_TARGETS_PER_LIVE_STREAM {
            // A valid request that the stored state refuses (a create body with too many
            // is refused earlier, as a 400, by `list_from_body`).
            return Err(ApiError::Conflict(format!(
                "the live stream already has {} simulcast targets, at most \
                 {MAX_TARGETS_PER_LIVE_STREAM} are allowed",
                targets.len()
            )));
        }
        let added: Vec<SimulcastTarget> = new
            .into_iter()
            .map(|t| SimulcastTarget {
                id: new_id(),
                passthrough: t.passthrough,
                status: "idle",
                stream_key: t.stream_key,
                url: t.url,
            })
            .collect();
        targets.extend(added.iter().cloned());
        Ok(added)
    }

    /// One target of a live stream.
    pub(crate) fn get(&self, live_stream_id: &str, target_id: &str) -> Option<SimulcastTarget> {
        self.lock()
            .get(live_stream_id)?
            .iter()
            .find(|t| t.id == target_id)
            .cloned()
    }

    /// Removes one target; `false` if the live stream had none with that ID.
    pub(crate) fn remove(&self, live_stream_id: &str, target_id: &str) -> bool {
        let mut map = self.lock();
        let Some(targets) = map.get_mut(live_stream_id) else {
            return false;
        };
        let before = targets.len();
        targets.retain(|t| t.id != target_id);
        let removed = targets.len() != before;
        if targets.is_empty() {
            map.remove(live_stream_id);
        }
        removed
    }

    /// Forgets every target of a live stream (it was deleted).
    pub(crate) fn remove_live_stream(&self, live_stream_id: &str) {
        self.lock().remove(live_stream_id);
    }

    /// Puts the live stream's targets into its `simulcast_targets`.
    pub(crate) fn fill(&self, stream: &mut LiveStream) {
        let map = self.lock();
        if let Some(targets) = map.get(&stream.id) {
            stream.simulcast_targets = targets
                .iter()
                .filter_map(|t| serde_json::to_value(t).ok())
                .collect();
        }
    }
}

/// A 32-character alphanumeric ID. Not a secret, only unique: hashes of a process-random key,
/// a counter and the clock.
fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let state = RandomState::new();
    let mut id = String::with_capacity(32);
    let mut round = 0u64;
    while id.len() < 32 {
        let mut n = state.hash_one((count, nanos, round));
        // 10 base-62 digits per 64-bit hash.
        for _ in 0..10 {
            if id.len() == 32 {
                break;
            }
            let digit = (n % 62) as usize;
            id.push(char::from(ALPHABET[digit]));
            n /= 62;
        }
        round += 1;
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Object {
        match v {
            Value::Object(o) => o,
            _ => Object::new(),
        }
    }

    #[test]
    fn validates_targets() {
        let ok = NewTarget::from_object(
            &object(
                json!({"url": "rtmp://live.example.com/app", "stream_key": "k", "passthrough": "p"}),
            ),
            "",
        );
        assert!(ok.is_ok());
        for bad in [
            json!({}),
            json!({"url": 5}),
            json!({"url": "http://example.com/app"}),
            json!({"url": "rtmp://"}),
            json!({"url": "rtmp://a b/app"}),
            json!({"url": "srt://h:1", "passthrough": "x".repeat(256)}),
            json!({"url": "srt://h:1", "stream_key": 1}),
        ] {
            assert!(
                matches!(
                    NewTarget::from_object(&object(bad.clone()), ""),
                    Err(ApiError::InvalidParameters(_))
                ),
                "{bad}"
            );
        }
        let body = object(json!({"simulcast_targets": [{"url": "srt://h:1"}]}));
        assert_eq!(NewTarget::list_from_body(&body).map(|v| v.len()), Ok(1));
        let body = object(json!({"simulcast_targets": {"url": "srt://h:1"}}));
        assert!(NewTarget::list_from_body(&body).is_err());
    }

    #[test]
    fn registry_bounds_and_ids() {
        let r = SimulcastTargets::default();
        let target = |i: usize| NewTarget {
            url: format!("rtmp://h/app{i}"),
            stream_key: None,
            passthrough: None,
        };
        let added = r.add("ls", (0..10).map(target).collect()).unwrap();
        assert_eq!(added.len(), 10);
        let mut ids: Vec<&str> = added.iter().map(|t| t.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 10);
        assert!(added.iter().all(|t| t.id.len() == 32 && t.status == "idle"));
        assert!(r.add("ls", vec![target(11)]).is_err());
        assert_eq!(r.get("ls", &added[0].id), Some(added[0].clone()));
        assert!(r.get("other", &added[0].id).is_none());
        assert!(r.remove("ls", &added[0].id));
        assert!(!r.remove("ls", &added[0].id));
        r.remove_live_stream("ls");
        assert!(r.get("ls", &added[1].id).is_none());
        assert!(r.lock().is_empty());
    }
}
