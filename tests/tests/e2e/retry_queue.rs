//! Only the streamer can vouch for a copy (issue 14, section 5): the attributes of a copy
//! sent back (`els_sent_timestamp`, `els_attempts`) are believed only on a message read from
//! the retry queue, which only the streamer may send to. On the event queue anyone who may
//! send could set them, so there a message is judged by its own `SentTimestamp` and receive
//! count, whatever it carries.

use event_log_streaming::event::{ATTEMPTS_ATTRIBUTE, SENT_TIMESTAMP_ATTRIBUTE};
use integration_tests::fake_destination::FakeDestination;
use integration_tests::lambda::{EVENT_QUEUE_ARN, SqsRecord, now_ms};
use time::OffsetDateTime;

use crate::helpers::*;

fn attributes(attempts: u32, sent_ms: u128) -> [(String, String); 2] {
    [
        (ATTEMPTS_ATTRIBUTE.to_owned(), attempts.to_string()),
        (SENT_TIMESTAMP_ATTRIBUTE.to_owned(), sent_ms.to_string()),
    ]
}

fn at_ms(ms: u128) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap()
}

#[tokio::test]
async fn the_no_backfill_rule_reads_a_carried_time_only_from_the_retry_queue() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let env = StreamerEnv::new(Options {
        event_queue: true,
        ..Options::default()
    })
    .await;
    let enabled = now_ms();
    let mut spec = loki_config(&loki.hostname(), LOKI_PASSWORD);
    spec.enabled_at = Some(at_ms(enabled));
    env.configure("p", spec).await;
    let (before, after) = (enabled - 60_000, enabled + 1_000);
    // (event id, sent at, carried time, from the retry queue?): streamed when the time that
    // counts is from the enable on.
    let table = [
        // A producer cannot backfill an event sent before the enable by dating it after...
        ("forged-backfill", before, after, false),
        // ...nor have an event sent after the enable skipped by dating it before.
        ("forged-skip", after, before, false),
        // A copy the streamer sent back keeps its original's time, either way.
        ("copy-of-early", after, before, true),
        ("copy-of-late", before, after, true),
    ];
    let records = table
        .iter()
        .map(|(id, sent, carried, from_retry_queue)| {
            let record = SqsRecord::new(*id, event("p", id).to_string())
                .sent_at_ms(*sent)
                .with_attributes(attributes(1, *carried), 1);
            if *from_retry_queue {
                record
            } else {
                record.from_queue(EVENT_QUEUE_ARN)
            }
        })
        .collect();

    let response = env.invoke(records).await;

    assert_eq!(failed_ids(&response), Vec::<String>::new());
    let mut streamed = loki.accepted_event_ids();
    streamed.sort();
    assert_eq!(streamed, ["copy-of-late", "forged-skip"]);
}

#[tokio::test]
async fn attempts_claimed_on_the_event_queue_do_not_count_those_a_copy_carries_do() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let env = StreamerEnv::new(Options::retrying(2)).await;
    env.configure("revoked", loki_config(&loki.hostname(), "glc_revoked-0000"))
        .await;
    let sent = now_ms() - 5_000;
    let body = || event("revoked", "revoked-1").to_string();

    // A producer claiming attempts already made: its record still gets all of its own.
    let forged = SqsRecord::new("forged", body())
        .sent_at_ms(sent)
        .with_attributes(attributes(7, sent), 1)
        .from_queue(EVENT_QUEUE_ARN);
    let response = env.invoke(vec![forged]).await;

    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert!(env.dead_letters().await.is_empty());
    let requeued = env.requeued().await;
    assert_eq!(requeued.len(), 1);
    assert_eq!(requeued[0].1[ATTEMPTS_ATTRIBUTE], "1");

    // The same claim on a copy from the retry queue is the streamer's own: the last attempt.
    let copy = SqsRecord::new("copy", body())
        .sent_at_ms(now_ms())
        .with_attributes(requeued[0].1.clone(), 1);
    let response = env.invoke(vec![copy]).await;

    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert!(env.requeued().await.is_empty());
    let dead = env.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert!(dead[0].1["rejection_detail"].starts_with("not delivered after 2 attempts"));
    assert_eq!(loki.requests(), 2);
}
