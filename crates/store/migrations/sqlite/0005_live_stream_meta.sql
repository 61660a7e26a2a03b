-- Live streams: user labels (`meta`), and reconnect windows with a fraction, SQLite dialect.
--
-- `meta` is JSON {title, creator_id, external_id}, NULL when unset. `reconnect_window` keeps
-- its column: SQLite stores a fractional value (12.5) as REAL in it, and the store reads it
-- back with CAST(... AS REAL).

ALTER TABLE live_streams ADD COLUMN meta TEXT;
