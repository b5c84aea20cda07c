//! Database sources that lose their connection mid-run: retried, resumed, or failed cleanly.
