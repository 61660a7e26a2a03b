//! The asset routes over real HTTP: listing by cursor and by page, the live stream filter,
//! reading, editing, input info, playback IDs (and their lookup), deleting with the media on
//! disk, and every refusal. Broadcasts are recorded straight into the store, as the session
//! manager's lifecycle would write them.
#![allow(clippy::unwrap_used)]

mod common;

use common::{v1, Body, Server};
use serde_json::{json, Value};
use store::{
    event_type, AssetMedia, AudioMedia, BroadcastChange, IngestProtocol, LifecycleState,
    RecordingKind, RecordingTime, StatusChange, Store, Transition, VideoMedia,
};

fn transition(
    ls: &str,
    event: &str,
    state: LifecycleState,
    broadcast: BroadcastChange,
    at_ms: i64,
) -> Transition {
    Transition {
        live_stream_id: ls.to_owned(),
        event_type: event.to_owned(),
        state,
        status: None,
        broadcast,
        at_ms,
        media: None,
    }
}

/// A 720p30 stereo RTMP broadcast of two connections, 12 s in all.
fn media() -> AssetMedia {
    AssetMedia {
        ingest_protocol: Some(IngestProtocol::Rtmp),
        duration_secs: 12.0,
        video: Some(VideoMedia {
            width: 1280,
            height: 720,
            frame_rate: Some(30.0),
        }),
        audio: Some(AudioMedia { channels: 2 }),
        recording_times: vec![
            RecordingTime {
                started_at_ms: 1_700_000_000_000,
                duration_secs: 8.0,
                kind: RecordingKind::Content,
            },
            RecordingTime {
                started_at_ms: 1_700_000_010_000,
                duration_secs: 4.0,
                kind: RecordingKind::Content,
            },
        ],
        codecs: "avc1.64001f,mp4a.40.2".to_owned(),
        bandwidth: 2_000_000,
        average_bandwidth: 1_500_000,
    }
}

/// Starts a broadcast of live stream `ls` and records its first media: its asset exists
/// (preparing, live). Returns the asset ID and its recording directory.
async fn start_asset(s: &Server, ls: &str, at_ms: i64) -> (String, String) {
    let recording_dir = format!("{ls}/{at_ms}");
    let connected = s
        .store
        .record_transition(transition(
            ls,
            event_type::CONNECTED,
            LifecycleState::Connected,
            BroadcastChange::Start {
                id: store::new_broadcast_id(),
                recording_dir: recording_dir.clone(),
            },
            at_ms,
        ))
        .await
        .unwrap();
    let mut recording = transition(
        ls,
        event_type::RECORDING,
        LifecycleState::Recording,
        BroadcastChange::None,
        at_ms + 1,
    );
    recording.media = Some(AssetMedia {
        ingest_protocol: Some(IngestProtocol::Rtmp),
        ..AssetMedia::default()
    });
    s.store.record_transition(recording).await.unwrap();
    (connected.broadcast_id.unwrap(), recording_dir)
}

/// Ends the broadcast of `ls` with `media` measured: its asset is ready.
async fn end_asset(s: &Server, ls: &str, at_ms: i64, media: AssetMedia) {
    let mut idle = transition(
        ls,
        event_type::IDLE,
        LifecycleState::Idle,
        BroadcastChange::End,
        at_ms,
    );
    idle.status = Some(StatusChange::Idle);
    idle.media = Some(media);
    s.store.record_transition(idle).await.unwrap();
}

async fn create_live_stream(s: &Server, body: Value) -> String {
    let r = s.admin("POST", &v1("/live-streams"), body).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["data"]["id"].as_str().unwrap().to_owned()
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect()
}

/// `GET path`, expecting a `200` list page: its asset IDs and its `next_cursor`.
async fn page(s: &Server, path: &str) -> (Vec<String>, Option<String>) {
    let r = s.admin("GET", &v1(path), Value::Null).await;
    assert_eq!(
        r.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    let v = r.json();
    let object = v.as_object().unwrap();
    assert_eq!(object.len(), 2, "only data and next_cursor: {v}");
    assert!(object.contains_key("next_cursor"), "{v}");
    let cursor = match &v["next_cursor"] {
        Value::Null => None,
        Value::String(c) => {
            assert!(!c.is_empty(), "an empty cursor is written null: {v}");
            Some(c.clone())
        }
        other => panic!("next_cursor {other}"),
    };
    (ids(&v), cursor)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_list_by_cursor_and_page_and_by_live_stream() {
    let s = Server::start("api_assets_list", common::unlimited()).await;
    let a = create_live_stream(&s, json!({})).await;
    let b = create_live_stream(&s, json!({})).await;
    let mut all = Vec::new();
    for i in 0..5 {
        let ls = if i % 2 == 0 { &a } else { &b };
        let at = 1_700_000_000_000 + 100_000 * i;
        let (id, _) = start_asset(&s, ls, at).await;
        end_asset(&s, ls, at + 10_000, media()).await;
        all.push(id);
    }
    all.reverse(); // newest first

    assert_eq!(page(&s, "/assets").await, (all.clone(), None));
    // By cursor, as the SDKs page: until next_cursor is null.
    let (first, cursor) = page(&s, "/assets?limit=2").await;
    assert_eq!(first, all[..2]);
    let cursor = cursor.expect("a next page");
    let (second, cursor) = page(&s, &format!("/assets?limit=2&cursor={cursor}")).await;
    assert_eq!(second, all[2..4]);
    let cursor = cursor.expect("a last page");
    let (third, cursor) = page(&s, &format!("/assets?limit=2&cursor={cursor}")).await;
    assert_eq!((third, cursor), (all[4..].to_vec(), None));
    // By page.
    assert_eq!(page(&s, "/assets?limit=2&page=2").await.0, all[2..4]);
    assert_eq!(
        page(&s, "/assets?limit=2&page=3").await,
        (all[4..].to_vec(), None)
    );
    assert_eq!(page(&s, "/assets?limit=2&page=4").await, (Vec::new(), None));
    // An empty cursor is no cursor (the SDKs never send one, some scripts do).
    assert_eq!(page(&s, "/assets?cursor=").await.0, all);
    // By live stream, with its own cursor.
    let of_a = vec![all[0].clone(), all[2].clone(), all[4].clone()];
    assert_eq!(
        page(&s, &format!("/assets?live_stream_id={a}")).await,
        (of_a.clone(), None)
    );
    let (first, cursor) = page(&s, &format!("/assets?live_stream_id={a}&limit=2")).await;
    assert_eq!(first, of_a[..2]);
    let next = format!(
        "/assets?live_stream_id={a}&limit=2&cursor={}",
        cursor.unwrap()
    );
    assert_eq!(page(&s, &next).await, (of_a[2..].to_vec(), None));
    assert_eq!(
        page(&s, "/assets?live_stream_id=nope").await,
        (Vec::new(), None)
    );
    // No asset comes from a direct upload.
    assert_eq!(page(&s, "/assets?upload_id=u1").await, (Vec::new(), None));
    // Listed objects are the objects `GET /assets/{id}` answers.
    let r = s.admin("GET", &v1("/assets?limit=1"), Value::Null).await;
    let listed = r.json()["data"][0].clone();
    let r = s
        .admin("GET", &v1(&format!("/assets/{}", all[0])), Value::Null)
        .await;
    assert_eq!(r.json(), json!({ "data": listed }));

    // Refusals name the parameter.
    for (query, name) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("page=0", "page"),
        ("page=-1", "page"),
        ("cursor=not-a-cursor", "cursor"),
    ] {
        let m = s
            .admin("GET", &v1(&format!("/assets?{query}")), Value::Null)
            .await
            .assert_error(400, "invalid_parameters");
        assert!(m.contains(name), "{query}: {m}");
    }
    assert_eq!(page(&s, "/assets?limit=100").await.0.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_read_edit_input_info_and_playback_ids() {
    let s = Server::start("api_assets_edit", common::unlimited()).await;
    let ls = create_live_stream(
        &s,
        json!({ "new_asset_settings": { "playback_policies": ["public"], "passthrough": "p0" } }),
    )
    .await;
    let (id, _) = start_asset(&s, &ls, 1_700_000_000_000).await;
    let path = v1(&format!("/assets/{id}"));

    // While the broadcast goes on.
    let r = s.admin("GET", &path, Value::Null).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let live = r.json()["data"].clone();
    assert_eq!(live["status"], "preparing");
    assert_eq!(live["is_live"], true);
    assert_eq!(
        live["progress"],
        json!({ "state": "live", "progress": -1.0 })
    );
    let r = s
        .admin("GET", &v1(&format!("/live-streams/{ls}")), Value::Null)
        .await;
    assert_eq!(r.json()["data"]["active_asset_id"], id.as_str());

    end_asset(&s, &ls, 1_700_000_020_000, media()).await;
    let asset = s.admin("GET", &path, Value::Null).await.json()["data"].clone();
    assert_eq!(asset["id"], id.as_str());
    assert_eq!(asset["status"], "ready");
    assert_eq!(asset["is_live"], false);
    assert_eq!(asset["live_stream_id"], ls.as_str());
    assert_eq!(asset["passthrough"], "p0");
    assert_eq!(asset["duration"], 12.0);
    assert_eq!(asset["ingest_type"], "live_rtmp");
    assert_eq!(asset["resolution_tier"], "720p");
    assert_eq!(asset["recording_times"].as_array().unwrap().len(), 2);
    assert!(asset["created_at"].as_str().unwrap().parse::<u64>().is_ok());
    let public = asset["playback_ids"][0].clone();
    assert_eq!(public["policy"], "public");
    let r = s
        .admin("GET", &v1(&format!("/live-streams/{ls}")), Value::Null)
        .await;
    assert_eq!(r.json()["data"]["recent_asset_ids"], json!([id]));
    s.admin("GET", &v1("/assets/nope"), Value::Null)
        .await
        .assert_error(404, "not_found");

    // Edit: passthrough and meta; null and "" clear.
    let r = s
        .admin(
            "PATCH",
            &path,
            json!({ "passthrough": "p1", "meta": { "title": "Show", "external_id": "x1" } }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let edited = r.json()["data"].clone();
    assert_eq!(edited["passthrough"], "p1");
    assert_eq!(
        edited["meta"],
        json!({ "title": "Show", "external_id": "x1" })
    );
    assert_eq!(
        s.admin("GET", &path, Value::Null).await.json()["data"],
        edited
    );
    let r = s.admin("PATCH", &path, Value::Null).await;
    assert_eq!(r.json()["data"], edited, "an empty PATCH changes nothing");
    let r = s.admin("PATCH", &path, json!({ "passthrough": "" })).await;
    assert!(
        r.json()["data"].get("passthrough").is_none(),
        "{}",
        r.json()
    );
    let r = s.admin("PATCH", &path, json!({ "meta": null })).await;
    assert!(r.json()["data"].get("meta").is_none(), "{}", r.json());
    for (body, field) in [
        (json!({ "passthrough": 5 }), "passthrough"),
        (json!({ "passthrough": "x".repeat(256) }), "passthrough"),
        (json!({ "meta": "Show" }), "meta"),
        (json!({ "meta": { "title": "t".repeat(513) } }), "meta"),
    ] {
        let m = s
            .admin("PATCH", &path, body.clone())
            .await
            .assert_error(400, "invalid_parameters");
        assert!(m.contains(field), "{body}: {m}");
    }
    // Fields the PATCH does not take are ignored, as the hosted API ignores them: the asset
    // stays as it was.
    let r = s
        .admin(
            "PATCH",
            &path,
            json!({ "title": "Show", "status": "errored" }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(r.json()["data"]["status"], "ready", "{}", r.json());
    assert!(r.json()["data"].get("title").is_none(), "{}", r.json());
    s.admin("PATCH", &v1("/assets/nope"), json!({ "passthrough": "x" }))
        .await
        .assert_error(404, "not_found");

    // Input info: what was measured, in the hosted API's shape.
    let r = s
        .admin("GET", &format!("{path}/input-info"), Value::Null)
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json(),
        json!({ "data": [{
            "settings": {},
            "file": {
                "container_format": "flv",
                "tracks": [
                    { "type": "video", "duration": 12.0, "width": 1280, "height": 720,
                      "frame_rate": 30.0 },
                    { "type": "audio", "duration": 12.0, "channels": 2 },
                ],
            },
        }] })
    );
    s.admin("GET", &v1("/assets/nope/input-info"), Value::Null)
        .await
        .assert_error(404, "not_found");

    // Playback IDs, and their lookup.
    let pids = format!("{path}/playback-ids");
    let r = s.admin("POST", &pids, json!({ "policy": "signed" })).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let signed = r.json()["data"].clone();
    assert_eq!(signed["policy"], "signed");
    let signed_id = signed["id"].as_str().unwrap().to_owned();
    let r = s.admin("POST", &pids, Value::Null).await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.json()["data"]["policy"],
        "public",
        "policy defaults to public"
    );
    let m = s
        .admin("POST", &pids, json!({ "policy": "private" }))
        .await
        .assert_error(400, "invalid_parameters");
    assert!(m.contains("policy"), "{m}");
    s.admin("POST", &v1("/assets/nope/playback-ids"), json!({}))
        .await
        .assert_error(404, "not_found");
    let r = s
        .admin("GET", &format!("{pids}/{signed_id}"), Value::Null)
        .await;
    assert_eq!(r.json(), json!({ "data": signed }));
    let r = s
        .admin(
            "GET",
            &v1(&format!("/playback-ids/{signed_id}")),
            Value::Null,
        )
        .await;
    assert_eq!(
        r.json(),
        json!({ "data": {
            "id": signed_id,
            "policy": "signed",
            "object": { "type": "asset", "id": id },
        } })
    );
    let r = s.admin("GET", &path, Value::Null).await;
    assert_eq!(
        r.json()["data"]["playback_ids"].as_array().unwrap().len(),
        3
    );
    // Another asset's path does not reach it.
    s.admin(
        "GET",
        &v1(&format!("/assets/nope/playback-ids/{signed_id}")),
        Value::Null,
    )
    .await
    .assert_error(404, "not_found");
    let r = s
        .admin("DELETE", &format!("{pids}/{signed_id}"), Value::Null)
        .await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    for method in ["GET", "DELETE"] {
        s.admin(method, &format!("{pids}/{signed_id}"), Value::Null)
            .await
            .assert_error(404, "not_found");
    }
    s.admin(
        "GET",
        &v1(&format!("/playback-ids/{signed_id}")),
        Value::Null,
    )
    .await
    .assert_error(404, "not_found");
    let r = s
        .admin(
            "GET",
            &v1(&format!("/playback-ids/{}", public["id"].as_str().unwrap())),
            Value::Null,
        )
        .await;
    assert_eq!(
        r.json()["data"]["object"],
        json!({ "type": "asset", "id": id })
    );

    // Assets are not created through the API.
    s.admin(
        "POST",
        &v1("/assets"),
        json!({ "input": "https://example.com/a.mp4" }),
    )
    .await
    .assert_error(405, "method_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_asset_removes_its_media_but_not_while_live() {
    let s = Server::start("api_assets_delete", common::unlimited()).await;
    let ls = create_live_stream(
        &s,
        json!({ "new_asset_settings": { "playback_policy": "public" } }),
    )
    .await;
    let (id, dir) = start_asset(&s, &ls, 1_700_000_000_000).await;
    let media_dir = s.sessions.config().recordings_dir.join(&dir);
    std::fs::create_dir_all(&media_dir).unwrap();
    std::fs::write(media_dir.join("stream.m3u8"), "#EXTM3U\n").unwrap();
    std::fs::write(media_dir.join("0.ts"), [0x47u8; 188]).unwrap();
    let path = v1(&format!("/assets/{id}"));

    // Being recorded: refused, and nothing is removed.
    let m = s
        .admin("DELETE", &path, Value::Null)
        .await
        .assert_error(409, "conflict");
    assert!(m.contains("still being recorded"), "{m}");
    assert!(media_dir.join("0.ts").exists());
    assert_eq!(s.admin("GET", &path, Value::Null).await.status, 200);

    end_asset(&s, &ls, 1_700_000_010_000, media()).await;
    let asset = s.admin("GET", &path, Value::Null).await.json()["data"].clone();
    let pid = asset["playback_ids"][0]["id"].as_str().unwrap().to_owned();
    // A read-only token cannot delete; nobody anonymous can read.
    let reader = s.reader.clone();
    let r = s
        .call(Some(&reader), "DELETE", &path, Body::None, &[])
        .await;
    r.assert_error(403, "forbidden");
    let r = s
        .call(
            Some(&reader),
            "PATCH",
            &path,
            Body::Sized(b"{}".to_vec()),
            &[],
        )
        .await;
    r.assert_error(403, "forbidden");
    assert_eq!(
        s.call(Some(&reader), "GET", &path, Body::None, &[])
            .await
            .status,
        200
    );
    let r = s.call(None, "GET", &v1("/assets"), Body::None, &[]).await;
    r.assert_error(401, "unauthorized");

    let r = s.admin("DELETE", &path, Value::Null).await;
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.body.is_empty());
    assert!(
        !media_dir.exists(),
        "the recording is removed with the asset"
    );
    assert!(
        media_dir.parent().unwrap().exists(),
        "the live stream's other recordings stay"
    );
    for method in ["GET", "DELETE"] {
        s.admin(method, &path, Value::Null)
            .await
            .assert_error(404, "not_found");
    }
    s.admin("GET", &v1(&format!("/playback-ids/{pid}")), Value::Null)
        .await
        .assert_error(404, "not_found");
    assert_eq!(page(&s, "/assets").await, (Vec::new(), None));
    // The live stream stays.
    assert_eq!(
        s.admin("GET", &v1(&format!("/live-streams/{ls}")), Value::Null)
            .await
            .status,
        200
    );

    // An asset whose media is already gone is deleted all the same.
    let (second, _) = start_asset(&s, &ls, 1_700_000_100_000).await;
    end_asset(&s, &ls, 1_700_000_110_000, media()).await;
    let r = s
        .admin("DELETE", &v1(&format!("/assets/{second}")), Value::Null)
        .await;
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
}
