//! What reaches srt-protocol from the network, checked first.
//!
//! srt-protocol 0.4.4 panics (`unimplemented!`, `todo!`, `panic!`) on some input a peer can
//! send. The listener's I/O driver ([`crate::driver`]) runs every datagram through
//! [`classify`] before the parser sees it, and every packet through
//! [`for_connection`] before a connection's state machine sees it. What is known to panic is
//! refused here; whatever is not known is still caught by [`guarded`] around each call into
//! srt-protocol, so a panic ends at most one caller's handshake or connection, never the
//! listener.
//!
//! Known panics, and what happens to them here:
//! - a conclusion handshake with a configuration extension other than the streamid (type 6
//!   congestion control, 7 packet filter, 8 socket group, or an unknown type): the parser
//!   hits `unimplemented!("Implement other kinds")`. libsrt sends 6 only for a congestion
//!   controller other than `live`, 7 for a packet filter (FEC) and 8 for bonding: the caller
//!   is refused with the matching SRT reject reason (`Congestion`, `Filter`, `Group`); a `live`
//!   congestion extension is removed (it is the default) and the handshake goes on;
//! - a conclusion carrying a handshake or key-material *response* where a request belongs:
//!   `unimplemented!("Expected kmreq")` during admission; refused with `Rogue`;
//! - in a connection, a NAK with an unterminated loss range (`panic!`), a NAK for data never
//!   sent (`panic!`), a congestion warning or peer error (`todo!`), an SRT control packet
//!   other than key refresh (`unimplemented!`): dropped (an SRT publisher never receives media
//!   from OnAir, so it has nothing to NAK).

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::{Buf, BufMut, BytesMut};
use srt_protocol::packet::{
    ControlPacket, ControlTypes, CoreRejectReason, HandshakeControlInfo, Packet, PacketParseError,
    RejectReason, ShakeType, SrtControlPacket,
};

/// The SRT header (16 bytes) and the handshake body (48 bytes) before the extensions.
const HANDSHAKE_LEN: usize = 64;

/// SRT handshake extension types (libsrt's `SRT_CMD_*`).
const EXT_HSREQ: u16 = 1;
const EXT_HSRSP: u16 = 2;
const EXT_KMREQ: u16 = 3;
const EXT_KMRSP: u16 = 4;
const EXT_SID: u16 = 5;
const EXT_CONGESTION: u16 = 6;
const EXT_FILTER: u16 = 7;
const EXT_GROUP: u16 = 8;

/// What to do with one datagram.
#[derive(Debug)]
pub(crate) enum Datagram {
    /// A packet srt-protocol can handle.
    Packet(Packet),
    /// A handshake asking for something OnAir does not do: answer it with this rejection.
    Refuse {
        /// The rejection handshake to send back.
        reply: Packet,
        /// What the caller asked for, for the log.
        why: &'static str,
    },
    /// Not a packet: dropped.
    Malformed(Malformed),
}

/// Why a datagram was dropped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Malformed {
    /// srt-protocol refused it.
    #[error("{0}")]
    Parse(PacketParseError),
    /// srt-protocol's parser panicked on it (caught).
    #[error("the SRT packet parser failed on it")]
    ParserPanicked,
}

/// Parses one datagram, refusing what srt-protocol would panic on.
pub(crate) fn classify(datagram: &[u8], ipv6: bool) -> Datagram {
    match scan_handshake(datagram) {
        Scan::Other => parse(datagram, ipv6),
        Scan::Strip(range) => {
            let mut copy = BytesMut::with_capacity(datagram.len());
            copy.put_slice(&datagram[..range.start]);
            copy.put_slice(&datagram[range.end..]);
            parse(&copy, ipv6)
        }
        Scan::Refuse(reason, why) => {
            // The handshake without its extensions: enough to address the rejection.
            match parse(&datagram[..HANDSHAKE_LEN], ipv6) {
                Datagram::Packet(Packet::Control(ControlPacket {
                    timestamp,
                    control_type: ControlTypes::Handshake(shake),
                    ..
                })) => Datagram::Refuse {
                    reply: rejection(timestamp, &shake, reason),
                    why,
                },
                Datagram::Packet(_) | Datagram::Refuse { .. } => {
                    Datagram::Malformed(Malformed::Parse(PacketParseError::NotEnoughData))
                }
                malformed @ Datagram::Malformed(_) => malformed,
            }
        }
    }
}

/// The rejection answering `shake` (as srt-protocol's own listener words one).
fn rejection(
    timestamp: srt_protocol::packet::TimeStamp,
    shake: &HandshakeControlInfo,
    reason: RejectReason,
) -> Packet {
    Packet::Control(ControlPacket {
        timestamp,
        dest_sockid: shake.socket_id,
        control_type: ControlTypes::Handshake(HandshakeControlInfo {
            shake_type: ShakeType::Rejection(reason),
            ..shake.clone()
        }),
    })
}

fn parse(datagram: &[u8], ipv6: bool) -> Datagram {
    match guarded(|| Packet::parse(&mut Cursor::new(datagram), ipv6)) {
        Ok(Ok(packet)) => Datagram::Packet(packet),
        Ok(Err(e)) => Datagram::Malformed(Malformed::Parse(e)),
        Err(Panicked) => Datagram::Malformed(Malformed::ParserPanicked),
    }
}

/// The outcome of looking at a datagram's handshake extensions.
#[derive(Debug, PartialEq)]
enum Scan {
    /// Not an HSv5 conclusion, or one srt-protocol handles: parse it as it is.
    Other,
    /// Parse it without these bytes (a `live` congestion extension).
    Strip(std::ops::Range<usize>),
    /// Refuse the caller.
    Refuse(RejectReason, &'static str),
}

/// Walks an HSv5 conclusion's extensions (type, length in 32-bit words, content) without
/// parsing anything else.
fn scan_handshake(datagram: &[u8]) -> Scan {
    if datagram.len() < HANDSHAKE_LEN {
        return Scan::Other;
    }
    let mut buf = datagram;
    let word0 = buf.get_u32();
    // A control packet (top bit) of type 0, handshake.
    if word0 & 0xffff_0000 != 0x8000_0000 {
        return Scan::Other;
    }
    let mut body = &datagram[16..HANDSHAKE_LEN];
    let version = body.get_u32();
    body.advance(4 + 12); // encryption, extension field, sequence number, MTU, flow window
    let shake_type = body.get_i32();
    // Induction (1) carries no extensions; only the conclusion (-1) does.
    if version != 5 || shake_type != -1 {
        return Scan::Other;
    }
    let mut strip = None;
    let mut offset = HANDSHAKE_LEN;
    let mut rest = &datagram[HANDSHAKE_LEN..];
    while rest.remaining() > 4 {
        let kind = rest.get_u16();
        let len = usize::from(rest.get_u16()) * 4;
        if rest.remaining() < len {
            // srt-protocol refuses it (not enough data).
            return Scan::Other;
        }
        let content = &rest[..len];
        let end = offset + 4 + len;
        match kind {
            EXT_HSREQ | EXT_KMREQ | EXT_SID => {}
            EXT_HSRSP | EXT_KMRSP => {
                return Scan::Refuse(
                    RejectReason::Core(CoreRejectReason::Rogue),
                    "a handshake response in a caller's conclusion",
                )
            }
            EXT_CONGESTION if is_live(content) && strip.is_none() => strip = Some(offset..end),
            EXT_CONGESTION => {
                return Scan::Refuse(
                    RejectReason::Core(CoreRejectReason::Congestion),
                    "a congestion controller other than live (file mode)",
                )
            }
            EXT_FILTER => {
                return Scan::Refuse(
                    RejectReason::Core(CoreRejectReason::Filter),
                    "a packet filter (FEC)",
                )
            }
            EXT_GROUP => {
                return Scan::Refuse(
                    RejectReason::Core(CoreRejectReason::Group),
                    "a socket group (bonding)",
                )
            }
            _ => {
                return Scan::Refuse(
                    RejectReason::Core(CoreRejectReason::Rogue),
                    "an unknown handshake extension",
                )
            }
        }
        rest.advance(len);
        offset = end;
    }
    match strip {
        Some(range) => Scan::Strip(range),
        None => Scan::Other,
    }
}

/// Whether a congestion extension names `live` (a string in little-endian 32-bit words,
/// zero-padded).
fn is_live(content: &[u8]) -> bool {
    let mut text = Vec::with_capacity(content.len());
    for word in content.chunks(4) {
        text.extend(word.iter().rev());
    }
    while text.last() == Some(&0) {
        text.pop();
    }
    text == b"live"
}

/// Whether a connected caller's packet may go to its connection's state machine (see the
/// module documentation for what is dropped and why).
pub(crate) fn for_connection(packet: &Packet) -> bool {
    match packet {
        Packet::Data(_) => true,
        Packet::Control(control) => match &control.control_type {
            ControlTypes::Handshake(_)
            | ControlTypes::KeepAlive
            | ControlTypes::Ack(_)
            | ControlTypes::Shutdown
            | ControlTypes::Ack2(_)
            | ControlTypes::DropRequest { .. } => true,
            ControlTypes::Srt(srt) => matches!(
                srt,
                SrtControlPacket::KeyRefreshRequest(_) | SrtControlPacket::KeyRefreshResponse(_)
            ),
            ControlTypes::Nak(_) | ControlTypes::CongestionWarning | ControlTypes::PeerError(_) => {
                false
            }
        },
    }
}

/// A call into srt-protocol panicked (caught).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Panicked;

/// Runs `f`, catching a panic. srt-protocol's state is plain data; after a panic the caller
/// throws away the state `f` touched (the connection or the pending handshakes).
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, Panicked> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| Panicked)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An HSv5 handshake: header and body, then the given extensions.
    fn conclusion(extensions: &[(u16, &[u8])]) -> Vec<u8> {
        let mut p = Vec::new();
        p.put_u32(0x8000_0000);
        p.put_u32(0);
        p.put_u32(0);
        p.put_u32(0);
        p.put_u32(5); // version
        p.put_u16(0); // encryption
        p.put_u16(0x0005); // HSREQ | CONFIG
        p.put_u32(12345);
        p.put_u32(1500);
        p.put_u32(8192);
        p.put_i32(-1); // conclusion
        p.put_u32(77); // socket id
        p.put_u32(0); // cookie
        p.put_slice(&[127, 0, 0, 1]);
        p.put_slice(&[0; 12]);
        for (kind, content) in extensions {
            p.put_u16(*kind);
            p.put_u16((content.len() / 4) as u16);
            p.put_slice(content);
        }
        p
    }

    /// `text` as a handshake string: little-endian 32-bit words, zero-padded.
    fn words(text: &str) -> Vec<u8> {
        let mut bytes = text.as_bytes().to_vec();
        while bytes.len() % 4 != 0 {
            bytes.push(0);
        }
        bytes
            .chunks(4)
            .flat_map(|w| w.iter().rev().copied())
            .collect()
    }

    fn hsreq() -> Vec<u8> {
        // SRT version 1.4.0, flags TSBPDSND|TSBPDRCV|TLPKTDROP|NAKREPORT|REXMITFLG, latencies.
        let mut c = Vec::new();
        c.put_u32(0x0001_0400);
        c.put_u32(0xbf);
        c.put_u16(120);
        c.put_u16(120);
        c
    }

    fn refused_with(datagram: &[u8]) -> Option<RejectReason> {
        match classify(datagram, false) {
            Datagram::Refuse {
                reply: Packet::Control(ControlPacket { control_type, .. }),
                ..
            } => match control_type {
                ControlTypes::Handshake(HandshakeControlInfo {
                    shake_type: ShakeType::Rejection(reason),
                    socket_id,
                    ..
                }) => {
                    // The reply is addressed to the caller's socket.
                    assert_eq!(socket_id, srt_protocol::packet::SocketId(77));
                    Some(reason)
                }
                other => panic!("not a rejection: {other:?}"),
            },
            Datagram::Refuse { reply, .. } => panic!("not a handshake: {reply:?}"),
            _ => None,
        }
    }

    #[test]
    fn configuration_extensions_that_panic_the_parser_are_refused_with_libsrt_reasons() {
        let sid = words("key1");
        for (kind, reason) in [
            (EXT_FILTER, CoreRejectReason::Filter),
            (EXT_GROUP, CoreRejectReason::Group),
            (0, CoreRejectReason::Rogue),
            (42, CoreRejectReason::Rogue),
            (EXT_HSRSP, CoreRejectReason::Rogue),
            (EXT_KMRSP, CoreRejectReason::Rogue),
        ] {
            let content = words("fec,cols:10");
            let datagram = conclusion(&[(EXT_HSREQ, &hsreq()), (EXT_SID, &sid), (kind, &content)]);
            assert_eq!(
                refused_with(&datagram),
                Some(RejectReason::Core(reason)),
                "type {kind}"
            );
        }
        let file = conclusion(&[(EXT_HSREQ, &hsreq()), (EXT_CONGESTION, &words("file"))]);
        assert_eq!(
            refused_with(&file),
            Some(RejectReason::Core(CoreRejectReason::Congestion))
        );
    }

    #[test]
    fn a_live_congestion_extension_is_removed_and_the_rest_parsed() {
        let sid = words("key1");
        let datagram = conclusion(&[
            (EXT_HSREQ, &hsreq()),
            (EXT_CONGESTION, &words("live")),
            (EXT_SID, &sid),
        ]);
        match classify(&datagram, false) {
            Datagram::Packet(Packet::Control(ControlPacket {
                control_type: ControlTypes::Handshake(shake),
                ..
            })) => match shake.info {
                srt_protocol::packet::HandshakeVsInfo::V5(info) => {
                    assert_eq!(info.sid.as_deref(), Some("key1"));
                    assert!(info.ext_hs.is_some());
                }
                other => panic!("not HSv5: {other:?}"),
            },
            other => panic!("not parsed: {other:?}"),
        }
    }

    #[test]
    fn what_the_parser_handles_is_parsed_and_garbage_is_dropped() {
        let sid = words("key1");
        let datagram = conclusion(&[(EXT_HSREQ, &hsreq()), (EXT_SID, &sid)]);
        assert!(matches!(
            classify(&datagram, false),
            Datagram::Packet(Packet::Control(_))
        ));
        // A truncated extension: srt-protocol's own error, no panic.
        let mut cut = conclusion(&[(EXT_SID, &sid)]);
        cut.truncate(cut.len() - 2);
        assert!(matches!(
            classify(&cut, false),
            Datagram::Malformed(Malformed::Parse(_))
        ));
        assert!(matches!(
            classify(&[0x80, 0, 0], false),
            Datagram::Malformed(_)
        ));
        // Random bytes never panic.
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 200) as usize;
            let mut d: Vec<u8> = (0..len)
                .map(|i| (x >> (i % 8 * 8)) as u8 ^ i as u8)
                .collect();
            if len >= 4 && x % 3 == 0 {
                d[..4].copy_from_slice(&0x8000_0000u32.to_be_bytes());
            }
            let _ = classify(&d, false);
        }
    }

    #[test]
    fn connections_never_see_what_panics_their_state_machine() {
        let control = |control_type| {
            Packet::Control(ControlPacket {
                timestamp: srt_protocol::packet::TimeStamp::from_micros(0),
                dest_sockid: srt_protocol::packet::SocketId(1),
                control_type,
            })
        };
        assert!(!for_connection(&control(ControlTypes::CongestionWarning)));
        assert!(!for_connection(&control(ControlTypes::PeerError(1))));
        assert!(!for_connection(&control(ControlTypes::Srt(
            SrtControlPacket::StreamId("x".into())
        ))));
        assert!(for_connection(&control(ControlTypes::KeepAlive)));
        assert!(for_connection(&control(ControlTypes::Shutdown)));
    }
}
