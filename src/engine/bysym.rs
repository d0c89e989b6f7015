//! Values keyed by one symbol, found through the symbol itself instead of a hash table: what a
//! rule keyed on one field keeps its windows in (`window::Windows::Direct`), and a group its
//! hosts (`shared::Group`).
//!
//! A symbol is an index into the interner's slots (live strings, and freed ones awaiting
//! reuse), so symbols are dense: an array of 4-byte places indexed by symbol is about as long
//! as the strings interned — under 0.5 MB for the benchmark's 110,000 strings (90,283 numbers,
//! 20,000 debtors), a size the processor's caches keep — and names where the value sits in a
//! second array that holds only values.
//! Finding a value reads its place, nearly always from the cache, then the value: one read of
//! the large array, where a table read the key's line and then the value's, each a miss (and a
//! page walk) in an array the size of the state. A removed value's place is taken by the next
//! value added, and free places at the end are given back, so the values take the room of the
//! most there were at once, plus 4 bytes a symbol and 4 a value: less than a table's slots at
//! its load. Measured in docs/performance.md, "Windows and hosts found by their symbol".

use super::intern::Sym;
use super::table::{Chunked, SHARDS};

/// `at`'s mark for a symbol with no value.
const NONE: u32 = u32::MAX;

/// Values of type `V` by symbol. `V::default()` is an empty value, which a value left
/// empty by its owner is not required to be: [`BySym::get`] finds whatever was put.
pub(super) struct BySym<V> {
    /// Symbol → index in `vals`, or [`NONE`]. It grows by a quarter (a copy of 4 bytes a
    /// symbol: under 0.5 MB for the benchmark's 110,000 strings).
    at: Vec<u32>,
    /// In chunks, so growing moves no value: a pre-dial check waits on no copy of the state
    /// (docs/architecture.md, "No pauses of the whole state").
    vals: Chunked<V>,
    /// Index in `vals` → its symbol ([`Sym::NONE`] for a free place).
    syms: Vec<Sym>,
    /// Free places in `vals`.
    free: Vec<u32>,
}

impl<V> Default for BySym<V> {
    fn default() -> Self {
        BySym {
            at: Vec::new(),
            vals: Chunked::default(),
            syms: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<V: Default> BySym<V> {
    #[inline]
    fn place(&self, k: Sym) -> Option<usize> {
        match self.at.get(k.0 as usize) {
            Some(&i) if i != NONE => Some(i as usize),
            _ => None,
        }
    }

    /// The value of `k`, if any.
    #[inline]
    pub fn get(&self, k: Sym) -> Option<&V> {
        self.place(k).map(|i| &self.vals[i])
    }

    /// The value of `k`, if any, to change.
    #[inline]
    pub fn get_mut(&mut self, k: Sym) -> Option<&mut V> {
        self.place(k).map(|i| &mut self.vals[i])
    }

    /// Asks for the value of `k` without waiting for it (its place is read now: an array the
    /// caches keep).
    #[inline]
    pub fn prefetch(&self, k: Sym) {
        if let Some(i) = self.place(k) {
            super::prefetch(&self.vals[i]);
        }
    }

    /// Asks for the place of `k` (its word in `at`) without waiting for it: a step before
    /// [`BySym::prefetch`], which reads it.
    #[inline]
    pub fn prefetch_place(&self, k: Sym) {
        if let Some(a) = self.at.get(k.0 as usize) {
            super::prefetch(a);
        }
    }

    /// The value of `k`, made (`V::default()`) if there is none. `k` is not [`Sym::NONE`]: a
    /// rule whose key field a call lacks skips the call before it looks for a window, so a
    /// `NONE` here is a bug, and stops with one clear message rather than an array of 2^32
    /// places.
    #[inline]
    pub fn entry(&mut self, k: Sym) -> &mut V {
        let i = match self.place(k) {
            Some(i) => i,
            None => self.add(k),
        };
        &mut self.vals[i]
    }

    #[cold]
    fn add(&mut self, k: Sym) -> usize {
        assert!(!k.is_none(), "a value keyed by no symbol");
        let s = k.0 as usize;
        if s >= self.at.len() {
            // A quarter more than needed: interning adds symbols one at a time.
            let want = s + 1;
            self.at
                .reserve_exact((want + want / 4).saturating_sub(self.at.len()));
            self.at.resize(want, NONE);
        }
        let i = match self.free.pop() {
            Some(i) => {
                self.syms[i as usize] = k;
                i as usize
            }
            None => {
                self.vals.push(V::default());
                self.syms.push(k);
                self.vals.len() - 1
            }
        };
        self.at[s] = i as u32;
        i
    }

    /// Drops the value of `k`, if any.
    pub fn remove(&mut self, k: Sym) {
        if let Some(i) = self.place(k) {
            self.free_at(i);
        }
    }

    fn free_at(&mut self, i: usize) {
        let k = std::mem::replace(&mut self.syms[i], Sym::NONE);
        self.at[k.0 as usize] = NONE;
        self.vals[i] = V::default();
        self.free.push(i as u32);
    }

    /// Keeps the values of `shard` (every [`SHARDS`]th place, from `shard`) that `f` says to
    /// keep, calling `ahead` on the value `ahead_by` places on first so that what `f` reads
    /// of it can be asked for; returns how many values it looked at.
    pub fn retain_shard(
        &mut self,
        shard: usize,
        ahead_by: usize,
        ahead: impl Fn(&V),
        mut f: impl FnMut(&mut V) -> bool,
    ) -> usize {
        let mut n = 0;
        let mut i = shard;
        while i < self.vals.len() {
            let a = i + ahead_by * SHARDS;
            if a < self.vals.len() && !self.syms[a].is_none() {
                ahead(&self.vals[a]);
            }
            if !self.syms[i].is_none() {
                n += 1;
                if !f(&mut self.vals[i]) {
                    self.free_at(i);
                }
            }
            i += SHARDS;
        }
        self.trim();
        n
    }

    /// Gives back the free places at the end of the values (a chunk at a time, as they
    /// empty). Places in the middle stay, to be taken again: the values' memory is that of
    /// the most there were, less what the end gave back.
    fn trim(&mut self) {
        let before = self.vals.len();
        while self.syms.last().is_some_and(|s| s.is_none()) {
            self.syms.pop();
            self.vals.pop();
        }
        if self.vals.len() < before {
            let n = self.vals.len();
            self.free.retain(|&i| (i as usize) < n);
        }
    }

    /// Values held.
    pub fn len(&self) -> usize {
        self.vals.len() - self.free.len()
    }

    /// Every value with its symbol, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (Sym, &V)> {
        self.syms
            .iter()
            .zip(self.vals.iter())
            .filter(|(k, _)| !k.is_none())
            .map(|(k, v)| (*k, v))
    }

    /// Heap bytes of the arrays (not what the values hold).
    pub fn heap_bytes(&self) -> usize {
        self.at.capacity() * 4
            + self.vals.capacity() * std::mem::size_of::<V>()
            + self.syms.capacity() * 4
            + self.free.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        Put(u32, u32),
        Remove(u32),
        /// Keeps, in one shard, the values that are even.
        KeepEven(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u32..300, any::<u32>()).prop_map(|(k, v)| Op::Put(k, v)),
            (0u32..300).prop_map(Op::Remove),
            (0usize..SHARDS).prop_map(Op::KeepEven),
        ]
    }

    proptest! {
        /// Whatever is put, removed and sifted, it holds what a map by symbol would.
        #[test]
        fn holds_what_a_map_would(ops in proptest::collection::vec(op(), 0..400)) {
            let mut m: BySym<u32> = BySym::default();
            let mut model: BTreeMap<u32, u32> = BTreeMap::new();
            for o in ops {
                match o {
                    Op::Put(k, v) => {
                        *m.entry(Sym(k)) = v;
                        model.insert(k, v);
                    }
                    Op::Remove(k) => {
                        m.remove(Sym(k));
                        model.remove(&k);
                    }
                    Op::KeepEven(shard) => {
                        // Which symbols' values sit in the shard is the map's own business:
                        // the model learns it from what the map looks at.
                        let mut looked = Vec::new();
                        let n = m.retain_shard(shard, 2, |_| {}, |v| {
                            looked.push(*v);
                            *v % 2 == 0
                        });
                        prop_assert_eq!(n, looked.len());
                        let held: Vec<(u32, u32)> = m.iter().map(|(k, v)| (k.0, *v)).collect();
                        // Nothing odd looked at is left; everything not looked at is.
                        for (k, v) in model.clone() {
                            if v % 2 == 1 && !held.contains(&(k, v)) {
                                prop_assert!(looked.contains(&v));
                                model.remove(&k);
                            }
                        }
                    }
                }
                prop_assert_eq!(m.len(), model.len());
                for (k, v) in &model {
                    prop_assert_eq!(m.get(Sym(*k)), Some(v));
                }
                let mut held: Vec<(u32, u32)> = m.iter().map(|(k, v)| (k.0, *v)).collect();
                held.sort();
                prop_assert_eq!(held, model.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn every_shard_once_looks_at_every_value_once() {
        let mut m: BySym<u32> = BySym::default();
        for k in 0..1000u32 {
            *m.entry(Sym(k * 7 % 1013)) = k;
        }
        let mut seen = 0;
        for shard in 0..SHARDS {
            seen += m.retain_shard(shard, 8, |_| {}, |_| true);
        }
        assert_eq!(seen, 1000);
        assert_eq!(m.get(Sym(7)), Some(&1));
        // Symbols never given a value, inside the places' array and past its end.
        let given: std::collections::HashSet<u32> = (0..1000u32).map(|k| k * 7 % 1013).collect();
        let never = (0..1013u32)
            .find(|s| !given.contains(s))
            .expect("13 symbols left out");
        assert_eq!(m.get(Sym(never)), None);
        assert_eq!(m.get(Sym(5000)), None);
        // Values took places in the order they came (value k at place k), so shard 3 holds
        // places 3, 67, …, 963: sixteen values, all dropped here, and no other.
        assert_eq!(m.retain_shard(3, 8, |_| {}, |_| false), 16);
        assert_eq!(m.len(), 1000 - 16);
        assert_eq!(m.get(Sym(7)), Some(&1));
        // (Value k is symbol 7k, below 1013 for these.)
        assert_eq!(m.get(Sym(21)), None);
        assert_eq!(m.get(Sym(28)), Some(&4));
        // Freed places are taken again.
        *m.entry(Sym(21)) = 3;
        assert_eq!(m.len(), 1000 - 15);
        assert_eq!(m.get(Sym(21)), Some(&3));
    }
}
