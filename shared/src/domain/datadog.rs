//! Datadog sites and API keys, as the configuration API accepts them.
//!
//! Sites and intake hosts follow Datadog's site list (US1, US3, US5, EU1, AP1, AP2, UK1,
//! US1-FED and US2-FED); the left-hand names are the product's `site` values.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ValidationError;
use super::controls::DatadogTags;
use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DatadogSite {
    Us,
    Us3,
    Us5,
    Eu,
    Ap1,
    Ap2,
    Uk1,
    #[serde(rename = "US1_FED")]
    Us1Fed,
    #[serde(rename = "US2_FED")]
    Us2Fed,
}

impl DatadogSite {
    pub const ALL: [DatadogSite; 9] = [
        Self::Us,
        Self::Us3,
        Self::Us5,
        Self::Eu,
        Self::Ap1,
        Self::Ap2,
        Self::Uk1,
        Self::Us1Fed,
        Self::Us2Fed,
    ];

    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        Self::ALL
            .into_iter()
            .find(|site| site.as_str() == value)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|s| s.as_str()).collect();
                ValidationError::new(
                    "destination_config.datadog.site",
                    format!("must be one of {}", names.join(", ")),
                )
            })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Us => "US",
            Self::Us3 => "US3",
            Self::Us5 => "US5",
            Self::Eu => "EU",
            Self::Ap1 => "AP1",
            Self::Ap2 => "AP2",
            Self::Uk1 => "UK1",
            Self::Us1Fed => "US1_FED",
            Self::Us2Fed => "US2_FED",
        }
    }

    /// The logs intake host of the site.
    pub fn intake_host(self) -> &'static str {
        match self {
            Self::Us => "http-intake.logs.datadoghq.com",
            Self::Us3 => "http-intake.logs.us3.datadoghq.com",
            Self::Us5 => "http-intake.logs.us5.datadoghq.com",
            Self::Eu => "http-intake.logs.datadoghq.eu",
            Self::Ap1 => "http-intake.logs.ap1.datadoghq.com",
            Self::Ap2 => "http-intake.logs.ap2.datadoghq.com",
            Self::Uk1 => "http-intake.logs.uk1.datadoghq.com",
            Self::Us1Fed => "http-intake.logs.ddog-gov.com",
            Self::Us2Fed => "http-intake.logs.us2.ddog-gov.com",
        }
    }
}

impl fmt::Display for DatadogSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Datadog API key: exactly 32 characters of `0-9a-f`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatadogApiKey(Secret);

pub const DATADOG_API_KEY_LEN: usize = 32;

impl DatadogApiKey {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        let valid = value.len() == DATADOG_API_KEY_LEN
            && value
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            // Never echo the value: a near-miss is still somebody's key.
            return Err(ValidationError::new(
                "destination_config.datadog.api_key",
                "must be 32 characters of 0-9 and a-f (a Datadog API key, not an application key)",
            ));
        }
        Ok(Self(Secret::new(value)))
    }

    pub fn secret(&self) -> &Secret {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatadogDestination {
    pub site: DatadogSite,
    pub api_key: DatadogApiKey,
    pub tags: DatadogTags,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_site_round_trips_through_its_name() {
        for site in DatadogSite::ALL {
            assert_eq!(DatadogSite::parse(site.as_str()), Ok(site));
            let json = serde_json::to_string(&site).unwrap();
            assert_eq!(json, format!("\"{}\"", site.as_str()));
        }
    }

    #[test]
    fn sites_map_to_the_documented_intake_hosts() {
        assert_eq!(
            DatadogSite::Us.intake_host(),
            "http-intake.logs.datadoghq.com"
        );
        assert_eq!(
            DatadogSite::Eu.intake_host(),
            "http-intake.logs.datadoghq.eu"
        );
        assert_eq!(
            DatadogSite::Us1Fed.intake_host(),
            "http-intake.logs.ddog-gov.com"
        );
        assert_eq!(
            DatadogSite::parse("US2_FED").unwrap().intake_host(),
            "http-intake.logs.us2.ddog-gov.com"
        );
    }

    #[test]
    fn unknown_and_lowercase_sites_are_refused() {
        assert!(DatadogSite::parse("us").is_err());
        assert!(DatadogSite::parse("EU1").is_err());
    }

    #[test]
    fn api_keys_are_32_lowercase_hex_characters() {
        assert!(DatadogApiKey::parse("0123456789abcdef0123456789abcdef").is_ok());
        for bad in [
            "0123456789ABCDEF0123456789ABCDEF",
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdef0",
            "0123456789abcdef0123456789abcdeg",
        ] {
            let err = DatadogApiKey::parse(bad).unwrap_err();
            assert!(!err.to_string().contains(bad));
        }
    }
}
