-- Webhook delivery from the event log, SQLite dialect.

-- The live stream's lifecycle state as of each event: webhooks derive `data.connected` and
-- `data.recording` from it. NULL for events written before this migration (readers fall back
-- to the event type).
ALTER TABLE events ADD COLUMN lifecycle_state TEXT
    CHECK (lifecycle_state IS NULL OR
           lifecycle_state IN ('idle', 'connected', 'recording', 'active', 'disconnected'));

-- How far each webhook endpoint has got in the event log. `endpoint_key` is a hash of the
-- endpoint's URL (never of its secret); `delivered_seq` is the `events.seq` of the newest
-- event the endpoint answered 2xx to (or that was given up on, see below), so delivery
-- resumes after it at the next start.
CREATE TABLE webhook_cursors (
    endpoint_key   TEXT   PRIMARY KEY,
    delivered_seq  BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL
);

-- Events an endpoint never accepted within the retry period: delivery gave up on them and
-- moved on. Kept for the operator (and a later redelivery).
CREATE TABLE webhook_failures (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_key   TEXT    NOT NULL,
    event_seq      BIGINT  NOT NULL,
    event_id       TEXT    NOT NULL,
    attempts       BIGINT  NOT NULL,
    reason         TEXT    NOT NULL,
    failed_at_ms   BIGINT  NOT NULL
);

CREATE INDEX webhook_failures_endpoint ON webhook_failures (endpoint_key, event_seq);
