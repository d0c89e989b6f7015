//! The deployment files against the service itself: every metric name and label that the Grafana
//! dashboard (`deploy/grafana/dialguard.json`) and the Prometheus rules
//! (`deploy/prometheus/alerts.yml` and its unit tests) use must be one a running instance
//! exposes on `/metrics`, so the three cannot drift apart. The PromQL itself is parsed and the
//! rules unit-tested by promtool (`deploy/check.sh`, run by `.ci/run`).

use super::service::{http_get, start, traffic, wait_done, Kafka, PATIENCE};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The PromQL of the dashboard: every panel query and every template-variable query.
fn dashboard_queries() -> Vec<String> {
    let d: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/dialguard.json")).unwrap();
    let mut out = Vec::new();
    fn panels(v: &serde_json::Value, out: &mut Vec<String>) {
        for p in v.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push(t["expr"].as_str().unwrap().to_owned());
            }
            panels(&p["panels"], out);
        }
    }
    panels(&d["panels"], &mut out);
    for v in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]["query"].as_str() {
            out.push(q.to_owned());
        }
    }
    out
}

/// Everything the deployment files say in PromQL or in series names.
fn deployment_text() -> String {
    let mut text = dashboard_queries().join("\n");
    for f in [
        "deploy/prometheus/alerts.yml",
        "deploy/prometheus/alerts.test.yml",
    ] {
        text.push('\n');
        text.push_str(&read(f));
    }
    text
}

/// The metric names in `text`: dialguard's own and the process collector's.
fn metric_names(text: &str) -> BTreeSet<String> {
    regex::Regex::new(r"\b(?:dialguard|process)_[a-z0-9_]+\b")
        .unwrap()
        .find_iter(text)
        .map(|m| m.as_str().to_owned())
        .collect()
}

/// Label names used in groupings (`by`, `on`, `without`, `ignoring`) and in matchers.
fn label_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let grouping = regex::Regex::new(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)").unwrap();
    for c in grouping.captures_iter(text) {
        for l in c[1].split(',').map(str::trim).filter(|l| !l.is_empty()) {
            out.insert(l.to_owned());
        }
    }
    let matcher = regex::Regex::new(r#"[{,]\s*([a-z_][a-z0-9_]*)\s*(?:=~|!~|!=|=)\s*""#).unwrap();
    for c in matcher.captures_iter(text) {
        out.insert(c[1].to_owned());
    }
    out
}

/// What a scrape exposes: sample names (a histogram's `_bucket`, `_sum`, `_count` included) and
/// label names.
fn exposed(page: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut names = BTreeSet::new();
    let mut labels = BTreeSet::new();
    for line in page
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        names.insert(line[..name_end].to_owned());
        if let Some(rest) = line[name_end..].strip_prefix('{') {
            for pair in rest.split('}').next().unwrap().split("\",") {
                if let Some((k, _)) = pair.split_once('=') {
                    labels.insert(k.trim().to_owned());
                }
            }
        }
    }
    (names, labels)
}

#[test]
fn the_dashboard_and_alert_rules_use_only_what_a_running_instance_exposes() {
    let kafka = Kafka::new("ops");
    let mut settings = kafka.settings("config/dialguard.toml");
    // The dashboard's per-partition lag panel needs the opt-in series, and statistics often
    // enough that it appears quickly.
    settings.kafka.partition_lag_metric = true;
    settings
        .kafka
        .client
        .push(("statistics.interval.ms".into(), "200".into()));
    let svc = start(settings);
    kafka.produce(&traffic(600, 21));
    wait_done(&kafka, &[&svc]);

    // The container health check's probe, against the real endpoints.
    let addr = svc.handles.http_addr;
    let (code, body) = dialguard::http::probe(addr, "/livez", Duration::from_secs(5)).unwrap();
    assert_eq!((code, body.as_str()), (200, "ok"));
    let (code, body) = dialguard::http::probe(addr, "/readyz", Duration::from_secs(5)).unwrap();
    assert_eq!(code, 200, "{body}");

    let deadline = Instant::now() + PATIENCE;
    let page = loop {
        let (code, page) = http_get(addr, "/metrics");
        assert_eq!(code, 200);
        if page.contains("dialguard_partition_consumer_lag_messages{") {
            break page;
        }
        assert!(
            Instant::now() < deadline,
            "no per-partition lag series: {page}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    svc.stop();

    let (names, labels) = exposed(&page);
    let text = deployment_text();
    let used = metric_names(&text);
    assert!(used.len() >= 25, "too few metric names found: {used:?}");
    let missing: Vec<_> = used.difference(&names).collect();
    assert!(
        missing.is_empty(),
        "the deployment files use metrics the service does not expose: {missing:?}"
    );
    // Labels Prometheus adds to every target (`instance`, `job`) or that the files introduce
    // themselves (`pod` by relabelling) are not on /metrics.
    let target_labels = ["instance", "job", "pod"];
    let unknown: Vec<_> = label_names(&text)
        .into_iter()
        .filter(|l| !labels.contains(l) && !target_labels.contains(&l.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "the deployment files use labels the service does not expose: {unknown:?}"
    );
}

#[test]
fn the_drift_check_sees_names_labels_and_histogram_series() {
    // The helpers above, on text whose answer is known: a check that found nothing could not fail.
    let text = r#"sum by (rule, severity) (rate(dialguard_alerts_total{instance=~"$instance", rule=~"x"}[5m]))
        histogram_quantile(0.99, sum by (le) (rate(dialguard_alert_latency_seconds_bucket[5m])))
        process_open_fds and on (instance) dialguard_build_info"#;
    assert_eq!(
        metric_names(text).into_iter().collect::<Vec<_>>(),
        [
            "dialguard_alert_latency_seconds_bucket",
            "dialguard_alerts_total",
            "dialguard_build_info",
            "process_open_fds"
        ]
    );
    assert_eq!(
        label_names(text).into_iter().collect::<Vec<_>>(),
        ["instance", "le", "rule", "severity"]
    );
    let page = "# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_sum 2\nh_count 1\nc_total{rule=\"a,b\",severity=\"high\"} 3\n";
    let (names, labels) = exposed(page);
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["c_total", "h_bucket", "h_count", "h_sum"]
    );
    assert_eq!(
        labels.into_iter().collect::<Vec<_>>(),
        ["le", "rule", "severity"]
    );
}

#[test]
fn the_dashboard_shows_what_operators_and_compliance_need() {
    // Each panel has a unique id and at least one query; the dashboard covers the signals the
    // operations issue names.
    let d: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/dialguard.json")).unwrap();
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "panel id twice: {p}");
        if p["type"] != "row" {
            assert!(
                !p["targets"].as_array().unwrap().is_empty(),
                "{} has no query",
                p["title"]
            );
            assert!(p["gridPos"]["w"].as_u64().unwrap() > 0);
        }
    }
    let used = metric_names(&dashboard_queries().join("\n"));
    for m in [
        "dialguard_records_consumed_total",
        "dialguard_alerts_total",
        "dialguard_records_rejected_total",
        "dialguard_consumer_lag_messages",
        "dialguard_partition_consumer_lag_messages",
        "dialguard_calls_late_total",
        "dialguard_calls_duplicate_total",
        "dialguard_alert_latency_seconds_bucket",
        "dialguard_rebuild_duration_seconds",
        "dialguard_retained_calls",
        "dialguard_engine_heap_bytes",
        "process_resident_memory_bytes",
        "dialguard_ready",
    ] {
        assert!(used.contains(m), "the dashboard does not show {m}");
    }
    let rules = read("deploy/prometheus/alerts.yml");
    for a in [
        "DialguardProcessingStalled",
        "DialguardConsumerLagGrowing",
        "DialguardDeadLetterRateHigh",
        "DialguardProduceErrors",
        "DialguardNotReady",
        "DialguardAlertRateSpike",
    ] {
        assert!(rules.contains(&format!("alert: {a}")), "no alert {a}");
        // Every alert names its runbook section, and the section exists.
        let anchor = format!("docs/operations.md#{}", a.to_lowercase());
        assert!(rules.contains(&anchor), "{a} has no runbook link");
    }
    let ops = read("docs/operations.md");
    for line in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            ops.contains(&format!("### {line}")),
            "docs/operations.md has no section for {line}"
        );
    }
}
