//! Rebuilding the windows when partitions are assigned.
//!
//! 1. Read the committed offset `C` of every assigned input partition.
//! 2. Locate each partition's history: the event time `P` of the calls just before `C` tells
//!    how far back the calls after `C` can reach: `P − (largest reach + allowed lateness)`. Its
//!    offset comes from the broker's timestamp lookup where it has one, else from a binary
//!    search by offset over the records' event times (the mock cluster). The wall clock plays
//!    no part: after long downtime the committed calls are far older than now.
//! 3. Read the alerts topic and the suppressions topic back (from shortly before the first
//!    record after `C` was published, where the broker can look offsets up by time; from the
//!    beginning where it cannot) and keep the ids of alerts and directives caused by records at
//!    or after `C` of an assigned partition: those were published before a crash or a
//!    rebalance but their records were not committed, so they are about to be judged again and
//!    must not be published twice.
//! 4. Read each partition's history up to `C` and restore those calls into a fresh engine, each
//!    partition its own lane (alerts dropped: they were published, since `C` was committed only
//!    after their acknowledgement).
//!
//! The group consumer stays paused meanwhile; it is polled between batches so rebalance
//! callbacks run, and a new assignment restarts the rebuild.
//!
//! A rebuild is given a small context ([`Ctx`]): the settings, a decoder, the counter of
//! records read back, and the group consumer's side ([`Group`]: committed offsets, and staying
//! alive between reads) — not the processing loop's whole state. The decisions that need no
//! broker (where a partition's history starts, which published outputs to suppress) are
//! functions of what was read, tested on their own.

use super::changelog::{self, Changelog};
use super::inputs::{Decoders, Inputs};
use super::pipeline::headers;
use super::snapshots::{self, Restored, Store, Unusable};
use crate::config::Settings;
use crate::engine::{Engine, Lane};
use crate::judge;
use prometheus::IntCounterVec;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// What a rebuild needs from the processing loop.
pub(crate) struct Ctx<'a> {
    pub(crate) settings: &'a Settings,
    /// The contact book: the rebuilt engine's from the start, so calls read back are enriched
    /// and judged as they were.
    pub(crate) contacts: std::sync::Arc<crate::engine::contacts::Contacts>,
    /// A decoder per input topic.
    pub(crate) decoders: &'a mut Decoders,
    /// `dialguard_rebuild_records_total`, by what was read back.
    pub(crate) records: &'a IntCounterVec,
    /// `dialguard_snapshot_restores_total`, by result.
    pub(crate) snapshot_restores: &'a IntCounterVec,
    /// The group consumer's side.
    pub(crate) group: &'a mut dyn Group,
}

/// The group consumer, as a rebuild sees it.
pub(crate) trait Group {
    /// The group's committed offsets for `tpl`.
    fn committed(&self, tpl: TopicPartitionList) -> KafkaResult<TopicPartitionList>;
    /// Called between reads: beats the liveness check, serves the group consumer's callbacks
    /// (a rebalance may arrive), and says whether to go on.
    fn keep_alive(&mut self) -> Result<(), Abort>;
}

/// A rebuilt engine and the alert and directive ids not to publish again.
pub(crate) struct Rebuilt {
    pub(crate) engine: Engine,
    /// The snapshots it continues (none: it was rebuilt from the input's history): for each,
    /// the partitions it was used for, and those it was made for when it held more (made
    /// before a rebalance).
    pub(crate) pieces: Vec<(Vec<i32>, Option<Vec<i32>>)>,
    pub(crate) published: HashSet<String>,
    pub(crate) history: u64,
    /// Alerts and directives read back.
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

pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// Retries a broker call until it succeeds, the assignment changes or shutdown.
fn retry<T>(
    cx: &mut Ctx<'_>,
    what: &str,
    mut f: impl FnMut(&Ctx<'_>) -> KafkaResult<T>,
) -> Result<T, Abort> {
    loop {
        match f(cx) {
            Ok(v) => return Ok(v),
            Err(e) => {
                tracing::warn!(error = %e, "rebuild: {what}; retrying");
                cx.group.keep_alive()?;
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// The rebuild readers' client context: reaching a partition's end is how a read finishes, not
/// an error to log.
pub(crate) struct ReaderCtx;

impl rdkafka::ClientContext for ReaderCtx {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if !crate::telemetry::is_partition_eof(&error) {
            tracing::warn!(error = %error, reason, "rebuild reader");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for ReaderCtx {}

type Reader = BaseConsumer<ReaderCtx>;

fn reader(settings: &Settings) -> KafkaResult<Reader> {
    let k = &settings.kafka;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers)
        .set("client.id", "dialguard-rebuild");
    super::kafka::consumer_defaults(&mut c);
    for (key, v) in &k.client {
        c.set(key, v);
    }
    // A reader outside the group: nothing is committed through it.
    c.set("group.id", format!("{}-rebuild", k.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true");
    // A snapshot's chunks are half a megabyte each: fetching up to 8 MiB of a partition at a
    // time, rather than librdkafka's 1 MiB, reads them in an eighth of the fetch requests (on
    // Tansu, the 4-million-call restart of `cargo bench --bench snapshot -- --service --topic`
    // went from 38.9 s to 35.0 s; that broker's fetch is the bound there).
    if !k
        .client
        .iter()
        .any(|(key, _)| key == "max.partition.fetch.bytes")
    {
        c.set("max.partition.fetch.bytes", "8388608");
    }
    c.create_with_context(ReaderCtx)
}

/// Reads `ranges` (partition → [start, end)) of `topic`, calling `f` for each record in them;
/// returns how many there were. With a `label`, they are counted in
/// `dialguard_rebuild_records_total` under it — also when the read is abandoned (a new
/// assignment, shutdown): what was read, was read.
fn read_ranges(
    cx: &mut Ctx<'_>,
    topic: &str,
    label: Option<&str>,
    ranges: &HashMap<i32, (i64, i64)>,
    f: impl FnMut(&mut Ctx<'_>, &BorrowedMessage<'_>),
) -> Result<u64, Abort> {
    let (mut n, mut past) = (0, 0);
    let read = read_ranges_counting(cx, topic, ranges, f, &mut n, &mut past);
    if let Some(label) = label {
        cx.records.with_label_values(&[label]).inc_by(n);
    }
    read.map(|()| n)
}

/// [`read_ranges`], adding to `n` each record in the ranges and to `past` each record the
/// reader delivered past a range's end. A fetch brings records past a range's end (the rest of
/// the partition's log, up to its fetch size, arrives with the records before it): those are
/// not part of the history and are not passed to `f`; and once a partition's range is read,
/// the partition is paused ([`pause_read`]), so the reader drops what it fetched past the end
/// and fetches no more of that partition while the others are still being read (before, it
/// went on fetching and delivering every finished partition's backlog: 1,240 records beside
/// the 5,752–5,754 of the downtime test's history; the test below checks none are).
fn read_ranges_counting(
    cx: &mut Ctx<'_>,
    topic: &str,
    ranges: &HashMap<i32, (i64, i64)>,
    mut f: impl FnMut(&mut Ctx<'_>, &BorrowedMessage<'_>),
    n: &mut u64,
    past: &mut u64,
) -> Result<(), Abort> {
    let mut open: HashMap<i32, i64> = ranges
        .iter()
        .filter(|(_, (s, e))| s < e)
        .map(|(p, (_, e))| (*p, *e))
        .collect();
    if open.is_empty() {
        return Ok(());
    }
    let c = retry(cx, "creating a reader", |cx| reader(cx.settings))?;
    let mut tpl = TopicPartitionList::new();
    for (part, (start, end)) in ranges {
        if start < end {
            tpl.add_partition_offset(topic, *part, Offset::Offset(*start))
                .expect("valid offset");
        }
    }
    c.assign(&tpl).expect("assign a reader");
    let mut last_beat = Instant::now();
    let started = Instant::now();
    while !open.is_empty() {
        if last_beat.elapsed() >= Duration::from_millis(100) {
            cx.group.keep_alive()?;
            last_beat = Instant::now();
        }
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let part = m.partition();
                if let Some(&end) = open.get(&part) {
                    if m.offset() < end {
                        *n += 1;
                        f(cx, &m);
                    }
                    if m.offset() >= end - 1 {
                        open.remove(&part);
                        pause_read(&c, topic, part);
                    }
                } else {
                    *past += 1;
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(part))) => {
                open.remove(&part);
                pause_read(&c, topic, part);
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "rebuild: reading {topic}");
                cx.group.keep_alive()?;
            }
            None => {}
        }
    }
    tracing::debug!(
        topic,
        records = *n,
        past_ends = *past,
        seconds = started.elapsed().as_secs_f64(),
        "rebuild: ranges read back"
    );
    Ok(())
}

/// Pauses `part` of `topic` on the reader `c`: librdkafka then drops what it has fetched of it
/// and not yet delivered, and fetches no more of it.
fn pause_read(c: &Reader, topic: &str, part: i32) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, part);
    if let Err(e) = c.pause(&tpl) {
        tracing::debug!(error = %e, "rebuild: pausing a partition read");
    }
}

/// Reads the snapshots topic whole and restores the snapshots that hold `parts`, each cut to
/// those it is used for (see [`changelog::Scan::restore`]); tells the changelog what it learnt
/// of the slots.
fn read_changelog(
    cx: &mut Ctx<'_>,
    t: &Changelog,
    parts: &[i32],
) -> Result<(Vec<Restored>, Vec<Unusable>), Abort> {
    let probe = retry(cx, "creating a reader", |cx| reader(cx.settings))?;
    let md = retry(cx, "reading the snapshots topic's metadata", |_| {
        probe.fetch_metadata(Some(&t.topic), TIMEOUT)
    })?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|x| x.name() == t.topic && x.error().is_none())
        .flat_map(|x| x.partitions().iter().map(|p| p.id()))
        .collect();
    let mut ranges = HashMap::new();
    for p in partitions {
        let range = retry(cx, "reading the snapshots topic's offsets", |_| {
            probe.fetch_watermarks(&t.topic, p, TIMEOUT)
        })?;
        ranges.insert(p, range);
    }
    let scope = Inputs::of(cx.settings).snapshot_scope(&cx.settings.kafka.group_id);
    let mut scan = changelog::Scan::new(&scope, parts);
    read_ranges(cx, &t.topic, None, &ranges, |_, m| {
        scan.add(m.key().unwrap_or_default(), m.payload())
    })?;
    t.learn(&scan.key(), scan.slots(), scan.stale());
    Ok(scan.restore(cx.settings))
}

fn header<'a>(m: &'a BorrowedMessage<'_>, name: &str) -> Option<&'a str> {
    let h = m.headers()?;
    h.iter()
        .find(|x| x.key == name)
        .and_then(|x| x.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// One record read while locating history: its offset, event time (when it decodes) and Kafka
/// timestamp.
struct Seen {
    offset: i64,
    event: Option<i64>,
    ts_ms: Option<i64>,
}

/// Reads the records of `partition` in `[from, until)` with `c` (at most a few dozen: probes).
fn read_span(
    cx: &mut Ctx<'_>,
    c: &Reader,
    topic: &str,
    partition: i32,
    (from, until): (i64, i64),
) -> Result<Vec<Seen>, Abort> {
    let mut out = Vec::new();
    if from >= until {
        return Ok(out);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))
        .expect("valid offset");
    retry(cx, "positioning a reader", |_| c.assign(&tpl))?;
    let now = crate::engine::time::Ts::from_jiff(jiff::Timestamp::now());
    loop {
        cx.group.keep_alive()?;
        match c.poll(Duration::from_millis(100)) {
            // (A message from an earlier position of this reader is never delivered after the
            // new assignment, librdkafka discards outdated fetches; an offset before `from`
            // is skipped all the same.)
            Some(Ok(m)) if m.partition() == partition && m.offset() >= from => {
                if m.offset() >= until {
                    break;
                }
                let event = cx
                    .decoders
                    .of(topic)
                    .decode(m.payload().unwrap_or_default(), now)
                    .ok()
                    .map(|call| call.occurred_at.0);
                out.push(Seen {
                    offset: m.offset(),
                    event,
                    ts_ms: m.timestamp().to_millis(),
                });
                if m.offset() >= until - 1 {
                    break;
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(part))) if part == partition => break,
            Some(Err(e)) => tracing::warn!(error = %e, "rebuild: reading {topic}"),
            _ => {}
        }
    }
    Ok(out)
}

/// Where the history of `partition` must start so that every call the records after the
/// committed offset `committed` can be judged with is restored: calls at or after `from_ns`
/// (event time). The broker's timestamp lookup finds it where it can (record timestamps are
/// at or after event time, less `margin_ms` for producers' clocks); otherwise a binary search
/// by offset, probing the event times of a few records: an offset is a safe start when a
/// probe there shows a call more than `lateness` older than `from_ns` (an on-time call so old
/// means its partition's time, and so every earlier call, was before `from_ns`).
fn history_start(
    cx: &mut Ctx<'_>,
    c: &Reader,
    topic: &str,
    partition: i32,
    (lo, committed): (i64, i64),
    from_ns: i64,
    margin_ms: i64,
) -> Result<i64, Abort> {
    let target_ms = from_ns.div_euclid(1_000_000) - margin_ms;
    if let Some(o) = offset_for_time(c, topic, partition, target_ms) {
        return Ok(o.clamp(lo, committed));
    }
    let goal = from_ns.saturating_sub(cx.settings.engine.allowed_lateness);
    search_start((lo, committed), goal, |at, until| {
        let seen = read_span(cx, c, topic, partition, (at, until))?;
        Ok(seen.iter().filter_map(|s| s.event).max())
    })
}

/// Records [`search_start`] reads at each probe.
const PROBE: i64 = 8;
/// [`search_start`] stops when the safe start and the first offset known unsafe are this close.
const SEARCH_SLACK: i64 = 64;

/// The binary search of [`history_start`] over offsets `[lo, committed)`: `probe(at, until)`
/// gives the newest event time among the records in `[at, until)` that decode. An offset is a
/// safe start when a probe there shows a call older than `goal` (the history's start less the
/// allowed lateness): a call judged on time was at most the lateness behind its partition's
/// time then, so every call before it was older than the history's start. Returns the largest
/// offset found safe (`lo` when none is), within [`SEARCH_SLACK`] records of the first one not
/// known to be.
fn search_start(
    (lo, committed): (i64, i64),
    goal: i64,
    mut probe: impl FnMut(i64, i64) -> Result<Option<i64>, Abort>,
) -> Result<i64, Abort> {
    let (mut safe, mut above) = (lo, committed);
    while above - safe > SEARCH_SLACK {
        let mid = safe + (above - safe) / 2;
        match probe(mid, (mid + PROBE).min(committed))? {
            Some(t) if t < goal => safe = mid,
            _ => above = mid,
        }
    }
    Ok(safe)
}

/// The first offset of `partition` with a timestamp at or after `ms`, where the broker can look
/// it up (the mock cluster cannot).
fn offset_for_time(c: &Reader, topic: &str, partition: i32, ms: i64) -> Option<i64> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(ms.max(0)))
        .ok()?;
    let r = c.offsets_for_times(tpl, TIMEOUT).ok()?;
    let e = r.find_partition(topic, partition)?;
    match e.offset() {
        Offset::Offset(o) => Some(o),
        _ => None, // End, or unsupported
    }
}

/// Whether an output (alert or directive) caused by the record at `(topic, partition, offset)`
/// is for a record about to be judged again: one of an assigned input partition at or after its
/// committed offset, or of one with nothing committed. Its id is then kept, so that judging the
/// record again publishes nothing twice.
fn judged_again(
    (topic, partition, offset): (&str, i32, i64),
    inputs: &Inputs,
    parts: &[i32],
    commit_at: &HashMap<i32, i64>,
) -> bool {
    if inputs.index(topic).is_none() {
        return false;
    }
    let lane = inputs.lane(topic, partition);
    parts.contains(&lane) && commit_at.get(&lane).is_none_or(|c| offset >= *c)
}

/// Rebuilds the windows for `parts` (see the module documentation).
///
/// With a snapshot (`base`), its engine continues from the snapshot's positions: only the input
/// between them and the committed offsets is read, not the history before — when the snapshot
/// is at or behind the committed offsets ([`super::snapshots::at_commit`]); otherwise it is set
/// aside (the log and `dialguard_snapshot_restores_total{result="not_at_commit"}` say so).
pub(crate) fn rebuild(
    cx: &mut Ctx<'_>,
    parts: &[i32],
    store: Option<&Store>,
) -> Result<Rebuilt, Abort> {
    let (mut pieces, refused) = match store {
        None => (Vec::new(), Vec::new()),
        Some(store @ Store::File(file)) => match snapshots::load(file, cx.settings, parts) {
            Ok(r) => (vec![r], Vec::new()),
            Err(why) => (Vec::new(), vec![(why, store.place())]),
        },
        Some(store @ Store::Topic(t)) => {
            let (pieces, refused) = read_changelog(cx, t, parts)?;
            let place = store.place();
            (
                pieces,
                refused.into_iter().map(|w| (w, place.clone())).collect(),
            )
        }
    };
    for (why, place) in refused {
        cx.snapshot_restores.with_label_values(&[why.label()]).inc();
        if why == Unusable::Absent {
            tracing::info!(
                store = place,
                "no snapshot: rebuilding from the input's history"
            );
        } else if pieces.is_empty() {
            tracing::warn!(reason = %why, store = place, "snapshot not restored: rebuilding from the input's history");
        } else {
            tracing::warn!(reason = %why, store = place, "a snapshot set aside: the partitions it held come from another, or from their history");
        }
    }
    let k = cx.settings.kafka.clone();
    // Producers' clocks may run ahead of event time or of each other: read a little more.
    let margin_ms = cx.settings.decode.max_future_skew / 1_000_000 + 3_600_000;

    // 1. Committed offsets, by lane (`parts` are lanes: partitions of the input topics).
    let inputs = Inputs::of(cx.settings);
    let tpl = inputs.list(parts.iter().copied());
    let committed = retry(cx, "reading committed offsets", |cx| {
        cx.group.committed(tpl.clone())
    })?;
    let mut commit_at: HashMap<i32, i64> = HashMap::new();
    for e in committed.elements() {
        if let (Some(_), Offset::Offset(o)) = (inputs.index(e.topic()), e.offset()) {
            commit_at.insert(inputs.lane(e.topic(), e.partition()), o);
        }
    }
    let probe = retry(cx, "creating a reader", |cx| reader(cx.settings))?;
    // A partition with nothing committed is read from its earliest retained offset.
    let mut earliest: HashMap<i32, i64> = HashMap::new();
    for b in &pieces {
        for (part, s) in &b.positions {
            if *s > 0 && !commit_at.contains_key(part) {
                let (topic, partition) = inputs.split(*part);
                let (lo, _) = retry(cx, "reading offsets", |_| {
                    probe.fetch_watermarks(topic, partition, TIMEOUT)
                })?;
                earliest.insert(*part, lo);
            }
        }
    }
    pieces.retain(|b| {
        let ok = snapshots::at_commit(&b.positions, &commit_at, &earliest);
        if !ok {
            let why = Unusable::NotAtCommit;
            tracing::warn!(reason = %why, "snapshot not restored: its partitions are rebuilt from the input's history");
            cx.snapshot_restores.with_label_values(&[why.label()]).inc();
        }
        ok
    });
    // One snapshot for every partition: continued as it is. Otherwise the snapshots' states
    // are joined, the largest taking in the others, and the partitions none holds start empty
    // (their history is read below).
    let mut pieces_from = Vec::new();
    let mut from: Option<BTreeMap<i32, i64>> = None;
    let mut base: Option<Engine> = None;
    pieces.sort_by_key(|b| std::cmp::Reverse(b.engine.retained_calls()));
    for b in pieces {
        pieces_from.push((b.positions.keys().copied().collect::<Vec<_>>(), b.cut_from));
        from.get_or_insert_with(BTreeMap::new).extend(b.positions);
        match &mut base {
            None => base = Some(b.engine),
            Some(e) => e
                .absorb(b.engine)
                .expect("the snapshots used hold disjoint partitions"),
        }
    }
    let fresh = || Engine::new(cx.settings.rules.clone(), cx.settings.engine.clone());
    let uncovered: Vec<Lane> = parts
        .iter()
        .filter(|p| !from.as_ref().is_some_and(|f| f.contains_key(p)))
        .map(|p| *p as Lane)
        .collect();
    let mut engine = match base {
        None => fresh(),
        Some(mut e) => {
            if !uncovered.is_empty() {
                // Empty lanes of an engine that evicted nothing: the joined cutoff lets their
                // history in, while the snapshots' lanes keep theirs.
                let mut empty = fresh();
                empty.open_lanes(&uncovered);
                e.absorb(empty)
                    .expect("partitions no snapshot holds are in none");
            }
            e
        }
    };
    engine.set_contacts(cx.contacts.clone());
    let lanes: Vec<Lane> = parts.iter().map(|p| *p as Lane).collect();
    engine.open_lanes(&lanes);
    let retention = engine.retention();

    // 2. Where each partition's history starts: the largest reach plus lateness behind the
    //    event time of its committed position (not behind the wall clock: after downtime the
    //    committed calls are older than that). And when the first record not committed was
    //    published: alerts it or later records caused were published after it.
    let mut ranges = HashMap::new();
    let mut alerts_since: Option<i64> = None;
    let mut alerts_from_start = false;
    for part in parts {
        let Some(&c) = commit_at.get(part) else {
            continue; // nothing committed: live processing starts at the reset point
        };
        let (topic, partition) = inputs.split(*part);
        let (lo, hi) = retry(cx, "reading offsets", |_| {
            probe.fetch_watermarks(topic, partition, TIMEOUT)
        })?;
        let c = c.min(hi);
        let tail = read_span(
            cx,
            &probe,
            topic,
            partition,
            ((c - 32).max(lo), (c + 1).min(hi)),
        )?;
        if c < hi {
            match tail.iter().find(|s| s.offset >= c).and_then(|s| s.ts_ms) {
                Some(ts) => {
                    let since = ts - margin_ms;
                    alerts_since = Some(alerts_since.map_or(since, |a| a.min(since)));
                }
                None => alerts_from_start = true,
            }
        }
        if c <= lo {
            continue; // the committed calls are gone (retention): nothing to restore
        }
        let newest = tail
            .iter()
            .filter(|s| s.offset < c)
            .filter_map(|s| s.event)
            .max();
        let start = match (from.as_ref().and_then(|f| f.get(part)), newest) {
            // A snapshot reflects the records before its position.
            (Some(position), _) => (*position).max(lo),
            (None, Some(t)) => history_start(
                cx,
                &probe,
                topic,
                partition,
                (lo, c),
                t.saturating_sub(retention),
                margin_ms,
            )?,
            (None, None) => lo, // no call decodes near the committed offset: read it all
        };
        ranges.insert(*part, (start, c));
    }

    // 3. Alerts and suppression directives already published for records about to be judged
    //    again (both are read the same way: the id header and the source record's position).
    let mut outputs = vec![(k.alerts_topic.clone(), headers::ALERT_ID, "alerts")];
    if let Some(t) = &k.suppressions_topic {
        outputs.push((t.clone(), headers::DIRECTIVE_ID, "suppressions"));
    }
    let uncommitted = alerts_from_start || alerts_since.is_some() || commit_at.len() < parts.len();
    let mut output_ranges = Vec::new();
    for (topic, id_header, label) in outputs {
        let meta = retry(cx, "reading output topic metadata", |_| {
            probe.fetch_metadata(Some(&topic), TIMEOUT)
        })?;
        let out_parts: Vec<i32> = meta
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|x| x.id()))
            .collect();
        let mut ranges = HashMap::new();
        for ap in out_parts.into_iter().filter(|_| uncommitted) {
            let (lo, hi) = retry(cx, "locating published outputs", |_| {
                probe.fetch_watermarks(&topic, ap, TIMEOUT)
            })?;
            let start = match alerts_since {
                Some(ms) if !alerts_from_start && commit_at.len() == parts.len() => {
                    offset_for_time(&probe, &topic, ap, ms).map_or(lo, |o| o.max(lo))
                }
                _ => lo,
            };
            ranges.insert(ap, (start, hi));
        }
        output_ranges.push((topic, id_header, label, ranges));
    }
    drop(probe);
    let mut published = HashSet::new();
    let mut alerts_read = 0;
    for (topic, id_header, label, ranges) in &output_ranges {
        let n = read_ranges(cx, topic, Some(label), ranges, |_, m| {
            let (Some(t), Some(sp), Some(so), Some(id)) = (
                header(m, headers::SOURCE_TOPIC),
                header(m, headers::SOURCE_PARTITION).and_then(|v| v.parse::<i32>().ok()),
                header(m, headers::SOURCE_OFFSET).and_then(|v| v.parse::<i64>().ok()),
                header(m, id_header),
            ) else {
                return;
            };
            if judged_again((t, sp, so), &inputs, parts, &commit_at) {
                published.insert(id.to_owned());
            }
        })?;
        alerts_read += n;
    }

    // 4. The input history up to the committed offsets, each partition its own lane; one
    //    input topic after the other (the engine's result does not depend on the order).
    let mut dropped = Vec::new();
    let now = crate::engine::time::Ts::from_jiff(jiff::Timestamp::now());
    let mut history = 0;
    for (i, topic) in inputs.topics().iter().enumerate() {
        let of_topic: HashMap<i32, (i64, i64)> = ranges
            .iter()
            .filter(|(lane, _)| inputs.index_of(**lane) == i)
            .map(|(lane, r)| (inputs.split(*lane).1, *r))
            .collect();
        history += read_ranges(cx, topic, Some("input"), &of_topic, |cx, m| {
            let decoder = cx.decoders.of(topic);
            if let Ok(mut call) = judge::decode(decoder, m.payload().unwrap_or_default(), now) {
                // A call whose debtor the book does not name was refused when first judged.
                if engine.find_debtor(&mut call).is_err() {
                    return;
                }
                engine.enrich(&mut call);
                engine.restore_on(
                    inputs.lane_at(i, m.partition()) as Lane,
                    &call,
                    &mut dropped,
                );
                dropped.clear();
            }
        })?;
    }
    Ok(Rebuilt {
        engine,
        pieces: pieces_from,
        published,
        history,
        alerts_read,
        committed: commit_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A group whose assignment never changes: reads run to their end.
    struct Steady;

    impl Group for Steady {
        fn committed(&self, _: TopicPartitionList) -> KafkaResult<TopicPartitionList> {
            unreachable!("read_ranges asks for no committed offsets")
        }
        fn keep_alive(&mut self) -> Result<(), Abort> {
            Ok(())
        }
    }

    /// A mock cluster whose topic "calls" has partitions of `lengths` (partition, records), and
    /// the default configuration pointed at it.
    fn calls_on_a_mock(
        lengths: &[(i32, i64)],
    ) -> (
        rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
        Settings,
    ) {
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
        cluster
            .create_topic("calls", lengths.len() as i32, 1)
            .expect("topic");
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .create()
            .expect("producer");
        for &(part, len) in lengths {
            for i in 0..len {
                let payload = format!("{part}-{i}");
                let mut record = BaseRecord::<(), _>::to("calls")
                    .partition(part)
                    .payload(&payload);
                while let Err((_, back)) = producer.send(record) {
                    producer.poll(Duration::from_millis(10));
                    record = back;
                }
            }
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
        let mut settings = Settings::load_with_env(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dialguard.toml"),
            Some(HashMap::new()),
        )
        .expect("settings");
        settings.kafka.brokers = cluster.bootstrap_servers();
        (cluster, settings)
    }

    fn counters() -> (IntCounterVec, IntCounterVec) {
        let opts = |name: &str| prometheus::Opts::new(name, "test");
        (
            IntCounterVec::new(opts("records"), &["topic"]).unwrap(),
            IntCounterVec::new(opts("restores"), &["result"]).unwrap(),
        )
    }

    /// A read back passes exactly the records of its ranges, in offset order, and none of what
    /// follows them: a partition whose range ends early (a short history, then a backlog) is
    /// paused, and what was fetched of it past the end is dropped, not delivered, while a
    /// longer range of another partition is still read. (Without the pause the reader
    /// delivered the rest of the short partition: nearly all of its 3,000 records.)
    #[test]
    fn a_read_back_passes_its_ranges_and_delivers_nothing_past_them() {
        let (_cluster, settings) = calls_on_a_mock(&[(0, 3_000), (1, 6_000)]);
        let (records, restores) = counters();
        let mut decoders = Decoders::new(&settings);
        let mut group = Steady;
        let mut cx = Ctx {
            settings: &settings,
            contacts: Default::default(),
            decoders: &mut decoders,
            records: &records,
            snapshot_restores: &restores,
            group: &mut group,
        };
        let ranges: HashMap<i32, (i64, i64)> = [(0, (0, 10)), (1, (100, 5_000))].into();
        let mut seen: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        let (mut n, mut past) = (0, 0);
        let read = read_ranges_counting(
            &mut cx,
            "calls",
            &ranges,
            |_, m| seen.entry(m.partition()).or_default().push(m.offset()),
            &mut n,
            &mut past,
        );
        assert!(read.is_ok());
        assert_eq!(seen[&0], (0..10).collect::<Vec<i64>>());
        assert_eq!(seen[&1], (100..5_000).collect::<Vec<i64>>());
        assert_eq!(n, 10 + 4_900);
        assert_eq!(past, 0, "records delivered past the ranges' ends");
    }

    /// A group whose assignment changes once the read back has passed `after` records (counted
    /// in `seen` by the read's callback): the next beat says so.
    struct ReassignedAfter {
        seen: std::rc::Rc<std::cell::Cell<u64>>,
        after: u64,
        beats: u32,
    }

    impl Group for ReassignedAfter {
        fn committed(&self, _: TopicPartitionList) -> KafkaResult<TopicPartitionList> {
            unreachable!("read_ranges asks for no committed offsets")
        }
        fn keep_alive(&mut self) -> Result<(), Abort> {
            self.beats += 1;
            if self.seen.get() >= self.after {
                Err(Abort::Reassigned)
            } else {
                Ok(())
            }
        }
    }

    /// A rebuild's read abandoned halfway (the assignment changed under it, as when an instance
    /// joins the group while another rebuilds) stops at the next beat, passes nothing more, and
    /// still counts in `dialguard_rebuild_records_total` every record it read: what was read,
    /// was read (docs/operations.md, the rebuild's metrics). The read is slowed to a record a
    /// millisecond so that the beats, every 100 ms, fall inside it.
    #[test]
    fn a_read_back_abandoned_for_a_new_assignment_stops_and_counts_what_it_read() {
        let (_cluster, settings) = calls_on_a_mock(&[(0, 1_000)]);
        let (records, restores) = counters();
        let mut decoders = Decoders::new(&settings);
        let seen = std::rc::Rc::new(std::cell::Cell::new(0u64));
        let mut group = ReassignedAfter {
            seen: seen.clone(),
            after: 50,
            beats: 0,
        };
        let mut cx = Ctx {
            settings: &settings,
            contacts: Default::default(),
            decoders: &mut decoders,
            records: &records,
            snapshot_restores: &restores,
            group: &mut group,
        };
        let ranges: HashMap<i32, (i64, i64)> = [(0, (0, 1_000))].into();
        let mut offsets = Vec::new();
        let read = read_ranges(&mut cx, "calls", Some("input"), &ranges, |_, m| {
            offsets.push(m.offset());
            seen.set(seen.get() + 1);
            std::thread::sleep(Duration::from_millis(1));
        });
        assert!(
            matches!(read, Err(Abort::Reassigned)),
            "the read was not abandoned"
        );
        let n = offsets.len() as u64;
        assert!(
            (50..1_000).contains(&n),
            "abandoned after {n} of 1,000 records: not halfway"
        );
        assert_eq!(
            offsets,
            (0..n as i64).collect::<Vec<_>>(),
            "in order, from the start"
        );
        assert_eq!(
            records.with_label_values(&["input"]).get(),
            n,
            "the counter counts what the abandoned read passed"
        );
        assert!(group.beats >= 1);
    }

    /// `search_start` over a partition whose event times are `events` (offset = index), every
    /// record read.
    fn start_of(events: &[i64], goal: i64) -> i64 {
        let probes = std::cell::Cell::new(0);
        let r = search_start((0, events.len() as i64), goal, |at, until| {
            probes.set(probes.get() + 1);
            Ok(events[at as usize..until as usize].iter().copied().max())
        });
        assert!(probes.get() <= 64, "a binary search, not a scan");
        r.unwrap_or_else(|_| unreachable!("the probe never aborts"))
    }

    proptest! {
        /// Whatever the arrival order within the lateness, the start found never leaves out a
        /// call the history needs (one at or after its start), and never looks past the
        /// committed offset.
        #[test]
        fn the_history_start_leaves_out_no_call_it_needs(
            steps in prop::collection::vec((0i64..100, 0i64..=50), 0..3000),
            lateness in 0i64..=50,
            from in 0i64..150_000,
        ) {
            // Each call at most `lateness` behind the newest before it, as the lateness gate
            // guarantees of judged calls.
            let mut newest = 0i64;
            let events: Vec<i64> = steps
                .iter()
                .map(|(advance, behind)| {
                    newest += advance;
                    newest - behind.min(&lateness)
                })
                .collect();
            let start = start_of(&events, from - lateness);
            prop_assert!((0..=events.len() as i64).contains(&start));
            for (o, t) in events.iter().enumerate().take(start as usize) {
                prop_assert!(*t < from, "offset {o} at {t} is needed (history from {from}) but starts before {start}");
            }
        }
    }

    #[test]
    fn in_order_calls_give_a_start_within_a_probe_and_the_slack_of_the_boundary() {
        let events: Vec<i64> = (0..10_000).collect();
        for goal in [0, 1, 500, 5_000, 9_990, 10_000, 20_000] {
            let start = start_of(&events, goal);
            let boundary = goal.clamp(0, 10_000); // the first offset at or after `goal`
            assert!(start <= boundary, "goal {goal}: {start}");
            assert!(
                start >= (boundary - SEARCH_SLACK - PROBE).max(0),
                "goal {goal}: {start} is too far back"
            );
        }
    }

    #[test]
    fn outputs_of_records_about_to_be_judged_again_are_suppressed() {
        let commit_at: HashMap<i32, i64> = [(0, 100), (1, 5)].into_iter().collect();
        let parts = [0, 1, 2];
        let inputs = Inputs::new(vec!["calls".into()]);
        let again = |t, p, o| judged_again((t, p, o), &inputs, &parts, &commit_at);
        assert!(again("calls", 0, 100), "at the committed offset");
        assert!(again("calls", 0, 250), "after it");
        assert!(
            !again("calls", 0, 99),
            "committed: its outputs were acknowledged first"
        );
        assert!(again("calls", 2, 0), "a partition with nothing committed");
        assert!(!again("calls", 3, 500), "a partition not assigned here");
        assert!(!again("other", 0, 500), "another input topic");
        // Two inputs: lanes interleave their partitions (a:0 is 0, b:0 is 1, a:1 is 2).
        let two = Inputs::new(vec!["a".into(), "b".into()]);
        let commit_at: HashMap<i32, i64> = [(0, 100), (1, 5)].into_iter().collect();
        let parts = [0, 1, 2];
        let again = |t, p, o| judged_again((t, p, o), &two, &parts, &commit_at);
        assert!(!again("a", 0, 50) && again("a", 0, 100));
        assert!(
            !again("b", 0, 4) && again("b", 0, 5),
            "b's own commit, not a's"
        );
        assert!(again("a", 1, 0), "a:1, nothing committed");
        assert!(!again("b", 1, 500), "b:1 (lane 3) is not assigned here");
    }
}
