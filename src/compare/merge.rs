//! The merge-join: walks two streams of key-ordered pages in step, hands every key's
//! rows to the [`Comparer`], and checks that each stream really is in key order.

use std::cmp::Ordering;
use std::collections::VecDeque;

use tokio::sync::mpsc;

use crate::compare::{Comparer, GroupOutcome};
use crate::job::Side;
use crate::source::{Key, Row, SourceError};

/// Pages as a reader task sends them; an `Err` ends the stream.
pub type PageReceiver = mpsc::Receiver<Result<Vec<Row>, SourceError>>;

/// Why a merge stopped.
#[derive(Debug)]
pub enum MergeError<E> {
    /// A source failed, or yielded keys out of order.
    Source(Side, SourceError),
    /// The consumer of the findings failed (a report could not be written).
    Sink(E),
}

impl<E> From<(Side, SourceError)> for MergeError<E> {
    fn from((side, error): (Side, SourceError)) -> Self {
        MergeError::Source(side, error)
    }
}

/// Receives each key group's rows and outcome, in key order.
pub trait GroupSink {
    /// The consumer's error.
    type Error;
    /// Called once per key present on either side.
    fn group(
        &mut self,
        key: &Key,
        owner: &[Row],
        replica: &[Row],
        outcome: GroupOutcome,
    ) -> Result<(), Self::Error>;
}

/// A side's stream of rows with one-row lookahead and the key-order check.
pub struct Cursor {
    side: Side,
    receiver: PageReceiver,
    queue: VecDeque<Row>,
    last: Option<Key>,
    done: bool,
    rows_read: u64,
}

impl Cursor {
    /// A cursor over the pages a reader task sends.
    pub fn new(side: Side, receiver: PageReceiver) -> Cursor {
        Cursor {
            side,
            receiver,
            queue: VecDeque::new(),
            last: None,
            done: false,
            rows_read: 0,
        }
    }

    /// Rows taken from this side so far.
    pub fn rows_read(&self) -> u64 {
        self.rows_read
    }

    /// The next row's key, or `None` at the end of the stream.
    async fn peek(&mut self) -> Result<Option<&Key>, (Side, SourceError)> {
        while self.queue.is_empty() && !self.done {
            match self.receiver.recv().await {
                Some(Ok(page)) => self.queue = VecDeque::from(page),
                Some(Err(e)) => return Err((self.side, e)),
                None => self.done = true,
            }
        }
        let Some(front) = self.queue.front() else {
            return Ok(None);
        };
        if let Some(last) = &self.last
            && front.key < *last
        {
            let message = format!("key {} came after key {}", front.key, last);
            return Err((self.side, SourceError::Order(message)));
        }
        Ok(Some(&front.key))
    }

    /// Moves the first row and every row after it that shares its key (the smallest
    /// key left) into `into`; leaves `into` empty at the end of the stream.
    async fn take_group(&mut self, into: &mut Vec<Row>) -> Result<(), (Side, SourceError)> {
        into.clear();
        if self.peek().await?.is_none() {
            return Ok(());
        }
        if let Some(first) = self.queue.pop_front() {
            into.push(first);
        }
        while let Some(key) = self.peek().await? {
            if *key != into[0].key {
                break;
            }
            if let Some(row) = self.queue.pop_front() {
                into.push(row);
            }
        }
        self.rows_read += into.len() as u64;
        if let Some(first) = into.first() {
            // Reuses the last key's allocation where it can.
            match &mut self.last {
                Some(last) => last.clone_from(&first.key),
                None => self.last = Some(first.key.clone()),
            }
        }
        Ok(())
    }
}

/// Merge-joins the two sides, comparing each key's rows and handing the outcome to `sink`.
pub async fn merge<S: GroupSink>(
    owner: &mut Cursor,
    replica: &mut Cursor,
    comparer: &mut Comparer,
    sink: &mut S,
) -> Result<(), MergeError<S::Error>> {
    let (mut owner_rows, mut replica_rows) = (Vec::new(), Vec::new());
    loop {
        let order = {
            let owner_key = owner.peek().await?;
            let replica_key = replica.peek().await?;
            match (owner_key, replica_key) {
                (None, None) => return Ok(()),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(o), Some(r)) => o.cmp(r),
            }
        };
        if order.is_le() {
            owner.take_group(&mut owner_rows).await?;
        } else {
            owner_rows.clear();
        }
        if order.is_ge() {
            replica.take_group(&mut replica_rows).await?;
        } else {
            replica_rows.clear();
        }
        let Some(first) = owner_rows.first().or(replica_rows.first()) else {
            return Ok(());
        };
        let key = &first.key;
        let outcome = comparer.compare_group(key, &owner_rows, &replica_rows);
        sink.group(key, &owner_rows, &replica_rows, outcome)
            .map_err(MergeError::Sink)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{FieldRule, Kind, text_field_plan};
    use crate::job::Relation;
    use crate::source::{FieldType, KeyPart, Value};

    fn row(id: i64, v: &str) -> Row {
        Row {
            key: Key(vec![KeyPart::Int(id)]),
            values: vec![Value::Text(v.into())],
        }
    }

    fn cursor(side: Side, pages: Vec<Vec<Row>>) -> Cursor {
        let (tx, rx) = mpsc::channel(pages.len().max(1));
        for p in pages {
            tx.try_send(Ok(p)).unwrap();
        }
        Cursor::new(side, rx)
    }

    fn comparer(relation: Relation) -> Comparer {
        Comparer::new(text_field_plan(relation))
    }

    #[derive(Default)]
    struct Recorder(Vec<(Kind, Key)>);

    impl GroupSink for Recorder {
        type Error = ();
        fn group(&mut self, _: &Key, _: &[Row], _: &[Row], outcome: GroupOutcome) -> Result<(), ()> {
            self.0
                .extend(outcome.findings.into_iter().map(|f| (f.kind, f.key)));
            Ok(())
        }
    }

    fn key(id: i64) -> Key {
        Key(vec![KeyPart::Int(id)])
    }

    #[tokio::test]
    async fn finds_missing_and_mismatched_rows_across_page_boundaries() {
        let mut o = cursor(
            Side::Owner,
            vec![
                vec![row(1, "a"), row(2, "b")],
                vec![],
                vec![row(3, "c"), row(5, "e")],
            ],
        );
        let mut r = cursor(
            Side::Replica,
            vec![vec![row(1, "a")], vec![row(3, "x"), row(4, "d"), row(5, "e")]],
        );
        let mut rec = Recorder::default();
        merge(&mut o, &mut r, &mut comparer(Relation::Mirror), &mut rec)
            .await
            .unwrap();
        assert_eq!(
            rec.0,
            vec![
                (Kind::MissingInReplica, key(2)),
                (Kind::Mismatch, key(3)),
                (Kind::MissingInOwner, key(4))
            ]
        );
        assert_eq!((o.rows_read(), r.rows_read()), (4, 4));
    }

    #[tokio::test]
    async fn duplicates_are_reported_per_side_and_key() {
        let mut o = cursor(
            Side::Owner,
            vec![vec![row(1, "a"), row(1, "a")], vec![row(1, "b"), row(2, "b")]],
        );
        let mut r = cursor(Side::Replica, vec![vec![row(1, "a"), row(2, "b"), row(2, "b")]]);
        let mut rec = Recorder::default();
        merge(&mut o, &mut r, &mut comparer(Relation::Mirror), &mut rec)
            .await
            .unwrap();
        assert_eq!(
            rec.0,
            vec![(Kind::DuplicateKey, key(1)), (Kind::DuplicateKey, key(2))]
        );
        assert_eq!(o.rows_read(), 4);
    }

    #[tokio::test]
    async fn out_of_order_keys_fail_loudly() {
        let mut o = cursor(Side::Owner, vec![vec![row(2, "a"), row(1, "a")]]);
        let mut r = cursor(Side::Replica, vec![]);
        let err = merge(
            &mut o,
            &mut r,
            &mut comparer(Relation::Mirror),
            &mut Recorder::default(),
        )
        .await;
        match err {
            Err(MergeError::Source(Side::Owner, SourceError::Order(m))) => {
                assert!(m.contains("key 1 came after key 2"))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn identical_values_skip_normalizing_only_where_they_cannot_fail_to_parse() {
        let compare = |same_value_is_equal: bool, value: &str| {
            let mut comparer = comparer(Relation::Mirror);
            comparer.plan.fields[0].rule = FieldRule::exact(FieldType::Decimal);
            comparer.plan.fields[0].same_value_is_equal = same_value_is_equal;
            let outcome = comparer.compare_group(&key(1), &[row(1, value)], &[row(1, value)]);
            outcome.findings.into_iter().map(|f| f.reason).collect::<Vec<_>>()
        };
        // Text that is not a number is a mismatch with a reason on both sides, even
        // when both sides agree on it, unless the sources enforce the column's type.
        assert_eq!(compare(false, "abc").len(), 1);
        assert!(
            compare(false, "abc")[0]
                .as_deref()
                .unwrap_or_default()
                .contains("not a decimal")
        );
        assert!(compare(true, "abc").is_empty());
        assert!(compare(false, "10.50").is_empty());
        assert!(compare(true, "10.50").is_empty());
    }

    #[test]
    fn negative_zero_is_not_identical_to_zero_in_a_text_field() {
        // `-0` and `0` are equal floats but different text: the shortcut must not hide it.
        let float_row = |f: f64| Row {
            key: key(1),
            values: vec![Value::Float(f)],
        };
        let mut comparer = comparer(Relation::Mirror);
        let outcome = comparer.compare_group(&key(1), &[float_row(-0.0)], &[float_row(0.0)]);
        assert_eq!(outcome.mismatched_rows, 1);
        let outcome = comparer.compare_group(&key(1), &[float_row(f64::NAN)], &[float_row(f64::NAN)]);
        assert_eq!(outcome.mismatched_rows, 0);
    }

    #[tokio::test]
    async fn reference_rows_check_against_their_owner_row() {
        let mut o = cursor(Side::Owner, vec![vec![row(1, "a"), row(2, "b")]]);
        let mut r = cursor(
            Side::Replica,
            vec![vec![
                row(1, "a"),
                row(1, "z"),
                row(1, "a"),
                row(3, "c"),
                row(3, "c"),
            ]],
        );
        let mut rec = Recorder::default();
        merge(&mut o, &mut r, &mut comparer(Relation::Reference), &mut rec)
            .await
            .unwrap();
        assert_eq!(
            rec.0,
            vec![
                (Kind::Mismatch, key(1)),
                (Kind::DanglingReference, key(3)),
                (Kind::DanglingReference, key(3))
            ]
        );
    }
}
