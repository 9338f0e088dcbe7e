//! `make run`: the config API on 127.0.0.1:3000 and the streamer, on a local file store.
//!
//! Usage: local-runner [--listen ADDR] [--data-dir DIR] [--sqs-queue-url URL]
//!                     [--sqs-retry-queue-url URL] [--batch-timeout-seconds N]
//! The streamer's environment settings apply (docs/operations.md, "Streamer settings");
//! `CONFIG_CACHE_TTL_SECONDS` defaults to 0 here, so a change made through the API applies to
//! the next event.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use config_api::AppState;
use config_api::auth::{KeySource, ManagementKeys};
use event_log_streaming::delivery::StreamerStore;
use event_log_streaming::destination::client::DestinationClient;
use event_log_streaming::settings::StreamerSettings;
use event_log_streaming::store::FileStateStore;
use event_log_streaming::{Queues, Streamer};
use local_runner::keys::{self, KEYS_FILE_NAME, LOCAL_KEY_ID};
use local_runner::sqs::Consumer;
use local_runner::{STATE_FILE_NAME, local_app};

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    listen: SocketAddr,
    data_dir: PathBuf,
    sqs_queue_url: Option<String>,
    sqs_retry_queue_url: Option<String>,
    batch_timeout: Duration,
}

fn parse_args() -> Result<Args, Error> {
    let mut args = Args {
        listen: "127.0.0.1:3000".parse()?,
        data_dir: PathBuf::from(".local"),
        sqs_queue_url: None,
        sqs_retry_queue_url: None,
        batch_timeout: Duration::from_secs(30),
    };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        let mut value = || words.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = value()?.parse()?,
            "--data-dir" => args.data_dir = PathBuf::from(value()?),
            "--sqs-queue-url" => args.sqs_queue_url = Some(value()?),
            "--sqs-retry-queue-url" => args.sqs_retry_queue_url = Some(value()?),
            "--batch-timeout-seconds" => {
                args.batch_timeout = Duration::from_secs(value()?.parse()?)
            }
            "--help" | "-h" => {
                println!(
                    "local-runner [--listen 127.0.0.1:3000] [--data-dir .local] [--sqs-queue-url URL] [--sqs-retry-queue-url URL] [--batch-timeout-seconds 30]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)").into()),
        }
    }
    if args.sqs_retry_queue_url.is_some() && args.sqs_queue_url.is_none() {
        return Err("--sqs-retry-queue-url needs --sqs-queue-url".into());
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    event_log_streaming::logging::init_text_logs();
    let args = parse_args()?;
    let settings = StreamerSettings::from_lookup(|name| match (name, std::env::var(name)) {
        (_, Ok(value)) => Some(value),
        ("CONFIG_CACHE_TTL_SECONDS", Err(_)) => Some("0".into()),
        _ => None,
    })?;

    let store = Arc::new(FileStateStore::new(args.data_dir.join(STATE_FILE_NAME)));
    let (management_keys, new_secret) = keys::load_or_create(&args.data_dir.join(KEYS_FILE_NAME))?;
    if let Some(secret) = new_secret {
        println!(
            "\nCreated a management key (shown once; only its hash is kept in {}):",
            args.data_dir.display()
        );
        println!(
            "  key id: {LOCAL_KEY_ID}\n  secret: {secret}\n  export KEY='{LOCAL_KEY_ID}:{secret}'\n"
        );
    }

    let mut settings = settings;
    // In SQS mode, failed records go back to the retry queue (the flag's, or RETRY_QUEUE_URL),
    // which is consumed too, as in AWS. The consumer knows which queue a message came from, so
    // it needs no ARN to believe it.
    if let Some(url) = &args.sqs_retry_queue_url {
        settings.retry_queue_url = Some(url.clone());
    }
    let needs_aws = args.sqs_queue_url.is_some()
        || settings.dead_letter_queue_url.is_some()
        || settings.retry_queue_url.is_some();
    let sqs = if needs_aws {
        let aws = event_log_streaming::aws::load().await;
        Some(aws_sdk_sqs::Client::new(&aws))
    } else {
        None
    };
    let queues = sqs
        .as_ref()
        .map(|sqs| Queues::from_settings(&settings, sqs))
        .unwrap_or_default();
    let ports = StreamerStore::of_one(store.clone());
    let streamer = Arc::new(Streamer::from_settings(&settings, ports, queues)?);
    let api = AppState::new(
        store.clone(),
        store,
        ManagementKeys::new(KeySource::Fixed(management_keys)),
        DestinationClient::new(settings.destinations.client_options()?)?,
        settings.destinations.labels.clone(),
        settings.config_cache_ttl,
    );

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("Config API and POST /v1/events on http://{}", args.listen);
    let server =
        axum::serve(listener, local_app(api, streamer.clone())).with_graceful_shutdown(async {
            tokio::signal::ctrl_c().await.ok();
        });
    match (args.sqs_queue_url, sqs) {
        (Some(queue_url), Some(sqs)) => {
            let consumer = Consumer {
                streamer: &streamer,
                sqs,
                queue_url,
                retry_queue_url: settings.retry_queue_url.clone(),
                batch_time_budget: args.batch_timeout,
            };
            let stop = async {
                tokio::signal::ctrl_c().await.ok();
            };
            let (served, ()) = tokio::join!(server, consumer.run(stop));
            served?;
        }
        _ => server.await?,
    }
    Ok(())
}
