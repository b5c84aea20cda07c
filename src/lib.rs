//! recon keeps replicated data honest: it pages through an owner (the single source of
//! truth) and a replica, compares them by checksum and by field, and reports every
//! inconsistency. This crate is the core; `src/main.rs` and `src/cli/` are the thin glue.

pub mod compare;
pub mod exit;
pub mod job;
pub mod pipeline;
pub mod report;
pub mod source;

pub use exit::ExitStatus;
