//! Fuzzes the playback-token verifier: it must answer every input without panicking, and
//! accept nothing the fuzzer made (it cannot sign with the key). Input: [mode][bytes...]:
//! mode 0 feeds the bytes as the token; otherwise the bytes are split in three at two
//! positions and each part base64url-encoded, so that header and claims reach the JSON
//! parser and the signature check.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use playback::token::{generate_key_pair, verify, SigningKeys};

fn keys() -> &'static SigningKeys {
    static KEYS: OnceLock<SigningKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let keys = SigningKeys::default();
        let pair = generate_key_pair().expect("key pair");
        keys.insert("K1", &pair.public_key_der).expect("public key");
        keys
    })
}

fuzz_target!(|data: &[u8]| {
    let [mode, a, b, rest @ ..] = data else {
        return;
    };
    let token = if *mode == 0 {
        String::from_utf8_lossy(&data[1..]).into_owned()
    } else {
        let a = usize::from(*a).min(rest.len());
        let b = (a + usize::from(*b)).min(rest.len());
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(&rest[..a]),
            URL_SAFE_NO_PAD.encode(&rest[a..b]),
            URL_SAFE_NO_PAD.encode(&rest[b..])
        )
    };
    assert!(verify(&token, "PID", 1_800_000_000, keys()).is_err());
});
