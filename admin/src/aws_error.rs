//! AWS failures as an operator reads them: the action, the resource, and what went wrong in
//! words that say what to fix. A refused call names the IAM action and the resource to grant
//! it on; a missing queue, secret or table says which one the command was looking for. AWS
//! error messages describe the call, never a secret's value, so the remaining detail is safe
//! to print.

use std::fmt;

use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// One failed call.
#[derive(Debug, thiserror::Error)]
pub struct AwsError {
    /// The IAM action, such as `sqs:SendMessage`.
    pub action: &'static str,
    /// The resource as the operator knows it, such as `the dead-letter queue https://…`.
    pub resource: String,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The credentials in use may not make this call on this resource.
    Denied,
    /// The resource does not exist in this account and region.
    NotFound,
    /// No answer within the SDK's timeouts (`event_log_streaming::aws`).
    Timeout,
    /// Anything else, with AWS's own words.
    Other(String),
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            action,
            resource,
            problem,
        } = self;
        match problem {
            Problem::Denied => write!(
                f,
                "access denied: the credentials in use may not call {action} on {resource}"
            ),
            Problem::NotFound => write!(
                f,
                "{resource} does not exist (check the name, the account and the region; {action})"
            ),
            Problem::Timeout => write!(f, "{action} on {resource}: no answer in time"),
            Problem::Other(detail) => write!(f, "{action} on {resource} failed: {detail}"),
        }
    }
}

impl AwsError {
    pub fn new(action: &'static str, resource: impl Into<String>, problem: Problem) -> Self {
        Self {
            action,
            resource: resource.into(),
            problem,
        }
    }

    /// The failure of `action` on `resource`, from any AWS SDK client's error.
    pub fn of<E, R>(action: &'static str, resource: impl Into<String>, err: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug,
    {
        let problem = match err {
            SdkError::TimeoutError(_) => Problem::Timeout,
            SdkError::DispatchFailure(failure) if failure.is_timeout() => Problem::Timeout,
            _ => problem_of_code(err.code())
                .unwrap_or_else(|| Problem::Other(DisplayErrorContext(err).to_string())),
        };
        Self::new(action, resource, problem)
    }
}

/// The problems an AWS error code names, across the services the command calls (SQS answers
/// in its JSON protocol or, query-compatible, with the older `AWS.SimpleQueueService.` codes).
pub fn problem_of_code(code: Option<&str>) -> Option<Problem> {
    match code? {
        "AccessDenied" | "AccessDeniedException" | "AuthorizationError" => Some(Problem::Denied),
        "ResourceNotFoundException"
        | "QueueDoesNotExist"
        | "AWS.SimpleQueueService.NonExistentQueue"
        | "NonExistentQueue" => Some(Problem::NotFound),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_of_each_service_read_as_the_same_problem() {
        let table = [
            (Some("AccessDeniedException"), Some(Problem::Denied)),
            (Some("AccessDenied"), Some(Problem::Denied)),
            (Some("ResourceNotFoundException"), Some(Problem::NotFound)),
            (Some("QueueDoesNotExist"), Some(Problem::NotFound)),
            (
                Some("AWS.SimpleQueueService.NonExistentQueue"),
                Some(Problem::NotFound),
            ),
            (Some("ThrottlingException"), None),
            (None, None),
        ];
        for (code, expected) in table {
            assert_eq!(problem_of_code(code), expected, "{code:?}");
        }
    }

    #[test]
    fn a_refusal_names_the_action_and_the_resource() {
        let err = AwsError::new(
            "sqs:SendMessage",
            "the retry queue https://q/1/r",
            Problem::Denied,
        );
        let text = err.to_string();
        assert!(text.contains("sqs:SendMessage"), "{text}");
        assert!(text.contains("the retry queue https://q/1/r"), "{text}");
    }
}
