//! Packed rows: a page of rows as one byte buffer, each row its key in order-preserving
//! bytes ([`super::key_bytes`]) and its cells in the source's own wire encoding. A
//! database scan hands its rows over this way, and the compare judges most of them by
//! their bytes alone: a [`Row`] of owned values is built only for the rows that differ,
//! which is where a scan of two mostly equal tables spent most of its time.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use crate::source::{FieldType, Key, Row, SourceError, Value, key_bytes};

/// How a column's cells encode their values. Two columns with the same encoding hold
/// identical values exactly when their cells hold the same bytes (or are both NULL);
/// the number means nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellEncoding(pub u32);

/// Reads the cells of one scan's packed rows back into values.
pub trait RowCodec: Send + Sync + fmt::Debug {
    /// The value of column `col` (in the scan's column order) from its cell.
    fn value(&self, cell: Option<&[u8]>, col: usize, key: &dyn Fn() -> String) -> Result<Value, SourceError>;
    /// How column `col`'s cells are encoded.
    fn encoding(&self, col: usize) -> CellEncoding;
    /// Whether two identical cells like `cell` of column `col` are sure to compare
    /// equal as `ty`, beyond what the column's declared type promises (see
    /// [`crate::compare::CompareField::same_value_is_equal`]): a binary instant within
    /// the years every parser reads. False when unsure.
    fn identical_cells_equal(&self, _col: usize, _cell: &[u8], _ty: FieldType) -> bool {
        false
    }
}

/// Marks a NULL cell in [`RowBatch::spans`].
const NULL: u32 = u32::MAX;

/// Rows packed into one buffer, with the codec that reads their cells.
#[derive(Debug)]
pub struct RowBatch {
    codec: Arc<dyn RowCodec>,
    width: usize,
    data: Vec<u8>,
    /// Per row: the key's span, then one span per cell (`len == NULL` for NULL).
    spans: Vec<(u32, u32)>,
    /// Rows dropped from the front.
    skip: usize,
}

impl RowBatch {
    /// An empty batch of rows with `width` cells each, read by `codec`.
    pub fn new(codec: Arc<dyn RowCodec>, width: usize) -> RowBatch {
        RowBatch {
            codec,
            width,
            data: Vec::new(),
            spans: Vec::new(),
            skip: 0,
        }
    }

    /// An empty batch like this one (same codec and width), with room for `rows` rows.
    pub fn empty_like(&self, rows: usize) -> RowBatch {
        let mut batch = RowBatch::new(self.codec.clone(), self.width);
        batch.spans.reserve(rows * (1 + self.width));
        batch
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.spans.len() / (1 + self.width) - self.skip
    }

    /// True when the batch holds no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of row data held.
    pub fn data_len(&self) -> usize {
        self.data.len()
    }

    /// The codec that reads the cells.
    pub fn codec(&self) -> &dyn RowCodec {
        &*self.codec
    }

    fn span(&self, row: usize, slot: usize) -> (u32, u32) {
        self.spans[(self.skip + row) * (1 + self.width) + slot]
    }

    /// Row `row`'s key bytes.
    pub fn key(&self, row: usize) -> &[u8] {
        let (start, len) = self.span(row, 0);
        &self.data[start as usize..(start + len) as usize]
    }

    /// The key bytes of the last row, if any.
    pub fn last_key(&self) -> Option<&[u8]> {
        self.len().checked_sub(1).map(|last| self.key(last))
    }

    /// Row `row`'s cell `col`; `None` for NULL.
    pub fn cell(&self, row: usize, col: usize) -> Option<&[u8]> {
        let (start, len) = self.span(row, 1 + col);
        (len != NULL).then(|| &self.data[start as usize..(start + len) as usize])
    }

    /// Row `row`'s key, decoded.
    pub fn decoded_key(&self, row: usize) -> Result<Key, SourceError> {
        key_bytes::decode(self.key(row))
            .map_err(|e| SourceError::Read(format!("a packed key is corrupt: {e}")))
    }

    /// Row `row`'s value of column `col`, decoded.
    pub fn value(&self, row: usize, col: usize) -> Result<Value, SourceError> {
        let key = || {
            self.decoded_key(row)
                .map_or_else(|e| e.to_string(), |k| k.to_string())
        };
        self.codec.value(self.cell(row, col), col, &key)
    }

    /// Row `row`, decoded.
    pub fn row(&self, row: usize) -> Result<Row, SourceError> {
        let key = self.decoded_key(row)?;
        let key_text = || key.to_string();
        let values = (0..self.width)
            .map(|col| self.codec.value(self.cell(row, col), col, &key_text))
            .collect::<Result<_, _>>()?;
        Ok(Row { key, values })
    }

    /// The rows in `range`, decoded.
    pub fn rows(&self, range: Range<usize>) -> Result<Vec<Row>, SourceError> {
        range.map(|row| self.row(row)).collect()
    }

    /// Where the next byte goes, as a span offset.
    fn offset(&self) -> Result<u32, String> {
        u32::try_from(self.data.len()).map_err(|_| "a page of rows is too large (4 GiB or more)".into())
    }

    /// Starts a new row with the given key bytes. A row is completed by exactly `width`
    /// calls to [`RowBatch::push_cell`].
    pub fn begin_row(&mut self, key: &[u8]) -> Result<(), String> {
        let start = self.offset()?;
        self.data.extend_from_slice(key);
        let end = self.offset()?;
        self.spans.push((start, end - start));
        Ok(())
    }

    /// Appends a cell to the row begun last.
    pub fn push_cell(&mut self, cell: Option<&[u8]>) -> Result<(), String> {
        match cell {
            None => self.spans.push((0, NULL)),
            Some(bytes) => {
                let start = self.offset()?;
                self.data.extend_from_slice(bytes);
                let end = self.offset()?;
                self.spans.push((start, end - start));
            }
        }
        Ok(())
    }

    /// Drops a row begun and not completed (a cell failed to arrive).
    pub fn abandon_row(&mut self) {
        let stride = 1 + self.width;
        let complete = self.spans.len() / stride * stride;
        if complete < self.spans.len() {
            let start = self.spans[complete].0 as usize;
            self.spans.truncate(complete);
            self.data.truncate(start);
        }
    }

    /// Appends a copy of `other`'s row `row` (same width and codec).
    pub fn push_from(&mut self, other: &RowBatch, row: usize) -> Result<(), String> {
        self.begin_row(other.key(row))?;
        for col in 0..self.width {
            self.push_cell(other.cell(row, col))?;
        }
        Ok(())
    }

    /// Drops the first `n` rows (without moving the others).
    pub fn skip_front(&mut self, n: usize) {
        self.skip += n.min(self.len());
    }

    /// Moves the first `n` rows into a new batch (copied); the others stay in place.
    pub fn take_front(&mut self, n: usize) -> Result<RowBatch, String> {
        let n = n.min(self.len());
        let mut front = self.empty_like(n);
        for row in 0..n {
            front.push_from(self, row)?;
        }
        self.skip_front(n);
        Ok(front)
    }

    /// Splits off the rows from `at` on into a new batch (copied), keeping the rows
    /// before it.
    pub fn split_off(&mut self, at: usize) -> Result<RowBatch, String> {
        let mut tail = self.empty_like(self.len().saturating_sub(at));
        for row in at..self.len() {
            tail.push_from(self, row)?;
        }
        self.truncate(at);
        Ok(tail)
    }

    /// Keeps the first `n` rows.
    pub fn truncate(&mut self, n: usize) {
        if n >= self.len() {
            return;
        }
        let first_dropped = (self.skip + n) * (1 + self.width);
        let data_end = self.spans[first_dropped].0 as usize;
        self.spans.truncate(first_dropped);
        self.data.truncate(data_end);
    }

    /// Removes every row, keeping the buffers.
    pub fn clear(&mut self) {
        self.spans.clear();
        self.data.clear();
        self.skip = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::KeyPart;

    #[derive(Debug)]
    struct Text;

    impl RowCodec for Text {
        fn value(
            &self,
            cell: Option<&[u8]>,
            col: usize,
            key: &dyn Fn() -> String,
        ) -> Result<Value, SourceError> {
            match cell {
                None => Ok(Value::Null),
                Some(b) => String::from_utf8(b.to_vec()).map(Value::Text).map_err(|_| {
                    SourceError::Read(format!("column {col} in row with key {}: not UTF-8", key()))
                }),
            }
        }
        fn encoding(&self, _col: usize) -> CellEncoding {
            CellEncoding(0)
        }
    }

    fn batch(rows: &[(i64, Option<&str>, &[u8])]) -> RowBatch {
        let mut batch = RowBatch::new(Arc::new(Text), 2);
        for (id, a, b) in rows {
            let mut key = Vec::new();
            key_bytes::push_int(&mut key, *id);
            batch.begin_row(&key).unwrap();
            batch.push_cell(a.map(str::as_bytes)).unwrap();
            batch.push_cell(Some(b)).unwrap();
        }
        batch
    }

    fn ids(batch: &RowBatch) -> Vec<i64> {
        (0..batch.len())
            .map(|i| match batch.decoded_key(i).unwrap().0[..] {
                [KeyPart::Int(id)] => id,
                _ => panic!("integer keys"),
            })
            .collect()
    }

    #[test]
    fn rows_keep_their_keys_cells_and_nulls() {
        let b = batch(&[(1, Some("a"), b"x"), (2, None, b""), (3, Some(""), b"z")]);
        assert_eq!((b.len(), ids(&b)), (3, vec![1, 2, 3]));
        assert_eq!((b.cell(0, 0), b.cell(0, 1)), (Some(&b"a"[..]), Some(&b"x"[..])));
        // NULL is not the empty cell.
        assert_eq!((b.cell(1, 0), b.cell(1, 1)), (None, Some(&b""[..])));
        assert_eq!(b.cell(2, 0), Some(&b""[..]));
        let row = b.row(1).unwrap();
        assert_eq!(row.values, vec![Value::Null, Value::Text(String::new())]);
    }

    #[test]
    fn rows_can_be_dropped_split_off_and_copied() {
        let mut b = batch(&[
            (1, Some("a"), b"x"),
            (2, None, b"y"),
            (3, Some("c"), b"z"),
            (4, Some("d"), b"w"),
        ]);
        b.skip_front(1);
        assert_eq!(ids(&b), vec![2, 3, 4]);
        let tail = b.split_off(1).unwrap();
        let mut rest = batch(&[(3, Some("c"), b"z"), (4, Some("d"), b"w"), (5, None, b"v")]);
        let front = rest.take_front(2).unwrap();
        assert_eq!((ids(&front), ids(&rest)), (vec![3, 4], vec![5]));
        assert_eq!((front.cell(1, 0), rest.cell(0, 0)), (Some(&b"d"[..]), None));
        assert_eq!((ids(&b), ids(&tail)), (vec![2], vec![3, 4]));
        assert_eq!(tail.cell(1, 1), Some(&b"w"[..]));
        let mut copy = tail.empty_like(1);
        copy.push_from(&tail, 1).unwrap();
        copy.push_from(&b, 0).unwrap();
        assert_eq!(ids(&copy), vec![4, 2]);
        assert_eq!((copy.cell(1, 0), copy.cell(1, 1)), (None, Some(&b"y"[..])));
        copy.truncate(1);
        assert_eq!(ids(&copy), vec![4]);
        copy.clear();
        assert!(copy.is_empty());
    }

    #[test]
    fn a_row_left_unfinished_is_dropped_whole() {
        let mut b = batch(&[(1, Some("a"), b"x")]);
        let mut key = Vec::new();
        key_bytes::push_int(&mut key, 2);
        b.begin_row(&key).unwrap();
        b.push_cell(Some(b"half")).unwrap();
        b.abandon_row();
        assert_eq!(ids(&b), vec![1]);
        assert_eq!(b.data_len(), 9 + 2);
    }

    #[test]
    fn a_cell_that_does_not_decode_names_its_row() {
        let b = batch(&[(7, Some("a"), b"\xff"), (8, Some("b"), &[0xff])]);
        let err = b.row(1).unwrap_err().to_string();
        assert_eq!(err, "column 1 in row with key 8: not UTF-8");
    }
}
