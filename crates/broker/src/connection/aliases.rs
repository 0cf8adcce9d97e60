//! Outbound topic aliases (MQTT 5, 3.3.2.3.4): to a client that announced a Topic Alias Maximum
//! in CONNECT, a topic sent before goes as a two-byte alias instead of its name, which is what
//! aliases are for (long topics over cellular links). Optional in the spec; Mosquitto sends
//! none. Hermod uses at most `min(client's maximum, max_topic_alias)` aliases per connection
//! (the same bound as inbound), reassigned in turn once all are taken, and only for topics
//! long enough to gain from it.
//!
//! The mapping lives with the network connection and is never carried to another
//! [MQTT-3.3.2-7]; a new connection of the same session starts empty.

use std::collections::HashMap;
use std::sync::Arc;

use hermod_proto::Publish;

/// Topics shorter than this go by name: an alias costs three bytes of properties.
const MIN_TOPIC_LEN: usize = 8;

/// One connection's outbound aliases.
#[derive(Debug)]
pub(super) struct OutAliases {
    max: u16,
    by_topic: HashMap<Arc<str>, u16>,
    /// `by_alias[a - 1]`: the topic alias `a` stands for now.
    by_alias: Vec<Arc<str>>,
    /// The alias to reassign next once all are taken.
    next: u16,
}

impl OutAliases {
    /// Aliases `1..=max`; `max` > 0.
    pub(super) fn new(max: u16) -> Self {
        Self {
            max,
            by_topic: HashMap::new(),
            by_alias: Vec::new(),
            next: 1,
        }
    }

    /// What `publish` (to be sent now, with `topic`) should carry: `Some((alias, known))` to use
    /// `alias` (`known`: the client has it mapped to `topic` already, so the name can be left
    /// out), `None` to send the name alone. Records a new mapping: call only for a packet that
    /// is written.
    pub(super) fn assign(&mut self, topic: &Arc<str>) -> Option<(u16, bool)> {
        if topic.len() < MIN_TOPIC_LEN {
            return None;
        }
        if let Some(&a) = self.by_topic.get(topic) {
            return Some((a, true));
        }
        let alias = if self.by_alias.len() < usize::from(self.max) {
            self.by_alias.push(topic.clone());
            u16::try_from(self.by_alias.len()).ok()?
        } else {
            let a = self.next;
            self.next = if a >= self.max { 1 } else { a + 1 };
            let slot = self.by_alias.get_mut(usize::from(a) - 1)?;
            let old = std::mem::replace(slot, topic.clone());
            self.by_topic.remove(&old);
            a
        };
        self.by_topic.insert(topic.clone(), alias);
        Some((alias, false))
    }
}

/// Applies `assign`'s answer to a PUBLISH.
pub(super) fn apply(publish: &mut Publish, alias: u16, known: bool) {
    publish.properties.topic_alias = Some(alias);
    if known {
        publish.topic.clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn aliases_are_reused_bounded_and_reassigned_in_turn() {
        let mut a = OutAliases::new(2);
        let t = |s: &str| -> Arc<str> { s.into() };
        assert_eq!(a.assign(&t("short")), None, "short topics go by name");
        assert_eq!(a.assign(&t("sensors/a/temp")), Some((1, false)));
        assert_eq!(a.assign(&t("sensors/a/temp")), Some((1, true)));
        assert_eq!(a.assign(&t("sensors/b/temp")), Some((2, false)));
        // Full: alias 1 is reassigned, then 2; never 0 [MQTT-3.3.2-8], never above the
        // client's maximum [MQTT-3.3.2-11].
        assert_eq!(a.assign(&t("sensors/c/temp")), Some((1, false)));
        assert_eq!(a.assign(&t("sensors/a/temp")), Some((2, false)));
        assert_eq!(a.assign(&t("sensors/c/temp")), Some((1, true)));
        assert_eq!(a.assign(&t("sensors/b/temp")), Some((1, false)));
        assert_eq!(a.by_topic.len(), 2);
    }

    /// Bytes per delivery (the figure in docs/performance.md): a 45-byte topic, 64-byte
    /// payload, QoS 1, MQTT 5.
    #[test]
    fn an_alias_saves_the_topic_on_the_wire() {
        use hermod_proto::{Packet, ProtocolVersion, QoS, encoded_len};
        let topic: Arc<str> = "factory/line-3/machine-17/sensors/temperature".into();
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: topic.to_string(),
            packet_id: std::num::NonZeroU16::new(1),
            payload: bytes::Bytes::from(vec![0u8; 64]),
            properties: Default::default(),
        };
        let len = |p: &Publish| encoded_len(&Packet::Publish(p.clone()), ProtocolVersion::V5);
        let plain = len(&publish);
        let mut aliases = OutAliases::new(10);
        let mut first = publish.clone();
        let (alias, known) = aliases.assign(&topic).unwrap();
        apply(&mut first, alias, known);
        let mut again = publish.clone();
        let (alias, known) = aliases.assign(&topic).unwrap();
        apply(&mut again, alias, known);
        assert_eq!((plain, len(&first), len(&again)), (116, 119, 74));
    }
}
