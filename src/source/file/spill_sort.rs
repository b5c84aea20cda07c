//! Ordering unsorted file rows by key within a memory budget (in progress).
