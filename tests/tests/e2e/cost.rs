//! What the streamer costs in AWS calls, counted by operation over a realistic mix: 5,000
//! projects sending Zipf-distributed traffic, 500 of them configured, three containers with
//! caches that expire between rounds; and how the table's reads grow (they do not) when ten
//! times as many projects emit events without a stream. docs/cost.md rests on these counts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use event_log_streaming::clock::Clock;
use event_log_streaming::event::QueueMessage;
use event_log_streaming::settings::StreamerSettings;
use event_log_streaming::{Streamer, StreamerOptions};
use futures::StreamExt;
use integration_tests::aws::CallCounter;
use integration_tests::clock::AdvancingClock;
use integration_tests::fake_destination::FakeDestination;
use integration_tests::fixtures::Zipf;
use time::OffsetDateTime;

use crate::helpers::*;

const PROJECTS: usize = 5_000;
const CONFIGURED: usize = 500;
const CONTAINERS: usize = 3;
const ROUNDS: usize = 3;
const BATCHES_PER_ROUND: usize = 5;
const MESSAGES_PER_BATCH: usize = 10;
const EVENTS_PER_MESSAGE: usize = 10;
/// The streamers' cache TTL. The test's clock is moved past it between rounds, so no round
/// outlasts it however slow the machine, and no test waits for it.
const CACHE_TTL: Duration = Duration::from_secs(30);
/// Keys of one read of the index of configured projects: its head and 16 shards.
const INDEX_KEYS: usize = 17;

#[tokio::test]
async fn aws_calls_stay_within_the_cost_model_on_a_realistic_mix() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let state = StateEnv::new().await;
    let mut rng = fastrand::Rng::with_seed(7);
    // Every tenth rank is configured, so configured projects span heavy and light senders.
    let configured: BTreeSet<usize> = (0..PROJECTS).step_by(PROJECTS / CONFIGURED).collect();
    futures::stream::iter(&configured)
        .map(|rank| {
            let spec = loki_config(&loki.hostname(), LOKI_PASSWORD);
            let state = &state;
            async move { state.configure(&format!("proj-{rank}"), spec).await }
        })
        // One at a time: moto copies a whole table for each transaction, which a concurrent
        // write to the table breaks (an answer 500; DynamoDB itself has no such limit).
        .buffer_unordered(1)
        .collect::<Vec<_>>()
        .await;
    state.build_index().await;
    let settings = settings(CACHE_TTL);
    let clock = Arc::new(AdvancingClock::default());
    let mut containers = Vec::new();
    for _ in 0..CONTAINERS {
        let calls = CallCounter::default();
        let store = state.container_store(&calls).await;
        let mut options = StreamerOptions::from_settings(&settings);
        options.clock = clock.clone();
        let streamer = Streamer::with_options(&settings, store, Default::default(), options);
        containers.push((streamer.unwrap(), calls));
    }

    let zipf = Zipf::new(PROJECTS);
    let mut events = 0;
    let mut configured_events = 0;
    let mut expected_reads = 0;
    let mut expected_secret_reads = 0;
    let mut seen_configured: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); CONTAINERS];
    let mut batch_gets_bound = 0;
    for round in 0..ROUNDS {
        for (c, (streamer, _)) in containers.iter().enumerate() {
            // Within a round the cache holds; each project costs one read per round.
            let mut seen_this_round = BTreeSet::new();
            for b in 0..BATCHES_PER_ROUND {
                let mut batch_projects = BTreeSet::new();
                let messages: Vec<QueueMessage> = (0..MESSAGES_PER_BATCH)
                    .map(|m| {
                        let records: Vec<String> = (0..EVENTS_PER_MESSAGE)
                            .map(|e| {
                                let rank = zipf.sample(&mut rng);
                                batch_projects.insert(rank);
                                configured_events += usize::from(configured.contains(&rank));
                                event(&format!("proj-{rank}"), &format!("{round}-{c}-{b}-{m}-{e}"))
                                    .to_string()
                            })
                            .collect();
                        QueueMessage::new(
                            format!("{round}-{c}-{b}-{m}"),
                            format!("[{}]", records.join(",")),
                            OffsetDateTime::now_utc(),
                        )
                    })
                    .collect();
                let uncached = batch_projects
                    .difference(&seen_this_round)
                    .filter(|rank| configured.contains(rank))
                    .count();
                // The index, once a round, and the configured projects not cached yet.
                batch_gets_bound += usize::from(b == 0) + uncached.div_ceil(100);
                seen_this_round.extend(batch_projects);
                events += MESSAGES_PER_BATCH * EVENTS_PER_MESSAGE;
                let report = streamer
                    .process_batch(&messages, clock.now() + Duration::from_secs(20))
                    .await;
                assert!(report.failed_message_ids.is_empty(), "{:?}", report.summary);
            }
            // Per round: the index (its head and 16 shards), then each configured project seen.
            expected_reads += INDEX_KEYS
                + seen_this_round
                    .iter()
                    .filter(|r| configured.contains(r))
                    .count();
            let new_configured: Vec<usize> = seen_this_round
                .iter()
                .filter(|r| configured.contains(r) && !seen_configured[c].contains(r))
                .copied()
                .collect();
            expected_secret_reads += new_configured.len();
            seen_configured[c].extend(new_configured);
        }
        clock.advance(CACHE_TTL);
    }

    let mut totals: BTreeMap<String, usize> = BTreeMap::new();
    for (_, calls) in &containers {
        for (operation, count) in calls.all() {
            *totals.entry(operation).or_default() += count;
        }
    }
    let count = |op: &str| totals.get(op).copied().unwrap_or(0);
    // Secrets Manager: once per configured project per container, across every expiry, and
    // never for the 4,500 unconfigured projects.
    assert_eq!(
        count("Secrets Manager.GetSecretValue"),
        expected_secret_reads,
        "{totals:?}"
    );
    // The table: the index once per container and TTL, then each configured project seen,
    // once per container and TTL, in as few BatchGetItem calls as 100 keys per call allow;
    // never the 4,500 projects without a stream.
    let (keys, batch_gets) = (
        count("DynamoDB.BatchGetItem.keys"),
        count("DynamoDB.BatchGetItem"),
    );
    assert_eq!(keys, expected_reads, "{totals:?}");
    assert!(batch_gets <= batch_gets_bound, "{totals:?}");
    assert_eq!(loki.accepted().len(), configured_events);

    let per_thousand = |n: usize| n as f64 * 1000.0 / events as f64;
    eprintln!(
        "AWS requests per 1,000 events ({events} events, {CONTAINERS} containers, {ROUNDS} cache expiries, TTL {CACHE_TTL:?}):"
    );
    for (operation, n) in &totals {
        eprintln!(
            "  {operation:<40} {n:>6}  {:>8.2} per 1,000 events",
            per_thousand(*n)
        );
    }
}

/// The table's reads in one cache TTL of one container, with the index of configured
/// projects and without it, as ten times as many projects emit events without a stream: with
/// it, the index and the 50 configured projects' items, whatever the number of others.
#[tokio::test]
async fn table_reads_stay_flat_as_projects_without_a_stream_grow() {
    const CONFIGURED: usize = 50;
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let mut table = Vec::new();
    for emitting in [5_000, 50_000] {
        let mut keys = Vec::new();
        for indexed in [true, false] {
            let state = StateEnv::new().await;
            for rank in 0..CONFIGURED {
                let spec = loki_config(&loki.hostname(), LOKI_PASSWORD);
                state.configure(&format!("proj-{rank}"), spec).await;
            }
            if indexed {
                state.build_index().await;
            }
            let read = keys_read_in_one_ttl(&state, emitting).await;
            keys.push(read);
        }
        assert_eq!(
            keys[0],
            INDEX_KEYS + CONFIGURED,
            "with the index, {emitting} projects"
        );
        assert_eq!(
            keys[1],
            INDEX_KEYS + emitting,
            "without it, {emitting} projects"
        );
        table.push((emitting, keys[0], keys[1]));
    }
    eprintln!("table keys read per container and TTL (50 projects with a stream):");
    eprintln!("  projects emitting   with the index   without");
    for (emitting, with, without) in table {
        eprintln!("  {emitting:>17}   {with:>14}   {without:>7}");
    }
}

/// Sends one event of each of `emitting` projects (`proj-0` …) through a new container
/// within one TTL, and counts the keys it asked the table for.
async fn keys_read_in_one_ttl(state: &StateEnv, emitting: usize) -> usize {
    let calls = CallCounter::default();
    // An hour: however slow the machine, every batch falls within one TTL.
    let settings = settings(Duration::from_secs(3600));
    let store = state.container_store(&calls).await;
    let streamer = Streamer::from_settings(&settings, store, Default::default()).unwrap();
    let ranks: Vec<usize> = (0..emitting).collect();
    for (b, batch) in ranks.chunks(1_000).enumerate() {
        let messages: Vec<QueueMessage> = batch
            .chunks(EVENTS_PER_MESSAGE)
            .enumerate()
            .map(|(m, ranks)| {
                let records: Vec<String> = ranks
                    .iter()
                    .map(|rank| {
                        event(&format!("proj-{rank}"), &format!("{b}-{m}-{rank}")).to_string()
                    })
                    .collect();
                QueueMessage::new(
                    format!("{b}-{m}"),
                    format!("[{}]", records.join(",")),
                    OffsetDateTime::now_utc(),
                )
            })
            .collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let report = streamer.process_batch(&messages, deadline).await;
        assert!(report.failed_message_ids.is_empty(), "{:?}", report.summary);
    }
    calls
        .all()
        .get("DynamoDB.BatchGetItem.keys")
        .copied()
        .unwrap_or(0)
}

/// A streamer's settings with a cache of `ttl`, pushing to the loopback fake destinations.
fn settings(ttl: Duration) -> StreamerSettings {
    StreamerSettings::from_lookup(|name| match name {
        "CONFIG_CACHE_TTL_SECONDS" => Some(ttl.as_secs().to_string()),
        "ALLOW_PRIVATE_DESTINATIONS" => Some("true".into()),
        "EXTRA_CA_CERTS" => Some(ca_file()),
        _ => None,
    })
    .unwrap()
}
