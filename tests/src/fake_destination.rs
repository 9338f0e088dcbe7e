//! Strict local stand-ins for Grafana Loki and the Datadog logs intake, over real TLS.
//!
//! They check what the real services check (method, path, headers, credentials, gzip, body
//! shape, timestamps as strings, sorted values, size limits, Loki's label names and tenant
//! IDs, Datadog's tags) and record every breach as a violation, so a test can assert the
//! streamer never sends what a real server would refuse. They keep each request's headers.
//! Scripted answers (429, 500, 401, 400, slow, connection reset) play the failure modes.

use std::collections::VecDeque;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use flate2::read::GzDecoder;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::tls::pki;

/// Loki 3.x's default line limit.
pub const LOKI_MAX_LINE_BYTES: usize = 256 * 1024;
/// The body cap of the nginx gateways commonly in front of Loki.
pub const LOKI_GATEWAY_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
pub const DATADOG_MAX_BODY_BYTES: usize = 5 * 1024 * 1024;
pub const DATADOG_MAX_ITEMS: usize = 1000;
pub const DATADOG_MAX_LOG_BYTES: usize = 1024 * 1024;
/// Loki 3.x's default `max_label_names_per_series`.
pub const LOKI_MAX_LABELS: usize = 15;
/// Loki's bound on a tenant ID (`X-Scope-OrgID`).
pub const LOKI_MAX_TENANT_BYTES: usize = 150;

#[derive(Clone)]
pub enum Kind {
    Loki {
        username: String,
        password: String,
    },
    Datadog {
        api_key: String,
    },
    /// Answers every push at once with the success of the service its path names, checking
    /// nothing: for benchmarks, where the server's own work must not be measured.
    Sink,
}

/// The answer to the next request instead of the normal one.
#[derive(Debug, Clone)]
pub enum Script {
    Status(u16, &'static str),
    RetryAfter(u16, u64),
    /// Drop the connection without an answer.
    Reset,
    /// Answer normally, but only after a while.
    Slow(Duration),
    /// Store the entries at once but answer only after a while, drawn by [`Chaos`]: a client
    /// that gave up meanwhile sends them again.
    Late(Duration),
}

fn draw_chaos(state: &State) -> Option<Script> {
    let mut chaos = state.chaos.lock().unwrap();
    let (chaos, rng) = chaos.as_mut()?;
    let draw = rng.f64();
    let mut threshold = chaos.too_many_requests;
    if draw < threshold {
        return Some(Script::Status(429, "Too Many Requests"));
    }
    threshold += chaos.server_errors;
    if draw < threshold {
        let status = [500, 502, 503][rng.usize(..3)];
        return Some(Script::Status(status, "upstream failure"));
    }
    threshold += chaos.resets;
    if draw < threshold {
        return Some(Script::Reset);
    }
    threshold += chaos.late;
    (draw < threshold).then_some(Script::Late(chaos.late_by))
}

/// Failures drawn at random for every request without a scripted answer: a destination that
/// misbehaves the way real ones do under load. Seeded, so a run can be repeated.
#[derive(Debug, Clone)]
pub struct Chaos {
    pub seed: u64,
    /// Share of requests answered 429.
    pub too_many_requests: f64,
    /// Share answered 500, 502 or 503 (a third each).
    pub server_errors: f64,
    /// Share whose connection is dropped without an answer.
    pub resets: f64,
    /// Share answered normally, entries stored, but only after `late_by`: if the client gave
    /// up before, it sends them again.
    pub late: f64,
    pub late_by: Duration,
}

/// One entry the server accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The log line (Loki) or `message` (Datadog): the record as the producer wrote it.
    pub line: String,
    /// Loki: nanoseconds; Datadog: milliseconds.
    pub timestamp: i128,
    /// Loki: the stream labels; Datadog: the log object without `message`.
    pub meta: Value,
    /// Loki: the tenant the push named (`X-Scope-OrgID`); Datadog: none.
    pub tenant: Option<String>,
}

impl Accepted {
    pub fn field(&self, name: &str) -> Value {
        serde_json::from_str::<Value>(&self.line).unwrap()[name].clone()
    }
}

struct State {
    kind: Kind,
    script: Mutex<VecDeque<Script>>,
    /// TLS connections accepted.
    connections: AtomicUsize,
    requests: AtomicUsize,
    /// Bytes of request bodies as sent (gzipped), counted by the sink.
    body_bytes: AtomicUsize,
    accepted: Mutex<Vec<Accepted>>,
    /// The headers of every request, in the order they came.
    headers: Mutex<Vec<HeaderMap>>,
    violations: Mutex<Vec<String>>,
    max_body_bytes: Mutex<Option<usize>>,
    invalid_marker: Mutex<Option<String>>,
    chaos: Mutex<Option<(Chaos, fastrand::Rng)>>,
    /// Entries stored by late answers.
    late_accepted: Mutex<Vec<Accepted>>,
}

pub struct FakeDestination {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for FakeDestination {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeDestination {
    pub async fn loki(username: &str, password: &str) -> Self {
        Self::start(Kind::Loki {
            username: username.into(),
            password: password.into(),
        })
        .await
    }

    /// A sink for benchmarks: see [`Kind::Sink`].
    pub async fn sink() -> Self {
        Self::start(Kind::Sink).await
    }

    /// Request body bytes the sink received.
    pub fn body_bytes(&self) -> usize {
        self.state.body_bytes.load(Ordering::Relaxed)
    }

    pub async fn datadog(api_key: &str) -> Self {
        Self::start(Kind::Datadog {
            api_key: api_key.into(),
        })
        .await
    }

    async fn start(kind: Kind) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::from(pki().server_config.clone());
        let state = Arc::new(State {
            kind,
            script: Mutex::new(VecDeque::new()),
            connections: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            body_bytes: AtomicUsize::new(0),
            accepted: Mutex::new(Vec::new()),
            headers: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
            max_body_bytes: Mutex::new(None),
            invalid_marker: Mutex::new(None),
            chaos: Mutex::new(None),
            late_accepted: Mutex::new(Vec::new()),
        });
        let server_state = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                // As real servers do; otherwise delayed ACKs add 40 ms to small answers.
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let state = server_state.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    state.connections.fetch_add(1, Ordering::SeqCst);
                    let service = service_fn(move |request| handle(state.clone(), request));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self { addr, state, task }
    }

    /// `localhost:PORT`, what a customer would enter as the Loki hostname.
    pub fn hostname(&self) -> String {
        format!("localhost:{}", self.addr.port())
    }

    pub fn base_url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    pub fn script(&self, answers: impl IntoIterator<Item = Script>) {
        self.state.script.lock().unwrap().extend(answers);
    }

    /// Answer 413 to bodies larger than this (uncompressed), as a proxy would.
    pub fn limit_body_bytes(&self, bytes: usize) {
        *self.state.max_body_bytes.lock().unwrap() = Some(bytes);
    }

    /// Treat entries whose line contains `marker` as invalid, the way each service does:
    /// Loki stores the valid entries of the push and answers 400; Datadog refuses the whole
    /// payload with 400.
    pub fn refuse_lines_containing(&self, marker: &str) {
        *self.state.invalid_marker.lock().unwrap() = Some(marker.to_owned());
    }

    /// Misbehave at random, as `chaos` says, from now on.
    pub fn chaos(&self, chaos: Chaos) {
        let rng = fastrand::Rng::with_seed(chaos.seed);
        *self.state.chaos.lock().unwrap() = Some((chaos, rng));
    }

    /// Entries stored by answers that came late.
    pub fn late_accepted(&self) -> Vec<Accepted> {
        self.state.late_accepted.lock().unwrap().clone()
    }

    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// TLS connections the client opened.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    pub fn accepted(&self) -> Vec<Accepted> {
        self.state.accepted.lock().unwrap().clone()
    }

    pub fn accepted_event_ids(&self) -> Vec<String> {
        self.accepted()
            .iter()
            .map(|a| a.field("event_id").as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The headers of every request but the sink's, in the order they came.
    pub fn request_headers(&self) -> Vec<HeaderMap> {
        self.state.headers.lock().unwrap().clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.state.violations.lock().unwrap().clone()
    }
}

type Answer = Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>>;

fn answer(status: u16, body: impl Into<Bytes>) -> Answer {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    Ok(response)
}

async fn handle(state: Arc<State>, request: Request<Incoming>) -> Answer {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if let Kind::Sink = state.kind {
        let loki = request.uri().path().starts_with("/loki/");
        let body = request.into_body().collect().await?.to_bytes();
        state.body_bytes.fetch_add(body.len(), Ordering::Relaxed);
        return if loki {
            answer(204, "")
        } else {
            answer(202, "{}")
        };
    }
    state
        .headers
        .lock()
        .unwrap()
        .push(request.headers().clone());
    let scripted = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or_else(|| draw_chaos(&state));
    let late_by = match &scripted {
        Some(Script::Late(delay)) => Some(*delay),
        _ => None,
    };
    match scripted {
        Some(Script::Status(status, body)) => return answer(status, body),
        Some(Script::RetryAfter(status, seconds)) => {
            let mut response = answer(status, "slow down")?;
            response
                .headers_mut()
                .insert("retry-after", seconds.to_string().parse().unwrap());
            return Ok(response);
        }
        Some(Script::Reset) => return Err("scripted connection reset".into()),
        Some(Script::Slow(delay)) => tokio::time::sleep(delay).await,
        Some(Script::Late(_)) | None => {}
    }
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let (result, success) = match &state.kind {
        Kind::Loki { username, password } => {
            (loki(&state, &parts, &body, username, password), (204, ""))
        }
        Kind::Datadog { api_key } => (datadog(&state, &parts, &body, api_key), (202, "{}")),
        Kind::Sink => unreachable!("the sink answered above"),
    };
    let marker = state.invalid_marker.lock().unwrap().clone();
    let result = result.and_then(|accepted| match &marker {
        Some(marker) if accepted.iter().any(|a| a.line.contains(marker.as_str())) => {
            let (invalid, valid): (Vec<Accepted>, Vec<Accepted>) = accepted
                .into_iter()
                .partition(|a| a.line.contains(marker.as_str()));
            if matches!(state.kind, Kind::Loki { .. }) {
                state.accepted.lock().unwrap().extend(valid);
            }
            Err(Refusal::Answer(
                400,
                format!(
                    "entry with timestamp {} ignored, reason: 'invalid entry', total ignored: {}",
                    invalid[0].timestamp,
                    invalid.len()
                ),
            ))
        }
        _ => Ok(accepted),
    });
    match result {
        Ok(accepted) => {
            if late_by.is_some() {
                state.late_accepted.lock().unwrap().extend(accepted.clone());
            }
            state.accepted.lock().unwrap().extend(accepted);
            // Stored now, answered only after the client may have given up.
            if let Some(delay) = late_by {
                tokio::time::sleep(delay).await;
            }
            answer(success.0, success.1)
        }
        Err(Refusal::Violation(status, message)) => {
            state.violations.lock().unwrap().push(message.clone());
            answer(status, message)
        }
        Err(Refusal::Answer(status, message)) => answer(status, message),
    }
}

enum Refusal {
    /// The client broke the protocol: a bug on our side.
    Violation(u16, String),
    /// A legitimate refusal (bad credentials, a proxy's size cap).
    Answer(u16, String),
}

fn violation<T>(status: u16, message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::Violation(status, message.into()))
}

fn header<'a>(parts: &'a hyper::http::request::Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks method, path, content type and encoding; returns the decompressed body.
fn common(
    state: &State,
    parts: &hyper::http::request::Parts,
    body: &[u8],
    path: &str,
    real_limit: usize,
) -> Result<Vec<u8>, Refusal> {
    if parts.method != hyper::Method::POST || parts.uri.path() != path {
        return violation(
            404,
            format!("{} {} is not {path}", parts.method, parts.uri.path()),
        );
    }
    if header(parts, "content-type") != Some("application/json") {
        return violation(400, "Content-Type must be application/json");
    }
    if header(parts, "content-encoding") != Some("gzip") {
        return violation(400, "Content-Encoding must be gzip");
    }
    let mut json = Vec::new();
    if GzDecoder::new(body).read_to_end(&mut json).is_err() {
        return violation(400, "body is not valid gzip");
    }
    if json.len() > real_limit {
        return violation(
            413,
            format!("body of {} bytes exceeds {real_limit}", json.len()),
        );
    }
    if let Some(limit) = *state.max_body_bytes.lock().unwrap()
        && json.len() > limit
    {
        return Err(Refusal::Answer(413, "Request Entity Too Large".into()));
    }
    Ok(json)
}

fn loki(
    state: &State,
    parts: &hyper::http::request::Parts,
    body: &[u8],
    username: &str,
    password: &str,
) -> Result<Vec<Accepted>, Refusal> {
    {
        let expected = format!("Basic {}", BASE64.encode(format!("{username}:{password}")));
        if header(parts, "authorization") != Some(expected.as_str()) {
            return Err(Refusal::Answer(
                401,
                "invalid authentication credentials".into(),
            ));
        }
        let json = common(
            state,
            parts,
            body,
            "/loki/api/v1/push",
            LOKI_GATEWAY_MAX_BODY_BYTES,
        )?;
        let tenant = header(parts, "x-scope-orgid").map(str::to_owned);
        if let Some(tenant) = &tenant
            && !is_tenant_id(tenant)
        {
            return violation(400, "X-Scope-OrgID is not one valid tenant ID");
        }
        let push: Value = serde_json::from_slice(&json)
            .or_else(|e| violation(400, format!("body is not JSON: {e}")))?;
        let Some(streams) = push["streams"].as_array() else {
            return violation(400, "no streams array");
        };
        if streams.is_empty() {
            return violation(422, "push with zero streams");
        }
        let mut accepted = Vec::new();
        for stream in streams {
            let labels = stream["stream"].as_object().cloned().unwrap_or_default();
            let names: Vec<&str> = labels.keys().map(String::as_str).collect();
            if !names.contains(&"source")
                || !names.contains(&"service_name")
                || labels.values().any(|v| !v.is_string())
            {
                return violation(
                    400,
                    format!("labels must hold source and service_name: {labels:?}"),
                );
            }
            if names.len() > LOKI_MAX_LABELS || !names.iter().all(|n| is_label_name(n)) {
                return violation(400, format!("invalid label names: {names:?}"));
            }
            let Some(values) = stream["values"].as_array().filter(|v| !v.is_empty()) else {
                return violation(400, "a stream without values");
            };
            let mut previous = 0i128;
            for value in values {
                let pair = value.as_array().cloned().unwrap_or_default();
                if pair.len() != 2 {
                    return violation(
                        400,
                        "a value must be [timestamp, line] (no structured metadata)",
                    );
                }
                let Some(timestamp) = pair[0].as_str().and_then(|t| t.parse::<i128>().ok()) else {
                    return violation(400, "timestamp must be a string of Unix nanoseconds");
                };
                let Some(line) = pair[1].as_str() else {
                    return violation(400, "line must be a string");
                };
                if line.len() > LOKI_MAX_LINE_BYTES {
                    return violation(400, "max entry size exceeded");
                }
                if timestamp < previous {
                    return violation(400, "entry out of order within the stream");
                }
                previous = timestamp;
                accepted.push(Accepted {
                    line: line.to_owned(),
                    timestamp,
                    meta: Value::Object(labels.clone()),
                    tenant: tenant.clone(),
                });
            }
        }
        Ok(accepted)
    }
}

fn datadog(
    state: &State,
    parts: &hyper::http::request::Parts,
    body: &[u8],
    api_key: &str,
) -> Result<Vec<Accepted>, Refusal> {
    {
        if header(parts, "dd-api-key") != Some(api_key) {
            return Err(Refusal::Answer(
                403,
                r#"{"errors":[{"status":"403","title":"Forbidden","detail":"Forbidden"}]}"#.into(),
            ));
        }
        let json = common(state, parts, body, "/api/v2/logs", DATADOG_MAX_BODY_BYTES)?;
        let logs: Value = serde_json::from_slice(&json)
            .or_else(|e| violation(400, format!("body is not JSON: {e}")))?;
        let Some(logs) = logs.as_array() else {
            return violation(400, "body must be a JSON array of logs");
        };
        if logs.is_empty() || logs.len() > DATADOG_MAX_ITEMS {
            return violation(400, format!("{} logs in one request", logs.len()));
        }
        let mut accepted = Vec::new();
        for log in logs {
            let (Some(message), Some(timestamp)) =
                (log["message"].as_str(), log["timestamp"].as_i64())
            else {
                return violation(400, "a log needs a message string and integer timestamp");
            };
            if !log["ddsource"].is_string()
                || !log["service"].is_string()
                || !log["ddtags"].is_string()
            {
                return violation(400, "ddsource, service and ddtags must be strings");
            }
            if !log["ddtags"]
                .as_str()
                .unwrap()
                .split(',')
                .all(is_datadog_tag)
            {
                return violation(400, "ddtags must be key:value tags (Datadog's tag rules)");
            }
            if message.len() > DATADOG_MAX_LOG_BYTES {
                return violation(400, "log larger than 1 MB (Datadog would truncate it)");
            }
            let mut meta = log.clone();
            meta.as_object_mut().unwrap().remove("message");
            accepted.push(Accepted {
                line: message.to_owned(),
                timestamp: i128::from(timestamp),
                meta,
                tenant: None,
            });
        }
        Ok(accepted)
    }
}

/// Loki's label names: `[a-zA-Z_][a-zA-Z0-9_]*`, `__` kept for Loki itself.
fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// One tenant ID as Loki reads `X-Scope-OrgID` (several, `a|b`, are refused on push).
fn is_tenant_id(tenant: &str) -> bool {
    (1..=LOKI_MAX_TENANT_BYTES).contains(&tenant.len())
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!-_.*'()".contains(&b))
        && tenant != "."
        && tenant != ".."
}

/// A tag as Datadog keeps it unchanged: a letter first, then letters, digits and `_-:./`, at
/// most 200 characters.
fn is_datadog_tag(tag: &str) -> bool {
    tag.starts_with(char::is_alphabetic)
        && tag.chars().count() <= 200
        && tag
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ':' | '.' | '/'))
}
