//! Properties of the MQTT topic <-> NATS subject mapping, checked against a tiny NATS subject
//! matcher and a tiny MQTT filter matcher written here.
#![allow(clippy::unwrap_used)]

use hermod_cluster::subject::{
    Interest, LIVE_QOS0, MAX_SUBJECT_LEN, STORED, filter_to_subjects, first_level_interest,
    interest_subjects, node_subjects, subject_to_topic, topic_to_subject,
};
use proptest::prelude::*;

/// NATS matching: `*` one token, `>` one or more tokens (last only).
fn nats_matches(filter: &str, subject: &str) -> bool {
    let f: Vec<&str> = filter.split('.').collect();
    let s: Vec<&str> = subject.split('.').collect();
    for (i, ft) in f.iter().enumerate() {
        match *ft {
            ">" => return s.len() > i,
            "*" => {
                if i >= s.len() {
                    return false;
                }
            }
            lit => {
                if s.get(i) != Some(&lit) {
                    return false;
                }
            }
        }
    }
    f.len() == s.len()
}

/// MQTT matching: `+` one level, `#` the rest including the parent; no `$` rule.
fn mqtt_matches(filter: &str, topic: &str) -> bool {
    let f: Vec<&str> = filter.split('/').collect();
    let t: Vec<&str> = topic.split('/').collect();
    for (i, fl) in f.iter().enumerate() {
        match *fl {
            "#" => return true,
            "+" => {
                if i >= t.len() {
                    return false;
                }
            }
            lit => {
                if t.get(i) != Some(&lit) {
                    return false;
                }
            }
        }
    }
    f.len() == t.len()
}

/// One topic level: often empty or one of a few short values (so that filters match and
/// collisions would show), otherwise characters NATS treats specially, `%`, whitespace, control
/// bytes and non-ASCII.
fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just(String::new()),
        3 => prop::sample::select(vec!["a", "b", "a.b", "a%2Eb", "%", "%T", "$SYS"]).prop_map(String::from),
        5 => prop::collection::vec(
            prop::sample::select(vec![
                'a', 'b', 'A', 'T', '2', 'E', '.', '*', '>', '%', ' ', '\t', '\n', '\u{1}',
                '\u{1f}', '\u{7f}', '$', 'é', '日', '\u{80}', '\u{a0}', '🦀',
            ]),
            0..5,
        )
        .prop_map(|cs| cs.into_iter().collect()),
        1 => "[^/+#\u{0}]{0,12}",
    ]
}

fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec(level(), 1..8).prop_map(|ls| ls.join("/"))
}

/// Topics of up to 200 levels, some long, so that some are truncated.
fn long_topic() -> impl Strategy<Value = String> {
    let lvl = prop_oneof![
        4 => level(),
        1 => (1usize..1200, prop::sample::select(vec!["x", ".", "é", " "]))
            .prop_map(|(n, s)| s.repeat(n)),
    ];
    prop::collection::vec(lvl, 1..=200).prop_map(|ls| ls.join("/"))
}

/// A filter derived from a topic (so that it often matches similar topics): some levels
/// replaced by `+`, maybe cut and ended by `#`.
fn filter() -> impl Strategy<Value = String> {
    (
        prop::collection::vec((level(), prop::bool::weighted(0.3)), 0..6),
        prop::bool::ANY,
    )
        .prop_filter_map("empty filter", |(levels, hash)| {
            let mut ls: Vec<String> = levels
                .into_iter()
                .map(|(l, plus)| if plus { "+".into() } else { l })
                .collect();
            if hash {
                ls.push("#".into());
            }
            (!ls.is_empty()).then(|| ls.join("/"))
        })
}

fn full(s: &str) -> bool {
    !s.ends_with(".%T")
}

fn check_subject_shape(s: &str) {
    assert!(s.len() <= MAX_SUBJECT_LEN, "too long: {}", s.len());
    for tok in s.split('.') {
        assert!(!tok.is_empty(), "empty token in {s:?}");
    }
    assert!(
        !s.bytes().any(|b| b == b'*'
            || b == b'>'
            || b.is_ascii_whitespace()
            || b.is_ascii_control()
            || b == b' '),
        "bad byte in {s:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn round_trip(t in topic()) {
        let s = topic_to_subject(LIVE_QOS0, &t);
        check_subject_shape(&s);
        prop_assert!(full(&s));
        prop_assert_eq!(subject_to_topic(LIVE_QOS0, &s), Some(t.clone()));
        prop_assert_eq!(subject_to_topic(STORED, &s), None);
    }

    #[test]
    fn injective(a in topic(), b in topic()) {
        let (sa, sb) = (topic_to_subject(LIVE_QOS0, &a), topic_to_subject(LIVE_QOS0, &b));
        prop_assert_eq!(a == b, sa == sb, "{:?} {:?} -> {:?} {:?}", a, b, sa, sb);
    }

    #[test]
    fn filter_subjects_match_like_mqtt(f in filter(), ts in prop::collection::vec(topic(), 1..20)) {
        let subs = filter_to_subjects(LIVE_QOS0, &f);
        for s in &subs {
            prop_assert!(s.len() <= MAX_SUBJECT_LEN);
            prop_assert!(s.split('.').all(|t| !t.is_empty()));
        }
        // Also topics made from the filter itself, wildcards filled in.
        let mut topics = ts;
        topics.push(f.replace('+', "x").replace("/#", "").replace('#', "y"));
        topics.push(f.replace('+', "").replace('#', "z/w"));
        for t in &topics {
            let s = topic_to_subject(LIVE_QOS0, t);
            let by_nats = subs.iter().filter(|sub| nats_matches(sub, &s)).count();
            prop_assert!(by_nats <= 1, "overlapping subjects {:?} for {:?}", subs, s);
            prop_assert_eq!(by_nats == 1, mqtt_matches(&f, t), "filter {:?} {:?} topic {:?} {:?}", f, subs, t, s);
            if mqtt_matches(&f, t) {
                let i = first_level_interest(&f);
                prop_assert!(interest_subjects(LIVE_QOS0, &i).iter().any(|sub| nats_matches(sub, &s)));
                prop_assert_eq!(node_subjects(LIVE_QOS0, [&i]).iter().filter(|sub| nats_matches(sub, &s)).count(), 1);
            }
        }
    }
}

// Long topics (up to 200 levels, levels up to 3600 bytes) cost more per case.
proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn long_topics(t in long_topic()) {
        let s = topic_to_subject(STORED, &t);
        check_subject_shape(&s);
        if full(&s) {
            prop_assert_eq!(subject_to_topic(STORED, &s), Some(t.clone()));
        } else {
            prop_assert_eq!(subject_to_topic(STORED, &s), None);
            // Truncated only when the full subject would be too long.
            let tokens: usize = t.split('/').map(|l| if l.is_empty() { 1 } else {
                l.bytes().map(|b| if matches!(b, b'%' | b'.' | b'*' | b'>' | 0..=0x20 | 0x7f) { 3 } else { 1 }).sum()
            } + 1).sum();
            prop_assert!(STORED.len() + tokens > MAX_SUBJECT_LEN);
        }
        // Every filter matching the topic has interests whose subjects reach it, exactly once.
        let first = t.split('/').next().unwrap();
        for f in ["#", "+/#", &format!("{first}/#")] {
            prop_assert!(mqtt_matches(f, &t));
            let i = first_level_interest(f);
            let subs = node_subjects(STORED, [&i]);
            let n = subs.iter().filter(|sub| nats_matches(sub, &s)).count();
            prop_assert_eq!(n, 1, "{:?} {:?} {:?}", f, subs, s);
        }
    }

    #[test]
    fn node_subjects_never_overlap(fs in prop::collection::vec(filter(), 1..6), ts in prop::collection::vec(long_topic(), 1..5)) {
        let interests: Vec<Interest> = fs.iter().map(|f| first_level_interest(f)).collect();
        let subs = node_subjects(LIVE_QOS0, &interests);
        for t in &ts {
            let s = topic_to_subject(LIVE_QOS0, t);
            let n = subs.iter().filter(|sub| nats_matches(sub, &s)).count();
            prop_assert!(n <= 1, "{:?} matched {} times by {:?}", s, n, subs);
            if fs.iter().any(|f| mqtt_matches(f, t)) {
                prop_assert_eq!(n, 1, "{:?} not delivered for {:?}", t, fs);
            }
        }
    }
}
