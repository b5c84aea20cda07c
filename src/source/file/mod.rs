//! File backends (CSV, JSON Lines) and what they share: files need not be sorted, so
//! `spill_sort` orders their rows by key within a memory budget, spilling to disk.
//! The helpers here resolve columns, build keys and run blocking reads; no format lives here.

pub mod csv;
mod flat_json;
pub mod jsonl;
pub mod records;
pub mod spill_sort;
mod window;

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use crate::source::value::Cell;
use crate::source::{Column, FieldType, KeyPart, KeyType, Row, ScanSpec, SourceError, Value};

use spill_sort::SortedRows;

/// Read buffer for files: large, because a scan reads the whole file once.
const READ_BUFFER: usize = 256 * 1024;
/// Read buffer for reading single records again: a few records (a longer one grows it).
const REREAD_BUFFER: usize = 512;

/// A file read with positioned reads (`pread`), for reading single records again: a
/// seek only moves the offset, so each record costs one system call and copies about
/// its own size.
struct ReadAt {
    file: File,
    offset: u64,
}

impl ReadAt {
    fn new(file: File) -> ReadAt {
        ReadAt { file, offset: 0 }
    }
}

impl Read for ReadAt {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(unix)]
        let n = std::os::unix::fs::FileExt::read_at(&self.file, buf, self.offset)?;
        #[cfg(windows)]
        let n = std::os::windows::fs::FileExt::seek_read(&self.file, buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

impl Seek for ReadAt {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let offset = match to {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::Current(delta) => self.offset.checked_add_signed(delta),
            SeekFrom::End(delta) => self.file.metadata()?.len().checked_add_signed(delta),
        };
        self.offset =
            offset.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.offset)
    }
}

/// An emptied vector, its allocation kept for items of another lifetime (borrowing the
/// next record instead of the last): collecting an empty iterator in place reuses it.
fn recycle<T, U>(mut items: Vec<T>) -> Vec<U> {
    items.clear();
    items.into_iter().filter_map(|_| None).collect()
}

/// Runs blocking work (reading, sorting, spilling) from async code: inside a
/// multi-threaded runtime the worker hands its other tasks off first; elsewhere (no
/// runtime, or a current-thread one, where `block_in_place` would panic) it just runs.
pub(crate) fn blocking<R>(work: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// The error for a file that cannot be opened, naming the path as configured.
fn open_error(path: &Path, err: std::io::Error) -> SourceError {
    SourceError::Open(format!("cannot open {}: {err}", path.display()))
}

/// The position of column `name`, or a schema error listing the columns there are.
fn column_index(columns: &[Column], name: &str) -> Result<usize, SourceError> {
    columns.iter().position(|c| c.name == name).ok_or_else(|| {
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        SourceError::Schema(format!(
            "column `{name}` not found (columns: {})",
            names.join(", ")
        ))
    })
}

/// Sets the declared type of each column a file source's `types` names; a name that is
/// not a column is a schema error.
fn declare_types(columns: &mut [Column], types: &[(String, FieldType)]) -> Result<(), SourceError> {
    for (name, ty) in types {
        let i = column_index(columns, name).map_err(|e| SourceError::Schema(format!("`types`: {e}")))?;
        columns[i].declared = Some(*ty);
    }
    Ok(())
}

/// Converts a key column's value into its typed part; `Err` says why it cannot be one
/// (turn it into an error with [`key_error`]).
fn key_part(value: Value, ty: KeyType) -> Result<KeyPart, String> {
    match (ty, value) {
        (KeyType::Text, Value::Text(s)) if !s.is_empty() => Ok(KeyPart::Text(s)),
        (_, value) => KeyPart::from_value(&value, ty),
    }
}

/// [`key_part`] for a text field (`None` for NULL), parsing integers without allocating.
fn key_part_from_text(text: Option<&str>, ty: KeyType) -> Result<KeyPart, String> {
    if let (KeyType::Integer, Some(s)) = (ty, text)
        && let Some(i) = integer_text(s)
    {
        return Ok(KeyPart::Int(i));
    }
    key_part(text.map_or(Value::Null, |s| Value::Text(s.to_owned())), ty)
}

/// The integer a key's text spells, whitespace around it allowed; parsed as it is
/// first, since it rarely has any (trimming looks for Unicode whitespace).
fn integer_text(text: &str) -> Option<i64> {
    text.parse().or_else(|_| text.trim().parse()).ok()
}

/// The scan error for a key column whose value cannot be a key, for `reason`.
fn key_error(reason: &str, line: u64, column: &str) -> SourceError {
    if reason.starts_with("key is empty") {
        SourceError::Read(format!("line {line}: key column `{column}` is empty"))
    } else {
        SourceError::Read(format!("line {line}: key column `{column}`: {reason}"))
    }
}

/// One record as an index scan sees it: where it starts in the file, its typed key and
/// the scan's column values, in buffers the source reuses from record to record.
pub struct RecordView<'a> {
    /// Where the record starts, for [`IndexedFile::read_at`].
    pub locator: u64,
    /// The key parts, in key order.
    pub key: &'a [KeyPart],
    /// The values of the scan's columns, in the scan's column order.
    pub values: &'a [Cell<'a>],
}

/// A file that a digest-first compare can index: read once in file order, each record
/// shown to the caller without becoming a [`Row`], and single records read again by
/// where they start. Unsorted files need this, because building, sorting and handing out
/// every row costs far more than the few rows that differ.
pub trait IndexedFile: Send {
    /// Reads every record in file order and shows it to `visit`; the same checks and
    /// errors (naming the line) as a scan of `spec`.
    fn index(
        &mut self,
        spec: &ScanSpec,
        visit: &mut dyn FnMut(RecordView<'_>) -> Result<(), SourceError>,
    ) -> Result<(), SourceError>;

    /// The record starting at `locator` (as [`RecordView::locator`] gave it) as a row of
    /// the last indexed scan.
    fn read_at(&mut self, locator: u64) -> Result<Row, SourceError>;

    /// The file's size in bytes, when known: the index is then sized once instead of
    /// growing by copies.
    fn byte_size(&self) -> Option<u64> {
        None
    }
}

/// Puts a key field into a reused key part slot, keeping its allocation where it can.
fn set_key_part(slot: &mut KeyPart, text: Option<&str>, ty: KeyType) -> Result<(), String> {
    match (ty, text, &mut *slot) {
        (KeyType::Text, Some(t), KeyPart::Text(s)) if !t.is_empty() => {
            s.clear();
            s.push_str(t);
        }
        _ => *slot = key_part_from_text(text, ty)?,
    }
    Ok(())
}

/// A scan in progress: the file's rows in key order, handed out a page at a time.
struct Scan {
    rows: SortedRows,
    page_size: usize,
}

impl Scan {
    /// The next page, reading spilled runs from disk as blocking work.
    fn next_page(&mut self) -> Result<Option<Vec<Row>>, SourceError> {
        if self.rows.is_spilled() {
            blocking(|| self.rows.next_page(self.page_size))
        } else {
            self.rows.next_page(self.page_size)
        }
    }
}

#[cfg(test)]
mod test_support {
    use crate::source::{KeyType, Row, ScanSpec, Source, SourceError};

    /// A scan of `key` (typed) and `columns` with the given page size and a large budget.
    pub fn spec(key: &[(&str, KeyType)], columns: &[&str], page_size: usize) -> ScanSpec {
        ScanSpec {
            key: key.iter().map(|(k, _)| k.to_string()).collect(),
            key_types: key.iter().map(|(_, t)| *t).collect(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            tiebreak: Vec::new(),
            page_size,
            memory_budget: 64 << 20,
        }
    }

    /// Scans and collects every page, checking that none exceeds the page size.
    pub async fn scan_all(source: &mut dyn Source, spec: &ScanSpec) -> Result<Vec<Row>, SourceError> {
        source.scan(spec).await?;
        let mut rows = Vec::new();
        while let Some(page) = source.next_page().await? {
            assert!(page.len() <= spec.page_size, "page of {} rows", page.len());
            rows.extend(page);
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::recycle;
    use crate::source::value::Cell;

    #[test]
    fn recycling_a_vector_keeps_its_allocation() {
        let text = String::from("x");
        let mut cells: Vec<Cell<'_>> = Vec::with_capacity(64);
        cells.push(Cell::Text(&text));
        let cells: Vec<Cell<'static>> = recycle(cells);
        assert!(cells.is_empty());
        assert!(cells.capacity() >= 64, "capacity {}", cells.capacity());
        let slots: Vec<Option<&str>> = recycle(vec![Some(text.as_str()); 16]);
        assert!(slots.capacity() >= 16);
    }
}
