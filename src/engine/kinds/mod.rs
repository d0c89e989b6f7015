//! The rule kinds, one file each. A kind owns its evaluation, its evidence and its window
//! bounds; [`ingest`] and [`check`] dispatch to it (one line each per kind), and a kind's
//! `ingest` and `check` judge through the same functions, so the pre-dial check says exactly
//! what ingesting the call would.
//!
//! Adding a kind: a file here with `ingest` and `check`, its [`Body`] variant in `rule`, and
//! a line in each dispatch below.

pub(super) mod calling_hours;
pub(super) mod cap;
pub(super) mod contact;
pub(super) mod cooldown;
pub(super) mod forbid;
pub(super) mod status;

use super::breach::{Breach, CallId, Subject};
use super::event::{Call, StrField};
use super::intern::{SharedInterner, Sym};
use super::rule::{Body, Rule, ZoneRule};
use super::store::{Record, Slab};
use super::time::{Local, OffsetSpan};
use super::window::{Entry, Key, WindowState, Windows, RESERVED};
use jiff::tz::TimeZone;

/// Read-only views of the engine a kind needs while it updates one rule's windows.
pub(super) struct Ctx<'a> {
    /// Retained calls.
    pub records: &'a Slab,
    /// Reserved attempts (slots tagged with [`RESERVED`]).
    pub reserved: &'a Slab,
    pub interner: &'a SharedInterner,
    pub callee_zones: &'a [TimeZone],
    pub evidence_limit: usize,
    /// Whether breaches state their window's bounds ([`super::EngineSettings::window_bounds`]).
    pub bounds: bool,
    /// The tagged slot of the judged candidate's own reservation (its `call_id` reserved
    /// before), which its check must not count a second time; `u32::MAX` for none.
    pub own: u32,
    /// The candidate's symbols when it is a retained call (the suppression holds of a call
    /// just accepted): its keys are read from them instead of looked up in the interner,
    /// whose lock a decoder thread may hold.
    pub known: Option<[Sym; 7]>,
    /// The debtor statuses known (reference data), for `status` rules.
    pub statuses: &'a super::status::Statuses,
    /// The lender's contact book (reference data), for `contact` rules.
    pub contacts: &'a super::contacts::Contacts,
    /// Whether an earlier call named in a late breach is given with its strings unread
    /// ([`super::EngineSettings::defer_late_strings`]).
    pub defer: bool,
}

impl Ctx<'_> {
    /// The slab holding `slot`, and the slot's index in it.
    #[inline]
    fn slab(&self, slot: u32) -> (&Slab, u32) {
        slab_of(self.records, self.reserved, slot)
    }

    /// The record of the call (or reserved attempt) in `slot`.
    #[inline]
    pub fn record(&self, slot: u32) -> &Record {
        let (slab, i) = self.slab(slot);
        &slab[i as usize]
    }

    /// The subject of a breach by the call in `slot`, while the call in `judged` is judged.
    pub fn subject(&self, slot: u32, judged: u32) -> Subject {
        if slot == judged {
            Subject::Judged
        } else if self.defer {
            // Its strings are read by the thread that renders the breach: here they would be
            // read under the interner's lock, which a decoder thread may hold.
            let (slab, i) = self.slab(slot);
            self.interner.defer_one();
            Subject::Unread(Box::new(slab.to_call_unread(
                i,
                self.interner.id(),
                self.callee_zones,
            )))
        } else {
            let (slab, i) = self.slab(slot);
            Subject::Earlier(Box::new(slab.to_call(
                i,
                &self.interner.lock(),
                self.callee_zones,
            )))
        }
    }

    /// Starts loading the ids of the call in `slot` ([`Ctx::id`] reads them).
    #[inline]
    pub fn prefetch_id(&self, slot: u32) {
        let (slab, i) = self.slab(slot);
        crate::engine::prefetch(slab.ids(i));
    }

    /// The id of the call in `slot`, as evidence.
    pub fn id(&self, slot: u32) -> CallId {
        let (slab, i) = self.slab(slot);
        slab.evidence_id(i)
    }

    /// The zone `rule` resolves for the retained call in `slot`.
    pub fn record_zone<'r>(&'r self, rule: &'r Rule, slot: u32) -> &'r TimeZone {
        match &rule.zone {
            ZoneRule::Fixed(tz) => tz,
            ZoneRule::Callee(_) => self.callee_zone(rule, self.record(slot).callee_zone),
        }
    }

    /// The zone `rule` resolves for a call whose callee zone (as a record holds it: 0 for
    /// none, else 1 + an index into the engine's table) is `z`.
    pub fn callee_zone<'r>(&'r self, rule: &'r Rule, z: u16) -> &'r TimeZone {
        match (&rule.zone, z) {
            (ZoneRule::Fixed(tz), _) | (ZoneRule::Callee(tz), 0) => tz,
            (ZoneRule::Callee(_), z) => &self.callee_zones[z as usize - 1],
        }
    }

    /// The key of the retained call in `slot` for `rule`; `None` if it lacks a key field.
    /// Always inlined: called, it wrote the key to memory four bytes at a time and its caller
    /// read it back eight and sixteen at a time, loads the store buffer cannot forward, each
    /// waiting for the stores to reach the cache — a sixth of `apply_to`'s samples sat on those
    /// two loads (docs/performance.md, "A key read back as it was written").
    #[inline(always)]
    pub fn key_of(&self, rule: &Rule, slot: u32) -> Option<Key> {
        let rec = self.record(slot);
        let mut key = [Sym::NONE; 6];
        for (i, f) in rule.key.iter().enumerate() {
            let s = rec.syms[*f as usize];
            if s.is_none() {
                return None;
            }
            key[i] = s;
        }
        Some(key)
    }

    /// The key of a call not retained (a candidate): `None` if it lacks a key field;
    /// `Some(None)` if some key value was never seen (so no window exists).
    pub fn lookup_key(&self, rule: &Rule, call: &Call) -> Option<Option<Key>> {
        let mut key = [Sym::NONE; 6];
        if let Some(syms) = &self.known {
            for (i, f) in rule.key.iter().enumerate() {
                key[i] = syms[*f as usize];
                if key[i].is_none() {
                    return None;
                }
            }
            return Some(Some(key));
        }
        let mut known = true;
        let interner = self.interner.lock();
        for (i, f) in rule.key.iter().enumerate() {
            let s = call.str_field(*f)?;
            match interner.lookup(s) {
                Some(sym) => key[i] = sym,
                None => known = false,
            }
        }
        Some(known.then_some(key))
    }

    /// The symbol of the candidate's string field `f`: [`Sym::NONE`] if the call lacks it; a
    /// symbol no string has if the value was never seen (it equals no value in any window).
    pub fn lookup_field(&self, call: &Call, f: StrField) -> Sym {
        if let Some(syms) = &self.known {
            return syms[f as usize];
        }
        call.str_field(f).map_or(Sym::NONE, |s| {
            self.interner.lock().lookup(s).unwrap_or(Sym(u32::MAX - 1))
        })
    }
}

/// The judged call's local time per zone. A fixed zone's is worked out from its offset span
/// (`time::OffsetSpan`: two comparisons and the arithmetic of a day and a second of it) for each
/// rule that reads it; the callee's zone, which takes a search of its transitions, once per
/// call. A fixed zone's was memoised per call as well, as the callee's is: the memo, written a
/// field at a time and read back sixteen bytes at once, made a load the store buffer cannot
/// forward, and waiting for it cost more than working the time out again (docs/performance.md,
/// "A key read back as it was written").
pub(super) struct Locals<'a> {
    zones: &'a mut [(TimeZone, OffsetSpan)],
    callee: Option<Local>,
    /// The last fixed zone asked for and the call's local time there: the rules of a policy
    /// mostly read one zone (four reads a call on the default policy), and working the local
    /// time out again each time was a third of a thousand instructions a call on the engine
    /// thread.
    fixed: Option<(usize, Local)>,
}

impl<'a> Locals<'a> {
    pub fn new(zones: &'a mut [(TimeZone, OffsetSpan)]) -> Locals<'a> {
        Locals {
            zones,
            callee: None,
            fixed: None,
        }
    }

    /// `call`'s local time in the zone of `rule`, whose fixed zone (if any) is `zone_slot` in
    /// the engine's zone table.
    pub fn get(&mut self, rule: &Rule, zone_slot: Option<usize>, call: &Call) -> Local {
        let t = call.occurred_at;
        match zone_slot {
            Some(z) => match self.fixed {
                Some((at, l)) if at == z => l,
                _ => {
                    let (tz, span) = &mut self.zones[z];
                    let l = span.local(t, tz);
                    self.fixed = Some((z, l));
                    l
                }
            },
            None => *self
                .callee
                .get_or_insert_with(|| Local::of(t, rule.zone.for_call(call))),
        }
    }
}

/// Where one rule's windows are: its own table, or a group's shared hosts (then the table
/// holds none), with its member number there.
pub(in crate::engine) struct Store<'b> {
    pub windows: &'b mut Windows,
    pub shared: Option<(&'b mut super::shared::Group, u8)>,
}

impl<'b> Store<'b> {
    /// A step's windows, borrowed again.
    pub fn of(
        windows: &'b mut Windows,
        shared: &'b mut Option<(&mut super::shared::Group, u8)>,
    ) -> Store<'b> {
        Store {
            windows,
            shared: shared.as_mut().map(|(g, m)| (&mut **g, *m)),
        }
    }
}

/// What ingesting a call found about the same call again at its instant, for
/// [`super::Engine::holds`] right after: for each cap rule (bit `ri`, rules below 64) whose
/// window the call was counted in, whether the repeat would be over the limit. Exact while
/// nothing changes between the two (eviction between them keeps every entry of the call's own
/// window); `holds` uses it only for the call of `slot`, and counts anew where no bit is known.
#[derive(Debug, Default, Clone, Copy)]
pub(in crate::engine) struct RepeatHint {
    slot: u32,
    known: u64,
    over: u64,
}

impl RepeatHint {
    /// For the call of `slot`, nothing known yet.
    pub fn start(&mut self, slot: u32) {
        *self = RepeatHint {
            slot,
            known: 0,
            over: 0,
        };
    }

    /// Notes what rule `ri` found for the repeat.
    pub fn note(&mut self, ri: u16, over: bool) {
        if ri < 64 {
            self.known |= 1 << ri;
            self.over |= (over as u64) << ri;
        }
    }

    /// Whether the repeat of the call of `slot` is known to be within rule `ri`'s limit.
    pub fn within(&self, slot: u32, ri: u16) -> bool {
        self.slot == slot && ri < 64 && self.known >> ri & 1 == 1 && self.over >> ri & 1 == 0
    }
}

/// One rule applied to the call being ingested (already stored in `slot`).
pub(super) struct Step<'a, 'b> {
    pub ri: u16,
    pub rule: &'a Rule,
    pub zone_slot: Option<usize>,
    /// Whether the rule keeps the calls it matches ([`super::EngineSettings::late_statuses`]).
    pub keeps: bool,
    /// The call's enum values as one word ([`super::rule::facts`]), computed once per call.
    pub facts: u64,
    /// The shared windows holding this rule's, and its member number there.
    pub shared: Option<(&'b mut super::shared::Group, u8)>,
    pub windows: &'b mut Windows,
    /// The rule's keys kept without a window ([`super::EngineSettings::thin_windows`]).
    pub thin: Option<&'b mut super::thin::Thin>,
    pub ctx: Ctx<'a>,
    pub scratch: &'b mut Vec<Sym>,
    /// Where cap evidence is noted instead of read ([`super::EngineSettings::defer_evidence`]).
    pub unread: Option<&'b mut UnreadEvidence>,
    pub locals: &'b mut Locals<'a>,
    pub call: &'b Call,
    pub slot: u32,
    /// Where a cap notes what the call's repeat would find (none for reserved attempts).
    pub hint: Option<&'b mut RepeatHint>,
}

/// Of the retained calls (`records`) and the reserved attempts (`reserved`, slots tagged with
/// [`RESERVED`]), the slab holding `slot`, and the slot's index in it.
#[inline]
fn slab_of<'s>(records: &'s Slab, reserved: &'s Slab, slot: u32) -> (&'s Slab, u32) {
    if slot & RESERVED == 0 {
        (records, slot)
    } else {
        (reserved, slot & !RESERVED)
    }
}

/// Evidence noted, not yet read ([`super::EngineSettings::defer_evidence`]): for each breach
/// (its index in the `out` vector ingesting wrote it to), the slots of the calls to name.
#[derive(Default)]
pub(super) struct UnreadEvidence {
    /// Breach index and the end of its slots in `slots`.
    at: Vec<(u32, u32)>,
    slots: Vec<u32>,
}

impl UnreadEvidence {
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// Notes `slot` for the breach to be noted next ([`UnreadEvidence::close`]), and asks for
    /// its id.
    #[inline]
    pub fn note(&mut self, ctx: &Ctx<'_>, slot: u32) {
        ctx.prefetch_id(slot);
        self.slots.push(slot);
    }

    /// The slots noted since the last close are the evidence of `out[breach]`.
    pub fn close(&mut self, breach: usize) {
        self.at.push((breach as u32, self.slots.len() as u32));
    }

    /// Reads the ids into the breaches' evidence, and forgets them.
    pub fn read(&mut self, records: &Slab, reserved: &Slab, out: &mut [Breach]) {
        let mut from = 0;
        for &(b, end) in &self.at {
            let evidence = &mut out[b as usize].evidence;
            for &slot in &self.slots[from as usize..end as usize] {
                let (slab, i) = slab_of(records, reserved, slot);
                debug_assert!(slab.live(i), "evidence evicted before it was read");
                evidence.push(slab.evidence_id(i));
            }
            from = end;
        }
        self.at.clear();
        self.slots.clear();
    }
}

impl Step<'_, '_> {
    /// Whether the judged call passes `filter` (the rule's `when`, a cooldown's `after`).
    #[inline]
    pub fn passes(&self, filter: &super::rule::Filter) -> bool {
        filter.passes(self.facts, self.call)
    }

    /// The judged call's local time in this rule's zone.
    pub fn local(&mut self) -> Local {
        self.locals.get(self.rule, self.zone_slot, self.call)
    }
}

/// What applying a rule to a call did, for the per-rule counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Applied {
    /// The call is not one the rule looks at.
    Unmatched,
    /// Matched and judged.
    Matched,
    /// Matched, but it lacks a key field: not judged.
    Skipped,
}

/// Applies one rule to a call being ingested: its own breaches and the late ones it causes.
pub(super) fn ingest(step: &mut Step<'_, '_>, out: &mut Vec<Breach>) -> Applied {
    match &step.rule.body {
        Body::Cap { .. } => cap::ingest(step, out),
        Body::Cooldown { .. } => cooldown::ingest(step, out),
        Body::CallingHours { .. } => calling_hours::ingest(step, out),
        Body::Forbid => forbid::ingest(step, out),
        Body::Status { .. } => status::ingest(step, out),
        Body::Contact { .. } => contact::ingest(step, out),
    }
}

/// A candidate call (the pre-dial check's) before one rule: the rule's windows and those of
/// the attempts reserved so far, which a candidate counts as calls made.
pub(super) struct Look<'a, 'b> {
    pub ri: u16,
    pub rule: &'a Rule,
    /// The shared windows holding this rule's (then `windows` holds none), and its member
    /// number there.
    pub shared: Option<(&'a super::shared::Group, u8)>,
    pub windows: &'a Windows,
    /// The rule's keys kept without a window ([`super::EngineSettings::thin_windows`]).
    pub thin: Option<&'a super::thin::Thin>,
    pub reserved: &'a Windows,
    pub ctx: &'b Ctx<'a>,
    pub scratch: &'b mut Vec<Sym>,
    /// Where a window and its reserved entries are merged.
    pub buf: &'b mut Vec<Entry>,
    pub call: &'b Call,
}

/// The entries of `key`'s window — its calls, or its cooldown triggers — merged in time order
/// with those of the attempts reserved for the key (after calls at the same instant, where
/// ingesting them later would put them), but for the entry of reserved slot `own` (the
/// candidate's own earlier reservation: one attempt, counted once). `None` is a key never
/// seen: no entries.
#[allow(clippy::too_many_arguments)]
pub(super) fn entries<'x>(
    windows: &'x Windows,
    shared: Option<(&'x super::shared::Group, u8)>,
    thin: Option<&'x super::thin::Thin>,
    reserved: &'x Windows,
    key: Option<Key>,
    triggers: bool,
    buf: &'x mut Vec<Entry>,
    own: u32,
) -> &'x [Entry] {
    let Some(key) = key else { return &[] };
    // A key kept without a window: its entries, sorted as its window would hold them.
    if let Some(t) = thin.filter(|t| shared.is_none() && !t.is_fat(key[0])) {
        let mine = t.window_of(key[0]);
        let res = reserved.get(&key).map_or(&[][..], |w| &w.calls[..]);
        buf.clear();
        merge(&mine, res, own, buf);
        return buf;
    }
    let pick = |w: &'x WindowState| -> &'x [Entry] {
        if triggers {
            w.triggers()
        } else {
            &w.calls
        }
    };
    let main = match shared {
        Some((g, m)) => g.get(key[0]).map_or(&[][..], |h| h.seg(m, key[1])),
        None => windows.get(&key).map_or(&[][..], pick),
    };
    let res = reserved.get(&key).map_or(&[][..], pick);
    if res.is_empty() {
        return main;
    }
    buf.clear();
    merge(main, res, own, buf);
    buf
}

/// Appends to `buf` the entries of `main` and `res` merged in time order (`res`'s after
/// `main`'s at the same instant), but for the entry of reserved slot `own`.
fn merge(main: &[Entry], res: &[Entry], own: u32, buf: &mut Vec<Entry>) {
    buf.reserve(main.len() + res.len());
    let (mut i, mut j) = (0, 0);
    while i < main.len() && j < res.len() {
        if main[i].ts <= res[j].ts {
            buf.push(main[i]);
            i += 1;
        } else {
            if res[j].slot() != own {
                buf.push(res[j]);
            }
            j += 1;
        }
    }
    buf.extend_from_slice(&main[i..]);
    buf.extend(res[j..].iter().filter(|e| e.slot() != own));
}

/// Whether `rule` may keep a key whose entries carry one value without a window
/// ([`super::EngineSettings::thin_windows`]): a distinct cap with a limit of one or more (its
/// count is then within the limit while one value is counted), keyed on one field.
pub(super) fn may_thin(rule: &Rule) -> bool {
    matches!(rule.cap(), Some((_, limit, Some(_))) if limit >= 1) && rule.key.len() == 1
}

/// What one rule says of a candidate call, without recording it.
pub(super) fn check(look: &mut Look<'_, '_>) -> Option<Breach> {
    match &look.rule.body {
        Body::Cap { .. } => cap::check(look),
        Body::Cooldown { .. } => cooldown::check(look),
        Body::CallingHours { .. } => calling_hours::check(look.ri, look.rule, look.call),
        Body::Forbid => forbid::check(look.ri, look.rule, look.call),
        Body::Status { .. } => status::check(look),
        Body::Contact { .. } => contact::check(look),
    }
}

/// Whether ingesting a call interned as `syms` reads `w`, a window of its own of `rule`, beyond
/// its last entry: what [`super::Engine::warm`] asks for ahead of it.
pub(super) fn reads_window(rule: &Rule, w: &WindowState, syms: &[Sym; 7]) -> bool {
    match &rule.body {
        Body::Cap { .. } => cap::reads_window(rule, w, syms),
        _ => true,
    }
}

/// When one rule would let a candidate call through, were it placed later and nothing else
/// happened meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Clear {
    /// The rule does not object to the call at its time.
    Now,
    /// It objects, and no later time changes that (a forbidden call, a limit of zero).
    Never,
    /// It objects until at least this instant (event time, ns): it may allow the call from
    /// then on, and certainly does not before.
    From(i64),
}

/// [`Clear`] for one rule and a candidate.
pub(super) fn clear_after(look: &mut Look<'_, '_>) -> Clear {
    match &look.rule.body {
        Body::Cap { .. } => cap::clear_after(look),
        Body::Cooldown { .. } => cooldown::clear_after(look),
        Body::CallingHours { .. } => calling_hours::clear_after(look.rule, look.call),
        Body::Forbid => forbid::clear_after(look.rule, look.call),
        Body::Status { .. } => status::clear_after(look),
        Body::Contact { .. } => contact::clear_after(look),
    }
}

/// The ingest of a kind judged on reference data (`status`, `contact`): `judge` says whether a
/// call matching `when` breaches now; where records may still arrive after it ([`Step::keeps`])
/// the call joins its key's window for `lookback`, `val` in its entry and marked if it
/// breached (each call breaches a rule once), so that a record arriving later finds it.
fn held_for_late(
    step: &mut Step<'_, '_>,
    lookback: i64,
    val: Sym,
    out: &mut Vec<Breach>,
    judge: impl FnOnce(&Step<'_, '_>) -> Option<Breach>,
) -> Applied {
    if !step.passes(&step.rule.when) {
        return Applied::Unmatched;
    }
    let Some(key) = step.ctx.key_of(step.rule, step.slot) else {
        return Applied::Skipped;
    };
    let breach = judge(step);
    let breached = breach.is_some();
    out.extend(breach);
    // Kept only for reference records that may arrive after the call, to flag it then.
    if step.keeps {
        let mut e = Entry::new(
            step.call.occurred_at.0,
            0,
            step.slot,
            val,
            super::rule::Window::Rolling(lookback),
        );
        if breached {
            e.mark_breached();
        }
        match step.shared.as_mut() {
            Some((g, m)) => {
                g.insert(key[0], *m, key[1], e);
            }
            None => {
                step.windows.entry(&key).insert(e);
            }
        }
    }
    Applied::Matched
}

/// The entries a reference record arriving now may flag: those of the window keyed by the one
/// symbol `key` (a reference kind keys by one field) at or after `from`, wherever the rule
/// keeps its windows; `None` when no window.
fn held_since<'s>(store: &'s mut Store<'_>, key: Sym, from: i64) -> Option<&'s mut [Entry]> {
    let calls: &mut [Entry] = match store.shared.as_mut() {
        Some((g, m)) => g.seg_mut(key, *m, Sym::NONE)?,
        None => {
            let mut k = [Sym::NONE; 6];
            k[0] = key;
            &mut store.windows.get_mut(&k)?.calls
        }
    };
    let lo = super::window::split_near_front(calls, |y| y.ts < from);
    Some(&mut calls[lo..])
}

/// A breach by one call alone: the call is its only evidence, observed 1 against a limit of 0
/// (stateless kinds, and the reference-data kinds, which set what caused it).
fn one_call(ri: u16, subject: Subject, id: CallId, late: bool) -> Breach {
    Breach {
        rule: ri,
        subject,
        observed: 1,
        limit: 0,
        bounds: None,
        holiday: false,
        evidence: smallvec::smallvec![id],
        late,
        status: None,
        contact: None,
    }
}

/// The breach of a stateless kind: the call itself, alone, is the evidence.
fn single_call(ri: u16, call: &Call, holiday: bool) -> Breach {
    Breach {
        holiday,
        ..one_call(ri, Subject::Judged, CallId::new(&call.call_id), false)
    }
}
