//! Row digests: a 128-bit blake3 hash of a row's normalized compared fields, so that a
//! row can be judged equal to another without either being at hand: the digest-first
//! compare of files keeps only keys and digests, and reads again only rows that differ.

use crate::compare::normalize::{
    Normalized, normalize_append, parse_plain_instant, plain_decimal, uuid_bytes, write_int_canonical,
};
use crate::compare::{CompareField, FieldRule, lanes};
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
    frame_values(values, fields, side, input)?;
    Some(lanes::hash_prefix(input))
}

/// Writes into `input` what [`values_digest`] hashes: the row's compared fields, each
/// normalized and framed. `None` when a value does not parse as its field's type. Hashed
/// apart from the framing, many rows' inputs can be hashed at once ([`lanes::Batch`]).
pub fn frame_values(
    values: &[Cell<'_>],
    fields: &[CompareField],
    side: Side,
    input: &mut Vec<u8>,
) -> Option<()> {
    input.clear();
    // Each field is a lone 0 for NULL, or its length plus one in a byte (255 and eight
    // more bytes from 254 bytes on) and its canonical bytes: that frames every field, so
    // different rows never hash the same input. Few bytes to hash matter: a row of up to
    // 64 takes one compression, and most rows are near that.
    for field in fields {
        let col = match side {
            Side::Owner => field.owner_col,
            Side::Replica => field.replica_col,
        };
        // By reference: a copy would load the cell whole, just after the source wrote
        // it in parts, which stalls.
        let value = &values[col];
        if !push_plain(value, &field.rule, input) {
            push_normalized(*value, &field.rule, input)?;
        }
    }
    Some(())
}

/// Appends the framed field in its common forms (NULL; a plain text; an integer, a plain
/// decimal, a plain instant or a UUID in text) straight from the cell, exactly as
/// [`push_normalized`] would, without the general normalization's dispatch and error
/// text: this runs for every field of every row of a file. False (nothing written) for
/// any other form.
#[inline(always)]
fn push_plain(value: &Cell<'_>, rule: &FieldRule, input: &mut Vec<u8>) -> bool {
    let text = match *value {
        Cell::Null => {
            input.push(0);
            return true;
        }
        Cell::Text(text) | Cell::Decimal(text) => text.as_bytes(),
        Cell::Int(i) if matches!(rule.ty, FieldType::Integer | FieldType::Decimal) => {
            let head = input.len();
            input.push(0);
            write_int_canonical(i, input);
            pack_decimal(input, head + 1);
            input[head] = (input.len() - head) as u8;
            return true;
        }
        _ => return false,
    };
    let head = input.len();
    match rule.ty {
        FieldType::Text if !rule.trim && !rule.ignore_case && text.len() < 254 => {
            input.push(text.len() as u8 + 1);
            input.extend_from_slice(text);
        }
        FieldType::Integer | FieldType::Decimal if text.len() < 254 => {
            input.push(0);
            if !push_packed_plain_decimal(text, input) {
                input.truncate(head);
                return false;
            }
            // Packed, the canonical form of a text below 254 bytes is below 130.
            input[head] = (input.len() - head) as u8;
        }
        FieldType::Timestamp if matches!(value, Cell::Text(_)) => {
            let Some(instant) = parse_plain_instant(text) else {
                return false;
            };
            push_shortest_instant(instant, input);
        }
        FieldType::Uuid if matches!(value, Cell::Text(_)) => {
            let Some(bytes) = uuid_bytes(text) else {
                return false;
            };
            input.push(17);
            input.extend_from_slice(&bytes);
        }
        _ => return false,
    }
    true
}

/// Appends the framed field through the general normalization; `None` when the value
/// does not parse as the field's type.
fn push_normalized(value: Cell<'_>, rule: &FieldRule, input: &mut Vec<u8>) -> Option<()> {
    let head = input.len();
    input.push(0);
    let start = input.len();
    match normalize_append(value, rule, input) {
        Err(_) => {
            input.truncate(head);
            return None;
        }
        Ok(Normalized::Null) => input.truncate(head + 1),
        Ok(Normalized::Value) => {
            if rule.ty == FieldType::Timestamp {
                let instant = i128::from_be_bytes(input[start..].try_into().ok()?);
                input.truncate(head);
                push_shortest_instant(instant, input);
                return Some(());
            }
            if matches!(rule.ty, FieldType::Integer | FieldType::Decimal) {
                pack_decimal(input, start);
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
    Some(())
}

/// Packs the canonical decimal text at `start..` two characters a byte, in place: a digit
/// as its value, `-` as 0xA, `e` as 0xB, and 0xF after an odd last one. A row of a table
/// near 64 bytes then more often takes one blake3 compression instead of two. Other text
/// (`NaN`, `inf`, `-inf`) stays as it is: each holds an `n` or `N`, whose low half is 0xE,
/// which no packed byte has, so no two values hash alike.
fn pack_decimal(input: &mut Vec<u8>, start: usize) {
    /// A character's half byte, or 0xFF.
    const NIBBLE: [u8; 256] = {
        let mut table = [0xFF; 256];
        let mut i = 0;
        while i < 10 {
            table[b'0' as usize + i] = i as u8;
            i += 1;
        }
        table[b'-' as usize] = 0xA;
        table[b'e' as usize] = 0xB;
        table
    };
    let text = &input[start..];
    if text.iter().any(|&b| NIBBLE[usize::from(b)] == 0xFF) {
        return;
    }
    let len = text.len();
    for i in 0..len / 2 {
        let (high, low) = (input[start + 2 * i], input[start + 2 * i + 1]);
        input[start + i] = NIBBLE[usize::from(high)] << 4 | NIBBLE[usize::from(low)];
    }
    if len % 2 == 1 {
        input[start + len / 2] = NIBBLE[usize::from(input[start + len - 1])] << 4 | 0xF;
    }
    input.truncate(start + len.div_ceil(2));
}

/// Appends the canonical form of plain decimal text packed as [`pack_decimal`] packs it,
/// straight from the text's digits; false (writing nothing) for any other text.
fn push_packed_plain_decimal(text: &[u8], input: &mut Vec<u8>) -> bool {
    let Some(plain) = plain_decimal(text) else {
        return false;
    };
    let mut packed = Nibbles { input, high: None };
    match plain {
        None => packed.push(0),
        Some(plain) => {
            if plain.negative {
                packed.push(0xA);
            }
            let (before, after) = plain.digits;
            for &digit in before.iter().chain(after) {
                packed.push(digit - b'0');
            }
            if plain.exp != 0 {
                packed.push(0xB);
                if plain.exp < 0 {
                    packed.push(0xA);
                }
                packed.push_number(plain.exp.unsigned_abs());
            }
        }
    }
    packed.finish();
    true
}

/// Half bytes packed two a byte into the digest input, the first high.
struct Nibbles<'a> {
    input: &'a mut Vec<u8>,
    high: Option<u8>,
}

impl Nibbles<'_> {
    #[inline]
    fn push(&mut self, nibble: u8) {
        match self.high.take() {
            None => self.high = Some(nibble),
            Some(high) => self.input.push(high << 4 | nibble),
        }
    }

    /// A number's decimal digits, the first first.
    fn push_number(&mut self, n: u64) {
        let mut digits = [0u8; 20];
        let (mut n, mut at) = (n, digits.len());
        loop {
            at -= 1;
            digits[at] = (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for &digit in &digits[at..] {
            self.push(digit);
        }
    }

    /// Pads an odd last half byte with 0xF.
    fn finish(self) {
        if let Some(high) = self.high {
            self.input.push(high << 4 | 0xF);
        }
    }
}

/// Appends an instant framed in its shortest two's-complement form: its big-endian bytes
/// without the leading ones that only repeat its sign (8 bytes for any date of the next
/// centuries).
#[inline]
fn push_shortest_instant(instant: i128, input: &mut Vec<u8>) {
    let sign_bits = if instant < 0 {
        instant.leading_ones()
    } else {
        instant.leading_zeros()
    };
    // One sign bit must stay; whole bytes of the others go.
    let keep = 16 - ((sign_bits - 1) / 8) as usize;
    input.push(keep as u8 + 1);
    input.extend_from_slice(&instant.to_be_bytes()[16 - keep..]);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
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
            push_shortest_instant(v, &mut input);
            assert_eq!(usize::from(input[1]), input.len() - 1, "{v} is framed");
            let short = &input[2..];
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

    /// Packed decimals keep every value apart: different canonical texts (and the
    /// specials left unpacked) never pack to the same bytes, and equal ones always do.
    #[test]
    fn packed_decimals_stay_distinct() {
        let texts = [
            "0",
            "1",
            "10",
            "1e1",
            "-1",
            "-10",
            "238033e-2",
            "238033e-20",
            "2380330e-3",
            "5",
            "50",
            "e",
            "-",
            "NaN",
            "inf",
            "-inf",
            "1e-1",
            "11",
            "1e",
        ];
        let mut seen = std::collections::HashMap::new();
        for text in texts {
            let mut input = vec![9];
            input.extend_from_slice(text.as_bytes());
            pack_decimal(&mut input, 1);
            assert!(input.len() - 1 <= text.len(), "{text} grew");
            if let Some(other) = seen.insert(input.clone(), text) {
                panic!("{text} and {other} pack alike: {input:?}");
            }
        }
        let mut input = b"x238033e-2".to_vec();
        pack_decimal(&mut input, 1);
        assert_eq!(input, [b'x', 0x23, 0x80, 0x33, 0xBA, 0x2F]);
    }

    /// The forms of nearly every file's fields take the plain path.
    #[test]
    fn common_forms_take_the_plain_path() {
        let cases = [
            (Cell::Null, FieldType::Uuid),
            (Cell::Text("shipped"), FieldType::Text),
            (Cell::Decimal("12.5"), FieldType::Text),
            (Cell::Text("2380.30"), FieldType::Decimal),
            (Cell::Decimal("-0.01"), FieldType::Decimal),
            (Cell::Text("18"), FieldType::Integer),
            (Cell::Int(-120), FieldType::Integer),
            (Cell::Text("2024-03-05 09:03:30.238033+00"), FieldType::Timestamp),
            (
                Cell::Text("2024-09-11T02:46:30.543907+00:00"),
                FieldType::Timestamp,
            ),
            (
                Cell::Text("ba24d28c-5515-90b6-1d8e-c4f602e84d43"),
                FieldType::Uuid,
            ),
        ];
        for (cell, ty) in cases {
            let rule = FieldRule::exact(ty);
            let (mut plain, mut general) = (Vec::new(), Vec::new());
            assert!(push_plain(&cell, &rule, &mut plain), "{cell:?} as {ty:?}");
            assert!(push_normalized(cell, &rule, &mut general).is_some());
            assert_eq!(plain, general, "{cell:?} as {ty:?}");
        }
    }

    /// Cells in the forms the plain path takes and in forms it must leave alone.
    fn cell_text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[-+]?[0-9]{0,6}(\\.[0-9]{0,6})?",
            "-?0*[0-9]{0,3}0*(\\.0*[0-9]{0,3}0*)?(e-?[0-9])?",
            "[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,10})?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?",
            "2024-0[1-9]-[0-2][1-9] [01][0-9]:[0-5][0-9]:[0-5][0-9]\\.[0-9]{1,9}\\+0[0-9]",
            "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
            "\\{?[0-9a-f]{32}\\}?",
            " ?[a-zA-Z0-9 .:-]{0,12} ?",
            "x{250,260}",
            "[0-9]{250,260}",
        ]
    }

    fn cell_of(kind: u8, text: &str, int: i64) -> Cell<'_> {
        match kind % 5 {
            0 => Cell::Null,
            1 => Cell::Text(text),
            2 => Cell::Decimal(text),
            3 => Cell::Int(int),
            _ => Cell::Json(text),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Whatever the cell and the rule, the plain path frames exactly what the
        /// general normalization does, or leaves the cell to it.
        #[test]
        fn the_plain_path_writes_what_normalization_writes(
            kind in 0u8..5,
            text in cell_text(),
            int in any::<i64>(),
            ty in proptest::sample::select(vec![
                FieldType::Text, FieldType::Integer, FieldType::Decimal, FieldType::Timestamp,
                FieldType::Uuid, FieldType::Bool, FieldType::Date,
            ]),
            trim in any::<bool>(),
            ignore_case in any::<bool>(),
        ) {
            let rule = FieldRule { ty, trim, ignore_case, tolerance: None };
            let cell = cell_of(kind, &text, int);
            let mut plain = vec![7];
            if push_plain(&cell, &rule, &mut plain) {
                let mut general = vec![7];
                prop_assert!(push_normalized(cell, &rule, &mut general).is_some(), "{cell:?} as {ty:?}");
                prop_assert_eq!(plain, general, "{:?} as {:?}", cell, ty);
            } else {
                prop_assert_eq!(plain, vec![7], "nothing written for {:?}", cell);
            }
        }
    }
}
