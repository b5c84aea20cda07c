//! SQL backends and what they share: identifier quoting, the keyset-pagination
//! statements (`WHERE key > last ORDER BY key LIMIT n`) and the paging state machine
//! that keeps runs of duplicate keys whole across pages.
//!
//! Identifiers are validated by the job loader and always quoted here, never spliced in
//! raw; values (keys, limits) are always bound parameters. The only SQL text taken from
//! the job as written is a custom `query` and the `where` filter, which are the job's own
//! SQL by design.

pub mod binary;
pub mod mysql;
pub mod postgres;
pub mod server;
pub mod sqlite;

use std::collections::VecDeque;

use crate::job::SqlTarget;
use crate::source::{Key, KeyPart, KeyType, Row, SourceError};

/// The alias a custom query is wrapped under: `(<query>) AS recon_q`.
pub const QUERY_ALIAS: &str = "recon_q";

/// Quotes one identifier in double quotes, doubling any embedded `"`. Dots are part of
/// the name: use this for columns.
pub fn quote_name(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a table name, part by part: `schema.table` becomes `"schema"."table"`.
pub fn quote_ident(name: &str) -> String {
    name.split('.').map(quote_name).collect::<Vec<_>>().join(".")
}

/// What differs between SQL databases in the statements recon writes. Defaults follow
/// standard SQL (and SQLite); PostgreSQL and MySQL override what they spell differently.
pub trait Dialect {
    /// The placeholder for the `index`-th bound parameter, counting from 1 (`?`, `$1`).
    fn placeholder(&self, index: usize) -> String;

    /// How the statement reads the `index`-th parameter (counting from 1), whose value
    /// is `param`: its [`Dialect::placeholder`] unless the dialect passes values another
    /// way (PostgreSQL's `COPY` takes no bound parameters: it reads them back from
    /// session settings set by a statement that does).
    fn param_expr(&self, index: usize, _param: &Param) -> String {
        self.placeholder(index)
    }

    /// The expression a key column is ordered and compared by: `column` is already
    /// quoted. It must order like [`Key`] does (integers numerically, text byte-wise,
    /// UUIDs lower-cased byte-wise). `cast` is true when the column is not stored as the
    /// key type (a text column holding integer keys) and must be converted first.
    fn key_expr(&self, column: &str, ty: KeyType, cast: bool) -> String;

    /// The expression `key` is ordered and compared by, knowing which column it is:
    /// [`Dialect::key_expr`] unless the dialect knows better. Server dialects use the
    /// column's type and collation to pick a form an index can serve (the bare column
    /// when its own order already is the [`Key`] order).
    fn key_column_expr(&self, column: &str, key: &KeyColumn) -> String {
        self.key_expr(column, key.ty, key.cast)
    }

    /// True when a composite-key resumption `(k1, k2) > (?, ?)` must be spelled
    /// `k1 > ? OR (k1 = ? AND k2 > ?)` for an index to serve it: MySQL and MariaDB
    /// read a whole index for a row-value comparison, but seek a range for the OR form.
    fn expand_row_comparison(&self) -> bool {
        false
    }

    /// The expression a column is read through: `column` is already quoted, `name` is
    /// the column's name. By default the column itself; server dialects cast to text so
    /// that every value arrives in one exact, easily decoded form.
    fn select_expr(&self, column: &str, _name: &str) -> String {
        column.to_owned()
    }

    /// Quotes a single identifier (a column).
    fn quote_name(&self, name: &str) -> String {
        quote_name(name)
    }

    /// Quotes a table name, which may be `schema.table`.
    fn quote_table(&self, name: &str) -> String {
        name.split('.')
            .map(|part| self.quote_name(part))
            .collect::<Vec<_>>()
            .join(".")
    }

    /// Appended to every `ORDER BY` term. NULL keys must sort first so that a scan meets
    /// (and reports) them instead of skipping them with `>`: PostgreSQL, which sorts NULL
    /// last, returns `" NULLS FIRST"`.
    fn order_suffix(&self) -> &'static str {
        ""
    }

    /// The condition that `expr`, a single-column key, is one of `parts`, each bound
    /// through `bind`: `expr IN (?, ?, ...)`.
    fn one_of(&self, expr: &str, parts: &[&KeyPart], bind: &mut dyn FnMut(Param) -> String) -> String {
        let list: Vec<String> = parts.iter().map(|part| bind((*part).into())).collect();
        format!("{expr} IN ({})", list.join(", "))
    }

    /// The right-hand side of `(k1, k2) IN <rows>` for composite keys, given each row's
    /// parenthesized placeholders. SQLite and PostgreSQL accept `VALUES (?, ?), ...`;
    /// MySQL wants `VALUES ROW(?, ?), ...` or a plain list.
    fn row_list(&self, rows: &[String]) -> String {
        format!("(VALUES {})", rows.join(", "))
    }
}

/// A value bound to a placeholder.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    /// An integer key part or a limit.
    Int(i64),
    /// A text or UUID key part.
    Text(String),
}

impl From<&KeyPart> for Param {
    fn from(part: &KeyPart) -> Param {
        match part {
            KeyPart::Int(i) => Param::Int(*i),
            KeyPart::Text(s) => Param::Text(s.clone()),
        }
    }
}

/// A statement and its parameters, in placeholder order.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    /// The SQL text.
    pub sql: String,
    /// Values for the placeholders, in order.
    pub params: Vec<Param>,
}

/// One key column of a scan: its name, how it is typed, and whether the database must
/// convert it to that type to order it (see [`Dialect::key_expr`]).
#[derive(Clone, Debug, PartialEq)]
pub struct KeyColumn {
    /// The column's name.
    pub name: String,
    /// The key type, which decides the order.
    pub ty: KeyType,
    /// True when the column is not stored as `ty`.
    pub cast: bool,
}

/// The statements of a keyset scan over one table or query:
///
/// ```text
/// SELECT <key cols>, <cols> FROM <source>
/// WHERE (<filter>) AND (k1, k2) > (?, ?)
/// ORDER BY k1, k2, <tiebreak...> LIMIT ?
/// ```
///
/// Rows come back with the key columns first (as stored), then the scan's columns.
/// `<source>` is the quoted table or `(<query>) AS recon_q`. Ordering and comparisons use
/// [`Dialect::key_expr`], so the database's order is the [`Key`] order.
pub struct KeysetQuery<D> {
    dialect: D,
    select: String,
    from: String,
    filter: Option<String>,
    key_exprs: Vec<String>,
    order_by: String,
}

impl<D: Dialect> KeysetQuery<D> {
    /// Prepares the statements for a scan of `target` reading `key` then `columns`,
    /// filtered by `filter` and with rows sharing a key ordered by `tiebreak`.
    pub fn new(
        dialect: D,
        target: &SqlTarget,
        filter: Option<&str>,
        key: &[KeyColumn],
        columns: &[String],
        tiebreak: &[String],
    ) -> KeysetQuery<D> {
        let select = key
            .iter()
            .map(|k| k.name.as_str())
            .chain(columns.iter().map(String::as_str))
            .map(|c| dialect.select_expr(&dialect.quote_name(c), c))
            .collect::<Vec<_>>()
            .join(", ");
        let from = source_sql(&dialect, target);
        let key_exprs: Vec<String> = key
            .iter()
            .map(|k| dialect.key_column_expr(&dialect.quote_name(&k.name), k))
            .collect();
        let order_by = key_exprs
            .iter()
            .cloned()
            .chain(tiebreak.iter().map(|c| dialect.quote_name(c)))
            .map(|e| format!("{e}{}", dialect.order_suffix()))
            .collect::<Vec<_>>()
            .join(", ");
        let filter = filter.map(str::trim).filter(|f| !f.is_empty()).map(str::to_owned);
        KeysetQuery {
            dialect,
            select,
            from,
            filter,
            key_exprs,
            order_by,
        }
    }

    /// The dialect the statements are written in.
    pub fn dialect(&self) -> &D {
        &self.dialect
    }

    /// Up to `limit` rows with keys after `after` (from the start when `None`).
    pub fn page(&self, after: Option<&Key>, limit: usize) -> Statement {
        let mut b = self.builder();
        if let Some(after) = after {
            let cond = self.compare(&mut b, ">", after);
            b.condition(&cond);
        }
        b.order_and_limit(&self.order_by, Some(limit))
    }

    /// Every row whose key equals `key` (a run of duplicates), in tiebreak order.
    pub fn equal(&self, key: &Key) -> Statement {
        let mut b = self.builder();
        let cond = self
            .key_exprs
            .iter()
            .zip(&key.0)
            .map(|(e, part)| format!("{e} = {}", b.bind(part.into())))
            .collect::<Vec<_>>()
            .join(" AND ");
        b.condition(&cond);
        b.order_and_limit(&self.order_by, None)
    }

    /// Every row whose key is one of `keys`, in key order. Callers keep batches small
    /// (databases cap the number of parameters).
    pub fn any_of(&self, keys: &[&Key]) -> Statement {
        let mut b = self.builder();
        let cond = if self.key_exprs.len() == 1 {
            let parts: Vec<&KeyPart> = keys.iter().map(|k| &k.0[0]).collect();
            self.dialect
                .one_of(&self.key_exprs[0], &parts, &mut |param| b.bind(param))
        } else {
            let rows: Vec<String> = keys.iter().map(|k| format!("({})", b.bind_all(k))).collect();
            format!(
                "({}) IN {}",
                self.key_exprs.join(", "),
                self.dialect.row_list(&rows)
            )
        };
        b.condition(&cond);
        b.order_and_limit(&self.order_by, None)
    }

    fn builder(&self) -> Builder<'_, D> {
        let mut sql = format!("SELECT {} FROM {}", self.select, self.from);
        let mut conditions = 0;
        if let Some(filter) = &self.filter {
            // On a line of its own, so that a trailing `--` comment ends at its line.
            sql.push_str(&format!(" WHERE (\n{filter}\n)"));
            conditions = 1;
        }
        Builder {
            dialect: &self.dialect,
            sql,
            params: Vec::new(),
            conditions,
        }
    }

    /// `k > ?` for one key column, `(k1, k2) > (?, ?)` (row-value order) for several,
    /// or its expansion `(k1 > ? OR (k1 = ? AND k2 > ?))` where the dialect asks for it.
    fn compare(&self, b: &mut Builder<'_, D>, op: &str, key: &Key) -> String {
        if self.key_exprs.len() == 1 {
            format!("{} {op} {}", self.key_exprs[0], b.bind((&key.0[0]).into()))
        } else if self.dialect.expand_row_comparison() {
            let terms: Vec<String> = (0..self.key_exprs.len())
                .map(|i| {
                    let mut parts: Vec<String> = (0..i)
                        .map(|j| format!("{} = {}", self.key_exprs[j], b.bind((&key.0[j]).into())))
                        .collect();
                    parts.push(format!(
                        "{} {op} {}",
                        self.key_exprs[i],
                        b.bind((&key.0[i]).into())
                    ));
                    if parts.len() == 1 {
                        parts.remove(0)
                    } else {
                        format!("({})", parts.join(" AND "))
                    }
                })
                .collect();
            format!("({})", terms.join(" OR "))
        } else {
            format!("({}) {op} ({})", self.key_exprs.join(", "), b.bind_all(key))
        }
    }
}

/// `"table"` or `(<query>) AS recon_q`.
fn source_sql<D: Dialect>(dialect: &D, target: &SqlTarget) -> String {
    match target {
        SqlTarget::Table(table) => dialect.quote_table(table),
        SqlTarget::Query(query) => format!("(\n{}\n) AS {QUERY_ALIAS}", trim_query(query)),
    }
}

/// `sql` with `params` bound in order, for any sqlx driver.
pub fn bound<'q, DB: sqlx::Database>(
    sql: &'q str,
    params: &'q [Param],
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let mut q = sqlx::query(sql);
    for p in params {
        q = match p {
            Param::Int(i) => q.bind(*i),
            Param::Text(s) => q.bind(s.as_str()),
        };
    }
    q
}

/// A custom query without trailing whitespace and semicolons, ready to be wrapped.
pub fn trim_query(query: &str) -> &str {
    query
        .trim()
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace())
}

/// Accumulates one statement: conditions joined with `AND`, placeholders numbered in
/// the order they are bound.
struct Builder<'a, D> {
    dialect: &'a D,
    sql: String,
    params: Vec<Param>,
    conditions: usize,
}

impl<D: Dialect> Builder<'_, D> {
    fn bind(&mut self, param: Param) -> String {
        let expr = self.dialect.param_expr(self.params.len() + 1, &param);
        self.params.push(param);
        expr
    }

    fn bind_all(&mut self, key: &Key) -> String {
        key.0
            .iter()
            .map(|part| self.bind(part.into()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn condition(&mut self, cond: &str) {
        let word = if self.conditions == 0 { "WHERE" } else { "AND" };
        self.sql.push_str(&format!(" {word} {cond}"));
        self.conditions += 1;
    }

    fn order_and_limit(mut self, order_by: &str, limit: Option<usize>) -> Statement {
        self.sql.push_str(&format!(" ORDER BY {order_by}"));
        if let Some(limit) = limit {
            let n = i64::try_from(limit).unwrap_or(i64::MAX);
            let placeholder = self.bind(Param::Int(n));
            self.sql.push_str(&format!(" LIMIT {placeholder}"));
        }
        Statement {
            sql: self.sql,
            params: self.params,
        }
    }
}

/// What the pager asks its backend to do next.
#[derive(Debug)]
pub enum PagerStep {
    /// Run this statement, convert its rows and hand them to [`KeysetPager::receive`].
    Run(Statement),
    /// Yield this page.
    Yield(Vec<Row>),
    /// The scan is over.
    End,
}

/// Which statement the pager runs next.
#[derive(Debug)]
enum Next {
    /// A page after the last finished key.
    Page,
    /// The whole run of rows sharing this key, which filled a page by itself.
    Equal(Key),
}

/// The keyset paging state machine every SQL backend drives; it does no I/O.
///
/// Resuming with `key > last key` would skip the rest of a run of duplicate keys cut by
/// a page boundary, so a run is never split across statements: each page asks for one
/// row more than the page size; when that extra row shares the key of the page's last
/// rows, those rows are held back and read again, whole, by the next page. A run that
/// fills an entire page is read by one statement of its own (`key = ?`, no limit) and
/// then handed out in page-sized pieces. Duplicates are thus never dropped nor yielded
/// twice, whatever order the database gives rows sharing a key.
///
/// The pager also checks that rows come in [`Key`] order: if the database's order
/// disagrees (a value it compares differently), the scan fails with
/// [`SourceError::Order`] instead of yielding rows out of order or looping.
#[derive(Debug)]
pub struct KeysetPager {
    page_size: usize,
    after: Option<Key>,
    pending: VecDeque<Row>,
    next: Next,
    done: bool,
}

impl KeysetPager {
    /// A pager at the start of a scan yielding pages of at most `page_size` rows.
    pub fn new(page_size: usize) -> KeysetPager {
        KeysetPager {
            page_size: page_size.max(1),
            after: None,
            pending: VecDeque::new(),
            next: Next::Page,
            done: false,
        }
    }

    /// The key after which the next statement reads, for messages (`None` at the start).
    pub fn after(&self) -> Option<&Key> {
        self.after.as_ref()
    }

    /// The next thing to do: yield buffered rows, run a statement, or end.
    pub fn step<D: Dialect>(&mut self, query: &KeysetQuery<D>) -> PagerStep {
        if !self.pending.is_empty() {
            let n = self.page_size.min(self.pending.len());
            return PagerStep::Yield(self.pending.drain(..n).collect());
        }
        if self.done {
            return PagerStep::End;
        }
        match &self.next {
            Next::Page => PagerStep::Run(query.page(self.after.as_ref(), self.page_size + 1)),
            Next::Equal(key) => PagerStep::Run(query.equal(key)),
        }
    }

    /// Takes the rows of the statement [`KeysetPager::step`] asked for.
    pub fn receive(&mut self, rows: Vec<Row>) -> Result<(), SourceError> {
        match std::mem::replace(&mut self.next, Next::Page) {
            Next::Equal(key) => {
                if let Some(row) = rows.iter().find(|r| r.key != key) {
                    return Err(SourceError::Order(format!(
                        "reading key {key} returned key {}",
                        row.key
                    )));
                }
                self.after = Some(key);
                self.pending.extend(rows);
            }
            Next::Page => {
                self.check_order(&rows)?;
                let mut rows = rows;
                if rows.len() <= self.page_size {
                    self.done = true;
                    if let Some(last) = rows.last() {
                        self.after = Some(last.key.clone());
                    }
                    self.pending.extend(rows);
                    return Ok(());
                }
                rows.truncate(self.page_size + 1);
                let boundary = rows.pop().map(|r| r.key).unwrap_or_default();
                let keep = rows.iter().rposition(|r| r.key != boundary).map_or(0, |i| i + 1);
                if keep == 0 {
                    self.next = Next::Equal(boundary);
                } else {
                    rows.truncate(keep);
                    self.after = Some(rows[keep - 1].key.clone());
                    self.pending.extend(rows);
                }
            }
        }
        Ok(())
    }

    fn check_order(&self, rows: &[Row]) -> Result<(), SourceError> {
        let mut prev = self.after.as_ref();
        for (i, row) in rows.iter().enumerate() {
            if let Some(p) = prev {
                // The first row must be strictly after the resume key; later rows may repeat.
                if row.key < *p || (i == 0 && row.key == *p) {
                    return Err(SourceError::Order(format!("key {} came after key {p}", row.key)));
                }
            }
            prev = Some(&row.key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Value;

    /// `?` placeholders, SQLite-like key expressions.
    struct Question;

    impl Dialect for Question {
        fn placeholder(&self, _index: usize) -> String {
            "?".into()
        }
        fn key_expr(&self, column: &str, ty: KeyType, cast: bool) -> String {
            match (ty, cast) {
                (KeyType::Integer, true) => format!("CAST({column} AS INTEGER)"),
                (KeyType::Integer, false) => column.to_owned(),
                _ => format!("{column} COLLATE BINARY"),
            }
        }
    }

    /// `$n` placeholders, `COLLATE "C"`, NULLS FIRST: the PostgreSQL shape.
    struct Dollar;

    impl Dialect for Dollar {
        fn placeholder(&self, index: usize) -> String {
            format!("${index}")
        }
        fn key_expr(&self, column: &str, ty: KeyType, _cast: bool) -> String {
            match ty {
                KeyType::Integer => column.to_owned(),
                _ => format!("{column} COLLATE \"C\""),
            }
        }
        fn order_suffix(&self) -> &'static str {
            " NULLS FIRST"
        }
    }

    fn key_col(name: &str, ty: KeyType) -> KeyColumn {
        KeyColumn {
            name: name.into(),
            ty,
            cast: false,
        }
    }

    fn int_key(i: i64) -> Key {
        Key(vec![KeyPart::Int(i)])
    }

    fn row(key: i64, tag: &str) -> Row {
        Row {
            key: int_key(key),
            values: vec![Value::Text(tag.into())],
        }
    }

    #[test]
    fn identifiers_are_quoted_with_embedded_quotes_doubled() {
        assert_eq!(quote_ident("orders"), "\"orders\"");
        assert_eq!(quote_ident("sales.orders"), "\"sales\".\"orders\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_name("a.b"), "\"a.b\"");
        assert_eq!(trim_query("SELECT 1 ;\n"), "SELECT 1");
    }

    #[test]
    fn first_page_has_no_key_condition() {
        let q = KeysetQuery::new(
            Question,
            &SqlTarget::Table("orders".into()),
            None,
            &[key_col("id", KeyType::Integer)],
            &["total".into()],
            &[],
        );
        let s = q.page(None, 10);
        assert_eq!(
            s.sql,
            "SELECT \"id\", \"total\" FROM \"orders\" ORDER BY \"id\" LIMIT ?"
        );
        assert_eq!(s.params, vec![Param::Int(10)]);
    }

    #[test]
    fn composite_keys_resume_with_a_row_value_comparison() {
        let q = KeysetQuery::new(
            Question,
            &SqlTarget::Table("s.orders".into()),
            Some("status = 'open'"),
            &[
                KeyColumn {
                    name: "region".into(),
                    ty: KeyType::Integer,
                    cast: true,
                },
                key_col("code", KeyType::Text),
            ],
            &["total".into()],
            &["line".into()],
        );
        let after = Key(vec![KeyPart::Int(3), KeyPart::Text("x".into())]);
        let s = q.page(Some(&after), 5);
        assert_eq!(
            s.sql,
            "SELECT \"region\", \"code\", \"total\" FROM \"s\".\"orders\" \
             WHERE (\nstatus = 'open'\n) \
             AND (CAST(\"region\" AS INTEGER), \"code\" COLLATE BINARY) > (?, ?) \
             ORDER BY CAST(\"region\" AS INTEGER), \"code\" COLLATE BINARY, \"line\" LIMIT ?"
        );
        assert_eq!(
            s.params,
            vec![Param::Int(3), Param::Text("x".into()), Param::Int(5)]
        );
        let s = q.any_of(&[&after, &Key(vec![KeyPart::Int(4), KeyPart::Text("y".into())])]);
        assert!(
            s.sql.contains(
                "AND (CAST(\"region\" AS INTEGER), \"code\" COLLATE BINARY) IN (VALUES (?, ?), (?, ?))"
            ),
            "{}",
            s.sql
        );
        assert_eq!(s.params.len(), 4);
    }

    #[test]
    fn dollar_placeholders_number_every_parameter() {
        let q = KeysetQuery::new(
            Dollar,
            &SqlTarget::Query("SELECT * FROM t;".into()),
            None,
            &[key_col("a", KeyType::Text), key_col("b", KeyType::Integer)],
            &[],
            &[],
        );
        let after = Key(vec![KeyPart::Text("x".into()), KeyPart::Int(1)]);
        let s = q.page(Some(&after), 5);
        assert_eq!(
            s.sql,
            "SELECT \"a\", \"b\" FROM (\nSELECT * FROM t\n) AS recon_q \
             WHERE (\"a\" COLLATE \"C\", \"b\") > ($1, $2) \
             ORDER BY \"a\" COLLATE \"C\" NULLS FIRST, \"b\" NULLS FIRST LIMIT $3"
        );
        let s = q.equal(&after);
        assert!(
            s.sql
                .contains("WHERE \"a\" COLLATE \"C\" = $1 AND \"b\" = $2 ORDER BY"),
            "{}",
            s.sql
        );
        assert!(!s.sql.contains("LIMIT"));
    }

    /// `?` placeholders and spelled-out row comparisons: the MySQL shape.
    struct Expanded;

    impl Dialect for Expanded {
        fn placeholder(&self, _index: usize) -> String {
            "?".into()
        }
        fn key_expr(&self, column: &str, _ty: KeyType, _cast: bool) -> String {
            column.to_owned()
        }
        fn expand_row_comparison(&self) -> bool {
            true
        }
    }

    #[test]
    fn an_expanded_row_comparison_binds_every_part_in_order() {
        let q = KeysetQuery::new(
            Expanded,
            &SqlTarget::Table("t".into()),
            Some("x = 1"),
            &[
                key_col("a", KeyType::Text),
                key_col("b", KeyType::Integer),
                key_col("c", KeyType::Text),
            ],
            &[],
            &[],
        );
        let after = Key(vec![
            KeyPart::Text("p".into()),
            KeyPart::Int(2),
            KeyPart::Text("r".into()),
        ]);
        let s = q.page(Some(&after), 5);
        assert_eq!(
            s.sql,
            "SELECT \"a\", \"b\", \"c\" FROM \"t\" WHERE (\nx = 1\n) \
             AND (\"a\" > ? OR (\"a\" = ? AND \"b\" > ?) OR (\"a\" = ? AND \"b\" = ? AND \"c\" > ?)) \
             ORDER BY \"a\", \"b\", \"c\" LIMIT ?"
        );
        let (p, two, r) = (Param::Text("p".into()), Param::Int(2), Param::Text("r".into()));
        assert_eq!(
            s.params,
            vec![p.clone(), p.clone(), two.clone(), p, two, r, Param::Int(5)]
        );
        // Equality and lookups by key need no expansion.
        assert!(
            q.equal(&after)
                .sql
                .contains("WHERE (\nx = 1\n) AND \"a\" = ? AND \"b\" = ? AND \"c\" = ?")
        );
    }

    /// Runs the pager against an in-memory table sorted by key, answering its statements
    /// the way a database would, and returns the yielded pages.
    fn drive(table: &[Row], page_size: usize) -> Vec<Vec<Row>> {
        let q = KeysetQuery::new(
            Question,
            &SqlTarget::Table("t".into()),
            None,
            &[key_col("id", KeyType::Integer)],
            &[],
            &[],
        );
        let mut pager = KeysetPager::new(page_size);
        let mut pages = Vec::new();
        for _ in 0..1000 {
            match pager.step(&q) {
                PagerStep::End => return pages,
                PagerStep::Yield(rows) => {
                    assert!(rows.len() <= page_size);
                    pages.push(rows);
                }
                PagerStep::Run(s) => {
                    let rows: Vec<Row> = if s.sql.contains("LIMIT") {
                        let Some(Param::Int(limit)) = s.params.last() else {
                            panic!()
                        };
                        let after = match s.params.first() {
                            Some(Param::Int(a)) if s.params.len() == 2 => Some(int_key(*a)),
                            _ => None,
                        };
                        table
                            .iter()
                            .filter(|r| after.as_ref().is_none_or(|a| r.key > *a))
                            .take(*limit as usize)
                            .cloned()
                            .collect()
                    } else {
                        let Some(Param::Int(k)) = s.params.first() else {
                            panic!()
                        };
                        table.iter().filter(|r| r.key == int_key(*k)).cloned().collect()
                    };
                    pager.receive(rows).unwrap();
                }
            }
        }
        panic!("pager did not end");
    }

    #[test]
    fn a_run_of_duplicate_keys_across_page_boundaries_is_yielded_exactly_once() {
        let table: Vec<Row> = ["a", "b", "c", "d", "e"].iter().map(|t| row(7, t)).collect();
        let pages = drive(&table, 2);
        let all: Vec<Row> = pages.concat();
        assert_eq!(all, table);

        let mut table = vec![row(1, "x"), row(2, "y")];
        table.extend(["a", "b", "c", "d", "e"].iter().map(|t| row(3, t)));
        table.extend([row(4, "z"), row(4, "zz"), row(5, "w")]);
        for page_size in 1..=12 {
            let all: Vec<Row> = drive(&table, page_size).concat();
            assert_eq!(all, table, "page size {page_size}");
        }
    }

    #[test]
    fn an_empty_source_ends_at_once() {
        assert!(drive(&[], 3).is_empty());
    }

    #[test]
    fn rows_out_of_order_fail_the_scan() {
        let mut pager = KeysetPager::new(10);
        let err = pager.receive(vec![row(2, "a"), row(1, "b")]).unwrap_err();
        assert!(
            matches!(err, SourceError::Order(ref m) if m == "key 1 came after key 2"),
            "{err}"
        );
    }
}
