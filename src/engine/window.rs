//! Window entries: one per retained call and stateful rule, sorted by event time in a
//! per-key window.

use super::bysym::BySym;
use super::intern::Sym;
use hashbrown::HashMap;

use super::rule::Window;
use super::slots::{Slots, RETAIN_AHEAD};
use super::time::NANOS_PER_DAY;

/// The top bit of an entry's slot word: "already breached this rule".
const BREACHED: u32 = 1 << 31;
/// Bits 29–30: the local period value's offset from the UTC one, plus one.
const PV_SHIFT: u32 = 29;
/// The slot itself: bits 0–28 (536 million slots, far more than fit in memory).
pub(super) const MAX_SLOTS: usize = 1 << PV_SHIFT;
/// Bit 28 of a slot: the slot is a reserved attempt's (a pre-dial check's pending call, kept
/// apart from the retained calls), so retained calls have slots below it (268 million).
pub(super) const RESERVED: u32 = 1 << 28;

/// A window entry, 16 bytes: a call's time, its record slot with two flags' worth of bits,
/// and, for `distinct` caps, the value counted (kept here so a distinct count reads the window
/// alone: fetching it from each record missed the cache once per entry). One entry exists per
/// retained call and stateful rule it matched, so every byte counts.
///
/// The local period value (the local day, week or month index a local window compares) is
/// not stored whole: a local date is within a day of the UTC date of the same instant (zone
/// offsets are within ±14 h), so the period value is the UTC date's, or one before or after —
/// two bits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub ts: i64,
    slot: u32,
    pub val: Sym,
}

/// The period value of the UTC date of `ts` (0 for rolling windows, which use none).
fn anchor(window: Window, ts: i64) -> i32 {
    if window.is_local() {
        window.period_of_day(ts.div_euclid(NANOS_PER_DAY) as i32)
    } else {
        0
    }
}

impl Entry {
    /// An entry for a call at `ts` in `slot` whose period value in `window` is `pv`.
    pub fn new(ts: i64, pv: i32, slot: u32, val: Sym, window: Window) -> Entry {
        let d = pv - anchor(window, ts);
        assert!(
            (-1..=1).contains(&d) && (slot as usize) < MAX_SLOTS,
            "a local period within a day of UTC's"
        );
        Entry {
            ts,
            slot: slot | ((d + 1) as u32) << PV_SHIFT,
            val,
        }
    }

    /// The record slot.
    pub fn slot(self) -> u32 {
        self.slot & (MAX_SLOTS as u32 - 1)
    }

    /// The local period value in `window` (the window the entry was made for).
    pub fn pv(self, window: Window) -> i32 {
        anchor(window, self.ts) + ((self.slot >> PV_SHIFT) & 3) as i32 - 1
    }

    pub fn breached(self) -> bool {
        self.slot & BREACHED != 0
    }

    pub fn mark_breached(&mut self) {
        self.slot |= BREACHED;
    }

    /// The slot word as stored (snapshots).
    pub fn raw_slot(self) -> u32 {
        self.slot
    }

    /// An entry from its stored parts (snapshots).
    pub fn from_raw(ts: i64, slot: u32, val: Sym) -> Entry {
        Entry { ts, slot, val }
    }
}

/// One key's window of one rule.
pub(super) struct WindowState {
    /// Calls that matched `when`, sorted by time. Entries are added by [`WindowState::insert`]
    /// or [`WindowState::set_calls`] only, which keep `value` true; anything may take entries
    /// away.
    pub calls: Vec<Entry>,
    /// Cooldown triggers, sorted by time (boxed: only cooldown rules have them, and a window
    /// slot is paid for by every key of every rule — 8 bytes here instead of a `Vec`'s 24).
    #[allow(clippy::box_collection)]
    pub triggers: Option<Box<Vec<Entry>>>,
    /// A value every entry of `calls` that has one carries (`Entry::val`), or `Sym::NONE` when
    /// that is not known. A distinct cap reads it instead of its window: with one value at
    /// most, a count of distinct values is at most one, within any limit but zero — and most
    /// numbers are called about one debtor only (99% of the calls of the benchmark's file go
    /// to such numbers: `scripts/one-value.py`), while a window of a number called every day holds a week of entries,
    /// a few cache lines to read for each call. Set when an entry goes into an empty window,
    /// lost (`NONE`) when one with another value joins, found again only when the window
    /// empties: entries leaving cannot make it wrong.
    value: Sym,
    /// At most the time of the first call, in whole seconds since 1970 (0: not known — an
    /// empty window, or calls before 1970-01-01T00:00:01): an eviction pass leaves a
    /// window whose first call has not expired without reading its entries, a cache miss each
    /// (most windows of a sweep: a number called once or twice a week). In the slot's padding:
    /// no bytes more.
    first_s: u32,
}

const _: () = assert!(std::mem::size_of::<WindowState>() == 40);

impl Default for WindowState {
    fn default() -> WindowState {
        WindowState {
            calls: Vec::new(),
            triggers: None,
            value: Sym::NONE,
            first_s: 0,
        }
    }
}

/// `ts` in whole seconds since 1970, rounded down: a lower bound of it, or 0 (none known).
fn whole_seconds(ts: i64) -> u32 {
    u32::try_from(ts.max(0) / super::time::NANOS_PER_SEC).unwrap_or(u32::MAX)
}

impl WindowState {
    /// Inserts `e` in time order into the calls (after entries at the same instant); returns
    /// its index.
    #[inline]
    pub fn insert(&mut self, e: Entry) -> usize {
        if self.calls.is_empty() {
            self.value = e.val;
            self.first_s = whole_seconds(e.ts);
        } else {
            if !e.val.is_none() && e.val != self.value {
                self.value = Sym::NONE;
            }
            self.first_s = self.first_s.min(whole_seconds(e.ts));
        }
        insert_sorted(&mut self.calls, e)
    }

    /// Replaces the calls with `calls`, sorted by time.
    pub fn set_calls(&mut self, calls: Vec<Entry>) {
        self.calls = calls;
        self.value = common_value(&self.calls);
        self.found_first();
    }

    /// Notes the first call's time again, after entries left the front.
    pub fn found_first(&mut self) {
        self.first_s = self.calls.first().map_or(0, |e| whole_seconds(e.ts));
    }

    /// Whether nothing in the window is older than `cutoff`, known without reading its entries
    /// (`false` when that is not known, and for a window with cooldown triggers).
    #[inline]
    pub fn none_before(&self, cutoff: i64) -> bool {
        self.triggers.is_none()
            && self.first_s != 0
            && i64::from(self.first_s) * super::time::NANOS_PER_SEC >= cutoff
    }

    /// The one value the calls carry, if that is known ([`WindowState::value`]): a distinct
    /// count over any of them is then at most one.
    #[inline]
    pub fn one_value(&self) -> Option<Sym> {
        (!self.value.is_none()).then_some(self.value)
    }

    /// The cooldown triggers, sorted by time.
    pub fn triggers(&self) -> &[Entry] {
        self.triggers.as_deref().map_or(&[], |v| v.as_slice())
    }

    /// Entries held (for the heap estimate).
    pub fn capacity(&self) -> usize {
        self.calls.capacity() + self.triggers.as_ref().map_or(0, |v| v.capacity())
    }
}

/// A window key: the interned values of the rule's key fields (unused ones `Sym::NONE`).
pub(super) type Key = [Sym; 6];
/// The hasher of the engine's maps.
pub(super) type Hasher = foldhash::fast::FixedState;

use super::table::SHARDS;

/// The shard of a packed key: the top bits of a multiplicative hash (the map itself hashes
/// the key again, independently).
#[inline]
fn shard_of(k: u64) -> usize {
    (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SHARDS.trailing_zeros())) as usize
}

#[inline]
fn shard_of_wide(k: &Key) -> usize {
    shard_of(k.iter().fold(0u64, |h, s| {
        (h.rotate_left(21) ^ s.0 as u64).wrapping_mul(0xA076_1D64_78BD_642F)
    }))
}

/// The shards, inline: reaching a window costs no more pointer chases than one map did.
type Shards<K> = [HashMap<K, WindowState, Hasher>; SHARDS];

fn shards<K>() -> Shards<K> {
    std::array::from_fn(|_| HashMap::with_hasher(Hasher::default()))
}

/// One rule's windows by key: by symbol for one field, else in [`SHARDS`] maps. Most rules key
/// on one or two fields: two are packed into 8 bytes instead of 24, since a map slot is paid
/// for by every key.
pub(super) enum Windows {
    /// Keys of one field, found through their symbol ([`BySym`]): one read of the state where
    /// a table read two. Used for the windows a rule keeps on its own ([`Windows::own`]); a
    /// rule's reservations, a few keys at most, stay in tables.
    Direct(BySym<WindowState>),
    /// Keys of at most two fields, in open-addressing tables (`slots`).
    Narrow([Slots<WindowState>; SHARDS]),
    /// Keys of three to six fields.
    Wide(Shards<Key>),
}

fn pack(k: &Key) -> u64 {
    (k[0].0 as u64) << 32 | k[1].0 as u64
}

fn unpack(k: u64) -> Key {
    let mut key = [Sym::NONE; 6];
    key[0] = Sym((k >> 32) as u32);
    key[1] = Sym(k as u32);
    key
}

/// Gives a map's memory back when few of its slots are used.
fn shrink<K: std::hash::Hash + Eq>(m: &mut HashMap<K, WindowState, Hasher>) {
    if m.capacity() > 64 && m.len() < m.capacity() / 4 {
        m.shrink_to_fit();
    }
}

/// A one-field key's symbol, its place in [`Windows::Direct`].
#[inline]
fn direct_key(key: &Key) -> Sym {
    debug_assert!(key[1..].iter().all(|s| s.is_none()));
    key[0]
}

impl Windows {
    /// The windows a rule keeps on its own, keyed on `fields` fields: by symbol for one field
    /// ([`Windows::Direct`]), else as [`Windows::for_key_fields`].
    pub fn own(fields: usize) -> Windows {
        if fields == 1 {
            Windows::Direct(BySym::default())
        } else {
            Windows::for_key_fields(fields)
        }
    }

    /// The map for a rule keyed on `fields` fields.
    pub fn for_key_fields(fields: usize) -> Windows {
        if fields <= 2 {
            Windows::Narrow(std::array::from_fn(|_| Slots::default()))
        } else {
            Windows::Wide(shards())
        }
    }

    /// The window of `key`, created empty if there is none.
    #[inline]
    pub fn entry(&mut self, key: &Key) -> &mut WindowState {
        match self {
            Windows::Direct(m) => m.entry(direct_key(key)),
            Windows::Narrow(m) => {
                let k = pack(key);
                m[shard_of(k)].entry(k)
            }
            Windows::Wide(m) => m[shard_of_wide(key)].entry(*key).or_default(),
        }
    }

    /// The window of `key`, if any.
    #[inline]
    pub fn get(&self, key: &Key) -> Option<&WindowState> {
        match self {
            Windows::Direct(m) => m.get(direct_key(key)),
            Windows::Narrow(m) => {
                let k = pack(key);
                m[shard_of(k)].get(k)
            }
            Windows::Wide(m) => m[shard_of_wide(key)].get(key),
        }
    }

    /// Asks for the slot of `key`'s window without waiting for it (keys of up to two fields;
    /// wider ones are looked up through hashbrown's control bytes, nothing to ask for ahead).
    #[inline]
    pub fn prefetch(&self, key: &Key) {
        match self {
            Windows::Direct(m) => m.prefetch(direct_key(key)),
            Windows::Narrow(m) => {
                let k = pack(key);
                m[shard_of(k)].prefetch(k);
            }
            Windows::Wide(_) => {}
        }
    }

    /// A step before [`Windows::prefetch`]: asks for what it will read to find the slot
    /// (a direct map's word for the key's symbol; the others read nothing first).
    #[inline]
    pub fn prefetch_place(&self, key: &Key) {
        if let Windows::Direct(m) = self {
            m.prefetch_place(direct_key(key));
        }
    }

    /// The window of `key`, if any, to change.
    #[inline]
    pub fn get_mut(&mut self, key: &Key) -> Option<&mut WindowState> {
        match self {
            Windows::Direct(m) => m.get_mut(direct_key(key)),
            Windows::Narrow(m) => {
                let k = pack(key);
                m[shard_of(k)].get_mut(k)
            }
            Windows::Wide(m) => m[shard_of_wide(key)].get_mut(key),
        }
    }

    /// Drops the window of `key`.
    pub fn remove(&mut self, key: &Key) {
        match self {
            Windows::Direct(m) => m.remove(direct_key(key)),
            Windows::Narrow(m) => {
                let k = pack(key);
                m[shard_of(k)].remove(k);
            }
            Windows::Wide(m) => {
                m[shard_of_wide(key)].remove(key);
            }
        }
    }

    /// Keeps the windows of shard `shard` that `f` says to keep, and gives memory back when
    /// few are left; returns how many windows it looked at.
    pub fn retain_shard(&mut self, shard: usize, f: impl FnMut(&mut WindowState) -> bool) -> usize {
        self.retain_shard_unless(shard, |_| false, f)
    }

    /// [`Windows::retain_shard`] for an eviction pass to `cutoff`: windows with nothing older
    /// ([`WindowState::none_before`]) are kept without `f` reading them.
    pub fn evict_shard(
        &mut self,
        shard: usize,
        cutoff: i64,
        f: impl FnMut(&mut WindowState) -> bool,
    ) -> usize {
        self.retain_shard_unless(shard, |w| w.none_before(cutoff), f)
    }

    /// Keeps the windows `skip` says to keep unread, and those `f` says to keep.
    fn retain_shard_unless(
        &mut self,
        shard: usize,
        skip: impl Fn(&WindowState) -> bool,
        mut f: impl FnMut(&mut WindowState) -> bool,
    ) -> usize {
        match self {
            Windows::Direct(m) => m.retain_shard(
                shard,
                RETAIN_AHEAD,
                |w: &WindowState| {
                    if !skip(w) {
                        prefetch_first(&w.calls)
                    }
                },
                |w| skip(w) || f(w),
            ),
            Windows::Narrow(m) => {
                let n = m[shard].retain_ahead(
                    |w: &WindowState| {
                        if !skip(w) {
                            prefetch_first(&w.calls)
                        }
                    },
                    |w| skip(w) || f(w),
                );
                m[shard].shrink();
                n
            }
            Windows::Wide(m) => {
                let n = m[shard].len();
                m[shard].retain(|_, w| skip(w) || f(w));
                shrink(&mut m[shard]);
                n
            }
        }
    }

    /// Keys with a window.
    pub fn len(&self) -> usize {
        match self {
            Windows::Direct(m) => m.len(),
            Windows::Narrow(m) => m.iter().map(Slots::len).sum(),
            Windows::Wide(m) => m.iter().map(HashMap::len).sum(),
        }
    }

    /// Makes room for `n` more windows, spread over the shards.
    pub fn reserve(&mut self, n: usize) {
        let n = n.div_ceil(SHARDS);
        match self {
            // Its length follows the symbols, not the number of windows.
            Windows::Direct(_) => {}
            Windows::Narrow(m) => m.iter_mut().for_each(|m| m.reserve(n)),
            Windows::Wide(m) => m.iter_mut().for_each(|m| m.reserve(n)),
        }
    }

    /// Heap bytes: map slots, and the entries of every window.
    pub fn heap_bytes(&self) -> (usize, usize) {
        let entry = std::mem::size_of::<Entry>();
        let state = std::mem::size_of::<WindowState>() + 1;
        match self {
            Windows::Direct(m) => (
                m.heap_bytes(),
                m.iter().map(|(_, w)| w.capacity() * entry).sum(),
            ),
            Windows::Narrow(m) => (
                m.iter().map(Slots::capacity).sum::<usize>() * (8 + state - 1),
                m.iter()
                    .flat_map(Slots::values)
                    .map(|w| w.capacity() * entry)
                    .sum(),
            ),
            Windows::Wide(m) => (
                m.iter().map(HashMap::capacity).sum::<usize>() * (24 + state),
                m.iter()
                    .flat_map(HashMap::values)
                    .map(|w| w.capacity() * entry)
                    .sum(),
            ),
        }
    }

    /// Every window with its key, sorted by key (snapshots are deterministic).
    pub fn sorted(&self) -> Vec<(Key, &WindowState)> {
        let mut v: Vec<(Key, &WindowState)> = match self {
            Windows::Direct(m) => m
                .iter()
                .map(|(s, w)| {
                    let mut k = [Sym::NONE; 6];
                    k[0] = s;
                    (k, w)
                })
                .collect(),
            Windows::Narrow(m) => m
                .iter()
                .flat_map(|m| m.iter().map(|(k, w)| (unpack(k), w)))
                .collect(),
            Windows::Wide(m) => m
                .iter()
                .flat_map(|m| m.iter().map(|(k, w)| (*k, w)))
                .collect(),
        };
        v.sort_unstable_by_key(|(k, _)| *k);
        v
    }
}

/// The value every entry of `v` that has one carries, if they carry one (none: `Sym::NONE`).
fn common_value(v: &[Entry]) -> Sym {
    let mut with = v.iter().map(|e| e.val).filter(|s| !s.is_none());
    match with.next() {
        Some(first) if with.all(|s| s == first) => first,
        _ => Sym::NONE,
    }
}

/// `v.partition_point(pred)` for a split expected near the front: a galloping search from the
/// first entry, O(log k) for a split at k. A window's calls before its start are the few not
/// yet swept, so the split is a cache line or two in, where a binary search over the whole
/// window would touch a line (and miss the cache) at every step.
pub(super) fn split_near_front(v: &[Entry], pred: impl Fn(&Entry) -> bool) -> usize {
    let mut hi = 1;
    while hi <= v.len() && pred(&v[hi - 1]) {
        hi *= 2;
    }
    // pred holds for v[..hi / 2]; it fails at v[hi - 1], or hi is past the end.
    let lo = hi / 2;
    lo + v[lo..hi.min(v.len())].partition_point(pred)
}

/// `v.partition_point(pred)` for a split expected near the back: a galloping search from the
/// last entry. Calls mostly arrive in time order, so the call judged is at or near the end.
pub(super) fn split_near_back(v: &[Entry], pred: impl Fn(&Entry) -> bool) -> usize {
    let n = v.len();
    let mut step = 1;
    while step <= n && !pred(&v[n - step]) {
        step *= 2;
    }
    // pred fails for v[n - step / 2..]; it holds at v[n - step], or step is past the start.
    let lo = n.saturating_sub(step);
    let hi = n - step / 2;
    lo + v[lo..hi].partition_point(pred)
}

/// Room a full window grows by: a quarter of what it holds, at least two entries (one for an
/// empty window). A window is a sliding span of calls, so the capacity it reaches stays in use —
/// doubling (Vec's own growth) left 34–43% of all entry memory unused in the memory benchmark.
/// The price is a few more reallocations of small arrays while a window first fills; with at
/// least one entry, every insert below eight entries was one (1 B more per retained call for
/// half of them).
pub(super) fn growth(len: usize) -> usize {
    if len == 0 {
        1
    } else {
        (len / 4).max(2)
    }
}

/// Gives back a window's unused room after eviction took entries from its front, once it is
/// more than a growth step (and a little) beyond what the window holds. What is kept is half a
/// growth step, so a window refilling at the same pace does not reallocate at once.
pub(super) fn fit(v: &mut Vec<Entry>) {
    let len = v.len();
    if v.capacity() > len + growth(len) + 2 {
        v.shrink_to(len + growth(len) / 2);
    }
}

/// Asks for the first cache line of `v` without waiting for it: what eviction reads of a window
/// or a host first ([`Slots::retain_ahead`]).
#[inline]
pub(super) fn prefetch_first(v: &[Entry]) {
    if let Some(e) = v.first() {
        super::prefetch(e);
    }
}

/// Asks for the first `lines` cache lines of `v` (four entries a line) and its last, without
/// waiting for them: what judging a call reads of a window or a host (`Engine::warm`).
#[inline]
pub(super) fn prefetch_front(v: &[Entry], lines: usize) {
    for e in v.iter().step_by(4).take(lines) {
        super::prefetch(e);
    }
    if let Some(b) = v.last() {
        super::prefetch(b);
    }
}

/// Where an entry at `ts` goes in time-sorted `v`: after the entries at the same instant.
#[inline]
pub(super) fn sorted_place(v: &[Entry], ts: i64) -> usize {
    if v.last().is_none_or(|l| l.ts <= ts) {
        v.len()
    } else {
        split_near_back(v, |x| x.ts <= ts)
    }
}

/// Sorted insert (after entries at the same instant); returns the index.
pub(super) fn insert_sorted(v: &mut Vec<Entry>, e: Entry) -> usize {
    if v.len() == v.capacity() {
        v.reserve_exact(growth(v.len()));
    }
    let i = sorted_place(v, e.ts);
    v.insert(i, e);
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::time::NANOS_PER_SEC;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(i64),
        /// An eviction pass's work on a window it reads: entries before the cutoff leave.
        Evict(i64),
        /// Entries taken away elsewhere (a partition's calls leaving).
        Drop(usize),
        /// The calls given whole (snapshots, moves).
        Set(Vec<i64>),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Times in seconds, around 1970 too (nothing is known of those).
        let t = -5i64..200;
        prop_oneof![
            6 => t.clone().prop_map(Op::Insert),
            2 => t.clone().prop_map(Op::Evict),
            1 => any::<usize>().prop_map(Op::Drop),
            1 => proptest::collection::vec(t, 0..6).prop_map(Op::Set),
        ]
    }

    proptest! {
        /// A window an eviction pass would leave unread for a cutoff holds nothing older than
        /// it, whatever was inserted (in and out of time order, at fractions of a second),
        /// evicted, taken away or given whole.
        #[test]
        fn a_window_left_unread_holds_nothing_to_evict(
            ops in proptest::collection::vec(op(), 1..40),
            frac in 0i64..NANOS_PER_SEC,
        ) {
            let at = |s: i64| s * NANOS_PER_SEC + frac;
            let mut w = WindowState::default();
            for o in ops {
                match o {
                    Op::Insert(s) => {
                        w.insert(Entry::from_raw(at(s), 0, Sym::NONE));
                    }
                    Op::Evict(s) => {
                        let k = split_near_front(&w.calls, |y| y.ts < at(s));
                        if k > 0 {
                            w.calls.drain(..k);
                            w.found_first();
                        }
                    }
                    Op::Drop(i) => {
                        if !w.calls.is_empty() {
                            let i = i % w.calls.len();
                            w.calls.remove(i);
                        }
                    }
                    Op::Set(mut ts) => {
                        ts.sort_unstable();
                        w.set_calls(ts.into_iter().map(|s| Entry::from_raw(at(s), 0, Sym::NONE)).collect());
                    }
                }
                for c in -6i64..205 {
                    for cutoff in [c * NANOS_PER_SEC, at(c), at(c) + 1] {
                        if w.none_before(cutoff) {
                            prop_assert!(w.calls.iter().all(|e| e.ts >= cutoff), "cutoff {}", cutoff);
                        }
                    }
                }
            }
        }
    }

    /// A window knows it carries one value while every entry with a value carries the same
    /// one, forgets it when another joins, and finds it again only once it has emptied; entries
    /// without a value change nothing, and a window given its calls works it out from them.
    #[test]
    fn a_window_knows_when_its_entries_carry_one_value() {
        let e = |ts: i64, v: u32| Entry::from_raw(ts, 0, Sym(v));
        let mut w = WindowState::default();
        assert_eq!(w.one_value(), None);
        w.insert(e(10, 7));
        w.insert(e(5, 7));
        w.insert(Entry::from_raw(20, 0, Sym::NONE));
        assert_eq!(w.one_value(), Some(Sym(7)));
        assert_eq!(
            w.calls.iter().map(|x| x.ts).collect::<Vec<_>>(),
            [5, 10, 20]
        );
        w.insert(e(30, 8));
        assert_eq!(w.one_value(), None);
        // Entries leaving do not bring it back (the window cannot tell what is left)...
        w.calls.drain(..3);
        w.insert(e(40, 8));
        assert_eq!(w.one_value(), None);
        // ...an empty window does.
        w.calls.clear();
        w.insert(e(50, 9));
        assert_eq!(w.one_value(), Some(Sym(9)));
        // A first entry without a value leaves it unknown (an entry with a value may follow).
        let mut w = WindowState::default();
        w.insert(Entry::from_raw(1, 0, Sym::NONE));
        w.insert(e(2, 3));
        assert_eq!(w.one_value(), None);
        w.set_calls(vec![Entry::from_raw(1, 0, Sym::NONE), e(2, 3), e(3, 3)]);
        assert_eq!(w.one_value(), Some(Sym(3)));
        w.set_calls(vec![e(2, 3), e(3, 4)]);
        assert_eq!(w.one_value(), None);
        w.set_calls(Vec::new());
        assert_eq!(w.one_value(), None);
    }

    /// The galloping searches agree with `partition_point` for every split of every length.
    #[test]
    fn splits_agree_with_partition_point() {
        for n in 0..70usize {
            let v: Vec<Entry> = (0..n)
                .map(|i| Entry::from_raw(i as i64 * 10, i as u32, Sym::NONE))
                .collect();
            for t in -5..(n as i64 * 10 + 5) {
                let pred = |e: &Entry| e.ts <= t;
                let want = v.partition_point(pred);
                assert_eq!(split_near_front(&v, pred), want, "front n={n} t={t}");
                assert_eq!(split_near_back(&v, pred), want, "back n={n} t={t}");
            }
        }
    }
}
