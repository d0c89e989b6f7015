//! Reserved attempts: candidates a pre-dial check allowed and the dialer is about to place.
//! Later checks count them as calls made; ingesting never does (no alert counts an attempt
//! that may not happen). A reservation ends when the call itself arrives (same `call_id`:
//! then it is counted once, as a call) or when it expires.
//!
//! They live apart from the retained calls: their own slab (slots tagged with
//! [`RESERVED`](super::window::RESERVED) in window entries) and, per rule, their own windows by
//! the same keys, which a check merges with the rule's windows. They are not in snapshots: a
//! reservation outlives its minute-long expiry nowhere.

use super::event::{Call, Text};
use super::kinds::Ctx;
use super::store::{Record, Slab};
use super::time::Ts;
use super::window::{Hasher, Windows, RESERVED};
use super::Engine;
use hashbrown::HashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The reserved attempts of one engine.
pub(super) struct Reservations {
    /// Their records (slot = index; dead slots are reused).
    pub records: Slab,
    free: Vec<u32>,
    /// Slot by call id.
    by_id: HashMap<Text, u32, Hasher>,
    /// Per slot: its generation, advanced by every reservation that takes the slot.
    generation: Vec<u32>,
    /// (expiry, slot, generation), soonest first; an entry whose generation is stale is skipped.
    queue: BinaryHeap<Reverse<(i64, u32, u32)>>,
    /// Per rule: the reserved attempts' windows.
    pub windows: Vec<Windows>,
}

impl Reservations {
    pub fn new(windows: Vec<Windows>) -> Reservations {
        Reservations {
            records: Slab::default(),
            free: Vec::new(),
            by_id: HashMap::with_hasher(Hasher::default()),
            generation: Vec::new(),
            queue: BinaryHeap::new(),
            windows,
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// The tagged slot reserved for `call_id` (as window entries hold it), or `u32::MAX`.
    pub fn slot_of(&self, call_id: &str) -> u32 {
        if self.by_id.is_empty() {
            return u32::MAX;
        }
        self.by_id.get(call_id).map_or(u32::MAX, |i| i | RESERVED)
    }
}

impl Engine {
    /// Reserves an attempt: until `expires` (a wall-clock instant the caller's clock defines,
    /// compared only with the `now` given to [`Engine::expire_reservations`]) or until a call
    /// with the same `call_id` is ingested, checks count `call` as placed. Alerts never count
    /// it. Reserving a `call_id` already reserved replaces the earlier reservation; reserving
    /// one already retained as a call does nothing (it is counted already). Returns whether
    /// the reservation was recorded.
    pub fn reserve(&mut self, call: &Call, expires: Ts) -> bool {
        if self.is_retained(&call.call_id) {
            return false;
        }
        self.release(&call.call_id);
        let rec = self.record_of(call, None, Record::NO_LANE);
        let res = &mut self.reserved;
        let i = match res.free.pop() {
            Some(i) => {
                res.records
                    .put_call(i, rec, &call.call_id, call.event_id.as_deref(), None);
                i
            }
            None => {
                res.generation.push(0);
                res.records
                    .push_call(rec, &call.call_id, call.event_id.as_deref(), None)
            }
        };
        let generation = res.generation[i as usize].wrapping_add(1);
        res.generation[i as usize] = generation;
        res.queue.push(Reverse((expires.0, i, generation)));
        res.by_id.insert(call.call_id.clone(), i);
        // Entered into the reserved windows by each kind's own ingest (its breaches, among
        // reservations alone, are nobody's concern and dropped).
        let mut dropped = Vec::new();
        self.apply_to(call, i | RESERVED, true, &mut dropped);
        true
    }

    /// Ends the reservation of `call_id`, if there is one; returns whether there was.
    pub fn release(&mut self, call_id: &str) -> bool {
        let Some(i) = self.reserved.by_id.remove(call_id) else {
            return false;
        };
        let tagged = i | RESERVED;
        let ctx = Ctx {
            records: &self.records,
            reserved: &self.reserved.records,
            interner: &self.interner,
            callee_zones: &self.callee_zones,
            evidence_limit: 0,
            bounds: false,
            own: u32::MAX,
            known: None,
            statuses: &self.statuses,
            contacts: &self.contacts,
            defer: false,
        };
        let keys: Vec<Option<_>> = self
            .rules
            .iter()
            .map(|r| r.is_stateful().then(|| ctx.key_of(r, tagged)).flatten())
            .collect();
        for (w, key) in self.reserved.windows.iter_mut().zip(keys) {
            let Some(key) = key else { continue };
            let Some(state) = w.get_mut(&key) else {
                continue;
            };
            state.calls.retain(|e| e.slot() != tagged);
            if let Some(t) = &mut state.triggers {
                t.retain(|e| e.slot() != tagged);
                if t.is_empty() {
                    state.triggers = None;
                }
            }
            if state.calls.is_empty() && state.triggers.is_none() {
                w.remove(&key);
            }
        }
        let syms = self.reserved.records[i as usize].syms;
        self.interner.lock().release_all(&syms);
        self.reserved.records.kill(i);
        // Its queue entry is skipped: the slot is dead, or taken by a later generation.
        self.reserved.free.push(i);
        true
    }

    /// Ends the reservations that expire at or before `now` (the clock [`Engine::reserve`]
    /// was given); returns how many.
    pub fn expire_reservations(&mut self, now: Ts) -> usize {
        let mut n = 0;
        while let Some(&Reverse((at, i, generation))) = self.reserved.queue.peek() {
            if at > now.0 {
                break;
            }
            self.reserved.queue.pop();
            if self.reserved.generation[i as usize] != generation || !self.reserved.records.live(i)
            {
                continue;
            }
            let id = self.reserved.records.call_id(i).to_owned();
            if self.release(&id) {
                n += 1;
            }
        }
        n
    }

    /// Reservations open.
    pub fn reservations(&self) -> usize {
        self.reserved.len()
    }

    /// Whether a call with this id is retained (a second one would be a duplicate).
    pub fn is_retained(&self, call_id: &str) -> bool {
        self.retained_slot(self.call_hash(call_id), call_id)
            .is_some()
    }
}
