//! Loading job files: read, parse, expand `${VAR}`, and validate into a [`Job`], collecting
//! every problem with its place in the file. Only this module reads [`JobSpec`]; nothing
//! here opens a source.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::job::duration::parse_duration;
use crate::job::env::{EnvProblem, expand_checked};
use crate::job::spec::{
    CompareSpec, CsvSpec, FieldSpec, JobSpec, JsonlSpec, PLANNED_SOURCE_TYPES, ReportSpec, SOURCE_TYPES,
    ServerSpec, SourceSpec, SqliteSpec, ToleranceSpec,
};
use crate::job::{
    ChangedAt, CompareSettings, CsvConfig, FieldDef, Job, JobError, JsonlConfig, RedactedUrl, Relation,
    ReportSettings, SCHEMA_VERSION, Side, SourceConfig, SourceDef, SqlServerConfig, SqlTarget, SqliteConfig,
    Tolerance, field_type_names,
};
use crate::source::FieldType;

/// The longest table or column name accepted, in characters.
pub const MAX_IDENTIFIER_CHARS: usize = 128;
/// Rows per page when `[compare] page_size` is not given.
pub const DEFAULT_PAGE_SIZE: usize = 5000;
/// Records per job when `[report] max_records` is not given.
pub const DEFAULT_MAX_RECORDS: u64 = 1_000_000;

/// Stop collecting unknown keys after this many (a file that is mostly wrong).
const MAX_STRUCTURE_ERRORS: usize = 50;
/// Top-level tables, which messages name as `[owner]` or `[[fields]] #2`.
const SECTIONS: [&str; 5] = ["owner", "replica", "fields", "compare", "report"];
/// Source keys that only SQL sources take.
const SQL_ONLY_KEYS: [&str; 4] = ["url", "table", "query", "where"];

/// Loads and validates one job file, expanding `${VAR}` from the process environment.
///
/// Returns every problem found (syntax, unknown keys, bad values, missing variables),
/// not just the first.
pub fn load_job(path: &Path) -> Result<Job, Vec<JobError>> {
    load_job_with_env(path, &|name| std::env::var(name).ok())
}

/// [`load_job`] with the environment given as a lookup function.
pub fn load_job_with_env(path: &Path, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Job, Vec<JobError>> {
    let text = fs::read_to_string(path).map_err(|e| {
        vec![JobError {
            path: path.to_path_buf(),
            location: None,
            message: format!("cannot read job file: {}", lower_first(&e.to_string())),
        }]
    })?;
    load_job_from_str(&text, path, lookup)
}

/// Parses and validates job file text as if read from `path`: relative paths in it are
/// resolved against `path`'s folder, its file stem is the default name, and every
/// error names it.
pub fn load_job_from_str(
    text: &str,
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Job, Vec<JobError>> {
    let mut ctx = Ctx {
        path,
        text,
        index: Vec::new(),
        errors: Vec::new(),
    };
    let mut root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let location = e.span().map(|s| line_col(text, s.start));
            let message = format!("toml syntax error: {}", e.message().trim());
            return Err(vec![ctx.job_error(location, message)]);
        }
    };
    index_table(root.get_ref(), &mut Vec::new(), &mut ctx.index);

    if let Some(message) = version_problem(root.get_ref()) {
        ctx.error(&[key("version")], message);
        return Err(ctx.errors);
    }
    let env_ok = expand_document(&mut root, lookup, &mut ctx);
    let spec = deserialize_spec(root, &mut ctx, env_ok);
    let job = match spec {
        Some(spec) if env_ok => validate(spec, &mut ctx),
        _ => None,
    };
    match job {
        Some(job) if ctx.errors.is_empty() => Ok(job),
        _ => {
            if ctx.errors.is_empty() {
                ctx.errors.push(ctx.job_error(None, "invalid job".into()));
            }
            ctx.errors.sort_by_key(|e| e.location);
            Err(ctx.errors)
        }
    }
}

/// Loads every job named by `paths`, in the order given.
///
/// Each path is a job file or a folder; a folder contributes every `*.toml` file directly
/// in it (not recursively, hidden files skipped), sorted by file name. A path that does
/// not exist, a folder without job files, and two jobs with the same name are errors.
/// A file reached twice (given and also in a given folder) is loaded once. Errors from
/// every file are collected.
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<Job>, Vec<JobError>> {
    let mut errors = Vec::new();
    let mut files: Vec<PathBuf> = Vec::new();
    for path in paths {
        let error = |message: String| JobError {
            path: path.clone(),
            location: None,
            message,
        };
        match fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                errors.push(error("no such job file or folder".into()));
            }
            Err(e) => errors.push(error(format!("cannot read: {}", lower_first(&e.to_string())))),
            Ok(meta) if meta.is_dir() => match job_files_in(path) {
                Ok(found) if found.is_empty() => {
                    errors.push(error("folder has no job files (`*.toml`)".into()));
                }
                Ok(found) => files.extend(found),
                Err(e) => errors.push(error(format!(
                    "cannot list folder: {}",
                    lower_first(&e.to_string())
                ))),
            },
            Ok(_) => files.push(path.clone()),
        }
    }

    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(f.clone()));

    let mut jobs: Vec<Job> = Vec::new();
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    for file in files {
        match load_job(&file) {
            Ok(job) => {
                if let Some(first) = names.get(&job.name) {
                    errors.push(JobError {
                        path: file.clone(),
                        location: None,
                        message: format!(
                            "job name `{}` is also used by {} (each job needs its own name: \
                             it names the report folder)",
                            job.name,
                            first.display()
                        ),
                    });
                } else {
                    names.insert(job.name.clone(), file.clone());
                }
                jobs.push(job);
            }
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() { Ok(jobs) } else { Err(errors) }
}

/// The `*.toml` files directly in `folder` (hidden ones skipped), sorted by file name.
fn job_files_in(folder: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(folder)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        if !name.starts_with('.') && name.ends_with(".toml") && path.is_file() {
            files.push((entry.file_name(), path));
        }
    }
    files.sort();
    Ok(files.into_iter().map(|(_, path)| path).collect())
}

/// Checks a table or column name: non-empty, at most [`MAX_IDENTIFIER_CHARS`]
/// characters, no control characters (NUL included). When `kind` is `"table"` the name
/// may be `schema.table`, with at most one dot and no empty part.
///
/// SQL backends always quote identifiers; they are never spliced into SQL raw, so this
/// guards against names no database would hold rather than against injection. The error
/// text starts with `kind` (`"key column name is empty"`).
pub fn validate_identifier(kind: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{kind} name is empty"));
    }
    if name.chars().count() > MAX_IDENTIFIER_CHARS {
        let start: String = name.chars().take(20).collect();
        return Err(format!(
            "{kind} name `{start}...` is longer than {MAX_IDENTIFIER_CHARS} characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{kind} name {name:?} contains a control character"));
    }
    if kind == "table" {
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() > 2 {
            return Err(format!(
                "table name `{name}` has more than one dot (write `table` or `schema.table`)"
            ));
        }
        if parts.iter().any(|p| p.is_empty()) {
            return Err(format!("table name `{name}` has an empty schema or table part"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Where things are in the file.

/// One step of a path into the document.
#[derive(Clone, Debug, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

/// A key or array item of the parsed document with its spans.
#[derive(Debug)]
struct Node {
    path: Vec<Seg>,
    key_span: Option<Range<usize>>,
    span: Range<usize>,
    /// A scalar as serde describes it in "invalid type" errors (`string "x"`).
    found: Option<String>,
}

fn describe_scalar(value: &DeValue<'_>) -> Option<String> {
    match value {
        DeValue::String(s) => Some(format!("string {s:?}")),
        DeValue::Integer(i) => Some(format!(
            "integer `{}`",
            i64::from_str_radix(i.as_str(), i.radix()).ok()?
        )),
        DeValue::Boolean(b) => Some(format!("boolean `{b}`")),
        _ => None,
    }
}

fn index_table(table: &DeTable<'_>, path: &mut Vec<Seg>, out: &mut Vec<Node>) {
    for (k, v) in table.iter() {
        path.push(Seg::Key(k.get_ref().to_string()));
        out.push(Node {
            path: path.clone(),
            key_span: Some(k.span()),
            span: v.span(),
            found: describe_scalar(v.get_ref()),
        });
        index_value(v.get_ref(), path, out);
        path.pop();
    }
}

fn index_value(value: &DeValue<'_>, path: &mut Vec<Seg>, out: &mut Vec<Node>) {
    match value {
        DeValue::Table(t) => index_table(t, path, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Seg::Index(i));
                out.push(Node {
                    path: path.clone(),
                    key_span: None,
                    span: item.span(),
                    found: describe_scalar(item.get_ref()),
                });
                index_value(item.get_ref(), path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// How messages name a place: `[compare]`, `[[fields]] #2 `tolerance``, `` `name` ``.
fn label(path: &[Seg]) -> String {
    let mut out = String::new();
    let mut rest = path;
    if let [Seg::Key(first), tail @ ..] = path {
        if SECTIONS.contains(&first.as_str()) {
            match tail {
                [Seg::Index(i), more @ ..] => {
                    out = format!("[[{first}]] #{}", i + 1);
                    rest = more;
                }
                _ => {
                    out = format!("[{first}]");
                    rest = tail;
                }
            }
        }
    }
    if !rest.is_empty() {
        let dotted: Vec<String> = rest
            .iter()
            .map(|s| match s {
                Seg::Key(k) => k.clone(),
                Seg::Index(i) => i.to_string(),
            })
            .collect();
        let dotted = format!("`{}`", dotted.join("."));
        out = if out.is_empty() {
            dotted
        } else {
            format!("{out} {dotted}")
        };
    }
    out
}

fn prefixed(label: &str, message: &str) -> String {
    if label.is_empty() {
        message.to_string()
    } else {
        format!("{label}: {message}")
    }
}

/// The job being loaded: its file, text, spans and the problems found so far.
struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
    index: Vec<Node>,
    errors: Vec<JobError>,
}

impl Ctx<'_> {
    fn job_error(&self, location: Option<(usize, usize)>, message: String) -> JobError {
        JobError {
            path: self.path.to_path_buf(),
            location,
            message,
        }
    }

    /// The location of the deepest existing node along `path` (its key, if it has one).
    fn locate(&self, path: &[Seg]) -> Option<(usize, usize)> {
        (1..=path.len()).rev().find_map(|n| {
            let node = self.index.iter().find(|node| node.path == path[..n])?;
            let span = node.key_span.as_ref().unwrap_or(&node.span);
            Some(line_col(self.text, span.start))
        })
    }

    /// Records a problem located at `path`.
    fn error(&mut self, path: &[Seg], message: String) {
        let location = self.locate(path);
        self.errors.push(self.job_error(location, message));
    }

    /// The node an error span points at, and whether it points at the node's key.
    fn node_at(&self, span: &Range<usize>) -> Option<(&Node, bool)> {
        let deepest = |a: &&Node, b: &&Node| a.path.len().cmp(&b.path.len());
        if let Some(node) = self.index.iter().find(|n| n.key_span.as_ref() == Some(span)) {
            return Some((node, true));
        }
        if let Some(node) = self.index.iter().filter(|n| n.span == *span).max_by(deepest) {
            return Some((node, false));
        }
        self.index
            .iter()
            .filter(|n| n.span.start <= span.start && span.end <= n.span.end)
            .max_by(deepest)
            .map(|n| (n, false))
    }
}

// ---------------------------------------------------------------------------------------
// Version, environment, structure.

fn version_problem(root: &DeTable<'_>) -> Option<String> {
    let DeValue::Integer(v) = root.get("version")?.get_ref() else {
        return None;
    };
    let version = i64::from_str_radix(v.as_str(), v.radix()).ok();
    if version == Some(i64::from(SCHEMA_VERSION)) {
        return None;
    }
    Some(format!(
        "unsupported job version {v}; this recon reads version {SCHEMA_VERSION}"
    ))
}

/// Expands `${VAR}` in every string value (keys stay as written). Returns false, having
/// recorded the problems, when a variable is missing or a reference is malformed.
fn expand_document(
    root: &mut Spanned<DeTable<'_>>,
    lookup: &dyn Fn(&str) -> Option<String>,
    ctx: &mut Ctx<'_>,
) -> bool {
    let mut found = Vec::new();
    expand_table(root.get_mut(), &mut Vec::new(), lookup, &mut found);
    let mut reported: Vec<String> = Vec::new();
    for (path, span, problem) in &found {
        let message = match problem {
            EnvProblem::Missing(name) => {
                if reported.contains(name) {
                    continue;
                }
                reported.push(name.clone());
                format!("environment variable `{name}` is not set (and has no default)")
            }
            EnvProblem::Malformed(message) => message.clone(),
        };
        let location = Some(line_col(ctx.text, span.start));
        let error = ctx.job_error(location, prefixed(&label(path), &message));
        ctx.errors.push(error);
    }
    found.is_empty()
}

type EnvFinding = (Vec<Seg>, Range<usize>, EnvProblem);

fn expand_table(
    table: &mut DeTable<'_>,
    path: &mut Vec<Seg>,
    lookup: &dyn Fn(&str) -> Option<String>,
    found: &mut Vec<EnvFinding>,
) {
    for (k, v) in table.iter_mut() {
        path.push(Seg::Key(k.get_ref().to_string()));
        let span = v.span();
        expand_value(v.get_mut(), span, path, lookup, found);
        path.pop();
    }
}

fn expand_value(
    value: &mut DeValue<'_>,
    span: Range<usize>,
    path: &mut Vec<Seg>,
    lookup: &dyn Fn(&str) -> Option<String>,
    found: &mut Vec<EnvFinding>,
) {
    match value {
        DeValue::String(s) => match expand_checked(s, lookup) {
            Ok(expanded) => {
                if expanded != **s {
                    *s = Cow::Owned(expanded);
                }
            }
            Err(problems) => found.extend(problems.into_iter().map(|p| (path.clone(), span.clone(), p))),
        },
        DeValue::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(Seg::Index(i));
                let span = item.span();
                expand_value(item.get_mut(), span, path, lookup, found);
                path.pop();
            }
        }
        DeValue::Table(t) => expand_table(t, path, lookup, found),
        _ => {}
    }
}

/// Deserializes the spec. Unknown keys are recorded and removed, and deserialization
/// retried, so that all of them are reported at once; any other structural error ends
/// it. When `keep_all` is false (the environment failed) only unknown keys are reported.
fn deserialize_spec(mut root: Spanned<DeTable<'_>>, ctx: &mut Ctx<'_>, keep_all: bool) -> Option<JobSpec> {
    for _ in 0..MAX_STRUCTURE_ERRORS {
        let error = match JobSpec::deserialize(toml::de::Deserializer::from(root.clone())) {
            Ok(spec) => return Some(spec),
            Err(e) => e,
        };
        let (job_error, unknown_key) = describe_error(&error, ctx);
        match unknown_key {
            Some(path) => {
                ctx.errors.push(job_error);
                if !remove_key(root.get_mut(), &path) {
                    return None;
                }
            }
            None => {
                if keep_all {
                    ctx.errors.push(job_error);
                }
                return None;
            }
        }
    }
    None
}

fn remove_key(table: &mut DeTable<'_>, path: &[Seg]) -> bool {
    match path {
        [Seg::Key(k)] => table.remove(k.as_str()).is_some(),
        [Seg::Key(k), rest @ ..] => match table.get_mut(k.as_str()).map(|v| v.get_mut()) {
            Some(value) => remove_in_value(value, rest),
            None => false,
        },
        _ => false,
    }
}

fn remove_in_value(value: &mut DeValue<'_>, path: &[Seg]) -> bool {
    match (value, path) {
        (DeValue::Table(t), _) => remove_key(t, path),
        (DeValue::Array(items), [Seg::Index(i), rest @ ..]) => match items.get_mut(*i) {
            Some(item) => remove_in_value(item.get_mut(), rest),
            None => false,
        },
        _ => false,
    }
}

/// Words between backticks: the name and the expected names in serde's messages.
fn backticked(message: &str) -> Vec<&str> {
    message.split('`').skip(1).step_by(2).collect()
}

/// Turns a deserialization error into a job error in our words. For an unknown key,
/// also returns the key's path so that it can be removed and deserialization retried.
fn describe_error(error: &toml::de::Error, ctx: &Ctx<'_>) -> (JobError, Option<Vec<Seg>>) {
    let message = error.message().trim();
    let (at_key, node_path, location) = match error.span().and_then(|s| ctx.node_at(&s)) {
        Some((node, at_key)) => (
            at_key,
            node.path.clone(),
            Some(line_col(
                ctx.text,
                node.key_span.as_ref().unwrap_or(&node.span).start,
            )),
        ),
        None => (
            false,
            Vec::new(),
            error.span().map(|s| line_col(ctx.text, s.start)),
        ),
    };
    let names = backticked(message);

    if message.starts_with("unknown field `") {
        let name = names.first().copied().unwrap_or_default();
        let expected = &names[1.min(names.len())..];
        // The span is the key itself, or (inside a source) the table holding it.
        let section = if at_key {
            node_path[..node_path.len() - 1].to_vec()
        } else {
            node_path.clone()
        };
        let mut key_path = section.clone();
        key_path.push(key(name));
        let location = ctx.locate(&key_path).or(location);
        let text = unknown_key_message(name, &section, expected);
        return (ctx.job_error(location, text), Some(key_path));
    }

    if message.starts_with("unknown variant `") {
        let name = names.first().copied().unwrap_or_default();
        let mut type_path = node_path.clone();
        if type_path.last() != Some(&key("type")) {
            type_path.push(key("type"));
        }
        let location = ctx.locate(&type_path).or(location);
        let section = &type_path[..type_path.len() - 1];
        let text = prefixed(&label(section), &unknown_source_type(name));
        return (ctx.job_error(location, text), None);
    }

    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default();
        let text = if name == "type" {
            format!("missing required key `type` (one of {})", SOURCE_TYPES.join(", "))
        } else {
            format!("missing required key `{name}`")
        };
        return (ctx.job_error(location, prefixed(&label(&node_path), &text)), None);
    }

    let Some((found, expected)) = message
        .strip_prefix("invalid type: ")
        .and_then(|rest| rest.rsplit_once(", expected "))
    else {
        return (
            ctx.job_error(location, prefixed(&label(&node_path), message)),
            None,
        );
    };
    // Inside a source the span covers the whole table: find the key holding the value.
    let culprits: Vec<&Node> = ctx
        .index
        .iter()
        .filter(|n| n.path.len() == node_path.len() + 1 && n.path.starts_with(&node_path))
        .filter(|n| n.found.as_deref() == Some(found))
        .collect();
    let (path, location) = match culprits[..] {
        [node] => (node.path.clone(), ctx.locate(&node.path)),
        _ => (node_path, location),
    };
    let text = format!("expected {}, found {found}", friendly_expected(expected));
    (ctx.job_error(location, prefixed(&label(&path), &text)), None)
}

fn unknown_key_message(name: &str, section: &[Seg], expected: &[&str]) -> String {
    let place = label(section);
    let is_source = matches!(section, [Seg::Key(s)] if s == "owner" || s == "replica");
    if is_source && SQL_ONLY_KEYS.contains(&name) && !expected.contains(&name) {
        return format!(
            "{place}: `{name}` is only for SQL sources (type = \"sqlite\", \"postgres\" or \"mysql\")"
        );
    }
    if is_source && name == "path" && expected.contains(&"schema") {
        return format!(
            "{place}: a database server source takes `url = \"postgres://...\"` or `\"mysql://...\"`, not `path`"
        );
    }
    if is_source && name == "path" && expected.contains(&"url") {
        return format!("{place}: an sqlite source takes `url = \"sqlite://...\"`, not `path`");
    }
    let mut text = format!("unknown key `{name}`");
    if !place.is_empty() {
        text.push_str(&format!(" in {place}"));
    }
    match suggest(name, expected) {
        Some(s) => text.push_str(&format!("; did you mean `{s}`?")),
        None if expected.is_empty() => {}
        None => {
            let list: Vec<String> = expected.iter().map(|e| format!("`{e}`")).collect();
            text.push_str(&format!(" (expected one of {})", list.join(", ")));
        }
    }
    text
}

fn unknown_source_type(name: &str) -> String {
    let choices = SOURCE_TYPES.join(", ");
    if PLANNED_SOURCE_TYPES.contains(&name) {
        return format!("source type `{name}` is not supported yet (expected one of {choices})");
    }
    unknown_choice("source type", name, &SOURCE_TYPES)
}

/// `unknown <what> `x`; did you mean `y`? (expected one of a, b)`.
fn unknown_choice(what: &str, name: &str, choices: &[&str]) -> String {
    let hint = suggest(name, choices)
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
    format!(
        "unknown {what} `{name}`{hint} (expected one of {})",
        choices.join(", ")
    )
}

fn friendly_expected(expected: &str) -> &str {
    match expected {
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" => "an integer",
        "f32" | "f64" => "a number",
        "a sequence" => "an array",
        "variant identifier" => "a string",
        e if e == "a map" || e.starts_with("struct ") || e.starts_with("internally tagged") => "a table",
        e => e,
    }
}

/// The closest candidate, if it is close enough to be a likely typo.
fn suggest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let len = name.chars().count();
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), *c))
        .filter(|(d, c)| *d < len.max(c.chars().count()) && (*d <= 2 || *d * 3 <= len))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, counting a swap of neighbours as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------------------
// Meaning.

/// Validates the spec into a job, recording every problem; `None` when there was one.
fn validate(spec: JobSpec, ctx: &mut Ctx<'_>) -> Option<Job> {
    let name = job_name(spec.name.as_deref(), ctx);
    let relation = match spec.relation.as_deref() {
        None | Some("mirror") => Some(Relation::Mirror),
        Some("reference") => Some(Relation::Reference),
        Some(other) => {
            let message = unknown_choice("relation", other, &["mirror", "reference"]);
            ctx.error(&[key("relation")], message);
            None
        }
    };
    let owner = source_def(Side::Owner, spec.owner, relation, ctx);
    let replica = source_def(Side::Replica, spec.replica, relation, ctx);
    if let (Some(o), Some(r), Some(rel)) = (&owner, &replica, relation) {
        if o.key.len() != r.key.len() {
            let message = match rel {
                Relation::Mirror => format!(
                    "[replica]: `key` has {} column(s) but the owner's `key` has {}; \
                     a mirror job's keys must match column for column",
                    r.key.len(),
                    o.key.len()
                ),
                Relation::Reference => format!(
                    "[replica]: `key` (the foreign key to the owner) has {} column(s) but \
                     the owner's `key` has {}",
                    r.key.len(),
                    o.key.len()
                ),
            };
            ctx.error(&[key("replica"), key("key")], message);
        }
    }
    let fields = spec.fields.map(|f| field_defs(f, ctx));
    let any_sql = [&owner, &replica]
        .iter()
        .any(|s| s.as_ref().is_some_and(|s| s.config.is_sql()));
    let compare = compare_settings(spec.compare, any_sql, ctx);
    let report = report_settings(spec.report, ctx);

    let (Some(name), Some(relation), Some(owner), Some(replica), Some(compare), Some(report)) =
        (name, relation, owner, replica, compare, report)
    else {
        return None;
    };
    let fields = match fields {
        Some(Some(f)) => Some(f),
        Some(None) => return None,
        None => None,
    };
    if !ctx.errors.is_empty() {
        return None;
    }
    Some(Job {
        name,
        description: spec.description,
        path: ctx.path.to_path_buf(),
        relation,
        owner,
        replica,
        fields,
        compare,
        report,
    })
}

fn job_name(given: Option<&str>, ctx: &mut Ctx<'_>) -> Option<String> {
    let (name, hint) = match given {
        Some(n) => (n.to_string(), ""),
        None => {
            let stem = ctx.path.file_stem().map(|s| s.to_string_lossy().into_owned());
            (
                stem.unwrap_or_default(),
                " (taken from the file name; set `name`)",
            )
        }
    };
    let problem = if name.is_empty() {
        Some("job name is empty".to_string())
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Some(format!(
            "job name `{name}` may only contain letters, digits, `-`, `_` and `.`"
        ))
    } else if name.contains("..") || name.chars().all(|c| c == '.') {
        Some(format!(
            "job name `{name}` may not be `.` or contain `..` (it names a report folder)"
        ))
    } else {
        None
    };
    match problem {
        Some(p) => {
            ctx.error(&[key("name")], format!("{p}{hint}"));
            None
        }
        None => Some(name),
    }
}

fn resolve(ctx: &Ctx<'_>, file: &str) -> PathBuf {
    let file = Path::new(file);
    if file.is_absolute() {
        return file.to_path_buf();
    }
    ctx.path.parent().unwrap_or(Path::new("")).join(file)
}

fn source_def(
    side: Side,
    spec: Option<SourceSpec>,
    relation: Option<Relation>,
    ctx: &mut Ctx<'_>,
) -> Option<SourceDef> {
    let at = |k: &str| [key(side.name()), key(k)];
    let place = format!("[{side}]");
    let Some(spec) = spec else {
        ctx.error(&[], format!("missing required section [{side}]"));
        return None;
    };
    let (config, key_cols, row_key) = match spec {
        SourceSpec::Sqlite(s) => (sqlite_config(side, s.clone(), ctx), s.key, s.row_key),
        SourceSpec::Csv(s) => (csv_config(side, s.clone(), ctx), s.key, s.row_key),
        SourceSpec::Jsonl(s) => (jsonl_config(side, s.clone(), ctx), s.key, s.row_key),
        SourceSpec::Postgres(s) => (
            server_config(side, Engine::Postgres, s.clone(), ctx),
            s.key,
            s.row_key,
        ),
        SourceSpec::Mysql(s) => (
            server_config(side, Engine::Mysql, s.clone(), ctx),
            s.key,
            s.row_key,
        ),
    };
    let key_cols = match key_cols {
        None => {
            ctx.error(
                &[key(side.name())],
                format!("{place}: missing required key `key`"),
            );
            None
        }
        Some(cols) => column_list(&cols, "key", &at("key"), &place, ctx).then_some(cols),
    };
    let row_key = match row_key {
        None => Some(Vec::new()),
        Some(_) if side == Side::Owner => {
            ctx.error(
                &at("row_key"),
                format!("{place}: `row_key` is only for the replica"),
            );
            None
        }
        Some(_) if relation == Some(Relation::Mirror) => {
            ctx.error(
                &at("row_key"),
                format!("{place}: `row_key` is only for relation = \"reference\" jobs"),
            );
            None
        }
        Some(cols) => column_list(&cols, "row_key", &at("row_key"), &place, ctx).then_some(cols),
    };
    Some(SourceDef {
        config: config?,
        key: key_cols?,
        row_key: row_key?,
    })
}

/// Checks a list of column names (`key`, `row_key`): at least one, valid, no repeats.
fn column_list(cols: &[String], what: &str, at: &[Seg], place: &str, ctx: &mut Ctx<'_>) -> bool {
    let before = ctx.errors.len();
    if cols.is_empty() {
        ctx.error(at, format!("{place}: `{what}` must list at least one column"));
    }
    for (i, col) in cols.iter().enumerate() {
        if let Err(e) = validate_identifier(&format!("{what} column"), col) {
            ctx.error(at, format!("{place}: {e}"));
        } else if cols[..i].contains(col) {
            ctx.error(at, format!("{place}: `{what}` lists `{col}` more than once"));
        }
    }
    ctx.errors.len() == before
}

fn required<'s>(value: &'s Option<String>, name: &str, side: Side, ctx: &mut Ctx<'_>) -> Option<&'s str> {
    match value.as_deref() {
        None => {
            ctx.error(
                &[key(side.name())],
                format!("[{side}]: missing required key `{name}`"),
            );
            None
        }
        Some("") => {
            ctx.error(
                &[key(side.name()), key(name)],
                format!("[{side}]: `{name}` is empty"),
            );
            None
        }
        Some(v) => Some(v),
    }
}

fn sqlite_config(side: Side, spec: SqliteSpec, ctx: &mut Ctx<'_>) -> Option<SourceConfig> {
    let at = |k: &str| [key(side.name()), key(k)];
    let place = format!("[{side}]");
    let before = ctx.errors.len();
    let mut path = None;
    if let Some(url) = required(&spec.url, "url", side, ctx) {
        let file = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .map(|rest| rest.split_once('?').map_or(rest, |(file, _)| file));
        match file {
            None => ctx.error(
                &at("url"),
                format!("{place}: `url` must start with `sqlite://` (e.g. \"sqlite://data/app.db\")"),
            ),
            Some("") => ctx.error(&at("url"), format!("{place}: `url` names no database file")),
            Some(file) => path = Some(resolve(ctx, file)),
        }
    }
    let target = sql_target(side, spec.table, spec.query, ctx);
    if spec.filter.as_deref().is_some_and(|w| w.trim().is_empty()) {
        ctx.error(&at("where"), format!("{place}: `where` is empty"));
    }
    if ctx.errors.len() != before {
        return None;
    }
    Some(SourceConfig::Sqlite(SqliteConfig {
        path: path?,
        url: spec.url?,
        target: target?,
        filter: spec.filter,
    }))
}

/// `table` or `query` of a SQL source, validated.
fn sql_target(
    side: Side,
    table: Option<String>,
    query: Option<String>,
    ctx: &mut Ctx<'_>,
) -> Option<SqlTarget> {
    let at = |k: &str| [key(side.name()), key(k)];
    let place = format!("[{side}]");
    match (table, query) {
        (Some(_), Some(_)) => {
            ctx.error(
                &at("query"),
                format!("{place}: give either `table` or `query`, not both"),
            );
            None
        }
        (None, None) => {
            ctx.error(&[key(side.name())], format!("{place}: give `table` or `query`"));
            None
        }
        (Some(table), None) => match validate_identifier("table", &table) {
            Ok(()) => Some(SqlTarget::Table(table)),
            Err(e) => {
                ctx.error(&at("table"), format!("{place}: {e}"));
                None
            }
        },
        (None, Some(query)) => {
            let word: String = query
                .trim_start()
                .chars()
                .take_while(char::is_ascii_alphabetic)
                .collect();
            if word.eq_ignore_ascii_case("select") || word.eq_ignore_ascii_case("with") {
                Some(SqlTarget::Query(query))
            } else {
                ctx.error(
                    &at("query"),
                    format!("{place}: `query` must be a SELECT statement (starting with SELECT or WITH)"),
                );
                None
            }
        }
    }
}

/// Which server a [`ServerSpec`] is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Engine {
    Postgres,
    Mysql,
}

fn server_config(side: Side, engine: Engine, spec: ServerSpec, ctx: &mut Ctx<'_>) -> Option<SourceConfig> {
    let at = |k: &str| [key(side.name()), key(k)];
    let place = format!("[{side}]");
    let before = ctx.errors.len();
    let (schemes, example): (&[&str], &str) = match engine {
        Engine::Postgres => (
            &["postgres", "postgresql"],
            "postgres://user:password@host:5432/db",
        ),
        Engine::Mysql => (&["mysql", "mariadb"], "mysql://user:password@host:3306/db"),
    };
    let mut url = None;
    if let Some(text) = required(&spec.url, "url", side, ctx) {
        let u = RedactedUrl::new(text);
        if u.has_unencoded_password() {
            ctx.error(
                &at("url"),
                format!(
                    "{place}: the password in `url` holds a `/`, `?` or `#`: percent-encode it \
                     (`%2F`, `%3F`, `%23`)"
                ),
            );
        } else if !schemes.contains(&u.scheme()) {
            ctx.error(
                &at("url"),
                format!(
                    "{place}: `url` must start with `{}://` (e.g. \"{example}\"), not {u}",
                    schemes[0]
                ),
            );
        } else {
            url = Some(u);
        }
    }
    let table = match (spec.schema, spec.table) {
        (Some(schema), Some(table)) if table.contains('.') => {
            ctx.error(
                &at("schema"),
                format!("{place}: give the schema in `schema` or in `table` (`{table}`), not both"),
            );
            let _ = schema;
            None
        }
        (Some(schema), Some(table)) => Some(format!("{schema}.{table}")),
        (Some(_), None) => {
            ctx.error(&at("schema"), format!("{place}: `schema` needs `table`"));
            None
        }
        (None, table) => table,
    };
    let target = sql_target(side, table, spec.query, ctx);
    if spec.filter.as_deref().is_some_and(|w| w.trim().is_empty()) {
        ctx.error(&at("where"), format!("{place}: `where` is empty"));
    }
    if ctx.errors.len() != before {
        return None;
    }
    let config = SqlServerConfig {
        url: url?,
        target: target?,
        filter: spec.filter,
    };
    Some(match engine {
        Engine::Postgres => SourceConfig::Postgres(config),
        Engine::Mysql => SourceConfig::Mysql(config),
    })
}

fn csv_config(side: Side, spec: CsvSpec, ctx: &mut Ctx<'_>) -> Option<SourceConfig> {
    let path = required(&spec.path, "path", side, ctx).map(|p| resolve(ctx, p));
    let delimiter = match spec.delimiter.as_deref() {
        None => Some(b','),
        Some(d) if d.len() == 1 && d.is_ascii() && !matches!(d, "\"" | "\n" | "\r") => Some(d.as_bytes()[0]),
        Some(d) => {
            ctx.error(
                &[key(side.name()), key("delimiter")],
                format!(
                    "[{side}]: `delimiter` must be one ASCII character such as \",\", \";\" \
                     or \"\\t\", not {d:?}"
                ),
            );
            None
        }
    };
    let types = column_types(side, spec.types, ctx);
    Some(SourceConfig::Csv(CsvConfig {
        path: path?,
        delimiter: delimiter?,
        header: spec.header.unwrap_or(true),
        null: spec.null,
        types: types?,
    }))
}

/// Validates a file source's `types`: column names and type names.
fn column_types(
    side: Side,
    types: Option<BTreeMap<String, String>>,
    ctx: &mut Ctx<'_>,
) -> Option<Vec<(String, FieldType)>> {
    let before = ctx.errors.len();
    let mut valid = Vec::new();
    for (name, type_name) in types.unwrap_or_default() {
        let at = [key(side.name()), key("types"), key(&name)];
        if let Err(e) = validate_identifier("column", &name) {
            ctx.error(&at, format!("[{side}] `types`: {e}"));
            continue;
        }
        match FieldType::from_name(&type_name) {
            Some(ty) => valid.push((name, ty)),
            None => {
                let message = unknown_choice("field type", &type_name, &field_type_names());
                ctx.error(&at, format!("[{side}] `types`: column `{name}`: {message}"));
            }
        }
    }
    (ctx.errors.len() == before).then_some(valid)
}

fn jsonl_config(side: Side, spec: JsonlSpec, ctx: &mut Ctx<'_>) -> Option<SourceConfig> {
    let path = required(&spec.path, "path", side, ctx).map(|p| resolve(ctx, p));
    let before = ctx.errors.len();
    let mut columns: Vec<(String, String)> = spec.columns.unwrap_or_default().into_iter().collect();
    // Keep the order written in the file (the parsed table sorts by name).
    let written_at = |name: &str| {
        let path = [key(side.name()), key("columns"), key(name)];
        ctx.index
            .iter()
            .find(|n| n.path == path)
            .and_then(|n| n.key_span.as_ref())
            .map_or(usize::MAX, |s| s.start)
    };
    columns.sort_by_key(|(name, _)| written_at(name));
    for (name, pointer) in &columns {
        let at = [key(side.name()), key("columns"), key(name)];
        if let Err(e) = validate_identifier("column", name) {
            ctx.error(&at, format!("[{side}] `columns`: {e}"));
        } else if !(pointer.is_empty() || pointer.starts_with('/')) {
            ctx.error(
                &at,
                format!(
                    "[{side}] `columns`: JSON pointer {pointer:?} for `{name}` must start with \
                     `/` (e.g. \"/price/amount\"), or be empty for the whole line"
                ),
            );
        }
    }
    let types = column_types(side, spec.types, ctx);
    if ctx.errors.len() != before {
        return None;
    }
    Some(SourceConfig::Jsonl(JsonlConfig {
        path: path?,
        columns,
        types: types?,
    }))
}

/// Validates `[[fields]]`; `None` when any entry is wrong.
fn field_defs(specs: Vec<FieldSpec>, ctx: &mut Ctx<'_>) -> Option<Vec<FieldDef>> {
    let before = ctx.errors.len();
    let mut defs: Vec<FieldDef> = Vec::new();
    for (i, spec) in specs.into_iter().enumerate() {
        let at = |k: &str| vec![key("fields"), Seg::Index(i), key(k)];
        let place = label(&[key("fields"), Seg::Index(i)]);
        let columns = match (spec.name, spec.owner, spec.replica) {
            (Some(name), None, None) => Some((name.clone(), name)),
            (None, Some(owner), Some(replica)) => Some((owner, replica)),
            _ => {
                ctx.error(
                    &[key("fields"), Seg::Index(i)],
                    format!("{place}: give either `name` or both `owner` and `replica`"),
                );
                None
            }
        };
        let ty = match spec.ty.as_deref() {
            None => Some(None),
            Some(name) => match FieldType::from_name(name) {
                Some(t) => Some(Some(t)),
                None => {
                    let message = unknown_choice("field type", name, &field_type_names());
                    ctx.error(&at("type"), format!("{place}: {message}"));
                    None
                }
            },
        };
        let tolerance = match (&spec.tolerance, ty) {
            (Some(t), Some(ty)) => tolerance(t, ty, &at("tolerance"), &place, ctx).map(Some),
            _ => Some(None),
        };
        let Some((owner, replica)) = columns else {
            continue;
        };
        let mut names_ok = true;
        for (side, col) in [("owner", &owner), ("replica", &replica)] {
            if let Err(e) = validate_identifier("column", col) {
                ctx.error(&at(side), format!("{place}: {e}"));
                names_ok = false;
            }
        }
        let same_owner = defs.iter().position(|d| d.owner == owner);
        let same_replica = defs.iter().position(|d| d.replica == replica);
        if let Some(j) = same_owner {
            ctx.error(
                &[key("fields"), Seg::Index(i)],
                format!(
                    "{place}: owner column `{owner}` is already compared by [[fields]] #{}",
                    j + 1
                ),
            );
        } else if let Some(j) = same_replica {
            ctx.error(
                &[key("fields"), Seg::Index(i)],
                format!(
                    "{place}: replica column `{replica}` is already compared by [[fields]] #{}",
                    j + 1
                ),
            );
        }
        if let (true, Some(ty), Some(tolerance)) = (names_ok, ty, tolerance) {
            defs.push(FieldDef {
                owner,
                replica,
                ty,
                tolerance,
                trim: spec.trim,
                ignore_case: spec.ignore_case,
            });
        }
    }
    (ctx.errors.len() == before).then_some(defs)
}

fn tolerance(
    spec: &ToleranceSpec,
    ty: Option<FieldType>,
    at: &[Seg],
    place: &str,
    ctx: &mut Ctx<'_>,
) -> Option<Tolerance> {
    let given: Vec<(&str, f64)> = [
        ("absolute", spec.absolute),
        ("relative", spec.relative),
        ("seconds", spec.seconds),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let [(kind, value)] = given[..] else {
        let message = if given.is_empty() {
            "`tolerance` needs one of `absolute`, `relative` or `seconds`"
        } else {
            "`tolerance` takes exactly one of `absolute`, `relative` or `seconds`"
        };
        ctx.error(at, format!("{place}: {message}"));
        return None;
    };
    if !value.is_finite() || value < 0.0 {
        ctx.error(
            at,
            format!("{place}: `tolerance.{kind}` must be a non-negative number, not {value}"),
        );
        return None;
    }
    use FieldType::{Decimal, Float, Integer, Time, Timestamp};
    let (fits, applies_to) = match kind {
        "seconds" => (matches!(ty, None | Some(Timestamp | Time)), "timestamp and time"),
        _ => (
            matches!(ty, None | Some(Integer | Decimal | Float)),
            "integer, decimal and float",
        ),
    };
    if !fits {
        let ty = ty.map_or("untyped", FieldType::name);
        ctx.error(
            at,
            format!("{place}: `tolerance.{kind}` only applies to {applies_to} fields, not {ty}"),
        );
        return None;
    }
    Some(match kind {
        "absolute" => Tolerance::Absolute(value),
        "relative" => Tolerance::Relative(value),
        _ => Tolerance::Seconds(value),
    })
}

fn compare_settings(spec: CompareSpec, any_sql: bool, ctx: &mut Ctx<'_>) -> Option<CompareSettings> {
    let at = |k: &str| [key("compare"), key(k)];
    let before = ctx.errors.len();
    let page_size = match spec.page_size {
        None => DEFAULT_PAGE_SIZE,
        Some(n) => match usize::try_from(n) {
            Ok(n) if n >= 1 => n,
            _ => {
                ctx.error(
                    &at("page_size"),
                    format!("[compare]: `page_size` must be at least 1, not {n}"),
                );
                DEFAULT_PAGE_SIZE
            }
        },
    };
    let changed_at = spec.changed_at.map(|c| {
        for (side, col) in [("owner", &c.owner), ("replica", &c.replica)] {
            if let Err(e) = validate_identifier("changed_at column", col) {
                ctx.error(
                    &[key("compare"), key("changed_at"), key(side)],
                    format!("[compare] `changed_at.{side}`: {e}"),
                );
            }
        }
        ChangedAt {
            owner: c.owner,
            replica: c.replica,
        }
    });
    let mut duration = |name: &str, text: Option<&str>| -> Option<Duration> {
        let parsed = parse_duration(text?);
        parsed
            .map_err(|e| ctx.error(&at(name), format!("[compare] `{name}`: {e}")))
            .ok()
    };
    let staleness = duration("staleness", spec.staleness.as_deref());
    let recheck_after = duration("recheck_after", spec.recheck_after.as_deref());
    if spec.staleness.is_some() && changed_at.is_none() {
        ctx.error(
            &at("staleness"),
            "[compare]: `staleness` needs `changed_at` (the column holding each side's \
             last-change time)"
                .to_string(),
        );
    }
    if ctx.errors.len() != before {
        return None;
    }
    Some(CompareSettings {
        page_size,
        changed_at,
        staleness,
        recheck: spec.recheck.unwrap_or(any_sql),
        recheck_after: recheck_after.unwrap_or(Duration::ZERO),
    })
}

fn report_settings(spec: ReportSpec, ctx: &mut Ctx<'_>) -> Option<ReportSettings> {
    let max_records = match spec.max_records {
        None => DEFAULT_MAX_RECORDS,
        Some(n) => match u64::try_from(n) {
            Ok(n) => n,
            Err(_) => {
                ctx.error(
                    &[key("report"), key("max_records")],
                    format!("[report]: `max_records` must not be negative, not {n}"),
                );
                return None;
            }
        },
    };
    Some(ReportSettings { max_records })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: &str = "type = \"csv\"\npath = \"o.csv\"\nkey = [\"id\"]\n";
    const REPLICA: &str = "type = \"sqlite\"\nurl = \"sqlite://r.db\"\ntable = \"orders\"\nkey = [\"id\"]\n";

    fn env(name: &str) -> Option<String> {
        match name {
            "DATA" => Some("/srv/data".into()),
            "TABLE" => Some("orders_v2".into()),
            _ => None,
        }
    }

    fn load(text: &str) -> Result<Job, Vec<JobError>> {
        load_job_from_str(text, Path::new("/jobs/orders.toml"), &env)
    }

    /// A job with `top` before the sections, the two source bodies, and `rest` after.
    fn doc(top: &str, owner: &str, replica: &str, rest: &str) -> String {
        format!("{top}\n[owner]\n{owner}\n[replica]\n{replica}\n{rest}")
    }

    fn errors(text: &str) -> Vec<JobError> {
        match load(text) {
            Ok(job) => panic!("expected errors, got {job:?}\n--- job:\n{text}"),
            Err(errors) => errors,
        }
    }

    #[test]
    fn a_full_job_produces_every_setting() {
        let text = r#"
version = 1
name = "orders-mirror"
description = "orders copied to reporting"
relation = "reference"

[owner]
type = "csv"
path = "data/orders.csv"
key = ["id"]
delimiter = "\t"
header = false
null = "NULL"
types = { id = "integer", placed_at = "timestamp" }

[replica]
type = "sqlite"
url = "sqlite://data/reporting.db?mode=ro"
table = "main.order_lines"
key = ["order_id"]
where = "status <> 'draft'"
row_key = ["order_id", "line_no"]

[[fields]]
owner = "amount"
replica = "total_amount"
type = "decimal"
tolerance = { absolute = 0.01 }

[[fields]]
name = "status"
ignore_case = true
trim = true

[[fields]]
name = "shipped_at"
type = "timestamp"
tolerance = { seconds = 1 }

[[fields]]
name = "qty"
tolerance = { relative = 1 }

[compare]
page_size = 250
changed_at = { owner = "updated_at", replica = "synced_at" }
staleness = "5m"
recheck = false
recheck_after = "30s"

[report]
max_records = 10
"#;
        let job = load(text).unwrap();
        assert_eq!(job.name, "orders-mirror");
        assert_eq!(job.description.as_deref(), Some("orders copied to reporting"));
        assert_eq!(job.path, Path::new("/jobs/orders.toml"));
        assert_eq!(job.relation, Relation::Reference);

        let SourceConfig::Csv(csv) = &job.owner.config else {
            panic!("owner is not csv: {:?}", job.owner)
        };
        assert_eq!(csv.path, Path::new("/jobs/data/orders.csv"));
        assert_eq!((csv.delimiter, csv.header), (b'\t', false));
        assert_eq!(csv.null.as_deref(), Some("NULL"));
        assert_eq!(
            csv.types,
            [
                ("id".to_string(), FieldType::Integer),
                ("placed_at".to_string(), FieldType::Timestamp)
            ]
        );
        assert_eq!(job.owner.key, ["id"]);
        assert!(job.owner.row_key.is_empty());

        let SourceConfig::Sqlite(db) = &job.replica.config else {
            panic!("replica is not sqlite: {:?}", job.replica)
        };
        assert_eq!(db.path, Path::new("/jobs/data/reporting.db"));
        assert_eq!(db.url, "sqlite://data/reporting.db?mode=ro");
        assert_eq!(db.target, SqlTarget::Table("main.order_lines".into()));
        assert_eq!(db.filter.as_deref(), Some("status <> 'draft'"));
        assert_eq!(job.replica.key, ["order_id"]);
        assert_eq!(job.replica.row_key, ["order_id", "line_no"]);

        let fields = job.fields.unwrap();
        assert_eq!(
            fields[0],
            FieldDef {
                owner: "amount".into(),
                replica: "total_amount".into(),
                ty: Some(FieldType::Decimal),
                tolerance: Some(Tolerance::Absolute(0.01)),
                trim: false,
                ignore_case: false,
            }
        );
        assert_eq!(
            fields[1],
            FieldDef {
                trim: true,
                ignore_case: true,
                ..FieldDef::same("status")
            }
        );
        assert_eq!(fields[2].tolerance, Some(Tolerance::Seconds(1.0)));
        assert_eq!(fields[3].tolerance, Some(Tolerance::Relative(1.0)));
        assert_eq!(fields[3].ty, None);

        let c = &job.compare;
        assert_eq!(c.page_size, 250);
        let changed_at = c.changed_at.as_ref().unwrap();
        assert_eq!(
            (changed_at.owner.as_str(), changed_at.replica.as_str()),
            ("updated_at", "synced_at")
        );
        assert_eq!(c.staleness, Some(Duration::from_secs(300)));
        assert!(!c.recheck);
        assert_eq!(c.recheck_after, Duration::from_secs(30));
        assert_eq!(job.report.max_records, 10);
    }

    #[test]
    fn omitted_settings_take_their_defaults() {
        let job = load(&doc("", OWNER, REPLICA, "")).unwrap();
        assert_eq!(job.name, "orders");
        assert_eq!(job.description, None);
        assert_eq!(job.relation, Relation::Mirror);
        assert!(job.fields.is_none());
        assert_eq!(job.compare.page_size, 5000);
        assert!(job.compare.changed_at.is_none());
        assert_eq!(job.compare.staleness, None);
        assert!(job.compare.recheck, "a sqlite side turns recheck on");
        assert_eq!(job.compare.recheck_after, Duration::ZERO);
        assert_eq!(job.report.max_records, 1_000_000);
        let SourceConfig::Csv(csv) = &job.owner.config else {
            panic!()
        };
        assert_eq!((csv.delimiter, csv.header, csv.null.clone()), (b',', true, None));

        let files_only = doc(
            "",
            OWNER,
            "type = \"jsonl\"\npath = \"r.jsonl\"\nkey = [\"id\"]",
            "",
        );
        assert!(!load(&files_only).unwrap().compare.recheck);
    }

    #[test]
    fn paths_resolve_against_the_job_folder() {
        let cases = [
            ("sqlite://r.db", "/jobs/r.db"),
            ("sqlite://data/x.db?mode=ro", "/jobs/data/x.db"),
            ("sqlite:data/x.db", "/jobs/data/x.db"),
            ("sqlite:///abs/x.db", "/abs/x.db"),
            ("sqlite:/abs/x.db", "/abs/x.db"),
        ];
        for (url, expected) in cases {
            let replica = format!("type = \"sqlite\"\nurl = \"{url}\"\ntable = \"t\"\nkey = [\"id\"]");
            let job = load(&doc("", OWNER, &replica, "")).unwrap();
            assert_eq!(job.replica.config.path().unwrap(), Path::new(expected), "{url}");
        }
        let owner = "type = \"jsonl\"\npath = \"/abs/o.jsonl\"\nkey = [\"id\"]";
        let job = load(&doc("", owner, REPLICA, "")).unwrap();
        assert_eq!(job.owner.config.path().unwrap(), Path::new("/abs/o.jsonl"));

        let relative = load_job_from_str(&doc("", OWNER, REPLICA, ""), Path::new("jobs/a.toml"), &env);
        assert_eq!(
            relative.unwrap().owner.config.path().unwrap(),
            Path::new("jobs/o.csv")
        );
        let bare = load_job_from_str(&doc("", OWNER, REPLICA, ""), Path::new("a.toml"), &env);
        assert_eq!(bare.unwrap().owner.config.path().unwrap(), Path::new("o.csv"));
    }

    #[test]
    fn jsonl_columns_keep_their_written_order() {
        let owner = "type = \"jsonl\"\npath = \"o.jsonl\"\nkey = [\"id\"]\n\
                     columns = { zeta = \"/z\", alpha = \"/a/b\", whole = \"\" }";
        let job = load(&doc("", owner, REPLICA, "")).unwrap();
        let SourceConfig::Jsonl(jsonl) = &job.owner.config else {
            panic!()
        };
        let names: Vec<&str> = jsonl.columns.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["zeta", "alpha", "whole"]);
        assert_eq!(jsonl.columns[1].1, "/a/b");
    }

    #[test]
    fn environment_variables_expand_in_every_string() {
        let owner = "type = \"csv\"\npath = \"${DATA}/o.csv\"\nkey = [\"${KEY:-id}\"]";
        let replica = "type = \"sqlite\"\nurl = \"sqlite://${DB:-r.db}\"\ntable = \"${TABLE}\"\n\
                       key = [\"id\"]";
        let rest = "[compare]\nchanged_at = { owner = \"${COL:-updated_at}\", replica = \"u\" }\n\
                    staleness = \"${STALE:-1m}\"";
        let job = load(&doc("name = \"n-${TABLE}\"", owner, replica, rest)).unwrap();
        assert_eq!(job.name, "n-orders_v2");
        assert_eq!(job.owner.config.path().unwrap(), Path::new("/srv/data/o.csv"));
        assert_eq!(job.owner.key, ["id"]);
        assert_eq!(job.replica.config.path().unwrap(), Path::new("/jobs/r.db"));
        let SourceConfig::Sqlite(db) = &job.replica.config else {
            panic!()
        };
        assert_eq!(db.target, SqlTarget::Table("orders_v2".into()));
        assert_eq!(job.compare.changed_at.unwrap().owner, "updated_at");
        assert_eq!(job.compare.staleness, Some(Duration::from_secs(60)));
    }

    #[test]
    fn every_missing_variable_is_listed() {
        let owner = "type = \"csv\"\npath = \"${NOPE_A}/o.csv\"\nkey = [\"${NOPE_B}\"]";
        let replica = "type = \"sqlite\"\nurl = \"sqlite://${NOPE_A}\"\ntable = \"t\"\nkey = [\"id\"]";
        let errs = errors(&doc("", owner, replica, "[compare]\npag_size = 1"));
        let messages: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "[owner] `path`: environment variable `NOPE_A` is not set (and has no default)",
                "[owner] `key.0`: environment variable `NOPE_B` is not set (and has no default)",
                "unknown key `pag_size` in [compare]; did you mean `page_size`?",
            ]
        );
        assert_eq!(errs[0].location, Some((4, 8)));
        assert_eq!(errs[0].path, Path::new("/jobs/orders.toml"));
    }

    #[test]
    fn server_sources_keep_their_url_and_redact_it() {
        let o = "type = \"postgres\"\nurl = \"${PG_URL}\"\nschema = \"sales\"\ntable = \"orders\"\n\
                 where = \"id > 0\"\nkey = [\"id\"]";
        let r = "type = \"mysql\"\nurl = \"mysql://root:hunter2@db:3307/rep\"\nquery = \"SELECT * FROM o\"\nkey = [\"id\"]";
        let text = doc("", o, r, "");
        let job = load_job_from_str(&text, Path::new("/jobs/x.toml"), &|n: &str| {
            (n == "PG_URL").then(|| "postgres://app:s3cret@pg:5432/orders".to_string())
        })
        .unwrap();
        let SourceConfig::Postgres(pg) = &job.owner.config else {
            panic!("owner is not postgres: {:?}", job.owner)
        };
        assert_eq!(pg.url.expose(), "postgres://app:s3cret@pg:5432/orders");
        assert_eq!(pg.target, SqlTarget::Table("sales.orders".into()));
        assert_eq!(pg.filter.as_deref(), Some("id > 0"));
        assert_eq!(
            job.owner.config.describe(),
            "postgres postgres://app:****@pg:5432/orders"
        );
        assert_eq!(job.owner.config.path(), None);
        assert!(job.compare.recheck, "a server side turns recheck on");
        let SourceConfig::Mysql(my) = &job.replica.config else {
            panic!("replica is not mysql")
        };
        assert_eq!(my.target, SqlTarget::Query("SELECT * FROM o".into()));
        let debug = format!("{job:?}");
        assert!(!debug.contains("s3cret") && !debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn bad_server_sources_are_reported_in_our_words() {
        let o = OWNER;
        let pg = "type = \"postgres\"\nurl = \"postgres://u:pw@h/db\"\ntable = \"orders\"\nkey = [\"id\"]\n";
        let cases: Vec<(String, &str)> = vec![
            (
                doc("", o, &pg.replace("postgres://", "mysql://"), ""),
                "[replica]: `url` must start with `postgres://` (e.g. \"postgres://user:password@host:5432/db\"), not mysql://u:****@h/db",
            ),
            (
                doc("", o, &pg.replace("type = \"postgres\"", "type = \"mysql\""), ""),
                "[replica]: `url` must start with `mysql://`",
            ),
            (
                doc("", o, &format!("{pg}schema = \"s\""), "").replace("\"orders\"", "\"a.orders\""),
                "[replica]: give the schema in `schema` or in `table` (`a.orders`), not both",
            ),
            (
                doc("", o, &pg.replace("table = \"orders\"", "schema = \"s\""), ""),
                "[replica]: `schema` needs `table`",
            ),
            (
                doc("", o, &format!("{pg}query = \"SELECT 1\""), ""),
                "[replica]: give either `table` or `query`, not both",
            ),
            (
                doc("", o, &format!("{pg}where = \" \""), ""),
                "[replica]: `where` is empty",
            ),
            (
                doc("", o, &pg.replace("url", "path"), ""),
                "[replica]: a database server source takes `url",
            ),
            (
                doc("", o, &pg.replace("u:pw@h", "u:p/w@h"), ""),
                "[replica]: the password in `url` holds a `/`, `?` or `#`: percent-encode it",
            ),
        ];
        for (text, expected) in cases {
            let errs = errors(&text);
            assert!(
                errs.iter().any(|e| e.message.starts_with(expected)),
                "expected {expected:?}, got {:?}",
                errs.iter().map(|e| &e.message).collect::<Vec<_>>()
            );
            let all = format!("{errs:?}");
            assert!(!all.contains(":pw@"), "password leaked: {all}");
        }
    }

    #[test]
    fn bad_inputs_are_reported_in_our_words() {
        let o = OWNER;
        let r = REPLICA;
        let field = |body: &str| format!("[[fields]]\n{body}\n");
        let cases: Vec<(String, &str)> = vec![
            (
                doc("", o, r, "[compare]\npag_size = 10"),
                "unknown key `pag_size` in [compare]; did you mean `page_size`?",
            ),
            (
                doc("nmae = \"x\"", o, r, ""),
                "unknown key `nmae`; did you mean `name`?",
            ),
            (
                doc("", &format!("{o}delimter = \";\""), r, ""),
                "unknown key `delimter` in [owner]; did you mean `delimiter`?",
            ),
            (
                doc("", o, r, "[report]\nbanana = 1"),
                "unknown key `banana` in [report] (expected one of `max_records`)",
            ),
            (
                doc("", o, r, &field("name = \"a\"\ntolerance = { abs = 1 }")),
                "unknown key `abs` in [[fields]] #1 `tolerance`",
            ),
            (
                doc("", &format!("{o}where = \"x > 1\""), r, ""),
                "[owner]: `where` is only for SQL sources",
            ),
            (
                doc("", o, &r.replace("url", "path"), ""),
                "[replica]: an sqlite source takes `url",
            ),
            (
                doc("", &o.replace("csv\"", "sqllite\""), r, ""),
                "[owner]: unknown source type `sqllite`; did you mean `sqlite`? (expected one of sqlite, csv, jsonl, postgres, mysql)",
            ),
            (
                doc("", o, &r.replace("sqlite\"", "http\""), ""),
                "[replica]: source type `http` is not supported yet (expected one of sqlite, csv, jsonl, postgres, mysql)",
            ),
            (
                doc("", "path = \"o.csv\"\nkey = [\"id\"]", r, ""),
                "[owner]: missing required key `type` (one of sqlite, csv, jsonl, postgres, mysql)",
            ),
            (
                doc("relation = \"mirorr\"", o, r, ""),
                "unknown relation `mirorr`; did you mean `mirror`? (expected one of mirror, reference)",
            ),
            (
                doc("", o, r, &field("name = \"a\"\ntype = \"decimel\"")),
                "[[fields]] #1: unknown field type `decimel`; did you mean `decimal`? (expected one of text, integer, decimal",
            ),
            (
                doc("version = 2", o, r, ""),
                "unsupported job version 2; this recon reads version 1",
            ),
            (
                doc("", "type = \"csv\"\npath = \"o.csv\"", r, ""),
                "[owner]: missing required key `key`",
            ),
            (
                doc("", "type = \"csv\"\nkey = [\"id\"]", r, ""),
                "[owner]: missing required key `path`",
            ),
            (
                doc("", &o.replace("[\"id\"]", "[]"), r, ""),
                "[owner]: `key` must list at least one column",
            ),
            (
                doc("", &o.replace("[\"id\"]", "[\"id\", \"id\"]"), r, ""),
                "[owner]: `key` lists `id` more than once",
            ),
            (
                doc("", &o.replace("[\"id\"]", "\"id\""), r, ""),
                "[owner] `key`: expected an array, found string \"id\"",
            ),
            (
                doc("", &format!("{o}header = \"yes\""), r, ""),
                "[owner] `header`: expected a boolean, found string \"yes\"",
            ),
            (format!("[replica]\n{r}"), "missing required section [owner]"),
            (
                doc("", o, r, &field("name = \"a\"\ntolerance = { absolute = -1 }")),
                "[[fields]] #1: `tolerance.absolute` must be a non-negative number, not -1",
            ),
            (
                doc(
                    "",
                    o,
                    r,
                    &field("name = \"a\"\ntolerance = { absolute = 1, relative = 1 }"),
                ),
                "`tolerance` takes exactly one of `absolute`, `relative` or `seconds`",
            ),
            (
                doc("", o, r, &field("name = \"a\"\ntolerance = {}")),
                "`tolerance` needs one of `absolute`, `relative` or `seconds`",
            ),
            (
                doc("", o, r, &field("name = \"a\"\ntolerance = { absolute = \"x\" }")),
                "[[fields]] #1 `tolerance.absolute`: expected a number, found string \"x\"",
            ),
            (
                doc(
                    "",
                    o,
                    r,
                    &field("name = \"a\"\ntype = \"timestamp\"\ntolerance = { absolute = 1 }"),
                ),
                "`tolerance.absolute` only applies to integer, decimal and float fields, not timestamp",
            ),
            (
                doc(
                    "",
                    o,
                    r,
                    &field("name = \"a\"\ntype = \"decimal\"\ntolerance = { seconds = 1 }"),
                ),
                "`tolerance.seconds` only applies to timestamp and time fields, not decimal",
            ),
            (
                doc(
                    "",
                    o,
                    r,
                    "[compare]\nstaleness = \"5x\"\nchanged_at = { owner = \"u\", replica = \"u\" }",
                ),
                "[compare] `staleness`: invalid duration `5x`: unknown unit `x`",
            ),
            (
                doc("", o, r, "[compare]\nrecheck_after = \"90\""),
                "[compare] `recheck_after`: invalid duration `90`: a unit is required",
            ),
            (
                doc("", o, r, "[compare]\nstaleness = \"5m\""),
                "[compare]: `staleness` needs `changed_at`",
            ),
            (
                doc("", o, r, "[compare]\nchanged_at = { owner = \"u\" }"),
                "[compare] `changed_at`: missing required key `replica`",
            ),
            (
                doc("", o, r, "[compare]\npage_size = 0"),
                "[compare]: `page_size` must be at least 1, not 0",
            ),
            (
                doc("", o, r, "[compare]\npage_size = \"big\""),
                "[compare] `page_size`: expected an integer, found string \"big\"",
            ),
            (
                doc("", o, r, "[report]\nmax_records = -1"),
                "[report]: `max_records` must not be negative",
            ),
            (
                doc("", o, &format!("{r}row_key = [\"line\"]"), ""),
                "[replica]: `row_key` is only for relation = \"reference\" jobs",
            ),
            (
                doc(
                    "relation = \"reference\"",
                    &format!("{o}row_key = [\"x\"]"),
                    r,
                    "",
                ),
                "[owner]: `row_key` is only for the replica",
            ),
            (
                doc("", o, &format!("{r}query = \"SELECT 1\""), ""),
                "[replica]: give either `table` or `query`, not both",
            ),
            (
                doc("", o, &r.replace("table = \"orders\"\n", ""), ""),
                "[replica]: give `table` or `query`",
            ),
            (
                doc(
                    "",
                    o,
                    &r.replace("table = \"orders\"", "query = \"DELETE FROM x\""),
                    "",
                ),
                "[replica]: `query` must be a SELECT statement",
            ),
            (
                doc("", o, &r.replace("\"orders\"", "\"a.b.c\""), ""),
                "[replica]: table name `a.b.c` has more than one dot",
            ),
            (
                doc("", o, &r.replace("\"orders\"", "\".t\""), ""),
                "[replica]: table name `.t` has an empty schema or table part",
            ),
            (
                doc("", o, &r.replace("sqlite://r.db", "mysql://r"), ""),
                "[replica]: `url` must start with `sqlite://`",
            ),
            (
                doc("", o, &r.replace("[\"id\"]", "[\"\"]"), ""),
                "[replica]: key column name is empty",
            ),
            (
                doc("", o, &r.replace("[\"id\"]", "[\"a\\u0001\"]"), ""),
                "[replica]: key column name \"a\\u{1}\" contains a control character",
            ),
            (
                doc("", o, &r.replace("[\"id\"]", "[\"a\", \"b\"]"), ""),
                "a mirror job's keys must match column for column",
            ),
            (
                doc(
                    "",
                    o,
                    r,
                    &format!(
                        "[[fields]]\nname = \"a\"\n{}",
                        field("name = \"b\"\nowner = \"b\"")
                    ),
                ),
                "[[fields]] #2: give either `name` or both `owner` and `replica`",
            ),
            (
                doc("", o, r, &field("owner = \"b\"")),
                "[[fields]] #1: give either `name` or both `owner` and `replica`",
            ),
            (
                doc(
                    "",
                    o,
                    r,
                    &format!(
                        "{}{}",
                        field("name = \"a\""),
                        field("owner = \"a\"\nreplica = \"b\"")
                    ),
                ),
                "[[fields]] #2: owner column `a` is already compared by [[fields]] #1",
            ),
            (
                doc("name = \"orders/x\"", o, r, ""),
                "job name `orders/x` may only contain letters, digits, `-`, `_` and `.`",
            ),
            (
                doc("name = \"..\"", o, r, ""),
                "job name `..` may not be `.` or contain `..`",
            ),
            (doc("name = \"\"", o, r, ""), "job name is empty"),
            (
                doc("", &format!("{o}delimiter = \";;\""), r, ""),
                "[owner]: `delimiter` must be one ASCII character",
            ),
            (
                doc(
                    "",
                    "type = \"jsonl\"\npath = \"o\"\nkey = [\"id\"]\ncolumns = { p = \"price\" }",
                    r,
                    "",
                ),
                "[owner] `columns`: JSON pointer \"price\" for `p` must start with `/`",
            ),
            (
                doc("", &o.replace("o.csv", "${oops"), r, ""),
                "[owner] `path`: unterminated `${`",
            ),
            (
                doc("", &format!("{o}types = {{ id = \"int\" }}"), r, ""),
                "[owner] `types`: column `id`: unknown field type `int` (expected one of text, integer,",
            ),
            (
                doc(
                    "",
                    "type = \"jsonl\"\npath = \"o\"\nkey = [\"id\"]\ntypes = { \"\" = \"uuid\" }",
                    r,
                    "",
                ),
                "[owner] `types`: column name is empty",
            ),
        ];
        for (text, expected) in cases {
            let errs = errors(&text);
            assert!(
                errs.iter().any(|e| e.message.contains(expected)),
                "expected {expected:?}, got {errs:#?}\n--- job:\n{text}"
            );
            assert!(errs.iter().all(|e| !e.message.ends_with('.')), "{errs:#?}");
        }
    }

    #[test]
    fn errors_point_at_the_line_and_column() {
        let errs = errors("name = \"x\"\n[owner\ntype = \"csv\"");
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].location, Some((2, 7)), "{errs:?}");
        assert!(errs[0].message.starts_with("toml syntax error: "), "{errs:?}");
        assert!(
            errs[0]
                .to_string()
                .starts_with("/jobs/orders.toml:2:7: toml syntax error")
        );

        let errs = errors(&doc("", &format!("{OWNER}delimter = \";\""), REPLICA, ""));
        assert_eq!(errs[0].location, Some((6, 1)), "{errs:?}");
        let errs = errors(&doc("", OWNER, REPLICA, "[compare]\n  pag_size = 10"));
        assert_eq!(errs[0].location, Some((14, 3)), "{errs:?}");
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let text = doc(
            "name = \"a b\"",
            &OWNER.replace("[\"id\"]", "[]"),
            &format!("{REPLICA}tabel = \"x\""),
            "[compare]\npag_size = 10\npage_size = 0\nstaleness = \"soon\"",
        );
        let errs = errors(&text);
        let messages: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
        for expected in [
            "job name `a b`",
            "[owner]: `key` must list",
            "unknown key `tabel` in [replica]; did you mean `table`?",
            "unknown key `pag_size`",
            "`page_size` must be at least 1",
            "invalid duration `soon`",
            "`staleness` needs `changed_at`",
        ] {
            assert!(
                messages.iter().any(|m| m.contains(expected)),
                "{expected}: {messages:#?}"
            );
        }
    }

    #[test]
    fn identifiers_are_checked() {
        assert_eq!(validate_identifier("column", "amount"), Ok(()));
        assert_eq!(validate_identifier("table", "sales.orders"), Ok(()));
        assert_eq!(validate_identifier("column", "a.b.c"), Ok(()));
        assert_eq!(validate_identifier("column", "with space"), Ok(()));
        assert_eq!(validate_identifier("column", &"x".repeat(128)), Ok(()));
        let long = validate_identifier("column", &"x".repeat(129)).unwrap_err();
        assert!(long.contains("longer than 128 characters"), "{long}");
        assert!(
            validate_identifier("column", "a\0b")
                .unwrap_err()
                .contains("control")
        );
        assert!(validate_identifier("table", "a..b").is_err());
        assert!(
            validate_identifier("table", "")
                .unwrap_err()
                .contains("table name is empty")
        );
    }

    #[test]
    fn suggestions_only_for_likely_typos() {
        let keys = ["page_size", "changed_at", "staleness", "recheck", "recheck_after"];
        assert_eq!(suggest("pag_size", &keys), Some("page_size"));
        assert_eq!(suggest("recheck_afetr", &keys), Some("recheck_after"));
        assert_eq!(suggest("stalenes", &keys), Some("staleness"));
        assert_eq!(suggest("banana", &keys), None);
        assert_eq!(suggest("x", &["key", "url"]), None);
        assert_eq!(suggest("tabel", &["table", "query"]), Some("table"));
    }

    #[test]
    fn load_paths_reads_files_and_folders() {
        let dir = tempfile::tempdir().unwrap();
        let write = |rel: &str, name: &str| {
            let path = dir.path().join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, doc(&format!("name = \"{name}\""), OWNER, REPLICA, "")).unwrap();
            path
        };
        let single = write("single.toml", "single");
        write("jobs/b.toml", "b");
        write("jobs/a.toml", "a");
        write("jobs/nested/c.toml", "c");
        fs::write(dir.path().join("jobs/notes.txt"), "not a job").unwrap();
        fs::create_dir_all(dir.path().join("empty")).unwrap();

        let jobs = load_paths(&[dir.path().join("jobs"), single.clone()]).unwrap();
        let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "single"]);
        assert_eq!(
            jobs[0].owner.config.path().unwrap(),
            dir.path().join("jobs/o.csv")
        );

        let missing = dir.path().join("nope.toml");
        let errs = load_paths(&[missing.clone(), dir.path().join("empty")]).unwrap_err();
        assert_eq!(errs[0].path, missing);
        assert_eq!(errs[0].message, "no such job file or folder");
        assert!(errs[1].message.contains("folder has no job files"), "{errs:?}");

        let twin = write("other/twin.toml", "a");
        let errs = load_paths(&[dir.path().join("jobs"), twin.clone()]).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, twin);
        assert!(
            errs[0].message.contains("job name `a` is also used by"),
            "{errs:?}"
        );
        assert!(errs[0].message.contains("a.toml"), "{errs:?}");

        let broken = dir.path().join("broken.toml");
        fs::write(&broken, "name = \"a\"\n[owner]\n").unwrap();
        let errs = load_paths(&[broken.clone(), missing]).unwrap_err();
        assert!(errs.iter().any(|e| e.path == broken), "{errs:?}");
        assert!(
            errs.iter().any(|e| e.message == "no such job file or folder"),
            "{errs:?}"
        );
    }

    #[test]
    fn load_job_reads_the_file_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env-job.toml");
        fs::write(
            &path,
            doc("", &OWNER.replace("o.csv", "${DATA}/o.csv"), REPLICA, ""),
        )
        .unwrap();
        let job = load_job_with_env(&path, &env).unwrap();
        assert_eq!(job.name, "env-job");
        assert_eq!(job.owner.config.path().unwrap(), Path::new("/srv/data/o.csv"));
        let errs = load_job(&dir.path().join("absent.toml")).unwrap_err();
        assert!(errs[0].message.starts_with("cannot read job file: "), "{errs:?}");
    }
}
