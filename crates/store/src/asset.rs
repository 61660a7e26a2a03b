//! The asset resource: the recording of one broadcast, as the hosted API's official SDKs read
//! it (`COMPAT.md`, "Assets").
//!
//! A broadcast becomes an asset when its first media is recorded (the `recording` transition,
//! which logs `video.asset.created` right after `video.live_stream.recording`); the asset's ID
//! is the broadcast's. It is `preparing` (and `is_live`) while the broadcast goes on and
//! `ready` from the moment the live stream goes idle (`video.asset.ready`, then
//! `video.asset.live_stream_completed`). What the API shows about its media (duration, tracks,
//! resolution, `recording_times`) is an [`AssetMedia`] that the session manager measures and
//! hands in with its transitions; the store only records it.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::live_stream::{unix_seconds_string, IngestProtocol, PlaybackId, PlaybackPolicy};
use crate::StoreError;

/// Most entries kept in a live stream's `recent_asset_ids` (the oldest go first).
pub const MAX_RECENT_ASSET_IDS: usize = 10;
/// Largest page size of [`Store::list_assets`](crate::Store::list_assets).
pub const MAX_ASSET_LIST_LIMIT: u32 = 100;
/// Page size of [`Store::list_assets`](crate::Store::list_assets) when none is given.
pub const DEFAULT_ASSET_LIST_LIMIT: u32 = 25;
/// Longest accepted `meta.title`, `meta.creator_id` and `meta.external_id`, in characters.
pub const MAX_META_CHARS: usize = 512;

/// `preparing` while the broadcast goes on, `ready` once it is complete, `errored` if it
/// cannot be played.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AssetStatus {
    /// Being recorded.
    Preparing,
    /// Complete and playable on demand.
    Ready,
    /// Not playable.
    Errored,
}

impl AssetStatus {
    /// Every value.
    pub const ALL: &'static [AssetStatus] = &[
        AssetStatus::Preparing,
        AssetStatus::Ready,
        AssetStatus::Errored,
    ];

    /// The wire (API and database) name.
    pub fn as_str(self) -> &'static str {
        match self {
            AssetStatus::Preparing => "preparing",
            AssetStatus::Ready => "ready",
            AssetStatus::Errored => "errored",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for AssetStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `meta` of an asset: user-supplied labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AssetMeta {
    /// A title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 512)]
    pub title: Option<String>,
    /// Who made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 512)]
    pub creator_id: Option<String>,
    /// An identifier in the caller's system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 512)]
    pub external_id: Option<String>,
}

impl AssetMeta {
    /// Checks the lengths; errors name `meta`.
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        for (name, value) in [
            ("title", &self.title),
            ("creator_id", &self.creator_id),
            ("external_id", &self.external_id),
        ] {
            if value
                .as_ref()
                .is_some_and(|v| v.chars().count() > MAX_META_CHARS)
            {
                return Err(StoreError::invalid(
                    "meta",
                    format!("{name} must be at most {MAX_META_CHARS} characters"),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.title.is_none() && self.creator_id.is_none() && self.external_id.is_none()
    }
}

/// What `PATCH /video/v1/assets/{id}` may change. Absent fields are left alone; `null`
/// clears; other fields are ignored, as the hosted API ignores them (and as a live stream's
/// PATCH does).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
pub struct AssetPatch {
    /// New `passthrough` (`null` clears it).
    #[serde(default, with = "double_option")]
    #[schema(max_length = 255)]
    pub passthrough: Option<Option<String>>,
    /// New `meta` (`null` clears it).
    #[serde(default, deserialize_with = "crate::live_stream::nullable_object")]
    pub meta: Option<Option<AssetMeta>>,
}

impl AssetPatch {
    /// Checks lengths.
    pub fn validate(&self) -> Result<(), StoreError> {
        if let Some(Some(p)) = &self.passthrough {
            if p.chars().count() > crate::MAX_PASSTHROUGH_CHARS {
                return Err(StoreError::invalid(
                    "passthrough",
                    format!(
                        "must be at most {} characters",
                        crate::MAX_PASSTHROUGH_CHARS
                    ),
                ));
            }
        }
        if let Some(Some(meta)) = &self.meta {
            meta.validate()?;
        }
        Ok(())
    }

    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        self.passthrough.is_none() && self.meta.is_none()
    }
}

/// `Option<Option<T>>` from JSON: absent is `None`, `null` is `Some(None)`.
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        T: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// Whether a stretch of the recording is the encoder's media or slate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecordingKind {
    /// Media sent by the encoder.
    Content,
    /// Slate inserted while the encoder was away.
    Slate,
}

/// One stretch of the recording: one per encoder connection (`content`), and one per slate
/// interruption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingTime {
    /// When its first media arrived, unix milliseconds.
    pub started_at_ms: i64,
    /// Media duration, seconds.
    pub duration_secs: f64,
    /// Content or slate.
    pub kind: RecordingKind,
}

/// The video track as measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoMedia {
    /// Largest width seen, pixels.
    pub width: u32,
    /// Largest height seen, pixels.
    pub height: u32,
    /// Frames per second (signalled, else measured).
    pub frame_rate: Option<f64>,
}

/// The audio track as measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioMedia {
    /// Most channels seen (AAC `channelConfiguration`).
    pub channels: u8,
}

/// What the session manager measured about a broadcast's recording. Internal: the API shows
/// it through the asset's fields, and playback renders the asset's multivariant playlist from
/// `codecs` and the bandwidths.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AssetMedia {
    /// The protocol of the first connection.
    #[serde(default)]
    pub ingest_protocol: Option<IngestProtocol>,
    /// Total recorded media, seconds.
    #[serde(default)]
    pub duration_secs: f64,
    /// The video track, if any.
    #[serde(default)]
    pub video: Option<VideoMedia>,
    /// The audio track, if any.
    #[serde(default)]
    pub audio: Option<AudioMedia>,
    /// One entry per connection (and slate interruption), oldest first.
    #[serde(default)]
    pub recording_times: Vec<RecordingTime>,
    /// RFC 6381 `CODECS` of the recording.
    #[serde(default)]
    pub codecs: String,
    /// Peak bits per second of a segment.
    #[serde(default)]
    pub bandwidth: u64,
    /// Average bits per second.
    #[serde(default)]
    pub average_bandwidth: u64,
}

/// `{state, progress}` of an asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AssetProgress {
    /// `live`, `completed` or `errored`.
    #[schema(schema_with = enum_progress_state)]
    pub state: String,
    /// Percent; `-1` while live or errored.
    pub progress: f64,
}

/// One track of an asset, in the API's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AssetTrack {
    /// Identifier of the track.
    pub id: String,
    /// `video` or `audio`.
    #[serde(rename = "type")]
    #[schema(schema_with = enum_track_type)]
    pub kind: String,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    /// Video: pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_width: Option<u32>,
    /// Video: pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_height: Option<u32>,
    /// Video: frames per second, `-1` if unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_frame_rate: Option<f64>,
    /// Audio: channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_channels: Option<u32>,
    /// Audio: `mono`, `stereo`, `5.1`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_channel_layout: Option<String>,
}

/// A string schema with these values only: the hosted API's lists for the asset's string
/// fields (`mux_python` refuses any other value), for the OpenAPI document.
fn string_enum(values: &[&str]) -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(values.iter().copied()))
        .build()
}

fn enum_progress_state() -> utoipa::openapi::schema::Object {
    string_enum(&["live", "completed", "errored"])
}

fn enum_track_type() -> utoipa::openapi::schema::Object {
    string_enum(&["video", "audio"])
}

fn enum_max_stored_resolution() -> utoipa::openapi::schema::Object {
    string_enum(&["Audio only", "SD", "HD", "FHD", "UHD"])
}

fn enum_resolution_tier() -> utoipa::openapi::schema::Object {
    string_enum(&["audio-only", "720p", "1080p", "1440p", "2160p"])
}

fn enum_max_resolution_tier() -> utoipa::openapi::schema::Object {
    string_enum(&["1080p", "1440p", "2160p"])
}

fn enum_ingest_type() -> utoipa::openapi::schema::Object {
    string_enum(&["live_rtmp", "live_srt"])
}

fn enum_master_access() -> utoipa::openapi::schema::Object {
    string_enum(&["none"])
}

/// One entry of `recording_times` in the API's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecordingTimeJson {
    /// ISO 8601 UTC.
    pub started_at: String,
    /// Seconds.
    pub duration: f64,
    /// `content` or `slate`.
    #[serde(rename = "type")]
    pub kind: RecordingKind,
}

/// An asset, serialized exactly as the API's `data` object (`created_at` is a string of unix
/// seconds; fields that are unknown are omitted, never invented: `mux_python` checks every
/// enumeration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Asset {
    /// Unique identifier (the broadcast's).
    pub id: String,
    /// Creation time (the first recorded media), unix seconds.
    #[serde(with = "unix_seconds_string")]
    #[schema(value_type = String, example = "1527110899")]
    pub created_at: i64,
    /// Preparing, ready or errored.
    pub status: AssetStatus,
    /// Playback IDs, oldest first.
    pub playback_ids: Vec<PlaybackId>,
    /// Arbitrary user metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passthrough: Option<String>,
    /// User labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<AssetMeta>,
    /// Recorded media, seconds (absent until something was measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    /// `Audio only`, `SD`, `HD`, `FHD` or `UHD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = enum_max_stored_resolution)]
    pub max_stored_resolution: Option<String>,
    /// `audio-only`, `720p`, `1080p`, `1440p` or `2160p`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = enum_resolution_tier)]
    pub resolution_tier: Option<String>,
    /// The largest tier the asset may be delivered at (OnAir does not transcode: `1080p`
    /// unless the source is larger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = enum_max_resolution_tier)]
    pub max_resolution_tier: Option<String>,
    /// Frames per second, `-1` if unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stored_frame_rate: Option<f64>,
    /// `width:height` reduced, e.g. `16:9`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<String>,
    /// Video and audio tracks.
    pub tracks: Vec<AssetTrack>,
    /// The live stream recorded.
    pub live_stream_id: String,
    /// The broadcast is still going on.
    pub is_live: bool,
    /// One `content` entry per encoder connection.
    pub recording_times: Vec<RecordingTimeJson>,
    /// `live_rtmp` or `live_srt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = enum_ingest_type)]
    pub ingest_type: Option<String>,
    /// Always `none`: no master file is made.
    #[schema(schema_with = enum_master_access)]
    pub master_access: String,
    /// Live, completed or errored.
    pub progress: AssetProgress,
    /// Recorded from a test live stream.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
}

impl Asset {
    /// The API object of an asset with the given stored parts.
    pub(crate) fn build(parts: AssetParts) -> Asset {
        let AssetParts {
            id,
            created_at_ms,
            status,
            playback_ids,
            passthrough,
            meta,
            test,
            media,
            live_stream_id,
            is_live,
            video_track_id,
            audio_track_id,
        } = parts;
        let measured = media.duration_secs > 0.0 || media.video.is_some() || media.audio.is_some();
        let duration = measured.then_some(round_ms(media.duration_secs));
        let mut tracks = Vec::new();
        if let Some(v) = &media.video {
            tracks.push(AssetTrack {
                id: video_track_id,
                kind: "video".to_owned(),
                duration,
                max_width: Some(v.width),
                max_height: Some(v.height),
                max_frame_rate: Some(v.frame_rate.map_or(-1.0, round_ms)),
                max_channels: None,
                max_channel_layout: None,
            });
        }
        if let Some(a) = &media.audio {
            tracks.push(AssetTrack {
                id: audio_track_id,
                kind: "audio".to_owned(),
                duration,
                max_width: None,
                max_height: None,
                max_frame_rate: None,
                max_channels: Some(u32::from(a.channels)),
                max_channel_layout: Some(channel_layout(a.channels).to_owned()),
            });
        }
        let (stored, tier) = match (&media.video, &media.audio) {
            (Some(v), _) => {
                let (stored, tier) = resolution_names(v.width, v.height);
                (Some(stored), Some(tier))
            }
            (None, Some(_)) => (Some("Audio only"), Some("audio-only")),
            (None, None) => (None, None),
        };
        let max_tier = media.video.as_ref().map(|v| {
            let short = v.width.min(v.height);
            if short > 1440 {
                "2160p"
            } else if short > 1080 {
                "1440p"
            } else {
                "1080p"
            }
        });
        let progress = match status {
            AssetStatus::Preparing => AssetProgress {
                state: "live".to_owned(),
                progress: -1.0,
            },
            AssetStatus::Ready => AssetProgress {
                state: "completed".to_owned(),
                progress: 100.0,
            },
            AssetStatus::Errored => AssetProgress {
                state: "errored".to_owned(),
                progress: -1.0,
            },
        };
        Asset {
            id,
            created_at: created_at_ms.div_euclid(1000),
            status,
            playback_ids,
            passthrough,
            meta: meta.filter(|m| !m.is_empty()),
            duration,
            max_stored_resolution: stored.map(str::to_owned),
            resolution_tier: tier.map(str::to_owned),
            max_resolution_tier: max_tier.map(str::to_owned),
            max_stored_frame_rate: media
                .video
                .as_ref()
                .map(|v| v.frame_rate.map_or(-1.0, round_ms)),
            aspect_ratio: media
                .video
                .as_ref()
                .and_then(|v| aspect_ratio(v.width, v.height)),
            tracks,
            live_stream_id,
            is_live,
            recording_times: media
                .recording_times
                .iter()
                .map(|r| RecordingTimeJson {
                    started_at: iso8601_millis(r.started_at_ms),
                    duration: round_ms(r.duration_secs),
                    kind: r.kind,
                })
                .collect(),
            ingest_type: media.ingest_protocol.map(|p| {
                match p {
                    IngestProtocol::Rtmp => "live_rtmp",
                    IngestProtocol::Srt => "live_srt",
                }
                .to_owned()
            }),
            master_access: "none".to_owned(),
            progress,
            test,
        }
    }

    /// The object as webhooks carry it (`COMPAT.md`): `created_at` a number, and
    /// `recording_times[].started_at` as `{seconds, nanos}`.
    pub fn webhook_data(object: &Value) -> Value {
        let mut data = object.clone();
        if let Some(map) = data.as_object_mut() {
            if let Some(created) = map.get_mut("created_at") {
                if let Some(secs) = created.as_str().and_then(|s| s.parse::<i64>().ok()) {
                    *created = Value::from(secs);
                }
            }
            if let Some(Value::Array(times)) = map.get_mut("recording_times") {
                for time in times {
                    let Some(started) = time.get_mut("started_at") else {
                        continue;
                    };
                    if let Some(ms) = started.as_str().and_then(parse_iso8601_millis) {
                        *started = serde_json::json!({
                            "seconds": ms.div_euclid(1000),
                            "nanos": ms.rem_euclid(1000) * 1_000_000,
                        });
                    }
                }
            }
        }
        data
    }
}

/// What a live stream's `new_asset_settings` says about the assets it records: their
/// playback policies (`playback_policies`, or the older `playback_policy`, a string or an
/// array), `passthrough` and `meta`. Other settings are accepted and ignored (OnAir does not
/// transcode).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AssetSettings {
    pub playback_policies: Vec<PlaybackPolicy>,
    pub passthrough: Option<String>,
    pub meta: Option<AssetMeta>,
}

impl AssetSettings {
    /// Parses and checks `new_asset_settings` (errors name that field).
    pub(crate) fn parse(v: &Value) -> Result<AssetSettings, StoreError> {
        const FIELD: &str = "new_asset_settings";
        let Some(map) = v.as_object() else {
            return Err(StoreError::invalid(FIELD, "must be a JSON object"));
        };
        let mut settings = AssetSettings::default();
        // Both spellings are checked; the first given (the current one first) is used.
        let mut chosen = false;
        for key in ["playback_policies", "playback_policy"] {
            let names: Vec<&Value> = match map.get(key) {
                None | Some(Value::Null) => continue,
                Some(Value::Array(items)) => items.iter().collect(),
                Some(one) => vec![one],
            };
            let mut policies = Vec::with_capacity(names.len());
            for name in names {
                let policy = name
                    .as_str()
                    .and_then(PlaybackPolicy::parse)
                    .ok_or_else(|| {
                        StoreError::invalid(
                            FIELD,
                            format!("{key} must be public, signed or drm, got {name}"),
                        )
                    })?;
                policies.push(policy);
            }
            if policies.len() > crate::MAX_PLAYBACK_POLICIES_PER_REQUEST {
                return Err(StoreError::invalid(
                    FIELD,
                    format!(
                        "at most {} playback policies",
                        crate::MAX_PLAYBACK_POLICIES_PER_REQUEST
                    ),
                ));
            }
            if !chosen {
                settings.playback_policies = policies;
                chosen = true;
            }
        }
        match map.get("passthrough") {
            None | Some(Value::Null) => {}
            Some(Value::String(p)) if p.chars().count() <= crate::MAX_PASSTHROUGH_CHARS => {
                settings.passthrough = Some(p.clone());
            }
            Some(_) => {
                return Err(StoreError::invalid(
                    FIELD,
                    format!(
                        "passthrough must be a string of at most {} characters",
                        crate::MAX_PASSTHROUGH_CHARS
                    ),
                ))
            }
        }
        match map.get("meta") {
            None | Some(Value::Null) => {}
            Some(meta) => {
                let invalid = || {
                    StoreError::invalid(
                        FIELD,
                        "meta must be an object of title, creator_id and external_id strings",
                    )
                };
                // An object only: serde would also read the struct from an array.
                let meta = meta.as_object().cloned().ok_or_else(invalid)?;
                let meta: AssetMeta =
                    serde_json::from_value(Value::Object(meta)).map_err(|_| invalid())?;
                meta.validate()?;
                settings.meta = Some(meta);
            }
        }
        Ok(settings)
    }
}

/// `new_asset_settings` in the form the hosted API answers with: the deprecated
/// `playback_policy` (a string or an array) becomes `playback_policies` (always an array),
/// so that typed clients (`[]PlaybackPolicy`) decode it. Everything else is kept as sent.
/// `v` should have passed [`AssetSettings::parse`]; anything but an object is returned as is.
pub fn normalize_new_asset_settings(mut v: Value) -> Value {
    let Some(map) = v.as_object_mut() else {
        return v;
    };
    let legacy = map.remove("playback_policy");
    let current = map.remove("playback_policies");
    let policies = match current.filter(|p| !p.is_null()).or(legacy) {
        Some(Value::Array(items)) => Some(Value::Array(items)),
        Some(Value::Null) | None => None,
        Some(one) => Some(Value::Array(vec![one])),
    };
    if let Some(policies) = policies {
        map.insert("playback_policies".to_owned(), policies);
    }
    v
}

/// The stored parts an [`Asset`] is built from.
pub(crate) struct AssetParts {
    pub id: String,
    pub created_at_ms: i64,
    pub status: AssetStatus,
    pub playback_ids: Vec<PlaybackId>,
    pub passthrough: Option<String>,
    pub meta: Option<AssetMeta>,
    pub test: bool,
    pub media: AssetMedia,
    pub live_stream_id: String,
    pub is_live: bool,
    pub video_track_id: String,
    pub audio_track_id: String,
}

/// What playback needs to serve an asset by one of its playback IDs.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetPlayback {
    /// The asset.
    pub asset: Asset,
    /// The playback ID asked for.
    pub playback_id: PlaybackId,
    /// Where its recording lives, relative to the recordings directory.
    pub recording_dir: String,
    /// Its media as measured (codecs and bandwidths for the multivariant playlist).
    pub media: AssetMedia,
}

/// What a playback ID belongs to.
#[derive(Debug, Clone, PartialEq)]
pub enum PlaybackOwner {
    /// A live stream's playback ID.
    LiveStream {
        /// The live stream's ID.
        id: String,
        /// The playback ID.
        playback_id: PlaybackId,
    },
    /// An asset's playback ID.
    Asset {
        /// The asset's ID.
        id: String,
        /// The playback ID.
        playback_id: PlaybackId,
    },
}

/// Which page of assets [`Store::list_assets`](crate::Store::list_assets) returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssetQuery {
    /// 1..=[`MAX_ASSET_LIST_LIMIT`].
    pub limit: u32,
    /// Page number from 1 (ignored when `cursor` is given).
    pub page: u32,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only the assets of this live stream.
    pub live_stream_id: Option<String>,
}

/// One page of assets, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetPage {
    /// The assets.
    pub assets: Vec<Asset>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

fn round_ms(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

/// `max_stored_resolution` and `resolution_tier` of a video track, by its shorter side.
fn resolution_names(width: u32, height: u32) -> (&'static str, &'static str) {
    let short = width.min(height);
    let stored = if short < 720 {
        "SD"
    } else if short < 1080 {
        "HD"
    } else if short < 2160 {
        "FHD"
    } else {
        "UHD"
    };
    let tier = if short <= 720 {
        "720p"
    } else if short <= 1080 {
        "1080p"
    } else if short <= 1440 {
        "1440p"
    } else {
        "2160p"
    };
    (stored, tier)
}

fn aspect_ratio(width: u32, height: u32) -> Option<String> {
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let g = gcd(width, height);
    (g > 0).then(|| format!("{}:{}", width / g, height / g))
}

/// The name of an AAC `channelConfiguration`.
fn channel_layout(channels: u8) -> &'static str {
    match channels {
        1 => "mono",
        2 => "stereo",
        6 => "5.1",
        8 => "7.1",
        _ => "stereo",
    }
}

/// Unix milliseconds as ISO 8601 UTC with milliseconds: `2026-11-25T19:20:44.123Z`.
pub fn iso8601_millis(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let millis = unix_ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Parses what [`iso8601_millis`] writes.
fn parse_iso8601_millis(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 24 || b[4] != b'-' || b[10] != b'T' || b[23] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    let days = days_from_civil(y, m, d);
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + ms)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The inverse of [`civil_from_days`] (Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values a schema enumeration allows.
    fn allowed(schema: utoipa::openapi::schema::Object) -> Vec<String> {
        schema
            .enum_values
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn resolution_names_are_in_the_documented_lists() {
        let stored = allowed(enum_max_stored_resolution());
        let tiers = allowed(enum_resolution_tier());
        for (w, h) in [
            (640, 360),
            (1280, 720),
            (1920, 1080),
            (2560, 1440),
            (3840, 2160),
        ] {
            let (s, t) = resolution_names(w, h);
            assert!(stored.iter().any(|v| v == s), "{s}");
            assert!(tiers.iter().any(|v| v == t), "{t}");
        }
    }
    use serde_json::json;

    fn parts(media: AssetMedia) -> AssetParts {
        AssetParts {
            id: "A1".to_owned(),
            created_at_ms: 1_795_634_444_123,
            status: AssetStatus::Preparing,
            playback_ids: Vec::new(),
            passthrough: None,
            meta: None,
            test: false,
            media,
            live_stream_id: "LS1".to_owned(),
            is_live: true,
            video_track_id: "V".to_owned(),
            audio_track_id: "S".to_owned(),
        }
    }

    #[test]
    fn iso_dates_round_trip() {
        for ms in [0, 1_795_634_444_123, 951_782_400_000, -1, 4_107_542_399_999] {
            let text = iso8601_millis(ms);
            assert_eq!(parse_iso8601_millis(&text), Some(ms), "{text}");
        }
        assert_eq!(
            iso8601_millis(1_795_634_444_123),
            "2026-11-25T19:20:44.123Z"
        );
        assert_eq!(parse_iso8601_millis("2026-11-25 19:20:44.123Z"), None);
    }

    #[test]
    fn a_hd_stream_with_stereo_audio() {
        let asset = Asset::build(parts(AssetMedia {
            ingest_protocol: Some(IngestProtocol::Rtmp),
            duration_secs: 12.3456,
            video: Some(VideoMedia {
                width: 1280,
                height: 720,
                frame_rate: Some(30.0),
            }),
            audio: Some(AudioMedia { channels: 2 }),
            recording_times: vec![RecordingTime {
                started_at_ms: 1_795_634_444_123,
                duration_secs: 12.3456,
                kind: RecordingKind::Content,
            }],
            ..AssetMedia::default()
        }));
        let v = serde_json::to_value(&asset).unwrap();
        assert_eq!(v["created_at"], "1795634444");
        assert_eq!(v["status"], "preparing");
        assert_eq!(v["duration"], 12.346);
        assert_eq!(v["max_stored_resolution"], "HD");
        assert_eq!(v["resolution_tier"], "720p");
        assert_eq!(v["max_resolution_tier"], "1080p");
        assert_eq!(v["aspect_ratio"], "16:9");
        assert_eq!(v["max_stored_frame_rate"], 30.0);
        assert_eq!(v["ingest_type"], "live_rtmp");
        assert_eq!(v["master_access"], "none");
        assert_eq!(v["progress"], json!({"state": "live", "progress": -1.0}));
        assert_eq!(v["is_live"], true);
        assert_eq!(v["tracks"][0]["type"], "video");
        assert_eq!(v["tracks"][0]["max_width"], 1280);
        assert_eq!(v["tracks"][1]["max_channel_layout"], "stereo");
        assert_eq!(
            v["recording_times"],
            json!([{"started_at": "2026-11-25T19:20:44.123Z", "duration": 12.346,
                    "type": "content"}])
        );
        let hook = Asset::webhook_data(&v);
        assert_eq!(hook["created_at"], 1_795_634_444);
        assert_eq!(
            hook["recording_times"][0]["started_at"],
            json!({"seconds": 1_795_634_444_i64, "nanos": 123_000_000})
        );
        let back: Asset = serde_json::from_value(v).unwrap();
        assert_eq!(back, asset);
    }

    #[test]
    fn audio_only_and_unmeasured() {
        let asset = Asset::build(parts(AssetMedia {
            audio: Some(AudioMedia { channels: 1 }),
            ..AssetMedia::default()
        }));
        assert_eq!(asset.max_stored_resolution.as_deref(), Some("Audio only"));
        assert_eq!(asset.resolution_tier.as_deref(), Some("audio-only"));
        assert_eq!(asset.aspect_ratio, None);
        let empty = serde_json::to_value(Asset::build(parts(AssetMedia::default()))).unwrap();
        for absent in [
            "duration",
            "max_stored_resolution",
            "aspect_ratio",
            "ingest_type",
        ] {
            assert!(empty.get(absent).is_none(), "{absent}");
        }
        assert_eq!(empty["tracks"], json!([]));
    }

    #[test]
    fn resolution_by_the_shorter_side() {
        assert_eq!(resolution_names(640, 360), ("SD", "720p"));
        assert_eq!(resolution_names(1920, 1080), ("FHD", "1080p"));
        assert_eq!(resolution_names(1080, 1920), ("FHD", "1080p"));
        assert_eq!(resolution_names(2560, 1440), ("FHD", "1440p"));
        assert_eq!(resolution_names(3840, 2160), ("UHD", "2160p"));
        assert_eq!(aspect_ratio(1920, 1080).as_deref(), Some("16:9"));
        assert_eq!(aspect_ratio(0, 0), None);
    }

    #[test]
    fn new_asset_settings() {
        let s = AssetSettings::parse(&json!({"playback_policies": ["public", "signed"],
            "passthrough": "p", "meta": {"title": "T"}, "video_quality": "plus"}))
        .unwrap();
        assert_eq!(
            s.playback_policies,
            vec![PlaybackPolicy::Public, PlaybackPolicy::Signed]
        );
        assert_eq!(s.passthrough.as_deref(), Some("p"));
        assert_eq!(s.meta.unwrap().title.as_deref(), Some("T"));
        let s = AssetSettings::parse(&json!({"playback_policy": "public"})).unwrap();
        assert_eq!(s.playback_policies, vec![PlaybackPolicy::Public]);
        assert_eq!(
            AssetSettings::parse(&json!({})).unwrap(),
            AssetSettings::default()
        );
        for bad in [
            json!([]),
            json!({"playback_policies": ["open"]}),
            json!({"passthrough": 5}),
            json!({"meta": "x"}),
        ] {
            assert!(AssetSettings::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patches_parse_absent_null_and_values() {
        let p: AssetPatch = serde_json::from_value(json!({"passthrough": null})).unwrap();
        assert_eq!(p.passthrough, Some(None));
        assert_eq!(p.meta, None);
        let p: AssetPatch =
            serde_json::from_value(json!({"meta": {"title": "t"}, "passthrough": "x"})).unwrap();
        assert_eq!(p.passthrough, Some(Some("x".to_owned())));
        // Fields a PATCH does not take are ignored (as the hosted API does).
        let p: AssetPatch = serde_json::from_value(json!({"status": "errored"})).unwrap();
        assert_eq!(p, AssetPatch::default());
        let long = "x".repeat(256);
        let p: AssetPatch = serde_json::from_value(json!({ "passthrough": long })).unwrap();
        assert!(p.validate().is_err());
    }
}
