//! The broadcast lifecycle of one live stream, as a sans-IO state machine.
//!
//! ```text
//!            admitted            first frames          first segment
//!   (idle) ───────────▶ connected ───────────▶ recording ───────────▶ active
//!                           ▲                      │                    │
//!                           │ admitted again       │ encoder gone       │ encoder gone
//!                           │ (inside the window)  ▼                    ▼
//!                           └──────────────── disconnected ◀────────────┘
//!                                                  │ window expired, complete, disable,
//!                                                  ▼ delete, max duration, test limit
//!                                                idle (the broadcast and its recording end)
//! ```
//!
//! A *broadcast* begins when an encoder is admitted for an idle live stream and ends when the
//! stream goes idle: everything in between (reconnects inside `reconnect_window` included) is
//! one broadcast, one recording and one continuous media sequence. One [`Lifecycle`] drives
//! one broadcast; once it reports [`State::Idle`] it is finished and a new admission starts a
//! new one.
//!
//! # Driving it (quinn-proto's contract)
//!
//! Feed inputs with the `handle_*` methods, each with the current time; then take what they
//! caused with [`Lifecycle::poll_output`] until it answers `None`, and sleep until
//! [`Lifecycle::poll_timeout`], calling [`Lifecycle::handle_timeout`] when it passes. Nothing
//! here reads a clock, spawns or touches the store: the session actor does that with the
//! outputs, in order:
//!
//! - [`Output::Transition`]: write the new state, its event and status change to the store
//!   (one transaction);
//! - [`Output::Kick`]: disconnect the current encoder;
//! - [`Output::FinishRecording`]: close the open segment, end the live playlist and the
//!   recording with `EXT-X-ENDLIST` (always before the `idle` transition).
//!
//! The lifecycle is the only writer of a live stream's `status` while a broadcast runs:
//! `active` with the first playable segment, `idle` at the end (`disabled` for a test stream
//! that reached its limit). API commands (`complete`, `disable`, `reset-stream-key`, delete)
//! are inputs, not separate writers.

use std::time::{Duration, Instant};

use crate::ingest::IngestProtocol;

/// How long a test live stream may be active (`seeds/004`: "limited to 5 minutes").
pub const TEST_STREAM_LIMIT: Duration = Duration::from_secs(300);

/// Where a live stream is in its broadcast lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// No broadcast (before the first admission, and once the broadcast has ended).
    Idle,
    /// An encoder is admitted; nothing recorded yet.
    Connected,
    /// The encoder's first frames were processed: the recording has begun.
    Recording,
    /// The broadcast is playable (its first segment closed). Status `active`.
    Active,
    /// The encoder has gone; the reconnect window runs. Status stays `active`.
    Disconnected,
}

impl State {
    /// The seeds' name of the state (`video.live_stream.{name}`).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Connected => "connected",
            State::Recording => "recording",
            State::Active => "active",
            State::Disconnected => "disconnected",
        }
    }

    /// The webhook event type announcing this state.
    pub fn event_type(self) -> &'static str {
        match self {
            State::Idle => "video.live_stream.idle",
            State::Connected => "video.live_stream.connected",
            State::Recording => "video.live_stream.recording",
            State::Active => "video.live_stream.active",
            State::Disconnected => "video.live_stream.disconnected",
        }
    }
}

/// A change of the live stream's API `status` that goes with a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    /// `active`, ingesting over this protocol.
    Active(IngestProtocol),
    /// `idle` (a disabled stream stays disabled).
    Idle,
    /// `disabled`: no new broadcasts (a test stream past its limit).
    Disabled,
}

/// Why the lifecycle disconnects an encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickReason {
    /// `PUT …/complete`.
    Complete,
    /// `PUT …/disable`.
    Disabled,
    /// The live stream was deleted.
    Deleted,
    /// The stream key was reset.
    StreamKeyReset,
    /// `max_continuous_duration` was reached.
    MaxContinuousDuration,
    /// A test stream reached [`TEST_STREAM_LIMIT`].
    TestLimit,
    /// The gateway is shutting down.
    Shutdown,
}

impl KickReason {
    /// A short reason for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            KickReason::Complete => "complete",
            KickReason::Disabled => "disabled",
            KickReason::Deleted => "deleted",
            KickReason::StreamKeyReset => "stream key reset",
            KickReason::MaxContinuousDuration => "max continuous duration reached",
            KickReason::TestLimit => "test stream limit reached",
            KickReason::Shutdown => "shutdown",
        }
    }
}

/// What the lifecycle asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The live stream entered `state`: record it, with its event, in one transaction.
    Transition {
        /// The new state.
        state: State,
        /// The API status change that goes with it, if any.
        status: Option<StatusChange>,
        /// The first transition of the broadcast (it creates the broadcast).
        broadcast_started: bool,
    },
    /// Disconnect the current encoder.
    Kick(KickReason),
    /// End the live playlist and the recording (before the `idle` transition).
    FinishRecording,
}

/// Why an encoder could not join this broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The broadcast has ended (or just ended: the window expired as the encoder arrived);
    /// the encoder starts a new broadcast.
    #[error("the broadcast has ended")]
    Ended,
    /// Another encoder is connected (the driver replaces a stale one by disconnecting it
    /// first).
    #[error("the live stream already has a publisher")]
    Busy,
}

/// The limits of one live stream, from its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleConfig {
    /// How long a disconnected broadcast waits for its encoder (0: it ends at once).
    pub reconnect_window: Duration,
    /// A broadcast active this long is disconnected and ended.
    pub max_continuous_duration: Duration,
    /// A test stream: ended and disabled after [`TEST_STREAM_LIMIT`] of activity.
    pub test: bool,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            reconnect_window: Duration::from_secs(60),
            max_continuous_duration: Duration::from_secs(43_200),
            test: false,
        }
    }
}

/// The lifecycle of one broadcast. See the module documentation.
#[derive(Debug)]
pub struct Lifecycle {
    config: LifecycleConfig,
    state: State,
    /// Whether the broadcast has begun (a first transition was issued) and not ended.
    started: bool,
    ended: bool,
    /// Restored after a restart: no packager state survives, so an encoder that comes back
    /// ends this broadcast and starts a new one.
    restored: bool,
    protocol: Option<IngestProtocol>,
    /// When the broadcast became playable (`active`); the duration limits run from here.
    active_since: Option<Instant>,
    /// When the reconnect window ends (while disconnected).
    window_ends: Option<Instant>,
    outputs: std::collections::VecDeque<Output>,
}

impl Lifecycle {
    /// A lifecycle for a new broadcast; it starts with [`Lifecycle::handle_connected`].
    pub fn new(config: LifecycleConfig) -> Self {
        Lifecycle {
            config,
            state: State::Idle,
            started: false,
            ended: false,
            restored: false,
            protocol: None,
            active_since: None,
            window_ends: None,
            outputs: std::collections::VecDeque::new(),
        }
    }

    /// The lifecycle of a broadcast that a previous run of the gateway left unfinished
    /// (crash or shutdown). Its encoder is gone: it is `disconnected` as of `now`, and its
    /// reconnect window runs from `now`. `was_connected` says whether the store still had it
    /// connected/recording/active (then a `disconnected` transition is issued first).
    pub fn restored(config: LifecycleConfig, was_connected: bool, now: Instant) -> Self {
        let mut lifecycle = Lifecycle::new(config);
        lifecycle.started = true;
        lifecycle.restored = true;
        lifecycle.state = if was_connected {
            State::Active // whatever it was; only "has a publisher" matters below
        } else {
            State::Disconnected
        };
        if was_connected {
            lifecycle.handle_disconnected(now);
        } else {
            lifecycle.enter_window(now);
        }
        lifecycle
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the broadcast has ended: the driver finishes once the outputs are drained.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Whether an encoder is connected.
    pub fn has_publisher(&self) -> bool {
        matches!(
            self.state,
            State::Connected | State::Recording | State::Active
        )
    }

    /// Whether the broadcast has been playable.
    pub fn was_active(&self) -> bool {
        self.active_since.is_some()
    }

    /// The next output, in the order the driver must carry them out.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Lifecycle::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended {
            return None;
        }
        let mut next = self.window_ends;
        if let Some(since) = self.active_since {
            let mut limit = self.config.max_continuous_duration;
            if self.config.test {
                limit = limit.min(TEST_STREAM_LIMIT);
            }
            let at = since + limit;
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        next
    }

    fn transition(&mut self, state: State, status: Option<StatusChange>) {
        let broadcast_started = !self.started;
        self.started = true;
        self.state = state;
        self.outputs.push_back(Output::Transition {
            state,
            status,
            broadcast_started,
        });
    }

    /// An encoder was admitted over `protocol`: the first of a broadcast, or one coming back
    /// inside the reconnect window. `Err(Ended)` when the broadcast is over (or its window
    /// expired by `now`: expiry wins a tie): the encoder then starts a new broadcast.
    pub fn handle_connected(
        &mut self,
        protocol: IngestProtocol,
        now: Instant,
    ) -> Result<(), JoinError> {
        if self.ended {
            return Err(JoinError::Ended);
        }
        if self.has_publisher() {
            return Err(JoinError::Busy);
        }
        self.handle_timeout(now);
        if self.ended {
            return Err(JoinError::Ended);
        }
        if self.restored {
            // Nothing of the old broadcast's packaging survived the restart: it ends here and
            // the encoder begins a new one.
            self.finish(None);
            return Err(JoinError::Ended);
        }
        self.window_ends = None;
        let protocol_changed = self
            .protocol
            .is_some_and(|p| p.as_str() != protocol.as_str());
        self.protocol = Some(protocol);
        // Back inside an active broadcast over another protocol: the status says so.
        let status =
            (self.was_active() && protocol_changed).then_some(StatusChange::Active(protocol));
        self.transition(State::Connected, status);
        Ok(())
    }

    /// The connected encoder's first frames were processed (called for every frame is fine:
    /// only the first after each connection counts).
    pub fn handle_media(&mut self, _now: Instant) {
        if self.state == State::Connected {
            self.transition(State::Recording, None);
        }
    }

    /// A segment became playable. The first of the broadcast makes it `active`; after a
    /// reconnect the broadcast is active again without a new `active` event.
    pub fn handle_segment(&mut self, now: Instant) {
        match self.state {
            State::Connected | State::Recording if !self.was_active() => {
                self.active_since = Some(now);
                let protocol = self.protocol.unwrap_or(IngestProtocol::Rtmp);
                self.transition(State::Active, Some(StatusChange::Active(protocol)));
            }
            State::Connected | State::Recording => self.state = State::Active,
            _ => {}
        }
    }

    /// The encoder has gone (its connection closed, or it was kicked). The reconnect window
    /// starts; with a window of 0 the broadcast ends at once.
    pub fn handle_disconnected(&mut self, now: Instant) {
        if !self.has_publisher() {
            return;
        }
        self.transition(State::Disconnected, None);
        self.enter_window(now);
    }

    fn enter_window(&mut self, now: Instant) {
        self.state = State::Disconnected;
        if self.config.reconnect_window.is_zero() {
            self.finish(None);
        } else {
            self.window_ends = Some(now + self.config.reconnect_window);
        }
    }

    /// Ends the broadcast: kick the encoder (if any, with `reason`), then disconnected,
    /// recording finished, idle.
    fn end(&mut self, reason: KickReason, status: StatusChange) {
        if self.ended {
            return;
        }
        if self.has_publisher() {
            self.outputs.push_back(Output::Kick(reason));
            self.transition(State::Disconnected, None);
        }
        self.finish(Some(status));
    }

    fn finish(&mut self, status: Option<StatusChange>) {
        self.window_ends = None;
        self.ended = true;
        if !self.started {
            // Nothing was announced: nothing to close or to record.
            self.state = State::Idle;
            return;
        }
        self.outputs.push_back(Output::FinishRecording);
        self.transition(State::Idle, Some(status.unwrap_or(StatusChange::Idle)));
    }

    /// `PUT …/complete`: the broadcast ends now, without waiting for the reconnect window.
    pub fn handle_complete(&mut self, _now: Instant) {
        self.end(KickReason::Complete, StatusChange::Idle);
    }

    /// `PUT …/disable`: the broadcast ends now (the stream's `disabled` status is the API's
    /// write; `idle` leaves it disabled).
    pub fn handle_disable(&mut self, _now: Instant) {
        self.end(KickReason::Disabled, StatusChange::Idle);
    }

    /// The live stream was deleted: the broadcast ends now.
    pub fn handle_delete(&mut self, _now: Instant) {
        self.end(KickReason::Deleted, StatusChange::Idle);
    }

    /// The stream key was reset: the encoder on the old key is disconnected; the broadcast
    /// waits for an encoder with the new key for the reconnect window, as after any drop.
    pub fn handle_stream_key_reset(&mut self, now: Instant) {
        if self.has_publisher() {
            self.outputs
                .push_back(Output::Kick(KickReason::StreamKeyReset));
            self.handle_disconnected(now);
        }
    }

    /// The gateway is stopping: the encoder is disconnected, the broadcast stays
    /// `disconnected` (the next start reconciles it; see [`Lifecycle::restored`]).
    pub fn handle_shutdown(&mut self, _now: Instant) {
        if self.has_publisher() {
            self.outputs.push_back(Output::Kick(KickReason::Shutdown));
            self.transition(State::Disconnected, None);
        }
        self.window_ends = None;
        self.ended = true;
    }

    /// Time has passed: ends the broadcast when its reconnect window expired or a duration
    /// limit was reached by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ended {
            return;
        }
        if let Some(since) = self.active_since {
            if self.config.test && now >= since + TEST_STREAM_LIMIT {
                self.end(KickReason::TestLimit, StatusChange::Disabled);
                return;
            }
            if now >= since + self.config.max_continuous_duration {
                self.end(KickReason::MaxContinuousDuration, StatusChange::Idle);
                return;
            }
        }
        if self.window_ends.is_some_and(|t| now >= t) {
            self.finish(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTMP: IngestProtocol = IngestProtocol::Rtmp;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn config(window: u64) -> LifecycleConfig {
        LifecycleConfig {
            reconnect_window: secs(window),
            ..LifecycleConfig::default()
        }
    }

    fn drain(l: &mut Lifecycle) -> Vec<Output> {
        std::iter::from_fn(|| l.poll_output()).collect()
    }

    fn t(state: State, status: Option<StatusChange>, started: bool) -> Output {
        Output::Transition {
            state,
            status,
            broadcast_started: started,
        }
    }

    /// connected → recording → active, checked.
    fn go_live(l: &mut Lifecycle, now: Instant) {
        l.handle_connected(RTMP, now).unwrap();
        l.handle_media(now);
        l.handle_media(now);
        l.handle_segment(now + secs(2));
        l.handle_segment(now + secs(4));
        assert_eq!(
            drain(l),
            vec![
                t(State::Connected, None, true),
                t(State::Recording, None, false),
                t(State::Active, Some(StatusChange::Active(RTMP)), false),
            ]
        );
        assert_eq!(l.state(), State::Active);
    }

    fn idle_end() -> Vec<Output> {
        vec![
            Output::FinishRecording,
            t(State::Idle, Some(StatusChange::Idle), false),
        ]
    }

    #[test]
    fn reconnect_inside_the_window_continues_the_broadcast() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(config(30));
        go_live(&mut l, t0);
        l.handle_disconnected(t0 + secs(10));
        assert_eq!(drain(&mut l), vec![t(State::Disconnected, None, false)]);
        assert_eq!(l.poll_timeout(), Some(t0 + secs(40)));
        l.handle_timeout(t0 + secs(39));
        assert!(drain(&mut l).is_empty());
        l.handle_connected(RTMP, t0 + secs(39)).unwrap();
        l.handle_media(t0 + secs(39));
        l.handle_segment(t0 + secs(41));
        // No second `active`: the broadcast never stopped being active.
        assert_eq!(
            drain(&mut l),
            vec![
                t(State::Connected, None, false),
                t(State::Recording, None, false)
            ]
        );
        assert_eq!(l.state(), State::Active);
        assert!(!l.is_ended());
        // The window no longer runs; only the 12-hour limit does.
        assert_eq!(l.poll_timeout(), Some(t0 + secs(2) + secs(43_200)));
    }

    #[test]
    fn the_window_expires_to_idle() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(config(30));
        go_live(&mut l, t0);
        l.handle_disconnected(t0 + secs(10));
        drain(&mut l);
        l.handle_timeout(t0 + secs(40));
        assert_eq!(drain(&mut l), idle_end());
        assert!(l.is_ended());
        assert_eq!(l.state(), State::Idle);
        assert_eq!(l.poll_timeout(), None);
        assert_eq!(
            l.handle_connected(RTMP, t0 + secs(41)),
            Err(JoinError::Ended)
        );
    }

    #[test]
    fn a_window_of_zero_goes_idle_at_once() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(config(0));
        go_live(&mut l, t0);
        l.handle_disconnected(t0 + secs(5));
        let mut expected = vec![t(State::Disconnected, None, false)];
        expected.extend(idle_end());
        assert_eq!(drain(&mut l), expected);
        assert!(l.is_ended());
    }

    #[test]
    fn reconnect_racing_the_expiry_loses_on_a_tie() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(config(30));
        go_live(&mut l, t0);
        l.handle_disconnected(t0);
        drain(&mut l);
        // The driver had not yet woken for the timer when the encoder came back at the
        // deadline: the window is over, the encoder starts a new broadcast.
        assert_eq!(
            l.handle_connected(RTMP, t0 + secs(30)),
            Err(JoinError::Ended)
        );
        assert_eq!(drain(&mut l), idle_end());
        // One tick earlier it joins.
        let mut l = Lifecycle::new(config(30));
        go_live(&mut l, t0);
        l.handle_disconnected(t0);
        drain(&mut l);
        let just_before = t0 + secs(30) - Duration::from_millis(1);
        assert_eq!(l.handle_connected(RTMP, just_before), Ok(()));
    }

    #[test]
    fn an_encoder_that_never_became_active_still_makes_one_broadcast() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(config(30));
        l.handle_connected(RTMP, t0).unwrap();
        l.handle_disconnected(t0 + secs(1));
        assert_eq!(
            drain(&mut l),
            vec![
                t(State::Connected, None, true),
                t(State::Disconnected, None, false)
            ]
        );
        // No duration limit before it is active.
        assert_eq!(l.poll_timeout(), Some(t0 + secs(31)));
        l.handle_timeout(t0 + secs(31));
        assert_eq!(drain(&mut l), idle_end());
    }

    #[test]
    fn complete_while_connected_and_while_disconnected() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(config(60));
        go_live(&mut l, t0);
        l.handle_complete(t0 + secs(5));
        let mut expected = vec![
            Output::Kick(KickReason::Complete),
            t(State::Disconnected, None, false),
        ];
        expected.extend(idle_end());
        assert_eq!(drain(&mut l), expected);
        assert!(l.is_ended());
        // A second complete is a no-op.
        l.handle_complete(t0 + secs(6));
        assert!(drain(&mut l).is_empty());

        let mut l = Lifecycle::new(config(60));
        go_live(&mut l, t0);
        l.handle_disconnected(t0 + secs(5));
        drain(&mut l);
        l.handle_complete(t0 + secs(6));
        assert_eq!(drain(&mut l), idle_end());
    }

    #[test]
    fn disable_and_delete_end_the_broadcast() {
        let t0 = Instant::now();
        for (input, reason) in [
            (
                Lifecycle::handle_disable as fn(&mut Lifecycle, Instant),
                KickReason::Disabled,
            ),
            (Lifecycle::handle_delete, KickReason::Deleted),
        ] {
            let mut l = Lifecycle::new(config(60));
            go_live(&mut l, t0);
            input(&mut l, t0 + secs(1));
            let mut expected = vec![Output::Kick(reason), t(State::Disconnected, None, false)];
            expected.extend(idle_end());
            assert_eq!(drain(&mut l), expected);

            let mut l = Lifecycle::new(config(60));
            go_live(&mut l, t0);
            l.handle_disconnected(t0 + secs(1));
            drain(&mut l);
            input(&mut l, t0 + secs(2));
            assert_eq!(drain(&mut l), idle_end());
        }
    }

    #[test]
    fn a_stream_key_reset_disconnects_but_keeps_the_window() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(config(60));
        go_live(&mut l, t0);
        l.handle_stream_key_reset(t0 + secs(1));
        assert_eq!(
            drain(&mut l),
            vec![
                Output::Kick(KickReason::StreamKeyReset),
                t(State::Disconnected, None, false)
            ]
        );
        assert!(l.handle_connected(RTMP, t0 + secs(10)).is_ok());
    }

    #[test]
    fn max_continuous_duration_counts_from_active_across_reconnects() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(LifecycleConfig {
            reconnect_window: secs(30),
            max_continuous_duration: secs(60),
            test: false,
        });
        go_live(&mut l, t0); // active at t0 + 2 s
        l.handle_disconnected(t0 + secs(20));
        l.handle_connected(RTMP, t0 + secs(25)).unwrap();
        drain(&mut l);
        assert_eq!(l.poll_timeout(), Some(t0 + secs(62)));
        l.handle_timeout(t0 + secs(61));
        assert!(drain(&mut l).is_empty());
        l.handle_timeout(t0 + secs(62));
        let mut expected = vec![
            Output::Kick(KickReason::MaxContinuousDuration),
            t(State::Disconnected, None, false),
        ];
        expected.extend(idle_end());
        assert_eq!(drain(&mut l), expected);
        assert!(l.is_ended());
    }

    #[test]
    fn a_test_stream_is_disabled_after_five_minutes() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(LifecycleConfig {
            test: true,
            ..config(60)
        });
        go_live(&mut l, t0);
        assert_eq!(l.poll_timeout(), Some(t0 + secs(2) + TEST_STREAM_LIMIT));
        l.handle_timeout(t0 + secs(302));
        assert_eq!(
            drain(&mut l),
            vec![
                Output::Kick(KickReason::TestLimit),
                t(State::Disconnected, None, false),
                Output::FinishRecording,
                t(State::Idle, Some(StatusChange::Disabled), false),
            ]
        );
    }

    #[test]
    fn a_second_encoder_is_busy_until_the_first_is_gone() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(config(60));
        go_live(&mut l, t0);
        assert_eq!(l.handle_connected(RTMP, t0), Err(JoinError::Busy));
        // A stale publisher is replaced: the driver reports it gone, then admits the new one.
        l.handle_disconnected(t0 + secs(9));
        l.handle_connected(IngestProtocol::Srt, t0 + secs(9))
            .unwrap();
        assert_eq!(
            drain(&mut l),
            vec![
                t(State::Disconnected, None, false),
                // Another protocol: the status names it.
                t(
                    State::Connected,
                    Some(StatusChange::Active(IngestProtocol::Srt)),
                    false
                ),
            ]
        );
    }

    #[test]
    fn a_restored_broadcast_waits_its_window_from_the_restart() {
        let t0 = Instant::now();
        let mut l = Lifecycle::restored(config(30), true, t0);
        assert_eq!(drain(&mut l), vec![t(State::Disconnected, None, false)]);
        assert_eq!(l.poll_timeout(), Some(t0 + secs(30)));
        l.handle_timeout(t0 + secs(30));
        assert_eq!(drain(&mut l), idle_end());

        // Already disconnected before the crash: no second `disconnected`.
        let mut l = Lifecycle::restored(config(30), false, t0);
        assert!(drain(&mut l).is_empty());
        // An encoder that comes back ends it and begins a new broadcast.
        assert_eq!(
            l.handle_connected(RTMP, t0 + secs(3)),
            Err(JoinError::Ended)
        );
        assert_eq!(drain(&mut l), idle_end());

        // Window 0: idle at once.
        let mut l = Lifecycle::restored(config(0), true, t0);
        let mut expected = vec![t(State::Disconnected, None, false)];
        expected.extend(idle_end());
        assert_eq!(drain(&mut l), expected);
    }

    #[test]
    fn shutdown_leaves_the_broadcast_disconnected() {
        let t0 = Instant::now();
        let mut l = Lifecycle::new(config(60));
        go_live(&mut l, t0);
        l.handle_shutdown(t0 + secs(3));
        assert_eq!(
            drain(&mut l),
            vec![
                Output::Kick(KickReason::Shutdown),
                t(State::Disconnected, None, false)
            ]
        );
        assert!(l.is_ended());
        assert_eq!(l.poll_timeout(), None);
    }

    #[test]
    fn complete_before_anything_was_announced_records_nothing() {
        let mut l = Lifecycle::new(config(60));
        l.handle_complete(Instant::now());
        assert!(drain(&mut l).is_empty());
        assert!(l.is_ended());
    }
}
