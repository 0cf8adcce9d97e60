//! Output for people: aligned tables (columns sized to their content, numbers right-aligned)
//! and `key  value` lists. Control characters in values (a client id can hold anything) are
//! shown escaped, so they cannot move the cursor or recolour the terminal.

use serde_json::Value;
use std::fmt::Write as _;

/// A table: a header row and rows of cells.
#[derive(Debug, Default)]
pub(crate) struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(headers: &[&str]) -> Self {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.into_iter().map(|c| clean(&c)).collect());
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row (header first), no trailing spaces.
    pub(crate) fn render(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        let mut numeric = vec![true; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(width(cell));
                if !cell.is_empty() && !is_number(cell) {
                    numeric[i] = false;
                }
            }
        }
        // A column with no value at all is text (left-aligned).
        for (i, n) in numeric.iter_mut().enumerate() {
            if self
                .rows
                .iter()
                .all(|r| r.get(i).is_none_or(String::is_empty))
            {
                *n = false;
            }
        }
        let mut out = String::new();
        let mut line = |cells: &[String]| {
            let mut l = String::new();
            for i in 0..columns {
                let cell = cells.get(i).map_or("", String::as_str);
                let pad = widths[i].saturating_sub(width(cell));
                if i > 0 {
                    l.push_str("  ");
                }
                if numeric[i] {
                    l.push_str(&" ".repeat(pad));
                    l.push_str(cell);
                } else {
                    l.push_str(cell);
                    l.push_str(&" ".repeat(pad));
                }
            }
            let _ = writeln!(out, "{}", l.trim_end());
        };
        line(&self.headers);
        for row in &self.rows {
            line(row);
        }
        out
    }
}

/// `key  value` lines, keys padded to the longest, numbers right-aligned among themselves.
pub(crate) fn key_values(pairs: &[(String, String)]) -> String {
    let key_width = pairs.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
    let num_width = pairs
        .iter()
        .filter(|(_, v)| is_number(v))
        .map(|(_, v)| width(v))
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let v = clean(v);
        let pad = key_width - width(k);
        let value = if is_number(&v) {
            format!("{}{v}", " ".repeat(num_width - width(&v)))
        } else {
            v
        };
        let _ = writeln!(out, "{k}{}  {value}", " ".repeat(pad));
    }
    out
}

/// A JSON value as a cell: strings bare, null empty, numbers and booleans as JSON.
pub(crate) fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.to_owned(),
        Some(other) => other.to_string(),
    }
}

/// A number of seconds as "3d 4h", "2h 5m", "4m 10s" or "12s".
pub(crate) fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.parse::<f64>().is_ok() && !s.starts_with(['+', '.']) && !s.ends_with('.')
}

fn width(s: &str) -> usize {
    s.chars().count()
}

/// Escapes control characters (`\n`, `\x1b`, ...) so a cell stays on one line and inert.
fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_content_and_numbers_align_right() {
        let mut t = Table::new(&["CLIENT ID", "SUBS", "ADDRESS"]);
        t.row(vec!["a".into(), "3".into(), "127.0.0.1:5000".into()]);
        t.row(vec!["long-client".into(), "120".into(), "".into()]);
        assert_eq!(
            t.render(),
            "CLIENT ID    SUBS  ADDRESS\n\
             a               3  127.0.0.1:5000\n\
             long-client   120\n"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut t = Table::new(&["ID"]);
        t.row(vec!["evil\x1b[2Jid\n".into()]);
        assert_eq!(t.render(), "ID\nevil\\u{1b}[2Jid\\n\n");
    }

    #[test]
    fn key_values_align() {
        let out = key_values(&[
            ("connections".into(), "3".into()),
            ("retained".into(), "1200".into()),
            ("node".into(), "hermod@local".into()),
        ]);
        assert_eq!(
            out,
            "connections     3\nretained     1200\nnode         hermod@local\n"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(12), "12s");
        assert_eq!(human_duration(250), "4m 10s");
        assert_eq!(human_duration(7500), "2h 5m");
        assert_eq!(human_duration(3 * 86_400 + 4 * 3600 + 5), "3d 4h");
    }
}
