//! `POST /v1/check` on a running service (the mock cluster, the default configuration): a
//! dialer asks before it dials, is told why not and when, reserves the last attempt (exactly one
//! of two racing checks gets it), and the reserved call, once made, is counted once. Bad input,
//! authentication and unreadiness get their 4xx/503 answers.

use crate::service::{metric_with, start, wait_done, Kafka, PATIENCE};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// An HTTP/1.1 POST with a JSON body: (status, headers in lower case, body as JSON or Null).
fn post(addr: SocketAddr, path: &str, auth: Option<&str>, body: &[u8]) -> (u16, String, Value) {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(30)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = auth.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let v = serde_json::from_str(body.trim()).unwrap_or(Value::Null);
    (code, head.to_ascii_lowercase(), v)
}

pub(crate) fn check(addr: SocketAddr, body: &Value) -> (u16, Value) {
    let (code, _, v) = post(addr, "/v1/check", None, body.to_string().as_bytes());
    if code == 200 {
        conforms(&v);
    }
    (code, v)
}

/// The answer has every member `docs/schemas/check-answer.schema.json` requires, and none it
/// does not describe (a schema dialers integrate from must not drift from the answers).
fn conforms(v: &Value) {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs/schemas/check-answer.schema.json"),
    )
    .unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    let defs = &schema["$defs"];
    let holds = |obj: &Value, def: &Value, also: &[&str]| {
        let o = obj
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {obj}"));
        for k in def["required"].as_array().unwrap() {
            assert!(
                o.contains_key(k.as_str().unwrap()),
                "{k} missing from {obj}"
            );
        }
        for k in o.keys() {
            assert!(
                def["properties"].get(k).is_some() || also.contains(&k.as_str()),
                "{k} is not in the schema: {obj}"
            );
        }
    };
    let results: Vec<&Value> = match v.get("results") {
        Some(r) => {
            holds(v, &schema["oneOf"][1], &[]);
            r.as_array().unwrap().iter().collect()
        }
        None => vec![v],
    };
    holds(&v["as_of"], &defs["as_of"], &[]);
    for r in results {
        holds(r, &defs["result"], &["as_of"]);
        for b in r["breaches"].as_array().unwrap() {
            holds(b, &defs["breach"], &[]);
        }
    }
}

fn shanghai() -> TimeZone {
    TimeZone::get("Asia/Shanghai").unwrap()
}

/// Yesterday in Shanghai: its calls are within the default skew and lateness of nothing.
fn yesterday() -> Date {
    jiff::Zoned::now().with_time_zone(shanghai()).date() - jiff::Span::new().days(1)
}

/// RFC 3339 of `h:m` Shanghai time on `day`.
fn at(day: Date, h: i8, m: i8) -> String {
    day.at(h, m, 0, 0)
        .to_zoned(shanghai())
        .unwrap()
        .timestamp()
        .to_string()
}

fn call(id: &str, debtor: &str, phone: &str, when: &str) -> Value {
    json!({
        "call_id": id, "occurred_at": when, "debtor_id": debtor, "phone": phone,
        "relation": "self", "outcome": "no_answer", "direction": "outbound", "channel": "voice",
        "creditor_id": "lender-0", "agency_id": "agency-1"
    })
}

/// The breach of `rule` in an answer.
fn breach_of<'a>(v: &'a Value, rule: &str) -> &'a Value {
    v["breaches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["rule_id"] == rule)
        .unwrap_or_else(|| panic!("no {rule} breach: {v}"))
}

fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + PATIENCE;
    while crate::service::http_get(addr, "/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_dialer_learns_before_dialing_what_would_breach_and_when_it_may_call() {
    let kafka = Kafka::new("check");
    let settings = kafka.settings("config/dialguard.toml");
    let day = yesterday();
    // Six calls to one number today (the limit), five to another debtor's number.
    let mut lines: Vec<Vec<u8>> = (0..6)
        .map(|i| call(&format!("a{i}"), "D1", "+8613800000001", &at(day, 9, i * 5)))
        .chain((0..5).map(|i| call(&format!("b{i}"), "D2", "+8613800000002", &at(day, 9, i * 5))))
        .map(|v| v.to_string().into_bytes())
        .collect();
    kafka.produce(&lines);
    let running = start(settings);
    let addr = running
        .handles
        .check_addr
        .expect("the check API is served by default");
    wait_ready(running.handles.http_addr);
    wait_done(&kafka, &[&running]);

    // The seventh call to D1's number today breaches the six-attempts cap; it becomes lawful
    // at 08:00 the next local day (midnight frees the cap, calling hours open at 08:00).
    let (code, v) = check(
        addr,
        &call("cand-1", "D1", "+8613800000001", &at(day, 10, 0)),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["allowed"], false, "{v}");
    let rules: Vec<&str> = v["breaches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["rule_id"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"cn-cba-six-attempts-per-number-day"), "{v}");
    let cap = breach_of(&v, "cn-cba-six-attempts-per-number-day");
    assert_eq!(
        (cap["observed"].as_u64(), cap["limit"].as_u64()),
        (Some(7), Some(6)),
        "{v}"
    );
    assert!(
        cap["citation"].is_string() && cap["message"].is_string(),
        "{v}"
    );
    assert_eq!(
        v["next_allowed_at"],
        at(day + jiff::Span::new().days(1), 8, 0),
        "{v}"
    );
    assert_eq!(v["as_of"]["event_time"], at(day, 9, 25), "{v}");
    // Every assigned partition, those that delivered no record (two debtors, three partitions)
    // at their earliest offset.
    let offsets = v["as_of"]["offsets"].as_object().unwrap();
    assert_eq!(
        offsets.len(),
        crate::service::PARTITIONS as usize,
        "one offset per input partition: {v}"
    );
    let offsets: i64 = offsets.values().map(|o| o.as_i64().unwrap()).sum();
    assert_eq!(
        offsets,
        lines.len() as i64,
        "every record is in the state: {v}"
    );

    // Status mode: 409 = do not dial, 200 = dial.
    let body = call("cand-2", "D1", "+8613800000001", &at(day, 10, 0)).to_string();
    assert_eq!(
        post(addr, "/v1/check?mode=status", None, body.as_bytes()).0,
        409
    );
    let other = call("cand-3", "D1", "+8613800000009", &at(day, 10, 0)).to_string();
    assert_eq!(
        post(addr, "/v1/check?mode=status", None, other.as_bytes()).0,
        200
    );
    // At night, calling hours refuse it, and say when the morning comes.
    let (_, v) = check(
        addr,
        &call("cand-4", "D3", "+8613800000003", &at(day, 23, 0)),
    );
    assert_eq!(v["allowed"], false);
    assert_eq!(
        v["next_allowed_at"],
        at(day + jiff::Span::new().days(1), 8, 0),
        "{v}"
    );
    // Defaults: no call_id and no occurred_at (now) — judged, with an id generated.
    let (code, v) = check(
        addr,
        &json!({"debtor_id": "D4", "phone": "+8613800000004", "relation": "self"}),
    );
    assert_eq!(code, 200, "{v}");
    assert!(v["call_id"].as_str().unwrap().starts_with("check-"), "{v}");
    // "Now" is judged at the wall clock: refused by calling hours when it is night in Shanghai
    // (22:00–08:00, 14:00–24:00 UTC), allowed otherwise. The counts below depend on which.
    let now_allowed = u8::from(v["allowed"].as_bool().unwrap()) as f64;
    // A batch answers per call, in order.
    let (code, v) = check(
        addr,
        &json!({"calls": [
            call("cand-5", "D1", "+8613800000001", &at(day, 10, 0)),
            call("cand-6", "D1", "+8613800000009", &at(day, 10, 0)),
        ]}),
    );
    assert_eq!(code, 200, "{v}");
    let allowed: Vec<bool> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["allowed"].as_bool().unwrap())
        .collect();
    assert_eq!(allowed, [false, true]);
    // A forbidden call (an unrelated third party) has no next_allowed_at.
    let mut third = call("cand-7", "D1", "+8613800000008", &at(day, 10, 0));
    third["relation"] = json!("other");
    let (_, v) = check(addr, &third);
    assert_eq!(v["allowed"], false, "{v}");
    assert!(v.get("next_allowed_at").is_none(), "{v}");

    // Two agents race for D2's sixth and last attempt: exactly one is allowed, and reserved.
    let racers: Vec<_> = (0..2)
        .map(|i| {
            let body = json!({"reserve": true, "calls": [call(&format!("race-{i}"), "D2", "+8613800000002", &at(day, 10, 0))]});
            std::thread::spawn(move || check(addr, &body))
        })
        .collect();
    let answers: Vec<Value> = racers
        .into_iter()
        .map(|h| h.join().unwrap().1["results"][0].clone())
        .collect();
    let winners: Vec<&Value> = answers.iter().filter(|r| r["allowed"] == true).collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    assert_eq!(winners[0]["reserved"], true);
    let winner = winners[0]["call_id"].as_str().unwrap().to_owned();
    let m = running.handles.metrics.render();
    assert_eq!(
        crate::service::metric(&m, "dialguard_check_reservations_open"),
        1.0
    );
    // The reserved call is placed: it arrives, is counted once (no alert: it is the sixth),
    // and the reservation closes.
    let alerts_before = metric_with(
        &m,
        "dialguard_alerts_total",
        "rule=\"cn-cba-six-attempts-per-number-day\",severity=\"medium\"",
    );
    let made = call(&winner, "D2", "+8613800000002", &at(day, 10, 0))
        .to_string()
        .into_bytes();
    kafka.produce(std::slice::from_ref(&made));
    lines.push(made);
    wait_done(&kafka, &[&running]);
    let deadline = Instant::now() + PATIENCE;
    while crate::service::metric(
        &running.handles.metrics.render(),
        "dialguard_check_reservations_open",
    ) != 0.0
    {
        assert!(
            Instant::now() < deadline,
            "the reservation stayed open after its call arrived"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = running.handles.metrics.render();
    assert_eq!(
        metric_with(
            &m,
            "dialguard_alerts_total",
            "rule=\"cn-cba-six-attempts-per-number-day\",severity=\"medium\""
        ),
        alerts_before
    );
    let (_, v) = check(
        addr,
        &call("after", "D2", "+8613800000002", &at(day, 10, 1)),
    );
    assert_eq!(v["allowed"], false, "six calls made: {v}");
    let cap = breach_of(&v, "cn-cba-six-attempts-per-number-day");
    assert_eq!(
        cap["observed"].as_u64(),
        Some(7),
        "the reserved call counted once: {v}"
    );

    // Bad input: the decoder's reasons, as 4xx.
    for (body, code, error) in [
        (b"{not json".to_vec(), 400, "not_json"),
        (b"[1]".to_vec(), 400, "wrong_type"),
        (
            json!({"debtor_id": "D1", "relation": "self"})
                .to_string()
                .into_bytes(),
            400,
            "missing_field",
        ),
        (
            json!({"debtor_id": "D1", "phone": "+8613800000001", "relation": "cousin"})
                .to_string()
                .into_bytes(),
            400,
            "unknown_value",
        ),
        (
            json!({"calls": []}).to_string().into_bytes(),
            400,
            "bad_value",
        ),
        (
            json!({"calls": vec![json!({}); 501]})
                .to_string()
                .into_bytes(),
            413,
            "bad_value",
        ),
    ] {
        let (got, _, v) = post(addr, "/v1/check", None, &body);
        assert_eq!(
            (got, v["error"].as_str()),
            (code, Some(error)),
            "{}: {v}",
            String::from_utf8_lossy(&body)
        );
    }
    let big = vec![b' '; (1 << 20) + 1];
    assert_eq!(post(addr, "/v1/check", None, &big).0, 413);
    assert_eq!(post(addr, "/v1/check?mode=loud", None, b"{}").0, 400);

    let m = running.handles.metrics.render();
    assert!(metric_with(&m, "dialguard_checks_total", "verdict=\"allowed\"") >= 3.0 + now_allowed);
    assert!(metric_with(&m, "dialguard_checks_total", "verdict=\"refused\"") >= 6.0 - now_allowed);
    assert!(metric_with(&m, "dialguard_checks_total", "verdict=\"invalid\"") >= 7.0);
    assert!(crate::service::metric(&m, "dialguard_check_duration_seconds_count") >= 15.0);
    // No debtor id or phone number in any metric.
    assert!(!m.contains("D1") && !m.contains("8613800000001"));
    running.stop();
}

#[test]
fn with_a_token_set_the_check_api_answers_only_its_bearers() {
    let kafka = Kafka::new("check-auth");
    let mut settings = kafka.settings("config/dialguard.toml");
    let token = "0123456789abcdef0123456789abcdef";
    settings.check.tokens = vec![token.to_owned()];
    let running = start(settings);
    let addr = running.handles.check_addr.unwrap();
    wait_ready(running.handles.http_addr);
    let body = call("c", "D1", "+8613800000001", &at(yesterday(), 10, 0)).to_string();
    let (code, head, _) = post(addr, "/v1/check", None, body.as_bytes());
    assert_eq!(code, 401);
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    assert_eq!(
        post(
            addr,
            "/v1/check",
            Some("0123456789abcdef0123456789abcdeX"),
            body.as_bytes()
        )
        .0,
        401
    );
    let (code, _, v) = post(addr, "/v1/check", Some(token), body.as_bytes());
    assert_eq!((code, &v["allowed"]), (200, &json!(true)), "{v}");
    running.stop();
}

#[test]
fn a_service_not_ready_answers_503_with_retry_after() {
    let kafka = Kafka::new("check-unready");
    let mut settings = kafka.settings("config/dialguard.toml");
    // No broker answers there: no assignment ever comes.
    settings.kafka.brokers = "127.0.0.1:1".into();
    let running = start(settings);
    let addr = running.handles.check_addr.unwrap();
    let body = call("c", "D1", "+8613800000001", &at(yesterday(), 10, 0)).to_string();
    let (code, head, v) = post(addr, "/v1/check", None, body.as_bytes());
    assert_eq!(code, 503, "{v}");
    assert!(head.contains("retry-after: 1"), "{head}");
    assert_eq!(v["error"], "not_ready");
    running.stop();
}

/// With two instances sharing the input, each answers for the debtors whose partition it holds
/// (it has their calls) and sends the others away with 421, where it would otherwise have
/// allowed what the owner refuses.
#[test]
fn with_two_instances_each_answers_only_for_the_debtors_it_holds() {
    use dialguard::partition::Partitioner;
    let kafka = Kafka::new("check-pair");
    let mut settings = kafka.settings("config/dialguard.toml");
    // The test producer is librdkafka's, whose default partitioner is `consistent`.
    settings.check.partitioner = Some(Partitioner::Consistent);
    let day = yesterday();
    let debtors: Vec<String> = (0..12).map(|i| format!("D{i}")).collect();
    let phone = |i: usize| format!("+86138000000{i:02}");
    // Six calls today to each debtor's number: the per-number cap is reached everywhere.
    let lines: Vec<Vec<u8>> = debtors
        .iter()
        .enumerate()
        .flat_map(|(i, d)| (0..6).map(move |k| (i, d.clone(), k)))
        .map(|(i, d, k)| {
            call(&format!("{d}-{k}"), &d, &phone(i), &at(day, 9, k as i8 * 5))
                .to_string()
                .into_bytes()
        })
        .collect();
    kafka.produce(&lines);
    let a = start(settings.clone());
    let b = start(settings);
    wait_ready(a.handles.http_addr);
    wait_ready(b.handles.http_addr);
    wait_done(&kafka, &[&a, &b]);
    let addrs = [a.handles.check_addr.unwrap(), b.handles.check_addr.unwrap()];
    let mut answered = [0, 0];
    let mut sent_away = [0, 0];
    for (i, d) in debtors.iter().enumerate() {
        let body = call(&format!("cand-{d}"), d, &phone(i), &at(day, 10, 0));
        let answers: Vec<(u16, Value)> = addrs.iter().map(|addr| check(*addr, &body)).collect();
        let owners: Vec<usize> = (0..2).filter(|k| answers[*k].0 == 200).collect();
        assert_eq!(
            owners.len(),
            1,
            "{d}: exactly one instance answers: {answers:?}"
        );
        let (owner, other) = (owners[0], 1 - owners[0]);
        let (_, v) = &answers[owner];
        assert_eq!(v["allowed"], false, "{d}: the owner has its six calls: {v}");
        let p = Partitioner::Consistent.partition(d.as_bytes(), 3);
        assert!(
            v["as_of"]["offsets"].get(p.to_string()).is_some(),
            "{d} (partition {p}) is among the owner's partitions: {v}"
        );
        let (code, v) = &answers[other];
        assert_eq!(*code, 421, "{v}");
        assert_eq!(v["error"], "not_owner", "{v}");
        answered[owner] += 1;
        sent_away[other] += 1;
    }
    assert!(
        answered.iter().all(|n| *n > 0) && sent_away.iter().all(|n| *n > 0),
        "both instances hold some debtors: answered {answered:?}, sent away {sent_away:?}"
    );
    a.stop();
    b.stop();
}
