//! End-to-end tests: one binary, so one moto server serves them all.

mod admin;
mod config_api;
mod controls_api;
mod cost;
mod envelope;
mod faults;
mod handoff;
#[macro_use]
mod helpers;
mod metrics;
mod page;
mod retry_queue;
mod runner;
mod state;
mod streamer;
