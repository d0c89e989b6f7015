//! The pre-dial check: which rules a call would breach, without recording it.

use crate::support::rules_from_toml;
use crate::support::Alerting;
use dialguard::engine::event::{Call, CallOutcome, Relation};
use dialguard::engine::time::{Ts, NANOS_PER_SEC};
use dialguard::engine::{Engine, EngineSettings, Ingest};

fn engine() -> Engine {
    let rules = rules_from_toml(
        r#"
[[rules]]
id = "two-per-day"
kind = "cap"
severity = "high"
key = ["phone"]
window = "1d"
limit = 2
[[rules]]
id = "cool"
kind = "cooldown"
severity = "high"
key = ["debtor_id"]
period = "2h"
[rules.after]
outcome = ["conversation"]
[[rules]]
id = "no-contacts"
kind = "forbid"
severity = "low"
[rules.when]
relation = ["contact_list"]
"#,
        "UTC",
    );
    Engine::new(rules, EngineSettings::default())
}

fn call(id: &str, hour: i64, phone: &str) -> Call {
    Call::new(
        id,
        Ts(1_794_000_000 * NANOS_PER_SEC + hour * 3600 * NANOS_PER_SEC),
        "d1",
        phone,
        Relation::SelfDebtor,
    )
}

#[test]
fn check_reports_breaches_without_recording() {
    let mut e = engine();
    let mut out = Vec::new();
    let mut first = call("a", 0, "+8613800000001");
    first.outcome = Some(CallOutcome::Conversation);
    e.ingest_alerts(&first, Ts(0), &mut out);
    e.ingest_alerts(&call("b", 3, "+8613800000001"), Ts(0), &mut out);
    assert!(out.is_empty());

    // A third call to the same phone within a day would breach the cap; one an hour after the
    // conversation would also be in the cooldown; an unknown number breaches nothing.
    let probe = call("p", 4, "+8613800000001");
    let ids: Vec<String> = e
        .check_alerts(&probe, Ts(0))
        .into_iter()
        .map(|a| a.rule_id)
        .collect();
    assert_eq!(ids, vec!["two-per-day"]);
    let near = call("q", 1, "+8613800000002");
    let ids: Vec<String> = e
        .check_alerts(&near, Ts(0))
        .into_iter()
        .map(|a| a.rule_id)
        .collect();
    assert_eq!(ids, vec!["cool"]);
    let mut stranger = call("r", 30, "+8613800000009");
    stranger.relation = Relation::ContactList;
    let ids: Vec<String> = e
        .check_alerts(&stranger, Ts(0))
        .into_iter()
        .map(|a| a.rule_id)
        .collect();
    assert_eq!(ids, vec!["no-contacts"]);

    // Nothing was recorded: the engine still holds two calls, and the probe ingests as new.
    assert_eq!(e.retained_calls(), 2);
    assert_eq!(e.stats().alerts, 0);
    assert!(matches!(
        e.ingest_alerts(&probe, Ts(0), &mut out),
        Ingest::Accepted { .. }
    ));
    assert_eq!(
        out.iter().map(|a| a.rule_id.as_str()).collect::<Vec<_>>(),
        vec!["two-per-day"]
    );
}

#[test]
fn advance_evicts_what_the_watermark_has_left_behind() {
    // Sweeps normally run as event time advances; `advance` forces one (the idle-partition tick).
    let rules = rules_from_toml("[[rules]]\nid = \"c\"\nkind = \"cap\"\nseverity = \"low\"\nkey = [\"phone\"]\nwindow = \"1h\"\nlimit = 5\n", "UTC");
    let hour = 3600 * NANOS_PER_SEC;
    let settings = EngineSettings {
        allowed_lateness: hour,
        sweep_every: Some(1_000 * hour),
        ..Default::default()
    };
    let mut e = Engine::new(rules, settings);
    let mut out = Vec::new();
    for i in 0..48 {
        e.ingest_alerts(
            &call(&format!("c{i}"), i, "+8613800000001"),
            Ts(0),
            &mut out,
        );
    }
    let before = e.retained_calls();
    // The service's tick sweeps only once a sweep is due (sweep_every here is 1000 h): a
    // sweep reads the whole state, and ticking every second must not repeat it.
    e.tick();
    assert_eq!(e.stats().evicted, 0);
    e.advance();
    // Retention is the 1h window plus 1h lateness: calls at hours 45, 46 and 47 remain.
    assert_eq!((before, e.retained_calls()), (48, 3));
    assert_eq!(e.stats().evicted, 45);
}

/// Eviction is exact across many slab chunks (4,096 slots each) whose slots are reused, with
/// calls arriving late and passes run in small steps while calls arrive: whenever a sweep is
/// forced, exactly the accepted calls within retention of the newest remain. (Eviction passes
/// skip a chunk none of whose calls has expired, by a lower bound of its calls' times that
/// storing a call lowers; the test fails when storing a call in a reused slot does not.)
#[test]
fn eviction_is_exact_across_reused_chunks_with_late_calls() {
    let rules = rules_from_toml("[[rules]]\nid = \"c\"\nkind = \"cap\"\nseverity = \"low\"\nkey = [\"phone\"]\nwindow = \"1h\"\nlimit = 1000\n", "UTC");
    let minute = 60 * NANOS_PER_SEC;
    let settings = EngineSettings {
        allowed_lateness: 60 * minute,
        sweep_step: 64,
        ..Default::default()
    };
    let mut e = Engine::new(rules, settings);
    let retention = e.retention();
    let base = 1_794_000_000 * NANOS_PER_SEC;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut accepted: Vec<i64> = Vec::new();
    let mut out = Vec::new();
    let mut newest = i64::MIN;
    for i in 0..60_000i64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Ten calls a minute; one in eight up to 50 minutes late (within lateness).
        let mut ts = base + i * minute / 10;
        if x % 8 == 0 {
            ts -= (x >> 8) as i64 % (50 * minute);
        }
        let c = Call::new(
            &format!("c{i}"),
            Ts(ts),
            "d1",
            &format!("+86138000{:05}", x % 5000),
            Relation::SelfDebtor,
        );
        if matches!(
            e.ingest_alerts(&c, Ts(0), &mut out),
            Ingest::Accepted { .. }
        ) {
            accepted.push(ts);
            newest = newest.max(ts);
        }
        out.clear();
        if i % 101 == 100 {
            e.advance();
            accepted.retain(|&t| t >= newest - retention);
            assert_eq!(e.retained_calls(), accepted.len(), "after call {i}");
        }
    }
    assert!(e.stats().evicted > 40_000, "{}", e.stats().evicted);
}

/// After a restart the service reads each partition's history back in offset order, the order
/// it was judged in live, and restores it with the live lateness gate: the restored engine
/// keeps exactly the calls the live one accepted (a call refused as too late before the restart
/// does not count after it, as in a replay), and judges new calls exactly like the live one.
#[test]
fn restored_history_judges_new_calls_like_live_state() {
    let mut hist = Vec::new();
    // Arrival order; with an hour of lateness, the calls at hours 1, 2 and 3 are too late.
    for (i, h) in [0i64, 20, 1, 2, 19, 3].iter().enumerate() {
        let mut c = call(&format!("h{i}"), *h, "+8613800000001");
        if i == 0 {
            c.outcome = Some(CallOutcome::Conversation);
        }
        hist.push(c);
    }
    let mut live = engine();
    let mut live_alerts = Vec::new();
    let mut accepted = Vec::new();
    for c in &hist {
        if let Ingest::Accepted { .. } = live.ingest_alerts(c, Ts(0), &mut live_alerts) {
            accepted.push(c.call_id.clone());
        }
    }
    assert_eq!(accepted, ["h0", "h1", "h4"]);
    assert!(!live_alerts.is_empty());

    let mut restored = engine();
    let mut dropped = Vec::new();
    let restored_ids: Vec<String> = hist
        .iter()
        .filter(|c| restored.restore_alerts(c, Ts(0), &mut dropped))
        .map(|c| c.call_id.to_string())
        .collect();
    assert_eq!(restored_ids, accepted, "restore decides as live did");
    assert_eq!(restored.retained_calls(), live.retained_calls());
    let mut a = Vec::new();
    let mut b = Vec::new();
    let next = call("n", 21, "+8613800000001");
    live.ingest_alerts(&next, Ts(0), &mut a);
    restored.ingest_alerts(&next, Ts(0), &mut b);
    let ids = |v: &[dialguard::alert::Alert]| {
        let mut x: Vec<String> = v.iter().map(|a| a.alert_id.clone()).collect();
        x.sort();
        x
    };
    // A late call re-judges the calls after it; those breached already must not come again.
    let late = call("m", 19, "+8613800000001");
    live.ingest_alerts(&late, Ts(0), &mut a);
    restored.ingest_alerts(&late, Ts(0), &mut b);
    assert!(!a.is_empty());
    assert_eq!(ids(&a), ids(&b));
    assert!(
        b.iter().all(|x| x.call_id == "n" || x.call_id == "m"),
        "{:?}",
        b.iter()
            .map(|x| (&x.rule_id, &x.call_id))
            .collect::<Vec<_>>()
    );
    // Something older than the whole retention span is refused: it can no longer matter.
    let ancient = call("old", -24 * 400, "+8613800000001");
    assert!(!restored.restore_alerts(&ancient, Ts(0), &mut dropped));
}

/// A dialer that checks its reserved call again (to refresh the reservation, or re-asks before
/// dialing) is told what placing that one attempt does: its own reservation is not counted a
/// second time, while another call is counted against it.
#[test]
fn a_reserved_call_checked_again_is_counted_once() {
    let rules = rules_from_toml("[[rules]]\nid = \"c\"\nkind = \"cap\"\nseverity = \"low\"\nkey = [\"phone\"]\nwindow = \"1h\"\nlimit = 1\n", "UTC");
    let mut e = Engine::new(rules, EngineSettings::default());
    let mine = call("mine", 10, "+8613800000001");
    assert!(e.verdict(&mine).allowed());
    assert!(e.reserve(&mine, Ts(60)));
    assert!(
        e.verdict(&mine).allowed(),
        "its own reservation counted twice"
    );
    let other = call("other", 10, "+8613800000001");
    let v = e.verdict(&other);
    assert!(!v.allowed(), "the reservation is not counted");
    assert_eq!(v.breaches[0].observed, 2);
    // Reserving it again replaces the reservation (a new expiry), still one attempt.
    assert!(e.reserve(&mine, Ts(120)));
    assert_eq!(e.reservations(), 1);
    assert_eq!(
        e.expire_reservations(Ts(60)),
        0,
        "the replaced expiry is gone"
    );
    assert_eq!(e.expire_reservations(Ts(120)), 1);
    assert!(e.verdict(&other).allowed());
}
