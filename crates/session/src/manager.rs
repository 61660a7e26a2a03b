//! The session manager: admits publishers against the store and runs one actor per live
//! stream.
//!
//! The actor owns the stream's [`Packager`] (segmenter and playlists): it takes the
//! publisher's [`IngestEvent`]s, publishes every closed segment to the in-memory
//! [`LiveView`] that viewers read, writes it to the recording on disk, and moves the live
//! stream's status: `active` once the first segment is playable, `idle` when the encoder
//! leaves.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hls::{LatencyMode, MediaPlaylist, Packager, Segment, SegmentInfo, SegmenterConfig};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, info_span, warn, Instrument};

use crate::ingest::{
    Admission, IngestEvent, IngestProtocol, IngestSender, PublishGrant, PublishRejection,
    PublishRequest,
};
use crate::live::{LiveView, MemoryLimits};
use crate::store_glue::{self, StreamInfo};

/// Newest segments of the live window kept in memory: players at the live edge (hls.js and
/// AVPlayer start three target durations back) are served from memory; the oldest listed
/// segment comes from the recording, whose pages the kernel still caches.
pub const DEFAULT_SEGMENTS_IN_MEMORY: usize = hls::DEFAULT_WINDOW - 1;

/// Settings of the session manager.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Segments listed in the live media playlist.
    pub live_window: usize,
    /// Of those, how many of the newest are kept in memory once older ones are in the
    /// recording (the rest are read from disk; see [`LiveView`]).
    pub segments_in_memory: usize,
    /// Cut a segment without a keyframe once it is this long.
    pub max_segment_duration: Duration,
    /// Where recordings are written (`{dir}/{live_stream_id}/{started_ms}/`).
    pub recordings_dir: PathBuf,
}

impl SessionConfig {
    /// Defaults, with recordings under `data_dir/recordings`.
    pub fn new(data_dir: &Path) -> Self {
        SessionConfig {
            live_window: hls::DEFAULT_WINDOW,
            segments_in_memory: DEFAULT_SEGMENTS_IN_MEMORY,
            max_segment_duration: hls::segmenter::DEFAULT_MAX_SEGMENT_DURATION,
            recordings_dir: data_dir.join("recordings"),
        }
    }
}

/// What a playback ID leads to.
#[derive(Debug, Clone)]
pub enum PlaybackTarget {
    /// A live stream with a publisher (its view may not be playable yet).
    Live(Arc<LiveView>),
    /// A known playback ID whose live stream is not active.
    NotActive,
    /// No such playback ID.
    Unknown,
}

#[derive(Debug)]
struct Running {
    kick: CancellationToken,
    view: Arc<LiveView>,
    playback_ids: Vec<String>,
}

#[derive(Debug)]
struct Inner {
    store: store::SqliteStore,
    config: SessionConfig,
    /// Live stream id -> its running session. Guarded by a sync mutex, never held across await.
    running: Mutex<HashMap<String, Running>>,
    /// Playback id -> live view of a running session.
    playback: Mutex<HashMap<String, Arc<LiveView>>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

/// Handle to the session manager; cheap to clone.
#[derive(Debug, Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SessionManager {
    /// A manager over `store`; `shutdown` ends every session (segments closed and written).
    pub fn new(
        store: store::SqliteStore,
        config: SessionConfig,
        shutdown: CancellationToken,
    ) -> Self {
        SessionManager {
            inner: Arc::new(Inner {
                store,
                config,
                running: Mutex::new(HashMap::new()),
                playback: Mutex::new(HashMap::new()),
                shutdown,
                tracker: TaskTracker::new(),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &store::SqliteStore {
        &self.inner.store
    }

    /// Waits until every session has ended and written its last segment (after shutdown).
    pub async fn wait(&self) {
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    /// Disconnects the publisher of a live stream, if any (disable, key reset, deletion).
    pub fn disconnect(&self, live_stream_id: &str) -> bool {
        match lock(&self.inner.running).get(live_stream_id) {
            Some(r) => {
                r.kick.cancel();
                true
            }
            None => false,
        }
    }

    /// A playback ID was added to a live stream: if the stream is live, the ID plays it at
    /// once (not only from its next broadcast).
    pub fn playback_id_added(&self, live_stream_id: &str, playback_id: &str) {
        let mut running = lock(&self.inner.running);
        if let Some(r) = running.get_mut(live_stream_id) {
            r.playback_ids.push(playback_id.to_owned());
            lock(&self.inner.playback).insert(playback_id.to_owned(), r.view.clone());
        }
    }

    /// A playback ID was deleted: it stops playing the live stream at once.
    pub fn playback_id_removed(&self, live_stream_id: &str, playback_id: &str) {
        let mut running = lock(&self.inner.running);
        if let Some(r) = running.get_mut(live_stream_id) {
            r.playback_ids.retain(|p| p != playback_id);
            let mut playback = lock(&self.inner.playback);
            if playback
                .get(playback_id)
                .is_some_and(|v| Arc::ptr_eq(v, &r.view))
            {
                playback.remove(playback_id);
            }
        }
    }

    /// Live streams with a publisher right now.
    pub fn running(&self) -> usize {
        lock(&self.inner.running).len()
    }

    /// Resolves a playback ID for the HTTP layer.
    pub async fn playback(&self, playback_id: &str) -> PlaybackTarget {
        if let Some(view) = lock(&self.inner.playback).get(playback_id) {
            return PlaybackTarget::Live(view.clone());
        }
        match store_glue::playback_exists(&self.inner.store, playback_id).await {
            Ok(true) => PlaybackTarget::NotActive,
            Ok(false) => PlaybackTarget::Unknown,
            Err(e) => {
                warn!(error = %e, "playback ID lookup failed");
                PlaybackTarget::NotActive
            }
        }
    }

    async fn admit(&self, request: PublishRequest) -> Result<PublishGrant, PublishRejection> {
        if self.inner.shutdown.is_cancelled() {
            return Err(PublishRejection::ShuttingDown);
        }
        let stream = store_glue::find_by_stream_key(&self.inner.store, &request.stream_key)
            .await
            .map_err(PublishRejection::Internal)?
            .ok_or(PublishRejection::UnknownStreamKey)?;
        if stream.disabled {
            return Err(PublishRejection::Disabled);
        }
        let kick = self.inner.shutdown.child_token();
        let started_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let recording_dir = self
            .inner
            .config
            .recordings_dir
            .join(&stream.id)
            .join(started_ms.to_string());
        let view = Arc::new(LiveView::with_recording(recording_dir.clone()));
        {
            let mut running = lock(&self.inner.running);
            if running.contains_key(&stream.id) {
                return Err(PublishRejection::AlreadyPublishing);
            }
            running.insert(
                stream.id.clone(),
                Running {
                    kick: kick.clone(),
                    view: view.clone(),
                    playback_ids: stream.playback_ids.clone(),
                },
            );
        }
        {
            let mut playback = lock(&self.inner.playback);
            for pid in &stream.playback_ids {
                playback.insert(pid.clone(), view.clone());
            }
        }
        let (media, rx) = IngestSender::channel();
        let actor = Actor {
            recording: Recording::new(recording_dir),
            manager: self.clone(),
            stream: stream.clone(),
            protocol: request.protocol,
            view,
            kick: kick.clone(),
        };
        let span = info_span!("live_stream", live_stream_id = %stream.id, protocol = request.protocol.as_str());
        self.inner.tracker.spawn(actor.run(rx).instrument(span));
        Ok(PublishGrant {
            live_stream_id: stream.id,
            media,
            kick,
        })
    }

    fn remove(&self, live_stream_id: &str) {
        if let Some(r) = lock(&self.inner.running).remove(live_stream_id) {
            let mut playback = lock(&self.inner.playback);
            for pid in &r.playback_ids {
                if playback.get(pid).is_some_and(|v| Arc::ptr_eq(v, &r.view)) {
                    playback.remove(pid);
                }
            }
        }
    }
}

impl Admission for SessionManager {
    async fn publish(&self, request: PublishRequest) -> Result<PublishGrant, PublishRejection> {
        self.admit(request).await
    }
}

/// One live stream's session.
struct Actor {
    recording: Recording,
    manager: SessionManager,
    stream: StreamInfo,
    protocol: IngestProtocol,
    view: Arc<LiveView>,
    kick: CancellationToken,
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::Receiver<IngestEvent>) {
        let config = &self.manager.inner.config;
        let mut segmenter = SegmenterConfig::for_latency(if self.stream.reduced_latency {
            LatencyMode::Reduced
        } else {
            LatencyMode::Standard
        });
        segmenter.max_segment_duration = config.max_segment_duration.max(segmenter.target_duration);
        let mut packager = Packager::live(segmenter, config.live_window);
        info!("publisher connected");
        let mut active = false;
        // One registration with the kick token for the whole session, not one per event.
        let kick = self.kick.clone();
        let kicked = kick.cancelled();
        tokio::pin!(kicked);
        loop {
            tokio::select! {
                event = rx.recv() => {
                    let Some(IngestEvent::Media(event)) = event else { break };
                    match packager.handle_event(event, SystemTime::now()) {
                        Ok(Some(segment)) => {
                            self.publish(&mut packager, &segment).await;
                            if !active {
                                active = true;
                                if let Err(e) = store_glue::set_active(&self.manager.inner.store, &self.stream.id, self.protocol).await {
                                    warn!(error = %e, "could not mark the live stream active");
                                }
                                info!("live: first segment is playable");
                            }
                        }
                        Ok(None) => {}
                        Err(e) => warn!(error = %e, "media dropped"),
                    }
                }
                () = &mut kicked => break,
            }
        }
        // Stop taking media; close and write the open segment.
        rx.close();
        if let Some(segment) = packager.finish() {
            self.publish(&mut packager, &segment).await;
        }
        let uri = |s: &SegmentInfo| format!("{}.ts", s.sequence);
        self.view.end(Some(packager.playlist().render_live(uri)));
        self.recording.end(packager.playlist()).await;
        // Idle first, then free the slot: a publisher that reconnects at once is refused for
        // that instant rather than having its new broadcast marked idle.
        if let Err(e) =
            store_glue::set_idle_unless_disabled(&self.manager.inner.store, &self.stream.id).await
        {
            warn!(error = %e, "could not mark the live stream idle");
        }
        self.manager.remove(&self.stream.id);
        let stats = packager.segmenter().stats();
        info!(
            segments = packager.playlist().segment_count(),
            frames_before_keyframe = stats.frames_before_keyframe,
            recycled_buffers = stats.recycled_buffers,
            allocated_buffers = stats.allocated_buffers,
            grown_buffers = stats.grown_buffers,
            "publisher disconnected"
        );
    }

    async fn publish(&mut self, packager: &mut Packager, segment: &Segment) {
        let uri = |s: &SegmentInfo| format!("{}.ts", s.sequence);
        let config = &self.manager.inner.config;
        let limits = MemoryLimits {
            listed: config.live_window,
            in_memory: config.segments_in_memory.clamp(1, config.live_window),
        };
        let evicted = self.view.publish(
            segment.sequence,
            segment.data.clone(),
            packager.playlist().render_live(uri),
            &packager.multivariant("stream.m3u8"),
            limits,
        );
        for data in evicted {
            packager.recycle(data);
        }
        // Listed segments leave memory only once they are on disk (playback falls back to it).
        if self.recording.write(segment, packager.playlist()).await {
            self.view.mark_recorded(segment.sequence);
        }
    }
}

/// The on-disk recording of one publish session: `{N}.ts` files and an event playlist,
/// `stream.m3u8`, that grows by appending each segment's lines (constant work per segment
/// however long the stream runs), and becomes a VOD playlist with `EXT-X-ENDLIST` at the end.
struct Recording {
    dir: PathBuf,
    /// `EXT-X-TARGETDURATION` of the playlist on disk, once it exists.
    written_target: Option<u64>,
    /// A segment could not be written: the next one starts after a gap.
    gap: bool,
}

impl Recording {
    fn new(dir: PathBuf) -> Self {
        Recording {
            dir,
            written_target: None,
            gap: false,
        }
    }

    /// Writes a segment and its playlist lines in one trip to the blocking pool, without
    /// copying the segment (`Bytes` is shared). Returns whether both were written.
    async fn write(&mut self, segment: &Segment, playlist: &MediaPlaylist) -> bool {
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
                std::fs::create_dir_all(&dir)?;
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
    async fn end(&mut self, playlist: &MediaPlaylist) {
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

/// Writes via a temporary file and a rename, so a reader never sees half a file.
fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

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
}
