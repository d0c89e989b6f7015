//! dialguard keeps debt-collection dialing inside the law: it judges dialer call events against
//! frequency, calling-hours and third-party-contact rules, in event time, and emits alerts.
//!
//! # Layout
//! - [`engine`]: the pure core — records, windows, one file per rule kind, breaches,
//!   snapshots. Synchronous, deterministic, no clock; no async runtime, Kafka, metrics or
//!   logging.
//! - [`judge`]: the one judge step (bytes → decode → engine → outcome) every driver uses.
//! - [`alert`]: Alert v1, rendered from the engine's breaches.
//! - [`policy`]: the TOML rule format (spec → compiled rule) and `check-config`'s printing.
//! - [`codec`]: call event v1 wire format → [`engine::event::Call`], with a closed set of
//!   rejection reasons.
//! - [`formats`]: dialer records (Asterisk, FreeSWITCH and VICIdial CDRs) read through a
//!   mapping into what call event v1 decodes to.
//! - [`config`]: the TOML configuration and policy packs → validated [`config::Settings`].
//! - [`replay`]: `dialguard replay`, a backtest of a policy over recorded events.
//! - [`service`]: `dialguard run`, the Kafka service (consume, judge, produce, commit, rebuild);
//!   [`http`] serves its metrics and health, [`check`] the pre-dial check API; [`telemetry`] is
//!   the metric catalogue; [`lifecycle`] holds the shutdown trigger and health, below all three.
//! - [`convert`]: `dialguard convert`, a dialer's records to call events v1.
//! - [`console`]: the command line's output, which never panics on a closed pipe.
//! - [`demo`]: `dialguard demo`, the service on librdkafka's in-process mock cluster with a
//!   synthetic dialer ([`synth`]).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod alert;
pub mod check;
pub mod codec;
pub mod config;
pub mod console;
pub mod convert;
pub mod demo;
pub mod directive;
pub mod engine;
pub mod formats;
pub mod http;
pub mod judge;
pub mod lifecycle;
pub mod partition;
pub mod phone;
pub mod policy;
pub mod reference;
pub mod replay;
pub mod service;
pub mod synth;
pub mod telemetry;
