//! A real headless Chromium for page tests: Debian's `chromium` driven over WebDriver by
//! Debian's `chromedriver`, started on a free loopback port for one test. `make test` (and
//! CI) install both; a machine without them fails with the command that installs them,
//! never skips.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::wait_for_port;

pub const INSTALL: &str = "apt-get install -y chromium chromium-driver";

fn binary(variable: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.exists(),
        "{} not found: install it with `{INSTALL}` (make test does), or set {variable}",
        path.display()
    );
    path
}

/// A browser session; the driver process ends with it.
pub struct Browser {
    pub client: Client,
    driver: Child,
    profile: PathBuf,
}

impl Browser {
    pub async fn start() -> Self {
        let driver_path = binary("CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium = binary("CHROMIUM", "/usr/bin/chromium");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        wait_for_port(port, Duration::from_secs(20), "chromedriver");
        let profile = std::env::temp_dir().join(format!(
            "els-chromium-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                // Headless as root on a machine with no network but loopback: no sandbox, no
                // background traffic to Google's hosts.
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-extensions",
                    "--window-size=1024,900", format!("--user-data-dir={}", profile.display()),
                ],
            }
        });
        let capabilities = match capabilities {
            serde_json::Value::Object(map) => map,
            _ => unreachable!(),
        };
        let client = ClientBuilder::rustls()
            .expect("a TLS connector")
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session");
        Self {
            client,
            driver,
            profile,
        }
    }

    /// The visible text of an element, polled until `accept` takes it (10 s at most).
    pub async fn text_when(&self, id: &str, accept: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let text = match self.client.find(Locator::Id(id)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if accept(&text) {
                return text;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "#{id} still reads {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn text_containing(&self, id: &str, wanted: &str) -> String {
        self.text_when(id, |text| text.contains(wanted)).await
    }

    /// The element with this id; a missing one fails the test by its id.
    async fn element(&self, id: &str) -> Element {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("no #{id} on the page: {e}"))
    }

    pub async fn is_displayed(&self, id: &str) -> bool {
        self.element(id)
            .await
            .is_displayed()
            .await
            .unwrap_or_else(|e| panic!("is #{id} displayed: {e}"))
    }

    pub async fn click(&self, id: &str) {
        self.element(id)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click #{id}: {e}"));
    }

    /// Replaces an input's value by typing, as a person would.
    pub async fn fill(&self, id: &str, text: &str) {
        let element = self.element(id).await;
        element
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clear #{id}: {e}"));
        element
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into #{id}: {e}"));
    }

    /// An input's, textarea's or select's current value.
    pub async fn value(&self, id: &str) -> String {
        self.element(id)
            .await
            .prop("value")
            .await
            .unwrap_or_else(|e| panic!("value of #{id}: {e}"))
            .unwrap_or_default()
    }

    pub async fn attribute(&self, id: &str, name: &str) -> Option<String> {
        self.element(id)
            .await
            .attr(name)
            .await
            .unwrap_or_else(|e| panic!("{name} of #{id}: {e}"))
    }

    /// Chooses the option of a select by its value, as a person would.
    pub async fn select(&self, id: &str, value: &str) {
        self.element(id)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("select {value:?} in #{id}: {e}"));
    }

    /// With `PAGE_SCREENSHOTS=DIR`, saves what the page looks like now as `DIR/NAME.png`, for a
    /// person to look at.
    pub async fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("PAGE_SCREENSHOTS") else {
            return;
        };
        let png = self.client.screenshot().await.unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(PathBuf::from(dir).join(format!("{name}.png")), png).unwrap();
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
