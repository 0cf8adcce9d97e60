//! `Input`, the message or client event a rule runs on, and its fields by EMQX's names.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::value::Value;

/// What happened: a PUBLISH, or one of the client events a rule can select FROM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Event {
    /// A message published to a topic (`FROM "t/#"`); EMQX's `message.publish`.
    #[default]
    Publish,
    /// `$events/client_connected`: a client finished connecting.
    ClientConnected,
    /// `$events/client_disconnected`: a client's connection ended.
    ClientDisconnected,
    /// `$events/message_dropped`: a message had no subscriber (or was dropped on the way).
    MessageDropped,
}

impl Event {
    /// The FROM name, as EMQX (`$events/client_connected`).
    pub fn source_name(self) -> Option<&'static str> {
        match self {
            Event::Publish => None,
            Event::ClientConnected => Some("$events/client_connected"),
            Event::ClientDisconnected => Some("$events/client_disconnected"),
            Event::MessageDropped => Some("$events/message_dropped"),
        }
    }

    /// The value of the `event` field, as EMQX (`client.connected`).
    pub fn field_name(self) -> &'static str {
        match self {
            Event::Publish => "message.publish",
            Event::ClientConnected => "client.connected",
            Event::ClientDisconnected => "client.disconnected",
            Event::MessageDropped => "message.dropped",
        }
    }

    /// The event a FROM name refers to: EMQX's `$events/client_connected` form, and the
    /// `$events/client/connected` form of recent EMQX releases.
    pub fn from_source_name(name: &str) -> Option<Event> {
        match name {
            "$events/client_connected" | "$events/client/connected" => Some(Event::ClientConnected),
            "$events/client_disconnected" | "$events/client/disconnected" => {
                Some(Event::ClientDisconnected)
            }
            "$events/message_dropped" | "$events/message/dropped" => Some(Event::MessageDropped),
            _ => None,
        }
    }

    /// Whether the event carries a message (topic, qos, payload...).
    fn has_message(self) -> bool {
        matches!(self, Event::Publish | Event::MessageDropped)
    }
}

/// The record a rule is applied to. The message fields (`topic`, `qos`, `retain`, `payload`,
/// `id`, `pub_props`) exist for [`Event::Publish`] and [`Event::MessageDropped`]; the other
/// events' own fields go in `event_fields` under EMQX's names:
/// - `client_connected`: `peername`, `sockname`, `proto_name`, `proto_ver`, `keepalive`,
///   `clean_start`, `expiry_interval`, `is_bridge`, `connected_at`, `mountpoint`;
/// - `client_disconnected`: `reason` (`normal`, `kicked`, `keepalive_timeout`,
///   `not_authorized`, `tcp_closed`, `internal_error`...), `peername`, `sockname`,
///   `disconnected_at`;
/// - `message_dropped`: `reason` (`no_subscribers`...).
///
/// `event_fields` may also add or override any other field.
#[derive(Debug, Clone, Default)]
pub struct Input {
    pub event: Event,
    pub clientid: String,
    /// `None` when the client gave no user name (the field is then null).
    pub username: Option<String>,
    /// The client's IP address, without the port (EMQX's `peerhost`).
    pub peerhost: Option<String>,
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    pub payload: Bytes,
    /// When the event happened (the message was received), in ms since the Unix epoch.
    pub timestamp: i64,
    /// A unique message id (EMQX uses a hex GUID); `${id}` in a unique column makes
    /// at-least-once writes effectively exactly-once.
    pub id: String,
    /// The broker's node name (EMQX's `node`).
    pub node: String,
    /// MQTT v5 user properties, in the order received (repeats allowed).
    pub user_properties: Vec<(String, String)>,
    pub event_fields: BTreeMap<String, Value>,
}

impl Input {
    /// The payload as text (invalid UTF-8 replaced by U+FFFD).
    pub(crate) fn payload_text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    /// The top-level field `name`, or `None` when the event has no such field. `payload` is
    /// the raw text here; paths below it are read from the parsed JSON by the evaluator.
    pub(crate) fn field(&self, name: &str) -> Option<Value> {
        if let Some(v) = self.event_fields.get(name) {
            return Some(v.clone());
        }
        let opt = |o: &Option<String>| o.clone().map_or(Value::Null, Value::String);
        let v = match name {
            "event" => Value::from(self.event.field_name()),
            "clientid" => Value::from(self.clientid.as_str()),
            "username" => opt(&self.username),
            "peerhost" => opt(&self.peerhost),
            "timestamp" => Value::Int(self.timestamp),
            "node" => Value::from(self.node.as_str()),
            _ if !self.event.has_message() => return None,
            "id" => Value::from(self.id.as_str()),
            "topic" => Value::from(self.topic.as_str()),
            "qos" => Value::Int(i64::from(self.qos)),
            "retain" => Value::Bool(self.retain),
            "flags" => Value::Object(BTreeMap::from([(
                "retain".to_owned(),
                Value::Bool(self.retain),
            )])),
            "payload" => Value::String(self.payload_text()),
            "publish_received_at" => Value::Int(self.timestamp),
            "pub_props" => self.pub_props(),
            _ => return None,
        };
        Some(v)
    }

    /// `pub_props` as EMQX: `{"User-Property": {k: v}, "User-Property-Pairs": [{"key": k,
    /// "value": v}]}` (the map keeps the last value of a repeated key).
    fn pub_props(&self) -> Value {
        let mut props = BTreeMap::new();
        if !self.user_properties.is_empty() {
            let map = self
                .user_properties
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect();
            let pairs = self
                .user_properties
                .iter()
                .map(|(k, v)| {
                    Value::Object(BTreeMap::from([
                        ("key".to_owned(), Value::from(k.as_str())),
                        ("value".to_owned(), Value::from(v.as_str())),
                    ]))
                })
                .collect();
            props.insert("User-Property".to_owned(), Value::Object(map));
            props.insert("User-Property-Pairs".to_owned(), Value::Array(pairs));
        }
        Value::Object(props)
    }

    /// Every field of the event, for `SELECT *`.
    pub(crate) fn all_fields(&self) -> BTreeMap<String, Value> {
        let mut names = vec![
            "event",
            "clientid",
            "username",
            "peerhost",
            "timestamp",
            "node",
        ];
        if self.event.has_message() {
            names.extend([
                "id",
                "topic",
                "qos",
                "retain",
                "flags",
                "payload",
                "publish_received_at",
                "pub_props",
            ]);
        }
        let mut out: BTreeMap<String, Value> = names
            .into_iter()
            .filter_map(|n| Some((n.to_owned(), self.field(n)?)))
            .collect();
        out.extend(
            self.event_fields
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names() {
        for e in [
            Event::ClientConnected,
            Event::ClientDisconnected,
            Event::MessageDropped,
        ] {
            let name = e.source_name().expect("event source");
            assert_eq!(Event::from_source_name(name), Some(e));
        }
        assert_eq!(
            Event::from_source_name("$events/client/connected"),
            Some(Event::ClientConnected)
        );
        assert_eq!(Event::from_source_name("$events/session_subscribed"), None);
    }

    #[test]
    fn message_fields_only_for_messages() {
        let mut input = Input {
            topic: "t/a".into(),
            ..Input::default()
        };
        assert_eq!(input.field("topic"), Some(Value::from("t/a")));
        input.event = Event::ClientConnected;
        assert_eq!(input.field("topic"), None);
        assert_eq!(input.field("event"), Some(Value::from("client.connected")));
        assert!(!input.all_fields().contains_key("payload"));
    }

    #[test]
    fn user_properties_as_pub_props() {
        let input = Input {
            user_properties: vec![("k".into(), "v".into())],
            ..Input::default()
        };
        let props = input.field("pub_props").expect("pub_props");
        assert_eq!(
            props.to_json_string(),
            r#"{"User-Property":{"k":"v"},"User-Property-Pairs":[{"key":"k","value":"v"}]}"#
        );
    }
}
