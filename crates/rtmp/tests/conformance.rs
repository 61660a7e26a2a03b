//! Conformance tests with a hand-made RTMP client: one per known gap of rml_rtmp 0.8
//! (DESIGN.md), and the robustness rules of the listener (timeouts, limits, bad peers).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::client::{amf, chunks, status_code, RawClient};
use common::{clip_tags, demux_tags, Publish, TestServer, GOOD_KEY, SLOW_KEY};
use media::flv::{FlvTag, TagKind};
use media::{DemuxEvent, Frame, Track};
use rtmp::RtmpConfig;

const VIDEO_CSID: u8 = 6;
const AUDIO_CSID: u8 = 4;
const DATA_CSID: u8 = 5;

fn csid_of(kind: TagKind) -> u8 {
    match kind {
        TagKind::Video => VIDEO_CSID,
        TagKind::Audio => AUDIO_CSID,
        TagKind::Script => DATA_CSID,
    }
}

/// The first `n` tags of the clip (sequence headers, metadata, about a second of media).
fn first_tags(n: usize) -> Vec<FlvTag> {
    clip_tags().into_iter().take(n).collect()
}

fn expected_frames(tags: &[FlvTag], track: Track) -> Vec<(bool, bytes::Bytes)> {
    demux_tags(tags)
        .into_iter()
        .filter_map(|e| match e {
            DemuxEvent::Frame(f) if f.track == track => Some((f.keyframe, f.data)),
            _ => None,
        })
        .collect()
}

fn summary(frames: Vec<Frame>) -> Vec<(bool, bytes::Bytes)> {
    frames.into_iter().map(|f| (f.keyframe, f.data)).collect()
}

/// Waits until the first publish has delivered the frames of `tags`, and checks that it
/// delivered exactly those, in order.
async fn assert_delivers(server: &TestServer, tags: &[FlvTag]) -> Arc<Publish> {
    let publish = server
        .admission
        .wait_publish(0, Duration::from_secs(5))
        .await;
    let video = expected_frames(tags, Track::Video);
    let audio = expected_frames(tags, Track::Audio);
    assert!(video.len() > 20 && audio.len() > 20);
    assert!(
        publish
            .wait_video_frames(video.len(), Duration::from_secs(5))
            .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(summary(publish.frames(Track::Video)), video);
    assert_eq!(summary(publish.frames(Track::Audio)), audio);
    publish
}

/// Sends tags one message after the other, each on its kind's chunk stream.
async fn send_tags(client: &mut RawClient, msid: u32, tags: &[FlvTag]) {
    for tag in tags {
        let bytes = chunks(
            csid_of(tag.kind),
            tag.timestamp,
            tag.kind.type_id(),
            msid,
            &tag.body,
            128,
        );
        client.send(&bytes).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_type_live_in_upper_case_is_accepted() {
    let server = TestServer::start(None, RtmpConfig::default()).await;
    let mut client = RawClient::connect(server.addr).await;
    // Every byte of the handshake and the commands in its own write.
    client.bytewise = true;
    let msid = client.start_publish(GOOD_KEY, "LIVE").await;
    client.bytewise = false;

    let tags = first_tags(60);
    send_tags(&mut client, msid, &tags).await;
    let publish = server
        .admission
        .wait_publish(0, Duration::from_secs(5))
        .await;
    let video = expected_frames(&tags, Track::Video);
    assert!(
        publish
            .wait_video_frames(video.len(), Duration::from_secs(5))
            .await
    );
    assert!(publish.has_video_config() && publish.has_audio_config());
    assert_eq!(summary(publish.frames(Track::Video)), video);
    assert_eq!(
        summary(publish.frames(Track::Audio)),
        expected_frames(&tags, Track::Audio)
    );
    server.stop().await;
}

/// Interleaves the chunks of the video messages (chunk stream 6) and the audio messages
/// (chunk stream 4): one chunk of each in turn, so every video frame is split by audio
/// chunks. Per chunk stream, the order of messages is kept.
fn interleave(msid: u32, tags: &[FlvTag]) -> Vec<u8> {
    let split = |kind: TagKind| -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for tag in tags.iter().filter(|t| t.kind == kind) {
            let bytes = chunks(
                csid_of(kind),
                tag.timestamp,
                kind.type_id(),
                msid,
                &tag.body,
                128,
            );
            // Cut the serialized message back into its chunks: a 12-byte header with the
            // first 128 payload bytes, then 1 + 128 bytes each.
            let first = (12 + 128).min(bytes.len());
            out.push(bytes[..first].to_vec());
            out.extend(bytes[first..].chunks(129).map(<[u8]>::to_vec));
        }
        out
    };
    let video = split(TagKind::Video);
    let audio = split(TagKind::Audio);
    let mut wire = Vec::new();
    let (mut v, mut a) = (video.iter(), audio.iter());
    loop {
        let (nv, na) = (v.next(), a.next());
        if nv.is_none() && na.is_none() {
            break;
        }
        for c in [nv, na].into_iter().flatten() {
            wire.extend_from_slice(c);
        }
    }
    wire
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_chunks_on_two_chunk_streams_reassemble() {
    let server = TestServer::start(None, RtmpConfig::default()).await;
    let mut client = RawClient::connect(server.addr).await;
    let msid = client.start_publish(GOOD_KEY, "live").await;

    let tags = first_tags(90);
    let wire = interleave(msid, &tags);
    // Sanity: the test really interleaves (an audio chunk header between two video chunks).
    assert!(wire.windows(2).any(|w| w == [AUDIO_CSID, 0]));
    client.send(&wire).await;

    let publish = assert_delivers(&server, &tags).await;
    assert!(!publish.is_ended(), "the connection must stay up");
    server.stop().await;
}

/// The body of an aggregate message (type 22): the tags in FLV tag layout.
fn aggregate_body(tags: &[FlvTag]) -> Vec<u8> {
    let mut body = Vec::new();
    for tag in tags {
        let size = tag.body.len() as u32;
        body.push(tag.kind.type_id());
        body.extend_from_slice(&size.to_be_bytes()[1..]);
        body.extend_from_slice(&tag.timestamp.to_be_bytes()[1..]);
        body.push((tag.timestamp >> 24) as u8);
        body.extend_from_slice(&[0, 0, 0]);
        body.extend_from_slice(&tag.body);
        body.extend_from_slice(&(size + 11).to_be_bytes());
    }
    body
}

/// Tags packed into aggregate messages of `per` sub-messages each.
fn aggregates(msid: u32, tags: &[FlvTag], per: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    for group in tags.chunks(per) {
        let body = aggregate_body(group);
        wire.extend(chunks(6, group[0].timestamp, 22, msid, &body, 128));
    }
    wire
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_messages_deliver_every_frame() {
    let server = TestServer::start(None, RtmpConfig::default()).await;
    let mut client = RawClient::connect(server.addr).await;
    let msid = client.start_publish(GOOD_KEY, "live").await;
    let tags = first_tags(90);
    client.send(&aggregates(msid, &tags, 7)).await;

    let publish = assert_delivers(&server, &tags).await;
    // The same timestamps as the tags sent one by one.
    let direct = demux_tags(&tags);
    for track in [Track::Video, Track::Audio] {
        let got: Vec<u64> = publish.frames(track).iter().map(|f| f.dts).collect();
        let want: Vec<u64> = direct
            .iter()
            .filter_map(|e| match e {
                DemuxEvent::Frame(f) if f.track == track => Some(f.dts),
                _ => None,
            })
            .collect();
        assert_eq!(got, want, "{track:?}");
    }
    assert!(!publish.is_ended());

    // An aggregate whose sub-message overruns it is bad input: that connection is closed.
    let mut bad = RawClient::connect(server.addr).await;
    let msid = bad.start_publish(GOOD_KEY, "live").await;
    // The first 4 tags, the last one announcing 100 bytes more than the aggregate holds.
    let mut overrun = aggregate_body(&tags[..4]);
    let last = aggregate_body(&tags[..3]).len();
    let size = (tags[3].body.len() + 100) as u32;
    overrun[last + 1..last + 4].copy_from_slice(&size.to_be_bytes()[1..]);
    bad.send(&chunks(6, 0, 22, msid, &overrun, 128)).await;
    assert!(bad.closed_within(Duration::from_secs(3)).await);
    assert!(!publish.is_ended(), "the other publisher keeps going");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_with_amf0_date_long_string_and_reference_succeeds() {
    let server = TestServer::start(None, RtmpConfig::default()).await;
    let mut client = RawClient::connect(server.addr).await;
    client.handshake().await;
    let object = amf::object(&[
        ("app", amf::long_string("app")),
        ("flashVer", amf::string("FMLE/3.0 (compatible; test)")),
        (
            "tcUrl",
            amf::long_string(&"rtmp://127.0.0.1/app".repeat(10)),
        ),
        ("startTime", amf::date(1.7e12)),
        ("previous", vec![7, 0, 0]), // a Reference
        ("fpad", amf::boolean(false)),
    ]);
    client
        .send_command(0, &amf::command("connect", 1.0, &[object]))
        .await;
    let reply = client.expect_command("_result").await;
    assert_eq!(
        status_code(&reply).as_deref(),
        Some("NetConnection.Connect.Success")
    );
    let msid = client.create_stream().await;
    let status = client.publish(msid, GOOD_KEY, "live").await;
    assert_eq!(
        status_code(&status).as_deref(),
        Some("NetStream.Publish.Start")
    );
    assert_eq!(server.admission.requests()[0].stream_key, GOOD_KEY);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_amf0_closes_only_that_connection() {
    let server = TestServer::start(None, RtmpConfig::default()).await;
    let mut good = RawClient::connect(server.addr).await;
    let msid = good.start_publish(GOOD_KEY, "live").await;

    let mut bad = RawClient::connect(server.addr).await;
    bad.handshake().await;
    // An AMF3 value (marker 0x11) inside an AMF0 connect: not readable as AMF0.
    let object = amf::object(&[("app", amf::string("app")), ("x", vec![0x11, 0x04, 1])]);
    bad.send_command(0, &amf::command("connect", 1.0, &[object]))
        .await;
    assert!(bad.closed_within(Duration::from_secs(2)).await);

    // The first connection still publishes.
    let tags = first_tags(40);
    send_tags(&mut good, msid, &tags).await;
    let publish = server
        .admission
        .wait_publish(0, Duration::from_secs(5))
        .await;
    let video = expected_frames(&tags, Track::Video);
    assert!(
        publish
            .wait_video_frames(video.len(), Duration::from_secs(5))
            .await
    );
    assert!(!publish.is_ended());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fcpublish_release_and_unpublish_get_replies() {
    let server = TestServer::start(None, RtmpConfig::default()).await;
    let mut client = RawClient::connect(server.addr).await;
    client.handshake().await;
    client.connect_app("app").await;
    client
        .send_command(
            0,
            &amf::command("releaseStream", 2.0, &[amf::null(), amf::string(GOOD_KEY)]),
        )
        .await;
    let result = client.expect_command("_result").await;
    assert_eq!(result.transaction_id, 2.0);
    client
        .send_command(
            0,
            &amf::command("FCPublish", 3.0, &[amf::null(), amf::string(GOOD_KEY)]),
        )
        .await;
    let result = client.expect_command("_result").await;
    assert_eq!(result.transaction_id, 3.0);
    let on_fc = client.expect_command("onFCPublish").await;
    assert_eq!(
        status_code(&on_fc).as_deref(),
        Some("NetStream.Publish.Start")
    );

    // Commands of fewer than three values (rml_rtmp panics on them).
    client
        .send_command(0, &amf::command("FCPublish", 4.0, &[]))
        .await;
    client.expect_command("onFCPublish").await;
    client.send_command(0, &amf::string("FCPublish")).await;
    client.expect_command("onFCPublish").await;

    let msid = client.create_stream().await;
    let status = client.publish(msid, GOOD_KEY, "live").await;
    assert_eq!(
        status_code(&status).as_deref(),
        Some("NetStream.Publish.Start")
    );
    let publish = server
        .admission
        .wait_publish(0, Duration::from_secs(5))
        .await;

    client
        .send_command(
            0,
            &amf::command("FCUnpublish", 6.0, &[amf::null(), amf::string(GOOD_KEY)]),
        )
        .await;
    let on_fc = client.expect_command("onFCUnpublish").await;
    assert_eq!(
        status_code(&on_fc).as_deref(),
        Some("NetStream.Unpublish.Success")
    );
    client
        .send_command(
            0,
            &amf::command(
                "deleteStream",
                7.0,
                &[amf::null(), amf::number(f64::from(msid))],
            ),
        )
        .await;
    assert!(publish.wait_ended(Duration::from_secs(2)).await);
    assert!(client.closed_within(Duration::from_secs(2)).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_gets_bad_name_and_is_closed() {
    let server = TestServer::start(None, RtmpConfig::default()).await;
    let mut client = RawClient::connect(server.addr).await;
    client.handshake().await;
    client.connect_app("app").await;
    let msid = client.create_stream().await;
    let reply = client.publish(msid, "bad-key?token=1", "live").await;
    assert_eq!(reply.name, "_error");
    assert_eq!(
        status_code(&reply).as_deref(),
        Some("NetStream.Publish.BadName")
    );
    let status = client.expect_command("onStatus").await;
    assert_eq!(
        status_code(&status).as_deref(),
        Some("NetStream.Publish.BadName")
    );
    assert!(client.closed_within(Duration::from_secs(2)).await);
    let requests = server.admission.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].stream_key, "bad-key",
        "the ?query is not part of the key"
    );
    assert_eq!(requests[0].protocol, session::IngestProtocol::Rtmp);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_in_the_application_path_with_an_empty_name() {
    // An encoder given `rtmp://host/app/KEY` as its server and an empty stream key.
    let server = TestServer::start(None, RtmpConfig::default()).await;
    let mut client = RawClient::connect(server.addr).await;
    client.handshake().await;
    client.connect_app(&format!("app/{GOOD_KEY}")).await;
    let msid = client.create_stream().await;
    let status = client.publish(msid, "", "live").await;
    assert_eq!(
        status_code(&status).as_deref(),
        Some("NetStream.Publish.Start")
    );
    assert_eq!(server.admission.requests()[0].stream_key, GOOD_KEY);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_are_not_rtmp_are_closed_quickly() {
    let config = RtmpConfig {
        handshake_timeout: Duration::from_secs(1),
        ..RtmpConfig::default()
    };
    let server = TestServer::start(None, config).await;
    let mut publisher = RawClient::connect(server.addr).await;
    let msid = publisher.start_publish(GOOD_KEY, "live").await;

    let started = std::time::Instant::now();
    let mut http = RawClient::connect(server.addr).await;
    http.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let mut tls = RawClient::connect(server.addr).await;
    tls.send(&[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ])
    .await;
    assert!(http.closed_within(Duration::from_millis(500)).await);
    assert!(tls.closed_within(Duration::from_millis(500)).await);

    // RTMP's version byte, then garbage and silence: the handshake timeout closes it.
    let mut stalled = RawClient::connect(server.addr).await;
    let mut junk = vec![3u8];
    junk.extend((0..100u32).map(|i| (i * 31 % 256) as u8));
    stalled.send(&junk).await;
    let mut silent = RawClient::connect(server.addr).await;
    assert!(stalled.closed_within(Duration::from_secs(3)).await);
    assert!(silent.closed_within(Duration::from_secs(3)).await);
    assert!(started.elapsed() < Duration::from_secs(3));

    // A full handshake followed by chunks that make no sense.
    let mut garbage = RawClient::connect(server.addr).await;
    garbage.handshake().await;
    garbage
        .send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    assert!(garbage.closed_within(Duration::from_secs(2)).await);

    // The publisher did not notice any of it.
    let tags = first_tags(40);
    send_tags(&mut publisher, msid, &tags).await;
    let publish = server
        .admission
        .wait_publish(0, Duration::from_secs(5))
        .await;
    let video = expected_frames(&tags, Track::Video);
    assert!(
        publish
            .wait_video_frames(video.len(), Duration::from_secs(5))
            .await
    );
    assert!(!publish.is_ended());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_listener_displaces_unadmitted_connections_never_publishers() {
    let config = RtmpConfig {
        max_connections: 2,
        ..RtmpConfig::default()
    };
    let server = TestServer::start(None, config).await;
    // Two peers that never publish fill the listener; a third takes the oldest one's slot.
    let mut a = RawClient::connect(server.addr).await;
    a.handshake().await;
    let mut b = RawClient::connect(server.addr).await;
    b.handshake().await;
    let mut c = RawClient::connect(server.addr).await;
    c.handshake().await;
    assert!(
        a.closed_within(Duration::from_secs(2)).await,
        "oldest unadmitted closed"
    );
    assert!(!b.closed_within(Duration::from_millis(200)).await);
    // Two admitted publishers: nobody displaces them, new connections are closed at once.
    drop(b);
    drop(c);
    let mut p1 = RawClient::connect(server.addr).await;
    p1.start_publish(GOOD_KEY, "live").await;
    let mut p2 = RawClient::connect(server.addr).await;
    p2.start_publish(GOOD_KEY, "live").await;
    let mut d = RawClient::connect(server.addr).await;
    assert!(d.closed_within(Duration::from_secs(1)).await);
    assert!(!p1.closed_within(Duration::from_millis(200)).await);
    assert!(!p2.closed_within(Duration::from_millis(200)).await);
    drop(p1);
    // The slot is free again once the server has seen the close.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let mut e = RawClient::connect(server.addr).await;
        e.send(&[3]).await;
        if !e.closed_within(Duration::from_millis(200)).await {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot not released");
    }
    drop(p2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unadmitted_connections_hold_a_small_budget_publishers_the_full_one() {
    let config = RtmpConfig {
        max_pending_bytes_before_publish: 8 * 1024,
        ..RtmpConfig::default()
    };
    let server = TestServer::start(None, config).await;
    // Before admission: a message announced larger than the budget closes the connection.
    let mut early = RawClient::connect(server.addr).await;
    early.handshake().await;
    early
        .send(&chunks(3, 0, 9, 1, &vec![0u8; 9 * 1024], 128)[..4096])
        .await;
    assert!(early.closed_within(Duration::from_secs(2)).await);
    // Unfinished messages within the budget per message but beyond it together: closed.
    let mut parked = RawClient::connect(server.addr).await;
    parked.handshake().await;
    let mut within = RawClient::connect(server.addr).await;
    within.handshake().await;
    for (n, client) in [(4u8, &mut parked), (2, &mut within)] {
        for csid in 3..3 + n {
            let message = chunks(csid, 0, 9, 1, &vec![0u8; 4 * 1024], 128);
            client.send(&message[..message.len() - 1]).await;
        }
    }
    assert!(parked.closed_within(Duration::from_secs(2)).await);
    assert!(!within.closed_within(Duration::from_millis(300)).await);
    // After admission, a 64 KiB video message is fine.
    let mut publisher = RawClient::connect(server.addr).await;
    let msid = publisher.start_publish(GOOD_KEY, "live").await;
    let tags = first_tags(2);
    send_tags(&mut publisher, msid, &tags).await;
    // Malformed metadata is ignored, so only the size matters here.
    let big = vec![0u8; 64 * 1024];
    publisher.send(&chunks(5, 100, 18, msid, &big, 128)).await;
    assert!(!publisher.closed_within(Duration::from_millis(500)).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_budget_closes_the_oldest_parked_connections() {
    let config = RtmpConfig {
        max_pending_bytes_before_publish: 8 * 1024,
        max_unadmitted_bytes: 16 * 1024,
        ..RtmpConfig::default()
    };
    let server = TestServer::start(None, config).await;
    // Each parks 6 KiB (one unfinished message): two fit the listener's 16 KiB, a third
    // closes the oldest.
    let mut parked = Vec::new();
    for _ in 0..3 {
        let mut client = RawClient::connect(server.addr).await;
        client.handshake().await;
        let message = chunks(3, 0, 9, 1, &vec![0u8; 7 * 1024], 128);
        client.send(&message[..6 * 1024]).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        parked.push(client);
    }
    assert!(parked[0].closed_within(Duration::from_secs(2)).await);
    assert!(!parked[1].closed_within(Duration::from_millis(200)).await);
    assert!(!parked[2].closed_within(Duration::from_millis(200)).await);
    // A publisher gets in meanwhile, and its media is not counted.
    let mut publisher = RawClient::connect(server.addr).await;
    let msid = publisher.start_publish(GOOD_KEY, "live").await;
    send_tags(&mut publisher, msid, &first_tags(20)).await;
    assert!(!publisher.closed_within(Duration::from_millis(300)).await);
    assert!(!parked[2].closed_within(Duration::from_millis(100)).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_keep_an_encoder_out() {
    let config = RtmpConfig {
        max_unadmitted_per_address: 4,
        ..RtmpConfig::default()
    };
    let server = TestServer::start(None, config).await;
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(RawClient::connect(server.addr).await);
    }
    // A publisher from the same address still gets in, and keeps its slot.
    let mut publisher = RawClient::connect(server.addr).await;
    publisher.start_publish(GOOD_KEY, "live").await;
    let mut closed = 0;
    for s in &mut silent {
        if s.closed_within(Duration::from_millis(50)).await {
            closed += 1;
        }
    }
    // Each silent connection beyond 4 closed the oldest, and the publisher one more.
    assert_eq!(closed, 17);
    for _ in 0..10 {
        RawClient::connect(server.addr).await;
    }
    assert!(!publisher.closed_within(Duration::from_millis(300)).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_idle_timeouts_close_connections() {
    let config = RtmpConfig {
        publish_timeout: Duration::from_millis(800),
        idle_timeout: Duration::from_millis(800),
        ..RtmpConfig::default()
    };
    let server = TestServer::start(None, config).await;
    // Connected, never publishes.
    let mut lingering = RawClient::connect(server.addr).await;
    lingering.handshake().await;
    lingering.connect_app("app").await;
    // Publishes, then goes silent.
    let mut silent = RawClient::connect(server.addr).await;
    silent.start_publish(GOOD_KEY, "live").await;
    let publish = server
        .admission
        .wait_publish(0, Duration::from_secs(5))
        .await;
    assert!(lingering.closed_within(Duration::from_secs(3)).await);
    assert!(silent.closed_within(Duration::from_secs(3)).await);
    assert!(publish.wait_ended(Duration::from_secs(1)).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_pings_and_play() {
    let server = TestServer::start(None, RtmpConfig::default()).await;
    let mut client = RawClient::connect(server.addr).await;
    let msid = client.start_publish(GOOD_KEY, "live").await;
    // Window Acknowledgement Size 4096, then more than that.
    client
        .send_message(2, 0, 5, 0, &4096u32.to_be_bytes())
        .await;
    send_tags(&mut client, msid, &first_tags(20)).await;
    let ack = client
        .wait_for_type(3, Duration::from_secs(5))
        .await
        .expect("no acknowledgement");
    let sequence = u32::from_be_bytes(ack.payload[..4].try_into().unwrap());
    assert!(sequence >= 4096, "{sequence}");
    // Ping request with timestamp 1234.
    let mut ping = 6u16.to_be_bytes().to_vec();
    ping.extend_from_slice(&1234u32.to_be_bytes());
    client.send_message(2, 0, 4, 0, &ping).await;
    let pong = client
        .wait_for_type(4, Duration::from_secs(5))
        .await
        .expect("no ping response");
    assert_eq!(&pong.payload[..], &[0, 7, 0, 0, 4, 210]);

    // A player is refused: this is an ingest server.
    let mut player = RawClient::connect(server.addr).await;
    player.handshake().await;
    player.connect_app("app").await;
    let msid = player.create_stream().await;
    player
        .send_message(
            8,
            0,
            20,
            msid,
            &amf::command("play", 4.0, &[amf::null(), amf::string(GOOD_KEY)]),
        )
        .await;
    let error = player.expect_command("_error").await;
    assert_eq!(
        status_code(&error).as_deref(),
        Some("NetStream.Play.Failed")
    );
    assert!(player.closed_within(Duration::from_secs(2)).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_codec_closes_the_connection_bad_metadata_does_not() {
    let server = TestServer::start(None, RtmpConfig::default()).await;
    let mut client = RawClient::connect(server.addr).await;
    let msid = client.start_publish(GOOD_KEY, "live").await;
    let publish = server
        .admission
        .wait_publish(0, Duration::from_secs(5))
        .await;
    // Metadata that is not AMF0: logged and ignored.
    let mut data = amf::string("@setDataFrame");
    data.extend(amf::string("onMetaData"));
    data.extend([0x3f, 0, 1]);
    client.send_message(DATA_CSID, 0, 18, msid, &data).await;
    // A short @setDataFrame (rml_rtmp panics on it).
    client
        .send_message(DATA_CSID, 0, 18, msid, &amf::string("@setDataFrame"))
        .await;
    send_tags(&mut client, msid, &first_tags(30)).await;
    assert!(publish.wait_video_frames(1, Duration::from_secs(5)).await);
    assert!(!publish.is_ended());

    // An enhanced-RTMP AV1 sequence header: not carried by HLS over TS.
    let mut av1 = vec![0x90];
    av1.extend_from_slice(b"av01");
    av1.extend_from_slice(&[0x81, 0, 0, 0]);
    client.send_message(VIDEO_CSID, 2000, 9, msid, &av1).await;
    assert!(client.closed_within(Duration::from_secs(2)).await);
    assert!(publish.wait_ended(Duration::from_secs(1)).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_publishers_and_serve_returns() {
    let server = TestServer::start(None, RtmpConfig::default()).await;
    let mut client = RawClient::connect(server.addr).await;
    client.start_publish(GOOD_KEY, "live").await;
    let publish = server
        .admission
        .wait_publish(0, Duration::from_secs(5))
        .await;
    let addr = server.addr;
    server.stop().await;
    assert!(client.closed_within(Duration::from_secs(1)).await);
    assert!(publish.wait_ended(Duration::from_secs(1)).await);
    // The listening socket is released: the address can be bound again. (A connect attempt
    // is no proof: on Linux a loopback connect to a free ephemeral port can connect to itself.)
    assert!(tokio::net::TcpListener::bind(addr).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_rtmp_on_the_rtmps_port_is_closed_quickly() {
    let acceptor = rtmp::dev_tls_acceptor(["localhost"]).unwrap();
    let server = TestServer::start(Some(acceptor), RtmpConfig::default()).await;
    let mut client = RawClient::connect(server.addr).await;
    let mut c0c1 = vec![3u8];
    c0c1.extend_from_slice(&[0u8; 1536]);
    client.send(&c0c1).await;
    assert!(client.closed_within(Duration::from_millis(500)).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_that_does_not_answer_refuses_the_publisher() {
    let config = RtmpConfig {
        admission_timeout: Duration::from_millis(300),
        ..RtmpConfig::default()
    };
    let server = TestServer::start(None, config).await;
    let mut client = RawClient::connect(server.addr).await;
    client.handshake().await;
    client.connect_app("app").await;
    let msid = client.create_stream().await;
    let started = std::time::Instant::now();
    let reply = client.publish(msid, SLOW_KEY, "live").await;
    assert_eq!(
        status_code(&reply).as_deref(),
        Some("NetStream.Publish.Denied")
    );
    assert!(client.closed_within(Duration::from_secs(2)).await);
    assert!(started.elapsed() < Duration::from_secs(2));
    server.stop().await;
}
