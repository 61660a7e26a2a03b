//! The on-disk recording of one broadcast: `{N}.ts` files and an event playlist,
//! `stream.m3u8`, in the broadcast's directory (`{recordings}/{live_stream_id}/{broadcast_id}/`).
//! One recording spans every reconnect of the broadcast (each after a gap starts with
//! `EXT-X-DISCONTINUITY`) and is ended with `EXT-X-ENDLIST` when the broadcast goes idle.

use std::path::{Path, PathBuf};

use hls::{MediaPlaylist, Segment, SegmentInfo};
use tracing::{info, warn};

/// The recording: `{N}.ts` files and an event playlist, `stream.m3u8`, that grows by appending each segment's lines (constant work per segment
/// however long the stream runs), and becomes a VOD playlist with `EXT-X-ENDLIST` at the end.
pub(crate) struct Recording {
    dir: PathBuf,
    /// `EXT-X-TARGETDURATION` of the playlist on disk, once it exists.
    written_target: Option<u64>,
    /// A segment could not be written: the next one starts after a gap.
    gap: bool,
}

impl Recording {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Recording {
            dir,
            written_target: None,
            gap: false,
        }
    }

    /// Writes a segment and its playlist lines in one trip to the blocking pool, without
    /// copying the segment (`Bytes` is shared). Returns whether both were written.
    pub(crate) async fn write(&mut self, segment: &Segment, playlist: &MediaPlaylist) -> bool {
        let mut info = SegmentInfo::from(segment);
        // Players must not read across a missing segment as if the timeline were continuous.
        info.discontinuity |= self.gap && self.written_target.is_some();
        let uri = format!("{}.ts", segment.sequence);
        let target = playlist.target_duration_secs();
        let update = match self.written_target {
            None => PlaylistUpdate::Create(format!(
                "{}{}",
                playlist.render_event_head(segment.sequence),
                playlist.render_entry(&info, true, &uri)
            )),
            Some(written) if target > written => PlaylistUpdate::Retarget {
                target,
                entry: playlist.render_entry(&info, false, &uri),
            },
            Some(_) => PlaylistUpdate::Append(playlist.render_entry(&info, false, &uri)),
        };
        // The directory is made with the first segment (and again after a failure, in case
        // that was what went missing), not checked on every write.
        let make_dir = self.written_target.is_none() || self.gap;
        let dir = self.dir.clone();
        let data = segment.data.clone();
        let result = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if make_dir {
                create_private_dir(&dir)?;
            }
            write_atomic(&dir.join(uri), &data)?;
            update.apply(&dir.join("stream.m3u8"))
        })
        .await;
        let ok = self.report(result);
        if ok {
            self.written_target = Some(target);
            self.gap = false;
        } else {
            self.gap = true;
        }
        ok
    }

    /// Ends the playlist: `VOD` with `EXT-X-ENDLIST` (one rewrite of the file per broadcast).
    pub(crate) async fn end(&mut self, playlist: &MediaPlaylist) {
        let Some(written) = self.written_target else {
            return; // nothing was recorded
        };
        let target = playlist.target_duration_secs().max(written);
        let path = self.dir.join("stream.m3u8");
        let result = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let text = std::fs::read_to_string(&path)?;
            let mut text = set_target_duration(&text, target).replacen(
                "#EXT-X-PLAYLIST-TYPE:EVENT\n",
                "#EXT-X-PLAYLIST-TYPE:VOD\n",
                1,
            );
            text.push_str("#EXT-X-ENDLIST\n");
            write_atomic(&path, text.as_bytes())
        })
        .await;
        self.report(result);
    }

    /// Ends the recording of a broadcast that a previous run left unfinished (crash or
    /// shutdown): removes partial temporary files, drops a playlist entry that was cut short,
    /// and ends the playlist with `EXT-X-ENDLIST`. Idempotent.
    pub(crate) async fn end_restored(&self) {
        let dir = self.dir.clone();
        let result = tokio::task::spawn_blocking(move || end_restored(&dir)).await;
        if self.report(result) {
            info!(dir = %self.dir.display(), "unfinished recording ended");
        }
    }

    /// The media duration the playlist on disk lists (the sum of its `EXTINF`s); `None` if
    /// there is none.
    pub(crate) async fn recorded_secs(&self) -> Option<f64> {
        let text = tokio::fs::read_to_string(self.dir.join("stream.m3u8"))
            .await
            .ok()?;
        Some(listed_secs(&text))
    }

    fn report(&self, result: Result<std::io::Result<()>, tokio::task::JoinError>) -> bool {
        match result {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                warn!(error = %e, dir = %self.dir.display(), "could not write the recording");
                false
            }
            Err(e) => {
                warn!(error = %e, "recording writer failed");
                false
            }
        }
    }
}

/// The sum of a playlist's `EXTINF` durations, seconds.
fn listed_secs(playlist: &str) -> f64 {
    playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|l| l.split(',').next()?.trim().parse::<f64>().ok())
        .sum()
}

/// Ends every recording under `recordings_dir` (`{live_stream}/{broadcast}/stream.m3u8`)
/// that is not in `skip` and whose playlist has no `EXT-X-ENDLIST` (only its last bytes are
/// read). Returns how many were ended.
pub(crate) fn end_orphans(
    recordings_dir: &Path,
    skip: &std::collections::HashSet<PathBuf>,
) -> std::io::Result<usize> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    const END: &[u8] = b"#EXT-X-ENDLIST\n";
    let streams = match std::fs::read_dir(recordings_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut ended = 0;
    for stream in streams {
        let stream = stream?.path();
        if !stream.is_dir() {
            continue;
        }
        for broadcast in std::fs::read_dir(&stream)? {
            let dir = broadcast?.path();
            if skip.contains(&dir) {
                continue;
            }
            let Ok(mut file) = std::fs::File::open(dir.join("stream.m3u8")) else {
                continue;
            };
            let len = file.metadata()?.len();
            let mut tail = vec![0; END.len().min(len as usize)];
            file.seek(SeekFrom::Start(len - tail.len() as u64))?;
            file.read_exact(&mut tail)?;
            if tail != END {
                end_restored(&dir)?;
                ended += 1;
            }
        }
    }
    Ok(ended)
}

fn end_restored(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()), // nothing recorded
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            std::fs::remove_file(&path)?;
        }
    }
    let path = dir.join("stream.m3u8");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if text.ends_with("#EXT-X-ENDLIST\n") {
        return Ok(());
    }
    // Keep everything up to the last complete segment line (an append cut short by the crash
    // leaves tags without their URI, or half a line).
    let mut keep = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        offset += line.len();
        if line.ends_with('\n') && !line.starts_with('#') && !line.trim().is_empty() {
            keep = offset;
        }
    }
    if keep == 0 {
        return std::fs::remove_file(&path); // not one segment listed
    }
    let mut text = text[..keep].replacen(
        "#EXT-X-PLAYLIST-TYPE:EVENT\n",
        "#EXT-X-PLAYLIST-TYPE:VOD\n",
        1,
    );
    text.push_str("#EXT-X-ENDLIST\n");
    write_atomic(&path, text.as_bytes())
}

/// How the recording's playlist changes for one segment.
enum PlaylistUpdate {
    /// The first segment: head and entry.
    Create(String),
    /// The usual case: the entry is appended.
    Append(String),
    /// The segment raised the target duration: the head is rewritten (rare: a segment longer
    /// than any before it, e.g. an encoder's long GOP).
    Retarget { target: u64, entry: String },
}

impl PlaylistUpdate {
    fn apply(self, path: &Path) -> std::io::Result<()> {
        match self {
            PlaylistUpdate::Create(text) => write_atomic(path, text.as_bytes()),
            PlaylistUpdate::Append(entry) => {
                use std::io::Write as _;
                // One write of a few lines to a file opened for appending.
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(path)?
                    .write_all(entry.as_bytes())
            }
            PlaylistUpdate::Retarget { target, entry } => {
                let mut text = set_target_duration(&std::fs::read_to_string(path)?, target);
                text.push_str(&entry);
                write_atomic(path, text.as_bytes())
            }
        }
    }
}

/// The playlist with its `EXT-X-TARGETDURATION` set to `target`.
fn set_target_duration(text: &str, target: u64) -> String {
    const TAG: &str = "#EXT-X-TARGETDURATION:";
    let mut out = String::with_capacity(text.len() + 4);
    for line in text.split_inclusive('\n') {
        if line.starts_with(TAG) {
            out.push_str(TAG);
            out.push_str(&target.to_string());
            out.push('\n');
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Writes via a temporary file and a rename, so a reader never sees half a file. The file is
/// readable by the gateway's user only (0600): recordings are served through playback, which
/// applies the playback policy, never straight from disk.
fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(&tmp)?.write_all(data)?;
    std::fs::rename(&tmp, path)
}

/// Creates a directory and its missing parents, accessible by the gateway's user only (0700).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    #[cfg(unix)]
    #[test]
    fn recordings_are_private_to_the_gateway_user() {
        use std::os::unix::fs::PermissionsExt as _;
        let root =
            std::env::temp_dir().join(format!("onair-recording-modes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("a").join("b");
        super::create_private_dir(&dir).unwrap();
        let file = dir.join("0.ts");
        super::write_atomic(&file, b"x").unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root.join("a")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file), 0o600);
        std::fs::remove_dir_all(&root).unwrap();
    }

    use bytes::Bytes;

    use super::*;

    fn segment(sequence: u64, secs: f64) -> Segment {
        Segment {
            sequence,
            discontinuity: false,
            start_pts: 90_000,
            duration: (secs * 90_000.0) as u64,
            program_date_time: UNIX_EPOCH + Duration::from_secs(1_795_000_000 + sequence * 2),
            independent: true,
            video_frames: 60,
            audio_frames: 94,
            data: Bytes::from(vec![0x47; 188 * (sequence as usize + 1)]),
        }
    }

    #[test]
    fn listed_seconds_add_up_the_extinfs() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\n0.ts\n\
                    #EXT-X-DISCONTINUITY\n#EXTINF:1.500,\n1.ts\n#EXTINF:bad,\n2.ts\n";
        assert_eq!(listed_secs(text), 3.5);
        assert_eq!(listed_secs(""), 0.0);
    }

    #[tokio::test]
    async fn the_recording_playlist_is_appended_and_ends_as_vod() {
        let dir = std::env::temp_dir().join(format!("onair-recording-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut recording = Recording::new(dir.clone());
        let mut live = MediaPlaylist::live(Duration::from_secs(2), 3);
        let mut all = MediaPlaylist::new(Duration::from_secs(2), 3);
        // The fifth segment is long (an encoder's 7 s GOP): the target duration goes up.
        for (i, secs) in [2.0, 2.1, 2.0, 1.9, 7.2, 2.0, 2.0].into_iter().enumerate() {
            let s = segment(i as u64, secs);
            live.push(SegmentInfo::from(&s));
            all.push(SegmentInfo::from(&s));
            assert!(recording.write(&s, &live).await);
            let on_disk = std::fs::read_to_string(dir.join("stream.m3u8")).unwrap();
            assert_eq!(on_disk, all.render_event(|s| format!("{}.ts", s.sequence)));
            assert_eq!(std::fs::read(dir.join(format!("{i}.ts"))).unwrap(), s.data);
        }
        live.end();
        all.end();
        recording.end(&live).await;
        let on_disk = std::fs::read_to_string(dir.join("stream.m3u8")).unwrap();
        assert_eq!(on_disk, all.render_event(|s| format!("{}.ts", s.sequence)));
        assert!(on_disk.contains("#EXT-X-PLAYLIST-TYPE:VOD\n#") && on_disk.ends_with("ENDLIST\n"));
        assert!(on_disk.contains("#EXT-X-TARGETDURATION:7\n"), "{on_disk}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_segment_after_a_failed_write_follows_a_discontinuity() {
        let dir = std::env::temp_dir().join(format!("onair-recording-gap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut recording = Recording::new(dir.clone());
        let mut live = MediaPlaylist::live(Duration::from_secs(2), 3);
        let s0 = segment(0, 2.0);
        live.push(SegmentInfo::from(&s0));
        assert!(recording.write(&s0, &live).await);
        // Segment 1 cannot be written (its name is taken by a directory).
        std::fs::create_dir_all(dir.join("1.tmp")).unwrap();
        let s1 = segment(1, 2.0);
        live.push(SegmentInfo::from(&s1));
        assert!(!recording.write(&s1, &live).await);
        let s2 = segment(2, 2.0);
        live.push(SegmentInfo::from(&s2));
        assert!(recording.write(&s2, &live).await);
        let on_disk = std::fs::read_to_string(dir.join("stream.m3u8")).unwrap();
        assert!(!on_disk.contains("1.ts"), "{on_disk}");
        assert!(
            on_disk.contains("0.ts\n#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME"),
            "{on_disk}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn an_unfinished_recording_is_ended_after_a_crash() {
        let dir =
            std::env::temp_dir().join(format!("onair-recording-crash-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut recording = Recording::new(dir.clone());
        let mut live = MediaPlaylist::live(Duration::from_secs(2), 3);
        for i in 0..3 {
            let s = segment(i, 2.0);
            live.push(SegmentInfo::from(&s));
            assert!(recording.write(&s, &live).await);
        }
        // The crash: a temporary file and an entry cut short.
        std::fs::write(dir.join("3.tmp"), b"partial").unwrap();
        let playlist = dir.join("stream.m3u8");
        let mut text = std::fs::read_to_string(&playlist).unwrap();
        text.push_str("#EXTINF:2.0");
        std::fs::write(&playlist, &text).unwrap();

        let restored = Recording::new(dir.clone());
        restored.end_restored().await;
        restored.end_restored().await; // idempotent
        let text = std::fs::read_to_string(&playlist).unwrap();
        assert!(text.ends_with("2.ts\n#EXT-X-ENDLIST\n"), "{text}");
        assert_eq!(text.matches("ENDLIST").count(), 1);
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
        assert!(!dir.join("3.tmp").exists());
        let parsed = m3u8_rs::parse_media_playlist_res(text.as_bytes()).unwrap();
        assert!(parsed.end_list);
        assert_eq!(parsed.segments.len(), 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn orphan_recordings_are_ended_and_others_left_alone() {
        let root = std::env::temp_dir().join(format!("onair-orphans-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut live = MediaPlaylist::live(Duration::from_secs(2), 3);
        for name in ["orphan", "finished", "restored"] {
            let mut recording = Recording::new(root.join("ls").join(name));
            let s = segment(0, 2.0);
            live.push(SegmentInfo::from(&s));
            assert!(recording.write(&s, &live).await);
            if name == "finished" {
                recording.end(&live).await;
            }
        }
        let skip = std::collections::HashSet::from([root.join("ls").join("restored")]);
        assert_eq!(end_orphans(&root, &skip).unwrap(), 1);
        let read = |name: &str| {
            std::fs::read_to_string(root.join("ls").join(name).join("stream.m3u8")).unwrap()
        };
        assert!(read("orphan").ends_with("#EXT-X-ENDLIST\n"));
        assert_eq!(read("finished").matches("ENDLIST").count(), 1);
        assert!(!read("restored").contains("ENDLIST"), "its actor ends it");
        assert_eq!(end_orphans(&root, &skip).unwrap(), 0, "nothing left");
        assert_eq!(end_orphans(&root.join("missing"), &skip).unwrap(), 0);
        let _ = std::fs::remove_dir_all(&root);
    }
}
