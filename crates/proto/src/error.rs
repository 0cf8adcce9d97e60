//! Decode and encode errors. Each spec violation names its normative statement, and every error
//! knows the v5 reason code the server answers it with, so the broker maps errors in one place.

use crate::types::ReasonCode;

/// Why bytes could not be decoded into a packet. Running out of bytes is not an error: the
/// decoder returns `Ok(None)` instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The remaining length announces a packet larger than the configured maximum. Raised from the
    /// fixed header alone, before the body is buffered.
    #[error("packet of {size} bytes exceeds the maximum packet size {max}")]
    PacketTooLarge {
        /// Total packet size announced by the fixed header.
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// Malformed packet (v5 reason 0x81). The message names the rule, e.g. "[MQTT-1.5.4-2] ...".
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// Protocol error (v5 reason 0x82).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A topic name that is not valid (v5 reason 0x90), e.g. a wildcard in a PUBLISH topic [MQTT-3.3.2-2].
    #[error("invalid topic name: {0}")]
    TopicNameInvalid(&'static str),
    /// CONNECT with a protocol level this codec does not speak (answered with CONNACK 0x01 / 0x84).
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolVersion(u8),
    /// CONNECT with a protocol name other than `MQTT` / `MQIsdp` [MQTT-3.1.2-1]: the server may
    /// close without CONNACK.
    #[error("invalid protocol name")]
    InvalidProtocolName,
}

impl DecodeError {
    /// The v5 reason code for a DISCONNECT (or CONNACK) answering this error.
    #[must_use]
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            Self::Malformed(_) => ReasonCode::MALFORMED_PACKET,
            Self::Protocol(_) | Self::InvalidProtocolName => ReasonCode::PROTOCOL_ERROR,
            Self::TopicNameInvalid(_) => ReasonCode::TOPIC_NAME_INVALID,
            Self::UnsupportedProtocolVersion(_) => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        }
    }
}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The packet would exceed 268,435,455 bytes of remaining length.
    #[error("packet too large to encode")]
    TooLarge,
    /// A string longer than 65,535 bytes, or binary data of that size.
    #[error("string or binary field longer than 65535 bytes")]
    FieldTooLong,
    /// The packet type does not exist in the target version (AUTH in v3).
    #[error("packet not available in this protocol version")]
    NotInVersion,
    /// A PUBLISH with QoS 1 or 2 but no packet id [MQTT-2.2.1-2].
    #[error("QoS > 0 PUBLISH without a packet identifier")]
    MissingPacketId,
}

/// A topic that fails validation while a packet is decoded is a malformed packet with reason
/// 0x90 (topic name invalid); the codec's packet decoders convert with `?`.
impl From<crate::topic::TopicError> for DecodeError {
    fn from(e: crate::topic::TopicError) -> Self {
        use crate::topic::TopicError;
        DecodeError::TopicNameInvalid(match e {
            TopicError::Empty => "[MQTT-4.7.3-1] empty topic name",
            TopicError::WildcardInName => "[MQTT-3.3.2-2] wildcard in topic name",
            TopicError::BadWildcard => "[MQTT-4.7.1-2/3] misplaced wildcard",
            TopicError::NullChar => "[MQTT-4.7.3-2] null character in topic",
            TopicError::BadShare => "[4.8.2] invalid shared subscription",
        })
    }
}
