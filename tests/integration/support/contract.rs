//! The `Source` contract, checked the same way against every backend: each backend test
//! writes [`ROWS`] in its own format and calls [`assert_source_contract`].

use recon::job::SourceDef;
use recon::source::{Key, KeyPart, KeyType, Row, ScanSpec, Value};

/// `(region, id, note)`: a composite key (text, integer) with mixed case, a trailing space,
/// non-ASCII text, integers that sort differently as text (9, 10, 100), one key twice,
/// and a note that is NULL (`None`) or the empty string.
pub const ROWS: &[(&str, i64, Option<&str>)] = &[
    ("eu", 10, Some("ten")),
    ("eu", 9, Some("")),
    ("é", 2, Some("accent")),
    ("EU", 1, Some("upper")),
    ("eu ", 3, Some("trailing space")),
    ("a", 100, None),
    ("eu", 9, None),
];

/// The key columns and the value column every backend's copy of [`ROWS`] has.
pub const KEY: [&str; 2] = ["region", "id"];
/// The non-key column.
pub const NOTE: &str = "note";

fn key(region: &str, id: i64) -> Key {
    Key(vec![KeyPart::Text(region.to_string()), KeyPart::Int(id)])
}

fn note(value: Option<&str>) -> Value {
    value.map_or(Value::Null, |s| Value::Text(s.to_string()))
}

/// [`ROWS`] in key order; rows sharing a key sorted by note, since their order is free.
fn expected() -> Vec<(Key, Value)> {
    let mut rows: Vec<(Key, Value)> = ROWS.iter().map(|(r, i, n)| (key(r, *i), note(*n))).collect();
    rows.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| format!("{:?}", a.1).cmp(&format!("{:?}", b.1)))
    });
    rows
}

fn spec(page_size: usize) -> ScanSpec {
    ScanSpec {
        key: KEY.iter().map(|s| s.to_string()).collect(),
        key_types: vec![KeyType::Text, KeyType::Integer],
        columns: vec![NOTE.to_string()],
        tiebreak: Vec::new(),
        page_size,
        memory_budget: 1 << 20,
    }
}

fn normalized(mut rows: Vec<Row>) -> Vec<(Key, Value)> {
    let mut out: Vec<(Key, Value)> = rows.drain(..).map(|r| (r.key, r.values[0].clone())).collect();
    out.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| format!("{:?}", a.1).cmp(&format!("{:?}", b.1)))
    });
    out
}

/// Opens the source and checks the contract at several page sizes: every row exactly
/// once (duplicates included), keys never decreasing, pages never over the page size,
/// NULL distinct from the empty string; and, where offered, reading rows by key.
pub fn assert_source_contract(def: &SourceDef) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let mut source = recon::source::open(def)
            .await
            .unwrap_or_else(|e| panic!("open: {e}"));
        for page_size in [1, 2, 3, 7, 5000] {
            source
                .scan(&spec(page_size))
                .await
                .unwrap_or_else(|e| panic!("scan: {e}"));
            let mut rows = Vec::new();
            let mut last: Option<Key> = None;
            while let Some(page) = source.next_page().await.unwrap_or_else(|e| panic!("page: {e}")) {
                assert!(
                    page.len() <= page_size,
                    "page of {} rows over page size {page_size}",
                    page.len()
                );
                for row in page {
                    if let Some(last) = &last {
                        assert!(
                            row.key >= *last,
                            "key {} after {} at page size {page_size}",
                            row.key,
                            last
                        );
                    }
                    last = Some(row.key.clone());
                    rows.push(row);
                }
            }
            assert_eq!(normalized(rows), expected(), "rows at page size {page_size}");
        }
        if source.can_fetch() {
            let wanted = vec![key("eu", 9), key("a", 100), key("nowhere", 1)];
            let fetched = source
                .fetch(&spec(2), &wanted)
                .await
                .unwrap_or_else(|e| panic!("fetch: {e}"));
            let expected: Vec<_> = expected()
                .into_iter()
                .filter(|(k, _)| wanted.contains(k))
                .collect();
            assert_eq!(normalized(fetched), expected, "rows read by key");
        }
    });
}
