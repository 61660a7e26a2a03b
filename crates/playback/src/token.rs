//! Signed playback: the signing keys playback knows, and the verifier of playback tokens.
//!
//! A `signed` playback ID plays only with `?token=JWT`, a token made with a signing key the
//! way the hosted API's SDKs make it (`jwt.signPlaybackId` of the Node SDK, `mux sign`):
//!
//! - header `{"alg": "RS256", ...}` (any other algorithm is refused, `none` and `HS256`
//!   included: only RSA signatures with a key OnAir created are accepted);
//! - claims `kid` (the signing key's ID; a `kid` in the header is accepted when the claims
//!   have none), `sub` (the playback ID), `aud` (`"v"`, video; `t`, `g`, `s` and `d` are for
//!   thumbnails, GIFs, storyboards and DRM licences and do not play video), `exp` (unix
//!   seconds, required) and optionally `nbf`. Other claims (e.g. playback restrictions) are
//!   ignored.
//!
//! [`verify`] is pure (the time is a parameter) and never panics on any input; it checks the
//! signature before it reads what the claims say.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

/// Longest token accepted (bytes); real ones are well under 1 KiB.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The audience of video playback tokens.
pub const VIDEO_AUDIENCE: &str = "v";

/// The public keys of the signing keys that exist, by ID. Loaded from the store at start and
/// kept up to date by the API (a deleted key stops verifying at once). Cheap to clone.
#[derive(Clone, Default)]
pub struct SigningKeys {
    keys: Arc<RwLock<HashMap<String, Arc<ParsedPublicKey>>>>,
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeys")
            .field("count", &self.len())
            .finish()
    }
}

/// A public key that is not an RSA key of 2048 to 8192 bits in DER.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signing key {id}: the public key is not an RSA key of 2048 to 8192 bits")]
pub struct KeyRejected {
    /// The signing key's ID.
    pub id: String,
}

impl SigningKeys {
    /// Adds every signing key of `store`; how many there are.
    pub async fn load_from(&self, store: &impl store::Store) -> Result<usize, LoadError> {
        let records = store.signing_key_records().await?;
        for record in &records {
            self.insert(&record.key.id, &record.public_key_der)?;
        }
        Ok(records.len())
    }

    /// Adds (or replaces) a key: `der` is an RSA public key, RFC 8017 `RSAPublicKey` or
    /// X.509 `SubjectPublicKeyInfo`.
    pub fn insert(&self, id: &str, der: &[u8]) -> Result<(), KeyRejected> {
        let key = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der)
            .map_err(|_| KeyRejected { id: id.to_owned() })?;
        self.write().insert(id.to_owned(), Arc::new(key));
        Ok(())
    }

    /// Forgets a key: tokens signed with it no longer verify.
    pub fn remove(&self, id: &str) {
        self.write().remove(id);
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, id: &str) -> Option<Arc<ParsedPublicKey>> {
        self.read().get(id).cloned()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<ParsedPublicKey>>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<ParsedPublicKey>>> {
        self.keys.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why the keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The store failed.
    #[error("reading the signing keys: {0}")]
    Store(#[from] store::StoreError),
    /// A stored key is unusable.
    #[error(transparent)]
    Key(#[from] KeyRejected),
}

/// Why a token does not let its bearer play. The `Display` text is the body of the `403`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `token` parameter.
    #[error("this playback ID is signed: its URLs need ?token= with a JWT made with one of your signing keys")]
    Missing,
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("the token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    /// Not three base64url parts, or a part that is not the JSON it should be.
    #[error("the token is not a JWT (three base64url parts: header, claims, signature): {0}")]
    Malformed(&'static str),
    /// A header `alg` other than RS256.
    #[error("the token's algorithm is {0:?}; playback tokens are signed with RS256")]
    Algorithm(String),
    /// Neither the claims nor the header name a signing key.
    #[error("the token names no signing key (its kid claim)")]
    NoKeyId,
    /// The signing key does not exist (or was deleted).
    #[error("the token's signing key {0:?} does not exist (it may have been deleted)")]
    UnknownKey(String),
    /// The signature does not verify with the named key.
    #[error("the token's signature does not verify with signing key {0:?}")]
    BadSignature(String),
    /// An audience other than video.
    #[error("the token's audience is {0}; video playback needs aud \"v\"")]
    Audience(String),
    /// `sub` is not this playback ID.
    #[error("the token is for another playback ID (its sub claim)")]
    Subject,
    /// No `exp` claim.
    #[error("the token has no expiry (its exp claim, unix seconds)")]
    NoExpiry,
    /// `exp` is past.
    #[error("the token expired at {exp} (unix seconds; now {now})")]
    Expired {
        /// The token's `exp`.
        exp: i64,
        /// The time of the check.
        now: i64,
    },
    /// `nbf` is in the future.
    #[error("the token is not valid before {nbf} (unix seconds; now {now})")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: i64,
        /// The time of the check.
        now: i64,
    },
}

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    kid: Option<String>,
}

/// Seconds as a JWT numeric date (an integer or a float, truncated).
fn numeric_date(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        _ => None,
    }
}

fn decode_json(part: &str, what: &'static str) -> Result<Value, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(what))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed(what))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(TokenError::Malformed(what))
    }
}

/// Checks that `token` lets its bearer play `playback_id` at `now` (unix seconds).
pub fn verify(
    token: &str,
    playback_id: &str,
    now: i64,
    keys: &SigningKeys,
) -> Result<(), TokenError> {
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("it does not have three parts"));
    };
    let header: Header = serde_json::from_value(decode_json(header_b64, "bad header")?)
        .map_err(|_| TokenError::Malformed("bad header"))?;
    match header.alg.as_deref() {
        Some("RS256") => {}
        other => return Err(TokenError::Algorithm(other.unwrap_or("").to_owned())),
    }
    let claims = decode_json(claims_b64, "bad claims")?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| TokenError::Malformed("bad signature encoding"))?;
    let kid = match claims.get("kid") {
        Some(Value::String(k)) => k.clone(),
        Some(_) => return Err(TokenError::Malformed("kid is not a string")),
        None => header.kid.ok_or(TokenError::NoKeyId)?,
    };
    let key = keys
        .get(&kid)
        .ok_or_else(|| TokenError::UnknownKey(kid.clone()))?;
    let signed = &token[..header_b64.len() + 1 + claims_b64.len()];
    key.verify_sig(signed.as_bytes(), &signature)
        .map_err(|_| TokenError::BadSignature(kid))?;
    // Signed by a key of ours: now what it says counts.
    match claims.get("aud") {
        Some(Value::String(a)) if a == VIDEO_AUDIENCE => {}
        Some(Value::Array(a)) if a.iter().any(|v| v == VIDEO_AUDIENCE) => {}
        Some(other) => return Err(TokenError::Audience(other.to_string())),
        None => return Err(TokenError::Audience("missing".to_owned())),
    }
    match claims.get("sub") {
        Some(Value::String(s)) if s == playback_id => {}
        _ => return Err(TokenError::Subject),
    }
    let exp = claims
        .get("exp")
        .and_then(numeric_date)
        .ok_or(TokenError::NoExpiry)?;
    if now >= exp {
        return Err(TokenError::Expired { exp, now });
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = numeric_date(nbf).ok_or(TokenError::Malformed("nbf is not a number"))?;
        if now < nbf {
            return Err(TokenError::NotYetValid { nbf, now });
        }
    }
    Ok(())
}

/// A new signing key pair: the private key for the caller (once), the public key to keep.
pub struct GeneratedKey {
    /// The private key as the hosted API returns it: base64 of a PEM
    /// `-----BEGIN RSA PRIVATE KEY-----` (PKCS #1) document.
    pub private_key_base64_pem: String,
    /// DER, RFC 8017 `RSAPublicKey`.
    pub public_key_der: Vec<u8>,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey").finish_non_exhaustive()
    }
}

/// Why a key pair could not be made.
#[derive(Debug, Clone, thiserror::Error)]
#[error("could not generate an RSA key pair")]
pub struct GenerateError;

/// Generates a 2048-bit RSA signing key pair (CPU-bound for tens of milliseconds: call it
/// off the async workers).
pub fn generate_key_pair() -> Result<GeneratedKey, GenerateError> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::KeyPair as _;
    let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| GenerateError)?;
    let pkcs8 = pair.as_der().map_err(|_| GenerateError)?;
    let pkcs1 = pkcs1_of_pkcs8(pkcs8.as_ref()).ok_or(GenerateError)?;
    let pem = pem("RSA PRIVATE KEY", pkcs1);
    Ok(GeneratedKey {
        private_key_base64_pem: base64::engine::general_purpose::STANDARD.encode(pem),
        public_key_der: pair.public_key().as_ref().to_vec(),
    })
}

/// A PEM document: base64 in lines of 64 characters between the labels.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// One DER element: `(tag, contents, rest)`.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The PKCS #1 `RSAPrivateKey` inside a PKCS #8 `PrivateKeyInfo` (RFC 5208: a sequence of
/// version, algorithm and the key as an octet string).
fn pkcs1_of_pkcs8(pkcs8: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const OCTET_STRING: u8 = 0x04;
    let (SEQUENCE, info, _) = der_element(pkcs8)? else {
        return None;
    };
    let (INTEGER, _, rest) = der_element(info)? else {
        return None;
    };
    let (SEQUENCE, _, rest) = der_element(rest)? else {
        return None;
    };
    let (OCTET_STRING, key, _) = der_element(rest)? else {
        return None;
    };
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeyPair;
    use aws_lc_rs::signature::RSA_PKCS1_SHA256;
    use serde_json::json;

    struct Signer {
        pair: KeyPair,
        keys: SigningKeys,
    }

    const NOW: i64 = 1_800_000_000;

    fn signer() -> Signer {
        let generated = generate_key_pair().unwrap();
        // The private key as a client reads it: base64 of a PKCS #1 PEM.
        let pem = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(&generated.private_key_base64_pem)
                .unwrap(),
        )
        .unwrap();
        assert!(
            pem.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"),
            "{pem}"
        );
        assert!(pem.ends_with("-----END RSA PRIVATE KEY-----\n"));
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(pem.lines().all(|l| l.len() <= 64));
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        let pair = KeyPair::from_der(&der).unwrap();
        let keys = SigningKeys::default();
        keys.insert("K1", &generated.public_key_der).unwrap();
        Signer { pair, keys }
    }

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    impl Signer {
        fn sign_raw(&self, header: &Value, claims: &Value) -> String {
            let input = format!("{}.{}", b64(header), b64(claims));
            let mut sig = vec![0; self.pair.public_modulus_len()];
            self.pair
                .sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    input.as_bytes(),
                    &mut sig,
                )
                .unwrap();
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
        }

        /// As `jwt.signPlaybackId` makes them.
        fn sign(&self, claims: Value) -> String {
            self.sign_raw(&json!({"alg": "RS256", "typ": "JWT"}), &claims)
        }
    }

    fn claims() -> Value {
        json!({"kid": "K1", "sub": "PID", "aud": "v", "exp": NOW + 60})
    }

    fn with(mut c: Value, key: &str, v: Value) -> Value {
        c[key] = v;
        c
    }

    #[test]
    fn a_token_made_like_the_sdk_makes_it_plays_its_playback_id() {
        let s = signer();
        assert_eq!(verify(&s.sign(claims()), "PID", NOW, &s.keys), Ok(()));
        // Extra claims (playback restrictions, custom params) are ignored; aud may be a list.
        let c = with(claims(), "custom", json!({"session_id": "x"}));
        assert_eq!(verify(&s.sign(c), "PID", NOW, &s.keys), Ok(()));
        let c = with(claims(), "aud", json!(["t", "v"]));
        assert_eq!(verify(&s.sign(c), "PID", NOW, &s.keys), Ok(()));
        // kid in the header when the claims have none.
        let mut c = claims();
        c.as_object_mut().unwrap().remove("kid");
        let t = s.sign_raw(&json!({"alg": "RS256", "kid": "K1"}), &c);
        assert_eq!(verify(&t, "PID", NOW, &s.keys), Ok(()));
    }

    #[test]
    fn every_way_a_token_can_be_wrong_is_refused_with_its_reason() {
        let s = signer();
        let v = |t: &str| verify(t, "PID", NOW, &s.keys);
        assert_eq!(v(""), Err(TokenError::Missing));
        assert_eq!(v(&"a".repeat(MAX_TOKEN_LEN + 1)), Err(TokenError::TooLong));
        assert!(matches!(v("a.b"), Err(TokenError::Malformed(_))));
        assert!(matches!(v("a.b.c.d"), Err(TokenError::Malformed(_))));
        assert!(matches!(v("!!.b.c"), Err(TokenError::Malformed(_))));
        let good = s.sign(claims());
        let (head, sig) = good.rsplit_once('.').unwrap();
        // A signature of another message, a truncated one, garbage.
        let other = s.sign(with(claims(), "exp", json!(NOW + 61)));
        let other_sig = other.rsplit_once('.').unwrap().1;
        assert_eq!(
            v(&format!("{head}.{other_sig}")),
            Err(TokenError::BadSignature("K1".into()))
        );
        let sig_bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
        let short = URL_SAFE_NO_PAD.encode(&sig_bytes[..sig_bytes.len() - 3]);
        assert_eq!(
            v(&format!("{head}.{short}")),
            Err(TokenError::BadSignature("K1".into()))
        );
        // Claims changed after signing.
        let forged = format!(
            "{}.{}.{sig}",
            head.split('.').next().unwrap(),
            b64(&with(claims(), "sub", json!("OTHER")))
        );
        assert_eq!(
            verify(&forged, "OTHER", NOW, &s.keys),
            Err(TokenError::BadSignature("K1".into()))
        );
        // Algorithms other than RS256, "none" included.
        let none = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&claims()));
        assert_eq!(v(&none), Err(TokenError::Algorithm("none".into())));
        let hs = s.sign_raw(&json!({"alg": "HS256"}), &claims());
        assert_eq!(v(&hs), Err(TokenError::Algorithm("HS256".into())));
        // Keys.
        let mut c = claims();
        c.as_object_mut().unwrap().remove("kid");
        assert_eq!(v(&s.sign(c)), Err(TokenError::NoKeyId));
        assert_eq!(
            v(&s.sign(with(claims(), "kid", json!("K2")))),
            Err(TokenError::UnknownKey("K2".into()))
        );
        // Audiences of thumbnails, GIFs, storyboards and DRM licences.
        for aud in ["t", "g", "s", "d"] {
            assert_eq!(
                v(&s.sign(with(claims(), "aud", json!(aud)))),
                Err(TokenError::Audience(format!("{aud:?}")))
            );
        }
        // Another playback ID; no expiry; expired; not yet valid.
        assert_eq!(
            verify(&good, "OTHER", NOW, &s.keys),
            Err(TokenError::Subject)
        );
        let mut c = claims();
        c.as_object_mut().unwrap().remove("exp");
        assert_eq!(v(&s.sign(c)), Err(TokenError::NoExpiry));
        assert_eq!(
            verify(&good, "PID", NOW + 60, &s.keys),
            Err(TokenError::Expired {
                exp: NOW + 60,
                now: NOW + 60
            })
        );
        let c = with(claims(), "nbf", json!(NOW + 10));
        assert_eq!(
            v(&s.sign(c)),
            Err(TokenError::NotYetValid {
                nbf: NOW + 10,
                now: NOW
            })
        );
        // A deleted key stops verifying at once.
        s.keys.remove("K1");
        assert_eq!(v(&good), Err(TokenError::UnknownKey("K1".into())));
    }

    #[test]
    fn keys_that_are_not_rsa_public_keys_are_rejected() {
        let keys = SigningKeys::default();
        assert!(keys.insert("X", b"not der").is_err());
        assert!(keys.is_empty());
    }

    #[test]
    fn pkcs8_unwrapping_refuses_what_is_not_pkcs8() {
        assert_eq!(pkcs1_of_pkcs8(&[]), None);
        assert_eq!(pkcs1_of_pkcs8(&[0x30, 0x82, 0xff]), None);
        assert_eq!(pkcs1_of_pkcs8(&[0x30, 0x03, 0x02, 0x01, 0x00]), None);
    }

    /// A random JSON value of the kinds a claim might hold.
    fn random_value(rng: &mut impl rand::Rng) -> Value {
        match rng.gen_range(0..9) {
            0 => Value::Null,
            1 => json!(rng.gen_bool(0.5)),
            2 => json!(NOW + rng.gen_range(-100..100)),
            3 => json!((NOW + rng.gen_range(-100..100)) as f64 + 0.5),
            4 => json!(["v", "t", "PID", "K1", "x"][rng.gen_range(0..5)]),
            5 => [json!(["v"]), json!(["t"]), json!([]), json!(["t", "v"])][rng.gen_range(0..4)]
                .clone(),
            6 => json!({"v": 1}),
            7 => json!(f64::MAX),
            _ => json!(i64::MIN),
        }
    }

    /// What [`verify`] must decide for signed claims, written independently of it.
    fn expected(c: &serde_json::Map<String, Value>) -> bool {
        let aud_ok = match c.get("aud") {
            Some(Value::String(a)) => a == "v",
            Some(Value::Array(a)) => a.iter().any(|v| v == "v"),
            _ => false,
        };
        let date = |v: &Value| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64));
        let exp_ok = c.get("exp").and_then(date).is_some_and(|e| NOW < e);
        let nbf_ok = match c.get("nbf") {
            None => true,
            Some(v) => date(v).is_some_and(|n| n <= NOW),
        };
        let sub_ok = c.get("sub").is_some_and(|s| s == "PID");
        let kid_ok = c.get("kid").is_some_and(|k| k == "K1");
        aud_ok && exp_ok && nbf_ok && sub_ok && kid_ok
    }

    #[test]
    fn property_signed_claims_play_exactly_when_every_check_holds() {
        use rand::{Rng, SeedableRng};
        let s = signer();
        let mut rng = rand::rngs::StdRng::seed_from_u64(20261126);
        let (mut played, mut refused) = (0, 0);
        for _ in 0..600 {
            let mut c = serde_json::Map::new();
            for name in ["kid", "sub", "aud", "exp", "nbf", "extra"] {
                // Each claim: absent, a plausible good value (most often), or anything.
                match rng.gen_range(0..8) {
                    0 => {}
                    1..=5 => {
                        let good = match name {
                            "kid" => json!("K1"),
                            "sub" => json!("PID"),
                            "aud" => json!("v"),
                            "exp" => json!(NOW + 30),
                            "nbf" => json!(NOW - 30),
                            _ => json!("x"),
                        };
                        c.insert(name.to_owned(), good);
                    }
                    _ => {
                        c.insert(name.to_owned(), random_value(&mut rng));
                    }
                }
            }
            let token = s.sign(Value::Object(c.clone()));
            let got = verify(&token, "PID", NOW, &s.keys);
            assert_eq!(got.is_ok(), expected(&c), "{c:?}: {got:?}");
            if got.is_ok() {
                played += 1;
            } else {
                refused += 1;
            }
            // Any single byte changed in a good token breaks it.
            if got.is_ok() {
                let mut bytes = token.into_bytes();
                let i = rng.gen_range(0..bytes.len());
                bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
                let tampered = String::from_utf8_lossy(&bytes).into_owned();
                assert!(
                    verify(&tampered, "PID", NOW, &s.keys).is_err(),
                    "{tampered}"
                );
            }
        }
        // Both outcomes were exercised.
        assert!(
            played > 20 && refused > 20,
            "{played} played, {refused} refused"
        );
    }
}
