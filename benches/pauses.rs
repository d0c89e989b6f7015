//! The engine's pauses: how long each call takes to judge, one by one, on the Kafka load
//! benchmark's traffic (1,000,000 calls over 14 days, 20,000 debtors, 8 lanes), and which of
//! the slow ones ran eviction. A pre-dial check waits for the call being judged, so a pause
//! here is a pause in every check queued behind it (docs/performance.md, "Pre-dial checks under
//! load").
//! ```text
//! cargo bench --bench pauses                 # the default policy, 1,000,000 calls
//! cargo bench --bench pauses -- 300000 config/bench.toml
//! ```
//! Wall-clock timings on a shared machine: a slow call that is not repeated at the same call
//! in the next run is the machine's pause, not the engine's.

use dialguard::codec::Decoder;
use dialguard::config::Settings;
use dialguard::engine::time::Ts;
use dialguard::engine::Engine;
use dialguard::synth::{Synth, SynthParams};
use std::collections::HashMap;
use std::time::Instant;

#[global_allocator]
static GLOBAL: allocator::Global = mimalloc::MiMalloc;

#[path = "../src/allocator.rs"]
mod allocator;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    allocator::tune();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: u64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let config = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "config/dialguard.toml".into());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut settings =
        Settings::load_with_env(&root.join(&config), Some(HashMap::new())).expect("config");
    // The engine as the service builds it (a status or contact rule keeps calls to flag late
    // only when its reference topic is configured).
    settings.follow_reference_topics();
    let lines: Vec<String> = Synth::new(SynthParams {
        calls: n,
        debtors: (n / 50).max(1),
        days: 14,
        ..Default::default()
    })
    .collect();
    let mut dec = Decoder::new(settings.decode.clone());
    let now = Ts(i64::MAX / 2);
    let mut calls: Vec<_> = lines
        .iter()
        .filter_map(|l| dec.decode(l.trim_end().as_bytes(), now).ok())
        .collect();
    let mut engine = Engine::new(settings.rules.clone(), settings.engine.clone());
    let mut out = Vec::new();
    // (nanoseconds, call index, whether eviction ran: records evicted or windows dropped)
    let mut lat: Vec<(u64, usize, bool)> = Vec::with_capacity(calls.len());
    for (j, c) in calls.iter_mut().enumerate() {
        let (evicted, keys) = (engine.stats().evicted, engine.window_keys());
        out.clear();
        let t = Instant::now();
        engine.ingest_owned((j % 8) as u32, c, &mut out);
        let d = t.elapsed().as_nanos() as u64;
        let evicting = engine.stats().evicted != evicted || engine.window_keys() < keys;
        lat.push((d, j, evicting));
    }
    let mut sorted: Vec<u64> = lat.iter().map(|x| x.0).collect();
    sorted.sort_unstable();
    let q =
        |p: f64| sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)] as f64 / 1e3;
    println!(
        "{} calls ({config}): per call p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, p99.99 {:.1} µs, max {:.2} ms",
        sorted.len(),
        q(0.5),
        q(0.99),
        q(0.999),
        q(0.9999),
        *sorted.last().unwrap_or(&0) as f64 / 1e6
    );
    for limit_us in [250u64, 1_000, 5_000] {
        let over: Vec<_> = lat.iter().filter(|x| x.0 > limit_us * 1000).collect();
        println!(
            "  over {limit_us} µs: {} calls ({} evicting), {:.1} ms in all",
            over.len(),
            over.iter().filter(|x| x.2).count(),
            over.iter().map(|x| x.0).sum::<u64>() as f64 / 1e6
        );
    }
    let mut slowest = lat.clone();
    slowest.sort_unstable_by_key(|x| std::cmp::Reverse(x.0));
    for x in slowest.iter().take(5) {
        println!(
            "  slowest: call #{} {:.2} ms{}",
            x.1,
            x.0 as f64 / 1e6,
            if x.2 { " (evicting)" } else { "" }
        );
    }
}
