//! `dialguard replay` end to end through the library: bad lines are written out with their
//! reasons and original bytes, never stop the run, and the result does not depend on how many
//! decoder threads run.

use dialguard::config::Settings;
use dialguard::engine::time::{Ts, NANOS_PER_SEC};
use dialguard::replay::{run, ReplayIo, ReplayOptions, Summary};
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn settings() -> Settings {
    let dir = std::env::temp_dir().join(format!("dialguard-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("c.toml");
    std::fs::write(
        &p,
        r#"
[engine]
default_timezone = "UTC"
default_region = "CN"
allowed_lateness = "1h"
[[rules]]
id = "one-per-hour"
kind = "cap"
severity = "low"
key = ["phone"]
window = "1h"
limit = 1
"#,
    )
    .unwrap();
    let s = Settings::load_with_env(&p, Some(HashMap::new())).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    s
}

/// Generated traffic with 5% late calls, 1% duplicates and `invalid` of bad lines.
fn traffic(calls: u64, debtors: u64, days: u64, invalid: f64) -> Vec<u8> {
    let mut text = Vec::new();
    dialguard::synth::generate(
        &dialguard::synth::SynthParams {
            calls,
            debtors,
            days,
            late_fraction: 0.05,
            duplicate_fraction: 0.01,
            invalid_fraction: invalid,
            ..Default::default()
        },
        &mut text,
    )
    .unwrap();
    text
}

/// A policy of the project's `config/`.
fn policy(file: &str) -> Settings {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    Settings::load_with_env(&dir.join(file), Some(HashMap::new())).unwrap()
}

fn line(id: &str, t: &str) -> String {
    format!(
        r#"{{"call_id":"{id}","occurred_at":"{t}","debtor_id":"D1","phone":"13800000001","relation":"self"}}"#
    )
}

fn input() -> String {
    [
        line("a", "2026-11-10T10:00:00Z"),
        "{oops".to_owned(),
        line("b", "2026-11-10T10:30:00Z"),
        String::new(),
        line("b", "2026-11-10T10:30:00Z"),
        line("c", "2026-11-10T13:00:00Z"),
        line("late", "2026-11-10T11:30:00Z"), // 1h30 behind the newest: too late
        line("d", "2026-11-10T12:30:00Z"),    // 30 min behind: judged, and makes c breach late
    ]
    .join("\n")
        + "\n"
}

fn replay(decoders: usize, text: &str) -> (Summary, String, String) {
    let (alerts, rejects) = (Sink::default(), Sink::default());
    let io = ReplayIo {
        input: dialguard::replay::Input::reader(std::io::Cursor::new(text.as_bytes().to_vec())),
        alerts: Some(Box::new(alerts.clone())),
        rejects: Some(Box::new(rejects.clone())),
        reference: None,
    };
    let opts = ReplayOptions {
        now: Some(Ts(1_900_000_000 * NANOS_PER_SEC)),
        decoders: Some(decoders),
        progress: false,
        input_bytes: None,
        enforce: false,
    };
    let s = run(&settings(), io, &opts).unwrap();
    let a = String::from_utf8(alerts.0.lock().unwrap().clone()).unwrap();
    let r = String::from_utf8(rejects.0.lock().unwrap().clone()).unwrap();
    (s, a, r)
}

#[test]
fn bad_lines_are_written_with_reasons_and_the_run_goes_on() {
    let (s, alerts, rejects) = replay(1, &input());
    assert_eq!(s.records, 7);
    assert_eq!(s.blank, 1);
    assert_eq!(s.valid, 4);
    assert_eq!(s.duplicates, 1);
    assert_eq!(s.rejected.get("not_json"), Some(&1));
    assert_eq!(s.rejected.get("too_late"), Some(&1));
    let rejects: Vec<serde_json::Value> = rejects
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rejects.len(), 2);
    assert_eq!(
        (rejects[0]["line"].as_u64(), rejects[0]["reason"].as_str()),
        (Some(2), Some("not_json"))
    );
    assert_eq!(rejects[0]["record"], "{oops");
    assert_eq!(
        (rejects[1]["line"].as_u64(), rejects[1]["reason"].as_str()),
        (Some(7), Some("too_late"))
    );
    assert_eq!(
        rejects[1]["record"].as_str(),
        Some(line("late", "2026-11-10T11:30:00Z").as_str()),
        "original bytes"
    );
    let alerts: Vec<serde_json::Value> = alerts
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(&str, bool)> = alerts
        .iter()
        .map(|a| (a["call_id"].as_str().unwrap(), a["late"].as_bool().unwrap()))
        .collect();
    // b: a is 30 min earlier. d arrives after c and lies in c's hour, so c breaches late; d's own
    // hour (11:30, 12:30] holds only d, since "late" was refused.
    assert_eq!(got, vec![("b", false), ("c", true)]);
    assert_eq!(s.alerts, 2);
    assert_eq!(s.alerts_by_rule.get("one-per-hour"), Some(&2));
    assert!(s.table().contains("too_late"));
}

#[test]
fn decoder_threads_do_not_change_the_output() {
    let mut text = String::new();
    for i in 0..20_000 {
        text.push_str(&line(
            &format!("c{i}"),
            &format!(
                "2026-11-10T{:02}:{:02}:{:02}Z",
                8 + i / 3600,
                i / 60 % 60,
                i % 60
            ),
        ));
        text.push('\n');
        if i % 97 == 0 {
            text.push_str("not json\n");
        }
    }
    let one = replay(1, &text);
    let three = replay(3, &text);
    assert_eq!(one.1, three.1, "alerts differ");
    assert_eq!(one.2, three.2, "rejects differ");
    assert_eq!(one.0.valid, 20_000);
    assert!(one.0.alerts > 19_000);
}

/// An alerts output that fails (a full disk, a closed pipe) ends the replay with the write
/// error — with many batches still being read and decoded, none of the threads is left waiting
/// on a queue nobody empties.
#[test]
fn a_failing_alerts_output_ends_the_replay_with_its_error() {
    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    // Every call after the first in an hour breaches: alerts from the first batch on, and far
    // more input (tens of 1 MiB batches) than the queues hold.
    let text: String = (0..200_000)
        .map(|i| {
            let t = 1_800_000_000 + i;
            let at = jiff::Timestamp::from_second(t).unwrap();
            line(&format!("c{i}"), &at.to_string()) + "\n"
        })
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let io = ReplayIo {
            input: dialguard::replay::Input::reader(std::io::Cursor::new(text.into_bytes())),
            alerts: Some(Box::new(Full)),
            rejects: None,
            reference: None,
        };
        let opts = ReplayOptions {
            now: Some(Ts(1_900_000_000 * NANOS_PER_SEC)),
            decoders: Some(2),
            progress: false,
            input_bytes: None,
            ..Default::default()
        };
        let _ = tx.send(run(&settings(), io, &opts).map(|_| ()));
    });
    let r = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the replay ends");
    let e = r.expect_err("the write error is reported");
    assert!(e.to_string().contains("disk full"), "{e}");
}

/// `--enforce` on generated traffic with the default policy: every call whose own check
/// refuses it is dropped, so the alerts that remain are all late ones (an earlier call pushed
/// over a limit by a call that arrived after it — nothing a check could have prevented); every
/// record is accounted for, and enforcement only ever removes alerts.
#[test]
fn enforcement_drops_what_a_check_refuses_and_leaves_only_late_alerts() {
    let text = traffic(20_000, 300, 3, 0.01);
    let settings = policy("dialguard.toml");
    let run_with = |enforce: bool| {
        let alerts = Sink::default();
        let io = ReplayIo {
            input: dialguard::replay::Input::reader(std::io::Cursor::new(text.clone())),
            alerts: Some(Box::new(alerts.clone())),
            rejects: None,
            reference: None,
        };
        let opts = ReplayOptions {
            now: Some(Ts(1_900_000_000 * NANOS_PER_SEC)),
            decoders: Some(2),
            enforce,
            ..Default::default()
        };
        let s = run(&settings, io, &opts).unwrap();
        let a = String::from_utf8(alerts.0.lock().unwrap().clone()).unwrap();
        (s, a)
    };
    let (plain, plain_alerts) = run_with(false);
    let (enforced, alerts) = run_with(true);
    assert!(plain.alerts > 100, "the traffic breaches: {}", plain.alerts);
    assert!(enforced.enforced && enforced.blocked > 0);
    assert!(enforced.blocked_by_rule.values().sum::<u64>() >= enforced.blocked);
    assert!(
        enforced.alerts < plain.alerts,
        "{} vs {}",
        enforced.alerts,
        plain.alerts
    );
    assert_eq!(
        enforced.alerts, enforced.late_alerts,
        "only late alerts remain"
    );
    for a in alerts.lines() {
        let v: serde_json::Value = serde_json::from_str(a).unwrap();
        assert_eq!(v["late"], true, "{a}");
    }
    let rejected = |s: &Summary| s.rejected.values().sum::<u64>();
    assert_eq!(
        enforced.valid + enforced.duplicates + rejected(&enforced) + enforced.blocked,
        enforced.records
    );
    assert_eq!(enforced.records, plain.records);
    assert!(plain_alerts.lines().count() as u64 == plain.alerts);
    assert!(enforced
        .table()
        .contains("blocked before dialing (enforce)"));
    assert!(!plain.table().contains("blocked"));
}

/// An input in memory (how the binary hands replay a mapped file) is cut into batches at line
/// ends as a stream is: the same summary, alerts and rejects, whatever the decoder threads —
/// over many batches, with CRLF line ends, blank lines, a line longer than a whole batch and
/// no line end at the end.
#[test]
fn an_input_in_memory_judges_exactly_as_a_stream() {
    let text = traffic(12_000, 200, 2, 0.02);
    let mut text = String::from_utf8(text).unwrap().replacen("\n", "\r\n", 500);
    text.push_str(&format!("\n{}\n", "x".repeat(3 << 20)));
    text.push_str(&text.clone());
    text.push_str(&line("last", "2026-11-10T10:00:00Z"));
    assert!(text.len() > 5 << 20, "several batches: {}", text.len());
    let settings = policy("dialguard.toml");
    let run_with = |input: dialguard::replay::Input, decoders: usize| {
        let (alerts, rejects) = (Sink::default(), Sink::default());
        let io = ReplayIo {
            input,
            alerts: Some(Box::new(alerts.clone())),
            rejects: Some(Box::new(rejects.clone())),
            reference: None,
        };
        let opts = ReplayOptions {
            now: Some(Ts(1_900_000_000 * NANOS_PER_SEC)),
            decoders: Some(decoders),
            ..Default::default()
        };
        let mut s = run(&settings, io, &opts).unwrap();
        // Timing, the interner's table size, and the calls an eviction pass under way at the
        // end has not reached yet (it walks windows in the order of their keys' symbols),
        // which depend on how decoder threads interleaved: not the output.
        s.elapsed = Default::default();
        s.engine_heap_bytes = 0;
        s.retained_calls = 0;
        let a = alerts.0.lock().unwrap().clone();
        let r = rejects.0.lock().unwrap().clone();
        (s, a, r)
    };
    let stream = run_with(
        dialguard::replay::Input::reader(std::io::Cursor::new(text.clone().into_bytes())),
        1,
    );
    assert!(
        stream.0.alerts > 100 && stream.0.rejected.len() > 1,
        "{:?}",
        stream.0
    );
    assert_eq!(
        stream.0.records,
        stream.0.valid + stream.0.duplicates + stream.0.rejected.values().sum::<u64>()
    );
    for decoders in [1, 2] {
        let whole = run_with(
            dialguard::replay::Input::Bytes(Box::new(text.clone().into_bytes())),
            decoders,
        );
        assert_eq!(whole.0, stream.0, "{decoders} decoders");
        assert!(whole.1 == stream.1, "alerts differ ({decoders} decoders)");
        assert!(whole.2 == stream.2, "rejects differ ({decoders} decoders)");
    }
}

/// A replay writing no alerts keeps only the call fields rules read (`keep_call_fields`): its
/// state is smaller, and every count it reports is the same as when alerts are written.
#[test]
fn without_alerts_a_replay_keeps_less_and_decides_the_same() {
    let text = traffic(20_000, 300, 10, 0.01);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    // A field read only as a cap's distinct value, by no key.
    let tmp = std::env::temp_dir().join(format!("dialguard-lean-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(
        tmp.join("distinct.toml"),
        r#"
[engine]
default_timezone = "Asia/Shanghai"
default_region = "CN"
[[rules]]
id = "accounts-per-debtor"
kind = "cap"
severity = "low"
key = ["debtor_id"]
window = "2d"
limit = 1
distinct = "account_id"
"#,
    )
    .unwrap();
    for path in [
        dir.join("dialguard.toml"),
        dir.join("bench.toml"),
        tmp.join("distinct.toml"),
    ] {
        let settings = Settings::load_with_env(&path, Some(HashMap::new())).unwrap();
        let policy = path.file_name().unwrap().to_str().unwrap();
        let run_with = |alerts: bool| {
            let io = ReplayIo {
                input: dialguard::replay::Input::Bytes(Box::new(text.clone())),
                alerts: alerts.then(|| Box::new(Sink::default()) as Box<dyn Write + Send>),
                rejects: None,
                reference: None,
            };
            let opts = ReplayOptions {
                now: Some(Ts(1_900_000_000 * NANOS_PER_SEC)),
                decoders: Some(1),
                ..Default::default()
            };
            let mut s = run(&settings, io, &opts).unwrap();
            s.elapsed = Default::default();
            s
        };
        let (full, lean) = (run_with(true), run_with(false));
        assert!(
            full.alerts > 100 && full.late_alerts > 0,
            "{policy}: {full:?}"
        );
        // The default policy reads neither account nor agent ids (bench.toml reads most
        // fields: there the difference is within the tables' growth steps).
        assert!(
            policy != "dialguard.toml" || lean.engine_heap_bytes < full.engine_heap_bytes,
            "{policy}: {} vs {}",
            lean.engine_heap_bytes,
            full.engine_heap_bytes
        );
        let heap = |mut s: Summary| {
            s.engine_heap_bytes = 0;
            s
        };
        assert_eq!(heap(lean), heap(full), "{policy}");
    }
    std::fs::remove_dir_all(&tmp).ok();
}

/// Replay writes its alerts with `alert::AlertJson` (each rule's members and the detection
/// time written once, a rolling window's end copied from the call's time): over generated
/// traffic under the default policy and `config/bench.toml` (every kind, rolling and local
/// windows, late breaches of earlier calls), its lines are exactly the alerts the judge step
/// renders, serialised by serde, one by one.
#[test]
fn replay_writes_exactly_the_alerts_the_judge_step_renders() {
    use dialguard::alert::{self, AlertJson};
    use dialguard::codec::Decoder;
    use dialguard::engine::Engine;
    let text = traffic(6_000, 150, 6, 0.0);
    let now = Ts(1_900_000_000 * NANOS_PER_SEC);
    for file in ["dialguard.toml", "bench.toml"] {
        let settings = policy(file);
        let sink = Sink::default();
        let io = ReplayIo {
            input: dialguard::replay::Input::Bytes(Box::new(text.clone())),
            alerts: Some(Box::new(sink.clone())),
            rejects: None,
            reference: None,
        };
        let opts = ReplayOptions {
            now: Some(now),
            decoders: Some(1),
            ..Default::default()
        };
        let summary = run(&settings, io, &opts).unwrap();
        let written = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();

        // The judge step, rendering; and one writer of many alerts whose detection time
        // changes every other call, held to what is rendered at that time.
        let mut engine = Engine::new(settings.rules.clone(), settings.engine.clone());
        let mut dec = Decoder::new(settings.decode.clone());
        let mut alerts = Vec::new();
        let mut json = AlertJson::new(&settings.rules);
        let mut found = Vec::new();
        for (i, line) in text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            if let Ok(mut call) = dec.decode(line, now) {
                dialguard::judge::judge(&mut engine, 0, &mut call, &mut found);
                alert::render_all(engine.rules(), &found, &call, now, &mut alerts);
                let then = Ts(now.0 + (i / 2) as i64 * 1_500_000);
                for b in found.drain(..) {
                    let mut bytes = Vec::new();
                    json.write(&b, &call, then, &mut bytes);
                    let want = alert::render(engine.rules(), &b, &call, then);
                    assert_eq!(
                        String::from_utf8(bytes).unwrap(),
                        serde_json::to_string(&want).unwrap(),
                        "{file}: line {i}"
                    );
                }
            }
        }
        let rendered: Vec<String> = alerts
            .iter()
            .map(|a| serde_json::to_string(a).unwrap())
            .collect();
        assert!(
            rendered.len() > 500 && summary.late_alerts > 0,
            "{file}: {} alerts, {summary:?}",
            rendered.len()
        );
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(lines.len(), rendered.len(), "{file}");
        for (i, (got, want)) in lines.iter().zip(&rendered).enumerate() {
            assert_eq!(got, want, "{file}: alert {i}");
        }
    }
}
