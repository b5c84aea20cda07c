//! The digest-first compare of two files. Each file is read once, both at the same time,
//! into an index that keeps per row only its key, a digest of its normalized compared
//! fields and where the row starts in the file; the index is sorted within the memory
//! budget (spilling beyond it). The two indexes are merge-joined by key, and only the
//! rows of keys whose digests differ or that a digest cannot judge (an unparsable value,
//! a recent change) are read again and handed to the [`Comparer`] like rows from any
//! other source; a key missing on a side or duplicated is judged by its row counts
//! unless its rows could change that. The findings are the same, the work is a fraction.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, Write};

use crate::compare::digest::DIGEST_LEN;
use crate::compare::merge::{GroupSink, MergeError};
use crate::compare::{Comparer, GroupOutcome, lanes};
use crate::job::Side;
use crate::source::file::IndexedFile;
use crate::source::file::spill_sort::{SortedRows, SpillSorter, decode_key};
use crate::source::{Key, KeyPart, Row, ScanSpec, SourceError, Value, key_bytes};

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
    tracing::debug!(
        owner_rows,
        replica_rows,
        "Indexed both files; merging the indexes."
    );
    let files = Rereads {
        owner: owner.file,
        replica: replica.file,
        // Three parts of both sides' rows at most are held at once (one read, one
        // waiting, one written): a quarter of the budget, as one part of both was.
        hold: (owner.spec.memory_budget / 24).max(4096),
    };
    std::thread::scope(|scope| {
        let mut owner_cursor = IndexCursor::new(Side::Owner, feed(scope, owner_index))?;
        let mut replica_cursor = IndexCursor::new(Side::Replica, feed(scope, replica_index))?;
        merge_indexes(&mut owner_cursor, &mut replica_cursor, files, comparer, sink)
    })?;
    Ok((owner_rows, replica_rows))
}

/// Short entries handed from a merging thread at a time.
const FEED_BATCH: usize = 4096;

/// An index merged from runs is merged on a thread of its own, which hands its entries
/// on in batches: the two sides' merges and the merge-join of the two then share the
/// cores. An index in memory is read where it is.
fn feed<'scope>(scope: &'scope std::thread::Scope<'scope, '_>, index: SortedIndex) -> SortedIndex {
    let SortedIndex::ShortMerge(mut merge) = index else {
        return index;
    };
    let (sender, receiver) = std::sync::mpsc::sync_channel(4);
    let (spent, spent_batches) = std::sync::mpsc::channel::<Vec<ShortEntry>>();
    scope.spawn(move || {
        loop {
            let mut batch = spent_batches
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(FEED_BATCH));
            let end = loop {
                match merge.next() {
                    Ok(Some(entry)) if batch.len() + 1 < FEED_BATCH => batch.push(entry),
                    Ok(Some(entry)) => {
                        batch.push(entry);
                        break Ok(false);
                    }
                    Ok(None) => break Ok(true),
                    Err(e) => break Err(e),
                }
            };
            let (batch, end) = match end {
                Ok(end) => (Ok(batch), end),
                Err(e) => (Err(e), true),
            };
            // A closed channel: the merge-join stopped early (an error on its side).
            if sender.send(batch).is_err() || end {
                return;
            }
        }
    });
    SortedIndex::Fed {
        receiver,
        spent,
        batch: ShortBatch::default(),
    }
}

/// Reads a file into a sorted index of `key | valid | digest | locator` entries.
fn build_index(
    file: &mut dyn IndexedFile,
    spec: &ScanSpec,
    comparer: &mut Comparer,
    side: Side,
    progress: &(dyn Fn(Side, u64) + Sync),
) -> Result<(SortedIndex, u64), SourceError> {
    let mut index = IndexBuilder::new(spec, file.byte_size());
    let mut pending = PendingEntries::default();
    let mut rows = 0u64;
    file.index(spec, &mut |record| {
        pending.push(
            &mut index,
            record.key,
            comparer.digest_input(side, record.values),
            record.locator,
        )?;
        rows += 1;
        if rows % PROGRESS_EVERY == 0 {
            progress(side, rows);
        }
        Ok(())
    })?;
    pending.flush(&mut index)?;
    progress(side, rows);
    Ok((index.finish()?, rows))
}

/// Index entries whose digests are hashed together, [`lanes::LANES`] rows at a time; they
/// reach the index in file order, which keeps equal keys in file order.
#[derive(Default)]
struct PendingEntries {
    inputs: lanes::Batch,
    /// The entries' encoded keys, back to back, and where each ends.
    keys: Vec<u8>,
    key_ends: [usize; lanes::LANES],
    locators: [u64; lanes::LANES],
    digests: [[u8; DIGEST_LEN]; lanes::LANES],
}

impl PendingEntries {
    /// Adds a row's entry: its key, the input of its digest (`None`: the digest is not
    /// valid) and its locator.
    fn push(
        &mut self,
        index: &mut IndexBuilder,
        key: &[KeyPart],
        digest_input: Option<&[u8]>,
        locator: u64,
    ) -> Result<(), SourceError> {
        for part in key {
            key_bytes::push_part(&mut self.keys, part);
        }
        if digest_input.is_some_and(|input| self.inputs.push(input)) {
            let at = self.inputs.len() - 1;
            self.key_ends[at] = self.keys.len();
            self.locators[at] = locator;
            if self.inputs.is_full() {
                self.flush(index)?;
            }
            return Ok(());
        }
        // Not valid, or longer than a block: on its own, after the rows waiting.
        self.flush(index)?;
        let result = index.push(&self.keys, digest_input.map(lanes::hash_prefix), locator);
        self.keys.clear();
        result
    }

    /// Hashes the waiting rows' inputs and adds their entries to the index. The key of
    /// a row added after them, not waiting, stays.
    fn flush(&mut self, index: &mut IndexBuilder) -> Result<(), SourceError> {
        let count = self.inputs.len();
        if count == 0 {
            return Ok(());
        }
        self.inputs.finish(&mut self.digests);
        let mut start = 0;
        for at in 0..count {
            let end = self.key_ends[at];
            index.push(&self.keys[start..end], Some(self.digests[at]), self.locators[at])?;
            start = end;
        }
        self.keys.drain(..start);
        Ok(())
    }
}

/// An index entry whose key's bytes are short (an integer key, or text of a dozen
/// bytes): a fixed size, so that a plain vector of them sorts in place, without the
/// arena and per-row offsets of the general sorter. Most tables have such a key.
#[derive(Clone, Copy, Debug)]
struct ShortEntry {
    /// The key's bytes, zero-padded. Padding keeps their order: an encoded key is never
    /// a prefix of another.
    key: [u8; SHORT_KEY],
    digest: [u8; DIGEST_LEN],
    /// The row's locator (low 56 bits), the key's length and whether `digest` is valid.
    meta: u64,
}

/// Entries read before the index is sized from the file's size and their spacing.
const SIZE_SAMPLE: usize = 4096;

/// The longest key bytes a [`ShortEntry`] holds.
const SHORT_KEY: usize = 16;
const VALID_DIGEST: u64 = 1 << 63;
const KEY_LEN_SHIFT: u32 = 56;
/// Locators are file offsets, far below this.
const LOCATOR_LIMIT: u64 = 1 << KEY_LEN_SHIFT;

impl ShortEntry {
    fn new(key: &[u8], digest: Option<[u8; DIGEST_LEN]>, locator: u64) -> ShortEntry {
        let mut padded = [0; SHORT_KEY];
        padded[..key.len()].copy_from_slice(key);
        let valid = if digest.is_some() { VALID_DIGEST } else { 0 };
        ShortEntry {
            key: padded,
            digest: digest.unwrap_or_default(),
            meta: valid | (key.len() as u64) << KEY_LEN_SHIFT | locator,
        }
    }

    /// Orders by key, then by locator (file order, for equal keys).
    fn order(&self) -> (u128, u64) {
        (u128::from_be_bytes(self.key), self.meta & !VALID_DIGEST)
    }

    fn key_bytes(&self) -> &[u8] {
        &self.key[..((self.meta & !VALID_DIGEST) >> KEY_LEN_SHIFT) as usize]
    }

    fn entry(&self) -> GroupEntry {
        GroupEntry {
            digest: (self.meta & VALID_DIGEST != 0).then_some(self.digest),
            locator: self.meta & (LOCATOR_LIMIT - 1),
        }
    }

    /// Its bytes in a run on disk.
    fn to_bytes(self) -> [u8; SHORT_ENTRY_BYTES] {
        let mut bytes = [0u8; SHORT_ENTRY_BYTES];
        bytes[..SHORT_KEY].copy_from_slice(&self.key);
        bytes[SHORT_KEY..SHORT_KEY + DIGEST_LEN].copy_from_slice(&self.digest);
        bytes[SHORT_KEY + DIGEST_LEN..].copy_from_slice(&self.meta.to_le_bytes());
        bytes
    }

    /// The entry whose bytes in a run are `bytes` ([`SHORT_ENTRY_BYTES`] of them).
    fn from_bytes(bytes: &[u8]) -> ShortEntry {
        let mut entry = ShortEntry {
            key: [0; SHORT_KEY],
            digest: [0; DIGEST_LEN],
            meta: 0,
        };
        entry.key.copy_from_slice(&bytes[..SHORT_KEY]);
        entry
            .digest
            .copy_from_slice(&bytes[SHORT_KEY..SHORT_KEY + DIGEST_LEN]);
        let mut meta = [0u8; 8];
        meta.copy_from_slice(&bytes[SHORT_KEY + DIGEST_LEN..SHORT_ENTRY_BYTES]);
        entry.meta = u64::from_le_bytes(meta);
        entry
    }

    /// Its bytes in the general index layout; returns the key's length.
    fn write(&self, into: &mut Vec<u8>) -> usize {
        into.clear();
        into.extend_from_slice(self.key_bytes());
        let GroupEntry { digest, locator } = self.entry();
        push_entry(into, digest.as_ref(), locator);
        self.key_bytes().len()
    }
}

/// Appends an entry's bytes after its key: whether the digest is valid, the digest and
/// the locator.
fn push_entry(into: &mut Vec<u8>, digest: Option<&[u8; DIGEST_LEN]>, locator: u64) {
    match digest {
        Some(digest) => {
            into.push(1);
            into.extend_from_slice(digest);
        }
        None => into.extend_from_slice(&[0; 1 + DIGEST_LEN]),
    }
    into.extend_from_slice(&locator.to_le_bytes());
}

/// Short entries below which [`sort_short`] compares them instead of partitioning them:
/// a partition costs a pass over its buckets however few the entries.
const PARTITION_MIN: usize = 1024;
/// The key bits a partition buckets entries by. 512 buckets are few enough for the places
/// entries move to to stay in cache, and a bucket of a million entries is small after
/// two partitions.
const PARTITION_BITS: u32 = 9;
const BUCKETS: usize = 1 << PARTITION_BITS;

/// Sorts short entries into [`ShortEntry::order`], in place: partitions them by the
/// highest key bits that vary, then each bucket the same way, until they are few enough
/// to compare.
fn sort_short(entries: &mut [ShortEntry]) {
    if entries.len() >= PARTITION_MIN
        && let Some(shift) = top_bits(entries)
    {
        let mut start = 0;
        for end in partition(entries, shift) {
            sort_short(&mut entries[start..end]);
            start = end;
        }
    } else {
        entries.sort_unstable_by_key(ShortEntry::order);
    }
}

/// How far to shift keys (as big-endian numbers) right for [`bucket`] to read the
/// highest bits that vary across `entries`; `None` when no key bit varies.
fn top_bits(entries: &[ShortEntry]) -> Option<u32> {
    let first = u128::from_be_bytes(entries.first()?.key);
    let varying = entries.iter().fold(0, |varying, entry| {
        varying | u128::from_be_bytes(entry.key) ^ first
    });
    (varying != 0).then(|| (u128::BITS - varying.leading_zeros()).saturating_sub(PARTITION_BITS))
}

/// An entry's bucket: its key's bits from `shift`. The bits above them are the same in
/// every entry, so buckets ascend with keys.
fn bucket(entry: &ShortEntry, shift: u32) -> usize {
    (u128::from_be_bytes(entry.key) >> shift) as usize & (BUCKETS - 1)
}

/// Moves entries in place so that their buckets ascend, and returns each bucket's end.
/// Each entry is swapped to the next free place of its bucket, and the entry it displaces
/// is placed in a later round rather than at once, so that the moves do not wait on each
/// other.
fn partition(entries: &mut [ShortEntry], shift: u32) -> [usize; BUCKETS] {
    let mut ends = [0; BUCKETS];
    for entry in entries.iter() {
        ends[bucket(entry, shift)] += 1;
    }
    let mut end = 0;
    for bucket_end in &mut ends {
        end += *bucket_end;
        *bucket_end = end;
    }
    let mut next = [0; BUCKETS];
    next[1..].copy_from_slice(&ends[..BUCKETS - 1]);
    while next != ends {
        for at in 0..BUCKETS {
            // Every place from the bucket's next to its end holds an entry not yet placed.
            for place in next[at]..ends[at] {
                let to = bucket(&entries[place], shift);
                entries.swap(place, next[to]);
                next[to] += 1;
            }
        }
    }
    ends
}

/// An index being built. While every key is short, entries are [`ShortEntry`]s, sorted
/// and written to a temporary file as a run of fixed-size records when they fill their
/// half of the budget. The first long key moves those runs and entries to the general
/// sorter, and every entry after them goes there too.
struct IndexBuilder {
    short: Option<Vec<ShortEntry>>,
    /// Sorted runs of short entries on disk, oldest first.
    short_runs: Vec<ShortRun>,
    /// The file's size, to size the short entries once their average spacing is known.
    file_bytes: Option<u64>,
    /// How many short entries may be held: half the budget, since growing the vector
    /// holds its old and new buffers at once.
    max_short: usize,
    sorter: SpillSorter,
    /// The entry's bytes after its key, of the row being added.
    scratch: Vec<u8>,
}

impl IndexBuilder {
    fn new(spec: &ScanSpec, file_bytes: Option<u64>) -> IndexBuilder {
        IndexBuilder {
            short: Some(Vec::new()),
            short_runs: Vec::new(),
            file_bytes,
            max_short: (spec.memory_budget / (2 * size_of::<ShortEntry>())).max(16),
            sorter: SpillSorter::new(spec.memory_budget),
            scratch: Vec::new(),
        }
    }

    /// Adds an entry: the row's key encoded by [`key_bytes::push_part`], its digest
    /// (`None`: not valid) and its locator.
    fn push(
        &mut self,
        key: &[u8],
        digest: Option<[u8; DIGEST_LEN]>,
        locator: u64,
    ) -> Result<(), SourceError> {
        if let Some(short) = &self.short {
            if key.len() <= SHORT_KEY && locator < LOCATOR_LIMIT {
                if short.len() >= self.max_short {
                    self.spill_short()?;
                }
                if let Some(short) = &mut self.short {
                    // Sized once, at the start of the file (a spilled vector keeps its size).
                    if short.len() == SIZE_SAMPLE
                        && self.short_runs.is_empty()
                        && let Some(bytes) = self.file_bytes
                    {
                        // The rows the file holds if the rest is like its start, and 5% more.
                        let spacing = (locator / SIZE_SAMPLE as u64).max(1);
                        let rows = usize::try_from(bytes / spacing / 20 * 21).unwrap_or(usize::MAX);
                        short.reserve_exact(rows.min(self.max_short).saturating_sub(short.len()));
                    }
                    if short.len() == short.capacity() {
                        short.reserve_exact(short.capacity().max(1024).min(self.max_short - short.len()));
                    }
                    short.push(ShortEntry::new(key, digest, locator));
                    return Ok(());
                }
            }
            self.generalize()?;
        }
        self.sorter.begin()?;
        self.sorter.key_encoded(key);
        self.scratch.clear();
        push_entry(&mut self.scratch, digest.as_ref(), locator);
        self.sorter.raw(&self.scratch);
        self.sorter.commit()
    }

    /// Sorts the short entries and writes them to a run on disk; merges the runs into
    /// one once they are many, to keep open files few.
    fn spill_short(&mut self) -> Result<(), SourceError> {
        let Some(short) = &mut self.short else {
            return Ok(());
        };
        sort_short(short);
        let run = ShortRun::write(short.iter().map(|entry| Ok(*entry)))?;
        short.clear();
        self.short_runs.push(run);
        if self.short_runs.len() >= SHORT_FAN_IN {
            let runs = std::mem::take(&mut self.short_runs);
            let mut merged = ShortMerge::new(runs.into_iter().map(ShortSource::disk).collect())?;
            let run = ShortRun::write(std::iter::from_fn(|| merged.next().transpose()))?;
            self.short_runs.push(run);
        }
        Ok(())
    }

    /// Moves every short entry, on disk and in memory, to the general sorter (as sorted
    /// runs, oldest first, which keeps equal keys in file order); later entries go there.
    fn generalize(&mut self) -> Result<(), SourceError> {
        let Some(mut short) = self.short.take() else {
            return Ok(());
        };
        sort_short(&mut short);
        let mut sources: Vec<ShortSource> = std::mem::take(&mut self.short_runs)
            .into_iter()
            .map(ShortSource::disk)
            .collect();
        sources.push(ShortSource::Memory(short.into_iter()));
        for mut source in sources {
            let mut failed = None;
            self.sorter.push_sorted_run(|into| match source.next() {
                Ok(entry) => entry.map(|e| e.write(into)),
                Err(e) => {
                    failed = Some(e);
                    None
                }
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<SortedIndex, SourceError> {
        let Some(mut short) = self.short.take() else {
            return Ok(SortedIndex::Rows(self.sorter.finish()?));
        };
        sort_short(&mut short);
        if self.short_runs.is_empty() {
            return Ok(SortedIndex::Short(ShortBatch::new(short)));
        }
        let mut sources: Vec<ShortSource> = self.short_runs.into_iter().map(ShortSource::disk).collect();
        sources.push(ShortSource::Memory(short.into_iter()));
        Ok(SortedIndex::ShortMerge(ShortMerge::new(sources)?))
    }
}

/// Short runs merged at once, at most.
const SHORT_FAN_IN: usize = 32;
/// A short entry's bytes in a run.
const SHORT_ENTRY_BYTES: usize = SHORT_KEY + DIGEST_LEN + 8;
/// Buffer for writing or reading one run.
const SHORT_RUN_BUFFER: usize = 64 * 1024;

/// Short entries in order, in a temporary file of fixed-size records.
struct ShortRun {
    file: File,
    entries: u64,
}

impl ShortRun {
    fn write(
        entries: impl Iterator<Item = Result<ShortEntry, SourceError>>,
    ) -> Result<ShortRun, SourceError> {
        let spill_error = |e: std::io::Error| {
            SourceError::Read(format!(
                "cannot spill the index to a temporary file in {} (set TMPDIR to another folder, or raise --memory-budget): {e}",
                std::env::temp_dir().display()
            ))
        };
        let file = tempfile::tempfile().map_err(spill_error)?;
        let mut out = BufWriter::with_capacity(SHORT_RUN_BUFFER, file);
        let mut count = 0;
        for entry in entries {
            out.write_all(&entry?.to_bytes()).map_err(spill_error)?;
            count += 1;
        }
        let mut file = out.into_inner().map_err(|e| spill_error(e.into_error()))?;
        file.rewind().map_err(spill_error)?;
        Ok(ShortRun { file, entries: count })
    }
}

/// Where a merge of short entries reads from.
enum ShortSource {
    /// A run on disk, read a block of entries at a time.
    Disk {
        input: File,
        /// Entries not read into `block` yet.
        remaining: u64,
        block: Vec<u8>,
        /// Where the next entry starts in `block`.
        at: usize,
    },
    Memory(std::vec::IntoIter<ShortEntry>),
}

/// Short entries read from a run at once.
const RUN_BLOCK_ENTRIES: usize = SHORT_RUN_BUFFER / SHORT_ENTRY_BYTES;

impl ShortSource {
    fn disk(run: ShortRun) -> ShortSource {
        ShortSource::Disk {
            input: run.file,
            remaining: run.entries,
            block: Vec::new(),
            at: 0,
        }
    }

    #[inline]
    fn next(&mut self) -> Result<Option<ShortEntry>, SourceError> {
        match self {
            ShortSource::Memory(entries) => Ok(entries.next()),
            ShortSource::Disk {
                input,
                remaining,
                block,
                at,
            } => {
                if *at == block.len() {
                    if *remaining == 0 {
                        return Ok(None);
                    }
                    let entries = (*remaining).min(RUN_BLOCK_ENTRIES as u64);
                    block.resize(entries as usize * SHORT_ENTRY_BYTES, 0);
                    input.read_exact(block).map_err(|e| {
                        SourceError::Read(format!("cannot read the index back from its temporary file: {e}"))
                    })?;
                    *remaining -= entries;
                    *at = 0;
                }
                let entry = ShortEntry::from_bytes(&block[*at..]);
                *at += SHORT_ENTRY_BYTES;
                Ok(Some(entry))
            }
        }
    }
}

/// Short entries in order, merged from sorted sources by a tree of losers: taking an
/// entry replays only its source's path to the root, one comparison a level, where a
/// binary heap compares and moves along two children a level. Entries never tie: a
/// side's locators are all different.
struct ShortMerge {
    sources: Vec<ShortSource>,
    /// Each source's next entry and its order ([`EXHAUSTED`] when it has none), for a
    /// power of two of sources: the ones past `sources` are exhausted from the start.
    heads: Vec<ShortEntry>,
    orders: Vec<(u128, u64)>,
    /// `tree[0]`: the source with the least order. `tree[n]` for `n > 0`: the source
    /// that lost the match at node `n`, whose children are nodes `2n` and `2n + 1`;
    /// source `s` plays from node `heads.len() + s`.
    tree: Vec<usize>,
}

/// The order of a source with no entry left: above every entry's, whose length bits
/// keep its second part below this.
const EXHAUSTED: (u128, u64) = (u128::MAX, u64::MAX);

impl ShortMerge {
    fn new(mut sources: Vec<ShortSource>) -> Result<ShortMerge, SourceError> {
        let width = sources.len().next_power_of_two();
        let empty = ShortEntry {
            key: [0; SHORT_KEY],
            digest: [0; DIGEST_LEN],
            meta: 0,
        };
        let mut heads = vec![empty; width];
        let mut orders = vec![EXHAUSTED; width];
        for (n, source) in sources.iter_mut().enumerate() {
            if let Some(entry) = source.next()? {
                orders[n] = entry.order();
                heads[n] = entry;
            }
        }
        // Plays every match once, from the leaves up.
        let mut winners = vec![0; 2 * width];
        for (n, winner) in winners[width..].iter_mut().enumerate() {
            *winner = n;
        }
        let mut tree = vec![0; width];
        for node in (1..width).rev() {
            let (a, b) = (winners[2 * node], winners[2 * node + 1]);
            let (winner, loser) = if orders[b] < orders[a] { (b, a) } else { (a, b) };
            winners[node] = winner;
            tree[node] = loser;
        }
        tree[0] = winners[1];
        Ok(ShortMerge {
            sources,
            heads,
            orders,
            tree,
        })
    }

    fn next(&mut self) -> Result<Option<ShortEntry>, SourceError> {
        let mut winner = self.tree[0];
        if self.orders[winner] == EXHAUSTED {
            return Ok(None);
        }
        let entry = self.heads[winner];
        match self.sources[winner].next()? {
            Some(next) => {
                self.orders[winner] = next.order();
                self.heads[winner] = next;
            }
            None => self.orders[winner] = EXHAUSTED,
        }
        let mut node = (self.heads.len() + winner) / 2;
        while node > 0 {
            let other = self.tree[node];
            if self.orders[other] < self.orders[winner] {
                self.tree[node] = winner;
                winner = other;
            }
            node /= 2;
        }
        self.tree[0] = winner;
        Ok(Some(entry))
    }
}

/// A finished index, read in key order.
enum SortedIndex {
    /// Short entries, all in memory.
    Short(ShortBatch),
    /// Short entries merged from runs on disk and in memory.
    ShortMerge(ShortMerge),
    /// Short entries merged on another thread, in batches; a batch read to its end goes
    /// back through `spent` to be filled again.
    Fed {
        receiver: std::sync::mpsc::Receiver<Result<Vec<ShortEntry>, SourceError>>,
        spent: std::sync::mpsc::Sender<Vec<ShortEntry>>,
        batch: ShortBatch,
    },
    /// Entries of the general sorter, from memory or merged from disk.
    Rows(SortedRows),
}

/// Short entries in memory, read from the front.
#[derive(Default)]
struct ShortBatch {
    entries: Vec<ShortEntry>,
    at: usize,
}

impl ShortBatch {
    fn new(entries: Vec<ShortEntry>) -> ShortBatch {
        ShortBatch { entries, at: 0 }
    }

    fn next(&mut self) -> Option<ShortEntry> {
        let entry = self.entries.get(self.at).copied();
        self.at += usize::from(entry.is_some());
        entry
    }

    /// The entry `n` places on (`n = 0`: the next), skipping those before it.
    fn nth(&mut self, n: usize) -> Option<ShortEntry> {
        self.at = self.entries.len().min(self.at + n);
        self.next()
    }

    fn as_slice(&self) -> &[ShortEntry] {
        &self.entries[self.at..]
    }

    /// The batch's vector, emptied, to be filled again.
    fn into_spent(mut self) -> Vec<ShortEntry> {
        self.entries.clear();
        self.entries
    }
}

/// What an index entry says of its row, after its key.
#[derive(Clone, Copy)]
struct GroupEntry {
    digest: Option<[u8; DIGEST_LEN]>,
    locator: u64,
}

impl GroupEntry {
    /// Reads the entry bytes of the general layout.
    fn parse(bytes: &[u8]) -> Option<GroupEntry> {
        let (&valid, rest) = bytes.split_first()?;
        let (digest, locator) = rest.split_first_chunk::<DIGEST_LEN>()?;
        let locator: [u8; 8] = locator.try_into().ok()?;
        Some(GroupEntry {
            digest: (valid == 1).then_some(*digest),
            locator: u64::from_le_bytes(locator),
        })
    }
}

/// A side's sorted index, one entry ahead: a short entry as it is, or a general entry's
/// bytes.
struct IndexCursor {
    side: Side,
    index: SortedIndex,
    current: Current,
    /// The entries of the current key group.
    group: Vec<GroupEntry>,
}

enum Current {
    Short(ShortEntry),
    General {
        bytes: Vec<u8>,
        key_len: usize,
        entry: GroupEntry,
    },
    End,
}

impl IndexCursor {
    fn new(side: Side, index: SortedIndex) -> Result<Self, (Side, SourceError)> {
        let mut cursor = IndexCursor {
            side,
            index,
            current: Current::End,
            group: Vec::new(),
        };
        cursor.advance()?;
        Ok(cursor)
    }

    fn advance(&mut self) -> Result<(), (Side, SourceError)> {
        match &mut self.index {
            SortedIndex::Short(entries) => {
                self.current = entries.next().map_or(Current::End, Current::Short);
                Ok(())
            }
            SortedIndex::ShortMerge(merge) => {
                self.current = merge
                    .next()
                    .map_err(|e| (self.side, e))?
                    .map_or(Current::End, Current::Short);
                Ok(())
            }
            SortedIndex::Fed {
                receiver,
                spent,
                batch,
            } => {
                self.current = loop {
                    if let Some(entry) = batch.next() {
                        break Current::Short(entry);
                    }
                    match receiver.recv() {
                        Ok(Ok(next)) => {
                            // Filled again, a batch's memory is not given back and taken anew
                            // (page faults) for every batch. The merging thread may be done.
                            let _ = spent.send(std::mem::replace(batch, ShortBatch::new(next)).into_spent());
                        }
                        Ok(Err(e)) => return Err((self.side, e)),
                        // The merging thread has sent its last batch.
                        Err(_) => break Current::End,
                    }
                };
                Ok(())
            }
            SortedIndex::Rows(rows) => {
                let mut bytes = match std::mem::replace(&mut self.current, Current::End) {
                    Current::General { bytes, .. } => bytes,
                    _ => Vec::new(),
                };
                match rows.next_raw(&mut bytes).map_err(|e| (self.side, e))? {
                    Some(key_len) => {
                        let entry = bytes
                            .get(key_len..)
                            .filter(|entry| entry.len() == ENTRY_LEN)
                            .and_then(GroupEntry::parse)
                            .ok_or_else(|| {
                                (
                                    self.side,
                                    SourceError::Read("a sorted index entry is corrupt".into()),
                                )
                            })?;
                        self.current = Current::General {
                            bytes,
                            key_len,
                            entry,
                        };
                    }
                    None => self.current = Current::End,
                }
                Ok(())
            }
        }
    }

    fn key(&self) -> Option<&[u8]> {
        match &self.current {
            Current::Short(entry) => Some(entry.key_bytes()),
            Current::General { bytes, key_len, .. } => Some(&bytes[..*key_len]),
            Current::End => None,
        }
    }

    /// Takes every entry whose key is `key` into the group (none when this side lacks it).
    fn take_group(&mut self, key: &[u8]) -> Result<(), (Side, SourceError)> {
        self.group.clear();
        while self.key() == Some(key) {
            let entry = match &self.current {
                Current::Short(entry) => entry.entry(),
                Current::General { entry, .. } => *entry,
                Current::End => break,
            };
            self.group.push(entry);
            self.advance()?;
        }
        Ok(())
    }

    /// The group's digest when it is one row with a valid digest.
    fn single_digest(&self) -> Option<&[u8; DIGEST_LEN]> {
        match self.group.as_slice() {
            [entry] => entry.digest.as_ref(),
            _ => None,
        }
    }

    /// The locators of the group's rows.
    fn locators(&self) -> Vec<u64> {
        self.group.iter().map(|entry| entry.locator).collect()
    }

    /// The current entry, when it is short, and the short entries after it that are
    /// already in memory.
    fn short_run(&self) -> Option<(&ShortEntry, &[ShortEntry])> {
        let Current::Short(current) = &self.current else {
            return None;
        };
        let rest = match &self.index {
            SortedIndex::Short(entries) => entries.as_slice(),
            SortedIndex::Fed { batch, .. } => batch.as_slice(),
            SortedIndex::ShortMerge(_) | SortedIndex::Rows(_) => return None,
        };
        Some((current, rest))
    }

    /// Moves past the current entry and `n - 1` more of [`IndexCursor::short_run`]'s
    /// rest, which holds `n` at least.
    fn skip_short(&mut self, n: usize) {
        let next = match &mut self.index {
            SortedIndex::Short(entries) | SortedIndex::Fed { batch: entries, .. } => entries.nth(n - 1),
            SortedIndex::ShortMerge(_) | SortedIndex::Rows(_) => None,
        };
        self.current = next.map_or(Current::End, Current::Short);
    }
}

/// Moves both cursors past the keys, from where they are, that are one short entry on
/// each side with equal valid digests: most keys of two copies that agree. It compares
/// keys and digests where they lie, instead of taking each key's group through the
/// general cursor. A key whose next entry is not in memory yet is left to that path.
fn skip_agreeing_short(owner: &mut IndexCursor, replica: &mut IndexCursor) {
    let (Some((mut o, owner_rest)), Some((mut r, replica_rest))) = (owner.short_run(), replica.short_run())
    else {
        return;
    };
    let mut skipped = 0;
    while let (Some(owner_next), Some(replica_next)) = (owner_rest.get(skipped), replica_rest.get(skipped)) {
        let agrees = o.key == r.key
            && o.meta & r.meta & VALID_DIGEST != 0
            && (o.meta ^ r.meta) >> KEY_LEN_SHIFT == 0
            && o.digest == r.digest
            && owner_next.key != o.key
            && replica_next.key != r.key;
        if !agrees {
            break;
        }
        (o, r) = (owner_next, replica_next);
        skipped += 1;
    }
    if skipped > 0 {
        owner.skip_short(skipped);
        replica.skip_short(skipped);
    }
}

/// Key groups whose rows are read again together: each file on its own thread.
const REREAD_BATCH: usize = 1024;

/// A key group to read again and compare: its key and where its rows are on each side.
struct Reread {
    key: Key,
    owner: Vec<u64>,
    replica: Vec<u64>,
    /// What the group's row counts alone say, when its rows' contents cannot change
    /// that (a missing or duplicated key): its rows are then not read.
    outcome: Option<GroupOutcome>,
}

/// A key group read again and compared, on its way to the sink.
struct Compared {
    key: Key,
    owner: Vec<Row>,
    replica: Vec<Row>,
    outcome: GroupOutcome,
}

/// What the thread reading rows again hands back: groups compared, in key order, or why
/// it stopped.
type ComparedPart = Result<Vec<Compared>, (Side, SourceError)>;

/// The two files, for reading rows again.
struct Rereads<'a> {
    owner: &'a mut dyn IndexedFile,
    replica: &'a mut dyn IndexedFile,
    /// Bytes of rows read again that each side may hold in a part (a batch is compared
    /// in parts when its rows are larger).
    hold: usize,
}

impl Rereads<'_> {
    /// Reads the batch's rows from both files at once, then compares its groups in key
    /// order, handing them to `send` in parts: a part holds at most about `hold` bytes of
    /// a side's rows (one group at least). Stops early when `send` returns false.
    fn compare(
        &mut self,
        mut batch: Vec<Reread>,
        comparer: &mut Comparer,
        send: &mut dyn FnMut(Vec<Compared>) -> bool,
    ) -> Result<(), (Side, SourceError)> {
        // Groups one side has read beyond what the other had, kept for the next part.
        let (mut owner_ahead, mut replica_ahead) = (VecDeque::new(), VecDeque::new());
        let mut done = 0;
        while done < batch.len() {
            let (owner, replica, hold) = (&mut *self.owner, &mut *self.replica, self.hold);
            // A side with groups in hand does not read this part.
            let owner_from = (owner_ahead.is_empty()).then_some(&batch[done..]);
            let replica_from = (replica_ahead.is_empty()).then_some(&batch[done..]);
            let (owner_rows, replica_rows) = std::thread::scope(|scope| {
                let owner_task = owner_from
                    .map(|groups| scope.spawn(move || read_rows(owner, groups, |group| &group.owner, hold)));
                let replica_rows = replica_from.map_or(Ok(Vec::new()), |groups| {
                    read_rows(replica, groups, |group| &group.replica, hold)
                });
                let owner_rows = owner_task.map_or(Ok(Vec::new()), |task| {
                    task.join().unwrap_or_else(|_| {
                        Err(SourceError::Read(
                            "reading the owner again stopped unexpectedly".into(),
                        ))
                    })
                });
                (owner_rows, replica_rows)
            });
            owner_ahead.extend(owner_rows.map_err(|e| (Side::Owner, e))?);
            replica_ahead.extend(replica_rows.map_err(|e| (Side::Replica, e))?);
            // Each side holds one group at least: compare as many as both hold.
            let compared = owner_ahead.len().min(replica_ahead.len());
            let part = batch[done..done + compared]
                .iter_mut()
                .map(|group| {
                    let (owner, replica) = (
                        owner_ahead.pop_front().unwrap_or_default(),
                        replica_ahead.pop_front().unwrap_or_default(),
                    );
                    // Both sides have read this group's rows: its key is not needed again.
                    let key = std::mem::take(&mut group.key);
                    let outcome = match group.outcome.take() {
                        Some(outcome) => outcome,
                        None => comparer.compare_group(&key, &owner, &replica),
                    };
                    Compared {
                        key,
                        owner,
                        replica,
                        outcome,
                    }
                })
                .collect();
            if !send(part) {
                return Ok(());
            }
            done += compared;
        }
        Ok(())
    }
}

/// Reads the rows of one side of the groups again, checking they still have the indexed
/// key, until they hold `hold` bytes (one group at least).
fn read_rows(
    file: &mut dyn IndexedFile,
    batch: &[Reread],
    locators: impl Fn(&Reread) -> &Vec<u64>,
    hold: usize,
) -> Result<Vec<Vec<Row>>, SourceError> {
    let mut groups = Vec::with_capacity(batch.len());
    let mut held = 0;
    for group in batch {
        if held > hold {
            break;
        }
        if group.outcome.is_some() {
            groups.push(Vec::new());
            continue;
        }
        let mut rows = Vec::with_capacity(locators(group).len());
        for &locator in locators(group) {
            let row = file.read_at(locator)?;
            if row.key != group.key {
                let message = format!(
                    "the file changed while recon read it (key {} became {})",
                    group.key, row.key
                );
                return Err(SourceError::Read(message));
            }
            held += row_bytes(&row);
            rows.push(row);
        }
        groups.push(rows);
    }
    Ok(groups)
}

/// About what a row read again holds in memory.
fn row_bytes(row: &Row) -> usize {
    let text: usize = row
        .values
        .iter()
        .map(|value| match value {
            Value::Decimal(s) | Value::Text(s) | Value::Json(s) => s.len(),
            Value::Bytes(b) => b.len(),
            _ => 0,
        })
        .sum();
    size_of::<Row>() + row.values.len() * size_of::<Value>() + text
}

/// The next key group, from where the cursors are, that digests cannot judge: a key
/// missing on a side, more than one row on a side, digests that differ or are not valid.
/// `key_bytes` is scratch space.
fn next_to_reread(
    owner: &mut IndexCursor,
    replica: &mut IndexCursor,
    key_bytes: &mut Vec<u8>,
) -> Result<Option<Reread>, (Side, SourceError)> {
    loop {
        skip_agreeing_short(owner, replica);
        let order = match (owner.key(), replica.key()) {
            (None, None) => return Ok(None),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(o), Some(r)) => o.cmp(r),
        };
        let (key_side, smaller) = if order.is_le() {
            (owner.side, owner.key())
        } else {
            (replica.side, replica.key())
        };
        key_bytes.clear();
        key_bytes.extend_from_slice(smaller.unwrap_or_default());
        owner.take_group(key_bytes)?;
        replica.take_group(key_bytes)?;
        if let (Some(o), Some(r)) = (owner.single_digest(), replica.single_digest())
            && o == r
        {
            continue;
        }
        let key = decode_key(key_bytes).map_err(|e| (key_side, e))?;
        return Ok(Some(Reread {
            key,
            owner: owner.locators(),
            replica: replica.locators(),
            outcome: None,
        }));
    }
}

/// Merge-joins two sorted indexes; keys with equal single digests on both sides are
/// consistent without reading their rows, and a key missing on a side or duplicated is
/// judged by its row counts when its rows cannot change the outcome (the sink then gets
/// no rows for it). The other keys' rows are read again and compared on a thread of its
/// own, a batch at a time, while this one goes on merging and hands what was compared to
/// the sink, in key order.
fn merge_indexes<S: GroupSink>(
    owner: &mut IndexCursor,
    replica: &mut IndexCursor,
    mut files: Rereads<'_>,
    comparer: &mut Comparer,
    sink: &mut S,
) -> Result<(), MergeError<S::Error>> {
    // Judges groups by their row counts here, while `comparer` compares rows there.
    let judge = comparer.clone();
    std::thread::scope(|scope| {
        // One batch waits while another is read again, and one compared part waits
        // while another is written: what is held stays within a few parts.
        let (batches, batches_to_read) = std::sync::mpsc::sync_channel::<Vec<Reread>>(1);
        let (compared_parts, parts) = std::sync::mpsc::sync_channel::<ComparedPart>(1);
        scope.spawn(move || {
            for batch in batches_to_read {
                let mut send = |part| compared_parts.send(Ok(part)).is_ok();
                if let Err(e) = files.compare(batch, comparer, &mut send) {
                    // The merge stopped meanwhile if this cannot be sent.
                    let _ = compared_parts.send(Err(e));
                    return;
                }
            }
        });
        let mut write = |part: ComparedPart| -> Result<(), MergeError<S::Error>> {
            for group in part.map_err(|(side, e)| MergeError::Source(side, e))? {
                sink.group(&group.key, &group.owner, &group.replica, group.outcome)
                    .map_err(MergeError::Sink)?;
            }
            Ok(())
        };
        // Hands a batch on, writing what was compared while the reading thread is busy.
        let mut hand_on = |mut batch: Vec<Reread>| -> Result<(), MergeError<S::Error>> {
            loop {
                match batches.try_send(batch) {
                    Ok(()) => break,
                    Err(std::sync::mpsc::TrySendError::Full(back)) => {
                        batch = back;
                        // The reading thread holds a batch: it sends a part, or its error.
                        match parts.recv() {
                            Ok(part) => write(part)?,
                            Err(_) => break,
                        }
                    }
                    // The reading thread stopped: its error is among the parts.
                    Err(std::sync::mpsc::TrySendError::Disconnected(_)) => break,
                }
            }
            while let Ok(part) = parts.try_recv() {
                write(part)?;
            }
            Ok(())
        };
        let mut batch = Vec::with_capacity(REREAD_BATCH);
        let mut key_bytes = Vec::new();
        while let Some(mut group) =
            next_to_reread(owner, replica, &mut key_bytes).map_err(|(side, e)| MergeError::Source(side, e))?
        {
            group.outcome = judge.outcome_by_count(&group.key, group.owner.len(), group.replica.len());
            batch.push(group);
            if batch.len() == REREAD_BATCH {
                hand_on(std::mem::replace(&mut batch, Vec::with_capacity(REREAD_BATCH)))?;
            }
        }
        if !batch.is_empty() {
            hand_on(batch)?;
        }
        drop(batches);
        for part in parts {
            write(part)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use std::collections::BTreeMap;

    use super::*;
    use crate::compare::text_field_plan;
    use crate::job::CsvConfig;
    use crate::job::Relation;
    use crate::source::KeyType;
    use crate::source::file::csv::CsvSource;

    fn spec(budget: usize) -> ScanSpec {
        ScanSpec {
            key: vec!["k".into()],
            key_types: Vec::new(),
            columns: Vec::new(),
            page_size: 100,
            memory_budget: budget,
            tiebreak: Vec::new(),
        }
    }

    /// A key from a small number: an integer, short text, or text too long for a short
    /// entry, so that inputs mix every path and repeat keys.
    fn key_of(n: u8) -> Vec<KeyPart> {
        match n % 3 {
            0 => vec![KeyPart::Int(i64::from(n) - 100)],
            1 => vec![KeyPart::Text(format!("k{n}"))],
            _ => vec![KeyPart::Text(format!("a long key, past sixteen bytes {n}"))],
        }
    }

    /// The groups handed on: key, rows on each side, findings; failing once it holds
    /// `.1` of them.
    struct Keys(Vec<(Key, usize, usize, usize)>, usize);

    impl GroupSink for Keys {
        type Error = ();
        fn group(
            &mut self,
            key: &Key,
            owner: &[Row],
            replica: &[Row],
            outcome: GroupOutcome,
        ) -> Result<(), ()> {
            if self.0.len() == self.1 {
                return Err(());
            }
            self.0
                .push((key.clone(), owner.len(), replica.len(), outcome.findings.len()));
            Ok(())
        }
    }

    /// A file that counts the rows read again, and fails to read one once it has read
    /// `.2` of them.
    struct Counted(CsvSource, usize, usize);

    impl IndexedFile for Counted {
        fn index(
            &mut self,
            spec: &ScanSpec,
            visit: &mut dyn FnMut(crate::source::file::RecordView<'_>) -> Result<(), SourceError>,
        ) -> Result<(), SourceError> {
            self.0.index(spec, visit)
        }

        fn read_at(&mut self, locator: u64) -> Result<Row, SourceError> {
            if self.1 == self.2 {
                return Err(SourceError::Read("the disk is gone".into()));
            }
            self.1 += 1;
            self.0.read_at(locator)
        }
    }

    /// Compares two files' text fields by their indexes, into `keys`.
    fn compare_texts(
        owner: &mut Counted,
        replica: &mut Counted,
        spec: &ScanSpec,
        keys: &mut Keys,
    ) -> Result<(u64, u64), MergeError<()>> {
        let mut comparer = Comparer::new(text_field_plan(Relation::Mirror));
        compare_indexed(
            IndexedSide { file: owner, spec },
            IndexedSide { file: replica, spec },
            &mut comparer,
            keys,
            &|_, _| {},
        )
    }

    /// Two CSV files of `rows` keys whose every value differs.
    fn differing_files(
        dir: &std::path::Path,
        rows: usize,
        fail_after: usize,
    ) -> (Counted, Counted, ScanSpec) {
        let open = |name: &str, tag: &str, fail_after: usize| {
            let path = dir.join(name);
            let text: String = (0..rows).rev().map(|id| format!("{id},{tag}\n")).collect();
            std::fs::write(&path, format!("id,v\n{text}")).expect("write");
            let config = CsvConfig::with_defaults(path);
            Counted(CsvSource::open(&config).expect("open"), 0, fail_after)
        };
        let mut spec = spec(64 << 20);
        spec.key = vec!["id".into()];
        spec.key_types = vec![KeyType::Integer];
        spec.columns = vec!["v".into()];
        (
            open("o.csv", "a", usize::MAX),
            open("r.csv", "b", fail_after),
            spec,
        )
    }

    /// Rows are read again and compared on a thread of their own while the merge goes on:
    /// a read that fails there fails the compare with its side and error, and a sink that
    /// fails stops it with its error, with batches in flight, and nothing is handed on
    /// after either.
    #[test]
    fn a_failed_reread_or_sink_stops_the_merge_with_its_error() {
        let rows = 6 * REREAD_BATCH;
        for (fail_read_after, fail_sink_after) in [
            (rows / 2, usize::MAX),
            (usize::MAX, rows / 2 + 7),
            (0, usize::MAX),
        ] {
            let dir = tempfile::tempdir().expect("temp dir");
            let (mut owner, mut replica, spec) = differing_files(dir.path(), rows, fail_read_after);
            let mut keys = Keys(Vec::new(), fail_sink_after);
            let result = compare_texts(&mut owner, &mut replica, &spec, &mut keys);
            let handed: Vec<Key> = keys.0.iter().map(|(key, ..)| key.clone()).collect();
            let expected: Vec<Key> = (0..handed.len() as i64)
                .map(|id| Key(vec![KeyPart::Int(id)]))
                .collect();
            assert_eq!(handed, expected, "groups handed on in key order, none skipped");
            match result {
                Err(MergeError::Source(Side::Replica, SourceError::Read(message))) => {
                    assert_eq!(message, "the disk is gone");
                    assert!(handed.len() <= fail_read_after, "{} handed on", handed.len());
                }
                Err(MergeError::Sink(())) => assert_eq!(handed.len(), fail_sink_after),
                other => panic!("expected an error, got {:?}", other.map_err(|_| ())),
            }
        }
    }

    /// Rows read again beyond what a side may hold are compared in parts: every key
    /// still comes once, in key order, with its rows, and every row is read once, also
    /// when one side's rows are far larger than the other's.
    #[test]
    fn groups_larger_than_the_hold_are_compared_in_parts() {
        for (owner_width, replica_width) in [(200, 200), (10, 3000), (3000, 10)] {
            let dir = tempfile::tempdir().expect("temp dir");
            let write = |name: &str, tag: &str, width: usize| {
                let path = dir.path().join(name);
                let mut text = String::from("id,v\n");
                for id in (0..300).rev() {
                    text.push_str(&format!("{id},{tag}{}\n", "x".repeat(width)));
                }
                std::fs::write(&path, text).expect("write");
                path
            };
            let open = |path| {
                let config = CsvConfig::with_defaults(path);
                Counted(CsvSource::open(&config).expect("open"), 0, usize::MAX)
            };
            let mut owner = open(write("o.csv", "a", owner_width));
            let mut replica = open(write("r.csv", "b", replica_width));
            let mut spec = spec(64 << 10);
            spec.key = vec!["id".into()];
            spec.key_types = vec![KeyType::Integer];
            spec.columns = vec!["v".into()];
            let mut keys = Keys(Vec::new(), usize::MAX);
            let rows = compare_texts(&mut owner, &mut replica, &spec, &mut keys);
            assert_eq!(rows.ok(), Some((300, 300)));
            let expected: Vec<_> = (0..300)
                .map(|id| (Key(vec![KeyPart::Int(id)]), 1, 1, 1))
                .collect();
            assert_eq!(keys.0, expected, "widths {owner_width} and {replica_width}");
            assert_eq!((owner.1, replica.1), (300, 300), "rows read again");
        }
    }

    /// Short entries as an index holds them, in file order: keys from a template (maybe
    /// zeros) whose chosen bytes vary (over a few values, so that keys repeat, or over
    /// any), zero past their length, which is one of a few; below and above
    /// [`PARTITION_MIN`].
    fn short_entries() -> impl Strategy<Value = Vec<ShortEntry>> {
        (
            prop_oneof![Just([0; SHORT_KEY]), any::<[u8; SHORT_KEY]>()],
            prop_oneof![
                Just(0u16),
                (0..16u32).prop_map(|at| 1 << at),
                (0..16u32, 0..16u32).prop_map(|(a, b)| 1 << a | 1 << b),
                any::<u16>(),
            ],
            any::<bool>(),
            prop_oneof![Just(vec![9]), proptest::collection::vec(0..=SHORT_KEY, 1..4)],
            prop_oneof![
                0..64usize,
                PARTITION_MIN - 64..PARTITION_MIN + 64,
                1500..12000usize
            ],
        )
            .prop_flat_map(|(template, varying, any_byte, lengths, count)| {
                let row = (
                    any::<[u8; SHORT_KEY]>(),
                    any::<usize>(),
                    1u64..1000,
                    any::<bool>(),
                );
                proptest::collection::vec(row, count).prop_map(move |rows| {
                    let mut locator = 0;
                    let mut entries = Vec::with_capacity(rows.len());
                    for (n, (bytes, length, gap, valid)) in rows.into_iter().enumerate() {
                        let length = lengths[length % lengths.len()];
                        let mut key = [0; SHORT_KEY];
                        for (at, byte) in key.iter_mut().enumerate().take(length) {
                            *byte = match (varying >> at & 1 == 1, any_byte) {
                                (false, _) => template[at],
                                (true, true) => bytes[at],
                                (true, false) => [0, 1, 0x80, 0xff][usize::from(bytes[at] % 4)],
                            };
                        }
                        locator += gap;
                        let digest = valid.then_some((n as u128).to_le_bytes());
                        entries.push(ShortEntry::new(&key[..length], digest, locator));
                    }
                    entries
                })
            })
    }

    fn entry_fields(entries: &[ShortEntry]) -> Vec<([u8; SHORT_KEY], [u8; DIGEST_LEN], u64)> {
        entries
            .iter()
            .map(|entry| (entry.key, entry.digest, entry.meta))
            .collect()
    }

    /// A run of two blocks and part of a third reads back as it was written.
    #[test]
    fn a_run_reads_back_over_several_blocks() {
        let entries: Vec<ShortEntry> = (0..RUN_BLOCK_ENTRIES as u64 * 2 + 7)
            .map(|n| ShortEntry::new(&n.to_be_bytes(), Some(u128::from(n).to_le_bytes()), n))
            .collect();
        let run = ShortRun::write(entries.iter().copied().map(Ok)).expect("run written");
        let mut source = ShortSource::disk(run);
        let read: Vec<ShortEntry> = std::iter::from_fn(|| source.next().expect("entry read")).collect();
        assert_eq!(entry_fields(&read), entry_fields(&entries));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Sorted runs written to disk (read back over several blocks) and one in memory
        /// merge into the order of all their entries, each entry as it was.
        #[test]
        fn runs_on_disk_and_in_memory_merge_in_order(
            entries in short_entries(),
            cuts in (0.0..1.0f64, 0.0..1.0f64),
        ) {
            let mut expected = entries.clone();
            expected.sort_by_key(ShortEntry::order);
            let at = |cut: f64| (cut * entries.len() as f64) as usize;
            let (first, second) = (at(cuts.0).min(at(cuts.1)), at(cuts.0).max(at(cuts.1)));
            let mut sources = Vec::new();
            for part in [&entries[..first], &entries[first..second]] {
                let mut run = part.to_vec();
                sort_short(&mut run);
                let run = ShortRun::write(run.into_iter().map(Ok)).expect("run written");
                sources.push(ShortSource::disk(run));
            }
            let mut last = entries[second..].to_vec();
            sort_short(&mut last);
            sources.push(ShortSource::Memory(last.into_iter()));
            let mut merge = ShortMerge::new(sources).expect("merge");
            let merged: Vec<ShortEntry> = std::iter::from_fn(|| merge.next().expect("entry read")).collect();
            prop_assert_eq!(entry_fields(&merged), entry_fields(&expected));
        }

        /// Any number of sorted sources, none to more than a power of two, some of them
        /// empty, merge into all their entries in order.
        #[test]
        fn any_number_of_sources_merge_in_order(
            entries in short_entries(),
            source_of in proptest::collection::vec(0usize..40, 0..400),
            count in 0usize..40,
        ) {
            let mut parts = vec![Vec::new(); count];
            if count > 0 {
                for (n, entry) in entries.iter().enumerate() {
                    parts[source_of.get(n).copied().unwrap_or(n) % count].push(*entry);
                }
            }
            let mut expected: Vec<ShortEntry> = parts.concat();
            expected.sort_by_key(ShortEntry::order);
            let sources = parts
                .into_iter()
                .map(|mut part| {
                    sort_short(&mut part);
                    ShortSource::Memory(part.into_iter())
                })
                .collect();
            let mut merge = ShortMerge::new(sources).expect("merge");
            let merged: Vec<ShortEntry> = std::iter::from_fn(|| merge.next().expect("entry read")).collect();
            prop_assert_eq!(entry_fields(&merged), entry_fields(&expected));
        }
    }

    proptest! {
        /// Short entries sort as comparing their order would: by key, key length and
        /// locator, whichever bytes vary. Partitioned alone, also when fewer than it is
        /// used for, each bucket's range holds just its entries, and sorting each range
        /// sorts them all.
        #[test]
        fn short_entries_sort_by_key_length_and_locator(entries in short_entries()) {
            let mut expected = entries.clone();
            expected.sort_by_key(ShortEntry::order);
            let mut sorted = entries.clone();
            sort_short(&mut sorted);
            prop_assert_eq!(entry_fields(&sorted), entry_fields(&expected));
            let mut parted = entries;
            if let Some(shift) = top_bits(&parted) {
                let ends = partition(&mut parted, shift);
                let mut start = 0;
                for (at, &end) in ends.iter().enumerate() {
                    prop_assert!(parted[start..end].iter().all(|entry| bucket(entry, shift) == at));
                    parted[start..end].sort_by_key(ShortEntry::order);
                    start = end;
                }
                prop_assert_eq!(start, parted.len());
                prop_assert_eq!(entry_fields(&parted), entry_fields(&expected));
            }
        }

        /// The merge reads again exactly the keys that digests cannot judge (missing on a
        /// side, more than one row on a side, digests that differ or are not valid), each
        /// with every row's locator, whether the entries are in memory or come in batches
        /// of any size.
        #[test]
        fn the_merge_rereads_exactly_what_digests_cannot_judge(
            owner in proptest::collection::vec((0u16..1000, 0u8..3, proptest::bool::weighted(0.9)), 0..600),
            edits in proptest::collection::vec(0u8..16, 600),
            inserted in proptest::collection::vec((0u16..1000, 0u8..3, proptest::bool::weighted(0.9)), 0..20),
            batch in prop_oneof![Just(None), (1usize..50).prop_map(Some)],
        ) {
            // The replica: the owner's rows, some dropped, changed or doubled, and a few more.
            let mut replica = Vec::new();
            for (&(n, digest, valid), &edit) in owner.iter().zip(&edits) {
                match edit {
                    0 => {}
                    1 => replica.push((n, digest + 1, valid)),
                    2 => replica.extend([(n, digest, valid); 2]),
                    _ => replica.push((n, digest, valid)),
                }
            }
            replica.extend(inserted);
            let entries = |rows: &[(u16, u8, bool)]| {
                let mut entries: Vec<ShortEntry> = rows
                    .iter()
                    .enumerate()
                    .map(|(locator, &(n, digest, valid))| {
                        let mut key = Vec::new();
                        key_bytes::push_part(&mut key, &KeyPart::Int(i64::from(n)));
                        ShortEntry::new(&key, valid.then_some([digest; DIGEST_LEN]), locator as u64)
                    })
                    .collect();
                entries.sort_by_key(ShortEntry::order);
                entries
            };
            let (owner, replica) = (entries(&owner), entries(&replica));

            let mut groups: BTreeMap<Vec<u8>, (Vec<&ShortEntry>, Vec<&ShortEntry>)> = BTreeMap::new();
            for entry in &owner {
                groups.entry(entry.key_bytes().to_vec()).or_default().0.push(entry);
            }
            for entry in &replica {
                groups.entry(entry.key_bytes().to_vec()).or_default().1.push(entry);
            }
            let locators = |entries: &[&ShortEntry]| entries.iter().map(|e| e.entry().locator).collect::<Vec<_>>();
            let expected: Vec<_> = groups
                .iter()
                .filter(|(_, (o, r))| match (o.as_slice(), r.as_slice()) {
                    ([o], [r]) => !(o.entry().digest.is_some() && o.entry().digest == r.entry().digest),
                    _ => true,
                })
                .map(|(key, (o, r))| (decode_key(key).expect("key"), locators(o), locators(r)))
                .collect();

            let cursor = |side, entries: Vec<ShortEntry>| {
                let index = match batch {
                    None => SortedIndex::Short(ShortBatch::new(entries)),
                    Some(size) => {
                        let (sender, receiver) = std::sync::mpsc::channel();
                        for part in entries.chunks(size) {
                            sender.send(Ok(part.to_vec())).expect("send");
                        }
                        SortedIndex::Fed { receiver, spent: std::sync::mpsc::channel().0, batch: ShortBatch::default() }
                    }
                };
                IndexCursor::new(side, index).expect("cursor")
            };
            let (mut owner, mut replica) = (cursor(Side::Owner, owner), cursor(Side::Replica, replica));
            let mut got = Vec::new();
            let mut scratch = Vec::new();
            while let Some(group) = next_to_reread(&mut owner, &mut replica, &mut scratch).expect("merge") {
                got.push((group.key, group.owner, group.replica));
            }
            prop_assert_eq!(got, expected);
        }

        /// Rows whose digests wait to be hashed together give the index that hashing
        /// each row alone gives: the same digests, the same entries in the same order,
        /// whatever mix of digest inputs of a block or less, longer ones and rows without
        /// a valid digest, short and long keys, and repeated keys.
        #[test]
        fn digests_hashed_together_index_as_one_at_a_time(
            rows in proptest::collection::vec(
                (0u8..40, prop_oneof![
                    3 => proptest::collection::vec(any::<u8>(), 0..=lanes::BLOCK_LEN).prop_map(Some),
                    1 => proptest::collection::vec(any::<u8>(), lanes::BLOCK_LEN + 1..200).prop_map(Some),
                    1 => Just(None),
                ]),
                0..300,
            ),
        ) {
            let mut batched = IndexBuilder::new(&spec(64 << 20), None);
            let mut pending = PendingEntries::default();
            let mut alone = IndexBuilder::new(&spec(64 << 20), None);
            for (locator, (n, input)) in rows.iter().enumerate() {
                let key = key_of(*n);
                pending.push(&mut batched, &key, input.as_deref(), locator as u64).expect("push");
                let mut bytes = Vec::new();
                for part in &key {
                    key_bytes::push_part(&mut bytes, part);
                }
                alone.push(&bytes, input.as_deref().map(lanes::hash_prefix), locator as u64).expect("push");
            }
            pending.flush(&mut batched).expect("flush");
            let read = |builder: IndexBuilder| {
                let mut cursor = IndexCursor::new(Side::Owner, builder.finish().expect("finish")).expect("cursor");
                let mut groups = Vec::new();
                while let Some(key) = cursor.key() {
                    let key = key.to_vec();
                    cursor.take_group(&key).expect("group");
                    let entries: Vec<_> = cursor.group.iter().map(|e| (e.digest, e.locator)).collect();
                    groups.push((key, entries));
                }
                groups
            };
            prop_assert_eq!(read(batched), read(alone));
        }

        /// Whatever the keys and the budget, the index comes back as the entries stably
        /// sorted by their key bytes, each with its digest and locator.
        #[test]
        fn the_index_is_the_entries_stably_sorted_by_key(
            rows in proptest::collection::vec((0u8..40, any::<bool>()), 0..800),
            budget in prop_oneof![Just(0usize), Just(2048), Just(64 << 20)],
            long_keys in prop_oneof![Just("none"), Just("later"), Just("anywhere")],
        ) {
            let mut expected = Vec::new();
            let mut builder = IndexBuilder::new(&spec(budget), Some(1 << 20));
            for (locator, &(n, valid)) in rows.iter().enumerate() {
                // Long keys never, only in the second half, or anywhere.
                let short_only = long_keys == "none" || (long_keys == "later" && locator < rows.len() / 2);
                let n = if short_only && n % 3 == 2 { n + 1 } else { n };
                let key = key_of(n);
                let digest = valid.then_some([n; DIGEST_LEN]);
                let mut bytes = Vec::new();
                for part in &key {
                    key_bytes::push_part(&mut bytes, part);
                }
                let key_len = bytes.len();
                builder.push(&bytes, digest, locator as u64).expect("push");
                push_entry(&mut bytes, digest.as_ref(), locator as u64);
                expected.push((bytes, key_len));
            }
            expected.sort_by(|a, b| a.0[..a.1].cmp(&b.0[..b.1]));
            let mut cursor = IndexCursor::new(Side::Owner, builder.finish().expect("finish")).expect("cursor");
            let mut got = Vec::new();
            while let Some(key) = cursor.key().map(<[u8]>::to_vec) {
                cursor.take_group(&key).expect("group");
                for entry in &cursor.group {
                    let mut bytes = key.clone();
                    push_entry(&mut bytes, entry.digest.as_ref(), entry.locator);
                    got.push((bytes, key.len()));
                }
            }
            prop_assert_eq!(got, expected);
        }
    }
}
