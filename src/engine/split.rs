//! Keeping the state of some lanes only ([`Engine::retain_lanes`]), and bringing the state of
//! other lanes in ([`Engine::absorb`]). A service instance whose assignment changed (a
//! rebalance: scale-out, scale-in, an instance replaced) restores the snapshots that hold its
//! partitions, cuts each to the partitions it now owns and joins them, instead of re-reading
//! their history.
//!
//! What the engine keeps of a lane is exactly what it would hold had it read that lane alone:
//! its records, their window entries (calls and cooldown triggers) and their ids for
//! duplicates. Windows whose keys hold calls of one lane only — every key that includes
//! `debtor_id`, when the input is keyed by debtor — keep exactly their entries. A window
//! whose key crosses lanes (a number across debtors) keeps the entries of the kept lanes:
//! what a rebuild of those partitions alone would hold (such rules are exact only with one
//! instance owning every partition; README, "Several instances").
//!
//! The cutoff (what was evicted) stays: it followed the slowest of all lanes, so it is at or
//! behind what the kept lanes alone would have allowed, and no kept call is refused for it.

use super::intern::Sym;
use super::rule::RuleKind;
use super::store::Record;
use super::table::SHARDS;
use super::window::{Entry, MAX_SLOTS};
use super::{Engine, Lane};
use std::hash::BuildHasher;

/// Why a state cannot be split by lane, or two joined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// Some retained calls' lanes are not known (lanes past 254, or a snapshot older than
    /// format 5).
    #[error("{0} retained calls have no known lane (a partition number past 254, or a snapshot older than format 5)")]
    UnknownLanes(usize),
    /// Both states hold the same lane.
    #[error("both states hold lane {0}")]
    SharedLane(Lane),
}

impl Engine {
    /// Drops the state of every lane not in `keep`: its calls, their window entries and ids,
    /// and the lane itself. Lanes in `keep` the engine has not seen are opened (they hold
    /// eviction back until they deliver or go idle). Returns how many retained calls were
    /// dropped. Refused, changing nothing, when a retained call's lane is not known.
    pub fn retain_lanes(&mut self, keep: &[Lane]) -> Result<usize, SplitError> {
        let kept = |lane: u8| keep.contains(&(lane as Lane));
        let n = self.records.len() as u32;
        let lanes: Vec<u8> = (0..n)
            .filter(|s| self.records.live(*s))
            .map(|s| self.records[s as usize].lane)
            .collect();
        let unknown = lanes.iter().filter(|l| **l == Record::NO_LANE).count();
        if unknown > 0
            && (!self.lanes_all_kept(keep)
                || lanes.iter().any(|l| *l != Record::NO_LANE && !kept(*l)))
        {
            return Err(SplitError::UnknownLanes(unknown));
        }
        drop(lanes);
        // An eviction pass under way holds a place in the windows and the records: finish it
        // first, so that the calls it evicts are not dropped twice.
        self.finish_pass();
        let mut gone = vec![false; n as usize];
        let mut dropped = 0;
        for slot in 0..n {
            let lane = self.records[slot as usize].lane;
            if self.records.live(slot) && lane != Record::NO_LANE && !kept(lane) {
                gone[slot as usize] = true;
                dropped += 1;
            }
        }
        if dropped > 0 {
            for st in &mut self.states {
                // Keys kept without a window get one, to be filtered as the others.
                if let Some(t) = &mut st.thin {
                    for (k, entries) in t.fatten_all() {
                        let mut key = [Sym::NONE; 6];
                        key[0] = k;
                        let w = st.windows.entry(&key);
                        for e in entries {
                            w.insert(e);
                        }
                    }
                }
                for shard in 0..SHARDS {
                    st.windows.retain_shard(shard, |w| {
                        w.calls.retain(|e| !gone[e.slot() as usize]);
                        if let Some(t) = &mut w.triggers {
                            t.retain(|e| !gone[e.slot() as usize]);
                            if t.is_empty() {
                                w.triggers = None;
                            }
                        }
                        !(w.calls.is_empty() && w.triggers.is_none())
                    });
                }
            }
            for g in &mut self.groups {
                for shard in 0..SHARDS {
                    g.retain_shard(shard, |h| h.retain(|e| !gone[e.slot() as usize]));
                }
            }
            let mut syms = Vec::new();
            for slot in 0..n {
                if !gone[slot as usize] {
                    continue;
                }
                self.remove_record(slot, &mut syms);
            }
            self.interner.lock().release_all(&syms);
            let (hasher, records) = (&self.hasher, &self.records);
            for i in 0..SHARDS {
                self.dedup.shrink(
                    i,
                    |&s| hasher.hash_one(records.call_id(s)),
                    |&s| super::prefetch(records.ids(s)),
                );
            }
        }
        if !self.lanes_all_kept(keep) {
            for (i, l) in self.lanes.iter_mut().enumerate() {
                if !keep.contains(&(i as Lane)) {
                    *l = None;
                    if let Some(f) = self.floors.get_mut(i) {
                        *f = i64::MIN;
                    }
                }
            }
            // The newest event time over the lanes left.
            self.watermark = self.lanes.iter().flatten().filter_map(|l| l.newest()).max();
        }
        self.open_lanes(keep);
        Ok(dropped)
    }

    /// Whether every lane the engine has open is in `keep` (then nothing is dropped, and
    /// calls of unknown lanes may stay).
    fn lanes_all_kept(&self, keep: &[Lane]) -> bool {
        self.lanes
            .iter()
            .enumerate()
            .all(|(i, l)| l.is_none() || keep.contains(&(i as Lane)))
    }
}

impl Engine {
    /// Brings in the state of `other`, an engine under the same rules and settings that holds
    /// other lanes (another instance's snapshot, cut to the partitions this one now owns):
    /// its calls, their window entries and ids, its lanes and statuses. The result judges the
    /// calls of every lane exactly as the engine each lane came from would have — with one
    /// caveat, the same as [`Engine::retain_lanes`]': a window whose key crosses lanes joins
    /// the entries of both. Refused, changing nothing, when both hold a lane.
    ///
    /// What each engine had evicted stays evicted for its lanes: the engine's cutoff becomes
    /// the lower of the two (a lane behind the others keeps what it needs), and the lanes of
    /// the engine that had evicted more keep that engine's cutoff as their own (`floors`).
    /// A call both hold (the same id on two lanes) is kept once, as this engine has it.
    /// `other`'s strings must be referenced by its calls alone (a restored engine; not one
    /// with calls interned by decoder threads still in flight).
    pub fn absorb(&mut self, mut other: Engine) -> Result<(), SplitError> {
        for (i, l) in other.lanes.iter().enumerate() {
            if l.is_some() && self.lanes.get(i).is_some_and(Option::is_some) {
                return Err(SplitError::SharedLane(i as Lane));
            }
        }
        self.finish_pass();
        other.finish_pass();
        // Lanes, and what each side had evicted.
        let (mine, theirs) = (self.cutoff, other.cutoff);
        let lanes_of = |e: &Engine| -> Vec<usize> {
            (0..e.lanes.len())
                .filter(|i| e.lanes[*i].is_some())
                .collect()
        };
        let (my_lanes, their_lanes) = (lanes_of(self), lanes_of(&other));
        let width = self.lanes.len().max(other.lanes.len());
        self.lanes.resize(width, None);
        for &i in &their_lanes {
            self.lanes[i] = other.lanes[i];
        }
        let mut floors = vec![i64::MIN; width];
        for &i in &my_lanes {
            floors[i] = self.floors.get(i).copied().unwrap_or(i64::MIN).max(mine);
        }
        for &i in &their_lanes {
            floors[i] = other.floors.get(i).copied().unwrap_or(i64::MIN).max(theirs);
        }
        self.cutoff = mine.min(theirs);
        floors.iter_mut().for_each(|f| {
            if *f <= self.cutoff {
                *f = i64::MIN
            }
        });
        self.floors = if floors.iter().all(|f| *f == i64::MIN) {
            Vec::new()
        } else {
            floors
        };
        self.watermark = match (self.watermark, other.watermark) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.last_sweep = self.last_sweep.min(other.last_sweep);

        // Strings: each of the other's brought in once, with the references its calls hold
        // (rather than once per call field); `to[sym]` is the symbol here.
        let to: Vec<Sym> = {
            let theirs = other.interner.lock();
            let mut mine = self.interner.lock();
            theirs
                .slots()
                .map(|(text, refs)| {
                    if refs == 0 {
                        Sym::NONE
                    } else {
                        mine.intern_refs(text, refs)
                    }
                })
                .collect()
        };
        let sym = |s: Sym| -> Option<Sym> {
            if s.is_none() {
                Some(s)
            } else {
                to.get(s.0 as usize).copied().filter(|t| !t.is_none())
            }
        };

        // Calls: a slot each. One both hold stays as this engine has it; the references the
        // other's copy brought are given back.
        let mut slot_of: Vec<Option<u32>> = vec![None; other.records.len()];
        // The other's callee zones as numbered here, for those of the calls brought in.
        let mut zone_to: Vec<u16> = vec![0; other.callee_zones.len() + 1];
        let mut unused = Vec::new();
        for slot in 0..other.records.len() as u32 {
            if !other.records.live(slot) {
                continue;
            }
            let r = other.records[slot as usize];
            let syms = r.syms.map(|s| sym(s).unwrap_or(Sym::NONE));
            let ids = other.records.ids(slot);
            if self.is_retained(ids.call_id()) {
                unused.extend(syms.iter().filter(|s| !s.is_none()));
                continue;
            }
            let callee_zone = match r.callee_zone {
                0 => 0,
                z => {
                    let tz = other.callee_zones[z as usize - 1].clone();
                    zone_to[z as usize] = self.callee_zone_index(&tz);
                    zone_to[z as usize]
                }
            };
            let rec = Record::new(r.ts, syms, callee_zone, r.relation(), r.book(), r.lane);
            let attrs = other.records.attrs(slot).cloned();
            let h = self.hasher.hash_one(ids.call_id());
            slot_of[slot as usize] = Some(self.place(rec, ids.call_id(), ids.event_id(), attrs, h));
        }
        self.interner.lock().release_all(&unused);

        // Windows: keys and distinct values by their symbols here, entries by their new slots.
        for ri in 0..other.states.len() {
            let kind = self.rules[ri].kind;
            let entry = |e: &Entry| -> Option<Entry> {
                let new = slot_of.get(e.slot() as usize).copied().flatten()?;
                let val = match kind {
                    RuleKind::Status | RuleKind::Contact => e.val,
                    // The call's callee zone (`kinds::cooldown::zone_val`), numbered here.
                    RuleKind::Cooldown => Sym(zone_to[e.val.0 as usize] as u32),
                    _ => sym(e.val)?,
                };
                let raw = e.raw_slot() & !(MAX_SLOTS as u32 - 1) | new;
                Some(Entry::from_raw(e.ts, raw, val))
            };
            for (key, calls, triggers) in other.rule_windows(ri) {
                let mut k = key;
                if k.iter_mut().any(|s| match sym(*s) {
                    Some(n) => {
                        *s = n;
                        false
                    }
                    None => true,
                }) {
                    continue; // no call of it was brought in
                }
                let calls: Vec<Entry> = calls.iter().filter_map(entry).collect();
                let triggers: Vec<Entry> = triggers.iter().filter_map(entry).collect();
                if calls.is_empty() && triggers.is_empty() {
                    continue;
                }
                // Only a cooldown has triggers, and its are kept wherever its calls are.
                let ok = self.put_window(ri, &k, |c, t| {
                    join(c, calls);
                    join(t, triggers);
                });
                debug_assert!(ok, "a cap rule's window with triggers");
            }
        }

        // Statuses are reference data both may hold; the ones only the other knows join.
        for st in other.statuses.all() {
            if self.statuses.get(&st.id).is_none() {
                self.statuses.upsert(st.clone());
            }
        }
        let (s, o) = (&mut self.stats, &other.stats);
        s.accepted += o.accepted;
        s.duplicates += o.duplicates;
        s.too_late += o.too_late;
        s.alerts += o.alerts;
        s.late_alerts += o.late_alerts;
        s.evicted += o.evicted;
        for i in 0..s.rule_matched.len() {
            s.rule_matched[i] += o.rule_matched[i];
            s.rule_skipped[i] += o.rule_skipped[i];
            s.rule_alerts[i] += o.rule_alerts[i];
        }
        Ok(())
    }
}

/// Joins `more` (sorted by time) into `v` (sorted by time), keeping `v`'s entries first among
/// equal times.
fn join(v: &mut Vec<Entry>, more: Vec<Entry>) {
    if v.is_empty() {
        *v = more;
        return;
    }
    v.extend(more);
    v.sort_by_key(|e| e.ts); // stable
}
