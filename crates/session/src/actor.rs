//! The actor of one broadcast: it drives the stream's [`Lifecycle`] and owns its packager,
//! live view and recording for the whole broadcast, across encoder reconnects.
//!
//! It `select!`s over the current publisher's channel (absent while disconnected), a bounded
//! control channel (a reconnecting encoder attaching, API commands), the lifecycle's next
//! timeout and shutdown. Media arrives in batches (see [`crate::ingest::MediaBatcher`]: about
//! ten wake-ups a second per publisher); the per-frame path is one packager call and a relaxed
//! atomic store (the publisher's last-media time, read by admission to spot a stale
//! publisher); the timer is re-armed only when the lifecycle's deadline changes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hls::{LatencyMode, Packager, Segment, SegmentInfo, SegmenterConfig};
use media::{DemuxEvent, StreamConfig, Track};
use metrics::DropReason;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::asset_media::MediaMeter;
use crate::ingest::{IngestEvent, IngestProtocol};
use crate::lifecycle::{JoinError, Lifecycle, Output, State};
use crate::live::{LiveView, MemoryLimits};
use crate::manager::SessionManager;
use crate::recording::Recording;
use crate::slate_feed::{self, SlateFeed};
use crate::store_glue::{StreamInfo, TransitionRecord};
use crate::timeline::Timeline;
use crate::writer::TransitionWriter;

/// Control messages queued for one actor; senders use `try_send` under the registry lock and
/// answer "busy" when it is full (a handful of API calls or encoders at once is the most a
/// live stream sees).
pub(crate) const CONTROL_CHANNEL_CAPACITY: usize = 16;

/// Media events handled per wake-up of the actor before it looks at its other inputs (a
/// batch that crosses it is finished first).
const MEDIA_BATCH: usize = 64;

/// An admitted encoder's end of the session.
#[derive(Debug)]
pub(crate) struct Publisher {
    pub rx: mpsc::Receiver<IngestEvent>,
    /// Cancelled to disconnect it.
    pub kick: CancellationToken,
    pub protocol: IngestProtocol,
    pub peer: SocketAddr,
    /// When its last media arrived (unix ms); shared with the registry.
    pub last_media: Arc<AtomicU64>,
}

/// An API command for the broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    Complete,
    Disable,
    Delete,
    ResetStreamKey,
}

/// What an actor is asked to do.
#[derive(Debug)]
pub(crate) enum Control {
    /// An encoder joins the broadcast; on refusal the publisher comes back with the answer.
    Attach {
        publisher: Publisher,
        reply: oneshot::Sender<Result<(), (JoinError, Publisher)>>,
    },
    /// An API command; answered once carried out (status written).
    Command {
        command: Command,
        reply: oneshot::Sender<()>,
    },
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One broadcast's actor.
pub(crate) struct Actor {
    /// This broadcast's series; dropped (and so removed) when the actor ends.
    pub metrics: metrics::StreamMetrics,
    pub manager: SessionManager,
    pub stream: StreamInfo,
    pub broadcast_id: String,
    /// Registry generation of this actor (removal only removes its own entry).
    pub generation: u64,
    pub lifecycle: Lifecycle,
    pub packager: Packager,
    pub view: Arc<LiveView>,
    pub recording: Recording,
    /// Restored after a restart: the recording is on disk from a previous run.
    pub restored: bool,
    pub publisher: Option<Publisher>,
    /// One timeline across the broadcast's connections.
    pub timeline: Timeline,
    pub control: mpsc::Receiver<Control>,
    /// Writes the lifecycle's transitions, in order, off the media path.
    pub writer: TransitionWriter,
    /// Cancelled once the actor has written its last transition and left the registry.
    pub done: CancellationToken,
    /// What the asset shows about the recording.
    pub meter: MediaMeter,
    /// Slate while the encoder is away or stalled.
    pub slate: SlateFeed,
    /// The current connection's media (or the encoder's media after slate) has reached the
    /// packager: its `recording_times` entry is open.
    pub content_started: bool,
}

/// The packager of a broadcast of `stream`.
pub(crate) fn packager_for(manager: &SessionManager, stream: &StreamInfo) -> Packager {
    let config = manager.config();
    let mut segmenter = SegmenterConfig::for_latency(if stream.reduced_latency {
        LatencyMode::Reduced
    } else {
        LatencyMode::Standard
    });
    segmenter.max_segment_duration = config.max_segment_duration.max(segmenter.target_duration);
    Packager::live(segmenter, config.live_window)
}

async fn next_event(publisher: &mut Option<Publisher>) -> Option<IngestEvent> {
    match publisher {
        Some(p) => p.rx.recv().await,
        None => std::future::pending().await,
    }
}

/// `audio_only`: the video track is dropped from the configuration and its frames.
fn audio_only(event: DemuxEvent) -> Option<DemuxEvent> {
    match event {
        DemuxEvent::Config(config) => Some(DemuxEvent::Config(StreamConfig {
            video: None,
            audio: config.audio,
        })),
        DemuxEvent::Frame(frame) if frame.track == Track::Video => None,
        other => Some(other),
    }
}

impl Actor {
    pub(crate) async fn run(mut self) {
        let shutdown = self.manager.shutdown_token();
        let shutting_down = shutdown.cancelled();
        tokio::pin!(shutting_down);
        let far = || tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
        let timer = tokio::time::sleep_until(far());
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        if self.publisher.is_some() {
            self.slate.control.handle_connected(Instant::now());
        }
        loop {
            self.apply_outputs().await;
            if self.lifecycle.is_ended() {
                break;
            }
            let deadline = match (
                self.lifecycle.poll_timeout(),
                self.slate.control.poll_timeout(),
            ) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if deadline != armed {
                armed = deadline;
                timer
                    .as_mut()
                    .reset(deadline.map_or_else(far, tokio::time::Instant::from_std));
            }
            tokio::select! {
                event = next_event(&mut self.publisher) => match event {
                    Some(message) => {
                        let mut handled = 0;
                        for event in message.into_events() {
                            self.handle_media(event).await;
                            handled += 1;
                        }
                        // Take what else is queued without going back through `select!`;
                        // bounded so that control messages and timers wait at most about
                        // this many frames.
                        while handled < MEDIA_BATCH {
                            let Some(Ok(message)) =
                                self.publisher.as_mut().map(|p| p.rx.try_recv())
                            else {
                                break;
                            };
                            for event in message.into_events() {
                                self.handle_media(event).await;
                                handled += 1;
                            }
                        }
                    }
                    None if shutdown.is_cancelled() => {
                        // The connection closed because the gateway is stopping (its kick is
                        // a child of the shutdown token): that is a shutdown, not the encoder
                        // leaving, whichever of the two this loop saw first.
                        self.lifecycle.handle_shutdown(Instant::now());
                    }
                    None => {
                        info!("publisher disconnected");
                        self.drop_publisher().await;
                        let now = Instant::now();
                        self.lifecycle.handle_disconnected(now);
                        if self.lifecycle.state() == State::Disconnected {
                            let action = self.slate.control.handle_disconnected(now);
                            self.slate_apply(action, now).await;
                        }
                    }
                },
                Some(control) = self.control.recv() => self.handle_control(control).await,
                rendered = slate_feed::rendered(&mut self.slate.rendering) => {
                    self.slate_rendered(rendered).await;
                }
                () = &mut timer => {
                    armed = None;
                    timer.as_mut().reset(far());
                    let now = Instant::now();
                    self.lifecycle.handle_timeout(now);
                    let media_age = self.publisher.as_ref().map_or(Duration::ZERO, |p| {
                        Duration::from_millis(
                            unix_ms(SystemTime::now())
                                .saturating_sub(p.last_media.load(Ordering::Relaxed)),
                        )
                    });
                    let action = self.slate.control.handle_timeout(now, media_age);
                    self.slate_apply(action, now).await;
                }
                () = &mut shutting_down => self.lifecycle.handle_shutdown(Instant::now()),
            }
        }
        self.finish().await;
    }

    async fn handle_media(&mut self, event: DemuxEvent) {
        let now = SystemTime::now();
        if let Some(p) = &self.publisher {
            p.last_media.store(unix_ms(now), Ordering::Relaxed);
        }
        if let DemuxEvent::Frame(frame) = &event {
            self.metrics.frame_in(frame.data.len());
        }
        if self.lifecycle.state() == State::Connected && matches!(event, DemuxEvent::Frame(_)) {
            self.lifecycle.handle_media(Instant::now());
        }
        let event = if self.slate.control.is_running() {
            let is_frame = matches!(event, DemuxEvent::Frame(_));
            match self.slate_intercept(event).await {
                Some(event) => event,
                None => {
                    if is_frame {
                        self.metrics.frame_dropped(DropReason::Slate);
                    }
                    return;
                }
            }
        } else {
            event
        };
        if self.package(event, now).await && self.lifecycle.state() != State::Active {
            self.lifecycle.handle_segment(Instant::now());
            if self.lifecycle.state() == State::Active {
                info!("live: first segment is playable");
            }
        }
    }

    /// Feeds the packager; publishes a segment that closed (then `true`).
    async fn package(&mut self, event: DemuxEvent, now: SystemTime) -> bool {
        let event = if self.stream.audio_only {
            match audio_only(event) {
                Some(e) => e,
                None => {
                    self.metrics.frame_dropped(DropReason::AudioOnly);
                    return false;
                }
            }
        } else {
            event
        };
        let event = match event {
            DemuxEvent::Frame(mut frame) => {
                if !self.content_started {
                    self.content_started = true;
                    if let Some(p) = &self.publisher {
                        self.meter.handle_content_start(p.protocol, unix_ms(now));
                    }
                }
                if !self.timeline.apply(&mut frame) {
                    self.metrics.frame_dropped(DropReason::Timestamp);
                    return false;
                }
                DemuxEvent::Frame(frame)
            }
            DemuxEvent::Config(config) => {
                self.slate_observe_config(&config);
                DemuxEvent::Config(config)
            }
            other => other,
        };
        match self.packager.handle_event(event, now) {
            Ok(Some(segment)) => {
                self.publish(&segment).await;
                true
            }
            Ok(None) => false,
            Err(e) => {
                warn!(error = %e, "media dropped");
                self.metrics.frame_dropped(DropReason::Invalid);
                false
            }
        }
    }

    async fn handle_control(&mut self, control: Control) {
        let now = Instant::now();
        match control {
            Control::Attach { publisher, reply } => {
                if let Some(old) = &self.publisher {
                    // Admission found it stale (no media for a while): the new encoder takes
                    // over the broadcast.
                    info!(old_peer = %old.peer, "stale publisher replaced");
                    old.kick.cancel();
                    self.drop_publisher().await;
                    self.lifecycle.handle_disconnected(now);
                    self.content_started = false;
                }
                match self.lifecycle.handle_connected(publisher.protocol, now) {
                    Ok(()) => {
                        info!(peer = %publisher.peer, "publisher reconnected");
                        self.metrics.reconnected();
                        // A new connection: its timestamps start afresh (the playlists mark the
                        // gap; the timeline continues after it). While slate runs, the switch
                        // happens at the new connection's first keyframe instead.
                        if !self.slate.control.is_running() {
                            if let Some(segment) = self.packager.handle_discontinuity() {
                                self.publish(&segment).await;
                            }
                            self.timeline.handle_new_connection();
                        }
                        self.content_started = false;
                        self.slate.control.handle_connected(now);
                        self.publisher = Some(publisher);
                        let _ = reply.send(Ok(()));
                    }
                    Err(e) => {
                        let _ = reply.send(Err((e, publisher)));
                    }
                }
            }
            Control::Command { command, reply } => {
                match command {
                    Command::Complete => self.lifecycle.handle_complete(now),
                    Command::Disable => self.lifecycle.handle_disable(now),
                    Command::Delete => self.lifecycle.handle_delete(now),
                    Command::ResetStreamKey => self.lifecycle.handle_stream_key_reset(now),
                }
                self.apply_outputs().await;
                // Answered once its transitions are in the store (the API's next read shows
                // them); the actor goes on meanwhile.
                self.writer.notify_when_written(reply).await;
            }
        }
    }

    /// Carries out what the lifecycle asked for, in order, then writes the transitions.
    async fn apply_outputs(&mut self) {
        while let Some(output) = self.lifecycle.poll_output() {
            match output {
                Output::Transition {
                    state,
                    status,
                    broadcast_started,
                } => {
                    info!(state = state.as_str(), "lifecycle");
                    self.metrics.set_state(state.as_str());
                    // The asset's media as of this transition (nothing new at `connected`).
                    let media =
                        (state != State::Connected).then(|| self.meter.snapshot(&self.packager));
                    let record = TransitionRecord {
                        live_stream_id: self.stream.id.clone(),
                        broadcast_id: self.broadcast_id.clone(),
                        recording_dir: PathBuf::from(&self.stream.id).join(&self.broadcast_id),
                        state,
                        status,
                        broadcast_started,
                        at_ms: unix_ms(SystemTime::now()),
                        media,
                    };
                    self.writer.send(record).await;
                    if state != State::Connected {
                        self.slate_flush_warning().await;
                    }
                }
                Output::Kick(reason) => {
                    if let Some(p) = &self.publisher {
                        info!(reason = reason.as_str(), peer = %p.peer, "disconnecting the encoder");
                        p.kick.cancel();
                    }
                    self.drop_publisher().await;
                }
                Output::FinishRecording => self.finish_recording().await,
            }
        }
    }

    /// Lets the current publisher go: its channel is dropped (its connection ends) and the
    /// open segment is closed and published, so that the live playlist holds everything it
    /// sent while the broadcast waits.
    async fn drop_publisher(&mut self) {
        let Some(mut publisher) = self.publisher.take() else {
            return;
        };
        self.manager
            .publisher_left(&self.stream.id, self.generation, &publisher.last_media);
        // What it sent before it was let go is recorded (bounded by the channel's capacity).
        publisher.rx.close();
        while let Ok(message) = publisher.rx.try_recv() {
            for event in message.into_events() {
                let event = if self.slate.control.is_running() {
                    match self.slate_intercept(event).await {
                        Some(event) => event,
                        None => continue,
                    }
                } else {
                    event
                };
                self.package(event, SystemTime::now()).await;
            }
        }
        drop(publisher);
        // Slate that is running (the encoder had stalled) goes on without a cut: none of the
        // encoder's media reached the packager since it started.
        if !self.slate.control.is_running() {
            if let Some(segment) = self.packager.handle_discontinuity() {
                self.publish(&segment).await;
            }
        }
    }

    async fn finish_recording(&mut self) {
        self.slate_end();
        if self.restored {
            self.recording.end_restored().await;
            // What the previous run recorded after its last transition counts too.
            if let Some(secs) = self.recording.recorded_secs().await {
                self.meter.handle_recorded_total(secs);
            }
            self.view.end(None);
            return;
        }
        if let Some(segment) = self.packager.finish() {
            self.publish(&segment).await;
        }
        let uri = self.view.segment_uri();
        self.view.end(Some(
            self.packager.playlist().render_live(|s| uri(s.sequence)),
        ));
        self.recording.end(self.packager.playlist()).await;
    }

    pub(crate) async fn publish(&mut self, segment: &Segment) {
        let config = self.manager.config();
        let limits = MemoryLimits {
            listed: config.live_window,
            in_memory: config.segments_in_memory.clamp(1, config.live_window),
        };
        let uri = self.view.segment_uri();
        let evicted = self.view.publish(
            segment.sequence,
            segment.data.clone(),
            self.packager
                .playlist()
                .render_live(|s: &SegmentInfo| uri(s.sequence)),
            &self.packager.multivariant("stream.m3u8"),
            limits,
        );
        for data in evicted {
            self.packager.recycle(data);
        }
        self.meter.handle_segment(segment);
        self.metrics
            .segment_written(segment.data.len(), segment.duration_secs());
        // Listed segments leave memory only once they are on disk (playback falls back to it).
        if self
            .recording
            .write(segment, self.packager.playlist())
            .await
        {
            self.view.mark_recorded(segment.sequence);
        } else {
            self.metrics.recording_write_error();
        }
    }

    /// The broadcast is over (or the gateway stops): write what is pending, leave the
    /// registry, answer whoever is still waiting.
    async fn finish(mut self) {
        // Every transition is in the store before the registry lets a next broadcast of
        // this stream begin (its events follow these in the log).
        self.writer.finish().await;
        self.manager.remove(&self.stream.id, self.generation);
        // Nobody can send any more (the sender left with the registry entry): answer what
        // came in meanwhile.
        while let Ok(control) = self.control.try_recv() {
            match control {
                Control::Attach { publisher, reply } => {
                    let _ = reply.send(Err((JoinError::Ended, publisher)));
                }
                Control::Command { reply, .. } => {
                    let _ = reply.send(());
                }
            }
        }
        let stats = self.packager.segmenter().stats();
        info!(
            broadcast_id = %self.broadcast_id,
            state = self.lifecycle.state().as_str(),
            segments = self.packager.playlist().segment_count(),
            frames_before_keyframe = stats.frames_before_keyframe,
            recycled_buffers = stats.recycled_buffers,
            allocated_buffers = stats.allocated_buffers,
            grown_buffers = stats.grown_buffers,
            "broadcast session ended"
        );
        self.done.cancel();
    }
}
