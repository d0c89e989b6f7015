//! Snapshot and restore of a large engine: bytes, bytes per retained call, and seconds to
//! write and to restore. `cargo bench --bench snapshot [-- --calls N]` (default 4,000,000
//! calls over 28 days with `config/dialguard.toml`, so that all of them are retained; the
//! calls on four lanes by debtor). Then a rebalance: the restored state cut to half the lanes,
//! twice (`Engine::retain_lanes`), and the halves joined (`Engine::absorb`).
//!
//! `cargo bench --bench snapshot -- --service [--calls N]`: the restart of `dialguard run` from
//! a snapshot, on librdkafka's mock cluster. An engine judges N calls over 7 days under
//! `config/dialguard.toml` as the service runs it (default lateness: all retained), its
//! snapshot is put in place in a `[service] snapshot_dir` as a stopped instance leaves it, and
//! the service is started: the time to `/readyz` (partitions assigned, snapshot read and
//! restored, the alerts topic read back) is what a restart is blind for. Beside it, the time to
//! judge the same calls silently, as a full rebuild does after fetching them from Kafka (the
//! mock broker keeps too little to measure that rebuild whole).
//!
//! With `DIALGUARD_TEST_BROKERS=host:port` (a broker that keeps what it is given: Apache Kafka,
//! or Tansu as in `../shared/reference/kafka-testing.md`) the calls are produced there and
//! committed, and the same restart is then measured again without the snapshot: the full
//! rebuild, side by side. `--topic` puts the snapshot in the snapshots topic, the default store,
//! instead of a directory, and skips the full rebuild; on the mock cluster that topic gets 64
//! partitions, so that its 5 MiB a partition hold the whole snapshot. `--rebalance` (with
//! `--topic`, on the mock cluster): the calls on four partitions, and two snapshots in the
//! topic, of partitions 0-1 and 2-3, as two instances leave them; one instance then starts and
//! restores both, joined (a scale-in).

use dialguard::engine::Engine;
use std::time::Instant;

#[global_allocator]
static GLOBAL: allocator::Global = mimalloc::MiMalloc;

#[path = "../src/allocator.rs"]
mod allocator;

#[path = "common.rs"]
mod common;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return; // `cargo bench --list` probes every bench binary
    }
    allocator::tune();
    let n: u64 = args
        .iter()
        .position(|a| a == "--calls")
        .and_then(|i| args.get(i + 1))
        .map_or(4_000_000, |v| v.parse().expect("--calls N"));
    if args.iter().any(|a| a == "--service") {
        service_restart(
            n,
            args.iter().any(|a| a == "--topic"),
            args.iter().any(|a| a == "--rebalance"),
        );
        return;
    }
    let mut settings = common::settings("dialguard.toml");
    // The engine the service would snapshot with this configuration (no reference topics: the
    // contact rule keeps no calls). A state shaped otherwise would be refused by the service
    // as made under other rules.
    settings.follow_reference_topics();
    // Keep every call: the figure is per retained call, and the point is a large state.
    settings.engine.allowed_lateness = 60 * 86_400 * dialguard::engine::time::NANOS_PER_SEC;
    // Four lanes (partitions, by debtor), so that a rebalance can be measured too.
    let engine = judged_on_lanes(&settings, &common::calls(&settings, n, 28), LANES);
    let retained = engine.retained_calls();
    let t = Instant::now();
    let bytes = engine.snapshot();
    let write_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let restored = Engine::from_snapshot(settings.rules.clone(), settings.engine.clone(), &bytes)
        .expect("restore");
    let restore_s = t.elapsed().as_secs_f64();
    assert_eq!(restored.retained_calls(), retained);
    println!(
        "snapshot: {retained} retained calls, {:.1} MiB ({:.0} bytes per retained call), written in {write_s:.2} s, restored in {restore_s:.2} s",
        bytes.len() as f64 / 1048576.0,
        bytes.len() as f64 / retained as f64,
    );
    drop((engine, restored));

    // A rebalance: two instances each restore the snapshot and cut it to half the partitions
    // (scale-out), then one joins the two halves (scale-in).
    let half = |keep: &[u32]| {
        let mut e = Engine::from_snapshot(settings.rules.clone(), settings.engine.clone(), &bytes)
            .expect("restore");
        let t = Instant::now();
        let dropped = e.retain_lanes(keep).expect("lanes known");
        (e, dropped, t.elapsed().as_secs_f64())
    };
    let (mut a, dropped_a, cut_a) = half(&[0, 1]);
    let (b, dropped_b, cut_b) = half(&[2, 3]);
    assert_eq!(a.retained_calls() + b.retained_calls(), retained);
    assert_eq!(dropped_a + dropped_b, retained);
    let t = Instant::now();
    a.absorb(b).expect("disjoint lanes");
    let join_s = t.elapsed().as_secs_f64();
    assert_eq!(a.retained_calls(), retained);
    println!(
        "rebalance: restored snapshot cut to 2 of {LANES} partitions in {cut_a:.2} s and {cut_b:.2} s (after the restore); the two halves joined in {join_s:.2} s"
    );
}

const LANES: u32 = 4;

/// An engine that judged `calls` in order, each on the lane of its debtor (out of `lanes`), as
/// Kafka keyed by debtor would deliver them.
fn judged_on_lanes(
    settings: &dialguard::config::Settings,
    calls: &[dialguard::engine::event::Call],
    lanes: u32,
) -> Engine {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let hasher = BuildHasherDefault::<DefaultHasher>::default();
    let mut engine = Engine::new(settings.rules.clone(), settings.engine.clone());
    engine.open_lanes(&(0..lanes).collect::<Vec<_>>());
    let mut out = Vec::new();
    for c in calls {
        out.clear();
        let lane = (hasher.hash_one(c.debtor_id.as_str()) % lanes as u64) as u32;
        engine.ingest_on(lane, c, &mut out);
    }
    engine
}

/// An engine that judged `calls` in order.
fn judged(
    settings: &dialguard::config::Settings,
    calls: &[dialguard::engine::event::Call],
) -> Engine {
    let mut engine = Engine::new(settings.rules.clone(), settings.engine.clone());
    let mut out = Vec::new();
    for c in calls {
        out.clear();
        engine.ingest(c, &mut out);
    }
    engine
}

/// See the module documentation (`--service`).
/// Partitions of the snapshots topic on the mock cluster: 4M calls' snapshot compresses to
/// ~170 MB, ~2.7 MB a partition.
const MOCK_SNAPSHOT_PARTITIONS: i32 = 64;

fn service_restart(n: u64, topic: bool, rebalance: bool) {
    if rebalance && (!topic || std::env::var("DIALGUARD_TEST_BROKERS").is_ok()) {
        eprintln!("--rebalance needs --topic (a directory holds one instance's snapshot) and the mock cluster");
        std::process::exit(2);
    }
    use dialguard::service::snapshots;
    use rdkafka::mocking::MockCluster;
    use std::collections::BTreeMap;

    let mut settings = common::settings("dialguard.toml");
    // Judged as the service judges (`service::run` does the same): otherwise the snapshot's
    // fingerprint differs from the service's and it is refused as made under other rules.
    settings.follow_reference_topics();
    let lines = common::lines(n, 7);
    let calls = common::decoded(&settings, &lines);
    let engine = if rebalance {
        judged_on_lanes(&settings, &calls, LANES)
    } else {
        judged(&settings, &calls)
    };
    let mut out = Vec::new();
    let retained = engine.retained_calls();
    // What a full rebuild does once it has fetched the calls: judge them silently, in order.
    let t = Instant::now();
    let mut silent = Engine::new(settings.rules.clone(), settings.engine.clone());
    for c in &calls {
        out.clear();
        silent.restore_on(0, c, &mut out);
    }
    let judge_s = t.elapsed().as_secs_f64();
    drop((calls, silent));

    let real = std::env::var("DIALGUARD_TEST_BROKERS").ok();
    let cluster = match real {
        Some(_) => None,
        None => Some(MockCluster::new(1).expect("mock cluster")),
    };
    if real.is_some() {
        // Topics and group of this run alone.
        let tag = format!("bench-{}", std::process::id());
        let k = &mut settings.kafka;
        k.inputs[0].topic = format!("{}.{tag}", k.inputs[0].topic);
        k.alerts_topic = format!("{}.{tag}", k.alerts_topic);
        k.dlq_topic = format!("{}.{tag}", k.dlq_topic);
        k.suppressions_topic = k.suppressions_topic.as_ref().map(|t| format!("{t}.{tag}"));
        k.snapshots_topic = k.snapshots_topic.as_ref().map(|t| format!("{t}.{tag}"));
        k.group_id = format!("{}.{tag}", k.group_id);
    }
    let k = settings.kafka.clone();
    let mut topics = vec![
        k.inputs[0].topic.clone(),
        k.alerts_topic.clone(),
        k.dlq_topic.clone(),
    ];
    topics.extend(k.suppressions_topic.clone());
    settings.kafka.brokers = match (&cluster, &real) {
        (Some(c), _) => {
            for t in &topics {
                let parts = if rebalance && *t == k.inputs[0].topic {
                    LANES as i32
                } else {
                    1
                };
                c.create_topic(t, parts, 1).unwrap();
            }
            if let (true, Some(t)) = (topic, &k.snapshots_topic) {
                // The mock keeps about 5 MiB a partition (and compacts nothing): spread over
                // enough partitions (chunks are keyed apart), the snapshot is kept whole.
                c.create_topic(t, MOCK_SNAPSHOT_PARTITIONS, 1).unwrap();
            }
            c.bootstrap_servers()
        }
        (None, Some(b)) => {
            create_topics(b, &topics);
            b.clone()
        }
        (None, None) => unreachable!(),
    };
    // The instance that stopped had judged the one partition's calls and committed them all.
    // On the mock the partition is empty (it could not hold them): position 0. On a real
    // broker the calls are there, committed, so that the full rebuild can be measured beside.
    let position = match &real {
        Some(b) => put_committed(b, &k.inputs[0].topic, &k.group_id, &lines),
        None => 0,
    };
    drop(lines);
    let dir = std::env::temp_dir().join(format!("dialguard-bench-snap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    if !topic {
        settings.service.snapshot_dir = Some(dir.clone());
    }
    let bytes = engine.snapshot();
    drop(engine);
    let t = Instant::now();
    let size = bytes.len();
    if rebalance {
        // Two instances stopped, each with a snapshot of half the partitions (its state cut
        // from the whole); one instance now starts and takes them all.
        for half in [[0, 1], [2, 3]] {
            let mut e =
                Engine::from_snapshot(settings.rules.clone(), settings.engine.clone(), &bytes)
                    .expect("restore");
            e.retain_lanes(&half).expect("lanes known");
            let positions: BTreeMap<i32, i64> = half.iter().map(|p| (*p as i32, 0)).collect();
            snapshots::put_in_place(&settings, &positions, &e.snapshot()).unwrap();
        }
    } else {
        let positions: BTreeMap<i32, i64> = [(0, position)].into_iter().collect();
        snapshots::put_in_place(&settings, &positions, &bytes).unwrap();
    }
    let put_s = t.elapsed().as_secs_f64();
    drop(bytes);

    let (ready_s, text) = ready_after_start(settings.clone());
    assert!(
        text.lines()
            .any(|l| l == "dialguard_snapshot_restores_total{result=\"restored\"} 1"),
        "the service did not restore the snapshot:\n{text}"
    );
    if rebalance {
        // Both halves restored: every retained call is back.
        let held = text
            .lines()
            .find(|l| l.starts_with("dialguard_retained_calls "))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok());
        assert_eq!(held, Some(retained as f64), "{text}");
    }
    println!(
        "service restart from {} ({}): {retained} retained calls, snapshot {:.1} MiB (written and put in place in {put_s:.2} s); ready in {ready_s:.2} s (start to /readyz, group join included); judging the same calls silently, as a full rebuild does after fetching them: {judge_s:.2} s",
        if rebalance {
            "two instances' snapshots of half the partitions each, joined"
        } else {
            "a snapshot"
        },
        if topic { "snapshots topic" } else { "directory" },
        size as f64 / 1048576.0
    );
    if real.is_some() && !topic {
        // The same restart without the snapshot: the full rebuild from the input's history.
        let mut full = settings.clone();
        full.service.snapshot_dir = None;
        full.kafka.snapshots_topic = None;
        let (full_s, text) = ready_after_start(full);
        let read = text
            .lines()
            .find(|l| l.starts_with("dialguard_rebuild_records_total{topic=\"input\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or("0")
            .to_owned();
        println!(
            "service restart with a full rebuild (no snapshot), same broker and calls: ready in {full_s:.2} s, {read} input records read back"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts the service, waits until it is ready, stops it gracefully: (seconds from start to
/// ready, its metrics when ready).
fn ready_after_start(settings: dialguard::config::Settings) -> (f64, String) {
    use dialguard::service::{self, Shutdown};
    use std::time::Duration;
    let shutdown = Shutdown::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let s2 = shutdown.clone();
    let started = Instant::now();
    let svc = std::thread::spawn(move || {
        service::run(settings, s2, false, move |h| {
            tx.send(h.clone()).unwrap();
        })
    });
    let h = rx.recv().expect("service started");
    while !h.health.ready() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let ready_s = started.elapsed().as_secs_f64();
    let text = h.metrics.render();
    shutdown.trigger();
    let _ = svc.join();
    (ready_s, text)
}

/// Creates `topics` (one partition each) on a real broker.
fn create_topics(brokers: &str, topics: &[String]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for r in rt
        .block_on(admin.create_topics(&new, &AdminOptions::new()))
        .expect("create topics")
    {
        r.expect("topic created");
    }
}

/// Produces `lines` to partition 0 of `topic` and commits its end for `group`, as an instance
/// that judged them all and stopped would have: returns the end offset.
fn put_committed(brokers: &str, topic: &str, group: &str, lines: &[u8]) -> i64 {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::{Offset, TopicPartitionList};
    use std::time::Duration;
    let t = Instant::now();
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let mut sent = 0u64;
    for l in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        common::send(
            &producer,
            BaseRecord::<(), [u8]>::to(topic).payload(l).partition(0),
        );
        sent += 1;
    }
    producer.flush(Duration::from_secs(600)).expect("flush");
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let (_, hi) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(30))
        .expect("watermarks");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(hi))
        .unwrap();
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
    eprintln!(
        "{sent} records produced and committed in {:.1} s (end offset {hi})",
        t.elapsed().as_secs_f64()
    );
    hi
}
