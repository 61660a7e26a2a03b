//! Random identifiers and secrets.
//!
//! Everything here is drawn from the operating system's CSPRNG ([`OsRng`]): stream keys, SRT
//! passphrases and token secrets are credentials, and IDs double as unguessable URLs (a public
//! playback ID is all a viewer needs).
//!
//! | value | format | entropy |
//! | --- | --- | --- |
//! | live stream ID | 44 characters `[A-Za-z0-9]` | ~262 bits |
//! | playback ID | 44 characters `[A-Za-z0-9]` | ~262 bits |
//! | stream key | 16 random bytes as lowercase hex, grouped 8-4-4-4-12 (looks like the seeds' UUID-style keys) | 128 bits |
//! | SRT passphrase | 32 characters `[A-Za-z0-9]` (SRT accepts 10..=79) | ~190 bits |
//! | signing key ID | 44 characters `[A-Za-z0-9]` | ~262 bits (not a secret) |
//! | broadcast ID (= asset ID) | 44 characters `[A-Za-z0-9]` | ~262 bits |
//! | asset track ID | 44 characters `[A-Za-z0-9]` | ~262 bits (not a secret) |
//! | event ID | a random (v4) UUID | 122 bits (not a secret) |
//! | access token ID | a random (v4) UUID, like the seeds' `44c819de-4add-...` | 122 bits (not a secret) |
//! | access token secret | 64 characters `[A-Za-z0-9]` | ~381 bits |
//! | token hash salt | 16 random bytes as hex | 128 bits |

use rand::distributions::Alphanumeric;
use rand::rngs::OsRng;
use rand::{Rng, RngCore};

/// Length of live stream and playback IDs.
pub const ID_LEN: usize = 44;
/// Length of generated SRT passphrases.
pub const SRT_PASSPHRASE_LEN: usize = 32;
/// Length of generated access token secrets.
pub const TOKEN_SECRET_LEN: usize = 64;

fn alphanumeric(len: usize) -> String {
    OsRng
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` from 16 bytes.
fn uuid_layout(bytes: &[u8; 16]) -> String {
    let h = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A new live stream ID.
pub fn live_stream_id() -> String {
    alphanumeric(ID_LEN)
}

/// A new playback ID.
pub fn playback_id() -> String {
    alphanumeric(ID_LEN)
}

/// A new track ID (of an asset's video or audio track).
pub fn track_id() -> String {
    alphanumeric(ID_LEN)
}

/// A new broadcast ID.
pub fn broadcast_id() -> String {
    alphanumeric(ID_LEN)
}

/// A new signing key ID.
pub fn signing_key_id() -> String {
    alphanumeric(ID_LEN)
}

/// A new event ID (a version 4 UUID, the shape webhook consumers expect).
pub fn event_id() -> String {
    uuid_v4()
}

/// A new stream key: 128 random bits, UUID-shaped so it is easy to read out and paste.
pub fn stream_key() -> String {
    uuid_layout(&random_bytes::<16>())
}

/// A new SRT passphrase.
pub fn srt_passphrase() -> String {
    alphanumeric(SRT_PASSPHRASE_LEN)
}

/// A new access token ID (a version 4 UUID).
pub fn access_token_id() -> String {
    uuid_v4()
}

fn uuid_v4() -> String {
    let mut bytes = random_bytes::<16>();
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    uuid_layout(&bytes)
}

/// A new access token secret.
pub fn access_token_secret() -> String {
    alphanumeric(TOKEN_SECRET_LEN)
}

/// A new salt for hashing an access token secret, as hex.
pub fn salt() -> String {
    hex::encode(random_bytes::<16>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let id = live_stream_id();
        assert_eq!(id.len(), ID_LEN);
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric()));
        let key = stream_key();
        assert_eq!(key.len(), 36);
        assert_eq!(key.matches('-').count(), 4);
        assert!(key.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        let token = access_token_id();
        assert_eq!(token.as_bytes()[14], b'4');
        assert_eq!(srt_passphrase().len(), SRT_PASSPHRASE_LEN);
        assert_eq!(access_token_secret().len(), TOKEN_SECRET_LEN);
        assert_eq!(salt().len(), 32);
        assert_ne!(stream_key(), stream_key());
    }
}
