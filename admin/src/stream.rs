//! `stream show PROJECT`: a project's stream, its configuration and delivery health, in the
//! config API's own view (`config_api::view::ConfigView`: the credential only by its last
//! four characters), read from the stream table or the local runner's state file.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::get_item::GetItemError;
use config_api::view::ConfigView;
use event_log_streaming::domain::ProjectId;
use event_log_streaming::store::{StoreError, StreamWrite, error_chain};
use serde_json::{Value, json};

use crate::aws_error::AwsError;

#[derive(Debug, thiserror::Error)]
pub enum StreamShowError {
    #[error("the project {project} has no stream in {place}")]
    NoStream { project: String, place: String },
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("cannot read {place}: {message}")]
    Store { place: String, message: String },
}

/// The body `GET …/event_log_streaming/{destination_type}` answers, without its request id;
/// `place` names the store for messages (`the stream table NAME`).
pub async fn show(
    streams: &dyn StreamWrite,
    project: &ProjectId,
    place: &str,
) -> Result<Value, StreamShowError> {
    let stream = streams
        .get(project)
        .await
        .map_err(|err| store_failure(&err, place))?
        .ok_or_else(|| StreamShowError::NoStream {
            project: project.to_string(),
            place: place.to_owned(),
        })?;
    Ok(json!({ "event_log_streaming_config": ConfigView::from(&stream) }))
}

/// The DynamoDB call's own error when it is one, so that a refusal names the action.
fn store_failure(err: &StoreError, place: &str) -> StreamShowError {
    if let StoreError::Unavailable { cause, .. } = err
        && let Some(sdk) = cause.downcast_ref::<SdkError<GetItemError, HttpResponse>>()
    {
        return AwsError::of("dynamodb:GetItem", place, sdk).into();
    }
    StreamShowError::Store {
        place: place.to_owned(),
        message: error_chain(err),
    }
}
