//! dialguard keeps debt-collection dialing inside the law: it judges dialer call events against
//! frequency, calling-hours and third-party-contact rules, in event time, and emits alerts.
//!
//! # Layout
//! - [`engine`]: the pure core — windows, rules, alerts. Synchronous, deterministic, clock
//!   injected; no async runtime, Kafka, metrics or logging.
//! - [`codec`]: call event v1 wire format → [`engine::event::Call`], with a closed set of
//!   rejection reasons.
//! - [`config`]: the TOML configuration and policy packs → validated [`config::Settings`].
//! - [`replay`]: `dialguard replay`, a backtest of a policy over recorded events.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod codec;
pub mod config;
pub mod engine;
pub mod phone;
pub mod replay;
pub mod synth;
