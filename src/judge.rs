//! The judge step, the one way every driver turns a record into an outcome: bytes → decode →
//! engine → rejected with a reason, a duplicate, or accepted with its breaches. `replay`, the
//! service, its rebuild and the tests all judge through here, so a reason and its text are
//! the same wherever a call is refused.
//!
//! Decoding and judging are two halves ([`decode`], [`judge`]) because replay decodes on
//! worker threads and judges on one.

use crate::alert::{self, Alert};
use crate::codec::{Decoder, Reason, Reject};
use crate::engine::breach::Breach;
use crate::engine::contacts::NoDebtor;
use crate::engine::event::Call;
use crate::engine::time::Ts;
use crate::engine::{Engine, Ingest, Lane, TooLate};

/// What judging one record came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Not judged: why (the decoder's reasons, and `too_late`).
    Rejected(Reject),
    /// A call with this `call_id` is already retained: not counted again. Its breaches, if
    /// any, are late ones of earlier calls: a conversation on another record of the attempt
    /// started a cooldown ([`Ingest::Duplicate`]).
    Duplicate,
    /// Judged and retained, with its breaches in the caller's buffer.
    Accepted {
        /// Rules that did not apply because the call lacks a key field.
        skipped: u32,
    },
}

/// The first half: bytes to a call, or the reason it cannot be one. `now` bounds how far in
/// the future a call may claim to be.
pub fn decode(decoder: &mut Decoder, bytes: &[u8], now: Ts) -> Result<Call, Reject> {
    decoder.decode(bytes, now)
}

/// [`decode`] of records in order, each outcome handed to `each`: the same outcomes, with
/// each record read a few ahead of its validation ([`Decoder::decode_each`]).
pub fn decode_each<'a>(
    decoder: &mut Decoder,
    records: impl Iterator<Item = &'a [u8]>,
    now: Ts,
    each: impl FnMut(Result<Call, Reject>),
) {
    decoder.decode_each(records, now, each)
}

/// The second half: judges a decoded call read from `lane`; its breaches are appended to
/// `out`. What the event lacks is filled from the contact book first — the debtor, when the
/// record's mapping left it to the book ([`Engine::find_debtor`]; a call with no single
/// debtor there is refused as `missing_field`), then `relation` and `number_source`
/// ([`Engine::enrich`]) — so the caller's call shows it. Symbols a decoder interned for this
/// engine are taken out of the call ([`Engine::ingest_owned`]).
pub fn judge(engine: &mut Engine, lane: Lane, call: &mut Call, out: &mut Vec<Breach>) -> Outcome {
    if let Err(why) = engine.find_debtor(call) {
        return Outcome::Rejected(no_debtor(why));
    }
    engine.enrich(call);
    match engine.ingest_owned(lane, call, out) {
        Ingest::Accepted { skipped } => Outcome::Accepted { skipped },
        Ingest::Duplicate => Outcome::Duplicate,
        Ingest::TooLate(why) => Outcome::Rejected(too_late(call, why)),
    }
}

/// The rejection of a call the engine refused as too late, with the one text every driver
/// gives.
pub fn too_late(call: &Call, why: TooLate) -> Reject {
    Reject {
        reason: Reason::TooLate,
        detail: format!("occurred_at {} is {why}", call.occurred_at),
    }
}

/// The rejection of a call whose debtor the contact book could not name
/// ([`Engine::find_debtor`]).
pub fn no_debtor(why: NoDebtor) -> Reject {
    Reject {
        reason: Reason::MissingField,
        detail: format!("debtor_id: none in the record's mapped places, and @contact_book: {why}"),
    }
}

/// Judges a decoded call and renders what it causes as alerts (for tests and tools that want
/// Alert v1 directly).
pub fn judge_alerts(
    engine: &mut Engine,
    lane: Lane,
    call: &mut Call,
    now: Ts,
    out: &mut Vec<Alert>,
) -> Outcome {
    let mut found = Vec::new();
    let o = judge(engine, lane, call, &mut found);
    alert::render_all(engine.rules(), &found, call, now, out);
    o
}
