//! The TOML rule format (DESIGN.md §5): a rule as written ([`RuleSpec`]), its validation, and
//! its compilation into the engine's [`Rule`]. Every mistake in a policy is caught here, with
//! the rule and the key that is wrong.

use crate::engine::event::{
    CallOutcome, Channel, ClosedEnum, Direction, NumberSource, Purpose, Relation, StrField,
};
use crate::engine::rule::*;
use crate::engine::time::{days_from_civil, NANOS_PER_SEC};
use jiff::tz::TimeZone;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;

/// A rule as written in a pack or in `[[rules]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique id, `[a-z0-9-]+`.
    pub id: String,
    /// `cap`, `cooldown`, `calling_hours` or `forbid`.
    pub kind: String,
    /// `info`, `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// What the rule is about, for people.
    #[serde(default)]
    pub description: Option<String>,
    /// The law or guideline it implements.
    #[serde(default)]
    pub citation: Option<String>,
    /// Fields that identify a window (cap, cooldown).
    #[serde(default)]
    pub key: Option<Vec<String>>,
    /// The counting window (cap).
    #[serde(default)]
    pub window: Option<WindowSpec>,
    /// Breach when the count exceeds this (cap).
    #[serde(default)]
    pub limit: Option<i64>,
    /// Count distinct values of this field instead of calls (cap).
    #[serde(default)]
    pub distinct: Option<String>,
    /// Which calls count and are judged.
    #[serde(default)]
    pub when: Option<FilterSpec>,
    /// Which calls start a cooldown.
    #[serde(default)]
    pub after: Option<FilterSpec>,
    /// How long a cooldown lasts.
    #[serde(default)]
    pub period: Option<WindowSpec>,
    /// A fixed IANA zone, or `"callee"`; absent means the configured default zone.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Allowed calling slots (calling_hours).
    #[serde(default)]
    pub allowed: Option<Vec<SlotSpec>>,
    /// Local dates with no calling (calling_hours).
    #[serde(default)]
    pub holidays: Option<Vec<String>>,
    /// The debtor statuses that make a call breach (status).
    #[serde(default)]
    pub statuses: Option<Vec<String>>,
    /// How long a call stays where a status or contact arriving after it can still flag it
    /// (status, contact; default 7 days).
    #[serde(default)]
    pub lookback: Option<String>,
    /// The number sources that make a call breach (contact).
    #[serde(default)]
    pub sources: Option<Vec<String>>,
    /// The relations that make a call breach (contact).
    #[serde(default)]
    pub relations: Option<Vec<String>>,
}

/// A filter as written: `field = [values]` or `field_not = [values]`.
pub type FilterSpec = BTreeMap<String, Vec<FilterValue>>;

/// One value in a filter list.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum FilterValue {
    /// For `consent`.
    Bool(bool),
    /// For every other field.
    Str(String),
}

/// A calling slot as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlotSpec {
    /// Weekdays (`mon` … `sun`); absent means every day.
    #[serde(default)]
    pub days: Option<Vec<String>>,
    /// Start, `HH:MM` or `HH:MM:SS`, inclusive.
    pub from: String,
    /// End, `HH:MM` or `HH:MM:SS` (up to `24:00`), exclusive.
    pub to: String,
}

/// A window or period as written: `"7d"`, `{ local_days = 7 }` or `{ calendar = "week" }`.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowSpec {
    /// A rolling duration such as `"7d"`, `"168h"`, `"1h30m"`.
    Duration(String),
    /// The N local dates ending with the judged call's local date.
    LocalDays(i64),
    /// The same local `day`, ISO `week` or `month`.
    Calendar(String),
}

impl<'de> Deserialize<'de> for WindowSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WindowSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration like \"7d\", { local_days = N } or { calendar = \"day\"|\"week\"|\"month\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<WindowSpec, E> {
                Ok(WindowSpec::Duration(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<WindowSpec, A::Error> {
                let mut out = None;
                while let Some(k) = m.next_key::<String>()? {
                    if out.is_some() {
                        return Err(de::Error::custom(
                            "a window has exactly one of local_days or calendar",
                        ));
                    }
                    out = Some(match k.as_str() {
                        "local_days" => WindowSpec::LocalDays(m.next_value::<i64>()?),
                        "calendar" => WindowSpec::Calendar(m.next_value::<String>()?),
                        other => {
                            return Err(de::Error::unknown_field(
                                other,
                                &["local_days", "calendar"],
                            ))
                        }
                    });
                }
                out.ok_or_else(|| {
                    de::Error::custom("an empty window table: use local_days or calendar")
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// What is wrong with a rule: which rule, which key, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("rule {rule:?}: {key}: {reason}")]
pub struct RuleError {
    /// The rule's id (or its position when the id itself is wrong).
    pub rule: String,
    /// The key within the rule, e.g. `window` or `when.relation`.
    pub key: String,
    /// Why it is rejected.
    pub reason: String,
}

/// The bit of a wire value in a filter mask, and the names to list if it is unknown.
fn wire_bit<T: ClosedEnum>(s: &str) -> (Option<u32>, String) {
    (T::parse_wire(s).map(T::index), T::wire_names())
}

fn compile_filter(spec: &FilterSpec, rule: &str, at: &str) -> Result<Filter, RuleError> {
    let mut conds = Vec::new();
    for (name, values) in spec {
        let err = |reason: String| RuleError {
            rule: rule.into(),
            key: format!("{at}.{name}"),
            reason,
        };
        let (base, negate) = match name.strip_suffix("_not") {
            Some(b) => (b, true),
            None => (name.as_str(), false),
        };
        let field = FilterField::parse(base).ok_or_else(|| {
            err(format!(
                "unknown filter field; known: {} (each also as <field>_not)",
                FilterField::NAMES
            ))
        })?;
        if values.is_empty() {
            return Err(err("an empty list: list at least one value".into()));
        }
        let mut mask = 0u32;
        let mut strs = Vec::new();
        for v in values {
            match (field, v) {
                (FilterField::Consent, FilterValue::Bool(b)) => mask |= 1 << (*b as u32),
                (FilterField::Consent, FilterValue::Str(s)) => {
                    return Err(err(format!("consent takes true or false, not {s:?}")))
                }
                (_, FilterValue::Bool(b)) => return Err(err(format!("expects strings, not {b}"))),
                (FilterField::Str(_), FilterValue::Str(s)) => strs.push(s.clone().into_boxed_str()),
                (f, FilterValue::Str(s)) => {
                    let (bit, names) = match f {
                        FilterField::Relation => wire_bit::<Relation>(s),
                        FilterField::Outcome => wire_bit::<CallOutcome>(s),
                        FilterField::Direction => wire_bit::<Direction>(s),
                        FilterField::Channel => wire_bit::<Channel>(s),
                        FilterField::NumberSource => wire_bit::<NumberSource>(s),
                        FilterField::Purpose => wire_bit::<Purpose>(s),
                        FilterField::Consent | FilterField::Str(_) => {
                            unreachable!("handled above")
                        }
                    };
                    let bit =
                        bit.ok_or_else(|| err(format!("unknown value {s:?}; known: {names}")))?;
                    mask |= 1 << bit;
                }
            }
        }
        conds.push(Cond {
            field,
            negate,
            mask,
            strs,
        });
    }
    Ok(Filter::new(conds))
}

/// Parses `"7d"`, `"168h"`, `"1h30m"`, `"45s"`, `"2w"` into nanoseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("an empty duration".into());
    }
    let mut total: i64 = 0;
    let mut num = String::new();
    let mut saw_unit = false;
    for ch in t.chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
            continue;
        }
        let unit = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(format!("{s:?} is not a duration: use a whole number and a unit s, m, h, d or w, e.g. \"7d\" or \"1h30m\"")),
        };
        let n: i64 = num
            .parse()
            .map_err(|_| format!("{s:?} is not a duration: a unit without a number"))?;
        num.clear();
        saw_unit = true;
        total = n
            .checked_mul(unit)
            .and_then(|x| x.checked_mul(NANOS_PER_SEC))
            .and_then(|x| total.checked_add(x))
            .ok_or_else(|| format!("{s:?} is too long"))?;
    }
    if !num.is_empty() || !saw_unit {
        return Err(format!(
            "{s:?} is not a duration: every number needs a unit (s, m, h, d, w)"
        ));
    }
    if total <= 0 {
        return Err(format!("{s:?} must be longer than zero"));
    }
    Ok(total)
}

/// Parses `HH:MM` or `HH:MM:SS` (00:00 to 24:00) into seconds of the day.
pub fn parse_time_of_day(s: &str) -> Result<u32, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = || format!("{s:?} is not a time of day: use HH:MM or HH:MM:SS, 00:00 to 24:00");
    if !(2..=3).contains(&parts.len())
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    let h: u32 = parts[0].parse().map_err(|_| bad())?;
    let m: u32 = parts[1].parse().map_err(|_| bad())?;
    let sec: u32 = if parts.len() == 3 {
        parts[2].parse().map_err(|_| bad())?
    } else {
        0
    };
    if m > 59 || sec > 59 || h > 24 || (h == 24 && (m, sec) != (0, 0)) {
        return Err(bad());
    }
    Ok(h * 3600 + m * 60 + sec)
}

/// Parses `YYYY-MM-DD` into a day number.
pub fn parse_date(s: &str) -> Result<i32, String> {
    let d: jiff::civil::Date = s
        .parse()
        .map_err(|_| format!("{s:?} is not a date: use YYYY-MM-DD"))?;
    Ok(days_from_civil(d.year() as i64, d.month() as u32, d.day() as u32) as i32)
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl RuleSpec {
    /// Validates and compiles the rule. `default_zone` is the engine's default time zone;
    /// `pack` names the pack it came from.
    pub fn compile(
        &self,
        default_zone: &TimeZone,
        default_zone_name: &str,
        pack: Option<&str>,
    ) -> Result<Rule, RuleError> {
        let id = self.id.clone();
        let err = |key: &str, reason: String| RuleError {
            rule: id.clone(),
            key: key.into(),
            reason,
        };
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(err(
                "id",
                "must be non-empty and use only a-z, 0-9 and -".into(),
            ));
        }
        let kind = match self.kind.as_str() {
            "cap" => RuleKind::Cap,
            "cooldown" => RuleKind::Cooldown,
            "calling_hours" => RuleKind::CallingHours,
            "forbid" => RuleKind::Forbid,
            "status" => RuleKind::Status,
            "contact" => RuleKind::Contact,
            other => {
                return Err(err(
                    "kind",
                    format!(
                    "unknown kind {other:?}; known: cap, cooldown, calling_hours, forbid, status, contact"
                ),
                ))
            }
        };
        let severity = Severity::ALL
            .iter()
            .copied()
            .find(|s| s.as_str() == self.severity)
            .ok_or_else(|| {
                err(
                    "severity",
                    format!(
                        "unknown severity {:?}; known: info, low, medium, high, critical",
                        self.severity
                    ),
                )
            })?;

        // Keys that a kind does not take are mistakes, not things to ignore.
        let not_for = |present: bool, key: &str, kinds: &str| -> Result<(), RuleError> {
            if present {
                Err(err(
                    key,
                    format!(
                        "a {} rule takes no {key} ({key} is for {kinds})",
                        kind.as_str()
                    ),
                ))
            } else {
                Ok(())
            }
        };
        let k = kind;
        not_for(self.window.is_some() && k != RuleKind::Cap, "window", "cap")?;
        not_for(self.limit.is_some() && k != RuleKind::Cap, "limit", "cap")?;
        not_for(
            self.distinct.is_some() && k != RuleKind::Cap,
            "distinct",
            "cap",
        )?;
        not_for(
            self.after.is_some() && k != RuleKind::Cooldown,
            "after",
            "cooldown",
        )?;
        not_for(
            self.period.is_some() && k != RuleKind::Cooldown,
            "period",
            "cooldown",
        )?;
        not_for(
            self.allowed.is_some() && k != RuleKind::CallingHours,
            "allowed",
            "calling_hours",
        )?;
        not_for(
            self.holidays.is_some() && k != RuleKind::CallingHours,
            "holidays",
            "calling_hours",
        )?;
        not_for(
            self.key.is_some() && matches!(k, RuleKind::CallingHours | RuleKind::Forbid),
            "key",
            "cap, cooldown, status and contact",
        )?;
        not_for(
            self.statuses.is_some() && k != RuleKind::Status,
            "statuses",
            "status",
        )?;
        not_for(
            self.lookback.is_some() && !matches!(k, RuleKind::Status | RuleKind::Contact),
            "lookback",
            "status and contact",
        )?;
        not_for(
            self.sources.is_some() && k != RuleKind::Contact,
            "sources",
            "contact",
        )?;
        not_for(
            self.relations.is_some() && k != RuleKind::Contact,
            "relations",
            "contact",
        )?;

        let when = match &self.when {
            Some(spec) => compile_filter(spec, &id, "when")?,
            None => Filter::default(),
        };
        if k == RuleKind::Contact {
            use crate::engine::rule::FilterField;
            if let Some(c) = when
                .conds()
                .iter()
                .find(|c| matches!(c.field, FilterField::Relation | FilterField::NumberSource))
            {
                let name = if c.field == FilterField::Relation {
                    "relation"
                } else {
                    "number_source"
                };
                return Err(err(
                    "when",
                    format!("a contact rule's `when` may not test {name}: the contact book fills it in, so name the values in the rule's `relations` or `sources`"),
                ));
            }
        }
        if k == RuleKind::Forbid && when.is_empty() {
            return Err(err(
                "when",
                "a forbid rule needs a `when` filter; without one it flags every call".into(),
            ));
        }

        let key = match (&self.key, k) {
            (Some(names), _) => {
                if names.is_empty() {
                    return Err(err("key", "an empty key: name at least one field".into()));
                }
                let mut out: Vec<StrField> = Vec::new();
                for n in names {
                    let f = StrField::parse(n)
                        .filter(|f| StrField::KEYABLE.contains(f))
                        .ok_or_else(|| err("key", format!("{n:?} cannot be a key; known: debtor_id, account_id, phone, agent_id, agency_id, creditor_id")))?;
                    if out.contains(&f) {
                        return Err(err("key", format!("{n:?} is named twice")));
                    }
                    out.push(f);
                }
                out
            }
            (None, RuleKind::Status) => {
                return Err(err(
                    "key",
                    "a status rule needs a key: the field statuses are found by, one of [\"debtor_id\"], [\"account_id\"], [\"phone\"]".into(),
                ))
            }
            (None, RuleKind::Contact) => vec![StrField::DebtorId],
            (None, RuleKind::Cap | RuleKind::Cooldown) => {
                return Err(err(
                    "key",
                    "a key is required: which fields identify a window, e.g. [\"debtor_id\"]"
                        .into(),
                ))
            }
            (None, _) => Vec::new(),
        };

        let (zone, zone_name) = match self.timezone.as_deref() {
            None => (ZoneRule::Fixed(default_zone.clone()), default_zone_name.to_owned()),
            Some("callee") => (ZoneRule::Callee(default_zone.clone()), "callee".to_owned()),
            Some(name) => match TimeZone::get(name) {
                Ok(tz) => (ZoneRule::Fixed(tz), name.to_owned()),
                Err(_) => return Err(err("timezone", format!("unknown time zone {name:?}: use an IANA name like \"Asia/Shanghai\", or \"callee\""))),
            },
        };

        let window_of =
            |spec: &WindowSpec, at: &str, calendar_ok: bool| -> Result<Window, RuleError> {
                match spec {
                WindowSpec::Duration(s) => parse_duration(s)
                    .map(Window::Rolling)
                    .map_err(|e| err(at, e)),
                WindowSpec::LocalDays(n) if (1..=3660).contains(n) => {
                    Ok(Window::LocalDays(*n as u32))
                }
                WindowSpec::LocalDays(n) => {
                    Err(err(at, format!("local_days = {n}: use 1 to 3660")))
                }
                WindowSpec::Calendar(c) if calendar_ok => match c.as_str() {
                    "day" => Ok(Window::Calendar(Calendar::Day)),
                    "week" => Ok(Window::Calendar(Calendar::Week)),
                    "month" => Ok(Window::Calendar(Calendar::Month)),
                    other => Err(err(
                        at,
                        format!("unknown calendar {other:?}; known: day, week, month"),
                    )),
                },
                WindowSpec::Calendar(_) => Err(err(
                    at,
                    "a cooldown period is a duration or { local_days = N }, not a calendar period"
                        .into(),
                )),
            }
            };

        let body = match k {
            RuleKind::Cap => {
                let window = self
                    .window
                    .as_ref()
                    .ok_or_else(|| err("window", "a cap rule needs a window".into()))?;
                let window = window_of(window, "window", true)?;
                let limit = self
                    .limit
                    .ok_or_else(|| err("limit", "a cap rule needs a limit".into()))?;
                if limit < 1 {
                    return Err(err("limit", format!("limit = {limit}: a cap breaches when the count exceeds the limit, so it must be at least 1 (to flag every call use kind = \"forbid\")")));
                }
                if limit > 1_000_000 {
                    return Err(err(
                        "limit",
                        format!("limit = {limit} is larger than 1000000"),
                    ));
                }
                let distinct = match &self.distinct {
                    None => None,
                    Some(n) => {
                        let f = StrField::parse(n)
                            .filter(|f| *f != StrField::EventId)
                            .ok_or_else(|| err("distinct", format!("{n:?} cannot be counted; known: debtor_id, phone, account_id, agent_id, agency_id, creditor_id, campaign_id")))?;
                        if key.contains(&f) {
                            return Err(err(
                                "distinct",
                                format!("{n:?} is also in the key, so it has one value per window"),
                            ));
                        }
                        Some(f)
                    }
                };
                Body::Cap {
                    window,
                    limit: limit as u32,
                    distinct,
                }
            }
            RuleKind::Cooldown => {
                let after = self.after.as_ref().ok_or_else(|| {
                    err(
                        "after",
                        "a cooldown needs `after`: the calls that start it".into(),
                    )
                })?;
                let after = compile_filter(after, &id, "after")?;
                if after.is_empty() {
                    return Err(err(
                        "after",
                        "an empty `after` filter would make every call a trigger".into(),
                    ));
                }
                let period = self
                    .period
                    .as_ref()
                    .ok_or_else(|| err("period", "a cooldown needs a period".into()))?;
                let period = window_of(period, "period", false)?;
                Body::Cooldown { after, period }
            }
            RuleKind::CallingHours => {
                let specs = self
                    .allowed
                    .as_ref()
                    .ok_or_else(|| err("allowed", "calling_hours needs `allowed` slots".into()))?;
                if specs.is_empty() {
                    return Err(err("allowed", "no slots: list at least one".into()));
                }
                let mut allowed = Vec::new();
                for (i, s) in specs.iter().enumerate() {
                    let at = format!("allowed[{i}]");
                    let from =
                        parse_time_of_day(&s.from).map_err(|e| err(&format!("{at}.from"), e))?;
                    let to = parse_time_of_day(&s.to).map_err(|e| err(&format!("{at}.to"), e))?;
                    if from >= to {
                        return Err(err(&at, format!("from {:?} must be before to {:?} (slots are [from, to) within one day)", s.from, s.to)));
                    }
                    let days = match &s.days {
                        None => 0x7f,
                        Some(ds) if ds.is_empty() => {
                            return Err(err(
                                &format!("{at}.days"),
                                "an empty list: omit days for every day".into(),
                            ))
                        }
                        Some(ds) => {
                            let mut m = 0u8;
                            for d in ds {
                                let i = WEEKDAYS
                                    .iter()
                                    .position(|w| w == d)
                                    .ok_or_else(|| err(&format!("{at}.days"), format!("unknown day {d:?}; known: mon, tue, wed, thu, fri, sat, sun")))?;
                                m |= 1 << i;
                            }
                            m
                        }
                    };
                    allowed.push(Slot { days, from, to });
                }
                let mut holidays = Vec::new();
                for (i, h) in self.holidays.iter().flatten().enumerate() {
                    holidays.push(parse_date(h).map_err(|e| err(&format!("holidays[{i}]"), e))?);
                }
                holidays.sort_unstable();
                holidays.dedup();
                Body::CallingHours { allowed, holidays }
            }
            RuleKind::Forbid => Body::Forbid,
            RuleKind::Status => {
                use crate::engine::event::StatusKind;
                use crate::engine::status::Scope;
                let scope = match key.as_slice() {
                    [StrField::DebtorId] => Scope::Debtor,
                    [StrField::AccountId] => Scope::Account,
                    [StrField::Phone] => Scope::Phone,
                    _ => return Err(err("key", "a status rule finds statuses by one field: [\"debtor_id\"], [\"account_id\"] or [\"phone\"]".into())),
                };
                let names = self.statuses.as_ref().ok_or_else(|| {
                    err(
                        "statuses",
                        format!("a status rule needs `statuses`, the ones that make a call breach; known: {}", StatusKind::names()),
                    )
                })?;
                if names.is_empty() {
                    return Err(err(
                        "statuses",
                        "an empty list: name at least one status".into(),
                    ));
                }
                let mut kinds = 0u16;
                for n in names {
                    let s = StatusKind::parse(n).ok_or_else(|| {
                        err(
                            "statuses",
                            format!("unknown status {n:?}; known: {}", StatusKind::names()),
                        )
                    })?;
                    kinds |= 1 << s as u16;
                }
                let lookback = match &self.lookback {
                    None => 7 * 86_400 * NANOS_PER_SEC,
                    Some(d) => parse_duration(d).map_err(|e| err("lookback", e))?,
                };
                Body::Status {
                    kinds,
                    scope,
                    lookback,
                }
            }
            RuleKind::Contact => {
                use crate::engine::event::{NumberSource, Relation};
                use crate::engine::rule::{ANY_RELATION, ANY_SOURCE};
                if key != [StrField::DebtorId] {
                    return Err(err("key", "a contact rule keeps calls by debtor: omit `key`, or write [\"debtor_id\"]".into()));
                }
                if self.sources.is_none() && self.relations.is_none() {
                    return Err(err("sources", "a contact rule needs `sources` or `relations` (or both): the number sources or relations that make a call breach".into()));
                }
                let mut sources = ANY_SOURCE;
                if let Some(names) = &self.sources {
                    if names.is_empty() {
                        return Err(err(
                            "sources",
                            "an empty list: name at least one number source".into(),
                        ));
                    }
                    sources = 0;
                    for n in names {
                        let s = NumberSource::parse(n).ok_or_else(|| {
                            err(
                                "sources",
                                format!(
                                    "unknown number source {n:?}; known: {}",
                                    NumberSource::names()
                                ),
                            )
                        })?;
                        sources |= 1 << s as u8;
                    }
                }
                let mut relations = ANY_RELATION;
                if let Some(names) = &self.relations {
                    if names.is_empty() {
                        return Err(err(
                            "relations",
                            "an empty list: name at least one relation".into(),
                        ));
                    }
                    relations = 0;
                    for n in names {
                        let r = Relation::parse(n).ok_or_else(|| {
                            err(
                                "relations",
                                format!("unknown relation {n:?}; known: {}", Relation::names()),
                            )
                        })?;
                        if r == Relation::Unknown {
                            return Err(err("relations", "\"unknown\" cannot make a call breach: the contact book may name the relation later, and an alert once sent is not withdrawn".into()));
                        }
                        relations |= 1 << r as u16;
                    }
                }
                let lookback = match &self.lookback {
                    None => 7 * 86_400 * NANOS_PER_SEC,
                    Some(d) => parse_duration(d).map_err(|e| err("lookback", e))?,
                };
                Body::Contact {
                    sources,
                    relations,
                    lookback,
                }
            }
        };

        Ok(Rule {
            id: id.clone(),
            kind: k,
            severity,
            description: self.description.clone(),
            citation: self.citation.clone(),
            pack: pack.map(str::to_owned),
            when,
            key,
            zone,
            zone_name,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7d").unwrap(), 7 * 86_400 * NANOS_PER_SEC);
        assert_eq!(parse_duration("1h30m").unwrap(), 5400 * NANOS_PER_SEC);
        assert_eq!(parse_duration("2w").unwrap(), 14 * 86_400 * NANOS_PER_SEC);
        for bad in ["", "7", "d", "7x", "0s", "-1d", "7 d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn times_of_day() {
        assert_eq!(parse_time_of_day("08:00").unwrap(), 8 * 3600);
        assert_eq!(parse_time_of_day("24:00").unwrap(), 86_400);
        assert_eq!(
            parse_time_of_day("21:59:59").unwrap(),
            21 * 3600 + 59 * 60 + 59
        );
        for bad in ["8:00", "24:01", "12:60", "noon", "12"] {
            assert!(
                parse_time_of_day(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    fn spec(toml_text: &str) -> RuleSpec {
        toml::from_str(toml_text).unwrap()
    }

    fn compile(s: &RuleSpec) -> Result<Rule, RuleError> {
        s.compile(&TimeZone::UTC, "UTC", None)
    }

    #[test]
    fn filter_semantics_missing_fields() {
        let r = compile(&spec(
            "id='f'\nkind='forbid'\nseverity='low'\n[when]\noutcome=['busy']\npurpose_not=['location']",
        ))
        .unwrap();
        let mut c = crate::engine::event::Call::new(
            "c",
            crate::engine::time::Ts(0),
            "d",
            "+8613800000000",
            Relation::SelfDebtor,
        );
        assert!(
            !r.when.matches(&c),
            "outcome = [...] fails when the call has no outcome"
        );
        c.outcome = Some(CallOutcome::Busy);
        assert!(
            r.when.matches(&c),
            "purpose_not passes when the call has no purpose"
        );
        c.purpose = Some(Purpose::Location);
        assert!(!r.when.matches(&c));
    }

    #[test]
    fn rejects_what_a_kind_cannot_take() {
        let e = compile(&spec("id='x'\nkind='calling_hours'\nseverity='low'\nwindow='7d'\nallowed=[{from='08:00',to='21:00'}]")).unwrap_err();
        assert_eq!(e.key, "window");
        let e = compile(&spec("id='x'\nkind='cooldown'\nseverity='low'\nkey=['phone']\nperiod={calendar='week'}\n[after]\noutcome=['conversation']")).unwrap_err();
        assert_eq!(e.key, "period");
        let e = compile(&spec(
            "id='x'\nkind='cap'\nseverity='low'\nkey=['phone']\nwindow='7d'\nlimit=0",
        ))
        .unwrap_err();
        assert_eq!(e.key, "limit");
        let e = compile(&spec("id='x'\nkind='cap'\nseverity='low'\nkey=['phone']\nwindow='7d'\nlimit=3\n[when]\nrelashun=['self']")).unwrap_err();
        assert_eq!(e.key, "when.relashun");
        let e = compile(&spec("id='x'\nkind='cap'\nseverity='low'\nkey=['phone']\nwindow='7d'\nlimit=3\n[when]\nrelation=['selff']")).unwrap_err();
        assert!(e.reason.contains("unknown value"), "{e}");
        let e = compile(&spec(
            "id='X'\nkind='forbid'\nseverity='low'\n[when]\nrelation=['other']",
        ))
        .unwrap_err();
        assert_eq!(e.key, "id");
        let e = compile(&spec("id='x'\nkind='cap'\nseverity='low'\nkey=['phone']\nwindow='7d'\nlimit=3\ntimezone='Mars/Olympus'")).unwrap_err();
        assert_eq!(e.key, "timezone");
        let e = compile(&spec("id='x'\nkind='cap'\nseverity='low'\nkey=['phone']\nwindow='7d'\nlimit=3\ndistinct='phone'")).unwrap_err();
        assert_eq!(e.key, "distinct");
    }
}
