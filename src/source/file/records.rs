//! CSV records, read the way the `csv` crate reads them (RFC 4180 quoting with doubled
//! quotes, `\r`, `\n` or `\r\n` ending a record, blank lines skipped, a byte-order mark
//! dropped at the start of the file) but without copying: a line with no quote in it,
//! nearly every line of most files, is split on the delimiter where it lies in the read
//! buffer. A line with a quote goes through `csv_core`, whose fields are unescaped.
//! Lines are found and split in one pass over the buffer: each 64 bytes are classified
//! at once into a mask of their line ends, quotes and delimiters, read in order.

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
    /// The bytes last classified, where the current line's scan goes on.
    block: Block,
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
    #[inline]
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.bounds.get(i).map(|&(start, end)| &self.bytes[start..end])
    }

    /// Field `i` as text; `None` when it is not valid UTF-8 (or there is no such field).
    #[inline]
    pub fn get_str(&self, i: usize) -> Option<&str> {
        let &(start, end) = self.bounds.get(i)?;
        // The record's text slices where a field starts and ends on a character boundary;
        // a field that does not (an empty field of a quoted record, unescaped next to a
        // multi-byte character) is checked by itself.
        if let Some((base, text)) = self.text
            && let Some(field) = text.get(start - base..end - base)
        {
            return Some(field);
        }
        self.check_str(start, end)
    }

    /// The bytes `start..end` as text, checked by themselves.
    #[cold]
    #[inline(never)]
    fn check_str(&self, start: usize, end: usize) -> Option<&str> {
        std::str::from_utf8(&self.bytes[start..end]).ok()
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
            block: Block::default(),
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
        let text = simdutf8::basic::from_utf8(&bytes[first..last])
            .ok()
            .map(|text| (first, text));
        Ok(Some(Record {
            bytes,
            bounds: &self.bounds,
            text,
            start,
        }))
    }

    /// Reads more input, forgetting what was classified: the unread bytes move (and after
    /// a restart, all are new).
    fn fill(&mut self) -> io::Result<()> {
        self.block = Block::default();
        self.window.fill()
    }

    /// Reads the next record into `bounds`; returns where it starts.
    fn read_next(&mut self) -> io::Result<Option<u64>> {
        loop {
            if self.at_start {
                if self.window.len - self.window.pos < BOM.len() && !self.window.eof {
                    self.fill()?;
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
                self.fill()?;
                continue;
            }
            let start = self.window.position();
            match self.split_line() {
                Line::Plain(end) => {
                    self.window.pos = end;
                    return Ok(Some(start));
                }
                Line::Quoted => return Ok(self.read_quoted()?.then_some(start)),
                Line::Unended => self.fill()?,
            }
        }
    }

    /// Splits the line at `pos` on the delimiter into `bounds`, a block of classified
    /// bytes at a time, unless it has a quote or does not end in the buffer.
    fn split_line(&mut self) -> Line {
        self.in_unescaped = false;
        let Records {
            window,
            delimiter,
            bounds,
            block,
            ..
        } = self;
        bounds.clear();
        let buf = &window.buf[..window.len];
        // A delimiter that is a quote or a line end is taken as that.
        let splits = !matches!(*delimiter, b'\n' | b'\r' | b'"');
        let mut field_start = window.pos;
        let mut at = field_start;
        loop {
            if at == buf.len() {
                if !window.eof {
                    return Line::Unended;
                }
                bounds.push((field_start, at));
                return Line::Plain(at);
            }
            if !(block.at <= at && at < block.at + block.len) {
                *block = Block::classify(&buf[at..], at, *delimiter);
            }
            let mut events = block.events & (!0 << (at - block.at));
            while events != 0 {
                let end = block.at + events.trailing_zeros() as usize;
                let byte = buf[end];
                if byte == *delimiter && splits {
                    bounds.push((field_start, end));
                    field_start = end + 1;
                } else if byte == b'"' {
                    return Line::Quoted;
                } else {
                    bounds.push((field_start, end));
                    return Line::Plain(end);
                }
                events &= events - 1;
            }
            at = block.at + block.len;
        }
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
                        self.fill()?;
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

/// How the line at the read position stands.
enum Line {
    /// Split into `bounds`; it ends at this index of the buffer.
    Plain(usize),
    /// It has a quote before its end: `csv_core` reads it.
    Quoted,
    /// The buffer ends before it does.
    Unended,
}

/// Up to 64 bytes of the buffer from `at`, with a bit for each (the lowest for the
/// first) set where the byte is a line end, a quote or the delimiter.
#[derive(Clone, Copy, Default)]
struct Block {
    at: usize,
    len: usize,
    events: u64,
}

impl Block {
    /// Classifies the first 64 bytes of `bytes` (all of them, if fewer), which start at
    /// buffer index `at`. Inlined: returned through memory, the block was copied with a
    /// load spanning the stores just made, which stalls.
    #[inline(always)]
    fn classify(bytes: &[u8], at: usize, delimiter: u8) -> Block {
        match bytes.first_chunk() {
            Some(chunk) => Block {
                at,
                len: 64,
                events: events(chunk, delimiter),
            },
            None => Block::classify_short(bytes, at, delimiter),
        }
    }

    /// [`Block::classify`] for fewer than 64 bytes: the end of what the buffer holds.
    #[cold]
    #[inline(never)]
    fn classify_short(bytes: &[u8], at: usize, delimiter: u8) -> Block {
        let mut chunk = [0; 64];
        chunk[..bytes.len()].copy_from_slice(bytes);
        Block {
            at,
            len: bytes.len(),
            events: events(&chunk, delimiter) & ((1 << bytes.len()) - 1),
        }
    }
}

/// Bit `i` set where byte `i` of `chunk` is `\n`, `\r`, a quote or `delimiter`. Written
/// for the compiler to compare many bytes at once where the target has vector compares
/// (SSE2 on x86_64), with no `unsafe`; then each byte's flag goes into one bit by a
/// multiplication: eight flags of 0 or 1 in the bytes of a `u64`, times
/// `0x0102_0408_1020_4080`, put byte `k`'s flag at bit `56 + k` (no two partial products
/// meet, so nothing carries).
fn events(chunk: &[u8; 64], delimiter: u8) -> u64 {
    let flags = chunk.map(|b| {
        u8::from(b == b'\n') | u8::from(b == b'\r') | u8::from(b == b'"') | u8::from(b == delimiter)
    });
    let mut events = 0;
    for (i, eight) in flags.chunks_exact(8).enumerate() {
        let word = u64::from_le_bytes(eight.try_into().unwrap_or_default());
        events |= (word.wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * i);
    }
    events
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
            // Not UTF-8: a field holding it is not text, in a short line or a long one.
            Just(b"\xff".to_vec()),
            Just(b" ".to_vec()),
            // Long enough for a line to span blocks of classified bytes (64 each).
            Just(b"defghijklmnopqrstuvwxyz0123456789".to_vec()),
        ];
        proptest::collection::vec(piece, 0..100).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever the bytes and however small the buffer, the records and their fields
        /// are the `csv` crate's, and each record's start is where re-reading from it
        /// gives the same record again.
        #[test]
        fn records_are_the_csv_crates(
            input in csv_bytes(),
            capacity in prop_oneof![Just(1usize), Just(7), Just(64), Just(100), Just(4096)],
            delimiter in prop_oneof![Just(b','), Just(b';'), Just(0xa9u8), Just(b'"')],
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
            // One reader, read again at each record's start, last first, the way
            // records are read again mid-file.
            let mut again = Records::new(io::Cursor::new(&input[..]), delimiter, capacity, 0);
            let _ = again.next_record().expect("read");
            for (fields, start) in ours.iter().rev() {
                again.input_mut().set_position(*start);
                again.restart(*start);
                let record = again.next_record().expect("read again").expect("a record");
                let reread: Vec<Vec<u8>> =
                    (0..record.field_count()).map(|i| record.get(i).unwrap_or_default().to_vec()).collect();
                prop_assert_eq!(&reread, fields);
                prop_assert_eq!(record.start, *start);
            }
        }
    }

    proptest! {
        /// A block's bits are exactly the bytes that are line ends, quotes or the
        /// delimiter (whichever byte that is), in order.
        #[test]
        fn block_events_are_the_line_ends_quotes_and_delimiters(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'"'), Just(b','), Just(0xa9u8), any::<u8>()],
                0..=80,
            ),
            delimiter in prop_oneof![Just(b','), Just(0xa9u8), Just(0u8), any::<u8>()],
        ) {
            let block = Block::classify(&bytes, 3, delimiter);
            prop_assert_eq!((block.at, block.len), (3, bytes.len().min(64)));
            let expected = bytes.iter().take(64).enumerate().fold(0u64, |events, (i, &b)| {
                let event = matches!(b, b'\n' | b'\r' | b'"') || b == delimiter;
                events | u64::from(event) << i
            });
            prop_assert_eq!(block.events, expected);
        }
    }

    #[test]
    fn line_ends_and_delimiters_at_the_edges_of_blocks_and_buffers_are_found() {
        // The first line's end, or a delimiter, falls on each byte around the first
        // block's end (byte 64) and the buffer's when it holds 64 or 65 bytes.
        for len in 58..72 {
            for ending in ["\n", "\r", "\r\n"] {
                let mut input = "x".repeat(len - 2);
                input.push_str(",y");
                input.push_str(ending);
                input.push_str(&format!("{},z{ending}\n,{ending}", "w".repeat(len)));
                for capacity in [1, 63, 64, 65, 128, 4096] {
                    let ours = by_records(input.as_bytes(), b',', capacity);
                    let fields: Vec<Vec<Vec<u8>>> = ours.iter().map(|(f, _)| f.clone()).collect();
                    assert_eq!(
                        fields,
                        by_csv_crate(input.as_bytes(), b','),
                        "{len} {ending:?} {capacity}"
                    );
                    let second = (len + ending.len()) as u64;
                    assert_eq!(ours[1].1, second, "{len} {ending:?} {capacity}");
                }
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
