//! RTMP command messages (`connect`, `publish`, ...): read with the media crate's tolerant,
//! bounded AMF0 decoder and written back with a small encoder.
//!
//! rml_rtmp 0.8 decodes commands with rml_amf0, which has no Date, Long String or Reference,
//! and panics on a command of fewer than three values. Commands are therefore decoded here,
//! normalised (see [`Command::normalise`]) and re-encoded with only the AMF0 types rml_amf0
//! reads before the adapter hands them to rml_rtmp.

use bytes::{BufMut, Bytes, BytesMut};
use media::amf0::{self, Amf0Value};

use crate::chunk::message_type;
use crate::error::ProtocolError;

/// AMF0 type markers written by [`encode_values`].
mod marker {
    pub const NUMBER: u8 = 0;
    pub const BOOLEAN: u8 = 1;
    pub const STRING: u8 = 2;
    pub const OBJECT: u8 = 3;
    pub const NULL: u8 = 5;
    pub const OBJECT_END: u8 = 9;
    pub const STRICT_ARRAY: u8 = 10;
}

/// One command: its name, transaction id, command object and further arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// `connect`, `createStream`, `publish`, `FCPublish`, ...
    pub name: String,
    /// The transaction id the reply must carry.
    pub transaction_id: f64,
    /// The command object (properties for `connect`, null for most others).
    pub object: Amf0Value,
    /// The arguments after the command object.
    pub args: Vec<Amf0Value>,
}

impl Command {
    /// Decodes a command message body (type 20, or type 17 with its AMF3 envelope byte).
    pub fn decode(type_id: u8, payload: Bytes) -> Result<Command, ProtocolError> {
        let payload = if type_id == message_type::COMMAND_AMF3 && payload.first() == Some(&0) {
            payload.slice(1..)
        } else {
            payload
        };
        let mut values = amf0::decode_all(payload)
            .map_err(|e| ProtocolError::MalformedCommand(e.to_string()))?
            .into_iter();
        let name = match values.next() {
            Some(Amf0Value::String(name)) => name,
            _ => {
                return Err(ProtocolError::MalformedCommand(
                    "command name is not a string".into(),
                ))
            }
        };
        let transaction_id = match values.next() {
            Some(Amf0Value::Number(n)) if n.is_finite() => n,
            _ => 0.0,
        };
        let object = values.next().unwrap_or(Amf0Value::Null);
        Ok(Command {
            name,
            transaction_id,
            object,
            args: values.collect(),
        })
    }

    /// Encodes the command as an AMF0 command message body.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        encode_string(&mut out, &self.name);
        out.put_u8(marker::NUMBER);
        out.put_f64(self.transaction_id);
        encode_value(&mut out, &self.object, 0);
        for v in &self.args {
            encode_value(&mut out, v, 0);
        }
        out.freeze()
    }

    /// The string argument at `index`, if there is one.
    pub fn arg_str(&self, index: usize) -> Option<&str> {
        self.args.get(index).and_then(Amf0Value::as_str)
    }

    /// Rewrites what real encoders send into what rml_rtmp's command session accepts:
    /// - `publish`: the publishing type (`live`, `record`, `append`) compared without case
    ///   (Wirecast and some hardware encoders send `LIVE`; rml_rtmp refuses anything but
    ///   lower case) and defaulted to `live` when missing or unknown;
    /// - `connect`: `objectEncoding` forced to 0, so the reply never invites AMF3.
    ///
    /// Date, Long String and Reference values were already read by the decoder; the encoder
    /// writes them as Number, String and Null.
    pub fn normalise(&mut self) {
        match self.name.as_str() {
            "publish" => {
                if self.args.is_empty() {
                    self.args.push(Amf0Value::String(String::new()));
                }
                let kind = self
                    .args
                    .get(1)
                    .and_then(Amf0Value::as_str)
                    .map(str::to_ascii_lowercase)
                    .filter(|k| matches!(k.as_str(), "live" | "record" | "append"))
                    .unwrap_or_else(|| "live".to_owned());
                self.args.truncate(1);
                self.args.push(Amf0Value::String(kind));
            }
            "connect" => {
                if let Amf0Value::Object(props) = &mut self.object {
                    for (key, value) in props.iter_mut() {
                        if key == "objectEncoding" {
                            *value = Amf0Value::Number(0.0);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Builds a status object (`level`, `code`, `description`) as `onStatus` carries it.
pub fn status_object(level: &str, code: &str, description: &str) -> Amf0Value {
    Amf0Value::Object(vec![
        ("level".into(), Amf0Value::String(level.into())),
        ("code".into(), Amf0Value::String(code.into())),
        ("description".into(), Amf0Value::String(description.into())),
    ])
}

fn encode_string(out: &mut BytesMut, s: &str) {
    match u16::try_from(s.len()) {
        Ok(len) => {
            out.put_u8(marker::STRING);
            out.put_u16(len);
            out.put_slice(s.as_bytes());
        }
        // Longer than a short string: written as null (rml_rtmp cannot read long strings, and
        // no field OnAir or an encoder cares about is that long).
        Err(_) => out.put_u8(marker::NULL),
    }
}

fn encode_value(out: &mut BytesMut, value: &Amf0Value, depth: usize) {
    // The decoder bounds nesting; this bound keeps the encoder total on any input.
    if depth > amf0::MAX_DEPTH {
        out.put_u8(marker::NULL);
        return;
    }
    match value {
        Amf0Value::Number(n) | Amf0Value::Date(n) => {
            out.put_u8(marker::NUMBER);
            out.put_f64(*n);
        }
        Amf0Value::Boolean(b) => {
            out.put_u8(marker::BOOLEAN);
            out.put_u8(u8::from(*b));
        }
        Amf0Value::String(s) => encode_string(out, s),
        Amf0Value::Object(props) => {
            out.put_u8(marker::OBJECT);
            for (key, v) in props {
                let Ok(len) = u16::try_from(key.len()) else {
                    continue;
                };
                if len == 0 {
                    continue;
                }
                out.put_u16(len);
                out.put_slice(key.as_bytes());
                encode_value(out, v, depth + 1);
            }
            out.put_u16(0);
            out.put_u8(marker::OBJECT_END);
        }
        Amf0Value::Array(items) => {
            out.put_u8(marker::STRICT_ARRAY);
            out.put_u32(u32::try_from(items.len()).unwrap_or(0));
            for v in items.iter().take(u32::MAX as usize) {
                encode_value(out, v, depth + 1);
            }
        }
        Amf0Value::Null => out.put_u8(marker::NULL),
    }
}

/// Encodes values as an AMF0 sequence (for data messages and replies).
pub fn encode_values(values: &[Amf0Value]) -> Bytes {
    let mut out = BytesMut::new();
    for v in values {
        encode_value(&mut out, v, 0);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn amf_string(s: &str) -> Vec<u8> {
        let mut v = vec![2];
        v.extend_from_slice(&(s.len() as u16).to_be_bytes());
        v.extend_from_slice(s.as_bytes());
        v
    }

    #[test]
    fn decodes_dates_long_strings_and_references() {
        let mut body = amf_string("connect");
        body.push(0);
        body.extend_from_slice(&1f64.to_be_bytes());
        body.push(3);
        body.extend_from_slice(&3u16.to_be_bytes());
        body.extend_from_slice(b"app");
        body.push(12); // long string
        body.extend_from_slice(&3u32.to_be_bytes());
        body.extend_from_slice(b"app");
        body.extend_from_slice(&4u16.to_be_bytes());
        body.extend_from_slice(b"when");
        body.push(11); // date
        body.extend_from_slice(&1.7e12f64.to_be_bytes());
        body.extend_from_slice(&0u16.to_be_bytes());
        body.extend_from_slice(&3u16.to_be_bytes());
        body.extend_from_slice(b"ref");
        body.push(7); // reference
        body.extend_from_slice(&0u16.to_be_bytes());
        body.extend_from_slice(&[0, 0, 9]);
        let command = Command::decode(20, Bytes::from(body)).unwrap();
        assert_eq!(command.name, "connect");
        assert_eq!(
            command.object.get("app").and_then(Amf0Value::as_str),
            Some("app")
        );

        // Re-encoded with only the types every reader knows.
        let again = Command::decode(20, command.encode()).unwrap();
        assert_eq!(again.object.get("when"), Some(&Amf0Value::Number(1.7e12)));
        assert_eq!(again.object.get("ref"), Some(&Amf0Value::Null));
    }

    #[test]
    fn short_commands_are_padded_and_garbage_refused() {
        let command = Command::decode(20, Bytes::from(amf_string("FCPublish"))).unwrap();
        assert_eq!(command.transaction_id, 0.0);
        assert_eq!(command.object, Amf0Value::Null);
        assert!(Command::decode(20, Bytes::from_static(&[0, 1, 2])).is_err());
        assert!(Command::decode(20, Bytes::from_static(&[2, 0, 9, b'x'])).is_err());
    }

    #[test]
    fn normalises_publish_type_and_object_encoding() {
        let mut publish = Command {
            name: "publish".into(),
            transaction_id: 5.0,
            object: Amf0Value::Null,
            args: vec![
                Amf0Value::String("key".into()),
                Amf0Value::String("LIVE".into()),
            ],
        };
        publish.normalise();
        assert_eq!(publish.arg_str(1), Some("live"));
        let mut bare = Command {
            args: vec![Amf0Value::String("key".into())],
            ..publish.clone()
        };
        bare.normalise();
        assert_eq!(bare.arg_str(1), Some("live"));

        let mut connect = Command {
            name: "connect".into(),
            transaction_id: 1.0,
            object: Amf0Value::Object(vec![("objectEncoding".into(), Amf0Value::Number(3.0))]),
            args: vec![],
        };
        connect.normalise();
        assert_eq!(
            connect.object.get("objectEncoding"),
            Some(&Amf0Value::Number(0.0))
        );
    }
}
