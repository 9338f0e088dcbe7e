//! The metric lines of one invocation: what became of its records, its pushes, and how late
//! its records arrived.
//!
//! Every metric has one dimension, `DestinationType`: the destination the record was headed
//! for (`GRAFANA_LOKI`, `DATADOG`), or [`NO_DESTINATION`] for a record that had none
//! (unreadable, without a valid `project_id`, of a project with no stream, or whose stream
//! could not be read). An EMF line gives a dimension one value, so an invocation writes one
//! line per destination type it saw: one to three lines, never one per record. The delivery
//! lag is also published without a dimension (a second directive of the same line), so one
//! alarm watches the p99 of every destination.
//!
//! A count is written only when it is not zero: a metric costs only for the hours it is
//! published, and most of these (dead letters, failures) are rare. A line always holds
//! `RecordsReceived`, since it exists because records were headed its way.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::lag::LagHistogram;
use super::{NAMESPACE, timestamp};
use crate::delivery::SkipReason;
use crate::destination::classify::Classification;
use crate::domain::DestinationType;
use crate::event::RejectReason;

pub const DESTINATION_TYPE: &str = "DestinationType";
/// The `DestinationType` of records that had no destination.
pub const NO_DESTINATION: &str = "NONE";
pub const RECORDS_RECEIVED: &str = "RecordsReceived";
pub const RECORDS_DELIVERED: &str = "RecordsDelivered";
pub const RECORDS_SENT_BACK: &str = "RecordsSentBack";
pub const PUSHES: &str = "Pushes";
pub const DELIVERY_LAG: &str = "DeliveryLag";

/// Where a record was headed: its stream's destination type, or none.
pub type Route = Option<DestinationType>;

/// What one invocation did, by destination type.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchMetrics {
    routes: BTreeMap<Route, RouteMetrics>,
}

/// What one invocation did with the records headed for one destination type.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RouteMetrics {
    pub received: u64,
    pub delivered: u64,
    /// Sent back to the retry queue, to be delivered later.
    pub sent_back: u64,
    pub dead_lettered: BTreeMap<RejectReason, u64>,
    pub skipped: BTreeMap<SkipReason, u64>,
    pub pushes: PushCounts,
    /// From each delivered record's send to the queue to its push's acceptance.
    pub lag: LagHistogram,
}

/// Push attempts, and those that failed by class ([`Classification::name`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PushCounts {
    pub attempts: u64,
    pub failures: BTreeMap<&'static str, u64>,
}

impl PushCounts {
    pub fn attempt(&mut self, class: &Classification) {
        self.attempts += 1;
        if !matches!(class, Classification::Delivered { .. }) {
            *self.failures.entry(class.name()).or_default() += 1;
        }
    }

    pub fn add(&mut self, other: &PushCounts) {
        self.attempts += other.attempts;
        for (class, count) in &other.failures {
            *self.failures.entry(class).or_default() += count;
        }
    }
}

impl BatchMetrics {
    /// The counts of `route`, to add to.
    pub fn route(&mut self, route: Route) -> &mut RouteMetrics {
        self.routes.entry(route).or_default()
    }

    pub fn get(&self, route: Route) -> Option<&RouteMetrics> {
        self.routes.get(&route)
    }

    /// One EMF line per destination type seen, stamped `at`.
    pub fn lines(&self, at: OffsetDateTime) -> Vec<String> {
        self.routes
            .iter()
            .map(|(route, metrics)| line(*route, metrics, at))
            .collect()
    }
}

pub fn skipped_metric(reason: SkipReason) -> &'static str {
    match reason {
        SkipReason::NotConfigured => "RecordsSkippedNotConfigured",
        SkipReason::Disabled => "RecordsSkippedDisabled",
        SkipReason::Suspended => "RecordsSkippedSuspended",
        SkipReason::BeforeEnabled => "RecordsSkippedBeforeEnabled",
        SkipReason::Filtered => "RecordsSkippedFiltered",
    }
}

pub fn dead_lettered_metric(reason: RejectReason) -> &'static str {
    match reason {
        RejectReason::MalformedJson => "RecordsDeadLetteredMalformedJson",
        RejectReason::NotAnObject => "RecordsDeadLetteredNotAnObject",
        RejectReason::EmptyBatch => "RecordsDeadLetteredEmptyBatch",
        RejectReason::InvalidProjectId => "RecordsDeadLetteredInvalidProjectId",
        RejectReason::RecordTooLarge => "RecordsDeadLetteredRecordTooLarge",
        RejectReason::DestinationRejected => "RecordsDeadLetteredDestinationRejected",
        RejectReason::RetriesExhausted => "RecordsDeadLetteredRetriesExhausted",
    }
}

pub fn push_failures_metric(class: &str) -> String {
    format!("PushFailures{class}")
}

/// A line's members and the metrics its first directive declares.
#[derive(Default)]
struct Line {
    members: Map<String, Value>,
    declared: Vec<Value>,
}

impl Line {
    fn count(&mut self, name: &str, value: u64) {
        if value > 0 {
            self.declared.push(json!({"Name": name, "Unit": "Count"}));
            self.members.insert(name.to_owned(), value.into());
        }
    }
}

fn line(route: Route, metrics: &RouteMetrics, at: OffsetDateTime) -> String {
    let mut line = Line::default();
    line.count(RECORDS_RECEIVED, metrics.received);
    line.count(RECORDS_DELIVERED, metrics.delivered);
    line.count(RECORDS_SENT_BACK, metrics.sent_back);
    for (reason, count) in &metrics.dead_lettered {
        line.count(dead_lettered_metric(*reason), *count);
    }
    for (reason, count) in &metrics.skipped {
        line.count(skipped_metric(*reason), *count);
    }
    line.count(PUSHES, metrics.pushes.attempts);
    for (class, count) in &metrics.pushes.failures {
        line.count(&push_failures_metric(class), *count);
    }

    let lag_metric = json!({"Name": DELIVERY_LAG, "Unit": "Milliseconds"});
    let mut directives = Vec::new();
    if !metrics.lag.is_empty() {
        line.declared.push(lag_metric.clone());
        line.members
            .insert(DELIVERY_LAG.to_owned(), metrics.lag.emf_value());
    }
    directives.push(json!({
        "Namespace": NAMESPACE,
        "Dimensions": [[DESTINATION_TYPE]],
        "Metrics": line.declared,
    }));
    if !metrics.lag.is_empty() {
        directives.push(json!({
            "Namespace": NAMESPACE,
            "Dimensions": [[]],
            "Metrics": [lag_metric],
        }));
    }
    let destination = route.map_or(NO_DESTINATION, DestinationType::as_str);
    line.members
        .insert(DESTINATION_TYPE.to_owned(), destination.into());
    line.members.insert(
        "_aws".to_owned(),
        json!({"Timestamp": timestamp(at), "CloudWatchMetrics": directives}),
    );
    Value::Object(line.members).to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::macros::datetime;

    use super::*;

    fn parse(line: &str) -> Value {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn each_destination_type_gets_a_line_with_only_its_nonzero_counts() {
        let mut metrics = BatchMetrics::default();
        let loki = metrics.route(Some(DestinationType::GrafanaLoki));
        loki.received = 5;
        loki.delivered = 3;
        loki.sent_back = 1;
        loki.dead_lettered
            .insert(RejectReason::DestinationRejected, 1);
        loki.pushes
            .attempt(&Classification::Delivered { status: 204 });
        loki.pushes.attempt(&Classification::TooLarge);
        loki.pushes.attempt(&Classification::TooLarge);
        loki.lag.record(Duration::from_millis(5));
        loki.lag.record(Duration::from_millis(5));
        loki.lag.record(Duration::from_millis(250));
        let none = metrics.route(None);
        none.received = 2;
        none.skipped.insert(SkipReason::NotConfigured, 1);
        none.dead_lettered.insert(RejectReason::MalformedJson, 1);

        let lines = metrics.lines(datetime!(2026-11-24 10:00 UTC));
        assert_eq!(lines.len(), 2);
        let loki = parse(&lines[1]);
        assert_eq!(
            loki,
            json!({
                "_aws": {
                    "Timestamp": 1_795_514_400_000_i64,
                    "CloudWatchMetrics": [
                        {
                            "Namespace": "EventLogStreaming",
                            "Dimensions": [["DestinationType"]],
                            "Metrics": [
                                {"Name": "RecordsReceived", "Unit": "Count"},
                                {"Name": "RecordsDelivered", "Unit": "Count"},
                                {"Name": "RecordsSentBack", "Unit": "Count"},
                                {"Name": "RecordsDeadLetteredDestinationRejected", "Unit": "Count"},
                                {"Name": "Pushes", "Unit": "Count"},
                                {"Name": "PushFailuresTooLarge", "Unit": "Count"},
                                {"Name": "DeliveryLag", "Unit": "Milliseconds"},
                            ],
                        },
                        {
                            "Namespace": "EventLogStreaming",
                            "Dimensions": [[]],
                            "Metrics": [{"Name": "DeliveryLag", "Unit": "Milliseconds"}],
                        },
                    ],
                },
                "DestinationType": "GRAFANA_LOKI",
                "RecordsReceived": 5,
                "RecordsDelivered": 3,
                "RecordsSentBack": 1,
                "RecordsDeadLetteredDestinationRejected": 1,
                "Pushes": 3,
                "PushFailuresTooLarge": 2,
                "DeliveryLag": {"Values": [5.0, 224.0], "Counts": [2, 1]},
            })
        );

        // Records with no destination: no pushes, no lag, so no lag directive either.
        let none = parse(&lines[0]);
        assert_eq!(none["DestinationType"], "NONE");
        assert_eq!(
            none["_aws"]["CloudWatchMetrics"],
            json!([{
                "Namespace": "EventLogStreaming",
                "Dimensions": [["DestinationType"]],
                "Metrics": [
                    {"Name": "RecordsReceived", "Unit": "Count"},
                    {"Name": "RecordsDeadLetteredMalformedJson", "Unit": "Count"},
                    {"Name": "RecordsSkippedNotConfigured", "Unit": "Count"},
                ],
            }])
        );
        assert_eq!(none["RecordsReceived"], 2);
        assert_eq!(none["RecordsDeadLetteredMalformedJson"], 1);
        assert_eq!(none["RecordsSkippedNotConfigured"], 1);
        assert_eq!(none.as_object().unwrap().len(), 5);
    }

    #[test]
    fn an_invocation_without_records_writes_no_line() {
        assert!(
            BatchMetrics::default()
                .lines(OffsetDateTime::UNIX_EPOCH)
                .is_empty()
        );
    }
}
