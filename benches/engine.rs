//! The engine alone: calls/s through `Engine::ingest` for pre-decoded calls, per policy
//! (`engine_ingest`), and through the judge step as `replay`'s engine thread drives it
//! (`engine_judged`). `cargo bench --bench engine`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dialguard::engine::intern::InternMemo;
use dialguard::engine::Engine;
use dialguard::judge;
use std::hint::black_box;

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

    // The engine thread as `replay` drives it: calls whose strings a decoder thread interned
    // (the engine takes their symbols), the state each will touch asked for a few calls
    // ahead (`warm`, `prewarm`, the call's own lines), each judged through the judge step.
    // `engine_ingest` above is a caller with one call at a time: the engine interns its
    // strings and nothing is asked for ahead.
    let mut g = c.benchmark_group("engine_judged");
    g.sample_size(10);
    for (name, file) in [("cn-default", "dialguard.toml"), ("bench", "bench.toml")] {
        let settings = common::settings(file);
        let calls = common::calls(&settings, 200_000, 14);
        g.throughput(Throughput::Elements(calls.len() as u64));
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let engine = Engine::new(settings.rules.clone(), settings.engine.clone());
                    let mut calls = calls.clone();
                    engine
                        .interner()
                        .intern_calls(&mut InternMemo::default(), calls.iter_mut());
                    (engine, calls)
                },
                |(mut engine, mut calls)| {
                    let mut out = Vec::new();
                    let mut accepted = 0usize;
                    for i in 0..calls.len() {
                        if let Some(ahead) = calls.get(i + Engine::WARM_AHEAD) {
                            black_box(engine.warm(ahead));
                        }
                        if let Some(ahead) = calls.get(i + Engine::PREWARM_AHEAD) {
                            engine.prewarm(ahead);
                        }
                        if let Some(ahead) = calls.get(i + Engine::CALL_AHEAD) {
                            ahead.prefetch();
                        }
                        out.clear();
                        let o = judge::judge(&mut engine, 0, &mut calls[i], &mut out);
                        accepted += matches!(o, judge::Outcome::Accepted { .. }) as usize;
                    }
                    assert!(accepted > calls.len() / 2, "{name}: {accepted} accepted");
                    (engine, calls)
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
