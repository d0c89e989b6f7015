//! `dialguard convert`: a dialer's records in, call events v1 out (JSON lines), for teams that
//! want to see or archive what dialguard understood of their CDRs. Each record goes through the
//! same decoder `run` and `replay` use; a record it refuses goes to the rejects output with
//! its reason, as replay writes them.
//!
//! A record whose debtor the mapping leaves to the contact book (`@contact_book`) is given the
//! one debtor whose book holds its number at its time, from the contact book read first
//! (`--reference`, Contact v1 lines; [`read_book`]); without one it is refused, as
//! `missing_field`. Only the debtor is filled in: `relation` and `number_source` stay as the
//! record says them, for the judge to fill in (the event's own values weigh differently).

use crate::codec::{self, DecodeSettings, Decoder, Reason};
use crate::engine::contacts::{Contacts, NoDebtor};
use crate::engine::time::Ts;
use crate::reference::{Reference, ReferenceDecoder};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};

/// What a conversion came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Converted {
    /// Records written as call events.
    pub written: u64,
    /// Records refused, by reason.
    pub rejected: BTreeMap<Reason, u64>,
    /// Blank lines skipped.
    pub blank: u64,
}

impl Converted {
    /// The summary printed on standard error.
    pub fn table(&self) -> String {
        let mut s = format!("converted {} records", self.written);
        let refused: u64 = self.rejected.values().sum();
        if refused > 0 {
            s.push_str(&format!(", refused {refused}:"));
            for (r, n) in &self.rejected {
                s.push_str(&format!(" {r} {n}"));
            }
        }
        if self.blank > 0 {
            s.push_str(&format!(", {} blank lines skipped", self.blank));
        }
        s.push('\n');
        s
    }
}

/// The contact book from Contact v1 lines (statuses and refused lines are skipped; the last
/// record for a debtor and number wins, as compaction keeps it), indexed by number. Returns
/// it and how many lines were refused.
pub fn read_book(
    settings: &DecodeSettings,
    r: &mut dyn BufRead,
) -> std::io::Result<(Contacts, u64)> {
    let mut book = Contacts::default();
    book.index_numbers();
    let mut dec = ReferenceDecoder::new(settings.default_region);
    let mut refused = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match dec.decode_line(&line) {
            Ok(Reference::Contact(c)) => {
                if book.upsert(&c).is_err() {
                    refused += 1;
                }
            }
            Ok(Reference::Forget { debtor_id, phone }) => {
                book.remove(&debtor_id, &phone);
            }
            Ok(_) => {}
            Err(_) => refused += 1,
        }
    }
    Ok((book, refused))
}

/// Converts every line of `input` (one record per line). `now` bounds future timestamps.
/// `book` finds the debtors the mapping leaves to the contact book.
pub fn run(
    settings: &DecodeSettings,
    book: Option<&Contacts>,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    mut rejects: Option<&mut dyn Write>,
    now: Ts,
) -> std::io::Result<Converted> {
    let mut decoder = Decoder::new(settings.clone());
    let mut summary = Converted::default();
    let mut buf = Vec::new();
    let mut line = 0u64;
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        line += 1;
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            summary.blank += 1;
            continue;
        }
        let decoded = decoder.decode(&buf, now).and_then(|mut call| {
            let found = match book {
                Some(b) => b.find_debtor(&mut call),
                None if call.wants_debtor() => Err(NoDebtor::NotGiven),
                None => Ok(()),
            };
            found.map(|()| call).map_err(crate::judge::no_debtor)
        });
        match decoded {
            Ok(call) => {
                out.write_all(codec::encode(&call).as_bytes())?;
                out.write_all(b"\n")?;
                summary.written += 1;
            }
            Err(r) => {
                *summary.rejected.entry(r.reason).or_default() += 1;
                if let Some(w) = rejects.as_mut() {
                    let v = serde_json::json!({
                        "line": line,
                        "reason": r.reason.as_str(),
                        "detail": r.detail,
                        "record": String::from_utf8_lossy(&buf),
                    });
                    serde_json::to_writer(&mut **w, &v)?;
                    w.write_all(b"\n")?;
                }
            }
        }
    }
    out.flush()?;
    if let Some(w) = rejects.as_mut() {
        w.flush()?;
    }
    Ok(summary)
}
