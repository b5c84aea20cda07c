//! A compared field: which owner column maps to which replica column, and how to compare.

use crate::job::Tolerance;
use crate::source::FieldType;

/// One compared field (`[[fields]]`).
#[derive(Clone, Debug, PartialEq)]
pub struct FieldDef {
    /// The owner's column; reports name fields by it.
    pub owner: String,
    /// The replica's column (the same name unless mapped).
    pub replica: String,
    /// The type given in the job; `None` takes it from the sources.
    pub ty: Option<FieldType>,
    /// How far the replica may be from the owner and still agree.
    pub tolerance: Option<Tolerance>,
    /// Ignore leading and trailing white space (text).
    pub trim: bool,
    /// Compare text case-insensitively.
    pub ignore_case: bool,
}

impl FieldDef {
    /// A field with the same name on both sides and default rules.
    pub fn same(name: &str) -> FieldDef {
        FieldDef {
            owner: name.to_string(),
            replica: name.to_string(),
            ty: None,
            tolerance: None,
            trim: false,
            ignore_case: false,
        }
    }
}
