//! What a destination's answer means, in one place, for Loki and Datadog alike.
//!
//! | answer | meaning | class |
//! |---|---|---|
//! | 2xx | stored (Loki's 260: accepted but ingestion blocked by the operator) | `Delivered` |
//! | 400, 422 | the payload is invalid; Loki has already stored the valid part | `Rejected` |
//! | 401, 403 | credentials wrong or revoked | `Misconfigured` |
//! | other 4xx (404, 405, …) | not a Loki/Datadog endpoint | `Misconfigured` |
//! | 413 | too large for a proxy or the intake | `TooLarge` |
//! | 408, 429, 5xx, no answer | transient | `Transient` |
//! | refused by our address policy | the destination points inward | `Misconfigured` |

use std::time::Duration;

use crate::destination::client::PushResponse;
use crate::domain::DestinationType;

/// Loki's "ingestion blocked" answer: a 2xx, so the entries will not be accepted by a resend.
pub const LOKI_INGESTION_BLOCKED: u16 = 260;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classification {
    Delivered {
        status: u16,
    },
    /// Final for these records: they go to the dead-letter queue. Never resent unchanged.
    Rejected {
        status: u16,
        detail: String,
    },
    /// Final for this configuration until the customer fixes it; the records are retried by
    /// SQS and end in the dead-letter queue through the redrive policy.
    Misconfigured {
        detail: String,
    },
    /// Split the payload and send the halves.
    TooLarge,
    /// Worth another attempt, after `retry_after` when the destination said so.
    Transient {
        retry_after: Option<Duration>,
        detail: String,
    },
}

pub fn classify(response: &PushResponse) -> Classification {
    match response {
        PushResponse::Status {
            status,
            retry_after,
            detail,
        } => {
            let detail = if detail.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {detail}")
            };
            match *status {
                200..=299 => Classification::Delivered { status: *status },
                400 | 422 => Classification::Rejected {
                    status: *status,
                    detail,
                },
                401 | 403 => Classification::Misconfigured {
                    detail: format!("{detail} (check the credentials)"),
                },
                413 => Classification::TooLarge,
                408 | 429 | 500..=599 => Classification::Transient {
                    retry_after: *retry_after,
                    detail,
                },
                _ => Classification::Misconfigured { detail },
            }
        }
        PushResponse::Refused(detail) => Classification::Misconfigured {
            detail: detail.clone(),
        },
        PushResponse::Transport(detail) => Classification::Transient {
            retry_after: None,
            detail: detail.clone(),
        },
    }
}

/// The product name of a destination, as customers know it.
pub fn destination_name(destination: DestinationType) -> &'static str {
    match destination {
        DestinationType::GrafanaLoki => "Grafana Loki",
        DestinationType::Datadog => "Datadog",
    }
}

/// Whether the answer refuses the configuration itself (401/403, and the answers treated
/// like them): the trigger of suspension, since no retry can succeed until it changes.
pub fn refuses_configuration(response: &PushResponse) -> bool {
    matches!(classify(response), Classification::Misconfigured { .. })
}

/// What a customer should read about a failed attempt: what went wrong and what to fix.
/// Shared by the test endpoint and delivery health.
pub fn advice(destination: DestinationType, response: &PushResponse) -> String {
    let name = destination_name(destination);
    let status = match response {
        PushResponse::Status { status, .. } => Some(*status),
        _ => None,
    };
    match (classify(response), destination, status) {
        (Classification::Delivered { status }, _, _) => {
            format!("{name} accepted the events (HTTP {status})")
        }
        (Classification::Misconfigured { .. }, DestinationType::GrafanaLoki, Some(s @ (401 | 403))) => {
            format!("{s} from Grafana Loki: check the username and token (the token needs the logs:write scope)")
        }
        (Classification::Misconfigured { .. }, DestinationType::Datadog, Some(s @ (401 | 403))) => {
            format!("{s} from Datadog: check the API key and that the site matches your Datadog account")
        }
        (Classification::Misconfigured { .. }, DestinationType::GrafanaLoki, Some(404 | 405)) => {
            "Grafana Loki's push API was not found at this hostname: check that it is a Loki endpoint".into()
        }
        (Classification::Misconfigured { detail }, _, Some(_)) => {
            format!("{name} refused the events: {detail}")
        }
        (Classification::Misconfigured { detail }, _, None) => detail,
        (Classification::Rejected { detail, .. }, _, _) => {
            format!("{name} refused the events as invalid: {detail}")
        }
        (Classification::TooLarge, _, _) => format!(
            "{name} answered 413: a proxy in front of it limits request size"
        ),
        (Classification::Transient { detail, .. }, _, _) => format!(
            "{name} could not be reached or is failing ({detail}); events are retried while this lasts"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> Classification {
        classify(&PushResponse::Status {
            status,
            retry_after: None,
            detail: String::new(),
        })
    }

    #[test]
    fn every_answer_has_its_documented_class() {
        use Classification as C;
        type Expect = fn(&C) -> bool;
        let table: &[(u16, Expect)] = &[
            (200, |c| matches!(c, C::Delivered { .. })),
            (202, |c| matches!(c, C::Delivered { .. })),
            (204, |c| matches!(c, C::Delivered { .. })),
            (260, |c| matches!(c, C::Delivered { status: 260 })),
            (400, |c| matches!(c, C::Rejected { status: 400, .. })),
            (422, |c| matches!(c, C::Rejected { status: 422, .. })),
            (401, |c| matches!(c, C::Misconfigured { .. })),
            (403, |c| matches!(c, C::Misconfigured { .. })),
            (404, |c| matches!(c, C::Misconfigured { .. })),
            (405, |c| matches!(c, C::Misconfigured { .. })),
            (413, |c| matches!(c, C::TooLarge)),
            (408, |c| matches!(c, C::Transient { .. })),
            (429, |c| matches!(c, C::Transient { .. })),
            (500, |c| matches!(c, C::Transient { .. })),
            (502, |c| matches!(c, C::Transient { .. })),
            (503, |c| matches!(c, C::Transient { .. })),
            (504, |c| matches!(c, C::Transient { .. })),
        ];
        for (code, expected) in table {
            let class = status(*code);
            assert!(expected(&class), "{code} classified as {class:?}");
        }
    }

    #[test]
    fn retry_after_is_carried_through() {
        let class = classify(&PushResponse::Status {
            status: 429,
            retry_after: Some(Duration::from_secs(3)),
            detail: "slow down".into(),
        });
        assert_eq!(
            class,
            Classification::Transient {
                retry_after: Some(Duration::from_secs(3)),
                detail: "HTTP 429: slow down".into()
            }
        );
    }

    #[test]
    fn no_answer_is_transient_and_a_refused_address_is_misconfigured() {
        assert!(matches!(
            classify(&PushResponse::Transport("connection reset".into())),
            Classification::Transient { .. }
        ));
        assert!(matches!(
            classify(&PushResponse::Refused("private".into())),
            Classification::Misconfigured { .. }
        ));
    }
}
