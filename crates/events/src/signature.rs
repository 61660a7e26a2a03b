//! The `mux-signature` header: `t=<unix seconds>,v1=<hex>`, where `v1` is the lowercase hex
//! HMAC-SHA256 of `"<t>.<raw body>"` keyed by the endpoint secret's UTF-8 bytes.
//!
//! The receiver recomputes it over the exact bytes it received and rejects timestamps older
//! than a few minutes (the Node SDK: 300 s), so every attempt is signed afresh.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header's name (HTTP header names are case-insensitive; the hosted API sends this).
pub const HEADER: &str = "mux-signature";

/// Lowercase hex HMAC-SHA256 of `"<timestamp>.<body>"` keyed by `secret`.
pub fn sign(secret: &str, timestamp: u64, body: &[u8]) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The header value for `body` sent at `timestamp`.
pub fn header_value(secret: &str, timestamp: u64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", sign(secret, timestamp, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// COMPAT.md's known vector (from the official SDKs' tests).
    #[test]
    fn known_vector() {
        assert_eq!(
            sign("SuperSecret123", 1_565_125_718, br#"{"test":"body"}"#),
            "854ece4c22acef7c66b57d4e504153bc512595e8e9c772ece2a68150548c19a7"
        );
        assert_eq!(
            header_value("SuperSecret123", 1_565_125_718, br#"{"test":"body"}"#),
            "t=1565125718,v1=854ece4c22acef7c66b57d4e504153bc512595e8e9c772ece2a68150548c19a7"
        );
    }

    #[test]
    fn depends_on_secret_time_and_every_byte() {
        let base = sign("s", 1, b"{}");
        assert_ne!(sign("t", 1, b"{}"), base);
        assert_ne!(sign("s", 2, b"{}"), base);
        assert_ne!(sign("s", 1, b"{ }"), base);
    }
}
