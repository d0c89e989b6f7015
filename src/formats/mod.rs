//! Dialer record formats other than call event v1: Asterisk CDRs (`cdr_csv`, `cdr_custom`),
//! FreeSWITCH JSON CDRs (`mod_json_cdr`) and VICIdial `vicidial_log` rows. Each record is read
//! into the fields its mapping names ([`Mapping`], the `[mapping]` section), and those become
//! the same intermediate record a call event v1 decodes to, so the one validation in
//! [`crate::codec`] judges both: a CDR becomes exactly the call its call event v1 rendering
//! would (`convert` writes that rendering; a property test holds the two to it).
//!
//! What a CDR lacks is never guessed silently: a field the mapping cannot fill is a
//! `missing_field` rejection naming where it looked; a disposition the outcome table does not
//! know is an `unknown_value` rejection naming it; `relation` is `unknown` (the contact book
//! fills it and `number_source` in, `crate::engine::contacts`).

pub(crate) mod asterisk;
pub(crate) mod csv;
pub(crate) mod freeswitch;
pub mod render;
pub(crate) mod vicidial;

use crate::codec::{Reason, Reject};
use crate::engine::event::{CallOutcome, ClosedEnum, Direction, Purpose};
use crate::engine::time::{Ts, NANOS_PER_SEC};
use jiff::tz::TimeZone;
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

/// The format of an input's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// dialguard's own call event v1 (JSON).
    #[default]
    CallEventV1,
    /// Asterisk `cdr_csv` rows (`Master.csv`), or `cdr_custom` rows through `mapping.columns`.
    AsteriskCdrCsv,
    /// FreeSWITCH `mod_json_cdr` documents, one per record.
    FreeswitchJsonCdr,
    /// VICIdial `vicidial_log` rows, as JSON objects (flat, or a CDC envelope) or CSV.
    VicidialLog,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 4] = [
        Format::CallEventV1,
        Format::AsteriskCdrCsv,
        Format::FreeswitchJsonCdr,
        Format::VicidialLog,
    ];

    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::CallEventV1 => "call-event-v1",
            Format::AsteriskCdrCsv => "asterisk-cdr-csv",
            Format::FreeswitchJsonCdr => "freeswitch-json-cdr",
            Format::VicidialLog => "vicidial-log",
        }
    }

    /// Parses a configuration name, or says which there are.
    pub fn parse(s: &str) -> Result<Format, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Format::ALL.iter().map(|f| f.as_str()).collect();
                format!("{s:?} is not a format: use one of {}", names.join(", "))
            })
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One place or several (the first with a value wins).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Places {
    /// One.
    One(String),
    /// In order of preference.
    Many(Vec<String>),
}

impl Places {
    fn list(&self) -> Vec<&str> {
        match self {
            Places::One(s) => vec![s.as_str()],
            Places::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// `[mapping]`: where dialguard finds, in a dialer's records, what a call event carries. A
/// place is a field of the record (`userfield`, `variables.debtor_id`, `lead_id`), a
/// `key=value` pair inside one (`userfield:debtor` reads `D1` from `debtor=D1;account=A1`,
/// pairs split on `;`, `,` or `|`), or a constant (`=agency-3`). Unset keys take the format's
/// defaults (`dialguard check-config` prints the effective mapping).
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawMapping {
    /// The attempt's identity (legs of one call share it, so they count once).
    pub call_id: Option<Places>,
    /// The debtor (required for Asterisk and FreeSWITCH; VICIdial: `lead_id`).
    pub debtor_id: Option<Places>,
    /// The account.
    pub account_id: Option<Places>,
    /// The dialled number.
    pub phone: Option<Places>,
    /// The agent.
    pub agent_id: Option<Places>,
    /// The agency.
    pub agency_id: Option<Places>,
    /// The creditor.
    pub creditor_id: Option<Places>,
    /// The campaign.
    pub campaign_id: Option<Places>,
    /// The callee's IANA zone.
    pub callee_tz: Option<Places>,
    /// `outbound` or `inbound`.
    pub direction: Option<Places>,
    /// Why the call was placed (`collect`, `location`, `relay`, `return_call`, `other`): a rule's
    /// `when` may test it. No default: a CDR does not say.
    pub purpose: Option<Places>,
    /// Whether the callee consented to be called (yes/no: `1`, `true`, `yes`, `y`, or `0`,
    /// `false`, `no`, `n`, any case; empty is no). No default: a CDR does not say.
    pub consent: Option<Places>,
    /// The IANA zone of local time strings (Asterisk `start` unless `usegmtime`, VICIdial
    /// `call_date`): required where the format writes them.
    pub timezone: Option<String>,
    /// Dispositions / hang-up causes / statuses → call outcome, over the format's defaults;
    /// `""` removes a default.
    #[serde(default)]
    pub outcomes: BTreeMap<String, String>,
    /// The record's columns in order (`cdr_custom`, or a VICIdial export's column list).
    pub columns: Option<Vec<String>>,
    /// Asterisk `[csv] loguniqueid` (a `uniqueid` column after `amaflags`).
    #[serde(default)]
    pub loguniqueid: bool,
    /// Asterisk `[csv] loguserfield` (a `userfield` column after that).
    #[serde(default)]
    pub loguserfield: bool,
    /// Asterisk `newcdrcolumns` (`peeraccount`, `linkedid`, `sequence` at the end).
    #[serde(default)]
    pub newcdrcolumns: bool,
    /// FreeSWITCH `encode-values` (default true, as FreeSWITCH's): values are URL-encoded.
    pub url_encoded: Option<bool>,
    /// FreeSWITCH b-legs (records with `variables.originating_leg_uuid`, written with
    /// `log-b-leg=true`): `skip` (the default: refused as `not_an_attempt`, the a-leg is the
    /// attempt) or `count` (judged; the default `call_id` makes both legs one attempt).
    pub b_legs: Option<String>,
}

/// The call event fields a mapping fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    CallId,
    DebtorId,
    AccountId,
    Phone,
    AgentId,
    AgencyId,
    CreditorId,
    CampaignId,
    CalleeTz,
    Direction,
    Purpose,
    Consent,
}

const TARGETS: [(Target, &str, bool); 12] = [
    (Target::CallId, "call_id", true),
    (Target::DebtorId, "debtor_id", true),
    (Target::Phone, "phone", true),
    (Target::AccountId, "account_id", false),
    (Target::AgentId, "agent_id", false),
    (Target::AgencyId, "agency_id", false),
    (Target::CreditorId, "creditor_id", false),
    (Target::CampaignId, "campaign_id", false),
    (Target::CalleeTz, "callee_tz", false),
    (Target::Direction, "direction", false),
    (Target::Purpose, "purpose", false),
    (Target::Consent, "consent", false),
];

/// A yes/no value as dialers write one; `None` for anything else.
fn yes_no(v: &str) -> Option<bool> {
    const YES: [&str; 4] = ["1", "true", "yes", "y"];
    const NO: [&str; 5] = ["", "0", "false", "no", "n"];
    let v = v.trim();
    if YES.iter().any(|y| v.eq_ignore_ascii_case(y)) {
        Some(true)
    } else if NO.iter().any(|n| v.eq_ignore_ascii_case(n)) {
        Some(false)
    } else {
        None
    }
}

/// Where one value comes from, compiled.
#[derive(Debug, Clone, PartialEq)]
enum Src {
    /// A field (its slot).
    Slot(usize),
    /// A `key=value` pair inside a field.
    Pair(usize, String),
    /// A constant (its text lives as long as the process: a mapping is built at start, and
    /// the call's fields borrow it instead of copying it per record).
    Const(&'static str),
    /// `@contact_book` (`debtor_id` only, last): the one debtor whose contact book holds the
    /// dialled number at the call's time, found when the call is judged.
    Book,
}

/// The place that finds a call's debtor in the contact book by the dialled number.
pub const CONTACT_BOOK: &str = "@contact_book";

/// How a time field is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeKind {
    /// Seconds since the epoch, or a local `YYYY-MM-DD HH:MM:SS` in the mapping's zone.
    SecsOrLocal,
    /// Microseconds since the epoch (0 = unset).
    Micros,
}

/// What a format reads beyond the mapped fields.
#[derive(Debug, Clone)]
pub(crate) struct Fixed {
    /// Event time, first with a value wins.
    pub time: Vec<(&'static str, TimeKind)>,
    /// The disposition.
    pub outcome: &'static str,
    /// Seconds answered: an outcome that maps to `conversation` with 0 here is `no_answer`.
    pub billsec: Option<&'static str>,
    /// Whole duration in seconds.
    pub duration: &'static str,
}

/// A format's default places, fixed fields and outcome table.
type FormatParts = (
    Vec<(Target, Vec<&'static str>)>,
    Fixed,
    &'static [(&'static str, CallOutcome)],
);

/// A validated mapping for one format.
#[derive(Debug, Clone)]
pub struct Mapping {
    format: Format,
    columns: Vec<String>,
    slots: Vec<String>,
    /// Each mapped target, whether it is required, and its places in order.
    targets: Vec<(Target, bool, Vec<Src>)>,
    places: Vec<(&'static str, Vec<String>)>,
    outcomes: HashMap<String, CallOutcome, foldhash::fast::RandomState>,
    zone: Option<(String, TimeZone)>,
    url_encoded: bool,
    time: Vec<(usize, TimeKind)>,
    outcome: usize,
    billsec: Option<usize>,
    duration: usize,
    /// VICIdial: the slot of `phone_code`, prefixed to a number without one.
    phone_code: Option<usize>,
    /// FreeSWITCH with `b_legs = "skip"`: the slot that marks a b-leg.
    b_leg: Option<usize>,
    /// For CSV formats: column index → slot.
    col_slot: Vec<Option<u32>>,
    /// For FreeSWITCH: where in the document each slot is.
    fs_keys: freeswitch::Keys,
    /// Call event v1 with a `[mapping]` written (for `--format`): said by `describe`.
    unused: bool,
}

impl Default for Mapping {
    fn default() -> Mapping {
        Mapping::new(Format::CallEventV1, &RawMapping::default()).expect("v1 needs no mapping")
    }
}

impl Mapping {
    /// Validates `raw` for `format`: `Err((key, reason))` names the `[mapping]` key at fault.
    pub fn new(format: Format, raw: &RawMapping) -> Result<Mapping, (String, String)> {
        let bad = |k: &str, r: String| (format!("mapping.{k}"), r);
        let mut m = Mapping {
            format,
            columns: Vec::new(),
            slots: Vec::new(),
            targets: Vec::new(),
            places: Vec::new(),
            outcomes: HashMap::default(),
            zone: None,
            url_encoded: raw.url_encoded.unwrap_or(true),
            time: Vec::new(),
            outcome: 0,
            billsec: None,
            duration: 0,
            phone_code: None,
            b_leg: None,
            col_slot: Vec::new(),
            fs_keys: freeswitch::Keys::default(),
            unused: false,
        };
        let (defaults, fixed, table): FormatParts = match format {
            Format::CallEventV1 => {
                // A [mapping] is kept for `replay --format` / `convert --format`.
                m.unused = *raw != RawMapping::default();
                return Ok(m);
            }
            Format::AsteriskCdrCsv => {
                m.columns = match &raw.columns {
                    Some(c) => c.clone(),
                    None => asterisk::columns(raw),
                };
                (
                    asterisk::defaults(raw),
                    asterisk::fixed(),
                    asterisk::OUTCOMES,
                )
            }
            Format::FreeswitchJsonCdr => (
                freeswitch::defaults(),
                freeswitch::fixed(),
                freeswitch::OUTCOMES,
            ),
            Format::VicidialLog => {
                m.columns = raw.columns.clone().unwrap_or_else(vicidial::columns);
                (vicidial::defaults(), vicidial::fixed(), vicidial::OUTCOMES)
            }
        };
        if format != Format::AsteriskCdrCsv
            && (raw.loguniqueid || raw.loguserfield || raw.newcdrcolumns)
        {
            return Err(bad(
                "loguniqueid",
                format!("loguniqueid, loguserfield and newcdrcolumns describe Asterisk's cdr_csv, not {format}"),
            ));
        }
        if format != Format::FreeswitchJsonCdr && raw.url_encoded.is_some() {
            return Err(bad(
                "url_encoded",
                format!("URL-encoded values are FreeSWITCH's (encode-values), not {format}'s"),
            ));
        }
        if format == Format::FreeswitchJsonCdr && raw.columns.is_some() {
            return Err(bad(
                "columns",
                "FreeSWITCH JSON CDRs have no columns: name fields as variables.NAME, caller_profile.NAME, channel_data.NAME".into(),
            ));
        }
        if let Some(c) = &raw.columns {
            if c.is_empty() {
                return Err(bad("columns", "must name at least one column".into()));
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(d) = c.iter().find(|n| !seen.insert(n.as_str())) {
                return Err(bad("columns", format!("{d:?} is named twice")));
            }
        }
        for (target, name, required) in TARGETS {
            let given = match target {
                Target::CallId => &raw.call_id,
                Target::DebtorId => &raw.debtor_id,
                Target::AccountId => &raw.account_id,
                Target::Phone => &raw.phone,
                Target::AgentId => &raw.agent_id,
                Target::AgencyId => &raw.agency_id,
                Target::CreditorId => &raw.creditor_id,
                Target::CampaignId => &raw.campaign_id,
                Target::CalleeTz => &raw.callee_tz,
                Target::Direction => &raw.direction,
                Target::Purpose => &raw.purpose,
                Target::Consent => &raw.consent,
            };
            let places: Vec<String> = match given {
                Some(p) => p.list().into_iter().map(str::to_owned).collect(),
                None => defaults
                    .iter()
                    .find(|d| d.0 == target)
                    .map(|d| d.1.iter().map(|s| (*s).to_owned()).collect())
                    .unwrap_or_default(),
            };
            if places.is_empty() {
                if required {
                    return Err(bad(
                        name,
                        format!("required for {format}: say where the dialer writes it (a field, \"field:key\" for a key=value pair inside one, or \"=constant\")"),
                    ));
                }
                continue;
            }
            let mut srcs = Vec::new();
            for (i, p) in places.iter().enumerate() {
                let src = if p == CONTACT_BOOK {
                    if target != Target::DebtorId {
                        return Err(bad(name, format!("{CONTACT_BOOK} finds only a debtor_id")));
                    }
                    if i + 1 != places.len() {
                        return Err(bad(name, format!("{CONTACT_BOOK} must be the last place: the places after it would never be read")));
                    }
                    Src::Book
                } else if let Some(c) = p.strip_prefix('=') {
                    if c.is_empty() {
                        return Err(bad(name, "\"=\" needs a constant after it".into()));
                    }
                    Src::Const(Box::leak(c.to_owned().into_boxed_str()))
                } else if let Some((f, k)) = p.split_once(':') {
                    if k.is_empty() {
                        return Err(bad(name, format!("{p:?}: a key after ':' is needed")));
                    }
                    Src::Pair(m.slot(f).map_err(|r| bad(name, r))?, k.to_owned())
                } else {
                    Src::Slot(m.slot(p).map_err(|r| bad(name, r))?)
                };
                srcs.push(src);
            }
            for s in &srcs {
                let Src::Const(c) = s else { continue };
                let refused = match target {
                    Target::Direction if Direction::parse(c).is_none() => {
                        Some("is not outbound or inbound".to_owned())
                    }
                    Target::Purpose if Purpose::parse_wire(c).is_none() => {
                        Some(format!("is not one of: {}", Purpose::wire_names()))
                    }
                    Target::Consent if yes_no(c).is_none() => {
                        Some("is not a yes/no value (1, true, yes, y; 0, false, no, n)".to_owned())
                    }
                    _ => None,
                };
                if let Some(why) = refused {
                    return Err(bad(name, format!("{c:?} {why}")));
                }
            }
            m.targets.push((target, required, srcs));
            m.places.push((name, places));
        }
        for (f, kind) in &fixed.time {
            let s = m.slot(f).map_err(|r| bad("columns", r))?;
            m.time.push((s, *kind));
        }
        m.outcome = m.slot(fixed.outcome).map_err(|r| bad("columns", r))?;
        m.billsec = match fixed.billsec {
            Some(b) => Some(m.slot(b).map_err(|r| bad("columns", r))?),
            None => None,
        };
        m.duration = m.slot(fixed.duration).map_err(|r| bad("columns", r))?;
        if format == Format::VicidialLog {
            // Optional: a dump without it reads numbers in the default region.
            m.phone_code = m.slot("phone_code").ok();
        }
        match (format, raw.b_legs.as_deref()) {
            (Format::FreeswitchJsonCdr, None | Some("skip")) => {
                m.b_leg = Some(
                    m.slot("variables.originating_leg_uuid")
                        .expect("a variable"),
                );
            }
            (Format::FreeswitchJsonCdr, Some("count")) => {}
            (Format::FreeswitchJsonCdr, Some(other)) => {
                return Err(bad("b_legs", format!("{other:?} is not skip or count")));
            }
            (_, Some(_)) => {
                return Err(bad(
                    "b_legs",
                    format!("b-legs are FreeSWITCH's, not {format}'s"),
                ));
            }
            (_, None) => {}
        }
        for (k, v) in table {
            m.outcomes.insert((*k).to_owned(), *v);
        }
        for (k, v) in &raw.outcomes {
            if v.is_empty() {
                m.outcomes.remove(k);
                continue;
            }
            let o = CallOutcome::parse(v).ok_or_else(|| {
                bad(
                    &format!("outcomes.{k}"),
                    format!(
                        "{v:?} is not an outcome: use one of {}",
                        <CallOutcome as crate::engine::event::ClosedEnum>::wire_names()
                    ),
                )
            })?;
            m.outcomes.insert(k.clone(), o);
        }
        let needs_zone = matches!(format, Format::AsteriskCdrCsv | Format::VicidialLog);
        match &raw.timezone {
            Some(z) => {
                let tz = TimeZone::get(z).map_err(|_| {
                    bad(
                        "timezone",
                        format!("unknown time zone {z:?}: use an IANA name like \"Asia/Shanghai\""),
                    )
                })?;
                m.zone = Some((z.clone(), tz));
            }
            None if needs_zone => {
                return Err(bad(
                    "timezone",
                    format!("required for {format}: its times are written in the server's local time (Asterisk unless usegmtime=yes, VICIdial's call_date); give that zone's IANA name, or \"UTC\""),
                ));
            }
            None => {}
        }
        m.fs_keys = freeswitch::Keys::new(&m.slots);
        if matches!(format, Format::AsteriskCdrCsv | Format::VicidialLog) {
            m.col_slot = m
                .columns
                .iter()
                .map(|c| m.slots.iter().position(|s| s == c).map(|s| s as u32))
                .collect();
        }
        Ok(m)
    }

    /// The format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Whether a record's debtor may be left to the contact book (`@contact_book`).
    pub fn debtor_from_book(&self) -> bool {
        self.targets
            .iter()
            .any(|(_, _, srcs)| srcs.last() == Some(&Src::Book))
    }

    /// The slot of a field the mapping reads, checked against the format's fields.
    fn slot(&mut self, name: &str) -> Result<usize, String> {
        if let Some(i) = self.slots.iter().position(|s| s == name) {
            return Ok(i);
        }
        match self.format {
            Format::AsteriskCdrCsv | Format::VicidialLog => {
                if !self.columns.iter().any(|c| c == name) {
                    let option = match name {
                        "uniqueid" => " (cdr_csv writes it with loguniqueid = true)",
                        "userfield" => " (cdr_csv writes it with loguserfield = true)",
                        "peeraccount" | "linkedid" | "sequence" => {
                            " (cdr_csv writes it with newcdrcolumns = true)"
                        }
                        _ => "",
                    };
                    let option = if self.format == Format::AsteriskCdrCsv {
                        option
                    } else {
                        ""
                    };
                    return Err(format!(
                        "{name:?} is not one of the record's columns ({}){option}; set mapping.columns to the columns your dialer writes",
                        self.columns.join(", ")
                    ));
                }
            }
            Format::FreeswitchJsonCdr => freeswitch::check_name(name)?,
            Format::CallEventV1 => {}
        }
        self.slots.push(name.to_owned());
        Ok(self.slots.len() - 1)
    }

    /// `check-config`'s account of the effective mapping.
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "input format: {}", self.format);
        if self.format == Format::CallEventV1 {
            if self.unused {
                s.push_str(
                    "  [mapping] is not used by it (replay and convert use it with --format)\n",
                );
            }
            return s;
        }
        if !self.columns.is_empty() {
            let _ = writeln!(s, "  columns: {}", self.columns.join(", "));
        }
        for (name, places) in &self.places {
            let _ = writeln!(s, "  {name:<12} <- {}", places.join(" | "));
        }
        let _ = writeln!(
            s,
            "  {:<12} <- unknown (the contact book fills it in)",
            "relation"
        );
        let times: Vec<&str> = self.time.iter().map(|t| self.slots[t.0].as_str()).collect();
        let _ = writeln!(s, "  {:<12} <- {}", "occurred_at", times.join(" | "));
        if let Some((z, _)) = &self.zone {
            let _ = writeln!(s, "  local times in {z}");
        }
        let _ = writeln!(s, "  {:<12} <- {}", "duration_s", self.slots[self.duration]);
        let _ = writeln!(
            s,
            "  {:<12} <- {} through the table below{}",
            "outcome",
            self.slots[self.outcome],
            match self.billsec {
                Some(b) => format!(" (conversation with {} = 0 is no_answer)", self.slots[b]),
                None => String::new(),
            }
        );
        let sorted: BTreeMap<&String, &CallOutcome> = self.outcomes.iter().collect();
        for (k, v) in sorted {
            let _ = writeln!(s, "    {k:<24} -> {}", v.as_str());
        }
        if self.format == Format::FreeswitchJsonCdr {
            let _ = writeln!(
                s,
                "  values URL-encoded: {} (encode-values)",
                self.url_encoded
            );
            let _ = writeln!(
                s,
                "  b-legs: {}",
                if self.b_leg.is_some() {
                    "skipped as not_an_attempt (variables.originating_leg_uuid set)"
                } else {
                    "counted (one attempt with their a-leg by call_id)"
                }
            );
        }
        s
    }

    /// Reads one record into the intermediate record the v1 validation judges.
    pub(crate) fn read<'a>(
        &self,
        text: &'a str,
        days: &mut LocalDays,
    ) -> Result<crate::codec::Wire<'a>, Reject> {
        let slots = match self.format {
            Format::CallEventV1 => unreachable!("v1 records are decoded by the codec"),
            Format::AsteriskCdrCsv => self.read_csv(text)?,
            Format::FreeswitchJsonCdr => freeswitch::read(self, text)?,
            Format::VicidialLog => {
                if text.trim_start().starts_with('{') {
                    vicidial::read_json(self, text)?
                } else {
                    self.read_csv(text)?
                }
            }
        };
        self.wire(text, slots, days)
    }

    fn read_csv<'a>(&self, text: &'a str) -> Result<Vec<Option<Cow<'a, str>>>, Reject> {
        // Straight into the slots: the columns nobody maps are not kept.
        let mut slots: Vec<Option<Cow<'a, str>>> = vec![None; self.slots.len()];
        let mut named = 0; // leading fields equal to the column names: a header row
        let n = csv::each(text, |i, v| {
            if i == named && self.columns.get(i).is_some_and(|c| v.is(c)) {
                named += 1;
            }
            if let Some(Some(s)) = self.col_slot.get(i) {
                slots[*s as usize] = Some(v.text()).filter(|v| !v.is_empty());
            }
        })
        .map_err(|e| reject(Reason::BadValue, format!("not a CSV row: {e}")))?;
        if named >= 2 {
            return Err(header());
        }
        if n != self.columns.len() {
            return Err(reject(
                Reason::BadValue,
                format!(
                    "{n} fields where mapping.columns (or loguniqueid/loguserfield/newcdrcolumns) say {}",
                    self.columns.len()
                ),
            ));
        }
        Ok(slots)
    }

    /// The slots' values (absent or empty: `None`) to the intermediate record.
    fn wire<'a>(
        &self,
        text: &'a str,
        mut slots: Vec<Option<Cow<'a, str>>>,
        days: &mut LocalDays,
    ) -> Result<crate::codec::Wire<'a>, Reject> {
        // Each value decoded once, however many targets read it. A value borrowed from a record
        // without a `%` anywhere has none to decode: one search of the record (SIMD) instead of
        // one per value was 237 fewer instructions per FreeSWITCH record (callgrind), and
        // loops that each end at a different length fewer.
        let encoded = self.format == Format::FreeswitchJsonCdr && self.url_encoded;
        let borrowed_plain = encoded && memchr::memchr(b'%', text.as_bytes()).is_none();
        for s in &mut slots {
            match s {
                Some(v) if v.is_empty() => *s = None,
                Some(Cow::Borrowed(_)) if borrowed_plain => {}
                Some(v) if encoded && has_percent(v.as_bytes()) => {
                    let d = percent_decode(v);
                    *s = (!d.is_empty()).then_some(Cow::Owned(d));
                }
                _ => {}
            }
        }
        let get = |i: usize| slots[i].clone();
        // The field whose pairs were split last, and its pairs.
        let mut split: (Option<usize>, Pairs) = (None, Pairs::new());
        if let Some(a) = self.b_leg.and_then(get) {
            return Err(reject(
                Reason::NotAnAttempt,
                format!("a b-leg of call {a}: its a-leg's record is the attempt (mapping.b_legs = \"skip\"; FreeSWITCH's log-b-leg=false stops writing them)"),
            ));
        }
        let mut w = crate::codec::Wire::default();
        let mut missing = Vec::new();
        // `@contact_book` reached (a local: the flag in `w` was read back from memory per target).
        let mut from_book = false;
        for (target, required, srcs) in &self.targets {
            let value = match srcs.as_slice() {
                // Most targets: one field.
                [Src::Slot(i)] => get(*i),
                _ => srcs.iter().find_map(|s| match s {
                    Src::Slot(i) => get(*i),
                    Src::Pair(i, key) => slots[*i].as_ref().and_then(|v| {
                        if split.0 != Some(*i) {
                            split_pairs(v, &mut split.1);
                            split.0 = Some(*i);
                        }
                        pair_in(v, &split.1, key)
                    }),
                    Src::Const(c) => Some(Cow::Borrowed(*c)),
                    Src::Book => {
                        from_book = true;
                        None
                    }
                }),
            };
            if from_book && *target == Target::DebtorId {
                w.debtor_from_book = true;
                continue;
            }
            if value.is_none() && *required {
                let name = TARGETS.iter().find(|t| t.0 == *target).unwrap().1;
                let places = &self.places.iter().find(|p| p.0 == name).unwrap().1;
                missing.push(format!("{name} (from {})", places.join(" | ")));
                continue;
            }
            let slot = match target {
                Target::CallId => &mut w.call_id,
                Target::DebtorId => &mut w.debtor_id,
                Target::AccountId => &mut w.account_id,
                Target::Phone => &mut w.phone,
                Target::AgentId => &mut w.agent_id,
                Target::AgencyId => &mut w.agency_id,
                Target::CreditorId => &mut w.creditor_id,
                Target::CampaignId => &mut w.campaign_id,
                Target::CalleeTz => &mut w.callee_tz,
                Target::Direction => &mut w.direction,
                Target::Purpose => &mut w.purpose,
                Target::Consent => {
                    if let Some(v) = value {
                        w.consent = Some(yes_no(&v).ok_or_else(|| {
                            reject(
                                Reason::BadValue,
                                format!("consent {v:?} is not a yes/no value (1, true, yes, y; 0, false, no, n)"),
                            )
                        })?);
                    }
                    continue;
                }
            };
            *slot = value;
        }
        let mut at = None;
        for (i, kind) in &self.time {
            if let Some(v) = get(*i) {
                match self.time_of(&v, *kind, days)? {
                    Some(t) => {
                        at = Some(t);
                        break;
                    }
                    None => continue,
                }
            }
        }
        if at.is_none() {
            let names: Vec<&str> = self.time.iter().map(|t| self.slots[t.0].as_str()).collect();
            missing.push(format!("occurred_at (from {})", names.join(" | ")));
        }
        let disposition = get(self.outcome);
        if disposition.is_none() {
            missing.push(format!("outcome (from {})", self.slots[self.outcome]));
        }
        if !missing.is_empty() {
            return Err(reject(
                Reason::MissingField,
                format!("the mapping found no value for: {}", missing.join(", ")),
            ));
        }
        let disposition = disposition.unwrap_or_default();
        let mut outcome = *self.outcomes.get(disposition.as_ref()).ok_or_else(|| {
            reject(
                Reason::UnknownValue,
                format!(
                    "{} {disposition:?} is not in the outcome table: add it to [mapping.outcomes]",
                    self.slots[self.outcome]
                ),
            )
        })?;
        if let Some(b) = self.billsec {
            if outcome == CallOutcome::Conversation
                && number(get(b).as_deref(), &self.slots[b])? == Some(0.0)
            {
                outcome = CallOutcome::NoAnswer;
            }
        }
        w.duration_s = number(get(self.duration).as_deref(), &self.slots[self.duration])?;
        if let (Some(code), Some(phone)) = (self.phone_code.and_then(get), &w.phone) {
            if !phone.starts_with('+') {
                w.phone = Some(Cow::Owned(format!("+{code}{phone}")));
            }
        }
        w.outcome = Some(Cow::Borrowed(outcome.as_str()));
        w.relation = Some(Cow::Borrowed("unknown"));
        w.at = at;
        Ok(w)
    }

    /// `Ok(None)`: written as unset (0).
    fn time_of(&self, v: &str, kind: TimeKind, days: &mut LocalDays) -> Result<Option<Ts>, Reject> {
        let bad = || {
            reject(
                Reason::BadTimestamp,
                format!("{v:?} is not a time (seconds or microseconds since the epoch, or YYYY-MM-DD HH:MM:SS)"),
            )
        };
        if let Some((whole, frac)) = epoch_digits(v.as_bytes()) {
            // Exact: whole units, then up to nine fraction digits (f64 would round microseconds).
            let (Some(whole), Some(frac)) = (whole, frac) else {
                return Err(bad());
            };
            let unit = match kind {
                TimeKind::Micros => 1_000,
                TimeKind::SecsOrLocal => NANOS_PER_SEC,
            };
            let mut part = 0i64;
            let mut scale = unit;
            for d in frac.iter().take(9) {
                scale /= 10;
                part += (d - b'0') as i64 * scale;
            }
            let ns = whole
                .checked_mul(unit)
                .and_then(|n| n.checked_add(part))
                .ok_or_else(bad)?;
            if ns == 0 {
                return Ok(None);
            }
            return Ok(Some(Ts(ns)));
        }
        if kind == TimeKind::Micros {
            return Err(bad());
        }
        // A format without local times (FreeSWITCH) has no zone: its epoch fields are numbers.
        let Some((_, zone)) = self.zone.as_ref() else {
            return Err(bad());
        };
        if let Some(t) = days.fast(v, zone) {
            return Ok(Some(t));
        }
        let dt: jiff::civil::DateTime = v.parse().map_err(|_| bad())?;
        let z = zone
            .to_ambiguous_zoned(dt)
            .compatible()
            .map_err(|_| bad())?;
        Ok(Some(Ts::from_jiff(z.timestamp())))
    }
}

/// Local `YYYY-MM-DD HH:MM:SS` times read without jiff's parser where it is safe: the offset of
/// each local day the zone keeps one offset through (no transition), remembered. A day with a
/// transition, or any other spelling, goes to jiff. Owned by a decoder (one per thread).
#[derive(Debug, Default)]
pub(crate) struct LocalDays(HashMap<i64, Option<i64>, foldhash::fast::RandomState>);

impl LocalDays {
    fn fast(&mut self, v: &str, zone: &TimeZone) -> Option<Ts> {
        let b = v.as_bytes();
        if b.len() != 19 {
            return None;
        }
        let (_, day, second) = crate::engine::time::civil_prefix(b, b' ')?;
        if self.0.len() > 100_000 {
            self.0.clear();
        }
        let offset = (*self.0.entry(day).or_insert_with(|| {
            let (y, mo, d) = crate::engine::time::civil_from_days(day);
            let at = |h: i8, m: i8, s: i8| {
                let dt = jiff::civil::date(y as i16, mo as i8, d as i8).at(h, m, s, 0);
                zone.to_ambiguous_zoned(dt)
                    .unambiguous()
                    .ok()
                    .map(|z| z.offset().seconds() as i64)
            };
            match (at(0, 0, 0), at(12, 0, 0), at(23, 59, 59)) {
                (Some(a), Some(b), Some(c)) if a == b && b == c => Some(a),
                _ => None,
            }
        }))?;
        let local = day * 86_400 + second as i64;
        Some(Ts((local - offset) * NANOS_PER_SEC))
    }
}

/// A header row (the column names), not a call.
fn header() -> Reject {
    reject(
        Reason::NotAnAttempt,
        "a header row (the column names), not a call",
    )
}

pub(crate) fn reject(reason: Reason, detail: impl Into<String>) -> Reject {
    Reject {
        reason,
        detail: detail.into(),
    }
}

/// An epoch time's digits, read in one pass: `None` when `v` has a byte other than a digit or
/// `.` (it may be a local time); else its whole part (`None` when empty or over 18 digits) and
/// the digits after the first `.` (`None` after a second one). One pass without overflow
/// checks (18 digits fit an `i64`): validating, splitting and `str::parse` each walking the
/// value were a sixth of mapping a FreeSWITCH record.
fn epoch_digits(v: &[u8]) -> Option<(Option<i64>, Option<&[u8]>)> {
    let mut whole = 0i64;
    // Eight digits a word while they last (a microsecond epoch is two words), then a byte at a
    // time: the byte loop alone was 160 instructions of a FreeSWITCH record's 12,000.
    let mut at = 0;
    while at < 16 && at + 8 <= v.len() {
        let word = u64::from_le_bytes(v[at..at + 8].try_into().expect("8 bytes"));
        let Some(n) = eight_digits(word) else { break };
        whole = whole * 100_000_000 + n as i64;
        at += 8;
    }
    let mut dot = None;
    let mut dots = 0;
    for (i, &c) in v.iter().enumerate().skip(at) {
        match c {
            b'0'..=b'9' if dot.is_none() && i < 18 => whole = whole * 10 + (c - b'0') as i64,
            b'0'..=b'9' => {}
            b'.' => {
                dots += 1;
                dot.get_or_insert(i);
            }
            _ => return None,
        }
    }
    let end = dot.unwrap_or(v.len());
    let whole = (end > 0 && end <= 18).then_some(whole);
    let frac = (dots <= 1).then(|| dot.map_or(&v[v.len()..], |d| &v[d + 1..]));
    Some((whole, frac))
}

/// Eight ASCII digits, the first in the word's lowest byte, as their number; `None` when a
/// byte is not a digit. Each byte's high nibble must be 3, and stay 3 with 6 added (0x3a–0x3f
/// carry into 4); then pairs, quads and the eight are combined by multiplies.
fn eight_digits(word: u64) -> Option<u32> {
    const HIGH: u64 = 0xf0f0_f0f0_f0f0_f0f0;
    let threes = word & HIGH | (word.wrapping_add(0x0606_0606_0606_0606) & HIGH) >> 4;
    if threes != 0x3333_3333_3333_3333 {
        return None;
    }
    let d = word - 0x3030_3030_3030_3030;
    // Byte k: 10 × digit k + digit k+1, so bytes 0, 2, 4, 6 hold the four pairs.
    let pairs = d.wrapping_mul(10) + (d >> 8);
    const LOW: u64 = 0x0000_00ff_0000_00ff;
    let n = ((pairs & LOW).wrapping_mul(100 + (1_000_000 << 32))
        + ((pairs >> 16) & LOW).wrapping_mul(1 + (10_000 << 32)))
        >> 32;
    Some(n as u32)
}

fn number(v: Option<&str>, name: &str) -> Result<Option<f64>, Reject> {
    match v {
        None => Ok(None),
        // Whole seconds, as dialers write them: exact without the float parser.
        Some(s) if (1..=15).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_digit()) => Ok(
            Some(s.bytes().fold(0u64, |n, c| n * 10 + (c - b'0') as u64) as f64),
        ),
        Some(s) => match s.parse::<f64>() {
            Ok(n) if n.is_finite() && n >= 0.0 => Ok(Some(n)),
            _ => Err(reject(
                Reason::BadValue,
                format!("{name} {s:?} is not a number of seconds >= 0"),
            )),
        },
    }
}

/// The `key=value` pairs of a value (split on `;`, `,` or `|`; each side trimmed), as byte
/// ranges of its key and value in order. Split once per record however many targets read
/// the same field: splitting for each was over a quarter of reading an Asterisk row whose
/// userfield holds four pairs.
type Pairs = Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>;

fn split_pairs(v: &str, out: &mut Pairs) {
    out.clear();
    // Over bytes: the separators are ASCII, so every cut is a char boundary.
    let b = v.as_bytes();
    let trimmed = |r: std::ops::Range<usize>| {
        let t = &v[r.clone()];
        let lead = t.len() - t.trim_start().len();
        r.start + lead..r.start + lead + t.trim().len()
    };
    let mut start = 0;
    while start <= b.len() {
        let end = b[start..]
            .iter()
            .position(|c| matches!(c, b';' | b',' | b'|'))
            .map_or(b.len(), |p| start + p);
        if let Some(eq) = b[start..end].iter().position(|c| *c == b'=') {
            out.push((trimmed(start..start + eq), trimmed(start + eq + 1..end)));
        }
        start = end + 1;
    }
}

/// The value of the first pair named `key` in `v` (split by [`split_pairs`]), if not empty.
fn pair_in<'a>(v: &Cow<'a, str>, pairs: &Pairs, key: &str) -> Option<Cow<'a, str>> {
    let (_, r) = pairs.iter().find(|(k, _)| v[k.clone()] == *key)?;
    if r.is_empty() {
        return None;
    }
    Some(match v {
        Cow::Borrowed(b) => Cow::Borrowed(&b[r.clone()]),
        Cow::Owned(o) => Cow::Owned(o[r.clone()].to_owned()),
    })
}

/// The value of `key=` inside `v` (pairs split on `;`, `,` or `|`).
#[cfg(test)]
fn pair<'a>(v: Cow<'a, str>, key: &str) -> Option<Cow<'a, str>> {
    let mut pairs = Pairs::new();
    split_pairs(&v, &mut pairs);
    pair_in(&v, &pairs, key)
}

/// Whether `b` holds a `%`, eight bytes at a time; asked per value only of a record that holds
/// one somewhere (`wire` searches the whole record first, with memchr: long enough for it to
/// pay). Values are a few words long, and for them
/// the memchr crate's search cost 730 more instructions per FreeSWITCH record (callgrind), and
/// core's memchr on the last few bytes 170 more. Those bytes are read as the value's last eight
/// (overlapping the word before), or, in a value shorter than a word, as a word built from them.
fn has_percent(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    // Some byte is zero (a `%`) exactly when a high bit survives ("has zero byte").
    let any = |w: u64| {
        let x = w ^ (ONES * b'%' as u64);
        x.wrapping_sub(ONES) & !x & (ONES << 7) != 0
    };
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        if any(u64::from_le_bytes(w.try_into().expect("8 bytes"))) {
            return true;
        }
    }
    let rest = words.remainder();
    if rest.is_empty() {
        false
    } else if b.len() >= 8 {
        any(u64::from_le_bytes(
            b[b.len() - 8..].try_into().expect("8 bytes"),
        ))
    } else {
        // Zero bytes above the value: a zero is not a `%`.
        any(rest
            .iter()
            .enumerate()
            .fold(0, |w, (k, c)| w | (*c as u64) << (8 * k)))
    }
}

/// Undoes FreeSWITCH's URL encoding of values (`%XX`; a `%` not followed by two hex digits is
/// kept).
fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_numbers_and_pairs() {
        for (v, has) in [
            ("", false),
            ("%", true),
            ("abcdefg%", true),
            ("abcdefgh%", true),
            ("abcdefghijklmnop", false),
            ("abcdefgh%ijklmnop", true),
            ("\u{e9}\u{e9}\u{e9}\u{e9}%", true),
            ("$$$$&&&&", false),
        ] {
            assert_eq!(has_percent(v.as_bytes()), has, "{v:?}");
        }
        // A `%` at every position of every length up to three words, and none.
        for len in 0..=24 {
            let mut v = vec![b'a'; len];
            assert!(!has_percent(&v), "none in {len}");
            for at in 0..len {
                v[at] = b'%';
                assert!(has_percent(&v), "at {at} of {len}");
                v[at] = b'a';
            }
        }
        for (v, n) in [
            ("0", 0.0),
            ("007", 7.0),
            ("496", 496.0),
            ("1.5", 1.5),
            ("2e3", 2000.0),
        ] {
            assert_eq!(number(Some(v), "x").unwrap(), Some(n), "{v}");
        }
        for v in ["", "-1", "x", "inf", "NaN"] {
            assert!(number(Some(v), "x").is_err(), "{v}");
        }
        assert_eq!(percent_decode("%2B15551234567"), "+15551234567");
        assert_eq!(percent_decode("a%20b%"), "a b%");
        assert_eq!(percent_decode("100%zz"), "100%zz");
        let p = |v: &str, k: &str| pair(Cow::Borrowed(v), k).map(|c| c.into_owned());
        assert_eq!(p("debtor=D1;account=A1", "account").as_deref(), Some("A1"));
        assert_eq!(
            p("debtor = D1 , account=A1", "debtor").as_deref(),
            Some("D1")
        );
        assert_eq!(p("debtor=D1|x=", "x"), None);
        assert_eq!(p("plain", "debtor"), None);
        assert_eq!(
            p("a=1;debtor=;debtor=D2", "debtor"),
            None,
            "the first pair decides"
        );
        assert_eq!(p("é=1;débtor=Dé;x", "débtor").as_deref(), Some("Dé"));
        // The byte scan finds what splitting on the separators finds, for any text.
        let naive = |v: &str, key: &str| -> Option<String> {
            v.split([';', ',', '|'])
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut rng = crate::synth::Rng::new(3);
        let pieces = [
            "debtor", "=", ";", ",", "|", " ", "D1", "é", "\t", "account", "==",
        ];
        let mut v = String::from("debtor=D1;account=A1");
        for _ in 0..20_000 {
            v = rng.mutate(&v, &pieces);
            if v.len() > 80 {
                v = String::from("debtor=D1;account=A1");
            }
            for key in ["debtor", "account", "", "é"] {
                assert_eq!(p(&v, key), naive(&v, key), "{v:?} {key:?}");
            }
        }
    }

    /// Eight digits read a word at a time agree with reading them one by one, and any other
    /// byte anywhere is refused.
    #[test]
    fn eight_digits_agree_with_a_byte_loop() {
        let mut rng = crate::synth::Rng::new(3);
        let naive = |b: &[u8; 8]| -> Option<u32> {
            b.iter().try_fold(0u32, |n, c| {
                c.is_ascii_digit().then(|| n * 10 + (c - b'0') as u32)
            })
        };
        for i in 0..200_000u64 {
            let mut b = [0u8; 8];
            for c in &mut b {
                *c = match rng.below(4) {
                    0 => rng.below(256) as u8,
                    _ => b'0' + rng.below(10) as u8,
                };
            }
            if i < 256 * 8 {
                b = *b"12345678";
                b[(i / 256) as usize] = (i % 256) as u8;
            }
            assert_eq!(eight_digits(u64::from_le_bytes(b)), naive(&b), "{b:?}");
        }
        assert_eq!(
            eight_digits(u64::from_le_bytes(*b"99999999")),
            Some(99_999_999)
        );
        assert_eq!(eight_digits(u64::from_le_bytes(*b"00000000")), Some(0));
    }

    /// An epoch's digits read in one pass agree with splitting and parsing, at every length
    /// and with dots and other bytes anywhere.
    #[test]
    fn epoch_digits_agree_with_split_and_parse() {
        let naive = |v: &[u8]| -> Option<(Option<i64>, Option<Vec<u8>>)> {
            if !v.iter().all(|c| c.is_ascii_digit() || *c == b'.') {
                return None;
            }
            let t = std::str::from_utf8(v).unwrap();
            let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
            let w = (!whole.is_empty() && whole.len() <= 18).then(|| whole.parse().unwrap());
            let f = (!frac.contains('.')).then(|| frac.as_bytes().to_vec());
            Some((w, f))
        };
        let mut rng = crate::synth::Rng::new(4);
        for _ in 0..100_000 {
            let len = rng.below(24) as usize;
            let v: Vec<u8> = (0..len)
                .map(|_| match rng.below(20) {
                    0 => b'.',
                    1 => b'a',
                    _ => b'0' + rng.below(10) as u8,
                })
                .collect();
            let got = epoch_digits(&v).map(|(w, f)| (w, f.map(<[u8]>::to_vec)));
            assert_eq!(got, naive(&v), "{:?}", String::from_utf8_lossy(&v));
        }
    }

    #[test]
    fn times_are_read_exactly_in_their_unit_and_zone() {
        let raw = RawMapping {
            timezone: Some("America/New_York".into()),
            ..Default::default()
        };
        let m = Mapping::new(Format::VicidialLog, &raw).unwrap();
        let mut days = LocalDays::default();
        let mut at = |v: &str, k| m.time_of(v, k, &mut days).map(|t| t.map(|t| t.0));
        let s = NANOS_PER_SEC;
        assert_eq!(
            at("1793581200", TimeKind::SecsOrLocal),
            Ok(Some(1_793_581_200 * s))
        );
        assert_eq!(
            at("1793581200.123457", TimeKind::SecsOrLocal),
            Ok(Some(1_793_581_200 * s + 123_457_000))
        );
        assert_eq!(
            at("1793581200123457", TimeKind::Micros),
            Ok(Some(1_793_581_200 * s + 123_457_000))
        );
        assert_eq!(at("0", TimeKind::Micros), Ok(None));
        assert_eq!(at("0.0", TimeKind::SecsOrLocal), Ok(None));
        // New York local: EDT (-4) before 2026-11-01 02:00, EST (-5) after; the repeated hour
        // is read as its first occurrence.
        let utc = |t: &str| t.parse::<jiff::Timestamp>().unwrap().as_nanosecond() as i64;
        assert_eq!(
            at("2026-10-31 09:00:00", TimeKind::SecsOrLocal),
            Ok(Some(utc("2026-10-31T13:00:00Z")))
        );
        assert_eq!(
            at("2026-11-02 09:00:00", TimeKind::SecsOrLocal),
            Ok(Some(utc("2026-11-02T14:00:00Z")))
        );
        assert_eq!(
            at("2026-11-01 01:30:00", TimeKind::SecsOrLocal),
            Ok(Some(utc("2026-11-01T05:30:00Z")))
        );
        for bad in [
            "1.2.3",
            ".5",
            "2026-13-01 00:00:00",
            "yesterday",
            "99999999999999999999",
            "0000000000000000017",
            "",
            ".",
            "1..2",
        ] {
            assert!(at(bad, TimeKind::SecsOrLocal).is_err(), "{bad}");
        }
        // The longest whole part read (18 digits; 19 above are refused), a bare trailing dot,
        // and fraction digits past nanoseconds (ignored).
        assert_eq!(
            at("000000000000000017", TimeKind::SecsOrLocal),
            Ok(Some(17 * s))
        );
        assert_eq!(at("17.", TimeKind::SecsOrLocal), Ok(Some(17 * s)));
        assert_eq!(at("1.0000000019", TimeKind::SecsOrLocal), Ok(Some(s + 1)));
        assert!(at("2026-11-02 09:00:00", TimeKind::Micros).is_err());
    }

    /// The FreeSWITCH defaults with the debtor in the channel variable `d`.
    fn freeswitch_with_debtor_d() -> Mapping {
        let raw = RawMapping {
            debtor_id: Some(Places::One("variables.d".into())),
            ..Default::default()
        };
        Mapping::new(Format::FreeswitchJsonCdr, &raw).unwrap()
    }

    /// FreeSWITCH writes no local times: a time that is not a number is refused, not read in a
    /// zone it does not have (a mutation found this panicking).
    #[test]
    fn a_zoneless_format_refuses_a_time_that_is_not_a_number() {
        let m = freeswitch_with_debtor_d();
        let mut days = LocalDays::default();
        let r = m.time_of("2026-11-02 09:00:00", TimeKind::SecsOrLocal, &mut days);
        assert_eq!(r.unwrap_err().reason, Reason::BadTimestamp);
    }

    /// Values are URL-decoded whether the `%` is in the record as written or comes out of a
    /// JSON escape (`\u0025`, a value serde_json owns): the record-wide search that lets plain
    /// records skip the per-value check must not skip the second.
    #[test]
    fn percent_escapes_are_decoded_however_the_percent_is_written() {
        let m = freeswitch_with_debtor_d();
        let doc = |phone: &str, debtor: &str| {
            format!(
                r#"{{"variables":{{"uuid":"c1","d":"{debtor}","start_epoch":"1793581200","hangup_cause":"NORMAL_CLEARING","billsec":"5"}},"callflow":[{{"caller_profile":{{"destination_number":"{phone}"}}}}]}}"#
            )
        };
        let read = |text: &str| {
            let mut days = LocalDays::default();
            let w = m.read(text, &mut days).unwrap();
            (
                w.phone.unwrap().into_owned(),
                w.debtor_id.unwrap().into_owned(),
            )
        };
        for (phone, debtor, want) in [
            ("%2B8613800000001", "D%201", ("+8613800000001", "D 1")),
            (r"\u00252B8613800000001", "D1", ("+8613800000001", "D1")),
            ("+8613800000001", r"D\u002520", ("+8613800000001", "D ")),
            ("+8613800000001", "D1", ("+8613800000001", "D1")),
        ] {
            let text = doc(phone, debtor);
            assert_eq!(
                read(&text),
                (want.0.to_owned(), want.1.to_owned()),
                "{text}"
            );
        }
    }

    #[test]
    fn yes_no_values_as_dialers_write_them() {
        for v in ["1", "true", "TRUE", "yes", "Y", " y "] {
            assert_eq!(yes_no(v), Some(true), "{v:?}");
        }
        for v in ["", "0", "false", "No", "n"] {
            assert_eq!(yes_no(v), Some(false), "{v:?}");
        }
        for v in ["perhaps", "2", "yes!"] {
            assert_eq!(yes_no(v), None, "{v:?}");
        }
    }

    #[test]
    fn formats_parse_by_name() {
        for f in Format::ALL {
            assert_eq!(Format::parse(f.as_str()), Ok(f));
        }
        assert!(Format::parse("csv")
            .unwrap_err()
            .contains("asterisk-cdr-csv"));
    }
}
