-- Signing keys for signed playback, SQLite dialect.
--
-- Only the public half is kept (DER, RFC 8017 `RSAPublicKey`): the private key is returned
-- once, at creation, and never stored. `seq` orders the list (newest first).

CREATE TABLE signing_keys (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    public_key BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
