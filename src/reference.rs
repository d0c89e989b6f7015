//! Reference data on the wire, decoded and validated for the engine:
//!
//! - Status v1 (`docs/schemas/status.schema.json`): the debtor statuses a compliance team
//!   publishes — an attorney's representation, a cease request, an opted-out number — into
//!   [`Status`]. On a compacted topic a record's key is its `status_id`.
//! - Contact v1 (`docs/schemas/contact.schema.json`): the lender's contact book — whose number
//!   it is and where it came from — into [`Contact`]. On a compacted topic a record's key is
//!   `<debtor_id>/<phone>` (the number in E.164), one record per debtor and number.
//!
//! On a topic a null value (a tombstone) withdraws the record its key names. In a file
//! (`replay --reference`) each line is one JSON object of either contract — a line with a
//! `status_id` is a status, any other a contact — and `{"status_id": "...", "tombstone":
//! true}` or `{"debtor_id": "...", "phone": "...", "tombstone": true}` withdraws one. A record
//! that is not valid is refused with a closed reason, like a call ([`crate::codec::Reject`]),
//! and goes where refused calls go.

use crate::codec::{check_id, require, Reason, Reject};
use crate::engine::contacts::{self, Contact};
use crate::engine::event::{Channel, NumberSource, Relation, StatusKind, Text};
use crate::engine::status::Status;
use crate::engine::time::Ts;
use crate::phone::PhoneNormaliser;
use serde::Deserialize;

/// A reference record decoded: a status or a contact to apply, or one to withdraw.
#[derive(Debug, Clone, PartialEq)]
pub enum Reference {
    /// A status, new or replacing the one with its id.
    Status(Status),
    /// The status with this id is withdrawn (a tombstone).
    Withdraw(Text),
    /// A contact, new or replacing the one for its debtor and number.
    Contact(Contact),
    /// The contact for this debtor and number (E.164) is withdrawn (a tombstone).
    Forget {
        /// The debtor.
        debtor_id: Text,
        /// The number.
        phone: Text,
    },
}

/// Which contract a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// Status v1.
    Status,
    /// Contact v1.
    Contact,
}

impl Contract {
    /// Its name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Contract::Status => "status",
            Contract::Contact => "contact",
        }
    }
}

/// Status v1 and Contact v1 as written (one struct, so a file may mix them).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireStatus {
    status_id: Option<String>,
    status: Option<String>,
    #[serde(default)]
    debtor_id: Option<String>,
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    from: Option<String>,
    #[serde(default)]
    until: Option<String>,
    #[serde(default)]
    allow_phones: Option<Vec<String>>,
    #[serde(default)]
    windows: Option<Vec<WireWindow>>,
    source: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
    #[serde(default)]
    tombstone: Option<bool>,
    // Contact v1 only.
    #[serde(default)]
    relation: Option<String>,
    #[serde(default)]
    number_source: Option<String>,
    #[serde(default)]
    consent: Option<bool>,
}

impl WireStatus {
    /// A Contact v1 field present, for a record that is a status.
    fn contact_field(&self) -> Option<&'static str> {
        [
            ("relation", self.relation.is_some()),
            ("number_source", self.number_source.is_some()),
            ("consent", self.consent.is_some()),
        ]
        .into_iter()
        .find_map(|(n, present)| present.then_some(n))
    }

    /// A Status v1 field present, for a record that is a contact.
    fn status_field(&self) -> Option<&'static str> {
        [
            ("status", self.status.is_some()),
            ("account_id", self.account_id.is_some()),
            ("channels", self.channels.is_some()),
            ("until", self.until.is_some()),
            ("allow_phones", self.allow_phones.is_some()),
            ("windows", self.windows.is_some()),
            ("source", self.source.is_some()),
            ("note", self.note.is_some()),
        ]
        .into_iter()
        .find_map(|(n, present)| present.then_some(n))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireWindow {
    from: String,
    to: String,
}

fn bad(reason: Reason, detail: impl Into<String>) -> Reject {
    Reject {
        reason,
        detail: detail.into(),
    }
}

/// Decodes Status v1 records; owns a phone-number normaliser (numbers are compared in E.164,
/// as calls' are).
pub struct ReferenceDecoder {
    phones: PhoneNormaliser,
}

impl ReferenceDecoder {
    /// A decoder reading national-format numbers in `region` (the engine's default region).
    pub fn new(region: phonenumber::country::Id) -> ReferenceDecoder {
        ReferenceDecoder {
            phones: PhoneNormaliser::new(region),
        }
    }

    /// A record from a file line: a status (a line with `status_id`) or a contact (any other),
    /// or a tombstone of either.
    pub fn decode_line(&mut self, bytes: &[u8]) -> Result<Reference, Reject> {
        let w: WireStatus = serde_json::from_slice(bytes).map_err(|e| {
            if e.is_data() {
                bad(
                    Reason::WrongType,
                    format!("not a Status v1 or Contact v1 record: {e}"),
                )
            } else {
                bad(Reason::NotJson, format!("not JSON: {e}"))
            }
        })?;
        if w.status_id.is_none() && w.status.is_none() {
            return self.contact(w);
        }
        if let Some(f) = w.contact_field() {
            return Err(bad(
                Reason::WrongType,
                format!("{f} is a Contact v1 field, and this record has a status_id (Status v1)"),
            ));
        }
        if w.tombstone == Some(true) {
            let id = w
                .status_id
                .ok_or_else(|| bad(Reason::MissingField, "a tombstone needs status_id"))?;
            check_id("status_id", &id)?;
            return Ok(Reference::Withdraw(id.into()));
        }
        self.status(w).map(Reference::Status)
    }

    /// A record from a compacted topic carrying `contract`: `key` is the status id (Status
    /// v1) or `<debtor_id>/<phone>` (Contact v1), `value` the record, or `None` or empty (a
    /// tombstone).
    pub fn decode_keyed(
        &mut self,
        contract: Contract,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<Reference, Reject> {
        let key = key
            .map(std::str::from_utf8)
            .transpose()
            .map_err(|_| bad(Reason::BadValue, "the record key is not UTF-8"))?;
        if contract == Contract::Contact {
            return self.contact_keyed(key, value);
        }
        // A null value is a tombstone; so is an empty one (some clients and brokers give
        // a null value back as empty).
        match value.filter(|v| !v.is_empty()) {
            None => {
                let id = key.ok_or_else(|| {
                    bad(
                        Reason::MissingField,
                        "a tombstone (null value) needs the status_id as its key",
                    )
                })?;
                check_id("status_id (key)", id)?;
                Ok(Reference::Withdraw(id.into()))
            }
            Some(v) => {
                let r = self.decode_line(v)?;
                if matches!(r, Reference::Contact(_) | Reference::Forget { .. }) {
                    return Err(bad(
                        Reason::WrongType,
                        "a Contact v1 record (no status_id) on the status topic",
                    ));
                }
                if let (Reference::Status(st), Some(k)) = (&r, key) {
                    if st.id != k {
                        return Err(bad(
                            Reason::BadValue,
                            format!(
                                "the record key {k:?} is not its status_id {:?}: compaction keeps one record per key",
                                st.id.as_str()
                            ),
                        ));
                    }
                }
                Ok(r)
            }
        }
    }

    /// A Contact v1 record from the contacts topic, its key `<debtor_id>/<phone>`.
    fn contact_keyed(
        &mut self,
        key: Option<&str>,
        value: Option<&[u8]>,
    ) -> Result<Reference, Reject> {
        let parsed = key.map(|k| -> Result<(&str, &str), Reject> {
            let (debtor, phone) = k.rsplit_once('/').ok_or_else(|| {
                bad(
                    Reason::BadValue,
                    format!("the record key {k:?} is not <debtor_id>/<phone>"),
                )
            })?;
            check_id("debtor_id (key)", debtor)?;
            if contacts::pack_e164(phone).is_none() {
                return Err(bad(
                    Reason::BadPhone,
                    format!("the record key's number {phone:?} is not E.164"),
                ));
            }
            Ok((debtor, phone))
        });
        match value.filter(|v| !v.is_empty()) {
            None => {
                let (debtor, phone) = parsed.ok_or_else(|| {
                    bad(
                        Reason::MissingField,
                        "a tombstone (null value) needs <debtor_id>/<phone> as its key",
                    )
                })??;
                Ok(Reference::Forget {
                    debtor_id: debtor.into(),
                    phone: phone.into(),
                })
            }
            Some(v) => {
                let r = self.decode_line(v)?;
                let (debtor, phone) = match &r {
                    Reference::Contact(c) => (&c.debtor_id, &c.phone),
                    Reference::Forget { debtor_id, phone } => (debtor_id, phone),
                    _ => {
                        return Err(bad(
                            Reason::WrongType,
                            "a Status v1 record (with a status_id) on the contacts topic",
                        ))
                    }
                };
                if let Some(p) = parsed {
                    let (kd, kp) = p?;
                    if kd != debtor.as_str() || kp != phone.as_str() {
                        return Err(bad(
                            Reason::BadValue,
                            format!(
                                "the record key {:?} is not its <debtor_id>/<phone> {:?}: compaction keeps one record per key",
                                key.unwrap_or_default(),
                                format!("{debtor}/{phone}")
                            ),
                        ));
                    }
                }
                Ok(r)
            }
        }
    }

    /// A Contact v1 record (or its tombstone) from a line without `status_id`.
    fn contact(&mut self, w: WireStatus) -> Result<Reference, Reject> {
        if let Some(f) = w.status_field() {
            return Err(bad(
                Reason::MissingField,
                format!("{f} is a Status v1 field, and this record has no status_id"),
            ));
        }
        require(&[
            ("debtor_id", w.debtor_id.is_none()),
            ("phone", w.phone.is_none()),
        ])?;
        let debtor = w.debtor_id.unwrap_or_default();
        check_id("debtor_id", &debtor)?;
        let phone = self.phone("phone", &w.phone.unwrap_or_default())?;
        // The book keeps numbers packed in 8 bytes: 17 digits at most.
        if contacts::pack_e164(&phone).is_none() {
            return Err(bad(
                Reason::BadPhone,
                format!("phone {phone:?} has more digits than the contact book keeps (17)"),
            ));
        }
        if w.tombstone == Some(true) {
            return Ok(Reference::Forget {
                debtor_id: debtor.into(),
                phone,
            });
        }
        require(&[
            ("relation", w.relation.is_none()),
            ("number_source", w.number_source.is_none()),
            ("from", w.from.is_none()),
        ])?;
        let rel = w.relation.unwrap_or_default();
        let relation = Relation::parse(&rel).ok_or_else(|| {
            bad(
                Reason::UnknownValue,
                format!("relation {rel:?} is not one of {}", Relation::names()),
            )
        })?;
        let src = w.number_source.unwrap_or_default();
        let source = NumberSource::parse(&src).ok_or_else(|| {
            bad(
                Reason::UnknownValue,
                format!(
                    "number_source {src:?} is not one of {}",
                    NumberSource::names()
                ),
            )
        })?;
        let from = timestamp("from", &w.from.unwrap_or_default())?;
        if from < contacts::FROM_MIN || from > contacts::FROM_MAX {
            return Err(bad(
                Reason::BadValue,
                format!("from {from} is outside 1970-01-01 to 2106-02-07"),
            ));
        }
        Ok(Reference::Contact(Contact {
            debtor_id: debtor.into(),
            phone,
            relation,
            source,
            consent: w.consent.unwrap_or(false),
            // Whole seconds: the book keeps no finer.
            from: crate::engine::time::Ts(
                from.0 - from.0.rem_euclid(crate::engine::time::NANOS_PER_SEC),
            ),
        }))
    }

    fn phone(&mut self, field: &str, raw: &str) -> Result<Text, Reject> {
        self.phones.normalise(raw).ok_or_else(|| {
            bad(
                Reason::BadPhone,
                format!("{field} {raw:?} is not a valid phone number (E.164, or national format in the default region)"),
            )
        })
    }

    fn status(&mut self, w: WireStatus) -> Result<Status, Reject> {
        require(&[
            ("status_id", w.status_id.is_none()),
            ("status", w.status.is_none()),
            ("from", w.from.is_none()),
            ("source", w.source.is_none()),
        ])?;
        let id = w.status_id.unwrap_or_default();
        check_id("status_id", &id)?;
        let kind_name = w.status.unwrap_or_default();
        let kind = StatusKind::parse(&kind_name).ok_or_else(|| {
            bad(
                Reason::UnknownValue,
                format!("status {kind_name:?} is not one of {}", StatusKind::names()),
            )
        })?;
        if w.debtor_id.is_none() && w.account_id.is_none() && w.phone.is_none() {
            return Err(bad(
                Reason::MissingField,
                "a status needs a scope: debtor_id, account_id or phone (or several)",
            ));
        }
        for (name, v) in [("debtor_id", &w.debtor_id), ("account_id", &w.account_id)] {
            if let Some(v) = v {
                check_id(name, v)?;
            }
        }
        let phone = match &w.phone {
            None => None,
            Some(p) => Some(self.phone("phone", p)?),
        };
        let mut channels = 0u8;
        for c in w.channels.iter().flatten() {
            let ch = Channel::parse(c).ok_or_else(|| {
                bad(
                    Reason::UnknownValue,
                    format!("channel {c:?} is not one of {}", Channel::names()),
                )
            })?;
            channels |= 1 << ch as u8;
        }
        if w.channels.as_ref().is_some_and(|c| c.is_empty()) {
            return Err(bad(
                Reason::BadValue,
                "channels is empty: omit it for every channel",
            ));
        }
        let from = timestamp("from", &w.from.unwrap_or_default())?;
        let until = match &w.until {
            None => None,
            Some(u) => Some(timestamp("until", u)?),
        };
        if let Some(u) = until {
            if u <= from {
                return Err(bad(
                    Reason::BadValue,
                    format!("until {u} is not after from {from}"),
                ));
            }
        }
        let mut allow_phones = Vec::new();
        for p in w.allow_phones.iter().flatten() {
            allow_phones.push(self.phone("allow_phones", p)?);
        }
        let mut windows = Vec::new();
        for (i, win) in w.windows.iter().flatten().enumerate() {
            let from = time_of_day(&format!("windows[{i}].from"), &win.from)?;
            let to = time_of_day(&format!("windows[{i}].to"), &win.to)?;
            if from == to {
                return Err(bad(
                    Reason::BadValue,
                    format!("windows[{i}] is empty (from equals to)"),
                ));
            }
            windows.push((from, to));
        }
        if kind == StatusKind::InconvenientTime && windows.is_empty() {
            return Err(bad(
                Reason::MissingField,
                "an inconvenient_time status needs windows: the local times that are inconvenient",
            ));
        }
        let source = w.source.unwrap_or_default();
        check_id("source", &source)?;
        Ok(Status {
            id: id.into(),
            kind,
            debtor_id: w.debtor_id.map(Text::from),
            account_id: w.account_id.map(Text::from),
            phone,
            channels,
            from,
            until,
            allow_phones,
            windows,
            source: source.into(),
        })
    }
}

fn timestamp(field: &str, s: &str) -> Result<Ts, Reject> {
    let t: jiff::Timestamp = s.parse().map_err(|e| {
        bad(
            Reason::BadTimestamp,
            format!("{field} {s:?} is not an RFC 3339 timestamp with an offset: {e}"),
        )
    })?;
    Ok(Ts::from_jiff(t))
}

/// "HH:MM" → seconds since local midnight; "24:00" is the end of the day.
fn time_of_day(field: &str, s: &str) -> Result<u32, Reject> {
    crate::policy::spec::parse_time_of_day(s)
        .map_err(|e| bad(Reason::BadValue, format!("{field}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec() -> ReferenceDecoder {
        ReferenceDecoder::new(phonenumber::country::Id::CN)
    }

    #[test]
    fn a_status_is_decoded_with_numbers_in_e164() {
        let r = dec()
            .decode_line(br#"{"status_id":"s1","status":"attorney_represented","debtor_id":"D1","phone":"138 1234 5678","from":"2026-11-01T00:00:00Z","until":"2026-12-01T00:00:00+08:00","allow_phones":["+8613900000000"],"channels":["voice","sms"],"source":"legal","note":"letter of representation"}"#)
            .unwrap();
        let Reference::Status(st) = r else {
            panic!("a status")
        };
        assert_eq!(st.kind, StatusKind::AttorneyRepresented);
        assert_eq!(st.phone.as_deref(), Some("+8613812345678"));
        assert_eq!(st.allow_phones, vec![Text::from("+8613900000000")]);
        assert_eq!(
            st.channels,
            1 << Channel::Voice as u8 | 1 << Channel::Sms as u8
        );
        assert_eq!(st.until.unwrap().to_string(), "2026-11-30T16:00:00Z");
    }

    #[test]
    fn tombstones_in_files_and_on_topics() {
        assert_eq!(
            dec()
                .decode_line(br#"{"status_id":"s1","tombstone":true}"#)
                .unwrap(),
            Reference::Withdraw("s1".into())
        );
        assert_eq!(
            dec()
                .decode_keyed(Contract::Status, Some(b"s2"), None)
                .unwrap(),
            Reference::Withdraw("s2".into())
        );
        assert_eq!(
            dec()
                .decode_keyed(Contract::Status, Some(b"s3"), Some(b""))
                .unwrap(),
            Reference::Withdraw("s3".into())
        );
        assert_eq!(
            dec()
                .decode_keyed(Contract::Status, None, None)
                .unwrap_err()
                .reason,
            Reason::MissingField
        );
    }

    #[test]
    fn bad_records_are_refused_with_a_reason() {
        let cases: &[(&[u8], Reason)] = &[
            (b"{not json", Reason::NotJson),
            (br#"{"status_id":"s","status":"attorney_represented","from":"2026-11-01T00:00:00Z","source":"x"}"#, Reason::MissingField),
            (br#"{"status_id":"s","status":"vacation","debtor_id":"D","from":"2026-11-01T00:00:00Z","source":"x"}"#, Reason::UnknownValue),
            (br#"{"status_id":"s","status":"cease_communication","debtor_id":"D","from":"2026-11-01","source":"x"}"#, Reason::BadTimestamp),
            (br#"{"status_id":"s","status":"cease_communication","debtor_id":"D","from":"2026-11-02T00:00:00Z","until":"2026-11-01T00:00:00Z","source":"x"}"#, Reason::BadValue),
            (br#"{"status_id":"s","status":"number_opt_out","phone":"12","from":"2026-11-01T00:00:00Z","source":"x"}"#, Reason::BadPhone),
            (br#"{"status_id":"s","status":"inconvenient_time","debtor_id":"D","from":"2026-11-01T00:00:00Z","source":"x"}"#, Reason::MissingField),
            (br#"{"status_id":"s","status":"cease_communication","debtor_id":"D","from":"2026-11-01T00:00:00Z","source":"x","extra":1}"#, Reason::WrongType),
            (br#"{"status_id":"s","status":"cease_communication","debtor_id":"D","from":"2026-11-01T00:00:00Z"}"#, Reason::MissingField),
        ];
        for (raw, reason) in cases {
            let e = dec().decode_line(raw).unwrap_err();
            assert_eq!(
                e.reason,
                *reason,
                "{}: {}",
                String::from_utf8_lossy(raw),
                e.detail
            );
        }
        let e = dec()
            .decode_keyed(
                Contract::Status,
                Some(b"other"),
                Some(br#"{"status_id":"s","status":"cease_communication","debtor_id":"D","from":"2026-11-01T00:00:00Z","source":"x"}"#),
            )
            .unwrap_err();
        assert_eq!(e.reason, Reason::BadValue);
    }

    #[test]
    fn a_contact_is_decoded_with_its_number_in_e164_and_from_in_whole_seconds() {
        let r = dec()
            .decode_line(br#"{"debtor_id":"D1","phone":"138 1234 5678","relation":"contact_list","number_source":"device_contacts","from":"2026-11-01T08:00:00.750+08:00"}"#)
            .unwrap();
        let Reference::Contact(c) = r else {
            panic!("a contact")
        };
        assert_eq!(c.phone, "+8613812345678");
        assert_eq!(
            (c.relation, c.source, c.consent),
            (Relation::ContactList, NumberSource::DeviceContacts, false)
        );
        assert_eq!(c.from.to_string(), "2026-11-01T00:00:00Z");
        assert_eq!(
            dec()
                .decode_line(br#"{"debtor_id":"D1","phone":"+8613812345678","tombstone":true}"#)
                .unwrap(),
            Reference::Forget {
                debtor_id: "D1".into(),
                phone: "+8613812345678".into()
            }
        );
    }

    #[test]
    fn contacts_on_their_topic_are_keyed_by_debtor_and_number() {
        let v = br#"{"debtor_id":"D/1","phone":"+8613812345678","relation":"spouse","number_source":"application","consent":true,"from":"2026-11-01T00:00:00Z"}"#;
        let r = dec()
            .decode_keyed(Contract::Contact, Some(b"D/1/+8613812345678"), Some(v))
            .unwrap();
        assert!(matches!(r, Reference::Contact(ref c) if c.consent && c.debtor_id == "D/1"));
        assert_eq!(
            dec()
                .decode_keyed(Contract::Contact, Some(b"D/1/+8613812345678"), None)
                .unwrap(),
            Reference::Forget {
                debtor_id: "D/1".into(),
                phone: "+8613812345678".into()
            }
        );
        for (key, value, reason) in [
            (Some(&b"D/1/+8613800000000"[..]), Some(&v[..]), Reason::BadValue),
            (Some(b"D1"), None, Reason::BadValue),
            (Some(b"D1/13812345678"), None, Reason::BadPhone),
            (None, None, Reason::MissingField),
            (
                Some(b"s1"),
                Some(br#"{"status_id":"s1","status":"deceased","debtor_id":"D","from":"2026-11-01T00:00:00Z","source":"x"}"#),
                Reason::WrongType,
            ),
        ] {
            assert_eq!(
                dec().decode_keyed(Contract::Contact, key, value).unwrap_err().reason,
                reason,
                "{key:?}"
            );
        }
        // A contact on the status topic is refused too.
        assert_eq!(
            dec()
                .decode_keyed(Contract::Status, Some(b"x"), Some(v))
                .unwrap_err()
                .reason,
            Reason::WrongType
        );
    }

    #[test]
    fn bad_contacts_are_refused_with_a_reason() {
        let cases: &[(&[u8], Reason)] = &[
            (br#"{"debtor_id":"D","phone":"+8613812345678","number_source":"call_log","from":"2026-11-01T00:00:00Z"}"#, Reason::MissingField),
            (br#"{"debtor_id":"D","phone":"+8613812345678","relation":"cousin","number_source":"call_log","from":"2026-11-01T00:00:00Z"}"#, Reason::UnknownValue),
            (br#"{"debtor_id":"D","phone":"+8613812345678","relation":"other","number_source":"facebook","from":"2026-11-01T00:00:00Z"}"#, Reason::UnknownValue),
            (br#"{"debtor_id":"D","phone":"12","relation":"other","number_source":"call_log","from":"2026-11-01T00:00:00Z"}"#, Reason::BadPhone),
            (br#"{"debtor_id":"D","phone":"+8613812345678","relation":"other","number_source":"call_log","from":"1969-12-31T00:00:00Z"}"#, Reason::BadValue),
            (br#"{"debtor_id":"D","phone":"+8613812345678","relation":"other","number_source":"call_log","from":"2026-11-01T00:00:00Z","until":"2026-12-01T00:00:00Z"}"#, Reason::MissingField),
            (br#"{"status_id":"s","status":"deceased","debtor_id":"D","relation":"self","from":"2026-11-01T00:00:00Z","source":"x"}"#, Reason::WrongType),
        ];
        for (raw, reason) in cases {
            let e = dec().decode_line(raw).unwrap_err();
            assert_eq!(
                e.reason,
                *reason,
                "{}: {}",
                String::from_utf8_lossy(raw),
                e.detail
            );
        }
    }
}
