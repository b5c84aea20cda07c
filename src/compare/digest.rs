//! Row digests: a 128-bit blake3 hash of a row's normalized compared fields, so that a
//! row can be judged equal to another without either being at hand: the digest-first
//! compare of files keeps only keys and digests, and reads again only rows that differ.

use crate::compare::CompareField;
use crate::compare::normalize::{Normalized, normalize_append};
use crate::job::Side;
use crate::source::FieldType;
use crate::source::value::Cell;

/// Bytes in a row digest.
pub const DIGEST_LEN: usize = 16;

/// The digest of the values (in a scan's column order) of one side's row; `None` when a
/// value does not parse as its field's type (the row then always gets a field-by-field
/// diff, which says why). Equal digests mean every field normalizes to the same bytes,
/// so the rows compare equal, with or without a tolerance; unequal digests mean nothing
/// until the rows are compared. `input` is a reused buffer.
pub fn values_digest(
    values: &[Cell<'_>],
    fields: &[CompareField],
    side: Side,
    input: &mut Vec<u8>,
) -> Option<[u8; DIGEST_LEN]> {
    input.clear();
    // Each field is a lone 0 for NULL, or its length plus one in a byte (255 and eight
    // more bytes from 254 bytes on) and its canonical bytes: that frames every field, so different
    // rows never hash the same input. Few bytes to hash matter: a row of up to 64 takes
    // one compression, and most rows are near that.
    for field in fields {
        let col = match side {
            Side::Owner => field.owner_col,
            Side::Replica => field.replica_col,
        };
        let head = input.len();
        input.push(0);
        let start = input.len();
        match normalize_append(values[col], &field.rule, input).ok()? {
            Normalized::Null => input.truncate(head + 1),
            Normalized::Value => {
                if field.rule.ty == FieldType::Timestamp {
                    shorten_instant(input, start);
                }
                let len = input.len() - start;
                // 1 to 254 are short lengths; 255 always says eight length bytes follow.
                if len < 254 {
                    input[head] = len as u8 + 1;
                } else {
                    input[head] = 255;
                    input.splice(start..start, (len as u64).to_le_bytes());
                }
            }
        }
    }
    let hash = blake3::hash(input);
    let mut digest = [0; DIGEST_LEN];
    digest.copy_from_slice(&hash.as_bytes()[..DIGEST_LEN]);
    Some(digest)
}

/// Drops the leading bytes of the 16-byte instant at `start` that only repeat its sign:
/// the shortest two's-complement form, 8 bytes for any date of the next centuries.
fn shorten_instant(input: &mut Vec<u8>, start: usize) {
    let bytes = &input[start..];
    let sign = if bytes.first().is_some_and(|b| b & 0x80 != 0) {
        0xff
    } else {
        0
    };
    let mut drop = 0;
    while drop + 1 < bytes.len() && bytes[drop] == sign && (bytes[drop + 1] & 0x80) == (sign & 0x80) {
        drop += 1;
    }
    input.drain(start..start + drop);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::FieldRule;
    use crate::source::{FieldType, Value};

    fn field(ty: FieldType) -> CompareField {
        CompareField {
            name: "f".into(),
            replica_name: "f".into(),
            rule: FieldRule::exact(ty),
            owner_col: 0,
            replica_col: 0,
            same_value_is_equal: false,
        }
    }

    fn row_digest(
        values: &[Value],
        fields: &[CompareField],
        side: Side,
        scratch: &mut Vec<u8>,
    ) -> Option<[u8; 16]> {
        let cells: Vec<Cell<'_>> = values.iter().map(Value::cell).collect();
        values_digest(&cells, fields, side, scratch)
    }

    /// Text fields at columns 0 and 1.
    fn two_text_fields() -> [CompareField; 2] {
        let mut second = field(FieldType::Text);
        second.owner_col = 1;
        second.replica_col = 1;
        [field(FieldType::Text), second]
    }

    fn row(v: Value) -> Vec<Value> {
        vec![v]
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
    fn fields_are_framed_so_moving_bytes_between_them_changes_the_digest() {
        let f = two_text_fields();
        let mut s = Vec::new();
        let t = |v: &str| Value::Text(v.into());
        let ab_c = row_digest(&[t("ab"), t("c")], &f, Side::Owner, &mut s);
        let a_bc = row_digest(&[t("a"), t("bc")], &f, Side::Owner, &mut s);
        let null_x = row_digest(&[Value::Null, t("x")], &f, Side::Owner, &mut s);
        let empty_x = row_digest(&[t(""), t("x")], &f, Side::Owner, &mut s);
        assert_ne!(ab_c, a_bc);
        assert_ne!(null_x, empty_x);
        assert_eq!(ab_c, row_digest(&[t("ab"), t("c")], &f, Side::Replica, &mut s));
    }

    #[test]
    fn unparsable_values_have_no_digest() {
        let f = [field(FieldType::Integer)];
        assert_eq!(
            row_digest(&row(Value::Text("x".into())), &f, Side::Owner, &mut Vec::new()),
            None
        );
    }

    #[test]
    fn instants_are_hashed_in_their_shortest_form() {
        let values: [i128; 9] = [
            0,
            1,
            -1,
            127,
            128,
            -128,
            -129,
            1_700_000_000_000_000_000,
            i128::MIN,
        ];
        for v in values {
            let mut input = vec![9];
            input.extend_from_slice(&v.to_be_bytes());
            shorten_instant(&mut input, 1);
            let short = &input[1..];
            // Sign-extended back, the bytes are the value; one byte fewer would not be.
            let fill = if short[0] & 0x80 != 0 { 0xff } else { 0 };
            let mut full = [fill; 16];
            full[16 - short.len()..].copy_from_slice(short);
            assert_eq!(i128::from_be_bytes(full), v);
            if short.len() > 1 {
                assert!(
                    short[0] != fill || (short[1] & 0x80) != (fill & 0x80),
                    "{v} is not minimal"
                );
            }
        }
        let f = [field(FieldType::Timestamp)];
        let mut s = Vec::new();
        let digests: std::collections::HashSet<_> = [-129i64, -128, -1, 0, 1, 127, 128, 1_700_000_000]
            .iter()
            .map(|secs| row_digest(&row(Value::Int(*secs)), &f, Side::Owner, &mut s))
            .collect();
        assert_eq!(digests.len(), 8);
    }

    #[test]
    fn long_values_are_framed_too() {
        let f = two_text_fields();
        let mut s = Vec::new();
        let t = |v: String| Value::Text(v);
        let long = "x".repeat(300);
        let a = row_digest(&[t(long.clone()), t("y".into())], &f, Side::Owner, &mut s);
        let b = row_digest(&[t(long[1..].into()), t("xy".into())], &f, Side::Owner, &mut s);
        assert!(a.is_some());
        assert_ne!(a, b);
        assert_eq!(
            a,
            row_digest(&[t(long), t("y".into())], &f, Side::Replica, &mut s)
        );
    }

    /// A 254-byte value is framed as long: were its length byte 255 (the long marker),
    /// these two rows would hash the same bytes.
    #[test]
    fn a_value_of_254_bytes_cannot_pass_for_a_long_one() {
        let f = two_text_fields();
        let mut s = Vec::new();
        let t = |v: String| Value::Text(v);
        let a = [
            t(format!("\0\u{1}\0\0\0\0\0\0{}", "x".repeat(246))),
            t("abcdefghi\u{b}0123456789".into()),
        ];
        let b = [
            t(format!("{}\u{15}abcdefghi", "x".repeat(246))),
            t("0123456789".into()),
        ];
        assert_eq!(a[0].to_plain_text().map(|v| v.len()), Some(254));
        assert_ne!(
            row_digest(&a, &f, Side::Owner, &mut s),
            row_digest(&b, &f, Side::Owner, &mut s)
        );
    }
}
