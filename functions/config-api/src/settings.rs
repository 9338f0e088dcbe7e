//! The config API's environment settings, read once per container.

use std::time::Duration;

use event_log_streaming::settings::{
    CredentialStoreKind, DestinationSettings, SettingsError, cache_ttl_seconds,
    config_secret_prefix, credential_store, stream_table_name,
};

#[derive(Debug, Clone)]
pub struct ConfigApiSettings {
    /// `CONFIG_SECRET_PREFIX`, as for the streamer.
    pub config_secret_prefix: String,
    /// `CREDENTIAL_STORE` and `CREDENTIAL_KMS_KEY_ID`, as for the streamer.
    pub credential_store: CredentialStoreKind,
    /// `STREAM_TABLE_NAME` (required): the DynamoDB table of streams.
    pub stream_table_name: String,
    /// `MANAGEMENT_KEYS_SECRET_ID` (required): the secret holding the management keys.
    pub management_keys_secret_id: String,
    /// Labels and network settings for the test endpoint, as for the streamer.
    pub destinations: DestinationSettings,
    /// `CONFIG_CACHE_TTL_SECONDS`: the streamer's cache TTL (default 30). An enable is dated
    /// this far ahead, so that no streamer container still holds the disabled configuration
    /// when the first event that must be streamed arrives.
    pub streaming_start_delay: Duration,
}

impl ConfigApiSettings {
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        Ok(Self {
            config_secret_prefix: config_secret_prefix(lookup),
            credential_store: credential_store(lookup)?,
            stream_table_name: stream_table_name(lookup)?,
            management_keys_secret_id: get("MANAGEMENT_KEYS_SECRET_ID").ok_or(SettingsError {
                name: "MANAGEMENT_KEYS_SECRET_ID",
                message: "must name the secret that holds the management keys".into(),
            })?,
            destinations: DestinationSettings::from_lookup(lookup)?,
            streaming_start_delay: Duration::from_secs(cache_ttl_seconds(lookup)?),
        })
    }
}
