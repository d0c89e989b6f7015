//! The whole engine state as bytes, and back: [`Engine::snapshot`] and
//! [`Engine::from_snapshot`]. A restored engine is the same engine — same records in the same
//! slots, same symbols, same windows and marks, same lanes and counters — so it judges any
//! continuation exactly as the original would (property-tested).
//!
//! # Format (version 8, little-endian)
//! `DGSNAP\0\0`, the version (u32), a fingerprint of the rules and the settings that shape
//! state (SHA-256 over the compiled rules, lateness and horizon, and which reference-kind rules
//! keep no calls: a snapshot made under other rules is refused, not misread), then: watermark,
//! cutoff, last sweep, the eviction pass under way (a tag and a u32: none, window shard, record
//! slot, dedup shard, and since version 6 shared-window shard), and since version 6 how windows
//! were laid out (a byte: 0 each rule's its own, 1 cap rules' shared, 2 — version 7 — cap and
//! cooldown rules' shared, 3 — version 8 — the calls status and contact rules hold shared too;
//! a pass under way in another layout starts again); lanes; (since version 5)
//! the lanes' own cutoffs (`floors`, one i64 a lane, often none); counters; the
//! callee zones by IANA name; the interner's slots and free list; the record slab (dead slots
//! included, so slots keep their numbers) and its free list; per rule, its windows sorted by
//! key, each with its call and trigger entries; then (since version 3) the debtor statuses known,
//! sorted by id. Strings are a u32 length and UTF-8 bytes. A record's flags byte says whether an
//! event id follows (bit 0) and, since version 4, what the contact book supplied of it (bits 1
//! and 2: the debtor, the relation); since version 5, the byte after the relation is the lane
//! the call came in on (255: not known). Version 8 reads as version 7 (only the layout byte
//! may differ). Version 6 (cooldowns not among the shared windows,
//! their entries without a zone) and version 5 (no layout byte, no shared-window shard) are
//! read too, and so are versions 2 (no statuses), 3 and 4, whose records' lanes are not known, so such a state
//! cannot be split by lane.

use super::event::{Relation, StatusKind};
use super::intern::{Interner, Sym};
use super::kinds::cooldown::zone_val;
use super::status::Status;
use super::store::{Record, Slab};
use super::table::SHARDS;
use super::time::Ts;
use super::window::{Entry, Key};
use super::{Engine, EngineSettings, LaneState, Pass};
use crate::engine::rule::Rule;
use compact_str::CompactString;
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"DGSNAP\0\0";
/// The format version this build writes and reads.
pub const VERSION: u32 = 8;

/// Why a snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Not a dialguard snapshot.
    #[error("not a dialguard snapshot (bad magic bytes)")]
    Magic,
    /// Written by a version of the format this build does not read.
    #[error("snapshot format version {0}, this build reads versions 2 to {VERSION}")]
    Version(u32),
    /// Made under other rules or settings.
    #[error("made under other rules, lateness or reference topics: its state does not fit these")]
    OtherRules,
    /// Cut short or inconsistent.
    #[error("corrupt snapshot: {0}")]
    Corrupt(&'static str),
}

/// What identifies the rules and settings a snapshot's state is shaped by: the rules,
/// lateness and horizon, and which reference-kind rules keep no calls (an engine whose status
/// or contact rules keep none would restore windows lacking the calls a later record must
/// flag). Only rules that keep none add to it, so snapshots of engines keeping every rule's
/// calls read as before that was part of it.
fn fingerprint(e: &Engine) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(format!("{:?}", e.rules).as_bytes());
    h.update(e.lateness.to_le_bytes());
    h.update(e.horizon.to_le_bytes());
    for (i, (r, s)) in e.rules.iter().zip(&e.states).enumerate() {
        if r.is_stateful() && !s.keeps {
            h.update(b"keeps no calls");
            h.update((i as u32).to_le_bytes());
        }
    }
    h.finalize().into()
}

struct W(Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).expect("fewer than 2^32 items"));
    }
    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn entry(&mut self, e: &Entry) {
        self.i64(e.ts);
        self.u32(e.raw_slot());
        self.u32(e.val.0);
    }
    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }
    fn status(&mut self, st: &Status) {
        self.str(&st.id);
        self.u8(st.kind as u8);
        self.opt_str(st.debtor_id.as_deref());
        self.opt_str(st.account_id.as_deref());
        self.opt_str(st.phone.as_deref());
        self.u8(st.channels);
        self.i64(st.from.0);
        match st.until {
            None => self.u8(0),
            Some(u) => {
                self.u8(1);
                self.i64(u.0);
            }
        }
        self.len(st.allow_phones.len());
        for p in &st.allow_phones {
            self.str(p);
        }
        self.len(st.windows.len());
        for (from, to) in &st.windows {
            self.u32(*from);
            self.u32(*to);
        }
        self.str(&st.source);
    }
}

struct R<'a>(&'a [u8]);

type Res<T> = Result<T, SnapshotError>;

impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        if self.0.len() < n {
            return Err(SnapshotError::Corrupt("cut short"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Res<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Res<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Res<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Res<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn i64(&mut self) -> Res<i64> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    /// A count of items, each at least `min` bytes: bounded by what is left, so a corrupt
    /// count cannot make a huge allocation.
    fn len(&mut self, min: usize) -> Res<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min.max(1)) > self.0.len() {
            return Err(SnapshotError::Corrupt("a count larger than the data"));
        }
        Ok(n)
    }
    fn str(&mut self) -> Res<&'a str> {
        let n = self.len(1)?;
        std::str::from_utf8(self.take(n)?).map_err(|_| SnapshotError::Corrupt("a string not UTF-8"))
    }
    fn entry(&mut self) -> Res<Entry> {
        Ok(Entry::from_raw(self.i64()?, self.u32()?, Sym(self.u32()?)))
    }
    fn opt_str(&mut self) -> Res<Option<CompactString>> {
        Ok(match self.u8()? {
            0 => None,
            1 => Some(self.str()?.into()),
            _ => return Err(SnapshotError::Corrupt("an optional string")),
        })
    }
    fn status(&mut self) -> Res<Status> {
        let id: CompactString = self.str()?.into();
        let kind = *StatusKind::ALL
            .get(self.u8()? as usize)
            .ok_or(SnapshotError::Corrupt("a status kind"))?;
        let (debtor_id, account_id, phone) = (self.opt_str()?, self.opt_str()?, self.opt_str()?);
        let channels = self.u8()?;
        let from = Ts(self.i64()?);
        let until = match self.u8()? {
            0 => None,
            1 => Some(Ts(self.i64()?)),
            _ => return Err(SnapshotError::Corrupt("a status end")),
        };
        let n = self.len(4)?;
        let allow_phones = (0..n)
            .map(|_| self.str().map(CompactString::from))
            .collect::<Res<_>>()?;
        let n = self.len(8)?;
        let windows = (0..n)
            .map(|_| Ok((self.u32()?, self.u32()?)))
            .collect::<Res<_>>()?;
        let source = self.str()?.into();
        Ok(Status {
            id,
            kind,
            debtor_id,
            account_id,
            phone,
            channels,
            from,
            until,
            allow_phones,
            windows,
            source,
        })
    }
}

impl Engine {
    /// The whole state as bytes (format above). Deterministic: the same state gives the same
    /// bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut w = W(Vec::with_capacity(64 + self.live * 96));
        w.0.extend_from_slice(MAGIC);
        w.u32(VERSION);
        w.0.extend_from_slice(&fingerprint(self));
        match self.watermark {
            Some(t) => {
                w.u8(1);
                w.i64(t)
            }
            None => w.u8(0),
        }
        w.i64(self.cutoff);
        w.i64(self.last_sweep);
        let (tag, at) = match self.pass {
            None => (0, 0),
            Some(Pass::Windows(u)) => (1, u),
            Some(Pass::Records(s)) => (2, s),
            Some(Pass::Shrink(i)) => (3, i),
            Some(Pass::Hosts(u)) => (4, u),
        };
        w.u8(tag);
        w.u32(at);
        // Since version 6: how windows were laid out here (`EngineSettings::shared_windows`).
        w.u8(self.layout());
        w.len(self.lanes.len());
        for l in &self.lanes {
            match l {
                None => w.u8(0),
                Some(LaneState::Unknown) => w.u8(1),
                Some(LaneState::Active { newest }) => {
                    w.u8(2);
                    w.i64(*newest)
                }
                Some(LaneState::Idle { newest: None }) => w.u8(3),
                Some(LaneState::Idle { newest: Some(n) }) => {
                    w.u8(4);
                    w.i64(*n)
                }
            }
        }
        // Since version 5: the lanes' own cutoffs.
        w.len(self.floors.len());
        for f in &self.floors {
            w.i64(*f);
        }
        let s = &self.stats;
        for v in [
            s.accepted,
            s.duplicates,
            s.too_late,
            s.alerts,
            s.late_alerts,
            s.evicted,
        ] {
            w.u64(v);
        }
        for i in 0..self.rules.len() {
            w.u64(s.rule_matched[i]);
            w.u64(s.rule_skipped[i]);
            w.u64(s.rule_alerts[i]);
        }
        w.len(self.callee_zones.len());
        for z in &self.callee_zones {
            w.str(z.iana_name().unwrap_or("UTC"));
        }
        let interner = self.interner.lock();
        let slots: Vec<(&str, u32)> = interner.slots().collect();
        w.len(slots.len());
        for (text, refs) in slots {
            w.str(text);
            w.u32(refs);
        }
        let free = interner.free_slots();
        w.len(free.len());
        for f in free {
            w.u32(*f);
        }
        w.len(self.records.len());
        let mut joined = String::new();
        for slot in 0..self.records.len() as u32 {
            let ids = self.records.ids(slot);
            if !ids.live() {
                w.u8(0);
                continue;
            }
            let r = &self.records[slot as usize];
            w.u8(1);
            w.i64(r.ts);
            // The format predates the tagged string: the ids joined, call_id's length, a flag.
            let (call_id, event_id) = (ids.call_id(), ids.event_id());
            joined.clear();
            joined.push_str(call_id);
            joined.push_str(event_id.unwrap_or(""));
            w.str(&joined);
            w.u16(call_id.len() as u16);
            // Bit 0: an event id follows; bits 1-2 (since version 4): what the book supplied.
            w.u8(event_id.is_some() as u8 | r.book() << 1);
            w.u8(r.relation() as u8);
            // Since version 5: the lane.
            w.u8(r.lane);
            w.u16(r.callee_zone);
            for s in r.syms {
                w.u32(s.0);
            }
            match self.records.attrs(slot) {
                None => w.u32(0),
                Some(a) => {
                    w.len(a.len());
                    for (k, v) in a.iter() {
                        w.str(k);
                        w.str(v);
                    }
                }
            }
        }
        w.len(self.free.len());
        for f in &self.free {
            w.u32(*f);
        }
        for ri in 0..self.states.len() {
            let keys = self.rule_windows(ri);
            w.len(keys.len());
            for (k, calls, triggers) in keys {
                for s in k {
                    w.u32(s.0);
                }
                for v in [&calls[..], triggers] {
                    w.len(v.len());
                    for e in v {
                        w.entry(e);
                    }
                }
            }
        }
        let statuses = self.statuses.all();
        w.len(statuses.len());
        for st in statuses {
            w.status(st);
        }
        w.0
    }

    /// An engine for `rules` and `settings` with the state of `bytes` (from
    /// [`Engine::snapshot`]). Refuses a snapshot made under other rules, lateness or reference
    /// topics, or one that is cut short or inconsistent.
    pub fn from_snapshot(
        rules: Vec<Rule>,
        settings: EngineSettings,
        bytes: &[u8],
    ) -> Result<Engine, SnapshotError> {
        let mut e = Engine::new(rules, settings);
        let mut r = R(bytes);
        if r.take(MAGIC.len()).map_err(|_| SnapshotError::Magic)? != MAGIC {
            return Err(SnapshotError::Magic);
        }
        let version = r.u32()?;
        if !(2..=VERSION).contains(&version) {
            return Err(SnapshotError::Version(version));
        }
        if r.take(32)? != fingerprint(&e) {
            return Err(SnapshotError::OtherRules);
        }
        e.watermark = match r.u8()? {
            0 => None,
            1 => Some(r.i64()?),
            _ => return Err(SnapshotError::Corrupt("watermark")),
        };
        e.cutoff = r.i64()?;
        e.last_sweep = r.i64()?;
        let (tag, at) = (r.u8()?, r.u32()?);
        let here = e.layout();
        let there = match version {
            ..=5 => 0,
            _ => match r.u8()? {
                l @ 0..=3 => l,
                _ => return Err(SnapshotError::Corrupt("window layout")),
            },
        };
        e.pass = match tag {
            0 => None,
            // A pass in the windows, written by an engine that laid them out otherwise (rules
            // sharing windows there keep their own here, or the other way round): it had
            // evicted some of the rules' windows in the other layout's order, so it starts
            // again from the first (evicting twice changes nothing; entries left behind would
            // name freed slots).
            1 | 4 if there != here => Some(Pass::Windows(0)),
            1 if (at as usize) < e.rules.len() * SHARDS => Some(Pass::Windows(at)),
            2 => Some(Pass::Records(at)),
            3 if (at as usize) < SHARDS => Some(Pass::Shrink(at)),
            4 if (at as usize) < e.groups.len() * SHARDS => Some(Pass::Hosts(at)),
            _ => return Err(SnapshotError::Corrupt("eviction pass")),
        };
        let n = r.len(1)?;
        e.lanes = (0..n)
            .map(|_| {
                Ok(match r.u8()? {
                    0 => None,
                    1 => Some(LaneState::Unknown),
                    2 => Some(LaneState::Active { newest: r.i64()? }),
                    3 => Some(LaneState::Idle { newest: None }),
                    4 => Some(LaneState::Idle {
                        newest: Some(r.i64()?),
                    }),
                    _ => return Err(SnapshotError::Corrupt("lane state")),
                })
            })
            .collect::<Res<_>>()?;
        if version >= 5 {
            let n = r.len(8)?;
            e.floors = (0..n).map(|_| r.i64()).collect::<Res<_>>()?;
        }
        let s = &mut e.stats;
        s.accepted = r.u64()?;
        s.duplicates = r.u64()?;
        s.too_late = r.u64()?;
        s.alerts = r.u64()?;
        s.late_alerts = r.u64()?;
        s.evicted = r.u64()?;
        for i in 0..e.rules.len() {
            s.rule_matched[i] = r.u64()?;
            s.rule_skipped[i] = r.u64()?;
            s.rule_alerts[i] = r.u64()?;
        }
        let n = r.len(4)?;
        for _ in 0..n {
            let name = r.str()?;
            let tz = jiff::tz::db()
                .get(name)
                .map_err(|_| SnapshotError::Corrupt("an unknown callee zone"))?;
            e.callee_zones.push(tz);
            e.callee_zone_ids
                .insert(name.to_owned(), e.callee_zones.len() as u16);
        }
        let n = r.len(8)?;
        let mut slots = Vec::with_capacity(n);
        for _ in 0..n {
            slots.push((CompactString::new(r.str()?), r.u32()?));
        }
        let n = r.len(4)?;
        let free = (0..n).map(|_| r.u32()).collect::<Res<Vec<u32>>>()?;
        if free.iter().any(|f| *f as usize >= slots.len()) {
            return Err(SnapshotError::Corrupt("interner free list"));
        }
        let nsyms = slots.len();
        e.interner = Interner::from_slots(slots, free).into();
        e.interner.lock().keep_only(e.kept);
        let sym_ok = |s: Sym| s.is_none() || (s.0 as usize) < nsyms;
        let n = r.len(1)?;
        let mut records = Slab::default();
        let mut live = 0usize;
        for _ in 0..n {
            if r.u8()? == 0 {
                records.push(dead(), None);
                continue;
            }
            let ts = r.i64()?;
            let ids = CompactString::new(r.str()?);
            let call_id_len = r.u16()?;
            let flags = r.u8()?;
            let (event_id_present, from_book) = if version >= 4 {
                if flags >> 3 != 0 {
                    return Err(SnapshotError::Corrupt("record flags"));
                }
                (flags & 1 != 0, flags >> 1)
            } else {
                (flags != 0, 0)
            };
            let relation = *Relation::ALL
                .get(r.u8()? as usize)
                .ok_or(SnapshotError::Corrupt("relation"))?;
            let lane = if version >= 5 {
                r.u8()?
            } else {
                Record::NO_LANE
            };
            let callee_zone = r.u16()?;
            let mut syms = [Sym::NONE; 7];
            for s in &mut syms {
                *s = Sym(r.u32()?);
                if !sym_ok(*s) {
                    return Err(SnapshotError::Corrupt("a symbol out of range"));
                }
            }
            if call_id_len as usize > ids.len()
                || !ids.is_char_boundary(call_id_len as usize)
                || callee_zone as usize > e.callee_zones.len()
            {
                return Err(SnapshotError::Corrupt("record"));
            }
            let na = r.len(8)?;
            let attrs = if na == 0 {
                None
            } else {
                let mut a = Vec::with_capacity(na);
                for _ in 0..na {
                    a.push((Box::<str>::from(r.str()?), Box::<str>::from(r.str()?)));
                }
                Some(a.into_boxed_slice())
            };
            records.push_call(
                Record::new(ts, syms, callee_zone, relation, from_book, lane),
                &ids[..call_id_len as usize],
                event_id_present.then(|| &ids[call_id_len as usize..]),
                attrs,
            );
            live += 1;
        }
        let n = r.len(4)?;
        e.free = (0..n).map(|_| r.u32()).collect::<Res<_>>()?;
        if e.free.iter().any(|f| *f as usize >= records.len()) {
            return Err(SnapshotError::Corrupt("record free list"));
        }
        e.records = records;
        e.live = live;
        for slot in 0..e.records.len() as u32 {
            if e.records.live(slot) {
                let h = e.hasher.hash_one_id(e.records.call_id(slot));
                let (hasher, records) = (&e.hasher, &e.records);
                e.dedup.insert(
                    h,
                    slot,
                    |&s| hasher.hash_one_id(records.call_id(s)),
                    |&s| super::prefetch(records.ids(s)),
                );
            }
        }
        let nrec = e.records.len();
        let nzones = e.callee_zones.len();
        for ri in 0..e.rules.len() {
            // A status rule's entries carry the call's channel as their value, a contact
            // rule's the event's own number source and relation (`kinds/contact.rs`), not a
            // symbol.
            let kind = e.rules[ri].kind;
            let val_ok = |v: Sym| match kind {
                super::rule::RuleKind::Status => (v.0 as usize) < super::event::Channel::ALL.len(),
                super::rule::RuleKind::Contact => {
                    (v.0 & 0xff) as usize <= super::event::NumberSource::ALL.len()
                        && ((v.0 >> 8) as usize) < super::event::Relation::ALL.len()
                }
                // A cooldown's, the call's callee zone (`kinds::cooldown::zone_val`); before
                // version 7, none (filled in below from the record).
                super::rule::RuleKind::Cooldown => v.is_none() || (v.0 as usize) <= nzones,
                _ => sym_ok(v),
            };
            let n = r.len(24)?;
            if e.states[ri].shared.is_none() {
                e.states[ri].windows.reserve(n);
            }
            for _ in 0..n {
                let mut key: Key = [Sym::NONE; 6];
                for s in &mut key {
                    *s = Sym(r.u32()?);
                }
                // A key has a symbol for each of the rule's key fields and none after them
                // (the window tables rely on it: `slots::EMPTY` is no rule's key).
                let width = e.rules[ri].key.len();
                let key_ok = key.iter().enumerate().all(|(i, s)| {
                    if i < width {
                        !s.is_none() && sym_ok(*s)
                    } else {
                        s.is_none()
                    }
                });
                if !key_ok {
                    return Err(SnapshotError::Corrupt("a window key"));
                }
                let mut calls = Vec::new();
                let mut triggers = Vec::new();
                for v in [&mut calls, &mut triggers] {
                    let m = r.len(16)?;
                    v.reserve_exact(m);
                    for _ in 0..m {
                        let mut en = r.entry()?;
                        let slot = en.slot() as usize;
                        if slot >= nrec || !e.records.live(slot as u32) || !val_ok(en.val) {
                            return Err(SnapshotError::Corrupt("a window entry"));
                        }
                        if kind == super::rule::RuleKind::Cooldown && en.val.is_none() {
                            let z = e.records[slot].callee_zone;
                            en = Entry::from_raw(en.ts, en.raw_slot(), zone_val(z));
                        }
                        v.push(en);
                    }
                }
                if !e.put_window(ri, &key, |c, t| {
                    *c = calls;
                    *t = triggers;
                }) {
                    return Err(SnapshotError::Corrupt("a cap rule's window with triggers"));
                }
            }
        }
        if version >= 3 {
            let n = r.len(8)?;
            for _ in 0..n {
                let st = r.status()?;
                if e.statuses.upsert(st).is_some() {
                    return Err(SnapshotError::Corrupt("a status id twice"));
                }
            }
        }
        if !r.0.is_empty() {
            return Err(SnapshotError::Corrupt("bytes after the end"));
        }
        Ok(e)
    }
}

fn dead() -> Record {
    Record::new(0, [Sym::NONE; 7], 0, Relation::Unknown, 0, Record::NO_LANE)
}

/// Hashing a call id exactly as the dedup table does.
trait HashId {
    fn hash_one_id(&self, id: &str) -> u64;
}

impl HashId for super::window::Hasher {
    fn hash_one_id(&self, id: &str) -> u64 {
        std::hash::BuildHasher::hash_one(self, id)
    }
}
