//! The request body extractor: JSON only, at most 64 KB, one object, no field given twice,
//! arrays (of strings) only where a body has a list, unknown fields refused, and error
//! messages that name the field but never echo a value (it may be a secret).

use std::cell::RefCell;
use std::fmt;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::ApiError;

pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The fields whose value is a list of strings, by the last key of their path; an array
/// anywhere else is refused.
const LIST_FIELDS: [&str; 4] = ["actions", "statuses", "fields", "tags"];

pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|_| ApiError::PayloadTooLarge)?;
        parse(&bytes).map(ApiJson)
    }
}

/// One JSON value, an object, in which no field is given twice and arrays appear only as the
/// value of a list field ([`LIST_FIELDS`]), holding strings; then the fields `T` expects. Each
/// refusal names its place:
/// - a field given twice: serde_json keeps the last of two equal keys, so a body could show a
///   reviewer or a proxy one password and save another;
/// - any other array: serde's derived structs would take one in place of an object (its
///   elements as the fields in order);
/// - trailing data: a plain deserializer stops reading after the first value.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value = read_strict(bytes)?;
    if !value.is_object() {
        return Err(ApiError::InvalidArgument(
            "the body must be a JSON object".into(),
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        // serde's data errors read "invalid type: string \"…\", expected …": keep only what
        // was expected, never what was sent.
        let text = err.into_inner().to_string();
        let reason = match text.split_once(", expected ") {
            Some((found, expected)) if found.starts_with("invalid") => {
                format!("expected {expected}")
            }
            _ => text,
        };
        if path == "." {
            ApiError::InvalidArgument(reason)
        } else {
            ApiError::InvalidArgument(format!("{path}: {reason}"))
        }
    })
}

/// The body as one [`Value`], read by [`Strict`]. A refusal of ours is kept aside and
/// preferred to serde_json's error, whose text carries a position instead of the place.
fn read_strict(bytes: &[u8]) -> Result<Value, ApiError> {
    let refusal = RefCell::new(None);
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let read = Strict {
        path: String::new(),
        refusal: &refusal,
    }
    .deserialize(&mut reader)
    .and_then(|value| reader.end().map(|()| value));
    read.map_err(|e| {
        refusal.into_inner().map_or_else(
            || {
                ApiError::InvalidArgument(format!(
                    "the body must be one JSON value (line {}, column {})",
                    e.line(),
                    e.column()
                ))
            },
            ApiError::InvalidArgument,
        )
    })
}

/// Reads a JSON value as serde_json's own `Value` does, but refuses a key that repeats one
/// before it in the same object, and any array. Paths are written as serde_path_to_error
/// writes them (`destination_config.grafana_loki.password`).
struct Strict<'a> {
    path: String,
    refusal: &'a RefCell<Option<String>>,
}

impl Strict<'_> {
    fn refuse<E: de::Error>(&self, reason: &str) -> E {
        let place = if self.path.is_empty() {
            reason.to_owned()
        } else {
            format!("{}: {reason}", self.path)
        };
        *self.refusal.borrow_mut() = Some(place.clone());
        E::custom(place)
    }

    /// The element `index` (`[3]`) of this list.
    fn child_at(&self, index: &str) -> Self {
        Strict {
            path: format!("{}{index}", self.path),
            refusal: self.refusal,
        }
    }

    fn child(&self, key: &str) -> Self {
        Strict {
            path: if self.path.is_empty() {
                key.to_owned()
            } else {
                format!("{}.{key}", self.path)
            },
            refusal: self.refusal,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if self.path.is_empty() {
            return Err(self.refuse("the body must be a JSON object"));
        }
        let last_key = self.path.rsplit('.').next().unwrap_or_default();
        if !LIST_FIELDS.contains(&last_key) {
            return Err(self.refuse("must be a JSON object or a string, not an array"));
        }
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            if !item.is_string() {
                let place = format!("[{}]", items.len());
                return Err(self.child_at(&place).refuse("must be a string"));
            }
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let field = self.child(&key);
            if fields.contains_key(&key) {
                return Err(field.refuse("given more than once"));
            }
            let value = map.next_value_seed(field)?;
            fields.insert(key, value);
        }
        Ok(Value::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        inner: Inner,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        api_key: String,
    }

    fn message(json: &str) -> String {
        match parse::<Body>(json.as_bytes()) {
            Err(ApiError::InvalidArgument(message)) => message,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn messages_name_the_field_but_never_the_value() {
        let m = message(r#"{"inner":{"api_key":12345678901234}}"#);
        assert!(m.starts_with("inner.api_key: expected a string"), "{m}");
        assert!(!m.contains("12345678901234"));
        let m = message(r#"{"inner":"topsecretvalue"}"#);
        assert!(!m.contains("topsecretvalue"), "{m}");
        let m = message(r#"{"inner":{"api_key":"x","extra":1}}"#);
        assert!(m.starts_with("inner.extra: unknown field `extra`"), "{m}");
        let m = message(r#"{"inner":{}}"#);
        assert!(m.contains("missing field `api_key`"), "{m}");
        let m = message(r#"{"inner": "#);
        assert!(m.starts_with("the body must be one JSON value"), "{m}");
    }

    #[test]
    fn trailing_data_and_arrays_in_place_of_objects_are_refused_by_place() {
        let table = [
            (
                r#"{"inner":{"api_key":"k"}}xyz"#,
                "the body must be one JSON value (line 1, column 26)",
            ),
            (
                r#"{"inner":{"api_key":"k"}}{"inner":{"api_key":"k"}}"#,
                "the body must be one JSON value (line 1, column 26)",
            ),
            (r#"[{"api_key":"k"}]"#, "the body must be a JSON object"),
            ("[]", "the body must be a JSON object"),
            (
                r#"{"inner":["k"]}"#,
                "inner: must be a JSON object or a string, not an array",
            ),
            (
                r#"{"inner":{"api_key":["k"]}}"#,
                "inner.api_key: must be a JSON object or a string, not an array",
            ),
            (
                r#"{"inner":{"api_key":"k","tags":["a:1",{"x":1}]}}"#,
                "inner.tags[1]: must be a string",
            ),
            (
                r#"{"inner":{"api_key":"k","tags":[["a:1"]]}}"#,
                "inner.tags[0]: must be a string",
            ),
        ];
        for (body, expected) in table {
            assert_eq!(message(body), expected, "{body}");
        }
        assert!(parse::<Body>(br#" {"inner":{"api_key":"k"}} "#).is_ok());
        let lists = read_strict(br#"{"event_filter":{"actions":["A","B*"]},"tags":[]}"#);
        assert_eq!(
            lists.unwrap(),
            serde_json::json!({"event_filter":{"actions":["A","B*"]},"tags":[]})
        );
    }

    #[test]
    fn a_field_given_twice_is_refused_by_place_at_any_depth_without_either_value() {
        let table = [
            (
                r#"{"inner":{"api_key":"first-value","api_key":"second-value"}}"#,
                "inner.api_key: given more than once",
            ),
            (
                r#"{"inner":{"api_key":"k"},"inner":{"api_key":"k"}}"#,
                "inner: given more than once",
            ),
            (
                r#"{"inner":{"api_key":"k","deeper":{"a":1,"a":2}}}"#,
                "inner.deeper.a: given more than once",
            ),
        ];
        for (body, expected) in table {
            let m = message(body);
            assert_eq!(m, expected, "{body}");
            assert!(!m.contains("first-value") && !m.contains("second-value"));
        }
    }
}
