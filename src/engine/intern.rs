//! A reference-counted string interner: the strings of retained calls (debtor ids, phone
//! numbers, accounts…) repeat across many calls, so each is stored once and calls hold 4-byte
//! symbols. A string is freed when the last call that holds it is evicted.

use super::event::{Call, StrField};
use compact_str::CompactString;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A symbol: an index into the interner. [`Sym::NONE`] stands for an absent field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sym(pub u32);

impl Sym {
    /// No value.
    pub const NONE: Sym = Sym(u32::MAX);

    /// Whether this is [`Sym::NONE`].
    pub fn is_none(self) -> bool {
        self == Sym::NONE
    }
}

struct Slot {
    /// Inline up to 24 bytes: a lookup hit compares without another cache miss.
    text: CompactString,
    refs: u32,
}

/// The interner.
pub struct Interner {
    table: super::tagged::Tagged,
    slots: super::table::Chunked<Slot>,
    free: Vec<u32>,
    hasher: foldhash::fast::FixedState,
    live_bytes: usize,
    /// The call fields interned, one bit per `StrField as usize`; the others are left
    /// `Sym::NONE` ([`Interner::keep_only`]).
    keep: u8,
}

impl Default for Interner {
    fn default() -> Self {
        Interner {
            table: Default::default(),
            slots: Default::default(),
            free: Vec::new(),
            hasher: Default::default(),
            live_bytes: 0,
            keep: ALL_FIELDS,
        }
    }
}

/// Whether field `f` is interned under mask `keep`.
#[inline]
fn keeps(keep: u8, f: StrField) -> bool {
    f != StrField::EventId && keep & (1 << f as u8) != 0
}

/// Every string field but `event_id`.
pub(super) const ALL_FIELDS: u8 = 0x7F;

impl Interner {
    fn hash(&self, s: &str) -> u64 {
        self.hasher.hash_one(s)
    }

    /// Returns the symbol for `s`, adding one reference.
    pub fn intern(&mut self, s: &str) -> Sym {
        let h = self.hash(s);
        self.intern_hashed(h, s)
    }

    /// [`Interner::intern`] through a decoder's memo, for `s` of hash `h`: a symbol
    /// remembered for `s` is checked against its slot (still live, same text) and taken with
    /// one read, instead of a table probe that reads three places.
    fn intern_memo_hashed(&mut self, memo: &mut InternMemo, h: u64, s: &str) -> Sym {
        let at = (h as usize) & (MEMO_SLOTS - 1);
        let tag = (h >> 32) as u32;
        let (t, sym) = memo.slots[at];
        if t == tag && (sym.0 as usize) < self.slots.len() {
            let slot = &mut self.slots[sym.0 as usize];
            if slot.refs > 0 && *slot.text == *s {
                slot.refs += 1;
                return sym;
            }
        }
        let sym = self.intern_hashed(h, s);
        memo.slots[at] = (tag, sym);
        sym
    }

    /// Hashes the kept fields of `call` into `row` and asks for their memo slots.
    fn hash_ahead(&self, memo: &InternMemo, row: &mut [u64; 7], call: &Call, keep: u8) {
        for f in StrField::ALL.iter().filter(|f| keeps(keep, **f)) {
            if let Some(v) = call.str_field(*f) {
                let h = self.hash(v);
                row[*f as usize] = h;
                memo.prefetch(h);
            }
        }
    }

    /// Asks for the interner slots `memo` remembers for the kept fields of `call` (their
    /// hashes in `row`), without waiting for them: [`SharedInterner::intern_calls`] reads them
    /// a few calls later.
    fn prefetch_remembered(&self, memo: &InternMemo, row: &[u64; 7], call: &Call, keep: u8) {
        for f in StrField::ALL.iter().filter(|f| keeps(keep, **f)) {
            if call.str_field(*f).is_some() {
                let h = row[*f as usize];
                let (t, sym) = memo.slots[(h as usize) & (MEMO_SLOTS - 1)];
                if t == (h >> 32) as u32 && (sym.0 as usize) < self.slots.len() {
                    super::prefetch(&self.slots[sym.0 as usize]);
                } else {
                    // Not remembered: the probe will read the table's home bucket.
                    self.table.prefetch(h);
                }
            }
        }
    }

    fn intern_hashed(&mut self, h: u64, s: &str) -> Sym {
        let slots = &self.slots;
        if let Some(i) = self.table.find(h, |&i| &*slots[i as usize].text == s) {
            self.slots[i as usize].refs += 1;
            return Sym(i);
        }
        let slot = Slot {
            text: CompactString::new(s),
            refs: 1,
        };
        self.live_bytes += if s.len() > 24 { s.len() } else { 0 };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        let (hasher, slots) = (&self.hasher, &self.slots);
        self.table.insert(
            h,
            i,
            |&j| hasher.hash_one(&*slots[j as usize].text),
            |&j| super::prefetch(&slots[j as usize]),
        );
        Sym(i)
    }

    /// Returns the symbol for `s`, adding `refs` references (at least one): another engine's
    /// string brought in with every reference its calls hold ([`super::Engine::absorb`]).
    pub(super) fn intern_refs(&mut self, s: &str, refs: u32) -> Sym {
        let sym = self.intern(s);
        self.slots[sym.0 as usize].refs += refs.saturating_sub(1);
        sym
    }

    /// Interns an optional string; `None` gives [`Sym::NONE`].
    pub fn intern_opt(&mut self, s: Option<&str>) -> Sym {
        s.map_or(Sym::NONE, |s| self.intern(s))
    }

    /// The symbol for `s` if it is interned, without adding a reference.
    pub fn lookup(&self, s: &str) -> Option<Sym> {
        let h = self.hash(s);
        self.table
            .find(h, |&i| &*self.slots[i as usize].text == s)
            .map(Sym)
    }

    /// Drops one reference; the string is freed with the last.
    pub fn release(&mut self, sym: Sym) {
        if sym.is_none() {
            return;
        }
        let slot = &mut self.slots[sym.0 as usize];
        slot.refs -= 1;
        if slot.refs == 0 {
            let text = std::mem::take(&mut slot.text);
            self.live_bytes -= if text.len() > 24 { text.len() } else { 0 };
            let h = self.hash(&text);
            self.table.remove(h, sym.0);
            self.free.push(sym.0);
        }
    }

    /// The text of a symbol (empty for [`Sym::NONE`]).
    pub fn get(&self, sym: Sym) -> &str {
        if sym.is_none() {
            ""
        } else {
            &self.slots[sym.0 as usize].text
        }
    }

    /// The text of a symbol, `None` for [`Sym::NONE`].
    pub fn get_opt(&self, sym: Sym) -> Option<&str> {
        (!sym.is_none()).then(|| self.get(sym))
    }

    /// Number of live strings.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Whether no strings are live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every slot in order, as (text, references); a free slot has no references. For
    /// snapshots.
    pub(super) fn slots(&self) -> impl Iterator<Item = (&str, u32)> {
        self.slots.iter().map(|s| (&*s.text, s.refs))
    }

    /// The free slots, in the order they will be reused. For snapshots.
    pub(super) fn free_slots(&self) -> &[u32] {
        &self.free
    }

    /// An interner with exactly these slots and free list (from a snapshot).
    pub(super) fn from_slots(texts: Vec<(CompactString, u32)>, free: Vec<u32>) -> Interner {
        let mut i = Interner::default();
        let Interner {
            table,
            slots,
            hasher,
            live_bytes,
            ..
        } = &mut i;
        for (n, (text, refs)) in texts.into_iter().enumerate() {
            slots.push(Slot { text, refs });
            if refs > 0 {
                let text = &slots[n].text;
                *live_bytes += if text.len() > 24 { text.len() } else { 0 };
                let h = hasher.hash_one(&**text);
                table.insert(
                    h,
                    n as u32,
                    |&j| hasher.hash_one(&*slots[j as usize].text),
                    |&j| super::prefetch(&slots[j as usize]),
                );
            }
        }
        i.free = free;
        i
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.table.buckets() * 5
            + self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.free.capacity() * 4
            + self.live_bytes
    }
}

/// A call's string fields interned ahead of judging, by the interner of the engine that will
/// judge it (`by`): the references are that engine's to keep or release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interned {
    /// The [`SharedInterner::id`] the symbols belong to.
    pub by: u64,
    /// The symbols, indexed by `StrField as usize` (all but `event_id`).
    pub syms: [Sym; 7],
}

/// An engine's interner, shared with the decoder threads that feed it, so that they intern a
/// batch's strings (hash-table probes that miss the cache) while the engine judges the
/// previous batch. Decoders lock it a few calls at a time; the engine only to intern a call no
/// decoder interned, to look up a candidate's strings, and to show an earlier call in a late
/// alert — the symbols of the calls it evicts or refuses it hands over, to be released by the
/// next thread that takes the lock. Symbol
/// numbers depend on that interleaving, but nothing the engine decides depends on them.
#[derive(Clone)]
pub struct SharedInterner {
    inner: Arc<Shared>,
    id: u64,
}

struct Shared {
    table: Mutex<Interner>,
    /// Symbols given back while the table was locked by another thread
    /// ([`SharedInterner::give_back`]), released by the next holder of the lock.
    returns: Mutex<Vec<Sym>>,
    /// Whether `returns` may hold symbols (checked without its lock).
    returned: AtomicBool,
    /// Earlier calls the engine named in late breaches with their strings still to be read
    /// ([`super::EngineSettings::defer_late_strings`]), counted by the engine thread.
    deferred: AtomicU64,
    /// How many of those have been read, counted by the thread that reads them, in order.
    read: AtomicU64,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Default for SharedInterner {
    fn default() -> Self {
        SharedInterner::from(Interner::default())
    }
}

impl From<Interner> for SharedInterner {
    fn from(i: Interner) -> Self {
        SharedInterner {
            inner: Arc::new(Shared {
                table: Mutex::new(i),
                returns: Mutex::default(),
                returned: AtomicBool::new(false),
                deferred: AtomicU64::new(0),
                read: AtomicU64::new(0),
            }),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// Attempts [`SharedInterner::lock`] makes to take the lock before it sleeps on it.
const LOCK_SPINS: u32 = 4096;

impl SharedInterner {
    /// This interner's identity (what [`Interned::by`] names).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The interner. A panic while it was held cannot leave it half-updated in a way that
    /// matters more than the panic itself, so a poisoned lock is taken over.
    ///
    /// Decoder threads hold it for a few calls at a time (microseconds), so a thread that
    /// finds it taken tries again for a while before it sleeps: the engine thread, put to
    /// sleep and woken once per late alert, spent a tenth of a replay asleep with its core idle.
    /// Symbols given back meanwhile ([`SharedInterner::give_back`]) are released first.
    /// In the service one thread at a time holds the engine (under the state's lock), so the
    /// table is not contended there and nothing spins under a CPU quota.
    pub fn lock(&self) -> MutexGuard<'_, Interner> {
        let table = &self.inner.table;
        let mut guard = None;
        for _ in 0..LOCK_SPINS {
            match table.try_lock() {
                Ok(g) => {
                    guard = Some(g);
                    break;
                }
                Err(std::sync::TryLockError::Poisoned(p)) => {
                    guard = Some(p.into_inner());
                    break;
                }
                Err(std::sync::TryLockError::WouldBlock) => std::hint::spin_loop(),
            }
        }
        let mut guard = guard.unwrap_or_else(|| table.lock().unwrap_or_else(|p| p.into_inner()));
        if self.inner.returned.load(Ordering::Acquire) {
            self.take_returns(&mut guard);
        }
        guard
    }

    fn take_returns(&self, table: &mut Interner) {
        let mut returns = self.inner.returns.lock().unwrap_or_else(|p| p.into_inner());
        self.inner.returned.store(false, Ordering::Release);
        table.release_all(&returns);
        returns.clear();
    }

    /// Releases one reference of each symbol when the lock is next taken, by whichever thread
    /// takes it: eviction hands its symbols over so that the releases (cache misses on the
    /// table) are a decoder thread's work rather than the engine thread's.
    pub fn hand_over(&self, syms: &[Sym]) {
        if syms.is_empty() {
            return;
        }
        let mut returns = self.inner.returns.lock().unwrap_or_else(|p| p.into_inner());
        returns.extend(syms.iter().filter(|s| !s.is_none()));
        self.inner.returned.store(true, Ordering::Release);
    }

    /// Counts one more earlier call whose strings are left to be read
    /// ([`SharedInterner::read_strings`]). Called by the engine thread alone.
    pub(super) fn defer_one(&self) {
        self.inner.deferred.fetch_add(1, Ordering::Relaxed);
    }

    /// Earlier calls deferred so far, and how many of them have been read: the symbols of a
    /// call evicted when `deferred` was N may be released once `read` reaches N.
    pub(super) fn deferred_and_read(&self) -> (u64, u64) {
        (
            self.inner.deferred.load(Ordering::Relaxed),
            self.inner.read.load(Ordering::Acquire),
        )
    }

    /// Reads the strings of the earlier calls `breaches` name unread
    /// ([`Subject::Unread`](crate::engine::breach::Subject::Unread)), making them
    /// [`Subject::Earlier`](crate::engine::breach::Subject::Earlier). The thread rendering the
    /// breaches calls it, for every breach, in the order the engine made them: until then the
    /// engine holds back the release of those calls' symbols, should it evict them meanwhile.
    pub fn read_strings(&self, breaches: &mut [super::breach::Breach]) {
        use super::breach::Subject;
        let unread = breaches
            .iter()
            .filter(|b| matches!(b.subject, Subject::Unread(_)))
            .count();
        if unread == 0 {
            return;
        }
        {
            let table = self.lock();
            for b in breaches.iter_mut() {
                b.subject = match std::mem::replace(&mut b.subject, Subject::Judged) {
                    Subject::Unread(mut c) => {
                        debug_assert_eq!(c.interned.map(|i| i.by), Some(self.id));
                        super::store::read_strings(&mut c, &table);
                        Subject::Earlier(c)
                    }
                    other => other,
                };
            }
        }
        self.inner.read.fetch_add(unread as u64, Ordering::Release);
    }

    /// Releases one reference of each symbol, now if the lock is free, otherwise by the next
    /// thread that takes it: the engine thread gives back the symbols of a call it refuses
    /// (a duplicate) without waiting for a decoder thread to let go of the lock.
    pub fn give_back(&self, syms: &[Sym]) {
        match self.inner.table.try_lock() {
            Ok(mut t) => t.release_all(syms),
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().release_all(syms),
            Err(std::sync::TryLockError::WouldBlock) => self.hand_over(syms),
        }
    }

    /// Interns the string fields of each call and records the symbols in the call
    /// ([`Call::interned`]). `memo` is the calling thread's (see [`InternMemo`]).
    ///
    /// The lock is taken for [`INTERN_CHUNK`] calls at a time, not for the whole batch: the
    /// engine thread takes it too (to release the symbols of evicted calls, to show an earlier
    /// call in a late breach), and a batch's worth of interning — about a millisecond —
    /// left it asleep on the lock that long, with its core idle.
    pub fn intern_calls<'a>(
        &self,
        memo: &mut InternMemo,
        calls: impl Iterator<Item = &'a mut Call>,
    ) {
        // A call still waiting for its debtor (Call::wants_debtor) is left to the engine.
        let mut calls: Vec<&mut Call> = calls.filter(|c| !c.wants_debtor()).collect();
        let n = calls.len();
        let mut i = self.lock();
        // Read once: the fields kept are set before any call is interned (`keep_only`).
        let keep = i.keep;
        // Each call's strings are hashed MEMO_AHEAD calls before it is interned, and their memo
        // slots asked for; SLOT_AHEAD calls before, the interner slots those name are asked
        // for. By the time a string is interned both reads are in the cache: a memo hit
        // no longer waits on two misses one after the other.
        let mut hashes = [[0u64; 7]; AHEAD_RING];
        for j in 0..n.min(MEMO_AHEAD) {
            i.hash_ahead(memo, &mut hashes[j % AHEAD_RING], &*calls[j], keep);
        }
        for j in 0..n.min(SLOT_AHEAD) {
            i.prefetch_remembered(memo, &hashes[j % AHEAD_RING], &*calls[j], keep);
        }
        for c in 0..n {
            if c % INTERN_CHUNK == INTERN_CHUNK - 1 {
                drop(i);
                i = self.lock();
            }
            if c + MEMO_AHEAD < n {
                let j = c + MEMO_AHEAD;
                i.hash_ahead(memo, &mut hashes[j % AHEAD_RING], &*calls[j], keep);
            }
            if c + SLOT_AHEAD < n {
                let j = c + SLOT_AHEAD;
                i.prefetch_remembered(memo, &hashes[j % AHEAD_RING], &*calls[j], keep);
            }
            let row = hashes[c % AHEAD_RING];
            let call = &mut *calls[c];
            let mut syms = [Sym::NONE; 7];
            for f in StrField::ALL.iter().filter(|f| keeps(keep, **f)) {
                if let Some(v) = call.str_field(*f) {
                    syms[*f as usize] = i.intern_memo_hashed(memo, row[*f as usize], v);
                }
            }
            call.interned = Some(Interned { by: self.id, syms });
        }
    }
}

/// How far ahead of the call it interns [`SharedInterner::intern_calls`] asks for memo slots,
/// and for the interner slots they name; the ring holds the hashes in between.
const MEMO_AHEAD: usize = 8;
const SLOT_AHEAD: usize = 4;
const AHEAD_RING: usize = 16;
const _: () = assert!(MEMO_AHEAD < AHEAD_RING && SLOT_AHEAD < MEMO_AHEAD);

/// Calls interned per hold of the interner's lock ([`SharedInterner::intern_calls`]).
const INTERN_CHUNK: usize = 8;

/// Slots in an [`InternMemo`]: 2^18 of 8 bytes, two megabytes. Its reads are asked for calls
/// ahead ([`SharedInterner::intern_calls`]), so it need not fit a core's cache; at 2^16 the
/// table probes of strings it did not name took about twice the decoder thread's samples
/// (`intern_hashed`, default policy: 248 against 128 in one pair of runs).
const MEMO_SLOTS: usize = 1 << 18;

/// A decoder thread's memo of symbols it interned lately, by the string's hash: a symbol it
/// remembers is only a hint (it may have been freed, or reused for another string), checked
/// against the interner's slot before it is taken. The strings of calls recur (the same
/// debtors, numbers, agents), and a hit reads one slot instead of probing the table (its control
/// bytes, its bucket, then the slot: three cache misses on a table the size of the state).
pub struct InternMemo {
    slots: Box<[(u32, Sym)]>,
}

impl Default for InternMemo {
    fn default() -> Self {
        InternMemo {
            slots: vec![(0, Sym::NONE); MEMO_SLOTS].into_boxed_slice(),
        }
    }
}

impl InternMemo {
    /// Asks for the memo slot of hash `h` without waiting for it.
    #[inline]
    fn prefetch(&self, h: u64) {
        super::prefetch(&self.slots[(h as usize) & (MEMO_SLOTS - 1)]);
    }
}

impl Interner {
    /// Interns only the fields in `mask` (bits by `StrField as usize`) from now on: a caller
    /// that shows no call in full (a replay writing no alerts) keeps only what rules read,
    /// and interns a fraction of the strings.
    pub(super) fn keep_only(&mut self, mask: u8) {
        self.keep = mask & ALL_FIELDS;
    }

    /// Interns a call's string fields (all but `event_id`, and those kept), one reference each.
    pub fn intern_fields(&mut self, call: &Call) -> [Sym; 7] {
        let mut syms = [Sym::NONE; 7];
        let keep = self.keep;
        for f in StrField::ALL.iter().filter(|f| keeps(keep, **f)) {
            syms[*f as usize] = self.intern_opt(call.str_field(*f));
        }
        syms
    }

    /// Releases one reference of each symbol.
    pub fn release_all(&mut self, syms: &[Sym]) {
        for s in syms {
            self.release(*s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refcounts_free_and_reuse() {
        let mut i = Interner::default();
        let a = i.intern("a");
        let a2 = i.intern("a");
        let b = i.intern("b");
        assert_eq!(a, a2);
        assert_ne!(a, b);
        assert_eq!(i.len(), 2);
        i.release(a);
        assert_eq!(i.lookup("a"), Some(a));
        i.release(a);
        assert_eq!(i.lookup("a"), None);
        let c = i.intern("c");
        assert_eq!(c, a, "freed slot is reused");
        assert_eq!(i.get(c), "c");
        assert_eq!(i.get(b), "b");
        assert_eq!(i.len(), 2);
    }

    #[test]
    fn symbols_given_back_while_locked_are_released_by_the_next_holder() {
        let shared = SharedInterner::default();
        let (a, b) = {
            let mut i = shared.lock();
            let a = i.intern("a");
            let b = i.intern("b");
            i.intern("b");
            (a, b)
        };
        // Free lock: released at once.
        shared.give_back(&[a]);
        assert_eq!(shared.lock().lookup("a"), None);
        // Held elsewhere (a decoder thread): queued, not lost, not waited for.
        let held = shared.lock();
        shared.give_back(&[b, Sym::NONE]);
        shared.give_back(&[b]);
        assert_eq!(
            held.lookup("b"),
            Some(b),
            "not released under another's lock"
        );
        drop(held);
        let i = shared.lock();
        assert_eq!(i.lookup("b"), None, "both references released");
        assert_eq!(i.len(), 0);
        assert!(shared.inner.returns.lock().unwrap().is_empty());
    }

    #[test]
    fn a_batch_longer_than_a_chunk_is_interned_whole() {
        use crate::engine::event::{Call, Relation};
        use crate::engine::time::Ts;
        let shared = SharedInterner::default();
        let mut calls: Vec<Call> = (0..INTERN_CHUNK * 3 + 1)
            .map(|n| {
                Call::new(
                    &format!("c{n}"),
                    Ts(0),
                    &format!("d{n}"),
                    "+1",
                    Relation::SelfDebtor,
                )
            })
            .collect();
        let mut memo = InternMemo::default();
        shared.intern_calls(&mut memo, calls.iter_mut());
        let i = shared.lock();
        for (n, c) in calls.iter().enumerate() {
            let syms = c.interned.expect("interned").syms;
            assert_eq!(i.get(syms[StrField::DebtorId as usize]), format!("d{n}"));
        }
    }
}
