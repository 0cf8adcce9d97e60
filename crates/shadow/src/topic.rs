//! Shadow topics: which publishes are shadow requests, and where the replies go.
//!
//! The layout is AWS IoT's, under `$hermod` (and `$aws` when AWS compatibility is on), so an
//! AWS IoT Device SDK only has to be pointed at the broker:
//!
//! - classic shadow: `{prefix}/things/{thing}/shadow/{get|update|delete}`
//! - named shadow: `{prefix}/things/{thing}/shadow/name/{shadow}/{get|update|delete}`
//!
//! Replies go to `{request topic}/accepted` and `/rejected`, and an accepted update also to
//! `{base}/update/delta` and `{base}/update/documents`. The service subscribes with the filters
//! of [`subscription_filters`], which also match those reply topics (the service's own
//! publishes come back to it): [`parse`] answers `None` for them, so a reply is never taken
//! for a request.
//!
//! Names follow AWS's rules (`[a-zA-Z0-9:_-]`, 1..=128 bytes for a thing, 1..=64 for a
//! shadow). Checking them here, and not only in the broker's ACL, keeps `+`, `#`, `/` and empty
//! levels out of every topic the engine builds from a name.

/// The topic root a request came in on; its replies go back under the same root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prefix {
    /// `$hermod/things/...`, always served.
    Hermod,
    /// `$aws/things/...`, served when AWS compatibility is on (the caller subscribes to it).
    Aws,
}

impl Prefix {
    /// The first topic level: `$hermod` or `$aws`.
    pub fn as_str(self) -> &'static str {
        match self {
            Prefix::Hermod => "$hermod",
            Prefix::Aws => "$aws",
        }
    }
}

/// The shadow operation a request asks for (the last topic level).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Get,
    Update,
    Delete,
}

impl Op {
    /// The topic level: `get`, `update` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }

    fn parse(level: &str) -> Option<Op> {
        match level {
            "get" => Some(Op::Get),
            "update" => Some(Op::Update),
            "delete" => Some(Op::Delete),
            _ => None,
        }
    }
}

/// Which reply topic to build for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyKind {
    /// `{base}/{op}/accepted`.
    Accepted,
    /// `{base}/{op}/rejected`.
    Rejected,
    /// `{base}/update/delta` (whatever the request's op).
    Delta,
    /// `{base}/update/documents` (whatever the request's op).
    Documents,
}

/// A parsed shadow request topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Request {
    pub prefix: Prefix,
    pub thing: String,
    /// The named shadow; `None` is the classic (unnamed) shadow.
    pub shadow: Option<String>,
    pub op: Op,
}

/// Longest thing name AWS accepts.
pub const MAX_THING_NAME: usize = 128;
/// Longest shadow name AWS accepts.
pub const MAX_SHADOW_NAME: usize = 64;

/// The filters the shadow service subscribes to for `prefix`: classic and named requests.
/// They match exactly five and seven levels, so no reply topic (six or eight levels) matches.
pub fn subscription_filters(prefix: Prefix) -> [&'static str; 2] {
    match prefix {
        Prefix::Hermod => [
            "$hermod/things/+/shadow/+",
            "$hermod/things/+/shadow/name/+/+",
        ],
        Prefix::Aws => ["$aws/things/+/shadow/+", "$aws/things/+/shadow/name/+/+"],
    }
}

/// Whether `name` is a valid thing name (`[a-zA-Z0-9:_-]`, 1..=128 bytes).
pub fn is_valid_thing_name(name: &str) -> bool {
    valid_name(name, MAX_THING_NAME)
}

/// Whether `name` is a valid shadow name (`[a-zA-Z0-9:_-]`, 1..=64 bytes).
pub fn is_valid_shadow_name(name: &str) -> bool {
    valid_name(name, MAX_SHADOW_NAME)
}

fn valid_name(name: &str, max: usize) -> bool {
    (1..=max).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

/// Parses a request topic; `None` for anything that is not a get, update or delete request
/// with valid names (replies, unknown suffixes, other roots).
pub fn parse(topic: &str) -> Option<Request> {
    let levels: Vec<&str> = topic.split('/').collect();
    let prefix = match levels.first().copied() {
        Some("$hermod") => Prefix::Hermod,
        Some("$aws") => Prefix::Aws,
        _ => return None,
    };
    let (thing, shadow, op) = match levels.as_slice() {
        [_, "things", thing, "shadow", op] => (*thing, None, *op),
        [_, "things", thing, "shadow", "name", shadow, op] => (*thing, Some(*shadow), *op),
        _ => return None,
    };
    if !is_valid_thing_name(thing) {
        return None;
    }
    if let Some(shadow) = shadow
        && !is_valid_shadow_name(shadow)
    {
        return None;
    }
    Some(Request {
        prefix,
        thing: thing.to_owned(),
        shadow: shadow.map(str::to_owned),
        op: Op::parse(op)?,
    })
}

impl Request {
    /// A request built from parts (for the caller's own use, e.g. a REST front end); `None`
    /// when a name is invalid.
    pub fn new(prefix: Prefix, thing: &str, shadow: Option<&str>, op: Op) -> Option<Request> {
        if !is_valid_thing_name(thing) || shadow.is_some_and(|s| !is_valid_shadow_name(s)) {
            return None;
        }
        Some(Request {
            prefix,
            thing: thing.to_owned(),
            shadow: shadow.map(str::to_owned),
            op,
        })
    }

    /// `{prefix}/things/{thing}/shadow` or `{prefix}/things/{thing}/shadow/name/{shadow}`.
    pub fn base(&self) -> String {
        let mut base = format!("{}/things/{}/shadow", self.prefix.as_str(), self.thing);
        if let Some(shadow) = &self.shadow {
            base.push_str("/name/");
            base.push_str(shadow);
        }
        base
    }

    /// The request topic itself.
    pub fn topic(&self) -> String {
        format!("{}/{}", self.base(), self.op.as_str())
    }

    /// The topic of a reply of `kind` to this request.
    pub fn reply_topic(&self, kind: ReplyKind) -> String {
        let base = self.base();
        match kind {
            ReplyKind::Accepted => format!("{base}/{}/accepted", self.op.as_str()),
            ReplyKind::Rejected => format!("{base}/{}/rejected", self.op.as_str()),
            ReplyKind::Delta => format!("{base}/update/delta"),
            ReplyKind::Documents => format!("{base}/update/documents"),
        }
    }

    /// The name AWS uses for this shadow in messages: the shadow's name, or the thing's for
    /// the classic shadow (`No shadow exists with name: 'NAME'`).
    pub fn display_name(&self) -> &str {
        self.shadow.as_deref().unwrap_or(&self.thing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(prefix: Prefix, thing: &str, shadow: Option<&str>, op: Op) -> Request {
        Request {
            prefix,
            thing: thing.into(),
            shadow: shadow.map(Into::into),
            op,
        }
    }

    #[test]
    fn classic_requests() {
        assert_eq!(
            parse("$hermod/things/lamp-1/shadow/get"),
            Some(req(Prefix::Hermod, "lamp-1", None, Op::Get))
        );
        assert_eq!(
            parse("$hermod/things/lamp:1_x/shadow/update"),
            Some(req(Prefix::Hermod, "lamp:1_x", None, Op::Update))
        );
        assert_eq!(
            parse("$aws/things/lamp/shadow/delete"),
            Some(req(Prefix::Aws, "lamp", None, Op::Delete))
        );
    }

    #[test]
    fn named_requests() {
        assert_eq!(
            parse("$hermod/things/lamp/shadow/name/config/update"),
            Some(req(Prefix::Hermod, "lamp", Some("config"), Op::Update))
        );
        assert_eq!(
            parse("$aws/things/lamp/shadow/name/a:b_c-d/get"),
            Some(req(Prefix::Aws, "lamp", Some("a:b_c-d"), Op::Get))
        );
        // A shadow may be called "name" or "shadow": the levels are positional.
        assert_eq!(
            parse("$hermod/things/name/shadow/name/shadow/delete"),
            Some(req(Prefix::Hermod, "name", Some("shadow"), Op::Delete))
        );
    }

    #[test]
    fn replies_are_not_requests() {
        for topic in [
            "$hermod/things/lamp/shadow/get/accepted",
            "$hermod/things/lamp/shadow/get/rejected",
            "$hermod/things/lamp/shadow/update/accepted",
            "$hermod/things/lamp/shadow/update/delta",
            "$hermod/things/lamp/shadow/update/documents",
            "$hermod/things/lamp/shadow/delete/accepted",
            "$hermod/things/lamp/shadow/name/cfg/update/accepted",
            "$hermod/things/lamp/shadow/name/cfg/update/delta",
            "$aws/things/lamp/shadow/name/cfg/get/rejected",
        ] {
            assert_eq!(parse(topic), None, "{topic}");
        }
    }

    #[test]
    fn malformed_topics() {
        for topic in [
            "",
            "$hermod",
            "$hermod/things//shadow/get",
            "$hermod/things/lamp/shadow/name//get",
            "$hermod/things/lamp/shadow/name/get",
            "$hermod/things/lamp/shadow/list",
            "$hermod/things/lamp/shadow/GET",
            "$hermod/things/lamp/shadow/",
            "$hermod/things/lamp/shadow",
            "$hermod/things/lamp/shadows/get",
            "$hermod/thing/lamp/shadow/get",
            "$HERMOD/things/lamp/shadow/get",
            "hermod/things/lamp/shadow/get",
            "$aws/things/lamp/shadow/name/cfg/x/get",
            "/$hermod/things/lamp/shadow/get",
            "$hermod/things/lamp/shadow/get/",
            "$sys/things/lamp/shadow/get",
        ] {
            assert_eq!(parse(topic), None, "{topic:?}");
        }
    }

    #[test]
    fn invalid_names() {
        for topic in [
            "$hermod/things/+/shadow/get",
            "$hermod/things/#/shadow/get",
            "$hermod/things/la mp/shadow/get",
            "$hermod/things/lämp/shadow/get",
            "$hermod/things/la.mp/shadow/get",
            "$hermod/things/lamp/shadow/name/+/get",
            "$hermod/things/lamp/shadow/name/#/get",
            "$hermod/things/lamp/shadow/name/a$b/get",
        ] {
            assert_eq!(parse(topic), None, "{topic}");
        }
    }

    #[test]
    fn name_lengths() {
        let thing = "t".repeat(MAX_THING_NAME);
        assert!(parse(&format!("$hermod/things/{thing}/shadow/get")).is_some());
        let long = "t".repeat(MAX_THING_NAME + 1);
        assert!(parse(&format!("$hermod/things/{long}/shadow/get")).is_none());

        let shadow = "s".repeat(MAX_SHADOW_NAME);
        assert!(parse(&format!("$hermod/things/t/shadow/name/{shadow}/get")).is_some());
        let long = "s".repeat(MAX_SHADOW_NAME + 1);
        assert!(parse(&format!("$hermod/things/t/shadow/name/{long}/get")).is_none());
    }

    #[test]
    fn reply_topics() {
        let r = req(Prefix::Hermod, "lamp", None, Op::Update);
        assert_eq!(r.base(), "$hermod/things/lamp/shadow");
        assert_eq!(r.topic(), "$hermod/things/lamp/shadow/update");
        assert_eq!(
            r.reply_topic(ReplyKind::Accepted),
            "$hermod/things/lamp/shadow/update/accepted"
        );
        assert_eq!(
            r.reply_topic(ReplyKind::Rejected),
            "$hermod/things/lamp/shadow/update/rejected"
        );
        assert_eq!(
            r.reply_topic(ReplyKind::Delta),
            "$hermod/things/lamp/shadow/update/delta"
        );
        assert_eq!(
            r.reply_topic(ReplyKind::Documents),
            "$hermod/things/lamp/shadow/update/documents"
        );

        let r = req(Prefix::Aws, "lamp", Some("cfg"), Op::Get);
        assert_eq!(
            r.reply_topic(ReplyKind::Accepted),
            "$aws/things/lamp/shadow/name/cfg/get/accepted"
        );
        assert_eq!(
            r.reply_topic(ReplyKind::Rejected),
            "$aws/things/lamp/shadow/name/cfg/get/rejected"
        );
        let r = req(Prefix::Aws, "lamp", Some("cfg"), Op::Delete);
        assert_eq!(
            r.reply_topic(ReplyKind::Documents),
            "$aws/things/lamp/shadow/name/cfg/update/documents"
        );
    }

    #[test]
    fn topic_round_trips() {
        for topic in [
            "$hermod/things/lamp/shadow/get",
            "$aws/things/lamp/shadow/name/cfg/delete",
        ] {
            assert_eq!(parse(topic).map(|r| r.topic()).as_deref(), Some(topic));
        }
    }

    #[test]
    fn display_name_is_the_shadow_or_the_thing() {
        assert_eq!(
            req(Prefix::Hermod, "lamp", None, Op::Get).display_name(),
            "lamp"
        );
        assert_eq!(
            req(Prefix::Hermod, "lamp", Some("cfg"), Op::Get).display_name(),
            "cfg"
        );
    }

    #[test]
    fn new_checks_names() {
        assert!(Request::new(Prefix::Hermod, "lamp", Some("cfg"), Op::Get).is_some());
        assert!(Request::new(Prefix::Hermod, "", None, Op::Get).is_none());
        assert!(Request::new(Prefix::Hermod, "lamp", Some("a/b"), Op::Get).is_none());
    }

    #[test]
    fn filters_match_requests_not_replies() {
        // Level counts: the filters have 5 and 7 levels, like requests; replies have 6 and 8.
        for (prefix, root) in [(Prefix::Hermod, "$hermod"), (Prefix::Aws, "$aws")] {
            let [classic, named] = subscription_filters(prefix);
            assert!(classic.starts_with(root) && named.starts_with(root));
            assert_eq!(classic.split('/').count(), 5);
            assert_eq!(named.split('/').count(), 7);
        }
    }
}
