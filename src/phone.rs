//! Phone number normalisation to E.164, with a fast path.
//!
//! `phonenumber::parse` + `is_valid` costs several microseconds a number (its regexes go through
//! a shared, locked cache keyed by pattern text). Dialer events repeat numbers, so results are
//! cached by the number with formatting stripped; and numbers already in international form
//! (`+`, digits, and spaces, dashes, dots or parentheses) are validated here directly against the
//! same libphonenumber metadata, with the same rules as `phonenumber::is_valid`, using regexes
//! compiled once. Anything else takes the library's full parser. A test checks that both paths
//! agree on every example number in the metadata and on random digit strings.
//!
//! Keys and results that are digits (with a leading `+`) — nearly all of them — are cached
//! packed into 8 bytes each ([`pack`], [`pack_e164`]): a cache of strings took 48 bytes an
//! entry, and with hundreds of thousands of numbers each lookup missed the processor's cache.

use crate::engine::event::{digits_value, pack_e164, unpack_e164};
use phonenumber::metadata::{Metadata, DATABASE};
use regex::Regex;
use std::collections::HashMap;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
const CACHE_MAX: usize = 1 << 20;

/// A descriptor compiled for matching: possible lengths and the national number pattern,
/// anchored at the start as libphonenumber's `is_match` does.
struct Desc {
    lengths: Vec<u16>,
    re: Regex,
}

impl Desc {
    fn of(d: &phonenumber::metadata::Descriptor) -> Option<Desc> {
        let re = anchored(d.national_number().as_str())?;
        Some(Desc {
            lengths: d.possible_length().to_vec(),
            re,
        })
    }
    fn is_match(&self, v: &str) -> bool {
        (self.lengths.is_empty() || self.lengths.contains(&(v.len() as u16))) && self.re.is_match(v)
    }
}

/// One region's patterns, in the order `phonenumber::validator::number_type` tries them.
struct Region {
    /// The trunk prefix ("0", "8"…): numbers written "+cc" then this prefix go to the library,
    /// which strips it.
    national_prefix: Option<String>,
    /// The library's trunk-prefix pattern, for the same purpose.
    prefix_for_parsing: Option<Regex>,
    leading: Option<Regex>,
    general: Desc,
    types: Vec<Desc>,
}

impl Region {
    fn of(m: &Metadata) -> Option<Region> {
        let d = m.descriptors();
        let general = Desc::of(d.general())?;
        let types = [
            d.premium_rate(),
            d.toll_free(),
            d.shared_cost(),
            d.voip(),
            d.personal_number(),
            d.pager(),
            d.uan(),
            d.voicemail(),
            d.fixed_line(),
            d.mobile(),
        ]
        .into_iter()
        .flatten()
        .map(Desc::of)
        .collect::<Option<Vec<_>>>()?;
        let leading = match m.leading_digits() {
            Some(r) => Some(anchored(r.as_str())?),
            None => None,
        };
        let prefix_for_parsing = match m.national_prefix_for_parsing() {
            Some(r) => Some(anchored(r.as_str())?),
            None => None,
        };
        Some(Region {
            national_prefix: m.national_prefix().map(str::to_owned),
            prefix_for_parsing,
            leading,
            general,
            types,
        })
    }

    /// `number_type(meta, national) != Unknown`.
    fn valid(&self, national: &str) -> bool {
        self.general.is_match(national) && self.types.iter().any(|d| d.is_match(national))
    }
}

/// Normalises numbers; owns the caches.
pub struct PhoneNormaliser {
    region: phonenumber::country::Id,
    /// Results by packed key ([`pack`]): 0 for no valid number, else [`pack_e164`].
    packed: Map<u64, u64>,
    /// Results of keys or numbers that do not pack.
    cache: Map<compact_str::CompactString, Option<compact_str::CompactString>>,
    /// Country calling code → its regions' compiled patterns (`None`: unknown code or a pattern
    /// this engine cannot compile, so the slow path decides).
    codes: Map<u16, Option<Vec<Region>>>,
    /// The default region's code and dialling prefix (`Some(None)`: not usable, slow path).
    home: Option<Option<Home>>,
    key: String,
}

impl PhoneNormaliser {
    /// A normaliser reading national formats in `region`.
    pub fn new(region: phonenumber::country::Id) -> PhoneNormaliser {
        PhoneNormaliser {
            region,
            packed: Map::default(),
            cache: Map::default(),
            codes: Map::default(),
            home: None,
            key: String::new(),
        }
    }

    /// The E.164 form of `raw`, or `None` when it is not a valid number.
    pub fn normalise(&mut self, raw: &str) -> Option<compact_str::CompactString> {
        // Most numbers arrive without formatting: their key is `raw` itself, looked up as is.
        let plain = raw.bytes().all(|b| b.is_ascii_digit() || b == b'+');
        if !plain {
            canonical_key(raw, &mut self.key);
        }
        let packed = pack(if plain { raw } else { &self.key });
        if let Some(k) = packed {
            if let Some(&v) = self.packed.get(&k) {
                return unpack_e164(v);
            }
        }
        if plain {
            canonical_key(raw, &mut self.key);
        }
        if packed.is_none() {
            if let Some(hit) = self.cache.get(self.key.as_str()) {
                return hit.clone();
            }
        }
        let out = match self.fast(raw) {
            Some(r) => r,
            None => slow(self.region, raw),
        }
        .map(compact_str::CompactString::from);
        let v = match &out {
            None => Some(0),
            Some(e) => pack_e164(e),
        };
        match (packed, v) {
            (Some(k), Some(v)) => {
                if self.packed.len() >= CACHE_MAX {
                    self.packed.clear();
                }
                self.packed.insert(k, v);
            }
            _ => {
                if self.cache.len() >= CACHE_MAX {
                    self.cache.clear();
                }
                self.cache.insert(self.key.as_str().into(), out.clone());
            }
        }
        out
    }

    /// `Some(result)` when the fast path can decide exactly; `None` to defer to the full parser.
    fn fast(&mut self, raw: &str) -> Option<Option<String>> {
        // "(0)" trunk prefixes and anything but digits after the formatting is stripped go to
        // the full parser.
        if raw.contains("(0") {
            return None;
        }
        let key = std::mem::take(&mut self.key);
        let out = match key.strip_prefix('+') {
            Some(digits) => self.fast_international(digits),
            None => self.fast_national(&key),
        };
        self.key = key;
        out
    }

    /// `+` then digits: the country code is the first 1 to 3 digits that name one.
    fn fast_international(&mut self, digits: &str) -> Option<Option<String>> {
        if !digits.bytes().all(|b| b.is_ascii_digit())
            || !(8..=17).contains(&digits.len())
            || digits.starts_with('0')
        {
            return None;
        }
        for cc_len in 1..=3 {
            let code: u16 = digits[..cc_len].parse().ok()?;
            if DATABASE.region(&code).is_none() {
                continue;
            }
            return self.fast_valid(code, &digits[cc_len..], digits);
        }
        None
    }

    /// Digits in the national format of the default region. The library's parser would first
    /// strip an international dialling prefix, a leading country code or a trunk prefix; numbers
    /// that start with any of those go to it. What is left is the national number as written.
    fn fast_national(&mut self, digits: &str) -> Option<Option<String>> {
        if !digits.bytes().all(|b| b.is_ascii_digit())
            || !(4..=15).contains(&digits.len())
            || digits.starts_with('0')
        {
            return None;
        }
        let home = self
            .home
            .get_or_insert_with(|| Home::of(self.region))
            .as_ref()?;
        if digits.starts_with(home.code_text.as_str())
            || home.idd.as_ref().is_some_and(|re| re.is_match(digits))
        {
            return None;
        }
        let code = home.code;
        let e164 = format!("{code}{digits}");
        self.fast_valid(code, digits, &e164)
    }

    /// Whether `national` is valid under country code `code`, as `phonenumber::is_valid` decides;
    /// `None` when a trunk prefix might be stripped by the library first.
    fn fast_valid(&mut self, code: u16, national: &str, e164: &str) -> Option<Option<String>> {
        let regions = self
            .codes
            .entry(code)
            .or_insert_with(|| compile_code(code))
            .as_ref()?;
        if regions.iter().any(|r| {
            r.national_prefix
                .as_deref()
                .is_some_and(|p| national.starts_with(p))
                || r.prefix_for_parsing
                    .as_ref()
                    .is_some_and(|re| re.is_match(national))
        }) {
            return None;
        }
        // Mirror `validator::source_for` then `number_type`.
        let meta = if regions.len() == 1 {
            &regions[0]
        } else {
            match regions.iter().find(|r| {
                r.leading.as_ref().is_some_and(|l| l.is_match(national)) || r.valid(national)
            }) {
                Some(r) => r,
                None => return Some(None),
            }
        };
        Some(meta.valid(national).then(|| format!("+{e164}")))
    }
}

/// The default region's country code and international dialling prefix, for national input.
struct Home {
    code: u16,
    code_text: String,
    idd: Option<Regex>,
}

impl Home {
    fn of(region: phonenumber::country::Id) -> Option<Home> {
        let meta = DATABASE.by_id(region.as_ref())?;
        let idd = match meta.international_prefix() {
            Some(r) => Some(anchored(r.as_str())?),
            None => None,
        };
        Some(Home {
            code: meta.country_code(),
            code_text: meta.country_code().to_string(),
            idd,
        })
    }
}

/// The metadata's patterns are written with insignificant whitespace, as the library compiles
/// them; matches must start at the beginning, as its `is_match` requires.
fn anchored(pattern: &str) -> Option<Regex> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})"))
        .ignore_whitespace(true)
        .build()
        .ok()
}

fn compile_code(code: u16) -> Option<Vec<Region>> {
    let ids = DATABASE.region(&code)?;
    ids.iter()
        .map(|id| {
            let meta = if *id == "001" {
                DATABASE.by_code(&code)?.into_iter().next()?
            } else {
                DATABASE.by_id(*id)?
            };
            Region::of(meta)
        })
        .collect()
}

/// The cache key: `raw` without the formatting characters dialers add (spaces, dashes, dots,
/// parentheses, no-break spaces), so "+86 138 1234 5678" and "+8613812345678" share an entry.
fn canonical_key(raw: &str, key: &mut String) {
    key.clear();
    key.extend(
        raw.chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{a0}')),
    );
}

/// A cache key of digits, optionally after one leading `+`, in 8 bytes: the digits' value, their
/// count (leading zeros count) and the `+`. `None` for anything else or more than 17 digits.
fn pack(key: &str) -> Option<u64> {
    let (plus, digits) = match key.strip_prefix('+') {
        Some(d) => (1, d),
        None => (0, key),
    };
    Some(digits_value(digits)? << 6 | (digits.len() as u64) << 1 | plus)
}

/// The full parser: `phonenumber::parse`, then `is_valid`. International input (leading `+`) is
/// parsed with no default region: given one, the library applies that region's national-prefix
/// rules to foreign numbers too (with CN, "+95 1234567" came out as "+9567").
pub fn slow(region: phonenumber::country::Id, raw: &str) -> Option<String> {
    let region = (!raw.trim_start().starts_with('+')).then_some(region);
    phonenumber::parse(region, raw)
        .ok()
        .filter(phonenumber::is_valid)
        .map(|n| n.format().mode(phonenumber::Mode::E164).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::Rng;

    fn examples() -> Vec<String> {
        let mut out = Vec::new();
        for m in DATABASE.iter() {
            let d = m.descriptors();
            for desc in [
                Some(d.general()),
                d.fixed_line(),
                d.mobile(),
                d.toll_free(),
                d.premium_rate(),
                d.voip(),
                d.uan(),
                d.pager(),
            ]
            .into_iter()
            .flatten()
            {
                if let Some(e) = desc.example() {
                    out.push(format!("+{}{}", m.country_code(), e));
                    out.push(format!("+{} {}", m.country_code(), e));
                }
            }
        }
        out
    }

    #[test]
    fn packed_keys_and_numbers_round_trip_and_never_collide() {
        let keys = [
            "0",
            "00",
            "1",
            "01",
            "+1",
            "+01",
            "13812345678",
            "013812345678",
            "+8613812345678",
            "99999999999999999",
            "+99999999999999999",
            "00000000000000000",
        ];
        let packed: Vec<u64> = keys.iter().map(|k| pack(k).unwrap()).collect();
        let distinct: std::collections::HashSet<u64> = packed.iter().copied().collect();
        assert_eq!(distinct.len(), keys.len(), "{packed:?}");
        for bad in ["", "+", "++1", "1+2", "12a", "123456789012345678", "+１２"] {
            assert_eq!(pack(bad), None, "{bad}");
        }
        for e in [
            "+1",
            "+10",
            "+8613812345678",
            "+99999999999999999",
            "+100000000000000",
        ] {
            let v = pack_e164(e).unwrap();
            assert_ne!(v, 0);
            assert_eq!(unpack_e164(v).as_deref(), Some(e));
        }
        assert_eq!(unpack_e164(0), None);
        for bad in ["1", "+", "+1a", "+123456789012345678"] {
            assert_eq!(pack_e164(bad), None, "{bad}");
        }
    }

    /// Answers from the cache, packed or not, are the answers computed afresh.
    #[test]
    fn cached_answers_are_the_computed_ones() {
        let mut rng = Rng::new(5);
        let mut inputs = examples();
        for i in 0..3_000 {
            let len = 4 + rng.below(16) as usize;
            let mut s: String = (0..len)
                .map(|_| char::from(b'0' + rng.below(10) as u8))
                .collect();
            match i % 4 {
                0 => s.insert(0, '+'),
                1 if s.len() > 7 => {
                    s.insert(3, ' ');
                    s.insert(8, '-');
                }
                2 => s.push('x'),
                _ => {}
            }
            inputs.push(s);
        }
        let region = phonenumber::country::Id::CN;
        let mut cached = PhoneNormaliser::new(region);
        // Computed without a cache: the fast path (its compiled patterns kept), else the
        // library.
        let mut uncached = PhoneNormaliser::new(region);
        for round in 0..2 {
            for s in &inputs {
                canonical_key(s, &mut uncached.key);
                let fresh = uncached
                    .fast(s)
                    .unwrap_or_else(|| slow(region, s))
                    .map(compact_str::CompactString::from);
                assert_eq!(cached.normalise(s), fresh, "{s}, round {round}");
            }
        }
        assert!(!cached.packed.is_empty() && !cached.cache.is_empty());
    }

    #[test]
    fn fast_path_agrees_with_the_full_parser() {
        let mut rng = Rng::new(11);
        let mut inputs = examples();
        assert!(inputs.len() > 400, "metadata examples: {}", inputs.len());
        for _ in 0..6_000 {
            let len = 8 + rng.below(9) as usize;
            let s: String = (0..len)
                .map(|i| {
                    char::from(
                        b'0' + if i == 0 {
                            1 + rng.below(9)
                        } else {
                            rng.below(10)
                        } as u8,
                    )
                })
                .collect();
            inputs.push(format!("+{s}"));
        }
        // National formats: every example number written without its country code, random
        // digit strings, mainland mobile-like numbers, and the same with separators.
        for m in DATABASE.iter() {
            let d = m.descriptors();
            for desc in [d.fixed_line(), d.mobile(), d.toll_free(), d.voip()]
                .into_iter()
                .flatten()
            {
                if let Some(e) = desc.example() {
                    inputs.push(e.to_owned());
                }
            }
        }
        for i in 0..6_000 {
            let len = if i % 2 == 0 {
                11
            } else {
                4 + rng.below(12) as usize
            };
            let mut s: String = (0..len)
                .map(|_| char::from(b'0' + rng.below(10) as u8))
                .collect();
            if i % 2 == 0 {
                s.replace_range(..2, &format!("1{}", 3 + rng.below(7)));
            }
            if i % 5 == 0 && s.len() > 7 {
                s.insert(3, ' ');
                s.insert(8, '-');
            }
            inputs.push(s);
        }
        let mut decided = 0;
        for region in [
            phonenumber::country::Id::CN,
            phonenumber::country::Id::US,
            phonenumber::country::Id::GB,
            phonenumber::country::Id::IN,
            phonenumber::country::Id::ID,
            phonenumber::country::Id::PH,
        ] {
            let mut n = PhoneNormaliser::new(region);
            for s in &inputs {
                canonical_key(s, &mut n.key);
                if let Some(fast) = n.fast(s) {
                    decided += 1;
                    assert_eq!(fast, slow(region, s), "{s} in {region:?}");
                }
            }
        }
        assert!(
            decided > 3 * inputs.len(),
            "the fast path decided only {decided} of {}",
            6 * inputs.len()
        );
    }
}
