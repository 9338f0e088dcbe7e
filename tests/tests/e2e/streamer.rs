//! The streamer Lambda handler, fed SQS events, against moto and the strict local servers.

use std::time::Duration;

use event_log_streaming::domain::controls::{EventFilterBody, RedactionBody};
use event_log_streaming::domain::{
    DatadogBody, Destination, DestinationConfigBody, DestinationType, LokiBody, StreamControls,
};
use integration_tests::fake_destination::{FakeDestination, Script};
use integration_tests::fixtures::{StreamSpec, active};
use integration_tests::lambda::{SqsRecord, now_ms};
use integration_tests::logs::capture_logs;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn events_of_several_projects_reach_their_own_destinations() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let datadog = FakeDestination::datadog(DATADOG_KEY).await;
    let env = StreamerEnv::with_datadog(&datadog).await;
    env.configure("proj-loki", loki_config(&loki.hostname(), LOKI_PASSWORD))
        .await;
    env.configure("proj-dd", datadog_config(DATADOG_KEY)).await;
    env.configure(
        "proj-off",
        disabled(loki_config(&loki.hostname(), LOKI_PASSWORD)),
    )
    .await;

    // Odd spacing and key order must survive byte-for-byte.
    let loki_body = r#"{"project_id":"proj-loki",  "event_id":"l-1","action":"PasswordsAuthenticate","status":"error","timestamp":"2026-11-24T10:00:00.5Z"}"#;
    let packed = json!([
        event("proj-loki", "l-2"),
        event("proj-dd", "d-1"),
        event("proj-none", "n-1")
    ]);
    let response = env
        .invoke(vec![
            SqsRecord::new("m1", loki_body),
            SqsRecord::new("m2", packed.to_string()),
            SqsRecord::new("m3", event("proj-dd", "d-2").to_string()),
            SqsRecord::new("m4", event("proj-off", "o-1").to_string()),
        ])
        .await;

    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(loki.violations(), Vec::<String>::new());
    assert_eq!(datadog.violations(), Vec::<String>::new());

    let mut loki_ids = loki.accepted_event_ids();
    loki_ids.sort();
    assert_eq!(loki_ids, ["l-1", "l-2"]);
    let first = loki
        .accepted()
        .into_iter()
        .find(|a| a.field("event_id") == "l-1")
        .unwrap();
    assert_eq!(first.line, loki_body);
    assert_eq!(first.timestamp, 1_795_514_400_500_000_000);
    assert_eq!(
        first.meta,
        json!({"source": "stytch", "service_name": "stytch.auth"})
    );

    let mut datadog_ids = datadog.accepted_event_ids();
    datadog_ids.sort();
    assert_eq!(datadog_ids, ["d-1", "d-2"]);
    let log = &datadog.accepted()[0];
    assert_eq!(log.meta["ddsource"], "stytch");
    assert_eq!(log.meta["service"], "stytch.auth");
    assert_eq!(log.meta["ddtags"], "project_id:proj-dd");
    assert!((now_ms() as i128 - log.timestamp).abs() < 60_000);
    assert_eq!(env.dead_letters().await.len(), 0);
}

#[tokio::test]
async fn a_failing_project_does_not_fail_or_block_another() {
    let broken = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    broken.script(std::iter::repeat_n(Script::Status(503, "unavailable"), 100));
    let datadog = FakeDestination::datadog(DATADOG_KEY).await;
    let env = StreamerEnv::with_datadog(&datadog).await;
    env.configure(
        "proj-broken",
        loki_config(&broken.hostname(), LOKI_PASSWORD),
    )
    .await;
    env.configure("proj-fine", datadog_config(DATADOG_KEY))
        .await;

    let response = env
        .invoke_with_time_left(
            vec![
                SqsRecord::new("broken-1", event("proj-broken", "b-1").to_string()),
                SqsRecord::new("fine-1", event("proj-fine", "f-1").to_string()),
                SqsRecord::new("broken-2", event("proj-broken", "b-2").to_string()),
            ],
            Duration::from_secs(8),
        )
        .await;

    assert_eq!(failed_ids(&response), ["broken-1", "broken-2"]);
    assert_eq!(datadog.accepted_event_ids(), ["f-1"]);
    assert!(broken.requests() >= 2, "the broken destination was retried");
    assert_eq!(
        env.dead_letters().await.len(),
        0,
        "transient failures are not dead-lettered"
    );
}

#[tokio::test]
async fn transient_failures_are_retried_until_delivered_once() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    loki.script([
        Script::RetryAfter(429, 1),
        Script::Status(500, "internal"),
        Script::Reset,
        Script::Status(502, "bad gateway"),
    ]);
    // Four waits of up to 1, 1, 2 and 4 s: a window that fits them whatever the jitter draws.
    let env = StreamerEnv::new(Options {
        settings: vec![("RETRY_WINDOW_SECONDS", "60".into())],
        ..Options::default()
    })
    .await;
    env.configure("proj", loki_config(&loki.hostname(), LOKI_PASSWORD))
        .await;

    let response = env
        .invoke(vec![SqsRecord::new("m1", event("proj", "e-1").to_string())])
        .await;

    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(loki.requests(), 5);
    assert_eq!(loki.accepted_event_ids(), ["e-1"]);
    // The 429's retry reuses the first connection; each retry after a 5xx or the reset
    // opens a new one.
    assert_eq!(loki.connections(), 4);
}

#[tokio::test]
async fn a_slow_destination_is_retried_after_the_request_timeout() {
    let datadog = FakeDestination::datadog(DATADOG_KEY).await;
    // Longer than the request timeout (PUSH_TIMEOUT_SECONDS): the push is abandoned and
    // sent again.
    datadog.script([Script::Slow(Duration::from_secs(2))]);
    let env = StreamerEnv::new(Options {
        datadog_intake_url: Some(datadog.base_url()),
        settings: vec![("PUSH_TIMEOUT_SECONDS", "1".into())],
        ..Options::default()
    })
    .await;
    env.configure("proj", datadog_config(DATADOG_KEY)).await;

    let response = env
        .invoke(vec![SqsRecord::new("m1", event("proj", "e-1").to_string())])
        .await;

    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(datadog.requests(), 2);
    assert_eq!(datadog.accepted_event_ids(), ["e-1"]);
}

#[tokio::test]
async fn wrong_credentials_are_reported_for_redelivery_without_retrying() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let env = StreamerEnv::new(Options::default()).await;
    env.configure("proj", loki_config(&loki.hostname(), "revoked-token"))
        .await;

    let response = env
        .invoke(vec![
            SqsRecord::new("m1", event("proj", "e-1").to_string()),
            SqsRecord::new("m2", event("proj", "e-2").to_string()),
        ])
        .await;

    assert_eq!(failed_ids(&response), ["m1", "m2"]);
    assert_eq!(loki.requests(), 1, "a 401 is final for the configuration");
    assert_eq!(env.dead_letters().await.len(), 0);
}

#[tokio::test]
async fn a_destination_400_dead_letters_the_records_with_the_reason() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    loki.script([Script::Status(
        400,
        "entry for stream '{source=\"stytch\"}' has timestamp too old",
    )]);
    let env = StreamerEnv::new(Options::default()).await;
    env.configure("proj", loki_config(&loki.hostname(), LOKI_PASSWORD))
        .await;
    let body = event("proj", "e-1").to_string();

    let response = env.invoke(vec![SqsRecord::new("m1", body.clone())]).await;

    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(loki.requests(), 1, "a 400 is never resent unchanged");
    let dead = env.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, body);
    assert_eq!(dead[0].1["rejection_reason"], "destination_rejected");
    assert!(dead[0].1["rejection_detail"].contains("timestamp too old"));
    assert_eq!(dead[0].1["source_message_id"], "m1");
    assert_eq!(dead[0].1["project_id"], "proj");
}

#[tokio::test]
async fn malformed_messages_and_bad_records_go_to_the_dead_letter_queue_alone() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let env = StreamerEnv::new(Options::default()).await;
    env.configure("proj", loki_config(&loki.hostname(), LOKI_PASSWORD))
        .await;
    let mixed = format!(
        "[{},{},{}]",
        event("proj", "good-1"),
        r#"{"event_id":"no-project"}"#,
        r#"{"project_id":"bad/id"}"#
    );

    let response = env
        .invoke(vec![
            SqsRecord::new("garbage", "this is not json"),
            SqsRecord::new("mixed", mixed),
            SqsRecord::new("empty", "[]"),
        ])
        .await;

    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(loki.accepted_event_ids(), ["good-1"]);
    let mut dead: Vec<(String, String, String)> = env
        .dead_letters()
        .await
        .into_iter()
        .map(|(body, a)| {
            (
                a["source_message_id"].clone(),
                a["rejection_reason"].clone(),
                body,
            )
        })
        .collect();
    dead.sort();
    assert_eq!(
        dead,
        [
            ("empty".into(), "empty_batch".into(), "[]".into()),
            (
                "garbage".into(),
                "malformed_json".into(),
                "this is not json".into()
            ),
            (
                "mixed".into(),
                "invalid_project_id".into(),
                r#"{"event_id":"no-project"}"#.into()
            ),
            (
                "mixed".into(),
                "invalid_project_id".into(),
                r#"{"project_id":"bad/id"}"#.into()
            ),
        ]
    );
}

#[tokio::test]
async fn without_a_dead_letter_queue_rejected_messages_are_kept_for_redelivery() {
    let env = StreamerEnv::new(Options {
        dead_letter_queue: false,
        ..Options::default()
    })
    .await;

    let response = env.invoke(vec![SqsRecord::new("garbage", "{{{")]).await;

    assert_eq!(failed_ids(&response), ["garbage"]);
}

#[tokio::test]
async fn events_produced_before_the_enable_are_not_backfilled() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let env = StreamerEnv::new(Options::default()).await;
    let mut config = loki_config(&loki.hostname(), LOKI_PASSWORD);
    let enabled_at = time::OffsetDateTime::now_utc() - time::Duration::seconds(10);
    config.enabled_at = Some(enabled_at);
    env.configure("proj", config).await;
    let enabled_ms = (enabled_at.unix_timestamp_nanos() / 1_000_000) as u128;

    let response = env
        .invoke(vec![
            SqsRecord::new("old", event("proj", "while-disabled").to_string())
                .sent_at_ms(enabled_ms - 1),
            SqsRecord::new("new", event("proj", "after-enable").to_string()).sent_at_ms(enabled_ms),
        ])
        .await;

    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(loki.accepted_event_ids(), ["after-enable"]);
}

#[tokio::test]
async fn a_store_outage_keeps_the_messages_for_redelivery() {
    use std::sync::Arc;

    use event_log_streaming::Streamer;
    use event_log_streaming::delivery::StreamerStore;
    use event_log_streaming::settings::StreamerSettings;
    use event_log_streaming::store::{DynamoDbStreams, SecretsManagerCredentials};

    // Nothing listens on this loopback port: every store call fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(format!("http://{closed}"))
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "a", "b", None, None, "t",
        ))
        .load()
        .await;
    let table = Arc::new(DynamoDbStreams::new(
        aws_sdk_dynamodb::Client::new(&aws),
        "streams",
    ));
    let store = StreamerStore {
        lookup: table.clone(),
        credentials: Arc::new(SecretsManagerCredentials::new(
            aws_sdk_secretsmanager::Client::new(&aws),
            "x/",
        )),
        health: table,
    };
    let settings = StreamerSettings::from_lookup(|_| None).unwrap();
    let streamer = Streamer::from_settings(&settings, store, Default::default()).unwrap();

    let event = integration_tests::lambda::sqs_event(
        vec![SqsRecord::new("m1", event("proj", "e-1").to_string())],
        Duration::from_secs(30),
    );
    let response = streamer::handle(&streamer, None, event).await.unwrap();

    assert_eq!(failed_ids(&response), ["m1"]);
}

#[tokio::test]
async fn a_413_splits_the_push_until_everything_is_delivered() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    loki.limit_body_bytes(4_000);
    let env = StreamerEnv::new(Options::default()).await;
    env.configure("proj", loki_config(&loki.hostname(), LOKI_PASSWORD))
        .await;
    let records: Vec<Value> = (0..40)
        .map(|i| event("proj", &format!("e-{i:02}")))
        .collect();

    let response = env
        .invoke(vec![SqsRecord::new(
            "m1",
            Value::Array(records).to_string(),
        )])
        .await;

    assert_eq!(failed_ids(&response), Vec::<String>::new());
    let mut ids = loki.accepted_event_ids();
    ids.sort();
    let expected: Vec<String> = (0..40).map(|i| format!("e-{i:02}")).collect();
    assert_eq!(ids, expected);
    assert!(loki.requests() > 2);
    assert_eq!(loki.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn big_batches_are_cut_to_the_destination_limits() {
    let datadog = FakeDestination::datadog(DATADOG_KEY).await;
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let env = StreamerEnv::with_datadog(&datadog).await;
    env.configure("proj-dd", datadog_config(DATADOG_KEY)).await;
    env.configure("proj-loki", loki_config(&loki.hostname(), LOKI_PASSWORD))
        .await;
    // 2,500 small Datadog logs (over the 1,000-per-request limit) and 50 Loki lines of
    // 100 KB (5 MB, over the 4 MB gateway cap).
    let datadog_records: Vec<Value> = (0..2500)
        .map(|i| event("proj-dd", &format!("d-{i}")))
        .collect();
    let padding = "x".repeat(100_000);
    let loki_records: Vec<Value> = (0..50)
        .map(|i| {
            let mut e = event("proj-loki", &format!("l-{i}"));
            e["padding"] = json!(padding);
            e
        })
        .collect();
    let mut records = vec![
        SqsRecord::new(
            "dd-1",
            Value::Array(datadog_records[..1250].to_vec()).to_string(),
        ),
        SqsRecord::new(
            "dd-2",
            Value::Array(datadog_records[1250..].to_vec()).to_string(),
        ),
    ];
    for (i, chunk) in loki_records.chunks(10).enumerate() {
        records.push(SqsRecord::new(
            format!("loki-{i}"),
            Value::Array(chunk.to_vec()).to_string(),
        ));
    }

    let response = env.invoke(records).await;

    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(datadog.violations(), Vec::<String>::new());
    assert_eq!(loki.violations(), Vec::<String>::new());
    assert_eq!(datadog.accepted().len(), 2500);
    assert_eq!(datadog.requests(), 3);
    assert_eq!(loki.accepted().len(), 50);
    assert!(loki.requests() >= 5, "pushes stay near 1 MB");
}

#[tokio::test]
async fn records_too_large_for_the_destination_are_dead_lettered() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let env = StreamerEnv::new(Options::default()).await;
    env.configure("proj", loki_config(&loki.hostname(), LOKI_PASSWORD))
        .await;
    let mut huge = event("proj", "huge");
    huge["padding"] = json!("x".repeat(300 * 1024));
    let batch = json!([huge, event("proj", "small")]);

    let response = env
        .invoke(vec![SqsRecord::new("m1", batch.to_string())])
        .await;

    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(loki.accepted_event_ids(), ["small"]);
    let dead = env.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].1["rejection_reason"], "record_too_large");
    assert_eq!(dead[0].0, huge.to_string());
}

#[tokio::test]
async fn retries_stop_at_the_invocation_deadline() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    loki.script(std::iter::repeat_n(Script::Status(500, "down"), 1000));
    let env = StreamerEnv::new(Options::default()).await;
    env.configure("proj", loki_config(&loki.hostname(), LOKI_PASSWORD))
        .await;

    let response = env
        .invoke_with_time_left(
            vec![SqsRecord::new("m1", event("proj", "e-1").to_string())],
            Duration::from_secs(9),
        )
        .await;

    // When the retries end is tested on a paused clock (`shared/src/delivery/tests.rs`); here,
    // that the handler hands its invocation's deadline down and answers.
    assert_eq!(failed_ids(&response), ["m1"]);
    assert!(loki.requests() >= 1);
}

#[tokio::test]
async fn a_redelivered_loki_record_is_sent_byte_identical() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let env = StreamerEnv::new(Options::default()).await;
    env.configure("proj", loki_config(&loki.hostname(), LOKI_PASSWORD))
        .await;
    // No `timestamp` in the record: the event time comes from SentTimestamp, which SQS keeps
    // on redelivery, never from the time of sending.
    let body = r#"{"project_id":"proj","event_id":"e-1","action":"OAuthAuthenticate"}"#;
    let sent = now_ms() - 5_000;

    // Both deliveries are compared with the send time, five seconds before either: no need
    // to wait between them to tell it from the time of delivery.
    env.invoke(vec![SqsRecord::new("m1", body).sent_at_ms(sent)])
        .await;
    env.invoke(vec![SqsRecord::new("m1", body).sent_at_ms(sent)])
        .await;

    let accepted = loki.accepted();
    assert_eq!(accepted.len(), 2);
    // Same line bytes and same timestamp: Loki stores one.
    assert_eq!(accepted[0].line, body);
    assert_eq!(
        (&accepted[0].line, accepted[0].timestamp),
        (&accepted[1].line, accepted[1].timestamp)
    );
    assert_eq!(accepted[0].timestamp, sent as i128 * 1_000_000);
}

#[tokio::test]
async fn destinations_on_private_addresses_are_refused_without_connecting() {
    let env = StreamerEnv::new(Options {
        allow_private: false,
        ..Options::default()
    })
    .await;
    // Link-local (cloud metadata) and private addresses: refused before any connection.
    env.configure("proj-meta", loki_config("169.254.169.254", LOKI_PASSWORD))
        .await;
    env.configure("proj-private", loki_config("10.0.0.1:3100", LOKI_PASSWORD))
        .await;
    let (logs, _guard) = capture_logs();

    let response = env
        .invoke(vec![
            SqsRecord::new("m1", event("proj-meta", "e-1").to_string()),
            SqsRecord::new("m2", event("proj-private", "e-2").to_string()),
        ])
        .await;

    assert_eq!(failed_ids(&response), ["m1", "m2"]);
    for project in ["proj-meta", "proj-private"] {
        let line = logs
            .lines()
            .into_iter()
            .find(|l| {
                l["fields"]["message"] == "project delivery" && l["fields"]["project_id"] == project
            })
            .unwrap();
        assert_eq!(line["fields"]["status"], "failed");
        let error = line["fields"]["error"].as_str().unwrap();
        assert!(
            error.contains("must be reachable on the public internet"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn logs_describe_each_delivery_and_never_contain_secrets() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let datadog = FakeDestination::datadog(DATADOG_KEY).await;
    let env = StreamerEnv::with_datadog(&datadog).await;
    env.configure("proj-loki", loki_config(&loki.hostname(), LOKI_PASSWORD))
        .await;
    env.configure("proj-dd", datadog_config(DATADOG_KEY)).await;
    // Wrong secrets too: a rejected credential must not be echoed either.
    let wrong_password = "glc_wrong-password-SECRET-9a9a";
    let wrong_key = "0000000000000000000000000000dead";
    env.configure(
        "proj-bad-loki",
        loki_config(&loki.hostname(), wrong_password),
    )
    .await;
    let wrong_datadog = FakeDestination::datadog(DATADOG_KEY).await;
    let env_wrong = StreamerEnv::with_datadog(&wrong_datadog).await;
    env_wrong
        .configure("proj-bad-dd", datadog_config(wrong_key))
        .await;
    let (logs, _guard) = capture_logs();

    env.invoke(vec![
        SqsRecord::new("m1", event("proj-loki", "e-1").to_string()),
        SqsRecord::new("m2", event("proj-dd", "e-2").to_string()),
        SqsRecord::new("m3", event("proj-bad-loki", "e-3").to_string()),
    ])
    .await;
    env_wrong
        .invoke(vec![SqsRecord::new(
            "m4",
            event("proj-bad-dd", "e-4").to_string(),
        )])
        .await;

    let text = logs.text();
    for secret in [LOKI_PASSWORD, DATADOG_KEY, wrong_password, wrong_key] {
        assert!(!text.contains(secret), "a secret leaked into the logs");
    }
    let lines = logs.lines();
    let delivery = lines
        .iter()
        .find(|l| {
            l["fields"]["message"] == "project delivery" && l["fields"]["project_id"] == "proj-loki"
        })
        .expect("a delivery line for proj-loki");
    // Delivered is the common case: debug, out of the production log bill.
    assert_eq!(delivery["level"], "DEBUG");
    assert_eq!(delivery["fields"]["destination_type"], "GRAFANA_LOKI");
    assert_eq!(delivery["fields"]["status"], "delivered");
    assert_eq!(delivery["fields"]["events"], 1);
    assert_eq!(delivery["fields"]["attempts"], 1);
    let failed = lines
        .iter()
        .find(|l| {
            l["fields"]["message"] == "project delivery"
                && l["fields"]["project_id"] == "proj-bad-loki"
        })
        .expect("a delivery line for proj-bad-loki");
    assert_eq!(failed["level"], "INFO");
    assert_eq!(failed["fields"]["status"], "failed");
    assert!(failed["fields"]["error"].as_str().unwrap().contains("401"));
    let summary = lines
        .iter()
        .find(|l| l["fields"]["message"] == "batch processed")
        .expect("a summary line");
    assert_eq!(summary["fields"]["delivered"], 2);
    assert_eq!(summary["fields"]["failed_messages"], 1);
}

#[tokio::test]
async fn a_refused_push_is_split_so_only_the_invalid_records_are_dead_lettered() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    loki.refuse_lines_containing("bad-");
    let datadog = FakeDestination::datadog(DATADOG_KEY).await;
    datadog.refuse_lines_containing("bad-");
    let env = StreamerEnv::with_datadog(&datadog).await;
    env.configure("proj-loki", loki_config(&loki.hostname(), LOKI_PASSWORD))
        .await;
    env.configure("proj-dd", datadog_config(DATADOG_KEY)).await;
    let batch = |project: &str| {
        let records: Vec<Value> = (0..8)
            .map(|i| {
                let id = if i == 5 {
                    format!("bad-{project}")
                } else {
                    format!("{project}-{i}")
                };
                event(project, &id)
            })
            .collect();
        Value::Array(records).to_string()
    };

    let response = env
        .invoke(vec![
            SqsRecord::new("m-loki", batch("proj-loki")),
            SqsRecord::new("m-dd", batch("proj-dd")),
        ])
        .await;

    assert_eq!(failed_ids(&response), Vec::<String>::new());
    let mut dead: Vec<String> = env
        .dead_letters()
        .await
        .into_iter()
        .map(|(body, a)| {
            assert_eq!(a["rejection_reason"], "destination_rejected");
            serde_json::from_str::<Value>(&body).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    dead.sort();
    assert_eq!(dead, ["bad-proj-dd", "bad-proj-loki"]);
    for (fake, project) in [(&loki, "proj-loki"), (&datadog, "proj-dd")] {
        let mut ids = fake.accepted_event_ids();
        ids.sort();
        ids.dedup(); // Loki stores a resent entry once; the fake keeps both copies.
        let expected: Vec<String> = [0, 1, 2, 3, 4, 6, 7]
            .iter()
            .map(|i| format!("{project}-{i}"))
            .collect();
        assert_eq!(ids, expected);
    }
    // Datadog stored nothing twice: every accepted payload was accepted once.
    assert_eq!(datadog.accepted().len(), 7);
}

#[tokio::test]
async fn a_queue_message_of_ndjson_is_one_record_per_line() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let env = StreamerEnv::new(Options::default()).await;
    env.configure("proj", loki_config(&loki.hostname(), LOKI_PASSWORD))
        .await;
    let body = format!(
        "{}\n{}\n{{\"project_id\":\"proj\", broken\n",
        event("proj", "line-1"),
        event("proj", "line-2")
    );

    let response = env.invoke(vec![SqsRecord::new("m1", body)]).await;

    assert_eq!(failed_ids(&response), Vec::<String>::new());
    let mut ids = loki.accepted_event_ids();
    ids.sort();
    assert_eq!(ids, ["line-1", "line-2"]);
    let dead = env.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, "{\"project_id\":\"proj\", broken");
    assert_eq!(dead[0].1["rejection_reason"], "malformed_json");
    assert_eq!(
        dead[0].1["rejection_detail"],
        "line 3: invalid JSON at column 23"
    );
}

#[tokio::test]
async fn loki_blocking_ingestion_is_no_delivery_the_records_go_back_and_the_health_says_why() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    // Loki answers 260 when its operator blocks ingestion for the tenant: a 2xx that stores
    // nothing.
    loki.script([Script::Status(260, "")]);
    let env = StreamerEnv::new(Options {
        event_queue: true,
        ..Options::default()
    })
    .await;
    env.configure("proj", loki_config(&loki.hostname(), LOKI_PASSWORD))
        .await;
    let record = event("proj", "e-1");

    let response = env
        .invoke(vec![SqsRecord::new("m1", record.to_string())])
        .await;

    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(
        loki.requests(),
        1,
        "the block lasts: no retry in this invocation"
    );
    let requeued = env.requeued().await;
    assert_eq!(requeued.len(), 1);
    assert_eq!(requeued[0].0, format!("[{record}]"));
    let health = env.stream("proj").await.health;
    assert_eq!((health.events_delivered, health.events_failed), (0, 1));
    assert_eq!(health.last_success_at, None);
    let error = health.last_error().unwrap();
    assert_eq!(error.destination_status, Some(260));
    assert!(
        error.message.contains("blocks ingestion"),
        "{}",
        error.message
    );
    assert_eq!(
        health.consecutive_auth_failures, 0,
        "never towards suspension"
    );
}

/// A Loki stream with its own tenant and labels, as the config API would parse them.
fn loki_with(
    loki: &FakeDestination,
    tenant_id: Option<&str>,
    labels: &[(&str, &str)],
) -> StreamSpec {
    let body = DestinationConfigBody {
        datadog: None,
        grafana_loki: Some(LokiBody {
            hostname: loki.hostname(),
            username: LOKI_USER.into(),
            password: LOKI_PASSWORD.into(),
            tenant_id: tenant_id.map(str::to_owned),
            labels: Some(
                labels
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            ),
        }),
    };
    active(Destination::parse(DestinationType::GrafanaLoki, &body).unwrap())
}

fn datadog_with_tags(tags: &[&str]) -> StreamSpec {
    let body = DestinationConfigBody {
        datadog: Some(DatadogBody {
            site: "US".into(),
            api_key: DATADOG_KEY.into(),
            tags: Some(tags.iter().map(|t| t.to_string()).collect()),
        }),
        grafana_loki: None,
    };
    active(Destination::parse(DestinationType::Datadog, &body).unwrap())
}

fn with_controls(
    mut spec: StreamSpec,
    filter: Option<EventFilterBody>,
    redaction: Option<(&str, &[&str])>,
) -> StreamSpec {
    let redaction = redaction.map(|(mode, fields)| RedactionBody {
        fields: fields.iter().map(|f| f.to_string()).collect(),
        mode: mode.into(),
    });
    spec.controls = StreamControls::parse(filter.as_ref(), redaction.as_ref()).unwrap();
    spec
}

/// An event with personal data in it: an address at the top and an email one level down.
fn personal_event(project: &str, event_id: &str) -> Value {
    let mut event = event(project, event_id);
    event["ip_address"] = json!("203.0.113.77");
    event["user"] = json!({"email": "alice.personal@example.com", "user_id": "user-live-1"});
    event
}

const PERSONAL: [&str; 2] = ["203.0.113.77", "alice.personal@example.com"];

fn summary_line(logs: &integration_tests::logs::CapturedLogs) -> Value {
    logs.lines()
        .into_iter()
        .find(|l| l["fields"]["message"] == "batch processed")
        .expect("a summary line")
}

#[tokio::test]
async fn loki_pushes_carry_the_streams_tenant_and_labels_and_others_neither() {
    let tenant_loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let plain_loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let env = StreamerEnv::new(Options::default()).await;
    let labels = [("team", "identity"), ("env", "prod")];
    env.configure(
        "proj-tenant",
        loki_with(&tenant_loki, Some("acme-prod"), &labels),
    )
    .await;
    env.configure(
        "proj-plain",
        loki_config(&plain_loki.hostname(), LOKI_PASSWORD),
    )
    .await;

    let response = env
        .invoke(vec![
            SqsRecord::new("m1", event("proj-tenant", "t-1").to_string()),
            SqsRecord::new("m2", event("proj-plain", "p-1").to_string()),
            SqsRecord::new("m3", event("proj-tenant", "t-2").to_string()),
        ])
        .await;

    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(tenant_loki.violations(), Vec::<String>::new());
    let headers = tenant_loki.request_headers();
    assert!(!headers.is_empty());
    for request in &headers {
        assert_eq!(request["x-scope-orgid"], "acme-prod");
    }
    let accepted = tenant_loki.accepted();
    assert_eq!(accepted.len(), 2);
    for entry in &accepted {
        assert_eq!(
            entry.meta,
            json!({"source": "stytch", "service_name": "stytch.auth", "env": "prod", "team": "identity"})
        );
        assert_eq!(entry.tenant.as_deref(), Some("acme-prod"));
    }
    // A stream without controls is pushed as before.
    assert!(
        plain_loki
            .request_headers()
            .iter()
            .all(|h| !h.contains_key("x-scope-orgid"))
    );
    assert_eq!(
        plain_loki.accepted()[0].meta,
        json!({"source": "stytch", "service_name": "stytch.auth"})
    );
}

#[tokio::test]
async fn datadog_logs_carry_the_streams_tags_after_the_project_id() {
    let datadog = FakeDestination::datadog(DATADOG_KEY).await;
    let env = StreamerEnv::with_datadog(&datadog).await;
    env.configure(
        "proj-tags",
        datadog_with_tags(&["Team:Identity", "env:prod"]),
    )
    .await;
    env.configure("proj-plain", datadog_config(DATADOG_KEY))
        .await;

    let response = env
        .invoke(vec![
            SqsRecord::new("m1", event("proj-tags", "t-1").to_string()),
            SqsRecord::new("m2", event("proj-plain", "p-1").to_string()),
        ])
        .await;

    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(datadog.violations(), Vec::<String>::new());
    let log = |event_id: &str| {
        datadog
            .accepted()
            .into_iter()
            .find(|a| a.field("event_id") == event_id)
            .unwrap()
    };
    let tagged = log("t-1");
    assert_eq!(
        tagged.meta["ddtags"],
        "project_id:proj-tags,team:identity,env:prod"
    );
    assert_eq!(tagged.meta["ddsource"], "stytch");
    assert_eq!(tagged.meta["service"], "stytch.auth");
    assert_eq!(log("p-1").meta["ddtags"], "project_id:proj-plain");
}

#[tokio::test]
async fn the_event_filter_streams_only_matching_records_and_counts_the_others() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let env = StreamerEnv::new(Options::default()).await;
    let filter = EventFilterBody {
        actions: Some(vec!["Passwords*".into(), "OAuthAuthenticate".into()]),
        statuses: Some(vec!["success".into()]),
    };
    env.configure(
        "proj",
        with_controls(
            loki_config(&loki.hostname(), LOKI_PASSWORD),
            Some(filter),
            None,
        ),
    )
    .await;
    let with = |id: &str, action: Option<&str>, status: &str| {
        let mut e = event("proj", id);
        match action {
            Some(action) => e["action"] = json!(action),
            None => {
                e.as_object_mut().unwrap().remove("action");
            }
        }
        e["status"] = json!(status);
        e
    };
    let batch = json!([
        with("sent-prefix", Some("PasswordsAuthenticate"), "success"),
        with("sent-exact", Some("OAuthAuthenticate"), "success"),
        with("wrong-status", Some("PasswordsAuthenticate"), "error"),
        with(
            "wrong-action",
            Some("MagicLinksEmailLoginOrCreate"),
            "success"
        ),
        with("no-action", None, "success"),
        with("exact-only", Some("OAuthAuthenticateX"), "success"),
    ]);
    let (logs, _guard) = capture_logs();

    let response = env
        .invoke(vec![SqsRecord::new("m1", batch.to_string())])
        .await;

    assert_eq!(failed_ids(&response), Vec::<String>::new());
    let mut ids = loki.accepted_event_ids();
    ids.sort();
    assert_eq!(ids, ["sent-exact", "sent-prefix"]);
    assert_eq!(
        env.dead_letters().await.len(),
        0,
        "filtered is not rejected"
    );
    let summary = summary_line(&logs);
    assert_eq!(summary["fields"]["skipped_filtered"], 4);
    assert_eq!(summary["fields"]["delivered"], 2);
    // The first success is a change of state, written at once, the filtered count with it.
    let health = env.stream("proj").await.health;
    assert_eq!((health.events_delivered, health.events_filtered), (2, 4));
}

#[tokio::test]
async fn redaction_masks_hashes_or_removes_fields_before_they_leave_and_logs_hold_none() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let datadog = FakeDestination::datadog(DATADOG_KEY).await;
    let env = StreamerEnv::with_datadog(&datadog).await;
    let fields: &[&str] = &["ip_address", "user.email"];
    let spec = |mode| {
        with_controls(
            loki_config(&loki.hostname(), LOKI_PASSWORD),
            None,
            Some((mode, fields)),
        )
    };
    env.configure("proj-mask", spec("MASK")).await;
    let hashed = env.configure("proj-hash", spec("HASH")).await;
    env.configure("proj-remove", spec("REMOVE")).await;
    env.configure(
        "proj-dd",
        with_controls(datadog_config(DATADOG_KEY), None, Some(("HASH", fields))),
    )
    .await;
    // The first push of each Loki project fails: its retry must carry the same lines.
    loki.script([Script::Status(500, "down"), Script::Status(503, "down")]);
    let (logs, _guard) = capture_logs();

    let records = ["proj-mask", "proj-hash", "proj-remove", "proj-dd"]
        .iter()
        .enumerate()
        .map(|(i, project)| {
            let body = json!([
                personal_event(project, &format!("{project}-1")),
                personal_event(project, &format!("{project}-2"))
            ]);
            SqsRecord::new(format!("m{i}"), body.to_string())
        })
        .collect();
    let response = env.invoke(records).await;

    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(loki.violations(), Vec::<String>::new());
    assert_eq!(datadog.violations(), Vec::<String>::new());
    let lines = |project: &str| -> Vec<String> {
        let fake = if project == "proj-dd" {
            &datadog
        } else {
            &loki
        };
        fake.accepted()
            .into_iter()
            .filter(|a| a.field("project_id") == project)
            .map(|a| a.line)
            .collect()
    };
    for project in ["proj-mask", "proj-hash", "proj-remove", "proj-dd"] {
        let lines = lines(project);
        assert_eq!(lines.len(), 2, "{project}");
        for line in &lines {
            for value in PERSONAL {
                assert!(!line.contains(value), "{project} sent {value}");
            }
            // Everything else is as the producer wrote it.
            assert!(line.contains(r#""user_id":"user-live-1""#), "{line}");
        }
    }
    for line in lines("proj-mask") {
        assert!(line.contains(r#""ip_address":"[REDACTED]""#), "{line}");
        assert!(
            line.contains(r#""user":{"email":"[REDACTED]","user_id""#),
            "{line}"
        );
    }
    for project in ["proj-hash", "proj-dd"] {
        for line in lines(project) {
            let record: Value = serde_json::from_str(&line).unwrap();
            for hash in [&record["ip_address"], &record["user"]["email"]] {
                let hash = hash.as_str().unwrap();
                let digits = hash.strip_prefix("hmac-sha256:").unwrap();
                assert!(
                    digits.len() == 64 && digits.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{hash}"
                );
            }
        }
    }
    for line in lines("proj-remove") {
        assert!(
            !line.contains("ip_address") && !line.contains("email"),
            "{line}"
        );
        assert!(
            line.contains(r#""user":{"user_id":"user-live-1"}"#),
            "{line}"
        );
    }

    let secret = env.credentials.get(&hashed.credential).await.unwrap();
    let key = secret
        .redaction_key
        .expect("a HASH stream has a key")
        .to_secret();
    let text = logs.text();
    assert!(!text.is_empty());
    for secret in PERSONAL
        .iter()
        .chain([&key.expose(), &LOKI_PASSWORD, &DATADOG_KEY])
    {
        assert!(
            !text.contains(secret),
            "the logs hold a secret or a redacted value"
        );
    }
}

#[tokio::test]
async fn a_refused_push_is_split_and_resends_the_same_redacted_bytes() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    // Loki stores the valid entries of a push before its 400: the halves resend them.
    loki.refuse_lines_containing("bad-");
    let env = StreamerEnv::new(Options::default()).await;
    env.configure(
        "proj",
        with_controls(
            loki_config(&loki.hostname(), LOKI_PASSWORD),
            None,
            Some(("HASH", &["ip_address", "user.email"])),
        ),
    )
    .await;
    let records: Vec<Value> = (0..8)
        .map(|i| {
            let id = if i == 5 {
                "bad-5".to_owned()
            } else {
                format!("e-{i}")
            };
            personal_event("proj", &id)
        })
        .collect();

    let response = env
        .invoke(vec![SqsRecord::new(
            "m1",
            Value::Array(records).to_string(),
        )])
        .await;

    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert!(loki.requests() > 1);
    let accepted = loki.accepted();
    let mut by_id: std::collections::BTreeMap<String, Vec<(String, i128)>> = Default::default();
    for a in &accepted {
        let id = a.field("event_id").as_str().unwrap().to_owned();
        by_id
            .entry(id)
            .or_default()
            .push((a.line.clone(), a.timestamp));
    }
    assert_eq!(by_id.len(), 7);
    assert!(
        by_id.values().any(|copies| copies.len() > 1),
        "some entries were resent"
    );
    for (id, copies) in &by_id {
        // Same bytes and timestamp on every copy: Loki keeps one.
        assert!(copies.windows(2).all(|w| w[0] == w[1]), "{id}: {copies:?}");
        assert!(!copies[0].0.contains(PERSONAL[0]));
    }
    // The dead-letter queue holds the refused record as the producer wrote it.
    let dead = env.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert!(dead[0].0.contains("bad-5"));
}
