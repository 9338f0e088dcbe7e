//! Test fixtures shared by the end-to-end tests: a real AWS emulator (moto), strict local
//! Loki and Datadog servers over TLS, log capture and Lambda event builders.

pub mod aws;
pub mod browser;
pub mod fake_destination;
pub mod fixtures;
pub mod lambda;
pub mod logs;
pub mod moto;
pub mod moto_proxy;
pub mod tls;

use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Waits until a server a test started listens on `port` of loopback; fails the test, naming
/// `what`, after `timeout`.
pub fn wait_for_port(port: u16, timeout: Duration, what: &str) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < timeout,
            "{what} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
