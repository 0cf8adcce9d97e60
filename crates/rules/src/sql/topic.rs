//! MQTT topic filters for FROM and `=~`: validation and matching (`+`, `#`, `$` topics).

/// Whether `filter` is a valid MQTT topic filter: not empty, `#` only as the whole last level,
/// `+` only as a whole level, no NUL [MQTT-4.7.1-1, MQTT-4.7.1-2]. The broker's own check
/// (`hermod_proto::topic`), so a rule accepts exactly the filters a client may subscribe to.
pub fn is_valid_filter(filter: &str) -> bool {
    hermod_proto::topic::validate_topic_filter(filter).is_ok()
}

/// Whether the topic name `topic` matches `filter`. A filter starting with a wildcard does
/// not match a topic starting with `$` (`#` does not match `$SYS/x`) [MQTT-4.7.2-1]. An
/// invalid filter or an invalid topic name (empty, wildcards, NUL) matches nothing. The
/// matching is the broker's (`hermod_proto::topic::matches`), which assumes both are valid.
pub fn matches(filter: &str, topic: &str) -> bool {
    is_valid_filter(filter)
        && hermod_proto::topic::validate_topic_name(topic).is_ok()
        && hermod_proto::topic::matches(filter, topic)
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
