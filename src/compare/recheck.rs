//! Recheck before reporting: the keys found inconsistent are read again from each side
//! that can change underneath (and can be read by key), and compared afresh. What has
//! converged meanwhile was replication in flight, not drift.

use std::collections::BTreeMap;

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

/// Keys fetched per statement.
const BATCH: usize = 500;

/// Reads the pending keys again from the given sides and compares them afresh. Returns,
/// per pending group in order, the fresh outcome (an outcome without findings means the
/// inconsistency converged). A side that is not read again is compared as the scan read
/// it. Keys are read a batch at a time, so only one batch of fresh rows is held.
pub async fn recheck(
    pending: &[Pending],
    mut owner: Option<Reread<'_>>,
    mut replica: Option<Reread<'_>>,
    comparer: &mut Comparer,
) -> Result<Vec<GroupOutcome>, (Side, SourceError)> {
    let mut outcomes = Vec::with_capacity(pending.len());
    let empty = Vec::new();
    for batch in pending.chunks(BATCH) {
        let keys: Vec<Key> = batch.iter().map(|p| p.key.clone()).collect();
        let fresh_owner = match owner.as_mut() {
            Some(side) => Some(fetch_grouped(side, &keys).await.map_err(|e| (Side::Owner, e))?),
            None => None,
        };
        let fresh_replica = match replica.as_mut() {
            Some(side) => Some(fetch_grouped(side, &keys).await.map_err(|e| (Side::Replica, e))?),
            None => None,
        };
        for p in batch {
            let o = fresh_owner
                .as_ref()
                .map_or(&p.owner, |m| m.get(&p.key).unwrap_or(&empty));
            let r = fresh_replica
                .as_ref()
                .map_or(&p.replica, |m| m.get(&p.key).unwrap_or(&empty));
            outcomes.push(comparer.compare_group(&p.key, o, r));
        }
    }
    Ok(outcomes)
}

async fn fetch_grouped(side: &mut Reread<'_>, keys: &[Key]) -> Result<BTreeMap<Key, Vec<Row>>, SourceError> {
    let mut grouped: BTreeMap<Key, Vec<Row>> = BTreeMap::new();
    for row in side.source.fetch(side.spec, keys).await? {
        grouped.entry(row.key.clone()).or_default().push(row);
    }
    Ok(grouped)
}
