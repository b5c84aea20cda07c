//! A fast reader of the common JSON Lines object: flat (no nested object or array), no
//! escapes in names or strings. It reads the wanted members' values straight from the
//! line, and validates the line as strictly as serde_json does. Anything else (a nested
//! value, an escape, invalid JSON) is left to serde_json, which is the authority on what
//! a line means and how it is wrong: this reader only answers when it is sure.

use crate::source::value::Cell;

/// The names of the wanted members, each also as a word to match a line's bytes against.
pub struct Names {
    names: Vec<Name>,
}

struct Name {
    text: String,
    /// The name as a JSON string (its bytes between quotes), little-endian in a
    /// zero-padded word, and the mask of those bytes; the mask is 0 when they do not fit
    /// or the name is not a plain string (where it is matched through its decoded text).
    word: u128,
    mask: u128,
}

impl Names {
    pub fn new(names: &[String]) -> Names {
        let names = names
            .iter()
            .map(|text| {
                let bytes = text.as_bytes();
                let plain = !bytes.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20);
                let mut padded = [0; 16];
                let (word, mask) = match padded.get_mut(..bytes.len() + 2) {
                    Some(quoted) if plain => {
                        quoted[0] = b'"';
                        quoted[1..=bytes.len()].copy_from_slice(bytes);
                        quoted[bytes.len() + 1] = b'"';
                        let mask = u128::MAX >> (8 * (14 - bytes.len()));
                        (u128::from_le_bytes(padded), mask)
                    }
                    _ => (0, 0),
                };
                Name {
                    text: text.clone(),
                    word,
                    mask,
                }
            })
            .collect();
        Names { names }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// The end (after the closing quote) of the string at `at` when it is name `slot`'s,
    /// found from the bytes alone (only for a short plain name).
    #[inline]
    fn matches_at(&self, bytes: &[u8], at: usize, slot: usize) -> Option<usize> {
        let name = self.names.get(slot)?;
        let word = u128::from_le_bytes(*bytes.get(at..)?.first_chunk::<16>()?);
        (name.mask != 0 && (word ^ name.word) & name.mask == 0).then(|| at + 2 + name.text.len())
    }

    /// The slot of the name whose raw bytes are `name`, trying `hint` first.
    #[inline]
    fn find(&self, name: &[u8], hint: usize) -> Option<usize> {
        if self.names.get(hint).is_some_and(|n| n.text.as_bytes() == name) {
            return Some(hint);
        }
        self.names.iter().position(|n| n.text.as_bytes() == name)
    }
}

/// The value of each wanted member of `text` (by position in `names`; the last
/// occurrence wins, as serde_json's visitor does), or `false` when the line is not a
/// flat object this reader vouches for. `slots` must have one entry per name. A value is
/// null, a boolean, a string without escapes, an integer that fits an i64 or a number
/// without an exponent (as its text); a number with an exponent is left as its JSON text
/// ([`Cell::Json`]) for serde_json, which spells it its own way. A member the line lacks
/// is null.
#[inline]
pub fn flat_members<'a>(text: &'a str, names: &Names, slots: &mut [Cell<'a>]) -> bool {
    slots.fill(Cell::Null);
    let bytes = text.as_bytes();
    let mut at = skip_space(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return false;
    }
    at = skip_space(bytes, at + 1);
    if bytes.get(at) == Some(&b'}') {
        return skip_space(bytes, at + 1) == bytes.len();
    }
    // Members usually come in the same order on every line: try the one after the last
    // match first, on the line's bytes. Whitespace between tokens is rare: it is skipped
    // only where the expected byte is not there.
    let mut hint = 0;
    loop {
        let (slot, name_end) = match names.matches_at(bytes, at, hint) {
            Some(end) => (Some(hint), end),
            None => {
                at = skip_space(bytes, at);
                let Some(name_end) = plain_string(bytes, at) else {
                    return false;
                };
                (names.find(&bytes[at + 1..name_end - 1], hint), name_end)
            }
        };
        at = name_end;
        if bytes.get(at) != Some(&b':') {
            at = skip_space(bytes, at);
            if bytes.get(at) != Some(&b':') {
                return false;
            }
        }
        at += 1;
        if matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            at = skip_space(bytes, at);
        }
        // An unwanted member's value is read (to validate it) into a slot of its own.
        let mut unwanted = Cell::Null;
        let into = match slot {
            Some(slot) => {
                hint = slot + 1;
                &mut slots[slot]
            }
            None => &mut unwanted,
        };
        let Some(value_end) = scalar(text, at, into) else {
            return false;
        };
        at = value_end;
        if !matches!(bytes.get(at), Some(b',' | b'}')) {
            at = skip_space(bytes, at);
        }
        match bytes.get(at) {
            Some(b',') => at += 1,
            Some(b'}') => return skip_space(bytes, at + 1) == bytes.len(),
            _ => return false,
        }
    }
}

/// JSON's whitespace: space, tab, line feed, carriage return.
#[inline]
fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// The end (after the closing quote) of a string at `at` without escapes or control
/// characters.
#[inline(always)]
fn plain_string(bytes: &[u8], at: usize) -> Option<usize> {
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let mut end = at + 1;
    // Eight bytes at a time up to the first quote, backslash or control character.
    while let Some(chunk) = bytes.get(end..end + 8) {
        let stops = string_stops(u64::from_le_bytes(chunk.try_into().ok()?));
        if stops != 0 {
            end += (stops.trailing_zeros() / 8) as usize;
            break;
        }
        end += 8;
    }
    loop {
        match *bytes.get(end)? {
            b'"' => return Some(end + 1),
            b'\\' | 0..0x20 => return None,
            _ => end += 1,
        }
    }
}

/// The high bit of each byte of `word` that is a quote, a backslash or below 0x20,
/// exact up to the first such byte (the borrows of the subtractions only run upwards).
fn string_stops(word: u64) -> u64 {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGHS: u64 = ONES << 7;
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    zero_bytes(word ^ (ONES * u64::from(b'"'))) | zero_bytes(word ^ (ONES * u64::from(b'\\'))) | below_space
}

/// Reads the scalar at `at` into `into` and returns where it ends: a plain string, a
/// number, `true`, `false` or `null`. (Written in place: a returned cell would be
/// stored in pieces and loaded back whole, which stalls.)
#[inline(always)]
fn scalar<'a>(text: &'a str, at: usize, into: &mut Cell<'a>) -> Option<usize> {
    let bytes = text.as_bytes();
    let (cell, end) = match bytes.get(at)? {
        b'"' => {
            let end = plain_string(bytes, at)?;
            (Cell::Text(text.get(at + 1..end - 1)?), end)
        }
        b't' => (Cell::Bool(true), literal(bytes, at, b"true")?),
        b'f' => (Cell::Bool(false), literal(bytes, at, b"false")?),
        b'n' => (Cell::Null, literal(bytes, at, b"null")?),
        b'-' | b'0'..=b'9' => return number(text, at, into),
        _ => return None,
    };
    *into = cell;
    Some(end)
}

fn literal(bytes: &[u8], at: usize, word: &[u8]) -> Option<usize> {
    bytes[at..].starts_with(word).then_some(at + word.len())
}

/// The number at `start`, in JSON's grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE]
/// [+-]? [0-9]+)?`, and where it ends. As serde_json reads it: an integer when it fits
/// an i64, else its text.
#[inline]
fn number<'a>(text: &'a str, start: usize, into: &mut Cell<'a>) -> Option<usize> {
    let bytes = text.as_bytes();
    let digits = |at: usize| bytes[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    let negative = bytes.get(start) == Some(&b'-');
    let mut at = start + usize::from(negative);
    let mut magnitude = 0u64;
    match bytes.get(at)? {
        b'0' => at += 1,
        b'1'..=b'9' => {
            while let Some(&digit) = bytes.get(at).filter(|b| b.is_ascii_digit()) {
                magnitude = magnitude.wrapping_mul(10).wrapping_add(u64::from(digit - b'0'));
                at += 1;
            }
        }
        _ => return None,
    }
    let integer_digits = at - start - usize::from(negative);
    let mut integer = true;
    if bytes.get(at) == Some(&b'.') {
        let n = digits(at + 1);
        if n == 0 {
            return None;
        }
        at += 1 + n;
        integer = false;
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(bytes.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        let n = digits(at);
        if n == 0 {
            return None;
        }
        at += n;
        *into = Cell::Json(&text[start..at]);
        return Some(at);
    }
    let number = &text[start..at];
    *into = match (integer, i64::try_from(magnitude)) {
        // Eighteen digits always fit; longer ones are parsed, to find an overflow.
        (true, Ok(magnitude)) if integer_digits <= 18 => {
            Cell::Int(if negative { -magnitude } else { magnitude })
        }
        (true, _) => number.parse().map_or(Cell::Decimal(number), Cell::Int),
        (false, _) => Cell::Decimal(number),
    };
    Some(at)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::Deserializer;
    use serde::de::{MapAccess, Visitor};
    use serde_json::Value as Json;

    use super::super::jsonl::to_value;
    use super::*;
    use crate::source::Value;

    /// Short names (matched on a line's bytes), a long one and one with a character
    /// JSON must escape (both matched through their text).
    fn names() -> Vec<String> {
        ["id", "a", "b", "a_longer_name_xy", "q\"", "é"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// What serde_json makes of the line: for each wanted name, the value of its last
    /// occurrence (null where there is none); `None` when the line is not a JSON object.
    fn by_serde(text: &str) -> Option<Vec<Value>> {
        struct All;
        impl<'de> Visitor<'de> for All {
            type Value = Vec<(String, Json)>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut all = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    all.push(entry);
                }
                Ok(all)
            }
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let all = de.deserialize_map(All).ok()?;
        de.end().ok()?;
        Some(
            names()
                .iter()
                .map(|n| {
                    let last = all.iter().rev().find(|(k, _)| k == n);
                    last.map_or(Value::Null, |(_, v)| to_value(v.clone()))
                })
                .collect(),
        )
    }

    /// A member's value, decoded by serde_json where the reader left its text.
    fn value_of(cell: Cell<'_>) -> Value {
        match cell {
            Cell::Json(raw) => to_value(serde_json::from_str(raw).expect("a member's text is JSON")),
            cell => cell.to_value(),
        }
    }

    /// Pieces of JSON, valid and not, flat and not.
    fn line() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("{"),
            Just("}"),
            Just("\"id\""),
            Just("\"a\""),
            Just("\"b\""),
            Just("\"x\""),
            Just(":"),
            Just(","),
            Just(" "),
            Just("\t"),
            Just("\r\n"),
            Just("1"),
            Just("-0"),
            Just("01"),
            Just("1.5"),
            Just("1."),
            Just("2e-3"),
            Just("1E+"),
            Just("true"),
            Just("fals"),
            Just("null"),
            Just("\"t\\\"q\""),
            Just("\"\u{1}\""),
            Just("[1]"),
            Just("\"é\""),
            Just("\"\""),
            Just("{\"id\":1,\"a\":\"x\"}"),
        ];
        // Objects of members whose names and values are mostly valid, some not.
        let name = prop_oneof![
            Just("\"id\""),
            Just("\"a\""),
            Just("\"b\""),
            Just("\"c\""),
            Just("\"idx\""),
            Just("\"i\""),
            Just("\"a_longer_name_xy\""),
            Just("\"a_longer_name_x\""),
            Just("\"a_longer_name_xyz\""),
            Just("\"q\\\"\""),
            Just("\"é\""),
            Just("\"\\u00e9\""),
            Just("\"i\\u0064\""),
            Just("id"),
        ];
        let value = prop_oneof![
            Just("1"),
            Just("-12.50"),
            Just("0"),
            Just("-0.0e-0"),
            Just("3e2"),
            Just("\"s\""),
            Just("\"\""),
            Just("null"),
            Just("true"),
            Just("false"),
            Just("[]"),
            Just("{}"),
            Just("01"),
            Just("1."),
            Just("1E+"),
            Just(".5"),
            Just("+1"),
            Just("-"),
            Just("tru"),
            Just("nul"),
            Just("\"\u{1}\""),
            Just("\"t\\\"q\""),
            Just("\"\\u0041\""),
            Just("\"\t\""),
            Just("\"é\""),
            Just("\"326ca1c2-a8f5-4e0e-9d6c-3f2c1b0a9e8d\""),
            Just("\"2024-09-11T02:46:30.543907+00:00\""),
            Just(
                "\"yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\""
            ),
            // Integers of 18 digits (which always fit an i64) and of 19 and 20.
            Just("-999999999999999999"),
            Just("9223372036854775807"),
            Just("-9223372036854775809"),
            Just("12345678901234567890"),
        ];
        let space = prop_oneof![Just(""), Just(" "), Just("\t"), Just("\r\n"), Just("\u{a0}")];
        // Trailing whitespace puts 16 bytes after every name, as the match on a line's
        // bytes needs.
        let trail = prop_oneof![Just(""), Just("\n"), Just("                \n")];
        let members = (
            proptest::collection::vec((name, space.clone(), value, space), 0..5),
            trail,
        )
            .prop_map(|(members, trail)| {
                let body: Vec<String> = members
                    .iter()
                    .map(|(k, s, v, t)| format!("{k}{s}:{t}{v}{s}"))
                    .collect();
                format!("{{{}}}{trail}", body.join(","))
            });
        prop_oneof![
            members,
            proptest::collection::vec(piece, 0..14).prop_map(|p| p.concat()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Whenever the fast reader answers, serde_json reads the same line as a JSON
        /// object with the same values for every wanted member.
        #[test]
        fn answers_only_what_serde_json_agrees_with(text in line()) {
            let names = Names::new(&names());
            let mut slots = vec![Cell::Null; names.len()];
            if flat_members(&text, &names, &mut slots) {
                let serde = by_serde(&text);
                prop_assert!(serde.is_some(), "accepted {text:?}, which serde_json refuses");
                let ours: Vec<Value> = slots.iter().map(|&cell| value_of(cell)).collect();
                prop_assert_eq!(ours, serde.unwrap_or_default());
            }
        }
    }

    proptest! {
        /// The word-at-a-time scan finds the same end as a byte-by-byte one.
        #[test]
        fn strings_end_where_a_byte_by_byte_scan_ends(
            body in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'"'), Just(b'\\'), Just(0x1f), Just(0x20), Just(0x7f), Just(0x80), Just(0xff), Just(0u8)], 0..40),
        ) {
            let mut bytes = vec![b'"'];
            bytes.extend_from_slice(&body);
            let expected = body.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).and_then(|n| {
                (body[n] == b'"').then_some(n + 2)
            });
            prop_assert_eq!(plain_string(&bytes, 0), expected);
        }
    }

    #[test]
    fn reads_a_flat_object_and_leaves_the_rest_to_serde_json() {
        let names = Names::new(&names());
        let mut slots = vec![Cell::Null; names.len()];
        assert!(flat_members(
            " {\"a\": \"x\", \"id\":-1.5e3 ,\"c\":null}\r\n",
            &names,
            &mut slots
        ));
        assert_eq!(
            slots,
            [
                Cell::Json("-1.5e3"),
                Cell::Text("x"),
                Cell::Null,
                Cell::Null,
                Cell::Null,
                Cell::Null
            ]
        );
        assert!(flat_members("{\"id\":-12,\"b\":2.50}\n", &names, &mut slots));
        assert_eq!(slots[0], Cell::Int(-12));
        assert_eq!(slots[2], Cell::Decimal("2.50"));
        for text in [
            "{\"a\": [1]}",
            "{\"a\": \"\\n\"}",
            "{\"a\": 01}",
            "{\"a\": 1} x",
            "[1]",
            "{\"a\" 1}",
        ] {
            assert!(!flat_members(text, &names, &mut slots), "{text}");
        }
    }
}
