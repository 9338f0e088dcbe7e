//! Stream controls: what a project may change about what is streamed and how it is labelled.
//!
//! - [`EventFilter`]: which records are streamed, by `action` and `status`.
//!
//! Each control parses from its serde body into a validated type; a [`super::ValidationError`]
//! names the field path relative to the control (`event_filter.actions[3]`, `labels.team`,
//! `tags[2]`), which the caller may place under its own with
//! [`super::ValidationError::under`]. No error quotes the value it refuses.

mod event_filter;
mod json_text;

pub use event_filter::{
    ActionPattern, EventFilter, EventFilterBody, MAX_FILTER_ENTRIES, MAX_FILTER_ENTRY_LEN,
};
