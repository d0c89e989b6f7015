//! The dedup table (record slots by the hash of their call id) and the interner's (symbols by
//! the hash of their string): [`SHARDS`] tables of open addressing by linear probing — a
//! one-byte tag per bucket, apart from the 4-byte values.
//!
//! Why not hashbrown's (which both were): there a key's bucket is known only once its control
//! bytes are read, so [`super::Engine::warm`], which reads the state a call a few ahead will
//! touch, had to *load* the dedup probe's control group to bring it in — and stalled on it (a
//! third of `warm`'s samples). Here a key's home bucket follows from its hash alone:
//! [`Tagged::prefetch`] asks for its tag's and its value's lines without waiting for either
//! (`warm` for the dedup probe; a decoder thread, calls ahead, for a string its memo does not
//! name). A bucket is the same 5 bytes as hashbrown's, at the same highest load
//! (7/8, removed values counted until a rebuild clears them).

use super::table::{each_warmed, shard_of_hash, SHARDS};

/// A bucket never used since the last rebuild: a probe stops here.
const EMPTY: u8 = 0;
/// A bucket whose value was removed: a probe goes on past it; an insert may reuse it.
const DEAD: u8 = 1;
/// Buckets of the smallest table.
const MIN_BUCKETS: usize = 16;

/// A hash's tag: its top byte, kept clear of [`EMPTY`] and [`DEAD`].
#[inline]
fn tag(h: u64) -> u8 {
    ((h >> 56) as u8).max(DEAD + 1)
}

/// The fewest buckets (a power of two) that hold `n` values within the highest load.
fn buckets_for(n: usize) -> usize {
    (n * 8).div_ceil(7).next_power_of_two().max(MIN_BUCKETS)
}

#[derive(Default)]
struct Shard {
    tags: Box<[u8]>,
    vals: Box<[u32]>,
    len: usize,
    dead: usize,
}

impl Shard {
    #[inline]
    fn mask(&self) -> usize {
        self.tags.len().wrapping_sub(1)
    }

    /// The bucket of the value with hash `h` for which `eq` holds.
    #[inline]
    fn find(&self, h: u64, mut eq: impl FnMut(&u32) -> bool) -> Option<usize> {
        if self.tags.is_empty() {
            return None;
        }
        let (mask, t) = (self.mask(), tag(h));
        let mut i = h as usize & mask;
        // Terminates: a table always keeps an empty bucket (`insert` rebuilds before the last).
        loop {
            match self.tags[i] {
                EMPTY => return None,
                x if x == t && eq(&self.vals[i]) => return Some(i),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Places `v` in the first empty or dead bucket from its home; room is the caller's.
    #[inline]
    fn put(&mut self, h: u64, v: u32) {
        let mask = self.mask();
        let mut i = h as usize & mask;
        while self.tags[i] > DEAD {
            i = (i + 1) & mask;
        }
        if self.tags[i] == DEAD {
            self.dead -= 1;
        }
        self.tags[i] = tag(h);
        self.vals[i] = v;
        self.len += 1;
    }

    /// Rebuilds the table with `buckets` buckets and no dead ones, the keys of the values a few
    /// further on prefetched (`warm`, [`each_warmed`]) so that their misses overlap.
    fn rebuild(&mut self, buckets: usize, hash: &impl Fn(&u32) -> u64, warm: &impl Fn(&u32)) {
        let live: Vec<u32> = self
            .tags
            .iter()
            .zip(self.vals.iter())
            .filter(|(t, _)| **t > DEAD)
            .map(|(_, v)| *v)
            .collect();
        self.tags = vec![EMPTY; buckets].into_boxed_slice();
        self.vals = vec![0; buckets].into_boxed_slice();
        self.len = 0;
        self.dead = 0;
        each_warmed(&live, warm, |v| self.put(hash(&v), v));
    }

    fn insert(&mut self, h: u64, v: u32, hash: impl Fn(&u32) -> u64, warm: impl Fn(&u32)) {
        let buckets = self.tags.len();
        let most = buckets / 8 * 7;
        if self.len + self.dead + 1 > most {
            // As hashbrown grows: in place when removals fill it (live values at most half the
            // room), else to double the buckets.
            let to = if self.len < most / 2 {
                buckets.max(MIN_BUCKETS)
            } else {
                buckets_for((self.len + 1).max(most + 1))
            };
            self.rebuild(to, &hash, &warm);
        }
        self.put(h, v);
    }

    fn remove(&mut self, h: u64, v: u32) {
        let Some(i) = self.find(h, |&x| x == v) else {
            return;
        };
        let mask = self.mask();
        self.len -= 1;
        if self.tags[(i + 1) & mask] != EMPTY {
            self.tags[i] = DEAD;
            self.dead += 1;
            return;
        }
        // The end of a run: no probe goes past it, so it and the dead buckets just before it
        // become empty (a probe for a value still here never needed them).
        self.tags[i] = EMPTY;
        let mut j = i.wrapping_sub(1) & mask;
        while self.tags[j] == DEAD {
            self.tags[j] = EMPTY;
            self.dead -= 1;
            j = j.wrapping_sub(1) & mask;
        }
    }
}

/// The dedup table (see the module's documentation).
pub(super) struct Tagged([Shard; SHARDS]);

impl Default for Tagged {
    fn default() -> Tagged {
        Tagged(std::array::from_fn(|_| Shard::default()))
    }
}

impl Tagged {
    /// The value with hash `h` for which `eq` holds.
    #[inline]
    pub fn find(&self, h: u64, eq: impl FnMut(&u32) -> bool) -> Option<u32> {
        let s = &self.0[shard_of_hash(h)];
        s.find(h, eq).map(|i| s.vals[i])
    }

    /// Starts loading the home bucket of hash `h` (its tag and its value), without waiting.
    #[inline]
    pub fn prefetch(&self, h: u64) {
        let s = &self.0[shard_of_hash(h)];
        if !s.tags.is_empty() {
            let i = h as usize & s.mask();
            super::prefetch(&s.tags[i]);
            super::prefetch(&s.vals[i]);
        }
    }

    /// Adds `v`, whose key hashes to `h` (not here yet); `hash` hashes a value's key and
    /// `warm` prefetches it, for a rebuild.
    #[inline]
    pub fn insert(&mut self, h: u64, v: u32, hash: impl Fn(&u32) -> u64, warm: impl Fn(&u32)) {
        self.0[shard_of_hash(h)].insert(h, v, hash, warm);
    }

    /// Removes `v`, whose key hashes to `h`.
    #[inline]
    pub fn remove(&mut self, h: u64, v: u32) {
        self.0[shard_of_hash(h)].remove(h, v);
    }

    /// Gives memory back from shard `i` when few of its buckets are used.
    pub fn shrink(&mut self, i: usize, hash: impl Fn(&u32) -> u64, warm: impl Fn(&u32)) {
        let s = &mut self.0[i];
        if s.tags.len() > 64 && s.len < s.tags.len() / 4 {
            s.rebuild(buckets_for(s.len), &hash, &warm);
        }
    }

    /// Buckets allocated (5 bytes each).
    pub fn buckets(&self) -> usize {
        self.0.iter().map(|s| s.tags.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32),
        Remove(u32),
        Shrink(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u32..600).prop_map(Op::Insert),
            3 => (0u32..600).prop_map(Op::Remove),
            1 => (0usize..SHARDS).prop_map(Op::Shrink),
        ]
    }

    proptest! {
        /// Any sequence of inserts, removals and shrinks leaves the table holding exactly what
        /// a map given the same operations holds, found by their hashes — with hashes that
        /// collide (few distinct homes and tags, few shards) so that runs form, values are
        /// removed from their middles and ends, and dead buckets are reused and cleared.
        #[test]
        fn holds_what_a_map_holds(ops in proptest::collection::vec(op(), 1..3000), spread in 0u32..3) {
            // The key of value v is v; its hash keeps `spread`'s worth of bits in each part: the
            // home bucket (low bits), the shard (from bit 40) and the tag (the top byte).
            let bits = [3u32, 6, 20][spread as usize];
            let hash = move |v: &u32| {
                let x = (*v as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
                let m = (1u64 << bits) - 1;
                (x & m) | ((x >> 8) & m) << 40 | ((x >> 16) & m & 0xFF) << 56
            };
            let warm = |_: &u32| {};
            let mut t = Tagged::default();
            let mut m: HashMap<u32, ()> = HashMap::new();
            for o in ops {
                match o {
                    Op::Insert(v) => {
                        if m.insert(v, ()).is_none() {
                            t.insert(hash(&v), v, hash, warm);
                        }
                    }
                    Op::Remove(v) => {
                        m.remove(&v);
                        t.remove(hash(&v), v);
                    }
                    Op::Shrink(i) => t.shrink(i, hash, warm),
                }
            }
            for v in 0u32..600 {
                prop_assert_eq!(t.find(hash(&v), |&x| x == v), m.contains_key(&v).then_some(v), "{}", v);
            }
            let len: usize = t.0.iter().map(|s| s.len).sum();
            prop_assert_eq!(len, m.len());
            for s in &t.0 {
                let live = s.tags.iter().filter(|&&x| x > DEAD).count();
                let dead = s.tags.iter().filter(|&&x| x == DEAD).count();
                prop_assert_eq!((live, dead), (s.len, s.dead));
                prop_assert!(s.tags.is_empty() || s.tags.contains(&EMPTY), "an empty bucket is left");
            }
        }
    }

    /// Growth to many values and removal of half of them, then a shrink: what is left is
    /// found, what was removed is not, and the table is smaller.
    #[test]
    fn grows_and_shrinks() {
        let hash = |v: &u32| (*v as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let warm = |_: &u32| {};
        let mut t = Tagged::default();
        for v in 0..50_000u32 {
            t.insert(hash(&v), v, hash, warm);
        }
        let full = t.buckets();
        for v in 0..50_000u32 {
            if v % 8 != 0 {
                t.remove(hash(&v), v);
            }
        }
        for i in 0..SHARDS {
            t.shrink(i, hash, warm);
        }
        assert!(t.buckets() < full / 2, "{} of {full}", t.buckets());
        for v in 0..50_000u32 {
            assert_eq!(t.find(hash(&v), |&x| x == v), (v % 8 == 0).then_some(v));
        }
    }
}
