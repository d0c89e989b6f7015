//! `calling_hours`: a call matching `when` breaches when its local time (in the rule's zone,
//! or the callee's) falls outside every allowed slot, or on a holiday. Stateless.

use super::{single_call, Applied, Step};
use crate::engine::breach::Breach;
use crate::engine::event::Call;
use crate::engine::rule::{Body, Rule};
use crate::engine::time::Local;

/// Whether a call at local time `l` breaches: `Some(true)` on a holiday, `Some(false)` outside
/// every slot, `None` when allowed.
pub fn evaluate(rule: &Rule, l: &Local) -> Option<bool> {
    let Body::CallingHours { allowed, holidays } = &rule.body else {
        unreachable!("a calling_hours rule")
    };
    if holidays.binary_search(&l.day).is_ok() {
        return Some(true);
    }
    let inside = allowed
        .iter()
        .any(|s| s.days & (1 << l.weekday) != 0 && s.from <= l.sec_of_day && l.sec_of_day < s.to);
    (!inside).then_some(false)
}

pub(in crate::engine) fn ingest(step: &mut Step<'_, '_>, out: &mut Vec<Breach>) -> Applied {
    if !step.rule.when.matches(step.call) {
        return Applied::Unmatched;
    }
    let l = step.local();
    if let Some(holiday) = evaluate(step.rule, &l) {
        out.push(single_call(step.ri, step.call, holiday));
    }
    Applied::Matched
}

pub(in crate::engine) fn check(ri: u16, rule: &Rule, call: &Call) -> Option<Breach> {
    if !rule.when.matches(call) {
        return None;
    }
    let l = Local::of(call.occurred_at, rule.zone.for_call(call));
    evaluate(rule, &l).map(|holiday| single_call(ri, call, holiday))
}
