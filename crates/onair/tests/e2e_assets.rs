//! End to end: a broadcast's asset played by its own playback ID, with the real `onair serve`,
//! ffmpeg publishing over RTMP, and ffmpeg/ffprobe playing over HTTP.
//!
//! What is checked: while the broadcast is live, the asset's playback ID plays the whole
//! broadcast from its first segment (DVR: an `EVENT` playlist starting at segment 0, which
//! decodes); once the stream is idle it plays on demand (`VOD` with `EXT-X-ENDLIST`), ffmpeg
//! decodes every frame of it without an error, and its duration is within one segment of what
//! was sent; the asset's API object says the same.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use testkit::encoder::Encoder;
use testkit::gateway::Gateway;
use testkit::http::get;

/// What ffmpeg sends: the 720p30 fixture (2 s GOP), 10 s in real time.
const SENT_SECONDS: u32 = 10;

#[test]
fn an_assets_playback_id_plays_the_broadcast_live_from_the_start_then_on_demand() {
    let gw = Gateway::start(Path::new(env!("CARGO_BIN_EXE_onair")), "e2e_assets", &[]);
    let http = gw.http.unwrap();
    let (status, created) = gw.api(
        "POST",
        "/live-streams",
        Some(
            // No reconnect window: no slate after the encoder stops, the VOD is what was sent.
            r#"{"playback_policies": ["public"], "reconnect_window": 0, "latency_mode": "reduced",
                "new_asset_settings": {"playback_policies": ["public"], "passthrough": "vod"}}"#,
        ),
    );
    assert_eq!(status, 201, "{created}");
    let stream = &created["data"];
    let id = stream["id"].as_str().unwrap().to_owned();
    let key = stream["stream_key"].as_str().unwrap();
    let mut encoder = Encoder::ffmpeg_720p(
        &format!("rtmp://{}/app/{key}", gw.rtmp.unwrap()),
        Some(SENT_SECONDS),
    );

    // Live: the stream names its active asset, whose playback ID plays from the start.
    let asset_id = testkit::wait_for("an active asset", Duration::from_secs(20), || {
        let (_, v) = gw.api("GET", &format!("/live-streams/{id}"), None);
        v["data"]["active_asset_id"].as_str().map(str::to_owned)
    });
    let (status, asset) = gw.api("GET", &format!("/assets/{asset_id}"), None);
    assert_eq!(status, 200, "{asset}");
    let asset = &asset["data"];
    assert_eq!(asset["status"], "preparing", "{asset}");
    assert_eq!(asset["is_live"], true, "{asset}");
    assert_eq!(asset["live_stream_id"], id.as_str());
    assert_eq!(asset["passthrough"], "vod");
    assert_eq!(asset["playback_ids"][0]["policy"], "public");
    let pid = asset["playback_ids"][0]["id"].as_str().unwrap().to_owned();
    let dvr = testkit::wait_for("two recorded segments", Duration::from_secs(20), || {
        let r = get(http, &format!("/{pid}/stream.m3u8")).unwrap();
        let text = r.text();
        (r.status == 200 && text.contains(&format!("{asset_id}/1.ts"))).then_some(text)
    });
    assert!(dvr.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n"), "{dvr}");
    assert!(!dvr.contains("#EXT-X-ENDLIST"), "{dvr}");
    assert!(dvr.contains("#EXT-X-MEDIA-SEQUENCE:0\n"), "{dvr}");
    let first_uri = dvr.lines().find(|l| !l.starts_with('#')).unwrap();
    assert_eq!(
        first_uri,
        format!("{asset_id}/0.ts"),
        "DVR starts at the start"
    );
    let first = get(http, &format!("/{pid}/{first_uri}")).unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.header("content-type"), Some("video/mp2t"));
    let scratch = testkit::scratch_dir("e2e_assets_first_segment");
    let segment = scratch.join("0.ts");
    std::fs::write(&segment, &first.body).unwrap();
    assert!(testkit::video_frame_count(&segment) > 0);
    let master = get(http, &format!("/{pid}.m3u8")).unwrap();
    assert_eq!(master.status, 200);
    assert!(
        master.text().contains(&format!("\n{pid}/stream.m3u8\n"))
            && master.text().contains("RESOLUTION=1280x720"),
        "{}",
        master.text()
    );

    // The encoder finishes, the window expires: on demand.
    assert!(
        encoder.wait_timeout(Duration::from_secs(30)).is_some(),
        "ffmpeg did not finish: {}",
        encoder.stderr()
    );
    let asset = testkit::wait_for("the asset to be ready", Duration::from_secs(20), || {
        let (_, v) = gw.api("GET", &format!("/assets/{asset_id}"), None);
        (v["data"]["status"] == "ready").then(|| v["data"].clone())
    });
    assert_eq!(asset["is_live"], false);
    let vod = get(http, &format!("/{pid}/stream.m3u8")).unwrap();
    assert_eq!(vod.status, 200);
    assert!(
        vod.text().contains("#EXT-X-PLAYLIST-TYPE:VOD\n")
            && vod.text().ends_with("#EXT-X-ENDLIST\n"),
        "{}",
        vod.text()
    );
    let url = format!("http://{http}/{pid}.m3u8");
    let errors = testkit::ffmpeg_decode_errors(Path::new(&url));
    assert!(errors.trim().is_empty(), "{errors}");
    let probed = testkit::ffprobe(&["-show_entries", "format=duration", &url]);
    let duration: f64 = probed["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let segment_secs = 2.0;
    let sent = f64::from(SENT_SECONDS);
    assert!(
        (duration - sent).abs() <= segment_secs,
        "played {duration} s of the {sent} s sent"
    );
    let frames = testkit::video_frame_count(Path::new(&url));
    assert!(
        frames.abs_diff(u64::from(SENT_SECONDS) * 30) <= 60,
        "{frames} frames for {SENT_SECONDS} s at 30 fps"
    );
    // The API says what was played.
    let api_duration = asset["duration"].as_f64().unwrap();
    assert!((api_duration - duration).abs() < 0.5, "{asset}");
    let times = asset["recording_times"].as_array().unwrap();
    assert_eq!(times.len(), 1, "{asset}");
    assert_eq!(times[0]["type"], "content");
    let tracks: Vec<&Value> = asset["tracks"].as_array().unwrap().iter().collect();
    assert_eq!(tracks[0]["max_width"], 1280, "{asset}");
    assert_eq!(tracks[0]["max_height"], 720, "{asset}");
    // The live stream's own playback ID is not active any more.
    let live_pid = stream["playback_ids"][0]["id"].as_str().unwrap();
    assert_eq!(get(http, &format!("/{live_pid}.m3u8")).unwrap().status, 412);
    // Segments of other broadcasts and odd names are not found through this playback ID.
    for path in [
        format!("/{pid}/{id}/0.ts"),
        format!("/{pid}/{asset_id}/stream.m3u8"),
        format!("/{pid}/{asset_id}/999.ts"),
        format!("/{pid}/other.m3u8"),
    ] {
        assert_eq!(get(http, &path).unwrap().status, 404, "{path}");
    }
}
