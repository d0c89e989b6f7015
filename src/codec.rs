//! Call event v1 on the wire (DESIGN.md §2): one JSON object per record, UTF-8. Decoding
//! validates every field and normalises phone numbers to E.164; anything wrong becomes a
//! [`Reject`] with a reason from a small closed set (safe as a metric label) and a
//! human-readable detail (for the dead-letter record and debug logs, never a label).

use crate::engine::event::{Call, Channel, ClosedEnum, Direction, Text};
use crate::engine::time::Ts;
use jiff::tz::TimeZone;
use serde::Deserialize;
use std::borrow::Cow;
use std::ops::Range;
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Why a record was refused. The set is closed: it is used as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Not JSON (or not UTF-8).
    NotJson,
    /// A required field is absent or null.
    MissingField,
    /// A field (or the record) has the wrong JSON type.
    WrongType,
    /// An enum field or `callee_tz` holds a value outside its closed set.
    UnknownValue,
    /// `occurred_at` is not an RFC 3339 timestamp with an offset.
    BadTimestamp,
    /// `occurred_at` lies further in the future than the configured skew.
    FutureTimestamp,
    /// `phone` cannot be parsed as a phone number.
    BadPhone,
    /// A field breaks a constraint (length, sign, duplicate key).
    BadValue,
    /// The record is larger than the configured maximum.
    TooLarge,
    /// The call is more than `allowed_lateness` behind the newest event time (from the engine).
    TooLate,
    /// A dialer's record that is not a call attempt (a CSV header row, a CDC delete, a
    /// FreeSWITCH b-leg).
    NotAnAttempt,
}

impl Reason {
    /// Every reason, for pre-creating metric series.
    pub const ALL: &'static [Reason] = &[
        Reason::NotJson,
        Reason::MissingField,
        Reason::WrongType,
        Reason::UnknownValue,
        Reason::BadTimestamp,
        Reason::FutureTimestamp,
        Reason::BadPhone,
        Reason::BadValue,
        Reason::TooLarge,
        Reason::TooLate,
        Reason::NotAnAttempt,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotJson => "not_json",
            Reason::MissingField => "missing_field",
            Reason::WrongType => "wrong_type",
            Reason::UnknownValue => "unknown_value",
            Reason::BadTimestamp => "bad_timestamp",
            Reason::FutureTimestamp => "future_timestamp",
            Reason::BadPhone => "bad_phone",
            Reason::BadValue => "bad_value",
            Reason::TooLarge => "too_large",
            Reason::TooLate => "too_late",
            Reason::NotAnAttempt => "not_an_attempt",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused record: the reason and what exactly was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Reject {
    /// The closed reason.
    pub reason: Reason,
    /// For people: which field and why. May quote field values: keep it out of logs above debug.
    pub detail: String,
}

fn reject(reason: Reason, detail: impl Into<String>) -> Reject {
    Reject {
        reason,
        detail: detail.into(),
    }
}

/// Decoder settings.
#[derive(Debug, Clone)]
pub struct DecodeSettings {
    /// Region for numbers written in national format.
    pub default_region: phonenumber::country::Id,
    /// Records larger than this are refused as `too_large`.
    pub max_record_bytes: usize,
    /// Timestamps more than this far (nanoseconds) ahead of the decoder's clock are refused.
    pub max_future_skew: i64,
    /// The records' format and, for a dialer's own format, where the call's fields are.
    pub mapping: std::sync::Arc<crate::formats::Mapping>,
}

impl Default for DecodeSettings {
    fn default() -> Self {
        DecodeSettings {
            default_region: phonenumber::country::Id::CN,
            max_record_bytes: 64 * 1024,
            max_future_skew: 300 * crate::engine::time::NANOS_PER_SEC,
            mapping: Default::default(),
        }
    }
}

impl DecodeSettings {
    /// The same settings for call event v1 records, whatever the input's format (the pre-dial
    /// check's requests are call events).
    pub fn for_v1(&self) -> DecodeSettings {
        DecodeSettings {
            mapping: Default::default(),
            ..self.clone()
        }
    }
}

/// A record's fields as read, before validation: what call event v1 decodes to, and what
/// `crate::formats` reads a dialer's record into.
#[derive(Deserialize, Default, Debug, PartialEq)]
pub(crate) struct Wire<'a> {
    /// A dialer mapping found no debtor and leaves it to the contact book (`@contact_book`):
    /// the call is decoded with an empty `debtor_id`, filled in when judged. Never in v1.
    #[serde(skip)]
    pub(crate) debtor_from_book: bool,
    #[serde(borrow)]
    pub(crate) call_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) occurred_at: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) debtor_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) phone: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) relation: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) event_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) account_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) outcome: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) direction: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) channel: Option<Cow<'a, str>>,
    pub(crate) duration_s: Option<f64>,
    #[serde(borrow)]
    pub(crate) agent_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) agency_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) creditor_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) campaign_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) callee_tz: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) number_source: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) purpose: Option<Cow<'a, str>>,
    pub(crate) consent: Option<bool>,
    #[serde(borrow, default, deserialize_with = "attrs_pairs")]
    pub(crate) attrs: Option<Vec<(Cow<'a, str>, Cow<'a, str>)>>,
    /// The event time, when a format read it already (then `occurred_at` is absent).
    #[serde(skip)]
    pub(crate) at: Option<Ts>,
}

type Pairs<'a> = Option<Vec<(Cow<'a, str>, Cow<'a, str>)>>;

/// `attrs` arrives as an object of string → string; read it as pairs without building a map.
fn attrs_pairs<'de: 'a, 'a, D: serde::Deserializer<'de>>(d: D) -> Result<Pairs<'a>, D::Error> {
    struct V<'a>(std::marker::PhantomData<&'a ()>);
    impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
        type Value = Pairs<'a>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object of string values")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some((k, v)) = m.next_entry::<CowStr<'a>, CowStr<'a>>()? {
                out.push((k.0, v.0));
            }
            Ok(Some(out))
        }
    }
    d.deserialize_any(V(std::marker::PhantomData))
}

/// A string borrowed from the record unless it holds an escape (serde's own `Cow<str>` always
/// copies). Also the key of every member `crate::formats` reads.
pub(crate) struct CowStr<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
        }
        d.deserialize_str(V).map(CowStr)
    }
}

/// The common record read without serde: one flat object whose values are strings without
/// escapes, integers, booleans or null. It returns exactly what `serde_json::from_str` would
/// (a test compares them over generated and mutated records), or `None` for anything else
/// (escapes, fractions, nested objects, duplicate or malformed keys, trailing text), which then
/// goes through serde_json, the authority on errors and on everything unusual.
#[cfg(test)]
fn scan(text: &str) -> Option<Wire<'_>> {
    let mut w = Wire::default();
    scan_into(text, &mut w).map(|()| w)
}

/// [`scan`] into `w` (as [`Wire::default`] leaves it), in place: a record's fields are some
/// 450 bytes, and each move of them by value was a copy (`memmove` went from 3.9% to 2.0% of
/// a default-policy replay's samples when [`Decoder::decode_each`] stopped moving them).
fn scan_into<'a>(text: &'a str, w: &mut Wire<'a>) -> Option<()> {
    let b = text.as_bytes();
    let ends = Ends::of(b);
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    let mut seen = 0u32;
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            let (key, after) = scan_key(b, i, &ends)?;
            let name = NameWords::read(b, key);
            // Compact JSON first, as dialers write it: `":"` then a string, read with one
            // two-byte compare (the general path skips whitespace twice and reads three bytes).
            let (value, after) = if b.get(after..after + 2) == Some(b":\"") {
                scan_str(text, after + 1, &ends).map(|(s, j)| (Value::Str(s), j))?
            } else {
                i = skip_ws(b, after);
                if b.get(i) != Some(&b':') {
                    return None;
                }
                i = skip_ws(b, i + 1);
                scan_value(text, i, &ends)?
            };
            // A field given twice is serde's error to report.
            if let Some(bit) = put(w, name, value)? {
                if seen & (1 << bit) != 0 {
                    return None;
                }
                seen |= 1 << bit;
            }
            // And `,"`: the next member's name follows at once.
            if b.get(after..after + 2) == Some(b",\"") {
                i = after + 1;
                continue;
            }
            i = skip_ws(b, after);
            match b.get(i) {
                Some(b',') => i = skip_ws(b, i + 1),
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    (skip_ws(b, i) == b.len()).then_some(())
}

/// A member's name as its length and two little-endian words: its first eight bytes (zero
/// past its end) and, if it is longer, its last eight. Equal for two names exactly when the
/// names are equal (up to 16 bytes; longer ones are no field's, and all read as one), so [`put`]
/// tells the fields apart by a `match` on these instead of comparing the name's bytes with each
/// field's in turn (`put` was a twelfth of the decoder thread's samples, default policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NameWords(usize, u64, u64);

impl NameWords {
    /// The words of `name`.
    const fn of(name: &[u8]) -> NameWords {
        if name.len() > 16 {
            return NameWords(usize::MAX, 0, 0);
        }
        let (mut head, mut tail, mut i) = (0u64, 0u64, 0);
        while i < name.len() && i < 8 {
            head |= (name[i] as u64) << (8 * i);
            i += 1;
        }
        if name.len() > 8 {
            let mut j = 0;
            while j < 8 {
                tail |= (name[name.len() - 8 + j] as u64) << (8 * j);
                j += 1;
            }
        }
        NameWords(name.len(), head, tail)
    }

    /// The words of the name `b[at]`: two loads where the record has eight bytes from the
    /// name's start on (it has for every name but one at its very end), else byte by byte.
    #[inline(always)]
    fn read(b: &[u8], at: Range<usize>) -> NameWords {
        let len = at.len();
        match b.get(at.start..at.start + 8) {
            Some(head) if len <= 16 => {
                let head = u64::from_le_bytes(head.try_into().expect("8 bytes"));
                let head = if len >= 8 {
                    head
                } else {
                    head & ((1u64 << (8 * len)) - 1)
                };
                let tail = if len > 8 {
                    u64::from_le_bytes(b[at.end - 8..at.end].try_into().expect("8 bytes"))
                } else {
                    0
                };
                NameWords(len, head, tail)
            }
            _ => NameWords::of(&b[at]),
        }
    }
}

/// The words of each field's name, for [`put`]'s `match`.
mod names {
    use super::NameWords;
    pub const CALL_ID: NameWords = NameWords::of(b"call_id");
    pub const OCCURRED_AT: NameWords = NameWords::of(b"occurred_at");
    pub const DEBTOR_ID: NameWords = NameWords::of(b"debtor_id");
    pub const PHONE: NameWords = NameWords::of(b"phone");
    pub const RELATION: NameWords = NameWords::of(b"relation");
    pub const EVENT_ID: NameWords = NameWords::of(b"event_id");
    pub const ACCOUNT_ID: NameWords = NameWords::of(b"account_id");
    pub const OUTCOME: NameWords = NameWords::of(b"outcome");
    pub const DIRECTION: NameWords = NameWords::of(b"direction");
    pub const CHANNEL: NameWords = NameWords::of(b"channel");
    pub const AGENT_ID: NameWords = NameWords::of(b"agent_id");
    pub const AGENCY_ID: NameWords = NameWords::of(b"agency_id");
    pub const CREDITOR_ID: NameWords = NameWords::of(b"creditor_id");
    pub const CAMPAIGN_ID: NameWords = NameWords::of(b"campaign_id");
    pub const CALLEE_TZ: NameWords = NameWords::of(b"callee_tz");
    pub const NUMBER_SOURCE: NameWords = NameWords::of(b"number_source");
    pub const PURPOSE: NameWords = NameWords::of(b"purpose");
    pub const DURATION_S: NameWords = NameWords::of(b"duration_s");
    pub const CONSENT: NameWords = NameWords::of(b"consent");
    pub const ATTRS: NameWords = NameWords::of(b"attrs");
}

/// Stores one field: `Some(Some(bit))` for a known field (its bit in the seen-set), `Some(None)`
/// for an unknown one (ignored, as serde does), `None` for a value serde must judge.
#[inline(always)]
fn put<'a>(w: &mut Wire<'a>, name: NameWords, value: Value<'a>) -> Option<Option<u32>> {
    use names::*;
    let (bit, slot) = match name {
        CALL_ID => (0, &mut w.call_id),
        OCCURRED_AT => (1, &mut w.occurred_at),
        DEBTOR_ID => (2, &mut w.debtor_id),
        PHONE => (3, &mut w.phone),
        RELATION => (4, &mut w.relation),
        EVENT_ID => (5, &mut w.event_id),
        ACCOUNT_ID => (6, &mut w.account_id),
        OUTCOME => (7, &mut w.outcome),
        DIRECTION => (8, &mut w.direction),
        CHANNEL => (9, &mut w.channel),
        AGENT_ID => (10, &mut w.agent_id),
        AGENCY_ID => (11, &mut w.agency_id),
        CREDITOR_ID => (12, &mut w.creditor_id),
        CAMPAIGN_ID => (13, &mut w.campaign_id),
        CALLEE_TZ => (14, &mut w.callee_tz),
        NUMBER_SOURCE => (15, &mut w.number_source),
        PURPOSE => (16, &mut w.purpose),
        DURATION_S => {
            match value {
                Value::Null => {}
                Value::Int(n) => w.duration_s = Some(n as f64),
                _ => return None,
            }
            return Some(Some(17));
        }
        CONSENT => {
            match value {
                Value::Null => {}
                Value::Bool(v) => w.consent = Some(v),
                _ => return None,
            }
            return Some(Some(18));
        }
        // An attrs object goes through serde; null is the same as absent.
        ATTRS => return matches!(value, Value::Null).then_some(Some(19)),
        _ => return Some(None),
    };
    match value {
        Value::Str(v) => *slot = Some(Cow::Borrowed(v)),
        Value::Null => {}
        _ => return None,
    }
    Some(Some(bit))
}

enum Value<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
    Null,
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// Where a member's name is in the record: it is only compared with the names [`put`] knows
/// ([`NameWords`]), so it need not be sliced as a `str` (a checked, out-of-line call for each of
/// a record's ~20 names).
#[inline(always)]
fn scan_key(b: &[u8], i: usize, ends: &Ends) -> Option<(Range<usize>, usize)> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let end = ends.close(b, i + 1)?;
    Some((i + 1..end, end + 1))
}

/// A string without escapes or control characters starting at `i` (the opening quote): its
/// contents and the index after the closing quote.
#[inline(always)]
fn scan_str<'a>(text: &'a str, i: usize, ends: &Ends) -> Option<(&'a str, usize)> {
    let b = text.as_bytes();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let start = i + 1;
    let end = ends.close(b, start)?;
    // `text` is valid UTF-8 and the delimiters are ASCII, so these are char boundaries.
    // (Cut at the end, then at the start: each cut checks one boundary, and is inlined where
    // a range checks two in an out-of-line call.)
    Some((&text[..end][start..], end + 1))
}

/// Records up to this many bytes have their quotes indexed ([`Ends`]).
const INDEXED_BYTES: usize = 1024;

/// Where a record's strings end. In a record with no backslash and no control character —
/// nearly every one — each string ends at the next quote, so the quotes of the whole record
/// are found first, 64 bytes to a word of bits (SSE2 compares, [`quotes_in`]); each string's
/// end is then a bit search. Scanning each string for its end
/// instead (`string_end`, 8 bytes at a time) was a sixth of decoding. Other records (and
/// records over [`INDEXED_BYTES`]) are scanned a string at a time.
pub(crate) enum Ends {
    Indexed([u64; INDEXED_BYTES / 64]),
    Scanned,
}

impl Ends {
    pub(crate) fn of(b: &[u8]) -> Ends {
        if b.len() > INDEXED_BYTES {
            return Ends::Scanned;
        }
        let mut words = [0u64; INDEXED_BYTES / 64];
        let mut odd = 0u8;
        blocks64(b, |w, c, shift| {
            let (q, o) = quotes_in(c);
            words[w] = q >> shift;
            odd |= o;
        });
        if odd != 0 {
            Ends::Scanned
        } else {
            Ends::Indexed(words)
        }
    }

    /// Whether every string of the record ends at the next quote (no escape, no control
    /// character).
    pub(crate) fn indexed(&self) -> bool {
        matches!(self, Ends::Indexed(_))
    }

    /// The index of the quote that ends a string whose contents start at `start`, if nothing
    /// before it makes the string one to leave to serde.
    #[inline(always)]
    pub(crate) fn close(&self, b: &[u8], start: usize) -> Option<usize> {
        match self {
            Ends::Indexed(words) => next_bit(words, start),
            Ends::Scanned => {
                let end = start + string_end(b.get(start..)?)?;
                (b[end] == b'"').then_some(end)
            }
        }
    }
}

/// Calls `each` with every 64-byte block of `b`, the index of the word of bits it fills, and
/// the right shift that word's bits take: whole blocks as they are (0); then the rest, if any,
/// as the last 64 bytes of `b`, overlapping the block before, shifted down to the rest's bits —
/// or, in a record shorter than 64 bytes, padded with spaces (0), which no index marks.
/// (Copying the rest into a padded block where the overlap can be read instead stalled on the
/// copy: a tenth of [`Ends::of`]'s time.) The indexes of JSON records' quotes and of CSV rows'
/// quotes and commas (`formats::csv`) are built this way.
#[inline(always)]
pub(crate) fn blocks64(b: &[u8], mut each: impl FnMut(usize, &[u8; 64], u32)) {
    let mut chunks = b.chunks_exact(64);
    for (w, c) in (0..).zip(&mut chunks) {
        each(w, c.try_into().expect("64 bytes"), 0);
    }
    let rest = chunks.remainder();
    if rest.is_empty() {
        return;
    }
    if b.len() >= 64 {
        let last = b[b.len() - 64..].try_into().expect("64 bytes");
        each(b.len() / 64, last, (64 - rest.len()) as u32);
    } else {
        let mut last = [b' '; 64];
        last[..rest.len()].copy_from_slice(rest);
        each(0, &last, 0);
    }
}

/// The first set bit at or after `from` of `words` (bit `i % 64` of word `i / 64`): where an
/// indexed string or field ends.
#[inline(always)]
pub(crate) fn next_bit(words: &[u64], from: usize) -> Option<usize> {
    let mut w = from / 64;
    let mut bits = *words.get(w)? & (u64::MAX << (from % 64));
    while bits == 0 {
        w += 1;
        bits = *words.get(w)?;
    }
    Some(w * 64 + bits.trailing_zeros() as usize)
}

/// The quotes of 64 bytes as bits, and a non-zero byte if any is a backslash or a control
/// character: 16 bytes per SSE2 compare where the target has it (every x86-64).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
fn quotes_in(c: &[u8; 64]) -> (u64, u8) {
    use safe_arch::*;
    let quote = set_splat_i8_m128i(b'"' as i8);
    let slash = set_splat_i8_m128i(b'\\' as i8);
    let below = set_splat_i8_m128i(0x1f);
    let mut q = 0u64;
    let mut odd = 0i32;
    for (k, part) in c.chunks_exact(16).enumerate() {
        let x = load_unaligned_m128i(part.try_into().expect("16 bytes"));
        q |= (move_mask_i8_m128i(cmp_eq_mask_i8_m128i(x, quote)) as u16 as u64) << (16 * k);
        // x <= 0x1f, unsigned: min(x, 0x1f) == x.
        let control = cmp_eq_mask_i8_m128i(min_u8_m128i(x, below), x);
        odd |= move_mask_i8_m128i(control | cmp_eq_mask_i8_m128i(x, slash));
    }
    (q, (odd != 0) as u8)
}

/// The quotes of 64 bytes as bits, and a non-zero byte if any is a backslash or a control
/// character.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn quotes_in(c: &[u8; 64]) -> (u64, u8) {
    quotes_in_bytes(c)
}

/// [`quotes_in`] a byte at a time: targets without SSE2, and the tests' reference.
#[cfg_attr(
    all(target_arch = "x86_64", target_feature = "sse2", not(test)),
    allow(dead_code)
)]
fn quotes_in_bytes(c: &[u8; 64]) -> (u64, u8) {
    let mut q = 0u64;
    let mut odd = 0u8;
    for (j, &x) in c.iter().enumerate() {
        q |= ((x == b'"') as u64) << j;
        odd |= ((x == b'\\') | (x < 0x20)) as u8;
    }
    (q, odd)
}

/// Eight bytes (little-endian) that a JSON string cannot hold as they are: non-zero exactly
/// when one is a quote, a backslash or a control character, and then its lowest set bit is
/// the high bit of the first such byte (the classic "has zero byte" and "has less than"
/// tests; borrows only run towards higher bytes, and bytes >= 0x80 never hit).
#[inline]
pub(crate) fn escape_hits(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let quote = x ^ (ONES * b'"' as u64);
    let slash = x ^ (ONES * b'\\' as u64);
    ((quote.wrapping_sub(ONES) & !quote)
        | (slash.wrapping_sub(ONES) & !slash)
        | (x.wrapping_sub(ONES * 0x20) & !x))
        & HIGH
}

/// The index of the first byte of `b` that ends a JSON string or cannot be in one as is: a
/// quote, a backslash or a control character. Eight bytes at a time (the ids and names in a
/// record are 8 to 30 bytes; a byte at a time was a tenth of decoding).
pub(crate) fn string_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 8 <= b.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        let hit = escape_hits(u64::from_le_bytes(w));
        if hit != 0 {
            // The lowest flagged byte is exact: borrows only run towards higher bytes.
            return Some(i + (hit.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|p| i + p)
}

#[inline(always)]
fn scan_value<'a>(text: &'a str, i: usize, ends: &Ends) -> Option<(Value<'a>, usize)> {
    let b = text.as_bytes();
    match *b.get(i)? {
        b'"' => scan_str(text, i, ends).map(|(s, j)| (Value::Str(s), j)),
        b't' if b[i..].starts_with(b"true") => Some((Value::Bool(true), i + 4)),
        b'f' if b[i..].starts_with(b"false") => Some((Value::Bool(false), i + 5)),
        b'n' if b[i..].starts_with(b"null") => Some((Value::Null, i + 4)),
        b'0'..=b'9' => {
            // Integers only, without leading zeros, small enough to be exact as f64.
            let len = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            let end = i + len;
            if len > 15
                || (len > 1 && b[i] == b'0')
                || matches!(b.get(end), Some(b'.' | b'e' | b'E'))
            {
                return None;
            }
            Some((Value::Int(text[i..end].parse().ok()?), end))
        }
        _ => None,
    }
}

/// `occurred_at` in the forms dialers write, `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, read
/// directly: jiff's general RFC 3339 parser was 2% of decoding. `None` for anything else —
/// other forms, out-of-range fields, `-00:00`, years outside 1000–9998 — which jiff then
/// reads or refuses with its reason. Where this reads a value it is the one jiff reads (a
/// property test compares them).
fn fast_timestamp(s: &str, dates: &mut crate::engine::time::DateMemo) -> Option<Ts> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let (y, day, second) = crate::engine::time::civil_prefix_memo(b, b'T', dates)?;
    if !(1000..=9998).contains(&y) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b.get(r)?.iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + (c - b'0') as u32)
        })
    };
    let mut i = 19;
    let mut nanos = 0u32;
    if b[i] == b'.' {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        nanos = num(i + 1..i + 1 + digits)? * 10u32.pow(9 - digits as u32);
        i += 1 + digits;
    }
    let offset = match &b[i..] {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 || (*sign == b'-' && oh == 0 && om == 0) {
                return None;
            }
            let o = (oh * 3600 + om * 60) as i64;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let secs = day * 86_400 + second as i64 - offset;
    // Clamped to what a Ts holds, as Ts::from_jiff does (years 1678 to 2261 fit).
    let n = secs as i128 * 1_000_000_000 + nanos as i128;
    Some(Ts(n.clamp(i64::MIN as i128, i64::MAX as i128) as i64))
}

/// Max bytes for id-like string fields.
const MAX_ID_BYTES: usize = 256;

/// Records [`Decoder::decode_each`] reads before the one it validates.
const READ_AHEAD: usize = 4;

/// A record [`Decoder::decode_each`] has read and not yet validated: its fields, why it was
/// refused if it was, and its phone cache key.
type Ahead<'a> = (Wire<'a>, Option<Reject>, Option<u64>);

/// A decoder with its caches (phone normalisation and zone lookups are the expensive steps, and
/// the same numbers recur).
pub struct Decoder {
    settings: DecodeSettings,
    phones: crate::phone::PhoneNormaliser,
    zones: HashMap<String, Option<TimeZone>>,
    days: crate::formats::LocalDays,
    /// The date of the last event time read.
    dates: crate::engine::time::DateMemo,
}

impl Decoder {
    /// A decoder with empty caches.
    pub fn new(settings: DecodeSettings) -> Decoder {
        Decoder {
            phones: crate::phone::PhoneNormaliser::new(settings.default_region),
            settings,
            zones: HashMap::default(),
            days: Default::default(),
            dates: Default::default(),
        }
    }

    /// Decodes one record. `now` is the decoder's clock for the future-skew check.
    pub fn decode(&mut self, bytes: &[u8], now: Ts) -> Result<Call, Reject> {
        let mut w = Wire::default();
        self.read_into(bytes, &mut w)?;
        let key = self.phone_key(&w);
        self.validate(&mut w, key, now)
    }

    /// The phone cache's key for the record's number ([`crate::phone::PhoneNormaliser::key`]),
    /// worked out once per record, before validation.
    fn phone_key(&mut self, w: &Wire<'_>) -> Option<u64> {
        self.phones.key(w.phone.as_deref()?)
    }

    /// Decodes records in order, each exactly as [`Decoder::decode`] would, and hands each
    /// outcome to `each`. A record is read (its fields found) [`READ_AHEAD`] records before it
    /// is validated, and the phone cache's line for its number asked for then: validating
    /// reads it a few records later, from the processor's cache, where one at a time each
    /// lookup waited for memory (with hundreds of thousands of numbers, most of the cache's
    /// time).
    pub fn decode_each<'a>(
        &mut self,
        records: impl Iterator<Item = &'a [u8]>,
        now: Ts,
        mut each: impl FnMut(Result<Call, Reject>),
    ) {
        // The records read and not yet validated, each left where it was read ([`scan_into`]).
        let mut ring: [Ahead<'a>; READ_AHEAD + 1] = Default::default();
        let mut read = 0usize;
        let mut finish = |dec: &mut Decoder, (w, refused, key): &mut Ahead<'a>| {
            each(match refused.take() {
                Some(r) => Err(r),
                None => dec.validate(w, *key, now),
            })
        };
        for bytes in records {
            let (w, refused, key) = &mut ring[read % ring.len()];
            *refused = self.read_into(bytes, w).err();
            *key = if refused.is_none() {
                self.phone_key(w)
            } else {
                None
            };
            if let Some(k) = *key {
                self.phones.prefetch(k);
            }
            read += 1;
            if read > READ_AHEAD {
                finish(self, &mut ring[(read - 1 - READ_AHEAD) % ring.len()]);
            }
        }
        for i in read.saturating_sub(READ_AHEAD)..read {
            finish(self, &mut ring[i % ring.len()]);
        }
    }

    /// A record's fields as read into `w`, replacing what it held, before validation (the
    /// size, UTF-8 and JSON checks). After a refusal what `w` holds means nothing.
    fn read_into<'a>(&mut self, bytes: &'a [u8], w: &mut Wire<'a>) -> Result<(), Reject> {
        if bytes.len() > self.settings.max_record_bytes {
            return Err(reject(
                Reason::TooLarge,
                format!(
                    "record is {} bytes, more than the maximum {}",
                    bytes.len(),
                    self.settings.max_record_bytes
                ),
            ));
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|e| reject(Reason::NotJson, format!("not UTF-8: {e}")))?;
        if self.settings.mapping.format() != crate::formats::Format::CallEventV1 {
            let text = text.trim_end_matches(['\n', '\r']);
            *w = self.settings.mapping.read(text, &mut self.days)?;
            return Ok(());
        }
        *w = Wire::default();
        if scan_into(text, w).is_none() {
            // What the scanner left half-filled is replaced whole.
            *w = serde_json::from_str(text).map_err(|e| classify(text, e))?;
        }
        Ok(())
    }

    /// Validates a record read, whose number has the phone cache key `phone_key`.
    fn validate(
        &mut self,
        w: &mut Wire<'_>,
        phone_key: Option<u64>,
        now: Ts,
    ) -> Result<Call, Reject> {
        require(&[
            ("call_id", w.call_id.is_none()),
            ("occurred_at", w.occurred_at.is_none() && w.at.is_none()),
            ("debtor_id", w.debtor_id.is_none() && !w.debtor_from_book),
            ("phone", w.phone.is_none()),
            ("relation", w.relation.is_none()),
        ])?;
        // Present from here on (checked above).
        let call_id = Text::from(w.call_id.take().unwrap_or_default());
        let n = call_id.chars().count();
        if !(1..=128).contains(&n) {
            return Err(reject(
                Reason::BadValue,
                format!("call_id must be 1 to 128 characters, got {n}"),
            ));
        }
        let occurred_at = match w.at {
            Some(t) => t,
            None => {
                let ts_text = w.occurred_at.take().unwrap_or_default();
                match fast_timestamp(&ts_text, &mut self.dates) {
                    Some(t) => t,
                    None => {
                        let ts: jiff::Timestamp = ts_text.parse().map_err(|e| {
                            reject(
                                Reason::BadTimestamp,
                                format!("occurred_at {ts_text:?} is not an RFC 3339 timestamp with an offset: {e}"),
                            )
                        })?;
                        Ts::from_jiff(ts)
                    }
                }
            }
        };
        if occurred_at.0 > now.0.saturating_add(self.settings.max_future_skew) {
            return Err(reject(
                Reason::FutureTimestamp,
                format!(
                    "occurred_at {occurred_at} is more than the allowed skew ahead of now ({now})"
                ),
            ));
        }
        let debtor_id = Text::from(w.debtor_id.take().unwrap_or_default());
        if !(w.debtor_from_book && debtor_id.is_empty()) {
            check_id("debtor_id", &debtor_id)?;
        }
        let raw_phone = w.phone.take().unwrap_or_default();
        let phone = self
            .phones
            .normalise_keyed(&raw_phone, phone_key)
            .ok_or_else(|| bad_phone(&raw_phone))?;
        let relation =
            parse_enum("relation", w.relation.as_deref())?.expect("relation checked present");
        let opt_id = |v: Option<Cow<'_, str>>, name: &str| -> Result<Option<Text>, Reject> {
            match v {
                None => Ok(None),
                Some(s) => {
                    check_id(name, &s)?;
                    Ok(Some(Text::from(s)))
                }
            }
        };
        let duration_s = match w.duration_s {
            Some(d) if !(d.is_finite() && d >= 0.0) => {
                return Err(reject(
                    Reason::BadValue,
                    format!("duration_s must be a number >= 0, got {d}"),
                ))
            }
            d => d,
        };
        let callee_tz = match w.callee_tz.as_deref() {
            None => None,
            Some(name) => Some(self.zone(name)?),
        };
        let mut attrs: Vec<(String, String)> = w
            .attrs
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        attrs.sort();
        attrs.dedup_by(|a, b| a.0 == b.0);
        Ok(Call {
            call_id,
            occurred_at,
            debtor_id,
            phone,
            relation,
            event_id: opt_id(w.event_id.take(), "event_id")?,
            account_id: opt_id(w.account_id.take(), "account_id")?,
            outcome: parse_enum("outcome", w.outcome.as_deref())?,
            direction: parse_enum("direction", w.direction.as_deref())?
                .unwrap_or(Direction::Outbound),
            channel: parse_enum("channel", w.channel.as_deref())?.unwrap_or(Channel::Voice),
            duration_s,
            agent_id: opt_id(w.agent_id.take(), "agent_id")?,
            agency_id: opt_id(w.agency_id.take(), "agency_id")?,
            creditor_id: opt_id(w.creditor_id.take(), "creditor_id")?,
            campaign_id: opt_id(w.campaign_id.take(), "campaign_id")?,
            callee_tz,
            number_source: parse_enum("number_source", w.number_source.as_deref())?,
            purpose: parse_enum("purpose", w.purpose.as_deref())?,
            consent: w.consent.unwrap_or(false),
            attrs,
            interned: None,
            filled: Default::default(),
        })
    }

    fn zone(&mut self, name: &str) -> Result<TimeZone, Reject> {
        if let Some(z) = self.zones.get(name) {
            return z.clone().ok_or_else(|| unknown_zone(name));
        }
        let z = TimeZone::get(name).ok();
        if self.zones.len() < 10_000 {
            self.zones.insert(name.to_owned(), z.clone());
        }
        z.ok_or_else(|| unknown_zone(name))
    }

    /// Normalises a phone number to E.164, reading national formats in the default region.
    pub fn normalise_phone(&mut self, raw: &str) -> Result<Text, Reject> {
        self.phones.normalise(raw).ok_or_else(|| bad_phone(raw))
    }
}

fn unknown_zone(name: &str) -> Reject {
    reject(
        Reason::UnknownValue,
        format!("callee_tz {name:?} is not an IANA time zone"),
    )
}

fn bad_phone(raw: &str) -> Reject {
    reject(
        Reason::BadPhone,
        format!("phone {raw:?} is not a valid phone number (E.164, or national format in the default region)"),
    )
}

/// Writes a call as call event v1 (one JSON object, no line ending): what `dialguard convert`
/// prints for a dialer's record, and what decodes back to the same call.
pub fn encode(call: &Call) -> String {
    use serde_json::{Map, Value};
    let mut m = Map::new();
    let s = |v: &str| Value::String(v.to_owned());
    m.insert("call_id".into(), s(&call.call_id));
    m.insert("occurred_at".into(), s(&call.occurred_at.rfc3339()));
    m.insert("debtor_id".into(), s(&call.debtor_id));
    m.insert("phone".into(), s(&call.phone));
    m.insert("relation".into(), s(call.relation.as_str()));
    let opt = [
        ("event_id", &call.event_id),
        ("account_id", &call.account_id),
        ("agent_id", &call.agent_id),
        ("agency_id", &call.agency_id),
        ("creditor_id", &call.creditor_id),
        ("campaign_id", &call.campaign_id),
    ];
    for (k, v) in opt {
        if let Some(v) = v {
            m.insert(k.into(), s(v));
        }
    }
    if let Some(o) = call.outcome {
        m.insert("outcome".into(), s(o.as_str()));
    }
    m.insert("direction".into(), s(call.direction.as_str()));
    m.insert("channel".into(), s(call.channel.as_str()));
    if let Some(d) = call.duration_s {
        m.insert("duration_s".into(), serde_json::json!(d));
    }
    if let Some(tz) = call.callee_tz.as_ref().and_then(|z| z.iana_name()) {
        m.insert("callee_tz".into(), s(tz));
    }
    if let Some(n) = call.number_source {
        m.insert("number_source".into(), s(n.as_str()));
    }
    if let Some(p) = call.purpose {
        m.insert("purpose".into(), s(p.as_str()));
    }
    if call.consent {
        m.insert("consent".into(), Value::Bool(true));
    }
    if !call.attrs.is_empty() {
        let a: Map<String, Value> = call.attrs.iter().map(|(k, v)| (k.clone(), s(v))).collect();
        m.insert("attrs".into(), Value::Object(a));
    }
    Value::Object(m).to_string()
}

/// Refuses a record that lacks required fields, naming them all at once (a producer fixes
/// them together): `fields` are (name, missing).
pub(crate) fn require(fields: &[(&str, bool)]) -> Result<(), Reject> {
    let missing: Vec<&str> = fields.iter().filter(|f| f.1).map(|f| f.0).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(reject(
        Reason::MissingField,
        format!("missing required field(s): {}", missing.join(", ")),
    ))
}

/// An id field: not empty, at most `MAX_ID_BYTES` bytes (calls' and reference records' alike).
pub(crate) fn check_id(name: &str, v: &str) -> Result<(), Reject> {
    if v.is_empty() {
        return Err(reject(
            Reason::BadValue,
            format!("{name} must not be empty"),
        ));
    }
    if v.len() > MAX_ID_BYTES {
        return Err(reject(
            Reason::BadValue,
            format!("{name} is longer than {MAX_ID_BYTES} bytes"),
        ));
    }
    Ok(())
}

fn parse_enum<T: ClosedEnum>(name: &str, v: Option<&str>) -> Result<Option<T>, Reject> {
    match v {
        None => Ok(None),
        Some(s) => T::parse_wire(s).map(Some).ok_or_else(|| {
            reject(
                Reason::UnknownValue,
                format!("{name} {s:?} is not one of: {}", T::wire_names()),
            )
        }),
    }
}

/// Turns a serde_json failure into a reason, naming the field where one is at fault.
fn classify(text: &str, e: serde_json::Error) -> Reject {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            reject(Reason::NotJson, format!("not JSON: {e}"))
        }
        Category::Data => {
            // Decode again, slowly, to learn which field was at fault.
            let mut de = serde_json::Deserializer::from_str(text);
            let path = match serde_path_to_error::deserialize::<_, Wire<'_>>(&mut de) {
                Err(pe) => pe.path().to_string(),
                Ok(_) => ".".into(),
            };
            let msg = e.to_string();
            if path == "." {
                if msg.starts_with("invalid type") {
                    return reject(Reason::WrongType, "the record is not a JSON object");
                }
                if msg.starts_with("duplicate field") {
                    return reject(Reason::BadValue, msg);
                }
            }
            let reason = if msg.starts_with("invalid type") || msg.starts_with("invalid length") {
                Reason::WrongType
            } else {
                Reason::BadValue
            };
            reject(reason, format!("{path}: {msg}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{generate, Rng, SynthParams};

    /// Whenever the scanner answers, serde_json gives the same record.
    fn agree(text: &str) -> bool {
        match scan(text) {
            None => false,
            Some(fast) => {
                let slow: Wire<'_> = serde_json::from_str(text)
                    .unwrap_or_else(|e| panic!("scan accepted what serde refuses ({e}): {text}"));
                assert_eq!(fast, slow, "{text}");
                true
            }
        }
    }

    /// The word-at-a-time search finds what the byte-at-a-time one does, for every byte value
    /// at every position.
    #[test]
    fn string_end_agrees_with_a_byte_search() {
        let naive = |b: &[u8]| b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        for len in 0..20 {
            for at in 0..len {
                for v in 0..=255u8 {
                    let mut b = vec![b'a'; len];
                    b[at] = v;
                    if at + 1 < len {
                        b[at + 1] = b'"';
                    }
                    assert_eq!(string_end(&b), naive(&b), "len {len} at {at} byte {v}");
                }
            }
            let plain = vec![0xe9u8; len];
            assert_eq!(string_end(&plain), naive(&plain));
        }
    }

    proptest::proptest! {
        /// Where the direct reading of `occurred_at` reads a value, it is jiff's; and it reads
        /// the common forms (the generated ones are valid unless a field is out of range).
        #[test]
        fn fast_timestamps_are_what_jiff_reads(
            y in 990u32..10_000, mo in 0u32..14, d in 0u32..33, h in 0u32..26, mi in 0u32..62,
            sec in 0u32..62, frac in proptest::option::of("[0-9]{0,11}"),
            zone in proptest::sample::select(vec!["Z", "z", "+08:00", "-05:30", "+00:00", "-00:00",
                "+23:59", "+24:00", "-12:60", "+0800", "", " Z", "Z "]),
            sep in proptest::sample::select(vec!["T", "t", " "]),
        ) {
            let frac = frac.map_or(String::new(), |f| format!(".{f}"));
            let text = format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{sec:02}{frac}{zone}");
            let jiff = text.parse::<jiff::Timestamp>().ok().map(Ts::from_jiff);
            let fast = fast_timestamp(&text, &mut Default::default());
            if fast.is_some() {
                proptest::prop_assert_eq!(fast, jiff, "{}", text);
            }
            let common = (1000..=9998).contains(&y) && (1..=12).contains(&mo) && (1..=28).contains(&d)
                && h < 24 && mi < 60 && sec < 60 && frac.len() != 1 && frac.len() <= 10
                && sep == "T" && ["Z", "+08:00", "-05:30", "+00:00", "+23:59"].contains(&zone);
            if common {
                proptest::prop_assert!(fast.is_some(), "{}", text);
            }
        }
    }

    proptest::proptest! {
        /// Two names read as words ([`NameWords::read`], wherever they sit in a record, with
        /// or without eight bytes after their start) are equal exactly when the names are, for
        /// names up to 16 bytes; and read as the constant words of the same name are.
        /// (Fails when a load takes a byte past the name, or a short name's mask keeps one.)
        #[test]
        fn names_read_as_words_are_equal_when_the_names_are(
            a in proptest::collection::vec(proptest::sample::select(b"_acdeinotu\0\xff".to_vec()), 0..17),
            b in proptest::collection::vec(proptest::sample::select(b"_acdeinotu\0\xff".to_vec()), 0..17),
            pad_a in proptest::collection::vec(proptest::num::u8::ANY, 0..10),
            pad_b in proptest::collection::vec(proptest::num::u8::ANY, 0..10),
            lead in 0usize..3,
        ) {
            let read = |name: &[u8], pad: &[u8]| {
                let mut rec = vec![b'"'; lead];
                rec.extend_from_slice(name);
                rec.extend_from_slice(pad);
                NameWords::read(&rec, lead..lead + name.len())
            };
            let (wa, wb) = (read(&a, &pad_a), read(&b, &pad_b));
            proptest::prop_assert_eq!(wa == wb, a == b, "{:?} {:?}", a, b);
            proptest::prop_assert_eq!(wa, NameWords::of(&a));
        }
    }

    /// Every field's name is read as its own words, and as no other field's.
    #[test]
    fn field_names_read_as_their_words() {
        let names: [&[u8]; 20] = [
            b"call_id",
            b"occurred_at",
            b"debtor_id",
            b"phone",
            b"relation",
            b"event_id",
            b"account_id",
            b"outcome",
            b"direction",
            b"channel",
            b"agent_id",
            b"agency_id",
            b"creditor_id",
            b"campaign_id",
            b"callee_tz",
            b"number_source",
            b"purpose",
            b"duration_s",
            b"consent",
            b"attrs",
        ];
        let mut w = Wire::default();
        let mut bits = std::collections::BTreeSet::new();
        for n in names {
            let rec = [b"{\"".as_slice(), n, b"\":null}"].concat();
            let words = NameWords::read(&rec, 2..2 + n.len());
            let bit = put(&mut w, words, Value::Null)
                .expect("null is taken")
                .expect("known");
            assert!(bits.insert(bit), "{}", String::from_utf8_lossy(n));
        }
        assert_eq!(bits.len(), 20);
        let rec = b"{\"call_ids\":null}";
        assert_eq!(
            put(&mut w, NameWords::read(rec, 2..10), Value::Null),
            Some(None)
        );
    }

    proptest::proptest! {
        /// Reading event times one after another through one memo of the last date gives what
        /// reading each afresh gives, whatever the order of dates that exist and do not, and of
        /// times in and out of range. (Fails when the memo keeps a date that does not exist, or
        /// answers for a date it does not hold.)
        #[test]
        fn event_times_read_through_the_date_memo_are_read_afresh(
            picks in proptest::collection::vec((0usize..8, 0usize..4), 1..60),
        ) {
            let dates = ["2026-09-30", "2026-10-01", "2024-02-29", "2026-02-29", "2026-13-01",
                "2026-00-10", "1999-12-31", "2026-09-3x"];
            let times = ["T22:04:52.257Z", "T00:00:00+08:00", "T24:00:00Z", "T23:59:60Z"];
            let mut memo = crate::engine::time::DateMemo::default();
            for (d, t) in picks {
                let text = format!("{}{}", dates[d], times[t]);
                proptest::prop_assert_eq!(
                    fast_timestamp(&text, &mut memo),
                    fast_timestamp(&text, &mut Default::default()),
                    "{}", text
                );
            }
        }
    }

    #[test]
    fn fast_timestamps_read_month_ends_and_offsets() {
        for (text, want) in [
            (
                "2024-02-29T23:59:59.999999999Z",
                "2024-02-29T23:59:59.999999999Z",
            ),
            ("2026-12-31T00:00:00+08:00", "2026-12-30T16:00:00Z"),
            ("2026-09-30T22:00:13.759Z", "2026-09-30T22:00:13.759Z"),
            ("2000-02-29T12:00:00-05:30", "2000-02-29T17:30:00Z"),
        ] {
            let want = Ts::from_jiff(want.parse().unwrap());
            assert_eq!(
                fast_timestamp(text, &mut Default::default()),
                Some(want),
                "{text}"
            );
        }
        for text in [
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
        ] {
            assert_eq!(
                fast_timestamp(text, &mut Default::default()),
                None,
                "{text}"
            );
        }
    }

    /// The vector compares find the quotes, backslashes and control characters a byte search
    /// does, for every byte value at every position.
    #[test]
    fn quote_words_agree_with_a_byte_search() {
        for at in 0..64 {
            for v in 0..=255u8 {
                let mut c = [b'a'; 64];
                c[at] = v;
                c[(at * 7 + 3) % 64] = b'"';
                let (q, odd) = quotes_in(&c);
                let (want_q, want_odd) = quotes_in_bytes(&c);
                assert_eq!((q, odd != 0), (want_q, want_odd != 0), "byte {v} at {at}");
            }
        }
        assert_eq!(quotes_in_bytes(&[b'"'; 64]), (u64::MAX, 0));
        assert_eq!(quotes_in_bytes(&[0x1f; 64]).1, 1);
        assert_eq!(quotes_in_bytes(&[0xff; 64]), (0, 0));
    }

    /// A record's index finds, from every position, the quote a byte search finds, at every
    /// length (the last partial block of 64 bytes read padded or overlapping the one before),
    /// and is refused for a backslash or control character wherever it is.
    #[test]
    fn the_quote_index_agrees_with_a_byte_search_at_every_length() {
        for len in 0..=INDEXED_BYTES + 1 {
            let b: Vec<u8> = (0..len)
                .map(|i| if (i * 37 + len) % 11 == 0 { b'"' } else { b'a' })
                .collect();
            let ends = Ends::of(&b);
            assert_eq!(ends.indexed(), len <= INDEXED_BYTES, "length {len}");
            for start in 0..=len {
                let want = b[start..]
                    .iter()
                    .position(|c| *c == b'"')
                    .map(|p| start + p);
                assert_eq!(ends.close(&b, start), want, "length {len}, from {start}");
            }
            for odd in [b'\\', b'\n', 0x1f] {
                for at in [0, len / 2, len.saturating_sub(1)] {
                    if at < len {
                        let mut c = b.clone();
                        c[at] = odd;
                        assert!(!Ends::of(&c).indexed(), "{odd} at {at} of {len}");
                    }
                }
            }
        }
    }

    /// Reading records ahead changes nothing: every outcome is the one decoding the record
    /// alone gives, valid or not, whatever the records around it.
    #[test]
    fn decoding_a_run_of_records_is_decoding_each() {
        let mut buf = Vec::new();
        let p = SynthParams {
            calls: 3_000,
            invalid_fraction: 0.1,
            ..Default::default()
        };
        generate(&p, &mut buf).unwrap();
        let mut records: Vec<Vec<u8>> = buf.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        let call = |phone: &str| {
            format!(
                r#"{{"call_id":"x","occurred_at":"2026-01-01T00:00:00Z","debtor_id":"d","phone":"{phone}","relation":"self"}}"#
            )
        };
        let mut rng = Rng::new(3);
        for i in 0..400 {
            let extra: Vec<u8> = match i % 8 {
                0 => call("+86 138-1234-5678").into(),
                1 => call("13812345678").into(),
                2 => call("12").into(),
                3 => call("(0)12 x").into(),
                4 => vec![b'{', 0xff, b'}'],
                5 => "x".repeat(70_000).into(),
                6 => Vec::new(),
                _ => call(&format!("+8613{:09}", rng.below(1_000))).into(),
            };
            let at = rng.below(records.len() as u64) as usize;
            records.insert(at, extra);
        }
        let now = Ts(i64::MAX / 2);
        let mut alone = Decoder::new(DecodeSettings::default());
        let want: Vec<_> = records.iter().map(|r| alone.decode(r, now)).collect();
        let mut run = Decoder::new(DecodeSettings::default());
        let mut got = Vec::new();
        run.decode_each(records.iter().map(Vec::as_slice), now, |o| got.push(o));
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "record {i}");
        }
        assert!(want.iter().filter(|o| o.is_err()).count() > 300);
        // Runs shorter than the distance read ahead.
        for n in 0..=READ_AHEAD + 1 {
            let mut got = Vec::new();
            run.decode_each(records[..n].iter().map(Vec::as_slice), now, |o| got.push(o));
            assert_eq!(got, want[..n]);
        }
    }

    #[test]
    fn scanner_agrees_with_serde_json() {
        let mut buf = Vec::new();
        let p = SynthParams {
            calls: 3_000,
            invalid_fraction: 0.05,
            ..Default::default()
        };
        generate(&p, &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let plain = lines.iter().filter(|l| agree(l)).count();
        assert!(plain * 10 > lines.len() * 9, "{plain} of {}", lines.len());
        let extra = [
            r#"{}"#,
            r#" { "call_id" : "c" , "consent" : true , "x" : null, "y": 12 , "z": false } "#,
            r#"{"call_id":"c","duration_s":0,"consent":null,"attrs":null,"phone":null}"#,
            r#"{"call_id":"c","call_id":"d"}"#,
            r#"{"consent":true,"consent":false}"#,
            r#"{"duration_s":1.5}"#,
            r#"{"duration_s":01}"#,
            r#"{"duration_s":-1}"#,
            r#"{"call_id":"a\"b"}"#,
            r#"{"call_id":"é✓"}"#,
            r#"{"call_id":"c"} x"#,
            r#"{"call_id":"c",}"#,
            r#"[1]"#,
        ];
        for t in extra {
            agree(t);
        }
        // Strings ending on every side of the 64-byte words of the quote index, and records
        // longer than it indexes.
        for n in (0..140).chain([1000, 1010, 1030, 3000]) {
            let t = format!(
                r#"{{"call_id":"{}","phone":"1","relation":"self"}}"#,
                "b".repeat(n)
            );
            assert!(agree(&t), "decided at {n}");
            agree(&format!(
                r#"{{"call_id":"{}\n","phone":"1"}}"#,
                "b".repeat(n)
            ));
        }
        let mut rng = Rng::new(5);
        let pieces: &[&str] = &[
            "\"",
            "\\",
            ",",
            ":",
            "{",
            "}",
            " ",
            "0",
            "1.5",
            "a",
            "\n",
            "\u{1}",
            "null",
            "true",
            "é",
            "[",
            "]",
            r#""call_id":"x","#,
            r#""consent":1,"#,
            r#""duration_s":"3","#,
        ];
        let mut decided = 0;
        for _ in 0..20_000 {
            let pick = rng.below(lines.len() as u64) as usize;
            let t = rng.mutate(lines[pick], pieces);
            decided += agree(&t) as u32;
        }
        assert!(
            decided > 1_000,
            "the scanner decided only {decided} mutated records"
        );
    }
}
