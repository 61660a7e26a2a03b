//! # OnAir HLS
//!
//! Pure HLS packaging: a [`Segmenter`] that cuts [`media::Frame`]s into MPEG-TS segments
//! starting on video keyframes, and playlist rendering ([`MediaPlaylist`],
//! [`render_multivariant`]). No sockets, files or clocks: the caller passes the wall clock with
//! each frame and stores the segments it gets back.
//!
//! ```text
//! StreamConfig ─▶ Segmenter::handle_config
//! Frame, now   ─▶ Segmenter::handle_frame ─▶ Option<Segment> ─▶ MediaPlaylist::push(&segment)
//!                 Segmenter::finish        ─▶ Option<Segment>    MediaPlaylist::render_live / render_event
//! ```
#![forbid(unsafe_code)]

pub mod packager;
pub mod playlist;
pub mod segmenter;

pub use packager::Packager;
pub use playlist::{
    format_date_time, render_multivariant, MediaPlaylist, SegmentInfo, Variant, DEFAULT_WINDOW,
};
pub use segmenter::{LatencyMode, Segment, Segmenter, SegmenterConfig, SegmenterStats};
