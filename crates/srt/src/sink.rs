//! Where a connection's received payloads go: the seam for the MPEG-TS demuxer.
//!
//! Each accepted caller gets its own [`PayloadSink`] from the listener's [`SinkFactory`]. The
//! connection hands it every payload SRT delivers (usually 7 TS packets, 1316 bytes, but not
//! always 188-aligned: the demuxer must resync) and forwards the [`DemuxEvent`]s it returns to
//! the session. The gateway uses [`media::TsDemuxer`] (implemented here).

use bytes::Bytes;
use media::{DemuxEvent, MediaError};

/// Turns received SRT payloads into media events. Sans-IO: called from the connection's task.
pub trait PayloadSink: Send + 'static {
    /// Handles one payload; an `Err` ends this caller's connection (bad input).
    fn handle_payload(&mut self, payload: Bytes) -> Result<Vec<DemuxEvent>, MediaError>;

    /// The connection ended: whatever is still buffered (a last frame), if anything.
    fn finish(&mut self) -> Vec<DemuxEvent> {
        Vec::new()
    }
}

/// Makes one [`PayloadSink`] per accepted caller. Any `Fn(&str) -> S` is one (the argument
/// is the live stream's id, for logs).
pub trait SinkFactory: Send + Sync + 'static {
    /// The sink type.
    type Sink: PayloadSink;
    /// A sink for a caller just admitted to live stream `live_stream_id`.
    fn new_sink(&self, live_stream_id: &str) -> Self::Sink;
}

impl<F, S> SinkFactory for F
where
    F: Fn(&str) -> S + Send + Sync + 'static,
    S: PayloadSink,
{
    type Sink = S;
    fn new_sink(&self, live_stream_id: &str) -> S {
        self(live_stream_id)
    }
}

/// MPEG-TS, the media SRT callers send: the demuxer resyncs on unaligned payloads, and
/// refuses a program OnAir cannot carry (naming the codec), which ends the connection.
impl PayloadSink for media::TsDemuxer {
    fn handle_payload(&mut self, payload: Bytes) -> Result<Vec<DemuxEvent>, MediaError> {
        self.handle_bytes(&payload)
    }

    fn finish(&mut self) -> Vec<DemuxEvent> {
        self.flush()
    }
}

/// A sink that counts what arrives and drops it: for the gateway until the TS demuxer is
/// plugged in (it logs once that SRT media is not used yet), and for tests.
#[derive(Debug, Default)]
pub struct DiscardSink {
    /// Payloads received.
    pub payloads: u64,
    /// Bytes received.
    pub bytes: u64,
}

impl PayloadSink for DiscardSink {
    fn handle_payload(&mut self, payload: Bytes) -> Result<Vec<DemuxEvent>, MediaError> {
        if self.payloads == 0 {
            tracing::warn!("SRT media received but not used: no TS demuxer is plugged in yet");
        }
        self.payloads += 1;
        self.bytes += payload.len() as u64;
        Ok(Vec::new())
    }
}
