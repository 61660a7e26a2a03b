//! Rendering and running slates through the public API, and hostile images (no external
//! tools; what players make of the output is in `tests/players.rs`).

use std::time::Duration;

use super::*;
use media::{Frame, Track, TIMESCALE};

fn spec(width: u32, height: u32, frame_rate: f64, audio: Option<(u32, u8)>) -> SlateSpec {
    SlateSpec {
        width,
        height,
        frame_rate,
        gop_duration: Duration::from_secs(2),
        audio: audio.map(|(sample_rate, channels)| AudioSpec {
            sample_rate,
            channels,
        }),
    }
}

fn of(frames: &[Frame], track: Track) -> Vec<&Frame> {
    frames.iter().filter(|f| f.track == track).collect()
}

#[test]
fn slates_and_runs_can_be_shared_between_tasks() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Slate>();
    shareable::<SlateRun<'_>>();
    shareable::<SlateError>();
}

#[test]
fn renders_720p30_stereo_as_ingested_h264_and_aac() {
    let slate = Slate::render(default_image(), &spec(1280, 720, 30.0, Some((48_000, 2)))).unwrap();
    let video = slate.config().video.as_ref().unwrap();
    assert_eq!((video.width, video.height), (1280, 720));
    assert_eq!(video.frame_rate, Some(30.0));
    assert!(!video.is_hevc());
    // Constrained baseline (profile 66, constraint_set1), level 3.1.
    assert_eq!(video.codec_string, "avc1.42c01f");
    assert_eq!(video.parameter_sets.len(), 2);
    let audio = &slate.config().audio.as_ref().unwrap().asc;
    assert_eq!(
        (audio.object_type, audio.sample_rate(), audio.channels()),
        (2, 48_000, 2)
    );
    assert_eq!(slate.config().codecs(), "avc1.42c01f,mp4a.40.2");
    assert_eq!(slate.gop_frames(), 60);
    // The IDR carries the picture; the P frames that repeat it are tiny.
    let (idr, rest) = slate.gop.split_first().unwrap();
    assert!(idr.len() > 5_000, "IDR of {} bytes", idr.len());
    assert!(rest.iter().all(|p| p.len() < 1_000));
    assert_eq!(slate.gop_bytes(), slate.gop.iter().map(|f| f.len()).sum());
    // AVCC with 4-byte lengths, no parameter sets in band: IDR slice first, then non-IDR.
    assert_eq!(
        u32::from_be_bytes(idr[..4].try_into().unwrap()) as usize + 4,
        idr.len()
    );
    assert_eq!(idr[4] & 0x1f, 5);
    assert!(rest.iter().all(|p| p[4] & 0x1f == 1));
}

#[test]
fn renders_1080p_with_the_exact_height_and_ntsc_rate() {
    let slate = Slate::render(default_image(), &spec(1920, 1080, 29.97, None)).unwrap();
    let video = slate.config().video.as_ref().unwrap();
    assert_eq!(
        (video.width, video.height),
        (1920, 1080),
        "cropped from 1088"
    );
    assert!((video.frame_rate.unwrap() - 29.97).abs() < 1e-3);
    assert_eq!(video.codec_string, "avc1.42c028");
    assert!(slate.config().audio.is_none());
    // 2 s at 29.97 fps is 59.94 frames: 60.
    assert_eq!(slate.gop_frames(), 60);
    let mut run = slate.run(0);
    let frames = run.frames_until(10 * TIMESCALE);
    assert!(frames.iter().all(|f| f.track == Track::Video));
    assert_eq!(frames[1].dts, 3003);
    assert_eq!(run.position(), 300 * 3003);
}

#[test]
fn a_run_cycles_the_gop_and_shares_its_bytes() {
    let slate = Slate::render(default_image(), &spec(1280, 720, 30.0, Some((48_000, 2)))).unwrap();
    let start = 123_456_789;
    let mut run = slate.run(start);
    assert_eq!(run.position(), start);
    let frames = run.frames_until(start + 6 * TIMESCALE);
    assert_eq!(frames[0].dts, start);
    let video = of(&frames, Track::Video);
    let audio = of(&frames, Track::Audio);
    assert_eq!(video.len(), 180);
    // Audio frames whose dts is below 6 s: n * 1920 < 540000, n = 0..=281.
    assert_eq!(audio.len(), 282);
    for (k, f) in video.iter().enumerate() {
        assert_eq!(f.dts, start + k as u64 * 3000);
        assert_eq!(f.pts, f.dts);
        assert_eq!(f.keyframe, k % 60 == 0, "frame {k}");
        // Re-stamped only: the same allocation as the GOP's frame.
        assert_eq!(f.data.as_ptr(), slate.gop[k % 60].as_ptr());
    }
    for (n, f) in audio.iter().enumerate() {
        assert_eq!(f.dts, start + n as u64 * 1920);
        assert!(f.keyframe);
        assert_eq!(f.data.len(), 6);
    }
    // In dts order across tracks, video first at equal dts.
    assert!(frames.windows(2).all(|w| w[0].dts <= w[1].dts));
    assert_eq!(frames[0].track, Track::Video);
    assert_eq!(frames[1].track, Track::Audio);
    assert_eq!(run.position(), start + 6 * TIMESCALE);
    // Nothing twice, nothing for a time already passed.
    assert!(run.frames_until(start + 6 * TIMESCALE).is_empty());
    assert!(run.frames_until(0).is_empty());
}

#[test]
fn a_run_in_pieces_equals_a_run_in_one_go() {
    let slate = Slate::render(default_image(), &spec(640, 360, 25.0, Some((44_100, 1)))).unwrap();
    let whole = slate.run(7).frames_until(7 + 20 * TIMESCALE);
    let mut run = slate.run(7);
    let mut pieces = Vec::new();
    let mut until = 7;
    for step in [1u64, 2_089, 3_600, 90_000, 1, 0, 177_777, 1_000_000] {
        until += step;
        pieces.extend(run.frames_until(until));
    }
    pieces.extend(run.frames_until(7 + 20 * TIMESCALE));
    assert_eq!(pieces, whole);
}

/// Audio and video stay in step over a minute, asked for a segment at a time as a session
/// would: the last dts of the two tracks differ by less than one audio frame, and each track
/// has exactly the frames its clock gives (no gap, no drift).
#[test]
fn audio_and_video_stay_in_sync_over_60_seconds() {
    for (fps, rate, channels) in [(25.0, 44_100, 1), (29.97, 48_000, 2), (30.0, 22_050, 2)] {
        let slate = Slate::render(
            default_image(),
            &spec(320, 180, fps, Some((rate, channels))),
        )
        .unwrap();
        let start = 5 * TIMESCALE;
        let mut run = slate.run(start);
        let mut frames = Vec::new();
        for second in (2..=60).step_by(2) {
            frames.extend(run.frames_until(start + second * TIMESCALE));
        }
        let video = of(&frames, Track::Video);
        let audio = of(&frames, Track::Audio);
        let audio_frame = 1024 * TIMESCALE / u64::from(rate) + 1;
        let (last_v, last_a) = (video.last().unwrap().dts, audio.last().unwrap().dts);
        assert!(
            last_v.abs_diff(last_a) < audio_frame,
            "{fps} fps, {rate} Hz: last video {last_v}, last audio {last_a}"
        );
        let expected_video = (60.0 * fps).ceil() as usize;
        assert_eq!(video.len(), expected_video, "{fps} fps");
        let expected_audio = (60 * u64::from(rate)).div_ceil(1024) as usize;
        assert_eq!(audio.len(), expected_audio, "{rate} Hz");
        assert!(video.windows(2).all(|w| w[0].dts < w[1].dts));
        assert!(audio.windows(2).all(|w| w[0].dts < w[1].dts));
        let keyframes = video.iter().filter(|f| f.keyframe).count();
        assert_eq!(keyframes, 30, "{fps} fps: a keyframe every 2 s");
    }
}

#[test]
fn invalid_specs_are_refused_before_any_work() {
    let refused = |s: SlateSpec| {
        assert!(
            matches!(
                Slate::render(default_image(), &s),
                Err(SlateError::InvalidSpec(_))
            ),
            "{s:?}"
        )
    };
    refused(spec(1279, 720, 30.0, None));
    refused(spec(1280, 721, 30.0, None));
    refused(spec(8, 8, 30.0, None));
    refused(spec(4096, 2160, 30.0, None));
    refused(spec(2176, 2400, 30.0, None));
    refused(spec(1280, 720, 0.0, None));
    refused(spec(1280, 720, f64::NAN, None));
    refused(spec(1280, 720, 240.0, None));
    refused(spec(1280, 720, 30.0, Some((44_000, 2))));
    let mut short = spec(1280, 720, 30.0, None);
    short.gop_duration = Duration::from_millis(40);
    refused(short);
    let mut long = spec(1280, 720, 30.0, None);
    long.gop_duration = Duration::from_secs(60);
    refused(long);
}

#[test]
fn channel_counts_without_an_aac_configuration_get_stereo() {
    let slate = Slate::render(default_image(), &spec(320, 180, 30.0, Some((48_000, 7)))).unwrap();
    assert_eq!(slate.config().audio.as_ref().unwrap().asc.channels(), 2);
    let slate = Slate::render(default_image(), &spec(320, 180, 30.0, Some((48_000, 8)))).unwrap();
    assert_eq!(slate.config().audio.as_ref().unwrap().asc.channel_config, 7);
}

/// A PNG whose IHDR claims `width` x `height` (the CRC is not checked before the size).
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    png.extend(width.to_be_bytes());
    png.extend(height.to_be_bytes());
    png.extend([8, 2, 0, 0, 0, 0, 0, 0, 0]);
    png
}

#[test]
fn hostile_images_are_errors_not_panics() {
    let s = spec(320, 180, 30.0, None);
    let image = default_image();
    let err = |bytes: &[u8]| Slate::render(bytes, &s).unwrap_err();
    assert!(matches!(
        err(&image[..image.len() / 2]),
        SlateError::Decode { format: "PNG", .. }
    ));
    assert!(matches!(
        err(&image[..40]),
        SlateError::Decode { format: "PNG", .. }
    ));
    assert!(matches!(
        err(&png_header(100_000, 100_000)),
        SlateError::TooManyPixels {
            width: 100_000,
            height: 100_000,
            ..
        }
    ));
    assert!(matches!(
        err(&png_header(0, 10)),
        SlateError::TooManyPixels { .. }
    ));
    assert!(matches!(
        err(&png_header(u32::MAX, u32::MAX)),
        SlateError::TooManyPixels { .. }
    ));
    assert!(matches!(err(b""), SlateError::UnsupportedFormat));
    assert!(matches!(err(b"GIF89a"), SlateError::UnsupportedFormat));
    assert!(matches!(
        err(&vec![0xff; MAX_IMAGE_BYTES + 1]),
        SlateError::ImageTooLarge { .. }
    ));
    assert!(matches!(
        err(&[0xff, 0xd8, 0xff]),
        SlateError::Decode { format: "JPEG", .. }
    ));
    // The message names the problem.
    let message = err(&png_header(100_000, 100_000)).to_string();
    assert!(message.contains("100000x100000"), "{message}");
}

/// Random bytes behind each signature, and the default slate with bytes flipped: decoding
/// returns (an error, or a picture) and never panics.
#[test]
fn random_and_corrupted_images_never_panic() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let prefixes: [&[u8]; 3] = [b"", b"\x89PNG\r\n\x1a\n", &[0xff, 0xd8, 0xff]];
    for i in 0..600 {
        let len = (next() % 600) as usize;
        let mut bytes = prefixes[i % 3].to_vec();
        bytes.extend((0..len).map(|_| next() as u8));
        let _ = picture::decode(&bytes);
    }
    let image = default_image();
    for _ in 0..40 {
        let mut bytes = image.to_vec();
        for _ in 0..4 {
            let at = (next() as usize) % bytes.len();
            bytes[at] ^= 1 << (next() % 8);
        }
        let _ = picture::decode(&bytes);
        let cut = (next() as usize) % bytes.len();
        assert!(picture::decode(&bytes[..cut]).is_err());
    }
}

#[test]
fn the_default_image_is_a_small_1080p_png() {
    let image = default_image();
    assert!(image.len() < 200 * 1024);
    let picture = picture::decode(image).unwrap();
    assert_eq!((picture.width, picture.height), (1920, 1080));
}
