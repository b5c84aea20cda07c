//! Ordering rows by key within a memory budget, for backends whose input is not sorted
//! (files, later HTTP). Rows gather in memory; past the budget they are sorted and
//! spilled to a temporary file as a run, and reading merges the runs. Knows no formats.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::collections::binary_heap::PeekMut;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};

use crate::source::{Key, KeyPart, Row, SourceError, Value};

/// How many runs one merge reads at once: bounds open files and read buffers.
const FAN_IN: usize = 32;
/// Buffer for writing or reading one run.
const RUN_BUFFER: usize = 64 * 1024;
/// What a row costs beyond its vectors and strings: the row itself, allocator slack.
const ROW_OVERHEAD: usize = size_of::<Row>() + 32;

/// Collects rows in any order and gives them back ordered by key, stably: rows with
/// equal keys come back in the order they were pushed.
///
/// Rows stay in memory while their estimated size stays within the budget. Past it, the
/// buffered rows are sorted and written to an anonymous temporary file (a run). Runs are
/// merged [`FAN_IN`] at a time as they pile up, so open files stay few whatever the
/// input size, and [`SpillSorter::finish`] merges what is left while reading.
pub struct SpillSorter {
    budget: usize,
    used: usize,
    buffer: Vec<Row>,
    /// Spilled runs, oldest (earliest rows) first; levels never increase along the list.
    runs: Vec<Run>,
}

/// A sorted run on disk.
struct Run {
    file: File,
    rows: u64,
    /// How many merges produced it (0: spilled straight from memory).
    level: u32,
}

impl SpillSorter {
    /// A sorter that keeps about `memory_budget` bytes of rows in memory.
    pub fn new(memory_budget: usize) -> SpillSorter {
        SpillSorter {
            budget: memory_budget,
            used: 0,
            buffer: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// Adds a row, spilling the buffered rows to disk if the budget is exceeded.
    pub fn push(&mut self, row: Row) -> Result<(), SourceError> {
        self.used += estimated_size(&row);
        self.buffer.push(row);
        if self.used > self.budget {
            self.spill()?;
        }
        Ok(())
    }

    /// True once any row has gone to disk.
    pub fn has_spilled(&self) -> bool {
        !self.runs.is_empty()
    }

    /// Ends input: the rows in key order.
    pub fn finish(mut self) -> Result<SortedRows, SourceError> {
        sort(&mut self.buffer);
        if self.runs.is_empty() {
            return Ok(SortedRows {
                inner: Inner::Memory(self.buffer.into_iter()),
            });
        }
        // Leave room for the in-memory rows, the newest run.
        while self.runs.len() >= FAN_IN {
            let mut runs = std::mem::take(&mut self.runs).into_iter();
            loop {
                let group: Vec<Run> = runs.by_ref().take(FAN_IN).collect();
                if group.is_empty() {
                    break;
                }
                self.runs.push(merge_runs(group)?);
            }
        }
        let mut readers: Vec<RunReader> = self.runs.into_iter().map(RunReader::disk).collect();
        readers.push(RunReader::Memory(self.buffer.into_iter()));
        Ok(SortedRows {
            inner: Inner::Merge(Merger::new(readers)?),
        })
    }

    fn spill(&mut self) -> Result<(), SourceError> {
        sort(&mut self.buffer);
        let mut rows = self.buffer.drain(..);
        let run = write_run(|| Ok(rows.next()))?;
        drop(rows);
        self.used = 0;
        self.runs.push(run);
        // Merge the newest FAN_IN runs once they share a level, like a counter carrying:
        // each row is rewritten about log_FAN_IN(input / budget) times.
        while self.runs.len() >= FAN_IN {
            let start = self.runs.len() - FAN_IN;
            let level = self.runs[start].level;
            if self.runs[start..].iter().any(|r| r.level != level) {
                break;
            }
            let group = self.runs.split_off(start);
            let mut merged = merge_runs(group)?;
            merged.level = level + 1;
            self.runs.push(merged);
        }
        Ok(())
    }
}

/// Rows in key order, from memory or merged from spilled runs.
pub struct SortedRows {
    inner: Inner,
}

enum Inner {
    Memory(std::vec::IntoIter<Row>),
    Merge(Merger),
}

impl SortedRows {
    /// The next row in key order, or `None` at the end.
    pub fn next_row(&mut self) -> Result<Option<Row>, SourceError> {
        match &mut self.inner {
            Inner::Memory(rows) => Ok(rows.next()),
            Inner::Merge(merger) => merger.next(),
        }
    }

    /// Up to `page_size` (at least one) further rows, or `None` at the end.
    pub fn next_page(&mut self, page_size: usize) -> Result<Option<Vec<Row>>, SourceError> {
        let size = page_size.max(1);
        let page: Vec<Row> = match &mut self.inner {
            Inner::Memory(rows) => rows.by_ref().take(size).collect(),
            Inner::Merge(merger) => {
                let mut page = Vec::with_capacity(size.min(16 * 1024));
                while page.len() < size {
                    match merger.next()? {
                        Some(row) => page.push(row),
                        None => break,
                    }
                }
                page
            }
        };
        Ok((!page.is_empty()).then_some(page))
    }

    /// True when reading goes to disk (and so is blocking work).
    pub fn is_spilled(&self) -> bool {
        matches!(self.inner, Inner::Merge(_))
    }
}

/// Stable sort by key: equal keys keep their push order.
fn sort(rows: &mut [Row]) {
    rows.sort_by(|a, b| a.key.cmp(&b.key));
}

/// A row's approximate heap footprint in bytes.
fn estimated_size(row: &Row) -> usize {
    let key: usize = row
        .key
        .0
        .iter()
        .map(|part| match part {
            KeyPart::Int(_) => 0,
            KeyPart::Text(s) => s.capacity(),
        })
        .sum();
    let values: usize = row
        .values
        .iter()
        .map(|value| match value {
            Value::Decimal(s) | Value::Text(s) | Value::Json(s) => s.capacity(),
            Value::Bytes(b) => b.capacity(),
            Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) => 0,
        })
        .sum();
    ROW_OVERHEAD
        + row.key.0.capacity() * size_of::<KeyPart>()
        + row.values.capacity() * size_of::<Value>()
        + key
        + values
}

fn write_error(err: io::Error) -> SourceError {
    SourceError::Read(format!("cannot spill rows to a temporary file: {err}"))
}

fn read_error(err: io::Error) -> SourceError {
    SourceError::Read(format!("cannot read rows spilled to a temporary file: {err}"))
}

/// Writes the rows `next` yields (already in order) to a new temporary file.
fn write_run(mut next: impl FnMut() -> Result<Option<Row>, SourceError>) -> Result<Run, SourceError> {
    let file = tempfile::tempfile().map_err(write_error)?;
    let mut out = BufWriter::with_capacity(RUN_BUFFER, file);
    let mut rows = 0;
    while let Some(row) = next()? {
        encode_row(&mut out, &row).map_err(write_error)?;
        rows += 1;
    }
    let mut file = out.into_inner().map_err(|e| write_error(e.into_error()))?;
    file.rewind().map_err(write_error)?;
    Ok(Run { file, rows, level: 0 })
}

/// Merges consecutive runs into one (a single run is returned as is).
fn merge_runs(mut group: Vec<Run>) -> Result<Run, SourceError> {
    if group.len() == 1 {
        if let Some(run) = group.pop() {
            return Ok(run);
        }
    }
    let mut merger = Merger::new(group.into_iter().map(RunReader::disk).collect())?;
    write_run(|| merger.next())
}

/// A source of sorted rows feeding a merge.
enum RunReader {
    Disk { input: BufReader<File>, remaining: u64 },
    Memory(std::vec::IntoIter<Row>),
}

impl RunReader {
    fn disk(run: Run) -> RunReader {
        RunReader::Disk {
            input: BufReader::with_capacity(RUN_BUFFER, run.file),
            remaining: run.rows,
        }
    }

    fn next(&mut self) -> Result<Option<Row>, SourceError> {
        match self {
            RunReader::Disk { input, remaining } => {
                if *remaining == 0 {
                    return Ok(None);
                }
                *remaining -= 1;
                decode_row(input).map(Some).map_err(read_error)
            }
            RunReader::Memory(rows) => Ok(rows.next()),
        }
    }
}

/// A k-way merge of sorted runs. Each run has at most one row in the heap, and runs are
/// numbered in push order, so ordering heads by (key, run) keeps equal keys stable.
struct Merger {
    readers: Vec<RunReader>,
    heap: BinaryHeap<Head>,
}

struct Head {
    row: Row,
    run: usize,
}

impl Ord for Head {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the smallest (key, run) first.
    fn cmp(&self, other: &Head) -> Ordering {
        other
            .row
            .key
            .cmp(&self.row.key)
            .then_with(|| other.run.cmp(&self.run))
    }
}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Head) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Head {
    fn eq(&self, other: &Head) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head {}

impl Merger {
    fn new(mut readers: Vec<RunReader>) -> Result<Merger, SourceError> {
        let mut heap = BinaryHeap::with_capacity(readers.len());
        for (run, reader) in readers.iter_mut().enumerate() {
            if let Some(row) = reader.next()? {
                heap.push(Head { row, run });
            }
        }
        Ok(Merger { readers, heap })
    }

    fn next(&mut self) -> Result<Option<Row>, SourceError> {
        let Some(mut top) = self.heap.peek_mut() else {
            return Ok(None);
        };
        match self.readers[top.run].next()? {
            Some(row) => Ok(Some(std::mem::replace(&mut top.row, row))),
            None => Ok(Some(PeekMut::pop(top).row)),
        }
    }
}

// The run encoding: varint counts and lengths (LEB128), zigzag varint integers, f64 as
// its 8 little-endian bits, strings and bytes length-prefixed. A row is its key parts
// then its values, each prefixed by a one-byte tag.

const PART_INT: u8 = 0;
const PART_TEXT: u8 = 1;
const VALUE_NULL: u8 = 0;
const VALUE_FALSE: u8 = 1;
const VALUE_TRUE: u8 = 2;
const VALUE_INT: u8 = 3;
const VALUE_FLOAT: u8 = 4;
const VALUE_DECIMAL: u8 = 5;
const VALUE_TEXT: u8 = 6;
const VALUE_BYTES: u8 = 7;
const VALUE_JSON: u8 = 8;

fn encode_row(out: &mut impl Write, row: &Row) -> io::Result<()> {
    put_varint(out, row.key.0.len() as u64)?;
    for part in &row.key.0 {
        match part {
            KeyPart::Int(i) => {
                out.write_all(&[PART_INT])?;
                put_varint(out, zigzag(*i))?;
            }
            KeyPart::Text(s) => {
                out.write_all(&[PART_TEXT])?;
                put_bytes(out, s.as_bytes())?;
            }
        }
    }
    put_varint(out, row.values.len() as u64)?;
    for value in &row.values {
        match value {
            Value::Null => out.write_all(&[VALUE_NULL])?,
            Value::Bool(false) => out.write_all(&[VALUE_FALSE])?,
            Value::Bool(true) => out.write_all(&[VALUE_TRUE])?,
            Value::Int(i) => {
                out.write_all(&[VALUE_INT])?;
                put_varint(out, zigzag(*i))?;
            }
            Value::Float(f) => {
                out.write_all(&[VALUE_FLOAT])?;
                out.write_all(&f.to_bits().to_le_bytes())?;
            }
            Value::Decimal(s) => {
                out.write_all(&[VALUE_DECIMAL])?;
                put_bytes(out, s.as_bytes())?;
            }
            Value::Text(s) => {
                out.write_all(&[VALUE_TEXT])?;
                put_bytes(out, s.as_bytes())?;
            }
            Value::Bytes(b) => {
                out.write_all(&[VALUE_BYTES])?;
                put_bytes(out, b)?;
            }
            Value::Json(s) => {
                out.write_all(&[VALUE_JSON])?;
                put_bytes(out, s.as_bytes())?;
            }
        }
    }
    Ok(())
}

fn decode_row(input: &mut impl Read) -> io::Result<Row> {
    let parts = get_varint(input)? as usize;
    let mut key = Vec::with_capacity(parts);
    for _ in 0..parts {
        key.push(match get_u8(input)? {
            PART_INT => KeyPart::Int(unzigzag(get_varint(input)?)),
            PART_TEXT => KeyPart::Text(get_string(input)?),
            tag => return Err(corrupt(tag)),
        });
    }
    let count = get_varint(input)? as usize;
    let mut values = Vec::with_capacity(count);
    for _ in 0..count {
        values.push(match get_u8(input)? {
            VALUE_NULL => Value::Null,
            VALUE_FALSE => Value::Bool(false),
            VALUE_TRUE => Value::Bool(true),
            VALUE_INT => Value::Int(unzigzag(get_varint(input)?)),
            VALUE_FLOAT => {
                let mut bits = [0; 8];
                input.read_exact(&mut bits)?;
                Value::Float(f64::from_bits(u64::from_le_bytes(bits)))
            }
            VALUE_DECIMAL => Value::Decimal(get_string(input)?),
            VALUE_TEXT => Value::Text(get_string(input)?),
            VALUE_BYTES => Value::Bytes(get_bytes(input)?),
            VALUE_JSON => Value::Json(get_string(input)?),
            tag => return Err(corrupt(tag)),
        });
    }
    Ok(Row {
        key: Key(key),
        values,
    })
}

fn corrupt(tag: u8) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("unknown tag {tag}"))
}

fn zigzag(i: i64) -> u64 {
    ((i << 1) ^ (i >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

fn put_varint(out: &mut impl Write, mut v: u64) -> io::Result<()> {
    let mut buf = [0u8; 10];
    let mut len = 0;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            buf[len] = byte;
            len += 1;
            break;
        }
        buf[len] = byte | 0x80;
        len += 1;
    }
    out.write_all(&buf[..len])
}

fn get_varint(input: &mut impl Read) -> io::Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = get_u8(input)?;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(io::Error::new(io::ErrorKind::InvalidData, "varint too long"))
}

fn get_u8(input: &mut impl Read) -> io::Result<u8> {
    let mut byte = [0];
    input.read_exact(&mut byte)?;
    Ok(byte[0])
}

fn put_bytes(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    put_varint(out, bytes.len() as u64)?;
    out.write_all(bytes)
}

fn get_bytes(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let len = get_varint(input)? as usize;
    let mut bytes = vec![0; len];
    input.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn get_string(input: &mut impl Read) -> io::Result<String> {
    String::from_utf8(get_bytes(input)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "text is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: i64, seq: i64) -> Row {
        Row {
            key: Key(vec![KeyPart::Int(key)]),
            values: vec![Value::Int(seq), Value::Text(format!("payload {seq:>20}"))],
        }
    }

    /// Pushes rows with pseudo-random keys (many duplicates) and compares with a stable sort.
    fn check_against_stable_sort(count: i64, budget: usize) -> bool {
        let rows: Vec<Row> = (0..count).map(|i| row((i * 7919) % 97 - 40, i)).collect();
        let mut sorter = SpillSorter::new(budget);
        for r in rows.iter().cloned() {
            sorter.push(r).unwrap();
        }
        let spilled = sorter.has_spilled();
        let mut sorted = sorter.finish().unwrap();
        let mut got = Vec::new();
        while let Some(r) = sorted.next_row().unwrap() {
            got.push(r);
        }
        let mut expected = rows;
        expected.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(got, expected);
        spilled
    }

    #[test]
    fn in_memory_sort_is_stable() {
        assert!(!check_against_stable_sort(1000, 64 << 20));
    }

    #[test]
    fn spilled_sort_is_stable_and_complete() {
        assert!(check_against_stable_sort(5000, 4096));
    }

    #[test]
    fn many_runs_are_merged_in_levels() {
        // Budget 0 spills every row: thousands of runs, several merge levels.
        assert!(check_against_stable_sort(FAN_IN as i64 * FAN_IN as i64 + 77, 0));
    }

    #[test]
    fn every_value_survives_the_run_encoding() {
        let row = Row {
            key: Key(vec![
                KeyPart::Int(i64::MIN),
                KeyPart::Text("é\n".into()),
                KeyPart::Int(-1),
            ]),
            values: vec![
                Value::Null,
                Value::Bool(true),
                Value::Bool(false),
                Value::Int(i64::MAX),
                Value::Int(-300),
                Value::Float(-0.0),
                Value::Float(f64::from_bits(0x7ff8_0000_dead_beef)),
                Value::Decimal("12345678901234567890.5".into()),
                Value::Text(String::new()),
                Value::Bytes(vec![0, 255, 10]),
                Value::Json(r#"{"a":[1]}"#.into()),
            ],
        };
        let mut buf = Vec::new();
        encode_row(&mut buf, &row).unwrap();
        let back = decode_row(&mut buf.as_slice()).unwrap();
        assert_eq!(back.key, row.key);
        assert_eq!(back.values.len(), row.values.len());
        for (a, b) in back.values.iter().zip(&row.values) {
            match (a, b) {
                (Value::Float(x), Value::Float(y)) => assert_eq!(x.to_bits(), y.to_bits()),
                _ => assert_eq!(a, b),
            }
        }
    }

    #[test]
    fn pages_hold_at_most_the_page_size() {
        for budget in [64 << 20, 2048] {
            let mut sorter = SpillSorter::new(budget);
            for i in 0..1001 {
                sorter.push(row(1000 - i, i)).unwrap();
            }
            let mut sorted = sorter.finish().unwrap();
            let mut sizes = Vec::new();
            while let Some(page) = sorted.next_page(100).unwrap() {
                sizes.push(page.len());
            }
            assert_eq!(sizes.len(), 11);
            assert!(sizes[..10].iter().all(|&n| n == 100));
            assert_eq!(sizes[10], 1);
        }
    }
}
