//! HTTP basic auth with access tokens: `Authorization: Basic base64(TOKEN_ID:TOKEN_SECRET)`.

use std::fmt;

use axum::http::{header, HeaderMap, Method};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use store::{Permissions, MAX_TOKEN_ID_LEN, MAX_TOKEN_SECRET_LEN};

use crate::error::ApiError;

/// Credentials taken from an `Authorization` header. `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    /// The access token ID (basic-auth user name).
    pub(crate) id: String,
    /// The secret (basic-auth password).
    pub(crate) secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("id", &self.id)
            .field("secret", &"…")
            .finish()
    }
}

/// Longest `Authorization` value worth decoding: base64 of the longest ID and secret.
const MAX_HEADER_LEN: usize = 16 + (MAX_TOKEN_ID_LEN + 1 + MAX_TOKEN_SECRET_LEN).div_ceil(3) * 4;

/// The basic-auth credentials of a request; [`ApiError::Unauthorized`] when they are missing
/// or malformed.
pub(crate) fn credentials(headers: &HeaderMap) -> Result<Credentials, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized)?
        .to_str()
        .map_err(|_| ApiError::Unauthorized)?;
    if value.len() > MAX_HEADER_LEN {
        return Err(ApiError::Unauthorized);
    }
    let (scheme, encoded) = value.trim().split_once(' ').ok_or(ApiError::Unauthorized)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(ApiError::Unauthorized);
    }
    let encoded = encoded.trim();
    let decoded = STANDARD
        .decode(encoded)
        .or_else(|_| STANDARD_NO_PAD.decode(encoded))
        .map_err(|_| ApiError::Unauthorized)?;
    let decoded = String::from_utf8(decoded).map_err(|_| ApiError::Unauthorized)?;
    let (id, secret) = decoded.split_once(':').ok_or(ApiError::Unauthorized)?;
    if id.is_empty()
        || secret.is_empty()
        || id.len() > MAX_TOKEN_ID_LEN
        || secret.len() > MAX_TOKEN_SECRET_LEN
    {
        return Err(ApiError::Unauthorized);
    }
    Ok(Credentials {
        id: id.to_owned(),
        secret: secret.to_owned(),
    })
}

/// Checks that `permissions` allow `method`: `GET` and `HEAD` read, everything else writes.
pub(crate) fn authorize(method: &Method, permissions: Permissions) -> Result<(), ApiError> {
    if *method == Method::GET || *method == Method::HEAD {
        if permissions.read {
            Ok(())
        } else {
            Err(ApiError::Forbidden("read"))
        }
    } else if permissions.write {
        Ok(())
    } else {
        Err(ApiError::Forbidden("write"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn parses_basic_credentials() {
        let encoded = STANDARD.encode("token-id:se:cret");
        let c = credentials(&with(&format!("Basic {encoded}"))).unwrap();
        assert_eq!(c.id, "token-id");
        assert_eq!(c.secret, "se:cret");
        let c = credentials(&with(&format!("basic  {encoded} "))).unwrap();
        assert_eq!(c.id, "token-id");
        assert!(!format!("{c:?}").contains("se:cret"));
    }

    #[test]
    fn refuses_malformed_credentials() {
        assert_eq!(credentials(&HeaderMap::new()), Err(ApiError::Unauthorized));
        let cases = [
            "Bearer abc".to_owned(),
            "Basic".to_owned(),
            "Basic !!!".to_owned(),
            format!("Basic {}", STANDARD.encode("no-colon")),
            format!("Basic {}", STANDARD.encode(":secret")),
            format!("Basic {}", STANDARD.encode("id:")),
            format!("Basic {}", STANDARD.encode([0xff, b':', b'x'])),
            format!("Basic {}", "A".repeat(MAX_HEADER_LEN)),
        ];
        for case in cases {
            assert_eq!(
                credentials(&with(&case)),
                Err(ApiError::Unauthorized),
                "{case}"
            );
        }
    }

    #[test]
    fn methods_need_permissions() {
        let ro = Permissions::READ_ONLY;
        let wo = Permissions {
            read: false,
            write: true,
        };
        assert!(authorize(&Method::GET, ro).is_ok());
        assert!(authorize(&Method::HEAD, ro).is_ok());
        assert_eq!(
            authorize(&Method::POST, ro),
            Err(ApiError::Forbidden("write"))
        );
        assert_eq!(
            authorize(&Method::DELETE, ro),
            Err(ApiError::Forbidden("write"))
        );
        assert_eq!(
            authorize(&Method::GET, wo),
            Err(ApiError::Forbidden("read"))
        );
        assert!(authorize(&Method::PATCH, wo).is_ok());
    }
}
