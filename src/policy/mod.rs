//! The policy: the TOML rule format above the engine. [`spec`] turns rules as written into
//! the engine's compiled [`Rule`]s; [`describe`] is what `check-config` prints of them. Packs
//! and the configuration file are read by `crate::config`, which calls into here.

pub mod spec;

pub use spec::{
    parse_date, parse_duration, parse_time_of_day, FilterSpec, FilterValue, RuleError, RuleSpec,
    SlotSpec, WindowSpec,
};

use crate::config::Settings;
use crate::engine::rule::{Body, Rule};

/// What `check-config` prints: the configuration, its packs, and each rule on a line.
pub fn describe(s: &Settings) -> String {
    let mut out = format!(
        "configuration {} is valid\n  default timezone {}, allowed lateness {}s, {} rules\n",
        s.path.display(),
        s.default_timezone,
        s.engine.allowed_lateness / crate::engine::time::NANOS_PER_SEC,
        s.rules.len()
    );
    for (name, path) in &s.packs {
        out.push_str(&format!("  pack {name} ({})\n", path.display()));
    }
    if s.kafka.inputs.len() == 1 {
        out.push_str(&s.decode.mapping.describe());
    } else {
        for i in &s.kafka.inputs {
            out.push_str(&format!("input topic {}, ", i.topic));
            out.push_str(&i.mapping.describe());
        }
    }
    out.push('\n');
    for r in &s.rules {
        out.push_str(&describe_rule(r));
        out.push('\n');
    }
    out
}

/// One rule, as `check-config` prints it.
pub fn describe_rule(r: &Rule) -> String {
    let body = match &r.body {
        Body::Cap {
            window,
            limit,
            distinct,
        } => {
            let what = distinct.map_or("calls".to_owned(), |f| format!("distinct {}", f.as_str()));
            format!(
                "more than {limit} {what} per [{}] in {}",
                keys(r),
                window.describe()
            )
        }
        Body::Cooldown { period, .. } => format!(
            "no call per [{}] within {} after a trigger",
            keys(r),
            period.describe()
        ),
        Body::CallingHours { allowed, holidays } => {
            let slots: Vec<String> = allowed
                .iter()
                .map(|s| {
                    format!(
                        "{}{:02}:{:02}-{:02}:{:02}",
                        days_text(s.days),
                        s.from / 3600,
                        s.from / 60 % 60,
                        s.to / 3600,
                        s.to / 60 % 60
                    )
                })
                .collect();
            format!("allowed {} ({} holidays)", slots.join(", "), holidays.len())
        }
        Body::Forbid => "any matching call".to_owned(),
        Body::Status {
            kinds, lookback, ..
        } => {
            let names: Vec<&str> = crate::engine::event::StatusKind::ALL
                .iter()
                .filter(|k| kinds & (1 << **k as u16) != 0)
                .map(|k| k.as_str())
                .collect();
            format!(
                "no call per [{}] while a status is in force: {} (calls held {} for late statuses)",
                keys(r),
                names.join(", "),
                crate::engine::rule::describe_duration(*lookback)
            )
        }
        Body::Contact {
            sources,
            relations,
            lookback,
        } => {
            use crate::engine::event::{NumberSource, Relation};
            use crate::engine::rule::{ANY_RELATION, ANY_SOURCE};
            let list = |any: bool, names: Vec<&str>| {
                if any {
                    "any".to_owned()
                } else {
                    names.join(", ")
                }
            };
            format!(
                "no call to a number with source {} and relation {} (the event's, else the contact book's; calls held {} for late contacts)",
                list(
                    *sources == ANY_SOURCE,
                    NumberSource::ALL
                        .iter()
                        .filter(|s| sources & (1 << **s as u8) != 0)
                        .map(|s| s.as_str())
                        .collect()
                ),
                list(
                    *relations == ANY_RELATION,
                    Relation::ALL
                        .iter()
                        .filter(|x| relations & (1 << **x as u16) != 0)
                        .map(|x| x.as_str())
                        .collect()
                ),
                crate::engine::rule::describe_duration(*lookback)
            )
        }
    };
    format!(
        "{:<40} {:<13} {:<8} {:<18} tz={:<16} {}\n",
        r.id,
        r.kind.as_str(),
        r.severity.as_str(),
        r.pack.as_deref().unwrap_or("(inline)"),
        r.zone_name,
        body
    ) + &match &r.citation {
        Some(c) => format!("{:<40} cites {c}", ""),
        None => String::new(),
    }
}

fn keys(r: &Rule) -> String {
    r.key
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn days_text(mask: u8) -> String {
    if mask == 0x7f {
        return String::new();
    }
    let names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let d: Vec<&str> = (0..7)
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| names[i])
        .collect();
    format!("{} ", d.join("/"))
}
