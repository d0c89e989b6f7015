//! `dialguard demo`: the whole pipeline with nothing installed. librdkafka's mock cluster (the
//! real Kafka protocol, in process) stands in for the brokers; a synthetic dialer produces
//! realistic traffic at a chosen rate; the service judges it; alerts print live, one line each.

use crate::config::Settings;
use crate::engine::time::{Ts, NANOS_PER_SEC};
use crate::service::{self, ServiceError, Shutdown};
use crate::synth::{Synth, SynthParams};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Demo options.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Calls per second the synthetic dialer produces.
    pub rate: u64,
    /// Calls in all (the traffic spans `days` days ending yesterday, replayed at `rate`).
    pub calls: u64,
    /// Days of traffic.
    pub days: u64,
    /// Distinct debtors.
    pub debtors: u64,
    /// Input partitions.
    pub partitions: i32,
    /// Stop after this long (default: when interrupted).
    pub duration: Option<Duration>,
    /// Print alerts (otherwise only the periodic summary).
    pub print_alerts: bool,
}

/// Runs the demo until interrupted (or `duration`).
/// `shutdown` stops it (the caller's signals, or a closed stdout).
pub fn run(
    mut settings: Settings,
    opts: &DemoOptions,
    shutdown: Shutdown,
) -> Result<(), ServiceError> {
    let cluster =
        MockCluster::new(1).map_err(|e| ServiceError::Kafka(format!("mock cluster: {e}")))?;
    let k = settings.kafka.clone();
    let topics = [
        Some((&k.input_topic, opts.partitions)),
        Some((&k.alerts_topic, opts.partitions)),
        Some((&k.dlq_topic, 1)),
        k.suppressions_topic.as_ref().map(|t| (t, opts.partitions)),
    ];
    for (topic, parts) in topics.into_iter().flatten() {
        cluster
            .create_topic(topic, parts, 1)
            .map_err(|e| ServiceError::Kafka(format!("creating {topic}: {e}")))?;
    }
    let brokers = cluster.bootstrap_servers();
    settings.kafka.brokers = brokers.clone();
    crate::tell!("dialguard demo: an in-process Kafka-protocol broker at {brokers}");
    crate::tell!(
        "  topics: {} (dialer calls in), {} (alerts out), {} (rejected records)",
        k.input_topic,
        k.alerts_topic,
        k.dlq_topic
    );
    crate::tell!("  watch with: kcat -b {brokers} -t {} -C", k.alerts_topic);
    crate::tell!(
        "  policy: {} rules from {}",
        settings.rules.len(),
        settings.path.display()
    );

    let produced = Arc::new(AtomicU64::new(0));
    let alerts_seen = Arc::new(AtomicU64::new(0));
    let dialer = {
        let (b, t, s, o, n) = (
            brokers.clone(),
            k.input_topic.clone(),
            shutdown.clone(),
            opts.clone(),
            produced.clone(),
        );
        std::thread::Builder::new()
            .name("demo-dialer".into())
            .spawn(move || dialer(&b, &t, &o, &s, &n))
            .map_err(|e| ServiceError::Start(e.to_string()))?
    };
    let printer = {
        let (b, t, s, n, print) = (
            brokers.clone(),
            k.alerts_topic.clone(),
            shutdown.clone(),
            alerts_seen.clone(),
            opts.print_alerts,
        );
        std::thread::Builder::new()
            .name("demo-alerts".into())
            .spawn(move || print_alerts(&b, &t, &s, &n, print))
            .map_err(|e| ServiceError::Start(e.to_string()))?
    };
    if let Some(d) = opts.duration {
        let s = shutdown.clone();
        std::thread::spawn(move || {
            std::thread::sleep(d);
            s.trigger();
        });
    }
    let (p2, a2, s2) = (produced.clone(), alerts_seen.clone(), shutdown.clone());
    let result = service::run(settings, shutdown.clone(), true, move |h| {
        crate::tell!(
            "  metrics: http://{}/metrics  health: /livez /readyz",
            h.http_addr
        );
        if let Some(a) = h.check_addr {
            crate::tell!("  pre-dial check: POST http://{a}/v1/check");
        }
        crate::tell!("  Ctrl-C to stop\n");
        let m = h.metrics.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while !s2.is_triggered() {
                std::thread::sleep(Duration::from_millis(250));
                if start.elapsed().as_millis() % 10_000 < 250 && start.elapsed().as_secs() > 0 {
                    crate::tell!(
                        "-- {}s: {} calls sent, {} consumed, {} alerts, {} rejected (dead-lettered)",
                        start.elapsed().as_secs(),
                        p2.load(Ordering::Relaxed),
                        m.consumed.get(),
                        a2.load(Ordering::Relaxed),
                        crate::codec::Reason::ALL
                            .iter()
                            .map(|r| m.rejected.with_label_values(&[r.as_str()]).get())
                            .sum::<u64>(),
                    );
                }
            }
        });
    });
    shutdown.trigger();
    let _ = dialer.join();
    let _ = printer.join();
    crate::tell!(
        "demo stopped: {} calls sent, {} alerts",
        produced.load(Ordering::Relaxed),
        alerts_seen.load(Ordering::Relaxed)
    );
    drop(cluster);
    result
}

/// The synthetic dialer: the generator's traffic, keyed by debtor, paced at `rate`.
fn dialer(brokers: &str, topic: &str, o: &DemoOptions, stop: &Shutdown, sent: &AtomicU64) {
    let producer: BaseProducer = match ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
    {
        Ok(p) => p,
        Err(e) => {
            crate::tell!("demo dialer: {e}");
            return;
        }
    };
    let day = 86_400 * NANOS_PER_SEC;
    let now = Ts::from_jiff(jiff::Timestamp::now());
    let params = SynthParams {
        calls: o.calls,
        debtors: o.debtors,
        days: o.days,
        // The traffic ends yesterday (local), so nothing is in the future.
        start: Ts(now.0 - (o.days as i64 + 1) * day),
        seed: now.0 as u64,
        invalid_fraction: 0.002,
        ..Default::default()
    };
    let start = Instant::now();
    let rate = o.rate.max(1);
    for (i, line) in Synth::new(params).enumerate() {
        if stop.is_triggered() {
            break;
        }
        let due = Duration::from_secs_f64(i as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let key = line
            .split("\"debtor_id\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(str::to_owned);
        let payload = line.trim_end().as_bytes();
        loop {
            let mut rec = BaseRecord::<str, [u8]>::to(topic).payload(payload);
            if let Some(k) = key.as_deref() {
                rec = rec.key(k);
            }
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    crate::tell!("demo dialer: {e}");
                    return;
                }
            }
        }
        sent.fetch_add(1, Ordering::Relaxed);
        producer.poll(Duration::ZERO);
    }
    let _ = producer.flush(Duration::from_secs(5));
    if !stop.is_triggered() {
        crate::tell!(
            "-- the synthetic dialer has sent all {} calls; Ctrl-C to stop",
            sent.load(Ordering::Relaxed)
        );
    }
}

/// Prints each alert as one readable line.
fn print_alerts(brokers: &str, topic: &str, stop: &Shutdown, seen: &AtomicU64, print: bool) {
    let consumer: BaseConsumer = match ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "dialguard-demo-printer")
        .set("auto.offset.reset", "earliest")
        .create()
    {
        Ok(c) => c,
        Err(e) => {
            crate::tell!("demo printer: {e}");
            return;
        }
    };
    if let Err(e) = consumer.subscribe(&[topic]) {
        crate::tell!("demo printer: {e}");
        return;
    }
    while !stop.is_triggered() {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        seen.fetch_add(1, Ordering::Relaxed);
        if !print {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(m.payload().unwrap_or_default())
        else {
            continue;
        };
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
        let late = if v.get("late").and_then(|x| x.as_bool()) == Some(true) {
            " (late)"
        } else {
            ""
        };
        crate::say!(
            "{} {:<6} {:<36} {}{}",
            s("occurred_at"),
            s("severity"),
            s("rule_id"),
            s("message"),
            late
        );
    }
}
