//! What each destination accepts: payload encoding and size limits, and the HTTP client that
//! pushes to it. A payload is a list of pre-encoded entries wrapped in the destination's
//! envelope, so a batch can be cut at any entry boundary (to respect limits, or to split after
//! a 413) without encoding the records again.

pub mod classify;
pub mod client;
pub mod datadog;
pub mod loki;

use std::ops::Range;

use crate::domain::DestinationType;
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

/// One record encoded for a destination (a Loki `[ts, line]` pair or a Datadog log object).
pub fn encode_entry(
    destination: DestinationType,
    record: &EventRecord,
    labels: &LogLabels,
) -> String {
    match destination {
        DestinationType::GrafanaLoki => loki::encode_entry(record),
        DestinationType::Datadog => datadog::encode_entry(record, labels),
    }
}

/// The request body (uncompressed) holding the given entries.
pub fn encode_body<'a>(
    destination: DestinationType,
    entries: impl Iterator<Item = &'a str>,
    labels: &LogLabels,
) -> Vec<u8> {
    match destination {
        DestinationType::GrafanaLoki => loki::encode_body(entries, labels),
        DestinationType::Datadog => datadog::encode_body(entries),
    }
}

/// Cuts entries, in order, into consecutive runs that each fit `limits`. Every entry must
/// already be no larger than `limits.max_request_bytes`.
pub fn chunk(entry_sizes: &[usize], limits: Limits) -> Vec<Range<usize>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, size) in entry_sizes.iter().enumerate() {
        // +1 for the comma between entries.
        let grown = bytes + size + usize::from(i > start);
        if i > start && (grown > limits.max_request_bytes || i - start == limits.max_entries) {
            chunks.push(start..i);
            start = i;
            bytes = *size;
        } else {
            bytes = grown;
        }
    }
    if start < entry_sizes.len() {
        chunks.push(start..entry_sizes.len());
    }
    chunks
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)] // a list of one chunk is the expected value
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_record_bytes: 10,
        max_request_bytes: 10,
        max_entries: 3,
    };

    #[test]
    fn nothing_to_chunk_gives_no_chunk() {
        assert!(chunk(&[], LIMITS).is_empty());
    }

    #[test]
    fn entries_that_fit_stay_in_one_chunk() {
        assert_eq!(chunk(&[3, 3], LIMITS), [0..2]); // 3 + 1 + 3 = 7
    }

    #[test]
    fn a_chunk_is_cut_exactly_at_the_byte_limit() {
        assert_eq!(chunk(&[4, 5], LIMITS), [0..2]); // 4 + 1 + 5 = 10: fits
        assert_eq!(chunk(&[4, 6], LIMITS), [0..1, 1..2]); // 11: does not
    }

    #[test]
    fn a_chunk_is_cut_exactly_at_the_entry_limit() {
        assert_eq!(chunk(&[1, 1, 1], LIMITS), [0..3]);
        assert_eq!(chunk(&[1, 1, 1, 1], LIMITS), [0..3, 3..4]);
    }

    #[test]
    fn an_entry_at_the_limit_gets_a_chunk_of_its_own() {
        assert_eq!(chunk(&[1, 10, 1], LIMITS), [0..1, 1..2, 2..3]);
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
        let message: &'static QueueMessage = Box::leak(Box::new(QueueMessage {
            message_id: "m".into(),
            body: body.into(),
            sent_at: datetime!(2026-11-24 10:00:01 UTC),
            attempt: 1,
        }));
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
