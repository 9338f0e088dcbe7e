//! The endpoints, under `/v1/projects/{project_id}/event_log_streaming`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{MethodRouter, post};
use event_log_streaming::domain::{
    Destination, DestinationConfigBody, DestinationType, Endpoint, ProjectId, StreamingStatus,
    ValidationError,
};
use event_log_streaming::store::{StoreError, StoredStream, create_stream, destination_of};
use event_log_streaming::test_event::send_test_event;
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
/// Rounds of a delete that concurrent updates keep overtaking before it answers 409.
const DELETE_ROUNDS: usize = 3;

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
    // Checked before the credential is written, so that a refused create leaves the
    // existing stream's secret alone.
    if state.streams.get(&who.project).await?.is_some() {
        return Err(StoreError::AlreadyExists.into());
    }
    let config = create_stream(
        state.streams.as_ref(),
        state.credentials.as_ref(),
        &who.project,
        &destination,
        OffsetDateTime::now_utc(),
    )
    .await?;
    audit(&who, "create", body.destination_type);
    let stream = StoredStream {
        config,
        health: Default::default(),
    };
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
    let stream = load(&state, &who.project, &kind).await?;
    ok(
        StatusCode::OK,
        json!({ "event_log_streaming_config": ConfigView::from(&stream) }),
    )
}

/// Replaces the destination; the status (SUSPENDED included) and `enabled_at` are kept. An
/// absent or empty credential keeps the stored one (the page's write-only secret inputs),
/// unless a Loki stream moves to another host.
async fn update(
    State(state): State<AppState>,
    who: Authorized,
    Path((_, kind)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Answer {
    let mut stream = load(&state, &who.project, &kind).await?;
    let read = &stream.config;
    let endpoint = parse_endpoint(&state, read.destination_type(), &body.destination_config)?;
    let credential = match body.destination_config.credential() {
        None if read.endpoint.keeps_credential_for(&endpoint) => read.credential.clone(),
        None => {
            return Err(ValidationError::new(
                "destination_config.grafana_loki.password",
                "required when the hostname changes (the stored token is only sent to the host it was saved for)",
            )
            .into());
        }
        Some(_) => {
            let destination =
                Destination::parse(read.destination_type(), &body.destination_config)?;
            state
                .credentials
                .put(&who.project, destination.credential())
                .await?
        }
    };
    let mut config = read.next_version(OffsetDateTime::now_utc());
    config.endpoint = endpoint;
    config.credential = credential;
    state.streams.update(&config, read.version).await?;
    audit(&who, "update", config.destination_type());
    stream.config = config;
    ok(
        StatusCode::OK,
        json!({ "event_log_streaming_config": ConfigView::from(&stream) }),
    )
}

/// Deletes the credential secret, then the stream. The secret goes first so that a 200 means
/// it is gone (a customer deleting a leaked token must be able to rely on that): should its
/// deletion fail, nothing has changed and the request may be sent again. It also keeps a
/// create racing this delete from saving a credential that the delete would then remove: the
/// create finds the stream still there. An update landing between the two steps changes the
/// stream's version (and may have saved a new secret): the stream is read again and both are
/// deleted again, a few times at most.
async fn remove(
    State(state): State<AppState>,
    who: Authorized,
    Path((_, kind)): Path<(String, String)>,
) -> Answer {
    for _ in 0..DELETE_ROUNDS {
        let stream = load(&state, &who.project, &kind).await?;
        state.credentials.delete(&who.project).await?;
        match state
            .streams
            .delete(&who.project, stream.config.version)
            .await
        {
            Ok(()) => {
                audit(&who, "delete", stream.config.destination_type());
                return ok(StatusCode::OK, json!({}));
            }
            Err(StoreError::Conflict) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(StoreError::Conflict.into())
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

/// Enables (from DISABLED or SUSPENDED) or disables, keeping the configuration; the rules
/// are the domain's state machine ([`event_log_streaming::domain::StreamState`]).
async fn set_status(
    state: &AppState,
    who: &Authorized,
    kind: &str,
    body: Result<Bytes, BytesRejection>,
    status: StreamingStatus,
) -> Answer {
    expect_empty(&body.map_err(|_| ApiError::PayloadTooLarge)?)?;
    let stream = load(state, &who.project, kind).await?;
    let read = &stream.config;
    let now = OffsetDateTime::now_utc();
    let (next, operation) = match status {
        StreamingStatus::Active => {
            let delay = time::Duration::try_from(state.streaming_start_delay)
                .unwrap_or(time::Duration::ZERO);
            (read.state.enable(now, delay), "enable")
        }
        _ => (read.state.disable(), "disable"),
    };
    if let Some(next) = next {
        let mut config = read.next_version(now);
        config.state = next;
        state.streams.update(&config, read.version).await?;
    }
    audit(who, operation, read.destination_type());
    ok(StatusCode::OK, json!({}))
}

async fn test(
    State(state): State<AppState>,
    who: Authorized,
    Path((_, kind)): Path<(String, String)>,
) -> Answer {
    let stream = load(&state, &who.project, &kind).await?;
    let destination = destination_of(&stream.config, state.credentials.as_ref()).await?;
    let outcome = send_test_event(&state.client, &who.project, &destination, &state.labels).await;
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

/// The project's stream, if its destination type is the one in the path.
async fn load(state: &AppState, project: &ProjectId, kind: &str) -> Result<StoredStream, ApiError> {
    let kind = DestinationType::parse(kind)?;
    let stream = state.streams.get(project).await?.ok_or_else(|| {
        ApiError::NotFound("the project has no event log streaming configuration".into())
    })?;
    let stored = stream.config.destination_type();
    if stored != kind {
        return Err(ApiError::NotFound(format!(
            "the project streams to {stored}, not {kind}"
        )));
    }
    Ok(stream)
}
