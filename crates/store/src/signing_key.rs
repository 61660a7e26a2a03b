//! Signing keys: the public halves of the RSA key pairs that sign playback tokens.
//!
//! The API generates a key pair, hands the private key to the caller once and stores only
//! the public key ([`NewSigningKey`]); playback verifies tokens with it. Deleting a key
//! invalidates every token signed with it.

use serde::Serialize;
use utoipa::ToSchema;

use crate::live_stream::unix_seconds_string;
use crate::StoreError;

/// Largest page size [`Store::list_signing_keys`](crate::Store::list_signing_keys) accepts.
pub const MAX_SIGNING_KEY_LIST_LIMIT: u32 = 100;

/// Largest public key accepted (DER bytes; an RSA-8192 key is about 1 KiB).
pub const MAX_PUBLIC_KEY_LEN: usize = 4096;

/// A signing key as the API shows it: `{id, created_at}` (the private key only in the
/// creation answer, which the API adds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SigningKey {
    /// The key's ID: tokens name it in their `kid` claim.
    pub id: String,
    /// Creation time, unix seconds, as a string.
    #[serde(with = "unix_seconds_string")]
    #[schema(value_type = String, example = "1527110899")]
    pub created_at: i64,
}

/// A signing key with its public key (what playback verifies tokens with).
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// The key as the API shows it.
    pub key: SigningKey,
    /// DER, RFC 8017 `RSAPublicKey`.
    pub public_key_der: Vec<u8>,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("key", &self.key)
            .field("public_key_der_len", &self.public_key_der.len())
            .finish()
    }
}

pub(crate) fn check_public_key(der: &[u8]) -> Result<(), StoreError> {
    if der.is_empty() || der.len() > MAX_PUBLIC_KEY_LEN {
        return Err(StoreError::invalid(
            "public_key",
            format!("must be 1 to {MAX_PUBLIC_KEY_LEN} bytes of DER"),
        ));
    }
    Ok(())
}
