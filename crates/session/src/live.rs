//! What viewers read while a stream is live: the current playlists and the segments of the
//! live window, served from memory. Written by the stream's session actor, read by the HTTP
//! handlers; a `std::sync::Mutex` guards it and is never held across an `.await`.
//!
//! Only the newest segments of the live window are kept in memory (all of it but the oldest,
//! by default). Older segments, and a segment that has slid out of the window (RFC 8216
//! 6.2.2: players a little behind still ask for it for a while), are read from the stream's
//! recording on disk, where every segment was written. A segment leaves memory while still
//! listed only once its recording was written: when the disk fails, the whole window stays in
//! memory.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;

use bytes::Bytes;

/// How many segments a [`LiveView`] keeps in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemoryLimits {
    /// Segments listed in the live playlist: never more in memory.
    pub(crate) listed: usize,
    /// Segments kept when the older ones are in the recording.
    pub(crate) in_memory: usize,
}

/// The in-memory live edge of one stream.
#[derive(Debug, Default)]
pub struct LiveView {
    inner: Mutex<LiveInner>,
    recording_dir: Option<PathBuf>,
    /// The broadcast this view shows; segment URLs carry it (`{broadcast_id}/{N}.ts`), so
    /// that a URL never names different bytes in a later broadcast.
    broadcast_id: String,
}

#[derive(Debug, Default)]
struct LiveInner {
    /// Multivariant playlist without its final URI line.
    multivariant_head: String,
    media_playlist: Bytes,
    /// Sequence number, bytes, and whether the recording of it was written.
    segments: VecDeque<(u64, Bytes, bool)>,
    ready: bool,
    ended: bool,
}

impl LiveView {
    /// An empty view: nothing playable yet.
    pub fn new() -> Self {
        LiveView::default()
    }

    /// An empty view of broadcast `broadcast_id`, whose older segments are found in
    /// `recording_dir` as `{N}.ts`.
    pub fn with_recording(recording_dir: PathBuf, broadcast_id: String) -> Self {
        LiveView {
            inner: Mutex::default(),
            recording_dir: Some(recording_dir),
            broadcast_id,
        }
    }

    /// The broadcast this view shows.
    pub fn broadcast_id(&self) -> &str {
        &self.broadcast_id
    }

    /// The URI of segment `N` in the live media playlist, relative to it:
    /// `{broadcast_id}/{N}.ts`.
    pub fn segment_uri(&self) -> impl Fn(u64) -> String + 'static {
        let broadcast = self.broadcast_id.clone();
        move |sequence| format!("{broadcast}/{sequence}.ts")
    }

    /// Where a segment that has left the in-memory window is on disk: only for sequence
    /// numbers below the window (never for segments that do not exist yet).
    pub fn recorded_segment(&self, sequence: u64) -> Option<PathBuf> {
        let dir = self.recording_dir.as_ref()?;
        let first = self.lock().segments.front().map(|(s, _, _)| *s)?;
        (sequence < first).then(|| dir.join(format!("{sequence}.ts")))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LiveInner> {
        // A panic while holding this lock cannot leave it inconsistent (plain assignments).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether at least one segment is playable.
    pub fn is_ready(&self) -> bool {
        self.lock().ready
    }

    /// Whether the stream has ended (its playlist carries `EXT-X-ENDLIST`).
    pub fn is_ended(&self) -> bool {
        self.lock().ended
    }

    /// The multivariant playlist for `playback_id` (its media playlist is
    /// `{playback_id}/stream.m3u8`), once a segment is playable.
    pub fn multivariant(&self, playback_id: &str) -> Option<String> {
        let inner = self.lock();
        inner
            .ready
            .then(|| format!("{}{playback_id}/stream.m3u8\n", inner.multivariant_head))
    }

    /// The live media playlist, once a segment is playable.
    pub fn media_playlist(&self) -> Option<Bytes> {
        let inner = self.lock();
        inner.ready.then(|| inner.media_playlist.clone())
    }

    /// A segment of the live window by media sequence number.
    pub fn segment(&self, sequence: u64) -> Option<Bytes> {
        let inner = self.lock();
        inner
            .segments
            .iter()
            .find(|(s, _, _)| *s == sequence)
            .map(|(_, data, _)| data.clone())
    }

    /// Publishes a new segment and the playlists that list it. Keeps at most `listed`
    /// segments, and no more than `in_memory` of those whose recording was written; returns
    /// the bytes of the segments it let go of (for recycling).
    pub(crate) fn publish(
        &self,
        sequence: u64,
        data: Bytes,
        media_playlist: String,
        multivariant: &str,
        limits: MemoryLimits,
    ) -> Vec<Bytes> {
        let head = multivariant
            .strip_suffix("stream.m3u8\n")
            .unwrap_or(multivariant)
            .to_owned();
        let mut inner = self.lock();
        inner.segments.push_back((sequence, data, false));
        let mut evicted = Vec::new();
        while let Some((_, _, persisted)) = inner.segments.front() {
            let len = inner.segments.len();
            if len > limits.listed || (len > limits.in_memory && *persisted) {
                evicted.extend(inner.segments.pop_front().map(|(_, data, _)| data));
            } else {
                break;
            }
        }
        inner.media_playlist = Bytes::from(media_playlist);
        inner.multivariant_head = head;
        inner.ready = true;
        evicted
    }

    /// Notes that segment `sequence` is in the recording (readable from disk).
    pub(crate) fn mark_recorded(&self, sequence: u64) {
        let mut inner = self.lock();
        if let Some(entry) = inner.segments.iter_mut().find(|(s, _, _)| *s == sequence) {
            entry.2 = true;
        }
    }

    /// Replaces the media playlist (e.g. with `EXT-X-ENDLIST` at the end).
    pub(crate) fn end(&self, media_playlist: Option<String>) {
        let mut inner = self.lock();
        if let Some(p) = media_playlist {
            inner.media_playlist = Bytes::from(p);
        }
        inner.ended = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_that_left_the_window_come_from_the_recording() {
        let view = LiveView::with_recording(PathBuf::from("/rec"), "b".to_owned());
        assert!(view.recorded_segment(0).is_none(), "nothing published yet");
        let limits = MemoryLimits {
            listed: 3,
            in_memory: 2,
        };
        for seq in 0..5 {
            view.publish(seq, Bytes::new(), String::new(), "stream.m3u8\n", limits);
            view.mark_recorded(seq);
        }
        assert_eq!(view.recorded_segment(2), Some(PathBuf::from("/rec/2.ts")));
        assert!(view.recorded_segment(3).is_none(), "in memory");
        assert!(view.recorded_segment(9).is_none(), "does not exist yet");
    }

    #[test]
    fn listed_segments_stay_in_memory_until_recorded() {
        let view = LiveView::with_recording(PathBuf::from("/rec"), "b".to_owned());
        let limits = MemoryLimits {
            listed: 3,
            in_memory: 2,
        };
        let publish = |seq: u64| {
            view.publish(
                seq,
                Bytes::from(vec![seq as u8; 4]),
                String::new(),
                "stream.m3u8\n",
                limits,
            )
        };
        assert!(publish(0).is_empty());
        assert!(publish(1).is_empty());
        // Not recorded yet: all three listed segments stay in memory.
        assert!(publish(2).is_empty());
        assert!(view.segment(0).is_some());
        // 0 and 1 recorded (2 failed): with the next publish 0 leaves the window and 1 memory.
        view.mark_recorded(0);
        view.mark_recorded(1);
        let evicted = publish(3);
        assert_eq!(evicted.len(), 2, "0 left the window, 1 is on disk");
        assert_eq!(evicted[0].as_ref(), &[0, 0, 0, 0]);
        assert!(view.segment(1).is_none());
        assert_eq!(view.recorded_segment(1), Some(PathBuf::from("/rec/1.ts")));
        assert!(view.segment(2).is_some() && view.segment(3).is_some());
        // A segment whose recording failed leaves only when it leaves the window.
        assert_eq!(publish(4).len(), 0, "2 not recorded: kept while listed");
        assert_eq!(publish(5).len(), 1, "2 left the window");
        assert!(view.segment(2).is_none() && view.segment(3).is_some());
    }

    #[test]
    fn serves_nothing_until_the_first_segment() {
        let view = LiveView::new();
        assert!(view.media_playlist().is_none());
        assert!(view.multivariant("pid").is_none());
        for seq in 0..5 {
            view.publish(
                seq,
                Bytes::from(vec![seq as u8; 4]),
                format!("#EXTM3U\n{seq}\n"),
                "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nstream.m3u8\n",
                MemoryLimits {
                    listed: 3,
                    in_memory: 3,
                },
            );
        }
        assert_eq!(
            view.multivariant("abc").unwrap(),
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nabc/stream.m3u8\n"
        );
        assert!(view.segment(1).is_none());
        assert_eq!(view.segment(4).unwrap().as_ref(), &[4, 4, 4, 4]);
        // Without a recording, nothing outside the window.
        assert!(view.recorded_segment(1).is_none());
        assert_eq!(view.media_playlist().unwrap().as_ref(), b"#EXTM3U\n4\n");
    }
}
