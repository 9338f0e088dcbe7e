//! Project state against moto: the reads of a batch (the index of configured projects, then
//! their items, asking again for what a throttled read left unprocessed), credentials read
//! once per version, delivery health, suspension and its end, concurrent writers, the index
//! kept exact, and the migration from the old one-secret-per-project format.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use event_log_streaming::Secret;
use event_log_streaming::domain::{
    DeliveryError, DeliveryHealth, ProjectId, StreamConfig, StreamingStatus, Suspension,
};
use event_log_streaming::store::migrate::{MIGRATED_STAGE, Migration};
use event_log_streaming::store::{
    CredentialRead, CredentialWrite, DynamoDbStreams, HealthWrite, SecretsManagerCredentials,
    StoreError, StreamLookup, StreamWrite,
};
use integration_tests::fake_destination::FakeDestination;
use integration_tests::lambda::{SqsRecord, now_ms};
use integration_tests::logs::capture_logs;
use integration_tests::moto::moto;
use integration_tests::moto_proxy::{MotoProxy, Step};
use serde_json::json;

use crate::config_api::Api;
use crate::helpers::*;

const BATCH_GET: &str = "DynamoDB.BatchGetItem";
const BATCH_GET_KEYS: &str = "DynamoDB.BatchGetItem.keys";

fn with_settings(settings: &[(&'static str, &str)], cache_ttl_seconds: u64) -> Options {
    Options {
        cache_ttl_seconds,
        settings: settings.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        ..Options::default()
    }
}

fn events(projects: &[&str], prefix: &str) -> Vec<SqsRecord> {
    projects
        .iter()
        .enumerate()
        .map(|(i, p)| {
            SqsRecord::new(
                format!("{prefix}-{i}"),
                event(p, &format!("{prefix}-{i}")).to_string(),
            )
        })
        .collect()
}

// Each batch after a TTL expiry reads the table twice: the index of configured projects (its
// head and 16 shards) and the items of the configured projects it names; the 20 projects
// without a stream are never read. Without the index, every project is read.
on_both_adapters!(a_batch_reads_the_index_and_configured_projects_and_credentials_once_per_version);
async fn a_batch_reads_the_index_and_configured_projects_and_credentials_once_per_version(
    adapter: Adapter,
) {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    // No cache: every batch reads the table again, as after each TTL expiry.
    let env = StreamerEnv::new(Options {
        adapter,
        ..with_settings(&[], 0)
    })
    .await;
    let read_credential = adapter.credential_read();
    env.configure("on-loki", loki_config(&loki.hostname(), LOKI_PASSWORD))
        .await;
    env.configure(
        "off",
        disabled(loki_config(&loki.hostname(), LOKI_PASSWORD)),
    )
    .await;
    let unconfigured: Vec<String> = (0..20).map(|i| format!("nobody-{i}")).collect();
    let mut projects = vec!["on-loki", "off"];
    projects.extend(unconfigured.iter().map(String::as_str));
    env.calls.reset();

    // Not built yet: the index says so (one read), and every project is read.
    let response = env.invoke(events(&projects, "before-index")).await;
    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(env.calls.count(BATCH_GET), 2, "{:?}", env.calls.all());
    assert_eq!(env.calls.count(BATCH_GET_KEYS), 17 + 22);
    env.build_index().await;

    for round in 0..3 {
        let response = env.invoke(events(&projects, &format!("r{round}"))).await;
        assert_eq!(failed_ids(&response), Vec::<String>::new());
    }
    assert_eq!(env.calls.count(BATCH_GET), 2 + 6, "{:?}", env.calls.all());
    assert_eq!(env.calls.count(BATCH_GET_KEYS), 17 + 22 + 3 * (17 + 2));
    assert_eq!(
        env.calls.count(read_credential),
        1,
        "only the active stream's credential, once: {:?}",
        env.calls.all()
    );
    assert_eq!(loki.accepted().len(), 4);

    // A new credential version is read once more, and only once.
    let stored = env.stream("on-loki").await;
    let credential = env
        .credentials
        .put_version(
            &stored.config.credential.secret_id,
            &event_log_streaming::Secret::new(LOKI_PASSWORD).into(),
        )
        .await
        .unwrap();
    let mut config = stored.config.next_version(stored.config.updated_at);
    config.credential = credential;
    env.streams
        .update(&config, stored.config.version)
        .await
        .unwrap();
    for round in 3..5 {
        env.invoke(events(&projects, &format!("r{round}"))).await;
    }
    assert_eq!(env.calls.count(read_credential), 2, "{:?}", env.calls.all());
    assert_eq!(env.calls.count(BATCH_GET), 2 + 6 + 4);
}

#[tokio::test]
async fn a_batch_of_many_projects_is_read_100_keys_per_call() {
    let env = StreamerEnv::new(Options::default()).await;
    let names: Vec<String> = (0..250).map(|i| format!("tail-{i}")).collect();
    let projects: Vec<ProjectId> = names.iter().map(|n| ProjectId::parse(n).unwrap()).collect();
    env.configure("tail-7", datadog_config(DATADOG_KEY)).await;
    env.calls.reset();

    let found = env.streams.get_many(&projects, far()).await;

    assert!(found.unread.is_empty(), "{:?}", found.unread);
    assert_eq!(found.streams.len(), 1);
    assert_eq!(found.streams[0].config.project_id.as_str(), "tail-7");
    assert_eq!(env.calls.count(BATCH_GET), 3, "{:?}", env.calls.all());
}

#[tokio::test]
async fn delivery_health_is_visible_after_a_success_and_after_a_401() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let env = StreamerEnv::new(Options::default()).await;
    env.configure("fine", loki_config(&loki.hostname(), LOKI_PASSWORD))
        .await;
    env.configure(
        "revoked",
        loki_config(&loki.hostname(), "glc_revoked-token-0000"),
    )
    .await;
    let (logs, _guard) = capture_logs();

    let response = env
        .invoke(vec![
            SqsRecord::new("m1", event("fine", "e-1").to_string()),
            SqsRecord::new("m2", event("revoked", "e-2").to_string()),
        ])
        .await;
    assert_eq!(failed_ids(&response), ["m2"]);

    let api = Api::with_stores(env.streams.clone(), env.credentials.clone(), None);
    let path = |p: &str| format!("/v1/projects/{p}/event_log_streaming/GRAFANA_LOKI");
    let fine = api.admin("GET", &path("fine"), None).await;
    let health = &fine.body["event_log_streaming_config"]["delivery_health"];
    assert!(health["last_success_at"].is_string(), "{health}");
    assert_eq!(health["events_delivered"], 1);
    assert_eq!(health["consecutive_failures"], 0);
    assert_eq!(health["last_error"], serde_json::Value::Null);

    let revoked = api.admin("GET", &path("revoked"), None).await;
    let health = &revoked.body["event_log_streaming_config"]["delivery_health"];
    assert_eq!(health["last_success_at"], serde_json::Value::Null);
    assert_eq!(health["consecutive_failures"], 1);
    assert_eq!(health["events_failed"], 1);
    assert_eq!(health["last_error"]["destination_status"], 401);
    assert_eq!(
        health["last_error"]["message"],
        "401 from Grafana Loki: check the username and token (the token needs the logs:write scope)"
    );
    assert_eq!(health["recent_errors"].as_array().unwrap().len(), 1);
    assert_eq!(health["last_failure_at"], health["last_error"]["at"]);
    assert!(!revoked.body.to_string().contains("glc_revoked-token"));
    assert!(!logs.text().contains("glc_revoked-token"));
}

#[tokio::test]
async fn health_is_written_at_a_state_change_and_otherwise_at_most_once_per_interval() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let env = StreamerEnv::new(Options::default()).await;
    env.configure("p", loki_config(&loki.hostname(), LOKI_PASSWORD))
        .await;
    env.calls.reset();

    for round in 0..4 {
        env.invoke(events(&["p"], &format!("r{round}"))).await;
    }

    // The first success is a state change; the next three wait for the interval (300 s).
    let health = env.stream("p").await.health;
    assert_eq!(health.events_delivered, 1);
    assert_eq!(
        env.calls.count("DynamoDB.UpdateItem"),
        1,
        "{:?}",
        env.calls.all()
    );
    assert_eq!(loki.accepted().len(), 4);
}

on_both_adapters!(
    refused_credentials_suspend_the_stream_which_skips_until_enabled_without_backfill
);
async fn refused_credentials_suspend_the_stream_which_skips_until_enabled_without_backfill(
    adapter: Adapter,
) {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let env = StreamerEnv::new(Options {
        adapter,
        ..with_settings(
            &[
                ("SUSPEND_AFTER_AUTH_FAILURES", "3"),
                ("SUSPEND_AFTER_SECONDS", "0"),
            ],
            0,
        )
    })
    .await;
    env.configure("p", loki_config(&loki.hostname(), "glc_revoked-token-0000"))
        .await;
    let (logs, _guard) = capture_logs();

    for round in 0..3 {
        let response = env.invoke(events(&["p"], &format!("r{round}"))).await;
        assert_eq!(failed_ids(&response), [format!("r{round}-0")]);
    }
    let stream = env.stream("p").await;
    assert_eq!(stream.config.state.status, StreamingStatus::Suspended);
    let suspension = stream.config.state.suspension.as_ref().unwrap();
    assert!(
        suspension
            .reason
            .contains("Grafana Loki refused the configuration on 3 consecutive delivery attempts"),
        "{}",
        suspension.reason
    );
    assert!(suspension.reason.contains("check the username and token"));
    let suspended_lines: Vec<_> = logs
        .lines()
        .into_iter()
        .filter(|l| l["fields"]["message"] == "stream suspended")
        .collect();
    assert_eq!(suspended_lines.len(), 1, "{}", logs.text());
    assert_eq!(suspended_lines[0]["fields"]["project_id"], "p");

    // While suspended: acknowledged, counted, never sent, never dead-lettered.
    let requests = loki.requests();
    let report = env
        .streamer
        .process_batch(
            &[queue_message(
                "while-suspended",
                &event("p", "skipped").to_string(),
            )],
            tokio::time::Instant::now() + Duration::from_secs(20),
        )
        .await;
    assert!(report.failed_message_ids.is_empty());
    assert_eq!(report.summary.skipped_suspended, 1);
    assert_eq!(loki.requests(), requests);
    assert!(env.dead_letters().await.is_empty());

    // An update keeps SUSPENDED; enable resumes, dated like any enable.
    let api = Api::with_start_delay(
        env.streams.clone(),
        env.credentials.clone(),
        None,
        Duration::ZERO,
    );
    let resource = "/v1/projects/p/event_log_streaming/GRAFANA_LOKI";
    let updated = api
        .admin(
            "PUT",
            resource,
            Some(json!({"destination_config": {"grafana_loki": {
                "hostname": loki.hostname(), "username": LOKI_USER, "password": LOKI_PASSWORD}}})),
        )
        .await;
    let config = &updated.body["event_log_streaming_config"];
    assert_eq!(config["streaming_status"], "SUSPENDED", "{}", updated.body);
    assert!(config["suspended_reason"].is_string());
    // Sent during the suspension, a second before the enable.
    let sent_before_enable = now_ms() - 1_000;
    api.admin("POST", &format!("{resource}/enable"), None).await;
    let read = api.admin("GET", resource, None).await;
    assert_eq!(
        read.body["event_log_streaming_config"]["streaming_status"],
        "ACTIVE"
    );
    assert_eq!(
        read.body["event_log_streaming_config"]["suspended_at"],
        serde_json::Value::Null
    );

    let response = env
        .invoke(vec![
            SqsRecord::new("old", event("p", "from-the-suspension").to_string())
                .sent_at_ms(sent_before_enable),
            SqsRecord::new("new", event("p", "after-enable").to_string()),
        ])
        .await;
    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(loki.accepted_event_ids(), ["after-enable"]);
}

#[tokio::test]
async fn a_credential_update_between_failures_wins_over_a_stale_suspension() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    // The streamer keeps the configuration it read for the whole test.
    let env = StreamerEnv::new(with_settings(
        &[
            ("SUSPEND_AFTER_AUTH_FAILURES", "3"),
            ("SUSPEND_AFTER_SECONDS", "0"),
        ],
        3600,
    ))
    .await;
    env.configure("p", loki_config(&loki.hostname(), "glc_revoked-token-0000"))
        .await;
    env.invoke(events(&["p"], "r0")).await;
    env.invoke(events(&["p"], "r1")).await;

    // The customer fixes the credentials; this container still holds the old version.
    let api = Api::with_stores(env.streams.clone(), env.credentials.clone(), None);
    let updated = api
        .admin(
            "PUT",
            "/v1/projects/p/event_log_streaming/GRAFANA_LOKI",
            Some(json!({"destination_config": {"grafana_loki": {
                "hostname": loki.hostname(), "username": LOKI_USER, "password": LOKI_PASSWORD}}})),
        )
        .await;
    assert_eq!(updated.status, axum::http::StatusCode::OK);
    env.invoke(events(&["p"], "r2")).await;

    let stream = env.stream("p").await;
    // The third refusal was seen with the old version: shown, never part of the new one's
    // streak.
    assert_eq!(stream.health.consecutive_auth_failures, 0);
    assert_eq!(stream.health.consecutive_failures, 3);
    assert_eq!(stream.config.state.status, StreamingStatus::Active);
    assert_eq!(
        stream.config.version, 3,
        "created, enabled, updated: no suspension"
    );
}

#[tokio::test]
async fn refusals_of_an_old_configuration_never_suspend_the_new_one() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    // No cache, and health written after every batch: each batch delivers with the stored
    // configuration and adds to the stored streak.
    let env = StreamerEnv::new(with_settings(
        &[
            ("SUSPEND_AFTER_AUTH_FAILURES", "3"),
            ("SUSPEND_AFTER_SECONDS", "0"),
            ("HEALTH_WRITE_INTERVAL_SECONDS", "0"),
        ],
        0,
    ))
    .await;
    env.configure("p", loki_config(&loki.hostname(), "glc_revoked-token-0000"))
        .await;
    env.invoke(events(&["p"], "r0")).await;
    env.invoke(events(&["p"], "r1")).await;
    assert_eq!(env.stream("p").await.health.consecutive_auth_failures, 2);

    // The customer saves another token; the first push with it is refused too (a token
    // that takes a moment to work, or a transient 401).
    let api = Api::with_stores(env.streams.clone(), env.credentials.clone(), None);
    let updated = api
        .admin(
            "PUT",
            "/v1/projects/p/event_log_streaming/GRAFANA_LOKI",
            Some(json!({"destination_config": {"grafana_loki": {
                "hostname": loki.hostname(), "username": LOKI_USER, "password": "glc_new-token-0001"}}})),
        )
        .await;
    assert_eq!(updated.status, axum::http::StatusCode::OK);
    env.invoke(events(&["p"], "r2")).await;

    // A new streak: one refusal, not three.
    let stream = env.stream("p").await;
    assert_eq!(stream.health.consecutive_auth_failures, 1);
    assert_eq!(stream.config.state.status, StreamingStatus::Active);
}

#[tokio::test]
async fn a_container_holding_a_deleted_stream_never_writes_the_one_created_after_it() {
    let state = StateEnv::new().await;
    let old = state.configure("p", datadog_config(DATADOG_KEY)).await;
    let project = ProjectId::parse("p").unwrap();
    state.streams.delete(&project, old.version).await.unwrap();
    let new = state.configure("p", datadog_config(DATADOG_KEY)).await;
    assert_eq!(
        new.version, old.version,
        "a new stream starts at version 1 again"
    );
    let mut refusals = DeliveryHealth::default();
    refusals.failure(
        DeliveryError {
            at: time::OffsetDateTime::now_utc(),
            destination_status: Some(403),
            message: "403 from Datadog".into(),
        },
        true,
    );
    let suspension = Suspension {
        at: time::OffsetDateTime::now_utc(),
        reason: "refused".into(),
    };

    assert!(
        state
            .streams
            .record(&old, &refusals)
            .await
            .unwrap()
            .is_none()
    );
    assert!(!state.streams.suspend(&old, &suspension).await.unwrap());

    let stored = state.stored("p").await.unwrap();
    assert_eq!(stored.health, DeliveryHealth::default());
    assert_eq!(stored.config.stream_id, new.stream_id);
    assert!(
        state
            .streams
            .record(&new, &refusals)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn concurrent_configuration_and_health_writes_lose_nothing() {
    let state = StateEnv::new().await;
    let created = state.configure("p", datadog_config(DATADOG_KEY)).await;
    let project = ProjectId::parse("p").unwrap();
    let one_delivery = {
        let mut health = DeliveryHealth {
            events_delivered: 1,
            ..Default::default()
        };
        health.success(time::OffsetDateTime::now_utc());
        health
    };

    // Health writes and a configuration update at the same time. moto applies conditional
    // writes without a lock, so two health writers racing each other could both pass there
    // (DynamoDB itself serializes them); the health writes here take turns among themselves.
    let health_writes = async {
        let mut written = Vec::new();
        for _ in 0..4 {
            written.push(state.streams.record(&created, &one_delivery).await);
        }
        written
    };
    let update = async {
        let mut config = created.next_version(created.updated_at);
        config.state = config.state.disable().unwrap();
        state.streams.update(&config, created.version).await
    };
    let (written, updated) = tokio::join!(health_writes, update);

    assert!(updated.is_ok());
    assert!(
        written.iter().all(|w| matches!(w, Ok(Some(_)))),
        "{written:?}"
    );
    let stream = state.stored("p").await.unwrap();
    assert_eq!(stream.health.events_delivered, 4);
    assert_eq!(stream.config.state.status, StreamingStatus::Disabled);
    assert_eq!(stream.config.version, created.version + 1);
    // A writer that read the old version is refused, and changes nothing.
    assert!(matches!(
        state.streams.update(&created, created.version).await,
        Err(StoreError::Conflict)
    ));
    assert!(matches!(
        state.streams.delete(&project, created.version).await,
        Err(StoreError::Conflict)
    ));
    // A health write for a project without a stream writes nothing.
    let gone = StreamConfig {
        project_id: ProjectId::parse("gone").unwrap(),
        ..created.clone()
    };
    assert!(
        state
            .streams
            .record(&gone, &one_delivery)
            .await
            .unwrap()
            .is_none()
    );
    assert!(state.stored("gone").await.is_none());
}

#[tokio::test]
async fn the_migration_moves_old_secrets_into_the_table_and_is_idempotent() {
    let state = StateEnv::new().await;
    let aws = moto().sdk_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    let old = |destination_config: serde_json::Value, kind: &str, status: &str| {
        json!({"destination_type": kind, "destination_config": destination_config,
               "streaming_status": status, "enabled_at": "2026-11-24T10:00:00Z",
               "created_at": "2026-11-24T09:00:00Z", "updated_at": "2026-11-24T10:00:00Z"})
        .to_string()
    };
    let records = [
        (
            "loki-project",
            old(
                json!({"grafana_loki": {"hostname": "logs-prod-021.grafana.net", "username": "123", "password": LOKI_PASSWORD}}),
                "GRAFANA_LOKI",
                "ACTIVE",
            ),
        ),
        (
            "dd-project",
            old(
                json!({"datadog": {"site": "EU", "api_key": DATADOG_KEY}}),
                "DATADOG",
                "DISABLED",
            ),
        ),
        ("broken-project", "{not json".to_owned()),
    ];
    for (project, value) in &records {
        secrets
            .create_secret()
            .name(format!("{}{project}", state.prefix))
            .secret_string(value)
            .send()
            .await
            .unwrap();
    }
    let migration = Migration {
        secrets: &secrets,
        prefix: &state.prefix,
        streams: state.streams.as_ref(),
    };

    let first = migration.run().await.unwrap();
    let mut migrated: Vec<&str> = first.migrated.iter().map(ProjectId::as_str).collect();
    migrated.sort();
    assert_eq!(migrated, ["dd-project", "loki-project"]);
    assert_eq!(first.skipped.len(), 1);
    assert!(
        !format!("{first:?}").contains("not json"),
        "no value is quoted"
    );

    let second = migration.run().await.unwrap();
    assert!(second.migrated.is_empty());
    assert_eq!(second.already_migrated.len(), 2);

    let loki = state.stored("loki-project").await.unwrap();
    assert_eq!(loki.config.state.status, StreamingStatus::Active);
    assert_eq!(loki.config.credential.last_four, "4e1f");
    assert_eq!(
        CredentialRead::get(state.credentials.as_ref(), &loki.config.credential)
            .await
            .unwrap()
            .credential
            .expose(),
        LOKI_PASSWORD
    );
    let current = secrets
        .get_secret_value()
        .secret_id(format!("{}loki-project", state.prefix))
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap();
    assert_eq!(
        current.version_id().unwrap(),
        loki.config.credential.version_id
    );
    let held: serde_json::Value = serde_json::from_str(current.secret_string().unwrap()).unwrap();
    assert_eq!(held["credential"], LOKI_PASSWORD);
    assert_eq!(held["redaction_key"].as_str().map(str::len), Some(64));
    let dd = state.stored("dd-project").await.unwrap();
    assert_eq!(dd.config.state.status, StreamingStatus::Disabled);
    assert!(MIGRATED_STAGE.starts_with("ELS"));
}

#[tokio::test]
async fn a_migration_interrupted_before_the_last_step_is_finished_by_the_next_run() {
    let state = StateEnv::new().await;
    let aws = moto().sdk_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    let name = format!("{}p", state.prefix);
    let old = json!({"destination_type": "DATADOG",
        "destination_config": {"datadog": {"site": "US", "api_key": DATADOG_KEY}},
        "streaming_status": "ACTIVE", "created_at": "2026-11-24T09:00:00Z",
        "updated_at": "2026-11-24T10:00:00Z"});
    secrets
        .create_secret()
        .name(&name)
        .secret_string(old.to_string())
        .send()
        .await
        .unwrap();
    // As if a run had added the credential version and created the item, then stopped.
    let version = secrets
        .put_secret_value()
        .secret_id(&name)
        .secret_string(json!({"credential": DATADOG_KEY}).to_string())
        .version_stages(MIGRATED_STAGE)
        .send()
        .await
        .unwrap()
        .version_id
        .unwrap();
    let project = ProjectId::parse("p").unwrap();
    let destination = integration_tests::fixtures::datadog_destination(DATADOG_KEY);
    let config = event_log_streaming::domain::StreamConfig::new(
        project.clone(),
        destination.endpoint(),
        event_log_streaming::domain::CredentialRef {
            secret_id: name.clone(),
            version_id: version.clone(),
            last_four: "1e42".into(),
        },
        time::OffsetDateTime::now_utc(),
    );
    state.streams.create(&config).await.unwrap();

    let report = Migration {
        secrets: &secrets,
        prefix: &state.prefix,
        streams: state.streams.as_ref(),
    }
    .run()
    .await
    .unwrap();

    assert_eq!(report.already_migrated, [project]);
    let current = secrets
        .get_secret_value()
        .secret_id(&name)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap();
    assert_eq!(current.version_id().unwrap(), version);
}

on_both_adapters!(a_deleted_stream_keeps_no_credential_and_can_be_created_again);
async fn a_deleted_stream_keeps_no_credential_and_can_be_created_again(adapter: Adapter) {
    let state = StateEnv::with_adapter(adapter).await;
    let project = ProjectId::parse("p").unwrap();
    let created = state.configure("p", datadog_config(DATADOG_KEY)).await;
    state
        .streams
        .delete(&project, created.version)
        .await
        .unwrap();
    let secret = &created.credential.secret_id;
    state.credentials.delete_secret(secret).await.unwrap();
    // Deleting what is gone is no error for the credential, and not found for the stream.
    state.credentials.delete_secret(secret).await.unwrap();
    assert!(matches!(
        state.streams.delete(&project, created.version).await,
        Err(StoreError::NotFound)
    ));
    assert!(
        CredentialRead::get(state.credentials.as_ref(), &created.credential)
            .await
            .is_err()
    );
    let again = state.configure("p", datadog_config(DATADOG_KEY)).await;
    assert_eq!(again.version, 2);
    // The new stream's secret is its own: its name is not the deleted one's.
    assert_ne!(&again.credential.secret_id, secret);
    let named = match adapter {
        Adapter::SecretsManager => format!("{}p/", state.prefix),
        Adapter::KmsEnvelope => "envelope:p/".to_owned(),
    };
    assert!(again.credential.secret_id.starts_with(&named));
}

/// AWS deletes a secret in the background, even with `ForceDeleteWithoutRecovery`: until it
/// is gone, PutSecretValue on its name fails with InvalidRequestException (moto deletes at
/// once, so a proxy plays it). An update meeting it finds its stream deleted, and creates no
/// secret of that name again, which the delete would then miss.
#[tokio::test]
async fn an_update_meeting_its_secret_being_deleted_finds_no_stream_and_creates_nothing() {
    let state = StateEnv::new().await;
    let created = state.configure("p", datadog_config(DATADOG_KEY)).await;
    let operations = Arc::new(Mutex::new(Vec::<String>::new()));
    let record = operations.clone();
    let proxy = MotoProxy::start(move |target, _| {
        let operation = target.rsplit('.').next().unwrap().to_owned();
        record.lock().unwrap().push(operation.clone());
        match operation.as_str() {
            "PutSecretValue" => Step::Fail {
                error_type: "InvalidRequestException",
                message: "You can't perform this operation on the secret because it was marked for deletion.",
            },
            _ => Step::Forward,
        }
    })
    .await;
    let credentials = SecretsManagerCredentials::new(
        aws_sdk_secretsmanager::Client::new(&proxy.sdk_config().await),
        state.prefix.clone(),
    );

    let saved = credentials
        .put_version(
            &created.credential.secret_id,
            &Secret::new(DATADOG_KEY).into(),
        )
        .await;

    assert!(matches!(saved, Err(StoreError::NotFound)), "{saved:?}");
    assert_eq!(*operations.lock().unwrap(), ["PutSecretValue"]);
}

fn queue_message(id: &str, body: &str) -> event_log_streaming::event::QueueMessage {
    event_log_streaming::event::QueueMessage::new(id, body, time::OffsetDateTime::now_utc())
}

/// DynamoDB answers a throttled BatchGetItem with `UnprocessedKeys`, which moto never does:
/// a loopback proxy in front of moto holds keys back for the first rounds.
#[tokio::test]
async fn a_throttled_batch_read_asks_again_for_the_keys_left_unprocessed_only() {
    let state = StateEnv::new().await;
    for project in ["thr-0", "thr-3", "thr-8"] {
        state.configure(project, datadog_config(DATADOG_KEY)).await;
    }
    let projects: Vec<ProjectId> = (0..10)
        .map(|i| ProjectId::parse(&format!("thr-{i}")).unwrap())
        .collect();
    // Two rounds each process one key only (thr-0, then thr-1); the third processes the rest.
    // What each round found is kept.
    let (streams, keys_asked_for) = throttled_table(&state.table, 2).await;

    let mut found: Vec<String> = streams
        .get_many(&projects, far())
        .await
        .streams
        .into_iter()
        .map(|s| s.config.project_id.as_str().to_owned())
        .collect();

    found.sort();
    assert_eq!(found, ["thr-0", "thr-3", "thr-8"]);
    assert_eq!(*keys_asked_for.lock().unwrap(), [10, 9, 8]);
}

#[tokio::test]
async fn keys_left_unprocessed_round_after_round_leave_only_their_projects_unread() {
    let state = StateEnv::new().await;
    for project in ["thr-2", "thr-9"] {
        state.configure(project, datadog_config(DATADOG_KEY)).await;
    }
    let projects: Vec<ProjectId> = (0..10)
        .map(|i| ProjectId::parse(&format!("thr-{i}")).unwrap())
        .collect();
    let (streams, keys_asked_for) = throttled_table(&state.table, usize::MAX).await;

    let found = streams.get_many(&projects, far()).await;

    // Each of the 7 rounds processes one key: thr-0 to thr-6 are read (thr-2 is found), the
    // three keys left are unread, to be retried, and nothing else is.
    assert_eq!(*keys_asked_for.lock().unwrap(), [10, 9, 8, 7, 6, 5, 4]);
    let found_ids: Vec<&str> = found
        .streams
        .iter()
        .map(|s| s.config.project_id.as_str())
        .collect();
    assert_eq!(found_ids, ["thr-2"]);
    let mut unread: Vec<&str> = found.unread.iter().map(|(p, _)| p.as_str()).collect();
    unread.sort();
    assert_eq!(unread, ["thr-7", "thr-8", "thr-9"]);
    assert!(
        found.unread[0].1.contains("unprocessed after 7 rounds"),
        "{:?}",
        found.unread
    );
}

#[tokio::test]
async fn a_corrupt_item_leaves_only_its_own_project_unread() {
    let state = StateEnv::new().await;
    state.configure("sound", datadog_config(DATADOG_KEY)).await;
    state.configure("broken", datadog_config(DATADOG_KEY)).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&moto().sdk_config().await);
    dynamodb
        .update_item()
        .table_name(&state.table)
        .key("project_id", AttributeValue::S("broken".into()))
        .update_expression("SET streaming_status = :bogus")
        .expression_attribute_values(":bogus", AttributeValue::S("BOGUS".into()))
        .send()
        .await
        .unwrap();
    let projects: Vec<ProjectId> = ["sound", "broken", "absent"]
        .iter()
        .map(|p| ProjectId::parse(p).unwrap())
        .collect();

    let found = state.streams.get_many(&projects, far()).await;

    let found_ids: Vec<&str> = found
        .streams
        .iter()
        .map(|s| s.config.project_id.as_str())
        .collect();
    assert_eq!(found_ids, ["sound"]);
    assert_eq!(found.unread.len(), 1, "{:?}", found.unread);
    let (project, why) = &found.unread[0];
    assert_eq!(project.as_str(), "broken");
    assert!(why.contains("streaming_status"), "{why}");
}

/// Far enough for any read of these tests.
fn far() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(600)
}

/// The table through a proxy that, for its first `throttled_rounds` BatchGetItem calls,
/// passes on only the first key and answers the others as `UnprocessedKeys`, as DynamoDB does
/// when a partition is over its throughput. Also gives how many keys each call asked for.
async fn throttled_table(
    table: &str,
    throttled_rounds: usize,
) -> (DynamoDbStreams, Arc<Mutex<Vec<usize>>>) {
    let keys_asked_for = Arc::new(Mutex::new(Vec::new()));
    let record = keys_asked_for.clone();
    let proxied = table.to_owned();
    let proxy = MotoProxy::start(move |target, request| {
        if !target.ends_with(".BatchGetItem") {
            return Step::Forward;
        }
        let keys = request["RequestItems"][&proxied]["Keys"]
            .as_array_mut()
            .unwrap();
        let mut record = record.lock().unwrap();
        record.push(keys.len());
        if record.len() > throttled_rounds {
            return Step::Forward;
        }
        let held_back = keys.split_off(1);
        let table = proxied.clone();
        Step::ForwardAndEdit(Box::new(move |answer| {
            answer["UnprocessedKeys"] = json!({ table: { "Keys": held_back } });
        }))
    })
    .await;
    let client = aws_sdk_dynamodb::Client::new(&proxy.sdk_config().await);
    (DynamoDbStreams::new(client, table), keys_asked_for)
}

/// The index of configured projects on the emulator: not trusted before it is built; then
/// every create and delete changes it in the same transaction as the stream's item, and a
/// refused write changes neither.
#[tokio::test]
async fn creates_and_deletes_keep_the_index_of_configured_projects_exact() {
    let state = StateEnv::new().await;
    let configured = || async {
        state
            .streams
            .configured(far())
            .await
            .unwrap()
            .map(|set| set.iter().map(ToString::to_string).collect::<BTreeSet<_>>())
    };
    let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let before = state
        .configure("p-before", datadog_config(DATADOG_KEY))
        .await;
    assert_eq!(configured().await, None, "not trusted before it is built");

    state.build_index().await;
    assert_eq!(configured().await, Some(names(&["p-before"])));
    let second = state
        .configure("p-second", datadog_config(DATADOG_KEY))
        .await;
    state
        .configure("p-third", datadog_config(DATADOG_KEY))
        .await;
    assert_eq!(
        configured().await,
        Some(names(&["p-before", "p-second", "p-third"]))
    );

    // A create refused (the project has a stream) and a delete refused (another version)
    // leave the index as it was.
    assert!(matches!(
        state.streams.create(&second).await,
        Err(StoreError::AlreadyExists)
    ));
    assert!(matches!(
        state
            .streams
            .delete(&second.project_id, second.version + 7)
            .await,
        Err(StoreError::Conflict)
    ));
    state
        .streams
        .delete(&before.project_id, before.version)
        .await
        .unwrap();
    assert_eq!(configured().await, Some(names(&["p-second", "p-third"])));

    // Building again is idempotent.
    state.build_index().await;
    assert_eq!(configured().await, Some(names(&["p-second", "p-third"])));
}
