//! Event time: instants as nanoseconds since the Unix epoch, and the local calendar view of an
//! instant in a time zone (local day number, second of day, weekday, month index).
//!
//! Local dates are what the `local_days` and `calendar` windows and the `calling_hours` rule
//! compare, so they are computed here once, the same way everywhere.

use jiff::tz::TimeZone;

/// Nanoseconds in one second.
pub const NANOS_PER_SEC: i64 = 1_000_000_000;
/// Nanoseconds in one (24-hour) day.
pub const NANOS_PER_DAY: i64 = 86_400 * NANOS_PER_SEC;

/// An instant: nanoseconds since 1970-01-01T00:00:00Z. Covers 1677–2262.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ts(pub i64);

impl Ts {
    /// Converts from a jiff timestamp (saturating outside the representable range).
    pub fn from_jiff(t: jiff::Timestamp) -> Ts {
        let n = t.as_nanosecond();
        Ts(n.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
    }

    /// Converts to a jiff timestamp.
    pub fn to_jiff(self) -> jiff::Timestamp {
        jiff::Timestamp::from_nanosecond(self.0 as i128).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }

    /// The instant `d` nanoseconds later, saturating.
    pub fn plus(self, d: i64) -> Ts {
        Ts(self.0.saturating_add(d))
    }

    /// The instant `d` nanoseconds earlier, saturating.
    pub fn minus(self, d: i64) -> Ts {
        Ts(self.0.saturating_sub(d))
    }
}

impl std::fmt::Display for Ts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

/// "00" to "99": two digits written at once (alerts carry four timestamps each).
const PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

impl Ts {
    /// RFC 3339 in UTC, as jiff writes a timestamp: `2026-11-10T02:00:00Z`, with the fraction
    /// only when it is not zero and without trailing zeros. Alerts carry several of these, so it
    /// is written by hand (years 0000–9999; others fall back to jiff).
    pub fn rfc3339(self) -> String {
        let mut b = Vec::with_capacity(30);
        self.write_rfc3339(&mut b);
        String::from_utf8(b).expect("RFC 3339 is ASCII")
    }

    /// [`Ts::rfc3339`], appended to `out` (no allocation for years 0000–9999).
    pub fn write_rfc3339(self, out: &mut Vec<u8>) {
        let secs = self.0.div_euclid(NANOS_PER_SEC);
        let nanos = self.0.rem_euclid(NANOS_PER_SEC) as u32;
        let day = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400) as u32;
        let (y, m, d) = civil_from_days(day);
        if !(0..=9999).contains(&y) {
            out.extend_from_slice(self.to_jiff().to_string().as_bytes());
            return;
        }
        let mut b = [0u8; 30];
        let two = |b: &mut [u8], at: usize, v: u32| {
            let i = 2 * v as usize;
            b[at] = PAIRS[i];
            b[at + 1] = PAIRS[i + 1];
        };
        let y = y as u32;
        two(&mut b, 0, y / 100);
        two(&mut b, 2, y % 100);
        b[4] = b'-';
        two(&mut b, 5, m);
        b[7] = b'-';
        two(&mut b, 8, d);
        b[10] = b'T';
        two(&mut b, 11, sod / 3600);
        b[13] = b':';
        two(&mut b, 14, sod / 60 % 60);
        b[16] = b':';
        two(&mut b, 17, sod % 60);
        let mut n = 19;
        if nanos != 0 {
            b[19] = b'.';
            two(&mut b, 20, nanos / 10_000_000);
            two(&mut b, 22, nanos / 100_000 % 100);
            two(&mut b, 24, nanos / 1_000 % 100);
            two(&mut b, 26, nanos / 10 % 100);
            b[28] = b'0' + (nanos % 10) as u8;
            n = 29;
            while b[n - 1] == b'0' {
                n -= 1;
            }
        }
        b[n] = b'Z';
        out.extend_from_slice(&b[..=n]);
    }
}

/// The local calendar view of an instant in one time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    /// Local date as days since 1970-01-01.
    pub day: i32,
    /// Seconds since local midnight (0..86400).
    pub sec_of_day: u32,
    /// 0 = Monday … 6 = Sunday.
    pub weekday: u8,
    /// The offset from UTC in force at that instant, in seconds.
    pub offset_s: i32,
}

impl Local {
    /// Computes the local view of `t` in `tz`.
    pub fn of(t: Ts, tz: &TimeZone) -> Local {
        Local::at_offset(t, tz.to_offset(t.to_jiff()).seconds())
    }

    /// The local view of `t` where the offset from UTC is `offset_s` seconds.
    #[inline]
    fn at_offset(t: Ts, offset_s: i32) -> Local {
        let secs = t.0.div_euclid(NANOS_PER_SEC);
        let local = secs + offset_s as i64;
        let day = local.div_euclid(86_400);
        Local {
            day: day as i32,
            sec_of_day: local.rem_euclid(86_400) as u32,
            weekday: (day + 3).rem_euclid(7) as u8,
            offset_s,
        }
    }

    /// ISO week index (weeks start on Monday), counted from the week of 1970-01-01.
    pub fn week(&self) -> i32 {
        week_of_day(self.day)
    }

    /// Month index: `year * 12 + (month - 1)`.
    pub fn month(&self) -> i32 {
        month_of_day(self.day)
    }
}

/// A zone's offset from UTC and the instants it is known to hold for: those strictly between
/// two of the zone's transitions (nanoseconds; empty at first). A call's local time is worked
/// out once per zone for all the rules that read it ([`Local::of`]: a search of the zone's
/// transitions, 1.6% of the engine thread's samples on the default policy); calls come in
/// time order, mostly, and a zone changes its offset a few times a year at most, so the span
/// of the last answer holds nearly every next one.
#[derive(Debug, Clone, Copy, Default)]
pub struct OffsetSpan {
    after: i64,
    before: i64,
    offset_s: i32,
}

impl OffsetSpan {
    /// [`Local::of`]`(t, tz)`, from this span when `t` is inside it; otherwise worked out, and
    /// the span becomes the one around `t`. `tz` must be the zone of the span's earlier
    /// answers.
    #[inline]
    pub fn local(&mut self, t: Ts, tz: &TimeZone) -> Local {
        if self.after < t.0 && t.0 < self.before {
            return Local::at_offset(t, self.offset_s);
        }
        let l = Local::of(t, tz);
        *self = OffsetSpan::around(t, tz, l.offset_s);
        l
    }

    /// The span between the transitions either side of `t`, whose offset is `offset_s`; empty
    /// when the offsets just inside its ends are not `offset_s` (a transition at `t` itself,
    /// were it in neither direction's list).
    #[cold]
    fn around(t: Ts, tz: &TimeZone, offset_s: i32) -> OffsetSpan {
        let at = t.to_jiff();
        let after = tz
            .preceding(at)
            .next()
            .map_or(i64::MIN, |tr| Ts::from_jiff(tr.timestamp()).0);
        let before = tz
            .following(at)
            .next()
            .map_or(i64::MAX, |tr| Ts::from_jiff(tr.timestamp()).0);
        let inside = |x: i64| tz.to_offset(Ts(x).to_jiff()).seconds();
        if after < before.saturating_sub(1)
            && inside(after.saturating_add(1)) == offset_s
            && inside(before.saturating_sub(1)) == offset_s
        {
            OffsetSpan {
                after,
                before,
                offset_s,
            }
        } else {
            OffsetSpan::default()
        }
    }
}

/// ISO week index (Monday first) of a day number.
pub fn week_of_day(day: i32) -> i32 {
    (day + 3).div_euclid(7)
}

/// Month index `year * 12 + month - 1` of a day number.
pub fn month_of_day(day: i32) -> i32 {
    let (y, m, _) = civil_from_days(day as i64);
    (y * 12 + (m as i64 - 1)) as i32
}

/// The first day number of a month index.
pub fn first_day_of_month(month_index: i32) -> i32 {
    let y = month_index.div_euclid(12) as i64;
    let m = month_index.rem_euclid(12) as u32 + 1;
    days_from_civil(y, m, 1) as i32
}

/// The `N` digits at `at` as a number. Always inlined (and unrolled): a closure here was
/// inlined or not as unrelated code changed, and not was 160 instructions more per call event
/// decoded (callgrind).
#[inline(always)]
fn digits<const N: usize>(b: &[u8], at: usize) -> Option<u32> {
    let mut n = 0;
    for &c in &b[at..at + N] {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (c - b'0') as u32;
    }
    Some(n)
}

/// `YYYY-MM-DD?HH:MM:SS` at the start of `b`, `?` being `sep`: the year, the day number and
/// the second of that day, when every field is in range and the date exists; `None` for
/// anything else (for jiff to read, or refuse with its reason). Call event times and dialers'
/// local times are read with it where jiff's general parsers cost a few percent of decoding.
pub fn civil_prefix(b: &[u8], sep: u8) -> Option<(i64, i64, u32)> {
    civil_prefix_memo(b, sep, &mut DateMemo::default())
}

/// [`civil_prefix`], the date read through `memo`: records come in time order, mostly, so
/// most share the date of the one before (the date's check that it exists — to a day number
/// and back — was most of reading a call event's time).
pub fn civil_prefix_memo(b: &[u8], sep: u8, memo: &mut DateMemo) -> Option<(i64, i64, u32)> {
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != sep
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, day) = memo.date(&b[..10])?;
    let (h, mi, sec) = (
        digits::<2>(b, 11)?,
        digits::<2>(b, 14)?,
        digits::<2>(b, 17)?,
    );
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    Some((y, day, h * 3600 + mi * 60 + sec))
}

/// The last date [`civil_prefix_memo`] read that exists (`YYYY-MM-DD`), with its year and day
/// number.
#[derive(Debug, Clone, Default)]
pub struct DateMemo {
    text: [u8; 10],
    year: i64,
    day: i64,
}

impl DateMemo {
    /// The year and day number of `d` (`YYYY-MM-DD`, the dashes checked by the caller), when
    /// the date exists.
    #[inline]
    fn date(&mut self, d: &[u8]) -> Option<(i64, i64)> {
        // A memo never read holds no date: its text has no dashes, `d`'s has.
        if d == self.text {
            return Some((self.year, self.day));
        }
        let (y, mo, dd) = (
            digits::<4>(d, 0)? as i64,
            digits::<2>(d, 5)?,
            digits::<2>(d, 8)?,
        );
        if !(1..=12).contains(&mo) || dd == 0 {
            return None;
        }
        let day = days_from_civil(y, mo, dd);
        if civil_from_days(day) != (y, mo, dd) {
            return None; // no such date (jiff says why)
        }
        self.text.copy_from_slice(d);
        (self.year, self.day) = (y, day);
        Some((y, day))
    }
}

/// Civil date (year, month 1–12, day 1–31) of a day number (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Day number of a civil date (inverse of [`civil_from_days`]).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The instant of local midnight starting `day` in `tz` (the earliest instant whose local date is
/// `day`; on a day that starts in a DST gap, the first instant after the gap).
pub fn start_of_local_day(day: i32, tz: &TimeZone) -> Ts {
    let (y, m, d) = civil_from_days(day as i64);
    let date = jiff::civil::Date::new(y as i16, m as i8, d as i8);
    match date.and_then(|dt| dt.to_zoned(tz.clone())) {
        Ok(z) => Ts::from_jiff(z.timestamp()),
        Err(_) => Ts(day as i64 * NANOS_PER_DAY),
    }
}

/// The instant local time `sec` (seconds after midnight) of `day` begins in `tz`; a local time
/// that a DST gap skips maps to the instant after the gap.
pub fn local_instant(day: i32, sec: u32, tz: &TimeZone) -> Ts {
    let (y, m, d) = civil_from_days(day as i64);
    let (h, mi, s) = ((sec / 3600) as i8, (sec / 60 % 60) as i8, (sec % 60) as i8);
    match jiff::civil::DateTime::new(y as i16, m as i8, d as i8, h, mi, s, 0)
        .and_then(|dt| dt.to_zoned(tz.clone()))
    {
        Ok(z) => Ts::from_jiff(z.timestamp()),
        Err(_) => Ts((day as i64 * 86_400 + sec as i64) * NANOS_PER_SEC),
    }
}

/// Formats a day number as `YYYY-MM-DD`.
pub fn format_day(day: i32) -> String {
    let (y, m, d) = civil_from_days(day as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for z in [-800_000i64, -1, 0, 1, 59, 60, 20_000, 20_454, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2026, 11, 1), 20_758);
    }

    #[test]
    fn rfc3339_matches_jiff() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..200_000i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Across 1677..2262, with whole seconds, milliseconds, microseconds and arbitrary
            // nanoseconds.
            let mut t = (x as i64) % (i64::MAX - 1);
            match i % 4 {
                0 => t -= t.rem_euclid(NANOS_PER_SEC),
                1 => t -= t.rem_euclid(1_000_000),
                2 => t -= t.rem_euclid(1_000),
                _ => {}
            }
            let ts = Ts(t);
            assert_eq!(ts.rfc3339(), ts.to_jiff().to_string(), "{t}");
        }
        assert_eq!(Ts(0).rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(Ts(-1).rfc3339(), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn weekday_and_week() {
        // 2026-11-23 is a Monday.
        let day = days_from_civil(2026, 11, 23) as i32;
        let l = Local::of(Ts(day as i64 * NANOS_PER_DAY), &TimeZone::UTC);
        assert_eq!(l.weekday, 0);
        assert_eq!(week_of_day(day), week_of_day(day + 6));
        assert_ne!(week_of_day(day), week_of_day(day - 1));
        assert_eq!(month_of_day(day), 2026 * 12 + 10);
        assert_eq!(
            first_day_of_month(2026 * 12 + 10),
            days_from_civil(2026, 11, 1) as i32
        );
    }

    /// A span's answers are `Local::of`'s, for instants in time order and out of it, at
    /// transitions, a nanosecond either side of them and far from them, in zones with and
    /// without daylight saving (half-hour shifts, historical offsets of odd seconds) and UTC.
    /// (It fails when a span keeps its offset across a transition: with the span's ends checked
    /// off, or its ends one nanosecond wider.)
    #[test]
    fn offset_spans_answer_as_the_zone_does() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for name in [
            "America/New_York",
            "Asia/Shanghai",
            "Europe/London",
            "Australia/Lord_Howe",
            "Asia/Kolkata",
            "UTC",
        ] {
            let tz = TimeZone::get(name).unwrap();
            // Instants around this zone's transitions, 1880 to 2060.
            let from: jiff::Timestamp = "1880-01-01T00:00:00Z".parse().unwrap();
            let mut near: Vec<i64> = tz
                .following(from)
                .take_while(|tr| tr.timestamp().as_second() < 2_840_000_000)
                .flat_map(|tr| {
                    let t = Ts::from_jiff(tr.timestamp()).0;
                    [t - 1, t, t + 1, t - NANOS_PER_SEC * 3600, t + NANOS_PER_DAY]
                })
                .collect();
            near.push(0);
            let mut span = OffsetSpan::default();
            let mut t = Ts::from_jiff(from).0;
            for i in 0..40_000 {
                t = match rnd() % 4 {
                    // On in time, by up to two days.
                    0 | 1 => t.saturating_add((rnd() % (2 * NANOS_PER_DAY as u64)) as i64),
                    // Back, as a late call.
                    2 => t.saturating_sub((rnd() % (NANOS_PER_DAY as u64)) as i64),
                    // To an instant at or near a transition.
                    _ => near[rnd() as usize % near.len()],
                };
                assert_eq!(
                    span.local(Ts(t), &tz),
                    Local::of(Ts(t), &tz),
                    "{name}, step {i}, {}",
                    Ts(t).to_jiff()
                );
            }
        }
    }

    #[test]
    fn dst_fall_back_in_new_york() {
        let tz = TimeZone::get("America/New_York").unwrap();
        // 2026-11-01T05:30Z is 01:30 EDT (first pass), 06:30Z is 01:30 EST (second pass).
        let a: jiff::Timestamp = "2026-11-01T05:30:00Z".parse().unwrap();
        let b: jiff::Timestamp = "2026-11-01T06:30:00Z".parse().unwrap();
        let la = Local::of(Ts::from_jiff(a), &tz);
        let lb = Local::of(Ts::from_jiff(b), &tz);
        assert_eq!(la.day, lb.day);
        assert_eq!(la.sec_of_day, lb.sec_of_day);
        assert_eq!(la.offset_s, -4 * 3600);
        assert_eq!(lb.offset_s, -5 * 3600);
        let start = start_of_local_day(la.day, &tz);
        assert_eq!(start.to_string(), "2026-11-01T04:00:00Z");
    }
}
