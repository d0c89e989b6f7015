//! The pre-dial check API: `POST /v1/check` on a listener of its own (`[check]`).
//!
//! A dialer sends one candidate call (call event v1; `call_id` and `occurred_at` optional) or
//! `{"calls": [...]}`, and learns per call whether it may be dialed, the breaches it would
//! cause, and `next_allowed_at`. With `"reserve": true` an allowed candidate is counted by
//! later checks until the call arrives on the input topic or the reservation expires, so two
//! agents racing for the last allowed attempt cannot both get it.
//!
//! # How it reaches the state
//! The HTTP handler (on the tokio runtime) authenticates, limits and decodes the request with
//! the same decoder as the input topic, then hands the calls to the processing thread over a
//! bounded queue ([`CheckRequest`]). That thread owns the engine: it answers between records
//! (and at once when idle) with [`crate::engine::Engine::verdict`] and reserves, so a verdict
//! reads the state after whole records, and reservations need no locks. The handler renders
//! the answer. A full queue, or no answer within `check.timeout`, is a 503 with
//! `Retry-After` — a check never holds the processing loop up beyond serving it.

use crate::alert;
use crate::codec::{Decoder, Reason};
use crate::config::CheckSettings;
use crate::engine::event::Call;
use crate::engine::rule::Rule;
use crate::engine::time::Ts;
use crate::engine::Verdict;
use crate::service::{Health, Shutdown};
use crate::telemetry::Metrics;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Candidate calls for the processing thread to judge.
pub struct CheckRequest {
    /// The decoded candidates.
    pub calls: Vec<Call>,
    /// Reserve each allowed candidate for this long.
    pub reserve: Option<Duration>,
    /// Where the answer goes; closed when the handler gave up waiting (then nothing is judged
    /// or reserved).
    pub reply: tokio::sync::oneshot::Sender<CheckReply>,
}

/// The processing thread's answer to a [`CheckRequest`].
pub struct CheckReply {
    /// The candidates, handed back for rendering.
    pub calls: Vec<Call>,
    /// Per candidate, in order: the verdict, and until when it is reserved (wall clock).
    pub results: Vec<(Verdict, Option<Ts>)>,
    /// What the state reflects.
    pub as_of: AsOf,
}

/// What the state a verdict read reflects.
#[derive(Debug, Clone, Default)]
pub struct AsOf {
    /// The newest event time judged, over the assigned partitions.
    pub event_time: Option<Ts>,
    /// Per input partition: the next offset to judge (every record before it is in the state).
    pub offsets: Vec<(i32, i64)>,
}

/// The processing thread's end of the queue.
pub type CheckQueue = std::sync::mpsc::Receiver<CheckRequest>;

struct Api {
    queue: SyncSender<CheckRequest>,
    settings: CheckSettings,
    rules: Arc<Vec<Rule>>,
    decoder: Mutex<Decoder>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// Ids for candidates that bring none: a per-process prefix and a counter.
    id_prefix: String,
    next_id: AtomicU64,
}

/// The queue for [`serve`] and the processing thread, bounded by `check.queue`.
pub fn queue(settings: &CheckSettings) -> (SyncSender<CheckRequest>, CheckQueue) {
    std::sync::mpsc::sync_channel(settings.queue)
}

/// Serves `POST /v1/check` until `shutdown` is triggered.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    listener: tokio::net::TcpListener,
    queue: SyncSender<CheckRequest>,
    settings: CheckSettings,
    rules: Vec<Rule>,
    decoder: Decoder,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: Shutdown,
) {
    let limit = settings.max_body_bytes;
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let api = Arc::new(Api {
        queue,
        settings,
        rules: Arc::new(rules),
        decoder: Mutex::new(decoder),
        metrics,
        health,
        id_prefix: format!("check-{:x}-{:x}", std::process::id(), started),
        next_id: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/v1/check", post(check))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(api);
    let stop = async move { shutdown.wait().await };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::warn!(error = %e, "check server stopped");
    }
}

/// A JSON answer.
fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response()
}

/// The `mode` query parameter: `status` answers 200 when every candidate may be dialed and
/// 409 otherwise; `full` (the default) always 200.
fn mode(uri: &Uri) -> Option<&str> {
    uri.query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("mode="))
}

/// A refusal of the request itself (not a verdict).
fn refuse(
    api: &Api,
    status: StatusCode,
    verdict: &str,
    error: &str,
    detail: String,
    index: Option<usize>,
) -> Response {
    api.metrics.checks.with_label_values(&[verdict]).inc();
    let mut body = json!({"error": error, "detail": detail});
    if let Some(i) = index {
        body["index"] = json!(i);
    }
    let mut r = json_response(status, &body);
    match status {
        StatusCode::UNAUTHORIZED => {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        _ => {}
    }
    r
}

/// Equal without an early exit, so response times do not reveal a token's prefix.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn authorized(api: &Api, headers: &HeaderMap) -> bool {
    if api.settings.tokens.is_empty() {
        return true;
    }
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
    else {
        return false;
    };
    api.settings
        .tokens
        .iter()
        .fold(false, |ok, t| same(t.as_bytes(), given.as_bytes()) | ok)
}

/// The request, parsed: candidates as JSON objects, and the reservation asked for.
struct Parsed {
    calls: Vec<Map<String, Value>>,
    reserve: Option<Duration>,
    batch: bool,
}

fn parse(api: &Api, body: &[u8]) -> Result<Parsed, (StatusCode, &'static str, String)> {
    let bad = |error: &'static str, detail: String| (StatusCode::BAD_REQUEST, error, detail);
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        bad(
            Reason::NotJson.as_str(),
            format!("the body is not JSON: {e}"),
        )
    })?;
    let Value::Object(mut top) = v else {
        return Err(bad(
            Reason::WrongType.as_str(),
            "the body is a JSON object: one call, or {\"calls\": [...]}".into(),
        ));
    };
    let reserve = match top.remove("reserve") {
        None | Some(Value::Bool(false)) | Some(Value::Null) => None,
        Some(Value::Bool(true)) => Some(api.settings.reservation_ttl),
        Some(_) => {
            return Err(bad(
                Reason::WrongType.as_str(),
                "reserve: true or false".into(),
            ))
        }
    };
    let reserve = match (reserve, top.remove("reservation_ttl")) {
        (r, None | Some(Value::Null)) => r,
        (None, Some(_)) => {
            return Err(bad(
                Reason::BadValue.as_str(),
                "reservation_ttl without \"reserve\": true".into(),
            ))
        }
        (Some(_), Some(Value::String(s))) => {
            let ns = crate::policy::parse_duration(&s)
                .map_err(|r| bad(Reason::BadValue.as_str(), format!("reservation_ttl: {r}")))?;
            if !crate::config::RESERVATION_TTL.contains(&ns) {
                return Err(bad(
                    Reason::BadValue.as_str(),
                    "reservation_ttl: between 1s and 1h".into(),
                ));
            }
            Some(Duration::from_nanos(ns as u64))
        }
        (Some(_), Some(_)) => {
            return Err(bad(
                Reason::WrongType.as_str(),
                "reservation_ttl: a duration such as \"30s\"".into(),
            ))
        }
    };
    let (calls, batch) = match top.remove("calls") {
        None => (vec![top], false),
        Some(Value::Array(items)) => {
            if let Some(k) = top.keys().next() {
                return Err(bad(
                    Reason::BadValue.as_str(),
                    format!("{k:?} beside \"calls\": a batch holds only calls, reserve and reservation_ttl"),
                ));
            }
            if items.is_empty() || items.len() > api.settings.max_batch {
                return Err((
                    if items.is_empty() {
                        StatusCode::BAD_REQUEST
                    } else {
                        StatusCode::PAYLOAD_TOO_LARGE
                    },
                    Reason::BadValue.as_str(),
                    format!(
                        "calls: {} calls; a batch holds 1 to {} (check.max_batch)",
                        items.len(),
                        api.settings.max_batch
                    ),
                ));
            }
            let mut calls = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    Value::Object(m) => calls.push(m),
                    _ => {
                        return Err(bad(
                            Reason::WrongType.as_str(),
                            format!("calls[{i}]: a call is a JSON object"),
                        ))
                    }
                }
            }
            (calls, true)
        }
        Some(_) => {
            return Err(bad(
                Reason::WrongType.as_str(),
                "calls: an array of calls".into(),
            ))
        }
    };
    Ok(Parsed {
        calls,
        reserve,
        batch,
    })
}

async fn check(State(api): State<Arc<Api>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let received = Instant::now();
    let response = answer(&api, mode(&uri), &headers, &body).await;
    api.metrics
        .check_latency
        .observe(received.elapsed().as_secs_f64());
    response
}

async fn answer(api: &Api, mode: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Response {
    if !authorized(api, headers) {
        return refuse(
            api,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unauthorized",
            "send Authorization: Bearer <token> (check.token or check.tokens_file)".into(),
            None,
        );
    }
    let status_mode = match mode {
        None | Some("full") => false,
        Some("status") => true,
        Some(other) => {
            return refuse(
                api,
                StatusCode::BAD_REQUEST,
                "invalid",
                Reason::UnknownValue.as_str(),
                format!("mode={other:?}: full (the default) or status"),
                None,
            )
        }
    };
    if !api.health.ready() {
        return refuse(
            api,
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "not_ready",
            format!("not ready: {}", api.health.state()),
            None,
        );
    }
    let parsed = match parse(api, body) {
        Ok(p) => p,
        Err((status, error, detail)) => {
            return refuse(api, status, "invalid", error, detail, None);
        }
    };
    let now = Ts::from_jiff(jiff::Timestamp::now());
    let mut calls = Vec::with_capacity(parsed.calls.len());
    {
        let mut decoder = api.decoder.lock().unwrap_or_else(|e| e.into_inner());
        for (i, mut m) in parsed.calls.into_iter().enumerate() {
            if !m.contains_key("call_id") {
                let n = api.next_id.fetch_add(1, Ordering::Relaxed);
                m.insert(
                    "call_id".into(),
                    Value::String(format!("{}-{n}", api.id_prefix)),
                );
            }
            if !m.contains_key("occurred_at") {
                m.insert("occurred_at".into(), Value::String(now.to_string()));
            }
            let bytes = serde_json::to_vec(&m).unwrap_or_default();
            match decoder.decode(&bytes, now) {
                Ok(c) => calls.push(c),
                Err(rej) => {
                    let at = if parsed.batch {
                        format!("calls[{i}]: ")
                    } else {
                        String::new()
                    };
                    return refuse(
                        api,
                        StatusCode::BAD_REQUEST,
                        "invalid",
                        rej.reason.as_str(),
                        format!("{at}{}", rej.detail),
                        parsed.batch.then_some(i),
                    );
                }
            }
        }
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let request = CheckRequest {
        calls,
        reserve: parsed.reserve,
        reply: tx,
    };
    match api.queue.try_send(request) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            return refuse(
                api,
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "overloaded",
                format!(
                    "{} checks are waiting (check.queue): retry shortly",
                    api.settings.queue
                ),
                None,
            )
        }
        Err(TrySendError::Disconnected(_)) => {
            return refuse(
                api,
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "stopping",
                "the processing thread has stopped".into(),
                None,
            )
        }
    }
    let reply = match tokio::time::timeout(api.settings.timeout, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) | Err(_) => {
            return refuse(
                api,
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "timeout",
                format!(
                    "no answer within check.timeout ({:?}): the service is busy or rebuilding",
                    api.settings.timeout
                ),
                None,
            )
        }
    };
    render(api, status_mode, parsed.batch, reply)
}

/// The answer's JSON, and its status.
fn render(api: &Api, status_mode: bool, batch: bool, reply: CheckReply) -> Response {
    let mut all_allowed = true;
    let mut results = Vec::with_capacity(reply.results.len());
    for ((verdict, reserved), call) in reply.results.iter().zip(&reply.calls) {
        let allowed = verdict.allowed();
        all_allowed &= allowed;
        api.metrics
            .checks
            .with_label_values(&[if allowed { "allowed" } else { "refused" }])
            .inc();
        let breaches: Vec<Value> = verdict
            .breaches
            .iter()
            .map(|b| {
                let rule = &api.rules[b.rule as usize];
                let mut o = json!({
                    "rule_id": rule.id,
                    "kind": rule.kind.as_str(),
                    "severity": rule.severity.as_str(),
                    "message": alert::message(rule, b, call),
                    "observed": b.observed,
                    "limit": b.limit,
                });
                if let Some(c) = &rule.citation {
                    o["citation"] = json!(c);
                }
                if let Some((from, to)) = b.bounds {
                    o["window"] = json!({"from": from.to_string(), "to": to.to_string()});
                }
                if !b.evidence.is_empty() {
                    o["evidence"] =
                        json!(b.evidence.iter().map(|e| e.as_str()).collect::<Vec<_>>());
                }
                o
            })
            .collect();
        let mut r = json!({
            "call_id": call.call_id.as_str(),
            "occurred_at": call.occurred_at.to_string(),
            "allowed": allowed,
            "breaches": breaches,
        });
        if let Some(t) = verdict.next_allowed_at {
            r["next_allowed_at"] = json!(t.to_string());
        }
        r["reserved"] = json!(reserved.is_some());
        if let Some(until) = reserved {
            r["reserved_until"] = json!(until.to_string());
        }
        if verdict.duplicate {
            r["duplicate"] = json!(true);
        }
        results.push(r);
    }
    let as_of = json!({
        "event_time": reply.as_of.event_time.map(|t| t.to_string()),
        "offsets": reply.as_of.offsets.iter().map(|(p, o)| (p.to_string(), json!(o))).collect::<Map<String, Value>>(),
    });
    let body = if batch {
        json!({"as_of": as_of, "results": results})
    } else {
        let mut one = results.pop().unwrap_or_else(|| json!({}));
        one["as_of"] = as_of;
        one
    };
    let status = if status_mode && !all_allowed {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    json_response(status, &body)
}
