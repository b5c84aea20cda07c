//! CSV files: the header names the columns, every field is text (or NULL by the file's
//! NULL rule), and rows are ordered by key through `spill_sort` since files need not be
//! sorted. Errors name the physical line the record starts on.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

use super::records::{Record, Records};
use super::spill_sort::{SortedRows, SpillSorter};
use super::{
    IndexedFile, READ_BUFFER, REREAD_BUFFER, ReadAt, RecordView, Scan, blocking, column_index, declare_types,
    integer_text, key_error, key_part_from_text, open_error, recycle, set_key_part,
};
use crate::job::CsvConfig;
use crate::source::value::Cell;
use crate::source::{Column, Key, KeyPart, KeyType, Row, ScanSpec, Source, SourceError, Value};
use async_trait::async_trait;

/// A CSV file. Columns come from the header row (or are numbered `1`, `2`, ... without
/// one) and declare no type; fields are [`Value::Text`](crate::source::Value::Text), or
/// [`Value::Null`](crate::source::Value::Null) when they match the configured NULL text
/// (by default: when empty).
pub struct CsvSource {
    config: CsvConfig,
    columns: Vec<Column>,
    scan: Option<Scan>,
    /// The last indexed scan, resolved against the columns.
    resolved: Option<Resolved>,
    /// The file kept open for reading single records again.
    reread: Option<Records<ReadAt>>,
}

impl CsvSource {
    /// Opens the file and reads its first record to learn the columns.
    pub fn open(config: &CsvConfig) -> Result<CsvSource, SourceError> {
        let mut reader = reader(config, REREAD_BUFFER)?;
        let names: Vec<String> = match read_record(&mut reader, &config.path)? {
            None => Vec::new(),
            Some(record) if config.header => {
                let mut names = Vec::with_capacity(record.field_count());
                for i in 0..record.field_count() {
                    let field = record.get(i).unwrap_or_default();
                    let name = std::str::from_utf8(field).map_err(|_| invalid_utf8(&config.path, &record))?;
                    names.push(name.to_owned());
                }
                if let Some(first) = names.first_mut() {
                    if let Some(rest) = first.strip_prefix('\u{feff}') {
                        *first = rest.to_owned();
                    }
                }
                names
            }
            Some(record) => (1..=record.field_count()).map(|i| i.to_string()).collect(),
        };
        let mut columns: Vec<Column> = names
            .into_iter()
            .map(|name| Column {
                name,
                declared: None,
                unsupported: None,
            })
            .collect();
        declare_types(&mut columns, &config.types)?;
        Ok(CsvSource {
            config: config.clone(),
            columns,
            scan: None,
            resolved: None,
            reread: None,
        })
    }

    /// Reads every record after the header in file order, checking its width, and
    /// hands it to `each`: blocking work.
    fn walk(&self, mut each: impl FnMut(&Record<'_>) -> Result<(), SourceError>) -> Result<(), SourceError> {
        let path = &self.config.path;
        let mut reader = reader(&self.config, READ_BUFFER)?;
        let width = self.columns.len();
        if self.config.header && read_record(&mut reader, path)?.is_none() {
            return Ok(());
        }
        while let Some(record) = read_record(&mut reader, path)? {
            if record.field_count() != width {
                return Err(SourceError::Read(format!(
                    "line {}: expected {width} fields, found {}",
                    record_line(path, &record),
                    record.field_count()
                )));
            }
            each(&record)?;
        }
        Ok(())
    }

    /// Reads the whole file into a sorter: blocking work.
    fn read_sorted(
        &self,
        spec: &ScanSpec,
        keys: &[usize],
        columns: &[usize],
    ) -> Result<SortedRows, SourceError> {
        let path = &self.config.path;
        let mut sorter = SpillSorter::new(spec.memory_budget);
        let null = self.null();
        self.walk(|record| {
            sorter.begin()?;
            for (n, &i) in keys.iter().enumerate() {
                let ty = spec.key_types.get(n).copied().unwrap_or(KeyType::Text);
                let text = field(record, i, null, path)?;
                match (ty, text) {
                    (KeyType::Integer, Some(s)) if let Some(v) = integer_text(s) => sorter.key_int(v),
                    (KeyType::Text, Some(s)) if !s.is_empty() => sorter.key_text(s),
                    _ => {
                        let part = key_part_from_text(text, ty)
                            .map_err(|reason| key_error(&reason, record_line(path, record), &spec.key[n]))?;
                        sorter.key_part(&part);
                    }
                }
            }
            for &i in columns {
                sorter.text(field(record, i, null, path)?);
            }
            sorter.commit()
        })?;
        sorter.finish()
    }

    fn null(&self) -> Option<&[u8]> {
        self.config.null.as_deref().map(str::as_bytes)
    }

    /// The key parts of a record, into reused slots.
    fn fill_key(
        &self,
        spec: &ScanSpec,
        resolved: &Resolved,
        record: &Record<'_>,
        key: &mut [KeyPart],
    ) -> Result<(), SourceError> {
        let (path, null) = (&self.config.path, self.null());
        for (n, (&i, slot)) in resolved.keys.iter().zip(key).enumerate() {
            let ty = spec.key_types.get(n).copied().unwrap_or(KeyType::Text);
            set_key_part(slot, field(record, i, null, path)?, ty)
                .map_err(|reason| key_error(&reason, record_line(path, record), &spec.key[n]))?;
        }
        Ok(())
    }

    /// The scan's column values of a record, borrowed from it, into `cells`.
    fn fill_cells<'r>(
        &self,
        resolved: &Resolved,
        record: &'r Record<'_>,
        cells: &mut Vec<Cell<'r>>,
    ) -> Result<(), SourceError> {
        let (path, null) = (&self.config.path, self.null());
        for &i in &resolved.columns {
            cells.push(field(record, i, null, path)?.map_or(Cell::Null, Cell::Text));
        }
        Ok(())
    }
}

/// Where a scan's key columns and other columns are in a record.
struct Resolved {
    spec: ScanSpec,
    keys: Vec<usize>,
    columns: Vec<usize>,
}

impl IndexedFile for CsvSource {
    fn index(
        &mut self,
        spec: &ScanSpec,
        visit: &mut dyn FnMut(RecordView<'_>) -> Result<(), SourceError>,
    ) -> Result<(), SourceError> {
        self.resolved = Some(Resolved {
            spec: spec.clone(),
            keys: resolve(&self.columns, &spec.key)?,
            columns: resolve(&self.columns, &spec.columns)?,
        });
        let resolved = self
            .resolved
            .as_ref()
            .ok_or(SourceError::Unsupported("reading before indexing"))?;
        let mut key = vec![KeyPart::Int(0); spec.key.len()];
        let mut recycled: Vec<Cell<'static>> = Vec::with_capacity(spec.columns.len());
        self.walk(|record| {
            self.fill_key(spec, resolved, record, &mut key)?;
            let mut cells = recycle(std::mem::take(&mut recycled));
            self.fill_cells(resolved, record, &mut cells)?;
            visit(RecordView {
                locator: record.start,
                key: &key,
                values: &cells,
            })?;
            recycled = recycle(cells);
            Ok(())
        })
    }

    fn byte_size(&self) -> Option<u64> {
        std::fs::metadata(&self.config.path).ok().map(|m| m.len())
    }

    fn read_at(&mut self, locator: u64) -> Result<Row, SourceError> {
        let mut reader = match self.reread.take() {
            Some(reader) => reader,
            None => {
                let file = File::open(&self.config.path).map_err(|e| open_error(&self.config.path, e))?;
                Records::new(ReadAt::new(file), self.config.delimiter, REREAD_BUFFER, 0)
            }
        };
        let row = self.row_at(&mut reader, locator);
        self.reread = Some(reader);
        row
    }
}

impl CsvSource {
    /// The record starting at `locator`, read with `reader`, as a row of the indexed scan.
    fn row_at(&self, reader: &mut Records<ReadAt>, locator: u64) -> Result<Row, SourceError> {
        let reread_error = |e: &dyn std::fmt::Display| {
            SourceError::Read(format!("cannot read a record again at byte {locator}: {e}"))
        };
        reader
            .input_mut()
            .seek(SeekFrom::Start(locator))
            .map_err(|e| reread_error(&e))?;
        reader.restart(locator);
        let record = match reader.next_record() {
            Ok(Some(record)) if record.start == locator && record.field_count() == self.columns.len() => {
                record
            }
            Ok(_) => return Err(reread_error(&"the file changed while recon read it")),
            Err(e) => return Err(reread_error(&e)),
        };
        let resolved = self
            .resolved
            .as_ref()
            .ok_or(SourceError::Unsupported("reading before indexing"))?;
        let mut key = vec![KeyPart::Int(0); resolved.keys.len()];
        self.fill_key(&resolved.spec, resolved, &record, &mut key)?;
        let mut cells = Vec::with_capacity(resolved.columns.len());
        self.fill_cells(resolved, &record, &mut cells)?;
        let values = cells
            .iter()
            .map(|cell| match cell {
                Cell::Text(t) => Value::Text((*t).to_owned()),
                _ => Value::Null,
            })
            .collect();
        Ok(Row {
            key: Key(key),
            values,
        })
    }
}

#[async_trait]
impl Source for CsvSource {
    fn describe(&self) -> String {
        format!("csv {}", self.config.path.display())
    }

    fn columns(&self) -> &[Column] {
        &self.columns
    }

    async fn scan(&mut self, spec: &ScanSpec) -> Result<(), SourceError> {
        self.scan = None;
        let keys = resolve(&self.columns, &spec.key)?;
        let columns = resolve(&self.columns, &spec.columns)?;
        let rows = blocking(|| self.read_sorted(spec, &keys, &columns))?;
        self.scan = Some(Scan {
            rows,
            page_size: spec.page_size,
        });
        Ok(())
    }

    async fn next_page(&mut self) -> Result<Option<Vec<Row>>, SourceError> {
        match &mut self.scan {
            Some(scan) => scan.next_page(),
            None => Ok(None),
        }
    }

    fn as_indexed(&mut self) -> Option<&mut dyn IndexedFile> {
        Some(self)
    }
}

fn resolve(columns: &[Column], names: &[String]) -> Result<Vec<usize>, SourceError> {
    names.iter().map(|name| column_index(columns, name)).collect()
}

/// A reader of the file's records from its start.
fn reader(config: &CsvConfig, capacity: usize) -> Result<Records<File>, SourceError> {
    let file = File::open(&config.path).map_err(|e| open_error(&config.path, e))?;
    Ok(Records::new(file, config.delimiter, capacity, 0))
}

fn read_record<'r>(reader: &'r mut Records<File>, path: &Path) -> Result<Option<Record<'r>>, SourceError> {
    let at = reader.position();
    reader
        .next_record()
        .map_err(|e| SourceError::Read(format!("line {}: {e}", line_at(path, at))))
}

/// Field `i` as text, or `None` when it reads as NULL (`null`: the NULL text, if any).
/// Inlined into the loops over every field of every record, the rare cases out of line.
#[inline(always)]
fn field<'r>(
    record: &'r Record<'_>,
    i: usize,
    null: Option<&[u8]>,
    path: &Path,
) -> Result<Option<&'r str>, SourceError> {
    match record.get_str(i) {
        Some(text) if is_null(text.as_bytes(), null) => Ok(None),
        Some(text) => Ok(Some(text)),
        None => field_not_text(record, i, null, path),
    }
}

/// [`field`] when field `i` is not text (or is missing): NULL if it reads as NULL,
/// else an error.
#[cold]
#[inline(never)]
fn field_not_text<'r>(
    record: &'r Record<'_>,
    i: usize,
    null: Option<&[u8]>,
    path: &Path,
) -> Result<Option<&'r str>, SourceError> {
    if is_null(record.get(i).unwrap_or_default(), null) {
        return Ok(None);
    }
    Err(invalid_utf8(path, record))
}

/// Whether a field's bytes read as NULL: the NULL text, or by default an empty field.
#[inline]
fn is_null(bytes: &[u8], null: Option<&[u8]>) -> bool {
    match null {
        Some(token) => bytes == token,
        None => bytes.is_empty(),
    }
}

fn invalid_utf8(path: &Path, record: &Record<'_>) -> SourceError {
    SourceError::Read(format!("line {}: invalid UTF-8", record_line(path, record)))
}

/// The physical line (1-based) a record starts on.
fn record_line(path: &Path, record: &Record<'_>) -> u64 {
    line_at(path, record.start)
}

/// The physical line (1-based) of the first byte at or after `offset` that is not a line
/// break. Only errors need it, so it rereads the file.
fn line_at(path: &Path, offset: u64) -> u64 {
    let Ok(file) = File::open(path) else {
        return 0;
    };
    let mut input = BufReader::with_capacity(READ_BUFFER, file);
    let mut line = 1;
    let mut at = 0u64;
    loop {
        let Ok(chunk) = input.fill_buf() else {
            return line;
        };
        if chunk.is_empty() {
            return line;
        }
        let mut used = 0;
        for &byte in chunk {
            if at >= offset && byte != b'\n' && byte != b'\r' {
                return line;
            }
            if byte == b'\n' {
                line += 1;
            }
            at += 1;
            used += 1;
        }
        input.consume(used);
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::test_support::{scan_all, spec};
    use super::*;
    use crate::source::{Key, KeyPart, Value};

    fn write(dir: &tempfile::TempDir, content: &[u8]) -> PathBuf {
        let path = dir.path().join("data.csv");
        std::fs::write(&path, content).unwrap();
        path
    }

    fn open(content: &str) -> (tempfile::TempDir, CsvSource) {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, content.as_bytes());
        let source = CsvSource::open(&CsvConfig::with_defaults(path)).unwrap();
        (dir, source)
    }

    fn texts(rows: &[Row], column: usize) -> Vec<Option<String>> {
        rows.iter().map(|r| r.values[column].to_plain_text()).collect()
    }

    /// Scans with the other columns as values; the scan's error message.
    async fn scan_err(content: &[u8], key: (&str, KeyType)) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, content);
        let mut source = CsvSource::open(&CsvConfig::with_defaults(path)).unwrap();
        let names: Vec<&str> = source.columns.iter().map(|c| c.name.as_str()).collect();
        let others: Vec<&str> = names.into_iter().filter(|n| *n != key.0).collect();
        let spec = spec(&[key], &others, 10);
        scan_all(&mut source, &spec).await.unwrap_err().to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn opens_and_describes() {
        let (dir, source) = open("id,name\n1,a\n");
        assert_eq!(
            source.describe(),
            format!("csv {}", dir.path().join("data.csv").display())
        );
        let names: Vec<&str> = source.columns().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "name"]);
        assert!(source.columns().iter().all(|c| c.declared.is_none()));
    }

    #[test]
    fn a_missing_file_fails_to_open_with_the_os_reason() {
        let err = CsvSource::open(&CsvConfig::with_defaults(PathBuf::from("data/none.csv")))
            .err()
            .unwrap();
        assert!(matches!(err, SourceError::Open(_)));
        assert!(
            err.to_string()
                .starts_with("cannot open data/none.csv: No such file or directory"),
            "{err}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn integer_keys_sort_numerically_and_text_keys_byte_wise() {
        let (_dir, mut source) = open("id,name\n10,b\n9,a\n100,c\n-1,é\n2,B\n");
        let rows = scan_all(&mut source, &spec(&[("id", KeyType::Integer)], &["name"], 2))
            .await
            .unwrap();
        let keys: Vec<&Key> = rows.iter().map(|r| &r.key).collect();
        let ints: Vec<Key> = [-1, 2, 9, 10, 100]
            .into_iter()
            .map(|i| Key(vec![KeyPart::Int(i)]))
            .collect();
        assert_eq!(keys, ints.iter().collect::<Vec<_>>());

        let rows = scan_all(&mut source, &spec(&[("name", KeyType::Text)], &["id"], 10))
            .await
            .unwrap();
        assert_eq!(
            texts(&rows, 0),
            ["2", "9", "10", "100", "-1"].map(|s| Some(s.to_string()))
        );
        let ids = spec(&[("id", KeyType::Text)], &[], 10);
        let rows = scan_all(&mut source, &ids).await.unwrap();
        let order: Vec<String> = rows.iter().map(|r| r.key.to_string()).collect();
        assert_eq!(order, [r#""-1""#, r#""10""#, r#""100""#, r#""2""#, r#""9""#]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn composite_keys_and_duplicates_keep_file_order() {
        let (_dir, mut source) = open("a,b,v\nx,2,1\ny,1,2\nx,1,3\nx,2,4\nx,1,5\n");
        let spec = spec(&[("a", KeyType::Text), ("b", KeyType::Integer)], &["v"], 10);
        let rows = scan_all(&mut source, &spec).await.unwrap();
        assert_eq!(
            texts(&rows, 0),
            ["3", "5", "1", "4", "2"].map(|s| Some(s.to_string()))
        );
        assert_eq!(rows[0].key, Key(vec![KeyPart::Text("x".into()), KeyPart::Int(1)]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn null_and_empty_string_follow_the_null_setting() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, b"id,v\n1,\n2,NULL\n3,\"\"\n4,x\n");
        let mut cfg = CsvConfig::with_defaults(path);
        let spec = spec(&[("id", KeyType::Integer)], &["v"], 10);

        let mut source = CsvSource::open(&cfg).unwrap();
        let rows = scan_all(&mut source, &spec).await.unwrap();
        let values: Vec<&Value> = rows.iter().map(|r| &r.values[0]).collect();
        let text = |s: &str| Value::Text(s.into());
        assert_eq!(values, [&Value::Null, &text("NULL"), &Value::Null, &text("x")]);

        cfg.null = Some("NULL".into());
        let mut source = CsvSource::open(&cfg).unwrap();
        let rows = scan_all(&mut source, &spec).await.unwrap();
        let values: Vec<&Value> = rows.iter().map(|r| &r.values[0]).collect();
        assert_eq!(values, [&text(""), &Value::Null, &text(""), &text("x")]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn other_delimiters_and_no_header() {
        for delimiter in [b';', b'\t'] {
            let dir = tempfile::tempdir().unwrap();
            let d = delimiter as char;
            let path = write(&dir, format!("2{d}b,c\n1{d}a\n").as_bytes());
            let cfg = CsvConfig {
                path,
                delimiter,
                header: false,
                null: None,
                types: Vec::new(),
            };
            let mut source = CsvSource::open(&cfg).unwrap();
            let names: Vec<&str> = source.columns().iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names, ["1", "2"]);
            let rows = scan_all(&mut source, &spec(&[("1", KeyType::Integer)], &["2"], 10))
                .await
                .unwrap();
            assert_eq!(texts(&rows, 0), [Some("a".into()), Some("b,c".into())]);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bom_is_stripped_from_the_first_header_name() {
        let (_dir, mut source) = open("\u{feff}id,v\n1,x\n");
        assert_eq!(source.columns()[0].name, "id");
        let rows = scan_all(&mut source, &spec(&[("id", KeyType::Integer)], &["v"], 10))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_column_is_a_schema_error() {
        let (_dir, mut source) = open("a,b,c\n1,2,3\n");
        let err = source
            .scan(&spec(&[("a", KeyType::Integer)], &["x"], 10))
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::Schema(_)));
        assert_eq!(err.to_string(), "column `x` not found (columns: a, b, c)");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn errors_name_the_physical_line() {
        let int = ("id", KeyType::Integer);
        assert_eq!(
            scan_err(
                b"id,a,b,c,d\n1,2,3,4,5\n\n2,2,3,4,5\n\"3\",\"multi\nline\",3,4,5\n4,2,3,4,5\n5,2,3,4\n",
                int
            )
            .await,
            "line 8: expected 5 fields, found 4"
        );
        assert_eq!(
            scan_err(b"id,v\r\n1,a\r\n\r\n2,\xff\r\n", int).await,
            "line 4: invalid UTF-8"
        );
        assert_eq!(
            scan_err(b"id,v\n1,a\n2,b\n,c\n", int).await,
            "line 4: key column `id` is empty"
        );
        assert_eq!(
            scan_err(b"id,v\n1,a\nx1,b\n", int).await,
            "line 3: key column `id`: key \"x1\" is not an integer"
        );
        assert_eq!(
            scan_err(b"id,v\n1,a\n,b\n", ("id", KeyType::Text)).await,
            "line 3: key column `id` is empty"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn invalid_utf8_in_the_header_names_line_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, b"i\xffd,v\n1,a\n");
        let err = CsvSource::open(&CsvConfig::with_defaults(path)).err().unwrap();
        assert_eq!(err.to_string(), "line 1: invalid UTF-8");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_beyond_the_memory_budget_spills_and_stays_complete() {
        let dir = tempfile::tempdir().unwrap();
        let mut content = String::from("id,seq,pad\n");
        for i in 0..5000 {
            content.push_str(&format!("{},{i},{}\n", (i * 7919) % 1201, "x".repeat(i % 13)));
        }
        let path = write(&dir, content.as_bytes());
        let mut source = CsvSource::open(&CsvConfig::with_defaults(path)).unwrap();
        let mut spec = spec(&[("id", KeyType::Integer)], &["seq", "pad"], 333);
        let in_memory = scan_all(&mut source, &spec).await.unwrap();
        spec.memory_budget = 4096;
        let spilled = scan_all(&mut source, &spec).await.unwrap();
        assert!(source.scan.as_ref().is_some_and(|s| s.rows.is_spilled()));
        assert_eq!(spilled.len(), 5000);
        assert_eq!(spilled, in_memory);
        assert!(spilled.windows(2).all(|w| w[0].key <= w[1].key));
    }
}
