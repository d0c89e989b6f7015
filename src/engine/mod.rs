//! The pure engine: per-key sliding windows, rule evaluation and alerts.
//!
//! It is synchronous and deterministic. Time is data: event time comes from each call, and the
//! "now" stamped on alerts as `detected_at` is passed in by the caller. It imports no async
//! runtime, Kafka client, metrics or logging; the edges turn its [`Ingest`] results and
//! [`EngineStats`] into telemetry.
//!
//! # Semantics (DESIGN.md §3, docs/semantics.md)
//! The set of breaches is a function of the set of accepted calls, whatever their arrival order:
//! - a call x is in c's window only if t_x ≤ t_c; rolling windows hold t_c − W < t_x ≤ t_c; local
//!   windows compare local dates, each call's date taken in the zone the rule resolves for it;
//! - every rule kind is monotone, so a late call can only add breaches; those are emitted when
//!   the late call arrives, with `late: true`, and every breach is emitted exactly once;
//! - event time advances per **lane** (an input stream read in order: a Kafka partition in the
//!   service, the single input of a replay). A call more than `allowed_lateness` behind the
//!   newest event time of its own lane is refused ([`Ingest::TooLate`]); a lane that is merely
//!   behind the others is never a reason to refuse its calls;
//! - state is evicted once it is older than the largest window plus `allowed_lateness` behind the
//!   **slowest** lane that still has calls to deliver (idle lanes, caught up with their input, do
//!   not hold it back), so memory is bounded by the traffic in that span plus the lanes' skew.
//!   A call older than what was already evicted cannot be judged exactly and is refused too
//!   ([`TooLate::Evicted`]): only a lane that was idle and then delivers an old call can meet it.
//!
//! # How
//! Each stateful rule keeps a map from key (the interned values of its key fields) to a window:
//! entries sorted by event time. In-order calls append; a late call is inserted in place and the
//! calls after it within reach are re-judged. Calls themselves are stored once ([`Record`]),
//! with their strings interned, and window entries refer to them by slot.

pub mod breach;
mod bysym;
pub mod event;
pub mod intern;
mod kinds;
mod reserve;
pub mod rule;
pub use snapshot::SnapshotError;
pub use split::SplitError;
pub mod contacts;
mod shared;
mod slots;
mod snapshot;
mod split;
pub mod status;
mod store;
mod table;
mod tagged;
mod thin;
pub mod time;
mod window;

use breach::{Breach, Hold};
use event::{Call, StrField};
use hashbrown::HashMap;
use intern::{Interned, SharedInterner, Sym};
use jiff::tz::TimeZone;
use kinds::{Applied, Clear, Ctx, Locals, Look, Step};
use reserve::Reservations;
use rule::{Rule, ZoneRule};
use std::hash::BuildHasher;
use store::{Record, Slab};
use table::SHARDS;
use time::Ts;
use window::{Entry, Hasher, Windows};

/// Engine settings (validated by `config`).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// How far behind the newest event time a call may still be judged, in nanoseconds.
    pub allowed_lateness: i64,
    /// At most this many call ids in an alert's `evidence`. 0 collects none from windows
    /// (a caller that renders no alerts — a replay writing only its summary — needs none, and
    /// reading each id from its record is a cache miss).
    pub evidence_limit: usize,
    /// Whether breaches state the bounds of the window or period that made them (a cap's
    /// window, a cooldown's period from its newest trigger): on by default. A caller that
    /// renders no breach (a replay writing only its summary) turns it off, as it collects no
    /// evidence: the bounds are local-time arithmetic, and a late breach's zone is read from
    /// the breached call's record (a cache miss).
    pub window_bounds: bool,
    /// Evict expired state whenever event time has advanced this much since the last sweep
    /// (nanoseconds); `None` picks an eighth of the retention span (at least one second).
    pub sweep_every: Option<i64>,
    /// Windows or record slots an eviction pass looks at between two calls (at least one
    /// unit of work: a window shard, or a block of record slots). The default keeps each
    /// pause to a few hundred microseconds; tests make it small so passes stay under way
    /// while calls arrive.
    pub sweep_step: usize,
    /// Whether retained calls keep every string field (the default), or only those a rule
    /// reads (key and distinct fields). Only a caller that renders no alert may turn it off —
    /// a replay writing only its summary: an earlier call shown in a late breach then lacks
    /// the other fields. Nothing the engine decides depends on it.
    pub keep_call_fields: bool,
    /// Whether the contact book keeps an index by number, so a call's debtor can be found by
    /// the number it dialled (a dialer mapping's `@contact_book`; [`Engine::find_debtor`]):
    /// about 25 bytes per number more.
    pub contacts_by_number: bool,
    /// Whether debtor statuses may be applied after calls they cover ([`Engine::apply_status`]):
    /// `status` rules then keep the calls they match for their `lookback`, to flag them late.
    /// Off only for a caller that applies every status before its first call — a replay,
    /// which reads `--reference` first — and then keep nothing: a status applied later
    /// flags none of the calls judged before it (its own calls are judged against it).
    pub late_statuses: bool,
    /// [`EngineSettings::late_statuses`] for contact-book records and `contact` rules
    /// ([`Engine::apply_contact`]): off for a replay and for a service with no contacts topic.
    pub late_contacts: bool,
    /// Whether an earlier call named in a late breach comes with its string fields unread
    /// ([`breach::Subject::Unread`]), for the thread that renders the breach to read
    /// ([`intern::SharedInterner::read_strings`]) — every one, in order — instead of the engine
    /// thread reading them under the interner's lock, which a decoder thread may hold. The
    /// engine holds back the release of an evicted call's symbols until the breaches made
    /// before its eviction are read. Off by default; a replay that writes alerts turns it on.
    pub defer_late_strings: bool,
    /// Whether a cap breach found ingesting a call comes with its evidence still to be read:
    /// the engine notes the calls' slots and asks for their ids, and reads them at the next
    /// [`Engine::settle`] — or the next ingest, into the same `out` — when the cache misses
    /// have had the time of the driver's read-ahead to complete (docs/performance.md, "Evidence
    /// inline, and read one call later"). The calls named stay retained until then: they are in the
    /// window of a call judged now, which eviction never reaches before the next call. Off by
    /// default; a replay that writes alerts turns it on and settles before a batch leaves for its
    /// writer.
    pub defer_evidence: bool,
    /// Whether cap and cooldown rules whose keys (of one or two fields) start with the same
    /// field keep their windows together ([`shared`]: one host per value of that field, every
    /// member rule's windows segments of one buffer), so that judging a call reads one host
    /// per field instead of one window per rule. On by default; off, each rule keeps its own
    /// windows (the property tests judge alike either way).
    pub shared_windows: bool,
    /// Whether a distinct cap keyed on one field that keeps its own windows keeps a key whose
    /// entries carry one value without a window: its entries in a log, chained by key, until
    /// another value comes ([`thin`]). Judging such a call reads one word by the key's symbol
    /// instead of a window. Off by default; replay turns it on (the property tests judge
    /// alike either way).
    pub thin_windows: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            allowed_lateness: 3600 * time::NANOS_PER_SEC,
            evidence_limit: 10,
            window_bounds: true,
            sweep_every: None,
            sweep_step: PASS_STEP,
            keep_call_fields: true,
            contacts_by_number: false,
            late_statuses: true,
            late_contacts: true,
            defer_late_strings: false,
            defer_evidence: false,
            shared_windows: true,
            thin_windows: false,
        }
    }
}

/// What happened to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingest {
    /// Judged and retained; `skipped` rules did not apply because the call lacks a key field.
    Accepted {
        /// Rules skipped for a missing key field.
        skipped: u32,
    },
    /// A call with this `call_id` is already retained: not counted again. Another record of
    /// an attempt may still start a cooldown (a conversation on a parallel dial's other leg):
    /// the late breaches that follow from it are in the caller's buffer.
    Duplicate,
    /// Cannot be judged exactly: refused.
    TooLate(TooLate),
}

/// Why a call was too late to judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TooLate {
    /// More than `allowed_lateness` behind the newest event time of its own lane.
    Lane {
        /// The newest event time of the call's lane.
        newest: Ts,
    },
    /// Older than state already evicted (a lane that was idle while the others moved on).
    Evicted {
        /// Calls before this instant can no longer be judged.
        judged_from: Ts,
    },
}

impl std::fmt::Display for TooLate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TooLate::Lane { newest } => write!(
                f,
                "more than engine.allowed_lateness behind the newest event time read before it from the same input (Kafka partition, or replay file), {newest}"
            ),
            TooLate::Evicted { judged_from } => write!(
                f,
                "older than the retained windows, which judge calls from {judged_from} on (its partition was idle while others moved on)"
            ),
        }
    }
}

/// An input read in order whose event time advances on its own: a Kafka partition in the
/// service, the whole input of a replay (lane 0).
pub type Lane = u32;

/// Where one lane stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LaneState {
    /// Opened, nothing delivered yet: holds eviction back (its calls may be old).
    Unknown,
    /// Has delivered calls up to `newest`, and may deliver more.
    Active { newest: i64 },
    /// Caught up with its input (`newest` if it ever delivered): does not hold eviction back.
    Idle { newest: Option<i64> },
}

impl LaneState {
    fn newest(self) -> Option<i64> {
        match self {
            LaneState::Unknown => None,
            LaneState::Active { newest } => Some(newest),
            LaneState::Idle { newest } => newest,
        }
    }
}

/// What the engine knows of one lane's progress (for alignment and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneProgress {
    /// The lane.
    pub lane: Lane,
    /// The newest event time it delivered, if any.
    pub newest: Option<Ts>,
    /// Whether it holds eviction back (not idle).
    pub holding: bool,
}

/// Counters the edges export as metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Calls accepted.
    pub accepted: u64,
    /// Duplicates refused.
    pub duplicates: u64,
    /// Calls refused as too late.
    pub too_late: u64,
    /// Alerts emitted.
    pub alerts: u64,
    /// Of those, late alerts.
    pub late_alerts: u64,
    /// Calls evicted after their retention.
    pub evicted: u64,
    /// Per rule (same order as [`Engine::rules`]): calls that matched `when`/`after`.
    pub rule_matched: Vec<u64>,
    /// Per rule: calls skipped for a missing key field.
    pub rule_skipped: Vec<u64>,
    /// Per rule: alerts.
    pub rule_alerts: Vec<u64>,
}

struct RuleState {
    windows: Windows,
    /// Whether the rule keeps the calls it matches in its windows: every stateful rule, but
    /// a reference kind's only when its reference data may arrive after the calls
    /// ([`EngineSettings::late_statuses`], [`EngineSettings::late_contacts`]).
    keeps: bool,
    /// Index into the engine's zone table, or `None` for "callee".
    zone_slot: Option<usize>,
    /// The group whose shared windows hold this rule's, and its member number there (a
    /// cooldown's calls; its triggers are the next) ([`EngineSettings::shared_windows`]).
    shared: Option<(usize, u8)>,
    /// The keys whose windows would carry one value, in a log instead
    /// ([`EngineSettings::thin_windows`]).
    thin: Option<thin::Thin>,
}

/// The engine. One per partition (or one for a whole replay).
pub struct Engine {
    rules: Vec<Rule>,
    states: Vec<RuleState>,
    /// Windows shared by cap and cooldown rules' first key field ([`EngineSettings::shared_windows`]).
    groups: Vec<shared::Group>,
    /// The rules that keep windows of their own (stateful, keyed, in no group), by index:
    /// what [`Engine::warm`] and [`Engine::prewarm`] look up ahead for every call.
    own: Vec<u16>,
    /// The rules' fixed zones, each with the offset span of its last answer (the call's local
    /// time in it is worked out once per call: [`kinds::Locals`]).
    zones: Vec<(TimeZone, time::OffsetSpan)>,
    /// Distinct `callee_tz` zones seen; records hold 1 + an index into it.
    callee_zones: Vec<TimeZone>,
    callee_zone_ids: HashMap<String, u16, Hasher>,
    records: Slab,
    free: Vec<u32>,
    live: usize,
    dedup: tagged::Tagged,
    hasher: Hasher,
    interner: SharedInterner,
    /// The string fields records keep ([`EngineSettings::keep_call_fields`]), a bit each.
    kept: u8,
    /// Lane states, indexed by lane (partition numbers are small and dense).
    lanes: Vec<Option<LaneState>>,
    /// Per lane, a cutoff of its own where it is above the engine's: a lane brought in from
    /// another engine's state ([`Engine::absorb`]) keeps what that engine had evicted, while
    /// the engine's cutoff is the lower of the two. Empty until then.
    floors: Vec<i64>,
    /// The newest event time over all lanes.
    watermark: Option<i64>,
    /// Entries older than this were (or may have been) evicted: it only rises.
    cutoff: i64,
    lateness: i64,
    horizon: i64,
    sweep_every: i64,
    last_sweep: i64,
    /// The eviction pass under way, if any (see [`Pass`]).
    pass: Option<Pass>,
    pass_step: usize,
    evidence_limit: usize,
    window_bounds: bool,
    stats: EngineStats,
    /// The rules the last call judged skipped for a missing key field ([`Engine::last_skipped`]).
    last_skipped: Vec<u16>,
    scratch: Vec<Sym>,
    /// Attempts reserved by pre-dial checks (`reserve.rs`).
    reserved: Reservations,
    /// Where a check merges a window with its reserved entries.
    merge: Vec<Entry>,
    /// Empty reserved windows, one per rule: what [`Engine::holds`] merges instead, since
    /// directives come from calls alone.
    no_reserved: Vec<Windows>,
    hold_scratch: Vec<(u16, i64)>,
    /// What ingesting the last call found about its repeat, for [`Engine::holds`].
    repeat_hint: kinds::RepeatHint,
    /// The symbols of the calls one eviction step evicts (kept for its capacity).
    evicted_syms: Vec<Sym>,
    /// [`EngineSettings::defer_late_strings`].
    defer_late_strings: bool,
    /// [`EngineSettings::defer_evidence`], and the evidence to read at the next settle.
    defer_evidence: bool,
    unread_evidence: kinds::UnreadEvidence,
    /// Symbols of evicted calls held back from release, each batch with the number of earlier
    /// calls deferred when it was evicted: released once that many have been read.
    held_syms: std::collections::VecDeque<(u64, Vec<Sym>)>,
    /// Debtor statuses known (reference data), for `status` rules.
    statuses: status::Statuses,
    /// The lender's contact book (reference data): enrichment and `contact` rules. Shared, so
    /// that a service replacing its engine gives the next one the book without copying it
    /// (changed copy-on-write; only the engine holds it while calls are judged).
    contacts: std::sync::Arc<contacts::Contacts>,
}

/// What the pre-dial check says of a candidate call.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The breaches placing the call now would cause (exactly those ingesting it on time
    /// would yield for the call itself); none means it may be placed.
    pub breaches: Vec<Breach>,
    /// The earliest instant, from the call's own time on, at which the same call would breach
    /// nothing given the current state (reserved attempts included): the call's time when it
    /// is allowed now. `None` when no later time helps (a rule forbids it outright).
    pub next_allowed_at: Option<Ts>,
    /// A call with this id is already retained: ingesting it again would be a duplicate, not
    /// counted (so it is allowed, and breaches nothing).
    pub duplicate: bool,
}

impl Verdict {
    /// Whether the call may be placed.
    pub fn allowed(&self) -> bool {
        self.breaches.is_empty()
    }
}

/// How many rule-by-rule steps [`Engine::next_allowed_at`] takes before it gives up (each
/// moves past at least one instant at which some rule objects).
const NEXT_ALLOWED_STEPS: usize = 1000;

impl Engine {
    /// Builds an engine for compiled rules.
    pub fn new(rules: Vec<Rule>, settings: EngineSettings) -> Engine {
        let horizon = rules.iter().map(Rule::reach).max().unwrap_or(0);
        let lateness = settings.allowed_lateness.max(0);
        let sweep_every = settings
            .sweep_every
            .unwrap_or(((horizon + lateness) / 8).max(time::NANOS_PER_SEC))
            .max(1);
        let mut zones: Vec<TimeZone> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let mut states = rules
            .iter()
            .map(|r| {
                let zone_slot = match &r.zone {
                    ZoneRule::Fixed(tz) => {
                        Some(match names.iter().position(|n| *n == r.zone_name) {
                            Some(i) => i,
                            None => {
                                names.push(r.zone_name.clone());
                                zones.push(tz.clone());
                                zones.len() - 1
                            }
                        })
                    }
                    ZoneRule::Callee(_) => None,
                };
                RuleState {
                    windows: Windows::own(r.key.len()),
                    keeps: match r.kind {
                        rule::RuleKind::Status => settings.late_statuses,
                        rule::RuleKind::Contact => settings.late_contacts,
                        _ => r.is_stateful(),
                    },
                    zone_slot,
                    shared: None,
                    thin: None,
                }
            })
            .collect::<Vec<RuleState>>();
        // Cap and cooldown rules keyed on one or two fields, and status and contact rules that
        // hold calls, grouped by their first key field (`shared`).
        let mut groups: Vec<shared::Group> = Vec::new();
        if settings.shared_windows {
            for (ri, r) in rules.iter().enumerate() {
                // A cooldown is two members: its calls, then its triggers. A status or contact
                // rule that holds the calls it matched for late reference records is one: the
                // calls it holds, per debtor, beside the caps' (a window of its own was one
                // more slot and buffer to miss per call, and a reallocation every few calls).
                let width = match r.kind {
                    rule::RuleKind::Cap => 1,
                    rule::RuleKind::Cooldown => 2,
                    rule::RuleKind::Status | rule::RuleKind::Contact if states[ri].keeps => 1,
                    _ => continue,
                };
                if !(1..=2).contains(&r.key.len()) {
                    continue;
                }
                let lead = r.key[0] as usize;
                let g = match groups.iter().position(|g| g.lead == lead) {
                    Some(g) => g,
                    None => {
                        groups.push(shared::Group::new(lead));
                        groups.len() - 1
                    }
                };
                // Members are numbered by a byte; any past that keep their own windows.
                if groups[g].members.len() + width <= u8::MAX as usize {
                    groups[g].add(ri, width == 2);
                }
            }
            // A field leading one rule's key only: nothing to share.
            groups.retain(|g| g.rules() > 1);
            for (gi, g) in groups.iter().enumerate() {
                for (m, &ri) in g.members.iter().enumerate().rev() {
                    // A cooldown's number is its first member's (its calls).
                    states[ri].shared = Some((gi, m as u8));
                }
            }
        }
        if settings.thin_windows {
            for (r, st) in rules.iter().zip(states.iter_mut()) {
                if st.shared.is_none() && kinds::may_thin(r) {
                    st.thin = Some(thin::Thin::default());
                }
            }
        }
        let n = rules.len();
        let rules_keys: Vec<usize> = rules.iter().map(|r| r.key.len()).collect();
        let kept = if settings.keep_call_fields {
            intern::ALL_FIELDS
        } else {
            rules
                .iter()
                .flat_map(|r| r.key.iter().copied().chain(r.cap().and_then(|c| c.2)))
                .fold(0u8, |m, f| m | 1 << f as u8)
                // A status arriving after a call compares its scope with the call's record.
                | if rules.iter().any(|r| r.kind == rule::RuleKind::Status) {
                    1 << StrField::DebtorId as u8
                        | 1 << StrField::AccountId as u8
                        | 1 << StrField::Phone as u8
                } else {
                    0
                }
                // A contact arriving after a call compares its debtor and number with the
                // call's record.
                | if rules.iter().any(|r| r.kind == rule::RuleKind::Contact) {
                    1 << StrField::DebtorId as u8 | 1 << StrField::Phone as u8
                } else {
                    0
                }
        };
        let interner = SharedInterner::default();
        interner.lock().keep_only(kept);
        let reserved = Reservations::new(rules_windows(&rules_keys));
        let own = (0..n)
            .filter(|&ri| {
                let s = &states[ri];
                !rules[ri].key.is_empty() && s.keeps && s.shared.is_none()
            })
            .map(|ri| ri as u16)
            .collect();
        Engine {
            rules,
            states,
            groups,
            own,
            zones: zones
                .into_iter()
                .map(|z| (z, time::OffsetSpan::default()))
                .collect(),
            callee_zones: Vec::new(),
            callee_zone_ids: HashMap::with_hasher(Hasher::default()),
            records: Slab::default(),
            free: Vec::new(),
            live: 0,
            dedup: tagged::Tagged::default(),
            hasher: Hasher::default(),
            interner,
            kept,
            lanes: Vec::new(),
            floors: Vec::new(),
            watermark: None,
            cutoff: i64::MIN,
            lateness,
            horizon,
            sweep_every,
            last_sweep: i64::MIN,
            pass: None,
            pass_step: settings.sweep_step,
            evidence_limit: settings.evidence_limit,
            window_bounds: settings.window_bounds,
            stats: EngineStats {
                rule_matched: vec![0; n],
                rule_skipped: vec![0; n],
                rule_alerts: vec![0; n],
                ..Default::default()
            },
            last_skipped: Vec::new(),
            scratch: Vec::new(),
            reserved,
            merge: Vec::new(),
            no_reserved: rules_windows(&rules_keys),
            hold_scratch: Vec::new(),
            repeat_hint: kinds::RepeatHint::default(),
            evicted_syms: Vec::new(),
            defer_late_strings: settings.defer_late_strings,
            defer_evidence: settings.defer_evidence,
            unread_evidence: kinds::UnreadEvidence::default(),
            held_syms: std::collections::VecDeque::new(),
            statuses: status::Statuses::default(),
            contacts: std::sync::Arc::new({
                let mut book = contacts::Contacts::default();
                if settings.contacts_by_number {
                    book.index_numbers();
                }
                book
            }),
        }
    }

    /// How many rules keep their windows shared with others ([`EngineSettings::shared_windows`]).
    pub fn shared_window_rules(&self) -> usize {
        self.groups.iter().map(shared::Group::rules).sum()
    }

    /// The compiled rules, in evaluation order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Counters since start.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The rules (indexes into [`Engine::rules`]) the last accepted call skipped for a missing
    /// key field: what `Ingest::Accepted { skipped }` counts, named, for a per-rule metric.
    pub fn last_skipped(&self) -> &[u16] {
        &self.last_skipped
    }

    /// The newest event time seen, over all lanes.
    pub fn watermark(&self) -> Option<Ts> {
        self.watermark.map(Ts)
    }

    /// Opens `lanes` that are not open yet: until each has delivered a call or been marked
    /// idle, nothing is evicted (their calls may be older than anything seen so far).
    pub fn open_lanes(&mut self, lanes: &[Lane]) {
        self.assert_settled();
        for &l in lanes {
            let slot = self.lane_slot(l);
            if slot.is_none() {
                *slot = Some(LaneState::Unknown);
            }
        }
    }

    /// `lane` has caught up with its input: it no longer holds eviction back. Its next call
    /// makes it active again.
    pub fn lane_idle(&mut self, lane: Lane) {
        self.assert_settled();
        let slot = self.lane_slot(lane);
        *slot = Some(LaneState::Idle {
            newest: slot.and_then(LaneState::newest),
        });
    }

    /// The newest event time `lane` delivered.
    pub fn lane_newest(&self, lane: Lane) -> Option<Ts> {
        self.lanes
            .get(lane as usize)
            .copied()
            .flatten()
            .and_then(LaneState::newest)
            .map(Ts)
    }

    /// Each open lane's progress, by lane.
    pub fn lanes(&self) -> Vec<LaneProgress> {
        self.lanes
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                l.map(|l| LaneProgress {
                    lane: i as Lane,
                    newest: l.newest().map(Ts),
                    holding: !matches!(l, LaneState::Idle { .. }),
                })
            })
            .collect()
    }

    /// The event time eviction follows: the slowest lane that holds it back; `None` while a
    /// lane has not said where it stands (nothing is evicted then). With every lane idle, the
    /// newest event time seen.
    pub fn slowest(&self) -> Option<Ts> {
        let mut slowest: Option<i64> = None;
        for l in self.lanes.iter().flatten() {
            match *l {
                LaneState::Unknown => return None,
                LaneState::Active { newest } => {
                    slowest = Some(slowest.map_or(newest, |s| s.min(newest)))
                }
                LaneState::Idle { .. } => {}
            }
        }
        slowest.or(self.watermark).map(Ts)
    }

    /// Calls before this instant can no longer be judged exactly: the state they need was
    /// evicted. `None` before the first eviction.
    pub fn judged_from(&self) -> Option<Ts> {
        (self.cutoff != i64::MIN).then(|| Ts(self.cutoff.saturating_add(self.horizon)))
    }

    fn lane_slot(&mut self, lane: Lane) -> &mut Option<LaneState> {
        let i = lane as usize;
        if self.lanes.len() <= i {
            self.lanes.resize(i + 1, None);
        }
        &mut self.lanes[i]
    }

    /// How long state is kept behind the watermark: the largest window reach plus lateness.
    pub fn retention(&self) -> i64 {
        self.horizon + self.lateness
    }

    /// Calls currently retained.
    pub fn retained_calls(&self) -> usize {
        self.live
    }

    /// Keys with a live window, over all rules.
    pub fn window_keys(&self) -> usize {
        self.states
            .iter()
            .map(|s| s.windows.len() + s.thin.as_ref().map_or(0, thin::Thin::len))
            .sum::<usize>()
            + self.groups.iter().map(shared::Group::len).sum::<usize>()
    }

    /// An estimate of the heap the engine holds, from container capacities.
    pub fn heap_bytes(&self) -> usize {
        self.heap().iter().map(|(_, b)| b).sum()
    }

    /// [`Engine::heap_bytes`] by structure: records, window entries, window maps, the dedup
    /// table and free list, the interner, the debtor statuses, the contact book.
    pub fn heap(&self) -> [(&'static str, usize); 7] {
        let (maps, entries) = self
            .states
            .iter()
            .map(|s| {
                let (m, e) = s.windows.heap_bytes();
                (m, e + s.thin.as_ref().map_or(0, thin::Thin::heap_bytes))
            })
            .fold((0, 0), |(a, b), (m, e)| (a + m, b + e));
        let (maps, entries) = self
            .groups
            .iter()
            .map(shared::Group::heap_bytes)
            .fold((maps, entries), |(a, b), (m, e)| (a + m, b + e));
        let recs = self.records.capacity()
            * (std::mem::size_of::<Record>() + std::mem::size_of::<store::Ids>())
            + self.records.spilled_bytes();
        [
            ("records", recs),
            ("window entries", entries),
            ("window maps", maps),
            ("dedup", self.dedup.buckets() * 5 + self.free.capacity() * 4),
            ("interner", self.interner.lock().heap_bytes()),
            ("statuses", self.statuses.heap_bytes()),
            ("contacts", self.contacts.heap_bytes()),
        ]
    }

    fn call_hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    /// Judges one call of lane 0 (a single input, as in a replay): see [`Engine::ingest_on`].
    pub fn ingest(&mut self, call: &Call, out: &mut Vec<Breach>) -> Ingest {
        self.ingest_on(0, call, out)
    }

    /// Judges one call read from `lane` and records it. The breaches it causes (its own, and
    /// late ones of earlier calls it pushes over a limit) are appended to `out`.
    pub fn ingest_on(&mut self, lane: Lane, call: &Call, out: &mut Vec<Breach>) -> Ingest {
        self.ingest_gated(lane, call, None, out, self.horizon)
    }

    /// [`Engine::ingest_on`] for a call a decoder thread may have interned for this engine
    /// ([`Engine::interner`], [`Call::interned`]): the engine takes the symbols — keeps them
    /// with the call, or releases them if it refuses the call — so they are taken out of it.
    pub fn ingest_owned(&mut self, lane: Lane, call: &mut Call, out: &mut Vec<Breach>) -> Ingest {
        let pre = call.interned.take().filter(|i| i.by == self.interner.id());
        let r = self.ingest_gated(lane, call, pre, out, self.horizon);
        if let (Some(i), false) = (pre, matches!(r, Ingest::Accepted { .. })) {
            self.interner.give_back(&i.syms);
        }
        r
    }

    /// Drops a call a decoder thread interned for this engine without judging it (replay's
    /// enforcement drops the calls a check refuses): its symbols are given back.
    pub fn discard(&mut self, call: &mut Call) {
        if let Some(i) = call.interned.take().filter(|i| i.by == self.interner.id()) {
            self.interner.give_back(&i.syms);
        }
    }

    /// How many calls ahead of the one it judges a driver calls [`Engine::warm`]: far enough for
    /// the misses to overlap the judging between, near enough that the lines are still there.
    pub const WARM_AHEAD: usize = 6;

    /// How many calls ahead of the one it judges a driver calls [`Engine::prewarm`]: its host
    /// and window slots asked for, `warm`, two calls later, finds them come. Eight was
    /// measured against ten (docs/performance.md, "One allocation a host, and the slots asked for
    /// before warm").
    pub const PREWARM_AHEAD: usize = Self::WARM_AHEAD + 2;

    /// How many calls ahead of the one it judges a driver whose calls were decoded on another
    /// core prefetches the call's own lines ([`Call::prefetch`]), for `warm` to read them at
    /// [`Engine::WARM_AHEAD`] (asked for four calls before `prewarm` reads them).
    pub const CALL_AHEAD: usize = 2 * Self::WARM_AHEAD;

    /// How many calls ahead of the one it judges a driver calls [`Engine::locate`], two before
    /// [`Engine::prewarm`] reads what it asked for.
    pub const LOCATE_AHEAD: usize = Self::PREWARM_AHEAD + 2;

    /// Reads the state judging `call` will touch — the window of each rule's key, whose
    /// entries are prefetched — and prefetches its dedup probe's bucket, without changing
    /// anything; returns a value that depends on what it read.
    /// A driver that knows the calls ahead calls it a few calls early: the reads miss the cache
    /// (the state is far larger than it), and issued early they overlap the judging of the calls
    /// before, instead of stalling this one. Only calls interned by a decoder thread
    /// ([`Call::interned`]) have their keys at hand; for others only the dedup bucket is asked
    /// for.
    pub fn warm(&self, call: &Call) -> u64 {
        let h = self.call_hash(&call.call_id);
        // The dedup probe's bucket, asked for without waiting (`tagged`).
        self.dedup.prefetch(h);
        let mut seen = h & 1;
        // Enriching it will read the contact book: three dependent misses, overlapped too.
        if let Some(f) = self.contacts.fact_of(call) {
            seen = seen.wrapping_add(f.from.0 as u64);
        }
        let Some(pre) = self.interned_here(call) else {
            return seen;
        };
        for g in &self.groups {
            if let Some(h) = g.get(pre.syms[g.lead]) {
                // Judging reads each member's segment near its end, anywhere in the buffer: its
                // segment list and first lines (four entries a line) and its last are
                // prefetched — all of a host of up to 64 entries.
                h.prefetch(WARM_HOST_LINES);
            }
        }
        for (rule, state, key) in self.own_windows(&pre) {
            if let Some(w) = state.windows.get(&key) {
                // Judging reads the window near its end, and a distinct cap all of its span
                // (kinds::cap): its first lines and its last, as a host's. Only prefetched: a
                // load here stalled until they came (two thirds of this function's time), and
                // judging needs nothing from them now. Some will read no more than its last
                // entry (a distinct cap whose window carries the call's value only).
                if kinds::reads_window(rule, w, &pre.syms) {
                    window::prefetch_front(&w.calls, WARM_HOST_LINES);
                } else if let Some(last) = w.calls.last() {
                    prefetch(last);
                }
            }
        }
        seen
    }

    /// A step before [`Engine::warm`], for a call further ahead: asks for the slots of its
    /// hosts and of its rules' own windows (a rule alone on its first key field keeps its
    /// own), so that `warm`, reading them, does not wait.
    #[inline]
    pub fn prewarm(&self, call: &Call) {
        let Some(pre) = self.interned_here(call) else {
            return;
        };
        for g in &self.groups {
            g.prefetch(pre.syms[g.lead]);
        }
        for (_, state, key) in self.own_windows(&pre) {
            if let Some(t) = &state.thin {
                t.prefetch(key[0]);
            }
            state.windows.prefetch(&key);
        }
    }

    /// A step before [`Engine::prewarm`], for a call further ahead: asks for the words that
    /// say where its hosts and its rules' own windows are (a map by symbol keeps one word per
    /// symbol, in an array of hundreds of kilobytes: `prewarm` read them cold, and waited for
    /// each — two thirds of its samples, which were 3.5% of a default-policy replay's).
    #[inline]
    pub fn locate(&self, call: &Call) {
        let Some(pre) = self.interned_here(call) else {
            return;
        };
        for g in &self.groups {
            g.prefetch_place(pre.syms[g.lead]);
        }
        for (_, state, key) in self.own_windows(&pre) {
            state.windows.prefetch_place(&key);
        }
    }

    /// The symbols a decoder thread interned for this engine in `call`, if it did: what the
    /// steps that look ahead ([`Engine::locate`], [`Engine::prewarm`], [`Engine::warm`]) find a
    /// call's state by.
    #[inline]
    fn interned_here(&self, call: &Call) -> Option<intern::Interned> {
        call.interned.filter(|i| i.by == self.interner.id())
    }

    /// The rules that keep windows of their own (not a group's), each with the key of its
    /// window for a call interned as `pre`: what [`Engine::warm`], [`Engine::prewarm`] and
    /// [`Engine::locate`] look up ahead.
    fn own_windows<'a>(
        &'a self,
        pre: &'a intern::Interned,
    ) -> impl Iterator<Item = (&'a Rule, &'a RuleState, window::Key)> + 'a {
        self.own.iter().map(|&ri| {
            let (rule, state) = (&self.rules[ri as usize], &self.states[ri as usize]);
            let mut key = [Sym::NONE; 6];
            for (i, f) in rule.key.iter().enumerate() {
                key[i] = pre.syms[*f as usize];
            }
            (rule, state, key)
        })
    }

    /// The interner, for decoder threads to intern calls for this engine ahead of judging
    /// ([`SharedInterner::intern_calls`], then [`Engine::ingest_owned`]).
    pub fn interner(&self) -> SharedInterner {
        self.interner.clone()
    }

    /// [`Engine::restore_on`] for lane 0.
    pub fn restore(&mut self, call: &Call, out: &mut Vec<Breach>) -> bool {
        self.restore_on(0, call, out)
    }

    /// Records a call that was judged before (read back from history after a restart or a
    /// rebalance): its windows and "already breached" marks are rebuilt exactly as judging it
    /// would, and the breaches it would cause are appended to `out` for the caller to drop.
    /// History is read back per lane in the order it was judged, so the lane's lateness gate
    /// decides as it did live: a call refused as too late then is refused again, and counts in
    /// no window after a restart (as in a replay). Unlike a judged call, a restored one needs
    /// only itself retained, not its whole reach: it is refused only when older than the state
    /// already evicted. Returns whether the call was recorded.
    pub fn restore_on(&mut self, lane: Lane, call: &Call, out: &mut Vec<Breach>) -> bool {
        matches!(
            self.ingest_gated(lane, call, None, out, 0),
            Ingest::Accepted { .. }
        )
    }

    /// Reads the evidence the breaches in `out` still lack ([`EngineSettings::defer_evidence`];
    /// `out` is the vector the calls since the last settle were ingested into). Free when
    /// nothing is unread.
    #[inline]
    pub fn settle(&mut self, out: &mut [Breach]) {
        if !self.unread_evidence.is_empty() {
            self.unread_evidence
                .read(&self.records, &self.reserved.records, out);
        }
    }

    /// What moves eviction other than ingesting (a lane going idle, a forced sweep) may reach
    /// calls named as evidence still unread: their driver settles first.
    fn assert_settled(&self) {
        debug_assert!(
            self.unread_evidence.is_empty(),
            "evidence left unread: Engine::settle first"
        );
    }

    fn ingest_gated(
        &mut self,
        lane: Lane,
        call: &Call,
        pre: Option<Interned>,
        out: &mut Vec<Breach>,
        reach: i64,
    ) -> Ingest {
        // The reserved attempt has become a call (or a refused record): either way it is no
        // longer pending.
        if self.reserved.len() != 0 {
            self.release(&call.call_id);
        }
        // Evidence left unread by the call before: read now, before this call evicts anything.
        self.settle(out);
        let h = self.call_hash(&call.call_id);
        if let Some(slot) = self.retained_slot(h, &call.call_id) {
            self.stats.duplicates += 1;
            // Another record of the attempt: a conversation on it starts cooldowns.
            if self
                .rules
                .iter()
                .any(|r| r.kind == rule::RuleKind::Cooldown)
            {
                self.flag_late(
                    rule::RuleKind::Cooldown,
                    out,
                    |ri, rule, store, ctx, held, out| {
                        kinds::cooldown::trigger_leg(ri, rule, store, ctx, (call, slot), held, out);
                    },
                );
            }
            return Ingest::Duplicate;
        }
        let t = call.occurred_at.0;
        let state = *self.lane_slot(lane);
        if let Some(newest) = state.and_then(LaneState::newest) {
            if t < newest.saturating_sub(self.lateness) {
                self.stats.too_late += 1;
                return Ingest::TooLate(TooLate::Lane { newest: Ts(newest) });
            }
        }
        // A call judged now needs its whole reach retained; a restored one only needs to be
        // retained itself, to count in the windows of the calls after it.
        if let Some(judged_from) = self.judged_from() {
            if t < self.cutoff.saturating_add(reach) {
                self.stats.too_late += 1;
                return Ingest::TooLate(TooLate::Evicted { judged_from });
            }
        }
        if let Some(&floor) = self.floors.get(lane as usize) {
            if floor > self.cutoff && t < floor.saturating_add(reach) {
                self.stats.too_late += 1;
                return Ingest::TooLate(TooLate::Evicted {
                    judged_from: Ts(floor.saturating_add(self.horizon)),
                });
            }
        }
        let slot = self.store(call, pre, h, lane);
        let newest = state.and_then(LaneState::newest).map_or(t, |n| n.max(t));
        self.lanes[lane as usize] = Some(LaneState::Active { newest });
        self.watermark = Some(self.watermark.map_or(t, |w| w.max(t)));
        self.stats.accepted += 1;
        let skipped = self.apply(call, slot, out);
        // Eviction follows the slowest lane, which is never ahead of this one: only when this
        // lane has moved a sweep's span is the slowest worth looking for.
        // The cutoff moves when a sweep is due, whether or not the last pass is over (what a
        // caller sees follows the cutoff alone); otherwise the pass under way takes a step.
        let mut swept = false;
        if newest.saturating_sub(self.last_sweep) >= self.sweep_every {
            let base = if self.lanes.len() == 1 {
                Some(newest)
            } else {
                self.slowest().map(|s| s.0)
            };
            if let Some(base) = base {
                if base.saturating_sub(self.last_sweep) >= self.sweep_every {
                    self.sweep(base);
                    swept = true;
                }
            }
        }
        if !swept {
            self.step();
        }
        Ingest::Accepted { skipped }
    }

    /// Applies every rule to the call stored in `slot`; returns the rules skipped for a
    /// missing key field.
    fn apply(&mut self, call: &Call, slot: u32, out: &mut Vec<Breach>) -> u32 {
        self.apply_to(call, slot, false, out)
    }

    /// Applies every rule to `call` (in `slot`): to the rules' windows and counters, or — a
    /// reserved attempt, `slot` tagged — to the reserved windows of the stateful rules only,
    /// with no evidence (whatever breaches among reservations are found, the caller drops).
    fn apply_to(
        &mut self,
        call: &Call,
        slot: u32,
        reserved_windows: bool,
        out: &mut Vec<Breach>,
    ) -> u32 {
        let Engine {
            rules,
            states,
            groups,
            zones,
            records,
            reserved,
            interner,
            callee_zones,
            evidence_limit,
            window_bounds,
            scratch,
            stats,
            statuses,
            contacts,
            last_skipped,
            defer_late_strings,
            defer_evidence,
            unread_evidence,
            repeat_hint,
            ..
        } = self;
        if !reserved_windows {
            last_skipped.clear();
            repeat_hint.start(slot);
        }
        let defer_evidence = *defer_evidence && !reserved_windows;
        let Reservations {
            records: reserved_records,
            windows: reserved_by_rule,
            ..
        } = reserved;
        let mut locals = Locals::new(zones);
        let facts = rule::facts(call);
        let mut skipped = 0u32;
        for (ri, ((rule, state), res)) in rules
            .iter()
            .zip(states.iter_mut())
            .zip(reserved_by_rule.iter_mut())
            .enumerate()
        {
            if reserved_windows && !rule.is_stateful() {
                continue;
            }
            let before = out.len();
            let mut step = Step {
                ri: ri as u16,
                rule,
                zone_slot: state.zone_slot,
                keeps: state.keeps,
                facts,
                shared: match state.shared {
                    Some((g, m)) if !reserved_windows => Some((&mut groups[g], m)),
                    _ => None,
                },
                windows: if reserved_windows {
                    res
                } else {
                    &mut state.windows
                },
                thin: if reserved_windows {
                    None
                } else {
                    state.thin.as_mut()
                },
                ctx: Ctx {
                    records,
                    reserved: reserved_records,
                    interner,
                    callee_zones,
                    evidence_limit: if reserved_windows { 0 } else { *evidence_limit },
                    bounds: *window_bounds && !reserved_windows,
                    own: u32::MAX,
                    known: None,
                    statuses,
                    contacts,
                    defer: *defer_late_strings && !reserved_windows,
                },
                scratch,
                unread: defer_evidence.then_some(&mut *unread_evidence),
                locals: &mut locals,
                call,
                slot,
                hint: (!reserved_windows).then_some(&mut *repeat_hint),
            };
            let applied = kinds::ingest(&mut step, out);
            if reserved_windows {
                continue;
            }
            match applied {
                Applied::Unmatched => {}
                Applied::Matched => stats.rule_matched[ri] += 1,
                Applied::Skipped => {
                    stats.rule_matched[ri] += 1;
                    stats.rule_skipped[ri] += 1;
                    last_skipped.push(ri as u16);
                    skipped += 1;
                }
            }
            let found = &out[before..];
            stats.alerts += found.len() as u64;
            stats.rule_alerts[ri] += found.len() as u64;
            stats.late_alerts += found.iter().filter(|b| b.late).count() as u64;
        }
        skipped
    }

    /// Runs `flag` over each rule of `kind` — a reference record just known looking for the
    /// retained calls it makes breach late — with what the rule still holds for certain (eviction
    /// steps may not have run yet: the oldest event time it holds), and counts what it finds.
    fn flag_late(
        &mut self,
        kind: rule::RuleKind,
        out: &mut Vec<Breach>,
        mut flag: impl FnMut(u16, &Rule, kinds::Store<'_>, &Ctx<'_>, i64, &mut Vec<Breach>),
    ) {
        let Engine {
            rules,
            states,
            groups,
            records,
            reserved,
            interner,
            callee_zones,
            evidence_limit,
            window_bounds,
            stats,
            statuses,
            contacts,
            cutoff,
            last_sweep,
            lateness,
            defer_late_strings,
            ..
        } = self;
        let ctx = Ctx {
            records,
            reserved: &reserved.records,
            interner,
            callee_zones,
            evidence_limit: *evidence_limit,
            bounds: *window_bounds,
            own: u32::MAX,
            known: None,
            statuses,
            contacts,
            defer: *defer_late_strings,
        };
        for (ri, (rule, state)) in rules.iter().zip(states.iter_mut()).enumerate() {
            if rule.kind != kind {
                continue;
            }
            let held = last_sweep
                .saturating_sub(*lateness)
                .saturating_sub(rule.reach())
                .max(*cutoff);
            let before = out.len();
            let store = kinds::Store {
                windows: &mut state.windows,
                shared: state.shared.map(|(g, m)| (&mut groups[g], m)),
            };
            flag(ri as u16, rule, store, &ctx, held, out);
            let n = (out.len() - before) as u64;
            stats.alerts += n;
            stats.rule_alerts[ri] += n;
            stats.late_alerts += n;
        }
    }

    /// Makes a debtor status known (reference data: a Status v1 record, `crate::reference`),
    /// replacing the one with its id. Calls judged from now on are judged against it, and the
    /// retained calls it covers that no status had flagged yet breach now: late breaches,
    /// appended to `out`, at most one per call and rule, ever. A call older than a status
    /// rule's `lookback` (plus lateness) behind the slowest lane is no longer retained for it,
    /// and is not flagged. Returns the status replaced.
    pub fn apply_status(
        &mut self,
        st: status::Status,
        out: &mut Vec<Breach>,
    ) -> Option<status::Status> {
        let id = st.id.clone();
        let old = self.statuses.upsert(st);
        self.flag_late(
            rule::RuleKind::Status,
            out,
            |ri, rule, store, ctx, held, out| {
                let st = ctx.statuses.get(&id).expect("just stored");
                kinds::status::flag_retained(ri, rule, store, ctx, st, held, out);
            },
        );
        old
    }

    /// Forgets the status with `id` (a tombstone on the status topic): calls judged from now
    /// on are judged without it. Breaches it made stand. Returns it.
    pub fn end_status(&mut self, id: &str) -> Option<status::Status> {
        self.statuses.remove(id)
    }

    /// The debtor statuses known.
    pub fn statuses(&self) -> &status::Statuses {
        &self.statuses
    }

    /// Moves the debtor statuses out (the engine is left with none): for a caller about to
    /// replace the engine, who brings the next one to them.
    pub fn take_statuses(&mut self) -> status::Statuses {
        std::mem::take(&mut self.statuses)
    }

    /// Fills what a call's event lacks — a `relation` of `unknown`, no `number_source` — from
    /// the contact book's fact for its debtor and number at its event time; the event's own
    /// values win ([`contacts::Contacts::enrich`]). The judge step, the pre-dial check and the
    /// service's rebuild call it before judging, so every rule's `when` sees the filled values;
    /// [`Engine::ingest`] and [`Engine::check`] judge a call as given.
    pub fn enrich(&self, call: &mut Call) -> event::Filled {
        self.contacts.enrich(call)
    }

    /// Fills in the debtor of a call whose dialer mapping left it to the contact book
    /// ([`Call::wants_debtor`]): the one debtor whose book holds the dialled number at the
    /// call's event time, as the book is now. The judge step calls it first; a call it finds
    /// no single debtor for is refused there. Needs [`EngineSettings::contacts_by_number`].
    pub fn find_debtor(&self, call: &mut Call) -> Result<(), contacts::NoDebtor> {
        self.contacts.find_debtor(call)
    }

    /// Makes a contact-book record known (Contact v1, `crate::reference`), replacing the one
    /// for its debtor and number. Calls judged from now on are enriched from it, and the
    /// retained calls of `contact` rules it completes into a breach, not flagged yet, breach
    /// now: late breaches, appended to `out`, at most one per call and rule, ever (as
    /// [`Engine::apply_status`]). Calls already judged are not re-judged for other rules'
    /// `when` (docs/semantics.md). Returns the fact replaced; an error for a number that is
    /// not E.164 or a `from` outside 1970–2106 (which the decoder refuses first).
    pub fn apply_contact(
        &mut self,
        c: contacts::Contact,
        out: &mut Vec<Breach>,
    ) -> Result<Option<contacts::Fact>, &'static str> {
        let old = std::sync::Arc::make_mut(&mut self.contacts).upsert(&c)?;
        self.flag_late(
            rule::RuleKind::Contact,
            out,
            |ri, rule, store, ctx, held, out| {
                kinds::contact::flag_retained(ri, rule, store, ctx, &c, held, out);
            },
        );
        Ok(old)
    }

    /// Forgets the contact for `debtor` and `phone` (E.164; a tombstone on the contacts
    /// topic). Breaches it made stand. Returns it.
    pub fn end_contact(&mut self, debtor: &str, phone: &str) -> Option<contacts::Fact> {
        // Not copied out of a shared book for nothing.
        self.contacts.get(debtor, phone)?;
        std::sync::Arc::make_mut(&mut self.contacts).remove(debtor, phone)
    }

    /// The contact book, shared: for readers that fill calls in ahead of judging while the
    /// book does not change (replay's decoder threads). A change to the engine's book copies
    /// it while such a reader holds it.
    pub fn shared_contacts(&self) -> std::sync::Arc<contacts::Contacts> {
        self.contacts.clone()
    }

    /// Gives back the contact book's spare capacity, after a bulk load.
    pub fn shrink_contacts(&mut self) {
        std::sync::Arc::make_mut(&mut self.contacts).shrink_to_fit();
    }

    /// The contact book.
    pub fn contacts(&self) -> &contacts::Contacts {
        &self.contacts
    }

    /// Moves the contact book out (the engine is left with none): for a caller about to
    /// replace the engine, who gives it to the next one ([`Engine::set_contacts`]).
    pub fn take_contacts(&mut self) -> std::sync::Arc<contacts::Contacts> {
        std::mem::take(&mut self.contacts)
    }

    /// Gives the engine a contact book, replacing its own — before it judges or restores
    /// calls, so they are enriched and judged as before (no late breaches are looked for).
    /// The book is changed copy-on-write: while another holder shares it, the first change
    /// copies it.
    pub fn set_contacts(&mut self, book: std::sync::Arc<contacts::Contacts>) {
        self.contacts = book;
    }

    /// Which rules a call would breach, without recording it — the pre-dial check. Only the
    /// call's own breaches are reported (never the late ones it would cause for earlier calls);
    /// each is exactly the breach ingesting the call on time would yield, were the reserved
    /// attempts ([`Engine::reserve`]) calls already made.
    pub fn check(&mut self, call: &Call) -> Vec<Breach> {
        let mut out = Vec::new();
        self.each_look(call, |look| {
            if let Some(b) = kinds::check(look) {
                out.push(b);
            }
            true
        });
        out
    }

    /// The pre-dial check in full: [`Engine::check`], and when the call may be placed.
    pub fn verdict(&mut self, call: &Call) -> Verdict {
        if self.is_retained(&call.call_id) {
            return Verdict {
                breaches: Vec::new(),
                next_allowed_at: Some(call.occurred_at),
                duplicate: true,
            };
        }
        let breaches = self.check(call);
        let next_allowed_at = if breaches.is_empty() {
            Some(call.occurred_at)
        } else {
            self.next_allowed_at(call)
        };
        Verdict {
            breaches,
            next_allowed_at,
            duplicate: false,
        }
    }

    /// The earliest instant from `call`'s time on at which the same call (moved to that instant)
    /// would breach no rule, given the current state with the reserved attempts; `None` when
    /// no instant will do (a `forbid` rule matches it, a cap's limit is zero, or no allowed
    /// calling slot comes within years).
    ///
    /// Each rule says from when it could let the call through ([`kinds::clear_after`]: the
    /// earliest instant, since calls joining a window later only delay it); the call moves to
    /// the latest of those and is judged again, until no rule objects. Every instant skipped
    /// has some rule objecting, so the answer is the earliest.
    pub fn next_allowed_at(&mut self, call: &Call) -> Option<Ts> {
        let mut c = call.clone();
        for _ in 0..NEXT_ALLOWED_STEPS {
            let mut next: Option<i64> = None;
            let mut never = false;
            self.each_look(&c, |look| match kinds::clear_after(look) {
                Clear::Now => true,
                Clear::Never => {
                    never = true;
                    false
                }
                Clear::From(t) => {
                    next = Some(next.map_or(t, |n| n.max(t)));
                    true
                }
            });
            if never {
                return None;
            }
            match next {
                None => return Some(c.occurred_at),
                Some(t) => {
                    debug_assert!(t > c.occurred_at.0, "a rule's clearing instant is ahead");
                    c.occurred_at = Ts(t.max(c.occurred_at.0.saturating_add(1)));
                }
            }
        }
        None
    }

    /// What a dialer should hold back now that `call` was accepted: for each cap whose key it
    /// brought to (or kept at, or over) the limit — the same call again, at the same instant,
    /// would breach it — and each cooldown the same call just after it would breach (one it
    /// started, or one it fell in), when that rule lets the same call through again. A call
    /// over a limit extends the hold the call that reached it gave, so it gives one too.
    /// Reserved attempts are not counted: a hold follows from the calls alone, so judging the
    /// same calls again (a restart) gives the same holds.
    ///
    /// The repeat is the call itself (no rule reads a call's id; only its time moves, and is
    /// put back): cloning it for every accepted call cost more than the rest.
    pub fn holds(&mut self, call: &mut Call, out: &mut Vec<Hold>) {
        let t = call.occurred_at;
        let mut first = std::mem::take(&mut self.hold_scratch);
        // The call is retained (accepted): its keys are its record's symbols.
        let h = self.call_hash(&call.call_id);
        let slot = self.retained_slot(h, &call.call_id);
        let known = slot.map(|s| self.records[s as usize].syms);
        let hint = self.repeat_hint;
        // A cap counts the call itself at its instant; a cooldown starts strictly after it.
        for cooldown in [false, true] {
            // A pass over the rules for a kind the policy does not have finds nothing.
            let kind = if cooldown {
                rule::RuleKind::Cooldown
            } else {
                rule::RuleKind::Cap
            };
            if !self.rules.iter().any(|r| r.kind == kind) {
                continue;
            }
            call.occurred_at = Ts(t.0 + cooldown as i64);
            self.looks(call, false, known, |look| {
                let is_cooldown = match look.rule.body {
                    rule::Body::Cap { .. } => false,
                    rule::Body::Cooldown { .. } => true,
                    _ => return true,
                };
                // A cap ingesting the call found its repeat within the limit: no hold, and
                // no counting again.
                let within = !is_cooldown && slot.is_some_and(|s| hint.within(s, look.ri));
                if is_cooldown == cooldown && !within {
                    if let Clear::From(x) = kinds::clear_after(look) {
                        first.push((look.ri, x));
                    }
                }
                true
            });
        }
        // Each rule's own next allowed instant: later calls already in its window can hold
        // the repeat past the first clearing instant, as in `next_allowed_at`. No hold when
        // the rule would never allow it (no instant to give).
        for &(ri, x) in &first {
            let mut at = x;
            for _ in 0..NEXT_ALLOWED_STEPS {
                call.occurred_at = Ts(at);
                match self.clear_of(ri as usize, call, known) {
                    Clear::Now => {
                        out.push(Hold {
                            rule: ri,
                            from: t,
                            until: Ts(at),
                        });
                        break;
                    }
                    Clear::Never => break,
                    Clear::From(y) => at = y.max(at.saturating_add(1)),
                }
            }
        }
        call.occurred_at = t;
        first.clear();
        self.hold_scratch = first;
        out.sort_by_key(|h| h.rule);
    }

    /// [`kinds::clear_after`] of rule `ri` for `call`, reserved attempts left out.
    fn clear_of(&mut self, ri: usize, call: &Call, known: Option<[Sym; 7]>) -> Clear {
        let mut clear = Clear::Now;
        let mut i = 0;
        self.looks(call, false, known, |look| {
            if i == ri {
                clear = kinds::clear_after(look);
                return false;
            }
            i += 1;
            true
        });
        clear
    }

    /// Calls `f` with a [`Look`] of `call` before each rule, in order, while it returns true.
    fn each_look(&mut self, call: &Call, f: impl FnMut(&mut Look<'_, '_>) -> bool) {
        self.looks(call, true, None, f)
    }

    /// [`Engine::each_look`], with the reserved attempts counted or not.
    /// `known`: the call's symbols, when it is retained (see [`Ctx::known`]).
    fn looks(
        &mut self,
        call: &Call,
        with_reserved: bool,
        known: Option<[Sym; 7]>,
        mut f: impl FnMut(&mut Look<'_, '_>) -> bool,
    ) {
        let ctx = Ctx {
            records: &self.records,
            reserved: &self.reserved.records,
            interner: &self.interner,
            callee_zones: &self.callee_zones,
            evidence_limit: self.evidence_limit,
            bounds: self.window_bounds,
            own: if with_reserved {
                self.reserved.slot_of(&call.call_id)
            } else {
                u32::MAX
            },
            known,
            statuses: &self.statuses,
            contacts: &self.contacts,
            defer: false,
        };
        let reserved = if with_reserved {
            &self.reserved.windows
        } else {
            &self.no_reserved
        };
        for (ri, (rule, state)) in self.rules.iter().zip(&self.states).enumerate() {
            let mut look = Look {
                ri: ri as u16,
                rule,
                shared: state.shared.map(|(g, m)| (&self.groups[g], m)),
                windows: &state.windows,
                thin: state.thin.as_ref(),
                reserved: &reserved[ri],
                ctx: &ctx,
                scratch: &mut self.scratch,
                buf: &mut self.merge,
                call,
            };
            if !f(&mut look) {
                break;
            }
        }
    }

    /// The record of `call`, its strings interned (or taken from `pre`, interned already).
    fn record_of(&mut self, call: &Call, pre: Option<Interned>, lane: u8) -> Record {
        let syms = match pre {
            Some(i) => i.syms,
            None => self.interner.lock().intern_fields(call),
        };
        let callee_zone = match &call.callee_tz {
            None => 0,
            Some(tz) => self.callee_zone_index(tz),
        };
        Record::new(
            call.occurred_at.0,
            syms,
            callee_zone,
            call.relation,
            Record::book_bits(call),
            lane,
        )
    }

    fn store(&mut self, call: &Call, pre: Option<Interned>, h: u64, lane: Lane) -> u32 {
        let rec = self.record_of(call, pre, Record::lane_byte(lane));
        let attrs: Option<store::Attrs> = (!call.attrs.is_empty()).then(|| {
            call.attrs
                .iter()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect()
        });
        self.place(rec, &call.call_id, call.event_id.as_deref(), attrs, h)
    }

    /// Retains a call: a free slot (or a new one) for its record, ids (`call_id`, `event_id`)
    /// and attrs, and its id (hashing to `h`) in the dedup table. Returns the slot.
    fn place(
        &mut self,
        rec: Record,
        call_id: &str,
        event_id: Option<&str>,
        attrs: Option<store::Attrs>,
        h: u64,
    ) -> u32 {
        let slot = match self.free.pop() {
            Some(s) => {
                self.records.put_call(s, rec, call_id, event_id, attrs);
                s
            }
            None => self.records.push_call(rec, call_id, event_id, attrs),
        };
        let (hasher, records) = (&self.hasher, &self.records);
        self.dedup.insert(
            h,
            slot,
            |&s| hasher.hash_one(records.call_id(s)),
            |&s| prefetch(records.ids(s)),
        );
        self.live += 1;
        slot
    }

    /// 1 + the index of `tz` in the callee zone table (0 when the table is full).
    fn callee_zone_index(&mut self, tz: &TimeZone) -> u16 {
        let Some(name) = tz.iana_name() else { return 0 };
        if let Some(&i) = self.callee_zone_ids.get(name) {
            return i;
        }
        if self.callee_zones.len() >= u16::MAX as usize - 1 {
            return 0;
        }
        self.callee_zones.push(tz.clone());
        let i = self.callee_zones.len() as u16;
        self.callee_zone_ids.insert(name.to_owned(), i);
        i
    }

    /// The retained call with id `call_id` (hashing to `h`). A call older than the cutoff is
    /// evicted, whether or not the pass under way has reached its slot yet.
    fn retained_slot(&self, h: u64, call_id: &str) -> Option<u32> {
        let (records, cutoff) = (&self.records, self.cutoff);
        self.dedup.find(h, |&s| {
            records.call_id(s) == call_id && records[s as usize].ts >= cutoff
        })
    }

    /// Starts evicting everything older than the retention span behind `base` (the slowest
    /// lane): the cutoff moves now, the memory is given back by [`Pass`] units, one between
    /// two calls. A pass still under way is finished first.
    fn sweep(&mut self, base: i64) {
        self.finish_pass();
        self.last_sweep = base;
        let cutoff = base
            .saturating_sub(self.lateness)
            .saturating_sub(self.horizon);
        if cutoff <= self.cutoff {
            return;
        }
        self.cutoff = cutoff;
        self.pass = Some(Pass::Windows(0));
        self.step();
    }

    /// Runs the pass under way to its end.
    fn finish_pass(&mut self) {
        while self.pass.is_some() {
            self.step();
        }
    }

    /// A step of the eviction pass under way: units until `sweep_step` windows or record
    /// slots were looked at (or the pass is over).
    fn step(&mut self) {
        let mut done = 0;
        while let Some(unit) = self.pass {
            if done >= self.pass_step {
                break;
            }
            done += self.unit(unit).max(1);
        }
    }

    /// What rule `ri`'s windows keep, eviction following event time `base`: a call still judged
    /// (within lateness of the slowest lane) looks back at most the rule's reach.
    fn rule_cutoff(&self, ri: usize, base: i64) -> i64 {
        base.saturating_sub(self.lateness)
            .saturating_sub(self.rules[ri].reach())
    }

    /// Runs one unit of the eviction pass; returns the windows or record slots it looked at.
    fn unit(&mut self, unit: Pass) -> usize {
        let base = self.last_sweep;
        let mut seen = 0;
        self.pass = match unit {
            Pass::Windows(u) => {
                // Each rule keeps only what its own reach needs: a call still judged (within
                // lateness of the slowest lane) looks back at most its rule's reach. The
                // records stay until the longest reach is past, since other rules count them.
                let (ri, shard) = (u as usize / SHARDS, u as usize % SHARDS);
                let cutoff = self.rule_cutoff(ri, base);
                if shard == 0 {
                    if let Some(t) = &mut self.states[ri].thin {
                        t.evict(cutoff);
                    }
                }
                seen = self.states[ri].windows.evict_shard(shard, cutoff, |w| {
                    let k = window::split_near_front(&w.calls, |y| y.ts < cutoff);
                    if k > 0 {
                        w.calls.drain(..k);
                        window::fit(&mut w.calls);
                        w.found_first();
                    }
                    if let Some(t) = &mut w.triggers {
                        let k = window::split_near_front(t, |y| y.ts < cutoff);
                        if k > 0 {
                            t.drain(..k);
                            window::fit(t);
                        }
                        if t.is_empty() {
                            w.triggers = None;
                        }
                    }
                    !(w.calls.is_empty() && w.triggers.is_none())
                });
                Some(if (u as usize + 1) < self.rules.len() * SHARDS {
                    Pass::Windows(u + 1)
                } else if !self.groups.is_empty() {
                    Pass::Hosts(0)
                } else {
                    Pass::Records(0)
                })
            }
            Pass::Hosts(u) => {
                let (gi, shard) = (u as usize / SHARDS, u as usize % SHARDS);
                let cutoffs: Vec<i64> = self.groups[gi]
                    .members
                    .iter()
                    .map(|&ri| self.rule_cutoff(ri, base))
                    .collect();
                seen = self.groups[gi].retain_shard(shard, |h| h.evict(|m| cutoffs[m as usize]));
                Some(if (u as usize + 1) < self.groups.len() * SHARDS {
                    Pass::Hosts(u + 1)
                } else {
                    Pass::Records(0)
                })
            }
            // Every window is past the cutoff now: no entry refers to the records evicted.
            Pass::Records(first) => {
                let len = self.records.len();
                let c = first as usize / store::CHUNK;
                let chunk_start = first as usize % store::CHUNK == 0;
                let end = if chunk_start && self.records.oldest(c) >= self.cutoff {
                    // No call in this chunk has expired: on to the next, unread.
                    seen = 1;
                    ((c + 1) * store::CHUNK).min(len) as u32
                } else {
                    if chunk_start {
                        // Every slot of the chunk is looked at now: its oldest time is found
                        // again from the calls it keeps (and those stored meanwhile).
                        self.records.reset_oldest(c);
                    }
                    let end = (first as usize + PASS_RECORDS).min(len) as u32;
                    seen = end.saturating_sub(first) as usize;
                    self.evict_records(c, first..end);
                    end
                };
                Some(if (end as usize) < len {
                    Pass::Records(end)
                } else {
                    Pass::Shrink(0)
                })
            }
            Pass::Shrink(i) => {
                let (hasher, records) = (&self.hasher, &self.records);
                self.dedup.shrink(
                    i as usize,
                    |&s| hasher.hash_one(records.call_id(s)),
                    |&s| prefetch(records.ids(s)),
                );
                ((i as usize + 1) < SHARDS).then_some(Pass::Shrink(i + 1))
            }
        };
        seen
    }

    /// Hands the symbols of evicted calls over for release — held back, while late breaches
    /// made before their eviction may name them with strings unread
    /// ([`EngineSettings::defer_late_strings`]) — and releases those held back before whose
    /// breaches have all been read. Leaves `syms` empty.
    fn release_evicted(&mut self, syms: &mut Vec<Sym>) {
        let (deferred, read) = self.interner.deferred_and_read();
        while self.held_syms.front().is_some_and(|(n, _)| *n <= read) {
            let (_, held) = self.held_syms.pop_front().expect("checked");
            self.interner.hand_over(&held);
        }
        if deferred > read {
            self.held_syms.push_back((deferred, std::mem::take(syms)));
        } else {
            self.interner.hand_over(syms);
            syms.clear();
        }
    }

    /// Evicts the expired calls in `slots` (of chunk `c`), noting the times of those kept.
    fn evict_records(&mut self, c: usize, slots: std::ops::Range<u32>) {
        // The evicted calls' symbols are handed to whichever thread takes the interner's
        // lock next — a decoder thread, where there is one — so that the releases' cache
        // misses are not the engine thread's.
        let mut syms = std::mem::take(&mut self.evicted_syms);
        // The time of the live call in a slot.
        let live_ts = |e: &Engine, s: u32| e.records.live(s).then(|| e.records[s as usize].ts);
        let end = slots.end;
        for slot in slots {
            // The dedup buckets of the calls a few slots on are asked for now, so their
            // misses overlap these removals instead of following one another.
            let ahead = slot + EVICT_AHEAD;
            if ahead < end && live_ts(self, ahead).is_some_and(|t| t < self.cutoff) {
                self.dedup
                    .prefetch(self.hasher.hash_one(self.records.call_id(ahead)));
            }
            let Some(ts) = live_ts(self, slot) else {
                continue;
            };
            if ts >= self.cutoff {
                self.records.note_oldest(c, ts);
                continue;
            }
            self.remove_record(slot, &mut syms);
            self.stats.evicted += 1;
        }
        self.release_evicted(&mut syms);
        self.evicted_syms = syms;
    }

    /// Removes the retained call in `slot` (its id from the dedup table, the slot to the free
    /// list) and adds its symbols to `syms`, for the caller to release. Its window entries
    /// must be gone already.
    fn remove_record(&mut self, slot: u32, syms: &mut Vec<Sym>) {
        let h = self.hasher.hash_one(self.records.call_id(slot));
        self.dedup.remove(h, slot);
        self.records.kill(slot);
        syms.extend(
            self.records[slot as usize]
                .syms
                .iter()
                .filter(|s| !s.is_none()),
        );
        self.free.push(slot);
        self.live -= 1;
    }

    /// Evicts expired state now, behind the slowest lane, to the end.
    pub fn advance(&mut self) {
        self.assert_settled();
        if let Some(base) = self.slowest() {
            self.sweep(base.0);
        }
        self.finish_pass();
    }

    /// The periodic tick an idle partition needs, between records: when the slowest lane has
    /// moved a sweep's span (`sweep_every`) since the last sweep, as ingesting does, a new
    /// eviction pass; otherwise a step of the pass under way. (A whole sweep reads
    /// the whole state: run on every tick while event time advances, it stalled the service
    /// for as long as that takes, every second.)
    pub fn tick(&mut self) {
        self.assert_settled();
        match self.slowest() {
            Some(base) if base.0.saturating_sub(self.last_sweep) >= self.sweep_every => {
                self.sweep(base.0)
            }
            _ => self.step(),
        }
    }
}

/// An eviction pass under way: the next unit of work. Windows go first — shard by shard of
/// each rule, each cut to its rule's cutoff — then the records older than the engine's cutoff,
/// [`PASS_RECORDS`] slots at a time, then each dedup shard gives back memory. Lookups treat a
/// record older than the cutoff as evicted already, so when a unit runs changes nothing a
/// caller sees; only the pause is spread (a unit reads 1/64 of a rule's windows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// The next window shard: rule × [`SHARDS`] + shard.
    Windows(u32),
    /// The next shared-window shard: group × [`SHARDS`] + shard.
    Hosts(u32),
    /// The first record slot not yet looked at.
    Records(u32),
    /// The next dedup shard to shrink.
    Shrink(u32),
}

/// Empty window maps for rules keyed on these numbers of fields.
fn rules_windows(key_fields: &[usize]) -> Vec<Windows> {
    key_fields
        .iter()
        .map(|n| Windows::for_key_fields(*n))
        .collect()
}

/// Cache lines of a shared window's host, or of a rule's own window, that [`Engine::warm`]
/// prefetches from the front (and the last line).
const WARM_HOST_LINES: usize = 16;

/// Record slots one unit of an eviction pass looks at.
const PASS_RECORDS: usize = 512;

/// Record slots ahead whose dedup buckets an eviction pass prefetches.
const EVICT_AHEAD: u32 = 8;

/// Windows or record slots a step of an eviction pass looks at (one step between two calls):
/// a small state is swept in one step, a large one a few hundred microseconds at a time.
const PASS_STEP: usize = 2048;

/// Asks the CPU to bring the cache line of `v` in, without waiting for it (a hint: it never
/// faults and changes nothing; a no-op where the target has no such instruction).
#[inline(always)]
pub(crate) fn prefetch<T>(v: &T) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
    safe_arch::prefetch_t0(v);
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
    let _ = v;
}

#[cfg(test)]
mod size_tests {
    /// Memory per retained call is a target (README "Performance"): keep the hot structs small.
    #[test]
    fn records_and_entries_stay_small() {
        assert!(
            std::mem::size_of::<super::Record>() + std::mem::size_of::<super::store::Ids>() <= 64,
            "Record {} + Ids {} bytes",
            std::mem::size_of::<super::Record>(),
            std::mem::size_of::<super::store::Ids>()
        );
        assert_eq!(std::mem::size_of::<super::window::Entry>(), 16);
    }
}
