//! librdkafka's side of the service: the state its callbacks update (`Shared`: the offset
//! book, failed deliveries to send again, the assignment), the client contexts (deliveries,
//! errors, statistics and logs are recorded; a revoke still drains and commits inside its
//! callback before the partitions go), and the produce and commit mechanics (send waiting out
//! a full queue, resend, drain, commit). The loop that decides what to consume, judge and
//! produce is `pipeline`; the messages it produces are built in `messages`.

use super::inputs::Inputs;
use super::messages::{self, Outgoing, Output, Token};
use super::offsets::OffsetBook;
use super::{Health, Shutdown};
use crate::engine::time::Ts;
use crate::telemetry::{error_class, Metrics};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{DeliveryResult, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Statistics, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The current assignment as the rebalance callbacks left it.
#[derive(Default)]
pub(super) struct Assignment {
    pub(super) generation: u64,
    pub(super) partitions: Vec<i32>,
}

/// State the librdkafka callbacks update. They run on the processing thread (inside `poll` and
/// `flush`) but receive `&self`, hence the mutexes (never contended).
pub(crate) struct Shared {
    pub(super) book: Mutex<OffsetBook>,
    pub(super) retry: Mutex<Vec<(OwnedMessage, Box<Token>, &'static str)>>,
    pub(super) assignment: Mutex<Assignment>,
    pub(super) metrics: Arc<Metrics>,
    /// The input topics; offsets, positions and the assignment are kept by lane.
    pub(super) inputs: Inputs,
    /// Each lane's high watermark as the consumer's statistics last reported it: with several
    /// input topics, whether a lane is at its end (`Pipeline::lanes_at_end`).
    pub(super) high: Mutex<HashMap<i32, i64>>,
    /// Warnings that repeat fast (broker trouble, librdkafka's own log, input gaps): at most one
    /// of each kind every 10 s.
    pub(super) warnings: Mutex<Throttle>,
    /// Set once shutdown has drained: the final revoke only commits.
    pub(super) closing: AtomicBool,
    /// Messages caused by statuses (reference data) sent and not yet delivered: no snapshot is
    /// taken meanwhile, since its marks would say their alerts were made.
    pub(super) reference_in_flight: AtomicU64,
}

/// At most one line per key every `every`; counts what it holds back.
pub(crate) struct Throttle {
    every: Duration,
    /// Key → (when a line last passed, lines held back since). Keys name a kind of warning or a
    /// librdkafka log level and facility: a few dozen at most.
    last: HashMap<String, (Instant, u64)>,
}

impl Throttle {
    pub(crate) fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: HashMap::new(),
        }
    }

    /// `Some(lines held back since the last one passed)` when a line with `key` may pass at
    /// `now`; `None` when it is held back.
    pub(crate) fn admit(&mut self, key: &str, now: Instant) -> Option<u64> {
        match self.last.get_mut(key) {
            Some((t, held)) if now.saturating_duration_since(*t) < self.every => {
                *held += 1;
                None
            }
            Some((t, held)) => {
                *t = now;
                Some(std::mem::take(held))
            }
            None => {
                self.last.insert(key.to_owned(), (now, 0));
                Some(0)
            }
        }
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(super) fn generation(&self) -> u64 {
        lock(&self.assignment).generation
    }

    /// A warning at most every 10 s (broker trouble repeats fast), saying how many were held
    /// back.
    pub(super) fn throttled_warn(&self, what: &str, class: &str, detail: &str) {
        let admitted = lock(&self.warnings).admit("broker", Instant::now());
        if let Some(held_back) = admitted {
            tracing::warn!(error = class, detail, held_back, "{what}");
        }
    }

    /// Forwards a librdkafka log line to the log, at most one per facility and level every
    /// 10 s (a broker that is down makes every connection attempt log a line), saying how many
    /// were held back. Debug lines are not throttled: they are on only when asked for.
    pub(super) fn forward_log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        use RDKafkaLogLevel as L;
        let held_back = if matches!(level, L::Debug) {
            0
        } else {
            let key = format!("librdkafka:{}:{fac}", level as i32);
            match lock(&self.warnings).admit(&key, Instant::now()) {
                Some(n) => n,
                None => return,
            }
        };
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", facility = fac, held_back, "{msg}")
            }
            L::Warning => tracing::warn!(target: "librdkafka", facility = fac, held_back, "{msg}"),
            L::Notice | L::Info => {
                tracing::info!(target: "librdkafka", facility = fac, held_back, "{msg}")
            }
            L::Debug => tracing::debug!(target: "librdkafka", facility = fac, "{msg}"),
        }
    }

    pub(super) fn client_error(&self, error: &KafkaError, reason: &str) {
        if crate::telemetry::is_partition_eof(error) {
            return;
        }
        let class = error_class(error);
        self.metrics.kafka_errors.with_label_values(&[class]).inc();
        self.throttled_warn("kafka client error", class, reason);
    }
}

pub(crate) struct ProducerCtx {
    pub(super) shared: Arc<Shared>,
}

impl ClientContext for ProducerCtx {
    fn error(&self, error: KafkaError, reason: &str) {
        self.shared.client_error(&error, reason);
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.shared.forward_log(level, fac, log_message);
    }
}

impl ProducerContext for ProducerCtx {
    type DeliveryOpaque = Box<Token>;

    fn delivery(&self, result: &DeliveryResult<'_>, token: Box<Token>) {
        let sh = &self.shared;
        match result {
            Ok(_) => {
                if token.reference {
                    sh.reference_in_flight.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
                lock(&sh.book).ack(token.generation, token.partition, token.offset);
                if token.output == Output::Alerts {
                    if let Some(ms) = token.record_ms {
                        sh.metrics.observe_alert_latency(wall_ms() - ms);
                    }
                }
            }
            Err((e, msg)) => {
                let class = error_class(e);
                sh.metrics
                    .produce_errors
                    .with_label_values(&[token.output.label(), class])
                    .inc();
                sh.throttled_warn(
                    "delivery failed; sending again",
                    class,
                    &format!("{} record", token.output.label()),
                );
                lock(&sh.retry).push((msg.detach(), token, class));
            }
        }
    }
}

pub(crate) struct ConsumerCtx {
    pub(super) shared: Arc<Shared>,
    pub(super) producer: Arc<ThreadedProducer<ProducerCtx>>,
    pub(super) health: Arc<Health>,
    pub(super) grace: Duration,
    pub(super) partition_lag: bool,
}

impl ClientContext for ConsumerCtx {
    fn error(&self, error: KafkaError, reason: &str) {
        self.shared.client_error(&error, reason);
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.shared.forward_log(level, fac, log_message);
    }

    fn stats(&self, stats: Statistics) {
        let mut total = 0i64;
        let mut high = HashMap::new();
        for topic in self.shared.inputs.topics() {
            let Some(t) = stats.topics.get(topic) else {
                continue;
            };
            for (id, p) in &t.partitions {
                if *id >= 0 && p.hi_offset >= 0 {
                    high.insert(self.shared.inputs.lane(topic, *id), p.hi_offset);
                }
                if *id < 0 || p.consumer_lag < 0 {
                    continue;
                }
                total += p.consumer_lag;
                if self.partition_lag {
                    if let Some(g) = &self.shared.metrics.consumer_lag_partition {
                        g.with_label_values(&[topic, &id.to_string()])
                            .set(p.consumer_lag);
                    }
                }
            }
        }
        self.shared.metrics.consumer_lag.set(total);
        *lock(&self.shared.high) = high;
    }
}

impl ConsumerContext for ConsumerCtx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            let sh = &self.shared;
            sh.metrics.rebalances.with_label_values(&["revoke"]).inc();
            self.health.set(false, "rebalancing");
            sh.metrics.ready.set(0);
            // Hand the partitions over clean: everything produced acknowledged, then committed.
            let done = sh.closing.load(Ordering::SeqCst)
                || drain(
                    &self.producer,
                    sh,
                    &self.health,
                    Instant::now() + self.grace,
                );
            if !done {
                tracing::warn!(
                    unacknowledged = lock(&sh.book).in_flight(),
                    "revoking with unacknowledged messages: their records are not committed and will be judged again by the next owner"
                );
            }
            commit(consumer, sh, CommitMode::Sync);
            lock(&sh.book).reset();
            let mut a = lock(&sh.assignment);
            a.generation += 1;
            a.partitions.clear();
            sh.metrics.assigned_partitions.set(0);
            tracing::info!("partitions revoked");
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let sh = &self.shared;
                sh.metrics.rebalances.with_label_values(&["assign"]).inc();
                // Nothing is fetched until the windows are rebuilt.
                if let Err(e) = consumer.pause(tpl) {
                    tracing::warn!(error = %e, "pausing newly assigned partitions");
                }
                let parts = sh.inputs.lanes_of(tpl);
                sh.metrics.assigned_partitions.set(parts.len() as i64);
                let names: Vec<String> = parts.iter().map(|l| sh.inputs.name(*l)).collect();
                tracing::info!(partitions = ?names, "partitions assigned");
                lock(&sh.book).reset();
                let mut a = lock(&sh.assignment);
                a.generation += 1;
                a.partitions = parts;
            }
            Rebalance::Error(e) => {
                self.shared.client_error(e, "rebalance");
            }
            Rebalance::Revoke(_) => {}
        }
    }

    /// Not called for the service's own asynchronous commits today (rust-rdkafka #856): the
    /// loop confirms those with the broker (`Pipeline::confirm_commits`). Kept for when the
    /// client reports them, which only makes a refusal known sooner.
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            self.shared.metrics.commit_errors.inc();
            self.shared
                .throttled_warn("offset commit failed", error_class(&e), "retried");
            let failed: Vec<(i32, i64)> = offsets
                .elements()
                .iter()
                .filter(|e| self.shared.inputs.index(e.topic()).is_some())
                .map(|e| (self.shared.inputs.lane(e.topic(), e.partition()), 0))
                .collect();
            lock(&self.shared.book).commit_failed(&failed);
        }
    }
}

/// What the service's consumers (the group's and the rebuild's readers) set before the
/// operator's `[kafka.client]`, which may override it.
///
/// librdkafka stops fetching a partition once its local queue holds `queued.min.messages`
/// (100,000) or `queued.max.messages.kbytes`, and then waits `fetch.queue.backoff.ms` — a second
/// by default — before fetching it again. A consumer that judges more slowly than the broker
/// delivers (catching up on a backlog, a rebuild) emptied the queue in a fraction of that second
/// and waited out the rest: on the mock cluster a backlog drained at ~100,000 calls/s with the
/// processing thread idle 40% of the time, and at ~150,000–180,000 with 10 ms
/// (docs/performance.md, "Decode-ahead in the service").
pub(super) fn consumer_defaults(c: &mut ClientConfig) {
    c.set("fetch.queue.backoff.ms", "10");
}

pub(super) fn wall_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

pub(super) fn wall_now() -> Ts {
    Ts::from_jiff(jiff::Timestamp::now())
}

/// Sends what failed delivery again; returns how many were resent.
pub(super) fn resend_failed(producer: &ThreadedProducer<ProducerCtx>, shared: &Shared) -> usize {
    let failed = std::mem::take(&mut *lock(&shared.retry));
    let n = failed.len();
    for (msg, token, class) in failed {
        let headers = msg.headers().map(|h| h.as_borrowed().detach());
        let mut payload = msg.payload().unwrap_or_default().to_vec();
        let mut headers = headers.unwrap_or_else(|| OwnedHeaders::new_with_capacity(1));
        messages::cut_to_size(class, token.output, &mut payload, &mut headers);
        send(
            producer,
            Outgoing {
                topic: msg.topic().to_owned(),
                key: msg.key().map(<[u8]>::to_vec),
                payload,
                headers,
                token,
            },
            None,
        );
    }
    n
}

/// Waits until nothing is in flight or `deadline` passes; resends failures.
pub(super) fn drain(
    producer: &ThreadedProducer<ProducerCtx>,
    shared: &Shared,
    health: &Health,
    deadline: Instant,
) -> bool {
    loop {
        health.beat();
        resend_failed(producer, shared);
        let _ = producer.flush(Duration::from_millis(50));
        // Alerts caused by statuses acknowledge no offset, but are waited for all the same.
        if lock(&shared.book).in_flight() == 0
            && lock(&shared.retry).is_empty()
            && shared.reference_in_flight.load(Ordering::Relaxed) == 0
        {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
    }
}

/// Commits the offsets that advanced.
pub(super) fn commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    shared: &Shared,
    mode: CommitMode,
) {
    let offsets = lock(&shared.book).take_commits();
    if offsets.is_empty() {
        return;
    }
    let tpl = shared.inputs.list_at(&offsets);
    if let Err(e) = consumer.commit(&tpl, mode) {
        shared.metrics.commit_errors.inc();
        shared.throttled_warn("offset commit failed", error_class(&e), "retried");
        lock(&shared.book).commit_failed(&offsets);
    }
}

/// Sends one message, waiting out a full local queue (the producer thread drains it). Errors
/// other than a full queue are retried after a pause unless `shutdown` is set; a dead letter too
/// large for the client is cut to size and marked.
pub(super) fn send(
    producer: &ThreadedProducer<ProducerCtx>,
    m: Outgoing,
    shutdown: Option<&Shutdown>,
) {
    let Outgoing {
        topic,
        key,
        mut payload,
        headers,
        token,
    } = m;
    let output = token.output;
    let mut token = Some(token);
    // The headers go to the client with the record, and come back with it when it is refused:
    // no copy for each message (cloning them was 3% of the processing thread's samples at
    // 150,000 calls/s).
    let mut headers = Some(headers);
    loop {
        let mut rec =
            BaseRecord::with_opaque_to(&topic, token.take().expect("token")).payload(&payload);
        rec.headers = headers.take();
        if let Some(k) = &key {
            rec = rec.key(k);
        }
        match producer.send(rec) {
            Ok(()) => return,
            Err((e, r)) => {
                token = Some(r.delivery_opaque);
                headers = r.headers;
                if matches!(
                    e,
                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
                ) {
                    // The producer's own thread serves delivery reports and frees the queue.
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                let class = error_class(&e);
                let shared = &producer.context().shared;
                shared
                    .metrics
                    .produce_errors
                    .with_label_values(&[output.label(), class])
                    .inc();
                if messages::cut_to_size(
                    class,
                    output,
                    &mut payload,
                    headers.get_or_insert_with(OwnedHeaders::new),
                ) {
                    continue;
                }
                shared.throttled_warn("produce refused; retrying", class, output.label());
                if shutdown.is_some_and(Shutdown::is_triggered) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}
