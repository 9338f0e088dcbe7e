//! The streamer as Lambda runs it: the release binary (`target/release/streamer`), fed SQS
//! events in Lambda's JSON through a stand-in of the Lambda Runtime API, reading its
//! configuration from moto, pushing to a loopback TLS sink that answers at once.
//!
//! Per case it prints events per CPU-second of the streamer process (user + sys, from
//! `/proc/<pid>/task/*/schedstat`, measured after one warm-up batch), peak RSS (`VmHWM`), requests per
//! 1,000 events, gzipped bytes per event, and init time (process start to the first `next`
//! call); beside them, two references measured in the same run:
//! - the **grouped reference** of each case, on the case's own events, batch by batch: parse
//!   each SQS event, group its records by project, encode each project's pushes and gzip each
//!   with one compressor reused. It makes the same bodies as the streamer, so what the
//!   streamer spends beyond it is the rest of a push: the request, TLS, the answer,
//!   bookkeeping, health, logs. It is measured twice: `×grp` is the ratio to it as issue 16
//!   defines it (zlib-rs, level 6, state reused), `×own` the ratio to it compressing as the
//!   streamer does (libdeflate at `gzip::LEVEL`), and `µs/push` the CPU per push beyond the
//!   latter;
//! - the **one-project reference**, as before: parse one 6 MB SQS event of one project, encode
//!   its Loki pushes, gzip them at level 6 (zlib-rs).
//!
//! Run with `make bench` (which builds the release binary first).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use event_log_streaming::destination::{self, LogLabels, Payload};
use event_log_streaming::domain::{DeliveryHealth, DestinationType, StreamControls};
use event_log_streaming::event::{EventRecord, QueueMessage, parse_message};
use event_log_streaming::gzip::{self as deflate, Gzip, gzip};
use event_log_streaming::store::HealthWrite;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use integration_tests::aws::{CallCounter, create_stream_table};
use integration_tests::fake_destination::FakeDestination;
use integration_tests::fixtures::{
    Zipf, datadog_config, filter_on, hash_of, loki_config, provision,
};
use integration_tests::moto::moto;
use integration_tests::tls::pki;
use integration_tests::zlib_reference::ZlibGzip;
use serde_json::json;
use streamer::SqsBatch;
use tokio::net::TcpListener;

const DATADOG_KEY: &str = "0123456789abcdef0123456789abcdef";
const EVENTS_PER_CASE: usize = 20_000;
const ZIPF_PROJECTS: usize = 500;

#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    destination: DestinationType,
    /// 1, or [`ZIPF_PROJECTS`] with Zipf-distributed traffic.
    projects: usize,
    events_per_message: usize,
    messages_per_batch: usize,
    /// The stream controls of the case's project (1 project, Loki, only).
    controls: Controls,
}

/// Stream controls of a case, against the same case without: the targets are at least
/// 0.8x with a filter of 5 actions and 0.5x with HASH on 4 fields.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Controls {
    None,
    /// `event_filter` on 5 actions that pass every bench record (its own cost, not the saving
    /// of the records it would drop).
    Filter,
    /// HASH on `ip_address`, `user_agent`, `request_id` and `project_name`.
    Hash,
}

impl Controls {
    /// The project provisioned with these controls.
    fn project(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::Filter => Some("bench-filter"),
            Self::Hash => Some("bench-hash"),
        }
    }

    fn stream_controls(self) -> StreamControls {
        match self {
            Self::None => StreamControls::default(),
            Self::Filter => filter_on(&[
                "MagicLinks*",
                "Passwords*",
                "OTPs*",
                "SessionsAuthenticate",
                "OAuthGoogleStart",
            ]),
            Self::Hash => hash_of(&["ip_address", "user_agent", "request_id", "project_name"]),
        }
    }
}

const CASES: [Case; 8] = [
    Case {
        name: "Loki, 1 project, batches of 100 one-event messages",
        destination: DestinationType::GrafanaLoki,
        projects: 1,
        events_per_message: 1,
        messages_per_batch: 100,
        controls: Controls::None,
    },
    Case {
        name: "Datadog, 1 project, batches of 100 one-event messages",
        destination: DestinationType::Datadog,
        projects: 1,
        events_per_message: 1,
        messages_per_batch: 100,
        controls: Controls::None,
    },
    Case {
        name: "Loki, 500 projects (Zipf), batches of 100",
        destination: DestinationType::GrafanaLoki,
        projects: ZIPF_PROJECTS,
        events_per_message: 1,
        messages_per_batch: 100,
        controls: Controls::None,
    },
    Case {
        name: "Loki, 500 projects (Zipf), batches of 1,000",
        destination: DestinationType::GrafanaLoki,
        projects: ZIPF_PROJECTS,
        events_per_message: 1,
        messages_per_batch: 1_000,
        controls: Controls::None,
    },
    Case {
        name: "Loki, 1 project, messages of 10 events",
        destination: DestinationType::GrafanaLoki,
        projects: 1,
        events_per_message: 10,
        messages_per_batch: 100,
        controls: Controls::None,
    },
    Case {
        name: "Loki, 500 projects, 6 MB batches (5,000 messages)",
        destination: DestinationType::GrafanaLoki,
        projects: ZIPF_PROJECTS,
        events_per_message: 1,
        messages_per_batch: 5_000,
        controls: Controls::None,
    },
    Case {
        name: "Loki, 1 project, batches of 100, filter on 5 actions",
        destination: DestinationType::GrafanaLoki,
        projects: 1,
        events_per_message: 1,
        messages_per_batch: 100,
        controls: Controls::Filter,
    },
    Case {
        name: "Loki, 1 project, batches of 100, HASH on 4 fields",
        destination: DestinationType::GrafanaLoki,
        projects: 1,
        events_per_message: 1,
        messages_per_batch: 100,
        controls: Controls::Hash,
    },
];

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// An auth event of about 1.2 KB with the random ids real ones carry.
fn record(rng: &mut fastrand::Rng, project: &str) -> String {
    let id = |rng: &mut fastrand::Rng, kind: &str| format!("{kind}-live-{:032x}", rng.u128(..));
    const ACTIONS: [&str; 5] = [
        "MagicLinksEmailLoginOrCreate",
        "PasswordsAuthenticate",
        "OTPsSmsSend",
        "SessionsAuthenticate",
        "OAuthGoogleStart",
    ];
    let action = ACTIONS[rng.usize(..ACTIONS.len())];
    let status = ["start", "success", "error"][rng.usize(..3)];
    let http_status = [200, 200, 200, 401, 429][rng.usize(..5)];
    json!({
        "event_id": id(rng, "event"),
        "project_id": project,
        "project_name": "Acme Production",
        "action": action,
        "status": status,
        "request_id": id(rng, "request-id"),
        "http_status_code": http_status,
        "timestamp": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap(),
        "user_id": id(rng, "user"),
        "session_id": id(rng, "session"),
        "ip_address": format!("{}.{}.{}.{}", rng.u8(1..), rng.u8(..), rng.u8(..), rng.u8(1..)),
        "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        "email": format!("user{}@example.com", rng.u32(..1_000_000)),
        "country": "US", "region": "CA", "city": "San Francisco",
        "details": {
            "method": "email", "organization_id": id(rng, "organization"),
            "member_id": id(rng, "member"), "auth_factor": "magic_link",
            "expires_at": "2026-11-24T11:00:00Z",
            "device_fingerprint": id(rng, "fingerprint"),
            "risk": {"score": rng.u8(..100), "verdict": "ALLOW", "reasons": ["KNOWN_DEVICE", "KNOWN_IP"]},
        },
        "latency_ms": rng.u32(5..900),
    })
    .to_string()
}

/// One SQS message in Lambda's JSON, sent at `sent_ms` (Unix milliseconds).
fn sqs_message(id: &str, body: String, sent_ms: u128) -> serde_json::Value {
    json!({
        "messageId": id,
        "receiptHandle": format!("handle-{id}"),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": sent_ms.to_string(),
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": sent_ms.to_string(),
        },
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:events",
        "awsRegion": "us-east-1",
    })
}

/// The SQS events of a case, in Lambda's JSON.
fn events_of(case: Case, rng: &mut fastrand::Rng, batches: usize) -> Vec<String> {
    // One project, or Zipf(1) over [`ZIPF_PROJECTS`].
    let projects = Zipf::new(case.projects);
    let project_of = |rng: &mut fastrand::Rng| match (case.destination, case.controls.project()) {
        (DestinationType::Datadog, _) => "bench-datadog".to_owned(),
        (DestinationType::GrafanaLoki, Some(project)) => project.to_owned(),
        (DestinationType::GrafanaLoki, None) => format!("bench-{}", projects.sample(rng)),
    };
    (0..batches)
        .map(|b| {
            let records: Vec<serde_json::Value> = (0..case.messages_per_batch)
                .map(|m| {
                    let one = |rng: &mut fastrand::Rng| {
                        let project = project_of(rng);
                        record(rng, &project)
                    };
                    let body = if case.events_per_message == 1 {
                        one(rng)
                    } else {
                        let records: Vec<String> =
                            (0..case.events_per_message).map(|_| one(rng)).collect();
                        format!("[{}]", records.join(","))
                    };
                    sqs_message(&format!("{b}-{m}"), body, now_ms())
                })
                .collect();
            json!({ "Records": records }).to_string()
        })
        .collect()
}

/// A stand-in of the Lambda Runtime API: hands out the queued events one `next` at a time
/// and counts the answers.
#[derive(Default)]
struct RuntimeApi {
    events: Mutex<VecDeque<String>>,
    next_calls: AtomicUsize,
    first_next: Mutex<Option<Instant>>,
    responses: AtomicUsize,
    failed_items: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

impl RuntimeApi {
    async fn serve(self: Arc<Self>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let api = self.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| api.clone().handle(request));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        address
    }

    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let path = request.uri().path().to_owned();
        if path.ends_with("/invocation/next") {
            self.first_next
                .lock()
                .unwrap()
                .get_or_insert_with(Instant::now);
            self.next_calls.fetch_add(1, Ordering::SeqCst);
            loop {
                let event = self.events.lock().unwrap().pop_front();
                if let Some(event) = event {
                    let id = format!("invocation-{}", self.next_calls.load(Ordering::SeqCst));
                    let deadline = now_ms() + 60_000;
                    let response = Response::builder()
                        .header("lambda-runtime-aws-request-id", id)
                        .header("lambda-runtime-deadline-ms", deadline.to_string())
                        .header(
                            "lambda-runtime-invoked-function-arn",
                            "arn:aws:lambda:us-east-1:123456789012:function:streamer",
                        )
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(event)))
                        .unwrap();
                    return Ok(response);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let body = request
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if path.ends_with("/response") {
            let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let failures = answer["batchItemFailures"].as_array().map_or(0, Vec::len);
            self.failed_items.fetch_add(failures, Ordering::SeqCst);
            self.responses.fetch_add(1, Ordering::SeqCst);
        } else {
            self.errors
                .lock()
                .unwrap()
                .push(format!("{path}: {}", String::from_utf8_lossy(&body)));
            self.responses.fetch_add(1, Ordering::SeqCst);
        }
        Ok(Response::builder()
            .status(202)
            .body(Full::new(Bytes::new()))
            .unwrap())
    }

    async fn invoke(&self, event: String) {
        let before = self.responses.load(Ordering::SeqCst);
        self.events.lock().unwrap().push_back(event);
        while self.responses.load(Ordering::SeqCst) == before {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
}

/// CPU seconds (user + sys) a process has used so far: the time its threads have run, in
/// nanoseconds (`/proc/<pid>/task/*/schedstat`), rather than `stat`'s 10 ms ticks.
fn cpu_seconds(pid: u32) -> f64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let nanos: u64 = tasks
        .filter_map(|task| std::fs::read_to_string(task.unwrap().path().join("schedstat")).ok())
        .map(|stat| {
            stat.split_whitespace()
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    nanos as f64 / 1e9
}

fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb / 1024.0
}

struct Environment {
    table: String,
    prefix: String,
}

async fn provision_projects(sink: &FakeDestination) -> Environment {
    let aws = moto().sdk_config().await;
    let calls = CallCounter::default();
    let dynamodb = calls.dynamodb(&aws);
    let table = format!("bench-{}", std::process::id());
    create_stream_table(&dynamodb, &table).await;
    let prefix = format!("bench-{}/", std::process::id());
    let streams = event_log_streaming::store::DynamoDbStreams::new(dynamodb, table.clone());
    let credentials = event_log_streaming::store::SecretsManagerCredentials::new(
        calls.secrets_manager(&aws),
        prefix.clone(),
    );
    // Streams that have delivered before, as in a running deployment: a container's first
    // success of a stream whose stored health already shows successes writes nothing, while
    // on a fresh table each stream's first delivery would write its health at once.
    let mut delivered = DeliveryHealth::default();
    delivered.success(time::OffsetDateTime::now_utc());
    for rank in 0..ZIPF_PROJECTS {
        let config = provision(
            &streams,
            &credentials,
            &format!("bench-{rank}"),
            loki_config(&sink.hostname(), "user", "token-for-the-bench"),
        )
        .await;
        streams.record(&config, &delivered).await.unwrap();
    }
    for controls in [Controls::Filter, Controls::Hash] {
        let mut spec = loki_config(&sink.hostname(), "user", "token-for-the-bench");
        spec.controls = controls.stream_controls();
        let project = controls.project().unwrap();
        let config = provision(&streams, &credentials, project, spec).await;
        streams.record(&config, &delivered).await.unwrap();
    }
    provision(
        &streams,
        &credentials,
        "bench-datadog",
        datadog_config(DATADOG_KEY),
    )
    .await;
    Environment { table, prefix }
}

/// The streamer binary `make bench` built, or `BENCH_STREAMER` (a build with symbols, to
/// profile).
fn streamer_binary() -> PathBuf {
    let path = std::env::var_os("BENCH_STREAMER").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/streamer"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} not found: run `make bench`, which builds it",
        path.display()
    );
    path
}

/// An SQS event's messages, as the streamer's handler reads them.
fn queue_messages(event: &str) -> Vec<QueueMessage> {
    let batch: SqsBatch = serde_json::from_str(event).unwrap();
    let received_at = time::OffsetDateTime::now_utc();
    batch
        .records
        .into_iter()
        .map(|m| m.into_queue_message(None, received_at))
        .collect()
}

fn records_of(messages: &[QueueMessage]) -> Vec<EventRecord<'_>> {
    messages
        .iter()
        .flat_map(parse_message)
        .map(Result::unwrap)
        .collect()
}

/// The bare work for one 6 MB SQS event of one project: parse, encode Loki pushes, gzip.
fn reference_events_per_second(rng: &mut fastrand::Rng) -> f64 {
    let case = CASES[5];
    let one_project = Case {
        projects: 1,
        ..case
    };
    let event = events_of(one_project, rng, 1).remove(0);
    let labels = LogLabels {
        source: "stytch".into(),
        service: "stytch.auth".into(),
    };
    let limits = destination::limits(DestinationType::GrafanaLoki);
    // The reference compresses as issue 16 defines it, whatever compressor the streamer uses.
    let mut gzip = ZlibGzip::new(6);
    let mut rates = Vec::new();
    for _ in 0..7 {
        let started = Instant::now();
        let messages = queue_messages(&event);
        let records = records_of(&messages);
        let mut compressed = 0;
        let mut next = 0;
        while next < records.len() {
            let mut payload = Payload::new(DestinationType::GrafanaLoki, &labels, limits);
            payload.reserve_for(records[next..].iter().map(EventRecord::line));
            while next < records.len() && payload.try_add(&records[next]) {
                next += 1;
            }
            compressed += gzip.compress(&payload.finish()).len();
        }
        assert!(compressed > 0);
        rates.push(records.len() as f64 / started.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// The grouped reference of a case, on its own events: each SQS event parsed, its records
/// grouped by project (in time order, as the streamer sends them), each project's pushes
/// encoded and gzipped by `compress`, one compressor reused. Events per CPU-second (median of
/// 5 rounds, one thread) and the bodies it made.
fn grouped_reference(
    case: Case,
    events: &[String],
    mut compress: impl FnMut(&[u8]) -> Vec<u8>,
) -> (f64, usize) {
    let labels = LogLabels {
        source: "stytch".into(),
        service: "stytch.auth".into(),
    };
    let limits = destination::limits(case.destination);
    let mut rates = Vec::new();
    let mut bodies = 0;
    for _ in 0..5 {
        bodies = 0;
        let mut records_seen = 0;
        let started = thread_cpu_seconds();
        for event in events {
            let messages = queue_messages(event);
            let records = records_of(&messages);
            records_seen += records.len();
            let mut by_project: HashMap<&str, Vec<&EventRecord>> = HashMap::new();
            for record in &records {
                by_project
                    .entry(record.project_id.as_str())
                    .or_default()
                    .push(record);
            }
            for (_, mut records) in by_project {
                records.sort_by_key(|r| r.event_time);
                let mut next = 0;
                while next < records.len() {
                    let mut payload = Payload::new(case.destination, &labels, limits);
                    payload.reserve_for(records[next..].iter().map(|r| r.line()));
                    while next < records.len() && payload.try_add(records[next]) {
                        next += 1;
                    }
                    assert!(!compress(&payload.finish()).is_empty());
                    bodies += 1;
                }
            }
        }
        rates.push(records_seen as f64 / (thread_cpu_seconds() - started));
    }
    rates.sort_by(f64::total_cmp);
    (rates[rates.len() / 2], bodies)
}

/// CPU time of the calling thread (`/proc/thread-self/schedstat`): like the streamer's, it
/// does not count time another process held the core.
fn thread_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    let nanos: u64 = stat.split_whitespace().next().unwrap().parse().unwrap();
    nanos as f64 / 1e9
}

/// What a byte pushed and a CPU-microsecond of the streamer cost: data transfer out at
/// $0.09 per GB; Lambda arm64 at $0.0000133334 per GB-second for 512 MB, which AWS gives
/// 512/1,769 of a vCPU, so a CPU-bound microsecond bills 1,769/512 µs of wall time.
const DOLLARS_PER_BYTE: f64 = 0.09 / 1e9;
const DOLLARS_PER_CPU_MICROSECOND: f64 = 0.000_013_333_4 * 0.5 * (1769.0 / 512.0) / 1e6;

/// gzip levels on these events, for pushes of a few sizes: compressed bytes and CPU time per
/// event, and what the two cost per million events pushed.
fn gzip_levels(rng: &mut fastrand::Rng) {
    let labels = LogLabels {
        source: "stytch".into(),
        service: "stytch.auth".into(),
    };
    let case = Case {
        projects: 1,
        ..CASES[5]
    };
    let messages = queue_messages(&events_of(case, rng, 1).remove(0));
    let records = records_of(&messages);
    let limits = destination::limits(DestinationType::GrafanaLoki);
    println!(
        "gzip levels on these events (Loki pushes; per event: gzipped bytes, CPU µs; $ per million events pushed, egress + Lambda CPU)"
    );
    print!("{:<18}", "events per push");
    for level in 1..=9 {
        print!(" {:>18}", format!("level {level}"));
    }
    println!(" {:>18}", "zlib-rs 5, before");
    for per_push in [1, 2, 3, 10, 100, 800] {
        let pushes: Vec<&[EventRecord]> = records
            .chunks(per_push)
            .take(2_000 / per_push.min(100))
            .collect();
        let events: usize = pushes.iter().map(|p| p.len()).sum();
        let bodies: Vec<Vec<u8>> = pushes
            .iter()
            .map(|push| {
                let mut payload = Payload::new(DestinationType::GrafanaLoki, &labels, limits);
                push.iter().for_each(|r| payload.add(r));
                payload.finish()
            })
            .collect();
        let study = |compress: &mut dyn FnMut(&[u8]) -> Vec<u8>| {
            let mut times = Vec::new();
            let mut bytes = 0;
            for _ in 0..5 {
                let started = Instant::now();
                bytes = bodies.iter().map(|b| compress(b).len()).sum::<usize>();
                times.push(started.elapsed());
            }
            times.sort();
            let micros = times[2].as_secs_f64() * 1e6 / events as f64;
            let per_event = bytes as f64 / events as f64;
            let dollars =
                (per_event * DOLLARS_PER_BYTE + micros * DOLLARS_PER_CPU_MICROSECOND) * 1e6;
            print!(" {:>5.0} B {:>4.1} µs ${:.4}", per_event, micros, dollars);
        };
        print!("{:<18}", per_push);
        for level in 1..=9 {
            let mut gzip = Gzip::new(level);
            study(&mut |body| gzip.compress(body));
        }
        let mut zlib = ZlibGzip::new(5);
        study(&mut |body| zlib.compress(body));
        println!();
    }
}

/// Events per push and bytes sent per streamed event as invocations grow, on the cost
/// model's mix (docs/cost.md): 5,000 projects with Zipf(1) traffic, every tenth rank
/// configured. Each configured project of an invocation gets one push of its events (these
/// events, gzipped at the streamer's level) plus about 400 bytes of request headers.
fn batching(rng: &mut fastrand::Rng) {
    const PROJECTS: usize = 5_000;
    const HEADER_BYTES: usize = 400;
    let labels = LogLabels {
        source: "stytch".into(),
        service: "stytch.auth".into(),
    };
    let limits = destination::limits(DestinationType::GrafanaLoki);
    let now = time::OffsetDateTime::now_utc();
    let messages: Vec<QueueMessage> = (0..2_000)
        .map(|i| QueueMessage::new(i.to_string(), record(rng, "bench-0"), now))
        .collect();
    let records = records_of(&messages);
    let zipf = Zipf::new(PROJECTS);
    println!(
        "events per invocation on the cost model's mix: configured events per push, bytes per streamed event"
    );
    for per_invocation in [100, 230, 500, 1_160, 2_500] {
        let (mut pushes, mut streamed, mut bytes) = (0, 0, 0);
        for _ in 0..40 {
            let mut per_project = std::collections::BTreeMap::<usize, usize>::new();
            for _ in 0..per_invocation {
                let rank = zipf.sample(rng);
                if rank.is_multiple_of(10) {
                    *per_project.entry(rank).or_default() += 1;
                }
            }
            for events in per_project.values() {
                let mut payload = Payload::new(DestinationType::GrafanaLoki, &labels, limits);
                let start = rng.usize(..records.len() - events);
                records[start..start + events]
                    .iter()
                    .for_each(|r| payload.add(r));
                bytes += gzip(&payload.finish()).len() + HEADER_BYTES;
                pushes += 1;
                streamed += events;
            }
        }
        println!(
            "{per_invocation:>6} events: {:>5.1} events per push, {:>4.0} B per streamed event",
            streamed as f64 / pushes as f64,
            bytes as f64 / streamed as f64
        );
    }
}

struct Measured {
    events_per_cpu_second: f64,
    peak_rss_mb: f64,
    requests_per_thousand: f64,
    bytes_per_event: f64,
    init_ms: f64,
}

/// The case's SQS events: a warm-up batch, then `BENCH_EVENTS` (default
/// [`EVENTS_PER_CASE`]) events; more give a profile more samples.
fn case_events(case: Case, rng: &mut fastrand::Rng) -> Vec<String> {
    let events_per_case = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(EVENTS_PER_CASE);
    let batches = events_per_case / (case.messages_per_batch * case.events_per_message) + 1;
    events_of(case, rng, batches)
}

/// The release streamer as Lambda starts it, its runtime API at `runtime_address`.
fn start_streamer(
    environment: &Environment,
    sink: &FakeDestination,
    runtime_address: &str,
) -> Child {
    Command::new(streamer_binary())
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", runtime_address)
        .env("AWS_LAMBDA_FUNCTION_NAME", "streamer")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
        .env("AWS_ENDPOINT_URL", &moto().endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("STREAM_TABLE_NAME", &environment.table)
        .env("CONFIG_SECRET_PREFIX", &environment.prefix)
        .env("CONFIG_CACHE_TTL_SECONDS", "3600")
        .env("EXTRA_CA_CERTS", &pki().ca_file)
        .env("ALLOW_PRIVATE_DESTINATIONS", "true")
        .env("DATADOG_INTAKE_URL", sink.base_url())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the streamer")
}

async fn run_case(
    case: Case,
    environment: &Environment,
    sink: &FakeDestination,
    events: Vec<String>,
) -> Measured {
    let api = Arc::new(RuntimeApi::default());
    let runtime_address = api.clone().serve().await;

    let started = Instant::now();
    let mut child = start_streamer(environment, sink, &runtime_address);
    let pid = child.id();
    if std::env::var_os("BENCH_PRINT_PID").is_some() {
        eprintln!("streamer pid {pid}");
    }
    let mut events = events.into_iter();
    // The first batch warms connections and the configuration cache; it is not measured.
    api.invoke(events.next().unwrap()).await;
    let init = api.first_next.lock().unwrap().unwrap() - started;
    let cpu_before = cpu_seconds(pid);
    let requests_before = sink.requests();
    let bytes_before = sink.body_bytes();
    let mut measured_events = 0;
    for event in events {
        api.invoke(event).await;
        measured_events += case.messages_per_batch * case.events_per_message;
    }
    let cpu = cpu_seconds(pid) - cpu_before;
    let peak = peak_rss_mb(pid);
    child.kill().unwrap();
    child.wait().unwrap();
    let errors = api.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        api.failed_items.load(Ordering::SeqCst),
        0,
        "messages failed"
    );
    Measured {
        events_per_cpu_second: measured_events as f64 / cpu,
        peak_rss_mb: peak,
        requests_per_thousand: (sink.requests() - requests_before) as f64 * 1000.0
            / measured_events as f64,
        bytes_per_event: (sink.body_bytes() - bytes_before) as f64 / measured_events as f64,
        init_ms: init.as_secs_f64() * 1e3,
    }
}

/// The template's event source: a batch is invoked when it holds `BatchSize` messages or its
/// first message has waited `MaximumBatchingWindowInSeconds`, whichever comes first.
const TEMPLATE_BATCH_SIZE: usize = 1_000;
const TEMPLATE_BATCHING_WINDOW_S: f64 = 5.0;
/// 100 M events a day is 1,157 a second; Lambda starts five pollers on a queue, so each
/// gathers about a fifth of them.
const STEADY_MESSAGES_PER_SECOND_PER_POLLER: f64 = 231.0;
const STEADY_BATCHES: usize = 40;

/// Delivery lag at the template's settings: a steady (Poisson) stream of one-event messages
/// of the 500 Zipf projects, gathered into batches as the event source does, each invoked on
/// the release streamer as it closes. An event's lag is the batching window's part (its batch
/// closes − it was sent: simulated time, since waiting is all the window does) plus the
/// processing part (the invocation, from the event handed over to the answer, which comes
/// after every push was acknowledged: measured). The sink answers at once, so a real
/// destination's round trip comes on top of the processing part. Percentiles are over events.
async fn steady_load_lag(
    environment: &Environment,
    sink: &FakeDestination,
    rng: &mut fastrand::Rng,
) {
    let api = Arc::new(RuntimeApi::default());
    let runtime_address = api.clone().serve().await;
    let mut child = start_streamer(environment, sink, &runtime_address);
    let projects = Zipf::new(ZIPF_PROJECTS);
    let mut clock = 0.0_f64;
    let mut window_parts = Vec::new();
    let mut processing_parts = Vec::new();
    let mut totals = Vec::new();
    let mut invocations = Vec::new();
    // The first batch warms connections and caches, as in the cases above; not measured.
    for batch in 0..=STEADY_BATCHES {
        let mut sent: Vec<f64> = Vec::new();
        let opened = clock
            + rng.f64().max(f64::MIN_POSITIVE).ln().abs() / STEADY_MESSAGES_PER_SECOND_PER_POLLER;
        let mut next = opened;
        while sent.len() < TEMPLATE_BATCH_SIZE && next <= opened + TEMPLATE_BATCHING_WINDOW_S {
            sent.push(next);
            next +=
                rng.f64().max(f64::MIN_POSITIVE).ln().abs() / STEADY_MESSAGES_PER_SECOND_PER_POLLER;
        }
        let closed = if sent.len() == TEMPLATE_BATCH_SIZE {
            *sent.last().unwrap()
        } else {
            opened + TEMPLATE_BATCHING_WINDOW_S
        };
        clock = closed;
        let now = now_ms();
        let records: Vec<serde_json::Value> = sent
            .iter()
            .enumerate()
            .map(|(m, at)| {
                let waited_ms = ((closed - at) * 1e3) as u128;
                let project = format!("bench-{}", projects.sample(rng));
                sqs_message(
                    &format!("steady-{batch}-{m}"),
                    record(rng, &project),
                    now - waited_ms,
                )
            })
            .collect();
        let event = json!({ "Records": records }).to_string();
        let started = Instant::now();
        api.invoke(event).await;
        let processing = started.elapsed().as_secs_f64();
        if batch == 0 {
            continue;
        }
        invocations.push((processing, batch));
        for at in &sent {
            window_parts.push(closed - at);
            processing_parts.push(processing);
            totals.push(closed - at + processing);
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let errors = api.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "{errors:?}");
    let percentile = |values: &mut Vec<f64>, p: f64| {
        values.sort_by(f64::total_cmp);
        values[((values.len() - 1) as f64 * p).round() as usize]
    };
    let events = window_parts.len();
    println!(
        "delivery lag, steady load ({STEADY_MESSAGES_PER_SECOND_PER_POLLER} one-event messages/s to a poller, BatchSize {TEMPLATE_BATCH_SIZE}, window {TEMPLATE_BATCHING_WINDOW_S} s, {ZIPF_PROJECTS} Zipf projects, {events} events in {STEADY_BATCHES} batches of {:.0} on average):",
        events as f64 / STEADY_BATCHES as f64
    );
    for (part, values, unit) in [
        ("batching window", &mut window_parts, 1.0),
        ("processing", &mut processing_parts, 1e3),
        ("total", &mut totals, 1.0),
    ] {
        let (p50, p99) = (
            percentile(values, 0.5) * unit,
            percentile(values, 0.99) * unit,
        );
        let unit = if unit == 1.0 { "s" } else { "ms" };
        println!("  {part:<16} p50 {p50:>7.2} {unit}, p99 {p99:>7.2} {unit}");
    }
    invocations.sort_by(|a, b| b.0.total_cmp(&a.0));
    let slowest: Vec<String> = invocations
        .iter()
        .take(3)
        .map(|(seconds, batch)| format!("batch {batch}: {:.0} ms", seconds * 1e3))
        .collect();
    println!("  slowest invocations: {}", slowest.join(", "));
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut rng = fastrand::Rng::with_seed(2026);
        let sink = FakeDestination::sink().await;
        let environment = provision_projects(&sink).await;
        // `BENCH_STUDIES=1`: gzip levels and batching, the measurements behind `gzip::LEVEL`
        // and the template's batching window.
        if std::env::var_os("BENCH_STUDIES").is_some() {
            gzip_levels(&mut rng);
            batching(&mut rng);
        }
        let reference = reference_events_per_second(&mut rng);
        println!(
            "reference path (parse a 6 MB SQS event, encode Loki pushes, gzip level 6): {reference:.0} events/s"
        );
        println!(
            "{:<54} {:>12} {:>9} {:>7} {:>7} {:>9} {:>10} {:>9} {:>12} {:>10} {:>8}",
            "case",
            "events/CPU-s",
            "grouped",
            "×grp",
            "×own",
            "µs/push",
            "×ref",
            "peak RSS",
            "req/1k ev",
            "B/event",
            "init"
        );
        // `BENCH_CASE=zipf` (a part of a case's name, any case) runs only the cases it names.
        let only = std::env::var("BENCH_CASE").ok().map(|c| c.to_lowercase());
        let mut rates = Vec::new();
        for case in CASES {
            if only
                .as_ref()
                .is_some_and(|only| !case.name.to_lowercase().contains(only))
            {
                continue;
            }
            let events = case_events(case, &mut rng);
            // The warm-up batch is not measured by the streamer; nor here.
            let mut zlib = ZlibGzip::new(6);
            let (grouped, bodies) =
                grouped_reference(case, &events[1..], |body| zlib.compress(body));
            let mut own = Gzip::new(deflate::LEVEL);
            let (grouped_own, _) =
                grouped_reference(case, &events[1..], |body| own.compress(body));
            let measured_batches = events.len() - 1;
            let m = run_case(case, &environment, &sink, events).await;
            // CPU per push beyond encoding and compressing its body as the streamer does.
            let events_per_push = 1000.0 / m.requests_per_thousand;
            let per_push_us =
                (1e6 / m.events_per_cpu_second - 1e6 / grouped_own) * events_per_push;
            println!(
                "{:<54} {:>12.0} {:>9.0} {:>7.2} {:>7.2} {:>9.0} {:>10.2} {:>6.1} MB {:>12.1} {:>10.0} {:>5.0} ms",
                case.name,
                m.events_per_cpu_second,
                grouped,
                m.events_per_cpu_second / grouped,
                m.events_per_cpu_second / grouped_own,
                per_push_us,
                m.events_per_cpu_second / reference,
                m.peak_rss_mb,
                m.requests_per_thousand,
                m.bytes_per_event,
                m.init_ms
            );
            let streamer_bodies = m.requests_per_thousand
                * measured_batches as f64
                * (case.messages_per_batch * case.events_per_message) as f64
                / 1000.0;
            eprintln!(
                "  bodies: grouped reference {bodies}, streamer {streamer_bodies:.0} (its requests)"
            );
            rates.push((case, m.events_per_cpu_second));
        }
        // The controls' cost: each case with controls against the same case without.
        let without = |case: &Case| {
            rates.iter().find(|(other, _)| {
                other.controls == Controls::None
                    && (other.destination, other.projects, other.messages_per_batch)
                        == (case.destination, case.projects, case.messages_per_batch)
                    && other.events_per_message == case.events_per_message
            })
        };
        for (case, rate) in rates.iter().filter(|(c, _)| c.controls != Controls::None) {
            if let Some((_, base)) = without(case) {
                println!("{}: {:.2}x without controls", case.name, rate / base);
            }
        }
        // `BENCH_CASE=steady` runs only this one.
        if only.as_ref().is_none_or(|only| "steady load lag".contains(only.as_str())) {
            steady_load_lag(&environment, &sink, &mut rng).await;
        }
    });
}
