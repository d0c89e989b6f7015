//! Shared by the benchmarks: a decoded synthetic workload, a policy, and producing to Kafka.
#![allow(dead_code)]

use dialguard::codec::Decoder;
use dialguard::config::Settings;
use dialguard::engine::event::Call;
use dialguard::engine::time::Ts;
use dialguard::synth::{generate, SynthParams};
use rdkafka::error::KafkaError;
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseProducer, BaseRecord};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

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

/// Sends `rec`, waiting out a full local queue (serving the producer's events meanwhile).
pub fn send<K: ToBytes + ?Sized, P: ToBytes + ?Sized>(
    p: &BaseProducer,
    mut rec: BaseRecord<'_, K, P>,
) {
    loop {
        match p.send(rec) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                rec = back;
                p.poll(Duration::from_millis(1));
            }
            Err((e, _)) => panic!("produce: {e}"),
        }
    }
}
