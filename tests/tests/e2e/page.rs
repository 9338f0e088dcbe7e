//! The Stream Settings page in a real headless Chromium, against the local runner (config
//! API, page and `POST /v1/events`) on a loopback port and a strict local Loki.

use std::collections::BTreeMap;
use std::sync::Arc;

use config_api::auth::ManagementKey;
use event_log_streaming::domain::controls::{
    EventFilterBody, HASH_PREFIX, LokiLabels, LokiTenantId, RedactionBody,
};
use event_log_streaming::domain::{DeliveryHealth, DeliveryLag, Endpoint, ProjectId, StreamConfig};
use event_log_streaming::store::{HealthWrite, MemoryStateStore, StreamWrite};
use fantoccini::Locator;
use fantoccini::key::Key;
use integration_tests::browser::Browser;
use integration_tests::fake_destination::FakeDestination;
use serde_json::json;

use crate::helpers::*;

const PROJECT: &str = "proj-page";
/// The picture of the page the README shows, made by `make screenshot` from this test's
/// "readme" view (an active stream with its health), and the SHA-256 of the page's assets it was made from.
const SCREENSHOT: &str = "docs/stream-settings.png";
const SCREENSHOT_PAGE_SHA256: &str = "docs/stream-settings.png.page-sha256";
const CONTROLS_PROJECT: &str = "proj-page-controls";

/// The local runner on `store` and a free loopback port; its base URL.
async fn serve_runner(store: Arc<MemoryStateStore>) -> String {
    let app = local_runner_app(
        store,
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
    let base = serve_runner(Arc::new(MemoryStateStore::new())).await;
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

    // Nothing delivered yet: no lag to tell.
    assert!(!browser.is_displayed("health-lag").await);
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
    let lag = browser
        .text_containing("health-lag", "Events arrive about ")
        .await;
    assert!(lag.contains(" s after they happen"), "{lag}");
    browser.screenshot("2-active-with-health").await;
    // The README's picture: the same moment, from the top of the page.
    browser
        .client
        .execute("window.scrollTo(0, 0)", vec![])
        .await
        .unwrap();
    browser.screenshot("readme").await;
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
            "return [...document.querySelectorAll('input, select, textarea')]
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

/// The configuration the API stored for `project`.
async fn stored(store: &MemoryStateStore, project: &str) -> StreamConfig {
    let project = ProjectId::parse(project).unwrap();
    StreamWrite::get(store, &project)
        .await
        .unwrap()
        .expect("a stored stream")
        .config
}

/// Saves, and expects the API's refusal next to `input` only: under it, the input marked
/// invalid and focused, nothing at the foot of the form.
async fn save_is_refused_at(browser: &Browser, input: &str, wanted: &str) {
    browser.click("save").await;
    browser
        .text_containing(&format!("{input}-error"), wanted)
        .await;
    assert_eq!(
        browser.attribute(input, "aria-invalid").await.as_deref(),
        Some("true"),
        "#{input}"
    );
    let focused = browser
        .client
        .execute("return document.activeElement.id", vec![])
        .await
        .unwrap();
    assert_eq!(focused, json!(input));
    let shown = browser
        .client
        .execute(
            "return [...document.querySelectorAll('.field-error, #form-error')]
               .filter(e => !e.hidden).map(e => e.id)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(shown, json!([format!("{input}-error")]));
}

async fn save(browser: &Browser) {
    browser.click("save").await;
    browser.text_containing("notice", "Saved").await;
}

/// Opens the page afresh (the key lives only in the page's memory, so it asks again) and
/// waits for the stream to be shown.
async fn reopen(browser: &Browser, base: &str) {
    browser.client.goto(base).await.unwrap();
    sign_in(
        browser,
        "local-admin",
        "admin-secret-0001",
        CONTROLS_PROJECT,
    )
    .await;
    browser.text_containing("status-badge", "Disabled").await;
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stream_control_is_saved_kept_refused_in_place_and_cleared_in_the_browser() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let store = Arc::new(MemoryStateStore::new());
    let base = serve_runner(store.clone()).await;
    let browser = Browser::start().await;
    browser.client.goto(&base).await.unwrap();
    sign_in(
        &browser,
        "local-admin",
        "admin-secret-0001",
        CONTROLS_PROJECT,
    )
    .await;
    browser
        .text_containing("empty-title", "Nothing is streamed yet")
        .await;

    // Loki with every control, created in one save.
    browser.click("type-loki").await;
    browser.fill("loki-hostname", &loki.hostname()).await;
    browser.fill("loki-username", LOKI_USER).await;
    browser.fill("loki-password", LOKI_PASSWORD).await;
    browser.fill("loki-tenant-id", "tenant-a").await;
    browser
        .fill("loki-labels", "team = identity\nenv=prod eu, west\n")
        .await;
    browser
        .fill(
            "filter-actions",
            "Passwords*, MagicLinksEmailLoginOrCreate\nOAuthAuthenticate",
        )
        .await;
    browser.fill("filter-statuses", "success").await;
    browser
        .fill("redaction-fields", "request_id\ntelemetry.ip_address")
        .await;
    browser.select("redaction-mode", "HASH").await;
    save(&browser).await;
    browser.screenshot("controls-0-saved").await;

    let config = stored(&store, CONTROLS_PROJECT).await;
    let (tenant_id, saved_labels) = loki_tenant_and_labels(&config);
    assert_eq!(tenant_id.as_ref().map(|t| t.as_str()), Some("tenant-a"));
    assert_eq!(
        saved_labels.to_body(),
        labels(&[("team", "identity"), ("env", "prod eu, west")])
    );
    assert_eq!(
        config.controls.event_filter.as_ref().map(|f| f.to_body()),
        Some(EventFilterBody {
            actions: Some(strings(&[
                "Passwords*",
                "MagicLinksEmailLoginOrCreate",
                "OAuthAuthenticate"
            ])),
            statuses: Some(strings(&["success"])),
        })
    );
    assert_eq!(
        config.controls.redaction.as_ref().map(|r| r.to_body()),
        Some(RedactionBody {
            fields: strings(&["request_id", "telemetry.ip_address"]),
            mode: "HASH".into(),
        })
    );

    // The test event goes through the redaction; the page says what applies to it.
    browser.click("send-test").await;
    browser
        .text_containing("test-result", "Test event delivered")
        .await;
    browser
        .text_containing("test-note", "the event filter does not apply")
        .await;
    let sent = loki.accepted().pop().expect("the test event");
    assert!(
        sent.field("request_id")
            .as_str()
            .unwrap()
            .starts_with(HASH_PREFIX),
        "{}",
        sent.line
    );

    // What the streamer counts of the filter shows in the health panel.
    let filtered = DeliveryHealth {
        events_filtered: 3,
        last_delivery_lag: Some(DeliveryLag {
            at: time::OffsetDateTime::now_utc(),
            millis: 2_449,
        }),
        ..Default::default()
    };
    HealthWrite::record(store.as_ref(), &config, &filtered)
        .await
        .unwrap();

    // Opened again, the page shows every control as saved.
    reopen(&browser, &base).await;
    let kept = [
        ("loki-tenant-id", "tenant-a"),
        ("loki-labels", "env=prod eu, west\nteam=identity"),
        (
            "filter-actions",
            "Passwords*\nMagicLinksEmailLoginOrCreate\nOAuthAuthenticate",
        ),
        ("filter-statuses", "success"),
        ("redaction-fields", "request_id\ntelemetry.ip_address"),
        ("redaction-mode", "HASH"),
    ];
    for (input, value) in kept {
        assert_eq!(browser.value(input).await, value, "#{input}");
    }
    browser.text_when("health-filtered", |t| t == "3").await;
    browser
        .text_containing("health-lag", "Events arrive about 2.4 s after they happen")
        .await;

    // Each bad value: the API's refusal next to its field, nothing saved, and the good value
    // saves again (which hides the error).
    let version = stored(&store, CONTROLS_PROJECT).await.version;
    let too_many_statuses: Vec<String> = (0..101).map(|i| format!("s{i}")).collect();
    let too_many_statuses = too_many_statuses.join("\n");
    let refusals = [
        (
            "filter-actions",
            "Passwords*\nPass*word",
            "Action 2, “Pass*word”: may hold * only as its last character",
        ),
        (
            "filter-statuses",
            &too_many_statuses,
            "must hold at most 100 entries",
        ),
        (
            "loki-labels",
            "team=identity\n9team=x",
            "label names must match [a-zA-Z_][a-zA-Z0-9_]*",
        ),
        (
            "loki-labels",
            "source=mine",
            "Label source: is set by the product",
        ),
        (
            "loki-tenant-id",
            "tenant a",
            "may hold only A-Z, a-z, 0-9 and ! - _ . * ' ( )",
        ),
        (
            "redaction-fields",
            "request_id\n.email",
            "Field 2, “.email”: must be member names joined by single dots",
        ),
    ];
    for (input, bad, wanted) in refusals {
        let good = browser.value(input).await;
        browser.fill(input, bad).await;
        save_is_refused_at(&browser, input, wanted).await;
        browser.fill(input, &good).await;
    }
    let too_many: Vec<String> = (0..21).map(|i| format!("field_{i}")).collect();
    browser.fill("redaction-fields", &too_many.join(", ")).await;
    save_is_refused_at(&browser, "redaction-fields", "must hold at most 20 fields").await;
    // Fields without a mode would redact nothing: the page asks rather than drop them.
    browser.fill("redaction-fields", "request_id").await;
    browser.select("redaction-mode", "").await;
    save_is_refused_at(&browser, "redaction-mode", "choose MASK, HASH or REMOVE").await;
    browser.screenshot("controls-1-refused-in-place").await;
    browser.fill("redaction-fields", "").await;
    browser.select("redaction-mode", "MASK").await;
    save_is_refused_at(&browser, "redaction-fields", "must not be empty").await;
    assert_eq!(stored(&store, CONTROLS_PROJECT).await.version, version);

    // Clearing: one list of the filter, then every control.
    browser
        .fill("redaction-fields", "request_id\ntelemetry.ip_address")
        .await;
    browser.fill("filter-statuses", "").await;
    save(&browser).await;
    assert!(!browser.is_displayed("redaction-fields-error").await);
    let config = stored(&store, CONTROLS_PROJECT).await;
    assert_eq!(
        config.controls.event_filter.as_ref().map(|f| f.to_body()),
        Some(EventFilterBody {
            actions: Some(strings(&[
                "Passwords*",
                "MagicLinksEmailLoginOrCreate",
                "OAuthAuthenticate"
            ])),
            statuses: None,
        })
    );
    assert_eq!(
        config.controls.redaction.map(|r| r.mode().as_str()),
        Some("MASK")
    );
    for input in [
        "loki-tenant-id",
        "loki-labels",
        "filter-actions",
        "redaction-fields",
    ] {
        browser.fill(input, "").await;
    }
    browser.select("redaction-mode", "").await;
    save(&browser).await;
    let config = stored(&store, CONTROLS_PROJECT).await;
    let (tenant_id, saved_labels) = loki_tenant_and_labels(&config);
    assert!(tenant_id.is_none() && saved_labels.is_empty());
    assert!(config.controls.event_filter.is_none() && config.controls.redaction.is_none());
    reopen(&browser, &base).await;
    for (input, _) in kept {
        assert_eq!(browser.value(input).await, "", "#{input}");
    }

    // Datadog tags, on a stream of their own.
    browser.click("delete").await;
    browser.click("delete-confirm").await;
    browser.text_containing("notice", "Deleted").await;
    browser.click("type-datadog").await;
    browser.select("datadog-site", "EU").await;
    browser.fill("datadog-api-key", DATADOG_KEY).await;
    browser
        .fill("datadog-tags", "team:identity, Env:Prod\n")
        .await;
    save(&browser).await;
    let tags = |config: &StreamConfig| match &config.endpoint {
        Endpoint::Datadog { tags, .. } => tags.to_body(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        tags(&stored(&store, CONTROLS_PROJECT).await),
        ["team:identity", "env:prod"]
    );
    browser
        .fill("datadog-tags", "team:identity, 9lives:x")
        .await;
    save_is_refused_at(
        &browser,
        "datadog-tags",
        "Tag 2, “9lives:x”: must start with a letter",
    )
    .await;
    browser.fill("datadog-tags", "service:mine").await;
    save_is_refused_at(
        &browser,
        "datadog-tags",
        "must not use the key source, service",
    )
    .await;
    reopen(&browser, &base).await;
    assert_eq!(
        browser.value("datadog-tags").await,
        "team:identity\nenv:prod"
    );
    browser.fill("datadog-tags", "").await;
    save(&browser).await;
    assert!(tags(&stored(&store, CONTROLS_PROJECT).await).is_empty());

    // Every field that can show an error is described by it, and by its help.
    let undescribed = browser
        .client
        .execute(
            "return [...document.querySelectorAll('input, select, textarea')]
               .filter(i => document.getElementById(`${i.id}-error`))
               .filter(i => {
                 const by = (i.getAttribute('aria-describedby') || '').split(' ');
                 return !by.includes(`${i.id}-error`)
                   || (document.getElementById(`${i.id}-help`) && !by.includes(`${i.id}-help`));
               })
               .map(i => i.id)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(undescribed, json!([]));
    browser.close().await;
}

/// The tenant and labels of a stored Loki stream.
fn loki_tenant_and_labels(config: &StreamConfig) -> (&Option<LokiTenantId>, &LokiLabels) {
    match &config.endpoint {
        Endpoint::GrafanaLoki {
            tenant_id, labels, ..
        } => (tenant_id, labels),
        other => panic!("{other:?}"),
    }
}

/// The SHA-256 of the page's assets (`functions/config-api/assets/`), files in name order,
/// as `make screenshot` records it: `cat assets/* | sha256sum`.
fn page_assets_sha256(root: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    let mut files: Vec<_> = std::fs::read_dir(root.join("functions/config-api/assets"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    let mut hash = Sha256::new();
    for file in files {
        hash.update(std::fs::read(file).unwrap());
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_readmes_screenshot_was_made_from_the_page_as_it_is() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let png = std::fs::read(root.join(SCREENSHOT)).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{SCREENSHOT} is not a PNG");
    let recorded = std::fs::read_to_string(root.join(SCREENSHOT_PAGE_SHA256)).unwrap();
    assert_eq!(
        recorded.trim(),
        page_assets_sha256(&root),
        "the page changed since {SCREENSHOT} was made: run `make screenshot` and commit it"
    );
}
