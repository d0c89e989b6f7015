//! Call event v1 on the wire (DESIGN.md §2): one JSON object per record, UTF-8. Decoding
//! validates every field and normalises phone numbers to E.164; anything wrong becomes a
//! [`Reject`] with a reason from a small closed set (safe as a metric label) and a
//! human-readable detail (for the dead-letter record and debug logs, never a label).

use crate::engine::event::{Call, Channel, ClosedEnum, Direction};
use crate::engine::time::Ts;
use jiff::tz::TimeZone;
use serde::Deserialize;
use std::borrow::Cow;
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
}

impl Default for DecodeSettings {
    fn default() -> Self {
        DecodeSettings {
            default_region: phonenumber::country::Id::CN,
            max_record_bytes: 64 * 1024,
            max_future_skew: 300 * crate::engine::time::NANOS_PER_SEC,
        }
    }
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    call_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    occurred_at: Option<Cow<'a, str>>,
    #[serde(borrow)]
    debtor_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    phone: Option<Cow<'a, str>>,
    #[serde(borrow)]
    relation: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    account_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    outcome: Option<Cow<'a, str>>,
    #[serde(borrow)]
    direction: Option<Cow<'a, str>>,
    #[serde(borrow)]
    channel: Option<Cow<'a, str>>,
    duration_s: Option<f64>,
    #[serde(borrow)]
    agent_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    agency_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    creditor_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    campaign_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    callee_tz: Option<Cow<'a, str>>,
    #[serde(borrow)]
    number_source: Option<Cow<'a, str>>,
    #[serde(borrow)]
    purpose: Option<Cow<'a, str>>,
    consent: Option<bool>,
    #[serde(borrow, default, deserialize_with = "attrs_pairs")]
    attrs: Option<Vec<(Cow<'a, str>, Cow<'a, str>)>>,
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

/// A borrowed-when-possible string.
struct CowStr<'a>(Cow<'a, str>);

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

/// Max bytes for id-like string fields.
const MAX_ID_BYTES: usize = 256;

/// A decoder with its caches (phone normalisation and zone lookups are the expensive steps, and
/// the same numbers recur).
pub struct Decoder {
    settings: DecodeSettings,
    phones: crate::phone::PhoneNormaliser,
    zones: HashMap<String, Option<TimeZone>>,
}

impl Decoder {
    /// A decoder with empty caches.
    pub fn new(settings: DecodeSettings) -> Decoder {
        Decoder {
            phones: crate::phone::PhoneNormaliser::new(settings.default_region),
            settings,
            zones: HashMap::default(),
        }
    }

    /// Decodes one record. `now` is the decoder's clock for the future-skew check.
    pub fn decode(&mut self, bytes: &[u8], now: Ts) -> Result<Call, Reject> {
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
        let w: Wire<'_> = match serde_json::from_str(text) {
            Ok(w) => w,
            Err(e) => return Err(classify(text, e)),
        };
        self.validate(w, now)
    }

    fn validate(&mut self, w: Wire<'_>, now: Ts) -> Result<Call, Reject> {
        // Report missing required fields all at once: a producer fixes them together.
        let missing: Vec<&str> = [
            ("call_id", w.call_id.is_none()),
            ("occurred_at", w.occurred_at.is_none()),
            ("debtor_id", w.debtor_id.is_none()),
            ("phone", w.phone.is_none()),
            ("relation", w.relation.is_none()),
        ]
        .iter()
        .filter(|(_, m)| *m)
        .map(|(n, _)| *n)
        .collect();
        if !missing.is_empty() {
            return Err(reject(
                Reason::MissingField,
                format!("missing required field(s): {}", missing.join(", ")),
            ));
        }
        // Present from here on (checked above).
        let call_id = w.call_id.unwrap_or_default().into_owned();
        let n = call_id.chars().count();
        if !(1..=128).contains(&n) {
            return Err(reject(
                Reason::BadValue,
                format!("call_id must be 1 to 128 characters, got {n}"),
            ));
        }
        let ts_text = w.occurred_at.unwrap_or_default();
        let ts: jiff::Timestamp = ts_text.parse().map_err(|e| {
            reject(
                Reason::BadTimestamp,
                format!("occurred_at {ts_text:?} is not an RFC 3339 timestamp with an offset: {e}"),
            )
        })?;
        let occurred_at = Ts::from_jiff(ts);
        if occurred_at.0 > now.0.saturating_add(self.settings.max_future_skew) {
            return Err(reject(
                Reason::FutureTimestamp,
                format!("occurred_at {ts_text} is more than the allowed skew ahead of now ({now})"),
            ));
        }
        let debtor_id = w.debtor_id.unwrap_or_default().into_owned();
        check_id("debtor_id", &debtor_id)?;
        let raw_phone = w.phone.unwrap_or_default();
        let phone = self.normalise_phone(&raw_phone)?;
        let relation =
            parse_enum("relation", w.relation.as_deref())?.expect("relation checked present");
        let opt_id = |v: Option<Cow<'_, str>>, name: &str| -> Result<Option<String>, Reject> {
            match v {
                None => Ok(None),
                Some(s) => {
                    check_id(name, &s)?;
                    Ok(Some(s.into_owned()))
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
            event_id: opt_id(w.event_id, "event_id")?,
            account_id: opt_id(w.account_id, "account_id")?,
            outcome: parse_enum("outcome", w.outcome.as_deref())?,
            direction: parse_enum("direction", w.direction.as_deref())?
                .unwrap_or(Direction::Outbound),
            channel: parse_enum("channel", w.channel.as_deref())?.unwrap_or(Channel::Voice),
            duration_s,
            agent_id: opt_id(w.agent_id, "agent_id")?,
            agency_id: opt_id(w.agency_id, "agency_id")?,
            creditor_id: opt_id(w.creditor_id, "creditor_id")?,
            campaign_id: opt_id(w.campaign_id, "campaign_id")?,
            callee_tz,
            number_source: parse_enum("number_source", w.number_source.as_deref())?,
            purpose: parse_enum("purpose", w.purpose.as_deref())?,
            consent: w.consent.unwrap_or(false),
            attrs,
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
    pub fn normalise_phone(&mut self, raw: &str) -> Result<String, Reject> {
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

fn check_id(name: &str, v: &str) -> Result<(), Reject> {
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
