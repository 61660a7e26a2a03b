//! # OnAir session manager
//!
//! One actor per running broadcast owns its packager (segmenter and live window), live view
//! and recording, and drives the broadcast's [`lifecycle`]; ingest listeners reach it through
//! the [`ingest`] contract, the API through [`SessionManager`]'s commands.
#![forbid(unsafe_code)]

mod actor;
mod asset_media;
pub mod ingest;
pub mod lifecycle;
pub mod live;
pub mod manager;
pub mod pacing;
mod recording;
pub mod reloadable;
pub mod runtimes;
mod slate_cache;
mod slate_control;
mod slate_feed;
mod slate_image;
mod store_glue;
mod timeline;
pub mod vod;
mod writer;

pub use ingest::redact_stream_key;
pub use ingest::{
    Admission, IngestEvent, IngestProtocol, IngestSender, MediaBatcher, PublishGrant,
    PublishRejection, PublishRequest, SrtAdmission,
};
pub use live::LiveView;
pub use manager::{PlaybackTarget, ResolvedPlayback, SessionConfig, SessionManager};
pub use pacing::{Pacer, PacingConfig};
pub use reloadable::Reloadable;
pub use runtimes::{IngestRuntimes, IngestThreads};
pub use vod::RecordedView;
