//! [`ClientError`]: everything that can go wrong talking to a broker.

use hermod_proto::{ConnectAck, DecodeError, EncodeError, ReasonCode};

/// Everything that can go wrong talking to a broker.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed (connect, read or write).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent bytes that do not decode as a packet of the negotiated version.
    #[error("decode error: {0}")]
    Decode(#[from] DecodeError),
    /// A packet could not be encoded (too large, or not in this protocol version).
    #[error("encode error: {0}")]
    Encode(#[from] EncodeError),
    /// The broker answered CONNECT with a failure reason code (v3 return codes are mapped onto
    /// the v5 codes by the codec; see [`v3_return_code`](crate::v3_return_code)).
    #[error("connection refused: reason code {}", .ack.reason)]
    ConnectionRefused {
        /// The whole CONNACK, for its reason code and v5 properties (reason string...).
        ack: Box<ConnectAck>,
    },
    /// A deadline passed.
    #[error("timed out")]
    Timeout,
    /// The peer closed the connection in the middle of a packet, or before an expected packet.
    #[error("connection closed by peer")]
    Closed,
    /// The peer broke the protocol flow (e.g. something other than CONNACK first).
    #[error("protocol violation: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The CONNACK reason code when this is [`ClientError::ConnectionRefused`].
    #[must_use]
    pub fn refused_reason(&self) -> Option<ReasonCode> {
        match self {
            Self::ConnectionRefused { ack } => Some(ack.reason),
            _ => None,
        }
    }
}
