//! Cost of the stream controls on the hot path of a delivery, as throughput relative to the
//! same records delivered unchanged (encoded for Loki and gzipped at the product's level).
//! Issue 15's targets: at least 0.8× with a filter of 5 actions, at least 0.5× with HASH on 4
//! fields. Run with `cargo bench -p event-log-streaming --bench controls`.
//!
//! The filter's 5 entries match every bench record, so every record is read and still
//! encoded: the filter's own cost, not the saving of records it drops. A redacted record is
//! written with `Payload::add_line`, without being parsed again.

use std::hint::black_box;
use std::time::Duration;

use event_log_streaming::destination::{self, LogLabels, Payload};
use event_log_streaming::domain::DestinationType;
use event_log_streaming::domain::controls::{
    EventFilter, EventFilterBody, Redaction, RedactionBody, RedactionKey, Redactor,
};
use event_log_streaming::event::EventRecord;
use event_log_streaming::gzip::gzip;

mod support;

use support::{RECORDS, measure, records};

fn main() {
    let labels = LogLabels {
        source: "stytch".into(),
        service: "stytch.auth".into(),
    };
    let records = records();
    let loki = DestinationType::GrafanaLoki;
    let deliver = |records: &mut dyn Iterator<Item = &EventRecord>| {
        let mut payload = Payload::new(loki, &labels, destination::limits(loki));
        records.for_each(|r| payload.add(r));
        black_box(gzip(&payload.finish()));
    };

    let filter = EventFilter::parse(&EventFilterBody {
        actions: Some(
            [
                "MagicLinks*",
                "Passwords*",
                "OAuthAuthenticate",
                "SessionsAuthenticate",
                "TotpsAuthenticate",
            ]
            .map(String::from)
            .to_vec(),
        ),
        statuses: None,
    })
    .unwrap();
    let redaction = Redaction::parse(&RedactionBody {
        fields: ["ip_address", "user_agent", "request_id", "project_name"]
            .map(String::from)
            .to_vec(),
        mode: "HASH".into(),
    })
    .unwrap();
    let redactor = Redactor::new(&redaction, Some(&RedactionKey::generate().unwrap())).unwrap();

    let unchanged = measure(|| deliver(&mut records.iter()));
    let filtered = measure(|| deliver(&mut records.iter().filter(|r| filter.matches(r.raw))));
    // The uncompressed Loki body, with each record's line redacted or as it is.
    let encode = |redact: bool| {
        let mut payload = Payload::new(loki, &labels, destination::limits(loki));
        for record in &records {
            if redact {
                payload.add_line(record, &redactor.apply(record.line()));
            } else {
                payload.add(record);
            }
        }
        payload.finish()
    };
    let hashed = measure(|| {
        black_box(gzip(&encode(true)));
    });
    // Where the HASH case's time goes: 4 × 64 random hex digits per record compress far
    // worse than the text they replace, so gzip does more work on them.
    let encode_only = |redact: bool| measure(|| drop(black_box(encode(redact))));
    let (plain_body, hashed_body) = (encode(false), encode(true));
    let gzip_plain = measure(|| {
        black_box(gzip(&plain_body));
    });
    let gzip_hashed = measure(|| {
        black_box(gzip(&hashed_body));
    });
    let hash_only = measure(|| {
        records.iter().for_each(|r| {
            black_box(redactor.apply(r.line()));
        })
    });

    let per_s = |time: Duration| RECORDS as f64 / time.as_secs_f64();
    println!(
        "{RECORDS} records, Loki encoding and gzip level {}",
        event_log_streaming::gzip::LEVEL
    );
    println!("unchanged          : {:>9.0} records/s", per_s(unchanged));
    for (case, time) in [
        ("filter, 5 actions", filtered),
        ("HASH on 4 fields", hashed),
    ] {
        println!(
            "{case:<19}: {:>9.0} records/s, {:.2}x unchanged",
            per_s(time),
            unchanged.as_secs_f64() / time.as_secs_f64()
        );
    }
    println!("HASH alone         : {:>9.0} records/s", per_s(hash_only));
    println!(
        "encode only        : {:>9.0} records/s unchanged, {:>9.0} with HASH",
        per_s(encode_only(false)),
        per_s(encode_only(true))
    );
    println!(
        "gzip only          : {:>9.0} records/s unchanged ({} → {} bytes), {:>9.0} with HASH ({} → {} bytes)",
        per_s(gzip_plain),
        plain_body.len(),
        gzip(&plain_body).len(),
        per_s(gzip_hashed),
        hashed_body.len(),
        gzip(&hashed_body).len()
    );
}
