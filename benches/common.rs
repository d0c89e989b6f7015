//! Shared by the benchmarks: a decoded synthetic workload and a policy.

use dialguard::codec::Decoder;
use dialguard::config::Settings;
use dialguard::engine::event::Call;
use dialguard::engine::time::Ts;
use dialguard::synth::{generate, SynthParams};
use std::collections::HashMap;
use std::path::Path;

/// Settings from a file under `config/`.
pub fn settings(file: &str) -> Settings {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(file);
    Settings::load_with_env(&p, Some(HashMap::new())).expect("bench config")
}

#[allow(dead_code)]
/// `n` synthetic call records over `days` days, as JSON lines (no duplicates).
pub fn lines(n: u64, days: u64) -> Vec<u8> {
    let p = SynthParams {
        calls: n,
        debtors: (n / 50).max(1),
        days,
        duplicate_fraction: 0.0,
        ..Default::default()
    };
    let mut buf = Vec::new();
    generate(&p, &mut buf).expect("generate");
    buf
}

#[allow(dead_code)]
/// [`lines`], decoded (invalid records kept out).
pub fn calls(settings: &Settings, n: u64, days: u64) -> Vec<Call> {
    decoded(settings, &lines(n, days))
}

#[allow(dead_code)]
/// The calls of `buf`'s lines that decode.
pub fn decoded(settings: &Settings, buf: &[u8]) -> Vec<Call> {
    let mut dec = Decoder::new(settings.decode.clone());
    let now = Ts(i64::MAX / 2);
    buf.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| dec.decode(l, now).ok())
        .collect()
}
