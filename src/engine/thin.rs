//! One-value windows kept as chains in a log ([`super::EngineSettings::thin_windows`]).
//!
//! A distinct cap keyed on one field whose windows are its own (debtors per number, in the
//! packs) sees, for nearly every key, calls that all carry one value: a number called about
//! one debtor. While a window's entries carry one value its count is one, within any limit of
//! one or more, so judging such a call counts nothing (`cap::known_within`) and cannot breach.
//! What such a window cost was keeping it: its slot looked up and read ahead, an entry
//! inserted, the array grown, the entries evicted — a third of the rule loop on the default
//! policy (docs/performance.md, "What the engine thread does with its time, …").
//!
//! Here such a key has no window. A word by the key's symbol says which value its entries
//! carry and where the newest is in one log per rule; each entry in the log — the same
//! [`Entry`] the window would hold — names the key's entry before it, as a distance back. The
//! log is appended to in arrival order and cut at its oldest end as windows are evicted
//! (log indices only grow, so a link below the log's oldest index is simply gone: no stale
//! link can be followed). When a call carries another value, or nothing (a window whose first
//! entry has no value carries none), the key's entries are read back along the chain and
//! inserted, oldest arrival first, into the window the rule would have had, and the key is
//! judged through its window from then on — until that window is evicted whole.
//!
//! Entries older than the rule's cutoff may stay in the log a while longer than in a window
//! (the log is cut from its oldest arrival, and a late call's entry can hold back newer but
//! older-in-time ones); a key's entries read back are filtered by the cutoff of the last
//! eviction pass, which drops every entry whose record may since have been freed.

use super::intern::Sym;
use super::window::Entry;
use std::collections::VecDeque;

/// Entries a chunk of the log holds: the log grows and is cut a chunk at a time, so it holds
/// at most one chunk's room more than its entries (a ring buffer doubling its capacity held up
/// to twice as much).
const CHUNK: usize = 4096;

/// What the directory knows of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// No entries in the log (or only ones cut since).
    None,
    /// The key's entries carry `value`; the newest is at log index `head`.
    Thin { value: Sym, head: u64 },
    /// The key is judged through its window.
    Fat,
}

/// What [`Thin::ingest`] did with an entry.
pub(super) enum Took {
    /// Kept in the log: the key's entries carry one value, the entry's.
    Thin,
    /// The key is judged through its window: the entry was not taken, and these entries,
    /// in arrival order, belong in the window first (none when it is already there).
    Fat(Vec<Entry>),
}

/// One rule's one-value keys and their log.
#[derive(Debug, Default)]
pub(super) struct Thin {
    dir: Vec<Dir>,
    /// Entries in arrival order, in chunks of [`CHUNK`]; the first chunk's first entry has log
    /// index `base`, and its first `skip` entries are cut.
    entries: VecDeque<Vec<Entry>>,
    /// For each entry, how many log indices back the key's entry before it is (0: none).
    back: VecDeque<Vec<u32>>,
    base: u64,
    skip: usize,
    /// Log indices appended so far: the next one.
    end: u64,
    /// The cutoff of the rule's last eviction pass: entries before it are not read back.
    cutoff: i64,
}

impl Thin {
    fn dir(&self, k: Sym) -> Dir {
        self.dir.get(k.0 as usize).copied().unwrap_or(Dir::None)
    }

    fn set(&mut self, k: Sym, d: Dir) {
        let i = k.0 as usize;
        if i >= self.dir.len() {
            // A quarter more than needed: interning adds symbols one at a time.
            self.dir.resize(i + 1 + i / 4, Dir::None);
        }
        self.dir[i] = d;
    }

    /// The oldest log index not cut.
    fn first(&self) -> u64 {
        self.base + self.skip as u64
    }

    /// The entry at log index `at` (not cut) and its link back.
    fn at(&self, at: u64) -> (Entry, u32) {
        let r = (at - self.base) as usize;
        (
            self.entries[r / CHUNK][r % CHUNK],
            self.back[r / CHUNK][r % CHUNK],
        )
    }

    /// The key's newest live log index, if its entries are in the log.
    fn live_head(&self, k: Sym) -> Option<(Sym, u64)> {
        self.live(self.dir(k))
    }

    /// [`Thin::live_head`] of a directory word already read.
    fn live(&self, d: Dir) -> Option<(Sym, u64)> {
        match d {
            Dir::Thin { value, head } if head >= self.first() => Some((value, head)),
            _ => None,
        }
    }

    /// Whether key `k` is judged through its window.
    pub fn is_fat(&self, k: Sym) -> bool {
        self.dir(k) == Dir::Fat
    }

    /// Asks for the directory word of `k` without waiting for it.
    #[inline]
    pub fn prefetch(&self, k: Sym) {
        if let Some(d) = self.dir.get(k.0 as usize) {
            super::prefetch(d);
        }
    }

    /// Takes the entry `e` of key `k`, whose window (`has_window`) may exist: into the log
    /// while the key's entries carry one value, else [`Took::Fat`].
    pub fn ingest(&mut self, k: Sym, e: Entry, has_window: bool) -> Took {
        let d = self.dir(k);
        match (d, self.live(d)) {
            (Dir::Fat, _) if has_window => Took::Fat(Vec::new()),
            (_, Some((value, head))) if e.val.is_none() || e.val == value => {
                let at = self.push(e, head);
                self.set(k, Dir::Thin { value, head: at });
                Took::Thin
            }
            (_, Some(_)) => {
                let prior = self.read_back(k);
                self.set(k, Dir::Fat);
                Took::Fat(prior)
            }
            // No entries: a window whose first entry carries no value carries none.
            _ if e.val.is_none() => {
                self.set(k, Dir::Fat);
                Took::Fat(Vec::new())
            }
            _ => {
                let at = self.push(e, u64::MAX);
                self.set(
                    k,
                    Dir::Thin {
                        value: e.val,
                        head: at,
                    },
                );
                Took::Thin
            }
        }
    }

    fn push(&mut self, e: Entry, before: u64) -> u64 {
        let at = self.end;
        let back = if before == u64::MAX || before < self.first() {
            0
        } else {
            u32::try_from(at - before).unwrap_or(0)
        };
        if self.entries.back().is_none_or(|c| c.len() == CHUNK) {
            self.entries.push_back(Vec::with_capacity(CHUNK));
            self.back.push_back(Vec::with_capacity(CHUNK));
        }
        if let (Some(c), Some(b)) = (self.entries.back_mut(), self.back.back_mut()) {
            c.push(e);
            b.push(back);
        }
        self.end += 1;
        at
    }

    /// Key `k`'s entries in the log not before the last cutoff, oldest arrival first.
    fn entries_of(&self, k: Sym) -> Vec<Entry> {
        let mut v = Vec::new();
        let Some((_, mut at)) = self.live_head(k) else {
            return v;
        };
        loop {
            let (e, b) = self.at(at);
            if e.ts >= self.cutoff {
                v.push(e);
            }
            let b = b as u64;
            if b == 0 || at - b < self.first() {
                break;
            }
            at -= b;
        }
        v.reverse();
        v
    }

    /// Key `k`'s entries in the log not before the last cutoff, sorted as its window would
    /// hold them (by time; calls of one instant in arrival order).
    pub fn window_of(&self, k: Sym) -> Vec<Entry> {
        let mut w = Vec::new();
        for e in self.entries_of(k) {
            super::window::insert_sorted(&mut w, e);
        }
        w
    }

    /// Key `k`'s entries, oldest arrival first, leaving the log: the key becomes none.
    fn read_back(&mut self, k: Sym) -> Vec<Entry> {
        let v = self.entries_of(k);
        self.set(k, Dir::None);
        v
    }

    /// Takes key `k`'s entries out, oldest arrival first, the key now judged through its
    /// window: what a caller that changes the window itself does first.
    pub fn fatten(&mut self, k: Sym) -> Vec<Entry> {
        let v = self.read_back(k);
        self.set(k, Dir::Fat);
        v
    }

    /// Every key whose entries are in the log, with them as its window would hold them.
    pub fn keys(&self) -> impl Iterator<Item = (Sym, Vec<Entry>)> + '_ {
        (0..self.dir.len()).filter_map(move |i| {
            let k = Sym(i as u32);
            self.live_head(k)?;
            let v = self.window_of(k);
            (!v.is_empty()).then_some((k, v))
        })
    }

    /// Keys whose entries are in the log (the window-keys gauge).
    pub fn len(&self) -> usize {
        (0..self.dir.len())
            .filter(|&i| self.live_head(Sym(i as u32)).is_some())
            .count()
    }

    /// An eviction pass at `cutoff`: the log's oldest entries before it leave, and no entry
    /// before it is read back any more.
    pub fn evict(&mut self, cutoff: i64) {
        self.cutoff = self.cutoff.max(cutoff);
        while self.first() < self.end && self.at(self.first()).0.ts < self.cutoff {
            self.skip += 1;
            if self.skip == CHUNK {
                self.entries.pop_front();
                self.back.pop_front();
                self.base += CHUNK as u64;
                self.skip = 0;
            }
        }
    }

    /// Takes every key's entries out (as [`Thin::keys`]), each key now judged through its
    /// window: what a caller that changes windows wholesale (a partition's calls leaving) does
    /// first.
    pub fn fatten_all(&mut self) -> Vec<(Sym, Vec<Entry>)> {
        let keys: Vec<(Sym, Vec<Entry>)> = self.keys().collect();
        for (k, _) in &keys {
            self.set(*k, Dir::Fat);
        }
        keys
    }

    /// Heap bytes: the directory and the log.
    pub fn heap_bytes(&self) -> usize {
        self.dir.capacity() * std::mem::size_of::<Dir>()
            + self.entries.len() * CHUNK * (std::mem::size_of::<Entry>() + 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::rule::Window;

    fn entry(ts: i64, slot: u32, val: u32) -> Entry {
        Entry::new(ts, 0, slot, Sym(val), Window::Rolling(1000))
    }

    fn slots(v: &[Entry]) -> Vec<u32> {
        v.iter().map(|e| e.slot()).collect()
    }

    #[test]
    fn a_key_of_one_value_keeps_its_entries_until_another_value_comes() {
        let mut t = Thin::default();
        let (a, b) = (Sym(3), Sym(5));
        // Two keys interleaved, the second arriving late once: each keeps its own chain.
        for (i, (k, ts)) in [(a, 10), (b, 11), (a, 12), (a, 9), (b, 13)]
            .into_iter()
            .enumerate()
        {
            assert!(matches!(
                t.ingest(k, entry(ts, i as u32, 7), false),
                Took::Thin
            ));
        }
        // A value-less entry keeps the key's one value.
        assert!(matches!(
            t.ingest(
                a,
                Entry::new(14, 0, 5, Sym::NONE, Window::Rolling(1000)),
                false
            ),
            Took::Thin
        ));
        assert_eq!(slots(&t.entries_of(a)), [0, 2, 3, 5]);
        assert_eq!(slots(&t.entries_of(b)), [1, 4]);
        assert_eq!(t.len(), 2);
        // Another value: the key's entries come back in arrival order, and it has a window.
        let Took::Fat(prior) = t.ingest(b, entry(15, 6, 8), false) else {
            panic!("a second value kept in the log");
        };
        assert_eq!(slots(&prior), [1, 4]);
        assert!(t.is_fat(b));
        assert_eq!(t.len(), 1);
        // While its window is there, the key stays with it; once the window is gone, it
        // starts again in the log.
        assert!(matches!(t.ingest(b, entry(16, 7, 8), true), Took::Fat(p) if p.is_empty()));
        assert!(matches!(t.ingest(b, entry(17, 8, 8), false), Took::Thin));
        assert_eq!(slots(&t.entries_of(b)), [8]);
    }

    #[test]
    fn a_first_entry_without_a_value_makes_a_window() {
        let mut t = Thin::default();
        let e = Entry::new(1, 0, 0, Sym::NONE, Window::Rolling(1000));
        assert!(matches!(t.ingest(Sym(1), e, false), Took::Fat(p) if p.is_empty()));
        assert!(t.is_fat(Sym(1)));
    }

    #[test]
    fn eviction_cuts_the_log_and_no_entry_before_the_cutoff_comes_back() {
        let mut t = Thin::default();
        let n = 3 * CHUNK as u32 + 17;
        // Key 1 gets every tenth entry, key 2 the rest; time runs with the index, but for one
        // late entry of key 1.
        for i in 0..n {
            let k = if i % 10 == 0 { 1 } else { 2 };
            let ts = if i == 2 * CHUNK as u32 + 8 {
                5
            } else {
                i as i64
            };
            assert!(matches!(
                t.ingest(Sym(k), entry(ts, i, 9), false),
                Took::Thin
            ));
        }
        let cut = CHUNK as i64 + 100;
        t.evict(cut);
        // Whole chunks left (the late entry holds back none: it is after them).
        assert!(t.first() >= CHUNK as u64);
        let mine = t.entries_of(Sym(1));
        assert!(
            mine.iter().all(|e| e.ts >= cut),
            "an entry before the cutoff came back"
        );
        let want: Vec<u32> = (0..n)
            .filter(|i| i % 10 == 0 && *i as i64 >= cut && *i != 2 * CHUNK as u32 + 8)
            .collect();
        assert_eq!(slots(&mine), want);
        assert!(t.heap_bytes() <= (n as usize / CHUNK + 1) * CHUNK * 20 + t.dir.capacity() * 16);
        // Everything cut: the keys have nothing left, and start again.
        t.evict(i64::MAX);
        assert_eq!(t.len(), 0);
        assert!(t.entries_of(Sym(2)).is_empty());
        assert!(matches!(
            t.ingest(Sym(2), entry(i64::MAX, 1, 4), false),
            Took::Thin
        ));
        assert_eq!(slots(&t.entries_of(Sym(2))), [1]);
    }

    #[test]
    fn fattening_takes_every_chain_out() {
        let mut t = Thin::default();
        for i in 0..6u32 {
            let _ = t.ingest(Sym(i % 3), entry(i as i64, i, 1), false);
        }
        let all = t.fatten_all();
        assert_eq!(
            all.iter().map(|(k, v)| (k.0, slots(v))).collect::<Vec<_>>(),
            [(0, vec![0, 3]), (1, vec![1, 4]), (2, vec![2, 5])]
        );
        assert_eq!(t.len(), 0);
        assert!((0..3).all(|k| t.is_fat(Sym(k))));
        assert_eq!(slots(&t.fatten(Sym(0))), Vec::<u32>::new());
    }

    #[test]
    fn a_window_put_over_a_key_kept_in_the_log_starts_with_its_entries() {
        use crate::engine::event::{Call, Relation};
        use crate::engine::time::{Ts, NANOS_PER_SEC};
        use crate::engine::{Engine, EngineSettings};
        #[derive(serde::Deserialize)]
        struct File {
            rules: Vec<crate::policy::spec::RuleSpec>,
        }
        let f: File = toml::from_str(
            r#"
[[rules]]
id = "debtors-per-number"
kind = "cap"
severity = "medium"
key = ["phone"]
distinct = "debtor_id"
window = "24h"
limit = 2
"#,
        )
        .unwrap();
        let tz = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
        let rules = f
            .rules
            .iter()
            .map(|r| r.compile(&tz, "Asia/Shanghai", Some("test")).unwrap())
            .collect();
        let settings = EngineSettings {
            thin_windows: true,
            ..Default::default()
        };
        let mut e = Engine::new(rules, settings);
        let mut out = Vec::new();
        for i in 0..3i64 {
            let c = Call::new(
                &format!("c{i}"),
                Ts(1_800_000_000 * NANOS_PER_SEC + i * NANOS_PER_SEC),
                "D1",
                "+8613900000001",
                Relation::SelfDebtor,
            );
            e.ingest(&c, &mut out);
        }
        let windows = |e: &Engine| -> Vec<(super::super::window::Key, Vec<u32>)> {
            e.rule_windows(0)
                .into_iter()
                .map(|(k, calls, _)| (k, slots(&calls)))
                .collect()
        };
        let before = windows(&e);
        assert_eq!(before.len(), 1);
        assert_eq!(before[0].1.len(), 3);
        // Kept in the log, not in a window.
        assert_eq!(e.states[0].windows.len(), 0);
        assert_eq!(e.window_keys(), 1);
        let key = before[0].0;
        assert!(e.put_window(0, &key, |_, _| {}));
        assert_eq!(windows(&e), before);
        assert_eq!(e.states[0].windows.len(), 1);
        assert_eq!(e.window_keys(), 1);
    }
}
