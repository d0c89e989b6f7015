//! Suppression directive v1: what a dialer should hold back, published beside alerts.
//!
//! The engine finds [`Hold`] values — a call brought (or kept) a key at a cap's limit, or a
//! cooldown is in force after it — and this module renders them for dialers: the key to drop
//! from the hopper, from when until when, why, and a deterministic id so that judging the same
//! call again (a restart, a replay) gives the same directive, never a second, different one.

use crate::engine::breach::Hold;
use crate::engine::event::{Call, StrField, Text};
use crate::engine::rule::{Body, Rule};
use crate::engine::time::Ts;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// One directive: do not place a call matching `rule_id` with this key before `until`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Directive {
    /// Deterministic: see [`directive_id`].
    pub directive_id: String,
    /// The rule that would be breached.
    pub rule_id: String,
    /// The rule's kind: `cap` or `cooldown`.
    pub kind: &'static str,
    /// `cap_reached` (the next call would go over the limit) or `cooldown` (a cooldown is in force after the call: it started one, or fell in one).
    pub reason: &'static str,
    /// The rule's severity.
    pub severity: &'static str,
    /// The rule's citation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub citation: Option<String>,
    /// The pack the rule came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack: Option<String>,
    /// The rule's key: field → value. Calls with this key (and matching the rule) are held.
    pub key: BTreeMap<&'static str, String>,
    /// The debtor (the record key).
    pub debtor_id: Text,
    /// The call that caused it.
    pub call_id: Text,
    /// From (RFC 3339, UTC): the causing call's time.
    pub from: String,
    /// Until (RFC 3339, UTC, exclusive): the first instant the rule allows the same call
    /// again, given the calls known when the directive was made.
    pub until: String,
    /// When dialguard made it (RFC 3339, UTC; the caller's clock).
    pub detected_at: String,
}

/// The first 16 bytes of SHA-256(`"directive"` 0x1F `rule_id` 0x1F `call_id`) in hex: one
/// cause, one id (and never an alert's id).
pub fn directive_id(rule_id: &str, call_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"directive");
    h.update([0x1f]);
    h.update(rule_id.as_bytes());
    h.update([0x1f]);
    h.update(call_id.as_bytes());
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The reason a directive of `rule` gives, for the rules that give directives (caps and
/// cooldowns).
pub fn reason(rule: &Rule) -> Option<&'static str> {
    match rule.body {
        Body::Cap { .. } => Some("cap_reached"),
        Body::Cooldown { .. } => Some("cooldown"),
        _ => None,
    }
}

/// The reason a hold of `rule` is given for: only caps and cooldowns hold; any other rule is
/// named as a cap.
pub fn hold_reason(rule: &Rule) -> &'static str {
    reason(rule).unwrap_or("cap_reached")
}

/// The directive of a hold found for `call`.
pub fn render(rules: &[Rule], hold: &Hold, call: &Call, now: Ts) -> Directive {
    let rule = &rules[hold.rule as usize];
    let mut key = BTreeMap::new();
    for f in &rule.key {
        if let Some(v) = call.str_field(*f) {
            key.insert(f.as_str(), v.to_owned());
        }
    }
    Directive {
        directive_id: directive_id(&rule.id, &call.call_id),
        rule_id: rule.id.clone(),
        kind: rule.kind.as_str(),
        reason: hold_reason(rule),
        severity: rule.severity.as_str(),
        citation: rule.citation.clone(),
        pack: rule.pack.clone(),
        key,
        debtor_id: call
            .str_field(StrField::DebtorId)
            .unwrap_or_default()
            .into(),
        call_id: call.call_id.clone(),
        from: hold.from.to_string(),
        until: hold.until.to_string(),
        detected_at: now.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_per_cause_and_apart_from_alert_ids() {
        let a = directive_id("regf-7in7", "c1");
        assert_eq!(a.len(), 32);
        assert_eq!(a, directive_id("regf-7in7", "c1"));
        assert_ne!(a, directive_id("regf-7in7", "c2"));
        assert_ne!(a, directive_id("regf-7in7-x", "c1"));
        assert_ne!(a, crate::alert::alert_id("regf-7in7", "c1"));
    }
}
