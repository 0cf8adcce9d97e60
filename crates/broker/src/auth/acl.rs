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
#[path = "acl_tests.rs"]
mod tests;
