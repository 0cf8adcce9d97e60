//! The default rule for the topics of things: device shadows (`$hermod/things/{thing}/shadow/...`,
//! and `$aws/things/...` for AWS IoT Device SDK code) and presence
//! (`$hermod/things/{thing}/presence`).
//!
//! Without it, a broker with no ACL file (every topic open) would let any client read and
//! rewrite every device's shadow. So, whatever else is configured:
//! - a client may use the topics of **its own thing**, the thing named by its client id (or by its
//!   username: `[shadow] access = "username"`): publish shadow requests (`get`, `update`,
//!   `delete`), subscribe to the replies, its presence, anything under it;
//! - **another thing's** topics, or a filter that can match them (`$hermod/things/+/shadow/#`,
//!   `$hermod/#`), need an explicit grant: a rule of the ACL file or of the client's JWT that
//!   names them (`topic readwrite $hermod/things/#` for an application; a wildcard at the start of
//!   a rule never grants `$` topics), or the HTTP authorizer's `allow`. With no ACL file there is
//!   no grant, so only the own thing;
//! - **publishing** anything that is not a request (`.../accepted`, `.../rejected`,
//!   `update/delta`, `update/documents`, `presence`, ...) is refused to every client, as `$SYS`
//!   is: only the broker's shadow service answers there, so a reply cannot be forged.
//!
//! AWS IoT's default policy template is the same idea (`${iot:Connection.Thing.ThingName}`).

use serde::{Deserialize, Serialize};

use super::ClientIdentity;
use super::topic::{intersects, strip_share};

/// `[shadow] access`: which name of a client is its thing's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThingAccess {
    /// The client id (AWS's default: the thing name is the client id).
    #[default]
    Clientid,
    /// The username (devices that share client id schemes but log in as themselves).
    Username,
}

/// Where a topic or filter falls under the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Not a thing's topic: the other rules decide.
    Unrelated,
    /// The client's own thing: allowed.
    Own,
    /// Another thing's, or a filter that can match other things' topics: only an explicit
    /// grant allows it.
    Others,
    /// A publish that only the broker makes (a reply, presence): refused.
    BrokerOnly,
}

/// The roots of things' topics: Hermod's own, and AWS IoT's for SDK compatibility.
const ROOTS: [&str; 2] = ["$hermod/things/", "$aws/things/"];
const FILTERS: [&str; 2] = ["$hermod/things/#", "$aws/things/#"];

/// The thing name of `who`, under `access`.
fn own_name(who: &ClientIdentity, access: ThingAccess) -> Option<&str> {
    match access {
        ThingAccess::Clientid => Some(&who.client_id),
        ThingAccess::Username => who.username.as_deref(),
    }
}

/// `(thing, rest)` of a concrete topic under one of the roots.
fn split(topic: &str) -> Option<(&str, &str)> {
    let rest = ROOTS.iter().find_map(|r| topic.strip_prefix(r))?;
    Some(rest.split_once('/').unwrap_or((rest, "")))
}

/// Whether `rest` (after `{thing}/`) is a shadow request a device sends.
fn is_request(rest: &str) -> bool {
    let op = match rest.strip_prefix("shadow/") {
        Some(r) => match r.strip_prefix("name/") {
            Some(named) => match named.split_once('/') {
                Some((name, op)) if !name.is_empty() => op,
                _ => return false,
            },
            None => r,
        },
        None => return false,
    };
    matches!(op, "get" | "update" | "delete")
}

/// The scope of publishing to `topic`.
pub(crate) fn publish_scope(who: &ClientIdentity, access: ThingAccess, topic: &str) -> Scope {
    let Some((thing, rest)) = split(topic) else {
        return Scope::Unrelated;
    };
    if !is_request(rest) {
        return Scope::BrokerOnly;
    }
    if own_name(who, access) == Some(thing) {
        Scope::Own
    } else {
        Scope::Others
    }
}

/// The scope of subscribing to `filter` or receiving on a topic (a filter without wildcards).
pub(crate) fn read_scope(who: &ClientIdentity, access: ThingAccess, filter: &str) -> Scope {
    let Some(filter) = strip_share(filter) else {
        return Scope::Unrelated;
    };
    // Only a filter starting with `$` can match a `$` topic (the per-delivery fast path).
    if !filter.starts_with('$') || !FILTERS.iter().any(|f| intersects(filter, f)) {
        return Scope::Unrelated;
    }
    // Own only when the root and the thing level are written out: `$hermod/things/me/...`.
    // A client id of `+` or `#` does not make a wildcard its own.
    match split(filter) {
        Some((thing, _)) if !thing.contains(['+', '#']) && own_name(who, access) == Some(thing) => {
            Scope::Own
        }
        _ => Scope::Others,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn who(client_id: &str, username: Option<&str>) -> ClientIdentity {
        ClientIdentity {
            username: username.map(Arc::from),
            client_id: Arc::from(client_id),
            jwt_acl: None,
            internal: false,
        }
    }

    #[test]
    fn publishing_requests_to_the_own_thing_only() {
        let lamp = who("lamp-1", Some("alice"));
        let c = ThingAccess::Clientid;
        for t in [
            "$hermod/things/lamp-1/shadow/update",
            "$hermod/things/lamp-1/shadow/get",
            "$hermod/things/lamp-1/shadow/delete",
            "$hermod/things/lamp-1/shadow/name/cfg/update",
            "$aws/things/lamp-1/shadow/update",
        ] {
            assert_eq!(publish_scope(&lamp, c, t), Scope::Own, "{t}");
        }
        assert_eq!(
            publish_scope(&lamp, c, "$hermod/things/lamp-2/shadow/update"),
            Scope::Others
        );
        for t in [
            "$hermod/things/lamp-1/shadow/update/accepted",
            "$hermod/things/lamp-1/shadow/update/delta",
            "$hermod/things/lamp-1/shadow/get/rejected",
            "$hermod/things/lamp-1/presence",
            "$hermod/things/lamp-1",
            "$hermod/things/lamp-1/shadow/name//update",
            "$aws/things/lamp-2/shadow/update/documents",
        ] {
            assert_eq!(publish_scope(&lamp, c, t), Scope::BrokerOnly, "{t}");
        }
        for t in [
            "lamp-1/shadow/update",
            "$SYS/x",
            "$hermod/other",
            "$awsx/things/a",
        ] {
            assert_eq!(publish_scope(&lamp, c, t), Scope::Unrelated, "{t}");
        }
        // By username.
        let u = ThingAccess::Username;
        assert_eq!(
            publish_scope(&lamp, u, "$hermod/things/alice/shadow/update"),
            Scope::Own
        );
        assert_eq!(
            publish_scope(&lamp, u, "$hermod/things/lamp-1/shadow/update"),
            Scope::Others
        );
        assert_eq!(
            publish_scope(&who("x", None), u, "$hermod/things/x/shadow/update"),
            Scope::Others,
            "no username, no own thing"
        );
    }

    #[test]
    fn reading_the_own_thing_and_filters_that_reach_others() {
        let lamp = who("lamp-1", None);
        let c = ThingAccess::Clientid;
        for f in [
            "$hermod/things/lamp-1/shadow/#",
            "$hermod/things/lamp-1/shadow/update/delta",
            "$hermod/things/lamp-1/#",
            "$share/g/$hermod/things/lamp-1/shadow/+/accepted",
        ] {
            assert_eq!(read_scope(&lamp, c, f), Scope::Own, "{f}");
        }
        for f in [
            "$hermod/things/+/shadow/#",
            "$hermod/things/#",
            "$hermod/#",
            "$hermod/+/lamp-1/shadow/#",
            "$aws/things/lamp-2/shadow/update/delta",
            "$hermod/things/lamp-2/presence",
        ] {
            assert_eq!(read_scope(&lamp, c, f), Scope::Others, "{f}");
        }
        let plus = who("+", None);
        assert_eq!(
            read_scope(&plus, c, "$hermod/things/+/shadow/#"),
            Scope::Others,
            "a client id of `+` is not a wildcard grant"
        );
        for f in [
            "#",
            "+/things/#",
            "$SYS/#",
            "things/lamp-2/#",
            "$hermod/rule/x",
        ] {
            assert_eq!(read_scope(&lamp, c, f), Scope::Unrelated, "{f}");
        }
    }
}
