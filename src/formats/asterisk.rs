//! Asterisk CDRs as `cdr_csv` writes them (`Master.csv`): `accountcode, src, dst, dcontext,
//! clid, channel, dstchannel, lastapp, lastdata, start, answer, end, duration, billsec,
//! disposition, amaflags`, then `uniqueid` with `loguniqueid`, `userfield` with
//! `loguserfield`, `peeraccount, linkedid, sequence` with `newcdrcolumns` (`cdr/cdr_csv.c`).
//! Strings are quoted with `""` for a quote; numbers are bare; an unset time is empty. Times
//! are the server's local time unless `usegmtime=yes` (then give `timezone = "UTC"`).
//! `cdr_custom` rows are read through `mapping.columns`, named as `${CDR(name)}` names them;
//! a time written with `${CDR(start,u)}` (epoch seconds) is read as such.

use super::{Fixed, RawMapping, Target, TimeKind};
use crate::engine::event::CallOutcome;

/// The columns `cdr_csv` writes with these options.
pub(crate) fn columns(raw: &RawMapping) -> Vec<String> {
    let mut c: Vec<&str> = vec![
        "accountcode",
        "src",
        "dst",
        "dcontext",
        "clid",
        "channel",
        "dstchannel",
        "lastapp",
        "lastdata",
        "start",
        "answer",
        "end",
        "duration",
        "billsec",
        "disposition",
        "amaflags",
    ];
    if raw.loguniqueid {
        c.push("uniqueid");
    }
    if raw.loguserfield {
        c.push("userfield");
    }
    if raw.newcdrcolumns {
        c.extend(["peeraccount", "linkedid", "sequence"]);
    }
    c.into_iter().map(str::to_owned).collect()
}

/// Where the call event's fields are by default. The attempt is the `linkedid` (legs of a
/// parallel or transferred call share it, so they count once), else the `uniqueid`, else the
/// channel (whose name ends in a sequence number unique on the server).
pub(crate) fn defaults(raw: &RawMapping) -> Vec<(Target, Vec<&'static str>)> {
    let mut id = Vec::new();
    let cols = raw.columns.clone().unwrap_or_else(|| columns(raw));
    for c in ["linkedid", "uniqueid", "channel"] {
        if cols.iter().any(|x| x == c) {
            id.push(c);
        }
    }
    vec![
        (Target::CallId, id),
        (Target::Phone, vec!["dst"]),
        (Target::Direction, vec!["=outbound"]),
    ]
}

pub(crate) fn fixed() -> Fixed {
    Fixed {
        time: vec![("start", TimeKind::SecsOrLocal)],
        outcome: "disposition",
        billsec: Some("billsec"),
        duration: "duration",
    }
}

/// `disposition` values (`ast_cdr_disp2str`).
pub(crate) const OUTCOMES: &[(&str, CallOutcome)] = &[
    ("ANSWERED", CallOutcome::Conversation),
    ("NO ANSWER", CallOutcome::NoAnswer),
    ("BUSY", CallOutcome::Busy),
    ("FAILED", CallOutcome::Failed),
    ("CONGESTION", CallOutcome::Failed),
];
