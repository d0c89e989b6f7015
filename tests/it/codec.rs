//! The decoder: every field, every default, and every rejection reason.

use dialguard::codec::{DecodeSettings, Decoder, Reason};
use dialguard::engine::event::{CallOutcome, Channel, Direction, NumberSource, Purpose, Relation};
use dialguard::engine::time::{Ts, NANOS_PER_SEC};

const NOW: Ts = Ts(1_795_000_000 * NANOS_PER_SEC); // 2026-11-18

fn dec() -> Decoder {
    Decoder::new(DecodeSettings::default())
}

fn reason(line: &str) -> Reason {
    match dec().decode(line.as_bytes(), NOW) {
        Ok(c) => panic!("accepted {line}: {c:?}"),
        Err(r) => r.reason,
    }
}

const OK: &str = r#"{"call_id":"c1","occurred_at":"2026-11-10T10:00:00+08:00","debtor_id":"D1","phone":"13812345678","relation":"self"}"#;

#[test]
fn minimal_record_gets_defaults() {
    let c = dec().decode(OK.as_bytes(), NOW).unwrap();
    assert_eq!(c.call_id, "c1");
    assert_eq!(c.occurred_at.to_string(), "2026-11-10T02:00:00Z");
    assert_eq!(c.phone, "+8613812345678");
    assert_eq!(c.relation, Relation::SelfDebtor);
    assert_eq!(c.direction, Direction::Outbound);
    assert_eq!(c.channel, Channel::Voice);
    assert!(!c.consent);
    assert_eq!(
        (c.outcome, c.account_id.as_deref(), c.callee_tz.is_none()),
        (None, None, true)
    );
}

#[test]
fn every_field_decodes() {
    let line = r#"{"call_id":"c2","event_id":"e2","occurred_at":"2026-11-10T10:00:00.123456789-05:00","debtor_id":"D1",
        "phone":"+1 (212) 555-0142","relation":"co_maker","account_id":"A1","outcome":"voicemail","direction":"inbound",
        "channel":"ringless_voicemail","duration_s":12.5,"agent_id":"ag","agency_id":"ay","creditor_id":"cr","campaign_id":"cp",
        "callee_tz":"America/Chicago","number_source":"skip_trace","purpose":"location","consent":true,
        "attrs":{"b":"2","a":"1"},"future_field":{"ignored":true}}"#
        .replace('\n', "");
    let c = dec().decode(line.as_bytes(), NOW).unwrap();
    assert_eq!(c.occurred_at.to_string(), "2026-11-10T15:00:00.123456789Z");
    assert_eq!(c.phone, "+12125550142");
    assert_eq!(c.relation, Relation::CoMaker);
    assert_eq!(c.outcome, Some(CallOutcome::Voicemail));
    assert_eq!(c.direction, Direction::Inbound);
    assert_eq!(c.channel, Channel::RinglessVoicemail);
    assert_eq!(c.duration_s, Some(12.5));
    assert_eq!(
        c.callee_tz.as_ref().and_then(|z| z.iana_name()),
        Some("America/Chicago")
    );
    assert_eq!(c.number_source, Some(NumberSource::SkipTrace));
    assert_eq!(c.purpose, Some(Purpose::Location));
    assert!(c.consent);
    assert_eq!(
        c.attrs,
        vec![("a".into(), "1".into()), ("b".into(), "2".into())]
    );
    for (f, v) in [
        ("event_id", "e2"),
        ("account_id", "A1"),
        ("agent_id", "ag"),
        ("agency_id", "ay"),
        ("creditor_id", "cr"),
        ("campaign_id", "cp"),
    ] {
        let got = match f {
            "event_id" => &c.event_id,
            "account_id" => &c.account_id,
            "agent_id" => &c.agent_id,
            "agency_id" => &c.agency_id,
            "creditor_id" => &c.creditor_id,
            _ => &c.campaign_id,
        };
        assert_eq!(got.as_deref(), Some(v), "{f}");
    }
}

#[test]
fn national_and_international_numbers_are_the_same_callee() {
    let a = dec().decode(OK.as_bytes(), NOW).unwrap();
    let b = dec()
        .decode(
            OK.replace("13812345678", "+86 138 1234 5678").as_bytes(),
            NOW,
        )
        .unwrap();
    assert_eq!(a.phone, b.phone);
}

#[test]
fn foreign_international_numbers_keep_their_digits() {
    // Regression: parsing "+95 1234567" with the default region CN applied CN's national-prefix
    // rule and produced "+9567".
    let mut d = dec();
    assert_eq!(d.normalise_phone("+95 1234567").unwrap(), "+951234567");
    assert_eq!(
        d.normalise_phone("+44 20 7946 0958").unwrap(),
        "+442079460958"
    );
    assert_eq!(
        d.normalise_phone("+39 06 6982 1234").unwrap(),
        "+390669821234"
    );
}

#[test]
fn every_rejection_reason() {
    assert_eq!(reason("{not json"), Reason::NotJson);
    assert_eq!(reason(""), Reason::NotJson);
    assert_eq!(
        reason(&OK.replace(r#","relation":"self""#, "")),
        Reason::MissingField
    );
    assert_eq!(
        reason(&OK.replace(r#""relation":"self""#, r#""relation":null"#)),
        Reason::MissingField
    );
    assert_eq!(
        reason(&OK.replace(r#""call_id":"c1""#, r#""call_id":17"#)),
        Reason::WrongType
    );
    assert_eq!(
        reason(&OK.replace(r#""debtor_id":"D1""#, r#""debtor_id":"D1","consent":"yes""#)),
        Reason::WrongType
    );
    assert_eq!(
        reason(&OK.replace(r#""debtor_id":"D1""#, r#""debtor_id":"D1","attrs":{"a":1}"#)),
        Reason::WrongType
    );
    assert_eq!(reason("[1,2]"), Reason::WrongType);
    assert_eq!(
        reason(&OK.replace(r#""relation":"self""#, r#""relation":"cousin""#)),
        Reason::UnknownValue
    );
    assert_eq!(
        reason(&OK.replace(
            r#""debtor_id":"D1""#,
            r#""debtor_id":"D1","outcome":"hung_up""#
        )),
        Reason::UnknownValue
    );
    assert_eq!(
        reason(&OK.replace(
            r#""debtor_id":"D1""#,
            r#""debtor_id":"D1","callee_tz":"Mars/Base""#
        )),
        Reason::UnknownValue
    );
    assert_eq!(
        reason(&OK.replace("2026-11-10T10:00:00+08:00", "2026-11-10 10:00")),
        Reason::BadTimestamp
    );
    assert_eq!(
        reason(&OK.replace("2026-11-10T10:00:00+08:00", "2026-11-10T10:00:00")),
        Reason::BadTimestamp
    );
    assert_eq!(
        reason(&OK.replace("2026-11-10T10:00:00+08:00", "2027-01-01T00:00:00Z")),
        Reason::FutureTimestamp
    );
    assert_eq!(reason(&OK.replace("13812345678", "12")), Reason::BadPhone);
    assert_eq!(
        reason(&OK.replace("13812345678", "call me")),
        Reason::BadPhone
    );
    assert_eq!(
        reason(&OK.replace(r#""call_id":"c1""#, r#""call_id":"""#)),
        Reason::BadValue
    );
    assert_eq!(
        reason(&OK.replace(
            r#""call_id":"c1""#,
            &format!(r#""call_id":"{}""#, "x".repeat(129))
        )),
        Reason::BadValue
    );
    assert_eq!(
        reason(&OK.replace(r#""debtor_id":"D1""#, r#""debtor_id":"D1","duration_s":-1"#)),
        Reason::BadValue
    );
    let big = OK.replace(
        r#""debtor_id":"D1""#,
        &format!(
            r#""debtor_id":"D1","attrs":{{"pad":"{}"}}"#,
            "x".repeat(70_000)
        ),
    );
    assert_eq!(reason(&big), Reason::TooLarge);
    let mut bad_utf8 = OK.as_bytes().to_vec();
    bad_utf8[20] = 0xff;
    assert_eq!(
        dec().decode(&bad_utf8, NOW).unwrap_err().reason,
        Reason::NotJson
    );
}

#[test]
fn rejection_details_name_the_field() {
    let e = dec()
        .decode(
            OK.replace(r#""call_id":"c1""#, r#""call_id":17"#)
                .as_bytes(),
            NOW,
        )
        .unwrap_err();
    assert!(e.detail.contains("call_id"), "{e}");
    let e = dec()
        .decode(OK.replace(r#","relation":"self""#, "").as_bytes(), NOW)
        .unwrap_err();
    assert!(e.detail.contains("relation"), "{e}");
    let e = dec()
        .decode(
            OK.replace(r#""relation":"self""#, r#""relation":"cousin""#)
                .as_bytes(),
            NOW,
        )
        .unwrap_err();
    assert!(
        e.detail.contains("relation") && e.detail.contains("cousin"),
        "{e}"
    );
}
