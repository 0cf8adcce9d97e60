//! Percent-encoding of path segments and query strings.

/// Percent-encodes one path segment or query value (everything but RFC 3986 unreserved).
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `path?k=v&...` with the given (encoded) pairs; pairs with `None` are left out.
pub(crate) fn with_query(path: &str, pairs: &[(&str, Option<String>)]) -> String {
    let mut out = path.to_owned();
    let mut sep = '?';
    for (k, v) in pairs {
        if let Some(v) = v {
            out.push(sep);
            out.push_str(k);
            out.push('=');
            out.push_str(&encode(v));
            sep = '&';
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding() {
        assert_eq!(encode("a/b c+#"), "a%2Fb%20c%2B%23");
        assert_eq!(
            with_query(
                "/x",
                &[
                    ("a", Some("1".into())),
                    ("b", None),
                    ("c", Some("é".into()))
                ]
            ),
            "/x?a=1&c=%C3%A9"
        );
    }
}
