//! What the benches of this crate share: the bench events and a median timer.

use std::time::{Duration, Instant};

use event_log_streaming::event::{EventRecord, QueueMessage, parse_message};
use time::OffsetDateTime;

pub const RECORDS: usize = 2_000;
pub const ROUNDS: usize = 15;

/// Event records shaped like the platform's: a few hundred bytes, mostly repeated keys.
pub fn records() -> Vec<EventRecord<'static>> {
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
pub fn measure(mut f: impl FnMut()) -> Duration {
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
