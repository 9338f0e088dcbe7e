//! `make migrate`: brings a deployment's state up to date. Moves per-project secrets of the old
//! format (the whole configuration in one secret) into the state table and credential-only
//! secrets, then builds the index of configured projects, which the streamer trusts from then
//! on (run it once after deploying a config API that keeps the index). Idempotent: run it
//! again after a failure, or to check that nothing is left.
//!
//! Usage: migrate [--table NAME] [--prefix PREFIX]
//! Defaults: `STREAM_TABLE_NAME` and `CONFIG_SECRET_PREFIX` (`event-log-streaming/`). AWS
//! credentials and region come from the usual places (profile, environment).

use event_log_streaming::settings::{config_secret_prefix, stream_table_name};
use event_log_streaming::store::migrate::Migration;
use event_log_streaming::store::{DynamoDbStreams, error_chain};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let env = |name: &str| std::env::var(name).ok();
    let mut table = stream_table_name(&env).ok();
    let mut prefix = config_secret_prefix(&env);
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        let mut value = || words.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--table" => table = Some(value()?),
            "--prefix" => prefix = value()?,
            "--help" | "-h" => {
                println!("migrate [--table STREAM_TABLE_NAME] [--prefix event-log-streaming/]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?} (try --help)").into()),
        }
    }
    let table = table.ok_or("name the table with --table or STREAM_TABLE_NAME")?;
    let aws = event_log_streaming::aws::load().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    let streams = DynamoDbStreams::new(aws_sdk_dynamodb::Client::new(&aws), table);
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
