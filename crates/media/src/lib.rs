//! # OnAir media core
//!
//! Pure, deterministic media code: no sockets, no clocks, no files. Bytes go in, the one model
//! of the gateway comes out, and MPEG-TS goes out again.
//!
//! ```text
//! FLV tag / RTMP message ──▶ FlvDemuxer ──┬──▶ DemuxEvent::{Config, Frame, Metadata}
//! MPEG-TS bytes (SRT) ─────▶ TsDemuxer ───┘                 │
//!                         Frame + StreamConfig ─────────────┴──▶ TsMuxer ──▶ 188-byte TS packets
//! ```
//!
//! Drive it by feeding each tag to [`FlvDemuxer::handle_tag`] with its timestamp (or each SRT
//! payload to [`TsDemuxer::handle_bytes`]); give every [`Frame`] to a [`TsMuxer`] built from
//! the current [`StreamConfig`] (the `hls` crate does this per segment). Every parser of peer input returns a [`MediaError`] on bad input and never
//! panics; each has a fuzz target under `fuzz/`.
#![forbid(unsafe_code)]

pub mod aac;
pub mod amf0;
pub mod annexb;
pub mod avc;
mod bits;
pub mod demux;
pub mod error;
pub mod flv;
pub mod frame;
pub mod hevc;
mod reader;
pub mod timestamp;
pub mod ts;
pub mod ts_demux;

pub use demux::{DemuxEvent, FlvDemuxer};
pub use error::{MediaError, Result};
pub use frame::{AudioConfig, Frame, StreamConfig, Track, VideoCodec, VideoConfig, TIMESCALE};
pub use ts::TsMuxer;
pub use ts_demux::{TsDemuxStats, TsDemuxer};
