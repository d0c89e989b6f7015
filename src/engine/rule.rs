//! Compiled rules ([`Rule`]): what the engine evaluates. They are made from the TOML rule
//! format by `crate::policy`, where every mistake in a policy is caught, so the engine itself
//! never meets a malformed rule.

use super::event::{Call, StrField};
use super::time::NANOS_PER_SEC;
use jiff::tz::TimeZone;

/// The rule kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// Count calls (or distinct values) in a window.
    Cap,
    /// No call within a period after a trigger call.
    Cooldown,
    /// Calls only inside allowed local slots.
    CallingHours,
    /// No call matching the filter at all.
    Forbid,
    /// No call a debtor status in force covers (reference data).
    Status,
    /// No call to a number whose relation or source (the event's, or the contact book's)
    /// the rule names.
    Contact,
}

impl RuleKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Cap => "cap",
            RuleKind::Cooldown => "cooldown",
            RuleKind::CallingHours => "calling_hours",
            RuleKind::Forbid => "forbid",
            RuleKind::Status => "status",
            RuleKind::Contact => "contact",
        }
    }
}

/// Alert severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// For information.
    Info,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: &'static [Severity] = &[
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// A compiled window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Rolling duration in nanoseconds: x counts for c when t_c − W < t_x ≤ t_c.
    Rolling(i64),
    /// The N local dates ending with c's local date.
    LocalDays(u32),
    /// Same local day, ISO week or month.
    Calendar(Calendar),
}

/// Calendar periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calendar {
    /// Local day.
    Day,
    /// ISO week, Monday first.
    Week,
    /// Month.
    Month,
}

impl Window {
    /// How far back from t_c a call can lie and still be in c's window (an upper bound for the
    /// local forms: zones differ from UTC by at most 26 hours between them).
    pub fn reach(self) -> i64 {
        const DAY: i64 = 86_400 * NANOS_PER_SEC;
        match self {
            Window::Rolling(w) => w,
            Window::LocalDays(n) => (n as i64 + 2) * DAY,
            Window::Calendar(Calendar::Day) => 3 * DAY,
            Window::Calendar(Calendar::Week) => 9 * DAY,
            Window::Calendar(Calendar::Month) => 33 * DAY,
        }
    }

    /// Period value of a local day for this window form; two calls compare by it.
    pub fn period_of_day(self, day: i32) -> i32 {
        match self {
            Window::Rolling(_) | Window::LocalDays(_) | Window::Calendar(Calendar::Day) => day,
            Window::Calendar(Calendar::Week) => super::time::week_of_day(day),
            Window::Calendar(Calendar::Month) => super::time::month_of_day(day),
        }
    }

    /// The instant period `p` (a value of [`Window::period_of_day`]) starts in `tz`: its first
    /// local midnight.
    pub fn period_start(self, p: i32, tz: &TimeZone) -> super::time::Ts {
        let day = match self {
            Window::Rolling(_) | Window::LocalDays(_) | Window::Calendar(Calendar::Day) => p,
            // week_of_day(d) = (d + 3) div 7, so week p starts on day 7p − 3 (a Monday).
            Window::Calendar(Calendar::Week) => p * 7 - 3,
            Window::Calendar(Calendar::Month) => super::time::first_day_of_month(p),
        };
        super::time::start_of_local_day(day, tz)
    }

    /// How many consecutive periods, ending with c's, make up the window.
    pub fn span(self) -> i32 {
        match self {
            Window::LocalDays(n) => n as i32,
            _ => 1,
        }
    }

    /// Whether the window needs local dates (anything but a rolling duration).
    pub fn is_local(self) -> bool {
        !matches!(self, Window::Rolling(_))
    }

    /// For messages: "7 days", "7 local days", "the same local week".
    pub fn describe(self) -> String {
        let mut out = String::new();
        self.describe_into(&mut out);
        out
    }

    /// [`Window::describe`], appended to `out` (alerts' messages: no allocation).
    pub fn describe_into(self, out: &mut String) {
        use std::fmt::Write;
        match self {
            Window::Rolling(w) => describe_duration_into(w, out),
            Window::LocalDays(1) => out.push_str("1 local day"),
            Window::LocalDays(n) => {
                let _ = write!(out, "{n} local days");
            }
            Window::Calendar(Calendar::Day) => out.push_str("one local day"),
            Window::Calendar(Calendar::Week) => out.push_str("one local week"),
            Window::Calendar(Calendar::Month) => out.push_str("one local month"),
        }
    }
}

/// "7 days", "90 minutes", "36 hours".
pub fn describe_duration(ns: i64) -> String {
    let mut out = String::new();
    describe_duration_into(ns, &mut out);
    out
}

/// [`describe_duration`], appended to `out`.
pub fn describe_duration_into(ns: i64, out: &mut String) {
    use std::fmt::Write;
    let s = ns / NANOS_PER_SEC;
    let (n, unit) = if s % 86_400 == 0 {
        (s / 86_400, "day")
    } else if s % 3600 == 0 {
        (s / 3600, "hour")
    } else if s % 60 == 0 {
        (s / 60, "minute")
    } else {
        (s, "second")
    };
    let _ = write!(out, "{n} {unit}");
    if n != 1 {
        out.push('s');
    }
}

/// Which zone a rule reads local time in.
#[derive(Debug, Clone)]
pub enum ZoneRule {
    /// One fixed zone.
    Fixed(TimeZone),
    /// The call's `callee_tz`, else the given default zone.
    Callee(TimeZone),
}

impl ZoneRule {
    /// The zone for one call.
    pub fn for_call<'a>(&'a self, call: &'a Call) -> &'a TimeZone {
        match self {
            ZoneRule::Fixed(tz) => tz,
            ZoneRule::Callee(default) => call.callee_tz.as_ref().unwrap_or(default),
        }
    }

    /// The same zone for every call.
    pub fn is_fixed(&self) -> bool {
        matches!(self, ZoneRule::Fixed(_))
    }
}

/// A field a filter can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterField {
    /// `relation`
    Relation,
    /// `outcome`
    Outcome,
    /// `direction`
    Direction,
    /// `channel`
    Channel,
    /// `number_source`
    NumberSource,
    /// `purpose`
    Purpose,
    /// `consent`
    Consent,
    /// A string field.
    Str(StrField),
}

impl FilterField {
    /// The names a filter may use.
    pub const NAMES: &'static str =
        "relation, outcome, direction, channel, number_source, purpose, consent, \
         account_id, agent_id, agency_id, creditor_id, campaign_id";

    /// The field of a filter name.
    pub fn parse(s: &str) -> Option<FilterField> {
        Some(match s {
            "relation" => FilterField::Relation,
            "outcome" => FilterField::Outcome,
            "direction" => FilterField::Direction,
            "channel" => FilterField::Channel,
            "number_source" => FilterField::NumberSource,
            "purpose" => FilterField::Purpose,
            "consent" => FilterField::Consent,
            "account_id" => FilterField::Str(StrField::AccountId),
            "agent_id" => FilterField::Str(StrField::AgentId),
            "agency_id" => FilterField::Str(StrField::AgencyId),
            "creditor_id" => FilterField::Str(StrField::CreditorId),
            "campaign_id" => FilterField::Str(StrField::CampaignId),
            _ => return None,
        })
    }

    /// The field's enum value as a bit index; `None` when the call lacks the field.
    fn bit(self, c: &Call) -> Option<u32> {
        match self {
            FilterField::Relation => Some(c.relation as u32),
            FilterField::Outcome => c.outcome.map(|o| o as u32),
            FilterField::Direction => Some(c.direction as u32),
            FilterField::Channel => Some(c.channel as u32),
            FilterField::NumberSource => c.number_source.map(|o| o as u32),
            FilterField::Purpose => c.purpose.map(|o| o as u32),
            FilterField::Consent => Some(c.consent as u32),
            FilterField::Str(_) => None,
        }
    }
}

/// One compiled condition.
#[derive(Debug, Clone)]
pub struct Cond {
    /// The field tested.
    pub field: FilterField,
    /// `<field>_not`: the condition holds when the value is not listed (or absent).
    pub negate: bool,
    /// Enum fields: bit i set when the value with index i is listed.
    pub mask: u32,
    /// String fields: the values listed.
    pub strs: Vec<Box<str>>,
}

/// The enum fields, in the order their values sit in a call's [`facts`] word.
const ENUM_FIELDS: [FilterField; 7] = [
    FilterField::Relation,
    FilterField::Outcome,
    FilterField::Direction,
    FilterField::Channel,
    FilterField::NumberSource,
    FilterField::Purpose,
    FilterField::Consent,
];

/// How many values each of [`ENUM_FIELDS`] has.
const ENUM_VALUES: [usize; 7] = [
    super::event::Relation::ALL.len(),
    super::event::CallOutcome::ALL.len(),
    super::event::Direction::ALL.len(),
    super::event::Channel::ALL.len(),
    super::event::NumberSource::ALL.len(),
    super::event::Purpose::ALL.len(),
    2,
];

/// Where each of [`ENUM_FIELDS`] starts in a [`facts`] word.
const ENUM_BASES: [u32; 7] = {
    let mut b = [0u32; 7];
    let mut i = 1;
    while i < 7 {
        b[i] = b[i - 1] + ENUM_VALUES[i - 1] as u32;
        i += 1;
    }
    assert!(
        b[6] as usize + ENUM_VALUES[6] <= 64,
        "the enum values fit one word"
    );
    b
};

/// A call's enum field values as one word, one bit per value (a field the call lacks sets
/// none): a filter then tests a condition on an enum field with one mask ([`Filter::passes`]).
/// The engine computes it once per call for all its rules.
#[inline]
pub fn facts(c: &Call) -> u64 {
    let mut w = 0u64;
    for (f, base) in ENUM_FIELDS.iter().zip(ENUM_BASES) {
        w |= f.bit(c).map_or(0, |b| 1u64 << (base + b));
    }
    w
}

/// A compiled `when`/`after` filter: every condition must hold.
#[derive(Clone, Default)]
pub struct Filter {
    conds: Vec<Cond>,
    /// Per condition, its mask moved to its field's place in [`facts`] (0 for string fields).
    wide: Vec<u64>,
}

// Only the conditions: the rules' debug form fingerprints snapshots (`engine::snapshot`), and
// `wide` is derived from them.
impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("conds", &self.conds)
            .finish()
    }
}

impl Filter {
    /// Whether the call passes. `field = [...]` fails on a missing field, `field_not = [...]`
    /// passes.
    #[inline]
    pub fn matches(&self, c: &Call) -> bool {
        self.passes(facts(c), c)
    }

    /// [`Filter::matches`] given the call's [`facts`], computed once for many filters.
    #[inline]
    pub fn passes(&self, facts: u64, c: &Call) -> bool {
        self.conds.iter().zip(&self.wide).all(|(cond, &wide)| {
            let hit = match cond.field {
                FilterField::Str(f) => c
                    .str_field(f)
                    .is_some_and(|v| cond.strs.iter().any(|s| &**s == v)),
                _ => facts & wide != 0,
            };
            hit != cond.negate
        })
    }

    /// The conditions.
    pub fn conds(&self) -> &[Cond] {
        &self.conds
    }

    /// A filter of these conditions (all must hold).
    pub fn new(conds: Vec<Cond>) -> Filter {
        let wide = conds
            .iter()
            .map(|c| match ENUM_FIELDS.iter().position(|f| *f == c.field) {
                // Bits past the field's values name none: they must not reach the next field's.
                Some(i) => (c.mask as u64 & ((1u64 << ENUM_VALUES[i]) - 1)) << ENUM_BASES[i],
                None => 0,
            })
            .collect();
        Filter { conds, wide }
    }

    /// Whether the filter has no conditions (matches every call).
    pub fn is_empty(&self) -> bool {
        self.conds.is_empty()
    }
}

/// A compiled calling slot: the days it applies to and `[from, to)` in seconds of the local day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Bit d set: weekday d (0 = Monday) is included.
    pub days: u8,
    /// Inclusive start, seconds since local midnight.
    pub from: u32,
    /// Exclusive end, seconds since local midnight (up to 86400).
    pub to: u32,
}

/// What a rule checks, by kind.
#[derive(Debug, Clone)]
pub enum Body {
    /// Breach when count (or distinct count) in the window exceeds `limit`.
    Cap {
        /// The window.
        window: Window,
        /// The limit.
        limit: u32,
        /// Count distinct values of this field instead of calls.
        distinct: Option<StrField>,
    },
    /// Breach when a `when` call comes strictly after an `after` call, inside its period.
    Cooldown {
        /// Which calls trigger a cooldown.
        after: Filter,
        /// How long it lasts (rolling, or N local days with the trigger's date as day 1).
        period: Window,
    },
    /// Breach when a call falls outside every slot, or on a holiday.
    CallingHours {
        /// Allowed slots.
        allowed: Vec<Slot>,
        /// Local dates (day numbers, sorted) with no calling.
        holidays: Vec<i32>,
    },
    /// Breach on every matching call.
    Forbid,
    /// Breach when a status of these kinds, found by the call's `scope` value, covers the call.
    Status {
        /// A bit per `StatusKind as u16`.
        kinds: u16,
        /// The call field statuses are found by (the rule's key).
        scope: super::status::Scope,
        /// How long a call stays where a status that arrives after it can still flag it.
        lookback: i64,
    },
    /// Breach when the call's number source is one of `sources` and its relation one of
    /// `relations` — as the event says them, or else as the contact book does for the call's
    /// debtor and number at its event time.
    Contact {
        /// A bit per `NumberSource as u8`; every source when all bits are set.
        sources: u8,
        /// A bit per `Relation as u16`, never `unknown`'s; every relation when all the others
        /// are set.
        relations: u16,
        /// How long a call stays where a contact that arrives after it can still flag it.
        lookback: i64,
    },
}

/// A contact rule's `sources` when it names none: any, known or not.
pub const ANY_SOURCE: u8 = u8::MAX;
/// A contact rule's `relations` when it names none: any, `unknown` included.
pub const ANY_RELATION: u16 = u16::MAX;

/// A compiled, validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique id.
    pub id: String,
    /// The kind.
    pub kind: RuleKind,
    /// Severity of its alerts.
    pub severity: Severity,
    /// What it is about.
    pub description: Option<String>,
    /// Where it comes from in law.
    pub citation: Option<String>,
    /// The pack it was loaded from (`None` for inline rules).
    pub pack: Option<String>,
    /// Which calls count and are judged.
    pub when: Filter,
    /// Window key fields (cap, cooldown); empty for the others.
    pub key: Vec<StrField>,
    /// Zone resolution.
    pub zone: ZoneRule,
    /// The zone as written ("callee", an IANA name, or the default zone's name).
    pub zone_name: String,
    /// Kind-specific parameters.
    pub body: Body,
}

impl Rule {
    /// How long the rule needs to look back from a judged call (0 for stateless kinds).
    pub fn reach(&self) -> i64 {
        match &self.body {
            Body::Cap { window, .. } => window.reach(),
            Body::Cooldown { period, .. } => period.reach(),
            Body::Status { lookback, .. } | Body::Contact { lookback, .. } => *lookback,
            Body::CallingHours { .. } | Body::Forbid => 0,
        }
    }

    /// A cap rule's window, limit and distinct field; `None` for other kinds.
    pub fn cap(&self) -> Option<(Window, u32, Option<StrField>)> {
        match self.body {
            Body::Cap {
                window,
                limit,
                distinct,
            } => Some((window, limit, distinct)),
            _ => None,
        }
    }

    /// Whether the rule keeps per-key windows.
    pub fn is_stateful(&self) -> bool {
        matches!(
            self.body,
            Body::Cap { .. } | Body::Cooldown { .. } | Body::Status { .. } | Body::Contact { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::event::{CallOutcome, Channel, Direction, NumberSource, Purpose, Relation};
    use crate::engine::time::Ts;
    use proptest::prelude::*;

    /// A condition evaluated field by field, as filters were before [`facts`]: the oracle.
    fn naive(conds: &[Cond], c: &Call) -> bool {
        conds.iter().all(|cond| {
            let hit = match cond.field {
                FilterField::Str(f) => c.str_field(f).map(|v| cond.strs.iter().any(|s| &**s == v)),
                other => other.bit(c).map(|b| cond.mask & (1 << b) != 0),
            };
            match (hit, cond.negate) {
                (Some(h), false) => h,
                (Some(h), true) => !h,
                (None, false) => false,
                (None, true) => true,
            }
        })
    }

    fn pick<T: Copy>(all: &[T], i: u8) -> Option<T> {
        // One index in eight past the end: the field absent.
        let n = all.len() + all.len().div_ceil(8);
        all.get(i as usize % n).copied()
    }

    proptest! {
        /// Any filter on any call: one mask per enum condition over the call's facts says
        /// what testing each field does.
        #[test]
        fn a_filter_on_facts_passes_what_field_by_field_tests_pass(
            vals in prop::array::uniform8(any::<u8>()),
            account in prop::option::of(0u8..3),
            conds in prop::collection::vec((0usize..8, any::<bool>(), any::<u32>(), 0u8..3), 0..5),
        ) {
            let mut c = Call::new("c", Ts(0), "d", "+8613800000000", Relation::ALL[vals[0] as usize % Relation::ALL.len()]);
            c.outcome = pick(CallOutcome::ALL, vals[1]);
            c.direction = Direction::ALL[vals[2] as usize % Direction::ALL.len()];
            c.channel = Channel::ALL[vals[3] as usize % Channel::ALL.len()];
            c.number_source = pick(NumberSource::ALL, vals[4]);
            c.purpose = pick(Purpose::ALL, vals[5]);
            c.consent = vals[6] % 2 == 1;
            c.account_id = account.map(|a| format!("a{a}").into());
            let conds: Vec<Cond> = conds
                .into_iter()
                .map(|(f, negate, mask, s)| Cond {
                    field: ENUM_FIELDS.get(f).copied().unwrap_or(FilterField::Str(StrField::AccountId)),
                    negate,
                    // Any bits, those past a field's values too.
                    mask,
                    strs: (0..s).map(|a| format!("a{a}").into()).collect(),
                })
                .collect();
            let f = Filter::new(conds.clone());
            prop_assert_eq!(f.matches(&c), naive(&conds, &c));
            prop_assert_eq!(f.passes(facts(&c), &c), naive(&conds, &c));
        }
    }
}
