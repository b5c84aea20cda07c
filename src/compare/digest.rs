//! Row digests: a blake3 hash of a row's normalized compared fields, so that equal rows
//! are recognized with one comparison and only differing rows get a field-by-field diff.

use crate::compare::CompareField;
use crate::compare::normalize::{Normalized, normalize};
use crate::job::Side;
use crate::source::Row;

/// A row's digest; `None` when a value does not parse as its field's type (the row then
/// always gets a field-by-field diff, which says why). Fields with a tolerance are left
/// out: equal digests must mean equal rows, and tolerance is not equality.
pub fn row_digest(row: &Row, fields: &[CompareField], side: Side, scratch: &mut Vec<u8>) -> Option<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    for field in fields {
        if field.rule.tolerance.is_some() {
            continue;
        }
        let col = match side {
            Side::Owner => field.owner_col,
            Side::Replica => field.replica_col,
        };
        match normalize(&row.values[col], &field.rule, scratch).ok()? {
            Normalized::Null => {
                hasher.update(&[0]);
            }
            Normalized::Value => {
                hasher.update(&[1]);
                hasher.update(&(scratch.len() as u64).to_le_bytes());
                hasher.update(scratch);
            }
        }
    }
    if fields.iter().any(|f| f.rule.tolerance.is_some()) {
        // Tolerant fields must still be compared one by one: poison the digest so it
        // never matches the other side's.
        hasher.update(match side {
            Side::Owner => b"owner",
            Side::Replica => b"replica",
        });
    }
    Some(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::FieldRule;
    use crate::source::{FieldType, Key, Value};

    fn field(ty: FieldType) -> CompareField {
        CompareField {
            name: "f".into(),
            replica_name: "f".into(),
            rule: FieldRule::exact(ty),
            owner_col: 0,
            replica_col: 0,
        }
    }

    fn row(v: Value) -> Row {
        Row {
            key: Key::default(),
            values: vec![v],
        }
    }

    #[test]
    fn equal_normalized_rows_have_equal_digests() {
        let f = [field(FieldType::Decimal)];
        let mut s = Vec::new();
        let a = row_digest(&row(Value::Text("10.50".into())), &f, Side::Owner, &mut s);
        let b = row_digest(&row(Value::Float(10.5)), &f, Side::Replica, &mut s);
        assert!(a.is_some());
        assert_eq!(a, b);
    }

    #[test]
    fn null_and_empty_text_differ() {
        let f = [field(FieldType::Text)];
        let mut s = Vec::new();
        let a = row_digest(&row(Value::Null), &f, Side::Owner, &mut s);
        let b = row_digest(&row(Value::Text(String::new())), &f, Side::Replica, &mut s);
        assert_ne!(a, b);
    }

    #[test]
    fn unparsable_values_have_no_digest() {
        let f = [field(FieldType::Integer)];
        assert_eq!(
            row_digest(&row(Value::Text("x".into())), &f, Side::Owner, &mut Vec::new()),
            None
        );
    }
}
