//! The one integration-test binary (see ENGINEERING.md §1 item 14).

// Helpers shared by the tests.
mod support;

// Call event v1 decoding and every rejection reason.
mod codec;
// Configuration files, environment overrides and validation errors.
mod config;
// The pre-dial check.
mod engine_check;
// The pre-dial check API on a running service.
mod check_api;
// The engine against a naive oracle, over random calls and arrival orders.
mod engine_prop;
// Kafka protocol round trip on the mock cluster.
mod kafka_mock;
// The pure-core rule, enforced.
mod layout;
// Replay end to end.
mod replay;
// `dialguard run` on the mock cluster: delivery, restarts, rebalances, broker outages.
mod service;
// Debtor statuses from the status topic, in `run`.
mod statuses;
// Dialers' own records (Asterisk, FreeSWITCH, VICIdial) through a mapping.
mod formats;
// The lender's contact book: contact rules and enrichment against oracles.
mod contacts;
// The deployment files against a running instance: every metric they use is exposed.
mod ops;
// Bounded, quiet exits: signals, --seconds, closed pipes, brokers gone.
mod exits;
// Golden scenarios: edges of the semantics and every shipped pack.
mod golden;
// The allocator options the binary sets.
mod allocator_options;
#[cfg(unix)]
mod mapped_input;
