//! `event_filter`: which of a project's records are streamed.
//!
//! `{"actions": [..], "statuses": [..]}`, each list optional, non-empty when given and at most
//! [`MAX_FILTER_ENTRIES`] entries. A record is streamed when its `action` matches an entry of
//! `actions` (equal to it, or, for an entry ending in `*`, starting with the text before the
//! `*`) and its `status` equals an entry of `statuses`. A list that is absent does not filter;
//! a record without the field (or whose field is not a string) does not match a list that is
//! given. Matching is case-sensitive and on the unescaped text.
//!
//! Only `action` and `status` are read from a record, borrowed from its JSON; the rest of it is
//! skipped without being built into values.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::json_text::JsonText;
use crate::domain::ValidationError;

/// Enough for every action and status of the product, small enough that matching stays a
/// short scan per record.
pub const MAX_FILTER_ENTRIES: usize = 100;
/// The longest action name of the product is about 40 bytes; this leaves room for new ones.
pub const MAX_FILTER_ENTRY_LEN: usize = 256;

/// `event_filter` as it travels in JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventFilterBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statuses: Option<Vec<String>>,
}

/// An entry of `actions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionPattern {
    /// `PasswordsAuthenticate`: the action itself.
    Exact(String),
    /// `Passwords*`: every action starting with `Passwords`.
    Prefix(String),
}

impl ActionPattern {
    fn parse(entry: &str, field: String) -> Result<Self, ValidationError> {
        let text = check_entry(entry, &field)?;
        match text.strip_suffix('*') {
            Some(prefix) if prefix.contains('*') => Err(wildcard_inside(field)),
            Some(prefix) => Ok(Self::Prefix(prefix.to_owned())),
            None if text.contains('*') => Err(wildcard_inside(field)),
            None => Ok(Self::Exact(text.to_owned())),
        }
    }

    pub fn matches(&self, action: &str) -> bool {
        match self {
            Self::Exact(exact) => action == exact,
            Self::Prefix(prefix) => action.starts_with(prefix.as_str()),
        }
    }
}

impl fmt::Display for ActionPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(exact) => f.write_str(exact),
            Self::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

fn wildcard_inside(field: String) -> ValidationError {
    ValidationError::new(field, "may hold * only as its last character")
}

fn check_entry<'a>(entry: &'a str, field: &str) -> Result<&'a str, ValidationError> {
    if entry.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if entry.chars().count() > MAX_FILTER_ENTRY_LEN {
        return Err(ValidationError::new(
            field,
            format!("must be at most {MAX_FILTER_ENTRY_LEN} characters"),
        ));
    }
    Ok(entry)
}

/// A parsed `event_filter`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventFilter {
    actions: Option<Vec<ActionPattern>>,
    statuses: Option<Vec<String>>,
}

impl EventFilter {
    pub fn parse(body: &EventFilterBody) -> Result<Self, ValidationError> {
        let actions = parse_list("event_filter.actions", body.actions.as_deref(), |e, f| {
            ActionPattern::parse(e, f)
        })?;
        let statuses = parse_list("event_filter.statuses", body.statuses.as_deref(), |e, f| {
            check_entry(e, &f).map(str::to_owned)
        })?;
        Ok(Self { actions, statuses })
    }

    pub fn to_body(&self) -> EventFilterBody {
        EventFilterBody {
            actions: self
                .actions
                .as_ref()
                .map(|a| a.iter().map(ToString::to_string).collect()),
            statuses: self.statuses.clone(),
        }
    }

    /// Whether every record passes (both lists absent), so records need not be read.
    pub fn passes_all(&self) -> bool {
        self.actions.is_none() && self.statuses.is_none()
    }

    /// Whether a record with these fields is streamed; `None` is a field the record lacks.
    pub fn matches_fields(&self, action: Option<&str>, status: Option<&str>) -> bool {
        let action_ok = match (&self.actions, action) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(patterns), Some(action)) => patterns.iter().any(|p| p.matches(action)),
        };
        let status_ok = match (&self.statuses, status) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(statuses), Some(status)) => statuses.iter().any(|s| s == status),
        };
        action_ok && status_ok
    }

    /// Whether `record` (a JSON object) is streamed. A record that cannot be read as an object
    /// has neither field.
    pub fn matches(&self, record: &RawValue) -> bool {
        if self.passes_all() {
            return true;
        }
        let fields = serde_json::from_str::<FilterFields>(record.get()).unwrap_or_default();
        self.matches_fields(fields.action.as_deref(), fields.status.as_deref())
    }
}

fn parse_list<T>(
    field: &str,
    entries: Option<&[String]>,
    parse: impl Fn(&str, String) -> Result<T, ValidationError>,
) -> Result<Option<Vec<T>>, ValidationError> {
    let Some(entries) = entries else {
        return Ok(None);
    };
    if entries.is_empty() {
        return Err(ValidationError::new(
            field,
            "must not be empty: leave it out to stream every value",
        ));
    }
    if entries.len() > MAX_FILTER_ENTRIES {
        return Err(ValidationError::new(
            field,
            format!("must hold at most {MAX_FILTER_ENTRIES} entries"),
        ));
    }
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| parse(entry, format!("{field}[{i}]")))
        .collect::<Result<Vec<T>, _>>()
        .map(Some)
}

/// The two fields a filter reads. Written by hand rather than derived so that a duplicate key
/// is not an error (the last one wins, as in most JSON readers) and a field that is not a
/// string reads as absent instead of failing the record.
#[derive(Default)]
struct FilterFields<'a> {
    action: Option<Cow<'a, str>>,
    status: Option<Cow<'a, str>>,
}

impl<'de> Deserialize<'de> for FilterFields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FilterFieldsVisitor)
    }
}

struct FilterFieldsVisitor;

impl<'de> Visitor<'de> for FilterFieldsVisitor {
    type Value = FilterFields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = FilterFields::default();
        while let Some(JsonText(key)) = map.next_key()? {
            match key.as_ref() {
                "action" => fields.action = map.next_value::<StringOrNone>()?.0,
                "status" => fields.status = map.next_value::<StringOrNone>()?.0,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(fields)
    }
}

/// A string, borrowed when it has no escapes; any other value reads as `None`.
struct StringOrNone<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for StringOrNone<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StringOrNoneVisitor)
    }
}

struct StringOrNoneVisitor;

impl<'de> Visitor<'de> for StringOrNoneVisitor {
    type Value = StringOrNone<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(StringOrNone(Some(Cow::Borrowed(v))))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(StringOrNone(Some(Cow::Owned(v.to_owned()))))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(StringOrNone(Some(Cow::Owned(v))))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(StringOrNone(None))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(StringOrNone(None))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(StringOrNone(None))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(StringOrNone(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(StringOrNone(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(StringOrNone(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(StringOrNone(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(actions: Option<&[&str]>, statuses: Option<&[&str]>) -> EventFilter {
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        EventFilter::parse(&EventFilterBody {
            actions: actions.map(list),
            statuses: statuses.map(list),
        })
        .unwrap()
    }

    fn raw(json: &str) -> &RawValue {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn records_are_streamed_as_the_table_says() {
        let passwords = filter(Some(&["Passwords*", "OAuthAuthenticate"]), None);
        let errors = filter(None, Some(&["error", "failure"]));
        let both = filter(Some(&["Passwords*"]), Some(&["success"]));
        let everything = filter(None, None);
        let any_action = filter(Some(&["*"]), None);
        for (filter, record, streamed) in [
            (&passwords, r#"{"action":"OAuthAuthenticate"}"#, true),
            (&passwords, r#"{"action":"OAuthAuthenticateX"}"#, false),
            (&passwords, r#"{"action":"oauthauthenticate"}"#, false),
            (&passwords, r#"{"action":"PasswordsAuthenticate"}"#, true),
            (&passwords, r#"{"action":"Passwords"}"#, true),
            (&passwords, r#"{"action":"Password"}"#, false),
            (&passwords, r#"{"status":"success"}"#, false),
            (&passwords, r#"{"action":null}"#, false),
            (&passwords, r#"{"action":["PasswordsAuthenticate"]}"#, false),
            (&passwords, r#"{"action":"Passw\u006frdsReset"}"#, true),
            (
                &passwords,
                r#"{"action":"X","action":"PasswordsReset"}"#,
                true,
            ),
            (&errors, r#"{"action":"A","status":"error"}"#, true),
            (&errors, r#"{"status":"success"}"#, false),
            (&errors, r#"{"action":"A"}"#, false),
            (&errors, r#"{"status":{"code":"error"}}"#, false),
            (
                &both,
                r#"{"action":"PasswordsReset","status":"success"}"#,
                true,
            ),
            (
                &both,
                r#"{"action":"PasswordsReset","status":"error"}"#,
                false,
            ),
            (&both, r#"{"action":"OAuth","status":"success"}"#, false),
            (&everything, r#"{}"#, true),
            (&everything, r#"{"action":"Anything","status":"any"}"#, true),
            (&any_action, r#"{"action":""}"#, true),
            (&any_action, r#"{"status":"success"}"#, false),
        ] {
            assert_eq!(filter.matches(raw(record)), streamed, "{filter:?} {record}");
        }
    }

    #[test]
    fn filtering_reads_past_nested_values_of_other_fields() {
        let record = r#"{"a":{"action":"x","b":[1,{"status":"y"}]},"action":"Login","n":1.5e3,"status":"start"}"#;
        assert!(filter(Some(&["Login"]), Some(&["start"])).matches(raw(record)));
        assert!(!filter(Some(&["x"]), None).matches(raw(record)));
    }

    #[test]
    fn lists_that_are_empty_too_long_or_hold_bad_entries_are_refused_by_path() {
        let long = "a".repeat(MAX_FILTER_ENTRY_LEN + 1);
        let too_many: Vec<String> = (0..=MAX_FILTER_ENTRIES).map(|i| format!("A{i}")).collect();
        let at_most: Vec<String> = too_many[..MAX_FILTER_ENTRIES].to_vec();
        let body = |actions: Option<Vec<String>>, statuses: Option<Vec<String>>| EventFilterBody {
            actions,
            statuses,
        };
        let strings = |l: &[&str]| Some(l.iter().map(|s| s.to_string()).collect());
        for (body, field) in [
            (body(Some(vec![]), None), "event_filter.actions"),
            (body(None, Some(vec![])), "event_filter.statuses"),
            (body(Some(too_many.clone()), None), "event_filter.actions"),
            (body(None, Some(too_many)), "event_filter.statuses"),
            (
                body(strings(&["A", "B", "C", ""]), None),
                "event_filter.actions[3]",
            ),
            (
                body(strings(&["Pass*words"]), None),
                "event_filter.actions[0]",
            ),
            (body(strings(&["Pass**"]), None), "event_filter.actions[0]"),
            (
                body(None, strings(&["ok", &long])),
                "event_filter.statuses[1]",
            ),
        ] {
            assert_eq!(EventFilter::parse(&body).unwrap_err().field, field);
        }
        assert!(EventFilter::parse(&body(Some(at_most), None)).is_ok());
    }

    #[test]
    fn a_filter_returns_to_the_body_it_came_from() {
        let json = r#"{"actions":["Passwords*","OAuthAuthenticate"],"statuses":["error"]}"#;
        let body: EventFilterBody = serde_json::from_str(json).unwrap();
        let filter = EventFilter::parse(&body).unwrap();
        assert_eq!(serde_json::to_string(&filter.to_body()).unwrap(), json);
        assert!(serde_json::from_str::<EventFilterBody>(r#"{"action":["A"]}"#).is_err());
    }
}
