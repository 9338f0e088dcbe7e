//! What a destination's answer means, in one place, for Loki and Datadog alike.
//!
//! | answer | meaning | class |
//! |---|---|---|
//! | 2xx but Loki's 260 | stored | `Delivered` |
//! | Loki's 260 | not stored: the Loki operator blocks ingestion for the tenant | `Blocked` |
//! | 400, 422 | the payload is invalid; Loki has already stored the valid part | `Rejected` |
//! | 401, 403 | credentials wrong or revoked | `Misconfigured` |
//! | other 4xx (404, 405, …) | not a Loki/Datadog endpoint | `Misconfigured` |
//! | 413 | too large for a proxy or the intake | `TooLarge` |
//! | 408, 429 | transient: too many requests or too slow | `Transient` |
//! | 5xx, no answer | transient, and the connection may be what is broken | `Transient`, `fresh_connection` |
//! | refused by our address policy | the destination points inward | `Misconfigured` |

use std::time::Duration;

use crate::destination::client::{PushResponse, TransportFailure};
use crate::domain::DestinationType;

/// Loki's "ingestion blocked" answer: a 2xx that stores nothing. The block is the Loki
/// operator's decision and lasts, so the records are kept and sent again later.
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
    /// Final for this configuration until the customer fixes it: the records fail now (sent
    /// back to the queue, dead-lettered once out of attempts) and count towards suspension.
    Misconfigured {
        detail: String,
    },
    /// Split the payload and send the halves.
    TooLarge,
    /// Loki's 260: nothing stored, and not for a while; not the configuration's fault.
    Blocked {
        detail: String,
    },
    /// Worth another attempt, after `retry_after` when the destination said so.
    Transient {
        retry_after: Option<Duration>,
        /// A 5xx or no answer: the pooled connection may be what is broken, or lead to the
        /// same bad backend, so a retry goes on a new one.
        fresh_connection: bool,
        detail: String,
    },
}

impl Classification {
    /// The class's name, as the streamer's metrics count push failures by it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Delivered { .. } => "Delivered",
            Self::Rejected { .. } => "Rejected",
            Self::Misconfigured { .. } => "Misconfigured",
            Self::TooLarge => "TooLarge",
            Self::Blocked { .. } => "Blocked",
            Self::Transient { .. } => "Transient",
        }
    }

    /// What went wrong, for logs and the dead-letter queue; empty for a delivery.
    pub fn detail(&self) -> &str {
        match self {
            Self::Delivered { .. } => "",
            Self::TooLarge => "the destination answered 413 for this record alone",
            Self::Rejected { detail, .. }
            | Self::Misconfigured { detail }
            | Self::Blocked { detail }
            | Self::Transient { detail, .. } => detail,
        }
    }

    /// Whether the destination refused the configuration itself (credentials, endpoint): the
    /// trigger of suspension, since no retry can succeed until it changes.
    pub fn refuses_configuration(&self) -> bool {
        matches!(self, Self::Misconfigured { .. })
    }
}

pub fn classify(response: &PushResponse) -> Classification {
    match response {
        PushResponse::Status {
            status,
            retry_after,
            detail,
            ..
        } => {
            let detail = || {
                if detail.is_empty() {
                    format!("HTTP {status}")
                } else {
                    format!("HTTP {status}: {detail}")
                }
            };
            match *status {
                LOKI_INGESTION_BLOCKED => Classification::Blocked { detail: detail() },
                200..=299 => Classification::Delivered { status: *status },
                400 | 422 => Classification::Rejected {
                    status: *status,
                    detail: detail(),
                },
                401 | 403 => Classification::Misconfigured {
                    detail: format!("{} (check the credentials)", detail()),
                },
                413 => Classification::TooLarge,
                408 | 429 | 500..=599 => Classification::Transient {
                    retry_after: *retry_after,
                    fresh_connection: *status >= 500,
                    detail: detail(),
                },
                // Other 4xx, and 1xx/3xx (redirects are never followed): the configuration
                // points at something that is not the destination's push API.
                _ => Classification::Misconfigured { detail: detail() },
            }
        }
        PushResponse::Refused(detail) => Classification::Misconfigured {
            detail: detail.clone(),
        },
        PushResponse::Transport { detail, .. } => Classification::Transient {
            retry_after: None,
            fresh_connection: true,
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

/// What a customer should read about an attempt: what went wrong and what to fix, in our
/// words. The destination's own words are added only when they are a recognised Loki or
/// Datadog error ([`PushResponse::Status::quote`]); a raw connection error never is.
/// Shared by the test endpoint and delivery health.
pub fn advice(destination: DestinationType, response: &PushResponse) -> String {
    let name = destination_name(destination);
    let (status, quote) = match response {
        PushResponse::Refused(reason) => return reason.clone(),
        PushResponse::Transport { failure, .. } => {
            return match failure {
                TransportFailure::Dns => {
                    format!("the {name} host name does not resolve: check the hostname")
                }
                TransportFailure::ConnectionRefused => {
                    format!("{name} refused the connection: check the hostname and the port")
                }
                TransportFailure::ConnectionReset => format!(
                    "{name} closed the connection without answering; events are retried while this lasts"
                ),
                TransportFailure::Tls => format!(
                    "the TLS handshake with {name} failed: the host must serve HTTPS with a certificate valid for its name"
                ),
                TransportFailure::Timeout => {
                    format!("{name} did not answer in time; events are retried while this lasts")
                }
                TransportFailure::Other => {
                    format!("{name} could not be reached; events are retried while this lasts")
                }
            };
        }
        PushResponse::Status { status, quote, .. } => (*status, quote.as_deref()),
    };
    let said = quote
        .map(|q| format!(" ({name} said: \"{q}\")"))
        .unwrap_or_default();
    match (destination, status) {
        (DestinationType::GrafanaLoki, LOKI_INGESTION_BLOCKED) => format!(
            "260 from Grafana Loki: its operator blocks ingestion for this tenant, so nothing was stored; events are kept and sent again later{said}"
        ),
        (_, 200..=299) => format!("{name} accepted the events (HTTP {status})"),
        (DestinationType::GrafanaLoki, 401 | 403) => format!(
            "{status} from Grafana Loki: check the username and token (the token needs the logs:write scope)"
        ),
        (DestinationType::Datadog, 401 | 403) => format!(
            "{status} from Datadog: check the API key and that the site matches your Datadog account"
        ),
        (DestinationType::GrafanaLoki, 404 | 405) => format!(
            "{status} from the host: Grafana Loki's push API was not found there, check that the hostname is a Loki endpoint"
        ),
        (_, 400 | 422) => format!("{status} from {name}: the events were refused as invalid{said}"),
        (_, 413) => format!("413 from {name}: a proxy in front of it limits the request size"),
        (_, 408 | 429) => format!(
            "{status} from {name}: too many requests or too slow; events are retried while this lasts{said}"
        ),
        (_, 500..=599) => format!(
            "{status} from {name}: it is failing; events are retried while this lasts{said}"
        ),
        (_, _) => format!(
            "{status} from the host: it does not answer like {name}, check the hostname{said}"
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
            quote: None,
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
            (260, |c| matches!(c, C::Blocked { .. })),
            (400, |c| matches!(c, C::Rejected { status: 400, .. })),
            (422, |c| matches!(c, C::Rejected { status: 422, .. })),
            (401, |c| matches!(c, C::Misconfigured { .. })),
            (403, |c| matches!(c, C::Misconfigured { .. })),
            (404, |c| matches!(c, C::Misconfigured { .. })),
            (405, |c| matches!(c, C::Misconfigured { .. })),
            (413, |c| matches!(c, C::TooLarge)),
            (408, |c| {
                matches!(
                    c,
                    C::Transient {
                        fresh_connection: false,
                        ..
                    }
                )
            }),
            (429, |c| {
                matches!(
                    c,
                    C::Transient {
                        fresh_connection: false,
                        ..
                    }
                )
            }),
            (500, |c| {
                matches!(
                    c,
                    C::Transient {
                        fresh_connection: true,
                        ..
                    }
                )
            }),
            (502, |c| {
                matches!(
                    c,
                    C::Transient {
                        fresh_connection: true,
                        ..
                    }
                )
            }),
            (503, |c| {
                matches!(
                    c,
                    C::Transient {
                        fresh_connection: true,
                        ..
                    }
                )
            }),
            (504, |c| {
                matches!(
                    c,
                    C::Transient {
                        fresh_connection: true,
                        ..
                    }
                )
            }),
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
            quote: None,
        });
        assert_eq!(
            class,
            Classification::Transient {
                retry_after: Some(Duration::from_secs(3)),
                fresh_connection: false,
                detail: "HTTP 429: slow down".into()
            }
        );
    }

    #[test]
    fn no_answer_is_transient_and_a_refused_address_is_misconfigured() {
        assert!(matches!(
            classify(&PushResponse::Transport {
                failure: TransportFailure::ConnectionReset,
                detail: "connection reset".into()
            }),
            Classification::Transient {
                fresh_connection: true,
                ..
            }
        ));
        assert!(matches!(
            classify(&PushResponse::Refused("private".into())),
            Classification::Misconfigured { .. }
        ));
    }

    #[test]
    fn advice_is_in_our_words_for_every_category() {
        use DestinationType::{Datadog, GrafanaLoki};
        let transport = |failure| PushResponse::Transport {
            failure,
            detail: "could not connect: tcp connect error: Connection refused (os error 111)"
                .into(),
        };
        let answer = |status, quote: Option<&str>| PushResponse::Status {
            status,
            retry_after: None,
            detail: "<html>raw page</html>".into(),
            quote: quote.map(str::to_owned),
        };
        let table = [
            (
                GrafanaLoki,
                transport(TransportFailure::ConnectionRefused),
                "Grafana Loki refused the connection: check the hostname and the port",
            ),
            (
                GrafanaLoki,
                transport(TransportFailure::ConnectionReset),
                "Grafana Loki closed the connection without answering; events are retried while this lasts",
            ),
            (
                GrafanaLoki,
                transport(TransportFailure::Tls),
                "the TLS handshake with Grafana Loki failed: the host must serve HTTPS with a certificate valid for its name",
            ),
            (
                Datadog,
                transport(TransportFailure::Timeout),
                "Datadog did not answer in time; events are retried while this lasts",
            ),
            (
                GrafanaLoki,
                transport(TransportFailure::Dns),
                "the Grafana Loki host name does not resolve: check the hostname",
            ),
            (
                GrafanaLoki,
                answer(401, Some("invalid authentication credentials")),
                "401 from Grafana Loki: check the username and token (the token needs the logs:write scope)",
            ),
            (
                Datadog,
                answer(403, None),
                "403 from Datadog: check the API key and that the site matches your Datadog account",
            ),
            (
                GrafanaLoki,
                answer(400, Some("entry too far behind")),
                "400 from Grafana Loki: the events were refused as invalid (Grafana Loki said: \"entry too far behind\")",
            ),
            (
                GrafanaLoki,
                answer(404, None),
                "404 from the host: Grafana Loki's push API was not found there, check that the hostname is a Loki endpoint",
            ),
            (
                GrafanaLoki,
                answer(418, None),
                "418 from the host: it does not answer like Grafana Loki, check the hostname",
            ),
            (
                Datadog,
                answer(503, None),
                "503 from Datadog: it is failing; events are retried while this lasts",
            ),
            (
                GrafanaLoki,
                answer(260, None),
                "260 from Grafana Loki: its operator blocks ingestion for this tenant, so nothing was stored; events are kept and sent again later",
            ),
            (
                Datadog,
                answer(429, None),
                "429 from Datadog: too many requests or too slow; events are retried while this lasts",
            ),
        ];
        for (destination, response, expected) in table {
            let advice = advice(destination, &response);
            assert_eq!(advice, expected);
            assert!(!advice.contains("os error") && !advice.contains("<html>"));
        }
    }
}
