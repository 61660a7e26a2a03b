//! MPEG-TS muxing on the `mpeg2ts` crate: PAT/PMT, PES packetisation of video (Annex-B with
//! an AUD and the parameter sets in front of every keyframe) and audio (ADTS), PCR, continuity
//! counters and the random-access indicator.
//!
//! Video payload bytes are never gathered into an intermediate Annex-B buffer: the muxer walks
//! the frame's NAL units and the constant start codes as a list of slices and fills each
//! 188-byte packet from it directly.

use bytes::{BufMut, BytesMut};
use mpeg2ts::es::{StreamId, StreamType};
use mpeg2ts::pes::PesHeader;
use mpeg2ts::time::{ClockReference, Timestamp};
use mpeg2ts::ts::payload::{self, Pat, Pes, Pmt};
use mpeg2ts::ts::{
    AdaptationField, ContinuityCounter, EsInfo, Pid, ProgramAssociation,
    TransportScramblingControl, TsHeader, TsPacket, TsPacketWriter, TsPayload, VersionNumber,
    WriteTsPacket,
};

use crate::demux::nal_units;
use crate::error::{MediaError, Result};
use crate::frame::{Frame, StreamConfig, Track, VideoConfig, TIMESCALE};

/// PID of the program map table.
pub const PMT_PID: u16 = 0x1000;
/// PID of the video elementary stream.
pub const VIDEO_PID: u16 = 0x100;
/// PID of the audio elementary stream.
pub const AUDIO_PID: u16 = 0x101;
/// How far the PCR runs ahead of the DTS it is sent with (decoder buffer time), in 90 kHz.
pub const PCR_LEAD_90K: u64 = TIMESCALE / 10;

const TS_PAYLOAD: usize = TsPacket::SIZE - 4;
const START_CODE: &[u8] = &[0, 0, 0, 1];
const AVC_AUD: &[u8] = &[0, 0, 0, 1, 0x09, 0xf0];
const HEVC_AUD: &[u8] = &[0, 0, 0, 1, 0x46, 0x01, 0x50];
const TS_MASK: u64 = Timestamp::MAX;

fn ts_error(e: mpeg2ts::Error) -> MediaError {
    MediaError::invalid("MPEG-TS packet", e.to_string())
}

fn pid(n: u16) -> Pid {
    // The PIDs used here are constants below Pid::MAX.
    Pid::new(n).unwrap_or_else(|_| unreachable!("constant PID {n} is valid"))
}

fn timestamp(ticks: u64) -> Timestamp {
    Timestamp::new(ticks & TS_MASK).unwrap_or_else(|_| unreachable!("masked to 33 bits"))
}

/// Writes the transport stream of one program with up to one video and one audio track.
#[derive(Debug)]
pub struct TsMuxer {
    config: StreamConfig,
    pat_cc: ContinuityCounter,
    pmt_cc: ContinuityCounter,
    video_cc: ContinuityCounter,
    audio_cc: ContinuityCounter,
    packets: u64,
}

impl TsMuxer {
    /// A muxer for the tracks of `config`.
    pub fn new(config: StreamConfig) -> Self {
        TsMuxer {
            config,
            pat_cc: ContinuityCounter::new(),
            pmt_cc: ContinuityCounter::new(),
            video_cc: ContinuityCounter::new(),
            audio_cc: ContinuityCounter::new(),
            packets: 0,
        }
    }

    /// Switches to new tracks. Continuity counters carry on, so that a player reading across
    /// the change sees no lost packets; the next [`TsMuxer::write_tables`] announces them.
    pub fn set_config(&mut self, config: StreamConfig) {
        self.config = config;
    }

    /// The tracks being muxed.
    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// TS packets written so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    fn pcr_pid(&self) -> u16 {
        if self.config.video.is_some() {
            VIDEO_PID
        } else {
            AUDIO_PID
        }
    }

    fn write_packet(&mut self, out: &mut BytesMut, packet: &TsPacket) -> Result<()> {
        out.reserve(TsPacket::SIZE);
        TsPacketWriter::new(out.writer())
            .write_ts_packet(packet)
            .map_err(ts_error)?;
        self.packets += 1;
        Ok(())
    }

    fn header(pid_value: u16, cc: &mut ContinuityCounter) -> TsHeader {
        let header = TsHeader {
            transport_error_indicator: false,
            transport_priority: false,
            pid: pid(pid_value),
            transport_scrambling_control: TransportScramblingControl::NotScrambled,
            continuity_counter: *cc,
        };
        cc.increment();
        header
    }

    /// Writes a PAT and a PMT (the start of every segment).
    pub fn write_tables(&mut self, out: &mut BytesMut) -> Result<()> {
        let pat = TsPacket {
            header: Self::header(0, &mut self.pat_cc),
            adaptation_field: None,
            payload: Some(TsPayload::Pat(Pat {
                transport_stream_id: 1,
                version_number: VersionNumber::new(),
                table: vec![ProgramAssociation {
                    program_num: 1,
                    program_map_pid: pid(PMT_PID),
                }],
            })),
        };
        self.write_packet(out, &pat)?;
        let mut es_info = Vec::new();
        if let Some(v) = &self.config.video {
            es_info.push(EsInfo {
                stream_type: if v.is_hevc() {
                    StreamType::H265
                } else {
                    StreamType::H264
                },
                elementary_pid: pid(VIDEO_PID),
                descriptors: vec![],
            });
        }
        if self.config.audio.is_some() {
            es_info.push(EsInfo {
                stream_type: StreamType::AdtsAac,
                elementary_pid: pid(AUDIO_PID),
                descriptors: vec![],
            });
        }
        let pmt = TsPacket {
            header: Self::header(PMT_PID, &mut self.pmt_cc),
            adaptation_field: None,
            payload: Some(TsPayload::Pmt(Pmt {
                program_num: 1,
                pcr_pid: Some(pid(self.pcr_pid())),
                version_number: VersionNumber::new(),
                program_info: vec![],
                es_info,
            })),
        };
        self.write_packet(out, &pmt)
    }

    /// Writes one frame as a PES packet.
    pub fn write_frame(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<()> {
        match frame.track {
            Track::Video => {
                let video = self
                    .config
                    .video
                    .clone()
                    .ok_or(MediaError::MissingConfig { track: "video" })?;
                let pieces = annex_b_pieces(&video, frame);
                self.write_pes(frame, &pieces, out)
            }
            Track::Audio => {
                let audio = self
                    .config
                    .audio
                    .clone()
                    .ok_or(MediaError::MissingConfig { track: "audio" })?;
                let adts = audio.asc.adts_header(frame.data.len())?;
                self.write_pes(frame, &[&adts, &frame.data], out)
            }
        }
    }

    fn write_pes(&mut self, frame: &Frame, pieces: &[&[u8]], out: &mut BytesMut) -> Result<()> {
        let is_video = frame.track == Track::Video;
        let total: usize = pieces.iter().map(|p| p.len()).sum();
        let with_dts = is_video && frame.pts != frame.dts;
        let header = PesHeader {
            stream_id: StreamId::new(if is_video {
                StreamId::VIDEO_MIN
            } else {
                StreamId::AUDIO_MIN
            }),
            priority: false,
            data_alignment_indicator: true,
            copyright: false,
            original_or_copy: false,
            pts: Some(timestamp(frame.pts)),
            dts: with_dts.then(|| timestamp(frame.dts)),
            escr: None,
        };
        let optional_len = 3 + 5 + if with_dts { 5 } else { 0 };
        let pes_packet_len = if is_video || total + optional_len > usize::from(u16::MAX) {
            0
        } else {
            (total + optional_len) as u16
        };
        let carries_pcr = (if is_video { VIDEO_PID } else { AUDIO_PID }) == self.pcr_pid();
        let adaptation_field = (carries_pcr || frame.keyframe).then(|| AdaptationField {
            discontinuity_indicator: false,
            random_access_indicator: frame.keyframe,
            es_priority_indicator: false,
            pcr: carries_pcr.then(|| {
                let pcr = frame.dts.saturating_sub(PCR_LEAD_90K) & TS_MASK;
                ClockReference::new(pcr * 300).unwrap_or_else(|_| unreachable!("33-bit base"))
            }),
            opcr: None,
            splice_countdown: None,
            transport_private_data: vec![],
            extension: None,
        });
        let af_len = adaptation_field
            .as_ref()
            .map_or(0, |a| 2 + if a.pcr.is_some() { 6 } else { 0 });
        let (pid_value, cc) = if is_video {
            (VIDEO_PID, &mut self.video_cc)
        } else {
            (AUDIO_PID, &mut self.audio_cc)
        };

        let mut cursor = Pieces::new(pieces);
        let mut buf = [0u8; TS_PAYLOAD];
        let first_room = TS_PAYLOAD - (6 + optional_len) - af_len;
        let n = cursor.fill(&mut buf[..first_room.min(total)]);
        let first = TsPacket {
            header: Self::header(pid_value, cc),
            adaptation_field,
            payload: Some(TsPayload::PesStart(Pes {
                header,
                pes_packet_len,
                data: payload::Bytes::new(&buf[..n]).map_err(ts_error)?,
            })),
        };
        self.write_packet(out, &first)?;
        // Continuation packets are ~99% of all packets: written here directly from the
        // slices into the output (one copy of the payload), not through `mpeg2ts`.
        while !cursor.is_done() {
            let cc = if is_video {
                &mut self.video_cc
            } else {
                &mut self.audio_cc
            };
            let counter = cc.as_u8();
            cc.increment();
            let n = cursor.remaining().min(TS_PAYLOAD);
            out.reserve(TsPacket::SIZE);
            out.put_u8(TsPacket::SYNC_BYTE);
            out.put_u16(pid_value); // no transport error, no payload unit start, priority 0
            if n == TS_PAYLOAD {
                out.put_u8(0x10 | counter); // payload only
            } else {
                out.put_u8(0x30 | counter); // adaptation field (stuffing) + payload
                let af_len = TS_PAYLOAD - n - 1;
                out.put_u8(af_len as u8);
                if af_len > 0 {
                    out.put_u8(0); // no flags
                    out.put_bytes(0xff, af_len - 1);
                }
            }
            cursor.copy_to(out, n);
            self.packets += 1;
        }
        Ok(())
    }
}

/// The Annex-B access unit of a video frame as slices: an AUD (unless the frame has one), the
/// parameter sets on keyframes (unless the frame carries them), then every NAL unit behind a
/// start code.
fn annex_b_pieces<'a>(video: &'a VideoConfig, frame: &'a Frame) -> Vec<&'a [u8]> {
    let (aud_type, sps_type) = if video.is_hevc() {
        (crate::hevc::nal::AUD, crate::hevc::nal::SPS)
    } else {
        (crate::avc::nal::AUD, crate::avc::nal::SPS)
    };
    let (mut has_aud, mut has_sps) = (false, false);
    for unit in nal_units(&frame.data) {
        let t = video.nal_type(unit);
        has_aud |= t == Some(aud_type);
        has_sps |= t == Some(sps_type);
    }
    let mut pieces: Vec<&[u8]> = Vec::with_capacity(16);
    if !has_aud {
        pieces.push(if video.is_hevc() { HEVC_AUD } else { AVC_AUD });
    }
    let units = nal_units(&frame.data);
    let mut units = units.peekable();
    // An AUD in the frame must stay first.
    if has_aud {
        if let Some(first) = units.next_if(|u| video.nal_type(u) == Some(aud_type)) {
            pieces.push(START_CODE);
            pieces.push(first);
        }
    }
    if frame.keyframe && !has_sps {
        for set in &video.parameter_sets {
            pieces.push(START_CODE);
            pieces.push(set);
        }
    }
    for unit in units {
        pieces.push(START_CODE);
        pieces.push(unit);
    }
    pieces
}

/// A read cursor over a list of slices.
struct Pieces<'a, 'b> {
    pieces: &'b [&'a [u8]],
    index: usize,
    offset: usize,
    remaining: usize,
}

impl<'a, 'b> Pieces<'a, 'b> {
    fn new(pieces: &'b [&'a [u8]]) -> Self {
        let mut p = Pieces {
            pieces,
            index: 0,
            offset: 0,
            remaining: pieces.iter().map(|p| p.len()).sum(),
        };
        p.skip_empty();
        p
    }

    fn skip_empty(&mut self) {
        while self.index < self.pieces.len() && self.offset >= self.pieces[self.index].len() {
            self.index += 1;
            self.offset = 0;
        }
    }

    fn is_done(&self) -> bool {
        self.index >= self.pieces.len()
    }

    fn remaining(&self) -> usize {
        self.remaining
    }

    /// Appends the next `n` bytes (at most what remains) to `out`.
    fn copy_to(&mut self, out: &mut BytesMut, mut n: usize) {
        while n > 0 && !self.is_done() {
            let piece = &self.pieces[self.index][self.offset..];
            let take = piece.len().min(n);
            out.put_slice(&piece[..take]);
            n -= take;
            self.offset += take;
            self.remaining -= take;
            self.skip_empty();
        }
    }

    /// Copies as much as fits into `buf`; returns how much was copied.
    fn fill(&mut self, buf: &mut [u8]) -> usize {
        let mut written = 0;
        while written < buf.len() && !self.is_done() {
            let piece = &self.pieces[self.index][self.offset..];
            let n = piece.len().min(buf.len() - written);
            buf[written..written + n].copy_from_slice(&piece[..n]);
            written += n;
            self.offset += n;
            self.remaining -= n;
            self.skip_empty();
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::aac::AudioSpecificConfig;
    use crate::frame::AudioConfig;

    #[test]
    fn audio_frames_are_whole_packets_with_continuity() {
        let config = StreamConfig {
            video: None,
            audio: Some(Arc::new(AudioConfig {
                asc: AudioSpecificConfig::new(2, 4, 2).unwrap(),
            })),
        };
        let mut mux = TsMuxer::new(config);
        let mut out = BytesMut::new();
        mux.write_tables(&mut out).unwrap();
        for i in 0..20u64 {
            let frame = Frame {
                track: Track::Audio,
                pts: 90_000 + i * 1920,
                dts: 90_000 + i * 1920,
                keyframe: true,
                data: Bytes::from(vec![0x21; 300 + i as usize]),
            };
            mux.write_frame(&frame, &mut out).unwrap();
        }
        assert_eq!(out.len() % 188, 0);
        assert_eq!(out.len() / 188, mux.packets() as usize);
        let mut last_cc = None;
        for packet in out.chunks(188) {
            assert_eq!(packet[0], 0x47);
            let pid = (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2]);
            if pid == AUDIO_PID {
                let cc = packet[3] & 0x0f;
                if let Some(last) = last_cc {
                    assert_eq!(cc, (last + 1) % 16);
                }
                last_cc = Some(cc);
            }
        }
    }

    #[test]
    fn pieces_cursor_spans_slices() {
        let parts: [&[u8]; 3] = [&[1, 2], &[], &[3, 4, 5]];
        let mut p = Pieces::new(&parts);
        let mut buf = [0u8; 4];
        assert_eq!(p.fill(&mut buf), 4);
        assert_eq!(buf, [1, 2, 3, 4]);
        assert_eq!(p.fill(&mut buf), 1);
        assert!(p.is_done());
    }
}
