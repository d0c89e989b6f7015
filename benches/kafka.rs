//! Load benchmark of `dialguard run` through Kafka (librdkafka's mock cluster, in process):
//! generated dialer traffic in, alerts and dead letters out, offsets committed.
//!
//! ```text
//! cargo bench --bench kafka -- --calls 300000 --rate 10000     # alert latency at a fixed rate
//! cargo bench --bench kafka -- --calls 1000000 --rate 150000   # a rate near saturation
//! cargo bench --bench kafka -- --calls 1000000 --rate 0        # the dialer unpaced
//! ```
//! At each rate the report says how many calls the broker dropped because the service had
//! fallen that far behind: a rate is sustained when none are. It also says the rate the dialer
//! kept after its warm-up: on a machine it shares with the service, a dialer behind its
//! schedule would cap the figure, not the service.
//!
//! `--backlog` produces every call first and then starts the service, which drains the backlog
//! as fast as it can (the dialer no longer shares the machine): the service's own throughput,
//! catching up after downtime. The mock broker keeps only about 5 MiB per partition, so give the
//! input topic enough partitions (`--partitions N`, 3 by default) to hold it — about 300 bytes
//! a call; the report says how many calls it dropped:
//! ```text
//! cargo bench --bench kafka -- --calls 1500000 --backlog --partitions 96
//! ```
//! With `--checks RATE [--clients N]`, N clients (32 by default) also ask the pre-dial check
//! API (`POST /v1/check`, keep-alive connections) at RATE checks/s in total while the load runs,
//! each on an open-loop schedule (latency counts from when a check was due, so a stall delays
//! the checks behind it too):
//! ```text
//! cargo bench --bench kafka -- --calls 1000000 --rate 50000 --checks 2000 --clients 32
//! ```
//! `--floor` has the same clients ask `GET /livez` (on the `/metrics` listener, the same HTTP
//! runtime) instead of checking: what the clients, HTTP and scheduling cost on this machine with
//! no check work at all, the floor under the check's latency.
//!
//! `--consume-only` (with `--backlog`) starts no service: a bare consumer with the service's
//! client settings reads the backlog and does nothing with it — how fast this machine's mock
//! broker and librdkafka deliver records at all, the ceiling over any figure above:
//! ```text
//! cargo bench --bench kafka -- --calls 1500000 --backlog --partitions 128 --consume-only
//! ```
//!
//! `--no-directives` publishes no suppression directives (`kafka.suppressions_topic = ""`), to
//! measure what they cost.
//!
//! `--snapshot-every DUR` has the service snapshot its windows every DUR (`[service]
//! snapshot_every`; 5 min as shipped, so a run of a few minutes writes one only at its stop), to
//! measure what snapshots cost: to the snapshots topic (the default store; compressed chunks,
//! on the mock broker too), or with `--snapshot-dir` to a temporary directory:
//! ```text
//! cargo bench --bench kafka -- --calls 1000000 --rate 0 --snapshot-every 2s [--snapshot-dir]
//! ```
//!
//! `--live` stamps each call with the wall-clock time it is produced at (and checks with the time
//! they are asked), as a dialer fleet placing calls now would: event time then advances in real
//! time, where the generated history (14 days, replayed in seconds) makes every periodic
//! eviction sweep — due each ~21 h of event time — happen about once a second.
//!
//! `--statuses N` publishes N debtor statuses (third-party stop requests, Status v1) to a status
//! topic first, adds the CBA third-party stop rule, and reports how long the service took to
//! read them before it was ready (`[reference] status_topic`). The mock broker keeps about
//! 5 MiB per partition, so the topic gets one partition per 20,000 statuses:
//!
//! ```text
//! cargo bench --bench kafka -- --statuses 1000000 --calls 100000 --rate 50000
//! ```
//!
//! `--contacts N` publishes the contact book (Contact v1) of the traffic's debtors and of more
//! debtors after them, N records in all (`synth::contact_book`), to a contacts topic first (a
//! partition per 30,000 records), and reports how long the service took to read it before it
//! was ready (`[reference] contacts_topic`):
//!
//! ```text
//! cargo bench --bench kafka -- --contacts 5000000 --calls 100000 --rate 50000
//! ```
//!
//! `--bare` sends the calls without `number_source` and with `relation` "unknown", for the
//! contact book to fill in (with `--contacts N`, the book of the traffic's debtors):
//!
//! ```text
//! cargo bench --bench kafka -- --contacts 5000000 --bare --calls 1000000 --rate 0
//! ```
//!
//! Latency is the service's own measurement per alert: the call record's Kafka timestamp (set
//! when the dialer produced it) to the alert's delivery acknowledgement, in milliseconds.
//! The broker, the dialer and the service share the machine's cores.

use dialguard::config::Settings;
use dialguard::service::{self, Shutdown};
use dialguard::synth::{Synth, SynthParams};
use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: allocator::Global = mimalloc::MiMalloc;

#[path = "../src/allocator.rs"]
mod allocator;

#[path = "common.rs"]
mod common;

struct Args {
    calls: u64,
    rate: u64,
    backlog: bool,
    config: String,
    checks: u64,
    clients: usize,
    live: bool,
    directives: bool,
    floor: bool,
    snapshot_every: Option<String>,
    snapshot_dir: bool,
    partitions: i32,
    consume_only: bool,
    statuses: u64,
    contacts: u64,
    bare: bool,
}

fn args() -> Args {
    let mut a = Args {
        calls: 1_000_000,
        rate: 100_000,
        backlog: false,
        config: "config/dialguard.toml".into(),
        checks: 0,
        clients: 32,
        live: false,
        directives: true,
        floor: false,
        snapshot_every: None,
        snapshot_dir: false,
        partitions: 3,
        consume_only: false,
        statuses: 0,
        contacts: 0,
        bare: false,
    };
    let v: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < v.len() {
        match v[i].as_str() {
            "--calls" => {
                a.calls = v[i + 1].parse().expect("--calls N");
                i += 1;
            }
            "--rate" => {
                a.rate = v[i + 1].parse().expect("--rate N");
                i += 1;
            }
            "--config" => {
                a.config = v[i + 1].clone();
                i += 1;
            }
            "--checks" => {
                a.checks = v[i + 1].parse().expect("--checks RATE");
                i += 1;
            }
            "--clients" => {
                a.clients = v[i + 1].parse().expect("--clients N");
                i += 1;
            }
            "--backlog" => a.backlog = true,
            "--consume-only" => a.consume_only = true,
            "--partitions" => {
                a.partitions = v[i + 1].parse().expect("--partitions N");
                i += 1;
            }
            "--live" => a.live = true,
            "--no-directives" => a.directives = false,
            "--floor" => a.floor = true,
            "--snapshot-every" => {
                a.snapshot_every = Some(v[i + 1].clone());
                i += 1;
            }
            "--snapshot-dir" => a.snapshot_dir = true,
            "--contacts" => {
                a.contacts = v[i + 1].parse().expect("--contacts N");
                i += 1;
            }
            "--bare" => a.bare = true,
            "--statuses" => {
                a.statuses = v[i + 1].parse().expect("--statuses N");
                i += 1;
            }
            _ => {} // cargo's --bench and friends
        }
        i += 1;
    }
    a
}

/// Publishes `n` debtor statuses (third-party stop requests for numbers like the traffic's) to
/// a status topic on `cluster`, and has `settings` read it, with the CBA third-party stop rule.
fn publish_statuses(
    cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    producer: &BaseProducer,
    settings: &mut Settings,
    root: &Path,
    n: u64,
) {
    let topic = "compliance.statuses";
    let parts = (n / 20_000 + 1) as i32;
    cluster.create_topic(topic, parts, 1).unwrap();
    let t = Instant::now();
    for i in 0..n {
        let id = format!("st-{i:08}");
        let v = format!(
            r#"{{"status_id":"{id}","status":"third_party_stop","phone":"139{:08}","from":"2026-01-01T00:00:00Z","source":"bench"}}"#,
            (i * 7_919) % 100_000_000
        );
        loop {
            match producer.send(BaseRecord::to(topic).key(&id).payload(&v)) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("produce a status: {e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    eprintln!(
        "{n} statuses published to {parts} partitions in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    settings
        .add_pack(&root.join("config/packs/cn-cba-2026-status.toml"))
        .expect("the status pack");
    settings.reference.status_topic = Some(topic.into());
}

/// Publishes a contact book of `n` records (the generated traffic's debtors' first) to a
/// contacts topic on `cluster`, and has `settings` read it.
fn publish_contacts(
    cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    producer: &BaseProducer,
    settings: &mut Settings,
    n: u64,
) {
    let topic = "compliance.contacts";
    let parts = (n / 30_000 + 1) as i32;
    cluster.create_topic(topic, parts, 1).unwrap();
    let mut book = Vec::new();
    let p = dialguard::synth::SynthParams {
        debtors: n / 5 + 1,
        ..Default::default()
    };
    dialguard::synth::contact_book(&p, &mut book).unwrap();
    let t = Instant::now();
    let mut sent = 0;
    for l in String::from_utf8(book).unwrap().lines().take(n as usize) {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let key = format!(
            "{}/{}",
            v["debtor_id"].as_str().unwrap(),
            v["phone"].as_str().unwrap()
        );
        loop {
            match producer.send(BaseRecord::to(topic).key(&key).payload(l)) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("produce a contact: {e}"),
            }
        }
        sent += 1;
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    assert_eq!(sent, n, "the generated book is short");
    eprintln!(
        "{n} contacts published to {parts} partitions in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    settings.reference.contacts_topic = Some(topic.into());
}

/// Produces `lines` keyed by debtor: the first `warmup` at up to 10,000/s (so the consumer is
/// in step before the load starts), then at `rate` (0: as fast as the client goes).
fn produce(
    producer: &BaseProducer,
    topic: &str,
    lines: &[(Option<String>, String)],
    rate: u64,
    warmup: Duration,
    live: bool,
) -> Option<f64> {
    let mut stamped = String::new();
    let start = Instant::now();
    let warm_rate = if rate == 0 { 10_000 } else { rate.min(10_000) };
    let warm_n = (warmup.as_secs_f64() * warm_rate as f64) as usize;
    for (i, (key, line)) in lines.iter().enumerate() {
        let due = if i < warm_n {
            Some(Duration::from_secs_f64(i as f64 / warm_rate as f64))
        } else if rate > 0 {
            Some(warmup + Duration::from_secs_f64((i - warm_n) as f64 / rate as f64))
        } else {
            None
        };
        // Sleep only when a millisecond ahead, and send what is due in one go: a sleep per
        // record (20 µs apart at 50,000/s) cost the dialer a whole core of timer wake-ups,
        // taken from the service it measures.
        if let Some(due) = due {
            if let Some(w) = due.checked_sub(start.elapsed()) {
                if w >= Duration::from_millis(1) {
                    std::thread::sleep(w);
                }
            }
        }
        let line = if live {
            // The call happens now: its occurred_at is the wall clock's.
            stamped.clear();
            match line.split_once("\"occurred_at\":\"") {
                Some((head, rest)) => {
                    let tail = rest.split_once('"').map_or("", |(_, t)| t);
                    stamped.push_str(head);
                    stamped.push_str("\"occurred_at\":\"");
                    stamped.push_str(&jiff::Timestamp::now().to_string());
                    stamped.push('"');
                    stamped.push_str(tail);
                }
                None => stamped.push_str(line),
            }
            &stamped
        } else {
            line
        };
        let mut rec = BaseRecord::<str, str>::to(topic).payload(line.as_str());
        if let Some(k) = key {
            rec = rec.key(k.as_str());
        }
        common::send(producer, rec);
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    // The rate the dialer kept after the warm-up: on a machine it shares with the service, a
    // dialer that falls behind its schedule caps what the service can be shown to consume.
    let sent = lines.len().saturating_sub(warm_n);
    let took = start.elapsed().saturating_sub(warmup).as_secs_f64();
    producer.flush(Duration::from_secs(120)).expect("flush");
    (rate > 0 && sent > 0 && took > 0.0).then(|| sent as f64 / took)
}

/// What one check client saw: latencies in microseconds (from when each check was due), and
/// answers by status class.
#[derive(Default)]
struct ClientReport {
    latencies_us: Vec<u64>,
    ok: u64,
    unavailable: u64,
    other: u64,
}

/// One HTTP/1.1 exchange on a keep-alive connection: the status code. `body` is a check's;
/// `None` asks `GET /livez` instead (`--floor`).
fn exchange(
    conn: &mut std::io::BufReader<std::net::TcpStream>,
    body: Option<&str>,
) -> std::io::Result<u16> {
    use std::io::{BufRead, Read, Write};
    // One write, one segment: `write!` on the stream would send each piece of the format on its
    // own (TCP_NODELAY is set), waking the server once per piece.
    let request = match body {
        Some(body) => format!(
            "POST /v1/check HTTP/1.1\r\nHost: dialguard\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        None => "GET /livez HTTP/1.1\r\nHost: dialguard\r\n\r\n".to_owned(),
    };
    conn.get_mut().write_all(request.as_bytes())?;
    let mut line = String::new();
    conn.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {line:?}")))?;
    let mut length = 0usize;
    loop {
        line.clear();
        conn.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut rest = vec![0u8; length];
    conn.read_exact(&mut rest)?;
    Ok(status)
}

/// `clients` threads asking the check API at `rate` checks/s in total from `start` until `stop`.
fn check_load(
    addr: std::net::SocketAddr,
    bodies: std::sync::Arc<Vec<String>>,
    rate: u64,
    clients: usize,
    start: Instant,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    floor: bool,
) -> Vec<std::thread::JoinHandle<ClientReport>> {
    (0..clients)
        .map(|c| {
            let (bodies, stop) = (bodies.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut r = ClientReport::default();
                let connect = || {
                    let s = std::net::TcpStream::connect(addr).expect("connect to /v1/check");
                    s.set_nodelay(true).ok();
                    std::io::BufReader::new(s)
                };
                let mut conn = connect();
                let mut k = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let n = k * clients as u64 + c as u64;
                    let due = start + Duration::from_secs_f64(n as f64 / rate as f64);
                    if let Some(w) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(w);
                    }
                    let body = &bodies[n as usize % bodies.len()];
                    match exchange(&mut conn, (!floor).then_some(body.as_str())) {
                        Ok(200) | Ok(409) => r.ok += 1,
                        Ok(503) => r.unavailable += 1,
                        Ok(_) => r.other += 1,
                        Err(_) => {
                            r.other += 1;
                            conn = connect();
                        }
                    }
                    r.latencies_us.push(due.elapsed().as_micros() as u64);
                    k += 1;
                }
                r
            })
        })
        .collect()
}

fn pct(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    allocator::tune();
    // As `dialguard run` does (`MIMALLOC_ALLOW_THP=1` keeps huge pages, to compare).
    allocator::small_pages();
    let a = args();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The default configuration: lateness is per partition, so partitions consumed at
    // different paces refuse nothing although the traffic's event time runs fast (days in
    // seconds).
    let mut env: HashMap<String, String> = [
        ("DIALGUARD__HTTP__LISTEN", "127.0.0.1:0"),
        ("DIALGUARD__CHECK__LISTEN", "127.0.0.1:0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    // Any other setting from the environment, as `dialguard run` reads it (`DIALGUARD__K__V`).
    env.extend(std::env::vars().filter(|(k, _)| k.starts_with("DIALGUARD__")));
    let snapshot_dir =
        std::env::temp_dir().join(format!("dialguard-kafka-bench-{}", std::process::id()));
    if let Some(every) = &a.snapshot_every {
        env.insert("DIALGUARD__SERVICE__SNAPSHOT_EVERY".into(), every.clone());
    }
    if a.snapshot_dir {
        std::fs::create_dir_all(&snapshot_dir).expect("a temporary directory");
        env.insert(
            "DIALGUARD__SERVICE__SNAPSHOT_DIR".into(),
            snapshot_dir.display().to_string(),
        );
    }
    let mut settings = Settings::load_with_env(&root.join(&a.config), Some(env)).expect("config");
    // The check API only when checks are asked for: without it the loop waits in librdkafka's
    // poll as before, the baseline "without checks".
    settings.check.enabled = a.checks > 0;
    // Suppression directives (on by default, as in the shipped configuration), or not: what
    // they cost.
    if !a.directives {
        settings.kafka.suppressions_topic = None;
    }

    eprintln!("generating {} calls", a.calls);
    let lines: Vec<(Option<String>, String)> = Synth::new(SynthParams {
        calls: a.calls,
        // Live, the calls of a whole fleet land in seconds of event time: spread them over as
        // many debtors as a day's traffic would reach (two calls each), not fifty.
        debtors: (a.calls / if a.live { 2 } else { 50 }).max(1),
        days: 14,
        ..Default::default()
    })
    .map(|l| {
        let key = l
            .split("\"debtor_id\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(str::to_owned);
        let l = l.trim_end();
        (
            key,
            if a.bare {
                dialguard::synth::without_provenance(l)
            } else {
                l.to_owned()
            },
        )
    })
    .collect();
    let n = lines.len() as u64;
    let live = a.live;
    // Check candidates: calls like the traffic's (same debtors, numbers and times), with no
    // call_id, so each is judged as a new call against the live windows.
    let bodies: std::sync::Arc<Vec<String>> = std::sync::Arc::new(
        lines
            .iter()
            .step_by(97)
            .filter_map(|(_, l)| {
                let mut v: serde_json::Value = serde_json::from_str(l).ok()?;
                let o = v.as_object_mut()?;
                o.remove("call_id");
                o.remove("event_id");
                if live {
                    o.remove("occurred_at");
                }
                Some(v.to_string())
            })
            .collect(),
    );

    let cluster = MockCluster::new(1).expect("mock cluster");
    let k = settings.kafka.clone();
    cluster
        .create_topic(&k.inputs[0].topic, a.partitions, 1)
        .unwrap();
    cluster.create_topic(&k.alerts_topic, 3, 1).unwrap();
    cluster.create_topic(&k.dlq_topic, 1, 1).unwrap();
    if let Some(t) = &k.suppressions_topic {
        cluster.create_topic(t, 3, 1).unwrap();
    }
    if let Some(t) = &k.snapshots_topic {
        cluster.create_topic(t, 1, 1).unwrap();
    }
    settings.kafka.brokers = cluster.bootstrap_servers();
    // The mock broker answers an empty fetch only after fetch.wait.max.ms (it does not wake a
    // waiting fetch when data arrives, as Kafka does); the default 500 ms would be the latency.
    settings
        .kafka
        .client
        .push(("fetch.wait.max.ms".into(), "5".into()));
    // When the service falls more than the mock's retention behind, its fetch position drops
    // off the log; come back at once rather than after the default 500 ms.
    settings
        .kafka
        .client
        .push(("fetch.error.backoff.ms".into(), "10".into()));
    // Extra librdkafka properties for the service: DIALGUARD_BENCH_CLIENT="k=v,k=v".
    for kv in std::env::var("DIALGUARD_BENCH_CLIENT")
        .unwrap_or_default()
        .split(',')
    {
        if let Some((k, v)) = kv.split_once('=') {
            settings.kafka.client.push((k.into(), v.into()));
        }
    }
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();

    if a.backlog {
        let t = Instant::now();
        produce(
            &producer,
            &k.inputs[0].topic,
            &lines,
            0,
            Duration::ZERO,
            a.live,
        );
        eprintln!(
            "backlog of {n} records produced in {:.1}s",
            t.elapsed().as_secs_f64()
        );
    }

    if a.consume_only {
        consume_only(&settings, n);
        return;
    }
    if a.statuses > 0 {
        publish_statuses(&cluster, &producer, &mut settings, root, a.statuses);
    }
    if a.contacts > 0 {
        publish_contacts(&cluster, &producer, &mut settings, a.contacts);
    }

    let shutdown = Shutdown::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let s2 = shutdown.clone();
    let svc = std::thread::spawn(move || {
        service::run(settings, s2, false, move |h| {
            h.metrics.record_latencies(true);
            tx.send(h.clone()).unwrap();
        })
    });
    let h = rx.recv().expect("service started");
    if a.statuses > 0 {
        // The service reads the status topic before it serves anything else.
        let t = Instant::now();
        while h.metrics.statuses_known.get() < a.statuses as i64 {
            std::thread::sleep(Duration::from_millis(10));
        }
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "statuses read: {} in {secs:.2} s ({:.0} records/s)",
            a.statuses,
            a.statuses as f64 / secs
        );
    }
    if a.contacts > 0 {
        // The service reads the contacts topic first of all.
        let t = Instant::now();
        while h.metrics.contacts_known.get() < a.contacts as i64 {
            std::thread::sleep(Duration::from_millis(10));
        }
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "contacts read: {} in {secs:.2} s ({:.0} records/s)",
            a.contacts,
            a.contacts as f64 / secs
        );
    }
    while !h.health.ready() {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Latency and throughput are measured after a warm-up at up to 10,000 calls/s: the first
    // fetches after the group join start about a second behind the dialer.
    let warmup = Duration::from_secs(3);
    let start = Instant::now();
    let feeder = if a.backlog {
        None
    } else {
        let topic = k.inputs[0].topic.clone();
        let (rate, live) = (a.rate, a.live);
        Some(std::thread::spawn(move || {
            produce(&producer, &topic, &lines, rate, warmup, live)
        }))
    };
    // Done when the dialer has finished and nothing moved for a second: everything consumed
    // (or dropped by the mock broker's retention, about 5 MiB per partition, if the service
    // fell that far behind) and every alert acknowledged.
    let stop_checks = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checkers = if a.checks > 0 {
        let addr = if a.floor {
            h.http_addr
        } else {
            h.check_addr.expect("the check API is served")
        };
        check_load(
            addr,
            bodies.clone(),
            a.checks,
            a.clients,
            start + warmup,
            stop_checks.clone(),
            a.floor,
        )
    } else {
        Vec::new()
    };
    let mut warm: Option<(u64, Instant)> = None;
    let mut last = (0u64, Instant::now());
    let (secs, warm_consumed) = loop {
        std::thread::sleep(Duration::from_millis(10));
        if warm.is_none() && start.elapsed() >= warmup {
            h.metrics.take_latencies();
            warm = Some((h.metrics.consumed.get(), Instant::now()));
        }
        let consumed = h.metrics.consumed.get();
        if consumed != last.0 {
            last = (consumed, Instant::now());
        }
        let fed = feeder.as_ref().is_none_or(|f| f.is_finished());
        if fed {
            stop_checks.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        // A backlog's first fetches (from every partition) may take over a second to come.
        let started = !a.backlog || consumed > 0 || start.elapsed() >= Duration::from_secs(30);
        if fed
            && started
            && h.metrics.in_flight.get() == 0
            && last.1.elapsed() >= Duration::from_secs(1)
        {
            let (c0, t0) = warm.unwrap_or((0, start));
            break (last.1.saturating_duration_since(t0).as_secs_f64(), c0);
        }
    };
    let consumed = h.metrics.consumed.get();
    let dialer_rate = feeder.and_then(|f| f.join().unwrap());
    stop_checks.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut checks = ClientReport::default();
    for c in checkers {
        let r = c.join().unwrap();
        checks.latencies_us.extend(r.latencies_us);
        checks.ok += r.ok;
        checks.unavailable += r.unavailable;
        checks.other += r.other;
    }
    let mut lat = h.metrics.take_latencies();
    lat.sort_unstable();
    let alerts: u64 = lat.len() as u64;
    let rejected: u64 = dialguard::codec::Reason::ALL
        .iter()
        .map(|r| h.metrics.rejected.with_label_values(&[r.as_str()]).get())
        .sum();
    let directives: u64 = {
        use prometheus::core::Collector;
        h.metrics.directives.collect()[0]
            .get_metric()
            .iter()
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    };
    // The service's own view of each check request (received to answered), from its
    // histogram: the bucket each quantile falls in.
    let server = {
        use prometheus::core::Collector;
        let mf = h.metrics.check_latency.collect();
        let hist = mf[0].get_metric()[0].get_histogram().clone();
        let total = hist.get_sample_count();
        let q = |p: f64| {
            let want = (total as f64 * p).ceil() as u64;
            hist.get_bucket()
                .iter()
                .find(|b| b.cumulative_count() >= want)
                .map_or(f64::INFINITY, |b| b.upper_bound() * 1000.0)
        };
        (total, q(0.5), q(0.99), q(0.999))
    };
    let snapshots = h.metrics.snapshot_writes.with_label_values(&["ok"]).get();
    let snapshot_bytes = h.metrics.snapshot_bytes.get();
    let snapshot_hold = h.metrics.snapshot_seconds.get();
    shutdown.trigger();
    svc.join().unwrap().unwrap();
    if a.snapshot_dir {
        let _ = std::fs::remove_dir_all(&snapshot_dir);
    }
    let mode = if a.live {
        format!("live event time, fixed rate {}/s", a.rate)
    } else if a.backlog {
        "backlog drained".to_owned()
    } else if a.rate == 0 {
        "producer unpaced".to_owned()
    } else {
        format!("fixed rate {}/s", a.rate)
    };
    println!(
        "kafka load ({mode}, {}): {consumed} of {n} calls consumed; after the warm-up {} in {secs:.2}s = {:.0} calls/s; {alerts} alerts, {directives} directives, {rejected} dead letters",
        a.config,
        consumed - warm_consumed,
        (consumed - warm_consumed) as f64 / secs
    );
    if let Some(every) = &a.snapshot_every {
        let store = if a.snapshot_dir {
            "directory"
        } else {
            "snapshots topic"
        };
        println!(
            "snapshots every {every} to the {store}: {snapshots} put in place during the load, the last {snapshot_bytes} bytes, taking it held the loop {:.3} s",
            snapshot_hold
        );
    }
    if let Some(r) = dialer_rate {
        println!(
            "  the dialer sent the calls after its warm-up at {r:.0} calls/s (its schedule: {}/s)",
            a.rate
        );
    }
    if consumed < n {
        println!(
            "  {} calls never reached the service: the mock broker dropped them (it keeps about 5 MiB per partition) while the service was behind",
            n - consumed
        );
    }
    println!(
        "alert latency after a 3 s warm-up (record timestamp -> alert acknowledged): p50 {} ms, p90 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        pct(&lat, 0.999),
        lat.last().copied().unwrap_or(0)
    );
    if a.checks > 0 {
        let mut l = checks.latencies_us;
        l.sort_unstable();
        let ms = |p: f64| {
            if l.is_empty() {
                0.0
            } else {
                l[((l.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
            }
        };
        println!(
            "{} ({} clients, {}/s offered): {} answered 200/409, {} 503, {} other; latency from due: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            if a.floor {
                "GET /livez instead of checks (--floor)"
            } else {
                "pre-dial checks"
            },
            a.clients,
            a.checks,
            checks.ok,
            checks.unavailable,
            checks.other,
            ms(0.5),
            ms(0.99),
            ms(0.999),
            l.last().map_or(0.0, |m| *m as f64 / 1000.0)
        );
        if !a.floor {
            println!(
                "  the service's histogram of the same requests (received -> answered; bucket bounds): {} requests, p50 <= {:.2} ms, p99 <= {:.2} ms, p99.9 <= {:.2} ms",
                server.0, server.1, server.2, server.3
            );
        }
    }
}

/// Reads the input topic with a bare consumer (the service's client settings, nothing done with
/// the records) until `n` records came or none came for two seconds: the harness's ceiling.
fn consume_only(settings: &Settings, n: u64) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let k = &settings.kafka;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers)
        .set("group.id", "consume-only")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("statistics.interval.ms", "5000");
    for (key, v) in &k.client {
        c.set(key, v);
    }
    let consumer: BaseConsumer = c.create().expect("consumer");
    consumer
        .subscribe(&[&k.inputs[0].topic])
        .expect("subscribe");
    let (mut got, mut bytes) = (0u64, 0u64);
    let mut first = None;
    let mut last = Instant::now();
    // The first records come after the group join (the mock delays it 3 s).
    while got < n && last.elapsed() < Duration::from_secs(if first.is_some() { 2 } else { 15 }) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            use rdkafka::Message;
            first.get_or_insert_with(Instant::now);
            got += 1;
            bytes += m.payload().map_or(0, <[u8]>::len) as u64;
            last = Instant::now();
        }
    }
    let secs = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    println!(
        "consume only (a backlog, no service): {got} of {n} records in {secs:.2}s = {:.0} records/s, {:.1} MB/s",
        got as f64 / secs.max(1e-9),
        bytes as f64 / secs.max(1e-9) / 1e6
    );
}
