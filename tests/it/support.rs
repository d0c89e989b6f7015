//! Helpers shared by the integration tests.

use dialguard::engine::rule::{Rule, RuleSpec};
use jiff::tz::TimeZone;

/// Compiles `[[rules]]` written in TOML, with `zone` as the default time zone.
pub fn rules_from_toml(text: &str, zone: &str) -> Vec<Rule> {
    #[derive(serde::Deserialize)]
    struct File {
        rules: Vec<RuleSpec>,
    }
    let f: File = toml::from_str(text).unwrap();
    let tz = TimeZone::get(zone).unwrap();
    f.rules
        .iter()
        .map(|r| r.compile(&tz, zone, Some("test")).unwrap())
        .collect()
}
