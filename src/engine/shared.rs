//! The windows of cap and cooldown rules shared by their first key field
//! (`EngineSettings::shared_windows`).
//!
//! Rules keyed on one or two fields whose first is the same (`debtor_id`, or `phone`) form a
//! group. For each value of that field (a debtor, a number) one *host* holds every member
//! rule's windows as *segments* of one buffer — a member's window for a key is the segment of
//! (member, the key's second symbol) — so judging a call reads one host per group, a line or
//! a few of one buffer, instead of a window slot and its entries per rule: each was a cache
//! miss (docs/performance.md, "What the rest of issue 11's figures need"). A segment holds exactly
//! the entries the rule's own window would, in the same order, so the kinds judge it alike. A
//! cooldown is two members, one after the other: its calls, then its triggers (the two lists
//! its own window keeps).

use super::bysym::BySym;
use super::intern::Sym;
use super::slots::RETAIN_AHEAD;
use super::window::{self, split_near_front, Entry, Key};
use super::Engine;
use smallvec::SmallVec;
use std::borrow::Cow;
use std::ops::Range;

/// One member rule's window for one value of the rest of its key: a range of the host's
/// entries.
#[derive(Debug, Clone, Copy)]
pub(super) struct Seg {
    member: u8,
    rest: Sym,
    start: u32,
    len: u32,
}

impl Seg {
    /// The segment as the 16 bytes of an entry, to sit at the head of the host's one buffer:
    /// start and length in the time word, the member in the slot word, the rest in the value.
    fn pack(self) -> Entry {
        Entry::from_raw(
            (self.start as i64) << 32 | self.len as i64,
            self.member as u32,
            self.rest,
        )
    }

    fn unpack(e: &Entry) -> Seg {
        Seg {
            member: e.raw_slot() as u8,
            rest: e.val,
            start: (e.ts >> 32) as u32,
            len: e.ts as u32,
        }
    }

    fn range(&self) -> Range<usize> {
        self.start as usize..(self.start + self.len) as usize
    }

    /// Moves packed segments' starts by `by` entries (in the time word's upper half).
    fn shift(packed: &mut [Entry], by: i64) {
        for e in packed {
            e.ts += by << 32;
        }
    }
}

/// The windows of one lead value, in one allocation: its segments (`n` of them, in buffer
/// order, a new one at the end), then their entries end to end. A host had a segment list
/// and an entry buffer of its own: two allocations, and a slot of 48 bytes instead of 32
/// (docs/performance.md, "One allocation a host, and the slots asked for before warm").
#[derive(Debug, Default)]
pub(super) struct Host {
    n: u32,
    v: Vec<Entry>,
}

impl Host {
    fn nsegs(&self) -> usize {
        self.n as usize
    }

    fn seg_at(&self, i: usize) -> Seg {
        Seg::unpack(&self.v[i])
    }

    fn set_seg(&mut self, i: usize, s: Seg) {
        self.v[i] = s.pack();
    }

    /// The segments, in buffer order.
    fn dir(&self) -> impl Iterator<Item = Seg> + '_ {
        self.v[..self.nsegs()].iter().map(Seg::unpack)
    }

    /// Every entry, the segments' end to end.
    fn buf(&self) -> &[Entry] {
        &self.v[self.nsegs()..]
    }

    /// Whether no segment is left.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Asks for the lines judging a call reads — the segments, the first `lines` lines of
    /// entries (four to a line) and the last — without waiting for them.
    #[inline]
    pub fn prefetch(&self, lines: usize) {
        window::prefetch_front(&self.v, self.nsegs().div_ceil(4) + lines);
    }

    fn find(&self, member: u8, rest: Sym) -> Option<usize> {
        self.dir()
            .position(|s| s.member == member && s.rest == rest)
    }

    /// The window of `member` for the key whose second symbol is `rest` (none: empty).
    pub fn seg(&self, member: u8, rest: Sym) -> &[Entry] {
        self.find(member, rest)
            .map_or(&[], |i| &self.buf()[self.seg_at(i).range()])
    }

    /// The segments of (`a`, `rest`) and (`b`, `rest`) at once (`a` ≠ `b`), the first to
    /// change: a cooldown's calls and its triggers. Absent ones are empty.
    pub fn pair_mut(&mut self, a: u8, b: u8, rest: Sym) -> (&mut [Entry], &[Entry]) {
        debug_assert_ne!(a, b);
        let r = |m| self.find(m, rest).map_or(0..0, |i| self.seg_at(i).range());
        let (ra, rb) = (r(a), r(b));
        let buf = self.entries_mut();
        if ra.is_empty() {
            (&mut [], &buf[rb])
        } else if rb.is_empty() {
            (&mut buf[ra], &[])
        } else if ra.start < rb.start {
            let (x, y) = buf.split_at_mut(rb.start);
            (&mut x[ra], &y[..rb.len()])
        } else {
            let (x, y) = buf.split_at_mut(ra.start);
            (&mut y[..ra.len()], &x[rb])
        }
    }

    /// Windows held: segments, but a cooldown's calls and triggers for one key are one
    /// window (`pair`: each member's other half, if it is a cooldown's).
    fn windows(&self, pair: &[Option<u8>]) -> usize {
        self.dir()
            .filter(|s| !self.is_second_half(s.member, s.rest, pair))
            .count()
    }

    /// Whether the segment of (`member`, `rest`) is a cooldown's triggers whose calls are
    /// here too (then the two are counted as one window).
    fn is_second_half(&self, member: u8, rest: Sym, pair: &[Option<u8>]) -> bool {
        pair[member as usize].is_some_and(|p| p < member && self.find(p, rest).is_some())
    }

    /// Every segment: member, second key symbol, entries.
    pub fn segs(&self) -> impl Iterator<Item = (u8, Sym, &[Entry])> {
        self.dir()
            .map(|s| (s.member, s.rest, &self.buf()[s.range()]))
    }

    /// Room for one more entry, grown as a window grows (`window::growth`).
    fn room(&mut self) {
        if self.v.len() == self.v.capacity() {
            self.v.reserve_exact(window::growth(self.v.len()));
        }
    }

    /// The index of the segment of (`member`, `rest`), made empty at the buffer's end if absent.
    fn find_or_make(&mut self, member: u8, rest: Sym) -> usize {
        self.find(member, rest).unwrap_or_else(|| {
            let s = Seg {
                member,
                rest,
                start: self.buf().len() as u32,
                len: 0,
            };
            self.room();
            // Starts count from the first entry, so the entries moving up one leaves them true.
            self.v.insert(self.nsegs(), s.pack());
            self.n += 1;
            self.nsegs() - 1
        })
    }

    /// Inserts `e` in time order into the segment of (`member`, `rest`), made if absent;
    /// returns the segment's range in the entries ([`Host::entries_mut`]) and `e`'s index in
    /// it.
    pub fn insert(&mut self, member: u8, rest: Sym, e: Entry) -> (Range<usize>, usize) {
        let i = self.find_or_make(member, rest);
        let mut s = self.seg_at(i);
        let r = s.range();
        let at = window::sorted_place(&self.buf()[r.clone()], e.ts);
        self.room();
        self.v.insert(self.nsegs() + r.start + at, e);
        s.len += 1;
        self.set_seg(i, s);
        let n = self.nsegs();
        Seg::shift(&mut self.v[i + 1..n], 1);
        (r.start..r.end + 1, at)
    }

    /// The entries, as [`Host::insert`]'s ranges index them.
    pub fn entries_mut(&mut self) -> &mut [Entry] {
        let n = self.nsegs();
        &mut self.v[n..]
    }

    /// Drops the entries before each segment's cutoff; whether anything is left.
    pub fn evict(&mut self, cutoff: impl Fn(u8) -> i64) -> bool {
        self.compact(|member, seg| {
            let c = cutoff(member);
            split_near_front(seg, |y| y.ts < c)..seg.len()
        })
    }

    /// Keeps the entries `keep` says to keep; whether anything is left.
    pub fn retain(&mut self, keep: impl Fn(&Entry) -> bool) -> bool {
        let mut dir: Vec<Seg> = Vec::with_capacity(self.nsegs());
        let mut kept: Vec<Entry> = Vec::with_capacity(self.buf().len());
        for mut s in self.dir() {
            let start = kept.len();
            kept.extend(self.buf()[s.range()].iter().filter(|e| keep(e)));
            s.start = start as u32;
            s.len = (kept.len() - start) as u32;
            if s.len > 0 {
                dir.push(s);
            }
        }
        let mut v = Vec::with_capacity(dir.len() + kept.len());
        v.extend(dir.iter().map(|s| s.pack()));
        v.extend_from_slice(&kept);
        self.n = dir.len() as u32;
        self.v = v;
        !self.is_empty()
    }

    /// Keeps of each segment the range `keep` gives (member, its entries), in place.
    fn compact(&mut self, keep: impl Fn(u8, &[Entry]) -> Range<usize>) -> bool {
        let n = self.nsegs();
        // What each segment keeps, where it is in the buffer now: all read before anything
        // moves, as the kept segments and entries are rewritten from the front.
        let mut kept: SmallVec<[(Seg, Range<usize>); 16]> = SmallVec::new();
        for i in 0..n {
            let s = self.seg_at(i);
            let at = n + s.start as usize;
            let k = keep(s.member, &self.v[at..at + s.len as usize]);
            if !k.is_empty() {
                kept.push((s, at + k.start..at + k.end));
            }
        }
        let segs = kept.len();
        // Each move goes down (or stays): fewer segments before, no more entries before.
        let mut write = segs;
        for (i, (mut s, from)) in kept.into_iter().enumerate() {
            if from.start != write {
                self.v.copy_within(from.clone(), write);
            }
            s.start = (write - segs) as u32;
            s.len = from.len() as u32;
            self.set_seg(i, s);
            write += from.len();
        }
        self.v.truncate(write);
        self.n = segs as u32;
        window::fit(&mut self.v);
        !self.is_empty()
    }

    /// Replaces the entries of the segment of (`member`, `rest`) by what `f` makes of them
    /// (kept sorted by time by the caller), made if absent, dropped if left empty.
    pub fn put(&mut self, member: u8, rest: Sym, f: impl FnOnce(&mut Vec<Entry>)) {
        let i = self.find_or_make(member, rest);
        let n = self.nsegs();
        let mut s = self.seg_at(i);
        let at = n + s.start as usize..n + (s.start + s.len) as usize;
        let mut v: Vec<Entry> = self.v[at.clone()].to_vec();
        f(&mut v);
        let (old, new) = (s.len, v.len() as u32);
        self.v.splice(at, v);
        s.len = new;
        self.set_seg(i, s);
        Seg::shift(&mut self.v[i + 1..n], new as i64 - old as i64);
        if new == 0 {
            // Starts count from the first entry: the others' stay true.
            self.v.remove(i);
            self.n -= 1;
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.v.capacity() * std::mem::size_of::<Entry>()
    }
}

/// The hosts of one lead field, and the rules that are its members.
pub(super) struct Group {
    /// The field (`StrField` number) leading every member's key.
    pub lead: usize,
    /// Member number → rule index (a cooldown's twice: its calls, then its triggers).
    pub members: Vec<usize>,
    /// Member number → the other half of a cooldown (its triggers' member for its calls',
    /// and the other way round); `None` for a cap.
    pair: Vec<Option<u8>>,
    /// The hosts by their lead symbol ([`BySym`]: one read of the state to find one, where a
    /// table read two). A host left with no segment is dropped.
    hosts: BySym<Host>,
    /// Windows over all hosts ([`Host::windows`]: a gauge read every second under the lock a
    /// pre-dial check takes, counted as they come and go, not by walking the hosts).
    segments: usize,
}

impl Group {
    pub fn new(lead: usize) -> Group {
        Group {
            lead,
            members: Vec::new(),
            pair: Vec::new(),
            hosts: BySym::default(),
            segments: 0,
        }
    }

    #[inline]
    pub fn get(&self, lead: Sym) -> Option<&Host> {
        self.hosts.get(lead)
    }

    /// Asks for `lead`'s host without waiting for it ([`Engine::prewarm`]).
    #[inline]
    pub fn prefetch(&self, lead: Sym) {
        self.hosts.prefetch(lead);
    }

    /// Asks for the word that places `lead`'s host ([`Engine::locate`]).
    #[inline]
    pub fn prefetch_place(&self, lead: Sym) {
        self.hosts.prefetch_place(lead);
    }

    /// Adds rule `ri` as a member: a cap as one, a cooldown as two (its calls, then its
    /// triggers).
    pub fn add(&mut self, ri: usize, cooldown: bool) {
        let m = self.members.len() as u8;
        if cooldown {
            self.members.extend([ri, ri]);
            self.pair.extend([Some(m + 1), Some(m)]);
        } else {
            self.members.push(ri);
            self.pair.push(None);
        }
    }

    /// The window of `member` for the key (`lead`, `rest`), to change; `None` if there is none.
    pub fn seg_mut(&mut self, lead: Sym, member: u8, rest: Sym) -> Option<&mut [Entry]> {
        let host = self.hosts.get_mut(lead)?;
        let r = host.seg_at(host.find(member, rest)?).range();
        Some(&mut host.entries_mut()[r])
    }

    /// [`Host::insert`] into the host of `lead` (made if absent); returns the segment's
    /// entries and `e`'s index among them.
    #[inline]
    pub fn insert(&mut self, lead: Sym, member: u8, rest: Sym, e: Entry) -> (&mut [Entry], usize) {
        let (host, r, at) = self.host_insert(lead, member, rest, e);
        (&mut host.entries_mut()[r], at)
    }

    /// [`Host::insert`] into one of a cooldown's two members `(calls, triggers)` — the second
    /// if `trigger` — in the host of `lead` (made if absent); returns the calls, `e`'s index in
    /// the segment it went to, and the triggers ([`Host::pair_mut`]).
    #[inline]
    pub fn insert_pair(
        &mut self,
        lead: Sym,
        (calls, triggers): (u8, u8),
        trigger: bool,
        rest: Sym,
        e: Entry,
    ) -> (&mut [Entry], usize, &[Entry]) {
        let into = if trigger { triggers } else { calls };
        let (host, _, at) = self.host_insert(lead, into, rest, e);
        let (c, t) = host.pair_mut(calls, triggers, rest);
        (c, at, t)
    }

    fn host_insert(
        &mut self,
        lead: Sym,
        member: u8,
        rest: Sym,
        e: Entry,
    ) -> (&mut Host, Range<usize>, usize) {
        let host = self.hosts.entry(lead);
        let before = host.nsegs();
        let (r, at) = host.insert(member, rest, e);
        // A new segment is a new window, unless it is one half of a cooldown's whose other
        // half is here already.
        if host.nsegs() > before {
            let other = self.pair[member as usize].and_then(|p| host.find(p, rest));
            self.segments += other.is_none() as usize;
        }
        (host, r, at)
    }

    /// Rules whose windows are here.
    pub fn rules(&self) -> usize {
        let mut v = self.members.clone();
        v.dedup();
        v.len()
    }

    /// [`Host::put`] on the host of `lead`, which is dropped if left with no segment.
    pub fn put(&mut self, lead: Sym, member: u8, rest: Sym, f: impl FnOnce(&mut Vec<Entry>)) {
        let host = self.hosts.entry(lead);
        let before = host.windows(&self.pair);
        host.put(member, rest, f);
        let after = host.windows(&self.pair);
        let empty = host.is_empty();
        self.segments = self.segments + after - before;
        if empty {
            self.hosts.remove(lead);
        }
    }

    /// Keeps in the hosts of `shard` what `f` keeps of each (hosts it leaves with no segment
    /// are dropped); returns how many hosts it looked at.
    pub fn retain_shard(&mut self, shard: usize, mut f: impl FnMut(&mut Host) -> bool) -> usize {
        let mut gone = 0;
        let pair = &self.pair;
        // With no cooldown among the members, a host's windows are its segments: counted
        // without reading its buffer.
        let paired = pair.iter().any(Option::is_some);
        let windows = |h: &Host| {
            if paired {
                h.windows(pair)
            } else {
                h.nsegs()
            }
        };
        let n = self.hosts.retain_shard(
            shard,
            RETAIN_AHEAD,
            |h| window::prefetch_first(&h.v),
            |h| {
                let before = windows(h);
                let keep = f(h);
                gone += before - windows(h);
                keep
            },
        );
        self.segments -= gone;
        n
    }

    /// Every host, with its lead symbol.
    pub fn hosts(&self) -> impl Iterator<Item = (Sym, &Host)> {
        self.hosts.iter()
    }

    /// Heap bytes: the host maps' slots, and the hosts' segments and entries.
    pub fn heap_bytes(&self) -> (usize, usize) {
        (
            self.hosts.heap_bytes(),
            self.hosts
                .iter()
                .map(|(_, h)| h.heap_bytes())
                .sum::<usize>(),
        )
    }

    /// Windows held ([`Host::windows`]).
    pub fn len(&self) -> usize {
        self.segments
    }
}

/// One window of a rule as snapshots and splits read it: its key, its call entries (a key
/// kept without a window, `thin`, gives them made up) and its trigger entries.
pub(super) type RuleWindow<'e> = (Key, Cow<'e, [Entry]>, &'e [Entry]);

impl Engine {
    /// Rule `ri`'s windows sorted by key — key, call entries, trigger entries — wherever they
    /// are kept (snapshots and splits read them so, whatever the layout).
    pub(super) fn rule_windows(&self, ri: usize) -> Vec<RuleWindow<'_>> {
        let st = &self.states[ri];
        let Some((g, m)) = st.shared else {
            let mut v: Vec<RuleWindow<'_>> = st
                .windows
                .sorted()
                .into_iter()
                .map(|(k, w)| (k, Cow::Borrowed(&w.calls[..]), w.triggers()))
                .collect();
            // Keys kept without a window: their entries as the window would hold them.
            if let Some(t) = &st.thin {
                for (sym, calls) in t.keys() {
                    let mut k: Key = [Sym::NONE; 6];
                    k[0] = sym;
                    v.push((k, Cow::Owned(calls), &[]));
                }
                v.sort_unstable_by_key(|(k, _, _)| *k);
            }
            return v;
        };
        // A cooldown's triggers are the member after its calls.
        let t = self.has_triggers(ri).then_some(m + 1);
        let mut v: Vec<RuleWindow<'_>> = Vec::new();
        for (lead, h) in self.groups[g].hosts() {
            let at = v.len();
            for (member, rest, e) in h.segs() {
                if member != m && Some(member) != t {
                    continue;
                }
                let mut k: Key = [Sym::NONE; 6];
                k[0] = lead;
                k[1] = rest;
                // Calls and triggers of one key are two segments of this host: one entry.
                let i = match v[at..].iter().position(|(x, _, _)| *x == k) {
                    Some(i) => at + i,
                    None => {
                        v.push((k, Cow::Borrowed(&[]), &[]));
                        v.len() - 1
                    }
                };
                if member == m {
                    v[i].1 = Cow::Borrowed(e);
                } else {
                    v[i].2 = e;
                }
            }
        }
        v.sort_unstable_by_key(|(k, _, _)| *k);
        v
    }

    /// How the windows are laid out, as snapshots record it: 0, each rule's its own; 1, cap
    /// rules' shared (format 6); 2, cap and cooldown rules' shared (format 7); 3, the calls
    /// status and contact rules hold shared too (format 8 on).
    pub(super) fn layout(&self) -> u8 {
        if self.groups.is_empty() {
            0
        } else {
            3
        }
    }

    /// Whether rule `ri` keeps triggers beside its calls (a cooldown).
    fn has_triggers(&self, ri: usize) -> bool {
        self.rules[ri].kind == super::rule::RuleKind::Cooldown
    }

    /// Sets rule `ri`'s window of `key` to what `f` makes of its call entries (sorted by
    /// time) and its triggers; a window left with neither is dropped. Only a cooldown keeps
    /// triggers: given some for another rule whose windows are shared (a cap), it returns
    /// `false` and changes nothing.
    pub(super) fn put_window(
        &mut self,
        ri: usize,
        key: &Key,
        f: impl FnOnce(&mut Vec<Entry>, &mut Vec<Entry>),
    ) -> bool {
        match self.states[ri].shared {
            Some((g, m)) if self.has_triggers(ri) => {
                let mut triggers = match self.groups[g].get(key[0]) {
                    Some(h) => h.seg(m + 1, key[1]).to_vec(),
                    None => Vec::new(),
                };
                self.groups[g].put(key[0], m, key[1], |calls| f(calls, &mut triggers));
                self.groups[g].put(key[0], m + 1, key[1], |t| *t = triggers);
                true
            }
            Some((g, m)) => {
                let mut triggers = Vec::new();
                let mut ok = true;
                self.groups[g].put(key[0], m, key[1], |calls| {
                    f(calls, &mut triggers);
                    ok = triggers.is_empty();
                });
                ok
            }
            None => {
                let st = &mut self.states[ri];
                // A key kept without a window gets one, its entries in it first.
                let prior = st.thin.as_mut().map(|t| t.fatten(key[0]));
                let w = st.windows.entry(key);
                for e in prior.into_iter().flatten() {
                    w.insert(e);
                }
                let mut triggers = w.triggers.take().map(|b| *b).unwrap_or_default();
                let mut calls = std::mem::take(&mut w.calls);
                f(&mut calls, &mut triggers);
                w.set_calls(calls);
                if !triggers.is_empty() {
                    w.triggers = Some(Box::new(triggers));
                }
                if w.calls.is_empty() && w.triggers.is_none() {
                    self.states[ri].windows.remove(key);
                }
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::rule::Window;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        /// Insert an entry at this time into the segment (member, rest).
        Insert(u8, u32, i64),
        /// Replace the segment by itself merged with entries at these times.
        Put(u8, u32, Vec<i64>),
        /// Evict before a cutoff of its own per member.
        Evict([i64; 3]),
        /// Keep the entries whose slot is not a multiple of this.
        Retain(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        let t = 0i64..100;
        prop_oneof![
            8 => (0u8..3, 0u32..4, t.clone()).prop_map(|(m, r, t)| Op::Insert(m, r, t)),
            2 => (0u8..3, 0u32..4, proptest::collection::vec(t.clone(), 0..4))
                .prop_map(|(m, r, v)| Op::Put(m, r, v)),
            1 => [t.clone(), t.clone(), t].prop_map(Op::Evict),
            1 => (2u32..5).prop_map(Op::Retain),
        ]
    }

    fn entry(ts: i64, slot: u32) -> Entry {
        Entry::new(ts, 0, slot, Sym::NONE, Window::Rolling(1))
    }

    /// Entries by time and slot, as compared.
    fn parts(v: &[Entry]) -> Vec<(i64, u32)> {
        v.iter().map(|e| (e.ts, e.slot())).collect()
    }

    /// Sorted insert after entries at the same instant (`window::insert_sorted`).
    fn model_insert(v: &mut Vec<Entry>, e: Entry) -> usize {
        let at = v.partition_point(|x| x.ts <= e.ts);
        v.insert(at, e);
        at
    }

    proptest! {
        /// Any sequence of inserts, replacements, evictions and filters leaves every segment of
        /// a host holding what a window of its own given the same operations holds, with the
        /// segments laid end to end in the buffer, read one at a time or two at once.
        #[test]
        fn segments_agree_with_windows_of_their_own(ops in proptest::collection::vec(op(), 1..200)) {
            let mut h = Host::default();
            let mut m: BTreeMap<(u8, u32), Vec<Entry>> = BTreeMap::new();
            let mut slot = 0u32;
            for o in ops {
                match o {
                    Op::Insert(member, rest, ts) => {
                        slot += 1;
                        let e = entry(ts, slot);
                        let (r, at) = h.insert(member, Sym(rest), e);
                        let w = m.entry((member, rest)).or_default();
                        prop_assert_eq!(at, model_insert(w, e));
                        prop_assert_eq!(parts(&h.buf()[r]), parts(w));
                    }
                    Op::Put(member, rest, times) => {
                        let more: Vec<Entry> = times.iter().map(|&t| { slot += 1; entry(t, slot) }).collect();
                        h.put(member, Sym(rest), |v| {
                            for e in &more {
                                model_insert(v, *e);
                            }
                        });
                        let w = m.entry((member, rest)).or_default();
                        for e in &more {
                            model_insert(w, *e);
                        }
                    }
                    Op::Evict(c) => {
                        h.evict(|member| c[member as usize]);
                        for ((member, _), w) in m.iter_mut() {
                            w.retain(|e| e.ts >= c[*member as usize]);
                        }
                    }
                    Op::Retain(d) => {
                        h.retain(|e| e.slot() % d != 0);
                        for w in m.values_mut() {
                            w.retain(|e| e.slot() % d != 0);
                        }
                    }
                }
                m.retain(|_, w| !w.is_empty());
                let mut next = 0u32;
                for s in h.dir() {
                    prop_assert_eq!(s.start, next, "segments end to end");
                    prop_assert!(s.len > 0, "no empty segment");
                    next += s.len;
                }
                prop_assert_eq!(next as usize, h.buf().len());
                prop_assert_eq!(h.nsegs() + h.buf().len(), h.v.len(), "segments, then entries");
                let got: BTreeMap<(u8, u32), Vec<(i64, u32)>> =
                    h.segs().map(|(member, rest, v)| ((member, rest.0), parts(v))).collect();
                let want: BTreeMap<(u8, u32), Vec<(i64, u32)>> =
                    m.iter().map(|(k, v)| (*k, parts(v))).collect();
                prop_assert_eq!(got, want);
                for ((member, rest), w) in &m {
                    prop_assert_eq!(parts(h.seg(*member, Sym(*rest))), parts(w));
                }
                // Two segments at once (a cooldown's calls and triggers), either present or not.
                let none = Vec::new();
                for (a, b) in [(0u8, 1u8), (1, 0), (0, 2), (2, 1)] {
                    for rest in 0u32..4 {
                        let (x, y) = h.pair_mut(a, b, Sym(rest));
                        let (x, y) = (parts(x), parts(y));
                        prop_assert_eq!(x, parts(m.get(&(a, rest)).unwrap_or(&none)));
                        prop_assert_eq!(y, parts(m.get(&(b, rest)).unwrap_or(&none)));
                    }
                }
            }
        }
    }
}
