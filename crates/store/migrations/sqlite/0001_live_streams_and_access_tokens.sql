-- OnAir metadata, SQLite dialect.
--
-- Kept close to portable SQL so that the Postgres migrations can mirror it column for
-- column: timestamps are unix seconds in BIGINT, JSON documents are TEXT, booleans are
-- BOOLEAN (stored as 0/1 by SQLite). `seq` gives every row a strictly increasing insertion
-- number, which is what "newest first" listing orders by (created_at has one-second
-- resolution and would tie).

CREATE TABLE live_streams (
    seq                            INTEGER PRIMARY KEY AUTOINCREMENT,
    id                             TEXT    NOT NULL UNIQUE,
    created_at                     BIGINT  NOT NULL,
    stream_key                     TEXT    NOT NULL UNIQUE,
    status                         TEXT    NOT NULL DEFAULT 'idle'
        CHECK (status IN ('idle', 'active', 'disabled')),
    new_asset_settings             TEXT,
    passthrough                    TEXT,
    reconnect_window               BIGINT  NOT NULL,
    latency_mode                   TEXT    NOT NULL DEFAULT 'standard'
        CHECK (latency_mode IN ('standard', 'reduced', 'low')),
    max_continuous_duration        BIGINT  NOT NULL DEFAULT 43200,
    audio_only                     BOOLEAN NOT NULL DEFAULT FALSE,
    test                           BOOLEAN NOT NULL DEFAULT FALSE,
    srt_passphrase                 TEXT    NOT NULL,
    active_ingest_protocol         TEXT
        CHECK (active_ingest_protocol IS NULL OR active_ingest_protocol IN ('rtmp', 'srt')),
    use_slate_for_standard_latency BOOLEAN NOT NULL DEFAULT FALSE,
    reconnect_slate_url            TEXT,
    recent_asset_ids               TEXT    NOT NULL DEFAULT '[]',
    active_asset_id                TEXT,
    simulcast_targets              TEXT    NOT NULL DEFAULT '[]',
    embedded_subtitles             TEXT    NOT NULL DEFAULT '[]',
    updated_at                     BIGINT  NOT NULL
);

CREATE INDEX live_streams_status_seq ON live_streams (status, seq);

CREATE TABLE playback_ids (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT   NOT NULL UNIQUE,
    live_stream_id TEXT   NOT NULL REFERENCES live_streams (id) ON DELETE CASCADE,
    policy         TEXT   NOT NULL CHECK (policy IN ('public', 'signed', 'drm')),
    created_at     BIGINT NOT NULL
);

CREATE INDEX playback_ids_live_stream ON playback_ids (live_stream_id, seq);

-- Only a salted SHA-256 of each secret is kept: a leaked database does not leak API access.
CREATE TABLE access_tokens (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    secret_salt TEXT    NOT NULL,
    secret_hash TEXT    NOT NULL,
    can_read    BOOLEAN NOT NULL,
    can_write   BOOLEAN NOT NULL,
    created_at  BIGINT  NOT NULL,
    revoked     BOOLEAN NOT NULL DEFAULT FALSE
);
