//! End-to-end tests with ffmpeg as the publisher (RTMP, RTMPS, both URL forms, refusal,
//! kick, bad neighbours). They need ffmpeg and ffprobe and fail with an install hint without.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::client::RawClient;
use common::{clip, ffprobe_packets, Ffmpeg, TestServer, GOOD_KEY};
use media::Track;
use rtmp::{dev_tls_acceptor, RtmpConfig};
use session::IngestProtocol;

/// Pushes the whole clip as fast as possible and checks that every frame arrived: as many
/// video and audio frames as ffprobe counts in the file, both configurations, and an orderly
/// end of the publish.
async fn push_whole_clip(server: &TestServer, output_args: &[&str], url: &str) {
    let (video_packets, audio_packets) = ffprobe_packets(&clip());
    assert!(
        video_packets >= 290 && audio_packets >= 450,
        "{video_packets} {audio_packets}"
    );

    let ffmpeg = Ffmpeg::publish(&[], output_args, url);
    let (status, stderr) = ffmpeg.wait(Duration::from_secs(60)).await;
    assert!(status.success(), "ffmpeg failed: {status}\n{stderr}");

    let publish = server
        .admission
        .wait_publish(0, Duration::from_secs(5))
        .await;
    assert!(
        publish.wait_ended(Duration::from_secs(5)).await,
        "the connection did not end after ffmpeg exited"
    );
    assert!(publish.has_video_config(), "no video configuration");
    assert!(publish.has_audio_config(), "no audio configuration");
    assert_eq!(publish.frames(Track::Video).len(), video_packets);
    assert_eq!(publish.frames(Track::Audio).len(), audio_packets);
    let video = publish.frames(Track::Video);
    assert!(video[0].keyframe);
    assert_eq!(
        video.iter().filter(|f| f.keyframe).count(),
        5,
        "2 s GOP in 10 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_with_the_key_in_the_url() {
    let server = TestServer::start(None, RtmpConfig::default()).await;
    let url = server.url("rtmp", &format!("app/{GOOD_KEY}"));
    push_whole_clip(&server, &[], &url).await;
    let requests = server.admission.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].stream_key, GOOD_KEY);
    assert_eq!(requests[0].protocol, IngestProtocol::Rtmp);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_with_server_url_and_separate_key() {
    // The OBS/Wirecast form: server `rtmp://HOST:PORT/app`, stream key on its own.
    let server = TestServer::start(None, RtmpConfig::default()).await;
    let url = server.url("rtmp", "app");
    push_whole_clip(
        &server,
        &["-rtmp_app", "app", "-rtmp_playpath", GOOD_KEY],
        &url,
    )
    .await;
    assert_eq!(server.admission.requests()[0].stream_key, GOOD_KEY);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_over_rtmps_with_the_dev_certificate() {
    let acceptor = dev_tls_acceptor(["localhost", "127.0.0.1"]).unwrap();
    let server = TestServer::start(Some(acceptor), RtmpConfig::default()).await;
    let url = server.url("rtmps", &format!("app/{GOOD_KEY}"));
    push_whole_clip(&server, &[], &url).await;
    assert_eq!(
        server.admission.requests()[0].protocol,
        IngestProtocol::Rtmps
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_with_a_wrong_key_is_refused_quickly() {
    let server = TestServer::start(None, RtmpConfig::default()).await;
    let url = server.url("rtmp", "app/wrong-key");
    let started = Instant::now();
    let ffmpeg = Ffmpeg::publish(&["-re"], &[], &url);
    let (status, stderr) = ffmpeg.wait(Duration::from_secs(10)).await;
    assert!(
        !status.success(),
        "ffmpeg succeeded with a wrong key:\n{stderr}"
    );
    // ffmpeg reports the server's error description.
    assert!(stderr.contains("unknown stream key"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refusal took {:?}",
        started.elapsed()
    );
    let requests = server.admission.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].stream_key, "wrong-key");
    assert!(server.admission.publishes().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_peers_do_not_disturb_a_concurrent_ffmpeg_publish() {
    let config = RtmpConfig {
        handshake_timeout: Duration::from_secs(1),
        ..RtmpConfig::default()
    };
    let server = TestServer::start(None, config).await;
    let url = server.url("rtmp", &format!("app/{GOOD_KEY}"));
    let ffmpeg = Ffmpeg::publish(&["-re"], &["-t", "4"], &url);
    let publish = server
        .admission
        .wait_publish(0, Duration::from_secs(5))
        .await;

    let started = Instant::now();
    let mut http = RawClient::connect(server.addr).await;
    http.send(b"GET /live.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut tls = RawClient::connect(server.addr).await;
    tls.send(&[
        0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03,
    ])
    .await;
    let mut random = RawClient::connect(server.addr).await;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let junk: Vec<u8> = std::iter::once(3)
        .chain((0..3000).map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 32) as u8
        }))
        .collect();
    random.send(&junk).await;
    let mut silent = RawClient::connect(server.addr).await;
    for peer in [&mut http, &mut tls, &mut random, &mut silent] {
        assert!(peer.closed_within(Duration::from_secs(3)).await);
    }
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "bad peers took {:?} to be closed",
        started.elapsed()
    );

    let (status, stderr) = ffmpeg.wait(Duration::from_secs(20)).await;
    assert!(status.success(), "ffmpeg failed: {status}\n{stderr}");
    assert!(publish.wait_ended(Duration::from_secs(5)).await);
    // 4 s at 30 fps, give or take the frames in flight when ffmpeg stopped.
    let frames = publish.frames(Track::Video).len();
    assert!((115..=125).contains(&frames), "{frames} video frames");
    assert_eq!(server.admission.publishes().len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_disconnects_ffmpeg_within_a_second() {
    let server = TestServer::start(None, RtmpConfig::default()).await;
    let url = server.url("rtmp", &format!("app/{GOOD_KEY}"));
    let ffmpeg = Ffmpeg::publish(&["-re"], &[], &url);
    let publish = server
        .admission
        .wait_publish(0, Duration::from_secs(5))
        .await;
    assert!(publish.wait_video_frames(30, Duration::from_secs(5)).await);

    let kicked = Instant::now();
    publish.kick.cancel();
    assert!(
        publish.wait_ended(Duration::from_secs(1)).await,
        "the connection was still up 1 s after the kick"
    );
    let (status, stderr) = ffmpeg.wait(Duration::from_secs(5)).await;
    assert!(
        !status.success(),
        "ffmpeg did not notice the kick:\n{stderr}"
    );
    assert!(
        kicked.elapsed() < Duration::from_secs(2),
        "ffmpeg exited {:?} after the kick",
        kicked.elapsed()
    );
    server.stop().await;
}
