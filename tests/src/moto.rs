//! A real AWS emulator for the tests: moto's server, one per test binary, on a free loopback
//! port. `make test` installs it into `.venv`; a missing install fails the tests loudly rather
//! than skipping them.

use std::net::TcpListener;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_secretsmanager::config::Credentials;

use crate::wait_for_port;

pub struct Moto {
    pub endpoint: String,
    /// Held open for the life of the test process: when the process exits the pipe closes
    /// and the wrapper shell stops moto, so no server outlives the tests.
    _lifeline: Mutex<ChildStdin>,
}

pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        let binary = crate::venv_tool("moto_server", "MOTO_SERVER");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // The wrapper shell is reaped by init when the test process exits; nothing waits on it.
        #[allow(clippy::zombie_processes)]
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" -H 127.0.0.1 -p "$1" >/dev/null 2>&1 & pid=$!; read _ignored; kill $pid"#)
            .arg(&binary)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .spawn()
            .expect("start moto_server");
        let lifeline = child.stdin.take().unwrap();
        wait_for_port(port, Duration::from_secs(60), "moto_server");
        Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            _lifeline: Mutex::new(lifeline),
        }
    })
}

impl Moto {
    /// An SDK configuration that talks only to moto, never to AWS or the metadata service.
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
            .load()
            .await
    }
}
