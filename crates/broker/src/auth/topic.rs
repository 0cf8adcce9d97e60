//! Topic-filter helpers shared by the ACL file and JWT claims. Validation and matching are the
//! codec's own (`hermod_proto::topic`), the one definition of the MQTT rules in Hermod, which
//! behaves as Mosquitto's `mosquitto_topic_matches_sub`.

/// Whether `filter` is a valid subscription filter (`+` and `#` occupy a whole level, `#` only
/// last). This is the check Mosquitto applies to every ACL topic when it reads the file.
pub(crate) fn valid_filter(filter: &str) -> bool {
    filter.len() <= 65535 && hermod_proto::topic::validate_topic_filter(filter).is_ok()
}

/// Whether a concrete `topic` matches `filter` (MQTT rules, including: a filter starting with a
/// wildcard does not match a topic starting with `$`).
pub(crate) fn matches(filter: &str, topic: &str) -> bool {
    hermod_proto::topic::matches(filter, topic)
}

/// Whether every topic matched by `filter` is also matched by `rule` (the subscription is
/// "covered" by the rule). Used for JWT subscribe claims: rule `a/#` covers `a/b/+`, rule `a/+`
/// does not cover `a/#`, rule `a/b` does not cover `a/+`.
pub(crate) fn covers(rule: &str, filter: &str) -> bool {
    let filter_is_dollar = filter.starts_with('$');
    if filter_is_dollar && (rule.starts_with('+') || rule.starts_with('#')) {
        return false;
    }
    // A filter starting with a wildcard also matches `$` topics only if the rule does; a rule
    // starting with a wildcard never matches `$` topics and neither does such a filter, so the
    // plain level walk below is exact.
    let mut r = rule.split('/');
    let mut f = filter.split('/');
    loop {
        match (r.next(), f.next()) {
            (Some("#"), _) => return true,
            (Some(_), Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(rl), Some(fl)) if rl == fl && fl != "+" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether some topic is matched by both filters. Used to refuse a SUBSCRIBE whose filter can
/// match no topic the client may read: `a/#` and `+/b` intersect (`a/b`), `a/+` and `a` do not,
/// and a filter starting with a wildcard never meets one starting with `$` (such a filter does
/// not match `$` topics).
pub(crate) fn intersects(a: &str, b: &str) -> bool {
    let wild_first = |f: &str| f.starts_with('+') || f.starts_with('#');
    if (a.starts_with('$') && wild_first(b)) || (b.starts_with('$') && wild_first(a)) {
        return false;
    }
    let mut x = a.split('/');
    let mut y = b.split('/');
    loop {
        match (x.next(), y.next()) {
            (Some("#"), _) | (_, Some("#")) | (None, None) => return true,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(l), Some(r)) if l == r => {}
            _ => return false,
        }
    }
}

/// The filter a `$share/<group>/<filter>` subscription really subscribes to; other filters are
/// returned unchanged. `None` for a malformed shared subscription.
pub(crate) fn strip_share(filter: &str) -> Option<&str> {
    match filter.strip_prefix("$share/") {
        None => Some(filter),
        Some(rest) => {
            let (group, inner) = rest.split_once('/')?;
            if group.is_empty() || inner.is_empty() {
                None
            } else {
                Some(inner)
            }
        }
    }
}

/// Substitutes `%u` / `%c` in an ACL pattern. Returns `Subst::Skip` when the pattern needs a
/// username the client does not have (Mosquitto skips such patterns), `Subst::Unsafe` when a
/// value that would be substituted contains `+`, `#` or `/` (it could widen the rule or reach
/// into another client's subtree), otherwise the concrete filter.
pub(crate) fn substitute(pattern: &str, username: Option<&str>, client_id: &str) -> Subst {
    if !pattern.contains('%') {
        return Subst::Filter(pattern.to_owned());
    }
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut rest = pattern;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let value = match after.as_bytes().first() {
            Some(b'c') => Some(client_id),
            Some(b'u') => match username {
                Some(u) => Some(u),
                None => return Subst::Skip,
            },
            _ => None,
        };
        match value {
            Some(v) => {
                if v.contains(['+', '#', '/']) {
                    return Subst::Unsafe;
                }
                out.push_str(v);
                rest = &after[1..];
            }
            None => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Subst::Filter(out)
}

/// Result of [`substitute`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Subst {
    Filter(String),
    Skip,
    Unsafe,
}

/// Mosquitto's `acl__check_dollar` for publishes: clients may not publish into `$SYS` (except
/// a bridge's `$SYS/broker/connection/<id>/state`) nor to a `$share/...` topic. Applied before
/// any ACL source, exactly like Mosquitto does whatever plugins are configured.
pub(crate) fn publish_dollar_allowed(topic: &str) -> bool {
    if topic.starts_with("$SYS") {
        matches("$SYS/broker/connection/+/state", topic)
    } else {
        !topic.starts_with("$share")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_validity() {
        for ok in ["a", "a/b", "+", "#", "a/+/b", "a/#", "/", "+/+", "$SYS/#"] {
            assert!(valid_filter(ok), "{ok}");
        }
        for bad in ["", "a/#/b", "a#", "a/b+", "#/a", "a\0b"] {
            assert!(!valid_filter(bad), "{bad}");
        }
    }

    #[test]
    fn matching() {
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("a/+/c", "a/b/c"));
        assert!(!matches("a/+/c", "a/b/d"));
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(matches("+", ""));
    }

    #[test]
    fn covering() {
        assert!(covers("a/#", "a/b/+"));
        assert!(covers("a/#", "a/#"));
        assert!(covers("a/+", "a/+"));
        assert!(!covers("a/+", "a/#"));
        assert!(!covers("a/b", "a/+"));
        assert!(!covers("a/#", "#"));
        assert!(!covers("#", "$SYS/#"));
        assert!(covers("#", "x/#"));
    }

    #[test]
    fn intersecting() {
        for (a, b) in [
            ("a/#", "+/b"),
            ("a/#", "a"),
            ("#", "x/y"),
            ("a/+/c", "a/b/+"),
            ("a/b", "a/b"),
            ("+", "x"),
            ("$SYS/#", "$SYS/+/x"),
            ("sec/%u", "sec/+"),
        ] {
            assert!(intersects(a, b), "{a} ∩ {b}");
            assert!(intersects(b, a), "{b} ∩ {a}");
        }
        for (a, b) in [
            ("a/+", "a"),
            ("a/b", "a/c"),
            ("sec/bob/#", "sec/alice/#"),
            ("#", "$SYS/x"),
            ("+/x", "$SYS/x"),
            ("a/b/c", "a/+"),
            ("a", "a/b"),
        ] {
            assert!(!intersects(a, b), "{a} ∩ {b}");
            assert!(!intersects(b, a), "{b} ∩ {a}");
        }
    }

    #[test]
    fn substitution() {
        assert_eq!(
            substitute("d/%u/%c", Some("al"), "c1"),
            Subst::Filter("d/al/c1".into())
        );
        assert_eq!(substitute("d/%u", None, "c1"), Subst::Skip);
        assert_eq!(substitute("d/%c", None, "c1"), Subst::Filter("d/c1".into()));
        assert_eq!(substitute("d/%u", Some("a/b"), "c"), Subst::Unsafe);
        assert_eq!(substitute("d/%c", Some("a"), "#"), Subst::Unsafe);
        assert_eq!(
            substitute("d/%x/%", Some("a"), "c"),
            Subst::Filter("d/%x/%".into())
        );
        assert_eq!(strip_share("$share/g/a/b"), Some("a/b"));
        assert_eq!(strip_share("$share/g"), None);
    }
}
