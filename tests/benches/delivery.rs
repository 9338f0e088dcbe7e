//! End-to-end delivery throughput: batches of SQS messages through the real delivery code,
//! over TLS on loopback, into the strict local Loki and Datadog servers (which gunzip and
//! check every push, on the same cores). Run with `make bench`.
//!
//! The stream controls are measured on the same path, as throughput relative to Loki projects
//! without controls, the three Loki cases interleaved over [`ROUNDS`] rounds (medians):
//! - a filter of 5 actions that passes every bench record (its own cost, not the saving of
//!   the records it would drop);
//! - HASH on 4 fields of the bench records (`event_id`, `request_id`, `project_name`,
//!   `user_agent`). The issue's targets: at least 0.8x and 0.5x.

use std::sync::Arc;
use std::time::{Duration, Instant};

use event_log_streaming::delivery::StreamerStore;
use event_log_streaming::domain::{DestinationType, StreamControls};
use event_log_streaming::event::QueueMessage;
use event_log_streaming::settings::StreamerSettings;
use event_log_streaming::store::MemoryStateStore;
use event_log_streaming::{Streamer, StreamerOptions};
use integration_tests::fake_destination::FakeDestination;
use integration_tests::fixtures::{
    datadog_config, filter_on, hash_of, labels, loki_config, loopback_client, provision,
};
use time::OffsetDateTime;

const PROJECTS: usize = 20;
const DATADOG_KEY: &str = "0123456789abcdef0123456789abcdef";
const RECORDS_PER_MESSAGE: usize = 10;
const MESSAGES_PER_BATCH: usize = 10;
const BATCHES: usize = 200;
const ROUNDS: usize = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Controls {
    None,
    /// `event_filter` on 5 actions, one of which every record matches.
    Filter,
    /// HASH on 4 fields.
    Hash,
}

impl Controls {
    fn name(self) -> &'static str {
        match self {
            Self::None => "no controls",
            Self::Filter => "filter on 5 actions",
            Self::Hash => "HASH on 4 fields",
        }
    }

    fn stream_controls(self) -> StreamControls {
        match self {
            Self::None => StreamControls::default(),
            Self::Filter => filter_on(&[
                "MagicLinks*",
                "Passwords*",
                "OAuthAuthenticate",
                "SessionsAuthenticate",
                "TotpsAuthenticate",
            ]),
            Self::Hash => hash_of(&["event_id", "request_id", "project_name", "user_agent"]),
        }
    }
}

fn record(project: usize, n: usize) -> String {
    format!(
        r#"{{"event_id":"event-live-{n:08x}","project_id":"project-{project}","project_name":"Acme","action":"PasswordsAuthenticate","status":"success","request_id":"request-id-live-{n:012x}","http_status_code":200,"timestamp":"{}","user_agent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)"}}"#,
        OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    )
}

/// Events per second of one run.
async fn run(kind: DestinationType, controls: Controls) -> f64 {
    let loki = FakeDestination::loki("user", "password").await;
    let datadog = FakeDestination::datadog(DATADOG_KEY).await;
    let store = Arc::new(MemoryStateStore::new());
    for p in 0..PROJECTS {
        let mut spec = match kind {
            DestinationType::GrafanaLoki => loki_config(&loki.hostname(), "user", "password"),
            DestinationType::Datadog => datadog_config(DATADOG_KEY),
        };
        spec.controls = controls.stream_controls();
        provision(
            store.as_ref(),
            store.as_ref(),
            &format!("project-{p}"),
            spec,
        )
        .await;
    }
    let client = loopback_client(Some(datadog.base_url()));
    let defaults = StreamerSettings::from_lookup(|_| None).unwrap();
    let streamer = Streamer::new(
        StreamerStore::of_one(store.clone()),
        client,
        Default::default(),
        StreamerOptions {
            labels: labels(),
            max_concurrent_pushes: 16,
            ..StreamerOptions::from_settings(&defaults)
        },
    );

    let mut n = 0;
    let batches: Vec<Vec<QueueMessage>> = (0..BATCHES)
        .map(|b| {
            (0..MESSAGES_PER_BATCH)
                .map(|m| {
                    let records: Vec<String> = (0..RECORDS_PER_MESSAGE)
                        .map(|_| {
                            n += 1;
                            record(n % PROJECTS, n)
                        })
                        .collect();
                    QueueMessage::new(
                        format!("{b}-{m}"),
                        format!("[{}]", records.join(",")),
                        OffsetDateTime::now_utc(),
                    )
                })
                .collect()
        })
        .collect();
    let bytes: usize = batches.iter().flatten().map(|m| m.body.len()).sum();

    // Warm the TLS connections and the configuration cache.
    streamer
        .process_batch(
            &batches[0],
            tokio::time::Instant::now() + Duration::from_secs(30),
        )
        .await;
    let mut latencies = Vec::with_capacity(BATCHES);
    let started = Instant::now();
    for batch in &batches[1..] {
        let t = Instant::now();
        let report = streamer
            .process_batch(batch, tokio::time::Instant::now() + Duration::from_secs(30))
            .await;
        assert!(report.failed_message_ids.is_empty());
        latencies.push(t.elapsed());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let events = (BATCHES - 1) * MESSAGES_PER_BATCH * RECORDS_PER_MESSAGE;
    let fake = if kind == DestinationType::GrafanaLoki {
        &loki
    } else {
        &datadog
    };
    assert!(fake.violations().is_empty());
    assert_eq!(
        fake.accepted().len(),
        BATCHES * MESSAGES_PER_BATCH * RECORDS_PER_MESSAGE
    );
    let rate = events as f64 / elapsed.as_secs_f64();
    println!(
        "{:<34}: {:>8.0} events/s, {:>5.1} MB/s of records; batch of {} events across {PROJECTS} projects: p50 {:>5.1} ms, p95 {:>5.1} ms; {} pushes",
        match controls {
            Controls::None => kind.to_string(),
            _ => format!("{kind}, {}", controls.name()),
        },
        rate,
        bytes as f64 * (BATCHES - 1) as f64 / BATCHES as f64 / 1e6 / elapsed.as_secs_f64(),
        MESSAGES_PER_BATCH * RECORDS_PER_MESSAGE,
        latencies[latencies.len() / 2].as_secs_f64() * 1e3,
        latencies[latencies.len() * 95 / 100].as_secs_f64() * 1e3,
        fake.requests(),
    );
    rate
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run(DestinationType::GrafanaLoki, Controls::None));
    runtime.block_on(run(DestinationType::Datadog, Controls::None));

    let cases = [Controls::None, Controls::Filter, Controls::Hash];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _ in 0..ROUNDS {
        for (case, rates) in cases.iter().zip(&mut rates) {
            rates.push(runtime.block_on(run(DestinationType::GrafanaLoki, *case)));
        }
    }
    let median = |rates: &mut Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let medians: Vec<f64> = rates.iter_mut().map(median).collect();
    println!("Loki, medians of {ROUNDS} interleaved rounds, relative to no controls:");
    for (case, rate) in cases.iter().zip(&medians) {
        println!(
            "  {:<32}: {:>8.0} events/s, {:.2}x",
            case.name(),
            rate,
            rate / medians[0]
        );
    }
}
