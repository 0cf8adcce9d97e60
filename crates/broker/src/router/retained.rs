//! Retained messages: the last retained message per topic name.
//!
//! Stored in a map and matched by scanning on subscribe. That costs in proportion to all retained
//! messages; the durable-storage issue replaces it with a topic-indexed store.

use std::collections::HashMap;
use std::sync::Arc;

use crate::message::Message;

/// Retained messages by topic.
#[derive(Debug, Default)]
pub struct RetainedStore {
    by_topic: HashMap<Arc<str>, Arc<Message>>,
}

impl RetainedStore {
    /// Stores or replaces; an empty payload deletes [MQTT-3.3.1-6/7] (3.1.1: [MQTT-3.3.1-10/11]).
    pub fn apply(&mut self, message: &Arc<Message>) {
        if message.payload.is_empty() {
            self.by_topic.remove(&message.topic);
        } else {
            self.by_topic.insert(message.topic.clone(), message.clone());
        }
    }

    /// Retained messages matching `filter`.
    #[must_use]
    pub fn matching(&self, filter: &str) -> Vec<Arc<Message>> {
        self.by_topic
            .values()
            .filter(|m| hermod_proto::topic::matches(filter, &m.topic))
            .cloned()
            .collect()
    }

    /// Number of retained messages.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_topic.len()
    }

    /// True when empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_topic.is_empty()
    }
}
