//! Mosquitto's `acl_file`, read the way Mosquitto 2.0 reads it.
//!
//! ```text
//! # comment (a `#` in the first column)
//! topic read $SYS/#            <- before any `user` line: applies to anonymous clients only
//! user roger                   <- following `topic` lines apply to username "roger" only
//! topic foo/bar                <- no access word = readwrite
//! topic deny foo/bar/secret
//! pattern write sensors/%u/%c  <- applies to every client, whatever `user` line precedes it
//! ```
//!
//! Semantics (from Mosquitto 2.0's `security_default.c` / `security.c`):
//! - A client with a username gets that user's `topic` rules (none if the user has no block)
//!   plus all `pattern` rules; a client without a username gets the rules written before the
//!   first `user` line plus the patterns. Anything not allowed is denied.
//! - `deny` wins. Mosquitto puts deny rules first in each list; Hermod goes one step further
//!   and lets a `pattern deny` veto a `topic` allow too (Mosquitto would check the user list
//!   first). Only ever narrower than Mosquitto.
//! - Pattern substitution: `%u` = username (a pattern with `%u` is skipped for anonymous
//!   clients), `%c` = client id. Like Mosquitto 2.0, a username or client id containing `+` or
//!   `#` gets no access through patterns at all. In addition a value containing `/` is never
//!   substituted (it could reach into another client's subtree); an allow pattern needing it is
//!   skipped and a deny pattern needing it denies.
//! - SUBSCRIBE is checked for *reachability*: a filter is refused when it can match no topic
//!   the client may read (no read rule intersects it, or a deny rule covers all of it).
//!   Mosquitto 2.0's acl_file grants every SUBSCRIBE (`/* FIXME - implement ACL subscription
//!   strings. */`) and only filters deliveries; client test suites and users expect a failure
//!   code for a subscription that can never deliver anything. A filter that overlaps allowed
//!   and denied topics is granted: `topic read a/#` lets a client subscribe to `a/b/+` *and* to
//!   `#`; the latter only ever receives `a/...`. So `read` is still enforced per message: the
//!   broker calls [`AclFile::check_receive`] when it routes a message and again when it sends it.
//! - `$SYS`: wildcards at the start of a rule never match `$` topics (`#` does not grant
//!   `$SYS/...`; write `topic read $SYS/#`). Publishing to `$SYS` is refused whatever the file
//!   says, except `$SYS/broker/connection/<id>/state`; publishing to `$share/...` is refused.

use super::AuthFileError;
use super::topic::{self, Subst};
use std::collections::HashMap;
use std::path::Path;

/// Access a rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Deny,
    Read,
    Write,
    ReadWrite,
}

impl Access {
    fn grants(self, want: Want) -> bool {
        matches!(
            (self, want),
            (Access::Read | Access::ReadWrite, Want::Read)
                | (Access::Write | Access::ReadWrite, Want::Write)
        )
    }
}

#[derive(Debug, Clone, Copy)]
enum Want {
    Read,
    Write,
}

#[derive(Debug, Clone)]
struct Rule {
    access: Access,
    filter: String,
}

/// A parsed ACL file. Immutable; a reload builds a new one.
#[derive(Debug, Clone, Default)]
pub struct AclFile {
    anonymous: Vec<Rule>,
    users: HashMap<String, Vec<Rule>>,
    patterns: Vec<Rule>,
}

impl AclFile {
    /// Reads and parses `path`; errors name the file and the line.
    pub fn load(path: &Path) -> Result<Self, AuthFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthFileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses file contents; `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Self, AuthFileError> {
        let mut acl = AclFile::default();
        let mut user: Option<String> = None;
        for (n, raw) in text.lines().enumerate() {
            let err = |message: String| AuthFileError::Syntax {
                origin: origin.to_owned(),
                line: n + 1,
                message,
            };
            // Mosquitto trims trailing whitespace and splits on spaces; we also accept tabs
            // and indented comments, which Mosquitto rejects (never the other way round).
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, rest) = split_word(line);
            match keyword {
                "topic" | "pattern" => {
                    let (first, after) = split_word(rest);
                    if first.is_empty() {
                        return Err(err(format!("empty topic in `{keyword}` line")));
                    }
                    let (access, filter) = if after.is_empty() {
                        (Access::ReadWrite, first)
                    } else {
                        let access = match first {
                            "read" => Access::Read,
                            "write" => Access::Write,
                            "readwrite" => Access::ReadWrite,
                            "deny" => Access::Deny,
                            other => {
                                return Err(err(format!(
                                    "invalid access type \"{other}\" (expected read, write, \
                                     readwrite or deny)"
                                )));
                            }
                        };
                        (access, after)
                    };
                    if !topic::valid_filter(filter) {
                        return Err(err(format!("invalid ACL topic \"{filter}\"")));
                    }
                    let rule = Rule {
                        access,
                        filter: filter.to_owned(),
                    };
                    if keyword == "pattern" {
                        acl.patterns.push(rule);
                    } else {
                        match &user {
                            Some(u) => acl.users.entry(u.clone()).or_default().push(rule),
                            None => acl.anonymous.push(rule),
                        }
                    }
                }
                "user" => {
                    if rest.is_empty() {
                        return Err(err("missing username".into()));
                    }
                    // Ensure a user block exists even if empty: such a user gets only patterns.
                    acl.users.entry(rest.to_owned()).or_default();
                    user = Some(rest.to_owned());
                }
                other => return Err(err(format!("invalid line (unknown keyword \"{other}\")"))),
            }
        }
        Ok(acl)
    }

    /// May this client publish to `topic`?
    pub fn check_publish(&self, username: Option<&str>, client_id: &str, topic: &str) -> bool {
        topic::publish_dollar_allowed(topic) && self.check(username, client_id, topic, Want::Write)
    }

    /// May this client subscribe to `filter` (a `$share/<group>/` prefix is stripped)? Yes when
    /// some topic it matches is readable: a read rule intersects it and no deny rule covers it
    /// whole (see the module docs). What it may not read is still filtered per message by
    /// [`Self::check_receive`].
    pub fn check_subscribe(&self, username: Option<&str>, client_id: &str, filter: &str) -> bool {
        let Some(filter) = topic::strip_share(filter) else {
            return false;
        };
        let own = self.own_rules(username);
        let denied_whole = own
            .iter()
            .filter(|r| r.access == Access::Deny)
            .any(|r| topic::covers(&r.filter, filter))
            || self
                .patterns
                .iter()
                .filter(|r| r.access == Access::Deny)
                .any(
                    |rule| match topic::substitute(&rule.filter, username, client_id) {
                        Subst::Skip => false,
                        Subst::Unsafe => true,
                        Subst::Filter(f) => topic::covers(&f, filter),
                    },
                );
        if denied_whole {
            return false;
        }
        if own
            .iter()
            .any(|r| r.access.grants(Want::Read) && topic::intersects(&r.filter, filter))
        {
            return true;
        }
        let dangerous = |s: &str| s.contains(['+', '#']);
        if username.is_some_and(dangerous) || dangerous(client_id) {
            return false;
        }
        self.patterns
            .iter()
            .filter(|r| r.access.grants(Want::Read))
            .any(
                |rule| match topic::substitute(&rule.filter, username, client_id) {
                    Subst::Filter(f) => topic::intersects(&f, filter),
                    Subst::Skip | Subst::Unsafe => false,
                },
            )
    }

    /// May this client receive a message published on `topic` (live or retained)?
    pub fn check_receive(&self, username: Option<&str>, client_id: &str, topic: &str) -> bool {
        self.check(username, client_id, topic, Want::Read)
    }

    /// Whether a `deny` rule (the user's, the anonymous block's, or a pattern) forbids `topic`
    /// for this client. Used to let the file veto what JWT claims would grant.
    pub fn explicitly_denied(&self, username: Option<&str>, client_id: &str, topic: &str) -> bool {
        let own_denies = self
            .own_rules(username)
            .iter()
            .filter(|r| r.access == Access::Deny);
        if own_denies
            .into_iter()
            .any(|r| topic::matches(&r.filter, topic))
        {
            return true;
        }
        self.patterns
            .iter()
            .filter(|r| r.access == Access::Deny)
            .any(|rule| {
                match topic::substitute(&rule.filter, username, client_id) {
                    Subst::Skip => false,
                    // Cannot tell what the rule would cover: fail closed.
                    Subst::Unsafe => true,
                    Subst::Filter(f) => topic::matches(&f, topic),
                }
            })
    }

    fn own_rules(&self, username: Option<&str>) -> &[Rule] {
        match username {
            Some(u) => self.users.get(u).map(Vec::as_slice).unwrap_or(&[]),
            None => &self.anonymous,
        }
    }

    fn check(&self, username: Option<&str>, client_id: &str, topic: &str, want: Want) -> bool {
        if self.explicitly_denied(username, client_id, topic) {
            return false;
        }
        let own = self.own_rules(username);
        if own
            .iter()
            .any(|r| r.access.grants(want) && topic::matches(&r.filter, topic))
        {
            return true;
        }
        // Mosquitto 2.0: with pattern ACLs in use, a `+`/`#` in the username or client id
        // denies everything the user list did not already allow.
        let dangerous = |s: &str| s.contains(['+', '#']);
        if username.is_some_and(dangerous) || dangerous(client_id) {
            if !self.patterns.is_empty() {
                tracing::info!(
                    client_id,
                    "ACL denying pattern access to client with '+' or '#' in username or client id"
                );
            }
            return false;
        }
        self.patterns
            .iter()
            .filter(|r| r.access.grants(want))
            .any(
                |rule| match topic::substitute(&rule.filter, username, client_id) {
                    Subst::Filter(f) => topic::matches(&f, topic),
                    Subst::Skip | Subst::Unsafe => false,
                },
            )
    }
}

/// Splits off the first space/tab-separated word; the rest is trimmed.
fn split_word(s: &str) -> (&str, &str) {
    match s.split_once([' ', '\t']) {
        Some((w, rest)) => (w, rest.trim()),
        None => (s, ""),
    }
}

#[cfg(test)]
mod prop_tests;

#[cfg(test)]
mod tests {
    use super::*;

    const ACL: &str = "\
# anonymous clients
topic read $SYS/#
topic read public/#
topic deny public/private

user alice
topic readwrite home/alice/#
topic write cmd/+/set
topic deny home/alice/locked
topic read a/#

user bob
topic home/bob/#
topic read $SYS/broker/clients/#

user carol

pattern readwrite dev/%u/%c/#
pattern read in/%c
pattern deny dev/%u/blocked/#
pattern write $SYS/broker/connection/%c/state
";

    fn acl() -> AclFile {
        AclFile::parse(ACL, "acl").expect("parse")
    }

    /// (case, username, client id, action `p`/`s`/`r`, topic or filter, expected)
    type Case<'a> = (&'a str, Option<&'a str>, &'a str, char, &'a str, bool);

    #[test]
    fn acl_table() {
        let a = acl();
        let al = Some("alice");
        let bo = Some("bob");
        let ca = Some("carol");
        let cases: &[Case<'_>] = &[
            ("anon reads public", None, "c", 'r', "public/news", true),
            (
                "anon cannot write public",
                None,
                "c",
                'p',
                "public/news",
                false,
            ),
            ("anon deny wins", None, "c", 'r', "public/private", false),
            (
                "anon reads $SYS",
                None,
                "c",
                'r',
                "$SYS/broker/uptime",
                true,
            ),
            (
                "anon rules not for users",
                al,
                "c",
                'r',
                "public/news",
                false,
            ),
            ("user readwrite r", al, "c", 'r', "home/alice/t", true),
            ("user readwrite w", al, "c", 'p', "home/alice/t/x", true),
            ("user deny wins", al, "c", 'p', "home/alice/locked", false),
            (
                "user write-only not readable",
                al,
                "c",
                'r',
                "cmd/lamp/set",
                false,
            ),
            ("user write + wildcard", al, "c", 'p', "cmd/lamp/set", true),
            ("+ is one level", al, "c", 'p', "cmd/a/b/set", false),
            ("read-only not writable", al, "c", 'p', "a/b", false),
            ("other user's rules", bo, "c", 'p', "home/alice/t", false),
            (
                "no access word = readwrite",
                bo,
                "c",
                'p',
                "home/bob/x",
                true,
            ),
            (
                "no access word = readwrite r",
                bo,
                "c",
                'r',
                "home/bob",
                true,
            ),
            (
                "# does not match $SYS",
                al,
                "c",
                'r',
                "$SYS/broker/uptime",
                false,
            ),
            (
                "explicit $SYS read",
                bo,
                "c",
                'r',
                "$SYS/broker/clients/total",
                true,
            ),
            (
                "$SYS write refused even if allowed",
                bo,
                "c",
                'p',
                "$SYS/broker/clients/x",
                false,
            ),
            (
                "bridge state via %c pattern",
                al,
                "br1",
                'p',
                "$SYS/broker/connection/br1/state",
                true,
            ),
            (
                "bridge state other id",
                al,
                "br1",
                'p',
                "$SYS/broker/connection/br2/state",
                false,
            ),
            ("pattern %u/%c", ca, "c9", 'p', "dev/carol/c9/temp", true),
            (
                "pattern wrong client id",
                ca,
                "c9",
                'p',
                "dev/carol/c8/temp",
                false,
            ),
            (
                "pattern wrong user",
                ca,
                "c9",
                'p',
                "dev/alice/c9/temp",
                false,
            ),
            (
                "pattern deny %u wins",
                ca,
                "c9",
                'p',
                "dev/carol/blocked/x",
                false,
            ),
            ("pattern %c for anonymous", None, "c9", 'r', "in/c9", true),
            (
                "pattern %u skipped for anonymous",
                None,
                "c9",
                'p',
                "dev//c9/x",
                false,
            ),
            ("empty user block gets patterns", ca, "k", 'r', "in/k", true),
            (
                "unknown user gets patterns only",
                Some("zed"),
                "k",
                'r',
                "in/k",
                true,
            ),
            (
                "unknown user nothing else",
                Some("zed"),
                "k",
                'r',
                "public/news",
                false,
            ),
            (
                "'+' in client id: no patterns",
                ca,
                "c+",
                'r',
                "in/c+",
                false,
            ),
            (
                "'#' in username: no patterns",
                Some("x#"),
                "k",
                'r',
                "in/k",
                false,
            ),
            (
                "'+' in username: patterns off",
                Some("a+"),
                "k",
                'r',
                "in/k",
                false,
            ),
            (
                "'/' in client id not substituted",
                ca,
                "c9/x",
                'r',
                "in/c9/x",
                false,
            ),
            (
                "'/' in username not substituted",
                Some("carol/c9"),
                "k",
                'p',
                "dev/carol/c9/k/t",
                false,
            ),
            (
                "'/' in username: deny pattern fails closed",
                Some("a/b"),
                "k",
                'r',
                "in/k",
                false,
            ),
            // SUBSCRIBE: granted when some readable topic can match.
            ("subscribe # overlaps read rules", al, "c", 's', "#", true),
            (
                "subscribe narrower than read rule",
                al,
                "c",
                's',
                "a/b/+",
                true,
            ),
            ("subscribe + overlaps", al, "c", 's', "+/alice/t", true),
            ("subscribe shared", al, "c", 's', "$share/g/a/b", true),
            ("subscribe unreachable", None, "c", 's', "secret/#", false),
            (
                "subscribe other user's tree",
                al,
                "c",
                's',
                "home/bob/#",
                false,
            ),
            (
                "subscribe write-only topic",
                al,
                "c",
                's',
                "cmd/lamp/set",
                false,
            ),
            (
                "subscribe wholly denied",
                al,
                "c",
                's',
                "home/alice/locked",
                false,
            ),
            (
                "subscribe partly denied",
                al,
                "c",
                's',
                "home/alice/+",
                true,
            ),
            ("subscribe # is not $SYS", al, "c", 's', "$SYS/#", false),
            (
                "subscribe explicit $SYS",
                bo,
                "c",
                's',
                "$SYS/broker/clients/+",
                true,
            ),
            ("subscribe via pattern", None, "c9", 's', "in/c9", true),
            (
                "subscribe pattern for another id",
                None,
                "c9",
                's',
                "in/c8",
                false,
            ),
            (
                "subscribe pattern deny covers",
                ca,
                "c9",
                's',
                "dev/carol/blocked/#",
                false,
            ),
            ("subscribe pattern, '+' in id", ca, "c+", 's', "in/#", false),
            (
                "$share publish refused",
                al,
                "c",
                'p',
                "$share/g/home/alice/x",
                false,
            ),
        ];
        for (name, user, cid, action, topic, expected) in cases {
            let got = match action {
                'p' => a.check_publish(*user, cid, topic),
                's' => a.check_subscribe(*user, cid, topic),
                _ => a.check_receive(*user, cid, topic),
            };
            assert_eq!(
                got, *expected,
                "case '{name}': {user:?}/{cid} {action} {topic}"
            );
        }
    }

    #[test]
    fn topic_lines_before_user_are_anonymous_only() {
        let a = AclFile::parse("topic x\nuser u\ntopic y\n", "t").expect("parse");
        assert!(a.check_publish(None, "c", "x"));
        assert!(!a.check_publish(None, "c", "y"));
        assert!(!a.check_publish(Some("u"), "c", "x"));
        assert!(a.check_publish(Some("u"), "c", "y"));
    }

    #[test]
    fn empty_file_denies_everything() {
        let a = AclFile::parse("# nothing\n\n", "t").expect("parse");
        assert!(!a.check_publish(None, "c", "a"));
        assert!(!a.check_receive(Some("u"), "c", "a"));
    }

    #[test]
    fn topics_with_spaces_and_repeated_user_blocks() {
        let a = AclFile::parse(
            "user u v\ntopic read a b/c\nuser w\nuser u v\ntopic write d\n",
            "t",
        )
        .expect("parse");
        assert!(a.check_receive(Some("u v"), "c", "a b/c"));
        assert!(a.check_publish(Some("u v"), "c", "d"));
    }

    #[test]
    fn parse_errors_name_file_and_line() {
        for (text, line) in [
            ("topic read a\nbogus x\n", 2),
            ("\n\ntopic\n", 3),
            ("topic sometimes a/b\n", 1),
            ("topic a b\n", 1), // a topic with a space needs an access word, as in Mosquitto
            ("topic read a/#/b\n", 1),
            ("user\n", 1),
            ("pattern read a+\n", 1),
        ] {
            let e = AclFile::parse(text, "/etc/acl").expect_err(text);
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("/etc/acl:{line}:")),
                "{text:?}: {msg}"
            );
        }
        let e = AclFile::load(Path::new("/nonexistent/acl")).expect_err("error");
        assert!(e.to_string().contains("/nonexistent/acl"));
    }
}
