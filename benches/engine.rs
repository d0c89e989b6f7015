//! The engine alone: calls/s through `Engine::ingest` for pre-decoded calls, per policy.
//! `cargo bench --bench engine`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dialguard::engine::Engine;

// The same allocator as the `dialguard` binary, so figures match what it does.
#[global_allocator]
static GLOBAL: allocator::Global = mimalloc::MiMalloc;

#[path = "../src/allocator.rs"]
mod allocator;

#[path = "common.rs"]
mod common;

fn bench(c: &mut Criterion) {
    allocator::tune();
    let mut g = c.benchmark_group("engine_ingest");
    g.sample_size(10);
    for (name, file) in [
        ("cn-default", "dialguard.toml"),
        ("bench", "bench.toml"),
        ("all-packs", "bench-all-packs.toml"),
    ] {
        let settings = common::settings(file);
        let calls = common::calls(&settings, 200_000, 14);
        g.throughput(Throughput::Elements(calls.len() as u64));
        g.bench_function(name, |b| {
            b.iter_batched(
                || Engine::new(settings.rules.clone(), settings.engine.clone()),
                |mut engine| {
                    let mut out = Vec::new();
                    for call in &calls {
                        out.clear();
                        engine.ingest(call, &mut out);
                    }
                    engine
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
