//! CSV records, read the way the `csv` crate reads them (RFC 4180 quoting with doubled
//! quotes, `\r`, `\n` or `\r\n` ending a record, blank lines skipped, a byte-order mark
//! dropped at the start of the file) but without copying: a line with no quote in it,
//! nearly every line of most files, is split on the delimiter where it lies in the read
//! buffer. A line with a quote goes through `csv_core`, whose fields are unescaped.

use std::io::{self, Read};

use csv_core::ReadRecordResult;

use super::window::Window;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads records from `input`, a buffer at a time.
pub struct Records<R> {
    window: Window<R>,
    /// Whether a byte-order mark may still come (only at the start of the input).
    at_start: bool,
    delimiter: u8,
    quoted: csv_core::Reader,
    /// A quoted record's fields, unescaped, and where each ends.
    unescaped: Vec<u8>,
    ends: Vec<usize>,
    /// The current record's fields as ranges: of `buf` (a plain line) or of `unescaped`.
    bounds: Vec<(usize, usize)>,
    in_unescaped: bool,
}

/// One record, borrowed from the reader until the next.
pub struct Record<'a> {
    bytes: &'a [u8],
    bounds: &'a [(usize, usize)],
    /// The record's bytes as text, from where its first field starts, when they are
    /// valid UTF-8 (checked once instead of field by field).
    text: Option<(usize, &'a str)>,
    /// The input offset of the record's first byte.
    pub start: u64,
}

impl Record<'_> {
    /// How many fields it has.
    pub fn field_count(&self) -> usize {
        self.bounds.len()
    }

    /// Field `i`, as raw bytes.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.bounds.get(i).map(|&(start, end)| &self.bytes[start..end])
    }

    /// Field `i` as text; `None` when it is not valid UTF-8 (or there is no such field).
    pub fn get_str(&self, i: usize) -> Option<&str> {
        let &(start, end) = self.bounds.get(i)?;
        // The record's text slices where a field starts and ends on a character boundary;
        // a field that does not (an empty field of a quoted record, unescaped next to a
        // multi-byte character) is checked by itself.
        self.text
            .and_then(|(base, text)| text.get(start - base..end - base))
            .or_else(|| std::str::from_utf8(&self.bytes[start..end]).ok())
    }
}

impl<R: Read> Records<R> {
    /// A reader of `input` (whose first byte is offset `offset`) with a read buffer of
    /// `capacity` bytes, grown for longer records.
    pub fn new(input: R, delimiter: u8, capacity: usize, offset: u64) -> Records<R> {
        Records {
            window: Window::new(input, capacity, offset),
            at_start: offset == 0,
            delimiter,
            quoted: csv_core::ReaderBuilder::new().delimiter(delimiter).build(),
            unescaped: Vec::new(),
            ends: Vec::new(),
            bounds: Vec::new(),
            in_unescaped: false,
        }
    }

    /// The input itself, to seek it; call [`Records::restart`] after.
    pub fn input_mut(&mut self) -> &mut R {
        &mut self.window.input
    }

    /// Forgets what was buffered: the input now stands at `offset`.
    pub fn restart(&mut self, offset: u64) {
        self.window.restart(offset);
        self.at_start = offset == 0;
    }

    /// The input offset of the next unread byte.
    pub fn position(&self) -> u64 {
        self.window.position()
    }

    /// The next record, or `None` at the end of the input.
    pub fn next_record(&mut self) -> io::Result<Option<Record<'_>>> {
        let Some(start) = self.read_next()? else {
            return Ok(None);
        };
        let bytes = if self.in_unescaped {
            &self.unescaped[..]
        } else {
            &self.window.buf[..self.window.len]
        };
        let (first, last) = match (self.bounds.first(), self.bounds.last()) {
            (Some(first), Some(last)) => (first.0, last.1),
            _ => (0, 0),
        };
        let text = std::str::from_utf8(&bytes[first..last])
            .ok()
            .map(|text| (first, text));
        Ok(Some(Record {
            bytes,
            bounds: &self.bounds,
            text,
            start,
        }))
    }

    /// Reads the next record into `bounds`; returns where it starts.
    fn read_next(&mut self) -> io::Result<Option<u64>> {
        loop {
            if self.at_start {
                if self.window.len - self.window.pos < BOM.len() && !self.window.eof {
                    self.window.fill()?;
                    continue;
                }
                if self.window.unread().starts_with(BOM) {
                    self.window.pos += BOM.len();
                }
                self.at_start = false;
            }
            while self.window.pos < self.window.len
                && matches!(self.window.buf[self.window.pos], b'\n' | b'\r')
            {
                self.window.pos += 1;
            }
            if self.window.pos == self.window.len {
                if self.window.eof {
                    return Ok(None);
                }
                self.window.fill()?;
                continue;
            }
            let rest = self.window.unread();
            let line_len = match memchr::memchr2(b'\n', b'\r', rest) {
                Some(n) => n,
                None if !self.window.eof => {
                    self.window.fill()?;
                    continue;
                }
                None => rest.len(),
            };
            let start = self.window.position();
            if memchr::memchr(b'"', &rest[..line_len]).is_some() {
                return Ok(self.read_quoted()?.then_some(start));
            }
            self.split_line(line_len);
            self.window.pos += line_len;
            return Ok(Some(start));
        }
    }

    /// Splits the `line_len` bytes at `pos` on the delimiter.
    fn split_line(&mut self, line_len: usize) {
        self.in_unescaped = false;
        self.bounds.clear();
        let mut field_start = self.window.pos;
        let end = self.window.pos + line_len;
        for at in memchr::memchr_iter(self.delimiter, &self.window.buf[self.window.pos..end]) {
            self.bounds.push((field_start, self.window.pos + at));
            field_start = self.window.pos + at + 1;
        }
        self.bounds.push((field_start, end));
    }

    /// Reads the record at `pos`, which has a quote, through `csv_core`; refills restart
    /// it from its first byte.
    fn read_quoted(&mut self) -> io::Result<bool> {
        'record: loop {
            self.quoted.reset();
            // A fresh parser drops a byte-order mark; a blank line first (which it skips)
            // keeps one that starts a record here.
            let _ = self.quoted.read_record(b"\n", &mut [0; 1], &mut [0; 1]);
            self.unescaped.clear();
            self.ends.clear();
            let (mut read, mut written, mut ended) = (0, 0, 0);
            loop {
                if self.unescaped.len() == written {
                    self.unescaped.resize((written * 2).max(256), 0);
                }
                if self.ends.len() == ended {
                    self.ends.resize((ended * 2).max(16), 0);
                }
                let input = if self.window.eof && self.window.pos + read == self.window.len {
                    &[][..]
                } else {
                    &self.window.buf[self.window.pos + read..self.window.len]
                };
                let (result, nin, nout, nend) =
                    self.quoted
                        .read_record(input, &mut self.unescaped[written..], &mut self.ends[ended..]);
                read += nin;
                written += nout;
                ended += nend;
                match result {
                    // At the end of the input, the next round tells the parser so.
                    ReadRecordResult::InputEmpty if self.window.eof => {}
                    ReadRecordResult::InputEmpty => {
                        self.window.fill()?;
                        continue 'record;
                    }
                    ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull => {}
                    ReadRecordResult::Record => break,
                    ReadRecordResult::End => {
                        self.window.pos = self.window.len;
                        return Ok(false);
                    }
                }
            }
            self.window.pos += read;
            self.in_unescaped = true;
            self.bounds.clear();
            let mut field_start = 0;
            for &end in &self.ends[..ended] {
                self.bounds.push((field_start, end));
                field_start = end;
            }
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Every record as the `csv` crate reads it (configured as the CSV source used to
    /// configure it), with where it starts.
    fn by_csv_crate(input: &[u8], delimiter: u8) -> Vec<Vec<Vec<u8>>> {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(input);
        let mut records = Vec::new();
        let mut record = csv::ByteRecord::new();
        while reader.read_byte_record(&mut record).expect("csv crate") {
            records.push(record.iter().map(<[u8]>::to_vec).collect());
        }
        records
    }

    fn by_records(input: &[u8], delimiter: u8, capacity: usize) -> Vec<(Vec<Vec<u8>>, u64)> {
        let mut reader = Records::new(input, delimiter, capacity, 0);
        let mut records = Vec::new();
        while let Some(record) = reader.next_record().expect("records") {
            for i in 0..record.field_count() {
                let bytes = record.get(i).unwrap_or_default();
                assert_eq!(
                    record.get_str(i),
                    std::str::from_utf8(bytes).ok(),
                    "field {i} as text"
                );
            }
            let fields = (0..record.field_count())
                .map(|i| record.get(i).unwrap_or_default().to_vec())
                .collect();
            records.push((fields, record.start));
        }
        records
    }

    /// Bytes that make every kind of CSV: fields, delimiters, quotes, line ends.
    fn csv_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"a".to_vec()),
            Just(b"bc".to_vec()),
            Just(b",".to_vec()),
            Just(b";".to_vec()),
            Just(b"\"".to_vec()),
            Just(b"\"\"".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(BOM.to_vec()),
            Just("é".as_bytes().to_vec()),
            Just(b" ".to_vec()),
        ];
        proptest::collection::vec(piece, 0..60).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever the bytes and however small the buffer, the records and their fields
        /// are the `csv` crate's, and each record's start is where re-reading from it
        /// gives the same record again.
        #[test]
        fn records_are_the_csv_crates(
            input in csv_bytes(),
            capacity in prop_oneof![Just(1usize), Just(7), Just(4096)],
            delimiter in prop_oneof![Just(b','), Just(b';'), Just(0xa9u8)],
        ) {
            let ours = by_records(&input, delimiter, capacity);
            let fields: Vec<Vec<Vec<u8>>> = ours.iter().map(|(f, _)| f.clone()).collect();
            prop_assert_eq!(&fields, &by_csv_crate(&input, delimiter));
            for (fields, start) in &ours {
                let mut again = Records::new(&input[*start as usize..], delimiter, capacity, *start);
                let record = again.next_record().expect("read again").expect("a record");
                let reread: Vec<Vec<u8>> =
                    (0..record.field_count()).map(|i| record.get(i).unwrap_or_default().to_vec()).collect();
                prop_assert_eq!(&reread, fields);
                prop_assert_eq!(record.start, *start);
            }
        }
    }

    #[test]
    fn a_plain_line_is_split_in_place_and_a_quoted_one_unescaped() {
        let input = b"id,name\r\n1,\"a, \"\"b\"\"\nc\"\n\n2,x";
        let records = by_records(input, b',', 8);
        assert_eq!(
            records,
            vec![
                (vec![b"id".to_vec(), b"name".to_vec()], 0),
                (vec![b"1".to_vec(), b"a, \"b\"\nc".to_vec()], 9),
                (vec![b"2".to_vec(), b"x".to_vec()], 25),
            ]
        );
    }

    #[test]
    fn an_empty_field_inside_a_character_of_the_unescaped_record_is_text() {
        // Unescaped back to back, E2 | (empty) | A9 A9 read as one character, U+2A69.
        let input = b"\"\xE2\",\"\",\"\xA9\xA9\"\n";
        let mut reader = Records::new(&input[..], b',', 64, 0);
        let record = reader.next_record().expect("read").expect("a record");
        assert_eq!(record.get_str(1), Some(""));
        assert_eq!(record.get_str(0), None);
    }

    #[test]
    fn a_byte_order_mark_is_dropped_only_at_the_start() {
        let input = b"\xEF\xBB\xBFa\n\xEF\xBB\xBF\"";
        let records = by_records(input, b',', 4096);
        assert_eq!(
            records,
            vec![(vec![b"a".to_vec()], 3), (vec![b"\xEF\xBB\xBF\"".to_vec()], 5)]
        );
        assert_eq!(
            by_csv_crate(input, b','),
            vec![vec![b"a".to_vec()], vec![b"\xEF\xBB\xBF\"".to_vec()]]
        );
    }
}
