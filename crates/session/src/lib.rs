//! # OnAir session manager
//!
//! One actor per live stream owns its packager (segmenter and live window); ingest listeners
//! reach it through the [`ingest`] contract.
#![forbid(unsafe_code)]

mod actor;
pub mod ingest;
pub mod lifecycle;
pub mod live;
pub mod manager;
mod recording;
mod store_glue;

pub use ingest::{
    Admission, IngestEvent, IngestProtocol, IngestSender, PublishGrant, PublishRejection,
    PublishRequest,
};
pub use live::LiveView;
pub use manager::{PlaybackTarget, SessionConfig, SessionManager};
