//! File backends (CSV, JSON Lines) and what they share: files need not be sorted, so
//! `spill_sort` orders their rows by key within a memory budget, spilling to disk.

pub mod csv;
pub mod jsonl;
pub mod spill_sort;
