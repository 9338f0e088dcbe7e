//! The command line: the arguments, the clients (built once, with the functions' timeouts:
//! `event_log_streaming::aws`), what each subcommand prints, and the exit status: 0 done,
//! 1 failed (the message on stderr says what to fix), 130 a redrive stopped by Ctrl-C.

use std::error::Error;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand, ValueEnum};
use event_log_streaming::domain::ProjectId;
use event_log_streaming::store::{DynamoDbStreams, FileStateStore, StreamWrite};
use local_runner::STATE_FILE_NAME;
use local_runner::keys::KEYS_FILE_NAME;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::dlq::progress::Progress;
use crate::dlq::queue::{DeadLetters, RECEIVE_WAIT};
use crate::dlq::redrive::{Redrive, Report, Target};
use crate::dlq::{Filter, summary};
use crate::keys::{self, FileKeys, KeyStore, SecretsManagerKeys};
use crate::resources::{Resource, Resources};

/// Operate an event log streaming deployment: management keys, the dead-letter queue, streams.
///
/// AWS credentials and region come from the usual places; AWS_ENDPOINT_URL is honoured.
/// Resources are found from the functions' environment variables (MANAGEMENT_KEYS_SECRET_ID,
/// STREAM_TABLE_NAME, DEAD_LETTER_QUEUE_URL, RETRY_QUEUE_URL, EVENT_QUEUE_URL) or, with
/// --stack, from a deployed stack's outputs.
#[derive(Debug, Parser)]
#[command(name = "els-admin", version)]
pub struct Cli {
    /// Find the resources in this CloudFormation stack's outputs instead of the environment.
    #[arg(long, global = true, value_name = "NAME", conflicts_with = "local")]
    stack: Option<String>,
    /// Work on `make run`'s local files in DIR (default .local): keys and stream show.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = ".local"
    )]
    local: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The config API's management keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The dead-letter queue.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Streams, as the config API shows them.
    #[command(subcommand)]
    Stream(StreamCommand),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Make a key; its secret is printed once and only its SHA-256 is stored.
    Create {
        /// The key id: letters, digits, '.', '_', '-'.
        #[arg(long)]
        id: String,
        /// The projects it may manage: '*' for all, or ids separated by commas.
        #[arg(long)]
        projects: String,
    },
    /// Key ids, scopes and creation times (never a secret or a hash).
    List,
    /// Remove a key.
    Revoke {
        /// The key id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Count the messages by reason, project and age, leaving them in the queue.
    Summary,
    /// Move the chosen messages back to the retry queue (or the event queue), keeping each
    /// record's original send time and attempts.
    Redrive {
        /// Only messages with this rejection_reason.
        #[arg(long)]
        reason: Option<String>,
        /// Only this project's messages.
        #[arg(long)]
        project: Option<String>,
        /// Only records first sent longer ago than this: 30m, 2h, 1d.
        #[arg(long, value_name = "DURATION")]
        older_than: Option<String>,
        /// Where to: the retry queue believes the send time and attempts; the event queue
        /// (which any producer may send to) does not, and counts the records as sent now.
        #[arg(long, value_enum, default_value = "retry-queue")]
        to: Destination,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Destination {
    RetryQueue,
    EventQueue,
}

#[derive(Debug, Subcommand)]
enum StreamCommand {
    /// A project's configuration and delivery health.
    Show {
        /// The project id.
        project: String,
    },
}

type Failure = Box<dyn Error + Send + Sync>;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            // Display only: each error says what it is about and why.
            eprintln!("els-admin: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    if let Some(dir) = &cli.local {
        return match cli.command {
            Command::Keys(command) => {
                let store = FileKeys::new(dir.join(KEYS_FILE_NAME));
                keys_command(&store, command, Applies::AtRunnerStart).await
            }
            Command::Stream(StreamCommand::Show { project }) => {
                let path = dir.join(STATE_FILE_NAME);
                let store = FileStateStore::new(&path);
                let place = format!("the local state file {}", path.display());
                stream_show(&store, &project, &place).await
            }
            Command::Dlq(_) => Err("the local runner has no dead-letter queue; dlq commands \
                                    work on a deployment (without --local)"
                .into()),
        };
    }
    let aws = event_log_streaming::aws::load().await;
    let resources = match &cli.stack {
        Some(stack) => {
            Resources::from_stack(&aws_sdk_cloudformation::Client::new(&aws), stack).await?
        }
        None => Resources::from_lookup(&|name| std::env::var(name).ok()),
    };
    match cli.command {
        Command::Keys(command) => {
            let secret_id = resources.get(Resource::KeysSecret)?;
            let store =
                SecretsManagerKeys::new(aws_sdk_secretsmanager::Client::new(&aws), secret_id);
            keys_command(&store, command, Applies::WithinAMinute).await
        }
        Command::Stream(StreamCommand::Show { project }) => {
            let table = resources.get(Resource::StreamTable)?;
            let store = DynamoDbStreams::new(aws_sdk_dynamodb::Client::new(&aws), table);
            stream_show(&store, &project, &format!("the stream table {table}")).await
        }
        Command::Dlq(command) => {
            // Receives long-poll: their timeouts allow for the wait.
            let reader = aws_sdk_sqs::config::Builder::from(&aws)
                .timeout_config(event_log_streaming::aws::long_poll_timeouts(RECEIVE_WAIT))
                .build();
            let dlq = DeadLetters::new(
                aws_sdk_sqs::Client::from_conf(reader),
                resources.get(Resource::DeadLetterQueue)?,
            );
            dlq_command(&dlq, command, &resources, aws_sdk_sqs::Client::new(&aws)).await
        }
    }
}

/// When a key change reaches the config API.
enum Applies {
    WithinAMinute,
    AtRunnerStart,
}

impl Applies {
    fn sentence(&self) -> &'static str {
        match self {
            Self::WithinAMinute => "the config API rereads the keys within 60 s",
            Self::AtRunnerStart => "the local runner reads the keys when it starts",
        }
    }
}

async fn keys_command(
    store: &impl KeyStore,
    command: KeysCommand,
    applies: Applies,
) -> Result<ExitCode, Failure> {
    match command {
        KeysCommand::Create { id, projects } => {
            let secret = keys::create(store, &id, &projects, OffsetDateTime::now_utc()).await?;
            println!("Created the management key {id} for projects {projects}.");
            println!("Its secret, shown this once (only its SHA-256 is kept):");
            println!("  secret: {}", secret.expose());
            println!("  export KEY='{id}:{}'", secret.expose());
            println!("({})", applies.sentence());
        }
        KeysCommand::List => {
            let keys = keys::list(store).await?;
            let width = keys
                .iter()
                .map(|k| k.key_id.len())
                .max()
                .unwrap_or(0)
                .max(6);
            println!("{:<width$}  {:<20}  PROJECTS", "KEY ID", "CREATED");
            for key in keys {
                let created = key
                    .created_at
                    .and_then(|t| t.replace_nanosecond(0).ok())
                    .and_then(|t| t.format(&Rfc3339).ok())
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<width$}  {created:<20}  {}",
                    key.key_id,
                    key.projects.join(",")
                );
            }
        }
        KeysCommand::Revoke { id } => {
            keys::revoke(store, &id).await?;
            println!("Revoked the management key {id} ({}).", applies.sentence());
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn stream_show(
    store: &dyn StreamWrite,
    project: &str,
    place: &str,
) -> Result<ExitCode, Failure> {
    let project = ProjectId::parse(project)?;
    let view = crate::stream::show(store, &project, place).await?;
    println!("{}", serde_json::to_string_pretty(&view)?);
    Ok(ExitCode::SUCCESS)
}

async fn dlq_command(
    dlq: &DeadLetters,
    command: DlqCommand,
    resources: &Resources,
    sqs: aws_sdk_sqs::Client,
) -> Result<ExitCode, Failure> {
    let now = OffsetDateTime::now_utc();
    let (reason, project, older_than, to) = match command {
        DlqCommand::Summary => {
            print!("{}", summary::summarize(dlq, now).await?);
            return Ok(ExitCode::SUCCESS);
        }
        DlqCommand::Redrive {
            reason,
            project,
            older_than,
            to,
        } => (reason, project, older_than, to),
    };
    let filter = Filter::parse(reason.as_deref(), project.as_deref(), older_than.as_deref())?;
    let queue = match to {
        Destination::RetryQueue => Resource::RetryQueue,
        Destination::EventQueue => {
            eprintln!(
                "note: on the event queue the streamer does not believe a message's send time \
                 and attempts: its records count as sent now"
            );
            Resource::EventQueue
        }
    };
    let target = Target::new(sqs, resources.get(queue)?, queue);
    let stop = Arc::new(AtomicBool::new(false));
    let on_ctrl_c = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.store(true, Ordering::SeqCst);
        }
    });
    let mut progress = Progress::new(std::io::stderr().is_terminal());
    let redrive = Redrive {
        from: dlq,
        to: &target,
        filter: &filter,
        now,
        stop: &stop,
    };
    match redrive.run(&mut progress).await {
        Ok(report) => {
            print_report(&report, &target);
            Ok(if report.interrupted {
                ExitCode::from(130)
            } else if report.is_complete() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Err(err) => {
            print_report(&err.report, &target);
            Err(err.into())
        }
    }
}

fn print_report(report: &Report, target: &Target) {
    println!(
        "moved {} to {}; kept {} in the dead-letter queue",
        report.moved,
        target.description(),
        report.kept + report.failed.len()
    );
    for (id, why) in &report.failed {
        println!("not moved {id}: {why}");
    }
    for id in &report.not_deleted {
        println!("moved but not deleted {id}: a later redrive sends it again");
    }
    if report.interrupted {
        println!("interrupted: the messages not read yet stay in the dead-letter queue");
    }
}
