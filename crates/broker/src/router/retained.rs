//! Retained messages: the last retained message per topic name, in a tree of topic levels.
//!
//! A wildcard subscribe walks only the branches its filter can match, so its cost follows what
//! matches, not the number of retained messages (with 100,000 retained messages under `a/...`,
//! subscribing to `b/#` touches none of them). `#` and `+` at the first level skip topics that
//! start with `$` [MQTT-4.7.2-1].

use std::collections::HashMap;
use std::sync::Arc;

use crate::message::Message;

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    message: Option<Arc<Message>>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.message.is_none()
    }

    fn visit_all(&self, f: &mut dyn FnMut(&Arc<Message>)) {
        if let Some(m) = &self.message {
            f(m);
        }
        for c in self.children.values() {
            c.visit_all(f);
        }
    }
}

/// Retained messages by topic.
#[derive(Debug, Default)]
pub struct RetainedStore {
    root: Node,
    len: usize,
}

impl RetainedStore {
    /// Stores or replaces; an empty payload deletes [MQTT-3.3.1-6/7] (3.1.1: [MQTT-3.3.1-10/11]).
    pub fn apply(&mut self, message: &Arc<Message>) {
        let levels: Vec<&str> = message.topic.split('/').collect();
        if message.payload.is_empty() {
            if Self::remove(&mut self.root, &levels) {
                self.len -= 1;
            }
            return;
        }
        let mut node = &mut self.root;
        for level in levels {
            node = node.children.entry(level.into()).or_default();
        }
        if node.message.replace(message.clone()).is_none() {
            self.len += 1;
        }
    }

    /// Calls `f` with every retained message (`$` topics included), expired or not.
    pub fn for_each(&self, f: &mut dyn FnMut(&Arc<Message>)) {
        self.root.visit_all(f);
    }

    /// Removes the retained message of `topic`; true if there was one.
    pub fn remove_topic(&mut self, topic: &str) -> bool {
        let levels: Vec<&str> = topic.split('/').collect();
        let removed = Self::remove(&mut self.root, &levels);
        if removed {
            self.len -= 1;
        }
        removed
    }

    fn remove(node: &mut Node, levels: &[&str]) -> bool {
        let Some((first, rest)) = levels.split_first() else {
            return node.message.take().is_some();
        };
        let Some(child) = node.children.get_mut(*first) else {
            return false;
        };
        let removed = Self::remove(child, rest);
        if child.is_empty() {
            node.children.remove(*first);
        }
        removed
    }

    /// Retained messages matching `filter` (a valid filter, not `$share/...`).
    #[must_use]
    pub fn matching(&self, filter: &str) -> Vec<Arc<Message>> {
        let mut out = Vec::new();
        self.for_each_matching(filter, &mut |m| out.push(m.clone()));
        out
    }

    /// Calls `f` with each retained message matching `filter`, without collecting them: a
    /// SUBSCRIBE streams them into the session's bounded mailbox.
    pub fn for_each_matching(&self, filter: &str, f: &mut dyn FnMut(&Arc<Message>)) {
        let levels: Vec<&str> = filter.split('/').collect();
        Self::walk(&self.root, &levels, true, f);
    }

    fn walk(node: &Node, levels: &[&str], first: bool, f: &mut dyn FnMut(&Arc<Message>)) {
        let Some((level, rest)) = levels.split_first() else {
            if let Some(m) = &node.message {
                f(m);
            }
            return;
        };
        let visible = |name: &str| !(first && name.starts_with('$'));
        match *level {
            "#" => {
                // `a/#` also matches `a` itself [MQTT-4.7.1-2].
                if !first && let Some(m) = &node.message {
                    f(m);
                }
                for (name, c) in &node.children {
                    if visible(name) {
                        c.visit_all(f);
                    }
                }
            }
            "+" => {
                for (name, c) in &node.children {
                    if visible(name) {
                        Self::walk(c, rest, false, f);
                    }
                }
            }
            exact => {
                if let Some(c) = node.children.get(exact) {
                    Self::walk(c, rest, false, f);
                }
            }
        }
    }

    /// Number of retained messages.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use hermod_proto::{PublishProperties, QoS, topic};

    fn msg(topic: &str, payload: &'static [u8]) -> Arc<Message> {
        Arc::new(Message {
            topic: topic.into(),
            payload: Bytes::from_static(payload),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: PublishProperties::default(),
            publisher: None,
            received_at: None,
            origin: None,
            expires_at: None,
            settle: None,
        })
    }

    #[test]
    fn tree_agrees_with_the_naive_matcher() {
        let topics = [
            "a", "a/b", "a/b/c", "a/x/c", "b", "$SYS/x", "$SYS", "/x", "a//c", "a/b/c/d", "x/b/y",
            "/",
        ];
        let filters = [
            "#", "+", "a/#", "a/+", "a/b", "a/+/c", "+/+", "+/b/#", "$SYS/#", "$SYS/+", "/+",
            "a//c", "+/#", "#/",
        ];
        let mut store = RetainedStore::default();
        for t in topics {
            store.apply(&msg(t, b"x"));
        }
        assert_eq!(store.len(), topics.len());
        for f in filters
            .iter()
            .filter(|f| topic::validate_topic_filter(f).is_ok())
        {
            let mut got: Vec<String> = store
                .matching(f)
                .iter()
                .map(|m| m.topic.to_string())
                .collect();
            got.sort();
            let mut want: Vec<String> = topics
                .iter()
                .filter(|t| topic::matches(f, t))
                .map(|t| (*t).to_owned())
                .collect();
            want.sort();
            assert_eq!(got, want, "filter {f}");
        }
    }

    #[test]
    fn replace_and_delete() {
        let mut store = RetainedStore::default();
        store.apply(&msg("a/b", b"1"));
        store.apply(&msg("a/b", b"2"));
        assert_eq!(store.len(), 1);
        assert_eq!(&store.matching("a/b")[0].payload[..], b"2");
        store.apply(&msg("a/b", b""));
        assert!(store.is_empty());
        assert!(store.root.children.is_empty(), "pruned");
    }

    #[test]
    fn a_narrow_filter_does_not_visit_unrelated_branches() {
        let mut store = RetainedStore::default();
        for i in 0..20_000 {
            store.apply(&msg(&format!("fleet/{i}/temp"), b"x"));
        }
        store.apply(&msg("other/1", b"y"));
        // Matching `other/#` must not walk the 20,000 fleet entries: it returns only its own.
        let got = store.matching("other/#");
        assert_eq!(got.len(), 1);
        assert_eq!(store.matching("fleet/+/temp").len(), 20_000);
        assert_eq!(store.matching("fleet/7/+").len(), 1);
    }
}
