//! `onair remux` end to end: the real binary packages an encoder's FLV into HLS that ffmpeg
//! plays to the end, and refuses broken input with a clear error instead of a panic.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use testkit::{ffmpeg_decode_errors, ffprobe, fixture, scratch_dir};

fn onair() -> Command {
    Command::new(env!("CARGO_BIN_EXE_onair"))
}

#[test]
fn remux_writes_hls_that_plays_to_the_end() {
    let input = fixture("avc_bframes_aac.flv");
    let out = scratch_dir("onair_remux_cli");
    let status = onair()
        .arg("remux")
        .arg(&input)
        .arg(&out)
        .arg("--latency-mode")
        .arg("reduced")
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let errors = ffmpeg_decode_errors(&out.join("index.m3u8"));
    assert!(errors.trim().is_empty(), "{errors}");
    let probe = ffprobe(&[
        "-count_frames",
        "-select_streams",
        "v:0",
        "-show_entries",
        "stream=nb_read_frames",
        out.join("index.m3u8").to_str().unwrap(),
    ]);
    assert_eq!(probe["streams"][0]["nb_read_frames"], "240");
    let text = std::fs::read(out.join("stream.m3u8")).unwrap();
    let m3u8_rs::Playlist::MediaPlaylist(p) = m3u8_rs::parse_playlist_res(&text).unwrap() else {
        panic!("not a media playlist")
    };
    // 1.6 s GOPs: the first keyframe at or after the 2 s target comes at 3.2 s.
    assert_eq!(p.target_duration, 3);
    assert!(p.segments[..p.segments.len() - 1]
        .iter()
        .all(|s| (s.duration - 3.2).abs() < 0.001));
    assert!(p.end_list);
}

#[test]
fn broken_input_is_an_error_not_a_panic() {
    let out = scratch_dir("onair_remux_cli_broken");
    let mut data = std::fs::read(fixture("avc_bframes_aac.flv")).unwrap();
    data.truncate(data.len() / 2);
    let broken = out.join("broken.flv");
    std::fs::write(&broken, &data).unwrap();
    let result = onair()
        .arg("remux")
        .arg(&broken)
        .arg(out.join("hls"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("truncated FLV file"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let result = onair()
        .arg("remux")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .arg(out.join("x"))
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(1));
}

#[test]
fn config_file_sets_the_latency_mode_and_refuses_unknown_keys() {
    let out = scratch_dir("onair_remux_cli_config");
    let input = fixture("avc_bframes_aac.flv");
    // The shipped, documented configuration is valid as it stands.
    let shipped = testkit::workspace_root().join("config/onair.toml");
    let result = onair()
        .arg("--config")
        .arg(&shipped)
        .arg("remux")
        .arg(&input)
        .arg(out.join("a"))
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );

    let reduced = out.join("reduced.toml");
    std::fs::write(&reduced, "[hls]\nlatency_mode = \"reduced\"\n").unwrap();
    let result = onair()
        .arg("--config")
        .arg(&reduced)
        .arg("remux")
        .arg(&input)
        .arg(out.join("b"))
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let text = std::fs::read_to_string(out.join("b/stream.m3u8")).unwrap();
    assert!(text.contains("#EXT-X-TARGETDURATION:3\n"), "{text}");

    let typo = out.join("typo.toml");
    std::fs::write(&typo, "[hls]\nlive_windw = 3\n").unwrap();
    let result = onair()
        .arg("--config")
        .arg(&typo)
        .arg("remux")
        .arg(&input)
        .arg(out.join("c"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unknown field `live_windw`"), "{stderr}");

    let too_many = out.join("too_many.toml");
    std::fs::write(
        &too_many,
        "[hls]\nlive_window = 3\nsegments_in_memory = 4\n",
    )
    .unwrap();
    let result = onair()
        .arg("--config")
        .arg(&too_many)
        .arg("remux")
        .arg(&input)
        .arg(out.join("d"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("[hls] segments_in_memory (4) must not exceed [hls] live_window (3)"),
        "{stderr}"
    );
}
