//! The digest-first compare of two files. Each file is read once, both at the same time,
//! into an index that keeps per row only its key, a digest of its normalized compared
//! fields and where the row starts in the file; the index is sorted within the memory
//! budget (spilling beyond it). The two indexes are merge-joined by key, and only the
//! rows of keys whose digests differ, that are missing or duplicated, or that a digest
//! cannot judge (an unparsable value, a recent change) are read again and handed to the
//! [`Comparer`] like rows from any other source: the findings are the same, the work is
//! a fraction.

use std::cmp::Ordering;

use crate::compare::Comparer;
use crate::compare::digest::DIGEST_LEN;
use crate::compare::merge::{GroupSink, MergeError};
use crate::job::Side;
use crate::source::file::IndexedFile;
use crate::source::file::spill_sort::{SortedRows, SpillSorter, decode_key};
use crate::source::{Row, ScanSpec, SourceError};

/// An index entry's bytes after its key: whether the digest is valid, the digest, and
/// the row's locator.
const ENTRY_LEN: usize = 1 + DIGEST_LEN + 8;

/// How often indexing reports progress, in rows.
const PROGRESS_EVERY: u64 = 64 * 1024;

/// One side of an indexed compare: the file and the scan it is read as.
pub struct IndexedSide<'a> {
    /// The file.
    pub file: &'a mut dyn IndexedFile,
    /// What to read from it.
    pub spec: &'a ScanSpec,
}

/// Indexes both files in parallel, then merge-joins the indexes, handing every key whose
/// rows could differ to `comparer` and `sink`. Returns the rows read from each side.
/// `progress` hears the rows indexed so far, per side. Blocking work.
pub fn compare_indexed<S: GroupSink>(
    owner: IndexedSide<'_>,
    replica: IndexedSide<'_>,
    comparer: &mut Comparer,
    sink: &mut S,
    progress: &(dyn Fn(Side, u64) + Sync),
) -> Result<(u64, u64), MergeError<S::Error>> {
    let (owner_index, replica_index) = std::thread::scope(|scope| {
        let mut owner_comparer = comparer.clone();
        let owner_spec = owner.spec;
        let owner_file = &mut *owner.file;
        let owner_task = scope
            .spawn(move || build_index(owner_file, owner_spec, &mut owner_comparer, Side::Owner, progress));
        let mut replica_comparer = comparer.clone();
        let replica_index = build_index(
            &mut *replica.file,
            replica.spec,
            &mut replica_comparer,
            Side::Replica,
            progress,
        );
        let owner_index = owner_task.join().unwrap_or_else(|_| {
            Err(SourceError::Read(
                "indexing the owner stopped unexpectedly".into(),
            ))
        });
        (owner_index, replica_index)
    });
    let (owner_index, owner_rows) = owner_index.map_err(|e| MergeError::Source(Side::Owner, e))?;
    let (replica_index, replica_rows) = replica_index.map_err(|e| MergeError::Source(Side::Replica, e))?;
    let mut owner_cursor = IndexCursor::new(Side::Owner, owner_index, owner.file)?;
    let mut replica_cursor = IndexCursor::new(Side::Replica, replica_index, replica.file)?;
    merge_indexes(&mut owner_cursor, &mut replica_cursor, comparer, sink)?;
    Ok((owner_rows, replica_rows))
}

/// Reads a file into a sorted index of `key | valid | digest | locator` entries.
fn build_index(
    file: &mut dyn IndexedFile,
    spec: &ScanSpec,
    comparer: &mut Comparer,
    side: Side,
    progress: &(dyn Fn(Side, u64) + Sync),
) -> Result<(SortedRows, u64), SourceError> {
    let mut sorter = SpillSorter::new(spec.memory_budget);
    let mut rows = 0u64;
    file.index(spec, &mut |record| {
        sorter.begin()?;
        for part in record.key {
            sorter.key_part(part);
        }
        let mut entry = [0u8; ENTRY_LEN];
        if let Some(digest) = comparer.digest(side, record.values) {
            entry[0] = 1;
            entry[1..=DIGEST_LEN].copy_from_slice(&digest);
        }
        entry[1 + DIGEST_LEN..].copy_from_slice(&record.locator.to_le_bytes());
        sorter.raw(&entry);
        sorter.commit()?;
        rows += 1;
        if rows % PROGRESS_EVERY == 0 {
            progress(side, rows);
        }
        Ok(())
    })?;
    progress(side, rows);
    Ok((sorter.finish()?, rows))
}

/// A side's sorted index, one entry ahead, and its file for reading rows again.
struct IndexCursor<'a> {
    side: Side,
    index: SortedRows,
    file: &'a mut dyn IndexedFile,
    /// The current entry's bytes (empty at the end) and how many of them are its key.
    entry: Vec<u8>,
    key_len: usize,
    /// Entries of the current key group.
    group: Vec<[u8; ENTRY_LEN]>,
    /// Rows of the current group, once read again.
    rows: Vec<Row>,
}

impl<'a> IndexCursor<'a> {
    fn new(
        side: Side,
        index: SortedRows,
        file: &'a mut dyn IndexedFile,
    ) -> Result<Self, (Side, SourceError)> {
        let mut cursor = IndexCursor {
            side,
            index,
            file,
            entry: Vec::new(),
            key_len: 0,
            group: Vec::new(),
            rows: Vec::new(),
        };
        cursor.advance()?;
        Ok(cursor)
    }

    fn advance(&mut self) -> Result<(), (Side, SourceError)> {
        match self.index.next_raw(&mut self.entry) {
            Ok(Some(key_len)) if self.entry.len() == key_len + ENTRY_LEN => {
                self.key_len = key_len;
                Ok(())
            }
            Ok(Some(_)) => Err((
                self.side,
                SourceError::Read("a sorted index entry is corrupt".into()),
            )),
            Ok(None) => {
                self.entry.clear();
                self.key_len = 0;
                Ok(())
            }
            Err(e) => Err((self.side, e)),
        }
    }

    fn key(&self) -> Option<&[u8]> {
        (!self.entry.is_empty()).then(|| &self.entry[..self.key_len])
    }

    /// Takes every entry whose key is `key` into the group (none when this side lacks it).
    fn take_group(&mut self, key: &[u8]) -> Result<(), (Side, SourceError)> {
        self.group.clear();
        self.rows.clear();
        while self.key() == Some(key) {
            let mut entry = [0u8; ENTRY_LEN];
            entry.copy_from_slice(&self.entry[self.key_len..]);
            self.group.push(entry);
            self.advance()?;
        }
        Ok(())
    }

    /// The group's digest when it is one row with a valid digest.
    fn single_digest(&self) -> Option<&[u8]> {
        match self.group.as_slice() {
            [entry] if entry[0] == 1 => Some(&entry[1..=DIGEST_LEN]),
            _ => None,
        }
    }

    /// Reads the group's rows again, checking they still have the indexed key.
    fn read_rows(&mut self, key: &crate::source::Key) -> Result<(), (Side, SourceError)> {
        for entry in &self.group {
            let mut locator = [0u8; 8];
            locator.copy_from_slice(&entry[1 + DIGEST_LEN..]);
            let row = self
                .file
                .read_at(u64::from_le_bytes(locator))
                .map_err(|e| (self.side, e))?;
            if row.key != *key {
                let message = format!(
                    "the file changed while recon read it (key {key} became {})",
                    row.key
                );
                return Err((self.side, SourceError::Read(message)));
            }
            self.rows.push(row);
        }
        Ok(())
    }
}

/// Merge-joins two sorted indexes; keys with equal single digests on both sides are
/// consistent without reading their rows.
fn merge_indexes<S: GroupSink>(
    owner: &mut IndexCursor<'_>,
    replica: &mut IndexCursor<'_>,
    comparer: &mut Comparer,
    sink: &mut S,
) -> Result<(), MergeError<S::Error>> {
    let mut key_bytes = Vec::new();
    loop {
        let order = match (owner.key(), replica.key()) {
            (None, None) => return Ok(()),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(o), Some(r)) => o.cmp(r),
        };
        key_bytes.clear();
        let (key_side, smaller) = if order.is_le() {
            (owner.side, owner.key())
        } else {
            (replica.side, replica.key())
        };
        key_bytes.extend_from_slice(smaller.unwrap_or_default());
        owner.take_group(&key_bytes)?;
        replica.take_group(&key_bytes)?;
        if let (Some(o), Some(r)) = (owner.single_digest(), replica.single_digest())
            && o == r
        {
            continue;
        }
        let key = decode_key(&key_bytes).map_err(|e| MergeError::Source(key_side, e))?;
        owner.read_rows(&key)?;
        replica.read_rows(&key)?;
        let outcome = comparer.compare_group(&key, &owner.rows, &replica.rows);
        sink.group(&key, &owner.rows, &replica.rows, outcome)
            .map_err(MergeError::Sink)?;
    }
}
