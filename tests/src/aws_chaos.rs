//! AWS misbehaving the way it does under load, for the clients of the code under test: a
//! [`MotoProxy`] whose rule fails some requests with an AWS error type or forwards them late,
//! drawn at random per operation. Each operation has its own generator, seeded from one seed,
//! so the n-th request of an operation meets the same fate in every run, however the
//! operations interleave. The test's own clients talk to moto directly and meet none of it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::moto_proxy::{MotoProxy, Step};

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Answered with this AWS error type instead of moto: a throttling type the SDK retries
    /// (`ThrottlingException`, `RequestThrottled`) or one it does not
    /// (`AccessDeniedException`).
    Error(&'static str),
    /// Forwarded to moto after this wait. Beyond the SDK's attempt timeout the client gives
    /// up on the attempt and closes the connection, and the proxy drops the request unsent:
    /// a call the service never saw, tried again by the SDK.
    Slow(Duration),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Error(error_type) => f.write_str(error_type),
            Self::Slow(wait) => write!(f, "slow {wait:?}"),
        }
    }
}

/// One operation's odds: the share of its requests that meet each fault.
#[derive(Debug, Clone)]
pub struct Odds {
    /// As `X-Amz-Target` ends: `SendMessage`, `BatchGetItem`, `GetSecretValue`.
    pub operation: &'static str,
    pub faults: Vec<(f64, Fault)>,
}

#[derive(Debug, Clone)]
pub struct AwsChaos {
    pub seed: u64,
    pub odds: Vec<Odds>,
    /// Names of queues (by URL), so that the counts tell a queue's sends from another's.
    pub queue_names: Vec<(String, &'static str)>,
}

/// What the proxy saw and did, per operation (and queue): requests, and faults by kind.
#[derive(Debug, Clone, Default)]
pub struct Injected(Arc<Mutex<BTreeMap<String, Counts>>>);

#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub requests: usize,
    pub faults: BTreeMap<String, usize>,
}

impl Injected {
    pub fn by_call(&self) -> BTreeMap<String, Counts> {
        self.0.lock().unwrap().clone()
    }

    /// Faults injected of every call, by kind.
    pub fn total(&self) -> usize {
        let calls = self.0.lock().unwrap();
        calls.values().flat_map(|c| c.faults.values()).sum()
    }
}

impl fmt::Display for Injected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (call, counts) in self.by_call() {
            write!(f, "\n  {call}: {} requests", counts.requests)?;
            for (fault, n) in &counts.faults {
                write!(f, ", {n} {fault}")?;
            }
        }
        Ok(())
    }
}

impl AwsChaos {
    /// A proxy in front of moto that plays this chaos, and what it injected.
    pub async fn start(self) -> (MotoProxy, Injected) {
        let injected = Injected::default();
        let counts = injected.clone();
        let generators: Vec<Mutex<fastrand::Rng>> = (0..self.odds.len())
            .map(|i| Mutex::new(fastrand::Rng::with_seed(self.seed.wrapping_add(i as u64))))
            .collect();
        let proxy = MotoProxy::start(move |target, request: &mut Value| {
            let operation = target.rsplit('.').next().unwrap_or_default();
            let call = match request["QueueUrl"].as_str() {
                Some(url) => {
                    let queue = self.queue_names.iter().find(|(u, _)| u == url);
                    format!("{operation} to {}", queue.map_or(url, |(_, name)| *name))
                }
                None => operation.to_owned(),
            };
            let fault = self
                .odds
                .iter()
                .position(|odds| odds.operation == operation)
                .and_then(|i| draw(&self.odds[i].faults, &generators[i]));
            let mut counts = counts.0.lock().unwrap();
            let counts = counts.entry(call).or_default();
            counts.requests += 1;
            let Some(fault) = fault else {
                return Step::Forward;
            };
            *counts.faults.entry(fault.to_string()).or_default() += 1;
            match fault {
                Fault::Error(error_type) => Step::Fail {
                    error_type,
                    message: "a fault injected by the test",
                },
                Fault::Slow(wait) => Step::ForwardAfter(wait),
            }
        })
        .await;
        (proxy, injected)
    }
}

fn draw(faults: &[(f64, Fault)], rng: &Mutex<fastrand::Rng>) -> Option<Fault> {
    let draw = rng.lock().unwrap().f64();
    let mut threshold = 0.0;
    faults.iter().find_map(|(share, fault)| {
        threshold += share;
        (draw < threshold).then_some(*fault)
    })
}
