//! Alert v1 (DESIGN.md §4): what a breach looks like to the compliance team and to dialers.
//!
//! The engine finds [`Breach`] values; this module alone renders them as alerts — the JSON
//! object, its message, its id — on whichever thread the caller renders on (replay's writer,
//! the service's produce step), stamping `detected_at` with the caller's clock.

use crate::engine::breach::{Breach, Subject};
use crate::engine::event::{Call, Relation, StrField, Text};
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

/// The status that made a `status` rule's breach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusRef {
    /// The status record's id.
    pub status_id: String,
    /// Its kind (Status v1 `status`).
    pub status: &'static str,
    /// In force from (RFC 3339, UTC).
    pub from: String,
    /// In force until (RFC 3339, UTC, exclusive), if it ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Who recorded it.
    pub source: String,
}

/// The contact-book fact that made a `contact` rule's breach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContactRef {
    /// Whose number it is, in relation to the debtor (Contact v1 `relation`).
    pub relation: &'static str,
    /// Where the number came from (Contact v1 `number_source`).
    pub number_source: &'static str,
    /// Known from (RFC 3339, UTC).
    pub from: String,
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
    /// The fields above that the lender's contact book supplied, not the dialer's record:
    /// `debtor_id` (found by the dialled number: a mapping's `@contact_book`), `relation`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from_contact_book: Vec<&'static str>,
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
    /// The status in force (status rules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusRef>,
    /// The contact-book fact (contact rules, when the event's own values did not breach).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<ContactRef>,
    /// Call ids that made the count, newest first, bounded.
    pub evidence: Vec<Text>,
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

impl Alert {
    /// The alert as JSON, appended to `out`: exactly the bytes `serde_json` writes for it (a
    /// test holds the two equal), written directly. Alerts are most of what a replay writes,
    /// and serde's escaping looked at every byte one at a time.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = Obj::new(out);
        o.str("alert_id", &self.alert_id);
        o.str("rule_id", &self.rule_id);
        o.str("kind", self.kind);
        o.str("severity", self.severity);
        o.opt("citation", self.citation.as_deref());
        o.opt("pack", self.pack.as_deref());
        o.str("call_id", &self.call_id);
        o.opt("event_id", self.event_id.as_deref());
        o.str("occurred_at", &self.occurred_at);
        o.str("debtor_id", &self.debtor_id);
        o.opt("account_id", self.account_id.as_deref());
        o.str("phone", &self.phone);
        o.str("relation", self.relation);
        if !self.from_contact_book.is_empty() {
            o.strs("from_contact_book", &self.from_contact_book);
        }
        o.opt("agent_id", self.agent_id.as_deref());
        o.opt("agency_id", self.agency_id.as_deref());
        o.opt("creditor_id", self.creditor_id.as_deref());
        o.map("key", self.key.iter().map(|(k, v)| (*k, v.as_str())));
        o.num("observed", self.observed);
        o.num("limit", self.limit);
        if let Some(w) = &self.window {
            o.name("window");
            let mut inner = Obj::new(o.out);
            inner.str("from", &w.from);
            inner.str("to", &w.to);
            inner.end();
        }
        if let Some(st) = &self.status {
            o.name("status");
            let mut inner = Obj::new(o.out);
            inner.str("status_id", &st.status_id);
            inner.str("status", st.status);
            inner.str("from", &st.from);
            inner.opt("until", st.until.as_deref());
            inner.str("source", &st.source);
            inner.end();
        }
        if let Some(c) = &self.contact {
            o.name("contact");
            let mut inner = Obj::new(o.out);
            inner.str("relation", c.relation);
            inner.str("number_source", c.number_source);
            inner.str("from", &c.from);
            inner.end();
        }
        o.strs("evidence", &self.evidence);
        o.bool("late", self.late);
        o.str("detected_at", &self.detected_at);
        o.str("message", &self.message);
        if !self.attrs.is_empty() {
            o.map(
                "attrs",
                self.attrs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            );
        }
        o.end();
    }
}

/// A JSON object being written: members separated by commas.
struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    fn new(out: &'a mut Vec<u8>) -> Obj<'a> {
        out.push(b'{');
        Obj { out, first: true }
    }

    /// A member's name from data (escaped where it needs it).
    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        json_str(self.out, k);
        self.out.push(b':');
    }

    /// A member's name written in this file: a plain identifier, copied as is.
    fn name(&mut self, k: &'static str) {
        debug_assert!(!needs_escape(k.as_bytes()), "{k}");
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(k.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn str(&mut self, k: &'static str, v: &str) {
        self.name(k);
        json_str(self.out, v);
    }

    fn time(&mut self, k: &'static str, t: Ts) {
        self.name(k);
        json_time(self.out, t);
    }

    fn strs(&mut self, k: &'static str, items: &[impl AsRef<str>]) {
        self.name(k);
        self.out.push(b'[');
        for (i, v) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            json_str(self.out, v.as_ref());
        }
        self.out.push(b']');
    }

    fn bool(&mut self, k: &'static str, v: bool) {
        self.name(k);
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
    }

    fn opt(&mut self, k: &'static str, v: Option<&str>) {
        if let Some(v) = v {
            self.str(k, v);
        }
    }

    fn num(&mut self, k: &'static str, v: u64) {
        self.name(k);
        let mut digits = [0u8; 20];
        self.out
            .extend_from_slice(decimal(v, &mut digits).as_bytes());
    }

    fn map<'v>(&mut self, k: &'static str, members: impl Iterator<Item = (&'v str, &'v str)>) {
        self.name(k);
        let mut inner = Obj::new(self.out);
        for (k, v) in members {
            inner.key(k);
            json_str(inner.out, v);
        }
        inner.end();
    }

    fn end(self) {
        self.out.push(b'}');
    }
}

/// `v` in decimal, written into the end of `buf`.
fn decimal(v: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    let mut n = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).expect("digits are ASCII")
}

/// A JSON string: as is between quotes when nothing in it needs escaping (the usual case,
/// found eight bytes at a time), else escaped exactly as `serde_json` escapes.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if !needs_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("a string serialises");
    }
}

/// Whether JSON must escape a byte of `b`: a quote, a backslash or a control character.
/// A word at a time, the last word overlapping the one before it (no byte loop for a tail),
/// and two overlapping half-words for 4–7 bytes: an alert has about twenty strings, most of
/// them 4 to 30 bytes.
fn needs_escape(b: &[u8]) -> bool {
    use crate::codec::escape_hits as hits;
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let half = |at: usize| {
        let h = u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes")) as u64;
        // The upper half is filled with plain bytes, which never hit.
        h | 0x6161_6161 << 32
    };
    let n = b.len();
    if n >= 8 {
        let mut any = 0;
        let mut i = 0;
        while i + 8 < n {
            any |= hits(word(i));
            i += 8;
        }
        any |= hits(word(n - 8));
        any != 0
    } else if n >= 4 {
        hits(half(0)) | hits(half(n - 4)) != 0
    } else {
        b.iter().any(|&c| c == b'"' || c == b'\\' || c < 0x20)
    }
}

/// The alert id of a breach: the first 16 bytes of SHA-256 over `rule_id`, a 0x1f byte, and
/// `call_id`, in lowercase hex. The same breach always gets the same id, so a replay or restart
/// never yields a second, different alert for it.
pub fn alert_id(rule_id: &str, call_id: &str) -> String {
    let hex = alert_id_hex(rule_id, call_id);
    String::from_utf8(hex.to_vec()).expect("hex is ASCII")
}

/// [`alert_id`] as its 32 ASCII bytes.
fn alert_id_hex(rule_id: &str, call_id: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(rule_id.as_bytes());
    h.update([0x1f]);
    h.update(call_id.as_bytes());
    let d = h.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = [0u8; 32];
    for (i, b) in d[..16].iter().enumerate() {
        s[2 * i] = HEX[(b >> 4) as usize];
        s[2 * i + 1] = HEX[(b & 15) as usize];
    }
    s
}

/// Writes, as JSON, exactly the alert [`render`] gives for the breach (`render(..).write_json`;
/// the integration tests hold the two equal for every alert they see) — straight from the
/// breach, without building the [`Alert`] and its dozen strings. `scratch` holds the message
/// while it is written; keep one per thread. A writer of many alerts uses [`AlertJson`],
/// which writes the same bytes.
pub fn write_alert_json(
    rules: &[Rule],
    b: &Breach,
    judged: &Call,
    now: Ts,
    out: &mut Vec<u8>,
    scratch: &mut String,
) {
    let rule = &rules[b.rule as usize];
    let head = rule_head(rule);
    let mut now_text = Vec::with_capacity(32);
    json_time(&mut now_text, now);
    let id = alert_id_hex(&rule.id, &b.call(judged).call_id);
    write_parts(rules, b, judged, (&id, &head), &now_text, out, scratch);
}

/// [`write_alert_json`] for a writer of many alerts (replay's): what does not change from one
/// alert to the next is written once and copied — each rule's own members (id, kind,
/// severity, citation, pack) and the detection time while it stays the same. A third of an
/// alert's members, and one of its four times.
pub struct AlertJson<'r> {
    rules: &'r [Rule],
    /// Per rule, its members as [`rule_head`] writes them.
    heads: Vec<Vec<u8>>,
    /// The detection time last written, and its JSON.
    now: Option<(Ts, Vec<u8>)>,
    scratch: String,
}

impl<'r> AlertJson<'r> {
    /// A writer of the alerts of `rules` (the engine's, as breaches name them).
    pub fn new(rules: &'r [Rule]) -> AlertJson<'r> {
        AlertJson {
            rules,
            heads: rules.iter().map(rule_head).collect(),
            now: None,
            scratch: String::new(),
        }
    }

    /// Appends the alert of `b` (found judging `judged`, detected at `now`) to `out`.
    pub fn write(&mut self, b: &Breach, judged: &Call, now: Ts, out: &mut Vec<u8>) {
        let rule = &self.rules[b.rule as usize];
        let id = alert_id_hex(&rule.id, &b.call(judged).call_id);
        self.write_as(b, judged, now, &id, out);
    }

    /// [`AlertJson::write`] for a caller that has the alert's id already (`alert_id` of the
    /// breach's rule and call; the service needs it first, to look for a suppression): the
    /// SHA-256 is not taken twice.
    pub fn write_with_id(
        &mut self,
        b: &Breach,
        judged: &Call,
        now: Ts,
        id: &str,
        out: &mut Vec<u8>,
    ) {
        debug_assert_eq!(
            id,
            alert_id(&self.rules[b.rule as usize].id, &b.call(judged).call_id)
        );
        self.write_as(b, judged, now, id.as_bytes(), out);
    }

    fn write_as(&mut self, b: &Breach, judged: &Call, now: Ts, id: &[u8], out: &mut Vec<u8>) {
        if self.now.as_ref().is_none_or(|(t, _)| *t != now) {
            let mut text = Vec::with_capacity(32);
            json_time(&mut text, now);
            self.now = Some((now, text));
        }
        let now_text = self.now.as_ref().map_or(&[][..], |(_, t)| t);
        let head = &self.heads[b.rule as usize];
        write_parts(
            self.rules,
            b,
            judged,
            (id, head),
            now_text,
            out,
            &mut self.scratch,
        );
    }
}

/// Asks for the memory the alert of `b` (found judging `judged`) will read — the breaching
/// call's fields and the evidence — without waiting for it. A writer that renders breaches
/// found on another thread, from calls decoded on a third, calls this a few breaches ahead:
/// those lines were written by other cores, and rendering stalled on them (replay's alert
/// writer: docs/performance.md, "Prefetching what other cores wrote").
#[inline]
pub fn prefetch(b: &Breach, judged: &Call) {
    match &b.subject {
        Subject::Judged => judged,
        Subject::Earlier(c) | Subject::Unread(c) => c,
    }
    .prefetch();
    // Inline ids are 24 bytes: every other one starts a line the one before did not.
    for id in b.evidence.iter().step_by(2) {
        crate::engine::prefetch(id);
    }
}

/// A rule's own members of its alerts, as they follow `alert_id`: `,"rule_id":…,"kind":…,
/// "severity":…`, then `citation` and `pack` where the rule has them.
fn rule_head(rule: &Rule) -> Vec<u8> {
    let mut out = Vec::new();
    let mut o = Obj {
        out: &mut out,
        first: false,
    };
    o.str("rule_id", &rule.id);
    o.str("kind", rule.kind.as_str());
    o.str("severity", rule.severity.as_str());
    o.opt("citation", rule.citation.as_deref());
    o.opt("pack", rule.pack.as_deref());
    out
}

/// An instant as a JSON string.
fn json_time(out: &mut Vec<u8>, t: Ts) {
    out.push(b'"');
    t.write_rfc3339(out);
    out.push(b'"');
}

/// [`write_alert_json`] with the alert's id (its 32 hex digits, [`alert_id`]), the rule's
/// members (`head`, [`rule_head`]) and the detection time (`now`, [`json_time`]) at hand.
#[allow(clippy::too_many_arguments)]
fn write_parts(
    rules: &[Rule],
    b: &Breach,
    judged: &Call,
    (id, head): (&[u8], &[u8]),
    now: &[u8],
    out: &mut Vec<u8>,
    scratch: &mut String,
) {
    let rule = &rules[b.rule as usize];
    let s = b.call(judged);
    let mut o = Obj::new(out);
    o.name("alert_id");
    ascii_str(o.out, id);
    o.out.extend_from_slice(head);
    o.str("call_id", &s.call_id);
    o.opt("event_id", s.event_id.as_deref());
    o.name("occurred_at");
    let occurred = o.out.len();
    json_time(o.out, s.occurred_at);
    let occurred = occurred..o.out.len();
    o.str("debtor_id", &s.debtor_id);
    o.opt("account_id", s.account_id.as_deref());
    o.str("phone", &s.phone);
    o.str("relation", s.relation.as_str());
    let book = from_contact_book(s);
    if !book.is_empty() {
        o.strs("from_contact_book", &book);
    }
    o.opt("agent_id", s.agent_id.as_deref());
    o.opt("agency_id", s.agency_id.as_deref());
    o.opt("creditor_id", s.creditor_id.as_deref());
    // The key as the map `render` builds: by field name, present fields only.
    // (At most six fields, as `engine::window::Key`: on the stack, not allocated per alert.)
    let mut key = [("", ""); 6];
    let mut n = 0;
    for f in &rule.key {
        if let Some(v) = s.str_field(*f) {
            key[n] = (f.as_str(), v);
            n += 1;
        }
    }
    let key = &mut key[..n];
    key.sort_by_key(|(k, _)| *k);
    o.map(
        "key",
        key.iter()
            .enumerate()
            .filter(|&(i, (k, _))| i == 0 || key[i - 1].0 != *k)
            .map(|(_, kv)| *kv),
    );
    o.num("observed", b.observed as u64);
    o.num("limit", b.limit as u64);
    if let Some((from, to)) = b.bounds {
        o.name("window");
        let mut inner = Obj::new(o.out);
        inner.time("from", from);
        if to == s.occurred_at {
            // A rolling window ends at the call: its time is written already.
            inner.name("to");
            inner.out.extend_from_within(occurred);
        } else {
            inner.time("to", to);
        }
        inner.end();
    }
    if let Some(st) = &b.status {
        o.name("status");
        let mut inner = Obj::new(o.out);
        inner.str("status_id", &st.id);
        inner.str("status", st.kind.as_str());
        inner.time("from", st.from);
        if let Some(u) = st.until {
            inner.time("until", u);
        }
        inner.str("source", &st.source);
        inner.end();
    }
    if let Some(c) = &b.contact {
        o.name("contact");
        let mut inner = Obj::new(o.out);
        inner.str("relation", c.relation.as_str());
        inner.str("number_source", c.source.as_str());
        inner.time("from", c.from);
        inner.end();
    }
    o.strs("evidence", &b.evidence);
    o.bool("late", b.late);
    o.name("detected_at");
    o.out.extend_from_slice(now);
    scratch.clear();
    write_message(rule, b, s, scratch);
    o.str("message", scratch);
    if !s.attrs.is_empty() {
        let attrs: BTreeMap<&str, &str> = s
            .attrs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        o.map("attrs", attrs.into_iter());
    }
    o.end();
}

/// ASCII that needs no escaping, quoted.
fn ascii_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    out.extend_from_slice(s);
    out.push(b'"');
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
        from_contact_book: from_contact_book(s),
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
        status: b.status.as_ref().map(|st| StatusRef {
            status_id: st.id.to_string(),
            status: st.kind.as_str(),
            from: st.from.to_string(),
            until: st.until.map(|u| u.to_string()),
            source: st.source.to_string(),
        }),
        contact: b.contact.as_ref().map(|c| ContactRef {
            relation: c.relation.as_str(),
            number_source: c.source.as_str(),
            from: c.from.to_string(),
        }),
        evidence: b.evidence.to_vec(),
        late: b.late,
        detected_at: now.to_string(),
        message: message(rule, b, s),
        attrs: s.attrs.iter().cloned().collect(),
    }
}

/// The fields an alert shows that the contact book filled in (`Call::filled`).
fn from_contact_book(s: &Call) -> Vec<&'static str> {
    let mut v = Vec::new();
    if s.filled.debtor {
        v.push("debtor_id");
    }
    if s.filled.relation {
        v.push("relation");
    }
    v
}

/// The alert's text for people.
pub fn message(rule: &Rule, b: &Breach, s: &Call) -> String {
    let mut m = String::new();
    write_message(rule, b, s, &mut m);
    m
}

/// [`message`], appended to `out`.
fn write_message(rule: &Rule, b: &Breach, s: &Call, out: &mut String) {
    use std::fmt::Write;
    let key_text = |out: &mut String| {
        let mut first = true;
        for f in &rule.key {
            if let Some(v) = s.str_field(*f) {
                if !first {
                    out.push_str(" and ");
                }
                first = false;
                out.push_str(f.as_str());
                out.push(' ');
                out.push_str(v);
            }
        }
    };
    let observed = b.observed;
    match &rule.body {
        Body::Cap {
            window: w,
            limit: l,
            distinct,
        } => {
            // (Pieces pushed, not `write!`: a cap's message is most alerts' and this was
            // formatting machinery and an allocation each.)
            let mut digits = [0u8; 20];
            out.push_str(decimal(observed as u64, &mut digits));
            match distinct {
                None => out.push_str(" calls"),
                Some(f) => {
                    out.push_str(" distinct ");
                    out.push_str(f.as_str());
                    out.push_str(" values");
                }
            }
            out.push_str(" in ");
            w.describe_into(out);
            out.push_str(" for ");
            key_text(out);
            out.push_str(" (limit ");
            out.push_str(decimal(*l as u64, &mut digits));
            out.push(')');
        }
        Body::Cooldown { period, .. } => {
            let p = match period {
                Window::Rolling(p) => rule::describe_duration(*p),
                other => other.describe(),
            };
            let _ = write!(
                out,
                "call inside the {p} cooldown after an earlier call for "
            );
            key_text(out);
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
                let _ = write!(out, "call on a holiday, {when}");
            } else {
                let _ = write!(out, "call at {when}, outside the allowed hours");
            }
        }
        Body::Forbid => {
            let _ = write!(
                out,
                "call to {} that this rule forbids",
                callee_phrase(s.relation)
            );
        }
        Body::Status { .. } => {
            let _ = write!(out, "call to {}", callee_phrase(s.relation));
            match &b.status {
                Some(st) => {
                    let _ = write!(
                        out,
                        " while status {} ({}) is in force for ",
                        st.kind.as_str(),
                        st.id
                    );
                }
                None => out.push_str(" while a status is in force for "),
            }
            key_text(out);
        }
        Body::Contact { .. } => {
            let _ = write!(out, "call to {}", callee_phrase(s.relation));
            match &b.contact {
                Some(c) => {
                    let _ = write!(
                        out,
                        ", a number the contact book has as {} from {} since {}",
                        c.relation.as_str(),
                        c.source.as_str(),
                        c.from
                    );
                }
                None => match s.number_source {
                    Some(src) => {
                        let _ = write!(out, ", a number from {}", src.as_str());
                    }
                    None => out.push_str(", a number this rule names"),
                },
            }
            out.push_str(" for ");
            key_text(out);
        }
    }
    if let Some(d) = &rule.description {
        let _ = write!(out, ": {d}");
    }
}

/// Who the callee is, as a message says it ("call to an emergency contact").
fn callee_phrase(r: Relation) -> &'static str {
    match r {
        Relation::SelfDebtor => "the debtor",
        Relation::Spouse => "a spouse",
        Relation::Parent => "a parent",
        Relation::Guardian => "a guardian",
        Relation::Executor => "an executor",
        Relation::Guarantor => "a guarantor",
        Relation::CoMaker => "a co-maker",
        Relation::EmergencyContact => "an emergency contact",
        Relation::Employer => "an employer",
        Relation::ContactList => "a number from the debtor's contact list",
        Relation::Other => "another party",
        Relation::Unknown => "a callee of unknown relation",
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

    /// The word-at-a-time check finds what a byte-at-a-time one does: every byte value at
    /// every position of every length up to 40, with the rest plain or high bytes.
    #[test]
    fn needs_escape_agrees_with_a_byte_search() {
        let naive = |b: &[u8]| b.iter().any(|&c| c == b'"' || c == b'\\' || c < 0x20);
        for len in 0..40 {
            for fill in [b'a', 0xe9, 0x7f, b' '] {
                let plain = vec![fill; len];
                assert_eq!(needs_escape(&plain), naive(&plain), "len {len} fill {fill}");
                for at in 0..len {
                    for v in 0..=255u8 {
                        let mut b = plain.clone();
                        b[at] = v;
                        assert_eq!(needs_escape(&b), naive(&b), "len {len} at {at} byte {v}");
                    }
                }
            }
        }
    }

    /// `write_json` writes exactly what serde_json does, for every optional member present or
    /// not and for strings that need escaping.
    #[test]
    fn write_json_is_byte_identical_to_serde_json() {
        let strings = [
            "",
            "plain",
            "q\"uote",
            "back\\slash",
            "tab\tnew\nline\r\u{8}\u{c}",
            "ctl\u{1}\u{1f}\u{7f}",
            "é✓ 中文 😀",
            "/slash/",
            "long text that goes on well past eight bytes at a time, all of it plain",
        ];
        for (i, s) in strings.iter().enumerate() {
            let o = |n: usize| (i % n == 0).then(|| Text::from(*s));
            let a = Alert {
                alert_id: alert_id("r", s),
                rule_id: s.to_string(),
                kind: "cap",
                severity: "high",
                citation: (i % 2 == 0).then(|| s.to_string()),
                pack: (i % 3 == 0).then(|| s.to_string()),
                call_id: Text::from(*s),
                event_id: o(2),
                occurred_at: "2026-01-01T00:00:00Z".into(),
                debtor_id: Text::from(*s),
                account_id: o(3),
                phone: "+8613800000000".into(),
                relation: "self",
                from_contact_book: [&["debtor_id", "relation"][..], &["relation"], &[]][i % 3]
                    .to_vec(),
                agent_id: o(4),
                agency_id: o(2),
                creditor_id: o(5),
                key: [("debtor_id", s.to_string()), ("phone", "p".to_string())]
                    .into_iter()
                    .take(i % 3)
                    .collect(),
                observed: i as u64 * 1_234_567,
                limit: u64::MAX - i as u64,
                window: (i % 2 == 1).then(|| WindowBounds {
                    from: s.to_string(),
                    to: "t".into(),
                }),
                status: (i % 3 == 1).then(|| StatusRef {
                    status_id: s.to_string(),
                    status: "cease_communication",
                    from: "2026-01-01T00:00:00Z".into(),
                    until: (i % 2 == 0).then(|| s.to_string()),
                    source: s.to_string(),
                }),
                contact: (i % 4 == 2).then(|| ContactRef {
                    relation: "contact_list",
                    number_source: "device_contacts",
                    from: s.to_string(),
                }),
                evidence: strings.iter().take(i).map(|e| Text::from(*e)).collect(),
                late: i % 2 == 0,
                detected_at: s.to_string(),
                message: format!("{i} {s}"),
                attrs: strings
                    .iter()
                    .take(i % 4)
                    .map(|k| (k.to_string(), s.to_string()))
                    .collect(),
            };
            let mut mine = Vec::new();
            a.write_json(&mut mine);
            let serde = serde_json::to_vec(&a).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&mine),
                String::from_utf8_lossy(&serde),
                "alert {i}"
            );
        }
    }

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
