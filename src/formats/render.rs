//! Calls written as a dialer's records, under fixed conventions ([`mapping_for`]): the demo's
//! Asterisk dialer, the decode benchmark and the tests use them to have the same calls in every
//! format. What a format cannot carry (relation, number source; VICIdial's rows also consent
//! and purpose) is lost, as it is from a real dialer. Asterisk rows carry consent and purpose
//! in the userfield and FreeSWITCH records in channel variables, as a dialplan would set them.

use super::{csv, Format, Places, RawMapping};
use crate::engine::event::{Call, CallOutcome};
use jiff::tz::TimeZone;

/// The mapping that reads [`render`]'s records back (local times in `zone`).
pub fn mapping_for(format: Format, zone: &str) -> RawMapping {
    let p = |s: &str| Some(Places::One(s.to_owned()));
    match format {
        Format::CallEventV1 => RawMapping::default(),
        Format::AsteriskCdrCsv => RawMapping {
            loguniqueid: true,
            loguserfield: true,
            newcdrcolumns: true,
            timezone: Some(zone.to_owned()),
            debtor_id: p("userfield:debtor"),
            account_id: p("userfield:account"),
            agent_id: p("src"),
            agency_id: p("accountcode"),
            purpose: p("userfield:purpose"),
            consent: p("userfield:consent"),
            ..Default::default()
        },
        Format::FreeswitchJsonCdr => RawMapping {
            debtor_id: p("variables.debtor_id"),
            account_id: p("variables.account_id"),
            agent_id: p("variables.agent_id"),
            agency_id: p("variables.agency_id"),
            campaign_id: p("variables.campaign_id"),
            purpose: p("variables.purpose"),
            consent: p("variables.consent"),
            ..Default::default()
        },
        Format::VicidialLog => RawMapping {
            timezone: Some(zone.to_owned()),
            agency_id: p("user_group"),
            ..Default::default()
        },
    }
}

fn disposition(format: Format, o: Option<CallOutcome>) -> &'static str {
    use CallOutcome::*;
    let o = o.unwrap_or(NoAnswer);
    match format {
        Format::AsteriskCdrCsv => match o {
            Conversation | WrongNumber => "ANSWERED",
            Busy => "BUSY",
            Failed | NotInService | Dropped => "FAILED",
            NoAnswer | Voicemail => "NO ANSWER",
        },
        Format::FreeswitchJsonCdr => match o {
            Conversation | WrongNumber | Voicemail => "NORMAL_CLEARING",
            Busy => "USER_BUSY",
            Failed => "CALL_REJECTED",
            NotInService => "UNALLOCATED_NUMBER",
            Dropped => "MEDIA_TIMEOUT",
            NoAnswer => "NO_ANSWER",
        },
        _ => match o {
            Conversation | WrongNumber => "SALE",
            Busy => "B",
            Failed => "ERI",
            NotInService => "DC",
            Dropped => "DROP",
            Voicemail => "AA",
            NoAnswer => "NA",
        },
    }
}

fn local(call: &Call, zone: &TimeZone) -> String {
    call.occurred_at
        .to_jiff()
        .to_zoned(zone.clone())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// `call` as one record of `format` (no line ending); local times in `zone`.
pub fn render(format: Format, call: &Call, zone: &TimeZone) -> String {
    let secs = call
        .occurred_at
        .0
        .div_euclid(crate::engine::time::NANOS_PER_SEC);
    let dur = call.duration_s.unwrap_or(0.0).round() as i64;
    let talk = if call.outcome == Some(CallOutcome::Conversation) {
        dur.max(1)
    } else {
        0
    };
    let opt = |v: &Option<crate::engine::event::Text>| v.as_deref().unwrap_or("").to_owned();
    match format {
        Format::CallEventV1 => crate::codec::encode(call),
        Format::AsteriskCdrCsv => {
            let mut s = String::with_capacity(400);
            let start = local(call, zone);
            let fields = [
                opt(&call.agency_id),
                opt(&call.agent_id),
                call.phone.to_string(),
                "from-dialer".into(),
                format!("\"Collections\" <{}>", opt(&call.agent_id)),
                format!("SIP/trunk-{:08x}", secs & 0xffff_ffff),
                String::new(),
                "Dial".into(),
                format!("SIP/trunk/{},30", call.phone),
                start.clone(),
            ];
            for f in &fields {
                csv::quote(&mut s, f);
                s.push(',');
            }
            // answer (empty when unanswered), end, duration, billsec
            if talk > 0 {
                csv::quote(&mut s, &start);
            }
            s.push(',');
            csv::quote(&mut s, &start);
            s.push_str(&format!(",{},{talk},", dur.max(talk)));
            let mut userfield = format!("debtor={}", call.debtor_id);
            if let Some(a) = &call.account_id {
                userfield.push_str(&format!(";account={a}"));
            }
            if let Some(p) = call.purpose {
                userfield.push_str(&format!(";purpose={}", p.as_str()));
            }
            if call.consent {
                userfield.push_str(";consent=1");
            }
            for f in [
                disposition(format, call.outcome),
                "DOCUMENTATION",
                &call.call_id,
                &userfield,
                "",
                &call.call_id,
            ] {
                csv::quote(&mut s, f);
                s.push(',');
            }
            s.push('1');
            s
        }
        Format::FreeswitchJsonCdr => {
            let enc = |v: &str| -> String {
                v.bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                            (b as char).to_string()
                        }
                        _ => format!("%{b:02X}"),
                    })
                    .collect()
            };
            let us = call.occurred_at.0.div_euclid(1_000);
            let mut vars = serde_json::Map::new();
            let mut put = |k: &str, v: String| {
                vars.insert(k.into(), serde_json::Value::String(enc(&v)));
            };
            put("uuid", call.call_id.to_string());
            put("direction", call.direction.as_str().into());
            put("start_epoch", secs.to_string());
            put("start_uepoch", us.to_string());
            put("hangup_cause", disposition(format, call.outcome).into());
            put("billsec", talk.to_string());
            put("duration", dur.max(talk).to_string());
            put("debtor_id", call.debtor_id.to_string());
            if let Some(p) = call.purpose {
                put("purpose", p.as_str().into());
            }
            if call.consent {
                put("consent", "true".into());
            }
            for (k, v) in [
                ("account_id", &call.account_id),
                ("agent_id", &call.agent_id),
                ("agency_id", &call.agency_id),
                ("campaign_id", &call.campaign_id),
            ] {
                if let Some(v) = v {
                    put(k, v.to_string());
                }
            }
            serde_json::json!({
                "core-uuid": "demo-switch",
                "switchname": "dialguard-demo",
                "channel_data": {"state": "CS_REPORTING", "direction": call.direction.as_str()},
                "variables": vars,
                "callflow": [{
                    "dialplan": "XML",
                    "caller_profile": {
                        "caller_id_number": "+862161230000",
                        "destination_number": call.phone.as_str(),
                        "uuid": call.call_id.as_str(),
                    },
                    "times": {"created_time": us.to_string(), "hangup_time": (us + dur * 1_000_000).to_string()},
                }],
            })
            .to_string()
        }
        Format::VicidialLog => {
            let mut s = String::with_capacity(200);
            let (code, number) = match call.phone.strip_prefix("+86") {
                Some(n) => ("86", n.to_owned()),
                None => ("", call.phone.to_string()),
            };
            let fields = [
                call.call_id.to_string(),
                call.debtor_id.to_string(),
                "101".into(),
                opt(&call.campaign_id),
                local(call, zone),
                secs.to_string(),
                (secs + dur).to_string(),
                dur.to_string(),
                disposition(format, call.outcome).into(),
                code.into(),
                number,
                opt(&call.agent_id),
                String::new(),
                "N".into(),
                opt(&call.agency_id),
                "NONE".into(),
                "MAIN".into(),
                "1".into(),
            ];
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                if f.contains([',', '"']) {
                    csv::quote(&mut s, f);
                } else {
                    s.push_str(f);
                }
            }
            s
        }
    }
}

/// A writer that takes call event v1 lines and writes each as `format`'s record (local times
/// in `zone`): `dialguard generate --format`. A line the v1 decoder refuses is written as it is
/// (it stays invalid in the other format too).
pub struct Rendering<W: std::io::Write> {
    inner: W,
    format: Format,
    zone: TimeZone,
    decoder: crate::codec::Decoder,
    pending: Vec<u8>,
}

impl<W: std::io::Write> Rendering<W> {
    /// Renders into `inner`.
    pub fn new(inner: W, format: Format, zone: TimeZone) -> Rendering<W> {
        let settings = crate::codec::DecodeSettings {
            max_future_skew: i64::MAX / 4,
            ..Default::default()
        };
        Rendering {
            inner,
            format,
            zone,
            decoder: crate::codec::Decoder::new(settings),
            pending: Vec::new(),
        }
    }

    fn line(&mut self, line: &[u8]) -> std::io::Result<()> {
        let now = crate::engine::time::Ts(i64::MAX / 2);
        match self.decoder.decode(line, now) {
            Ok(call) => self
                .inner
                .write_all(render(self.format, &call, &self.zone).as_bytes())?,
            Err(_) => self.inner.write_all(line)?,
        }
        self.inner.write_all(b"\n")
    }
}

impl<W: std::io::Write> std::io::Write for Rendering<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        let mut start = 0;
        while let Some(n) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let line = self.pending[start..start + n].to_vec();
            self.line(&line)?;
            start += n + 1;
        }
        self.pending.drain(..start);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.line(&line)?;
        }
        self.inner.flush()
    }
}
