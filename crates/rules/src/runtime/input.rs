//! What a rule runs on, from what its internal connection receives: a PUBLISH (with the
//! `$hermod.*` user properties the broker adds for internal connections) or a broker event.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hermod_broker::api::{
    Event as BrokerEvent, ORIGIN_CLIENT_ID, ORIGIN_PEERHOST, ORIGIN_SEQ, ORIGIN_USERNAME,
};
use hermod_proto::{Publish, QoS};

use crate::sql::{Event, Input, Value};

/// The node name in `${node}`.
pub(crate) const NODE: &str = "hermod@local";

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// An id for an input that has no stored sequence number: time and a counter, 32 hex digits
/// (those with one get 16, so the two kinds never collide).
fn fresh_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:016X}{:016X}", nanos as u64, n)
}

/// The rule input for a delivered PUBLISH. `id` is the stored queue entry's sequence number
/// (the same on every re-send, so `${id}` in a unique column writes a message once) when the
/// broker stored it.
pub(crate) fn from_publish(p: &Publish, rule: &str) -> Input {
    let mut input = Input {
        event: Event::Publish,
        topic: p.topic.clone(),
        qos: p.qos as u8,
        retain: p.retain,
        payload: p.payload.clone(),
        timestamp: now_ms(),
        node: NODE.to_owned(),
        ..Input::default()
    };
    let mut seq = None;
    for (k, v) in &p.properties.user_properties {
        match k.as_str() {
            ORIGIN_CLIENT_ID => input.clientid.clone_from(v),
            ORIGIN_USERNAME => input.username = Some(v.clone()),
            ORIGIN_PEERHOST => input.peerhost = Some(v.clone()),
            ORIGIN_SEQ => seq = v.parse::<u64>().ok(),
            _ => input.user_properties.push((k.clone(), v.clone())),
        }
    }
    // Per rule: each rule's session numbers its own queue.
    input.id = match seq {
        Some(s) => format!("{:08X}{s:016X}", fnv(rule)),
        None => fresh_id(),
    };
    input
}

/// The rule input for a broker event a rule selects FROM (`$events/...`), if it is one.
pub(crate) fn from_event(e: &BrokerEvent) -> Option<Input> {
    let base = |event: Event, clientid: &str| Input {
        event,
        clientid: clientid.to_owned(),
        timestamp: now_ms(),
        node: NODE.to_owned(),
        id: fresh_id(),
        ..Input::default()
    };
    let mut fields = BTreeMap::new();
    let input = match e {
        BrokerEvent::ClientConnected {
            client_id,
            username,
            peer,
            protocol,
            clean_start,
            ..
        } => {
            if client_id.starts_with(hermod_broker::api::INTERNAL_CLIENT_PREFIX) {
                return None;
            }
            let mut i = base(Event::ClientConnected, client_id);
            i.username = username.as_deref().map(str::to_owned);
            i.peerhost = Some(peer.ip().to_string());
            fields.insert("peername".into(), Value::String(peer.to_string()));
            fields.insert("proto_name".into(), Value::String("MQTT".into()));
            fields.insert("proto_ver".into(), Value::Int(i64::from(protocol.level())));
            fields.insert("clean_start".into(), Value::Bool(*clean_start));
            fields.insert("connected_at".into(), Value::Int(i.timestamp));
            i
        }
        BrokerEvent::ClientDisconnected { client_id, reason } => {
            if client_id.starts_with(hermod_broker::api::INTERNAL_CLIENT_PREFIX) {
                return None;
            }
            let i = base(Event::ClientDisconnected, client_id);
            fields.insert("reason".into(), Value::String(reason.clone()));
            fields.insert("disconnected_at".into(), Value::Int(i.timestamp));
            i
        }
        BrokerEvent::MessageDropped {
            client_id,
            topic,
            reason,
        } => {
            let mut i = base(Event::MessageDropped, client_id.as_deref().unwrap_or(""));
            i.topic = topic.to_string();
            i.qos = QoS::AtMostOnce as u8;
            fields.insert("reason".into(), Value::String(reason.as_str().to_owned()));
            i
        }
        _ => return None,
    };
    Some(Input {
        event_fields: fields,
        ..input
    })
}

/// FNV-1a of a rule name, to keep ids of different rules apart.
fn fnv(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}
