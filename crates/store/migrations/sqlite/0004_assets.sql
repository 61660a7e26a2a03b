-- Assets: the recording of each broadcast, SQLite dialect.
--
-- An asset's `id` is its broadcast's (`broadcasts.id`); the row exists from the broadcast's
-- first recorded media. Deleting an asset deletes this row and its playback IDs; the
-- broadcast row and the event log keep the history. Times are unix milliseconds.

CREATE TABLE assets (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT    NOT NULL UNIQUE,
    live_stream_id TEXT    NOT NULL,
    created_at_ms  BIGINT  NOT NULL,
    status         TEXT    NOT NULL DEFAULT 'preparing'
        CHECK (status IN ('preparing', 'ready', 'errored')),
    passthrough    TEXT,
    -- JSON {title, creator_id, external_id}, NULL when unset.
    meta           TEXT,
    test           BOOLEAN NOT NULL DEFAULT FALSE,
    -- JSON: what the session manager measured (store::AssetMedia).
    media          TEXT    NOT NULL DEFAULT '{}',
    video_track_id TEXT    NOT NULL,
    audio_track_id TEXT    NOT NULL,
    updated_at_ms  BIGINT  NOT NULL
);

CREATE INDEX assets_live_stream ON assets (live_stream_id, seq);

-- Playback IDs of assets (those of live streams are in `playback_ids`). IDs are unique
-- across both tables in practice: 44 random characters.
CREATE TABLE asset_playback_ids (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT   NOT NULL UNIQUE,
    asset_id   TEXT   NOT NULL REFERENCES assets (id) ON DELETE CASCADE,
    policy     TEXT   NOT NULL CHECK (policy IN ('public', 'signed', 'drm')),
    created_at BIGINT NOT NULL
);

CREATE INDEX asset_playback_ids_asset ON asset_playback_ids (asset_id, seq);
