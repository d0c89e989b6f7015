//! Alert v1 (DESIGN.md §4): what a breach looks like to the compliance team and to dialers.

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
    pub call_id: String,
    /// The producer's record id of the breaching call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// When the breaching call was placed (RFC 3339, UTC).
    pub occurred_at: String,
    /// The debtor.
    pub debtor_id: String,
    /// The account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The dialled number (E.164).
    pub phone: String,
    /// The callee's relation to the debtor.
    pub relation: &'static str,
    /// Who dialled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The agency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agency_id: Option<String>,
    /// The creditor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creditor_id: Option<String>,
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
