//! When a broadcast shows slate: the decisions, without IO (the actor does the media).
//!
//! seeds/004: reduced- and low-latency streams with a reconnect window, and standard ones
//! with `use_slate_for_standard_latency`, insert slate while the encoder is away and during
//! brief interruptions of its media. So slate starts
//! - when the encoder disconnects inside the reconnect window, and
//! - when a connected encoder's media stalls for longer than the stall threshold (about two
//!   target durations),
//!
//! and ends when real media comes back (the actor switches at its next keyframe). While it
//! runs, the actor feeds slate frames in real time, every [`FEED_INTERVAL`]: the live playlist
//! keeps gaining segments, and the recording stays one continuous timeline.
//!
//! Slate needs slate media, which is rendered once the stream's configuration (resolution,
//! audio) is known: until [`SlateControl::handle_ready`], nothing starts.

use std::time::{Duration, Instant};

/// How often running slate is topped up to "now" (a segment closes at most this late).
pub(crate) const FEED_INTERVAL: Duration = Duration::from_millis(200);

/// How often a connected encoder's media is checked for a stall.
pub(crate) const STALL_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// What the actor should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlateAction {
    /// Begin slate now.
    Start,
    /// Feed slate frames up to now.
    Feed,
}

/// The slate decisions of one broadcast.
#[derive(Debug)]
pub(crate) struct SlateControl {
    /// The stream wants slate (settings) and the gateway has it enabled.
    enabled: bool,
    /// A connected encoder's media is stalled after this long.
    stall_after: Duration,
    /// Slate media is rendered.
    ready: bool,
    /// An encoder is connected.
    publisher: bool,
    /// Running since, and when it was last fed.
    running: Option<(Instant, Instant)>,
    /// The next stall check.
    next_check: Option<Instant>,
}

impl SlateControl {
    /// A broadcast's control; `enabled` from the stream's settings.
    pub(crate) fn new(enabled: bool, stall_after: Duration) -> Self {
        SlateControl {
            enabled,
            stall_after,
            ready: false,
            publisher: false,
            running: None,
            next_check: None,
        }
    }

    /// Whether slate is wanted at all (the actor renders slate media only then).
    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Whether slate is running.
    pub(crate) fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// When it started, while running.
    pub(crate) fn running_since(&self) -> Option<Instant> {
        self.running.map(|(since, _)| since)
    }

    /// Slate media is rendered: slate can start from now on.
    pub(crate) fn handle_ready(&mut self, now: Instant) {
        self.ready = true;
        if self.publisher {
            self.next_check = Some(now + STALL_CHECK_INTERVAL);
        }
    }

    /// An encoder was attached (the first, or one coming back). Running slate goes on until
    /// its media arrives ([`SlateControl::handle_resumed`]).
    pub(crate) fn handle_connected(&mut self, now: Instant) {
        self.publisher = true;
        self.next_check = Some(now + STALL_CHECK_INTERVAL);
    }

    /// The encoder went away inside the reconnect window: `Start` if slate should begin.
    pub(crate) fn handle_disconnected(&mut self, now: Instant) -> Option<SlateAction> {
        self.publisher = false;
        self.next_check = None;
        self.start(now)
    }

    /// Real media took over again (the actor switched at a keyframe).
    pub(crate) fn handle_resumed(&mut self, now: Instant) {
        self.running = None;
        if self.publisher {
            self.next_check = Some(now + STALL_CHECK_INTERVAL);
        }
    }

    /// The broadcast is ending: nothing more starts.
    pub(crate) fn handle_end(&mut self) {
        self.enabled = false;
        self.running = None;
        self.next_check = None;
    }

    fn start(&mut self, now: Instant) -> Option<SlateAction> {
        if !(self.enabled && self.ready) || self.running.is_some() {
            return None;
        }
        self.running = Some((now, now));
        Some(SlateAction::Start)
    }

    /// When [`SlateControl::handle_timeout`] wants to be called next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.running {
            Some((_, fed)) => Some(fed + FEED_INTERVAL),
            None if self.enabled && self.ready && self.publisher => self.next_check,
            None => None,
        }
    }

    /// Time passed; `media_age` is how long ago the connected encoder's last media arrived.
    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        media_age: Duration,
    ) -> Option<SlateAction> {
        if let Some((since, fed)) = self.running {
            if now >= fed + FEED_INTERVAL {
                self.running = Some((since, now));
                return Some(SlateAction::Feed);
            }
            return None;
        }
        let check = self.next_check?;
        if now < check || !self.publisher {
            return None;
        }
        self.next_check = Some(now + STALL_CHECK_INTERVAL);
        if media_age > self.stall_after {
            return self.start(now);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALL: Duration = Duration::from_secs(4);

    fn ready(now: Instant) -> SlateControl {
        let mut c = SlateControl::new(true, STALL);
        c.handle_connected(now);
        c.handle_ready(now);
        c
    }

    #[test]
    fn a_disconnect_starts_slate_and_the_encoder_s_media_ends_it() {
        let t0 = Instant::now();
        let mut c = ready(t0);
        assert_eq!(c.handle_disconnected(t0), Some(SlateAction::Start));
        assert!(c.is_running());
        assert_eq!(c.poll_timeout(), Some(t0 + FEED_INTERVAL));
        assert_eq!(
            c.handle_timeout(t0 + FEED_INTERVAL, STALL),
            Some(SlateAction::Feed)
        );
        assert_eq!(
            c.handle_timeout(t0 + FEED_INTERVAL, STALL),
            None,
            "fed already"
        );
        // The encoder comes back: slate goes on until its media takes over.
        c.handle_connected(t0 + Duration::from_secs(10));
        assert!(c.is_running());
        c.handle_resumed(t0 + Duration::from_secs(11));
        assert!(!c.is_running());
        assert_eq!(
            c.poll_timeout(),
            Some(t0 + Duration::from_secs(11) + STALL_CHECK_INTERVAL)
        );
    }

    #[test]
    fn a_stall_longer_than_the_threshold_starts_slate() {
        let t0 = Instant::now();
        let mut c = ready(t0);
        let check = c.poll_timeout().unwrap();
        assert_eq!(c.handle_timeout(check, Duration::from_secs(1)), None);
        let check = c.poll_timeout().unwrap();
        assert_eq!(c.handle_timeout(check, STALL), None, "not longer than");
        let check = c.poll_timeout().unwrap();
        assert_eq!(
            c.handle_timeout(check, STALL + Duration::from_millis(1)),
            Some(SlateAction::Start)
        );
        assert_eq!(c.running_since(), Some(check));
    }

    #[test]
    fn nothing_without_slate_media_settings_or_after_the_end() {
        let t0 = Instant::now();
        let mut not_ready = SlateControl::new(true, STALL);
        not_ready.handle_connected(t0);
        assert_eq!(not_ready.poll_timeout(), None);
        assert_eq!(not_ready.handle_disconnected(t0), None);

        let mut disabled = SlateControl::new(false, STALL);
        disabled.handle_connected(t0);
        disabled.handle_ready(t0);
        assert_eq!(disabled.poll_timeout(), None);
        assert_eq!(disabled.handle_disconnected(t0), None);

        let mut ended = ready(t0);
        ended.handle_disconnected(t0);
        ended.handle_end();
        assert!(!ended.is_running());
        assert_eq!(ended.poll_timeout(), None);
        assert_eq!(ended.handle_disconnected(t0), None);
    }
}
