//! The report wire format: one [`Record`] per inconsistency (a JSONL line, a CSV row) and
//! the job [`Summary`]. These types are the contract the README documents.
//!
//! A JSONL record: `{"kind": "mismatch", "key": {"id": 42}, "field": "amount",
//! "owner": 10.5, "replica": 10.4}`; `reason` when a value did not parse, `side` and
//! `count` for duplicate keys, `replica_key` for reference jobs with `row_key`.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::compare::Inconsistency;
use crate::source::value::hex_bytes;
use crate::source::{KeyPart, Value};

/// The version of the report format (records and summary).
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// Column names a job's records refer to.
#[derive(Clone, Debug, Default)]
pub struct ReportHeader {
    /// The job's name.
    pub job: String,
    /// Owner key column names, in key order.
    pub key_columns: Vec<String>,
    /// Compared field names (the owner's), by field index.
    pub fields: Vec<String>,
    /// The replica's own row key column names (reference jobs).
    pub replica_key_columns: Vec<String>,
}

/// One inconsistency as reports carry it.
#[derive(Serialize)]
pub struct Record<'a> {
    /// `missing_in_replica`, `missing_in_owner`, `mismatch`, `duplicate_key` or
    /// `dangling_reference`.
    pub kind: &'static str,
    /// The key, as an object of owner key column to value, in key order.
    pub key: KeyObject<'a>,
    /// The owner's name of the differing field (mismatches).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
    /// The owner's value (mismatches).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<JsonValue<'a>>,
    /// The replica's value (mismatches).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<JsonValue<'a>>,
    /// Why a value could not be compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// `owner` or `replica` (duplicate keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side: Option<&'static str>,
    /// How many rows share the key (duplicate keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    /// The replica row's own key (reference jobs with `row_key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_key: Option<ValuesObject<'a>>,
}

impl<'a> Record<'a> {
    /// The wire form of an inconsistency.
    pub fn new(header: &'a ReportHeader, finding: &'a Inconsistency) -> Record<'a> {
        Record {
            kind: finding.kind.name(),
            key: KeyObject {
                names: &header.key_columns,
                parts: &finding.key.0,
            },
            field: finding
                .field
                .and_then(|i| header.fields.get(i))
                .map(String::as_str),
            owner: finding.owner.as_ref().map(JsonValue),
            replica: finding.replica.as_ref().map(JsonValue),
            reason: finding.reason.as_deref(),
            side: finding.side.map(|s| s.name()),
            count: finding.count,
            replica_key: finding.replica_key.as_ref().map(|values| ValuesObject {
                names: &header.replica_key_columns,
                values,
            }),
        }
    }

    /// The key as CSV shows it: the plain value for a one-column key, else a JSON object.
    pub fn key_text(&self) -> String {
        match self.key.parts {
            [KeyPart::Int(i)] => i.to_string(),
            [KeyPart::Text(s)] => s.clone(),
            _ => serde_json::to_string(&self.key).unwrap_or_default(),
        }
    }
}

/// A key serialized as `{"column": value, ...}` in key order.
pub struct KeyObject<'a> {
    names: &'a [String],
    parts: &'a [KeyPart],
}

impl Serialize for KeyObject<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.parts.len()))?;
        for (name, part) in self.names.iter().zip(self.parts) {
            match part {
                KeyPart::Int(i) => map.serialize_entry(name, i)?,
                KeyPart::Text(s) => map.serialize_entry(name, s)?,
            }
        }
        map.end()
    }
}

/// Named values serialized as an object, in column order.
pub struct ValuesObject<'a> {
    names: &'a [String],
    values: &'a [Value],
}

impl Serialize for ValuesObject<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.values.len()))?;
        for (name, value) in self.names.iter().zip(self.values) {
            map.serialize_entry(name, &JsonValue(value))?;
        }
        map.end()
    }
}

/// A source value as JSON: numbers stay exact numbers, bytes become `\x` hex text, JSON
/// values are embedded as JSON, NULL is `null`.
pub struct JsonValue<'a>(pub &'a Value);

impl Serialize for JsonValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => serializer.serialize_none(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(i) => serializer.serialize_i64(*i),
            Value::Float(f) if f.is_finite() => serializer.serialize_f64(*f),
            Value::Float(f) => serializer.serialize_str(&f.to_string()),
            Value::Decimal(s) => match s.parse::<serde_json::Number>() {
                Ok(n) => n.serialize(serializer),
                Err(_) => serializer.serialize_str(s),
            },
            Value::Text(s) => serializer.serialize_str(s),
            Value::Bytes(b) => serializer.serialize_str(&hex_bytes(b)),
            Value::Json(s) => match serde_json::from_str::<serde_json::Value>(s) {
                Ok(v) => v.serialize(serializer),
                Err(_) => serializer.serialize_str(s),
            },
        }
    }
}

/// A job's outcome as `summary.json` carries it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    /// The report format version.
    pub schema_version: u32,
    /// The job's name.
    pub job: String,
    /// The recon version that wrote the report.
    pub tool_version: String,
    /// When the job started (RFC 3339, UTC).
    pub started_at: String,
    /// When the job finished (RFC 3339, UTC).
    pub finished_at: String,
    /// `consistent`, `inconsistent` or `failed`.
    pub status: Status,
    /// Why the job failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Rows read from the owner (a duplicate counted each time it is read).
    pub owner_rows: u64,
    /// Rows read from the replica.
    pub replica_rows: u64,
    /// Owner keys the replica lacks.
    pub missing_in_replica: u64,
    /// Replica keys the owner lacks.
    pub missing_in_owner: u64,
    /// Key pairs (reference jobs: replica rows) with at least one differing field.
    pub mismatched_rows: u64,
    /// Mismatches per owner field name, only fields with at least one.
    pub field_mismatches: FieldCounts,
    /// Each side and key that appears more than once.
    pub duplicate_keys: u64,
    /// Reference replica rows whose owner row does not exist.
    pub dangling_references: u64,
    /// Rows skipped because they changed within the staleness window.
    pub skipped_recent: u64,
    /// Inconsistencies that had converged when read again.
    pub resolved_in_flight: u64,
    /// True when more records were found than `[report] max_records` allows to write.
    pub truncated: bool,
    /// Records written to each report file.
    pub records_written: u64,
    /// The owner source, with credentials redacted.
    pub owner: String,
    /// The replica source, with credentials redacted.
    pub replica: String,
}

/// A job's status.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// No inconsistency found.
    Consistent,
    /// Inconsistencies found.
    Inconsistent,
    /// The job could not run to the end; its counts are incomplete.
    Failed,
}

/// Field name to mismatch count, serialized as an object in field order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldCounts(pub Vec<(String, u64)>);

impl Serialize for FieldCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, count) in &self.0 {
            map.serialize_entry(name, count)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::Kind;
    use crate::source::Key;

    #[test]
    fn records_keep_key_order_and_exact_numbers() {
        let header = ReportHeader {
            job: "j".into(),
            key_columns: vec!["zone".into(), "id".into()],
            fields: vec!["amount".into()],
            replica_key_columns: vec![],
        };
        let mut finding = Inconsistency::new(
            Kind::Mismatch,
            Key(vec![KeyPart::Text("eu".into()), KeyPart::Int(7)]),
        );
        finding.field = Some(0);
        finding.owner = Some(Value::Decimal("10.50".into()));
        finding.replica = Some(Value::Null);
        let record = Record::new(&header, &finding);
        assert_eq!(
            serde_json::to_string(&record).unwrap(),
            r#"{"kind":"mismatch","key":{"zone":"eu","id":7},"field":"amount","owner":10.50,"replica":null}"#
        );
        assert_eq!(record.key_text(), r#"{"zone":"eu","id":7}"#);
    }
}
