//! One CSV record (a line) split into fields: comma separated, a field optionally in double
//! quotes with `""` for a quote inside (what Asterisk's `cdr_csv` writes, and MySQL or
//! spreadsheet exports of VICIdial tables). Quoted fields borrow from the line unless they
//! hold a doubled quote.

use std::borrow::Cow;

/// Splits `line` (without its line ending; a trailing `\r` is dropped) into `out`.
#[cfg(test)]
pub(crate) fn split<'a>(line: &'a str, out: &mut Vec<Cow<'a, str>>) -> Result<(), String> {
    out.clear();
    each(line, |_, f| out.push(f.text())).map(|_| ())
}

/// One field as written: its text between the quotes (if any), a quote inside still doubled.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field<'a> {
    raw: &'a str,
    doubled: bool,
}

impl<'a> Field<'a> {
    /// The field's value (a doubled quote made one: a copy then).
    #[inline]
    pub(crate) fn text(self) -> Cow<'a, str> {
        if self.doubled {
            undouble(self.raw)
        } else {
            Cow::Borrowed(self.raw)
        }
    }

    /// Whether the value is `s` (compared as written, unless a quote inside is doubled).
    #[inline]
    pub(crate) fn is(self, s: &str) -> bool {
        if self.doubled {
            self.text() == s
        } else {
            self.raw == s
        }
    }
}

/// A field's text with each doubled quote made one: out of line, as few fields hold one.
#[cold]
fn undouble(raw: &str) -> Cow<'_, str> {
    Cow::Owned(raw.replace("\"\"", "\""))
}

/// Calls `field` with each field of `line` and its index, in order; the number of fields. A
/// field's value is made (`Field::text`) only where it is wanted: most of a CDR row's fields
/// are not, and Asterisk's `clid` (`"""Name"" <1001>"`) made a copy of every row.
pub(crate) fn each<'a>(
    line: &'a str,
    field: impl FnMut(usize, Field<'a>),
) -> Result<usize, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    walk(line, &Marks::of(line.as_bytes()), field)
}

fn walk<'a>(
    line: &'a str,
    marks: &Marks,
    mut field: impl FnMut(usize, Field<'a>),
) -> Result<usize, String> {
    let mut n = 0usize;
    let b = line.as_bytes();
    let mut i = 0;
    loop {
        // The field, and where the next one starts (`None`: this is the last). One call of
        // `field` for both kinds, so that it is inlined.
        let (f, next) = if b.get(i) == Some(&b'"') {
            let start = i + 1;
            let mut j = start;
            let mut doubled = false;
            loop {
                match marks.next(Mark::Quote, b, j) {
                    None => return Err(format!("field {} has no closing quote", n + 1)),
                    Some(p) if b.get(p + 1) == Some(&b'"') => {
                        doubled = true;
                        j = p + 2;
                    }
                    Some(p) => {
                        j = p;
                        break;
                    }
                }
            }
            let next = match b.get(j + 1) {
                None => None,
                Some(b',') => Some(j + 2),
                Some(_) => return Err(format!("field {} has text after its closing quote", n + 1)),
            };
            let raw = &line[start..j];
            (Field { raw, doubled }, next)
        } else {
            let end = marks.next(Mark::Comma, b, i);
            let stop = end.unwrap_or(b.len());
            if marks.any(Mark::Quote, b, i, stop) {
                return Err(format!(
                    "field {} has a quote inside an unquoted value",
                    n + 1
                ));
            }
            let raw = &line[i..stop];
            (
                Field {
                    raw,
                    doubled: false,
                },
                end.map(|e| e + 1),
            )
        };
        field(n, f);
        n += 1;
        match next {
            None => return Ok(n),
            Some(at) => i = at,
        }
    }
}

/// Rows up to this many bytes have their quotes and commas indexed ([`Marks`]).
const INDEXED_BYTES: usize = 1024;

#[derive(Clone, Copy)]
enum Mark {
    Quote = 0,
    Comma = 1,
}

/// Where a row's quotes and commas are. A row is 20-odd fields of 10 to 60 bytes, and with a
/// `memchr` call per field (two for an unquoted one) reading an Asterisk row into its slots
/// took 3,900 instructions: the quotes and commas of the whole row are found first, 64 bytes
/// to a word of bits (SSE2 compares), and each field's end is then a bit search — 2,300
/// (callgrind; with `field` called from one place). Longer rows are searched a field at a
/// time. (On the stack for one row: boxing the index would allocate per row.)
#[allow(clippy::large_enum_variant)]
enum Marks {
    /// By [`Mark`]: bit `i % 64` of word `i / 64` set when byte `i` is that mark.
    Indexed([[u64; INDEXED_BYTES / 64]; 2]),
    Searched,
}

impl Marks {
    fn of(b: &[u8]) -> Marks {
        if b.len() > INDEXED_BYTES {
            return Marks::Searched;
        }
        let mut words = [[0u64; INDEXED_BYTES / 64]; 2];
        crate::codec::blocks64(b, |w, c, shift| {
            let (q, c) = marks_in(c);
            words[0][w] = q >> shift;
            words[1][w] = c >> shift;
        });
        Marks::Indexed(words)
    }

    /// Whether a `mark` is in `b[from..to]` (a search of that range alone where the row is not
    /// indexed: searching on to the next one could cross the rest of a long row per field).
    #[inline(always)]
    fn any(&self, mark: Mark, b: &[u8], from: usize, to: usize) -> bool {
        match self {
            Marks::Indexed(_) => self.next(mark, b, from).is_some_and(|at| at < to),
            Marks::Searched => self.next(mark, &b[..to], from).is_some(),
        }
    }

    /// The first `mark` at or after `from`.
    #[inline(always)]
    fn next(&self, mark: Mark, b: &[u8], from: usize) -> Option<usize> {
        match self {
            Marks::Indexed(words) => crate::codec::next_bit(&words[mark as usize], from),
            Marks::Searched => {
                let c = match mark {
                    Mark::Quote => b'"',
                    Mark::Comma => b',',
                };
                memchr::memchr(c, b.get(from..)?).map(|p| from + p)
            }
        }
    }
}

/// The quotes and the commas of 64 bytes as bits: 16 bytes per SSE2 compare where the
/// target has it (every x86-64).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
fn marks_in(c: &[u8; 64]) -> (u64, u64) {
    use safe_arch::*;
    let quote = set_splat_i8_m128i(b'"' as i8);
    let comma = set_splat_i8_m128i(b',' as i8);
    let (mut q, mut m) = (0u64, 0u64);
    for (k, part) in c.chunks_exact(16).enumerate() {
        let x = load_unaligned_m128i(part.try_into().expect("16 bytes"));
        q |= (move_mask_i8_m128i(cmp_eq_mask_i8_m128i(x, quote)) as u16 as u64) << (16 * k);
        m |= (move_mask_i8_m128i(cmp_eq_mask_i8_m128i(x, comma)) as u16 as u64) << (16 * k);
    }
    (q, m)
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn marks_in(c: &[u8; 64]) -> (u64, u64) {
    marks_in_bytes(c)
}

/// [`marks_in`] a byte at a time: targets without SSE2, and the tests' reference.
#[cfg_attr(
    all(target_arch = "x86_64", target_feature = "sse2", not(test)),
    allow(dead_code)
)]
fn marks_in_bytes(c: &[u8; 64]) -> (u64, u64) {
    let (mut q, mut m) = (0u64, 0u64);
    for (j, &x) in c.iter().enumerate() {
        q |= ((x == b'"') as u64) << j;
        m |= ((x == b',') as u64) << j;
    }
    (q, m)
}

/// Writes one field as `cdr_csv` does: in quotes, a quote doubled.
pub(crate) fn quote(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    fn fields(line: &str) -> Result<Vec<String>, String> {
        let mut v = Vec::new();
        split(line, &mut v)?;
        Ok(v.into_iter().map(|c| c.into_owned()).collect())
    }

    #[test]
    fn splits_quoted_unquoted_empty_and_doubled_quotes() {
        assert_eq!(
            fields(r#""","1001","""Alice"" <1001>",,12,"a,b""#).unwrap(),
            ["", "1001", "\"Alice\" <1001>", "", "12", "a,b"]
        );
        assert_eq!(fields("a,b,\r").unwrap(), ["a", "b", ""]);
        assert_eq!(fields("").unwrap(), [""]);
        assert!(fields(r#""open"#).is_err());
        assert!(fields(r#""a"b"#).is_err());
        assert!(fields(r#"a"b"#).is_err());
    }

    /// The indexed walk splits every row as the searched one does (fields, errors and all), at
    /// every length around the 64-byte words and the index's limit, and the SSE2 marks are the
    /// bytes' marks.
    #[test]
    fn indexed_and_searched_rows_split_alike() {
        fn fields_by(line: &str, marks: &Marks) -> Result<Vec<(String, bool)>, String> {
            let mut v = Vec::new();
            walk(line, marks, |i, f| {
                assert_eq!(i, v.len());
                v.push((f.raw.to_owned(), f.doubled));
            })?;
            Ok(v)
        }
        let mut runner = proptest::test_runner::TestRunner::default();
        let cell = proptest::sample::select(vec!["a", ",", "\"", "\"\"", "é", "12", " "]);
        let rows = proptest::collection::vec(cell, 0..400).prop_map(|c| c.concat());
        runner
            .run(&rows, |row| {
                let indexed = fields_by(&row, &Marks::of(row.as_bytes()));
                proptest::prop_assert_eq!(&indexed, &fields_by(&row, &Marks::Searched), "{}", row);
                Ok(())
            })
            .unwrap();
        for n in [0usize, 1, 63, 64, 65, 127, 128, 129, 1023, 1024, 1025, 1100] {
            let row: String = (0..n).map(|i| if i % 7 == 6 { ',' } else { 'x' }).collect();
            let quoted = format!("\"{}\"", "y".repeat(n.saturating_sub(2)));
            for r in [row, quoted] {
                let indexed = fields_by(&r, &Marks::of(r.as_bytes()));
                assert_eq!(indexed, fields_by(&r, &Marks::Searched), "{n}");
            }
        }
        let mut c = [0u8; 64];
        for (j, x) in c.iter_mut().enumerate() {
            *x = [b'"', b',', b'a', 0xff, b' '][j * 7 % 5];
        }
        assert_eq!(marks_in(&c), marks_in_bytes(&c));
    }

    #[test]
    fn quote_round_trips() {
        for v in ["", "x", "\"Alice\" <1001>", "a,b", "\"\""] {
            let mut s = String::new();
            quote(&mut s, v);
            assert_eq!(fields(&s).unwrap(), [v]);
        }
    }
}
