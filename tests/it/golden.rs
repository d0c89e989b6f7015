//! Golden scenarios: `tests/fixtures/<name>/{policy.toml,events.jsonl,expected.jsonl}`.
//!
//! Events run through the decoder and the engine in file order; the alerts must match
//! `expected.jsonl` line for line (each expected object lists the fields it pins; others are
//! free). The same events in reverse order must give the same set of breaches.

use dialguard::codec::Decoder;
use dialguard::config::Settings;
use dialguard::engine::event::Call;
use dialguard::engine::rule::RuleKind;
use dialguard::engine::time::Ts;
use dialguard::engine::Engine;
use dialguard::judge;
use dialguard::reference::{Reference, ReferenceDecoder};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

const NOW: i64 = 1_893_456_000_000_000_000; // 2030-01-01: the fixtures are in the past

/// Judges `calls` in order, with the reference records (statuses, contacts) applied before
/// them or, with `statuses_last`, after them (their breaches then found late).
fn run(
    settings: &Settings,
    calls: &[Call],
    statuses: &[Reference],
    statuses_last: bool,
) -> Vec<serde_json::Value> {
    let mut engine = Engine::new(settings.rules.clone(), settings.engine.clone());
    let mut out = Vec::new();
    let apply = |engine: &mut Engine, out: &mut Vec<dialguard::alert::Alert>| {
        for r in statuses {
            let mut found = Vec::new();
            match r {
                Reference::Status(st) => {
                    engine.apply_status(st.clone(), &mut found);
                }
                Reference::Contact(c) => {
                    engine.apply_contact(c.clone(), &mut found).unwrap();
                }
                _ => unreachable!("no tombstones in scenarios"),
            }
            if let Some(c) = calls.first() {
                dialguard::alert::render_all(engine.rules(), &found, c, Ts(NOW), out);
            }
        }
    };
    if !statuses_last {
        apply(&mut engine, &mut out);
    }
    for c in calls {
        judge::judge_alerts(&mut engine, 0, &mut c.clone(), Ts(NOW), &mut out);
    }
    if statuses_last {
        apply(&mut engine, &mut out);
    }
    out.iter()
        .map(|a| serde_json::to_value(a).unwrap())
        .collect()
}

fn scenario(dir: &Path) {
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let settings = Settings::load_with_env(&dir.join("policy.toml"), Some(HashMap::new()))
        .unwrap_or_else(|e| panic!("{name}: policy: {e}"));
    let mut dec = Decoder::new(settings.decode.clone());
    let calls: Vec<Call> = std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| {
            dec.decode(l.as_bytes(), Ts(NOW))
                .unwrap_or_else(|e| panic!("{name}: events line {}: {e}", i + 1))
        })
        .collect();
    // Statuses and contacts (reference data), when the scenario has them.
    let mut rdec = ReferenceDecoder::new(settings.decode.default_region);
    let statuses: Vec<Reference> = std::fs::read_to_string(dir.join("reference.jsonl"))
        .unwrap_or_default()
        .lines()
        .enumerate()
        .map(|(i, l)| {
            match rdec
                .decode_line(l.as_bytes())
                .unwrap_or_else(|e| panic!("{name}: reference line {}: {e}", i + 1))
            {
                r @ (Reference::Status(_) | Reference::Contact(_)) => r,
                other => panic!("{name}: a tombstone in a scenario: {other:?}"),
            }
        })
        .collect();
    let expected: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("expected.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    let got = run(&settings, &calls, &statuses, false);
    let brief = |v: &[serde_json::Value]| {
        v.iter()
            .map(|a| format!("{} {}", a["rule_id"], a["call_id"]))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        got.len(),
        expected.len(),
        "{name}: alerts {:#?}\nexpected {:#?}",
        brief(&got),
        brief(&expected)
    );
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        for (k, v) in e.as_object().unwrap() {
            assert_eq!(
                &g[k], v,
                "{name}: alert {i} ({} {}) field {k}",
                g["rule_id"], g["call_id"]
            );
        }
        assert_eq!(
            g["alert_id"],
            dialguard::alert::alert_id(
                g["rule_id"].as_str().unwrap(),
                g["call_id"].as_str().unwrap()
            )
        );
    }

    // Arrival order must not change the breach set.
    let set = |v: &[serde_json::Value]| -> BTreeSet<(String, String)> {
        v.iter()
            .map(|a| {
                (
                    a["rule_id"].as_str().unwrap().to_owned(),
                    a["call_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let mut reversed = calls.clone();
    reversed.reverse();
    assert_eq!(
        set(&run(&settings, &reversed, &statuses, false)),
        set(&got),
        "{name}: reverse order changed the breaches"
    );
    if !statuses.is_empty() {
        // Statuses and contacts known only after the calls: the same breaches of status and
        // contact rules, found late. (Other rules' filters are filled from the book when a
        // call is judged: those see the calls as their events were.)
        let late = run(&settings, &calls, &statuses, true);
        let by_reference = |v: &[serde_json::Value]| -> BTreeSet<(String, String)> {
            set(v)
                .into_iter()
                .filter(|(rule, _)| {
                    settings.rules.iter().any(|r| {
                        r.id == *rule && matches!(r.kind, RuleKind::Status | RuleKind::Contact)
                    })
                })
                .collect()
        };
        assert_eq!(
            by_reference(&late),
            by_reference(&got),
            "{name}: reference data last changed the breaches"
        );
        let early: BTreeSet<_> = set(&run(&settings, &calls, &[], false));
        let late_set = set(&late);
        for a in &late {
            let k = (
                a["rule_id"].as_str().unwrap().to_owned(),
                a["call_id"].as_str().unwrap().to_owned(),
            );
            assert!(
                a["late"] == true || early.contains(&k),
                "{name}: {k:?} found on time without the reference data it needs"
            );
        }
        assert!(
            late_set.is_superset(&early),
            "{name}: reference data withdrew a breach"
        );
    }
}

#[test]
fn golden_scenarios() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("policy.toml").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 11, "fixtures missing: {dirs:?}");
    for d in &dirs {
        scenario(d);
    }
}

#[test]
fn every_shipped_pack_has_a_golden_scenario() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for e in std::fs::read_dir(root.join("config/packs")).unwrap() {
        let p = e.unwrap().path();
        let stem = p.file_stem().unwrap().to_string_lossy().to_string();
        assert!(
            root.join(format!("tests/fixtures/pack-{stem}/policy.toml"))
                .is_file(),
            "pack {stem} has no golden scenario"
        );
    }
}
