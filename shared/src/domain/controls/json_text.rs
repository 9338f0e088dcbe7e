//! A JSON string read without copying when it can be: borrowed from the record when it holds
//! no escapes, unescaped into an owned string when it does.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// serde's own `Cow<str>` always copies; this one borrows from serde_json's input.
pub(super) struct JsonText<'a>(pub(super) Cow<'a, str>);

impl<'de> Deserialize<'de> for JsonText<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(JsonTextVisitor)
    }
}

struct JsonTextVisitor;

impl<'de> Visitor<'de> for JsonTextVisitor {
    type Value = JsonText<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(JsonText(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(JsonText(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(JsonText(Cow::Owned(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_borrowed_unless_it_holds_escapes() {
        let plain: JsonText = serde_json::from_str(r#""ip_address""#).unwrap();
        assert!(matches!(plain.0, Cow::Borrowed("ip_address")));
        let escaped: JsonText = serde_json::from_str(r#""ip\u005faddress""#).unwrap();
        assert!(matches!(escaped.0, Cow::Owned(ref s) if s == "ip_address"));
    }
}
