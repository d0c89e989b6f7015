//! `run` and `demo` end within `service.shutdown_grace` whatever librdkafka does, and a closed
//! stdout or stderr (`| head`) ends them quietly (exit 0, no panic), as command-line tools do.
//! The bounds below detect a hang; they are not timing assertions.

use super::service::{alerts_on_topic, child_env, traffic, Kafka};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Far above the 5 s grace these tests configure: only a hang gets there.
const HANG: Duration = Duration::from_secs(90);

fn demo(seconds: u64) -> Command {
    demo_at(2000, seconds)
}

fn demo_at(rate: u64, seconds: u64) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dialguard"));
    c.args([
        "demo",
        "--rate",
        &rate.to_string(),
        "--seconds",
        &seconds.to_string(),
    ])
    .current_dir(env!("CARGO_MANIFEST_DIR"))
    .env("DIALGUARD__HTTP__LISTEN", "127.0.0.1:0")
    .env("DIALGUARD__CHECK__LISTEN", "127.0.0.1:0")
    .env("DIALGUARD__SERVICE__SHUTDOWN_GRACE", "5s")
    .env("RUST_LOG", "info");
    c
}

/// Starts `cmd` with stderr collected on a thread (so a full pipe never blocks it); the
/// handle returns what it wrote.
fn spawn_capturing(cmd: &mut Command) -> (Child, std::thread::JoinHandle<String>) {
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    (child, reader)
}

fn wait(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + HANG;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn demo_piped_into_head_ends_quietly_when_the_reader_goes() {
    // `dialguard demo --seconds 600 | head -5`: stdout closes long before 600 s.
    let (mut child, reader) = spawn_capturing(demo(600).stdout(Stdio::piped()));
    let mut out = BufReader::new(child.stdout.take().unwrap());
    for _ in 0..5 {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "no alert lines");
    }
    drop(out);
    let status = wait(&mut child);
    let log = reader.join().unwrap();
    assert!(status.success(), "{status:?}\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("demo stopped"), "{log}");
}

#[test]
fn demo_with_stderr_closed_ends_quietly() {
    // `dialguard demo 2>&1 >/dev/null | head -3`: stderr closes after the banner.
    let mut child = demo(600)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    for _ in 0..3 {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0);
    }
    drop(err);
    let status = wait(&mut child);
    assert!(status.success(), "{status:?} (101 is a panic)");
}

#[test]
fn demo_stops_after_its_seconds() {
    let (mut child, reader) = spawn_capturing(demo(3).stdout(Stdio::null()));
    let status = wait(&mut child);
    let log = reader.join().unwrap();
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.contains("demo stopped"), "{log}");
}

/// SIGTERM while the only broker is down: the drain cannot deliver or commit, and librdkafka's
/// close would wait for the broker; the service still exits within its grace period, leaving
/// what was not acknowledged uncommitted.
#[test]
fn run_exits_within_its_grace_on_sigterm_with_the_broker_down() {
    if std::env::var("DIALGUARD_TEST_BROKERS").is_ok() {
        eprintln!("skipped: needs the mock cluster to stop its broker");
        return;
    }
    let kafka = Kafka::new("sigterm");
    kafka.produce(&traffic(40_000, 41));
    let (mut child, reader) = spawn_capturing(
        Command::new(env!("CARGO_BIN_EXE_dialguard"))
            .args(["run", "--config"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dialguard.toml"))
            .envs(child_env(&kafka))
            .env("DIALGUARD__SERVICE__SHUTDOWN_GRACE", "5s")
            .stdout(Stdio::null()),
    );
    // Once it is publishing alerts, take the broker away mid-stream and ask it to stop.
    let deadline = Instant::now() + HANG;
    while alerts_on_topic(&kafka) < 100 {
        assert!(Instant::now() < deadline, "no alerts");
        std::thread::sleep(Duration::from_millis(20));
    }
    kafka.mock.as_ref().unwrap().broker_down(1).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let asked = Instant::now();
    let status = wait(&mut child);
    let took = asked.elapsed();
    let log = reader.join().unwrap();
    assert!(!log.contains("panicked"), "{log}");
    // Exit 0 (drained) or 1 (grace expired): never a signal's death or a panic's 101.
    assert!(matches!(status.code(), Some(0 | 1)), "{status:?}\n{log}");
    eprintln!("exited {status:?} {took:?} after SIGTERM with the broker down");
}

/// The demo shows prevention: the agencies that ask `/v1/check` before dialing have calls
/// blocked and far fewer alerts per call placed than those that dial blind, which have none
/// blocked. (Read from the summary table the demo prints when it stops.)
#[test]
fn the_demo_shows_checking_agencies_blocked_before_dialing_and_alerted_far_less() {
    let (mut child, reader) =
        spawn_capturing(demo_at(600, 15).arg("--quiet").stdout(Stdio::null()));
    assert!(wait(&mut child).success());
    let log = reader.join().unwrap();
    // agency-N  checks first|dials blind  placed  blocked  alerts  per-1000
    let rows: Vec<(bool, f64, f64, f64)> = log
        .lines()
        .filter(|l| l.trim_start().starts_with("agency-"))
        .map(|l| {
            let checks = l.contains("checks first");
            let n: Vec<f64> = l
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            (checks, n[0], n[1], n[2])
        })
        .collect();
    assert_eq!(rows.len(), 7, "{log}");
    let sum = |checks: bool, i: usize| -> f64 {
        rows.iter()
            .filter(|r| r.0 == checks)
            .map(|r| [r.1, r.2, r.3][i])
            .sum()
    };
    let (placed_c, blocked_c, alerts_c) = (sum(true, 0), sum(true, 1), sum(true, 2));
    let (placed_b, blocked_b, alerts_b) = (sum(false, 0), sum(false, 1), sum(false, 2));
    assert!(placed_c > 0.0 && placed_b > 0.0, "{log}");
    assert!(blocked_c > 0.0, "checks blocked nothing: {log}");
    assert_eq!(blocked_b, 0.0, "{log}");
    assert!(
        alerts_c / placed_c * 10.0 < alerts_b / placed_b,
        "checking agencies: {alerts_c} alerts for {placed_c} calls; blind: {alerts_b} for {placed_b}\n{log}"
    );
}

/// The last periodic line of a demo's log: calls sent, consumed, alerts, dead-lettered.
fn demo_counts(log: &str) -> (u64, u64, u64, u64) {
    let line = log
        .lines()
        .rfind(|l| l.starts_with("-- ") && l.contains("calls sent"))
        .unwrap_or_else(|| panic!("no periodic line: {log}"));
    let n: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    // "-- 10s: 1739 calls sent, 1709 consumed, 163 alerts, 6 rejected ..."
    (n[1], n[2], n[3], n[4])
}

/// The demo writes what the service reads: `--format` puts the one input in a dialer's format
/// (read through the rendering's mapping; before, the service read it as call events and
/// dead-lettered every record), and a configuration with several inputs has each fed by its
/// agencies in its own format. Nearly every record is judged, and alerts come.
#[test]
fn the_demo_feeds_every_input_in_its_format() {
    let runs = [
        vec!["--format", "freeswitch-json-cdr"],
        vec!["--config", "tests/fixtures/cdr/two-inputs.toml"],
    ];
    let children: Vec<_> = runs
        .iter()
        .map(|args| {
            let mut c = demo_at(300, 13);
            c.args(args).arg("--quiet").stdout(Stdio::null());
            spawn_capturing(&mut c)
        })
        .collect();
    for ((mut child, reader), args) in children.into_iter().zip(&runs) {
        assert!(wait(&mut child).success(), "{args:?}");
        let log = reader.join().unwrap();
        let (sent, consumed, alerts, rejected) = demo_counts(&log);
        assert!(
            consumed > sent / 2 && alerts > 0 && rejected * 50 < consumed,
            "{args:?}: {sent} sent, {consumed} consumed, {alerts} alerts, {rejected} dead-lettered\n{log}"
        );
        if args.contains(&"--config") {
            assert!(log.contains("pbx.cdr:0"), "both topics assigned: {log}");
            assert!(
                log.contains("agencies 1,3,5 dial through pbx.cdr: asterisk-cdr-csv"),
                "{log}"
            );
        } else {
            assert!(log.contains("writes freeswitch-json-cdr records"), "{log}");
        }
    }
    // --format names the one input's format: with several, each has its own.
    let out = demo_at(300, 5)
        .args([
            "--config",
            "tests/fixtures/cdr/two-inputs.toml",
            "--format",
            "vicidial-log",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kafka.inputs") && err.contains("drop --format"),
        "{err}"
    );
}
