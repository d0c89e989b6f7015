//! `forbid`: every call matching `when` breaches (e.g. calls to a number the debtor's contact
//! list supplied). Stateless.

use super::{single_call, Applied, Clear, Step};
use crate::engine::breach::Breach;
use crate::engine::event::Call;
use crate::engine::rule::Rule;

pub(in crate::engine) fn ingest(step: &mut Step<'_, '_>, out: &mut Vec<Breach>) -> Applied {
    if !step.passes(&step.rule.when) {
        return Applied::Unmatched;
    }
    out.push(single_call(step.ri, step.call, false));
    Applied::Matched
}

pub(in crate::engine) fn check(ri: u16, rule: &Rule, call: &Call) -> Option<Breach> {
    rule.when
        .matches(call)
        .then(|| single_call(ri, call, false))
}

/// A forbidden call stays forbidden.
pub(in crate::engine) fn clear_after(rule: &Rule, call: &Call) -> Clear {
    if rule.when.matches(call) {
        Clear::Never
    } else {
        Clear::Now
    }
}
