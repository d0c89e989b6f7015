//! Window entries: one per retained call and stateful rule, sorted by event time in a
//! per-key window.

use super::intern::Sym;

/// The top bit of [`Entry::slot`]: "already breached this rule".
pub(super) const BREACHED: u32 = 1 << 31;

/// A window entry: a call's time, its local period value, its record slot (the top bit marks
/// "already breached this rule") and, for `distinct` caps, the value counted. Keeping that value
/// here lets a distinct count read the window alone: fetching it from each record missed the
/// cache once per entry (11% of the engine thread in `perf record` on a replay). Packed to 20
/// bytes, since one entry exists per retained call and stateful rule.
#[derive(Debug, Clone, Copy)]
#[repr(C, packed(4))]
pub(super) struct Entry {
    pub ts: i64,
    pub pv: i32,
    pub slot: u32,
    pub val: Sym,
}

impl Entry {
    pub fn slot(self) -> u32 {
        self.slot & !BREACHED
    }

    pub fn breached(self) -> bool {
        self.slot & BREACHED != 0
    }
}

/// One key's window of one rule.
#[derive(Default)]
pub(super) struct WindowState {
    /// Calls that matched `when`, sorted by time.
    pub calls: Vec<Entry>,
    /// Cooldown triggers, sorted by time.
    pub triggers: Vec<Entry>,
}

/// A window key: the interned values of the rule's key fields.
pub(super) type Key = [Sym; 6];
/// The hasher of the engine's maps.
pub(super) type Hasher = foldhash::fast::FixedState;
/// One rule's windows.
pub(super) type Windows = hashbrown::HashMap<Key, WindowState, Hasher>;

/// Sorted insert (after entries at the same instant); returns the index.
pub(super) fn insert_sorted(v: &mut Vec<Entry>, e: Entry) -> usize {
    // Most windows hold a few calls: grow those one entry at a time rather than to Vec's minimum
    // of four, then double as usual.
    if v.len() == v.capacity() && v.len() < 4 {
        v.reserve_exact(1);
    }
    if v.last().is_none_or(|l| l.ts <= e.ts) {
        v.push(e);
        v.len() - 1
    } else {
        let i = v.partition_point(|x| x.ts <= e.ts);
        v.insert(i, e);
        i
    }
}
