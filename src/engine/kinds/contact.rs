//! `contact`: a call matching `when` breaches when its number's source is one of the rule's
//! `sources` and its callee's relation one of its `relations` — as the event says them, or,
//! for what the event leaves out, as the lender's contact book says (`engine::contacts`) for
//! the call's debtor and number at its event time.
//!
//! Event time, like `status`: the book's fact for a number applies to calls from its `from` on,
//! whichever arrives first. The rule keeps, per debtor, the calls it matched within `lookback`
//! with the values their events gave, so a fact arriving after calls it completes flags them
//! then (late breaches, each call once). Exactly:
//!
//! - the event's values alone breach: a breach, whatever the book says;
//! - else, with the book's fact filling what the event left out, they breach and the person
//!   did not consent (the fact's `consent`): a breach that names the fact.
//!
//! A fact only ever adds breaches, so the set does not depend on arrival order. (A fact
//! replaced by one that says less does not withdraw alerts already made.) A rule's `when` may
//! not filter on `relation` or `number_source`: the book would change what it matches.

use super::{Applied, Clear, Ctx, Look, Step};
use crate::engine::breach::{Breach, CallId, ContactCause, Subject};
use crate::engine::contacts::{Contact, Contacts, Fact};
use crate::engine::event::{Call, NumberSource, Relation, StrField};
use crate::engine::intern::Sym;
use crate::engine::rule::{Body, Rule, ANY_RELATION, ANY_SOURCE};

fn params(rule: &Rule) -> (u8, u16, i64) {
    match rule.body {
        Body::Contact {
            sources,
            relations,
            lookback,
        } => (sources, relations, lookback),
        _ => unreachable!("a contact rule"),
    }
}

/// The values a call's event gave itself (what the book did not fill): its number source and
/// its relation (`unknown` for none).
#[derive(Clone, Copy)]
struct Own {
    source: Option<NumberSource>,
    relation: Relation,
}

impl Own {
    fn of(call: &Call) -> Own {
        Own {
            source: call.number_source.filter(|_| !call.filled.number_source),
            relation: if call.filled.relation {
                Relation::Unknown
            } else {
                call.relation
            },
        }
    }

    /// Packed in a window entry's value: source + 1 (0: none) in the low byte, relation above.
    fn pack(self) -> Sym {
        Sym(self.source.map_or(0, |s| s as u32 + 1) | (self.relation as u32) << 8)
    }

    fn unpack(v: Sym) -> Own {
        let s = v.0 & 0xff;
        Own {
            source: (s != 0).then(|| NumberSource::ALL[s as usize - 1]),
            relation: Relation::ALL[(v.0 >> 8) as usize & 0xff],
        }
    }

    /// The values with the book's fact filling what the event left out.
    fn with(self, f: &Fact) -> Own {
        Own {
            source: self.source.or(Some(f.source)),
            relation: if self.relation == Relation::Unknown {
                f.relation
            } else {
                self.relation
            },
        }
    }
}

/// Whether values breach the rule.
fn names(rule: &Rule, v: Own) -> bool {
    let (sources, relations, _) = params(rule);
    let source = sources == ANY_SOURCE || v.source.is_some_and(|s| sources & (1 << s as u8) != 0);
    let relation = relations == ANY_RELATION
        || (v.relation != Relation::Unknown && relations & (1 << v.relation as u16) != 0);
    source && relation
}

/// The fact a breach relies on, when the event alone does not breach: `None` for no breach,
/// `Some(None)` for the event's own, `Some(Some(fact))` for one the book completes.
fn judge(rule: &Rule, own: Own, fact: Option<Fact>) -> Option<Option<Fact>> {
    if names(rule, own) {
        return Some(None);
    }
    let f = fact.filter(|f| !f.consent)?;
    names(rule, own.with(&f)).then_some(Some(f))
}

fn breach(ri: u16, subject: Subject, id: CallId, fact: Option<Fact>, late: bool) -> Breach {
    Breach {
        contact: fact.map(|f| Box::new(ContactCause::of(&f))),
        ..super::one_call(ri, subject, id, late)
    }
}

/// The breach of the call being judged (or checked), if it makes one: its own values, or
/// those completed by the book's fact.
fn judged(ri: u16, rule: &Rule, call: &Call, book: &Contacts) -> Option<Breach> {
    let fact = judge(rule, Own::of(call), book.fact_of(call))?;
    Some(breach(
        ri,
        Subject::Judged,
        CallId::new(&call.call_id),
        fact,
        false,
    ))
}

pub(in crate::engine) fn ingest(step: &mut Step<'_, '_>, out: &mut Vec<Breach>) -> Applied {
    let (_, _, lookback) = params(step.rule);
    let own = Own::of(step.call).pack();
    super::held_for_late(step, lookback, own, out, |step| {
        judged(step.ri, step.rule, step.call, step.ctx.contacts)
    })
}

pub(in crate::engine) fn check(l: &mut Look<'_, '_>) -> Option<Breach> {
    if !l.rule.when.matches(l.call) {
        return None;
    }
    judged(l.ri, l.rule, l.call, l.ctx.contacts)
}

/// A contact rule objects for good: neither the event's values nor the book's fact end.
pub(in crate::engine) fn clear_after(l: &mut Look<'_, '_>) -> Clear {
    if check(l).is_some() {
        Clear::Never
    } else {
        Clear::Now
    }
}

/// The retained calls of a contact rule that `c` (just known) completes into a breach and
/// that were not flagged yet: each becomes a late breach, once. Only calls the rule still
/// holds are looked at (`cutoff`: the oldest event time held for certain).
pub(in crate::engine) fn flag_retained(
    ri: u16,
    rule: &Rule,
    mut store: super::Store<'_>,
    ctx: &Ctx<'_>,
    c: &Contact,
    cutoff: i64,
    out: &mut Vec<Breach>,
) {
    if c.consent {
        return;
    }
    let fact = Fact {
        relation: c.relation,
        source: c.source,
        consent: c.consent,
        from: c.from,
    };
    // A string never interned is in no retained call.
    let (debtor, phone) = {
        let i = ctx.interner.lock();
        (i.lookup(&c.debtor_id), i.lookup(&c.phone))
    };
    let (Some(debtor), Some(phone)) = (debtor, phone) else {
        return;
    };
    let Some(held) = super::held_since(&mut store, debtor, c.from.0.max(cutoff)) else {
        return;
    };
    for e in held.iter_mut() {
        if e.breached() || ctx.record(e.slot()).syms[StrField::Phone as usize] != phone {
            continue;
        }
        if let Some(Some(f)) = judge(rule, Own::unpack(e.val), Some(fact)) {
            e.mark_breached();
            out.push(breach(
                ri,
                ctx.subject(e.slot(), u32::MAX),
                ctx.id(e.slot()),
                Some(f),
                true,
            ));
        }
    }
}
