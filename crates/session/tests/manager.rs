//! The session manager with a real store: admission decisions, a publisher's media becoming
//! playable segments in the live view and on disk, the broadcast lifecycle (reconnects inside
//! the window, stale publishers, complete, shutdown and recovery) and its event log.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use media::flv::FlvReader;
use media::FlvDemuxer;
use session::{
    Admission, IngestEvent, IngestProtocol, PlaybackTarget, PublishRejection, PublishRequest,
    SessionConfig, SessionManager, SrtAdmission,
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
    config.stale_publisher_after = Duration::from_secs(2);
    let manager = SessionManager::new(store.clone(), config, shutdown.clone());
    (manager, store, shutdown, dir)
}

/// A live stream with reconnect window `window` seconds.
async fn create(store: &SqliteStore, window: i64) -> store::LiveStream {
    store
        .create_live_stream(NewLiveStream {
            reconnect_window: Some(window as f64),
            ..NewLiveStream::default()
        })
        .await
        .unwrap()
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..500 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn status(store: &SqliteStore, id: &str) -> LiveStreamStatus {
    store.get_live_stream(id).await.unwrap().unwrap().status
}

/// The live stream's own events, short names (`video.asset.*` events: see [`the_asset`]).
async fn the_asset(store: &SqliteStore, id: &str) -> store::Asset {
    let events = store.live_stream_events(id).await.unwrap();
    let types: Vec<&str> = events
        .iter()
        .filter(|e| store::event_type::is_asset(&e.event_type))
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "video.asset.created",
            "video.asset.ready",
            "video.asset.live_stream_completed"
        ]
    );
    let stream = store.get_live_stream(id).await.unwrap().unwrap();
    let asset_id = stream.recent_asset_ids.last().expect("an asset");
    store.get_asset(asset_id).await.unwrap().unwrap()
}

async fn event_types(store: &SqliteStore, id: &str) -> Vec<String> {
    store
        .live_stream_events(id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| !store::event_type::is_asset(&e.event_type))
        .map(|e| {
            e.event_type
                .trim_start_matches("video.live_stream.")
                .to_owned()
        })
        .collect()
}

/// Sends the first `tags` FLV tags of a fixture (all of it with `usize::MAX`).
async fn send_fixture(grant: &session::PublishGrant, name: &str, tags: usize) {
    let data = Bytes::from(std::fs::read(testkit::fixture(name)).unwrap());
    let mut demuxer = FlvDemuxer::default();
    for tag in FlvReader::new(data).unwrap().take(tags) {
        let tag = tag.unwrap();
        if let Some(event) = demuxer
            .handle_tag(tag.kind, tag.timestamp, tag.body)
            .unwrap()
        {
            grant.media.send(IngestEvent::Media(event)).await.unwrap();
        }
    }
}

#[tokio::test]
async fn refuses_unknown_disabled_and_second_publishers() {
    let (manager, store, _shutdown, _dir) = setup("session_refusals").await;
    assert_eq!(
        manager.publish(request("nope")).await.unwrap_err(),
        PublishRejection::UnknownStreamKey
    );
    let stream = create(&store, 0).await;
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
    // The publisher leaves (window 0): the broadcast ends and a new publisher is accepted.
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

/// The SRT listener's first step: the passphrase of an admissible stream, the same refusals
/// as `publish`, and no side effect (no broadcast starts).
#[tokio::test]
async fn srt_passphrase_lookup_refuses_like_publish_without_side_effects() {
    let (manager, store, _shutdown, _dir) = setup("session_srt_passphrase").await;
    assert_eq!(
        manager.srt_passphrase("nope").await.unwrap_err(),
        PublishRejection::UnknownStreamKey
    );
    let stream = create(&store, 0).await;
    assert_eq!(
        manager.srt_passphrase(&stream.stream_key).await.unwrap(),
        stream.srt_passphrase
    );
    assert_eq!(manager.running(), 0, "a lookup started a broadcast");
    store.disable_live_stream(&stream.id).await.unwrap();
    assert_eq!(
        manager
            .srt_passphrase(&stream.stream_key)
            .await
            .unwrap_err(),
        PublishRejection::Disabled
    );
    store.enable_live_stream(&stream.id).await.unwrap();
    let mut srt = request(&stream.stream_key);
    srt.protocol = IngestProtocol::Srt;
    let grant = manager.publish(srt).await.unwrap();
    assert_eq!(
        manager
            .srt_passphrase(&stream.stream_key)
            .await
            .unwrap_err(),
        PublishRejection::AlreadyPublishing
    );
    drop(grant);
}

#[tokio::test]
async fn media_becomes_segments_live_and_recorded() {
    let (manager, store, _shutdown, dir) = setup("session_media").await;
    let stream = create(&store, 0).await;
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
    let b = view.broadcast_id();
    assert!(
        live.contains(&format!(
            "#EXTINF:4.000,\n{b}/0.ts\n#EXTINF:4.000,\n{b}/1.ts\n"
        )),
        "{live}"
    );
    let master = view.multivariant(&stream.playback_ids[0].id).unwrap();
    assert!(
        master.ends_with(&format!("{}/stream.m3u8\n", stream.playback_ids[0].id)),
        "{master}"
    );
    // The status is written by the broadcast's writer task, just after the segment.
    wait_until("status active", async || {
        status(&store, &stream.id).await == LiveStreamStatus::Active
    })
    .await;
    let active = store.get_live_stream(&stream.id).await.unwrap().unwrap();
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
    assert!(ended.ends_with("/2.ts\n#EXT-X-ENDLIST\n"), "{ended}");
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
    assert_eq!(testkit::video_frame_count(&playlist), 300);
    // Its asset describes it: 300 frames at 30 fps, one connection.
    let asset = the_asset(&store, &stream.id).await;
    assert_eq!(asset.status, store::AssetStatus::Ready);
    // (Segment durations are whole milliseconds: within a few of the 10 s sent.)
    let about = |secs: f64, expected: f64| (secs - expected).abs() < 0.01;
    assert!(about(asset.duration.unwrap(), 10.0), "{asset:?}");
    assert_eq!(asset.recording_times.len(), 1);
    assert!(about(asset.recording_times[0].duration, 10.0));
    assert_eq!(asset.ingest_type.as_deref(), Some("live_rtmp"));
    assert_eq!(asset.max_stored_resolution.as_deref(), Some("HD"));
    assert_eq!(asset.aspect_ratio.as_deref(), Some("16:9"));
    assert_eq!(asset.max_stored_frame_rate, Some(30.0));
    let tracks: Vec<&str> = asset.tracks.iter().map(|t| t.kind.as_str()).collect();
    assert_eq!(tracks, ["video", "audio"]);
    assert_eq!(
        event_types(&store, &stream.id).await,
        [
            "created",
            "connected",
            "recording",
            "active",
            "disconnected",
            "idle"
        ]
    );
}

#[tokio::test]
async fn a_reconnect_inside_the_window_continues_the_broadcast() {
    let (manager, store, _shutdown, dir) = setup("session_reconnect").await;
    let stream = create(&store, 30).await;
    let pid = &stream.playback_ids[0].id;
    let grant = manager.publish(request(&stream.stream_key)).await.unwrap();
    send_fixture(&grant, "avc_aac_720p30.flv", usize::MAX).await;
    let PlaybackTarget::Live(view) = manager.playback(pid).await else {
        panic!("not live")
    };
    wait_until("two segments", async || view.segment(1).is_some()).await;
    drop(grant);
    // Disconnected: the open segment was closed and listed, the playlist is still served and
    // the stream still active.
    wait_until("disconnected", async || {
        event_types(&store, &stream.id)
            .await
            .last()
            .map(String::as_str)
            == Some("disconnected")
    })
    .await;
    assert_eq!(status(&store, &stream.id).await, LiveStreamStatus::Active);
    let before = String::from_utf8(view.media_playlist().unwrap().to_vec()).unwrap();
    assert!(before.contains("/2.ts\n"), "{before}");
    assert!(!view.is_ended());
    assert!(matches!(
        manager.playback(pid).await,
        PlaybackTarget::Live(_)
    ));

    // The encoder comes back: same view, same broadcast, the sequence goes on after a
    // discontinuity.
    let grant = manager.publish(request(&stream.stream_key)).await.unwrap();
    send_fixture(&grant, "avc_aac_720p30.flv", usize::MAX).await;
    let PlaybackTarget::Live(again) = manager.playback(pid).await else {
        panic!("not live")
    };
    assert!(std::sync::Arc::ptr_eq(&view, &again));
    wait_until("segments of the second connection", async || {
        view.segment(4).is_some()
    })
    .await;
    let after = String::from_utf8(view.media_playlist().unwrap().to_vec()).unwrap();
    // The gap is marked: a tag, or (once the segment before it left the window) the
    // discontinuity sequence.
    assert!(
        after.contains("#EXT-X-DISCONTINUITY\n")
            || after.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"),
        "{after}"
    );
    assert_eq!(status(&store, &stream.id).await, LiveStreamStatus::Active);

    // complete: idle at once, without waiting for the window; one recording of both.
    assert!(manager.complete(&stream.id).await);
    assert!(grant.kick.is_cancelled());
    assert_eq!(status(&store, &stream.id).await, LiveStreamStatus::Idle);
    assert!(view.is_ended());
    assert_eq!(
        event_types(&store, &stream.id).await,
        [
            "created",
            "connected",
            "recording",
            "active",
            "disconnected",
            "connected",
            "recording",
            "disconnected",
            "idle"
        ]
    );
    let broadcasts: Vec<_> = std::fs::read_dir(dir.join("recordings").join(&stream.id))
        .unwrap()
        .collect();
    assert_eq!(broadcasts.len(), 1, "one recording for the broadcast");
    let playlist = broadcasts[0].as_ref().unwrap().path().join("stream.m3u8");
    let text = std::fs::read_to_string(&playlist).unwrap();
    assert!(text.ends_with("#EXT-X-ENDLIST\n") && text.contains("#EXT-X-DISCONTINUITY"));
    assert_eq!(
        testkit::video_frame_count(&playlist),
        600,
        "both connections"
    );
    // One asset, one `content` entry per connection, each with its own 10 s.
    let asset = the_asset(&store, &stream.id).await;
    let about = |secs: f64, expected: f64| (secs - expected).abs() < 0.01;
    assert_eq!(asset.recording_times.len(), 2, "{asset:?}");
    assert!(asset
        .recording_times
        .iter()
        .all(|r| about(r.duration, 10.0)));
    assert!(about(asset.duration.unwrap(), 20.0));
}

#[tokio::test]
async fn a_stale_publisher_is_replaced_and_a_live_one_is_not() {
    let (manager, store, _shutdown, _dir) = setup("session_stale").await;
    let stream = create(&store, 30).await;
    let first = manager.publish(request(&stream.stream_key)).await.unwrap();
    send_fixture(&first, "avc_aac_720p30.flv", 50).await;
    // Fresh media: a second encoder is refused.
    assert_eq!(
        manager
            .publish(request(&stream.stream_key))
            .await
            .unwrap_err(),
        PublishRejection::AlreadyPublishing
    );
    // Silent for longer than stale_publisher_after (2 s here): the new one takes over.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let second = manager.publish(request(&stream.stream_key)).await.unwrap();
    assert!(first.kick.is_cancelled());
    assert!(!second.kick.is_cancelled());
    // The second goes silent too; two new encoders race for its place: exactly one wins.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (a, b) = tokio::join!(
        manager.publish(request(&stream.stream_key)),
        manager.publish(request(&stream.stream_key))
    );
    assert!(second.kick.is_cancelled());
    assert_eq!(
        u8::from(a.is_ok()) + u8::from(b.is_ok()),
        1,
        "{:?} / {:?}",
        a.as_ref().map(|g| &g.live_stream_id),
        b.as_ref().map(|g| &g.live_stream_id)
    );
    let loser = if a.is_ok() { b } else { a };
    assert_eq!(loser.unwrap_err(), PublishRejection::AlreadyPublishing);
    assert_eq!(manager.running(), 1);
    assert_eq!(manager.publishing(), 1);
}

#[tokio::test]
async fn the_window_expires_to_idle() {
    let (manager, store, _shutdown, dir) = setup("session_window").await;
    let stream = create(&store, 1).await;
    let grant = manager.publish(request(&stream.stream_key)).await.unwrap();
    send_fixture(&grant, "avc_aac_720p30.flv", usize::MAX).await;
    wait_until("active", async || {
        status(&store, &stream.id).await == LiveStreamStatus::Active
    })
    .await;
    drop(grant);
    wait_until("idle", async || {
        status(&store, &stream.id).await == LiveStreamStatus::Idle
    })
    .await;
    assert_eq!(manager.running(), 0);
    let types = event_types(&store, &stream.id).await;
    assert_eq!(types[types.len() - 2..], ["disconnected", "idle"]);
    let recording = std::fs::read_dir(dir.join("recordings").join(&stream.id))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(recording.join("stream.m3u8")).unwrap();
    assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
}

#[tokio::test]
async fn shutdown_closes_and_writes_the_open_segment() {
    let (manager, store, shutdown, dir) = setup("session_shutdown").await;
    let stream = create(&store, 1).await;
    let grant = manager.publish(request(&stream.stream_key)).await.unwrap();
    send_fixture(&grant, "avc_bframes_aac.flv", 200).await;
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
    // The open segment was written; the broadcast is left disconnected for the next start.
    let playlist = std::fs::read_to_string(session_dir.join("stream.m3u8")).unwrap();
    assert!(playlist.contains(".ts\n"), "{playlist}");
    assert!(!playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    assert_eq!(
        store.lifecycle(&stream.id).await.unwrap().unwrap().state,
        store::LifecycleState::Disconnected
    );

    // The next start: the window (1 s) runs from the restart, then idle and ENDLIST.
    let mut config = SessionConfig::new(&dir);
    config.stale_publisher_after = Duration::from_secs(1);
    let restarted = SessionManager::new(store.clone(), config, CancellationToken::new());
    assert_eq!(restarted.recover().await.unwrap(), 1);
    wait_until("recovered broadcast ended", async || {
        restarted.running() == 0
    })
    .await;
    let playlist = std::fs::read_to_string(session_dir.join("stream.m3u8")).unwrap();
    assert!(playlist.ends_with("#EXT-X-ENDLIST\n"), "{playlist}");
    let errors = testkit::ffmpeg_decode_errors(&session_dir.join("stream.m3u8"));
    assert!(errors.trim().is_empty(), "{errors}");
    let types = event_types(&store, &stream.id).await;
    assert_eq!(
        types[types.len() - 2..],
        ["disconnected", "idle"],
        "{types:?}"
    );
    assert_eq!(restarted.recover().await.unwrap(), 0, "nothing left over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_delays_the_events_not_the_media() {
    use std::io::Write as _;
    testkit::require_tool("sqlite3");
    let (manager, store, _shutdown, dir) = setup("session_locked_db").await;
    let stream = create(&store, 30).await;
    // Another process holds the database's write lock for longer than the store waits for it
    // (its busy timeout), so the first write of the lifecycle fails and must be retried.
    let mut locker = std::process::Command::new("sqlite3")
        .arg(dir.join(store::DB_FILE_NAME))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut sql = locker.stdin.take().unwrap();
    writeln!(sql, "BEGIN EXCLUSIVE;").unwrap();
    sql.flush().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let locked_at = std::time::Instant::now();

    let grant = manager.publish(request(&stream.stream_key)).await.unwrap();
    send_fixture(&grant, "avc_aac_720p30.flv", usize::MAX).await;
    let PlaybackTarget::Live(view) = manager.playback(&stream.playback_ids[0].id).await else {
        panic!("not live")
    };
    // The media goes on while the store is locked: segments become playable.
    wait_until("segments while the database is locked", async || {
        view.segment(1).is_some()
    })
    .await;
    // Past the busy timeout the first write has failed; nothing is recorded yet.
    let hold = store::DEFAULT_BUSY_TIMEOUT + Duration::from_millis(1500);
    tokio::time::sleep(hold.saturating_sub(locked_at.elapsed())).await;
    assert_eq!(event_types(&store, &stream.id).await, ["created"]);
    assert_eq!(status(&store, &stream.id).await, LiveStreamStatus::Idle);

    // The lock goes: the retried writes land, in order, and the status is right.
    writeln!(sql, "COMMIT;").unwrap();
    drop(sql);
    locker.wait().unwrap();
    wait_until("the transitions after the lock", async || {
        event_types(&store, &stream.id).await.len() == 4
    })
    .await;
    assert_eq!(
        event_types(&store, &stream.id).await,
        ["created", "connected", "recording", "active"]
    );
    assert_eq!(status(&store, &stream.id).await, LiveStreamStatus::Active);
}

#[tokio::test]
async fn draining_starts_no_broadcast_but_admits_a_reconnect_to_a_running_one() {
    let (manager, store, shutdown, _dir) = setup("session_drain").await;
    let live = create(&store, 30).await;
    let idle = create(&store, 30).await;
    let grant = manager.publish(request(&live.stream_key)).await.unwrap();
    manager.drain();
    assert!(manager.is_draining());
    for rejection in [
        manager
            .publish(request(&idle.stream_key))
            .await
            .unwrap_err(),
        manager.srt_passphrase(&idle.stream_key).await.unwrap_err(),
    ] {
        assert_eq!(rejection, PublishRejection::Draining);
        assert_eq!(rejection.reason(), "draining");
    }
    // The running broadcast's encoder drops and comes back within its reconnect window.
    drop(grant);
    wait_until("the publisher has left", async || manager.publishing() == 0).await;
    let again = manager.publish(request(&live.stream_key)).await.unwrap();
    assert_eq!(again.live_stream_id, live.id);
    assert_eq!(manager.running(), 1);
    shutdown.cancel();
    manager.wait().await;
}
