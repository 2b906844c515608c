//! A bound on the length of one CSV record, shared by every reader of a
//! user's CSV (predictions here; label files, the generic `--csv` source and
//! store manifests in cxr-data).
//!
//! The `csv` crate grows its record buffer until a record ends, so a file
//! without line breaks (`--predictions /dev/zero`, a binary file given by
//! mistake) was read in full, gigabytes, before anything failed. The crate
//! has no limit of its own, so [`BoundedCsv`] sits between the file and the
//! parser, follows where records end and fails the read once one runs past
//! [`MAX_CSV_RECORD_BYTES`].

use std::io::{self, Read};

/// The longest CSV record any reader of this project accepts, in bytes: 1 MiB.
///
/// A record is one line, or several when a quoted field holds line breaks
/// (a report's text). The longest legitimate records are a few kilobytes
/// (one row of a label file, a radiology report), so this only stops input
/// that is not a CSV of these formats, after reading at most this much of it.
pub const MAX_CSV_RECORD_BYTES: usize = 1 << 20;

/// A record longer than the bound: the payload of the `io::Error` that
/// [`BoundedCsv`] returns, found again with [`record_too_long`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the record starting on line {line} is longer than {limit} bytes (MAX_CSV_RECORD_BYTES) \
     without ending: not a CSV file of this format"
)]
pub struct RecordTooLong {
    /// The 1-based line on which the record starts.
    pub line: u64,
    /// The bound that was passed.
    pub limit: usize,
}

/// Where the parser is within a record, as far as record ends go: the
/// `csv` crate's defaults (quote `"`, quotes escaped by doubling, no escape
/// character, any of `\r`, `\n`, `\r\n` ends a record). A UTF-8 byte order
/// mark is field text to the `csv` crate (readers strip it from the first
/// column name), so a quote after it opens nothing, here as there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a field: a quote here opens a quoted field.
    FieldStart,
    /// In an unquoted field: quotes are plain characters.
    Unquoted,
    /// In a quoted field: delimiters and line breaks are part of the field.
    Quoted,
    /// Just after a quote inside a quoted field: a second quote is an
    /// escaped quote, anything else closes the quoted part.
    QuoteInQuoted,
}

/// A reader that fails once a CSV record runs past a length bound.
#[derive(Debug)]
pub struct BoundedCsv<R> {
    inner: R,
    delimiter: u8,
    limit: usize,
    state: State,
    /// Bytes of the current record so far.
    record_len: usize,
    /// The line the current record started on (1-based).
    record_line: u64,
    /// The line being read (1-based).
    line: u64,
}

impl<R: Read> BoundedCsv<R> {
    /// Bounds `inner`, a CSV with `delimiter`, at [`MAX_CSV_RECORD_BYTES`].
    pub fn new(inner: R, delimiter: u8) -> Self {
        Self::with_limit(inner, delimiter, MAX_CSV_RECORD_BYTES)
    }

    /// Bounds `inner` at `limit` bytes a record (tests use small bounds).
    pub fn with_limit(inner: R, delimiter: u8, limit: usize) -> Self {
        Self {
            inner,
            delimiter,
            limit,
            state: State::FieldStart,
            record_len: 0,
            record_line: 1,
            line: 1,
        }
    }

    fn end_record(&mut self) {
        self.state = State::FieldStart;
        self.record_len = 0;
        self.record_line = self.line;
    }

    /// Follows `bytes`; `Err` when a record passes the bound.
    ///
    /// Only quotes and line breaks can change where a record ends, so the
    /// bytes between them are skipped with `memchr` (a byte-at-a-time
    /// loop cost more than the parsing it guards).
    fn scan(&mut self, bytes: &[u8]) -> Result<(), RecordTooLong> {
        let mut i = 0;
        while i < bytes.len() {
            let rest = &bytes[i..];
            let plain = match self.state {
                State::Quoted => memchr::memchr(b'"', rest),
                _ => memchr::memchr3(b'"', b'\n', b'\r', rest),
            }
            .unwrap_or(rest.len());
            if plain > 0 {
                let span = &rest[..plain];
                if self.state == State::Quoted {
                    // Line breaks inside quotes are part of the record.
                    self.line += memchr::memchr_iter(b'\n', span).count() as u64;
                } else {
                    // After plain bytes only the last one matters: a
                    // delimiter starts a field, anything else is inside one.
                    self.state = if span[plain - 1] == self.delimiter {
                        State::FieldStart
                    } else {
                        State::Unquoted
                    };
                }
                self.record_len += plain;
                self.check()?;
                i += plain;
                continue;
            }
            self.step(rest[0]);
            self.check()?;
            i += 1;
        }
        Ok(())
    }

    fn check(&self) -> Result<(), RecordTooLong> {
        if self.record_len > self.limit {
            return Err(RecordTooLong {
                line: self.record_line,
                limit: self.limit,
            });
        }
        Ok(())
    }

    /// Follows one byte that may change the state: a quote or a line break.
    fn step(&mut self, b: u8) {
        if b == b'\n' {
            self.line += 1;
        }
        let ends = b == b'\n' || b == b'\r';
        self.state = match self.state {
            State::Quoted if b == b'"' => State::QuoteInQuoted,
            State::Quoted => State::Quoted,
            State::FieldStart if b == b'"' => State::Quoted,
            State::QuoteInQuoted if b == b'"' => State::Quoted,
            _ if ends => {
                self.end_record();
                return;
            }
            _ => State::Unquoted,
        };
        self.record_len += 1;
    }
}

impl<R: Read> Read for BoundedCsv<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.scan(&buf[..n])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(n)
    }
}

/// The [`RecordTooLong`] behind a `csv` error, if that is what it is.
pub fn record_too_long(error: &csv::Error) -> Option<RecordTooLong> {
    match error.kind() {
        csv::ErrorKind::Io(e) => e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<RecordTooLong>())
            .copied(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `text` through a bound of `limit` bytes; the records, or the error.
    fn parse(text: &[u8], limit: usize) -> Result<Vec<Vec<String>>, RecordTooLong> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(BoundedCsv::with_limit(text, b',', limit));
        let mut out = Vec::new();
        for rec in rdr.records() {
            match rec {
                Ok(r) => out.push(r.iter().map(String::from).collect()),
                Err(e) => return Err(record_too_long(&e).expect("only the bound fails")),
            }
        }
        Ok(out)
    }

    #[test]
    fn records_within_the_bound_read_as_without_it() {
        let text = b"\xEF\xBB\xBF\"a\nb\",c\r\nd,\"e\"\"f\"\n\"g\"h,i\n";
        let plain: Vec<Vec<String>> = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(&text[..])
            .records()
            .map(|r| r.unwrap().iter().map(String::from).collect())
            .collect();
        // The longest record, `d,"e""f"`, is 8 bytes: a bound of 8 passes.
        assert_eq!(parse(text, 8).unwrap(), plain);
    }

    /// Gives its bytes one at a time: every state crosses a read boundary.
    struct OneByte<'a>(&'a [u8]);

    impl Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some((&b, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            buf[0] = b;
            self.0 = rest;
            Ok(1)
        }
    }

    #[test]
    fn reads_split_anywhere_find_the_same_records() {
        let text = b"id,\"r\"\"x\ny\"z\n\"a\",5\" b\r\n,\"\"\n\"q\nq\"\n";
        for limit in 1..=text.len() {
            let mut whole = BoundedCsv::with_limit(&text[..], b',', limit);
            let mut split = BoundedCsv::with_limit(OneByte(text), b',', limit);
            let a = std::io::copy(&mut whole, &mut std::io::sink()).map_err(|e| e.to_string());
            let b = std::io::copy(&mut split, &mut std::io::sink()).map_err(|e| e.to_string());
            assert_eq!(a.is_ok(), b.is_ok(), "limit {limit}: {a:?} {b:?}");
            if let (Err(a), Err(b)) = (a, b) {
                assert_eq!(a, b, "limit {limit}");
            }
        }
    }

    #[test]
    fn a_long_line_fails_at_the_bound_naming_its_line() {
        let mut text = b"id,score\nx,1\n".to_vec();
        text.extend(std::iter::repeat_n(b'0', 100));
        assert_eq!(parse(&text, 50), Err(RecordTooLong { line: 3, limit: 50 }));
    }

    #[test]
    fn line_breaks_inside_quotes_do_not_end_a_record() {
        // An unclosed quote followed by endless empty lines is one record.
        let mut text = b"id\n\"".to_vec();
        text.extend(std::iter::repeat_n(b'\n', 100));
        assert_eq!(parse(&text, 50), Err(RecordTooLong { line: 2, limit: 50 }));
    }

    #[test]
    fn a_quote_inside_an_unquoted_field_is_a_plain_character() {
        // `5" nodule` opens no quoted field, so each line is its own record.
        let line = b"a,5\" nodule\n";
        let text: Vec<u8> = line.repeat(20);
        assert_eq!(parse(&text, line.len()).unwrap().len(), 20);
    }
}
