//! The clip as MPEG-TS, for the SRT publishers: muxed once, shared, looped by patching.
//!
//! The FLV clip's frames go through the gateway's own [`FlvDemuxer`] and [`TsMuxer`] once (a
//! PAT and a PMT in front of the first packet and of every video keyframe, a PCR on every
//! video PES), the packets are padded with null packets to a multiple of 7 and cut into
//! 1316-byte payloads ([`PAYLOAD_SIZE`], what libsrt and ffmpeg send per SRT packet). Every
//! publisher sends the same [`Bytes`] on the first pass. Later passes are the same payloads
//! copied and patched ([`TsClip::payload`]): PTS, DTS and PCR moved on by the loop length, and
//! each PID's continuity counter moved on by the packets that PID had in the passes before,
//! so a receiver sees one continuous stream.
//!
//! A payload is due (may be sent) at the media time of its last packet: a live encoder cannot
//! send a packet before the frame it belongs to exists.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use media::flv::TagKind;
use media::timestamp::TimestampConfig;
use media::{DemuxEvent, FlvDemuxer, Track, TsMuxer};

use crate::Clip;

/// Size of a transport stream packet.
pub const PACKET: usize = 188;
/// Transport stream packets per SRT payload.
pub const PACKETS_PER_PAYLOAD: usize = 7;
/// One SRT payload: 7 transport stream packets.
pub const PAYLOAD_SIZE: usize = PACKET * PACKETS_PER_PAYLOAD;
const NULL_PID: u16 = 0x1fff;
const TS_MASK: u64 = (1 << 33) - 1;

/// A frame whose last packet is in a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameEnd {
    /// The frame ends with the `at`-th packet of the payload (1..=7).
    pub at: u8,
    /// Video (else audio).
    pub video: bool,
    pub keyframe: bool,
    /// The frame's FLV timestamp, ms from the clip's first tag.
    pub media_ms: u64,
}

/// One 1316-byte payload of the first pass.
#[derive(Debug)]
pub struct Chunk {
    /// When it is due, ms from the clip's start (the media time of its last packet).
    pub due_ms: u64,
    /// The frames that end in it, in order.
    pub ends: Vec<FrameEnd>,
    /// The smallest `k` (1..=7) such that no PES continues after the payload's `k`-th packet,
    /// if there is one: where a stream can stop inside this payload without cutting a frame.
    pub first_boundary: Option<u8>,
    /// Whether no PES continues into the next payload.
    pub boundary_at_end: bool,
}

/// The clip as MPEG-TS, shared by every SRT publisher.
#[derive(Debug)]
pub struct TsClip {
    /// Every packet of one pass, padded to whole payloads.
    data: Bytes,
    pub chunks: Vec<Chunk>,
    /// What each pass adds to the timestamps, ms (the FLV clip's loop length).
    pub loop_ms: u64,
    /// Packets per pass of each PID (for the continuity counters of later passes).
    packets_per_pid: HashMap<u16, u64>,
    /// TS packets per pass, null packets included.
    pub packets: usize,
}

impl TsClip {
    /// Muxes the clip's frames into MPEG-TS once.
    pub fn build(clip: &Clip) -> Result<TsClip, String> {
        let mut demuxer = FlvDemuxer::new(TimestampConfig::default());
        let kind = |video| {
            if video {
                TagKind::Video
            } else {
                TagKind::Audio
            }
        };
        for header in &clip.headers {
            demuxer
                .handle_tag(kind(header.video), header.ts as u32, header.body.clone())
                .map_err(|e| format!("clip sequence header: {e}"))?;
        }
        let mut muxer = TsMuxer::new(demuxer.config().clone());
        let mut out = BytesMut::new();
        // Per packet: the media time it is due at; per frame: its last packet.
        let mut due = Vec::new();
        let mut ends: Vec<(usize, FrameEnd)> = Vec::new();
        let mut boundaries = Vec::new();
        let mut tables_written = false;
        for tag in &clip.tags {
            let event = demuxer
                .handle_tag(kind(tag.video), tag.ts as u32, tag.body.clone())
                .map_err(|e| format!("clip tag at {} ms: {e}", tag.ts))?;
            let frame = match event {
                Some(DemuxEvent::Frame(frame)) => frame,
                Some(DemuxEvent::Config(config)) => {
                    muxer.set_config(config);
                    continue;
                }
                Some(DemuxEvent::Metadata(_)) | None => continue,
            };
            if !tables_written || (frame.track == Track::Video && frame.keyframe) {
                muxer
                    .write_tables(&mut out)
                    .map_err(|e| format!("muxing the clip: {e}"))?;
                tables_written = true;
                boundaries.push(out.len() / PACKET);
            }
            muxer
                .write_frame(&frame, &mut out)
                .map_err(|e| format!("muxing the clip: {e}"))?;
            let packets = out.len() / PACKET;
            due.resize(packets, tag.ts);
            boundaries.push(packets);
            ends.push((
                packets,
                FrameEnd {
                    at: 0,
                    video: frame.track == Track::Video,
                    keyframe: frame.track == Track::Video && frame.keyframe,
                    media_ms: tag.ts,
                },
            ));
        }
        if out.is_empty() {
            return Err("the clip has no frames the TS muxer can carry".into());
        }
        let mut packets_per_pid = HashMap::new();
        for packet in out.chunks(PACKET) {
            *packets_per_pid.entry(pid(packet)).or_insert(0) += 1;
        }
        let last_due = due.last().copied().unwrap_or(0);
        while out.len() % PAYLOAD_SIZE != 0 {
            out.extend_from_slice(&null_packet());
            due.push(last_due);
            boundaries.push(out.len() / PACKET);
        }
        let packets = out.len() / PACKET;
        let mut chunks: Vec<Chunk> = (0..packets / PACKETS_PER_PAYLOAD)
            .map(|i| Chunk {
                due_ms: due[i * PACKETS_PER_PAYLOAD..(i + 1) * PACKETS_PER_PAYLOAD]
                    .iter()
                    .copied()
                    .max()
                    .unwrap_or(last_due),
                ends: Vec::new(),
                first_boundary: None,
                boundary_at_end: false,
            })
            .collect();
        // `end` counts packets: a frame or boundary at `end` follows packet `end - 1`.
        for (end, mut frame_end) in ends {
            let index = (end - 1) / PACKETS_PER_PAYLOAD;
            frame_end.at = ((end - 1) % PACKETS_PER_PAYLOAD + 1) as u8;
            chunks[index].ends.push(frame_end);
        }
        for end in boundaries.into_iter().filter(|&e| e > 0) {
            let chunk = &mut chunks[(end - 1) / PACKETS_PER_PAYLOAD];
            let at = ((end - 1) % PACKETS_PER_PAYLOAD + 1) as u8;
            chunk.first_boundary = Some(chunk.first_boundary.map_or(at, |b| b.min(at)));
            chunk.boundary_at_end |= usize::from(at) == PACKETS_PER_PAYLOAD;
        }
        Ok(TsClip {
            data: out.freeze(),
            chunks,
            loop_ms: clip.loop_ms,
            packets_per_pid,
            packets,
        })
    }

    /// The first `packets` (1..=7) packets of payload `index` of pass `pass` (0 = the first),
    /// padded with null packets to a whole payload. The first pass's whole payloads are the
    /// shared bytes themselves; anything else is a patched copy.
    pub fn payload(&self, index: usize, pass: u64, packets: usize) -> Bytes {
        let start = index * PAYLOAD_SIZE;
        let shared = self.data.slice(start..start + PAYLOAD_SIZE);
        if pass == 0 && packets >= PACKETS_PER_PAYLOAD {
            return shared;
        }
        let mut copy = BytesMut::from(&shared[..packets.min(PACKETS_PER_PAYLOAD) * PACKET]);
        let shift_90k = pass * self.loop_ms * 90;
        for packet in copy.chunks_mut(PACKET) {
            let cc_step = self.packets_per_pid.get(&pid(packet)).copied().unwrap_or(0);
            shift_packet(packet, shift_90k, ((pass * cc_step) % 16) as u8);
        }
        while copy.len() < PAYLOAD_SIZE {
            copy.extend_from_slice(&null_packet());
        }
        copy.freeze()
    }
}

fn pid(packet: &[u8]) -> u16 {
    u16::from_be_bytes([packet[1], packet[2]]) & 0x1fff
}

fn null_packet() -> [u8; PACKET] {
    let mut p = [0xff; PACKET];
    p[..4].copy_from_slice(&[0x47, 0x1f, 0xff, 0x10]);
    p
}

/// Moves one packet on: its continuity counter by `cc_add`, its PCR and (at a PES start) its
/// PTS and DTS by `shift_90k`. Null packets are left alone.
fn shift_packet(packet: &mut [u8], shift_90k: u64, cc_add: u8) {
    let pid = pid(packet);
    if pid == NULL_PID {
        return;
    }
    packet[3] = (packet[3] & 0xf0) | ((packet[3] + cc_add) & 0x0f);
    let control = (packet[3] >> 4) & 0x3;
    let mut payload = 4;
    if control & 0x2 != 0 {
        let af_len = usize::from(packet[4]);
        if af_len >= 7 && packet[5] & 0x10 != 0 {
            shift_pcr(&mut packet[6..12], shift_90k);
        }
        payload = 5 + af_len;
    }
    let start = packet[1] & 0x40 != 0;
    let Some(pes) = packet.get_mut(payload..) else {
        return;
    };
    // A PES start (PAT and PMT sections start with a pointer field and a table id instead).
    if !start || control & 0x1 == 0 || pes.len() < 14 || pes[..3] != [0, 0, 1] {
        return;
    }
    let flags = pes[7] >> 6;
    if flags & 0x2 != 0 {
        shift_timestamp(&mut pes[9..14], shift_90k);
    }
    if flags == 0x3 && pes.len() >= 19 {
        shift_timestamp(&mut pes[14..19], shift_90k);
    }
}

/// A PES PTS or DTS: 4 prefix bits, then 33 bits in groups of 3, 15 and 15 each followed by a
/// marker bit.
fn shift_timestamp(field: &mut [u8], shift_90k: u64) {
    let value = (u64::from(field[0] >> 1) & 0x7) << 30
        | u64::from(field[1]) << 22
        | u64::from(field[2] >> 1) << 15
        | u64::from(field[3]) << 7
        | u64::from(field[4] >> 1);
    let v = (value + shift_90k) & TS_MASK;
    field[0] = (field[0] & 0xf1) | (((v >> 30) as u8 & 0x7) << 1);
    field[1] = (v >> 22) as u8;
    field[2] = (((v >> 15) as u8) << 1) | (field[2] & 1);
    field[3] = (v >> 7) as u8;
    field[4] = ((v as u8) << 1) | (field[4] & 1);
}

/// A PCR: a 33-bit base, 6 reserved bits, a 9-bit extension; only the base moves.
fn shift_pcr(field: &mut [u8], shift_90k: u64) {
    let base = u64::from(field[0]) << 25
        | u64::from(field[1]) << 17
        | u64::from(field[2]) << 9
        | u64::from(field[3]) << 1
        | u64::from(field[4] >> 7);
    let b = (base + shift_90k) & TS_MASK;
    field[0] = (b >> 25) as u8;
    field[1] = (b >> 17) as u8;
    field[2] = (b >> 9) as u8;
    field[3] = (b >> 1) as u8;
    field[4] = (((b & 1) as u8) << 7) | (field[4] & 0x7f);
}

#[cfg(test)]
mod tests {
    use media::TsDemuxer;

    use super::*;
    use crate::load_clip;

    fn ts_clip() -> TsClip {
        let clip = load_clip(&testkit::fixture("avc_aac_720p30.flv")).expect("the fixture loads");
        TsClip::build(&clip).expect("the clip muxes")
    }

    #[test]
    fn timestamps_round_trip_through_the_bit_layout() {
        let mut pts = [0x21, 0, 1, 0, 1];
        shift_timestamp(&mut pts, (1 << 33) - 1 + 90_000);
        let mut back = pts;
        shift_timestamp(&mut back, 0);
        assert_eq!(pts, back);
        assert_eq!(pts[0] & 0xf1, 0x21, "prefix and marker kept");
        let mut pcr = [0, 0, 0, 0, 0x7e, 0x05];
        shift_pcr(&mut pcr, 3);
        assert_eq!(pcr, [0, 0, 0, 1, 0xfe, 0x05]);
    }

    #[test]
    fn the_clip_counts_its_frames_and_payloads() {
        let ts = ts_clip();
        let count = |video| {
            ts.chunks
                .iter()
                .flat_map(|c| &c.ends)
                .filter(|e| e.video == video)
                .count()
        };
        assert_eq!((count(true), count(false)), (300, 470));
        assert_eq!(ts.packets % PACKETS_PER_PAYLOAD, 0);
        assert_eq!(ts.chunks.len() * PACKETS_PER_PAYLOAD, ts.packets);
        let keyframes = ts
            .chunks
            .iter()
            .flat_map(|c| &c.ends)
            .filter(|e| e.keyframe);
        assert_eq!(keyframes.count(), 5);
        assert!(ts.chunks.windows(2).all(|w| w[0].due_ms <= w[1].due_ms));
        assert!(ts.chunks.last().is_some_and(|c| c.boundary_at_end));
    }

    /// Three passes and an end cut at a frame boundary demux as one stream: every frame,
    /// timestamps moving on by the loop length, no continuity error, nothing dropped.
    #[test]
    fn looped_passes_demux_as_one_continuous_stream() {
        let ts = ts_clip();
        let mut demuxer = TsDemuxer::new(TimestampConfig::default());
        let mut events = Vec::new();
        // Every PID's continuity counter (PAT and PMT too) steps by one across the passes.
        let mut counters: HashMap<u16, u8> = HashMap::new();
        for pass in 0..3 {
            for index in 0..ts.chunks.len() {
                let payload = ts.payload(index, pass, PACKETS_PER_PAYLOAD);
                assert_eq!(payload.len(), PAYLOAD_SIZE);
                for packet in payload.chunks(PACKET).filter(|p| pid(p) != NULL_PID) {
                    let cc = packet[3] & 0x0f;
                    if let Some(last) = counters.insert(pid(packet), cc) {
                        assert_eq!(cc, (last + 1) & 0x0f, "PID {} pass {pass}", pid(packet));
                    }
                }
                events.extend(demuxer.handle_bytes(&payload).expect("demuxes"));
            }
        }
        assert_eq!(counters.len(), 4, "PAT, PMT, video, audio");
        // A fourth pass stopped inside a payload of the second half with a boundary.
        let (index, chunk) = ts
            .chunks
            .iter()
            .enumerate()
            .skip(ts.chunks.len() / 2)
            .find(|(_, c)| c.first_boundary.is_some_and(|b| b < 7))
            .expect("a payload with a boundary inside");
        let cut = usize::from(chunk.first_boundary.unwrap_or(7));
        for i in 0..index {
            events.extend(demuxer.handle_bytes(&ts.payload(i, 3, 7)).expect("demuxes"));
        }
        events.extend(
            demuxer
                .handle_bytes(&ts.payload(index, 3, cut))
                .expect("demuxes"),
        );
        events.extend(demuxer.flush());
        let frames: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                DemuxEvent::Frame(f) => Some(f),
                _ => None,
            })
            .collect();
        let sent_in_fourth = |video| {
            ts.chunks[..index]
                .iter()
                .flat_map(|c| &c.ends)
                .chain(chunk.ends.iter().filter(|e| usize::from(e.at) <= cut))
                .filter(|e| e.video == video)
                .count()
        };
        let video = frames.iter().filter(|f| f.track == Track::Video).count();
        let audio = frames.len() - video;
        assert_eq!(video, 3 * 300 + sent_in_fourth(true));
        assert_eq!(audio, 3 * 470 + sent_in_fourth(false));
        let stats = demuxer.stats();
        assert_eq!(stats.continuity_errors, 0, "{stats:?}");
        assert_eq!(stats.pes_dropped + stats.frames_dropped, 0, "{stats:?}");
        assert_eq!(demuxer.timestamps().rebases(), 0);
        // Video DTS strictly increases across the passes, by about a frame each.
        let dts: Vec<u64> = frames
            .iter()
            .filter(|f| f.track == Track::Video)
            .map(|f| f.dts)
            .collect();
        assert!(dts.windows(2).all(|w| w[1] > w[0] && w[1] - w[0] < 9_000));
        assert_eq!(dts[300] - dts[0], ts.loop_ms * 90);
    }
}
