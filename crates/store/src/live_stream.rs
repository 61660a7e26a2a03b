//! The live stream resource: its JSON shape, its enumerations, and the validated parameters
//! for creating and updating one.
//!
//! Field names, defaults and limits follow the seeds' Live Stream object reference. The
//! parameter structs ([`NewLiveStream`], [`LiveStreamPatch`]) deserialize straight from an API
//! request body and keep enumerations as strings, so that an unknown value surfaces from
//! `validate()` as [`StoreError::InvalidField`] naming the field, not as a serde error.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::asset::{normalize_new_asset_settings, AssetMeta};
use crate::StoreError;

/// Reconnect window of a standard-latency stream when none is given (seconds).
pub const DEFAULT_RECONNECT_WINDOW_STANDARD: f64 = 60.0;
/// Reconnect window of a reduced- or low-latency stream when none is given (seconds).
pub const DEFAULT_RECONNECT_WINDOW_LOW_LATENCY: f64 = 0.0;
/// Largest accepted reconnect window (seconds). The hosted API types it as a number: any
/// value from 0 to this one, fractions included.
pub const MAX_RECONNECT_WINDOW: f64 = 1800.0;
/// Default and largest `max_continuous_duration` (seconds, 12 hours).
pub const DEFAULT_MAX_CONTINUOUS_DURATION: u32 = 43_200;
/// Smallest accepted `max_continuous_duration` (seconds).
pub const MIN_MAX_CONTINUOUS_DURATION: u32 = 60;
/// Longest accepted `passthrough` (and subtitle name/passthrough), in characters.
pub const MAX_PASSTHROUGH_CHARS: usize = 255;
/// Longest accepted `reconnect_slate_url`, in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// Most playback IDs one create request may ask for.
pub const MAX_PLAYBACK_POLICIES_PER_REQUEST: usize = 10;

/// Declares a string-valued enumeration with its wire names.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        // Every wire name is the variant's name in lower case; said twice because the OpenAPI
        // derive cannot read the per-variant names through this macro.
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $wire)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire (API and database) name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            /// Parses a wire name; `None` for anything else (names are case-sensitive).
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($wire => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// Whether a broadcast is in progress.
    LiveStreamStatus {
        /// No broadcast; waiting for an encoder (the initial status).
        Idle => "idle",
        /// A broadcast is in progress (also during the reconnect window).
        Active => "active",
        /// No new broadcast is accepted until the stream is enabled again.
        Disabled => "disabled",
    }
}

wire_enum! {
    /// Latency mode of a live stream.
    LatencyMode {
        /// The default.
        Standard => "standard",
        /// Reduced latency.
        Reduced => "reduced",
        /// Low latency (LL-HLS).
        Low => "low",
    }
}

wire_enum! {
    /// Who may play a playback ID.
    PlaybackPolicy {
        /// Anyone with the URL.
        Public => "public",
        /// Viewers with a signed token.
        Signed => "signed",
        /// DRM-protected playback.
        Drm => "drm",
    }
}

wire_enum! {
    /// The protocol of the active ingest connection.
    IngestProtocol {
        /// RTMP or RTMPS.
        Rtmp => "rtmp",
        /// SRT.
        Srt => "srt",
    }
}

impl LatencyMode {
    /// The reconnect window a stream of this mode gets when none is given (seconds).
    pub fn default_reconnect_window(self) -> f64 {
        match self {
            LatencyMode::Standard => DEFAULT_RECONNECT_WINDOW_STANDARD,
            LatencyMode::Reduced | LatencyMode::Low => DEFAULT_RECONNECT_WINDOW_LOW_LATENCY,
        }
    }
}

/// A status transition requested by the session manager or the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    /// Back to idle; clears `active_ingest_protocol`. A disabled stream stays disabled.
    Idle,
    /// A broadcast over this protocol began. Refused with [`StoreError::Conflict`] when the
    /// stream is disabled.
    Active(IngestProtocol),
    /// Refuse future broadcasts; clears `active_ingest_protocol`.
    Disabled,
}

/// One playback ID of a live stream: `{ "id": ..., "policy": ... }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlaybackId {
    /// The ID, used in playback URLs (`/{id}.m3u8`).
    pub id: String,
    /// Who may play it.
    pub policy: PlaybackPolicy,
}

/// One embedded (CEA-608) closed caption track of a live stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EmbeddedSubtitle {
    /// A name for the track.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 255)]
    pub name: Option<String>,
    /// Arbitrary metadata, at most 255 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 255)]
    pub passthrough: Option<String>,
    /// BCP 47 language code (default `en`).
    #[serde(default = "default_language_code")]
    #[schema(pattern = "^[A-Za-z0-9-]{1,35}$")]
    pub language_code: String,
    /// CEA-608 channel, `cc1`..`cc4` (default `cc1`).
    #[serde(default = "default_language_channel")]
    #[schema(pattern = "^cc[1-4]$")]
    pub language_channel: String,
}

fn default_language_code() -> String {
    "en".to_owned()
}

fn default_language_channel() -> String {
    "cc1".to_owned()
}

impl EmbeddedSubtitle {
    fn validate(&self) -> Result<(), StoreError> {
        const FIELD: &str = "embedded_subtitles";
        if let Some(name) = &self.name {
            check_chars(FIELD, "name", name)?;
        }
        if let Some(passthrough) = &self.passthrough {
            check_chars(FIELD, "passthrough", passthrough)?;
        }
        let code = &self.language_code;
        if code.is_empty()
            || code.len() > 35
            || !code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(StoreError::invalid(
                FIELD,
                "language_code must be a BCP 47 language tag",
            ));
        }
        if !matches!(
            self.language_channel.as_str(),
            "cc1" | "cc2" | "cc3" | "cc4"
        ) {
            return Err(StoreError::invalid(
                FIELD,
                "language_channel must be one of cc1, cc2, cc3, cc4",
            ));
        }
        Ok(())
    }
}

fn check_chars(field: &'static str, what: &str, value: &str) -> Result<(), StoreError> {
    if value.chars().count() > MAX_PASSTHROUGH_CHARS {
        return Err(StoreError::invalid(
            field,
            format!("{what} must be at most {MAX_PASSTHROUGH_CHARS} characters"),
        ));
    }
    Ok(())
}

/// A live stream, serialized exactly as the API's `data` object.
///
/// Optional values that are unset (`None`), empty arrays other than `playback_ids`, and flags
/// that are `false` are omitted from the JSON, like the seeds' examples, which show a fresh
/// stream as `id`, `stream_key`, `status`, `playback_ids`, `created_at` plus its settings.
/// `created_at` is unix seconds, serialized as a string (`"1527110899"`).
///
/// `Debug` redacts the stream key and SRT passphrase (they are credentials).
#[derive(Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LiveStream {
    /// Unique identifier.
    pub id: String,
    /// The secret key encoders publish with (RTMP key, SRT streamid).
    pub stream_key: String,
    /// Idle, active or disabled.
    pub status: LiveStreamStatus,
    /// Playback IDs, oldest first.
    pub playback_ids: Vec<PlaybackId>,
    /// Creation time, unix seconds.
    #[serde(with = "unix_seconds_string")]
    #[schema(value_type = String, example = "1527110899")]
    pub created_at: i64,
    /// Settings for the assets recorded from this stream (a JSON object), with
    /// `playback_policies` always an array.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<NewAssetSettings>)]
    pub new_asset_settings: Option<Value>,
    /// Arbitrary user metadata, at most 255 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passthrough: Option<String>,
    /// User labels (`title`, `creator_id`, `external_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<AssetMeta>,
    /// Seconds to wait for an encoder to come back before the stream goes idle (fractions
    /// allowed; whole numbers are written as JSON integers).
    #[serde(serialize_with = "seconds::serialize")]
    #[schema(value_type = f64, minimum = 0, maximum = 1800)]
    pub reconnect_window: f64,
    /// Standard, reduced or low latency.
    pub latency_mode: LatencyMode,
    /// Seconds a broadcast may last before it is disconnected.
    pub max_continuous_duration: u32,
    /// Only the audio track is processed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub audio_only: bool,
    /// A test stream.
    #[serde(default, skip_serializing_if = "is_false")]
    pub test: bool,
    /// Passphrase for SRT ingest encryption.
    pub srt_passphrase: String,
    /// The protocol of the current broadcast; only set while active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_ingest_protocol: Option<IngestProtocol>,
    /// Insert slate while a standard-latency stream waits for a reconnect.
    #[serde(default, skip_serializing_if = "is_false")]
    pub use_slate_for_standard_latency: bool,
    /// Image to use as slate instead of the default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect_slate_url: Option<String>,
    /// Assets recorded from this stream, most recent last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_asset_ids: Vec<String>,
    /// The asset being recorded by the current broadcast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_asset_id: Option<String>,
    /// Restream targets (not implemented yet: always empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub simulcast_targets: Vec<Value>,
    /// Embedded closed caption tracks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub embedded_subtitles: Vec<EmbeddedSubtitle>,
}

impl fmt::Debug for LiveStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveStream")
            .field("id", &self.id)
            .field("stream_key", &Redacted(&self.stream_key))
            .field("status", &self.status)
            .field("playback_ids", &self.playback_ids)
            .field("created_at", &self.created_at)
            .field("new_asset_settings", &self.new_asset_settings)
            .field("passthrough", &self.passthrough)
            .field("meta", &self.meta)
            .field("reconnect_window", &self.reconnect_window)
            .field("latency_mode", &self.latency_mode)
            .field("max_continuous_duration", &self.max_continuous_duration)
            .field("audio_only", &self.audio_only)
            .field("test", &self.test)
            .field("srt_passphrase", &Redacted(&self.srt_passphrase))
            .field("active_ingest_protocol", &self.active_ingest_protocol)
            .field(
                "use_slate_for_standard_latency",
                &self.use_slate_for_standard_latency,
            )
            .field("reconnect_slate_url", &self.reconnect_slate_url)
            .field("recent_asset_ids", &self.recent_asset_ids)
            .field("active_asset_id", &self.active_asset_id)
            .field("simulcast_targets", &self.simulcast_targets)
            .field("embedded_subtitles", &self.embedded_subtitles)
            .finish()
    }
}

/// Shows only the first four characters of a secret.
pub(crate) struct Redacted<'a>(pub(crate) &'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix: String = self.0.chars().take(4).collect();
        write!(f, "\"{prefix}…\"")
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `created_at` as a string of unix seconds; accepts a string or a number when reading.
pub(crate) mod unix_seconds_string {
    use super::*;

    pub fn serialize<S: Serializer>(secs: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(secs)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum StringOrInt {
            String(String),
            Int(i64),
        }
        match StringOrInt::deserialize(d)? {
            StringOrInt::Int(n) => Ok(n),
            StringOrInt::String(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A playback policy or an array of at most [`MAX_PLAYBACK_POLICIES_PER_REQUEST`]: how
/// requests may give `playback_policy` (answers always use arrays). The OpenAPI document's
/// name for what [`one_or_many`] reads; its schema is written by hand because the derive
/// cannot bound the array.
#[derive(Debug)]
pub struct OneOrMorePolicies;

impl utoipa::PartialSchema for OneOrMorePolicies {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, OneOfBuilder};
        use utoipa::openapi::Ref;
        let policy = || Ref::from_schema_name(PlaybackPolicy::name());
        OneOfBuilder::new()
            .description(Some(
                "A playback policy, or an array of at most 10 (the older request form)",
            ))
            .item(policy())
            .item(
                ArrayBuilder::new()
                    .items(policy())
                    .max_items(Some(MAX_PLAYBACK_POLICIES_PER_REQUEST)),
            )
            .into()
    }
}

impl ToSchema for OneOrMorePolicies {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((
            PlaybackPolicy::name().into_owned(),
            <PlaybackPolicy as utoipa::PartialSchema>::schema(),
        ));
    }
}

/// What a live stream's `new_asset_settings` holds that OnAir uses (other settings are kept
/// and returned as sent). The OpenAPI document's name for what
/// [`crate::asset::AssetSettings`] reads.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewAssetSettings {
    /// One playback ID per entry for each recorded asset.
    #[serde(default)]
    #[schema(max_items = 10)]
    pub playback_policies: Option<Vec<PlaybackPolicy>>,
    /// Deprecated spelling of `playback_policies`; answered as `playback_policies`.
    #[serde(default)]
    #[schema(deprecated, value_type = Option<OneOrMorePolicies>)]
    pub playback_policy: Option<Value>,
    /// The recorded assets' passthrough.
    #[serde(default)]
    #[schema(max_length = 255)]
    pub passthrough: Option<String>,
    /// The recorded assets' labels.
    #[serde(default)]
    pub meta: Option<AssetMeta>,
}

/// `"public"` or `["public", "signed"]`.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => None,
        Some(OneOrMany::One(s)) => Some(vec![s]),
        Some(OneOrMany::Many(v)) => Some(v),
    })
}

/// `T` from a JSON object only: serde's derive would also read a struct from an array of its
/// field values (`[null, null]`), which the API must refuse.
fn from_object<T: DeserializeOwned, E: serde::de::Error>(map: Map<String, Value>) -> Result<T, E> {
    serde_json::from_value(Value::Object(map)).map_err(E::custom)
}

/// An optional object (see [`from_object`]).
pub(crate) fn optional_object<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    Option::<Map<String, Value>>::deserialize(d)?
        .map(from_object)
        .transpose()
}

/// An optional object where an explicit `null` is `Some(None)` (see [`double_option`]).
pub(crate) fn nullable_object<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    optional_object(d).map(Some)
}

/// An array of objects (see [`from_object`]).
fn objects<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    Vec::<Map<String, Value>>::deserialize(d)?
        .into_iter()
        .map(from_object)
        .collect()
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Parameters for creating a live stream: the body of `POST /video/v1/live-streams`.
///
/// Every field is optional; [`NewLiveStream::default()`] creates a standard-latency stream
/// with one public playback ID. Unknown JSON fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(default)]
pub struct NewLiveStream {
    /// One playback ID is created per entry (`"public"`, `"signed"` or `"drm"`). Absent means
    /// one public playback ID; an empty array means none.
    #[serde(deserialize_with = "one_or_many")]
    #[schema(value_type = Option<Vec<PlaybackPolicy>>, max_items = 10)]
    pub playback_policies: Option<Vec<String>>,
    /// The deprecated spelling of `playback_policies` (a string or an array); checked in any
    /// case, used when `playback_policies` is absent.
    #[serde(deserialize_with = "one_or_many")]
    #[schema(value_type = Option<OneOrMorePolicies>)]
    pub playback_policy: Option<Vec<String>>,
    /// Settings for recorded assets; must be a JSON object. The deprecated `playback_policy`
    /// in it is answered as `playback_policies`.
    #[schema(value_type = Option<NewAssetSettings>)]
    pub new_asset_settings: Option<Value>,
    /// Arbitrary metadata, at most 255 characters.
    #[schema(max_length = 255)]
    pub passthrough: Option<String>,
    /// User labels: `title`, `creator_id`, `external_id`.
    #[serde(deserialize_with = "optional_object")]
    pub meta: Option<AssetMeta>,
    /// 0..=1800 seconds, fractions allowed; defaults by latency mode (60 standard, 0
    /// reduced/low).
    #[schema(minimum = 0, maximum = 1800)]
    pub reconnect_window: Option<f64>,
    /// `"standard"` (default), `"reduced"` or `"low"`.
    #[schema(value_type = Option<LatencyMode>)]
    pub latency_mode: Option<String>,
    /// Deprecated: `true` means `latency_mode: "reduced"` when `latency_mode` is absent.
    pub reduced_latency: Option<bool>,
    /// Deprecated: `true` means `latency_mode: "low"` when `latency_mode` is absent.
    pub low_latency: Option<bool>,
    /// 60..=43200 seconds, default 43200.
    #[schema(minimum = 60, maximum = 43200)]
    pub max_continuous_duration: Option<i64>,
    /// Process only the audio track.
    pub audio_only: bool,
    /// A test stream.
    pub test: bool,
    /// Insert slate while a standard-latency stream waits for a reconnect.
    pub use_slate_for_standard_latency: bool,
    /// An http(s) URL of a slate image.
    #[schema(max_length = 2048, pattern = r"^[hH][tT][tT][pP][sS]?://[!-~]+$")]
    pub reconnect_slate_url: Option<String>,
    /// Embedded closed caption tracks.
    #[serde(deserialize_with = "objects")]
    pub embedded_subtitles: Vec<EmbeddedSubtitle>,
}

/// A validated [`NewLiveStream`] with every default resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveStreamSettings {
    /// One playback ID per entry.
    pub playback_policies: Vec<PlaybackPolicy>,
    /// A JSON object, if given.
    pub new_asset_settings: Option<Value>,
    /// User metadata.
    pub passthrough: Option<String>,
    /// User labels.
    pub meta: Option<AssetMeta>,
    /// Seconds.
    pub reconnect_window: f64,
    /// The latency mode.
    pub latency_mode: LatencyMode,
    /// Seconds.
    pub max_continuous_duration: u32,
    /// Audio only.
    pub audio_only: bool,
    /// Test stream.
    pub test: bool,
    /// Slate for standard latency.
    pub use_slate_for_standard_latency: bool,
    /// Slate image URL.
    pub reconnect_slate_url: Option<String>,
    /// Caption tracks.
    pub embedded_subtitles: Vec<EmbeddedSubtitle>,
}

impl NewLiveStream {
    /// Checks every field against the seeds' limits and resolves the defaults.
    ///
    /// Errors are [`StoreError::InvalidField`] naming the first offending field.
    pub fn validate(&self) -> Result<LiveStreamSettings, StoreError> {
        // Both spellings are checked; the current one wins when both are given.
        let legacy = self
            .playback_policy
            .as_ref()
            .map(|names| parse_policies("playback_policy", names))
            .transpose()?;
        let playback_policies = match (&self.playback_policies, legacy) {
            (Some(names), _) => parse_policies("playback_policies", names)?,
            (None, Some(policies)) => policies,
            (None, None) => vec![PlaybackPolicy::Public],
        };
        let latency_mode = match &self.latency_mode {
            Some(name) => parse_latency_mode(name)?,
            None if self.low_latency == Some(true) => LatencyMode::Low,
            None if self.reduced_latency == Some(true) => LatencyMode::Reduced,
            None => LatencyMode::Standard,
        };
        let reconnect_window = match self.reconnect_window {
            Some(w) => check_reconnect_window(w)?,
            None => latency_mode.default_reconnect_window(),
        };
        let max_continuous_duration = match self.max_continuous_duration {
            Some(d) => check_max_continuous_duration(d)?,
            None => DEFAULT_MAX_CONTINUOUS_DURATION,
        };
        if let Some(p) = &self.passthrough {
            check_passthrough(p)?;
        }
        let new_asset_settings = self
            .new_asset_settings
            .as_ref()
            .map(check_new_asset_settings)
            .transpose()?;
        if let Some(meta) = &self.meta {
            meta.validate()?;
        }
        if let Some(url) = &self.reconnect_slate_url {
            check_slate_url(url)?;
        }
        for subtitle in &self.embedded_subtitles {
            subtitle.validate()?;
        }
        Ok(LiveStreamSettings {
            playback_policies,
            new_asset_settings,
            passthrough: self.passthrough.clone(),
            meta: self.meta.clone().filter(|m| !m.is_empty()),
            reconnect_window,
            latency_mode,
            max_continuous_duration,
            audio_only: self.audio_only,
            test: self.test,
            use_slate_for_standard_latency: self.use_slate_for_standard_latency,
            reconnect_slate_url: self.reconnect_slate_url.clone(),
            embedded_subtitles: self.embedded_subtitles.clone(),
        })
    }
}

/// A partial update of a live stream: the body of `PATCH /video/v1/live-streams/{id}`.
///
/// Absent fields are left unchanged; for the nullable ones an explicit JSON `null`
/// (`Some(None)`) clears the value. Changing `latency_mode` does not change
/// `reconnect_window`; the defaults apply at creation only.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(default)]
pub struct LiveStreamPatch {
    /// `"standard"`, `"reduced"` or `"low"`.
    #[schema(value_type = Option<LatencyMode>)]
    pub latency_mode: Option<String>,
    /// Deprecated: `true` means `latency_mode: "reduced"` when `latency_mode` is absent.
    pub reduced_latency: Option<bool>,
    /// Deprecated: `true` means `latency_mode: "low"` when `latency_mode` is absent.
    pub low_latency: Option<bool>,
    /// 0..=1800 seconds, fractions allowed.
    #[schema(minimum = 0, maximum = 1800)]
    pub reconnect_window: Option<f64>,
    /// 60..=43200 seconds.
    #[schema(minimum = 60, maximum = 43200)]
    pub max_continuous_duration: Option<i64>,
    /// At most 255 characters; `null` clears.
    #[serde(deserialize_with = "double_option")]
    #[schema(max_length = 255)]
    pub passthrough: Option<Option<String>>,
    /// Slate for standard latency.
    pub use_slate_for_standard_latency: Option<bool>,
    /// An http(s) URL; `null` clears.
    #[serde(deserialize_with = "double_option")]
    #[schema(max_length = 2048, pattern = r"^[hH][tT][tT][pP][sS]?://[!-~]+$")]
    pub reconnect_slate_url: Option<Option<String>>,
    /// A JSON object; `null` clears.
    #[serde(deserialize_with = "double_option")]
    #[schema(value_type = Option<NewAssetSettings>)]
    pub new_asset_settings: Option<Option<Value>>,
    /// User labels; `null` clears.
    #[serde(deserialize_with = "nullable_object")]
    pub meta: Option<Option<AssetMeta>>,
}

/// A validated [`LiveStreamPatch`]: `None` leaves a field unchanged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveStreamChanges {
    /// New latency mode.
    pub latency_mode: Option<LatencyMode>,
    /// New reconnect window.
    pub reconnect_window: Option<f64>,
    /// New maximum duration.
    pub max_continuous_duration: Option<u32>,
    /// New passthrough (`Some(None)` clears).
    pub passthrough: Option<Option<String>>,
    /// New slate flag.
    pub use_slate_for_standard_latency: Option<bool>,
    /// New slate URL (`Some(None)` clears).
    pub reconnect_slate_url: Option<Option<String>>,
    /// New asset settings, in the current form (`Some(None)` clears).
    pub new_asset_settings: Option<Option<Value>>,
    /// New labels (`Some(None)` clears).
    pub meta: Option<Option<AssetMeta>>,
}

impl LiveStreamChanges {
    /// True when nothing would change.
    pub fn is_empty(&self) -> bool {
        *self == LiveStreamChanges::default()
    }
}

impl LiveStreamPatch {
    /// Checks every given field with the same limits as creation.
    pub fn validate(&self) -> Result<LiveStreamChanges, StoreError> {
        let latency_mode = match &self.latency_mode {
            Some(name) => Some(parse_latency_mode(name)?),
            None if self.low_latency == Some(true) => Some(LatencyMode::Low),
            None if self.reduced_latency == Some(true) => Some(LatencyMode::Reduced),
            None => None,
        };
        let reconnect_window = self
            .reconnect_window
            .map(check_reconnect_window)
            .transpose()?;
        let max_continuous_duration = self
            .max_continuous_duration
            .map(check_max_continuous_duration)
            .transpose()?;
        if let Some(Some(p)) = &self.passthrough {
            check_passthrough(p)?;
        }
        if let Some(Some(url)) = &self.reconnect_slate_url {
            check_slate_url(url)?;
        }
        let new_asset_settings = match &self.new_asset_settings {
            Some(Some(settings)) => Some(Some(check_new_asset_settings(settings)?)),
            other => other.clone(),
        };
        if let Some(Some(meta)) = &self.meta {
            meta.validate()?;
        }
        Ok(LiveStreamChanges {
            latency_mode,
            reconnect_window,
            max_continuous_duration,
            passthrough: self.passthrough.clone(),
            use_slate_for_standard_latency: self.use_slate_for_standard_latency,
            reconnect_slate_url: self.reconnect_slate_url.clone(),
            new_asset_settings,
            meta: self.meta.clone().map(|meta| meta.filter(|m| !m.is_empty())),
        })
    }
}

fn parse_policies(
    field: &'static str,
    names: &[String],
) -> Result<Vec<PlaybackPolicy>, StoreError> {
    if names.len() > MAX_PLAYBACK_POLICIES_PER_REQUEST {
        return Err(StoreError::invalid(
            field,
            format!("at most {MAX_PLAYBACK_POLICIES_PER_REQUEST} playback policies"),
        ));
    }
    names.iter().map(|name| parse_policy(field, name)).collect()
}

/// Parses a playback policy named in field `field`.
pub(crate) fn parse_policy(field: &'static str, name: &str) -> Result<PlaybackPolicy, StoreError> {
    PlaybackPolicy::parse(name).ok_or_else(|| {
        StoreError::invalid(
            field,
            format!("unknown playback policy {name:?} (expected public, signed or drm)"),
        )
    })
}

fn parse_latency_mode(name: &str) -> Result<LatencyMode, StoreError> {
    LatencyMode::parse(name).ok_or_else(|| {
        StoreError::invalid(
            "latency_mode",
            format!("unknown latency mode {name:?} (expected standard, reduced or low)"),
        )
    })
}

fn check_reconnect_window(w: f64) -> Result<f64, StoreError> {
    if (0.0..=MAX_RECONNECT_WINDOW).contains(&w) {
        Ok(w)
    } else {
        Err(StoreError::invalid(
            "reconnect_window",
            format!("must be a number of seconds from 0 to {MAX_RECONNECT_WINDOW}, got {w}"),
        ))
    }
}

fn check_max_continuous_duration(d: i64) -> Result<u32, StoreError> {
    u32::try_from(d)
        .ok()
        .filter(|d| (MIN_MAX_CONTINUOUS_DURATION..=DEFAULT_MAX_CONTINUOUS_DURATION).contains(d))
        .ok_or_else(|| {
            StoreError::invalid(
                "max_continuous_duration",
                format!(
                    "must be between {MIN_MAX_CONTINUOUS_DURATION} and \
                     {DEFAULT_MAX_CONTINUOUS_DURATION} seconds, got {d}"
                ),
            )
        })
}

fn check_passthrough(p: &str) -> Result<(), StoreError> {
    check_chars("passthrough", "passthrough", p)
}

/// Checks `new_asset_settings` and returns it in the current form (see
/// [`normalize_new_asset_settings`]).
fn check_new_asset_settings(v: &Value) -> Result<Value, StoreError> {
    crate::asset::AssetSettings::parse(v)?;
    Ok(normalize_new_asset_settings(v.clone()))
}

/// Whole seconds as a JSON integer (`60`), others as a number with a fraction (`12.5`).
mod seconds {
    use serde::Serializer;

    pub fn serialize<S: Serializer>(secs: &f64, s: S) -> Result<S::Ok, S::Error> {
        if secs.fract() == 0.0 && secs.abs() < 9.0e15 {
            #[allow(clippy::cast_possible_truncation)]
            s.serialize_i64(*secs as i64)
        } else {
            s.serialize_f64(*secs)
        }
    }
}

fn check_slate_url(url: &str) -> Result<(), StoreError> {
    if url.len() > MAX_URL_LEN {
        return Err(StoreError::invalid(
            "reconnect_slate_url",
            format!("must be at most {MAX_URL_LEN} bytes"),
        ));
    }
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !url.chars().any(|c| c.is_whitespace()) => Ok(()),
        _ => Err(StoreError::invalid(
            "reconnect_slate_url",
            "must be an http or https URL",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(err: StoreError) -> &'static str {
        match err {
            StoreError::InvalidField { field, .. } => field,
            other => panic!("expected InvalidField, got {other:?}"),
        }
    }

    #[test]
    fn defaults_resolve_like_the_seeds() {
        let s = NewLiveStream::default().validate().unwrap();
        assert_eq!(s.playback_policies, vec![PlaybackPolicy::Public]);
        assert_eq!(s.latency_mode, LatencyMode::Standard);
        assert_eq!(s.reconnect_window, 60.0);
        assert_eq!(s.max_continuous_duration, 43_200);
        assert!(!s.audio_only && !s.test && !s.use_slate_for_standard_latency);
        for mode in ["reduced", "low"] {
            let p = NewLiveStream {
                latency_mode: Some(mode.into()),
                ..Default::default()
            };
            assert_eq!(p.validate().unwrap().reconnect_window, 0.0, "{mode}");
        }
        let legacy = NewLiveStream {
            reduced_latency: Some(true),
            ..Default::default()
        };
        assert_eq!(
            legacy.validate().unwrap().latency_mode,
            LatencyMode::Reduced
        );
    }

    #[test]
    fn validation_names_the_field() {
        let cases: Vec<(NewLiveStream, &str)> = vec![
            (
                NewLiveStream {
                    reconnect_window: Some(1801.0),
                    ..Default::default()
                },
                "reconnect_window",
            ),
            (
                NewLiveStream {
                    reconnect_window: Some(-1.0),
                    ..Default::default()
                },
                "reconnect_window",
            ),
            (
                NewLiveStream {
                    max_continuous_duration: Some(59),
                    ..Default::default()
                },
                "max_continuous_duration",
            ),
            (
                NewLiveStream {
                    max_continuous_duration: Some(43_201),
                    ..Default::default()
                },
                "max_continuous_duration",
            ),
            (
                NewLiveStream {
                    passthrough: Some("é".repeat(256)),
                    ..Default::default()
                },
                "passthrough",
            ),
            (
                NewLiveStream {
                    latency_mode: Some("ultra".into()),
                    ..Default::default()
                },
                "latency_mode",
            ),
            (
                NewLiveStream {
                    playback_policies: Some(vec!["private".into()]),
                    ..Default::default()
                },
                "playback_policies",
            ),
            (
                NewLiveStream {
                    playback_policy: Some(vec!["Public".into()]),
                    ..Default::default()
                },
                "playback_policy",
            ),
            (
                NewLiveStream {
                    new_asset_settings: Some(json!([1])),
                    ..Default::default()
                },
                "new_asset_settings",
            ),
            (
                NewLiveStream {
                    reconnect_slate_url: Some("ftp://x/slate.png".into()),
                    ..Default::default()
                },
                "reconnect_slate_url",
            ),
        ];
        for (params, field) in cases {
            assert_eq!(field_of(params.validate().unwrap_err()), field);
        }
        // The limits themselves are accepted.
        let edge = NewLiveStream {
            reconnect_window: Some(1800.0),
            max_continuous_duration: Some(60),
            passthrough: Some("é".repeat(255)),
            ..Default::default()
        };
        assert!(edge.validate().is_ok());
    }

    #[test]
    fn params_deserialize_from_api_bodies() {
        let p: NewLiveStream = serde_json::from_value(json!({
            "playback_policy": "signed",
            "new_asset_settings": { "playback_policies": ["public"] },
            "latency_mode": "low",
            "embedded_subtitles": [{ "name": "English" }],
            "some_future_field": 1
        }))
        .unwrap();
        let s = p.validate().unwrap();
        assert_eq!(s.playback_policies, vec![PlaybackPolicy::Signed]);
        assert_eq!(s.latency_mode, LatencyMode::Low);
        assert_eq!(s.embedded_subtitles[0].language_channel, "cc1");
        assert_eq!(s.embedded_subtitles[0].language_code, "en");

        let none: NewLiveStream =
            serde_json::from_value(json!({ "playback_policies": [] })).unwrap();
        assert!(none.validate().unwrap().playback_policies.is_empty());

        let patch: LiveStreamPatch =
            serde_json::from_value(json!({ "passthrough": null, "reconnect_window": 30 })).unwrap();
        assert_eq!(patch.passthrough, Some(None));
        assert_eq!(patch.reconnect_slate_url, None);
        let bad: LiveStreamPatch =
            serde_json::from_value(json!({ "max_continuous_duration": 10 })).unwrap();
        assert_eq!(
            field_of(bad.validate().unwrap_err()),
            "max_continuous_duration"
        );
    }

    #[test]
    fn legacy_bodies_resolve_to_the_current_shapes() {
        let p: NewLiveStream = serde_json::from_value(json!({
            "playback_policy": "public",
            "new_asset_settings": { "playback_policy": "signed", "passthrough": "x" },
            "reconnect_window": 12.5,
            "meta": { "title": "Show", "creator_id": "c1", "external_id": "e1", "other": 1 },
        }))
        .unwrap();
        let s = p.validate().unwrap();
        assert_eq!(s.playback_policies, vec![PlaybackPolicy::Public]);
        assert_eq!(s.reconnect_window, 12.5);
        assert_eq!(
            s.new_asset_settings,
            Some(json!({ "playback_policies": ["signed"], "passthrough": "x" }))
        );
        let meta = s.meta.unwrap();
        assert_eq!(meta.title.as_deref(), Some("Show"));
        assert_eq!(meta.external_id.as_deref(), Some("e1"));

        let patch: LiveStreamPatch = serde_json::from_value(json!({
            "reduced_latency": true,
            "reconnect_window": 0.1,
            "new_asset_settings": { "playback_policies": "public" },
            "meta": null,
        }))
        .unwrap();
        let c = patch.validate().unwrap();
        assert_eq!(c.latency_mode, Some(LatencyMode::Reduced));
        assert_eq!(c.reconnect_window, Some(0.1));
        assert_eq!(
            c.new_asset_settings,
            Some(Some(json!({ "playback_policies": ["public"] })))
        );
        assert_eq!(c.meta, Some(None));
        for bad in [1800.5, -0.1, f64::NAN] {
            let p = NewLiveStream {
                reconnect_window: Some(bad),
                ..Default::default()
            };
            let e = p.validate().unwrap_err();
            assert!(e.to_string().contains("from 0 to 1800"), "{e}");
        }
    }

    #[test]
    fn seconds_are_integers_when_whole() {
        let mut v = serde_json::to_value(LiveStream {
            reconnect_window: 12.5,
            ..sample()
        })
        .unwrap();
        assert_eq!(v["reconnect_window"], json!(12.5));
        v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["reconnect_window"], json!(60));
    }

    fn sample() -> LiveStream {
        serde_json::from_value(json!({
            "id": "a", "stream_key": "k", "status": "idle", "playback_ids": [],
            "created_at": "1", "reconnect_window": 60, "latency_mode": "standard",
            "max_continuous_duration": 43200, "srt_passphrase": "p"
        }))
        .unwrap()
    }

    #[test]
    fn live_stream_json_shape() {
        let ls = LiveStream {
            id: "QrikEQpEXp3RvklQSHyHSYOakQkXlRId".into(),
            stream_key: "super-secret-stream-key".into(),
            status: LiveStreamStatus::Idle,
            playback_ids: vec![PlaybackId {
                id: "OJxPwQuByldIr02VfoXDdX6Ynl01MTgC8w02".into(),
                policy: PlaybackPolicy::Public,
            }],
            created_at: 1_527_110_899,
            new_asset_settings: None,
            passthrough: None,
            meta: None,
            reconnect_window: 60.0,
            latency_mode: LatencyMode::Standard,
            max_continuous_duration: 43_200,
            audio_only: false,
            test: false,
            srt_passphrase: "pass".into(),
            active_ingest_protocol: None,
            use_slate_for_standard_latency: false,
            reconnect_slate_url: None,
            recent_asset_ids: vec![],
            active_asset_id: None,
            simulcast_targets: vec![],
            embedded_subtitles: vec![],
        };
        let v = serde_json::to_value(&ls).unwrap();
        assert_eq!(
            v,
            json!({
                "id": "QrikEQpEXp3RvklQSHyHSYOakQkXlRId",
                "stream_key": "super-secret-stream-key",
                "status": "idle",
                "playback_ids": [{ "policy": "public", "id": "OJxPwQuByldIr02VfoXDdX6Ynl01MTgC8w02" }],
                "created_at": "1527110899",
                "reconnect_window": 60,
                "latency_mode": "standard",
                "max_continuous_duration": 43200,
                "srt_passphrase": "pass"
            })
        );
        let back: LiveStream = serde_json::from_value(v).unwrap();
        assert_eq!(back, ls);

        let active = LiveStream {
            status: LiveStreamStatus::Active,
            active_ingest_protocol: Some(IngestProtocol::Srt),
            test: true,
            ..ls.clone()
        };
        let v = serde_json::to_value(&active).unwrap();
        assert_eq!(v["active_ingest_protocol"], "srt");
        assert_eq!(v["test"], true);
        assert!(v.get("audio_only").is_none());

        let debug = format!("{ls:?}");
        assert!(!debug.contains("super-secret-stream-key"));
    }
}
