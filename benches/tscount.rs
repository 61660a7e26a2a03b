//! `onair-tscount`: counts the video and audio frames in MPEG-TS files, to compare what an HLS
//! server wrote with what a publisher sent (`benches/compare.sh`).
//!
//! ```text
//! onair-tscount FILE_OR_DIR...
//! {"files":N,"video_frames":V,"audio_frames":A,"audio_pes":P,"errors":[...],"errors_total":E}
//! ```
//!
//! * A directory stands for every `*.ts` in it, in the order of the number in the file name
//!   (`2.ts` before `10.ts`, `stream7-2.ts` before `stream7-10.ts`).
//! * Each file is parsed on its own: PAT -> PMT -> elementary PIDs. Stream types 0x1B (H.264)
//!   and 0x24 (HEVC) are video, 0x0F (AAC in ADTS) is audio; other PIDs are ignored.
//! * Video frames: PES packets started (payload_unit_start_indicator) on a video PID.
//! * Audio frames: ADTS frames in the reassembled audio PES payloads (one or several per PES),
//!   walked by their 13-bit `frame_length`; `audio_pes` is the number of audio PES packets.
//! * Anything malformed (lost sync and the bytes skipped to find it again, a partial packet, a
//!   continuity counter jump, a broken ADTS sync, a truncated PES, a file without PMT, an
//!   unreadable path) is an entry of `errors` (the first 100; `errors_total` counts them all),
//!   never a panic. The exit status is 0 whenever the JSON is printed, 2 on a usage error.

#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use clap::Parser;
use serde_json::json;

const PACKET: usize = 188;
const SYNC: u8 = 0x47;
const MAX_ERRORS: usize = 100;

#[derive(Debug, Parser)]
#[command(
    name = "onair-tscount",
    about = "Counts the video frames (PES) and AAC frames (ADTS) in MPEG-TS files; prints JSON"
)]
struct Args {
    /// MPEG-TS files, or directories (every *.ts in them, sorted by the number in the name)
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Video,
    Audio,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    files: u64,
    video_frames: u64,
    audio_frames: u64,
    audio_pes: u64,
    errors: Vec<String>,
    errors_total: u64,
}

impl Counts {
    fn error(&mut self, message: String) {
        self.errors_total += 1;
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(message);
        }
    }

    /// Counts the frames of one file's bytes; `name` prefixes its error messages.
    fn add_file(&mut self, name: &str, data: &[u8]) {
        self.files += 1;
        let mut file = FileParser {
            name,
            counts: self,
            pmt_pids: HashSet::new(),
            streams: HashMap::new(),
            continuity: HashMap::new(),
            audio: HashMap::new(),
            saw_pmt: false,
        };
        let mut pos = 0;
        while pos < data.len() {
            if data[pos] != SYNC {
                match resync(data, pos) {
                    Some(next) => {
                        file.error(pos, format!("lost sync, skipped {} bytes", next - pos));
                        pos = next;
                    }
                    None => {
                        file.error(
                            pos,
                            format!(
                                "lost sync, no packet in the last {} bytes",
                                data.len() - pos
                            ),
                        );
                        break;
                    }
                }
                continue;
            }
            match data.get(pos..pos + PACKET) {
                Some(packet) => file.packet(packet, pos),
                None => {
                    file.error(
                        pos,
                        format!("partial packet of {} bytes at the end", data.len() - pos),
                    );
                    break;
                }
            }
            pos += PACKET;
        }
        let pending: Vec<_> = file.audio.drain().collect();
        for (pid, (offset, pes)) in pending {
            file.audio_pes(pid, offset, &pes);
        }
        if !file.saw_pmt {
            file.counts.error(format!("{name}: no PMT"));
        }
    }
}

/// The next offset after `pos` where a packet starts: a sync byte followed by another one
/// 188 bytes further (or by the end of the data).
fn resync(data: &[u8], pos: usize) -> Option<usize> {
    (pos + 1..data.len())
        .find(|&p| data[p] == SYNC && data.get(p + PACKET).is_none_or(|&b| b == SYNC))
}

struct FileParser<'a> {
    name: &'a str,
    counts: &'a mut Counts,
    pmt_pids: HashSet<u16>,
    streams: HashMap<u16, Kind>,
    /// Last continuity counter seen per elementary PID.
    continuity: HashMap<u16, u8>,
    /// Audio PES being reassembled per PID: offset of its first packet, bytes so far.
    audio: HashMap<u16, (usize, Vec<u8>)>,
    saw_pmt: bool,
}

impl FileParser<'_> {
    fn error(&mut self, offset: usize, message: String) {
        self.counts
            .error(format!("{} @{offset}: {message}", self.name));
    }

    fn packet(&mut self, p: &[u8], offset: usize) {
        if p[1] & 0x80 != 0 {
            return self.error(offset, "transport_error_indicator set".into());
        }
        let start = p[1] & 0x40 != 0;
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let control = (p[3] >> 4) & 3;
        let payload_at = if control & 2 != 0 {
            5 + usize::from(p[4])
        } else {
            4
        };
        if control & 1 == 0 {
            return; // adaptation field only
        }
        let Some(payload) = p.get(payload_at..).filter(|b| !b.is_empty()) else {
            return self.error(offset, format!("PID {pid:#x}: adaptation field too long"));
        };
        if pid == 0 {
            self.psi(payload, start, offset, 0x00);
        } else if self.pmt_pids.contains(&pid) {
            self.psi(payload, start, offset, 0x02);
        } else if let Some(&kind) = self.streams.get(&pid) {
            let cc = p[3] & 0x0f;
            match self.continuity.insert(pid, cc) {
                Some(last) if cc == last => return, // a duplicate packet
                Some(last) if cc != (last + 1) & 0x0f => self.error(
                    offset,
                    format!("PID {pid:#x}: continuity counter {last} -> {cc}"),
                ),
                _ => {}
            }
            match (kind, start) {
                (Kind::Video, true) => {
                    if !payload.starts_with(&[0, 0, 1]) {
                        self.error(offset, format!("PID {pid:#x}: PES without start code"));
                    }
                    self.counts.video_frames += 1;
                }
                (Kind::Video, false) => {}
                (Kind::Audio, true) => {
                    if let Some((at, pes)) = self.audio.insert(pid, (offset, payload.to_vec())) {
                        self.audio_pes(pid, at, &pes);
                    }
                }
                (Kind::Audio, false) => match self.audio.get_mut(&pid) {
                    Some((_, pes)) => pes.extend_from_slice(payload),
                    None => self.error(offset, format!("PID {pid:#x}: payload before a PES start")),
                },
            }
        }
    }

    /// A PAT (`table` 0) or PMT (`table` 2) section that starts in this packet.
    fn psi(&mut self, payload: &[u8], start: bool, offset: usize, table: u8) {
        if !start {
            return self.error(
                offset,
                "PSI section continued over packets (unsupported)".into(),
            );
        }
        let section = payload
            .get(1 + usize::from(payload[0])..)
            .unwrap_or_default();
        let length = match section {
            [id, a, b, ..] if *id == table => (usize::from(a & 0x0f) << 8) | usize::from(*b),
            [0xff, ..] => return, // stuffing
            _ => return self.error(offset, format!("bad PSI section for table {table}")),
        };
        // Header up to last_section_number (8 bytes), CRC (4 bytes) excluded.
        let Some(body) = section.get(8..(3 + length).saturating_sub(4)) else {
            return self.error(
                offset,
                "PSI section longer than its packet (unsupported)".into(),
            );
        };
        if table == 0 {
            for entry in body.chunks_exact(4) {
                if entry[0] != 0 || entry[1] != 0 {
                    self.pmt_pids
                        .insert((u16::from(entry[2] & 0x1f) << 8) | u16::from(entry[3]));
                }
            }
            return;
        }
        self.saw_pmt = true;
        let info = body
            .get(2..4)
            .map_or(0, |b| (usize::from(b[0] & 0x0f) << 8) | usize::from(b[1]));
        let mut es = body.get(4 + info..).unwrap_or_default();
        while let [stream_type, p0, p1, l0, l1, rest @ ..] = es {
            let pid = (u16::from(p0 & 0x1f) << 8) | u16::from(*p1);
            match stream_type {
                0x1b | 0x24 => self.streams.insert(pid, Kind::Video),
                0x0f => self.streams.insert(pid, Kind::Audio),
                _ => None,
            };
            let skip = (usize::from(l0 & 0x0f) << 8) | usize::from(*l1);
            es = rest.get(skip..).unwrap_or_default();
        }
    }

    /// Counts the ADTS frames of one reassembled audio PES.
    fn audio_pes(&mut self, pid: u16, offset: usize, pes: &[u8]) {
        self.counts.audio_pes += 1;
        let Some(&[0, 0, 1, _, l0, l1, _, _, header]) = pes.get(..9) else {
            return self.error(offset, format!("PID {pid:#x}: audio PES without a header"));
        };
        let declared = usize::from(u16::from_be_bytes([l0, l1]));
        let mut end = pes.len();
        if declared != 0 {
            if 6 + declared > pes.len() {
                self.error(
                    offset,
                    format!(
                        "PID {pid:#x}: PES truncated ({} of {} bytes)",
                        pes.len(),
                        6 + declared
                    ),
                );
            } else {
                end = 6 + declared;
            }
        }
        let mut at = 9 + usize::from(header);
        while at < end {
            let h = &pes[at..end];
            if h.len() < 7 || h[0] != 0xff || h[1] & 0xf0 != 0xf0 {
                return self.error(
                    offset,
                    format!("PID {pid:#x}: broken ADTS sync {} bytes into the PES", at),
                );
            }
            let len = (usize::from(h[3] & 0x03) << 11)
                | (usize::from(h[4]) << 3)
                | usize::from(h[5] >> 5);
            if len < 7 || len > h.len() {
                return self.error(
                    offset,
                    format!(
                        "PID {pid:#x}: ADTS frame of {len} bytes, {} left in the PES",
                        h.len()
                    ),
                );
            }
            self.counts.audio_frames += 1;
            at += len;
        }
    }
}

/// The last run of digits in a file name, e.g. 12 in `stream7-12.ts`.
fn number_in_name(path: &Path) -> Option<u64> {
    let stem = path.file_stem()?.to_str()?;
    let end = stem.rfind(|c: char| c.is_ascii_digit())? + 1;
    let start = stem[..end]
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    stem[start..end].parse().ok()
}

/// The `*.ts` files of a directory, by the number in their names (then by name).
fn ts_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "ts") && p.is_file())
        .collect();
    sort_by_number(&mut files);
    Ok(files)
}

fn sort_by_number(files: &mut [PathBuf]) {
    files.sort_by_key(|p| (number_in_name(p).is_none(), number_in_name(p), p.clone()));
}

fn count_paths(paths: &[PathBuf]) -> Counts {
    let mut counts = Counts::default();
    for path in paths {
        let files = if path.is_dir() {
            match ts_files(path) {
                Ok(files) if files.is_empty() => {
                    counts.error(format!("{}: no .ts files", path.display()));
                    continue;
                }
                Ok(files) => files,
                Err(e) => {
                    counts.error(format!("{}: {e}", path.display()));
                    continue;
                }
            }
        } else {
            vec![path.clone()]
        };
        for file in files {
            match std::fs::read(&file) {
                Ok(data) => counts.add_file(&file.display().to_string(), &data),
                Err(e) => counts.error(format!("{}: {e}", file.display())),
            }
        }
    }
    counts
}

fn main() {
    let counts = count_paths(&Args::parse().paths);
    println!(
        "{}",
        json!({
            "files": counts.files,
            "video_frames": counts.video_frames,
            "audio_frames": counts.audio_frames,
            "audio_pes": counts.audio_pes,
            "errors": counts.errors,
            "errors_total": counts.errors_total,
        })
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One TS packet, the payload padded with adaptation-field stuffing.
    fn packet(pid: u16, start: bool, cc: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![SYNC, u8::from(start) << 6 | (pid >> 8) as u8, pid as u8];
        let stuffing = 184 - payload.len();
        if stuffing == 0 {
            p.push(0x10 | cc);
        } else {
            p.extend([0x30 | cc, (stuffing - 1) as u8]);
            if stuffing > 1 {
                p.push(0);
                p.resize(p.len() + stuffing - 2, 0xff);
            }
        }
        p.extend_from_slice(payload);
        assert_eq!(p.len(), PACKET);
        p
    }

    /// Pointer field, section header, body, (unchecked) CRC.
    fn psi(table: u8, body: &[u8]) -> Vec<u8> {
        let len = 5 + body.len() + 4;
        let mut s = vec![
            0,
            table,
            0xb0 | (len >> 8) as u8,
            len as u8,
            0,
            1,
            0xc1,
            0,
            0,
        ];
        s.extend_from_slice(body);
        s.extend([0; 4]);
        s
    }

    fn adts(len: usize) -> Vec<u8> {
        let mut f = vec![0; len];
        f[..7].copy_from_slice(&[0xff, 0xf1, 0x50, 0x80, 0, 0x1f, 0xfc]);
        f[3] |= (len >> 11) as u8 & 3;
        f[4] = (len >> 3) as u8;
        f[5] |= ((len & 7) << 5) as u8;
        f
    }

    fn pes(stream_id: u8, payload: &[u8]) -> Vec<u8> {
        let len = 3 + payload.len();
        let mut p = vec![0, 0, 1, stream_id, (len >> 8) as u8, len as u8, 0x80, 0, 0];
        p.extend_from_slice(payload);
        p
    }

    /// PAT, PMT (H.264 on 0x101, AAC on 0x102), a video PES over two packets, an audio PES of
    /// three ADTS frames over two packets, a second video PES.
    fn stream(audio: &[u8]) -> Vec<Vec<u8>> {
        let pmt = [
            0xe1, 0x01, 0xf0, 0, 0x1b, 0xe1, 0x01, 0xf0, 0, 0x0f, 0xe1, 0x02, 0xf0, 0,
        ];
        let video = pes(0xe0, &[0, 0, 0, 1, 0x09, 0xf0]);
        let audio = pes(0xc0, audio);
        vec![
            packet(0, true, 0, &psi(0, &[0, 1, 0xe1, 0])),
            packet(0x100, true, 0, &psi(2, &pmt)),
            packet(0x101, true, 0, &video),
            packet(0x101, false, 1, &[0x55; 100]),
            packet(0x102, true, 0, &audio[..184]),
            packet(0x102, false, 1, &audio[184..]),
            packet(0x101, true, 2, &video),
        ]
    }

    fn count(data: &[u8]) -> Counts {
        let mut counts = Counts::default();
        counts.add_file("t.ts", data);
        counts
    }

    fn three_frames() -> Vec<u8> {
        [adts(100), adts(120), adts(80)].concat()
    }

    #[test]
    fn counts_video_pes_and_adts_frames_reassembled_over_packets() {
        let c = count(&stream(&three_frames()).concat());
        assert_eq!((c.video_frames, c.audio_frames, c.audio_pes), (2, 3, 1));
        assert!(c.errors.is_empty(), "{:?}", c.errors);
    }

    #[test]
    fn garbage_broken_adts_and_partial_packets_are_errors() {
        let mut packets = stream(&three_frames());
        packets.insert(3, b"garbage!!!".to_vec());
        let mut data = packets.concat();
        data.extend_from_slice(&[SYNC, 1, 2]);
        let c = count(&data);
        assert_eq!((c.video_frames, c.audio_frames), (2, 3));
        let text = c.errors.join("\n");
        assert!(
            text.contains("t.ts @564: lost sync, skipped 10 bytes"),
            "{text}"
        );
        assert!(text.contains("partial packet of 3 bytes"), "{text}");

        let mut audio = three_frames();
        audio[100] = 0; // the second frame's sync
        let c = count(&stream(&audio).concat());
        assert_eq!(c.audio_frames, 1);
        assert!(
            c.errors[0].contains("broken ADTS sync 109 bytes into the PES"),
            "{:?}",
            c.errors
        );

        let c = count(&[0x12; 1000]);
        assert_eq!((c.files, c.video_frames, c.audio_frames), (1, 0, 0));
        assert_eq!(c.errors.len(), 2, "{:?}", c.errors); // no sync, no PMT
    }

    #[test]
    fn truncated_or_damaged_input_never_panics() {
        let data = stream(&three_frames()).concat();
        for len in 0..data.len() {
            count(&data[..len]);
        }
        let mut seed = 12345u32;
        for _ in 0..2000 {
            let mut d = data.clone();
            for _ in 0..4 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let i = (seed >> 8) as usize % d.len();
                d[i] = (seed >> 3) as u8;
            }
            count(&d);
        }
    }

    #[test]
    fn files_sort_by_the_number_in_their_name() {
        let mut files: Vec<PathBuf> = [
            "stream7-10.ts",
            "x.ts",
            "stream7-9.ts",
            "2.ts",
            "stream7-11.ts",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        sort_by_number(&mut files);
        let names: Vec<_> = files.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            names,
            [
                "2.ts",
                "stream7-9.ts",
                "stream7-10.ts",
                "stream7-11.ts",
                "x.ts"
            ]
        );
    }
}
