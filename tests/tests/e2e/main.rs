//! End-to-end tests: one binary, so one moto server serves them all.

mod helpers;
mod streamer;
