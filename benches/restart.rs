//! From `kill -9` to processing again: how long a restarted `dialguard run` is blind, with and
//! without static group membership (`[kafka] instance_id`), on librdkafka's mock cluster with
//! the client defaults (`session.timeout.ms` 45 s) and a dialer producing all along.
//!
//! ```text
//! cargo bench --bench restart                      # dynamic membership, on the mock cluster
//! DIALGUARD_TEST_BROKERS=host:9092 cargo bench --bench restart -- --mode both --rounds 3
//! ```
//! librdkafka's mock cluster does not implement static membership (KIP-345): its classic group
//! finds members by member id only, so a restarted static member joins as a stranger, waits out
//! the session timeout and then loops on "rebalance in progress". `--mode static` and `both`
//! therefore need a real broker (Apache Kafka 2.3 or later), named by `DIALGUARD_TEST_BROKERS`
//! as for the tests; the topics are created there with a unique suffix.
//! "Processing again" is the restarted process reporting `dialguard_ready 1` (partitions
//! assigned, windows rebuilt) and a consumed record on its `/metrics`. The backlog of `--calls`
//! calls is there before the first start, so each restart also rebuilds its windows from it.

use dialguard::synth::{Synth, SynthParams};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common.rs"]
mod common;

const PARTITIONS: i32 = 4;

fn arg(name: &str, default: u64) -> u64 {
    let v: Vec<String> = std::env::args().collect();
    v.iter()
        .position(|a| a == name)
        .and_then(|i| v.get(i + 1))
        .map_or(default, |x| x.parse().expect("a number"))
}

fn send(p: &BaseProducer, topic: &str, line: &str) {
    let key = line
        .split("\"debtor_id\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("");
    common::send(p, BaseRecord::to(topic).key(key).payload(line.trim_end()));
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.split([' ', '{']).next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

struct Topics {
    input: String,
    alerts: String,
    dlq: String,
    suppressions: String,
    snapshots: String,
    group: String,
}

fn spawn(brokers: &str, t: &Topics, http: SocketAddr, instance: Option<&str>) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dialguard"));
    c.args(["run", "--config"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dialguard.toml"))
        .env("DIALGUARD__KAFKA__BROKERS", brokers)
        .env("DIALGUARD__KAFKA__INPUT_TOPIC", &t.input)
        .env("DIALGUARD__KAFKA__ALERTS_TOPIC", &t.alerts)
        .env("DIALGUARD__KAFKA__DLQ_TOPIC", &t.dlq)
        .env("DIALGUARD__KAFKA__SUPPRESSIONS_TOPIC", &t.suppressions)
        .env("DIALGUARD__KAFKA__SNAPSHOTS_TOPIC", &t.snapshots)
        .env("DIALGUARD__KAFKA__GROUP_ID", &t.group)
        .env("DIALGUARD__HTTP__LISTEN", http.to_string())
        .env("DIALGUARD__CHECK__LISTEN", "127.0.0.1:0")
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(match std::env::var("DIALGUARD_BENCH_LOG") {
            Ok(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_or(Stdio::null(), Stdio::from),
            Err(_) => Stdio::null(),
        });
    if let Some(id) = instance {
        c.env("DIALGUARD__KAFKA__INSTANCE_ID", id);
    }
    c.spawn().expect("dialguard run")
}

/// Waits until the process at `http` is ready and has consumed a record; returns when.
fn processing(http: SocketAddr, patience: Duration) -> Option<Instant> {
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        if let Ok((200, text)) = dialguard::http::probe(http, "/metrics", Duration::from_secs(2)) {
            if metric(&text, "dialguard_ready") == 1.0
                && metric(&text, "dialguard_records_consumed_total") > 0.0
            {
                return Some(Instant::now());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn main() {
    let rounds = arg("--rounds", 2);
    let calls = arg("--calls", 20_000);
    let v: Vec<String> = std::env::args().collect();
    let mode = v
        .iter()
        .position(|a| a == "--mode")
        .and_then(|i| v.get(i + 1).cloned())
        .unwrap_or_else(|| "dynamic".into());
    let real = std::env::var("DIALGUARD_TEST_BROKERS").ok();
    if real.is_none() && mode != "dynamic" {
        eprintln!("--mode {mode}: the mock cluster does not implement static membership (see the top of benches/restart.rs); set DIALGUARD_TEST_BROKERS to a real broker");
        std::process::exit(2);
    }
    let suffix = format!("restart-{}", std::process::id());
    let topics = Topics {
        input: format!("dialer.call-events.{suffix}"),
        alerts: format!("compliance.alerts.{suffix}"),
        dlq: format!("dialer.call-events.dlq.{suffix}"),
        suppressions: format!("compliance.suppressions.{suffix}"),
        snapshots: format!("dialguard.snapshots.{suffix}"),
        group: format!("dialguard.{suffix}"),
    };
    let cluster = match real {
        Some(_) => None,
        None => Some(MockCluster::new(1).expect("mock cluster")),
    };
    let brokers = match (&cluster, std::env::var("DIALGUARD_TEST_BROKERS")) {
        (Some(c), _) => c.bootstrap_servers(),
        (None, Ok(b)) => b,
        (None, Err(_)) => unreachable!(),
    };
    for (t, p) in [
        (&topics.input, PARTITIONS),
        (&topics.alerts, PARTITIONS),
        (&topics.dlq, 1),
        (&topics.suppressions, 3),
        (&topics.snapshots, 1),
    ] {
        match &cluster {
            Some(c) => c.create_topic(t, p, 1).expect("topic"),
            None => {
                let admin: rdkafka::admin::AdminClient<_> = ClientConfig::new()
                    .set("bootstrap.servers", &brokers)
                    .create()
                    .expect("admin client");
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(admin.create_topics(
                    &[rdkafka::admin::NewTopic::new(
                        t,
                        p,
                        rdkafka::admin::TopicReplication::Fixed(1),
                    )],
                    &rdkafka::admin::AdminOptions::new(),
                ))
                .expect("create topics");
            }
        }
    }
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let now = dialguard::engine::time::Ts::from_jiff(jiff::Timestamp::now());
    let day = 86_400 * dialguard::engine::time::NANOS_PER_SEC;
    let mut traffic = Synth::new(SynthParams {
        calls: calls + 1_000_000,
        debtors: calls / 40 + 1,
        days: 30,
        start: dialguard::engine::time::Ts(now.0 - 31 * day),
        seed: 5,
        ..Default::default()
    });
    for line in traffic.by_ref().take(calls as usize) {
        send(&producer, &topics.input, &line);
    }
    producer.flush(Duration::from_secs(30)).expect("flush");

    // A dialer calling all along, 200 calls a second.
    let stop = Arc::new(AtomicBool::new(false));
    let dialer = {
        let stop = stop.clone();
        let input = topics.input.clone();
        std::thread::spawn(move || {
            for line in traffic {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                send(&producer, &input, &line);
                producer.poll(Duration::ZERO);
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = producer.flush(Duration::from_secs(5));
        })
    };

    let http: SocketAddr = "127.0.0.1:19898".parse().unwrap();
    println!(
        "kill -9 to processing again ({}, session.timeout.ms default 45 s, {calls} calls of backlog):",
        if cluster.is_some() { "mock cluster" } else { "real broker" }
    );
    let modes: Vec<(&str, Option<&str>)> = [
        ("static membership (instance_id)", Some("dialguard-0")),
        ("dynamic membership", None),
    ]
    .into_iter()
    .filter(|(label, _)| mode == "both" || label.starts_with(mode.as_str()))
    .collect();
    for (label, instance) in modes {
        let mut times = Vec::new();
        let mut child = spawn(&brokers, &topics, http, instance);
        processing(http, Duration::from_secs(300)).expect("the first start processes");
        for _ in 0..rounds {
            std::thread::sleep(Duration::from_secs(2));
            child.kill().expect("kill -9");
            let killed = Instant::now();
            child.wait().expect("reaped");
            child = spawn(&brokers, &topics, http, instance);
            match processing(http, Duration::from_secs(300)) {
                Some(t) => times.push(t.duration_since(killed).as_secs_f64()),
                None => println!("  {label}: not processing after 300 s"),
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        times.sort_by(f64::total_cmp);
        println!(
            "  {label}: {} s (each restart), median {:.1} s",
            times
                .iter()
                .map(|t| format!("{t:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
            times.get(times.len() / 2).copied().unwrap_or(f64::NAN)
        );
        // The next mode starts from a group with no member holding partitions.
        std::thread::sleep(Duration::from_secs(50));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = dialer.join();
}
