//! `status`: a call matching `when` breaches when a debtor status of the rule's kinds
//! (`statuses = [...]`) covers it at its event time (`engine::status`). Statuses are found by
//! the call's value of the rule's key (`debtor_id`, `account_id` or `phone`).
//!
//! Event time, like the other kinds: a status covers calls in `[from, until)`, whichever
//! arrives first. The rule keeps, per key, the calls it matched within `lookback`, so that a
//! status arriving after calls it covers flags them then (late breaches, each call once: the
//! entry's breached mark). A call is judged against the statuses known when it arrives; one
//! that arrives before a status covering it is found by [`flag_retained`] when the status does.

use super::{Applied, Clear, Ctx, Look, Step};
use crate::engine::breach::{Breach, CallId, StatusCause, Subject};
use crate::engine::event::Call;
use crate::engine::intern::Sym;
use crate::engine::rule::{Body, Rule};
use crate::engine::status::{Scope, Status, Statuses};
use crate::engine::time::{self, Local};

fn params(rule: &Rule) -> (u16, Scope, i64) {
    match rule.body {
        Body::Status {
            kinds,
            scope,
            lookback,
        } => (kinds, scope, lookback),
        _ => unreachable!("a status rule"),
    }
}

fn breach(ri: u16, subject: Subject, id: CallId, st: &Status, late: bool) -> Breach {
    Breach {
        status: Some(Box::new(StatusCause::of(st))),
        ..super::one_call(ri, subject, id, late)
    }
}

/// The breach of the call being judged (or checked), covered by `st`.
fn judged(ri: u16, call: &Call, st: &Status) -> Breach {
    breach(ri, Subject::Judged, CallId::new(&call.call_id), st, false)
}

/// The status covering a call not retained (judged now, or a candidate).
fn covering<'s>(rule: &Rule, statuses: &'s Statuses, call: &Call) -> Option<&'s Status> {
    let (kinds, scope, _) = params(rule);
    let tz = rule.zone.for_call(call);
    statuses.covering(scope, kinds, call, || Local::of(call.occurred_at, tz))
}

pub(in crate::engine) fn ingest(step: &mut Step<'_, '_>, out: &mut Vec<Breach>) -> Applied {
    let (_, _, lookback) = params(step.rule);
    // The channel rides in the entry's value: a status arriving later reads it from there
    // (records do not keep it).
    let channel = Sym(step.call.channel as u32);
    super::held_for_late(step, lookback, channel, out, |step| {
        covering(step.rule, step.ctx.statuses, step.call).map(|st| judged(step.ri, step.call, st))
    })
}

pub(in crate::engine) fn check(l: &mut Look<'_, '_>) -> Option<Breach> {
    if !l.rule.when.matches(l.call) || l.ctx.lookup_key(l.rule, l.call).is_none() {
        return None;
    }
    covering(l.rule, l.ctx.statuses, l.call).map(|st| judged(l.ri, l.call, st))
}

/// When the statuses covering the candidate let it through: once every one of them has ended
/// (never, while one is open-ended) or, for statuses that hold only in local windows, once
/// the window the call is in has closed.
pub(in crate::engine) fn clear_after(l: &mut Look<'_, '_>) -> Clear {
    if !l.rule.when.matches(l.call) || l.ctx.lookup_key(l.rule, l.call).is_none() {
        return Clear::Now;
    }
    let (kinds, scope, _) = params(l.rule);
    let call = l.call;
    let tz = l.rule.zone.for_call(call);
    let local = Local::of(call.occurred_at, tz);
    let mut until = None::<i64>;
    for st in scope
        .of_call(call)
        .into_iter()
        .flat_map(|v| l.ctx.statuses.by_scope(scope, v))
        .filter(|st| kinds & (1 << st.kind as u16) != 0)
        .filter(|st| st.covers_call(call, || local))
    {
        let ends = match (st.until, window_end(st, &local, tz)) {
            (None, None) => return Clear::Never,
            (Some(u), None) => u.0,
            (None, Some(w)) => w,
            (Some(u), Some(w)) => u.0.min(w),
        };
        until = Some(until.map_or(ends, |x| x.max(ends)));
    }
    match until {
        None => Clear::Now,
        Some(t) => Clear::From(t),
    }
}

/// The first instant after `local` at which the status's window containing it closes; `None`
/// when it holds all day (no windows).
fn window_end(st: &Status, local: &Local, tz: &jiff::tz::TimeZone) -> Option<i64> {
    let s = local.sec_of_day;
    st.windows
        .iter()
        .filter_map(|&(from, to)| {
            let inside = if from < to {
                from <= s && s < to
            } else {
                s >= from || s < to
            };
            if !inside {
                return None;
            }
            // A window crossing midnight, entered before it, closes the next day.
            let day = if from >= to && s >= from {
                local.day + 1
            } else {
                local.day
            };
            Some(time::local_instant(day, to, tz).0)
        })
        .max()
}

/// The calls retained by a status rule that `st` (just known) covers and that were not flagged
/// yet: each becomes a late breach, once. Only calls the rule still holds are looked at: those
/// within its `lookback` (plus lateness) of the slowest lane; `cutoff` is the oldest event
/// time still held for certain.
pub(in crate::engine) fn flag_retained(
    ri: u16,
    rule: &Rule,
    mut store: super::Store<'_>,
    ctx: &Ctx<'_>,
    st: &Status,
    cutoff: i64,
    out: &mut Vec<Breach>,
) {
    let (kinds, scope, _) = params(rule);
    if kinds & (1 << st.kind as u16) == 0 {
        return;
    }
    let Some(value) = st.scope(scope) else { return };
    // Symbols of the strings the status compares with; a string never interned is in no
    // retained call.
    let (key_sym, debtor, account, phone, allowed) = {
        let i = ctx.interner.lock();
        let opt = |v: Option<&str>| v.map(|v| i.lookup(v));
        let allowed: Vec<Sym> = st.allow_phones.iter().filter_map(|p| i.lookup(p)).collect();
        (
            i.lookup(value),
            opt(st.debtor_id.as_deref()),
            opt(st.account_id.as_deref()),
            opt(st.phone.as_deref()),
            allowed,
        )
    };
    let Some(key_sym) = key_sym else { return };
    let Some(held) = super::held_since(&mut store, key_sym, st.from.0.max(cutoff)) else {
        return;
    };
    for e in held.iter_mut() {
        if st.until.is_some_and(|u| e.ts >= u.0) {
            break;
        }
        if e.breached() {
            continue;
        }
        let slot = e.slot();
        let rec = ctx.record(slot);
        let same = |want: Option<Option<Sym>>, f: crate::engine::event::StrField| match want {
            None => true,
            Some(None) => false,
            Some(Some(s)) => rec.syms[f as usize] == s,
        };
        use crate::engine::event::StrField as F;
        let channel = e.val.0 as u8;
        if !same(debtor, F::DebtorId)
            || !same(account, F::AccountId)
            || !same(phone, F::Phone)
            || (st.channels != 0 && st.channels & (1 << channel) == 0)
            || allowed.contains(&rec.syms[F::Phone as usize])
        {
            continue;
        }
        if !st.windows.is_empty() {
            let l = Local::of(time::Ts(e.ts), ctx.record_zone(rule, slot));
            if !st.in_window(l.sec_of_day) {
                continue;
            }
        }
        e.mark_breached();
        out.push(breach(
            ri,
            ctx.subject(slot, u32::MAX),
            ctx.id(slot),
            st,
            true,
        ));
    }
}
