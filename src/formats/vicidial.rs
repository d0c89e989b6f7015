//! VICIdial `vicidial_log` rows (the outbound call log; `extras/MySQL_AST_CREATE_tables.sql`):
//! `uniqueid, lead_id, list_id, campaign_id, call_date, start_epoch, end_epoch,
//! length_in_sec, status, phone_code, phone_number, user, comments, processed, user_group,
//! term_reason, alt_dial, called_count`. VICIdial is a MySQL database, not an event stream: rows
//! come from a CDC connector (a JSON object per row, flat or in a Debezium-style envelope whose
//! `after` is the row) or a periodic dump (CSV in `mapping.columns` order). `call_date` is
//! the server's local time (`mapping.timezone`); `start_epoch` wins when set. The number is
//! `+<phone_code><phone_number>` when `phone_code` is set, else read in the default region.
//! A CDC update of a row (VICIdial sets the agent's disposition after the call) has the same
//! `uniqueid`: it is a duplicate of the attempt, not a second one.

use super::{reject, Fixed, Mapping, Target, TimeKind};
use crate::codec::{CowStr, Reason, Reject};
use crate::engine::event::CallOutcome;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;

pub(crate) fn columns() -> Vec<String> {
    [
        "uniqueid",
        "lead_id",
        "list_id",
        "campaign_id",
        "call_date",
        "start_epoch",
        "end_epoch",
        "length_in_sec",
        "status",
        "phone_code",
        "phone_number",
        "user",
        "comments",
        "processed",
        "user_group",
        "term_reason",
        "alt_dial",
        "called_count",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

pub(crate) fn defaults() -> Vec<(Target, Vec<&'static str>)> {
    vec![
        (Target::CallId, vec!["uniqueid"]),
        (Target::DebtorId, vec!["lead_id"]),
        (Target::Phone, vec!["phone_number"]),
        (Target::CampaignId, vec!["campaign_id"]),
        (Target::AgentId, vec!["user"]),
        (Target::Direction, vec!["=outbound"]),
    ]
}

pub(crate) fn fixed() -> Fixed {
    Fixed {
        time: vec![
            ("start_epoch", TimeKind::SecsOrLocal),
            ("call_date", TimeKind::SecsOrLocal),
        ],
        outcome: "status",
        // length_in_sec includes ringing and queueing: it does not tell an answer.
        billsec: None,
        duration: "length_in_sec",
    }
}

/// `status` values (`docs/VICIDIAL_statuses.txt`): those a person answered are conversations
/// (the `human_answered` flag of `vicidial_statuses`); custom statuses go in
/// `[mapping.outcomes]`.
pub(crate) const OUTCOMES: &[(&str, CallOutcome)] = &[
    ("NA", CallOutcome::NoAnswer),
    ("N", CallOutcome::NoAnswer),
    ("B", CallOutcome::Busy),
    ("AB", CallOutcome::Busy),
    ("A", CallOutcome::Voicemail),
    ("AA", CallOutcome::Voicemail),
    ("AM", CallOutcome::Voicemail),
    ("AL", CallOutcome::Voicemail),
    ("AFAX", CallOutcome::Failed),
    ("DC", CallOutcome::NotInService),
    ("ADC", CallOutcome::NotInService),
    ("DROP", CallOutcome::Dropped),
    ("PDROP", CallOutcome::Dropped),
    ("XDROP", CallOutcome::Dropped),
    ("ERI", CallOutcome::Failed),
    ("INCALL", CallOutcome::Conversation),
    ("DISPO", CallOutcome::Conversation),
    ("SALE", CallOutcome::Conversation),
    ("NI", CallOutcome::Conversation),
    ("NP", CallOutcome::Conversation),
    ("XFER", CallOutcome::Conversation),
    ("CALLBK", CallOutcome::Conversation),
    ("CBHOLD", CallOutcome::Conversation),
    ("DEC", CallOutcome::Conversation),
    ("DNC", CallOutcome::Conversation),
    ("DNCC", CallOutcome::Conversation),
    ("PU", CallOutcome::Conversation),
];

/// A row's fields (any JSON scalar, as text).
struct Row<'a>(
    Vec<(Cow<'a, str>, Option<Cow<'a, str>>)>,
    Option<Box<Row<'a>>>,
);

impl<'de: 'a, 'a> Deserialize<'de> for Row<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Row<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a vicidial_log row as a JSON object")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Row(Vec::new(), None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::new();
                let mut inner = None;
                while let Some(CowStr(k)) = m.next_key::<CowStr<'a>>()? {
                    // A CDC envelope: the row is its `after` (or `payload.after`).
                    if k == "after" || k == "payload" {
                        let r: Row<'a> = m.next_value()?;
                        inner = Some(Box::new(r));
                        continue;
                    }
                    let v = m.next_value::<super::freeswitch::Scalar<'a>>()?;
                    fields.push((k, v.0));
                }
                Ok(Row(fields, inner))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Reads a JSON row into the mapping's slots.
pub(crate) fn read_json<'a>(
    m: &Mapping,
    text: &'a str,
) -> Result<Vec<Option<Cow<'a, str>>>, Reject> {
    let mut row: Row<'a> = serde_json::from_str(text).map_err(|e| {
        let reason = if e.is_data() {
            Reason::WrongType
        } else {
            Reason::NotJson
        };
        reject(reason, format!("not a vicidial_log row: {e}"))
    })?;
    let mut enveloped = false;
    while let Some(inner) = row.1.take() {
        row = *inner;
        enveloped = true;
    }
    if enveloped && row.0.is_empty() {
        return Err(reject(
            Reason::NotAnAttempt,
            "a CDC record without an after image (a delete), not a call",
        ));
    }
    Ok(m.slots
        .iter()
        .map(|name| {
            row.0
                .iter()
                .find(|f| f.0 == *name)
                .and_then(|f| f.1.clone())
        })
        .collect())
}
