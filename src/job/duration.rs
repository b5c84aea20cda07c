//! Durations in job files (`staleness = "5m"`, `recheck_after = "30s"`): whole numbers
//! with a unit, concatenated largest first or in any order (`1h30m`). No bare numbers.

use std::time::Duration;

/// The units a duration may use, with their length in milliseconds.
const UNITS: [(&str, u64); 5] = [
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

/// Parses a duration such as `500ms`, `30s`, `5m`, `1h`, `2d` or `1h30m`.
///
/// Every number needs a unit (`90` is an error, `90s` is not); numbers are whole and
/// non-negative. The error text says what was wrong and shows the accepted forms.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let hint = "expected a whole number and a unit (ms, s, m, h, d), e.g. `30s` or `1h30m`";
    let text = s.trim();
    if text.is_empty() {
        return Err(format!("empty duration; {hint}"));
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("invalid duration `{s}`; {hint}"));
        }
        let (number, after) = rest.split_at(digits);
        let letters = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(letters);
        if unit.is_empty() {
            let what = if after.is_empty() {
                "a unit is required"
            } else {
                "unexpected text"
            };
            return Err(format!("invalid duration `{s}`: {what}; {hint}"));
        }
        let Some((_, millis)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(format!("invalid duration `{s}`: unknown unit `{unit}`; {hint}"));
        };
        let part = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(*millis))
            .and_then(|ms| total.checked_add(ms));
        total = part.ok_or_else(|| format!("invalid duration `{s}`: too large"))?;
        rest = after;
    }
    Ok(Duration::from_millis(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_unit_and_combinations() {
        let cases = [
            ("500ms", 500),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("2d", 172_800_000),
            ("1h30m", 5_400_000),
            ("1m30s500ms", 90_500),
            ("0s", 0),
            (" 10s ", 10_000),
        ];
        for (text, millis) in cases {
            assert_eq!(parse_duration(text), Ok(Duration::from_millis(millis)), "{text}");
        }
    }

    #[test]
    fn rejects_bad_input_with_a_clear_message() {
        let cases = [
            ("90", "a unit is required"),
            ("", "empty duration"),
            ("5 m", "unexpected text"),
            ("5min", "unknown unit `min`"),
            ("1.5h", "unexpected text"),
            ("-1s", "invalid duration `-1s`"),
            ("h", "invalid duration `h`"),
            ("99999999999999999999d", "too large"),
        ];
        for (text, expected) in cases {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
            assert!(err.contains("e.g. `30s`") || err.contains("too large"), "{err}");
        }
    }
}
