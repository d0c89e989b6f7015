//! Configuration: every file in `config/` loads, overrides come from the environment, and broken
//! files fail with the exact key and reason.

use dialguard::config::Settings;
use dialguard::engine::time::NANOS_PER_SEC;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn no_env() -> Option<HashMap<String, String>> {
    Some(HashMap::new())
}

fn load_text(text: &str) -> Result<Settings, dialguard::config::ConfigError> {
    let dir = std::env::temp_dir().join(format!(
        "dialguard-cfg-{}-{}",
        std::process::id(),
        fastrand()
    ));
    std::fs::create_dir_all(dir.join("packs")).unwrap();
    std::fs::copy(
        root().join("config/packs/us-regf.toml"),
        dir.join("packs/us-regf.toml"),
    )
    .unwrap();
    let p = dir.join("dialguard.toml");
    std::fs::write(&p, text).unwrap();
    let r = Settings::load_with_env(&p, no_env());
    std::fs::remove_dir_all(&dir).ok();
    r
}

fn fastrand() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn key_of(text: &str) -> String {
    match load_text(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e
            .key()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("<no key: {e}>")),
    }
}

#[test]
fn the_default_config_loads() {
    let s = Settings::load_with_env(&root().join("config/dialguard.toml"), no_env()).unwrap();
    assert_eq!(s.default_timezone, "Asia/Shanghai");
    assert!(s.rules.len() >= 5);
    assert_eq!(s.engine.allowed_lateness, 3600 * 1_000_000_000);
}

#[test]
fn every_file_in_config_loads_or_fails_as_named() {
    let mut n = 0;
    for e in std::fs::read_dir(root().join("config")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.extension().is_none_or(|x| x != "toml") || name.starts_with('.') {
            continue;
        }
        n += 1;
        let r = Settings::load_with_env(&p, no_env());
        if name.starts_with("invalid") {
            assert!(r.is_err(), "{name} must be refused");
        } else {
            let s = r.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!s.rules.is_empty(), "{name}");
        }
    }
    assert!(n >= 4, "config files: {n}");
}

#[test]
fn every_pack_loads_alone_and_all_load_together() {
    let packs: Vec<String> = std::fs::read_dir(root().join("config/packs"))
        .unwrap()
        .map(|e| format!("packs/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    assert!(packs.len() >= 7);
    for p in &packs {
        let c = write_config(&format!("[policy]\npacks = [\"{p}\"]\n"));
        let s = Settings::load_with_env(&c.path, no_env()).unwrap_or_else(|e| panic!("{p}: {e}"));
        for r in &s.rules {
            assert!(r.citation.is_some(), "{p}: rule {} has no citation", r.id);
        }
    }
    let all = packs
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let c = write_config(&format!("[policy]\npacks = [{all}]\n"));
    let s = Settings::load_with_env(&c.path, no_env()).unwrap();
    assert!(s.rules.len() >= 20);
}

/// A config file with the given text in a fresh temporary directory that holds a copy of
/// `config/packs`, so pack paths resolve. Removed when the guard drops.
struct TempConfig {
    dir: PathBuf,
    path: PathBuf,
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn write_config(text: &str) -> TempConfig {
    let dir = std::env::temp_dir().join(format!(
        "dialguard-cfgdir-{}-{}",
        std::process::id(),
        fastrand()
    ));
    std::fs::create_dir_all(dir.join("packs")).unwrap();
    for e in std::fs::read_dir(root().join("config/packs")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join("packs").join(p.file_name().unwrap())).unwrap();
    }
    let path = dir.join("dialguard.toml");
    std::fs::write(&path, text).unwrap();
    TempConfig { dir, path }
}

#[test]
fn the_invalid_example_fails_with_key_and_reason() {
    let e =
        Settings::load_with_env(&root().join("config/invalid.example.toml"), no_env()).unwrap_err();
    assert_eq!(e.key(), Some("engine.default_timezone"));
    assert!(
        e.to_string()
            .contains("unknown time zone \"Asia/Shanghia\""),
        "{e}"
    );
}

#[test]
fn environment_overrides_keys() {
    let c = write_config(
        "[engine]\ndefault_timezone = \"UTC\"\n[policy]\npacks = [\"packs/us-regf.toml\"]\n",
    );
    let p = c.path.clone();
    let env: HashMap<String, String> = [
        (
            "DIALGUARD__ENGINE__DEFAULT_TIMEZONE".to_owned(),
            "Asia/Manila".to_owned(),
        ),
        (
            "DIALGUARD__ENGINE__ALLOWED_LATENESS".to_owned(),
            "2h".to_owned(),
        ),
    ]
    .into();
    let s = Settings::load_with_env(&p, Some(env)).unwrap();
    assert_eq!(s.default_timezone, "Asia/Manila");
    assert_eq!(s.engine.allowed_lateness, 7200 * 1_000_000_000);
    let bad: HashMap<String, String> = [(
        "DIALGUARD__ENGINE__DEFAULT_TIMEZONE".to_owned(),
        "Nowhere".to_owned(),
    )]
    .into();
    let e = Settings::load_with_env(&p, Some(bad)).unwrap_err();
    assert_eq!(e.key(), Some("engine.default_timezone"));
}

const PACK: &str = "[policy]\npacks = [\"packs/us-regf.toml\"]\n";

#[test]
fn broken_configurations_name_the_key() {
    assert_eq!(
        key_of(&format!(
            "{PACK}[engine]\ndefault_timezone = \"Nowhere/City\"\n"
        )),
        "engine.default_timezone"
    );
    assert_eq!(
        key_of(&format!("{PACK}[engine]\ndefault_region = \"XX\"\n")),
        "engine.default_region"
    );
    assert_eq!(
        key_of(&format!("{PACK}[engine]\nallowed_lateness = \"soon\"\n")),
        "engine.allowed_lateness"
    );
    assert_eq!(
        key_of(&format!("{PACK}[engine]\nmax_record_bytes = 1\n")),
        "engine.max_record_bytes"
    );
    assert_eq!(
        key_of("[policy]\npacks = [\"packs/missing.toml\"]\n"),
        "policy.packs[0]"
    );
    assert_eq!(key_of("[engine]\n"), "policy.packs");
    // Duplicate rule ids across a pack and inline rules.
    let dup = format!("{PACK}[[rules]]\nid = \"regf-7in7-consumer\"\nkind = \"forbid\"\nseverity = \"low\"\n[rules.when]\nrelation = [\"other\"]\n");
    assert_eq!(key_of(&dup), "rules[0].id");
    let unknown_filter = "[[rules]]\nid = \"x\"\nkind = \"forbid\"\nseverity = \"low\"\n[rules.when]\nrelatoin = [\"other\"]\n";
    assert_eq!(key_of(unknown_filter), "rules[0].when.relatoin");
    let bad_window = "[[rules]]\nid = \"x\"\nkind = \"calling_hours\"\nseverity = \"low\"\nwindow = \"7d\"\nallowed = [{ from = \"08:00\", to = \"21:00\" }]\n";
    assert_eq!(key_of(bad_window), "rules[0].window");
    let bad_limit = "[[rules]]\nid = \"x\"\nkind = \"cap\"\nseverity = \"low\"\nkey = [\"phone\"]\nwindow = \"7d\"\nlimit = 0\n";
    assert_eq!(key_of(bad_limit), "rules[0].limit");
    let bad_zone = "[[rules]]\nid = \"x\"\nkind = \"cap\"\nseverity = \"low\"\nkey = [\"phone\"]\nwindow = \"7d\"\nlimit = 2\ntimezone = \"Mars\"\n";
    assert_eq!(key_of(bad_zone), "rules[0].timezone");
    assert_eq!(
        key_of(&format!(
            "{PACK}[service]\nsnapshot_dir = \"no/such/dir\"\n"
        )),
        "service.snapshot_dir"
    );
    assert_eq!(
        key_of(&format!("{PACK}[service]\nsnapshot_every = \"10ms\"\n")),
        "service.snapshot_every"
    );
}

#[test]
fn status_rules_and_the_status_topic_are_validated_with_the_key() {
    let rule = |extra: &str| {
        format!("[[rules]]\nid = \"s\"\nkind = \"status\"\nseverity = \"high\"\n{extra}")
    };
    let ok =
        rule("key = [\"debtor_id\"]\nstatuses = [\"cease_communication\"]\nlookback = \"30d\"\n");
    let s = load_text(&ok).unwrap();
    assert_eq!(s.rules[0].reach(), 30 * 86_400 * 1_000_000_000);
    assert_eq!(
        s.status_rule_without_topic().map(|r| r.id.as_str()),
        Some("s")
    );
    let described = dialguard::policy::describe_rule(&s.rules[0]);
    assert!(described.contains("cease_communication"), "{described}");
    // What a status rule needs, and what it does not take.
    assert_eq!(key_of(&rule("statuses = [\"deceased\"]\n")), "rules[0].key");
    assert_eq!(
        key_of(&rule("key = [\"agent_id\"]\nstatuses = [\"deceased\"]\n")),
        "rules[0].key"
    );
    assert_eq!(
        key_of(&rule(
            "key = [\"debtor_id\", \"phone\"]\nstatuses = [\"deceased\"]\n"
        )),
        "rules[0].key"
    );
    assert_eq!(key_of(&rule("key = [\"phone\"]\n")), "rules[0].statuses");
    assert_eq!(
        key_of(&rule("key = [\"phone\"]\nstatuses = [\"vacation\"]\n")),
        "rules[0].statuses"
    );
    assert_eq!(
        key_of(&rule("key = [\"phone\"]\nstatuses = []\n")),
        "rules[0].statuses"
    );
    assert_eq!(
        key_of(&rule(
            "key = [\"phone\"]\nstatuses = [\"deceased\"]\nlookback = \"soon\"\n"
        )),
        "rules[0].lookback"
    );
    assert_eq!(
        key_of(&rule(
            "key = [\"phone\"]\nstatuses = [\"deceased\"]\nlimit = 3\n"
        )),
        "rules[0].limit"
    );
    let cap_with_statuses = "[[rules]]\nid = \"x\"\nkind = \"cap\"\nseverity = \"low\"\nkey = [\"phone\"]\nwindow = \"7d\"\nlimit = 2\nstatuses = [\"deceased\"]\n";
    assert_eq!(key_of(cap_with_statuses), "rules[0].statuses");
    // The status topic: a valid name, not one of the [kafka] topics.
    let with_topic = |t: &str| format!("{ok}[reference]\nstatus_topic = \"{t}\"\n");
    let s = load_text(&with_topic("compliance.statuses")).unwrap();
    assert_eq!(
        s.reference.status_topic.as_deref(),
        Some("compliance.statuses")
    );
    assert!(s.status_rule_without_topic().is_none());
    assert_eq!(key_of(&with_topic("bad topic!")), "reference.status_topic");
    assert_eq!(
        key_of(&with_topic("compliance.alerts")),
        "reference.status_topic"
    );
    assert!(load_text(&with_topic(""))
        .unwrap()
        .reference
        .status_topic
        .is_none());
}

#[test]
fn a_relative_snapshot_dir_is_beside_the_configuration() {
    // "packs" exists beside every configuration `load_text` writes.
    let s = load_text(&format!("{PACK}[service]\nsnapshot_dir = \"packs\"\n")).unwrap();
    let dir = s.service.snapshot_dir.expect("a directory");
    assert!(dir.ends_with("packs"), "{}", dir.display());
    assert_eq!(dir.parent(), s.path.parent());
    assert_eq!(load_text(PACK).unwrap().service.snapshot_dir, None);
}

#[test]
fn unknown_keys_are_refused() {
    let e = load_text(&format!("{PACK}[engine]\ndefault_timezon = \"UTC\"\n")).unwrap_err();
    assert!(e.to_string().contains("default_timezon"), "{e}");
    let e = load_text(&format!("{PACK}[enigne]\n")).unwrap_err();
    assert!(e.to_string().contains("enigne"), "{e}");
    let e =
        load_text("[[rules]]\nid = \"x\"\nkind = \"forbid\"\nseverity = \"low\"\nwhen_not = 3\n")
            .unwrap_err();
    assert!(e.to_string().contains("when_not"), "{e}");
}

#[test]
fn a_broken_pack_names_file_and_key() {
    let dir = std::env::temp_dir().join(format!("dialguard-pack-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bad.toml"), "[[rules]]\nid = \"x\"\nkind = \"cap\"\nseverity = \"low\"\nkey = [\"phone\"]\nwindow = { local_days = 0 }\nlimit = 3\n").unwrap();
    std::fs::write(dir.join("c.toml"), "[policy]\npacks = [\"bad.toml\"]\n").unwrap();
    let e = Settings::load_with_env(&dir.join("c.toml"), no_env()).unwrap_err();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(e.key(), Some("rules[0].window"));
    assert!(e.to_string().contains("bad.toml"), "{e}");
}

#[test]
fn service_sections_have_defaults_and_take_overrides() {
    let s = load_text(PACK).unwrap();
    assert_eq!(s.kafka.brokers, "localhost:9092");
    assert_eq!(s.kafka.inputs[0].topic, "dialer.call-events");
    assert_eq!(s.kafka.inputs.len(), 1);
    assert_eq!(s.kafka.alerts_topic, "compliance.alerts");
    assert_eq!(s.kafka.dlq_topic, "dialer.call-events.dlq");
    assert_eq!(
        s.kafka.suppressions_topic.as_deref(),
        Some("compliance.suppressions")
    );
    let off = load_text(&format!("{PACK}[kafka]\nsuppressions_topic = \"\"\n")).unwrap();
    assert_eq!(off.kafka.suppressions_topic, None);
    assert_eq!(
        s.kafka.snapshots_topic.as_deref(),
        Some("dialguard.snapshots")
    );
    let off = load_text(&format!("{PACK}[kafka]\nsnapshots_topic = \"\"\n")).unwrap();
    assert_eq!(off.kafka.snapshots_topic, None);
    assert_eq!(s.http.listen.to_string(), "127.0.0.1:9898");
    assert_eq!(s.service.shutdown_grace.as_secs(), 30);
    assert_eq!(s.kafka.instance_id, None);
    assert_eq!(s.kafka.max_partition_skew, 86_400 * NANOS_PER_SEC);
    assert_eq!(s.kafka.idle_after.as_secs(), 30);

    let c = write_config(&format!(
        "{PACK}[kafka]\nbrokers = \"k1:9092\"\n[kafka.client]\n\"security.protocol\" = \"SASL_SSL\"\n\"session.timeout.ms\" = 6000\n"
    ));
    let env: HashMap<String, String> = [
        ("DIALGUARD__KAFKA__BROKERS".to_owned(), "k2:9093".to_owned()),
        (
            "DIALGUARD__KAFKA__CLIENT__SASL_PASSWORD".to_owned(),
            "s3cret".to_owned(),
        ),
        (
            "DIALGUARD__HTTP__LISTEN".to_owned(),
            "0.0.0.0:9999".to_owned(),
        ),
        // A StatefulSet passes each pod its name.
        (
            "DIALGUARD__KAFKA__INSTANCE_ID".to_owned(),
            "dialguard-0".to_owned(),
        ),
        (
            "DIALGUARD__KAFKA__MAX_PARTITION_SKEW".to_owned(),
            "6h".to_owned(),
        ),
    ]
    .into();
    let s = Settings::load_with_env(&c.path, Some(env)).unwrap();
    assert_eq!(s.kafka.instance_id.as_deref(), Some("dialguard-0"));
    assert_eq!(s.kafka.max_partition_skew, 6 * 3600 * NANOS_PER_SEC);
    assert_eq!(s.kafka.brokers, "k2:9093");
    assert_eq!(s.http.listen.to_string(), "0.0.0.0:9999");
    let client: HashMap<_, _> = s.kafka.client.iter().cloned().collect();
    assert_eq!(client["security.protocol"], "SASL_SSL");
    assert_eq!(client["session.timeout.ms"], "6000");
    assert_eq!(client["sasl.password"], "s3cret");
}

#[test]
fn broken_service_sections_name_the_key() {
    assert_eq!(
        key_of(&format!("{PACK}[kafka]\nbrokers = \"\"\n")),
        "kafka.brokers"
    );
    assert_eq!(
        key_of(&format!("{PACK}[kafka]\nalerts_topic = \"bad topic\"\n")),
        "kafka.alerts_topic"
    );
    assert_eq!(
        key_of(&format!(
            "{PACK}[kafka]\ndlq_topic = \"dialer.call-events\"\n"
        )),
        "kafka.dlq_topic"
    );
    for bad in ["compliance.alerts", "bad topic"] {
        assert_eq!(
            key_of(&format!("{PACK}[kafka]\nsuppressions_topic = \"{bad}\"\n")),
            "kafka.suppressions_topic"
        );
    }
    for bad in ["compliance.suppressions", "dialer.call-events", "bad topic"] {
        assert_eq!(
            key_of(&format!("{PACK}[kafka]\nsnapshots_topic = \"{bad}\"\n")),
            "kafka.snapshots_topic"
        );
    }
    assert_eq!(
        key_of(&format!("{PACK}[kafka]\ncommit_interval = \"0s\"\n")),
        "kafka.commit_interval"
    );
    assert_eq!(
        key_of(&format!(
            "{PACK}[kafka.client]\n\"enable.auto.commit\" = true\n"
        )),
        "kafka.client.enable.auto.commit"
    );
    assert_eq!(
        key_of(&format!(
            "{PACK}[kafka.client]\n\"partition.assignment.strategy\" = \"cooperative-sticky\"\n"
        )),
        "kafka.client.partition.assignment.strategy"
    );
    // Static membership and end-of-partition events are dialguard's: [kafka] instance_id.
    for owned in ["group.instance.id", "enable.partition.eof"] {
        assert_eq!(
            key_of(&format!("{PACK}[kafka.client]\n\"{owned}\" = \"x\"\n")),
            format!("kafka.client.{owned}")
        );
    }
    assert_eq!(
        key_of(&format!("{PACK}[kafka]\nmax_partition_skew = \"0s\"\n")),
        "kafka.max_partition_skew"
    );
    assert_eq!(
        key_of(&format!("{PACK}[kafka]\nidle_after = \"10ms\"\n")),
        "kafka.idle_after"
    );
    assert_eq!(
        key_of(&format!("{PACK}[kafka]\ninstance_id = \"a\\nb\"\n")),
        "kafka.instance_id"
    );
    let e = load_text(&format!("{PACK}[kafka.client]\n\"no.such.property\" = 1\n")).unwrap_err();
    assert_eq!(e.key(), Some("kafka.client.no.such.property"), "{e}");
    assert!(e.to_string().contains("librdkafka refused"), "{e}");
    assert_eq!(
        key_of(&format!("{PACK}[http]\nlisten = \"localhost\"\n")),
        "http.listen"
    );
    assert_eq!(
        key_of(&format!("{PACK}[service]\nshutdown_grace = \"forever\"\n")),
        "service.shutdown_grace"
    );
    assert_eq!(
        key_of(&format!("{PACK}[kafka]\ngroupid = \"x\"\n")),
        "kafka.groupid"
    );
    for (section, key) in [
        ("[check]\nlisten = \"0.0.0.0:9899\"\n", "check.listen"),
        ("[check]\nlisten = \"nowhere\"\n", "check.listen"),
        ("[check]\ntoken = \"short\"\n", "check.token"),
        (
            "[check]\ntokens_file = \"no-such-file\"\n",
            "check.tokens_file",
        ),
        ("[check]\nmax_batch = 0\n", "check.max_batch"),
        ("[check]\nmax_body_bytes = 10\n", "check.max_body_bytes"),
        (
            "[check]\nreservation_ttl = \"2h\"\n",
            "check.reservation_ttl",
        ),
        ("[check]\nqueue = 0\n", "check.queue"),
        ("[check]\ntimeout = \"0s\"\n", "check.timeout"),
        ("[check]\npartitioner = \"random\"\n", "check.partitioner"),
    ] {
        assert_eq!(key_of(&format!("{PACK}{section}")), key, "{section}");
    }
    // Listening beyond loopback is fine with a token; off, the check API needs none.
    let s = load_text(&format!(
        "{PACK}[check]\nlisten = \"0.0.0.0:9899\"\ntoken = \"0123456789abcdef\"\n"
    ))
    .unwrap();
    assert_eq!(s.check.tokens.len(), 1);
    // Debtors keyed to partitions as Java clients do, unless told otherwise.
    assert_eq!(
        s.check.partitioner,
        Some(dialguard::partition::Partitioner::Murmur2)
    );
    let off = load_text(&format!("{PACK}[check]\npartitioner = \"off\"\n")).unwrap();
    assert_eq!(off.check.partitioner, None);
    let c = load_text(&format!("{PACK}[check]\npartitioner = \"consistent\"\n")).unwrap();
    assert_eq!(
        c.check.partitioner,
        Some(dialguard::partition::Partitioner::Consistent)
    );
    assert!(load_text(&format!(
        "{PACK}[check]\nenabled = false\nlisten = \"0.0.0.0:9899\"\n"
    ))
    .is_ok());
}

#[test]
fn the_kubernetes_configuration_loads_with_the_image_packs_and_secrets_from_the_environment() {
    // deploy/kubernetes/dialguard.toml is mounted over /etc/dialguard/dialguard.toml, beside the
    // image's /etc/dialguard/packs: here, beside a copy of config/packs. The StatefulSet sets the
    // SASL credentials from a Secret as environment variables.
    let text = std::fs::read_to_string(root().join("deploy/kubernetes/dialguard.toml")).unwrap();
    let c = write_config(&text);
    let env: HashMap<String, String> = [
        ("DIALGUARD__KAFKA__CLIENT__SASL_USERNAME", "dialguard"),
        ("DIALGUARD__KAFKA__CLIENT__SASL_PASSWORD", "s3cret"),
        ("DIALGUARD__CHECK__TOKEN", "0123456789abcdef0123"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let s = Settings::load_with_env(&c.path, Some(env.clone())).unwrap();
    assert_eq!(s.http.listen.to_string(), "0.0.0.0:9898");
    // The check API is reachable from other pods: it refuses to start without its token.
    assert_eq!(s.check.listen.to_string(), "0.0.0.0:9899");
    assert_eq!(s.check.tokens, ["0123456789abcdef0123"]);
    let mut tokenless = env.clone();
    tokenless.remove("DIALGUARD__CHECK__TOKEN");
    let e = Settings::load_with_env(&c.path, Some(tokenless)).unwrap_err();
    assert_eq!(e.key(), Some("check.listen"), "{e}");
    assert!(
        !format!("{s:?}").contains("0123456789abcdef0123"),
        "a token in Debug output"
    );
    assert!(s.kafka.partition_lag_metric);
    // The pod's terminationGracePeriodSeconds must stay above the shutdown grace, or Kubernetes
    // kills dialguard before it has committed.
    let deployment =
        std::fs::read_to_string(root().join("deploy/kubernetes/statefulset.yaml")).unwrap();
    let kill_after: u64 = regex::Regex::new(r"terminationGracePeriodSeconds:\s*(\d+)")
        .unwrap()
        .captures(&deployment)
        .expect("terminationGracePeriodSeconds in the StatefulSet")[1]
        .parse()
        .unwrap();
    assert!(s.service.shutdown_grace.as_secs() < kill_after);
    let client: HashMap<_, _> = s.kafka.client.iter().cloned().collect();
    assert_eq!(client["security.protocol"], "SASL_SSL");
    assert_eq!(client["sasl.username"], "dialguard");
    assert_eq!(client["sasl.password"], "s3cret");
    // The same policy as the default configuration.
    let d = Settings::load_with_env(&root().join("config/dialguard.toml"), no_env()).unwrap();
    let ids = |s: &Settings| s.rules.iter().map(|r| r.id.to_string()).collect::<Vec<_>>();
    assert_eq!(ids(&s), ids(&d));
}
