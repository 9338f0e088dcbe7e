//! `dlq summary`: the dead-letter queue's messages counted by reason, by project and by age
//! (of the record: since it was first sent). Every message read is released at the end, so
//! the queue is as it was.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use time::OffsetDateTime;

use super::queue::DeadLetters;
use super::{AgeBand, DeadLetter};
use crate::aws_error::AwsError;

/// Shown for a message without the attribute: moved by a queue's redrive policy, or a record
/// without a valid project id.
pub const NONE: &str = "(none)";

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub messages: usize,
    pub by_reason: BTreeMap<String, usize>,
    pub by_project: BTreeMap<String, usize>,
    pub by_age: BTreeMap<AgeBand, usize>,
}

impl Summary {
    pub fn add(&mut self, letter: &DeadLetter, now: OffsetDateTime) {
        let name = |value: &Option<String>| value.clone().unwrap_or_else(|| NONE.to_owned());
        self.messages += 1;
        *self.by_reason.entry(name(&letter.reason)).or_default() += 1;
        *self.by_project.entry(name(&letter.project)).or_default() += 1;
        *self.by_age.entry(AgeBand::of(letter.age(now))).or_default() += 1;
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "messages: {}", self.messages)?;
        let section = |f: &mut fmt::Formatter<'_>, title: &str, rows: Vec<(&str, usize)>| {
            writeln!(f, "by {title}:")?;
            let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
            rows.iter()
                .try_for_each(|(name, count)| writeln!(f, "  {name:<width$}  {count}"))
        };
        section(f, "reason", rows(&self.by_reason))?;
        section(f, "project", rows(&self.by_project))?;
        let ages = self
            .by_age
            .iter()
            .map(|(band, n)| (band.label(), *n))
            .collect();
        section(f, "age", ages)
    }
}

fn rows(map: &BTreeMap<String, usize>) -> Vec<(&str, usize)> {
    map.iter().map(|(k, v)| (k.as_str(), *v)).collect()
}

/// Counts the queue's messages, then releases them.
pub async fn summarize(queue: &DeadLetters, now: OffsetDateTime) -> Result<Summary, AwsError> {
    let mut summary = Summary::default();
    let mut held: HashMap<String, DeadLetter> = HashMap::new();
    let mut scan = queue.scan().await?;
    let scanned = loop {
        match scan.next(now).await {
            Ok(Some(received)) => {
                for letter in &received.fresh {
                    summary.add(letter, now);
                }
                // The newest receipt handle is the one that releases a message.
                for letter in received.fresh.into_iter().chain(received.again) {
                    held.insert(letter.message_id.clone(), letter);
                }
            }
            Ok(None) => break Ok(summary),
            Err(err) => break Err(err),
        }
    };
    let held: Vec<DeadLetter> = held.into_values().collect();
    queue.release(&held).await?;
    scanned
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::dlq::tests::letter;

    #[test]
    fn each_message_counts_once_in_each_section() {
        let now = datetime!(2026-03-10 12:00 UTC);
        let mut summary = Summary::default();
        summary.add(
            &letter(
                Some("retries_exhausted"),
                Some("p-1"),
                datetime!(2026-03-10 11:30 UTC),
            ),
            now,
        );
        summary.add(
            &letter(
                Some("retries_exhausted"),
                Some("p-2"),
                datetime!(2026-03-09 11:30 UTC),
            ),
            now,
        );
        summary.add(&letter(None, None, datetime!(2026-02-01 00:00 UTC)), now);
        assert_eq!(summary.messages, 3);
        assert_eq!(summary.by_reason["retries_exhausted"], 2);
        assert_eq!(summary.by_reason[NONE], 1);
        assert_eq!(summary.by_project["p-1"], 1);
        assert_eq!(summary.by_project[NONE], 1);
        assert_eq!(summary.by_age[&AgeBand::UnderAnHour], 1);
        assert_eq!(summary.by_age[&AgeBand::UnderAWeek], 1);
        assert_eq!(summary.by_age[&AgeBand::AWeekOrMore], 1);
        let text = summary.to_string();
        assert!(
            text.starts_with("messages: 3\nby reason:\n  (none)             1\n"),
            "{text}"
        );
    }
}
