//! The lender's contact book: `contact` rules against a naive oracle over random calls and
//! contacts in any arrival order, and enrichment of other rules' filters against an oracle
//! that fills each call from the book before judging it (the book read before the calls, as
//! `run` reads its contacts topic before it is ready).

use crate::engine_prop::breach_key;
use dialguard::engine::contacts::Contact;
use dialguard::engine::event::{Call, CallOutcome, NumberSource, Relation};
use dialguard::engine::rule::{Body, Rule, ANY_RELATION, ANY_SOURCE};
use dialguard::engine::time::{Ts, NANOS_PER_SEC};
use dialguard::engine::{Engine, EngineSettings, Ingest};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashSet};

const HOUR: i64 = 3600 * NANOS_PER_SEC;
/// 2026-10-26T00:00:00Z.
const BASE: i64 = 1_793_059_200 * NANOS_PER_SEC;

const RELATIONS: [Relation; 5] = [
    Relation::SelfDebtor,
    Relation::Spouse,
    Relation::ContactList,
    Relation::Other,
    Relation::Unknown,
];
const SOURCES: [NumberSource; 4] = [
    NumberSource::DebtorProvided,
    NumberSource::DeviceContacts,
    NumberSource::CallLog,
    NumberSource::SkipTrace,
];

#[derive(Debug, Clone)]
struct CallSpec {
    hour: i64,
    minute: i64,
    debtor: u8,
    phone: u8,
    /// Index into RELATIONS (4: the event does not know).
    relation: u8,
    source: Option<u8>,
    outcome: Option<u8>,
}

fn call_spec() -> impl Strategy<Value = CallSpec> {
    (
        0i64..24 * 10,
        prop_oneof![3 => Just(0i64), 1 => 0i64..60],
        0u8..2,
        0u8..4,
        prop_oneof![2 => Just(4u8), 1 => 0u8..4],
        prop::option::weighted(0.3, 0u8..4),
        prop::option::weighted(0.7, 0u8..2),
    )
        .prop_map(
            |(hour, minute, debtor, phone, relation, source, outcome)| CallSpec {
                hour,
                minute,
                debtor,
                phone,
                relation,
                source,
                outcome,
            },
        )
}

fn phone(p: u8) -> String {
    format!("+8613800000{p:03}")
}

fn make_call(i: usize, s: &CallSpec) -> Call {
    let mut c = Call::new(
        &format!("c{i}"),
        Ts(BASE + s.hour * HOUR + s.minute * 60 * NANOS_PER_SEC),
        &format!("d{}", s.debtor),
        &phone(s.phone),
        RELATIONS[s.relation as usize],
    );
    c.number_source = s.source.map(|x| SOURCES[x as usize]);
    c.outcome = s
        .outcome
        .map(|o| [CallOutcome::NoAnswer, CallOutcome::Conversation][o as usize]);
    c
}

#[derive(Debug, Clone)]
struct ContactSpec {
    debtor: u8,
    phone: u8,
    relation: u8,
    source: u8,
    consent: bool,
    from_h: i64,
}

fn contact_spec() -> impl Strategy<Value = ContactSpec> {
    (
        0u8..2,
        0u8..4,
        0u8..4,
        0u8..4,
        prop::bool::weighted(0.2),
        0i64..24 * 10,
    )
        .prop_map(
            |(debtor, phone, relation, source, consent, from_h)| ContactSpec {
                debtor,
                phone,
                relation,
                source,
                consent,
                from_h,
            },
        )
}

/// One contact per (debtor, number), as a compacted topic keeps them.
fn make_contacts(specs: &[ContactSpec]) -> Vec<Contact> {
    let mut by_key = BTreeMap::new();
    for s in specs {
        by_key.insert(
            (s.debtor, s.phone),
            Contact {
                debtor_id: format!("d{}", s.debtor).into(),
                phone: phone(s.phone).into(),
                relation: RELATIONS[s.relation as usize],
                source: SOURCES[s.source as usize],
                consent: s.consent,
                from: Ts(BASE + s.from_h * HOUR),
            },
        );
    }
    by_key.into_values().collect()
}

fn contact_rules() -> Vec<Rule> {
    crate::support::rules_from_toml(
        r#"
[[rules]]
id = "harvested"
kind = "contact"
severity = "high"
sources = ["device_contacts", "call_log"]
lookback = "11d"
[rules.when]
outcome_not = ["conversation"]

[[rules]]
id = "third-party"
kind = "contact"
severity = "medium"
relations = ["contact_list", "other"]
lookback = "11d"

[[rules]]
id = "harvested-family"
kind = "contact"
severity = "medium"
sources = ["device_contacts"]
relations = ["spouse", "contact_list"]
lookback = "11d"
"#,
        "Asia/Shanghai",
    )
}

/// Every (rule, call) breach of the contact rules, from the calls and the final book: the
/// event's own values breach, or — filled in by the book's fact for the call's debtor and
/// number at its time, from a person who did not consent — they do.
fn contact_oracle(
    rules: &[Rule],
    contacts: &[Contact],
    calls: &[Call],
) -> BTreeSet<(String, String)> {
    let names = |rule: &Rule, source: Option<NumberSource>, relation: Relation| {
        let Body::Contact {
            sources, relations, ..
        } = rule.body
        else {
            unreachable!()
        };
        let s = sources == ANY_SOURCE || source.is_some_and(|s| sources & (1 << s as u8) != 0);
        let r = relations == ANY_RELATION
            || (relation != Relation::Unknown && relations & (1 << relation as u16) != 0);
        s && r
    };
    let mut out = BTreeSet::new();
    for rule in rules {
        for c in calls {
            if !rule.when.matches(c) {
                continue;
            }
            let own = names(rule, c.number_source, c.relation);
            let by_book = contacts.iter().any(|k| {
                k.debtor_id == c.debtor_id
                    && k.phone == c.phone
                    && k.from <= c.occurred_at
                    && !k.consent
                    && names(
                        rule,
                        c.number_source.or(Some(k.source)),
                        if c.relation == Relation::Unknown {
                            k.relation
                        } else {
                            c.relation
                        },
                    )
            });
            if own || by_book {
                out.insert((rule.id.clone(), c.call_id.to_string()));
            }
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Arrival {
    Call(Box<Call>),
    Contact(Contact),
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Calls (filled from the book as the judge step does) and contacts in any arrival order,
    /// duplicates included: exactly the oracle's breaches, each once — found when the call
    /// arrives if the book then says enough, or late when the contact arrives. Before each
    /// call, `check` says what ingesting it yields for itself. A snapshot taken anywhere,
    /// restored with the book handed over (as the service does on an assignment), goes on
    /// exactly as the original.
    #[test]
    fn contacts_and_calls_in_any_order_give_the_oracles_breaches(
        specs in prop::collection::vec(call_spec(), 1..30),
        cspecs in prop::collection::vec(contact_spec(), 0..10),
        seed in any::<u64>(),
        split in 0usize..1000,
    ) {
        let calls: Vec<Call> = specs.iter().enumerate().map(|(i, s)| make_call(i, s)).collect();
        let contacts = make_contacts(&cspecs);
        let rules = contact_rules();
        let expected = contact_oracle(&rules, &contacts, &calls);
        let mut arrivals: Vec<Arrival> = calls.iter().cloned().map(Box::new).map(Arrival::Call)
            .chain(contacts.iter().cloned().map(Arrival::Contact))
            .chain(calls.iter().take(3).cloned().map(Box::new).map(Arrival::Call))
            .collect();
        crate::support::shuffle(&mut arrivals, seed);
        let settings = EngineSettings { allowed_lateness: 365 * 24 * HOUR, ..Default::default() };
        let mut engine = Engine::new(rules.clone(), settings.clone());
        // The three rules hold their calls in one host per debtor.
        prop_assert_eq!(engine.shared_window_rules(), 3);
        let mut got = BTreeSet::new();
        let mut seen = HashSet::new();
        let k = split % (arrivals.len() + 1);
        for (n, a) in arrivals.iter().enumerate() {
            if n == k {
                let bytes = engine.snapshot();
                let book = engine.take_contacts();
                engine = Engine::from_snapshot(rules.clone(), settings.clone(), &bytes)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                engine.set_contacts(book);
            }
            let mut found = Vec::new();
            let mut rendered = Vec::new();
            match a {
                Arrival::Call(c) => {
                    let mut c = (**c).clone();
                    engine.enrich(&mut c);
                    let checked: BTreeSet<(String, String)> = engine
                        .check(&c)
                        .iter()
                        .map(|b| breach_key(&rules, b, Some(&c)))
                        .collect();
                    let r = engine.ingest(&c, &mut found);
                    crate::support::render_checked(&rules, &found, &c, Ts(0), &mut rendered);
                    prop_assert!(found.iter().all(|b| !b.late), "a call made a late contact breach");
                    let own: BTreeSet<(String, String)> =
                        found.iter().map(|b| breach_key(&rules, b, Some(&c))).collect();
                    if seen.insert(c.call_id.clone()) {
                        prop_assert!(matches!(r, Ingest::Accepted { .. }), "{} refused: {:?}", &c.call_id, r);
                        prop_assert_eq!(checked, own.clone(), "check and ingest differ for {}", &c.call_id);
                    } else {
                        prop_assert_eq!(r, Ingest::Duplicate);
                    }
                    for k in own {
                        prop_assert!(got.insert(k.clone()), "twice: {:?}", k);
                    }
                }
                Arrival::Contact(ct) => {
                    engine.apply_contact(ct.clone(), &mut found).unwrap();
                    if let Some(c) = calls.first() {
                        crate::support::render_checked(&rules, &found, c, Ts(0), &mut rendered);
                    }
                    for b in &found {
                        prop_assert!(b.late);
                        let cause = b.contact.as_ref().expect("a late breach names the fact");
                        prop_assert_eq!((cause.relation, cause.source, cause.from), (ct.relation, ct.source, ct.from));
                        prop_assert!(got.insert(breach_key(&rules, b, None)), "twice: {:?}", b);
                    }
                }
            }
        }
        prop_assert_eq!(engine.contacts().len(), contacts.len());
        prop_assert_eq!(got, expected);
    }

    /// Other rules' `when` sees what the book fills in: with the book read before the calls,
    /// calls in any order breach exactly what the oracle finds for the calls filled from the
    /// book (the event's own values winning, a fact applying from its `from` on).
    #[test]
    fn enrichment_fills_other_rules_filters_as_the_oracle_does(
        specs in prop::collection::vec(call_spec(), 1..30),
        cspecs in prop::collection::vec(contact_spec(), 0..10),
        seed in any::<u64>(),
    ) {
        let rules = crate::support::rules_from_toml(
            r#"
[[rules]]
id = "harvested-forbidden"
kind = "forbid"
severity = "high"
[rules.when]
number_source = ["device_contacts", "call_log"]

[[rules]]
id = "third-parties-per-debtor"
kind = "cap"
severity = "medium"
key = ["debtor_id"]
distinct = "phone"
window = "3d"
limit = 1
[rules.when]
relation = ["contact_list", "other"]

[[rules]]
id = "not-self"
kind = "cap"
severity = "low"
key = ["phone"]
window = "1d"
limit = 1
[rules.when]
relation_not = ["self", "unknown"]
"#,
            "Asia/Shanghai",
        );
        let calls: Vec<Call> = specs.iter().enumerate().map(|(i, s)| make_call(i, s)).collect();
        let contacts = make_contacts(&cspecs);
        // The oracle's own filling, written from the contract.
        let filled: Vec<Call> = calls.iter().map(|c| {
            let mut f = c.clone();
            if let Some(k) = contacts.iter().find(|k| k.debtor_id == c.debtor_id && k.phone == c.phone && k.from <= c.occurred_at) {
                if f.relation == Relation::Unknown { f.relation = k.relation; }
                if f.number_source.is_none() { f.number_source = Some(k.source); }
            }
            f
        }).collect();
        let expected = crate::engine_prop::oracle(&rules, &filled);
        let mut order: Vec<usize> = (0..calls.len()).collect();
        crate::support::shuffle(&mut order, seed);
        let settings = EngineSettings { allowed_lateness: 365 * 24 * HOUR, ..Default::default() };
        let mut engine = Engine::new(rules.clone(), settings);
        let mut none = Vec::new();
        for c in &contacts {
            engine.apply_contact(c.clone(), &mut none).unwrap();
        }
        prop_assert!(none.is_empty());
        let mut got = BTreeSet::new();
        for &i in &order {
            let mut c = calls[i].clone();
            let mut found = Vec::new();
            let o = dialguard::judge::judge(&mut engine, 0, &mut c, &mut found);
            let accepted = matches!(o, dialguard::judge::Outcome::Accepted { .. });
            prop_assert!(accepted, "refused: {:?}", o);
            prop_assert_eq!((c.relation, c.number_source), (filled[i].relation, filled[i].number_source));
            for b in &found {
                got.insert(breach_key(&rules, b, Some(&c)));
            }
        }
        prop_assert_eq!(got, expected);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// The whole book read before the first call (a replay's `--reference`; a service with no
    /// contacts topic has no book at all): an engine whose contact rules keep no calls
    /// (`late_contacts` off) breaches exactly what one that keeps them does, and holds no
    /// window; their snapshots are not interchangeable.
    #[test]
    fn a_book_read_first_judges_alike_whether_calls_are_kept_or_not(
        specs in prop::collection::vec(call_spec(), 1..30),
        cspecs in prop::collection::vec(contact_spec(), 0..10),
        seed in any::<u64>(),
    ) {
        let calls: Vec<Call> = specs.iter().enumerate().map(|(i, s)| make_call(i, s)).collect();
        let contacts = make_contacts(&cspecs);
        let mut order: Vec<Call> = calls.iter().chain(calls.iter().take(3)).cloned().collect();
        crate::support::shuffle(&mut order, seed);
        let keeping = EngineSettings { allowed_lateness: 365 * 24 * HOUR, ..Default::default() };
        let lean = EngineSettings { late_contacts: false, ..keeping.clone() };
        let read = |e: &mut Engine, out: &mut Vec<_>| {
            for c in &contacts {
                e.apply_contact(c.clone(), out).unwrap();
            }
        };
        crate::engine_prop::reference_read_first_judges_alike(&contact_rules(), &keeping, &lean, read, &order)?;
    }
}

#[test]
fn a_forgotten_contact_fills_nothing_after_it_and_its_breaches_stand() {
    let rules = contact_rules();
    let mut e = Engine::new(rules.clone(), EngineSettings::default());
    let ct = Contact {
        debtor_id: "d0".into(),
        phone: phone(0).into(),
        relation: Relation::ContactList,
        source: NumberSource::DeviceContacts,
        consent: false,
        from: Ts(BASE),
    };
    let call = |i: usize, hour: i64| {
        make_call(
            i,
            &CallSpec {
                hour,
                minute: 0,
                debtor: 0,
                phone: 0,
                relation: 4,
                source: None,
                outcome: None,
            },
        )
    };
    let mut out = Vec::new();
    e.ingest(&call(0, 1), &mut out);
    assert!(out.is_empty(), "nothing known of the number");
    e.apply_contact(ct.clone(), &mut out).unwrap();
    let ids: BTreeSet<&str> = out
        .iter()
        .map(|b| rules[b.rule as usize].id.as_str())
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from(["harvested", "third-party", "harvested-family"]),
        "the call before the contact is flagged by each rule when it arrives"
    );
    assert!(out.iter().all(|b| b.late));
    out.clear();
    e.apply_contact(ct.clone(), &mut out).unwrap();
    assert!(out.is_empty(), "the same contact again flags nothing twice");
    // A person who consented is not flagged by the book.
    let mut consented = ct.clone();
    consented.phone = phone(1).into();
    consented.consent = true;
    e.apply_contact(consented, &mut out).unwrap();
    let mut c1 = call(1, 2);
    c1.phone = phone(1).into();
    e.enrich(&mut c1);
    e.ingest(&c1, &mut out);
    assert!(out.is_empty(), "consent: {out:?}");
    assert!(e.end_contact("d0", &phone(0)).is_some());
    let mut c2 = call(2, 3);
    let f = e.enrich(&mut c2);
    assert!(f.fact.is_none() && !f.relation && !f.number_source, "{f:?}");
    e.ingest(&c2, &mut out);
    assert!(out.is_empty(), "no fact once forgotten");
    assert_eq!(e.stats().late_alerts, 3);
}

#[test]
fn contact_rules_are_refused_where_the_book_would_change_their_filter() {
    use dialguard::policy::spec::RuleSpec;
    let tz = jiff::tz::TimeZone::UTC;
    let compile = |text: &str| {
        let r: RuleSpec = toml::from_str(text).unwrap();
        r.compile(&tz, "UTC", None)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let base = "id = \"r\"\nkind = \"contact\"\nseverity = \"high\"\n";
    assert!(compile(&format!("{base}sources = [\"call_log\"]")).is_ok());
    for (extra, says) in [
        (
            "sources = [\"call_log\"]\n[when]\nrelation = [\"spouse\"]",
            "may not test relation",
        ),
        (
            "sources = [\"call_log\"]\n[when]\nnumber_source_not = [\"application\"]",
            "may not test number_source",
        ),
        (
            "relations = [\"unknown\"]",
            "\"unknown\" cannot make a call breach",
        ),
        ("", "needs `sources` or `relations`"),
        ("sources = []", "an empty list"),
        ("sources = [\"facebook\"]", "unknown number source"),
        (
            "sources = [\"call_log\"]\nkey = [\"phone\"]",
            "keeps calls by debtor",
        ),
    ] {
        let e = compile(&format!("{base}{extra}")).unwrap_err();
        assert!(e.contains(says), "{extra}: {e}");
    }
}

/// The generated contact book holds every number the generated traffic calls, with the
/// relation and source the calls say (what the enrichment benchmark relies on).
#[test]
fn the_generated_book_covers_the_generated_traffic() {
    use dialguard::synth::{contact_book, generate, SynthParams};
    let p = SynthParams {
        calls: 3000,
        debtors: 60,
        ..Default::default()
    };
    let (mut calls, mut book) = (Vec::new(), Vec::new());
    generate(&p, &mut calls).unwrap();
    let n = contact_book(&p, &mut book).unwrap();
    let mut rdec = dialguard::reference::ReferenceDecoder::new(phonenumber::country::Id::CN);
    let mut engine = Engine::new(contact_rules(), EngineSettings::default());
    let mut none = Vec::new();
    for l in String::from_utf8(book).unwrap().lines() {
        match rdec.decode_line(l.as_bytes()).unwrap() {
            dialguard::reference::Reference::Contact(c) => {
                engine.apply_contact(c, &mut none).unwrap();
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(engine.contacts().len() as u64, n);
    assert!(n > 60 * 2, "{n} contacts");
    let mut dec = dialguard::codec::Decoder::new(Default::default());
    for l in String::from_utf8(calls).unwrap().lines() {
        let c = dec.decode(l.as_bytes(), Ts(i64::MAX)).unwrap();
        let f = engine
            .contacts()
            .get(&c.debtor_id, &c.phone)
            .unwrap_or_else(|| panic!("{} {} not in the book", c.debtor_id, c.phone));
        assert_eq!(
            (f.relation, Some(f.source)),
            (c.relation, c.number_source),
            "{l}"
        );
        assert!(f.from < c.occurred_at);
    }
}

// ---------------------------------------------------------------- in `run`, on the mock cluster

use crate::service::{start, wait_done, Kafka, PATIENCE};
use crate::statuses::{alerts, publish, wait_for_alerts};
use std::time::{Duration, Instant};

const FIXTURE: &str = "tests/fixtures/pack-contact-list-abuse";

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

/// A contact line and its topic key, `<debtor_id>/<phone in E.164>`.
fn keyed(line: &str) -> (String, String) {
    match dialguard::reference::ReferenceDecoder::new(phonenumber::country::Id::CN)
        .decode_line(line.as_bytes())
        .unwrap()
    {
        dialguard::reference::Reference::Contact(c) => {
            (format!("{}/{}", c.debtor_id, c.phone), line.to_owned())
        }
        other => panic!("{other:?}"),
    }
}

fn wait_metric(svc: &crate::service::Running, line: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let page = svc.handles.metrics.render();
        if page.contains(line) {
            return;
        }
        assert!(Instant::now() < deadline, "no {line}: {page}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The contact book from its topic in `run`: read before readiness, it fills in calls that
/// lack a relation or a number source and the contact rule judges them from it; a contact
/// published after calls flags them late; a tombstone withdraws one; an invalid record goes
/// to the dead-letter topic; the check API judges candidates from it; a restart reads it
/// again, and publishes nothing twice.
#[test]
fn the_contact_book_from_its_topic_fills_and_flags_calls_in_run() {
    let kafka = Kafka::new("contacts");
    let topic = format!("contacts.{}", kafka.tag);
    kafka.create_topic(&topic, 2);
    let book: Vec<(String, String)> = fixture("reference.jsonl")
        .iter()
        .map(|l| keyed(l))
        .collect();
    let (later, before): (Vec<_>, Vec<_>) =
        book.iter().partition(|(k, _)| k == "D2/+8613600000002");
    let bad = r#"{"debtor_id":"D2","phone":"+8613600000009","relation":"cousin","number_source":"call_log","from":"2026-11-01T00:00:00Z"}"#;
    let mut records: Vec<(&str, Option<&str>)> = before
        .iter()
        .map(|(k, v)| (k.as_str(), Some(v.as_str())))
        .collect();
    records.push(("D2/+8613600000009", Some(bad)));
    publish(&kafka, &topic, &records);

    let settings = || {
        let mut s = kafka.settings(&format!("{FIXTURE}/policy.toml"));
        s.reference.contacts_topic = Some(topic.clone());
        s
    };
    let svc = start(settings());
    let calls: Vec<Vec<u8>> = fixture("events.jsonl")
        .into_iter()
        .map(String::into_bytes)
        .collect();
    kafka.produce(&calls);
    wait_done(&kafka, &[&svc]);
    let got = wait_for_alerts(&kafka, 4);
    for (r, c) in [
        ("cla-third-parties-per-debtor", "k5"),
        ("cla-device-contact-number", "h0"),
        ("cla-device-contact-number", "h4"),
    ] {
        assert_eq!(
            got.get(&(r.into(), c.into())),
            Some(&(1, false)),
            "{r} {c}: {got:?}"
        );
    }
    // q0–q3 call one number about four debtors, keyed to the partitions of their debtors: q3
    // breaches once, flagged late when a partition delivers an earlier one of them after it
    // (partitions are not read in step; seen once in CI, 2026-12-06).
    assert_eq!(
        got.get(&("cla-debtors-per-number".into(), "q3".into()))
            .map(|v| v.0),
        Some(1),
        "{got:?}"
    );
    assert_eq!(got.len(), 4, "{got:?}");
    let h0 = kafka
        .read_all(&kafka.alerts())
        .into_iter()
        .map(|r| serde_json::from_slice::<serde_json::Value>(&r.payload).unwrap())
        .find(|a| a["call_id"] == "h0")
        .unwrap();
    assert_eq!(
        h0["relation"], "contact_list",
        "filled in from the book: {h0}"
    );
    assert_eq!(h0["contact"]["number_source"], "device_contacts", "{h0}");

    // The pre-dial check fills a candidate in from the same book.
    let addr = svc.handles.check_addr.expect("the check API is served");
    let (code, v) = crate::check_api::check(
        addr,
        &serde_json::json!({"call_id": "k-1", "occurred_at": "2026-11-05T10:00:00+08:00",
            "debtor_id": "D2", "phone": "13600000001", "relation": "unknown"}),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(
        v["breaches"][0]["rule_id"], "cla-device-contact-number",
        "{v}"
    );
    assert_eq!(
        v["breaches"][0]["contact"]["relation"], "contact_list",
        "{v}"
    );

    // A contact published after the call it completes flags it late.
    publish(
        &kafka,
        &topic,
        &later
            .iter()
            .map(|(k, v)| (k.as_str(), Some(v.as_str())))
            .collect::<Vec<_>>(),
    );
    let got = wait_for_alerts(&kafka, 5);
    assert_eq!(
        got.get(&("cla-device-contact-number".into(), "h1".into())),
        Some(&(1, true)),
        "{got:?}"
    );

    // A tombstone withdraws a contact: a call to that number, its event silent, is not flagged.
    publish(&kafka, &topic, &[("D2/+8613600000001", None)]);
    wait_metric(
        &svc,
        "dialguard_reference_records_total{kind=\"contact\",result=\"withdrawn\"} 1",
    );
    kafka.produce(&[br#"{"call_id": "h6", "occurred_at": "2026-11-06T10:00:00+08:00", "debtor_id": "D2", "phone": "13600000001", "relation": "unknown"}"#.to_vec()]);
    wait_done(&kafka, &[&svc]);
    let page = svc.handles.metrics.render();
    for line in [
        "dialguard_reference_records_total{kind=\"contact\",result=\"applied\"} 4",
        "dialguard_reference_records_total{kind=\"contact\",result=\"rejected\"} 1",
        "dialguard_contacts_known 3",
    ] {
        assert!(page.contains(line), "{line}: {page}");
    }
    svc.stop();
    assert!(!alerts(&kafka).contains_key(&("cla-device-contact-number".into(), "h6".into())));

    // The invalid record is in the dead-letter topic, naming the contacts topic as its source.
    let dlq = kafka.read_all(&kafka.dlq());
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].headers["dialguard.reason"], "unknown_value");
    assert_eq!(dlq[0].headers["dialguard.source.topic"], topic);

    // A restart reads the book again (compaction keeps the tombstone's withdrawal): a call to
    // the call-log number is flagged on time, and nothing is published twice.
    let svc = start(settings());
    kafka.produce(&[br#"{"call_id": "h7", "occurred_at": "2026-11-07T10:00:00+08:00", "debtor_id": "D2", "phone": "13600000002", "relation": "unknown"}"#.to_vec()]);
    wait_done(&kafka, &[&svc]);
    let got = wait_for_alerts(&kafka, 6);
    assert_eq!(
        got.get(&("cla-device-contact-number".into(), "h7".into())),
        Some(&(1, false)),
        "{got:?}"
    );
    svc.stop();
    let got = alerts(&kafka);
    let twice: Vec<_> = got.iter().filter(|(_, v)| v.0 > 1).collect();
    assert!(twice.is_empty(), "published twice: {twice:?}");
}

/// The Contact v1 schema and the decoder agree: the fixtures' contacts have the members the
/// schema requires and no others, and the schema's enums are the decoder's.
#[test]
fn the_contact_schema_describes_what_the_decoder_reads() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("docs/schemas/contact.schema.json")).unwrap(),
    )
    .unwrap();
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(&schema["properties"]["relation"]),
        Relation::ALL
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        names(&schema["properties"]["number_source"]),
        NumberSource::ALL
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect::<Vec<_>>()
    );
    let mut n = 0;
    for dir in ["pack-contact-list-abuse", "pack-cn-cba-2026-status"] {
        let mut dec = dialguard::reference::ReferenceDecoder::new(phonenumber::country::Id::CN);
        let text = std::fs::read_to_string(
            root.join("tests/fixtures")
                .join(dir)
                .join("reference.jsonl"),
        )
        .unwrap();
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object().unwrap();
            if o.contains_key("status_id") {
                continue;
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
            assert!(
                matches!(
                    dec.decode_line(l.as_bytes()),
                    Ok(dialguard::reference::Reference::Contact(_))
                ),
                "{l}"
            );
            n += 1;
        }
    }
    assert!(n >= 6, "{n}");
}

/// An alert says which of the fields it shows the contact book supplied (`from_contact_book`):
/// the debtor a mapping left to the book, and a relation the event did not know — for the call
/// being judged and for an earlier one a late call pushes over a limit, after a snapshot and
/// restore too. A call that names its debtor and relation shows none.
#[test]
fn an_alert_says_which_of_its_fields_the_contact_book_supplied() {
    use dialguard::alert::{render, write_alert_json};
    use dialguard::judge::{judge, Outcome};
    let rules = crate::support::rules_from_toml(
        r#"
[[rules]]
id = "one-a-day"
kind = "cap"
severity = "low"
key = ["phone"]
window = "1d"
limit = 1
"#,
        "Asia/Shanghai",
    );
    let settings = EngineSettings {
        contacts_by_number: true,
        ..EngineSettings::default()
    };
    let mut e = Engine::new(rules.clone(), settings.clone());
    let mut out = Vec::new();
    e.apply_contact(
        Contact {
            debtor_id: "d0".into(),
            phone: phone(0).into(),
            relation: Relation::SelfDebtor,
            source: NumberSource::DebtorProvided,
            consent: false,
            from: Ts(BASE),
        },
        &mut out,
    )
    .unwrap();
    let at = |id: &str, hour: i64, debtor: &str, relation: Relation| {
        Call::new(id, Ts(BASE + hour * HOUR), debtor, &phone(0), relation)
    };
    let fields = |call: &Call, out: &[dialguard::engine::breach::Breach]| -> Vec<String> {
        assert_eq!(out.len(), 1, "{out:?}");
        let a = render(&rules, &out[0], call, Ts(BASE));
        let mut bytes = Vec::new();
        write_alert_json(
            &rules,
            &out[0],
            call,
            Ts(BASE),
            &mut bytes,
            &mut String::new(),
        );
        let mut serde = Vec::new();
        a.write_json(&mut serde);
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            String::from_utf8_lossy(&serde)
        );
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v.get("from_contact_book").is_none(),
            a.from_contact_book.is_empty(),
            "{v}"
        );
        a.from_contact_book.iter().map(|s| s.to_string()).collect()
    };

    // Left to the book: its debtor and relation are the book's.
    let mut found = at("found", 2, "", Relation::Unknown);
    assert!(matches!(
        judge(&mut e, 0, &mut found, &mut out),
        Outcome::Accepted { .. }
    ));
    assert!(out.is_empty());
    // The earlier call's record keeps what the book supplied, through a snapshot.
    let book = e.take_contacts();
    let mut e = Engine::from_snapshot(rules.clone(), settings, &e.snapshot()).unwrap();
    e.set_contacts(book);
    // A call an hour before it, naming debtor and relation, arrives late: the earlier call
    // (by arrival) is the second that day, and breaches.
    let mut named = at("named", 1, "d0", Relation::SelfDebtor);
    assert!(matches!(
        judge(&mut e, 0, &mut named, &mut out),
        Outcome::Accepted { .. }
    ));
    assert!(out[0].late);
    assert_eq!(fields(&named, &out), ["debtor_id", "relation"]);
    out.clear();
    // The call being judged: named, nothing from the book.
    let mut third = at("third", 3, "d0", Relation::SelfDebtor);
    judge(&mut e, 0, &mut third, &mut out);
    assert_eq!(fields(&third, &out), Vec::<String>::new());
    out.clear();
    // Named debtor, relation unknown to the dialer: only the relation is the book's.
    let mut fourth = at("fourth", 4, "d0", Relation::Unknown);
    judge(&mut e, 0, &mut fourth, &mut out);
    assert_eq!(fields(&fourth, &out), ["relation"]);
    out.clear();
    let mut fifth = at("fifth", 5, "", Relation::Unknown);
    judge(&mut e, 0, &mut fifth, &mut out);
    assert_eq!(fields(&fifth, &out), ["debtor_id", "relation"]);
}
