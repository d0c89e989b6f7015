//! The one integration-test binary (see ENGINEERING.md §1 item 14).

// The engine against a naive oracle, over random calls and arrival orders.
mod engine_prop;
