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
        let book = match self.books.find_mut(hasher.hash_one(d), |b| b.debtor() == d) {
            Some(b) => b,
            None => self
                .books
                .insert_unique(hasher.hash_one(d), Book::new(&c.debtor_id), |b| {
                    hasher.hash_one(b.debtor())
                })
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
        Some(old.fact())
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

    /// Heap bytes held (from capacities: the table and each debtor's allocation).
    pub fn heap_bytes(&self) -> usize {
        self.books.capacity() * (std::mem::size_of::<Book>() + 1)
            + self.books.iter().map(|b| b.0.capacity()).sum::<usize>()
    }

    /// Gives back spare capacity (after a bulk load).
    pub fn shrink_to_fit(&mut self) {
        for b in self.books.iter_mut() {
            b.0.shrink_to_fit();
        }
        let hasher = self.hasher;
        self.books.shrink_to_fit(|b| hasher.hash_one(b.debtor()));
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
