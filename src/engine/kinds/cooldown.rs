//! `cooldown`: a call matching `when` breaches when it comes strictly after a call matching
//! `after` (a trigger, e.g. a conversation) for the same key, inside the trigger's period —
//! rolling, or N local days with the trigger's date as day 1. A late trigger finds the calls
//! after it that it cools.

use super::{Applied, Clear, Ctx, Look, Step, Store};
use crate::engine::breach::{Breach, Evidence, Subject};
use crate::engine::event::Call;
use crate::engine::intern::Sym;
use crate::engine::rule::{Body, Rule, Window};
use crate::engine::time::{self, Local, Ts};
use crate::engine::window::{insert_sorted, split_near_back, split_near_front, Entry, Key};
use jiff::tz::TimeZone;

fn period(rule: &Rule) -> Window {
    match rule.body {
        Body::Cooldown { period, .. } => period,
        _ => unreachable!("a cooldown rule"),
    }
}

/// A cooldown's window entries carry their call's callee zone as their value (the record's
/// `callee_zone`: 0 for none, else 1 + an index into the engine's table), so that a breach's
/// end, in the newest trigger's zone, is found without reading that trigger's record — a
/// cache miss per breach, when it was read.
pub(in crate::engine) fn zone_val(callee_zone: u16) -> Sym {
    Sym(callee_zone as u32)
}

/// The callee zone an entry of a cooldown's window carries ([`zone_val`]).
fn entry_zone(e: Entry) -> u16 {
    e.val.0 as u16
}

/// Whether trigger `y` puts call `x` inside its cooldown.
fn cooled(y: &Entry, x: &Entry, period: Window) -> bool {
    y.ts < x.ts
        && match period {
            Window::Rolling(p) => x.ts - y.ts < p,
            Window::LocalDays(n) => {
                let (xp, yp) = (x.pv(period), y.pv(period));
                xp >= yp && xp < yp + n as i32
            }
            Window::Calendar(_) => false,
        }
}

/// Triggers in force for a call, newest first.
fn in_force(triggers: &[Entry], x: Entry, period: Window) -> impl Iterator<Item = &Entry> + '_ {
    let hi = split_near_back(triggers, |y| y.ts < x.ts);
    let from = x.ts.saturating_sub(period.reach());
    let lo = split_near_front(&triggers[..hi], |y| y.ts < from);
    triggers[lo..hi]
        .iter()
        .rev()
        .filter(move |y| cooled(y, &x, period))
}

/// Triggers in force, the bounds of the cooldown (if breaches state them), the evidence.
type Found = (u32, Option<(Ts, Ts)>, Evidence);

/// What a breach of a call at `x` states: how many triggers are in force, the window from the
/// newest one to the end of its cooldown (if breaches state their bounds), and the evidence.
/// `None` when `x` cools after no trigger.
fn found(ctx: &Ctx<'_>, rule: &Rule, triggers: &[Entry], x: Entry) -> Option<Found> {
    let period = period(rule);
    let mut n = 0u32;
    let mut newest: Option<Entry> = None;
    let mut evidence = Evidence::new();
    for y in in_force(triggers, x, period) {
        newest.get_or_insert(*y);
        if evidence.len() < ctx.evidence_limit {
            evidence.push(ctx.id(y.slot()));
        }
        n += 1;
    }
    let newest = newest?;
    let end = || match period {
        Window::Rolling(p) => Ts(newest.ts.saturating_add(p)),
        _ => time::start_of_local_day(
            newest.pv(period) + period.span(),
            ctx.callee_zone(rule, entry_zone(newest)),
        ),
    };
    Some((n, ctx.bounds.then(|| (Ts(newest.ts), end())), evidence))
}

fn breach(ri: u16, subject: Subject, found: Found, late: bool) -> Breach {
    let (observed, bounds, evidence) = found;
    Breach {
        rule: ri,
        subject,
        observed,
        limit: 0,
        bounds,
        holiday: false,
        evidence,
        late,
        status: None,
        contact: None,
    }
}

pub(in crate::engine) fn ingest(step: &mut Step<'_, '_>, out: &mut Vec<Breach>) -> Applied {
    let Body::Cooldown { after, period } = &step.rule.body else {
        unreachable!("a cooldown rule")
    };
    let period = *period;
    let when = step.passes(&step.rule.when);
    let trig = step.passes(after);
    if !when && !trig {
        return Applied::Unmatched;
    }
    let Some(key) = step.ctx.key_of(step.rule, step.slot) else {
        return Applied::Skipped;
    };
    let pv = if period.is_local() {
        step.local().day
    } else {
        0
    };
    let zone = zone_val(step.ctx.record(step.slot).callee_zone);
    let e = Entry::new(step.call.occurred_at.0, pv, step.slot, zone, period);
    let Step {
        ri,
        rule,
        ctx,
        windows,
        shared,
        slot,
        ..
    } = step;
    if trig {
        let store = Store::of(windows, shared);
        add_trigger(ctx, *ri, rule, store, &key, e, *slot, out);
    }
    if when {
        add_call(ctx, *ri, rule, Store::of(windows, shared), &key, e, out);
    }
    Applied::Matched
}

/// Records trigger `e` in the window of `key`, and breaches the calls strictly after it and
/// inside its period that were not yet breached: late breaches (`judged` is the slot of the
/// call being judged, if any, so that it is not taken for an earlier one).
#[allow(clippy::too_many_arguments)]
fn add_trigger(
    ctx: &Ctx<'_>,
    ri: u16,
    rule: &Rule,
    store: Store<'_>,
    key: &Key,
    e: Entry,
    judged: u32,
    out: &mut Vec<Breach>,
) {
    let (calls, _, triggers) = insert(store, key, e, true);
    let period = period(rule);
    let start = split_near_back(calls, |y| y.ts <= e.ts);
    for c in &mut calls[start..] {
        if c.ts > e.ts.saturating_add(period.reach()) {
            break;
        }
        if !c.breached() && cooled(&e, c, period) {
            let f = found(ctx, rule, triggers, *c).expect("e is in force");
            out.push(breach(ri, ctx.subject(c.slot(), judged), f, true));
            c.mark_breached();
        }
    }
}

/// Records call `e` (the one judged) in the window of `key`, and breaches it if a trigger is
/// in force.
fn add_call(
    ctx: &Ctx<'_>,
    ri: u16,
    rule: &Rule,
    store: Store<'_>,
    key: &Key,
    e: Entry,
    out: &mut Vec<Breach>,
) {
    let (calls, at, triggers) = insert(store, key, e, false);
    if let Some(f) = found(ctx, rule, triggers, e) {
        calls[at].mark_breached();
        out.push(breach(ri, Subject::Judged, f, false));
    }
}

/// Inserts `e` in time order among the triggers (`trigger`) or the calls of `key`'s window,
/// wherever the rule keeps it; returns the window's calls, `e`'s index where it went, and
/// the triggers.
fn insert<'s>(
    store: Store<'s>,
    key: &Key,
    e: Entry,
    trigger: bool,
) -> (&'s mut [Entry], usize, &'s [Entry]) {
    match store.shared {
        Some((g, m)) => g.insert_pair(key[0], (m, m + 1), trigger, key[1], e),
        None => {
            let w = store.windows.entry(key);
            let at = if trigger {
                insert_sorted(w.triggers.get_or_insert_with(Box::default), e)
            } else {
                w.insert(e)
            };
            let triggers = w.triggers.as_deref().map_or(&[][..], |v| v.as_slice());
            (&mut w.calls[..], at, triggers)
        }
    }
}

/// Another record of a retained attempt (a duplicate: the other leg of a parallel dial, an
/// update with the disposition) that matches `after` makes the attempt a trigger, if it was
/// not one: a conversation on any leg starts the cooldown. The attempt's first record gives
/// the key and the time, as it does for every other rule (`slot`, the attempt's record; `leg`,
/// the other record). Late breaches as for a late trigger.
pub(in crate::engine) fn trigger_leg(
    ri: u16,
    rule: &Rule,
    store: Store<'_>,
    ctx: &Ctx<'_>,
    (leg, slot): (&Call, u32),
    held: i64,
    out: &mut Vec<Breach>,
) {
    let Body::Cooldown { after, period } = &rule.body else {
        unreachable!("a cooldown rule")
    };
    if !after.matches(leg) {
        return;
    }
    // An attempt older than what the rule still holds (its period plus the allowed lateness
    // behind the last sweep) is past starting anything: its trigger, were it one, may be
    // evicted already, and no call it could cool is still judged.
    let ts = ctx.record(slot).ts;
    if ts < held {
        return;
    }
    let Some(key) = ctx.key_of(rule, slot) else {
        return;
    };
    let triggers = match &store.shared {
        Some((g, m)) => g.get(key[0]).map_or(&[][..], |h| h.seg(m + 1, key[1])),
        None => store.windows.get(&key).map_or(&[][..], |w| w.triggers()),
    };
    if triggers.iter().any(|y| y.slot() == slot) {
        return;
    }
    let pv = if period.is_local() {
        Local::of(Ts(ts), ctx.record_zone(rule, slot)).day
    } else {
        0
    };
    let zone = zone_val(ctx.record(slot).callee_zone);
    let e = Entry::new(ts, pv, slot, zone, *period);
    add_trigger(ctx, ri, rule, store, &key, e, u32::MAX, out);
}

/// The triggers a candidate is judged against and the candidate as an entry; `None` when the
/// rule does not look at it.
fn candidate<'x>(l: &'x mut Look<'_, '_>) -> Option<(&'x [Entry], Entry, &'x TimeZone)> {
    if !l.rule.when.matches(l.call) {
        return None;
    }
    let period = period(l.rule);
    let key = l.ctx.lookup_key(l.rule, l.call)?;
    let tz = l.rule.zone.for_call(l.call);
    let pv = if period.is_local() {
        Local::of(l.call.occurred_at, tz).day
    } else {
        0
    };
    let x = Entry::new(l.call.occurred_at.0, pv, 0, Sym::NONE, period);
    Some((
        // A shared window's triggers are the member after its calls.
        super::entries(
            l.windows,
            l.shared.map(|(g, m)| (g, m + 1)),
            None,
            l.reserved,
            key,
            true,
            l.buf,
            l.ctx.own,
        ),
        x,
        tz,
    ))
}

pub(in crate::engine) fn check(l: &mut Look<'_, '_>) -> Option<Breach> {
    let (ri, rule, ctx) = (l.ri, l.rule, l.ctx);
    let (triggers, x, _) = candidate(l)?;
    found(ctx, rule, triggers, x).map(|f| breach(ri, Subject::Judged, f, false))
}

/// When the cooldown lets the candidate through: once every trigger in force has ended (a
/// later trigger can only start another).
pub(in crate::engine) fn clear_after(l: &mut Look<'_, '_>) -> Clear {
    let period = period(l.rule);
    let Some((triggers, x, tz)) = candidate(l) else {
        return Clear::Now;
    };
    in_force(triggers, x, period)
        .map(|y| match period {
            Window::Rolling(p) => y.ts.saturating_add(p),
            _ => time::start_of_local_day(y.pv(period) + period.span(), tz).0,
        })
        .max()
        .map_or(Clear::Now, Clear::From)
}
