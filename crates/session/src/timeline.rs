//! One media timeline for a whole broadcast.
//!
//! An encoder that reconnects starts its timestamps again (usually at 0). The live playlist
//! marks the gap with `EXT-X-DISCONTINUITY`, but the broadcast's recording is one file set
//! that players and tools (ffmpeg's HLS reader among them) read as one timeline: timestamps
//! that jump back make them report "DTS out of order" and drop or misorder frames. So the
//! frames of every connection after the first are shifted to continue just after the newest
//! timestamp of the previous one: the recording plays straight through, the gap is still
//! marked, and the relative timing within each connection is untouched.

use media::Frame;

/// Space left between the last frame of one connection and the first of the next (one frame
/// at 30 fps, in 90 kHz ticks).
pub(crate) const RECONNECT_GAP: u64 = 3000;

/// The broadcast's timestamp offset for the current connection.
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    /// Added to every timestamp of the current connection.
    offset: i64,
    /// The next frame is the first of a new connection: compute its offset.
    rebase: bool,
    /// The largest timestamp output so far (PTS is never below DTS).
    newest: Option<u64>,
}

fn shift(ts: u64, offset: i64) -> u64 {
    u64::try_from((ts as i64).saturating_add(offset)).unwrap_or(0)
}

impl Timeline {
    /// A new connection of the same broadcast begins: its first frame continues the timeline.
    pub(crate) fn handle_new_connection(&mut self) {
        self.rebase = self.newest.is_some();
    }

    /// Moves `frame` onto the broadcast's timeline.
    pub(crate) fn apply(&mut self, frame: &mut Frame) {
        if self.rebase {
            self.rebase = false;
            let next = self.newest.unwrap_or(0) + RECONNECT_GAP;
            self.offset = next as i64 - frame.dts as i64;
        }
        if self.offset != 0 {
            frame.pts = shift(frame.pts, self.offset);
            frame.dts = shift(frame.dts, self.offset);
        }
        self.newest = Some(self.newest.map_or(frame.pts, |n| n.max(frame.pts)));
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use media::Track;

    use super::*;

    fn frame(track: Track, dts: u64, pts: u64) -> Frame {
        Frame {
            track,
            pts,
            dts,
            keyframe: true,
            data: Bytes::new(),
        }
    }

    #[test]
    fn the_first_connection_is_untouched_and_the_next_continue_after_it() {
        let mut t = Timeline::default();
        let mut f = frame(Track::Video, 1000, 7000);
        t.apply(&mut f);
        assert_eq!((f.dts, f.pts), (1000, 7000));
        let mut f = frame(Track::Audio, 5000, 5000);
        t.apply(&mut f);
        assert_eq!(f.dts, 5000);

        // The encoder comes back with timestamps from 0: its first frame lands one gap after
        // the newest timestamp so far (the B-frame's PTS 7000), the rest keep their spacing.
        t.handle_new_connection();
        let mut first = frame(Track::Audio, 0, 0);
        t.apply(&mut first);
        assert_eq!(first.dts, 7000 + RECONNECT_GAP);
        let mut video = frame(Track::Video, 300, 3300);
        t.apply(&mut video);
        assert_eq!(
            (video.dts, video.pts),
            (7300 + RECONNECT_GAP, 10_300 + RECONNECT_GAP)
        );

        // A third connection that starts later than the timeline: moved back onto it.
        t.handle_new_connection();
        let mut late = frame(Track::Video, 900_000, 900_000);
        t.apply(&mut late);
        assert_eq!(late.dts, 10_300 + 2 * RECONNECT_GAP);
    }

    #[test]
    fn a_new_connection_before_any_frame_changes_nothing() {
        let mut t = Timeline::default();
        t.handle_new_connection();
        let mut f = frame(Track::Video, 42, 42);
        t.apply(&mut f);
        assert_eq!(f.dts, 42);
    }
}
