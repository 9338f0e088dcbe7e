//! Consuming real SQS queues with the Lambda's semantics: receive a batch, process it, delete
//! what was delivered or skipped, and leave failures alone so that SQS redelivers them after
//! the visibility timeout and its redrive policy moves them to the dead-letter queue after
//! `maxReceiveCount` receives.
//!
//! Like the Lambda's two event sources, it consumes the event queue and, when there is one,
//! the retry queue the streamer sends failed records back to; only a message received from
//! the retry queue is believed to be a copy sent back ([`MessageSource`]).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use event_log_streaming::Streamer;
use event_log_streaming::event::{
    ATTEMPTS_ATTRIBUTE, MessageSource, QueueMessage, SENT_TIMESTAMP_ATTRIBUTE, SqsAttributes,
};
use time::OffsetDateTime;
use tokio::sync::watch;
use tracing::{info, warn};

/// Long polling, as the Lambda event source does.
const WAIT_TIME_SECONDS: i32 = 10;
const MAX_MESSAGES: i32 = 10;

pub struct Consumer<'a> {
    pub streamer: &'a Streamer,
    pub sqs: Client,
    /// The event queue, which producers send to.
    pub queue_url: String,
    /// The retry queue, which only the streamer sends to: the streamer's `RETRY_QUEUE_URL`.
    pub retry_queue_url: Option<String>,
    /// Time a batch may take; keep it below the queues' visibility timeout.
    pub batch_time_budget: Duration,
}

impl Consumer<'_> {
    /// Runs until `shutdown` completes, letting the batches in progress finish.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        let (stop, stopped) = watch::channel(false);
        let signal = async {
            shutdown.await;
            stop.send_replace(true);
        };
        let events = self.consume(&self.queue_url, MessageSource::Producers, stopped.clone());
        let retries = async {
            if let Some(url) = &self.retry_queue_url {
                self.consume(url, MessageSource::RetryQueue, stopped).await;
            }
        };
        tokio::join!(signal, events, retries);
    }

    async fn consume(
        &self,
        queue_url: &str,
        source: MessageSource,
        mut stopped: watch::Receiver<bool>,
    ) {
        info!(queue_url, ?source, "consuming the queue");
        loop {
            let received = tokio::select! {
                _ = stopped.wait_for(|stop| *stop) => return,
                received = self
                    .sqs
                    .receive_message()
                    .queue_url(queue_url)
                    .max_number_of_messages(MAX_MESSAGES)
                    .wait_time_seconds(WAIT_TIME_SECONDS)
                    .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                    .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                    .message_attribute_names("All")
                    .customize()
                    .config_override(aws_sdk_sqs::config::Builder::default().timeout_config(
                        event_log_streaming::aws::long_poll_timeouts(Duration::from_secs(
                            WAIT_TIME_SECONDS as u64,
                        )),
                    ))
                    .send() => received,
            };
            let messages = match received {
                Ok(output) => output.messages.unwrap_or_default(),
                Err(err) => {
                    warn!(error = %DisplayErrorContext(err), "receive failed; trying again in a second");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if !messages.is_empty() {
                self.process(queue_url, source, messages).await;
            }
        }
    }

    async fn process(&self, queue_url: &str, source: MessageSource, messages: Vec<Message>) {
        let batch: Vec<QueueMessage> = messages
            .iter()
            .map(|message| queue_message(message, source))
            .collect();
        let report = self
            .streamer
            .process_batch(&batch, Instant::now() + self.batch_time_budget)
            .await;
        let done: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .filter(|m| {
                !report
                    .failed_message_ids
                    .iter()
                    .any(|id| Some(id.as_str()) == m.message_id())
            })
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .build()
                    .ok()
            })
            .collect();
        if done.is_empty() {
            return;
        }
        let deleted = self
            .sqs
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(done))
            .send()
            .await;
        match deleted {
            Ok(output) if !output.failed().is_empty() => {
                warn!(
                    failed = output.failed().len(),
                    "some processed messages could not be deleted and will be redelivered"
                );
            }
            Ok(_) => {}
            Err(err) => {
                warn!(error = %DisplayErrorContext(err), "delete failed; the batch will be redelivered")
            }
        }
    }
}

fn queue_message(message: &Message, source: MessageSource) -> QueueMessage {
    let attribute = |name: MessageSystemAttributeName| {
        message
            .attributes()
            .and_then(|a| a.get(&name))
            .map(String::as_str)
    };
    let message_attribute = |name: &str| {
        message
            .message_attributes()
            .and_then(|a| a.get(name))
            .and_then(|a| a.string_value())
    };
    let attributes = SqsAttributes {
        source,
        sent_timestamp: attribute(MessageSystemAttributeName::SentTimestamp),
        receive_count: attribute(MessageSystemAttributeName::ApproximateReceiveCount),
        attempts_before: message_attribute(ATTEMPTS_ATTRIBUTE),
        original_sent_timestamp: message_attribute(SENT_TIMESTAMP_ATTRIBUTE),
    };
    QueueMessage::from_sqs(
        message.message_id().unwrap_or_default(),
        message.body().unwrap_or_default(),
        attributes,
        OffsetDateTime::now_utc(),
    )
}
