//! The actor's slate: slate media rendered once for the broadcast, and the switches between
//! the encoder's media and slate ([`crate::slate_control`] decides when).
//!
//! - **Rendering** starts when the encoder's first video configuration arrives (the slate
//!   has its resolution, frame rate and audio layout), off the actor: the stream's
//!   `reconnect_slate_url` is fetched ([`crate::slate_image`]) and the image encoded on the
//!   blocking pool, once for every broadcast that needs the same slate
//!   ([`crate::slate_cache`]). A URL that cannot be fetched, or whose bytes are
//!   not a usable image, gives the default slate and a warning (`video.live_stream.warning`,
//!   `video.asset.warning`). The image is fetched once per broadcast; the slate is rendered
//!   again only if a reconnect brings another resolution or audio layout.
//! - **Into slate**: the open segment is closed (the playlists mark a discontinuity), the
//!   packager gets the slate's configuration, the timeline continues just after the last
//!   frame, and slate frames are fed in real time.
//! - **Out of slate**: at the encoder's next video keyframe (its first audio frame for a
//!   stream without video), the slate segment is closed, the encoder's configuration comes
//!   back, and its media continues the timeline after the slate; what it sent before that
//!   keyframe is dropped (it cannot be decoded without it).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use media::{DemuxEvent, Frame, StreamConfig, Track, TIMESCALE};
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::actor::{unix_ms, Actor};
use crate::lifecycle::State;
use crate::slate_control::{SlateAction, SlateControl};
use crate::slate_image;

/// `warning.type` of the warnings about `reconnect_slate_url`.
pub(crate) const SLATE_WARNING: &str = "slate_image_unavailable";

/// What a render task hands back.
#[derive(Debug)]
pub(crate) struct Rendered {
    slate: Result<Arc<slate::Slate>, String>,
    /// Why the stream's own image was not used.
    warning: Option<String>,
    /// The image rendered (kept for a re-render).
    image: Bytes,
    key: RenderKey,
}

/// What slate media depends on: resolution, frame rate (milli-fps) and audio layout.
type RenderKey = (u32, u32, u32, Option<(u32, u8)>);

/// The slate state of one broadcast's actor.
#[derive(Debug)]
pub(crate) struct SlateFeed {
    pub control: SlateControl,
    url: Option<String>,
    /// The image in use, once fetched (or the default).
    image: Option<Bytes>,
    media: Option<Arc<slate::Slate>>,
    rendered: Option<RenderKey>,
    /// A render in progress.
    pub rendering: Option<oneshot::Receiver<Rendered>>,
    run: Option<slate::SlateRun<'static>>,
    /// The encoder's newest configuration (it comes back when its media takes over again).
    real_config: Option<StreamConfig>,
    /// A warning about the slate image, held until the asset exists (the broadcast's first
    /// media), so that it is reported for the asset too.
    pending_warning: Option<String>,
}

impl SlateFeed {
    pub(crate) fn new(control: SlateControl, url: Option<String>) -> Self {
        SlateFeed {
            control,
            url,
            image: None,
            media: None,
            rendered: None,
            rendering: None,
            run: None,
            real_config: None,
            pending_warning: None,
        }
    }

    /// Whether the encoder's `frame` takes over from running slate.
    fn takes_over(&self, frame: &Frame) -> bool {
        let has_video = self.real_config.as_ref().is_some_and(|c| c.video.is_some());
        if has_video {
            frame.track == Track::Video && frame.keyframe
        } else {
            true
        }
    }
}

/// The render result, when a render is in progress (for `select!`).
pub(crate) async fn rendered(rendering: &mut Option<oneshot::Receiver<Rendered>>) -> Rendered {
    match rendering {
        Some(rx) => match rx.await {
            Ok(r) => r,
            // The task died (it cannot, short of a panic in the encoder): no slate.
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// The slate to render for `config`: its size (rounded down to even numbers, as H.264 4:2:0
/// needs; a pixel less than an odd-sized stream), frame rate and audio. `None` without video
/// or beyond what the encoder takes (16 to 3840 pixels, the shorter side at most 2160).
fn render_key(config: &StreamConfig, fallback_fps: f64) -> Option<(RenderKey, slate::SlateSpec)> {
    let video = config.video.as_ref()?;
    let (width, height) = (video.width & !1, video.height & !1);
    if !(16..=3840).contains(&width) || !(16..=3840).contains(&height) || width.min(height) > 2160 {
        return None;
    }
    let fps = video.frame_rate.unwrap_or(fallback_fps).clamp(1.0, 120.0);
    let audio = config.audio.as_ref().map(|a| slate::AudioSpec {
        sample_rate: a.asc.sample_rate(),
        channels: a.asc.channel_config.max(1),
    });
    let key = (
        width,
        height,
        (fps * 1000.0).round() as u32,
        audio.as_ref().map(|a| (a.sample_rate, a.channels)),
    );
    let spec = slate::SlateSpec {
        width,
        height,
        frame_rate: fps,
        gop_duration: std::time::Duration::ZERO, // set by the caller
        audio,
    };
    Some((key, spec))
}

impl Actor {
    /// The encoder sent a configuration: remember it, and render slate for it if needed.
    pub(crate) fn slate_observe_config(&mut self, config: &StreamConfig) {
        self.slate.real_config = Some(config.clone());
        if !self.slate.control.is_enabled() || self.slate.rendering.is_some() {
            return;
        }
        let fps = self
            .packager
            .playlist()
            .measured_frame_rate()
            .unwrap_or(30.0);
        let Some((key, mut spec)) = render_key(config, fps) else {
            return; // no video: no slate
        };
        if self.slate.rendered == Some(key) {
            return;
        }
        spec.gop_duration = self.packager.target_duration();
        let image = self.slate.image.clone();
        let url = self.slate.url.clone();
        let cache = self.manager.slate_cache();
        let (tx, rx) = oneshot::channel();
        // Not tracked: a render finishing after shutdown is simply dropped with its result.
        tokio::spawn(async move {
            let mut warning = None;
            let image = match (image, url) {
                (Some(image), _) => image,
                (None, Some(url)) => match slate_image::fetch(&url).await {
                    Ok(image) => image,
                    Err(e) => {
                        warning = Some(format!("reconnect_slate_url could not be fetched: {e}"));
                        Bytes::from_static(slate::default_image())
                    }
                },
                (None, None) => Bytes::from_static(slate::default_image()),
            };
            let mut result = cache.get(&image, &spec).await;
            let mut image = image;
            if let Err(e) = &result {
                if image.as_ref() != slate::default_image() {
                    warning = Some(format!("reconnect_slate_url is not a usable image: {e}"));
                    image = Bytes::from_static(slate::default_image());
                    result = cache.get(&image, &spec).await;
                }
            }
            let _ = tx.send(Rendered {
                slate: result,
                warning,
                image,
                key,
            });
        });
        self.slate.rendering = Some(rx);
    }

    /// A render finished.
    pub(crate) async fn slate_rendered(&mut self, rendered: Rendered) {
        self.slate.rendering = None;
        if let Some(message) = rendered.warning {
            warn!(%message, "default slate used");
            self.slate.pending_warning = Some(message);
            self.slate_flush_warning().await;
        }
        self.slate.image = Some(rendered.image);
        match rendered.slate {
            Ok(media) => {
                info!("slate ready");
                self.slate.media = Some(media);
                self.slate.rendered = Some(rendered.key);
                self.slate.control.handle_ready(Instant::now());
            }
            Err(e) => warn!(error = %e, "no slate: rendering failed"),
        }
        // A configuration that changed while rendering gets its own render.
        if let Some(config) = self.slate.real_config.clone() {
            self.slate_observe_config(&config);
        }
    }

    /// Reports a held warning once the broadcast has recorded media (its asset exists, or
    /// its creation is queued before the warning).
    pub(crate) async fn slate_flush_warning(&mut self) {
        if self.lifecycle.state() == State::Connected || self.slate.pending_warning.is_none() {
            return;
        }
        let Some(message) = self.slate.pending_warning.take() else {
            return;
        };
        let warning = store::Warning {
            kind: SLATE_WARNING.to_owned(),
            message,
        };
        self.writer
            .send_warning(&self.stream.id, warning, unix_ms(SystemTime::now()) as i64)
            .await;
    }

    /// Carries out what the slate control asked for.
    pub(crate) async fn slate_apply(&mut self, action: Option<SlateAction>, now: Instant) {
        match action {
            Some(SlateAction::Start) => self.slate_start(now).await,
            Some(SlateAction::Feed) => self.slate_feed(now).await,
            None => {}
        }
    }

    async fn slate_start(&mut self, now: Instant) {
        let Some(media) = self.slate.media.clone() else {
            return;
        };
        info!("slate on");
        if let Some(segment) = self.packager.handle_discontinuity() {
            self.publish(&segment).await;
        }
        self.meter.handle_slate_start(unix_ms(SystemTime::now()));
        if let Some(segment) = self.packager.handle_config(media.config().clone()) {
            self.publish(&segment).await;
        }
        self.timeline.handle_new_connection();
        self.slate.run = Some(slate::Slate::run_shared(&media, 0));
        self.content_started = false;
        self.slate_feed(now).await;
    }

    /// Feeds slate frames up to `now` (in real time from the slate's start).
    async fn slate_feed(&mut self, now: Instant) {
        let Some(since) = self.slate.control.running_since() else {
            return;
        };
        let Some(run) = &mut self.slate.run else {
            return;
        };
        let elapsed = now.saturating_duration_since(since);
        let until = (elapsed.as_secs_f64() * TIMESCALE as f64) as u64;
        let frames = run.frames_until(until);
        let wall = SystemTime::now();
        for mut frame in frames {
            if !self.timeline.apply(&mut frame) {
                continue;
            }
            match self.packager.handle_frame(&frame, wall) {
                Ok(Some(segment)) => self.publish(&segment).await,
                Ok(None) => {}
                Err(e) => warn!(error = %e, "slate frame dropped"),
            }
        }
    }

    /// The encoder's media takes over from slate.
    async fn slate_stop(&mut self, now: Instant) {
        info!("slate off: the encoder's media is back");
        self.slate_feed(now).await;
        self.slate.run = None;
        self.slate.control.handle_resumed(now);
        if let Some(segment) = self.packager.handle_discontinuity() {
            self.publish(&segment).await;
        }
        if let Some(config) = self.slate.real_config.clone() {
            if let Some(segment) = self.packager.handle_config(config) {
                self.publish(&segment).await;
            }
        }
        self.timeline.handle_new_connection();
        self.content_started = false;
    }

    /// Ends slate for good (the broadcast is over), without switching back.
    pub(crate) fn slate_end(&mut self) {
        self.slate.control.handle_end();
        self.slate.run = None;
    }

    /// Real media while slate runs: `Some(event)` to package it (slate has just ended at a
    /// keyframe), `None` when it is held back (a configuration, kept for the switch) or
    /// dropped (frames before the keyframe).
    pub(crate) async fn slate_intercept(&mut self, event: DemuxEvent) -> Option<DemuxEvent> {
        match &event {
            DemuxEvent::Config(config) => {
                self.slate_observe_config(config);
                None
            }
            DemuxEvent::Frame(frame) if self.slate.takes_over(frame) => {
                self.slate_stop(Instant::now()).await;
                Some(event)
            }
            _ => None,
        }
    }
}
