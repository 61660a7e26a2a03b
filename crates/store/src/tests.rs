//! Behaviour of the SQLite store through the [`Store`] trait.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::*;

async fn mem() -> SqliteStore {
    SqliteStore::open_in_memory().await.unwrap()
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "onair-store-test-{}-{}",
            std::process::id(),
            crate::ids::live_stream_id()
        ));
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn field_of(err: StoreError) -> &'static str {
    match err {
        StoreError::InvalidField { field, .. } => field,
        other => panic!("expected InvalidField, got {other:?}"),
    }
}

#[tokio::test]
async fn create_with_defaults_matches_the_seeds() {
    let store = mem().await;
    let ls = store
        .create_live_stream(NewLiveStream::default())
        .await
        .unwrap();

    assert_eq!(ls.id.len(), 44);
    assert!(ls.id.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(ls.status, LiveStreamStatus::Idle);
    assert_eq!(ls.latency_mode, LatencyMode::Standard);
    assert_eq!(ls.reconnect_window, 60);
    assert_eq!(ls.max_continuous_duration, 43_200);
    assert!(!ls.audio_only);
    assert!(!ls.test);
    assert!(!ls.use_slate_for_standard_latency);
    assert_eq!(ls.reconnect_slate_url, None);
    assert_eq!(ls.passthrough, None);
    assert_eq!(ls.new_asset_settings, None);
    assert_eq!(ls.active_ingest_protocol, None);
    assert_eq!(ls.active_asset_id, None);
    assert!(ls.recent_asset_ids.is_empty());
    assert!(ls.simulcast_targets.is_empty());
    assert!(ls.embedded_subtitles.is_empty());
    assert!(ls.srt_passphrase.len() >= 10 && ls.srt_passphrase.len() <= 79);
    assert_eq!(ls.playback_ids.len(), 1);
    assert_eq!(ls.playback_ids[0].policy, PlaybackPolicy::Public);
    assert_eq!(ls.playback_ids[0].id.len(), 44);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - ls.created_at).abs() < 60);

    // What the database returns is what create returned.
    let stored = store.get_live_stream(&ls.id).await.unwrap().unwrap();
    assert_eq!(stored, ls);

    // The JSON object of the seeds: created_at as a string, unset fields absent.
    let v = serde_json::to_value(&stored).unwrap();
    assert_eq!(v["created_at"], json!(ls.created_at.to_string()));
    assert_eq!(v["status"], "idle");
    assert_eq!(v["playback_ids"][0]["policy"], "public");
    assert_eq!(v["reconnect_window"], 60);
    assert_eq!(v["latency_mode"], "standard");
    assert_eq!(v["max_continuous_duration"], 43200);
    for absent in [
        "passthrough",
        "new_asset_settings",
        "active_ingest_protocol",
        "active_asset_id",
        "reconnect_slate_url",
        "test",
    ] {
        assert!(v.get(absent).is_none(), "{absent} should be omitted");
    }

    assert!(store.get_live_stream("nope").await.unwrap().is_none());
}

#[tokio::test]
async fn latency_mode_sets_the_default_reconnect_window() {
    let store = mem().await;
    for (mode, window) in [("standard", 60), ("reduced", 0), ("low", 0)] {
        let ls = store
            .create_live_stream(NewLiveStream {
                latency_mode: Some(mode.into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(ls.latency_mode.as_str(), mode);
        assert_eq!(ls.reconnect_window, window, "{mode}");
    }
    // An explicit value wins, and every setting round-trips through the database.
    let ls = store
        .create_live_stream(NewLiveStream {
            latency_mode: Some("low".into()),
            reconnect_window: Some(30),
            max_continuous_duration: Some(600),
            passthrough: Some("my stream".into()),
            new_asset_settings: Some(json!({ "playback_policies": ["public"] })),
            audio_only: true,
            test: true,
            use_slate_for_standard_latency: true,
            reconnect_slate_url: Some("https://example.com/slate.png".into()),
            playback_policies: Some(vec!["public".into(), "signed".into()]),
            embedded_subtitles: vec![EmbeddedSubtitle {
                name: Some("English CC".into()),
                passthrough: None,
                language_code: "en".into(),
                language_channel: "cc2".into(),
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ls.reconnect_window, 30);
    assert_eq!(
        ls.playback_ids.iter().map(|p| p.policy).collect::<Vec<_>>(),
        vec![PlaybackPolicy::Public, PlaybackPolicy::Signed]
    );
    let stored = store.get_live_stream(&ls.id).await.unwrap().unwrap();
    assert_eq!(stored, ls);
    let v = serde_json::to_value(&stored).unwrap();
    assert_eq!(v["new_asset_settings"]["playback_policies"][0], "public");
    assert_eq!(v["audio_only"], true);
    assert_eq!(v["embedded_subtitles"][0]["language_channel"], "cc2");
}

#[tokio::test]
async fn invalid_parameters_name_the_field_and_write_nothing() {
    let store = mem().await;
    let cases = [
        (
            NewLiveStream {
                reconnect_window: Some(1801),
                ..Default::default()
            },
            "reconnect_window",
        ),
        (
            NewLiveStream {
                max_continuous_duration: Some(59),
                ..Default::default()
            },
            "max_continuous_duration",
        ),
        (
            NewLiveStream {
                max_continuous_duration: Some(43_201),
                ..Default::default()
            },
            "max_continuous_duration",
        ),
        (
            NewLiveStream {
                passthrough: Some("x".repeat(256)),
                ..Default::default()
            },
            "passthrough",
        ),
        (
            NewLiveStream {
                latency_mode: Some("fast".into()),
                ..Default::default()
            },
            "latency_mode",
        ),
        (
            NewLiveStream {
                playback_policies: Some(vec!["public".into(), "secret".into()]),
                ..Default::default()
            },
            "playback_policies",
        ),
    ];
    for (params, field) in cases {
        let err = store.create_live_stream(params).await.unwrap_err();
        assert_eq!(field_of(err), field);
    }
    assert!(store
        .list_live_streams(1, 100, None)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn stream_keys_are_unique_and_long() {
    let store = mem().await;
    let mut keys = HashSet::new();
    let mut ids = HashSet::new();
    for _ in 0..50 {
        let ls = store
            .create_live_stream(NewLiveStream::default())
            .await
            .unwrap();
        let hex_digits = ls
            .stream_key
            .chars()
            .filter(|c| c.is_ascii_hexdigit())
            .count();
        assert!(hex_digits >= 32, "{} hex digits", hex_digits); // >= 128 bits
        assert!(keys.insert(ls.stream_key.clone()));
        assert!(ids.insert(ls.id.clone()));
        let found = store
            .find_live_stream_by_stream_key(&ls.stream_key)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.id, ls.id);
    }
    assert!(store
        .find_live_stream_by_stream_key("not-a-key")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn list_pages_newest_first_and_filters_by_status() {
    let store = mem().await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(
            store
                .create_live_stream(NewLiveStream::default())
                .await
                .unwrap()
                .id,
        );
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    let ids = |v: Vec<LiveStream>| v.into_iter().map(|l| l.id).collect::<Vec<_>>();

    assert_eq!(
        ids(store.list_live_streams(1, 2, None).await.unwrap()),
        newest_first[0..2]
    );
    assert_eq!(
        ids(store.list_live_streams(2, 2, None).await.unwrap()),
        newest_first[2..4]
    );
    assert_eq!(
        ids(store.list_live_streams(3, 2, None).await.unwrap()),
        newest_first[4..5]
    );
    assert!(store
        .list_live_streams(4, 2, None)
        .await
        .unwrap()
        .is_empty());
    let all = store.list_live_streams(1, 10, None).await.unwrap();
    assert_eq!(ids(all.clone()), newest_first);
    assert!(all.iter().all(|l| l.playback_ids.len() == 1));

    store
        .set_status(&created[1], StatusChange::Active(IngestProtocol::Rtmp))
        .await
        .unwrap();
    store.disable_live_stream(&created[3]).await.unwrap();
    assert_eq!(
        ids(store
            .list_live_streams(1, 10, Some(LiveStreamStatus::Active))
            .await
            .unwrap()),
        vec![created[1].clone()]
    );
    assert_eq!(
        ids(store
            .list_live_streams(1, 10, Some(LiveStreamStatus::Disabled))
            .await
            .unwrap()),
        vec![created[3].clone()]
    );
    assert_eq!(
        ids(store
            .list_live_streams(1, 10, Some(LiveStreamStatus::Idle))
            .await
            .unwrap()),
        vec![created[4].clone(), created[2].clone(), created[0].clone()]
    );

    assert_eq!(
        field_of(store.list_live_streams(0, 10, None).await.unwrap_err()),
        "page"
    );
    assert_eq!(
        field_of(store.list_live_streams(1, 0, None).await.unwrap_err()),
        "limit"
    );
    assert_eq!(
        field_of(
            store
                .list_live_streams(1, MAX_LIST_LIMIT + 1, None)
                .await
                .unwrap_err()
        ),
        "limit"
    );
    // A huge page is just empty, not an overflow.
    assert!(store
        .list_live_streams(u32::MAX, MAX_LIST_LIMIT, None)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn reset_stream_key_invalidates_the_old_key() {
    let store = mem().await;
    let ls = store
        .create_live_stream(NewLiveStream::default())
        .await
        .unwrap();
    let reset = store.reset_stream_key(&ls.id).await.unwrap().unwrap();
    assert_ne!(reset.stream_key, ls.stream_key);
    assert_ne!(reset.srt_passphrase, ls.srt_passphrase);
    assert_eq!(reset.playback_ids, ls.playback_ids);
    assert!(store
        .find_live_stream_by_stream_key(&ls.stream_key)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .find_live_stream_by_stream_key(&reset.stream_key)
            .await
            .unwrap()
            .unwrap()
            .id,
        ls.id
    );
    assert!(store.reset_stream_key("missing").await.unwrap().is_none());
}

#[tokio::test]
async fn status_transitions_disable_and_enable() {
    let store = mem().await;
    let id = store
        .create_live_stream(NewLiveStream::default())
        .await
        .unwrap()
        .id;

    let active = store
        .set_status(&id, StatusChange::Active(IngestProtocol::Srt))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(active.status, LiveStreamStatus::Active);
    assert_eq!(active.active_ingest_protocol, Some(IngestProtocol::Srt));
    assert_eq!(
        serde_json::to_value(&active).unwrap()["active_ingest_protocol"],
        "srt"
    );

    // Enabling an active stream leaves it active.
    let still = store.enable_live_stream(&id).await.unwrap().unwrap();
    assert_eq!(still.status, LiveStreamStatus::Active);

    let idle = store
        .set_status(&id, StatusChange::Idle)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(idle.status, LiveStreamStatus::Idle);
    assert_eq!(idle.active_ingest_protocol, None);

    store
        .set_status(&id, StatusChange::Active(IngestProtocol::Rtmp))
        .await
        .unwrap();
    let disabled = store.disable_live_stream(&id).await.unwrap().unwrap();
    assert_eq!(disabled.status, LiveStreamStatus::Disabled);
    assert_eq!(disabled.active_ingest_protocol, None);

    // A disabled stream cannot go active, and a late "idle" does not re-enable it.
    let err = store
        .set_status(&id, StatusChange::Active(IngestProtocol::Rtmp))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let after_idle = store
        .set_status(&id, StatusChange::Idle)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after_idle.status, LiveStreamStatus::Disabled);

    let enabled = store.enable_live_stream(&id).await.unwrap().unwrap();
    assert_eq!(enabled.status, LiveStreamStatus::Idle);

    assert!(store
        .set_status("missing", StatusChange::Idle)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .set_status("missing", StatusChange::Active(IngestProtocol::Rtmp))
        .await
        .unwrap()
        .is_none());
    assert!(store
        .disable_live_stream("missing")
        .await
        .unwrap()
        .is_none());
    assert!(store.enable_live_stream("missing").await.unwrap().is_none());
}

#[tokio::test]
async fn playback_ids_add_lookup_delete() {
    let store = mem().await;
    let ls = store
        .create_live_stream(NewLiveStream::default())
        .await
        .unwrap();
    let other = store
        .create_live_stream(NewLiveStream::default())
        .await
        .unwrap();

    let signed = store
        .add_playback_id(&ls.id, PlaybackPolicy::Signed)
        .await
        .unwrap();
    assert_eq!(signed.policy, PlaybackPolicy::Signed);
    assert_eq!(signed.id.len(), 44);

    let got = store.get_playback_id(&ls.id, &signed.id).await.unwrap();
    assert_eq!(got.as_ref(), Some(&signed));
    // Scoped to its own live stream.
    assert!(store
        .get_playback_id(&other.id, &signed.id)
        .await
        .unwrap()
        .is_none());
    assert!(!store
        .delete_playback_id(&other.id, &signed.id)
        .await
        .unwrap());

    let (found, pid) = store
        .find_by_playback_id(&signed.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, ls.id);
    assert_eq!(pid, signed);
    assert_eq!(
        found.playback_ids,
        vec![ls.playback_ids[0].clone(), signed.clone()]
    );

    assert!(store.delete_playback_id(&ls.id, &signed.id).await.unwrap());
    assert!(!store.delete_playback_id(&ls.id, &signed.id).await.unwrap());
    assert!(store
        .find_by_playback_id(&signed.id)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .get_live_stream(&ls.id)
            .await
            .unwrap()
            .unwrap()
            .playback_ids,
        ls.playback_ids
    );

    let err = store
        .add_playback_id("missing", PlaybackPolicy::Public)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotFound {
                resource: "live stream",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn delete_cascades_to_playback_ids() {
    let store = mem().await;
    let ls = store
        .create_live_stream(NewLiveStream {
            playback_policies: Some(vec!["public".into(), "signed".into()]),
            ..Default::default()
        })
        .await
        .unwrap();
    let keep = store
        .create_live_stream(NewLiveStream::default())
        .await
        .unwrap();
    assert!(store.delete_live_stream(&ls.id).await.unwrap());
    assert!(!store.delete_live_stream(&ls.id).await.unwrap());
    assert!(store.get_live_stream(&ls.id).await.unwrap().is_none());
    for p in &ls.playback_ids {
        assert!(store.find_by_playback_id(&p.id).await.unwrap().is_none());
    }
    let remaining: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM playback_ids")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(remaining, 1);
    assert!(store
        .find_by_playback_id(&keep.playback_ids[0].id)
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn update_applies_a_validated_patch() {
    let store = mem().await;
    let ls = store
        .create_live_stream(NewLiveStream {
            passthrough: Some("before".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let patch: LiveStreamPatch = serde_json::from_value(json!({
        "latency_mode": "reduced",
        "reconnect_window": 120,
        "max_continuous_duration": 3600,
        "passthrough": null,
        "use_slate_for_standard_latency": true,
        "reconnect_slate_url": "https://example.com/s.png",
        "new_asset_settings": { "playback_policies": ["signed"] }
    }))
    .unwrap();
    let updated = store
        .update_live_stream(&ls.id, patch)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.latency_mode, LatencyMode::Reduced);
    assert_eq!(updated.reconnect_window, 120);
    assert_eq!(updated.max_continuous_duration, 3600);
    assert_eq!(updated.passthrough, None);
    assert!(updated.use_slate_for_standard_latency);
    assert_eq!(
        updated.reconnect_slate_url.as_deref(),
        Some("https://example.com/s.png")
    );
    assert_eq!(
        updated.new_asset_settings,
        Some(json!({ "playback_policies": ["signed"] }))
    );
    assert_eq!(updated.stream_key, ls.stream_key);

    // An empty patch changes nothing.
    let same = store
        .update_live_stream(&ls.id, LiveStreamPatch::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(same, updated);

    let bad = LiveStreamPatch {
        reconnect_window: Some(5000),
        ..Default::default()
    };
    assert_eq!(
        field_of(store.update_live_stream(&ls.id, bad).await.unwrap_err()),
        "reconnect_window"
    );
    assert!(store
        .update_live_stream("missing", LiveStreamPatch::default())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn access_tokens_verify_revoke_and_count() {
    let store = mem().await;
    assert_eq!(store.count_access_tokens().await.unwrap(), 0);
    let issued = store
        .create_access_token("ci", Permissions::READ_WRITE)
        .await
        .unwrap();
    let id = issued.token.id.clone();
    assert_eq!(id.len(), 36);
    assert!(issued.secret.len() >= 32);
    assert!(!format!("{issued:?}").contains(&issued.secret));

    assert_eq!(
        store
            .verify_access_token(&id, &issued.secret)
            .await
            .unwrap(),
        Some(Permissions::READ_WRITE)
    );
    assert_eq!(store.verify_access_token(&id, "wrong").await.unwrap(), None);
    assert_eq!(
        store
            .verify_access_token("unknown", &issued.secret)
            .await
            .unwrap(),
        None
    );

    let ro = store
        .create_access_token("dashboard", Permissions::READ_ONLY)
        .await
        .unwrap();
    assert_eq!(
        store
            .verify_access_token(&ro.token.id, &ro.secret)
            .await
            .unwrap(),
        Some(Permissions::READ_ONLY)
    );
    assert_eq!(store.count_access_tokens().await.unwrap(), 2);

    // Only the salted hash is stored.
    let (salt, hash): (String, String) =
        sqlx::query_as("SELECT secret_salt, secret_hash FROM access_tokens WHERE id = $1")
            .bind(&id)
            .fetch_one(&store.pool)
            .await
            .unwrap();
    assert!(!salt.contains(&issued.secret) && !hash.contains(&issued.secret));
    assert_eq!(hash.len(), 64);

    let listed = store.list_access_tokens().await.unwrap();
    assert_eq!(
        listed.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        vec!["ci", "dashboard"]
    );
    assert!(!serde_json::to_string(&listed)
        .unwrap()
        .contains(&issued.secret));

    assert!(store.revoke_access_token(&id).await.unwrap());
    assert!(!store.revoke_access_token("unknown").await.unwrap());
    assert_eq!(
        store
            .verify_access_token(&id, &issued.secret)
            .await
            .unwrap(),
        None
    );
    assert!(store.get_access_token(&id).await.unwrap().unwrap().revoked);
    assert_eq!(store.count_access_tokens().await.unwrap(), 1);

    let err = store
        .create_access_token(
            "none",
            Permissions {
                read: false,
                write: false,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(field_of(err), "permissions");
}

#[tokio::test]
async fn ensure_access_token_is_idempotent_and_authoritative() {
    let store = mem().await;
    let id = "44c819de-4add-4c8e-9a6f-0123456789ab";
    let perms = Permissions::READ_WRITE;
    assert_eq!(
        store
            .ensure_access_token(id, "s3cret", perms)
            .await
            .unwrap(),
        EnsureOutcome::Created
    );
    for _ in 0..2 {
        assert_eq!(
            store
                .ensure_access_token(id, "s3cret", perms)
                .await
                .unwrap(),
            EnsureOutcome::Unchanged
        );
    }
    assert_eq!(store.count_access_tokens().await.unwrap(), 1);
    assert_eq!(
        store.verify_access_token(id, "s3cret").await.unwrap(),
        Some(perms)
    );

    // A new secret replaces the old one.
    assert_eq!(
        store
            .ensure_access_token(id, "other:secret", perms)
            .await
            .unwrap(),
        EnsureOutcome::Updated
    );
    assert_eq!(store.verify_access_token(id, "s3cret").await.unwrap(), None);
    assert_eq!(
        store.verify_access_token(id, "other:secret").await.unwrap(),
        Some(perms)
    );

    // Permissions are brought back, and a revoked token is restored.
    store
        .ensure_access_token(id, "other:secret", Permissions::READ_ONLY)
        .await
        .unwrap();
    assert!(store.revoke_access_token(id).await.unwrap());
    assert_eq!(
        store
            .ensure_access_token(id, "other:secret", perms)
            .await
            .unwrap(),
        EnsureOutcome::Updated
    );
    assert_eq!(
        store.verify_access_token(id, "other:secret").await.unwrap(),
        Some(perms)
    );
    let token = store.get_access_token(id).await.unwrap().unwrap();
    assert_eq!(token.name, ENSURED_TOKEN_NAME);
    assert!(!token.revoked);

    assert_eq!(
        field_of(
            store
                .ensure_access_token("a:b", "x", perms)
                .await
                .unwrap_err()
        ),
        "id"
    );
    assert_eq!(
        field_of(
            store
                .ensure_access_token("ab", "", perms)
                .await
                .unwrap_err()
        ),
        "secret"
    );
}

#[tokio::test]
async fn secrets_never_reach_the_database_files() {
    let dir = TempDir::new();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let issued = store
        .create_access_token("file", Permissions::READ_WRITE)
        .await
        .unwrap();
    let chosen = "operator-chosen-secret-value";
    store
        .ensure_access_token("env-token", chosen, Permissions::READ_WRITE)
        .await
        .unwrap();
    // Rows can sit in the WAL as well as in the main file: search every file.
    let mut searched = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for secret in [issued.secret.as_bytes(), chosen.as_bytes()] {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret));
        }
        // The token ID is there, so the search does look at the data.
        if bytes.windows(9).any(|w| w == b"env-token") {
            searched += 1;
        }
    }
    assert!(searched > 0);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_on_one_file_see_each_others_writes() {
    let dir = TempDir::new();
    // The data directory does not exist yet: open creates it.
    let server = SqliteStore::open(&dir.path().join("nested")).await.unwrap();
    let cli = SqliteStore::open(&dir.path().join("nested")).await.unwrap();
    assert_eq!(
        server.path().unwrap(),
        dir.path().join("nested").join(DB_FILE_NAME)
    );

    let ls = cli
        .create_live_stream(NewLiveStream::default())
        .await
        .unwrap();
    let seen = server
        .find_live_stream_by_stream_key(&ls.stream_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen, ls);

    server
        .set_status(&ls.id, StatusChange::Active(IngestProtocol::Rtmp))
        .await
        .unwrap();
    assert_eq!(
        cli.get_live_stream(&ls.id).await.unwrap().unwrap().status,
        LiveStreamStatus::Active
    );

    // Concurrent writers on both handles wait for each other instead of failing.
    let mut tasks = Vec::new();
    for store in [server.clone(), cli.clone()] {
        for _ in 0..10 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.create_live_stream(NewLiveStream::default()).await
            }));
        }
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        server.list_live_streams(1, 100, None).await.unwrap().len(),
        21
    );
    assert_eq!(cli.list_live_streams(1, 100, None).await.unwrap().len(), 21);

    // Reopening finds everything (migrations are not re-applied).
    cli.close().await;
    let again = SqliteStore::open(&dir.path().join("nested")).await.unwrap();
    assert_eq!(
        again.list_live_streams(1, 100, None).await.unwrap().len(),
        21
    );
    again.close().await;
    server.close().await;
}
