//! Topic names and topic filters (4.7).

/// Why a topic name or filter is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// [MQTT-4.7.3-1] topic names and filters are at least one character long.
    #[error("[MQTT-4.7.3-1] empty topic")]
    Empty,
    /// [MQTT-3.3.2-2] a topic name must not contain wildcards.
    #[error("[MQTT-3.3.2-2] wildcard in topic name")]
    WildcardInName,
    /// [MQTT-4.7.1-2] `#` must be last and occupy a whole level; [MQTT-4.7.1-3] `+` must occupy a whole level.
    #[error("[MQTT-4.7.1-2/3] misplaced wildcard in topic filter")]
    BadWildcard,
    /// [MQTT-4.7.3-2] no U+0000.
    #[error("[MQTT-4.7.3-2] null character in topic")]
    NullChar,
    /// A `$share/` filter without a group name or filter, or with a wildcard in the group name (4.8.2).
    #[error("invalid shared subscription")]
    BadShare,
}

/// Validates a PUBLISH topic name: non-empty, no `+`/`#`, no U+0000.
///
/// # Errors
/// The first rule broken.
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    for b in topic.bytes() {
        match b {
            b'+' | b'#' => return Err(TopicError::WildcardInName),
            0 => return Err(TopicError::NullChar),
            _ => {}
        }
    }
    Ok(())
}

/// Validates a topic filter: non-empty, `#` only as the whole last level, `+` only as a whole level.
///
/// # Errors
/// The first rule broken.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.as_bytes().contains(&0) {
            return Err(TopicError::NullChar);
        }
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::BadWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::BadWildcard);
        }
    }
    Ok(())
}

/// Splits `$share/{group}/{filter}` into `(group, filter)`; `Ok(None)` for an ordinary filter.
///
/// # Errors
/// [`TopicError::BadShare`] for an empty group, a group with `+`/`#`, or a missing filter.
pub fn parse_shared(filter: &str) -> Result<Option<(&str, &str)>, TopicError> {
    let Some(rest) = filter.strip_prefix("$share/") else {
        if filter == "$share" {
            return Err(TopicError::BadShare);
        }
        return Ok(None);
    };
    let Some((group, inner)) = rest.split_once('/') else {
        return Err(TopicError::BadShare);
    };
    if group.is_empty() || group.contains(['+', '#']) || inner.is_empty() {
        return Err(TopicError::BadShare);
    }
    validate_topic_filter(inner)?;
    Ok(Some((group, inner)))
}

/// True when `filter` matches `topic` (4.7). Filters starting with a wildcard do not match topics
/// starting with `$` [MQTT-4.7.2-1]. Both are assumed valid.
#[must_use]
pub fn matches(filter: &str, topic: &str) -> bool {
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
    fn matching_table() {
        // (filter, topic, matches)
        let cases = [
            ("sport/tennis/player1/#", "sport/tennis/player1", true), // [MQTT-4.7.1-2] # includes the parent
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/ranking",
                true,
            ),
            ("sport/#", "sport", true),
            ("#", "a/b/c", true),
            ("+", "a", true),
            ("+", "a/b", false),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+", "/finance", false),
            ("sport/+/player1", "sport/tennis/player1", true),
            ("sport/+", "sport/", true),
            ("a/b", "a/b/c", false),
            ("#", "$SYS/x", false), // [MQTT-4.7.2-1]
            ("+/monitor/Clients", "$SYS/monitor/Clients", false), // [MQTT-4.7.2-1]
            ("$SYS/#", "$SYS/monitor/Clients", true),
            ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
        ];
        for (f, t, want) in cases {
            assert_eq!(matches(f, t), want, "{f} vs {t}");
        }
    }

    #[test]
    fn filter_validation() {
        for ok in ["#", "+", "a/+/b", "a/#", "+/+", "/", "a//b"] {
            assert_eq!(validate_topic_filter(ok), Ok(()), "{ok}");
        }
        for bad in ["a/#/b", "a#", "a/b+", "", "#/a", "a\0"] {
            assert!(validate_topic_filter(bad).is_err(), "{bad}");
        }
        assert_eq!(validate_topic_name("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name("a/#"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
    }

    #[test]
    fn shared_parse() {
        assert_eq!(parse_shared("$share/g/a/+"), Ok(Some(("g", "a/+"))));
        assert_eq!(parse_shared("a/b"), Ok(None));
        assert!(parse_shared("$share/g").is_err());
        assert!(parse_shared("$share//a").is_err());
        assert!(parse_shared("$share/g+/a").is_err());
    }
}
