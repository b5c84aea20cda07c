//! Integration tests for `recon`, in one test binary to keep link time down.
//!
//! `cli_run` and `cli_check` drive the real binary in a fresh directory per test;
//! `property` generates owner data and random replica changes and expects exactly those
//! changes back.

mod cli_check;
mod cli_run;
mod contract;
mod databases;
mod db_resilience;
mod db_types;
mod indexed_files;
mod property;
mod regression;
mod support;
