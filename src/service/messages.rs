//! The messages the service produces, built from the input record that caused them: alerts,
//! suppression directives and dead letters, with their keys, headers and delivery tokens.
//! Pure functions of their inputs (no client, no broker), so each is unit-tested on its own.

use crate::alert::Alert;
use crate::codec::Reason;
use crate::directive::Directive;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::Message;

/// Header names dialguard writes (alerts and dead letters).
pub mod headers {
    /// The alert's id (alerts).
    pub const ALERT_ID: &str = "dialguard.alert_id";
    /// A suppression directive's id.
    pub const DIRECTIVE_ID: &str = "dialguard.directive_id";
    /// The rule (alerts).
    pub const RULE_ID: &str = "dialguard.rule_id";
    /// Why the record was refused (dead letters): a [`crate::codec::Reason`].
    pub const REASON: &str = "dialguard.reason";
    /// A human-readable detail (dead letters).
    pub const DETAIL: &str = "dialguard.detail";
    /// The input record's topic.
    pub const SOURCE_TOPIC: &str = "dialguard.source.topic";
    /// The input record's partition.
    pub const SOURCE_PARTITION: &str = "dialguard.source.partition";
    /// The input record's offset.
    pub const SOURCE_OFFSET: &str = "dialguard.source.offset";
    /// Set when a dead letter's payload was cut to fit the broker's message size: the original
    /// length in bytes.
    pub const TRUNCATED: &str = "dialguard.truncated";
}

/// Which output a produced message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    Alerts,
    Dlq,
    Suppressions,
}

impl Output {
    /// The output's metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Output::Alerts => "alerts",
            Output::Dlq => "dlq",
            Output::Suppressions => "suppressions",
        }
    }
}

/// Travels with each produced message through librdkafka and back in its delivery report.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Token {
    /// The assignment generation the message was produced under.
    pub(crate) generation: u64,
    /// The input record's lane (its partition with one input topic, `service::inputs`) and
    /// offset, acknowledged once the message is delivered.
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    /// The input record's timestamp (alerts: for the alert latency histogram).
    pub(crate) record_ms: Option<i64>,
    pub(crate) output: Output,
    /// Caused by reference data (a status record), not by an input record: its delivery
    /// acknowledges no input offset ([`from_reference`]).
    pub(crate) reference: bool,
}

/// The input record an output is delivered for: the assignment generation it was judged in,
/// and its lane (`service::inputs`: its partition with one input topic). Delivered, the output
/// acknowledges the record's offset on that lane.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    pub(crate) generation: u64,
    pub(crate) lane: i32,
}

impl Origin {
    /// Of a reference record ([`from_reference`]): no input offset to acknowledge.
    pub(crate) const REFERENCE: Origin = Origin {
        generation: 0,
        lane: -1,
    };
}

/// `o`, marked as caused by reference data: delivered, it acknowledges no input offset (the
/// partition and offset it names are the status record's, for its headers).
pub(crate) fn from_reference(mut o: Outgoing) -> Outgoing {
    o.token.reference = true;
    o
}

/// A message to produce.
pub(crate) struct Outgoing {
    pub(crate) topic: String,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) payload: Vec<u8>,
    pub(crate) headers: OwnedHeaders,
    pub(crate) token: Box<Token>,
}

/// Dead-letter payloads the broker refuses as too large are cut to this many bytes.
pub(crate) const TRUNCATE_TO: usize = 64 * 1024;

/// A dead letter the client or broker refused as too large (`class` `message_too_large`) is cut
/// to [`TRUNCATE_TO`] bytes, its original length in a [`headers::TRUNCATED`] header, to be sent
/// again; returns whether it was cut. Alerts and directives are never cut: they are sent again
/// whole (their size is dialguard's own).
pub(crate) fn cut_to_size(
    class: &str,
    output: Output,
    payload: &mut Vec<u8>,
    h: &mut OwnedHeaders,
) -> bool {
    if class != "message_too_large" || output != Output::Dlq || payload.len() <= TRUNCATE_TO {
        return false;
    }
    *h = std::mem::replace(h, OwnedHeaders::new()).insert(Header {
        key: headers::TRUNCATED,
        value: Some(&payload.len().to_string()),
    });
    payload.truncate(TRUNCATE_TO);
    true
}

/// `h` with the headers naming the input record `m`.
fn source_headers<M: Message>(m: &M, h: OwnedHeaders) -> OwnedHeaders {
    h.insert(Header {
        key: headers::SOURCE_TOPIC,
        value: Some(m.topic()),
    })
    .insert(Header {
        key: headers::SOURCE_PARTITION,
        value: Some(&m.partition().to_string()),
    })
    .insert(Header {
        key: headers::SOURCE_OFFSET,
        value: Some(&m.offset().to_string()),
    })
}

/// An alert caused by the record `m`, to `topic`.
pub(crate) fn alert<M: Message>(topic: &str, m: &M, a: &Alert, origin: Origin) -> Outgoing {
    let mut payload = Vec::with_capacity(1024);
    a.write_json(&mut payload);
    alert_json(
        topic,
        m,
        (&a.alert_id, &a.rule_id),
        &a.debtor_id,
        payload,
        origin,
    )
}

/// [`alert`] with the alert written already (`payload`, its JSON), named by its ids
/// `(alert_id, rule_id)` and keyed by `debtor_id`.
pub(crate) fn alert_json<M: Message>(
    topic: &str,
    m: &M,
    (alert_id, rule_id): (&str, &str),
    debtor_id: &str,
    payload: Vec<u8>,
    origin: Origin,
) -> Outgoing {
    output(
        m,
        (topic, Output::Alerts),
        (headers::ALERT_ID, alert_id, rule_id),
        debtor_id,
        payload,
        origin,
    )
}

/// An alert found when statuses were applied to a new engine (after an assignment), caused by
/// no one record: keyed by debtor, acknowledging no input offset.
pub(crate) fn reference_alert(topic: &str, a: &Alert) -> Outgoing {
    let mut payload = Vec::with_capacity(1024);
    a.write_json(&mut payload);
    let h = OwnedHeaders::new_with_capacity(2)
        .insert(Header {
            key: headers::ALERT_ID,
            value: Some(&a.alert_id),
        })
        .insert(Header {
            key: headers::RULE_ID,
            value: Some(&a.rule_id),
        });
    Outgoing {
        topic: topic.to_owned(),
        key: Some(a.debtor_id.as_bytes().to_vec()),
        payload,
        headers: h,
        token: Box::new(Token {
            generation: 0,
            partition: -1,
            offset: -1,
            record_ms: None,
            output: Output::Alerts,
            reference: true,
        }),
    }
}

/// A suppression directive given by the call in the record `m`, to `topic`.
pub(crate) fn directive<M: Message>(topic: &str, m: &M, d: &Directive, origin: Origin) -> Outgoing {
    output(
        m,
        (topic, Output::Suppressions),
        (headers::DIRECTIVE_ID, &d.directive_id, &d.rule_id),
        &d.debtor_id,
        serde_json::to_vec(d).expect("a directive serializes"),
        origin,
    )
}

/// An alert or a directive for the record `m`: keyed by debtor, with its id, its rule and
/// the source record in headers, delivery tracked against `m`'s offset.
fn output<M: Message>(
    m: &M,
    (topic, output): (&str, Output),
    (id_header, id, rule_id): (&str, &str, &str),
    debtor_id: &str,
    payload: Vec<u8>,
    origin: Origin,
) -> Outgoing {
    let h = OwnedHeaders::new_with_capacity(5)
        .insert(Header {
            key: id_header,
            value: Some(id),
        })
        .insert(Header {
            key: headers::RULE_ID,
            value: Some(rule_id),
        });
    Outgoing {
        topic: topic.to_owned(),
        key: Some(debtor_id.as_bytes().to_vec()),
        payload,
        headers: source_headers(m, h),
        token: Box::new(Token {
            generation: origin.generation,
            partition: origin.lane,
            offset: m.offset(),
            record_ms: m.timestamp().to_millis(),
            output,
            reference: false,
        }),
    }
}

/// The dead letter of the record `m`, refused for `reason`, to `topic`: its key, payload and
/// headers as they were, then the reason, the detail and the source record.
pub(crate) fn dead_letter<M: Message>(
    topic: &str,
    m: &M,
    reason: Reason,
    detail: &str,
    origin: Origin,
) -> Outgoing {
    let mut h = OwnedHeaders::new_with_capacity(8);
    if let Some(orig) = m.headers() {
        for x in orig.iter() {
            h = h.insert(Header {
                key: x.key,
                value: x.value,
            });
        }
    }
    let h = h
        .insert(Header {
            key: headers::REASON,
            value: Some(reason.as_str()),
        })
        .insert(Header {
            key: headers::DETAIL,
            value: Some(detail),
        });
    Outgoing {
        topic: topic.to_owned(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().unwrap_or_default().to_vec(),
        headers: source_headers(m, h),
        token: Box::new(Token {
            generation: origin.generation,
            partition: origin.lane,
            offset: m.offset(),
            record_ms: None,
            output: Output::Dlq,
            reference: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{OwnedMessage, Timestamp};

    fn header<'a>(h: &'a OwnedHeaders, key: &str) -> Vec<&'a str> {
        h.iter()
            .filter(|x| x.key == key)
            .map(|x| std::str::from_utf8(x.value.unwrap_or_default()).unwrap())
            .collect()
    }

    fn input(headers: Option<OwnedHeaders>) -> OwnedMessage {
        OwnedMessage::new(
            Some(b"{not json".to_vec()),
            Some(b"D1".to_vec()),
            "dialer.call-events".into(),
            Timestamp::CreateTime(1_800_000_000_000),
            3,
            42,
            headers,
        )
    }

    #[test]
    fn a_dead_letter_keeps_the_record_and_its_headers_and_says_why_and_where_from() {
        let orig = OwnedHeaders::new().insert(Header {
            key: "traceparent",
            value: Some("00-abc-def-01"),
        });
        let d = dead_letter(
            "dlq",
            &input(Some(orig)),
            Reason::NotJson,
            "expected a value",
            // Partition 3 of the first of two input topics: lane 6.
            Origin {
                generation: 7,
                lane: 6,
            },
        );
        assert_eq!(d.topic, "dlq");
        assert_eq!(d.key.as_deref(), Some(&b"D1"[..]));
        assert_eq!(d.payload, b"{not json");
        assert_eq!(header(&d.headers, "traceparent"), ["00-abc-def-01"]);
        assert_eq!(header(&d.headers, headers::REASON), ["not_json"]);
        assert_eq!(header(&d.headers, headers::DETAIL), ["expected a value"]);
        assert_eq!(
            header(&d.headers, headers::SOURCE_TOPIC),
            ["dialer.call-events"]
        );
        assert_eq!(header(&d.headers, headers::SOURCE_PARTITION), ["3"]);
        assert_eq!(header(&d.headers, headers::SOURCE_OFFSET), ["42"]);
        assert_eq!(
            *d.token,
            Token {
                generation: 7,
                partition: 6,
                offset: 42,
                record_ms: None,
                output: Output::Dlq,
                reference: false,
            }
        );
    }

    #[test]
    fn only_a_dead_letter_too_large_is_cut_and_marked() {
        let big = vec![b'x'; TRUNCATE_TO + 10];
        for (class, output, len, cut) in [
            ("message_too_large", Output::Dlq, TRUNCATE_TO + 10, true),
            ("message_too_large", Output::Dlq, TRUNCATE_TO, false),
            ("message_too_large", Output::Alerts, TRUNCATE_TO + 10, false),
            ("timed_out", Output::Dlq, TRUNCATE_TO + 10, false),
        ] {
            let mut payload = big[..len].to_vec();
            let mut h = OwnedHeaders::new().insert(Header {
                key: headers::REASON,
                value: Some("not_json"),
            });
            assert_eq!(cut_to_size(class, output, &mut payload, &mut h), cut);
            assert_eq!(payload.len(), if cut { TRUNCATE_TO } else { len });
            assert_eq!(header(&h, headers::REASON), ["not_json"]);
            let marked = header(&h, headers::TRUNCATED);
            let original = len.to_string();
            assert_eq!(marked, if cut { vec![original.as_str()] } else { vec![] });
        }
    }

    #[test]
    fn a_directive_is_keyed_by_debtor_with_its_id_rule_and_source() {
        let d = Directive {
            directive_id: "0123".into(),
            rule_id: "regf-7in7".into(),
            kind: "cap",
            reason: "cap_reached",
            severity: "high",
            citation: None,
            pack: None,
            key: [("debtor_id", "D1".to_string())].into_iter().collect(),
            debtor_id: "D1".into(),
            call_id: "c1".into(),
            from: "2027-01-15T08:00:00Z".into(),
            until: "2027-01-22T00:00:00Z".into(),
            detected_at: "2027-01-15T08:00:01Z".into(),
        };
        let origin = Origin {
            generation: 2,
            lane: 3,
        };
        let m = directive("compliance.suppressions", &input(None), &d, origin);
        assert_eq!(m.topic, "compliance.suppressions");
        assert_eq!(m.key.as_deref(), Some(&b"D1"[..]));
        let body: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(body["directive_id"], "0123");
        assert_eq!(body["until"], "2027-01-22T00:00:00Z");
        assert_eq!(header(&m.headers, headers::DIRECTIVE_ID), ["0123"]);
        assert_eq!(header(&m.headers, headers::RULE_ID), ["regf-7in7"]);
        assert_eq!(header(&m.headers, headers::SOURCE_OFFSET), ["42"]);
        assert!(header(&m.headers, headers::ALERT_ID).is_empty());
        assert_eq!(
            *m.token,
            Token {
                generation: 2,
                partition: 3,
                offset: 42,
                record_ms: Some(1_800_000_000_000),
                output: Output::Suppressions,
                reference: false,
            }
        );
    }
}
