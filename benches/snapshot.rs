//! Snapshot and restore of a large engine: bytes, bytes per retained call, and seconds to
//! write and to restore. `cargo bench --bench snapshot [-- --calls N]` (default 4,000,000
//! calls over 28 days with `config/dialguard.toml`, so that all of them are retained).
//!
//! `cargo bench --bench snapshot -- --service [--calls N]`: the restart of `dialguard run` from
//! a snapshot, on librdkafka's mock cluster. An engine judges N calls over 7 days under
//! `config/dialguard.toml` as the service runs it (default lateness: all retained), its
//! snapshot is put in place in a `[service] snapshot_dir` as a stopped instance leaves it, and
//! the service is started: the time to `/readyz` (partitions assigned, snapshot read and
//! restored, the alerts topic read back) is what a restart is blind for. Beside it, the time to
//! judge the same calls silently, as a full rebuild does after fetching them from Kafka (the
//! mock broker keeps too little to measure that rebuild whole).

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
        service_restart(n);
        return;
    }
    let mut settings = common::settings("dialguard.toml");
    // Keep every call: the figure is per retained call, and the point is a large state.
    settings.engine.allowed_lateness = 60 * 86_400 * dialguard::engine::time::NANOS_PER_SEC;
    let engine = judged(&settings, &common::calls(&settings, n, 28));
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
fn service_restart(n: u64) {
    use dialguard::service::{self, snapshots, Shutdown};
    use rdkafka::mocking::MockCluster;
    use std::collections::BTreeMap;
    use std::time::Duration;

    let mut settings = common::settings("dialguard.toml");
    let calls = common::calls(&settings, n, 7);
    let engine = judged(&settings, &calls);
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

    let cluster = MockCluster::new(1).expect("mock cluster");
    let k = settings.kafka.clone();
    cluster.create_topic(&k.input_topic, 1, 1).unwrap();
    cluster.create_topic(&k.alerts_topic, 1, 1).unwrap();
    cluster.create_topic(&k.dlq_topic, 1, 1).unwrap();
    if let Some(t) = &k.suppressions_topic {
        cluster.create_topic(t, 1, 1).unwrap();
    }
    settings.kafka.brokers = cluster.bootstrap_servers();
    let dir = std::env::temp_dir().join(format!("dialguard-bench-snap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    settings.service.snapshot_dir = Some(dir.clone());
    // The instance that stopped had judged the one partition's calls and committed them all;
    // here the partition is empty (the mock broker could not hold them): position 0.
    let file = snapshots::path(&dir, &k.group_id);
    let bytes = engine.snapshot();
    drop(engine);
    let positions: BTreeMap<i32, i64> = [(0, 0)].into_iter().collect();
    snapshots::write(&file, &positions, &bytes).unwrap();
    snapshots::promote(&file).unwrap();
    let size = bytes.len();
    drop(bytes);

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
    let restored = text
        .lines()
        .any(|l| l == "dialguard_snapshot_restores_total{result=\"restored\"} 1");
    assert!(
        restored,
        "the service did not restore the snapshot:\n{text}"
    );
    println!(
        "service restart from a snapshot: {retained} retained calls, snapshot {:.1} MiB; ready in {ready_s:.2} s (start to /readyz, group join included); judging the same calls silently, as a full rebuild does after fetching them: {judge_s:.2} s",
        size as f64 / 1048576.0
    );
    shutdown.trigger();
    let _ = svc.join();
    let _ = std::fs::remove_dir_all(&dir);
}
