//! Debtor statuses in force ([`Statuses`]): reference data that makes calls unlawful while it
//! holds — an attorney's representation, a cease request, a number opted out. The `status` rule
//! kind (`kinds/status.rs`) judges calls against them; `crate::reference` decodes Status v1
//! records into [`Status`] values.
//!
//! A status applies to a call when the call's event time is in `[from, until)`, every scope
//! field the status names (debtor, account, phone) equals the call's, the call's channel is
//! among the status's channels (all when none are named), the call's number is not one of the
//! status's allowed numbers (the attorney's, say), and — when the status names local windows
//! (an inconvenient time) — the call's local time of day is inside one of them.

use super::event::{Call, Channel, StatusKind, Text};
use super::time::{Local, Ts};
use hashbrown::HashTable;
use std::hash::BuildHasher;

/// One status, decoded and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// The record's key: a later record with the same id replaces this one.
    pub id: Text,
    /// What it is.
    pub kind: StatusKind,
    /// The debtor it applies to, if scoped by debtor.
    pub debtor_id: Option<Text>,
    /// The account it applies to (narrows a debtor's statuses to one account).
    pub account_id: Option<Text>,
    /// The number it applies to (E.164), if scoped by number.
    pub phone: Option<Text>,
    /// Channels it applies to, a bit per `Channel as u8`; 0 for every channel.
    pub channels: u8,
    /// In force from (event time, inclusive).
    pub from: Ts,
    /// In force until (exclusive); `None` while open-ended.
    pub until: Option<Ts>,
    /// Numbers (E.164) calls to which it does not cover (e.g. the consumer's attorney).
    pub allow_phones: Vec<Text>,
    /// Local windows `[from, to)` in seconds of the day (`to < from` crosses midnight) in which
    /// it applies; empty for the whole day.
    pub windows: Vec<(u32, u32)>,
    /// Who recorded it (a system or team name).
    pub source: Text,
}

impl Status {
    /// Whether the status is in force at `t` (ns).
    #[inline]
    pub fn in_force(&self, t: i64) -> bool {
        self.from.0 <= t && self.until.is_none_or(|u| t < u.0)
    }

    /// Whether a local time of day (seconds) is inside the status's windows.
    pub fn in_window(&self, sec_of_day: u32) -> bool {
        self.windows.is_empty()
            || self.windows.iter().any(|&(from, to)| {
                if from < to {
                    from <= sec_of_day && sec_of_day < to
                } else {
                    sec_of_day >= from || sec_of_day < to
                }
            })
    }

    /// Whether it covers a call with these fields; `local` gives the call's local time in the
    /// rule's zone, asked only when the status has windows.
    #[allow(clippy::too_many_arguments)]
    pub fn covers(
        &self,
        t: i64,
        debtor_id: &str,
        account_id: Option<&str>,
        phone: &str,
        channel: Channel,
        local: impl FnOnce() -> Local,
    ) -> bool {
        self.in_force(t)
            && self.debtor_id.as_deref().is_none_or(|d| d == debtor_id)
            && self
                .account_id
                .as_deref()
                .is_none_or(|a| Some(a) == account_id)
            && self.phone.as_deref().is_none_or(|p| p == phone)
            && (self.channels == 0 || self.channels & (1 << channel as u8) != 0)
            && !self.allow_phones.iter().any(|p| p == phone)
            && (self.windows.is_empty() || self.in_window(local().sec_of_day))
    }

    /// Whether it covers `call` ([`Status::covers`] with the call's fields).
    pub fn covers_call(&self, call: &Call, local: impl FnOnce() -> Local) -> bool {
        self.covers(
            call.occurred_at.0,
            &call.debtor_id,
            call.account_id.as_deref(),
            &call.phone,
            call.channel,
            local,
        )
    }

    /// The scope value the status has for a rule keyed by `field`, if any.
    pub fn scope(&self, field: Scope) -> Option<&str> {
        match field {
            Scope::Debtor => self.debtor_id.as_deref(),
            Scope::Account => self.account_id.as_deref(),
            Scope::Phone => self.phone.as_deref(),
        }
    }
}

/// The field a `status` rule finds statuses by: the status's scope must name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `debtor_id`
    Debtor,
    /// `account_id`
    Account,
    /// `phone`
    Phone,
}

impl Scope {
    const ALL: [Scope; 3] = [Scope::Debtor, Scope::Account, Scope::Phone];

    /// The call's value of this field (`None`: a call without an account).
    pub fn of_call(self, call: &Call) -> Option<&str> {
        match self {
            Scope::Debtor => Some(&call.debtor_id),
            Scope::Account => call.account_id.as_deref(),
            Scope::Phone => Some(&call.phone),
        }
    }
}

/// The statuses known, by id and by each scope value.
///
/// Compact: the statuses in slots; the id index and the three scope indexes are hash tables of
/// slot numbers (4 bytes an entry, the strings compared in the slots), and the statuses sharing
/// a scope value are linked through `next` (the table holds the first). Kept apart in a map of
/// strings to vectors, they cost twice the statuses themselves.
#[derive(Debug, Default, Clone)]
pub struct Statuses {
    /// Slots; `None` for one freed. Boxed: a vector of whole statuses (200 bytes each) copied
    /// them all at every doubling, and resident memory peaked at half as much again.
    slots: Vec<Option<Box<Status>>>,
    /// Per slot and scope, the next slot with the same scope value ([`NIL`]: none).
    next: Vec<[u32; 3]>,
    free: Vec<u32>,
    by_id: HashTable<u32>,
    /// Scope value → the first of its slots, one table per [`Scope`].
    by_scope: [HashTable<u32>; 3],
    hasher: foldhash::fast::FixedState,
}

/// No slot.
const NIL: u32 = u32::MAX;

impl Statuses {
    fn hash(&self, s: &str) -> u64 {
        self.hasher.hash_one(s)
    }

    fn status(&self, slot: u32) -> &Status {
        self.slots[slot as usize]
            .as_ref()
            .expect("indexes name live slots")
    }

    /// The first slot whose `scope` is `value`.
    fn head(&self, scope: Scope, value: &str) -> Option<u32> {
        let slots = &self.slots;
        self.by_scope[scope as usize]
            .find(self.hash(value), |&s| {
                slots[s as usize].as_ref().and_then(|st| st.scope(scope)) == Some(value)
            })
            .copied()
    }

    /// Adds a status, or replaces the one with its id; returns the one replaced.
    pub fn upsert(&mut self, st: Status) -> Option<Status> {
        let old = self.remove(&st.id);
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.next.push([NIL; 3]);
                (self.slots.len() - 1) as u32
            }
        };
        let mut next = [NIL; 3];
        for sc in Scope::ALL {
            let Some(v) = st.scope(sc) else { continue };
            let h = self.hash(v);
            let slots = &self.slots;
            let table = &mut self.by_scope[sc as usize];
            let found = table.find_mut(h, |&s| {
                slots[s as usize].as_ref().and_then(|x| x.scope(sc)) == Some(v)
            });
            match found {
                Some(head) => {
                    next[sc as usize] = *head;
                    *head = slot;
                }
                None => {
                    let hasher = self.hasher;
                    // (The new status is not in its slot yet: rehashing reads the others.)
                    table.insert_unique(h, slot, |&s| {
                        let x = slots[s as usize].as_ref().and_then(|x| x.scope(sc));
                        hasher.hash_one(x.unwrap_or_default())
                    });
                }
            }
        }
        self.next[slot as usize] = next;
        let h = self.hash(&st.id);
        let (slots, hasher) = (&self.slots, self.hasher);
        self.by_id.insert_unique(h, slot, |&s| {
            hasher.hash_one(slots[s as usize].as_ref().map_or("", |x| x.id.as_str()))
        });
        self.slots[slot as usize] = Some(Box::new(st));
        old
    }

    /// Removes the status with `id` (a tombstone); returns it.
    pub fn remove(&mut self, id: &str) -> Option<Status> {
        let h = self.hash(id);
        let slots = &self.slots;
        let slot = match self.by_id.find_entry(h, |&s| {
            slots[s as usize].as_ref().map(|x| x.id.as_str()) == Some(id)
        }) {
            Ok(e) => e.remove().0,
            Err(_) => return None,
        };
        for sc in Scope::ALL {
            let Some(v) = self.status(slot).scope(sc).map(Text::from) else {
                continue;
            };
            let after = self.next[slot as usize][sc as usize];
            let head = self
                .head(sc, &v)
                .expect("a scope value of a live status is indexed");
            if head == slot {
                let hv = self.hash(&v);
                let Ok(e) = self.by_scope[sc as usize].find_entry(hv, |&s| s == slot) else {
                    unreachable!("the head was just found")
                };
                if after == NIL {
                    e.remove();
                } else {
                    *e.into_mut() = after;
                }
            } else {
                let mut at = head;
                while self.next[at as usize][sc as usize] != slot {
                    at = self.next[at as usize][sc as usize];
                }
                self.next[at as usize][sc as usize] = after;
            }
        }
        self.next[slot as usize] = [NIL; 3];
        self.free.push(slot);
        self.slots[slot as usize].take().map(|b| *b)
    }

    /// The status with `id`.
    pub fn get(&self, id: &str) -> Option<&Status> {
        let slots = &self.slots;
        self.by_id
            .find(self.hash(id), |&s| {
                slots[s as usize].as_ref().map(|x| x.id.as_str()) == Some(id)
            })
            .map(|&s| self.status(s))
    }

    /// The statuses whose `scope` is `value`, in no particular order.
    pub fn by_scope(&self, scope: Scope, value: &str) -> impl Iterator<Item = &Status> {
        let mut at = self.head(scope, value).unwrap_or(NIL);
        std::iter::from_fn(move || {
            if at == NIL {
                return None;
            }
            let st = self.status(at);
            at = self.next[at as usize][scope as usize];
            Some(st)
        })
    }

    /// The status that makes `call` breach a rule finding statuses by `scope` and caring for
    /// `kinds` (a bit per `StatusKind as u8`): of those covering it, the one in force first
    /// (then by id), so that which one an alert names does not depend on hash order.
    pub fn covering(
        &self,
        scope: Scope,
        kinds: u16,
        call: &Call,
        mut local: impl FnMut() -> Local,
    ) -> Option<&Status> {
        self.by_scope(scope, scope.of_call(call)?)
            .filter(|st| kinds & (1 << st.kind as u16) != 0)
            .filter(|st| st.covers_call(call, &mut local))
            .min_by(|a, b| (a.from, &a.id).cmp(&(b.from, &b.id)))
    }

    /// Every status, sorted by id (snapshots, tests).
    pub fn all(&self) -> Vec<&Status> {
        let mut v: Vec<&Status> = self.slots.iter().flatten().map(|b| &**b).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Every status, by value, in no particular order.
    pub fn into_all(self) -> Vec<Status> {
        self.slots.into_iter().flatten().map(|b| *b).collect()
    }

    /// How many statuses are known.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether none is known.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Statuses in force at `t`, by kind (`StatusKind as usize`).
    pub fn in_force_by_kind(&self, t: Ts) -> [u64; StatusKind::ALL.len()] {
        let mut n = [0u64; StatusKind::ALL.len()];
        for st in self.slots.iter().flatten() {
            if st.in_force(t.0) {
                n[st.kind as usize] += 1;
            }
        }
        n
    }

    /// Heap bytes held (an estimate from capacities: slots, index maps, and strings too long
    /// to be inline).
    pub fn heap_bytes(&self) -> usize {
        let text = |t: &Text| {
            if t.is_heap_allocated() {
                t.capacity()
            } else {
                0
            }
        };
        let status = |st: &Status| {
            st.allow_phones.capacity() * std::mem::size_of::<Text>()
                + st.windows.capacity() * 8
                + st.allow_phones.iter().map(text).sum::<usize>()
        };
        self.slots.capacity() * 8
            + self.next.capacity() * 12
            + self.free.capacity() * 4
            + self
                .slots
                .iter()
                .flatten()
                .map(|st| std::mem::size_of::<Status>() + status(st))
                .sum::<usize>()
            + [&self.by_id]
                .into_iter()
                .chain(&self.by_scope)
                .map(|t| t.capacity() * 5)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(id: &str, debtor: Option<&str>, phone: Option<&str>) -> Status {
        Status {
            id: id.into(),
            kind: StatusKind::CeaseCommunication,
            debtor_id: debtor.map(Text::from),
            account_id: None,
            phone: phone.map(Text::from),
            channels: 0,
            from: Ts(0),
            until: None,
            allow_phones: Vec::new(),
            windows: Vec::new(),
            source: "t".into(),
        }
    }

    fn ids<'a>(it: impl Iterator<Item = &'a Status>) -> Vec<String> {
        let mut v: Vec<String> = it.map(|s| s.id.to_string()).collect();
        v.sort();
        v
    }

    /// The indexes agree with a plain list of the statuses through any sequence of inserts,
    /// replacements and removals (removing heads, middles and tails of the scope lists).
    #[test]
    fn indexes_follow_inserts_replacements_and_removals() {
        let mut s = Statuses::default();
        let mut model: Vec<Status> = Vec::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for step in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = format!("s{}", x % 40);
            let debtor = ["d0", "d1", "d2"][(x >> 8) as usize % 3];
            let phone = ["+1", "+2"][(x >> 12) as usize % 2];
            match (x >> 16) % 4 {
                0 => {
                    let removed = s.remove(&id).map(|v| v.id.to_string());
                    let i = model.iter().position(|m| m.id == id);
                    assert_eq!(removed, i.map(|i| model.remove(i).id.to_string()), "{step}");
                }
                k => {
                    let new = st(&id, (k != 1).then_some(debtor), (k != 2).then_some(phone));
                    let old = s.upsert(new.clone()).map(|v| v.id.to_string());
                    let i = model.iter().position(|m| m.id == id);
                    assert_eq!(old, i.map(|i| model.remove(i).id.to_string()), "{step}");
                    model.push(new);
                }
            }
            assert_eq!(s.len(), model.len());
            for d in ["d0", "d1", "d2"] {
                let want: Vec<String> = {
                    let mut v: Vec<String> = model
                        .iter()
                        .filter(|m| m.debtor_id.as_deref() == Some(d))
                        .map(|m| m.id.to_string())
                        .collect();
                    v.sort();
                    v
                };
                assert_eq!(ids(s.by_scope(Scope::Debtor, d)), want, "{step} {d}");
            }
            for p in ["+1", "+2"] {
                let n = model
                    .iter()
                    .filter(|m| m.phone.as_deref() == Some(p))
                    .count();
                assert_eq!(s.by_scope(Scope::Phone, p).count(), n, "{step} {p}");
            }
            for m in &model {
                assert_eq!(s.get(&m.id), Some(m));
            }
        }
    }
}
