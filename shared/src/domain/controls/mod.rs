//! Stream controls: what a project may change about what is streamed and how it is labelled.
//!
//! - [`EventFilter`]: which records are streamed, by `action` and `status`.
//! - [`Redaction`]: fields masked, hashed or removed before a record leaves, the rest of the
//!   record kept byte-for-byte; [`Redactor`] applies it under the project's [`RedactionKey`].
//! - [`LokiTenantId`] and [`LokiLabels`]: the `X-Scope-OrgID` header and extra stream labels
//!   of a Grafana Loki destination.
//! - [`DatadogTags`]: the `ddtags` of a Datadog destination.
//!
//! Each control parses from its serde body into a validated type; a [`super::ValidationError`]
//! names the field path relative to the control (`event_filter.actions[3]`, `labels.team`,
//! `tags[2]`), which the caller may place under its own with
//! [`super::ValidationError::under`]. No error quotes the value it refuses.

mod datadog_tags;
mod event_filter;
mod json_text;
mod loki_labels;
mod loki_tenant;
mod redact;
mod redaction;
mod redaction_key;

pub use datadog_tags::{DatadogTag, DatadogTags, MAX_TAG_LEN, MAX_TAGS, RESERVED_TAG_KEYS};
pub use event_filter::{
    ActionPattern, EventFilter, EventFilterBody, MAX_FILTER_ENTRIES, MAX_FILTER_ENTRY_LEN,
};
pub use loki_labels::{
    LokiLabels, MAX_LABEL_NAME_LEN, MAX_LABEL_VALUE_CHARS, MAX_LABELS, RESERVED_LABEL_NAMES,
};
pub use loki_tenant::{LokiTenantId, MAX_TENANT_ID_LEN, TENANT_HEADER};
pub use redact::Redactor;
pub use redaction::{
    FieldPath, MASK, MAX_FIELD_PATH_DEPTH, MAX_FIELD_PATH_LEN, MAX_REDACTED_FIELDS, Redaction,
    RedactionBody, RedactionMode,
};
pub use redaction_key::{HASH_PREFIX, KeyGenerationError, REDACTION_KEY_LEN, RedactionKey};
