//! `make migrate`, two migrations, both idempotent: run again after a failure, or to check
//! that nothing is left.
//!
//! - Without `--to`: moves a deployment's per-project secrets of the old format (the whole
//!   configuration in one secret) into the state table and credential-only secrets, then
//!   builds the index of configured projects, which the streamer trusts from then on (run it
//!   once after deploying a config API that keeps the index).
//! - `--to kms-envelope` / `--to secrets-manager`: moves every stream's credential to the
//!   other credential adapter (`CREDENTIAL_STORE`), rewriting each item conditionally on its
//!   version ([`event_log_streaming::store::credential_move`]). `--delete-old` then deletes
//!   the old adapter's secrets that no stream names: run it after the functions are deployed
//!   with the new adapter.
//!
//! Usage: migrate [--table NAME] [--prefix PREFIX]
//!        [--to kms-envelope|secrets-manager [--kms-key-id KEY] [--delete-old]]
//! Defaults: `STREAM_TABLE_NAME`, `CONFIG_SECRET_PREFIX` (`event-log-streaming/`) and
//! `CREDENTIAL_KMS_KEY_ID`. AWS credentials and region come from the usual places (profile,
//! environment).

use event_log_streaming::settings::{config_secret_prefix, stream_table_name};
use event_log_streaming::store::credential_move::{CredentialMove, Target};
use event_log_streaming::store::migrate::Migration;
use event_log_streaming::store::{
    DynamoDbStreams, KmsEnvelopeCredentials, SecretsManagerCredentials, error_chain,
};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = |name: &str| std::env::var(name).ok();
    let mut table = stream_table_name(&env).ok();
    let mut prefix = config_secret_prefix(&env);
    let mut to = None;
    let mut kms_key_id = env("CREDENTIAL_KMS_KEY_ID").filter(|v| !v.trim().is_empty());
    let mut delete_old = false;
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        let mut value = || words.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--table" => table = Some(value()?),
            "--prefix" => prefix = value()?,
            "--to" => to = Some(value()?),
            "--kms-key-id" => kms_key_id = Some(value()?),
            "--delete-old" => delete_old = true,
            "--help" | "-h" => {
                println!(
                    "migrate [--table STREAM_TABLE_NAME] [--prefix event-log-streaming/] \
                     [--to kms-envelope|secrets-manager [--kms-key-id KEY] [--delete-old]]"
                );
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?} (try --help)").into()),
        }
    }
    let table = table.ok_or("name the table with --table or STREAM_TABLE_NAME")?;
    let aws = event_log_streaming::aws::load().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    let streams = DynamoDbStreams::new(aws_sdk_dynamodb::Client::new(&aws), table.clone());
    if let Some(to) = to {
        let key_id =
            kms_key_id.ok_or("name the KMS key with --kms-key-id or CREDENTIAL_KMS_KEY_ID")?;
        let envelope = KmsEnvelopeCredentials::new(
            aws_sdk_dynamodb::Client::new(&aws),
            table,
            aws_sdk_kms::Client::new(&aws),
            key_id,
        );
        let manager = SecretsManagerCredentials::new(secrets, prefix);
        let target = match to.as_str() {
            "kms-envelope" => Target::KmsEnvelope {
                to: &envelope,
                from: &manager,
            },
            "secrets-manager" => Target::SecretsManager {
                to: &manager,
                from: &envelope,
            },
            other => {
                return Err(
                    format!("--to {other:?}: expected kms-envelope or secrets-manager").into(),
                );
            }
        };
        return move_credentials(
            CredentialMove {
                streams: &streams,
                target,
                now: time::OffsetDateTime::now_utc(),
            },
            delete_old,
        )
        .await;
    }
    let migration = Migration {
        secrets: &secrets,
        prefix: &prefix,
        streams: &streams,
    };
    let report = migration.run().await.map_err(|e| error_chain(&e))?;
    for project in &report.migrated {
        println!("migrated          {project}");
    }
    for project in &report.already_migrated {
        println!("already migrated  {project}");
    }
    for (secret, reason) in &report.skipped {
        println!("skipped           {secret}: {reason}");
    }
    println!(
        "{} migrated, {} already migrated, {} skipped",
        report.migrated.len(),
        report.already_migrated.len(),
        report.skipped.len()
    );
    let built = streams
        .build_index(time::OffsetDateTime::now_utc())
        .await
        .map_err(|e| error_chain(&e))?;
    println!(
        "index of configured projects built: {} streams",
        built.streams
    );
    if report.skipped.is_empty() {
        Ok(())
    } else {
        Err("some secrets were skipped; see above".into())
    }
}

async fn move_credentials(run: CredentialMove<'_>, delete_old: bool) -> Result<(), Error> {
    let report = run.run().await.map_err(|e| error_chain(&e))?;
    for project in &report.moved {
        println!("moved             {project}");
    }
    for project in &report.already_moved {
        println!("already moved     {project}");
    }
    for (project, reason) in &report.skipped {
        println!("skipped           {project}: {reason}");
    }
    println!(
        "{} moved, {} already moved, {} skipped",
        report.moved.len(),
        report.already_moved.len(),
        report.skipped.len()
    );
    if !report.skipped.is_empty() {
        return Err("some streams were skipped; see above, and run again".into());
    }
    if delete_old {
        let deleted = run.delete_old().await.map_err(|e| error_chain(&e))?;
        for id in &deleted {
            println!("deleted           {id}");
        }
        println!("{} old secrets deleted", deleted.len());
    }
    Ok(())
}
