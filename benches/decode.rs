//! The decoder alone: records/s through `Decoder::decode` (JSON, validation, phone
//! normalisation) for synthetic dialer traffic, from a cold decoder each iteration so phone-cache
//! misses count as they do in a replay. `cargo bench --bench decode`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dialguard::codec::Decoder;
use dialguard::engine::time::Ts;
use dialguard::synth::{generate, SynthParams};

// The same allocator as the `dialguard` binary, so figures match what it does.
#[global_allocator]
static GLOBAL: allocator::Global = mimalloc::MiMalloc;

#[path = "../src/allocator.rs"]
mod allocator;

#[path = "common.rs"]
mod common;

fn bench(c: &mut Criterion) {
    allocator::tune();
    let settings = common::settings("dialguard.toml");
    let n = 200_000;
    let p = SynthParams {
        calls: n,
        debtors: n / 50,
        days: 14,
        ..Default::default()
    };
    let mut buf = Vec::new();
    generate(&p, &mut buf).expect("generate");
    let lines: Vec<&[u8]> = buf
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let now = Ts(i64::MAX / 2);
    let mut g = c.benchmark_group("decode");
    g.sample_size(10);
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("synthetic", |b| {
        b.iter_batched(
            || Decoder::new(settings.decode.clone()),
            |mut dec| {
                let mut ok = 0usize;
                for l in &lines {
                    ok += dec.decode(l, now).is_ok() as usize;
                }
                assert!(ok > lines.len() / 2);
                dec
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
