//! MQTT topic filters for FROM and `=~`: validation and matching (`+`, `#`, `$` topics).

/// Whether `filter` is a valid MQTT topic filter: not empty, `#` only as the whole last level,
/// `+` only as a whole level, no NUL [MQTT-4.7.1-1, MQTT-4.7.1-2].
pub fn is_valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == last,
        "+" => true,
        l => !l.contains(['#', '+']),
    })
}

/// Whether the topic name `topic` matches `filter`. A filter starting with a wildcard does
/// not match a topic starting with `$` (`#` does not match `$SYS/x`) [MQTT-4.7.2-1]. An
/// invalid filter or a topic with wildcards matches nothing.
pub fn matches(filter: &str, topic: &str) -> bool {
    if !is_valid_filter(filter) || topic.is_empty() || topic.contains(['#', '+']) {
        return false;
    }
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        for ok in ["a", "a/b", "+", "#", "a/+/c", "a/#", "+/+", "/", "$SYS/#"] {
            assert!(is_valid_filter(ok), "{ok}");
        }
        for bad in ["", "a/#/b", "a#", "a+/b", "#/a", "a/b+", "a\0"] {
            assert!(!is_valid_filter(bad), "{bad:?}");
        }
    }

    #[test]
    fn matching() {
        let cases = [
            ("t/#", "t", true),
            ("t/#", "t/a/b", true),
            ("t/+", "t/a", true),
            ("t/+", "t/a/b", false),
            ("t/+", "t/", true),
            ("+/+", "/a", true),
            ("#", "a/b", true),
            ("a/b", "a/b", true),
            ("a/b", "a/c", false),
            ("a/b", "a/b/c", false),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("a/#/b", "a/x/b", false),
            ("t/#", "t/+", false),
        ];
        for (filter, topic, want) in cases {
            assert_eq!(matches(filter, topic), want, "{filter} vs {topic}");
        }
    }
}
