//! The lender's contact book ([`Contacts`]): for a debtor and a number, who the number belongs
//! to in relation to the debtor and where it came from, from an instant on. Reference data,
//! like debtor statuses: `crate::reference` decodes Contact v1 records into [`Contact`] values.
//!
//! The book serves two purposes. It *enriches* a call whose event lacks `relation` or
//! `number_source` ([`Contacts::enrich`]: the event's own values win), so every rule's `when`
//! sees them; and the `contact` rule kind (`kinds/contact.rs`) judges calls by what the book
//! says of their number, in event time.
//!
//! Compact, because a lender's book holds millions of numbers: per debtor one vector of 16-byte
//! entries (the number packed in 8 bytes, `from` in whole seconds, relation, source, consent),
//! the debtor's id stored once, and a hash table of 4-byte indexes to the debtors.

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

/// An E.164 number as a `u64`: its digits as a decimal number. One-to-one, since an E.164
/// number has at most 15 digits and its first (the country code's) is never 0. `None` for
/// anything else.
pub fn pack_e164(phone: &str) -> Option<u64> {
    let digits = phone.strip_prefix('+')?.as_bytes();
    if digits.is_empty() || digits.len() > 15 || digits[0] == b'0' {
        return None;
    }
    let mut n = 0u64;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (d - b'0') as u64;
    }
    Some(n)
}

/// The number a packed one came from.
pub fn unpack_e164(n: u64) -> Text {
    let mut t = Text::new("+");
    use std::fmt::Write;
    let _ = write!(t, "{n}");
    t
}

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

impl Entry {
    fn fact(&self) -> Fact {
        Fact {
            relation: self.relation,
            source: self.source,
            consent: self.consent,
            from: Ts(self.from as i64 * NANOS_PER_SEC),
        }
    }
}

/// One debtor's numbers, in no particular order.
#[derive(Debug, Clone)]
struct Book {
    debtor: Box<str>,
    entries: Vec<Entry>,
}

/// The contact book: facts by (debtor, number).
#[derive(Debug, Default, Clone)]
pub struct Contacts {
    books: Vec<Book>,
    /// Debtor id → index into `books`.
    index: HashTable<u32>,
    len: usize,
    hasher: foldhash::fast::FixedState,
}

impl Contacts {
    fn book(&self, debtor: &str) -> Option<&Book> {
        let books = &self.books;
        self.index
            .find(self.hasher.hash_one(debtor), |&i| {
                &*books[i as usize].debtor == debtor
            })
            .map(|&i| &books[i as usize])
    }

    fn book_mut(&mut self, debtor: &str) -> Option<&mut Book> {
        let books = &self.books;
        let i = *self.index.find(self.hasher.hash_one(debtor), |&i| {
            &*books[i as usize].debtor == debtor
        })?;
        Some(&mut self.books[i as usize])
    }

    /// Adds a contact, or replaces the one for its (debtor, number); returns the one replaced.
    /// `None` (and nothing stored) for a number that is not E.164 or a `from` outside
    /// [`FROM_MIN`]..=[`FROM_MAX`] — the decoder refuses both.
    pub fn upsert(&mut self, c: &Contact) -> Result<Option<Fact>, &'static str> {
        let phone = pack_e164(&c.phone).ok_or("the number is not E.164")?;
        if c.from < FROM_MIN || c.from > FROM_MAX {
            return Err("from is outside 1970-01-01 to 2106-02-07");
        }
        let e = Entry {
            phone,
            from: (c.from.0 / NANOS_PER_SEC) as u32,
            relation: c.relation,
            source: c.source,
            consent: c.consent,
        };
        let book = match self.book_mut(&c.debtor_id) {
            Some(b) => b,
            None => {
                let i = self.books.len() as u32;
                self.books.push(Book {
                    debtor: c.debtor_id.as_str().into(),
                    entries: Vec::new(),
                });
                let (books, hasher) = (&self.books, self.hasher);
                self.index
                    .insert_unique(hasher.hash_one(&*c.debtor_id), i, |&j| {
                        hasher.hash_one(&*books[j as usize].debtor)
                    });
                &mut self.books[i as usize]
            }
        };
        match book.entries.iter_mut().find(|x| x.phone == phone) {
            Some(x) => {
                let old = x.fact();
                *x = e;
                Ok(Some(old))
            }
            None => {
                book.entries.push(e);
                self.len += 1;
                Ok(None)
            }
        }
    }

    /// Removes the contact for (debtor, number) (a tombstone); returns it.
    pub fn remove(&mut self, debtor: &str, phone: &str) -> Option<Fact> {
        let phone = pack_e164(phone)?;
        let book = self.book_mut(debtor)?;
        let at = book.entries.iter().position(|x| x.phone == phone)?;
        let old = book.entries.swap_remove(at).fact();
        self.len -= 1;
        Some(old)
    }

    /// What the book says of `phone` (E.164) for `debtor`, whenever it holds from.
    pub fn get(&self, debtor: &str, phone: &str) -> Option<Fact> {
        let phone = pack_e164(phone)?;
        self.book(debtor)?
            .entries
            .iter()
            .find(|x| x.phone == phone)
            .map(Entry::fact)
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
        if !(wants_relation || wants_source) {
            return Filled::default();
        }
        let Some(f) = self.fact_for(call) else {
            return Filled::default();
        };
        let relation = wants_relation && f.relation != Relation::Unknown;
        if relation {
            call.relation = f.relation;
        }
        if wants_source {
            call.number_source = Some(f.source);
        }
        call.filled = Filled {
            relation: relation || call.filled.relation,
            number_source: wants_source || call.filled.number_source,
        };
        Filled {
            relation,
            number_source: wants_source,
        }
    }

    /// Every contact, by debtor then number (snapshots of the book for tests and tools).
    pub fn all(&self) -> Vec<Contact> {
        let mut v: Vec<Contact> = self
            .books
            .iter()
            .flat_map(|b| {
                b.entries.iter().map(|e| Contact {
                    debtor_id: Text::from(&*b.debtor),
                    phone: unpack_e164(e.phone),
                    relation: e.relation,
                    source: e.source,
                    consent: e.consent,
                    from: e.fact().from,
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

    /// How many debtors have a book.
    pub fn debtors(&self) -> usize {
        self.index.len()
    }

    /// Heap bytes held (from capacities: the debtor vector, the index, the entries, and the
    /// debtor ids).
    pub fn heap_bytes(&self) -> usize {
        self.books.capacity() * std::mem::size_of::<Book>()
            + self.index.capacity() * 5
            + self
                .books
                .iter()
                .map(|b| b.entries.capacity() * std::mem::size_of::<Entry>() + b.debtor.len())
                .sum::<usize>()
    }

    /// Gives back spare capacity (after a bulk load).
    pub fn shrink_to_fit(&mut self) {
        self.books.shrink_to_fit();
        for b in &mut self.books {
            b.entries.shrink_to_fit();
        }
        let (books, hasher) = (&self.books, self.hasher);
        self.index
            .shrink_to_fit(|&j| hasher.hash_one(&*books[j as usize].debtor));
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
    fn an_entry_is_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 16);
    }

    #[test]
    fn e164_packs_one_to_one() {
        for p in ["+1", "+8613800138000", "+390612345678", "+999999999999999"] {
            assert_eq!(unpack_e164(pack_e164(p).unwrap()), p);
        }
        // Italian numbers keep the zero after the country code: distinct from the number without.
        assert_ne!(pack_e164("+39061234"), pack_e164("+3961234"));
        for bad in [
            "",
            "+",
            "8613800138000",
            "+0123",
            "+1234567890123456",
            "+1-800",
        ] {
            assert_eq!(pack_e164(bad), None, "{bad:?}");
        }
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
        assert_eq!(b.enrich(&mut early), Filled::default());
        assert_eq!(early.number_source, None);
        let mut call = at(100, Relation::Unknown);
        assert_eq!(
            b.enrich(&mut call),
            Filled {
                relation: true,
                number_source: true
            }
        );
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
