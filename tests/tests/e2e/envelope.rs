//! The KMS envelope credential adapter against moto's DynamoDB and KMS: the config API's
//! lifecycle on it, what its items hold (and never hold), tampering, the versions kept, and
//! the migration between the two adapters.

use aws_sdk_dynamodb::types::AttributeValue;
use axum::http::StatusCode;
use event_log_streaming::Secret;
use event_log_streaming::domain::ProjectId;
use event_log_streaming::store::credential_move::{CredentialMove, Target};
use event_log_streaming::store::kms_envelope::KEPT_VERSIONS;
use event_log_streaming::store::{
    CredentialRead, KmsEnvelopeCredentials, SecretsManagerCredentials, StoreError, error_chain,
};
use integration_tests::fake_destination::FakeDestination;
use integration_tests::lambda::SqsRecord;
use integration_tests::logs::capture_logs;
use integration_tests::moto::moto;
use serde_json::json;

use crate::config_api::{Api, COLLECTION, datadog_body, loki_body};
use crate::helpers::*;

async fn raw(
    state: &StateEnv,
    key: &str,
) -> Option<std::collections::HashMap<String, AttributeValue>> {
    aws_sdk_dynamodb::Client::new(&moto().sdk_config().await)
        .get_item()
        .table_name(&state.table)
        .key("project_id", AttributeValue::S(key.into()))
        .send()
        .await
        .unwrap()
        .item
}

/// The sealed version `config` names, as the table holds it.
async fn sealed_version(
    state: &StateEnv,
    config: &event_log_streaming::domain::StreamConfig,
) -> AttributeValue {
    raw(state, &config.credential.secret_id).await.unwrap()["credential_versions"]
        .as_m()
        .unwrap()[&config.credential.version_id]
        .clone()
}

#[tokio::test]
async fn the_config_api_and_the_streamer_keep_a_stream_on_the_envelope_from_create_to_delete() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let env = StreamerEnv::new(Options {
        adapter: Adapter::KmsEnvelope,
        cache_ttl_seconds: 0,
        ..Options::default()
    })
    .await;
    let api = Api::with_start_delay(
        env.streams.clone(),
        env.credentials.clone(),
        None,
        std::time::Duration::ZERO,
    );
    let resource = format!("{COLLECTION}/GRAFANA_LOKI");
    let (logs, _guard) = capture_logs();

    let created = api
        .admin(
            "POST",
            COLLECTION,
            Some(loki_body(&loki.hostname(), "glc_first-token-0000")),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let updated = api
        .admin(
            "PUT",
            &resource,
            Some(json!({"destination_config": {"grafana_loki": {
                "hostname": loki.hostname(), "username": LOKI_USER, "password": LOKI_PASSWORD}}})),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(
        api.admin("POST", &format!("{resource}/enable"), None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        env.calls.count("KMS.GenerateDataKey"),
        2,
        "one data key per credential version: {:?}",
        env.calls.all()
    );
    assert_eq!(env.calls.count("Secrets Manager.CreateSecret"), 0);

    let response = env
        .invoke(vec![SqsRecord::new(
            "m1",
            event("proj-a", "e-1").to_string(),
        )])
        .await;
    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(loki.accepted_event_ids(), ["e-1"]);

    // The stream's item names the version; the credential item holds it sealed only.
    let stored = env.stream("proj-a").await;
    let secret_id = stored.config.credential.secret_id.clone();
    assert_eq!(
        secret_id,
        format!("envelope:proj-a/{}", stored.config.stream_id)
    );
    assert_eq!(stored.config.credential.last_four, "4e1f");
    let item = env.raw_item("proj-a").await;
    let sealed = raw(&env, &secret_id).await.unwrap();
    let versions = sealed["credential_versions"].as_m().unwrap();
    assert_eq!(versions.len(), 2);
    assert!(versions.contains_key(&stored.config.credential.version_id));
    let key = CredentialRead::get(env.credentials.as_ref(), &stored.config.credential)
        .await
        .unwrap()
        .redaction_key
        .unwrap()
        .to_secret();
    for (name, printed) in [
        ("stream item", format!("{item:?}")),
        ("credential item", format!("{sealed:?}")),
    ] {
        for secret in [LOKI_PASSWORD, "glc_first-token", key.expose()] {
            assert!(!printed.contains(secret), "{name} holds a secret in clear");
        }
    }

    assert_eq!(
        api.admin("DELETE", &resource, None).await.status,
        StatusCode::OK
    );
    assert!(env.stored("proj-a").await.is_none());
    assert!(
        raw(&env, &secret_id).await.is_none(),
        "every version is deleted"
    );
    assert_eq!(
        api.admin("POST", COLLECTION, Some(datadog_body("US", DATADOG_KEY)))
            .await
            .status,
        StatusCode::CREATED
    );

    let text = logs.text();
    for secret in [LOKI_PASSWORD, "glc_first-token", key.expose(), DATADOG_KEY] {
        assert!(!text.contains(secret), "a log line holds a secret");
    }
}

#[tokio::test]
async fn a_credential_altered_or_moved_to_another_stream_does_not_decrypt_and_says_nothing_of_it() {
    let state = StateEnv::with_adapter(Adapter::KmsEnvelope).await;
    let a = state.configure("a", datadog_config(DATADOG_KEY)).await;
    let b = state
        .configure("b", datadog_config("0000000000000000000000000000beef"))
        .await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&moto().sdk_config().await);
    let write = |secret_id: String, version_id: String, value: AttributeValue| {
        let dynamodb = dynamodb.clone();
        let table = state.table.clone();
        async move {
            dynamodb
                .update_item()
                .table_name(table)
                .key("project_id", AttributeValue::S(secret_id))
                .update_expression("SET credential_versions.#v = :v")
                .expression_attribute_names("#v", version_id)
                .expression_attribute_values(":v", value)
                .send()
                .await
                .unwrap();
        }
    };
    let refused = |result: Result<_, StoreError>| {
        let err = result.unwrap_err();
        let text = format!("{} {err:?}", error_chain(&err));
        assert!(matches!(err, StoreError::Corrupt(_)), "{text}");
        assert!(text.contains("does not decrypt"), "{text}");
        assert!(
            !text.contains(DATADOG_KEY) && !text.contains("beef"),
            "{text}"
        );
    };

    // a's sealed version copied over b's: KMS refuses its data key in b's context.
    write(
        b.credential.secret_id.clone(),
        b.credential.version_id.clone(),
        sealed_version(&state, &a).await,
    )
    .await;
    refused(CredentialRead::get(state.credentials.as_ref(), &b.credential).await);

    // One bit of a's ciphertext flipped: the data key decrypts, AES-GCM refuses.
    let mut altered = sealed_version(&state, &a).await.as_m().unwrap().clone();
    let mut ciphertext = altered["c"].as_b().unwrap().as_ref().to_vec();
    ciphertext[0] ^= 1;
    altered.insert("c".into(), AttributeValue::B(ciphertext.into()));
    write(
        a.credential.secret_id.clone(),
        a.credential.version_id.clone(),
        AttributeValue::M(altered),
    )
    .await;
    refused(CredentialRead::get(state.credentials.as_ref(), &a.credential).await);
}

#[tokio::test]
async fn a_secret_keeps_its_newest_versions_only_and_a_deleted_one_is_never_written_again() {
    let state = StateEnv::with_adapter(Adapter::KmsEnvelope).await;
    let created = state.configure("p", datadog_config(DATADOG_KEY)).await;
    let secret_id = &created.credential.secret_id;
    let mut saved = vec![created.credential.clone()];
    for i in 0..KEPT_VERSIONS {
        let key = format!("{DATADOG_KEY}{i}");
        saved.push(
            state
                .credentials
                .put_version(secret_id, &Secret::new(key).into())
                .await
                .unwrap(),
        );
    }
    let versions = raw(&state, secret_id).await.unwrap()["credential_versions"]
        .as_m()
        .unwrap()
        .clone();
    assert_eq!(versions.len(), KEPT_VERSIONS);
    assert!(
        !versions.contains_key(&saved[0].version_id),
        "the oldest is gone"
    );
    assert!(
        CredentialRead::get(state.credentials.as_ref(), &saved[0])
            .await
            .is_err()
    );
    let newest = CredentialRead::get(state.credentials.as_ref(), saved.last().unwrap())
        .await
        .unwrap();
    assert_eq!(
        newest.credential.expose(),
        format!("{DATADOG_KEY}{}", KEPT_VERSIONS - 1)
    );

    state.credentials.delete_secret(secret_id).await.unwrap();
    state.credentials.delete_secret(secret_id).await.unwrap();
    let again = state
        .credentials
        .put_version(secret_id, &Secret::new(DATADOG_KEY).into())
        .await;
    assert!(matches!(again, Err(StoreError::NotFound)), "{again:?}");
    assert!(raw(&state, secret_id).await.is_none());
}

#[tokio::test]
async fn a_deployment_moves_to_the_envelope_and_back_and_each_move_is_idempotent() {
    let state = StateEnv::with_adapter(Adapter::SecretsManager).await;
    let aws = moto().sdk_config().await;
    let manager = SecretsManagerCredentials::new(
        aws_sdk_secretsmanager::Client::new(&aws),
        state.prefix.clone(),
    );
    let envelope = KmsEnvelopeCredentials::new(
        aws_sdk_dynamodb::Client::new(&aws),
        state.table.clone(),
        aws_sdk_kms::Client::new(&aws),
        state.kms_key_id.clone(),
    );
    let loki = state
        .configure("loki-p", loki_config("h.example.com", LOKI_PASSWORD))
        .await;
    state
        .configure("dd-p", disabled(datadog_config(DATADOG_KEY)))
        .await;
    let old_loki_secret = loki.credential.secret_id.clone();
    let to_envelope = CredentialMove {
        streams: &state.streams,
        target: Target::KmsEnvelope {
            to: &envelope,
            from: &manager,
        },
        now: time::OffsetDateTime::now_utc(),
    };
    let sorted = |projects: &[ProjectId]| {
        let mut ids: Vec<String> = projects.iter().map(|p| p.as_str().to_owned()).collect();
        ids.sort();
        ids
    };

    let first = to_envelope.run().await.unwrap();
    assert_eq!(sorted(&first.moved), ["dd-p", "loki-p"]);
    let second = to_envelope.run().await.unwrap();
    assert!(
        second.moved.is_empty() && second.skipped.is_empty(),
        "{second:?}"
    );
    assert_eq!(sorted(&second.already_moved), ["dd-p", "loki-p"]);

    let moved = state.stored("loki-p").await.unwrap().config;
    assert!(KmsEnvelopeCredentials::owns(&moved.credential.secret_id));
    assert_eq!(
        moved.version,
        loki.version + 1,
        "rewritten conditionally, as a new version"
    );
    assert_eq!(moved.credential.last_four, loki.credential.last_four);
    let read = CredentialRead::get(&envelope, &moved.credential)
        .await
        .unwrap();
    assert_eq!(read.credential.expose(), LOKI_PASSWORD);
    let before = CredentialRead::get(&manager, &loki.credential)
        .await
        .unwrap();
    assert_eq!(
        read.redaction_key.unwrap().to_secret(),
        before.redaction_key.unwrap().to_secret(),
        "the redaction key moves with the credential"
    );
    // The old secrets stay until asked; then only those no stream names go.
    assert!(
        CredentialRead::get(&manager, &loki.credential)
            .await
            .is_ok()
    );
    let deleted = to_envelope.delete_old().await.unwrap();
    assert_eq!(deleted.len(), 2);
    assert!(deleted.contains(&old_loki_secret));
    assert!(
        CredentialRead::get(&manager, &loki.credential)
            .await
            .is_err()
    );
    assert!(to_envelope.delete_old().await.unwrap().is_empty());

    // And back; an item changed during a move is left for the next run.
    let to_manager = CredentialMove {
        streams: &state.streams,
        target: Target::SecretsManager {
            to: &manager,
            from: &envelope,
        },
        now: time::OffsetDateTime::now_utc(),
    };
    let back = to_manager.run().await.unwrap();
    assert_eq!(sorted(&back.moved), ["dd-p", "loki-p"]);
    let returned = state.stored("loki-p").await.unwrap().config;
    assert!(returned.credential.secret_id.starts_with(&state.prefix));
    assert_eq!(
        CredentialRead::get(&manager, &returned.credential)
            .await
            .unwrap()
            .credential
            .expose(),
        LOKI_PASSWORD
    );
    assert_eq!(to_manager.delete_old().await.unwrap().len(), 2);
    assert!(raw(&state, &moved.credential.secret_id).await.is_none());
    assert!(to_manager.run().await.unwrap().moved.is_empty());
}
