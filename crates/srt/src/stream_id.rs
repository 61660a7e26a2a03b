//! The SRT streamid as OnAir reads it: the stream key, plain or in SRT's access-control
//! syntax, possibly percent-encoded. Pure: a string in, a key or an error out.

/// Why a streamid does not name a stream key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamIdError {
    /// The streamid is empty, or its access-control form carries no `r`, `s` or `u`.
    #[error("the streamid carries no stream key")]
    NoKey,
    /// The access-control form asks for a mode other than publishing (`m=request`: the caller
    /// wants to receive, which this server does not do).
    #[error("mode {0:?} requested: this server only accepts publishers")]
    NotPublish(String),
}

/// The prefix of SRT's access-control syntax (`#!::key=value,...`).
const ACCESS_CONTROL_PREFIX: &str = "#!::";

/// The stream key in a caller's streamid.
///
/// Accepted forms:
/// - the plain key: `KEY`;
/// - SRT's access-control syntax: `#!::r=KEY,m=publish` (the key is the resource `r`; without
///   `r`, the session id `s`, then the user name `u`, since some encoders put it there);
///   `m` may be absent or `publish`, anything else is refused;
/// - either of them percent-encoded, as ffmpeg may send it: `%23!::r%3DKEY%2Cm%3Dpublish`.
///
/// Surrounding whitespace is ignored; the key itself is returned as sent.
pub fn parse_stream_id(raw: &str) -> Result<String, StreamIdError> {
    let decoded = percent_decode(raw.trim());
    let sid = decoded.trim();
    let Some(body) = sid.strip_prefix(ACCESS_CONTROL_PREFIX) else {
        return if sid.is_empty() {
            Err(StreamIdError::NoKey)
        } else {
            Ok(sid.to_owned())
        };
    };
    let (mut resource, mut session, mut user) = (None, None, None);
    for pair in body.split(',') {
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        let value = value.trim().to_owned();
        match name.trim() {
            "r" => resource = Some(value),
            "s" => session = Some(value),
            "u" => user = Some(value),
            "m" if !value.eq_ignore_ascii_case("publish") => {
                return Err(StreamIdError::NotPublish(value))
            }
            _ => {}
        }
    }
    [resource, session, user]
        .into_iter()
        .flatten()
        .find(|v| !v.is_empty())
        .ok_or(StreamIdError::NoKey)
}

/// Decodes `%XX` sequences; anything that is not a valid escape stays as it is, and bytes
/// that do not decode to UTF-8 are replaced (a key is ASCII; such a streamid finds no stream).
fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_key() {
        assert_eq!(parse_stream_id("abc-123").as_deref(), Ok("abc-123"));
        assert_eq!(parse_stream_id("  abc  ").as_deref(), Ok("abc"));
    }

    #[test]
    fn access_control_forms() {
        assert_eq!(parse_stream_id("#!::r=KEY,m=publish").as_deref(), Ok("KEY"));
        assert_eq!(parse_stream_id("#!::m=publish,r=KEY").as_deref(), Ok("KEY"));
        assert_eq!(parse_stream_id("#!::r=KEY").as_deref(), Ok("KEY"));
        assert_eq!(parse_stream_id("#!::s=KEY,m=publish").as_deref(), Ok("KEY"));
        assert_eq!(parse_stream_id("#!::u=KEY").as_deref(), Ok("KEY"));
        assert_eq!(
            parse_stream_id("#!::u=someone,r=KEY,s=session").as_deref(),
            Ok("KEY"),
            "the resource wins"
        );
        assert_eq!(parse_stream_id("#!::r=KEY,m=PUBLISH").as_deref(), Ok("KEY"));
        assert_eq!(
            parse_stream_id("#!::r=KEY,m=request"),
            Err(StreamIdError::NotPublish("request".into()))
        );
        assert_eq!(parse_stream_id("#!::m=publish"), Err(StreamIdError::NoKey));
        assert_eq!(
            parse_stream_id("#!::r=,m=publish"),
            Err(StreamIdError::NoKey)
        );
        assert_eq!(parse_stream_id("#!::"), Err(StreamIdError::NoKey));
    }

    #[test]
    fn percent_encoded_forms() {
        assert_eq!(
            parse_stream_id("%23!::r%3DKEY%2Cm%3Dpublish").as_deref(),
            Ok("KEY")
        );
        assert_eq!(
            parse_stream_id("%23!::r=KEY,m=publish").as_deref(),
            Ok("KEY")
        );
        assert_eq!(
            parse_stream_id("%23%21%3A%3Ar%3Dk%2D1").as_deref(),
            Ok("k-1")
        );
        assert_eq!(parse_stream_id("key%2D1").as_deref(), Ok("key-1"));
    }

    #[test]
    fn bad_escapes_stay_literal() {
        assert_eq!(parse_stream_id("a%").as_deref(), Ok("a%"));
        assert_eq!(parse_stream_id("a%4").as_deref(), Ok("a%4"));
        assert_eq!(parse_stream_id("a%zz").as_deref(), Ok("a%zz"));
        assert_eq!(parse_stream_id("%ff").as_deref(), Ok("\u{fffd}"));
    }

    #[test]
    fn empty_is_no_key() {
        assert_eq!(parse_stream_id(""), Err(StreamIdError::NoKey));
        assert_eq!(parse_stream_id("   "), Err(StreamIdError::NoKey));
    }
}
