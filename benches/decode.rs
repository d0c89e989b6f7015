//! The decoder alone: records/s through `Decoder::decode` (JSON, validation, phone
//! normalisation) for synthetic dialer traffic, from a cold decoder each iteration so phone-cache
//! misses count as they do in a replay. `cargo bench --bench decode`
//!
//! `decode/each-warm`: the same records through `Decoder::decode_each` by a decoder kept warm
//! (the scan and validation without phone-cache misses): `cargo bench --bench decode -- each-warm`
//!
//! `decode-formats/*`: the same calls as call event v1 and as each dialer's records (Asterisk
//! `cdr_csv`, a FreeSWITCH JSON CDR, a VICIdial `vicidial_log` CSV row; `formats::render`),
//! each read through its mapping, and FreeSWITCH CDRs padded with 120 unmapped channel
//! variables as a real switch writes them: `cargo bench --bench decode -- decode-formats`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dialguard::codec::Decoder;
use dialguard::engine::time::Ts;
use dialguard::formats::{render, Format};
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
    // As replay's decoder threads decode: a run of records at a time (`decode_each`, which
    // reads each a few records before it validates it), by a decoder whose caches are warm —
    // the scan and validation alone, without the first sight of each number.
    let mut warm = Decoder::new(settings.decode.clone());
    g.bench_function("each-warm", |b| {
        b.iter(|| {
            let mut ok = 0usize;
            warm.decode_each(lines.iter().copied(), now, |o| ok += o.is_ok() as usize);
            assert!(ok > lines.len() / 2);
        })
    });
    g.finish();

    // The same valid calls in every format.
    let mut dec = Decoder::new(settings.decode.clone());
    let (v1, calls): (Vec<&[u8]>, Vec<_>) = lines
        .iter()
        .filter_map(|l| dec.decode(l, now).ok().map(|c| (*l, c)))
        .take(100_000)
        .unzip();
    let zone = jiff::tz::TimeZone::get(&settings.default_timezone).unwrap();
    let mut g = c.benchmark_group("decode-formats");
    g.sample_size(10);
    g.throughput(Throughput::Elements(calls.len() as u64));
    // Each format as rendered, and FreeSWITCH's CDRs at a real size: a switch writes a hundred
    // or more channel variables per call (SIP headers, codecs, RTP statistics), none mapped.
    let cases = Format::ALL
        .iter()
        .map(|f| (*f, f.as_str().to_owned(), 0))
        .chain([(
            Format::FreeswitchJsonCdr,
            "freeswitch-json-cdr+120-variables".to_owned(),
            120,
        )]);
    for (format, name, extra) in cases {
        let records: Vec<Vec<u8>> = match format {
            Format::CallEventV1 => v1.iter().map(|l| l.to_vec()).collect(),
            f => calls
                .iter()
                .map(|c| {
                    let mut r = render::render(f, c, &zone);
                    if extra > 0 {
                        let vars: String = (0..extra)
                            .map(|i| format!("\"sip_var_{i}\":\"value%20number%20{i}\","))
                            .collect();
                        r = r.replacen("\"variables\":{", &format!("\"variables\":{{{vars}"), 1);
                    }
                    r.into_bytes()
                })
                .collect(),
        };
        let mut s = settings.clone();
        if format != Format::CallEventV1 {
            s.raw_mapping = render::mapping_for(format, &settings.default_timezone);
            s.set_format(format).expect("the rendering's mapping");
        }
        let bytes: usize = records.iter().map(Vec::len).sum();
        eprintln!(
            "{name}: {} records, {:.0} bytes per record",
            records.len(),
            bytes as f64 / records.len() as f64
        );
        g.bench_function(name.as_str(), |b| {
            b.iter_batched(
                || Decoder::new(s.decode.clone()),
                |mut dec| {
                    let mut ok = 0usize;
                    for r in &records {
                        ok += dec.decode(r, now).is_ok() as usize;
                    }
                    assert_eq!(ok, records.len(), "{name}");
                    dec
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
