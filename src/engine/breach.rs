//! What the engine finds: [`Breach`] values. They hold numbers, instants and call ids, never
//! English text or formatted times; `crate::alert` renders Alert v1 from them, off the engine
//! thread where the caller has one.

use super::event::Call;
use super::time::Ts;
use compact_str::CompactString;

/// A call id as evidence: inline up to 24 bytes, so copying one out of the engine allocates
/// nothing for the ids dialers use.
pub type CallId = CompactString;

/// A breach's evidence: up to [`EVIDENCE_INLINE`] ids (the default `evidence_limit`) inside the
/// [`Breach`] itself. The alert writer renders breaches on another thread; with the ids in a
/// heap block of their own, each breach cost the engine thread an allocation from blocks the
/// writer had freed on its core — 7–10% of that thread in replay with alerts written
/// (docs/performance.md, "Evidence inline, and read one call later"). Inline, the ids travel in the
/// batch's recycled `Vec<Breach>`.
pub type Evidence = smallvec::SmallVec<[CallId; EVIDENCE_INLINE]>;

/// How many evidence ids a [`Breach`] holds without allocating.
pub const EVIDENCE_INLINE: usize = 10;

/// Which call breached.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// The call being judged (or checked): the caller holds it.
    Judged,
    /// An earlier call, pushed over a limit by the call being judged (a late breach). The
    /// engine gives back what an alert shows of it: ids, event time, the string fields, the
    /// relation, the callee's zone and `attrs` (the other fields are at their defaults).
    Earlier(Box<Call>),
    /// An earlier call whose string fields (debtor, phone, account, agent, agency, creditor,
    /// campaign) are still to be read: made only by an engine that defers them
    /// ([`super::EngineSettings::defer_late_strings`]), and turned into [`Subject::Earlier`] by
    /// [`super::intern::SharedInterner::read_strings`] before the breach is rendered.
    Unread(Box<Call>),
}

/// One breach of one rule by one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Breach {
    /// The rule's index in [`super::Engine::rules`].
    pub rule: u16,
    /// The breaching call.
    pub subject: Subject,
    /// The count (cap), the number of triggers in force (cooldown), or 1.
    pub observed: u32,
    /// The limit (cap), or 0 where none is allowed.
    pub limit: u32,
    /// The window or period that made the breach (cap, cooldown): from, to.
    pub bounds: Option<(Ts, Ts)>,
    /// Calling hours: the call fell on a holiday (otherwise outside every allowed slot).
    pub holiday: bool,
    /// Call ids that made the count, newest first, at most `evidence_limit`.
    pub evidence: Evidence,
    /// Found when a call (or, for a status rule, the status) arrived after the breaching call.
    pub late: bool,
    /// The status that made a status rule's breach (`None` for other kinds).
    pub status: Option<Box<StatusCause>>,
    /// The contact-book fact that made a contact rule's breach, when the event's own values
    /// did not (`None` otherwise, and for other kinds).
    pub contact: Option<Box<ContactCause>>,
}

/// What a contact breach names of the book's fact (`engine::contacts::Fact`).
#[derive(Debug, Clone, PartialEq)]
pub struct ContactCause {
    /// Whose number it is, in relation to the debtor.
    pub relation: super::event::Relation,
    /// Where the number came from.
    pub source: super::event::NumberSource,
    /// Known from.
    pub from: Ts,
}

impl ContactCause {
    /// What a breach names of `f`.
    pub fn of(f: &super::contacts::Fact) -> ContactCause {
        ContactCause {
            relation: f.relation,
            source: f.source,
            from: f.from,
        }
    }
}

/// What a status breach names of the status in force (`engine::status::Status`).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusCause {
    /// The status record's id.
    pub id: CompactString,
    /// Its kind.
    pub kind: super::event::StatusKind,
    /// In force from.
    pub from: Ts,
    /// In force until (exclusive), if it ends.
    pub until: Option<Ts>,
    /// Who recorded it.
    pub source: CompactString,
}

impl StatusCause {
    /// What a breach names of `st`.
    pub fn of(st: &super::status::Status) -> StatusCause {
        StatusCause {
            id: st.id.clone(),
            kind: st.kind,
            from: st.from,
            until: st.until,
            source: st.source.clone(),
        }
    }
}

impl Breach {
    /// The breaching call: `judged` for [`Subject::Judged`], else the earlier call.
    pub fn call<'a>(&'a self, judged: &'a Call) -> &'a Call {
        match &self.subject {
            Subject::Judged => judged,
            Subject::Earlier(c) => c,
            Subject::Unread(c) => {
                debug_assert!(false, "an earlier call's strings were not read");
                c
            }
        }
    }
}

/// What a dialer should hold back after a call: the call brought a cap's key to its limit, or
/// started a cooldown, so the same call again would breach `rule` from `from` until `until`
/// (event time; `until` is the first instant that rule would let it through).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    /// The rule's index in [`super::Engine::rules`].
    pub rule: u16,
    /// The call's own time.
    pub from: Ts,
    /// When the rule lets the same call through again.
    pub until: Ts,
}
