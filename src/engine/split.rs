//! Keeping the state of some lanes only: [`Engine::retain_lanes`]. A service instance whose
//! assignment shrank (a rebalance after scale-out: it keeps some of its partitions) restores
//! its snapshot and keeps the partitions it still owns, instead of re-reading their history.
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

use super::store::Record;
use super::table::SHARDS;
use super::{Engine, Lane};
use std::hash::BuildHasher;

/// Why a state cannot be split by lane.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// Some retained calls' lanes are not known (lanes past 254, or a snapshot older than
    /// format 5).
    #[error("{0} retained calls have no known lane (a partition number past 254, or a snapshot older than format 5)")]
    UnknownLanes(usize),
}

impl Engine {
    /// Drops the state of every lane not in `keep`: its calls, their window entries and ids,
    /// and the lane itself. Lanes in `keep` the engine has not seen are opened (they hold
    /// eviction back until they deliver or go idle). Returns how many retained calls were
    /// dropped. Refused, changing nothing, when a retained call's lane is not known.
    pub fn retain_lanes(&mut self, keep: &[Lane]) -> Result<usize, SplitError> {
        let kept = |lane: u8| keep.contains(&(lane as Lane));
        // An eviction pass under way holds a place in the windows and the records: finish it
        // first, so that the calls it evicts are not dropped twice.
        self.finish_pass();
        let n = self.records.len() as u32;
        let mut unknown = 0;
        let mut drop = vec![false; n as usize];
        let mut dropped = 0;
        for slot in 0..n {
            if !self.records.live(slot) {
                continue;
            }
            let lane = self.records[slot as usize].lane;
            if lane == Record::NO_LANE {
                unknown += 1;
            } else if !kept(lane) {
                drop[slot as usize] = true;
                dropped += 1;
            }
        }
        if unknown > 0 && (dropped > 0 || !self.lanes_all_kept(keep)) {
            return Err(SplitError::UnknownLanes(unknown));
        }
        if dropped > 0 {
            for st in &mut self.states {
                for shard in 0..SHARDS {
                    st.windows.retain_shard(shard, |w| {
                        w.calls.retain(|e| !drop[e.slot() as usize]);
                        if let Some(t) = &mut w.triggers {
                            t.retain(|e| !drop[e.slot() as usize]);
                            if t.is_empty() {
                                w.triggers = None;
                            }
                        }
                        !(w.calls.is_empty() && w.triggers.is_none())
                    });
                }
            }
            let mut syms = Vec::new();
            for slot in 0..n {
                if !drop[slot as usize] {
                    continue;
                }
                let h = self.hasher.hash_one(self.records.call_id(slot));
                self.dedup.remove(h, slot);
                self.records.kill(slot);
                syms.extend(
                    self.records[slot as usize]
                        .syms
                        .iter()
                        .filter(|s| !s.is_none()),
                );
                self.free.push(slot);
                self.live -= 1;
            }
            self.interner.lock().release_all(&syms);
            let (hasher, records) = (&self.hasher, &self.records);
            for i in 0..SHARDS {
                self.dedup
                    .shrink(i, |&s| hasher.hash_one(records.call_id(s)));
            }
        }
        if !self.lanes_all_kept(keep) {
            for (i, l) in self.lanes.iter_mut().enumerate() {
                if !keep.contains(&(i as Lane)) {
                    *l = None;
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
