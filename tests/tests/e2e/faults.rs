//! One project's failure never redelivers another project's records: failed records go back
//! to the retry queue on their own, and only records that were never delivered end in the
//! dead-letter queue. The fault run drives the local runner's SQS consumer (Lambda's
//! semantics) against moto's queues with a real redrive policy and a destination that fails
//! on purpose; `FAULT_EVENTS` sets its size (`make fault` runs 10,000 events).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use event_log_streaming::event::{ATTEMPTS_ATTRIBUTE, SENT_TIMESTAMP_ATTRIBUTE};
use event_log_streaming::settings::StreamerSettings;
use event_log_streaming::{Queues, Streamer};
use integration_tests::aws::CallCounter;
use integration_tests::aws_chaos::{AwsChaos, Fault, Odds};
use integration_tests::fake_destination::{Chaos, FakeDestination};
use integration_tests::lambda::{SqsRecord, now_ms};
use integration_tests::logs::{CapturedLogs, capture_logs_at};
use integration_tests::moto::moto;
use local_runner::sqs::Consumer;
use serde_json::json;
use tracing::instrument::WithSubscriber;

use crate::helpers::*;

const REVOKED_KEY: &str = "00000000000000000000000000000000";

#[tokio::test]
async fn a_failing_project_sends_back_only_its_own_records_of_a_shared_message() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let env = StreamerEnv::new(Options::retrying(2)).await;
    env.configure("fine", loki_config(&loki.hostname(), LOKI_PASSWORD))
        .await;
    env.configure("revoked", loki_config(&loki.hostname(), "glc_revoked-0000"))
        .await;
    let sent = now_ms() - 5_000;
    let records = json!([
        event("fine", "fine-1"),
        event("revoked", "revoked-1"),
        event("fine", "fine-2")
    ]);

    let response = env
        .invoke(vec![
            SqsRecord::new("m1", records.to_string()).sent_at_ms(sent),
        ])
        .await;

    // The message is done: its delivered records are never sent again.
    assert_eq!(failed_ids(&response), Vec::<String>::new());
    let mut delivered = loki.accepted_event_ids();
    delivered.sort();
    assert_eq!(delivered, ["fine-1", "fine-2"]);
    let requeued = env.requeued().await;
    assert_eq!(requeued.len(), 1);
    let (body, attributes) = &requeued[0];
    assert_eq!(*body, format!("[{}]", records[1]));
    assert_eq!(attributes[ATTEMPTS_ATTRIBUTE], "1");
    assert_eq!(attributes[SENT_TIMESTAMP_ATTRIBUTE], sent.to_string());
    assert!(env.dead_letters().await.is_empty());

    // The copy's second attempt is the last one allowed: its record is dead-lettered.
    let copy = SqsRecord::new("m1-copy", body.clone())
        .sent_at_ms(now_ms())
        .with_attributes(attributes.clone(), 1);
    let response = env.invoke(vec![copy]).await;
    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert!(env.requeued().await.is_empty());
    let dead = env.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, records[1].to_string());
    assert_eq!(dead[0].1["rejection_reason"], "retries_exhausted");
    assert!(dead[0].1["rejection_detail"].starts_with("not delivered after 2 attempts"));
    assert_eq!(loki.accepted().len(), 2);
}

#[tokio::test]
async fn a_record_sent_back_keeps_its_original_time_so_it_is_not_taken_for_a_backfill() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let env = StreamerEnv::new(Options {
        event_queue: true,
        ..Options::default()
    })
    .await;
    let mut spec = loki_config(&loki.hostname(), LOKI_PASSWORD);
    let enabled = now_ms();
    spec.enabled_at =
        Some(time::OffsetDateTime::from_unix_timestamp_nanos(enabled as i128 * 1_000_000).unwrap());
    env.configure("p", spec).await;
    let record = json!({"project_id": "p", "event_id": "old"}).to_string();
    // Sent before the enable, copied after it: still before the enable.
    let copy = SqsRecord::new("copy", format!("[{record}]"))
        .sent_at_ms(enabled + 60_000)
        .with_attributes(
            [
                (ATTEMPTS_ATTRIBUTE.to_owned(), "1".to_owned()),
                (
                    SENT_TIMESTAMP_ATTRIBUTE.to_owned(),
                    (enabled - 1).to_string(),
                ),
            ],
            1,
        );

    let response = env.invoke(vec![copy]).await;

    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert!(loki.accepted().is_empty());
}

/// How big the fault run is: `FAULT_EVENTS`, by default small enough for every test run.
fn fault_events() -> usize {
    std::env::var("FAULT_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600)
}

/// The AWS side of the fault run: throttling the SDK retries, errors it does not, and calls
/// slow within and beyond its 2 s attempt timeout, on every call the streamer makes.
/// GetSecretValue is called once per credential version (about once per project), so it
/// gets larger shares to be hit at all.
fn aws_chaos(queue_names: Vec<(String, &'static str)>) -> AwsChaos {
    let slow = Fault::Slow(Duration::from_millis(300));
    let too_slow = Fault::Slow(Duration::from_secs(3));
    let denied = Fault::Error("AccessDeniedException");
    AwsChaos {
        seed: 20261127,
        odds: vec![
            Odds {
                operation: "SendMessage",
                faults: vec![
                    (0.02, Fault::Error("RequestThrottled")),
                    (0.01, Fault::Error("ThrottlingException")),
                    (0.02, denied),
                    (0.01, too_slow),
                    (0.02, slow),
                ],
            },
            Odds {
                operation: "BatchGetItem",
                faults: vec![
                    (0.05, Fault::Error("ThrottlingException")),
                    (0.02, denied),
                    (0.01, too_slow),
                    (0.02, slow),
                ],
            },
            Odds {
                operation: "GetItem",
                faults: vec![
                    (0.05, Fault::Error("ThrottlingException")),
                    (0.02, denied),
                    (0.01, too_slow),
                ],
            },
            Odds {
                operation: "UpdateItem",
                faults: vec![
                    (0.05, Fault::Error("ThrottlingException")),
                    (0.02, denied),
                    (0.01, too_slow),
                ],
            },
            Odds {
                operation: "GetSecretValue",
                faults: vec![
                    (0.10, Fault::Error("ThrottlingException")),
                    (0.10, denied),
                    (0.05, too_slow),
                ],
            },
        ],
        queue_names,
    }
}

/// The streamer's `batch processed` summaries, added up, and its warnings by message.
#[derive(Debug, Default)]
struct StreamerLog {
    summary: BTreeMap<String, u64>,
    warnings: BTreeMap<String, usize>,
}

impl StreamerLog {
    fn read(logs: &CapturedLogs) -> Self {
        let mut read = Self::default();
        for line in logs.lines() {
            let fields = &line["fields"];
            let message = fields["message"].as_str().unwrap_or_default();
            if message == "batch processed" {
                for (name, value) in fields.as_object().unwrap() {
                    if let Some(n) = value.as_u64() {
                        *read.summary.entry(name.clone()).or_default() += n;
                    }
                }
            } else if line["level"] == "WARN" {
                *read.warnings.entry(message.to_owned()).or_default() += 1;
            }
        }
        read
    }

    fn total(&self, field: &str) -> u64 {
        self.summary.get(field).copied().unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_faults_nothing_is_lost_duplicates_stay_rare_and_the_dlq_holds_only_undelivered_records()
 {
    const PROJECTS: usize = 50;
    const EVENTS_PER_MESSAGE: usize = 10;
    const MAX_RECEIVES: u32 = 4;
    let events = fault_events();
    let datadog = FakeDestination::datadog(DATADOG_KEY).await;
    // The fault mix of the run, with the 25 s answers scaled to the 1 s timeout.
    datadog.chaos(Chaos {
        seed: 20261126,
        too_many_requests: 0.04,
        server_errors: 0.06,
        resets: 0.02,
        late: 0.003,
        late_by: Duration::from_millis(1500),
    });
    // The test's own bookkeeping talks to moto directly; only the streamer meets the faults.
    let aws = moto().sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let dlq_url = create_queue(&sqs, &unique("fault-dlq"), None).await;
    let dlq_arn = queue_arn(&sqs, &dlq_url).await;
    let redrive =
        json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES.to_string()});
    let queue_url = create_queue(&sqs, &unique("fault-events"), Some(redrive.to_string())).await;
    let retry_url = create_queue(&sqs, &unique("fault-retries"), Some(redrive.to_string())).await;
    let (proxy, injected) = aws_chaos(vec![
        (retry_url.clone(), "the retry queue"),
        (dlq_url.clone(), "the dead-letter queue"),
    ])
    .start()
    .await;
    // The streamer's clients as production builds them: the SDK's standard retries inside
    // our timeouts.
    let streamer_aws = proxy
        .sdk_config()
        .await
        .into_builder()
        .timeout_config(event_log_streaming::aws::timeouts())
        .build();
    let calls = CallCounter::default();

    let state = StateEnv::new().await;
    let project = |p: usize| format!("fault-{p}");
    state
        .configure(&project(0), datadog_config(REVOKED_KEY))
        .await;
    for p in 1..PROJECTS {
        state
            .configure(&project(p), datadog_config(DATADOG_KEY))
            .await;
    }
    let vars: BTreeMap<&str, String> = BTreeMap::from([
        ("DATADOG_INTAKE_URL", datadog.base_url()),
        ("EXTRA_CA_CERTS", ca_file()),
        ("ALLOW_PRIVATE_DESTINATIONS", "true".into()),
        ("DEAD_LETTER_QUEUE_URL", dlq_url.clone()),
        ("RETRY_QUEUE_URL", retry_url.clone()),
        ("RETRY_QUEUE_ARN", queue_arn(&sqs, &retry_url).await),
        ("MAX_DELIVERY_ATTEMPTS", MAX_RECEIVES.to_string()),
        ("REQUEUE_BASE_DELAY_SECONDS", "0".into()),
        ("PUSH_TIMEOUT_SECONDS", "1".into()),
        // A lookup (BatchGetItem) per batch rather than per 30 s: many for the faults to hit.
        ("CONFIG_CACHE_TTL_SECONDS", "1".into()),
    ]);
    let settings = StreamerSettings::from_lookup(|k| vars.get(k).cloned()).unwrap();
    let streamer = Arc::new(
        Streamer::from_settings(
            &settings,
            state.store_on(&streamer_aws, &calls),
            Queues::from_settings(&settings, &aws_sdk_sqs::Client::new(&streamer_aws)),
        )
        .unwrap(),
    );

    // Producers: mixed-project messages of ten events, ten messages per SendMessageBatch.
    let mut rng = fastrand::Rng::with_seed(7);
    let mut by_project: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    let bodies: Vec<String> = (0..events.div_ceil(EVENTS_PER_MESSAGE))
        .map(|m| {
            let records: Vec<String> = (0..EVENTS_PER_MESSAGE)
                .map(|e| {
                    let p = rng.usize(..PROJECTS);
                    let id = format!("event-{m}-{e}");
                    by_project.entry(p).or_default().insert(id.clone());
                    event(&project(p), &id).to_string()
                })
                .collect();
            format!("[{}]", records.join(","))
        })
        .collect();
    for chunk in bodies.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, body)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .unwrap()
            })
            .collect();
        sqs.send_message_batch()
            .queue_url(&queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
    }
    let revoked: BTreeSet<String> = by_project.remove(&0).unwrap_or_default();
    let healthy: BTreeSet<String> = by_project.into_values().flatten().collect();

    // Lambda's part (receiving and deleting) talks to moto directly too.
    let (logs, capture) = capture_logs_at("info");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let consumer = {
        let streamer = streamer.clone();
        let sqs = sqs.clone();
        let queue_url = queue_url.clone();
        let retry_url = retry_url.clone();
        tokio::spawn(
            async move {
                Consumer {
                    streamer: &streamer,
                    sqs,
                    queue_url,
                    retry_queue_url: Some(retry_url),
                    batch_time_budget: Duration::from_secs(8),
                }
                .run(async {
                    stopped.await.ok();
                })
                .await
            }
            .with_subscriber(capture),
        )
    };
    // Bounded: done when every healthy event arrived and the queue is empty, or give up.
    let started = Instant::now();
    let limit = Duration::from_secs(60 + events as u64 / 20);
    loop {
        let delivered: BTreeSet<String> = datadog.accepted_event_ids().into_iter().collect();
        let drained =
            queue_is_empty(&sqs, &queue_url).await && queue_is_empty(&sqs, &retry_url).await;
        if (healthy.is_subset(&delivered) && drained) || started.elapsed() > limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let took = started.elapsed();
    stop.send(()).ok();
    consumer.await.unwrap();

    let deliveries = datadog.accepted_event_ids();
    let mut times_delivered: BTreeMap<&str, usize> = BTreeMap::new();
    for id in &deliveries {
        *times_delivered.entry(id.as_str()).or_default() += 1;
    }
    let lost: Vec<&String> = healthy
        .iter()
        .filter(|id| !times_delivered.contains_key(id.as_str()))
        .collect();
    let duplicated: Vec<&str> = times_delivered
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    let late: BTreeSet<String> = datadog
        .late_accepted()
        .iter()
        .map(|a| a.field("event_id").as_str().unwrap_or_default().to_owned())
        .collect();
    let (after_late, unexplained): (Vec<&str>, Vec<&str>) =
        duplicated.iter().partition(|id| late.contains(**id));
    // A record alone (dead-lettered by the streamer) or a whole message (moved by the redrive
    // policy): the event ids of each.
    let dead = receive_all(&sqs, &dlq_url).await;
    let dead_ids: Vec<String> = dead
        .iter()
        .flat_map(|(body, _)| {
            let body: serde_json::Value = serde_json::from_str(body).unwrap();
            let records = match body {
                serde_json::Value::Array(records) => records,
                record => vec![record],
            };
            records
                .into_iter()
                .map(|r| r["event_id"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    let log = StreamerLog::read(&logs);
    let redelivered_whole = log.total("redelivered_whole");
    let extra = deliveries.len() - times_delivered.len();
    eprintln!(
        "fault run: {events} events ({} healthy, {} for the revoked key) in {took:?}\n\
         delivered: {} distinct, {} lost\n\
         duplicates: {} events, {extra} extra deliveries ({:.2}%): {} after a late destination \
         answer, {} otherwise; {redelivered_whole} messages redelivered whole\n\
         dead-lettered: {} records ({} distinct), {} messages moved whole by the redrive policy\n\
         streamer: {:?}\n\
         streamer warnings: {:?}\n\
         streamer AWS attempts: {:?}\n\
         AWS faults injected ({} in all):{injected}",
        healthy.len(),
        revoked.len(),
        times_delivered.len(),
        lost.len(),
        duplicated.len(),
        extra as f64 * 100.0 / events as f64,
        after_late.len(),
        unexplained.len(),
        dead_ids.len(),
        dead_ids.iter().collect::<BTreeSet<_>>().len(),
        dead.iter()
            .filter(|(_, a)| !a.contains_key("rejection_reason"))
            .count(),
        log.summary,
        log.warnings,
        calls.all(),
        injected.total(),
    );

    assert!(lost.is_empty(), "lost: {lost:?}");
    // The target, 0.5 % in all, is judged at `make fault`'s size. At `make test`'s 600 events
    // the destination's 0.3 % late answers decide the total alone: one late answer to a push
    // of 7 records is 7 duplicates (1.2 %: a run on Dec 7, with nothing wrong in the
    // streamer). Small runs judge what the streamer answers for: its own duplicates (whole
    // redeliveries, no late answer) stay under 0.5 % at every size, and every other duplicate
    // follows a late answer.
    if events >= 10_000 {
        assert!(
            extra * 1000 <= events * 5,
            "{extra} extra deliveries for {events} events: over 5 per mille"
        );
    }
    assert!(
        unexplained.len() * 200 <= events,
        "{} duplicated by the streamer (no late answer) for {events} events: over 0.5 %",
        unexplained.len()
    );
    // A duplicate without a late answer can only be a record of a message redelivered whole.
    assert!(
        unexplained.len() as u64 <= redelivered_whole * EVENTS_PER_MESSAGE as u64,
        "duplicated without a late answer or a whole redelivery: {unexplained:?}"
    );
    // The dead-letter queue holds the revoked key's records, each once, and nothing else:
    // nothing that was delivered.
    let dead_set: BTreeSet<String> = dead_ids.iter().cloned().collect();
    let delivered_and_dead: Vec<&String> = dead_set
        .iter()
        .filter(|id| times_delivered.contains_key(id.as_str()))
        .collect();
    assert!(
        delivered_and_dead.is_empty(),
        "delivered, then dead-lettered: {delivered_and_dead:?}"
    );
    assert_eq!(dead_set, revoked, "dead-lettered: {dead_ids:?}");
    assert_eq!(dead_ids.len(), revoked.len());
    assert!(
        dead.iter()
            .all(|(_, attributes)| attributes["rejection_reason"] == "retries_exhausted")
    );
    assert!(
        datadog.violations().is_empty(),
        "{:?}",
        datadog.violations()
    );
}

async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str, redrive: Option<String>) -> String {
    let mut request = sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::VisibilityTimeout, "10");
    if let Some(redrive) = redrive {
        request = request.attributes(QueueAttributeName::RedrivePolicy, redrive);
    }
    request
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned()
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone()
}

/// One project's outage must not hold every batch it appears in until the deadline: its push
/// is retried within `RETRY_WINDOW_SECONDS` only, then its records go back to the queue with
/// a delay, and the batch ends.
#[tokio::test]
async fn a_failing_destination_is_retried_within_the_retry_window_then_its_records_go_back() {
    let down = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    down.script(std::iter::repeat_n(
        integration_tests::fake_destination::Script::Status(503, "upstream failure"),
        50,
    ));
    let fine = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let env = StreamerEnv::new(Options {
        event_queue: true,
        // Shorter than the time an attempt needs: no retry, whatever the jitter draws.
        settings: vec![("RETRY_WINDOW_SECONDS", "1".into())],
        ..Options::default()
    })
    .await;
    env.configure("down", loki_config(&down.hostname(), LOKI_PASSWORD))
        .await;
    env.configure("fine", loki_config(&fine.hostname(), LOKI_PASSWORD))
        .await;

    // A minute left: without the window the push would be retried for all of it.
    let response = env
        .invoke_with_time_left(
            vec![
                SqsRecord::new("m-down", event("down", "down-1").to_string()),
                SqsRecord::new("m-fine", event("fine", "fine-1").to_string()),
            ],
            Duration::from_secs(60),
        )
        .await;

    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(down.requests(), 1, "retried beyond the window");
    assert_eq!(fine.accepted_event_ids(), ["fine-1"]);
    let requeued = env.requeued().await;
    assert_eq!(requeued.len(), 1);
    assert!(requeued[0].0.contains("down-1"));
}

#[tokio::test]
async fn a_slow_destination_sends_its_records_back_and_lets_the_batch_finish() {
    let slow = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    slow.script(std::iter::repeat_n(
        integration_tests::fake_destination::Script::Slow(Duration::from_secs(3)),
        10,
    ));
    let fine = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let env = StreamerEnv::new(Options {
        event_queue: true,
        settings: vec![("PUSH_TIMEOUT_SECONDS", "1".into())],
        ..Options::default()
    })
    .await;
    env.configure("slow", loki_config(&slow.hostname(), LOKI_PASSWORD))
        .await;
    env.configure("fine", loki_config(&fine.hostname(), LOKI_PASSWORD))
        .await;

    let response = env
        .invoke_with_time_left(
            vec![
                SqsRecord::new("m-slow", event("slow", "slow-1").to_string()),
                SqsRecord::new("m-fine", event("fine", "fine-1").to_string()),
            ],
            Duration::from_secs(8),
        )
        .await;

    // Nothing is left to SQS: the slow project's record is back in the queue on its own.
    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(fine.accepted_event_ids(), ["fine-1"]);
    let requeued = env.requeued().await;
    assert_eq!(requeued.len(), 1);
    assert!(requeued[0].0.contains("slow-1"));
}
