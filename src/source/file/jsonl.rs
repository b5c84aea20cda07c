//! JSON Lines files: one object per line, top-level members and configured JSON pointers
//! as columns, JSON types kept as [`Value`] variants. Rows are ordered by key through
//! `spill_sort`, since files need not be sorted. Errors name the physical line.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

use async_trait::async_trait;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value as Json;
use serde_json::value::RawValue;

use super::flat_json::{Names, flat_members};
use super::spill_sort::{SortedRows, SpillSorter};
use super::window::Window;
use super::{
    IndexedFile, READ_BUFFER, REREAD_BUFFER, ReadAt, RecordView, Scan, blocking, column_index, declare_types,
    key_error, key_part, open_error, recycle,
};
use crate::job::JsonlConfig;
use crate::source::value::Cell;
use crate::source::{Column, FieldType, Key, KeyPart, KeyType, Row, ScanSpec, Source, SourceError, Value};

/// How many non-blank lines `open` reads to learn the columns and their types.
const SAMPLE_LINES: usize = 1000;

/// A JSON Lines file. Columns are the top-level members of the first lines, in first-seen
/// order, then the configured pointer columns (a pointer column shadows a member of the
/// same name). A column declares a type when every sampled non-null value has it:
/// booleans `bool`, integers `integer`, numbers `decimal`, objects and arrays `json`.
pub struct JsonlSource {
    config: JsonlConfig,
    columns: Vec<Column>,
    scan: Option<Scan>,
    /// The last indexed scan and where it finds its columns.
    indexed: Option<(ScanSpec, Plan)>,
    /// A reader kept for reading single lines again.
    reread: Option<BufReader<ReadAt>>,
}

impl JsonlSource {
    /// Opens the file and samples its first lines to learn the columns.
    pub fn open(config: &JsonlConfig) -> Result<JsonlSource, SourceError> {
        for (name, pointer) in &config.columns {
            if !pointer.starts_with('/') {
                return Err(SourceError::Schema(format!(
                    "column `{name}`: JSON pointer {pointer:?} does not start with `/`"
                )));
            }
        }
        let mut lines = Lines::open(&config.path)?;
        let mut names: Vec<String> = Vec::new();
        let mut member_types: Vec<TypeSample> = Vec::new();
        let mut pointer_types = vec![TypeSample::Unseen; config.columns.len()];
        let mut sampled = 0;
        while sampled < SAMPLE_LINES {
            let Some((line, _, text)) = lines.next()? else {
                break;
            };
            sampled += 1;
            let members = parse_object(text, line, AllMembers)?;
            for (name, value) in &members {
                let i = match names.iter().position(|n| n == name) {
                    Some(i) => i,
                    None => {
                        names.push(name.clone());
                        member_types.push(TypeSample::Unseen);
                        names.len() - 1
                    }
                };
                member_types[i].observe(value);
            }
            for ((_, pointer), sample) in config.columns.iter().zip(&mut pointer_types) {
                let (first, rest) = split_pointer(pointer);
                let member = members.iter().rev().find(|(name, _)| *name == first);
                if let Some(value) = member.and_then(|(_, v)| v.pointer(rest)) {
                    sample.observe(value);
                }
            }
        }
        let pointer_type = |name: &str| {
            let i = config.columns.iter().position(|(n, _)| n == name)?;
            Some(pointer_types[i])
        };
        let mut columns: Vec<Column> = names
            .into_iter()
            .zip(member_types)
            .map(|(name, sample)| Column {
                declared: pointer_type(&name).unwrap_or(sample).declared(),
                name,
                unsupported: None,
            })
            .collect();
        for ((name, _), sample) in config.columns.iter().zip(&pointer_types) {
            if !columns.iter().any(|c| c.name == *name) {
                columns.push(Column {
                    name: name.clone(),
                    declared: sample.declared(),
                    unsupported: None,
                });
            }
        }
        declare_types(&mut columns, &config.types)?;
        Ok(JsonlSource {
            config: config.clone(),
            columns,
            scan: None,
            indexed: None,
            reread: None,
        })
    }

    /// Where each of the scan's key columns, then other columns, is found in a line.
    fn plan(&self, spec: &ScanSpec) -> Result<Plan, SourceError> {
        let (mut members, mut lookups) = (Vec::new(), Vec::new());
        for name in spec.key.iter().chain(&spec.columns) {
            column_index(&self.columns, name)?;
            let pointer = self.config.columns.iter().find(|(n, _)| n == name);
            let (member, rest) = match pointer {
                Some((_, pointer)) => {
                    let (first, rest) = split_pointer(pointer);
                    (first, Some(rest.to_owned()))
                }
                None => (name.clone(), None),
            };
            let slot = match members.iter().position(|m| *m == member) {
                Some(slot) => slot,
                None => {
                    members.push(member);
                    members.len() - 1
                }
            };
            lookups.push(Lookup { slot, rest });
        }
        let direct = lookups.len() == members.len() && lookups.iter().all(|l| l.rest.is_none());
        Ok(Plan {
            names: Names::new(&members),
            members,
            lookups,
            direct,
        })
    }

    /// Reads the whole file into a sorter: blocking work.
    fn read_sorted(&self, spec: &ScanSpec, plan: &Plan) -> Result<SortedRows, SourceError> {
        let mut lines = Lines::open(&self.config.path)?;
        let mut sorter = SpillSorter::new(spec.memory_budget);
        while let Some((line, _, text)) = lines.next()? {
            sorter.push(row_of(spec, plan, line, text)?)?;
        }
        sorter.finish()
    }
}

/// The members `plan` wants from one line, borrowed from it, into `slots` (one per
/// member): a flat object's values are read directly (see [`flat_members`]); any other
/// line goes through serde_json, which leaves each member as its JSON text
/// ([`Cell::Json`]). A member the line lacks is null.
fn members<'a>(plan: &Plan, line: u64, text: &'a str, slots: &mut Vec<Cell<'a>>) -> Result<(), SourceError> {
    slots.clear();
    slots.resize(plan.members.len(), Cell::Null);
    if flat_members(text, &plan.names, slots) {
        return Ok(());
    }
    slots.fill(Cell::Null);
    let seed = WantedMembers {
        members: &plan.members,
        slots,
    };
    parse_object(text, line, seed)
}

/// The key parts one line holds, for the scan `spec`, into reused `parts` (one per key
/// column): an integer or a text key is taken from the line's text without decoding a
/// value, with the same result as [`key_part`] of the decoded value.
#[inline]
fn fill_key(
    spec: &ScanSpec,
    plan: &Plan,
    slots: &[Cell<'_>],
    line: u64,
    parts: &mut [KeyPart],
) -> Result<(), SourceError> {
    for (n, (lookup, part)) in plan.lookups[..spec.key.len()].iter().zip(parts).enumerate() {
        let ty = spec.key_types.get(n).copied().unwrap_or(KeyType::Text);
        match (ty, lookup.cell(slots), &mut *part) {
            (KeyType::Integer, Some(Cell::Int(i)), _) => *part = KeyPart::Int(i),
            (KeyType::Text, Some(Cell::Text(t)), KeyPart::Text(s)) if !t.is_empty() => {
                s.clear();
                s.push_str(t);
            }
            _ => *part = decoded_key_part(spec, lookup, slots, line, n)?,
        }
    }
    Ok(())
}

/// Key part `n` of a line, through its decoded value.
#[cold]
#[inline(never)]
fn decoded_key_part(
    spec: &ScanSpec,
    lookup: &Lookup,
    slots: &[Cell<'_>],
    line: u64,
    n: usize,
) -> Result<KeyPart, SourceError> {
    let ty = spec.key_types.get(n).copied().unwrap_or(KeyType::Text);
    key_part(lookup.value(slots, line)?, ty).map_err(|reason| key_error(&reason, line, &spec.key[n]))
}

/// The row one line holds, for the scan `spec` as `plan` finds its columns.
fn row_of(spec: &ScanSpec, plan: &Plan, line: u64, text: &str) -> Result<Row, SourceError> {
    let mut slots = Vec::new();
    members(plan, line, text, &mut slots)?;
    let values = plan.lookups[spec.key.len()..]
        .iter()
        .map(|lookup| lookup.value(&slots, line))
        .collect::<Result<_, _>>()?;
    let mut key = vec![KeyPart::Int(0); spec.key.len()];
    fill_key(spec, plan, &slots, line, &mut key)?;
    Ok(Row {
        key: Key(key),
        values,
    })
}

impl IndexedFile for JsonlSource {
    fn index(
        &mut self,
        spec: &ScanSpec,
        visit: &mut dyn FnMut(RecordView<'_>) -> Result<(), SourceError>,
    ) -> Result<(), SourceError> {
        let plan = self.plan(spec)?;
        let mut lines = Lines::open(&self.config.path)?;
        let value_lookups = &plan.lookups[spec.key.len()..];
        // Values that are not their own JSON text (an escaped string, an array, a
        // pointer into a member), decoded.
        let mut decoded: Vec<Value> = vec![Value::Null; value_lookups.len()];
        let mut recycled_slots: Vec<Cell<'static>> = Vec::new();
        let mut recycled: Vec<Cell<'static>> = Vec::with_capacity(value_lookups.len());
        let mut undecoded = Vec::new();
        let mut key = vec![KeyPart::Int(0); spec.key.len()];
        while let Some((line, start, text)) = lines.next()? {
            let mut slots = recycle(std::mem::take(&mut recycled_slots));
            members(&plan, line, text, &mut slots)?;
            fill_key(spec, &plan, &slots, line, &mut key)?;
            // Each value column its own member, none of them left as JSON text: the
            // slots are the values, with nothing to copy.
            let values = &slots[spec.key.len()..];
            if plan.direct && !values.iter().any(|cell| matches!(cell, Cell::Json(_))) {
                visit(RecordView {
                    locator: start,
                    key: &key,
                    values,
                })?;
                recycled_slots = recycle(slots);
                continue;
            }
            let mut cells = recycle(std::mem::take(&mut recycled));
            undecoded.clear();
            for (n, (lookup, decoded)) in value_lookups.iter().zip(decoded.iter_mut()).enumerate() {
                match lookup.cell(&slots) {
                    Some(cell) => cells.push(cell),
                    None => {
                        *decoded = lookup.value(&slots, line)?;
                        cells.push(Cell::Null);
                        undecoded.push(n);
                    }
                }
            }
            // Decoded values are borrowed once they are all in place.
            for &n in &undecoded {
                cells[n] = decoded[n].cell();
            }
            visit(RecordView {
                locator: start,
                key: &key,
                values: &cells,
            })?;
            recycled = recycle(cells);
            recycled_slots = recycle(slots);
        }
        self.indexed = Some((spec.clone(), plan));
        Ok(())
    }

    fn byte_size(&self) -> Option<u64> {
        std::fs::metadata(&self.config.path).ok().map(|m| m.len())
    }

    fn read_at(&mut self, locator: u64) -> Result<Row, SourceError> {
        let (spec, plan) = self
            .indexed
            .as_ref()
            .ok_or(SourceError::Unsupported("reading before indexing"))?;
        let reread_error = |e: &dyn fmt::Display| {
            SourceError::Read(format!("cannot read a line again at byte {locator}: {e}"))
        };
        let input = match &mut self.reread {
            Some(input) => input,
            None => {
                let file = File::open(&self.config.path).map_err(|e| open_error(&self.config.path, e))?;
                self.reread
                    .insert(BufReader::with_capacity(REREAD_BUFFER, ReadAt::new(file)))
            }
        };
        input
            .seek(SeekFrom::Start(locator))
            .map_err(|e| reread_error(&e))?;
        let mut buffer = Vec::new();
        input
            .read_until(b'\n', &mut buffer)
            .map_err(|e| reread_error(&e))?;
        let start = if locator == 0 && buffer.starts_with(b"\xEF\xBB\xBF") {
            3
        } else {
            0
        };
        let text = std::str::from_utf8(&buffer[start..]).map_err(|e| reread_error(&e))?;
        row_of(spec, plan, 0, text).map_err(|e| reread_error(&e))
    }
}

#[async_trait]
impl Source for JsonlSource {
    fn describe(&self) -> String {
        format!("jsonl {}", self.config.path.display())
    }

    fn columns(&self) -> &[Column] {
        &self.columns
    }

    async fn scan(&mut self, spec: &ScanSpec) -> Result<(), SourceError> {
        self.scan = None;
        let plan = self.plan(spec)?;
        let rows = blocking(|| self.read_sorted(spec, &plan))?;
        self.scan = Some(Scan {
            rows,
            page_size: spec.page_size,
        });
        Ok(())
    }

    async fn next_page(&mut self) -> Result<Option<Vec<Row>>, SourceError> {
        match &mut self.scan {
            Some(scan) => scan.next_page(),
            None => Ok(None),
        }
    }

    fn as_indexed(&mut self) -> Option<&mut dyn IndexedFile> {
        Some(self)
    }
}

/// The top-level members a scan needs, and where each column is found among them.
struct Plan {
    /// Member names; a member's position is its slot.
    members: Vec<String>,
    /// The same, for the flat reader.
    names: Names,
    /// Key columns, then the other columns, in scan order.
    lookups: Vec<Lookup>,
    /// Whether every column is a member of its own, with no pointer below it: column
    /// `n` is then slot `n`.
    direct: bool,
}

/// A column's place in a line: a top-level member, or a pointer within one.
struct Lookup {
    slot: usize,
    /// The pointer's remainder below the member (`None`: the member itself).
    rest: Option<String>,
}

impl Lookup {
    /// The column's value borrowed from the line, when it needs no decoding: a member
    /// the flat reader read, or one whose JSON text is the value (null, a boolean, a
    /// number, a string without escapes). `None` otherwise.
    #[inline(always)]
    fn cell<'a>(&self, slots: &[Cell<'a>]) -> Option<Cell<'a>> {
        if self.rest.is_some() {
            return None;
        }
        match slots[self.slot] {
            Cell::Json(raw) => raw_cell(raw),
            cell => Some(cell),
        }
    }

    /// The column's value, decoded.
    fn value(&self, slots: &[Cell<'_>], line: u64) -> Result<Value, SourceError> {
        if let Some(cell) = self.cell(slots) {
            return Ok(cell.to_value());
        }
        let raw = match slots[self.slot] {
            Cell::Json(raw) => raw,
            // A pointer into a scalar: the scalar itself, or nothing below it.
            cell => {
                return Ok(match self.rest.as_deref() {
                    None | Some("") => cell.to_value(),
                    Some(_) => Value::Null,
                });
            }
        };
        let json: Json = serde_json::from_str(raw)
            .map_err(|e| SourceError::Read(format!("line {line}: invalid JSON: {e}")))?;
        Ok(match &self.rest {
            None => to_value(json),
            Some(rest) => json.pointer(rest).cloned().map_or(Value::Null, to_value),
        })
    }
}

/// The value a member's JSON text is, when it needs no decoding: null, a boolean, a
/// number, or a string without escapes. As serde_json reads a number: an integer when it
/// fits an i64, else its text (which serde_json spells again only when it has an
/// exponent).
fn raw_cell(raw: &str) -> Option<Cell<'_>> {
    let text = raw.trim_ascii();
    Some(match text.as_bytes().first()? {
        b'n' => Cell::Null,
        b't' => Cell::Bool(true),
        b'f' => Cell::Bool(false),
        b'"' => {
            // Valid JSON: the string ends with the quote.
            let inner = text[1..].strip_suffix('"')?;
            if inner.contains('\\') {
                return None;
            }
            Cell::Text(inner)
        }
        b'[' | b'{' => return None,
        _ => match text.parse::<i64>() {
            Ok(i) => Cell::Int(i),
            Err(_) if text.bytes().any(|b| b == b'e' || b == b'E') => return None,
            Err(_) => Cell::Decimal(text),
        },
    })
}

/// Converts a JSON value into the shared vocabulary.
pub(super) fn to_value(json: Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Decimal(n.to_string()),
        },
        Json::String(s) => Value::Text(s),
        other @ (Json::Array(_) | Json::Object(_)) => Value::Json(other.to_string()),
    }
}

/// Splits a pointer (`/a~1b/c`) into its first token, unescaped (`a/b`), and the pointer
/// below it (`/c`).
fn split_pointer(pointer: &str) -> (String, &str) {
    let tail = pointer.strip_prefix('/').unwrap_or(pointer);
    let (first, rest) = match tail.find('/') {
        Some(i) => tail.split_at(i),
        None => (tail, ""),
    };
    (first.replace("~1", "/").replace("~0", "~"), rest)
}

/// What the sampled values of a column have been so far.
#[derive(Clone, Copy, PartialEq)]
enum TypeSample {
    Unseen,
    Bool,
    Integer,
    Decimal,
    Json,
    Mixed,
}

impl TypeSample {
    fn observe(&mut self, value: &Json) {
        let kind = match value {
            Json::Null => return,
            Json::Bool(_) => TypeSample::Bool,
            Json::Number(n) if n.as_i64().is_some() => TypeSample::Integer,
            Json::Number(_) => TypeSample::Decimal,
            Json::String(_) => TypeSample::Mixed,
            Json::Array(_) | Json::Object(_) => TypeSample::Json,
        };
        *self = match (*self, kind) {
            (TypeSample::Unseen, kind) => kind,
            (seen, kind) if seen == kind => seen,
            (TypeSample::Integer, TypeSample::Decimal) | (TypeSample::Decimal, TypeSample::Integer) => {
                TypeSample::Decimal
            }
            _ => TypeSample::Mixed,
        };
    }

    fn declared(self) -> Option<FieldType> {
        match self {
            TypeSample::Bool => Some(FieldType::Bool),
            TypeSample::Integer => Some(FieldType::Integer),
            TypeSample::Decimal => Some(FieldType::Decimal),
            TypeSample::Json => Some(FieldType::Json),
            TypeSample::Unseen | TypeSample::Mixed => None,
        }
    }
}

/// The file's non-blank lines, read into one reused buffer.
struct Lines {
    window: Window<File>,
    /// The number of the line last returned.
    line: u64,
}

impl Lines {
    fn open(path: &Path) -> Result<Lines, SourceError> {
        let file = File::open(path).map_err(|e| open_error(path, e))?;
        Ok(Lines {
            window: Window::new(file, READ_BUFFER, 0),
            line: 0,
        })
    }

    /// The next non-blank line: its 1-based number, the byte offset it starts at, and its
    /// text (with its line break); `None` at the end.
    fn next(&mut self) -> Result<Option<(u64, u64, &str)>, SourceError> {
        let (start, end) = loop {
            let unread = self.window.unread();
            let len = match memchr::memchr(b'\n', unread) {
                Some(n) => n + 1,
                None if !self.window.eof => {
                    let line = self.line + 1;
                    self.window
                        .fill()
                        .map_err(|e| SourceError::Read(format!("line {line}: {e}")))?;
                    continue;
                }
                None if unread.is_empty() => return Ok(None),
                None => unread.len(),
            };
            self.line += 1;
            let bom = if self.line == 1 && unread.starts_with(b"\xEF\xBB\xBF") {
                3
            } else {
                0
            };
            let blank = unread[bom..len].trim_ascii().is_empty();
            let start = self.window.pos;
            self.window.pos += len;
            if !blank {
                break (start + bom, start + len);
            }
        };
        let line = self.line;
        let offset = self.window.offset + (start as u64);
        let text = simdutf8::basic::from_utf8(&self.window.buf[start..end])
            .map_err(|_| SourceError::Read(format!("line {line}: invalid UTF-8")))?;
        Ok(Some((line, offset, text)))
    }
}

/// Parses one line as a JSON object through `seed`; anything else is an error naming the line.
fn parse_object<'a, S: DeserializeSeed<'a>>(
    text: &'a str,
    line: u64,
    seed: S,
) -> Result<S::Value, SourceError> {
    let invalid = |e: serde_json::Error| SourceError::Read(format!("line {line}: invalid JSON: {e}"));
    let first = text.as_bytes().trim_ascii_start().first().copied();
    if first != Some(b'{') {
        serde_json::from_str::<IgnoredAny>(text).map_err(invalid)?;
        let found = match first {
            Some(b'[') => "an array",
            Some(b'"') => "a string",
            Some(b't' | b'f') => "a boolean",
            Some(b'n') => "null",
            _ => "a number",
        };
        return Err(SourceError::Read(format!(
            "line {line}: expected a JSON object, found {found}"
        )));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let value = seed.deserialize(&mut de).map_err(invalid)?;
    de.end().map_err(invalid)?;
    Ok(value)
}

/// Every member of an object, in order (serde_json's own map would sort them).
struct AllMembers;

impl<'de> DeserializeSeed<'de> for AllMembers {
    type Value = Vec<(String, Json)>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for AllMembers {
    type Value = Vec<(String, Json)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry::<String, Json>()? {
            members.push(member);
        }
        Ok(members)
    }
}

/// Finds the members a scan needs, keeping each one's JSON text, and skips the rest.
struct WantedMembers<'s, 'de> {
    members: &'s [String],
    slots: &'s mut [Cell<'de>],
}

impl<'de> DeserializeSeed<'de> for WantedMembers<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for WantedMembers<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(slot) = map.next_key_seed(MemberSlot(self.members))? {
            match slot {
                Some(slot) => self.slots[slot] = Cell::Json(map.next_value::<&'de RawValue>()?.get()),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A member name, looked up among the wanted members without allocating.
struct MemberSlot<'s>(&'s [String]);

impl<'de> DeserializeSeed<'de> for MemberSlot<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for MemberSlot<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|m| m == name))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use proptest::prelude::*;

    use super::super::test_support::{scan_all, spec};
    use super::*;

    fn config(dir: &tempfile::TempDir, content: &[u8], pointers: &[(&str, &str)]) -> JsonlConfig {
        let path = dir.path().join("data.jsonl");
        std::fs::write(&path, content).unwrap();
        JsonlConfig {
            path,
            columns: pointers
                .iter()
                .map(|(n, p)| (n.to_string(), p.to_string()))
                .collect(),
            types: Vec::new(),
        }
    }

    fn open(content: &str, pointers: &[(&str, &str)]) -> (tempfile::TempDir, JsonlSource) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(&dir, content.as_bytes(), pointers);
        let source = JsonlSource::open(&cfg).unwrap();
        (dir, source)
    }

    async fn scan_err(content: &[u8], key: (&str, KeyType)) -> String {
        let dir = tempfile::tempdir().unwrap();
        let mut source = JsonlSource::open(&config(&dir, b"{\"id\":1}\n", &[])).unwrap();
        std::fs::write(&source.config.path, content).unwrap();
        let spec = spec(&[key], &[], 10);
        scan_all(&mut source, &spec).await.unwrap_err().to_string()
    }

    /// Member texts: scalars a flat line holds and values only serde_json reads.
    fn member_text() -> impl Strategy<Value = String> {
        let fixed = prop_oneof![
            Just("null"),
            Just("true"),
            Just("false"),
            Just("\"\""),
            Just("\" \""),
            Just("\"x1\""),
            Just("\"12\""),
            Just("\" 12 \""),
            Just("\"a\\\"b\""),
            Just("\"\\u0031\""),
            Just("\"é\""),
            Just("\"326CA1C2-0000-4000-8000-00000000000A\""),
            Just("0"),
            Just("-0"),
            Just("-0.0"),
            Just("1.0"),
            Just("5439.07"),
            Just("1e3"),
            Just("-2E-2"),
            Just("9223372036854775807"),
            Just("9223372036854775808"),
            Just("-9223372036854775808"),
            Just("-9223372036854775809"),
            Just("123456789012345678901234567890"),
            Just("[1]"),
            Just("{\"a\":1}"),
        ]
        .prop_map(str::to_owned);
        prop_oneof![
            fixed,
            any::<i64>().prop_map(|i| i.to_string()),
            "[a-z0-9 ]{0,6}".prop_map(|t| format!("\"{t}\"")),
        ]
    }

    fn key_result(spec: &ScanSpec, plan: &Plan, text: &str, prior: &KeyPart) -> Result<KeyPart, String> {
        let mut slots = Vec::new();
        members(plan, 7, text, &mut slots).map_err(|e| e.to_string())?;
        // The same members as serde_json finds them, as JSON text.
        let mut texts = vec![Cell::Null; plan.members.len()];
        let seed = WantedMembers {
            members: &plan.members,
            slots: &mut texts,
        };
        parse_object(text, 7, seed).map_err(|e| e.to_string())?;
        let lookup = &plan.lookups[0];
        let cell = lookup.cell(&slots);
        if let Cell::Json(raw) = texts[0] {
            assert_eq!(cell.is_some(), raw_cell(raw).is_some(), "{text}");
            let json = serde_json::from_str(raw).expect("a member's text is JSON");
            assert_eq!(cell.map(|c| c.to_value()), cell.map(|_| to_value(json)), "{text}");
        }
        let mut parts = vec![prior.clone()];
        fill_key(spec, plan, &slots, 7, &mut parts).map_err(|e| e.to_string())?;
        Ok(parts.remove(0))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// A key part taken from a line's text is the one its decoded value makes, or
        /// fails the same way, whatever the slot held before; and the cells of a line read
        /// by the flat reader are those of its members' text as serde_json finds it.
        #[test]
        fn key_parts_from_the_text_are_those_of_the_decoded_value(
            value in member_text(),
            ty in prop_oneof![Just(KeyType::Integer), Just(KeyType::Text), Just(KeyType::Uuid)],
            prior in prop_oneof![Just(KeyPart::Int(5)), Just(KeyPart::Text("old".into()))],
            layout in 0..3usize,
        ) {
            let text = match layout {
                0 => format!("{{\"k\":{value}}}\n"),
                1 => format!("{{ \"x\": 1, \"k\" : {value} }}"),
                _ => format!("{{\"x\":[{value}]}}"),
            };
            let spec = spec(&[("k", ty)], &[], 10);
            let plan = Plan {
                members: vec!["k".into()],
                names: Names::new(&["k".into()]),
                lookups: vec![Lookup { slot: 0, rest: None }],
                direct: true,
            };
            let mut slots = Vec::new();
            members(&plan, 7, &text, &mut slots).unwrap();
            let expected = plan.lookups[0]
                .value(&slots, 7)
                .map_err(|e| e.to_string())
                .and_then(|v| key_part(v, ty).map_err(|reason| key_error(&reason, 7, "k").to_string()));
            prop_assert_eq!(key_result(&spec, &plan, &text, &prior), expected);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn columns_are_members_in_first_seen_order_then_pointers() {
        let (dir, source) = open(
            concat!(
                r#"{"id":1,"z":true,"n":1,"d":1,"o":{"a":1},"s":"x","m":1}"#,
                "\n\n",
                r#"{"id":2,"z":false,"n":-5,"d":2.50,"o":[1],"s":"y","m":"1","late":null,"p":{"q":{"r":7}}}"#,
                "\n"
            ),
            &[("r", "/p/q/r"), ("s", "/o/a")],
        );
        assert_eq!(
            source.describe(),
            format!("jsonl {}", dir.path().join("data.jsonl").display())
        );
        let columns: Vec<(&str, Option<FieldType>)> = source
            .columns()
            .iter()
            .map(|c| (c.name.as_str(), c.declared))
            .collect();
        use FieldType::*;
        assert_eq!(
            columns,
            [
                ("id", Some(Integer)),
                ("z", Some(Bool)),
                ("n", Some(Integer)),
                ("d", Some(Decimal)),
                ("o", Some(Json)),
                ("s", Some(Integer)),
                ("m", None),
                ("late", None),
                ("p", Some(Json)),
                ("r", Some(Integer)),
            ]
        );
    }

    #[test]
    fn a_missing_file_fails_to_open_with_the_os_reason() {
        let cfg = JsonlConfig {
            path: PathBuf::from("data/x.jsonl"),
            columns: Vec::new(),
            types: Vec::new(),
        };
        let err = JsonlSource::open(&cfg).err().unwrap();
        assert!(matches!(err, SourceError::Open(_)));
        assert!(
            err.to_string()
                .starts_with("cannot open data/x.jsonl: No such file or directory"),
            "{err}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn values_keep_their_json_types() {
        let (_dir, mut source) = open(
            concat!(
                r#"{"id":"b","v":1.50,"w":12345678901234567890123,"t":"x","o":{"b": [1, 2], "a": null}}"#,
                "\n",
                r#"{"id":"a","v":-3,"w":true,"t":"","o":null,"x":1}"#,
                "\n",
                r#"{"id":"c","v":1e3}"#,
                "\n"
            ),
            &[("deep", "/o/b/1"), ("whole", "/o")],
        );
        let spec = spec(
            &[("id", KeyType::Text)],
            &["v", "w", "t", "o", "deep", "whole"],
            10,
        );
        let rows = scan_all(&mut source, &spec).await.unwrap();
        let text = |s: &str| Value::Text(s.into());
        let dec = |s: &str| Value::Decimal(s.into());
        assert_eq!(rows[0].key, Key(vec![KeyPart::Text("a".into())]));
        assert_eq!(
            rows[0].values,
            [
                Value::Int(-3),
                Value::Bool(true),
                text(""),
                Value::Null,
                Value::Null,
                Value::Null
            ]
        );
        assert_eq!(
            rows[1].values,
            [
                dec("1.50"),
                dec("12345678901234567890123"),
                text("x"),
                Value::Json(r#"{"a":null,"b":[1,2]}"#.into()),
                Value::Int(2),
                Value::Json(r#"{"a":null,"b":[1,2]}"#.into()),
            ]
        );
        // serde_json keeps a number's digits but spells its exponent with a sign.
        assert_eq!(rows[2].values[0], dec("1e+3"));
        assert!(rows[2].values[1..].iter().all(Value::is_null));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_order_and_duplicates_keep_file_order() {
        let (_dir, mut source) = open(
            "{\"id\":10,\"s\":1}\n{\"id\":\"9\",\"s\":2}\n{\"id\":10,\"s\":3}\n{\"id\":-2,\"s\":4}\n",
            &[],
        );
        let rows = scan_all(&mut source, &spec(&[("id", KeyType::Integer)], &["s"], 1))
            .await
            .unwrap();
        let seq: Vec<&Value> = rows.iter().map(|r| &r.values[0]).collect();
        assert_eq!(
            seq,
            [&Value::Int(4), &Value::Int(2), &Value::Int(1), &Value::Int(3)]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pointer_columns_can_be_keys_and_shadow_members() {
        let (_dir, mut source) = open(
            "{\"k\":{\"a/b\":2},\"v\":{\"x\":\"p\"}}\n{\"k\":{\"a/b\":1},\"v\":{\"x\":\"q\"}}\n",
            &[("id", "/k/a~1b"), ("v", "/v/x")],
        );
        let spec = spec(&[("id", KeyType::Integer)], &["v", "k"], 10);
        let rows = scan_all(&mut source, &spec).await.unwrap();
        assert_eq!(rows[0].key, Key(vec![KeyPart::Int(1)]));
        assert_eq!(
            rows[0].values,
            [Value::Text("q".into()), Value::Json(r#"{"a/b":1}"#.into())]
        );
        assert_eq!(rows[1].values[0], Value::Text("p".into()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn errors_name_the_physical_line() {
        let int = ("id", KeyType::Integer);
        let err = scan_err(b"{\"id\":1}\n\n{\"id\":2}\n{\"id\":3,}\n", int).await;
        assert!(err.starts_with("line 4: invalid JSON: "), "{err}");
        let err = scan_err(b"{\"id\":1}\n{\"id\":2} x\n", int).await;
        assert!(
            err.starts_with("line 2: invalid JSON: trailing characters"),
            "{err}"
        );
        assert_eq!(
            scan_err(b"{\"id\":1}\n[1]\n", int).await,
            "line 2: expected a JSON object, found an array"
        );
        assert_eq!(
            scan_err(b"{\"id\":1}\n{\"id\":\"\xff\"}\n", int).await,
            "line 2: invalid UTF-8"
        );
        assert_eq!(
            scan_err(b"{\"id\":1}\n{\"id\":null}\n", int).await,
            "line 2: key column `id` is empty"
        );
        assert_eq!(
            scan_err(b"{\"id\":1}\n\n{}\n", ("id", KeyType::Text)).await,
            "line 3: key column `id` is empty"
        );
        assert_eq!(
            scan_err(b"{\"id\":1}\n{\"id\":\"x1\"}\n", int).await,
            "line 2: key column `id`: key \"x1\" is not an integer"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_fails_on_a_malformed_sampled_line_or_pointer() {
        let dir = tempfile::tempdir().unwrap();
        let err = JsonlSource::open(&config(&dir, b"{\"id\":1}\n42\n", &[]))
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "line 2: expected a JSON object, found a number");
        let err = JsonlSource::open(&config(&dir, b"{}\n", &[("a", "b")]))
            .err()
            .unwrap();
        assert!(matches!(err, SourceError::Schema(_)));
    }

    /// Indexing shows each line's key and values as reading the line as a row does: with
    /// every column a member of its own (where the slots are the values) and with a
    /// pointer column, for flat lines, a number left as its text, missing members and
    /// lines only serde_json reads.
    #[test]
    fn indexed_records_are_the_rows_of_their_lines() {
        let lines = [
            r#"{"id":1,"a":"x","b":2.50,"c":true}"#,
            r#"{"id":2,"a":"y","b":1e3,"c":null}"#,
            r#"{"id":3,"b":-7}"#,
            r#"{"id":4,"a":"q\"t","b":[1],"c":false}"#,
            r#"{ "id" : 5 , "a" : "s p" , "b" : 9223372036854775808 }"#,
            r#"{"id":6,"a":{"n":1},"b":"é","c":1}"#,
        ];
        let content = lines.join("\n") + "\n";
        for (pointers, columns) in [
            (&[][..], &["a", "b", "c"][..]),
            (&[("p", "/a/n")][..], &["a", "b", "c", "p"][..]),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let mut source = JsonlSource::open(&config(&dir, content.as_bytes(), pointers)).unwrap();
            let spec = spec(&[("id", KeyType::Integer)], columns, 10);
            let plan = source.plan(&spec).unwrap();
            assert_eq!(plan.direct, pointers.is_empty());
            let mut indexed = Vec::new();
            source
                .index(&spec, &mut |record| {
                    let values: Vec<Value> = record.values.iter().map(Cell::to_value).collect();
                    indexed.push((record.key.to_vec(), values));
                    Ok(())
                })
                .unwrap();
            let rows: Vec<(Vec<KeyPart>, Vec<Value>)> = (1..)
                .zip(lines)
                .map(|(line, text)| {
                    let row = row_of(&spec, &plan, line, text).unwrap();
                    (row.key.0, row.values)
                })
                .collect();
            assert_eq!(indexed, rows);
            assert_eq!(indexed[2].1[0], Value::Null, "a missing member");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_beyond_the_memory_budget_spills_and_stays_complete() {
        let dir = tempfile::tempdir().unwrap();
        let mut content = String::new();
        for i in 0..5000 {
            let id = (i * 7919) % 1201;
            content.push_str(&format!("{{\"id\":{id},\"seq\":{i},\"o\":{{\"a\":[{i}]}}}}\n"));
        }
        let mut source = JsonlSource::open(&config(&dir, content.as_bytes(), &[])).unwrap();
        let mut spec = spec(&[("id", KeyType::Integer)], &["seq", "o"], 333);
        let in_memory = scan_all(&mut source, &spec).await.unwrap();
        spec.memory_budget = 4096;
        let spilled = scan_all(&mut source, &spec).await.unwrap();
        assert!(source.scan.as_ref().is_some_and(|s| s.rows.is_spilled()));
        assert_eq!(spilled.len(), 5000);
        assert_eq!(spilled, in_memory);
        assert!(spilled.windows(2).all(|w| w[0].key <= w[1].key));
    }
}
