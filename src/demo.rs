//! `dialguard demo`: the whole pipeline with nothing installed. librdkafka's mock cluster (the
//! real Kafka protocol, in process) stands in for the brokers; a synthetic dialer produces
//! realistic traffic at a chosen rate; the service judges it; alerts print live, one line per
//! call.
//!
//! Prevention on one screen: the traffic's debtors are split between agencies
//! ([`crate::synth::AGENCIES`]); the first `checking_agencies` ask `POST /v1/check` (with a
//! reservation) before every call and skip what is refused, the others dial blind. The live
//! lines and the summary show, per agency, calls placed, calls blocked before dialing and
//! alerts.
//!
//! Several dialers on one screen: with `[[kafka.inputs]]` the agencies are dealt out over the
//! input topics (agency `a` to input `a mod n`), each dialer writing its topic's format.
//! Records in a dialer's own format follow the demo's rendering (`formats::render`), so each
//! such input is read through the rendering's mapping, printed at start.

use crate::config::Settings;
use crate::engine::time::{Ts, NANOS_PER_SEC};
use crate::formats::{render, Format, Mapping};
use crate::service::{self, ServiceError, Shutdown};
use crate::synth::{Synth, SynthParams, AGENCIES};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
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
    /// Agencies (`agency-0` …) whose dialer asks the pre-dial check before every call.
    pub checking_agencies: u64,
    /// The one input's format, instead of the configuration's (`--format`); not with
    /// `[[kafka.inputs]]`, which give each topic its own.
    pub format: Option<Format>,
}

/// One input topic as the synthetic dialer writes it.
#[derive(Debug, Clone)]
struct Input {
    topic: String,
    format: Format,
}

/// The demo's inputs: the configuration's topics, `format` replacing the one input's format.
/// Each input in a dialer's own format is read through the mapping the demo's renderings follow
/// (the configuration's would not find their fields).
fn demo_inputs(
    settings: &mut Settings,
    format: Option<Format>,
) -> Result<Vec<Input>, ServiceError> {
    let inputs = &mut settings.kafka.inputs;
    if let (Some(f), true) = (format, inputs.len() > 1) {
        return Err(ServiceError::Config {
            key: "kafka.inputs".into(),
            reason: format!(
                "--format {f} sets the format of the one input, and this configuration has {} ([[kafka.inputs]], each in its own format, which the demo writes): drop --format",
                inputs.len()
            ),
        });
    }
    let mut out = Vec::with_capacity(inputs.len());
    for input in inputs.iter_mut() {
        let f = format.unwrap_or(input.mapping.format());
        if f != input.mapping.format() || f != Format::CallEventV1 {
            // The rendering's mapping (none for call events v1).
            let m = Mapping::new(f, &render::mapping_for(f, &settings.default_timezone))
                .map_err(|(key, reason)| ServiceError::Config { key, reason })?;
            input.mapping = std::sync::Arc::new(m);
        }
        out.push(Input {
            topic: input.topic.clone(),
            format: f,
        });
    }
    settings.decode.mapping = inputs[0].mapping.clone();
    settings.engine.contacts_by_number = inputs.iter().any(|i| i.mapping.debtor_from_book());
    Ok(out)
}

/// The agencies whose dialer writes to input `i` of `n`.
fn agencies_of(i: usize, n: usize) -> String {
    (0..AGENCIES as usize)
        .filter(|a| a % n == i)
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Per agency: calls placed, calls blocked before dialing (a check refused them), alerts.
struct Tally {
    placed: Vec<AtomicU64>,
    blocked: Vec<AtomicU64>,
    alerts: Vec<AtomicU64>,
    /// Agencies `0..checking` check before dialing.
    checking: u64,
}

impl Tally {
    fn new(checking: u64) -> Tally {
        let row = || (0..AGENCIES).map(|_| AtomicU64::new(0)).collect();
        Tally {
            placed: row(),
            blocked: row(),
            alerts: row(),
            checking: checking.min(AGENCIES),
        }
    }

    fn sum(v: &[AtomicU64], agencies: std::ops::Range<u64>) -> u64 {
        agencies
            .map(|a| v[a as usize].load(Ordering::Relaxed))
            .sum()
    }

    /// One line: the checking agencies' dialer against the others'.
    fn line(&self) -> String {
        let (c, all) = (0..self.checking, self.checking..AGENCIES);
        let mut out = String::new();
        if self.checking > 0 {
            out.push_str(&format!(
                "agencies 0-{} (check first): {} placed, {} blocked before dialing, {} alerts",
                self.checking - 1,
                Tally::sum(&self.placed, c.clone()),
                Tally::sum(&self.blocked, c.clone()),
                Tally::sum(&self.alerts, c),
            ));
        }
        if self.checking < AGENCIES {
            if !out.is_empty() {
                out.push_str(" | ");
            }
            out.push_str(&format!(
                "agencies {}-{} (dial blind): {} placed, {} alerts",
                self.checking,
                AGENCIES - 1,
                Tally::sum(&self.placed, all.clone()),
                Tally::sum(&self.alerts, all),
            ));
        }
        out
    }

    /// The per-agency table.
    fn table(&self) -> String {
        let mut out = String::from("  agency    dialer          placed  blocked before dialing   alerts  alerts per 1,000 placed\n");
        for a in 0..AGENCIES as usize {
            let (p, b, x) = (
                self.placed[a].load(Ordering::Relaxed),
                self.blocked[a].load(Ordering::Relaxed),
                self.alerts[a].load(Ordering::Relaxed),
            );
            out.push_str(&format!(
                "  agency-{a}  {:<14} {p:>7} {b:>23} {x:>8} {:>24.1}\n",
                if (a as u64) < self.checking {
                    "checks first"
                } else {
                    "dials blind"
                },
                if p == 0 {
                    0.0
                } else {
                    x as f64 * 1000.0 / p as f64
                },
            ));
        }
        out
    }
}

/// The agency number of a call event or alert line (`"agency_id":"agency-N"`).
fn agency_of(text: &str) -> Option<usize> {
    let n: usize = text
        .split("\"agency_id\":\"agency-")
        .nth(1)?
        .split('"')
        .next()?
        .parse()
        .ok()?;
    (n < AGENCIES as usize).then_some(n)
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
    let inputs = demo_inputs(&mut settings, opts.format)?;
    let k = settings.kafka.clone();
    let topics = k
        .inputs
        .iter()
        .map(|i| Some((&i.topic, opts.partitions)))
        .chain([
            Some((&k.alerts_topic, opts.partitions)),
            Some((&k.dlq_topic, 1)),
            k.suppressions_topic.as_ref().map(|t| (t, opts.partitions)),
            // Compacted on a real broker; the embedded one cannot be told (nor compacts).
            k.snapshots_topic
                .as_ref()
                .filter(|_| settings.service.snapshot_dir.is_none())
                .map(|t| (t, 1)),
        ]);
    for (topic, parts) in topics.flatten() {
        cluster
            .create_topic(topic, parts, 1)
            .map_err(|e| ServiceError::Kafka(format!("creating {topic}: {e}")))?;
    }
    let brokers = cluster.bootstrap_servers();
    settings.kafka.brokers = brokers.clone();
    crate::tell!("dialguard demo: an in-process Kafka-protocol broker at {brokers}");
    crate::tell!(
        "  topics: {} (dialer calls in), {} (alerts out), {} (rejected records){}",
        inputs
            .iter()
            .map(|i| i.topic.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        k.alerts_topic,
        k.dlq_topic,
        k.suppressions_topic
            .as_deref()
            .map(|t| format!(", {t} (directives to dialers)"))
            .unwrap_or_default()
    );
    crate::tell!("  watch with: kcat -b {brokers} -t {} -C", k.alerts_topic);
    crate::tell!(
        "  policy: {} rules from {}",
        settings.rules.len(),
        settings.path.display()
    );

    let params = traffic(opts);
    let bare = contacts(&mut settings, &cluster, &brokers, &params)?;
    let late_statuses = statuses(
        &mut settings,
        &cluster,
        &brokers,
        &params,
        (opts.rate, opts.checking_agencies),
    )?;

    let produced = Arc::new(AtomicU64::new(0));
    let alerts_seen = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Tally::new(opts.checking_agencies));
    // The check API's address, once the service is up (the checking agencies wait for it).
    let check_at: Arc<OnceLock<std::net::SocketAddr>> = Arc::new(OnceLock::new());
    for (i, input) in inputs.iter().enumerate() {
        let who = if inputs.len() > 1 {
            format!(
                "agencies {} dial through {}: {}",
                agencies_of(i, inputs.len()),
                input.topic,
                input.format,
            )
        } else {
            format!("the synthetic dialer writes {}", input.format)
        };
        if input.format == Format::CallEventV1 {
            if inputs.len() > 1 {
                crate::tell!("  {who}");
            }
        } else {
            crate::tell!(
                "  {who} records, read through this mapping:\n{}",
                k.inputs[i].mapping.describe().trim_end()
            );
        }
    }
    if settings.check.enabled && tally.checking > 0 {
        crate::tell!(
            "  agencies 0-{} ask POST /v1/check (reserving) before every call and skip what is refused; the others dial blind",
            tally.checking - 1
        );
    }
    let checks = settings.check.enabled;
    let dialer = {
        let (b, t, s, o, n, ta, at) = (
            brokers.clone(),
            inputs,
            shutdown.clone(),
            opts.clone(),
            produced.clone(),
            tally.clone(),
            check_at.clone(),
        );
        let zone = settings.default_timezone.clone();
        std::thread::Builder::new()
            .name("demo-dialer".into())
            .spawn(move || {
                dialer(
                    &b,
                    t,
                    params,
                    &o,
                    &s,
                    &n,
                    &ta,
                    checks.then_some(&*at),
                    bare,
                    &zone,
                )
            })
            .map_err(|e| ServiceError::Start(e.to_string()))?
    };
    let printer = {
        let (b, t, s, n, print, ta) = (
            brokers.clone(),
            k.alerts_topic.clone(),
            shutdown.clone(),
            alerts_seen.clone(),
            opts.print_alerts,
            tally.clone(),
        );
        std::thread::Builder::new()
            .name("demo-alerts".into())
            .spawn(move || print_alerts(&b, &t, &s, &n, print, &ta))
            .map_err(|e| ServiceError::Start(e.to_string()))?
    };
    if !late_statuses.is_empty() {
        // Statuses that arrive after calls they cover: those calls are flagged then, late.
        let (b, t, s) = (
            brokers.clone(),
            settings.reference.status_topic.clone().unwrap_or_default(),
            shutdown.clone(),
        );
        std::thread::spawn(move || {
            let at = Instant::now() + LATE_STATUSES_AFTER;
            while Instant::now() < at {
                if s.is_triggered() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            crate::tell!(
                "-- {} more third parties asked not to be called (published now to {t}): calls already made to them are flagged late",
                late_statuses.len()
            );
            publish_statuses(&b, &t, &late_statuses);
        });
    }
    if let Some(d) = opts.duration {
        let s = shutdown.clone();
        std::thread::spawn(move || {
            std::thread::sleep(d);
            s.trigger();
        });
    }
    let (p2, a2, s2, t2, at2) = (
        produced.clone(),
        alerts_seen.clone(),
        shutdown.clone(),
        tally.clone(),
        check_at.clone(),
    );
    let result = service::run(settings, shutdown.clone(), true, move |h| {
        crate::tell!(
            "  metrics: http://{}/metrics  health: /livez /readyz",
            h.http_addr
        );
        if let Some(a) = h.check_addr {
            crate::tell!("  pre-dial check: POST http://{a}/v1/check");
            let _ = at2.set(a);
        }
        crate::tell!("  Ctrl-C to stop\n");
        let m = h.metrics.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while !s2.is_triggered() {
                std::thread::sleep(Duration::from_millis(250));
                if start.elapsed().as_millis() % 10_000 < 250 && start.elapsed().as_secs() > 0 {
                    crate::tell!(
                        "-- {}s: {} calls sent, {} consumed, {} alerts, {} rejected (dead-lettered)\n   {}",
                        start.elapsed().as_secs(),
                        p2.load(Ordering::Relaxed),
                        m.consumed.get(),
                        a2.load(Ordering::Relaxed),
                        crate::codec::Reason::ALL
                            .iter()
                            .map(|r| m.rejected.with_label_values(&[r.as_str()]).get())
                            .sum::<u64>(),
                        t2.line(),
                    );
                }
            }
        });
    });
    shutdown.trigger();
    let _ = dialer.join();
    let _ = printer.join();
    crate::tell!(
        "demo stopped: {} calls sent, {} alerts\n{}",
        produced.load(Ordering::Relaxed),
        alerts_seen.load(Ordering::Relaxed),
        tally.table()
    );
    drop(cluster);
    result
}

/// The synthetic dialer: the generator's traffic, keyed by debtor, paced at `rate`. The
/// checking agencies' calls are checked first (`check_at`, once the service is up), and
/// skipped when refused.
/// The status topic the demo creates when the policy has status rules.
const STATUS_TOPIC: &str = "compliance.statuses";
/// When the demo publishes its late statuses.
const LATE_STATUSES_AFTER: Duration = Duration::from_secs(15);

/// Debtor statuses for the demo: with no status topic configured, the CBA third-party stop rule
/// (`packs/cn-cba-2026-status.toml` beside the configuration, when there) joins the policy, a
/// status topic is created on the embedded broker, and third parties the traffic calls ask not
/// to be called — four before the service starts, the rest (returned) to be published once
/// calls to them were made.
fn statuses(
    settings: &mut Settings,
    cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    brokers: &str,
    params: &SynthParams,
    (rate, checking): (u64, u64),
) -> Result<Vec<(String, String)>, ServiceError> {
    use crate::engine::rule::RuleKind;
    if settings.reference.status_topic.is_some() {
        return Ok(Vec::new());
    }
    let has = |s: &Settings| s.rules.iter().any(|r| r.kind == RuleKind::Status);
    if !has(settings) {
        let pack = settings
            .path
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("packs/cn-cba-2026-status.toml");
        if !pack.is_file() {
            return Ok(Vec::new());
        }
        settings
            .add_pack(&pack)
            .map_err(|e| ServiceError::Start(format!("demo statuses: {e}")))?;
    }
    cluster
        .create_topic(STATUS_TOPIC, 1, 1)
        .map_err(|e| ServiceError::Kafka(format!("creating {STATUS_TOPIC}: {e}")))?;
    settings.reference.status_topic = Some(STATUS_TOPIC.to_owned());
    // Numbers the traffic calls as third parties (from the debtors' contact lists): for the
    // late statuses, numbers a blind agency calls in the first 10 s (so calls to them are made
    // before their status arrives); for the others, any.
    let (mut early, mut late): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    let first_seconds = (rate.max(1) * 10) as usize;
    for (i, line) in Synth::new(params.clone()).take(20_000).enumerate() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let Some(p) = v["phone"]
            .as_str()
            .filter(|_| v["relation"] == "contact_list")
        else {
            continue;
        };
        if early.iter().chain(&late).any(|x| x == p) {
            continue;
        }
        let blind = agency_of(&line).is_some_and(|a| a as u64 >= checking);
        if late.len() < 2 && i < first_seconds && blind {
            late.push(p.to_owned());
        } else if early.len() < 4 {
            early.push(p.to_owned());
        }
        if early.len() >= 4 && late.len() >= 2 {
            break;
        }
    }
    // In force from before the traffic's first call (it starts at a local midnight up to a day
    // before `start`).
    let from = Ts(params.start.0 - 2 * 86_400 * NANOS_PER_SEC).to_string();
    let records: Vec<(String, String)> = early
        .iter()
        .chain(&late)
        .enumerate()
        .map(|(i, p)| {
            let id = format!("demo-stop-{i}");
            let v = serde_json::json!({
                "status_id": id, "status": "third_party_stop", "phone": p, "from": from,
                "source": "demo", "note": "asked never to be called again",
            });
            (id, v.to_string())
        })
        .collect();
    let (now, later) = records.split_at(early.len());
    publish_statuses(brokers, STATUS_TOPIC, now);
    crate::tell!(
        "  statuses: {} third parties asked not to be called ({STATUS_TOPIC}, rule cn-cba-third-party-stop); {} more in {} s",
        now.len(),
        later.len(),
        LATE_STATUSES_AFTER.as_secs()
    );
    Ok(later.to_vec())
}

/// The contacts topic the demo creates when none is configured.
const CONTACTS_TOPIC: &str = "compliance.contacts";

/// The lender's contact book for the demo: with no contacts topic configured, one is created on
/// the embedded broker and the book of the traffic's debtors published to it (each one's own
/// number and its contacts, with relation and source, `synth::contact_book`). Returns the
/// agency whose dialer then sends neither relation nor number source, so its calls are filled
/// in from the book (`None` with a contacts topic of the configuration's own).
fn contacts(
    settings: &mut Settings,
    cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    brokers: &str,
    params: &SynthParams,
) -> Result<Option<usize>, ServiceError> {
    if settings.reference.contacts_topic.is_some() {
        return Ok(None);
    }
    cluster
        .create_topic(CONTACTS_TOPIC, 1, 1)
        .map_err(|e| ServiceError::Kafka(format!("creating {CONTACTS_TOPIC}: {e}")))?;
    settings.reference.contacts_topic = Some(CONTACTS_TOPIC.to_owned());
    let mut book = Vec::new();
    crate::synth::contact_book(params, &mut book)
        .map_err(|e| ServiceError::Start(format!("demo contacts: {e}")))?;
    let records: Vec<(String, String)> = String::from_utf8_lossy(&book)
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let key = format!("{}/{}", v["debtor_id"].as_str()?, v["phone"].as_str()?);
            Some((key, l.to_owned()))
        })
        .collect();
    publish_statuses(brokers, CONTACTS_TOPIC, &records);
    let bare = AGENCIES as usize - 1;
    crate::tell!(
        "  contacts: {} numbers in {} debtors' books ({CONTACTS_TOPIC}); agency-{bare}'s dialer sends neither relation nor number source: the book fills them in",
        records.len(),
        params.debtors
    );
    Ok(Some(bare))
}

/// Publishes reference records (statuses keyed by status_id, contacts by debtor and number).
fn publish_statuses(brokers: &str, topic: &str, records: &[(String, String)]) {
    let producer: BaseProducer = match ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
    {
        Ok(p) => p,
        Err(e) => {
            crate::tell!("demo statuses: {e}");
            return;
        }
    };
    for (k, v) in records {
        if let Err((e, _)) = producer.send(BaseRecord::to(topic).key(k).payload(v)) {
            crate::tell!("demo statuses: {e}");
        }
    }
    let _ = producer.flush(Duration::from_secs(5));
}

/// The synthetic dialer's traffic: `o.days` days ending yesterday (local), so nothing is in the
/// future.
fn traffic(o: &DemoOptions) -> SynthParams {
    let day = 86_400 * NANOS_PER_SEC;
    let now = Ts::from_jiff(jiff::Timestamp::now());
    SynthParams {
        calls: o.calls,
        debtors: o.debtors,
        days: o.days,
        start: Ts(now.0 - (o.days as i64 + 1) * day),
        seed: now.0 as u64,
        invalid_fraction: 0.002,
        ..Default::default()
    }
}

#[allow(clippy::too_many_arguments)]
fn dialer(
    brokers: &str,
    inputs: Vec<Input>,
    params: SynthParams,
    o: &DemoOptions,
    stop: &Shutdown,
    sent: &AtomicU64,
    tally: &Tally,
    check_at: Option<&OnceLock<std::net::SocketAddr>>,
    bare: Option<usize>,
    zone: &str,
) {
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
    let start = Instant::now();
    let rate = o.rate.max(1);
    // A dialer of another format writes each call as its own record.
    let zone = jiff::tz::TimeZone::get(zone).unwrap_or(jiff::tz::TimeZone::UTC);
    let mut v1 = crate::codec::Decoder::new(crate::codec::DecodeSettings {
        max_future_skew: i64::MAX / 4,
        ..crate::codec::DecodeSettings::default()
    });
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
        let agency = agency_of(&line);
        // One agency's dialer knows neither relation nor number source (the contact book
        // fills them in).
        let line = match agency {
            Some(a) if Some(a) == bare => crate::synth::without_provenance(&line),
            _ => line,
        };
        let line = line.trim_end();
        // Each agency's dialer writes to one input (agency a to input a mod n).
        let input = &inputs[agency.map_or(0, |a| a % inputs.len())];
        let record = (input.format != Format::CallEventV1).then(|| {
            // A record the v1 decoder refuses is sent as it is (refused again, as a CDR).
            match v1.decode(line.as_bytes(), Ts(i64::MAX / 2)) {
                Ok(call) => render::render(input.format, &call, &zone),
                Err(_) => line.to_owned(),
            }
        });
        if let (Some(a), Some(at)) = (agency, check_at) {
            if (a as u64) < tally.checking && !may_dial(at, line, stop) {
                tally.blocked[a].fetch_add(1, Ordering::Relaxed);
                continue;
            }
        }
        if let Some(a) = agency {
            tally.placed[a].fetch_add(1, Ordering::Relaxed);
        }
        let payload = record.as_deref().unwrap_or(line).as_bytes();
        loop {
            let mut rec = BaseRecord::<str, [u8]>::to(&input.topic).payload(payload);
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

/// Asks the pre-dial check whether `line` (a call event) may be dialed, reserving the attempt
/// (released when the call arrives): `?mode=status`, 200 = dial, 409 = do not. Waits while the
/// service is not up or not ready (503); the demo's dialer fails closed.
fn may_dial(at: &OnceLock<std::net::SocketAddr>, line: &str, stop: &Shutdown) -> bool {
    let body = format!(
        "{{\"reserve\":true,{}",
        line.strip_prefix('{').unwrap_or(line)
    );
    while !stop.is_triggered() {
        if let Some(addr) = at.get() {
            match crate::http::request(
                *addr,
                "POST",
                "/v1/check?mode=status",
                Some(&body),
                Duration::from_secs(5),
            ) {
                Ok((200, _)) => return true,
                Ok((409, _)) => return false,
                Ok((400, _)) => return true, // a malformed call: the service dead-letters it
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// One call's alerts, gathered to print as one line.
struct Pending {
    call_id: String,
    occurred_at: String,
    severity: String,
    rules: Vec<String>,
    message: String,
    late: bool,
    agency: Option<usize>,
}

impl Pending {
    fn print(&self, checking: u64) {
        let who = match self.agency {
            Some(a) if (a as u64) < checking => format!("agency-{a} (checks)"),
            Some(a) => format!("agency-{a} (blind) "),
            None => String::new(),
        };
        let more = match self.rules.len() {
            1 => String::new(),
            n => format!(" (+{} more)", n - 1),
        };
        crate::say!(
            "{} {:<8} {:<18} {:<36} {}{}{}",
            self.occurred_at,
            self.severity,
            who,
            self.rules.join(", "),
            self.message,
            more,
            if self.late { " (late)" } else { "" }
        );
    }
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 4,
        "high" => 3,
        "medium" => 2,
        "low" => 1,
        _ => 0,
    }
}

/// Prints the alerts of each call as one readable line (the rules it broke, the most severe
/// first; the first alert's message), and counts alerts per agency.
fn print_alerts(
    brokers: &str,
    topic: &str,
    stop: &Shutdown,
    seen: &AtomicU64,
    print: bool,
    tally: &Tally,
) {
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
    // A call's alerts are produced together, keyed by its debtor: they arrive one after the
    // other on one partition.
    let mut pending: Option<Pending> = None;
    while !stop.is_triggered() {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
            if let Some(p) = pending.take() {
                p.print(tally.checking);
            }
            continue;
        };
        seen.fetch_add(1, Ordering::Relaxed);
        let text = std::str::from_utf8(m.payload().unwrap_or_default()).unwrap_or("");
        let agency = agency_of(text);
        if let Some(a) = agency {
            tally.alerts[a].fetch_add(1, Ordering::Relaxed);
        }
        if !print {
            continue;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
            continue;
        };
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
        let late = v.get("late").and_then(|x| x.as_bool()) == Some(true);
        match &mut pending {
            Some(p) if p.call_id == s("call_id") => {
                if severity_rank(&s("severity")) > severity_rank(&p.severity) {
                    p.severity = s("severity");
                    p.rules.insert(0, s("rule_id"));
                    p.message = s("message");
                } else {
                    p.rules.push(s("rule_id"));
                }
                p.late |= late;
            }
            _ => {
                if let Some(p) = pending.take() {
                    p.print(tally.checking);
                }
                pending = Some(Pending {
                    call_id: s("call_id"),
                    occurred_at: s("occurred_at"),
                    severity: s("severity"),
                    rules: vec![s("rule_id")],
                    message: s("message"),
                    late,
                    agency,
                });
            }
        }
    }
    if let Some(p) = pending.take() {
        p.print(tally.checking);
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn agencies_are_read_from_calls_and_alerts() {
        assert_eq!(
            agency_of(r#"{"call_id":"c","agency_id":"agency-3","x":1}"#),
            Some(3)
        );
        assert_eq!(
            agency_of(r#"{"agency_id":"agency-7"}"#),
            None,
            "beyond the traffic's"
        );
        assert_eq!(agency_of(r#"{"agency_id":"other"}"#), None);
        assert_eq!(agency_of(r#"{"call_id":"c"}"#), None);
    }

    #[test]
    fn the_tally_puts_checking_agencies_first() {
        let t = Tally::new(2);
        t.placed[0].fetch_add(10, Ordering::Relaxed);
        t.blocked[1].fetch_add(4, Ordering::Relaxed);
        t.placed[5].fetch_add(20, Ordering::Relaxed);
        t.alerts[5].fetch_add(5, Ordering::Relaxed);
        assert_eq!(
            t.line(),
            "agencies 0-1 (check first): 10 placed, 4 blocked before dialing, 0 alerts | agencies 2-6 (dial blind): 20 placed, 5 alerts"
        );
        let table = t.table();
        assert!(table.contains("agency-1  checks first"), "{table}");
        assert!(table.contains("agency-5  dials blind"), "{table}");
        assert!(table.contains("250.0"), "{table}");
    }
}
