-- The broadcast lifecycle and its event log, SQLite dialect.
--
-- Times here are unix milliseconds (`*_ms`): lifecycle transitions are closer together than
-- the one-second `created_at`/`updated_at` of 0001.
--
-- `events` and `broadcasts` name their live stream in plain text, without a foreign key:
-- deleting a live stream must keep its history (the `deleted` event is the last row of it,
-- and webhook delivery reads this table as its outbox).

-- One broadcast: from the admission of an encoder for an idle stream until it goes idle.
CREATE TABLE broadcasts (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT    NOT NULL UNIQUE,
    live_stream_id TEXT    NOT NULL,
    started_at_ms  BIGINT  NOT NULL,
    ended_at_ms    BIGINT,
    -- Relative to the data directory.
    recording_dir  TEXT    NOT NULL
);

CREATE INDEX broadcasts_live_stream ON broadcasts (live_stream_id, seq);

-- The append-only event log. `seq` orders it globally (AUTOINCREMENT: never reused, even
-- after the newest row is deleted); `stream_seq` numbers one live stream's events 1, 2, 3, ...
-- and comes from `live_streams.last_event_seq`, bumped in the same transaction.
CREATE TABLE events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT    NOT NULL UNIQUE,
    live_stream_id TEXT    NOT NULL,
    stream_seq     BIGINT  NOT NULL,
    event_type     TEXT    NOT NULL,
    broadcast_id   TEXT,
    created_at_ms  BIGINT  NOT NULL,
    -- The live stream's API JSON as of this event.
    object         TEXT    NOT NULL,
    UNIQUE (live_stream_id, stream_seq)
);

-- The lifecycle part of a live stream. Internal: none of it is in the API object.
ALTER TABLE live_streams ADD COLUMN lifecycle_state TEXT NOT NULL DEFAULT 'idle'
    CHECK (lifecycle_state IN ('idle', 'connected', 'recording', 'active', 'disconnected'));
ALTER TABLE live_streams ADD COLUMN broadcast_id TEXT;
ALTER TABLE live_streams ADD COLUMN lifecycle_since_ms BIGINT NOT NULL DEFAULT 0;
-- The stream_seq of this stream's newest event (0: none yet).
ALTER TABLE live_streams ADD COLUMN last_event_seq BIGINT NOT NULL DEFAULT 0;

-- Streams that existed before this migration have been idle since they were created.
UPDATE live_streams SET lifecycle_since_ms = created_at * 1000;

-- Finding what a crash left behind reads only the non-idle streams.
CREATE INDEX live_streams_lifecycle_state ON live_streams (lifecycle_state);
