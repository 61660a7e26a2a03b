//! The only module that sees rml_rtmp: its handshake, and its server session for the command
//! workflow (`connect`, `createStream`, `publish`, `deleteStream`, `closeStream`, `play`) with
//! `accept_request`/`reject_request` (house style 2).
//!
//! What rml_rtmp receives here is already safe for it: whole command messages that OnAir's
//! own [`ChunkDecoder`](crate::chunk::ChunkDecoder) reassembled, decoded and normalised
//! ([`Command::normalise`]), re-encoded with only the AMF0 types rml_amf0 reads and at least
//! three values, and re-chunked as one type-0 chunk each (with rml_rtmp's own serializer, after
//! raising its chunk size), so its single payload buffer and header arithmetic never see
//! interleaved or compressed chunks. Media and data messages never go through it. Every call
//! into rml_rtmp is additionally guarded with `catch_unwind`: should a panic remain in it, it
//! ends this connection with an error instead of a panicking task.

use std::panic::{catch_unwind, AssertUnwindSafe};

#[cfg(test)]
use bytes::Bytes;
use bytes::BytesMut;
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::handshake::{Handshake as RmlHandshake, HandshakeProcessResult, PeerType};
use rml_rtmp::messages::MessagePayload;
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use rml_rtmp::time::RtmpTimestamp;

use crate::chunk::message_type;
use crate::command::Command;
use crate::error::ProtocolError;

/// The chunk size of the private feed into rml_rtmp: larger than any message, so each
/// message is one chunk.
const FEED_CHUNK_SIZE: u32 = 0x00ff_ffff;

/// The chunk stream id used for the feed (rml_rtmp reads every chunk as type 0 anyway).
const FEED_TIMESTAMP: u32 = 0;

fn guarded<T>(what: &'static str, f: impl FnOnce() -> T) -> Result<T, ProtocolError> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|_| ProtocolError::Session(format!("rml_rtmp panicked in {what}")))
}

/// What the first byte of a non-RTMP peer suggests it is.
fn first_byte_hint(byte: u8) -> &'static str {
    match byte {
        0x16 => "a TLS ClientHello: RTMPS sent to the plain RTMP port?",
        b'G' | b'P' | b'H' | b'O' | b'D' | b'C' => "an HTTP request?",
        6 => "an encrypted RTMPE handshake, which OnAir does not support",
        _ => "not RTMP",
    }
}

/// Progress of the RTMP handshake.
#[derive(Debug)]
pub(crate) enum HandshakeProgress {
    /// More bytes are needed.
    InProgress,
    /// Done; the bytes after the handshake belong to the chunk stream.
    Done {
        /// Bytes received after C2.
        remaining: Vec<u8>,
    },
}

/// The server side of the RTMP handshake (rml_rtmp's, which accepts both the plain and the
/// digest (Flash Player 9) forms).
pub(crate) struct Handshake {
    inner: RmlHandshake,
    first_byte_seen: bool,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("first_byte_seen", &self.first_byte_seen)
            .finish_non_exhaustive()
    }
}

impl Handshake {
    pub(crate) fn new() -> Self {
        Handshake {
            inner: RmlHandshake::new(PeerType::Server),
            first_byte_seen: false,
        }
    }

    /// Feeds received bytes; appends what must be sent to `out`. rml_rtmp buffers at most
    /// the 3073 handshake bytes plus one read.
    pub(crate) fn handle_input(
        &mut self,
        data: &[u8],
        out: &mut BytesMut,
    ) -> Result<HandshakeProgress, ProtocolError> {
        if !self.first_byte_seen {
            let Some(&first) = data.first() else {
                return Ok(HandshakeProgress::InProgress);
            };
            // Checked here, before rml_rtmp, so the log says what the peer probably was.
            if first != 3 {
                return Err(ProtocolError::NotRtmp {
                    first_byte: first,
                    hint: first_byte_hint(first),
                });
            }
            self.first_byte_seen = true;
        }
        let result = guarded("handshake", || self.inner.process_bytes(data))?
            .map_err(|e| ProtocolError::Handshake(e.to_string()))?;
        match result {
            HandshakeProcessResult::InProgress { response_bytes } => {
                out.extend_from_slice(&response_bytes);
                Ok(HandshakeProgress::InProgress)
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                out.extend_from_slice(&response_bytes);
                Ok(HandshakeProgress::Done {
                    remaining: remaining_bytes,
                })
            }
        }
    }
}

/// Identifies a request awaiting [`CommandSession::accept`] or [`CommandSession::reject`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestId(u32);

/// What the command session raised.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SessionEvent {
    /// `connect` to an application.
    ConnectRequested { request: RequestId, app: String },
    /// `publish` with a stream name.
    PublishRequested {
        request: RequestId,
        app: String,
        name: String,
    },
    /// The publishing stream was closed or deleted.
    PublishFinished,
    /// `play`.
    PlayRequested { request: RequestId },
}

/// rml_rtmp's server session, fed whole normalised commands.
pub(crate) struct CommandSession {
    session: ServerSession,
    feed: ChunkSerializer,
    /// The message streams rml_rtmp has created and not deleted, mirrored here because it
    /// does not say (it numbers them 1, 2, 3... per `createStream`; a unit test checks the
    /// mirror against its `_result`). A publish elsewhere would fail only at accept time,
    /// after admission was asked.
    streams: Vec<u32>,
    next_stream_id: u32,
}

impl std::fmt::Debug for CommandSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandSession").finish_non_exhaustive()
    }
}

fn session_error(e: impl std::fmt::Display) -> ProtocolError {
    ProtocolError::Session(e.to_string())
}

impl CommandSession {
    /// A session announcing `chunk_size` and `window_ack_size`; appends its opening messages
    /// (Set Chunk Size, Window Acknowledgement Size, Stream Begin, Set Peer Bandwidth,
    /// onBWDone) to `out`.
    pub(crate) fn new(
        chunk_size: u32,
        window_ack_size: u32,
        out: &mut BytesMut,
    ) -> Result<Self, ProtocolError> {
        let mut config = ServerSessionConfig::new();
        config.chunk_size = chunk_size;
        config.window_ack_size = window_ack_size;
        config.peer_bandwidth = window_ack_size;
        let (mut session, results) =
            guarded("session start", || ServerSession::new(config))?.map_err(session_error)?;
        let mut feed = ChunkSerializer::new();
        let packet = feed
            .set_max_chunk_size(FEED_CHUNK_SIZE, RtmpTimestamp::new(FEED_TIMESTAMP))
            .map_err(session_error)?;
        // Raises the chunk size of rml_rtmp's deserializer; it produces nothing to send.
        guarded("session feed", || session.handle_input(&packet.bytes))?.map_err(session_error)?;
        let mut this = CommandSession {
            session,
            feed,
            streams: Vec::new(),
            next_stream_id: 1,
        };
        this.absorb(results, out);
        Ok(this)
    }

    /// Hands one command, received on message stream `stream_id`, to rml_rtmp. Only the
    /// commands of the publish workflow belong here; the caller answers the others.
    pub(crate) fn handle_command(
        &mut self,
        stream_id: u32,
        command: &Command,
        out: &mut BytesMut,
    ) -> Result<Vec<SessionEvent>, ProtocolError> {
        let payload = MessagePayload {
            timestamp: RtmpTimestamp::new(FEED_TIMESTAMP),
            type_id: message_type::COMMAND_AMF0,
            message_stream_id: stream_id,
            data: command.encode(),
        };
        let packet = self
            .feed
            .serialize(&payload, true, false)
            .map_err(session_error)?;
        let session = &mut self.session;
        let results =
            guarded("command", || session.handle_input(&packet.bytes))?.map_err(session_error)?;
        match command.name.as_str() {
            "createStream" => {
                self.streams.push(self.next_stream_id);
                self.next_stream_id = self.next_stream_id.wrapping_add(1);
            }
            "deleteStream" => {
                if let Some(id) = command.args.first().and_then(|a| a.as_f64()) {
                    self.streams.retain(|s| f64::from(*s) != id);
                }
            }
            _ => {}
        }
        Ok(self.absorb(results, out))
    }

    /// Whether `stream_id` was created by `createStream` and not deleted.
    pub(crate) fn has_stream(&self, stream_id: u32) -> bool {
        self.streams.contains(&stream_id)
    }

    /// Accepts a connect or publish request; appends the replies to `out`.
    pub(crate) fn accept(
        &mut self,
        request: RequestId,
        out: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        let session = &mut self.session;
        let results =
            guarded("accept", || session.accept_request(request.0))?.map_err(session_error)?;
        self.absorb(results, out);
        Ok(())
    }

    /// Rejects a request with an RTMP status `code` and `description`; appends the `_error`
    /// reply to `out`.
    pub(crate) fn reject(
        &mut self,
        request: RequestId,
        code: &str,
        description: &str,
        out: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        let session = &mut self.session;
        let results = guarded("reject", || {
            session.reject_request(request.0, code, description)
        })?
        .map_err(session_error)?;
        self.absorb(results, out);
        Ok(())
    }

    fn absorb(
        &mut self,
        results: Vec<ServerSessionResult>,
        out: &mut BytesMut,
    ) -> Vec<SessionEvent> {
        let mut events = Vec::new();
        for result in results {
            match result {
                ServerSessionResult::OutboundResponse(packet) => {
                    out.extend_from_slice(&packet.bytes);
                }
                ServerSessionResult::RaisedEvent(event) => match event {
                    ServerSessionEvent::ConnectionRequested {
                        request_id,
                        app_name,
                    } => events.push(SessionEvent::ConnectRequested {
                        request: RequestId(request_id),
                        app: app_name,
                    }),
                    ServerSessionEvent::PublishStreamRequested {
                        request_id,
                        app_name,
                        stream_key,
                        ..
                    } => events.push(SessionEvent::PublishRequested {
                        request: RequestId(request_id),
                        app: app_name,
                        name: stream_key,
                    }),
                    ServerSessionEvent::PublishStreamFinished { .. } => {
                        events.push(SessionEvent::PublishFinished);
                    }
                    ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                        events.push(SessionEvent::PlayRequested {
                            request: RequestId(request_id),
                        });
                    }
                    // Nothing else is fed to the session.
                    _ => {}
                },
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        events
    }
}

/// Bytes of a serialized RTMP message, for tests that show what rml_rtmp does on its own.
#[cfg(test)]
fn rml_message(type_id: u8, stream_id: u32, data: Bytes) -> Vec<u8> {
    let mut serializer = ChunkSerializer::new();
    let payload = MessagePayload {
        timestamp: RtmpTimestamp::new(0),
        type_id,
        message_stream_id: stream_id,
        data,
    };
    serializer
        .serialize(&payload, true, false)
        .map(|p| p.bytes)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    //! Characterisation tests: what rml_rtmp 0.8 does when driven directly, which is why this
    //! crate puts its own code in front of it. If one starts failing after an upgrade, the
    //! gap was fixed upstream and the workaround may be simplified.
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::command::status_object;
    use media::amf0::Amf0Value;

    fn command(name: &str, tid: f64, object: Amf0Value, args: Vec<Amf0Value>) -> Command {
        Command {
            name: name.into(),
            transaction_id: tid,
            object,
            args,
        }
    }

    fn connect() -> Command {
        command(
            "connect",
            1.0,
            Amf0Value::Object(vec![("app".into(), Amf0Value::String("app".into()))]),
            vec![],
        )
    }

    fn session() -> CommandSession {
        CommandSession::new(4096, 2_500_000, &mut BytesMut::new()).unwrap()
    }

    #[test]
    fn drives_the_publish_workflow() {
        let mut s = session();
        let mut out = BytesMut::new();
        let events = s.handle_command(0, &connect(), &mut out).unwrap();
        let [SessionEvent::ConnectRequested { request, app }] = &events[..] else {
            panic!("{events:?}");
        };
        assert_eq!(app, "app");
        s.accept(*request, &mut out).unwrap();
        assert!(!out.is_empty());
        s.handle_command(
            0,
            &command("createStream", 2.0, Amf0Value::Null, vec![]),
            &mut out,
        )
        .unwrap();
        let mut publish = command(
            "publish",
            3.0,
            Amf0Value::Null,
            vec![
                Amf0Value::String("key?x=1".into()),
                Amf0Value::String("LIVE".into()),
            ],
        );
        publish.normalise();
        let events = s.handle_command(1, &publish, &mut out).unwrap();
        let [SessionEvent::PublishRequested { request, name, .. }] = &events[..] else {
            panic!("{events:?}");
        };
        assert_eq!(name, "key?x=1");
        s.reject(
            *request,
            "NetStream.Publish.BadName",
            "unknown stream key",
            &mut out,
        )
        .unwrap();
    }

    #[test]
    fn stream_ids_mirror_rml_rtmp() {
        use crate::chunk::{ChunkDecoder, ChunkLimits};
        let mut out = BytesMut::new();
        let mut s = CommandSession::new(4096, 2_500_000, &mut out).unwrap();
        let events = s.handle_command(0, &connect(), &mut out).unwrap();
        let [SessionEvent::ConnectRequested { request, .. }] = &events[..] else {
            panic!("{events:?}");
        };
        s.accept(*request, &mut out).unwrap();
        let create = command("createStream", 2.0, Amf0Value::Null, vec![]);
        for _ in 0..3 {
            s.handle_command(0, &create, &mut out).unwrap();
        }
        let delete = command(
            "deleteStream",
            3.0,
            Amf0Value::Null,
            vec![Amf0Value::Number(2.0)],
        );
        s.handle_command(0, &delete, &mut out).unwrap();
        let mut decoder = ChunkDecoder::new(ChunkLimits::default());
        decoder.push(&out);
        let mut ids = Vec::new();
        while let Some(m) = decoder.poll_message().unwrap() {
            if m.type_id == 20 {
                let c = Command::decode(20, m.payload).unwrap();
                if c.transaction_id == 2.0 {
                    ids.push(c.args[0].as_f64().unwrap() as u32);
                }
            }
        }
        assert_eq!(ids, [1, 2, 3]);
        assert!(s.has_stream(1) && !s.has_stream(2) && s.has_stream(3) && !s.has_stream(4));
    }

    #[test]
    fn rml_rtmp_refuses_upper_case_publish_type() {
        let mut s = session();
        let mut out = BytesMut::new();
        let events = s.handle_command(0, &connect(), &mut out).unwrap();
        let [SessionEvent::ConnectRequested { request, .. }] = &events[..] else {
            panic!("{events:?}");
        };
        s.accept(*request, &mut out).unwrap();
        s.handle_command(
            0,
            &command("createStream", 2.0, Amf0Value::Null, vec![]),
            &mut out,
        )
        .unwrap();
        let raw = command(
            "publish",
            3.0,
            Amf0Value::Null,
            vec![
                Amf0Value::String("key".into()),
                Amf0Value::String("LIVE".into()),
            ],
        );
        // Not normalised: rml_rtmp answers with an error and raises no publish request.
        let events = s.handle_command(1, &raw, &mut out).unwrap();
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn rml_rtmp_cannot_read_amf0_dates_or_short_commands() {
        let (mut raw, _) = ServerSession::new(ServerSessionConfig::new()).unwrap();
        // connect(1, {app: "app", t: Date}) straight into rml_rtmp.
        let mut body = vec![2, 0, 7];
        body.extend_from_slice(b"connect");
        body.push(0);
        body.extend_from_slice(&1f64.to_be_bytes());
        body.extend_from_slice(&[3, 0, 3]);
        body.extend_from_slice(b"app");
        body.extend_from_slice(&[2, 0, 3]);
        body.extend_from_slice(b"app");
        body.extend_from_slice(&[0, 1, b't', 11]);
        body.extend_from_slice(&0f64.to_be_bytes());
        body.extend_from_slice(&[0, 0, 0, 0, 9]);
        assert!(raw
            .handle_input(&rml_message(20, 0, Bytes::from(body)))
            .is_err());

        // A command of two values makes rml_rtmp panic (`drain(..3)`).
        let (mut raw, _) = ServerSession::new(ServerSessionConfig::new()).unwrap();
        let mut body = vec![2, 0, 9];
        body.extend_from_slice(b"FCPublish");
        body.push(0);
        body.extend_from_slice(&4f64.to_be_bytes());
        let bytes = rml_message(20, 0, Bytes::from(body));
        let result = guarded("test", || raw.handle_input(&bytes));
        assert!(result.is_err(), "expected rml_rtmp to panic");
    }

    #[test]
    fn rml_rtmp_mixes_interleaved_chunk_streams() {
        let (mut raw, _) = ServerSession::new(ServerSessionConfig::new()).unwrap();
        // Two 200-byte messages (type 15 would be ignored: use commands that fail loudly)
        // chunked at 128 and interleaved on csids 3 and 4.
        let a = encode_padded("connect", 200);
        let b = encode_padded("createStream", 200);
        let mut wire = vec![3u8, 0, 0, 0, 0, 0, 200, 20, 0, 0, 0, 0];
        wire.extend_from_slice(&a[..128]);
        wire.extend_from_slice(&[4u8, 0, 0, 0, 0, 0, 200, 20, 0, 0, 0, 0]);
        wire.extend_from_slice(&b[..128]);
        wire.push(0xc3);
        wire.extend_from_slice(&a[128..]);
        wire.push(0xc4);
        wire.extend_from_slice(&b[128..]);
        let result = guarded("test", || raw.handle_input(&wire));
        // Either an error or a panic: never the two commands.
        assert!(!matches!(result, Ok(Ok(ref r)) if r.len() >= 2));
    }

    fn encode_padded(name: &str, len: usize) -> Vec<u8> {
        let mut c = command(
            name,
            1.0,
            Amf0Value::Null,
            vec![Amf0Value::String(String::new())],
        );
        let base = c.encode().len();
        c.args = vec![Amf0Value::String("x".repeat(len - base))];
        let bytes = c.encode().to_vec();
        assert_eq!(bytes.len(), len);
        bytes
    }

    #[test]
    fn status_objects_encode() {
        let c = command(
            "onStatus",
            0.0,
            Amf0Value::Null,
            vec![status_object("error", "NetStream.Publish.BadName", "no")],
        );
        let back = Command::decode(20, c.encode()).unwrap();
        assert_eq!(back, c);
    }
}
