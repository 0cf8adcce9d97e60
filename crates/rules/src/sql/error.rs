//! The errors of the rule language: `SqlError` (parsing, with a position) and `EvalError`.

use std::fmt;

/// A rule that does not parse: a message and the 1-based line and column (in characters)
/// where the problem is. Displays as "expected FROM, found `WHERE` at 1:23".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl SqlError {
    pub(crate) fn new(pos: Pos, message: impl Into<String>) -> Self {
        SqlError {
            line: pos.line,
            column: pos.column,
            message: message.into(),
        }
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}:{}", self.message, self.line, self.column)
    }
}

impl std::error::Error for SqlError {}

/// A rule that failed on one input (a function given the wrong type, a comparison of a
/// number with a non-numeric string): the broker counts it as failed and goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    pub message: String,
}

impl EvalError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        EvalError {
            message: message.into(),
        }
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EvalError {}

/// A 1-based line and column in the SQL text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub(crate) line: usize,
    pub(crate) column: usize,
}
