//! FreeSWITCH JSON CDRs (`mod_json_cdr`): `variables{…}` (channel variables: `uuid`,
//! `start_uepoch`, `hangup_cause`, `billsec`, custom ones where a dialer puts debtor and
//! account ids), `callflow` (caller profiles with `destination_number` and `times` in
//! microseconds), `channel_data`. `callflow` is a JSON array in current builds and a key
//! repeated once per profile in older ones; both are read, newest profile first, and the
//! mapping's `caller_profile.*`/`times.*` are the oldest profile's (the call as dialled, not
//! where a transfer took it). Values are URL-encoded unless `encode-values=false`
//! (`mapping.url_encoded = false`).
//!
//! With `log-b-leg` (FreeSWITCH's default) a bridged call writes two records; the b-leg carries
//! `variables.originating_leg_uuid`, which the default `call_id` reads first, so both legs are
//! one attempt (the second to arrive is a duplicate).

use super::{reject, Fixed, Mapping, Target, TimeKind};
use crate::codec::{Reason, Reject};
use crate::engine::event::CallOutcome;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;

/// The names a mapping may read.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let ok = ["variables.", "caller_profile.", "times.", "channel_data."]
        .iter()
        .any(|p| name.strip_prefix(p).is_some_and(|r| !r.is_empty()))
        || !name.contains('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a FreeSWITCH CDR field: use variables.NAME, caller_profile.NAME, times.NAME, channel_data.NAME or a top-level name such as core-uuid"
        ))
    }
}

pub(crate) fn defaults() -> Vec<(Target, Vec<&'static str>)> {
    vec![
        (
            Target::CallId,
            vec!["variables.originating_leg_uuid", "variables.uuid"],
        ),
        (Target::Phone, vec!["caller_profile.destination_number"]),
        (Target::Direction, vec!["variables.direction"]),
        (Target::AccountId, vec!["variables.accountcode"]),
    ]
}

pub(crate) fn fixed() -> Fixed {
    Fixed {
        time: vec![
            ("variables.start_uepoch", TimeKind::Micros),
            ("variables.start_epoch", TimeKind::SecsOrLocal),
            ("times.created_time", TimeKind::Micros),
        ],
        outcome: "variables.hangup_cause",
        billsec: Some("variables.billsec"),
        duration: "variables.duration",
    }
}

/// `hangup_cause` values (Q.850 names, `switch_channel_cause2str`).
pub(crate) const OUTCOMES: &[(&str, CallOutcome)] = &[
    ("NORMAL_CLEARING", CallOutcome::Conversation),
    ("NO_ANSWER", CallOutcome::NoAnswer),
    ("NO_USER_RESPONSE", CallOutcome::NoAnswer),
    ("ORIGINATOR_CANCEL", CallOutcome::NoAnswer),
    ("ALLOTTED_TIMEOUT", CallOutcome::NoAnswer),
    ("USER_BUSY", CallOutcome::Busy),
    ("UNALLOCATED_NUMBER", CallOutcome::NotInService),
    ("NO_ROUTE_DESTINATION", CallOutcome::NotInService),
    ("NUMBER_CHANGED", CallOutcome::NotInService),
    ("INVALID_NUMBER_FORMAT", CallOutcome::NotInService),
    ("CALL_REJECTED", CallOutcome::Failed),
    ("NORMAL_TEMPORARY_FAILURE", CallOutcome::Failed),
    ("NETWORK_OUT_OF_ORDER", CallOutcome::Failed),
    ("DESTINATION_OUT_OF_ORDER", CallOutcome::Failed),
    ("RECOVERY_ON_TIMER_EXPIRE", CallOutcome::Failed),
    ("NORMAL_CIRCUIT_CONGESTION", CallOutcome::Failed),
    ("SWITCH_CONGESTION", CallOutcome::Failed),
    ("SERVICE_UNAVAILABLE", CallOutcome::Failed),
    ("INCOMPATIBLE_DESTINATION", CallOutcome::Failed),
    ("MEDIA_TIMEOUT", CallOutcome::Dropped),
];

type Pairs<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// The scalar members of an object (nested objects and arrays skipped).
struct Scalars<'a>(Pairs<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for Scalars<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Scalars<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Scalars(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = m.next_key::<Str<'a>>()? {
                    if let Some(v) = m.next_value::<Scalar<'a>>()?.0 {
                        out.push((k.0, v));
                    }
                }
                Ok(Scalars(out))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

use crate::codec::CowStr as Str;

/// A string, number or boolean as text; `None` for null, objects and arrays.
pub(crate) struct Scalar<'a>(pub(crate) Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Scalar<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar(Some(Cow::Borrowed(if v {
                    "true"
                } else {
                    "false"
                }))))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize, Default)]
struct Profile<'a> {
    #[serde(borrow, default)]
    caller_profile: Option<Scalars<'a>>,
    #[serde(borrow, default)]
    times: Option<Scalars<'a>>,
}

/// `callflow`: one profile or an array of them.
struct Flows<'a>(Vec<Profile<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for Flows<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Flows<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a caller profile or an array of them")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(p) = s.next_element::<Profile<'a>>()? {
                    v.push(p);
                }
                Ok(Flows(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Self::Value, A::Error> {
                let p = Profile::deserialize(serde::de::value::MapAccessDeserializer::new(m))?;
                Ok(Flows(vec![p]))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Flows(Vec::new()))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// The parts of a CDR the mapping can read.
#[derive(Default)]
struct Cdr<'a> {
    top: Pairs<'a>,
    variables: Pairs<'a>,
    channel_data: Pairs<'a>,
    flows: Vec<Profile<'a>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Cdr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Cdr<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a FreeSWITCH JSON CDR object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut c = Cdr::default();
                while let Some(k) = m.next_key::<Str<'a>>()? {
                    match k.0.as_ref() {
                        "variables" => c.variables.extend(m.next_value::<Scalars<'a>>()?.0),
                        "channel_data" => c.channel_data.extend(m.next_value::<Scalars<'a>>()?.0),
                        // Older builds repeat the key once per profile.
                        "callflow" => c.flows.extend(m.next_value::<Flows<'a>>()?.0),
                        _ => {
                            if let Some(v) = m.next_value::<Scalar<'a>>()?.0 {
                                c.top.push((k.0, v));
                            }
                        }
                    }
                }
                Ok(c)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A `created_time` as the number that orders profiles (`u64::MAX` for one that is not a
/// number). Up to 19 digits cannot overflow: folded without `str::parse`'s checks, which were
/// a thirtieth of reading a CDR.
fn created_order(v: &str) -> u64 {
    let b = v.as_bytes();
    if (1..=19).contains(&b.len()) && b.iter().all(u8::is_ascii_digit) {
        return b.iter().fold(0, |n, c| n * 10 + (c - b'0') as u64);
    }
    v.parse().unwrap_or(u64::MAX)
}

fn find<'a>(pairs: &[(Cow<'a, str>, Cow<'a, str>)], name: &str) -> Option<Cow<'a, str>> {
    pairs.iter().find(|p| p.0 == name).map(|p| p.1.clone())
}

/// Reads a CDR into the mapping's slots: by the scanner when it can ([`scan`]), else through
/// serde_json (escapes in a value read, and every error).
pub(crate) fn read<'a>(m: &Mapping, text: &'a str) -> Result<Vec<Option<Cow<'a, str>>>, Reject> {
    if let Some(slots) = scan(m, text) {
        return Ok(slots);
    }
    read_serde(m, text)
}

fn read_serde<'a>(m: &Mapping, text: &'a str) -> Result<Vec<Option<Cow<'a, str>>>, Reject> {
    let cdr: Cdr<'a> = serde_json::from_str(text).map_err(|e| {
        let reason = if e.is_data() {
            Reason::WrongType
        } else {
            Reason::NotJson
        };
        reject(reason, format!("not a FreeSWITCH JSON CDR: {e}"))
    })?;
    // Newest profile first in both shapes: the call as dialled is the last.
    let oldest = cdr.flows.last();
    let created = cdr
        .flows
        .iter()
        .filter_map(|f| f.times.as_ref().and_then(|t| find(&t.0, "created_time")))
        .filter(|v| v.as_ref() != "0")
        .min_by_key(|v| created_order(v));
    Ok(m.slots
        .iter()
        .map(|name| {
            if let Some(v) = name.strip_prefix("variables.") {
                find(&cdr.variables, v)
            } else if let Some(v) = name.strip_prefix("channel_data.") {
                find(&cdr.channel_data, v)
            } else if let Some(v) = name.strip_prefix("caller_profile.") {
                oldest.and_then(|f| f.caller_profile.as_ref().and_then(|p| find(&p.0, v)))
            } else if name == "times.created_time" {
                created.clone()
            } else if let Some(v) = name.strip_prefix("times.") {
                oldest.and_then(|f| f.times.as_ref().and_then(|p| find(&p.0, v)))
            } else {
                find(&cdr.top, name)
            }
        })
        .collect())
}

/// Where a slot's value is found, for the scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Variable = 0,
    ChannelData,
    Profile,
    Times,
    Created,
    Top,
}

impl Part {
    const COUNT: usize = 6;
}

fn part_of(name: &str) -> (Part, &str) {
    if let Some(v) = name.strip_prefix("variables.") {
        (Part::Variable, v)
    } else if let Some(v) = name.strip_prefix("channel_data.") {
        (Part::ChannelData, v)
    } else if let Some(v) = name.strip_prefix("caller_profile.") {
        (Part::Profile, v)
    } else if name == "times.created_time" {
        (Part::Created, "created_time")
    } else if let Some(v) = name.strip_prefix("times.") {
        (Part::Times, v)
    } else {
        (Part::Top, name)
    }
}

/// The mapping's names by where they are in the document, each slot's place, and a table to
/// find a member's slot from its part and name in one probe: a real CDR carries hundreds of
/// variables, and comparing each with every mapped name was a tenth of reading one.
#[derive(Debug, Clone, Default)]
pub(crate) struct Keys {
    /// How many slots there are.
    slots: usize,
    /// The slot of `times.created_time` (the earliest profile's), if mapped.
    created: Option<usize>,
    /// The slots read from a caller profile or its times (the last profile's are kept).
    in_profiles: Vec<usize>,
    /// By part: bit `n` set when a name of `n` bytes (63 for longer) is mapped there, so most
    /// members no mapping names are passed over without a probe.
    lengths: [u64; Part::COUNT],
    /// [`Keys::bucket`] → the part, name and slot of the names that hash there.
    table: Vec<Vec<(Part, Box<str>, usize)>>,
}

impl Keys {
    const BUCKETS: usize = 64;

    pub(crate) fn new(slots: &[String]) -> Keys {
        let mut k = Keys {
            table: vec![Vec::new(); Self::BUCKETS],
            ..Keys::default()
        };
        for (i, n) in slots.iter().enumerate() {
            let (p, name) = part_of(n);
            k.slots += 1;
            match p {
                Part::Profile | Part::Times => k.in_profiles.push(i),
                Part::Created => k.created = Some(i),
                _ => {}
            }
            k.lengths[p as usize] |= 1 << name.len().min(63);
            k.table[Self::bucket(p, name.as_bytes())].push((p, name.into(), i));
        }
        k
    }

    /// The length, first and last bytes of the name and its part, mixed.
    fn bucket(part: Part, b: &[u8]) -> usize {
        let (first, last) = (
            b.first().copied().unwrap_or(0),
            b.last().copied().unwrap_or(0),
        );
        (b.len() * 7 + first as usize * 3 + last as usize + part as usize * 13) % Self::BUCKETS
    }

    /// The slot of the member `name` of `part`, if the mapping reads it. Always inlined: with
    /// [`same`] inside it the compiler made it a call, 21 a record, which cost more than the
    /// compares saved.
    #[inline(always)]
    fn find(&self, part: Part, name: &[u8]) -> Option<usize> {
        if self.lengths[part as usize] & (1 << name.len().min(63)) == 0 {
            return None;
        }
        self.table[Self::bucket(part, name)]
            .iter()
            .find(|(p, n, _)| *p == part && same(n.as_bytes(), name))
            .map(|e| e.2)
    }
}

/// `a == b`, inline for names of 4 to 16 bytes (two words, overlapping when shorter than two):
/// a dozen a record, and the call to libc's `memcmp` behind `==` was a fiftieth of reading one
/// (with `find` inlined, 200 fewer instructions per FreeSWITCH record; callgrind). The wall
/// clock did not show it on its own (7 interleaved rounds, within the noise).
#[inline(always)]
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if (8..=16).contains(&n) {
        let w = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8"));
        w(a, 0) == w(b, 0) && w(a, n - 8) == w(b, n - 8)
    } else if (4..8).contains(&n) {
        let w = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4"));
        w(a, 0) == w(b, 0) && w(a, n - 4) == w(b, n - 4)
    } else {
        a == b
    }
}

/// The CDR read without serde, into the slots [`read_serde`] gives (a test compares them over
/// fixtures, renderings and mutations): a validating walk over the document that looks only at
/// the members the mapping names and skips the rest a word at a time. `None` for anything it
/// leaves to serde_json — an escape in a string it must read, a number it cannot copy as
/// written, and every error. A real CDR carries hundreds of variables; serde_json building
/// them all was two thirds of reading one.
fn scan<'a>(m: &Mapping, text: &'a str) -> Option<Vec<Option<Cow<'a, str>>>> {
    let keys = &m.fs_keys;
    let mut slots: Vec<Option<Cow<'a, str>>> = vec![None; keys.slots];
    let mut w = Walk {
        t: text,
        b: text.as_bytes(),
        i: 0,
        depth: 0,
        ends: crate::codec::Ends::of(text.as_bytes()),
    };
    // The earliest created_time; the profiles' slots hold the last profile's members (the call
    // as dialled), each profile starting them afresh.
    let mut created: Option<(u64, &'a str)> = None;
    w.ws();
    w.object(|w, key| {
        match key {
            b"variables" | b"channel_data" => {
                let part = if key == b"variables" {
                    Part::Variable
                } else {
                    Part::ChannelData
                };
                w.members_or_null(|w, k| {
                    let hit = keys.find(part, k);
                    w.scalar_into(hit.map(|h| &mut slots[h]))
                })
            }
            b"callflow" => {
                let mut profile = |w: &mut Walk<'a>| -> Option<()> {
                    for &i in &keys.in_profiles {
                        slots[i] = None;
                    }
                    let mut first_created: Option<&'a str> = None;
                    let (mut seen_cp, mut seen_t) = (false, false);
                    w.object(|w, k| match k {
                        b"caller_profile" | b"times" => {
                            let times = k == b"times";
                            let seen = if times { &mut seen_t } else { &mut seen_cp };
                            if std::mem::replace(seen, true) {
                                return None; // a duplicate field: serde's error
                            }
                            w.members_or_null(|w, k| {
                                let part = if times { Part::Times } else { Part::Profile };
                                let hit = keys.find(part, k);
                                let created_here = times && k == b"created_time";
                                if hit.is_none() && !created_here {
                                    return w.skip_value();
                                }
                                let v = w.scalar()?;
                                if let (Some(h), Some(v)) = (hit, v) {
                                    if slots[h].is_none() {
                                        slots[h] = Some(Cow::Borrowed(v));
                                    }
                                }
                                if created_here && first_created.is_none() {
                                    first_created = v;
                                }
                                Some(())
                            })
                        }
                        _ => w.skip(),
                    })?;
                    if let Some(c) = first_created.filter(|c| *c != "0") {
                        let n = created_order(c);
                        if created.is_none_or(|(m, _)| n < m) {
                            created = Some((n, c));
                        }
                    }
                    Some(())
                };
                match w.peek()? {
                    b'[' => w.array(|w| profile(w)),
                    b'{' => profile(w),
                    b'n' => w.literal("null"),
                    _ => None,
                }
            }
            _ => {
                let hit = keys.find(Part::Top, key);
                w.scalar_into(hit.map(|h| &mut slots[h]))
            }
        }
    })?;
    w.ws();
    if w.i != w.b.len() {
        return None;
    }
    if let Some(i) = keys.created {
        slots[i] = created.map(|c| Cow::Borrowed(c.1));
    }
    Some(slots)
}

/// A validating JSON walk that borrows what it reads.
struct Walk<'a> {
    t: &'a str,
    b: &'a [u8],
    i: usize,
    depth: u32,
    /// Where the document's strings end (its quotes, indexed when it has no escape).
    ends: crate::codec::Ends,
}

impl<'a> Walk<'a> {
    /// Whitespace skipped: inlined for the usual case (none: dialers write CDRs compact).
    #[inline]
    fn ws(&mut self) {
        if self.b.get(self.i).is_some_and(|c| *c > b' ') {
            return;
        }
        self.ws_run();
    }

    fn ws_run(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// The next byte that is not whitespace (one bounds check when there is none to skip).
    #[inline(always)]
    fn peek(&mut self) -> Option<u8> {
        match self.b.get(self.i) {
            Some(&c) if c > b' ' => Some(c),
            _ => {
                self.ws_run();
                self.b.get(self.i).copied()
            }
        }
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        self.b[self.i..]
            .starts_with(word.as_bytes())
            .then(|| self.i += word.len())
    }

    /// A string without escapes: where its contents start and end, the walk past it. Inlined:
    /// forty or so a record, each a few words long, the call's own cost was a third of the
    /// string's.
    #[inline(always)]
    fn plain_span(&mut self) -> Option<(usize, usize)> {
        if self.b.get(self.i) != Some(&b'"') {
            return None;
        }
        let start = self.i + 1;
        let end = self.ends.close(self.b, start)?;
        self.i = end + 1;
        Some((start, end))
    }

    /// A string without escapes: its contents.
    #[inline(always)]
    fn plain_str(&mut self) -> Option<&'a str> {
        let (start, end) = self.plain_span()?;
        // Cut at the end, then at the start: each cut checks one char boundary (as the
        // codec's `scan_str`); a range here was 280 more instructions per record.
        Some(&self.t[..end][start..])
    }

    /// [`Walk::plain_str`] as bytes: a member's name, only compared with the names a mapping
    /// reads (a `str`'s two char-boundary checks were 234 instructions a record; callgrind).
    #[inline(always)]
    fn plain_bytes(&mut self) -> Option<&'a [u8]> {
        let (start, end) = self.plain_span()?;
        self.b.get(start..end)
    }

    /// Any valid string (escapes included), skipped.
    fn skip_str(&mut self) -> Option<()> {
        self.i += 1; // the opening quote
        if self.ends.indexed() {
            // No escape in the document: the string ends at the next quote.
            self.i = self.ends.close(self.b, self.i)? + 1;
            return Some(());
        }
        loop {
            let at = self.i + crate::codec::string_end(&self.b[self.i..])?;
            match self.b[at] {
                b'"' => {
                    self.i = at + 1;
                    return Some(());
                }
                b'\\' => match *self.b.get(at + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i = at + 2,
                    b'u' => {
                        let hex = self.b.get(at + 2..at + 6)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        self.i = at + 6;
                    }
                    _ => return None,
                },
                _ => return None, // a control character
            }
        }
    }

    /// A number as JSON writes it: its text, and whether it is a plain integer that serde's
    /// integer-to-text gives back as written.
    fn number(&mut self) -> Option<(&'a str, bool)> {
        let start = self.i;
        let b = self.b;
        let mut i = self.i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return None,
        }
        let int_end = i;
        // One digit at least after `.` and after `e`: the end of the run, `None` without one.
        let digits = |mut i: usize| -> Option<usize> {
            let d = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            (i > d).then_some(i)
        };
        if b.get(i) == Some(&b'.') {
            i = digits(i + 1)?;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            i = digits(i)?;
        }
        self.i = i;
        let text = &self.t[start..i];
        let plain = int_end == i && text.len() <= 18 && text != "-0";
        Some((text, plain))
    }

    /// A scalar to read: `Some(Some(text))` for a string without escapes, a plain integer or a
    /// boolean; `Some(None)` for null, an object or an array (skipped); `None` for what serde
    /// must read (an escaped string, another number) or an error. Inlined: a dozen a record,
    /// and the call was a third of each.
    #[inline(always)]
    fn scalar(&mut self) -> Option<Option<&'a str>> {
        match *self.b.get(self.i)? {
            b'"' => self.plain_str().map(Some),
            b't' => self.literal("true").map(|_| Some("true")),
            b'f' => self.literal("false").map(|_| Some("false")),
            b'n' => self.literal("null").map(|_| None),
            b'{' | b'[' => self.skip().map(|_| None),
            _ => match self.number()? {
                (n, true) => Some(Some(n)),
                _ => None,
            },
        }
    }

    /// Reads a scalar into `slot` (first value wins) when there is one, else skips the value.
    #[inline(always)]
    fn scalar_into(&mut self, slot: Option<&mut Option<Cow<'a, str>>>) -> Option<()> {
        match slot {
            None => self.skip_value(),
            Some(slot) => {
                let v = self.scalar()?;
                if slot.is_none() {
                    *slot = v.map(Cow::Borrowed);
                }
                Some(())
            }
        }
    }

    /// [`Walk::skip`] with its usual case inlined: a string in a record without escapes.
    #[inline(always)]
    fn skip_value(&mut self) -> Option<()> {
        if self.b.get(self.i) == Some(&b'"') && self.ends.indexed() {
            self.i = self.ends.close(self.b, self.i + 1)? + 1;
            return Some(());
        }
        self.skip()
    }

    /// Skips any valid value.
    fn skip(&mut self) -> Option<()> {
        match *self.b.get(self.i)? {
            b'"' => self.skip_str(),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            b'{' => self.object(|w, _| w.skip()),
            b'[' => self.array(|w| w.skip()),
            _ => self.number().map(|_| ()),
        }
    }

    /// An object (at `{`): `member` reads each value, the walk at its first byte.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        if self.b.get(self.i) != Some(&b'{') || self.depth >= 120 {
            return None;
        }
        self.depth += 1;
        self.i += 1;
        if self.closes(b'}')? {
            return Some(());
        }
        loop {
            // Whitespace is looked for only where a token is not found at once: dialers write
            // CDRs compact, and checking for it before every token was a sixteenth of reading.
            let key = match self.plain_bytes() {
                Some(k) => k,
                None => {
                    self.ws();
                    self.plain_bytes()?
                }
            };
            if self.peek()? != b':' {
                return None;
            }
            self.i += 1;
            self.ws();
            member(self, key)?;
            if self.after_item(b'}')? {
                return Some(());
            }
        }
    }

    /// At an object's or array's first item: whether `close` ends it there (empty; taken).
    fn closes(&mut self, close: u8) -> Option<bool> {
        if self.peek()? != close {
            return Some(false);
        }
        self.i += 1;
        self.depth -= 1;
        Some(true)
    }

    /// After an item: `Some(false)` at a comma (another follows), `Some(true)` at `close` (the
    /// object or array ends), `None` at anything else.
    fn after_item(&mut self, close: u8) -> Option<bool> {
        match self.peek()? {
            b',' => {
                self.i += 1;
                Some(false)
            }
            c if c == close => self.closes(close),
            _ => None,
        }
    }

    /// An object or null whose members `member` reads.
    fn members_or_null(
        &mut self,
        member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>,
    ) -> Option<()> {
        if self.b.get(self.i) == Some(&b'n') {
            return self.literal("null");
        }
        self.object(member)
    }

    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        if self.depth >= 120 {
            return None;
        }
        self.depth += 1;
        self.i += 1; // the '['
        if self.closes(b']')? {
            return Some(());
        }
        loop {
            self.ws();
            element(self)?;
            if self.after_item(b']')? {
                return Some(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{render, Format, Mapping, RawMapping};

    /// Names compare as `==` does at every length, whichever byte differs (the word compares
    /// overlap for lengths 5 to 7 and 9 to 15).
    #[test]
    fn names_compare_as_equality_does() {
        for n in 0..=24usize {
            let a: Vec<u8> = (0..n as u8).map(|k| b'a' + k).collect();
            assert!(same(&a, &a.clone()), "length {n}");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!same(&a, &b), "length {n}, byte {at} differs");
            }
            let mut longer = a.clone();
            longer.push(b'z');
            assert!(
                !same(&a, &longer) && !same(&longer, &a),
                "lengths {n} and {}",
                n + 1
            );
        }
    }

    /// Profiles are ordered by `created_time` as `str::parse` reads it, on both sides of the
    /// fast path's edges (19 digits, `u64::MAX`, signs, fractions).
    #[test]
    fn created_times_order_as_parsed() {
        for v in [
            "",
            "0",
            "1791000000000000",
            "9999999999999999999",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999",
            "+5",
            "-1",
            "1.5",
            "12a",
        ] {
            assert_eq!(created_order(v), v.parse().unwrap_or(u64::MAX), "{v:?}");
        }
    }

    /// The key table finds every mapped name in its part, and nothing else: not the same name
    /// in another part, not a name sharing its length and first and last bytes.
    #[test]
    fn keys_find_exactly_the_mapped_names() {
        let mut slots: Vec<String> = Vec::new();
        for part in [
            "variables.",
            "channel_data.",
            "caller_profile.",
            "times.",
            "",
        ] {
            for i in 0..40 {
                slots.push(format!("{part}k{i}x"));
            }
        }
        slots.push("times.created_time".into());
        slots.push("variables.".to_owned() + &"v".repeat(90));
        let keys = Keys::new(&slots);
        let parts = [
            Part::Variable,
            Part::ChannelData,
            Part::Profile,
            Part::Times,
            Part::Top,
        ];
        for (pi, part) in parts.iter().enumerate() {
            for i in 0..40 {
                let name = format!("k{i}x");
                assert_eq!(
                    keys.find(*part, name.as_bytes()),
                    Some(pi * 40 + i),
                    "{part:?} {name}"
                );
                assert_eq!(keys.find(*part, format!("k{}x", i + 40).as_bytes()), None);
                assert_eq!(keys.find(*part, format!("k{i}y").as_bytes()), None);
            }
            assert_eq!(keys.find(*part, b""), None);
        }
        assert_eq!(keys.find(Part::Created, b"created_time"), Some(200));
        assert_eq!(keys.find(Part::Times, b"created_time"), None);
        assert_eq!(
            keys.find(Part::Variable, "v".repeat(90).as_bytes()),
            Some(201)
        );
        assert_eq!(keys.find(Part::Variable, "v".repeat(89).as_bytes()), None);
        assert_eq!(keys.find(Part::Variable, "v".repeat(91).as_bytes()), None);
        assert_eq!(keys.in_profiles.len(), 80);
        assert_eq!((keys.slots, keys.created), (202, Some(200)));
    }

    /// Whenever the scanner answers, serde_json's reading gives the same slots.
    #[test]
    fn the_scanner_agrees_with_serde_json() {
        let raw = RawMapping {
            debtor_id: Some(crate::formats::Places::One("variables.debtor_id".into())),
            agent_id: Some(crate::formats::Places::Many(vec![
                "channel_data.direction".into(),
                "times.hangup_time".into(),
            ])),
            campaign_id: Some(crate::formats::Places::One("switchname".into())),
            ..Default::default()
        };
        let m = Mapping::new(Format::FreeswitchJsonCdr, &raw).unwrap();
        let fixture = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/cdr/freeswitch/cdrs.jsonl"),
        )
        .unwrap();
        let zone = jiff::tz::TimeZone::UTC;
        let mut docs: Vec<String> = fixture.lines().map(str::to_owned).collect();
        let mut call = crate::engine::event::Call::new(
            "c\"1",
            crate::engine::time::Ts(1_793_581_200_000_000_000),
            "D1",
            "+8613800000001",
            crate::engine::event::Relation::Unknown,
        );
        call.duration_s = Some(30.0);
        docs.push(render::render(Format::FreeswitchJsonCdr, &call, &zone));
        // The fixtures and the rendering pretty-printed: whitespace around every token.
        let pretty: Vec<String> = docs
            .iter()
            .map(|d| serde_json::from_str::<serde_json::Value>(d).unwrap())
            .map(|v| serde_json::to_string_pretty(&v).unwrap())
            .collect();
        docs.extend(pretty.iter().cloned());
        let extra = [
            r#"{}"#,
            r#"{"variables":null,"callflow":null}"#,
            r#"{"variables":{"debtor_id":"a\"b"}}"#,
            r#"{"variables":{"debtor_id":12,"billsec":1.5,"duration":-0,"x":"\u0041"}}"#,
            r#"{"variables":{"debtor_id":true},"switchname":["x"],"callflow":{"times":{"created_time":"5"}}}"#,
            r#"{"callflow":[{"times":{"created_time":"9"}},{"times":{"created_time":"0"}},{"caller_profile":{}}]}"#,
            r#"{"callflow":[{"times":{}, "times":{}}]}"#,
            r#"{"callflow":[1]}"#,
            r#"{"variables":{"a":01}}"#,
            r#"{"variables":{"a":"x"}} x"#,
            r#"[]"#,
        ];
        docs.extend(extra.iter().map(|s| s.to_string()));
        let mut rng = crate::synth::Rng::new(9);
        let pieces = [
            "\"",
            "\\",
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "0",
            "-",
            ".5",
            "e3",
            "null",
            "true",
            "\\u00e9",
            "%2B",
            " ",
            "\"callflow\":",
            "\"variables\":{",
            "é",
        ];
        let base = docs.len();
        for _ in 0..20_000 {
            let pick = rng.below(base as u64) as usize;
            let t = rng.mutate(&docs[pick], &pieces);
            docs.push(t);
        }
        let mut decided = 0;
        for d in &docs {
            if let Some(fast) = scan(&m, d) {
                let slow = read_serde(&m, d).unwrap_or_else(|e| {
                    panic!("the scanner accepted what serde refuses ({e}): {d}")
                });
                assert_eq!(fast, slow, "{d}");
                decided += 1;
            }
        }
        assert!(decided > 2_000, "the scanner decided only {decided}");
        for d in fixture.lines().chain(pretty.iter().map(String::as_str)) {
            assert!(
                scan(&m, d).is_some(),
                "the scanner left a fixture to serde: {d}"
            );
        }
    }
}
