//! `calling_hours`: a call matching `when` breaches when its local time (in the rule's zone,
//! or the callee's) falls outside every allowed slot, or on a holiday. Stateless.

use super::{single_call, Applied, Clear, Step};
use crate::engine::breach::Breach;
use crate::engine::event::Call;
use crate::engine::rule::{Body, Rule};
use crate::engine::time::{self, Local};

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
    if !step.passes(&step.rule.when) {
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

/// How far ahead the next allowed slot is looked for (holidays can fill whole stretches).
const SEARCH_DAYS: i32 = 800;

/// When calling hours let the call through: the start of the next allowed slot on a day that
/// is not a holiday, in the call's local time.
pub(in crate::engine) fn clear_after(rule: &Rule, call: &Call) -> Clear {
    if !rule.when.matches(call) {
        return Clear::Now;
    }
    let tz = rule.zone.for_call(call);
    let l = Local::of(call.occurred_at, tz);
    if evaluate(rule, &l).is_none() {
        return Clear::Now;
    }
    let Body::CallingHours { allowed, holidays } = &rule.body else {
        unreachable!("a calling_hours rule")
    };
    let t = call.occurred_at.0;
    for day in l.day..l.day.saturating_add(SEARCH_DAYS) {
        if holidays.binary_search(&day).is_ok() {
            continue;
        }
        let weekday = (day + 3).rem_euclid(7);
        let next = allowed
            .iter()
            .filter(|s| s.days & (1 << weekday) != 0 && s.from < s.to)
            .filter(|s| day > l.day || s.from > l.sec_of_day)
            .map(|s| time::local_instant(day, s.from, tz).0)
            .filter(|&at| at > t)
            .min();
        if let Some(at) = next {
            return Clear::From(at);
        }
    }
    Clear::Never
}
