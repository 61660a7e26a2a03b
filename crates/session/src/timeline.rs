//! One media timeline for a whole broadcast.
//!
//! An encoder that reconnects starts its timestamps again (usually at 0). The live playlist
//! marks the gap with `EXT-X-DISCONTINUITY`, but the broadcast's recording is one file set
//! that players and tools (ffmpeg's HLS reader among them) read as one timeline: timestamps
//! that jump back make them report "DTS out of order" and drop or misorder frames. So the
//! frames of every connection after the first are shifted to continue just after the previous
//! one: the recording plays straight through, the gap is still marked, and the relative
//! timing within each connection is untouched. Slate is a stretch of its own, placed the same
//! way, so that at both its edges video continues one frame interval after the last frame.

use media::{Frame, Track};

/// Space left after the newest timestamp of a track whose frame interval is not known yet
/// (one frame at 30 fps, in 90 kHz ticks).
pub(crate) const RECONNECT_GAP: u64 = 3000;

/// Frame intervals longer than this (a gap in the media, not its rate) are not taken as the
/// track's interval (100 ms).
const MAX_INTERVAL: u64 = 9000;

/// What the timeline knows of one track of the stretch so far.
#[derive(Debug, Clone, Copy)]
struct TrackTimes {
    /// The largest presentation time output.
    newest_pts: u64,
    /// The decoding time of the last frame output.
    last_dts: u64,
    /// The last distance between two consecutive frames (the frame interval).
    interval: u64,
}

/// The broadcast's timestamp offset for the current stretch of media (a connection, or slate).
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    /// Added to every timestamp of the current stretch.
    offset: i64,
    /// The next frame is the first of a new stretch: compute its offset.
    rebase: bool,
    video: Option<TrackTimes>,
    audio: Option<TrackTimes>,
    /// Per track (video, audio): frames of the new stretch that would decode at or before
    /// this (the previous stretch's last frame of the track) are dropped, until one passes.
    floor: [Option<u64>; 2],
}

fn shift(ts: u64, offset: i64) -> u64 {
    u64::try_from((ts as i64).saturating_add(offset)).unwrap_or(0)
}

fn index(track: Track) -> usize {
    match track {
        Track::Video => 0,
        Track::Audio => 1,
    }
}

impl Timeline {
    /// A new stretch of the same broadcast begins (an encoder reconnected, slate starts or
    /// ends): its first frame continues the timeline.
    pub(crate) fn handle_new_connection(&mut self) {
        self.rebase = self.video.is_some() || self.audio.is_some();
    }

    fn times(&self, track: Track) -> Option<TrackTimes> {
        match track {
            Track::Video => self.video,
            Track::Audio => self.audio,
        }
    }

    /// Moves `frame` onto the broadcast's timeline; `false` when it must be dropped (it would
    /// overlap the end of the previous stretch of its track).
    ///
    /// A stretch that starts with video (slate, and the encoder's media taking over from
    /// slate at a keyframe) is presented one video frame interval after the previous
    /// stretch's video; one that starts with audio continues just after the newest timestamp
    /// so far. Frames of the new stretch that would then decode at or before the previous
    /// stretch's last frame of their track are dropped (a frame or two of audio at a switch),
    /// so that no track goes back in time.
    pub(crate) fn apply(&mut self, frame: &mut Frame) -> bool {
        if self.rebase {
            self.rebase = false;
            self.offset = match self.times(frame.track) {
                // Video continues one frame interval after the previous stretch's video, in
                // presentation and (if the first frame is presented after it decodes, as with
                // B-frames) no earlier than one interval after its last decoding time.
                Some(t) if frame.track == Track::Video => {
                    let by_pts = (t.newest_pts + t.interval) as i64 - frame.pts as i64;
                    let by_dts = (t.last_dts + t.interval) as i64 - frame.dts as i64;
                    by_pts.max(by_dts)
                }
                // Otherwise (a reconnecting encoder usually sends audio first) just after
                // the newest timestamp of either track.
                _ => {
                    let newest = [self.video, self.audio]
                        .iter()
                        .flatten()
                        .map(|t| t.newest_pts)
                        .max()
                        .unwrap_or(0);
                    (newest + RECONNECT_GAP) as i64 - frame.dts as i64
                }
            };
            self.floor = [
                self.video.map(|t| t.last_dts),
                self.audio.map(|t| t.last_dts),
            ];
        }
        if self.offset != 0 {
            frame.pts = shift(frame.pts, self.offset);
            frame.dts = shift(frame.dts, self.offset);
        }
        let slot = index(frame.track);
        if let Some(floor) = self.floor[slot] {
            if frame.dts <= floor {
                return false;
            }
            self.floor[slot] = None;
        }
        let times = match frame.track {
            Track::Video => &mut self.video,
            Track::Audio => &mut self.audio,
        };
        *times = Some(match *times {
            None => TrackTimes {
                newest_pts: frame.pts,
                last_dts: frame.dts,
                interval: RECONNECT_GAP,
            },
            Some(t) => {
                let step = frame.dts.saturating_sub(t.last_dts);
                TrackTimes {
                    newest_pts: t.newest_pts.max(frame.pts),
                    last_dts: frame.dts,
                    interval: if (1..=MAX_INTERVAL).contains(&step) {
                        step
                    } else {
                        t.interval
                    },
                }
            }
        });
        true
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
        assert!(t.apply(&mut f));
        assert_eq!((f.dts, f.pts), (1000, 7000));
        let mut f = frame(Track::Audio, 5000, 5000);
        assert!(t.apply(&mut f));
        assert_eq!(f.dts, 5000);

        // The encoder comes back with timestamps from 0, audio first: its first frame lands
        // one gap after the newest timestamp so far (the B-frame's PTS 7000), the rest keep
        // their spacing.
        t.handle_new_connection();
        let mut first = frame(Track::Audio, 0, 0);
        assert!(t.apply(&mut first));
        assert_eq!(first.dts, 7000 + RECONNECT_GAP);
        let mut video = frame(Track::Video, 300, 3300);
        assert!(t.apply(&mut video));
        assert_eq!(
            (video.dts, video.pts),
            (7300 + RECONNECT_GAP, 10_300 + RECONNECT_GAP)
        );

        // A third connection that starts later than the timeline: moved back onto it.
        t.handle_new_connection();
        let mut late = frame(Track::Audio, 900_000, 900_000);
        assert!(t.apply(&mut late));
        assert_eq!(late.dts, 10_300 + 2 * RECONNECT_GAP);
    }

    #[test]
    fn a_new_connection_before_any_frame_changes_nothing() {
        let mut t = Timeline::default();
        t.handle_new_connection();
        let mut f = frame(Track::Video, 42, 42);
        assert!(t.apply(&mut f));
        assert_eq!(f.dts, 42);
    }

    /// Slate in and out: video continues exactly one frame interval after the previous
    /// stretch's video; audio that would go back in time is dropped.
    #[test]
    fn a_stretch_starting_with_video_continues_its_video_without_a_gap() {
        let mut t = Timeline::default();
        // 30 fps video (3000 ticks) and 48 kHz AAC (1920 ticks); audio runs ahead a little.
        for i in 0..10u64 {
            assert!(t.apply(&mut frame(Track::Video, i * 3000, i * 3000)));
        }
        for i in 0..17u64 {
            assert!(t.apply(&mut frame(Track::Audio, i * 1920, i * 1920)));
        }
        // Slate: its own timestamps from 0, video first at equal times.
        t.handle_new_connection();
        let mut v = frame(Track::Video, 0, 0);
        assert!(t.apply(&mut v));
        assert_eq!(v.pts, 9 * 3000 + 3000, "one frame after the last video");
        // Audio at 0 and 1920 would decode before the last audio (16 * 1920 = 30720).
        let mut a0 = frame(Track::Audio, 0, 0);
        assert!(!t.apply(&mut a0));
        let mut a1 = frame(Track::Audio, 1920, 1920);
        assert!(t.apply(&mut a1), "31920 > 30720");
        assert_eq!(a1.dts, 31_920);
        assert!(t.apply(&mut frame(Track::Video, 3000, 3000)));

        // The encoder's media takes over at a keyframe presented after it decodes (B-frames):
        // it neither goes back in decoding time nor overlaps.
        t.handle_new_connection();
        let mut k = frame(Track::Video, 500_000, 506_000);
        assert!(t.apply(&mut k));
        assert_eq!(
            k.dts,
            33_000 + 3000,
            "one interval after the last slate video"
        );
        assert_eq!(k.pts, 36_000 + 6000);
    }
}
