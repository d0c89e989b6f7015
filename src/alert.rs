//! Alert v1 (DESIGN.md §4): what a breach looks like to the compliance team and to dialers.
//!
//! The engine finds [`Breach`] values; this module alone renders them as alerts — the JSON
//! object, its message, its id — on whichever thread the caller renders on (replay's writer,
//! the service's produce step), stamping `detected_at` with the caller's clock.

use crate::engine::breach::Breach;
use crate::engine::event::{Call, StrField, Text};
use crate::engine::rule::{self, Body, Rule, Window};
use crate::engine::time::{self, Local, Ts};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The instants bounding the window or period that made a breach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowBounds {
    /// Start (RFC 3339, UTC). For rolling windows it is exclusive, for local ones inclusive.
    pub from: String,
    /// End (RFC 3339, UTC).
    pub to: String,
}

/// One breach of one rule by one call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// Deterministic: see [`alert_id`].
    pub alert_id: String,
    /// The rule breached.
    pub rule_id: String,
    /// The rule's kind.
    pub kind: &'static str,
    /// The rule's severity.
    pub severity: &'static str,
    /// The rule's citation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub citation: Option<String>,
    /// The pack the rule came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack: Option<String>,
    /// The breaching call.
    pub call_id: Text,
    /// The producer's record id of the breaching call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Text>,
    /// When the breaching call was placed (RFC 3339, UTC).
    pub occurred_at: String,
    /// The debtor.
    pub debtor_id: Text,
    /// The account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<Text>,
    /// The dialled number (E.164).
    pub phone: Text,
    /// The callee's relation to the debtor.
    pub relation: &'static str,
    /// Who dialled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Text>,
    /// The agency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agency_id: Option<Text>,
    /// The creditor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creditor_id: Option<Text>,
    /// The window key: field → value (cap and cooldown).
    pub key: BTreeMap<&'static str, String>,
    /// The count (cap), the number of triggers in force (cooldown), or 1.
    pub observed: u64,
    /// The limit (cap), or 0 where none is allowed.
    pub limit: u64,
    /// The window or period that made the breach.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowBounds>,
    /// Call ids that made the count, newest first, bounded.
    pub evidence: Vec<String>,
    /// The alert was caused by a call that arrived after the breaching call.
    pub late: bool,
    /// When the engine found the breach (RFC 3339, UTC; the injected clock).
    pub detected_at: String,
    /// For people.
    pub message: String,
    /// The call's `attrs`, passed through.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, String>,
}

/// The alert id of a breach: the first 16 bytes of SHA-256 over `rule_id`, a 0x1f byte, and
/// `call_id`, in lowercase hex. The same breach always gets the same id, so a replay or restart
/// never yields a second, different alert for it.
pub fn alert_id(rule_id: &str, call_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(rule_id.as_bytes());
    h.update([0x1f]);
    h.update(call_id.as_bytes());
    let d = h.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(32);
    for b in &d[..16] {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

const WEEKDAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Renders a breach as Alert v1. `rules` are the engine's rules (the breach names one by
/// index), `judged` the call being judged when the breach was found, `now` the detection time.
pub fn render(rules: &[Rule], b: &Breach, judged: &Call, now: Ts) -> Alert {
    let rule = &rules[b.rule as usize];
    let s = b.call(judged);
    let get = |f: StrField| s.str_field(f);
    let mut key = BTreeMap::new();
    for f in &rule.key {
        if let Some(v) = get(*f) {
            key.insert(f.as_str(), v.to_owned());
        }
    }
    Alert {
        alert_id: alert_id(&rule.id, &s.call_id),
        rule_id: rule.id.clone(),
        kind: rule.kind.as_str(),
        severity: rule.severity.as_str(),
        citation: rule.citation.clone(),
        pack: rule.pack.clone(),
        call_id: s.call_id.clone(),
        event_id: s.event_id.clone(),
        occurred_at: s.occurred_at.to_string(),
        debtor_id: s.debtor_id.clone(),
        account_id: s.account_id.clone(),
        phone: s.phone.clone(),
        relation: s.relation.as_str(),
        agent_id: s.agent_id.clone(),
        agency_id: s.agency_id.clone(),
        creditor_id: s.creditor_id.clone(),
        key,
        observed: b.observed as u64,
        limit: b.limit as u64,
        window: b.bounds.map(|(from, to)| WindowBounds {
            from: from.to_string(),
            to: to.to_string(),
        }),
        evidence: b.evidence.iter().map(|id| id.to_string()).collect(),
        late: b.late,
        detected_at: now.to_string(),
        message: message(rule, b, s),
        attrs: s.attrs.iter().cloned().collect(),
    }
}

/// The alert's text for people.
pub fn message(rule: &Rule, b: &Breach, s: &Call) -> String {
    let key_text = || {
        rule.key
            .iter()
            .filter_map(|f| s.str_field(*f).map(|v| format!("{} {}", f.as_str(), v)))
            .collect::<Vec<_>>()
            .join(" and ")
    };
    let observed = b.observed;
    let message = match &rule.body {
        Body::Cap {
            window: w,
            limit: l,
            distinct,
        } => {
            let what = match distinct {
                None => "calls".to_owned(),
                Some(f) => format!("distinct {} values", f.as_str()),
            };
            format!(
                "{observed} {what} in {} for {} (limit {l})",
                w.describe(),
                key_text()
            )
        }
        Body::Cooldown { period, .. } => {
            let p = match period {
                Window::Rolling(p) => rule::describe_duration(*p),
                other => other.describe(),
            };
            format!(
                "call inside the {p} cooldown after an earlier call for {}",
                key_text()
            )
        }
        Body::CallingHours { .. } => {
            let tz = rule.zone.for_call(s);
            let zone = tz.iana_name().unwrap_or(&rule.zone_name);
            let l = Local::of(s.occurred_at, tz);
            let hh = l.sec_of_day / 3600;
            let mm = l.sec_of_day / 60 % 60;
            let when = format!(
                "{} {} {hh:02}:{mm:02} ({})",
                WEEKDAY_NAMES[l.weekday as usize],
                time::format_day(l.day),
                zone
            );
            if b.holiday {
                format!("call on a holiday, {when}")
            } else {
                format!("call at {when}, outside the allowed hours")
            }
        }
        Body::Forbid => format!("call to a {} that this rule forbids", s.relation.as_str()),
    };
    match &rule.description {
        Some(d) => format!("{message}: {d}"),
        None => message,
    }
}

/// Renders every breach in `breaches` (found while judging `judged`) into `out`.
pub fn render_all(
    rules: &[Rule],
    breaches: &[Breach],
    judged: &Call,
    now: Ts,
    out: &mut Vec<Alert>,
) {
    out.extend(breaches.iter().map(|b| render(rules, b, judged, now)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_id_is_deterministic_and_distinct() {
        assert_eq!(alert_id("r", "c"), alert_id("r", "c"));
        assert_eq!(alert_id("r", "c").len(), 32);
        // The scheme is a contract (ids must survive upgrades): SHA-256("r" 0x1f "c"), first 16
        // bytes, lowercase hex — value computed independently with Python's hashlib.
        assert_eq!(alert_id("r", "c"), "68b47e8e9b675ef32f7a79590ec17dac");
        assert_ne!(alert_id("r", "c1"), alert_id("r", "c2"));
        // The separator keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(alert_id("ab", "c"), alert_id("a", "bc"));
    }
}
