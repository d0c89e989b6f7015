//! Helpers shared by the integration tests.

use dialguard::alert::{self, Alert};
use dialguard::engine::event::Call;
use dialguard::engine::rule::Rule;
use dialguard::engine::time::Ts;
use dialguard::engine::{Engine, Ingest, Lane};
use dialguard::policy::RuleSpec;
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

/// The engine's breaches rendered as Alert v1, the way every driver renders them: tests
/// compare alerts, and the oracle speaks in alert fields.
pub trait Alerting {
    /// [`Engine::ingest`], rendering what it finds into `out` at `now`.
    fn ingest_alerts(&mut self, call: &Call, now: Ts, out: &mut Vec<Alert>) -> Ingest;
    /// [`Engine::ingest_on`], rendering what it finds into `out` at `now`.
    fn ingest_alerts_on(
        &mut self,
        lane: Lane,
        call: &Call,
        now: Ts,
        out: &mut Vec<Alert>,
    ) -> Ingest;
    /// [`Engine::restore`], rendering what it finds into `out` at `now`.
    fn restore_alerts(&mut self, call: &Call, now: Ts, out: &mut Vec<Alert>) -> bool;
    /// [`Engine::check`], rendered at `now`.
    fn check_alerts(&mut self, call: &Call, now: Ts) -> Vec<Alert>;
}

impl Alerting for Engine {
    fn ingest_alerts(&mut self, call: &Call, now: Ts, out: &mut Vec<Alert>) -> Ingest {
        self.ingest_alerts_on(0, call, now, out)
    }

    fn ingest_alerts_on(
        &mut self,
        lane: Lane,
        call: &Call,
        now: Ts,
        out: &mut Vec<Alert>,
    ) -> Ingest {
        let mut found = Vec::new();
        let r = self.ingest_on(lane, call, &mut found);
        alert::render_all(self.rules(), &found, call, now, out);
        r
    }

    fn restore_alerts(&mut self, call: &Call, now: Ts, out: &mut Vec<Alert>) -> bool {
        let mut found = Vec::new();
        let r = self.restore(call, &mut found);
        alert::render_all(self.rules(), &found, call, now, out);
        r
    }

    fn check_alerts(&mut self, call: &Call, now: Ts) -> Vec<Alert> {
        let found = self.check(call);
        let mut out = Vec::new();
        alert::render_all(self.rules(), &found, call, now, &mut out);
        out
    }
}
