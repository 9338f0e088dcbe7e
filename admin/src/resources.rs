//! Where a deployment's resources are: the functions' environment variables, or the outputs
//! of its stack (`--stack NAME`, CloudFormation `DescribeStacks`; `infra/template.yaml`
//! declares them). With a stack, the environment is not read: the command acts on that
//! deployment only.

use std::collections::BTreeMap;

use aws_sdk_cloudformation::error::ProvideErrorMetadata;

use crate::aws_error::AwsError;

/// A resource a command may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    KeysSecret,
    StreamTable,
    DeadLetterQueue,
    EventQueue,
    RetryQueue,
}

impl Resource {
    pub const ALL: [Self; 5] = [
        Self::KeysSecret,
        Self::StreamTable,
        Self::DeadLetterQueue,
        Self::EventQueue,
        Self::RetryQueue,
    ];

    /// The functions' environment variable.
    pub fn variable(self) -> &'static str {
        match self {
            Self::KeysSecret => "MANAGEMENT_KEYS_SECRET_ID",
            Self::StreamTable => "STREAM_TABLE_NAME",
            Self::DeadLetterQueue => "DEAD_LETTER_QUEUE_URL",
            Self::EventQueue => "EVENT_QUEUE_URL",
            Self::RetryQueue => "RETRY_QUEUE_URL",
        }
    }

    /// The stack output.
    pub fn output(self) -> &'static str {
        match self {
            Self::KeysSecret => "ManagementKeysSecretArn",
            Self::StreamTable => "StreamTableName",
            Self::DeadLetterQueue => "DeadLetterQueueUrl",
            Self::EventQueue => "EventQueueUrl",
            Self::RetryQueue => "RetryQueueUrl",
        }
    }

    /// What an operator calls it, for messages.
    pub fn description(self) -> &'static str {
        match self {
            Self::KeysSecret => "the management keys secret",
            Self::StreamTable => "the stream table",
            Self::DeadLetterQueue => "the dead-letter queue",
            Self::EventQueue => "the event queue",
            Self::RetryQueue => "the retry queue",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Environment,
    Stack(String),
}

/// The resources found, and where they were looked for.
#[derive(Debug, Clone)]
pub struct Resources {
    origin: Origin,
    found: BTreeMap<Resource, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("{} is not set: set {} or name the deployed stack with --stack NAME", .0.description(), .0.variable())]
    NotInEnvironment(Resource),
    #[error("the stack {stack} has no output {} ({}); was it deployed from this version's template?", .resource.output(), .resource.description())]
    NotInStack { stack: String, resource: Resource },
    #[error("no stack named {0} in this account and region (AWS_REGION, AWS_PROFILE)")]
    NoStack(String),
    #[error(transparent)]
    Aws(#[from] AwsError),
}

impl Resources {
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Self {
        let found = Resource::ALL
            .into_iter()
            .filter_map(|r| {
                let value = lookup(r.variable())?;
                let value = value.trim();
                (!value.is_empty()).then(|| (r, value.to_owned()))
            })
            .collect();
        Self {
            origin: Origin::Environment,
            found,
        }
    }

    pub async fn from_stack(
        client: &aws_sdk_cloudformation::Client,
        stack: &str,
    ) -> Result<Self, ResourceError> {
        let answer = client.describe_stacks().stack_name(stack).send().await;
        let stacks = match answer {
            Ok(output) => output.stacks.unwrap_or_default(),
            // CloudFormation answers a missing stack with a ValidationError "does not exist".
            Err(err)
                if err.code() == Some("ValidationError")
                    && err.message().is_some_and(|m| m.contains("does not exist")) =>
            {
                return Err(ResourceError::NoStack(stack.to_owned()));
            }
            Err(err) => {
                return Err(AwsError::of(
                    "cloudformation:DescribeStacks",
                    format!("the stack {stack}"),
                    &err,
                )
                .into());
            }
        };
        let outputs = stacks
            .into_iter()
            .next()
            .ok_or_else(|| ResourceError::NoStack(stack.to_owned()))?
            .outputs
            .unwrap_or_default();
        let found = Resource::ALL
            .into_iter()
            .filter_map(|r| {
                let output = outputs
                    .iter()
                    .find(|o| o.output_key() == Some(r.output()))?;
                Some((r, output.output_value()?.to_owned()))
            })
            .collect();
        Ok(Self {
            origin: Origin::Stack(stack.to_owned()),
            found,
        })
    }

    pub fn get(&self, resource: Resource) -> Result<&str, ResourceError> {
        match (self.found.get(&resource), &self.origin) {
            (Some(value), _) => Ok(value),
            (None, Origin::Environment) => Err(ResourceError::NotInEnvironment(resource)),
            (None, Origin::Stack(stack)) => Err(ResourceError::NotInStack {
                stack: stack.clone(),
                resource,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_variable_is_named_with_the_way_out() {
        let resources = Resources::from_lookup(&|name| {
            (name == "STREAM_TABLE_NAME").then(|| "streams".to_owned())
        });
        assert_eq!(resources.get(Resource::StreamTable).unwrap(), "streams");
        let err = resources.get(Resource::DeadLetterQueue).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("DEAD_LETTER_QUEUE_URL"), "{text}");
        assert!(text.contains("--stack"), "{text}");
    }
}
