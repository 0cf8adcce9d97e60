//! The packet model. One set of types for 3.1, 3.1.1 and 5.0: v5 is the superset, and fields a
//! version does not have are left at their defaults (empty properties, success reason codes).

use bytes::Bytes;
use std::fmt;

use crate::types::{PacketId, ProtocolVersion, QoS, ReasonCode, RetainHandling};

/// A user property: a UTF-8 string pair that may repeat, order preserved [MQTT-3.3.2-18].
pub type UserProperty = (String, String);

/// Every MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnectAck(ConnectAck),
    Publish(Publish),
    PublishAck(PublishAck),
    PublishReceived(PublishAck),
    PublishRelease(PublishAck),
    PublishComplete(PublishAck),
    Subscribe(Subscribe),
    SubscribeAck(SubscribeAck),
    Unsubscribe(Unsubscribe),
    UnsubscribeAck(UnsubscribeAck),
    PingRequest,
    PingResponse,
    Disconnect(Disconnect),
    Auth(Auth),
}

/// CONNECT (3.1).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Connect {
    /// From the protocol name and level.
    pub protocol: ProtocolVersion,
    /// v3 "clean session" / v5 "clean start".
    pub clean_start: bool,
    /// Seconds; 0 disables keep alive.
    pub keep_alive: u16,
    /// May be empty: the server then assigns one (v5 always, v3.1.1 only with clean session).
    pub client_id: String,
    pub will: Option<LastWill>,
    pub username: Option<String>,
    /// Binary data; never printed by `Debug`.
    pub password: Option<Bytes>,
    pub properties: ConnectProperties,
}

impl fmt::Debug for Connect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect")
            .field("protocol", &self.protocol)
            .field("clean_start", &self.clean_start)
            .field("keep_alive", &self.keep_alive)
            .field("client_id", &self.client_id)
            .field("will", &self.will)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<REDACTED>"))
            .field("properties", &self.properties)
            .finish()
    }
}

/// CONNECT properties (3.1.2.11). `None` means absent on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct ConnectProperties {
    pub session_expiry_interval: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub maximum_packet_size: Option<u32>,
    pub topic_alias_maximum: Option<u16>,
    pub request_response_information: Option<u8>,
    pub request_problem_information: Option<u8>,
    pub user_properties: Vec<UserProperty>,
    pub authentication_method: Option<String>,
    pub authentication_data: Option<Bytes>,
}

/// The will message of CONNECT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct LastWill {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: WillProperties,
}

/// Will properties (3.1.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct WillProperties {
    pub will_delay_interval: Option<u32>,
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<UserProperty>,
}

/// CONNACK (3.2). For v3 the codec maps `reason` to a return code: 0x00→0, 0x84→1, 0x85→2,
/// 0x88/0x89→3, 0x86→4, 0x87→5 (other failures→3); decoding maps back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct ConnectAck {
    pub session_present: bool,
    pub reason: ReasonCode,
    pub properties: ConnectAckProperties,
}

/// CONNACK properties (3.2.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct ConnectAckProperties {
    pub session_expiry_interval: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub maximum_qos: Option<u8>,
    pub retain_available: Option<u8>,
    pub maximum_packet_size: Option<u32>,
    pub assigned_client_identifier: Option<String>,
    pub topic_alias_maximum: Option<u16>,
    pub reason_string: Option<String>,
    pub user_properties: Vec<UserProperty>,
    pub wildcard_subscription_available: Option<u8>,
    pub subscription_identifiers_available: Option<u8>,
    pub shared_subscription_available: Option<u8>,
    pub server_keep_alive: Option<u16>,
    pub response_information: Option<String>,
    pub server_reference: Option<String>,
    pub authentication_method: Option<String>,
    pub authentication_data: Option<Bytes>,
}

/// PUBLISH (3.3). `packet_id` is `Some` exactly when `qos > 0` [MQTT-2.2.1-2].
/// In v5 `topic` may be empty when `properties.topic_alias` is set (3.3.2.3.4).
#[derive(Clone, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    pub topic: String,
    pub packet_id: Option<PacketId>,
    pub payload: Bytes,
    pub properties: PublishProperties,
}

/// A PUBLISH made of borrowed parts, to encode without building a [`Publish`]: a broker sends
/// one message to many subscribers, each copy differing only in packet id and flags, and
/// copying the topic into a `String` per delivery was a measurable share of fan-out.
#[derive(Debug, Clone, Copy)]
pub struct PublishRef<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    pub topic: &'a str,
    pub packet_id: Option<PacketId>,
    /// Written for MQTT 5 only.
    pub properties: &'a PublishProperties,
    pub payload: &'a [u8],
}

impl Publish {
    /// This packet as borrowed parts.
    #[must_use]
    pub fn view(&self) -> PublishRef<'_> {
        PublishRef {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic: &self.topic,
            packet_id: self.packet_id,
            properties: &self.properties,
            payload: &self.payload,
        }
    }
}

impl fmt::Debug for Publish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publish")
            .field("dup", &self.dup)
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .field("topic", &self.topic)
            .field("packet_id", &self.packet_id)
            .field("payload_len", &self.payload.len())
            .field("properties", &self.properties)
            .finish()
    }
}

/// PUBLISH properties (3.3.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct PublishProperties {
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    pub topic_alias: Option<u16>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<UserProperty>,
    /// Server to client only; may repeat, one per matching subscription [MQTT-3.3.4-3].
    pub subscription_identifiers: Vec<u32>,
    pub content_type: Option<String>,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape (3.4-3.7). v3 carries only the packet id;
/// in v5 the reason code and properties may be omitted on the wire when success and empty.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct PublishAck {
    pub packet_id: PacketId,
    pub reason: ReasonCode,
    pub properties: AckProperties,
}

impl PublishAck {
    /// A success ack with no properties.
    #[must_use]
    pub fn new(packet_id: PacketId) -> Self {
        Self {
            packet_id,
            reason: ReasonCode::SUCCESS,
            properties: AckProperties::default(),
        }
    }
}

/// Properties of the ack packets (PUBACK..PUBCOMP, SUBACK, UNSUBACK): reason string and user properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct AckProperties {
    pub reason_string: Option<String>,
    pub user_properties: Vec<UserProperty>,
}

/// v5 subscription options (3.8.3.1); v3 carries only `qos`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[allow(missing_docs)]
pub struct SubscriptionOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

/// SUBSCRIBE (3.8). At least one filter [MQTT-3.8.3-3].
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Subscribe {
    pub packet_id: PacketId,
    pub filters: Vec<(String, SubscriptionOptions)>,
    pub properties: SubscribeProperties,
}

/// SUBSCRIBE properties (3.8.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct SubscribeProperties {
    /// 1..=268,435,455; 0 is a protocol error.
    pub subscription_identifier: Option<u32>,
    pub user_properties: Vec<UserProperty>,
}

/// SUBACK (3.9): one reason code per filter, in order. v3 return codes 0x00-0x02 and 0x80 are the
/// same values as the v5 ones.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct SubscribeAck {
    pub packet_id: PacketId,
    pub reasons: Vec<ReasonCode>,
    pub properties: AckProperties,
}

/// UNSUBSCRIBE (3.10). At least one filter [MQTT-3.10.3-2].
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Unsubscribe {
    pub packet_id: PacketId,
    pub filters: Vec<String>,
    /// Only user properties are allowed (3.10.2.1).
    pub user_properties: Vec<UserProperty>,
}

/// UNSUBACK (3.11). v3 has no payload: `reasons` is empty when decoded from v3 and ignored when encoding v3.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct UnsubscribeAck {
    pub packet_id: PacketId,
    pub reasons: Vec<ReasonCode>,
    pub properties: AckProperties,
}

/// DISCONNECT (3.14). v3 has neither reason nor properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct Disconnect {
    pub reason: ReasonCode,
    pub properties: DisconnectProperties,
}

/// DISCONNECT properties (3.14.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct DisconnectProperties {
    pub session_expiry_interval: Option<u32>,
    pub reason_string: Option<String>,
    pub user_properties: Vec<UserProperty>,
    pub server_reference: Option<String>,
}

/// AUTH (3.15), v5 only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct Auth {
    pub reason: ReasonCode,
    pub properties: AuthProperties,
}

/// AUTH properties (3.15.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct AuthProperties {
    pub authentication_method: Option<String>,
    pub authentication_data: Option<Bytes>,
    pub reason_string: Option<String>,
    pub user_properties: Vec<UserProperty>,
}
