//! PostgreSQL's binary wire forms (what `COPY ... (FORMAT binary)` and binary result
//! columns carry), decoded into exactly the text or number the column's text cast would
//! give: `numeric` as `numeric_out` prints it (scale kept, `NaN`, `Infinity`), `uuid` in
//! lower-case hyphenated form. Every decoder checks the cell's length. Also the framing
//! of a binary `COPY` stream (header, tuples, fields, trailer), which scans read.

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

/// `timestamptz`: microseconds since 2000-01-01 00:00:00 UTC, 8 bytes big-endian. Printed
/// as its text cast prints it in a session with `TimeZone` UTC and `DateStyle` ISO:
/// `2024-01-01 00:00:30.007919+00`, the fraction without trailing zeros (none when
/// whole), years before 1 as ` BC`, and `infinity`, `-infinity`.
pub fn timestamptz(bytes: &[u8]) -> Result<String, String> {
    let b: [u8; 8] = bytes.try_into().map_err(|_| bad("timestamptz", bytes.len()))?;
    let micros = i64::from_be_bytes(b);
    match micros {
        i64::MAX => return Ok("infinity".into()),
        i64::MIN => return Ok("-infinity".into()),
        _ => {}
    }
    const UNIX_DAYS_AT_2000: i64 = 10_957;
    let (secs, fraction) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days + UNIX_DAYS_AT_2000);
    let (shown_year, bc) = if year <= 0 {
        (1 - year, true)
    } else {
        (year, false)
    };
    // By hand: this runs for every row, and `format!` costs several times more.
    let mut out = String::with_capacity(36);
    if shown_year > 9999 {
        out.push_str(&shown_year.to_string());
    } else {
        push_digits(&mut out, shown_year, 4);
    }
    for (separator, value) in [
        ('-', month),
        ('-', day),
        (' ', day_secs / 3600),
        (':', day_secs / 60 % 60),
        (':', day_secs % 60),
    ] {
        out.push(separator);
        push_digits(&mut out, value, 2);
    }
    if fraction != 0 {
        let mut digits = 6;
        let mut fraction = fraction;
        while fraction % 10 == 0 {
            fraction /= 10;
            digits -= 1;
        }
        out.push('.');
        push_digits(&mut out, fraction, digits);
    }
    out.push_str("+00");
    if bc {
        out.push_str(" BC");
    }
    Ok(out)
}

/// Microseconds from 2000-01-01 to 0001-01-01 and to 10000-01-01 (UTC).
const FIRST_AD_MICROS: i64 = -63_082_281_600_000_000;
const YEAR_10000_MICROS: i64 = 252_455_616_000_000_000;

/// Whether a binary `timestamptz` prints as text every instant parser reads: infinite,
/// or within the years 1 to 9999 AD (PostgreSQL also stores years 10000 and later, and
/// BC ones). Two identical such cells are then the same instant.
pub fn timestamptz_is_plain(bytes: &[u8]) -> bool {
    let Ok(b) = <[u8; 8]>::try_from(bytes) else {
        return false;
    };
    let micros = i64::from_be_bytes(b);
    micros == i64::MAX || micros == i64::MIN || (FIRST_AD_MICROS..YEAR_10000_MICROS).contains(&micros)
}

/// Pushes the `width` (at most 18) lowest decimal digits of `value` (non-negative),
/// zero-padded.
fn push_digits(out: &mut String, mut value: i64, width: u32) {
    let mut digits = [b'0'; 18];
    let digits = &mut digits[..width as usize];
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
    out.extend(digits.iter().map(|d| char::from(*d)));
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (year 0 is 1 BC).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
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
    // Digits are read in place (no vector): this runs once per numeric cell of a scan.
    let digit = |i: usize| word(4 + i);
    if (0..ndigits).any(|i| digit(i) > 9999) {
        return Err(invalid());
    }
    // Digit `i` has weight `weight - i`: the group at weight `w` is digit(weight - w).
    let group = |w: i64| -> u16 {
        match usize::try_from(weight - w) {
            Ok(i) if i < ndigits => digit(i),
            _ => 0,
        }
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
                push_unpadded(&mut out, d);
            } else {
                push4(&mut out, d, 4);
            }
        }
    }
    if dscale > 0 {
        out.push('.');
        let mut left = dscale;
        let mut w = -1;
        while left > 0 {
            let take = left.min(4) as usize;
            push4(&mut out, group(w), take);
            left -= take as i64;
            w -= 1;
        }
    }
    Ok(out)
}

/// The first `take` of a group's four decimal digits, zero-padded.
fn push4(out: &mut String, d: u16, take: usize) {
    for div in [1000, 100, 10, 1].into_iter().take(take) {
        out.push(char::from(b'0' + ((d / div) % 10) as u8));
    }
}

/// A group's digits without leading zeros (`0` for zero).
fn push_unpadded(out: &mut String, d: u16) {
    let mut started = false;
    for div in [1000, 100, 10, 1] {
        let digit = (d / div) % 10;
        started |= digit != 0 || div == 1;
        if started {
            out.push(char::from(b'0' + digit as u8));
        }
    }
}

/// The signature a binary `COPY` stream starts with.
pub const COPY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Bits 16-31 of the header's flags mark format changes a reader must not ignore
/// (bit 16: rows carry OIDs, which recon never asks for).
const COPY_CRITICAL_FLAGS: u32 = 0xFFFF_0000;

/// A complete item at the start of a binary `COPY` stream's remaining data.
#[derive(Debug, PartialEq, Eq)]
pub enum CopyItem {
    /// A tuple of this many bytes; its fields' places were written to the field list.
    Tuple(usize),
    /// The trailer (two bytes): no tuple follows.
    Trailer,
}

/// Reads the header of a binary `COPY` stream (signature, flags, extension area) at the
/// start of `data`: the bytes it takes, or `None` while it is incomplete.
pub fn copy_header(data: &[u8]) -> Result<Option<usize>, String> {
    let fixed = COPY_SIGNATURE.len() + 8;
    if data.len() < fixed {
        // Judge the signature as soon as its bytes are there, not after more arrive.
        let n = data.len().min(COPY_SIGNATURE.len());
        if data[..n] != COPY_SIGNATURE[..n] {
            return Err("not a binary COPY stream (bad signature)".into());
        }
        return Ok(None);
    }
    if data[..COPY_SIGNATURE.len()] != COPY_SIGNATURE[..] {
        return Err("not a binary COPY stream (bad signature)".into());
    }
    let at = COPY_SIGNATURE.len();
    let flags = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    if flags & COPY_CRITICAL_FLAGS != 0 {
        return Err(format!("binary COPY header flags {flags:#x} not understood"));
    }
    let ext = u32::from_be_bytes([data[at + 4], data[at + 5], data[at + 6], data[at + 7]]);
    let total = usize::try_from(ext)
        .ok()
        .and_then(|e| fixed.checked_add(e))
        .ok_or_else(|| "binary COPY header extension too long".to_string())?;
    Ok((data.len() >= total).then_some(total))
}

/// Reads one tuple (or the trailer) of a binary `COPY` stream at the start of `data`:
/// a 16-bit field count, then per field a 32-bit length (-1 for NULL) and its bytes.
/// Each field's place in the tuple (`None` for NULL) is written to `fields`, which is
/// reused from tuple to tuple. `None` while the tuple is incomplete.
pub fn copy_tuple(data: &[u8], fields: &mut Vec<Option<(usize, usize)>>) -> Result<Option<CopyItem>, String> {
    let Some(count) = data.get(..2) else {
        return Ok(None);
    };
    let count = i16::from_be_bytes([count[0], count[1]]);
    if count == -1 {
        return Ok(Some(CopyItem::Trailer));
    }
    let count = usize::try_from(count).map_err(|_| format!("binary COPY tuple of {count} fields"))?;
    fields.clear();
    let mut at = 2;
    for _ in 0..count {
        let Some(len) = data.get(at..at + 4) else {
            return Ok(None);
        };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        at += 4;
        if len == -1 {
            fields.push(None);
            continue;
        }
        let len = usize::try_from(len).map_err(|_| format!("binary COPY field of length {len}"))?;
        if data.len() - at < len {
            return Ok(None);
        }
        fields.push(Some((at, len)));
        at += len;
    }
    Ok(Some(CopyItem::Tuple(at)))
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
            // Leading zeros of the first group dropped, inner groups padded.
            (2, NUMERIC_POS, 0, &[12, 0, 5], "1200000005"),
            (0, NUMERIC_POS, 2, &[7, 500], "7.05"),
            (0, NUMERIC_POS, 1, &[7, 500], "7.0"),
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
    fn plain_timestamptz_values_are_those_every_parser_reads() {
        use crate::compare::normalize::parse_instant;
        for micros in [
            i64::MIN,
            FIRST_AD_MICROS - 1,
            FIRST_AD_MICROS,
            0,
            1_700_000_000_123_456,
            YEAR_10000_MICROS - 1,
            YEAR_10000_MICROS,
            i64::MAX,
        ] {
            let bytes = micros.to_be_bytes();
            let text = timestamptz(&bytes).unwrap();
            let plain = timestamptz_is_plain(&bytes);
            let expected = !matches!(micros, m if m == FIRST_AD_MICROS - 1 || m == YEAR_10000_MICROS);
            assert_eq!(plain, expected, "{text}");
            if plain {
                assert!(parse_instant(&text).is_some(), "{text}");
            }
        }
        assert!(!timestamptz_is_plain(&[0; 4]));
    }

    #[test]
    fn timestamptz_prints_as_its_text_cast_does() {
        // Pairs from PostgreSQL: `CAST(x AS text)` (TimeZone UTC) and `timestamptz_send(x)`.
        for (text, hex) in [
            ("2024-01-01 00:00:30.007919+00", "0002b0d5d6b3226f"),
            ("2024-01-01 00:00:30.5+00", "0002b0d5d6baa4a0"),
            ("2024-01-01 00:00:30+00", "0002b0d5d6b30380"),
            ("infinity", "7fffffffffffffff"),
            ("-infinity", "8000000000000000"),
            ("0044-03-15 12:00:00+00 BC", "ff1af9e8fb46d000"),
            ("10000-01-01 00:00:00+00", "0380e70b913b8000"),
            ("1999-12-31 23:59:59.999999+00", "ffffffffffffffff"),
            ("0001-01-01 00:00:00+00", "ff1fe2ffc59c6000"),
            ("0001-12-31 23:59:59.000001+00 BC", "ff1fe2ffc58d1dc1"),
            ("1970-01-01 00:00:00+00", "fffca2fec4c82000"),
            ("2000-02-29 12:34:56.12+00", "000004ad6c7f10c0"),
            ("294276-12-31 23:59:59.999999+00", "7fffff5bb3b29fff"),
            ("4713-01-01 00:00:00+00 BC", "fd0f7fbdaf17e000"),
        ] {
            let bytes: Vec<u8> = (0..8)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            assert_eq!(timestamptz(&bytes).unwrap(), text, "{hex}");
        }
        assert!(timestamptz(&[0; 7]).is_err());
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

    /// A binary COPY stream: header (with a 3-byte extension), the given tuples, trailer.
    fn copy_stream(tuples: &[&[Option<&[u8]>]]) -> Vec<u8> {
        let mut b = COPY_SIGNATURE.to_vec();
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&3u32.to_be_bytes());
        b.extend_from_slice(b"ext");
        for tuple in tuples {
            b.extend_from_slice(&(tuple.len() as i16).to_be_bytes());
            for field in *tuple {
                match field {
                    None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(bytes) => {
                        b.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                        b.extend_from_slice(bytes);
                    }
                }
            }
        }
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b
    }

    /// Parses a whole stream: each tuple's fields as owned bytes.
    fn parse_all(data: &[u8]) -> Result<Vec<Vec<Option<Vec<u8>>>>, String> {
        let mut at = copy_header(data)?.ok_or("incomplete header")?;
        let mut fields = Vec::new();
        let mut tuples = Vec::new();
        loop {
            match copy_tuple(&data[at..], &mut fields)?.ok_or("incomplete tuple")? {
                CopyItem::Trailer => return Ok(tuples),
                CopyItem::Tuple(n) => {
                    let tuple = &data[at..at + n];
                    tuples.push(
                        fields
                            .iter()
                            .map(|f| f.map(|(start, len)| tuple[start..start + len].to_vec()))
                            .collect(),
                    );
                    at += n;
                }
            }
        }
    }

    #[test]
    fn binary_copy_streams_are_split_into_tuples_and_fields() {
        let data = copy_stream(&[
            &[Some(b"ab"), None, Some(b"")],
            &[Some(&[0, 0, 0, 7]), Some(b"xyz"), None],
        ]);
        let tuples = parse_all(&data).unwrap();
        assert_eq!(
            tuples,
            vec![
                vec![Some(b"ab".to_vec()), None, Some(Vec::new())],
                vec![Some(vec![0, 0, 0, 7]), Some(b"xyz".to_vec()), None],
            ]
        );
        assert_eq!(parse_all(&copy_stream(&[])).unwrap(), Vec::<Vec<_>>::new());
    }

    #[test]
    fn incomplete_copy_items_ask_for_more_data() {
        let data = copy_stream(&[&[Some(b"hello"), None]]);
        let header = copy_header(&data).unwrap().unwrap();
        assert_eq!(header, 11 + 8 + 3);
        for cut in 0..header {
            assert_eq!(copy_header(&data[..cut]), Ok(None), "header cut at {cut}");
        }
        let tuple = &data[header..data.len() - 2];
        let mut fields = Vec::new();
        for cut in 0..tuple.len() {
            assert_eq!(
                copy_tuple(&tuple[..cut], &mut fields),
                Ok(None),
                "tuple cut at {cut}"
            );
        }
        assert_eq!(
            copy_tuple(tuple, &mut fields),
            Ok(Some(CopyItem::Tuple(tuple.len())))
        );
        assert_eq!(fields, vec![Some((6, 5)), None]);
    }

    #[test]
    fn malformed_copy_streams_are_refused() {
        assert!(copy_header(b"PGCOPY\nX").is_err());
        assert!(copy_header(b"COPY").is_err());
        let mut oids = copy_stream(&[]);
        oids[11..15].copy_from_slice(&0x0001_0000u32.to_be_bytes());
        assert!(copy_header(&oids).is_err());
        let mut fields = Vec::new();
        assert!(copy_tuple(&(-2i16).to_be_bytes(), &mut fields).is_err());
        let mut bad_len = 1i16.to_be_bytes().to_vec();
        bad_len.extend_from_slice(&(-5i32).to_be_bytes());
        assert!(copy_tuple(&bad_len, &mut fields).is_err());
    }
}
