//! A small AMF0 decoder for the script data RTMP and FLV carry (`onMetaData`), and the
//! stream metadata OnAir keeps from it.
//!
//! Nesting depth and element counts are bounded, so a hostile peer cannot exhaust the stack
//! or memory with a few bytes.

use bytes::Bytes;

use crate::error::{MediaError, Result};
use crate::reader::ByteReader;

/// Deepest nesting of objects and arrays accepted.
pub const MAX_DEPTH: usize = 16;

/// An AMF0 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf0Value {
    /// Number (IEEE-754 double).
    Number(f64),
    /// Boolean.
    Boolean(bool),
    /// String or long string (lossily decoded as UTF-8).
    String(String),
    /// Anonymous object, ECMA array or typed object: key/value pairs in order.
    Object(Vec<(String, Amf0Value)>),
    /// Strict array.
    Array(Vec<Amf0Value>),
    /// Date in milliseconds since the epoch.
    Date(f64),
    /// null, undefined, unsupported, or a reference (which OnAir does not resolve).
    Null,
}

impl Amf0Value {
    /// The property `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        match self {
            Amf0Value::Object(props) => props.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value as a number, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) if n.is_finite() => Some(*n),
            _ => None,
        }
    }

    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) => Some(s),
            _ => None,
        }
    }
}

const WHAT: &str = "AMF0 data";

/// Decodes every value in `data`.
pub fn decode_all(data: Bytes) -> Result<Vec<Amf0Value>> {
    let mut r = ByteReader::new(data, WHAT);
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(decode_value(&mut r, 0)?);
    }
    Ok(out)
}

fn decode_string(r: &mut ByteReader, len: usize) -> Result<String> {
    Ok(String::from_utf8_lossy(&r.take(len)?).into_owned())
}

fn decode_properties(r: &mut ByteReader, depth: usize) -> Result<Vec<(String, Amf0Value)>> {
    let mut props = Vec::new();
    loop {
        let len = usize::from(r.u16()?);
        if len == 0 {
            // An empty key followed by the object-end marker closes the object. Some encoders
            // omit the marker at the very end of the data; accept that.
            if r.is_empty() {
                return Ok(props);
            }
            let marker = r.u8()?;
            if marker == 9 {
                return Ok(props);
            }
            return Err(MediaError::invalid(
                WHAT,
                format!("empty property name followed by marker {marker}"),
            ));
        }
        let key = decode_string(r, len)?;
        let value = decode_value(r, depth + 1)?;
        props.push((key, value));
    }
}

fn decode_value(r: &mut ByteReader, depth: usize) -> Result<Amf0Value> {
    if depth > MAX_DEPTH {
        return Err(MediaError::invalid(WHAT, "nested too deeply"));
    }
    let marker = r.u8()?;
    Ok(match marker {
        0 => Amf0Value::Number(r.f64()?),
        1 => Amf0Value::Boolean(r.u8()? != 0),
        2 => {
            let len = usize::from(r.u16()?);
            Amf0Value::String(decode_string(r, len)?)
        }
        3 => Amf0Value::Object(decode_properties(r, depth)?),
        5 | 6 | 13 => Amf0Value::Null,
        7 => {
            r.u16()?; // reference index: not resolved
            Amf0Value::Null
        }
        8 => {
            r.u32()?; // associative count: advisory only
            Amf0Value::Object(decode_properties(r, depth)?)
        }
        10 => {
            let count = r.u32()? as usize;
            // Each element takes at least one byte: a count beyond the data is a lie.
            if count > r.remaining() {
                return Err(MediaError::Truncated {
                    what: WHAT,
                    needed: count - r.remaining(),
                });
            }
            let mut items = Vec::with_capacity(count.min(1024));
            for _ in 0..count {
                items.push(decode_value(r, depth + 1)?);
            }
            Amf0Value::Array(items)
        }
        11 => {
            let ms = r.f64()?;
            r.u16()?; // time zone, unused
            Amf0Value::Date(ms)
        }
        12 | 15 => {
            let len = r.u32()? as usize;
            Amf0Value::String(decode_string(r, len)?)
        }
        16 => {
            let len = usize::from(r.u16()?);
            let _class = decode_string(r, len)?;
            Amf0Value::Object(decode_properties(r, depth)?)
        }
        other => {
            return Err(MediaError::invalid(
                WHAT,
                format!("unknown type marker {other}"),
            ));
        }
    })
}

/// Stream metadata from `onMetaData` (every field optional: encoders differ).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    /// Video width in pixels.
    pub width: Option<u32>,
    /// Video height in pixels.
    pub height: Option<u32>,
    /// Frames per second.
    pub frame_rate: Option<f64>,
    /// Video bitrate in kbit/s.
    pub video_bitrate_kbps: Option<f64>,
    /// Audio bitrate in kbit/s.
    pub audio_bitrate_kbps: Option<f64>,
    /// Audio sampling rate in Hz.
    pub audio_sample_rate: Option<f64>,
    /// `encoder` (e.g. `obs-output module (libobs version 30.0.0)`, `Lavf59.27.100`).
    pub encoder: Option<String>,
    /// `videocodecid` as sent (a number, or a FourCC string in enhanced RTMP).
    pub video_codec: Option<String>,
    /// `audiocodecid` as sent.
    pub audio_codec: Option<String>,
}

impl Metadata {
    /// Finds `onMetaData` in a script data message (FLV script tag or RTMP data message,
    /// which may be wrapped in `@setDataFrame`); `Ok(None)` for other script data.
    pub fn parse_script_data(data: Bytes) -> Result<Option<Metadata>> {
        let values = decode_all(data)?;
        let Some(pos) = values.iter().position(|v| v.as_str() == Some("onMetaData")) else {
            return Ok(None);
        };
        let Some(props) = values.get(pos + 1) else {
            return Ok(Some(Metadata::default()));
        };
        Ok(Some(Metadata::from_object(props)))
    }

    fn from_object(props: &Amf0Value) -> Metadata {
        let num = |k: &str| props.get(k).and_then(Amf0Value::as_f64);
        let dim = |k: &str| {
            num(k)
                .filter(|v| *v >= 1.0 && *v <= 16384.0)
                .map(|v| v as u32)
        };
        let positive = |k: &str| num(k).filter(|v| *v > 0.0 && *v < 1e7);
        let codec = |k: &str| match props.get(k) {
            Some(Amf0Value::Number(n)) => Some(format!("{n}")),
            Some(Amf0Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        Metadata {
            width: dim("width"),
            height: dim("height"),
            frame_rate: positive("framerate").or_else(|| positive("videoframerate")),
            video_bitrate_kbps: positive("videodatarate"),
            audio_bitrate_kbps: positive("audiodatarate"),
            audio_sample_rate: positive("audiosamplerate"),
            encoder: props
                .get("encoder")
                .and_then(Amf0Value::as_str)
                .map(str::to_owned),
            video_codec: codec("videocodecid"),
            audio_codec: codec("audiocodecid"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(s: &str) -> Vec<u8> {
        let mut v = vec![2];
        v.extend_from_slice(&(s.len() as u16).to_be_bytes());
        v.extend_from_slice(s.as_bytes());
        v
    }

    fn key(s: &str) -> Vec<u8> {
        string(s)[1..].to_vec()
    }

    #[test]
    fn parses_on_metadata_in_set_data_frame() {
        let mut d = string("@setDataFrame");
        d.extend(string("onMetaData"));
        d.push(8);
        d.extend_from_slice(&3u32.to_be_bytes());
        d.extend(key("width"));
        d.push(0);
        d.extend_from_slice(&1280f64.to_be_bytes());
        d.extend(key("framerate"));
        d.push(0);
        d.extend_from_slice(&29.97f64.to_be_bytes());
        d.extend(key("encoder"));
        d.extend(string("Lavf59.27.100"));
        d.extend(key("created"));
        d.push(11);
        d.extend_from_slice(&0f64.to_be_bytes());
        d.extend_from_slice(&[0, 0]);
        d.extend_from_slice(&[0, 0, 9]);
        let m = Metadata::parse_script_data(Bytes::from(d))
            .unwrap()
            .unwrap();
        assert_eq!(m.width, Some(1280));
        assert_eq!(m.frame_rate, Some(29.97));
        assert_eq!(m.encoder.as_deref(), Some("Lavf59.27.100"));
    }

    #[test]
    fn refuses_malformed_amf() {
        assert!(decode_all(Bytes::from_static(&[0, 1, 2])).is_err());
        assert!(decode_all(Bytes::from_static(&[42])).is_err());
        // A strict array claiming 4 billion elements.
        assert!(decode_all(Bytes::from_static(&[10, 0xff, 0xff, 0xff, 0xff, 5])).is_err());
        // Objects nested beyond MAX_DEPTH.
        let mut deep = Vec::new();
        for _ in 0..100 {
            deep.extend_from_slice(&[3, 0, 1, b'a']);
        }
        assert!(decode_all(Bytes::from(deep)).is_err());
    }
}
