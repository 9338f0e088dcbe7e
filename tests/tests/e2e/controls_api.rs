//! The stream controls through the config API: saved, shown, replaced and cleared; each bad
//! value a 400 naming its field; the redaction key made, kept and never shown; the test event
//! sent through the redaction.

use std::sync::Arc;

use axum::http::StatusCode;
use event_log_streaming::Secret;
use event_log_streaming::domain::{ProjectId, StreamControls, StreamSecret};
use event_log_streaming::store::{CredentialRead, MemoryStateStore, StreamWrite, create_stream};
use integration_tests::fake_destination::FakeDestination;
use integration_tests::fixtures::loki_destination;
use integration_tests::logs::capture_logs;
use serde_json::{Value, json};

use crate::config_api::Api;
use crate::helpers::{DATADOG_KEY, LOKI_PASSWORD, LOKI_USER};

const COLLECTION: &str = "/v1/projects/proj-a/event_log_streaming";
const LOKI: &str = "/v1/projects/proj-a/event_log_streaming/GRAFANA_LOKI";
const DATADOG: &str = "/v1/projects/proj-a/event_log_streaming/DATADOG";

fn loki_config(hostname: &str, password: &str) -> Value {
    json!({"grafana_loki": {"hostname": hostname, "username": LOKI_USER, "password": password}})
}

fn loki_with_controls() -> Value {
    json!({
        "destination_type": "GRAFANA_LOKI",
        "destination_config": {"grafana_loki": {
            "hostname": "logs-prod-021.grafana.net", "username": LOKI_USER,
            "password": LOKI_PASSWORD, "tenant_id": "auth-team",
            "labels": {"env": "production", "team": "identity"}
        }},
        "event_filter": {"actions": ["Passwords*", "MagicLinksAuthenticate"], "statuses": ["failure"]},
        "redaction": {"fields": ["email", "telemetry.ip_address"], "mode": "HASH"}
    })
}

fn config(answer: &crate::config_api::Answer) -> &Value {
    &answer.body["event_log_streaming_config"]
}

#[tokio::test]
async fn controls_are_saved_shown_replaced_and_cleared() {
    let api = Api::in_memory(None);
    let created = api
        .admin("POST", COLLECTION, Some(loki_with_controls()))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let read = api.admin("GET", LOKI, None).await;
    for shown in [config(&created), config(&read)] {
        let loki = &shown["destination_config"]["grafana_loki"];
        assert_eq!(loki["tenant_id"], "auth-team");
        assert_eq!(
            loki["labels"],
            json!({"env": "production", "team": "identity"})
        );
        assert_eq!(
            shown["event_filter"],
            json!({"actions": ["Passwords*", "MagicLinksAuthenticate"], "statuses": ["failure"]})
        );
        assert_eq!(
            shown["redaction"],
            json!({"fields": ["email", "telemetry.ip_address"], "mode": "HASH"})
        );
        assert_eq!(shown["delivery_health"]["events_filtered"], 0);
    }

    // A PUT replaces every non-secret field: what it leaves out is cleared; the token is kept.
    let replaced = api
        .admin(
            "PUT",
            LOKI,
            Some(json!({
                "destination_config": {"grafana_loki": {"hostname": "logs-prod-021.grafana.net", "username": LOKI_USER}},
                "event_filter": {"statuses": ["success"]}
            })),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    let read = api.admin("GET", LOKI, None).await;
    let shown = config(&read);
    assert_eq!(shown["event_filter"], json!({"statuses": ["success"]}));
    assert!(shown.get("redaction").is_none(), "{shown}");
    let loki = &shown["destination_config"]["grafana_loki"];
    assert!(
        loki.get("tenant_id").is_none() && loki.get("labels").is_none(),
        "{loki}"
    );
    assert_eq!(
        loki["password_last_four"],
        &LOKI_PASSWORD[LOKI_PASSWORD.len() - 4..]
    );

    // A filter that filters nothing is no filter.
    api.admin(
        "PUT",
        LOKI,
        Some(json!({"destination_config": {"grafana_loki": {"hostname": "logs-prod-021.grafana.net", "username": LOKI_USER}}, "event_filter": {}})),
    )
    .await;
    assert!(
        config(&api.admin("GET", LOKI, None).await)
            .get("event_filter")
            .is_none()
    );

    // Datadog tags are kept lowercased, as Datadog shows them.
    api.admin("DELETE", LOKI, None).await;
    let datadog = api
        .admin(
            "POST",
            COLLECTION,
            Some(json!({
                "destination_type": "DATADOG",
                "destination_config": {"datadog": {"site": "EU", "api_key": DATADOG_KEY, "tags": ["Team:Identity", "env:prod"]}}
            })),
        )
        .await;
    assert_eq!(datadog.status, StatusCode::CREATED, "{}", datadog.body);
    let read = api.admin("GET", DATADOG, None).await;
    assert_eq!(
        config(&read)["destination_config"]["datadog"]["tags"],
        json!(["team:identity", "env:prod"])
    );
}

#[tokio::test]
async fn each_bad_control_is_a_400_that_names_its_field_and_not_its_value() {
    let api = Api::in_memory(None);
    let loki = |edit: &dyn Fn(&mut Value)| {
        let mut body = loki_with_controls();
        edit(&mut body);
        body
    };
    let table: Vec<(Value, &str)> = vec![
        (
            loki(&|b| b["event_filter"]["actions"] = json!(["Pass*words"])),
            "event_filter.actions[0]: may hold * only as its last character",
        ),
        (
            loki(&|b| b["event_filter"]["actions"] = json!([])),
            "event_filter.actions: must not be empty",
        ),
        (
            loki(&|b| b["event_filter"]["statuses"] = json!(vec!["s"; 101])),
            "event_filter.statuses: must hold at most 100 entries",
        ),
        (
            loki(&|b| b["event_filter"]["statuses"] = json!([7])),
            "event_filter.statuses[0]: must be a string",
        ),
        (
            loki(&|b| b["redaction"]["mode"] = json!("SCRAMBLE")),
            "redaction.mode",
        ),
        (
            loki(&|b| b["redaction"]["fields"] = json!(["a..b"])),
            "redaction.fields[0]",
        ),
        (
            loki(&|b| b["redaction"]["fields"] = json!(["email", "email"])),
            "redaction.fields[1]: repeats redaction.fields[0]",
        ),
        (
            loki(&|b| {
                b["redaction"]["fields"] =
                    json!((0..21).map(|i| format!("f{i}")).collect::<Vec<_>>())
            }),
            "redaction.fields: must hold at most 20 fields",
        ),
        (
            loki(&|b| b["destination_config"]["grafana_loki"]["tenant_id"] = json!("team a")),
            "destination_config.grafana_loki.tenant_id",
        ),
        (
            loki(&|b| b["destination_config"]["grafana_loki"]["tenant_id"] = json!("..")),
            "destination_config.grafana_loki.tenant_id: must not be . or ..",
        ),
        (
            loki(&|b| {
                b["destination_config"]["grafana_loki"]["labels"] = json!({"service_name": "x"})
            }),
            "destination_config.grafana_loki.labels.service_name",
        ),
        (
            loki(&|b| {
                b["destination_config"]["grafana_loki"]["labels"] = json!({"__private": "x"})
            }),
            "destination_config.grafana_loki.labels.__private",
        ),
        (
            loki(&|b| b["destination_config"]["grafana_loki"]["labels"] = json!({"bad-name": "x"})),
            "destination_config.grafana_loki.labels: label names must match",
        ),
        (
            loki(&|b| b["destination_config"]["grafana_loki"]["labels"] = json!({"team": ""})),
            "destination_config.grafana_loki.labels.team",
        ),
        (
            json!({"destination_type": "DATADOG", "destination_config": {"datadog": {"site": "US", "api_key": DATADOG_KEY, "tags": ["service:web"]}}}),
            "destination_config.datadog.tags[0]: must not use the key source, service, host or project_id",
        ),
        (
            json!({"destination_type": "DATADOG", "destination_config": {"datadog": {"site": "US", "api_key": DATADOG_KEY, "tags": ["team:a b"]}}}),
            "destination_config.datadog.tags[0]",
        ),
        (
            json!({"destination_type": "DATADOG", "destination_config": {"datadog": {"site": "US", "api_key": DATADOG_KEY, "tags": ["ok:1", "OK:1"]}}}),
            "destination_config.datadog.tags[1]: repeats tags[0]",
        ),
    ];
    for (body, expected) in table {
        let answer = api.admin("POST", COLLECTION, Some(body.clone())).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            answer.body
        );
        let message = answer.body["error_message"].as_str().unwrap();
        assert!(message.starts_with(expected), "{expected} / {message}");
        for refused in [
            "Pass*words",
            "SCRAMBLE",
            "team a",
            "bad-name",
            "team:a b",
            "a..b",
        ] {
            assert!(!message.contains(refused), "{message}");
        }
    }
    // Nothing was saved by any of them.
    assert_eq!(
        api.admin("GET", LOKI, None).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_hash_key_is_made_with_the_stream_kept_across_credentials_and_never_shown() {
    let store = Arc::new(MemoryStateStore::new());
    let api = Api::with_stores(store.clone(), store.clone(), None);
    let (logs, _guard) = capture_logs();
    let project = ProjectId::parse("proj-a").unwrap();

    let mut answers = vec![
        api.admin("POST", COLLECTION, Some(loki_with_controls()))
            .await,
    ];
    let (key, _) = key_of(&store, &project).await;
    let key = key.expect("a new stream has a redaction key");
    answers.push(
        api.admin("PUT", LOKI, Some(json!({"destination_config": loki_config("logs-prod-021.grafana.net", "glc_another-token-0042"), "redaction": {"fields": ["email"], "mode": "HASH"}})))
            .await,
    );
    answers.push(api.admin("GET", LOKI, None).await);
    let (after, _) = key_of(&store, &project).await;
    assert_eq!(
        after.as_ref(),
        Some(&key),
        "a new credential keeps the project's key"
    );
    let bodies: Vec<String> = answers.iter().map(|a| a.body.to_string()).collect();
    let everything = format!("{}{}", bodies.concat(), logs.text());
    assert!(!everything.contains(key.expose()), "the key leaked");
    assert!(!everything.contains("redaction_key"), "{everything}");

    // A stream saved before keys existed gets one when it first hashes, and only then.
    api.admin("DELETE", LOKI, None).await;
    let old = loki_destination("logs-prod-021.grafana.net", LOKI_USER, LOKI_PASSWORD);
    let legacy_store = Arc::new(LegacyCredentials(store.clone()));
    create_stream(
        store.as_ref(),
        legacy_store.as_ref(),
        &project,
        &old,
        &StreamControls::default(),
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    let (none, version) = key_of(&store, &project).await;
    assert!(none.is_none());
    let mask = json!({"destination_config": loki_config("logs-prod-021.grafana.net", ""), "redaction": {"fields": ["email"], "mode": "MASK"}});
    assert_eq!(
        api.admin("PUT", LOKI, Some(mask)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        key_of(&store, &project).await,
        (None, version.clone()),
        "MASK needs no key: no secret written"
    );
    let hash = json!({"destination_config": loki_config("logs-prod-021.grafana.net", ""), "redaction": {"fields": ["email"], "mode": "HASH"}});
    assert_eq!(
        api.admin("PUT", LOKI, Some(hash)).await.status,
        StatusCode::OK
    );
    let (made, new_version) = key_of(&store, &project).await;
    assert!(made.is_some() && new_version != version);
    let stream = StreamWrite::get(store.as_ref(), &project)
        .await
        .unwrap()
        .unwrap();
    let secret = CredentialRead::get(store.as_ref(), &stream.config.credential)
        .await
        .unwrap();
    assert_eq!(
        secret.credential.expose(),
        LOKI_PASSWORD,
        "the token is kept"
    );
}

/// The stream's redaction key (as stored) and the credential version its item refers to.
async fn key_of(store: &MemoryStateStore, project: &ProjectId) -> (Option<Secret>, String) {
    let stream = StreamWrite::get(store, project).await.unwrap().unwrap();
    let secret = CredentialRead::get(store, &stream.config.credential)
        .await
        .unwrap();
    let key = secret.redaction_key.map(|k| k.to_secret());
    (key, stream.config.credential.version_id)
}

/// Saves secrets as they were before redaction keys: the credential alone.
struct LegacyCredentials(Arc<MemoryStateStore>);

#[async_trait::async_trait]
impl event_log_streaming::store::CredentialWrite for LegacyCredentials {
    async fn create_secret(
        &self,
        project: &ProjectId,
        stream_id: &str,
        secret: &StreamSecret,
    ) -> Result<event_log_streaming::domain::CredentialRef, event_log_streaming::store::StoreError>
    {
        let old: StreamSecret = Secret::new(secret.credential.expose()).into();
        self.0.create_secret(project, stream_id, &old).await
    }
    async fn put_version(
        &self,
        secret_id: &str,
        secret: &StreamSecret,
    ) -> Result<event_log_streaming::domain::CredentialRef, event_log_streaming::store::StoreError>
    {
        self.0.put_version(secret_id, secret).await
    }
    async fn delete_secret(
        &self,
        secret_id: &str,
    ) -> Result<(), event_log_streaming::store::StoreError> {
        self.0.delete_secret(secret_id).await
    }
}

#[tokio::test]
async fn the_test_event_goes_through_the_redaction_and_not_the_filter() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let api = Api::in_memory(None);
    let mut body = json!({
        "destination_type": "GRAFANA_LOKI",
        "destination_config": {"grafana_loki": {
            "hostname": loki.hostname(), "username": LOKI_USER, "password": LOKI_PASSWORD,
            "tenant_id": "auth-team", "labels": {"team": "identity"}
        }},
        "event_filter": {"actions": ["PasswordsAuthenticate"]},
        "redaction": {"fields": ["request_id"], "mode": "MASK"}
    });
    assert_eq!(
        api.admin("POST", COLLECTION, Some(body.clone()))
            .await
            .status,
        StatusCode::CREATED
    );

    let answer = api.admin("POST", &format!("{LOKI}/test"), None).await;
    assert_eq!(answer.body["delivered"], true, "{}", answer.body);
    assert_eq!(answer.body["redacted"], true);
    assert!(
        answer.body["note"]
            .as_str()
            .unwrap()
            .contains("filter does not apply"),
        "{}",
        answer.body
    );
    let accepted = loki.accepted();
    assert_eq!(
        accepted.len(),
        1,
        "the filter does not hold the test event back"
    );
    assert_eq!(accepted[0].field("request_id"), "[REDACTED]");
    assert_eq!(accepted[0].field("action"), "EventLogStreamingTest");
    assert_eq!(accepted[0].tenant.as_deref(), Some("auth-team"));
    assert_eq!(accepted[0].meta["team"], "identity", "{}", accepted[0].meta);

    body["redaction"]["mode"] = json!("HASH");
    body.as_object_mut().unwrap().remove("destination_type");
    api.admin("PUT", LOKI, Some(body)).await;
    api.admin("POST", &format!("{LOKI}/test"), None).await;
    let hashed = loki.accepted()[1].field("request_id");
    let hashed = hashed.as_str().unwrap();
    let digest = hashed.strip_prefix("hmac-sha256:").unwrap();
    assert!(
        digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
        "{hashed}"
    );
}

/// DynamoDB and Secrets Manager on the emulator: the controls are maps and lists of the item
/// (absent when unused), the key is in the secret only, and both read back as they were saved.
#[tokio::test]
async fn controls_round_trip_through_dynamodb_and_the_key_through_secrets_manager() {
    let state = crate::helpers::StateEnv::new().await;
    let api = Api::with_stores(state.streams.clone(), state.credentials.clone(), None);
    let created = api
        .admin("POST", COLLECTION, Some(loki_with_controls()))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let read = api.admin("GET", LOKI, None).await;
    assert_eq!(
        config(&read)["event_filter"],
        config(&created)["event_filter"]
    );
    assert_eq!(config(&read)["redaction"], config(&created)["redaction"]);
    assert_eq!(
        config(&read)["destination_config"],
        config(&created)["destination_config"]
    );

    let item = state.raw_item("proj-a").await;
    let filter = item["event_filter"].as_m().unwrap();
    assert_eq!(filter["actions"].as_l().unwrap().len(), 2);
    assert_eq!(
        item["redaction"].as_m().unwrap()["mode"].as_s().unwrap(),
        "HASH"
    );
    assert_eq!(item["tenant_id"].as_s().unwrap(), "auth-team");
    assert_eq!(
        item["labels"].as_m().unwrap()["team"].as_s().unwrap(),
        "identity"
    );
    assert!(!item.contains_key("redaction_key"));
    let stored = state.stored("proj-a").await.unwrap();
    let secret = CredentialRead::get(state.credentials.as_ref(), &stored.config.credential)
        .await
        .unwrap();
    let key = secret.redaction_key.unwrap().to_secret();
    assert!(!format!("{item:?}").contains(key.expose()));

    // A save without controls removes their attributes.
    api.admin(
        "PUT",
        LOKI,
        Some(json!({"destination_config": loki_config("logs-prod-021.grafana.net", "")})),
    )
    .await;
    let item = state.raw_item("proj-a").await;
    for gone in ["event_filter", "redaction", "tenant_id", "labels", "tags"] {
        assert!(!item.contains_key(gone), "{gone}");
    }
}
