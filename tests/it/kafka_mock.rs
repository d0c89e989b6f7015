//! Kafka protocol on librdkafka's mock cluster (a real broker when `DIALGUARD_TEST_BROKERS` is
//! set): generated dialer traffic, keyed by debtor, goes through a topic and a consumer group and
//! comes back byte for byte, in order within each partition, and the engine finds the same
//! breaches in it as in the original lines. Groundwork for the service (issue 3).

use crate::support::Alerting;
use dialguard::codec::Decoder;
use dialguard::config::Settings;
use dialguard::engine::time::Ts;
use dialguard::engine::Engine;
use dialguard::synth::{generate, SynthParams};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::Message;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

/// One consumed record: its partition, key and value.
struct Consumed {
    partition: i32,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

const NOW: Ts = Ts(1_900_000_000_000_000_000);

/// The default configuration (lateness included).
fn settings() -> Settings {
    let env: HashMap<String, String> = HashMap::new();
    Settings::load_with_env(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dialguard.toml"),
        Some(env),
    )
    .unwrap()
}

/// The breaches in `records` judged in their order, each from its lane (partition); asserts
/// none was refused as too late.
fn breaches(settings: &Settings, records: &[(u32, &Vec<u8>)]) -> BTreeSet<(String, String)> {
    let mut dec = Decoder::new(settings.decode.clone());
    let mut engine = Engine::new(settings.rules.clone(), settings.engine.clone());
    // As the service does on assignment: every partition is open from the start, so none that
    // has not delivered yet can see the state it needs evicted.
    let mut lanes: Vec<u32> = records.iter().map(|(l, _)| *l).collect();
    lanes.sort_unstable();
    lanes.dedup();
    engine.open_lanes(&lanes);
    let mut out = Vec::new();
    for (lane, r) in records {
        if let Ok(c) = dec.decode(r, NOW) {
            engine.ingest_alerts_on(*lane, &c, NOW, &mut out);
        }
    }
    assert_eq!(engine.stats().too_late, 0);
    out.into_iter()
        .map(|a| (a.rule_id, a.call_id.to_string()))
        .collect()
}

#[test]
fn records_cross_kafka_intact_and_judge_like_the_original_lines() {
    let cluster = MockCluster::new(1).unwrap();
    let topic = format!("dialer.call-events.it-{}", std::process::id());
    let brokers = match std::env::var("DIALGUARD_TEST_BROKERS") {
        Ok(b) => b,
        Err(_) => {
            cluster.create_topic(&topic, 2, 1).unwrap();
            cluster.bootstrap_servers()
        }
    };
    let settings = settings();

    let mut text = Vec::new();
    let params = SynthParams {
        calls: 3000,
        debtors: 60,
        days: 3,
        invalid_fraction: 0.01,
        ..Default::default()
    };
    generate(&params, &mut text).unwrap();
    let lines: Vec<Vec<u8>> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let mut dec = Decoder::new(settings.decode.clone());
    let mut keys = Vec::new();
    for l in &lines {
        // Key by debtor (DESIGN.md §1); records that do not decode go unkeyed.
        let key = dec.decode(l, NOW).ok().map(|c| c.debtor_id.to_string());
        keys.push(key.clone());
        loop {
            let mut rec = BaseRecord::<String, Vec<u8>>::to(&topic).payload(l);
            if let Some(k) = &key {
                rec = rec.key(k);
            }
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("produce: {e}"),
            }
        }
    }
    producer
        .flush(Timeout::After(Duration::from_secs(60)))
        .unwrap();

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("it-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut got: Vec<Consumed> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120); // a bound for a hung broker, not a timing assertion
    while got.len() < lines.len() && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            got.push(Consumed {
                partition: m.partition(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
            });
        }
    }
    assert_eq!(
        got.len(),
        lines.len(),
        "consumed {} of {}",
        got.len(),
        lines.len()
    );

    // Byte for byte, nothing lost or doubled.
    let mut sent: Vec<&Vec<u8>> = lines.iter().collect();
    let mut back: Vec<&Vec<u8>> = got.iter().map(|g| &g.payload).collect();
    sent.sort();
    back.sort();
    assert_eq!(sent, back);

    // Within a partition, one debtor's records keep their production order.
    let mut by_debtor: HashMap<Vec<u8>, Vec<&Vec<u8>>> = HashMap::new();
    for g in &got {
        if let Some(k) = &g.key {
            by_debtor.entry(k.clone()).or_default().push(&g.payload);
        }
    }
    for (l, k) in lines.iter().zip(&keys) {
        if let Some(k) = k {
            let seq = by_debtor.get_mut(k.as_bytes()).unwrap();
            assert_eq!(seq.remove(0), l, "order changed for a debtor");
        }
    }

    // The same breaches, whatever the interleaving of partitions: each partition is its own
    // lane, as in the service, so the default lateness refuses nothing.
    let consumed: Vec<(u32, &Vec<u8>)> = got
        .iter()
        .map(|g| (g.partition as u32, &g.payload))
        .collect();
    let original = breaches(&settings, &lines.iter().map(|l| (0, l)).collect::<Vec<_>>());
    assert!(
        original.len() > 100,
        "the workload should breach: {}",
        original.len()
    );
    assert_eq!(breaches(&settings, &consumed), original);
}
