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

struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Str(Cow::<'a, str>::deserialize(d)?))
    }
}

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

fn find<'a>(pairs: &[(Cow<'a, str>, Cow<'a, str>)], name: &str) -> Option<Cow<'a, str>> {
    pairs.iter().find(|p| p.0 == name).map(|p| p.1.clone())
}

/// Reads a CDR into the mapping's slots.
pub(crate) fn read<'a>(m: &Mapping, text: &'a str) -> Result<Vec<Option<Cow<'a, str>>>, Reject> {
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
        .min_by_key(|v| v.parse::<u64>().unwrap_or(u64::MAX));
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
