//! The subscription tree: topic filters stored level by level, so a PUBLISH costs in proportion
//! to the levels of its topic and the filters that can match, not to all subscriptions.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hermod_proto::SubscriptionOptions;

use crate::message::ClientId;
use crate::session::mailbox::SessionHandle;

/// One session's subscription at a node.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// Where deliveries go.
    pub handle: Arc<SessionHandle>,
    /// Options from SUBSCRIBE.
    pub options: SubscriptionOptions,
    /// v5 subscription identifier.
    pub id: Option<u32>,
}

/// A `$share/{group}/{filter}` group: each message goes to one member.
#[derive(Debug)]
pub struct SharedGroup {
    /// `(group, filter)`, shared with the deliveries routed through this group.
    pub key: Arc<(Box<str>, Box<str>)>,
    /// Members in subscription order.
    pub members: Vec<Subscriber>,
    /// Round-robin cursor.
    next: AtomicUsize,
}

impl SharedGroup {
    /// Picks the member for the next message among those `eligible` accepts (whose reader may
    /// receive it): round robin over online members; if none is online, the next eligible member
    /// in turn (its session queues the message).
    #[must_use]
    pub fn pick(&self, eligible: impl Fn(&Subscriber) -> bool) -> Option<&Subscriber> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let in_turn = || (0..n).map(|i| &self.members[(start + i) % n]);
        in_turn()
            .find(|m| m.handle.is_online() && eligible(m))
            .or_else(|| in_turn().find(|m| eligible(m)))
    }

    /// Picks a member other than `not` that `eligible` accepts, online first; for re-routing a
    /// leaving member's messages.
    #[must_use]
    pub fn pick_other(
        &self,
        not: &str,
        eligible: impl Fn(&Subscriber) -> bool,
    ) -> Option<&Subscriber> {
        let others = || {
            self.members
                .iter()
                .filter(|m| &*m.handle.client_id != not && eligible(m))
        };
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let online: Vec<_> = others().filter(|m| m.handle.is_online()).collect();
        if online.is_empty() {
            let all: Vec<_> = others().collect();
            if all.is_empty() {
                None
            } else {
                Some(all[start % all.len()])
            }
        } else {
            Some(online[start % online.len()])
        }
    }
}

#[derive(Debug, Default)]
struct Node {
    /// Literal levels. (std's SipHash on purpose: level names come from clients, so the map must
    /// not be open to collision flooding.)
    children: HashMap<Box<str>, Node>,
    /// The `+` and `#` children, apart from the literal ones so that matching a topic costs one
    /// hash lookup per level, not three.
    plus: Option<Box<Node>>,
    hash: Option<Box<Node>>,
    subscribers: HashMap<ClientId, Subscriber>,
    shared: HashMap<Box<str>, SharedGroup>,
}

impl Node {
    fn child(&self, level: &str) -> Option<&Node> {
        match level {
            "+" => self.plus.as_deref(),
            "#" => self.hash.as_deref(),
            l => self.children.get(l),
        }
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Node> {
        match level {
            "+" => self.plus.as_deref_mut(),
            "#" => self.hash.as_deref_mut(),
            l => self.children.get_mut(l),
        }
    }

    fn child_or_insert(&mut self, level: &str) -> &mut Node {
        match level {
            "+" => self.plus.get_or_insert_with(Box::default),
            "#" => self.hash.get_or_insert_with(Box::default),
            l => self.children.entry(l.into()).or_default(),
        }
    }

    fn remove_child(&mut self, level: &str) {
        match level {
            "+" => self.plus = None,
            "#" => self.hash = None,
            l => {
                self.children.remove(l);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_none()
            && self.subscribers.is_empty()
            && self.shared.is_empty()
    }
}

/// What a match produced, handed to the caller's callback.
#[derive(Debug)]
pub enum Matched<'a> {
    /// An ordinary subscription.
    Direct(&'a Subscriber),
    /// A shared group whose filter matched; the caller picks one member.
    Shared(&'a SharedGroup),
}

/// The tree. Not synchronised itself: the router wraps it in a read-mostly lock.
#[derive(Debug, Default)]
pub struct SubscriptionTree {
    root: Node,
    count: usize,
    /// Shared subscriptions (members of shared groups), part of `count`.
    shared: usize,
    /// Filters with at least one subscriber or shared group.
    filters: usize,
}

impl SubscriptionTree {
    /// Number of subscriptions (shared members included).
    #[must_use]
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when there are no subscriptions.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Number of shared subscriptions (members of shared groups).
    #[must_use]
    pub fn shared_len(&self) -> usize {
        self.shared
    }

    /// Number of distinct filters subscribed to (a shared group's counts too).
    #[must_use]
    pub fn filter_count(&self) -> usize {
        self.filters
    }

    /// Adds or replaces a subscription. `share` is the group for `$share/{group}/{filter}`
    /// (`filter` is then the inner filter). Returns true when it did not exist before.
    pub fn insert(&mut self, filter: &str, share: Option<&str>, sub: Subscriber) -> bool {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = node.child_or_insert(level);
        }
        let was_empty = node.subscribers.is_empty() && node.shared.is_empty();
        let is_new = match share {
            None => node
                .subscribers
                .insert(sub.handle.client_id.clone(), sub)
                .is_none(),
            Some(group) => {
                let g = node
                    .shared
                    .entry(group.into())
                    .or_insert_with(|| SharedGroup {
                        key: Arc::new((group.into(), filter.into())),
                        members: Vec::new(),
                        next: AtomicUsize::new(0),
                    });
                if let Some(m) = g
                    .members
                    .iter_mut()
                    .find(|m| m.handle.client_id == sub.handle.client_id)
                {
                    *m = sub;
                    false
                } else {
                    g.members.push(sub);
                    true
                }
            }
        };
        if is_new {
            self.count += 1;
            self.shared += usize::from(share.is_some());
            self.filters += usize::from(was_empty);
        }
        is_new
    }

    /// Removes a subscription; true if it existed. Empty nodes are pruned.
    pub fn remove(&mut self, filter: &str, share: Option<&str>, client_id: &str) -> bool {
        self.remove_owned(filter, share, client_id, None)
    }

    /// As [`Self::remove`]; with `only`, removes the subscription only if it belongs to that
    /// mailbox (not to another incarnation of the client id).
    pub fn remove_owned(
        &mut self,
        filter: &str,
        share: Option<&str>,
        client_id: &str,
        only: Option<&SessionHandle>,
    ) -> bool {
        let levels: Vec<&str> = filter.split('/').collect();
        let mut emptied = false;
        let removed = Self::remove_at(
            &mut self.root,
            &levels,
            share,
            client_id,
            only,
            &mut emptied,
        );
        if removed {
            self.count -= 1;
            self.shared -= usize::from(share.is_some());
            self.filters -= usize::from(emptied);
        }
        removed
    }

    fn remove_at(
        node: &mut Node,
        levels: &[&str],
        share: Option<&str>,
        client_id: &str,
        only: Option<&SessionHandle>,
        emptied: &mut bool,
    ) -> bool {
        let ours = |s: &Subscriber| only.is_none_or(|h| std::ptr::eq(&*s.handle, h));
        let Some((first, rest)) = levels.split_first() else {
            let removed = match share {
                None => {
                    if node.subscribers.get(client_id).is_some_and(ours) {
                        node.subscribers.remove(client_id).is_some()
                    } else {
                        false
                    }
                }
                Some(group) => {
                    let Some(g) = node.shared.get_mut(group) else {
                        return false;
                    };
                    let before = g.members.len();
                    g.members
                        .retain(|m| &*m.handle.client_id != client_id || !ours(m));
                    let removed = g.members.len() != before;
                    if g.members.is_empty() {
                        node.shared.remove(group);
                    }
                    removed
                }
            };
            *emptied = removed && node.subscribers.is_empty() && node.shared.is_empty();
            return removed;
        };
        let Some(child) = node.child_mut(first) else {
            return false;
        };
        let removed = Self::remove_at(child, rest, share, client_id, only, emptied);
        if child.is_empty() {
            node.remove_child(first);
        }
        removed
    }

    /// Calls `f` for every subscription: (its filter without `$share/{group}/`, the group for a
    /// shared one, the subscriber). Visits the whole tree: for listings, not for routing.
    pub fn for_each(&self, mut f: impl FnMut(&str, Option<&str>, &Subscriber)) {
        let mut path = String::new();
        Self::for_each_at(&self.root, &mut path, true, &mut f);
    }

    fn for_each_at(
        node: &Node,
        path: &mut String,
        root: bool,
        f: &mut impl FnMut(&str, Option<&str>, &Subscriber),
    ) {
        if !root {
            for s in node.subscribers.values() {
                f(path, None, s);
            }
            for (group, g) in &node.shared {
                for m in &g.members {
                    f(path, Some(group), m);
                }
            }
        }
        let children = node
            .children
            .iter()
            .map(|(l, n)| (&**l, n))
            .chain(node.plus.as_deref().map(|n| ("+", n)))
            .chain(node.hash.as_deref().map(|n| ("#", n)));
        for (level, child) in children {
            let len = path.len();
            if !root {
                path.push('/');
            }
            path.push_str(level);
            Self::for_each_at(child, path, false, f);
            path.truncate(len);
        }
    }

    /// The shared group at `(group, filter)`, if any.
    #[must_use]
    pub fn shared_group(&self, group: &str, filter: &str) -> Option<&SharedGroup> {
        let mut node = &self.root;
        for level in filter.split('/') {
            node = node.child(level)?;
        }
        node.shared.get(group)
    }

    /// Calls `f` for every subscription and shared group matching `topic`.
    /// Wildcards at the first level do not match topics starting with `$` [MQTT-4.7.2-1].
    pub fn matches<'a>(&'a self, topic: &str, mut f: impl FnMut(Matched<'a>)) {
        let dollar = topic.starts_with('$');
        Self::walk(&self.root, topic.split('/'), true, dollar, &mut f);
    }

    fn visit<'a>(node: &'a Node, f: &mut impl FnMut(Matched<'a>)) {
        for s in node.subscribers.values() {
            f(Matched::Direct(s));
        }
        for g in node.shared.values() {
            f(Matched::Shared(g));
        }
    }

    fn walk<'a>(
        node: &'a Node,
        mut levels: std::str::Split<'_, char>,
        first: bool,
        dollar: bool,
        f: &mut impl FnMut(Matched<'a>),
    ) {
        let wild_ok = !(first && dollar);
        if wild_ok && let Some(hash) = &node.hash {
            // `a/#` matches `a` itself and everything below it [MQTT-4.7.1-2].
            Self::visit(hash, f);
        }
        let Some(level) = levels.next() else {
            Self::visit(node, f);
            return;
        };
        if let Some(child) = node.children.get(level) {
            Self::walk(child, levels.clone(), false, dollar, f);
        }
        if wild_ok && let Some(plus) = &node.plus {
            Self::walk(plus, levels, false, dollar, f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hermod_proto::topic;

    fn sub(id: &str) -> Subscriber {
        Subscriber {
            handle: SessionHandle::new(id.into(), 10, false),
            options: SubscriptionOptions::default(),
            id: None,
        }
    }

    fn matched(tree: &SubscriptionTree, topic: &str) -> Vec<String> {
        let mut out = Vec::new();
        tree.matches(topic, |m| match m {
            Matched::Direct(s) => out.push(s.handle.client_id.to_string()),
            Matched::Shared(g) => out.push(format!("share:{}", g.key.0)),
        });
        out.sort();
        out
    }

    #[test]
    fn tree_agrees_with_the_naive_matcher() {
        let filters = [
            "#", "+", "a/#", "a/+", "a/b", "a/+/c", "+/+", "+/b/#", "$SYS/#", "$SYS/+", "/+",
            "a//c", "a/b/c/#",
        ];
        let topics = [
            "a", "a/b", "a/b/c", "a/x/c", "b", "$SYS/x", "$SYS", "/x", "a//c", "a/b/c/d", "x/b/y",
        ];
        let mut tree = SubscriptionTree::default();
        for (i, f) in filters.iter().enumerate() {
            tree.insert(f, None, sub(&format!("c{i:02}")));
        }
        for t in topics {
            let mut want: Vec<String> = filters
                .iter()
                .enumerate()
                .filter(|(_, f)| topic::matches(f, t))
                .map(|(i, _)| format!("c{i:02}"))
                .collect();
            want.sort();
            assert_eq!(matched(&tree, t), want, "topic {t}");
        }
    }

    #[test]
    fn for_each_lists_every_filter_once() {
        let mut tree = SubscriptionTree::default();
        for f in ["a/b", "a/+", "#", "/x", "a/b/#", ""] {
            tree.insert(f, None, sub("c1"));
        }
        tree.insert("a/b", Some("g"), sub("c2"));
        let mut seen = Vec::new();
        tree.for_each(|f, g, s| seen.push(format!("{f}|{g:?}|{}", s.handle.client_id)));
        seen.sort();
        let mut want = vec![
            "|None|c1",
            "#|None|c1",
            "/x|None|c1",
            "a/+|None|c1",
            "a/b/#|None|c1",
            "a/b|None|c1",
            "a/b|Some(\"g\")|c2",
        ];
        want.sort_unstable();
        assert_eq!(seen, want);
    }

    #[test]
    fn remove_prunes_and_counts() {
        let mut tree = SubscriptionTree::default();
        assert!(tree.insert("a/b", None, sub("x")));
        assert!(!tree.insert("a/b", None, sub("x")), "re-subscribe replaces");
        assert!(tree.insert("a/b", Some("g"), sub("x")));
        assert_eq!(tree.len(), 2);
        assert!(tree.remove("a/b", None, "x"));
        assert!(!tree.remove("a/b", None, "x"));
        assert_eq!(matched(&tree, "a/b"), vec!["share:g"]);
        assert!(tree.remove("a/b", Some("g"), "x"));
        assert!(tree.is_empty());
        assert!(tree.root.is_empty(), "pruned");
    }

    #[test]
    fn shared_group_round_robin() {
        let mut tree = SubscriptionTree::default();
        tree.insert("t", Some("g"), sub("m1"));
        tree.insert("t", Some("g"), sub("m2"));
        let g = tree.shared_group("g", "t").expect("group");
        let picks: Vec<String> = (0..4)
            .filter_map(|_| g.pick(|_| true))
            .map(|m| m.handle.client_id.to_string())
            .collect();
        assert_eq!(picks, ["m1", "m2", "m1", "m2"]);
        assert_eq!(
            g.pick_other("m1", |_| true)
                .map(|m| m.handle.client_id.to_string()),
            Some("m2".into())
        );
    }
}
