//! The config API router, called with `oneshot` as API Gateway and the local runner would.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use config_api::auth::{KeySource, ManagementKey, ManagementKeys};
use config_api::{AppState, app};
use event_log_streaming::destination::client::{ClientOptions, DestinationClient};
use event_log_streaming::domain::ProjectId;
use event_log_streaming::net::AddressPolicy;
use event_log_streaming::store::{CredentialStore, MemoryStateStore, StoreError, StreamWrite};
use failing_store::FailingStore;
use http_body_util::BodyExt;
use integration_tests::fake_destination::{FakeDestination, Script};
use integration_tests::fixtures::{labels, loopback_client};
use integration_tests::logs::capture_logs;
use integration_tests::moto::moto;
use integration_tests::venv_tool;
use serde_json::{Value, json};
use tower::ServiceExt;

use event_log_streaming::domain::{DestinationType, StreamConfig, StreamingStatus};
use event_log_streaming::store::StoredStream;

use crate::helpers::{DATADOG_KEY, LOKI_PASSWORD, LOKI_USER, StateEnv};

const ADMIN: (&str, &str) = ("key-admin", "admin-secret-Fixture-77");
const SCOPED: (&str, &str) = ("key-scoped", "scoped-secret-Fixture-88");
pub(crate) const COLLECTION: &str = "/v1/projects/proj-a/event_log_streaming";
/// The streamer's configuration cache TTL, by which an enable is dated ahead.
const START_DELAY: std::time::Duration = std::time::Duration::from_secs(30);

pub(crate) struct Api {
    pub(crate) router: Router,
}

pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
    pub(crate) headers: axum::http::HeaderMap,
}

fn keys() -> ManagementKeys {
    ManagementKeys::new(KeySource::Fixed(vec![
        ManagementKey::new(ADMIN.0, ADMIN.1, &["*"]),
        ManagementKey::new(SCOPED.0, SCOPED.1, &["proj-a"]),
    ]))
}

impl Api {
    pub(crate) fn with_stores(
        streams: Arc<dyn StreamWrite>,
        credentials: Arc<dyn CredentialStore>,
        datadog_intake_url: Option<String>,
    ) -> Self {
        Self::with_start_delay(streams, credentials, datadog_intake_url, START_DELAY)
    }

    pub(crate) fn with_start_delay(
        streams: Arc<dyn StreamWrite>,
        credentials: Arc<dyn CredentialStore>,
        datadog_intake_url: Option<String>,
        start_delay: std::time::Duration,
    ) -> Self {
        Self {
            router: app(AppState::new(
                streams,
                credentials,
                keys(),
                loopback_client(datadog_intake_url),
                labels(),
                start_delay,
            )),
        }
    }

    pub(crate) fn in_memory(datadog_intake_url: Option<String>) -> Self {
        let store = Arc::new(MemoryStateStore::new());
        Self::with_stores(store.clone(), store, datadog_intake_url)
    }

    fn new() -> Self {
        Self::in_memory(None)
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Answer {
            status,
            body,
            headers,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<(&str, &str)>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if let Some((id, secret)) = key {
            request = request.header(
                header::AUTHORIZATION,
                format!("Basic {}", BASE64.encode(format!("{id}:{secret}"))),
            );
        }
        let body = match body {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).unwrap()).await
    }

    pub(crate) async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        self.call(method, path, Some(ADMIN), body).await
    }
}

pub(crate) fn loki_body(hostname: &str, password: &str) -> Value {
    json!({
        "destination_type": "GRAFANA_LOKI",
        "destination_config": {"grafana_loki": {"hostname": hostname, "username": LOKI_USER, "password": password}}
    })
}

pub(crate) fn datadog_body(site: &str, api_key: &str) -> Value {
    json!({
        "destination_type": "DATADOG",
        "destination_config": {"datadog": {"site": site, "api_key": api_key}}
    })
}

/// DELETE answers 200, and a GET then finds nothing.
async fn deletes_and_is_gone(api: &Api, resource: &str) {
    let deleted = api.admin("DELETE", resource, None).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert_error(
        &api.admin("GET", resource, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

fn assert_error(answer: &Answer, status: StatusCode, error_type: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.body["status_code"], status.as_u16());
    assert_eq!(answer.body["error_type"], error_type, "{}", answer.body);
    assert!(
        answer.body["request_id"]
            .as_str()
            .unwrap()
            .starts_with("request-id-")
    );
    assert!(answer.body["error_message"].is_string());
}

#[tokio::test]
async fn a_configuration_goes_through_its_whole_lifecycle() {
    let api = Api::new();
    let resource = format!("{COLLECTION}/GRAFANA_LOKI");

    let created = api
        .admin(
            "POST",
            COLLECTION,
            Some(loki_body("logs-prod-021.grafana.net", LOKI_PASSWORD)),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["status_code"], 201);
    let config = &created.body["event_log_streaming_config"];
    assert_eq!(config["destination_type"], "GRAFANA_LOKI");
    assert_eq!(config["streaming_status"], "DISABLED");
    assert_eq!(config["enabled_at"], Value::Null);
    assert_eq!(config["suspended_at"], Value::Null);
    assert_eq!(config["suspended_reason"], Value::Null);
    assert_eq!(config["version"], 1);
    assert_eq!(
        config["delivery_health"],
        json!({"last_success_at": null, "last_failure_at": null, "consecutive_failures": 0,
               "last_error": null, "recent_errors": [], "events_delivered": 0, "events_failed": 0,
               "events_filtered": 0, "last_delivery_lag_ms": null, "last_delivery_lag_at": null})
    );
    assert_eq!(
        config["destination_config"],
        json!({"grafana_loki": {"hostname": "logs-prod-021.grafana.net", "username": LOKI_USER, "password_last_four": "4e1f"}})
    );

    let enabled = api
        .admin("POST", &format!("{resource}/enable"), Some(json!({})))
        .await;
    assert_eq!(enabled.status, StatusCode::OK);
    assert_eq!(enabled.body["status_code"], 200);
    let read = api.admin("GET", &resource, None).await;
    assert_eq!(
        read.body["event_log_streaming_config"]["streaming_status"],
        "ACTIVE"
    );
    assert_eq!(read.body["event_log_streaming_config"]["version"], 2);
    let enabled_at = read.body["event_log_streaming_config"]["enabled_at"].clone();
    // Dated one cache TTL ahead, so no streamer container still holds the disabled state.
    let starts = time::OffsetDateTime::parse(
        enabled_at.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let ahead = starts - time::OffsetDateTime::now_utc();
    assert!(
        ahead > time::Duration::seconds(25) && ahead <= time::Duration::seconds(30),
        "{ahead}"
    );

    // Enabling again keeps enabled_at; a body is optional.
    assert_eq!(
        api.admin("POST", &format!("{resource}/enable"), None)
            .await
            .status,
        StatusCode::OK
    );
    let read = api.admin("GET", &resource, None).await;
    assert_eq!(
        read.body["event_log_streaming_config"]["enabled_at"],
        enabled_at
    );

    assert_eq!(
        api.admin("POST", &format!("{resource}/disable"), Some(json!({})))
            .await
            .status,
        StatusCode::OK
    );
    let read = api.admin("GET", &resource, None).await;
    assert_eq!(
        read.body["event_log_streaming_config"]["streaming_status"],
        "DISABLED"
    );

    let updated = api
        .admin(
            "PUT",
            &resource,
            Some(json!({"destination_config": {"grafana_loki": {"hostname": "logs-prod-006.grafana.net", "username": "999", "password": "new-token-abcd"}}})),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    let config = &updated.body["event_log_streaming_config"];
    assert_eq!(
        config["destination_config"]["grafana_loki"]["password_last_four"],
        "abcd"
    );
    assert_eq!(config["streaming_status"], "DISABLED");

    let deleted = api.admin("DELETE", &resource, None).await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_eq!(deleted.body["status_code"], 200);
    assert_error(
        &api.admin("GET", &resource, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // Deleted at once: the project can configure another destination straight away.
    let again = api
        .admin("POST", COLLECTION, Some(datadog_body("EU", DATADOG_KEY)))
        .await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(
        again.body["event_log_streaming_config"]["destination_config"],
        json!({"datadog": {"site": "EU", "api_key_last_four": "1e42"}})
    );
}

#[tokio::test]
async fn invalid_destinations_get_field_level_messages() {
    let api = Api::new();
    let cases = [
        (
            datadog_body("MARS", DATADOG_KEY),
            "destination_config.datadog.site",
        ),
        (
            datadog_body("US", "not-a-key"),
            "destination_config.datadog.api_key",
        ),
        (
            loki_body("https://logs.grafana.net", "p"),
            "https:// is added for you",
        ),
        (
            loki_body("logs.grafana.net/loki/api/v1/push", "p"),
            "path /loki/api/v1/push is added",
        ),
        (
            loki_body("user:pw@logs.grafana.net", "p"),
            "must not contain credentials",
        ),
        (
            loki_body("logs.grafana.net", ""),
            "destination_config.grafana_loki.password",
        ),
        (
            json!({"destination_type": "GRAFANA_LOKI", "destination_config": {"grafana_loki": {"hostname": "h.example.com", "username": "", "password": "p"}}}),
            "destination_config.grafana_loki.username: must not be empty",
        ),
        (
            json!({"destination_type": "GRAFANA_LOKI", "destination_config": {"grafana_loki": {"hostname": "h.example.com", "username": "12:34", "password": "p"}}}),
            "destination_config.grafana_loki.username: must not contain ':'",
        ),
        (
            json!({"destination_type": "DATADOG", "destination_config": {"grafana_loki": {"hostname": "h.example.com", "username": "u", "password": "p"}}}),
            "must hold exactly the key datadog",
        ),
        (
            json!({"destination_type": "DATADOG", "destination_config": {
                "datadog": {"site": "US", "api_key": DATADOG_KEY},
                "grafana_loki": {"hostname": "h.example.com", "username": "u", "password": "p"}}}),
            "must hold exactly the key datadog",
        ),
        (
            json!({"destination_type": "DATADOG", "destination_config": {}}),
            "must hold exactly the key datadog",
        ),
        (
            json!({"destination_type": "SPLUNK", "destination_config": {}}),
            "destination_type: unknown variant `SPLUNK`",
        ),
        (
            json!({"destination_type": "DATADOG", "destination_config": {"datadog": {"site": "US", "api_key": DATADOG_KEY, "region": "x"}}}),
            "destination_config.datadog.region: unknown field `region`",
        ),
        (
            json!({"destination_type": "DATADOG"}),
            "missing field `destination_config`",
        ),
        (
            json!({"destination_type": "DATADOG", "destination_config": {"datadog": {"site": "US", "api_key": 42}}}),
            "destination_config.datadog.api_key: expected a string",
        ),
    ];
    for (body, expected) in cases {
        let answer = api.admin("POST", COLLECTION, Some(body.clone())).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_argument");
        let message = answer.body["error_message"].as_str().unwrap();
        assert!(message.contains(expected), "{body} gave {message:?}");
    }
    assert_error(
        &api.admin("GET", &format!("{COLLECTION}/GRAFANA_LOKI"), None)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn one_destination_per_project_and_paths_must_name_it() {
    let api = Api::new();
    assert_eq!(
        api.admin("POST", COLLECTION, Some(loki_body("h.example.com", "p")))
            .await
            .status,
        StatusCode::CREATED
    );

    assert_error(
        &api.admin("POST", COLLECTION, Some(datadog_body("US", DATADOG_KEY)))
            .await,
        StatusCode::CONFLICT,
        "conflict",
    );
    for (method, suffix) in [
        ("GET", ""),
        ("DELETE", ""),
        ("POST", "/enable"),
        ("POST", "/disable"),
        ("POST", "/test"),
    ] {
        let answer = api
            .admin(method, &format!("{COLLECTION}/DATADOG{suffix}"), None)
            .await;
        assert_error(&answer, StatusCode::NOT_FOUND, "not_found");
    }
    let answer = api
        .admin(
            "PUT",
            &format!("{COLLECTION}/DATADOG"),
            Some(
                json!({"destination_config": {"datadog": {"site": "US", "api_key": DATADOG_KEY}}}),
            ),
        )
        .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found");
    assert_error(
        &api.admin("GET", &format!("{COLLECTION}/SPLUNK"), None)
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
    );
    assert_error(
        &api.admin(
            "GET",
            "/v1/projects/bad%20id/event_log_streaming/DATADOG",
            None,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
    );
    assert_error(
        &api.admin("GET", "/v1/nowhere", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &api.admin("PATCH", COLLECTION, None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    // Enable takes {} or nothing.
    let answer = api
        .admin(
            "POST",
            &format!("{COLLECTION}/GRAFANA_LOKI/enable"),
            Some(json!({"backfill": true})),
        )
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_argument");
}

#[tokio::test]
async fn management_keys_authenticate_and_are_scoped_to_projects() {
    let api = Api::new();
    let body = Some(loki_body("h.example.com", "p"));

    let missing = api.call("POST", COLLECTION, None, body.clone()).await;
    assert_error(
        &missing,
        StatusCode::UNAUTHORIZED,
        "unauthorized_credentials",
    );
    assert_eq!(
        missing.headers[header::WWW_AUTHENTICATE],
        r#"Basic realm="event-log-streaming""#
    );
    let wrong = api
        .call("POST", COLLECTION, Some((ADMIN.0, "guess")), body.clone())
        .await;
    assert_error(&wrong, StatusCode::UNAUTHORIZED, "unauthorized_credentials");
    let unknown = api
        .call("POST", COLLECTION, Some(("nobody", ADMIN.1)), body.clone())
        .await;
    assert_error(
        &unknown,
        StatusCode::UNAUTHORIZED,
        "unauthorized_credentials",
    );

    let other_project = api
        .call(
            "POST",
            "/v1/projects/proj-b/event_log_streaming",
            Some(SCOPED),
            body.clone(),
        )
        .await;
    assert_error(&other_project, StatusCode::FORBIDDEN, "forbidden");
    let own_project = api.call("POST", COLLECTION, Some(SCOPED), body).await;
    assert_eq!(own_project.status, StatusCode::CREATED);
}

#[tokio::test]
async fn bodies_must_be_json_and_at_most_64_kb() {
    let api = Api::new();
    let text = Request::post(COLLECTION)
        .header(
            header::AUTHORIZATION,
            format!(
                "Basic {}",
                BASE64.encode(format!("{}:{}", ADMIN.0, ADMIN.1))
            ),
        )
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("destination_type=DATADOG"))
        .unwrap();
    assert_error(
        &api.send(text).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );

    let mut huge = loki_body("h.example.com", "p");
    huge["destination_config"]["grafana_loki"]["username"] = json!("u".repeat(70 * 1024));
    assert_error(
        &api.admin("POST", COLLECTION, Some(huge)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );

    let broken = Request::post(COLLECTION)
        .header(
            header::AUTHORIZATION,
            format!(
                "Basic {}",
                BASE64.encode(format!("{}:{}", ADMIN.0, ADMIN.1))
            ),
        )
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(r#"{"destination_type": "DATADOG", "#))
        .unwrap();
    assert_error(
        &api.send(broken).await,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
    );
}

/// A request as a careless or hostile client would send it: any body, any headers.
fn raw_request(method: &str, path: &str, body: &str, content_length: Option<u64>) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(
            header::AUTHORIZATION,
            format!(
                "Basic {}",
                BASE64.encode(format!("{}:{}", ADMIN.0, ADMIN.1))
            ),
        )
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(length) = content_length {
        request = request.header(header::CONTENT_LENGTH, length);
    }
    request.body(Body::from(body.to_owned())).unwrap()
}

#[tokio::test]
async fn bodies_are_one_json_object_with_objects_where_objects_belong() {
    let api = Api::new();
    let loki = loki_body("logs-prod-021.grafana.net", LOKI_PASSWORD).to_string();
    api.admin(
        "POST",
        "/v1/projects/proj-b/event_log_streaming",
        Some(loki_body("logs-prod-021.grafana.net", LOKI_PASSWORD)),
    )
    .await;
    let resource = "/v1/projects/proj-b/event_log_streaming/GRAFANA_LOKI";
    // (method, path, body, declared length, status, error_type, message)
    type Case<'a> = (
        &'a str,
        &'a str,
        String,
        Option<u64>,
        StatusCode,
        &'a str,
        &'a str,
    );
    let table: Vec<Case> = vec![
        ("POST", COLLECTION, format!("{loki}xyz"), None, StatusCode::BAD_REQUEST, "invalid_argument", "the body must be one JSON value"),
        ("POST", COLLECTION, format!("{loki}{loki}"), None, StatusCode::BAD_REQUEST, "invalid_argument", "the body must be one JSON value"),
        ("POST", COLLECTION, format!("[{loki}]"), None, StatusCode::BAD_REQUEST, "invalid_argument", "the body must be a JSON object"),
        (
            "POST",
            COLLECTION,
            r#"{"destination_type":"GRAFANA_LOKI","destination_config":{"grafana_loki":["logs-prod-021.grafana.net","u","p"]}}"#.into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "destination_config.grafana_loki: must be a JSON object or a string, not an array",
        ),
        (
            "PUT",
            resource,
            r#"{"destination_config":[{"grafana_loki":{}}]}"#.into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "destination_config: must be a JSON object or a string, not an array",
        ),
        ("POST", "/v1/projects/proj-b/event_log_streaming/GRAFANA_LOKI/enable", "[]".into(), None, StatusCode::BAD_REQUEST, "invalid_argument", "the body must be a JSON object"),
        ("POST", "/v1/projects/proj-b/event_log_streaming/GRAFANA_LOKI/disable", "{} []".into(), None, StatusCode::BAD_REQUEST, "invalid_argument", "the body must be one JSON value"),
        // Declared far larger than the limit, and never sent: answered at once.
        ("POST", COLLECTION, String::new(), Some(10_000_000_000), StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "larger than 64 KB"),
        ("POST", "/v1/projects/./event_log_streaming", loki.clone(), None, StatusCode::BAD_REQUEST, "invalid_argument", "project_id: must not consist of dots only"),
        ("GET", "/v1/projects/../event_log_streaming/GRAFANA_LOKI", String::new(), None, StatusCode::BAD_REQUEST, "invalid_argument", "project_id: must not consist of dots only"),
        ("GET", "/v1/projects/%2e%2e/event_log_streaming/GRAFANA_LOKI", String::new(), None, StatusCode::BAD_REQUEST, "invalid_argument", "project_id: must not consist of dots only"),
    ];
    for (method, path, body, length, status, error_type, message) in table {
        let answer = api.send(raw_request(method, path, &body, length)).await;
        assert_error(&answer, status, error_type);
        let text = answer.body["error_message"].as_str().unwrap();
        assert!(text.contains(message), "{method} {path} {body}: {text}");
    }
    // Nothing of that changed the stream.
    let read = api.admin("GET", resource, None).await;
    assert_eq!(read.body["event_log_streaming_config"]["version"], 1);
}

#[tokio::test]
async fn a_field_given_twice_is_refused_in_every_body_by_name_and_neither_value_is_echoed() {
    let api = Api::new();
    let resource = format!("{COLLECTION}/GRAFANA_LOKI");
    let created = api
        .admin(
            "POST",
            COLLECTION,
            Some(loki_body("h.example.com", LOKI_PASSWORD)),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    // (method, path, body, the field named)
    let table = [
        (
            "POST",
            "/v1/projects/proj-b/event_log_streaming".to_owned(),
            r#"{"destination_type":"GRAFANA_LOKI","destination_config":{"grafana_loki":{"hostname":"h.example.com","username":"u","password":"first-token-1111","password":"second-token-2222"}}}"#,
            "destination_config.grafana_loki.password",
        ),
        (
            "PUT",
            resource.clone(),
            r#"{"destination_config":{"grafana_loki":{"hostname":"h.example.com","hostname":"first-token-1111.example.com","username":"u"}}}"#,
            "destination_config.grafana_loki.hostname",
        ),
        (
            "POST",
            "/v1/projects/proj-b/event_log_streaming".to_owned(),
            r#"{"destination_type":"DATADOG","destination_type":"GRAFANA_LOKI","destination_config":{"grafana_loki":{"hostname":"h.example.com","username":"u","password":"second-token-2222"}}}"#,
            "destination_type",
        ),
        (
            "POST",
            format!("{resource}/enable"),
            r#"{"first-token-1111":{},"first-token-1111":{}}"#,
            "first-token-1111",
        ),
    ];
    for (method, path, body, field) in table {
        let answer = api.send(raw_request(method, &path, body, None)).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_argument");
        let text = answer.body["error_message"].as_str().unwrap();
        assert_eq!(text, format!("{field}: given more than once"), "{body}");
        assert!(!answer.body.to_string().contains("second-token-2222"));
    }
    // Nothing of that changed the stream or made another.
    let read = api.admin("GET", &resource, None).await;
    assert_eq!(read.body["event_log_streaming_config"]["version"], 1);
    assert_error(
        &api.admin(
            "GET",
            "/v1/projects/proj-b/event_log_streaming/GRAFANA_LOKI",
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

mod failing_store {
    use event_log_streaming::domain::StreamSecret;
    use event_log_streaming::domain::{CredentialRef, StreamConfig};
    use event_log_streaming::store::{CredentialRead, CredentialWrite, StoredStream};

    use super::*;

    /// A store whose every call fails with the error it was made with.
    pub struct FailingStore(pub fn() -> StoreError);

    /// Throttling or an outage, with a cause that must stay in the logs.
    pub fn outage() -> StoreError {
        StoreError::unavailable(
            "DynamoDB GetItem",
            "dispatch failure: io error: connection refused (os error 111) at internal-host-17",
        )
    }

    /// A stored record that does not parse.
    pub fn corrupt() -> StoreError {
        StoreError::Corrupt("attribute version of internal-host-17 is not a number".into())
    }

    #[async_trait::async_trait]
    impl StreamWrite for FailingStore {
        async fn get(&self, _: &ProjectId) -> Result<Option<StoredStream>, StoreError> {
            Err((self.0)())
        }
        async fn create(&self, _: &StreamConfig) -> Result<(), StoreError> {
            Err((self.0)())
        }
        async fn update(&self, _: &StreamConfig, _: u64) -> Result<(), StoreError> {
            Err((self.0)())
        }
        async fn delete(&self, _: &ProjectId, _: u64) -> Result<(), StoreError> {
            Err((self.0)())
        }
    }

    #[async_trait::async_trait]
    impl CredentialRead for FailingStore {
        async fn get(&self, _: &CredentialRef) -> Result<StreamSecret, StoreError> {
            Err((self.0)())
        }
    }

    #[async_trait::async_trait]
    impl CredentialWrite for FailingStore {
        async fn create_secret(
            &self,
            _: &ProjectId,
            _: &str,
            _: &StreamSecret,
        ) -> Result<CredentialRef, StoreError> {
            Err((self.0)())
        }
        async fn put_version(
            &self,
            _: &str,
            _: &StreamSecret,
        ) -> Result<CredentialRef, StoreError> {
            Err((self.0)())
        }
        async fn delete_secret(&self, _: &str) -> Result<(), StoreError> {
            Err((self.0)())
        }
    }
}

#[tokio::test]
async fn a_store_outage_is_a_503_that_says_to_send_again_and_reveals_nothing() {
    let failing = || Arc::new(FailingStore(failing_store::outage));
    let api = Api::with_stores(failing(), failing(), None);
    let (logs, _guard) = capture_logs();

    let created = api
        .admin("POST", COLLECTION, Some(loki_body("h.example.com", "p")))
        .await;
    let read = api
        .admin("GET", &format!("{COLLECTION}/GRAFANA_LOKI"), None)
        .await;

    for answer in [&created, &read] {
        assert_error(
            answer,
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
        );
        assert_eq!(
            answer.body["error_message"],
            "the configuration store cannot be reached right now; send the request again in a few seconds"
        );
        assert_eq!(answer.headers[header::RETRY_AFTER], "5");
        assert!(!answer.body.to_string().contains("internal-host-17"));
        // The id the client is given finds the operator's log line with the cause.
        let request_id = answer.body["request_id"].as_str().unwrap();
        let logged = logs
            .lines()
            .into_iter()
            .find(|line| line.to_string().contains(request_id))
            .unwrap_or_else(|| panic!("no log line carries {request_id}"));
        assert_eq!(
            logged["fields"]["message"],
            "configuration store unavailable"
        );
        assert_eq!(logged["fields"]["request_id"], request_id);
        assert!(logged.to_string().contains("internal-host-17"));
    }
    assert!(
        logs.text().contains("internal-host-17"),
        "the cause is logged for operators"
    );
}

#[tokio::test]
async fn a_delete_whose_secret_cannot_be_deleted_changes_nothing_and_may_be_sent_again() {
    let store = Arc::new(MemoryStateStore::new());
    let api = Api::with_stores(store.clone(), store.clone(), None);
    let resource = format!("{COLLECTION}/GRAFANA_LOKI");
    api.admin(
        "POST",
        COLLECTION,
        Some(loki_body("h.example.com", LOKI_PASSWORD)),
    )
    .await;
    let secrets_down = Api::with_stores(
        store.clone(),
        Arc::new(FailingStore(failing_store::outage)),
        None,
    );

    let deleted = secrets_down.admin("DELETE", &resource, None).await;

    assert_error(
        &deleted,
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
    );
    let read = api.admin("GET", &resource, None).await;
    assert_eq!(read.status, StatusCode::OK, "the stream is still there");
    deletes_and_is_gone(&api, &resource).await;
}

/// A stream updated by someone else just before the first delete of it lands.
struct UpdatedDuringDelete {
    store: Arc<MemoryStateStore>,
    overtaken: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl StreamWrite for UpdatedDuringDelete {
    async fn get(&self, project: &ProjectId) -> Result<Option<StoredStream>, StoreError> {
        self.store.get(project).await
    }
    async fn create(&self, config: &StreamConfig) -> Result<(), StoreError> {
        self.store.create(config).await
    }
    async fn update(&self, config: &StreamConfig, expected_version: u64) -> Result<(), StoreError> {
        self.store.update(config, expected_version).await
    }
    async fn delete(&self, project: &ProjectId, version: u64) -> Result<(), StoreError> {
        if !self
            .overtaken
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let stored = self.store.get(project).await?.unwrap();
            let next = stored.config.next_version(time::OffsetDateTime::now_utc());
            self.store.update(&next, stored.config.version).await?;
        }
        self.store.delete(project, version).await
    }
}

#[tokio::test]
async fn a_delete_overtaken_by_an_update_reads_the_stream_again_and_deletes_it() {
    let store = Arc::new(MemoryStateStore::new());
    let streams = Arc::new(UpdatedDuringDelete {
        store: store.clone(),
        overtaken: false.into(),
    });
    let api = Api::with_stores(streams, store.clone(), None);
    let resource = format!("{COLLECTION}/GRAFANA_LOKI");
    api.admin(
        "POST",
        COLLECTION,
        Some(loki_body("h.example.com", LOKI_PASSWORD)),
    )
    .await;

    deletes_and_is_gone(&api, &resource).await;
}

#[tokio::test]
async fn a_corrupt_stored_record_is_a_500_that_reveals_nothing() {
    let failing = || Arc::new(FailingStore(failing_store::corrupt));
    let api = Api::with_stores(failing(), failing(), None);
    let (logs, _guard) = capture_logs();

    let read = api
        .admin("GET", &format!("{COLLECTION}/GRAFANA_LOKI"), None)
        .await;

    assert_error(&read, StatusCode::INTERNAL_SERVER_ERROR, "internal_error");
    assert_eq!(read.body["error_message"], "internal error");
    assert!(read.headers.get(header::RETRY_AFTER).is_none());
    assert!(!read.body.to_string().contains("internal-host-17"));
    assert!(logs.text().contains("internal-host-17"));
}

/// Every destination type: a new one does not compile here until it is listed.
fn every_destination_type() -> [DestinationType; 2] {
    let all = [DestinationType::GrafanaLoki, DestinationType::Datadog];
    for kind in all {
        match kind {
            DestinationType::GrafanaLoki | DestinationType::Datadog => {}
        }
    }
    all
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_exists() {
    let document: Value =
        serde_json::from_str(include_str!("../../../functions/config-api/openapi.json")).unwrap();
    let mut documented = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                documented.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    documented.sort();

    // The document names each destination type's resource on a path of its own (so that
    // each update's schema holds only that type's key): a route with `{destination_type}`
    // is expected there once per type, and probed on each. Probe the router: a routed
    // method answers 401 (unauthenticated), another one 405.
    let api = Api::new();
    let mut routed = Vec::new();
    for (route, _) in config_api::routes() {
        let paths: Vec<String> = if route.contains("{destination_type}") {
            every_destination_type()
                .iter()
                .map(|kind| route.replace("{destination_type}", kind.as_str()))
                .collect()
        } else {
            vec![route.to_string()]
        };
        for path in paths {
            let concrete = path.replace("{project_id}", "p");
            for method in ["GET", "PUT", "POST", "DELETE", "PATCH"] {
                let answer = api.call(method, &concrete, None, None).await;
                match answer.status {
                    StatusCode::UNAUTHORIZED => routed.push(format!("{method} {path}")),
                    StatusCode::METHOD_NOT_ALLOWED => {}
                    other => panic!("{method} {concrete} answered {other}"),
                }
            }
        }
    }
    routed.sort();
    assert_eq!(routed, documented);
}

/// The API as a property-based tester sees it: schemathesis generates requests from the
/// OpenAPI document (valid ones, invalid ones, and the create → read, update, enable, disable,
/// delete chains its links describe) and sends them to the API served on a loopback port, on
/// the emulator's table and secrets. It fails on any 5xx, a status, content type or body the
/// document does not declare, a schema-invalid request that is not refused with a 4xx, a
/// schema-valid one that is refused with a 400, or a request without the management key that
/// is not refused. A create links to both destination types' operations (a link cannot depend
/// on the body), so the check that a created resource is found runs on the created type's
/// operations only (`contract_hooks.py`).
///
/// The API here allows private destinations, as in development: the operator's rules that no
/// JSON Schema can say (a Loki hostname ends in a public suffix, its port is on the allow-list)
/// are off, so the document's syntax is the whole rule. One rule of a Loki update depends on
/// more than its body (the password is needed when the hostname changes, which depends on the
/// stored configuration), so valid Loki updates are not required to be accepted; each type's
/// update has its own path and schema, so a key that does not match the path is schema-invalid
/// and every valid Datadog update must be accepted. `/test` is
/// left out because it would push to the random public hosts generated; tests reach loopback
/// only.
#[tokio::test(flavor = "multi_thread")]
async fn the_api_answers_as_its_openapi_document_says() {
    let state = StateEnv::new().await;
    let api = Api::with_stores(state.streams.clone(), state.credentials.clone(), None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, api.router).await.unwrap() });

    let document = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../functions/config-api/openapi.json"
    );
    let auth = format!("{}:{}", ADMIN.0, ADMIN.1);
    let seed = std::env::var("CONTRACT_SEED").unwrap_or_else(|_| "20261126".into());
    let config = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("schemathesis.toml");
    std::fs::write(
        &config,
        concat!(
            // contract_hooks.py runs it on the created destination type's operations only.
            "[checks]\nensure_resource_availability.enabled = false\n",
            "[[operations]]\ninclude-operation-id = \"updateGrafanaLokiEventLogStreaming\"\n",
            "checks.positive_data_acceptance.enabled = false\n",
        ),
    )
    .unwrap();
    let hooks = concat!(env!("CARGO_MANIFEST_DIR"), "/contract_hooks.py");
    let run = || {
        std::process::Command::new(venv_tool("schemathesis", "SCHEMATHESIS"))
            .env("SCHEMATHESIS_HOOKS", hooks)
            .arg("--config-file")
            .arg(&config)
            .args(["run", document, "--url", &base, "--auth", &auth])
            .args(["--exclude-path-regex", "/test$"])
            // The same cases on every run, so that a failure reproduces; CONTRACT_SEED explores.
            .args(["--seed", &seed, "--max-examples", "60"])
            .args(["--generation-database", "none", "--no-color"])
            .current_dir(env!("CARGO_TARGET_TMPDIR"))
            .output()
    };
    // The server answers on the runtime's other threads while this one waits.
    let output = tokio::task::block_in_place(run).unwrap();

    // Shown with --nocapture: what was covered (operations, links, scenarios).
    println!("{}", String::from_utf8_lossy(&output.stdout));
    assert!(
        output.status.success(),
        "schemathesis found answers that break the OpenAPI document:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn an_api_gateway_http_api_event_is_served_through_lambda_http() {
    let api = Api::new();
    let request =
        lambda_http::request::from_str(include_str!("../../fixtures/apigw_v2_create.json"))
            .unwrap();

    let response = api.router.clone().oneshot(request).await.unwrap();

    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        body["event_log_streaming_config"]["destination_config"]["datadog"]["site"],
        "EU"
    );
}

#[tokio::test]
async fn the_table_and_credential_secrets_work_against_the_emulator() {
    let state = StateEnv::new().await;
    let api = Api::with_stores(state.streams.clone(), state.credentials.clone(), None);
    let resource = format!("{COLLECTION}/GRAFANA_LOKI");
    let aws = moto().sdk_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);

    assert_eq!(
        api.admin(
            "POST",
            COLLECTION,
            Some(loki_body("h.example.com", LOKI_PASSWORD))
        )
        .await
        .status,
        StatusCode::CREATED
    );
    assert_error(
        &api.admin("POST", COLLECTION, Some(datadog_body("US", DATADOG_KEY)))
            .await,
        StatusCode::CONFLICT,
        "conflict",
    );
    assert_eq!(
        api.admin("POST", &format!("{resource}/enable"), None)
            .await
            .status,
        StatusCode::OK
    );

    let stored = state.stored("proj-a").await.unwrap();
    assert_eq!(stored.config.state.status, StreamingStatus::Active);
    assert_eq!(stored.config.version, 2);
    // The stream's own secret, named by its identity.
    let secret_name = stored.config.credential.secret_id.clone();
    assert_eq!(
        secret_name,
        format!("{}proj-a/{}", state.prefix, stored.config.stream_id)
    );
    // The secret holds the credential and the stream's redaction key (64 hex digits); the
    // item refers to its version and holds neither.
    let current = secrets
        .get_secret_value()
        .secret_id(&secret_name)
        .send()
        .await
        .unwrap();
    let held: Value = serde_json::from_str(current.secret_string().unwrap()).unwrap();
    assert_eq!(held["credential"], LOKI_PASSWORD);
    let key = held["redaction_key"].as_str().unwrap();
    assert!(key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(held.as_object().unwrap().len(), 2);
    assert_eq!(
        current.version_id().unwrap(),
        stored.config.credential.version_id
    );
    let item = state.raw_item("proj-a").await;
    assert!(!format!("{item:?}").contains(LOKI_PASSWORD));
    assert_eq!(item["hostname"].as_s().unwrap(), "h.example.com");
    let described = secrets
        .describe_secret()
        .secret_id(&secret_name)
        .send()
        .await
        .unwrap();
    let tags: Vec<(String, String)> = described
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
        .collect();
    assert_eq!(tags, [("project_id".into(), "proj-a".into())]);

    // DELETE removes the item and the secret, at once.
    deletes_and_is_gone(&api, &resource).await;
    assert!(state.stored("proj-a").await.is_none());
    assert!(
        secrets
            .describe_secret()
            .secret_id(&secret_name)
            .send()
            .await
            .is_err(),
        "the credential secret is deleted"
    );
    assert_eq!(
        api.admin("POST", COLLECTION, Some(datadog_body("US", DATADOG_KEY)))
            .await
            .status,
        StatusCode::CREATED
    );
}

/// Lets another writer change the stream between the handler's read and its write.
struct RacingStore {
    inner: Arc<MemoryStateStore>,
}

#[async_trait::async_trait]
impl StreamWrite for RacingStore {
    async fn get(&self, project: &ProjectId) -> Result<Option<StoredStream>, StoreError> {
        StreamWrite::get(self.inner.as_ref(), project).await
    }
    async fn create(&self, config: &StreamConfig) -> Result<(), StoreError> {
        self.inner.create(config).await
    }
    async fn update(&self, config: &StreamConfig, expected_version: u64) -> Result<(), StoreError> {
        let current = StreamWrite::get(self.inner.as_ref(), &config.project_id)
            .await?
            .unwrap();
        let other = current.config.next_version(current.config.updated_at);
        self.inner.update(&other, current.config.version).await?;
        self.inner.update(config, expected_version).await
    }
    async fn delete(&self, project: &ProjectId, expected_version: u64) -> Result<(), StoreError> {
        StreamWrite::delete(self.inner.as_ref(), project, expected_version).await
    }
}

#[tokio::test]
async fn a_write_that_lost_a_race_is_a_409_and_changes_nothing() {
    let memory = Arc::new(MemoryStateStore::new());
    let api = Api::with_stores(
        Arc::new(RacingStore {
            inner: memory.clone(),
        }),
        memory.clone(),
        None,
    );
    let resource = format!("{COLLECTION}/DATADOG");
    api.admin("POST", COLLECTION, Some(datadog_body("US", DATADOG_KEY)))
        .await;

    let enabled = api.admin("POST", &format!("{resource}/enable"), None).await;
    assert_error(&enabled, StatusCode::CONFLICT, "conflict");
    assert!(
        enabled.body["error_message"]
            .as_str()
            .unwrap()
            .contains("read it again and retry")
    );
    let updated = api
        .admin(
            "PUT",
            &resource,
            Some(
                json!({"destination_config": {"datadog": {"site": "EU", "api_key": DATADOG_KEY}}}),
            ),
        )
        .await;
    assert_error(&updated, StatusCode::CONFLICT, "conflict");
    let read = api.admin("GET", &resource, None).await;
    let config = &read.body["event_log_streaming_config"];
    assert_eq!(config["streaming_status"], "DISABLED");
    assert_eq!(config["destination_config"]["datadog"]["site"], "US");
    // Only the other writer's two changes landed.
    assert_eq!(config["version"], 3);
}

#[tokio::test]
async fn the_test_endpoint_reports_what_the_destination_answered() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let datadog = FakeDestination::datadog(DATADOG_KEY).await;
    let api = Api::in_memory(Some(datadog.base_url()));

    api.admin(
        "POST",
        COLLECTION,
        Some(loki_body(&loki.hostname(), LOKI_PASSWORD)),
    )
    .await;
    let ok = api
        .admin("POST", &format!("{COLLECTION}/GRAFANA_LOKI/test"), None)
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["delivered"], true);
    assert_eq!(ok.body["destination_status"], 204);
    let accepted = loki.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].field("action"), "EventLogStreamingTest");
    assert_eq!(accepted[0].field("project_id"), "proj-a");
    assert_eq!(loki.violations(), Vec::<String>::new());

    // Wrong token: the customer is told what to check.
    let resource = format!("{COLLECTION}/GRAFANA_LOKI");
    api.admin(
        "PUT",
        &resource,
        Some(json!({"destination_config": {"grafana_loki": {"hostname": loki.hostname(), "username": LOKI_USER, "password": "wrong-token"}}})),
    )
    .await;
    let denied = api.admin("POST", &format!("{resource}/test"), None).await;
    assert_eq!(denied.body["delivered"], false);
    assert_eq!(denied.body["destination_status"], 401);
    assert!(
        denied.body["message"]
            .as_str()
            .unwrap()
            .contains("check the username and token"),
        "{}",
        denied.body
    );

    // Nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    api.admin(
        "PUT",
        &resource,
        Some(json!({"destination_config": {"grafana_loki": {"hostname": format!("localhost:{closed}"), "username": LOKI_USER, "password": LOKI_PASSWORD}}})),
    )
    .await;
    let unreachable = api.admin("POST", &format!("{resource}/test"), None).await;
    assert_eq!(unreachable.body["delivered"], false);
    assert_eq!(unreachable.body["destination_status"], Value::Null);
    assert_eq!(
        unreachable.body["message"],
        "Grafana Loki refused the connection: check the hostname and the port"
    );
    assert!(
        !unreachable.body.to_string().contains("os error"),
        "{}",
        unreachable.body
    );

    api.admin("DELETE", &resource, None).await;
    api.admin("POST", COLLECTION, Some(datadog_body("US", DATADOG_KEY)))
        .await;
    let datadog_ok = api
        .admin("POST", &format!("{COLLECTION}/DATADOG/test"), None)
        .await;
    assert_eq!(datadog_ok.body["delivered"], true, "{}", datadog_ok.body);
    assert_eq!(datadog_ok.body["destination_status"], 202);
    assert_eq!(datadog.accepted()[0].meta["ddtags"], "project_id:proj-a");
}

#[tokio::test]
async fn no_answer_or_log_line_contains_a_secret() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let api = Api::new();
    let (logs, _guard) = capture_logs();
    let resource = format!("{COLLECTION}/GRAFANA_LOKI");
    let wrong_password = "glc_WRONG-password-SECRET-5150";
    let mut answers = vec![
        api.admin("POST", COLLECTION, Some(loki_body(&loki.hostname(), LOKI_PASSWORD))).await,
        api.admin("GET", &resource, None).await,
        api.admin("POST", &format!("{resource}/test"), None).await,
        api.admin("PUT", &resource, Some(json!({"destination_config": {"grafana_loki": {"hostname": loki.hostname(), "username": LOKI_USER, "password": wrong_password}}}))).await,
        api.admin("POST", &format!("{resource}/test"), None).await,
        api.admin("POST", &format!("{resource}/enable"), None).await,
        api.admin("POST", COLLECTION, Some(datadog_body("US", DATADOG_KEY))).await,
        api.call("GET", &resource, Some((ADMIN.0, "not-the-secret-9d9d")), None).await,
    ];
    // Invalid bodies that carry secrets must not echo them either.
    answers.push(
        api.admin(
            "POST",
            "/v1/projects/proj-z/event_log_streaming",
            Some(datadog_body("MARS", DATADOG_KEY)),
        )
        .await,
    );
    answers.push(
        api.admin(
            "POST",
            "/v1/projects/proj-z/event_log_streaming",
            Some(json!({"destination_type": "DATADOG", "destination_config": DATADOG_KEY})),
        )
        .await,
    );
    answers.push(api.admin("POST", "/v1/projects/proj-z/event_log_streaming", Some(json!({"destination_type": "DATADOG", "destination_config": {"datadog": {"site": "US", "api_key": "0123456789ABCDEF-SECRET-KEY-0000"}}}))).await);

    let secrets = [
        LOKI_PASSWORD,
        wrong_password,
        DATADOG_KEY,
        ADMIN.1,
        "not-the-secret-9d9d",
        "0123456789ABCDEF-SECRET-KEY-0000",
    ];
    for answer in &answers {
        let text = answer.body.to_string();
        for secret in secrets {
            assert!(
                !text.contains(secret),
                "an answer contains a secret: {text}"
            );
        }
    }
    let text = logs.text();
    for secret in secrets {
        // The line is shown with the secret masked, to find where it leaked from.
        let leaked: Vec<String> = text
            .lines()
            .filter(|l| l.contains(secret))
            .map(|l| l.replace(secret, "<SECRET>"))
            .collect();
        assert!(leaked.is_empty(), "the logs contain a secret: {leaked:#?}");
    }
    assert!(
        logs.lines()
            .iter()
            .any(|l| l["fields"]["message"] == "configuration changed"
                && l["fields"]["key_id"] == ADMIN.0
                && l["fields"]["operation"] == "create"
                && l["fields"]["project_id"] == "proj-a"),
        "changes are audited with the key id"
    );
}

fn api_with_policy(allow_private: bool) -> Api {
    let client = DestinationClient::new(ClientOptions {
        policy: AddressPolicy { allow_private },
        extra_ca_pem: None,
        datadog_intake_url: None,
        allowed_ports: vec![3100, 8443],
    })
    .unwrap();
    let store = Arc::new(MemoryStateStore::new());
    Api {
        router: app(AppState::new(
            store.clone(),
            store,
            keys(),
            client,
            labels(),
            START_DELAY,
        )),
    }
}

#[tokio::test]
async fn loki_hostnames_must_be_public_names_on_allowed_ports() {
    const PRIVATE: &str = "must be reachable on the public internet";
    const SUFFIX: &str = "must be a host name that ends in a public suffix";
    const PORT: &str = "port 22 is not allowed; the allowed ports are 443, 3100, 8443";
    const SYNTAX: &str = "has an invalid port";
    // (hostname, refused with this message under the production policy, or None)
    let table: &[(&str, Option<&str>)] = &[
        ("169.254.169.254", Some(PRIVATE)),
        ("10.0.0.1:3100", Some(PRIVATE)),
        ("localhost:3100", Some(PRIVATE)),
        ("127.0.0.1", Some(PRIVATE)),
        ("metadata.google.internal", Some(SUFFIX)),
        ("metadata", Some(SUFFIX)),
        ("loki.corp.internal", Some(SUFFIX)),
        ("loki.local", Some(SUFFIX)),
        ("nas.lan", Some(SUFFIX)),
        ("router.home.arpa", Some(SUFFIX)),
        ("loki.example.test", Some(SUFFIX)),
        ("34.120.1.1", Some(SUFFIX)),
        ("logs-prod-021.grafana.net:22", Some(PORT)),
        ("logs-prod-021.grafana.net:+443", Some(SYNTAX)),
        ("logs-prod-021.grafana.net:0443", Some(SYNTAX)),
        ("logs-prod-021.grafana.net", None),
        ("logs-prod-021.grafana.net:443", None),
        ("loki.example.co.uk:3100", None),
        ("loki.example.com:8443", None),
    ];
    for (hostname, refusal) in table {
        let api = api_with_policy(false);
        let answer = api
            .admin("POST", COLLECTION, Some(loki_body(hostname, "p")))
            .await;
        match refusal {
            Some(message) => {
                assert_error(&answer, StatusCode::BAD_REQUEST, "invalid_argument");
                let text = answer.body["error_message"].as_str().unwrap();
                assert!(
                    text.starts_with("destination_config.grafana_loki.hostname: "),
                    "{hostname}: {text}"
                );
                assert!(text.contains(message), "{hostname}: {text}");
            }
            None => assert_eq!(
                answer.status,
                StatusCode::CREATED,
                "{hostname}: {}",
                answer.body
            ),
        }
        // Development and tests relax the name, address and port rules, not the syntax.
        let relaxed = api_with_policy(true)
            .admin("POST", COLLECTION, Some(loki_body(hostname, "p")))
            .await;
        let expected = if *refusal == Some(SYNTAX) {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::CREATED
        };
        assert_eq!(
            relaxed.status, expected,
            "{hostname} relaxed: {}",
            relaxed.body
        );
    }
}

#[tokio::test]
async fn the_test_endpoint_answers_in_its_own_words_whatever_the_far_side_says() {
    let loki = FakeDestination::loki(LOKI_USER, LOKI_PASSWORD).await;
    let api = Api::new();
    let resource = format!("{COLLECTION}/GRAFANA_LOKI");
    let configure = |hostname: String| {
        let api = &api;
        let resource = resource.clone();
        async move {
            let body = json!({"destination_config": {"grafana_loki": {
                "hostname": hostname, "username": LOKI_USER, "password": LOKI_PASSWORD}}});
            api.admin("PUT", &resource, Some(body)).await
        }
    };
    api.admin(
        "POST",
        COLLECTION,
        Some(loki_body(&loki.hostname(), LOKI_PASSWORD)),
    )
    .await;
    loki.script([
        Script::Status(
            502,
            "<html><head><title>502 Bad Gateway</title></head></html>",
        ),
        Script::Status(400, "entry for stream has timestamp too old"),
        Script::Reset,
    ]);
    // A TLS handshake with a server that does not speak TLS.
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_port = plain.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut socket, _)) = plain.accept().await {
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi")
                .await;
        }
    });

    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(
            api.admin("POST", &format!("{resource}/test"), None)
                .await
                .body,
        );
    }
    configure(format!("localhost:{plain_port}")).await;
    answers.push(
        api.admin("POST", &format!("{resource}/test"), None)
            .await
            .body,
    );

    let expected = [
        (
            json!(502),
            "502 from Grafana Loki: it is failing; events are retried while this lasts",
        ),
        (
            json!(400),
            "400 from Grafana Loki: the events were refused as invalid (Grafana Loki said: \"entry for stream has timestamp too old\")",
        ),
        (
            Value::Null,
            "Grafana Loki closed the connection without answering; events are retried while this lasts",
        ),
        (
            Value::Null,
            "the TLS handshake with Grafana Loki failed: the host must serve HTTPS with a certificate valid for its name",
        ),
    ];
    for (answer, (status, message)) in answers.iter().zip(expected) {
        assert_eq!(answer["delivered"], false, "{answer}");
        assert_eq!(answer["destination_status"], status, "{answer}");
        assert_eq!(answer["message"], message, "{answer}");
        assert!(!answer.to_string().contains("html"), "{answer}");
    }
}

#[tokio::test]
async fn the_page_is_served_with_etags_and_security_headers() {
    let api = Api::new();
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/style.css", "text/css; charset=utf-8"),
    ] {
        let first = api
            .send(Request::get(path).body(Body::empty()).unwrap())
            .await;
        assert_eq!(first.status, StatusCode::OK, "{path}");
        assert_eq!(first.headers[header::CONTENT_TYPE], content_type);
        assert_eq!(first.headers[header::CACHE_CONTROL], "no-cache");
        let etag = first.headers[header::ETAG].to_str().unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.len() == 26, "{etag}");
        let again = api
            .send(
                Request::get(path)
                    .header(header::IF_NONE_MATCH, &etag)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(again.body, Value::Null);
    }
    // Page and API alike: no inline script, never framed, no sniffing, no referrer.
    for path in ["/", "/v1/projects/p/event_log_streaming/DATADOG"] {
        let answer = api
            .send(Request::get(path).body(Body::empty()).unwrap())
            .await;
        let csp = answer.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(answer.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(answer.headers[header::REFERRER_POLICY], "no-referrer");
    }
    // The page's script never writes HTML from data, and keeps the key out of storage.
    let script = include_str!("../../../functions/config-api/assets/app.js");
    for forbidden in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "localStorage",
        "sessionStorage",
        "document.cookie",
    ] {
        assert!(!script.contains(forbidden), "app.js uses {forbidden}");
    }
    let page = include_str!("../../../functions/config-api/assets/index.html");
    assert!(!page.contains("<script>") && !page.contains(" style=") && !page.contains("onclick"));
}

#[tokio::test]
async fn an_update_without_a_secret_keeps_the_stored_one_for_the_same_host_only() {
    let api = Api::new();
    let resource = format!("{COLLECTION}/GRAFANA_LOKI");
    api.admin(
        "POST",
        COLLECTION,
        Some(loki_body("logs-prod-021.grafana.net", LOKI_PASSWORD)),
    )
    .await;
    let loki = |hostname: &str, password: &str| json!({"destination_config": {"grafana_loki": {"hostname": hostname, "username": "42", "password": password}}});

    let updated = api
        .admin(
            "PUT",
            &resource,
            Some(loki("logs-prod-021.grafana.net", "")),
        )
        .await;

    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    let config = &updated.body["event_log_streaming_config"];
    assert_eq!(
        config["destination_config"]["grafana_loki"]["username"],
        "42"
    );
    assert_eq!(
        config["destination_config"]["grafana_loki"]["password_last_four"],
        "4e1f"
    );
    assert_eq!(config["version"], 2);

    // The stored token never follows the stream to another host (one the caller may own).
    let moved = api
        .admin(
            "PUT",
            &resource,
            Some(loki("logs.attacker.example.com", "")),
        )
        .await;
    assert_error(&moved, StatusCode::BAD_REQUEST, "invalid_argument");
    assert_eq!(
        moved.body["error_message"],
        "destination_config.grafana_loki.password: required when the hostname changes (the stored token is only sent to the host it was saved for)"
    );
    let moved = api
        .admin(
            "PUT",
            &resource,
            Some(loki("logs-prod-006.grafana.net:443", "glc_new-token-0007")),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    let config = &moved.body["event_log_streaming_config"]["destination_config"];
    assert_eq!(config["grafana_loki"]["password_last_four"], "0007");

    // Every Datadog site is Datadog's: a new site keeps the key.
    let datadog = "/v1/projects/proj-c/event_log_streaming";
    api.admin("POST", datadog, Some(datadog_body("US", DATADOG_KEY)))
        .await;
    let resited = api
        .admin(
            "PUT",
            &format!("{datadog}/DATADOG"),
            Some(json!({"destination_config": {"datadog": {"site": "EU"}}})),
        )
        .await;
    assert_eq!(resited.status, StatusCode::OK, "{}", resited.body);
    let config = &resited.body["event_log_streaming_config"]["destination_config"];
    assert_eq!(config["datadog"]["api_key_last_four"], &DATADOG_KEY[28..]);

    // A create needs one.
    let created = api
        .admin(
            "POST",
            "/v1/projects/proj-b/event_log_streaming",
            Some(json!({"destination_type": "DATADOG", "destination_config": {"datadog": {"site": "US"}}})),
        )
        .await;
    assert_error(&created, StatusCode::BAD_REQUEST, "invalid_argument");
    assert_eq!(
        created.body["error_message"],
        "destination_config.datadog.api_key: must not be empty"
    );
}
