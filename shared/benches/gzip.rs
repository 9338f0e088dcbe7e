//! Throughput of the hot path of a delivery: encoding records for each destination and
//! gzipping the body. Run with `make bench`; compare flate2 backends with
//! `cargo bench -p event-log-streaming --bench gzip --no-default-features` (miniz_oxide).

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use event_log_streaming::destination::{self, LogLabels, Payload};
use event_log_streaming::domain::DestinationType;
use event_log_streaming::event::{EventRecord, QueueMessage, parse_message};
use flate2::Compression;
use flate2::write::GzEncoder;
use time::OffsetDateTime;

const RECORDS: usize = 2_000;
const ROUNDS: usize = 15;

/// Event records shaped like the platform's: a few hundred bytes, mostly repeated keys.
fn records() -> Vec<EventRecord<'static>> {
    let actions = [
        "MagicLinksEmailLoginOrCreate",
        "PasswordsAuthenticate",
        "OAuthAuthenticate",
        "SessionsAuthenticate",
    ];
    let statuses = ["start", "success", "error"];
    let records: Vec<String> = (0..RECORDS)
        .map(|i| {
            format!(
                r#"{{"event_id":"event-live-{i:08x}-4a1c-9e0f","project_id":"project-live-{p:04}","project_name":"Acme {p}","action":"{a}","status":"{s}","request_id":"request-id-live-{i:012x}","http_status_code":{c},"timestamp":"2026-11-24T10:{m:02}:{sec:02}.{i:03}Z","ip_address":"203.0.113.{o}","user_agent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15"}}"#,
                p = i % 7,
                a = actions[i % actions.len()],
                s = statuses[i % statuses.len()],
                c = if i % 3 == 2 { 401 } else { 200 },
                m = (i / 60) % 60,
                sec = i % 60,
                o = i % 250,
            )
        })
        .collect();
    // Leaked: the records borrow from their message, which lives as long as the bench.
    let message: &'static QueueMessage = Box::leak(Box::new(QueueMessage::new(
        "bench",
        format!("[{}]", records.join(",")),
        OffsetDateTime::now_utc(),
    )));
    parse_message(message)
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

/// Median time of `ROUNDS` runs.
fn measure(mut f: impl FnMut()) -> Duration {
    f();
    let mut times: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[ROUNDS / 2]
}

fn mb_per_s(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / 1e6 / time.as_secs_f64()
}

fn main() {
    let backend = if cfg!(feature = "zlib-rs") {
        "zlib-rs"
    } else {
        "miniz_oxide"
    };
    let labels = LogLabels {
        source: "stytch".into(),
        service: "stytch.auth".into(),
    };
    let records = records();
    let raw_bytes: usize = records.iter().map(|r| r.line().len()).sum();
    println!("{RECORDS} records, {raw_bytes} bytes of record JSON; flate2 backend: {backend}");

    for destination in [DestinationType::GrafanaLoki, DestinationType::Datadog] {
        let mut body = Vec::new();
        let time = measure(|| {
            let mut payload = Payload::new(destination, &labels, destination::limits(destination));
            records.iter().for_each(|r| payload.add(r));
            body = payload.finish();
            black_box(&body);
        });
        println!(
            "encode {destination:<12}: {:>7.1} MB/s of body, {:>9.0} records/s ({} bytes)",
            mb_per_s(body.len(), time),
            RECORDS as f64 / time.as_secs_f64(),
            body.len()
        );
        for level in [1, 6, 9] {
            let mut compressed = Vec::new();
            let time = measure(|| {
                let mut encoder = GzEncoder::new(Vec::new(), Compression::new(level));
                encoder.write_all(&body).unwrap();
                compressed = encoder.finish().unwrap();
                black_box(&compressed);
            });
            println!(
                "gzip   {destination:<12} level {level}: {:>7.1} MB/s in, ratio {:.2}",
                mb_per_s(body.len(), time),
                body.len() as f64 / compressed.len() as f64
            );
        }
    }
}
