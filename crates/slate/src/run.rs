//! A run of slate media: the encoded GOP cycled and the silent AAC frame repeated, each frame
//! only re-stamped (its bytes are shared, not copied).

use std::ops::Deref;
use std::sync::Arc;

use media::{Frame, Track};

use crate::timing::audio_offset;
use crate::Slate;

/// A continuous run of slate media from [`Slate::run`]: video and audio frames in decoding
/// order, on the 90 kHz clock, starting at the run's `start`.
///
/// Video cycles the encoded GOP (each cycle starts with the IDR, a keyframe); audio is one
/// silent AAC frame after another, stamped from a running sample count, so the two tracks
/// stay in step however long the run (they never differ by more than one audio frame).
#[derive(Debug, Clone)]
pub struct SlateRun<'a> {
    slate: SlateRef<'a>,
    start: u64,
    /// Index of the next video frame since the start of the run.
    video: u64,
    /// Index of the next audio frame since the start of the run.
    audio: u64,
}

/// The slate a run reads: borrowed ([`Slate::run`]) or shared ([`Slate::run_shared`], for a
/// run that lives beside its slate in one owner, such as a live stream's session).
#[derive(Debug, Clone)]
enum SlateRef<'a> {
    Borrowed(&'a Slate),
    Shared(Arc<Slate>),
}

impl Deref for SlateRef<'_> {
    type Target = Slate;

    fn deref(&self) -> &Slate {
        match self {
            SlateRef::Borrowed(s) => s,
            SlateRef::Shared(s) => s,
        }
    }
}

impl SlateRun<'static> {
    pub(crate) fn shared(slate: Arc<Slate>, start: u64) -> Self {
        SlateRun {
            slate: SlateRef::Shared(slate),
            start,
            video: 0,
            audio: 0,
        }
    }
}

impl<'a> SlateRun<'a> {
    pub(crate) fn new(slate: &'a Slate, start: u64) -> Self {
        SlateRun {
            slate: SlateRef::Borrowed(slate),
            start,
            video: 0,
            audio: 0,
        }
    }

    fn next_video_dts(&self) -> u64 {
        self.start + self.slate.frame_rate.offset(self.video)
    }

    fn next_audio_dts(&self) -> Option<u64> {
        let audio = self.slate.audio.as_ref()?;
        Some(self.start + audio_offset(self.audio, audio.sample_rate))
    }

    /// Every frame (video and audio, in dts order across both tracks; video first at equal
    /// dts) with dts < `until` that has not been returned yet. Nothing when `until` is at or
    /// before [`SlateRun::position`].
    pub fn frames_until(&mut self, until: u64) -> Vec<Frame> {
        let span = until.saturating_sub(self.position());
        // Roughly the frames of `span`: avoids regrowing the vector for a segment's worth.
        let video_ticks = self.slate.frame_rate.offset(1).max(1);
        let audio_ticks = self
            .slate
            .audio
            .as_ref()
            .map(|a| audio_offset(1, a.sample_rate));
        let estimate = span / video_ticks + audio_ticks.map_or(0, |t| span / t.max(1));
        let mut frames = Vec::with_capacity(estimate as usize + 2);
        loop {
            let video_dts = self.next_video_dts();
            let audio_dts = self.next_audio_dts();
            let take_audio = audio_dts.is_some_and(|a| a < video_dts);
            let dts = audio_dts.filter(|_| take_audio).unwrap_or(video_dts);
            if dts >= until {
                break;
            }
            if let (true, Some(audio)) = (take_audio, &self.slate.audio) {
                frames.push(Frame {
                    track: Track::Audio,
                    pts: dts,
                    dts,
                    keyframe: true,
                    data: audio.frame.clone(),
                });
                self.audio += 1;
            } else {
                let gop = &self.slate.gop;
                let index = (self.video % gop.len() as u64) as usize;
                frames.push(Frame {
                    track: Track::Video,
                    pts: dts,
                    dts,
                    keyframe: index == 0,
                    data: gop[index].clone(),
                });
                self.video += 1;
            }
        }
        frames
    }

    /// The dts of the next frame [`SlateRun::frames_until`] will return.
    pub fn position(&self) -> u64 {
        let video = self.next_video_dts();
        self.next_audio_dts()
            .map_or(video, |audio| audio.min(video))
    }
}
