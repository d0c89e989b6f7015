//! `cap`: more than `limit` calls (or distinct values of a field) per key in a window —
//! rolling (`t − W < t_x ≤ t`), N local days, or a calendar day, week or month. A late call can
//! push the calls after it over the limit: those breaches are found when it arrives.

use super::{Applied, Clear, Ctx, Look, Step};
use crate::engine::breach::{Breach, CallId, Evidence, EVIDENCE_INLINE};
use crate::engine::event::{Call, StrField};
use crate::engine::intern::Sym;
use crate::engine::rule::{Calendar, Rule, Window};
use crate::engine::time::{self, Local, Ts};
use crate::engine::window::{split_near_back, split_near_front, Entry, WindowState, Windows};
use jiff::tz::TimeZone;

fn params(rule: &Rule) -> (Window, u32, Option<StrField>) {
    rule.cap().expect("a cap rule")
}

/// The range of candidate entries for a call at `t`: [lo, hi).
fn range(v: &[Entry], t: i64, window: Window) -> (usize, usize) {
    let hi = split_near_back(v, |y| y.ts <= t);
    let lo = match window {
        Window::Rolling(w) => {
            let from = t.saturating_sub(w);
            split_near_front(&v[..hi], |y| y.ts <= from)
        }
        other => {
            let from = t.saturating_sub(other.reach());
            split_near_front(&v[..hi], |y| y.ts < from)
        }
    };
    (lo, hi)
}

/// Whether entry `y` is in the local window of period value `pv` (always, for rolling ones).
fn in_window(y: &Entry, pv: i32, window: Window) -> bool {
    match window {
        Window::Rolling(_) => true,
        other => {
            let ypv = y.pv(other);
            ypv <= pv && ypv > pv - other.span()
        }
    }
}

/// [`in_window`] for the entries of one count, most of them without working out their period.
/// An entry's local day is its UTC date's or one either side (`window::Entry`), so an entry
/// whose UTC date is inside a day-valued window by more than a day each end is in it whatever
/// its zone: `sure` is those times. The others are worked out. (Counting a week of entries
/// spent most of its time dividing each one's time into a day.)
#[derive(Clone, Copy)]
struct Member {
    pv: i32,
    window: Window,
    sure: (i64, i64),
}

impl Member {
    fn new(pv: i32, window: Window) -> Member {
        let sure = match window {
            Window::LocalDays(_) | Window::Calendar(Calendar::Day) => {
                // Period values are local days here: the window is days pv − span + 1 ..= pv.
                let (first, last) = (pv - window.span() + 2, pv - 1);
                let day = |d: i32| (d as i64).saturating_mul(time::NANOS_PER_DAY);
                (day(first), day(last).saturating_add(time::NANOS_PER_DAY))
            }
            // Rolling: every candidate is in (`in_window`); weeks and months: worked out.
            _ => (0, 0),
        };
        Member { pv, window, sure }
    }

    #[inline]
    fn has(&self, y: &Entry) -> bool {
        (self.sure.0 <= y.ts && y.ts < self.sure.1) || in_window(y, self.pv, self.window)
    }
}

/// Distinct values a count keeps in a list it searches before it sorts them: for a few, a
/// search of the list costs less than a sort and dedup of every value (2.4% of the engine
/// thread on the default policy).
const FEW_DISTINCT: usize = 16;

/// The count in the window of a call at (t, pv), if it exceeds `limit`. `extra` adds a
/// candidate member with that distinct value (`Sym::NONE` when not distinct).
#[allow(clippy::too_many_arguments)]
fn count(
    scratch: &mut Vec<Sym>,
    v: &[Entry],
    t: i64,
    pv: i32,
    window: Window,
    limit: u32,
    distinct: Option<StrField>,
    extra: Option<Sym>,
) -> Option<u32> {
    let (lo, hi) = range(v, t, window);
    let bound = (hi - lo) as u64 + extra.is_some() as u64;
    if bound <= limit as u64 {
        return None;
    }
    let member = Member::new(pv, window);
    let n = match distinct {
        None if matches!(window, Window::Rolling(_)) => bound,
        None => v[lo..hi].iter().filter(|y| member.has(y)).count() as u64 + extra.is_some() as u64,
        Some(_) => {
            let seen = scratch;
            seen.clear();
            let values = v[lo..hi]
                .iter()
                .filter(|y| !y.val.is_none() && member.has(y))
                .map(|y| y.val)
                .chain(extra.filter(|s| !s.is_none()));
            let mut sorted = false;
            for s in values {
                if sorted {
                    seen.push(s);
                } else if !seen.contains(&s) {
                    seen.push(s);
                    // Past a few, every value is kept and they are sorted once at the end.
                    sorted = seen.len() > FEW_DISTINCT;
                }
            }
            if sorted {
                seen.sort_unstable();
                seen.dedup();
            }
            seen.len() as u64
        }
    };
    (n > limit as u64).then_some(n.min(u32::MAX as u64) as u32)
}

/// The calls that made the count, newest first, at most `ctx.evidence_limit`, written into
/// `out` (empty) where it stays; for a distinct cap, one call per value. `first` is a candidate
/// not stored (the pre-dial check's), counted as the newest with its distinct value. (An
/// [`Evidence`] holds its ids inline, so moving one copies about 250 bytes: the ingest path
/// builds it in place instead of returning it and moving it into the breach.)
#[allow(clippy::too_many_arguments)]
fn evidence(
    ctx: &Ctx<'_>,
    v: &[Entry],
    t: i64,
    pv: i32,
    window: Window,
    distinct: Option<StrField>,
    first: Option<(&str, Sym)>,
    out: &mut Evidence,
) {
    debug_assert!(out.is_empty());
    if ctx.evidence_limit == 0 {
        return;
    }
    let (lo, hi) = range(v, t, window);
    // Each id is read from its call's record, and those are far apart: a cache miss each.
    // Asked for all at once (the newest entries, which are the ones usually taken), the misses
    // overlap instead of following one another.
    for y in v[lo..hi].iter().rev().take(ctx.evidence_limit) {
        ctx.prefetch_id(y.slot());
    }
    out.reserve(ctx.evidence_limit.min(hi - lo + 1));
    let mut seen: Seen = Seen::new();
    if let Some((id, val)) = first {
        if distinct.is_none() || !val.is_none() {
            out.push(CallId::new(id));
            seen.push(val);
        }
    }
    let room = ctx.evidence_limit - out.len();
    select(&v[lo..hi], pv, window, distinct, &mut seen, room, |slot| {
        out.push(ctx.id(slot))
    });
}

/// Distinct values named already.
type Seen = smallvec::SmallVec<[Sym; EVIDENCE_INLINE]>;

/// The slots of the calls a breach names, newest first, at most `room` of them: the entries
/// in the window, and for a distinct cap one per value not in `seen`.
fn select(
    entries: &[Entry],
    pv: i32,
    window: Window,
    distinct: Option<StrField>,
    seen: &mut Seen,
    room: usize,
    mut visit: impl FnMut(u32),
) {
    let member = Member::new(pv, window);
    let mut n = 0;
    for y in entries.iter().rev() {
        if n >= room {
            break;
        }
        if !member.has(y) {
            continue;
        }
        if distinct.is_some() {
            if y.val.is_none() || seen.contains(&y.val) {
                continue;
            }
            seen.push(y.val);
        }
        visit(y.slot());
        n += 1;
    }
}

/// The window of a call at `t`: rolling windows start `W` before (exclusive); local ones at
/// the local midnight starting their range, in `tz` (which only local windows read).
fn bounds(t: i64, tz: &TimeZone, window: Window) -> (Ts, Ts) {
    let day = || Local::of(Ts(t), tz).day;
    let from = match window {
        Window::Rolling(w) => Ts(t.saturating_sub(w)),
        Window::LocalDays(n) => time::start_of_local_day(day() - n as i32 + 1, tz),
        Window::Calendar(Calendar::Day) => time::start_of_local_day(day(), tz),
        Window::Calendar(Calendar::Week) => {
            let d = day();
            time::start_of_local_day(d - (d + 3).rem_euclid(7), tz)
        }
        Window::Calendar(Calendar::Month) => {
            time::start_of_local_day(time::first_day_of_month(time::month_of_day(day())), tz)
        }
    };
    (from, Ts(t))
}

/// Whether a distinct cap's count over a window is known to be within `limit` without reading
/// the window: its entries carry `one` value at most ([`WindowState::one_value`]), so the count
/// is at most one (a cap's limit is at least one).
fn known_within(limit: u32, one: Option<Sym>) -> bool {
    limit >= 1 && one.is_some()
}

/// Whether ingesting a call interned as `syms` reads `w`, a window of its own of this cap,
/// beyond its last entry: always, but for a distinct cap whose window carries one value that
/// the call's keeps (`ingest` then knows the count is within the limit).
pub(in crate::engine) fn reads_window(rule: &Rule, w: &WindowState, syms: &[Sym; 7]) -> bool {
    let (_, limit, distinct) = params(rule);
    let Some(f) = distinct else { return true };
    let val = syms[f as usize];
    let kept = w.one_value().filter(|&v| v == val || val.is_none());
    !known_within(limit, kept)
}

pub(in crate::engine) fn ingest(step: &mut Step<'_, '_>, out: &mut Vec<Breach>) -> Applied {
    if !step.passes(&step.rule.when) {
        return Applied::Unmatched;
    }
    let (window, limit, distinct) = params(step.rule);
    let Some(key) = step.ctx.key_of(step.rule, step.slot) else {
        return Applied::Skipped;
    };
    let pv = if window.is_local() {
        window.period_of_day(step.local().day)
    } else {
        0
    };
    let val = distinct.map_or(Sym::NONE, |f| step.ctx.record(step.slot).syms[f as usize]);
    let e = Entry::new(step.call.occurred_at.0, pv, step.slot, val, window);
    let reach = window.reach();
    let (calls, at, one) = match step.shared.as_mut() {
        Some((g, m)) => {
            let (calls, at) = g.insert(key[0], *m, key[1], e);
            (calls, at, None)
        }
        None => {
            if let Some(t) = step.thin.as_deref_mut() {
                let fat = t.is_fat(key[0]) && step.windows.get(&key).is_some();
                match t.ingest(key[0], e, fat) {
                    // One value: the count is within the limit, as `within` below would find
                    // (`thin`); the repeat is within it too.
                    super::super::thin::Took::Thin => {
                        if let Some(h) = step.hint.as_deref_mut() {
                            h.note(step.ri, false);
                        }
                        return Applied::Matched;
                    }
                    super::super::thin::Took::Fat(prior) => {
                        if !prior.is_empty() {
                            let w = step.windows.entry(&key);
                            for p in prior {
                                w.insert(p);
                            }
                        }
                    }
                }
            }
            let w = step.windows.entry(&key);
            let at = w.insert(e);
            let one = w.one_value();
            (&mut w.calls[..], at, one)
        }
    };
    // Whichever calls a distinct count is taken for, it is within the limit when the window's
    // entries carry one value.
    let within = distinct.is_some() && known_within(limit, one);
    // Calls that e can now push over the limit: itself and those after it within reach.
    let start = split_near_back(&calls[..at], |y| y.ts < e.ts);
    for i in start..calls.len() {
        let c = calls[i];
        let in_reach = match window {
            Window::Rolling(_) => c.ts < e.ts.saturating_add(reach),
            _ => c.ts <= e.ts.saturating_add(reach),
        };
        if !in_reach {
            break;
        }
        if c.breached() {
            continue;
        }
        // The call's own entry: also whether the same call again, at its instant, would be
        // over (`Engine::holds`). Counted with the repeat, a distinct cap finds the same values
        // (the repeat's is the call's), a plain one one call more: the count is asked against a
        // limit one lower, and the breach is still judged against the rule's.
        let own = i == at && step.hint.is_some();
        // (A limit of zero asks zero: the call itself is over it, and so is its repeat.)
        let asked = if own && distinct.is_none() {
            limit.saturating_sub(1)
        } else {
            limit
        };
        let counted = if within {
            None
        } else {
            count(
                step.scratch,
                calls,
                c.ts,
                c.pv(window),
                window,
                asked,
                distinct,
                None,
            )
        };
        if own {
            if let Some(h) = step.hint.as_deref_mut() {
                h.note(step.ri, counted.is_some());
            }
        }
        let found = counted.filter(|&n| n > limit);
        if let Some(n) = found {
            calls[i].mark_breached();
            let ctx = &step.ctx;
            out.push(Breach {
                rule: step.ri,
                subject: ctx.subject(c.slot(), step.slot),
                observed: n,
                limit,
                bounds: ctx
                    .bounds
                    .then(|| bounds(c.ts, ctx.record_zone(step.rule, c.slot()), window)),
                holiday: false,
                evidence: Evidence::new(),
                late: c.slot() != step.slot,
                status: None,
                contact: None,
            });
            let (ts, pv) = (c.ts, c.pv(window));
            if let Some(unread) = step.unread.as_deref_mut() {
                // Read at the next settle (EngineSettings::defer_evidence).
                let (lo, hi) = range(calls, ts, window);
                let mut seen = Seen::new();
                let room = ctx.evidence_limit;
                select(
                    &calls[lo..hi],
                    pv,
                    window,
                    distinct,
                    &mut seen,
                    room,
                    |slot| unread.note(ctx, slot),
                );
                unread.close(out.len() - 1);
            } else if let Some(b) = out.last_mut() {
                evidence(ctx, calls, ts, pv, window, distinct, None, &mut b.evidence);
            }
        }
    }
    Applied::Matched
}

/// A candidate before a cap: the window entries it is counted with, its time, local period,
/// zone and distinct value. `None` when the rule does not look at it.
struct Candidate<'x> {
    v: &'x [Entry],
    t: i64,
    pv: i32,
    tz: &'x TimeZone,
    extra: Sym,
}

#[allow(clippy::too_many_arguments)]
fn candidate<'x>(
    rule: &'x Rule,
    windows: &'x Windows,
    shared: Option<(&'x crate::engine::shared::Group, u8)>,
    thin: Option<&'x crate::engine::thin::Thin>,
    reserved: &'x Windows,
    ctx: &Ctx<'_>,
    buf: &'x mut Vec<Entry>,
    call: &'x Call,
) -> Option<Candidate<'x>> {
    if !rule.when.matches(call) {
        return None;
    }
    let (window, _, distinct) = params(rule);
    let key = ctx.lookup_key(rule, call)?;
    let t = call.occurred_at.0;
    let tz = rule.zone.for_call(call);
    let pv = if window.is_local() {
        window.period_of_day(Local::of(call.occurred_at, tz).day)
    } else {
        0
    };
    // A value never seen cannot equal any in the window: a symbol no string has stands for it.
    let extra = distinct.map_or(Sym::NONE, |f| ctx.lookup_field(call, f));
    let v = super::entries(windows, shared, thin, reserved, key, false, buf, ctx.own);
    Some(Candidate {
        v,
        t,
        pv,
        tz,
        extra,
    })
}

/// The candidate and its count, when the count exceeds the limit.
fn over<'x>(l: &'x mut Look<'_, '_>) -> Option<(Candidate<'x>, u32)> {
    let (window, limit, distinct) = params(l.rule);
    let c = candidate(
        l.rule, l.windows, l.shared, l.thin, l.reserved, l.ctx, l.buf, l.call,
    )?;
    let n = count(
        l.scratch,
        c.v,
        c.t,
        c.pv,
        window,
        limit,
        distinct,
        Some(c.extra),
    )?;
    Some((c, n))
}

pub(in crate::engine) fn check(l: &mut Look<'_, '_>) -> Option<Breach> {
    let (window, limit, distinct) = params(l.rule);
    let (ri, ctx, call) = (l.ri, l.ctx, l.call);
    let (c, n) = over(l)?;
    let mut b = Breach {
        rule: ri,
        subject: crate::engine::breach::Subject::Judged,
        observed: n,
        limit,
        bounds: ctx.bounds.then(|| bounds(c.t, c.tz, window)),
        holiday: false,
        evidence: Evidence::new(),
        late: false,
        status: None,
        contact: None,
    };
    let first = Some((call.call_id.as_str(), c.extra));
    evidence(
        ctx,
        c.v,
        c.t,
        c.pv,
        window,
        distinct,
        first,
        &mut b.evidence,
    );
    Some(b)
}

/// When the cap lets the candidate through: once enough of the calls it is counted with have
/// left its window (or, for a distinct cap, enough values) — calls joining the window later
/// only delay that, so this is the earliest it can be.
pub(in crate::engine) fn clear_after(l: &mut Look<'_, '_>) -> Clear {
    let (window, limit, distinct) = params(l.rule);
    let Some((c, n)) = over(l) else {
        return Clear::Now;
    };
    // The first instant an entry is no longer in the window of a call placed then.
    let leaves = |y: &Entry| match window {
        Window::Rolling(w) => y.ts.saturating_add(w),
        other => other.period_start(y.pv(other) + other.span(), c.tz).0,
    };
    let (lo, hi) = range(c.v, c.t, window);
    let member = Member::new(c.pv, window);
    let members = c.v[lo..hi].iter().filter(|y| member.has(y));
    let mut times: Vec<i64> = match distinct {
        None => members.map(leaves).collect(),
        Some(_) => {
            // A value leaves with its last call; the candidate's own value never does.
            let mut last: Vec<(Sym, i64)> = members
                .filter(|y| !y.val.is_none() && y.val != c.extra)
                .map(|y| (y.val, leaves(y)))
                .collect();
            last.sort_unstable();
            let mut out: Vec<i64> = Vec::with_capacity(last.len());
            for (i, (v, t)) in last.iter().enumerate() {
                if last.get(i + 1).is_none_or(|(w, _)| w != v) {
                    out.push(*t);
                }
            }
            out
        }
    };
    let k = (n - limit) as usize;
    if times.len() < k {
        return Clear::Never;
    }
    times.sort_unstable();
    Clear::From(times[k - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::time::NANOS_PER_DAY;

    /// `Member::has` answers as `in_window` for every entry a window can hold: local days one
    /// before, at or after the UTC date, times through the day around both ends of windows of
    /// every day-valued form (and the others, where it works every entry out).
    #[test]
    fn member_agrees_with_in_window_at_the_edges() {
        let windows = (1..=9)
            .map(Window::LocalDays)
            .chain([
                Window::Calendar(Calendar::Day),
                Window::Calendar(Calendar::Week),
                Window::Calendar(Calendar::Month),
                Window::Rolling(3 * NANOS_PER_DAY),
            ])
            .collect::<Vec<_>>();
        let base = 20_400; // a day in 2025
        let hour = NANOS_PER_DAY / 24;
        for window in windows {
            for call_day in base - 1..=base + 1 {
                let pv = window.period_of_day(call_day);
                let m = Member::new(pv, window);
                for h in -(12 * 24)..=(2 * 24) {
                    let ts = (base as i64) * NANOS_PER_DAY + h * hour + 1;
                    let utc = ts.div_euclid(NANOS_PER_DAY) as i32;
                    for d in -1..=1 {
                        // A rolling window's entries keep no period.
                        let epv = if window.is_local() {
                            window.period_of_day(utc + d)
                        } else {
                            0
                        };
                        let e = Entry::new(ts, epv, 0, Sym::NONE, window);
                        assert_eq!(
                            m.has(&e),
                            in_window(&e, pv, window),
                            "{window:?} pv {pv}, entry at hour {h} with local day {d:+}"
                        );
                    }
                }
            }
        }
    }
}
