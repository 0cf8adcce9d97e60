//! Packets and reason codes as other tools name them: packet type names, MQTT 3.x return codes.

use hermod_proto::{Packet, ReasonCode};

/// The MQTT 3.x CONNACK return code for a (v5-valued) reason code, as the codec maps it:
/// 0x00→0, 0x84→1, 0x85→2, 0x88/0x89→3, 0x86→4, 0x87→5, any other failure→3.
#[must_use]
pub fn v3_return_code(reason: ReasonCode) -> u8 {
    match reason.0 {
        0x00 => 0,
        0x84 => 1,
        0x85 => 2,
        0x88 | 0x89 => 3,
        0x86 => 4,
        0x87 => 5,
        // Already a raw v3 code (a codec that passes them through).
        c @ 1..=5 => c,
        _ => 3,
    }
}

/// The upper-case name of a packet's type, as mosquitto prints it ("PUBLISH", "PUBACK", ...).
#[must_use]
pub fn packet_name(packet: &Packet) -> &'static str {
    match packet {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnectAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PublishAck(_) => "PUBACK",
        Packet::PublishReceived(_) => "PUBREC",
        Packet::PublishRelease(_) => "PUBREL",
        Packet::PublishComplete(_) => "PUBCOMP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubscribeAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubscribeAck(_) => "UNSUBACK",
        Packet::PingRequest => "PINGREQ",
        Packet::PingResponse => "PINGRESP",
        Packet::Disconnect(_) => "DISCONNECT",
        Packet::Auth(_) => "AUTH",
    }
}
