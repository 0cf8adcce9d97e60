//! Randomised tests of the ACL file parser: generated files load into exactly the rules they
//! list (anonymous block, user blocks, patterns); mutated files load or fail with an error naming
//! the file and an existing line; and the access checks take any username, client id, topic or
//! filter without panicking, with a `deny` always winning.

use std::collections::HashMap;

use proptest::collection::vec;
use proptest::prelude::*;

use super::{Access, AclFile};
use crate::auth::AuthFileError;
use crate::fuzz_support::{fuzz_config, mutated_text};

const ORIGIN: &str = "/etc/hermod/acl";

fn access() -> impl Strategy<Value = Option<Access>> {
    prop_oneof![
        Just(None),
        Just(Some(Access::Read)),
        Just(Some(Access::Write)),
        Just(Some(Access::ReadWrite)),
        Just(Some(Access::Deny)),
    ]
}

fn word(a: Access) -> &'static str {
    match a {
        Access::Read => "read",
        Access::Write => "write",
        Access::ReadWrite => "readwrite",
        Access::Deny => "deny",
    }
}

/// Valid filters: `+` as whole levels, `#` only last, `%u`/`%c`, `$` topics, spaces inside.
fn filter() -> impl Strategy<Value = String> {
    (
        vec(
            prop_oneof![
                Just("a".to_owned()),
                Just("+".to_owned()),
                Just("%u".to_owned()),
                Just("%c".to_owned()),
                Just("$SYS".to_owned()),
                Just(String::new()),
                "[a-zé][a-z0-9 ]{0,4}[a-z]",
            ],
            1..4,
        ),
        any::<bool>(),
    )
        .prop_map(|(levels, hash)| {
            let mut f = levels.join("/");
            if hash {
                f.push_str("/#");
            }
            if f.is_empty() {
                f.push('a'); // [MQTT-4.7.3-1] a filter is at least one character
            }
            f
        })
}

#[derive(Debug, Clone)]
enum Line {
    Topic(Option<Access>, String),
    Pattern(Option<Access>, String),
    User(String),
    Noise(String),
}

/// A rule's access word and filter. Without an access word the filter is one word: `topic a b`
/// reads as access `a`, filter `b` (as in Mosquitto).
fn rule() -> impl Strategy<Value = (Option<Access>, String)> {
    (access(), filter()).prop_map(|(a, f)| match a {
        None => (None, f.replace(' ', "_")),
        Some(_) => (a, f),
    })
}

fn line() -> impl Strategy<Value = Line> {
    prop_oneof![
        4 => rule().prop_map(|(a, f)| Line::Topic(a, f)),
        2 => rule().prop_map(|(a, f)| Line::Pattern(a, f)),
        2 => "[a-zA-Z0-9_.@%+#-]{1,8}( [a-z]{1,3})?".prop_map(Line::User),
        1 => prop_oneof![Just(String::new()), "#[ -~]{0,16}", " +# indented comment"].prop_map(Line::Noise),
    ]
}

/// The rules a file must load into: (access, filter) per block.
#[derive(Debug, Default)]
struct Model {
    anonymous: Vec<(Access, String)>,
    users: HashMap<String, Vec<(Access, String)>>,
    patterns: Vec<(Access, String)>,
}

fn render(lines: &[Line], tabs: bool) -> (String, Model) {
    let sep = if tabs { "\t" } else { " " };
    let mut text = String::new();
    let mut model = Model::default();
    let mut user: Option<String> = None;
    for l in lines {
        let rule = |a: &Option<Access>, f: &String| (a.unwrap_or(Access::ReadWrite), f.clone());
        match l {
            Line::Topic(a, f) | Line::Pattern(a, f) => {
                let kw = if matches!(l, Line::Topic(..)) {
                    "topic"
                } else {
                    "pattern"
                };
                match a {
                    Some(a) => text.push_str(&format!("{kw}{sep}{}{sep}{f}\n", word(*a))),
                    None => text.push_str(&format!("{kw}{sep}{f}\n")),
                }
                if matches!(l, Line::Pattern(..)) {
                    model.patterns.push(rule(a, f));
                } else if let Some(u) = &user {
                    model.users.entry(u.clone()).or_default().push(rule(a, f));
                } else {
                    model.anonymous.push(rule(a, f));
                }
            }
            Line::User(u) => {
                text.push_str(&format!("user{sep}{u}\n"));
                model.users.entry(u.clone()).or_default();
                user = Some(u.clone());
            }
            Line::Noise(n) => text.push_str(&format!("{n}\n")),
        }
    }
    (text, model)
}

fn rules(r: &[super::Rule]) -> Vec<(Access, String)> {
    r.iter().map(|r| (r.access, r.filter.clone())).collect()
}

fn file() -> impl Strategy<Value = (String, Model)> {
    (vec(line(), 0..12), any::<bool>()).prop_map(|(lines, tabs)| render(&lines, tabs))
}

fn name() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        "[a-zA-Z0-9_.@-]{1,8}",
        "[a-z+#/%$ ]{0,6}",
        Just("alice".to_owned()),
    ])
}

fn topic() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z+#/$% é]{0,12}",
        filter(),
        "\\$share/[a-z+#]{0,3}/[a-z/+#]{0,6}",
        Just("$SYS/broker/connection/c/state".to_owned()),
    ]
}

proptest! {
    #![proptest_config(fuzz_config(1000, 0x4845_524D_4F44_0401))]

    /// Generated files load into exactly the rules their lines give, block by block.
    #[test]
    fn generated_files_load_into_their_rules((text, model) in file()) {
        let acl = AclFile::parse(&text, ORIGIN).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(rules(&acl.anonymous), model.anonymous);
        prop_assert_eq!(rules(&acl.patterns), model.patterns);
        prop_assert_eq!(acl.users.len(), model.users.len());
        for (u, want) in &model.users {
            let got = acl.users.get(u).map(|r| rules(r));
            prop_assert_eq!(got.as_ref(), Some(want), "user {}", u);
        }
    }

    /// Mutated files: a file, or an error naming the file and an existing line.
    #[test]
    fn mutated_files_load_or_name_the_line(text in file().prop_flat_map(|(t, _)| mutated_text(t))) {
        match AclFile::parse(&text, ORIGIN) {
            Ok(_) => {}
            Err(AuthFileError::Syntax { origin, line, .. }) => {
                prop_assert_eq!(origin, ORIGIN);
                prop_assert!(line >= 1 && line <= text.lines().count(), "line {}", line);
            }
            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
        }
    }

    /// The checks on any identity, topic and filter: no panic; an explicit deny (user, anonymous
    /// block or pattern) forbids both publishing and receiving.
    #[test]
    fn checks_take_any_input_and_deny_wins(
        (text, _) in file(),
        user in name(),
        client in "[a-zA-Z0-9+#/%]{0,8}",
        topics in vec(topic(), 1..6),
    ) {
        let acl = AclFile::parse(&text, ORIGIN).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let user = user.as_deref();
        for t in &topics {
            let denied = acl.explicitly_denied(user, &client, t);
            let publish = acl.check_publish(user, &client, t);
            let receive = acl.check_receive(user, &client, t);
            let _ = acl.check_subscribe(user, &client, t);
            if denied {
                prop_assert!(!publish && !receive, "{:?} denied yet allowed", t);
            }
        }
    }
}
