//! Applies a [`Redaction`] to a record, keeping every other byte as the producer wrote it.
//!
//! The record is read with serde_json: each object on a redacted path is read as its members'
//! keys and raw values ([`RawValue`] slices borrowed from the record). A raw value's position in
//! the record gives the byte range to replace, and the output is the record with those ranges
//! spliced. Nothing outside them changes: not key order, whitespace, number spelling or
//! escapes, so a resend is byte-identical and Loki still drops it as a duplicate.
//!
//! - `MASK`: the value becomes the JSON string `"[REDACTED]"`.
//! - `HASH`: the value becomes the JSON string `"hmac-sha256:<64 hex digits>"` of HMAC-SHA256
//!   under the project's key ([`RedactionKey`]) over: for a string, its unescaped text as UTF-8
//!   (`"a\u0062"` and `"ab"` hash alike); for any other value, its JSON text exactly as written
//!   (`1.50` and `1.5` differ; the number `42` and the string `"42"` hash alike, so an id sent
//!   either way still joins). A string that cannot be unescaped (a lone surrogate) is hashed
//!   as written, quotes included.
//! - `REMOVE`: the member goes, with the comma that separated it from a neighbour.
//!
//! A value of any type is redacted whole, objects and arrays included; a path does not go
//! into arrays. A record lacking a field is left alone there; a record with none of them is
//! returned borrowed, unchanged. Keys are compared unescaped; every member of a repeated key
//! is redacted.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::json_text::JsonText;
use super::redaction::{FieldNode, FieldTree};
use super::redaction_key::FieldHasher;
use super::{Redaction, RedactionKey, RedactionMode};

/// A project's redaction, ready for its records: built once per configuration, not per record.
#[derive(Clone)]
pub struct Redactor {
    tree: FieldTree,
    action: Action,
}

#[derive(Clone)]
enum Action {
    Mask,
    Hash(FieldHasher),
    Remove,
}

impl Redactor {
    /// The redactor of `redaction`; `None` when it hashes and there is no key to hash under.
    pub fn new(redaction: &Redaction, key: Option<&RedactionKey>) -> Option<Self> {
        let action = match redaction.mode() {
            RedactionMode::Mask => Action::Mask,
            RedactionMode::Hash => Action::Hash(key?.hasher()),
            RedactionMode::Remove => Action::Remove,
        };
        Some(Self {
            tree: redaction.tree().clone(),
            action,
        })
    }

    /// `record` (a JSON object) with the redaction applied; borrowed when nothing changed.
    /// Text that is not a JSON object is returned as it is: records are objects past the
    /// queue's edge.
    pub fn apply<'a>(&self, record: &'a str) -> Cow<'a, str> {
        let mut edits = Vec::new();
        self.collect(record, record, &self.tree, &mut edits);
        if edits.is_empty() {
            return Cow::Borrowed(record);
        }
        edits.sort_unstable_by_key(|edit| edit.range.start);
        let added: usize = edits.iter().map(|e| e.replacement.len()).sum();
        let mut out = String::with_capacity(record.len() + added);
        let mut copied = 0;
        for edit in &edits {
            out.push_str(&record[copied..edit.range.start]);
            out.push_str(&edit.replacement);
            copied = edit.range.end;
        }
        out.push_str(&record[copied..]);
        Cow::Owned(out)
    }

    /// Edits of the members of `object` (a slice of `record`) that `tree` names.
    fn collect(&self, record: &str, object: &str, tree: &FieldTree, edits: &mut Vec<Edit>) {
        let Ok(Members(members)) = serde_json::from_str::<Members>(object) else {
            return;
        };
        let mut removed = Vec::new();
        for (i, (key, value)) in members.iter().enumerate() {
            match tree.get(key) {
                Some(FieldNode::Members(below)) if value.get().starts_with('{') => {
                    self.collect(record, value.get(), below, edits);
                }
                None | Some(FieldNode::Members(_)) => {}
                Some(FieldNode::Whole) => match &self.action {
                    Action::Mask => edits.push(Edit {
                        range: span(record, value.get()),
                        replacement: Cow::Borrowed(MASK_JSON),
                    }),
                    Action::Hash(hasher) => edits.push(Edit {
                        range: span(record, value.get()),
                        replacement: Cow::Owned(hasher.json_hash(&hashed_bytes(value))),
                    }),
                    Action::Remove => removed.push(i),
                },
            }
        }
        if !removed.is_empty() {
            let values: Vec<Range<usize>> = members
                .iter()
                .map(|(_, value)| span(record, value.get()))
                .collect();
            let object_start = skip_whitespace(record.as_bytes(), span(record, object).start);
            removals(record, object_start, &values, &removed, edits);
        }
    }
}

/// [`super::MASK`] as a JSON string.
const MASK_JSON: &str = "\"[REDACTED]\"";

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.action {
            Action::Mask => "MASK",
            Action::Hash(_) => "HASH (key ***)",
            Action::Remove => "REMOVE",
        };
        f.debug_struct("Redactor")
            .field("tree", &self.tree)
            .field("mode", &mode)
            .finish()
    }
}

struct Edit {
    range: Range<usize>,
    replacement: Cow<'static, str>,
}

/// Where `part` (borrowed from `record`) lies in `record`.
fn span(record: &str, part: &str) -> Range<usize> {
    let start = (part.as_ptr() as usize) - (record.as_ptr() as usize);
    debug_assert!(start + part.len() <= record.len());
    start..start + part.len()
}

/// The bytes `HASH` hashes (see the module's contract).
fn hashed_bytes(value: &RawValue) -> Cow<'_, [u8]> {
    let text = value.get();
    let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) else {
        return Cow::Borrowed(text.as_bytes());
    };
    if !inner.contains('\\') {
        return Cow::Borrowed(inner.as_bytes());
    }
    match serde_json::from_str::<String>(text) {
        Ok(unescaped) => Cow::Owned(unescaped.into_bytes()),
        Err(_) => Cow::Borrowed(text.as_bytes()),
    }
}

/// Edits that remove the members at `removed` (ascending) of the object starting at
/// `object_start`, whose values lie at `values`, each with one separating comma.
///
/// The members before the first one kept go from the first key up to the kept member's key;
/// a member after it goes from the end of the value before it (taking the comma in front of
/// it) to the end of its own value. Only whitespace and one comma lie between a value and the
/// next key, so they are found by looking at bytes, never by reading JSON by hand.
fn removals(
    record: &str,
    object_start: usize,
    values: &[Range<usize>],
    removed: &[usize],
    edits: &mut Vec<Edit>,
) {
    let bytes = record.as_bytes();
    let first_key = skip_whitespace(bytes, object_start + 1);
    let key_of = |i: usize| {
        if i == 0 {
            return first_key;
        }
        let comma = skip_whitespace(bytes, values[i - 1].end);
        debug_assert_eq!(bytes[comma], b',');
        skip_whitespace(bytes, comma + 1)
    };
    let kept = (0..values.len()).find(|i| removed.binary_search(i).is_err());
    let remove = |range: Range<usize>| Edit {
        range,
        replacement: Cow::Borrowed(""),
    };
    match kept {
        None => edits.push(remove(first_key..values[values.len() - 1].end)),
        Some(kept) => {
            if kept > 0 {
                edits.push(remove(first_key..key_of(kept)));
            }
            edits.extend(
                removed
                    .iter()
                    .filter(|&&i| i > kept)
                    .map(|&i| remove(values[i - 1].end..values[i].end)),
            );
        }
    }
}

/// The first byte at or after `from` that is not JSON whitespace (RFC 8259 §2).
fn skip_whitespace(bytes: &[u8], from: usize) -> usize {
    from + bytes[from..]
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .count()
}

/// An object's members in order, keys unescaped (borrowed when they hold no escapes) and values
/// raw. Repeated keys are all kept.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MembersVisitor)
    }
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some(JsonText(key)) = map.next_key()? {
            members.push((key, map.next_value::<&'de RawValue>()?));
        }
        Ok(Members(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::controls::{MASK, RedactionBody};

    const KEY_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const KEY_B: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

    fn redactor(fields: &[&str], mode: &str, key: &str) -> Redactor {
        let redaction = Redaction::parse(&RedactionBody {
            fields: fields.iter().map(|s| s.to_string()).collect(),
            mode: mode.into(),
        })
        .unwrap();
        let key = RedactionKey::from_secret(&crate::Secret::new(key)).unwrap();
        Redactor::new(&redaction, Some(&key)).unwrap()
    }

    fn hash(value: &[u8], key: &str) -> String {
        let key = RedactionKey::from_secret(&crate::Secret::new(key)).unwrap();
        key.hasher().json_hash(value)
    }

    /// Applies and checks that the output is still one JSON object.
    fn apply(redactor: &Redactor, record: &str) -> String {
        let out = redactor.apply(record).into_owned();
        let parsed: serde_json::Value = serde_json::from_str(&out).expect(&out);
        assert!(parsed.is_object(), "{out}");
        out
    }

    #[test]
    fn mask_replaces_values_of_any_type_and_keeps_every_other_byte() {
        let mask = |fields: &[&str]| redactor(fields, "MASK", KEY_A);
        for (fields, record, expected) in [
            (
                &["email"][..],
                r#"{"email":"ada@example.com","n":1}"#,
                r#"{"email":"[REDACTED]","n":1}"#,
            ),
            (
                &["email"],
                "{ \"z\" : 1.50 ,\n  \"email\"\t:  \"a\\u0040b\"  , \"a\":[1 ,2] }",
                "{ \"z\" : 1.50 ,\n  \"email\"\t:  \"[REDACTED]\"  , \"a\":[1 ,2] }",
            ),
            (
                &["telemetry.ip_address"],
                r#"{"telemetry":{"ip_address":"203.0.113.9", "ua":"x"},"ip_address":"keep"}"#,
                r#"{"telemetry":{"ip_address":"[REDACTED]", "ua":"x"},"ip_address":"keep"}"#,
            ),
            (
                &["a.b.c"],
                r#"{"a":{"b":{"c":{"deep":true},"d":2}}}"#,
                r#"{"a":{"b":{"c":"[REDACTED]","d":2}}}"#,
            ),
            (
                &["n", "t", "f", "z", "o", "l"],
                r#"{"n":-1.5e3,"t":true,"f":false,"z":null,"o":{"x":1},"l":[1,"2"]}"#,
                r#"{"n":"[REDACTED]","t":"[REDACTED]","f":"[REDACTED]","z":"[REDACTED]","o":"[REDACTED]","l":"[REDACTED]"}"#,
            ),
            (
                &["ip\"addr", "é"],
                r#"{"ip\"addr":1,"\u00e9":"\"quoted\" \\ value","e":"é"}"#,
                r#"{"ip\"addr":"[REDACTED]","\u00e9":"[REDACTED]","e":"é"}"#,
            ),
            (
                &["dup"],
                r#"{"dup":1,"x":2,"dup":3}"#,
                r#"{"dup":"[REDACTED]","x":2,"dup":"[REDACTED]"}"#,
            ),
            (
                &["user", "user.email"],
                r#"{"user":{"email":"e","id":1}}"#,
                r#"{"user":"[REDACTED]"}"#,
            ),
        ] {
            assert_eq!(apply(&mask(fields), record), expected, "{fields:?}");
        }
    }

    #[test]
    fn paths_do_not_go_into_arrays_or_values_that_are_not_objects() {
        let mask = redactor(&["users.email", "ip.v4"], "MASK", KEY_A);
        for record in [
            r#"{"users":[{"email":"a@example.com"}],"ip":"203.0.113.9"}"#,
            r#"{"users":null,"ip":{"v6":"::1"}}"#,
            r#"{"users":"email"}"#,
        ] {
            assert!(matches!(mask.apply(record), Cow::Borrowed(r) if r == record));
        }
    }

    #[test]
    fn a_record_without_the_fields_comes_back_borrowed_and_unchanged() {
        for mode in ["MASK", "HASH", "REMOVE"] {
            let redactor = redactor(&["email", "telemetry.ip_address"], mode, KEY_A);
            for record in [
                r#"{"project_id":"p","telemetry":{"ua":"x"}}"#,
                r#"{}"#,
                r#"{ "emails" : "x", "Email": "y", "telemetry": "ip_address" }"#,
            ] {
                let out = redactor.apply(record);
                assert!(
                    matches!(out, Cow::Borrowed(r) if r == record),
                    "{mode} {record}"
                );
            }
        }
    }

    #[test]
    fn remove_takes_the_member_and_one_comma_wherever_it_stands() {
        let remove = |fields: &[&str]| redactor(fields, "REMOVE", KEY_A);
        for (fields, record, expected) in [
            (&["a"][..], r#"{"a":1,"b":2,"c":3}"#, r#"{"b":2,"c":3}"#),
            (&["b"], r#"{"a":1,"b":2,"c":3}"#, r#"{"a":1,"c":3}"#),
            (&["c"], r#"{"a":1,"b":2,"c":3}"#, r#"{"a":1,"b":2}"#),
            (&["a", "b"], r#"{"a":1,"b":2,"c":3}"#, r#"{"c":3}"#),
            (&["b", "c"], r#"{"a":1,"b":2,"c":3}"#, r#"{"a":1}"#),
            (&["a", "c"], r#"{"a":1,"b":2,"c":3}"#, r#"{"b":2}"#),
            (&["a", "b", "c"], r#"{"a":1,"b":2,"c":3}"#, r#"{}"#),
            (&["a"], r#"{"a":1}"#, r#"{}"#),
            (&["a"], " {\"a\":1,\"b\":2} ", " {\"b\":2} "),
            (&["a"], "{ \"a\" : 1 }", "{  }"),
            (
                &["a"],
                "{\n  \"a\": {\"x\": [1, 2]},\n  \"b\": \"2\"\n}",
                "{\n  \"b\": \"2\"\n}",
            ),
            (
                &["b"],
                "{\n  \"a\": 1 ,\n  \"b\": \"x,y\"\n}",
                "{\n  \"a\": 1\n}",
            ),
            (
                &["t.ip"],
                r#"{"t":{"ip":"203.0.113.9"},"u":{"ip":1}}"#,
                r#"{"t":{},"u":{"ip":1}}"#,
            ),
            (
                &["t.ip", "t.ua"],
                r#"{"t":{"os":"x", "ip":"1", "ua":"2"}}"#,
                r#"{"t":{"os":"x"}}"#,
            ),
            (
                &["k:v"],
                r#"{"k:v":"a,b}","z":"{\"k:v\":1}"}"#,
                r#"{"z":"{\"k:v\":1}"}"#,
            ),
            (&["dup"], r#"{"dup":1,"x":2,"dup":3}"#, r#"{"x":2}"#),
        ] {
            assert_eq!(
                apply(&remove(fields), record),
                expected,
                "{fields:?} {record}"
            );
        }
    }

    #[test]
    fn hash_replaces_a_value_with_its_keyed_hash_as_the_contract_defines() {
        let hash_a = redactor(&["email", "n", "t.ip", "o"], "HASH", KEY_A);
        let record = r#"{"email":"a\u0040b", "n": 1.50,"t":{"ip":"203.0.113.9"},"o":{"x": 1}}"#;
        let expected = format!(
            r#"{{"email":{}, "n": {},"t":{{"ip":{}}},"o":{}}}"#,
            hash(b"a@b", KEY_A),
            hash(b"1.50", KEY_A),
            hash(b"203.0.113.9", KEY_A),
            hash(br#"{"x": 1}"#, KEY_A),
        );
        assert_eq!(apply(&hash_a, record), expected);
        assert!(expected.contains(r#""email":"hmac-sha256:"#));
    }

    #[test]
    fn the_same_value_hashes_alike_in_a_project_and_differently_in_another() {
        let ours = redactor(&["email"], "HASH", KEY_A);
        let theirs = redactor(&["email"], "HASH", KEY_B);
        let one = apply(&ours, r#"{"email":"ada@example.com","n":1}"#);
        let escaped = apply(&ours, r#"{"n":2,"email":"ada\u0040example.com"}"#);
        let other = apply(&theirs, r#"{"email":"ada@example.com","n":1}"#);
        let value =
            |out: &str| serde_json::from_str::<serde_json::Value>(out).unwrap()["email"].clone();
        assert_eq!(value(&one), value(&escaped));
        assert_ne!(value(&one), value(&other));
        // A number and the string of its digits hash alike, so an id sent either way joins.
        let number = apply(&ours, r#"{"email":42}"#);
        let string = apply(&ours, r#"{"email":"42"}"#);
        assert_eq!(value(&number), value(&string));
    }

    #[test]
    fn a_lone_surrogate_is_hashed_as_written() {
        let record = r#"{"s":"\ud800"}"#;
        let out = apply(&redactor(&["s"], "HASH", KEY_A), record);
        assert_eq!(out, format!(r#"{{"s":{}}}"#, hash(br#""\ud800""#, KEY_A)));
    }

    #[test]
    fn mask_is_one_json_string() {
        assert_eq!(serde_json::to_string(MASK).unwrap(), MASK_JSON);
    }

    #[test]
    fn debug_of_a_hashing_redactor_prints_no_key_material() {
        let redactor = redactor(&["email"], "HASH", KEY_A);
        let printed = format!("{redactor:?}");
        assert!(
            printed.contains("email") && printed.contains("***"),
            "{printed}"
        );
        assert!(
            !printed.contains("0102") && !printed.contains("[0, 1, 2"),
            "{printed}"
        );
    }
}
