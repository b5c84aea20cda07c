//! Recheck before reporting: the keys found inconsistent are read again from each side
//! that can change underneath (and can be read by key), and compared afresh. What has
//! converged meanwhile was replication in flight, not drift.

use crate::compare::merge::MergeError;
use crate::compare::{Comparer, GroupOutcome};
use crate::job::Side;
use crate::source::{Key, Row, ScanSpec, Source, SourceError};

/// A key group that was inconsistent during the scan, kept for the recheck.
#[derive(Clone, Debug)]
pub struct Pending {
    /// The key.
    pub key: Key,
    /// The owner rows read during the scan; left empty when the owner is read again.
    pub owner: Vec<Row>,
    /// The replica rows read during the scan; left empty when the replica is read again.
    pub replica: Vec<Row>,
    /// What the scan found.
    pub outcome: GroupOutcome,
}

/// A side to read again: the source and the scan it was read with.
pub struct Reread<'a> {
    /// The source, which must support [`Source::fetch`].
    pub source: &'a mut dyn Source,
    /// The columns and key types used during the scan.
    pub spec: &'a ScanSpec,
}

/// Keys read again at a time (a source may split them into several statements: a
/// database server reads 4,000 in two statements at once). Two batches are held at
/// once, one compared while the next is read.
const BATCH: usize = 4000;

/// Reads the pending keys again from the given sides and compares them afresh, handing
/// `each` the fresh outcome of every pending group in order (an outcome without findings
/// means the inconsistency converged). A side that is not read again is compared as the
/// scan read it. Keys are read a batch at a time, from both sides at once, the next batch
/// while the last is compared, and each batch is let go once compared, so memory shrinks
/// as the recheck goes.
pub async fn recheck<E>(
    pending: Vec<Pending>,
    mut owner: Option<Reread<'_>>,
    mut replica: Option<Reread<'_>>,
    comparer: &mut Comparer,
    mut each: impl FnMut(GroupOutcome) -> Result<(), E>,
) -> Result<(), MergeError<E>> {
    let mut pending = pending.into_iter();
    let mut next_batch = || -> Vec<Pending> { pending.by_ref().take(BATCH).collect() };
    let mut batch = next_batch();
    if batch.is_empty() {
        return Ok(());
    }
    let mut fresh = read_again(owner.as_mut(), replica.as_mut(), &batch).await?;
    loop {
        let following = next_batch();
        if following.is_empty() {
            return compare_batch(&batch, &fresh, comparer, &mut each);
        }
        // The servers read the next batch while this one is compared.
        let (read, compared) =
            tokio::join!(read_again(owner.as_mut(), replica.as_mut(), &following), async {
                compare_batch(&batch, &fresh, comparer, &mut each)
            });
        // This batch's outcomes (or its failure) first, as if the next were not read yet.
        compared?;
        fresh = read?;
        batch = following;
    }
}

/// The rows of one batch read again, each side's in key order; `None` for a side that
/// is not read again.
struct Fresh {
    owner: Option<Vec<Row>>,
    replica: Option<Vec<Row>>,
}

/// Reads the keys of `batch` again from both sides at once.
async fn read_again<E>(
    owner: Option<&mut Reread<'_>>,
    replica: Option<&mut Reread<'_>>,
    batch: &[Pending],
) -> Result<Fresh, MergeError<E>> {
    let keys: Vec<Key> = batch.iter().map(|p| p.key.clone()).collect();
    let (owner, replica) = tokio::join!(fetch_sorted(owner, &keys), fetch_sorted(replica, &keys));
    Ok(Fresh {
        owner: owner.map_err(|e| MergeError::Source(Side::Owner, e))?,
        replica: replica.map_err(|e| MergeError::Source(Side::Replica, e))?,
    })
}

/// Compares every group of `batch` afresh, in order.
fn compare_batch<E>(
    batch: &[Pending],
    fresh: &Fresh,
    comparer: &mut Comparer,
    each: &mut impl FnMut(GroupOutcome) -> Result<(), E>,
) -> Result<(), MergeError<E>> {
    let mut owner = fresh.owner.as_deref().map(KeyWalk::new);
    let mut replica = fresh.replica.as_deref().map(KeyWalk::new);
    for p in batch {
        let o = owner.as_mut().map_or(&p.owner[..], |w| w.rows_of(&p.key));
        let r = replica.as_mut().map_or(&p.replica[..], |w| w.rows_of(&p.key));
        each(comparer.compare_group(&p.key, o, r)).map_err(MergeError::Sink)?;
    }
    Ok(())
}

/// The rows of `keys` read again from `side`, in key order; `None` when the side is not
/// read again.
async fn fetch_sorted(side: Option<&mut Reread<'_>>, keys: &[Key]) -> Result<Option<Vec<Row>>, SourceError> {
    let Some(side) = side else {
        return Ok(None);
    };
    let mut rows = side.source.fetch(side.spec, keys).await?;
    // Sources return rows in key order; one that did not would only cost a sort here.
    if !rows.is_sorted_by(|a, b| a.key <= b.key) {
        rows.sort_by(|a, b| a.key.cmp(&b.key));
    }
    Ok(Some(rows))
}

/// Finds the rows of each key among rows in key order by walking forward with the keys
/// (pending keys come in key order), where a map would cost a lookup per key; a key
/// before the last one looked up is searched for afresh.
struct KeyWalk<'r> {
    rows: &'r [Row],
    /// The first row whose key is not before the last key looked up.
    at: usize,
}

impl<'r> KeyWalk<'r> {
    fn new(rows: &'r [Row]) -> KeyWalk<'r> {
        KeyWalk { rows, at: 0 }
    }

    /// The rows with `key`, in the order they were read.
    fn rows_of(&mut self, key: &Key) -> &'r [Row] {
        let rows = self.rows;
        if self.at > 0 && rows[self.at - 1].key >= *key {
            self.at = rows.partition_point(|row| row.key < *key);
        }
        while rows.get(self.at).is_some_and(|row| row.key < *key) {
            self.at += 1;
        }
        let len = rows[self.at..].iter().take_while(|row| row.key == *key).count();
        &rows[self.at..self.at + len]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::compare::{Kind, text_field_plan};
    use crate::job::Relation;
    use crate::source::{Column, KeyPart, KeyType, Value};

    /// A side read again from memory; `fetch` hands out the stored rows of the keys asked
    /// for, reversed when `reversed`, and fails on call `fail_on` (counting from 1).
    #[derive(Default)]
    struct Stored {
        rows: Vec<Row>,
        reversed: bool,
        fail_on: Option<usize>,
        /// The number of keys each `fetch` asked for.
        fetches: Vec<usize>,
        /// Outcomes handed out so far, when counted, and their count at each `fetch`.
        handed: Option<Arc<AtomicUsize>>,
        handed_at_fetch: Vec<usize>,
    }

    #[async_trait]
    impl Source for Stored {
        fn describe(&self) -> String {
            "stored rows".into()
        }
        fn columns(&self) -> &[Column] {
            &[]
        }
        async fn scan(&mut self, _spec: &ScanSpec) -> Result<(), SourceError> {
            Ok(())
        }
        async fn next_page(&mut self) -> Result<Option<Vec<Row>>, SourceError> {
            Ok(None)
        }
        async fn fetch(&mut self, _spec: &ScanSpec, keys: &[Key]) -> Result<Vec<Row>, SourceError> {
            self.fetches.push(keys.len());
            if let Some(handed) = &self.handed {
                self.handed_at_fetch.push(handed.load(Ordering::SeqCst));
            }
            if self.fail_on == Some(self.fetches.len()) {
                return Err(SourceError::Read("the connection was lost".into()));
            }
            let wanted: BTreeSet<&Key> = keys.iter().collect();
            let mut rows: Vec<Row> = self
                .rows
                .iter()
                .filter(|r| wanted.contains(&r.key))
                .cloned()
                .collect();
            if self.reversed {
                rows.reverse();
            }
            Ok(rows)
        }
        fn can_fetch(&self) -> bool {
            true
        }
    }

    fn key(i: i64) -> Key {
        Key(vec![KeyPart::Int(i)])
    }

    fn row(i: i64, v: &str) -> Row {
        Row {
            key: key(i),
            values: vec![Value::Text(v.into())],
        }
    }

    fn pending(i: i64) -> Pending {
        Pending {
            key: key(i),
            owner: Vec::new(),
            replica: Vec::new(),
            outcome: GroupOutcome::default(),
        }
    }

    fn spec() -> ScanSpec {
        ScanSpec {
            key: vec!["id".into()],
            key_types: vec![KeyType::Integer],
            columns: vec!["v".into()],
            tiebreak: Vec::new(),
            page_size: 10,
            memory_budget: 1 << 20,
        }
    }

    fn reread<'a>(source: &'a mut Stored, spec: &'a ScanSpec) -> Option<Reread<'a>> {
        Some(Reread { source, spec })
    }

    /// Rechecks `pending` against both stored sides; the outcomes handed out and the end.
    async fn run(
        pending: Vec<Pending>,
        owner: &mut Stored,
        replica: Option<&mut Stored>,
    ) -> (Vec<GroupOutcome>, Result<(), MergeError<String>>) {
        let spec = spec();
        let mut comparer = Comparer::new(text_field_plan(Relation::Mirror));
        let mut outcomes = Vec::new();
        let replica = replica.and_then(|r| reread(r, &spec));
        let end = recheck(pending, reread(owner, &spec), replica, &mut comparer, |o| {
            outcomes.push(o);
            Ok(())
        })
        .await;
        (outcomes, end)
    }

    #[tokio::test]
    async fn rows_read_again_in_any_order_are_compared_under_their_own_keys() {
        let mut owner = Stored {
            rows: (1..=6).map(|i| row(i, "a")).collect(),
            reversed: true,
            ..Stored::default()
        };
        let mut replica = Stored {
            rows: vec![
                row(1, "a"),
                row(2, "a"),
                row(3, "b"),
                row(5, "a"),
                row(5, "z"),
                row(6, "a"),
                row(9, "a"),
            ],
            reversed: true,
            ..Stored::default()
        };
        // Not in key order, and one key twice.
        let keys = [3, 1, 5, 2, 4, 4, 6];
        let (outcomes, end) = run(
            keys.into_iter().map(pending).collect(),
            &mut owner,
            Some(&mut replica),
        )
        .await;
        end.unwrap();
        // What each group compares to, its rows in the order `fetch` read them.
        let mut comparer = Comparer::new(text_field_plan(Relation::Mirror));
        let rows_of = |side: &Stored, i: i64| -> Vec<Row> {
            let mut rows: Vec<Row> = side.rows.iter().filter(|r| r.key == key(i)).cloned().collect();
            rows.reverse();
            rows
        };
        let expected: Vec<GroupOutcome> = keys
            .iter()
            .map(|&i| comparer.compare_group(&key(i), &rows_of(&owner, i), &rows_of(&replica, i)))
            .collect();
        assert_eq!(outcomes, expected);
        let kinds: Vec<Vec<Kind>> = outcomes
            .iter()
            .map(|o| o.findings.iter().map(|f| f.kind).collect())
            .collect();
        assert_eq!(
            kinds,
            [
                vec![Kind::Mismatch],
                vec![],
                vec![Kind::DuplicateKey],
                vec![],
                vec![Kind::MissingInReplica],
                vec![Kind::MissingInReplica],
                vec![],
            ]
        );
    }

    #[tokio::test]
    async fn keys_are_read_again_a_batch_at_a_time_and_compared_in_order() {
        let n = 2 * BATCH + 1;
        let mut owner = Stored {
            rows: (0..n as i64).map(|i| row(i, "a")).collect(),
            ..Stored::default()
        };
        // The replica is compared as the scan read it.
        let keys: Vec<Pending> = (0..n as i64)
            .map(|i| Pending {
                replica: vec![row(i, "b")],
                ..pending(i)
            })
            .collect();
        let (outcomes, end) = run(keys, &mut owner, None).await;
        end.unwrap();
        assert_eq!(owner.fetches, [BATCH, BATCH, 1]);
        let keys: Vec<Key> = outcomes.iter().map(|o| o.findings[0].key.clone()).collect();
        assert_eq!(keys, (0..n as i64).map(key).collect::<Vec<_>>());
        assert!(
            outcomes
                .iter()
                .all(|o| o.findings.len() == 1 && o.findings[0].kind == Kind::Mismatch)
        );
    }

    #[tokio::test]
    async fn the_next_batch_is_read_while_the_last_is_compared() {
        let n = 3 * BATCH;
        let handed = Arc::new(AtomicUsize::new(0));
        let mut owner = Stored {
            rows: (0..n as i64).map(|i| row(i, "a")).collect(),
            handed: Some(handed.clone()),
            ..Stored::default()
        };
        let mut replica = Stored::default();
        let spec = spec();
        let mut comparer = Comparer::new(text_field_plan(Relation::Mirror));
        recheck(
            (0..n as i64).map(pending).collect(),
            reread(&mut owner, &spec),
            reread(&mut replica, &spec),
            &mut comparer,
            |_| -> Result<(), String> {
                handed.fetch_add(1, Ordering::SeqCst);
                Ok(())
            },
        )
        .await
        .unwrap();
        assert_eq!(handed.load(Ordering::SeqCst), n);
        // Each batch is asked for before the one ahead of it is compared: two at most
        // are held.
        assert_eq!(owner.handed_at_fetch, [0, 0, BATCH]);
    }

    #[tokio::test]
    async fn a_side_that_fails_fails_after_the_batches_before_it_are_compared() {
        let n = 3 * BATCH;
        let mut owner = Stored {
            rows: (0..n as i64).map(|i| row(i, "a")).collect(),
            fail_on: Some(2),
            ..Stored::default()
        };
        let mut replica = Stored::default();
        let (outcomes, end) = run(
            (0..n as i64).map(pending).collect(),
            &mut owner,
            Some(&mut replica),
        )
        .await;
        assert!(
            matches!(&end, Err(MergeError::Source(Side::Owner, SourceError::Read(m))) if m.contains("lost")),
            "{end:?}"
        );
        assert_eq!(outcomes.len(), BATCH);
        assert_eq!(owner.fetches, [BATCH, BATCH]);
    }

    #[tokio::test]
    async fn a_sink_that_fails_stops_the_recheck() {
        let n = 3 * BATCH;
        let mut owner = Stored {
            rows: (0..n as i64).map(|i| row(i, "a")).collect(),
            ..Stored::default()
        };
        let mut replica = Stored::default();
        let spec = spec();
        let mut comparer = Comparer::new(text_field_plan(Relation::Mirror));
        let mut handed = 0;
        let end = recheck(
            (0..n as i64).map(pending).collect(),
            reread(&mut owner, &spec),
            reread(&mut replica, &spec),
            &mut comparer,
            |_| {
                handed += 1;
                if handed == 3 { Err("disk full") } else { Ok(()) }
            },
        )
        .await;
        assert!(matches!(end, Err(MergeError::Sink("disk full"))), "{end:?}");
        assert_eq!(handed, 3);
        assert!(owner.fetches.len() < 3, "{:?}", owner.fetches);
    }
}
