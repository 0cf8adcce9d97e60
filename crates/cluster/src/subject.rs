//! MQTT topic <-> NATS subject mapping.
//!
//! Nodes exchange messages over NATS, so every MQTT topic needs a NATS subject that NATS can
//! route on. Live messages go on `mq.0.<tokens>` ([`LIVE_QOS0`], QoS 0) and `mq.1.<tokens>`
//! ([`LIVE_QOS1`], QoS 1 and 2); stored copies (JetStream) on `mqs.<tokens>` ([`STORED`]).
//!
//! # Tokens
//!
//! Each MQTT topic level becomes exactly one NATS token, so that NATS wildcards line up with MQTT
//! ones (`+` is `*`, `#` is `>`). A level's bytes are copied, except that `%`, `.`, `*`, `>`,
//! the ASCII control bytes (0x00-0x1F), space and DEL (0x7F) are written `%XX` (uppercase hex):
//! NATS would read `.` as a token separator, `*`/`>` as wildcards, and whitespace or control
//! bytes break its protocol line; `%` itself is escaped so that decoding is unambiguous.
//! Non-ASCII UTF-8 is kept as is (NATS subjects are UTF-8). An empty level (`a//b`, `/a`,
//! `a/`) becomes the token `%` alone, which escaping never produces (an escape is always `%`
//! and two hex digits), since NATS does not allow empty tokens. The mapping is therefore
//! injective and [`subject_to_topic`] inverts it.
//!
//! # Long topics
//!
//! NATS limits a protocol line (`max_control_line`, 4096 bytes by default), and an MQTT topic
//! may be up to 65535 bytes, so no subject made here is ever longer than [`MAX_SUBJECT_LEN`].
//! A topic whose subject would be longer is sent on the truncated subject
//! `<prefix>.<first level token>.%T`, or `<prefix>.%T` when even that is too long (a first level
//! of about 2000 bytes). `%T` is never a normal token, so a truncated subject never collides
//! with a full one. The real topic always travels inside the message payload: receivers never
//! decode a truncated subject, they match the payload's topic against their local
//! subscriptions. Truncation is why routing uses first-level interest (below) rather than the
//! exact subjects of [`filter_to_subjects`]: those never match a truncated subject.
//! Subjects are therefore not unique for long topics: two long topics with the same first level
//! share `<prefix>.<first>.%T`, so a stream keeping one message per subject (retained messages)
//! must not key long topics by subject alone.
//!
//! # First-level interest
//!
//! A node does not subscribe to NATS once per MQTT filter but once per distinct first level of
//! its filters ([`first_level_interest`], [`node_subjects`]): [`Interest::All`] when some
//! filter starts with `+` or `#` (subject `<prefix>.>`), otherwise, per first-level token `t`,
//! `<prefix>.t` and `<prefix>.t.>`, plus [`always_subjects`] (`<prefix>.%T`) once. These
//! subjects never overlap (subjects with different first tokens never overlap, `<prefix>.t`
//! and `<prefix>.t.>` differ in token count, and `%T` is no first-level token), so a node never
//! receives a message twice, and the number of NATS subscriptions stays small however many
//! MQTT subscriptions a node has. `<prefix>.t.>` also covers the truncated `<prefix>.t.%T`; a
//! topic truncated to `<prefix>.%T` (its first level alone is too long) reaches every node
//! that has any interest, and those filter it locally by the payload's topic.

/// Prefix of live QoS 0 messages: a node may drop them, and NATS core delivery (at most once)
/// is enough.
pub const LIVE_QOS0: &str = "mq.0";
/// Prefix of live QoS 1 and QoS 2 messages, kept apart from QoS 0 so that they can be given
/// other delivery guarantees.
pub const LIVE_QOS1: &str = "mq.1";
/// Prefix of stored copies (JetStream), which must outlive the node that received them.
pub const STORED: &str = "mqs";

/// Longest subject made here, in bytes: half of NATS's default `max_control_line` (4096), so
/// that a `PUB`/`SUB`/`MSG` line with its subject, reply subject and sizes always fits.
pub const MAX_SUBJECT_LEN: usize = 2048;

/// The token that marks a truncated subject; never a normal token, since an escape is `%` and
/// two hex digits and an empty level is `%` alone.
const TRUNCATED: &str = "%T";
/// The token of an empty level.
const EMPTY: &str = "%";

/// Whether `byte` is written `%XX` in a token.
fn needs_escape(byte: u8) -> bool {
    matches!(byte, b'%' | b'.' | b'*' | b'>' | 0x00..=0x20 | 0x7F)
}

/// Appends the token of one MQTT topic level to `out`.
fn push_token(out: &mut String, level: &str) {
    if level.is_empty() {
        out.push_str(EMPTY);
        return;
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for ch in level.chars() {
        // Every escaped byte is ASCII, so escaping per char is escaping per byte.
        match u8::try_from(ch) {
            Ok(byte) if needs_escape(byte) => {
                out.push('%');
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0xF)]));
            }
            _ => out.push(ch),
        }
    }
}

/// The token of one MQTT topic level.
fn token(level: &str) -> String {
    let mut out = String::with_capacity(level.len());
    push_token(&mut out, level);
    out
}

/// The subject on which a message published to `topic` travels under `prefix` ([`LIVE_QOS0`],
/// [`LIVE_QOS1`], [`STORED`]), so that NATS routes it to the nodes interested in it; truncated
/// (see the module doc) when it would be longer than [`MAX_SUBJECT_LEN`].
///
/// `topic` is assumed to be a valid MQTT topic name (checked by the broker): `+` and `#` are
/// copied as they are.
pub fn topic_to_subject(prefix: &str, topic: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + topic.len() + 8);
    out.push_str(prefix);
    let mut first_end = None;
    for level in topic.split('/') {
        out.push('.');
        push_token(&mut out, level);
        first_end.get_or_insert(out.len());
        if out.len() > MAX_SUBJECT_LEN {
            break;
        }
    }
    if out.len() <= MAX_SUBJECT_LEN {
        return out;
    }
    // `split` yields at least one level, so `first_end` is set.
    let first_end = first_end.unwrap_or(prefix.len());
    if first_end + 1 + TRUNCATED.len() <= MAX_SUBJECT_LEN {
        out.truncate(first_end);
    } else {
        out.truncate(prefix.len());
    }
    out.push('.');
    out.push_str(TRUNCATED);
    out
}

/// The MQTT topic of a subject made by [`topic_to_subject`], for a receiver that has only the
/// subject. `None` when `subject` is not under `prefix`, is truncated (the topic is then only
/// in the payload), or is not something [`topic_to_subject`] makes (an empty token, a bad or
/// needless escape, a byte that should have been escaped, a wildcard).
pub fn subject_to_topic(prefix: &str, subject: &str) -> Option<String> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    let mut topic = Vec::with_capacity(rest.len());
    for (i, tok) in rest.split('.').enumerate() {
        if i > 0 {
            topic.push(b'/');
        }
        if tok == EMPTY {
            continue;
        }
        if tok.is_empty() {
            return None;
        }
        let bytes = tok.as_bytes();
        let mut j = 0;
        while j < bytes.len() {
            let byte = bytes[j];
            if byte == b'%' {
                let hi = hex_digit(*bytes.get(j + 1)?)?;
                let lo = hex_digit(*bytes.get(j + 2)?)?;
                let decoded = (hi << 4) | lo;
                // Only canonical escapes, so that one topic has one subject.
                if !needs_escape(decoded) {
                    return None;
                }
                topic.push(decoded);
                j += 3;
            } else if needs_escape(byte) {
                return None;
            } else {
                topic.push(byte);
                j += 1;
            }
        }
    }
    String::from_utf8(topic).ok()
}

/// The value of an uppercase hex digit (the only case [`topic_to_subject`] writes).
fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// The NATS subject filters that together match the subjects of exactly the topics the MQTT
/// `filter` matches, for reading stored copies (a JetStream consumer's filter subjects) by MQTT
/// filter: `+` is `*`, `#` is `>`, and `a/#` gives both `<prefix>.a` and `<prefix>.a.>`
/// because in MQTT it matches `a` itself too (`#` alone gives `<prefix>.>`).
///
/// Only full subjects are matched: truncated subjects of long topics are matched only through
/// [`first_level_interest`] (see the module doc). A subject longer than [`MAX_SUBJECT_LEN`] is
/// left out: every topic it would match has a longer subject, hence a truncated one. The
/// `$`-topic rule (`#` and `+` do not match a first level starting with `$`) is not applied;
/// the broker applies it locally. `filter` is assumed to be a valid MQTT filter (checked by the
/// broker).
pub fn filter_to_subjects(prefix: &str, filter: &str) -> Vec<String> {
    let mut base = String::with_capacity(prefix.len() + filter.len() + 8);
    base.push_str(prefix);
    let mut multi = false;
    for level in filter.split('/') {
        match level {
            "#" => {
                multi = true;
                break;
            }
            "+" => base.push_str(".*"),
            _ => {
                base.push('.');
                push_token(&mut base, level);
            }
        }
    }
    let subjects = if !multi {
        vec![base]
    } else if base.len() == prefix.len() {
        vec![format!("{base}.>")]
    } else {
        let all = format!("{base}.>");
        vec![base, all]
    };
    subjects
        .into_iter()
        .filter(|s| s.len() <= MAX_SUBJECT_LEN)
        .collect()
}

/// Which first-level subjects a node subscribes to for one MQTT filter: the unit of NATS
/// subscription (see the module doc), so that a node never receives a message twice.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interest {
    /// Every topic: the filter's first level is `+` or `#`.
    All,
    /// The topics whose first level has this token (escaped as in [`topic_to_subject`]).
    Level(String),
}

/// The first-level interest of an MQTT `filter`: [`Interest::All`] when its first level is `+`
/// or `#`, otherwise the token of its first level.
///
/// Unlike the other functions this takes no prefix: the interest is the same under every prefix
/// ([`interest_subjects`] adds it), so one set of interests serves live and stored subjects.
pub fn first_level_interest(filter: &str) -> Interest {
    let first = filter.split('/').next().unwrap_or_default();
    match first {
        "+" | "#" => Interest::All,
        _ => Interest::Level(token(first)),
    }
}

/// The subjects of one interest under `prefix`: `<prefix>.>` for [`Interest::All`];
/// `<prefix>.t` and `<prefix>.t.>` for [`Interest::Level`] `t` (a subject longer than
/// [`MAX_SUBJECT_LEN`] is left out: it would only match topics that travel truncated, and those
/// arrive on [`always_subjects`]). A node with a `Level` interest must also subscribe to
/// [`always_subjects`] once; [`node_subjects`] applies the whole rule.
pub fn interest_subjects(prefix: &str, interest: &Interest) -> Vec<String> {
    match interest {
        Interest::All => vec![format!("{prefix}.>")],
        Interest::Level(t) => [format!("{prefix}.{t}"), format!("{prefix}.{t}.>")]
            .into_iter()
            .filter(|s| s.len() <= MAX_SUBJECT_LEN)
            .collect(),
    }
}

/// The subjects a node with at least one [`Interest::Level`] and no [`Interest::All`] subscribes
/// to once more, besides its interests' subjects: `<prefix>.%T`, on which topics whose first
/// level alone is too long for a subject travel (no `Level` subject matches it). A node with
/// `All` must not subscribe to it: `<prefix>.>` already matches it, and the node would receive
/// those messages twice.
pub fn always_subjects(prefix: &str) -> Vec<String> {
    vec![format!("{prefix}.{TRUNCATED}")]
}

/// Every subject a node subscribes to under `prefix` for its `interests` (typically one
/// [`first_level_interest`] per local MQTT subscription, duplicates allowed): `<prefix>.>` alone
/// if any is [`Interest::All`], otherwise the [`interest_subjects`] of each distinct level and
/// the [`always_subjects`]; nothing when there are no interests. The subjects never overlap, so
/// each message is received at most once.
pub fn node_subjects<'a>(
    prefix: &str,
    interests: impl IntoIterator<Item = &'a Interest>,
) -> Vec<String> {
    let mut levels = std::collections::BTreeSet::new();
    for interest in interests {
        match interest {
            Interest::All => return interest_subjects(prefix, &Interest::All),
            Interest::Level(_) => {
                levels.insert(interest);
            }
        }
    }
    if levels.is_empty() {
        return Vec::new();
    }
    let mut subjects: Vec<String> = levels
        .into_iter()
        .flat_map(|i| interest_subjects(prefix, i))
        .collect();
    subjects.extend(always_subjects(prefix));
    subjects
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples() {
        assert_eq!(topic_to_subject(LIVE_QOS0, "a/b"), "mq.0.a.b");
        assert_eq!(topic_to_subject(LIVE_QOS0, "a.b/c"), "mq.0.a%2Eb.c");
        assert_eq!(topic_to_subject(LIVE_QOS0, "/x"), "mq.0.%.x");
        assert_eq!(topic_to_subject(LIVE_QOS0, "a/"), "mq.0.a.%");
        assert_eq!(topic_to_subject(LIVE_QOS0, "a//b"), "mq.0.a.%.b");
        assert_eq!(topic_to_subject(LIVE_QOS1, "sp ace"), "mq.1.sp%20ace");
        assert_eq!(topic_to_subject(STORED, "50%"), "mqs.50%25");
        assert_eq!(
            topic_to_subject(STORED, "*/>/\t/\x7f"),
            "mqs.%2A.%3E.%09.%7F"
        );
        assert_eq!(topic_to_subject(STORED, "$SYS/é/日本"), "mqs.$SYS.é.日本");
        assert_eq!(
            subject_to_topic(LIVE_QOS0, "mq.0.a%2Eb.c").as_deref(),
            Some("a.b/c")
        );
        assert_eq!(
            subject_to_topic(LIVE_QOS0, "mq.0.%.x").as_deref(),
            Some("/x")
        );
        assert_eq!(
            subject_to_topic(LIVE_QOS0, "mq.0.%.%").as_deref(),
            Some("/")
        );
    }

    #[test]
    fn bad_subjects_decode_to_none() {
        for bad in [
            "mq.1.a",    // other prefix
            "mq.0",      // no token
            "mq.0a.b",   // prefix not followed by a dot
            "mq.0.a..b", // empty token
            "mq.0.a.",
            "mq.0.a%2",  // short escape
            "mq.0.a%2e", // lowercase
            "mq.0.a%41", // needless escape ('A')
            "mq.0.a.%T", // truncated
            "mq.0.%T",   // truncated
            "mq.0.a b",  // raw space
            "mq.0.a.*",  // wildcard
            "mq.0.a.>",  // wildcard
            "mq.0.%%",   // bad escape
        ] {
            assert_eq!(subject_to_topic(LIVE_QOS0, bad), None, "{bad}");
        }
    }

    #[test]
    fn long_topics_are_truncated() {
        let long = "x".repeat(3000);
        let topic = format!("first/{long}");
        assert_eq!(topic_to_subject(LIVE_QOS0, &topic), "mq.0.first.%T");
        assert_eq!(topic_to_subject(LIVE_QOS0, &long), "mq.0.%T");
        assert_eq!(topic_to_subject(LIVE_QOS0, &format!("{long}/a")), "mq.0.%T");
        // Many short levels.
        let many = vec!["ab"; 1000].join("/");
        assert_eq!(topic_to_subject(STORED, &many), "mqs.ab.%T");
        // Right at the limit: full; one more byte: truncated.
        let fits = "y".repeat(MAX_SUBJECT_LEN - "mqs.a.".len());
        let s = topic_to_subject(STORED, &format!("a/{fits}"));
        assert_eq!(s.len(), MAX_SUBJECT_LEN);
        assert_eq!(subject_to_topic(STORED, &s), Some(format!("a/{fits}")));
        assert_eq!(topic_to_subject(STORED, &format!("a/{fits}y")), "mqs.a.%T");
        // Escaping counts: 700 dots are 2100 bytes of tokens.
        assert_eq!(
            topic_to_subject(STORED, &format!("a/{}", ".".repeat(700))),
            "mqs.a.%T"
        );
        assert_eq!(subject_to_topic(STORED, "mqs.a.%T"), None);
    }

    #[test]
    fn filters() {
        assert_eq!(filter_to_subjects(LIVE_QOS0, "a/b"), ["mq.0.a.b"]);
        assert_eq!(filter_to_subjects(LIVE_QOS0, "a/+/c"), ["mq.0.a.*.c"]);
        assert_eq!(filter_to_subjects(LIVE_QOS0, "a/#"), ["mq.0.a", "mq.0.a.>"]);
        assert_eq!(filter_to_subjects(LIVE_QOS0, "#"), ["mq.0.>"]);
        assert_eq!(filter_to_subjects(LIVE_QOS0, "+"), ["mq.0.*"]);
        assert_eq!(filter_to_subjects(LIVE_QOS0, "+/#"), ["mq.0.*", "mq.0.*.>"]);
        assert_eq!(filter_to_subjects(LIVE_QOS0, "/#"), ["mq.0.%", "mq.0.%.>"]);
        assert_eq!(
            filter_to_subjects(STORED, "a.b/ /#"),
            ["mqs.a%2Eb.%20", "mqs.a%2Eb.%20.>"]
        );
        let long = "z".repeat(MAX_SUBJECT_LEN);
        assert!(filter_to_subjects(STORED, &format!("{long}/#")).is_empty());
    }

    #[test]
    fn interests() {
        assert_eq!(first_level_interest("#"), Interest::All);
        assert_eq!(first_level_interest("+/a"), Interest::All);
        assert_eq!(
            first_level_interest("a.b/+"),
            Interest::Level("a%2Eb".into())
        );
        assert_eq!(first_level_interest("/a"), Interest::Level("%".into()));
        assert_eq!(interest_subjects(STORED, &Interest::All), ["mqs.>"]);
        assert_eq!(
            interest_subjects(STORED, &Interest::Level("a".into())),
            ["mqs.a", "mqs.a.>"]
        );
        assert_eq!(always_subjects(STORED), ["mqs.%T"]);
        let a = Interest::Level("a".into());
        let b = Interest::Level("b".into());
        assert_eq!(
            node_subjects(LIVE_QOS0, [&b, &a, &b]),
            ["mq.0.a", "mq.0.a.>", "mq.0.b", "mq.0.b.>", "mq.0.%T"]
        );
        assert_eq!(node_subjects(LIVE_QOS0, [&a, &Interest::All]), ["mq.0.>"]);
        assert!(node_subjects(LIVE_QOS0, []).is_empty());
    }
}
