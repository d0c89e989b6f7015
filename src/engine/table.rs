//! What the engine's tables share: the shard of a hash (the dedup table and the interner's,
//! `tagged::Tagged`, are [`SHARDS`] tables each — one table of the whole state stalled the
//! engine thread for as long as doubling it took, 17 ms for the interner at 300,000 strings,
//! and a shard grows by 1/64 of that at a time), rebuilds that prefetch keys ahead, and
//! chunked storage.

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

    /// Takes the last item off; a chunk left empty is given back.
    pub fn pop(&mut self) -> Option<T> {
        let last = self.chunks.last_mut()?;
        let v = last.pop()?;
        self.len -= 1;
        if last.is_empty() {
            self.chunks.pop();
        }
        Some(v)
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
