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
//! the same decoder as the input topic. The state is a [`Live`] under a mutex that the
//! processing thread holds only while it judges a record (or applies housekeeping), so a check
//! always reads the state after whole records. The handler takes the mutex if it is free and
//! judges there with [`crate::engine::Engine::verdict`] and reserves: no hop to another thread,
//! and no waiting for the processing thread to be scheduled. If the mutex is held, the calls go
//! to the processing thread over a bounded queue ([`CheckRequest`]), which answers between
//! records (and at once when idle) through the same [`Live::reply`]. Either way the handler
//! renders the answer. A full queue, or no answer within `check.timeout`, is a 503 with
//! `Retry-After` — a check never holds the processing loop up beyond its own verdicts.

use crate::alert;
use crate::codec::{Decoder, Reason};
use crate::config::CheckSettings;
use crate::engine::event::{Call, StrField};
use crate::engine::rule::Rule;
use crate::engine::time::Ts;
use crate::engine::{Engine, Verdict};
use crate::lifecycle::{Health, Shutdown};
use crate::partition::Partitioner;
use crate::telemetry::Metrics;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
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
    /// A candidate whose debtor another instance holds (index, partition): nothing was judged.
    pub misdirected: Option<(usize, i32)>,
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
    /// Named by the partition number with one input topic, by `topic:partition` with several.
    pub offsets: Vec<(String, i64)>,
}

/// The state a check reads: shared by the processing thread, which judges records into it,
/// and the check handlers.
pub struct Live {
    /// The windows and reservations.
    pub engine: Engine,
    /// Per assigned input partition, the next offset to judge: what the state reflects. Keyed
    /// by lane: partition `p` of the `i`-th of `n` input topics is `p × n + i`.
    pub positions: BTreeMap<i32, i64>,
    /// The input topics, in order (names the lanes of `positions`).
    pub inputs: Vec<String>,
    /// Whether the state is whole: false from a new assignment until its rebuild is done (a
    /// check then gets 503), so a check never reads a state being rebuilt.
    pub serving: bool,
    /// The input partitions held here, out of how many (`None`: not known, or
    /// `check.partitioner = "off"`): a debtor keyed to another is judged by the instance that
    /// holds it.
    pub owned: Option<Owned>,
}

/// How logs and check answers name input lane `lane` of a service reading `topics`: the
/// partition number with one input topic, `topic:partition` with several (partition `p` of the
/// `i`-th of `n` topics is lane `p × n + i`).
pub(crate) fn lane_name(topics: &[String], lane: i32) -> String {
    let n = topics.len() as i32;
    if n <= 1 {
        return lane.to_string();
    }
    format!("{}:{}", topics[(lane % n) as usize], lane / n)
}

/// The input partitions this instance holds, out of how many.
#[derive(Debug, Clone)]
pub struct Owned {
    /// How the dialers' producers key debtors to partitions.
    pub partitioner: Partitioner,
    /// The input topic's partition count.
    pub partitions: u32,
    /// Those assigned here.
    pub assigned: Vec<i32>,
}

impl Owned {
    /// Which candidate, if any, belongs to a partition held elsewhere: (index, partition).
    pub fn misdirected(&self, calls: &[Call]) -> Option<(usize, i32)> {
        if self.assigned.len() as u32 >= self.partitions {
            return None;
        }
        calls.iter().enumerate().find_map(|(i, c)| {
            let key = c.str_field(StrField::DebtorId).unwrap_or_default();
            let p = self.partitioner.partition(key.as_bytes(), self.partitions);
            (!self.assigned.contains(&p)).then_some((i, p))
        })
    }
}

impl Live {
    /// How `as_of` names a lane: its partition with one input topic, `topic:partition` with
    /// several.
    fn lane_name(&self, lane: i32) -> String {
        lane_name(&self.inputs, lane)
    }

    /// An empty state, not serving yet.
    pub fn new(engine: Engine) -> Live {
        Live {
            engine,
            positions: BTreeMap::new(),
            inputs: Vec::new(),
            serving: false,
            owned: None,
        }
    }

    /// The reply to a check of `calls` at `now`: sent away whole when a candidate's debtor is
    /// held by another instance, judged by [`Live::answer`] otherwise.
    pub fn reply(
        &mut self,
        mut calls: Vec<Call>,
        reserve: Option<Duration>,
        now: Ts,
    ) -> CheckReply {
        let misdirected = self.owned.as_ref().and_then(|o| o.misdirected(&calls));
        let (results, as_of) = match misdirected {
            None => self.answer(&mut calls, reserve, now),
            Some(_) => (Vec::new(), AsOf::default()),
        };
        CheckReply {
            calls,
            misdirected,
            results,
            as_of,
        }
    }

    /// Judges `calls` against the state at `now` (wall clock, for reservations), and reserves
    /// those allowed until `now + reserve` when asked to: per call, the verdict and until when
    /// it is reserved; and what the state reflects.
    /// What a candidate lacks is filled from the contact book first, as for a call judged.
    pub fn answer(
        &mut self,
        calls: &mut [Call],
        reserve: Option<Duration>,
        now: Ts,
    ) -> (Vec<(Verdict, Option<Ts>)>, AsOf) {
        self.engine.expire_reservations(now);
        let mut results = Vec::with_capacity(calls.len());
        for call in calls.iter_mut() {
            self.engine.enrich(call);
            let call = &*call;
            let verdict = self.engine.verdict(call);
            let reserved = match reserve {
                Some(ttl) if verdict.allowed() && !verdict.duplicate => {
                    let until = now.plus(ttl.as_nanos() as i64);
                    self.engine.reserve(call, until).then_some(until)
                }
                _ => None,
            };
            results.push((verdict, reserved));
        }
        let as_of = AsOf {
            event_time: self.engine.watermark(),
            offsets: self
                .positions
                .iter()
                .map(|(lane, o)| (self.lane_name(*lane), *o))
                .collect(),
        };
        (results, as_of)
    }
}

/// The processing thread's end of the queue.
pub type CheckQueue = std::sync::mpsc::Receiver<CheckRequest>;

struct Api {
    live: Arc<Mutex<Live>>,
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
    live: Arc<Mutex<Live>>,
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
        live,
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
    // The state is free (the processing thread is between records): judge here.
    if let Ok(mut live) = api.live.try_lock() {
        if !live.serving {
            drop(live);
            return refuse(
                api,
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "not_ready",
                "not ready: rebuilding windows".into(),
                None,
            );
        }
        let reply = live.reply(calls, parsed.reserve, now);
        let open = live.engine.reservations();
        drop(live);
        api.metrics.reservations_open.set(open as i64);
        return render(api, status_mode, parsed.batch, reply);
    }
    // Held: the processing thread answers once its record is judged.
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
    if let Some((i, partition)) = reply.misdirected {
        return refuse(
            api,
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected",
            "not_owner",
            format!(
                "the debtor's input partition ({partition}, by check.partitioner = {}) is held by another instance: ask that one (as_of.offsets in its answers lists the partitions it holds)",
                api.settings.partitioner.map_or("off", Partitioner::as_str)
            ),
            batch.then_some(i),
        );
    }
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
                if let Some(st) = &b.status {
                    let mut v = json!({
                        "status_id": st.id.as_str(),
                        "status": st.kind.as_str(),
                        "from": st.from.to_string(),
                        "source": st.source.as_str(),
                    });
                    if let Some(u) = st.until {
                        v["until"] = json!(u.to_string());
                    }
                    o["status"] = v;
                }
                if let Some(c) = &b.contact {
                    o["contact"] = json!({
                        "relation": c.relation.as_str(),
                        "number_source": c.source.as_str(),
                        "from": c.from.to_string(),
                    });
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
        "offsets": reply.as_of.offsets.iter().map(|(p, o)| (p.clone(), json!(o))).collect::<Map<String, Value>>(),
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

#[cfg(test)]
mod tests {
    //! The two ways a check reaches the state: judged by the handler when the state is free,
    //! handed to the processing thread's queue when it is held (here the test plays that
    //! thread), and refused while the state is not serving.

    use super::*;
    use crate::config::Settings;
    use std::io::{Read, Write};
    use std::net::SocketAddr;
    use std::sync::mpsc::RecvTimeoutError;

    struct Running {
        addr: SocketAddr,
        live: Arc<Mutex<Live>>,
        queue: CheckQueue,
        shutdown: Shutdown,
        _rt: tokio::runtime::Runtime,
    }

    fn running() -> Running {
        let settings = Settings::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dialguard.toml"),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let mut live = Live::new(Engine::new(settings.rules.clone(), settings.engine.clone()));
        live.serving = true;
        let live = Arc::new(Mutex::new(live));
        let (tx, queue) = super::queue(&settings.check);
        let health = Arc::new(Health::new(Duration::from_secs(60)));
        health.set(true, "processing");
        let shutdown = Shutdown::new();
        rt.spawn(serve(
            listener,
            live.clone(),
            tx,
            settings.check.clone(),
            settings.rules.clone(),
            Decoder::new(settings.decode.for_v1()),
            Arc::new(Metrics::new(&settings.rules, false)),
            health,
            shutdown.clone(),
        ));
        Running {
            addr,
            live,
            queue,
            shutdown,
            _rt: rt,
        }
    }

    /// Posts one candidate for debtor `D1` on another thread: its status and JSON answer.
    fn post(addr: SocketAddr, id: &str) -> std::thread::JoinHandle<(u16, Value)> {
        let body = json!({
            "call_id": id, "occurred_at": "2026-11-30T02:00:00Z", "debtor_id": "D1",
            "phone": "+8613800000001", "relation": "self", "outcome": "no_answer",
            "direction": "outbound", "channel": "voice"
        })
        .to_string();
        std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            write!(
                s,
                "POST /v1/check HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let mut raw = String::new();
            s.read_to_string(&mut raw).unwrap();
            let (head, body) = raw.split_once("\r\n\r\n").unwrap();
            let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
            (
                code,
                serde_json::from_str(body.trim()).unwrap_or(Value::Null),
            )
        })
    }

    #[test]
    fn a_free_state_is_judged_by_the_handler_and_a_held_one_by_the_processing_thread() {
        let r = running();
        // Free: answered without the queue.
        let (code, v) = post(r.addr, "free").join().unwrap();
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["call_id"], "free");
        assert!(matches!(
            r.queue.try_recv(),
            Err(std::sync::mpsc::TryRecvError::Empty)
        ));

        // Held (the processing thread is judging a record): the check waits in the queue, and
        // is answered from there once the holder serves it.
        let mut held = r.live.lock().unwrap();
        let answer = post(r.addr, "held");
        let req = r
            .queue
            .recv_timeout(Duration::from_secs(30))
            .expect("the handler queued the check");
        assert_eq!(req.calls[0].call_id.as_str(), "held");
        let reply = held.reply(req.calls, req.reserve, Ts(0));
        drop(held);
        let _ = req.reply.send(reply);
        let (code, v) = answer.join().unwrap();
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["call_id"], "held");
        assert_eq!(v["allowed"], true, "{v}");
        r.shutdown.trigger();
    }

    #[test]
    fn a_state_not_serving_is_not_read() {
        let r = running();
        r.live.lock().unwrap().serving = false;
        let (code, v) = post(r.addr, "rebuilding").join().unwrap();
        assert_eq!(code, 503, "{v}");
        assert_eq!(v["error"], "not_ready", "{v}");
        assert!(matches!(
            r.queue.recv_timeout(Duration::from_millis(100)),
            Err(RecvTimeoutError::Timeout)
        ));
        r.shutdown.trigger();
    }
}
