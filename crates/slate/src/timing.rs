//! Timestamps of slate media from running counts, so that no rounding accumulates: the n-th
//! video frame is at `n * 90000 * den / num`, the n-th AAC frame at
//! `n * 1024 * 90000 / sample_rate`, both floored, however long the run.

use media::TIMESCALE;

/// A frame rate as a fraction: 30000/1001 for 29.97, 25/1 for 25.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameRate {
    pub(crate) num: u32,
    pub(crate) den: u32,
}

impl FrameRate {
    /// The fraction for `fps`: NTSC rates (`N * 1000 / 1001`) exactly, whole rates exactly,
    /// anything else to a thousandth of a frame per second. `None` for rates outside
    /// (0, 1000].
    pub(crate) fn from_f64(fps: f64) -> Option<Self> {
        if !fps.is_finite() || fps <= 0.0 || fps > 1000.0 {
            return None;
        }
        let ntsc = fps * 1001.0 / 1000.0;
        let rate = if (fps - fps.round()).abs() < 1e-6 {
            FrameRate {
                num: fps.round() as u32,
                den: 1,
            }
        } else if (ntsc - ntsc.round()).abs() < 1e-3 {
            FrameRate {
                num: ntsc.round() as u32 * 1000,
                den: 1001,
            }
        } else {
            FrameRate {
                num: (fps * 1000.0).round() as u32,
                den: 1000,
            }
        };
        (rate.num > 0).then_some(rate)
    }

    pub(crate) fn as_f64(self) -> f64 {
        f64::from(self.num) / f64::from(self.den)
    }

    /// Frames in `seconds`, rounded to the nearest frame.
    pub(crate) fn frames_in(self, seconds: f64) -> f64 {
        (seconds * self.as_f64()).round()
    }

    /// Offset of frame `n` from the start of a run, in 90 kHz ticks.
    pub(crate) fn offset(self, n: u64) -> u64 {
        (u128::from(n) * u128::from(TIMESCALE) * u128::from(self.den) / u128::from(self.num)) as u64
    }
}

/// Offset of AAC frame `n` (1024 samples each) from the start of a run, in 90 kHz ticks.
pub(crate) fn audio_offset(n: u64, sample_rate: u32) -> u64 {
    let samples = u128::from(n) * u128::from(media::aac::SAMPLES_PER_FRAME);
    (samples * u128::from(TIMESCALE) / u128::from(sample_rate)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_of_common_rates() {
        let f = |fps| FrameRate::from_f64(fps).map(|r| (r.num, r.den));
        assert_eq!(f(30.0), Some((30, 1)));
        assert_eq!(f(25.0), Some((25, 1)));
        assert_eq!(f(29.97), Some((30_000, 1001)));
        assert_eq!(f(30_000.0 / 1001.0), Some((30_000, 1001)));
        assert_eq!(f(23.976), Some((24_000, 1001)));
        assert_eq!(f(59.94), Some((60_000, 1001)));
        assert_eq!(f(12.5), Some((12_500, 1000)));
        assert_eq!(f(0.0), None);
        assert_eq!(f(-5.0), None);
        assert_eq!(f(f64::NAN), None);
        assert_eq!(f(f64::INFINITY), None);
    }

    #[test]
    fn offsets_do_not_drift() {
        let ntsc = FrameRate {
            num: 30_000,
            den: 1001,
        };
        assert_eq!(ntsc.offset(1), 3003);
        // Ten hours of 29.97 fps: still exactly 3003 ticks a frame.
        assert_eq!(ntsc.offset(1_078_920), 1_078_920 * 3003);
        let film = FrameRate {
            num: 24_000,
            den: 1001,
        };
        assert_eq!(film.offset(4), 15_015); // 3753.75 ticks a frame, floored at the end only
                                            // 44.1 kHz: 1024 samples are 2089.79 ticks; 441 frames are exactly 921,600 ticks.
        assert_eq!(audio_offset(1, 44_100), 2089);
        assert_eq!(audio_offset(441, 44_100), 921_600);
        assert_eq!(audio_offset(1, 48_000), 1920);
    }
}
