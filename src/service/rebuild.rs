//! Rebuilding the windows when partitions are assigned.
//!
//! 1. Read the committed offset `C` of every assigned input partition.
//! 2. Read the alerts topic back (from the retention span before now, where the broker can look
//!    offsets up by time; from the beginning where it cannot) and keep the ids of alerts caused
//!    by records at or after `C` of an assigned partition: those were published before a crash
//!    or a rebalance but their records were not committed, so they are about to be judged again
//!    and must not be published twice.
//! 3. Read each assigned input partition from the retention span before now (or its beginning)
//!    up to `C` and restore those calls into a fresh engine (alerts dropped: they were
//!    published, since `C` was committed only after their acknowledgement).
//!
//! The group consumer stays paused meanwhile; it is polled between batches so rebalance
//! callbacks run, and a new assignment restarts the rebuild.

use super::pipeline::{headers, Pipeline};
use crate::engine::Engine;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// A rebuilt engine and the alert ids not to publish again.
pub(crate) struct Rebuilt {
    pub(crate) engine: Engine,
    pub(crate) published: HashSet<String>,
    pub(crate) history: u64,
    pub(crate) alerts_read: u64,
    /// The committed offset of each assigned input partition that has one: where it resumes.
    pub(crate) committed: HashMap<i32, i64>,
}

/// Why a rebuild stopped before the end.
pub(crate) enum Abort {
    /// The assignment changed meanwhile.
    Reassigned,
    /// Shutdown was asked for.
    Shutdown,
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// Retries a broker call until it succeeds, the assignment changes or shutdown.
fn retry<T>(
    p: &mut Pipeline<'_>,
    generation: u64,
    what: &str,
    mut f: impl FnMut(&Pipeline<'_>) -> rdkafka::error::KafkaResult<T>,
) -> Result<T, Abort> {
    loop {
        match f(p) {
            Ok(v) => return Ok(v),
            Err(e) => {
                tracing::warn!(error = %e, "rebuild: {what}; retrying");
                keep_alive(p, generation)?;
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// Beats, serves the group consumer's callbacks, and checks for shutdown or reassignment.
fn keep_alive(p: &mut Pipeline<'_>, generation: u64) -> Result<(), Abort> {
    p.health.beat();
    if p.shutdown.is_triggered() {
        return Err(Abort::Shutdown);
    }
    if let Some(Ok(m)) = p.consumer.poll(Duration::ZERO) {
        p.stash.push(m.detach());
    }
    if p.shared_generation() != generation {
        return Err(Abort::Reassigned);
    }
    Ok(())
}

/// The rebuild readers' client context: reaching a partition's end is how a read finishes, not
/// an error to log.
pub(crate) struct ReaderCtx;

impl rdkafka::ClientContext for ReaderCtx {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if !matches!(error, rdkafka::error::KafkaError::PartitionEOF(_)) {
            tracing::warn!(error = %error, reason, "rebuild reader");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for ReaderCtx {}

type Reader = BaseConsumer<ReaderCtx>;

fn reader(p: &Pipeline<'_>) -> rdkafka::error::KafkaResult<Reader> {
    let k = &p.settings.kafka;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers)
        .set("client.id", "dialguard-rebuild");
    for (key, v) in &k.client {
        c.set(key, v);
    }
    // A reader outside the group: nothing is committed through it.
    c.set("group.id", format!("{}-rebuild", k.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true");
    c.create_with_context(ReaderCtx)
}

/// Where to start reading `partition` of `topic`: the first offset at or after `since_ms`
/// where the broker can tell, else the beginning.
fn start_offset(
    c: &Reader,
    topic: &str,
    partition: i32,
    since_ms: i64,
) -> rdkafka::error::KafkaResult<(i64, i64)> {
    let (lo, hi) = c.fetch_watermarks(topic, partition, TIMEOUT)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(since_ms))?;
    let by_time = c.offsets_for_times(tpl, TIMEOUT).ok().and_then(|r| {
        r.find_partition(topic, partition)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None, // End (or unsupported, as on the mock cluster): fall back
            })
    });
    Ok((by_time.map_or(lo, |o| o.max(lo)), hi))
}

/// Reads `ranges` (partition → [start, end)) of `topic`, calling `f` for each record.
fn read_ranges(
    p: &mut Pipeline<'_>,
    generation: u64,
    topic: &str,
    ranges: &HashMap<i32, (i64, i64)>,
    mut f: impl FnMut(&mut Pipeline<'_>, &BorrowedMessage<'_>),
) -> Result<u64, Abort> {
    let mut open: HashMap<i32, i64> = ranges
        .iter()
        .filter(|(_, (s, e))| s < e)
        .map(|(p, (_, e))| (*p, *e))
        .collect();
    if open.is_empty() {
        return Ok(0);
    }
    let c = retry(p, generation, "creating a reader", reader)?;
    let mut tpl = TopicPartitionList::new();
    for (part, (start, end)) in ranges {
        if start < end {
            tpl.add_partition_offset(topic, *part, Offset::Offset(*start))
                .expect("valid offset");
        }
    }
    c.assign(&tpl).expect("assign a reader");
    let mut n = 0u64;
    let mut last_beat = Instant::now();
    while !open.is_empty() {
        if last_beat.elapsed() >= Duration::from_millis(100) {
            keep_alive(p, generation)?;
            last_beat = Instant::now();
        }
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                n += 1;
                let part = m.partition();
                if let Some(&end) = open.get(&part) {
                    if m.offset() < end {
                        f(p, &m);
                    }
                    if m.offset() >= end - 1 {
                        open.remove(&part);
                    }
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(part))) => {
                open.remove(&part);
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "rebuild: reading {topic}");
                keep_alive(p, generation)?;
            }
            None => {}
        }
    }
    Ok(n)
}

fn header<'a>(m: &'a BorrowedMessage<'_>, name: &str) -> Option<&'a str> {
    let h = m.headers()?;
    h.iter()
        .find(|x| x.key == name)
        .and_then(|x| x.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Rebuilds the windows for `parts` (see the module documentation).
pub(crate) fn rebuild(
    p: &mut Pipeline<'_>,
    parts: &[i32],
    generation: u64,
) -> Result<Rebuilt, Abort> {
    let k = p.settings.kafka.clone();
    let mut engine = Engine::new(p.settings.rules.clone(), p.settings.engine.clone());
    let retention_ms = engine.retention() / 1_000_000;
    let since_ms = jiff::Timestamp::now().as_millisecond() - retention_ms - 60_000;

    // 1. Committed offsets.
    let mut tpl = TopicPartitionList::new();
    for part in parts {
        tpl.add_partition(&k.input_topic, *part);
    }
    let committed = retry(p, generation, "reading committed offsets", |p| {
        p.consumer.committed_offsets(tpl.clone(), TIMEOUT)
    })?;
    let mut commit_at: HashMap<i32, i64> = HashMap::new();
    for e in committed.elements_for_topic(&k.input_topic) {
        if let Offset::Offset(o) = e.offset() {
            commit_at.insert(e.partition(), o);
        }
    }

    // 2. Alerts already published for records about to be judged again.
    let probe = retry(p, generation, "creating a reader", reader)?;
    let meta = retry(p, generation, "reading alerts topic metadata", |_| {
        probe.fetch_metadata(Some(&k.alerts_topic), TIMEOUT)
    })?;
    let alert_parts: Vec<i32> = meta
        .topics()
        .iter()
        .filter(|t| t.name() == k.alerts_topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|x| x.id()))
        .collect();
    let mut ranges = HashMap::new();
    for ap in alert_parts {
        let r = retry(p, generation, "locating alerts", |_| {
            start_offset(&probe, &k.alerts_topic, ap, since_ms)
        })?;
        ranges.insert(ap, r);
    }
    let mut published = HashSet::new();
    let input = k.input_topic.clone();
    let alerts_read = read_ranges(p, generation, &k.alerts_topic, &ranges, |_, m| {
        let (Some(t), Some(sp), Some(so), Some(id)) = (
            header(m, headers::SOURCE_TOPIC),
            header(m, headers::SOURCE_PARTITION).and_then(|v| v.parse::<i32>().ok()),
            header(m, headers::SOURCE_OFFSET).and_then(|v| v.parse::<i64>().ok()),
            header(m, headers::ALERT_ID),
        ) else {
            return;
        };
        if t == input && parts.contains(&sp) && commit_at.get(&sp).is_none_or(|c| so >= *c) {
            published.insert(id.to_owned());
        }
    })?;

    // 3. The input history up to the committed offsets.
    let mut ranges = HashMap::new();
    for part in parts {
        let Some(&c) = commit_at.get(part) else {
            continue; // nothing committed: live processing starts at the reset point
        };
        let (start, _) = retry(p, generation, "locating history", |_| {
            start_offset(&probe, &k.input_topic, *part, since_ms)
        })?;
        ranges.insert(*part, (start, c));
    }
    drop(probe);
    let mut dropped = Vec::new();
    let now = crate::engine::time::Ts::from_jiff(jiff::Timestamp::now());
    let history = read_ranges(p, generation, &k.input_topic, &ranges, |p, m| {
        if let Ok(call) = p.decoder.decode(m.payload().unwrap_or_default(), now) {
            engine.restore(&call, now, &mut dropped);
            dropped.clear();
        }
    })?;
    p.metrics.rebuild_records.inc_by(history + alerts_read);
    Ok(Rebuilt {
        engine,
        published,
        history,
        alerts_read,
        committed: commit_at,
    })
}
