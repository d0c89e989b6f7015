//! Retained calls: one [`Record`] per call, in a slab of fixed chunks, with its strings
//! interned. Window entries refer to records by slot.

use super::breach::CallId;
use super::event::{Call, Relation, StrField};
use super::intern::{Interner, Sym};
use super::time::Ts;
use compact_str::CompactString;
use jiff::tz::TimeZone;

/// One retained call: what breaches about it, or citing it, need.
pub(super) struct Record {
    pub ts: i64,
    /// `call_id` followed by `event_id`, inline up to 24 bytes (no allocation, and the dedup
    /// check reads it without another cache miss); event ids are unique per call, so interning
    /// them would only add overhead.
    pub ids: CompactString,
    /// Interned string fields, indexed by `StrField as usize` (all but `event_id`).
    pub syms: [Sym; 7],
    /// Length of `call_id` within `ids`.
    pub call_id_len: u16,
    pub event_id_present: bool,
    pub relation: Relation,
    /// 1 + index into the engine's callee zone table; 0 for none.
    pub callee_zone: u16,
    pub attrs: Option<Box<Attrs>>,
    pub live: bool,
}

/// A retained call's `attrs`.
pub(super) type Attrs = Box<[(Box<str>, Box<str>)]>;

impl Record {
    pub fn call_id(&self) -> &str {
        &self.ids[..self.call_id_len as usize]
    }

    pub fn event_id(&self) -> Option<&str> {
        self.event_id_present
            .then(|| &self.ids[self.call_id_len as usize..])
    }

    /// The call id as evidence.
    pub fn evidence_id(&self) -> CallId {
        CallId::new(self.call_id())
    }

    /// What an alert shows of this call, as a [`Call`] (fields a record does not keep are at
    /// their defaults).
    pub fn to_call(&self, interner: &Interner, callee_zones: &[TimeZone]) -> Call {
        let s = |f: StrField| interner.get_opt(self.syms[f as usize]).map(str::to_owned);
        let mut c = Call::new(
            self.call_id(),
            Ts(self.ts),
            interner
                .get_opt(self.syms[StrField::DebtorId as usize])
                .unwrap_or(""),
            interner
                .get_opt(self.syms[StrField::Phone as usize])
                .unwrap_or(""),
            self.relation,
        );
        c.event_id = self.event_id().map(str::to_owned);
        c.account_id = s(StrField::AccountId);
        c.agent_id = s(StrField::AgentId);
        c.agency_id = s(StrField::AgencyId);
        c.creditor_id = s(StrField::CreditorId);
        c.campaign_id = s(StrField::CampaignId);
        c.callee_tz = match self.callee_zone {
            0 => None,
            z => Some(callee_zones[z as usize - 1].clone()),
        };
        c.attrs = self
            .attrs
            .iter()
            .flat_map(|a| a.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        c
    }
}

/// Records in fixed chunks: capacity tracks the live count closely (a `Vec` would double, and
/// records are the largest per-call structure). Slots are stable.
#[derive(Default)]
pub(super) struct Slab {
    chunks: Vec<Vec<Record>>,
    len: usize,
}

const CHUNK: usize = 4096;

impl Slab {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn capacity(&self) -> usize {
        self.chunks.len() * CHUNK
    }

    pub fn push(&mut self, r: Record) {
        if self.len == self.capacity() {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks[self.len / CHUNK].push(r);
        self.len += 1;
    }

    pub fn iter(&self) -> impl Iterator<Item = &Record> {
        self.chunks.iter().flatten()
    }
}

impl std::ops::Index<usize> for Slab {
    type Output = Record;
    #[inline]
    fn index(&self, i: usize) -> &Record {
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl std::ops::IndexMut<usize> for Slab {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut Record {
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }
}
