//! Kafka protocol on librdkafka's mock cluster (a real broker when `DIALGUARD_TEST_BROKERS` is
//! set): generated dialer traffic, keyed by debtor, goes through a topic and a consumer group and
//! comes back byte for byte, in order within each partition, and the engine finds the same
//! breaches in it as in the original lines. Groundwork for the service (issue 3).

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

/// One consumed record: its key and value.
struct Consumed {
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

const NOW: Ts = Ts(1_900_000_000_000_000_000);

fn settings() -> Settings {
    // Partitions interleave on consumption: give lateness room so every call is judged.
    let env: HashMap<String, String> = [(
        "DIALGUARD__ENGINE__ALLOWED_LATENESS".to_owned(),
        "400d".to_owned(),
    )]
    .into();
    Settings::load_with_env(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dialguard.toml"),
        Some(env),
    )
    .unwrap()
}

fn breaches(settings: &Settings, records: &[Vec<u8>]) -> BTreeSet<(String, String)> {
    let mut dec = Decoder::new(settings.decode.clone());
    let mut engine = Engine::new(settings.rules.clone(), settings.engine.clone());
    let mut out = Vec::new();
    for r in records {
        if let Ok(c) = dec.decode(r, NOW) {
            engine.ingest(&c, NOW, &mut out);
        }
    }
    out.into_iter().map(|a| (a.rule_id, a.call_id)).collect()
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
        let key = dec.decode(l, NOW).ok().map(|c| c.debtor_id);
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

    // The same breaches, whatever the interleaving of partitions.
    let consumed: Vec<Vec<u8>> = got.into_iter().map(|g| g.payload).collect();
    let original = breaches(&settings, &lines);
    assert!(
        original.len() > 100,
        "the workload should breach: {}",
        original.len()
    );
    assert_eq!(breaches(&settings, &consumed), original);
}
