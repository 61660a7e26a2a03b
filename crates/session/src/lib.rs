//! # OnAir session manager
//!
//! One actor per live stream owns its packager (segmenter and live window); ingest listeners
//! reach it through the [`ingest`] contract.
#![forbid(unsafe_code)]

pub mod ingest;

pub use ingest::{
    Admission, IngestEvent, IngestProtocol, IngestSender, PublishGrant, PublishRejection,
    PublishRequest,
};
