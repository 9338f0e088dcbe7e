//! Throughput of the hot path of a delivery: encoding records for each destination and
//! gzipping the body, with the streamer's compressor (libdeflate) and, beside it, zlib-rs
//! through flate2. Run with `make bench`.

use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

use event_log_streaming::destination::{self, LogLabels, Payload};
use event_log_streaming::domain::DestinationType;
use event_log_streaming::gzip::Gzip;
use flate2::Compression;
use flate2::write::GzEncoder;

mod support;

use support::{RECORDS, measure, records};

fn mb_per_s(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / 1e6 / time.as_secs_f64()
}

fn main() {
    let labels = LogLabels {
        source: "stytch".into(),
        service: "stytch.auth".into(),
    };
    let records = records();
    let raw_bytes: usize = records.iter().map(|r| r.line().len()).sum();
    println!("{RECORDS} records, {raw_bytes} bytes of record JSON");

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
        for level in [1, 5, 6, 9] {
            let mut libdeflate = Gzip::new(level);
            let mut compressed = Vec::new();
            let time = measure(|| {
                compressed = libdeflate.compress(&body);
                black_box(&compressed);
            });
            print!(
                "gzip   {destination:<12} level {level}: libdeflate {:>6.1} MB/s in, ratio {:.2}",
                mb_per_s(body.len(), time),
                body.len() as f64 / compressed.len() as f64
            );
            let time = measure(|| {
                let mut encoder = GzEncoder::new(Vec::new(), Compression::new(level as u32));
                encoder.write_all(&body).unwrap();
                compressed = encoder.finish().unwrap();
                black_box(&compressed);
            });
            println!(
                "; zlib-rs {:>6.1} MB/s in, ratio {:.2}",
                mb_per_s(body.len(), time),
                body.len() as f64 / compressed.len() as f64
            );
        }
    }
}
