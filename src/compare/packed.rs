//! The merge-join of packed pages ([`RowBatch`]es, as database scans read them). Keys
//! are compared as their order-preserving bytes, and a key whose rows are consistent
//! byte for byte (see [`Comparer::packed_consistent`]) is passed over without ever
//! becoming a [`Row`]; every other key's rows are decoded and handed to the
//! [`Comparer`] and the sink exactly as [`super::merge::merge`] would hand them.

use std::cmp::Ordering;
use std::ops::Range;

use tokio::sync::mpsc;

use crate::compare::merge::{GroupSink, MergeError};
use crate::compare::{Bytewise, Comparer};
use crate::job::Side;
use crate::source::batch::RowBatch;
use crate::source::{Row, SourceError, key_bytes};

/// Packed pages as a reader task sends them; an `Err` ends the stream.
pub type BatchReceiver = mpsc::Receiver<Result<RowBatch, SourceError>>;

/// Some rows of one side that share a key: a range of a batch's rows.
pub type PackedGroup<'a> = (&'a RowBatch, Range<usize>);

/// A side's stream of packed pages, positioned at its next key, with the key-order check.
pub struct BatchCursor {
    side: Side,
    receiver: BatchReceiver,
    batch: Option<RowBatch>,
    at: usize,
    done: bool,
    /// The key of the last group taken, once one was.
    last: Option<Vec<u8>>,
    rows_read: u64,
    /// The current group: rows of `batch`, or all of `carried` when it ran across pages.
    group: Range<usize>,
    carried: Option<RowBatch>,
}

impl BatchCursor {
    /// A cursor over the pages a reader task sends.
    pub fn new(side: Side, receiver: BatchReceiver) -> BatchCursor {
        BatchCursor {
            side,
            receiver,
            batch: None,
            at: 0,
            done: false,
            last: None,
            rows_read: 0,
            group: 0..0,
            carried: None,
        }
    }

    /// Rows taken from this side so far.
    pub fn rows_read(&self) -> u64 {
        self.rows_read
    }

    /// Receives pages until one has a row at the cursor; false at the end of the stream.
    async fn fill(&mut self) -> Result<bool, (Side, SourceError)> {
        loop {
            if self.batch.as_ref().is_some_and(|b| self.at < b.len()) {
                return Ok(true);
            }
            if self.done {
                return Ok(false);
            }
            match self.receiver.recv().await {
                Some(Ok(batch)) => {
                    self.batch = Some(batch);
                    self.at = 0;
                }
                Some(Err(e)) => return Err((self.side, e)),
                None => self.done = true,
            }
        }
    }

    /// The next row's key bytes, or `None` at the end of the stream.
    async fn peek(&mut self) -> Result<Option<&[u8]>, (Side, SourceError)> {
        if !self.fill().await? {
            return Ok(None);
        }
        let Some(batch) = &self.batch else {
            return Ok(None);
        };
        let key = batch.key(self.at);
        if let Some(last) = &self.last
            && key <= last.as_slice()
        {
            let message = format!("key {} came after key {}", shown(key), shown(last));
            return Err((self.side, SourceError::Order(message)));
        }
        Ok(Some(key))
    }

    /// Takes every row whose key is `key` as the current group (none when this side's
    /// next key is another), reading on into the next pages while they continue it.
    async fn take_group(&mut self, key: &[u8]) -> Result<(), (Side, SourceError)> {
        self.carried = None;
        self.group = self.at..self.at;
        let Some(batch) = &self.batch else {
            return Ok(());
        };
        let start = self.at;
        while self.at < batch.len() && batch.key(self.at) == key {
            self.at += 1;
        }
        if self.at == start {
            return Ok(());
        }
        self.group = start..self.at;
        let mut taken = self.at - start;
        let side = self.side;
        let overfull = |e: String| {
            (
                side,
                SourceError::Read(format!("{e}: the rows of key {}", shown(key))),
            )
        };
        if self.at == batch.len() && !self.done {
            // The page ended inside the group: gather the group from the pages after it.
            let mut carried = batch.empty_like(taken);
            for row in start..self.at {
                carried.push_from(batch, row).map_err(overfull)?;
            }
            while self.fill().await? {
                let Some(batch) = &self.batch else { break };
                let from = self.at;
                while self.at < batch.len() && batch.key(self.at) == key {
                    carried.push_from(batch, self.at).map_err(overfull)?;
                    self.at += 1;
                }
                taken += self.at - from;
                if self.at < batch.len() {
                    break;
                }
            }
            self.carried = Some(carried);
        }
        self.rows_read += taken as u64;
        let last = self.last.get_or_insert_with(Vec::new);
        last.clear();
        last.extend_from_slice(key);
        Ok(())
    }

    /// The current group, or `None` when this side has no rows for the key.
    fn group(&self) -> Option<PackedGroup<'_>> {
        match (&self.carried, &self.batch) {
            (Some(carried), _) => Some((carried, 0..carried.len())),
            (None, Some(batch)) if !self.group.is_empty() => Some((batch, self.group.clone())),
            _ => None,
        }
    }

    /// The current group's rows, decoded.
    fn group_rows(&self) -> Result<Vec<Row>, (Side, SourceError)> {
        match self.group() {
            Some((batch, rows)) => batch.rows(rows).map_err(|e| (self.side, e)),
            None => Ok(Vec::new()),
        }
    }
}

fn shown(key: &[u8]) -> String {
    key_bytes::decode(key).map_or_else(|e| format!("(unreadable: {e})"), |k| k.to_string())
}

/// Merge-joins two streams of packed pages, handing every key whose rows are not
/// consistent byte for byte to `comparer` and `sink`.
pub async fn merge_packed<S: GroupSink>(
    owner: &mut BatchCursor,
    replica: &mut BatchCursor,
    comparer: &mut Comparer,
    sink: &mut S,
) -> Result<(), MergeError<S::Error>> {
    let mut key = Vec::new();
    let mut bytewise: Option<Vec<Bytewise>> = None;
    loop {
        let key_side = {
            let owner_key = owner.peek().await?;
            let replica_key = replica.peek().await?;
            let (side, smaller) = match (owner_key, replica_key) {
                (None, None) => return Ok(()),
                (Some(o), None) => (Side::Owner, o),
                (None, Some(r)) => (Side::Replica, r),
                (Some(o), Some(r)) => match o.cmp(r) {
                    Ordering::Greater => (Side::Replica, r),
                    _ => (Side::Owner, o),
                },
            };
            key.clear();
            key.extend_from_slice(smaller);
            side
        };
        owner.take_group(&key).await?;
        replica.take_group(&key).await?;
        let consistent = match (owner.group(), replica.group()) {
            (Some(o), Some(r)) => {
                let bytewise =
                    bytewise.get_or_insert_with(|| comparer.bytewise_fields(o.0.codec(), r.0.codec()));
                comparer.packed_consistent(bytewise, &o, Some(&r))
            }
            (Some(o), None) => comparer.packed_consistent(&[], &o, None),
            _ => false,
        };
        if consistent {
            continue;
        }
        let decoded = key_bytes::decode(&key).map_err(|e| {
            MergeError::Source(
                key_side,
                SourceError::Read(format!("a packed key is corrupt: {e}")),
            )
        })?;
        let owner_rows = owner.group_rows()?;
        let replica_rows = replica.group_rows()?;
        let outcome = comparer.compare_group(&decoded, &owner_rows, &replica_rows);
        sink.group(&decoded, &owner_rows, &replica_rows, outcome)
            .map_err(MergeError::Sink)?;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::compare::merge::{Cursor, merge};
    use crate::compare::normalize::parse_instant;
    use crate::compare::{GroupOutcome, Kind, text_field_plan};
    use crate::job::Relation;
    use crate::source::batch::{CellEncoding, RowCodec};
    use crate::source::{Key, KeyPart, Value};

    /// Cells are UTF-8 text, every column encoded alike.
    #[derive(Debug)]
    struct TextCodec;

    impl RowCodec for TextCodec {
        fn value(
            &self,
            cell: Option<&[u8]>,
            _col: usize,
            _key: &dyn Fn() -> String,
        ) -> Result<Value, SourceError> {
            Ok(cell.map_or(Value::Null, |c| {
                Value::Text(String::from_utf8(c.to_vec()).unwrap())
            }))
        }
        fn encoding(&self, _col: usize) -> CellEncoding {
            CellEncoding(0)
        }
    }

    /// A row: its id, its compared value, and the day of the month it changed on.
    type Spec = (i64, Option<&'static str>, u8);

    fn changed(day: u8) -> String {
        format!("2026-01-{day:02} 00:00:00")
    }

    fn rows(specs: &[Spec]) -> Vec<Row> {
        specs
            .iter()
            .map(|(id, v, day)| Row {
                key: Key(vec![KeyPart::Int(*id)]),
                values: vec![
                    v.map_or(Value::Null, |v| Value::Text(v.into())),
                    Value::Text(changed(*day)),
                ],
            })
            .collect()
    }

    /// The rows in pages cut after the given row counts (the rest in the last page).
    fn pages<T>(all: Vec<T>, cuts: &[usize]) -> Vec<Vec<T>> {
        let mut pages = Vec::new();
        let mut rest = all.into_iter();
        for &n in cuts {
            pages.push(rest.by_ref().take(n).collect());
        }
        pages.push(rest.collect());
        pages
    }

    fn packed(page: &[Row]) -> RowBatch {
        let mut batch = RowBatch::new(Arc::new(TextCodec), 2);
        for row in page {
            let mut key = Vec::new();
            key_bytes::push_key(&mut key, &row.key);
            batch.begin_row(&key).unwrap();
            for value in &row.values {
                let text = value.to_plain_text();
                batch.push_cell(text.as_deref().map(str::as_bytes)).unwrap();
            }
        }
        batch
    }

    fn comparer(relation: Relation, same_value_is_equal: bool, staleness: bool) -> Comparer {
        let mut plan = text_field_plan(relation);
        plan.fields[0].same_value_is_equal = same_value_is_equal;
        if staleness {
            plan.owner_changed_at = Some(1);
            plan.replica_changed_at = Some(1);
            plan.recent_cutoff = parse_instant(&changed(5));
        }
        Comparer::new(plan)
    }

    /// Every outcome that says anything, in key order.
    #[derive(Default)]
    struct Said(Vec<(Key, GroupOutcome)>);

    impl GroupSink for Said {
        type Error = ();
        fn group(&mut self, key: &Key, _: &[Row], _: &[Row], outcome: GroupOutcome) -> Result<(), ()> {
            if outcome != GroupOutcome::default() {
                self.0.push((key.clone(), outcome));
            }
            Ok(())
        }
    }

    fn channel<T>(pages: Vec<T>) -> mpsc::Receiver<Result<T, SourceError>> {
        let (tx, rx) = mpsc::channel(pages.len().max(1));
        for page in pages {
            tx.try_send(Ok(page)).unwrap();
        }
        rx
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// What a merge said, and the rows it read from each side.
    type Heard = (Vec<(Key, GroupOutcome)>, u64, u64);

    /// What the row merge and the packed merge say about the same pages.
    fn both(
        owner: &[Spec],
        replica: &[Spec],
        cuts: (&[usize], &[usize]),
        comparer: &Comparer,
    ) -> (Heard, Heard) {
        run(async {
            let mut o = Cursor::new(Side::Owner, channel(pages(rows(owner), cuts.0)));
            let mut r = Cursor::new(Side::Replica, channel(pages(rows(replica), cuts.1)));
            let mut said = Said::default();
            merge(&mut o, &mut r, &mut comparer.clone(), &mut said)
                .await
                .unwrap();
            let by_rows = (said.0, o.rows_read(), r.rows_read());

            let pack = |specs: &[Spec], cuts: &[usize]| {
                pages(rows(specs), cuts)
                    .iter()
                    .map(|p| packed(p))
                    .collect::<Vec<_>>()
            };
            let mut o = BatchCursor::new(Side::Owner, channel(pack(owner, cuts.0)));
            let mut r = BatchCursor::new(Side::Replica, channel(pack(replica, cuts.1)));
            let mut said = Said::default();
            merge_packed(&mut o, &mut r, &mut comparer.clone(), &mut said)
                .await
                .unwrap();
            (by_rows, (said.0, o.rows_read(), r.rows_read()))
        })
    }

    fn table() -> impl Strategy<Value = Vec<Spec>> {
        let value = prop_oneof![Just(None), Just(Some("a")), Just(Some("b")), Just(Some(""))];
        proptest::collection::vec((0i64..12, value, 1u8..9), 0..24).prop_map(|mut rows| {
            rows.sort_by_key(|r| r.0);
            rows
        })
    }

    fn cuts() -> impl Strategy<Value = Vec<usize>> {
        proptest::collection::vec(0usize..5, 0..6)
    }

    proptest! {
        /// Whatever the rows, duplicates and page cuts, the packed merge says exactly
        /// what the row merge says, and reads as many rows.
        #[test]
        fn packed_pages_are_judged_as_rows_are(
            owner in table(),
            replica in table(),
            owner_cuts in cuts(),
            replica_cuts in cuts(),
            reference in any::<bool>(),
            same_value_is_equal in any::<bool>(),
            staleness in any::<bool>(),
        ) {
            let relation = if reference { Relation::Reference } else { Relation::Mirror };
            let comparer = comparer(relation, same_value_is_equal, staleness);
            let (by_rows, by_bytes) = both(&owner, &replica, (&owner_cuts, &replica_cuts), &comparer);
            prop_assert_eq!(by_bytes, by_rows);
        }
    }

    #[test]
    fn a_group_running_across_pages_is_judged_whole() {
        let owner: Vec<Spec> = vec![
            (1, Some("a"), 1),
            (2, Some("b"), 1),
            (2, Some("b"), 1),
            (2, Some("b"), 1),
        ];
        let replica: Vec<Spec> = vec![(1, Some("a"), 1), (2, Some("b"), 1)];
        let comparer = comparer(Relation::Mirror, true, false);
        let (by_rows, by_bytes) = both(&owner, &replica, (&[2, 0, 1], &[1]), &comparer);
        assert_eq!(by_bytes, by_rows);
        let (said, owner_rows, replica_rows) = by_bytes;
        assert_eq!((owner_rows, replica_rows), (4, 2));
        assert_eq!(said.len(), 1);
        assert_eq!(said[0].1.findings[0].kind, Kind::DuplicateKey);
        assert_eq!(said[0].1.findings[0].count, Some(3));
    }

    #[test]
    fn keys_out_of_order_fail_naming_both() {
        let batch = packed(&rows(&[(2, Some("a"), 1), (1, Some("a"), 1)]));
        let result = run(async {
            let mut o = BatchCursor::new(Side::Owner, channel(vec![batch]));
            let mut r = BatchCursor::new(Side::Replica, channel(Vec::new()));
            merge_packed(
                &mut o,
                &mut r,
                &mut comparer(Relation::Mirror, true, false),
                &mut Said::default(),
            )
            .await
        });
        match result {
            Err(MergeError::Source(Side::Owner, SourceError::Order(m))) => {
                assert_eq!(m, "key 1 came after key 2")
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
