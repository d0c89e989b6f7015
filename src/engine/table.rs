//! A hash table of `u32`s (the interner's symbols) keyed by a hash the caller computes, in
//! [`SHARDS`] tables. One table of the whole state stalled the engine thread for as long as
//! doubling it took — rehashing reads the key of every entry, a cache miss each: 17 ms for the
//! interner at 300,000 strings. A shard grows by 1/64 of that at a time. (The dedup table,
//! which the engine thread prefetches ahead, is `tagged::Tagged`, sharded alike.)

use hashbrown::HashTable;

/// Shards of each table (and of a rule's window map, `window::Windows`).
pub(super) const SHARDS: usize = 64;

/// Bits of the hash that choose the shard: neither the tables' bucket index (the low bits)
/// nor their control bytes (the top seven; `tagged`'s tag, the top eight) use them.
const SHIFT: u32 = 40;

/// The shard of a hash, here and in `tagged::Tagged`.
#[inline]
pub(super) fn shard_of_hash(h: u64) -> usize {
    (h >> SHIFT) as usize % SHARDS
}

/// Inline, so a probe chases no more pointers than one table did.
pub(super) struct Sharded([HashTable<u32>; SHARDS]);

impl Default for Sharded {
    fn default() -> Sharded {
        Sharded(std::array::from_fn(|_| HashTable::new()))
    }
}

impl Sharded {
    /// The value with hash `h` for which `eq` holds.
    #[inline]
    pub fn find(&self, h: u64, eq: impl FnMut(&u32) -> bool) -> Option<u32> {
        self.0[shard_of_hash(h)].find(h, eq).copied()
    }

    /// Adds `v`, whose key hashes to `h`; `hash` hashes a value's key and `warm` prefetches
    /// it, to grow. A full shard grows here rather than in hashbrown, which rehashes the values
    /// one after another, each key a cache miss that waits for the one before: here the keys
    /// of the values [`REBUILD_AHEAD`] further on are prefetched, so those misses overlap.
    #[inline]
    pub fn insert(&mut self, h: u64, v: u32, hash: impl Fn(&u32) -> u64, warm: impl Fn(&u32)) {
        let t = &mut self.0[shard_of_hash(h)];
        if t.len() == t.capacity() {
            grow(t, &hash, warm);
        }
        t.insert_unique(h, v, hash);
    }

    /// Removes `v`, whose key hashes to `h`.
    #[inline]
    pub fn remove(&mut self, h: u64, v: u32) {
        if let Ok(e) = self.0[shard_of_hash(h)].find_entry(h, |&x| x == v) {
            e.remove();
        }
    }

    /// Slots allocated.
    pub fn capacity(&self) -> usize {
        self.0.iter().map(HashTable::capacity).sum()
    }
}

/// Values ahead whose keys a table being rebuilt prefetches ([`each_warmed`]).
const REBUILD_AHEAD: usize = 8;

/// Calls `f` on each of `values` in order, having asked `warm` for the key of the value
/// [`REBUILD_AHEAD`] further on: a rebuild hashes every key, each a cache miss, and these
/// overlap instead of following one another (here and in `tagged`).
pub(super) fn each_warmed(values: &[u32], warm: impl Fn(&u32), mut f: impl FnMut(u32)) {
    for v in values.iter().take(REBUILD_AHEAD) {
        warm(v);
    }
    for (i, v) in values.iter().enumerate() {
        if let Some(next) = values.get(i + REBUILD_AHEAD) {
            warm(next);
        }
        f(*v);
    }
}

/// Rebuilds a full table with room for one more value: the size hashbrown would grow it to
/// (its buckets doubled, or fewer where removals had left it full of tombstones).
#[cold]
fn grow(t: &mut HashTable<u32>, hash: &impl Fn(&u32) -> u64, warm: impl Fn(&u32)) {
    let old: Vec<u32> = t.drain().collect();
    let mut new = HashTable::with_capacity(old.len() + 1);
    each_warmed(&old, warm, |v| {
        new.insert_unique(hash(&v), v, hash);
    });
    *t = new;
}

/// Items in chunks of [`CHUNK`]: growing never moves what is there (a `Vec` doubling copies
/// it all, and faults in twice its size of fresh pages at once).
pub(super) struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

const CHUNK: usize = 4096;

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    pub fn push(&mut self, v: T) {
        if self.len == self.capacity() {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks[self.len / CHUNK].push(v);
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn capacity(&self) -> usize {
        self.chunks.len() * CHUNK
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }
}

impl<T> std::ops::Index<usize> for Chunked<T> {
    type Output = T;
    #[inline]
    fn index(&self, i: usize) -> &T {
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl<T> std::ops::IndexMut<usize> for Chunked<T> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values are found in their shard, whatever bits their hashes differ in, through every
    /// growth (of tables full of values, and of tables left full of removed ones), and removed
    /// values are gone.
    #[test]
    fn finds_what_it_holds_and_not_what_it_removed() {
        let hash = |v: &u32| (*v as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let warm = |_: &u32| {};
        let mut t = Sharded::default();
        for v in 0..10_000u32 {
            t.insert(hash(&v), v, hash, warm);
        }
        for v in (0..10_000u32).step_by(2) {
            t.remove(hash(&v), v);
        }
        for v in 20_000..25_000u32 {
            t.insert(hash(&v), v, hash, warm);
        }
        for v in (0..10_000u32).chain(20_000..25_000) {
            assert_eq!(
                t.find(hash(&v), |&x| x == v),
                (v % 2 == 1 || v >= 20_000).then_some(v),
                "{v}"
            );
        }
        assert!(t.0.iter().filter(|s| !s.is_empty()).count() > SHARDS / 2);
    }

    #[test]
    fn chunked_holds_items_in_order_across_chunks() {
        let mut c = Chunked::default();
        for v in 0..(3 * CHUNK + 5) {
            c.push(v);
        }
        c[CHUNK] = 7;
        assert_eq!(c.len(), 3 * CHUNK + 5);
        assert_eq!(c.capacity(), 4 * CHUNK);
        assert_eq!(
            (c[0], c[CHUNK], c[CHUNK + 1], c[3 * CHUNK + 4]),
            (0, 7, CHUNK + 1, 3 * CHUNK + 4)
        );
        assert!(c
            .iter()
            .enumerate()
            .all(|(i, v)| *v == if i == CHUNK { 7 } else { i }));
    }
}
