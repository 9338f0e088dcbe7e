//! The endpoints, under `/v1/projects/{project_id}/event_log_streaming`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{MethodRouter, post};
use event_log_streaming::delivery::test_event::send_test_event;
use event_log_streaming::domain::{
    Destination, DestinationConfigBody, DestinationType, ProjectId, StreamingConfig,
    StreamingStatus,
};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tracing::info;

use crate::auth::Authorized;
use crate::error::ApiError;
use crate::json::{self, ApiJson};
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    destination_config: DestinationConfigBody,
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
    let now = OffsetDateTime::now_utc();
    let config = StreamingConfig {
        destination,
        streaming_status: StreamingStatus::Disabled,
        enabled_at: None,
        created_at: now,
        updated_at: now,
    };
    state.store.create(&who.project, &config).await?;
    audit(&who, "create", body.destination_type);
    ok(
        StatusCode::CREATED,
        json!({ "event_log_streaming_config": ConfigView::from(&config) }),
    )
}

async fn read(
    State(state): State<AppState>,
    who: Authorized,
    Path((_, kind)): Path<(String, String)>,
) -> Answer {
    let config = load(&state, &who.project, &kind).await?;
    ok(
        StatusCode::OK,
        json!({ "event_log_streaming_config": ConfigView::from(&config) }),
    )
}

async fn update(
    State(state): State<AppState>,
    who: Authorized,
    Path((_, kind)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Answer {
    let mut config = load(&state, &who.project, &kind).await?;
    config.destination = parse_destination(
        &state,
        config.destination.destination_type(),
        &body.destination_config,
    )?;
    config.updated_at = OffsetDateTime::now_utc();
    state.store.put(&who.project, &config).await?;
    audit(&who, "update", config.destination.destination_type());
    ok(
        StatusCode::OK,
        json!({ "event_log_streaming_config": ConfigView::from(&config) }),
    )
}

async fn remove(
    State(state): State<AppState>,
    who: Authorized,
    Path((_, kind)): Path<(String, String)>,
) -> Answer {
    let config = load(&state, &who.project, &kind).await?;
    if !state.store.delete(&who.project).await? {
        return Err(ApiError::NotFound(
            "the project has no event log streaming configuration".into(),
        ));
    }
    audit(&who, "delete", config.destination.destination_type());
    ok(StatusCode::OK, json!({}))
}

async fn enable(
    State(state): State<AppState>,
    who: Authorized,
    Path((_, kind)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    set_status(&state, &who, &kind, body, StreamingStatus::Active).await
}

async fn disable(
    State(state): State<AppState>,
    who: Authorized,
    Path((_, kind)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    set_status(&state, &who, &kind, body, StreamingStatus::Disabled).await
}

/// Enables or disables, keeping the configuration. Enabling a disabled configuration sets
/// `enabled_at` to now plus the streamer's cache TTL: every streamer container sees the
/// configuration active by then, so every event sent from `enabled_at` on is streamed and
/// none from before it (no backfill). Enabling an active one keeps its `enabled_at`.
async fn set_status(
    state: &AppState,
    who: &Authorized,
    kind: &str,
    body: Result<Bytes, BytesRejection>,
    status: StreamingStatus,
) -> Answer {
    expect_empty(&body.map_err(|_| ApiError::PayloadTooLarge)?)?;
    let mut config = load(state, &who.project, kind).await?;
    if config.streaming_status != status {
        let now = OffsetDateTime::now_utc();
        config.streaming_status = status;
        config.updated_at = now;
        if status == StreamingStatus::Active {
            config.enabled_at = Some(now + state.streaming_start_delay);
        }
        state.store.put(&who.project, &config).await?;
    }
    let operation = match status {
        StreamingStatus::Active => "enable",
        StreamingStatus::Disabled => "disable",
    };
    audit(who, operation, config.destination.destination_type());
    ok(StatusCode::OK, json!({}))
}

async fn test(
    State(state): State<AppState>,
    who: Authorized,
    Path((_, kind)): Path<(String, String)>,
) -> Answer {
    let config = load(&state, &who.project, &kind).await?;
    let outcome = send_test_event(
        &state.client,
        &who.project,
        &config.destination,
        &state.labels,
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
        }),
    )
}

/// A destination from a request body; hosts that are plainly not on the public internet
/// (IP literals of private ranges, `localhost`) are refused now rather than at delivery.
fn parse_destination(
    state: &AppState,
    destination_type: DestinationType,
    body: &DestinationConfigBody,
) -> Result<Destination, ApiError> {
    let destination = Destination::parse(destination_type, body)?;
    state.client.check_destination(&destination).map_err(|_| {
        ApiError::InvalidArgument(
            "destination_config.grafana_loki.hostname: must be reachable on the public internet (private, loopback and link-local addresses are refused)".into(),
        )
    })?;
    Ok(destination)
}

/// The project's configuration, if its destination type is the one in the path.
async fn load(
    state: &AppState,
    project: &ProjectId,
    kind: &str,
) -> Result<StreamingConfig, ApiError> {
    let kind = DestinationType::parse(kind)?;
    let config = state.store.get(project).await?.ok_or_else(|| {
        ApiError::NotFound("the project has no event log streaming configuration".into())
    })?;
    let stored = config.destination.destination_type();
    if stored != kind {
        return Err(ApiError::NotFound(format!(
            "the project streams to {stored}, not {kind}"
        )));
    }
    Ok(config)
}
