//! Structure-aware generators of valid packets for every version, shared by the property tests
//! of the `codec` binary and by the allocation-bound binary (`tests/alloc`), which includes this
//! file with `#[path]`. Every generated packet is one the codec must round-trip exactly.
#![allow(dead_code, unreachable_pub)]

use bytes::Bytes;
use hermod_proto::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

/// Strings with multi-byte characters, `/`, wildcards and `$`, never U+0000.
pub(crate) fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9/+#$ é€😀]{0,8}"
}

/// Valid topic names: non-empty, no wildcards.
pub(crate) fn topic() -> impl Strategy<Value = String> {
    "[a-z0-9é€$]{1,5}(/[a-z0-9]{0,4}){0,2}"
}

pub(crate) fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..12).prop_map(Bytes::from)
}

pub(crate) fn users() -> impl Strategy<Value = Vec<UserProperty>> {
    vec((text(), text()), 0..3)
}

pub(crate) fn packet_id() -> impl Strategy<Value = PacketId> {
    (1u16..).prop_map(|n| PacketId::new(n).unwrap_or(PacketId::MIN))
}

pub(crate) fn flag() -> impl Strategy<Value = Option<u8>> {
    option::of(0u8..=1)
}

pub(crate) fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

pub(crate) fn sub_id() -> impl Strategy<Value = u32> {
    1u32..=268_435_455
}

pub(crate) fn reason(codes: &'static [u8]) -> impl Strategy<Value = ReasonCode> {
    proptest::sample::select(codes).prop_map(ReasonCode)
}

/// The v5 value when `v5`, else the default (v3 has no properties).
pub(crate) fn v5_or_default<T: Default + Clone + std::fmt::Debug + 'static>(
    v5: bool,
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    if v5 {
        s.boxed()
    } else {
        Just(T::default()).boxed()
    }
}

pub(crate) fn ack_props(v5: bool) -> BoxedStrategy<AckProperties> {
    v5_or_default(
        v5,
        (option::of(text()), users()).prop_map(|(reason_string, user_properties)| AckProperties {
            reason_string,
            user_properties,
        }),
    )
}

pub(crate) fn connect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = version.is_v5();
    // A v3.1.1 session may still meet a 3.1 client; CONNECT carries its own version.
    let protocols = if v5 {
        vec![ProtocolVersion::V5]
    } else {
        vec![ProtocolVersion::V31, ProtocolVersion::V311]
    };
    let props = v5_or_default(
        v5,
        (
            (
                option::of(any::<u32>()),
                option::of(1u16..),
                option::of(1u32..),
                option::of(any::<u16>()),
            ),
            (
                flag(),
                flag(),
                users(),
                option::of(text()),
                option::of(binary()),
            ),
        )
            .prop_map(
                |((sei, rm, mps, tam), (rri, rpi, user_properties, am, ad))| ConnectProperties {
                    session_expiry_interval: sei,
                    receive_maximum: rm,
                    maximum_packet_size: mps,
                    topic_alias_maximum: tam,
                    request_response_information: rri,
                    request_problem_information: rpi,
                    user_properties,
                    authentication_method: am,
                    authentication_data: ad,
                },
            ),
    );
    let will_props = v5_or_default(
        v5,
        (
            (option::of(any::<u32>()), flag(), option::of(any::<u32>())),
            (
                option::of(text()),
                option::of(topic()),
                option::of(binary()),
                users(),
            ),
        )
            .prop_map(
                |((wdi, pfi, mei), (ct, rt, cd, user_properties))| WillProperties {
                    will_delay_interval: wdi,
                    payload_format_indicator: pfi,
                    message_expiry_interval: mei,
                    content_type: ct,
                    response_topic: rt,
                    correlation_data: cd,
                    user_properties,
                },
            ),
    );
    let will = option::of(
        (topic(), binary(), qos(), any::<bool>(), will_props).prop_map(
            |(topic, payload, qos, retain, properties)| LastWill {
                topic,
                payload,
                qos,
                retain,
                properties,
            },
        ),
    );
    (
        proptest::sample::select(protocols),
        (any::<bool>(), any::<u16>(), text()),
        will,
        option::of(text()),
        option::of(binary()),
        props,
    )
        .prop_map(
            move |(
                protocol,
                (clean_start, keep_alive, client_id),
                will,
                username,
                password,
                properties,
            )| {
                // v3.x needs a user name for a password [MQTT-3.1.2-22].
                let password = if protocol.is_v5() || username.is_some() {
                    password
                } else {
                    None
                };
                Packet::Connect(Box::new(Connect {
                    protocol,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                }))
            },
        )
}

pub(crate) const CONNACK_V3: &[u8] = &[0x00, 0x84, 0x85, 0x88, 0x86, 0x87];
pub(crate) const CONNACK_V5: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];

pub(crate) fn connack(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = version.is_v5();
    let props = v5_or_default(
        v5,
        (
            (
                option::of(any::<u32>()),
                option::of(1u16..),
                flag(),
                flag(),
                option::of(1u32..),
            ),
            (
                option::of(text()),
                option::of(any::<u16>()),
                option::of(text()),
                users(),
            ),
            (flag(), flag(), flag(), option::of(any::<u16>())),
            (
                option::of(text()),
                option::of(text()),
                option::of(text()),
                option::of(binary()),
            ),
        )
            .prop_map(
                |(
                    (sei, rm, mq, ra, mps),
                    (aci, tam, rs, up),
                    (wsa, sia, ssa, ska),
                    (ri, sr, am, ad),
                )| {
                    ConnectAckProperties {
                        session_expiry_interval: sei,
                        receive_maximum: rm,
                        maximum_qos: mq,
                        retain_available: ra,
                        maximum_packet_size: mps,
                        assigned_client_identifier: aci,
                        topic_alias_maximum: tam,
                        reason_string: rs,
                        user_properties: up,
                        wildcard_subscription_available: wsa,
                        subscription_identifiers_available: sia,
                        shared_subscription_available: ssa,
                        server_keep_alive: ska,
                        response_information: ri,
                        server_reference: sr,
                        authentication_method: am,
                        authentication_data: ad,
                    }
                },
            ),
    );
    (
        any::<bool>(),
        reason(if v5 { CONNACK_V5 } else { CONNACK_V3 }),
        props,
    )
        .prop_map(move |(session_present, reason, properties)| {
            Packet::ConnectAck(ConnectAck {
                // 3.1 has no session-present flag (the byte is reserved).
                session_present: session_present && version != ProtocolVersion::V31,
                reason,
                properties,
            })
        })
}

pub(crate) fn publish(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = version.is_v5();
    let props = v5_or_default(
        v5,
        (
            (
                flag(),
                option::of(any::<u32>()),
                option::of(any::<u16>()),
                option::of(topic()),
            ),
            (
                option::of(binary()),
                users(),
                vec(sub_id(), 0..3),
                option::of(text()),
            ),
        )
            .prop_map(
                |((pfi, mei, ta, rt), (cd, up, sids, ct))| PublishProperties {
                    payload_format_indicator: pfi,
                    message_expiry_interval: mei,
                    topic_alias: ta,
                    response_topic: rt,
                    correlation_data: cd,
                    user_properties: up,
                    subscription_identifiers: sids,
                    content_type: ct,
                },
            ),
    );
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic(),
        packet_id(),
        binary(),
        props,
        any::<bool>(),
    )
        .prop_map(
            move |(qos, dup, retain, topic, id, payload, mut properties, alias_only)| {
                let at_least_once = qos != QoS::AtMostOnce;
                // In v5 a topic alias may replace the topic name.
                let topic = if v5 && alias_only && properties.topic_alias.is_some() {
                    String::new()
                } else {
                    topic
                };
                if topic.is_empty() {
                    properties.topic_alias = properties.topic_alias.or(Some(1));
                }
                Packet::Publish(Publish {
                    dup: dup && at_least_once,
                    qos,
                    retain,
                    topic,
                    packet_id: at_least_once.then_some(id),
                    payload,
                    properties,
                })
            },
        )
}

pub(crate) const PUBACK_V5: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
pub(crate) const PUBREL_V5: &[u8] = &[0x00, 0x92];
pub(crate) const SUCCESS_ONLY: &[u8] = &[0x00];

pub(crate) fn pub_ack(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = version.is_v5();
    let (ack_codes, rel_codes) = if v5 {
        (PUBACK_V5, PUBREL_V5)
    } else {
        (SUCCESS_ONLY, SUCCESS_ONLY)
    };
    (
        0u8..4,
        packet_id(),
        reason(ack_codes),
        reason(rel_codes),
        ack_props(v5),
    )
        .prop_map(|(kind, packet_id, ack_reason, rel_reason, properties)| {
            let ack = |reason| PublishAck {
                packet_id,
                reason,
                properties: properties.clone(),
            };
            match kind {
                0 => Packet::PublishAck(ack(ack_reason)),
                1 => Packet::PublishReceived(ack(ack_reason)),
                2 => Packet::PublishRelease(ack(rel_reason)),
                _ => Packet::PublishComplete(ack(rel_reason)),
            }
        })
}

pub(crate) fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = version.is_v5();
    let options =
        (qos(), any::<bool>(), any::<bool>(), 0u8..3).prop_map(move |(qos, nl, rap, rh)| {
            if !v5 {
                return SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                };
            }
            let retain_handling = match rh {
                0 => RetainHandling::SendAtSubscribe,
                1 => RetainHandling::SendIfNew,
                _ => RetainHandling::DoNotSend,
            };
            SubscriptionOptions {
                qos,
                no_local: nl,
                retain_as_published: rap,
                retain_handling,
            }
        });
    let props = v5_or_default(
        v5,
        (option::of(sub_id()), users()).prop_map(|(subscription_identifier, user_properties)| {
            SubscribeProperties {
                subscription_identifier,
                user_properties,
            }
        }),
    );
    (packet_id(), vec((text(), options), 1..4), props).prop_map(
        |(packet_id, filters, properties)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                filters,
                properties,
            })
        },
    )
}

pub(crate) const SUBACK_V3: &[u8] = &[0x00, 0x01, 0x02, 0x80];
pub(crate) const SUBACK_V5: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
pub(crate) const UNSUBACK_V5: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];

pub(crate) fn suback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = version.is_v5();
    (
        packet_id(),
        vec(reason(if v5 { SUBACK_V5 } else { SUBACK_V3 }), 1..4),
        ack_props(v5),
    )
        .prop_map(|(packet_id, reasons, properties)| {
            Packet::SubscribeAck(SubscribeAck {
                packet_id,
                reasons,
                properties,
            })
        })
}

pub(crate) fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = version.is_v5();
    (packet_id(), vec(text(), 1..4), v5_or_default(v5, users())).prop_map(
        |(packet_id, filters, user_properties)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                filters,
                user_properties,
            })
        },
    )
}

pub(crate) fn unsuback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = version.is_v5();
    (
        packet_id(),
        v5_or_default(v5, vec(reason(UNSUBACK_V5), 1..4)),
        ack_props(v5),
    )
        .prop_map(|(packet_id, reasons, properties)| {
            Packet::UnsubscribeAck(UnsubscribeAck {
                packet_id,
                reasons,
                properties,
            })
        })
}

pub(crate) const DISCONNECT_V5: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];

pub(crate) fn disconnect(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    if !version.is_v5() {
        return Just(Packet::Disconnect(Disconnect::default())).boxed();
    }
    let props = (
        option::of(any::<u32>()),
        option::of(text()),
        users(),
        option::of(text()),
    )
        .prop_map(
            |(session_expiry_interval, reason_string, user_properties, server_reference)| {
                DisconnectProperties {
                    session_expiry_interval,
                    reason_string,
                    user_properties,
                    server_reference,
                }
            },
        );
    (reason(DISCONNECT_V5), props)
        .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }))
        .boxed()
}

pub(crate) fn auth() -> impl Strategy<Value = Packet> {
    let props = (
        option::of(text()),
        option::of(binary()),
        option::of(text()),
        users(),
    )
        .prop_map(
            |(authentication_method, authentication_data, reason_string, user_properties)| {
                AuthProperties {
                    authentication_method,
                    authentication_data,
                    reason_string,
                    user_properties,
                }
            },
        );
    (reason(&[0x00, 0x18, 0x19]), props)
        .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }))
}

/// Every packet `version` can carry.
pub(crate) fn packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(version),
        connack(version),
        publish(version),
        pub_ack(version),
        subscribe(version),
        suback(version),
        unsubscribe(version),
        unsuback(version),
        Just(Packet::PingRequest),
        Just(Packet::PingResponse),
        disconnect(version),
    ];
    if version.is_v5() {
        prop_oneof![10 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}

pub(crate) fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![
        Just(ProtocolVersion::V31),
        Just(ProtocolVersion::V311),
        Just(ProtocolVersion::V5)
    ]
}
