//! The request body extractor: JSON only, at most 64 KB, unknown fields refused, and
//! error messages that name the field but never echo a value (it may be a secret).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;

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

pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = if inner.is_syntax() || inner.is_eof() {
            format!(
                "the body is not valid JSON (line {}, column {})",
                inner.line(),
                inner.column()
            )
        } else {
            // serde's data errors read "invalid type: string \"…\", expected …": keep only
            // what was expected, never what was sent.
            let text = inner.to_string();
            let text = text.split(" at line ").next().unwrap_or_default();
            let reason = match text.split_once(", expected ") {
                Some((found, expected)) if found.starts_with("invalid") => {
                    format!("expected {expected}")
                }
                _ => text.to_owned(),
            };
            if path == "." {
                reason
            } else {
                format!("{path}: {reason}")
            }
        };
        ApiError::InvalidArgument(message)
    })
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
        assert!(m.starts_with("the body is not valid JSON"), "{m}");
    }
}
