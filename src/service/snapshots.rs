//! Snapshots of the windows: the engine's state with the input position it reflects, so that an
//! assignment restores it and reads only the input after that position, instead of weeks of
//! history. Kept in a compacted topic (`[kafka] snapshots_topic`, the default: `changelog`) or
//! in a local directory (`[service] snapshot_dir`: this module's files).
//!
//! In a directory: one file per consumer group, `<dir>/<group_id>.snapshot`. A new snapshot is
//! written beside it (`.snapshot.tmp`, synced) and put in its place (renamed) only once the
//! broker reports the group's committed offsets at or past the positions it reflects: a
//! snapshot in place is never ahead of the committed offsets, whenever the process dies (a crash between a snapshot and that commit
//! leaves the one before in place). Format:
//!
//! ```text
//! "DGSNAPF1" | u32 partitions | (i32 partition, i64 next offset) × partitions
//!            | u64 engine bytes | engine snapshot (Engine::snapshot) | u64 checksum
//! ```
//! (integers little-endian; the checksum covers everything before it). A snapshot is used only
//! when it is whole, made under the same rules and lateness, for exactly the partitions
//! assigned, and not ahead of the committed offsets (the records after those are judged again,
//! and must find a state without them); otherwise the rebuild reads the history from Kafka, and
//! the log and `dialguard_snapshot_restores_total{result}` say why.

use crate::config::Settings;
use crate::engine::Engine;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"DGSNAPF1";

/// Why no snapshot was restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unusable {
    /// No snapshot file.
    Absent,
    /// Cut short, corrupt, or of another format version.
    Unreadable(String),
    /// Made under other rules or another lateness.
    OtherRules,
    /// Made for other partitions: none of those assigned is in it.
    OtherPartitions,
    /// Made for more partitions than those assigned, and its state cannot be cut to them
    /// (calls whose partition it does not know: a partition number past 254, or a snapshot
    /// older than format 5).
    Uncut(String),
    /// It reflects records that were not committed (a crash between a snapshot and the commit
    /// of its records), or lacks records that were.
    NotAtCommit,
}

impl Unusable {
    /// The `result` label of `dialguard_snapshot_restores_total`.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Unusable::Absent => "absent",
            Unusable::Unreadable(_) => "unreadable",
            Unusable::OtherRules => "other_rules",
            Unusable::OtherPartitions => "other_partitions",
            Unusable::Uncut(_) => "not_cut",
            Unusable::NotAtCommit => "not_at_commit",
        }
    }
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::Absent => write!(f, "no snapshot"),
            Unusable::Unreadable(why) => write!(f, "the snapshot is unreadable: {why}"),
            Unusable::OtherRules => write!(f, "the snapshot was made under other rules"),
            Unusable::OtherPartitions => {
                write!(f, "the snapshot holds none of the assigned partitions")
            }
            Unusable::Uncut(why) => write!(
                f,
                "the snapshot was made for more partitions and cannot be cut to those assigned: {why}"
            ),
            Unusable::NotAtCommit => write!(
                f,
                "the snapshot's input position is not at or behind the committed offsets"
            ),
        }
    }
}

/// A snapshot read back (or the part of one an assignment uses): the engine, and for each
/// partition it holds, the offset of the first record it does not reflect.
pub(crate) struct Restored {
    pub(crate) engine: Engine,
    pub(crate) positions: BTreeMap<i32, i64>,
    /// The partitions the snapshot was made for when it held more than it is used for (made
    /// before a rebalance): its state was cut to `positions`' partitions.
    pub(crate) cut_from: Option<Vec<i32>>,
}

/// The snapshot file of `group_id` in `dir`.
pub fn path(dir: &Path, group_id: &str) -> PathBuf {
    dir.join(format!("{group_id}.snapshot"))
}

/// A 64-bit checksum, eight bytes at a time (corruption, not tampering).
#[derive(Default)]
pub(crate) struct Sum {
    h: u64,
    tail: Vec<u8>,
}

impl Sum {
    pub(crate) fn add(&mut self, mut b: &[u8]) {
        if !self.tail.is_empty() {
            let need = 8 - self.tail.len();
            let take = need.min(b.len());
            self.tail.extend_from_slice(&b[..take]);
            b = &b[take..];
            if self.tail.len() == 8 {
                let w = u64::from_le_bytes(self.tail[..].try_into().expect("8 bytes"));
                self.word(w);
                self.tail.clear();
            }
        }
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        self.tail.extend_from_slice(chunks.remainder());
    }
    fn word(&mut self, w: u64) {
        self.h = (self.h ^ w)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }
    pub(crate) fn finish(mut self) -> u64 {
        let n = self.tail.len() as u64;
        let mut last = [0u8; 8];
        last[..self.tail.len()].copy_from_slice(&self.tail);
        self.word(u64::from_le_bytes(last) ^ (n << 56));
        self.h
    }
}

/// Where a snapshot of `file` waits, whole on disk, to be put in place ([`promote`]).
pub fn pending(file: &Path) -> PathBuf {
    file.with_extension("snapshot.tmp")
}

/// Writes a snapshot of `engine_bytes` (from [`Engine::snapshot`]) at `positions` beside
/// `file` ([`pending`]), synced.
pub fn write(file: &Path, positions: &BTreeMap<i32, i64>, engine_bytes: &[u8]) -> io::Result<()> {
    let tmp = pending(file);
    let mut sum = Sum::default();
    {
        let f = std::fs::File::create(&tmp)?;
        let mut w = io::BufWriter::with_capacity(1 << 20, &f);
        let mut put = |b: &[u8]| -> io::Result<()> {
            sum.add(b);
            w.write_all(b)
        };
        let mut head = MAGIC.to_vec();
        put_positions(&mut head, positions);
        head.extend_from_slice(&(engine_bytes.len() as u64).to_le_bytes());
        put(&head)?;
        put(engine_bytes)?;
        let h = std::mem::take(&mut sum).finish();
        w.write_all(&h.to_le_bytes())?;
        w.flush()?;
        drop(w);
        f.sync_all()?;
    }
    Ok(())
}

/// Puts the snapshot written beside `file` in its place.
pub fn promote(file: &Path) -> io::Result<()> {
    std::fs::rename(pending(file), file)?;
    // The rename itself is durable once the directory is synced.
    if let Some(dir) = file.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The fields of a framed record (a snapshot file, a manifest): `magic`, then fields read in
/// order by [`Fields`], then a checksum of everything before it.
pub(crate) struct Fields<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    /// The fields after `magic`, if `bytes` start with it and end with the checksum of the rest.
    pub(crate) fn open(bytes: &'a [u8], magic: &[u8; 8]) -> Result<Fields<'a>, String> {
        if bytes.len() < magic.len() + 8 || &bytes[..magic.len()] != magic {
            return Err("not a dialguard snapshot (or an older format)".into());
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        let mut s = Sum::default();
        s.add(body);
        if s.finish().to_le_bytes() != sum {
            return Err("checksum mismatch (cut short or corrupt)".into());
        }
        Ok(Fields {
            body,
            at: magic.len(),
        })
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        // A length read from damaged bytes may be anything: no overflow, no panic.
        let end = self.at.checked_add(n).ok_or("cut short")?;
        let b = self.body.get(self.at..end).ok_or("cut short")?;
        self.at += n;
        Ok(b)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    /// Input positions: a count, then (partition, next offset) pairs ([`put_positions`]).
    pub(crate) fn positions(&mut self) -> Result<BTreeMap<i32, i64>, String> {
        let n = self.u32()?;
        let mut positions = BTreeMap::new();
        for _ in 0..n {
            let p = self.u32()? as i32;
            let o = self.u64()? as i64;
            positions.insert(p, o);
        }
        Ok(positions)
    }

    /// An error unless every field was read.
    pub(crate) fn end(&self) -> Result<(), String> {
        if self.at == self.body.len() {
            Ok(())
        } else {
            Err("trailing bytes".into())
        }
    }
}

/// Appends `positions` as [`Fields::positions`] reads them.
pub(crate) fn put_positions(out: &mut Vec<u8>, positions: &BTreeMap<i32, i64>) {
    out.extend_from_slice(&(positions.len() as u32).to_le_bytes());
    for (p, o) in positions {
        out.extend_from_slice(&p.to_le_bytes());
        out.extend_from_slice(&o.to_le_bytes());
    }
}

/// Splits a snapshot file into its positions and engine bytes, checking its frame and checksum.
fn frame(bytes: &[u8]) -> Result<(BTreeMap<i32, i64>, &[u8]), String> {
    let mut f = Fields::open(bytes, MAGIC)?;
    let positions = f.positions()?;
    let len = f.u64()? as usize;
    let engine = f.take(len)?;
    f.end()?;
    Ok((positions, engine))
}

/// Where snapshots are kept.
pub(crate) enum Store {
    /// A file in a local directory ([`path`]).
    File(PathBuf),
    /// A compacted topic.
    Topic(super::changelog::Changelog),
}

/// A snapshot written, not yet in place.
pub(crate) enum Written {
    File,
    Topic(super::changelog::Pending),
}

impl Store {
    /// Writes a snapshot of `engine_bytes` at `positions` beside the one in place (on the
    /// writer's thread), waiting `timeout` at most for a broker.
    pub(crate) fn write(
        &self,
        positions: &BTreeMap<i32, i64>,
        engine_bytes: &[u8],
        timeout: std::time::Duration,
    ) -> io::Result<Written> {
        match self {
            Store::File(file) => write(file, positions, engine_bytes).map(|()| Written::File),
            Store::Topic(t) => t
                .write(positions, engine_bytes, timeout)
                .map(Written::Topic),
        }
    }

    /// Puts a written snapshot in place, waiting `timeout` at most for a broker.
    pub(crate) fn promote(&self, w: Written, timeout: std::time::Duration) -> io::Result<()> {
        match (self, w) {
            (Store::File(file), _) => promote(file),
            (Store::Topic(t), Written::Topic(p)) => t.promote(p, timeout),
            (Store::Topic(_), Written::File) => Err(io::Error::other("not written to the topic")),
        }
    }

    /// Gives up a written snapshot (of an earlier assignment).
    pub(crate) fn discard(&self, _: Written) {
        if let Store::File(file) = self {
            let _ = std::fs::remove_file(pending(file));
        }
        // In the topic, the chunks stay in the slot not in place, to be written over.
    }

    /// Where, for logs.
    pub(crate) fn place(&self) -> String {
        match self {
            Store::File(file) => format!("file {}", file.display()),
            Store::Topic(t) => format!("topic {}", t.topic),
        }
    }
}

/// Writes a snapshot of `engine_bytes` at `positions` to the store `settings` name (the
/// snapshots topic, or `snapshot_dir`) and puts it in place at once, as an instance that stopped
/// with all its records committed leaves it: for benchmarks and tools that seed a snapshot.
pub fn put_in_place(
    settings: &Settings,
    positions: &BTreeMap<i32, i64>,
    engine_bytes: &[u8],
) -> io::Result<()> {
    let store = super::pipeline::snapshot_store(settings)
        .map_err(io::Error::other)?
        .ok_or_else(|| io::Error::other("no snapshot store is configured"))?;
    if let Store::Topic(t) = &store {
        super::changelog::ensure_compacted(
            super::pipeline::configured_client(&settings.kafka),
            t.topic.clone(),
        );
    }
    let timeout = super::changelog::WRITE_TIMEOUT;
    let written = store.write(positions, engine_bytes, timeout)?;
    store.promote(written, timeout)
}

/// Restores the engine of a snapshot read whole, under `settings`, for those of `parts`
/// (sorted) it holds: when it holds others too (made before a rebalance), its state is cut to
/// these ([`Engine::retain_lanes`]) and so are its positions. Refused when it holds none.
pub(crate) fn engine_of(
    settings: &Settings,
    mut positions: BTreeMap<i32, i64>,
    engine_bytes: &[u8],
    parts: &[i32],
) -> Result<Restored, Unusable> {
    let keep: Vec<i32> = parts
        .iter()
        .copied()
        .filter(|p| positions.contains_key(p))
        .collect();
    if keep.is_empty() {
        return Err(Unusable::OtherPartitions);
    }
    let mut engine = Engine::from_snapshot(
        settings.rules.clone(),
        settings.engine.clone(),
        engine_bytes,
    )
    .map_err(|e| match e {
        crate::engine::SnapshotError::OtherRules => Unusable::OtherRules,
        other => Unusable::Unreadable(other.to_string()),
    })?;
    let mut cut_from = None;
    if positions.len() > keep.len() {
        let lanes: Vec<crate::engine::Lane> = keep.iter().map(|p| *p as _).collect();
        engine
            .retain_lanes(&lanes)
            .map_err(|e| Unusable::Uncut(e.to_string()))?;
        cut_from = Some(positions.keys().copied().collect());
        positions.retain(|p, _| keep.contains(p));
    }
    Ok(Restored {
        engine,
        positions,
        cut_from,
    })
}

/// Reads the snapshot in `file` for `parts` (sorted), if there is a usable one that holds
/// some of them (cut to those when it holds others too). Whether it is at the committed
/// offsets is for the caller to check, once it has read them ([`at_commit`]).
pub(crate) fn load(file: &Path, settings: &Settings, parts: &[i32]) -> Result<Restored, Unusable> {
    let mut bytes = Vec::new();
    match std::fs::File::open(file) {
        Ok(mut f) => f
            .read_to_end(&mut bytes)
            .map_err(|e| Unusable::Unreadable(e.to_string()))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Unusable::Absent),
        Err(e) => return Err(Unusable::Unreadable(e.to_string())),
    };
    let (positions, engine_bytes) = frame(&bytes).map_err(Unusable::Unreadable)?;
    engine_of(settings, positions, engine_bytes, parts)
}

/// Whether a snapshot at `positions` can continue from the committed offsets `committed`: for
/// every partition, it reflects exactly the committed records or fewer (the records between are
/// then read again), never records not committed — those are judged again from the committed
/// offset, and must find a state without them. A partition with nothing committed is read
/// from its earliest retained offset (`earliest`, the consumer's reset point; 0 when not
/// given): the snapshot must reflect nothing from there on.
pub(crate) fn at_commit(
    positions: &BTreeMap<i32, i64>,
    committed: &std::collections::HashMap<i32, i64>,
    earliest: &std::collections::HashMap<i32, i64>,
) -> bool {
    positions.iter().all(|(p, s)| match committed.get(p) {
        Some(c) => s <= c,
        None => *s <= earliest.get(p).copied().unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_frame_round_trips_and_any_damage_is_refused() {
        let dir = std::env::temp_dir().join(format!("dialguard-frame-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let file = path(&dir, "g");
        let positions: BTreeMap<i32, i64> = [(0, 10), (3, 7)].into_iter().collect();
        let engine: Vec<u8> = (0..1003u32).map(|i| (i * 7) as u8).collect();
        write(&file, &positions, &engine).expect("written");
        assert!(!file.exists(), "not in place before it is promoted");
        promote(&file).expect("promoted");
        let bytes = std::fs::read(&file).expect("read");
        let (p, e) = frame(&bytes).expect("whole");
        assert_eq!(p, positions);
        assert_eq!(e, &engine[..]);
        // Every cut and every flipped byte is refused.
        for cut in [0, 1, 8, bytes.len() / 2, bytes.len() - 1] {
            assert!(frame(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for at in (0..bytes.len()).step_by(37) {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(frame(&bad).is_err(), "flip at {at}");
        }
        assert!(!file.with_extension("snapshot.tmp").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_snapshot_continues_only_from_at_or_behind_the_commit() {
        let positions: BTreeMap<i32, i64> = [(0, 10), (1, 5)].into_iter().collect();
        let c = |v: &[(i32, i64)]| -> HashMap<i32, i64> { v.iter().copied().collect() };
        let none = c(&[]);
        assert!(at_commit(&positions, &c(&[(0, 10), (1, 5)]), &none));
        assert!(
            at_commit(&positions, &c(&[(0, 12), (1, 5)]), &none),
            "records to read again"
        );
        assert!(
            !at_commit(&positions, &c(&[(0, 9), (1, 5)]), &none),
            "ahead of the commit"
        );
        assert!(
            !at_commit(&positions, &c(&[(0, 10)]), &none),
            "nothing committed on 1, and records of it in the snapshot"
        );
        let empty: BTreeMap<i32, i64> = [(2, 0)].into_iter().collect();
        assert!(at_commit(&empty, &none, &none));
        // A partition whose first records are gone (retention) and nothing committed: the
        // snapshot taken at its earliest offset is usable, one with records past it is not.
        assert!(
            at_commit(&positions, &c(&[(0, 10)]), &c(&[(1, 5)])),
            "partition 1 idle since its earliest offset"
        );
        assert!(
            at_commit(&positions, &c(&[(0, 10)]), &c(&[(1, 9)])),
            "the earliest offset moved on since"
        );
        assert!(
            !at_commit(&positions, &c(&[(0, 10)]), &c(&[(1, 4)])),
            "a record of 1 in the snapshot, not committed"
        );
    }
}
