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

use hls::{LatencyMode, Packager, Segment, SegmentInfo, SegmenterConfig};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, info_span, warn, Instrument};

use crate::ingest::{
    Admission, IngestEvent, IngestProtocol, IngestSender, PublishGrant, PublishRejection,
    PublishRequest,
};
use crate::live::LiveView;
use crate::store_glue::{self, StreamInfo};

/// Settings of the session manager.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Segments listed in the live media playlist.
    pub live_window: usize,
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
            recording: Recording { dir: recording_dir },
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
    async fn run(self, mut rx: mpsc::Receiver<IngestEvent>) {
        let config = &self.manager.inner.config;
        let mut segmenter = SegmenterConfig::for_latency(if self.stream.reduced_latency {
            LatencyMode::Reduced
        } else {
            LatencyMode::Standard
        });
        segmenter.max_segment_duration = config.max_segment_duration.max(segmenter.target_duration);
        let mut packager = Packager::new(segmenter, config.live_window);
        let recording = &self.recording;
        info!("publisher connected");
        let mut active = false;
        loop {
            tokio::select! {
                event = rx.recv() => {
                    let Some(IngestEvent::Media(event)) = event else { break };
                    match packager.handle_event(event, SystemTime::now()) {
                        Ok(Some(segment)) => {
                            self.publish(&packager, &segment, recording).await;
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
                () = self.kick.cancelled() => break,
            }
        }
        // Stop taking media; close and write the open segment.
        rx.close();
        if let Some(segment) = packager.finish() {
            self.publish(&packager, &segment, recording).await;
        }
        let uri = |s: &SegmentInfo| format!("{}.ts", s.sequence);
        self.view.end(Some(packager.playlist().render_live(uri)));
        if !packager.playlist().segments().is_empty() {
            recording.write(None, &packager).await;
        }
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
            segments = packager.playlist().segments().len(),
            frames_before_keyframe = stats.frames_before_keyframe,
            "publisher disconnected"
        );
    }

    async fn publish(&self, packager: &Packager, segment: &Segment, recording: &Recording) {
        let uri = |s: &SegmentInfo| format!("{}.ts", s.sequence);
        let keep = self.manager.inner.config.live_window;
        self.view.publish(
            segment.sequence,
            segment.data.clone(),
            packager.playlist().render_live(uri),
            &packager.multivariant("stream.m3u8"),
            keep,
        );
        // Written before the segment can slide out of the window (playback falls back to it).
        recording.write(Some(segment), packager).await;
    }
}

/// The on-disk recording of one publish session.
struct Recording {
    dir: PathBuf,
}

impl Recording {
    /// Writes a segment (when given) and the event playlist in one trip to the blocking pool,
    /// without copying the segment (`Bytes` is shared).
    async fn write(&self, segment: Option<&Segment>, packager: &Packager) {
        let dir = self.dir.clone();
        let segment = segment.map(|s| (s.sequence, s.data.clone()));
        let playlist = packager
            .playlist()
            .render_event(|s| format!("{}.ts", s.sequence));
        let result = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            if let Some((sequence, data)) = segment {
                write_atomic(&dir.join(format!("{sequence}.ts")), &data)?;
            }
            write_atomic(&dir.join("stream.m3u8"), playlist.as_bytes())
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                warn!(error = %e, dir = %self.dir.display(), "could not write the recording")
            }
            Err(e) => warn!(error = %e, "recording writer failed"),
        }
    }
}

/// Writes via a temporary file and a rename, so a reader never sees half a file.
fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}
