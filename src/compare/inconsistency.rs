//! What the compare engine finds, and the counts it keeps. Report wire types live in
//! `report::record`; these are the engine's own.

use crate::job::Side;
use crate::source::{Key, Value};

/// The kinds of inconsistency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The owner has the key; the replica does not.
    MissingInReplica,
    /// The replica has the key; the owner does not.
    MissingInOwner,
    /// Both have the key, and a field differs.
    Mismatch,
    /// A key appears more than once on a side where it must be unique.
    DuplicateKey,
    /// A reference replica row points at an owner row that does not exist.
    DanglingReference,
}

impl Kind {
    /// The kind's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::MissingInReplica => "missing_in_replica",
            Kind::MissingInOwner => "missing_in_owner",
            Kind::Mismatch => "mismatch",
            Kind::DuplicateKey => "duplicate_key",
            Kind::DanglingReference => "dangling_reference",
        }
    }
}

/// One inconsistency. Mismatches carry the field (an index into the job's compared
/// fields) and both values; duplicates carry the side and how often the key appeared.
#[derive(Clone, Debug, PartialEq)]
pub struct Inconsistency {
    /// What is wrong.
    pub kind: Kind,
    /// The owner-side key (for reference jobs: the foreign key's value).
    pub key: Key,
    /// The compared field, for mismatches.
    pub field: Option<usize>,
    /// The owner's value, for mismatches.
    pub owner: Option<Value>,
    /// The replica's value, for mismatches.
    pub replica: Option<Value>,
    /// Why a value could not be compared (it did not parse as the field's type).
    pub reason: Option<String>,
    /// The side a duplicate key was found on.
    pub side: Option<Side>,
    /// How many rows share the duplicate key.
    pub count: Option<usize>,
    /// A reference replica row's own key values (`replica.row_key`).
    pub replica_key: Option<Vec<Value>>,
}

impl Inconsistency {
    /// An inconsistency of `kind` at `key` with no further detail.
    pub fn new(kind: Kind, key: Key) -> Inconsistency {
        Inconsistency {
            kind,
            key,
            field: None,
            owner: None,
            replica: None,
            reason: None,
            side: None,
            count: None,
            replica_key: None,
        }
    }
}

/// Exact counts for a job's summary; kept for every finding, written or not.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    /// Rows read from the owner (a duplicate counted each time it is read).
    pub owner_rows: u64,
    /// Rows read from the replica.
    pub replica_rows: u64,
    /// Owner keys the replica lacks.
    pub missing_in_replica: u64,
    /// Replica keys the owner lacks.
    pub missing_in_owner: u64,
    /// Key pairs (reference jobs: replica rows) with at least one differing field.
    pub mismatched_rows: u64,
    /// Mismatches per compared field, by field index.
    pub field_mismatches: Vec<u64>,
    /// Each side and key that appears more than once.
    pub duplicate_keys: u64,
    /// Reference replica rows whose owner row does not exist.
    pub dangling_references: u64,
    /// Rows skipped because they changed within the staleness window.
    pub skipped_recent: u64,
    /// Inconsistencies that had converged when their keys were read again.
    pub resolved_in_flight: u64,
}

impl Tally {
    /// A tally for `fields` compared fields.
    pub fn new(fields: usize) -> Tally {
        Tally {
            field_mismatches: vec![0; fields],
            ..Tally::default()
        }
    }

    /// Counts the findings (and skips) of one key group.
    pub fn add(&mut self, group: &GroupOutcome) {
        self.skipped_recent += group.skipped_recent;
        self.mismatched_rows += group.mismatched_rows;
        for finding in &group.findings {
            match finding.kind {
                Kind::MissingInReplica => self.missing_in_replica += 1,
                Kind::MissingInOwner => self.missing_in_owner += 1,
                Kind::DuplicateKey => self.duplicate_keys += 1,
                Kind::DanglingReference => self.dangling_references += 1,
                Kind::Mismatch => {
                    if let Some(slot) = finding.field.and_then(|f| self.field_mismatches.get_mut(f)) {
                        *slot += 1;
                    }
                }
            }
        }
    }

    /// True when nothing inconsistent was counted.
    pub fn is_consistent(&self) -> bool {
        self.missing_in_replica == 0
            && self.missing_in_owner == 0
            && self.mismatched_rows == 0
            && self.duplicate_keys == 0
            && self.dangling_references == 0
    }
}

/// The result of comparing every row that shares one key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupOutcome {
    /// Findings, in report order.
    pub findings: Vec<Inconsistency>,
    /// Key pairs or replica rows with at least one differing field.
    pub mismatched_rows: u64,
    /// Rows skipped as recently changed.
    pub skipped_recent: u64,
}
