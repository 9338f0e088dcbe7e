//! The request body extractor: JSON only, at most 64 KB, unknown fields refused, and
//! error messages that name the field but never echo a value (it may be a secret).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;

pub const MAX_BODY_BYTES: usize = 64 * 1024;

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

/// One JSON value, an object, with no array anywhere (none of our bodies has one), then the
/// fields `T` expects. serde's derived structs would take an array in place of an object
/// (its elements as the fields in order), and a plain deserializer stops reading after the
/// first value; both are refused here, each with the place named.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::InvalidArgument(format!(
            "the body must be one JSON value (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    if !value.is_object() {
        return Err(ApiError::InvalidArgument(
            "the body must be a JSON object".into(),
        ));
    }
    if let Some(path) = first_array(&value, "") {
        return Err(ApiError::InvalidArgument(format!(
            "{path}: must be a JSON object or a string, not an array"
        )));
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

/// The path of the first array in `value`, as serde_path_to_error writes paths.
fn first_array(value: &Value, path: &str) -> Option<String> {
    match value {
        Value::Array(_) => Some(path.to_owned()),
        Value::Object(fields) => fields.iter().find_map(|(name, field)| {
            let path = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            first_array(field, &path)
        }),
        _ => None,
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
        ];
        for (body, expected) in table {
            assert_eq!(message(body), expected, "{body}");
        }
        assert!(parse::<Body>(br#" {"inner":{"api_key":"k"}} "#).is_ok());
    }
}
