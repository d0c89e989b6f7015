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

pub mod alert;
pub mod event;
pub mod intern;
pub mod rule;
pub mod time;

use alert::{alert_id, Alert, WindowBounds};
use compact_str::CompactString;
use event::{Call, Relation, StrField};
use hashbrown::{HashMap, HashTable};
use intern::{Interner, Sym};
use jiff::tz::TimeZone;
use rule::{Body, Rule, Window, ZoneRule};
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use time::{Local, Ts};

/// Engine settings (validated by `config`).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// How far behind the newest event time a call may still be judged, in nanoseconds.
    pub allowed_lateness: i64,
    /// At most this many call ids in an alert's `evidence`.
    pub evidence_limit: usize,
    /// Evict expired state whenever event time has advanced this much since the last sweep
    /// (nanoseconds); `None` picks an eighth of the retention span (at least one second).
    pub sweep_every: Option<i64>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            allowed_lateness: 3600 * time::NANOS_PER_SEC,
            evidence_limit: 10,
            sweep_every: None,
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
    /// A call with this `call_id` is already retained: not counted again.
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

/// One retained call: what alerts about it, or citing it, need.
struct Record {
    ts: i64,
    /// `call_id` followed by `event_id`, inline up to 24 bytes (no allocation, and the dedup
    /// check reads it without another cache miss); event ids are unique per call, so interning
    /// them would only add overhead.
    ids: CompactString,
    /// Interned string fields, indexed by `StrField as usize` (all but `event_id`).
    syms: [Sym; 7],
    /// Length of `call_id` within `ids`; `u16::MAX` marks "no event_id".
    call_id_len: u16,
    event_id_present: bool,
    relation: Relation,
    /// 1 + index into the engine's callee zone table; 0 for none.
    callee_zone: u16,
    attrs: Option<Box<Attrs>>,
    live: bool,
}

impl Record {
    fn call_id(&self) -> &str {
        &self.ids[..self.call_id_len as usize]
    }
    fn event_id(&self) -> Option<&str> {
        self.event_id_present
            .then(|| &self.ids[self.call_id_len as usize..])
    }
}

/// A retained call's `attrs`.
type Attrs = Box<[(Box<str>, Box<str>)]>;

const BREACHED: u32 = 1 << 31;

/// Records in fixed chunks: capacity tracks the live count closely (a `Vec` would double, and
/// records are the largest per-call structure). Slots are stable.
#[derive(Default)]
struct Slab {
    chunks: Vec<Vec<Record>>,
    len: usize,
}

const CHUNK: usize = 4096;

impl Slab {
    fn len(&self) -> usize {
        self.len
    }
    fn capacity(&self) -> usize {
        self.chunks.len() * CHUNK
    }
    fn push(&mut self, r: Record) {
        if self.len == self.capacity() {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks[self.len / CHUNK].push(r);
        self.len += 1;
    }
    fn iter(&self) -> impl Iterator<Item = &Record> {
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

/// A window entry: a call's time, its local period value, its record slot (the top bit marks
/// "already breached this rule") and, for `distinct` caps, the value counted. Keeping that value
/// here lets a distinct count read the window alone: fetching it from each record missed the
/// cache once per entry (11% of the engine thread in `perf record` on a replay). Packed to 20
/// bytes, since one entry exists per retained call and stateful rule.
#[derive(Debug, Clone, Copy)]
#[repr(C, packed(4))]
struct Entry {
    ts: i64,
    pv: i32,
    slot: u32,
    val: Sym,
}

impl Entry {
    fn slot(self) -> u32 {
        self.slot & !BREACHED
    }
    fn breached(self) -> bool {
        self.slot & BREACHED != 0
    }
}

#[derive(Default)]
struct WindowState {
    /// Calls that matched `when`, sorted by time.
    calls: Vec<Entry>,
    /// Cooldown triggers, sorted by time.
    triggers: Vec<Entry>,
}

type Key = [Sym; 6];
type Hasher = foldhash::fast::FixedState;

struct RuleState {
    windows: HashMap<Key, WindowState, Hasher>,
    /// Index into the engine's zone table, or `None` for "callee".
    zone_slot: Option<usize>,
}

/// Sorted insert (after entries at the same instant); returns the index.
fn insert_sorted(v: &mut Vec<Entry>, e: Entry) -> usize {
    // Most windows hold a few calls: grow those one entry at a time rather than to Vec's minimum
    // of four, then double as usual.
    if v.len() == v.capacity() && v.len() < 4 {
        v.reserve_exact(1);
    }
    if v.last().is_none_or(|l| l.ts <= e.ts) {
        v.push(e);
        v.len() - 1
    } else {
        let i = v.partition_point(|x| x.ts <= e.ts);
        v.insert(i, e);
        i
    }
}

/// The fields of the call an alert is about, from a record or from a hypothetical call.
struct Subject<'a> {
    call_id: &'a str,
    ts: i64,
    strs: [Option<&'a str>; 8],
    relation: Relation,
    attrs: Vec<(&'a str, &'a str)>,
}

/// The engine. One per partition (or one for a whole replay).
pub struct Engine {
    rules: Vec<Rule>,
    states: Vec<RuleState>,
    zones: Vec<TimeZone>,
    /// Distinct `callee_tz` zones seen; records hold 1 + an index into it.
    callee_zones: Vec<TimeZone>,
    callee_zone_ids: HashMap<String, u16, Hasher>,
    records: Slab,
    free: Vec<u32>,
    live: usize,
    dedup: HashTable<u32>,
    hasher: Hasher,
    interner: Interner,
    /// Lane states, indexed by lane (partition numbers are small and dense).
    lanes: Vec<Option<LaneState>>,
    /// The newest event time over all lanes.
    watermark: Option<i64>,
    /// Entries older than this were (or may have been) evicted: it only rises.
    cutoff: i64,
    lateness: i64,
    horizon: i64,
    sweep_every: i64,
    last_sweep: i64,
    evidence_limit: usize,
    stats: EngineStats,
    scratch: Vec<Sym>,
}

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
        let states = rules
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
                    windows: HashMap::with_hasher(Hasher::default()),
                    zone_slot,
                }
            })
            .collect();
        let n = rules.len();
        Engine {
            rules,
            states,
            zones,
            callee_zones: Vec::new(),
            callee_zone_ids: HashMap::with_hasher(Hasher::default()),
            records: Slab::default(),
            free: Vec::new(),
            live: 0,
            dedup: HashTable::new(),
            hasher: Hasher::default(),
            interner: Interner::default(),
            lanes: Vec::new(),
            watermark: None,
            cutoff: i64::MIN,
            lateness,
            horizon,
            sweep_every,
            last_sweep: i64::MIN,
            evidence_limit: settings.evidence_limit.max(1),
            stats: EngineStats {
                rule_matched: vec![0; n],
                rule_skipped: vec![0; n],
                rule_alerts: vec![0; n],
                ..Default::default()
            },
            scratch: Vec::new(),
        }
    }

    /// The compiled rules, in evaluation order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Counters since start.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The newest event time seen, over all lanes.
    pub fn watermark(&self) -> Option<Ts> {
        self.watermark.map(Ts)
    }

    /// Opens `lanes` that are not open yet: until each has delivered a call or been marked
    /// idle, nothing is evicted (their calls may be older than anything seen so far).
    pub fn open_lanes(&mut self, lanes: &[Lane]) {
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
        self.states.iter().map(|s| s.windows.len()).sum()
    }

    /// An estimate of the heap the engine holds, from container capacities.
    pub fn heap_bytes(&self) -> usize {
        let entry = std::mem::size_of::<Entry>();
        let wkey = std::mem::size_of::<Key>() + std::mem::size_of::<WindowState>() + 1;
        let windows: usize = self
            .states
            .iter()
            .map(|s| {
                s.windows.capacity() * wkey
                    + s.windows
                        .values()
                        .map(|w| (w.calls.capacity() + w.triggers.capacity()) * entry)
                        .sum::<usize>()
            })
            .sum();
        let recs = self.records.capacity() * std::mem::size_of::<Record>()
            + self
                .records
                .iter()
                .filter(|r| r.live)
                .map(|r| {
                    if r.ids.is_heap_allocated() {
                        r.ids.capacity()
                    } else {
                        0
                    }
                })
                .sum::<usize>();
        windows
            + recs
            + self.dedup.capacity() * 5
            + self.free.capacity() * 4
            + self.interner.heap_bytes()
    }

    fn call_hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    /// Judges one call of lane 0 (a single input, as in a replay): see [`Engine::ingest_on`].
    pub fn ingest(&mut self, call: &Call, now: Ts, out: &mut Vec<Alert>) -> Ingest {
        self.ingest_on(0, call, now, out)
    }

    /// Judges one call read from `lane` and records it. Alerts it causes (its own, and late ones
    /// for earlier calls it pushes over a limit) are appended to `out`. `now` stamps
    /// `detected_at`.
    pub fn ingest_on(&mut self, lane: Lane, call: &Call, now: Ts, out: &mut Vec<Alert>) -> Ingest {
        self.ingest_gated(lane, call, now, out, self.horizon)
    }

    /// [`Engine::restore_on`] for lane 0.
    pub fn restore(&mut self, call: &Call, now: Ts, out: &mut Vec<Alert>) -> bool {
        self.restore_on(0, call, now, out)
    }

    /// Records a call that was judged before (read back from history after a restart or a
    /// rebalance): its windows and "already breached" marks are rebuilt exactly as judging it
    /// would, and the alerts it would cause are appended to `out` for the caller to drop.
    /// History is read back per lane in the order it was judged, so the lane's lateness gate
    /// decides as it did live: a call refused as too late then is refused again, and counts in
    /// no window after a restart (as in a replay). Unlike a judged call, a restored one needs
    /// only itself retained, not its whole reach: it is refused only when older than the state
    /// already evicted. Returns whether the call was recorded.
    pub fn restore_on(&mut self, lane: Lane, call: &Call, now: Ts, out: &mut Vec<Alert>) -> bool {
        matches!(
            self.ingest_gated(lane, call, now, out, 0),
            Ingest::Accepted { .. }
        )
    }

    fn ingest_gated(
        &mut self,
        lane: Lane,
        call: &Call,
        now: Ts,
        out: &mut Vec<Alert>,
        reach: i64,
    ) -> Ingest {
        let h = self.call_hash(&call.call_id);
        let records = &self.records;
        if self
            .dedup
            .find(h, |&s| *records[s as usize].call_id() == *call.call_id)
            .is_some()
        {
            self.stats.duplicates += 1;
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
        let slot = self.store(call, h);
        let newest = state.and_then(LaneState::newest).map_or(t, |n| n.max(t));
        self.lanes[lane as usize] = Some(LaneState::Active { newest });
        self.watermark = Some(self.watermark.map_or(t, |w| w.max(t)));
        self.stats.accepted += 1;

        let mut locals: [Option<Local>; 8] = [None; 8];
        let mut callee_local: Option<Local> = None;
        let mut skipped = 0u32;
        for ri in 0..self.rules.len() {
            skipped += self.apply(ri, call, slot, now, &mut locals, &mut callee_local, out) as u32;
        }
        // Eviction follows the slowest lane, which is never ahead of this one: only when this
        // lane has moved a sweep's span is the slowest worth looking for.
        if newest.saturating_sub(self.last_sweep) >= self.sweep_every {
            let base = if self.lanes.len() == 1 {
                Some(newest)
            } else {
                self.slowest().map(|s| s.0)
            };
            if let Some(base) = base {
                if base.saturating_sub(self.last_sweep) >= self.sweep_every {
                    self.sweep(base);
                }
            }
        }
        Ingest::Accepted { skipped }
    }

    fn store(&mut self, call: &Call, h: u64) -> u32 {
        let mut syms = [Sym::NONE; 7];
        for f in StrField::ALL.iter().filter(|f| **f != StrField::EventId) {
            syms[*f as usize] = self.interner.intern_opt(call.str_field(*f));
        }
        let mut ids = CompactString::with_capacity(
            call.call_id.len() + call.event_id.as_ref().map_or(0, |e| e.len()),
        );
        ids.push_str(&call.call_id);
        ids.push_str(call.event_id.as_deref().unwrap_or(""));
        let callee_zone = match &call.callee_tz {
            None => 0,
            Some(tz) => self.callee_zone_index(tz),
        };
        let rec = Record {
            ts: call.occurred_at.0,
            ids,
            syms,
            call_id_len: call.call_id.len() as u16,
            event_id_present: call.event_id.is_some(),
            relation: call.relation,
            callee_zone,
            attrs: (!call.attrs.is_empty()).then(|| {
                Box::new(
                    call.attrs
                        .iter()
                        .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                        .collect(),
                )
            }),
            live: true,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.records[s as usize] = rec;
                s
            }
            None => {
                self.records.push(rec);
                (self.records.len() - 1) as u32
            }
        };
        let (hasher, records) = (&self.hasher, &self.records);
        self.dedup
            .insert_unique(h, slot, |&s| hasher.hash_one(records[s as usize].call_id()));
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

    fn local_for(
        &self,
        ri: usize,
        call: &Call,
        locals: &mut [Option<Local>; 8],
        callee: &mut Option<Local>,
    ) -> Local {
        let t = call.occurred_at;
        match self.states[ri].zone_slot {
            Some(z) if z < locals.len() => {
                *locals[z].get_or_insert_with(|| Local::of(t, &self.zones[z]))
            }
            Some(z) => Local::of(t, &self.zones[z]),
            None => *callee.get_or_insert_with(|| Local::of(t, self.rules[ri].zone.for_call(call))),
        }
    }

    fn key_of(&self, rule: &Rule, slot: u32) -> Option<Key> {
        let rec = &self.records[slot as usize];
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

    /// Applies rule `ri` to a newly stored call; returns whether it was skipped for a missing key.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        ri: usize,
        call: &Call,
        slot: u32,
        now: Ts,
        locals: &mut [Option<Local>; 8],
        callee: &mut Option<Local>,
        out: &mut Vec<Alert>,
    ) -> bool {
        let rule = &self.rules[ri];
        let when = rule.when.matches(call);
        match &rule.body {
            Body::Forbid => {
                if when {
                    self.stats.rule_matched[ri] += 1;
                    self.stateless_alert(ri, slot, now, None, out);
                }
                false
            }
            Body::CallingHours { allowed, holidays } => {
                if when {
                    self.stats.rule_matched[ri] += 1;
                    let l = self.local_for(ri, call, locals, callee);
                    if let Some(holiday) = rule::hours_breach(allowed, holidays, &l) {
                        let zone = rule
                            .zone
                            .for_call(call)
                            .iana_name()
                            .unwrap_or(&rule.zone_name)
                            .to_owned();
                        self.stateless_alert(ri, slot, now, Some((l, holiday, &zone)), out);
                    }
                }
                false
            }
            Body::Cap {
                window, distinct, ..
            } => {
                if !when {
                    return false;
                }
                let (window, distinct) = (*window, *distinct);
                self.stats.rule_matched[ri] += 1;
                let Some(key) = self.key_of(rule, slot) else {
                    self.stats.rule_skipped[ri] += 1;
                    return true;
                };
                let pv = if window.is_local() {
                    window.period_of_day(self.local_for(ri, call, locals, callee).day)
                } else {
                    0
                };
                let val =
                    distinct.map_or(Sym::NONE, |f| self.records[slot as usize].syms[f as usize]);
                self.cap_insert(
                    ri,
                    key,
                    Entry {
                        ts: call.occurred_at.0,
                        pv,
                        slot,
                        val,
                    },
                    now,
                    out,
                );
                false
            }
            Body::Cooldown { after, period } => {
                let trig = after.matches(call);
                if !when && !trig {
                    return false;
                }
                let period = *period;
                self.stats.rule_matched[ri] += 1;
                let Some(key) = self.key_of(rule, slot) else {
                    self.stats.rule_skipped[ri] += 1;
                    return true;
                };
                let pv = if period.is_local() {
                    self.local_for(ri, call, locals, callee).day
                } else {
                    0
                };
                let e = Entry {
                    ts: call.occurred_at.0,
                    pv,
                    slot,
                    val: Sym::NONE,
                };
                self.cooldown_insert(ri, key, e, when, trig, now, out);
                false
            }
        }
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            rules: &self.rules,
            records: &self.records,
            interner: &self.interner,
            callee_zones: &self.callee_zones,
            evidence_limit: self.evidence_limit,
        }
    }

    /// The alert of a forbid or calling-hours breach: the call itself is the evidence.
    fn stateless_alert(
        &mut self,
        ri: usize,
        slot: u32,
        now: Ts,
        hours: Option<(Local, bool, &str)>,
        out: &mut Vec<Alert>,
    ) {
        let ctx = self.ctx();
        let a = single_call_alert(&ctx.rules[ri], &ctx.subject_of_record(slot), now, hours);
        push(&mut self.stats, ri, a, out);
    }

    /// Splits the engine into the window map of rule `ri` (mutable), the read-only context for
    /// building alerts, the scratch buffer and the stats.
    fn parts(
        &mut self,
        ri: usize,
    ) -> (
        &mut HashMap<Key, WindowState, Hasher>,
        Ctx<'_>,
        &mut Vec<Sym>,
        &mut EngineStats,
    ) {
        let Engine {
            states,
            rules,
            records,
            interner,
            callee_zones,
            evidence_limit,
            scratch,
            stats,
            ..
        } = self;
        let ctx = Ctx {
            callee_zones,
            rules,
            records,
            interner,
            evidence_limit: *evidence_limit,
        };
        (&mut states[ri].windows, ctx, scratch, stats)
    }

    fn cap_insert(&mut self, ri: usize, key: Key, e: Entry, now: Ts, out: &mut Vec<Alert>) {
        let (window, limit, distinct) = self.rules[ri].cap().expect("a cap rule");
        let reach = window.reach();
        let (windows, ctx, scratch, stats) = self.parts(ri);
        let w = windows.entry(key).or_default();
        let at = insert_sorted(&mut w.calls, e);
        // Calls that x can now push over the limit: itself and those after it within reach.
        let start = w.calls[..at].partition_point(|y| y.ts < e.ts);
        for i in start..w.calls.len() {
            let c = w.calls[i];
            let in_reach = match window {
                Window::Rolling(_) => c.ts < e.ts.saturating_add(reach),
                _ => c.ts <= e.ts.saturating_add(reach),
            };
            if !in_reach {
                break;
            }
            if c.breached() {
                continue;
            }
            if let Some(n) = cap_count(scratch, &w.calls, c.ts, c.pv, window, limit, distinct, None)
            {
                w.calls[i].slot |= BREACHED;
                let a = ctx.cap_alert(ri, &w.calls, c, n, c.slot() != e.slot, now);
                push(stats, ri, a, out);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn cooldown_insert(
        &mut self,
        ri: usize,
        key: Key,
        e: Entry,
        when: bool,
        trig: bool,
        now: Ts,
        out: &mut Vec<Alert>,
    ) {
        let Body::Cooldown { period, .. } = self.rules[ri].body else {
            unreachable!("cooldown")
        };
        let (windows, ctx, _, stats) = self.parts(ri);
        let w = windows.entry(key).or_default();
        if trig {
            insert_sorted(&mut w.triggers, e);
            // Calls strictly after this trigger and inside its period that were not yet breached.
            let start = w.calls.partition_point(|y| y.ts <= e.ts);
            for i in start..w.calls.len() {
                let c = w.calls[i];
                if c.ts > e.ts.saturating_add(period.reach()) {
                    break;
                }
                if !c.breached() && Ctx::cooled(&e, &c, period) {
                    w.calls[i].slot |= BREACHED;
                    let a = ctx.cooldown_alert(ri, &w.triggers, c, true, now);
                    push(stats, ri, a, out);
                }
            }
        }
        if when {
            let at = insert_sorted(&mut w.calls, e);
            if Ctx::cooldown_triggers(&w.triggers, e, period)
                .next()
                .is_some()
            {
                w.calls[at].slot |= BREACHED;
                let a = ctx.cooldown_alert(ri, &w.triggers, e, false, now);
                push(stats, ri, a, out);
            }
        }
    }

    /// Which rules a call would breach, without recording it — the pre-dial check. Only the
    /// call's own breaches are reported (never the late ones it would cause for earlier calls).
    pub fn check(&mut self, call: &Call, now: Ts) -> Vec<Alert> {
        let mut out = Vec::new();
        let subject = Ctx::subject_of_call(call);
        let t = call.occurred_at.0;
        for ri in 0..self.rules.len() {
            let rule = &self.rules[ri];
            if let Body::Cooldown { after: _, period } = &rule.body {
                if !rule.when.matches(call) {
                    continue;
                }
                let Some(key) = self.lookup_key(rule, call) else {
                    continue;
                };
                let pv = if period.is_local() {
                    Local::of(call.occurred_at, rule.zone.for_call(call)).day
                } else {
                    0
                };
                let x = Entry {
                    ts: t,
                    pv,
                    slot: 0,
                    val: Sym::NONE,
                };
                let Some(w) = key.and_then(|k| self.states[ri].windows.get(&k)) else {
                    continue;
                };
                if let Some((observed, bounds, evidence)) =
                    self.ctx().cooldown_found(ri, &w.triggers, x)
                {
                    out.push(build_alert(
                        rule,
                        &subject,
                        observed,
                        0,
                        Some(bounds),
                        evidence,
                        false,
                        now,
                        None,
                    ));
                }
                continue;
            }
            if !rule.when.matches(call) {
                continue;
            }
            match &rule.body {
                Body::Forbid => out.push(single_call_alert(rule, &subject, now, None)),
                Body::CallingHours { allowed, holidays } => {
                    let tz = rule.zone.for_call(call);
                    let l = Local::of(call.occurred_at, tz);
                    if let Some(holiday) = rule::hours_breach(allowed, holidays, &l) {
                        let zone = tz.iana_name().unwrap_or(&rule.zone_name);
                        out.push(single_call_alert(
                            rule,
                            &subject,
                            now,
                            Some((l, holiday, zone)),
                        ));
                    }
                }
                Body::Cap {
                    window,
                    limit,
                    distinct,
                } => {
                    let (window, limit, distinct) = (*window, *limit, *distinct);
                    let Some(key) = self.lookup_key(rule, call) else {
                        continue;
                    };
                    let tz = rule.zone.for_call(call).clone();
                    let day = Local::of(call.occurred_at, &tz).day;
                    let pv = window.period_of_day(day);
                    let extra = distinct.map_or(Sym::NONE, |f| {
                        call.str_field(f).map_or(Sym::NONE, |s| {
                            self.interner.lookup(s).unwrap_or(Sym(u32::MAX - 1))
                        })
                    });
                    let v: &[Entry] = key
                        .and_then(|k| self.states[ri].windows.get(&k))
                        .map_or(&[], |w| &w.calls);
                    if let Some(n) = cap_count(
                        &mut self.scratch,
                        v,
                        t,
                        pv,
                        window,
                        limit,
                        distinct,
                        Some(extra),
                    ) {
                        let evidence = self.ctx().cap_evidence(
                            v,
                            t,
                            pv,
                            window,
                            distinct,
                            Some((&call.call_id, extra)),
                        );
                        let bounds = cap_bounds(t, day, &tz, window);
                        out.push(build_alert(
                            &self.rules[ri],
                            &subject,
                            n,
                            limit as u64,
                            Some(bounds),
                            evidence,
                            false,
                            now,
                            None,
                        ));
                    }
                }
                Body::Cooldown { .. } => unreachable!("handled above"),
            }
        }
        out
    }

    /// The key of a hypothetical call: `None` if it lacks a key field; `Some(None)` if some key
    /// value was never seen (so no window exists).
    fn lookup_key(&self, rule: &Rule, call: &Call) -> Option<Option<Key>> {
        let mut key = [Sym::NONE; 6];
        let mut known = true;
        for (i, f) in rule.key.iter().enumerate() {
            let s = call.str_field(*f)?;
            match self.interner.lookup(s) {
                Some(sym) => key[i] = sym,
                None => known = false,
            }
        }
        Some(known.then_some(key))
    }

    /// Evicts everything older than the retention span behind `base` (the slowest lane).
    fn sweep(&mut self, base: i64) {
        self.last_sweep = base;
        let cutoff = base
            .saturating_sub(self.lateness)
            .saturating_sub(self.horizon);
        if cutoff <= self.cutoff {
            return;
        }
        self.cutoff = cutoff;
        for st in &mut self.states {
            st.windows.retain(|_, w| {
                let k = w.calls.partition_point(|y| y.ts < cutoff);
                w.calls.drain(..k);
                let k = w.triggers.partition_point(|y| y.ts < cutoff);
                w.triggers.drain(..k);
                if w.calls.capacity() > 8 && w.calls.len() < w.calls.capacity() / 4 {
                    w.calls.shrink_to_fit();
                }
                !(w.calls.is_empty() && w.triggers.is_empty())
            });
            if st.windows.capacity() > 64 && st.windows.len() < st.windows.capacity() / 4 {
                st.windows.shrink_to_fit();
            }
        }
        for slot in 0..self.records.len() {
            let r = &self.records[slot];
            if !r.live || r.ts >= cutoff {
                continue;
            }
            let h = self.hasher.hash_one(r.call_id());
            if let Ok(e) = self.dedup.find_entry(h, |&s| s as usize == slot) {
                e.remove();
            }
            let r = &mut self.records[slot];
            r.live = false;
            r.ids = CompactString::default();
            r.attrs = None;
            let syms = r.syms;
            for s in syms {
                self.interner.release(s);
            }
            self.free.push(slot as u32);
            self.live -= 1;
            self.stats.evicted += 1;
        }
        if self.dedup.capacity() > 1024 && self.dedup.len() < self.dedup.capacity() / 4 {
            let (hasher, records) = (&self.hasher, &self.records);
            self.dedup
                .shrink_to_fit(|&s| hasher.hash_one(records[s as usize].call_id()));
        }
    }

    /// Evicts expired state now (the periodic tick an idle partition needs), behind the
    /// slowest lane.
    pub fn advance(&mut self) {
        if let Some(base) = self.slowest() {
            self.sweep(base.0);
        }
    }
}

/// The bounds of a cap window for a call at `t` whose local date (in `tz`) is `day`: rolling
/// windows start `W` before (exclusive); local ones at the local midnight starting their range.
fn cap_bounds(t: i64, day: i32, tz: &TimeZone, window: Window) -> WindowBounds {
    let from = match window {
        Window::Rolling(w) => Ts(t.saturating_sub(w)),
        Window::LocalDays(n) => time::start_of_local_day(day - n as i32 + 1, tz),
        Window::Calendar(rule::Calendar::Day) => time::start_of_local_day(day, tz),
        Window::Calendar(rule::Calendar::Week) => {
            time::start_of_local_day(day - (day + 3).rem_euclid(7), tz)
        }
        Window::Calendar(rule::Calendar::Month) => {
            time::start_of_local_day(time::first_day_of_month(time::month_of_day(day)), tz)
        }
    };
    WindowBounds {
        from: from.to_string(),
        to: Ts(t).to_string(),
    }
}

/// Read-only views the alert builders need, borrowed apart from the windows being updated.
struct Ctx<'a> {
    rules: &'a [Rule],
    records: &'a Slab,
    interner: &'a Interner,
    callee_zones: &'a [TimeZone],
    evidence_limit: usize,
}

impl<'a> Ctx<'a> {
    /// The range of candidate entries for a call at (t, pv): [lo, hi).
    fn cap_range(v: &[Entry], t: i64, window: Window) -> (usize, usize) {
        let hi = v.partition_point(|y| y.ts <= t);
        let lo = match window {
            Window::Rolling(w) => v[..hi].partition_point(|y| y.ts <= t.saturating_sub(w)),
            other => v[..hi].partition_point(|y| y.ts < t.saturating_sub(other.reach())),
        };
        (lo, hi)
    }

    fn in_window(y: &Entry, pv: i32, window: Window) -> bool {
        match window {
            Window::Rolling(_) => true,
            other => y.pv <= pv && y.pv > pv - other.span(),
        }
    }

    fn cap_evidence(
        &self,
        v: &[Entry],
        t: i64,
        pv: i32,
        window: Window,
        distinct: Option<StrField>,
        first: Option<(&str, Sym)>,
    ) -> Vec<String> {
        let (lo, hi) = Self::cap_range(v, t, window);
        let mut out: Vec<String> = Vec::new();
        let mut seen: Vec<Sym> = Vec::new();
        // A call not stored (the pre-dial check's candidate) comes first, as the newest, with
        // its distinct value (none: it adds no value, so it is no evidence).
        if let Some((id, val)) = first {
            if distinct.is_none() || !val.is_none() {
                out.push(id.to_owned());
                seen.push(val);
            }
        }
        for y in v[lo..hi].iter().rev() {
            if out.len() >= self.evidence_limit {
                break;
            }
            if !Self::in_window(y, pv, window) {
                continue;
            }
            if distinct.is_some() {
                let s = y.val;
                if s.is_none() || seen.contains(&s) {
                    continue;
                }
                seen.push(s);
            }
            out.push(self.records[y.slot() as usize].call_id().to_string());
        }
        out
    }

    fn record_zone(&self, ri: usize, slot: u32) -> TimeZone {
        match &self.rules[ri].zone {
            ZoneRule::Fixed(tz) => tz.clone(),
            ZoneRule::Callee(d) => match self.records[slot as usize].callee_zone {
                0 => d.clone(),
                z => self.callee_zones[z as usize - 1].clone(),
            },
        }
    }

    fn cap_alert(&self, ri: usize, v: &[Entry], c: Entry, n: u64, late: bool, now: Ts) -> Alert {
        let (window, limit, distinct) = self.rules[ri].cap().expect("a cap rule");
        let evidence = self.cap_evidence(v, c.ts, c.pv, window, distinct, None);
        let tz = self.record_zone(ri, c.slot());
        let day = Local::of(Ts(c.ts), &tz).day;
        let bounds = cap_bounds(c.ts, day, &tz, window);
        self.alert_for_record(
            ri,
            c.slot(),
            n,
            limit as u64,
            Some(bounds),
            evidence,
            late,
            now,
            None,
        )
    }

    /// Whether trigger y puts call x inside its cooldown.
    fn cooled(y: &Entry, x: &Entry, period: Window) -> bool {
        y.ts < x.ts
            && match period {
                Window::Rolling(p) => x.ts - y.ts < p,
                Window::LocalDays(n) => x.pv >= y.pv && x.pv < y.pv + n as i32,
                Window::Calendar(_) => false,
            }
    }

    /// Triggers in force for a call, newest first.
    fn cooldown_triggers(
        triggers: &[Entry],
        x: Entry,
        period: Window,
    ) -> impl Iterator<Item = &Entry> + '_ {
        let hi = triggers.partition_point(|y| y.ts < x.ts);
        let lo = triggers[..hi].partition_point(|y| y.ts < x.ts.saturating_sub(period.reach()));
        triggers[lo..hi]
            .iter()
            .rev()
            .filter(move |y| Self::cooled(y, &x, period))
    }

    /// What a cooldown breach of a call at `x` states, for ingest and check alike: how many
    /// triggers are in force, the window from the newest one to the end of its cooldown, and
    /// the evidence. `None` when `x` cools after no trigger.
    fn cooldown_found(
        &self,
        ri: usize,
        triggers: &[Entry],
        x: Entry,
    ) -> Option<(u64, WindowBounds, Vec<String>)> {
        let Body::Cooldown { period, .. } = self.rules[ri].body else {
            unreachable!("cooldown")
        };
        let ts: Vec<Entry> = Self::cooldown_triggers(triggers, x, period)
            .copied()
            .collect();
        let newest = *ts.first()?;
        let evidence = ts
            .iter()
            .take(self.evidence_limit)
            .map(|y| self.records[y.slot() as usize].call_id().to_string())
            .collect();
        let end = match period {
            Window::Rolling(p) => Ts(newest.ts.saturating_add(p)),
            _ => {
                let tz = self.record_zone(ri, newest.slot());
                time::start_of_local_day(newest.pv + period.span(), &tz)
            }
        };
        let bounds = WindowBounds {
            from: Ts(newest.ts).to_string(),
            to: end.to_string(),
        };
        Some((ts.len() as u64, bounds, evidence))
    }

    fn cooldown_alert(
        &self,
        ri: usize,
        triggers: &[Entry],
        c: Entry,
        late: bool,
        now: Ts,
    ) -> Alert {
        let (observed, bounds, evidence) = self
            .cooldown_found(ri, triggers, c)
            .expect("a cooldown alert has a trigger");
        self.alert_for_record(
            ri,
            c.slot(),
            observed,
            0,
            Some(bounds),
            evidence,
            late,
            now,
            None,
        )
    }

    fn subject_of_record(&self, slot: u32) -> Subject<'_> {
        let r = &self.records[slot as usize];
        let mut strs = [None; 8];
        for (i, s) in r.syms.iter().enumerate() {
            strs[i] = self.interner.get_opt(*s);
        }
        strs[StrField::EventId as usize] = r.event_id();
        Subject {
            call_id: r.call_id(),
            ts: r.ts,
            strs,
            relation: r.relation,
            attrs: r
                .attrs
                .iter()
                .flat_map(|a| a.iter().map(|(k, v)| (&**k, &**v)))
                .collect(),
        }
    }

    fn subject_of_call(call: &Call) -> Subject<'_> {
        let mut strs = [None; 8];
        for f in StrField::ALL {
            strs[*f as usize] = call.str_field(*f);
        }
        Subject {
            call_id: &call.call_id,
            ts: call.occurred_at.0,
            strs,
            relation: call.relation,
            attrs: call
                .attrs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn alert_for_record(
        &self,
        ri: usize,
        slot: u32,
        observed: u64,
        limit: u64,
        window: Option<WindowBounds>,
        evidence: Vec<String>,
        late: bool,
        now: Ts,
        hours: Option<(Local, bool, &str)>,
    ) -> Alert {
        build_alert(
            &self.rules[ri],
            &self.subject_of_record(slot),
            observed,
            limit,
            window,
            evidence,
            late,
            now,
            hours,
        )
    }
}

/// The count in the window of a call at (t, pv), if it exceeds `limit`. `extra` adds a
/// hypothetical member with that distinct value (or `Sym::NONE` when not distinct).
#[allow(clippy::too_many_arguments)]
fn cap_count(
    scratch: &mut Vec<Sym>,
    v: &[Entry],
    t: i64,
    pv: i32,
    window: Window,
    limit: u32,
    distinct: Option<StrField>,
    extra: Option<Sym>,
) -> Option<u64> {
    let (lo, hi) = Ctx::cap_range(v, t, window);
    let bound = (hi - lo) as u64 + extra.is_some() as u64;
    if bound <= limit as u64 {
        return None;
    }
    let n = match distinct {
        None => {
            if matches!(window, Window::Rolling(_)) {
                bound
            } else {
                v[lo..hi]
                    .iter()
                    .filter(|y| Ctx::in_window(y, pv, window))
                    .count() as u64
                    + extra.is_some() as u64
            }
        }
        Some(_) => {
            let mut seen = std::mem::take(scratch);
            seen.clear();
            for y in &v[lo..hi] {
                if Ctx::in_window(y, pv, window) {
                    let s = y.val;
                    if !s.is_none() {
                        seen.push(s);
                    }
                }
            }
            if let Some(s) = extra.filter(|s| !s.is_none()) {
                seen.push(s);
            }
            seen.sort_unstable();
            seen.dedup();
            let n = seen.len() as u64;
            *scratch = seen;
            n
        }
    };
    (n > limit as u64).then_some(n)
}

fn push(stats: &mut EngineStats, ri: usize, a: Alert, out: &mut Vec<Alert>) {
    stats.alerts += 1;
    stats.rule_alerts[ri] += 1;
    if a.late {
        stats.late_alerts += 1;
    }
    out.push(a);
}

const WEEKDAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// The alert of a forbid or calling-hours breach: the call itself is the evidence.
fn single_call_alert(
    rule: &Rule,
    s: &Subject<'_>,
    now: Ts,
    hours: Option<(Local, bool, &str)>,
) -> Alert {
    build_alert(
        rule,
        s,
        1,
        0,
        None,
        vec![s.call_id.to_owned()],
        false,
        now,
        hours,
    )
}

#[allow(clippy::too_many_arguments)]
fn build_alert(
    rule: &Rule,
    s: &Subject<'_>,
    observed: u64,
    limit: u64,
    window: Option<WindowBounds>,
    evidence: Vec<String>,
    late: bool,
    now: Ts,
    hours: Option<(Local, bool, &str)>,
) -> Alert {
    let get = |f: StrField| s.strs[f as usize];
    let mut key = BTreeMap::new();
    for f in &rule.key {
        if let Some(v) = get(*f) {
            key.insert(f.as_str(), v.to_owned());
        }
    }
    let key_text = || {
        rule.key
            .iter()
            .filter_map(|f| get(*f).map(|v| format!("{} {}", f.as_str(), v)))
            .collect::<Vec<_>>()
            .join(" and ")
    };
    let message = match &rule.body {
        Body::Cap {
            window: w,
            limit: l,
            distinct,
        } => {
            let what = match distinct {
                None => "calls".to_owned(),
                Some(f) => format!("distinct {} values", f.as_str()),
            };
            format!(
                "{observed} {what} in {} for {} (limit {l})",
                w.describe(),
                key_text()
            )
        }
        Body::Cooldown { period, .. } => {
            let p = match period {
                Window::Rolling(p) => rule::describe_duration(*p),
                other => other.describe(),
            };
            format!(
                "call inside the {p} cooldown after an earlier call for {}",
                key_text()
            )
        }
        Body::CallingHours { .. } => match hours {
            Some((l, holiday, zone)) => {
                let hh = l.sec_of_day / 3600;
                let mm = l.sec_of_day / 60 % 60;
                let when = format!(
                    "{} {} {hh:02}:{mm:02} ({})",
                    WEEKDAY_NAMES[l.weekday as usize],
                    time::format_day(l.day),
                    zone
                );
                if holiday {
                    format!("call on a holiday, {when}")
                } else {
                    format!("call at {when}, outside the allowed hours")
                }
            }
            None => "call outside the allowed hours".into(),
        },
        Body::Forbid => format!("call to a {} that this rule forbids", s.relation.as_str()),
    };
    let message = match &rule.description {
        Some(d) => format!("{message}: {d}"),
        None => message,
    };
    Alert {
        alert_id: alert_id(&rule.id, s.call_id),
        rule_id: rule.id.clone(),
        kind: rule.kind.as_str(),
        severity: rule.severity.as_str(),
        citation: rule.citation.clone(),
        pack: rule.pack.clone(),
        call_id: s.call_id.to_owned(),
        event_id: get(StrField::EventId).map(str::to_owned),
        occurred_at: Ts(s.ts).to_string(),
        debtor_id: get(StrField::DebtorId).unwrap_or_default().to_owned(),
        account_id: get(StrField::AccountId).map(str::to_owned),
        phone: get(StrField::Phone).unwrap_or_default().to_owned(),
        relation: s.relation.as_str(),
        agent_id: get(StrField::AgentId).map(str::to_owned),
        agency_id: get(StrField::AgencyId).map(str::to_owned),
        creditor_id: get(StrField::CreditorId).map(str::to_owned),
        key,
        observed,
        limit,
        window,
        evidence,
        late,
        detected_at: now.to_string(),
        message,
        attrs: s
            .attrs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

#[cfg(test)]
mod size_tests {
    /// Memory per retained call is a target (README "Performance"): keep the hot structs small.
    #[test]
    fn records_and_entries_stay_small() {
        assert!(
            std::mem::size_of::<super::Record>() <= 80,
            "Record is {} bytes",
            std::mem::size_of::<super::Record>()
        );
        assert_eq!(std::mem::size_of::<super::Entry>(), 20);
    }
}
