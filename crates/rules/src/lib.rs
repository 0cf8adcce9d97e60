//! Hermod's rule engine (issue 12): EMQX-compatible rule SQL and action templates.
//!
//! - [`sql`]: parse a rule (`Rule::parse`), see its sources, and apply it to a message or
//!   client event (`Rule::apply`), giving the selected row; [`sql::template`] renders a
//!   `${...}` action template for a row, as bound SQL parameters or as text.

pub mod sql;

pub use sql::template::{Dialect, Template, TemplateError};
pub use sql::{EvalError, Event, Input, Rule, Source, SqlError, Value};
