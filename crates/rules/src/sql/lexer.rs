//! Tokenizer for rule SQL: keywords, identifiers, quoted strings, numbers, operators, positions.

use super::error::{Pos, SqlError};

/// One token. Keywords are matched case-insensitively, as EMQX does (`select`, `SELECT`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    /// A quoted string; `double` tells `"..."` (topics in FROM) from `'...'`.
    Str {
        value: String,
        double: bool,
    },
    Int(i64),
    Float(f64),
    Select,
    From,
    Where,
    As,
    And,
    Or,
    Not,
    Div,
    Mod,
    True,
    False,
    Null,
    Star,
    Comma,
    Dot,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Plus,
    Minus,
    Slash,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `=~`: topic matches filter.
    Match,
    Eof,
}

impl Tok {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Str {
                value,
                double: true,
            } => format!("\"{value}\""),
            Tok::Str {
                value,
                double: false,
            } => format!("'{value}'"),
            Tok::Int(n) => format!("`{n}`"),
            Tok::Float(n) => format!("`{n}`"),
            Tok::Eof => "end of input".to_owned(),
            other => format!("`{}`", other.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            Tok::Select => "SELECT",
            Tok::From => "FROM",
            Tok::Where => "WHERE",
            Tok::As => "AS",
            Tok::And => "AND",
            Tok::Or => "OR",
            Tok::Not => "NOT",
            Tok::Div => "div",
            Tok::Mod => "mod",
            Tok::True => "true",
            Tok::False => "false",
            Tok::Null => "null",
            Tok::Star => "*",
            Tok::Comma => ",",
            Tok::Dot => ".",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Slash => "/",
            Tok::Eq => "=",
            Tok::Ne => "!=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::Match => "=~",
            _ => "?",
        }
    }
}

/// A token, where it starts, and the byte range it covers in the SQL text.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) pos: Pos,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// Splits `sql` into tokens, ending with `Tok::Eof`. `--` starts a comment to the end of the line.
pub(crate) fn tokenize(sql: &str) -> Result<Vec<Token>, SqlError> {
    let mut lx = Lexer {
        chars: sql.char_indices().collect(),
        i: 0,
        line: 1,
        column: 1,
        len: sql.len(),
    };
    let mut out = Vec::new();
    loop {
        lx.skip_space();
        let pos = lx.pos();
        let start = lx.offset();
        let Some(c) = lx.peek(0) else {
            out.push(Token {
                tok: Tok::Eof,
                pos,
                start,
                end: start,
            });
            return Ok(out);
        };
        let tok = lx.token(c, pos)?;
        out.push(Token {
            tok,
            pos,
            start,
            end: lx.offset(),
        });
    }
}

struct Lexer {
    chars: Vec<(usize, char)>,
    i: usize,
    line: usize,
    column: usize,
    len: usize,
}

impl Lexer {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.i + ahead).map(|&(_, c)| c)
    }

    fn offset(&self) -> usize {
        self.chars.get(self.i).map_or(self.len, |&(o, _)| o)
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn skip_space(&mut self) {
        loop {
            match self.peek(0) {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some('-') if self.peek(1) == Some('-') => {
                    while let Some(c) = self.bump() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                _ => return,
            }
        }
    }

    fn token(&mut self, c: char, pos: Pos) -> Result<Tok, SqlError> {
        if c.is_ascii_digit() {
            return self.number(pos);
        }
        if c.is_alphabetic() || c == '_' || c == '$' {
            let mut word = String::new();
            while let Some(c) = self.peek(0) {
                if c.is_alphanumeric() || c == '_' || c == '$' {
                    word.push(c);
                    self.bump();
                } else {
                    break;
                }
            }
            return Ok(keyword(&word).unwrap_or(Tok::Ident(word)));
        }
        if c == '\'' || c == '"' {
            return self.string(c, pos);
        }
        if c == '`' {
            // `quoted identifier`, for field names that are keywords or have odd characters.
            self.bump();
            let mut word = String::new();
            loop {
                match self.bump() {
                    Some('`') => return Ok(Tok::Ident(word)),
                    Some(c) => word.push(c),
                    None => return Err(SqlError::new(pos, "unterminated quoted identifier")),
                }
            }
        }
        self.bump();
        let two = |lx: &mut Lexer, next: char, yes: Tok, no: Tok| {
            if lx.peek(0) == Some(next) {
                lx.bump();
                yes
            } else {
                no
            }
        };
        Ok(match c {
            '*' => Tok::Star,
            ',' => Tok::Comma,
            '.' => Tok::Dot,
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '[' => Tok::LBracket,
            ']' => Tok::RBracket,
            '+' => Tok::Plus,
            '-' => Tok::Minus,
            '/' => Tok::Slash,
            '=' => two(self, '~', Tok::Match, Tok::Eq),
            '!' if self.peek(0) == Some('=') => {
                self.bump();
                Tok::Ne
            }
            '<' => match self.peek(0) {
                Some('=') => {
                    self.bump();
                    Tok::Le
                }
                Some('>') => {
                    self.bump();
                    Tok::Ne
                }
                _ => Tok::Lt,
            },
            '>' => two(self, '=', Tok::Ge, Tok::Gt),
            other => {
                return Err(SqlError::new(
                    pos,
                    format!("unexpected character {other:?}"),
                ));
            }
        })
    }

    fn number(&mut self, pos: Pos) -> Result<Tok, SqlError> {
        let mut text = String::new();
        let mut float = false;
        while let Some(c) = self.peek(0) {
            let exp_sign = (c == '+' || c == '-') && text.ends_with(['e', 'E']);
            if c.is_ascii_digit() || exp_sign {
                text.push(c);
            } else if (c == '.' && !float && self.peek(1).is_some_and(|d| d.is_ascii_digit()))
                || ((c == 'e' || c == 'E') && !text.contains(['e', 'E']))
            {
                float = true;
                text.push(c);
            } else if c.is_alphanumeric() || c == '_' {
                text.push(c);
                self.bump();
                return Err(SqlError::new(pos, format!("invalid number `{text}`")));
            } else {
                break;
            }
            self.bump();
        }
        let invalid = || SqlError::new(pos, format!("invalid number `{text}`"));
        if float {
            text.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Tok::Float)
                .ok_or_else(invalid)
        } else {
            text.parse::<i64>().map(Tok::Int).map_err(|_| invalid())
        }
    }

    /// `'...'` or `"..."`; the quote is escaped by doubling it or with a backslash, and `\n`,
    /// `\t`, `\\` are understood.
    fn string(&mut self, quote: char, pos: Pos) -> Result<Tok, SqlError> {
        self.bump();
        let mut value = String::new();
        loop {
            match self.bump() {
                None => return Err(SqlError::new(pos, "unterminated string literal")),
                Some(c) if c == quote => {
                    if self.peek(0) == Some(quote) {
                        self.bump();
                        value.push(quote);
                    } else {
                        return Ok(Tok::Str {
                            value,
                            double: quote == '"',
                        });
                    }
                }
                Some('\\') => match self.bump() {
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    Some('r') => value.push('\r'),
                    Some(c) => value.push(c),
                    None => return Err(SqlError::new(pos, "unterminated string literal")),
                },
                Some(c) => value.push(c),
            }
        }
    }
}

fn keyword(word: &str) -> Option<Tok> {
    Some(match word.to_ascii_lowercase().as_str() {
        "select" => Tok::Select,
        "from" => Tok::From,
        "where" => Tok::Where,
        "as" => Tok::As,
        "and" => Tok::And,
        "or" => Tok::Or,
        "not" => Tok::Not,
        "div" => Tok::Div,
        "mod" => Tok::Mod,
        "true" => Tok::True,
        "false" => Tok::False,
        "null" => Tok::Null,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        tokenize(s)
            .expect("tokenizes")
            .into_iter()
            .map(|t| t.tok)
            .collect()
    }

    #[test]
    fn keywords_are_case_insensitive() {
        assert_eq!(
            toks("select FROM Where"),
            vec![Tok::Select, Tok::From, Tok::Where, Tok::Eof]
        );
    }

    #[test]
    fn operators() {
        assert_eq!(
            toks("= != <> < <= > >= =~ * , . ( ) [ ] + - /"),
            vec![
                Tok::Eq,
                Tok::Ne,
                Tok::Ne,
                Tok::Lt,
                Tok::Le,
                Tok::Gt,
                Tok::Ge,
                Tok::Match,
                Tok::Star,
                Tok::Comma,
                Tok::Dot,
                Tok::LParen,
                Tok::RParen,
                Tok::LBracket,
                Tok::RBracket,
                Tok::Plus,
                Tok::Minus,
                Tok::Slash,
                Tok::Eof
            ]
        );
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(
            toks(r#"'it''s' "t/#" 'a\'b'"#),
            vec![
                Tok::Str {
                    value: "it's".into(),
                    double: false
                },
                Tok::Str {
                    value: "t/#".into(),
                    double: true
                },
                Tok::Str {
                    value: "a'b".into(),
                    double: false
                },
                Tok::Eof
            ]
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(
            toks("1 2.5 1e3"),
            vec![Tok::Int(1), Tok::Float(2.5), Tok::Float(1000.0), Tok::Eof]
        );
        assert!(tokenize("12abc").is_err());
        assert!(tokenize("99999999999999999999").is_err());
    }

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let t = tokenize("SELECT\n  a").expect("tokenizes");
        assert_eq!((t[1].pos.line, t[1].pos.column), (2, 3));
    }

    #[test]
    fn errors() {
        let e = tokenize("SELECT 'abc").expect_err("unterminated");
        assert_eq!(e.to_string(), "unterminated string literal at 1:8");
        let e = tokenize("SELECT #").expect_err("bad char");
        assert_eq!(e.to_string(), "unexpected character '#' at 1:8");
    }

    #[test]
    fn comments_are_skipped() {
        assert_eq!(
            toks("a -- comment\nb"),
            vec![Tok::Ident("a".into()), Tok::Ident("b".into()), Tok::Eof]
        );
    }
}
