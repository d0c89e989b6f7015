//! `dialguard run`: the service. Kafka in, alerts and dead letters out, at least once, with the
//! engine's windows rebuilt from the retained history whenever partitions are assigned.
//!
//! # Shape
//! One processing thread owns the Kafka consumer, the producer and the engine, and judges each
//! partition's records in order ([`pipeline`]); a decoder thread decodes the records it polled
//! and interns their strings while it judges the ones before ([`ahead`]), and a producer thread
//! writes and produces the alerts and directives of the ones judged ([`produce`]). librdkafka calls the
//! rebalance callbacks on the processing thread, from inside `poll`, so the state owner handles
//! them with no locks between it and itself. A tokio runtime with one worker serves HTTP ([`crate::http`]) and
//! waits for signals. Everything meets in [`run`].
//!
//! # Delivery (at least once, duplicates suppressed)
//! - An input offset is committed only after every alert and dead-letter record that it and the
//!   records before it caused was acknowledged by the broker ([`offsets::OffsetBook`]).
//! - A failed delivery is sent again (librdkafka already retried within
//!   `message.timeout.ms`); nothing is acknowledged that was not delivered.
//! - On assignment the instance reads back the input history up to the committed offsets
//!   (windows, "already breached" marks) and the alerts topic (alerts already published for
//!   records after the committed offsets), so a restart after `kill -9` republishes nothing:
//!   `alert_id` is a function of (rule, call), and the ids seen are not produced again.

mod ahead;
mod changelog;
mod inputs;
mod kafka;
mod messages;
pub mod offsets;
pub mod pipeline;
mod produce;
pub mod rebuild;
mod reference;
pub mod snapshots;

pub use crate::lifecycle::{Health, Shutdown};

use crate::config::Settings;
use crate::telemetry::Metrics;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why the service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The HTTP or check listener could not be bound.
    #[error("{key}: cannot listen on {addr}: {source}")]
    Listen {
        /// The configuration key of the address.
        key: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration cannot work in the service.
    #[error("invalid configuration: {key}: {reason}")]
    Config {
        /// The configuration key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A Kafka client could not be created or subscribed.
    #[error("kafka: {0}")]
    Kafka(String),
    /// The runtime or a thread could not start.
    #[error("{0}")]
    Start(String),
    /// The processing thread did not stop within the grace period (a Kafka call blocked).
    #[error("the processing thread did not stop within service.shutdown_grace ({0:?}); unacknowledged records stay uncommitted")]
    ShutdownTimeout(Duration),
}

/// Handles the service exposes while it runs (tests and the demo use them).
#[derive(Clone)]
pub struct Handles {
    /// The metric catalogue.
    pub metrics: Arc<Metrics>,
    /// Liveness and readiness.
    pub health: Arc<Health>,
    /// The bound HTTP address (useful with port 0).
    pub http_addr: std::net::SocketAddr,
    /// The bound address of the pre-dial check API, when it is served.
    pub check_addr: Option<std::net::SocketAddr>,
}

/// Runs the service until `shutdown` is triggered (or, with `signals`, SIGTERM/SIGINT), then
/// drains: stop fetching, flush the producer, commit, stop HTTP. `on_start` receives the handles
/// once HTTP is listening.
pub fn run(
    mut settings: Settings,
    shutdown: Shutdown,
    signals: bool,
    on_start: impl FnOnce(&Handles),
) -> Result<(), ServiceError> {
    settings.follow_reference_topics();
    if let Some(r) = settings.status_rule_without_topic() {
        return Err(ServiceError::Config {
            key: "reference.status_topic".into(),
            reason: format!(
                "rule {} is a status rule, and no status topic is set: it would never see a status (set [reference] status_topic, or leave the rule out)",
                r.id
            ),
        });
    }
    if settings.reference.contacts_topic.is_none() {
        if let Some(at) = settings
            .kafka
            .inputs
            .iter()
            .position(|i| i.mapping.debtor_from_book())
        {
            let key = if settings.kafka.inputs.len() > 1 {
                format!("kafka.inputs[{at}].mapping.debtor_id")
            } else {
                "mapping.debtor_id".to_owned()
            };
            return Err(ServiceError::Config {
                key,
                reason: format!(
                    "{} finds debtors in the contact book, and no contacts topic is set: every call would be refused (set [reference] contacts_topic)",
                    crate::formats::CONTACT_BOOK
                ),
            });
        }
        if let Some(r) = settings
            .rules
            .iter()
            .find(|r| r.kind == crate::engine::rule::RuleKind::Contact)
        {
            tracing::info!(
                rule = %r.id,
                "no contacts topic: contact rules judge what call events say of their numbers, not the lender's contact book ([reference] contacts_topic)"
            );
        }
    }
    let metrics = Arc::new(Metrics::new(
        &settings.rules,
        settings.kafka.partition_lag_metric,
    ));
    let health = Arc::new(Health::new(settings.service.stall_after));
    health.beat();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("dialguard-http")
        .enable_all()
        .build()
        .map_err(|e| ServiceError::Start(format!("tokio runtime: {e}")))?;
    let bind = |key: &'static str, addr: std::net::SocketAddr| {
        rt.block_on(tokio::net::TcpListener::bind(addr))
            .map_err(|source| ServiceError::Listen { key, addr, source })
    };
    let addr = settings.http.listen;
    let listener = bind("http.listen", addr)?;
    let http_addr = listener.local_addr().unwrap_or(addr);
    tracing::info!(%http_addr, "serving /metrics, /livez, /readyz");
    let http = rt.spawn(crate::http::serve(
        listener,
        metrics.clone(),
        health.clone(),
        shutdown.clone(),
    ));
    let mut checks = None;
    let mut check_addr = None;
    let mut state = crate::check::Live::new(crate::engine::Engine::new(
        settings.rules.clone(),
        settings.engine.clone(),
    ));
    state.inputs = settings
        .kafka
        .inputs
        .iter()
        .map(|i| i.topic.clone())
        .collect();
    let live = Arc::new(std::sync::Mutex::new(state));
    if settings.check.enabled {
        let addr = settings.check.listen;
        let listener = bind("check.listen", addr)?;
        let bound = listener.local_addr().unwrap_or(addr);
        tracing::info!(
            check_addr = %bound,
            authenticated = !settings.check.tokens.is_empty(),
            "serving POST /v1/check"
        );
        let (tx, rx) = crate::check::queue(&settings.check);
        rt.spawn(crate::check::serve(
            listener,
            live.clone(),
            tx,
            settings.check.clone(),
            settings.rules.clone(),
            crate::codec::Decoder::new(settings.decode.for_v1()),
            metrics.clone(),
            health.clone(),
            shutdown.clone(),
        ));
        checks = Some(rx);
        check_addr = Some(bound);
    }
    if let (None, Some(topic)) = (
        &settings.service.snapshot_dir,
        &settings.kafka.snapshots_topic,
    ) {
        let (config, topic) = (pipeline::configured_client(&settings.kafka), topic.clone());
        std::thread::Builder::new()
            .name("dialguard-snapshot-topic".into())
            .spawn(move || changelog::ensure_compacted(config, topic))
            .map_err(|e| ServiceError::Start(format!("snapshot topic thread: {e}")))?;
    }
    if signals {
        let s = shutdown.clone();
        rt.spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received: draining");
            s.trigger();
        });
    }
    on_start(&Handles {
        metrics: metrics.clone(),
        health: health.clone(),
        http_addr,
        check_addr,
    });

    let grace = settings.service.shutdown_grace;
    let (m, h, s) = (metrics.clone(), health.clone(), shutdown.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("dialguard-pipeline".into())
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pipeline::run(&settings, &m, &h, &s, checks, live)
            }));
            let _ = tx.send(r.unwrap_or_else(|_| {
                Err(ServiceError::Start("the processing thread panicked".into()))
            }));
        })
        .map_err(|e| ServiceError::Start(format!("processing thread: {e}")))?;
    let result = wait_for_pipeline(&rx, &shutdown, grace);
    shutdown.trigger();
    rt.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(1), http).await;
    });
    rt.shutdown_timeout(Duration::from_millis(500));
    result
}

/// The pipeline's result; once shutdown is triggered, waits `grace` at most (it bounds its own
/// stop within that; this is the guard should a librdkafka call block regardless).
fn wait_for_pipeline(
    rx: &std::sync::mpsc::Receiver<Result<(), ServiceError>>,
    shutdown: &Shutdown,
    grace: Duration,
) -> Result<(), ServiceError> {
    let mut deadline: Option<Instant> = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(r) => return r,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(ServiceError::Start("the processing thread vanished".into()))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if shutdown.is_triggered() {
            let d = *deadline.get_or_insert_with(|| Instant::now() + grace);
            if Instant::now() >= d {
                return Err(ServiceError::ShutdownTimeout(grace));
            }
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
