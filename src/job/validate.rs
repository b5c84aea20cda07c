//! Validation of a parsed job spec into a [`Job`] (in progress).

use std::path::{Path, PathBuf};

use crate::job::{Job, JobError};

/// Loads and validates one job file.
pub fn load_job(_path: &Path) -> Result<Job, Vec<JobError>> {
    todo!()
}

/// Loads every job named by the paths (a folder: all `*.toml` in it).
pub fn load_paths(_paths: &[PathBuf]) -> Result<Vec<Job>, Vec<JobError>> {
    todo!()
}
