//! Snapshots in a compacted Kafka topic (`[kafka] snapshots_topic`, the default store): a pod
//! with no disk restores on any node.
//!
//! A snapshot is the engine's bytes cut into chunks of at most [`CHUNK`] bytes (brokers refuse
//! messages over 1 MiB by default), and a small *manifest* that says which chunks make it and
//! the input positions it reflects. Keys, for consumer group `g` and the assigned partitions
//! written as ranges (`0-3,7`):
//!
//! ```text
//! g/0-3,7              manifest: "DGSNAPM1" | u64 id | u8 slot | u32 chunks | u64 length
//!                                | u64 checksum of the engine bytes | u32 partitions
//!                                | (i32 partition, i64 next offset) × partitions | u64 checksum
//! g/0-3,7/<slot>/<n>   chunk n:  "DGSNAPC1" | u64 id | u32 n | bytes
//! ```
//! (integers little-endian). Chunks go to one of two *slots*, never the one the manifest in
//! place names, so a new snapshot never overwrites the one a restart would read. Once every
//! chunk is acknowledged (`acks=all`), the snapshot waits for the group's commit of its
//! positions, as a snapshot file does; only then is its manifest produced: a manifest in place
//! is never ahead of the committed offsets. Then the other slot's chunks are deleted
//! (tombstones), and so are the snapshots of partition sets that overlap this one (made before
//! a rebalance) whose every partition is this one's or held by a newer snapshot
//! ([`Scan::stale`]): compaction keeps the last value of each key, so the topic holds about one
//! snapshot per instance, plus what compaction has not reached yet. Chunks are compressed
//! (zstd) by the producer. A restore reads the whole topic, keeps the last value of the keys
//! of every set that shares a partition with its assignment, restores for each partition the
//! newest snapshot that holds it ([`Scan::restore`]), and uses a manifest's chunks only when
//! each carries the manifest's id
//! and together they match its length and checksum: a slot overwritten after its manifest
//! (which only an unacknowledged manifest can cause) is refused, never misread.
//!
//! The broker side is here (a producer; creating the topic compacted when it is absent); the
//! reading is the rebuild's (`rebuild::read_ranges`, which keeps the group alive meanwhile),
//! and what it read is judged by [`Scan`], which needs no broker.

use super::snapshots::{self, Fields, Restored, Sum, Unusable};
use crate::config::Settings;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::ClientConfig;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The largest chunk: under the brokers' default `message.max.bytes` (1 MiB) with room for
/// the key and the batch's framing.
pub(crate) const CHUNK: usize = 512 * 1024;
const MANIFEST: &[u8; 8] = b"DGSNAPM1";
const CHUNK_MAGIC: &[u8; 8] = b"DGSNAPC1";
/// How long the chunks of one snapshot may take to be acknowledged (a graceful stop gives
/// what is left of its grace instead); also how long the producer keeps a message it could not
/// deliver.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the manifest may take to be acknowledged (the processing loop waits for it).
pub(crate) const MANIFEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The assigned partitions as ranges: `[0, 1, 2, 3, 7]` → `"0-3,7"`.
pub(crate) fn partition_set(parts: &[i32]) -> String {
    let mut sorted = parts.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if i == j {
            out.push_str(&sorted[i].to_string());
        } else {
            out.push_str(&format!("{}-{}", sorted[i], sorted[j]));
        }
        i = j + 1;
    }
    out
}

/// The partitions of a set written by [`partition_set`]; `None` if it is not one.
fn parse_set(set: &str) -> Option<Vec<i32>> {
    let mut out = Vec::new();
    for r in set.split(',') {
        match r.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (a.parse::<i32>().ok()?, b.parse::<i32>().ok()?);
                if b < a || b - a > 1_000_000 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(r.parse().ok()?),
        }
    }
    Some(out)
}

/// The manifest's key for `group` and `parts`.
pub(crate) fn manifest_key(group: &str, parts: &[i32]) -> String {
    format!("{group}/{}", partition_set(parts))
}

fn chunk_key(manifest: &str, slot: u8, n: u32) -> String {
    format!("{manifest}/{slot}/{n}")
}

/// What this instance knows of one key's slots: which one the manifest in place names, and how
/// many chunks each last held (to delete the leftovers of a longer snapshot).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slots {
    pub(crate) in_place: Option<u8>,
    pub(crate) chunks: [u32; 2],
}

impl Slots {
    /// The slot a new snapshot is written to: not the one in place.
    fn next(&self) -> u8 {
        match self.in_place {
            Some(s) => 1 - s,
            None => 0,
        }
    }
}

/// A snapshot whose chunks are acknowledged, waiting for its manifest.
pub(crate) struct Pending {
    key: String,
    slot: u8,
    manifest: Vec<u8>,
}

/// Deliveries of the snapshot producer: failures counted, the last one kept for the log.
#[derive(Default)]
pub(crate) struct Deliveries {
    failed: AtomicU64,
    last: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::SeqCst);
            *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        }
    }
}

/// The snapshot store in a topic.
pub(crate) struct Changelog {
    pub(crate) topic: String,
    group: String,
    producer: BaseProducer<Deliveries>,
    slots: Mutex<HashMap<String, Slots>>,
    /// By key: the keys of snapshots made for partition sets that overlap it (before a
    /// rebalance), deleted once a snapshot of the key is in place.
    stale: Mutex<HashMap<String, Vec<String>>>,
}

impl Changelog {
    /// A producer for `topic` with the service's client properties (`config`), idempotent,
    /// acknowledged by every in-sync replica.
    pub(crate) fn new(
        mut config: ClientConfig,
        topic: &str,
        group: &str,
    ) -> rdkafka::error::KafkaResult<Changelog> {
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            // Snapshots shrink to about 43% with zstd at level 1 (chunks of 512 KiB; 360 MB/s
            // to compress, 1.2 GB/s to decompress): a restore reads less than half the bytes.
            .set("compression.type", "zstd")
            .set("compression.level", "1")
            .set("message.timeout.ms", WRITE_TIMEOUT.as_millis().to_string());
        Ok(Changelog {
            topic: topic.to_owned(),
            group: group.to_owned(),
            producer: config.create_with_context(Deliveries::default())?,
            slots: Mutex::new(HashMap::new()),
            stale: Mutex::new(HashMap::new()),
        })
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slots>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What a restore learnt of `key`'s slots, and the keys its snapshots make stale.
    pub(crate) fn learn(&self, key: &str, slots: Slots, stale: Vec<String>) {
        self.slots().insert(key.to_owned(), slots);
        self.stale
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned(), stale);
    }

    /// Sends `value` (`None`: a tombstone) under `key`, waiting out a full queue.
    fn send(&self, key: &str, value: Option<&[u8]>) -> io::Result<()> {
        let mut record = BaseRecord::<str, [u8]>::to(&self.topic).key(key);
        if let Some(v) = value {
            record = record.payload(v);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(io::Error::other(e)),
            }
        }
    }

    /// Waits until everything sent is acknowledged; an error if anything sent since `failed`
    /// was counted failed, or the wait ran out.
    fn settle(&self, failed: u64, timeout: Duration) -> io::Result<()> {
        self.producer
            .flush(timeout)
            .map_err(|e| io::Error::other(format!("snapshot topic: {e}")))?;
        let d = self.producer.context();
        if d.failed.load(Ordering::SeqCst) != failed {
            let last = d.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
            return Err(io::Error::other(format!(
                "snapshot topic: a message was not delivered: {}",
                last.unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// Writes the chunks of a snapshot of `engine_bytes` at `positions` to the slot not in
    /// place and waits for their acknowledgement; the manifest waits ([`Changelog::promote`]).
    pub(crate) fn write(
        &self,
        positions: &BTreeMap<i32, i64>,
        engine_bytes: &[u8],
        timeout: Duration,
    ) -> io::Result<Pending> {
        let parts: Vec<i32> = positions.keys().copied().collect();
        let key = manifest_key(&self.group, &parts);
        let before = self.slots().get(&key).copied().unwrap_or_default();
        let slot = before.next();
        let id = snapshot_id();
        let failed = self.producer.context().failed.load(Ordering::SeqCst);
        let mut n = 0u32;
        let mut value = Vec::with_capacity(CHUNK + 20);
        for chunk in engine_bytes.chunks(CHUNK) {
            value.clear();
            value.extend_from_slice(CHUNK_MAGIC);
            value.extend_from_slice(&id.to_le_bytes());
            value.extend_from_slice(&n.to_le_bytes());
            value.extend_from_slice(chunk);
            self.send(&chunk_key(&key, slot, n), Some(&value))?;
            n += 1;
        }
        // A longer snapshot's chunks left in this slot: deleted (compaction drops them).
        for left in n..before.chunks[slot as usize] {
            self.send(&chunk_key(&key, slot, left), None)?;
        }
        let r = self.settle(failed, timeout);
        {
            let mut all = self.slots();
            let s = all.entry(key.clone()).or_default();
            s.chunks[slot as usize] = if r.is_ok() {
                n
            } else {
                n.max(before.chunks[slot as usize])
            };
        }
        r?;
        Ok(Pending {
            manifest: manifest(id, slot, n, positions, engine_bytes),
            key,
            slot,
        })
    }

    /// Produces the manifest of a written snapshot, putting it in place; waits for its
    /// acknowledgement (a few milliseconds; `timeout` at most). The first time, the snapshots
    /// of partition sets it replaces are deleted (tombstones): after a rebalance, their
    /// partitions are this key's, so they could only be restored stale, and compaction would
    /// keep them for ever.
    pub(crate) fn promote(&self, p: Pending, timeout: Duration) -> io::Result<()> {
        let failed = self.producer.context().failed.load(Ordering::SeqCst);
        self.send(&p.key, Some(&p.manifest))?;
        self.settle(failed, timeout)?;
        // The other slot's chunks are deleted: no manifest names them any more, and compaction
        // then keeps one snapshot per key, not two, for a restore to read.
        let other = 1 - p.slot;
        let old = {
            let mut all = self.slots();
            let s = all.entry(p.key.clone()).or_default();
            s.in_place = Some(p.slot);
            std::mem::take(&mut s.chunks[other as usize])
        };
        let stale = self
            .stale
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&p.key)
            .unwrap_or_default();
        let mut gone: Vec<String> = (0..old).map(|n| chunk_key(&p.key, other, n)).collect();
        gone.extend(stale.iter().cloned());
        if gone.is_empty() {
            return Ok(());
        }
        let failed = self.producer.context().failed.load(Ordering::SeqCst);
        let sent = gone.iter().try_for_each(|k| self.send(k, None));
        match sent.and_then(|()| self.settle(failed, timeout)) {
            Ok(()) => {
                if !stale.is_empty() {
                    tracing::info!(
                        keys = stale.len(),
                        "snapshots of earlier partition sets deleted"
                    );
                }
            }
            Err(e) => {
                // Tried again after the next snapshot (the slot's leftovers are deleted when it
                // is written again).
                tracing::debug!(error = %e, "deleting chunks no manifest names");
                let mut all = self.slots();
                let s = all.entry(p.key.clone()).or_default();
                s.chunks[other as usize] = s.chunks[other as usize].max(old);
                drop(all);
                self.stale
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(p.key, stale);
            }
        }
        Ok(())
    }
}

/// A snapshot id: the wall clock in nanoseconds, so a slot written again (by this or a later
/// process) never carries the id of what it held before.
fn snapshot_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn manifest(
    id: u64,
    slot: u8,
    chunks: u32,
    positions: &BTreeMap<i32, i64>,
    engine_bytes: &[u8],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(48 + 12 * positions.len());
    m.extend_from_slice(MANIFEST);
    m.extend_from_slice(&id.to_le_bytes());
    m.push(slot);
    m.extend_from_slice(&chunks.to_le_bytes());
    m.extend_from_slice(&(engine_bytes.len() as u64).to_le_bytes());
    let mut sum = Sum::default();
    sum.add(engine_bytes);
    m.extend_from_slice(&sum.finish().to_le_bytes());
    snapshots::put_positions(&mut m, positions);
    let mut sum = Sum::default();
    sum.add(&m);
    m.extend_from_slice(&sum.finish().to_le_bytes());
    m
}

/// A manifest read back.
#[derive(Debug, PartialEq, Eq)]
struct Manifest {
    id: u64,
    slot: u8,
    chunks: u32,
    len: u64,
    sum: u64,
    positions: BTreeMap<i32, i64>,
}

fn read_manifest(b: &[u8]) -> Result<Manifest, String> {
    let mut f = Fields::open(b, MANIFEST)?;
    let id = f.u64()?;
    let slot = f.u8()?;
    let chunks = f.u32()?;
    let len = f.u64()?;
    let sum = f.u64()?;
    let positions = f.positions()?;
    f.end()?;
    if slot > 1 {
        return Err("malformed manifest".into());
    }
    Ok(Manifest {
        id,
        slot,
        chunks,
        len,
        sum,
        positions,
    })
}

/// The last value of a manifest key and of each of its chunks.
#[derive(Clone, Default)]
struct Held {
    manifest: Option<Vec<u8>>,
    chunks: HashMap<(u8, u32), Vec<u8>>,
}

/// What a restore reads of the snapshots topic for the assigned partitions: the last value of
/// the manifest of exactly that set and of each of its chunks, and likewise for every set that
/// shares a partition with it (snapshots from before a rebalance: this instance's, or other
/// instances'). A later value of a key replaces an earlier one, as compaction would; a
/// tombstone deletes it.
#[derive(Clone)]
pub(crate) struct Scan {
    /// `<group>/`.
    group: String,
    /// The assigned partitions, and as written in keys.
    parts: Vec<i32>,
    set: String,
    /// By partition set written as in keys: this set's and those sharing a partition with it.
    held: HashMap<String, Held>,
    /// Live keys of the group's snapshots for other partition sets that share a partition
    /// with this one: candidates to delete once this set has a snapshot in place.
    stale: std::collections::BTreeSet<String>,
    /// The snapshot id of every readable manifest of the group, by partition set: which
    /// snapshots are newer than which.
    ids: HashMap<String, u64>,
}

impl Scan {
    pub(crate) fn new(group: &str, parts: &[i32]) -> Scan {
        Scan {
            group: format!("{group}/"),
            parts: parts.to_vec(),
            set: partition_set(parts),
            held: HashMap::new(),
            stale: Default::default(),
            ids: HashMap::new(),
        }
    }

    /// The manifest's key.
    pub(crate) fn key(&self) -> String {
        format!("{}{}", self.group, self.set)
    }

    /// One record of the topic, in offset order.
    pub(crate) fn add(&mut self, key: &[u8], value: Option<&[u8]>) {
        let Ok(key) = std::str::from_utf8(key) else {
            return;
        };
        let Some(rest) = key.strip_prefix(&self.group) else {
            return;
        };
        let (set, rest) = match rest.split_once('/') {
            Some((set, rest)) => (set, Some(rest)),
            None => (rest, None),
        };
        if rest.is_none() {
            match value.and_then(|v| read_manifest(v).ok()) {
                Some(m) => self.ids.insert(set.to_owned(), m.id),
                None => self.ids.remove(set),
            };
        }
        if set != self.set {
            let Some(other) = parse_set(set) else {
                return;
            };
            if !other.iter().any(|p| self.parts.contains(p)) {
                return;
            }
            match value {
                Some(_) => self.stale.insert(key.to_owned()),
                None => self.stale.remove(key),
            };
        }
        let held = self.held.entry(set.to_owned()).or_default();
        let Some(rest) = rest else {
            held.manifest = value.map(<[u8]>::to_vec);
            return;
        };
        let Some((slot, n)) = rest.split_once('/') else {
            return;
        };
        let (Ok(slot), Ok(n)) = (slot.parse::<u8>(), n.parse::<u32>()) else {
            return;
        };
        if slot > 1 {
            return;
        }
        match value {
            Some(v) => {
                held.chunks.insert((slot, n), v.to_vec());
            }
            None => {
                held.chunks.remove(&(slot, n));
            }
        }
    }

    /// The keys of the snapshots a snapshot of this set replaces: those of a set sharing a
    /// partition with it whose every partition is this set's or held by a newer snapshot —
    /// so none still serves a partition another instance may need (after a scale-out, the
    /// snapshot of every partition stays until each instance has one of its own) — and chunks
    /// no readable manifest names.
    pub(crate) fn stale(&self) -> Vec<String> {
        let replaced = |set: &str| -> bool {
            let Some(&id) = self.ids.get(set) else {
                return true; // no readable manifest: nothing restores these chunks
            };
            let newer: Vec<Vec<i32>> = self
                .ids
                .iter()
                .filter(|(other, other_id)| other.as_str() != set && **other_id > id)
                .filter_map(|(other, _)| parse_set(other))
                .collect();
            parse_set(set).is_some_and(|ps| {
                ps.iter()
                    .all(|p| self.parts.contains(p) || newer.iter().any(|n| n.contains(p)))
            })
        };
        self.stale
            .iter()
            .filter(|k| {
                let set = k[self.group.len()..].split('/').next().unwrap_or_default();
                replaced(set)
            })
            .cloned()
            .collect()
    }

    /// What was learnt of the key's slots (to write the next snapshot beside the one in place).
    pub(crate) fn slots(&self) -> Slots {
        let mut s = Slots::default();
        let Some(own) = self.held.get(&self.set) else {
            return s;
        };
        for (slot, n) in own.chunks.keys() {
            let c = &mut s.chunks[*slot as usize];
            *c = (*c).max(n + 1);
        }
        s.in_place = own
            .manifest
            .as_deref()
            .and_then(|m| read_manifest(m).ok())
            .map(|m| m.slot);
        s
    }

    /// The snapshots held, newest first (the latest snapshot id: the writer's clock), their
    /// manifests read; those whose manifest cannot be read come last, as errors.
    fn candidates(&self) -> Vec<(String, Result<Manifest, String>)> {
        let mut v: Vec<(String, Result<Manifest, String>)> = self
            .held
            .iter()
            .filter_map(|(set, h)| Some((set.clone(), read_manifest(h.manifest.as_deref()?))))
            .collect();
        v.sort_by_key(|(set, m)| {
            std::cmp::Reverse((m.as_ref().map(|m| m.id).ok(), *set == self.set))
        });
        v
    }

    /// The engine bytes of the snapshot `m` of `set` names, checked whole.
    fn bytes_of(&mut self, set: &str, m: &Manifest) -> Result<Vec<u8>, Unusable> {
        let mut held = self.held.remove(set).unwrap_or_default();
        let mut bytes = Vec::with_capacity(m.len as usize);
        for n in 0..m.chunks {
            let c = held.chunks.remove(&(m.slot, n)).ok_or_else(|| {
                Unusable::Unreadable(format!("chunk {n} of {} is missing", m.chunks))
            })?;
            if c.len() < 20
                || &c[..8] != CHUNK_MAGIC
                || c[8..16] != m.id.to_le_bytes()
                || c[16..20] != n.to_le_bytes()
            {
                return Err(Unusable::Unreadable(format!(
                    "chunk {n} belongs to another snapshot (its slot was written again)"
                )));
            }
            bytes.extend_from_slice(&c[20..]);
        }
        let mut sum = Sum::default();
        sum.add(&bytes);
        if bytes.len() as u64 != m.len || sum.finish() != m.sum {
            return Err(Unusable::Unreadable(
                "checksum mismatch (chunks cut short or corrupt)".into(),
            ));
        }
        Ok(bytes)
    }

    /// The engine bytes and positions of the newest snapshot held, checked whole.
    #[cfg(test)]
    pub(crate) fn assemble(mut self) -> Result<(BTreeMap<i32, i64>, Vec<u8>), Unusable> {
        let Some((set, m)) = self.candidates().into_iter().next() else {
            return Err(Unusable::Absent);
        };
        let m = m.map_err(Unusable::Unreadable)?;
        let bytes = self.bytes_of(&set, &m)?;
        Ok((m.positions, bytes))
    }

    /// The snapshots that hold the assigned partitions, restored under `settings`: for each
    /// partition the newest snapshot that holds it, each cut to the partitions it is used
    /// for (a snapshot refused — damaged, made under other rules — leaves its partitions to
    /// the next newest). With the reasons of those refused; a partition no usable snapshot
    /// holds is in none of the pieces (its history is read instead).
    pub(crate) fn restore(mut self, settings: &Settings) -> (Vec<Restored>, Vec<Unusable>) {
        let parts = self.parts.clone();
        let mut taken: Vec<i32> = Vec::new();
        let (mut pieces, mut refused) = (Vec::new(), Vec::new());
        for (set, m) in self.candidates() {
            if taken.len() == parts.len() {
                break;
            }
            let m = match m {
                Ok(m) => m,
                Err(why) => {
                    let needed = parse_set(&set).is_some_and(|ps| {
                        ps.iter().any(|p| parts.contains(p) && !taken.contains(p))
                    });
                    if needed {
                        refused.push(Unusable::Unreadable(why));
                    }
                    continue;
                }
            };
            let take: Vec<i32> = parts
                .iter()
                .copied()
                .filter(|p| m.positions.contains_key(p) && !taken.contains(p))
                .collect();
            if take.is_empty() {
                continue;
            }
            let restored = self.bytes_of(&set, &m).and_then(|bytes| {
                snapshots::engine_of(settings, m.positions.clone(), &bytes, &take)
            });
            match restored {
                Ok(r) => {
                    taken.extend(&take);
                    pieces.push(r);
                }
                Err(why) => refused.push(why),
            }
        }
        if pieces.is_empty() && refused.is_empty() {
            refused.push(Unusable::Absent);
        }
        (pieces, refused)
    }
}

/// Makes sure the snapshots topic is compacted: creates it so (one partition, the broker's
/// replication factor) when it is absent, and warns when the broker reports another cleanup
/// policy (snapshots would be deleted by age, or pile up). Where the broker cannot be asked (the
/// mock cluster has no admin API) it says so at debug and leaves it. Runs on a thread of its
/// own, at start-up: a snapshot is written minutes later, or at a graceful stop.
pub(crate) fn ensure_compacted(config: ClientConfig, topic: String) {
    let admin: AdminClient<DefaultClientContext> = match config.create() {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "snapshot topic: no admin client");
            return;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::warn!(error = %e, "snapshot topic: no runtime to ask the broker");
            return;
        }
    };
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let exists = match admin
        .inner()
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
    {
        Ok(md) => md
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()),
        Err(e) => {
            tracing::debug!(error = %e, topic, "snapshot topic: metadata not read");
            return;
        }
    };
    if !exists {
        let new = NewTopic::new(&topic, 1, TopicReplication::Fixed(-1))
            .set("cleanup.policy", "compact")
            // Compaction never touches the active segment: smaller segments than the
            // default 1 GiB let it drop replaced snapshots sooner.
            .set("segment.bytes", "67108864");
        match rt.block_on(admin.create_topics(&[new], &opts)).as_deref() {
            Ok([Ok(_)]) => tracing::info!(topic, "snapshot topic created, compacted"),
            Ok([Err((_, RDKafkaErrorCode::TopicAlreadyExists))]) => {}
            Ok([Err((_, e))]) => tracing::warn!(
                topic,
                error = %e,
                "the snapshots topic could not be created: create it with cleanup.policy=compact"
            ),
            other => tracing::warn!(
                topic,
                error = ?other.err(),
                "the snapshots topic could not be created: create it with cleanup.policy=compact"
            ),
        }
        return;
    }
    let described = rt.block_on(admin.describe_configs(&[ResourceSpecifier::Topic(&topic)], &opts));
    let policy = match described.as_deref() {
        Ok([Ok(r)]) => r.get("cleanup.policy").and_then(|e| e.value.clone()),
        _ => None,
    };
    match policy {
        Some(p) if p.split(',').any(|x| x.trim() == "compact") => {
            tracing::debug!(topic, policy = p, "snapshot topic is compacted");
        }
        Some(p) if !p.is_empty() => tracing::warn!(
            topic,
            policy = p,
            "the snapshots topic is not compacted: set cleanup.policy=compact, or snapshots are deleted by age or pile up"
        ),
        _ => tracing::debug!(topic, result = ?described.err(), "snapshot topic: the broker did not report its cleanup policy"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_of_overlapping_partition_sets_are_stale() {
        let mut scan = Scan::new("g", &[2, 3]);
        for k in [
            "g/0-3",
            "g/0-3/1/0",
            "g/3",
            "g/0-1",
            "g/0-1/0/0",
            "h/2-3",
            "g/x-y",
            "g/2-3",
        ] {
            scan.add(k.as_bytes(), Some(b"v"));
        }
        // A tombstone ends a key.
        scan.add(b"g/3", None);
        assert_eq!(
            scan.stale(),
            vec!["g/0-3".to_owned(), "g/0-3/1/0".to_owned()]
        );
        assert_eq!(parse_set("0-3,7"), Some(vec![0, 1, 2, 3, 7]));
        assert_eq!(parse_set("3-1"), None);
        for parts in [vec![], vec![5], vec![0, 1, 2, 3, 7], vec![0, 2, 4, 5]] {
            assert_eq!(parse_set(&partition_set(&parts)).unwrap_or_default(), parts);
        }
    }

    #[test]
    fn partitions_are_written_as_ranges() {
        assert_eq!(partition_set(&[]), "");
        assert_eq!(partition_set(&[3]), "3");
        assert_eq!(partition_set(&[7, 0, 1, 2, 3]), "0-3,7");
        assert_eq!(partition_set(&[0, 2, 4, 5]), "0,2,4-5");
        assert_eq!(manifest_key("g", &[1, 0]), "g/0-1");
    }

    fn record(scan: &mut Scan, key: &str, value: Option<Vec<u8>>) {
        scan.add(key.as_bytes(), value.as_deref());
    }

    /// The chunks and manifest a snapshot of `bytes` in `slot` would write under key "g/0-1".
    fn written(id: u64, slot: u8, bytes: &[u8], chunk: usize) -> Vec<(String, Vec<u8>)> {
        let positions: BTreeMap<i32, i64> = [(0, 5), (1, 9)].into_iter().collect();
        let mut out = Vec::new();
        let mut n = 0u32;
        for c in bytes.chunks(chunk) {
            let mut v = CHUNK_MAGIC.to_vec();
            v.extend_from_slice(&id.to_le_bytes());
            v.extend_from_slice(&n.to_le_bytes());
            v.extend_from_slice(c);
            out.push((chunk_key("g/0-1", slot, n), v));
            n += 1;
        }
        out.push(("g/0-1".to_owned(), manifest(id, slot, n, &positions, bytes)));
        out
    }

    #[test]
    fn the_last_manifest_and_its_own_chunks_make_the_snapshot() {
        let a: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let b: Vec<u8> = (0..700u32).map(|i| (i * 3) as u8).collect();
        let mut scan = Scan::new("g", &[0, 1]);
        for (k, v) in written(1, 0, &a, 300) {
            record(&mut scan, &k, Some(v));
        }
        // Another group's and another assignment's records are not read.
        record(&mut scan, "h/0-1", Some(b"x".to_vec()));
        record(&mut scan, "g/0-2/0/0", Some(b"x".to_vec()));
        // The next snapshot's chunks, written to the other slot, its manifest not yet produced:
        // the first one is restored.
        let next = written(2, 1, &b, 300);
        for (k, v) in &next[..next.len() - 1] {
            record(&mut scan, k, Some(v.clone()));
        }
        assert_eq!(
            scan.slots(),
            Slots {
                in_place: Some(0),
                chunks: [4, 3]
            }
        );
        let (positions, bytes) = scan.clone().assemble().expect("whole");
        assert_eq!(bytes, a);
        assert_eq!(positions, [(0, 5), (1, 9)].into_iter().collect());
        // Its manifest produced: the second one.
        let (k, v) = next.last().unwrap();
        record(&mut scan, k, Some(v.clone()));
        assert_eq!(scan.slots().in_place, Some(1));
        assert_eq!(scan.assemble().expect("whole").1, b);
    }

    #[test]
    fn a_snapshot_made_for_more_partitions_is_read_and_the_newest_wins() {
        let a: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let b: Vec<u8> = (0..700u32).map(|i| (i * 3) as u8).collect();
        let c: Vec<u8> = (0..500u32).map(|i| (i * 7) as u8).collect();
        let rename = |records: Vec<(String, Vec<u8>)>, set: &str| -> Vec<(String, Vec<u8>)> {
            records
                .into_iter()
                .map(|(k, v)| (k.replacen("g/0-1", set, 1), v))
                .collect()
        };
        // Partition 0 alone is assigned now: "0-1" (made before the rebalance) holds it,
        // "0,2" too, "1-2" does not.
        let mut scan = Scan::new("g", &[0]);
        for (k, v) in written(1, 0, &a, 300) {
            record(&mut scan, &k, Some(v));
        }
        for (k, v) in rename(written(3, 0, &c, 300), "g/1-2") {
            record(&mut scan, &k, Some(v));
        }
        assert_eq!(scan.clone().assemble().expect("whole").1, a);
        for (k, v) in rename(written(2, 1, &b, 300), "g/0,2") {
            record(&mut scan, &k, Some(v));
        }
        assert_eq!(scan.clone().assemble().expect("whole").1, b);
        // Its own set's snapshot, older than the larger set's, loses; a newer one wins.
        let mut own = scan.clone();
        for (k, v) in rename(written(1, 0, &c, 300), "g/0") {
            record(&mut own, &k, Some(v));
        }
        assert_eq!(own.clone().assemble().expect("whole").1, b);
        for (k, v) in rename(written(4, 1, &c, 300), "g/0") {
            record(&mut own, &k, Some(v));
        }
        assert_eq!(own.assemble().expect("whole").1, c);
        // Every set sharing partition 0 is stale once "0" has its own in place.
        assert!(scan
            .stale()
            .iter()
            .all(|k| k.starts_with("g/0-1") || k.starts_with("g/0,2")));
        assert!(scan.stale().contains(&"g/0-1".to_owned()));
    }

    #[test]
    fn a_snapshot_is_stale_only_once_newer_ones_hold_all_its_partitions() {
        let a: Vec<u8> = (0..100u32).map(|i| i as u8).collect();
        let put = |scan: &mut Scan, set: &str, id: u64| {
            for (k, v) in written(id, 0, &a, 60) {
                record(scan, &k.replacen("g/0-1", set, 1), Some(v));
            }
        };
        // After a scale-out this instance holds 0-1; the snapshot of 0-3 still serves 2-3.
        let mut scan = Scan::new("g", &[0, 1]);
        put(&mut scan, "g/0-3", 1);
        record(
            &mut scan,
            "g/1-2/0/0",
            Some(b"chunk of no manifest".to_vec()),
        );
        assert_eq!(scan.stale(), vec!["g/1-2/0/0".to_owned()]);
        // Once the other instance's 2-3 is in place (newer), 0-3 holds nothing needed.
        put(&mut scan, "g/2-3", 2);
        let stale = scan.stale();
        assert!(stale.contains(&"g/0-3".to_owned()), "{stale:?}");
        assert!(stale.contains(&"g/0-3/0/0".to_owned()), "{stale:?}");
        assert!(!stale.iter().any(|k| k.starts_with("g/2-3")), "{stale:?}");
        // An older 2-3 does not make a newer 0-3 stale.
        let mut scan = Scan::new("g", &[0, 1]);
        put(&mut scan, "g/2-3", 1);
        put(&mut scan, "g/0-3", 2);
        assert!(scan.stale().is_empty(), "{:?}", scan.stale());
    }

    #[test]
    fn a_slot_written_again_or_a_chunk_missing_or_damaged_is_refused() {
        let a: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let first = written(1, 0, &a, 300);
        let scan_of = |records: &[(String, Vec<u8>)]| {
            let mut s = Scan::new("g", &[0, 1]);
            for (k, v) in records {
                s.add(k.as_bytes(), Some(v));
            }
            s
        };
        assert!(scan_of(&first).assemble().is_ok());
        assert_eq!(scan_of(&[]).assemble().err(), Some(Unusable::Absent));
        // The same slot written again after its manifest: chunk 0 has another id.
        let mut again = first.clone();
        again.push(written(2, 0, &a, 300)[0].clone());
        assert!(matches!(
            scan_of(&again).assemble(),
            Err(Unusable::Unreadable(why)) if why.contains("another snapshot")
        ));
        // A chunk deleted.
        let mut s = scan_of(&first);
        s.add(b"g/0-1/0/2", None);
        assert!(matches!(s.assemble(), Err(Unusable::Unreadable(why)) if why.contains("missing")));
        // Any flipped byte in a chunk or the manifest.
        for i in 0..first.len() {
            for at in [0, 9, 17, 25, first[i].1.len() - 1] {
                let mut bad = first.clone();
                bad[i].1[at] ^= 0x20;
                assert!(scan_of(&bad).assemble().is_err(), "record {i} byte {at}");
            }
        }
        // The manifest deleted: absent.
        let mut s = scan_of(&first);
        s.add(b"g/0-1", None);
        assert_eq!(s.assemble().err(), Some(Unusable::Absent));
    }
}
