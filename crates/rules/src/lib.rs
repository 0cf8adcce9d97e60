//! Hermod's rule engine and data integrations (issue 12).

pub mod sink;
