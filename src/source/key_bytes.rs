//! Keys as order-preserving bytes: two encoded keys compare with `memcmp` exactly as
//! the [`Key`]s do (integers numerically, text byte-wise, part by part). The sorter of
//! unsorted files and the packed rows of database scans keep keys this way, so that
//! ordering and grouping rows never needs a decoded key.

use crate::source::{Key, KeyPart};

const PART_INT: u8 = 1;
const PART_TEXT: u8 = 2;

/// Appends an integer key part.
pub fn push_int(out: &mut Vec<u8>, i: i64) {
    out.push(PART_INT);
    out.extend_from_slice(&((i as u64) ^ (1 << 63)).to_be_bytes());
}

/// Appends a text key part.
pub fn push_text(out: &mut Vec<u8>, s: &str) {
    out.push(PART_TEXT);
    // NUL is escaped as 00 FF and the part ends with 00 00, so that the bytes order like
    // the text and no part is a prefix of a longer one.
    for chunk in s.as_bytes().split_inclusive(|b| *b == 0) {
        out.extend_from_slice(chunk);
        if chunk.last() == Some(&0) {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// Appends a key part.
pub fn push_part(out: &mut Vec<u8>, part: &KeyPart) {
    match part {
        KeyPart::Int(i) => push_int(out, *i),
        KeyPart::Text(s) => push_text(out, s),
    }
}

/// Appends every part of a key.
pub fn push_key(out: &mut Vec<u8>, key: &Key) {
    for part in &key.0 {
        push_part(out, part);
    }
}

/// Reads a key back from its bytes; `Err` says what is wrong with them.
pub fn decode(mut bytes: &[u8]) -> Result<Key, String> {
    let mut parts = Vec::with_capacity(1);
    while let Some((&tag, rest)) = bytes.split_first() {
        bytes = rest;
        match tag {
            PART_INT => {
                let (bits, rest) = bytes.split_first_chunk::<8>().ok_or("short integer part")?;
                bytes = rest;
                parts.push(KeyPart::Int((u64::from_be_bytes(*bits) ^ (1 << 63)) as i64));
            }
            PART_TEXT => {
                let mut text = Vec::new();
                loop {
                    let end = bytes.iter().position(|b| *b == 0).ok_or("unended text part")?;
                    text.extend_from_slice(&bytes[..end]);
                    let marker = bytes.get(end + 1).copied();
                    match marker {
                        Some(0) | Some(0xff) => bytes = &bytes[end + 2..],
                        _ => return Err("bad text escape".into()),
                    }
                    if marker == Some(0) {
                        break;
                    }
                    text.push(0);
                }
                let text = String::from_utf8(text).map_err(|_| "text part is not UTF-8")?;
                parts.push(KeyPart::Text(text));
            }
            tag => return Err(format!("unknown key part tag {tag}")),
        }
    }
    Ok(Key(parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(key: &Key) -> Vec<u8> {
        let mut out = Vec::new();
        push_key(&mut out, key);
        out
    }

    #[test]
    fn bytes_order_like_keys_and_decode_back() {
        let keys = [
            Key(vec![KeyPart::Int(i64::MIN)]),
            Key(vec![KeyPart::Int(-1)]),
            Key(vec![KeyPart::Int(0)]),
            Key(vec![KeyPart::Int(7)]),
            Key(vec![KeyPart::Int(i64::MAX)]),
            Key(vec![KeyPart::Text("a".into()), KeyPart::Int(2)]),
            Key(vec![KeyPart::Text("a\0".into()), KeyPart::Int(1)]),
            Key(vec![KeyPart::Text("a\0\0b".into()), KeyPart::Int(1)]),
            Key(vec![KeyPart::Text("ab".into()), KeyPart::Int(1)]),
            Key(vec![KeyPart::Text("é".into())]),
        ];
        for a in &keys {
            assert_eq!(decode(&encoded(a)).as_ref(), Ok(a));
            for b in &keys {
                assert_eq!(encoded(a).cmp(&encoded(b)), a.cmp(b), "{a} against {b}");
            }
        }
    }

    #[test]
    fn damaged_bytes_are_refused() {
        assert!(decode(&[PART_INT, 1, 2]).is_err());
        assert!(decode(&[PART_TEXT, b'a']).is_err());
        assert!(decode(&[PART_TEXT, b'a', 0, 7]).is_err());
        assert!(decode(&[9]).is_err());
    }
}
