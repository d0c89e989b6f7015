//! `dialguard run` with debtor statuses from the status topic (`[reference] status_topic`), on
//! the mock cluster: statuses read before readiness flag the calls after them; statuses
//! published after calls flag them late; a tombstone withdraws one; an invalid record goes to
//! the dead-letter topic; a restart reads the statuses again.

use crate::service::{http_get, start, wait_done, Kafka, PATIENCE};
use dialguard::config::Settings;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const FIXTURE: &str = "tests/fixtures/pack-us-regf-status";

fn fixture(name: &str) -> Vec<String> {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(FIXTURE)
            .join(name),
    )
    .unwrap()
    .lines()
    .map(str::to_owned)
    .collect()
}

/// Publishes status records (key: status_id; `None` payload: a tombstone).
pub(crate) fn publish(kafka: &Kafka, topic: &str, records: &[(&str, Option<&str>)]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .create()
        .unwrap();
    for (key, value) in records {
        let mut rec = BaseRecord::<str, str>::to(topic).key(key);
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        p.send(rec).map_err(|(e, _)| e).unwrap();
    }
    p.flush(PATIENCE).unwrap();
}

fn status_id(line: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["status_id"].as_str().unwrap().to_owned()
}

/// The alerts on the topic: (rule, call) → (how many, late).
pub(crate) fn alerts(kafka: &Kafka) -> BTreeMap<(String, String), (usize, bool)> {
    let mut out: BTreeMap<(String, String), (usize, bool)> = BTreeMap::new();
    for r in kafka.read_all(&kafka.alerts()) {
        let a: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        let k = (
            a["rule_id"].as_str().unwrap().to_owned(),
            a["call_id"].as_str().unwrap().to_owned(),
        );
        let e = out.entry(k).or_insert((0, false));
        e.0 += 1;
        e.1 = a["late"].as_bool().unwrap();
    }
    out
}

pub(crate) fn wait_for_alerts(
    kafka: &Kafka,
    n: usize,
) -> BTreeMap<(String, String), (usize, bool)> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let a = alerts(kafka);
        if a.values().map(|v| v.0).sum::<usize>() >= n {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "{} alerts of {n}: {a:?}",
            a.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn settings(kafka: &Kafka, topic: &str) -> Settings {
    let mut s = kafka.settings(&format!("{FIXTURE}/policy.toml"));
    s.reference.status_topic = Some(topic.to_owned());
    s
}

#[test]
fn statuses_from_the_topic_flag_calls_before_and_after_them_in_run() {
    let kafka = Kafka::new("statuses");
    let topic = format!("statuses.{}", kafka.tag);
    kafka.create_topic(&topic, 2);
    let statuses = fixture("reference.jsonl");
    let calls = fixture("events.jsonl");
    // Statuses known before the service starts, except two published after the calls; and
    // one invalid record.
    let (before, after): (Vec<&String>, Vec<&String>) = statuses
        .iter()
        .partition(|l| !l.contains("noon-D4") && !l.contains("work-D5"));
    let bad = r#"{"status_id":"bad","status":"vacation","debtor_id":"D1","from":"2026-11-01T00:00:00Z","source":"x"}"#;
    let keyed = |lines: &[&String]| -> Vec<(String, String)> {
        lines.iter().map(|l| (status_id(l), (*l).clone())).collect()
    };
    let first = keyed(&before);
    let mut records: Vec<(&str, Option<&str>)> = first
        .iter()
        .map(|(k, v)| (k.as_str(), Some(v.as_str())))
        .collect();
    records.push(("bad", Some(bad)));
    publish(&kafka, &topic, &records);

    let svc = start(settings(&kafka, &topic));
    kafka.produce(
        &calls
            .iter()
            .map(|l| l.clone().into_bytes())
            .collect::<Vec<_>>(),
    );
    wait_done(&kafka, &[&svc]);
    let got = wait_for_alerts(&kafka, 5);
    let on_time: Vec<(&str, &str)> = vec![
        ("regf-attorney-represented", "a1"),
        ("regf-cease-or-dispute", "b1"),
        ("regf-cease-or-dispute", "c1"),
        ("regf-opt-out", "d1"),
        ("regf-opt-out", "d3"),
    ];
    for (r, c) in &on_time {
        assert_eq!(
            got.get(&((*r).into(), (*c).into())),
            Some(&(1, false)),
            "{r} {c}: {got:?}"
        );
    }
    assert_eq!(got.len(), 5, "{got:?}");

    // The pre-dial check judges candidates against the same statuses.
    let addr = svc.handles.check_addr.expect("the check API is served");
    let candidate = |id: &str, account: &str| {
        serde_json::json!({"call_id": id, "occurred_at": "2026-11-08T15:00:00Z", "debtor_id": "D2",
            "account_id": account, "phone": "+1 212 555 0201", "relation": "self"})
    };
    let (code, v) = crate::check_api::check(addr, &candidate("k1", "A2-1"));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["breaches"][0]["rule_id"], "regf-cease-or-dispute", "{v}");
    assert_eq!(
        v["breaches"][0]["status"]["status_id"], "cease-D2-A2-1",
        "{v}"
    );
    assert!(
        v.get("next_allowed_at").is_none(),
        "an open-ended status never clears: {v}"
    );
    let (_, v) = crate::check_api::check(addr, &candidate("k2", "A2-2"));
    assert_eq!(v["allowed"], true, "another debt of D2: {v}");

    // Statuses published after the calls they cover flag them late.
    let later = keyed(&after);
    publish(
        &kafka,
        &topic,
        &later
            .iter()
            .map(|(k, v)| (k.as_str(), Some(v.as_str())))
            .collect::<Vec<_>>(),
    );
    let got = wait_for_alerts(&kafka, 7);
    assert_eq!(
        got.get(&("regf-designated-inconvenient-time".into(), "e1".into())),
        Some(&(1, true)),
        "{got:?}"
    );
    assert_eq!(
        got.get(&("regf-workplace-prohibited".into(), "f1".into())),
        Some(&(1, true)),
        "{got:?}"
    );

    // A tombstone withdraws the attorney status: the next call to D1 is not flagged.
    publish(&kafka, &topic, &[("atty-D1", None)]);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let page = svc.handles.metrics.render();
        if page
            .contains("dialguard_reference_records_total{kind=\"status\",result=\"withdrawn\"} 1")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the tombstone was not read: {page}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    kafka.produce(&[br#"{"call_id": "a4", "occurred_at": "2026-11-04T15:00:00Z", "debtor_id": "D1", "phone": "+1 212 555 0101", "relation": "self"}"#.to_vec()]);
    wait_done(&kafka, &[&svc]);
    let page = svc.handles.metrics.render();
    assert!(
        page.contains("dialguard_reference_records_total{kind=\"status\",result=\"applied\"} 7"),
        "{page}"
    );
    assert!(
        page.contains("dialguard_reference_records_total{kind=\"status\",result=\"rejected\"} 1"),
        "{page}"
    );
    let (code, body) = http_get(svc.handles.http_addr, "/readyz");
    assert_eq!(code, 200, "{body}");
    svc.stop();
    let got = alerts(&kafka);
    assert!(
        !got.contains_key(&("regf-attorney-represented".into(), "a4".into())),
        "{got:?}"
    );

    // The invalid record is in the dead-letter topic, naming the status topic as its source.
    let dlq = kafka.read_all(&kafka.dlq());
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].headers["dialguard.reason"], "unknown_value");
    assert_eq!(dlq[0].headers["dialguard.source.topic"], topic);
    assert_eq!(dlq[0].key.as_deref(), Some(&b"bad"[..]));

    // A restart reads the statuses again: a call under the cease status is flagged.
    let svc = start(settings(&kafka, &topic));
    kafka.produce(&[br#"{"call_id": "b3", "occurred_at": "2026-11-07T15:00:00Z", "debtor_id": "D2", "account_id": "A2-1", "phone": "+1 212 555 0201", "relation": "self"}"#.to_vec()]);
    wait_done(&kafka, &[&svc]);
    let got = wait_for_alerts(&kafka, 8);
    assert_eq!(
        got.get(&("regf-cease-or-dispute".into(), "b3".into())),
        Some(&(1, false)),
        "{got:?}"
    );
    svc.stop();
    let got = alerts(&kafka);
    let twice: Vec<_> = got.iter().filter(|(_, v)| v.0 > 1).collect();
    assert!(twice.is_empty(), "published twice: {twice:?}");
}

#[test]
fn a_status_rule_without_a_status_topic_is_refused_at_start() {
    let kafka = Kafka::new("statuses-none");
    let s = kafka.settings(&format!("{FIXTURE}/policy.toml"));
    let err =
        dialguard::service::run(s, dialguard::service::Shutdown::new(), false, |_| {}).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("reference.status_topic") && text.contains("regf-attorney-represented"),
        "{text}"
    );
}

/// The Status v1 schema and the decoder agree: every record of the status fixtures has the
/// members the schema requires and no others, and the schema's enums are the decoder's.
#[test]
fn the_status_schema_describes_what_the_decoder_reads() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("docs/schemas/status.schema.json")).unwrap(),
    )
    .unwrap();
    let kinds: Vec<String> = schema["properties"]["status"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let known: Vec<String> = dialguard::engine::event::StatusKind::ALL
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect();
    assert_eq!(kinds, known);
    let channels = &schema["properties"]["channels"]["items"]["enum"];
    let known: Vec<serde_json::Value> = dialguard::engine::event::Channel::ALL
        .iter()
        .map(|c| c.as_str().into())
        .collect();
    assert_eq!(channels.as_array().unwrap(), &known);
    let mut n = 0;
    for (dir, region) in [
        ("pack-us-regf-status", phonenumber::country::Id::US),
        ("pack-cn-cba-2026-status", phonenumber::country::Id::CN),
    ] {
        let mut dec = dialguard::reference::ReferenceDecoder::new(region);
        for l in std::fs::read_to_string(
            root.join("tests/fixtures")
                .join(dir)
                .join("reference.jsonl"),
        )
        .unwrap()
        .lines()
        {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object().unwrap();
            if !o.contains_key("status_id") {
                continue; // a contact (the Contact v1 schema's test)
            }
            for k in schema["required"].as_array().unwrap() {
                assert!(o.contains_key(k.as_str().unwrap()), "{k} missing: {l}");
            }
            for k in o.keys() {
                assert!(
                    schema["properties"].get(k).is_some(),
                    "{k} not in the schema: {l}"
                );
            }
            assert!(dec.decode_line(l.as_bytes()).is_ok(), "{l}");
            n += 1;
        }
    }
    assert!(n >= 8);
}
