//! The RTMP chunk stream (RTMP 1.0 section 5.3), both directions, sans-IO.
//!
//! [`ChunkDecoder`] replaces rml_rtmp's `ChunkDeserializer` for everything a peer sends.
//! rml_rtmp 0.8 keeps one payload buffer for all chunk streams, so the chunks of two messages
//! interleaved on different chunk stream ids (which the specification allows, and which
//! encoders do when a video frame is split and an audio message is sent in between) corrupt
//! each other; it also grows its buffers without a bound and can overflow arithmetic on
//! hostile headers. This decoder keeps a header and a payload per chunk stream id, appends
//! chunk payloads as they arrive (so the chunk size never drives memory), bounds every buffer
//! and counts with checked or wrapping arithmetic.
//!
//! [`ChunkWriter`] writes the few messages OnAir sends itself (acknowledgements, replies that
//! rml_rtmp has no hook for) on a chunk stream id of their own, so that rml_rtmp's header
//! compression on the other ids stays valid for the peer.

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::ProtocolError;

/// Message type ids (RTMP 1.0 sections 5.4, 6 and 7).
pub mod message_type {
    /// Set Chunk Size.
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Abort Message.
    pub const ABORT: u8 = 2;
    /// Acknowledgement.
    pub const ACKNOWLEDGEMENT: u8 = 3;
    /// User Control Message.
    pub const USER_CONTROL: u8 = 4;
    /// Window Acknowledgement Size.
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Set Peer Bandwidth.
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// Audio data (an FLV audio tag body).
    pub const AUDIO: u8 = 8;
    /// Video data (an FLV video tag body).
    pub const VIDEO: u8 = 9;
    /// Data message, AMF3 envelope.
    pub const DATA_AMF3: u8 = 15;
    /// Command message, AMF3 envelope.
    pub const COMMAND_AMF3: u8 = 17;
    /// Data message, AMF0 (`@setDataFrame`, `onMetaData`).
    pub const DATA_AMF0: u8 = 18;
    /// Command message, AMF0 (`connect`, `publish`, ...).
    pub const COMMAND_AMF0: u8 = 20;
    /// Aggregate message.
    pub const AGGREGATE: u8 = 22;
}

/// The chunk size every RTMP connection starts with.
pub const INITIAL_CHUNK_SIZE: usize = 128;

/// The 24-bit timestamp value that announces an extended (32-bit) timestamp.
const EXTENDED_TIMESTAMP: u32 = 0xff_ffff;

/// One whole RTMP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The chunk stream it arrived on.
    pub csid: u32,
    /// Timestamp in milliseconds (32 bits, wrapping).
    pub timestamp: u32,
    /// See [`message_type`].
    pub type_id: u8,
    /// The message stream id (0 for the connection, the created stream for media).
    pub stream_id: u32,
    /// The payload.
    pub payload: Bytes,
}

/// Limits of a [`ChunkDecoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Longest message accepted.
    pub max_message_size: usize,
    /// Most bytes of incomplete messages, over all chunk streams.
    pub max_pending_bytes: usize,
    /// Largest chunk size the peer may announce.
    pub max_chunk_size: u32,
    /// Most chunk stream ids.
    pub max_chunk_streams: usize,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        let c = crate::RtmpConfig::default();
        ChunkLimits {
            max_message_size: c.max_message_size,
            max_pending_bytes: c.max_pending_bytes,
            max_chunk_size: c.max_chunk_size,
            max_chunk_streams: c.max_chunk_streams,
        }
    }
}

/// What the last header on a chunk stream said, and its message in progress.
#[derive(Debug, Default)]
struct ChunkStream {
    timestamp: u32,
    /// The timestamp field of the last type 0-2 header: what a type-3 chunk starting a new
    /// message adds. After a type-0 header that is the absolute timestamp, as ffmpeg,
    /// nginx-rtmp and librtmp read and write it.
    delta: u32,
    length: usize,
    type_id: u8,
    stream_id: u32,
    /// The last type 0-2 header had an extended timestamp: type-3 chunks carry one too.
    extended: bool,
    /// The extended timestamp field last read, to recognise it on continuation chunks.
    extended_value: u32,
    payload: BytesMut,
}

/// The chunk payload being read: `remaining` more bytes belong to chunk stream `csid`.
#[derive(Debug, Clone, Copy)]
struct InChunk {
    csid: u32,
    remaining: usize,
}

/// Reassembles RTMP messages from chunks, per chunk stream id. Feed bytes with
/// [`push`](ChunkDecoder::push), take messages with
/// [`poll_message`](ChunkDecoder::poll_message) until it returns `Ok(None)`.
///
/// The decoder applies Set Chunk Size and Abort itself (it must, before it can read the next
/// chunk) and still returns those messages, so the caller sees every message.
#[derive(Debug)]
pub struct ChunkDecoder {
    limits: ChunkLimits,
    chunk_size: usize,
    input: BytesMut,
    streams: HashMap<u32, ChunkStream>,
    pending_bytes: usize,
    in_chunk: Option<InChunk>,
    failed: bool,
}

impl ChunkDecoder {
    /// A decoder at the initial chunk size of 128.
    pub fn new(limits: ChunkLimits) -> Self {
        ChunkDecoder {
            limits,
            chunk_size: INITIAL_CHUNK_SIZE,
            input: BytesMut::new(),
            streams: HashMap::new(),
            pending_bytes: 0,
            in_chunk: None,
            failed: false,
        }
    }

    /// Changes the limits, for example when a publish is admitted. Messages in progress keep
    /// what they hold; the new limits apply to what arrives next.
    pub fn set_limits(&mut self, limits: ChunkLimits) {
        self.limits = limits;
    }

    /// Appends received bytes. Call [`poll_message`](Self::poll_message) until `Ok(None)`
    /// before pushing more: the decoder keeps what it cannot parse yet (at most one chunk
    /// header) plus what was pushed.
    pub fn push(&mut self, data: &[u8]) {
        self.input.extend_from_slice(data);
    }

    /// Bytes pushed and not parsed yet.
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// Bytes of incomplete messages held.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// The peer's current chunk size.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// The next complete message, `Ok(None)` when more bytes are needed. After an error the
    /// decoder stays failed (the connection must be closed).
    pub fn poll_message(&mut self) -> Result<Option<Message>, ProtocolError> {
        if self.failed {
            return Ok(None);
        }
        let result = self.poll_inner();
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn poll_inner(&mut self) -> Result<Option<Message>, ProtocolError> {
        loop {
            if let Some(chunk) = self.in_chunk {
                let n = chunk.remaining.min(self.input.len());
                if n == 0 {
                    return Ok(None);
                }
                if self.pending_bytes + n > self.limits.max_pending_bytes {
                    return Err(ProtocolError::TooMuchPending {
                        max: self.limits.max_pending_bytes,
                    });
                }
                let Some(stream) = self.streams.get_mut(&chunk.csid) else {
                    // The stream was created by the header that started this chunk.
                    return Err(ProtocolError::NoPreviousHeader { csid: chunk.csid });
                };
                stream.payload.extend_from_slice(&self.input[..n]);
                self.input.advance(n);
                self.pending_bytes += n;
                let remaining = chunk.remaining - n;
                self.in_chunk = (remaining > 0).then_some(InChunk {
                    csid: chunk.csid,
                    remaining,
                });
                if stream.payload.len() >= stream.length {
                    self.in_chunk = None;
                    let message = self.complete(chunk.csid);
                    return self.apply_control(message).map(Some);
                }
                continue;
            }
            match self.parse_header()? {
                HeaderOutcome::NeedMore => return Ok(None),
                HeaderOutcome::Started => continue,
                HeaderOutcome::Complete(message) => return self.apply_control(message).map(Some),
            }
        }
    }

    /// Takes the finished payload of `csid` out as a message.
    fn complete(&mut self, csid: u32) -> Message {
        let Some(stream) = self.streams.get_mut(&csid) else {
            return Message {
                csid,
                timestamp: 0,
                type_id: 0,
                stream_id: 0,
                payload: Bytes::new(),
            };
        };
        let payload = std::mem::take(&mut stream.payload).freeze();
        self.pending_bytes = self.pending_bytes.saturating_sub(payload.len());
        Message {
            csid,
            timestamp: stream.timestamp,
            type_id: stream.type_id,
            stream_id: stream.stream_id,
            payload,
        }
    }

    /// Applies the messages that change how the next chunks are read.
    fn apply_control(&mut self, message: Message) -> Result<Message, ProtocolError> {
        match message.type_id {
            message_type::SET_CHUNK_SIZE => {
                let size = read_u32(&message.payload, "Set Chunk Size")?;
                if size == 0 || size > 0x7fff_ffff || size > self.limits.max_chunk_size {
                    return Err(ProtocolError::InvalidChunkSize { size });
                }
                self.chunk_size = usize::try_from(size).unwrap_or(usize::MAX);
            }
            message_type::ABORT => {
                let csid = read_u32(&message.payload, "Abort")?;
                if let Some(stream) = self.streams.get_mut(&csid) {
                    let dropped = stream.payload.len();
                    stream.payload = BytesMut::new();
                    self.pending_bytes = self.pending_bytes.saturating_sub(dropped);
                }
            }
            _ => {}
        }
        Ok(message)
    }

    fn parse_header(&mut self) -> Result<HeaderOutcome, ProtocolError> {
        let input = &self.input[..];
        let Some(&first) = input.first() else {
            return Ok(HeaderOutcome::NeedMore);
        };
        let fmt = first >> 6;
        let (csid, mut pos) = match first & 0x3f {
            0 => match input.get(1) {
                Some(&b) => (64 + u32::from(b), 2),
                None => return Ok(HeaderOutcome::NeedMore),
            },
            1 => match (input.get(1), input.get(2)) {
                (Some(&lo), Some(&hi)) => (64 + u32::from(lo) + 256 * u32::from(hi), 3),
                _ => return Ok(HeaderOutcome::NeedMore),
            },
            low => (u32::from(low), 1),
        };
        let header_len = match fmt {
            0 => 11,
            1 => 7,
            2 => 3,
            _ => 0,
        };
        if input.len() < pos + header_len {
            return Ok(HeaderOutcome::NeedMore);
        }
        let mut header = [0u8; 11];
        header[..header_len].copy_from_slice(&input[pos..pos + header_len]);
        pos += header_len;
        let timestamp_field = if fmt < 3 { be24(&header[0..3]) } else { 0 };

        let known = self.streams.contains_key(&csid);
        if !known {
            if fmt != 0 {
                return Err(ProtocolError::NoPreviousHeader { csid });
            }
            if self.streams.len() >= self.limits.max_chunk_streams {
                return Err(ProtocolError::TooManyChunkStreams {
                    max: self.limits.max_chunk_streams,
                });
            }
        }
        let previous = self.streams.get(&csid);
        let previous_extended = previous.is_some_and(|s| s.extended);
        let previous_extended_value = previous.map_or(0, |s| s.extended_value);
        let continuation = fmt == 3 && previous.is_some_and(|s| !s.payload.is_empty());

        // The extended timestamp: after a type 0-2 header whose field is 0xffffff, and on
        // type-3 chunks of a stream whose last header had one. Some encoders leave it out of
        // continuation chunks; there it is only taken when it repeats the value last read.
        let mut extended = None;
        let extended_present = if fmt < 3 {
            timestamp_field == EXTENDED_TIMESTAMP
        } else {
            previous_extended
        };
        if extended_present {
            let Some(bytes) = input.get(pos..pos + 4) else {
                return Ok(HeaderOutcome::NeedMore);
            };
            let value = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            if !continuation || value == previous_extended_value {
                extended = Some(value);
                pos += 4;
            }
        }

        // Everything needed is buffered: apply the header.
        self.input.advance(pos);
        let stream = self.streams.entry(csid).or_default();
        if fmt < 3 && !stream.payload.is_empty() {
            // A new header while a message is in progress: the peer abandoned that message.
            let dropped = stream.payload.len();
            stream.payload = BytesMut::new();
            self.pending_bytes = self.pending_bytes.saturating_sub(dropped);
        }
        let field = extended.unwrap_or(timestamp_field);
        match fmt {
            0 => {
                stream.timestamp = field;
                stream.delta = field;
                stream.length = be24(&header[3..6]) as usize;
                stream.type_id = header[6];
                stream.stream_id =
                    u32::from_le_bytes([header[7], header[8], header[9], header[10]]);
            }
            1 | 2 => {
                stream.delta = field;
                stream.timestamp = stream.timestamp.wrapping_add(field);
                if fmt == 1 {
                    stream.length = be24(&header[3..6]) as usize;
                    stream.type_id = header[6];
                }
            }
            _ => {
                if !continuation {
                    stream.timestamp = stream.timestamp.wrapping_add(stream.delta);
                }
            }
        }
        if fmt < 3 {
            stream.extended = extended.is_some();
        }
        if let Some(value) = extended {
            stream.extended_value = value;
        }
        if stream.length > self.limits.max_message_size {
            return Err(ProtocolError::MessageTooLarge {
                size: stream.length,
                max: self.limits.max_message_size,
            });
        }
        let remaining = stream.length.saturating_sub(stream.payload.len());
        if remaining == 0 {
            // A zero-length message is complete with its header.
            let message = self.complete(csid);
            return Ok(HeaderOutcome::Complete(message));
        }
        if stream.payload.is_empty() {
            // Reserve for small messages only: a peer announcing a large message must send
            // its bytes before it gets the memory. The reservation is also capped at this
            // stream's share of the pending budget, so that headers alone on every chunk
            // stream id (announcing large messages, sending one byte each) cannot make the
            // reserved capacity exceed the budget.
            let share = self.limits.max_pending_bytes / self.limits.max_chunk_streams.max(1);
            stream
                .payload
                .reserve(stream.length.min(64 * 1024).min(share));
        }
        self.in_chunk = Some(InChunk {
            csid,
            remaining: remaining.min(self.chunk_size),
        });
        Ok(HeaderOutcome::Started)
    }
}

enum HeaderOutcome {
    NeedMore,
    Started,
    Complete(Message),
}

fn be24(b: &[u8]) -> u32 {
    (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2])
}

fn read_u32(payload: &[u8], what: &'static str) -> Result<u32, ProtocolError> {
    match payload.get(..4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(ProtocolError::MalformedControl { what }),
    }
}

/// Writes messages as chunks: a type-0 header, then type-3 continuation chunks of at most
/// the outgoing chunk size (extended timestamps repeated in each, as the specification says).
#[derive(Debug, Clone, Copy)]
pub struct ChunkWriter {
    chunk_size: usize,
}

impl ChunkWriter {
    /// A writer for the chunk size announced to the peer.
    pub fn new(chunk_size: u32) -> Self {
        ChunkWriter {
            chunk_size: usize::try_from(chunk_size.max(1)).unwrap_or(INITIAL_CHUNK_SIZE),
        }
    }

    /// Appends `payload` as one message on chunk stream `csid` (2..=63), truncated at RTMP's
    /// 16 MiB - 1 limit (OnAir only sends small messages).
    pub fn write(
        &self,
        out: &mut BytesMut,
        csid: u8,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
    ) {
        let payload = &payload[..payload.len().min(0xff_ffff)];
        let csid = csid.clamp(2, 63);
        let extended = timestamp >= EXTENDED_TIMESTAMP;
        out.put_u8(csid);
        let field = if extended {
            EXTENDED_TIMESTAMP
        } else {
            timestamp
        };
        out.put_uint(u64::from(field), 3);
        out.put_uint(payload.len() as u64, 3);
        out.put_u8(type_id);
        out.put_u32_le(stream_id);
        if extended {
            out.put_u32(timestamp);
        }
        for (i, chunk) in payload.chunks(self.chunk_size).enumerate() {
            if i > 0 {
                out.put_u8(0xc0 | csid);
                if extended {
                    out.put_u32(timestamp);
                }
            }
            out.put_slice(chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn decoder() -> ChunkDecoder {
        ChunkDecoder::new(ChunkLimits::default())
    }

    fn drain(d: &mut ChunkDecoder) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(m) = d.poll_message().unwrap() {
            out.push(m);
        }
        out
    }

    fn header0(csid: u8, ts: u32, len: usize, type_id: u8, msid: u32) -> Vec<u8> {
        let mut v = vec![csid];
        v.extend_from_slice(&ts.to_be_bytes()[1..]);
        v.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        v.push(type_id);
        v.extend_from_slice(&msid.to_le_bytes());
        v
    }

    #[test]
    fn reassembles_interleaved_chunk_streams() {
        // A 300-byte video message on csid 6 and a 200-byte audio message on csid 4, their
        // 128-byte chunks alternating: the case rml_rtmp's single buffer corrupts.
        let video: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
        let audio: Vec<u8> = (0..200u32).map(|i| (i % 7) as u8 + 100).collect();
        let mut wire = header0(6, 40, video.len(), 9, 1);
        wire.extend_from_slice(&video[..128]);
        wire.extend(header0(4, 41, audio.len(), 8, 1));
        wire.extend_from_slice(&audio[..128]);
        wire.push(0xc6);
        wire.extend_from_slice(&video[128..256]);
        wire.push(0xc4);
        wire.extend_from_slice(&audio[128..]);
        wire.push(0xc6);
        wire.extend_from_slice(&video[256..]);

        // Byte by byte, and all at once: the same messages.
        let mut d = decoder();
        let mut got = Vec::new();
        for b in &wire {
            d.push(std::slice::from_ref(b));
            got.extend(drain(&mut d));
        }
        let mut d2 = decoder();
        d2.push(&wire);
        assert_eq!(drain(&mut d2), got);

        assert_eq!(got.len(), 2);
        assert_eq!((got[0].type_id, got[0].timestamp), (8, 41));
        assert_eq!(got[0].payload.as_ref(), &audio[..]);
        assert_eq!(
            (got[1].type_id, got[1].timestamp, got[1].stream_id),
            (9, 40, 1)
        );
        assert_eq!(got[1].payload.as_ref(), &video[..]);
        assert_eq!(d.pending_bytes(), 0);
    }

    #[test]
    fn applies_header_compression_and_deltas() {
        let mut wire = header0(4, 1000, 2, 8, 1);
        wire.extend_from_slice(&[0xaf, 1]);
        // Type 1: delta 23, new length 3, same stream id.
        wire.extend_from_slice(&[0x44, 0, 0, 23, 0, 0, 3, 8, 0xaf, 1, 2]);
        // Type 2: delta 21, same length.
        wire.extend_from_slice(&[0x84, 0, 0, 21, 0xaf, 1, 3]);
        // Type 3 starting a message: the same delta again.
        wire.extend_from_slice(&[0xc4, 0xaf, 1, 4]);
        // After a type-0 header, a type-3 message adds its timestamp field (ffmpeg writes a
        // type-3 header when the delta equals the previous field: 40 then 80).
        wire.extend(header0(4, 40, 2, 8, 1));
        wire.extend_from_slice(&[0xaf, 1]);
        wire.extend_from_slice(&[0xc4, 0xaf, 1]);
        let mut d = decoder();
        d.push(&wire);
        let ts: Vec<u32> = drain(&mut d).iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, [1000, 1023, 1044, 1065, 40, 80]);
    }

    #[test]
    fn reads_extended_timestamps_with_or_without_repetition() {
        let ts = 0x0100_0000u32;
        let payload = [7u8; 200];
        for repeat in [true, false] {
            let mut wire = vec![5u8, 0xff, 0xff, 0xff, 0, 0, 200, 9, 1, 0, 0, 0];
            wire.extend_from_slice(&ts.to_be_bytes());
            wire.extend_from_slice(&payload[..128]);
            wire.push(0xc5);
            if repeat {
                wire.extend_from_slice(&ts.to_be_bytes());
            }
            wire.extend_from_slice(&payload[128..]);
            let mut d = decoder();
            d.push(&wire);
            let got = drain(&mut d);
            assert_eq!(got.len(), 1, "repeat={repeat}");
            assert_eq!(got[0].timestamp, ts);
            assert_eq!(got[0].payload.as_ref(), &payload[..]);
        }
    }

    #[test]
    fn set_chunk_size_and_abort_apply_to_later_chunks() {
        let mut wire = header0(2, 0, 4, 1, 0);
        wire.extend_from_slice(&300u32.to_be_bytes());
        let big = [3u8; 300];
        wire.extend(header0(6, 0, 300, 9, 1));
        wire.extend_from_slice(&big); // one chunk now
                                      // Start a message on csid 7, abort it, then send a fresh one.
        wire.extend(header0(7, 0, 600, 9, 1));
        wire.extend_from_slice(&[1u8; 300]);
        wire.extend(header0(2, 0, 4, 2, 0));
        wire.extend_from_slice(&7u32.to_be_bytes());
        wire.extend(header0(7, 0, 2, 9, 1));
        wire.extend_from_slice(&[9, 9]);
        let mut d = decoder();
        d.push(&wire);
        let got = drain(&mut d);
        assert_eq!(got.len(), 4);
        assert_eq!(d.chunk_size(), 300);
        assert_eq!(got[1].payload.len(), 300);
        assert_eq!(got[2].type_id, message_type::ABORT);
        assert_eq!(got[3].payload.as_ref(), &[9, 9]);
        assert_eq!(d.pending_bytes(), 0);
    }

    #[test]
    fn enforces_limits() {
        let limits = ChunkLimits {
            max_message_size: 1000,
            max_pending_bytes: 1500,
            max_chunk_size: 4096,
            max_chunk_streams: 4,
        };
        let mut d = ChunkDecoder::new(limits);
        d.push(&header0(6, 0, 1001, 9, 1));
        assert!(matches!(
            d.poll_message(),
            Err(ProtocolError::MessageTooLarge { size: 1001, .. })
        ));
        // Failed for good.
        assert_eq!(d.poll_message(), Ok(None));

        let mut d = ChunkDecoder::new(limits);
        for csid in 3..5 {
            d.push(&header0(csid, 0, 1000, 9, 1));
            d.push(&[0u8; 128]);
        }
        for _ in 0..5 {
            for csid in 3..5u8 {
                d.push(&[0xc0 | csid]);
                d.push(&[0u8; 128]);
            }
        }
        assert!(matches!(
            drain_err(&mut d),
            ProtocolError::TooMuchPending { max: 1500 }
        ));

        let mut d = ChunkDecoder::new(limits);
        for csid in 3..8 {
            d.push(&header0(csid, 0, 1, 9, 1));
            d.push(&[0]);
        }
        assert!(matches!(
            drain_err(&mut d),
            ProtocolError::TooManyChunkStreams { max: 4 }
        ));

        let mut d = ChunkDecoder::new(limits);
        d.push(&header0(2, 0, 4, 1, 0));
        d.push(&0x8000_0000u32.to_be_bytes());
        assert!(matches!(
            drain_err(&mut d),
            ProtocolError::InvalidChunkSize { .. }
        ));

        let mut d = ChunkDecoder::new(limits);
        d.push(&[0x43, 0, 0, 0, 0, 0, 1, 9, 0]);
        assert_eq!(
            drain_err(&mut d),
            ProtocolError::NoPreviousHeader { csid: 3 }
        );
    }

    fn drain_err(d: &mut ChunkDecoder) -> ProtocolError {
        loop {
            match d.poll_message() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("no error"),
                Err(e) => return e,
            }
        }
    }

    #[test]
    fn writer_output_reads_back() {
        let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut out = BytesMut::new();
        let writer = ChunkWriter::new(300);
        writer.write(&mut out, 9, 5, 20, 1, &payload);
        writer.write(&mut out, 9, 0x0123_4567, 18, 1, &payload);
        let mut d = decoder();
        d.push(&[2, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0]);
        d.push(&300u32.to_be_bytes());
        d.push(&out);
        let got = drain(&mut d);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].payload.as_ref(), &payload[..]);
        assert_eq!((got[2].timestamp, got[2].type_id), (0x0123_4567, 18));
        assert_eq!(got[2].payload.as_ref(), &payload[..]);
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // A cheap deterministic stand-in for the fuzz target.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut d = decoder();
            let len = (seed % 600) as usize;
            let mut bytes = Vec::with_capacity(len);
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                bytes.push((seed >> 24) as u8);
            }
            for part in bytes.chunks(1 + (seed % 50) as usize) {
                d.push(part);
                while let Ok(Some(_)) = d.poll_message() {}
            }
        }
    }
}
