//! What the streamer costs in AWS calls, counted by operation over a realistic mix: 5,000
//! projects sending Zipf-distributed traffic, 500 of them configured, three containers with
//! caches that expire between rounds. The README's cost section rests on these counts.

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
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let settings = StreamerSettings::from_lookup(|name| match name {
        "CONFIG_CACHE_TTL_SECONDS" => Some(CACHE_TTL.as_secs().to_string()),
        "ALLOW_PRIVATE_DESTINATIONS" => Some("true".into()),
        "EXTRA_CA_CERTS" => Some(ca_file()),
        _ => None,
    })
    .unwrap();
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
                let uncached = batch_projects.difference(&seen_this_round).count();
                batch_gets_bound += uncached.div_ceil(100);
                seen_this_round.extend(batch_projects);
                events += MESSAGES_PER_BATCH * EVENTS_PER_MESSAGE;
                let report = streamer
                    .process_batch(&messages, clock.now() + Duration::from_secs(20))
                    .await;
                assert!(report.failed_message_ids.is_empty(), "{:?}", report.summary);
            }
            expected_reads += seen_this_round.len();
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
    // The table: every project read once per container and TTL, configured or not, in as
    // few BatchGetItem calls as 100 keys per call allow.
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
