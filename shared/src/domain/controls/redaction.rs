//! `redaction`: which fields of a record are hidden before it leaves, and how.
//!
//! `{"fields": [..], "mode": "MASK" | "HASH" | "REMOVE"}`, at most [`MAX_REDACTED_FIELDS`]
//! fields. A field is a top-level member name or a dot path into nested objects
//! (`telemetry.ip_address`); a path does not index into arrays, and a member name that itself
//! holds a `.` cannot be named. A path that lies under another one (`telemetry` and
//! `telemetry.ip_address`) adds nothing: the shorter one covers the whole value.
//!
//! How a record is rewritten is [`super::Redactor`]'s part.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::ValidationError;

/// The issue's bound: enough for the personal data an auth event carries, few enough that
/// looking a member up stays a short scan.
pub const MAX_REDACTED_FIELDS: usize = 20;
/// No member of an event is nested this deep; bounds the work one path can ask for.
pub const MAX_FIELD_PATH_DEPTH: usize = 8;
/// Characters of a whole path, dots included.
pub const MAX_FIELD_PATH_LEN: usize = 256;
/// What `MASK` puts in place of a value (as a JSON string).
pub const MASK: &str = "[REDACTED]";

/// `redaction` as it travels in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactionBody {
    pub fields: Vec<String>,
    pub mode: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RedactionMode {
    /// The value becomes the string [`MASK`].
    Mask,
    /// The value becomes the string `hmac-sha256:<hex>` under the project's key.
    Hash,
    /// The member is removed, with its separating comma.
    Remove,
}

impl RedactionMode {
    pub const ALL: [RedactionMode; 3] = [Self::Mask, Self::Hash, Self::Remove];

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::ALL
            .into_iter()
            .find(|mode| mode.as_str() == value)
            .ok_or_else(|| ValidationError::new("redaction.mode", "must be MASK, HASH or REMOVE"))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mask => "MASK",
            Self::Hash => "HASH",
            Self::Remove => "REMOVE",
        }
    }
}

impl fmt::Display for RedactionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A field to redact: member names from the record's top level down.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath(Vec<String>);

impl FieldPath {
    /// `field` names the value in the error (`redaction.fields[2]`); the value is not quoted.
    pub fn parse(text: &str, field: &str) -> Result<Self, ValidationError> {
        if text.is_empty() {
            return Err(ValidationError::new(field, "must not be empty"));
        }
        if text.chars().count() > MAX_FIELD_PATH_LEN {
            return Err(ValidationError::new(
                field,
                format!("must be at most {MAX_FIELD_PATH_LEN} characters"),
            ));
        }
        let segments: Vec<String> = text.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err(ValidationError::new(
                field,
                "must be member names joined by single dots (telemetry.ip_address)",
            ));
        }
        if segments.len() > MAX_FIELD_PATH_DEPTH {
            return Err(ValidationError::new(
                field,
                format!("must be at most {MAX_FIELD_PATH_DEPTH} names deep"),
            ));
        }
        Ok(Self(segments))
    }

    pub fn segments(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// A parsed `redaction`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    fields: Vec<FieldPath>,
    mode: RedactionMode,
    tree: FieldTree,
}

impl Redaction {
    pub fn parse(body: &RedactionBody) -> Result<Self, ValidationError> {
        let mode = RedactionMode::parse(&body.mode)?;
        if body.fields.is_empty() {
            return Err(ValidationError::new(
                "redaction.fields",
                "must not be empty",
            ));
        }
        if body.fields.len() > MAX_REDACTED_FIELDS {
            return Err(ValidationError::new(
                "redaction.fields",
                format!("must hold at most {MAX_REDACTED_FIELDS} fields"),
            ));
        }
        let mut fields: Vec<FieldPath> = Vec::with_capacity(body.fields.len());
        for (i, text) in body.fields.iter().enumerate() {
            let field = format!("redaction.fields[{i}]");
            let path = FieldPath::parse(text, &field)?;
            if let Some(first) = fields.iter().position(|earlier| *earlier == path) {
                return Err(ValidationError::new(
                    field,
                    format!("repeats redaction.fields[{first}]"),
                ));
            }
            fields.push(path);
        }
        let mut tree = FieldTree::default();
        fields.iter().for_each(|path| tree.insert(path.segments()));
        Ok(Self { fields, mode, tree })
    }

    pub fn fields(&self) -> &[FieldPath] {
        &self.fields
    }

    pub fn mode(&self) -> RedactionMode {
        self.mode
    }

    pub fn to_body(&self) -> RedactionBody {
        RedactionBody {
            fields: self.fields.iter().map(ToString::to_string).collect(),
            mode: self.mode.as_str().to_owned(),
        }
    }

    pub(super) fn tree(&self) -> &FieldTree {
        &self.tree
    }
}

/// The fields of a redaction as a tree of member names, so that a record is walked once
/// however many paths share a prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct FieldTree(Vec<(String, FieldNode)>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FieldNode {
    /// The member's whole value is redacted.
    Whole,
    /// Members of the value, when it is an object.
    Members(FieldTree),
}

impl FieldTree {
    fn insert(&mut self, segments: &[String]) {
        let Some((name, rest)) = segments.split_first() else {
            return;
        };
        let position = self.0.iter().position(|(n, _)| n == name);
        match (position, rest.is_empty()) {
            (None, true) => self.0.push((name.clone(), FieldNode::Whole)),
            (None, false) => {
                let mut below = FieldTree::default();
                below.insert(rest);
                self.0.push((name.clone(), FieldNode::Members(below)));
            }
            (Some(i), true) => self.0[i].1 = FieldNode::Whole,
            (Some(i), false) => match &mut self.0[i].1 {
                FieldNode::Whole => {}
                FieldNode::Members(below) => below.insert(rest),
            },
        }
    }

    pub(super) fn get(&self, name: &str) -> Option<&FieldNode> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, node)| node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(fields: &[&str], mode: &str) -> RedactionBody {
        RedactionBody {
            fields: fields.iter().map(|s| s.to_string()).collect(),
            mode: mode.into(),
        }
    }

    #[test]
    fn bad_redactions_are_refused_by_path_without_quoting_the_field() {
        let deep = ["a"; MAX_FIELD_PATH_DEPTH + 1].join(".");
        let long = "a".repeat(MAX_FIELD_PATH_LEN + 1);
        let many: Vec<String> = (0..=MAX_REDACTED_FIELDS).map(|i| format!("f{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        for (fields, mode, field) in [
            (&["email"][..], "mask", "redaction.mode"),
            (&["email"], "", "redaction.mode"),
            (&[], "MASK", "redaction.fields"),
            (&many, "MASK", "redaction.fields"),
            (&[""], "MASK", "redaction.fields[0]"),
            (&["ok", ".email"], "MASK", "redaction.fields[1]"),
            (&["email."], "HASH", "redaction.fields[0]"),
            (&["a..b"], "HASH", "redaction.fields[0]"),
            (&[&deep], "REMOVE", "redaction.fields[0]"),
            (&[&long], "REMOVE", "redaction.fields[0]"),
            (&["email", "phone", "email"], "MASK", "redaction.fields[2]"),
        ] {
            let err = Redaction::parse(&body(fields, mode)).unwrap_err();
            assert_eq!(err.field, field, "{fields:?} {mode}");
            if let Some(last) = fields.last().filter(|f| f.len() > 3) {
                assert!(!err.message.contains(last), "{err}");
            }
        }
        let at_most = &many[..MAX_REDACTED_FIELDS];
        assert!(Redaction::parse(&body(at_most, "MASK")).is_ok());
    }

    #[test]
    fn a_redaction_returns_to_the_body_it_came_from() {
        let json = r#"{"fields":["email","telemetry.ip_address"],"mode":"HASH"}"#;
        let body: RedactionBody = serde_json::from_str(json).unwrap();
        let redaction = Redaction::parse(&body).unwrap();
        assert_eq!(redaction.mode(), RedactionMode::Hash);
        assert_eq!(
            redaction.fields()[1].segments(),
            ["telemetry", "ip_address"]
        );
        assert_eq!(serde_json::to_string(&redaction.to_body()).unwrap(), json);
        let unknown = r#"{"fields":["email"],"mode":"MASK","salt":"x"}"#;
        assert!(serde_json::from_str::<RedactionBody>(unknown).is_err());
    }

    #[test]
    fn a_shorter_path_covers_the_longer_ones_under_it() {
        let tree = |fields: &[&str]| Redaction::parse(&body(fields, "MASK")).unwrap().tree;
        let covered = tree(&["user.email", "user", "user.phone"]);
        assert_eq!(covered.get("user"), Some(&FieldNode::Whole));
        let shared = tree(&["user.email", "user.phone", "ip"]);
        let Some(FieldNode::Members(user)) = shared.get("user") else {
            panic!("user holds members");
        };
        assert_eq!(user.get("email"), Some(&FieldNode::Whole));
        assert_eq!(user.get("phone"), Some(&FieldNode::Whole));
        assert_eq!(shared.get("ip"), Some(&FieldNode::Whole));
    }
}
