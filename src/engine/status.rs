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
use hashbrown::HashMap;

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
}

/// The statuses known, by id and by each scope value.
#[derive(Debug, Default, Clone)]
pub struct Statuses {
    /// Slots; `None` for one freed.
    slots: Vec<Option<Status>>,
    free: Vec<u32>,
    by_id: HashMap<Text, u32>,
    /// Scope value → slots, one map per [`Scope`].
    by_scope: [HashMap<Text, Vec<u32>>; 3],
}

impl Statuses {
    /// Adds a status, or replaces the one with its id; returns the one replaced.
    pub fn upsert(&mut self, st: Status) -> Option<Status> {
        let old = self.remove(&st.id);
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        for sc in Scope::ALL {
            if let Some(v) = st.scope(sc) {
                self.by_scope[sc as usize]
                    .entry(Text::from(v))
                    .or_default()
                    .push(slot);
            }
        }
        self.by_id.insert(st.id.clone(), slot);
        self.slots[slot as usize] = Some(st);
        old
    }

    /// Removes the status with `id` (a tombstone); returns it.
    pub fn remove(&mut self, id: &str) -> Option<Status> {
        let slot = self.by_id.remove(id)?;
        let st = self.slots[slot as usize].take()?;
        for sc in Scope::ALL {
            if let Some(v) = st.scope(sc) {
                if let Some(list) = self.by_scope[sc as usize].get_mut(v) {
                    list.retain(|&s| s != slot);
                    if list.is_empty() {
                        self.by_scope[sc as usize].remove(v);
                    }
                }
            }
        }
        self.free.push(slot);
        Some(st)
    }

    /// The status with `id`.
    pub fn get(&self, id: &str) -> Option<&Status> {
        self.by_id
            .get(id)
            .and_then(|&s| self.slots[s as usize].as_ref())
    }

    /// The statuses whose `scope` is `value`, in no particular order.
    pub fn by_scope(&self, scope: Scope, value: &str) -> impl Iterator<Item = &Status> {
        self.by_scope[scope as usize]
            .get(value)
            .into_iter()
            .flatten()
            .filter_map(|&s| self.slots[s as usize].as_ref())
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
        let value = match scope {
            Scope::Debtor => Some(call.debtor_id.as_str()),
            Scope::Account => call.account_id.as_deref(),
            Scope::Phone => Some(call.phone.as_str()),
        }?;
        self.by_scope(scope, value)
            .filter(|st| kinds & (1 << st.kind as u16) != 0)
            .filter(|st| st.covers_call(call, &mut local))
            .min_by(|a, b| (a.from, &a.id).cmp(&(b.from, &b.id)))
    }

    /// Every status, sorted by id (snapshots, tests).
    pub fn all(&self) -> Vec<&Status> {
        let mut v: Vec<&Status> = self.slots.iter().flatten().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Every status, by value, in no particular order.
    pub fn into_all(self) -> Vec<Status> {
        self.slots.into_iter().flatten().collect()
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
        self.slots.capacity() * std::mem::size_of::<Option<Status>>()
            + self.slots.iter().flatten().map(status).sum::<usize>()
            + self.by_id.capacity() * (std::mem::size_of::<(Text, u32)>() + 1)
            + self
                .by_scope
                .iter()
                .map(|m| {
                    m.capacity() * (std::mem::size_of::<(Text, Vec<u32>)>() + 1)
                        + m.values().map(|v| v.capacity() * 4).sum::<usize>()
                })
                .sum::<usize>()
    }
}
