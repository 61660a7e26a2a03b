//! The session manager with a real store: admission decisions, a publisher's media becoming
//! playable segments in the live view and on disk, the status moving active -> idle.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use media::flv::FlvReader;
use media::FlvDemuxer;
use session::{
    Admission, IngestEvent, IngestProtocol, PlaybackTarget, PublishRejection, PublishRequest,
    SessionConfig, SessionManager,
};
use store::{LiveStreamStatus, NewLiveStream, SqliteStore, Store};
use tokio_util::sync::CancellationToken;

fn request(key: &str) -> PublishRequest {
    PublishRequest {
        stream_key: key.to_owned(),
        protocol: IngestProtocol::Rtmp,
        peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
    }
}

async fn setup(
    name: &str,
) -> (
    SessionManager,
    SqliteStore,
    CancellationToken,
    std::path::PathBuf,
) {
    let dir = testkit::scratch_dir(name);
    let store = SqliteStore::open(&dir).await.unwrap();
    let shutdown = CancellationToken::new();
    let mut config = SessionConfig::new(&dir);
    // A window of 2 with 1 in memory, so that a 10 s clip serves listed segments from disk
    // and slides a segment out of the window.
    config.live_window = 2;
    config.segments_in_memory = 1;
    let manager = SessionManager::new(store.clone(), config, shutdown.clone());
    (manager, store, shutdown, dir)
}

#[tokio::test]
async fn refuses_unknown_disabled_and_second_publishers() {
    let (manager, store, _shutdown, _dir) = setup("session_refusals").await;
    assert_eq!(
        manager.publish(request("nope")).await.unwrap_err(),
        PublishRejection::UnknownStreamKey
    );
    let stream = store
        .create_live_stream(NewLiveStream::default())
        .await
        .unwrap();
    store.disable_live_stream(&stream.id).await.unwrap();
    assert_eq!(
        manager
            .publish(request(&stream.stream_key))
            .await
            .unwrap_err(),
        PublishRejection::Disabled
    );
    store.enable_live_stream(&stream.id).await.unwrap();
    let grant = manager.publish(request(&stream.stream_key)).await.unwrap();
    assert_eq!(grant.live_stream_id, stream.id);
    assert_eq!(
        manager
            .publish(request(&stream.stream_key))
            .await
            .unwrap_err(),
        PublishRejection::AlreadyPublishing
    );
    // Unknown playback IDs are 404-worthy, known ones of a running stream are live.
    assert!(matches!(
        manager.playback("nope").await,
        PlaybackTarget::Unknown
    ));
    assert!(matches!(
        manager.playback(&stream.playback_ids[0].id).await,
        PlaybackTarget::Live(_)
    ));
    // The publisher leaves: the session ends and a new publisher is accepted.
    drop(grant);
    for _ in 0..100 {
        if manager.running() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(manager.running(), 0);
    assert!(matches!(
        manager.playback(&stream.playback_ids[0].id).await,
        PlaybackTarget::NotActive
    ));
    assert!(manager.publish(request(&stream.stream_key)).await.is_ok());
}

#[tokio::test]
async fn media_becomes_segments_live_and_recorded() {
    let (manager, store, _shutdown, dir) = setup("session_media").await;
    let stream = store
        .create_live_stream(NewLiveStream::default())
        .await
        .unwrap();
    let grant = manager.publish(request(&stream.stream_key)).await.unwrap();
    let PlaybackTarget::Live(view) = manager.playback(&stream.playback_ids[0].id).await else {
        panic!("not live")
    };
    assert!(
        view.media_playlist().is_none(),
        "nothing is playable before the first segment"
    );
    assert_eq!(
        store
            .get_live_stream(&stream.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        LiveStreamStatus::Idle
    );

    let data = Bytes::from(std::fs::read(testkit::fixture("avc_aac_720p30.flv")).unwrap());
    let mut demuxer = FlvDemuxer::default();
    for tag in FlvReader::new(data).unwrap() {
        let tag = tag.unwrap();
        if let Some(event) = demuxer
            .handle_tag(tag.kind, tag.timestamp, tag.body)
            .unwrap()
        {
            grant.media.send(IngestEvent::Media(event)).await.unwrap();
        }
    }
    // 10 s with 2 s GOPs: the first two 4 s segments close while media flows.
    for _ in 0..200 {
        if view.segment(1).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let live = String::from_utf8(view.media_playlist().unwrap().to_vec()).unwrap();
    // Both segments listed (window 2); only the newest in memory, the older one was recorded
    // first and is served from the recording.
    assert!(view.segment(1).is_some());
    assert!(view.segment(0).is_none());
    let recorded = std::fs::read(
        dir.join("recordings")
            .join(&stream.id)
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .join("0.ts"),
    )
    .unwrap();
    assert_eq!(
        recorded,
        std::fs::read(view.recorded_segment(0).unwrap()).unwrap()
    );
    assert_eq!(recorded[0], 0x47, "a TS packet");
    assert!(
        live.contains("#EXTINF:4.000,\n0.ts\n#EXTINF:4.000,\n1.ts\n"),
        "{live}"
    );
    let master = view.multivariant(&stream.playback_ids[0].id).unwrap();
    assert!(
        master.ends_with(&format!("{}/stream.m3u8\n", stream.playback_ids[0].id)),
        "{master}"
    );
    let active = store.get_live_stream(&stream.id).await.unwrap().unwrap();
    assert_eq!(active.status, LiveStreamStatus::Active);
    assert_eq!(
        active.active_ingest_protocol.map(|p| p.as_str()),
        Some("rtmp")
    );

    // The encoder leaves: the last segment is closed, the playlists end, the stream is idle.
    drop(grant);
    for _ in 0..200 {
        if view.is_ended() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(view.is_ended());
    let ended = String::from_utf8(view.media_playlist().unwrap().to_vec()).unwrap();
    assert!(ended.ends_with("2.ts\n#EXT-X-ENDLIST\n"), "{ended}");
    // Segment 0 left the in-memory window; it is still served, from the recording.
    assert!(view.segment(0).is_none());
    let from_disk = std::fs::read(view.recorded_segment(0).unwrap()).unwrap();
    assert_eq!(from_disk, recorded);
    for _ in 0..100 {
        if store
            .get_live_stream(&stream.id)
            .await
            .unwrap()
            .unwrap()
            .status
            == LiveStreamStatus::Idle
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let idle = store.get_live_stream(&stream.id).await.unwrap().unwrap();
    assert_eq!(idle.status, LiveStreamStatus::Idle);
    assert!(idle.active_ingest_protocol.is_none());

    // The recording on disk plays to the end with every frame.
    let session_dir = std::fs::read_dir(dir.join("recordings").join(&stream.id))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let playlist = session_dir.join("stream.m3u8");
    let errors = testkit::ffmpeg_decode_errors(&playlist);
    assert!(errors.trim().is_empty(), "{errors}");
    let probe = testkit::ffprobe(&[
        "-count_frames",
        "-select_streams",
        "v:0",
        "-show_entries",
        "stream=nb_read_frames",
        playlist.to_str().unwrap(),
    ]);
    assert_eq!(probe["streams"][0]["nb_read_frames"], "300");
}

#[tokio::test]
async fn shutdown_closes_and_writes_the_open_segment() {
    let (manager, store, shutdown, dir) = setup("session_shutdown").await;
    let stream = store
        .create_live_stream(NewLiveStream::default())
        .await
        .unwrap();
    let grant = manager.publish(request(&stream.stream_key)).await.unwrap();
    let data = Bytes::from(std::fs::read(testkit::fixture("avc_bframes_aac.flv")).unwrap());
    let mut demuxer = FlvDemuxer::default();
    for tag in FlvReader::new(data).unwrap().take(200) {
        let tag = tag.unwrap();
        if let Some(event) = demuxer
            .handle_tag(tag.kind, tag.timestamp, tag.body)
            .unwrap()
        {
            grant.media.send(IngestEvent::Media(event)).await.unwrap();
        }
    }
    shutdown.cancel();
    assert!(grant.kick.is_cancelled());
    tokio::time::timeout(Duration::from_secs(10), manager.wait())
        .await
        .unwrap();
    assert!(matches!(
        manager
            .publish(request(&stream.stream_key))
            .await
            .unwrap_err(),
        PublishRejection::ShuttingDown
    ));
    let session_dir = std::fs::read_dir(dir.join("recordings").join(&stream.id))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let playlist = std::fs::read_to_string(session_dir.join("stream.m3u8")).unwrap();
    assert!(playlist.ends_with("#EXT-X-ENDLIST\n"), "{playlist}");
}
