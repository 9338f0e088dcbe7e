//! `tags` of a Datadog destination: up to [`MAX_TAGS`] `key:value` tags sent with every log as
//! `ddtags`, beside the product's own `ddsource` and `service`, which they cannot change.
//!
//! Datadog's tag rules ("Getting started with tags", Define tags): a tag starts with a letter,
//! then holds letters and digits, `_`, `-`, `:`, `.` and `/`; it is at most [`MAX_TAG_LEN`]
//! characters, does not end with a colon, and Datadog lowercases it. The key is the text before
//! the first colon. Where Datadog would silently turn other characters into `_`, a tag here is
//! refused instead, and it is lowercased at parse so that what is stored and shown is what
//! Datadog will show. Letters and digits are ASCII ones: Datadog also takes other scripts, but
//! then the rule is Unicode's, which no pattern of the OpenAPI document can state, and tags are
//! for constants such as `team:identity`, never per-event data (each distinct tag is a
//! dimension Datadog indexes).

use crate::domain::ValidationError;

pub const MAX_TAGS: usize = 20;
/// Datadog's bound on a tag, in characters.
pub const MAX_TAG_LEN: usize = 200;
/// Keys the product sets (`ddsource`, `service`, the `project_id` tag) or Datadog assigns
/// (`host`).
pub const RESERVED_TAG_KEYS: [&str; 4] = ["source", "service", "host", "project_id"];

/// One `key:value` tag, lowercased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DatadogTag(String);

impl DatadogTag {
    /// `field` names the tag in the error (`tags[2]`); the tag is not quoted.
    pub fn parse(text: &str, field: &str) -> Result<Self, ValidationError> {
        let tag = text.to_ascii_lowercase();
        let Some((key, value)) = tag.split_once(':') else {
            return Err(ValidationError::new(field, "must be key:value"));
        };
        if key.is_empty() || value.is_empty() {
            return Err(ValidationError::new(
                field,
                "must be key:value with neither part empty",
            ));
        }
        if tag.ends_with(':') {
            return Err(ValidationError::new(field, "must not end with a colon"));
        }
        if !tag.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(ValidationError::new(field, "must start with a letter"));
        }
        if tag.len() > MAX_TAG_LEN {
            return Err(ValidationError::new(
                field,
                format!("must be at most {MAX_TAG_LEN} characters"),
            ));
        }
        let allowed =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.' | '/');
        if !tag.chars().all(allowed) {
            return Err(ValidationError::new(
                field,
                "may hold only the letters A-Z and a-z, digits and _ - : . / (Datadog's tag rules)",
            ));
        }
        if RESERVED_TAG_KEYS.contains(&key) {
            return Err(ValidationError::new(
                field,
                "must not use the key source, service, host or project_id: the product sets them",
            ));
        }
        Ok(Self(tag))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn key(&self) -> &str {
        self.0.split_once(':').map_or(&self.0, |(key, _)| key)
    }
}

/// Parsed `tags`, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatadogTags(Vec<DatadogTag>);

impl DatadogTags {
    pub fn parse(tags: &[String]) -> Result<Self, ValidationError> {
        if tags.len() > MAX_TAGS {
            return Err(ValidationError::new(
                "tags",
                format!("must hold at most {MAX_TAGS} tags"),
            ));
        }
        let mut parsed: Vec<DatadogTag> = Vec::with_capacity(tags.len());
        for (i, text) in tags.iter().enumerate() {
            let field = format!("tags[{i}]");
            let tag = DatadogTag::parse(text, &field)?;
            if let Some(first) = parsed.iter().position(|earlier| *earlier == tag) {
                return Err(ValidationError::new(
                    field,
                    format!("repeats tags[{first}] (Datadog lowercases tags)"),
                ));
            }
            parsed.push(tag);
        }
        Ok(Self(parsed))
    }

    pub fn iter(&self) -> impl Iterator<Item = &DatadogTag> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `ddtags` value: the tags joined by commas (no tag can hold one).
    pub fn ddtags(&self) -> String {
        let tags: Vec<&str> = self.0.iter().map(DatadogTag::as_str).collect();
        tags.join(",")
    }

    pub fn to_body(&self) -> Vec<String> {
        self.0.iter().map(|t| t.0.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_datadogs_rules() {
        let longest = format!("k:{}", "v".repeat(MAX_TAG_LEN - 2));
        let too_long = format!("k:{}", "v".repeat(MAX_TAG_LEN - 1));
        for (tag, parsed) in [
            ("team:identity", Some("team:identity")),
            ("Team:Identity", Some("team:identity")),
            ("env:staging:east", Some("env:staging:east")),
            ("path:/auth/v1.2_beta-3", Some("path:/auth/v1.2_beta-3")),
            ("équipe:sécurité", None),
            ("team:認証", None),
            (longest.as_str(), Some(longest.as_str())),
            (too_long.as_str(), None),
            ("team", None),
            (":identity", None),
            ("team:", None),
            ("team:a:", None),
            ("1team:x", None),
            ("_team:x", None),
            ("team:a b", None),
            ("team:a,b", None),
            ("team:a|b", None),
            ("team:a=b", None),
            ("source:web", None),
            ("Service:web", None),
            ("host:h1", None),
            ("project_id:p1", None),
            ("hostname:h1", Some("hostname:h1")),
        ] {
            let result = DatadogTag::parse(tag, "tags[0]");
            assert_eq!(
                result.as_ref().ok().map(DatadogTag::as_str),
                parsed,
                "{tag}"
            );
            if let Err(err) = result {
                assert_eq!(err.field, "tags[0]");
                assert!(!err.message.contains(tag), "{err}");
            }
        }
    }

    #[test]
    fn tags_are_counted_checked_in_place_and_joined_for_ddtags() {
        let strings = |tags: &[&str]| tags.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        let tags = DatadogTags::parse(&strings(&["team:identity", "env:prod"])).unwrap();
        assert_eq!(tags.ddtags(), "team:identity,env:prod");
        assert_eq!(
            tags.iter().map(DatadogTag::key).collect::<Vec<_>>(),
            ["team", "env"]
        );
        assert_eq!(tags.to_body(), strings(&["team:identity", "env:prod"]));
        let err = DatadogTags::parse(&strings(&["a:1", "b:2", "service:x"])).unwrap_err();
        assert_eq!(err.field, "tags[2]");
        let err = DatadogTags::parse(&strings(&["team:a", "Team:A"])).unwrap_err();
        assert_eq!(err.field, "tags[1]");
        let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}:v")).collect();
        assert!(DatadogTags::parse(&many[..MAX_TAGS]).is_ok());
        assert_eq!(DatadogTags::parse(&many).unwrap_err().field, "tags");
    }
}
