//! Request bodies: size limit, content type, JSON object, and field-naming decode errors.
//!
//! Handlers take the raw [`Body`] and call [`read_object`] instead of axum's `Json`
//! extractor, so that every refusal has the API's error shape and status: `413` past the size
//! limit (whether or not the client sent `Content-Length`), `400` for a non-JSON content type,
//! malformed JSON or a body that is not an object, and `400` naming the field for a value of
//! the wrong type. An empty body is an empty object: the SDKs send none for calls such as
//! reset-stream-key.

use std::future::poll_fn;
use std::pin::Pin;

use axum::body::{Body, HttpBody};
use axum::http::{header, HeaderMap};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// A JSON object body.
pub(crate) type Object = Map<String, Value>;

/// Whether `Content-Type` (if any) is JSON: `application/json` or `application/*+json`, any
/// parameters (charset) allowed. A missing content type is taken as JSON.
fn is_json(headers: &HeaderMap) -> Result<bool, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(true);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::InvalidParameters("Content-Type is not valid text".to_owned()))?;
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    Ok(essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json")))
}

/// Reads at most `limit` bytes of `body`; `413` beyond.
pub(crate) async fn read_limited(
    headers: &HeaderMap,
    mut body: Body,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let too_large = ApiError::PayloadTooLarge { limit };
    // A declared length says it at once, before a byte is read.
    if let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        if length > limit as u64 {
            return Err(too_large);
        }
    }
    let mut data = Vec::new();
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|e| {
            ApiError::InvalidParameters(format!("could not read the request body: {e}"))
        })?;
        if let Ok(chunk) = frame.into_data() {
            if data.len() + chunk.len() > limit {
                return Err(too_large);
            }
            data.extend_from_slice(&chunk);
        }
    }
    Ok(data)
}

/// Reads a JSON object body (an empty body is `{}`).
pub(crate) async fn read_object(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Object, ApiError> {
    let data = read_limited(headers, body, limit).await?;
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(Object::new());
    }
    if !is_json(headers)? {
        return Err(ApiError::InvalidParameters(
            "Content-Type must be application/json".to_owned(),
        ));
    }
    match serde_json::from_slice::<Value>(&data) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ApiError::InvalidParameters(
            "the request body must be a JSON object".to_owned(),
        )),
        Err(e) => Err(ApiError::InvalidParameters(format!(
            "the request body is not valid JSON: {e}"
        ))),
    }
}

/// Decodes `object` into `T`; a value of the wrong type is reported with its field name and
/// what the field takes, in the API's words (never a Rust type name).
pub(crate) fn decode<T: DeserializeOwned>(object: Object) -> Result<T, ApiError> {
    match serde_json::from_value::<T>(Value::Object(object.clone())) {
        Ok(value) => Ok(value),
        Err(whole) => {
            // serde_json does not say which field failed; find it by decoding fields alone.
            for (key, value) in object {
                let single = Object::from_iter([(key.clone(), value.clone())]);
                if let Err(e) = serde_json::from_value::<T>(Value::Object(single)) {
                    return Err(field_error(&key, &value, &e.to_string()));
                }
            }
            Err(ApiError::InvalidParameters(format!(
                "invalid request body: {}",
                expectation(&whole.to_string())
            )))
        }
    }
}

/// Fields whose allowed values are more than their JSON type.
const FIELD_RANGES: &[(&str, &str)] = &[
    ("reconnect_window", "a number of seconds from 0 to 1800"),
    (
        "max_continuous_duration",
        "a whole number of seconds from 60 to 43200",
    ),
    (
        "playback_policy",
        "\"public\", \"signed\" or \"drm\", or an array of them",
    ),
    (
        "playback_policies",
        "an array of \"public\", \"signed\" or \"drm\"",
    ),
    (
        "meta",
        "an object of title, creator_id and external_id strings",
    ),
    (
        "embedded_subtitles",
        "an array of objects of name, passthrough, language_code and language_channel strings",
    ),
];

/// `400` for `field` holding `value`, which serde refused with `message`.
fn field_error(field: &str, value: &Value, message: &str) -> ApiError {
    if message.starts_with("unknown field") {
        return ApiError::InvalidParameters(format!("invalid {field}: {message}"));
    }
    if let Some((_, range)) = FIELD_RANGES.iter().find(|(name, _)| *name == field) {
        return ApiError::InvalidParameters(format!(
            "invalid {field}: must be {range}, got {}",
            json_kind(value)
        ));
    }
    let wanted = expectation(message);
    let container = matches!(value, Value::Array(_) | Value::Object(_));
    if container && wanted != "an array" && wanted != "an object" {
        // The array or object is right; something in it is not.
        return ApiError::InvalidParameters(format!(
            "invalid {field}: a value in it must be {wanted}"
        ));
    }
    ApiError::InvalidParameters(format!(
        "invalid {field}: must be {wanted}, got {}",
        json_kind(value)
    ))
}

/// What a serde message says was expected, in JSON terms.
fn expectation(message: &str) -> String {
    let expected = message
        .split_once("expected ")
        .map_or("", |(_, rest)| rest.trim());
    let expected = expected.split(" at line ").next().unwrap_or_default();
    let integer = [
        "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "usize",
    ];
    if integer.contains(&expected) {
        "a whole number".to_owned()
    } else if matches!(expected, "f32" | "f64") {
        "a number".to_owned()
    } else if expected == "a boolean" {
        "true or false".to_owned()
    } else if expected == "a sequence" {
        "an array".to_owned()
    } else if expected.starts_with("struct ") || expected == "a map" {
        "an object".to_owned()
    } else if expected == "a string" {
        "a string".to_owned()
    } else if message.contains("untagged enum") {
        "a string or an array of strings".to_owned()
    } else {
        "a value of another type".to_owned()
    }
}

/// `value`'s JSON type, with short values shown.
fn json_kind(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() <= 40 => format!("the string {s:?}"),
        Value::String(_) => "a string".to_owned(),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// Rewrites integral floats (`30.0`) in `fields` as integers. The hosted API types these
/// fields as JSON numbers and some SDKs (Python's models use `float`) send them with a
/// fraction; the store keeps whole seconds, so `30.5` is still refused, naming the field.
pub(crate) fn integral_floats(object: &mut Object, fields: &[&str]) {
    for field in fields {
        if let Some(Value::Number(n)) = object.get_mut(*field) {
            if n.is_f64() {
                let whole = n
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64);
                if let Some(whole) = whole {
                    *n = whole.into();
                }
            }
        }
    }
}

/// An optional string field of `object`; `400` naming it when it is not a string.
pub(crate) fn optional_string(object: &Object, field: &str) -> Result<Option<String>, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::InvalidParameters(format!(
            "invalid {field}: must be a string"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(content_type: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ct) = content_type {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        h
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .map(|rt| rt.block_on(f))
            .unwrap_or_else(|e| panic!("runtime: {e}"))
    }

    #[test]
    fn content_types() {
        assert!(is_json(&headers(None)).unwrap_or(false));
        assert!(is_json(&headers(Some("application/json"))).unwrap_or(false));
        assert!(is_json(&headers(Some("Application/JSON; charset=utf-8"))).unwrap_or(false));
        assert!(is_json(&headers(Some("application/merge-patch+json"))).unwrap_or(false));
        assert!(!is_json(&headers(Some("text/plain"))).unwrap_or(true));
        assert!(!is_json(&headers(Some("application/x-www-form-urlencoded"))).unwrap_or(true));
    }

    #[test]
    fn bodies() {
        let h = headers(Some("application/json"));
        let empty = run(read_object(&h, Body::from(""), 10));
        assert_eq!(empty, Ok(Object::new()));
        let ok = run(read_object(&h, Body::from(r#"{"a":1}"#), 100));
        assert_eq!(ok.map(|o| o.len()), Ok(1));
        let big = run(read_object(&h, Body::from(vec![b' '; 11]), 10));
        assert_eq!(big, Err(ApiError::PayloadTooLarge { limit: 10 }));
        for bad in ["[1]", "{", "null"] {
            let r = run(read_object(&h, Body::from(bad), 100));
            assert!(matches!(r, Err(ApiError::InvalidParameters(_))), "{bad}");
        }
        let text = run(read_object(
            &headers(Some("text/plain")),
            Body::from("{}"),
            100,
        ));
        assert!(matches!(text, Err(ApiError::InvalidParameters(_))));
    }

    #[test]
    fn integral_floats_become_integers() {
        let mut object = match serde_json::json!({ "a": 30.0, "b": 30.5, "c": 7, "d": 1.0 }) {
            Value::Object(o) => o,
            _ => Object::new(),
        };
        integral_floats(&mut object, &["a", "b", "c"]);
        assert_eq!(
            Value::Object(object),
            serde_json::json!({ "a": 30, "b": 30.5, "c": 7, "d": 1.0 })
        );
    }

    #[test]
    fn decode_names_the_field() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct P {
            #[serde(default)]
            a: Option<u32>,
            #[serde(default)]
            b: Option<String>,
        }
        let object = match serde_json::json!({ "a": 1, "b": 2 }) {
            Value::Object(o) => o,
            _ => Object::new(),
        };
        match decode::<P>(object) {
            Err(ApiError::InvalidParameters(m)) => {
                assert_eq!(m, "invalid b: must be a string, got the number 2")
            }
            other => panic!("{other:?}"),
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Nested {
            #[serde(default)]
            list: Vec<P>,
        }
        let object = match serde_json::json!({ "list": [{ "b": 1 }] }) {
            Value::Object(o) => o,
            _ => Object::new(),
        };
        match decode::<Nested>(object) {
            Err(ApiError::InvalidParameters(m)) => {
                assert_eq!(m, "invalid list: a value in it must be a string")
            }
            other => panic!("{other:?}"),
        }
        let object = match serde_json::json!({ "a": 0.5 }) {
            Value::Object(o) => o,
            _ => Object::new(),
        };
        match decode::<P>(object) {
            Err(ApiError::InvalidParameters(m)) => {
                assert_eq!(m, "invalid a: must be a whole number, got the number 0.5")
            }
            other => panic!("{other:?}"),
        }
    }
}
