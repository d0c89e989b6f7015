//! Configuration: one TOML file (plus `DIALGUARD__SECTION__KEY` environment overrides) read by
//! the `config` crate into [`RawConfig`], then validated into [`Settings`]: typed durations,
//! zones and compiled rules. Every mistake is reported with the file, the key path and the
//! reason, before anything starts.

use crate::codec::DecodeSettings;
use crate::engine::rule::Rule;
use crate::engine::EngineSettings;
use crate::policy::{parse_duration, RuleSpec};
use jiff::tz::TimeZone;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The configuration file as written.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Engine and decoder settings.
    #[serde(default)]
    pub engine: RawEngine,
    /// Packs to load.
    #[serde(default)]
    pub policy: RawPolicy,
    /// Inline rules, same format as packs.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// Kafka (for `dialguard run`).
    #[serde(default)]
    pub kafka: RawKafka,
    /// The HTTP endpoint (metrics and health).
    #[serde(default)]
    pub http: RawHttp,
    /// Process behaviour.
    #[serde(default)]
    pub service: RawService,
    /// The pre-dial check API.
    #[serde(default)]
    pub check: RawCheck,
    /// Reference data (`dialguard run`): the topics statuses are read from.
    #[serde(default)]
    pub reference: RawReference,
    /// Where a dialer's own records (`[kafka] input_format`, `replay --format`) hold what a
    /// call event carries.
    #[serde(default)]
    pub mapping: crate::formats::RawMapping,
}

/// `[reference]`: reference data the service reads in full before it is ready, then follows.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawReference {
    /// Debtor statuses (Status v1, key: status_id; a compacted topic). Needed by `status` rules;
    /// absent or `""` reads none.
    #[serde(default)]
    pub status_topic: Option<String>,
    /// The lender's contact book (Contact v1, key: `<debtor_id>/<phone>`; a compacted topic):
    /// fills in what call events lack, and `contact` rules judge from it. Absent or `""` reads
    /// none (`contact` rules then judge from the events' own values alone).
    #[serde(default)]
    pub contacts_topic: Option<String>,
}

/// `[reference]`, validated.
#[derive(Debug, Clone, Default)]
pub struct ReferenceSettings {
    /// The status topic, if any.
    pub status_topic: Option<String>,
    /// The contacts topic, if any.
    pub contacts_topic: Option<String>,
}

/// `[check]`: the pre-dial check API (`POST /v1/check`), on a listener of its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    /// Serve it at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Its address, apart from `/metrics` so it can be exposed to dialers alone.
    #[serde(default = "default_check_listen")]
    pub listen: String,
    /// A file of bearer tokens, one per line (`#` comments and blank lines ignored).
    #[serde(default)]
    pub tokens_file: Option<String>,
    /// One bearer token (from the environment: `DIALGUARD__CHECK__TOKEN`).
    #[serde(default)]
    pub token: Option<String>,
    /// Most candidate calls in one request (`{"calls": [...]}`).
    #[serde(default = "default_max_batch")]
    pub max_batch: u64,
    /// Largest request body.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// How long a reservation holds when the request names none (`"60s"`).
    #[serde(default = "default_reservation_ttl")]
    pub reservation_ttl: String,
    /// Requests waiting for the processing thread before new ones get 503.
    #[serde(default = "default_check_queue")]
    pub queue: u64,
    /// A request not answered within this gets 503 (`"1s"`).
    #[serde(default = "default_check_timeout")]
    pub timeout: String,
    /// How the dialers' producers partition the input by `debtor_id` (`murmur2`, `consistent`
    /// or `off`): a check for a debtor whose partition another instance holds gets 421.
    #[serde(default = "default_partitioner")]
    pub partitioner: String,
}

fn yes() -> bool {
    true
}
fn default_check_listen() -> String {
    "127.0.0.1:9899".into()
}
fn default_max_batch() -> u64 {
    500
}
fn default_max_body() -> u64 {
    1 << 20
}
fn default_reservation_ttl() -> String {
    "60s".into()
}
fn default_check_queue() -> u64 {
    1024
}
fn default_check_timeout() -> String {
    "1s".into()
}

fn default_partitioner() -> String {
    "murmur2".into()
}

impl Default for RawCheck {
    fn default() -> Self {
        RawCheck {
            enabled: true,
            listen: default_check_listen(),
            tokens_file: None,
            token: None,
            max_batch: default_max_batch(),
            max_body_bytes: default_max_body(),
            reservation_ttl: default_reservation_ttl(),
            queue: default_check_queue(),
            timeout: default_check_timeout(),
            partitioner: default_partitioner(),
        }
    }
}

/// The reservation lifetimes allowed (ns), in `check.reservation_ttl` and in a request: long
/// enough to dial, short enough that an abandoned attempt frees its place.
pub const RESERVATION_TTL: std::ops::RangeInclusive<i64> =
    crate::engine::time::NANOS_PER_SEC..=3600 * crate::engine::time::NANOS_PER_SEC;

/// Validated `[check]`.
#[derive(Clone)]
pub struct CheckSettings {
    /// Whether the check API is served.
    pub enabled: bool,
    /// Listen address.
    pub listen: SocketAddr,
    /// Accepted bearer tokens; empty means no authentication (loopback only).
    pub tokens: Vec<String>,
    /// Most calls per request.
    pub max_batch: usize,
    /// Largest body.
    pub max_body_bytes: usize,
    /// Default reservation lifetime.
    pub reservation_ttl: Duration,
    /// Queue bound.
    pub queue: usize,
    /// Answer deadline.
    pub timeout: Duration,
    /// How the input is partitioned by debtor, to refuse checks for debtors held elsewhere;
    /// `None`: not checked.
    pub partitioner: Option<crate::partition::Partitioner>,
}

impl std::fmt::Debug for CheckSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens are secrets: never printed.
        f.debug_struct("CheckSettings")
            .field("enabled", &self.enabled)
            .field("listen", &self.listen)
            .field("tokens", &format_args!("[{} hidden]", self.tokens.len()))
            .field("max_batch", &self.max_batch)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("reservation_ttl", &self.reservation_ttl)
            .field("queue", &self.queue)
            .field("timeout", &self.timeout)
            .field("partitioner", &self.partitioner)
            .finish()
    }
}

/// Validates `[check]`; `base` resolves a relative `tokens_file`.
fn check_settings(
    c: &RawCheck,
    base: &Path,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<CheckSettings, ConfigError> {
    let listen: SocketAddr = c.listen.parse().map_err(|_| {
        invalid(
            "check.listen",
            format!(
                "{:?} is not an address: write ip:port, e.g. \"0.0.0.0:9899\"",
                c.listen
            ),
        )
    })?;
    let mut tokens = Vec::new();
    if let Some(t) = c.token.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        tokens.push(t.to_owned());
    }
    if let Some(f) = c.tokens_file.as_deref().filter(|f| !f.trim().is_empty()) {
        let path = base.join(f);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            invalid(
                "check.tokens_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let before = tokens.len();
        tokens.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
        if tokens.len() == before {
            return Err(invalid(
                "check.tokens_file",
                format!("{} holds no token", path.display()),
            ));
        }
    }
    if let Some(short) = tokens.iter().find(|t| t.len() < 16) {
        return Err(invalid(
            if c.token.as_deref().map(str::trim) == Some(short.as_str()) {
                "check.token"
            } else {
                "check.tokens_file"
            },
            format!(
                "a token of {} characters is too easy to guess: use 16 or more (e.g. openssl rand -hex 32)",
                short.len()
            ),
        ));
    }
    if c.enabled && tokens.is_empty() && !listen.ip().is_loopback() {
        return Err(invalid(
            "check.listen",
            format!("{listen} is reachable from other hosts, and no token is set: set check.token (DIALGUARD__CHECK__TOKEN) or check.tokens_file, or listen on 127.0.0.1"),
        ));
    }
    if !(1..=10_000).contains(&c.max_batch) {
        return Err(invalid(
            "check.max_batch",
            format!("{} is outside 1 to 10000", c.max_batch),
        ));
    }
    if !(1024..=64 << 20).contains(&c.max_body_bytes) {
        return Err(invalid(
            "check.max_body_bytes",
            format!("{} is outside 1024 to 67108864", c.max_body_bytes),
        ));
    }
    let ttl =
        parse_duration(&c.reservation_ttl).map_err(|r| invalid("check.reservation_ttl", r))?;
    if !RESERVATION_TTL.contains(&ttl) {
        return Err(invalid(
            "check.reservation_ttl",
            "between 1s and 1h: long enough to dial, short enough that an abandoned attempt frees its place".into(),
        ));
    }
    if !(1..=1_000_000).contains(&c.queue) {
        return Err(invalid(
            "check.queue",
            format!("{} is outside 1 to 1000000", c.queue),
        ));
    }
    let timeout = parse_duration(&c.timeout).map_err(|r| invalid("check.timeout", r))?;
    if timeout < crate::engine::time::NANOS_PER_SEC / 1000 {
        return Err(invalid("check.timeout", "at least 1ms".into()));
    }
    use crate::partition::Partitioner;
    let partitioner = match c.partitioner.as_str() {
        "murmur2" => Some(Partitioner::Murmur2),
        "consistent" => Some(Partitioner::Consistent),
        "off" => None,
        other => {
            return Err(invalid(
                "check.partitioner",
                format!("{other:?}: murmur2 (Java clients, Kafka Connect), consistent (librdkafka clients) or off"),
            ))
        }
    };
    Ok(CheckSettings {
        enabled: c.enabled,
        listen,
        tokens,
        max_batch: c.max_batch as usize,
        max_body_bytes: c.max_body_bytes as usize,
        reservation_ttl: Duration::from_nanos(ttl as u64),
        queue: c.queue as usize,
        timeout: Duration::from_nanos(timeout as u64),
        partitioner,
    })
}

/// `[kafka]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKafka {
    /// Bootstrap servers, comma separated.
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// Consumer group.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Call events in (key: debtor_id); default `dialer.calls`. Not with `inputs`.
    #[serde(default)]
    pub input_topic: Option<String>,
    /// The input's record format: `call-event-v1` (the default), `asterisk-cdr-csv`,
    /// `freeswitch-json-cdr` or `vicidial-log` (read through `[mapping]`). Not with `inputs`.
    #[serde(default)]
    pub input_format: Option<String>,
    /// Several input topics, each in its own format (`[[kafka.inputs]]`), instead of
    /// `input_topic`, `input_format` and `[mapping]`.
    #[serde(default)]
    pub inputs: Vec<RawInput>,
    /// Alerts out (key: debtor_id).
    #[serde(default = "default_alerts_topic")]
    pub alerts_topic: String,
    /// Rejected records out, with the reason in headers.
    #[serde(default = "default_dlq_topic")]
    pub dlq_topic: String,
    /// Suppression directives out (key: debtor_id): when a call brings a key to a cap's limit
    /// or starts a cooldown, until when a dialer should not call it again. `""` publishes none.
    #[serde(default = "default_suppressions_topic")]
    pub suppressions_topic: String,
    /// Snapshots of the windows (key: group and partitions): a compacted changelog topic, so
    /// that a restart or a new pod on any node restores instead of re-reading the history.
    /// Created compacted when absent. `""` writes none; `[service] snapshot_dir` takes its place.
    #[serde(default = "default_snapshots_topic")]
    pub snapshots_topic: String,
    /// How often acknowledged offsets are committed (`"1s"`).
    #[serde(default = "default_commit_interval")]
    pub commit_interval: String,
    /// Messages awaiting the broker's acknowledgement before consumption pauses.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u64,
    /// Rebuild windows from the retained history when partitions are assigned.
    #[serde(default = "default_true")]
    pub rebuild: bool,
    /// Export consumer lag per partition (one series per partition).
    #[serde(default)]
    pub partition_lag_metric: bool,
    /// Static group membership (`group.instance.id`): a stable name per instance (the pod name
    /// of a StatefulSet), so a restarted instance takes its partitions back at once.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// How far (event time) a partition may run ahead of the slowest before it is paused
    /// (watermark alignment: bounds memory while one partition lags).
    #[serde(default = "default_max_partition_skew")]
    pub max_partition_skew: String,
    /// A partition that delivers nothing for this long stops holding the others: at its end
    /// (caught up) it no longer holds state back; with records unread (an unavailable leader)
    /// the others are no longer paused for it.
    #[serde(default = "default_idle_after")]
    pub idle_after: String,
    /// librdkafka properties passed through (`security.protocol`, `sasl.*`, `ssl.*`, tuning).
    /// From the environment, write `_` for `.`: `DIALGUARD__KAFKA__CLIENT__SASL_PASSWORD`.
    #[serde(default)]
    pub client: BTreeMap<String, ClientValue>,
}

/// A librdkafka property value as TOML or the environment gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ClientValue {
    /// A string.
    Str(String),
    /// A whole number.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl std::fmt::Display for ClientValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientValue::Str(s) => f.write_str(s),
            ClientValue::Int(i) => write!(f, "{i}"),
            ClientValue::Float(x) => write!(f, "{x}"),
            ClientValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

fn default_brokers() -> String {
    "localhost:9092".into()
}
fn default_group() -> String {
    "dialguard".into()
}
/// One of `[[kafka.inputs]]`: a topic, its records' format and where they hold a call's fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInput {
    /// The topic (key: debtor_id, co-partitioned with the other inputs).
    pub topic: String,
    /// As `input_format`; default `call-event-v1`.
    #[serde(default)]
    pub format: Option<String>,
    /// As `[mapping]`, for this topic's records.
    #[serde(default)]
    pub mapping: crate::formats::RawMapping,
}

fn default_input_topic() -> String {
    "dialer.call-events".into()
}
fn default_alerts_topic() -> String {
    "compliance.alerts".into()
}
fn default_snapshots_topic() -> String {
    "dialguard.snapshots".into()
}
fn default_suppressions_topic() -> String {
    "compliance.suppressions".into()
}

fn default_dlq_topic() -> String {
    "dialer.call-events.dlq".into()
}
fn default_commit_interval() -> String {
    "1s".into()
}
fn default_max_partition_skew() -> String {
    "1d".into()
}
fn default_idle_after() -> String {
    "30s".into()
}
const fn default_max_in_flight() -> u64 {
    100_000
}
const fn default_true() -> bool {
    true
}

impl Default for RawKafka {
    fn default() -> Self {
        RawKafka {
            brokers: default_brokers(),
            group_id: default_group(),
            input_topic: None,
            input_format: None,
            inputs: Vec::new(),
            alerts_topic: default_alerts_topic(),
            dlq_topic: default_dlq_topic(),
            suppressions_topic: default_suppressions_topic(),
            snapshots_topic: default_snapshots_topic(),
            commit_interval: default_commit_interval(),
            max_in_flight: default_max_in_flight(),
            rebuild: true,
            partition_lag_metric: false,
            instance_id: None,
            max_partition_skew: default_max_partition_skew(),
            idle_after: default_idle_after(),
            client: BTreeMap::new(),
        }
    }
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Address for `/metrics`, `/livez`, `/readyz`.
    #[serde(default = "default_listen")]
    pub listen: String,
}

fn default_listen() -> String {
    "127.0.0.1:9898".into()
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: default_listen(),
        }
    }
}

/// `[service]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// On SIGTERM/SIGINT, how long to finish in-flight records, flush and commit (`"30s"`).
    #[serde(default = "default_grace")]
    pub shutdown_grace: String,
    /// `/livez` fails when the processing loop has not turned for this long (`"60s"`).
    #[serde(default = "default_stall")]
    pub stall_after: String,
    /// A directory for snapshots of the windows (`""`: none, every assignment rebuilds from
    /// Kafka).
    #[serde(default)]
    pub snapshot_dir: String,
    /// How often a snapshot is written while records are judged (`"5m"`); one is also written
    /// at a graceful shutdown.
    #[serde(default = "default_snapshot_every")]
    pub snapshot_every: String,
}

fn default_snapshot_every() -> String {
    "5m".into()
}

fn default_grace() -> String {
    "30s".into()
}
fn default_stall() -> String {
    "60s".into()
}

impl Default for RawService {
    fn default() -> Self {
        RawService {
            shutdown_grace: default_grace(),
            stall_after: default_stall(),
            snapshot_dir: String::new(),
            snapshot_every: default_snapshot_every(),
        }
    }
}

/// One validated input topic.
#[derive(Debug, Clone)]
pub struct InputSettings {
    /// The topic.
    pub topic: String,
    /// How its records are read.
    pub mapping: std::sync::Arc<crate::formats::Mapping>,
}

impl KafkaSettings {
    /// Whether `topic` is one of the inputs.
    pub fn is_input(&self, topic: &str) -> bool {
        self.inputs.iter().any(|i| i.topic == topic)
    }
}

/// Validated `[kafka]`.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Bootstrap servers.
    pub brokers: String,
    /// Consumer group.
    pub group_id: String,
    /// The input topics, each with the mapping its records are read through (at least one; the
    /// first is `[kafka] input_topic` when `[[kafka.inputs]]` is not given).
    pub inputs: Vec<InputSettings>,
    /// Alerts out.
    pub alerts_topic: String,
    /// Rejected records out.
    pub dlq_topic: String,
    /// Suppression directives out; `None`: none published.
    pub suppressions_topic: Option<String>,
    /// Snapshots of the windows, a compacted topic; `None`: none there.
    pub snapshots_topic: Option<String>,
    /// Commit cadence.
    pub commit_interval: Duration,
    /// Unacknowledged produced messages before consumption pauses.
    pub max_in_flight: usize,
    /// Rebuild windows on assignment.
    pub rebuild: bool,
    /// Per-partition lag series.
    pub partition_lag_metric: bool,
    /// Static membership name (`group.instance.id`).
    pub instance_id: Option<String>,
    /// Event time a partition may run ahead of the slowest before it is paused (nanoseconds).
    pub max_partition_skew: i64,
    /// How long a silent partition holds the others (see the raw key).
    pub idle_after: Duration,
    /// librdkafka properties, names with dots.
    pub client: Vec<(String, String)>,
}

/// Validated `[http]`.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Listen address.
    pub listen: SocketAddr,
}

/// Validated `[service]`.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Shutdown grace period.
    pub shutdown_grace: Duration,
    /// Liveness stall threshold.
    pub stall_after: Duration,
    /// Where snapshots of the windows are written and read (`None`: nowhere).
    pub snapshot_dir: Option<PathBuf>,
    /// How often a snapshot is written while records are judged.
    pub snapshot_every: Duration,
}

/// librdkafka properties dialguard sets itself: its delivery guarantee depends on them.
const RESERVED_CLIENT_KEYS: [&str; 7] = [
    "bootstrap.servers",
    "group.id",
    "group.instance.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "group.protocol",
];

/// librdkafka property names that really contain `_` (everything else uses dots).
const UNDERSCORE_CLIENT_KEYS: [&str; 2] = ["log_level", "enabled_events"];

fn client_key(k: &str) -> String {
    if k.contains('.') || UNDERSCORE_CLIENT_KEYS.contains(&k) {
        k.to_owned()
    } else {
        k.replace('_', ".")
    }
}

/// The input topics: `[[kafka.inputs]]`, or else `input_topic` read in `input_format` through
/// `[mapping]`.
fn inputs(
    raw: &RawConfig,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Vec<InputSettings>, ConfigError> {
    use crate::formats::{Format, Mapping};
    let k = &raw.kafka;
    let format = |key: &str, f: &Option<String>| match f.as_deref() {
        None => Ok(Format::CallEventV1),
        Some(f) => Format::parse(f).map_err(|r| invalid(key, r)),
    };
    if k.inputs.is_empty() {
        let topic = k.input_topic.clone().unwrap_or_else(default_input_topic);
        valid_topic(&topic).map_err(|r| invalid("kafka.input_topic", r))?;
        let mapping = Mapping::new(format("kafka.input_format", &k.input_format)?, &raw.mapping)
            .map_err(|(key, reason)| invalid(&key, reason))?;
        return Ok(vec![InputSettings {
            topic,
            mapping: std::sync::Arc::new(mapping),
        }]);
    }
    let single = [
        ("kafka.input_topic", k.input_topic.is_some()),
        ("kafka.input_format", k.input_format.is_some()),
        (
            "mapping",
            raw.mapping != crate::formats::RawMapping::default(),
        ),
    ];
    if let Some((key, _)) = single.iter().find(|(_, set)| *set) {
        return Err(invalid(
            key,
            "set beside [[kafka.inputs]]: give each input its topic, format and mapping there"
                .into(),
        ));
    }
    let mut out: Vec<InputSettings> = Vec::with_capacity(k.inputs.len());
    for (i, input) in k.inputs.iter().enumerate() {
        let at = format!("kafka.inputs[{i}]");
        let topic = input.topic.trim().to_owned();
        valid_topic(&topic).map_err(|r| invalid(&format!("{at}.topic"), r))?;
        if out.iter().any(|o| o.topic == topic) {
            return Err(invalid(
                &format!("{at}.topic"),
                format!("{topic:?} is already an input: a topic is read once, in one format"),
            ));
        }
        let f = format(&format!("{at}.format"), &input.format)?;
        let mapping = Mapping::new(f, &input.mapping).map_err(|(key, reason)| {
            let key = match key.strip_prefix("mapping") {
                Some(rest) => format!("{at}.mapping{rest}"),
                None => key,
            };
            invalid(&key, reason)
        })?;
        out.push(InputSettings {
            topic,
            mapping: std::sync::Arc::new(mapping),
        });
    }
    Ok(out)
}

fn valid_topic(t: &str) -> Result<(), String> {
    if t.is_empty() || t.len() > 249 {
        return Err(format!("{t:?}: a topic name has 1 to 249 characters"));
    }
    if t == "." || t == ".." {
        return Err(format!("{t:?} is not a valid topic name"));
    }
    if let Some(c) = t
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{t:?}: {c:?} is not allowed in a topic name (letters, digits, '.', '_', '-')"
        ));
    }
    Ok(())
}

/// Validates `[kafka]`, `[http]` and `[service]`; `base` resolves a relative `snapshot_dir`.
fn service_settings(
    raw: &RawConfig,
    base: &Path,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<(KafkaSettings, HttpSettings, ServiceSettings), ConfigError> {
    let k = &raw.kafka;
    if k.brokers.trim().is_empty() {
        return Err(invalid(
            "kafka.brokers",
            "empty: list bootstrap servers as host:port[,host:port]".into(),
        ));
    }
    if k.group_id.trim().is_empty() {
        return Err(invalid("kafka.group_id", "empty".into()));
    }
    for (key, t) in [
        ("kafka.alerts_topic", &k.alerts_topic),
        ("kafka.dlq_topic", &k.dlq_topic),
    ] {
        valid_topic(t).map_err(|r| invalid(key, r))?;
    }
    let inputs = inputs(raw, invalid)?;
    let input_topics: Vec<&String> = inputs.iter().map(|i| &i.topic).collect();
    for (key, t) in [
        ("kafka.alerts_topic", &k.alerts_topic),
        ("kafka.dlq_topic", &k.dlq_topic),
    ] {
        if input_topics.contains(&t) {
            return Err(invalid(
                key,
                format!("{t:?} is also an input topic: dialguard would read its own output"),
            ));
        }
    }
    if k.alerts_topic == k.dlq_topic {
        return Err(invalid(
            "kafka.dlq_topic",
            format!("{:?} is also the alerts topic", k.dlq_topic),
        ));
    }
    let suppressions = &k.suppressions_topic;
    if !suppressions.is_empty() {
        valid_topic(suppressions).map_err(|r| invalid("kafka.suppressions_topic", r))?;
        if [&k.alerts_topic, &k.dlq_topic].contains(&suppressions)
            || input_topics.contains(&suppressions)
        {
            return Err(invalid(
                "kafka.suppressions_topic",
                format!(
                    "{suppressions:?} is also the input, alerts or dead-letter topic: directives need a topic of their own"
                ),
            ));
        }
    }
    let snapshots = &k.snapshots_topic;
    if !snapshots.is_empty() {
        valid_topic(snapshots).map_err(|r| invalid("kafka.snapshots_topic", r))?;
        if [&k.alerts_topic, &k.dlq_topic, suppressions].contains(&snapshots)
            || input_topics.contains(&snapshots)
        {
            return Err(invalid(
                "kafka.snapshots_topic",
                format!(
                    "{snapshots:?} is also the input, alerts, dead-letter or suppressions topic: snapshots need a compacted topic of their own"
                ),
            ));
        }
    }
    let commit =
        parse_duration(&k.commit_interval).map_err(|r| invalid("kafka.commit_interval", r))?;
    if commit <= 0 {
        return Err(invalid(
            "kafka.commit_interval",
            "must be longer than zero".into(),
        ));
    }
    if !(1..=10_000_000).contains(&k.max_in_flight) {
        return Err(invalid(
            "kafka.max_in_flight",
            format!("{} is outside 1 to 10000000", k.max_in_flight),
        ));
    }
    let instance_id = match k.instance_id.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(id) if id.len() > 249 || id.chars().any(|c| c.is_control()) => {
            return Err(invalid(
                "kafka.instance_id",
                format!("{id:?}: 1 to 249 printable characters (the pod name, for instance)"),
            ))
        }
        Some(id) => Some(id.to_owned()),
    };
    let skew = parse_duration(&k.max_partition_skew)
        .map_err(|r| invalid("kafka.max_partition_skew", r))?;
    if skew <= 0 {
        return Err(invalid(
            "kafka.max_partition_skew",
            "must be longer than zero".into(),
        ));
    }
    let stall_wait = parse_duration(&k.idle_after).map_err(|r| invalid("kafka.idle_after", r))?;
    if stall_wait < crate::engine::time::NANOS_PER_SEC {
        return Err(invalid(
            "kafka.idle_after",
            "at least 1s: a fetch can take that long on a busy broker".into(),
        ));
    }
    let mut client = Vec::new();
    let mut probe = rdkafka::ClientConfig::new();
    for (name, value) in &k.client {
        let key = client_key(name);
        let at = format!("kafka.client.{name}");
        if RESERVED_CLIENT_KEYS.contains(&key.as_str()) {
            return Err(invalid(
                &at,
                format!("{key} is set by dialguard (use the [kafka] keys: group_id, instance_id; offsets are committed only after delivery)"),
            ));
        }
        let v = value.to_string();
        if key == "partition.assignment.strategy" && v.contains("cooperative") {
            return Err(invalid(
                &at,
                "cooperative (incremental) rebalancing is not supported: windows are rebuilt for the whole assignment; use range or roundrobin".into(),
            ));
        }
        if key == "statistics.interval.ms" && inputs.len() > 1 && v.trim() == "0" {
            return Err(invalid(
                &at,
                "several input topics need the consumer's statistics: they tell which topic's partitions are at their end".into(),
            ));
        }
        if key == "partition.assignment.strategy" && inputs.len() > 1 && !v.starts_with("range") {
            return Err(invalid(
                &at,
                "several input topics need range assignment: it gives one instance the same partitions of each, so a debtor's calls from every input meet in one engine".into(),
            ));
        }
        probe.set(&key, &v);
        client.push((key, v));
    }
    if let Err(e) = probe.create_native_config() {
        // librdkafka names the property in its message; find which of ours it was.
        let msg = e.to_string();
        let at = k
            .client
            .keys()
            .find(|n| msg.contains(&client_key(n)))
            .map_or("kafka.client".to_owned(), |n| format!("kafka.client.{n}"));
        return Err(invalid(&at, format!("librdkafka refused it: {msg}")));
    }
    let listen: SocketAddr = raw.http.listen.parse().map_err(|_| {
        invalid(
            "http.listen",
            format!(
                "{:?} is not an address: write ip:port, e.g. \"0.0.0.0:9898\"",
                raw.http.listen
            ),
        )
    })?;
    let grace = parse_duration(&raw.service.shutdown_grace)
        .map_err(|r| invalid("service.shutdown_grace", r))?;
    let stall =
        parse_duration(&raw.service.stall_after).map_err(|r| invalid("service.stall_after", r))?;
    if stall < crate::engine::time::NANOS_PER_SEC {
        return Err(invalid(
            "service.stall_after",
            "at least 1s: the processing loop turns every 100ms at most when idle".into(),
        ));
    }
    let snapshot_every = parse_duration(&raw.service.snapshot_every)
        .map_err(|r| invalid("service.snapshot_every", r))?;
    if snapshot_every < crate::engine::time::NANOS_PER_SEC {
        return Err(invalid(
            "service.snapshot_every",
            "at least 1s: a snapshot reads the whole state".into(),
        ));
    }
    let snapshot_dir = match raw.service.snapshot_dir.trim() {
        "" => None,
        d => {
            let dir = PathBuf::from(d);
            let dir = if dir.is_relative() {
                base.join(dir)
            } else {
                dir
            };
            if !dir.is_dir() {
                return Err(invalid(
                    "service.snapshot_dir",
                    format!("{} is not a directory", dir.display()),
                ));
            }
            Some(dir)
        }
    };
    Ok((
        KafkaSettings {
            brokers: k.brokers.trim().to_owned(),
            group_id: k.group_id.clone(),
            inputs,
            alerts_topic: k.alerts_topic.clone(),
            dlq_topic: k.dlq_topic.clone(),
            suppressions_topic: (!k.suppressions_topic.is_empty())
                .then(|| k.suppressions_topic.clone()),
            snapshots_topic: (!k.snapshots_topic.is_empty()).then(|| k.snapshots_topic.clone()),
            commit_interval: Duration::from_nanos(commit as u64),
            max_in_flight: k.max_in_flight as usize,
            rebuild: k.rebuild,
            partition_lag_metric: k.partition_lag_metric,
            instance_id,
            max_partition_skew: skew,
            idle_after: Duration::from_nanos(stall_wait as u64),
            client,
        },
        HttpSettings { listen },
        ServiceSettings {
            shutdown_grace: Duration::from_nanos(grace.max(0) as u64),
            stall_after: Duration::from_nanos(stall as u64),
            snapshot_dir,
            snapshot_every: Duration::from_nanos(snapshot_every as u64),
        },
    ))
}

/// `[engine]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEngine {
    /// IANA zone used when a rule has no `timezone`, or says "callee" and the call has no
    /// `callee_tz`.
    #[serde(default = "default_timezone")]
    pub default_timezone: String,
    /// ISO 3166 region for phone numbers in national format.
    #[serde(default = "default_region")]
    pub default_region: String,
    /// How far behind the newest event time a call may still be judged (`"1h"`).
    #[serde(default = "default_lateness")]
    pub allowed_lateness: String,
    /// Records larger than this many bytes are refused.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: u64,
    /// Timestamps further ahead of the wall clock than this are refused (`"5m"`).
    #[serde(default = "default_skew")]
    pub max_future_skew: String,
    /// At most this many call ids in an alert's evidence.
    #[serde(default = "default_evidence_limit")]
    pub evidence_limit: u64,
}

fn default_timezone() -> String {
    "UTC".into()
}
fn default_region() -> String {
    "US".into()
}
fn default_lateness() -> String {
    "1h".into()
}
const fn default_max_record_bytes() -> u64 {
    64 * 1024
}
fn default_skew() -> String {
    "5m".into()
}
const fn default_evidence_limit() -> u64 {
    10
}

impl Default for RawEngine {
    fn default() -> Self {
        RawEngine {
            default_timezone: default_timezone(),
            default_region: default_region(),
            allowed_lateness: default_lateness(),
            max_record_bytes: default_max_record_bytes(),
            max_future_skew: default_skew(),
            evidence_limit: default_evidence_limit(),
        }
    }
}

/// `[policy]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Pack files, relative to the configuration file.
    #[serde(default)]
    pub packs: Vec<String>,
}

/// A pack file: optional metadata and rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackFile {
    /// Metadata.
    #[serde(default)]
    pub pack: Option<PackMeta>,
    /// The rules.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// `[pack]` in a pack file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackMeta {
    /// The pack's name (default: the file stem).
    pub name: Option<String>,
    /// What it covers.
    pub description: Option<String>,
    /// Where it applies.
    pub jurisdiction: Option<String>,
}

/// Why configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read or parsed.
    #[error("{path}: {reason}")]
    Load {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A key holds a bad value.
    #[error("{path}: {key}: {reason}")]
    Invalid {
        /// The file the key came from (or the environment).
        path: String,
        /// The key path, e.g. `engine.default_timezone` or `rules[2].window`.
        key: String,
        /// Why.
        reason: String,
    },
}

impl ConfigError {
    /// The key path at fault, where there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Load { .. } => None,
        }
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configuration file.
    pub path: PathBuf,
    /// Engine settings.
    pub engine: EngineSettings,
    /// Decoder settings.
    pub decode: DecodeSettings,
    /// Compiled rules, packs first (in `policy.packs` order), then inline rules.
    pub rules: Vec<Rule>,
    /// The default zone's name.
    pub default_timezone: String,
    /// Packs loaded: (name, path).
    pub packs: Vec<(String, PathBuf)>,
    /// `[kafka]`.
    pub kafka: KafkaSettings,
    /// `[http]`.
    pub http: HttpSettings,
    /// `[service]`.
    pub service: ServiceSettings,
    /// `[check]`.
    pub check: CheckSettings,
    /// `[reference]`.
    pub reference: ReferenceSettings,
    /// `[mapping]` as written (`replay --format` validates it again for another format).
    pub raw_mapping: crate::formats::RawMapping,
}

impl Settings {
    /// Loads the file with overrides from the process environment.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        Self::load_with_env(path, None)
    }

    /// Loads the file with overrides from `env` (`None`: the process environment). Tests pass a
    /// map so they never touch the process environment.
    pub fn load_with_env(
        path: &Path,
        env: Option<HashMap<String, String>>,
    ) -> Result<Settings, ConfigError> {
        let shown = path.display().to_string();
        if !path.is_file() {
            return Err(ConfigError::Load {
                path: shown,
                reason: "no such file".into(),
            });
        }
        let cfg = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("DIALGUARD")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(env),
            )
            .build()
            .map_err(|e| ConfigError::Load {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
        let raw: RawConfig = cfg.try_deserialize().map_err(|e| config_error(&shown, e))?;
        Self::from_raw(raw, path)
    }

    /// Validates a raw configuration read from `path` (packs resolve relative to it).
    pub fn from_raw(raw: RawConfig, path: &Path) -> Result<Settings, ConfigError> {
        let shown = path.display().to_string();
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            path: shown.clone(),
            key: key.into(),
            reason,
        };
        let e = &raw.engine;
        let zone = TimeZone::get(&e.default_timezone).map_err(|_| {
            invalid(
                "engine.default_timezone",
                format!(
                    "unknown time zone {:?}: use an IANA name like \"Asia/Shanghai\"",
                    e.default_timezone
                ),
            )
        })?;
        let region: phonenumber::country::Id = e.default_region.parse().map_err(|_| {
            invalid("engine.default_region", format!("{:?} is not a region phone numbers know: use an ISO 3166 code like \"CN\" or \"US\"", e.default_region))
        })?;
        let lateness = parse_duration(&e.allowed_lateness)
            .map_err(|r| invalid("engine.allowed_lateness", r))?;
        let skew =
            parse_duration(&e.max_future_skew).map_err(|r| invalid("engine.max_future_skew", r))?;
        if !(256..=16 * 1024 * 1024).contains(&e.max_record_bytes) {
            return Err(invalid(
                "engine.max_record_bytes",
                format!("{} is outside 256 to 16777216", e.max_record_bytes),
            ));
        }
        if !(1..=1000).contains(&e.evidence_limit) {
            return Err(invalid(
                "engine.evidence_limit",
                format!("{} is outside 1 to 1000", e.evidence_limit),
            ));
        }

        let base = path.parent().unwrap_or(Path::new("."));
        let (kafka, http, service) = service_settings(&raw, base, &invalid)?;
        let check = check_settings(&raw.check, base, &invalid)?;
        let mut rules: Vec<Rule> = Vec::new();
        let mut origin: HashMap<String, String> = HashMap::new();
        let mut packs = Vec::new();
        for (i, p) in raw.policy.packs.iter().enumerate() {
            let pack_path = base.join(p);
            let pshown = pack_path.display().to_string();
            let text = std::fs::read_to_string(&pack_path).map_err(|err| {
                invalid(
                    &format!("policy.packs[{i}]"),
                    format!("cannot read pack {pshown}: {err}"),
                )
            })?;
            let (name, pf) = parse_pack(&pack_path, &text)?;
            compile_rules(
                &pf.rules,
                &zone,
                &e.default_timezone,
                Some(&name),
                &pshown,
                &mut rules,
                &mut origin,
            )?;
            packs.push((name, pack_path));
        }
        compile_rules(
            &raw.rules,
            &zone,
            &e.default_timezone,
            None,
            &shown,
            &mut rules,
            &mut origin,
        )?;
        if rules.is_empty() {
            return Err(invalid(
                "policy.packs",
                "no rules: load at least one pack or write [[rules]]".into(),
            ));
        }
        let topic_of = |key: &str, v: &Option<String>| -> Result<Option<String>, ConfigError> {
            let Some(t) = v.as_deref().map(str::trim).filter(|t| !t.is_empty()) else {
                return Ok(None);
            };
            valid_topic(t).map_err(|r| invalid(key, r))?;
            let k = &kafka;
            if k.is_input(t) {
                return Err(invalid(
                    key,
                    format!("{t:?} is also an input topic: reference data needs a compacted topic of its own"),
                ));
            }
            let ours = [
                Some(&k.alerts_topic),
                Some(&k.dlq_topic),
                k.suppressions_topic.as_ref(),
                k.snapshots_topic.as_ref(),
            ];
            if ours.iter().flatten().any(|o| o.as_str() == t) {
                return Err(invalid(
                    key,
                    format!("{t:?} is also one of the [kafka] topics: reference data needs a compacted topic of its own"),
                ));
            }
            Ok(Some(t.to_owned()))
        };
        let status_topic = topic_of("reference.status_topic", &raw.reference.status_topic)?;
        let contacts_topic = topic_of("reference.contacts_topic", &raw.reference.contacts_topic)?;
        if status_topic.is_some() && status_topic == contacts_topic {
            return Err(invalid(
                "reference.contacts_topic",
                "the same topic as reference.status_topic: statuses and contacts are keyed differently, each needs a topic of its own".into(),
            ));
        }
        let reference = ReferenceSettings {
            status_topic,
            contacts_topic,
        };
        let mapping = kafka.inputs[0].mapping.clone();
        Ok(Settings {
            path: path.to_owned(),
            engine: EngineSettings {
                allowed_lateness: lateness,
                evidence_limit: e.evidence_limit as usize,
                sweep_every: None,
                contacts_by_number: kafka.inputs.iter().any(|i| i.mapping.debtor_from_book()),
                ..EngineSettings::default()
            },
            decode: DecodeSettings {
                default_region: region,
                max_record_bytes: e.max_record_bytes as usize,
                max_future_skew: skew,
                mapping,
            },
            raw_mapping: raw.mapping.clone(),
            rules,
            default_timezone: e.default_timezone.clone(),
            packs,
            kafka,
            http,
            service,
            check,
            reference,
        })
    }

    /// How the records of input `index` are decoded.
    pub fn decode_for(&self, index: usize) -> DecodeSettings {
        DecodeSettings {
            mapping: self.kafka.inputs[index].mapping.clone(),
            ..self.decode.clone()
        }
    }

    /// Reads the input in `format` (`replay --format`, `convert`) through `[mapping]`.
    /// With `[[kafka.inputs]]`, the first input in `format` lends its mapping.
    pub fn set_format(&mut self, format: crate::formats::Format) -> Result<(), ConfigError> {
        if let Some(i) = self
            .kafka
            .inputs
            .iter()
            .find(|i| i.mapping.format() == format)
        {
            self.decode.mapping = i.mapping.clone();
            self.engine.contacts_by_number |= self.decode.mapping.debtor_from_book();
            return Ok(());
        }
        let m =
            crate::formats::Mapping::new(format, &self.raw_mapping).map_err(|(key, reason)| {
                ConfigError::Invalid {
                    path: self.path.display().to_string(),
                    key,
                    reason,
                }
            })?;
        self.decode.mapping = std::sync::Arc::new(m);
        self.engine.contacts_by_number |= self.decode.mapping.debtor_from_book();
        Ok(())
    }

    /// Adds the rules of the pack at `path` (as `policy.packs` would, in the default zone),
    /// after those loaded: for commands that add a pack to a policy (the demo's statuses).
    pub fn add_pack(&mut self, path: &Path) -> Result<(), ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Load {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let (name, pf) = parse_pack(path, &text)?;
        let zone = TimeZone::get(&self.default_timezone).map_err(|_| ConfigError::Invalid {
            path: shown.clone(),
            key: "engine.default_timezone".into(),
            reason: format!("unknown zone {:?}", self.default_timezone),
        })?;
        let mut origin: HashMap<String, String> = self
            .rules
            .iter()
            .map(|r| (r.id.clone(), self.path.display().to_string()))
            .collect();
        compile_rules(
            &pf.rules,
            &zone,
            &self.default_timezone,
            Some(&name),
            &shown,
            &mut self.rules,
            &mut origin,
        )?;
        self.packs.push((name, path.to_owned()));
        Ok(())
    }

    /// Sets the engine's `late_statuses` and `late_contacts` as the service runs: reference
    /// records arrive after calls only from a reference topic, so without one the rules of
    /// its kind keep no calls to flag late (less state and work per call).
    pub fn follow_reference_topics(&mut self) {
        self.engine.late_statuses = self.reference.status_topic.is_some();
        self.engine.late_contacts = self.reference.contacts_topic.is_some();
    }

    /// The first `status` rule when no status topic is configured: `dialguard run` refuses to
    /// start then, since the rule would never see a status (replay reads `--reference`).
    pub fn status_rule_without_topic(&self) -> Option<&Rule> {
        if self.reference.status_topic.is_some() {
            return None;
        }
        self.rules
            .iter()
            .find(|r| r.kind == crate::engine::rule::RuleKind::Status)
    }
}

/// A pack file's text parsed, with its name (`[pack] name`, else the file's stem).
fn parse_pack(path: &Path, text: &str) -> Result<(String, PackFile), ConfigError> {
    let pf: PackFile = toml::from_str(text).map_err(|err| ConfigError::Load {
        path: path.display().to_string(),
        reason: err.to_string().trim_end().to_owned(),
    })?;
    let name = pf
        .pack
        .as_ref()
        .and_then(|m| m.name.clone())
        .unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    Ok((name, pf))
}

/// Compiles the rules of one file (a pack, or the configuration's `[[rules]]`), keeping ids
/// unique across files.
fn compile_rules(
    specs: &[RuleSpec],
    zone: &TimeZone,
    zone_name: &str,
    pack: Option<&str>,
    path: &str,
    rules: &mut Vec<Rule>,
    origin: &mut HashMap<String, String>,
) -> Result<(), ConfigError> {
    for (j, spec) in specs.iter().enumerate() {
        let rule = spec
            .compile(zone, zone_name, pack)
            .map_err(|re| ConfigError::Invalid {
                path: path.into(),
                key: format!("rules[{j}].{}", re.key),
                reason: format!("rule {:?}: {}", re.rule, re.reason),
            })?;
        add_rule(rules, origin, rule, path, &format!("rules[{j}]"))?;
    }
    Ok(())
}

fn add_rule(
    rules: &mut Vec<Rule>,
    origin: &mut HashMap<String, String>,
    rule: Rule,
    path: &str,
    at: &str,
) -> Result<(), ConfigError> {
    if let Some(first) = origin.get(&rule.id) {
        return Err(ConfigError::Invalid {
            path: path.into(),
            key: format!("{at}.id"),
            reason: format!(
                "duplicate rule id {:?}: already defined in {first}",
                rule.id
            ),
        });
    }
    origin.insert(rule.id.clone(), format!("{path} {at}"));
    rules.push(rule);
    Ok(())
}

/// Maps a `config` crate error to ours, keeping its key path.
fn config_error(path: &str, e: config::ConfigError) -> ConfigError {
    match &e {
        config::ConfigError::Type { key: Some(k), .. } => ConfigError::Invalid {
            path: path.into(),
            key: k.clone(),
            reason: e.to_string(),
        },
        _ => {
            let msg = e.to_string();
            // Messages end "... for key `engine.x`" or "... in <file>"; pull the key out.
            let key = msg
                .split("for key `")
                .nth(1)
                .and_then(|s| s.split('`').next())
                .map(str::to_owned);
            // "unknown field `x`, expected ... for key `kafka`": the key at fault is kafka.x.
            let unknown = msg
                .split("unknown field `")
                .nth(1)
                .and_then(|s| s.split('`').next());
            let key = match (key, unknown) {
                (Some(k), Some(f)) => Some(format!("{k}.{f}")),
                (None, Some(f)) => Some(f.to_owned()),
                (k, None) => k,
            };
            match key {
                Some(key) => ConfigError::Invalid {
                    path: path.into(),
                    key,
                    reason: msg,
                },
                None => ConfigError::Load {
                    path: path.into(),
                    reason: msg,
                },
            }
        }
    }
}
