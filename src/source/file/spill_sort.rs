//! Ordering rows by key within a memory budget, for backends whose input is not sorted
//! (files, later HTTP). Rows are kept compactly: each one is a byte string, its key in an
//! order-preserving encoding followed by its values, appended to one buffer (the arena),
//! and only a small index entry per row is sorted. Past the budget the sorted rows are
//! written to an anonymous temporary file (a run), and reading merges the runs. Rows
//! become [`Row`]s again only when they are handed out. Knows no formats.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::collections::binary_heap::PeekMut;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, Write};

use crate::source::{Key, KeyPart, Row, SourceError, Value, key_bytes};

/// How many runs one merge reads at once: bounds open files and read buffers.
const FAN_IN: usize = 32;
/// Buffer for writing or reading one run.
const RUN_BUFFER: usize = 64 * 1024;
/// Free arena space wanted before a row is started (at most; a small budget wants less).
const ROW_RESERVE: usize = 64 * 1024;
/// Bytes one index entry costs.
const ENTRY_SIZE: usize = size_of::<Entry>();

/// Where one row lives in the arena, with the first bytes of its key for fast ordering.
#[derive(Clone, Copy)]
struct Entry {
    /// The key's first 8 bytes after its first tag, big-endian, zero-padded.
    prefix: u64,
    /// Offset of the row's bytes in the arena.
    start: usize,
    /// Length of the row's bytes (key and values).
    len: u32,
    /// Length of the row's key bytes.
    key_len: u32,
}

impl Entry {
    fn bytes<'a>(&self, arena: &'a [u8]) -> &'a [u8] {
        &arena[self.start..self.start + self.len as usize]
    }

    fn key<'a>(&self, arena: &'a [u8]) -> &'a [u8] {
        &arena[self.start..self.start + self.key_len as usize]
    }
}

/// Collects rows in any order and gives them back ordered by key, stably: rows with
/// equal keys come back in the order they were pushed.
///
/// A row is either pushed whole ([`SpillSorter::push`]) or built in place, without
/// allocating: [`SpillSorter::begin`], its key parts in key order
/// ([`SpillSorter::key_int`], [`SpillSorter::key_text`], [`SpillSorter::key_part`]),
/// then its values ([`SpillSorter::text`], [`SpillSorter::value`]), then
/// [`SpillSorter::commit`]. Rows stay in memory while the arena and the index fit the
/// budget. Past it, the buffered rows are sorted and written to a run. Runs are merged
/// [`FAN_IN`] at a time as they pile up, so open files stay few whatever the input size,
/// and [`SpillSorter::finish`] merges what is left while reading.
pub struct SpillSorter {
    budget: usize,
    arena: Vec<u8>,
    index: Vec<Entry>,
    /// Where the row being built starts in the arena.
    row_start: usize,
    /// The length of the row being built's key, once its first value is added.
    key_len: Option<usize>,
    /// The first key tag of the buffered rows, while all share it (`prefix` then orders
    /// them); `Some(None)` once two differ.
    first_tag: Option<Option<u8>>,
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
            arena: Vec::new(),
            index: Vec::new(),
            row_start: 0,
            key_len: None,
            first_tag: None,
            runs: Vec::new(),
        }
    }

    /// Adds a whole row (see [`SpillSorter::begin`] to build one without allocating).
    pub fn push(&mut self, row: Row) -> Result<(), SourceError> {
        self.begin()?;
        for part in &row.key.0 {
            self.key_part(part);
        }
        self.end_key();
        for value in &row.values {
            self.value(value);
        }
        self.commit()
    }

    /// Starts a row, dropping any row begun and not committed. May spill the buffered
    /// rows to disk to make room.
    pub fn begin(&mut self) -> Result<(), SourceError> {
        self.arena.truncate(self.row_start);
        self.key_len = None;
        self.make_room()
    }

    /// Adds an integer key part to the row being built.
    pub fn key_int(&mut self, i: i64) {
        key_bytes::push_int(&mut self.arena, i);
    }

    /// Adds a text key part to the row being built.
    pub fn key_text(&mut self, s: &str) {
        key_bytes::push_text(&mut self.arena, s);
    }

    /// Adds a key part to the row being built.
    pub fn key_part(&mut self, part: &KeyPart) {
        key_bytes::push_part(&mut self.arena, part);
    }

    /// Adds key parts already encoded by [`key_bytes::push_part`] to the row being built.
    pub fn key_encoded(&mut self, bytes: &[u8]) {
        self.arena.extend_from_slice(bytes);
    }

    fn end_key(&mut self) {
        if self.key_len.is_none() {
            self.key_len = Some(self.arena.len() - self.row_start);
        }
    }

    /// Adds a text value (`None`: NULL) to the row being built, after its key.
    pub fn text(&mut self, text: Option<&str>) {
        self.end_key();
        match text {
            Some(s) => {
                self.arena.push(VALUE_TEXT);
                put_bytes(&mut self.arena, s.as_bytes());
            }
            None => self.arena.push(VALUE_NULL),
        }
    }

    /// Adds a value to the row being built, after its key.
    pub fn value(&mut self, value: &Value) {
        self.end_key();
        encode_value(&mut self.arena, value);
    }

    /// Adds opaque bytes to the row being built, after its key: an index entry's digest
    /// and locator. Such rows are read back with [`SortedRows::next_raw`].
    pub fn raw(&mut self, bytes: &[u8]) {
        self.end_key();
        self.arena.extend_from_slice(bytes);
    }

    /// Ends the row being built.
    pub fn commit(&mut self) -> Result<(), SourceError> {
        self.end_key();
        let too_large = || SourceError::Read("a row is too large to sort (4 GiB or more)".into());
        let len = u32::try_from(self.arena.len() - self.row_start).map_err(|_| too_large())?;
        let key_len = self.key_len.unwrap_or(0);
        let key = &self.arena[self.row_start..self.row_start + key_len];
        let tag = key.first().copied();
        self.first_tag = match self.first_tag {
            None => Some(tag),
            Some(seen) if seen == tag => Some(seen),
            Some(_) => Some(None),
        };
        self.index.push(Entry {
            prefix: prefix(key),
            start: self.row_start,
            len,
            key_len: key_len as u32,
        });
        self.row_start = self.arena.len();
        Ok(())
    }

    /// Grows the arena and the index within the budget, or spills when they are full.
    /// Growing a buffer holds its old and new allocations at once while it copies, so
    /// both count against the budget.
    fn make_room(&mut self) -> Result<(), SourceError> {
        let reserve = (self.budget / 16).clamp(256, ROW_RESERVE);
        if self.index.len() == self.index.capacity() {
            let want = (self.index.capacity() * 2).max(1024);
            let growing = (self.index.capacity() + want) * ENTRY_SIZE;
            if !self.index.is_empty() && self.arena.capacity() + growing > self.budget {
                self.spill()?;
            }
            if self.index.len() == self.index.capacity() {
                self.index.reserve_exact(want - self.index.len());
            }
        }
        if self.arena.capacity() - self.arena.len() < reserve {
            let room = self
                .budget
                .saturating_sub(self.index.capacity() * ENTRY_SIZE + self.arena.capacity());
            let target = (self.arena.capacity() * 2)
                .clamp(1 << 20, room.max(1 << 20))
                .min(room);
            if !self.index.is_empty() && target < self.arena.len() + reserve {
                self.spill()?;
            }
            if self.arena.capacity() - self.arena.len() < reserve {
                let target = target.max(self.arena.len() + reserve);
                self.arena.reserve_exact(target - self.arena.len());
            }
        }
        Ok(())
    }

    /// True once any row has gone to disk.
    #[cfg(test)]
    pub fn has_spilled(&self) -> bool {
        !self.runs.is_empty()
    }

    /// Ends input: the rows in key order.
    pub fn finish(mut self) -> Result<SortedRows, SourceError> {
        self.arena.truncate(self.row_start);
        self.sort();
        if self.runs.is_empty() {
            self.gather();
            return Ok(SortedRows {
                inner: Inner::Memory {
                    arena: self.arena,
                    index: self.index.into_iter(),
                },
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
        readers.push(RunReader::Memory {
            arena: self.arena,
            index: self.index.into_iter(),
        });
        Ok(SortedRows {
            inner: Inner::Merge {
                merger: Merger::new(readers)?,
                buffer: Vec::new(),
            },
        })
    }

    /// Copies the rows into a new arena in sorted order, when both fit the budget, so
    /// that reading them back is sequential: the copy's scattered reads are cheaper here,
    /// on the reading thread, than cache misses while the merge waits for every row.
    fn gather(&mut self) {
        let index_bytes = self.index.len() * ENTRY_SIZE;
        if 2 * self.arena.len() + index_bytes > self.budget {
            return;
        }
        let mut sorted = Vec::with_capacity(self.arena.len());
        for entry in &mut self.index {
            let start = sorted.len();
            sorted.extend_from_slice(entry.bytes(&self.arena));
            entry.start = start;
        }
        self.arena = sorted;
    }

    /// Sorts the index by key, equal keys in push order (their arena offsets).
    fn sort(&mut self) {
        let arena = &self.arena;
        let by_prefix = self.first_tag.is_some_and(|tag| tag.is_some());
        self.index.sort_unstable_by(|a, b| {
            let ordering = if by_prefix {
                a.prefix.cmp(&b.prefix)
            } else {
                Ordering::Equal
            };
            ordering
                .then_with(|| a.key(arena).cmp(b.key(arena)))
                .then(a.start.cmp(&b.start))
        });
    }

    fn spill(&mut self) -> Result<(), SourceError> {
        self.arena.truncate(self.row_start);
        self.sort();
        let arena = &self.arena;
        let mut entries = self.index.iter();
        let run = write_run(|out| match entries.next() {
            Some(e) => {
                write_entry(out, e.bytes(arena), e.key_len as usize)?;
                Ok(true)
            }
            None => Ok(false),
        })?;
        self.arena.clear();
        self.index.clear();
        self.row_start = 0;
        self.first_tag = None;
        self.push_run(run)
    }

    /// Adds rows the caller has already put in key order as a run of their own, straight
    /// to disk: for a caller that keeps fixed-size entries and sorts them itself. `next`
    /// writes one row's bytes into its buffer and returns how many are the key, or `None`
    /// at the end. Rows buffered here are spilled first, so that runs stay in push order
    /// (which keeps equal keys in push order).
    pub fn push_sorted_run(
        &mut self,
        mut next: impl FnMut(&mut Vec<u8>) -> Option<usize>,
    ) -> Result<(), SourceError> {
        self.arena.truncate(self.row_start);
        if !self.index.is_empty() {
            self.spill()?;
        }
        let mut bytes = Vec::new();
        let run = write_run(|out| match next(&mut bytes) {
            Some(key_len) => {
                write_entry(out, &bytes, key_len)?;
                Ok(true)
            }
            None => Ok(false),
        })?;
        self.push_run(run)
    }

    fn push_run(&mut self, run: Run) -> Result<(), SourceError> {
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

/// The key's first 8 bytes after its tag, as a big-endian number (zero-padded), which
/// orders like the bytes themselves among keys sharing their first tag.
fn prefix(key: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let tail = key.get(1..).unwrap_or_default();
    let n = tail.len().min(8);
    bytes[..n].copy_from_slice(&tail[..n]);
    u64::from_be_bytes(bytes)
}

/// Rows in key order, from memory or merged from spilled runs.
pub struct SortedRows {
    inner: Inner,
}

enum Inner {
    Memory {
        arena: Vec<u8>,
        index: std::vec::IntoIter<Entry>,
    },
    Merge {
        merger: Merger,
        buffer: Vec<u8>,
    },
}

impl SortedRows {
    /// The next row in key order, or `None` at the end.
    pub fn next_row(&mut self) -> Result<Option<Row>, SourceError> {
        match &mut self.inner {
            Inner::Memory { arena, index } => match index.next() {
                Some(e) => decode_row(e.bytes(arena), e.key_len as usize).map(Some),
                None => Ok(None),
            },
            Inner::Merge { merger, buffer } => match merger.next_into(buffer)? {
                Some(key_len) => decode_row(buffer, key_len).map(Some),
                None => Ok(None),
            },
        }
    }

    /// The next row's bytes, undecoded, copied into `into`; returns how many of them are
    /// the key, or `None` at the end. For rows built with [`SpillSorter::raw`].
    pub fn next_raw(&mut self, into: &mut Vec<u8>) -> Result<Option<usize>, SourceError> {
        match &mut self.inner {
            Inner::Memory { arena, index } => Ok(index.next().map(|e| {
                into.clear();
                into.extend_from_slice(e.bytes(arena));
                e.key_len as usize
            })),
            Inner::Merge { merger, .. } => merger.next_into(into),
        }
    }

    /// Up to `page_size` (at least one) further rows, or `None` at the end.
    pub fn next_page(&mut self, page_size: usize) -> Result<Option<Vec<Row>>, SourceError> {
        let size = page_size.max(1);
        let mut page = Vec::with_capacity(size.min(16 * 1024));
        while page.len() < size {
            match self.next_row()? {
                Some(row) => page.push(row),
                None => break,
            }
        }
        Ok((!page.is_empty()).then_some(page))
    }

    /// True when reading goes to disk (and so is blocking work).
    pub fn is_spilled(&self) -> bool {
        matches!(self.inner, Inner::Merge { .. })
    }
}

fn write_error(err: io::Error) -> SourceError {
    SourceError::Read(format!(
        "cannot spill rows to a temporary file in {} (set TMPDIR to another folder, or raise --memory-budget): {err}",
        std::env::temp_dir().display()
    ))
}

fn read_error(err: io::Error) -> SourceError {
    SourceError::Read(format!("cannot read rows spilled to a temporary file: {err}"))
}

/// Writes one row's bytes to a run: key length, row length, bytes.
fn write_entry(out: &mut impl Write, bytes: &[u8], key_len: usize) -> Result<(), SourceError> {
    let mut head = [0u8; 20];
    let used = varint_into(&mut head, 0, key_len as u64);
    let used = varint_into(&mut head, used, bytes.len() as u64);
    out.write_all(&head[..used]).map_err(write_error)?;
    out.write_all(bytes).map_err(write_error)
}

/// Writes `v` as a varint into `buf` at `at`; returns where it ends.
fn varint_into(buf: &mut [u8; 20], mut at: usize, mut v: u64) -> usize {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            buf[at] = byte;
            return at + 1;
        }
        buf[at] = byte | 0x80;
        at += 1;
    }
}

/// Writes the rows `next` writes (already in order; `false` at the end) to a new
/// temporary file.
fn write_run(
    mut next: impl FnMut(&mut BufWriter<File>) -> Result<bool, SourceError>,
) -> Result<Run, SourceError> {
    let file = tempfile::tempfile().map_err(write_error)?;
    let mut out = BufWriter::with_capacity(RUN_BUFFER, file);
    let mut rows = 0;
    while next(&mut out)? {
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
    let mut buffer = Vec::new();
    write_run(|out| match merger.next_into(&mut buffer)? {
        Some(key_len) => {
            write_entry(out, &buffer, key_len)?;
            Ok(true)
        }
        None => Ok(false),
    })
}

/// A source of sorted rows feeding a merge.
enum RunReader {
    Disk {
        input: BufReader<File>,
        remaining: u64,
    },
    Memory {
        arena: Vec<u8>,
        index: std::vec::IntoIter<Entry>,
    },
}

impl RunReader {
    fn disk(run: Run) -> RunReader {
        RunReader::Disk {
            input: BufReader::with_capacity(RUN_BUFFER, run.file),
            remaining: run.rows,
        }
    }

    /// Reads the next row's bytes into `into`; its key length, or `None` at the end.
    fn next_into(&mut self, into: &mut Vec<u8>) -> Result<Option<usize>, SourceError> {
        into.clear();
        match self {
            RunReader::Disk { input, remaining } => {
                if *remaining == 0 {
                    return Ok(None);
                }
                *remaining -= 1;
                let key_len = read_varint(input).map_err(read_error)? as usize;
                let len = read_varint(input).map_err(read_error)? as usize;
                if key_len > len {
                    return Err(read_error(corrupt("key longer than its row")));
                }
                into.resize(len, 0);
                input.read_exact(into).map_err(read_error)?;
                Ok(Some(key_len))
            }
            RunReader::Memory { arena, index } => Ok(index.next().map(|e| {
                into.extend_from_slice(e.bytes(arena));
                e.key_len as usize
            })),
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
    bytes: Vec<u8>,
    key_len: usize,
    run: usize,
}

impl Head {
    fn key(&self) -> &[u8] {
        &self.bytes[..self.key_len]
    }
}

impl Ord for Head {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the smallest (key, run) first.
    fn cmp(&self, other: &Head) -> Ordering {
        other.key().cmp(self.key()).then_with(|| other.run.cmp(&self.run))
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
            let mut bytes = Vec::new();
            if let Some(key_len) = reader.next_into(&mut bytes)? {
                heap.push(Head { bytes, key_len, run });
            }
        }
        Ok(Merger { readers, heap })
    }

    /// Moves the smallest row's bytes into `out`; its key length, or `None` at the end.
    fn next_into(&mut self, out: &mut Vec<u8>) -> Result<Option<usize>, SourceError> {
        let Some(mut top) = self.heap.peek_mut() else {
            return Ok(None);
        };
        let key_len = top.key_len;
        std::mem::swap(out, &mut top.bytes);
        let run = top.run;
        match self.readers[run].next_into(&mut top.bytes)? {
            Some(next_key_len) => top.key_len = next_key_len,
            None => {
                PeekMut::pop(top);
            }
        }
        Ok(Some(key_len))
    }
}

// The row encoding: the key parts, each a tag then its order-preserving bytes (an
// integer as 8 big-endian bytes with the sign bit flipped, text with NUL escaped and
// ending in 00 00), then the values, each a one-byte tag then its data: varint (LEB128)
// lengths, zigzag varint integers, f64 as its 8 little-endian bits, strings and bytes
// length-prefixed.

const VALUE_NULL: u8 = 0;
const VALUE_FALSE: u8 = 1;
const VALUE_TRUE: u8 = 2;
const VALUE_INT: u8 = 3;
const VALUE_FLOAT: u8 = 4;
const VALUE_DECIMAL: u8 = 5;
const VALUE_TEXT: u8 = 6;
const VALUE_BYTES: u8 = 7;
const VALUE_JSON: u8 = 8;

fn encode_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(VALUE_NULL),
        Value::Bool(false) => out.push(VALUE_FALSE),
        Value::Bool(true) => out.push(VALUE_TRUE),
        Value::Int(i) => {
            out.push(VALUE_INT);
            put_varint(out, zigzag(*i));
        }
        Value::Float(f) => {
            out.push(VALUE_FLOAT);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::Decimal(s) => {
            out.push(VALUE_DECIMAL);
            put_bytes(out, s.as_bytes());
        }
        Value::Text(s) => {
            out.push(VALUE_TEXT);
            put_bytes(out, s.as_bytes());
        }
        Value::Bytes(b) => {
            out.push(VALUE_BYTES);
            put_bytes(out, b);
        }
        Value::Json(s) => {
            out.push(VALUE_JSON);
            put_bytes(out, s.as_bytes());
        }
    }
}

/// Reads a row back from its bytes (`key_len` of them the key).
fn decode_row(bytes: &[u8], key_len: usize) -> Result<Row, SourceError> {
    let fail = |e: io::Error| SourceError::Read(format!("cannot decode a sorted row: {e}"));
    let (key, values) = bytes
        .split_at_checked(key_len)
        .ok_or_else(|| fail(corrupt("short row")))?;
    let key = decode_key(key)?;
    let mut input = Slice(values);
    let mut decoded = Vec::new();
    while !input.0.is_empty() {
        decoded.push(decode_value(&mut input).map_err(fail)?);
    }
    Ok(Row { key, values: decoded })
}

/// Reads a key back from its order-preserving bytes.
pub fn decode_key(bytes: &[u8]) -> Result<Key, SourceError> {
    key_bytes::decode(bytes).map_err(|e| SourceError::Read(format!("cannot decode a sorted key: {e}")))
}

/// A byte slice read from the front.
struct Slice<'a>(&'a [u8]);

impl<'a> Slice<'a> {
    fn u8(&mut self) -> io::Result<u8> {
        let (&first, rest) = self.0.split_first().ok_or_else(|| corrupt("short row"))?;
        self.0 = rest;
        Ok(first)
    }

    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n).ok_or_else(|| corrupt("short row"))?;
        self.0 = rest;
        Ok(head)
    }

    fn varint(&mut self) -> io::Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt("varint too long"))
    }

    fn bytes(&mut self) -> io::Result<&'a [u8]> {
        let len = self.varint()? as usize;
        self.take(len)
    }

    fn string(&mut self) -> io::Result<String> {
        text(self.bytes()?.to_vec())
    }
}

fn text(bytes: Vec<u8>) -> io::Result<String> {
    String::from_utf8(bytes).map_err(|_| corrupt("text is not UTF-8"))
}

fn decode_value(input: &mut Slice<'_>) -> io::Result<Value> {
    Ok(match input.u8()? {
        VALUE_NULL => Value::Null,
        VALUE_FALSE => Value::Bool(false),
        VALUE_TRUE => Value::Bool(true),
        VALUE_INT => Value::Int(unzigzag(input.varint()?)),
        VALUE_FLOAT => {
            let mut bits = [0; 8];
            bits.copy_from_slice(input.take(8)?);
            Value::Float(f64::from_bits(u64::from_le_bytes(bits)))
        }
        VALUE_DECIMAL => Value::Decimal(input.string()?),
        VALUE_TEXT => Value::Text(input.string()?),
        VALUE_BYTES => Value::Bytes(input.bytes()?.to_vec()),
        VALUE_JSON => Value::Json(input.string()?),
        tag => return Err(corrupt_tag(tag)),
    })
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn corrupt_tag(tag: u8) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("unknown tag {tag}"))
}

fn zigzag(i: i64) -> u64 {
    ((i << 1) ^ (i >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Reads a varint from a buffered reader, a byte at a time from its buffer.
fn read_varint(input: &mut impl BufRead) -> io::Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let mut byte = [0];
        input.read_exact(&mut byte)?;
        v |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(corrupt("varint too long"))
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
        for budget in [64 << 20, 0] {
            let mut sorter = SpillSorter::new(budget);
            sorter.push(row.clone()).unwrap();
            sorter.push(row.clone()).unwrap();
            let mut sorted = sorter.finish().unwrap();
            for _ in 0..2 {
                let back = sorted.next_row().unwrap().unwrap();
                assert_same(&back, &row);
            }
            assert!(sorted.next_row().unwrap().is_none());
        }
    }

    fn assert_same(back: &Row, row: &Row) {
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

    fn part() -> impl proptest::strategy::Strategy<Value = KeyPart> {
        use proptest::prelude::*;
        prop_oneof![
            prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0i64), -300i64..300].prop_map(KeyPart::Int),
            proptest::collection::vec(prop_oneof![Just('\0'), Just('a'), Just('b'), Just('é')], 0..5)
                .prop_map(|c| KeyPart::Text(c.into_iter().collect())),
        ]
    }

    proptest::proptest! {
        /// Keys of any shape (NUL in text, a text that prefixes another, mixed part
        /// types, composite keys) come back in `Key` order, stably, in memory or spilled.
        #[test]
        fn the_key_encoding_orders_like_keys(
            keys in proptest::collection::vec(proptest::collection::vec(part(), 0..3), 0..200),
            budget in proptest::prop_oneof![proptest::strategy::Just(64usize << 20), 0usize..3000],
        ) {
            let rows: Vec<Row> = keys
                .into_iter()
                .enumerate()
                .map(|(i, parts)| Row { key: Key(parts), values: vec![Value::Int(i as i64)] })
                .collect();
            let mut sorter = SpillSorter::new(budget);
            for r in rows.iter().cloned() {
                sorter.push(r).unwrap();
            }
            let mut sorted = sorter.finish().unwrap();
            let mut got = Vec::new();
            while let Some(r) = sorted.next_row().unwrap() {
                got.push(r);
            }
            let mut expected = rows;
            expected.sort_by(|a, b| a.key.cmp(&b.key));
            proptest::prop_assert_eq!(got, expected);
        }
    }
}
