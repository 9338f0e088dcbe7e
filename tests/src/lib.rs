//! Test fixtures shared by the end-to-end tests: a real AWS emulator (moto), strict local
//! Loki and Datadog servers over TLS, log capture and Lambda event builders.

pub mod aws;
pub mod aws_chaos;
pub mod browser;
pub mod clock;
pub mod fake_destination;
pub mod fixtures;
pub mod lambda;
pub mod logs;
pub mod moto;
pub mod moto_proxy;
pub mod tls;
pub mod zlib_reference;

use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A tool `make test` installs into `.venv` (or the binary the variable `override_var`
/// names); fails the test, saying how to install it, when it is missing.
pub fn venv_tool(binary: &str, override_var: &str) -> PathBuf {
    let path = std::env::var_os(override_var).map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../.venv/bin")
                .join(binary)
        },
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{binary} not found at {}: run `make test`, which installs it into .venv (or set {override_var})",
        path.display()
    );
    path
}

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
