//! Tolerances: how far a replica value may be from the owner's and still agree.

/// `tolerance = { absolute = 0.01 }`, `{ relative = 0.01 }` or `{ seconds = 1 }`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tolerance {
    /// `|replica - owner| <= absolute` (numbers).
    Absolute(f64),
    /// `|replica - owner| / |owner| <= relative` (numbers).
    Relative(f64),
    /// Timestamps and times up to this many seconds apart agree.
    Seconds(f64),
}
