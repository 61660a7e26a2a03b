//! The session manager: admits publishers against the store and keeps the registry of live
//! broadcasts, one [`actor`](crate::actor) each.
//!
//! A broadcast's actor lives from the admission of an encoder for an idle live stream until
//! the stream goes idle (see [`crate::lifecycle`]): an encoder that reconnects inside the
//! reconnect window attaches to the running actor instead of starting another, and an
//! encoder whose predecessor's connection went silent (no media for
//! [`SessionConfig::stale_publisher_after`]) takes its place. API commands (complete,
//! disable, delete, reset-stream-key) are sent to the actor, which is the only writer of the
//! stream's status while a broadcast runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use store::{PlaybackPolicy, Store};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, info_span, warn, Instrument};

use crate::actor::{self, Actor, Command, Control, Publisher, CONTROL_CHANNEL_CAPACITY};
use crate::asset_media::MediaMeter;
use crate::ingest::{
    Admission, IngestSender, PublishGrant, PublishRejection, PublishRequest, SrtAdmission,
};
use crate::lifecycle::{JoinError, Lifecycle, State};
use crate::live::LiveView;
use crate::recording::Recording;
use crate::slate_cache::SlateCache;
use crate::slate_control::SlateControl;
use crate::slate_feed::SlateFeed;
use crate::store_glue::{self, StreamInfo};
use crate::vod::RecordedView;
use crate::writer::TransitionWriter;

/// Newest segments of the live window kept in memory: players at the live edge (hls.js and
/// AVPlayer start three target durations back) are served from memory; the oldest listed
/// segment comes from the recording, whose pages the kernel still caches.
pub const DEFAULT_SEGMENTS_IN_MEMORY: usize = hls::DEFAULT_WINDOW - 1;

/// A publisher that has delivered no media for this long loses its broadcast to a new
/// encoder presenting the same key (its TCP connection is often still open after a network
/// drop: no FIN, no RST). Encoders send media many times a second; a few seconds of silence
/// means it is gone.
pub const DEFAULT_STALE_PUBLISHER_AFTER: Duration = Duration::from_secs(5);

/// How long admission waits for a running broadcast to answer (it is writing to the store).
const ACTOR_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Where recordings are written (`{dir}/{live_stream_id}/{broadcast_id}/`).
    pub recordings_dir: PathBuf,
    /// See [`DEFAULT_STALE_PUBLISHER_AFTER`].
    pub stale_publisher_after: Duration,
    /// Slate starts when a connected encoder's media stalls for longer than this; `None`:
    /// two target durations of the stream.
    pub slate_stall_after: Option<Duration>,
    /// Where broadcasts report their series (`onair_live_stream_*`) and admission its
    /// refusals; a registry of its own by default.
    pub metrics: metrics::Metrics,
}

impl SessionConfig {
    /// Defaults, with recordings under `data_dir/recordings`.
    pub fn new(data_dir: &Path) -> Self {
        SessionConfig {
            live_window: hls::DEFAULT_WINDOW,
            segments_in_memory: DEFAULT_SEGMENTS_IN_MEMORY,
            max_segment_duration: hls::segmenter::DEFAULT_MAX_SEGMENT_DURATION,
            recordings_dir: data_dir.join("recordings"),
            stale_publisher_after: DEFAULT_STALE_PUBLISHER_AFTER,
            slate_stall_after: None,
            metrics: metrics::Metrics::new(),
        }
    }
}

/// A playback ID resolved: what it shows and its policy (`None` when unknown, or when the
/// lookup failed).
#[derive(Debug)]
pub struct ResolvedPlayback {
    /// What it shows.
    pub target: PlaybackTarget,
    /// `public`, `signed` or `drm`.
    pub policy: Option<PlaybackPolicy>,
}

/// What a playback ID leads to.
#[derive(Debug, Clone)]
pub enum PlaybackTarget {
    /// A live stream with a broadcast (its view may not be playable yet).
    Live(Arc<LiveView>),
    /// An asset's playback ID: the broadcast's recording, growing while it is live.
    Recorded(RecordedView),
    /// A known playback ID whose live stream is not active.
    NotActive,
    /// No such playback ID.
    Unknown,
}

/// The publisher attached to a running broadcast, as admission sees it.
#[derive(Debug)]
struct PublisherSlot {
    kick: CancellationToken,
    /// Unix ms of its last media (its admission time until media arrives).
    last_media: Arc<AtomicU64>,
}

#[derive(Debug)]
struct Running {
    generation: u64,
    control: mpsc::Sender<Control>,
    view: Arc<LiveView>,
    playback_ids: Vec<String>,
    publisher: Option<PublisherSlot>,
    /// Cancelled when the actor has finished.
    done: CancellationToken,
}

#[derive(Debug)]
struct Inner {
    store: store::SqliteStore,
    config: SessionConfig,
    /// Live stream id -> its running broadcast. Guarded by a sync mutex, never held across
    /// await.
    running: Mutex<HashMap<String, Running>>,
    /// Playback id -> live view of a running broadcast, and the ID's policy.
    playback: Mutex<HashMap<String, (Arc<LiveView>, PlaybackPolicy)>>,
    next_generation: AtomicU64,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// Rendered slates, shared by broadcasts.
    slates: Arc<SlateCache>,
    /// Set by [`SessionManager::drain`]: no new broadcast starts.
    draining: AtomicBool,
}

/// Handle to the session manager; cheap to clone.
#[derive(Debug, Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A new broadcast identifier (also the name of its recording directory).
fn new_broadcast_id() -> String {
    store::new_broadcast_id()
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
                next_generation: AtomicU64::new(1),
                shutdown,
                tracker: TaskTracker::new(),
                slates: Arc::default(),
                draining: AtomicBool::new(false),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &store::SqliteStore {
        &self.inner.store
    }

    /// Its settings (the API removes a deleted asset's media under `recordings_dir`).
    pub fn config(&self) -> &SessionConfig {
        &self.inner.config
    }

    pub(crate) fn slate_cache(&self) -> Arc<SlateCache> {
        Arc::clone(&self.inner.slates)
    }

    pub(crate) fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Waits until every session has ended and written its last segment (after shutdown).
    pub async fn wait(&self) {
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    /// Reconciles what a previous run left behind (call once at start, before the listeners
    /// open): every live stream whose lifecycle is not idle lost its encoder with that run.
    /// It becomes `disconnected` now (if it was not already), its reconnect window runs from
    /// now, then it goes `idle` and its recording is ended with `EXT-X-ENDLIST`. Returns how
    /// many broadcasts were restored.
    pub async fn recover(&self) -> Result<usize, String> {
        let unfinished = self
            .inner
            .store
            .unfinished_lifecycles()
            .await
            .map_err(|e| e.to_string())?;
        let now = Instant::now();
        let mut restored = 0;
        let mut restored_dirs = std::collections::HashSet::new();
        for (stream, record, broadcast) in unfinished {
            let state = store_glue::lifecycle_state(record.state);
            let stream = StreamInfo::from(stream);
            let broadcast_id = broadcast
                .as_ref()
                .map(|b| b.id.clone())
                .or(record.broadcast_id.clone())
                .unwrap_or_else(new_broadcast_id);
            let recording_dir = broadcast.as_ref().map_or_else(
                || self.recording_dir(&stream.id, &broadcast_id),
                |b| self.inner.config.recordings_dir.join(&b.recording_dir),
            );
            restored_dirs.insert(recording_dir.clone());
            let was_connected = state != State::Disconnected;
            let lifecycle = Lifecycle::restored(stream.lifecycle, was_connected, now);
            info!(live_stream_id = %stream.id, %broadcast_id, was = state.as_str(), "restoring an unfinished broadcast");
            let media = match self.inner.store.asset_media(&broadcast_id).await {
                Ok(media) => media.unwrap_or_default(),
                Err(e) => {
                    warn!(error = %e, %broadcast_id, "could not read the asset's media; its duration will be short");
                    store::AssetMedia::default()
                }
            };
            let meter = MediaMeter::restored(media);
            if self
                .spawn(
                    stream,
                    broadcast_id,
                    recording_dir,
                    lifecycle,
                    None,
                    Some(meter),
                )
                .is_some()
            {
                restored += 1;
            }
        }
        // A crash between a broadcast's first segment and the store write of its start (the
        // writes go through a queue) leaves a recording the store does not know: end those
        // too, so that no recording stays an open EVENT playlist forever.
        let dir = self.inner.config.recordings_dir.clone();
        match tokio::task::spawn_blocking(move || {
            crate::recording::end_orphans(&dir, &restored_dirs)
        })
        .await
        {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => info!(
                recordings = n,
                "unfinished recordings of unknown broadcasts ended"
            ),
            Ok(Err(e)) => warn!(error = %e, "could not scan the recordings for unfinished ones"),
            Err(e) => warn!(error = %e, "recordings scan failed"),
        }
        Ok(restored)
    }

    fn recording_dir(&self, live_stream_id: &str, broadcast_id: &str) -> PathBuf {
        self.inner
            .config
            .recordings_dir
            .join(live_stream_id)
            .join(broadcast_id)
    }

    /// Starts the actor of a broadcast and registers it, unless the stream already has one
    /// (`None`). Returns the registry entry's generation.
    fn spawn(
        &self,
        stream: StreamInfo,
        broadcast_id: String,
        recording_dir: PathBuf,
        lifecycle: Lifecycle,
        publisher: Option<Publisher>,
        // A broadcast restored after a restart, with what the previous run measured.
        restored: Option<MediaMeter>,
    ) -> Option<u64> {
        let (restored, meter) = match restored {
            Some(meter) => (true, meter),
            None => (false, MediaMeter::default()),
        };
        let generation = self.inner.next_generation.fetch_add(1, Ordering::Relaxed);
        let view = Arc::new(LiveView::with_recording(
            recording_dir.clone(),
            broadcast_id.clone(),
        ));
        let (control_tx, control_rx) = mpsc::channel(CONTROL_CHANNEL_CAPACITY);
        let done = CancellationToken::new();
        {
            let mut running = lock(&self.inner.running);
            if running.contains_key(&stream.id) {
                return None;
            }
            running.insert(
                stream.id.clone(),
                Running {
                    generation,
                    control: control_tx,
                    view: view.clone(),
                    playback_ids: stream.playback_ids.iter().map(|p| p.id.clone()).collect(),
                    publisher: publisher.as_ref().map(|p| PublisherSlot {
                        kick: p.kick.clone(),
                        last_media: p.last_media.clone(),
                    }),
                    done: done.clone(),
                },
            );
            let mut playback = lock(&self.inner.playback);
            for pid in &stream.playback_ids {
                playback.insert(pid.id.clone(), (view.clone(), pid.policy));
            }
        }
        let span =
            info_span!("live_stream", live_stream_id = %stream.id, broadcast_id = %broadcast_id);
        // The writer logs in the broadcast's span.
        let writer = {
            let _in_span = span.enter();
            TransitionWriter::spawn(self.inner.store.clone(), self.inner.shutdown.clone())
        };
        let packager = actor::packager_for(self, &stream);
        // A restored broadcast does not record any more (a reconnect starts a new one): no
        // slate for it.
        let slate = SlateFeed::new(
            SlateControl::new(
                stream.slate && !restored,
                self.inner
                    .config
                    .slate_stall_after
                    .unwrap_or(packager.target_duration() * 2),
            ),
            stream.reconnect_slate_url.clone(),
        );
        let actor = Actor {
            metrics: self.inner.config.metrics.stream(&stream.id),
            manager: self.clone(),
            packager,
            stream,
            broadcast_id,
            generation,
            lifecycle,
            view,
            recording: Recording::new(recording_dir),
            restored,
            publisher,
            timeline: Default::default(),
            control: control_rx,
            writer,
            done,
            meter,
            slate,
            content_started: false,
        };
        self.inner.tracker.spawn(actor.run().instrument(span));
        Some(generation)
    }

    /// Sends an API command to the live stream's broadcast, if it has one, and waits until it
    /// has been carried out (its status written). `false` when no broadcast is running.
    async fn command(&self, live_stream_id: &str, command: Command) -> bool {
        let (reply, answer) = oneshot::channel();
        let sent = {
            let running = lock(&self.inner.running);
            match running.get(live_stream_id) {
                Some(r) => r
                    .control
                    .try_send(Control::Command { command, reply })
                    .is_ok(),
                None => return false,
            }
        };
        if !sent {
            warn!(
                live_stream_id,
                ?command,
                "broadcast busy: command not delivered"
            );
            return false;
        }
        let _ = tokio::time::timeout(ACTOR_ANSWER_TIMEOUT, answer).await;
        true
    }

    /// `PUT …/complete`: ends the running broadcast now (idle without waiting for the
    /// reconnect window). `false` when none is running.
    pub async fn complete(&self, live_stream_id: &str) -> bool {
        self.command(live_stream_id, Command::Complete).await
    }

    /// The stream was disabled (already written to the store): its broadcast ends now.
    pub async fn disable(&self, live_stream_id: &str) -> bool {
        self.command(live_stream_id, Command::Disable).await
    }

    /// The stream was deleted: its broadcast ends now.
    pub async fn delete(&self, live_stream_id: &str) -> bool {
        self.command(live_stream_id, Command::Delete).await
    }

    /// The stream key was reset: the encoder on the old key is disconnected; the broadcast
    /// waits for its reconnect window as after any drop.
    pub async fn reset_stream_key(&self, live_stream_id: &str) -> bool {
        self.command(live_stream_id, Command::ResetStreamKey).await
    }

    /// A playback ID was added to a live stream: if the stream is live, the ID plays it at
    /// once (not only from its next broadcast).
    pub fn playback_id_added(&self, live_stream_id: &str, playback_id: &store::PlaybackId) {
        let mut running = lock(&self.inner.running);
        if let Some(r) = running.get_mut(live_stream_id) {
            r.playback_ids.push(playback_id.id.clone());
            lock(&self.inner.playback)
                .insert(playback_id.id.clone(), (r.view.clone(), playback_id.policy));
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
                .is_some_and(|(v, _)| Arc::ptr_eq(v, &r.view))
            {
                playback.remove(playback_id);
            }
        }
    }

    /// Stops starting broadcasts: from now on a publisher whose live stream has no running
    /// broadcast is refused with [`PublishRejection::Draining`]. Running broadcasts go on, an
    /// encoder may reconnect to one within its reconnect window, playback is unchanged. There
    /// is no way back (a drained gateway is about to exit).
    pub fn drain(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    /// Whether [`SessionManager::drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }

    /// Live streams with a running broadcast (connected or waiting for a reconnect).
    pub fn running(&self) -> usize {
        lock(&self.inner.running).len()
    }

    /// Live streams with an encoder connected right now.
    pub fn publishing(&self) -> usize {
        lock(&self.inner.running)
            .values()
            .filter(|r| r.publisher.is_some())
            .count()
    }

    /// Resolves a playback ID for the HTTP layer.
    pub async fn playback(&self, playback_id: &str) -> PlaybackTarget {
        self.resolve_playback(playback_id).await.target
    }

    /// Resolves a playback ID for the HTTP layer, with its policy.
    pub async fn resolve_playback(&self, playback_id: &str) -> ResolvedPlayback {
        if let Some((view, policy)) = lock(&self.inner.playback).get(playback_id) {
            return ResolvedPlayback {
                target: PlaybackTarget::Live(view.clone()),
                policy: Some(*policy),
            };
        }
        match store_glue::playback_owner(&self.inner.store, playback_id).await {
            Ok(store_glue::Owner::LiveStream(policy)) => ResolvedPlayback {
                target: PlaybackTarget::NotActive,
                policy: Some(policy),
            },
            Ok(store_glue::Owner::Asset(a)) => ResolvedPlayback {
                policy: Some(a.playback_id.policy),
                target: PlaybackTarget::Recorded(RecordedView::new(
                    a.asset.id,
                    self.inner.config.recordings_dir.join(&a.recording_dir),
                    a.media,
                    a.asset.is_live,
                )),
            },
            Ok(store_glue::Owner::None) => ResolvedPlayback {
                target: PlaybackTarget::Unknown,
                policy: None,
            },
            Err(e) => {
                warn!(error = %e, "playback ID lookup failed");
                ResolvedPlayback {
                    target: PlaybackTarget::NotActive,
                    policy: None,
                }
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
        let (media, rx) = IngestSender::channel();
        let mut publisher = Publisher {
            rx,
            kick: kick.clone(),
            protocol: request.protocol,
            peer: request.peer,
            last_media: Arc::new(AtomicU64::new(actor::unix_ms(SystemTime::now()))),
        };
        let last_media = publisher.last_media.clone();
        // A running broadcast may be ending as we arrive: then wait for it and start anew.
        for _ in 0..3 {
            let step = {
                let mut running = lock(&self.inner.running);
                match running.get_mut(&stream.id) {
                    None => None,
                    Some(r) => {
                        if let Some(current) = &r.publisher {
                            let silent_ms = actor::unix_ms(SystemTime::now())
                                .saturating_sub(current.last_media.load(Ordering::Relaxed));
                            if Duration::from_millis(silent_ms)
                                < self.inner.config.stale_publisher_after
                            {
                                return Err(PublishRejection::AlreadyPublishing);
                            }
                            info!(live_stream_id = %stream.id, silent_ms, "replacing a stale publisher");
                            current.kick.cancel();
                        }
                        // Claim the slot now: a second encoder racing this one sees a fresh
                        // publisher and is refused.
                        r.publisher = Some(PublisherSlot {
                            kick: kick.clone(),
                            last_media: publisher.last_media.clone(),
                        });
                        Some((r.control.clone(), r.generation))
                    }
                }
            };
            let Some((control, generation)) = step else {
                if self.is_draining() {
                    return Err(PublishRejection::Draining);
                }
                // No broadcast running: this encoder begins one. (Registered under the lock
                // again; a racing encoder finds it there.)
                if !self.start_broadcast(&stream, publisher) {
                    return Err(PublishRejection::AlreadyPublishing);
                }
                return self.granted(&stream, media, kick).await;
            };
            let (reply, answer) = oneshot::channel();
            if control
                .try_send(Control::Attach { publisher, reply })
                .is_err()
            {
                self.publisher_left(&stream.id, generation, &last_media);
                return Err(PublishRejection::Internal(
                    "live stream session is busy".into(),
                ));
            }
            match tokio::time::timeout(ACTOR_ANSWER_TIMEOUT, answer).await {
                Ok(Ok(Ok(()))) => return self.granted(&stream, media, kick).await,
                Ok(Ok(Err((JoinError::Ended, p)))) => {
                    // The broadcast ended as we arrived: wait for its actor to
                    // finish writing, then begin a new broadcast.
                    publisher = p;
                    let done = lock(&self.inner.running)
                        .get(&stream.id)
                        .filter(|r| r.generation == generation)
                        .map(|r| r.done.clone());
                    if let Some(done) = done {
                        let _ = tokio::time::timeout(ACTOR_ANSWER_TIMEOUT, done.cancelled()).await;
                    }
                }
                Ok(Ok(Err((JoinError::Busy, _)))) => {
                    self.publisher_left(&stream.id, generation, &last_media);
                    return Err(PublishRejection::AlreadyPublishing);
                }
                Ok(Err(_)) | Err(_) => {
                    self.publisher_left(&stream.id, generation, &last_media);
                    return Err(PublishRejection::Internal(
                        "live stream session did not answer".into(),
                    ));
                }
            }
        }
        Err(PublishRejection::Internal(
            "the previous broadcast is still ending".into(),
        ))
    }

    /// Starts a new broadcast for `stream` with its first publisher; `false` if another
    /// encoder started one first.
    fn start_broadcast(&self, stream: &StreamInfo, publisher: Publisher) -> bool {
        let broadcast_id = new_broadcast_id();
        let recording_dir = self.recording_dir(&stream.id, &broadcast_id);
        let mut lifecycle = Lifecycle::new(stream.lifecycle);
        // A new lifecycle always accepts its first encoder.
        let _ = lifecycle.handle_connected(publisher.protocol, Instant::now());
        info!(live_stream_id = %stream.id, %broadcast_id, peer = %publisher.peer, "new broadcast");
        self.spawn(
            stream.clone(),
            broadcast_id,
            recording_dir,
            lifecycle,
            Some(publisher),
            None,
        )
        .is_some()
    }

    /// The grant, unless a disable, key reset or delete raced the admission (they write the
    /// store first, then tell the running broadcast): then the new publisher is withdrawn.
    async fn granted(
        &self,
        stream: &StreamInfo,
        media: IngestSender,
        kick: CancellationToken,
    ) -> Result<PublishGrant, PublishRejection> {
        match store_glue::still_admissible(&self.inner.store, &stream.id, &stream.stream_key).await
        {
            Ok(true) => Ok(PublishGrant {
                live_stream_id: stream.id.clone(),
                media,
                kick,
            }),
            Ok(false) => {
                kick.cancel();
                Err(PublishRejection::Disabled)
            }
            Err(e) => {
                kick.cancel();
                Err(PublishRejection::Internal(e))
            }
        }
    }

    /// The actor let its publisher go: the slot is free (unless another already took it).
    pub(crate) fn publisher_left(
        &self,
        live_stream_id: &str,
        generation: u64,
        last_media: &Arc<AtomicU64>,
    ) {
        let mut running = lock(&self.inner.running);
        if let Some(r) = running.get_mut(live_stream_id) {
            if r.generation == generation
                && r.publisher
                    .as_ref()
                    .is_some_and(|p| Arc::ptr_eq(&p.last_media, last_media))
            {
                r.publisher = None;
            }
        }
    }

    /// The actor of generation `generation` has finished: its entry and playback IDs go.
    pub(crate) fn remove(&self, live_stream_id: &str, generation: u64) {
        let mut running = lock(&self.inner.running);
        if running
            .get(live_stream_id)
            .is_some_and(|r| r.generation == generation)
        {
            if let Some(r) = running.remove(live_stream_id) {
                let mut playback = lock(&self.inner.playback);
                for pid in &r.playback_ids {
                    if playback
                        .get(pid)
                        .is_some_and(|(v, _)| Arc::ptr_eq(v, &r.view))
                    {
                        playback.remove(pid);
                    }
                }
                // Marked under the lock: admission that finds no entry starts anew.
                r.done.cancel();
            }
        }
    }
}

impl Admission for SessionManager {
    async fn publish(&self, request: PublishRequest) -> Result<PublishGrant, PublishRejection> {
        let listener = request.protocol.listener_name();
        let answer = self.admit(request).await;
        if let Err(rejection) = &answer {
            self.inner
                .config
                .metrics
                .listener_refused(listener, rejection.reason());
        }
        answer
    }
}

impl SrtAdmission for SessionManager {
    async fn srt_passphrase(&self, stream_key: &str) -> Result<String, PublishRejection> {
        let answer = self.srt_passphrase_of(stream_key).await;
        if let Err(rejection) = &answer {
            self.inner
                .config
                .metrics
                .listener_refused("srt", rejection.reason());
        }
        answer
    }
}

impl SessionManager {
    async fn srt_passphrase_of(&self, stream_key: &str) -> Result<String, PublishRejection> {
        if self.inner.shutdown.is_cancelled() {
            return Err(PublishRejection::ShuttingDown);
        }
        let stream = store_glue::find_by_stream_key(&self.inner.store, stream_key)
            .await
            .map_err(PublishRejection::Internal)?
            .ok_or(PublishRejection::UnknownStreamKey)?;
        if stream.disabled {
            return Err(PublishRejection::Disabled);
        }
        // The same tests as `admit`: draining starts no broadcast, and a publisher that sent
        // media recently holds the stream.
        let running = lock(&self.inner.running);
        let current = running.get(&stream.id);
        if current.is_none() && self.is_draining() {
            return Err(PublishRejection::Draining);
        }
        let busy = current
            .and_then(|r| r.publisher.as_ref())
            .is_some_and(|current| {
                let silent_ms = actor::unix_ms(SystemTime::now())
                    .saturating_sub(current.last_media.load(Ordering::Relaxed));
                Duration::from_millis(silent_ms) < self.inner.config.stale_publisher_after
            });
        if busy {
            return Err(PublishRejection::AlreadyPublishing);
        }
        Ok(stream.srt_passphrase)
    }
}
