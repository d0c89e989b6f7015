//! The lender's contact book ([`Contacts`]): for a debtor and a number, who the number belongs
//! to in relation to the debtor and where it came from, from an instant on. Reference data,
//! like debtor statuses: `crate::reference` decodes Contact v1 records into [`Contact`] values.
//!
//! The book serves two purposes. It *enriches* a call whose event lacks `relation` or
//! `number_source` ([`Contacts::enrich`]: the event's own values win), so every rule's `when`
//! sees them; and the `contact` rule kind (`kinds/contact.rs`) judges calls by what the book
//! says of their number, in event time.
//!
//! Compact, because a lender's book holds millions of numbers: per debtor one allocation of its
//! id and its 16-byte entries (the number packed in 8 bytes, `from` in whole seconds, relation,
//! source, consent), in a hash table by the id.

pub use super::event::{pack_e164, unpack_e164};
use super::event::{Call, Filled, NumberSource, Relation, Text};
use super::time::{Ts, NANOS_PER_SEC};
use hashbrown::HashTable;
use std::hash::BuildHasher;

/// One contact-book record, decoded and validated: a fact about `phone` for `debtor_id` from
/// `from` on. One per (debtor, number): a later record for the pair replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The debtor whose book it is.
    pub debtor_id: Text,
    /// The number, E.164.
    pub phone: Text,
    /// Whose number it is, in relation to the debtor.
    pub relation: Relation,
    /// Where the lender got it.
    pub source: NumberSource,
    /// The person gave consent to be called about the debt.
    pub consent: bool,
    /// Known from (event time, whole seconds: finer digits are dropped when decoded).
    pub from: Ts,
}

/// What the book says of one number for one debtor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fact {
    /// Whose number it is.
    pub relation: Relation,
    /// Where it came from.
    pub source: NumberSource,
    /// The person consented to be called.
    pub consent: bool,
    /// Known from (event time).
    pub from: Ts,
}

impl Fact {
    /// Whether the fact holds at event time `t` (ns).
    #[inline]
    pub fn holds_at(&self, t: i64) -> bool {
        self.from.0 <= t
    }
}

/// The first instant a contact's `from` can be (whole seconds in a `u32`: 1970 to 2106).
pub const FROM_MIN: Ts = Ts(0);
/// The last.
pub const FROM_MAX: Ts = Ts(u32::MAX as i64 * NANOS_PER_SEC);

/// One number in a debtor's book: 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    phone: u64,
    /// Whole seconds since the epoch.
    from: u32,
    relation: Relation,
    source: NumberSource,
    consent: bool,
}

/// An entry's size in a book's bytes.
const ENTRY: usize = 16;

impl Entry {
    fn fact(&self) -> Fact {
        Fact {
            relation: self.relation,
            source: self.source,
            consent: self.consent,
            from: Ts(self.from as i64 * NANOS_PER_SEC),
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&self.phone.to_le_bytes());
        out[8..12].copy_from_slice(&self.from.to_le_bytes());
        out[12] = self.relation as u8;
        out[13] = self.source as u8;
        out[14] = self.consent as u8;
        out[15] = 0;
    }

    fn read(b: &[u8]) -> Entry {
        Entry {
            phone: u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
            from: u32::from_le_bytes(b[8..12].try_into().expect("4 bytes")),
            relation: Relation::ALL[b[12] as usize],
            source: NumberSource::ALL[b[13] as usize],
            consent: b[14] != 0,
        }
    }
}

/// One debtor's numbers in one allocation: the debtor's id (a 2-byte length, then its bytes),
/// then its entries, 16 bytes each, in no particular order. Looking a number up reads the
/// hash table's slot and this allocation: two dependent cache misses where a table of
/// indexes, a vector of debtors, the id's string and the entries' vector took five — and the
/// lookup is on the path of every call that lacks a field.
#[derive(Debug, Clone)]
struct Book(Vec<u8>);

impl Book {
    fn new(debtor: &str) -> Book {
        let mut b = Vec::with_capacity(2 + debtor.len() + ENTRY);
        b.extend_from_slice(&(debtor.len() as u16).to_le_bytes());
        b.extend_from_slice(debtor.as_bytes());
        Book(b)
    }

    #[inline]
    fn head(&self) -> usize {
        2 + u16::from_le_bytes([self.0[0], self.0[1]]) as usize
    }

    #[inline]
    fn debtor(&self) -> &[u8] {
        &self.0[2..self.head()]
    }

    /// The entries' bytes.
    #[inline]
    fn entries(&self) -> &[u8] {
        &self.0[self.head()..]
    }

    /// The byte offset (in `entries`) and the entry for `phone`.
    #[inline]
    fn find(&self, phone: u64) -> Option<(usize, Entry)> {
        let want = phone.to_le_bytes();
        self.entries()
            .chunks_exact(ENTRY)
            .position(|e| e[..8] == want)
            .map(|i| (i * ENTRY, Entry::read(&self.entries()[i * ENTRY..])))
    }

    fn set(&mut self, at: usize, e: &Entry) {
        let h = self.head();
        e.write(&mut self.0[h + at..h + at + ENTRY]);
    }

    fn push(&mut self, e: &Entry) {
        let n = self.0.len();
        self.0.resize(n + ENTRY, 0);
        e.write(&mut self.0[n..]);
    }

    /// Removes the entry at `at`, the last one taking its place.
    fn swap_remove(&mut self, at: usize) {
        let h = self.head();
        let last = self.0.len() - ENTRY;
        if h + at != last {
            self.0.copy_within(last..last + ENTRY, h + at);
        }
        self.0.truncate(last);
    }

    fn len(&self) -> usize {
        self.entries().len() / ENTRY
    }
}

/// The contact book: facts by (debtor, number).
#[derive(Debug, Default, Clone)]
pub struct Contacts {
    /// The debtors' books, by the hash of the debtor's id.
    books: HashTable<Book>,
    len: usize,
    hasher: foldhash::fast::FixedState,
    /// Which debtors' books hold a number, when asked for ([`Contacts::index_numbers`]): one
    /// (number, hash of the debtor's id) per number and distinct hash, by the number's hash.
    /// The books with that hash are then searched for the number, so two debtors whose ids
    /// hash alike are each found once, and neither is taken for the other.
    by_number: Option<HashTable<(u64, u64)>>,
}

/// Why no single debtor was found for a number ([`Contacts::debtor_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoDebtor {
    /// No debtor's book holds the number at that time (or the number is not E.164).
    None,
    /// Several debtors' books do: this many.
    Several(usize),
    /// The book keeps no index by number ([`Contacts::index_numbers`] was not asked for).
    NotIndexed,
    /// No contact book was given (`convert` without `--reference`).
    NotGiven,
}

impl std::fmt::Display for NoDebtor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoDebtor::None => f.write_str("no debtor's contact book holds the dialled number at occurred_at"),
            NoDebtor::Several(n) => write!(f, "the dialled number is in {n} debtors' contact books at occurred_at, so which debtor the call was about is not known"),
            NoDebtor::NotIndexed => f.write_str("the contact book is not indexed by number"),
            NoDebtor::NotGiven => f.write_str("no contact book was given (--reference)"),
        }
    }
}

impl Contacts {
    #[inline]
    fn hash(&self, debtor: &[u8]) -> u64 {
        self.hasher.hash_one(debtor)
    }

    #[inline]
    fn book(&self, debtor: &str) -> Option<&Book> {
        let d = debtor.as_bytes();
        self.books.find(self.hash(d), |b| b.debtor() == d)
    }

    /// Adds a contact, or replaces the one for its (debtor, number); returns the one replaced.
    /// An error (and nothing stored) for a number that is not E.164 or a `from` outside
    /// [`FROM_MIN`]..=[`FROM_MAX`] — the decoder refuses both.
    pub fn upsert(&mut self, c: &Contact) -> Result<Option<Fact>, &'static str> {
        let phone = pack_e164(&c.phone).ok_or("the number is not E.164")?;
        if c.from < FROM_MIN || c.from > FROM_MAX {
            return Err("from is outside 1970-01-01 to 2106-02-07");
        }
        if c.debtor_id.len() > u16::MAX as usize {
            return Err("the debtor id is longer than 65,535 bytes");
        }
        let e = Entry {
            phone,
            from: (c.from.0 / NANOS_PER_SEC) as u32,
            relation: c.relation,
            source: c.source,
            consent: c.consent,
        };
        let d = c.debtor_id.as_bytes();
        let hasher = self.hasher;
        let h = hasher.hash_one(d);
        let book = match self.books.find_mut(h, |b| b.debtor() == d) {
            Some(b) => b,
            None => self
                .books
                .insert_unique(h, Book::new(&c.debtor_id), |b| hasher.hash_one(b.debtor()))
                .into_mut(),
        };
        match book.find(phone) {
            Some((at, old)) => {
                book.set(at, &e);
                Ok(Some(old.fact()))
            }
            None => {
                book.push(&e);
                self.len += 1;
                if let Some(index) = &mut self.by_number {
                    index_add(index, &hasher, phone, h);
                }
                Ok(None)
            }
        }
    }

    /// Removes the contact for (debtor, number) (a tombstone); returns it. A debtor left with
    /// no number is forgotten.
    pub fn remove(&mut self, debtor: &str, phone: &str) -> Option<Fact> {
        let phone = pack_e164(phone)?;
        let d = debtor.as_bytes();
        let h = self.hash(d);
        let Ok(entry) = self.books.find_entry(h, |b| b.debtor() == d) else {
            return None;
        };
        let (at, old) = entry.get().find(phone)?;
        if entry.get().len() == 1 {
            entry.remove();
        } else {
            entry.into_mut().swap_remove(at);
        }
        self.len -= 1;
        if self.by_number.is_some() {
            // The index entry goes when no other book of the same hash holds the number.
            let still = self
                .books
                .iter_hash(h)
                .any(|b| self.hash(b.debtor()) == h && b.find(phone).is_some());
            if !still {
                let hasher = self.hasher;
                if let Some(index) = &mut self.by_number {
                    if let Ok(e) = index.find_entry(hasher.hash_one(phone), |x| *x == (phone, h)) {
                        e.remove();
                    }
                }
            }
        }
        Some(old.fact())
    }

    /// Keeps an index of the book by number from now on (built from what the book holds), so
    /// that [`Contacts::debtor_of`] can find a number's debtor: about 25 bytes per number,
    /// asked for only when a dialer mapping finds debtors that way (`@contact_book`).
    pub fn index_numbers(&mut self) {
        if self.by_number.is_some() {
            return;
        }
        let hasher = self.hasher;
        let mut index = HashTable::with_capacity(self.len);
        for b in self.books.iter() {
            let h = hasher.hash_one(b.debtor());
            for raw in b.entries().chunks_exact(ENTRY) {
                index_add(&mut index, &hasher, Entry::read(raw).phone, h);
            }
        }
        self.by_number = Some(index);
    }

    /// The one debtor whose book holds `phone` (E.164) at event time `t` (ns): a record for
    /// the number with `from` ≤ `t`. None, or several, is an error saying which.
    pub fn debtor_of(&self, phone: &str, t: i64) -> Result<&str, NoDebtor> {
        let index = self.by_number.as_ref().ok_or(NoDebtor::NotIndexed)?;
        let phone = pack_e164(phone).ok_or(NoDebtor::None)?;
        let mut found = None;
        let mut n = 0;
        for &(_, h) in index
            .iter_hash(self.hasher.hash_one(phone))
            .filter(|x| x.0 == phone)
        {
            // (`iter_hash` may also give books of another hash: checked.)
            for b in self.books.iter_hash(h) {
                if self.hash(b.debtor()) == h
                    && b.find(phone).is_some_and(|(_, e)| e.fact().holds_at(t))
                {
                    n += 1;
                    found = Some(b);
                }
            }
        }
        match (n, found) {
            (1, Some(b)) => Ok(std::str::from_utf8(b.debtor()).expect("stored from a str")),
            (0, _) => Err(NoDebtor::None),
            _ => Err(NoDebtor::Several(n)),
        }
    }

    /// Fills in the debtor of a call whose mapping left it to the book ([`Call::wants_debtor`]):
    /// the one debtor whose book holds its number at its event time ([`Contacts::debtor_of`]).
    /// Marks it filled ([`Filled::debtor`]). A call that names its debtor is left alone.
    pub fn find_debtor(&self, call: &mut Call) -> Result<(), NoDebtor> {
        if !call.wants_debtor() {
            return Ok(());
        }
        let d = self.debtor_of(&call.phone, call.occurred_at.0)?;
        call.debtor_id = Text::from(d);
        call.filled.debtor = true;
        Ok(())
    }

    /// What the book says of `phone` (E.164) for `debtor`, whenever it holds from.
    #[inline]
    pub fn get(&self, debtor: &str, phone: &str) -> Option<Fact> {
        let phone = pack_e164(phone)?;
        self.book(debtor)?.find(phone).map(|(_, e)| e.fact())
    }

    /// What the book says of the call's number for its debtor at the call's event time.
    #[inline]
    pub fn fact_for(&self, call: &Call) -> Option<Fact> {
        if self.len == 0 {
            return None;
        }
        self.get(&call.debtor_id, &call.phone)
            .filter(|f| f.holds_at(call.occurred_at.0))
    }

    /// Fills what the call's event lacks — `relation` (absent or `unknown`) and
    /// `number_source` — from the book's fact for its debtor and number at its event time.
    /// The event's own values win. Records what was filled in the call ([`Call::filled`])
    /// and returns it.
    pub fn enrich(&self, call: &mut Call) -> Filled {
        let wants_relation = call.relation == Relation::Unknown;
        let wants_source = call.number_source.is_none();
        if !(wants_relation || wants_source) || call.filled.looked_up {
            return Filled::default();
        }
        let fact = self.fact_for(call);
        let relation = wants_relation && fact.is_some_and(|f| f.relation != Relation::Unknown);
        let number_source = wants_source && fact.is_some();
        if let Some(f) = fact {
            if relation {
                call.relation = f.relation;
            }
            if number_source {
                call.number_source = Some(f.source);
            }
        }
        let filled = Filled {
            debtor: call.filled.debtor,
            relation,
            number_source,
            looked_up: true,
            fact,
        };
        call.filled = filled;
        filled
    }

    /// The fact for a call as [`Contacts::fact_for`], read from the call when [`Contacts::enrich`]
    /// already asked; `None` too when the event gives both fields (no fact can add to them).
    #[inline]
    pub fn fact_of(&self, call: &Call) -> Option<Fact> {
        if call.filled.looked_up {
            return call.filled.fact;
        }
        if call.relation != Relation::Unknown && call.number_source.is_some() {
            return None;
        }
        self.fact_for(call)
    }

    /// Every contact, by debtor then number (for tests and tools).
    pub fn all(&self) -> Vec<Contact> {
        let mut v: Vec<Contact> = self
            .books
            .iter()
            .flat_map(|b| {
                let debtor =
                    Text::from(std::str::from_utf8(b.debtor()).expect("stored from a str"));
                b.entries().chunks_exact(ENTRY).map(move |raw| {
                    let e = Entry::read(raw);
                    Contact {
                        debtor_id: debtor.clone(),
                        phone: unpack_e164(e.phone).expect("a stored number"),
                        relation: e.relation,
                        source: e.source,
                        consent: e.consent,
                        from: e.fact().from,
                    }
                })
            })
            .collect();
        v.sort_by(|a, b| (&a.debtor_id, &a.phone).cmp(&(&b.debtor_id, &b.phone)));
        v
    }

    /// How many contacts are known.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many debtors have a number in the book.
    pub fn debtors(&self) -> usize {
        self.books.len()
    }

    /// Heap bytes held (from capacities: the tables and each debtor's allocation).
    pub fn heap_bytes(&self) -> usize {
        self.books.capacity() * (std::mem::size_of::<Book>() + 1)
            + self.books.iter().map(|b| b.0.capacity()).sum::<usize>()
            + self.by_number.as_ref().map_or(0, |i| i.capacity() * 17)
    }

    /// Gives back spare capacity (after a bulk load).
    pub fn shrink_to_fit(&mut self) {
        for b in self.books.iter_mut() {
            b.0.shrink_to_fit();
        }
        let hasher = self.hasher;
        self.books.shrink_to_fit(|b| hasher.hash_one(b.debtor()));
        if let Some(index) = &mut self.by_number {
            index.shrink_to_fit(|x| hasher.hash_one(x.0));
        }
    }
}

/// Records that a book of debtor-id hash `h` holds `phone`, once per (number, hash).
fn index_add(
    index: &mut HashTable<(u64, u64)>,
    hasher: &foldhash::fast::FixedState,
    phone: u64,
    h: u64,
) {
    let ph = hasher.hash_one(phone);
    if index.find(ph, |x| *x == (phone, h)).is_none() {
        index.insert_unique(ph, (phone, h), |x| hasher.hash_one(x.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(debtor: &str, phone: &str, source: NumberSource, from_s: i64) -> Contact {
        Contact {
            debtor_id: debtor.into(),
            phone: phone.into(),
            relation: Relation::ContactList,
            source,
            consent: false,
            from: Ts(from_s * NANOS_PER_SEC),
        }
    }

    #[test]
    fn an_entry_is_sixteen_bytes_and_reads_back_as_written() {
        let e = Entry {
            phone: pack_e164("+8613812345678").unwrap(),
            from: u32::MAX,
            relation: Relation::Unknown,
            source: NumberSource::Other,
            consent: true,
        };
        let mut b = [0u8; ENTRY];
        e.write(&mut b);
        assert_eq!((ENTRY, Entry::read(&b)), (16, e));
    }

    #[test]
    fn one_fact_per_debtor_and_number_replaced_and_removed() {
        let mut b = Contacts::default();
        assert_eq!(
            b.upsert(&c("d1", "+8613800000001", NumberSource::DeviceContacts, 10)),
            Ok(None)
        );
        b.upsert(&c("d1", "+8613800000002", NumberSource::CallLog, 10))
            .unwrap();
        b.upsert(&c("d2", "+8613800000001", NumberSource::DebtorProvided, 10))
            .unwrap();
        assert_eq!((b.len(), b.debtors()), (3, 2));
        let old = b
            .upsert(&c("d1", "+8613800000001", NumberSource::SkipTrace, 20))
            .unwrap()
            .unwrap();
        assert_eq!(old.source, NumberSource::DeviceContacts);
        assert_eq!(b.len(), 3);
        let f = b.get("d1", "+8613800000001").unwrap();
        assert_eq!(
            (f.source, f.from),
            (NumberSource::SkipTrace, Ts(20 * NANOS_PER_SEC))
        );
        assert_eq!(
            b.get("d2", "+8613800000001").unwrap().source,
            NumberSource::DebtorProvided
        );
        assert_eq!(b.get("d3", "+8613800000001"), None);
        assert!(b.remove("d1", "+8613800000001").is_some());
        assert_eq!(b.remove("d1", "+8613800000001"), None);
        assert_eq!(b.get("d1", "+8613800000001"), None);
        assert_eq!(b.len(), 2);
        assert_eq!(b.all().len(), 2);
        assert!(b
            .upsert(&c("d1", "not e164", NumberSource::CallLog, 1))
            .is_err());
        assert!(b
            .upsert(&c("d1", "+1555", NumberSource::CallLog, -1))
            .is_err());
    }

    /// What a scan of the whole book says of a number at `t`.
    fn scan(b: &Contacts, phone: &str, t: i64) -> Result<String, NoDebtor> {
        let v: Vec<Contact> = b
            .all()
            .into_iter()
            .filter(|c| c.phone == phone && c.from.0 <= t)
            .collect();
        match v.len() {
            0 => Err(NoDebtor::None),
            1 => Ok(v[0].debtor_id.to_string()),
            n => Err(NoDebtor::Several(n)),
        }
    }

    proptest::proptest! {
        /// The index by number finds what a scan of the book finds, after any upserts and
        /// removals, whether it was kept from the start or built from a loaded book.
        #[test]
        fn the_number_index_finds_what_a_scan_of_the_book_finds(
            ops in proptest::collection::vec((0u8..4, 0u8..4, 0i64..3, proptest::bool::ANY), 0..40),
        ) {
            let mut kept = Contacts::default();
            kept.index_numbers();
            let mut late = Contacts::default();
            let phone = |p: u8| format!("+861380000000{p}");
            for (d, p, from, add) in &ops {
                let debtor = format!("d{d}");
                if *add {
                    let x = c(&debtor, &phone(*p), NumberSource::CallLog, from * 10);
                    kept.upsert(&x).unwrap();
                    late.upsert(&x).unwrap();
                } else {
                    kept.remove(&debtor, &phone(*p));
                    late.remove(&debtor, &phone(*p));
                }
            }
            proptest::prop_assert_eq!(late.debtor_of(&phone(0), 0), Err(NoDebtor::NotIndexed));
            late.index_numbers();
            for p in 0..5 {
                for t in [0, 5, 15, 25] {
                    let t = t * NANOS_PER_SEC;
                    let want = scan(&kept, &phone(p), t);
                    proptest::prop_assert_eq!(kept.debtor_of(&phone(p), t).map(str::to_owned), want.clone());
                    proptest::prop_assert_eq!(late.debtor_of(&phone(p), t).map(str::to_owned), want);
                }
            }
        }
    }

    #[test]
    fn a_call_left_to_the_book_gets_its_one_debtor_and_no_other_call_is_touched() {
        let mut b = Contacts::default();
        b.index_numbers();
        b.upsert(&c(
            "d1",
            "+8613800000001",
            NumberSource::DebtorProvided,
            100,
        ))
        .unwrap();
        let mut call = Call::new(
            "c",
            Ts(100 * NANOS_PER_SEC),
            "",
            "+8613800000001",
            Relation::Unknown,
        );
        assert!(call.wants_debtor());
        assert_eq!(b.find_debtor(&mut call), Ok(()));
        assert_eq!((&*call.debtor_id, call.filled.debtor), ("d1", true));
        // The book then fills in the rest, and keeps the debtor it found marked.
        let f = b.enrich(&mut call);
        assert!(f.debtor && f.number_source && call.filled.debtor);
        let mut early = Call::new(
            "e",
            Ts(99 * NANOS_PER_SEC),
            "",
            "+8613800000001",
            Relation::Unknown,
        );
        assert_eq!(b.find_debtor(&mut early), Err(NoDebtor::None));
        assert!(early.wants_debtor());
        let mut named = Call::new(
            "n",
            Ts(100 * NANOS_PER_SEC),
            "d9",
            "+8613800000001",
            Relation::Unknown,
        );
        assert_eq!(b.find_debtor(&mut named), Ok(()));
        assert_eq!((&*named.debtor_id, named.filled.debtor), ("d9", false));
    }

    #[test]
    fn enrichment_fills_only_what_the_event_lacks_and_only_from_from_on() {
        let mut b = Contacts::default();
        let mut fact = c("d", "+8613800000001", NumberSource::DeviceContacts, 100);
        fact.relation = Relation::Spouse;
        b.upsert(&fact).unwrap();
        let at = |s: i64, relation: Relation| {
            Call::new("c", Ts(s * NANOS_PER_SEC), "d", "+8613800000001", relation)
        };
        let mut early = at(99, Relation::Unknown);
        let f = b.enrich(&mut early);
        assert!(!f.relation && !f.number_source && f.looked_up && f.fact.is_none());
        assert_eq!(early.number_source, None);
        let mut call = at(100, Relation::Unknown);
        let f = b.enrich(&mut call);
        assert!(f.relation && f.number_source && f.looked_up);
        assert_eq!(f.fact.unwrap().source, NumberSource::DeviceContacts);
        assert_eq!(call.filled, f);
        // Asked once: a second enrichment changes nothing.
        assert_eq!(b.enrich(&mut call), Filled::default());
        assert_eq!(
            (call.relation, call.number_source),
            (Relation::Spouse, Some(NumberSource::DeviceContacts))
        );
        let mut own = at(200, Relation::SelfDebtor);
        own.number_source = Some(NumberSource::Application);
        assert_eq!(b.enrich(&mut own), Filled::default());
        assert_eq!(
            (own.relation, own.number_source),
            (Relation::SelfDebtor, Some(NumberSource::Application))
        );
    }
}
