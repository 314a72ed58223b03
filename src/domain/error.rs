//! Validation failures of a single field, shared by every layer that checks input.

use std::fmt;

/// A field that failed validation: which one, and what would have been accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }

    /// `field`: `value` is not one of the accepted values, which are listed.
    pub fn one_of(field: &str, value: &str, accepted: &[&str]) -> Self {
        Self::new(field, format!("unknown value `{value}`; accepted values: {}", accepted.join(", ")))
    }

    /// Prefixes the field with the place it sits in, such as `events[3]`.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}
