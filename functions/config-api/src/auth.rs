//! Management keys: HTTP Basic with `key_id:secret`.
//!
//! Keys live in one Secrets Manager secret (`MANAGEMENT_KEYS_SECRET_ID`) as a JSON list of
//! `{key_id, secret_sha256, projects}`, where `projects` lists project ids or is `["*"]`, and
//! optionally `created_at` (RFC 3339; `els-admin keys create` sets it, older lists lack it). Only
//! the SHA-256 of each secret is stored, and it is compared in constant time. The list is
//! cached for [`KEYS_CACHE_TTL`] so that a rotation takes effect within a minute.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Path};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use event_log_streaming::domain::ProjectId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::{AppState, request_id};

pub const KEYS_CACHE_TTL: Duration = Duration::from_secs(60);

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ManagementKey {
    pub key_id: String,
    /// Lowercase hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// Project ids, or `"*"` for every project.
    pub projects: Vec<String>,
    /// When the key was made, for operators; keys written before it was kept have none.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub created_at: Option<time::OffsetDateTime>,
}

impl ManagementKey {
    pub fn new(key_id: &str, secret: &str, projects: &[&str]) -> Self {
        Self {
            key_id: key_id.into(),
            secret_sha256: sha256_hex(secret),
            projects: projects.iter().map(|p| p.to_string()).collect(),
            created_at: None,
        }
    }

    fn may_manage(&self, project: &ProjectId) -> bool {
        self.projects
            .iter()
            .any(|p| p == "*" || p == project.as_str())
    }
}

pub fn sha256_hex(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub enum KeySource {
    SecretsManager {
        client: aws_sdk_secretsmanager::Client,
        secret_id: String,
    },
    /// Keys held in memory (the local runner, tests).
    Fixed(Vec<ManagementKey>),
}

pub struct ManagementKeys {
    source: KeySource,
    cache: Mutex<Option<(Instant, Vec<ManagementKey>)>>,
}

impl ManagementKeys {
    pub fn new(source: KeySource) -> Self {
        Self {
            source,
            cache: Mutex::new(None),
        }
    }

    async fn keys(&self) -> Result<Vec<ManagementKey>, ApiError> {
        let (client, secret_id) = match &self.source {
            KeySource::Fixed(keys) => return Ok(keys.clone()),
            KeySource::SecretsManager { client, secret_id } => (client, secret_id),
        };
        if let Some((fetched, keys)) = &*self.cache.lock().unwrap()
            && fetched.elapsed() < KEYS_CACHE_TTL
        {
            return Ok(keys.clone());
        }
        // The stage named, as AWS defaults it: moto otherwise answers with the version last
        // put as current, not the one `els-admin` moved the stage to.
        let output = client
            .get_secret_value()
            .secret_id(secret_id)
            .version_stage("AWSCURRENT")
            .send()
            .await
            .map_err(|e| {
                tracing::error!(request_id = %request_id(), error = %aws_sdk_secretsmanager::error::DisplayErrorContext(e), "cannot read the management keys");
                ApiError::Unavailable
            })?;
        let keys: Vec<ManagementKey> =
            serde_json::from_str(output.secret_string().unwrap_or_default()).map_err(|e| {
                // Position only: the secret's text must not reach the logs.
                tracing::error!(request_id = %request_id(), line = e.line(), column = e.column(), "the management keys secret is not a JSON list of {{key_id, secret_sha256, projects}}");
                ApiError::Internal
            })?;
        *self.cache.lock().unwrap() = Some((Instant::now(), keys.clone()));
        Ok(keys)
    }

    /// The key of a valid `Authorization: Basic` header.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
    ) -> Result<ManagementKey, ApiError> {
        let (key_id, secret) = authorization
            .and_then(|h| h.strip_prefix("Basic "))
            .and_then(|b64| BASE64.decode(b64.trim()).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|pair| {
                pair.split_once(':')
                    .map(|(k, s)| (k.to_owned(), s.to_owned()))
            })
            .ok_or(ApiError::Unauthorized)?;
        let presented = sha256_hex(&secret);
        let keys = self.keys().await?;
        let key = keys.into_iter().find(|k| k.key_id == key_id);
        // Compare even for an unknown key id, so timing does not tell which ids exist.
        let expected = key
            .as_ref()
            .map_or_else(|| sha256_hex(""), |k| k.secret_sha256.clone());
        let equal: bool = presented.as_bytes().ct_eq(expected.as_bytes()).into();
        match key {
            Some(key) if equal => Ok(key),
            _ => Err(ApiError::Unauthorized),
        }
    }
}

/// A request authenticated by a management key allowed to manage the path's project.
pub struct Authorized {
    pub key_id: String,
    pub project: ProjectId,
}

impl FromRequestParts<AppState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let authorization = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let key = state.keys.authenticate(authorization).await?;
        let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound("no such resource".into()))?;
        let project = params
            .iter()
            .find(|(name, _)| name == "project_id")
            .map(|(_, value)| ProjectId::parse(value))
            .ok_or(ApiError::NotFound("no such resource".into()))??;
        if !key.may_manage(&project) {
            return Err(ApiError::Forbidden);
        }
        Ok(Self {
            key_id: key.key_id,
            project,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(key_id: &str, secret: &str) -> String {
        format!("Basic {}", BASE64.encode(format!("{key_id}:{secret}")))
    }

    #[tokio::test]
    async fn only_a_known_key_with_its_secret_authenticates() {
        let keys = ManagementKeys::new(KeySource::Fixed(vec![ManagementKey::new(
            "key-1",
            "s3cret",
            &["*"],
        )]));
        assert!(
            keys.authenticate(Some(&basic("key-1", "s3cret")))
                .await
                .is_ok()
        );
        for header in [
            Some(basic("key-1", "wrong")),
            Some(basic("key-2", "s3cret")),
            Some(basic("key-1", "")),
            Some("Bearer abc".to_owned()),
            Some("Basic !!!".to_owned()),
            None,
        ] {
            assert!(
                matches!(
                    keys.authenticate(header.as_deref()).await,
                    Err(ApiError::Unauthorized)
                ),
                "{header:?}"
            );
        }
    }

    #[test]
    fn lists_with_and_without_a_creation_time_parse_and_unknown_fields_do_not() {
        let old = r#"[{"key_id":"k","secret_sha256":"ab","projects":["*"]}]"#;
        let keys: Vec<ManagementKey> = serde_json::from_str(old).unwrap();
        assert!(keys[0].created_at.is_none());
        let new = r#"[{"key_id":"k","secret_sha256":"ab","projects":["p"],"created_at":"2026-01-02T03:04:05Z"}]"#;
        let keys: Vec<ManagementKey> = serde_json::from_str(new).unwrap();
        assert_eq!(keys[0].created_at.unwrap().year(), 2026);
        // Written back as read: an old key gains no field.
        let written =
            serde_json::to_string(&serde_json::from_str::<Vec<ManagementKey>>(old).unwrap())
                .unwrap();
        assert_eq!(written, old);
        let unknown = r#"[{"key_id":"k","secret_sha256":"ab","projects":["*"],"role":"x"}]"#;
        assert!(serde_json::from_str::<Vec<ManagementKey>>(unknown).is_err());
    }

    #[test]
    fn scopes_are_project_ids_or_a_wildcard() {
        let project = ProjectId::parse("p-1").unwrap();
        assert!(ManagementKey::new("k", "s", &["*"]).may_manage(&project));
        assert!(ManagementKey::new("k", "s", &["p-0", "p-1"]).may_manage(&project));
        assert!(!ManagementKey::new("k", "s", &["p-2"]).may_manage(&project));
        assert!(!ManagementKey::new("k", "s", &[]).may_manage(&project));
    }
}
