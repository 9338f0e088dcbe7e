//! Each record is handed off once: sends back (to the retry queue) and dead-letter sends that
//! fail, against moto's queues through a loopback proxy that fails the calls a test chooses. A message is
//! left to SQS whole only when none of its records went anywhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_log_streaming::event::{ATTEMPTS_ATTRIBUTE, QueueMessage, SENT_TIMESTAMP_ATTRIBUTE};
use event_log_streaming::settings::StreamerSettings;
use event_log_streaming::{BatchReport, Queues, Streamer};
use integration_tests::fake_destination::FakeDestination;
use integration_tests::lambda::RETRY_QUEUE_ARN;
use integration_tests::moto::moto;
use integration_tests::moto_proxy::{MotoProxy, Step};
use serde_json::Value;
use time::OffsetDateTime;

use crate::helpers::*;

/// Which SendMessage calls fail: by queue, the first `n` calls (or all of them).
#[derive(Clone, Copy)]
enum Failing {
    Never,
    First(usize),
    Always,
}

struct HandoffEnv {
    streamer: Streamer,
    sqs: aws_sdk_sqs::Client,
    events: String,
    dead_letters: String,
    loki: FakeDestination,
}

impl HandoffEnv {
    /// A streamer whose sends back (event queue) and dead-letter sends fail as told.
    async fn new(event_queue: Failing, dead_letter_queue: Failing) -> Self {
        let sqs = aws_sdk_sqs::Client::new(&moto().sdk_config().await);
        let mut urls = Vec::new();
        for label in ["events", "dlq"] {
            let created = sqs.create_queue().queue_name(unique(label)).send().await;
            urls.push(created.unwrap().queue_url().unwrap().to_owned());
        }
        let (events, dead_letters) = (urls[0].clone(), urls[1].clone());
        let calls: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let rules = [
            (events.clone(), event_queue),
            (dead_letters.clone(), dead_letter_queue),
        ];
        let proxy = MotoProxy::start(move |target, request: &mut Value| {
            if !target.ends_with(".SendMessage") {
                return Step::Forward;
            }
            let url = request["QueueUrl"].as_str().unwrap_or_default().to_owned();
            let failing = rules.iter().find(|(u, _)| *u == url).map(|(_, f)| *f);
            let mut calls = calls.lock().unwrap();
            let call = calls.entry(url).or_default();
            *call += 1;
            let fails = match failing.unwrap_or(Failing::Never) {
                Failing::Never => false,
                Failing::First(n) => *call <= n,
                Failing::Always => true,
            };
            if fails {
                Step::Fail {
                    error_type: "InvalidParameterValue",
                    message: "a failure chosen by the test",
                }
            } else {
                Step::Forward
            }
        })
        .await;
        let proxied = aws_sdk_sqs::Client::new(&proxy.sdk_config().await);

        let state = StateEnv::new().await;
        let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
        state
            .configure("fine", loki_config(&loki.hostname(), LOKI_PASSWORD))
            .await;
        state
            .configure("revoked", loki_config(&loki.hostname(), "glc_revoked-0000"))
            .await;
        let vars: HashMap<&str, String> = HashMap::from([
            ("CONFIG_SECRET_PREFIX", state.prefix.clone()),
            ("EXTRA_CA_CERTS", ca_file()),
            ("ALLOW_PRIVATE_DESTINATIONS", "true".into()),
            ("DEAD_LETTER_QUEUE_URL", dead_letters.clone()),
            ("RETRY_QUEUE_URL", events.clone()),
            ("RETRY_QUEUE_ARN", RETRY_QUEUE_ARN.into()),
            ("REQUEUE_BASE_DELAY_SECONDS", "0".into()),
        ]);
        let settings = StreamerSettings::from_lookup(|k| vars.get(k).cloned()).unwrap();
        let queues = Queues::from_settings(&settings, &proxied);
        let streamer = Streamer::from_settings(&settings, state.streamer_store(), queues).unwrap();
        Self {
            streamer,
            sqs,
            events,
            dead_letters,
            loki,
        }
    }

    async fn process(&self, messages: &[QueueMessage]) -> BatchReport {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        self.streamer.process_batch(messages, deadline).await
    }

    async fn requeued(&self) -> Vec<(String, HashMap<String, String>)> {
        receive_all(&self.sqs, &self.events).await
    }

    async fn dead_letters(&self) -> Vec<(String, HashMap<String, String>)> {
        receive_all(&self.sqs, &self.dead_letters).await
    }
}

/// One message of `records`, sent five seconds ago.
fn message(id: &str, records: &[Value]) -> QueueMessage {
    let sent = OffsetDateTime::now_utc() - time::Duration::seconds(5);
    QueueMessage::new(id, Value::from(records.to_vec()).to_string(), sent)
}

const MALFORMED: &str = r#"{"event_id":"no-project"}"#;

#[tokio::test]
async fn a_send_back_that_fails_once_is_sent_again_and_the_delivered_records_are_not() {
    let env = HandoffEnv::new(Failing::First(1), Failing::Never).await;
    let records = [event("fine", "fine-1"), event("revoked", "revoked-1")];

    let report = env.process(&[message("m1", &records)]).await;

    assert!(report.failed_message_ids.is_empty(), "{report:?}");
    assert_eq!(env.loki.accepted_event_ids(), ["fine-1"]);
    let requeued = env.requeued().await;
    assert_eq!(requeued.len(), 1);
    assert_eq!(requeued[0].0, format!("[{}]", records[1]));
    assert_eq!(report.summary.redelivered_whole, 0);
}

#[tokio::test]
async fn a_dead_letter_send_that_fails_once_does_not_redeliver_what_was_sent_back() {
    let env = HandoffEnv::new(Failing::Never, Failing::First(1)).await;
    let malformed: Value = serde_json::from_str(MALFORMED).unwrap();
    let records = [event("revoked", "revoked-1"), malformed];

    let report = env.process(&[message("m1", &records)]).await;

    // The revoked record went back to the event queue in the first round; the malformed one
    // reached the dead-letter queue in the second. Leaving the message to SQS would have
    // sent the revoked record a second time.
    assert!(report.failed_message_ids.is_empty(), "{report:?}");
    assert_eq!(env.requeued().await.len(), 1);
    let dead = env.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, MALFORMED);
}

#[tokio::test]
async fn a_rejected_record_the_dead_letter_queue_keeps_refusing_goes_back_on_its_own() {
    let env = HandoffEnv::new(Failing::Never, Failing::Always).await;
    let malformed: Value = serde_json::from_str(MALFORMED).unwrap();
    let records = [event("revoked", "revoked-1"), malformed];

    let report = env.process(&[message("m1", &records)]).await;

    // The revoked record went back in the first round, so the message cannot be left to
    // SQS without sending it twice: the malformed record goes back too, alone and as it was,
    // to be set aside when it comes round again.
    assert!(report.failed_message_ids.is_empty(), "{report:?}");
    assert_eq!(report.summary.redelivered_whole, 0);
    let mut requeued: Vec<String> = env.requeued().await.into_iter().map(|(b, _)| b).collect();
    requeued.sort();
    let mut expected = vec![format!("[{}]", records[0]), MALFORMED.to_owned()];
    expected.sort();
    assert_eq!(requeued, expected);
    assert!(env.dead_letters().await.is_empty());
}

#[tokio::test]
async fn a_message_none_of_whose_records_went_anywhere_is_left_to_sqs_whole() {
    let env = HandoffEnv::new(Failing::Always, Failing::Always).await;
    let records = [event("revoked", "revoked-1"), event("revoked", "revoked-2")];

    let report = env.process(&[message("m1", &records)]).await;

    assert_eq!(report.failed_message_ids, ["m1"]);
    assert_eq!(report.retryable_messages, [0]);
    assert_eq!(report.summary.redelivered_whole, 0);
    assert!(env.requeued().await.is_empty());
}

#[tokio::test]
async fn when_both_queues_keep_failing_a_message_is_delivered_again_whole_and_counted() {
    let env = HandoffEnv::new(Failing::Always, Failing::Always).await;
    let records = [event("fine", "fine-1"), event("revoked", "revoked-1")];

    let report = env.process(&[message("m1", &records)]).await;

    // The last resort: the revoked record must not be lost, so its message goes back whole
    // and "fine-1" will be delivered again. The summary says so.
    assert_eq!(report.failed_message_ids, ["m1"]);
    assert_eq!(report.summary.redelivered_whole, 1);
}

#[tokio::test]
async fn dead_letter_copies_keep_the_original_send_time_and_attempts() {
    let env = HandoffEnv::new(Failing::Never, Failing::Never).await;
    let malformed: Value = serde_json::from_str(MALFORMED).unwrap();
    let mut original = message("m1", &[malformed]);
    original.attempt = 3;

    let report = env.process(std::slice::from_ref(&original)).await;

    assert!(report.failed_message_ids.is_empty());
    let dead = env.dead_letters().await;
    assert_eq!(dead.len(), 1);
    let attributes = &dead[0].1;
    let sent_ms = original.sent_at.unix_timestamp_nanos() / 1_000_000;
    assert_eq!(attributes[SENT_TIMESTAMP_ATTRIBUTE], sent_ms.to_string());
    assert_eq!(attributes[ATTEMPTS_ATTRIBUTE], "3");
    assert_eq!(attributes["source_message_id"], "m1");
    assert_eq!(attributes["rejection_reason"], "invalid_project_id");
}
