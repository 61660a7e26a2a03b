//! Access tokens: the ID/secret pairs the REST API accepts as HTTP basic auth.
//!
//! Only a salted hash of each secret is stored: `SHA-256(salt || secret)` where `salt` is the
//! row's own 16 random bytes (stored as hex, and hashed in that hex form). Generated secrets
//! carry ~381 bits of entropy, so a fast hash is enough; an operator-chosen secret given
//! through `ONAIR_ACCESS_TOKEN` is only as strong as the operator made it.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::live_stream::{unix_seconds_string, Redacted};
use crate::StoreError;

/// Longest accepted token ID (bytes) and name (characters).
pub const MAX_TOKEN_ID_LEN: usize = 255;
/// Longest accepted secret for [`crate::Store::ensure_access_token`] (bytes).
pub const MAX_TOKEN_SECRET_LEN: usize = 1024;
/// Name given to tokens created by `ensure_access_token`.
pub const ENSURED_TOKEN_NAME: &str = "ONAIR_ACCESS_TOKEN";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Permissions {
    /// Retrieve live streams and other resources.
    pub read: bool,
    /// Create, update and delete them.
    pub write: bool,
}

impl Permissions {
    /// Read and write.
    pub const READ_WRITE: Permissions = Permissions {
        read: true,
        write: true,
    };
    /// Read only.
    pub const READ_ONLY: Permissions = Permissions {
        read: true,
        write: false,
    };

    pub(crate) fn validate(self) -> Result<(), StoreError> {
        if self.read || self.write {
            Ok(())
        } else {
            Err(StoreError::invalid(
                "permissions",
                "a token needs read or write permission",
            ))
        }
    }
}

/// An access token as listed: everything except the secret, which is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessToken {
    /// The token ID (the basic-auth user name).
    pub id: String,
    /// A label for people.
    pub name: String,
    /// What it may do.
    pub permissions: Permissions,
    /// Creation time, unix seconds (a string in JSON).
    #[serde(with = "unix_seconds_string")]
    pub created_at: i64,
    /// A revoked token no longer authenticates.
    pub revoked: bool,
}

/// A freshly created token and its secret. The secret is not stored and cannot be recovered:
/// show it once. `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedAccessToken {
    /// The stored token.
    pub token: AccessToken,
    /// The secret (the basic-auth password).
    pub secret: String,
}

impl fmt::Debug for IssuedAccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedAccessToken")
            .field("token", &self.token)
            .field("secret", &Redacted(&self.secret))
            .finish()
    }
}

/// What [`crate::Store::ensure_access_token`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnsureOutcome {
    /// No token had that ID; it was created.
    Created,
    /// The token existed with another secret or permissions, or was revoked; it now matches.
    Updated,
    /// The token already matched.
    Unchanged,
}

/// Hex `SHA-256(salt || secret)`.
pub(crate) fn hash_secret(salt: &str, secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

/// Whether `secret` hashes to `stored_hash` (hex) under `salt`, compared in constant time.
pub(crate) fn secret_matches(salt: &str, stored_hash: &str, secret: &str) -> bool {
    let computed = hash_secret(salt, secret);
    constant_time_eq(computed.as_bytes(), stored_hash.as_bytes())
}

/// Compares without an early exit, so the time taken does not reveal where inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

pub(crate) fn validate_token_id(id: &str) -> Result<(), StoreError> {
    if id.is_empty() || id.len() > MAX_TOKEN_ID_LEN {
        return Err(StoreError::invalid(
            "id",
            format!("must be 1 to {MAX_TOKEN_ID_LEN} bytes"),
        ));
    }
    // The ID is a basic-auth user name: no colon, and nothing invisible.
    if id
        .chars()
        .any(|c| c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(StoreError::invalid(
            "id",
            "must not contain ':', whitespace or control characters",
        ));
    }
    Ok(())
}

pub(crate) fn validate_secret(secret: &str) -> Result<(), StoreError> {
    if secret.is_empty() || secret.len() > MAX_TOKEN_SECRET_LEN {
        return Err(StoreError::invalid(
            "secret",
            format!("must be 1 to {MAX_TOKEN_SECRET_LEN} bytes"),
        ));
    }
    Ok(())
}

pub(crate) fn validate_name(name: &str) -> Result<(), StoreError> {
    if name.chars().count() > MAX_TOKEN_ID_LEN {
        return Err(StoreError::invalid(
            "name",
            format!("must be at most {MAX_TOKEN_ID_LEN} characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_and_comparison() {
        let h = hash_secret("salt", "secret");
        assert_eq!(h.len(), 64);
        assert!(secret_matches("salt", &h, "secret"));
        assert!(!secret_matches("salt", &h, "secreT"));
        assert!(!secret_matches("other", &h, "secret"));
        assert!(!secret_matches("salt", "short", "secret"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn token_id_rules() {
        assert!(validate_token_id("44c819de-4add-4d1b-9d2c-8d0e0f6b3a11").is_ok());
        for bad in ["", "a:b", "a b", &"x".repeat(256)] {
            assert!(matches!(
                validate_token_id(bad),
                Err(StoreError::InvalidField { field: "id", .. })
            ));
        }
        assert!(validate_secret("").is_err());
        assert!(Permissions {
            read: false,
            write: false
        }
        .validate()
        .is_err());
    }
}
