//! Retained calls, split by use. The *hot* part of a call — its ids, read by the dedup probe
//! and by every evidence list — lives in one dense array (32 bytes a call); the *cold* part —
//! time, interned fields, relation, zone — in another (40 bytes), read when a call is judged,
//! evicted or shown in a late alert. `attrs`, which few calls carry, live in a side table.
//! Both arrays are chunked, so slots are stable and capacity tracks the live count.

use super::breach::CallId;
use super::event::{Call, Relation, StrField};
use super::intern::{Interner, Sym};
use super::time::Ts;
use compact_str::CompactString;
use hashbrown::HashMap;
use jiff::tz::TimeZone;

/// The cold part of a retained call.
#[derive(Clone, Copy)]
pub(super) struct Record {
    pub ts: i64,
    /// Interned string fields, indexed by `StrField as usize` (all but `event_id`).
    pub syms: [Sym; 7],
    /// 1 + index into the engine's callee zone table; 0 for none.
    pub callee_zone: u16,
    /// The relation (bits 0–4, its index in `Relation::ALL`) and what the contact book
    /// supplied of what an alert shows (bits 5 and 6: [`Record::BOOK_DEBTOR`],
    /// [`Record::BOOK_RELATION`]), in one byte so that the lane fits in the struct's 40.
    bits: u8,
    /// The lane the call came in on ([`Record::NO_LANE`] when it is not known: a lane past
    /// 254, or a call restored from a snapshot older than format 5). What lets a snapshot be
    /// split by partition ([`super::Engine::retain_lanes`]).
    pub lane: u8,
}

impl Record {
    /// The debtor was found in the contact book by the dialled number (`@contact_book`).
    pub const BOOK_DEBTOR: u8 = 1;
    /// The relation was the contact book's (the event said `unknown`).
    pub const BOOK_RELATION: u8 = 2;
    /// The lane is not known.
    pub const NO_LANE: u8 = u8::MAX;

    pub fn new(
        ts: i64,
        syms: [Sym; 7],
        callee_zone: u16,
        relation: Relation,
        from_book: u8,
        lane: u8,
    ) -> Record {
        const { assert!(Relation::ALL.len() <= 32) };
        Record {
            ts,
            syms,
            callee_zone,
            bits: relation as u8 | (from_book & 3) << 5,
            lane,
        }
    }

    /// The lane's byte for `lane`.
    pub fn lane_byte(lane: u32) -> u8 {
        u8::try_from(lane)
            .ok()
            .filter(|l| *l != Self::NO_LANE)
            .unwrap_or(Self::NO_LANE)
    }

    pub fn relation(&self) -> Relation {
        Relation::ALL[(self.bits & 31) as usize]
    }

    /// What the contact book supplied ([`Record::BOOK_DEBTOR`], [`Record::BOOK_RELATION`]).
    pub fn book(&self) -> u8 {
        self.bits >> 5
    }

    /// The bits for what the book filled in of `call`.
    pub fn book_bits(call: &Call) -> u8 {
        (call.filled.debtor as u8 * Self::BOOK_DEBTOR)
            | (call.filled.relation as u8 * Self::BOOK_RELATION)
    }
}

/// The hot part: a call's ids in one string, inline up to 24 bytes (no allocation; event ids
/// are unique per call, so interning them would only add overhead). The string is a tag
/// character — `call_id`'s length in bytes, times two, plus one if an `event_id` follows —
/// then `call_id`, then `event_id`. A free slot holds the empty string. Keeping the length and
/// the flags inside the string made the part 24 bytes instead of 32 (the struct had the
/// string's 24, then a length and two flags, padded to 8).
#[derive(Default)]
pub(super) struct Ids {
    text: CompactString,
}

/// The tag's character code for a tag value: Unicode scalar values skip the surrogates.
fn tag_char(tag: u32) -> char {
    let code = if tag < 0xD800 { tag } else { tag + 0x800 };
    char::from_u32(code).expect("ids shorter than half a million bytes")
}

impl Ids {
    /// Ids built apart from a slab (tests); the slab writes a stored call's in place
    /// ([`Slab::push_call`]).
    #[cfg(test)]
    pub fn new(call_id: &str, event_id: Option<&str>) -> Ids {
        let mut ids = Ids::default();
        ids.set(call_id, event_id);
        ids
    }

    /// Makes these the ids of a call, in place. The slab writes a stored call's ids where they
    /// stay ([`Slab::push_call`]): an inline string is built a byte at a time, and a built one
    /// moved into its slot was read back eight and sixteen bytes at a time, loads the store
    /// buffer cannot forward (docs/performance.md, "A key read back as it was written").
    pub fn set(&mut self, call_id: &str, event_id: Option<&str>) {
        let tag = tag_char((call_id.len() as u32) << 1 | event_id.is_some() as u32);
        self.text.clear();
        self.text
            .reserve(tag.len_utf8() + call_id.len() + event_id.map_or(0, str::len));
        self.text.push(tag);
        self.text.push_str(call_id);
        self.text.push_str(event_id.unwrap_or(""));
    }

    /// The tag's value and the byte its character ends at.
    #[inline]
    fn tag(&self) -> (u32, usize) {
        match self.text.as_bytes().first() {
            None => (0, 0),
            // call ids up to 63 bytes: a one-byte tag
            Some(&b) if b < 0x80 => (b as u32, 1),
            Some(_) => {
                let c = self.text.chars().next().expect("not empty");
                let code = u32::from(c);
                (
                    if code < 0xD800 { code } else { code - 0x800 },
                    c.len_utf8(),
                )
            }
        }
    }

    /// Whether the slot holds a call.
    #[inline]
    pub fn live(&self) -> bool {
        !self.text.is_empty()
    }

    #[inline]
    pub fn call_id(&self) -> &str {
        let (tag, at) = self.tag();
        &self.text[at..at + (tag >> 1) as usize]
    }

    pub fn event_id(&self) -> Option<&str> {
        let (tag, at) = self.tag();
        (tag & 1 == 1).then(|| &self.text[at + (tag >> 1) as usize..])
    }

    /// Heap held by ids too long to be inline.
    fn spilled(&self) -> usize {
        if self.text.is_heap_allocated() {
            self.text.capacity()
        } else {
            0
        }
    }
}

/// A retained call's `attrs`.
pub(super) type Attrs = Box<[(Box<str>, Box<str>)]>;

/// Slots a chunk of the slab holds.
pub(super) const CHUNK: usize = 4096;

/// The retained calls by slot.
#[derive(Default)]
pub(super) struct Slab {
    cold: Vec<Vec<Record>>,
    hot: Vec<Vec<Ids>>,
    /// For each chunk, at most the time of its oldest live call ([`Slab::oldest`]).
    oldest: Vec<i64>,
    attrs: HashMap<u32, Attrs, super::window::Hasher>,
    len: usize,
}

impl Slab {
    /// Slots in use or free.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Slots allocated.
    pub fn capacity(&self) -> usize {
        self.cold.len() * CHUNK
    }

    /// Stores a record in a new slot at the end, with empty ids: a free slot as it is
    /// (a snapshot's), or one [`Slab::push_call`] writes a call's ids into.
    pub fn push(&mut self, rec: Record, attrs: Option<Attrs>) -> u32 {
        assert!(
            self.len < super::window::RESERVED as usize,
            "slots for 2^28 retained calls"
        );
        if self.len == self.capacity() {
            self.cold.push(Vec::with_capacity(CHUNK));
            self.hot.push(Vec::with_capacity(CHUNK));
            self.oldest.push(i64::MAX);
        }
        self.note_oldest(self.len / CHUNK, rec.ts);
        self.cold[self.len / CHUNK].push(rec);
        self.hot[self.len / CHUNK].push(Ids::default());
        let slot = self.len as u32;
        self.len += 1;
        if let Some(a) = attrs {
            self.attrs.insert(slot, a);
        }
        slot
    }

    /// Stores a call in a new slot at the end, its ids (`call_id`, `event_id`) written in
    /// their slot ([`Ids::set`]).
    pub fn push_call(
        &mut self,
        rec: Record,
        call_id: &str,
        event_id: Option<&str>,
        attrs: Option<Attrs>,
    ) -> u32 {
        let slot = self.push(rec, attrs);
        self.ids_mut(slot).set(call_id, event_id);
        slot
    }

    /// Stores a call in a free slot, its ids written in place as [`Slab::push_call`]'s are.
    pub fn put_call(
        &mut self,
        slot: u32,
        rec: Record,
        call_id: &str,
        event_id: Option<&str>,
        attrs: Option<Attrs>,
    ) {
        let i = slot as usize;
        self.note_oldest(i / CHUNK, rec.ts);
        self.cold[i / CHUNK][i % CHUNK] = rec;
        self.ids_mut(slot).set(call_id, event_id);
        if let Some(a) = attrs {
            self.attrs.insert(slot, a);
        }
    }

    fn ids_mut(&mut self, slot: u32) -> &mut Ids {
        let i = slot as usize;
        &mut self.hot[i / CHUNK][i % CHUNK]
    }

    /// At most the time of the oldest live call in chunk `c` (slots `c * CHUNK` on), or
    /// `i64::MAX` for none: lowered as calls are stored, not raised as they leave — only an
    /// eviction pass that looked at every slot of the chunk sets it again ([`Slab::reset_oldest`],
    /// then [`Slab::note_oldest`] for each call it keeps). Slots are reused last freed first, and
    /// a pass frees the oldest calls, so a chunk holds calls of about one time: the pass skips a
    /// chunk whose oldest call is not yet expired instead of reading each of its slots (it read
    /// every slot of the slab at every sweep: 5% of the engine thread's samples on the default
    /// policy).
    #[inline]
    pub fn oldest(&self, c: usize) -> i64 {
        self.oldest[c]
    }

    /// Forgets chunk `c`'s oldest time, for a pass about to look at every slot of it.
    pub fn reset_oldest(&mut self, c: usize) {
        self.oldest[c] = i64::MAX;
    }

    /// Notes that chunk `c` holds a live call at `ts`.
    #[inline]
    pub fn note_oldest(&mut self, c: usize, ts: i64) {
        let o = &mut self.oldest[c];
        *o = (*o).min(ts);
    }

    /// Frees a slot's strings and marks it dead.
    pub fn kill(&mut self, slot: u32) {
        let i = slot as usize;
        self.hot[i / CHUNK][i % CHUNK] = Ids::default();
        if !self.attrs.is_empty() {
            self.attrs.remove(&slot);
        }
    }

    #[inline]
    pub fn ids(&self, slot: u32) -> &Ids {
        let i = slot as usize;
        &self.hot[i / CHUNK][i % CHUNK]
    }

    pub fn live(&self, slot: u32) -> bool {
        self.ids(slot).live()
    }

    #[inline]
    pub fn call_id(&self, slot: u32) -> &str {
        self.ids(slot).call_id()
    }

    /// The call id as evidence.
    pub fn evidence_id(&self, slot: u32) -> CallId {
        CallId::new(self.call_id(slot))
    }

    pub fn attrs(&self, slot: u32) -> Option<&Attrs> {
        self.attrs.get(&slot)
    }

    /// Heap held by strings too long to be inline, and by the attrs table.
    pub fn spilled_bytes(&self) -> usize {
        self.hot.iter().flatten().map(Ids::spilled).sum::<usize>() + self.attrs.capacity() * 24
    }

    /// What an alert shows of the call in `slot`, as a [`Call`] (fields a record does not
    /// keep are at their defaults).
    pub fn to_call(&self, slot: u32, interner: &Interner, callee_zones: &[TimeZone]) -> Call {
        let mut c = self.to_call_unread(slot, 0, callee_zones);
        read_strings(&mut c, interner);
        c
    }

    /// [`Slab::to_call`] without the string fields: the record's symbols are left in
    /// [`Call::interned`] (as interned by interner `by`) for [`read_strings`] to read later,
    /// on another thread.
    pub fn to_call_unread(&self, slot: u32, by: u64, callee_zones: &[TimeZone]) -> Call {
        let r = &self[slot as usize];
        let ids = self.ids(slot);
        let mut c = Call::new(ids.call_id(), Ts(r.ts), "", "", r.relation());
        c.interned = Some(super::intern::Interned { by, syms: r.syms });
        c.event_id = ids.event_id().map(CompactString::from);
        c.filled.debtor = r.book() & Record::BOOK_DEBTOR != 0;
        c.filled.relation = r.book() & Record::BOOK_RELATION != 0;
        c.callee_tz = match r.callee_zone {
            0 => None,
            z => Some(callee_zones[z as usize - 1].clone()),
        };
        c.attrs = self
            .attrs(slot)
            .iter()
            .flat_map(|a| a.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        c
    }
}

/// Fills in the string fields of a call made by [`Slab::to_call_unread`] from the symbols it
/// carries, and drops them: the call is then what [`Slab::to_call`] gives.
pub fn read_strings(c: &mut Call, interner: &Interner) {
    let Some(i) = c.interned.take() else {
        return;
    };
    let s = |f: StrField| {
        interner
            .get_opt(i.syms[f as usize])
            .map(CompactString::from)
    };
    c.debtor_id = interner
        .get_opt(i.syms[StrField::DebtorId as usize])
        .unwrap_or("")
        .into();
    c.phone = interner
        .get_opt(i.syms[StrField::Phone as usize])
        .unwrap_or("")
        .into();
    c.account_id = s(StrField::AccountId);
    c.agent_id = s(StrField::AgentId);
    c.agency_id = s(StrField::AgencyId);
    c.creditor_id = s(StrField::CreditorId);
    c.campaign_id = s(StrField::CampaignId);
}

impl std::ops::Index<usize> for Slab {
    type Output = Record;
    #[inline]
    fn index(&self, i: usize) -> &Record {
        &self.cold[i / CHUNK][i % CHUNK]
    }
}

#[cfg(test)]
mod tests {
    use super::{Ids, Record, Slab, CHUNK};
    use crate::engine::event::Relation;
    use crate::engine::intern::Sym;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Push(i64),
        /// Stores a call in the `n`th dead slot (if any).
        Put(usize, i64),
        /// Kills the `n`th live slot (if any).
        Kill(usize),
        /// What an eviction pass does to a chunk: forgets its oldest time, then notes each live
        /// call's.
        Rescan(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (0i64..1_000).prop_map(Op::Push),
            3 => (any::<usize>(), 0i64..1_000).prop_map(|(n, t)| Op::Put(n, t)),
            3 => any::<usize>().prop_map(Op::Kill),
            1 => any::<usize>().prop_map(Op::Rescan),
        ]
    }

    fn rec(ts: i64) -> Record {
        Record::new(
            ts,
            [Sym::NONE; 7],
            0,
            Relation::SelfDebtor,
            0,
            Record::NO_LANE,
        )
    }

    proptest! {
        // Each case reads every slot after each operation: a few cases suffice.
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// A chunk's oldest time is never later than any live call's in it, whatever is
        /// stored, killed and rescanned (an eviction pass skips the chunk on it).
        #[test]
        fn a_chunks_oldest_time_bounds_its_live_calls(
            ops in proptest::collection::vec(op(), 1..400),
            start in 0usize..2 * CHUNK,
        ) {
            let mut s = Slab::default();
            // Slots to start with, so that the operations cross a chunk's end.
            for i in 0..start {
                s.push_call(rec(1_000 + i as i64), &format!("s{i}"), None, None);
            }
            let mut n = 0;
            for o in ops {
                n += 1;
                let dead: Vec<u32> = (0..s.len() as u32).filter(|&i| !s.live(i)).collect();
                let live: Vec<u32> = (0..s.len() as u32).filter(|&i| s.live(i)).collect();
                match o {
                    Op::Push(t) => {
                        s.push_call(rec(t), &format!("c{n}"), None, None);
                    }
                    Op::Put(k, t) if !dead.is_empty() => {
                        let slot = dead[k % dead.len()];
                        s.put_call(slot, rec(t), &format!("c{n}"), None, None);
                    }
                    Op::Kill(k) if !live.is_empty() => s.kill(live[k % live.len()]),
                    Op::Rescan(k) => {
                        let c = k % s.len().div_ceil(CHUNK).max(1);
                        if c * CHUNK < s.len() {
                            s.reset_oldest(c);
                            for i in c * CHUNK..((c + 1) * CHUNK).min(s.len()) {
                                if s.live(i as u32) {
                                    s.note_oldest(c, s[i].ts);
                                }
                            }
                        }
                    }
                    _ => {}
                }
                for i in 0..s.len() {
                    if s.live(i as u32) {
                        prop_assert!(s.oldest(i / CHUNK) <= s[i].ts, "slot {}", i);
                    }
                }
            }
        }
    }

    /// The ids come back as stored, whatever their lengths (the tag takes one to four bytes),
    /// with or without an event id, and a free slot is not live.
    #[test]
    fn ids_round_trip_at_every_tag_width() {
        for n in [1usize, 5, 63, 64, 100, 128, 512, 0x6C00, 0x7000, 70_000] {
            let call_id: String = (0..n).map(|i| if i % 7 == 0 { 'é' } else { 'c' }).collect();
            let call_id = &call_id[..call_id.floor_char_boundary(n)];
            for event_id in [None, Some(""), Some("e-1"), Some("事件")] {
                let ids = Ids::new(call_id, event_id);
                assert!(ids.live());
                assert_eq!((ids.call_id(), ids.event_id()), (call_id, event_id), "{n}");
            }
        }
        assert!(!Ids::default().live());
        assert_eq!(std::mem::size_of::<Ids>(), 24);
    }
}
