//! Type-aware normalization: every value becomes canonical bytes for its field's type, so
//! that equal data never shows up as a difference (`10.5` = `10.50`, the same instant in
//! two offsets, `t` = `true`, JSON with other key order). NULL stays distinct from `""`.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};

use crate::job::Tolerance;
use crate::source::value::Cell;
use crate::source::value::canonical_uuid;
use crate::source::{FieldType, Value};

/// How one field is compared, resolved from the job and the sources.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldRule {
    /// The resolved type.
    pub ty: FieldType,
    /// Ignore leading and trailing white space (text).
    pub trim: bool,
    /// Compare text case-insensitively.
    pub ignore_case: bool,
    /// How far apart two values may be and still agree.
    pub tolerance: Option<Tolerance>,
}

impl FieldRule {
    /// Exact comparison of the given type.
    pub fn exact(ty: FieldType) -> FieldRule {
        FieldRule {
            ty,
            trim: false,
            ignore_case: false,
            tolerance: None,
        }
    }
}

/// The outcome of normalizing one value: NULL, or canonical bytes written to the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalized {
    /// The value is NULL.
    Null,
    /// The value's canonical bytes are in the output buffer.
    Value,
}

/// Writes `value`'s canonical form for `rule` into `out` (cleared first). `Err` says why
/// the value is not of the field's type.
pub fn normalize(value: &Value, rule: &FieldRule, out: &mut Vec<u8>) -> Result<Normalized, String> {
    out.clear();
    normalize_append(value.cell(), rule, out)
}

/// [`normalize`] for a borrowed cell, appending to `out` instead of replacing it; on
/// `Err` `out` is as before.
pub fn normalize_append(value: Cell<'_>, rule: &FieldRule, out: &mut Vec<u8>) -> Result<Normalized, String> {
    let start = out.len();
    let normalized = normalize_to(value, rule, out);
    if normalized.is_err() {
        out.truncate(start);
    }
    normalized
}

fn normalize_to(value: Cell<'_>, rule: &FieldRule, out: &mut Vec<u8>) -> Result<Normalized, String> {
    if value.is_null() {
        return Ok(Normalized::Null);
    }
    match rule.ty {
        FieldType::Text => text(value, rule, out),
        FieldType::Integer | FieldType::Decimal => decimal(value, rule.ty, out),
        FieldType::Float => float(value, out),
        FieldType::Bool => boolean(value, out),
        FieldType::Timestamp => timestamp(value, out),
        FieldType::Date => date(value, out),
        FieldType::Time => time(value, out),
        FieldType::Uuid => uuid(value, out),
        FieldType::Bytes => bytes(value, out),
        FieldType::Json => json(value, out),
    }?;
    Ok(Normalized::Value)
}

fn describe(value: Cell<'_>) -> String {
    let text = value.to_plain_text().unwrap_or_default();
    if text.chars().count() > 60 {
        format!("{:?}...", text.chars().take(60).collect::<String>())
    } else {
        format!("{text:?}")
    }
}

fn not_a(value: Cell<'_>, what: &str) -> String {
    format!("{} is not {what}", describe(value))
}

fn text(value: Cell<'_>, rule: &FieldRule, out: &mut Vec<u8>) -> Result<(), String> {
    let owned;
    let s: &str = match &value {
        Cell::Text(s) | Cell::Decimal(s) | Cell::Json(s) => s,
        Cell::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) => s,
            Err(_) => {
                out.extend_from_slice(b);
                return Ok(());
            }
        },
        other => {
            owned = other.to_plain_text().unwrap_or_default();
            &owned
        }
    };
    let s = if rule.trim { s.trim() } else { s };
    if rule.ignore_case {
        out.extend_from_slice(s.to_lowercase().as_bytes());
    } else {
        out.extend_from_slice(s.as_bytes());
    }
    Ok(())
}

/// An exact decimal number: `digits × 10^exp`, digits without leading or trailing zeros.
/// Its canonical text is `[-]digits e exp` (`10.50` becomes `105e-1`, zero becomes `0`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decimal {
    negative: bool,
    digits: String,
    exp: i64,
}

impl Decimal {
    /// Parses decimal text: optional sign, digits, optional fraction and exponent.
    pub fn parse(text: &str) -> Option<Decimal> {
        let t = text.trim();
        let (negative, t) = match t.as_bytes().first()? {
            b'-' => (true, &t[1..]),
            b'+' => (false, &t[1..]),
            _ => (false, t),
        };
        let (mantissa, exp) = match t.find(['e', 'E']) {
            Some(i) => (&t[..i], t[i + 1..].parse::<i64>().ok()?),
            None => (t, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut digits: String = int.chars().chain(frac.chars()).collect();
        let trimmed = digits.trim_end_matches('0').len();
        let exp = exp
            .checked_sub(frac.len() as i64)?
            .checked_add((digits.len() - trimmed) as i64)?;
        digits.truncate(trimmed);
        let digits = digits.trim_start_matches('0').to_string();
        if digits.is_empty() {
            return Some(Decimal {
                negative: false,
                digits: "0".into(),
                exp: 0,
            });
        }
        Some(Decimal {
            negative,
            digits,
            exp,
        })
    }

    /// The exact value of a float's shortest decimal form (`0.1_f64` is `0.1`).
    pub fn from_f64(f: f64) -> Option<Decimal> {
        if !f.is_finite() {
            return None;
        }
        Decimal::parse(&format!("{f:e}"))
    }

    fn write_canonical(&self, out: &mut Vec<u8>) {
        if self.negative {
            out.push(b'-');
        }
        out.extend_from_slice(self.digits.as_bytes());
        if self.exp != 0 {
            out.push(b'e');
            out.extend_from_slice(self.exp.to_string().as_bytes());
        }
    }

    /// Reads back a canonical form written by [`normalize`].
    fn from_canonical(bytes: &[u8]) -> Option<Decimal> {
        Decimal::parse(std::str::from_utf8(bytes).ok()?)
    }

    /// The value as `mantissa × 10^exp` in an i128, when it fits.
    fn scaled(&self, exp: i64) -> Option<i128> {
        let m: i128 = self.digits.parse().ok()?;
        let shift = u32::try_from(self.exp.checked_sub(exp)?).ok()?;
        let m = m.checked_mul(10i128.checked_pow(shift)?)?;
        Some(if self.negative { -m } else { m })
    }
}

fn decimal(value: Cell<'_>, ty: FieldType, out: &mut Vec<u8>) -> Result<(), String> {
    let what = if ty == FieldType::Integer {
        "an integer"
    } else {
        "a decimal number"
    };
    match &value {
        Cell::Int(i) => {
            write_int_canonical(*i, out);
            return Ok(());
        }
        Cell::Text(s) | Cell::Decimal(s) if write_plain_decimal(s.as_bytes(), out) => return Ok(()),
        _ => {}
    }
    let parsed = match &value {
        Cell::Int(i) => Decimal::parse(&i.to_string()),
        Cell::Bool(b) => Decimal::parse(if *b { "1" } else { "0" }),
        Cell::Float(f) if f.is_nan() => {
            out.extend_from_slice(b"NaN");
            return Ok(());
        }
        Cell::Float(f) if f.is_infinite() => {
            out.extend_from_slice(if *f > 0.0 { b"inf" } else { b"-inf" });
            return Ok(());
        }
        Cell::Float(f) => Decimal::from_f64(*f),
        Cell::Text(s) | Cell::Decimal(s) => match Decimal::parse(s) {
            Some(d) => Some(d),
            None => {
                // PostgreSQL's numeric NaN and ±Infinity, equal to a float's.
                if let Some(special) = special_number(s) {
                    out.extend_from_slice(special);
                    return Ok(());
                }
                None
            }
        },
        _ => None,
    };
    let parsed = parsed.ok_or_else(|| not_a(value, what))?;
    parsed.write_canonical(out);
    Ok(())
}

/// Writes an integer's canonical decimal form (what [`Decimal::write_canonical`] writes
/// for it) without allocating: trailing zeros become the exponent (`120` is `12e1`).
pub(crate) fn write_int_canonical(i: i64, out: &mut Vec<u8>) {
    if i == 0 {
        out.push(b'0');
        return;
    }
    if i < 0 {
        out.push(b'-');
    }
    let mut m = i.unsigned_abs();
    let mut exp = 0u32;
    while m % 10 == 0 {
        m /= 10;
        exp += 1;
    }
    push_u64(m, out);
    if exp > 0 {
        out.push(b'e');
        push_u64(u64::from(exp), out);
    }
}

/// Appends a number's decimal digits.
fn push_u64(mut n: u64, out: &mut Vec<u8>) {
    // Most exponents are one digit.
    if n < 10 {
        out.push(b'0' + n as u8);
        return;
    }
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

/// Writes the canonical form of plain decimal text (`[-]digits[.digits]`, no sign `+`,
/// exponent or white space) without allocating, exactly as [`Decimal::parse`] and
/// [`Decimal::write_canonical`] would; false (writing nothing) for any other text.
pub(crate) fn write_plain_decimal(text: &[u8], out: &mut Vec<u8>) -> bool {
    let Some(plain) = plain_decimal(text) else {
        return false;
    };
    let Some(plain) = plain else {
        out.push(b'0');
        return true;
    };
    if plain.negative {
        out.push(b'-');
    }
    let (before, after) = plain.digits;
    out.extend_from_slice(before);
    out.extend_from_slice(after);
    if plain.exp != 0 {
        out.push(b'e');
        if plain.exp < 0 {
            out.push(b'-');
        }
        push_u64(plain.exp.unsigned_abs(), out);
    }
    true
}

/// Plain decimal text (`[-]digits[.digits]`, no sign `+`, exponent or white space) in
/// one pass that finds the point and the first and last digits that are not zero: its
/// canonical parts, `Some(None)` for zero, `None` for any other text. Inlined where it is
/// used: every decimal field of every row of a file passes here.
#[inline(always)]
pub(crate) fn plain_decimal(text: &[u8]) -> Option<Option<Significant<'_>>> {
    let (negative, t) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    let (mut point, mut first, mut last) = (None, None, 0);
    for (at, &b) in t.iter().enumerate() {
        match b {
            b'1'..=b'9' => {
                first.get_or_insert(at);
                last = at;
            }
            b'0' => {}
            b'.' if point.is_none() => point = Some(at),
            _ => return None,
        }
    }
    // No digit at all ("", "." or "-").
    if t.len() == usize::from(point.is_some()) {
        return None;
    }
    let Some(first) = first else {
        return Some(None);
    };
    let point = point.unwrap_or(t.len());
    let digits = if first < point && point < last {
        (&t[first..point], &t[point + 1..=last])
    } else {
        (&t[first..=last], &t[..0])
    };
    let exp = if last < point {
        (point - 1 - last) as i64
    } else {
        -((last - point) as i64)
    };
    Some(Some(Significant {
        negative,
        digits,
        exp,
    }))
}

/// A nonzero decimal's canonical parts: `[-]digits e exp`.
pub(crate) struct Significant<'a> {
    /// Below zero.
    pub negative: bool,
    /// The significant digits, in two slices around the point (the second may be empty).
    pub digits: (&'a [u8], &'a [u8]),
    /// The power of ten of the last digit.
    pub exp: i64,
}

/// The canonical form of a non-finite number's text (`NaN`, `Infinity`, `-inf`...),
/// the same a float NaN or infinity normalizes to as a decimal.
fn special_number(text: &str) -> Option<&'static [u8]> {
    match text.trim().to_ascii_lowercase().as_str() {
        "nan" | "+nan" | "-nan" => Some(b"NaN"),
        "inf" | "+inf" | "infinity" | "+infinity" => Some(b"inf"),
        "-inf" | "-infinity" => Some(b"-inf"),
        _ => None,
    }
}

fn float(value: Cell<'_>, out: &mut Vec<u8>) -> Result<(), String> {
    let f = match &value {
        Cell::Float(f) => *f,
        Cell::Int(i) => *i as f64,
        Cell::Text(s) | Cell::Decimal(s) => s.trim().parse::<f64>().map_err(|_| not_a(value, "a number"))?,
        _ => return Err(not_a(value, "a number")),
    };
    let f = if f == 0.0 {
        0.0
    } else if f.is_nan() {
        f64::NAN
    } else {
        f
    };
    out.extend_from_slice(&f.to_bits().to_be_bytes());
    Ok(())
}

fn boolean(value: Cell<'_>, out: &mut Vec<u8>) -> Result<(), String> {
    let b = match &value {
        Cell::Bool(b) => *b,
        Cell::Int(0) => false,
        Cell::Int(1) => true,
        Cell::Text(s) | Cell::Decimal(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" | "y" | "on" => true,
            "false" | "f" | "0" | "no" | "n" | "off" => false,
            _ => return Err(not_a(value, "a boolean")),
        },
        _ => return Err(not_a(value, "a boolean")),
    };
    out.push(if b { b'1' } else { b'0' });
    Ok(())
}

/// The instant PostgreSQL's `infinity` stands for: later than any real instant, and
/// far enough from the `i128` bounds for tolerance arithmetic.
const INFINITY_NANOS: i128 = i128::MAX / 4;

/// The instant MySQL's zero date (`0000-00-00 00:00:00`) stands for: equal only to
/// itself, before any real instant and after `-infinity`.
const ZERO_DATE_NANOS: i128 = -(i128::MAX / 8);

/// Parses an instant: RFC 3339 or `YYYY-MM-DD[ T]HH:MM[:SS[.f]]` with an optional
/// offset (`Z`, `+hh`, `+hhmm`, `+hh:mm`) and an optional ` BC` (PostgreSQL's years
/// before year 1); a time without offset is UTC. `infinity`/`-infinity` and MySQL's zero
/// date are instants of their own. Returns nanoseconds since the Unix epoch.
pub fn parse_instant(text: &str) -> Option<i128> {
    parse_plain_instant(text.as_bytes()).or_else(|| parse_any_instant(text))
}

/// [`parse_instant`] by the general parsers alone.
fn parse_any_instant(text: &str) -> Option<i128> {
    let t = text.trim();
    match t.to_ascii_lowercase().as_str() {
        "infinity" | "+infinity" => return Some(INFINITY_NANOS),
        "-infinity" => return Some(-INFINITY_NANOS),
        _ => {}
    }
    if t.starts_with("0000-00-00")
        && t[10..]
            .trim_start_matches([' ', 'T'])
            .bytes()
            .all(|b| b"0:.".contains(&b))
    {
        return Some(ZERO_DATE_NANOS);
    }
    let (t, bc) = match t.strip_suffix(" BC") {
        Some(rest) => (rest.trim_end(), true),
        None => (t, false),
    };
    let dt = parse_datetime(t)?;
    let dt = if bc {
        use chrono::Datelike;
        dt.with_year(1 - dt.year())?
    } else {
        dt
    };
    Some(nanos(dt.timestamp(), dt.timestamp_subsec_nanos()))
}

/// The common forms of [`parse_instant`] without allocating:
/// `YYYY-MM-DD[ T]HH:MM:SS[.fraction][Z|±hh|±hhmm|±hh:mm]` with a four-digit year, one
/// to nine fraction digits and valid fields (a leap second is left to the full parser).
/// `None` for anything else, which [`parse_instant`] then parses in full.
pub(crate) fn parse_plain_instant(t: &[u8]) -> Option<i128> {
    // The fixed places are read from a 19-byte array: no bound is checked per digit.
    let head: &[u8; 19] = t.first_chunk()?;
    if head[4] != b'-'
        || head[7] != b'-'
        || !matches!(head[10], b' ' | b'T')
        || head[13] != b':'
        || head[16] != b':'
    {
        return None;
    }
    let two = |at: usize| num2(head[at], head[at + 1]);
    let (year, month, day) = (two(0)? * 100 + two(2)?, two(5)?, two(8)?);
    let (hour, minute, second) = (two(11)?, two(14)?, two(17)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut at = 19;
    let mut fraction = 0i64;
    if t.get(at) == Some(&b'.') {
        let start = at + 1;
        at = start;
        while let Some(digit) = t.get(at).map(|b| b.wrapping_sub(b'0')).filter(|d| *d < 10) {
            // Nine digits at most.
            if at - start == 9 {
                return None;
            }
            fraction = fraction * 10 + i64::from(digit);
            at += 1;
        }
        let digits = at - start;
        if digits == 0 {
            return None;
        }
        fraction *= 10i64.pow(9 - digits as u32);
    }
    let offset = match &t[at..] {
        [] | [b'Z'] => 0,
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (hours, minutes) = match rest {
                [h1, h2] => (num2(*h1, *h2)?, 0),
                [h1, h2, m1, m2] | [h1, h2, b':', m1, m2] => (num2(*h1, *h2)?, num2(*m1, *m2)?),
                _ => return None,
            };
            if hours > 23 || minutes > 59 {
                return None;
            }
            let secs = hours * 3600 + minutes * 60;
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(nanos(secs, fraction as u32))
}

fn num2(a: u8, b: u8) -> Option<i64> {
    (a.is_ascii_digit() && b.is_ascii_digit()).then(|| i64::from(a - b'0') * 10 + i64::from(b - b'0'))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// [`parse_instant`] without the special values: the time in its own offset (UTC when
/// it has none).
fn parse_datetime(t: &str) -> Option<DateTime<chrono::FixedOffset>> {
    let mut s = t.to_string();
    if s.len() > 10 && s.as_bytes()[10] == b' ' {
        s.replace_range(10..11, "T");
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(&s) {
        return Some(dt);
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M%#z"] {
        if let Ok(dt) = DateTime::parse_from_str(&s, fmt) {
            return Some(dt);
        }
    }
    let naive = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|fmt| NaiveDateTime::parse_from_str(&s, fmt).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(&s, "%Y-%m-%d")
                .ok()
                .map(|d| d.and_time(NaiveTime::MIN))
        })?;
    Some(naive.and_utc().fixed_offset())
}

fn nanos(secs: i64, sub: u32) -> i128 {
    secs as i128 * 1_000_000_000 + sub as i128
}

/// The instant a value holds, in nanoseconds since the Unix epoch: text as
/// [`parse_instant`], numbers (and numeric text) as epoch seconds.
pub fn instant_of(value: &Value) -> Option<i128> {
    instant_of_cell(value.cell())
}

/// [`instant_of`] for a borrowed cell.
pub fn instant_of_cell(value: Cell<'_>) -> Option<i128> {
    match &value {
        Cell::Int(secs) => Some(*secs as i128 * 1_000_000_000),
        Cell::Float(secs) if secs.is_finite() && secs.abs() < 1e11 => Some((secs * 1e9).round() as i128),
        Cell::Decimal(s) => epoch_seconds(s),
        Cell::Text(s) => parse_instant(s).or_else(|| epoch_seconds(s)),
        _ => None,
    }
}

fn epoch_seconds(text: &str) -> Option<i128> {
    let nanos = Decimal::parse(text)?.scaled(-9)?;
    (nanos.abs() < 100_000_000_000 * 1_000_000_000).then_some(nanos)
}

fn timestamp(value: Cell<'_>, out: &mut Vec<u8>) -> Result<(), String> {
    let n = instant_of_cell(value).ok_or_else(|| not_a(value, "a timestamp"))?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

fn date(value: Cell<'_>, out: &mut Vec<u8>) -> Result<(), String> {
    let canonical = match &value {
        Cell::Text(s) => canonical_date(s),
        _ => None,
    }
    .ok_or_else(|| not_a(value, "a date (YYYY-MM-DD)"))?;
    out.extend_from_slice(canonical.as_bytes());
    Ok(())
}

/// A date's canonical text: `YYYY-MM-DD` (a negative year before year 1, from
/// PostgreSQL's ` BC`), or `infinity`, `-infinity`, `0000-00-00` (MySQL's zero date).
fn canonical_date(text: &str) -> Option<String> {
    let t = text.trim();
    match t.to_ascii_lowercase().as_str() {
        "infinity" | "+infinity" => return Some("infinity".into()),
        "-infinity" => return Some("-infinity".into()),
        "0000-00-00" => return Some("0000-00-00".into()),
        _ => {}
    }
    let (t, bc) = match t.strip_suffix(" BC") {
        Some(rest) => (rest.trim_end(), true),
        None => (t, false),
    };
    let d = NaiveDate::parse_from_str(t, "%Y-%m-%d").ok()?;
    let d = if bc {
        use chrono::Datelike;
        d.with_year(1 - d.year())?
    } else {
        d
    };
    Some(d.to_string())
}

fn time(value: Cell<'_>, out: &mut Vec<u8>) -> Result<(), String> {
    let n = match &value {
        Cell::Text(s) => parse_time(s),
        _ => None,
    }
    .ok_or_else(|| not_a(value, "a time of day"))?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

/// A time as nanoseconds from midnight: `[-]H:MM[:SS[.fraction]]`, with any number of
/// hours, as MySQL's TIME (`-838:59:59` to `838:59:59`) and PostgreSQL's `24:00:00`
/// allow.
fn parse_time(text: &str) -> Option<i128> {
    let t = text.trim();
    let (negative, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let mut parts = t.splitn(3, ':');
    let digits = |s: &str, min: usize, max: usize| {
        (s.len() >= min && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<i128>().ok())
            .flatten()
    };
    let hours = digits(parts.next()?, 1, 9)?;
    let minutes = digits(parts.next()?, 2, 2).filter(|m| *m < 60)?;
    let (seconds, fraction) = match parts.next() {
        None => (0, 0),
        Some(rest) => {
            let (whole, frac) = rest.split_once('.').unwrap_or((rest, ""));
            let seconds = digits(whole, 2, 2).filter(|s| *s < 60)?;
            let fraction = if rest.contains('.') {
                let f = digits(frac, 1, 9)?;
                f * 10i128.pow(9 - frac.len() as u32)
            } else {
                0
            };
            (seconds, fraction)
        }
    };
    let n = ((hours * 60 + minutes) * 60 + seconds) * 1_000_000_000 + fraction;
    Some(if negative { -n } else { n })
}

/// A UUID's canonical form is its 16 bytes: compact to compare and to hash.
fn uuid(value: Cell<'_>, out: &mut Vec<u8>) -> Result<(), String> {
    let parsed = match &value {
        Cell::Bytes(b) if b.len() == 16 => {
            out.extend_from_slice(b);
            return Ok(());
        }
        Cell::Text(s) => uuid_bytes(s.as_bytes()).or_else(|| {
            let canonical = canonical_uuid(s)?;
            uuid_bytes(canonical.as_bytes())
        }),
        _ => None,
    };
    let bytes = parsed.ok_or_else(|| not_a(value, "a UUID"))?;
    out.extend_from_slice(&bytes);
    Ok(())
}

/// The bytes of a UUID in its hyphenated form, in either case; `None` for anything else.
/// Every row of a table keyed or keyed into by UUID passes here, so it reads the 32 digits
/// as four words of eight and converts each word at once.
pub(crate) fn uuid_bytes(text: &[u8]) -> Option<[u8; 16]> {
    let text: &[u8; 36] = text.try_into().ok()?;
    if text[8] != b'-' || text[13] != b'-' || text[18] != b'-' || text[23] != b'-' {
        return None;
    }
    // The places are constants within the 36 bytes: the chunks always exist.
    let word = |at: usize| text[at..].first_chunk().map_or(0, |w| u64::from_le_bytes(*w));
    let half = |at: usize| {
        text[at..]
            .first_chunk()
            .map_or(0, |w| u64::from(u32::from_le_bytes(*w)))
    };
    let halves = |a: usize, b: usize| half(a) | half(b) << 32;
    let words = [word(0), halves(9, 14), halves(19, 24), word(28)];
    let mut bytes = [0u8; 16];
    for (out, word) in bytes.chunks_exact_mut(4).zip(words) {
        out.copy_from_slice(&hex_word(word)?.to_le_bytes());
    }
    Some(bytes)
}

/// Eight hex digits (the first in the lowest byte of `word`) as the four bytes they spell,
/// the first in the lowest; `None` when a byte is not a hex digit. Every byte is handled
/// at once: below 0x80, a byte `b` is at least `lo` when `b + (0x80 - lo)` has its high
/// bit set, and above `hi` when `b + (0x7F - hi)` has, and no sum carries into the next
/// byte.
fn hex_word(word: u64) -> Option<u32> {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGHS: u64 = ONES << 7;
    if word & HIGHS != 0 {
        return None;
    }
    let within =
        |lo: u8, hi: u8| (word + ONES * u64::from(0x80 - lo)) & !(word + ONES * u64::from(0x7F - hi)) & HIGHS;
    let letters = within(b'a', b'f') | within(b'A', b'F');
    if (within(b'0', b'9') | letters) != HIGHS {
        return None;
    }
    // A digit's value is its low half; a letter's, its low half plus 9.
    let values = (word & (ONES * 0x0F)) + (letters >> 7) * 9;
    // Byte 2k becomes digit 2k's value times 16 plus digit 2k+1's; then the even bytes
    // close up.
    let pairs = ((values << 4) | (values >> 8)) & 0x00FF_00FF_00FF_00FF;
    let pairs = (pairs | (pairs >> 8)) & 0x0000_FFFF_0000_FFFF;
    Some((pairs | (pairs >> 16)) as u32)
}

fn bytes(value: Cell<'_>, out: &mut Vec<u8>) -> Result<(), String> {
    match &value {
        Cell::Bytes(b) => out.extend_from_slice(b),
        Cell::Text(s) | Cell::Decimal(s) | Cell::Json(s) => out.extend_from_slice(s.as_bytes()),
        other => out.extend_from_slice(other.to_plain_text().unwrap_or_default().as_bytes()),
    }
    Ok(())
}

fn json(value: Cell<'_>, out: &mut Vec<u8>) -> Result<(), String> {
    let parsed: serde_json::Value = match &value {
        Cell::Json(s) | Cell::Text(s) => {
            serde_json::from_str(s).map_err(|e| format!("{} is not JSON: {e}", describe(value)))?
        }
        Cell::Bytes(b) => {
            serde_json::from_slice(b).map_err(|e| format!("{} is not JSON: {e}", describe(value)))?
        }
        Cell::Decimal(s) => serde_json::from_str(s).map_err(|_| not_a(value, "JSON"))?,
        Cell::Int(i) => serde_json::Value::from(*i),
        Cell::Bool(b) => serde_json::Value::Bool(*b),
        Cell::Float(f) => serde_json::from_str(&f.to_string()).map_err(|_| not_a(value, "JSON"))?,
        Cell::Null => serde_json::Value::Null,
    };
    write_json(&parsed, out);
    Ok(())
}

/// Canonical JSON: object members sorted by key, no white space, numbers by exact
/// decimal value (`1.0` = `1`), array order kept.
fn write_json(value: &serde_json::Value, out: &mut Vec<u8>) {
    match &value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(serde_json::Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                write_json(v, out);
            }
            out.push(b'}');
        }
        serde_json::Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(v, out);
            }
            out.push(b']');
        }
        serde_json::Value::Number(n) => match Decimal::parse(&n.to_string()) {
            Some(d) => d.write_canonical(out),
            None => out.extend_from_slice(n.to_string().as_bytes()),
        },
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

/// Whether two non-NULL canonical values agree under the field's tolerance. Called only
/// when their bytes differ.
pub fn within_tolerance(rule: &FieldRule, owner: &[u8], replica: &[u8]) -> bool {
    let Some(tolerance) = rule.tolerance else {
        return false;
    };
    match (rule.ty, tolerance) {
        (FieldType::Integer | FieldType::Decimal, Tolerance::Absolute(t)) => {
            decimal_within(owner, replica, t, false)
        }
        (FieldType::Integer | FieldType::Decimal, Tolerance::Relative(t)) => {
            decimal_within(owner, replica, t, true)
        }
        (FieldType::Float, Tolerance::Absolute(t) | Tolerance::Relative(t)) => {
            let (Some(o), Some(r)) = (f64_of(owner), f64_of(replica)) else {
                return false;
            };
            let scale = if matches!(tolerance, Tolerance::Relative(_)) {
                o.abs()
            } else {
                1.0
            };
            (r - o).abs() <= t * scale
        }
        (FieldType::Timestamp | FieldType::Time, Tolerance::Seconds(t)) => {
            let (Some(o), Some(r)) = (i128_of(owner), i128_of(replica)) else {
                return false;
            };
            (r - o).abs() as f64 <= t * 1e9
        }
        _ => false,
    }
}

fn f64_of(bytes: &[u8]) -> Option<f64> {
    Some(f64::from_bits(u64::from_be_bytes(bytes.try_into().ok()?)))
}

fn i128_of(bytes: &[u8]) -> Option<i128> {
    Some(i128::from_be_bytes(bytes.try_into().ok()?))
}

/// `|r - o| <= t` (absolute) or `|r - o| <= t × |o|` (relative), exactly when the
/// numbers fit in 128 bits and in floating point otherwise.
fn decimal_within(owner: &[u8], replica: &[u8], tolerance: f64, relative: bool) -> bool {
    let (Some(o), Some(r), Some(t)) = (
        Decimal::from_canonical(owner),
        Decimal::from_canonical(replica),
        Decimal::from_f64(tolerance),
    ) else {
        return false;
    };
    let exact = (|| {
        if relative {
            // |r - o| <= t × |o|  at the exponent of t × o.
            let e = o.exp.min(r.exp).min(o.exp.checked_add(t.exp)?);
            let diff = r.scaled(e)?.checked_sub(o.scaled(e)?)?.checked_abs()?;
            let bound = t
                .scaled(t.exp)?
                .checked_mul(o.scaled(e.checked_sub(t.exp)?)?.checked_abs()?)?;
            Some(diff <= bound)
        } else {
            let e = o.exp.min(r.exp).min(t.exp);
            let diff = (r.scaled(e)?.checked_sub(o.scaled(e)?)?).checked_abs()?;
            Some(diff <= t.scaled(e)?)
        }
    })();
    // Beyond 128 bits a float would lose the difference: report it rather than miss it.
    exact.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator for the fast-path checks.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    /// The word-at-a-time UUID reader agrees with reading each digit pair by itself, for
    /// digits of either case and for every byte that is not one, at every place.
    #[test]
    fn uuids_read_by_words_as_by_digits() {
        let by_digits = |text: &[u8]| -> Option<[u8; 16]> {
            if text.len() != 36 || [8, 13, 18, 23].iter().any(|&i| text[i] != b'-') {
                return None;
            }
            let digits: Vec<u8> = text.iter().copied().filter(|&b| b != b'-').collect();
            if digits.len() != 32 {
                return None;
            }
            let mut bytes = [0; 16];
            for (byte, pair) in bytes.iter_mut().zip(digits.chunks(2)) {
                // `from_str_radix` takes a sign too.
                if !pair.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
            }
            Some(bytes)
        };
        let alphabet = b"0123456789abcdefABCDEF";
        let odd = [
            b'g', b'G', b'/', b':', b'@', b'`', b'-', b'+', b' ', 0, 0x7F, 0x80, 0xC3, 0xFF,
        ];
        let mut rng = Lcg(11);
        for round in 0..20_000 {
            let mut text: Vec<u8> = (0..36)
                .map(|i| {
                    if [8, 13, 18, 23].contains(&i) {
                        b'-'
                    } else {
                        alphabet[rng.below(alphabet.len() as u64) as usize]
                    }
                })
                .collect();
            if round % 2 == 1 {
                let at = rng.below(36) as usize;
                text[at] = odd[rng.below(odd.len() as u64) as usize];
            }
            assert_eq!(
                uuid_bytes(&text),
                by_digits(&text),
                "{:?}",
                String::from_utf8_lossy(&text)
            );
        }
        assert_eq!(uuid_bytes(b"ba24d28c-5515-90b6-1d8e-c4f602e84d4"), None);
    }

    #[test]
    fn the_fast_instant_parser_agrees_with_the_general_one() {
        let mut rng = Lcg(7);
        let mut fast = 0;
        for i in 0..20_000 {
            let year = if i % 7 == 0 {
                rng.below(10_000)
            } else {
                1900 + rng.below(200)
            };
            let (month, day) = (rng.below(14), rng.below(33));
            let (h, m, sec) = (rng.below(25), rng.below(61), rng.below(61));
            let sep = if rng.below(2) == 0 { ' ' } else { 'T' };
            let mut t = format!("{year:04}-{month:02}-{day:02}{sep}{h:02}:{m:02}:{sec:02}");
            match rng.below(4) {
                0 => {}
                _ => {
                    let digits = 1 + rng.below(10) as usize;
                    let f: String = (0..digits)
                        .map(|_| char::from(b'0' + rng.below(10) as u8))
                        .collect();
                    t.push('.');
                    t.push_str(&f);
                }
            }
            let sign = if rng.below(2) == 0 { '+' } else { '-' };
            let (oh, om) = (rng.below(25), rng.below(61));
            t.push_str(&match rng.below(7) {
                0 => String::new(),
                1 => "Z".into(),
                2 => format!("{sign}{oh:02}"),
                3 => format!("{sign}{oh:02}{om:02}"),
                4 => format!("{sign}{oh:02}:{om:02}"),
                5 => " BC".into(),
                _ => format!("{sign}{oh:02}:{om:02} "),
            });
            let quick = parse_plain_instant(t.as_bytes());
            if quick.is_some() {
                fast += 1;
                assert_eq!(quick, parse_any_instant(&t), "{t}");
            }
            assert_eq!(parse_instant(&t), parse_any_instant(&t), "{t}");
        }
        assert!(fast > 5_000, "{fast}");
        for t in [
            "2024-0a-05 09:03:30+00",
            "2024-03-05 09:03:3x+00",
            "+024-03-05 09:03:30",
            "2024-03-05 09:03:30.+00",
            "2024-03-05 09:03:30.1234567890+00",
            "2024-03-05 09:03:30.123456789012345678901234567890+00",
            "2024-03-05 09:03",
        ] {
            assert_eq!(parse_plain_instant(t.as_bytes()), None, "{t}");
        }
        assert_eq!(
            parse_plain_instant(b"2024-01-01 00:00:30.007919+00"),
            Some(1_704_067_230_007_919_000)
        );
    }

    #[test]
    fn the_fast_decimal_writers_agree_with_the_general_one() {
        let slow = |text: &str| {
            let mut out = Vec::new();
            Decimal::parse(text).map(|d| {
                d.write_canonical(&mut out);
                out
            })
        };
        let mut rng = Lcg(11);
        let alphabet = b"0000123456789.-";
        for _ in 0..20_000 {
            let len = rng.below(12) as usize;
            let text: String = (0..len)
                .map(|_| char::from(alphabet[rng.below(alphabet.len() as u64) as usize]))
                .collect();
            // Plain: an optional leading minus, digits (one at least) and one point at most.
            let body = text.strip_prefix('-').unwrap_or(&text);
            let plain = body.bytes().any(|b| b.is_ascii_digit())
                && body.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                && body.matches('.').count() <= 1;
            let mut out = Vec::new();
            assert_eq!(write_plain_decimal(text.as_bytes(), &mut out), plain, "{text:?}");
            if plain {
                assert_eq!(Some(out), slow(&text), "{text:?}");
            }
        }
        for text in [
            "0.00",
            "-0.0",
            "1234.50",
            "-0012.3400",
            "100",
            ".5",
            "5.",
            "-.50",
            "000",
        ] {
            let mut out = Vec::new();
            assert!(write_plain_decimal(text.as_bytes(), &mut out), "{text}");
            assert_eq!(Some(out), slow(text), "{text}");
        }
        for text in ["", ".", "-", "1e5", "+1", " 1", "1.2.3", "1-"] {
            assert!(!write_plain_decimal(text.as_bytes(), &mut Vec::new()), "{text}");
        }
        for i in [0, 1, -1, 10, 120, -1200, 7, i64::MAX, i64::MIN, 1_000_000] {
            let mut out = Vec::new();
            write_int_canonical(i, &mut out);
            assert_eq!(Some(out), slow(&i.to_string()), "{i}");
        }
    }

    fn canon(value: Value, ty: FieldType) -> Result<Option<Vec<u8>>, String> {
        let mut out = Vec::new();
        match normalize(&value, &FieldRule::exact(ty), &mut out)? {
            Normalized::Null => Ok(None),
            Normalized::Value => Ok(Some(out)),
        }
    }

    fn same(a: Value, b: Value, ty: FieldType) -> bool {
        canon(a, ty).unwrap() == canon(b, ty).unwrap()
    }

    fn t(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn decimals_compare_by_value() {
        use FieldType::Decimal as D;
        assert!(same(t("10.5"), t("10.50"), D));
        assert!(same(t("1.50"), t("1.5000"), D));
        assert!(!same(t("1.5"), t("1.5001"), D));
        assert!(same(t("0"), t("-0.00"), D));
        assert!(same(t("100"), Value::Int(100), D));
        assert!(same(t("1e2"), t("100.0"), D));
        assert!(same(Value::Float(0.1), t("0.10"), D));
        assert!(same(Value::Float(10.5), Value::Decimal("10.50".into()), D));
        assert!(!same(t("100"), t("10"), D));
        assert!(same(
            t("123456789012345678901234567890.10"),
            t("123456789012345678901234567890.1"),
            D
        ));
        assert!(!same(
            t("123456789012345678901234567890.1"),
            t("123456789012345678901234567890.2"),
            D
        ));
        assert!(canon(t("ten"), D).unwrap_err().contains("not a decimal"));
        assert!(canon(t("10e9223372036854775807"), D).is_err());
        assert!(canon(t(""), D).is_err());
    }

    #[test]
    fn non_finite_numbers_compare_as_themselves() {
        use FieldType::{Decimal as D, Float as F};
        // PostgreSQL numeric NaN and ±Infinity, against each other and against floats.
        assert!(same(Value::Decimal("NaN".into()), Value::Float(f64::NAN), D));
        assert!(same(Value::Decimal("NaN".into()), t("nan"), D));
        assert!(same(
            Value::Decimal("Infinity".into()),
            Value::Float(f64::INFINITY),
            D
        ));
        assert!(same(
            Value::Decimal("-Infinity".into()),
            Value::Float(f64::NEG_INFINITY),
            D
        ));
        assert!(!same(Value::Decimal("Infinity".into()), t("-Infinity"), D));
        assert!(!same(Value::Decimal("NaN".into()), t("0"), D));
        assert!(same(t("Infinity"), Value::Float(f64::INFINITY), F));
        assert!(same(t("-Infinity"), Value::Float(f64::NEG_INFINITY), F));
        assert!(canon(t("Infinityx"), D).is_err());
    }

    #[test]
    fn times_beyond_a_day_and_negative_times() {
        use FieldType::Time;
        assert!(same(t("23:59:59.5"), t("23:59:59.500000"), Time));
        assert!(same(t("7:05"), t("07:05:00"), Time));
        // PostgreSQL's end of day, MySQL's durations.
        assert!(!same(t("24:00:00"), t("00:00:00"), Time));
        assert!(same(t("24:00:00"), t("24:00:00.000"), Time));
        assert!(same(t("838:59:59.5"), t("838:59:59.500000"), Time));
        assert!(!same(t("-12:30:00"), t("12:30:00"), Time));
        assert!(!same(t("10:00:00.000001"), t("10:00:00"), Time));
        for bad in [
            "10",
            "10:60",
            "10:00:61",
            "10:00:00.",
            "a:00",
            "10:00:00.1234567891",
        ] {
            assert!(canon(t(bad), Time).is_err(), "{bad}");
        }
    }

    #[test]
    fn infinite_bc_and_zero_timestamps_and_dates() {
        use FieldType::{Date, Timestamp as Ts};
        assert!(same(t("infinity"), t("Infinity"), Ts));
        assert!(!same(t("infinity"), t("-infinity"), Ts));
        assert!(!same(t("infinity"), t("9999-12-31 23:59:59"), Ts));
        assert!(same(
            t("0044-03-15 10:00:00+00 BC"),
            t("-0043-03-15T10:00:00Z"),
            Ts
        ));
        assert!(!same(
            t("0044-03-15 10:00:00+00 BC"),
            t("0044-03-15 10:00:00+00"),
            Ts
        ));
        assert!(same(
            t("0000-00-00 00:00:00"),
            t("0000-00-00 00:00:00.000000"),
            Ts
        ));
        assert!(!same(t("0000-00-00 00:00:00"), t("-infinity"), Ts));
        assert!(!same(t("0000-00-00 00:00:00"), t("0001-01-01 00:00:00"), Ts));
        assert!(same(t("0044-03-15 BC"), t("-0043-03-15"), Date));
        assert!(!same(t("0044-03-15 BC"), t("0044-03-15"), Date));
        assert!(same(t("infinity"), t("infinity"), Date));
        assert!(same(t("0000-00-00"), t(" 0000-00-00"), Date));
        assert!(!same(t("0000-00-00"), t("0001-01-01"), Date));
        // A tolerance across infinity neither overflows nor passes.
        let rule = FieldRule {
            tolerance: Some(Tolerance::Seconds(1.0)),
            ..FieldRule::exact(Ts)
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        normalize(&t("infinity"), &rule, &mut a).unwrap();
        normalize(&t("-infinity"), &rule, &mut b).unwrap();
        assert!(!within_tolerance(&rule, &a, &b));
    }

    #[test]
    fn null_is_distinct_from_empty_text() {
        assert_ne!(
            canon(Value::Null, FieldType::Text).unwrap(),
            canon(t(""), FieldType::Text).unwrap()
        );
    }

    #[test]
    fn text_rules() {
        let rule = FieldRule {
            trim: true,
            ignore_case: true,
            ..FieldRule::exact(FieldType::Text)
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        normalize(&t("  Shipped "), &rule, &mut a).unwrap();
        normalize(&t("shipped"), &rule, &mut b).unwrap();
        assert_eq!(a, b);
        assert!(!same(t("a "), t("a"), FieldType::Text));
        assert!(!same(t("A"), t("a"), FieldType::Text));
    }

    #[test]
    fn floats_and_booleans() {
        use FieldType::{Bool, Float};
        assert!(same(Value::Float(-0.0), t("0"), Float));
        assert!(same(t("NaN"), Value::Float(f64::NAN), Float));
        assert!(same(t("1.50"), Value::Float(1.5), Float));
        for yes in ["true", "t", "1", "TRUE", "yes"] {
            assert!(same(t(yes), Value::Bool(true), Bool), "{yes}");
        }
        assert!(same(t("f"), Value::Int(0), Bool));
        assert!(canon(t("maybe"), Bool).is_err());
    }

    #[test]
    fn timestamps_are_utc_instants() {
        use FieldType::Timestamp as Ts;
        assert!(same(
            t("2024-05-01T12:00:00+02:00"),
            t("2024-05-01T10:00:00Z"),
            Ts
        ));
        assert!(same(
            t("2024-05-01 10:00:00"),
            t("2024-05-01T10:00:00.000000Z"),
            Ts
        ));
        assert!(same(t("2024-05-01 12:00:00+02"), t("2024-05-01T10:00:00Z"), Ts));
        assert!(!same(
            t("2024-05-01T10:00:00.000001Z"),
            t("2024-05-01T10:00:00Z"),
            Ts
        ));
        assert!(canon(t("yesterday"), Ts).is_err());
    }

    #[test]
    fn dates_times_uuids_bytes() {
        assert!(same(t("2024-01-02"), t(" 2024-01-02"), FieldType::Date));
        assert!(same(t("10:00"), t("10:00:00.000"), FieldType::Time));
        assert!(same(
            t("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"),
            t("a0eebc999c0b4ef8bb6d6bb9bd380a11"),
            FieldType::Uuid
        ));
        assert!(same(Value::Bytes(b"abc".to_vec()), t("abc"), FieldType::Bytes));
    }

    #[test]
    fn uuids_in_every_accepted_form_are_their_16_bytes() {
        let bytes: Vec<u8> = (0..16u8).map(|i| i * 17).collect();
        let canonical = "00112233-4455-6677-8899-aabbccddeeff";
        for form in [
            canonical.to_owned(),
            canonical.to_uppercase(),
            format!("{{{canonical}}}"),
            canonical.replace('-', ""),
            format!(" {canonical} "),
        ] {
            assert_eq!(
                canon(t(&form), FieldType::Uuid),
                Ok(Some(bytes.clone())),
                "{form}"
            );
        }
        assert_eq!(
            canon(Value::Bytes(bytes.clone()), FieldType::Uuid),
            Ok(Some(bytes))
        );
        for bad in [
            "00112233-4455-6677-8899-aabbccddeefg",
            "00112233-4455-6677-8899-aabbccddeef",
            "0011223-34455-6677-8899-aabbccddeeff",
            "00112233+4455-6677-8899-aabbccddeeff",
            "",
        ] {
            assert!(canon(t(bad), FieldType::Uuid).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn appending_keeps_what_is_there_and_undoes_a_failure() {
        let mut out = b"kept".to_vec();
        assert!(normalize_append(t("x").cell(), &FieldRule::exact(FieldType::Integer), &mut out).is_err());
        assert_eq!(out, b"kept");
        normalize_append(t("10.50").cell(), &FieldRule::exact(FieldType::Decimal), &mut out).unwrap();
        let mut alone = Vec::new();
        normalize(&t("10.5"), &FieldRule::exact(FieldType::Decimal), &mut alone).unwrap();
        assert_eq!(out, [b"kept".as_slice(), &alone].concat());
    }

    #[test]
    fn json_by_value() {
        use FieldType::Json;
        assert!(same(
            t(r#"{"a":1,"b":[1,2]}"#),
            Value::Json(r#"{ "b": [1, 2], "a": 1.0 }"#.into()),
            Json
        ));
        assert!(!same(t("[1,2]"), t("[2,1]"), Json));
        assert!(same(t("null"), t(" null "), Json));
        assert_ne!(canon(Value::Null, Json).unwrap(), canon(t("null"), Json).unwrap());
        assert!(canon(t("{oops"), Json).unwrap_err().contains("not JSON"));
    }

    #[test]
    fn tolerances() {
        let check = |ty, tol, a: &str, b: &str| {
            let rule = FieldRule {
                tolerance: Some(tol),
                ..FieldRule::exact(ty)
            };
            let (mut x, mut y) = (Vec::new(), Vec::new());
            normalize(&t(a), &rule, &mut x).unwrap();
            normalize(&t(b), &rule, &mut y).unwrap();
            x == y || within_tolerance(&rule, &x, &y)
        };
        use FieldType::*;
        assert!(check(Decimal, Tolerance::Absolute(0.01), "10.00", "10.01"));
        assert!(!check(Decimal, Tolerance::Absolute(0.01), "10.00", "10.011"));
        assert!(check(Decimal, Tolerance::Relative(0.01), "100", "101"));
        assert!(!check(Decimal, Tolerance::Relative(0.01), "100", "101.01"));
        assert!(!check(Decimal, Tolerance::Relative(0.01), "0", "0.001"));
        assert!(check(Float, Tolerance::Absolute(0.5), "1.0", "1.4"));
        let big = "10000000000000000000000000000000000001";
        assert!(!check(Decimal, Tolerance::Absolute(0.01), "1e37", big));
        assert!(!check(
            Decimal,
            Tolerance::Relative(0.01),
            "1e-9223372036854775807",
            "5"
        ));
        let max = "170141183460469231731687303715884105727";
        assert!(!check(Decimal, Tolerance::Relative(1.0), max, &format!("-{max}")));
        assert!(check(
            Timestamp,
            Tolerance::Seconds(1.0),
            "2024-01-01T00:00:00Z",
            "2024-01-01T00:00:01Z"
        ));
        assert!(!check(
            Timestamp,
            Tolerance::Seconds(1.0),
            "2024-01-01T00:00:00Z",
            "2024-01-01T00:00:01.5Z"
        ));
    }
}
