//! Recursive-descent parser: tokens to a `Statement`, with operator precedence and positions.
//!
//! Precedence, loosest first: `OR`; `AND`; `NOT`; comparisons (`= != <> < <= > >= =~`, not
//! chained); `+ -`; `* / div mod`; unary `-`; then literals, `[lists]`, `(...)`, calls, paths.

use super::ast::{BinOp, Column, Expr, OutputName, PathStep, Source, Statement};
use super::error::{Pos, SqlError};
use super::functions;
use super::input::Event;
use super::lexer::{Tok, Token, tokenize};
use super::topic;
use super::value::Value;

/// How deep parentheses, lists and calls may nest before the parser refuses.
const MAX_DEPTH: usize = 64;
/// How deep an expression tree may be (a chain `a OR b OR ...` counts one per operator):
/// evaluation and drop recurse on it, so no input may make it unbounded.
const MAX_TREE_DEPTH: usize = 256;

fn tree_depth(e: &Expr) -> usize {
    1 + match e {
        Expr::Lit(_) | Expr::Path { .. } => 0,
        Expr::List(items) | Expr::Call(_, items) => items.iter().map(tree_depth).max().unwrap_or(0),
        Expr::Not(x) | Expr::Neg(x) => tree_depth(x),
        Expr::Bin(_, l, r) => tree_depth(l).max(tree_depth(r)),
    }
}

pub(crate) fn parse(sql: &str) -> Result<Statement, SqlError> {
    let tokens = tokenize(sql)?;
    let mut p = Parser {
        sql,
        tokens,
        i: 0,
        depth: 0,
    };
    let stmt = p.statement()?;
    if p.peek() != &Tok::Eof {
        return Err(p.error(format!(
            "unexpected {} after the end of the statement",
            p.peek().describe()
        )));
    }
    Ok(stmt)
}

struct Parser<'a> {
    sql: &'a str,
    tokens: Vec<Token>,
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn current(&self) -> &Token {
        // `tokenize` always ends with Eof and `next` never moves past it.
        &self.tokens[self.i.min(self.tokens.len() - 1)]
    }

    fn peek(&self) -> &Tok {
        &self.current().tok
    }

    fn pos(&self) -> Pos {
        self.current().pos
    }

    fn next(&mut self) -> Tok {
        // Moves past Eof too (`current` stays on it), so `self.i -= 1` always steps back.
        let t = self.peek().clone();
        self.i += 1;
        t
    }

    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == t {
            self.next();
            true
        } else {
            false
        }
    }

    fn error(&self, message: impl Into<String>) -> SqlError {
        SqlError::new(self.pos(), message)
    }

    fn expected(&self, what: &str) -> SqlError {
        self.error(format!("expected {what}, found {}", self.peek().describe()))
    }

    /// `e`, or an error if it makes the tree too deep.
    fn checked(&self, e: Expr) -> Result<Expr, SqlError> {
        if tree_depth(&e) > MAX_TREE_DEPTH {
            return Err(self.error("expression nested too deeply"));
        }
        Ok(e)
    }

    fn bin(&self, op: BinOp, l: Expr, r: Expr) -> Result<Expr, SqlError> {
        self.checked(Expr::Bin(op, Box::new(l), Box::new(r)))
    }

    fn expect(&mut self, t: &Tok, what: &str) -> Result<(), SqlError> {
        if self.eat(t) {
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    fn statement(&mut self) -> Result<Statement, SqlError> {
        self.expect(&Tok::Select, "SELECT")?;
        let mut columns = vec![self.column()?];
        while self.eat(&Tok::Comma) {
            columns.push(self.column()?);
        }
        self.expect(&Tok::From, "FROM")?;
        let mut sources = vec![self.source()?];
        while self.eat(&Tok::Comma) {
            sources.push(self.source()?);
        }
        let condition = if self.eat(&Tok::Where) {
            Some(self.expr()?)
        } else {
            None
        };
        Ok(Statement {
            columns,
            sources,
            condition,
        })
    }

    fn column(&mut self) -> Result<Column, SqlError> {
        if self.eat(&Tok::Star) {
            return Ok(Column::Star);
        }
        let start = self.current().start;
        let expr = self.expr()?;
        let end = self.tokens[(self.i - 1).min(self.tokens.len() - 1)].end;
        let name = if self.eat(&Tok::As) {
            match self.next() {
                Tok::Ident(s) | Tok::Str { value: s, .. } => OutputName::Key(s),
                _ => {
                    self.i -= 1;
                    return Err(self.expected("a column name after AS"));
                }
            }
        } else {
            match &expr {
                Expr::Path { root, steps } if steps.is_empty() => OutputName::Key(root.clone()),
                Expr::Path { root, steps }
                    if steps.iter().all(|s| matches!(s, PathStep::Key(_))) =>
                {
                    let mut keys = vec![root.clone()];
                    keys.extend(steps.iter().filter_map(|s| match s {
                        PathStep::Key(k) => Some(k.clone()),
                        PathStep::Index(_) => None,
                    }));
                    OutputName::Nested(keys)
                }
                _ => OutputName::Key(self.sql.get(start..end).unwrap_or_default().to_owned()),
            }
        };
        Ok(Column::Expr { expr, name })
    }

    fn source(&mut self) -> Result<Source, SqlError> {
        let pos = self.pos();
        match self.next() {
            Tok::Str {
                value,
                double: true,
            } => {
                if value.starts_with("$events/") {
                    Event::from_source_name(&value)
                        .map(Source::Event)
                        .ok_or_else(|| {
                            SqlError::new(pos, format!("unknown event source \"{value}\""))
                        })
                } else if topic::is_valid_filter(&value) {
                    Ok(Source::Topic(value))
                } else {
                    Err(SqlError::new(
                        pos,
                        format!("invalid topic filter \"{value}\""),
                    ))
                }
            }
            _ => {
                self.i -= 1;
                Err(self.expected("a double-quoted topic filter or event"))
            }
        }
    }

    fn expr(&mut self) -> Result<Expr, SqlError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("expression nested too deeply"));
        }
        let e = self.or_expr();
        self.depth -= 1;
        e
    }

    fn or_expr(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.and_expr()?;
        while self.eat(&Tok::Or) {
            let right = self.and_expr()?;
            left = self.bin(BinOp::Or, left, right)?;
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.not_expr()?;
        while self.eat(&Tok::And) {
            let right = self.not_expr()?;
            left = self.bin(BinOp::And, left, right)?;
        }
        Ok(left)
    }

    fn not_expr(&mut self) -> Result<Expr, SqlError> {
        // Counted in a loop, not by recursion: any number of NOTs is safe.
        let mut nots = 0usize;
        while self.eat(&Tok::Not) {
            nots += 1;
        }
        let mut e = self.cmp_expr()?;
        for _ in 0..nots {
            e = self.checked(Expr::Not(Box::new(e)))?;
        }
        Ok(e)
    }

    fn cmp_expr(&mut self) -> Result<Expr, SqlError> {
        let left = self.add_expr()?;
        let op = match self.peek() {
            Tok::Eq => BinOp::Eq,
            Tok::Ne => BinOp::Ne,
            Tok::Lt => BinOp::Lt,
            Tok::Le => BinOp::Le,
            Tok::Gt => BinOp::Gt,
            Tok::Ge => BinOp::Ge,
            Tok::Match => BinOp::Match,
            _ => return Ok(left),
        };
        self.next();
        let right = self.add_expr()?;
        self.bin(op, left, right)
    }

    fn add_expr(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.mul_expr()?;
        loop {
            let op = match self.peek() {
                Tok::Plus => BinOp::Add,
                Tok::Minus => BinOp::Sub,
                _ => return Ok(left),
            };
            self.next();
            let right = self.mul_expr()?;
            left = self.bin(op, left, right)?;
        }
    }

    fn mul_expr(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Star => BinOp::Mul,
                Tok::Slash => BinOp::Div,
                Tok::Div => BinOp::IntDiv,
                Tok::Mod => BinOp::Mod,
                _ => return Ok(left),
            };
            self.next();
            let right = self.unary()?;
            left = self.bin(op, left, right)?;
        }
    }

    fn unary(&mut self) -> Result<Expr, SqlError> {
        // Signs counted in a loop, not by recursion: any number of them is safe.
        let mut negate = false;
        loop {
            if self.eat(&Tok::Minus) {
                negate = !negate;
            } else if !self.eat(&Tok::Plus) {
                break;
            }
        }
        let e = self.primary()?;
        Ok(match (negate, e) {
            (false, e) => e,
            (true, Expr::Lit(Value::Int(i))) => Expr::Lit(Value::Int(i.wrapping_neg())),
            (true, Expr::Lit(Value::Float(f))) => Expr::Lit(Value::Float(-f)),
            (true, e) => self.checked(Expr::Neg(Box::new(e)))?,
        })
    }

    fn primary(&mut self) -> Result<Expr, SqlError> {
        let pos = self.pos();
        match self.next() {
            Tok::Int(i) => Ok(Expr::Lit(Value::Int(i))),
            Tok::Float(f) => Ok(Expr::Lit(Value::Float(f))),
            Tok::Str { value, .. } => Ok(Expr::Lit(Value::String(value))),
            Tok::True => Ok(Expr::Lit(Value::Bool(true))),
            Tok::False => Ok(Expr::Lit(Value::Bool(false))),
            Tok::Null => Ok(Expr::Lit(Value::Null)),
            Tok::LParen => {
                let e = self.expr()?;
                self.expect(&Tok::RParen, "`)`")?;
                Ok(e)
            }
            Tok::LBracket => {
                let items = self.list(&Tok::RBracket, "`]`")?;
                self.checked(Expr::List(items))
            }
            Tok::Ident(name) if self.peek() == &Tok::LParen => {
                self.next();
                let args = self.list(&Tok::RParen, "`)`")?;
                let name = name.to_ascii_lowercase();
                functions::check_arity(&name, args.len()).map_err(|m| SqlError::new(pos, m))?;
                self.checked(Expr::Call(name, args))
            }
            Tok::Ident(root) => self.path(root),
            _ => {
                self.i -= 1;
                Err(self.expected("an expression"))
            }
        }
    }

    /// Comma-separated expressions up to `close` (already past the opening bracket).
    fn list(&mut self, close: &Tok, what: &str) -> Result<Vec<Expr>, SqlError> {
        let mut items = Vec::new();
        if self.eat(close) {
            return Ok(items);
        }
        loop {
            items.push(self.expr()?);
            if self.eat(close) {
                return Ok(items);
            }
            if !self.eat(&Tok::Comma) {
                return Err(self.expected(&format!("`,` or {what}")));
            }
        }
    }

    /// `root(.key | .'quoted key' | [n])*`.
    fn path(&mut self, root: String) -> Result<Expr, SqlError> {
        let mut steps = Vec::new();
        loop {
            if self.eat(&Tok::Dot) {
                match self.next() {
                    Tok::Ident(k) | Tok::Str { value: k, .. } => steps.push(PathStep::Key(k)),
                    Tok::Int(i) => steps.push(PathStep::Key(i.to_string())),
                    _ => {
                        self.i -= 1;
                        return Err(self.expected("a field name after `.`"));
                    }
                }
            } else if self.eat(&Tok::LBracket) {
                let negative = self.eat(&Tok::Minus);
                let Tok::Int(i) = self.next() else {
                    self.i -= 1;
                    return Err(self.expected("an integer index"));
                };
                self.expect(&Tok::RBracket, "`]`")?;
                steps.push(PathStep::Index(if negative { -i } else { i }));
            } else {
                return Ok(Expr::Path { root, steps });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(sql: &str) -> String {
        parse(sql).expect_err(sql).to_string()
    }

    #[test]
    fn minimal_statement() {
        let s = parse(r#"SELECT * FROM "t/#""#).expect("parses");
        assert_eq!(s.columns, vec![Column::Star]);
        assert_eq!(s.sources, vec![Source::Topic("t/#".into())]);
        assert!(s.condition.is_none());
    }

    #[test]
    fn precedence() {
        let s = parse(r#"SELECT 1 + 2 * 3 AS x FROM "t" WHERE a = 1 OR b = 2 AND NOT c = 3"#)
            .expect("parses");
        let Column::Expr { expr, .. } = &s.columns[0] else {
            panic!("expr column")
        };
        assert!(
            matches!(expr, Expr::Bin(BinOp::Add, _, r) if matches!(**r, Expr::Bin(BinOp::Mul, _, _)))
        );
        let Some(Expr::Bin(BinOp::Or, _, r)) = &s.condition else {
            panic!("or at the top")
        };
        assert!(matches!(&**r, Expr::Bin(BinOp::And, _, n) if matches!(**n, Expr::Not(_))));
    }

    #[test]
    fn paths_and_output_names() {
        let s = parse(r#"SELECT payload.a.b[1], payload.x.y, pub_props.'User-Property'.k AS k, lower(clientid) FROM "t""#)
            .expect("parses");
        let names: Vec<_> = s
            .columns
            .iter()
            .map(|c| match c {
                Column::Expr { name, .. } => name.clone(),
                Column::Star => OutputName::Key("*".into()),
            })
            .collect();
        assert_eq!(names[0], OutputName::Key("payload.a.b[1]".into()));
        assert_eq!(
            names[1],
            OutputName::Nested(vec!["payload".into(), "x".into(), "y".into()])
        );
        assert_eq!(names[2], OutputName::Key("k".into()));
        assert_eq!(names[3], OutputName::Key("lower(clientid)".into()));
    }

    #[test]
    fn sources() {
        let s = parse(r#"SELECT * FROM "a/+", "$events/client_connected""#).expect("parses");
        assert_eq!(
            s.sources,
            vec![
                Source::Topic("a/+".into()),
                Source::Event(Event::ClientConnected)
            ]
        );
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            err(r#"SELECT clientid WHERE x = 1"#),
            "expected FROM, found `WHERE` at 1:17"
        );
        assert_eq!(err(""), "expected SELECT, found end of input at 1:1");
        assert_eq!(
            err(r#"SELECT * FROM 't/#'"#),
            "expected a double-quoted topic filter or event, found 't/#' at 1:15"
        );
        assert_eq!(
            err(r#"SELECT * FROM "a/#/b""#),
            "invalid topic filter \"a/#/b\" at 1:15"
        );
        assert_eq!(
            err(r#"SELECT * FROM "$events/nope""#),
            "unknown event source \"$events/nope\" at 1:15"
        );
        assert_eq!(
            err(r#"SELECT foo(1) FROM "t""#),
            "unknown function `foo` at 1:8"
        );
        assert_eq!(
            err(r#"SELECT * FROM "t" WHERE"#),
            "expected an expression, found end of input at 1:24"
        );
        assert_eq!(
            err(r#"SELECT * FROM "t" x"#),
            "unexpected `x` after the end of the statement at 1:19"
        );
        assert_eq!(
            err("SELECT (1 FROM \"t\""),
            "expected `)`, found `FROM` at 1:11"
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let sql = format!(
            "SELECT {}1{} FROM \"t\"",
            "(".repeat(10_000),
            ")".repeat(10_000)
        );
        assert!(err(&sql).starts_with("expression nested too deeply"));
        let sql = format!("SELECT * FROM \"t\" WHERE {} true", "NOT ".repeat(10_000));
        assert!(err(&sql).starts_with("expression nested too deeply"));
        let sql = format!(
            "SELECT * FROM \"t\" WHERE {}",
            vec!["a = 1"; 10_000].join(" OR ")
        );
        assert!(err(&sql).starts_with("expression nested too deeply"));
        let sql = format!(
            "SELECT * FROM \"t\" WHERE {}",
            vec!["a = 1"; 200].join(" OR ")
        );
        assert!(parse(&sql).is_ok());
        let sql = format!("SELECT {}1 AS x FROM \"t\"", "- ".repeat(10_001));
        let s = parse(&sql).expect("parses");
        assert!(matches!(
            &s.columns[0],
            Column::Expr {
                expr: Expr::Lit(Value::Int(-1)),
                ..
            }
        ));
    }
}
