//! The server side of one RTMP connection, sans-IO (house style 1): bytes in, events and
//! bytes to send out. [`serve`](crate::serve) drives one per connection; tests and the fuzz
//! target drive it directly.
//!
//! ```text
//! bytes ─▶ Handshake (rml_rtmp) ─▶ ChunkDecoder (own) ─▶ message by type:
//!            control (chunk size, abort, window ack, ping) ─▶ handled here
//!            commands ─▶ Command::decode + normalise (own) ─▶ CommandSession (rml_rtmp)
//!                        FCPublish/releaseStream/FCUnpublish ─▶ replies written here
//!            audio / video / data of the accepted stream ─▶ ProtocolEvent::Media
//! ```

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use media::amf0::Amf0Value;
use media::flv::TagKind;

use crate::adapter::{CommandSession, Handshake, HandshakeProgress, RequestId, SessionEvent};
use crate::chunk::{message_type, ChunkDecoder, ChunkLimits, ChunkWriter, Message};
use crate::command::{status_object, Command};
use crate::config::RtmpConfig;
use crate::error::ProtocolError;

/// The chunk stream id of the messages written here rather than by rml_rtmp. rml_rtmp
/// compresses headers on ids 2 to 6; a message of ours on one of those would change what the
/// peer expects there.
const OWN_CSID: u8 = 8;

/// `createStream` calls allowed on one connection (a publisher needs one).
const MAX_CREATED_STREAMS: u32 = 8;

/// The largest command message accepted. Real commands are well under a kilobyte; this
/// keeps a hostile `publish` name or `connect` object from reaching admission or rml_rtmp.
pub const MAX_COMMAND_SIZE: usize = 64 * 1024;

/// User control event types (RTMP 1.0 section 7.1.7).
const PING_REQUEST: u16 = 6;
const PING_RESPONSE: u16 = 7;

/// What the connection asks its driver to act on.
#[derive(Debug, Clone, PartialEq)]
pub enum ProtocolEvent {
    /// The peer asked to publish. Answer with [`ServerProtocol::accept_publish`] or
    /// [`ServerProtocol::reject_publish`]; no other event comes before the answer.
    PublishRequested {
        /// The stream key: the publish name without its `?query` (or, when the name is
        /// empty, the last segment of an application name like `app/KEY`).
        stream_key: String,
        /// The application name from `connect`.
        app: String,
    },
    /// An audio, video or script (`@setDataFrame`/`onMetaData`) message of the accepted
    /// stream: the body of an FLV tag of that kind.
    Media {
        /// Audio, video or script.
        kind: TagKind,
        /// Timestamp in milliseconds (32 bits, wrapping).
        timestamp: u32,
        /// The tag body.
        body: Bytes,
    },
    /// The peer ended its publish (`deleteStream`/`closeStream`).
    PublishFinished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Publish {
    None,
    Requested { request: RequestId, stream_id: u32 },
    Active { stream_id: u32 },
    Ended,
}

#[derive(Debug)]
struct Established {
    chunks: ChunkDecoder,
    session: CommandSession,
    writer: ChunkWriter,
    app: Option<String>,
    peer_window: Option<u32>,
    acked_at: u64,
    created_streams: u32,
    publish: Publish,
}

#[derive(Debug)]
enum Stage {
    Handshake(Box<Handshake>),
    Established(Box<Established>),
    Failed,
}

/// The server side of one RTMP connection.
///
/// Drive it like this: [`handle_input`](Self::handle_input) with received bytes, then
/// [`poll_event`](Self::poll_event) until it returns `Ok(None)`, sending
/// [`take_output`](Self::take_output) whenever it has bytes. Memory stays bounded as long as
/// no more input is pushed before `poll_event` has returned `Ok(None)`. After an error, send
/// what `take_output` still holds (it may carry an error reply) and close the connection.
#[derive(Debug)]
pub struct ServerProtocol {
    config: RtmpConfig,
    stage: Stage,
    output: BytesMut,
    events: VecDeque<ProtocolEvent>,
    bytes_received: u64,
    dropped_media: u64,
}

impl ServerProtocol {
    /// A connection waiting for the RTMP handshake.
    pub fn new(config: &RtmpConfig) -> Self {
        ServerProtocol {
            config: config.clone(),
            stage: Stage::Handshake(Box::new(Handshake::new())),
            output: BytesMut::new(),
            events: VecDeque::new(),
            bytes_received: 0,
            dropped_media: 0,
        }
    }

    /// Whether the RTMP handshake is complete.
    pub fn is_established(&self) -> bool {
        matches!(self.stage, Stage::Established(_))
    }

    /// Whether a publish was accepted and has not ended.
    pub fn is_publishing(&self) -> bool {
        matches!(
            &self.stage,
            Stage::Established(e) if matches!(e.publish, Publish::Active { .. })
        )
    }

    /// Media messages dropped because they did not belong to the accepted stream.
    pub fn dropped_media(&self) -> u64 {
        self.dropped_media
    }

    /// Bytes to send to the peer, if any.
    pub fn take_output(&mut self) -> Option<Bytes> {
        (!self.output.is_empty()).then(|| self.output.split().freeze())
    }

    /// Feeds bytes received from the peer.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        self.bytes_received += data.len() as u64;
        let result = self.handle_input_inner(data);
        if result.is_err() {
            self.stage = Stage::Failed;
        }
        result
    }

    fn handle_input_inner(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        match &mut self.stage {
            Stage::Handshake(handshake) => {
                match handshake.handle_input(data, &mut self.output)? {
                    HandshakeProgress::InProgress => {}
                    HandshakeProgress::Done { remaining } => {
                        let session = CommandSession::new(
                            self.config.outgoing_chunk_size,
                            self.config.window_ack_size,
                            &mut self.output,
                        )?;
                        let mut chunks = ChunkDecoder::new(chunk_limits(&self.config, false));
                        chunks.push(&remaining);
                        self.stage = Stage::Established(Box::new(Established {
                            chunks,
                            session,
                            writer: ChunkWriter::new(self.config.outgoing_chunk_size),
                            app: None,
                            peer_window: None,
                            acked_at: self.bytes_received,
                            created_streams: 0,
                            publish: Publish::None,
                        }));
                    }
                }
                Ok(())
            }
            Stage::Established(e) => {
                e.chunks.push(data);
                if let Some(window) = e.peer_window {
                    if self.bytes_received - e.acked_at >= u64::from(window) {
                        e.acked_at = self.bytes_received;
                        // The sequence number is the byte count, modulo 2^32.
                        let sequence = (self.bytes_received & 0xffff_ffff) as u32;
                        e.writer.write(
                            &mut self.output,
                            OWN_CSID,
                            0,
                            message_type::ACKNOWLEDGEMENT,
                            0,
                            &sequence.to_be_bytes(),
                        );
                    }
                }
                Ok(())
            }
            Stage::Failed => Ok(()),
        }
    }

    /// The next event; `Ok(None)` when more input is needed (or while a publish request
    /// awaits its answer).
    pub fn poll_event(&mut self) -> Result<Option<ProtocolEvent>, ProtocolError> {
        if let Some(event) = self.events.pop_front() {
            return Ok(Some(event));
        }
        let result = self.poll_inner();
        if result.is_err() {
            self.stage = Stage::Failed;
        }
        result
    }

    fn poll_inner(&mut self) -> Result<Option<ProtocolEvent>, ProtocolError> {
        loop {
            let Stage::Established(e) = &mut self.stage else {
                return Ok(None);
            };
            if matches!(e.publish, Publish::Requested { .. }) {
                return Ok(None);
            }
            let Some(message) = e.chunks.poll_message()? else {
                return Ok(None);
            };
            self.handle_message(message)?;
            if let Some(event) = self.events.pop_front() {
                return Ok(Some(event));
            }
        }
    }

    fn established(&mut self) -> Result<&mut Established, ProtocolError> {
        self.split().map(|(e, _)| e)
    }

    /// The established state and the output buffer, borrowed together.
    fn split(&mut self) -> Result<(&mut Established, &mut BytesMut), ProtocolError> {
        match &mut self.stage {
            Stage::Established(e) => Ok((e, &mut self.output)),
            _ => Err(ProtocolError::WrongState("established")),
        }
    }

    fn handle_message(&mut self, message: Message) -> Result<(), ProtocolError> {
        match message.type_id {
            message_type::WINDOW_ACK_SIZE => {
                if let Some(b) = message.payload.get(..4) {
                    let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                    self.established()?.peer_window = (size > 0).then_some(size);
                }
            }
            message_type::USER_CONTROL => {
                if let Some(b) = message.payload.get(..6) {
                    if u16::from_be_bytes([b[0], b[1]]) == PING_REQUEST {
                        let mut reply = PING_RESPONSE.to_be_bytes().to_vec();
                        reply.extend_from_slice(&b[2..6]);
                        self.write_own(message_type::USER_CONTROL, 0, &reply)?;
                    }
                }
            }
            message_type::AUDIO | message_type::VIDEO => {
                let kind = if message.type_id == message_type::AUDIO {
                    TagKind::Audio
                } else {
                    TagKind::Video
                };
                self.media(kind, message.stream_id, message.timestamp, message.payload)?;
            }
            message_type::DATA_AMF0 | message_type::DATA_AMF3 => {
                let body = if message.type_id == message_type::DATA_AMF3
                    && message.payload.first() == Some(&0)
                {
                    message.payload.slice(1..)
                } else {
                    message.payload
                };
                self.media(TagKind::Script, message.stream_id, message.timestamp, body)?;
            }
            message_type::COMMAND_AMF0 | message_type::COMMAND_AMF3 => {
                if message.payload.len() > MAX_COMMAND_SIZE {
                    return Err(ProtocolError::MessageTooLarge {
                        size: message.payload.len(),
                        max: MAX_COMMAND_SIZE,
                    });
                }
                let command = Command::decode(message.type_id, message.payload)?;
                self.handle_command(message.stream_id, command)?;
            }
            message_type::AGGREGATE => {
                for (type_id, timestamp, body) in
                    split_aggregate(message.timestamp, &message.payload)?
                {
                    let kind = match type_id {
                        message_type::AUDIO => TagKind::Audio,
                        message_type::VIDEO => TagKind::Video,
                        message_type::DATA_AMF0 => TagKind::Script,
                        _ => continue, // nothing else belongs in an aggregate
                    };
                    self.media(kind, message.stream_id, timestamp, body)?;
                }
            }
            // Set Chunk Size and Abort were applied by the chunk decoder; Acknowledgement and
            // Set Peer Bandwidth need nothing from a server that only receives media.
            _ => {}
        }
        Ok(())
    }

    fn media(
        &mut self,
        kind: TagKind,
        stream_id: u32,
        timestamp: u32,
        body: Bytes,
    ) -> Result<(), ProtocolError> {
        match self.established()?.publish {
            Publish::Active { stream_id: active } if active == stream_id => {
                self.events.push_back(ProtocolEvent::Media {
                    kind,
                    timestamp,
                    body,
                });
            }
            _ => self.dropped_media += 1,
        }
        Ok(())
    }

    fn write_own(
        &mut self,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
    ) -> Result<(), ProtocolError> {
        let writer = self.established()?.writer;
        writer.write(&mut self.output, OWN_CSID, 0, type_id, stream_id, payload);
        Ok(())
    }

    fn reply(
        &mut self,
        stream_id: u32,
        name: &str,
        transaction_id: f64,
        args: Vec<Amf0Value>,
    ) -> Result<(), ProtocolError> {
        let command = Command {
            name: name.into(),
            transaction_id,
            object: Amf0Value::Null,
            args,
        };
        self.write_own(message_type::COMMAND_AMF0, stream_id, &command.encode())
    }

    fn handle_command(
        &mut self,
        stream_id: u32,
        mut command: Command,
    ) -> Result<(), ProtocolError> {
        let tid = command.transaction_id;
        match command.name.as_str() {
            "connect" => {
                if self.established()?.app.is_some() {
                    return Err(ProtocolError::Violation("a second connect"));
                }
                command.normalise();
                for event in self.pass_to_session(stream_id, &command)? {
                    if let SessionEvent::ConnectRequested { request, app } = event {
                        // Any application name: the stream key is what admits a publisher.
                        let (e, out) = self.split()?;
                        e.session.accept(request, out)?;
                        e.app = Some(app);
                    }
                }
            }
            "createStream" => {
                let e = self.established()?;
                e.created_streams += 1;
                if e.created_streams > MAX_CREATED_STREAMS {
                    return Err(ProtocolError::Violation("too many createStream calls"));
                }
                self.pass_to_session(stream_id, &command)?;
            }
            "publish" => {
                let e = self.established()?;
                let Some(app) = e.app.clone() else {
                    return Err(ProtocolError::Violation("publish before connect"));
                };
                if e.publish != Publish::None {
                    return Err(ProtocolError::Violation(
                        "a second publish on one connection",
                    ));
                }
                if !e.session.has_stream(stream_id) {
                    return Err(ProtocolError::Violation(
                        "publish on a stream that was not created",
                    ));
                }
                command.normalise();
                for event in self.pass_to_session(stream_id, &command)? {
                    if let SessionEvent::PublishRequested { request, name, .. } = event {
                        self.established()?.publish = Publish::Requested { request, stream_id };
                        self.events.push_back(ProtocolEvent::PublishRequested {
                            stream_key: stream_key_from(&name, &app),
                            app: app.clone(),
                        });
                    }
                }
            }
            "deleteStream" | "closeStream" => {
                for event in self.pass_to_session(stream_id, &command)? {
                    if event == SessionEvent::PublishFinished {
                        let e = self.established()?;
                        if matches!(e.publish, Publish::Active { .. }) {
                            e.publish = Publish::Ended;
                            self.events.push_back(ProtocolEvent::PublishFinished);
                        }
                    }
                }
            }
            "play" => {
                for event in self.pass_to_session(stream_id, &command)? {
                    if let SessionEvent::PlayRequested { request } = event {
                        let (e, out) = self.split()?;
                        e.session.reject(
                            request,
                            "NetStream.Play.Failed",
                            "this server only accepts publishers",
                            out,
                        )?;
                    }
                }
                return Err(ProtocolError::PlayNotSupported);
            }
            // rml_rtmp has no hook for these; encoders (FMLE, Wirecast, OBS) send them around
            // publish and some wait for the answer.
            "releaseStream" => {
                if tid != 0.0 {
                    self.reply(stream_id, "_result", tid, vec![Amf0Value::Null])?;
                }
            }
            "FCPublish" => {
                if tid != 0.0 {
                    self.reply(stream_id, "_result", tid, vec![Amf0Value::Null])?;
                }
                self.reply(
                    stream_id,
                    "onFCPublish",
                    0.0,
                    vec![status_object(
                        "status",
                        "NetStream.Publish.Start",
                        "FCPublish",
                    )],
                )?;
            }
            "FCUnpublish" => {
                if tid != 0.0 {
                    self.reply(stream_id, "_result", tid, vec![Amf0Value::Null])?;
                }
                self.reply(
                    stream_id,
                    "onFCUnpublish",
                    0.0,
                    vec![status_object(
                        "status",
                        "NetStream.Unpublish.Success",
                        "FCUnpublish",
                    )],
                )?;
            }
            other => {
                tracing::debug!(command = other, "ignoring a command");
            }
        }
        Ok(())
    }

    fn pass_to_session(
        &mut self,
        stream_id: u32,
        command: &Command,
    ) -> Result<Vec<SessionEvent>, ProtocolError> {
        let (e, out) = self.split()?;
        e.session.handle_command(stream_id, command, out)
    }

    /// Accepts the pending publish request: the peer gets `NetStream.Publish.Start` and its
    /// media becomes [`ProtocolEvent::Media`].
    pub fn accept_publish(&mut self) -> Result<(), ProtocolError> {
        let limits = chunk_limits(&self.config, true);
        let (e, out) = self.split()?;
        let Publish::Requested { request, stream_id } = e.publish else {
            return Err(ProtocolError::WrongState("accept_publish"));
        };
        e.session.accept(request, out)?;
        e.publish = Publish::Active { stream_id };
        // Admitted: media messages may now be as large as the configuration allows.
        e.chunks.set_limits(limits);
        Ok(())
    }

    /// Bytes held for the peer's input: incomplete messages and input not parsed yet. Until
    /// the publish is admitted this stays within
    /// [`RtmpConfig::max_pending_bytes_before_publish`].
    pub fn pending_bytes(&self) -> usize {
        match &self.stage {
            Stage::Established(e) => e.chunks.pending_bytes() + e.chunks.buffered(),
            _ => 0,
        }
    }

    /// Refuses the pending publish request with an RTMP status `code` (for example
    /// `NetStream.Publish.BadName`): rml_rtmp's `_error` reply, then an `onStatus` with level
    /// `error` (what FMS, Wowza and nginx-rtmp send, and what librtmp-based encoders read).
    /// The caller closes the connection after sending the output.
    pub fn reject_publish(&mut self, code: &str, description: &str) -> Result<(), ProtocolError> {
        let (e, out) = self.split()?;
        let Publish::Requested { request, stream_id } = e.publish else {
            return Err(ProtocolError::WrongState("reject_publish"));
        };
        e.publish = Publish::Ended;
        e.session.reject(request, code, description, out)?;
        self.reply(
            stream_id,
            "onStatus",
            0.0,
            vec![status_object("error", code, description)],
        )
    }
}

/// The chunk decoder's limits before (`admitted: false`) and after a publish is admitted.
fn chunk_limits(config: &RtmpConfig, admitted: bool) -> ChunkLimits {
    let (max_message_size, max_pending_bytes) = if admitted {
        (config.max_message_size, config.max_pending_bytes)
    } else {
        let budget = config.max_pending_bytes_before_publish;
        (config.max_message_size.min(budget), budget)
    };
    ChunkLimits {
        max_message_size,
        max_pending_bytes,
        max_chunk_size: config.max_chunk_size,
        max_chunk_streams: config.max_chunk_streams,
    }
}

/// The stream key of a publish: the publish name without `?query`. When an encoder was given
/// the whole URL as its server and an empty key, the name is empty and the key is the last
/// segment of the application name (`app/KEY`).
pub fn stream_key_from(publish_name: &str, app: &str) -> String {
    let without_query = |s: &str| s.split('?').next().unwrap_or_default().trim().to_owned();
    let name = without_query(publish_name);
    if !name.is_empty() {
        return name;
    }
    let app = without_query(app);
    match app.trim_end_matches('/').rsplit_once('/') {
        Some((_, key)) => key.to_owned(),
        None => String::new(),
    }
}

/// The sub-messages of an aggregate message (type 22), as (type, timestamp, body). Each is an
/// FLV tag: type, 24-bit size, 24-bit timestamp + 8 high bits, 24-bit stream id, the body,
/// then a 4-byte back pointer. The timestamps are shifted so that the first sub-message has
/// the aggregate's own timestamp (RTMP 1.0, 7.1.6). The sub-messages belong to the
/// aggregate's message stream.
fn split_aggregate(
    timestamp: u32,
    payload: &Bytes,
) -> Result<Vec<(u8, u32, Bytes)>, ProtocolError> {
    const HEADER: usize = 11;
    let mut out = Vec::new();
    let mut offset = None;
    let mut rest = payload.clone();
    while !rest.is_empty() {
        if rest.len() < HEADER {
            return Err(ProtocolError::MalformedAggregate(
                "truncated sub-message header",
            ));
        }
        let size = usize::from(rest[1]) << 16 | usize::from(rest[2]) << 8 | usize::from(rest[3]);
        let sub_ts = u32::from(rest[7]) << 24
            | u32::from(rest[4]) << 16
            | u32::from(rest[5]) << 8
            | u32::from(rest[6]);
        if rest.len() < HEADER + size + 4 {
            return Err(ProtocolError::MalformedAggregate(
                "sub-message longer than the aggregate",
            ));
        }
        let shift = *offset.get_or_insert(timestamp.wrapping_sub(sub_ts));
        out.push((
            rest[0],
            sub_ts.wrapping_add(shift),
            rest.slice(HEADER..HEADER + size),
        ));
        rest = rest.slice(HEADER + size + 4..);
    }
    Ok(out)
}

/// A client handshake (C0 C1 C2) that completes any server handshake: C2 is not checked
/// against S1 by rml_rtmp's server. For tests and the fuzz target.
pub fn client_handshake_bytes() -> Vec<u8> {
    let mut bytes = vec![3u8];
    bytes.extend((0..2 * 1536u32).map(|i| (i % 251) as u8));
    bytes
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn command(name: &str, tid: f64, object: Amf0Value, args: Vec<Amf0Value>) -> Bytes {
        Command {
            name: name.into(),
            transaction_id: tid,
            object,
            args,
        }
        .encode()
    }

    fn message(out: &mut BytesMut, csid: u8, ts: u32, type_id: u8, msid: u32, body: &[u8]) {
        ChunkWriter::new(128).write(out, csid, ts, type_id, msid, body);
    }

    /// Reads what the server sent back as commands (name, first status code).
    fn replies(
        protocol: &mut ServerProtocol,
        decoder: &mut ChunkDecoder,
    ) -> Vec<(String, Option<String>)> {
        if let Some(out) = protocol.take_output() {
            decoder.push(&out);
        }
        let mut names = Vec::new();
        while let Some(m) = decoder.poll_message().unwrap() {
            if m.type_id == message_type::COMMAND_AMF0 {
                let c = Command::decode(m.type_id, m.payload).unwrap();
                let code = c
                    .args
                    .iter()
                    .find_map(|a| a.get("code").and_then(Amf0Value::as_str).map(str::to_owned));
                names.push((c.name, code));
            }
        }
        names
    }

    #[test]
    fn a_whole_publish_sans_io() {
        let mut p = ServerProtocol::new(&RtmpConfig::default());
        let hs = client_handshake_bytes();
        p.handle_input(&hs[..1537]).unwrap();
        let s0s1s2 = p.take_output().unwrap();
        assert_eq!(s0s1s2.len(), 1 + 2 * 1536);
        assert!(!p.is_established());
        p.handle_input(&hs[1537..]).unwrap();
        assert!(p.is_established());
        let mut from_server = ChunkDecoder::new(ChunkLimits::default());
        replies(&mut p, &mut from_server);
        assert_eq!(from_server.chunk_size(), 4096, "Set Chunk Size first");

        let mut wire = BytesMut::new();
        let app = Amf0Value::Object(vec![("app".into(), Amf0Value::String("app".into()))]);
        message(
            &mut wire,
            3,
            0,
            20,
            0,
            &command("connect", 1.0, app, vec![]),
        );
        message(
            &mut wire,
            3,
            0,
            20,
            0,
            &command("createStream", 2.0, Amf0Value::Null, vec![]),
        );
        let publish_args = vec![
            Amf0Value::String("good-key?x=y".into()),
            Amf0Value::String("Live".into()),
        ];
        message(
            &mut wire,
            8,
            0,
            20,
            1,
            &command("publish", 3.0, Amf0Value::Null, publish_args),
        );
        // Media sent right behind the publish, before the answer: kept until then.
        message(&mut wire, 6, 0, 9, 1, &[0x17, 0, 0, 0, 0]);
        p.handle_input(&wire).unwrap();
        assert_eq!(
            p.poll_event().unwrap(),
            Some(ProtocolEvent::PublishRequested {
                stream_key: "good-key".into(),
                app: "app".into()
            })
        );
        assert_eq!(p.poll_event().unwrap(), None, "nothing before the answer");
        p.accept_publish().unwrap();
        assert!(p.is_publishing());
        let names = replies(&mut p, &mut from_server);
        assert!(names.contains(&("onStatus".into(), Some("NetStream.Publish.Start".into()))));
        assert_eq!(
            p.poll_event().unwrap(),
            Some(ProtocolEvent::Media {
                kind: TagKind::Video,
                timestamp: 0,
                body: Bytes::from_static(&[0x17, 0, 0, 0, 0]),
            })
        );
        assert_eq!(p.poll_event().unwrap(), None);
        // Media on another message stream is not this publish's.
        let mut wire = BytesMut::new();
        message(&mut wire, 6, 40, 9, 7, &[0x27, 1, 0, 0, 0]);
        message(
            &mut wire,
            3,
            0,
            20,
            0,
            &command(
                "deleteStream",
                4.0,
                Amf0Value::Null,
                vec![Amf0Value::Number(1.0)],
            ),
        );
        p.handle_input(&wire).unwrap();
        assert_eq!(
            p.poll_event().unwrap(),
            Some(ProtocolEvent::PublishFinished)
        );
        assert_eq!(p.dropped_media(), 1);
    }

    #[test]
    fn rejection_and_workflow_violations() {
        let setup = || {
            let mut p = ServerProtocol::new(&RtmpConfig::default());
            let hs = client_handshake_bytes();
            p.handle_input(&hs[..1537]).unwrap();
            p.take_output();
            p.handle_input(&hs[1537..]).unwrap();
            p
        };
        let app = || Amf0Value::Object(vec![("app".into(), Amf0Value::String("app".into()))]);

        let mut p = setup();
        let mut wire = BytesMut::new();
        message(
            &mut wire,
            3,
            0,
            20,
            0,
            &command("connect", 1.0, app(), vec![]),
        );
        message(
            &mut wire,
            3,
            0,
            20,
            0,
            &command("createStream", 2.0, Amf0Value::Null, vec![]),
        );
        message(
            &mut wire,
            3,
            0,
            20,
            1,
            &command(
                "publish",
                3.0,
                Amf0Value::Null,
                vec![Amf0Value::String("k".into())],
            ),
        );
        p.handle_input(&wire).unwrap();
        assert!(matches!(
            p.poll_event().unwrap(),
            Some(ProtocolEvent::PublishRequested { .. })
        ));
        p.reject_publish("NetStream.Publish.BadName", "unknown stream key")
            .unwrap();
        let mut from_server = ChunkDecoder::new(ChunkLimits::default());
        let names = replies(&mut p, &mut from_server);
        assert!(names.contains(&("_error".into(), Some("NetStream.Publish.BadName".into()))));
        assert!(names.contains(&("onStatus".into(), Some("NetStream.Publish.BadName".into()))));
        assert!(p.accept_publish().is_err());

        // Publish before connect; a second connect.
        let mut p = setup();
        let mut wire = BytesMut::new();
        message(
            &mut wire,
            3,
            0,
            20,
            1,
            &command("publish", 3.0, Amf0Value::Null, vec![]),
        );
        p.handle_input(&wire).unwrap();
        assert!(matches!(p.poll_event(), Err(ProtocolError::Violation(_))));
        let mut p = setup();
        let mut wire = BytesMut::new();
        message(
            &mut wire,
            3,
            0,
            20,
            0,
            &command("connect", 1.0, app(), vec![]),
        );
        message(
            &mut wire,
            3,
            0,
            20,
            0,
            &command("connect", 1.0, app(), vec![]),
        );
        p.handle_input(&wire).unwrap();
        assert!(matches!(p.poll_event(), Err(ProtocolError::Violation(_))));
        // A connect without an application name: rml_rtmp's error, this connection only.
        let mut p = setup();
        let mut wire = BytesMut::new();
        message(
            &mut wire,
            3,
            0,
            20,
            0,
            &command("connect", 1.0, Amf0Value::Null, vec![]),
        );
        p.handle_input(&wire).unwrap();
        assert!(matches!(p.poll_event(), Err(ProtocolError::Session(_))));
    }

    /// An FLV-tag-shaped sub-message of an aggregate.
    fn sub_message(out: &mut Vec<u8>, type_id: u8, ts: u32, body: &[u8]) {
        let size = body.len() as u32;
        out.push(type_id);
        out.extend_from_slice(&size.to_be_bytes()[1..]);
        out.extend_from_slice(&ts.to_be_bytes()[1..]);
        out.push((ts >> 24) as u8);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(body);
        out.extend_from_slice(&(size + 11).to_be_bytes());
    }

    #[test]
    fn aggregate_messages_are_split_into_their_media() {
        let mut aggregate = Vec::new();
        sub_message(&mut aggregate, 9, 1000, &[0x27, 1, 0, 0, 0, 0xaa]);
        sub_message(&mut aggregate, 8, 1021, &[0xaf, 1, 0xbb]);
        sub_message(&mut aggregate, 9, 1033, &[0x27, 1, 0, 0, 0, 0xcc]);
        // The aggregate's own timestamp moves every sub-message: 1000 -> 5000.
        let subs = split_aggregate(5000, &Bytes::from(aggregate.clone())).unwrap();
        let got: Vec<(u8, u32, Vec<u8>)> = subs
            .into_iter()
            .map(|(t, ts, b)| (t, ts, b.to_vec()))
            .collect();
        assert_eq!(
            got,
            vec![
                (9, 5000, vec![0x27, 1, 0, 0, 0, 0xaa]),
                (8, 5021, vec![0xaf, 1, 0xbb]),
                (9, 5033, vec![0x27, 1, 0, 0, 0, 0xcc]),
            ]
        );
        // Extended timestamps (above 24 bits) and the 32-bit wrap.
        let mut wide = Vec::new();
        sub_message(&mut wide, 8, 0x0100_0000, &[0xaf, 1]);
        sub_message(&mut wide, 8, 0x0100_0017, &[0xaf, 1]);
        let subs = split_aggregate(u32::MAX - 10, &Bytes::from(wide)).unwrap();
        assert_eq!((subs[0].1, subs[1].1), (u32::MAX - 10, 12));
        // Truncated: refused, never read past the end.
        for cut in [1, 5, 11, 20, aggregate.len() - 1] {
            let err = split_aggregate(0, &Bytes::copy_from_slice(&aggregate[..cut])).unwrap_err();
            assert!(
                matches!(err, ProtocolError::MalformedAggregate(_)),
                "{cut}: {err}"
            );
        }
        assert!(split_aggregate(0, &Bytes::new()).unwrap().is_empty());
    }

    #[test]
    fn not_rtmp_is_recognised_from_the_first_byte() {
        for (bytes, hint) in [(&b"GET / HTTP/1.1"[..], "HTTP"), (&[0x16, 3, 1][..], "TLS")] {
            let mut p = ServerProtocol::new(&RtmpConfig::default());
            let Err(ProtocolError::NotRtmp { hint: h, .. }) = p.handle_input(bytes) else {
                panic!("accepted {bytes:?}");
            };
            assert!(h.contains(hint), "{h}");
        }
    }

    #[test]
    fn stream_keys() {
        assert_eq!(stream_key_from("good-key", "app"), "good-key");
        assert_eq!(stream_key_from("good-key?token=1&x=2", "app"), "good-key");
        assert_eq!(stream_key_from("", "app/good-key"), "good-key");
        assert_eq!(stream_key_from("?x", "app/good-key/?y"), "good-key");
        assert_eq!(stream_key_from("", "app"), "");
    }
}
