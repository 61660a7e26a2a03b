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
    assert_eq!(ls.reconnect_window, 60.0);
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
    for (mode, window) in [("standard", 60.0), ("reduced", 0.0), ("low", 0.0)] {
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
            reconnect_window: Some(30.0),
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
    assert_eq!(ls.reconnect_window, 30.0);
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
                reconnect_window: Some(1801.0),
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
    assert_eq!(updated.reconnect_window, 120.0);
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
        reconnect_window: Some(5000.0),
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

// ---- broadcast lifecycle and events ----

fn transition(
    live_stream_id: &str,
    event: &str,
    state: LifecycleState,
    status: Option<StatusChange>,
    broadcast: BroadcastChange,
    at_ms: i64,
) -> Transition {
    Transition {
        live_stream_id: live_stream_id.to_owned(),
        event_type: event.to_owned(),
        state,
        status,
        broadcast,
        at_ms,
        media: None,
    }
}

fn start(dir: &str) -> BroadcastChange {
    BroadcastChange::Start {
        id: crate::new_broadcast_id(),
        recording_dir: dir.to_owned(),
    }
}

async fn count_events(store: &SqliteStore) -> usize {
    store.list_events(0, MAX_LIST_LIMIT).await.unwrap().len()
}

/// connected -> recording -> active -> disconnected -> connected -> recording ->
/// disconnected -> idle: one broadcast across the reconnect, status and events in step.
async fn full_walk(store: &SqliteStore) {
    use LifecycleState::*;
    let ls = store
        .create_live_stream(NewLiveStream::default())
        .await
        .unwrap();
    let fresh = store.lifecycle(&ls.id).await.unwrap().unwrap();
    assert_eq!(fresh.state, Idle);
    assert_eq!(fresh.broadcast_id, None);
    assert!(store.lifecycle("missing").await.unwrap().is_none());

    let t0 = 1_700_000_000_000;
    let steps: Vec<(&str, LifecycleState, Option<StatusChange>, BroadcastChange)> = vec![
        (
            event_type::CONNECTED,
            Connected,
            None,
            start("recordings/b1"),
        ),
        (
            event_type::RECORDING,
            Recording,
            None,
            BroadcastChange::None,
        ),
        (
            event_type::ACTIVE,
            Active,
            Some(StatusChange::Active(IngestProtocol::Rtmp)),
            BroadcastChange::None,
        ),
        // The API status stays active through the reconnect window.
        (
            event_type::DISCONNECTED,
            Disconnected,
            None,
            BroadcastChange::None,
        ),
        (
            event_type::CONNECTED,
            Connected,
            Some(StatusChange::Active(IngestProtocol::Srt)),
            BroadcastChange::None,
        ),
        (
            event_type::RECORDING,
            Recording,
            None,
            BroadcastChange::None,
        ),
        (
            event_type::DISCONNECTED,
            Disconnected,
            None,
            BroadcastChange::None,
        ),
        (
            event_type::IDLE,
            Idle,
            Some(StatusChange::Idle),
            BroadcastChange::End,
        ),
    ];
    let mut broadcast_id: Option<String> = None;
    for (i, (event, state, status, change)) in steps.into_iter().enumerate() {
        let at = t0 + 1000 * i as i64;
        let ev = store
            .record_transition(transition(&ls.id, event, state, status, change, at))
            .await
            .unwrap();
        assert_eq!(ev.event_type, event);
        // `created` is event 1, and `video.asset.created` follows the first `recording`.
        let asset_events_before = u64::from(i >= 2);
        assert_eq!(ev.stream_seq, i as u64 + 2 + asset_events_before);
        assert_eq!(ev.created_at_ms, at);
        assert_eq!(ev.live_stream_id, ls.id);
        let b = ev.broadcast_id.clone().expect("every step has a broadcast");
        assert_eq!(*broadcast_id.get_or_insert(b.clone()), b, "one broadcast");

        let record = store.lifecycle(&ls.id).await.unwrap().unwrap();
        assert_eq!(record.state, state);
        assert_eq!(record.state_since_ms, at);
        let stream = store.get_live_stream(&ls.id).await.unwrap().unwrap();
        assert_eq!(ev.object, serde_json::to_value(&stream).unwrap());
        let expected_status = match i {
            0 | 1 => LiveStreamStatus::Idle,
            7 => LiveStreamStatus::Idle,
            _ => LiveStreamStatus::Active,
        };
        assert_eq!(stream.status, expected_status, "after {event} (step {i})");
        if state == Idle {
            assert_eq!(record.broadcast_id, None);
            assert_eq!(stream.active_ingest_protocol, None);
        } else {
            assert_eq!(record.broadcast_id.as_ref(), Some(&b));
        }
    }
    let broadcast_id = broadcast_id.unwrap();
    assert_eq!(broadcast_id.len(), 44);
    assert!(broadcast_id.chars().all(|c| c.is_ascii_alphanumeric()));
    let b = store.get_broadcast(&broadcast_id).await.unwrap().unwrap();
    assert_eq!(
        b,
        Broadcast {
            id: broadcast_id.clone(),
            live_stream_id: ls.id.clone(),
            started_at_ms: t0,
            ended_at_ms: Some(t0 + 7000),
            recording_dir: "recordings/b1".into(),
        }
    );
    assert!(store.get_broadcast("missing").await.unwrap().is_none());

    // The asset: created after the first `recording`, ready and completed after `idle`.
    let all = store.live_stream_events(&ls.id).await.unwrap();
    let types: Vec<&str> = all.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            event_type::CREATED,
            event_type::CONNECTED,
            event_type::RECORDING,
            event_type::ASSET_CREATED,
            event_type::ACTIVE,
            event_type::DISCONNECTED,
            event_type::CONNECTED,
            event_type::RECORDING,
            event_type::DISCONNECTED,
            event_type::IDLE,
            event_type::ASSET_READY,
            event_type::ASSET_LIVE_STREAM_COMPLETED,
        ]
    );
    assert_eq!(all[2].object["active_asset_id"], broadcast_id.as_str());
    assert_eq!(all[3].object["id"], broadcast_id.as_str());
    assert_eq!(all[3].object["status"], "preparing");
    assert_eq!(all[3].object["is_live"], true);
    assert_eq!(all[9].object.get("active_asset_id"), None);
    assert_eq!(
        all[9].object["recent_asset_ids"],
        serde_json::json!([broadcast_id])
    );
    assert_eq!(all[10].object["status"], "ready");
    assert_eq!(all[11].object["is_live"], false);
    let asset = store.get_asset(&broadcast_id).await.unwrap().unwrap();
    assert_eq!(asset.status, AssetStatus::Ready);
    assert_eq!(asset.live_stream_id, ls.id);
    assert_eq!(asset.created_at, (t0 + 1000) / 1000);

    // The status the API showed at each moment is in that event's object.
    let events: Vec<_> = all
        .into_iter()
        .filter(|e| !event_type::is_asset(&e.event_type))
        .collect();
    let statuses: Vec<&str> = events
        .iter()
        .map(|e| e.object["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["idle", "idle", "idle", "active", "active", "active", "active", "active", "idle"]
    );
    let protocols: Vec<Option<&str>> = events
        .iter()
        .map(|e| e.object["active_ingest_protocol"].as_str())
        .collect();
    assert_eq!(protocols[3], Some("rtmp"));
    assert_eq!(protocols[5], Some("srt"));
    assert_eq!(protocols[8], None);
    // The lifecycle state stays internal: the object is exactly the API JSON.
    assert!(events
        .iter()
        .all(|e| e.object.get("lifecycle_state").is_none()));

    // A second broadcast gets a new ID; an event that is not a state change keeps the
    // time the state was entered.
    let ev = store
        .record_transition(transition(
            &ls.id,
            event_type::CONNECTED,
            Connected,
            None,
            start("recordings/b2"),
            t0 + 10_000,
        ))
        .await
        .unwrap();
    assert_ne!(ev.broadcast_id.as_deref(), Some(broadcast_id.as_str()));
    store
        .record_transition(transition(
            &ls.id,
            "video.live_stream.warning",
            Connected,
            None,
            BroadcastChange::None,
            t0 + 11_000,
        ))
        .await
        .unwrap();
    let record = store.lifecycle(&ls.id).await.unwrap().unwrap();
    assert_eq!(record.state_since_ms, t0 + 10_000);
    assert_eq!(record.broadcast_id, ev.broadcast_id);
}

#[tokio::test]
async fn lifecycle_full_walk_in_memory() {
    full_walk(&mem().await).await;
}

#[tokio::test]
async fn lifecycle_full_walk_on_a_file() {
    let dir = TempDir::new();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    full_walk(&store).await;
    store.close().await;
    // Everything survives a reopen.
    let again = SqliteStore::open(dir.path()).await.unwrap();
    let events = again.list_events(0, 100).await.unwrap();
    assert_eq!(events.len(), 14, "with three asset events");
    assert_eq!(events[13].event_type, "video.live_stream.warning");
    again.close().await;
}

#[tokio::test]
async fn event_numbers_are_gapless_per_stream_and_increasing_overall() {
    let store = mem().await;
    let a = store
        .create_live_stream(NewLiveStream::default())
        .await
        .unwrap();
    let b = store
        .create_live_stream(NewLiveStream::default())
        .await
        .unwrap();
    let mut at = 1_000;
    for (id, dir) in [(&a.id, "a/1"), (&b.id, "b/1")] {
        store
            .record_transition(transition(
                id,
                event_type::CONNECTED,
                LifecycleState::Connected,
                None,
                start(dir),
                at,
            ))
            .await
            .unwrap();
        at += 1;
    }
    // Interleave API changes and transitions of both streams.
    store.disable_live_stream(&b.id).await.unwrap();
    for id in [&a.id, &b.id, &a.id] {
        store
            .record_transition(transition(
                id,
                event_type::RECORDING,
                LifecycleState::Recording,
                None,
                BroadcastChange::None,
                at,
            ))
            .await
            .unwrap();
        at += 1;
    }
    store
        .update_live_stream(
            &a.id,
            LiveStreamPatch {
                reconnect_window: Some(10.0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    store.enable_live_stream(&b.id).await.unwrap();
    store.reset_stream_key(&a.id).await.unwrap();

    let all = store.list_events(0, MAX_LIST_LIMIT).await.unwrap();
    assert_eq!(all.len(), 13, "with one asset per broadcast");
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    let ids: HashSet<&str> = all.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), all.len(), "event IDs are unique");
    assert!(all.iter().all(|e| e.id.len() == 36));
    for (id, expected_types) in [
        (
            &a.id,
            vec![
                event_type::CREATED,
                event_type::CONNECTED,
                event_type::RECORDING,
                event_type::ASSET_CREATED,
                event_type::RECORDING,
                event_type::UPDATED,
                event_type::UPDATED,
            ],
        ),
        (
            &b.id,
            vec![
                event_type::CREATED,
                event_type::CONNECTED,
                event_type::DISABLED,
                event_type::RECORDING,
                event_type::ASSET_CREATED,
                event_type::ENABLED,
            ],
        ),
    ] {
        let events = store.live_stream_events(id).await.unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.stream_seq).collect();
        assert_eq!(seqs, (1..=expected_types.len() as u64).collect::<Vec<_>>());
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, expected_types);
        // The same rows as in the global log.
        for e in &events {
            assert!(all.contains(e));
        }
    }

    // Paging through the log with `after`.
    let first = store.list_events(0, 4).await.unwrap();
    assert_eq!(first, all[..4]);
    let rest = store.list_events(first[3].seq, 100).await.unwrap();
    assert_eq!(rest, all[4..]);
    assert!(store
        .list_events(all[12].seq, 100)
        .await
        .unwrap()
        .is_empty());
    assert!(store.list_events(u64::MAX, 100).await.unwrap().is_empty());
    assert_eq!(
        field_of(store.list_events(0, 0).await.unwrap_err()),
        "limit"
    );
    assert_eq!(
        field_of(store.list_events(0, MAX_LIST_LIMIT + 1).await.unwrap_err()),
        "limit"
    );
}

#[tokio::test]
async fn api_changes_log_events_with_the_object_after_the_change() {
    let store = mem().await;
    let ls = store
        .create_live_stream(NewLiveStream {
            passthrough: Some("hello".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let created = store.live_stream_events(&ls.id).await.unwrap();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].event_type, event_type::CREATED);
    assert_eq!(created[0].object, serde_json::to_value(&ls).unwrap());
    assert_eq!(created[0].broadcast_id, None);
    assert_eq!(created[0].created_at_ms.div_euclid(1000), ls.created_at);

    let updated = store
        .update_live_stream(
            &ls.id,
            LiveStreamPatch {
                passthrough: Some(Some("bye".into())),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    let reset = store.reset_stream_key(&ls.id).await.unwrap().unwrap();
    let disabled = store.disable_live_stream(&ls.id).await.unwrap().unwrap();
    let enabled = store.enable_live_stream(&ls.id).await.unwrap().unwrap();
    // Changes that change nothing log nothing.
    store
        .update_live_stream(&ls.id, LiveStreamPatch::default())
        .await
        .unwrap();
    store.enable_live_stream(&ls.id).await.unwrap();
    store.disable_live_stream(&ls.id).await.unwrap();
    store.disable_live_stream(&ls.id).await.unwrap();

    let events = store.live_stream_events(&ls.id).await.unwrap();
    let got: Vec<(&str, &serde_json::Value)> = events
        .iter()
        .map(|e| (e.event_type.as_str(), &e.object))
        .collect();
    let objects =
        [&ls, &updated, &reset, &disabled, &enabled].map(|s| serde_json::to_value(s).unwrap());
    assert_eq!(
        got,
        vec![
            (event_type::CREATED, &objects[0]),
            (event_type::UPDATED, &objects[1]),
            (event_type::UPDATED, &objects[2]),
            (event_type::DISABLED, &objects[3]),
            (event_type::ENABLED, &objects[4]),
            (
                event_type::DISABLED,
                &serde_json::to_value(store.get_live_stream(&ls.id).await.unwrap().unwrap())
                    .unwrap()
            ),
        ]
    );
    assert_eq!(events[1].object["passthrough"], "bye");
    assert_eq!(events[2].object["stream_key"], json!(reset.stream_key));
    assert_eq!(events[3].object["status"], "disabled");
    assert_eq!(events[4].object["status"], "idle");
    assert_eq!(
        events.iter().map(|e| e.stream_seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    // Unknown streams log nothing either.
    store.reset_stream_key("missing").await.unwrap();
    store.disable_live_stream("missing").await.unwrap();
    store
        .update_live_stream(
            "missing",
            LiveStreamPatch {
                reconnect_window: Some(1.0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!store.delete_live_stream("missing").await.unwrap());
    assert_eq!(count_events(&store).await, 6);
}

#[tokio::test]
async fn unfinished_lifecycles_are_the_non_idle_streams() {
    let store = mem().await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(
            store
                .create_live_stream(NewLiveStream::default())
                .await
                .unwrap()
                .id,
        );
    }
    // 0 stays idle; 1 is active; 2 is disconnected; 3 went through a broadcast to idle.
    for (i, id) in ids.iter().enumerate().skip(1) {
        store
            .record_transition(transition(
                id,
                event_type::CONNECTED,
                LifecycleState::Connected,
                None,
                start(&format!("rec/{i}")),
                100,
            ))
            .await
            .unwrap();
    }
    store
        .record_transition(transition(
            &ids[1],
            event_type::ACTIVE,
            LifecycleState::Active,
            Some(StatusChange::Active(IngestProtocol::Rtmp)),
            BroadcastChange::None,
            200,
        ))
        .await
        .unwrap();
    store
        .record_transition(transition(
            &ids[2],
            event_type::DISCONNECTED,
            LifecycleState::Disconnected,
            None,
            BroadcastChange::None,
            300,
        ))
        .await
        .unwrap();
    store
        .record_transition(transition(
            &ids[3],
            event_type::IDLE,
            LifecycleState::Idle,
            Some(StatusChange::Idle),
            BroadcastChange::End,
            400,
        ))
        .await
        .unwrap();

    let unfinished = store.unfinished_lifecycles().await.unwrap();
    assert_eq!(unfinished.len(), 2);
    let (s1, r1, b1) = &unfinished[0];
    assert_eq!(s1.id, ids[1]);
    assert_eq!(s1.status, LiveStreamStatus::Active);
    assert_eq!(s1.playback_ids.len(), 1);
    assert_eq!(r1.state, LifecycleState::Active);
    assert_eq!(r1.state_since_ms, 200);
    let b1 = b1.as_ref().unwrap();
    assert_eq!(Some(&b1.id), r1.broadcast_id.as_ref());
    assert_eq!((b1.recording_dir.as_str(), b1.ended_at_ms), ("rec/1", None));
    let (s2, r2, b2) = &unfinished[1];
    assert_eq!(s2.id, ids[2]);
    assert_eq!(r2.state, LifecycleState::Disconnected);
    assert_eq!(b2.as_ref().unwrap().recording_dir, "rec/2");
    assert_eq!(b2.as_ref().unwrap().live_stream_id, ids[2]);
}

#[tokio::test]
async fn deleting_keeps_the_history_and_logs_deleted() {
    let store = mem().await;
    let ls = store
        .create_live_stream(NewLiveStream::default())
        .await
        .unwrap();
    let connected = store
        .record_transition(transition(
            &ls.id,
            event_type::CONNECTED,
            LifecycleState::Connected,
            None,
            start("rec/x"),
            5_000,
        ))
        .await
        .unwrap();
    let broadcast_id = connected.broadcast_id.unwrap();
    assert!(store.delete_live_stream(&ls.id).await.unwrap());

    let events = store.live_stream_events(&ls.id).await.unwrap();
    assert_eq!(
        events
            .iter()
            .map(|e| (e.event_type.as_str(), e.stream_seq))
            .collect::<Vec<_>>(),
        [
            (event_type::CREATED, 1),
            (event_type::CONNECTED, 2),
            (event_type::DELETED, 3)
        ]
    );
    let deleted = &events[2];
    assert_eq!(deleted.broadcast_id.as_deref(), Some(broadcast_id.as_str()));
    assert_eq!(deleted.object["id"], json!(ls.id));
    assert_eq!(deleted.object["playback_ids"], json!(ls.playback_ids));
    // The broadcast is kept, and ended by the deletion.
    let b = store.get_broadcast(&broadcast_id).await.unwrap().unwrap();
    assert_eq!(b.live_stream_id, ls.id);
    assert!(b.ended_at_ms.unwrap() >= deleted.created_at_ms);
    assert!(store.lifecycle(&ls.id).await.unwrap().is_none());
    assert!(store.unfinished_lifecycles().await.unwrap().is_empty());
    // A deleted stream takes no more transitions.
    let err = store
        .record_transition(transition(
            &ls.id,
            event_type::IDLE,
            LifecycleState::Idle,
            None,
            BroadcastChange::End,
            6_000,
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert_eq!(count_events(&store).await, 3);
}

#[tokio::test]
async fn refused_transitions_write_nothing() {
    let store = mem().await;
    let err = store
        .record_transition(transition(
            "missing",
            event_type::CONNECTED,
            LifecycleState::Connected,
            None,
            start("rec/m"),
            1,
        ))
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
    assert_eq!(count_events(&store).await, 0);
    let broadcasts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM broadcasts")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(broadcasts, 0);

    let ls = store
        .create_live_stream(NewLiveStream::default())
        .await
        .unwrap();
    let id = ls.id.as_str();
    let conflicts = [
        // Not idle without a broadcast.
        transition(
            id,
            event_type::CONNECTED,
            LifecycleState::Connected,
            None,
            BroadcastChange::None,
            1,
        ),
        // Nothing to end.
        transition(
            id,
            event_type::IDLE,
            LifecycleState::Idle,
            None,
            BroadcastChange::End,
            1,
        ),
        // Idle with a broadcast.
        transition(
            id,
            event_type::CONNECTED,
            LifecycleState::Idle,
            None,
            start("rec/a"),
            1,
        ),
    ];
    for t in conflicts {
        let err = store.record_transition(t.clone()).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{t:?}: {err:?}");
    }
    for (dir, field) in [("/abs", "recording_dir"), ("../x", "recording_dir")] {
        let t = transition(
            id,
            event_type::CONNECTED,
            LifecycleState::Connected,
            None,
            start(dir),
            1,
        );
        assert_eq!(
            field_of(store.record_transition(t).await.unwrap_err()),
            field
        );
    }
    let mut empty_type = transition(id, "", LifecycleState::Connected, None, start("rec/a"), 1);
    assert_eq!(
        field_of(
            store
                .record_transition(empty_type.clone())
                .await
                .unwrap_err()
        ),
        "event_type"
    );
    empty_type.event_type = event_type::CONNECTED.into();
    let ok = store.record_transition(empty_type).await.unwrap();
    assert_eq!(ok.stream_seq, 2);
    // A second start while one broadcast is current.
    let err = store
        .record_transition(transition(
            id,
            event_type::CONNECTED,
            LifecycleState::Connected,
            None,
            start("rec/b"),
            2,
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // A disabled stream does not go active (and the state is left as it was).
    store.disable_live_stream(id).await.unwrap();
    let err = store
        .record_transition(transition(
            id,
            event_type::ACTIVE,
            LifecycleState::Active,
            Some(StatusChange::Active(IngestProtocol::Rtmp)),
            BroadcastChange::None,
            3,
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let record = store.lifecycle(id).await.unwrap().unwrap();
    assert_eq!(record.state, LifecycleState::Connected);
    assert_eq!(record.broadcast_id, ok.broadcast_id);
    // Going idle leaves it disabled.
    let idle = store
        .record_transition(transition(
            id,
            event_type::IDLE,
            LifecycleState::Idle,
            Some(StatusChange::Idle),
            BroadcastChange::End,
            4,
        ))
        .await
        .unwrap();
    assert_eq!(idle.object["status"], "disabled");
    let seqs: Vec<u64> = store
        .live_stream_events(id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.stream_seq)
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4], "created, connected, disabled, idle");
    let broadcasts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM broadcasts")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(broadcasts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transitions_get_distinct_consecutive_numbers() {
    let dir = TempDir::new();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    // A second handle on the same file: another process, as far as SQLite can tell.
    let other = SqliteStore::open(dir.path()).await.unwrap();
    let ls = store
        .create_live_stream(NewLiveStream::default())
        .await
        .unwrap();
    store
        .record_transition(transition(
            &ls.id,
            event_type::CONNECTED,
            LifecycleState::Connected,
            None,
            start("rec/c"),
            0,
        ))
        .await
        .unwrap();
    const PER_TASK: usize = 20;
    let mut tasks = Vec::new();
    for (n, handle) in [store.clone(), other.clone(), store.clone(), other.clone()]
        .into_iter()
        .enumerate()
    {
        let id = ls.id.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..PER_TASK {
                let ev = handle
                    .record_transition(transition(
                        &id,
                        "video.live_stream.heartbeat",
                        LifecycleState::Connected,
                        None,
                        BroadcastChange::None,
                        (n * 1000 + i) as i64,
                    ))
                    .await
                    .unwrap();
                seqs.push(ev.stream_seq);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let seqs = t.await.unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "each task in order");
        all.extend(seqs);
    }
    all.sort_unstable();
    let expected: Vec<u64> = (3..3 + 4 * PER_TASK as u64).collect();
    assert_eq!(all, expected, "no duplicates, no gaps");
    let stored: Vec<u64> = store
        .live_stream_events(&ls.id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.stream_seq)
        .collect();
    assert_eq!(stored, (1..3 + 4 * PER_TASK as u64).collect::<Vec<_>>());
    other.close().await;
    store.close().await;
}

#[tokio::test]
async fn lifecycle_migration_keeps_existing_streams_idle() {
    // A database made by the first migration alone, with one live stream in it.
    let dir = TempDir::new();
    let only_first = dir.path().join("migrations");
    std::fs::create_dir_all(&only_first).unwrap();
    let first = "0001_live_streams_and_access_tokens.sql";
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations/sqlite")
            .join(first),
        only_first.join(first),
    )
    .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data.join(DB_FILE_NAME))
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    sqlx::migrate::Migrator::new(only_first.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO live_streams (id, created_at, stream_key, reconnect_window, \
         srt_passphrase, updated_at) VALUES ('old', 1700000000, 'key', 60, 'pass', 1700000000)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let store = SqliteStore::open(&data).await.unwrap();
    let record = store.lifecycle("old").await.unwrap().unwrap();
    assert_eq!(
        record,
        LifecycleRecord {
            state: LifecycleState::Idle,
            broadcast_id: None,
            state_since_ms: 1_700_000_000_000,
        }
    );
    assert!(store.unfinished_lifecycles().await.unwrap().is_empty());
    // Its first event is number 1.
    let ev = store
        .record_transition(transition(
            "old",
            event_type::CONNECTED,
            LifecycleState::Connected,
            None,
            start("rec/old"),
            1_700_000_100_000,
        ))
        .await
        .unwrap();
    assert_eq!(ev.stream_seq, 1);
    assert_eq!(ev.object["created_at"], "1700000000");
    store.close().await;
}

// ---- webhook delivery ----

#[tokio::test]
async fn events_carry_the_lifecycle_state_and_wake_subscribers() {
    let store = mem().await;
    let mut wake = store.subscribe_events();
    wake.borrow_and_update();
    let s = store
        .create_live_stream(NewLiveStream::default())
        .await
        .unwrap();
    assert!(
        wake.has_changed().unwrap(),
        "create wakes readers of the log"
    );
    wake.borrow_and_update();
    let connected = store
        .record_transition(transition(
            &s.id,
            event_type::CONNECTED,
            LifecycleState::Connected,
            None,
            start("recordings/x"),
            1_000,
        ))
        .await
        .unwrap();
    assert!(wake.has_changed().unwrap(), "a transition wakes readers");
    assert_eq!(connected.state, Some(LifecycleState::Connected));
    // API operations log the state the stream is in.
    store
        .update_live_stream(
            &s.id,
            LiveStreamPatch {
                passthrough: Some(Some("p".to_owned())),
                ..LiveStreamPatch::default()
            },
        )
        .await
        .unwrap();
    let states: Vec<_> = store
        .list_events(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| (e.event_type.clone(), e.state))
        .collect();
    assert_eq!(
        states,
        [
            (event_type::CREATED.to_owned(), Some(LifecycleState::Idle)),
            (
                event_type::CONNECTED.to_owned(),
                Some(LifecycleState::Connected)
            ),
            (
                event_type::UPDATED.to_owned(),
                Some(LifecycleState::Connected)
            ),
        ]
    );
}

#[tokio::test]
async fn webhook_cursors_start_at_the_end_and_only_move_forward() {
    let dir = TempDir::new();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    for _ in 0..3 {
        store
            .create_live_stream(NewLiveStream::default())
            .await
            .unwrap();
    }
    let end = store.list_events(0, 10).await.unwrap()[2].seq;
    // A new endpoint starts at the end of the log, and stays there once created.
    assert_eq!(store.webhook_cursor("sha256:a").await.unwrap(), end);
    store
        .create_live_stream(NewLiveStream::default())
        .await
        .unwrap();
    assert_eq!(store.webhook_cursor("sha256:a").await.unwrap(), end);
    store
        .advance_webhook_cursor("sha256:a", end + 1)
        .await
        .unwrap();
    store.advance_webhook_cursor("sha256:a", 1).await.unwrap();
    assert_eq!(store.webhook_cursor("sha256:a").await.unwrap(), end + 1);
    // A failure is recorded and moves the cursor past its event.
    let failure = WebhookFailure {
        endpoint_key: "sha256:a".to_owned(),
        event_seq: end + 2,
        event_id: "e".to_owned(),
        attempts: 150,
        reason: "HTTP status 500".to_owned(),
        failed_at_ms: 42,
    };
    store.record_webhook_failure(failure.clone()).await.unwrap();
    assert_eq!(store.webhook_cursor("sha256:a").await.unwrap(), end + 2);
    assert_eq!(store.webhook_failures("sha256:a").await.unwrap(), [failure]);
    assert!(store.webhook_failures("sha256:b").await.unwrap().is_empty());
    // Cursors are per endpoint and survive a restart.
    store.close().await;
    let again = SqliteStore::open(dir.path()).await.unwrap();
    assert_eq!(again.webhook_cursor("sha256:a").await.unwrap(), end + 2);
    assert_eq!(again.webhook_cursor("sha256:b").await.unwrap(), end + 1);
    assert_eq!(
        field_of(again.webhook_cursor("").await.unwrap_err()),
        "endpoint_key"
    );
}

// ---- assets ----

/// Starts a broadcast of `ls` and records its first media: the asset exists. Returns its ID.
async fn record_asset(store: &SqliteStore, ls: &str, at: i64) -> String {
    let ev = store
        .record_transition(transition(
            ls,
            event_type::CONNECTED,
            LifecycleState::Connected,
            None,
            start(&format!("{ls}/{at}")),
            at,
        ))
        .await
        .unwrap();
    let mut t = transition(
        ls,
        event_type::RECORDING,
        LifecycleState::Recording,
        None,
        BroadcastChange::None,
        at + 1,
    );
    t.media = Some(AssetMedia {
        ingest_protocol: Some(IngestProtocol::Srt),
        ..AssetMedia::default()
    });
    store.record_transition(t).await.unwrap();
    ev.broadcast_id.unwrap()
}

async fn end_broadcast(store: &SqliteStore, ls: &str, at: i64, media: Option<AssetMedia>) {
    let mut t = transition(
        ls,
        event_type::IDLE,
        LifecycleState::Idle,
        Some(StatusChange::Idle),
        BroadcastChange::End,
        at,
    );
    t.media = media;
    store.record_transition(t).await.unwrap();
}

#[tokio::test]
async fn assets_follow_new_asset_settings_and_measured_media() {
    let store = mem().await;
    let ls = store
        .create_live_stream(NewLiveStream {
            new_asset_settings: Some(json!({"playback_policies": ["public", "signed"],
                                            "passthrough": "from settings"})),
            test: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let id = record_asset(&store, &ls.id, 5_000).await;
    let asset = store.get_asset(&id).await.unwrap().unwrap();
    assert_eq!(asset.status, AssetStatus::Preparing);
    assert!(asset.is_live);
    assert!(asset.test);
    assert_eq!(asset.passthrough.as_deref(), Some("from settings"));
    assert_eq!(asset.ingest_type.as_deref(), Some("live_srt"));
    let policies: Vec<_> = asset.playback_ids.iter().map(|p| p.policy).collect();
    assert_eq!(policies, [PlaybackPolicy::Public, PlaybackPolicy::Signed]);
    let stream = store.get_live_stream(&ls.id).await.unwrap().unwrap();
    assert_eq!(stream.active_asset_id.as_deref(), Some(id.as_str()));
    assert_eq!(stream.recent_asset_ids, std::slice::from_ref(&id));

    let media = AssetMedia {
        ingest_protocol: Some(IngestProtocol::Srt),
        duration_secs: 20.5,
        video: Some(VideoMedia {
            width: 1920,
            height: 1080,
            frame_rate: Some(25.0),
        }),
        audio: Some(AudioMedia { channels: 2 }),
        recording_times: vec![
            RecordingTime {
                started_at_ms: 5_001,
                duration_secs: 10.0,
                kind: RecordingKind::Content,
            },
            RecordingTime {
                started_at_ms: 20_000,
                duration_secs: 10.5,
                kind: RecordingKind::Content,
            },
        ],
        codecs: "avc1.64001f,mp4a.40.2".into(),
        bandwidth: 3_000_000,
        average_bandwidth: 2_500_000,
    };
    end_broadcast(&store, &ls.id, 40_000, Some(media.clone())).await;
    let asset = store.get_asset(&id).await.unwrap().unwrap();
    assert_eq!(asset.status, AssetStatus::Ready);
    assert!(!asset.is_live);
    assert_eq!(asset.duration, Some(20.5));
    assert_eq!(asset.recording_times.len(), 2);
    assert_eq!(asset.max_stored_resolution.as_deref(), Some("FHD"));
    let stream = store.get_live_stream(&ls.id).await.unwrap().unwrap();
    assert_eq!(stream.active_asset_id, None);

    // Playback IDs resolve to the asset, with what playback needs.
    let public = &asset.playback_ids[0];
    let found = store
        .find_asset_by_playback_id(&public.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.asset, asset);
    assert_eq!(found.media, media);
    assert_eq!(found.recording_dir, format!("{}/5000", ls.id));
    assert_eq!(
        store.playback_owner(&public.id).await.unwrap(),
        Some(PlaybackOwner::Asset {
            id: id.clone(),
            playback_id: public.clone()
        })
    );
    assert_eq!(
        store.playback_owner(&ls.playback_ids[0].id).await.unwrap(),
        Some(PlaybackOwner::LiveStream {
            id: ls.id.clone(),
            playback_id: ls.playback_ids[0].clone()
        })
    );
    assert_eq!(store.playback_owner("nope").await.unwrap(), None);
    assert!(store
        .find_asset_by_playback_id(&ls.playback_ids[0].id)
        .await
        .unwrap()
        .is_none());

    // Playback IDs of their own.
    let added = store
        .add_asset_playback_id(&id, PlaybackPolicy::Public)
        .await
        .unwrap();
    assert_eq!(
        store.get_asset_playback_id(&id, &added.id).await.unwrap(),
        Some(added.clone())
    );
    assert!(store
        .delete_asset_playback_id(&id, &added.id)
        .await
        .unwrap());
    assert!(!store
        .delete_asset_playback_id(&id, &added.id)
        .await
        .unwrap());
    assert!(matches!(
        store
            .add_asset_playback_id("missing", PlaybackPolicy::Public)
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn assets_page_by_cursor_and_page_and_filter_by_live_stream() {
    let store = mem().await;
    let a = store
        .create_live_stream(NewLiveStream::default())
        .await
        .unwrap();
    let b = store
        .create_live_stream(NewLiveStream::default())
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let ls = if i % 2 == 0 { &a.id } else { &b.id };
        let at = 10_000 * (i + 1);
        ids.push(record_asset(&store, ls, at).await);
        end_broadcast(&store, ls, at + 5, None).await;
    }
    ids.reverse(); // newest first
    let query = |limit, page, cursor: Option<String>, ls: Option<&str>| AssetQuery {
        limit,
        page,
        cursor,
        live_stream_id: ls.map(str::to_owned),
    };
    let names = |p: &AssetPage| p.assets.iter().map(|a| a.id.clone()).collect::<Vec<_>>();
    let first = store.list_assets(query(2, 1, None, None)).await.unwrap();
    assert_eq!(names(&first), ids[..2]);
    let second = store
        .list_assets(query(2, 1, first.next_cursor.clone(), None))
        .await
        .unwrap();
    assert_eq!(names(&second), ids[2..4]);
    let third = store
        .list_assets(query(2, 1, second.next_cursor.clone(), None))
        .await
        .unwrap();
    assert_eq!(names(&third), ids[4..]);
    assert_eq!(third.next_cursor, None);
    let page3 = store.list_assets(query(2, 3, None, None)).await.unwrap();
    assert_eq!(names(&page3), ids[4..]);
    let of_a = store
        .list_assets(query(25, 1, None, Some(&a.id)))
        .await
        .unwrap();
    assert_eq!(
        names(&of_a),
        [ids[0].clone(), ids[2].clone(), ids[4].clone()]
    );
    assert_eq!(of_a.next_cursor, None);
    for bad in [query(0, 1, None, None), query(101, 1, None, None)] {
        assert_eq!(field_of(store.list_assets(bad).await.unwrap_err()), "limit");
    }
    assert_eq!(
        field_of(
            store
                .list_assets(query(2, 1, Some("x".into()), None))
                .await
                .unwrap_err()
        ),
        "cursor"
    );
}

#[tokio::test]
async fn asset_updates_and_deletes_are_logged_and_live_assets_stay() {
    let store = mem().await;
    let ls = store
        .create_live_stream(NewLiveStream::default())
        .await
        .unwrap();
    let id = record_asset(&store, &ls.id, 1_000).await;
    let patch: AssetPatch = serde_json::from_value(json!({
        "passthrough": "p2", "meta": {"title": "Show", "external_id": "x1"}
    }))
    .unwrap();
    let asset = store.update_asset(&id, patch).await.unwrap().unwrap();
    assert_eq!(asset.passthrough.as_deref(), Some("p2"));
    assert_eq!(asset.meta.as_ref().unwrap().title.as_deref(), Some("Show"));
    assert!(store
        .update_asset("missing", AssetPatch::default())
        .await
        .unwrap()
        .is_none());
    let too_long: AssetPatch =
        serde_json::from_value(json!({"meta": {"title": "t".repeat(513)}})).unwrap();
    assert_eq!(
        field_of(store.update_asset(&id, too_long).await.unwrap_err()),
        "meta"
    );
    // Being recorded: not deletable.
    assert!(matches!(
        store.delete_asset(&id).await,
        Err(StoreError::Conflict(_))
    ));
    end_broadcast(&store, &ls.id, 9_000, None).await;
    let pid = store.get_asset(&id).await.unwrap().unwrap();
    assert!(
        pid.playback_ids.is_empty(),
        "no new_asset_settings: no playback IDs"
    );
    let added = store
        .add_asset_playback_id(&id, PlaybackPolicy::Public)
        .await
        .unwrap();
    let (deleted, dir) = store.delete_asset(&id).await.unwrap().unwrap();
    assert_eq!(deleted.id, id);
    assert_eq!(dir, format!("{}/1000", ls.id));
    assert!(store.get_asset(&id).await.unwrap().is_none());
    assert!(store.delete_asset(&id).await.unwrap().is_none());
    assert_eq!(store.playback_owner(&added.id).await.unwrap(), None);
    let types: Vec<String> = store
        .live_stream_events(&ls.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        types,
        [
            event_type::CREATED,
            event_type::CONNECTED,
            event_type::RECORDING,
            event_type::ASSET_CREATED,
            event_type::ASSET_UPDATED,
            event_type::IDLE,
            event_type::ASSET_READY,
            event_type::ASSET_LIVE_STREAM_COMPLETED,
            event_type::ASSET_DELETED,
        ]
    );
}

#[tokio::test]
async fn deleting_a_live_stream_completes_its_asset_before_the_deleted_event() {
    let store = mem().await;
    let ls = store
        .create_live_stream(NewLiveStream::default())
        .await
        .unwrap();
    let id = record_asset(&store, &ls.id, 1_000).await;
    assert!(store.delete_live_stream(&ls.id).await.unwrap());
    let events = store.live_stream_events(&ls.id).await.unwrap();
    let tail: Vec<(&str, u64)> = events[3..]
        .iter()
        .map(|e| (e.event_type.as_str(), e.stream_seq))
        .collect();
    assert_eq!(
        tail,
        [
            (event_type::ASSET_CREATED, 4),
            (event_type::ASSET_READY, 5),
            (event_type::ASSET_LIVE_STREAM_COMPLETED, 6),
            (event_type::DELETED, 7),
        ]
    );
    let asset = store.get_asset(&id).await.unwrap().unwrap();
    assert_eq!(asset.status, AssetStatus::Ready);
    assert!(!asset.is_live);
    // The asset outlives its stream; its events go on after the stream's last number.
    let media = AssetMedia {
        duration_secs: 3.0,
        ..AssetMedia::default()
    };
    assert!(store.set_asset_media(&id, &media).await.unwrap());
    assert_eq!(store.asset_media(&id).await.unwrap(), Some(media.clone()));
    assert_eq!(store.asset_media("missing").await.unwrap(), None);
    store
        .update_asset(
            &id,
            serde_json::from_value(json!({"passthrough": "x"})).unwrap(),
        )
        .await
        .unwrap();
    let last = store
        .live_stream_events(&ls.id)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        (last.event_type.as_str(), last.stream_seq),
        (event_type::ASSET_UPDATED, 8)
    );
    assert_eq!(last.object["duration"], 3.0);
}

#[tokio::test]
async fn warnings_are_logged_for_the_stream_and_its_asset() {
    let store = mem().await;
    let ls = store
        .create_live_stream(NewLiveStream::default())
        .await
        .unwrap();
    let warning = Warning {
        kind: "slate_image_unavailable".into(),
        message: "cannot connect".into(),
    };
    // Before any broadcast: the stream's warning only.
    let events = store
        .record_warning(&ls.id, warning.clone(), 1_000)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, event_type::WARNING);
    assert_eq!(
        events[0].object["warning"]["type"],
        "slate_image_unavailable"
    );
    assert_eq!(events[0].object["id"], ls.id.as_str());
    // During a broadcast with an asset: both, the asset's second.
    let asset_id = record_asset(&store, &ls.id, 2_000).await;
    let events = store
        .record_warning(&ls.id, warning.clone(), 3_000)
        .await
        .unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, [event_type::WARNING, event_type::ASSET_WARNING]);
    assert_eq!(events[1].object["id"], asset_id.as_str());
    assert_eq!(events[1].object["warning"]["message"], "cannot connect");
    assert_eq!(events[1].stream_seq, events[0].stream_seq + 1);
    // Nothing else changed.
    let record = store.lifecycle(&ls.id).await.unwrap().unwrap();
    assert_eq!(record.state, LifecycleState::Recording);
    assert!(store
        .get_asset(&asset_id)
        .await
        .unwrap()
        .unwrap()
        .recording_times
        .is_empty());
    assert!(matches!(
        store.record_warning("missing", warning, 4_000).await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn signing_keys_keep_only_the_public_key_list_newest_first_and_delete() {
    let store = mem().await;
    let a = store.create_signing_key(b"der-a").await.unwrap();
    let b = store.create_signing_key(b"der-b").await.unwrap();
    assert_eq!(a.id.len(), 44);
    assert_ne!(a.id, b.id);
    assert_eq!(
        serde_json::to_value(&a).unwrap(),
        json!({"id": a.id, "created_at": a.created_at.to_string()})
    );
    assert_eq!(store.get_signing_key(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(
        store.list_signing_keys(1, 10).await.unwrap(),
        vec![b.clone(), a.clone()]
    );
    assert_eq!(
        store.list_signing_keys(2, 1).await.unwrap(),
        vec![a.clone()]
    );
    let records = store.signing_key_records().await.unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].key, a);
    assert_eq!(records[0].public_key_der, b"der-a");
    assert!(matches!(
        store.list_signing_keys(1, 0).await,
        Err(StoreError::InvalidField { .. })
    ));
    assert!(matches!(
        store.create_signing_key(b"").await,
        Err(StoreError::InvalidField { .. })
    ));
    assert!(store.delete_signing_key(&a.id).await.unwrap());
    assert!(!store.delete_signing_key(&a.id).await.unwrap());
    assert_eq!(store.get_signing_key(&a.id).await.unwrap(), None);
    assert_eq!(store.signing_key_records().await.unwrap().len(), 1);
}
