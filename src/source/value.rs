//! The one value vocabulary every backend hands rows over in. Backends convert their
//! native values into `Value` as faithfully as they can; normalization lives in `compare`.

use std::fmt;

/// A cell as read from a source, before normalization.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// SQL NULL, a JSON null or an absent member, or a CSV field read as NULL.
    Null,
    /// A boolean the source knows to be one.
    Bool(bool),
    /// An integer the source knows to be one.
    Int(i64),
    /// A binary floating-point number.
    Float(f64),
    /// An exact number in decimal text form (a JSON number, a SQL numeric).
    Decimal(String),
    /// Text, or any value whose type the source does not know (a CSV field).
    Text(String),
    /// Raw bytes (a BLOB).
    Bytes(Vec<u8>),
    /// JSON text the source knows to be JSON (a JSON object or array member).
    Json(String),
}

impl Value {
    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value as an operator would read it in a CSV cell; `None` for NULL.
    pub fn to_plain_text(&self) -> Option<String> {
        self.cell().to_plain_text()
    }

    /// True when both are the same variant holding the same bits: unlike `==`, `-0.0`
    /// is not identical to `0.0` (their text differs) and a NaN is identical to itself.
    pub fn is_identical(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            _ => self == other,
        }
    }
}

/// A value borrowed for normalization: a [`Value`]'s contents, or a file's text field
/// without copying it into one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cell<'a> {
    /// NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A binary floating-point number.
    Float(f64),
    /// An exact number in decimal text form.
    Decimal(&'a str),
    /// Text.
    Text(&'a str),
    /// Raw bytes.
    Bytes(&'a [u8]),
    /// JSON text.
    Json(&'a str),
}

impl Cell<'_> {
    /// True for [`Cell::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Cell::Null)
    }

    /// The value as an operator would read it in a CSV cell; `None` for NULL.
    pub fn to_plain_text(&self) -> Option<String> {
        match self {
            Cell::Null => None,
            Cell::Bool(b) => Some(b.to_string()),
            Cell::Int(i) => Some(i.to_string()),
            Cell::Float(f) => Some(f.to_string()),
            Cell::Decimal(s) | Cell::Text(s) | Cell::Json(s) => Some((*s).to_owned()),
            Cell::Bytes(b) => Some(hex_bytes(b)),
        }
    }
}

impl Cell<'_> {
    /// The value as an owned [`Value`].
    pub fn to_value(&self) -> Value {
        match *self {
            Cell::Null => Value::Null,
            Cell::Bool(b) => Value::Bool(b),
            Cell::Int(i) => Value::Int(i),
            Cell::Float(f) => Value::Float(f),
            Cell::Decimal(s) => Value::Decimal(s.to_owned()),
            Cell::Text(s) => Value::Text(s.to_owned()),
            Cell::Bytes(b) => Value::Bytes(b.to_vec()),
            Cell::Json(s) => Value::Json(s.to_owned()),
        }
    }
}

impl Value {
    /// The value borrowed as a [`Cell`].
    pub fn cell(&self) -> Cell<'_> {
        match self {
            Value::Null => Cell::Null,
            Value::Bool(b) => Cell::Bool(*b),
            Value::Int(i) => Cell::Int(*i),
            Value::Float(f) => Cell::Float(*f),
            Value::Decimal(s) => Cell::Decimal(s),
            Value::Text(s) => Cell::Text(s),
            Value::Bytes(b) => Cell::Bytes(b),
            Value::Json(s) => Cell::Json(s),
        }
    }
}

/// Bytes as PostgreSQL's hex form (`\x0aff`), used wherever bytes must become text.
pub fn hex_bytes(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("\\x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A UUID in canonical form (lower-case, hyphenated), accepting upper case, braces and
/// the 32-digit form without hyphens; `None` when the text is not a UUID.
pub fn canonical_uuid(text: &str) -> Option<String> {
    let t = text.trim();
    let t = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')).unwrap_or(t);
    let digits: Vec<u8> = t.bytes().filter(|b| *b != b'-').collect();
    let hyphens_ok =
        t.len() == 32 || (t.len() == 36 && [8, 13, 18, 23].iter().all(|&i| t.as_bytes()[i] == b'-'));
    if digits.len() != 32 || !hyphens_ok || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut out = String::with_capacity(36);
    for (i, d) in digits.iter().enumerate() {
        if matches!(i, 8 | 12 | 16 | 20) {
            out.push('-');
        }
        out.push(d.to_ascii_lowercase() as char);
    }
    Some(out)
}

/// The types a compared field can have (`type = "..."` in a job file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// Exact text, unless `trim` or `ignore_case` is set.
    Text,
    /// Whole numbers, by value.
    Integer,
    /// Exact decimal numbers, by value (`10.5` = `10.50`).
    Decimal,
    /// Binary floating point, by its shortest decimal form.
    Float,
    /// `true`/`t`/`1` and `false`/`f`/`0`.
    Bool,
    /// An instant; a time without offset is UTC.
    Timestamp,
    /// A calendar date.
    Date,
    /// A time of day.
    Time,
    /// A UUID, by value and case-insensitively.
    Uuid,
    /// Raw bytes; text compares as its UTF-8 bytes.
    Bytes,
    /// JSON by value: object key order and whitespace ignored.
    Json,
}

impl FieldType {
    /// Every type with its name in job files.
    pub const ALL: [(&'static str, FieldType); 11] = [
        ("text", FieldType::Text),
        ("integer", FieldType::Integer),
        ("decimal", FieldType::Decimal),
        ("float", FieldType::Float),
        ("bool", FieldType::Bool),
        ("timestamp", FieldType::Timestamp),
        ("date", FieldType::Date),
        ("time", FieldType::Time),
        ("uuid", FieldType::Uuid),
        ("bytes", FieldType::Bytes),
        ("json", FieldType::Json),
    ];

    /// Parses a job file's type name.
    pub fn from_name(name: &str) -> Option<FieldType> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
    }

    /// The type's name in job files and reports.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("text", |(n, _)| n)
    }

    /// When the two sides declare different types for one field, the more specific one
    /// wins, whichever side declares it: anything beats text and bytes, two numeric types
    /// compare as decimals, and otherwise a fixed ranking decides (a timestamp beats a
    /// number holding epoch seconds, a boolean beats an integer holding 0/1).
    pub fn more_specific(a: Option<FieldType>, b: Option<FieldType>) -> Option<FieldType> {
        use FieldType::*;
        let rank = |t: FieldType| match t {
            Text => 0,
            Bytes => 1,
            Integer => 2,
            Float => 3,
            Decimal => 4,
            Bool => 5,
            Date => 6,
            Time => 7,
            Timestamp => 8,
            Uuid => 9,
            Json => 10,
        };
        match (a, b) {
            (None, t) | (t, None) => t,
            (Some(Integer | Float | Decimal), Some(Integer | Float | Decimal)) if a != b => Some(Decimal),
            (Some(x), Some(y)) => Some(if rank(y) > rank(x) { y } else { x }),
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a key column is typed, which decides how keys sort: integers numerically,
/// text and UUIDs byte-wise (UUIDs in lower case, so `A` and `a` are one key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// Whole numbers, ordered numerically.
    Integer,
    /// Text, ordered byte-wise on its UTF-8 encoding.
    Text,
    /// UUIDs, lower-cased and ordered byte-wise.
    Uuid,
}

impl KeyType {
    /// The key type for a column whose declared (or resolved) field type is `t`.
    pub fn for_field_type(t: Option<FieldType>) -> KeyType {
        match t {
            Some(FieldType::Integer) => KeyType::Integer,
            Some(FieldType::Uuid) => KeyType::Uuid,
            _ => KeyType::Text,
        }
    }
}

/// One column of a key, typed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyPart {
    /// An integer key column.
    Int(i64),
    /// A text or UUID key column.
    Text(String),
}

impl KeyPart {
    /// Converts a raw value into a key column of type `ty`; `Err` says why it cannot be one.
    pub fn from_value(value: &Value, ty: KeyType) -> Result<KeyPart, String> {
        match (ty, value) {
            (_, Value::Null) => Err("key is empty (NULL)".into()),
            (KeyType::Integer, Value::Int(i)) => Ok(KeyPart::Int(*i)),
            (KeyType::Integer, Value::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e18 => {
                Ok(KeyPart::Int(*f as i64))
            }
            (KeyType::Integer, Value::Text(s) | Value::Decimal(s)) => {
                let t = s.trim();
                if t.is_empty() {
                    return Err("key is empty".into());
                }
                t.parse::<i64>()
                    .map(KeyPart::Int)
                    .map_err(|_| format!("key {s:?} is not an integer"))
            }
            (KeyType::Integer, other) => Err(format!("key {other:?} is not an integer")),
            (KeyType::Text, Value::Text(s)) if s.is_empty() => Err("key is empty".into()),
            (KeyType::Text, v) => match v.to_plain_text() {
                Some(s) if !s.is_empty() => Ok(KeyPart::Text(s)),
                _ => Err("key is empty".into()),
            },
            (KeyType::Uuid, v) => {
                let s = v.to_plain_text().unwrap_or_default();
                if s.is_empty() {
                    return Err("key is empty".into());
                }
                Ok(KeyPart::Text(canonical_uuid(&s).unwrap_or(s)))
            }
        }
    }

    /// The key column as a report value.
    pub fn to_value(&self) -> Value {
        match self {
            KeyPart::Int(i) => Value::Int(*i),
            KeyPart::Text(s) => Value::Text(s.clone()),
        }
    }
}

impl fmt::Display for KeyPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyPart::Int(i) => write!(f, "{i}"),
            KeyPart::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// A row's key: one part per key column, in the job's key order. Keys order
/// lexicographically, which is the order every source must yield rows in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Key(pub Vec<KeyPart>);

impl Key {
    /// Builds a key from the raw key column values.
    pub fn from_values(values: &[Value], types: &[KeyType]) -> Result<Key, String> {
        values
            .iter()
            .zip(types)
            .map(|(v, t)| KeyPart::from_value(v, *t))
            .collect::<Result<Vec<_>, _>>()
            .map(Key)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() == 1 {
            return write!(f, "{}", self.0[0]);
        }
        f.write_str("(")?;
        for (i, part) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{part}")?;
        }
        f.write_str(")")
    }
}

/// One row handed over by a source: its key and the requested columns' values, in the
/// order of [`crate::source::ScanSpec::columns`].
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The typed key.
    pub key: Key,
    /// Values of the scan's columns, in the scan's column order.
    pub values: Vec<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_keys_order_numerically_text_keys_byte_wise() {
        let k = |s: &str, t| Key::from_values(&[Value::Text(s.into())], &[t]).unwrap();
        assert!(k("9", KeyType::Integer) < k("10", KeyType::Integer));
        assert!(k("10", KeyType::Text) < k("9", KeyType::Text));
        assert!(k("B", KeyType::Text) < k("a", KeyType::Text));
        assert!(k("z", KeyType::Text) < k("é", KeyType::Text));
    }

    #[test]
    fn empty_and_null_keys_are_errors() {
        assert!(Key::from_values(&[Value::Null], &[KeyType::Integer]).is_err());
        assert!(Key::from_values(&[Value::Text(String::new())], &[KeyType::Text]).is_err());
        assert!(Key::from_values(&[Value::Text("x1".into())], &[KeyType::Integer]).is_err());
    }

    #[test]
    fn uuid_keys_ignore_case() {
        let a = Key::from_values(
            &[Value::Text("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11".into())],
            &[KeyType::Uuid],
        );
        let b = Key::from_values(
            &[Value::Text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into())],
            &[KeyType::Uuid],
        );
        assert_eq!(a, b);
    }

    #[test]
    fn the_more_specific_declared_type_wins() {
        use FieldType::*;
        assert_eq!(FieldType::more_specific(Some(Text), Some(Uuid)), Some(Uuid));
        assert_eq!(
            FieldType::more_specific(Some(Integer), Some(Decimal)),
            Some(Decimal)
        );
        assert_eq!(FieldType::more_specific(None, Some(Json)), Some(Json));
        assert_eq!(FieldType::more_specific(None, None), None);
        for (a, b) in [
            (Integer, Timestamp),
            (Bool, Integer),
            (Bytes, Text),
            (Date, Timestamp),
        ] {
            assert_eq!(
                FieldType::more_specific(Some(a), Some(b)),
                FieldType::more_specific(Some(b), Some(a)),
                "{a} vs {b} must not depend on the side"
            );
        }
    }
}
