//! The local runner: HTTP ingest into the delivery code, and SQS mode against moto's queues
//! with a real redrive policy.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use config_api::auth::ManagementKey;
use event_log_streaming::domain::ProjectId;
use event_log_streaming::event::{ATTEMPTS_ATTRIBUTE, SENT_TIMESTAMP_ATTRIBUTE};
use event_log_streaming::store::{FileStateStore, MemoryStateStore, StreamWrite};
use http_body_util::BodyExt;
use integration_tests::fake_destination::{FakeDestination, Script};
use integration_tests::fixtures::provision;
use local_runner::sqs::Consumer;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tower::ServiceExt;

use crate::helpers::*;

/// The management key `local-admin:s3cret`, for every project.
fn local_admin() -> Vec<ManagementKey> {
    vec![ManagementKey::new("local-admin", "s3cret", &["*"])]
}

async fn post_events(app: &axum::Router, body: impl Into<Body>) -> (StatusCode, Value) {
    let request = Request::post("/v1/events").body(body.into()).unwrap();
    let answer = app.clone().oneshot(request).await.unwrap();
    let status = answer.status();
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn local_ingest_refuses_what_can_never_be_delivered_with_reasons_and_asks_again_only_for_the_rest()
 {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let store = Arc::new(MemoryStateStore::new());
    let app = local_runner_app(store.clone(), local_admin());
    provision(
        store.as_ref(),
        store.as_ref(),
        "proj",
        loki_config(&loki.hostname(), LOKI_PASSWORD),
    )
    .await;
    let big = format!(
        r#"{{"project_id":"proj","pad":"{}"}}"#,
        "x".repeat(300 * 1024)
    );
    // (body, status, [(message index, reason)])
    type Rejections<'a> = Vec<(u64, &'a str)>;
    let table: Vec<(String, StatusCode, Rejections)> = vec![
        (
            r#"{"project_id":"proj""#.into(),
            StatusCode::BAD_REQUEST,
            vec![(0, "malformed_json")],
        ),
        (
            "[]".into(),
            StatusCode::BAD_REQUEST,
            vec![(0, "empty_batch")],
        ),
        (
            "{}".into(),
            StatusCode::BAD_REQUEST,
            vec![(0, "invalid_project_id")],
        ),
        (
            r#"{"project_id":"bad id"}"#.into(),
            StatusCode::BAD_REQUEST,
            vec![(0, "invalid_project_id")],
        ),
        (big, StatusCode::BAD_REQUEST, vec![(0, "record_too_large")]),
        (
            format!(
                "{}\nnot json\n{}\n",
                event("proj", "fine-1"),
                event("proj", "fine-2")
            ),
            StatusCode::BAD_REQUEST,
            vec![(1, "malformed_json")],
        ),
        (event("proj", "fine-3").to_string(), StatusCode::OK, vec![]),
    ];
    for (body, status, expected) in table {
        let (answered, summary) = post_events(&app, body.clone()).await;
        assert_eq!(answered, status, "{summary}");
        let rejected: Vec<(u64, &str)> = summary["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["index"].as_u64().unwrap(), r["reason"].as_str().unwrap()))
            .collect();
        assert_eq!(rejected, expected, "{summary}");
        assert!(
            summary["rejected"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["detail"].is_string())
        );
        assert_eq!(summary["failed"], json!([]), "{summary}");
    }
    let mut delivered = loki.accepted_event_ids();
    delivered.sort();
    assert_eq!(delivered, ["fine-1", "fine-2", "fine-3"]);

    // What may pass later is 503, listed apart from what never will.
    // (A refused credential is fixed by the customer; the message then passes.)
    loki.script([Script::Status(401, "invalid authentication credentials")]);
    let body = format!("{}\n{{}}\n", event("proj", "later"));
    let (status, summary) = post_events(&app, body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{summary}");
    assert_eq!(summary["failed"], json!([0]));
    assert_eq!(summary["rejected"][0]["index"], 1);

    // Too large a body: our error shape, with the limit.
    let (status, answer) = post_events(&app, vec![b' '; 6 * 1024 * 1024 + 1]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer["error_type"], "payload_too_large");
    assert_eq!(answer["status_code"], 413);
    assert!(
        answer["request_id"]
            .as_str()
            .unwrap()
            .starts_with("request-id-")
    );
    assert!(answer["error_message"].as_str().unwrap().contains("6 MiB"));
}

#[tokio::test]
async fn events_posted_to_the_runner_reach_a_destination_configured_through_its_api() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    // The runner's embedded store, in a file of its own.
    let state_file = std::env::temp_dir()
        .join(unique("els-runner"))
        .join("state.json");
    let app = local_runner_app(Arc::new(FileStateStore::new(&state_file)), local_admin());
    let auth = format!("Basic {}", BASE64.encode("local-admin:s3cret"));
    let call = |method: &str, path: &str, body: String| {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, &auth)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap()
    };

    let created = app
        .clone()
        .oneshot(call(
            "POST",
            "/v1/projects/proj/event_log_streaming",
            json!({"destination_type": "GRAFANA_LOKI", "destination_config": {"grafana_loki": {
                "hostname": loki.hostname(), "username": LOKI_USER, "password": LOKI_PASSWORD}}})
            .to_string(),
        ))
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let enabled = app
        .clone()
        .oneshot(call(
            "POST",
            "/v1/projects/proj/event_log_streaming/GRAFANA_LOKI/enable",
            String::new(),
        ))
        .await
        .unwrap();
    assert_eq!(enabled.status(), StatusCode::OK);
    let ndjson = format!(
        "{}\n{}\n{}\n",
        event("proj", "e-1"),
        event("proj", "e-2"),
        event("other", "e-3")
    );

    let answer = app
        .clone()
        .oneshot(call("POST", "/v1/events", ndjson))
        .await
        .unwrap();

    assert_eq!(answer.status(), StatusCode::OK);
    let summary: Value =
        serde_json::from_slice(&answer.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(summary["messages"], 3);
    assert_eq!(summary["delivered"], 2);
    assert_eq!(summary["skipped_not_configured"], 1);
    let mut ids = loki.accepted_event_ids();
    ids.sort();
    assert_eq!(ids, ["e-1", "e-2"]);

    // A failure is answered 503, so that the producer sends the events again.
    loki.script([Script::Status(401, "invalid authentication credentials")]);
    let failed = app
        .clone()
        .oneshot(call("POST", "/v1/events", event("proj", "e-4").to_string()))
        .await
        .unwrap();
    assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
    let summary: Value =
        serde_json::from_slice(&failed.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(summary["failed_messages"], 1);

    // Health is in the API, and in the file: a restarted runner still shows it.
    let read = app
        .oneshot(call(
            "GET",
            "/v1/projects/proj/event_log_streaming/GRAFANA_LOKI",
            String::new(),
        ))
        .await
        .unwrap();
    let read: Value =
        serde_json::from_slice(&read.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let health = &read["event_log_streaming_config"]["delivery_health"];
    assert_eq!(health["events_delivered"], 2, "{read}");
    assert_eq!(health["last_error"]["destination_status"], 401);
    let restarted = FileStateStore::new(&state_file);
    let stream = StreamWrite::get(&restarted, &ProjectId::parse("proj").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stream.health.events_delivered, 2);
    assert_eq!(stream.health.consecutive_failures, 1);
    std::fs::remove_dir_all(state_file.parent().unwrap()).unwrap();
}

#[tokio::test]
async fn sqs_mode_delivers_redelivers_and_dead_letters_without_losing_an_event() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let broken = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    broken.script(std::iter::repeat_n(
        Script::Status(503, "unavailable"),
        10_000,
    ));
    let datadog = FakeDestination::datadog(DATADOG_KEY).await;
    let env = StreamerEnv::with_datadog(&datadog).await;
    env.configure("proj-loki", loki_config(&loki.hostname(), LOKI_PASSWORD))
        .await;
    env.configure("proj-dd", datadog_config(DATADOG_KEY)).await;
    env.configure(
        "proj-broken",
        loki_config(&broken.hostname(), LOKI_PASSWORD),
    )
    .await;

    let dlq_url = env.dlq_url.clone().unwrap();
    let dlq_arn = env
        .sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let queue_url = env
        .sqs
        .create_queue()
        .queue_name(unique("events"))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "1",
        )
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}).to_string(),
        )
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();

    let mut sent = BTreeSet::new();
    for project in ["proj-loki", "proj-dd", "proj-broken"] {
        for i in 0..8 {
            let id = format!("{project}-{i}");
            env.sqs
                .send_message()
                .queue_url(&queue_url)
                .message_body(event(project, &id).to_string())
                .send()
                .await
                .unwrap();
            sent.insert(id);
        }
    }

    let consumer = Consumer {
        streamer: &env.streamer,
        sqs: env.sqs.clone(),
        queue_url: queue_url.clone(),
        retry_queue_url: None,
        batch_time_budget: Duration::from_secs(5),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let watch = async {
        let started = Instant::now();
        loop {
            let attributes = env
                .sqs
                .get_queue_attributes()
                .queue_url(&queue_url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
                .send()
                .await
                .unwrap();
            let count = |name| {
                attributes
                    .attributes()
                    .and_then(|a| a.get(&name))
                    .map_or(0, |v| v.parse::<u32>().unwrap())
            };
            let left = count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                + count(
                    aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                );
            if left == 0 || started.elapsed() > Duration::from_secs(90) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        stop.send(()).unwrap();
    };
    tokio::join!(consumer.run(async { stopped.await.unwrap() }), watch);

    let mut delivered: Vec<String> = loki.accepted_event_ids();
    delivered.extend(datadog.accepted_event_ids());
    delivered.sort();
    delivered.dedup();
    let dead: Vec<String> = env
        .dead_letters()
        .await
        .into_iter()
        .map(|(body, _)| {
            serde_json::from_str::<Value>(&body).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        dead.len(),
        8,
        "the broken project's messages went to the DLQ once each: {dead:?}"
    );
    assert!(dead.iter().all(|id| id.starts_with("proj-broken-")));
    assert!(
        broken.requests() >= 2,
        "the broken destination was tried on every receive"
    );
    assert!(delivered.iter().all(|id| !id.starts_with("proj-broken-")));
    let accounted: BTreeSet<String> = delivered.into_iter().chain(dead).collect();
    assert_eq!(accounted, sent, "every event is delivered or dead-lettered");
    assert_eq!(loki.violations(), Vec::<String>::new());
    assert_eq!(datadog.violations(), Vec::<String>::new());
}

/// SQS mode believes a copy's attributes only from the retry queue: on the event queue, a
/// producer's `els_sent_timestamp` neither skips its event nor backfills one, and its
/// `els_attempts` neither dead-letters its record early; the copy the streamer sends back to
/// the retry queue keeps its attempts, so the record is dead-lettered at the last one.
#[tokio::test]
async fn sqs_mode_believes_the_attributes_of_a_copy_only_from_the_retry_queue() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let revoked = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let env = StreamerEnv::new(Options::retrying(2)).await;
    let enabled = time::OffsetDateTime::now_utc() - Duration::from_secs(1);
    let mut spec = loki_config(&loki.hostname(), LOKI_PASSWORD);
    spec.enabled_at = Some(enabled);
    env.configure("fine", spec).await;
    env.configure(
        "revoked",
        loki_config(&revoked.hostname(), "glc_revoked-0000"),
    )
    .await;
    let queue_url = new_queue(&env.sqs, "events").await;
    let retry_queue_url = env.retry_queue_url.clone().unwrap();
    let number = |value: i128| {
        aws_sdk_sqs::types::MessageAttributeValue::builder()
            .data_type("Number")
            .string_value(value.to_string())
            .build()
            .unwrap()
    };
    let before_enable_ms = (enabled.unix_timestamp_nanos() / 1_000_000) - 60_000;
    for (project, id) in [("fine", "fine-1"), ("revoked", "revoked-1")] {
        env.sqs
            .send_message()
            .queue_url(&queue_url)
            .message_body(event(project, id).to_string())
            .message_attributes(SENT_TIMESTAMP_ATTRIBUTE, number(before_enable_ms))
            .message_attributes(ATTEMPTS_ATTRIBUTE, number(7))
            .send()
            .await
            .unwrap();
    }

    let consumer = Consumer {
        streamer: &env.streamer,
        sqs: env.sqs.clone(),
        queue_url: queue_url.clone(),
        retry_queue_url: Some(retry_queue_url.clone()),
        batch_time_budget: Duration::from_secs(5),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let watch = async {
        let started = Instant::now();
        while !(queue_is_empty(&env.sqs, &queue_url).await
            && queue_is_empty(&env.sqs, &retry_queue_url).await
            && revoked.requests() >= 2)
            && started.elapsed() < Duration::from_secs(30)
        {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        stop.send(()).unwrap();
    };
    tokio::join!(consumer.run(async { stopped.await.unwrap() }), watch);

    assert_eq!(loki.accepted_event_ids(), ["fine-1"]);
    let dead = env.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].0.contains("revoked-1"));
    assert!(
        dead[0].1["rejection_detail"].starts_with("not delivered after 2 attempts"),
        "{dead:?}"
    );
    assert_eq!(revoked.requests(), 2);
}
