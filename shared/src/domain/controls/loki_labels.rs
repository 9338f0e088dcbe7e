//! `labels` of a Grafana Loki destination: up to [`MAX_LABELS`] stream labels added to the
//! product's own `source` and `service_name`.
//!
//! Names follow Loki's label name syntax, `[a-zA-Z_][a-zA-Z0-9_]*`, without the `__` prefix
//! Loki keeps for itself and without the product's [`RESERVED_LABEL_NAMES`]. Values are 1 to
//! [`MAX_LABEL_VALUE_CHARS`] printable characters (no control characters). A label becomes part
//! of every stream's identity, so a value should be a constant such as a team or an
//! environment, never per-event data.

use std::collections::BTreeMap;

use crate::domain::ValidationError;

/// Loki's default limit is 15 labels per stream (`max_label_names_per_series`); the product's
/// two and ten of the customer's stay under it.
pub const MAX_LABELS: usize = 10;
/// Far below Loki's default `max_label_value_length` (2048): labels are for short constants.
pub const MAX_LABEL_VALUE_CHARS: usize = 256;
/// Loki's default `max_label_name_length`.
pub const MAX_LABEL_NAME_LEN: usize = 1024;
/// The labels the product sets on every stream.
pub const RESERVED_LABEL_NAMES: [&str; 2] = ["source", "service_name"];

/// Parsed `labels`, in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LokiLabels(BTreeMap<String, String>);

impl LokiLabels {
    /// `labels` as JSON gives it: a JSON object of names to values.
    pub fn parse(labels: &BTreeMap<String, String>) -> Result<Self, ValidationError> {
        if labels.len() > MAX_LABELS {
            return Err(ValidationError::new(
                "labels",
                format!("must hold at most {MAX_LABELS} labels"),
            ));
        }
        for (name, value) in labels {
            if !is_label_name(name) {
                // A name that is not a name is not quoted: it could be anything.
                return Err(ValidationError::new(
                    "labels",
                    format!(
                        "label names must match [a-zA-Z_][a-zA-Z0-9_]* and be at most \
                         {MAX_LABEL_NAME_LEN} bytes"
                    ),
                ));
            }
            let field = format!("labels.{name}");
            if name.starts_with("__") {
                return Err(ValidationError::new(
                    field,
                    "must not start with __ (Loki reserves those names)",
                ));
            }
            if RESERVED_LABEL_NAMES.contains(&name.as_str()) {
                return Err(ValidationError::new(
                    field,
                    "is set by the product (source and service_name cannot be changed)",
                ));
            }
            let chars = value.chars().count();
            if chars == 0 || chars > MAX_LABEL_VALUE_CHARS {
                return Err(ValidationError::new(
                    field,
                    format!("must be 1 to {MAX_LABEL_VALUE_CHARS} characters"),
                ));
            }
            if value.chars().any(char::is_control) {
                return Err(ValidationError::new(
                    field,
                    "must hold printable characters only (no control characters)",
                ));
            }
        }
        Ok(Self(labels.clone()))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn to_body(&self) -> BTreeMap<String, String> {
        self.0.clone()
    }
}

fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= MAX_LABEL_NAME_LEN
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn labels_follow_lokis_rules_and_keep_the_products_own() {
        let longest = "v".repeat(MAX_LABEL_VALUE_CHARS);
        let too_long = "v".repeat(MAX_LABEL_VALUE_CHARS + 1);
        let wide = "é".repeat(MAX_LABEL_VALUE_CHARS);
        let long_name = "n".repeat(MAX_LABEL_NAME_LEN + 1);
        for (name, value, refused_at) in [
            ("team", "identity", None),
            ("_env", "prod eu-west-1", None),
            ("Team_2", "équipe ✓", None),
            ("team", longest.as_str(), None),
            ("team", wide.as_str(), None),
            ("team", too_long.as_str(), Some("labels.team")),
            ("team", "", Some("labels.team")),
            ("team", "line\nbreak", Some("labels.team")),
            ("team", "nul\u{0}", Some("labels.team")),
            ("__name__", "x", Some("labels.__name__")),
            ("__team", "x", Some("labels.__team")),
            ("source", "x", Some("labels.source")),
            ("service_name", "x", Some("labels.service_name")),
            ("2team", "x", Some("labels")),
            ("team-a", "x", Some("labels")),
            ("team.a", "x", Some("labels")),
            ("", "x", Some("labels")),
            ("équipe", "x", Some("labels")),
            (long_name.as_str(), "x", Some("labels")),
        ] {
            let parsed = LokiLabels::parse(&labels(&[(name, value)]));
            assert_eq!(
                parsed.err().map(|e| e.field),
                refused_at.map(String::from),
                "{name}"
            );
        }
    }

    #[test]
    fn at_most_ten_labels_and_errors_never_quote_a_value() {
        let names: Vec<String> = (0..=MAX_LABELS).map(|i| format!("l{i}")).collect();
        let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        assert!(LokiLabels::parse(&labels(&pairs[..MAX_LABELS])).is_ok());
        assert_eq!(
            LokiLabels::parse(&labels(&pairs)).unwrap_err().field,
            "labels"
        );
        let err = LokiLabels::parse(&labels(&[("team", "secret\u{7}value")])).unwrap_err();
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn labels_come_out_in_name_order() {
        let parsed = LokiLabels::parse(&labels(&[("team", "id"), ("env", "prod")])).unwrap();
        let pairs: Vec<(&str, &str)> = parsed.iter().collect();
        assert_eq!(pairs, [("env", "prod"), ("team", "id")]);
        assert_eq!(parsed.to_body(), labels(&[("env", "prod"), ("team", "id")]));
    }
}
