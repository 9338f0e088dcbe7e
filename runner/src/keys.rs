//! The local runner's management key: created on first start, its secret printed once and
//! only its SHA-256 kept, in the same JSON shape as the management keys secret in AWS.

use std::path::Path;

use config_api::auth::ManagementKey;
use event_log_streaming::store::write_private_atomically;

pub const LOCAL_KEY_ID: &str = "local-admin";
/// The keys file in the data directory; `els-admin --local` changes it too.
pub const KEYS_FILE_NAME: &str = "management-keys.json";

/// The keys in `path`; on first start, a new all-projects key whose secret is returned once.
pub fn load_or_create(path: &Path) -> std::io::Result<(Vec<ManagementKey>, Option<String>)> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let keys = serde_json::from_str(&text).map_err(|e| {
                std::io::Error::other(format!(
                    "{} is not a list of management keys: {e}",
                    path.display()
                ))
            })?;
            Ok((keys, None))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 24];
            getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
            let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let key = ManagementKey {
                created_at: Some(time::OffsetDateTime::now_utc()),
                ..ManagementKey::new(LOCAL_KEY_ID, &secret, &["*"])
            };
            let stored = serde_json::to_string_pretty(std::slice::from_ref(&key))?;
            write_private_atomically(path, stored.as_bytes())?;
            Ok((vec![key], Some(secret)))
        }
        Err(e) => Err(e),
    }
}
