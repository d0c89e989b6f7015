//! Dialers' own records: Asterisk CDRs, FreeSWITCH JSON CDRs and VICIdial `vicidial_log` rows,
//! read through a `[mapping]` (`tests/fixtures/cdr/<dialer>/`: `policy.toml`, the records as
//! the dialer writes them, `expected.jsonl` alerts and `rejects.jsonl` refusals).

use dialguard::codec::{self, DecodeSettings, Decoder};
use dialguard::config::Settings;
use dialguard::engine::event::Call;
use dialguard::engine::time::Ts;
use dialguard::engine::Engine;
use dialguard::formats::{render, Format, Mapping};
use dialguard::judge::{self, Outcome};
use dialguard::synth::Rng;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

const NOW: i64 = 1_893_456_000_000_000_000; // 2030-01-01

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cdr")
}

fn settings(dir: &Path) -> Settings {
    Settings::load_with_env(&dir.join("policy.toml"), Some(HashMap::new()))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// The record files of a fixture, in name order.
fn record_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            !matches!(
                n.as_ref(),
                "policy.toml" | "expected.jsonl" | "rejects.jsonl"
            )
        })
        .collect();
    v.sort();
    v
}

fn jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every fixture's records: the calls decoded and the refusals (file, line, reason).
fn decode_fixture(dir: &Path, s: &Settings) -> (Vec<Call>, Vec<(String, u64, String)>) {
    let mut dec = Decoder::new(s.decode.clone());
    let (mut calls, mut refused) = (Vec::new(), Vec::new());
    for f in record_files(dir) {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        for (i, line) in std::fs::read_to_string(&f).unwrap().lines().enumerate() {
            match judge::decode(&mut dec, line.as_bytes(), Ts(NOW)) {
                Ok(c) => calls.push(c),
                Err(r) => refused.push((name.clone(), i as u64 + 1, r.reason.to_string())),
            }
        }
    }
    (calls, refused)
}

fn judge_all(s: &Settings, calls: &[Call]) -> (Vec<serde_json::Value>, usize) {
    let mut engine = Engine::new(s.rules.clone(), s.engine.clone());
    let mut out = Vec::new();
    let mut duplicates = 0;
    for c in calls {
        if judge::judge_alerts(&mut engine, 0, &mut c.clone(), Ts(NOW), &mut out)
            == Outcome::Duplicate
        {
            duplicates += 1;
        }
    }
    let alerts = out
        .iter()
        .map(|a| serde_json::to_value(a).unwrap())
        .collect();
    (alerts, duplicates)
}

/// From each dialer's records to alerts: the breaches the fixture pins, in order, whatever
/// order the records arrive in; every record the mapping cannot complete refused with the
/// reason the fixture names; the legs of one call counted once.
#[test]
fn each_dialers_records_give_the_expected_alerts_and_refusals() {
    let mut seen = 0;
    for dialer in ["asterisk", "freeswitch", "vicidial"] {
        let dir = root().join(dialer);
        let s = settings(&dir);
        let (calls, refused) = decode_fixture(&dir, &s);
        let want: Vec<(String, u64, String)> = jsonl(&dir.join("rejects.jsonl"))
            .iter()
            .map(|r| {
                (
                    r["file"].as_str().unwrap().to_owned(),
                    r["line"].as_u64().unwrap(),
                    r["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(refused, want, "{dialer}: refusals");
        let (got, duplicates) = judge_all(&s, &calls);
        let expected = jsonl(&dir.join("expected.jsonl"));
        assert_eq!(got.len(), expected.len(), "{dialer}: {got:#?}");
        for (g, e) in got.iter().zip(&expected) {
            for (k, v) in e.as_object().unwrap() {
                assert_eq!(&g[k], v, "{dialer}: field {k} of {g}");
            }
            // What the CDR lacks is not invented: the relation stays unknown (no book here).
            assert_eq!(g["relation"], "unknown", "{dialer}: {g}");
        }
        if dialer != "freeswitch" {
            // Asterisk's parallel-dial legs share a linkedid; VICIdial's CDC update of a row
            // has its uniqueid: one attempt each. (FreeSWITCH's b-leg is refused instead.)
            assert_eq!(duplicates, 1, "{dialer}");
        }
        let set = |v: &[serde_json::Value]| -> BTreeSet<(String, String)> {
            v.iter()
                .map(|a| (a["rule_id"].to_string(), a["call_id"].to_string()))
                .collect()
        };
        // In any arrival order (within the allowed lateness, widened here to the fixture's
        // span), the same breaches — the cooldown's too: a conversation on either leg of a
        // parallel dial starts it, whichever leg arrives first.
        let mut wide = s.clone();
        wide.engine.allowed_lateness = 86_400 * 1_000_000_000;
        let mut reversed = calls.clone();
        reversed.reverse();
        assert_eq!(set(&judge_all(&wide, &reversed).0), set(&got), "{dialer}");
        seen += 1;
    }
    assert_eq!(seen, 3);
}

/// The valid calls of `calls` records of generated traffic.
fn generated_calls(calls: u64, debtors: u64) -> Vec<Call> {
    let p = dialguard::synth::SynthParams {
        calls,
        debtors,
        ..Default::default()
    };
    let mut buf = Vec::new();
    dialguard::synth::generate(&p, &mut buf).unwrap();
    let mut dec = Decoder::new(DecodeSettings::default());
    String::from_utf8(buf)
        .unwrap()
        .lines()
        .filter_map(|l| dec.decode(l.as_bytes(), Ts(NOW)).ok())
        .collect()
}

/// The v1 rendering of a call (what `convert` writes) decodes to the same call.
fn round_trips(call: &Call) {
    let v1 = codec::encode(call);
    let mut dec = Decoder::new(DecodeSettings::default());
    let back = dec
        .decode(v1.as_bytes(), Ts(NOW))
        .unwrap_or_else(|e| panic!("v1 refuses what an adapter accepted ({e}): {v1}"));
    assert_eq!(&back, call, "{v1}");
}

/// Decoder property: any record an adapter accepts — the fixtures, the same calls rendered in
/// every format, and thousands of mutations of both (quotes, separators, digits, keys cut or
/// added) — is exactly the call its call event v1 rendering decodes to; nothing panics.
#[test]
fn any_record_an_adapter_accepts_re_encodes_to_the_same_call_event() {
    let mut rng = Rng::new(14);
    let zone = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
    let synth = generated_calls(400, 20);
    let pieces = [
        "\"",
        ",",
        "\"\"",
        "{",
        "}",
        ":",
        "=",
        ";",
        "%",
        "%2B",
        "0",
        "9",
        ".",
        " ",
        "-",
        "\\",
        "\"variables\":{}",
        "\"callflow\":[]",
        "null",
        "ANSWERED",
        "NA",
        "é",
    ];
    let mut accepted = 0;
    for (dialer, format) in [
        ("asterisk", Format::AsteriskCdrCsv),
        ("freeswitch", Format::FreeswitchJsonCdr),
        ("vicidial", Format::VicidialLog),
    ] {
        let fixture = settings(&root().join(dialer));
        let mut rendered = fixture.clone();
        rendered.raw_mapping = render::mapping_for(format, "Asia/Shanghai");
        rendered.set_format(format).unwrap();
        for s in [&fixture, &rendered] {
            let mut lines: Vec<String> = if std::ptr::eq(s, &fixture) {
                record_files(&root().join(dialer))
                    .iter()
                    .flat_map(|f| {
                        std::fs::read_to_string(f)
                            .unwrap()
                            .lines()
                            .map(str::to_owned)
                            .collect::<Vec<_>>()
                    })
                    .collect()
            } else {
                synth
                    .iter()
                    .map(|c| render::render(format, c, &zone))
                    .collect()
            };
            let base = lines.len();
            for _ in 0..3_000 {
                let pick = rng.below(base as u64) as usize;
                let t = rng.mutate(&lines[pick], &pieces);
                lines.push(t);
            }
            let mut dec = Decoder::new(s.decode.clone());
            for l in &lines {
                if let Ok(call) = dec.decode(l.as_bytes(), Ts(NOW)) {
                    round_trips(&call);
                    accepted += 1;
                }
            }
        }
    }
    assert!(accepted > 3_000, "only {accepted} records accepted");
}

/// The same calls through each format keep what the format can carry: the attempt, debtor,
/// account, number, time (to the second where the format writes seconds) and outcome class;
/// Asterisk and FreeSWITCH records also purpose and consent (in the userfield, in channel
/// variables), VICIdial rows neither.
#[test]
fn calls_rendered_as_each_dialers_records_read_back_as_the_same_attempts() {
    let zone = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
    let mut calls = generated_calls(2_000, 50);
    // The generator writes no consent: a third of the calls get one.
    for c in calls.iter_mut().step_by(3) {
        c.consent = true;
    }
    assert!(
        calls.iter().any(|c| c.purpose.is_some()),
        "the traffic has purposes to carry"
    );
    for format in [
        Format::AsteriskCdrCsv,
        Format::FreeswitchJsonCdr,
        Format::VicidialLog,
    ] {
        let m = Mapping::new(format, &render::mapping_for(format, "Asia/Shanghai")).unwrap();
        let mut dec = Decoder::new(DecodeSettings {
            mapping: std::sync::Arc::new(m),
            ..DecodeSettings::default()
        });
        for c in &calls {
            let rec = render::render(format, c, &zone);
            let got = dec
                .decode(rec.as_bytes(), Ts(NOW))
                .unwrap_or_else(|e| panic!("{format}: {e}: {rec}"));
            assert_eq!(got.call_id, c.call_id, "{format}: {rec}");
            assert_eq!(got.debtor_id, c.debtor_id, "{format}");
            assert_eq!(got.phone, c.phone, "{format}");
            assert_eq!(got.relation.as_str(), "unknown");
            let secs = |t: Ts| t.0.div_euclid(1_000_000_000);
            assert_eq!(
                secs(got.occurred_at),
                secs(c.occurred_at),
                "{format}: {rec}"
            );
            use dialguard::engine::event::CallOutcome::{Conversation, WrongNumber};
            // Asterisk and FreeSWITCH tell an answer by billsec, which only a conversation has
            // here; VICIdial's status says it.
            let answered = match format {
                Format::VicidialLog => matches!(c.outcome, Some(Conversation | WrongNumber)),
                _ => c.outcome == Some(Conversation),
            };
            assert_eq!(
                got.outcome == Some(Conversation),
                answered,
                "{format}: {:?} became {:?}: {rec}",
                c.outcome,
                got.outcome
            );
            if format != Format::VicidialLog {
                assert_eq!(got.account_id, c.account_id, "{format}");
                assert_eq!(got.purpose, c.purpose, "{format}: {rec}");
                assert_eq!(got.consent, c.consent, "{format}: {rec}");
            } else {
                assert_eq!((got.purpose, got.consent), (None, false));
            }
            assert_eq!(got.agency_id, c.agency_id, "{format}");
        }
    }
}

/// A fresh directory for one test's files, removed when dropped (each run had left three
/// behind in the temporary directory).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

fn scratch(what: &str) -> Scratch {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!(
        "dialguard-formats-{what}-{}-{n}",
        std::process::id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    Scratch(d)
}

fn invalid(text: &str) -> (String, String) {
    let dir = scratch("mapping");
    let p = dir.join(format!("c{}.toml", text.len()));
    std::fs::write(
        &p,
        format!("[[rules]]\nid = \"r\"\nkind = \"cap\"\nseverity = \"low\"\nkey = [\"debtor_id\"]\nwindow = \"1d\"\nlimit = 1\n{text}"),
    )
    .unwrap();
    match Settings::load_with_env(&p, Some(HashMap::new())) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => (e.key().unwrap_or("").to_owned(), e.to_string()),
    }
}

/// A mapping that cannot work fails at start, naming the key and why.
#[test]
fn mapping_mistakes_fail_fast_naming_the_key() {
    let cases = [
        (
            "[kafka]\ninput_format = \"asterisk-csv\"",
            "kafka.input_format",
            "asterisk-cdr-csv",
        ),
        (
            "[kafka]\ninput_format = \"asterisk-cdr-csv\"\n[mapping]\ntimezone = \"UTC\"",
            "mapping.debtor_id",
            "required",
        ),
        (
            "[kafka]\ninput_format = \"asterisk-cdr-csv\"\n[mapping]\ndebtor_id = \"userfield\"\ntimezone = \"UTC\"",
            "mapping.debtor_id",
            "loguserfield",
        ),
        (
            "[kafka]\ninput_format = \"asterisk-cdr-csv\"\n[mapping]\ndebtor_id = \"accountcode\"",
            "mapping.timezone",
            "usegmtime",
        ),
        (
            "[kafka]\ninput_format = \"vicidial-log\"\n[mapping]\ntimezone = \"Mars/Base\"",
            "mapping.timezone",
            "unknown time zone",
        ),
        (
            "[kafka]\ninput_format = \"vicidial-log\"\n[mapping]\ntimezone = \"UTC\"\n[mapping.outcomes]\nPTP = \"promise\"",
            "mapping.outcomes.PTP",
            "conversation",
        ),
        (
            "[kafka]\ninput_format = \"vicidial-log\"\n[mapping]\ntimezone = \"UTC\"\ndebtor_id = \"vendor_lead_code\"",
            "mapping.debtor_id",
            "mapping.columns",
        ),
        (
            "[kafka]\ninput_format = \"freeswitch-json-cdr\"\n[mapping]\ndebtor_id = \"vars.debtor\"",
            "mapping.debtor_id",
            "variables.NAME",
        ),
        (
            "[kafka]\ninput_format = \"freeswitch-json-cdr\"\n[mapping]\ndebtor_id = \"variables.d\"\nb_legs = \"maybe\"",
            "mapping.b_legs",
            "skip or count",
        ),
        (
            "[kafka]\ninput_format = \"freeswitch-json-cdr\"\n[mapping]\ndebtor_id = [\"@contact_book\", \"variables.d\"]",
            "mapping.debtor_id",
            "must be the last place",
        ),
        (
            "[kafka]\ninput_format = \"freeswitch-json-cdr\"\n[mapping]\ndebtor_id = \"variables.d\"\naccount_id = \"@contact_book\"",
            "mapping.account_id",
            "finds only a debtor_id",
        ),
        (
            "[kafka]\ninput_format = \"vicidial-log\"\n[mapping]\ntimezone = \"UTC\"\nloguniqueid = true",
            "mapping.loguniqueid",
            "Asterisk",
        ),
        (
            "[kafka]\ninput_format = \"vicidial-log\"\n[mapping]\ntimezone = \"UTC\"\nurl_encoded = false",
            "mapping.url_encoded",
            "FreeSWITCH",
        ),
        (
            "[kafka]\ninput_format = \"freeswitch-json-cdr\"\n[mapping]\ndebtor_id = \"variables.d\"\ndirection = \"=sideways\"",
            "mapping.direction",
            "outbound or inbound",
        ),
        (
            "[kafka]\ninput_format = \"freeswitch-json-cdr\"\n[mapping]\ndebtor_id = \"variables.d\"\npurpose = \"=collection\"",
            "mapping.purpose",
            "return_call",
        ),
        (
            "[kafka]\ninput_format = \"freeswitch-json-cdr\"\n[mapping]\ndebtor_id = \"variables.d\"\nconsent = \"=maybe\"",
            "mapping.consent",
            "yes/no",
        ),
        // Several inputs: each names its own topic, format and mapping.
        (
            "[[kafka.inputs]]\ntopic = \"a\"\n[[kafka.inputs]]\ntopic = \"b\"\nformat = \"vicidial-log\"\n[kafka.inputs.mapping]\ntimezone = \"Mars/Base\"",
            "kafka.inputs[1].mapping.timezone",
            "unknown time zone",
        ),
        (
            "[[kafka.inputs]]\ntopic = \"a\"\nformat = \"cdr\"",
            "kafka.inputs[0].format",
            "asterisk-cdr-csv",
        ),
        (
            "[[kafka.inputs]]\ntopic = \"a\"\n[[kafka.inputs]]\ntopic = \"a\"\nformat = \"vicidial-log\"",
            "kafka.inputs[1].topic",
            "already an input",
        ),
        (
            "[kafka]\ninput_topic = \"a\"\n[[kafka.inputs]]\ntopic = \"b\"",
            "kafka.input_topic",
            "beside [[kafka.inputs]]",
        ),
        (
            "[mapping]\ntimezone = \"UTC\"\n[[kafka.inputs]]\ntopic = \"b\"",
            "mapping",
            "beside [[kafka.inputs]]",
        ),
        (
            "[kafka]\nalerts_topic = \"b\"\n[[kafka.inputs]]\ntopic = \"a\"\n[[kafka.inputs]]\ntopic = \"b\"",
            "kafka.alerts_topic",
            "also an input topic",
        ),
        (
            "[reference]\ncontacts_topic = \"b\"\n[[kafka.inputs]]\ntopic = \"a\"\n[[kafka.inputs]]\ntopic = \"b\"",
            "reference.contacts_topic",
            "also an input topic",
        ),
        (
            "[kafka.client]\n\"partition.assignment.strategy\" = \"roundrobin\"\n[[kafka.inputs]]\ntopic = \"a\"\n[[kafka.inputs]]\ntopic = \"b\"",
            "kafka.client.partition.assignment.strategy",
            "range assignment",
        ),
        (
            "[kafka.client]\n\"statistics.interval.ms\" = 0\n[[kafka.inputs]]\ntopic = \"a\"\n[[kafka.inputs]]\ntopic = \"b\"",
            "kafka.client.statistics.interval.ms",
            "statistics",
        ),
    ];
    for (text, key, why) in cases {
        let (k, msg) = invalid(text);
        assert_eq!(k, key, "{text}: {msg}");
        assert!(msg.contains(why), "{text}: {msg}");
    }
}

/// `dialguard convert` writes the call events it understood and the records it refused with
/// their reasons; `check-config` prints the effective mapping.
#[test]
fn convert_writes_call_events_and_refusals_and_check_config_prints_the_mapping() {
    let dir = scratch("convert");
    let rejects = dir.join("rejects.jsonl");
    let fixture = root().join("asterisk");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dialguard"))
        .args(["convert", "--config"])
        .arg(fixture.join("policy.toml"))
        .arg("--input")
        .arg(fixture.join("Master.csv"))
        .arg("--rejects")
        .arg(&rejects)
        .args(["--now", "2030-01-01T00:00:00Z"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let events: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 5);
    assert_eq!(events[0]["debtor_id"], "D1");
    assert_eq!(events[0]["occurred_at"], "2026-11-02T01:00:00Z");
    assert_eq!(events[1]["outcome"], "conversation");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("converted 5 records, refused 3"),
        "{stderr}"
    );
    let refused = jsonl(&rejects);
    assert_eq!(refused.len(), 3);
    assert!(refused[0]["detail"]
        .as_str()
        .unwrap()
        .contains("userfield:debtor"));

    let shown = std::process::Command::new(env!("CARGO_BIN_EXE_dialguard"))
        .args(["check-config", "--config"])
        .arg(fixture.join("policy.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("input format: asterisk-cdr-csv"), "{text}");
    assert!(text.contains("debtor_id    <- userfield:debtor"), "{text}");
    assert!(
        text.contains("CONGESTION               -> not_in_service"),
        "{text}"
    );
    assert!(text.contains("local times in Asia/Shanghai"), "{text}");
}

const BOOK_FIXTURE: &str = "tests/fixtures/cdr/asterisk-contact-book";

/// What every path must make of the contact-book fixture's rows: the debtor of the rows the
/// dialer left without one is the one whose book holds the number then; a number in two
/// debtors' books, or in none yet, is refused naming why.
fn assert_book_fixture(alerts: &[serde_json::Value], refused: &[(String, String)]) {
    let got: BTreeSet<(String, String, String)> = alerts
        .iter()
        .map(|a| {
            (
                a["rule_id"].as_str().unwrap().to_owned(),
                a["call_id"].as_str().unwrap().to_owned(),
                a["debtor_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String, String)> = [
        // The third call that day to D7's own number: D7's, found by the number.
        ("cb-two-a-day", "1793584800.3", "D7"),
        // A number from D7's device contacts: the book names the debtor and the source.
        ("cb-device-contact", "1793583000.2", "D7"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(got, want, "{alerts:#?}");
    // Each alert says the book supplied its debtor and relation (the rows name neither).
    for a in alerts {
        assert_eq!(
            a["from_contact_book"],
            serde_json::json!(["debtor_id", "relation"]),
            "{a}"
        );
    }
    let mut refused = refused.to_vec();
    refused.sort();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused[0].0 == "1793586600.4"
            && refused[0].1.contains("missing_field")
            && refused[0].1.contains("in 2 debtors' contact books"),
        "{refused:?}"
    );
    assert!(
        refused[1].0 == "1793588400.5"
            && refused[1].1.contains("missing_field")
            && refused[1]
                .1
                .contains("no debtor's contact book holds the dialled number"),
        "{refused:?}"
    );
}

/// The uniqueid of one of the fixture's Asterisk rows: its first field written as one is
/// (`"<epoch seconds>.<sequence>"`).
fn uniqueid(row: &str) -> String {
    row.split(',')
        .map(|f| f.trim_matches('"'))
        .find(|f| {
            f.split_once('.').is_some_and(|(a, b)| {
                a.len() == 10
                    && [a, b]
                        .iter()
                        .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
            })
        })
        .unwrap_or_else(|| panic!("no uniqueid in {row}"))
        .to_owned()
}

/// A mapping whose `debtor_id` ends in `@contact_book`: in `replay`, a row without a debtor
/// gets the one debtor whose contact book holds the dialled number at the call's time, and
/// the book then fills in its relation and number source; a row naming its debtor keeps it
/// whatever the book says; a number in several books, or in none yet, is refused. `convert`
/// fills in the same debtors from `--reference`, and refuses those rows without it.
#[test]
fn a_debtor_the_mapping_leaves_to_the_contact_book_is_found_by_the_dialled_number() {
    let dir = scratch("book");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join(BOOK_FIXTURE);
    let (alerts, rejects) = (dir.join("alerts.jsonl"), dir.join("rejects.jsonl"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dialguard"))
        .args(["replay", "--config"])
        .arg(fixture.join("policy.toml"))
        .arg("--input")
        .arg(fixture.join("Master.csv"))
        .arg("--reference")
        .arg(fixture.join("reference.jsonl"))
        .arg("--alerts")
        .arg(&alerts)
        .arg("--rejects")
        .arg(&rejects)
        .args(["--now", "2030-01-01T00:00:00Z"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let got = jsonl(&alerts);
    let refused: Vec<(String, String)> = jsonl(&rejects)
        .iter()
        .map(|r| {
            let row = r["record"].as_str().unwrap();
            (uniqueid(row), format!("{} {}", r["reason"], r["detail"]))
        })
        .collect();
    assert_book_fixture(&got, &refused);
    let contact = got
        .iter()
        .find(|a| a["rule_id"] == "cb-device-contact")
        .unwrap();
    assert_eq!(
        contact["relation"], "contact_list",
        "filled in by the book: {contact}"
    );
    assert_eq!(
        contact["contact"]["number_source"], "device_contacts",
        "{contact}"
    );

    let convert = |reference: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dialguard"));
        cmd.args(["convert", "--config"])
            .arg(fixture.join("policy.toml"))
            .arg("--input")
            .arg(fixture.join("Master.csv"))
            .args(["--now", "2030-01-01T00:00:00Z"]);
        if reference {
            cmd.arg("--reference").arg(fixture.join("reference.jsonl"));
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let events: Vec<(String, String, String)> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["call_id"].as_str().unwrap().to_owned(),
                    v["debtor_id"].as_str().unwrap().to_owned(),
                    v["relation"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        (events, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (events, stderr) = convert(true);
    let e = |c: &str, d: &str| (c.to_owned(), d.to_owned(), "unknown".to_owned());
    // Only the debtor is filled in: the relation stays as the record says it.
    assert_eq!(
        events,
        [
            e("1793581200.1", "D7"),
            e("1793583000.2", "D7"),
            e("1793584800.3", "D7"),
            e("1793590200.6", "D8")
        ],
        "{stderr}"
    );
    assert!(stderr.contains("refused 2: missing_field 2"), "{stderr}");
    let (events, stderr) = convert(false);
    assert_eq!(events, [e("1793590200.6", "D8")]);
    assert!(stderr.contains("refused 5: missing_field 5"), "{stderr}");
    assert!(
        stderr.contains("no --reference gives a contact book"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------- in `run`, on the mock cluster

use crate::service::{start, wait_done, Kafka};
use crate::statuses::wait_for_alerts;

/// `run` reads Asterisk's CDR rows from the input topic: the fixture's alerts, each once, and
/// every row it cannot map in the dead-letter topic with its reason.
#[test]
fn run_reads_asterisk_cdrs_from_kafka_and_dead_letters_what_it_cannot_map() {
    let kafka = Kafka::new("asterisk-cdrs");
    let fixture = "tests/fixtures/cdr/asterisk";
    let svc = start(kafka.settings(&format!("{fixture}/policy.toml")));
    // Keyed by debtor, as the README asks of CDR producers: a debtor's rows on one partition,
    // in the order Asterisk wrote them (its legs too).
    let text = std::fs::read_to_string(root().join("asterisk/Master.csv")).unwrap();
    let rows = asterisk_rows_by_debtor(&text);
    let keyed: Vec<(&str, Option<&str>)> =
        rows.iter().map(|(k, l)| (k.as_str(), Some(*l))).collect();
    crate::statuses::publish(&kafka, &kafka.input(), &keyed);
    wait_done(&kafka, &[&svc]);
    let got = wait_for_alerts(&kafka, 2);
    for r in ["ast-two-a-day", "ast-after-conversation"] {
        assert_eq!(
            got.get(&(r.into(), "1793584800.4".into())),
            Some(&(1, false)),
            "{got:?}"
        );
    }
    assert_eq!(got.len(), 2, "{got:?}");
    let mut reasons: Vec<String> = kafka
        .read_all(&kafka.dlq())
        .iter()
        .map(|r| r.headers["dialguard.reason"].clone())
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["bad_value", "missing_field", "unknown_value"]);
    // The row with no account (D3's) could not be judged by the per-account rule: counted.
    let page = svc.handles.metrics.render();
    assert_eq!(
        crate::service::metric_with(
            &page,
            "dialguard_rule_skipped_total",
            "rule=\"ast-per-account\""
        ),
        1.0,
        "{page}"
    );
    assert!(
        page.contains("dialguard_rule_skipped_total{rule=\"ast-two-a-day\"} 0"),
        "every rule's series is exposed from the start: {page}"
    );
    svc.stop();
}

/// `run` finds the debtor of an Asterisk row that names none in the contact book read from
/// its topic, as replay does (the same alerts, the same refusals, in the dead-letter topic);
/// a mapping that leaves debtors to the book with no contacts topic is refused at start.
#[test]
fn run_finds_debtors_in_the_contact_book_from_its_topic() {
    let kafka = Kafka::new("asterisk-book");
    let topic = format!("contacts.{}", kafka.tag);
    kafka.create_topic(&topic, 1);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(BOOK_FIXTURE);
    let book = std::fs::read_to_string(root.join("reference.jsonl")).unwrap();
    let book: Vec<(String, String)> = book
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                format!(
                    "{}/{}",
                    v["debtor_id"].as_str().unwrap(),
                    v["phone"].as_str().unwrap()
                ),
                l.to_owned(),
            )
        })
        .collect();
    let keyed: Vec<(&str, Option<&str>)> = book
        .iter()
        .map(|(k, v)| (k.as_str(), Some(v.as_str())))
        .collect();
    crate::statuses::publish(&kafka, &topic, &keyed);

    let policy = format!("{BOOK_FIXTURE}/policy.toml");
    let err = dialguard::service::run(
        kafka.settings(&policy),
        dialguard::service::Shutdown::new(),
        false,
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("mapping.debtor_id") && err.contains("contacts_topic"),
        "{err}"
    );

    let settings = || {
        let mut s = kafka.settings(&policy);
        s.reference.contacts_topic = Some(topic.clone());
        s
    };
    let svc = start(settings());
    let text = std::fs::read_to_string(root.join("Master.csv")).unwrap();
    let rows: Vec<(String, &str)> = text.lines().map(|l| (uniqueid(l), l)).collect();
    let keyed: Vec<(&str, Option<&str>)> =
        rows.iter().map(|(k, l)| (k.as_str(), Some(*l))).collect();
    crate::statuses::publish(&kafka, &kafka.input(), &keyed);
    wait_done(&kafka, &[&svc]);
    wait_for_alerts(&kafka, 2);
    svc.stop();
    // After a restart that rebuilds from the input's history (no snapshot), the calls read
    // back find their debtor in the book again: a fourth call that day to D7's number is the
    // fourth of D7's, and nothing is published twice.
    let mut again = settings();
    again.kafka.snapshots_topic = None;
    let svc = start(again);
    let fourth = text
        .lines()
        .next()
        .unwrap()
        .replace("09:00:00", "12:00:00")
        .replace("1793581200.1", "1793592000.7");
    crate::statuses::publish(
        &kafka,
        &kafka.input(),
        &[("1793592000.7", Some(fourth.as_str()))],
    );
    wait_done(&kafka, &[&svc]);
    let got = wait_for_alerts(&kafka, 3);
    svc.stop();
    assert_eq!(
        got.get(&("cb-two-a-day".into(), "1793592000.7".into())),
        Some(&(1, false)),
        "{got:?}"
    );
    assert!(got.values().all(|v| v.0 == 1), "published twice: {got:?}");
    let alerts: Vec<serde_json::Value> = kafka
        .read_all(&kafka.alerts())
        .iter()
        .map(|r| serde_json::from_slice(&r.payload).unwrap())
        .filter(|a: &serde_json::Value| a["call_id"] != "1793592000.7")
        .collect();
    let refused: Vec<(String, String)> = kafka
        .read_all(&kafka.dlq())
        .iter()
        .map(|r| {
            let row = String::from_utf8_lossy(&r.payload).into_owned();
            (
                uniqueid(&row),
                format!(
                    "{} {}",
                    r.headers["dialguard.reason"], r.headers["dialguard.detail"]
                ),
            )
        })
        .collect();
    assert_book_fixture(&alerts, &refused);
}

/// In `run`, the answered leg of a parallel dial arriving after its unanswered leg and after
/// the next call still starts the cooldown: the next call's breach is published then, late.
#[test]
fn run_publishes_the_cooldown_an_answered_leg_starts_after_the_calls_it_cools() {
    let kafka = Kafka::new("asterisk-legs");
    let svc = start(kafka.settings("tests/fixtures/cdr/asterisk/policy.toml"));
    let text = std::fs::read_to_string(root().join("asterisk/Master.csv")).unwrap();
    let mut rows = asterisk_rows_by_debtor(&text);
    // Row 2 is the answered leg (1793583000.2), row 3 its unanswered twin, row 4 the next call
    // to D1: now the unanswered leg, the next call, then the answered leg.
    assert!(rows[1].1.contains("ANSWERED") && rows[2].1.contains("NO ANSWER"));
    let answered = rows.remove(1);
    rows.insert(3, answered);
    let keyed: Vec<(&str, Option<&str>)> =
        rows.iter().map(|(k, l)| (k.as_str(), Some(*l))).collect();
    crate::statuses::publish(&kafka, &kafka.input(), &keyed);
    wait_done(&kafka, &[&svc]);
    let got = wait_for_alerts(&kafka, 2);
    svc.stop();
    assert_eq!(
        got.get(&("ast-two-a-day".into(), "1793584800.4".into())),
        Some(&(1, false)),
        "{got:?}"
    );
    assert_eq!(
        got.get(&("ast-after-conversation".into(), "1793584800.4".into())),
        Some(&(1, true)),
        "{got:?}"
    );
    assert_eq!(got.len(), 2, "{got:?}");
}

/// Asterisk's rows, keyed by the debtor their userfield names (as the README asks of CDR
/// producers), in the order Asterisk wrote them.
fn asterisk_rows_by_debtor(text: &str) -> Vec<(String, &str)> {
    text.lines()
        .map(|l| {
            let key = l
                .split("debtor=")
                .nth(1)
                .and_then(|r| r.split([';', '"']).next())
                .unwrap_or("unknown");
            (key.to_owned(), l)
        })
        .collect()
}

/// One service reads two input topics, each in its own format (`[[kafka.inputs]]`): call events
/// v1 from one dialer, Asterisk rows from another. A debtor's calls from both count against the
/// same cap; refusals name the topic they came from; restarts in the middle restore the
/// windows of both topics (from a snapshot, then from their history) and publish nothing twice;
/// a check's `as_of` names each topic's partitions.
#[test]
fn run_reads_several_input_topics_each_in_its_own_format() {
    let mut kafka = Kafka::new("two-inputs");
    let cdrs = kafka.add_input("cdrs");
    let settings = || kafka.settings("tests/fixtures/cdr/two-inputs.toml");
    assert_eq!(settings().kafka.inputs.len(), 2);
    assert_eq!(settings().kafka.inputs[1].topic, cdrs);
    // 1. The Asterisk server's rows alone: D1's third attempt of the day (10:00 local, 5 min
    //    into the 2 h after its 09:30 conversation) breaches both rules.
    let svc = start(settings());
    let text = std::fs::read_to_string(root().join("asterisk/Master.csv")).unwrap();
    let rows = asterisk_rows_by_debtor(&text);
    let keyed: Vec<(&str, Option<&str>)> =
        rows.iter().map(|(k, l)| (k.as_str(), Some(*l))).collect();
    crate::statuses::publish(&kafka, &cdrs, &keyed);
    wait_done(&kafka, &[&svc]);
    let got = wait_for_alerts(&kafka, 2);
    assert_eq!(
        got.keys().cloned().collect::<Vec<_>>(),
        [
            ("ast-after-conversation".into(), "1793584800.4".into()),
            ("ast-two-a-day".into(), "1793584800.4".into())
        ],
        "{got:?}"
    );
    svc.stop();
    // 2. Stopped, then the other dialer's call events arrive: an earlier attempt to D1 that
    //    day (08:00 local), and a record that is not JSON. Restarted, the service restores D1's
    //    window (the snapshot taken at the stop) and finds that the 09:30 attempt was D1's
    //    third: a breach that needs both topics.
    let early = serde_json::json!({
        "call_id": "v1-early", "occurred_at": "2026-11-02T00:00:00Z", "debtor_id": "D1",
        "account_id": "ACC-1", "phone": "+8613800000001", "relation": "self",
        "outcome": "no_answer", "direction": "outbound", "channel": "voice", "agent_id": "agent-2"
    })
    .to_string();
    crate::statuses::publish(
        &kafka,
        &kafka.input(),
        &[("D1", Some(early.as_str())), ("D1", Some("{not json"))],
    );
    let svc = start(settings());
    wait_done(&kafka, &[&svc]);
    let got = wait_for_alerts(&kafka, 3);
    let want: Vec<(String, String)> = [
        ("ast-after-conversation", "1793584800.4"),
        ("ast-two-a-day", "1793583000.2"),
        ("ast-two-a-day", "1793584800.4"),
    ]
    .iter()
    .map(|(r, c)| (r.to_string(), c.to_string()))
    .collect();
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), want, "{got:?}");
    assert!(
        got.values().all(|(n, _)| *n == 1),
        "each alert once, across the restart: {got:?}"
    );
    // Refusals say which topic (and so which dialer) sent them.
    let mut refused: Vec<(String, String)> = kafka
        .read_all(&kafka.dlq())
        .iter()
        .map(|r| {
            (
                r.headers["dialguard.source.topic"].clone(),
                r.headers["dialguard.reason"].clone(),
            )
        })
        .collect();
    refused.sort();
    let mut expected = vec![
        (cdrs.clone(), "bad_value".to_owned()),
        (cdrs.clone(), "missing_field".to_owned()),
        (cdrs.clone(), "unknown_value".to_owned()),
        (kafka.input(), "not_json".to_owned()),
    ];
    expected.sort();
    assert_eq!(refused, expected);
    // A check reads the state of both inputs and names their partitions.
    let addr = svc.handles.check_addr.unwrap();
    let (code, v) = crate::check_api::check(
        addr,
        &serde_json::json!({"debtor_id": "D9", "phone": "+8613800000009", "relation": "self"}),
    );
    assert_eq!(code, 200, "{v}");
    let named: BTreeSet<String> = v["as_of"]["offsets"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let all: BTreeSet<String> = [kafka.input(), cdrs.clone()]
        .iter()
        .flat_map(|t| (0..crate::service::PARTITIONS).map(move |p| format!("{t}:{p}")))
        .collect();
    assert_eq!(named, all, "{v}");
    let page = svc.handles.metrics.render();
    assert_eq!(
        crate::service::metric_with(
            &page,
            "dialguard_snapshot_restores_total",
            "result=\"restored\""
        ),
        1.0,
        "{page}"
    );
    svc.stop();
    // 3. Stopped again; one more call event, at 11:00 local: D1's fifth attempt, 90 min after
    //    the 09:30 conversation. Restarted without snapshots, the service rebuilds the windows
    //    from both topics' history: the call breaches both rules only with the CDR rows read.
    let late = early
        .replace("v1-early", "v1-late")
        .replace("2026-11-02T00:00:00Z", "2026-11-02T03:00:00Z");
    crate::statuses::publish(&kafka, &kafka.input(), &[("D1", Some(late.as_str()))]);
    let mut s = settings();
    s.kafka.snapshots_topic = None;
    let svc = start(s);
    wait_done(&kafka, &[&svc]);
    let got = wait_for_alerts(&kafka, 5);
    assert_eq!(got.len(), 5, "{got:?}");
    for r in ["ast-two-a-day", "ast-after-conversation"] {
        assert_eq!(
            got.get(&(r.into(), "v1-late".into())),
            Some(&(1, false)),
            "{got:?}"
        );
    }
    assert!(got.values().all(|(n, _)| *n == 1), "{got:?}");
    svc.stop();
}

/// With several input topics, a partition end (which librdkafka reports without its topic) is
/// not taken for any one lane's; each topic's partitions are found at their end by their high
/// watermarks: those that never deliver anything, in either topic, turn idle and stop holding
/// state back, so calls a month old are evicted once a newer call arrives. (Taking the
/// partition end's number for a lane, as with one topic, fails this: tried.)
#[test]
fn several_inputs_let_their_quiet_partitions_turn_idle() {
    let mut kafka = Kafka::new("two-inputs-idle");
    kafka.add_input("cdrs");
    let mut s = kafka.settings("tests/fixtures/cdr/two-inputs.toml");
    s.kafka.idle_after = std::time::Duration::from_secs(1);
    s.kafka.snapshots_topic = None;
    let svc = start(s);
    let call = |id: &str, at: &str| {
        serde_json::json!({
            "call_id": id, "occurred_at": at, "debtor_id": "D1", "phone": "+8613800000001",
            "relation": "self", "outcome": "no_answer", "direction": "outbound",
            "channel": "voice", "agent_id": "agent-1"
        })
        .to_string()
    };
    let first = call("month-old", "2026-11-01T01:00:00Z");
    crate::statuses::publish(&kafka, &kafka.input(), &[("D1", Some(first.as_str()))]);
    wait_done(&kafka, &[&svc]);
    let retained = |svc: &crate::service::Running| {
        crate::service::metric(&svc.handles.metrics.render(), "dialguard_retained_calls")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while retained(&svc) != 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first call is retained"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Long enough for every partition at its end to turn idle (idle_after 1 s).
    std::thread::sleep(std::time::Duration::from_secs(4));
    let next = call("a-month-on", "2026-12-01T01:00:00Z");
    crate::statuses::publish(&kafka, &kafka.input(), &[("D1", Some(next.as_str()))]);
    wait_done(&kafka, &[&svc]);
    // The month-old call leaves the windows only if no partition still holds state back.
    while retained(&svc) != 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the month-old call is still retained: {} calls",
            retained(&svc)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    svc.stop();
}

/// `config/dialers/*.toml` read what `dialguard generate --format` (and the demo) write: the
/// same calls accepted as from call events, the rest refused.
#[test]
fn the_shipped_dialer_configurations_read_what_generate_writes() {
    use std::io::Write;
    let p = dialguard::synth::SynthParams {
        calls: 3_000,
        debtors: 60,
        invalid_fraction: 0.02,
        ..Default::default()
    };
    let mut v1 = Vec::new();
    dialguard::synth::generate(&p, &mut v1).unwrap();
    let v1_settings = Settings::load_with_env(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dialguard.toml"),
        Some(HashMap::new()),
    )
    .unwrap();
    let accepted = |s: &Settings, text: &[u8]| -> usize {
        let mut dec = Decoder::new(s.decode.clone());
        text.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter(|l| dec.decode(l, Ts(NOW)).is_ok())
            .count()
    };
    let want = accepted(&v1_settings, &v1);
    assert!(want > 2_800, "{want}");
    for (file, format) in [
        ("asterisk", Format::AsteriskCdrCsv),
        ("freeswitch", Format::FreeswitchJsonCdr),
        ("vicidial", Format::VicidialLog),
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config/dialers")
            .join(format!("{file}.toml"));
        let s = Settings::load_with_env(&path, Some(HashMap::new())).unwrap();
        assert_eq!(s.decode.mapping.format(), format);
        assert_eq!(
            s.raw_mapping,
            render::mapping_for(format, "Asia/Shanghai"),
            "{file}.toml and formats::render::mapping_for disagree"
        );
        let mut out = Vec::new();
        {
            let zone = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
            let mut w = render::Rendering::new(&mut out, format, zone);
            w.write_all(&v1).unwrap();
            w.flush().unwrap();
        }
        assert_eq!(accepted(&s, &out), want, "{file}");
    }
}
