//! `els-admin`, the binary itself, against moto (`AWS_ENDPOINT_URL`), and against the local
//! runner's files. Where AWS must misbehave (a refusal, a concurrent write landing between a
//! read and a write) a [`MotoProxy`] sits between the command and moto.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use config_api::auth::{KeySource, ManagementKey, ManagementKeys, sha256_hex};
use config_api::{AppState, app};
use event_log_streaming::event::{
    ATTEMPTS_ATTRIBUTE, MessageSource, QueueMessage, SENT_TIMESTAMP_ATTRIBUTE, SqsAttributes,
};
use event_log_streaming::store::MemoryStateStore;
use integration_tests::fixtures::{labels, loopback_client};
use integration_tests::moto::moto;
use integration_tests::moto_proxy::{MotoProxy, Step};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tower::ServiceExt;

use crate::helpers::*;

/// What a run of the command printed, and how it ended.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    fn failed(self) -> Self {
        assert_ne!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// The secret `keys create` printed.
    fn secret(&self) -> String {
        self.stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("secret: "))
            .expect("a secret line")
            .to_owned()
    }
}

/// Runs the command with only `vars` and moto's (or `endpoint`'s) AWS settings: nothing of
/// the test machine's environment reaches it. On a blocking thread, so that a proxy served by
/// this test's runtime keeps answering.
async fn els_admin(endpoint: &str, vars: &[(&str, &str)], args: &[&str]) -> Ran {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_els_admin"));
    command
        .env_clear()
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .envs(vars.iter().copied())
        .args(args);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

async fn on_moto(vars: &[(&str, &str)], args: &[&str]) -> Ran {
    els_admin(&moto().endpoint, vars, args).await
}

async fn secrets_manager() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&moto().sdk_config().await)
}

async fn sqs() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&moto().sdk_config().await)
}

/// A management keys secret holding `text`, as the template creates it (`[]`).
async fn keys_secret(text: &str) -> String {
    let name = unique("keys");
    secrets_manager()
        .await
        .create_secret()
        .name(&name)
        .secret_string(text)
        .send()
        .await
        .unwrap();
    name
}

async fn current_keys(secret_id: &str) -> (String, String) {
    let output = secrets_manager()
        .await
        .get_secret_value()
        .secret_id(secret_id)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap();
    (
        output.version_id().unwrap().to_owned(),
        output.secret_string().unwrap().to_owned(),
    )
}

async fn key_ids(secret_id: &str) -> Vec<String> {
    let (_, text) = current_keys(secret_id).await;
    let keys: Vec<ManagementKey> = serde_json::from_str(&text).unwrap();
    keys.into_iter().map(|k| k.key_id).collect()
}

/// The config API, reading its keys from `secret_id` as in AWS, on an empty store.
async fn config_api(secret_id: &str) -> axum::Router {
    let store = Arc::new(MemoryStateStore::new());
    app(AppState::new(
        store.clone(),
        store,
        ManagementKeys::new(KeySource::SecretsManager {
            client: secrets_manager().await,
            secret_id: secret_id.to_owned(),
        }),
        loopback_client(None),
        labels(),
        std::time::Duration::ZERO,
    ))
}

async fn status_of(api: &axum::Router, project: &str, key: &str) -> StatusCode {
    let request = Request::get(format!(
        "/v1/projects/{project}/event_log_streaming/DATADOG"
    ))
    .header(
        header::AUTHORIZATION,
        format!("Basic {}", BASE64.encode(key)),
    )
    .body(Body::empty())
    .unwrap();
    api.clone().oneshot(request).await.unwrap().status()
}

#[tokio::test]
async fn a_created_key_is_printed_once_stored_as_its_hash_accepted_by_the_api_and_revoked() {
    let secret_id = keys_secret("[]").await;
    let vars = [("MANAGEMENT_KEYS_SECRET_ID", secret_id.as_str())];

    let created = on_moto(
        &vars,
        &["keys", "create", "--id", "ops-1", "--projects", "proj-a"],
    )
    .await
    .ok();
    let secret = created.secret();
    assert_eq!(
        created.stdout.matches(&secret).count(),
        2,
        "the secret and the export line"
    );

    let (_, stored) = current_keys(&secret_id).await;
    assert!(!stored.contains(&secret));
    let keys: Vec<Value> = serde_json::from_str(&stored).unwrap();
    assert_eq!(keys[0]["secret_sha256"], sha256_hex(&secret));
    assert_eq!(keys[0]["projects"], json!(["proj-a"]));
    assert!(keys[0]["created_at"].is_string());

    let api = config_api(&secret_id).await;
    let key = format!("ops-1:{secret}");
    // 404: authenticated and allowed, the project just has no stream.
    assert_eq!(status_of(&api, "proj-a", &key).await, StatusCode::NOT_FOUND);
    assert_eq!(status_of(&api, "proj-b", &key).await, StatusCode::FORBIDDEN);
    assert_eq!(
        status_of(&api, "proj-a", "ops-1:wrong").await,
        StatusCode::UNAUTHORIZED
    );

    let listed = on_moto(&vars, &["keys", "list"]).await.ok();
    let row = listed
        .stdout
        .lines()
        .find(|l| l.starts_with("ops-1 "))
        .unwrap();
    assert!(row.ends_with("proj-a"), "{row}");
    assert!(
        row.contains(&OffsetDateTime::now_utc().year().to_string()),
        "{row}"
    );
    assert!(!listed.stdout.contains(&secret));
    assert!(!listed.stdout.contains(&sha256_hex(&secret)));

    on_moto(&vars, &["keys", "revoke", "ops-1"]).await.ok();
    assert!(key_ids(&secret_id).await.is_empty());
    let api = config_api(&secret_id).await;
    assert_eq!(
        status_of(&api, "proj-a", &key).await,
        StatusCode::UNAUTHORIZED
    );
    let again = on_moto(&vars, &["keys", "revoke", "ops-1"]).await.failed();
    assert!(
        again.stderr.contains("no key with id ops-1"),
        "{}",
        again.stderr
    );
}

#[tokio::test]
async fn keys_written_before_creation_times_were_kept_are_left_as_they_were() {
    let old = json!([{"key_id": "old", "secret_sha256": sha256_hex("s"), "projects": ["*"]}]);
    let secret_id = keys_secret(&old.to_string()).await;
    let vars = [("MANAGEMENT_KEYS_SECRET_ID", secret_id.as_str())];
    on_moto(&vars, &["keys", "create", "--id", "new", "--projects", "*"])
        .await
        .ok();
    let (_, stored) = current_keys(&secret_id).await;
    let keys: Vec<Value> = serde_json::from_str(&stored).unwrap();
    assert_eq!(keys[0], old[0]);
    let listed = on_moto(&vars, &["keys", "list"]).await.ok();
    let row = listed
        .stdout
        .lines()
        .find(|l| l.starts_with("old "))
        .unwrap();
    assert!(row.contains(" - "), "{row}");
    let taken = on_moto(&vars, &["keys", "create", "--id", "old", "--projects", "*"])
        .await
        .failed();
    assert!(taken.stderr.contains("exists already"), "{}", taken.stderr);
    assert!(!taken.stdout.contains("secret"));
}

#[tokio::test]
async fn two_concurrent_creates_both_land_or_the_one_that_did_not_is_told() {
    let secret_id = keys_secret("[]").await;
    let vars = [("MANAGEMENT_KEYS_SECRET_ID", secret_id.as_str())];
    let (a, b) = tokio::join!(
        on_moto(&vars, &["keys", "create", "--id", "a", "--projects", "*"]),
        on_moto(&vars, &["keys", "create", "--id", "b", "--projects", "*"]),
    );
    let stored = key_ids(&secret_id).await;
    for (id, ran) in [("a", a), ("b", b)] {
        if ran.code == 0 {
            assert!(stored.contains(&id.to_owned()), "{id} lost: {stored:?}");
        } else {
            assert!(
                ran.stderr.contains("changed by someone else"),
                "{}",
                ran.stderr
            );
            assert!(!stored.contains(&id.to_owned()));
            assert!(!ran.stdout.contains("secret"));
        }
    }
}

/// A proxy that answers the first `stale_reads` GetSecretValue calls with the keys as they
/// were at `version` (`text`): as if another writer wrote between the command's read and its
/// write.
async fn stale_reads(stale_reads: usize, version: String, text: String) -> MotoProxy {
    let reads = Arc::new(AtomicUsize::new(0));
    MotoProxy::start(move |target, _| {
        if !target.ends_with("GetSecretValue")
            || reads.fetch_add(1, Ordering::SeqCst) >= stale_reads
        {
            return Step::Forward;
        }
        let (version, text) = (version.clone(), text.clone());
        Step::ForwardAndEdit(Box::new(move |answer| {
            answer["VersionId"] = json!(version);
            answer["SecretString"] = json!(text);
        }))
    })
    .await
}

#[tokio::test]
async fn a_write_overtaken_by_another_is_detected_and_made_again_on_the_new_list() {
    let secret_id = keys_secret(&json!([]).to_string()).await;
    let vars = [("MANAGEMENT_KEYS_SECRET_ID", secret_id.as_str())];
    let (before, text) = current_keys(&secret_id).await;
    on_moto(
        &vars,
        &["keys", "create", "--id", "theirs", "--projects", "*"],
    )
    .await
    .ok();

    let proxy = stale_reads(1, before.clone(), text.clone()).await;
    let endpoint = proxy.sdk_config().await.endpoint_url().unwrap().to_owned();
    els_admin(
        &endpoint,
        &vars,
        &["keys", "create", "--id", "mine", "--projects", "*"],
    )
    .await
    .ok();
    assert_eq!(key_ids(&secret_id).await, ["theirs", "mine"]);

    // Overtaken every round: refused, nothing printed, nothing written.
    let proxy = stale_reads(usize::MAX, before, text).await;
    let endpoint = proxy.sdk_config().await.endpoint_url().unwrap().to_owned();
    let refused = els_admin(
        &endpoint,
        &vars,
        &["keys", "create", "--id", "late", "--projects", "*"],
    )
    .await
    .failed();
    assert!(
        refused.stderr.contains("changed by someone else"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stdout.contains("secret"));
    assert_eq!(key_ids(&secret_id).await, ["theirs", "mine"]);
}

fn scratch_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(label));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn local_mode_manages_the_runners_keys_file_which_the_runner_then_serves() {
    let dir = scratch_dir("els-admin-local");
    let local = format!("--local={}", dir.display());
    let keys_file = dir.join(local_runner::keys::KEYS_FILE_NAME);
    let created = on_moto(
        &[],
        &[&local, "keys", "create", "--id", "ops", "--projects", "*"],
    )
    .await
    .ok();
    let secret = created.secret();
    let stored = std::fs::read_to_string(&keys_file).unwrap();
    assert!(stored.contains(&sha256_hex(&secret)) && !stored.contains(&secret));

    // The runner starts on it: no key of its own, ours serves.
    let (keys, new_secret) = local_runner::keys::load_or_create(&keys_file).unwrap();
    assert!(new_secret.is_none());
    let api = ManagementKeys::new(KeySource::Fixed(keys));
    let basic = format!("Basic {}", BASE64.encode(format!("ops:{secret}")));
    assert!(api.authenticate(Some(&basic)).await.is_ok());

    let listed = on_moto(&[], &[&local, "keys", "list"]).await.ok();
    assert!(listed.stdout.lines().any(|l| l.starts_with("ops ")));
    assert!(!listed.stdout.contains(&sha256_hex(&secret)));

    // Another els-admin mid-write holds the lock: refused, said why.
    let lock = dir.join(format!("{}.lock", local_runner::keys::KEYS_FILE_NAME));
    std::fs::write(&lock, "").unwrap();
    let locked = on_moto(&[], &[&local, "keys", "revoke", "ops"])
        .await
        .failed();
    assert!(locked.stderr.contains("locked"), "{}", locked.stderr);
    std::fs::remove_file(&lock).unwrap();

    on_moto(&[], &[&local, "keys", "revoke", "ops"]).await.ok();
    assert_eq!(std::fs::read_to_string(&keys_file).unwrap().trim(), "[]");
    let no_dlq = on_moto(&[], &[&local, "dlq", "summary"]).await.failed();
    assert!(
        no_dlq.stderr.contains("no dead-letter queue"),
        "{}",
        no_dlq.stderr
    );
}

/// A dead letter as the streamer writes it (`event_log_streaming::dead_letter`), or, without a
/// reason, as a queue's redrive policy moves a message: no attribute at all.
struct Letter {
    body: String,
    reason: Option<&'static str>,
    project: Option<&'static str>,
    sent_ms: i64,
    attempts: u32,
}

fn letter(
    n: usize,
    reason: Option<&'static str>,
    project: Option<&'static str>,
    age_hours: i64,
) -> Letter {
    let sent = OffsetDateTime::now_utc() - time::Duration::hours(age_hours);
    Letter {
        body: json!({"project_id": project.unwrap_or("?"), "event_id": format!("e-{n}")})
            .to_string(),
        reason,
        project,
        sent_ms: (sent.unix_timestamp_nanos() / 1_000_000) as i64,
        attempts: 5,
    }
}

async fn dead_letter_queue(letters: &[Letter]) -> String {
    let url = new_queue(&sqs().await, "dlq").await;
    let sqs = sqs().await;
    let attribute = |data_type: &str, value: String| {
        aws_sdk_sqs::types::MessageAttributeValue::builder()
            .data_type(data_type)
            .string_value(value)
            .build()
            .unwrap()
    };
    for letter in letters {
        let mut send = sqs
            .send_message()
            .queue_url(&url)
            .message_body(&letter.body);
        if let Some(reason) = letter.reason {
            send = send
                .message_attributes("rejection_reason", attribute("String", reason.into()))
                .message_attributes("rejection_detail", attribute("String", "why".into()))
                .message_attributes("source_message_id", attribute("String", "m-0".into()))
                .message_attributes(
                    SENT_TIMESTAMP_ATTRIBUTE,
                    attribute("Number", letter.sent_ms.to_string()),
                )
                .message_attributes(
                    ATTEMPTS_ATTRIBUTE,
                    attribute("Number", letter.attempts.to_string()),
                );
        }
        if let Some(project) = letter.project {
            send = send.message_attributes("project_id", attribute("String", project.into()));
        }
        send.send().await.unwrap();
    }
    url
}

/// `section:` rows of `dlq summary` as (name, count).
fn summary_section(stdout: &str, section: &str) -> HashMap<String, usize> {
    stdout
        .lines()
        .skip_while(|l| *l != format!("by {section}:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| {
            let (name, count) = l.trim().rsplit_once(' ').unwrap();
            (name.trim().to_owned(), count.parse().unwrap())
        })
        .collect()
}

fn counts(pairs: &[(&str, usize)]) -> HashMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[tokio::test]
async fn the_summary_counts_by_reason_project_and_age_and_leaves_every_message_visible() {
    let dlq = dead_letter_queue(&[
        letter(1, Some("retries_exhausted"), Some("p-1"), 0),
        letter(2, Some("retries_exhausted"), Some("p-1"), 3),
        letter(3, Some("destination_rejected"), Some("p-2"), 48),
        letter(4, Some("malformed_json"), None, 24 * 8),
        letter(5, None, None, 0),
    ])
    .await;
    let vars = [("DEAD_LETTER_QUEUE_URL", dlq.as_str())];
    for _ in 0..2 {
        let summary = on_moto(&vars, &["dlq", "summary"]).await.ok();
        assert!(
            summary.stdout.starts_with("messages: 5\n"),
            "{}",
            summary.stdout
        );
        assert_eq!(
            summary_section(&summary.stdout, "reason"),
            counts(&[
                ("retries_exhausted", 2),
                ("destination_rejected", 1),
                ("malformed_json", 1),
                ("(none)", 1)
            ])
        );
        assert_eq!(
            summary_section(&summary.stdout, "project"),
            counts(&[("p-1", 2), ("p-2", 1), ("(none)", 2)])
        );
        assert_eq!(
            summary_section(&summary.stdout, "age"),
            counts(&[
                ("under 1h", 2),
                ("1h to 1d", 1),
                ("1d to 7d", 1),
                ("7d or more", 1)
            ])
        );
    }
    // Released at the end, not hidden for the visibility timeout.
    assert_eq!(receive_all(&sqs().await, &dlq).await.len(), 5);
}

#[tokio::test]
async fn a_redrive_moves_only_the_chosen_messages_each_with_its_send_time_and_attempts() {
    let letters = || {
        vec![
            letter(1, Some("retries_exhausted"), Some("p-1"), 0),
            letter(2, Some("retries_exhausted"), Some("p-2"), 3),
            letter(3, Some("destination_rejected"), Some("p-1"), 48),
        ]
    };
    // (flags, event ids moved)
    let table: [(&[&str], &[&str]); 5] = [
        (&["--reason", "retries_exhausted"], &["e-1", "e-2"]),
        (&["--project", "p-1"], &["e-1", "e-3"]),
        (&["--older-than", "2h"], &["e-2", "e-3"]),
        (
            &["--reason", "retries_exhausted", "--older-than", "1d"],
            &[],
        ),
        (&[], &["e-1", "e-2", "e-3"]),
    ];
    for (flags, moved) in table {
        let sent = letters();
        let dlq = dead_letter_queue(&sent).await;
        let retries = new_queue(&sqs().await, "retries").await;
        let vars = [
            ("DEAD_LETTER_QUEUE_URL", dlq.as_str()),
            ("RETRY_QUEUE_URL", retries.as_str()),
        ];
        let args = [&["dlq", "redrive"][..], flags].concat();
        let ran = on_moto(&vars, &args).await.ok();
        assert!(
            ran.stdout
                .contains(&format!("moved {} to the retry queue", moved.len())),
            "{}",
            ran.stdout
        );

        let event_id = |body: &str| {
            serde_json::from_str::<Value>(body).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let copies = receive_all(&sqs().await, &retries).await;
        let mut copied: Vec<String> = copies.iter().map(|(body, _)| event_id(body)).collect();
        copied.sort();
        assert_eq!(copied, moved, "{flags:?}");
        for (body, attributes) in &copies {
            let original = sent.iter().find(|l| &l.body == body).unwrap();
            // Read back from the retry queue as the streamer reads it.
            let message = QueueMessage::from_sqs(
                "copy",
                body.clone(),
                SqsAttributes {
                    source: MessageSource::RetryQueue,
                    sent_timestamp: None,
                    receive_count: Some("1"),
                    attempts_before: attributes.get(ATTEMPTS_ATTRIBUTE).map(String::as_str),
                    original_sent_timestamp: attributes
                        .get(SENT_TIMESTAMP_ATTRIBUTE)
                        .map(String::as_str),
                },
                OffsetDateTime::now_utc(),
            );
            assert_eq!(
                message.sent_at.unix_timestamp_nanos() / 1_000_000,
                i128::from(original.sent_ms)
            );
            assert_eq!(message.attempt, original.attempts + 1);
        }
        // The others stay, visible at once.
        let mut left: Vec<String> = receive_all(&sqs().await, &dlq)
            .await
            .iter()
            .map(|(body, _)| event_id(body))
            .collect();
        left.sort();
        let expected: Vec<&str> = ["e-1", "e-2", "e-3"]
            .into_iter()
            .filter(|e| !moved.contains(e))
            .collect();
        assert_eq!(left, expected, "{flags:?}");
    }
}

#[tokio::test]
async fn a_redrive_to_the_event_queue_says_the_attributes_are_not_believed_there() {
    let dlq = dead_letter_queue(&[letter(1, None, None, 0)]).await;
    let events = new_queue(&sqs().await, "events").await;
    let vars = [
        ("DEAD_LETTER_QUEUE_URL", dlq.as_str()),
        ("EVENT_QUEUE_URL", events.as_str()),
    ];
    let ran = on_moto(&vars, &["dlq", "redrive", "--to", "event-queue"])
        .await
        .ok();
    assert!(ran.stderr.contains("does not believe"), "{}", ran.stderr);
    let copies = receive_all(&sqs().await, &events).await;
    assert_eq!(copies.len(), 1);
    // A message the redrive policy moved has no attempts to carry, only its send time.
    assert!(copies[0].1.contains_key(SENT_TIMESTAMP_ATTRIBUTE));
    assert!(!copies[0].1.contains_key(ATTEMPTS_ATTRIBUTE));
    assert!(queue_is_empty(&sqs().await, &dlq).await);
}

#[tokio::test]
async fn a_refused_send_leaves_every_message_in_the_dead_letter_queue_and_names_the_permission() {
    let dlq = dead_letter_queue(&[
        letter(1, Some("retries_exhausted"), Some("p-1"), 0),
        letter(2, Some("retries_exhausted"), Some("p-1"), 0),
    ])
    .await;
    let retries = new_queue(&sqs().await, "retries").await;
    let proxy = MotoProxy::start(|target, _| match target {
        "AmazonSQS.SendMessageBatch" => Step::Fail {
            error_type: "com.amazonaws.sqs#AccessDenied",
            message: "not authorized",
        },
        _ => Step::Forward,
    })
    .await;
    let endpoint = proxy.sdk_config().await.endpoint_url().unwrap().to_owned();
    let vars = [
        ("DEAD_LETTER_QUEUE_URL", dlq.as_str()),
        ("RETRY_QUEUE_URL", retries.as_str()),
    ];
    let ran = els_admin(&endpoint, &vars, &["dlq", "redrive"])
        .await
        .failed();
    assert!(ran.stderr.contains("sqs:SendMessage"), "{}", ran.stderr);
    assert!(ran.stderr.contains(&retries), "{}", ran.stderr);
    assert!(ran.stderr.contains("RedriveRoleArn"), "{}", ran.stderr);
    assert!(ran.stdout.contains("moved 0"), "{}", ran.stdout);
    assert!(queue_is_empty(&sqs().await, &retries).await);
    // Both still there, and visible at once.
    assert_eq!(receive_all(&sqs().await, &dlq).await.len(), 2);
}

#[tokio::test]
async fn stream_show_prints_the_apis_view_of_configuration_and_health() {
    let env = StateEnv::new().await;
    env.configure("proj-show", loki_config("logs.example.com", LOKI_PASSWORD))
        .await;
    let vars = [("STREAM_TABLE_NAME", env.table.as_str())];
    let shown = on_moto(&vars, &["stream", "show", "proj-show"]).await.ok();
    let view: Value = serde_json::from_str(&shown.stdout).unwrap();
    let config = &view["event_log_streaming_config"];
    assert_eq!(config["destination_type"], "GRAFANA_LOKI");
    assert_eq!(
        config["destination_config"]["grafana_loki"]["password_last_four"],
        &LOKI_PASSWORD[LOKI_PASSWORD.len() - 4..]
    );
    assert!(config["delivery_health"]["events_delivered"].is_number());
    assert!(!shown.stdout.contains(LOKI_PASSWORD));

    let none = on_moto(&vars, &["stream", "show", "proj-none"])
        .await
        .failed();
    assert!(
        none.stderr.contains("proj-none has no stream"),
        "{}",
        none.stderr
    );
}

#[tokio::test]
async fn local_stream_show_reads_the_runners_state_file() {
    let dir = scratch_dir("els-admin-state");
    let store =
        event_log_streaming::store::FileStateStore::new(dir.join(local_runner::STATE_FILE_NAME));
    integration_tests::fixtures::provision(
        &store,
        &store,
        "proj-local",
        datadog_config(DATADOG_KEY),
    )
    .await;
    let local = format!("--local={}", dir.display());
    let shown = on_moto(&[], &[&local, "stream", "show", "proj-local"])
        .await
        .ok();
    let view: Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(
        view["event_log_streaming_config"]["destination_type"],
        "DATADOG"
    );
    assert!(!shown.stdout.contains(DATADOG_KEY));
}

#[tokio::test]
async fn a_stacks_outputs_name_the_resources() {
    let secret_id = keys_secret("[]").await;
    let dlq = dead_letter_queue(&[letter(1, Some("retries_exhausted"), Some("p-1"), 0)]).await;
    let stack = unique("els");
    let template = json!({
        "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": unique("placeholder")}}},
        "Outputs": {
            "ManagementKeysSecretArn": {"Value": secret_id},
            "DeadLetterQueueUrl": {"Value": dlq},
        }
    });
    aws_sdk_cloudformation::Client::new(&moto().sdk_config().await)
        .create_stack()
        .stack_name(&stack)
        .template_body(template.to_string())
        .send()
        .await
        .unwrap();

    on_moto(
        &[],
        &[
            "--stack",
            &stack,
            "keys",
            "create",
            "--id",
            "k",
            "--projects",
            "*",
        ],
    )
    .await
    .ok();
    assert_eq!(key_ids(&secret_id).await, ["k"]);
    let summary = on_moto(&[], &["dlq", "summary", "--stack", &stack])
        .await
        .ok();
    assert!(
        summary.stdout.starts_with("messages: 1\n"),
        "{}",
        summary.stdout
    );

    let no_output = on_moto(&[], &["--stack", &stack, "stream", "show", "p-1"])
        .await
        .failed();
    assert!(
        no_output.stderr.contains("has no output StreamTableName"),
        "{}",
        no_output.stderr
    );
    let no_stack = on_moto(&[], &["--stack", "no-such-stack", "keys", "list"])
        .await
        .failed();
    assert!(
        no_stack.stderr.contains("no stack named no-such-stack"),
        "{}",
        no_stack.stderr
    );
}

#[tokio::test]
async fn wrong_or_missing_names_and_refusals_say_which_resource_and_action() {
    let missing_queue = format!("{}/123456789012/{}", moto().endpoint, unique("nope"));
    let ran = on_moto(
        &[("DEAD_LETTER_QUEUE_URL", &missing_queue)],
        &["dlq", "summary"],
    )
    .await
    .failed();
    assert!(
        ran.stderr.contains(&format!(
            "the dead-letter queue {missing_queue} does not exist"
        )),
        "{}",
        ran.stderr
    );
    let ran = on_moto(
        &[("MANAGEMENT_KEYS_SECRET_ID", "no-such-secret")],
        &["keys", "list"],
    )
    .await
    .failed();
    assert!(
        ran.stderr
            .contains("the management keys secret no-such-secret does not exist"),
        "{}",
        ran.stderr
    );
    let ran = on_moto(&[], &["dlq", "summary"]).await.failed();
    assert!(
        ran.stderr.contains("DEAD_LETTER_QUEUE_URL"),
        "{}",
        ran.stderr
    );

    let secret_id = keys_secret("[]").await;
    let proxy = MotoProxy::start(|target, _| match target {
        "secretsmanager.GetSecretValue" => Step::Fail {
            error_type: "AccessDeniedException",
            message: "not authorized",
        },
        _ => Step::Forward,
    })
    .await;
    let endpoint = proxy.sdk_config().await.endpoint_url().unwrap().to_owned();
    let ran = els_admin(
        &endpoint,
        &[("MANAGEMENT_KEYS_SECRET_ID", &secret_id)],
        &["keys", "list"],
    )
    .await
    .failed();
    assert!(ran.stderr.contains("access denied"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("secretsmanager:GetSecretValue"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains(&secret_id), "{}", ran.stderr);
}
