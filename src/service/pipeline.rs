//! The processing loop: consume, decode, judge, produce, commit what was acknowledged.
//!
//! The consumer's callbacks (rebalance, statistics, errors) run on the processing thread inside
//! `poll`; the producer's delivery reports run on the producer's own thread
//! ([`ThreadedProducer`]), so acknowledgements are taken as they arrive.

use super::ahead::{self, Ahead};
use super::inputs::{Decoders, Inputs};
use super::kafka::{
    commit, consumer_defaults, drain, lock, resend_failed, send, wall_ms, wall_now, Assignment,
    ConsumerCtx, ProducerCtx, Shared, Throttle,
};
pub use super::messages::headers;
use super::messages::{self, Origin, Outgoing};
use super::offsets::OffsetBook;
use super::produce;
use super::rebuild;
use super::reference::{self, Feed, Update};
use super::{changelog, snapshots};
use super::{Health, ServiceError, Shutdown};
use crate::alert::{self, Alert};
use crate::check::{CheckQueue, CheckRequest, Live, Owned};
use crate::codec::{Reason, Reject};
use crate::config::{KafkaSettings, Settings};
use crate::directive;
use crate::engine::breach::{Breach, Hold};
use crate::engine::event::Call;
use crate::engine::intern::SharedInterner;
use crate::engine::time::Ts;
use crate::engine::{Engine, Lane};
use crate::judge::{self, Outcome};
use crate::reference::Contract;
use crate::telemetry::Metrics;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::ThreadedProducer;
use rdkafka::{Message, TopicPartitionList};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a stop that starts at `now` spends `grace`: (when the pipeline must be done, clients
/// closed; when draining must stop, leaving time to commit and close). Two seconds of the
/// grace are kept for HTTP and the runtime to stop after the pipeline.
pub(crate) fn stop_budget(now: Instant, grace: Duration) -> (Instant, Instant) {
    let pipeline = grace.saturating_sub(Duration::from_secs(2)).max(grace / 2);
    let closing = (pipeline / 4).min(Duration::from_secs(3));
    (now + pipeline, now + pipeline - closing)
}

fn client_config(k: &KafkaSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers)
        .set("client.id", "dialguard");
    c
}

/// A client's configuration with the service's own properties (`[kafka.client]`).
pub(crate) fn configured_client(k: &KafkaSettings) -> ClientConfig {
    let mut c = client_config(k);
    apply_client(&mut c, k);
    c
}

/// Where the settings say snapshots are kept: a directory when one is set, else the snapshots
/// topic (a producer of its own), else nowhere.
pub(crate) fn snapshot_store(
    settings: &Settings,
) -> Result<Option<snapshots::Store>, ServiceError> {
    let k = &settings.kafka;
    if let Some(dir) = &settings.service.snapshot_dir {
        return Ok(Some(snapshots::Store::File(snapshots::path(
            dir,
            &Inputs::of(settings).snapshot_scope(&k.group_id),
        ))));
    }
    let Some(topic) = &k.snapshots_topic else {
        return Ok(None);
    };
    let scope = Inputs::of(settings).snapshot_scope(&k.group_id);
    let changelog = changelog::Changelog::new(configured_client(k), topic, &scope)
        .map_err(|e| ServiceError::Kafka(format!("snapshot producer: {e}")))?;
    Ok(Some(snapshots::Store::Topic(changelog)))
}

pub(super) fn apply_client(c: &mut ClientConfig, k: &KafkaSettings) {
    for (key, v) in &k.client {
        c.set(key, v);
    }
}

/// Watermark alignment's bookkeeping.
#[derive(Default)]
struct Alignment {
    /// Partitions paused for running ahead of the slowest.
    paused: HashSet<i32>,
    /// When each partition last delivered a record.
    last_record: HashMap<i32, Instant>,
    /// Partitions at their end (caught up), since when: after `idle_after` without a record
    /// they stop holding state back.
    at_end: HashMap<i32, Instant>,
}

/// What alignment should do with one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    Pause,
    Resume,
}

/// Watermark alignment, decided from each partition's progress: a partition whose newest event
/// time is more than `skew` ahead of the slowest partition still delivering is paused; it is
/// resumed once no more than `skew / 2` ahead (so it is not paused again at once). A partition
/// at its end has nothing to catch up with, and one that delivered nothing for `stall` (an
/// unavailable leader) is not waited for either. Pure: unit-tested without a broker.
pub(crate) fn alignment(
    lanes: &[crate::engine::LaneProgress],
    paused: &HashSet<i32>,
    last_record: &HashMap<i32, Instant>,
    at_end: &HashMap<i32, Instant>,
    now: Instant,
    skew: i64,
    stall: Duration,
) -> Vec<(i32, Align)> {
    let delivering = |p: i32| {
        !at_end.contains_key(&p)
            && last_record
                .get(&p)
                .is_some_and(|t| now.saturating_duration_since(*t) <= stall)
    };
    let slowest = lanes
        .iter()
        .filter(|l| l.holding && !paused.contains(&(l.lane as i32)) && delivering(l.lane as i32))
        .filter_map(|l| l.newest)
        .map(|t| t.0)
        .min();
    let mut out = Vec::new();
    for l in lanes {
        let p = l.lane as i32;
        let ahead = match (l.newest, slowest, l.holding) {
            (Some(t), Some(s), true) => t.0.saturating_sub(s),
            _ => i64::MIN, // idle, or nobody to wait for: never held back
        };
        if paused.contains(&p) {
            if ahead <= skew / 2 {
                out.push((p, Align::Resume));
            }
        } else if ahead > skew {
            out.push((p, Align::Pause));
        }
    }
    out
}

/// The processing loop's state.
pub(crate) struct Pipeline<'a> {
    settings: &'a Settings,
    consumer: Arc<BaseConsumer<ConsumerCtx>>,
    producer: Arc<ThreadedProducer<ProducerCtx>>,
    shared: Arc<Shared>,
    /// Decode, on this thread, the records stashed during a rebuild and trickles too small to
    /// hand over; the rest are decoded ahead. One per input topic.
    decoders: Decoders,
    /// The decoder thread: records polled are decoded and interned there while this thread
    /// judges the ones before them.
    ahead: Ahead,
    /// The interner of the engine in `live`, which the decoder thread interns into: kept here
    /// so that handing a batch over does not take the state's lock (which a check may hold).
    /// The engine is replaced only by [`Pipeline::on_assignment`], after which this is
    /// refreshed.
    interner: SharedInterner,
    /// Records judged since the last housekeeping.
    since_housekeeping: u32,
    /// The engine and what it reflects, shared with the check handlers: held only while a
    /// record is judged (or housekeeping touches the engine).
    live: Arc<Mutex<Live>>,
    suppressed: HashSet<String>,
    seen_generation: u64,
    stash: Vec<OwnedMessage>,
    breaches: Vec<Breach>,
    holds: Vec<Hold>,
    /// The producer side: writes the alerts' JSON and produces every message the records
    /// cause, while this thread judges the records after them.
    writer: produce::Writer,
    /// The messages of the records judged since the last hand-over to `writer`.
    pending: produce::Batch,
    /// `dialguard_alerts_total` per rule, resolved once (label lookups hash on every call).
    alert_counters: Vec<(String, prometheus::IntCounter)>,
    /// `dialguard_directives_total` per rule index, for the rules that give directives.
    directive_counters: Vec<Option<prometheus::IntCounter>>,
    /// Consumption paused for backpressure (all partitions).
    paused: bool,
    /// Watermark alignment: which partitions are paused for running ahead, and when each
    /// partition last delivered a record (a slowest partition that delivers nothing for
    /// `idle_after` is not waited for).
    align: Alignment,
    metrics: &'a Metrics,
    health: &'a Health,
    shutdown: &'a Shutdown,
    /// Pre-dial checks waiting for the engine (`crate::check`) because a check handler found
    /// it held, when the API is served.
    checks: Option<CheckQueue>,
    /// The thread writing the last snapshot beside the one in place, with the assignment
    /// generation and the positions it was taken at.
    snapshot_writer: Option<(
        std::thread::JoinHandle<std::io::Result<snapshots::Written>>,
        SnapshotAt,
    )>,
    /// A snapshot written and waiting for a confirmed commit of its positions to be put in place.
    snapshot_pending: Option<(SnapshotAt, snapshots::Written)>,
    /// Where snapshots are kept, if anywhere.
    store: Option<Arc<snapshots::Store>>,
    /// When the broker was last asked whether the waiting snapshot's positions are committed.
    snapshot_asked: Instant,
    /// When the last snapshot was taken (or the windows last restored or rebuilt).
    last_snapshot: Instant,
    /// The status topic's reader, when `[reference] status_topic` is set.
    statuses: Option<Feed>,
    /// The contacts topic's reader, when `[reference] contacts_topic` is set.
    contacts: Option<Feed>,
    /// The contact book, moved out of the engine an assignment replaced, until the next engine
    /// is rebuilt (given to it before it restores calls); updates read meanwhile go here.
    held_contacts: Option<std::sync::Arc<crate::engine::contacts::Contacts>>,
    /// The statuses known, moved out of the engine an assignment replaced, until the next engine
    /// is brought to them (`reference::sync`); updates read meanwhile go here.
    held_statuses: Option<crate::engine::status::Statuses>,
    /// `dialguard_reference_records_total` by result (applied, withdrawn, rejected), for
    /// statuses then contacts.
    reference_counters: [[prometheus::IntCounter; 3]; 2],
}

/// Runs the loop until shutdown, then drains.
pub(crate) fn run(
    settings: &Settings,
    metrics: &Arc<Metrics>,
    health: &Arc<Health>,
    shutdown: &Shutdown,
    checks: Option<CheckQueue>,
    live: Arc<Mutex<Live>>,
) -> Result<(), ServiceError> {
    let k = &settings.kafka;
    let shared = Arc::new(Shared {
        book: Mutex::new(OffsetBook::default()),
        retry: Mutex::new(Vec::new()),
        assignment: Mutex::new(Assignment::default()),
        metrics: metrics.clone(),
        inputs: Inputs::of(settings),
        high: Mutex::new(HashMap::new()),
        warnings: Mutex::new(Throttle::new(Duration::from_secs(10))),
        closing: AtomicBool::new(false),
        reference_in_flight: AtomicU64::new(0),
    });
    let mut pc = client_config(k);
    pc.set("enable.idempotence", "true").set("linger.ms", "1");
    apply_client(&mut pc, k);
    let producer: Arc<ThreadedProducer<ProducerCtx>> = Arc::new(
        pc.create_with_context(ProducerCtx {
            shared: shared.clone(),
        })
        .map_err(|e| ServiceError::Kafka(format!("producer: {e}")))?,
    );
    let mut cc = client_config(k);
    cc.set("group.id", &k.group_id)
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "5000");
    consumer_defaults(&mut cc);
    apply_client(&mut cc, k);
    cc.set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Reaching a partition's end is how the pipeline learns it is caught up: quiet for
        // kafka.idle_after from there, it is idle and no longer holds eviction back.
        .set("enable.partition.eof", "true");
    if let Some(id) = &k.instance_id {
        cc.set("group.instance.id", id);
    }
    let consumer: BaseConsumer<ConsumerCtx> = cc
        .create_with_context(ConsumerCtx {
            shared: shared.clone(),
            producer: producer.clone(),
            health: health.clone(),
            grace: settings.service.shutdown_grace,
            partition_lag: k.partition_lag_metric,
        })
        .map_err(|e| ServiceError::Kafka(format!("consumer: {e}")))?;
    let topics: Vec<&str> = k.inputs.iter().map(|i| i.topic.as_str()).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| ServiceError::Kafka(format!("subscribe to {}: {e}", topics.join(", "))))?;
    tracing::info!(
        brokers = %k.brokers,
        group = %k.group_id,
        input = %topics.join(", "),
        rules = settings.rules.len(),
        "consuming"
    );
    let statuses = match &settings.reference.status_topic {
        None => None,
        Some(t) => Some(Feed::open(settings, t, Contract::Status).map_err(ServiceError::Kafka)?),
    };
    let contacts = match &settings.reference.contacts_topic {
        None => None,
        Some(t) => Some(Feed::open(settings, t, Contract::Contact).map_err(ServiceError::Kafka)?),
    };
    let store = snapshot_store(settings)?.map(Arc::new);
    let interner = lock(&live).engine.interner();
    health.set(false, "waiting for a partition assignment");
    let topics = produce::Topics {
        alerts: k.alerts_topic.clone(),
        suppressions: k.suppressions_topic.clone(),
    };
    let writer = produce::Writer::start(
        settings.rules.clone(),
        topics,
        producer.clone(),
        shutdown.clone(),
    )
    .map_err(|e| ServiceError::Start(format!("producer thread: {e}")))?;
    let mut p = Pipeline {
        settings,
        consumer: Arc::new(consumer),
        producer,
        shared,
        decoders: Decoders::new(settings),
        ahead: Ahead::start(Decoders::settings(settings), wall_now)
            .map_err(|e| ServiceError::Start(format!("decoder thread: {e}")))?,
        interner,
        since_housekeeping: 0,
        live,
        suppressed: HashSet::new(),
        seen_generation: 0,
        stash: Vec::new(),
        breaches: Vec::new(),
        holds: Vec::new(),
        writer,
        pending: produce::Batch::default(),
        alert_counters: settings
            .rules
            .iter()
            .map(|r| {
                (
                    r.id.clone(),
                    metrics
                        .alerts
                        .with_label_values(&[r.id.as_str(), r.severity.as_str()]),
                )
            })
            .collect(),
        directive_counters: settings
            .rules
            .iter()
            .map(|r| {
                directive::reason(r).map(|reason| {
                    metrics
                        .directives
                        .with_label_values(&[r.id.as_str(), reason])
                })
            })
            .collect(),
        paused: false,
        align: Alignment::default(),
        metrics,
        health,
        shutdown,
        checks,
        snapshot_writer: None,
        snapshot_pending: None,
        store,
        snapshot_asked: Instant::now(),
        last_snapshot: Instant::now(),
        statuses,
        held_statuses: None,
        contacts,
        held_contacts: None,
        reference_counters: ["status", "contact"].map(|k| {
            ["applied", "withdrawn", "rejected"]
                .map(|r| metrics.reference_records.with_label_values(&[k, r]))
        }),
    };
    p.load_reference();
    p.main_loop();
    let end = p.finish();
    let (consumer, producer) = (p.consumer.clone(), p.producer.clone());
    drop(p);
    close_clients(consumer, producer, end);
    Ok(())
}

/// Closes the Kafka clients (leave the group, stop librdkafka's threads) on a thread of their
/// own, waiting until `end` at most: a close that hangs (a broker that never answers) must not
/// keep the process from exiting within its grace period. What was not acknowledged by then
/// stays uncommitted, as on any other stop.
fn close_clients(
    consumer: Arc<BaseConsumer<ConsumerCtx>>,
    producer: Arc<ThreadedProducer<ProducerCtx>>,
    end: Instant,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let closer = std::thread::Builder::new()
        .name("dialguard-close".into())
        .spawn(move || {
            drop(consumer);
            drop(producer);
            let _ = tx.send(());
        });
    if closer.is_err() {
        return;
    }
    let left = end.saturating_duration_since(Instant::now());
    if rx
        .recv_timeout(left.max(Duration::from_millis(100)))
        .is_err()
    {
        tracing::warn!("the Kafka clients did not close within the shutdown grace: leaving them");
    }
}

impl Pipeline<'_> {
    fn main_loop(&mut self) {
        let mut last_commit = Instant::now();
        let mut last_confirm = Instant::now();
        let mut last_gauges = Instant::now();
        let mut last_heap = Instant::now();
        let commit_every = self.settings.kafka.commit_interval;
        let mut idle = true;
        while !self.shutdown.is_triggered() {
            // Housekeeping every 64 records, and on every idle turn.
            if idle || self.since_housekeeping >= 64 {
                self.since_housekeeping = 0;
                self.health.beat();
                self.metrics.last_processed.set(wall_ms() as f64 / 1000.0);
                resend_failed(&self.producer, &self.shared);
                self.follow_reference();
                self.backpressure();
                self.align();
                self.metrics
                    .in_flight
                    .set(lock(&self.shared.book).in_flight() as i64);
                {
                    let mut live = lock(&self.live);
                    if live.engine.reservations() > 0 {
                        live.engine.expire_reservations(wall_now());
                    }
                    // Idle partitions still age out: a unit of the eviction pass under way, or
                    // a new pass once one is due (ingesting steps it too).
                    live.engine.tick();
                }
                if last_commit.elapsed() >= commit_every {
                    commit(&self.consumer, &self.shared, CommitMode::Async);
                    last_commit = Instant::now();
                }
                if last_confirm.elapsed() >= COMMIT_CONFIRM_EVERY {
                    self.confirm_commits();
                    last_confirm = Instant::now();
                }
                if self.store.is_some() {
                    self.promote_snapshot(None);
                    if self.last_snapshot.elapsed() >= self.settings.service.snapshot_every {
                        self.snapshot(None);
                    }
                }
                if last_gauges.elapsed() >= Duration::from_secs(1) {
                    let heap = last_heap.elapsed() >= Duration::from_secs(10);
                    self.update_gauges(heap);
                    if heap {
                        last_heap = Instant::now();
                    }
                    last_gauges = Instant::now();
                }
            }
            if self.shared.generation() != self.seen_generation {
                // Batches polled for the assignment that ended are dropped unjudged: their
                // offsets were not committed, so their records are read again.
                while self.ahead.take(true).is_some() {}
                self.on_assignment();
                self.interner = lock(&self.live).engine.interner();
                continue;
            }
            self.serve_checks();
            let polled = if self.ahead.in_flight() < ahead::DEPTH {
                self.poll_batch()
            } else {
                false
            };
            // Judge the oldest batch: waiting for it when nothing new came, or the decoder is
            // as far ahead as it may be; otherwise only if it is ready.
            let wait = !polled || self.ahead.in_flight() >= ahead::DEPTH;
            let judged = match self.ahead.take(wait) {
                Some(batch) => {
                    self.judge_batch(batch);
                    true
                }
                None => false,
            };
            if self.ahead.lost() {
                self.decoder_lost();
                break;
            }
            idle = !polled && !judged;
            if idle {
                self.wait_for_check(Duration::from_millis(5));
            }
        }
    }

    /// Polls the records that are ready, up to a batch, and hands them to the decoder thread.
    /// Returns whether the consumer delivered anything (records, a partition's end, an error):
    /// only a poll that delivered nothing makes the loop idle. Waits for the first only when
    /// nothing is in flight and the check API is not served (see below).
    fn poll_batch(&mut self) -> bool {
        let before = self.shared.generation();
        let consumer = self.consumer.clone();
        // With the check API served, an idle loop waits on the check queue rather than in
        // librdkafka (which nothing here can wake), so a check is answered at once; a
        // record then waits 5 ms at most.
        let wait = if self.checks.is_some() || self.ahead.in_flight() > 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(100)
        };
        let mut batch = Vec::new();
        let mut at_end = None;
        // A partition's end is an event too: counted idle, the loop waited 5 ms for a check
        // after each one, and with the check API served ingestion fell from 50,000 calls/s to
        // about 11,000 (partitions that keep up reach their end at every fetch).
        let mut delivered = false;
        while batch.len() < ahead::BATCH {
            let w = if batch.is_empty() {
                wait
            } else {
                Duration::ZERO
            };
            let polled = consumer.poll(w);
            delivered |= polled.is_some();
            match polled {
                None => break,
                Some(Ok(m)) => {
                    if self.shared.generation() != before {
                        // The poll ran a rebalance callback first: judge this after the rebuild.
                        self.stash.push(m.detach());
                        break;
                    }
                    batch.push(m.detach());
                }
                Some(Err(KafkaError::PartitionEOF(part))) => {
                    if self.shared.generation() == before {
                        at_end = Some(part);
                    }
                    break;
                }
                Some(Err(e)) => {
                    self.shared.client_error(&e, "consume");
                    break;
                }
            }
        }
        let polled = !batch.is_empty();
        if polled && batch.len() < ahead::INLINE_BELOW && self.ahead.in_flight() == 0 {
            // A trickle (records arriving slower than they are judged): handing a few records
            // over would cost two thread wake-ups for less work than decoding them here.
            if self.current(before) {
                for m in batch {
                    self.handle_raw(m);
                }
                self.hand_over();
            }
        } else if polled {
            // Refused only when the decoder thread is gone: the loop sees that
            // (`Ahead::lost`) and stops, so these records are not committed and are read again.
            let _ = self.ahead.send(before, self.interner.clone(), batch);
        }
        if let Some(part) = at_end {
            // Caught up: idle once nothing comes for `idle_after` (see `align`). Judged after
            // the partition's records before it, which would otherwise clear it again.
            while let Some(b) = self.ahead.take(true) {
                self.judge_batch(b);
            }
            // It names a partition, not its topic: with several input topics, `align` finds
            // which lanes are at their end.
            if self.shared.inputs.topics().len() == 1 {
                self.align.at_end.entry(part).or_insert_with(Instant::now);
            }
        }
        delivered
    }

    /// Whether records polled in assignment `generation` may be judged: the windows were
    /// rebuilt for it, and no rebalance callback has ended it since (one may have run in the
    /// very poll after the records).
    fn current(&self, generation: u64) -> bool {
        generation == self.seen_generation && generation == self.shared.generation()
    }

    /// The decoder thread is gone (it panicked), and the batches it held with it. Judging on
    /// past them would commit offsets beyond records never judged; stopping commits only what
    /// was judged, and the next start reads the rest again.
    fn decoder_lost(&mut self) {
        tracing::error!(
            "the decoder thread stopped: stopping, so that the records it held are read again"
        );
        self.shutdown.trigger();
    }

    /// Judges a decoded batch, answering checks every few records. A batch polled for an
    /// assignment that has ended — even if the callback that ended it ran in the very poll
    /// after the batch's last record — is dropped: its partitions may be gone, and its offsets
    /// were not committed, so its records are read again.
    fn judge_batch(&mut self, batch: ahead::Decoded) {
        if !self.current(batch.generation) {
            return;
        }
        let mut decoded = batch.decoded;
        debug_assert_eq!(self.pending.next_record(), 0);
        for (n, m) in batch.records.iter().enumerate() {
            let Some(d) = decoded[n].take() else { continue };
            // The state a call a few records ahead will touch is read while this one is judged,
            // so their cache misses overlap (`Engine::warm`); further ahead, the slots `warm`
            // will look up (`Engine::prewarm`) and before that where they are (`Engine::locate`),
            // and further still the call `warm` will read, decoded on another core: as replay
            // does.
            let call_at = |k: usize| {
                decoded
                    .get(n + k)
                    .and_then(|a| a.as_ref())
                    .and_then(|a| a.as_ref().ok())
            };
            if let Some(far) = call_at(Engine::CALL_AHEAD) {
                far.prefetch();
            }
            let ahead = Lookahead {
                warm: call_at(Engine::WARM_AHEAD),
                prewarm: call_at(Engine::PREWARM_AHEAD),
                locate: call_at(Engine::LOCATE_AHEAD),
            };
            self.handle(m, n, d, ahead);
            if n % 16 == 15 {
                self.serve_checks();
            }
        }
        // The records go with their messages: the producer side takes their headers.
        self.pending.records(batch.records);
        self.hand_over();
    }

    /// Hands the messages of the records judged since the last call to the producer side. If
    /// its thread is gone, stops: what it held was registered and never delivered, so those
    /// records stay uncommitted and are read again.
    fn hand_over(&mut self) {
        if self.pending.is_empty() {
            self.pending.clear();
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        if self.writer.send(batch).is_err() && !self.shutdown.is_triggered() {
            tracing::error!(
                "the producer thread stopped: stopping, so that the records whose messages it held are read again"
            );
            self.shutdown.trigger();
        }
    }

    fn update_gauges(&mut self, heap: bool) {
        let m = self.metrics;
        {
            let live = lock(&self.live);
            let engine = &live.engine;
            m.window_keys.set(engine.window_keys() as i64);
            m.reservations_open.set(engine.reservations() as i64);
            m.retained_calls.set(engine.retained_calls() as i64);
            if let Some(w) = engine.watermark() {
                m.event_time_lag.set((wall_now().0 - w.0) as f64 / 1e9);
                let slowest = engine.slowest().unwrap_or(w);
                m.partition_skew.set((w.0 - slowest.0) as f64 / 1e9);
            }
            if heap {
                m.engine_heap.set(engine.heap_bytes() as i64);
            }
            if self.contacts.is_some() {
                let known = self.held_contacts.as_deref().unwrap_or(engine.contacts());
                m.contacts_known.set(known.len() as i64);
            }
            if self.statuses.is_some() {
                // Between an assignment and its engine, the statuses are held apart.
                let known = self.held_statuses.as_ref().unwrap_or(engine.statuses());
                m.statuses_known.set(known.len() as i64);
                if let Some(w) = engine.watermark() {
                    let n = known.in_force_by_kind(w);
                    for (k, v) in crate::engine::event::StatusKind::ALL.iter().zip(n) {
                        m.statuses_in_force
                            .with_label_values(&[k.as_str()])
                            .set(v as i64);
                    }
                }
            }
        }
        m.in_flight.set(lock(&self.shared.book).in_flight() as i64);
        m.partitions_paused.set(self.align.paused.len() as i64);
    }

    /// With several input topics, which lanes are at their end: librdkafka's partition end
    /// names a partition but not its topic, so a lane is taken for at its end when its next
    /// offset to judge has reached the high watermark the consumer's statistics last reported
    /// (every 5 s), and no longer when it is behind it.
    fn lanes_at_end(&mut self, now: Instant) {
        let high = lock(&self.shared.high).clone();
        let assigned = lock(&self.shared.assignment).partitions.clone();
        let positions = lock(&self.live).positions.clone();
        for lane in assigned {
            let (Some(hi), Some(next)) = (high.get(&lane), positions.get(&lane)) else {
                continue;
            };
            if next >= hi {
                self.align.at_end.entry(lane).or_insert(now);
            } else {
                self.align.at_end.remove(&lane);
            }
        }
    }

    /// Watermark alignment: pauses partitions that ran too far ahead of the slowest, resumes
    /// them as it catches up (see [`alignment`]).
    fn align(&mut self) {
        let k = &self.settings.kafka;
        let now = Instant::now();
        if self.shared.inputs.topics().len() > 1 {
            self.lanes_at_end(now);
        }
        // A partition at its end for `idle_after` no longer holds state back: records that
        // reach it later are new. (Marked idle at once, a partition whose producer batches
        // trail the others' by more than the lateness would see its next calls refused.)
        let lanes = {
            let mut live = lock(&self.live);
            let engine = &mut live.engine;
            self.align.at_end.retain(|part, since| {
                let quiet = now.saturating_duration_since(*since) >= k.idle_after;
                if quiet {
                    engine.lane_idle(*part as Lane);
                }
                !quiet
            });
            engine.lanes()
        };
        let decisions = alignment(
            &lanes,
            &self.align.paused,
            &self.align.last_record,
            &self.align.at_end,
            now,
            k.max_partition_skew,
            k.idle_after,
        );
        for (part, what) in decisions {
            let tpl = self.shared.inputs.list([part]);
            match what {
                Align::Pause => {
                    if self.consumer.pause(&tpl).is_ok() {
                        tracing::debug!(
                            partition = %self.shared.inputs.name(part),
                            "partition paused: more than kafka.max_partition_skew ahead of the slowest"
                        );
                        self.align.paused.insert(part);
                    }
                }
                Align::Resume => {
                    // Under backpressure everything stays paused; it resumes all but these.
                    if self.paused || self.consumer.resume(&tpl).is_ok() {
                        tracing::debug!(partition = %self.shared.inputs.name(part), "partition resumed");
                        self.align.paused.remove(&part);
                        // Waiting while paused is not a stall.
                        self.align.last_record.insert(part, Instant::now());
                    }
                }
            }
        }
    }

    /// Pauses consumption while too much is unacknowledged (brokers slow or down), resumes at
    /// half.
    fn backpressure(&mut self) {
        let in_flight = lock(&self.shared.book).in_flight();
        let max = self.settings.kafka.max_in_flight;
        let want_pause = if self.paused {
            in_flight > max / 2
        } else {
            in_flight >= max
        };
        if want_pause == self.paused {
            return;
        }
        let Ok(tpl) = self.consumer.assignment() else {
            return;
        };
        let r = if want_pause {
            tracing::warn!(
                in_flight,
                "pausing consumption: too many unacknowledged messages"
            );
            self.consumer.pause(&tpl)
        } else {
            tracing::info!(in_flight, "resuming consumption");
            // Partitions paused for running ahead stay paused.
            let mut keep = TopicPartitionList::new();
            for e in tpl.elements() {
                let lane = self.shared.inputs.lane(e.topic(), e.partition());
                if !self.align.paused.contains(&lane) {
                    keep.add_partition(e.topic(), e.partition());
                }
            }
            // Waiting while paused is not a stall.
            let now = Instant::now();
            for t in self.align.last_record.values_mut() {
                *t = now;
            }
            self.consumer.resume(&keep)
        };
        if r.is_ok() {
            self.paused = want_pause;
        }
    }

    /// A new assignment (or none): rebuild the windows, then resume.
    fn on_assignment(&mut self) {
        loop {
            if self.shutdown.is_triggered() {
                return;
            }
            let (generation, parts) = {
                let a = lock(&self.shared.assignment);
                (a.generation, a.partitions.clone())
            };
            self.seen_generation = generation;
            self.paused = false;
            self.align = Alignment::default();
            {
                // Checks get 503 until the rebuild is done.
                let mut live = lock(&self.live);
                live.serving = false;
                // The statuses known go to the next engine (taken once, if this loop turns
                // again for a newer assignment).
                if self.statuses.is_some() && self.held_statuses.is_none() {
                    self.held_statuses = Some(live.engine.take_statuses());
                }
                if self.contacts.is_some() && self.held_contacts.is_none() {
                    self.held_contacts = Some(live.engine.take_contacts());
                }
                live.engine =
                    Engine::new(self.settings.rules.clone(), self.settings.engine.clone());
                live.positions.clear();
            }
            self.suppressed.clear();
            if parts.is_empty() {
                self.stash.clear();
                self.health.set(false, "waiting for a partition assignment");
                self.metrics.ready.set(0);
                return;
            }
            self.health.set(false, "rebuilding windows");
            let mut resume = HashMap::new();
            if self.settings.kafka.rebuild {
                let started = Instant::now();
                let mut group = GroupSide {
                    consumer: &self.consumer,
                    shared: &self.shared,
                    health: self.health,
                    shutdown: self.shutdown,
                    stash: &mut self.stash,
                    generation,
                };
                let restores = &self.metrics.snapshot_restores;
                let mut cx = rebuild::Ctx {
                    settings: self.settings,
                    contacts: self.held_contacts.clone().unwrap_or_default(),
                    decoders: &mut self.decoders,
                    records: &self.metrics.rebuild_records,
                    snapshot_restores: restores,
                    group: &mut group,
                };
                match rebuild::rebuild(&mut cx, &parts, self.store.as_deref()) {
                    Ok(r) => {
                        let from_snapshot = !r.pieces.is_empty();
                        if from_snapshot {
                            restores.with_label_values(&["restored"]).inc();
                        }
                        // Snapshots from before a rebalance: say which served which partitions.
                        let joined = r.pieces.len() > 1 || r.pieces.iter().any(|p| p.1.is_some());
                        for (used, made_for) in r.pieces.iter().filter(|_| joined) {
                            tracing::info!(
                                partitions = changelog::partition_set(used),
                                made_for =
                                    changelog::partition_set(made_for.as_deref().unwrap_or(used)),
                                assigned = changelog::partition_set(&parts),
                                "restored partitions from a snapshot made before a rebalance"
                            );
                        }
                        self.last_snapshot = Instant::now();
                        lock(&self.live).engine = r.engine;
                        self.suppressed = r.published;
                        resume = r.committed;
                        let secs = started.elapsed().as_secs_f64();
                        self.metrics.rebuild_seconds.set(secs);
                        self.metrics.rebuilds.inc();
                        tracing::info!(
                            seconds = secs,
                            from_snapshot,
                            history = r.history,
                            restored = lock(&self.live).engine.retained_calls(),
                            alerts_read = r.alerts_read,
                            suppress = self.suppressed.len(),
                            "windows rebuilt"
                        );
                    }
                    Err(rebuild::Abort::Reassigned) => {
                        // What it read is counted (`rebuild_records`); the next assignment
                        // rebuilds again.
                        self.metrics.rebuilds_abandoned.inc();
                        continue;
                    }
                    Err(rebuild::Abort::Shutdown) => return,
                }
            }
            if self.shared.generation() != generation {
                continue;
            }
            // Each partition is a lane: until it delivers a record or reaches its end, nothing
            // is evicted (its records may be older than anything seen).
            let lanes: Vec<Lane> = parts.iter().map(|p| *p as Lane).collect();
            lock(&self.live).engine.open_lanes(&lanes);
            let now = Instant::now();
            self.align.last_record = parts.iter().map(|p| (*p, now)).collect();
            // Records resume at the committed offsets: an offset passed over from there on was
            // never judged. (Callbacks, which reset the book, run only inside polls on this
            // thread, so the book belongs to this assignment.)
            {
                let mut book = lock(&self.shared.book);
                for (part, offset) in &resume {
                    book.resume_at(*part, *offset);
                }
            }
            // What a check's `as_of` reports per partition: where judging resumes. A partition
            // with nothing committed resumes at its earliest retained offset (the consumer's
            // reset point); asked once here, so an answer covers every assigned partition, not
            // only those that delivered a record since.
            // Five seconds in all, so a broker that does not answer delays readiness (and a
            // stop) by that much at most, however many partitions.
            let budget = Instant::now() + Duration::from_secs(5);
            let mut positions: BTreeMap<i32, i64> = resume.iter().map(|(p, o)| (*p, *o)).collect();
            for p in &parts {
                let left = budget.saturating_duration_since(Instant::now());
                if positions.contains_key(p) || left.is_zero() || self.shutdown.is_triggered() {
                    continue;
                }
                let (topic, partition) = self.shared.inputs.split(*p);
                match self.consumer.fetch_watermarks(topic, partition, left) {
                    Ok((lo, _)) => {
                        positions.insert(*p, lo);
                    }
                    // Listed from its first record on.
                    Err(e) => tracing::debug!(topic, partition, error = %e, "earliest offset"),
                }
            }
            // Which debtors this instance answers checks for: all, unless other instances hold
            // some of the input's partitions. (Several inputs are co-partitioned: the first
            // one's partitions say.)
            let owned = self.settings.check.partitioner.and_then(|partitioner| {
                let inputs = &self.shared.inputs;
                let topic = &inputs.topics()[0];
                let left = budget
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_secs(1));
                match self.consumer.fetch_metadata(Some(topic), left) {
                    Ok(md) => md
                        .topics()
                        .iter()
                        .find(|t| t.name() == topic)
                        .map(|t| Owned {
                            partitioner,
                            partitions: t.partitions().len() as u32,
                            assigned: parts
                                .iter()
                                .filter(|l| inputs.index_of(**l) == 0)
                                .map(|l| inputs.split(*l).1)
                                .collect(),
                        }),
                    Err(e) => {
                        tracing::warn!(error = %e, "input topic metadata: checks are answered for every debtor");
                        None
                    }
                }
            });
            // The statuses known, into the new engine: calls it restored that one covers and
            // that none had flagged are alerted now. The contact book it was rebuilt with (the
            // same, shared) is its own from now on.
            let mut found = Vec::new();
            {
                let mut live = lock(&self.live);
                if let Some(book) = self.held_contacts.take() {
                    live.engine.set_contacts(book);
                }
                if let Some(known) = self.held_statuses.take() {
                    reference::sync(&mut live.engine, known, &mut found);
                }
                live.positions = positions;
                live.owned = owned;
                live.serving = true;
            }
            let now = wall_now();
            for b in &found {
                if let Some(a) = self.status_alert(b, now) {
                    let o = messages::reference_alert(&self.settings.kafka.alerts_topic, &a);
                    self.send_reference(o);
                }
            }
            let tpl = self.shared.inputs.list(parts.iter().copied());
            if let Err(e) = self.consumer.resume(&tpl) {
                tracing::warn!(error = %e, "resuming partitions");
            }
            self.health.set(true, "processing");
            self.metrics.ready.set(1);
            let stash = std::mem::take(&mut self.stash);
            for m in stash {
                if parts.contains(&self.shared.inputs.lane(m.topic(), m.partition())) {
                    self.handle_raw(m);
                }
            }
            self.hand_over();
            return;
        }
    }

    /// Reads the reference topics to the ends they have now, before anything is judged: the
    /// service is not ready until it has (a status or a contact missing would let its calls
    /// through unflagged).
    fn load_reference(&mut self) {
        for contract in [Contract::Contact, Contract::Status] {
            let Some(mut feed) = self.feed(contract).take() else {
                continue;
            };
            self.health.set(
                false,
                match contract {
                    Contract::Status => "reading the status topic",
                    Contract::Contact => "reading the contacts topic",
                },
            );
            let started = Instant::now();
            let mut out = Vec::new();
            let shutdown = self.shutdown;
            let done = feed.load(
                || shutdown.is_triggered(),
                |m, u| self.on_reference(m, u, &mut out),
            );
            for o in out {
                self.send_reference(o);
            }
            let (statuses, contacts) = {
                let live = lock(&self.live);
                (live.engine.statuses().len(), live.engine.contacts().len())
            };
            match contract {
                Contract::Status => {
                    tracing::info!(
                        statuses,
                        seconds = started.elapsed().as_secs_f64(),
                        complete = done,
                        "status topic read"
                    );
                    self.metrics.statuses_known.set(statuses as i64);
                }
                Contract::Contact => {
                    tracing::info!(
                        contacts,
                        seconds = started.elapsed().as_secs_f64(),
                        complete = done,
                        "contacts topic read"
                    );
                    self.metrics.contacts_known.set(contacts as i64);
                }
            }
            *self.feed(contract) = Some(feed);
        }
        self.health.set(false, "waiting for a partition assignment");
    }

    fn feed(&mut self, contract: Contract) -> &mut Option<Feed> {
        match contract {
            Contract::Status => &mut self.statuses,
            Contract::Contact => &mut self.contacts,
        }
    }

    /// Applies what arrived on the reference topics since the last turn (a few thousand records
    /// at most a turn each, so a burst does not hold the calls back).
    fn follow_reference(&mut self) {
        for contract in [Contract::Status, Contract::Contact] {
            let Some(mut feed) = self.feed(contract).take() else {
                continue;
            };
            let mut out = Vec::new();
            feed.poll(Duration::ZERO, 4096, |m, u| {
                self.on_reference(m, u, &mut out)
            });
            *self.feed(contract) = Some(feed);
            for o in out {
                self.send_reference(o);
            }
        }
    }

    /// One reference topic record: applied to the engine (its late breaches alerted, the
    /// record named as their source), withdrawn, or dead-lettered.
    fn on_reference(&mut self, m: &OwnedMessage, u: Update, out: &mut Vec<Outgoing>) {
        let dlq = &self.settings.kafka.dlq_topic;
        let mut found = std::mem::take(&mut self.breaches);
        match u {
            Update::Apply(st) => {
                self.reference_counters[0][0].inc();
                if let Some(held) = &mut self.held_statuses {
                    // Between an assignment and its engine: the next engine gets it.
                    held.upsert(st);
                } else {
                    lock(&self.live).engine.apply_status(st, &mut found);
                }
            }
            Update::Withdraw(id) => {
                self.reference_counters[0][1].inc();
                match &mut self.held_statuses {
                    Some(held) => {
                        held.remove(&id);
                    }
                    None => {
                        lock(&self.live).engine.end_status(&id);
                    }
                }
            }
            Update::Contact(c) => {
                let r = match &mut self.held_contacts {
                    // Between an assignment and its engine: the next engine gets it.
                    Some(held) => std::sync::Arc::make_mut(held).upsert(&c).map(|_| ()),
                    None => lock(&self.live)
                        .engine
                        .apply_contact(c, &mut found)
                        .map(|_| ()),
                };
                match r {
                    Ok(()) => self.reference_counters[1][0].inc(),
                    // The decoder refuses what the book cannot hold; were one through, it is
                    // dead-lettered like any record refused.
                    Err(why) => {
                        self.reference_counters[1][2].inc();
                        out.push(messages::from_reference(messages::dead_letter(
                            dlq,
                            m,
                            Reason::BadValue,
                            why,
                            Origin::REFERENCE,
                        )));
                    }
                }
            }
            Update::Forget(debtor, phone) => {
                self.reference_counters[1][1].inc();
                match &mut self.held_contacts {
                    Some(held) => {
                        std::sync::Arc::make_mut(held).remove(&debtor, &phone);
                    }
                    None => {
                        lock(&self.live).engine.end_contact(&debtor, &phone);
                    }
                }
            }
            Update::Refused(r) => {
                let contact = self.settings.reference.contacts_topic.as_deref() == Some(m.topic());
                self.reference_counters[contact as usize][2].inc();
                out.push(messages::from_reference(messages::dead_letter(
                    dlq,
                    m,
                    r.reason,
                    &r.detail,
                    Origin::REFERENCE,
                )));
            }
        }
        let now = wall_now();
        for b in &found {
            if let Some(a) = self.status_alert(b, now) {
                out.push(messages::from_reference(messages::alert(
                    &self.settings.kafka.alerts_topic,
                    m,
                    &a,
                    Origin::REFERENCE,
                )));
            }
        }
        found.clear();
        self.breaches = found;
    }

    /// The alert of a breach a status or a contact found for an earlier call (counted), or `None` when the
    /// alerts topic already holds it (read back after a restart).
    fn status_alert(&mut self, b: &Breach, now: Ts) -> Option<Alert> {
        let crate::engine::breach::Subject::Earlier(call) = &b.subject else {
            return None;
        };
        let rules = &self.settings.rules;
        let a = alert::render(rules, b, call, now);
        self.count_alert(&a.alert_id, &rules[b.rule as usize])
            .then_some(a)
    }

    /// Whether the alert `id` of `rule` is to be sent: not when the alerts topic already holds
    /// it (read back after a restart; counted as suppressed), else counted as sent. For calls'
    /// alerts and for those statuses and contacts find alike.
    fn count_alert(&mut self, id: &str, rule: &crate::engine::rule::Rule) -> bool {
        if !self.suppressed.is_empty() && self.suppressed.remove(id) {
            self.metrics.alerts_suppressed.inc();
            return false;
        }
        match self.alert_counters.iter().find(|(r, _)| *r == rule.id) {
            Some((_, c)) => c.inc(),
            None => self
                .metrics
                .alerts
                .with_label_values(&[&rule.id, rule.severity.as_str()])
                .inc(),
        }
        true
    }

    /// Sends a message caused by a status, counted until it is delivered.
    fn send_reference(&self, o: Outgoing) {
        self.shared
            .reference_in_flight
            .fetch_add(1, Ordering::Relaxed);
        send(&self.producer, o, Some(self.shutdown));
    }

    /// Answers the checks waiting, without blocking.
    fn serve_checks(&mut self) {
        while let Some(req) = self.checks.as_ref().and_then(|q| q.try_recv().ok()) {
            self.answer_check(req);
        }
    }

    /// Waits up to `wait` for a check, then answers it and any others waiting.
    fn wait_for_check(&mut self, wait: Duration) {
        let Some(q) = &self.checks else { return };
        if let Ok(req) = q.recv_timeout(wait) {
            self.answer_check(req);
            self.serve_checks();
        }
    }

    /// Judges a check's candidates against the state as of the last record judged, and
    /// reserves those allowed when asked to.
    fn answer_check(&mut self, req: CheckRequest) {
        if req.reply.is_closed() {
            // The handler gave up (timed out): judge nothing, reserve nothing.
            return;
        }
        let (reply, open) = {
            let mut live = lock(&self.live);
            if !live.serving {
                // Between assignments: dropping the reply answers 503.
                return;
            }
            let reply = live.reply(req.calls, req.reserve, wall_now());
            (reply, live.engine.reservations())
        };
        self.metrics.reservations_open.set(open as i64);
        let _ = req.reply.send(reply);
    }

    /// Decodes and judges one record here; its messages wait in `pending` for the caller's
    /// [`Pipeline::hand_over`].
    fn handle_raw(&mut self, m: OwnedMessage) {
        let decoded = judge::decode(
            self.decoders.of(m.topic()),
            m.payload().unwrap_or_default(),
            wall_now(),
        );
        let at = self.pending.next_record();
        self.handle(&m, at, decoded, Lookahead::default());
        self.pending.record(m);
    }

    /// Judges one decoded record and queues what it causes for the producer side ([`produce`]);
    /// `record` is the index `m` will have among the records handed over with its messages.
    fn handle<M: Message>(
        &mut self,
        m: &M,
        record: usize,
        decoded: Result<Call, Reject>,
        ahead: Lookahead<'_>,
    ) {
        let t0 = Instant::now();
        self.since_housekeeping += 1;
        self.metrics.consumed.inc();
        let now = wall_now();
        let lane = self.shared.inputs.lane(m.topic(), m.partition());
        let origin = Origin {
            generation: lock(&self.shared.book).generation(),
            lane,
        };
        // A dead letter, or what the producer side writes from the judged call: its alerts
        // (with their ids) and then its directives.
        let mut dead: Option<Outgoing> = None;
        let mut alerts: Vec<(Breach, String)> = Vec::new();
        let mut holds = std::mem::take(&mut self.holds);
        let mut judged: Option<Call> = None;
        // The state is held from here until the record is judged (and its holds found): a
        // check reads it before or after the whole record, never halfway.
        let mut live = lock(&self.live);
        if let Some(a) = ahead.warm {
            std::hint::black_box(live.engine.warm(a));
        }
        if let Some(a) = ahead.prewarm {
            live.engine.prewarm(a);
        }
        if let Some(a) = ahead.locate {
            live.engine.locate(a);
        }
        live.positions.insert(lane, m.offset() + 1);
        match decoded {
            Err(rej) => {
                drop(live);
                dead = Some(self.dead_letter(m, rej.reason, &rej.detail, origin));
            }
            Ok(mut call) => {
                self.align.last_record.insert(lane, t0);
                if !self.align.at_end.is_empty() {
                    self.align.at_end.remove(&lane);
                }
                let behind = live
                    .engine
                    .lane_newest(lane as Lane)
                    .is_some_and(|w| call.occurred_at < w);
                let mut found = std::mem::take(&mut self.breaches);
                let outcome = judge::judge(&mut live.engine, lane as Lane, &mut call, &mut found);
                if matches!(outcome, Outcome::Accepted { skipped } if skipped > 0) {
                    for &ri in live.engine.last_skipped() {
                        self.metrics
                            .rule_skipped
                            .with_label_values(&[self.settings.rules[ri as usize].id.as_str()])
                            .inc();
                    }
                }
                let directives = self.settings.kafka.suppressions_topic.is_some();
                if directives && matches!(outcome, Outcome::Accepted { .. }) {
                    live.engine.holds(&mut call, &mut holds);
                }
                drop(live);
                match outcome {
                    // A duplicate's found breaches are late ones: another record of an attempt
                    // (a parallel dial's answered leg) that started a cooldown.
                    Outcome::Accepted { .. } | Outcome::Duplicate => {
                        if outcome == Outcome::Duplicate {
                            self.metrics.duplicates.inc();
                        } else if behind {
                            self.metrics.late.inc();
                        }
                        // Named and counted here; written on the producer side straight from
                        // the breach (`alert::AlertJson`: the bytes `alert::render` would give,
                        // without its dozen owned strings).
                        let settings = self.settings;
                        for b in found.drain(..) {
                            let rule = &settings.rules[b.rule as usize];
                            let id = alert::alert_id(&rule.id, &b.call(&call).call_id);
                            if self.count_alert(&id, rule) {
                                alerts.push((b, id));
                            }
                        }
                        // (A duplicate's holds were not asked for: `holds` is empty.)
                        if outcome != Outcome::Duplicate {
                            self.directives(&call, &mut holds);
                        }
                        if !alerts.is_empty() || !holds.is_empty() {
                            judged = Some(call);
                        }
                    }
                    Outcome::Rejected(rej) => {
                        dead = Some(self.dead_letter(m, rej.reason, &rej.detail, origin));
                    }
                }
                found.clear();
                self.breaches = found;
            }
        }
        // Registered before the messages are handed over: a record's offset is committed only
        // once each of them is delivered.
        let caused = (alerts.len() + holds.len() + usize::from(dead.is_some())) as u32;
        let skipped = lock(&self.shared.book).processed(lane, m.offset(), caused);
        if skipped > 0 {
            self.passed_over(lane, m.offset(), skipped);
        }
        if let Some(d) = dead {
            self.pending.ready(d);
        }
        if let Some(call) = judged {
            let at = produce::At {
                record,
                call: self.pending.call(call),
                now,
                origin,
            };
            for (b, id) in alerts {
                self.pending.alert(at, b, id);
            }
            for h in holds.drain(..) {
                self.pending.directive(at, h);
            }
        }
        holds.clear();
        self.holds = holds;
        self.metrics.processing.observe(t0.elapsed().as_secs_f64());
    }

    /// Counts input offsets passed over without a record (deleted by retention before they were
    /// read, when the consumer resets to the earliest retained offset; or transaction markers):
    /// those calls were never judged. Warns at most once every 10 s, saying how many gaps were
    /// not logged.
    fn passed_over(&self, lane: i32, offset: i64, skipped: u64) {
        self.metrics.offsets_skipped.inc_by(skipped);
        let admitted = lock(&self.shared.warnings).admit("input-gap", Instant::now());
        if let Some(held_back) = admitted {
            let (topic, partition) = self.shared.inputs.split(lane);
            tracing::warn!(
                topic,
                partition,
                from = offset - skipped as i64,
                to = offset,
                held_back,
                "input records passed over without being judged (deleted by retention before they were read?); dialguard_input_offsets_skipped_total counts them all"
            );
        }
    }

    /// Keeps in `holds` the holds of a call accepted that give suppression directives (the
    /// producer side writes them), and counts them. A directive is a function of the calls of
    /// its key alone, so judging the same calls again gives the same directive (one read back
    /// from the suppressions topic after a restart, in `suppressed`, is not given again); a late
    /// call's may be over already (dialers ignore a past `until`).
    fn directives(&mut self, call: &Call, holds: &mut Vec<Hold>) {
        let rules = &self.settings.rules;
        let suppressed = &mut self.suppressed;
        holds.retain(|h| {
            let rule = &rules[h.rule as usize];
            suppressed.is_empty()
                || !suppressed.remove(&directive::directive_id(&rule.id, &call.call_id))
        });
        for h in holds.iter() {
            match &self.directive_counters[h.rule as usize] {
                Some(c) => c.inc(),
                None => {
                    let rule = &rules[h.rule as usize];
                    self.metrics
                        .directives
                        .with_label_values(&[&rule.id, directive::hold_reason(rule)])
                        .inc()
                }
            }
        }
    }

    fn dead_letter<M: Message>(
        &self,
        m: &M,
        reason: Reason,
        detail: &str,
        origin: Origin,
    ) -> Outgoing {
        self.metrics
            .rejected
            .with_label_values(&[reason.as_str()])
            .inc();
        tracing::debug!(
            topic = m.topic(),
            partition = m.partition(),
            offset = m.offset(),
            reason = reason.as_str(),
            detail,
            "record refused"
        );
        let dlq = &self.settings.kafka.dlq_topic;
        messages::dead_letter(dlq, m, reason, detail, origin)
    }

    /// Takes a snapshot of the windows (under the state's lock: the engine and the positions it
    /// reflects, together) and has a thread write it beside the one in place; `by` writes it
    /// on this thread, done by then (shutdown). Not while the windows are being rebuilt, nor
    /// while the last write is under way.
    fn snapshot(&mut self, by: Option<Instant>) {
        let wait = by.is_some();
        if self.shared.reference_in_flight.load(Ordering::Relaxed) > 0 {
            // Alerts a status caused are not delivered yet: a snapshot now would hold their
            // marks, and a restart from it would not make them again. The next turn retries.
            tracing::debug!("alerts caused by statuses in flight: snapshot put off");
            return;
        }
        self.last_snapshot = Instant::now();
        let Some(store) = self.store.clone() else {
            return;
        };
        if self.snapshot_writer.is_some() {
            if !wait {
                tracing::warn!("the last snapshot is still being written: this one is skipped");
                return;
            }
            self.promote_snapshot(by);
            if self.snapshot_writer.is_some() {
                tracing::warn!("the last snapshot is still being written: none at shutdown");
                return;
            }
        }
        let generation = self.shared.generation();
        let parts = lock(&self.shared.assignment).partitions.clone();
        let started = Instant::now();
        let taken = {
            let live = lock(&self.live);
            let positions: BTreeMap<i32, i64> = parts
                .iter()
                .filter_map(|p| live.positions.get(p).map(|o| (*p, *o)))
                .collect();
            (live.serving && !parts.is_empty() && positions.len() == parts.len())
                .then(|| (live.engine.snapshot(), positions))
        };
        let Some((bytes, positions)) = taken else {
            tracing::debug!("no snapshot: the windows are not serving every assigned partition");
            return;
        };
        self.metrics
            .snapshot_seconds
            .set(started.elapsed().as_secs_f64());
        let at = SnapshotAt {
            generation,
            positions: positions.clone(),
            bytes: bytes.len(),
        };
        // The new snapshot is written over the one waiting for its commit (the same file beside
        // the one in place, the same slot of the topic): that one is given up, so that only a
        // whole snapshot whose own positions are committed is ever put in place.
        self.snapshot_pending = None;
        let timeout = by.map_or(changelog::WRITE_TIMEOUT, |d| {
            d.saturating_duration_since(Instant::now())
        });
        let write = move || store.write(&positions, &bytes, timeout);
        if wait {
            let r = write();
            self.snapshot_written(r, at);
        } else {
            match std::thread::Builder::new()
                .name("dialguard-snapshot".into())
                .spawn(write)
            {
                Ok(h) => self.snapshot_writer = Some((h, at)),
                Err(e) => tracing::warn!(error = %e, "starting the snapshot writer"),
            }
        }
    }

    fn snapshot_written(&mut self, r: std::io::Result<snapshots::Written>, at: SnapshotAt) {
        match r {
            Ok(w) => self.snapshot_pending = Some((at, w)),
            Err(e) => self.snapshot_failed("writing a snapshot failed", &e),
        }
    }

    fn snapshot_failed(&self, what: &str, e: &std::io::Error) {
        self.metrics
            .snapshot_writes
            .with_label_values(&["failed"])
            .inc();
        let place = self.store.as_ref().map(|s| s.place()).unwrap_or_default();
        tracing::warn!(error = %e, store = place, "{what}");
    }

    /// Asks the broker whether the asynchronous commits handed out a round ago took. The
    /// client reports nothing for them (rust-rdkafka #856, librdkafka only logs a failure), so a
    /// refused commit would otherwise be taken for done: the partition's offset would stay
    /// behind until its next record, and a snapshot would wait for it. A refused commit is
    /// counted and sent again. A round trip on this thread, every few seconds, briefly.
    fn confirm_commits(&mut self) {
        let (generation, due) = {
            let mut book = lock(&self.shared.book);
            (book.generation(), book.due())
        };
        if due.is_empty() {
            return;
        }
        let broker = match self.committed_on_broker(due.iter().map(|(p, _)| *p)) {
            Ok(c) => c,
            Err(e) => {
                // Asked again next round.
                tracing::debug!(error = %e, "committed offsets, to confirm commits");
                return;
            }
        };
        let refused = lock(&self.shared.book).confirm(generation, &due, &broker);
        if !refused.is_empty() {
            self.metrics.commit_errors.inc();
            self.shared.throttled_warn(
                "offset commit failed",
                "not_committed",
                "the broker does not hold it: sent again",
            );
            commit(&self.consumer, &self.shared, CommitMode::Async);
        }
    }

    /// The group's committed offsets of `parts` as the broker holds them (absent where it holds
    /// none), asked briefly: a round trip on this thread.
    fn committed_on_broker(
        &self,
        parts: impl Iterator<Item = i32>,
    ) -> rdkafka::error::KafkaResult<HashMap<i32, i64>> {
        let inputs = &self.shared.inputs;
        let c = self
            .consumer
            .committed_offsets(inputs.list(parts), Duration::from_millis(500))?;
        Ok(c.elements()
            .iter()
            .filter(|e| inputs.index(e.topic()).is_some())
            .filter_map(|e| match e.offset() {
                rdkafka::Offset::Offset(o) => Some((inputs.lane(e.topic(), e.partition()), o)),
                _ => None,
            })
            .collect())
    }

    /// Collects the writer's result (`wait`: waits for it), and puts a written snapshot in place
    /// once the broker has confirmed a commit of the offsets it reflects. A snapshot of an
    /// earlier assignment is dropped.
    fn promote_snapshot(&mut self, by: Option<Instant>) {
        let wait = by.is_some();
        if let Some((h, at)) = self.snapshot_writer.take() {
            // A write under way at shutdown is waited for until the deadline, not longer (a
            // slow broker): then it is left behind, and the last snapshot in place stays.
            while let Some(d) = by {
                if h.is_finished() || Instant::now() >= d {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if h.is_finished() {
                let r = h
                    .join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("the writer panicked")));
                self.snapshot_written(r, at);
            } else {
                self.snapshot_writer = Some((h, at));
            }
        }
        let Some((at, written)) = self.snapshot_pending.take() else {
            return;
        };
        let Some(store) = self.store.clone() else {
            return;
        };
        if at.generation != self.shared.generation() {
            store.discard(written);
            return;
        }
        // Asked of the broker, a round trip on this thread: at most every few seconds while a
        // snapshot waits, and briefly (a slow broker delays the snapshot, not the records).
        if !wait && self.snapshot_asked.elapsed() < SNAPSHOT_ASK_EVERY {
            self.snapshot_pending = Some((at, written));
            return;
        }
        self.snapshot_asked = Instant::now();
        let committed = match self.committed_on_broker(at.positions.keys().copied()) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "committed offsets, for a snapshot");
                self.snapshot_pending = Some((at, written));
                return;
            }
        };
        // A partition with nothing committed (idle since its earliest retained offset) is
        // compared with that offset, asked in half a second in all, however many partitions.
        let budget = Instant::now() + Duration::from_millis(500);
        let mut earliest: HashMap<i32, i64> = HashMap::new();
        for (p, s) in &at.positions {
            let left = budget.saturating_duration_since(Instant::now());
            if *s > 0 && !committed.contains_key(p) && !left.is_zero() {
                let (topic, partition) = self.shared.inputs.split(*p);
                match self.consumer.fetch_watermarks(topic, partition, left) {
                    Ok((lo, _)) => {
                        earliest.insert(*p, lo);
                    }
                    Err(e) => {
                        tracing::debug!(topic, partition, error = %e, "earliest offset, for a snapshot")
                    }
                }
            }
        }
        if !snapshots::at_commit(&at.positions, &committed, &earliest) {
            tracing::debug!(positions = ?at.positions, ?committed, "snapshot waits for a commit of its positions");
            self.snapshot_pending = Some((at, written));
            return;
        }
        let timeout = by.map_or(changelog::MANIFEST_TIMEOUT, |d| {
            d.saturating_duration_since(Instant::now())
        });
        match store.promote(written, timeout) {
            Ok(()) => {
                self.metrics
                    .snapshot_writes
                    .with_label_values(&["ok"])
                    .inc();
                self.metrics.snapshot_bytes.set(at.bytes as i64);
                tracing::info!(bytes = at.bytes, store = store.place(), "snapshot in place");
            }
            Err(e) => self.snapshot_failed("putting a snapshot in place failed", &e),
        }
    }

    /// Shutdown: stop fetching, flush, commit, leave the group — within the grace period.
    /// Returns when the clients must be closed by.
    fn finish(&mut self) -> Instant {
        let (end, deadline) = stop_budget(Instant::now(), self.settings.service.shutdown_grace);
        self.hand_over();
        self.health.set(false, "shutting down");
        self.metrics.ready.set(0);
        if let Ok(tpl) = self.consumer.assignment() {
            let _ = self.consumer.pause(&tpl);
        }
        let flushed = drain(&self.producer, &self.shared, self.health, deadline);
        let unacked = lock(&self.shared.book).in_flight();
        commit(&self.consumer, &self.shared, CommitMode::Sync);
        // After the commit: when everything was acknowledged, the snapshot is at the committed
        // offsets and goes in place at once, for the next owner to continue from.
        if self.store.is_some() && Instant::now() < deadline {
            self.snapshot(Some(deadline));
            self.promote_snapshot(Some(deadline));
        }
        if flushed {
            tracing::info!("drained: every produced message acknowledged, offsets committed");
        } else {
            tracing::warn!(
                unacknowledged = unacked,
                "shutdown grace expired: records whose messages were not acknowledged stay uncommitted and will be judged again"
            );
        }
        self.shared.closing.store(true, Ordering::SeqCst);
        self.consumer.unsubscribe();
        self.writer.stop(end);
        end
    }
}

/// How often the broker is asked whether the asynchronous commits sent a round before took.
const COMMIT_CONFIRM_EVERY: Duration = Duration::from_secs(5);

/// How often the broker is asked whether a waiting snapshot's positions are committed.
const SNAPSHOT_ASK_EVERY: Duration = Duration::from_secs(3);

/// The calls a few records after the one [`Pipeline::handle`] judges, whose state it asks
/// for while it holds the engine: `warm` (read now, used in a few records), `prewarm` (the
/// slots `warm` will read, further on), `locate` (where those slots are, further still).
/// None for a record judged alone.
#[derive(Default, Clone, Copy)]
struct Lookahead<'c> {
    warm: Option<&'c Call>,
    prewarm: Option<&'c Call>,
    locate: Option<&'c Call>,
}

/// A snapshot taken: for which assignment, at which positions, its size.
struct SnapshotAt {
    generation: u64,
    positions: BTreeMap<i32, i64>,
    bytes: usize,
}

/// The group consumer's side of a rebuild: committed offsets, and between reads, a beat, the
/// consumer's callbacks served (records it delivers meanwhile kept for the loop) and a check
/// for shutdown or a new assignment.
struct GroupSide<'p> {
    consumer: &'p BaseConsumer<ConsumerCtx>,
    shared: &'p Shared,
    health: &'p Health,
    shutdown: &'p Shutdown,
    stash: &'p mut Vec<OwnedMessage>,
    /// The assignment the rebuild is for.
    generation: u64,
}

impl rebuild::Group for GroupSide<'_> {
    fn committed(&self, tpl: TopicPartitionList) -> KafkaResult<TopicPartitionList> {
        self.consumer.committed_offsets(tpl, rebuild::TIMEOUT)
    }

    fn keep_alive(&mut self) -> Result<(), rebuild::Abort> {
        self.health.beat();
        if self.shutdown.is_triggered() {
            return Err(rebuild::Abort::Shutdown);
        }
        if let Some(Ok(m)) = self.consumer.poll(Duration::ZERO) {
            self.stash.push(m.detach());
        }
        if self.shared.generation() != self.generation {
            return Err(rebuild::Abort::Reassigned);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{alignment, stop_budget, Align, Throttle};
    use crate::engine::time::Ts;
    use crate::engine::LaneProgress;
    use std::collections::{HashMap, HashSet};
    use std::time::{Duration, Instant};

    const H: i64 = 3_600_000_000_000;

    fn lane(lane: u32, hours: Option<i64>, holding: bool) -> LaneProgress {
        LaneProgress {
            lane,
            newest: hours.map(|h| Ts(h * H)),
            holding,
        }
    }

    /// Alignment with a day of skew and 30 s of patience.
    fn decide(
        lanes: &[LaneProgress],
        paused: &HashSet<i32>,
        last: &HashMap<i32, Instant>,
        at_end: &HashMap<i32, Instant>,
        now: Instant,
    ) -> Vec<(i32, Align)> {
        alignment(
            lanes,
            paused,
            last,
            at_end,
            now,
            24 * H,
            Duration::from_secs(30),
        )
    }

    #[test]
    fn alignment_pauses_what_runs_ahead_of_the_slowest_and_resumes_it_at_half_the_skew() {
        let now = Instant::now();
        let recent: HashMap<i32, Instant> = (0..4).map(|p| (p, now)).collect();
        let none = HashSet::new();
        let lanes = [
            lane(0, Some(100), true),
            lane(1, Some(110), true),
            lane(2, Some(200), true),  // 100 h ahead of the slowest
            lane(3, Some(500), false), // idle (at its end): never held back
        ];
        let d = decide(&lanes, &none, &recent, &HashMap::new(), now);
        assert_eq!(d, vec![(2, Align::Pause)]);
        // Paused, it waits until the slowest is within half the skew.
        let paused: HashSet<i32> = [2].into();
        let lanes = [
            lane(0, Some(180), true),
            lane(1, Some(185), true),
            lane(2, Some(200), true),
        ];
        let d = decide(&lanes, &paused, &recent, &HashMap::new(), now);
        assert_eq!(d, vec![]);
        let lanes = [
            lane(0, Some(190), true),
            lane(1, Some(195), true),
            lane(2, Some(200), true),
        ];
        let d = decide(&lanes, &paused, &recent, &HashMap::new(), now);
        assert_eq!(d, vec![(2, Align::Resume)]);
    }

    #[test]
    fn a_slowest_partition_that_delivers_nothing_is_not_waited_for() {
        let now = Instant::now();
        let lanes = [
            lane(0, Some(0), true), // far behind, and silent for a minute
            lane(1, Some(100), true),
            lane(2, Some(101), true),
            lane(3, None, true), // assigned, nothing yet: no time to align on
        ];
        let mut last: HashMap<i32, Instant> = [(1, now), (2, now), (3, now)].into();
        last.insert(0, now - Duration::from_secs(60));
        let paused: HashSet<i32> = [1, 2].into();
        let d = decide(&lanes, &paused, &last, &HashMap::new(), now);
        assert_eq!(d, vec![(1, Align::Resume), (2, Align::Resume)]);
        // Delivering again, it is waited for again.
        last.insert(0, now);
        let d = decide(&lanes, &HashSet::new(), &last, &HashMap::new(), now);
        assert_eq!(d, vec![(1, Align::Pause), (2, Align::Pause)]);
    }

    #[test]
    fn a_partition_at_its_end_is_not_waited_for() {
        let now = Instant::now();
        let lanes = [lane(0, Some(0), true), lane(1, Some(100), true)];
        let recent: HashMap<i32, Instant> = [(0, now), (1, now)].into();
        let paused: HashSet<i32> = [1].into();
        let at_end: HashMap<i32, Instant> = [(0, now)].into();
        let d = decide(&lanes, &paused, &recent, &at_end, now);
        assert_eq!(d, vec![(1, Align::Resume)]);
    }

    #[test]
    fn a_stop_leaves_time_to_commit_close_and_stop_http_within_the_grace() {
        let t0 = Instant::now();
        let (end, drain) = stop_budget(t0, Duration::from_secs(30));
        assert_eq!(end - t0, Duration::from_secs(28));
        assert_eq!(end - drain, Duration::from_secs(3));
        let (end, drain) = stop_budget(t0, Duration::from_secs(2));
        assert_eq!(end - t0, Duration::from_secs(1));
        assert!(drain > t0 && drain < end);
    }

    #[test]
    fn the_log_throttle_passes_one_line_per_key_and_period_and_counts_the_rest() {
        let mut t = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(t.admit("3:FAIL", at(0)), Some(0));
        assert_eq!(t.admit("3:FAIL", at(1)), None);
        assert_eq!(t.admit("3:FAIL", at(9)), None);
        // Another key (facility, or the same one at another level) has its own allowance.
        assert_eq!(t.admit("3:OFFSET", at(9)), Some(0));
        assert_eq!(t.admit("4:FAIL", at(9)), Some(0));
        // After the period, one passes with the count of those held back.
        assert_eq!(t.admit("3:FAIL", at(10)), Some(2));
        assert_eq!(t.admit("3:FAIL", at(11)), None);
        assert_eq!(t.admit("3:FAIL", at(25)), Some(1));
    }
}
