//! One job end to end: open both sources, resolve what to compare, merge-join the two
//! streams, recheck what looks inconsistent, and write the reports. The only module that
//! knows sources, the compare engine and the report writers together.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::compare::indexed::{IndexedSide, compare_indexed};
use crate::compare::merge::{Cursor, GroupSink, MergeError, merge};
use crate::compare::packed::{BatchCursor, merge_packed};
use crate::compare::recheck::{Pending, Reread, recheck};
use crate::compare::{CompareField, ComparePlan, Comparer, FieldRule, GroupOutcome, Tally};
use crate::job::{FieldDef, Job, Side, Tolerance};
use crate::report::record::{FieldCounts, REPORT_SCHEMA_VERSION};
use crate::report::{Format, Record, ReportError, ReportHeader, Reports, Status, Summary};
use crate::source::batch::RowBatch;
use crate::source::file::blocking;
use crate::source::{self, Column, FieldType, Key, KeyType, Row, ScanSpec, Source, SourceError};

/// How this run behaves (from flags, never from job files).
#[derive(Clone)]
pub struct RunOptions {
    /// The folder that receives one report folder per job.
    pub out_dir: PathBuf,
    /// Record formats to write besides the summary.
    pub formats: Vec<Format>,
    /// Memory the sources of one job may use to order unsorted files.
    pub memory_budget: usize,
    /// Receives progress, if anyone shows it.
    pub observer: Option<Arc<dyn Observer>>,
}

/// Watches a job's progress (the CLI's progress bar).
pub trait Observer: Send + Sync {
    /// Rows read so far from one side.
    fn rows_read(&self, job: &str, side: Side, rows: u64);
}

/// How a job ended.
#[derive(Debug)]
pub struct JobOutcome {
    /// The summary as written to `summary.json`.
    pub summary: Summary,
    /// The job's report folder.
    pub report_dir: PathBuf,
}

/// Why a job failed, with the job, the side and the source named.
#[derive(Debug)]
pub struct JobFailure {
    job: String,
    context: Option<String>,
    message: String,
}

impl fmt::Display for JobFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.context {
            Some(context) => write!(f, "job {}: {}: {}", self.job, context, self.message),
            None => write!(f, "job {}: {}", self.job, self.message),
        }
    }
}

struct Described {
    side: Side,
    description: String,
}

impl Described {
    fn fail(&self, job: &Job, error: impl fmt::Display) -> JobFailure {
        JobFailure {
            job: job.name.clone(),
            context: Some(format!("{} {}", self.side, self.description)),
            message: error.to_string(),
        }
    }
}

fn fail_job(job: &Job, error: impl fmt::Display) -> JobFailure {
    JobFailure {
        job: job.name.clone(),
        context: None,
        message: error.to_string(),
    }
}

/// Runs one job and writes its reports. Never panics on bad data: every failure becomes
/// a `failed` summary whose `error` names the job, the side and the source.
pub async fn run_job(job: &Job, options: &RunOptions) -> JobOutcome {
    let started_at = Utc::now();
    let report_dir = options.out_dir.join(&job.name);
    info!(job = %job.name, "Job started.");
    let mut summary = Summary {
        schema_version: REPORT_SCHEMA_VERSION,
        job: job.name.clone(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: rfc3339(started_at),
        finished_at: String::new(),
        status: Status::Failed,
        error: None,
        owner_rows: 0,
        replica_rows: 0,
        missing_in_replica: 0,
        missing_in_owner: 0,
        mismatched_rows: 0,
        field_mismatches: FieldCounts::default(),
        duplicate_keys: 0,
        dangling_references: 0,
        skipped_recent: 0,
        resolved_in_flight: 0,
        truncated: false,
        records_written: 0,
        owner: describe_config(job, Side::Owner),
        replica: describe_config(job, Side::Replica),
    };
    let mut reports = match Reports::in_dir(&report_dir, &options.formats, job.report.max_records) {
        Ok(reports) => reports,
        Err(e) => {
            let failure = fail_job(job, e);
            summary.error = Some(failure.to_string());
            summary.finished_at = rfc3339(Utc::now());
            info!(job = %job.name, error = %failure, "Job failed.");
            return JobOutcome { summary, report_dir };
        }
    };
    let mut run = JobRun {
        job,
        options,
        started_at,
        summary,
        tally: Tally::default(),
    };
    match run.execute(&mut reports).await {
        Ok(()) => {
            let summary = &mut run.summary;
            summary.status = if run.tally.is_consistent() {
                Status::Consistent
            } else {
                Status::Inconsistent
            };
            summary.finished_at = rfc3339(Utc::now());
            summary.records_written = reports.written();
            summary.truncated = reports.truncated();
            if let Err(e) = reports.finish(summary) {
                fail_summary(job, summary, fail_job(job, e));
                if let Err(e) = crate::report::write_summary(&report_dir, summary) {
                    error!(job = %job.name, error = %e, "Could not write the failed job's summary.");
                }
            }
        }
        Err(failure) => {
            fail_summary(job, &mut run.summary, failure);
            if let Err(e) = reports.finish_failed(&report_dir, &run.summary) {
                error!(job = %job.name, error = %e, "Could not write the failed job's summary.");
            }
        }
    }
    let summary = run.summary;
    info!(
        job = %job.name,
        status = ?summary.status,
        owner_rows = summary.owner_rows,
        replica_rows = summary.replica_rows,
        "Job finished."
    );
    JobOutcome { summary, report_dir }
}

/// A problem `recon check --connect` found in one job, naming the job, side and source.
#[derive(Debug)]
pub struct SourceProblem {
    /// True when a source could not be reached at all (a run would fail, status 3);
    /// false when the job does not fit the data (a definition problem, status 2).
    pub unreachable: bool,
    /// The message, credentials redacted.
    pub message: String,
}

/// Connects to both sources of a job and checks that its table or query, every key and
/// field column exist and that each field's two columns have comparable types, without
/// reading any rows. Returns every problem found.
pub async fn check_sources(job: &Job) -> Vec<SourceProblem> {
    let (owner, replica) = tokio::join!(source::open(&job.owner), source::open(&job.replica));
    let mut problems = Vec::new();
    let mut opened = Vec::new();
    for (side, result) in [(Side::Owner, owner), (Side::Replica, replica)] {
        match result {
            Ok(source) => opened.push((side, source)),
            Err(e) => problems.push(SourceProblem {
                unreachable: matches!(e, source::SourceError::Open(_)),
                message: Described {
                    side,
                    description: describe_config(job, side),
                }
                .fail(job, e)
                .to_string(),
            }),
        }
    }
    let [(_, mut owner), (_, mut replica)] = match <[_; 2]>::try_from(opened) {
        Ok(both) => both,
        Err(_) => return problems,
    };
    let enforced = [owner.enforces_types(), replica.enforces_types()];
    let found = match resolve(job, [owner.columns(), replica.columns()], enforced, 0, Utc::now()) {
        Err(found) => found,
        Ok(plan) => {
            let mut found = plan.incomparable;
            let (o, r) = tokio::join!(owner.probe(&plan.owner_scan), replica.probe(&plan.replica_scan));
            found.extend(o.err().map(|e| (Side::Owner, e.to_string())));
            found.extend(r.err().map(|e| (Side::Replica, e.to_string())));
            found
        }
    };
    let described = |side: Side| Described {
        side,
        description: if side == Side::Owner {
            owner.describe()
        } else {
            replica.describe()
        },
    };
    problems.extend(found.into_iter().map(|(side, message)| SourceProblem {
        unreachable: false,
        message: described(side).fail(job, message).to_string(),
    }));
    problems
}

fn fail_summary(job: &Job, summary: &mut Summary, failure: JobFailure) {
    info!(job = %job.name, error = %failure, "Job failed.");
    summary.status = Status::Failed;
    summary.error = Some(failure.to_string());
    summary.finished_at = rfc3339(Utc::now());
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

struct JobRun<'a> {
    job: &'a Job,
    options: &'a RunOptions,
    started_at: DateTime<Utc>,
    summary: Summary,
    tally: Tally,
}

impl JobRun<'_> {
    async fn execute(&mut self, reports: &mut Reports) -> Result<(), JobFailure> {
        let job = self.job;
        let owner_side = Described {
            side: Side::Owner,
            description: describe_config(job, Side::Owner),
        };
        let replica_side = Described {
            side: Side::Replica,
            description: describe_config(job, Side::Replica),
        };
        let (owner, replica) = tokio::join!(source::open(&job.owner), source::open(&job.replica));
        let mut owner = owner.map_err(|e| owner_side.fail(job, e))?;
        let owner_side = Described {
            side: Side::Owner,
            description: owner.describe(),
        };
        self.summary.owner = owner_side.description.clone();
        let mut replica = replica.map_err(|e| replica_side.fail(job, e))?;
        let replica_side = Described {
            side: Side::Replica,
            description: replica.describe(),
        };
        self.summary.replica = replica_side.description.clone();

        let plan = resolve(
            job,
            [owner.columns(), replica.columns()],
            [owner.enforces_types(), replica.enforces_types()],
            self.options.memory_budget,
            self.started_at,
        )
        .map_err(|problems| {
            // A run stops at the first problem; `recon check --connect` lists them all.
            let (side, message) = problems
                .into_iter()
                .next()
                .unwrap_or((Side::Owner, String::new()));
            let described = if side == Side::Owner {
                &owner_side
            } else {
                &replica_side
            };
            described.fail(job, message)
        })?;
        for (_, message) in &plan.incomparable {
            warn!(job = %job.name, "{message}");
        }
        self.tally = Tally::new(plan.compare.fields.len());
        self.summary.field_mismatches = FieldCounts::default();
        reports.begin(&plan.header).map_err(|e| fail_job(job, e))?;

        let mut comparer = Comparer::new(plan.compare.clone());
        let recheck_owner = job.compare.recheck && owner.is_live() && owner.can_fetch();
        let recheck_replica = job.compare.recheck && replica.is_live() && replica.can_fetch();
        let recheck_cap = if recheck_owner || recheck_replica {
            job.report.max_records as usize
        } else {
            0
        };

        let merge_failure = |e: MergeError<ReportError>| match e {
            MergeError::Source(Side::Owner, e) => owner_side.fail(job, e),
            MergeError::Source(Side::Replica, e) => replica_side.fail(job, e),
            MergeError::Sink(e) => fail_job(job, e),
        };

        if let (Some(owner_file), Some(replica_file)) = (owner.as_indexed(), replica.as_indexed()) {
            // Two files: compare digests first, read again only the rows that differ.
            let mut sink = FindingSink {
                reports,
                header: &plan.header,
                tally: &mut self.tally,
                pending: Vec::new(),
                recheck_cap: 0,
                keep_owner_rows: false,
                keep_replica_rows: false,
            };
            let observer = self.options.observer.clone();
            let progress = |side: Side, rows: u64| {
                if let Some(observer) = &observer {
                    observer.rows_read(&job.name, side, rows);
                }
            };
            let counted = blocking(|| {
                compare_indexed(
                    IndexedSide {
                        file: owner_file,
                        spec: &plan.owner_scan,
                    },
                    IndexedSide {
                        file: replica_file,
                        spec: &plan.replica_scan,
                    },
                    &mut comparer,
                    &mut sink,
                    &progress,
                )
            });
            let (owner_rows, replica_rows) = counted.map_err(merge_failure)?;
            self.tally.owner_rows = owner_rows;
            self.tally.replica_rows = replica_rows;
            self.copy_counts(&plan.header);
            return Ok(());
        }

        let mut sink = FindingSink {
            reports,
            header: &plan.header,
            tally: &mut self.tally,
            pending: Vec::new(),
            recheck_cap,
            keep_owner_rows: !recheck_owner,
            keep_replica_rows: !recheck_replica,
        };
        let (owner_scan, replica_scan) = (plan.owner_scan.clone(), plan.replica_scan.clone());
        let options = self.options;
        let (merged, owner_task, replica_task, owner_rows, replica_rows) = if owner.packs_rows()
            && replica.packs_rows()
        {
            // Two database scans: their rows are compared as packed bytes first.
            let (owner_task, owner_pages) =
                spawn_reader(owner, owner_scan, Side::Owner, job, options, next_batch);
            let (replica_task, replica_pages) =
                spawn_reader(replica, replica_scan, Side::Replica, job, options, next_batch);
            let mut owner_cursor = BatchCursor::new(Side::Owner, owner_pages);
            let mut replica_cursor = BatchCursor::new(Side::Replica, replica_pages);
            let merged = merge_packed(&mut owner_cursor, &mut replica_cursor, &mut comparer, &mut sink).await;
            let counts = (owner_cursor.rows_read(), replica_cursor.rows_read());
            (merged, owner_task, replica_task, counts.0, counts.1)
        } else {
            let (owner_task, owner_pages) =
                spawn_reader(owner, owner_scan, Side::Owner, job, options, next_page);
            let (replica_task, replica_pages) =
                spawn_reader(replica, replica_scan, Side::Replica, job, options, next_page);
            let mut owner_cursor = Cursor::new(Side::Owner, owner_pages);
            let mut replica_cursor = Cursor::new(Side::Replica, replica_pages);
            let merged = merge(&mut owner_cursor, &mut replica_cursor, &mut comparer, &mut sink).await;
            let counts = (owner_cursor.rows_read(), replica_cursor.rows_read());
            (merged, owner_task, replica_task, counts.0, counts.1)
        };
        let pending = std::mem::take(&mut sink.pending);
        self.tally.owner_rows = owner_rows;
        self.tally.replica_rows = replica_rows;
        let owner = owner_task.await;
        let replica = replica_task.await;
        self.copy_counts(&plan.header);
        merged.map_err(merge_failure)?;
        let (mut owner, mut replica) = match (owner, replica) {
            (Ok(o), Ok(r)) => (o, r),
            _ => return Err(fail_job(job, "a source reader stopped unexpectedly")),
        };

        if !pending.is_empty() {
            info!(
                job = %job.name,
                keys = pending.len(),
                after_ms = job.compare.recheck_after.as_millis() as u64,
                "Rechecking inconsistent keys."
            );
            if !job.compare.recheck_after.is_zero() {
                tokio::time::sleep(job.compare.recheck_after).await;
            }
            let tally = &mut self.tally;
            let emit_fresh = |outcome: GroupOutcome| {
                if outcome.findings.is_empty() {
                    tally.resolved_in_flight += 1;
                    tally.add(&outcome);
                    Ok(())
                } else {
                    emit(reports, &plan.header, tally, outcome)
                }
            };
            recheck(
                pending,
                recheck_owner.then_some(Reread {
                    source: owner.as_mut(),
                    spec: &plan.owner_scan,
                }),
                recheck_replica.then_some(Reread {
                    source: replica.as_mut(),
                    spec: &plan.replica_scan,
                }),
                &mut comparer,
                emit_fresh,
            )
            .await
            .map_err(|e| match e {
                MergeError::Source(Side::Owner, e) => owner_side.fail(job, format!("recheck: {e}")),
                MergeError::Source(Side::Replica, e) => replica_side.fail(job, format!("recheck: {e}")),
                MergeError::Sink(e) => fail_job(job, e),
            })?;
        }
        self.copy_counts(&plan.header);
        Ok(())
    }

    fn copy_counts(&mut self, header: &ReportHeader) {
        let (t, s) = (&self.tally, &mut self.summary);
        s.owner_rows = t.owner_rows;
        s.replica_rows = t.replica_rows;
        s.missing_in_replica = t.missing_in_replica;
        s.missing_in_owner = t.missing_in_owner;
        s.mismatched_rows = t.mismatched_rows;
        s.duplicate_keys = t.duplicate_keys;
        s.dangling_references = t.dangling_references;
        s.skipped_recent = t.skipped_recent;
        s.resolved_in_flight = t.resolved_in_flight;
        s.field_mismatches = FieldCounts(
            header
                .fields
                .iter()
                .zip(&t.field_mismatches)
                .filter(|(_, n)| **n > 0)
                .map(|(name, n)| (name.clone(), *n))
                .collect(),
        );
    }
}

fn describe_config(job: &Job, side: Side) -> String {
    let def = if side == Side::Owner {
        &job.owner
    } else {
        &job.replica
    };
    def.config.describe()
}

/// Counts and writes (or keeps for the recheck) each key group's findings.
struct FindingSink<'a> {
    reports: &'a mut Reports,
    header: &'a ReportHeader,
    tally: &'a mut Tally,
    pending: Vec<Pending>,
    recheck_cap: usize,
    /// Whether a held key keeps the rows the scan read on each side: only a side that is
    /// not read again needs them, and memory then grows with the findings, not the rows.
    keep_owner_rows: bool,
    keep_replica_rows: bool,
}

impl GroupSink for FindingSink<'_> {
    type Error = ReportError;

    fn group(
        &mut self,
        key: &Key,
        owner: &[Row],
        replica: &[Row],
        outcome: GroupOutcome,
    ) -> Result<(), ReportError> {
        if outcome.findings.is_empty() {
            self.tally.add(&outcome);
            return Ok(());
        }
        if self.pending.len() < self.recheck_cap {
            let kept = |keep: bool, rows: &[Row]| if keep { rows.to_vec() } else { Vec::new() };
            self.pending.push(Pending {
                key: key.clone(),
                owner: kept(self.keep_owner_rows, owner),
                replica: kept(self.keep_replica_rows, replica),
                outcome,
            });
            return Ok(());
        }
        // More inconsistent keys than the report may hold: writing them in key order
        // matters more than rechecking, so what was held is written as found.
        self.recheck_cap = 0;
        for held in std::mem::take(&mut self.pending) {
            emit(self.reports, self.header, self.tally, held.outcome)?;
        }
        emit(self.reports, self.header, self.tally, outcome)
    }
}

fn emit(
    reports: &mut Reports,
    header: &ReportHeader,
    tally: &mut Tally,
    outcome: GroupOutcome,
) -> Result<(), ReportError> {
    tally.add(&outcome);
    for finding in &outcome.findings {
        reports.record(&Record::new(header, finding))?;
    }
    Ok(())
}

/// A page of rows as a reader task pulls it from its source.
trait Page: Send + 'static {
    /// Rows in the page.
    fn rows(&self) -> usize;
}

impl Page for Vec<Row> {
    fn rows(&self) -> usize {
        self.len()
    }
}

impl Page for RowBatch {
    fn rows(&self) -> usize {
        self.len()
    }
}

/// How a reader task pulls its pages: [`Source::next_page`] or [`Source::next_batch`].
type NextPage<P> = for<'a> fn(&'a mut dyn Source) -> BoxFuture<'a, Result<Option<P>, SourceError>>;

/// A reader task: its pages as they come, and the source it hands back when done.
type Reader<P> = (
    JoinHandle<Box<dyn Source>>,
    mpsc::Receiver<Result<P, SourceError>>,
);

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

fn next_page(source: &mut dyn Source) -> BoxFuture<'_, Result<Option<Vec<Row>>, SourceError>> {
    source.next_page()
}

fn next_batch(source: &mut dyn Source) -> BoxFuture<'_, Result<Option<RowBatch>, SourceError>> {
    source.next_batch()
}

/// Starts a task that scans the source and sends its pages, two ahead at most; it
/// hands the source back when done, for the recheck.
fn spawn_reader<P: Page>(
    mut source: Box<dyn Source>,
    spec: ScanSpec,
    side: Side,
    job: &Job,
    options: &RunOptions,
    next: NextPage<P>,
) -> Reader<P> {
    let (tx, rx) = mpsc::channel(2);
    let observer = options.observer.clone();
    let job_name = job.name.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = source.scan(&spec).await {
            let _ = tx.send(Err(e)).await;
            return source;
        }
        let mut rows = 0u64;
        loop {
            match next(source.as_mut()).await {
                Ok(Some(page)) => {
                    rows += page.rows() as u64;
                    if let Some(observer) = &observer {
                        observer.rows_read(&job_name, side, rows);
                    }
                    if tx.send(Ok(page)).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    break;
                }
            }
        }
        source
    });
    (task, rx)
}

/// What a job compares, resolved against the columns both sources offer.
struct Plan {
    owner_scan: ScanSpec,
    replica_scan: ScanSpec,
    compare: ComparePlan,
    header: ReportHeader,
    /// Fields whose two columns declare types no value of one can equal a value of the
    /// other in (a uuid against a date): a run still compares them, `check` refuses them.
    incomparable: Vec<Problem>,
}

fn find<'c>(columns: &'c [Column], name: &str) -> Option<&'c Column> {
    columns.iter().find(|c| c.name == name)
}

/// The column `name` on `side`, or an error naming what needed it and what exists.
fn require<'c>(
    side: Side,
    columns: &'c [Column],
    name: &str,
    what: &str,
) -> Result<&'c Column, (Side, String)> {
    let column = find(columns, name).ok_or_else(|| {
        let list: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        (
            side,
            format!("{what}column `{name}` not found (columns: {})", list.join(", ")),
        )
    })?;
    match &column.unsupported {
        None => Ok(column),
        Some(ty) => Err((
            side,
            format!(
                "{what}column `{name}` has type `{ty}`, which recon cannot compare \
                 (cast it in a `query`, or leave it out of `fields`)"
            ),
        )),
    }
}

/// The column found, or `None` after adding the problem to `problems`.
fn noted(problems: &mut Vec<Problem>, found: Result<&Column, Problem>) -> Option<Column> {
    found.map_err(|p| problems.push(p)).ok().cloned()
}

/// Adds `name` to a scan's columns once; returns its index.
fn project(columns: &mut Vec<String>, name: &str) -> usize {
    match columns.iter().position(|c| c == name) {
        Some(i) => i,
        None => {
            columns.push(name.to_string());
            columns.len() - 1
        }
    }
}

/// A problem found while resolving a job against its sources' columns.
type Problem = (Side, String);

/// Resolves `job` against the `[owner, replica]` columns; `enforced` says, per side,
/// whether every value is of its column's declared type.
fn resolve(
    job: &Job,
    [owner_columns, replica_columns]: [&[Column]; 2],
    enforced: [bool; 2],
    memory_budget: usize,
    started_at: DateTime<Utc>,
) -> Result<Plan, Vec<Problem>> {
    let mut problems: Vec<Problem> = Vec::new();
    let sides = [
        (Side::Owner, owner_columns, &job.owner),
        (Side::Replica, replica_columns, &job.replica),
    ];
    for (side, columns, def) in sides {
        for name in def.key.iter().chain(&def.row_key) {
            noted(&mut problems, require(side, columns, name, "key "));
        }
    }
    let key_types: Vec<KeyType> = job
        .owner
        .key
        .iter()
        .zip(&job.replica.key)
        .map(|(o, r)| {
            let declared = |cols: &[Column], n: &str| find(cols, n).and_then(|c| c.declared);
            KeyType::for_field_type(FieldType::more_specific(
                declared(owner_columns, o),
                declared(replica_columns, r),
            ))
        })
        .collect();

    let field_defs: Vec<FieldDef> = match &job.fields {
        Some(fields) => fields.clone(),
        None => {
            let replica_excluded: Vec<&String> = job.replica.key.iter().chain(&job.replica.row_key).collect();
            owner_columns
                .iter()
                .filter(|c| !job.owner.key.contains(&c.name))
                .filter(|c| !replica_excluded.contains(&&c.name))
                .filter(|c| find(replica_columns, &c.name).is_some())
                .map(|c| FieldDef::same(&c.name))
                .collect()
        }
    };

    let page_size = job.compare.page_size;
    let budget = (memory_budget / 2).max(4096);
    let mut owner_cols = Vec::new();
    let mut replica_cols = Vec::new();
    let mut fields = Vec::new();
    let mut incomparable = Vec::new();
    for def in &field_defs {
        let what = format!("field `{}`: ", def.owner);
        let owner_col = noted(
            &mut problems,
            require(Side::Owner, owner_columns, &def.owner, &what),
        );
        let replica_col = noted(
            &mut problems,
            require(Side::Replica, replica_columns, &def.replica, &what),
        );
        let (Some(owner_col), Some(replica_col)) = (owner_col, replica_col) else {
            continue;
        };
        if let (None, Some(o), Some(r)) = (def.ty, owner_col.declared, replica_col.declared)
            && !comparable(o, r)
        {
            incomparable.push((
                Side::Replica,
                format!(
                    "field `{}`: the owner column is {o} and the replica column `{}` is {r}, \
                     which cannot be compared (set the field's `type` to compare them as one type)",
                    def.owner, def.replica
                ),
            ));
        }
        let declared = FieldType::more_specific(owner_col.declared, replica_col.declared);
        // A tolerance says what the values are when the sources only know them as text.
        let implied = match def.tolerance {
            Some(Tolerance::Absolute(_) | Tolerance::Relative(_)) => FieldType::Decimal,
            Some(Tolerance::Seconds(_)) => FieldType::Timestamp,
            None => FieldType::Text,
        };
        let declared =
            declared.filter(|t| def.tolerance.is_none() || !matches!(t, FieldType::Text | FieldType::Bytes));
        let ty = def.ty.or(declared).unwrap_or(implied);
        let fits = match def.tolerance {
            None => true,
            Some(Tolerance::Seconds(_)) => matches!(ty, FieldType::Timestamp | FieldType::Time),
            Some(_) => matches!(ty, FieldType::Integer | FieldType::Decimal | FieldType::Float),
        };
        if !fits {
            let message = format!(
                "field `{}`: its tolerance does not apply to a {ty} field",
                def.owner
            );
            problems.push((Side::Owner, message));
            continue;
        }
        // Identical values are equal fields when every value of the type normalizes
        // (text), or when both columns are of a type whose every stored value parses and
        // their sources enforce it. Not dates, times or timestamps (PostgreSQL's year
        // 10000), booleans (MySQL's tinyint(1) holds 2) or JSON (PostgreSQL's lone
        // surrogates): there an unparsable value must still be reported.
        let always_parses = matches!(
            ty,
            FieldType::Integer | FieldType::Decimal | FieldType::Float | FieldType::Uuid | FieldType::Bytes
        );
        let typed = |col: &Column, enforced: bool| enforced && col.declared == Some(ty);
        let same_value_is_equal = ty == FieldType::Text
            || (always_parses && typed(&owner_col, enforced[0]) && typed(&replica_col, enforced[1]));
        fields.push(CompareField {
            same_value_is_equal,
            name: def.owner.clone(),
            replica_name: def.replica.clone(),
            rule: FieldRule {
                ty,
                trim: def.trim,
                ignore_case: def.ignore_case,
                tolerance: def.tolerance,
            },
            owner_col: project(&mut owner_cols, &def.owner),
            replica_col: project(&mut replica_cols, &def.replica),
        });
    }

    let (mut owner_changed_at, mut replica_changed_at) = (None, None);
    if let Some(changed) = &job.compare.changed_at {
        let owner = noted(
            &mut problems,
            require(Side::Owner, owner_columns, &changed.owner, "changed_at "),
        );
        let replica = noted(
            &mut problems,
            require(Side::Replica, replica_columns, &changed.replica, "changed_at "),
        );
        if owner.is_some() && replica.is_some() {
            owner_changed_at = Some(project(&mut owner_cols, &changed.owner));
            replica_changed_at = Some(project(&mut replica_cols, &changed.replica));
        }
    }
    if !problems.is_empty() {
        problems.extend(incomparable);
        return Err(problems);
    }
    let replica_key_cols: Vec<usize> = job
        .replica
        .row_key
        .iter()
        .map(|c| project(&mut replica_cols, c))
        .collect();
    let recent_cutoff = job
        .compare
        .staleness
        .filter(|_| job.compare.changed_at.is_some())
        .map(|window| {
            let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
            let cutoff = started_at
                .checked_sub_signed(window)
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            cutoff.timestamp() as i128 * 1_000_000_000 + cutoff.timestamp_subsec_nanos() as i128
        });

    let header = ReportHeader {
        job: job.name.clone(),
        key_columns: job.owner.key.clone(),
        fields: fields.iter().map(|f| f.name.clone()).collect(),
        replica_key_columns: job.replica.row_key.clone(),
    };
    Ok(Plan {
        owner_scan: ScanSpec {
            key: job.owner.key.clone(),
            key_types: key_types.clone(),
            columns: owner_cols,
            tiebreak: Vec::new(),
            page_size,
            memory_budget: budget,
        },
        replica_scan: ScanSpec {
            key: job.replica.key.clone(),
            key_types,
            columns: replica_cols,
            tiebreak: job.replica.row_key.clone(),
            page_size,
            memory_budget: budget,
        },
        compare: ComparePlan {
            relation: job.relation,
            fields,
            owner_changed_at,
            replica_changed_at,
            recent_cutoff,
            replica_key_cols,
        },
        header,
        incomparable,
    })
}

/// Whether values of two declared column types can ever be equal. Text and bytes hold
/// anything; numbers, booleans, timestamps (as epoch seconds) and JSON meet each other.
fn comparable(a: FieldType, b: FieldType) -> bool {
    use FieldType::*;
    let clock = |t| matches!(t, Date | Time | Timestamp);
    let numeric = |t| matches!(t, Integer | Float | Decimal | Bool);
    if a == b || matches!(a, Text | Bytes) || matches!(b, Text | Bytes) {
        return true;
    }
    match (a, b) {
        (Uuid, _) | (_, Uuid) => false,
        (Time, Date | Timestamp) | (Date | Timestamp, Time) => false,
        (Date | Time, x) | (x, Date | Time) if !clock(x) => false,
        (Timestamp, x) | (x, Timestamp) => clock(x) || matches!(x, Integer | Float | Decimal),
        (Json, x) | (x, Json) => numeric(x),
        _ => numeric(a) && numeric(b),
    }
}

/// The default report folder name: the run's start as a compact UTC timestamp.
pub fn default_out_dir(now: DateTime<Utc>) -> PathBuf {
    PathBuf::from("recon-reports").join(now.format("%Y%m%dT%H%M%SZ").to_string())
}
