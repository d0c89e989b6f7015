//! Snapshot and restore of a large engine: bytes, bytes per retained call, and seconds to
//! write and to restore. `cargo bench --bench snapshot [-- --calls N]` (default 4,000,000
//! calls over 28 days with `config/dialguard.toml`, so that all of them are retained).

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
    let mut settings = common::settings("dialguard.toml");
    // Keep every call: the figure is per retained call, and the point is a large state.
    settings.engine.allowed_lateness = 60 * 86_400 * dialguard::engine::time::NANOS_PER_SEC;
    let calls = common::calls(&settings, n, 28);
    let mut engine = Engine::new(settings.rules.clone(), settings.engine.clone());
    let mut out = Vec::new();
    for c in &calls {
        out.clear();
        engine.ingest(c, &mut out);
    }
    drop(calls);
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
