//! What each destination accepts: payload encoding and size limits, and the HTTP client that
//! pushes to it. A payload is a list of entries, one per record, wrapped in the destination's
//! envelope, so a project's records can be cut at any record boundary (to respect limits, or
//! to split after a 413).
//!
//! A stream's own labels (Loki) or tags (Datadog) come from its [`Destination`], assembled once
//! per configuration version: a payload borrows them ([`Envelope`]) and writes them as it
//! goes, without building anything per record.

pub mod classify;
pub mod client;
pub mod datadog;
pub mod loki;

use crate::domain::controls::{DatadogTags, LokiLabels};
use crate::domain::{Destination, DestinationType};
use crate::event::EventRecord;

/// The two labels/attributes the product stamps on every log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLabels {
    /// Loki label `source`, Datadog `ddsource` (default `stytch`).
    pub source: String,
    /// Loki label `service_name`, Datadog `service` (default `stytch.auth`).
    pub service: String,
}

/// Per-destination limits, in bytes of uncompressed JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A record longer than this is never sent: the destination would drop or truncate it.
    pub max_record_bytes: usize,
    /// The entries of one request add up to at most this.
    pub max_request_bytes: usize,
    pub max_entries: usize,
}

pub fn limits(destination: DestinationType) -> Limits {
    match destination {
        DestinationType::GrafanaLoki => loki::LIMITS,
        DestinationType::Datadog => datadog::LIMITS,
    }
}

/// What a destination's payloads carry besides the records and the product's [`LogLabels`]:
/// the stream's own Loki labels or Datadog tags, borrowed from its [`Destination`].
#[derive(Debug, Clone, Copy)]
pub enum Envelope<'a> {
    GrafanaLoki { labels: Option<&'a LokiLabels> },
    Datadog { tags: Option<&'a DatadogTags> },
}

/// A destination without labels or tags of its own (a test's, a benchmark's).
impl From<DestinationType> for Envelope<'_> {
    fn from(destination: DestinationType) -> Self {
        match destination {
            DestinationType::GrafanaLoki => Self::GrafanaLoki { labels: None },
            DestinationType::Datadog => Self::Datadog { tags: None },
        }
    }
}

impl<'a> From<&'a Destination> for Envelope<'a> {
    fn from(destination: &'a Destination) -> Self {
        match destination {
            Destination::GrafanaLoki(loki) => Self::GrafanaLoki {
                labels: Some(&loki.labels).filter(|l| !l.is_empty()),
            },
            Destination::Datadog(datadog) => Self::Datadog {
                tags: Some(&datadog.tags).filter(|t| !t.is_empty()),
            },
        }
    }
}

/// A push body under construction: each record's entry is written straight into it, inside
/// the destination's envelope, so a record is encoded only when its push is built and no
/// copy of a batch is held apart from its pushes.
pub struct Payload<'a> {
    envelope: Envelope<'a>,
    labels: &'a LogLabels,
    limits: Limits,
    body: Vec<u8>,
    /// Where the first entry starts: the limits count what follows.
    entries_start: usize,
    entries: usize,
}

impl<'a> Payload<'a> {
    /// A payload for `destination`: a [`Destination`] (with its stream's labels or tags) or a
    /// bare [`DestinationType`] (without).
    pub fn new(
        destination: impl Into<Envelope<'a>>,
        labels: &'a LogLabels,
        limits: Limits,
    ) -> Self {
        let envelope = destination.into();
        let mut body = Vec::with_capacity(4096);
        match envelope {
            Envelope::GrafanaLoki { labels: extra } => loki::write_head(&mut body, labels, extra),
            Envelope::Datadog { .. } => datadog::write_head(&mut body),
        }
        Self {
            envelope,
            labels,
            limits,
            entries_start: body.len(),
            body,
            entries: 0,
        }
    }

    /// Adds the record's entry if the payload stays within the limits, and says whether it
    /// did. A first entry always fits: records over `max_record_bytes` are refused before.
    pub fn try_add(&mut self, record: &EventRecord) -> bool {
        self.try_add_line(record, record.line())
    }

    /// As [`Self::try_add`], with `line` in place of the record's own text (see
    /// [`Self::add_line`]).
    pub fn try_add_line(&mut self, record: &EventRecord, line: &str) -> bool {
        if self.entries == self.limits.max_entries {
            return false;
        }
        let before = self.body.len();
        self.add_line(record, line);
        if self.entries > 1 && self.body.len() - self.entries_start > self.limits.max_request_bytes
        {
            self.body.truncate(before);
            self.entries -= 1;
            return false;
        }
        true
    }

    /// Adds the record's entry whatever the limits: for part of a payload that fitted.
    pub fn add(&mut self, record: &EventRecord) {
        self.add_line(record, record.line());
    }

    /// As [`Self::add`], with `line` in place of the record's own text: a redacted copy,
    /// written without being parsed again.
    pub fn add_line(&mut self, record: &EventRecord, line: &str) {
        if self.entries > 0 {
            self.body.push(b',');
        }
        match self.envelope {
            Envelope::GrafanaLoki { .. } => loki::write_entry(&mut self.body, record, line),
            Envelope::Datadog { tags } => {
                datadog::write_entry(&mut self.body, record, line, self.labels, tags)
            }
        }
        self.entries += 1;
    }

    /// Makes room for about the entries of `lines` (the lines that will be written), at most a
    /// full push: growing a large body step by step copies it several times over.
    pub fn reserve_for<'r>(&mut self, lines: impl Iterator<Item = &'r str>) {
        // What an entry adds to its record: Loki's timestamp and brackets; Datadog's keys,
        // labels and tags.
        let envelope = match self.envelope {
            Envelope::GrafanaLoki { .. } => 32,
            Envelope::Datadog { tags } => {
                let tags = tags.map_or(0, |tags| tags.iter().map(|t| t.as_str().len() + 1).sum());
                128 + self.labels.source.len() + self.labels.service.len() + tags
            }
        };
        let mut expected = 0;
        for line in lines.take(self.limits.max_entries) {
            // Escaping adds a backslash per quote in the record: about an eighth in events.
            expected += line.len() + line.len() / 8 + envelope;
            if expected >= self.limits.max_request_bytes {
                break;
            }
        }
        self.body
            .reserve(expected.min(self.limits.max_request_bytes) + 64);
    }

    /// The request body (uncompressed).
    pub fn finish(mut self) -> Vec<u8> {
        match self.envelope {
            Envelope::GrafanaLoki { .. } => loki::write_tail(&mut self.body),
            Envelope::Datadog { .. } => datadog::write_tail(&mut self.body),
        }
        self.body
    }
}

/// Writes `value` as JSON (a string escaped and quoted, a number in digits).
fn write_json<T: serde::Serialize + ?Sized>(body: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(body, value).expect("strings and numbers always serialize");
}

#[cfg(test)]
mod tests {
    use super::tests_support::records;
    use super::*;

    fn labels() -> LogLabels {
        LogLabels {
            source: "stytch".into(),
            service: "stytch.auth".into(),
        }
    }

    /// Entries of the test records, and the envelope around them.
    fn sizes(destination: DestinationType) -> (usize, usize, usize) {
        let labels = labels();
        let records = records();
        let unlimited = limits(destination);
        let empty = Payload::new(destination, &labels, unlimited).finish().len();
        let size = |record: &EventRecord| {
            let mut payload = Payload::new(destination, &labels, unlimited);
            payload.add(record);
            payload.finish().len() - empty
        };
        (size(&records[0]), size(&records[1]), empty)
    }

    fn filled(destination: DestinationType, limits: Limits) -> usize {
        let labels = labels();
        let mut payload = Payload::new(destination, &labels, limits);
        let records = records();
        let added = records.iter().take_while(|r| payload.try_add(r)).count();
        let body = payload.finish();
        // A refused entry leaves nothing behind: the body holds exactly the added ones.
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let entries = match destination {
            DestinationType::GrafanaLoki => &parsed["streams"][0]["values"],
            DestinationType::Datadog => &parsed,
        };
        assert_eq!(entries.as_array().map(Vec::len), Some(added), "{parsed}");
        added
    }

    #[test]
    fn a_payload_is_cut_exactly_at_the_byte_limit() {
        for destination in [DestinationType::GrafanaLoki, DestinationType::Datadog] {
            let (first, second, _) = sizes(destination);
            let exactly = Limits {
                max_request_bytes: first + 1 + second, // a comma between entries
                ..limits(destination)
            };
            assert_eq!(filled(destination, exactly), 2, "{destination}");
            let one_less = Limits {
                max_request_bytes: first + second,
                ..exactly
            };
            assert_eq!(filled(destination, one_less), 1, "{destination}");
        }
    }

    #[test]
    fn a_payload_is_cut_exactly_at_the_entry_limit() {
        for destination in [DestinationType::GrafanaLoki, DestinationType::Datadog] {
            let one = Limits {
                max_entries: 1,
                ..limits(destination)
            };
            assert_eq!(filled(destination, one), 1);
            let two = Limits {
                max_entries: 2,
                ..limits(destination)
            };
            assert_eq!(filled(destination, two), 2);
        }
    }

    #[test]
    fn a_first_entry_always_fits() {
        for destination in [DestinationType::GrafanaLoki, DestinationType::Datadog] {
            let tiny = Limits {
                max_request_bytes: 1,
                ..limits(destination)
            };
            assert_eq!(filled(destination, tiny), 1);
        }
    }

    /// JSON text escapes to at most twice its length (a quote or a backslash becomes two
    /// bytes; raw control characters are not valid JSON), so a record within
    /// `max_record_bytes` always fits one push on its own.
    #[test]
    fn the_largest_record_fits_one_push_once_escaped() {
        for destination in [DestinationType::GrafanaLoki, DestinationType::Datadog] {
            let (_, _, envelope) = sizes(destination);
            let limits = limits(destination);
            assert!(2 * limits.max_record_bytes + envelope + 256 <= limits.max_request_bytes);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use std::path::PathBuf;

    use time::macros::datetime;

    use crate::event::{QueueMessage, parse_message};

    use super::*;

    /// Two records with awkward content: escapes, unicode, a sub-millisecond timestamp.
    pub fn records() -> Vec<EventRecord<'static>> {
        let body = r#"[{"project_id":"project-test-1","event_id":"e-1","action":"MagicLinksEmailLoginOrCreate","status":"success","timestamp":"2026-11-24T10:00:00.123456789Z","note":"quote \" and \\ and é"},
{"project_id":"project-test-1","event_id":"e-2","action":"PasswordsAuthenticate","status":"error","http_status_code":401}]"#;
        // Leaked: the records borrow from their message, and a test lives no longer than this.
        let message: &'static QueueMessage = Box::leak(Box::new(QueueMessage::new(
            "m",
            body,
            datetime!(2026-11-24 10:00:01 UTC),
        )));
        parse_message(message)
            .into_iter()
            .map(Result::unwrap)
            .collect()
    }

    /// Compares with `testdata/<name>`; `UPDATE_GOLDEN=1` rewrites the file.
    pub fn golden(name: &str, actual: &[u8]) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, actual).unwrap();
        }
        let expected = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            String::from_utf8_lossy(actual),
            String::from_utf8_lossy(&expected),
            "{name} differs from the golden file"
        );
    }
}
