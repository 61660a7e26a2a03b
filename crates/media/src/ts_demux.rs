//! MPEG-TS demuxing for SRT input: 188-byte packets in, the model out ([`DemuxEvent`]s, as
//! [`crate::FlvDemuxer`] produces them).
//!
//! SRT delivers the transport stream as datagram payloads (usually 7 × 188 bytes) that are not
//! always packet-aligned, and the network may lose, duplicate or reorder them. The demuxer
//! therefore
//!
//! - **resyncs** on the `0x47` sync byte: an offset is trusted only when the byte 188 further
//!   on is a sync byte too; bytes in between are dropped and counted, and a partial packet is
//!   kept across calls;
//! - reads the **PAT** and the **PMT** of the first program (sections checked with their
//!   CRC), and picks the first H.264 (`0x1B`) or HEVC (`0x24`) video stream and the first AAC
//!   ADTS (`0x0F`) audio stream. A program whose video or audio exists only in a codec OnAir
//!   cannot carry (MPEG-2 video, MP2, AC-3, Opus, LATM AAC, ...) is refused with
//!   [`MediaError::UnsupportedCodec`] naming it; other streams (SCTE-35, metadata, a second
//!   audio track) are ignored;
//! - reassembles **PES** packets per PID (a PES with length 0 ends at the next payload unit
//!   start), checks **continuity counters** (a gap drops the PES in progress on that PID, a
//!   duplicate packet is skipped), and unwraps 33-bit PTS/DTS into one monotonic timeline
//!   that goes through the same [`TimestampMapper`] as RTMP input;
//! - turns a video PES (an Annex-B access unit) into an AVCC [`Frame`]: access unit
//!   delimiters and filler data are dropped, parameter sets found in band build the decoder
//!   configuration record (a [`DemuxEvent::Config`] when they first appear or change) and are
//!   removed from keyframes, where [`crate::TsMuxer`] puts them back from the configuration;
//!   frames before the first keyframe are dropped;
//! - turns an audio PES into one [`Frame`] per ADTS frame (the n-th frame of a PES is
//!   stamped n × 1024 samples after the PES's PTS; a frame cut by the end of a PES is
//!   completed from the next one), the ADTS header giving the `AudioSpecificConfig`.
//!
//! The first [`DemuxEvent::Config`] waits until every selected track has its configuration
//! (frames of a track that is ready are held meanwhile, up to [`MAX_HELD_FRAMES`] and
//! [`MAX_HELD_90K`]), so a stream starts with video and audio announced together; past the
//! limit, what is known is announced and the other track follows with its own `Config`.
//! Damaged input is never an error: it is dropped and counted in [`TsDemuxStats`]. The only
//! errors are refusals.
//!
//! Drive it with [`TsDemuxer::handle_bytes`] for every received payload and
//! [`TsDemuxer::flush`] at the end of the stream (for the last video access unit).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::aac::{self, AudioSpecificConfig};
use crate::annexb;
use crate::avc::{self, AvcDecoderConfigurationRecord};
use crate::demux::DemuxEvent;
use crate::error::{MediaError, Result};
use crate::frame::{AudioConfig, Frame, StreamConfig, Track, VideoCodec, VideoConfig};
use crate::hevc::{self, HevcDecoderConfigurationRecord};
use crate::timestamp::{TimestampConfig, TimestampMapper};

/// Size of a transport stream packet.
pub const PACKET_SIZE: usize = 188;
/// The largest ADTS frame (13-bit length).
const MAX_ADTS_FRAME: usize = 0x1fff;
/// The sync byte every packet starts with.
pub const SYNC_BYTE: u8 = 0x47;
/// A PES larger than this (bytes) is dropped and counted: no sane access unit is that big, and
/// it bounds the memory a peer can make the demuxer hold.
pub const MAX_PES_SIZE: usize = 16 << 20;
/// How many frames are held while waiting for the other track's configuration before the
/// configuration known so far is announced anyway.
pub const MAX_HELD_FRAMES: usize = 512;
/// How long (90 kHz, by the held frames' DTS) frames are held while waiting for the other
/// track's configuration: video waits for audio, and audio for the first video keyframe,
/// which may be a whole GOP away.
pub const MAX_HELD_90K: u64 = 5 * crate::frame::TIMESCALE;

const PAT_PID: u16 = 0;
const NULL_PID: u16 = 0x1fff;
const TS_WRAP: i64 = 1 << 33;

/// Counters of what the demuxer had to drop or repair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TsDemuxStats {
    /// Packets accepted (sync byte in place).
    pub packets: u64,
    /// Times the demuxer lost the packet boundary and searched for it again.
    pub resyncs: u64,
    /// Bytes dropped while searching for a packet boundary.
    pub dropped_bytes: u64,
    /// Continuity counter gaps on the selected elementary streams.
    pub continuity_errors: u64,
    /// Duplicate packets (same continuity counter twice) skipped.
    pub duplicate_packets: u64,
    /// Packets with the transport error indicator, reserved adaptation field control, a bad
    /// adaptation field length or scrambled payload, skipped.
    pub bad_packets: u64,
    /// PES packets dropped: cut by a continuity gap, received without their start, too large,
    /// or with a bad header.
    pub pes_dropped: u64,
    /// PSI sections (PAT/PMT) dropped for a bad CRC or layout.
    pub psi_errors: u64,
    /// Access units whose parameter sets did not parse (the configuration was kept).
    pub bad_parameter_sets: u64,
    /// ADTS frames (or bytes between them) that did not parse, dropped.
    pub bad_audio: u64,
    /// Frames dropped because their track had no configuration yet, or video before its
    /// first keyframe.
    pub frames_before_config: u64,
    /// Frames dropped while holding for the other track overflowed, or PES without a PTS.
    pub frames_dropped: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EsKind {
    H264,
    Hevc,
    Adts,
}

impl EsKind {
    fn track(self) -> Track {
        match self {
            EsKind::H264 | EsKind::Hevc => Track::Video,
            EsKind::Adts => Track::Audio,
        }
    }
}

/// What a PMT entry is, as far as OnAir is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EsClass {
    Supported(EsKind),
    /// A video or audio codec OnAir cannot carry.
    Unsupported(Track, String),
    Other,
}

fn classify(stream_type: u8, descriptors: &[u8]) -> EsClass {
    use EsClass::*;
    let video = |name: &str| Unsupported(Track::Video, name.to_owned());
    let audio = |name: &str| Unsupported(Track::Audio, name.to_owned());
    match stream_type {
        0x1b => Supported(EsKind::H264),
        0x24 => Supported(EsKind::Hevc),
        0x0f => Supported(EsKind::Adts),
        0x01 => video("MPEG-1 video"),
        0x02 => video("MPEG-2 video"),
        0x10 => video("MPEG-4 Part 2 video"),
        0x1f | 0x20 => video("H.264 SVC/MVC"),
        0x21 => video("JPEG 2000 video"),
        0x33 => video("H.266/VVC"),
        0x42 => video("AVS video"),
        0xd1 => video("Dirac"),
        0xea => video("VC-1"),
        0x03 => audio("MPEG-1 audio (MP1/MP2/MP3)"),
        0x04 => audio("MPEG-2 audio (MP2/MP3)"),
        0x11 => audio("AAC in LATM"),
        0x1c => audio("MPEG-4 audio without ADTS"),
        0x2d => audio("MPEG-H 3D audio"),
        0x80 => audio("LPCM"),
        0x81 => audio("AC-3"),
        0x82 | 0x85 => audio("DTS"),
        0x87 => audio("E-AC-3"),
        0x06 => classify_private(descriptors),
        _ => Other,
    }
}

/// PES private data (`0x06`): the descriptors say what it is.
fn classify_private(mut descriptors: &[u8]) -> EsClass {
    while descriptors.len() >= 2 {
        let tag = descriptors[0];
        let len = usize::from(descriptors[1]);
        let Some(body) = descriptors.get(2..2 + len) else {
            break;
        };
        let name = match tag {
            0x05 => match body.get(..4) {
                Some(b"Opus") => Some((Track::Audio, "Opus")),
                Some(b"AC-3") => Some((Track::Audio, "AC-3")),
                Some(b"EAC3") => Some((Track::Audio, "E-AC-3")),
                Some(b"AC-4") => Some((Track::Audio, "AC-4")),
                Some(b"DTS1" | b"DTS2" | b"DTS3") => Some((Track::Audio, "DTS")),
                Some(b"BSSD") => Some((Track::Audio, "SMPTE 302M PCM")),
                Some(b"AV01") => Some((Track::Video, "AV1")),
                Some(b"VC-1") => Some((Track::Video, "VC-1")),
                Some(b"drac") => Some((Track::Video, "Dirac")),
                _ => None,
            },
            0x6a => Some((Track::Audio, "AC-3")),
            0x7a => Some((Track::Audio, "E-AC-3")),
            0x7b => Some((Track::Audio, "DTS")),
            0x7f if body.first() == Some(&0x80) => Some((Track::Audio, "Opus")),
            0x7f if body.first() == Some(&0x15) => Some((Track::Audio, "AC-4")),
            _ => None,
        };
        if let Some((track, name)) = name {
            return EsClass::Unsupported(track, name.to_owned());
        }
        descriptors = &descriptors[2 + len..];
    }
    EsClass::Other
}

/// CRC-32/MPEG-2 of PSI sections.
fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Reassembles PSI sections of one PID.
#[derive(Debug, Default)]
struct SectionBuffer {
    buf: Vec<u8>,
    active: bool,
}

impl SectionBuffer {
    /// Feeds one packet's payload; returns the complete sections it finished.
    fn push(&mut self, pusi: bool, payload: &[u8]) -> Vec<Vec<u8>> {
        let mut done = Vec::new();
        let mut data = payload;
        if pusi {
            let Some((&pointer, rest)) = data.split_first() else {
                self.reset();
                return done;
            };
            let pointer = usize::from(pointer);
            if pointer > rest.len() {
                self.reset();
                return done;
            }
            if self.active {
                self.buf.extend_from_slice(&rest[..pointer]);
                self.take_complete(&mut done);
            }
            self.reset();
            self.active = true;
            data = &rest[pointer..];
        } else if !self.active {
            return done;
        }
        self.buf.extend_from_slice(data);
        self.take_complete(&mut done);
        done
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.active = false;
    }

    fn take_complete(&mut self, done: &mut Vec<Vec<u8>>) {
        loop {
            if self.buf.first().is_none_or(|&t| t == 0xff) {
                // Stuffing: the rest of the packet holds no further section.
                if !self.buf.is_empty() {
                    self.reset();
                }
                return;
            }
            if self.buf.len() < 3 {
                return;
            }
            let len = 3 + ((usize::from(self.buf[1] & 0x0f) << 8) | usize::from(self.buf[2]));
            if self.buf.len() < len {
                if len > 4096 {
                    self.reset();
                }
                return;
            }
            done.push(self.buf.drain(..len).collect());
        }
    }
}

/// A PSI section, checked: (table id, table id extension, body between the 8-byte header and
/// the CRC).
fn parse_section(section: &[u8]) -> Option<(u8, u16, &[u8])> {
    if section.len() < 12 || section[1] & 0x80 == 0 {
        return None;
    }
    let (body, crc) = section.split_at(section.len() - 4);
    if crc32_mpeg2(body) != u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return None;
    }
    if section[5] & 0x01 == 0 {
        return None; // current_next_indicator: not yet applicable
    }
    let ext = u16::from_be_bytes([section[3], section[4]]);
    Some((section[0], ext, &body[8..]))
}

/// One reassembling PES of an elementary stream.
#[derive(Debug)]
struct EsState {
    kind: EsKind,
    cc: Option<u8>,
    pes: Vec<u8>,
    in_pes: bool,
    /// The payload being skipped (no PES in progress) was counted as a dropped PES.
    orphan: bool,
}

impl EsState {
    fn new(kind: EsKind) -> Self {
        EsState {
            kind,
            cc: None,
            pes: Vec::new(),
            in_pes: false,
            orphan: false,
        }
    }
}

/// A finished PES: timestamps (33-bit, raw) and payload.
#[derive(Debug)]
struct Pes {
    pts: Option<u64>,
    dts: Option<u64>,
    payload: Bytes,
}

fn read_timestamp(b: &[u8]) -> u64 {
    (u64::from(b[0] >> 1 & 0x07) << 30)
        | (u64::from(b[1]) << 22)
        | (u64::from(b[2] >> 1) << 15)
        | (u64::from(b[3]) << 7)
        | u64::from(b[4] >> 1)
}

/// Parses a complete PES packet; `None` if its header is not valid.
fn parse_pes(data: Vec<u8>) -> Option<Pes> {
    if data.len() < 9 || data[..3] != [0, 0, 1] {
        return None;
    }
    let declared = usize::from(u16::from_be_bytes([data[4], data[5]]));
    let stream_id = data[3];
    if matches!(
        stream_id,
        0xbc | 0xbe | 0xbf | 0xf0 | 0xf1 | 0xf2 | 0xf8 | 0xff
    ) {
        return None; // no optional header: not audio or video
    }
    if data[6] & 0xc0 != 0x80 {
        return None;
    }
    let flags = data[7] >> 6;
    let header_len = usize::from(data[8]);
    let start = 9 + header_len;
    // A declared length longer than what arrived (a muxer's off-by-one; a lost packet shows
    // as a continuity gap instead) keeps what is there.
    let end = if declared == 0 {
        data.len()
    } else {
        (6 + declared).min(data.len())
    };
    if start > end {
        return None;
    }
    let opt = &data[9..start];
    let (pts, dts) = match flags {
        2 => (Some(read_timestamp(opt.get(..5)?)), None),
        3 => (
            Some(read_timestamp(opt.get(..5)?)),
            Some(read_timestamp(opt.get(5..10)?)),
        ),
        _ => (None, None),
    };
    let mut payload = Bytes::from(data);
    payload.truncate(end);
    Some(Pes {
        pts,
        dts,
        payload: payload.slice(start..),
    })
}

/// Unwraps 33-bit timestamps into one timeline shared by every track.
#[derive(Debug, Default)]
struct Unwrapper {
    last: Option<i64>,
}

impl Unwrapper {
    fn unwrap(&mut self, ts: u64) -> i64 {
        let ts = (ts & ((1 << 33) - 1)) as i64;
        let value = match self.last {
            None => ts,
            Some(last) => {
                let mut diff = (ts - last).rem_euclid(TS_WRAP);
                if diff >= TS_WRAP / 2 {
                    diff -= TS_WRAP;
                }
                last + diff
            }
        };
        // The reference follows the newest timestamp, so that a track lagging a little
        // behind the other does not drag it.
        self.last = Some(self.last.map_or(value, |l| l.max(value)));
        value
    }
}

/// Demultiplexes one MPEG-TS stream (one SRT connection).
#[derive(Debug)]
pub struct TsDemuxer {
    /// Bytes not yet consumed: a partial packet, or data to check for sync.
    buf: Vec<u8>,
    in_sync: bool,
    pmt_pid: Option<u16>,
    pat: SectionBuffer,
    pmt: SectionBuffer,
    /// The selected elementary streams, as (PID, kind), from the current PMT.
    selected: Vec<(u16, EsKind)>,
    es: HashMap<u16, EsState>,
    refused: Option<MediaError>,
    unwrapper: Unwrapper,
    mapper: TimestampMapper,
    config: StreamConfig,
    announced: bool,
    held: Vec<Frame>,
    seen_keyframe: bool,
    next_audio_pts: Option<i64>,
    /// The start of an ADTS frame that the previous audio PES cut.
    audio_carry: Vec<u8>,
    stats: TsDemuxStats,
}

impl Default for TsDemuxer {
    fn default() -> Self {
        Self::new(TimestampConfig::default())
    }
}

impl TsDemuxer {
    /// A demuxer with the given timestamp limits.
    pub fn new(timestamps: TimestampConfig) -> Self {
        TsDemuxer {
            buf: Vec::new(),
            in_sync: false,
            pmt_pid: None,
            pat: SectionBuffer::default(),
            pmt: SectionBuffer::default(),
            selected: Vec::new(),
            es: HashMap::new(),
            refused: None,
            unwrapper: Unwrapper::default(),
            mapper: TimestampMapper::new(timestamps),
            config: StreamConfig::default(),
            announced: false,
            held: Vec::new(),
            seen_keyframe: false,
            next_audio_pts: None,
            audio_carry: Vec::new(),
            stats: TsDemuxStats::default(),
        }
    }

    /// The current track configuration (possibly not announced yet).
    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// What was dropped so far.
    pub fn stats(&self) -> TsDemuxStats {
        self.stats
    }

    /// The timestamp mapper (for its rebase count).
    pub fn timestamps(&self) -> &TimestampMapper {
        &self.mapper
    }

    /// Handles received bytes (any length, any alignment); returns what they completed.
    ///
    /// The only error is a refusal ([`MediaError::UnsupportedCodec`]): the program's video or
    /// audio is in a codec OnAir cannot carry. It is returned again by every later call.
    pub fn handle_bytes(&mut self, data: &[u8]) -> Result<Vec<DemuxEvent>> {
        let mut out = Vec::new();
        self.handle_bytes_into(data, &mut out)?;
        Ok(out)
    }

    /// As [`TsDemuxer::handle_bytes`], appending to `out`.
    pub fn handle_bytes_into(&mut self, data: &[u8], out: &mut Vec<DemuxEvent>) -> Result<()> {
        if let Some(e) = &self.refused {
            return Err(e.clone());
        }
        self.buf.extend_from_slice(data);
        let buf = std::mem::take(&mut self.buf);
        let mut pos = 0;
        let mut result = Ok(());
        while buf.len() - pos >= PACKET_SIZE {
            // Every packet is confirmed by the next one's sync byte (the last one waits for
            // it), so that garbage starting with 0x47 is not taken for a packet.
            let Some(&next) = buf.get(pos + PACKET_SIZE) else {
                break;
            };
            if buf[pos] != SYNC_BYTE || next != SYNC_BYTE || !self.in_sync {
                if self.in_sync {
                    self.in_sync = false;
                    self.stats.resyncs += 1;
                }
                // Search for a sync byte confirmed by the next packet's.
                let mut found = None;
                let mut p = pos;
                while p < buf.len() {
                    if buf[p] == SYNC_BYTE {
                        match buf.get(p + PACKET_SIZE) {
                            Some(&SYNC_BYTE) => {
                                found = Some(p);
                                break;
                            }
                            Some(_) => {}
                            None => break, // cannot confirm yet: wait for more bytes
                        }
                    }
                    p += 1;
                }
                self.stats.dropped_bytes += (p - pos) as u64;
                pos = p;
                if found.is_none() {
                    break;
                }
                self.in_sync = true;
            }
            let packet = &buf[pos..pos + PACKET_SIZE];
            pos += PACKET_SIZE;
            if let Err(e) = self.handle_packet(packet, out) {
                result = Err(e);
                break;
            }
        }
        if result.is_ok() {
            self.buf = buf;
            self.buf.drain(..pos);
            // Unconfirmed bytes beyond one packet can never become a packet start.
            if !self.in_sync && self.buf.len() > PACKET_SIZE {
                let excess = self.buf.len() - PACKET_SIZE;
                self.stats.dropped_bytes += excess as u64;
                self.buf.drain(..excess);
            }
        }
        result
    }

    /// Ends the stream: completes the PES packets in progress (the last video access unit)
    /// and releases held frames.
    pub fn flush(&mut self) -> Vec<DemuxEvent> {
        let mut out = Vec::new();
        if self.refused.is_some() {
            return out;
        }
        // The last packet, which no following sync byte confirmed.
        if self.in_sync && self.buf.len() >= PACKET_SIZE && self.buf[0] == SYNC_BYTE {
            let packet: Vec<u8> = self.buf.drain(..PACKET_SIZE).collect();
            if self.handle_packet(&packet, &mut out).is_err() {
                return out;
            }
        }
        self.stats.dropped_bytes += self.buf.len() as u64;
        self.buf.clear();
        let mut pids: Vec<u16> = self.es.keys().copied().collect();
        pids.sort_unstable();
        for pid in pids {
            self.finish_pes(pid, &mut out);
        }
        if !self.announced && (self.config.video.is_some() || self.config.audio.is_some()) {
            self.announce(&mut out);
        }
        out
    }

    fn handle_packet(&mut self, p: &[u8], out: &mut Vec<DemuxEvent>) -> Result<()> {
        self.stats.packets += 1;
        let tei = p[1] & 0x80 != 0;
        let pusi = p[1] & 0x40 != 0;
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let scrambled = p[3] >> 6 != 0;
        let afc = (p[3] >> 4) & 0x03;
        let cc = p[3] & 0x0f;
        if pid == NULL_PID {
            return Ok(());
        }
        if tei || afc == 0 {
            self.stats.bad_packets += 1;
            return Ok(());
        }
        let mut start = 4;
        let mut discontinuity = false;
        if afc & 0x02 != 0 {
            let len = usize::from(p[4]);
            let max = if afc == 2 { 183 } else { 182 };
            if len > max {
                self.stats.bad_packets += 1;
                return Ok(());
            }
            discontinuity = len > 0 && p[5] & 0x80 != 0;
            start = 5 + len;
        }
        let payload = if afc & 0x01 != 0 {
            &p[start..]
        } else {
            &[][..]
        };
        if afc & 0x01 != 0 && scrambled {
            self.stats.bad_packets += 1;
            return Ok(());
        }

        if pid == PAT_PID {
            for section in self.pat.push(pusi, payload) {
                self.handle_pat(&section);
            }
            return Ok(());
        }
        if Some(pid) == self.pmt_pid {
            for section in self.pmt.push(pusi, payload) {
                self.handle_pmt(&section)?;
            }
            return Ok(());
        }
        let Some(es) = self.es.get_mut(&pid) else {
            return Ok(());
        };
        if afc & 0x01 == 0 {
            return Ok(()); // adaptation field only: the counter does not advance
        }
        if let Some(last) = es.cc {
            if cc == last && !discontinuity {
                self.stats.duplicate_packets += 1;
                return Ok(());
            }
            if cc != (last + 1) & 0x0f && !discontinuity {
                self.stats.continuity_errors += 1;
                // The rest of a dropped PES is not counted again.
                es.orphan = es.in_pes;
                if es.kind == EsKind::Adts {
                    self.audio_carry.clear();
                }
                if es.in_pes {
                    self.stats.pes_dropped += 1;
                }
                es.in_pes = false;
                es.pes.clear();
            }
        }
        es.cc = Some(cc);
        if pusi {
            self.finish_pes(pid, out);
            let Some(es) = self.es.get_mut(&pid) else {
                return Ok(());
            };
            es.in_pes = true;
            es.orphan = false;
            es.pes.clear();
        }
        let Some(es) = self.es.get_mut(&pid) else {
            return Ok(());
        };
        if !es.in_pes {
            // The rest of a PES whose start was lost (or that began before we joined).
            if !es.orphan && !payload.is_empty() {
                es.orphan = true;
                self.stats.pes_dropped += 1;
            }
            return Ok(());
        }
        if es.pes.len() + payload.len() > MAX_PES_SIZE {
            self.stats.pes_dropped += 1;
            es.in_pes = false;
            es.pes.clear();
            return Ok(());
        }
        es.pes.extend_from_slice(payload);
        // A PES with a declared length is complete as soon as it has it (audio goes out
        // without waiting for the next PES).
        if es.pes.len() >= 6 {
            let declared = usize::from(u16::from_be_bytes([es.pes[4], es.pes[5]]));
            if declared != 0 && es.pes.len() >= 6 + declared {
                self.finish_pes(pid, out);
            }
        }
        Ok(())
    }

    fn handle_pat(&mut self, section: &[u8]) {
        let Some((0x00, _, body)) = parse_section(section) else {
            self.stats.psi_errors += 1;
            return;
        };
        let pmt_pid = body
            .chunks_exact(4)
            .map(|e| {
                (
                    u16::from_be_bytes([e[0], e[1]]),
                    u16::from_be_bytes([e[2], e[3]]) & 0x1fff,
                )
            })
            .find(|&(program, _)| program != 0)
            .map(|(_, pid)| pid);
        if pmt_pid.is_some() && pmt_pid != self.pmt_pid {
            self.pmt_pid = pmt_pid;
            self.pmt.reset();
        }
    }

    fn handle_pmt(&mut self, section: &[u8]) -> Result<()> {
        let Some((0x02, _, body)) = parse_section(section) else {
            self.stats.psi_errors += 1;
            return Ok(());
        };
        if body.len() < 4 {
            self.stats.psi_errors += 1;
            return Ok(());
        }
        let info_len = usize::from(u16::from_be_bytes([body[2], body[3]]) & 0x0fff);
        let Some(mut rest) = body.get(4 + info_len..) else {
            self.stats.psi_errors += 1;
            return Ok(());
        };
        let mut video: Option<(u16, EsKind)> = None;
        let mut audio: Option<(u16, EsKind)> = None;
        let mut unsupported_video = None;
        let mut unsupported_audio = None;
        while rest.len() >= 5 {
            let stream_type = rest[0];
            let pid = u16::from_be_bytes([rest[1], rest[2]]) & 0x1fff;
            let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]) & 0x0fff);
            let Some(descriptors) = rest.get(5..5 + len) else {
                self.stats.psi_errors += 1;
                return Ok(());
            };
            match classify(stream_type, descriptors) {
                EsClass::Supported(kind) => {
                    let slot = match kind.track() {
                        Track::Video => &mut video,
                        Track::Audio => &mut audio,
                    };
                    slot.get_or_insert((pid, kind));
                }
                EsClass::Unsupported(Track::Video, name) => {
                    unsupported_video.get_or_insert(name);
                }
                EsClass::Unsupported(Track::Audio, name) => {
                    unsupported_audio.get_or_insert(name);
                }
                EsClass::Other => {}
            }
            rest = &rest[5 + len..];
        }
        let refusal = match (video, unsupported_video, audio, unsupported_audio) {
            (None, Some(codec), _, _) => Some((codec, "OnAir carries H.264 and HEVC video only")),
            (_, _, None, Some(codec)) => Some((codec, "OnAir carries AAC (ADTS) audio only")),
            _ => None,
        };
        if let Some((codec, reason)) = refusal {
            let e = MediaError::UnsupportedCodec { codec, reason };
            self.refused = Some(e.clone());
            return Err(e);
        }
        let selected: Vec<(u16, EsKind)> = video.into_iter().chain(audio).collect();
        if selected != self.selected {
            self.audio_carry.clear();
            self.es = selected
                .iter()
                .map(|&(pid, kind)| (pid, EsState::new(kind)))
                .collect();
            // A track that left the program loses its configuration.
            if video.is_none() {
                self.config.video = None;
            }
            if audio.is_none() {
                self.config.audio = None;
            }
            self.selected = selected;
        }
        Ok(())
    }

    fn finish_pes(&mut self, pid: u16, out: &mut Vec<DemuxEvent>) {
        let Some(es) = self.es.get_mut(&pid) else {
            return;
        };
        if !es.in_pes {
            return;
        }
        es.in_pes = false;
        let kind = es.kind;
        let data = std::mem::take(&mut es.pes);
        let Some(pes) = parse_pes(data) else {
            self.stats.pes_dropped += 1;
            return;
        };
        match kind {
            EsKind::H264 | EsKind::Hevc => self.handle_video(kind, pes, out),
            EsKind::Adts => self.handle_audio(pes, out),
        }
    }

    fn handle_video(&mut self, kind: EsKind, pes: Pes, out: &mut Vec<DemuxEvent>) {
        let Some(pts) = pes.pts else {
            self.stats.frames_dropped += 1;
            return;
        };
        let hevc = kind == EsKind::Hevc;
        let (mut vps, mut sps, mut pps) = (Vec::new(), Vec::new(), Vec::new());
        let mut units = Vec::new();
        let mut keyframe = false;
        for unit in annexb::split(&pes.payload) {
            if unit.is_empty() {
                continue;
            }
            let t = if hevc {
                hevc::nal_type(unit).unwrap_or(0)
            } else {
                unit[0] & 0x1f
            };
            let class = if hevc {
                match t {
                    hevc::nal::VPS => 1,
                    hevc::nal::SPS => 2,
                    hevc::nal::PPS => 3,
                    hevc::nal::AUD | 38 => 0, // AUD, filler data
                    hevc::nal::IRAP_FIRST..=hevc::nal::IRAP_LAST => 5,
                    _ => 4,
                }
            } else {
                match t {
                    avc::nal::SPS => 2,
                    avc::nal::PPS => 3,
                    avc::nal::AUD | 12 => 0, // AUD, filler data
                    avc::nal::IDR => 5,
                    _ => 4,
                }
            };
            let unit = pes.payload.slice_ref(unit);
            match class {
                0 => {}
                1 => vps.push(unit),
                2 => sps.push(unit),
                3 => pps.push(unit),
                5 => {
                    keyframe = true;
                    units.push(unit);
                }
                _ => units.push(unit),
            }
        }
        if !sps.is_empty() || !pps.is_empty() || !vps.is_empty() {
            self.update_video_config(hevc, &vps, &sps, &pps, out);
        }
        // Parameter sets stay in non-keyframes (rare: a mid-GOP update), where the muxer would
        // not put the configuration's in front.
        if !keyframe {
            let sets: Vec<Bytes> = vps.into_iter().chain(sps).chain(pps).collect();
            if !sets.is_empty() {
                units.splice(0..0, sets);
            }
        }
        if units.is_empty() {
            return;
        }
        let configured = match self.config.video.as_deref().map(|v| &v.codec) {
            Some(VideoCodec::H264(_)) => !hevc,
            Some(VideoCodec::H265(_)) => hevc,
            None => false,
        };
        if !configured || !(self.seen_keyframe || keyframe) {
            self.stats.frames_before_config += 1;
            return;
        }
        self.seen_keyframe = true;
        let mut data = BytesMut::with_capacity(units.iter().map(|u| u.len() + 4).sum());
        for unit in &units {
            data.put_u32(unit.len() as u32);
            data.put_slice(unit);
        }
        let pts = self.unwrapper.unwrap(pts);
        let dts = pes.dts.map_or(pts, |d| self.unwrapper.unwrap(d));
        let ts = self.mapper.map_90k(Track::Video, dts, pts);
        self.emit(
            Frame {
                track: Track::Video,
                pts: ts.pts,
                dts: ts.dts,
                keyframe,
                data: data.freeze(),
            },
            out,
        );
    }

    fn update_video_config(
        &mut self,
        hevc: bool,
        vps: &[Bytes],
        sps: &[Bytes],
        pps: &[Bytes],
        out: &mut Vec<DemuxEvent>,
    ) {
        let current = self.config.video.as_deref();
        let (cur_vps, cur_sps, cur_pps) = match current.map(|v| &v.codec) {
            Some(VideoCodec::H264(r)) if !hevc => (Vec::new(), r.sps.clone(), r.pps.clone()),
            Some(VideoCodec::H265(r)) if hevc => (r.vps.clone(), r.sps.clone(), r.pps.clone()),
            _ => (Vec::new(), Vec::new(), Vec::new()),
        };
        let pick = |found: &[Bytes], cur: Vec<Bytes>| {
            if found.is_empty() {
                cur
            } else {
                found.to_vec()
            }
        };
        let (vps, sps, pps) = (pick(vps, cur_vps), pick(sps, cur_sps), pick(pps, cur_pps));
        let built = if hevc {
            build_hevc(vps, sps, pps)
        } else {
            build_avc(sps, pps)
        };
        match built {
            Some(Ok(config)) if current != Some(&config) => {
                self.config.video = Some(Arc::new(config));
                if self.announced {
                    out.push(DemuxEvent::Config(self.config.clone()));
                } else {
                    self.maybe_announce(out);
                }
            }
            Some(Ok(_)) => {} // unchanged
            Some(Err(_)) => self.stats.bad_parameter_sets += 1,
            None => {} // not all parameter sets seen yet
        }
    }

    fn handle_audio(&mut self, pes: Pes, out: &mut Vec<DemuxEvent>) {
        let mut data = pes.payload;
        // A frame that began in the previous PES (ADTS frames need not be PES-aligned) is
        // completed first and stamped after the previous frame: the PES's PTS belongs to the
        // first frame that starts in it.
        if !self.audio_carry.is_empty() {
            let carried = self.audio_carry.len();
            let mut joined = std::mem::take(&mut self.audio_carry);
            joined.extend_from_slice(&data[..data.len().min(MAX_ADTS_FRAME)]);
            match aac::parse_adts(&joined) {
                Ok(a) if a.frame_len > joined.len() && joined.len() < MAX_ADTS_FRAME => {
                    self.audio_carry = joined; // still not whole
                    return;
                }
                // Completed, and followed by the next frame's syncword (or the end): a
                // carried remnant of a damaged frame does not eat the next PES's first frame.
                Ok(a)
                    if a.frame_len > carried
                        && a.frame_len <= joined.len()
                        && is_adts_start(&data[a.frame_len - carried..]) =>
                {
                    let frame = Bytes::from(joined);
                    let base = self.next_audio_pts;
                    self.audio_frame(&frame.slice(..a.frame_len), base, 0, out);
                    data = data.slice(a.frame_len - carried..);
                }
                _ => self.stats.bad_audio += 1,
            }
        }
        // Frame n of a PES is stamped PTS + n × 1024 samples, computed from the PES's PTS so
        // that rounding does not accumulate; a PES without a PTS continues the last one.
        let base = match pes.pts {
            Some(pts) => Some(self.unwrapper.unwrap(pts)),
            None => self.next_audio_pts,
        };
        let mut n = 0i64;
        let mut pos = 0;
        while pos < data.len() {
            let rest = &data[pos..];
            match aac::parse_adts(rest) {
                Ok(a) if a.frame_len <= rest.len() => {
                    if self.audio_frame(&data.slice(pos..pos + a.frame_len), base, n, out) {
                        n += 1;
                    }
                    pos += a.frame_len;
                }
                // A frame (or header) cut by the end of the PES: kept for the next one.
                Ok(_) | Err(MediaError::Truncated { .. }) if rest[0] == 0xff => {
                    self.audio_carry = rest.to_vec();
                    return;
                }
                _ => {
                    // Not a frame: skip to the next syncword.
                    self.stats.bad_audio += 1;
                    pos = (pos + 1..data.len())
                        .find(|&i| is_adts_start(&data[i..]))
                        .unwrap_or(data.len());
                }
            }
        }
    }

    /// One whole ADTS frame, the `n`-th frame after `base`; returns whether it was counted as a
    /// frame of the timeline (a bad one is not).
    fn audio_frame(
        &mut self,
        frame: &Bytes,
        base: Option<i64>,
        n: i64,
        out: &mut Vec<DemuxEvent>,
    ) -> bool {
        let Ok(adts) = aac::parse_adts(frame) else {
            self.stats.bad_audio += 1;
            return false;
        };
        let Ok(asc) =
            AudioSpecificConfig::new(adts.object_type, adts.sampling_index, adts.channel_config)
        else {
            self.stats.bad_audio += 1;
            return false;
        };
        // Several raw data blocks in one ADTS frame would not be one raw AAC frame.
        let raw = frame.slice(adts.header_len.min(frame.len())..);
        if frame[6] & 0x03 != 0 || raw.is_empty() {
            self.stats.bad_audio += 1;
            return false;
        }
        let rate = i64::from(asc.sample_rate());
        if self.config.audio.as_deref().map(|a| &a.asc) != Some(&asc) {
            self.config.audio = Some(Arc::new(AudioConfig { asc }));
            if self.announced {
                out.push(DemuxEvent::Config(self.config.clone()));
            } else {
                self.maybe_announce(out);
            }
        }
        let Some(base) = base else {
            self.stats.frames_dropped += 1;
            return false;
        };
        let samples = i64::from(aac::SAMPLES_PER_FRAME) * 90_000;
        let pts = base + n * samples / rate;
        self.next_audio_pts = Some(base + (n + 1) * samples / rate);
        let ts = self.mapper.map_90k(Track::Audio, pts, pts);
        self.emit(
            Frame {
                track: Track::Audio,
                pts: ts.pts,
                dts: ts.dts,
                keyframe: true,
                data: raw,
            },
            out,
        );
        true
    }

    /// Announces the configuration once every selected track has one.
    fn maybe_announce(&mut self, out: &mut Vec<DemuxEvent>) {
        let ready = self.selected.iter().all(|(_, kind)| match kind.track() {
            Track::Video => self.config.video.is_some(),
            Track::Audio => self.config.audio.is_some(),
        });
        if ready {
            self.announce(out);
        }
    }

    fn announce(&mut self, out: &mut Vec<DemuxEvent>) {
        self.announced = true;
        out.push(DemuxEvent::Config(self.config.clone()));
        out.extend(self.held.drain(..).map(DemuxEvent::Frame));
    }

    fn emit(&mut self, frame: Frame, out: &mut Vec<DemuxEvent>) {
        if self.announced {
            out.push(DemuxEvent::Frame(frame));
            return;
        }
        let span = self
            .held
            .first()
            .map_or(0, |first| frame.dts.saturating_sub(first.dts));
        self.held.push(frame);
        if self.held.len() >= MAX_HELD_FRAMES || span > MAX_HELD_90K {
            self.announce(out);
        }
    }
}

/// Whether `data` is empty or starts with an ADTS syncword.
fn is_adts_start(data: &[u8]) -> bool {
    match data {
        [] => true,
        [b0] => *b0 == 0xff,
        [b0, b1, ..] => *b0 == 0xff && b1 & 0xf6 == 0xf0,
    }
}

fn build_avc(sps: Vec<Bytes>, pps: Vec<Bytes>) -> Option<Result<VideoConfig>> {
    let first = sps.first()?;
    pps.first()?;
    if first.len() < 4 {
        return Some(Err(MediaError::invalid("H.264 SPS", "too short")));
    }
    let record = AvcDecoderConfigurationRecord {
        profile: first[1],
        compatibility: first[2],
        level: first[3],
        nalu_length_size: 4,
        sps,
        pps,
    };
    Some(VideoConfig::from_avc(record))
}

fn build_hevc(vps: Vec<Bytes>, sps: Vec<Bytes>, pps: Vec<Bytes>) -> Option<Result<VideoConfig>> {
    let record = HevcDecoderConfigurationRecord::from_parameter_sets(
        vps.first()?.clone(),
        sps.first()?.clone(),
        pps.first()?.clone(),
    );
    Some(record.and_then(|mut r| {
        r.vps = vps;
        r.sps = sps;
        r.pps = pps;
        VideoConfig::from_hevc(r)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TsMuxer;

    // 320x240 baseline SPS from x264 (as in the FLV demuxer tests).
    const SPS: &[u8] = &[
        0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
        0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x62, 0xe4, 0x80,
    ];
    const PPS: &[u8] = &[0x68, 0xcb, 0x83, 0xcb, 0x20];

    fn avc_config() -> StreamConfig {
        let record = AvcDecoderConfigurationRecord {
            profile: 0x42,
            compatibility: 0xc0,
            level: 0x1e,
            nalu_length_size: 4,
            sps: vec![Bytes::from_static(SPS)],
            pps: vec![Bytes::from_static(PPS)],
        };
        StreamConfig {
            video: Some(Arc::new(
                VideoConfig::from_avc(record).expect("valid fixture SPS"),
            )),
            audio: Some(Arc::new(AudioConfig {
                asc: AudioSpecificConfig::new(2, 3, 2).expect("valid ASC"), // 48 kHz stereo
            })),
        }
    }

    /// A deterministic pseudo-random generator (xorshift) for reproducible tests.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn avcc(units: &[Vec<u8>]) -> Bytes {
        let mut out = Vec::new();
        for u in units {
            out.extend_from_slice(&(u.len() as u32).to_be_bytes());
            out.extend_from_slice(u);
        }
        Bytes::from(out)
    }

    /// Two seconds of 25 fps H.264 (keyframe every 25, B-frame style composition offsets)
    /// and 48 kHz AAC, interleaved by DTS, starting at `start`.
    fn frames(start: u64, seed: u64) -> Vec<Frame> {
        let mut rng = Rng(seed);
        let mut frames = Vec::new();
        for i in 0..50u64 {
            let keyframe = i % 25 == 0;
            let mut slice = vec![if keyframe { 0x65 } else { 0x41 }, 0x88];
            let len = rng.below(if keyframe { 6000 } else { 900 }) as usize + 3;
            slice.extend((0..len).map(|_| rng.next() as u8 | 0x80)); // no start codes inside
            let sei = vec![0x06, 0x05, 0x01, 0xaa, 0x80];
            let dts = start + i * 3600;
            let pts = dts + if i % 3 == 1 { 7200 } else { 3600 };
            frames.push(Frame {
                track: Track::Video,
                pts,
                dts,
                keyframe,
                data: avcc(&[sei, slice]),
            });
        }
        for i in 0..94u64 {
            let t = start + i * 1920;
            let len = rng.below(500) as usize + 1;
            frames.push(Frame {
                track: Track::Audio,
                pts: t,
                dts: t,
                keyframe: true,
                data: Bytes::from((0..len).map(|_| rng.next() as u8).collect::<Vec<_>>()),
            });
        }
        frames.sort_by_key(|f| (f.dts, f.track == Track::Audio));
        frames
    }

    fn mux(config: &StreamConfig, frames: &[Frame]) -> Vec<u8> {
        let mut muxer = TsMuxer::new(config.clone());
        let mut out = BytesMut::new();
        muxer.write_tables(&mut out).expect("tables");
        for (i, f) in frames.iter().enumerate() {
            if i % 40 == 0 {
                muxer.write_tables(&mut out).expect("tables");
            }
            muxer.write_frame(f, &mut out).expect("frame");
        }
        out.to_vec()
    }

    fn demux_chunks(
        ts: &[u8],
        chunks: impl Iterator<Item = usize>,
    ) -> (Vec<DemuxEvent>, TsDemuxer) {
        let mut d = TsDemuxer::default();
        let mut events = Vec::new();
        let mut pos = 0;
        for n in chunks {
            if pos >= ts.len() {
                break;
            }
            let end = (pos + n).min(ts.len());
            d.handle_bytes_into(&ts[pos..end], &mut events)
                .expect("no refusal");
            pos = end;
        }
        if pos < ts.len() {
            d.handle_bytes_into(&ts[pos..], &mut events)
                .expect("no refusal");
        }
        events.extend(d.flush());
        (events, d)
    }

    fn only_frames(events: &[DemuxEvent], track: Track) -> Vec<Frame> {
        events
            .iter()
            .filter_map(|e| match e {
                DemuxEvent::Frame(f) if f.track == track => Some(f.clone()),
                _ => None,
            })
            .collect()
    }

    /// Frames out equal frames in, timestamps shifted by one constant.
    fn assert_same_frames(input: &[Frame], events: &[DemuxEvent]) {
        let mut offset = None;
        for track in [Track::Video, Track::Audio] {
            let want: Vec<&Frame> = input.iter().filter(|f| f.track == track).collect();
            let got = only_frames(events, track);
            assert_eq!(got.len(), want.len(), "{} frame count", track.name());
            for (g, w) in got.iter().zip(want) {
                assert_eq!(g.data, w.data, "{} data", track.name());
                assert_eq!(g.keyframe, w.keyframe);
                let off = *offset.get_or_insert(g.dts as i64 - w.dts as i64);
                assert_eq!(g.dts as i64 - w.dts as i64, off, "{} dts", track.name());
                assert_eq!(g.pts as i64 - w.pts as i64, off, "{} pts", track.name());
            }
        }
    }

    #[test]
    fn round_trip_through_the_muxer() {
        let config = avc_config();
        let input = frames(crate::timestamp::START_90K, 1);
        let ts = mux(&config, &input);
        let (events, d) = demux_chunks(&ts, std::iter::repeat(7 * 188));
        let DemuxEvent::Config(first) = &events[0] else {
            panic!("first event is not the configuration: {:?}", events[0]);
        };
        assert_eq!(first, &config, "video and audio announced together");
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, DemuxEvent::Config(_)))
                .count(),
            1
        );
        assert_same_frames(&input, &events);
        // Output starts at the mapper's start, like the FLV path.
        assert_eq!(only_frames(&events, Track::Video)[0].dts, input[0].dts);
        let stats = d.stats();
        assert_eq!(stats.continuity_errors, 0);
        assert_eq!(stats.dropped_bytes, 0);
        assert_eq!(stats.resyncs, 0);
    }

    #[test]
    fn a_track_that_never_configures_holds_the_other_for_5_s_at_most() {
        let config = avc_config();
        let audio: Vec<Frame> = frames(90_000, 6)
            .into_iter()
            .filter(|f| f.track == Track::Audio)
            .collect();
        // The PMT announces video, but only audio comes: 3 × 94 frames, 6 s.
        let long: Vec<Frame> = (0..3u64)
            .flat_map(|k| {
                audio.iter().map(move |f| Frame {
                    pts: f.pts + k * 94 * 1920,
                    dts: f.dts + k * 94 * 1920,
                    ..f.clone()
                })
            })
            .collect();
        let ts = mux(&config, &long);
        let mut d = TsDemuxer::default();
        let events = d.handle_bytes(&ts).expect("no refusal");
        let DemuxEvent::Config(first) = &events[0] else {
            panic!("audio announced alone after the limit");
        };
        assert!(first.video.is_none() && first.audio.is_some());
        // Held for a little over 5 s of audio, then released in order.
        let released = only_frames(&events, Track::Audio);
        assert_eq!(
            released.len(),
            3 * 94 - 1,
            "all but the last (unconfirmed) packet's"
        );
        let announced_at = events
            .iter()
            .position(|e| matches!(e, DemuxEvent::Config(_)))
            .expect("a configuration");
        assert_eq!(announced_at, 0);
        assert!(released.windows(2).all(|w| w[1].dts > w[0].dts));
    }

    #[test]
    fn any_chunking_gives_the_same_events() {
        let ts = mux(&avc_config(), &frames(90_000, 2));
        let (whole, _) = demux_chunks(&ts, std::iter::once(ts.len()));
        let (bytewise, _) = demux_chunks(&ts, std::iter::repeat(1));
        assert_eq!(whole, bytewise);
        let mut rng = Rng(99);
        let sizes: Vec<usize> = (0..ts.len())
            .map(|_| rng.below(2000) as usize + 1)
            .collect();
        let (random, _) = demux_chunks(&ts, sizes.into_iter());
        assert_eq!(whole, random);
    }

    #[test]
    fn garbage_before_and_between_packets_is_skipped() {
        let input = frames(90_000, 3);
        let ts = mux(&avc_config(), &input);
        let mut damaged = vec![0x47, 0x00, 0x47, 1, 2, 3];
        damaged.extend_from_slice(&ts[..188 * 10]);
        // Garbage between packets (not a multiple of 188), with a fake sync byte.
        damaged.extend_from_slice(&[0x47, 9, 9, 0x47, 0x47]);
        damaged.extend_from_slice(&ts[188 * 10..]);
        let (events, d) = demux_chunks(&damaged, std::iter::repeat(1316));
        let stats = d.stats();
        assert_eq!(stats.resyncs, 1);
        assert_eq!(stats.dropped_bytes, 6 + 5);
        assert_same_frames(&input, &events);
    }

    fn pid_of(packet: &[u8]) -> u16 {
        (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2])
    }

    #[test]
    fn continuity_gap_drops_the_pes_and_duplicates_are_skipped() {
        let input = frames(90_000, 4);
        let ts = mux(&avc_config(), &input);
        let packets: Vec<&[u8]> = ts.chunks(188).collect();
        // Lose a continuation packet of the first keyframe; duplicate a later audio packet.
        let lost = packets
            .iter()
            .position(|p| pid_of(p) == crate::ts::VIDEO_PID && p[1] & 0x40 == 0)
            .expect("a video continuation packet");
        let dup = packets
            .iter()
            .rposition(|p| pid_of(p) == crate::ts::AUDIO_PID)
            .expect("an audio packet");
        let mut damaged = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            if i != lost {
                damaged.extend_from_slice(p);
            }
            if i == dup {
                damaged.extend_from_slice(p);
            }
        }
        let (events, d) = demux_chunks(&damaged, std::iter::repeat(1316));
        let stats = d.stats();
        assert_eq!(stats.continuity_errors, 1);
        assert_eq!(stats.pes_dropped, 1);
        assert_eq!(stats.duplicate_packets, 1);
        let video = only_frames(&events, Track::Video);
        // The first keyframe is gone: video starts at the second one.
        assert_eq!(video.len(), 25);
        assert!(video[0].keyframe);
        assert_eq!(only_frames(&events, Track::Audio).len(), 94);
    }

    #[test]
    fn pts_wrap_at_33_bits_keeps_the_timeline() {
        let config = avc_config();
        // Starts 1 s before the 33-bit wrap; the muxer writes the timestamps modulo 2^33.
        let input = frames((1 << 33) - 90_000, 5);
        let ts = mux(&config, &input);
        let (events, _) = demux_chunks(&ts, std::iter::repeat(1316));
        assert_same_frames(&input, &events);
        let video = only_frames(&events, Track::Video);
        assert!(video.windows(2).all(|w| w[1].dts > w[0].dts));
        assert!(video[0].dts < 200_000, "starts near the mapper's start");
    }

    /// A deterministic stand-in for the fuzz target that runs with every `cargo test`:
    /// mutated streams (bit flips, cuts, splices, garbage) in random chunks never panic and
    /// only produce well-formed output.
    #[test]
    fn mutated_streams_never_panic() {
        let clean = mux(&avc_config(), &frames(90_000, 7)[..60]);
        let mut rng = Rng(0x5eed);
        for _ in 0..3000 {
            let mut data = clean.clone();
            for _ in 0..rng.below(20) + 1 {
                let at = rng.below(data.len() as u64) as usize;
                match rng.below(4) {
                    0 => data[at] ^= 1 << rng.below(8),
                    1 => {
                        let end = (at + rng.below(400) as usize).min(data.len());
                        data.drain(at..end);
                    }
                    2 => {
                        let n = rng.below(300) as usize;
                        let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                        data.splice(at..at, junk);
                    }
                    _ => {
                        let from = rng.below(data.len() as u64) as usize;
                        let end = (from + rng.below(1000) as usize).min(data.len());
                        let piece = data[from..end].to_vec();
                        data.splice(at..at, piece);
                    }
                }
            }
            let mut d = TsDemuxer::default();
            let mut events = Vec::new();
            let mut pos = 0;
            while pos < data.len() {
                let end = (pos + rng.below(2000) as usize + 1).min(data.len());
                if d.handle_bytes_into(&data[pos..end], &mut events).is_err() {
                    break;
                }
                pos = end;
            }
            events.extend(d.flush());
            let mut last = [None::<u64>; 2];
            let mut configured = StreamConfig::default();
            for e in &events {
                match e {
                    DemuxEvent::Config(c) => configured = c.clone(),
                    DemuxEvent::Frame(f) => {
                        assert!(f.pts >= f.dts);
                        let slot = &mut last[f.track as usize];
                        assert!(slot.is_none_or(|l| f.dts > l));
                        *slot = Some(f.dts);
                        if f.track == Track::Video {
                            assert!(configured.video.is_some());
                            let covered: usize =
                                crate::demux::nal_units(&f.data).map(|u| u.len() + 4).sum();
                            assert_eq!(covered, f.data.len());
                        } else {
                            assert!(configured.audio.is_some());
                        }
                    }
                    DemuxEvent::Metadata(_) => {}
                }
            }
        }
    }

    #[test]
    fn unwrapper_handles_both_directions() {
        let mut u = Unwrapper::default();
        assert_eq!(u.unwrap((1 << 33) - 10), (1 << 33) - 10);
        assert_eq!(u.unwrap(5), (1 << 33) + 5);
        // A slightly late value from before the wrap.
        assert_eq!(u.unwrap((1 << 33) - 3), (1 << 33) - 3);
        assert_eq!(u.unwrap(100), (1 << 33) + 100);
    }

    /// A PSI packet carrying one section (CRC added).
    fn psi_packet(pid: u16, table_id: u8, ext: u16, body: &[u8]) -> Vec<u8> {
        let mut section = vec![table_id, 0, 0, (ext >> 8) as u8, ext as u8, 0xc1, 0, 0];
        section.extend_from_slice(body);
        let len = section.len() - 3 + 4;
        section[1] = 0xb0 | (len >> 8) as u8;
        section[2] = len as u8;
        let crc = crc32_mpeg2(&section);
        section.extend_from_slice(&crc.to_be_bytes());
        let mut p = vec![0x47, 0x40 | (pid >> 8) as u8, pid as u8, 0x10, 0];
        p.extend_from_slice(&section);
        p.resize(188, 0xff);
        p
    }

    fn program(streams: &[(u8, u16, &[u8])]) -> Vec<u8> {
        let mut ts = psi_packet(0, 0, 1, &[0, 1, 0xf0, 0x00]); // program 1 -> PMT PID 0x1000
        let mut body = vec![0xe1, 0x00, 0xf0, 0x00]; // PCR PID 0x100, no program info
        for &(stream_type, pid, descriptors) in streams {
            body.push(stream_type);
            body.extend_from_slice(&(0xe000 | pid).to_be_bytes());
            body.extend_from_slice(&(0xf000 | descriptors.len() as u16).to_be_bytes());
            body.extend_from_slice(descriptors);
        }
        ts.extend(psi_packet(0x1000, 2, 1, &body));
        // A following packet to confirm the sync of the last one.
        ts.extend(psi_packet(0x1fff, 0xff, 0, &[]));
        ts
    }

    fn refusal(ts: &[u8]) -> Option<String> {
        let mut d = TsDemuxer::default();
        match d.handle_bytes(ts) {
            Err(MediaError::UnsupportedCodec { codec, .. }) => {
                // Sticky: later input gets the same answer.
                assert!(d.handle_bytes(&[0x47]).is_err());
                Some(codec)
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => None,
        }
    }

    #[test]
    fn unsupported_codecs_are_refused_by_name() {
        let mpeg2 = program(&[(0x02, 0x100, &[]), (0x0f, 0x101, &[])]);
        assert_eq!(refusal(&mpeg2).as_deref(), Some("MPEG-2 video"));
        let mp2 = program(&[(0x1b, 0x100, &[]), (0x03, 0x101, &[])]);
        assert_eq!(refusal(&mp2).as_deref(), Some("MPEG-1 audio (MP1/MP2/MP3)"));
        let ac3 = program(&[(0x1b, 0x100, &[]), (0x81, 0x101, &[])]);
        assert_eq!(refusal(&ac3).as_deref(), Some("AC-3"));
        let opus = program(&[(0x24, 0x100, &[]), (0x06, 0x101, b"\x05\x04Opus")]);
        assert_eq!(refusal(&opus).as_deref(), Some("Opus"));
        let latm = program(&[(0x11, 0x101, &[])]);
        assert_eq!(refusal(&latm).as_deref(), Some("AAC in LATM"));
        // SCTE-35, ID3 metadata and an extra AC-3 next to AAC are ignored.
        let fine = program(&[
            (0x1b, 0x100, &[]),
            (0x0f, 0x101, &[]),
            (0x81, 0x102, &[]),
            (0x86, 0x103, &[]),
            (0x15, 0x104, &[]),
        ]);
        assert_eq!(refusal(&fine), None);
        // A PMT with a bad CRC is dropped, not trusted.
        let mut bad = mpeg2.clone();
        bad[188 + 20] ^= 0xff;
        let mut d = TsDemuxer::default();
        assert!(d.handle_bytes(&bad).is_ok());
        assert_eq!(d.stats().psi_errors, 1);
    }

    /// One TS packet on PID 0x101 carrying a whole audio PES (PTS, payload).
    fn audio_pes_packet(pts: u64, payload: &[u8], cc: u8) -> Vec<u8> {
        let mut pes = vec![0, 0, 1, 0xc0, 0, 0, 0x80, 0x80, 5];
        pes.extend_from_slice(&[
            0x21 | ((pts >> 29) as u8 & 0x0e),
            (pts >> 22) as u8,
            ((pts >> 14) as u8) | 1,
            (pts >> 7) as u8,
            ((pts << 1) as u8) | 1,
        ]);
        pes.extend_from_slice(payload);
        let len = pes.len() - 6;
        pes[4] = (len >> 8) as u8;
        pes[5] = len as u8;
        let mut packet = vec![0x47, 0x41, 0x01, 0x30 | cc];
        packet.push((184 - pes.len() - 1) as u8);
        packet.push(0);
        packet.resize(188 - pes.len(), 0xff);
        packet.extend_from_slice(&pes);
        packet
    }

    fn adts_frames(asc: &AudioSpecificConfig, count: u8) -> Vec<Vec<u8>> {
        (0..count)
            .map(|i| {
                let raw = vec![i + 1; 30 + usize::from(i)];
                let mut frame = asc.adts_header(raw.len()).expect("header").to_vec();
                frame.extend_from_slice(&raw);
                frame
            })
            .collect()
    }

    #[test]
    fn several_adts_frames_per_pes_advance_by_1024_samples() {
        let asc = AudioSpecificConfig::new(2, 4, 2).expect("44.1 kHz stereo");
        let payload = adts_frames(&asc, 3).concat();
        let mut ts = program(&[(0x0f, 0x101, &[])]);
        ts.truncate(188 * 2);
        ts.extend(audio_pes_packet(900_000, &payload, 0));
        let mut d = TsDemuxer::default();
        let mut events = d.handle_bytes(&ts).expect("no refusal");
        assert!(
            events.is_empty(),
            "the last packet waits for the next sync byte"
        );
        events.extend(d.flush());
        let audio = only_frames(&events, Track::Audio);
        assert_eq!(audio.len(), 3);
        let dts: Vec<u64> = audio.iter().map(|f| f.dts - audio[0].dts).collect();
        // 1024 samples at 44.1 kHz = 2089.8 ticks, from the PES's PTS without drift.
        assert_eq!(dts, vec![0, 2089, 4179]);
        assert_eq!(audio[2].data, Bytes::from(vec![3u8; 32]));
        assert!(
            matches!(&events[0], DemuxEvent::Config(c) if c.audio.as_deref().map(|a| &a.asc) == Some(&asc))
        );
    }

    #[test]
    fn adts_frames_cut_across_pes_packets_are_joined() {
        let asc = AudioSpecificConfig::new(2, 4, 2).expect("44.1 kHz stereo");
        let frames = adts_frames(&asc, 4);
        // PES 1: frames 0, 1 and the first 10 bytes of 2; PES 2: the rest of 2, then 3,
        // stamped with frame 3's time.
        let first = [&frames[0][..], &frames[1], &frames[2][..10]].concat();
        let second = [&frames[2][10..], &frames[3][..]].concat();
        let mut ts = program(&[(0x0f, 0x101, &[])]);
        ts.truncate(188 * 2);
        ts.extend(audio_pes_packet(900_000, &first, 0));
        ts.extend(audio_pes_packet(900_000 + 3 * 2090, &second, 1));
        let mut d = TsDemuxer::default();
        let mut events = d.handle_bytes(&ts).expect("no refusal");
        events.extend(d.flush());
        let audio = only_frames(&events, Track::Audio);
        let data: Vec<Bytes> = audio.iter().map(|f| f.data.clone()).collect();
        let want: Vec<Bytes> = frames
            .iter()
            .map(|f| Bytes::copy_from_slice(&f[7..]))
            .collect();
        assert_eq!(data, want);
        let dts: Vec<u64> = audio.iter().map(|f| f.dts - audio[0].dts).collect();
        assert_eq!(dts, vec![0, 2089, 4179, 3 * 2090]);
        assert_eq!(d.stats().bad_audio, 0);

        // A remnant that the next PES does not continue is dropped, not glued to its frame.
        let mut ts = program(&[(0x0f, 0x101, &[])]);
        ts.truncate(188 * 2);
        ts.extend(audio_pes_packet(900_000, &first, 0));
        ts.extend(audio_pes_packet(900_000 + 3 * 2090, &frames[3], 1));
        let mut d = TsDemuxer::default();
        let mut events = d.handle_bytes(&ts).expect("no refusal");
        events.extend(d.flush());
        let audio = only_frames(&events, Track::Audio);
        assert_eq!(audio.len(), 3);
        assert_eq!(audio[2].data, want[3]);
        assert_eq!(d.stats().bad_audio, 1);
    }
}
