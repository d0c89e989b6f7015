//! Synthetic dialer traffic: deterministic (seeded), realistic enough to exercise every rule kind
//! — debtors and their accounts, third parties from contact lists (some shared between debtors),
//! bursts of redials, night calls, conversations — with optional late, duplicate and invalid
//! records. Used by `dialguard generate`, the sample file, the benchmarks and the demo.

use crate::engine::time::{Ts, NANOS_PER_SEC};
use std::collections::BinaryHeap;
use std::io::Write;

/// A small, fast, seeded generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// `text` damaged one to three times, each a cut of up to four bytes (one time in three)
    /// or one of `pieces` inserted, at random places: the decoders' property tests feed these
    /// to a fast path and its authority and hold them to agree.
    pub fn mutate(&mut self, text: &str, pieces: &[&str]) -> String {
        let mut t = text.to_owned();
        for _ in 0..1 + self.below(3) {
            let mut at = self.below(t.len() as u64 + 1) as usize;
            while !t.is_char_boundary(at) {
                at -= 1;
            }
            if self.below(3) == 0 {
                let mut end = (at + 1 + self.below(4) as usize).min(t.len());
                while !t.is_char_boundary(end) {
                    end += 1;
                }
                t.replace_range(at..end, "");
            } else {
                t.insert_str(at, pieces[self.below(pieces.len() as u64) as usize]);
            }
        }
        t
    }

    /// Seeds the generator.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 >= 1.0 - p
    }
}

/// Agencies the traffic's debtors are split between (`agency-0` …): debtor `d` is worked by
/// agency `d % AGENCIES`.
pub const AGENCIES: u64 = 7;

/// Workload parameters.
#[derive(Debug, Clone)]
pub struct SynthParams {
    /// Records to produce (including invalid ones; duplicates and late records still pending at
    /// the end are written too, so a few more may come out).
    pub calls: u64,
    /// Distinct debtors.
    pub debtors: u64,
    /// Days the traffic spans.
    pub days: u64,
    /// Traffic starts on this instant's UTC date, at local midnight in UTC+8 (call hours are
    /// drawn in that local time, as for mainland China).
    pub start: Ts,
    /// Seed.
    pub seed: u64,
    /// Fraction of records delayed (arriving out of order, up to `max_delay`).
    pub late_fraction: f64,
    /// Largest delay, nanoseconds.
    pub max_delay: i64,
    /// Fraction of records sent twice.
    pub duplicate_fraction: f64,
    /// Fraction of records made invalid.
    pub invalid_fraction: f64,
}

impl Default for SynthParams {
    fn default() -> Self {
        SynthParams {
            calls: 10_000,
            debtors: 500,
            days: 14,
            start: Ts(1_790_812_800 * NANOS_PER_SEC), // 2026-10-01T00:00:00Z
            seed: 7,
            late_fraction: 0.02,
            max_delay: 1800 * NANOS_PER_SEC,
            duplicate_fraction: 0.005,
            invalid_fraction: 0.0,
        }
    }
}

const RELATIONS: [&str; 8] = [
    "spouse",
    "parent",
    "contact_list",
    "contact_list",
    "emergency_contact",
    "guarantor",
    "employer",
    "other",
];
const SOURCES: [&str; 5] = [
    "debtor_provided",
    "application",
    "emergency_contact",
    "device_contacts",
    "call_log",
];
const OUTCOMES: [(&str, u64); 7] = [
    ("no_answer", 40),
    ("conversation", 18),
    ("voicemail", 14),
    ("busy", 10),
    ("failed", 5),
    ("not_in_service", 3),
    ("dropped", 10),
];

fn cn_mobile(n: u64) -> u64 {
    13_800_000_000 + n % 100_000_000 + (n / 100_000_000 % 2) * 100_000_000
}

/// Writes the workload as JSON lines; returns the number of records written.
pub fn generate(p: &SynthParams, out: &mut dyn Write) -> std::io::Result<u64> {
    let mut n = 0u64;
    for line in Synth::new(p.clone()) {
        out.write_all(line.as_bytes())?;
        n += 1;
    }
    Ok(n)
}

/// The workload as an iterator of JSON lines (each ending in a newline), made a day of traffic
/// at a time: the demo's dialer streams it.
pub struct Synth {
    p: SynthParams,
    rng: Rng,
    debtors: u64,
    per_day: u64,
    written: u64,
    seq: u64,
    day: u64,
    first_day: i64,
    /// Delayed records: (release time, seq, line), smallest release first.
    delayed: BinaryHeap<std::cmp::Reverse<(i64, u64, String)>>,
    ready: std::collections::VecDeque<String>,
}

impl Synth {
    /// A generator for `p`.
    pub fn new(p: SynthParams) -> Synth {
        let day_ns = 86_400 * NANOS_PER_SEC;
        Synth {
            rng: Rng::new(p.seed),
            debtors: p.debtors.max(1),
            per_day: (p.calls / p.days.max(1)).max(1),
            written: 0,
            seq: 0,
            day: 0,
            // local (+08:00) midnight
            first_day: p.start.0.div_euclid(day_ns) * day_ns - 8 * 3600 * NANOS_PER_SEC,
            delayed: BinaryHeap::new(),
            ready: std::collections::VecDeque::new(),
            p,
        }
    }

    fn emit(&mut self, line: String) {
        self.ready.push_back(line);
        self.written += 1;
    }

    /// Lays out the next day of traffic.
    fn next_day(&mut self) {
        let day_ns = 86_400 * NANOS_PER_SEC;
        let base = self.first_day + self.day as i64 * day_ns;
        let n = self.per_day.min(self.p.calls - self.written);
        let rng = &mut self.rng;
        let mut times: Vec<i64> = (0..n)
            .map(|_| {
                // Mostly office hours, local 08:00-21:59; about 3% at night.
                let hour = if rng.chance(0.03) {
                    [22, 23, 6, 7][rng.below(4) as usize]
                } else {
                    8 + rng.below(14) as i64
                };
                base + hour * 3600 * NANOS_PER_SEC + rng.below(3600 * 1000) as i64 * 1_000_000
            })
            .collect();
        times.sort_unstable();
        let mut i = 0usize;
        while i < times.len() && self.written < self.p.calls {
            let t = times[i];
            i += 1;
            // Hot debtors: a tenth of calls go to 5% of debtors.
            let d = if self.rng.chance(0.10) {
                self.rng.below((self.debtors / 20).max(1))
            } else {
                self.rng.below(self.debtors)
            };
            let burst = if self.rng.chance(0.03) {
                2 + self.rng.below(5)
            } else {
                1
            };
            for b in 0..burst {
                if self.written >= self.p.calls {
                    break;
                }
                let t = t + b as i64 * (60 + self.rng.below(240) as i64) * NANOS_PER_SEC;
                let line = call_line(&mut self.rng, &self.p, d, t, self.seq);
                self.seq += 1;
                while let Some(std::cmp::Reverse((rt, _, _))) = self.delayed.peek() {
                    if *rt > t {
                        break;
                    }
                    let std::cmp::Reverse((_, _, l)) = self.delayed.pop().expect("peeked");
                    self.emit(l);
                }
                if self.rng.chance(self.p.duplicate_fraction) {
                    let rt = t + self.rng.below(600) as i64 * NANOS_PER_SEC;
                    self.delayed
                        .push(std::cmp::Reverse((rt, self.seq, line.clone())));
                }
                if self.p.max_delay > 0 && self.rng.chance(self.p.late_fraction) {
                    let rt = t + self.rng.below(self.p.max_delay as u64) as i64;
                    self.delayed.push(std::cmp::Reverse((rt, self.seq, line)));
                } else {
                    self.emit(line);
                }
            }
        }
        self.day += 1;
    }
}

impl Iterator for Synth {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        while self.ready.is_empty() && self.written < self.p.calls {
            self.next_day();
        }
        if let Some(l) = self.ready.pop_front() {
            return Some(l);
        }
        self.delayed.pop().map(|std::cmp::Reverse((_, _, l))| l)
    }
}

/// A debtor's numbers as the traffic calls them: its own, then its contacts — (number,
/// relation, source) — drawn exactly as [`call_line`] draws them.
fn debtor_numbers(p: &SynthParams, d: u64) -> (u64, Vec<(u64, &'static str, &'static str)>) {
    let mut d_rng = Rng::new(d.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ p.seed);
    let contacts = 1 + d_rng.below(8);
    let own = cn_mobile(d_rng.next_u64());
    let base = d_rng.next_u64();
    (own, (0..contacts).map(|k| contact_of(base, k)).collect())
}

/// A debtor's contact `k` — (number, relation, source) — from the debtor's contact seed.
fn contact_of(base: u64, k: u64) -> (u64, &'static str, &'static str) {
    let mut c_rng = Rng::new(base ^ k);
    // 5% of contacts come from a shared pool: one person in several borrowers' address books.
    let phone = if c_rng.chance(0.05) {
        cn_mobile(c_rng.below(2000))
    } else {
        cn_mobile(c_rng.next_u64())
    };
    (
        phone,
        RELATIONS[c_rng.below(RELATIONS.len() as u64) as usize],
        SOURCES[c_rng.below(SOURCES.len() as u64) as usize],
    )
}

/// Writes the lender's contact book (Contact v1, JSON lines) of the traffic's debtors — the
/// first `p.debtors`: each one's own number and its contacts, as the traffic calls them, known
/// from 30 days before the traffic starts — and returns the number of records written. A
/// number drawn twice for one debtor is written once.
pub fn contact_book(p: &SynthParams, out: &mut dyn Write) -> std::io::Result<u64> {
    let from = Ts(p.start.0 - 30 * 86_400 * NANOS_PER_SEC);
    let mut n = 0u64;
    let mut seen = Vec::new();
    for d in 0..p.debtors.max(1) {
        let (own, others) = debtor_numbers(p, d);
        seen.clear();
        for (phone, relation, source) in
            std::iter::once((own, "self", "debtor_provided")).chain(others)
        {
            if seen.contains(&phone) {
                continue;
            }
            seen.push(phone);
            writeln!(
                out,
                "{{\"debtor_id\":\"D{d:07}\",\"phone\":\"+86{phone}\",\"relation\":\"{relation}\",\"number_source\":\"{source}\",\"from\":\"{from}\"}}"
            )?;
            n += 1;
        }
    }
    Ok(n)
}

/// A call event line without what says where its number came from and whose it is: no
/// `number_source`, and `relation` "unknown" — what a dialer that does not know sends (the
/// demo's and the Kafka benchmark's, for the contact book to fill in).
pub fn without_provenance(line: &str) -> String {
    const SOURCE: &str = ",\"number_source\":\"";
    const RELATION: &str = "\"relation\":\"";
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    if let Some(i) = rest.find(SOURCE) {
        let v = i + SOURCE.len();
        let end = rest[v..].find('"').map_or(rest.len(), |j| v + j + 1);
        out.push_str(&rest[..i]);
        rest = &rest[end..];
    }
    out.push_str(rest);
    if let Some(i) = out.find(RELATION) {
        let from = i + RELATION.len();
        let to = out[from..].find('"').map_or(out.len(), |j| from + j);
        out.replace_range(from..to, "unknown");
    }
    out
}

fn call_line(rng: &mut Rng, p: &SynthParams, d: u64, t: i64, seq: u64) -> String {
    if rng.chance(p.invalid_fraction) {
        return match rng.below(6) {
            0 => "{not json\n".to_owned(),
            1 => format!("{{\"call_id\":\"bad-{seq}\",\"occurred_at\":\"yesterday\",\"debtor_id\":\"D{d}\",\"phone\":\"13800000000\",\"relation\":\"self\"}}\n"),
            2 => format!("{{\"call_id\":\"bad-{seq}\",\"occurred_at\":\"{}\",\"debtor_id\":\"D{d}\",\"relation\":\"self\"}}\n", Ts(t)),
            3 => format!("{{\"call_id\":\"bad-{seq}\",\"occurred_at\":\"{}\",\"debtor_id\":\"D{d}\",\"phone\":\"12\",\"relation\":\"self\"}}\n", Ts(t)),
            4 => format!("{{\"call_id\":\"bad-{seq}\",\"occurred_at\":\"{}\",\"debtor_id\":\"D{d}\",\"phone\":\"13800000000\",\"relation\":\"cousin\"}}\n", Ts(t)),
            _ => format!("{{\"call_id\":{seq},\"occurred_at\":\"{}\",\"debtor_id\":\"D{d}\",\"phone\":\"13800000000\",\"relation\":\"self\"}}\n", Ts(t)),
        };
    }
    let mut d_rng = Rng::new(d.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ p.seed);
    let contacts = 1 + d_rng.below(8);
    let own = cn_mobile(d_rng.next_u64());
    let is_self = rng.chance(0.8);
    let (phone, relation, source) = if is_self {
        (own, "self", "debtor_provided")
    } else {
        let k = rng.below(contacts);
        contact_of(d_rng.next_u64(), k)
    };
    let phone_text = match rng.below(4) {
        0 => format!("{phone}"),
        1 => format!(
            "+86 {} {:04} {:04}",
            phone / 100_000_000,
            phone / 10_000 % 10_000,
            phone % 10_000
        ),
        _ => format!("+86{phone}"),
    };
    let mut w = rng.below(100);
    let mut outcome = OUTCOMES[0].0;
    for (o, weight) in OUTCOMES {
        if w < weight {
            outcome = o;
            break;
        }
        w -= weight;
    }
    let account = d_rng.below(3);
    let purpose = if is_self {
        "collect"
    } else {
        ["location", "collect", "relay"][rng.below(3) as usize]
    };
    format!(
        concat!(
            "{{\"call_id\":\"c-{seed}-{seq}\",\"event_id\":\"e-{seq}\",\"occurred_at\":\"{ts}\",\"debtor_id\":\"D{d:07}\",",
            "\"account_id\":\"A{d}-{acct}\",\"phone\":\"{phone}\",\"relation\":\"{rel}\",\"outcome\":\"{out}\",",
            "\"direction\":\"outbound\",\"channel\":\"voice\",\"duration_s\":{dur},\"agent_id\":\"agent-{agent}\",",
            "\"agency_id\":\"agency-{agency}\",\"creditor_id\":\"lender-{cred}\",\"number_source\":\"{src}\",\"purpose\":\"{purpose}\"}}\n"
        ),
        seed = p.seed,
        seq = seq,
        ts = Ts(t),
        d = d,
        acct = account,
        phone = phone_text,
        rel = relation,
        out = outcome,
        dur = if outcome == "conversation" { 30 + rng.below(600) } else { rng.below(40) },
        agent = rng.below(200),
        agency = d % AGENCIES,
        cred = d % 5,
        src = source,
        purpose = purpose,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_without_provenance_says_unknown_and_has_no_source() {
        let l = r#"{"call_id":"c","phone":"+8613800000000","relation":"contact_list","outcome":"busy","number_source":"device_contacts","purpose":"collect"}"#;
        assert_eq!(
            without_provenance(l),
            r#"{"call_id":"c","phone":"+8613800000000","relation":"unknown","outcome":"busy","purpose":"collect"}"#
        );
    }
}
