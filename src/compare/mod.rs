//! The compare engine: normalization, row digests, the per-key comparison and the
//! merge-join of two key-ordered row streams. It knows rows and rules, not backends,
//! files or the CLI; findings go to whoever consumes them (report writers, recheck).

pub mod digest;
pub mod inconsistency;
pub mod indexed;
pub mod lanes;
pub mod merge;
pub mod normalize;
pub mod packed;
pub mod recheck;

pub use inconsistency::{GroupOutcome, Inconsistency, Kind, Tally};
pub use normalize::FieldRule;

use crate::job::{Relation, Side};
use crate::source::batch::RowCodec;
use crate::source::value::Cell;
use crate::source::{Key, Row, Value};
use normalize::{Normalized, instant_of, instant_of_cell, normalize, within_tolerance};
use packed::PackedGroup;

/// One compared field, resolved against both sources.
#[derive(Clone, Debug, PartialEq)]
pub struct CompareField {
    /// The owner's column name; reports name the field by it.
    pub name: String,
    /// The replica's column name.
    pub replica_name: String,
    /// How values are compared.
    pub rule: FieldRule,
    /// Index of the field in owner rows' values.
    pub owner_col: usize,
    /// Index of the field in replica rows' values.
    pub replica_col: usize,
    /// Whether two identical values are known to normalize alike without fail, so the
    /// row compare may skip normalizing them: always for text, and for typed columns of
    /// sources that enforce their types (a PostgreSQL `uuid` read twice).
    pub same_value_is_equal: bool,
}

/// Whether a field's packed cells can be judged equal by their bytes alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bytewise {
    /// No: the two columns encode values differently.
    No,
    /// Yes: identical cells always hold equal values.
    Yes,
    /// Identical cells hold equal values when the codec vouches for the cell.
    AsCodecSays,
}

/// Everything the per-key comparison needs, resolved once per job.
#[derive(Clone, Debug)]
pub struct ComparePlan {
    /// How replica rows relate to owner rows.
    pub relation: Relation,
    /// The compared fields.
    pub fields: Vec<CompareField>,
    /// Index of the owner's change-time column in owner rows, for staleness.
    pub owner_changed_at: Option<usize>,
    /// Index of the replica's change-time column in replica rows.
    pub replica_changed_at: Option<usize>,
    /// Rows whose change time is at or after this instant (nanoseconds since the Unix
    /// epoch) are skipped as recent.
    pub recent_cutoff: Option<i128>,
    /// Indices of the replica's own row key columns in replica rows (reference jobs).
    pub replica_key_cols: Vec<usize>,
}

/// Compares the rows that share one key. Keeps scratch buffers so that the hot path
/// allocates nothing per field.
#[derive(Clone)]
pub struct Comparer {
    plan: ComparePlan,
    scratch_owner: Vec<u8>,
    scratch_replica: Vec<u8>,
    digest_input: Vec<u8>,
}

impl Comparer {
    /// A comparer for the plan.
    pub fn new(plan: ComparePlan) -> Comparer {
        Comparer {
            plan,
            scratch_owner: Vec::new(),
            scratch_replica: Vec::new(),
            digest_input: Vec::new(),
        }
    }

    /// The digest input of one side's row values (see [`digest::frame_values`]), or
    /// `None` when the row can only be judged by comparing it: a value does not parse,
    /// or the row changed within the staleness window.
    pub fn digest_input(&mut self, side: Side, values: &[Cell<'_>]) -> Option<&[u8]> {
        if self.recent_at(side, |col| instant_of_cell(values[col])) {
            return None;
        }
        digest::frame_values(values, &self.plan.fields, side, &mut self.digest_input)?;
        Some(&self.digest_input)
    }

    /// For each compared field, whether its cells can be judged by their bytes: both
    /// columns must be encoded alike.
    pub fn bytewise_fields(&self, owner: &dyn RowCodec, replica: &dyn RowCodec) -> Vec<Bytewise> {
        self.plan
            .fields
            .iter()
            .map(|f| {
                if owner.encoding(f.owner_col) != replica.encoding(f.replica_col) {
                    Bytewise::No
                } else if f.same_value_is_equal {
                    Bytewise::Yes
                } else {
                    Bytewise::AsCodecSays
                }
            })
            .collect()
    }

    /// True when a key's packed rows are consistent as they stand, judged by their bytes
    /// without decoding them: one owner row; one replica row for a mirror, any number
    /// for a reference; none changed within the staleness window; and every compared
    /// field, `bytewise` by [`Comparer::bytewise_fields`], holding the same bytes on both
    /// sides. False means only that the rows must be decoded and compared.
    pub fn packed_consistent(
        &self,
        bytewise: &[Bytewise],
        owner: &PackedGroup<'_>,
        replica: Option<&PackedGroup<'_>>,
    ) -> bool {
        let (owner_batch, owner_rows) = owner;
        if owner_rows.len() != 1 {
            return false;
        }
        let o = owner_rows.start;
        let Some((replica_batch, replica_rows)) = replica else {
            return self.plan.relation == Relation::Reference;
        };
        if self.plan.relation == Relation::Mirror && replica_rows.len() != 1 {
            return false;
        }
        if self.packed_may_be_recent(Side::Owner, owner_batch, o) {
            return false;
        }
        replica_rows.clone().all(|r| {
            !self.packed_may_be_recent(Side::Replica, replica_batch, r)
                && self.plan.fields.iter().zip(bytewise).all(|(f, bytewise)| {
                    let cell = owner_batch.cell(o, f.owner_col);
                    cell == replica_batch.cell(r, f.replica_col)
                        && match bytewise {
                            Bytewise::Yes => true,
                            Bytewise::No => false,
                            Bytewise::AsCodecSays => cell.is_none_or(|cell| {
                                owner_batch
                                    .codec()
                                    .identical_cells_equal(f.owner_col, cell, f.rule.ty)
                            }),
                        }
                })
        })
    }

    /// Whether a packed row changed within the staleness window, or its change time
    /// cannot be read without decoding the row.
    fn packed_may_be_recent(&self, side: Side, batch: &crate::source::batch::RowBatch, row: usize) -> bool {
        let mut unreadable = false;
        let recent = self.recent_at(side, |col| match batch.value(row, col) {
            Ok(value) => instant_of(&value),
            Err(_) => {
                unreadable = true;
                None
            }
        });
        recent || unreadable
    }

    /// The plan this comparer follows.
    pub fn plan(&self) -> &ComparePlan {
        &self.plan
    }

    /// Compares every owner and replica row that shares `key`.
    pub fn compare_group(&mut self, key: &Key, owner: &[Row], replica: &[Row]) -> GroupOutcome {
        let mut out = GroupOutcome::default();
        self.find_duplicates(key, owner.len(), replica.len(), &mut out);
        match self.plan.relation {
            Relation::Mirror => self.compare_mirror(key, owner, replica, &mut out),
            Relation::Reference => self.compare_reference(key, owner, replica, &mut out),
        }
        out
    }

    /// What [`Comparer::compare_group`] finds for a group of `owner` and `replica` rows,
    /// when their contents cannot change it: in a mirror job without a staleness window,
    /// a key missing on a side or duplicated. `None` when the rows must be compared.
    pub fn outcome_by_count(&self, key: &Key, owner: usize, replica: usize) -> Option<GroupOutcome> {
        if self.plan.relation != Relation::Mirror
            || self.plan.recent_cutoff.is_some()
            || (owner, replica) == (1, 1)
        {
            return None;
        }
        let mut out = GroupOutcome::default();
        self.find_duplicates(key, owner, replica, &mut out);
        let kind = match (owner, replica) {
            (1.., 0) => Kind::MissingInReplica,
            (0, 1..) => Kind::MissingInOwner,
            _ => return Some(out),
        };
        out.findings.push(Inconsistency::new(kind, key.clone()));
        Some(out)
    }

    /// A key on a side more than once, where it must be unique: on the owner, and on the
    /// replica of a mirror job.
    fn find_duplicates(&self, key: &Key, owner: usize, replica: usize, out: &mut GroupOutcome) {
        for (side, rows) in [(Side::Owner, owner), (Side::Replica, replica)] {
            let must_be_unique = side == Side::Owner || self.plan.relation == Relation::Mirror;
            if rows > 1 && must_be_unique {
                let mut dup = Inconsistency::new(Kind::DuplicateKey, key.clone());
                dup.side = Some(side);
                dup.count = Some(rows);
                out.findings.push(dup);
            }
        }
    }

    fn compare_mirror(&mut self, key: &Key, owner: &[Row], replica: &[Row], out: &mut GroupOutcome) {
        let recent = owner.iter().any(|r| self.is_recent(Side::Owner, &r.values))
            || replica.iter().any(|r| self.is_recent(Side::Replica, &r.values));
        let kind = match (owner.first(), replica.first()) {
            (Some(_), None) => Kind::MissingInReplica,
            (None, Some(_)) => Kind::MissingInOwner,
            (Some(o), Some(r)) => {
                if owner.len() == 1 && replica.len() == 1 {
                    if recent {
                        out.skipped_recent += 1;
                    } else {
                        self.diff_rows(key, o, r, None, out);
                    }
                }
                return;
            }
            (None, None) => return,
        };
        if recent {
            out.skipped_recent += 1;
        } else {
            out.findings.push(Inconsistency::new(kind, key.clone()));
        }
    }

    fn compare_reference(&mut self, key: &Key, owner: &[Row], replica: &[Row], out: &mut GroupOutcome) {
        let owner_recent = owner.iter().any(|r| self.is_recent(Side::Owner, &r.values));
        for row in replica {
            let replica_key = self.replica_key(row);
            if owner_recent || self.is_recent(Side::Replica, &row.values) {
                out.skipped_recent += 1;
            } else if owner.is_empty() {
                let mut finding = Inconsistency::new(Kind::DanglingReference, key.clone());
                finding.replica_key = replica_key;
                out.findings.push(finding);
            } else if owner.len() == 1 {
                self.diff_rows(key, &owner[0], row, replica_key, out);
            }
        }
    }

    fn replica_key(&self, row: &Row) -> Option<Vec<Value>> {
        if self.plan.replica_key_cols.is_empty() {
            return None;
        }
        Some(
            self.plan
                .replica_key_cols
                .iter()
                .map(|&i| row.values[i].clone())
                .collect(),
        )
    }

    fn is_recent(&self, side: Side, values: &[Value]) -> bool {
        self.recent_at(side, |col| instant_of(&values[col]))
    }

    /// Whether the change time that `instant` reads from the given column index is within
    /// the staleness window.
    fn recent_at(&self, side: Side, instant: impl FnOnce(usize) -> Option<i128>) -> bool {
        let (Some(cutoff), Some(col)) = (
            self.plan.recent_cutoff,
            match side {
                Side::Owner => self.plan.owner_changed_at,
                Side::Replica => self.plan.replica_changed_at,
            },
        ) else {
            return false;
        };
        instant(col).is_some_and(|t| t >= cutoff)
    }

    /// True when every field of the two rows normalizes to the same bytes (or both to
    /// NULL), with no tolerance to apply and no value that fails to parse: as their
    /// [`digest::values_digest`]s would say, found without hashing and stopping at the
    /// first difference.
    fn rows_equal(&mut self, owner: &Row, replica: &Row) -> bool {
        for field in &self.plan.fields {
            if field.rule.tolerance.is_some() {
                return false;
            }
            let (owner_value, replica_value) =
                (&owner.values[field.owner_col], &replica.values[field.replica_col]);
            if field.same_value_is_equal && owner_value.is_identical(replica_value) {
                continue;
            }
            let o = normalize(owner_value, &field.rule, &mut self.scratch_owner);
            let r = normalize(replica_value, &field.rule, &mut self.scratch_replica);
            match (o, r) {
                (Ok(Normalized::Null), Ok(Normalized::Null)) => {}
                (Ok(Normalized::Value), Ok(Normalized::Value))
                    if self.scratch_owner == self.scratch_replica => {}
                _ => return false,
            }
        }
        true
    }

    /// Compares one owner row with one replica row: all fields at once first, then field
    /// by field only when they differ (or a value did not parse).
    fn diff_rows(
        &mut self,
        key: &Key,
        owner: &Row,
        replica: &Row,
        replica_key: Option<Vec<Value>>,
        out: &mut GroupOutcome,
    ) {
        if self.rows_equal(owner, replica) {
            return;
        }
        let mut differs = false;
        for (index, field) in self.plan.fields.iter().enumerate() {
            let o = &owner.values[field.owner_col];
            let r = &replica.values[field.replica_col];
            let on = normalize(o, &field.rule, &mut self.scratch_owner);
            let rn = normalize(r, &field.rule, &mut self.scratch_replica);
            let reason = match (&on, &rn) {
                (Err(a), Err(b)) => Some(format!("owner value {a}; replica value {b}")),
                (Err(a), _) => Some(format!("owner value {a}")),
                (_, Err(b)) => Some(format!("replica value {b}")),
                _ => None,
            };
            let equal = match (on, rn) {
                (Ok(Normalized::Null), Ok(Normalized::Null)) => true,
                (Ok(Normalized::Value), Ok(Normalized::Value)) => {
                    self.scratch_owner == self.scratch_replica
                        || within_tolerance(&field.rule, &self.scratch_owner, &self.scratch_replica)
                }
                _ => false,
            };
            if equal {
                continue;
            }
            differs = true;
            let mut finding = Inconsistency::new(Kind::Mismatch, key.clone());
            finding.field = Some(index);
            finding.owner = Some(o.clone());
            finding.replica = Some(r.clone());
            finding.reason = reason;
            finding.replica_key = replica_key.clone();
            out.findings.push(finding);
        }
        if differs {
            out.mismatched_rows += 1;
        }
    }
}

/// The plan of tests that compare one text field `v`, column 0 on both sides.
#[cfg(test)]
pub(crate) fn text_field_plan(relation: Relation) -> ComparePlan {
    ComparePlan {
        relation,
        fields: vec![CompareField {
            name: "v".into(),
            replica_name: "v".into(),
            rule: FieldRule::exact(crate::source::FieldType::Text),
            owner_col: 0,
            replica_col: 0,
            same_value_is_equal: true,
        }],
        owner_changed_at: None,
        replica_changed_at: None,
        recent_cutoff: None,
        replica_key_cols: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{KeyPart, Value};

    /// A group judged by its row counts gets exactly what comparing its rows finds, and
    /// its rows are compared whenever their contents could matter.
    #[test]
    fn outcomes_by_count_are_what_comparing_the_rows_finds() {
        let key = Key(vec![KeyPart::Int(7)]);
        let rows = |n: usize, v: &str| {
            vec![
                Row {
                    key: key.clone(),
                    values: vec![Value::Text(v.into())],
                };
                n
            ]
        };
        let mut comparer = Comparer::new(text_field_plan(Relation::Mirror));
        for (owner, replica) in (0..4).flat_map(|o| (0..4).map(move |r| (o, r))) {
            let by_count = comparer.outcome_by_count(&key, owner, replica);
            match (owner, replica) {
                (0, 0) => {}
                (1, 1) => assert_eq!(by_count, None),
                _ => {
                    let compared = comparer.compare_group(&key, &rows(owner, "a"), &rows(replica, "b"));
                    assert!(!compared.findings.is_empty());
                    assert_eq!(by_count, Some(compared), "{owner} and {replica} rows");
                }
            }
        }
        let mut windowed = text_field_plan(Relation::Mirror);
        windowed.recent_cutoff = Some(0);
        assert_eq!(Comparer::new(windowed).outcome_by_count(&key, 1, 0), None);
        let reference = Comparer::new(text_field_plan(Relation::Reference));
        assert_eq!(reference.outcome_by_count(&key, 0, 1), None);
    }
}
