//! The Stream Settings page in a real headless Chromium, against the local runner (config
//! API, page and `POST /v1/events`) on a loopback port and a strict local Loki.

use std::sync::Arc;

use config_api::auth::ManagementKey;
use event_log_streaming::store::MemoryStateStore;
use fantoccini::Locator;
use fantoccini::key::Key;
use integration_tests::browser::Browser;
use integration_tests::fake_destination::FakeDestination;

use crate::helpers::*;

const PROJECT: &str = "proj-page";

/// The local runner on a free loopback port; its base URL.
async fn serve_runner() -> String {
    let app = local_runner_app(
        Arc::new(MemoryStateStore::new()),
        vec![
            ManagementKey::new("local-admin", "admin-secret-0001", &["*"]),
            ManagementKey::new("other-team", "other-secret-0002", &["proj-other"]),
        ],
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    base
}

async fn sign_in(browser: &Browser, key_id: &str, secret: &str, project: &str) {
    browser.fill("key-id", key_id).await;
    browser.fill("key-secret", secret).await;
    browser.fill("project-id", project).await;
    browser.click("sign-in").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_configures_tests_enables_watches_and_deletes_a_stream_in_the_browser() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let base = serve_runner().await;
    let browser = Browser::start().await;
    browser.client.goto(&base).await.unwrap();

    // Refused keys and projects say so.
    sign_in(&browser, "local-admin", "not-the-secret", PROJECT).await;
    browser
        .text_containing("sign-in-error", "management key was refused")
        .await;
    sign_in(&browser, "other-team", "other-secret-0002", PROJECT).await;
    browser
        .text_containing("problem", "may not manage project proj-page")
        .await;
    browser.click("sign-out").await;

    // By keyboard alone: the tab order is the visual order, Enter submits.
    browser.fill("key-id", "").await;
    browser.fill("project-id", "").await;
    let key_id = browser.client.find(Locator::Id("key-id")).await.unwrap();
    key_id.click().await.unwrap();
    key_id
        .send_keys(&format!(
            "local-admin{tab}admin-secret-0001{tab}{PROJECT}{enter}",
            tab = char::from(Key::Tab),
            enter = char::from(Key::Enter)
        ))
        .await
        .unwrap();
    assert_eq!(
        browser
            .text_when("session-project", |t| !t.is_empty())
            .await,
        PROJECT
    );
    browser
        .text_containing("empty-title", "Nothing is streamed yet")
        .await;
    assert!(!browser.is_displayed("loki-fields").await);
    browser.click("type-loki").await;
    assert!(browser.is_displayed("loki-fields").await);
    assert!(!browser.is_displayed("datadog-fields").await);

    // The API's field error appears next to its field.
    browser
        .fill("loki-hostname", "https://logs.example.com")
        .await;
    browser.fill("loki-username", LOKI_USER).await;
    browser.fill("loki-password", LOKI_PASSWORD).await;
    browser.click("save").await;
    browser
        .text_containing("loki-hostname-error", "https:// is added for you")
        .await;
    browser.screenshot("0-field-error").await;
    let invalid = browser
        .client
        .find(Locator::Id("loki-hostname"))
        .await
        .unwrap()
        .attr("aria-invalid")
        .await
        .unwrap();
    assert_eq!(invalid.as_deref(), Some("true"));

    browser.fill("loki-hostname", &loki.hostname()).await;
    browser.fill("loki-password", LOKI_PASSWORD).await;
    browser.click("save").await;
    browser.text_containing("notice", "Saved").await;
    browser.text_containing("status-badge", "Disabled").await;
    browser
        .text_containing("loki-password-stored", "•••• 4e1f")
        .await;
    // Write-only: after the save the secret is nowhere in the page, input values included.
    let page = browser.client.source().await.unwrap();
    assert!(!page.contains(LOKI_PASSWORD));
    let values = browser
        .client
        .execute(
            "return [...document.querySelectorAll('input')].map(i => i.value).join('\\n')",
            vec![],
        )
        .await
        .unwrap();
    assert!(!values.as_str().unwrap().contains("SECRET"), "{values}");

    browser.click("send-test").await;
    browser
        .text_containing("test-result", "Test event delivered")
        .await;
    browser.screenshot("1-saved-and-tested").await;
    // A wrong token, kept write-only too; the test says what the destination refused.
    browser
        .fill("loki-password", "glc_wrong-token-00000000")
        .await;
    browser.click("save").await;
    browser
        .text_containing("loki-password-stored", "•••• 0000")
        .await;
    browser.click("send-test").await;
    browser
        .text_containing(
            "test-result",
            "401 from Grafana Loki: check the username and token",
        )
        .await;
    // The right token again: the stored one shows its last four.
    browser.fill("loki-password", LOKI_PASSWORD).await;
    browser.click("save").await;
    browser
        .text_containing("loki-password-stored", "•••• 4e1f")
        .await;

    browser.click("enable").await;
    browser.text_containing("status-badge", "Active").await;
    let events = format!(
        "{}\n{}\n",
        event(PROJECT, "page-1"),
        event(PROJECT, "page-2")
    );
    let ingest = reqwest::Client::new()
        .post(format!("{base}/v1/events"))
        .body(events)
        .send()
        .await
        .unwrap();
    assert_eq!(ingest.status(), 200);
    browser.click("refresh-health").await;
    browser.text_when("health-delivered", |t| t == "2").await;
    browser.screenshot("2-active-with-health").await;
    browser.text_containing("health-last-error", "none").await;
    assert!(loki.accepted_event_ids().contains(&"page-1".to_owned()));

    browser.click("disable").await;
    browser.text_containing("status-badge", "Disabled").await;

    browser.click("delete").await;
    browser.text_containing("delete-question", "for good").await;
    browser.click("delete-confirm").await;
    browser.text_containing("notice", "Deleted").await;
    browser
        .text_containing("empty-title", "Nothing is streamed yet")
        .await;

    // Every control has a visible label; every button says what it does.
    let unlabelled = browser
        .client
        .execute(
            "return [...document.querySelectorAll('input, select')]
               .filter(i => !document.querySelector(`label[for=\"${i.id}\"]`))
               .map(i => i.id)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(unlabelled, serde_json::json!([]));
    // 360 px wide: nothing overflows sideways.
    browser.client.set_window_size(360, 800).await.unwrap();
    let overflow = browser
        .client
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            vec![],
        )
        .await
        .unwrap();
    assert!(overflow.as_i64().unwrap() <= 0, "{overflow}");
    browser.screenshot("3-deleted-at-360px").await;
    browser.close().await;
}
