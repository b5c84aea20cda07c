//! PostgreSQL's binary wire forms (what `COPY ... (FORMAT binary)` and binary result
//! columns carry), decoded into exactly the text or number the column's text cast would
//! give: `numeric` as `numeric_out` prints it (scale kept, `NaN`, `Infinity`), `uuid` in
//! lower-case hyphenated form. Every decoder checks the cell's length.

/// A cell of the wrong length or content.
fn bad(what: &str, len: usize) -> String {
    format!("a binary {what} of {len} bytes")
}

/// `bigint`: 8 bytes, big-endian.
pub fn int8(bytes: &[u8]) -> Result<i64, String> {
    let b: [u8; 8] = bytes.try_into().map_err(|_| bad("bigint", bytes.len()))?;
    Ok(i64::from_be_bytes(b))
}

/// `double precision`: 8 bytes, IEEE 754 big-endian.
pub fn float8(bytes: &[u8]) -> Result<f64, String> {
    let b: [u8; 8] = bytes
        .try_into()
        .map_err(|_| bad("double precision", bytes.len()))?;
    Ok(f64::from_be_bytes(b))
}

/// `real`: 4 bytes, IEEE 754 big-endian.
pub fn float4(bytes: &[u8]) -> Result<f32, String> {
    let b: [u8; 4] = bytes.try_into().map_err(|_| bad("real", bytes.len()))?;
    Ok(f32::from_be_bytes(b))
}

/// `boolean`: one byte, 0 or 1.
pub fn boolean(bytes: &[u8]) -> Result<bool, String> {
    match bytes {
        [0] => Ok(false),
        [1] => Ok(true),
        _ => Err(bad("boolean", bytes.len())),
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Bytes as lower-case hex digits, as `encode(.., 'hex')` gives them.
pub fn hex_lower(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

/// `uuid`: 16 bytes, as `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in lower case.
pub fn uuid(bytes: &[u8]) -> Result<String, String> {
    if bytes.len() != 16 {
        return Err(bad("uuid", bytes.len()));
    }
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    Ok(out)
}

const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;

/// `numeric`: `ndigits`, `weight`, `sign`, `dscale` (16 bits each), then `ndigits`
/// base-10000 digits, the first of weight `weight`. Printed as `numeric_out` does:
/// the integer part without leading zeros (`0` when there is none), then exactly
/// `dscale` fraction digits; `NaN`, `Infinity` and `-Infinity` by name.
pub fn numeric(bytes: &[u8]) -> Result<String, String> {
    let invalid = || bad("numeric", bytes.len());
    if bytes.len() < 8 {
        return Err(invalid());
    }
    let word = |i: usize| u16::from_be_bytes([bytes[2 * i], bytes[2 * i + 1]]);
    let ndigits = usize::from(word(0));
    let weight = i64::from(word(1) as i16);
    let sign = word(2);
    let dscale = i64::from(word(3));
    if bytes.len() != 8 + 2 * ndigits {
        return Err(invalid());
    }
    match sign {
        NUMERIC_NAN => return Ok("NaN".into()),
        NUMERIC_PINF => return Ok("Infinity".into()),
        NUMERIC_NINF => return Ok("-Infinity".into()),
        NUMERIC_POS | NUMERIC_NEG => {}
        _ => return Err(invalid()),
    }
    let digits: Vec<u16> = (0..ndigits).map(|i| word(4 + i)).collect();
    if digits.iter().any(|d| *d > 9999) {
        return Err(invalid());
    }
    // Digit `i` has weight `weight - i`: the group at weight `w` is digits[weight - w].
    let group = |w: i64| -> u16 {
        let i = weight - w;
        if i < 0 {
            return 0;
        }
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i))
            .copied()
            .unwrap_or(0)
    };
    let mut out = String::with_capacity(8 + 4 * ndigits + dscale as usize);
    if sign == NUMERIC_NEG {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for w in (0..=weight).rev() {
            let d = group(w);
            if w == weight {
                out.push_str(&d.to_string());
            } else {
                push4(&mut out, d);
            }
        }
    }
    if dscale > 0 {
        out.push('.');
        let mut left = dscale;
        let mut w = -1;
        while left > 0 {
            let mut four = String::with_capacity(4);
            push4(&mut four, group(w));
            let take = left.min(4) as usize;
            out.push_str(&four[..take]);
            left -= take as i64;
            w -= 1;
        }
    }
    Ok(out)
}

/// Four decimal digits, zero-padded.
fn push4(out: &mut String, d: u16) {
    for div in [1000, 100, 10, 1] {
        out.push(char::from(b'0' + ((d / div) % 10) as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_bytes(weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [digits.len() as u16, weight as u16, sign, dscale] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b
    }

    #[test]
    fn numerics_print_as_numeric_out_does() {
        let cases: &[(i16, u16, u16, &[u16], &str)] = &[
            // 0.00: no digits at all.
            (0, NUMERIC_POS, 2, &[], "0.00"),
            (0, NUMERIC_POS, 0, &[], "0"),
            // 1234.50 (trailing zero kept by the scale).
            (0, NUMERIC_POS, 2, &[1234, 5000], "1234.50"),
            (0, NUMERIC_NEG, 2, &[1234, 5000], "-1234.50"),
            // 12345678.9
            (1, NUMERIC_POS, 1, &[1234, 5678, 9000], "12345678.9"),
            // 10000 (weight 1, trailing zero group dropped by the server).
            (1, NUMERIC_POS, 0, &[1], "10000"),
            // 0.0001 and 0.00012345
            (-1, NUMERIC_POS, 4, &[1], "0.0001"),
            (-1, NUMERIC_POS, 8, &[1, 2345], "0.00012345"),
            // 0.000000001 (weight -3)
            (-3, NUMERIC_POS, 9, &[1000], "0.000000001"),
            // 5 with scale 6: 5.000000
            (0, NUMERIC_POS, 6, &[5], "5.000000"),
            // 123.456 truncates to its scale (never happens, but stays in bounds).
            (0, NUMERIC_POS, 3, &[123, 4560], "123.456"),
            // 1e20
            (5, NUMERIC_POS, 0, &[1], "100000000000000000000"),
            (0, NUMERIC_NAN, 0, &[], "NaN"),
            (0, NUMERIC_PINF, 0, &[], "Infinity"),
            (0, NUMERIC_NINF, 0, &[], "-Infinity"),
        ];
        for (weight, sign, dscale, digits, text) in cases {
            assert_eq!(
                numeric(&numeric_bytes(*weight, *sign, *dscale, digits)).as_deref(),
                Ok(*text),
                "{text}"
            );
        }
        assert!(numeric(&[0, 1]).is_err());
        assert!(numeric(&numeric_bytes(0, NUMERIC_POS, 0, &[10000])).is_err());
        assert!(numeric(&numeric_bytes(0, 0x1234, 0, &[1])).is_err());
        let mut short = numeric_bytes(0, NUMERIC_POS, 0, &[1, 2]);
        short.pop();
        assert!(numeric(&short).is_err());
    }

    #[test]
    fn fixed_width_types_decode_and_check_their_length() {
        assert_eq!(int8(&(-5i64).to_be_bytes()), Ok(-5));
        assert!(int8(&[0; 4]).is_err());
        assert_eq!(float8(&0.1f64.to_be_bytes()), Ok(0.1));
        assert_eq!(float4(&0.1f32.to_be_bytes()), Ok(0.1f32));
        assert!(float4(&[0; 8]).is_err());
        assert_eq!(boolean(&[1]), Ok(true));
        assert_eq!(boolean(&[0]), Ok(false));
        assert!(boolean(&[2]).is_err());
        let id: Vec<u8> = (0u8..16).map(|i| i * 17).collect();
        assert_eq!(uuid(&id).as_deref(), Ok("00112233-4455-6677-8899-aabbccddeeff"));
        assert!(uuid(&id[..15]).is_err());
        assert_eq!(hex_lower(&[0x0a, 0xff]), "0aff");
    }
}
