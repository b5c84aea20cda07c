//! Recheck before reporting: the keys found inconsistent are read again from each side
//! that can change underneath (and can be read by key), and compared afresh. What has
//! converged meanwhile was replication in flight, not drift.

use std::collections::BTreeMap;

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

/// Keys read again at a time (a source may split them into several statements).
const BATCH: usize = 8000;

/// Reads the pending keys again from the given sides and compares them afresh, handing
/// `each` the fresh outcome of every pending group in order (an outcome without findings
/// means the inconsistency converged). A side that is not read again is compared as the
/// scan read it. Keys are read a batch at a time, from both sides at once, and each batch
/// is let go once compared, so memory shrinks as the recheck goes.
pub async fn recheck<E>(
    pending: Vec<Pending>,
    mut owner: Option<Reread<'_>>,
    mut replica: Option<Reread<'_>>,
    comparer: &mut Comparer,
    mut each: impl FnMut(GroupOutcome) -> Result<(), E>,
) -> Result<(), MergeError<E>> {
    let empty = Vec::new();
    let mut pending = pending.into_iter();
    loop {
        let batch: Vec<Pending> = pending.by_ref().take(BATCH).collect();
        if batch.is_empty() {
            return Ok(());
        }
        let keys: Vec<Key> = batch.iter().map(|p| p.key.clone()).collect();
        let (fresh_owner, fresh_replica) = tokio::join!(
            fetch_grouped(owner.as_mut(), &keys),
            fetch_grouped(replica.as_mut(), &keys)
        );
        let fresh_owner = fresh_owner.map_err(|e| MergeError::Source(Side::Owner, e))?;
        let fresh_replica = fresh_replica.map_err(|e| MergeError::Source(Side::Replica, e))?;
        for p in &batch {
            let o = fresh_owner
                .as_ref()
                .map_or(&p.owner, |m| m.get(&p.key).unwrap_or(&empty));
            let r = fresh_replica
                .as_ref()
                .map_or(&p.replica, |m| m.get(&p.key).unwrap_or(&empty));
            each(comparer.compare_group(&p.key, o, r)).map_err(MergeError::Sink)?;
        }
    }
}

/// The rows of `keys` read again from `side`, by key; `None` when the side is not read again.
async fn fetch_grouped(
    side: Option<&mut Reread<'_>>,
    keys: &[Key],
) -> Result<Option<BTreeMap<Key, Vec<Row>>>, SourceError> {
    let Some(side) = side else {
        return Ok(None);
    };
    let mut grouped: BTreeMap<Key, Vec<Row>> = BTreeMap::new();
    for row in side.source.fetch(side.spec, keys).await? {
        grouped.entry(row.key.clone()).or_default().push(row);
    }
    Ok(Some(grouped))
}
