//! Diagnostics: what went wrong, where (file, line, column, field path), and what was expected.

use std::fmt;

use crate::FieldPath;

/// A position in a source file; both numbers start at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location {
    /// Line number, from 1.
    pub line: usize,
    /// Column number in characters, from 1.
    pub column: usize,
}

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where in the file, when known.
    pub location: Option<Location>,
    /// The field path, empty for document-level problems.
    pub path: FieldPath,
    /// What is wrong and what was expected.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at a known location and path.
    pub fn new(location: Location, path: FieldPath, message: impl Into<String>) -> Self {
        Self {
            location: Some(location),
            path,
            message: message.into(),
        }
    }

    /// A diagnostic about the file as a whole.
    pub fn without_location(message: impl Into<String>) -> Self {
        Self {
            location: None,
            path: FieldPath::root(),
            message: message.into(),
        }
    }
}

/// Every problem found in one file; the error type of all config loading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics {
    /// The file name as given to the loader.
    pub file: String,
    /// The problems, in document order.
    pub errors: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Diagnostics for one file, sorted by position.
    pub fn in_file(file: &str, mut errors: Vec<Diagnostic>) -> Self {
        errors.sort_by_key(|error| {
            error
                .location
                .map(|l| (l.line, l.column))
                .unwrap_or_default()
        });
        errors.dedup();
        Self {
            file: file.to_owned(),
            errors,
        }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.errors.len();
        write!(
            f,
            "{} has {count} error{}:",
            self.file,
            if count == 1 { "" } else { "s" }
        )?;
        for error in &self.errors {
            write!(f, "\n  {}", self.file)?;
            if let Some(location) = error.location {
                write!(f, ":{}:{}", location.line, location.column)?;
            }
            if error.path.is_root() {
                write!(f, ": {}", error.message)?;
            } else {
                write!(f, ": {}: {}", error.path, error.message)?;
            }
        }
        Ok(())
    }
}
