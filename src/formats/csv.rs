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
    pub(crate) fn text(self) -> Cow<'a, str> {
        if self.doubled {
            Cow::Owned(self.raw.replace("\"\"", "\""))
        } else {
            Cow::Borrowed(self.raw)
        }
    }

    /// Whether the value is `s` (compared as written, unless a quote inside is doubled).
    pub(crate) fn is(self, s: &str) -> bool {
        if self.doubled {
            self.text() == s
        } else {
            self.raw == s
        }
    }
}

/// Calls `field` with each field of `line` and its index, in order; the number of fields. A
/// field's value is made (`Field::text`) only where it is wanted: most of a CDR row's fields
/// are not, and Asterisk's `clid` (`"""Name"" <1001>"`) made a copy of every row.
pub(crate) fn each<'a>(
    line: &'a str,
    mut field: impl FnMut(usize, Field<'a>),
) -> Result<usize, String> {
    let mut n = 0usize;
    let line = line.strip_suffix('\r').unwrap_or(line);
    let b = line.as_bytes();
    let mut i = 0;
    loop {
        if b.get(i) == Some(&b'"') {
            let start = i + 1;
            let mut j = start;
            let mut doubled = false;
            loop {
                // The next quote, found a word at a time (fields are 10 to 60 bytes).
                match memchr::memchr(b'"', &b[j..]) {
                    None => return Err(format!("field {} has no closing quote", n + 1)),
                    Some(p) if b.get(j + p + 1) == Some(&b'"') => {
                        doubled = true;
                        j += p + 2;
                    }
                    Some(p) => {
                        j += p;
                        break;
                    }
                }
            }
            field(
                n,
                Field {
                    raw: &line[start..j],
                    doubled,
                },
            );
            n += 1;
            i = j + 1;
            match b.get(i) {
                None => return Ok(n),
                Some(b',') => i += 1,
                Some(_) => return Err(format!("field {} has text after its closing quote", n)),
            }
        } else {
            let end = memchr::memchr(b',', &b[i..]).map(|p| i + p);
            let text = &line[i..end.unwrap_or(b.len())];
            if memchr::memchr(b'"', text.as_bytes()).is_some() {
                return Err(format!(
                    "field {} has a quote inside an unquoted value",
                    n + 1
                ));
            }
            field(
                n,
                Field {
                    raw: text,
                    doubled: false,
                },
            );
            n += 1;
            match end {
                None => return Ok(n),
                Some(e) => i = e + 1,
            }
        }
    }
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

    #[test]
    fn quote_round_trips() {
        for v in ["", "x", "\"Alice\" <1001>", "a,b", "\"\""] {
            let mut s = String::new();
            quote(&mut s, v);
            assert_eq!(fields(&s).unwrap(), [v]);
        }
    }
}
