//! Helpers shared by the integration tests.

use dialguard::alert::{self, Alert};
use dialguard::engine::breach::Breach;
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

/// Renders `found` into `out` and holds the direct JSON writers (`write_alert_json`, and
/// `AlertJson`, what replay writes with) to the rendered alerts, byte for byte: every alert a
/// test sees checks them.
pub fn render_checked(
    rules: &[Rule],
    found: &[Breach],
    call: &Call,
    now: Ts,
    out: &mut Vec<Alert>,
) {
    let before = out.len();
    alert::render_all(rules, found, call, now, out);
    let mut scratch = String::new();
    let mut many = alert::AlertJson::new(rules);
    for (b, a) in found.iter().zip(&out[before..]) {
        let want = serde_json::to_string(a).unwrap();
        let mut direct = Vec::new();
        alert::write_alert_json(rules, b, call, now, &mut direct, &mut scratch);
        assert_eq!(
            String::from_utf8(direct).unwrap(),
            want,
            "the direct writer and the rendered alert differ"
        );
        let mut direct = Vec::new();
        many.write(b, call, now, &mut direct);
        assert_eq!(
            String::from_utf8(direct).unwrap(),
            want,
            "the writer of many alerts and the rendered alert differ"
        );
    }
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
        render_checked(self.rules(), &found, call, now, out);
        r
    }

    fn restore_alerts(&mut self, call: &Call, now: Ts, out: &mut Vec<Alert>) -> bool {
        let mut found = Vec::new();
        let r = self.restore(call, &mut found);
        render_checked(self.rules(), &found, call, now, out);
        r
    }

    fn check_alerts(&mut self, call: &Call, now: Ts) -> Vec<Alert> {
        let found = self.check(call);
        let mut out = Vec::new();
        render_checked(self.rules(), &found, call, now, &mut out);
        out
    }
}

/// Shuffles `v` deterministically from `seed` (xorshift; Fisher-Yates): arrival orders for the
/// property tests, which proptest shrinks through the seed.
pub fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut x = seed | 1;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
}
