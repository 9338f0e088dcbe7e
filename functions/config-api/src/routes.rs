//! The endpoints, under `/v1/projects/{project_id}/event_log_streaming`: each parses its
//! request, calls one command of [`crate::streams`] and writes the answer; errors become
//! status codes in `error.rs`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{MethodRouter, post};
use event_log_streaming::domain::controls::{EventFilterBody, RedactionBody};
use event_log_streaming::domain::{
    Destination, DestinationConfigBody, DestinationType, Endpoint, StreamControls,
};
use event_log_streaming::store::destination_of;
use event_log_streaming::test_event::send_test_event;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tracing::info;

use crate::auth::Authorized;
use crate::error::ApiError;
use crate::json::{self, ApiJson};
use crate::streams::StatusCommand;
use crate::view::ConfigView;
use crate::{AppState, request_id};

const COLLECTION: &str = "/v1/projects/{project_id}/event_log_streaming";
const RESOURCE: &str = "/v1/projects/{project_id}/event_log_streaming/{destination_type}";
const ENABLE: &str = "/v1/projects/{project_id}/event_log_streaming/{destination_type}/enable";
const DISABLE: &str = "/v1/projects/{project_id}/event_log_streaming/{destination_type}/disable";
const TEST: &str = "/v1/projects/{project_id}/event_log_streaming/{destination_type}/test";

/// Every route of the API; [`crate::app`] serves exactly these, and a test checks them
/// against `openapi.json`.
pub fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        (COLLECTION, post(create)),
        (
            RESOURCE,
            axum::routing::get(read).put(update).delete(remove),
        ),
        (ENABLE, post(enable)),
        (DISABLE, post(disable)),
        (TEST, post(test)),
    ]
}

type Answer = Result<(StatusCode, Json<Value>), ApiError>;

fn ok(status: StatusCode, mut body: Value) -> Answer {
    body["request_id"] = json!(request_id());
    body["status_code"] = json!(status.as_u16());
    Ok((status, Json(body)))
}

fn audit(who: &Authorized, operation: &str, destination_type: DestinationType) {
    info!(
        key_id = %who.key_id,
        project_id = %who.project,
        operation,
        destination_type = %destination_type,
        "configuration changed"
    );
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    destination_type: DestinationType,
    destination_config: DestinationConfigBody,
    #[serde(default)]
    event_filter: Option<EventFilterBody>,
    #[serde(default)]
    redaction: Option<RedactionBody>,
}

/// Replaces every non-secret field: an absent control is cleared.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    destination_config: DestinationConfigBody,
    #[serde(default)]
    event_filter: Option<EventFilterBody>,
    #[serde(default)]
    redaction: Option<RedactionBody>,
}

/// Enable and disable take `{}` or no body at all.
fn expect_empty(body: &[u8]) -> Result<(), ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Empty {}
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    json::parse::<Empty>(body).map(|_| ())
}

async fn create(
    State(state): State<AppState>,
    who: Authorized,
    ApiJson(body): ApiJson<CreateBody>,
) -> Answer {
    let destination = parse_destination(&state, body.destination_type, &body.destination_config)?;
    let controls = StreamControls::parse(body.event_filter.as_ref(), body.redaction.as_ref())?;
    let stream = state
        .commands()
        .create(
            &who.project,
            &destination,
            &controls,
            OffsetDateTime::now_utc(),
        )
        .await?;
    audit(&who, "create", body.destination_type);
    ok(
        StatusCode::CREATED,
        json!({ "event_log_streaming_config": ConfigView::from(&stream) }),
    )
}

async fn read(
    State(state): State<AppState>,
    who: Authorized,
    Path((_, kind)): Path<(String, String)>,
) -> Answer {
    let kind = DestinationType::parse(&kind)?;
    let stream = state.commands().read(&who.project, kind).await?;
    ok(
        StatusCode::OK,
        json!({ "event_log_streaming_config": ConfigView::from(&stream) }),
    )
}

/// An absent or empty credential asks to keep the stored one (the page's write-only secret
/// inputs); [`crate::streams::Streams::update`] decides whether it may.
async fn update(
    State(state): State<AppState>,
    who: Authorized,
    Path((_, kind)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Answer {
    let kind = DestinationType::parse(&kind)?;
    let config = &body.destination_config;
    let endpoint = parse_endpoint(&state, kind, config)?;
    let controls = StreamControls::parse(body.event_filter.as_ref(), body.redaction.as_ref())?;
    let credential = match config.credential() {
        None => None,
        Some(_) => Some(Destination::parse(kind, config)?.credential().clone()),
    };
    let stream = state
        .commands()
        .update(
            &who.project,
            kind,
            endpoint,
            controls,
            credential,
            OffsetDateTime::now_utc(),
        )
        .await?;
    audit(&who, "update", kind);
    ok(
        StatusCode::OK,
        json!({ "event_log_streaming_config": ConfigView::from(&stream) }),
    )
}

async fn remove(
    State(state): State<AppState>,
    who: Authorized,
    Path((_, kind)): Path<(String, String)>,
) -> Answer {
    let kind = DestinationType::parse(&kind)?;
    state.commands().delete(&who.project, kind).await?;
    audit(&who, "delete", kind);
    ok(StatusCode::OK, json!({}))
}

async fn enable(
    State(state): State<AppState>,
    who: Authorized,
    Path((_, kind)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let start_delay =
        time::Duration::try_from(state.streaming_start_delay).unwrap_or(time::Duration::ZERO);
    let command = StatusCommand::Enable { start_delay };
    set_status(&state, &who, &kind, body, command, "enable").await
}

async fn disable(
    State(state): State<AppState>,
    who: Authorized,
    Path((_, kind)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    set_status(&state, &who, &kind, body, StatusCommand::Disable, "disable").await
}

async fn set_status(
    state: &AppState,
    who: &Authorized,
    kind: &str,
    body: Result<Bytes, BytesRejection>,
    command: StatusCommand,
    operation: &str,
) -> Answer {
    expect_empty(&body.map_err(|_| ApiError::PayloadTooLarge)?)?;
    let kind = DestinationType::parse(kind)?;
    state
        .commands()
        .set_status(&who.project, kind, command, OffsetDateTime::now_utc())
        .await?;
    audit(who, operation, kind);
    ok(StatusCode::OK, json!({}))
}

async fn test(
    State(state): State<AppState>,
    who: Authorized,
    Path((_, kind)): Path<(String, String)>,
) -> Answer {
    let kind = DestinationType::parse(&kind)?;
    let stream = state.commands().read(&who.project, kind).await?;
    let (destination, redactor) =
        destination_of(&stream.config, state.credentials.as_ref()).await?;
    let now = OffsetDateTime::now_utc();
    let outcome = send_test_event(
        &state.client,
        &who.project,
        &destination,
        redactor.as_ref(),
        &state.labels,
        now,
    )
    .await;
    info!(
        key_id = %who.key_id,
        project_id = %who.project,
        delivered = outcome.delivered,
        destination_status = outcome.destination_status,
        "test delivery"
    );
    ok(
        StatusCode::OK,
        json!({
            "delivered": outcome.delivered,
            "destination_status": outcome.destination_status,
            "message": outcome.message,
            "redacted": redactor.is_some(),
            "note": TEST_NOTE,
        }),
    )
}

/// What the test endpoint says of the controls, with every answer.
const TEST_NOTE: &str = "The test event goes through the stream's redaction and carries its \
     labels, tenant and tags; the event filter does not apply to it.";

/// A destination from a request body, credential included; see [`parse_endpoint`].
fn parse_destination(
    state: &AppState,
    destination_type: DestinationType,
    body: &DestinationConfigBody,
) -> Result<Destination, ApiError> {
    parse_endpoint(state, destination_type, body)?;
    Ok(Destination::parse(destination_type, body)?)
}

/// The endpoint of a request body; a Loki host that is plainly not on the public internet
/// (IP literals of private ranges, `localhost`, names without a public suffix, ports off the
/// allow-list) is refused now rather than at delivery.
fn parse_endpoint(
    state: &AppState,
    destination_type: DestinationType,
    body: &DestinationConfigBody,
) -> Result<Endpoint, ApiError> {
    let endpoint = Endpoint::parse(destination_type, body)?;
    state.client.check_endpoint(&endpoint).map_err(|refusal| {
        ApiError::InvalidArgument(format!(
            "destination_config.grafana_loki.hostname: {refusal}"
        ))
    })?;
    Ok(endpoint)
}
