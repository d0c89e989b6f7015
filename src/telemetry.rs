//! The metric catalogue: every metric the service exposes is declared, described and registered
//! here, and nowhere else (ENGINEERING.md §3).
//!
//! # Conventions (checked by the tests below against the rendered output)
//! - Names start with `dialguard_` (the process collector's standard `process_*` names excepted),
//!   use `[a-z0-9_]`, carry base units (`_seconds`, `_bytes`), and counters end in `_total`
//!   exactly once. The `prometheus` crate renders names as written, so the suffixes are ours.
//! - Labels come from closed or configuration-bounded sets: `reason` (the decoder's closed set),
//!   `rule` and `severity` (from the loaded policy), `topic` (`alerts` | `dlq`), `error` (a closed
//!   classification of Kafka errors), `kind`, and `partition` only when the opt-in per-partition
//!   lag is on. Never a phone number, debtor, account or call id, offset or raw error text.
//! - Labelled series that are known up front are created at zero at start-up.

use crate::codec::Reason;
use crate::engine::rule::Rule;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Every metric of the service.
pub struct Metrics {
    registry: Registry,
    /// Records read from the input topic.
    pub consumed: IntCounter,
    /// Records refused, by reason (each went to the dead-letter topic).
    pub rejected: IntCounterVec,
    /// Calls accepted behind the newest event time seen (judged late).
    pub late: IntCounter,
    /// Calls whose `call_id` was already retained.
    pub duplicates: IntCounter,
    /// Input offsets passed over without a record: never read, never judged.
    pub offsets_skipped: IntCounter,
    /// Alerts produced, by rule and severity.
    pub alerts: IntCounterVec,
    /// Calls a rule could not judge because they lack one of its key fields (a CDR without an
    /// account, a debtor-and-account rule on a call with no account_id), by rule.
    pub rule_skipped: IntCounterVec,
    /// Alerts not produced again because they were published before a restart or rebalance.
    pub alerts_suppressed: IntCounter,
    /// Suppression directives produced, by rule and reason.
    pub directives: IntCounterVec,
    /// Produce failures reported by delivery reports (each message is sent again), by output
    /// topic and error class.
    pub produce_errors: IntCounterVec,
    /// Errors the Kafka client reported (broker trouble), by class.
    pub kafka_errors: IntCounterVec,
    /// Offset commits that failed.
    pub commit_errors: IntCounter,
    /// Decode plus judge time per record.
    pub processing: Histogram,
    /// Record timestamp → alert acknowledged by the broker.
    pub alert_latency: Histogram,
    /// Keys with a live window, over all rules.
    pub window_keys: IntGauge,
    /// Calls retained in windows.
    pub retained_calls: IntGauge,
    /// Estimated engine heap.
    pub engine_heap: IntGauge,
    /// Produced messages not yet acknowledged.
    pub in_flight: IntGauge,
    /// Duration of the last window rebuild.
    pub rebuild_seconds: Gauge,
    /// Rebuilds done.
    pub rebuilds: IntCounter,
    /// Rebuilds abandoned unfinished: the assignment changed before they ended.
    pub rebuilds_abandoned: IntCounter,
    /// Records read back during rebuilds, by topic (`input`, `alerts`, `suppressions`).
    pub rebuild_records: IntCounterVec,
    /// Assignments that looked for a snapshot, by result (`restored`, or why not).
    pub snapshot_restores: IntCounterVec,
    /// Snapshots written, by result (`ok`, `failed`).
    pub snapshot_writes: IntCounterVec,
    /// Size of the last snapshot written.
    pub snapshot_bytes: IntGauge,
    /// Reference topic records read, by kind and result (`applied`, `withdrawn`, `rejected`).
    pub reference_records: IntCounterVec,
    /// Debtor statuses known.
    pub statuses_known: IntGauge,
    /// Contact-book records known.
    pub contacts_known: IntGauge,
    /// Debtor statuses in force at the newest event time, by kind of status.
    pub statuses_in_force: IntGaugeVec,
    /// Time the processing loop was held taking the last snapshot (writing it is off the loop).
    pub snapshot_seconds: Gauge,
    /// Consumer lag summed over assigned partitions (from librdkafka statistics).
    pub consumer_lag: IntGauge,
    /// Consumer lag per partition (registered only when `kafka.partition_lag_metric` is on).
    pub consumer_lag_partition: Option<IntGaugeVec>,
    /// Rebalances, by kind (assign, revoke).
    pub rebalances: IntCounterVec,
    /// Partitions assigned.
    pub assigned_partitions: IntGauge,
    /// Wall-clock time the processing loop last turned.
    pub last_processed: Gauge,
    /// Wall clock minus the newest event time seen.
    pub event_time_lag: Gauge,
    /// Newest event time seen minus the slowest partition's (the one eviction follows).
    pub partition_skew: Gauge,
    /// Partitions paused for running too far ahead of the slowest (watermark alignment).
    pub partitions_paused: IntGauge,
    /// 1 when ready (assignment received, windows rebuilt), else 0.
    pub ready: IntGauge,
    /// Rules loaded.
    pub rules: IntGauge,
    /// Pre-dial checks answered, per candidate call, by verdict (`allowed`, `refused`), and
    /// requests turned away (`invalid`, `unauthorized`, `unavailable`).
    pub checks: IntCounterVec,
    /// Pre-dial check requests, received to answered.
    pub check_latency: Histogram,
    /// Reservations open (candidates allowed and reserved, not yet arrived or expired).
    pub reservations_open: IntGauge,
    /// Exact alert latencies in milliseconds, kept only when a load benchmark asks for them
    /// ([`Metrics::record_latencies`]); never exported.
    latencies: std::sync::Mutex<Option<Vec<i64>>>,
}

/// The `verdict` label values of `dialguard_checks_total`.
pub const CHECK_VERDICTS: [&str; 6] = [
    "allowed",
    "refused",
    "invalid",
    "unauthorized",
    "unavailable",
    "misdirected",
];

/// Output topics, the `topic` label of `dialguard_produce_errors_total`.
pub const OUTPUTS: [&str; 2] = ["alerts", "dlq"];

/// Classes of Kafka errors, the `error` label values.
pub const ERROR_CLASSES: [&str; 7] = [
    "timeout",
    "queue_full",
    "message_too_large",
    "transport",
    "all_brokers_down",
    "authorization",
    "other",
];

/// Maps a Kafka error to its bounded class.
pub fn error_class(e: &rdkafka::error::KafkaError) -> &'static str {
    use rdkafka::types::RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(C::MessageTimedOut | C::RequestTimedOut | C::OperationTimedOut) => "timeout",
        Some(C::QueueFull) => "queue_full",
        Some(C::MessageSizeTooLarge) => "message_too_large",
        Some(C::BrokerTransportFailure | C::NetworkException | C::Resolve) => "transport",
        Some(C::AllBrokersDown) => "all_brokers_down",
        Some(
            C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::Authentication
            | C::SaslAuthenticationFailed,
        ) => "authorization",
        _ => "other",
    }
}

/// Whether `e` only says that a partition was read to its end. With `enable.partition.eof`,
/// librdkafka reports an end both on the partition's queue (`KafkaError::PartitionEOF`) and,
/// for a partition whose queue is not polled at that moment, to the client's error callback as
/// a global error. Neither is a failure: it is not counted or logged as one.
pub fn is_partition_eof(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::error::KafkaError;
    // `rdkafka_error_code()` gives `None` for the first form: both are matched by name.
    matches!(
        e,
        KafkaError::PartitionEOF(_)
            | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
    )
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn fgauge(r: &Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("registered once");
    h
}

impl Metrics {
    /// Registers the catalogue; rule series are created at zero for `rules`.
    pub fn new(rules: &[Rule], partition_lag: bool) -> Metrics {
        let r = Registry::new();
        let build = IntGaugeVec::new(
            Opts::new(
                "dialguard_build_info",
                "Build metadata: always 1, the version in labels.",
            ),
            &["version", "git_commit"],
        )
        .expect("valid metric");
        r.register(Box::new(build.clone()))
            .expect("registered once");
        build
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("DIALGUARD_GIT_COMMIT").unwrap_or("unknown"),
            ])
            .set(1);
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("registered once");

        let m = Metrics {
            consumed: counter(
                &r,
                "dialguard_records_consumed_total",
                "Records read from the input topic.",
            ),
            rejected: counter_vec(
                &r,
                "dialguard_records_rejected_total",
                "Records refused, by reason; each went to the dead-letter topic.",
                &["reason"],
            ),
            late: counter(
                &r,
                "dialguard_calls_late_total",
                "Calls accepted behind the newest event time seen (judged late).",
            ),
            duplicates: counter(
                &r,
                "dialguard_calls_duplicate_total",
                "Calls whose call_id was already retained; not counted again.",
            ),
            offsets_skipped: counter(
                &r,
                "dialguard_input_offsets_skipped_total",
                "Input offsets passed over without a record to judge: records deleted by retention before they were read (or transaction markers and compacted records).",
            ),
            alerts: counter_vec(
                &r,
                "dialguard_alerts_total",
                "Alerts produced, by rule and severity.",
                &["rule", "severity"],
            ),
            rule_skipped: counter_vec(
                &r,
                "dialguard_rule_skipped_total",
                "Calls a rule could not judge because they lack one of its key fields (e.g. no account_id), by rule.",
                &["rule"],
            ),
            alerts_suppressed: counter(
                &r,
                "dialguard_alerts_suppressed_total",
                "Alerts not produced again: already published before a restart or rebalance.",
            ),
            directives: counter_vec(
                &r,
                "dialguard_directives_total",
                "Suppression directives produced (the suppressions topic), by rule and reason (cap_reached, cooldown); not counted again when already published before a restart.",
                &["rule", "reason"],
            ),
            produce_errors: counter_vec(
                &r,
                "dialguard_produce_errors_total",
                "Failed deliveries (the message is sent again), by output and error class.",
                &["topic", "error"],
            ),
            kafka_errors: counter_vec(
                &r,
                "dialguard_kafka_errors_total",
                "Errors reported by the Kafka client, by class.",
                &["error"],
            ),
            commit_errors: counter(
                &r,
                "dialguard_offset_commit_errors_total",
                "Offset commits that failed, or that the broker did not hold when asked 5-10 s later (sent again).",
            ),
            processing: histogram(
                &r,
                "dialguard_processing_duration_seconds",
                "Time per record on the processing thread: judge it and queue what it causes (decoding is on the decoder thread; writing and producing alerts and directives on the producer thread).",
                prometheus::exponential_buckets(1e-6, 4.0, 10).expect("buckets"),
            ),
            alert_latency: histogram(
                &r,
                "dialguard_alert_latency_seconds",
                "From the call record's Kafka timestamp to the alert's acknowledgement.",
                vec![
                    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
                ],
            ),
            window_keys: gauge(
                &r,
                "dialguard_window_keys",
                "Keys with a live window, over all rules.",
            ),
            retained_calls: gauge(
                &r,
                "dialguard_retained_calls",
                "Calls retained for their windows.",
            ),
            engine_heap: gauge(
                &r,
                "dialguard_engine_heap_bytes",
                "Estimated heap held by the engine's windows and records.",
            ),
            in_flight: gauge(
                &r,
                "dialguard_produce_in_flight_messages",
                "Produced messages not yet acknowledged by the broker.",
            ),
            rebuild_seconds: fgauge(
                &r,
                "dialguard_rebuild_duration_seconds",
                "Duration of the last window rebuild after an assignment.",
            ),
            rebuilds: counter(&r, "dialguard_rebuilds_total", "Window rebuilds done."),
            rebuilds_abandoned: counter(
                &r,
                "dialguard_rebuilds_abandoned_total",
                "Window rebuilds abandoned unfinished because the assignment changed (a rebalance) before they ended; what they read counts in dialguard_rebuild_records_total.",
            ),
            rebuild_records: {
                let c = counter_vec(
                    &r,
                    "dialguard_rebuild_records_total",
                    "Records read back during rebuilds, by topic: input (history), alerts or suppressions (directives).",
                    &["topic"],
                );
                for topic in ["input", "alerts", "suppressions"] {
                    c.with_label_values(&[topic]);
                }
                c
            },
            snapshot_restores: {
                let c = counter_vec(
                    &r,
                    "dialguard_snapshot_restores_total",
                    "Assignments that looked for a snapshot of the windows, by result: restored, or why not (absent, unreadable, other_rules, other_partitions, not_at_commit).",
                    &["result"],
                );
                for result in [
                    "restored",
                    "absent",
                    "unreadable",
                    "other_rules",
                    "other_partitions",
                    "not_at_commit",
                ] {
                    c.with_label_values(&[result]);
                }
                c
            },
            snapshot_writes: {
                let c = counter_vec(
                    &r,
                    "dialguard_snapshot_writes_total",
                    "Snapshots of the windows written, by result (ok, failed).",
                    &["result"],
                );
                for result in ["ok", "failed"] {
                    c.with_label_values(&[result]);
                }
                c
            },
            reference_records: {
                let c = counter_vec(
                    &r,
                    "dialguard_reference_records_total",
                    "Reference topic records read, by kind (status, contact) and result: applied (a record, new or replacing one), withdrawn (a tombstone), rejected (invalid, sent to the dead-letter topic).",
                    &["kind", "result"],
                );
                for kind in ["status", "contact"] {
                    for outcome in ["applied", "withdrawn", "rejected"] {
                        c.with_label_values(&[kind, outcome]);
                    }
                }
                c
            },
            contacts_known: gauge(
                &r,
                "dialguard_contacts_known",
                "Contact-book records known (read from the contacts topic and not withdrawn).",
            ),
            statuses_known: gauge(
                &r,
                "dialguard_statuses_known",
                "Debtor statuses known (read from the status topic and not withdrawn).",
            ),
            statuses_in_force: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "dialguard_statuses_in_force",
                        "Debtor statuses in force at the newest event time judged, by kind of status.",
                    ),
                    &["kind"],
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("registered once");
                for k in crate::engine::event::StatusKind::ALL {
                    g.with_label_values(&[k.as_str()]);
                }
                g
            },
            snapshot_bytes: gauge(
                &r,
                "dialguard_snapshot_size_bytes",
                "Size of the last snapshot of the windows written.",
            ),
            snapshot_seconds: fgauge(
                &r,
                "dialguard_snapshot_duration_seconds",
                "Time the processing loop was held taking the last snapshot (writing it to disk is off the loop).",
            ),
            consumer_lag: gauge(
                &r,
                "dialguard_consumer_lag_messages",
                "Messages behind the end of the assigned input partitions.",
            ),
            consumer_lag_partition: partition_lag.then(|| {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "dialguard_partition_consumer_lag_messages",
                        "Messages behind the end of one assigned input partition (opt-in).",
                    ),
                    &["topic", "partition"],
                )
                .expect("valid metric");
                r.register(Box::new(g.clone())).expect("registered once");
                g
            }),
            rebalances: counter_vec(
                &r,
                "dialguard_kafka_rebalances_total",
                "Consumer group rebalances, by kind.",
                &["kind"],
            ),
            assigned_partitions: gauge(
                &r,
                "dialguard_kafka_assigned_partitions",
                "Input partitions assigned to this instance.",
            ),
            last_processed: fgauge(
                &r,
                "dialguard_last_processed_timestamp_seconds",
                "Wall-clock time the processing loop last turned (a heartbeat).",
            ),
            event_time_lag: fgauge(
                &r,
                "dialguard_event_time_lag_seconds",
                "Wall clock minus the newest event time seen.",
            ),
            partition_skew: fgauge(
                &r,
                "dialguard_partition_event_time_skew_seconds",
                "Newest event time seen minus that of the slowest partition still delivering (state is kept behind the slowest).",
            ),
            partitions_paused: gauge(
                &r,
                "dialguard_kafka_partitions_paused",
                "Input partitions paused for running more than kafka.max_partition_skew ahead of the slowest.",
            ),
            ready: gauge(
                &r,
                "dialguard_ready",
                "1 when ready: assignment received and windows rebuilt.",
            ),
            rules: gauge(&r, "dialguard_rules", "Rules loaded."),
            checks: counter_vec(
                &r,
                "dialguard_checks_total",
                "Pre-dial checks: candidate calls allowed or refused, and requests turned away (invalid, unauthorized, unavailable, misdirected: the debtor is held by another instance).",
                &["verdict"],
            ),
            check_latency: histogram(
                &r,
                "dialguard_check_duration_seconds",
                "Pre-dial check requests, from received to answered.",
                prometheus::exponential_buckets(5e-5, 2.0, 16).expect("buckets"),
            ),
            reservations_open: gauge(
                &r,
                "dialguard_check_reservations_open",
                "Reserved attempts not yet arrived as calls or expired.",
            ),
            latencies: std::sync::Mutex::new(None),
            registry: r,
        };
        for reason in Reason::ALL.iter() {
            m.rejected.with_label_values(&[reason.as_str()]);
        }
        for verdict in CHECK_VERDICTS {
            m.checks.with_label_values(&[verdict]);
        }
        for rule in rules {
            m.alerts
                .with_label_values(&[rule.id.as_str(), rule.severity.as_str()]);
            m.rule_skipped.with_label_values(&[rule.id.as_str()]);
        }
        for t in OUTPUTS {
            for e in ERROR_CLASSES {
                m.produce_errors.with_label_values(&[t, e]);
            }
        }
        for e in ERROR_CLASSES {
            m.kafka_errors.with_label_values(&[e]);
        }
        for k in ["assign", "revoke"] {
            m.rebalances.with_label_values(&[k]);
        }
        m.rules.set(rules.len() as i64);
        m
    }

    /// Observes one alert's latency (record timestamp → acknowledged), in milliseconds.
    pub fn observe_alert_latency(&self, ms: i64) {
        self.alert_latency.observe(ms.max(0) as f64 / 1000.0);
        if let Some(v) = self
            .latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            v.push(ms);
        }
    }

    /// Starts (or stops) keeping every alert latency, for load benchmarks.
    pub fn record_latencies(&self, on: bool) {
        *self.latencies.lock().unwrap_or_else(|e| e.into_inner()) = on.then(Vec::new);
    }

    /// The latencies kept since [`Metrics::record_latencies`], emptied.
    pub fn take_latencies(&self) -> Vec<i64> {
        self.latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The registry, Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding");
        String::from_utf8(buf).expect("UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_end_is_not_an_error_in_either_form() {
        use rdkafka::error::KafkaError;
        use rdkafka::types::RDKafkaErrorCode as C;
        assert!(is_partition_eof(&KafkaError::PartitionEOF(3)));
        assert!(is_partition_eof(&KafkaError::Global(C::PartitionEOF)));
        assert!(!is_partition_eof(&KafkaError::Global(C::AllBrokersDown)));
        assert!(!is_partition_eof(&KafkaError::MessageConsumption(
            C::UnknownTopicOrPartition
        )));
    }

    fn families(text: &str) -> Vec<(String, String)> {
        // (name, type) from the "# TYPE name type" lines.
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| {
                let mut it = l.split_whitespace();
                (it.next().unwrap().to_owned(), it.next().unwrap().to_owned())
            })
            .collect()
    }

    #[test]
    fn every_exposed_name_follows_the_naming_rules() {
        let rules = crate::config::Settings::load_with_env(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dialguard.toml"),
            Some(Default::default()),
        )
        .unwrap()
        .rules;
        let m = Metrics::new(&rules, true);
        m.consumer_lag_partition
            .as_ref()
            .unwrap()
            .with_label_values(&["dialer.calls", "0"])
            .set(1);
        let text = m.render();
        let fams = families(&text);
        assert!(fams.len() >= 25, "{fams:?}");
        for (name, ty) in &fams {
            assert!(
                name.starts_with("dialguard_") || name.starts_with("process_"),
                "{name}: no dialguard_ prefix"
            );
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{name}: outside [a-z0-9_]"
            );
            assert_eq!(
                name.matches("_total").count(),
                usize::from(ty == "counter"),
                "{name} ({ty}): counters end in _total exactly once, nothing else has it"
            );
            if ty == "counter" {
                assert!(name.ends_with("_total"), "{name}");
            }
            if ty == "histogram" {
                assert!(name.ends_with("_seconds"), "{name}: durations in seconds");
            }
            for bad in ["_ms", "_millis", "_micros", "_kb", "_mb", "_percent"] {
                assert!(!name.contains(bad), "{name}: not a base unit");
            }
        }
        // Labels are only the allowed ones.
        let allowed = [
            "reason",
            "rule",
            "severity",
            "topic",
            "error",
            "kind",
            "partition",
            "version",
            "git_commit",
            "le",
            "verdict",
            "result",
        ];
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some(labels) = line.split_once('{').map(|(_, r)| r) {
                for pair in labels.split('}').next().unwrap().split(',') {
                    let k = pair.split('=').next().unwrap();
                    assert!(allowed.contains(&k), "label {k} in {line}");
                }
            }
        }
        // Known series exist at zero before anything happens.
        assert!(text.contains("dialguard_records_rejected_total{reason=\"not_json\"} 0"));
        assert!(text.contains("dialguard_alerts_total{rule=\"cn-cba-night-calls\""));
        assert!(text.contains("dialguard_build_info{"));
    }
}
