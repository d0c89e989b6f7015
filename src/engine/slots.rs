//! A map from 8-byte keys to values by open addressing: linear probing, the keys in one array
//! and the values in another at the same index. It is what a rule keyed on one or two fields
//! keeps its windows in (`window::Windows`).
//!
//! Why not hashbrown's: there, a key's bucket is known only after its control bytes are read,
//! so a lookup of a key out of the cache waits for two misses, one after the other. Here a
//! key's home slot follows from its hash alone, and its key and its value are read at once
//! (the value's load does not wait for the key's compare): one miss's wait in the usual case,
//! where the key is in its home slot. Keys are probed in their own array, eight to a cache
//! line, so the longer probes of a full table cost little; a slot is 8 + `size_of::<V>()`
//! bytes, as hashbrown's is (with its control byte), at the same highest load (7/8).
//!
//! Measured (docs/performance.md, "Alerts written faster, windows in our own table"): +3.6%
//! calls/s for `config/bench.toml` (ten stateful rules), within noise for the default policy
//! (+1%) and the reference rules, the same memory.
//! Prefetching the home slots a dozen calls ahead as well added nothing then (the engine
//! thread's outstanding misses were already as many as the core keeps); with hosts of one
//! allocation, asking for the home slots of a call's hosts and own windows two calls before
//! `Engine::warm` reads them gave +3% and +9.5% more for the default policy
//! (`Slots::prefetch`; docs/performance.md, "One allocation a host, and the slots asked for before
//! warm").

/// The key an empty slot holds. A packed window key is never this: its first symbol is
/// `Sym::NONE` (`u32::MAX`) only for a rule with no key, whose second is `NONE` too.
pub(super) const EMPTY: u64 = 0xFFFF_FFFF_0000_0000;

/// How many slots on [`Slots::retain_ahead`] asks for a value's memory.
pub(super) const RETAIN_AHEAD: usize = 8;

/// Slots of the smallest table.
const MIN_SLOTS: usize = 8;

pub(super) struct Slots<V> {
    keys: Box<[u64]>,
    vals: Box<[V]>,
    len: usize,
}

impl<V> Default for Slots<V> {
    fn default() -> Self {
        Slots {
            keys: Box::new([]),
            vals: Box::new([]),
            len: 0,
        }
    }
}

/// The hash a key's home slot comes from: its low bits (the window map's shard is chosen by
/// the top bits of another product, so the two do not correlate).
#[inline]
fn hash(k: u64) -> u64 {
    let x = (k ^ (k >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^ (x >> 32)
}

/// The fewest slots (a power of two) that hold `n` keys within the highest load.
fn slots_for(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    (n * 8).div_ceil(7).next_power_of_two().max(MIN_SLOTS)
}

impl<V: Default> Slots<V> {
    fn mask(&self) -> usize {
        self.keys.len().wrapping_sub(1)
    }

    /// The slot of `k`, if it is here.
    #[inline]
    fn find(&self, k: u64) -> Option<usize> {
        debug_assert_ne!(k, EMPTY);
        if self.keys.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = hash(k) as usize & mask;
        loop {
            match self.keys[i] {
                x if x == k => return Some(i),
                EMPTY => return None,
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Asks for the home slot of `k` (its key and its value) without waiting for them.
    #[inline]
    pub fn prefetch(&self, k: u64) {
        if !self.keys.is_empty() {
            let i = hash(k) as usize & self.mask();
            super::prefetch(&self.keys[i]);
            super::prefetch(&self.vals[i]);
        }
    }

    #[inline]
    pub fn get(&self, k: u64) -> Option<&V> {
        self.find(k).map(|i| &self.vals[i])
    }

    #[inline]
    pub fn get_mut(&mut self, k: u64) -> Option<&mut V> {
        self.find(k).map(|i| &mut self.vals[i])
    }

    /// The value of `k`, added as `V::default()` if there is none.
    #[inline]
    pub fn entry(&mut self, k: u64) -> &mut V {
        let i = match self.find(k) {
            Some(i) => i,
            None => {
                if (self.len + 1) * 8 > self.keys.len() * 7 {
                    self.resize(slots_for(self.len + 1).max(self.keys.len() * 2));
                }
                self.place(k, V::default())
            }
        };
        &mut self.vals[i]
    }

    /// Puts a key known to be absent into the first empty slot from its home (room checked).
    fn place(&mut self, k: u64, v: V) -> usize {
        let mask = self.mask();
        let mut i = hash(k) as usize & mask;
        while self.keys[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.keys[i] = k;
        self.vals[i] = v;
        self.len += 1;
        i
    }

    /// Moves every key to a table of `n` slots.
    fn resize(&mut self, n: usize) {
        let keys = std::mem::replace(&mut self.keys, vec![EMPTY; n].into_boxed_slice());
        let vals = std::mem::replace(
            &mut self.vals,
            (0..n)
                .map(|_| V::default())
                .collect::<Vec<V>>()
                .into_boxed_slice(),
        );
        self.len = 0;
        for (k, v) in keys.into_vec().into_iter().zip(vals.into_vec()) {
            if k != EMPTY {
                self.place(k, v);
            }
        }
    }

    /// Drops `k` and its value.
    pub fn remove(&mut self, k: u64) {
        if let Some(i) = self.find(k) {
            self.remove_at(i);
        }
    }

    /// Empties slot `i`, and moves back the keys after it that it was keeping from their
    /// home (backward-shift deletion: no tombstones, so lookups never probe past them).
    fn remove_at(&mut self, mut i: usize) {
        let mask = self.mask();
        self.keys[i] = EMPTY;
        self.vals[i] = V::default();
        self.len -= 1;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let k = self.keys[j];
            if k == EMPTY {
                return;
            }
            let home = hash(k) as usize & mask;
            // The key at j may move to i when i is on its way from home to j.
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(i) & mask) {
                self.keys[i] = k;
                self.keys[j] = EMPTY;
                self.vals[i] = std::mem::take(&mut self.vals[j]);
                i = j;
            }
        }
    }

    /// Keeps the values `f` says to keep; returns how many there were.
    #[cfg(test)]
    pub fn retain(&mut self, f: impl FnMut(&mut V) -> bool) -> usize {
        self.retain_ahead(|_| {}, f)
    }

    /// [`Slots::retain`], calling `ahead` on the value [`RETAIN_AHEAD`] full slots on before
    /// `f` on each: the values' own memory (a host's buffer) is elsewhere, one miss each, and
    /// asked for one after the other they were waited for one after the other.
    pub fn retain_ahead(&mut self, ahead: impl Fn(&V), mut f: impl FnMut(&mut V) -> bool) -> usize {
        let n = self.len;
        if n == 0 {
            return 0;
        }
        let mask = self.mask();
        // From just after an empty slot, once round: a removal moves keys back only within
        // their run of full slots, which never crosses the empty one, so every key is looked
        // at once (a key moved into the slot just emptied is looked at next).
        let start = self
            .keys
            .iter()
            .position(|&k| k == EMPTY)
            .expect("never full");
        let mut step = 1;
        while step < self.keys.len() {
            let i = (start + step) & mask;
            let a = (i + RETAIN_AHEAD) & mask;
            if self.keys[a] != EMPTY {
                ahead(&self.vals[a]);
            }
            if self.keys[i] != EMPTY && !f(&mut self.vals[i]) {
                self.remove_at(i);
            } else {
                step += 1;
            }
        }
        n
    }

    /// Gives memory back when few slots are used (as `window::shrink` does for hashbrown).
    pub fn shrink(&mut self) {
        if self.keys.len() > 64 && self.len < self.keys.len() / 4 {
            self.resize(slots_for(self.len));
        }
    }

    /// Makes room for `n` more keys.
    pub fn reserve(&mut self, n: usize) {
        let want = slots_for(self.len + n);
        if want > self.keys.len() {
            self.resize(want);
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Slots allocated.
    pub fn capacity(&self) -> usize {
        self.keys.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        self.keys
            .iter()
            .zip(self.vals.iter())
            .filter(|(k, _)| **k != EMPTY)
            .map(|(k, v)| (*k, v))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    enum Op {
        Add(u64, u32),
        Remove(u64),
        Retain(u32),
        Shrink,
        Reserve(usize),
    }

    fn op(keys: u64) -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..keys, any::<u32>()).prop_map(|(k, v)| Op::Add(k, v)),
            3 => (0..keys).prop_map(Op::Remove),
            1 => (1u32..5).prop_map(Op::Retain),
            1 => Just(Op::Shrink),
            1 => (0usize..300).prop_map(Op::Reserve),
        ]
    }

    proptest! {
        /// Any sequence of additions, removals, retains, shrinks and reservations leaves the
        /// table holding what a `HashMap` given the same operations holds. Few distinct keys
        /// (spread so that their home slots collide and runs wrap round the end), and keys
        /// beside `EMPTY`.
        #[test]
        fn agrees_with_a_hash_map(ops in proptest::collection::vec(op(400), 1..600)) {
            let key = |k: u64| if k % 7 == 0 { EMPTY - 1 - k } else { k << 32 | (k * 13) };
            let mut t: Slots<u32> = Slots::default();
            let mut m: HashMap<u64, u32> = HashMap::new();
            for o in ops {
                match o {
                    Op::Add(k, v) => {
                        *t.entry(key(k)) += v % 1000;
                        *m.entry(key(k)).or_default() += v % 1000;
                    }
                    Op::Remove(k) => {
                        t.remove(key(k));
                        m.remove(&key(k));
                    }
                    Op::Retain(d) => {
                        let before = t.retain(|v| *v % d != 0);
                        prop_assert_eq!(before, m.len());
                        m.retain(|_, v| *v % d != 0);
                    }
                    Op::Shrink => t.shrink(),
                    Op::Reserve(n) => t.reserve(n),
                }
                prop_assert_eq!(t.len(), m.len());
                prop_assert!(t.len() * 8 <= t.capacity() * 7);
            }
            for (k, v) in &m {
                prop_assert_eq!(t.get(*k), Some(v));
            }
            let mut got: Vec<(u64, u32)> = t.iter().map(|(k, v)| (k, *v)).collect();
            let mut want: Vec<(u64, u32)> = m.into_iter().collect();
            got.sort_unstable();
            want.sort_unstable();
            prop_assert_eq!(got, want);
            for k in 0..400 {
                prop_assert_eq!(t.get(key(k)).is_some(), t.iter().any(|(x, _)| x == key(k)));
            }
        }
    }
}
