//! The REST API over real HTTP: every endpoint, and every refusal (authentication,
//! permissions, invalid fields, unknown IDs, body size, rate limits).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{unlimited, v1, Body, Server, Token};
use serde_json::{json, Value};
use session::{Admission, IngestProtocol, PlaybackTarget, PublishRejection, PublishRequest};
use store::{Permissions, Store};

fn publish_request(key: &str) -> PublishRequest {
    PublishRequest {
        stream_key: key.to_owned(),
        protocol: IngestProtocol::Rtmp,
        peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
    }
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_stream_crud_and_listing() {
    let s = Server::start("api_crud", unlimited()).await;

    // Create with the seeds' guide body plus options.
    let r = s
        .admin(
            "POST",
            &v1("/live-streams"),
            json!({
                "playback_policies": ["public"],
                "new_asset_settings": { "playback_policies": ["public"] },
                "latency_mode": "reduced",
                "reconnect_window": 30,
                "passthrough": "first",
                "max_continuous_duration": 3600,
                "audio_only": true,
                "embedded_subtitles": [{ "name": "English" }],
                "some_future_field": { "ignored": true },
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let first = r.json()["data"].clone();
    let first_id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(first["status"], "idle");
    assert_eq!(first["latency_mode"], "reduced");
    assert_eq!(first["reconnect_window"], 30);
    assert_eq!(first["passthrough"], "first");
    assert_eq!(first["max_continuous_duration"], 3600);
    assert_eq!(first["audio_only"], true);
    assert_eq!(
        first["new_asset_settings"]["playback_policies"][0],
        "public"
    );
    assert_eq!(first["embedded_subtitles"][0]["language_code"], "en");
    assert_eq!(first["playback_ids"][0]["policy"], "public");
    assert!(first["stream_key"].as_str().unwrap().len() >= 16);
    assert!(first["created_at"].as_str().unwrap().parse::<u64>().is_ok());
    assert!(first.get("some_future_field").is_none());

    // An empty body (no content type) is a default stream; the deprecated fields still work.
    let admin = s.admin.clone();
    let r = s
        .call(Some(&admin), "POST", &v1("/live-streams"), Body::None, &[])
        .await;
    assert_eq!(r.status, 201);
    let second = r.json()["data"].clone();
    assert_eq!(second["latency_mode"], "standard");
    assert_eq!(second["reconnect_window"], 60);
    assert_eq!(second["max_continuous_duration"], 43200);
    assert_eq!(second["playback_ids"].as_array().unwrap().len(), 1);
    let r = s
        .admin(
            "POST",
            &v1("/live-streams"),
            json!({ "playback_policy": "signed", "reduced_latency": true }),
        )
        .await;
    assert_eq!(r.status, 201);
    let third = r.json()["data"].clone();
    assert_eq!(third["latency_mode"], "reduced");
    assert_eq!(third["reconnect_window"], 0);
    assert_eq!(third["playback_ids"][0]["policy"], "signed");
    let second_id = second["id"].as_str().unwrap().to_owned();
    let third_id = third["id"].as_str().unwrap().to_owned();

    // Listing: newest first, page/limit, status and stream_key filters.
    let r = s.admin("GET", &v1("/live-streams"), Value::Null).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        ids(&r.json()),
        [&third_id, &second_id, &first_id].map(|s: &String| s.clone())
    );
    let r = s
        .admin("GET", &v1("/live-streams?limit=2"), Value::Null)
        .await;
    assert_eq!(
        ids(&r.json()),
        [&third_id, &second_id].map(|s: &String| s.clone())
    );
    let r = s
        .admin("GET", &v1("/live-streams?page=2&limit=2"), Value::Null)
        .await;
    assert_eq!(ids(&r.json()), [&first_id].map(|s: &String| s.clone()));
    let r = s
        .admin("GET", &v1("/live-streams?page=3&limit=2"), Value::Null)
        .await;
    assert_eq!(r.json(), json!({ "data": [] }));
    let r = s
        .admin(
            "GET",
            &v1("/live-streams?status=idle&limit=100"),
            Value::Null,
        )
        .await;
    assert_eq!(ids(&r.json()).len(), 3);
    let r = s
        .admin("GET", &v1("/live-streams?status=active"), Value::Null)
        .await;
    assert_eq!(ids(&r.json()).len(), 0);
    let key = second["stream_key"].as_str().unwrap();
    let r = s
        .admin(
            "GET",
            &v1(&format!("/live-streams?stream_key={key}")),
            Value::Null,
        )
        .await;
    assert_eq!(ids(&r.json()), [&second_id].map(|s: &String| s.clone()));
    let r = s
        .admin("GET", &v1("/live-streams?stream_key=nope"), Value::Null)
        .await;
    assert_eq!(ids(&r.json()).len(), 0);

    // Read, HEAD, update.
    let path = v1(&format!("/live-streams/{first_id}"));
    let r = s.admin("GET", &path, Value::Null).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"], first);
    let r = s.admin("HEAD", &path, Value::Null).await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    let r = s
        .admin(
            "PATCH",
            &path,
            json!({ "reconnect_window": 120, "passthrough": null, "latency_mode": "low",
                    "use_slate_for_standard_latency": true,
                    "reconnect_slate_url": "https://example.com/slate.png" }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let updated = r.json()["data"].clone();
    assert_eq!(updated["reconnect_window"], 120);
    assert_eq!(updated["latency_mode"], "low");
    assert!(updated.get("passthrough").is_none());
    assert_eq!(updated["use_slate_for_standard_latency"], true);
    assert_eq!(
        updated["reconnect_slate_url"],
        "https://example.com/slate.png"
    );
    assert_eq!(updated["stream_key"], first["stream_key"]);
    let r = s.admin("GET", &path, Value::Null).await;
    assert_eq!(r.json()["data"], updated);
    // Whole numbers sent as floats (SDKs whose models use `float`) are accepted.
    let r = s
        .admin(
            "PATCH",
            &path,
            json!({ "reconnect_window": 120.0, "max_continuous_duration": 600.0 }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["data"]["max_continuous_duration"], 600);
    let r = s
        .admin("PATCH", &path, json!({ "max_continuous_duration": 3600 }))
        .await;
    assert_eq!(r.json()["data"], updated);
    // An empty PATCH changes nothing.
    let r = s.admin("PATCH", &path, Value::Null).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"], updated);

    // Delete.
    let r = s.admin("DELETE", &path, Value::Null).await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    s.admin("GET", &path, Value::Null)
        .await
        .assert_error(404, "not_found");
    s.admin("DELETE", &path, Value::Null)
        .await
        .assert_error(404, "not_found");
    let r = s.admin("GET", &v1("/live-streams"), Value::Null).await;
    assert_eq!(
        ids(&r.json()),
        [&third_id, &second_id].map(|s: &String| s.clone())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playback_ids_and_simulcast_targets() {
    let s = Server::start("api_subresources", unlimited()).await;
    let r = s
        .admin(
            "POST",
            &v1("/live-streams"),
            json!({ "simulcast_targets": [
                { "url": "rtmp://live.example.com/app", "stream_key": "abc", "passthrough": "yt" }
            ] }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let stream = r.json()["data"].clone();
    let id = stream["id"].as_str().unwrap().to_owned();
    let targets = stream["simulcast_targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0]["status"], "idle");
    assert_eq!(targets[0]["url"], "rtmp://live.example.com/app");
    assert_eq!(targets[0]["stream_key"], "abc");
    assert_eq!(targets[0]["passthrough"], "yt");
    let first_target = targets[0]["id"].as_str().unwrap().to_owned();
    let public_pid = stream["playback_ids"][0]["id"].as_str().unwrap().to_owned();

    // Playback IDs.
    let base = v1(&format!("/live-streams/{id}"));
    let r = s
        .admin(
            "POST",
            &format!("{base}/playback-ids"),
            json!({ "policy": "signed" }),
        )
        .await;
    assert_eq!(r.status, 201);
    let pid = r.json()["data"].clone();
    assert_eq!(pid["policy"], "signed");
    let pid_id = pid["id"].as_str().unwrap().to_owned();
    let r = s
        .admin("POST", &format!("{base}/playback-ids"), Value::Null)
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.json()["data"]["policy"],
        "public",
        "policy defaults to public"
    );
    let default_pid = r.json()["data"]["id"].as_str().unwrap().to_owned();
    let r = s
        .admin("GET", &format!("{base}/playback-ids/{pid_id}"), Value::Null)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({ "data": pid }));
    let r = s
        .admin("GET", &v1(&format!("/playback-ids/{pid_id}")), Value::Null)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({ "data": {
            "id": pid_id,
            "policy": "signed",
            "object": { "type": "live_stream", "id": id },
        } })
    );
    let r = s.admin("GET", &base, Value::Null).await;
    assert_eq!(
        r.json()["data"]["playback_ids"].as_array().unwrap().len(),
        3
    );
    let r = s
        .admin(
            "DELETE",
            &format!("{base}/playback-ids/{pid_id}"),
            Value::Null,
        )
        .await;
    assert_eq!(r.status, 204);
    s.admin("GET", &format!("{base}/playback-ids/{pid_id}"), Value::Null)
        .await
        .assert_error(404, "not_found");
    s.admin(
        "DELETE",
        &format!("{base}/playback-ids/{pid_id}"),
        Value::Null,
    )
    .await
    .assert_error(404, "not_found");
    s.admin("GET", &v1(&format!("/playback-ids/{pid_id}")), Value::Null)
        .await
        .assert_error(404, "not_found");
    let r = s.admin("GET", &base, Value::Null).await;
    let remaining: Vec<String> = r.json()["data"]["playback_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(remaining, [public_pid, default_pid]);

    // Simulcast targets.
    let r = s
        .admin(
            "POST",
            &format!("{base}/simulcast-targets"),
            json!({ "url": "srt://srt.example.com:1234?streamid=x", "passthrough": "srt" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let target = r.json()["data"].clone();
    assert_eq!(target["status"], "idle");
    assert_eq!(target["url"], "srt://srt.example.com:1234?streamid=x");
    assert!(target.get("stream_key").is_none());
    let target_id = target["id"].as_str().unwrap().to_owned();
    let r = s
        .admin(
            "GET",
            &format!("{base}/simulcast-targets/{target_id}"),
            Value::Null,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({ "data": target }));
    let r = s.admin("GET", &base, Value::Null).await;
    assert_eq!(
        r.json()["data"]["simulcast_targets"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let r = s
        .admin(
            "DELETE",
            &format!("{base}/simulcast-targets/{first_target}"),
            Value::Null,
        )
        .await;
    assert_eq!(r.status, 204);
    s.admin(
        "GET",
        &format!("{base}/simulcast-targets/{first_target}"),
        Value::Null,
    )
    .await
    .assert_error(404, "not_found");
    s.admin(
        "DELETE",
        &format!("{base}/simulcast-targets/{first_target}"),
        Value::Null,
    )
    .await
    .assert_error(404, "not_found");
    let r = s.admin("GET", &base, Value::Null).await;
    assert_eq!(
        r.json()["data"]["simulcast_targets"],
        json!([target]),
        "the live stream shows the remaining target"
    );
    // Up to 10 per live stream.
    for i in 0..9 {
        let r = s
            .admin(
                "POST",
                &format!("{base}/simulcast-targets"),
                json!({ "url": format!("rtmp://h/app{i}") }),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let m = s
        .admin(
            "POST",
            &format!("{base}/simulcast-targets"),
            json!({ "url": "rtmp://h/x" }),
        )
        .await
        .assert_error(409, "conflict");
    assert!(m.contains("simulcast targets"), "{m}");
    // Deleting the live stream takes its targets.
    assert_eq!(s.admin("DELETE", &base, Value::Null).await.status, 204);
    s.admin(
        "GET",
        &format!("{base}/simulcast-targets/{target_id}"),
        Value::Null,
    )
    .await
    .assert_error(404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playback_ids_changed_while_live_apply_at_once() {
    let s = Server::start("api_playback_live", unlimited()).await;
    let r = s.admin("POST", &v1("/live-streams"), json!({})).await;
    let stream = r.json()["data"].clone();
    let id = stream["id"].as_str().unwrap().to_owned();
    let first = stream["playback_ids"][0]["id"].as_str().unwrap().to_owned();
    let key = stream["stream_key"].as_str().unwrap().to_owned();
    let _grant = s.sessions.publish(publish_request(&key)).await.unwrap();
    let is_live = |t: PlaybackTarget| matches!(t, PlaybackTarget::Live(_));
    assert!(is_live(s.sessions.playback(&first).await));

    // Added during the broadcast: plays it now.
    let base = v1(&format!("/live-streams/{id}/playback-ids"));
    let r = s.admin("POST", &base, json!({"policy": "public"})).await;
    assert_eq!(r.status, 201);
    let added = r.json()["data"]["id"].as_str().unwrap().to_owned();
    assert!(is_live(s.sessions.playback(&added).await));

    // Deleted during the broadcast: stops now; the other one keeps playing.
    let r = s
        .admin("DELETE", &format!("{base}/{first}"), Value::Null)
        .await;
    assert_eq!(r.status, 204);
    assert!(matches!(
        s.sessions.playback(&first).await,
        PlaybackTarget::Unknown
    ));
    assert!(is_live(s.sessions.playback(&added).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_calls_disconnect_the_encoder() {
    let s = Server::start("api_lifecycle", unlimited()).await;
    let r = s.admin("POST", &v1("/live-streams"), json!({})).await;
    let stream = r.json()["data"].clone();
    let id = stream["id"].as_str().unwrap().to_owned();
    let base = v1(&format!("/live-streams/{id}"));
    let old_key = stream["stream_key"].as_str().unwrap().to_owned();

    // reset-stream-key: new key, the encoder on the old one is kicked and cannot come back.
    let grant = s.sessions.publish(publish_request(&old_key)).await.unwrap();
    let r = s
        .admin("POST", &format!("{base}/reset-stream-key"), Value::Null)
        .await;
    assert_eq!(r.status, 201);
    let reset = r.json()["data"].clone();
    assert_eq!(reset["id"], id.as_str());
    let key = reset["stream_key"].as_str().unwrap().to_owned();
    assert_ne!(key, old_key);
    assert_ne!(reset["srt_passphrase"], stream["srt_passphrase"]);
    assert!(grant.kick.is_cancelled());
    s.wait_no_publishers().await;
    assert_eq!(
        s.sessions
            .publish(publish_request(&old_key))
            .await
            .unwrap_err(),
        PublishRejection::UnknownStreamKey
    );

    // disable: kicked, refused, status disabled; enable: idle and admitted again.
    let grant = s.sessions.publish(publish_request(&key)).await.unwrap();
    let r = s
        .admin("PUT", &format!("{base}/disable"), Value::Null)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({ "data": {} }));
    assert!(grant.kick.is_cancelled());
    s.wait_no_publishers().await;
    let r = s.admin("GET", &base, Value::Null).await;
    assert_eq!(r.json()["data"]["status"], "disabled");
    assert_eq!(
        s.sessions.publish(publish_request(&key)).await.unwrap_err(),
        PublishRejection::Disabled
    );
    let r = s.admin("PUT", &format!("{base}/enable"), Value::Null).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({ "data": {} }));
    let r = s.admin("GET", &base, Value::Null).await;
    assert_eq!(r.json()["data"]["status"], "idle");

    // complete: kicked, idle (not disabled), and the stream can go live again.
    let grant = s.sessions.publish(publish_request(&key)).await.unwrap();
    let r = s
        .admin("PUT", &format!("{base}/complete"), Value::Null)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({ "data": {} }));
    assert!(grant.kick.is_cancelled());
    s.wait_no_publishers().await;
    let r = s.admin("GET", &base, Value::Null).await;
    assert_eq!(r.json()["data"]["status"], "idle");
    // complete without a broadcast changes nothing (the lifecycle owns the status).
    let r = s
        .admin("PUT", &format!("{base}/complete"), Value::Null)
        .await;
    assert_eq!(r.status, 200);
    let r = s.admin("GET", &base, Value::Null).await;
    assert_eq!(r.json()["data"]["status"], "idle");
    assert!(r.json()["data"].get("active_ingest_protocol").is_none());
    // complete on a disabled stream leaves it disabled.
    s.admin("PUT", &format!("{base}/disable"), Value::Null)
        .await;
    assert_eq!(
        s.admin("PUT", &format!("{base}/complete"), Value::Null)
            .await
            .status,
        200
    );
    let r = s.admin("GET", &base, Value::Null).await;
    assert_eq!(r.json()["data"]["status"], "disabled");
    s.admin("PUT", &format!("{base}/enable"), Value::Null).await;

    // delete: kicked, and the key is gone.
    let grant = s.sessions.publish(publish_request(&key)).await.unwrap();
    assert_eq!(s.admin("DELETE", &base, Value::Null).await.status, 204);
    assert!(grant.kick.is_cancelled());
    s.wait_no_publishers().await;
    assert_eq!(
        s.sessions.publish(publish_request(&key)).await.unwrap_err(),
        PublishRejection::UnknownStreamKey
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_permissions() {
    let s = Server::start("api_auth", unlimited()).await;
    let list = v1("/live-streams");
    let expect_401 = |r: common::Response| {
        r.assert_error(401, "unauthorized");
        assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"OnAir\""));
        assert_eq!(r.header("cache-control"), Some("no-store"));
    };

    // No credentials, on every kind of route.
    for (method, path) in [
        ("GET", list.clone()),
        ("POST", list.clone()),
        ("GET", v1("/live-streams/x")),
        ("DELETE", v1("/live-streams/x")),
        ("PUT", v1("/live-streams/x/disable")),
        ("GET", v1("/playback-ids/x")),
        ("GET", v1("/assets")),
    ] {
        expect_401(s.call(None, method, &path, Body::None, &[]).await);
    }
    // Wrong secret, unknown token, malformed headers.
    let wrong = Token {
        id: s.admin.id.clone(),
        secret: format!("{}x", s.admin.secret),
    };
    expect_401(s.call(Some(&wrong), "GET", &list, Body::None, &[]).await);
    let unknown = Token {
        id: "nobody".into(),
        secret: "secret".into(),
    };
    expect_401(s.call(Some(&unknown), "GET", &list, Body::None, &[]).await);
    for header in [
        "Bearer abc",
        "Basic !!!",
        "Basic",
        &common::basic(&s.admin.id, ""),
    ] {
        expect_401(
            s.call(None, "GET", &list, Body::None, &[("Authorization", header)])
                .await,
        );
    }
    // The scheme is case-insensitive.
    let lower = common::basic(&s.admin.id, &s.admin.secret).replace("Basic", "basic");
    let r = s
        .call(None, "GET", &list, Body::None, &[("Authorization", &lower)])
        .await;
    assert_eq!(r.status, 200);

    // A read-only token reads but cannot write.
    let r = s.admin("POST", &list, json!({})).await;
    let id = r.json()["data"]["id"].as_str().unwrap().to_owned();
    let base = v1(&format!("/live-streams/{id}"));
    let reader = s.reader.clone();
    assert_eq!(
        s.call(Some(&reader), "GET", &list, Body::None, &[])
            .await
            .status,
        200
    );
    assert_eq!(
        s.call(Some(&reader), "GET", &base, Body::None, &[])
            .await
            .status,
        200
    );
    assert_eq!(
        s.call(Some(&reader), "HEAD", &base, Body::None, &[])
            .await
            .status,
        200
    );
    for (method, path) in [
        ("POST", list.clone()),
        ("PATCH", base.clone()),
        ("DELETE", base.clone()),
        ("POST", format!("{base}/reset-stream-key")),
        ("PUT", format!("{base}/complete")),
        ("PUT", format!("{base}/disable")),
        ("PUT", format!("{base}/enable")),
        ("POST", format!("{base}/playback-ids")),
        ("POST", format!("{base}/simulcast-targets")),
    ] {
        let m = s
            .call(Some(&reader), method, &path, Body::None, &[])
            .await
            .assert_error(403, "forbidden");
        assert!(m.contains("write"), "{m}");
    }
    // Nothing was changed by the refused calls.
    let r = s.admin("GET", &base, Value::Null).await;
    assert_eq!(r.json()["data"]["status"], "idle");

    // A write-only token cannot read.
    let issued = s
        .store
        .create_access_token(
            "writer",
            Permissions {
                read: false,
                write: true,
            },
        )
        .await
        .unwrap();
    let writer = Token {
        id: issued.token.id.clone(),
        secret: issued.secret,
    };
    s.call(Some(&writer), "GET", &list, Body::None, &[])
        .await
        .assert_error(403, "forbidden");
    assert_eq!(
        s.call(
            Some(&writer),
            "PUT",
            &format!("{base}/enable"),
            Body::None,
            &[]
        )
        .await
        .status,
        200
    );

    // A revoked token is refused.
    assert!(s.store.revoke_access_token(&writer.id).await.unwrap());
    expect_401(
        s.call(
            Some(&writer),
            "PUT",
            &format!("{base}/enable"),
            Body::None,
            &[],
        )
        .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_parameters_name_the_field() {
    let s = Server::start("api_invalid", unlimited()).await;
    let list = v1("/live-streams");
    let cases: Vec<(Value, &str)> = vec![
        (json!({ "reconnect_window": 1801 }), "reconnect_window"),
        (json!({ "reconnect_window": -1 }), "reconnect_window"),
        (json!({ "reconnect_window": "60" }), "reconnect_window"),
        (json!({ "reconnect_window": 1800.5 }), "reconnect_window"),
        (
            json!({ "reconnect_window": 0.5, "max_continuous_duration": 60.5 }),
            "max_continuous_duration",
        ),
        (json!({ "meta": { "title": 7 } }), "meta"),
        (json!({ "meta": "x" }), "meta"),
        (json!({ "embedded_subtitles": [[1]] }), "embedded_subtitles"),
        (
            json!({ "embedded_subtitles": [{ "name": 1 }] }),
            "embedded_subtitles",
        ),
        (
            json!({ "max_continuous_duration": 59 }),
            "max_continuous_duration",
        ),
        (
            json!({ "max_continuous_duration": 43201 }),
            "max_continuous_duration",
        ),
        (json!({ "latency_mode": "ultra" }), "latency_mode"),
        (json!({ "latency_mode": 1 }), "latency_mode"),
        (
            json!({ "playback_policies": ["private"] }),
            "playback_policies",
        ),
        (json!({ "playback_policy": "Public" }), "playback_policy"),
        (json!({ "passthrough": "x".repeat(256) }), "passthrough"),
        (json!({ "new_asset_settings": [1] }), "new_asset_settings"),
        (
            json!({ "reconnect_slate_url": "ftp://x/y.png" }),
            "reconnect_slate_url",
        ),
        (json!({ "audio_only": "yes" }), "audio_only"),
        (
            json!({ "embedded_subtitles": [{ "language_channel": "cc9" }] }),
            "embedded_subtitles",
        ),
        (
            json!({ "simulcast_targets": [{ "url": "http://x/app" }] }),
            "simulcast_targets",
        ),
        (
            json!({ "simulcast_targets": "rtmp://x/app" }),
            "simulcast_targets",
        ),
        (
            json!({ "simulcast_targets": (0..11).map(|i| json!({ "url": format!("rtmp://h/{i}") })).collect::<Vec<_>>() }),
            "simulcast_targets",
        ),
    ];
    for (body, field) in &cases {
        let m = s
            .admin("POST", &list, body.clone())
            .await
            .assert_error(400, "invalid_parameters");
        assert!(m.contains(field), "{body}: {m}");
        // The API's words, never a Rust type (`expected i64`, `struct AssetMeta`).
        for rust in ["i64", "u32", "f64", "struct ", "untagged", "invalid type"] {
            assert!(!m.contains(rust), "{body}: {m}");
        }
    }
    let m = s
        .admin("POST", &list, json!({ "reconnect_window": "60" }))
        .await
        .assert_error(400, "invalid_parameters");
    assert_eq!(
        m,
        "invalid reconnect_window: must be a number of seconds from 0 to 1800, got the string \"60\""
    );

    // Bodies that are not a JSON object, or not JSON at all.
    let admin = s.admin.clone();
    let json_ct = [("Content-Type", "application/json")];
    for raw in ["{", "[1]", "\"x\"", "{\"reconnect_window\": 60,}"] {
        let m = s
            .call(
                Some(&admin),
                "POST",
                &list,
                Body::Sized(raw.into()),
                &json_ct,
            )
            .await
            .assert_error(400, "invalid_parameters");
        assert!(m.contains("JSON"), "{raw}: {m}");
    }
    for ct in ["text/plain", "application/x-www-form-urlencoded"] {
        let m = s
            .call(
                Some(&admin),
                "POST",
                &list,
                Body::Sized(b"{}".to_vec()),
                &[("Content-Type", ct)],
            )
            .await
            .assert_error(400, "invalid_parameters");
        assert!(m.contains("Content-Type"), "{m}");
    }
    // Nothing was created by any refused request.
    let r = s.admin("GET", &list, Value::Null).await;
    assert_eq!(r.json(), json!({ "data": [] }));

    // Updates are checked the same way.
    let r = s.admin("POST", &list, json!({})).await;
    let id = r.json()["data"]["id"].as_str().unwrap().to_owned();
    let base = v1(&format!("/live-streams/{id}"));
    for (body, field) in [
        (json!({ "reconnect_window": 1801 }), "reconnect_window"),
        (
            json!({ "max_continuous_duration": 59 }),
            "max_continuous_duration",
        ),
        (
            json!({ "max_continuous_duration": 43201 }),
            "max_continuous_duration",
        ),
        (json!({ "latency_mode": "ultra" }), "latency_mode"),
        (
            json!({ "use_slate_for_standard_latency": "yes" }),
            "use_slate_for_standard_latency",
        ),
    ] {
        let m = s
            .admin("PATCH", &base, body.clone())
            .await
            .assert_error(400, "invalid_parameters");
        assert!(m.contains(field), "{body}: {m}");
    }
    let m = s
        .call(
            Some(&admin),
            "PATCH",
            &base,
            Body::Sized(b"{".to_vec()),
            &json_ct,
        )
        .await
        .assert_error(400, "invalid_parameters");
    assert!(m.contains("JSON"), "{m}");
    let r = s.admin("GET", &base, Value::Null).await;
    assert_eq!(r.json()["data"]["reconnect_window"], 60, "unchanged");

    // Sub-resources and query parameters.
    let m = s
        .admin(
            "POST",
            &format!("{base}/playback-ids"),
            json!({ "policy": "private" }),
        )
        .await
        .assert_error(400, "invalid_parameters");
    assert!(m.contains("policy"), "{m}");
    for body in [
        json!({}),
        json!({ "url": "http://x/app" }),
        json!({ "url": "rtmp://x/app", "passthrough": 1 }),
    ] {
        s.admin("POST", &format!("{base}/simulcast-targets"), body)
            .await
            .assert_error(400, "invalid_parameters");
    }
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("page=0", "page"),
        ("page=-1", "page"),
        ("status=live", "status"),
    ] {
        let m = s
            .admin("GET", &v1(&format!("/live-streams?{query}")), Value::Null)
            .await
            .assert_error(400, "invalid_parameters");
        assert!(m.contains(field), "{query}: {m}");
    }
    assert_eq!(
        s.admin("GET", &v1("/live-streams?limit=100"), Value::Null)
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_and_routes() {
    let s = Server::start("api_unknown", unlimited()).await;
    let r = s.admin("POST", &v1("/live-streams"), json!({})).await;
    let id = r.json()["data"]["id"].as_str().unwrap().to_owned();
    let missing = v1("/live-streams/doesNotExist");
    let json_body = json!({ "policy": "public", "url": "rtmp://h/app" });
    for (method, path, body) in [
        ("GET", missing.clone(), Value::Null),
        ("PATCH", missing.clone(), json!({ "reconnect_window": 10 })),
        ("DELETE", missing.clone(), Value::Null),
        ("POST", format!("{missing}/reset-stream-key"), Value::Null),
        ("PUT", format!("{missing}/complete"), Value::Null),
        ("PUT", format!("{missing}/disable"), Value::Null),
        ("PUT", format!("{missing}/enable"), Value::Null),
        ("POST", format!("{missing}/playback-ids"), json_body.clone()),
        ("GET", format!("{missing}/playback-ids/x"), Value::Null),
        ("DELETE", format!("{missing}/playback-ids/x"), Value::Null),
        (
            "POST",
            format!("{missing}/simulcast-targets"),
            json_body.clone(),
        ),
        ("GET", format!("{missing}/simulcast-targets/x"), Value::Null),
        (
            "DELETE",
            format!("{missing}/simulcast-targets/x"),
            Value::Null,
        ),
        (
            "GET",
            v1(&format!("/live-streams/{id}/playback-ids/x")),
            Value::Null,
        ),
        (
            "DELETE",
            v1(&format!("/live-streams/{id}/playback-ids/x")),
            Value::Null,
        ),
        (
            "GET",
            v1(&format!("/live-streams/{id}/simulcast-targets/x")),
            Value::Null,
        ),
        (
            "DELETE",
            v1(&format!("/live-streams/{id}/simulcast-targets/x")),
            Value::Null,
        ),
        ("GET", v1("/playback-ids/doesNotExist"), Value::Null),
        // Routes this gateway does not have.
        ("GET", v1("/uploads"), Value::Null),
        (
            "GET",
            v1(&format!("/live-streams/{id}/nothing")),
            Value::Null,
        ),
        ("POST", v1("/uploads"), json!({})),
    ] {
        s.admin(method, &path, body)
            .await
            .assert_error(404, "not_found");
    }
    // A known route with a method it does not have.
    s.admin("PUT", &v1("/live-streams"), json!({}))
        .await
        .assert_error(405, "method_not_allowed");
    s.admin(
        "POST",
        &v1(&format!("/live-streams/{id}/complete")),
        Value::Null,
    )
    .await
    .assert_error(405, "method_not_allowed");
    // The stream is still there, untouched.
    let r = s
        .admin("GET", &v1(&format!("/live-streams/{id}")), Value::Null)
        .await;
    assert_eq!(r.json()["data"]["status"], "idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused() {
    let s = Server::start("api_body_limit", unlimited()).await;
    let admin = s.admin.clone();
    let list = v1("/live-streams");
    let json_ct = [("Content-Type", "application/json")];
    let limit = api::DEFAULT_MAX_BODY_BYTES;
    // A valid object padded with spaces to exactly `len` bytes.
    let padded = |len: usize| {
        let mut body = b"{\"passthrough\": \"big\"}".to_vec();
        body.resize(len, b' ');
        body
    };
    let r = s
        .call(
            Some(&admin),
            "POST",
            &list,
            Body::Sized(padded(limit)),
            &json_ct,
        )
        .await;
    assert_eq!(r.status, 201, "a body of exactly the limit is accepted");
    let id = r.json()["data"]["id"].as_str().unwrap().to_owned();
    let r = s
        .call(
            Some(&admin),
            "POST",
            &list,
            Body::Chunked(padded(limit)),
            &json_ct,
        )
        .await;
    assert_eq!(r.status, 201, "chunked, at the limit");

    for body in [
        Body::Sized(padded(limit + 1)),
        Body::Chunked(padded(limit + 1)),
        Body::Sized(padded(4 * limit)),
    ] {
        let m = s
            .call(Some(&admin), "POST", &list, body, &json_ct)
            .await
            .assert_error(413, "payload_too_large");
        assert!(m.contains(&limit.to_string()), "{m}");
    }
    let base = v1(&format!("/live-streams/{id}"));
    s.call(
        Some(&admin),
        "PATCH",
        &base,
        Body::Chunked(padded(limit + 1)),
        &json_ct,
    )
    .await
    .assert_error(413, "payload_too_large");
    // Routes that take no body refuse a declared oversized one too.
    s.call(
        Some(&admin),
        "PUT",
        &format!("{base}/enable"),
        Body::Sized(padded(limit + 1)),
        &json_ct,
    )
    .await
    .assert_error(413, "payload_too_large");
    // A smaller configured limit applies.
    let small = Server::start(
        "api_body_limit_small",
        api::ApiConfig {
            max_body_bytes: 100,
            ..unlimited()
        },
    )
    .await;
    let admin = small.admin.clone();
    small
        .call(
            Some(&admin),
            "POST",
            &list,
            Body::Sized(padded(101)),
            &json_ct,
        )
        .await
        .assert_error(413, "payload_too_large");
    assert_eq!(
        small
            .call(
                Some(&admin),
                "POST",
                &list,
                Body::Sized(padded(100)),
                &json_ct
            )
            .await
            .status,
        201
    );
    let r = s.admin("GET", &list, Value::Null).await;
    assert_eq!(ids(&r.json()).len(), 2, "refused bodies created nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_per_token_and_class() {
    // The defaults: POST 1/s with a burst of 10, other methods 5/s with a burst of 50.
    let s = Server::start("api_rate_limit", api::ApiConfig::default()).await;
    let list = v1("/live-streams");
    let started = std::time::Instant::now();
    let mut created: u64 = 0;
    let refused = loop {
        let r = s.admin("POST", &list, json!({})).await;
        if r.status != 201 {
            break r;
        }
        created += 1;
        assert!(created <= 100, "no 429 after {created} POSTs");
    };
    // A burst of 10, plus at most what refilled (1/s) while the requests ran.
    let refilled = started.elapsed().as_secs() + 1;
    assert!(
        (10..=10 + refilled).contains(&created),
        "{created} in {:?}",
        started.elapsed()
    );
    refused.assert_error(429, "too_many_requests");
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");

    // Other methods have their own bucket; other tokens their own buckets.
    assert_eq!(s.admin("GET", &list, Value::Null).await.status, 200);
    let issued = s
        .store
        .create_access_token("other", Permissions::READ_WRITE)
        .await
        .unwrap();
    let other = Token {
        id: issued.token.id,
        secret: issued.secret,
    };
    let r = s
        .call(
            Some(&other),
            "POST",
            &list,
            Body::Sized(b"{}".to_vec()),
            &[("Content-Type", "application/json")],
        )
        .await;
    assert_eq!(r.status, 201);

    // After Retry-After, the first token may POST again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(s.admin("POST", &list, json!({})).await.status, 201);

    // A burst of GETs runs out too (the 5/s refill cannot keep up with back-to-back
    // requests for long), and is answered 429 with Retry-After.
    let mut gets = 0;
    let refused = loop {
        let r = s.admin("GET", &list, Value::Null).await;
        if r.status != 200 {
            break r;
        }
        gets += 1;
        assert!(gets <= 1000, "no 429 after {gets} GETs");
    };
    assert!(gets >= 50, "{gets}");
    refused.assert_error(429, "too_many_requests");
    assert_eq!(refused.header("retry-after"), Some("1"));
    // Refused requests need valid credentials first: a wrong secret is still 401.
    let wrong = Token {
        id: s.admin.id.clone(),
        secret: "wrong".into(),
    };
    s.call(Some(&wrong), "GET", &list, Body::None, &[])
        .await
        .assert_error(401, "unauthorized");
}

/// The binary merges this router with the playback router (`/{file}` and
/// `/{playback_id}/{file}`, with a CORS layer): both must keep working, and paths outside
/// `/video/v1` must not ask for credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merges_with_the_playback_routes() {
    use axum::routing::get;
    use tower_http::cors::{Any, CorsLayer};

    let store = store::SqliteStore::open_in_memory().await.unwrap();
    let dir = testkit::scratch_dir("api_merge");
    let sessions = session::SessionManager::new(
        store.clone(),
        session::SessionConfig::new(&dir),
        Default::default(),
    );
    let issued = store
        .create_access_token("t", Permissions::READ_WRITE)
        .await
        .unwrap();
    let playback = axum::Router::new()
        .route("/{file}", get(|| async { "multivariant" }))
        .route("/{playback_id}/{file}", get(|| async { "media" }))
        .layer(CorsLayer::new().allow_origin(Any));
    let app = api::router(api::ApiState::new(sessions, common::unlimited())).merge(playback);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let get = |path: &'static str, auth: Option<String>| async move {
        tokio::task::spawn_blocking(move || {
            let headers: Vec<(&str, &str)> = auth
                .as_deref()
                .map(|a| vec![("Authorization", a)])
                .unwrap_or_default();
            common::send(addr, "GET", path, &headers, Body::None)
        })
        .await
        .unwrap()
    };
    let auth = Some(common::basic(&issued.token.id, &issued.secret));
    let r = get("/abc.m3u8", None).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"multivariant"[..]));
    let r = get("/abc/stream.m3u8", None).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"media"[..]));
    let r = get("/video/stream.m3u8", None).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"media"[..]));
    assert_eq!(get("/a/b/c", None).await.status, 404);
    assert!(get("/a/b/c", None)
        .await
        .header("www-authenticate")
        .is_none());
    get("/video/v1/live-streams", None)
        .await
        .assert_error(401, "unauthorized");
    let r = get("/video/v1/live-streams", auth.clone()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({ "data": [] }));
    let r = get("/video/v1/assets", auth.clone()).await;
    assert_eq!(r.json(), json!({ "data": [], "next_cursor": null }));
    get("/video/v1/uploads", auth)
        .await
        .assert_error(404, "not_found");
}

/// A client that stops sending its body halfway is answered `408` once the request timeout
/// has passed, instead of holding the handler forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_time_out() {
    use std::io::{Read, Write};

    let s = Server::start(
        "api_timeout",
        api::ApiConfig {
            request_timeout: Duration::from_millis(300),
            ..unlimited()
        },
    )
    .await;
    let addr = s.addr;
    let auth = s.admin.header();
    let started = std::time::Instant::now();
    let raw = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "POST /video/v1/live-streams HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{{\r\n"
        )
        .unwrap();
        // Never finish the body; read what the server says.
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
            if raw.windows(4).any(|w| w == b"\r\n\r\n") && raw.ends_with(b"}") {
                break;
            }
        }
        raw
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let r = s.admin("GET", &v1("/live-streams"), Value::Null).await;
    assert_eq!(r.json(), json!({ "data": [] }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_create_bodies_come_back_in_the_current_shapes() {
    let s = Server::start("api_legacy", unlimited()).await;
    let r = s
        .admin(
            "POST",
            &v1("/live-streams"),
            json!({ "playback_policy": "public",
                    "new_asset_settings": { "playback_policy": "public" },
                    "reconnect_window": 12.5,
                    "reduced_latency": true,
                    "meta": { "title": "Show", "creator_id": "c-1", "external_id": "x-1" },
                    "not_an_onair_field": { "ignored": true } }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let created = r.json()["data"].clone();
    assert_eq!(created["reconnect_window"], json!(12.5));
    assert_eq!(created["latency_mode"], "reduced");
    assert_eq!(
        created["new_asset_settings"],
        json!({ "playback_policies": ["public"] })
    );
    assert_eq!(
        created["meta"],
        json!({ "title": "Show", "creator_id": "c-1", "external_id": "x-1" })
    );
    assert_eq!(created["playback_ids"][0]["policy"], "public");
    assert!(created.get("playback_policy").is_none());
    assert!(created.get("reduced_latency").is_none());
    let path = v1(&format!(
        "/live-streams/{}",
        created["id"].as_str().unwrap()
    ));
    assert_eq!(
        s.admin("GET", &path, Value::Null).await.json()["data"],
        created
    );

    // PATCH: meta replaced, then cleared; a fraction for the window; the legacy latency flag.
    let r = s
        .admin(
            "PATCH",
            &path,
            json!({ "meta": { "title": "Renamed" }, "reconnect_window": 0.1, "low_latency": true,
                    "new_asset_settings": { "playback_policy": ["signed"] } }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let updated = r.json()["data"].clone();
    assert_eq!(updated["meta"], json!({ "title": "Renamed" }));
    assert_eq!(updated["reconnect_window"], json!(0.1));
    assert_eq!(updated["latency_mode"], "low");
    assert_eq!(
        updated["new_asset_settings"],
        json!({ "playback_policies": ["signed"] })
    );
    // `mux live update --title` sends `title` alone: it is meta.title.
    let r = s
        .admin(
            "PATCH",
            &path,
            json!({ "meta": { "title": "Show", "external_id": "x-1" } }),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = s
        .admin("PATCH", &path, json!({ "title": "From the CLI" }))
        .await;
    assert_eq!(
        r.json()["data"]["meta"],
        json!({ "title": "From the CLI", "external_id": "x-1" })
    );
    let r = s.admin("PATCH", &path, json!({ "meta": null })).await;
    assert!(r.json()["data"].get("meta").is_none(), "{}", r.json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_parent_is_404_before_any_body_check() {
    let s = Server::start("api_parent_first", unlimited()).await;
    let missing = v1("/live-streams/doesNotExist");
    let asset = v1("/assets/doesNotExist");
    for (method, path, body) in [
        ("PATCH", missing.clone(), json!({ "reconnect_window": "x" })),
        (
            "POST",
            format!("{missing}/playback-ids"),
            json!({ "policy": 7 }),
        ),
        (
            "POST",
            format!("{missing}/simulcast-targets"),
            json!({ "url": 7 }),
        ),
        ("PATCH", asset.clone(), json!({ "title": "misplaced" })),
        (
            "POST",
            format!("{asset}/playback-ids"),
            json!({ "policy": "x" }),
        ),
    ] {
        s.admin(method, &path, body)
            .await
            .assert_error(404, "not_found");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_served_without_credentials() {
    let s = Server::start("api_openapi", unlimited()).await;
    let r = s
        .call(None, "GET", api::OPENAPI_PATH, Body::None, &[])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc = r.json();
    assert_eq!(
        doc,
        serde_json::from_str::<Value>(api::openapi_document()).unwrap()
    );
    assert!(doc["paths"]["/video/v1/live-streams/{live_stream_id}"]["patch"].is_object());
}
