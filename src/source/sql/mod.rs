//! SQL backends and what they share: identifier validation and quoting, and the
//! keyset-pagination statements (`WHERE key > last ORDER BY key LIMIT n`).

pub mod sqlite;
