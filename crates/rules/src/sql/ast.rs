//! The syntax tree of a rule: the SELECT columns, the FROM sources and the WHERE expression.

use super::input::Event;
use super::value::Value;

/// A parsed `SELECT ... FROM ... [WHERE ...]` statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Statement {
    pub(crate) columns: Vec<Column>,
    pub(crate) sources: Vec<Source>,
    pub(crate) condition: Option<Expr>,
}

/// One item of the SELECT list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Column {
    /// `*`: every field of the input, the payload as a string.
    Star,
    /// An expression and the name of its output column: the alias, else the path (a nested
    /// object for `payload.a.b`, as EMQX), else the expression's text.
    Expr { expr: Expr, name: OutputName },
}

/// Where a column goes in the output row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OutputName {
    /// A top-level key.
    Key(String),
    /// Nested keys: `SELECT payload.a.b` gives `{"payload": {"a": {"b": ...}}}`.
    Nested(Vec<String>),
}

/// What a rule listens to: a topic filter or a client event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `FROM "t/#"`: messages published to topics matching the filter.
    Topic(String),
    /// `FROM "$events/client_connected"` and the other supported events.
    Event(Event),
}

/// One step of a field path after its first name.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PathStep {
    /// `.name` or `.'Quoted-Name'`.
    Key(String),
    /// `[n]`: 1-based, negative from the end, as EMQX.
    Index(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Match,
    Add,
    Sub,
    Mul,
    Div,
    IntDiv,
    Mod,
}

/// An expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Lit(Value),
    /// A field: its first name (`payload`, `clientid`, an alias) and the steps below it.
    Path {
        root: String,
        steps: Vec<PathStep>,
    },
    /// `[a, b, c]`.
    List(Vec<Expr>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    /// A call of a built-in function (checked for name and arity when parsed).
    Call(String, Vec<Expr>),
}
