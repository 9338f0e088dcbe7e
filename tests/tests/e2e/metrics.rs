//! The streamer's metric lines and the delivery lag in the stream's health, for a known batch
//! driven through the Lambda handler against the strict local destinations and moto.

use std::sync::Arc;

use event_log_streaming::domain::DeliveryLag;
use integration_tests::clock::StillWallClock;
use integration_tests::fake_destination::{FakeDestination, Script};
use integration_tests::lambda::SqsRecord;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::config_api::Api;
use crate::helpers::*;

/// The batch's records were sent these many milliseconds before the pushes were accepted.
const LONG_AGO_MS: i128 = 90_000;
const RECENTLY_MS: i128 = 4_500;
const DATADOG_SENT_MS: i128 = 20_000;

#[tokio::test]
async fn a_batch_writes_one_metric_line_per_destination_type_and_the_health_keeps_its_lag() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let refusing_loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    refusing_loki.script([Script::Status(400, "entry has an invalid label set")]);
    let datadog = FakeDestination::datadog(DATADOG_KEY).await;
    datadog.script([Script::Status(503, "unavailable")]);
    // Every push is accepted "at" this instant: the lags below are exact.
    let accepted_at = OffsetDateTime::now_utc();
    let env = StreamerEnv::new(Options {
        datadog_intake_url: Some(datadog.base_url()),
        clock: Some(Arc::new(StillWallClock { at: accepted_at })),
        ..Options::default()
    })
    .await;
    env.configure("m-loki", loki_config(&loki.hostname(), LOKI_PASSWORD))
        .await;
    env.configure(
        "m-refused",
        loki_config(&refusing_loki.hostname(), LOKI_PASSWORD),
    )
    .await;
    env.configure(
        "m-off",
        disabled(loki_config(&loki.hostname(), LOKI_PASSWORD)),
    )
    .await;
    env.configure("m-dd", datadog_config(DATADOG_KEY)).await;
    let sent = |ago_ms: i128| ((accepted_at.unix_timestamp_nanos() / 1_000_000) - ago_ms) as u128;
    let records = |events: &[Value]| Value::Array(events.to_vec()).to_string();

    let response = env
        .invoke(vec![
            SqsRecord::new(
                "m1",
                records(&[event("m-loki", "l-1"), event("m-loki", "l-2")]),
            )
            .sent_at_ms(sent(LONG_AGO_MS)),
            SqsRecord::new("m2", event("m-loki", "l-3").to_string()).sent_at_ms(sent(RECENTLY_MS)),
            SqsRecord::new("m3", event("m-refused", "r-1").to_string()),
            SqsRecord::new("m4", event("m-off", "o-1").to_string()),
            SqsRecord::new("m5", event("m-dd", "d-1").to_string())
                .sent_at_ms(sent(DATADOG_SENT_MS)),
            SqsRecord::new("m6", event("m-nobody", "n-1").to_string()),
            SqsRecord::new("m7", "not json"),
        ])
        .await;
    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(loki.accepted_event_ids().len(), 3);
    assert_eq!(datadog.accepted_event_ids(), ["d-1"]);

    let lines: Vec<Value> = env
        .metrics
        .lines()
        .iter()
        .map(|line| serde_json::from_str(line).expect("a metric line is JSON"))
        .collect();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let line = |destination: &str| {
        lines
            .iter()
            .find(|l| l["DestinationType"] == destination)
            .unwrap_or_else(|| panic!("no line for {destination}: {lines:#?}"))
    };
    let timestamp = (accepted_at.unix_timestamp_nanos() / 1_000_000) as i64;
    for line in &lines {
        assert_eq!(line["_aws"]["Timestamp"], timestamp);
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "EventLogStreaming");
        assert_eq!(directive["Dimensions"], json!([["DestinationType"]]));
        // Every declared metric is in the line, and nothing else but the dimension.
        let declared = directive["Metrics"].as_array().unwrap();
        let members = line.as_object().unwrap().len();
        assert_eq!(members, declared.len() + 2, "{line:#}");
        for metric in declared {
            assert!(line.get(metric["Name"].as_str().unwrap()).is_some());
        }
    }

    let loki_line = line("GRAFANA_LOKI");
    let counts = |line: &Value, names: &[&str]| -> Vec<Value> {
        names.iter().map(|name| line[*name].clone()).collect()
    };
    assert_eq!(
        counts(
            loki_line,
            &[
                "RecordsReceived",
                "RecordsDelivered",
                "RecordsSkippedDisabled",
                "RecordsDeadLetteredDestinationRejected",
                "Pushes",
                "PushFailuresRejected",
                "RecordsSentBack",
            ]
        ),
        [
            json!(5),
            json!(3),
            json!(1),
            json!(1),
            json!(2),
            json!(1),
            Value::Null
        ]
    );
    // 4.5 s and twice 90 s, each reported as its bucket's middle (within 12.5 %).
    assert_eq!(
        loki_line["DeliveryLag"],
        json!({"Values": [4470.0, 89100.0], "Counts": [1, 2]})
    );
    assert_eq!(
        loki_line["_aws"]["CloudWatchMetrics"][1],
        json!({"Namespace": "EventLogStreaming", "Dimensions": [[]],
               "Metrics": [{"Name": "DeliveryLag", "Unit": "Milliseconds"}]})
    );

    let datadog_line = line("DATADOG");
    assert_eq!(
        counts(
            datadog_line,
            &[
                "RecordsReceived",
                "RecordsDelivered",
                "Pushes",
                "PushFailuresTransient"
            ]
        ),
        [json!(1), json!(1), json!(2), json!(1)]
    );
    assert_eq!(
        datadog_line["DeliveryLag"],
        json!({"Values": [22400.0], "Counts": [1]})
    );

    let none = line("NONE");
    assert_eq!(
        counts(
            none,
            &[
                "RecordsReceived",
                "RecordsSkippedNotConfigured",
                "RecordsDeadLetteredMalformedJson"
            ]
        ),
        [json!(2), json!(1), json!(1)]
    );
    assert!(none.get("DeliveryLag").is_none());
    assert_eq!(
        none["_aws"]["CloudWatchMetrics"].as_array().unwrap().len(),
        1
    );

    // The stream's health keeps its latest delivery's lag: the median of 4.5, 90 and 90 s.
    let health = env.stream("m-loki").await.health;
    assert_eq!(
        health.last_delivery_lag,
        Some(DeliveryLag {
            at: accepted_at,
            millis: 90_000,
        })
    );
    assert_eq!(env.stream("m-off").await.health.last_delivery_lag, None);

    // And the API shows it.
    let api = Api::with_stores(env.streams.clone(), env.credentials.clone(), None);
    let read = api
        .admin(
            "GET",
            "/v1/projects/m-loki/event_log_streaming/GRAFANA_LOKI",
            None,
        )
        .await;
    let shown = &read.body["event_log_streaming_config"]["delivery_health"];
    assert_eq!(shown["last_delivery_lag_ms"], 90_000);
    let at = shown["last_delivery_lag_at"].as_str().unwrap();
    let at = OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(at, accepted_at);
}
