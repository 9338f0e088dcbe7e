//! A loopback proxy in front of moto, for the AWS answers moto never gives: a throttled
//! BatchGetItem's `UnprocessedKeys`, a secret still being deleted. Each request (AWS JSON
//! protocol: `X-Amz-Target` and a JSON body) goes to a test's rule, which may change it,
//! answer it itself, or change moto's answer.

use std::sync::Arc;

use aws_config::SdkConfig;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::moto::moto;

/// What to do with one request, once the rule has seen (and perhaps changed) its body.
pub enum Step {
    /// Send it to moto and return moto's answer.
    Forward,
    /// As [`Step::Forward`], after a wait: a slow service.
    ForwardAfter(std::time::Duration),
    /// Send it to moto, then change moto's answer.
    ForwardAndEdit(Box<dyn FnOnce(&mut Value) + Send>),
    /// Answer with this AWS error instead of moto, as the service would: a 400 whose body
    /// names the error type.
    Fail {
        error_type: &'static str,
        message: &'static str,
    },
}

/// A rule sees each request's operation (`X-Amz-Target`, such as
/// `DynamoDB_20120810.BatchGetItem`) and JSON body.
pub type Rule = dyn Fn(&str, &mut Value) -> Step + Send + Sync;

pub struct MotoProxy {
    endpoint: String,
}

impl MotoProxy {
    pub async fn start(rule: impl Fn(&str, &mut Value) -> Step + Send + Sync + 'static) -> Self {
        let rule: Arc<Rule> = Arc::new(rule);
        let http = reqwest::Client::new();
        let handler = move |headers: HeaderMap, body: Bytes| {
            let (rule, http) = (rule.clone(), http.clone());
            async move {
                let target = headers["x-amz-target"].to_str().unwrap().to_owned();
                let content_type = headers["content-type"].to_str().unwrap().to_owned();
                let mut request: Value = serde_json::from_slice(&body).unwrap();
                let edit = match rule(&target, &mut request) {
                    Step::Forward => None,
                    Step::ForwardAfter(wait) => {
                        tokio::time::sleep(wait).await;
                        None
                    }
                    Step::ForwardAndEdit(edit) => Some(edit),
                    Step::Fail {
                        error_type,
                        message,
                    } => {
                        let body = serde_json::json!({ "__type": error_type, "message": message });
                        return answer(StatusCode::BAD_REQUEST, content_type, &body);
                    }
                };
                // moto reads no signature, so the edited body can keep the original one.
                let forwarded = http
                    .post(&moto().endpoint)
                    .header("x-amz-target", &target)
                    .header("content-type", &content_type)
                    .header("authorization", &headers["authorization"])
                    .body(request.to_string())
                    .send()
                    .await
                    .unwrap();
                let status = StatusCode::from_u16(forwarded.status().as_u16()).unwrap();
                let mut body: Value =
                    serde_json::from_slice(&forwarded.bytes().await.unwrap()).unwrap();
                if let Some(edit) = edit {
                    edit(&mut body);
                }
                answer(status, content_type, &body)
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/", axum::routing::post(handler));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { endpoint }
    }

    /// An SDK configuration that talks to moto through this proxy.
    pub async fn sdk_config(&self) -> SdkConfig {
        moto()
            .sdk_config()
            .await
            .into_builder()
            .endpoint_url(&self.endpoint)
            .build()
    }
}

/// An answer in the protocol version the request used.
fn answer(
    status: StatusCode,
    content_type: String,
    body: &Value,
) -> (StatusCode, [(&'static str, String); 1], String) {
    (status, [("content-type", content_type)], body.to_string())
}
