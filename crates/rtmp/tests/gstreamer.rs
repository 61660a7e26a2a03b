//! GStreamer's `rtmp2sink` as the publisher (a second, independent RTMP client stack).
//! Needs `gst-launch-1.0` with the good and bad plugin sets; fails with an install hint
//! without them.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{clip, ffprobe_packets, TestServer, GOOD_KEY};
use media::Track;
use rtmp::RtmpConfig;
use tokio::process::Command;

fn require_gstreamer() {
    let found = std::process::Command::new("gst-inspect-1.0")
        .arg("rtmp2sink")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "GStreamer with rtmp2sink is required by this test: apt-get install -y \
         gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_rtmp2sink_publishes() {
    require_gstreamer();
    let clip = clip();
    let (video_packets, audio_packets) = ffprobe_packets(&clip);
    let server = TestServer::start(None, RtmpConfig::default()).await;
    let url = server.url("rtmp", &format!("app/{GOOD_KEY}"));
    let pipeline = format!(
        "filesrc location={} ! flvdemux name=d \
         d.video ! queue ! h264parse ! flvmux name=m streamable=true ! rtmp2sink sync=false location={url} \
         d.audio ! queue ! aacparse ! m.",
        clip.display()
    );
    let child = Command::new("gst-launch-1.0")
        .arg("-e")
        .args(pipeline.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("gst-launch-1.0 did not start");
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("gst-launch-1.0 did not finish within 60 s")
        .unwrap();
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "gst-launch-1.0 failed:\n{log}");

    let publish = server
        .admission
        .wait_publish(0, Duration::from_secs(5))
        .await;
    assert!(publish.wait_ended(Duration::from_secs(10)).await, "{log}");
    assert!(publish.has_video_config() && publish.has_audio_config());
    assert_eq!(publish.frames(Track::Video).len(), video_packets, "{log}");
    assert_eq!(publish.frames(Track::Audio).len(), audio_packets, "{log}");
    assert_eq!(server.admission.requests()[0].stream_key, GOOD_KEY);
    server.stop().await;
}
