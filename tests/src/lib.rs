//! Test fixtures shared by the end-to-end tests: a real AWS emulator (moto), strict local
//! Loki and Datadog servers over TLS, log capture and Lambda event builders.

pub mod aws;
pub mod browser;
pub mod fake_destination;
pub mod fixtures;
pub mod lambda;
pub mod logs;
pub mod moto;
pub mod tls;
