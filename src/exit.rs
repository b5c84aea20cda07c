//! Named exit statuses and how job outcomes map to them. The README's table says the same.

/// The process exit status, as documented in the README.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitStatus {
    /// Every job ran and found its owner and replica consistent.
    Consistent = 0,
    /// At least one job found inconsistencies, and none failed.
    Inconsistent = 1,
    /// Bad usage or an invalid job definition: nothing ran.
    Usage = 2,
    /// At least one job failed at run time (the others still ran and reported).
    Failed = 3,
}

impl ExitStatus {
    /// The numeric status handed to the operating system.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Combines the statuses of several jobs: a failure outranks inconsistencies,
    /// which outrank a clean result.
    pub fn combine(statuses: impl IntoIterator<Item = ExitStatus>) -> ExitStatus {
        statuses.into_iter().fold(ExitStatus::Consistent, |worst, s| {
            let rank = |s: ExitStatus| match s {
                ExitStatus::Consistent => 0,
                ExitStatus::Inconsistent => 1,
                ExitStatus::Failed => 2,
                ExitStatus::Usage => 3,
            };
            if rank(s) > rank(worst) { s } else { worst }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ExitStatus::*;
    use super::*;

    #[test]
    fn failure_outranks_inconsistency() {
        assert_eq!(ExitStatus::combine([Consistent, Inconsistent, Failed]), Failed);
        assert_eq!(ExitStatus::combine([Consistent, Inconsistent]), Inconsistent);
        assert_eq!(ExitStatus::combine([]), Consistent);
    }
}
