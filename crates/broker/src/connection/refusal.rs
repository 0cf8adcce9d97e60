//! Why a CONNECT is refused: one variant per reason, its CONNACK code for each protocol version,
//! and the one log line of a refusal.

use std::net::SocketAddr;

use hermod_proto::{ProtocolVersion, ReasonCode};
use tracing::{info, warn};

/// Every reason a CONNECT is answered with a refusing CONNACK (and the connection closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A protocol level Hermod does not speak [MQTT-3.1.2-2]; answered in the 3.1.1 format.
    UnsupportedProtocol { level: u8 },
    /// Empty client id where none can be assigned [MQTT-3.1.3-8], or longer than
    /// `max_client_id_length`.
    ClientIdNotValid,
    /// 3.1.1 keep alive above `max_keepalive`: "identifier rejected", as Mosquitto answers (v5
    /// gets a Server Keep Alive instead).
    KeepAliveTooLong { asked: u16, cap: u16 },
    /// An authentication method (4.12): none is supported.
    BadAuthenticationMethod,
    /// A retained will where retain is not available.
    WillRetainNotSupported,
    /// A will topic with more levels than `max_topic_levels`.
    WillTopicInvalid,
    /// A will on a `$` topic other than a bridge's state topic.
    WillTopicReserved,
    /// The ACL does not let the client publish its will.
    WillTopicDenied { topic: String },
    /// Anonymous where anonymous access is off (or another "not authorised" from a source).
    NotAuthorized,
    /// `use_identity_as_username` without a client certificate identity.
    NoCertificateIdentity,
    /// Wrong credentials, or a credential source that could not answer.
    BadCredentials { source_error: bool },
    /// A `[[banned]]` entry matches.
    Banned { ban: String },
    /// The address is blocked after repeated failed logins (`[auth_failures]`).
    AddressBlocked { secs_left: u64 },
    /// The address was blocked while its password check waited.
    BlockedWhileQueued,
    /// The password hashing queue stayed full.
    ServerBusy,
    /// The session needs the store, which is down after a disk error.
    StoreUnavailable,
    /// The client id's session belongs to another identity.
    OtherIdentitySession { identity: String, owner: String },
    /// The connection holding the session did not hand it over in time.
    TakeoverTimedOut,
    /// In a cluster: where the client id's session lives could not be settled (NATS away,
    /// or the node holding it did not answer), so it is not served here as a second copy.
    ClusterUnavailable { detail: String },
}

impl Refusal {
    /// The counters' name for this refusal.
    pub(crate) fn result(&self) -> crate::metrics::ConnectResult {
        use crate::metrics::ConnectResult as R;
        match self {
            Self::UnsupportedProtocol { .. } => R::UnsupportedProtocol,
            Self::ClientIdNotValid | Self::KeepAliveTooLong { .. } => R::ClientIdRejected,
            Self::BadAuthenticationMethod => R::BadAuthMethod,
            Self::WillRetainNotSupported
            | Self::WillTopicInvalid
            | Self::WillTopicReserved
            | Self::WillTopicDenied { .. } => R::WillRejected,
            Self::NotAuthorized | Self::OtherIdentitySession { .. } => R::NotAuthorized,
            Self::NoCertificateIdentity | Self::BadCredentials { .. } => R::BadCredentials,
            Self::Banned { .. } => R::Banned,
            Self::AddressBlocked { .. } | Self::BlockedWhileQueued => R::Blocked,
            Self::ServerBusy => R::ServerBusy,
            Self::StoreUnavailable | Self::TakeoverTimedOut | Self::ClusterUnavailable { .. } => {
                R::ServerUnavailable
            }
        }
    }

    /// The CONNACK reason code for a client of version `v`, as given to the encoder (which maps
    /// a v5 code to the 3.1.1 return code: 0x85 → 2, 0x86 → 4, 0x87 → 5, anything else → 3).
    pub(crate) fn connack_code(&self, v: ProtocolVersion) -> ReasonCode {
        let v5 = v.is_v5();
        match self {
            Self::UnsupportedProtocol { .. } => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            Self::ClientIdNotValid | Self::KeepAliveTooLong { .. } => {
                ReasonCode::CLIENT_IDENTIFIER_NOT_VALID
            }
            Self::BadAuthenticationMethod => ReasonCode::BAD_AUTHENTICATION_METHOD,
            Self::WillRetainNotSupported => ReasonCode::RETAIN_NOT_SUPPORTED,
            Self::WillTopicInvalid => ReasonCode::TOPIC_NAME_INVALID,
            Self::WillTopicReserved
            | Self::WillTopicDenied { .. }
            | Self::NotAuthorized
            | Self::NoCertificateIdentity
            | Self::OtherIdentitySession { .. } => ReasonCode::NOT_AUTHORIZED,
            // 3.1.1: return code 5 "not authorised" (not 4), as Mosquitto answers.
            Self::BadCredentials { .. } if v5 => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            Self::BadCredentials { .. } => ReasonCode::NOT_AUTHORIZED,
            // 3.1.1: 5, as for bad credentials (the encoder would make 0x8A a 3).
            Self::Banned { .. } | Self::AddressBlocked { .. } | Self::BlockedWhileQueued if v5 => {
                ReasonCode::BANNED
            }
            Self::Banned { .. } | Self::AddressBlocked { .. } | Self::BlockedWhileQueued => {
                ReasonCode::NOT_AUTHORIZED
            }
            Self::ServerBusy => ReasonCode::SERVER_BUSY,
            Self::StoreUnavailable | Self::TakeoverTimedOut | Self::ClusterUnavailable { .. } => {
                ReasonCode::SERVER_UNAVAILABLE
            }
        }
    }

    /// The version whose format the refusing CONNACK is written in: the client's, except for a
    /// level Hermod does not speak, answered in the 3.1.1 format as Mosquitto does.
    pub(crate) fn wire_version(&self, v: ProtocolVersion) -> ProtocolVersion {
        match self {
            Self::UnsupportedProtocol { .. } => ProtocolVersion::V311,
            _ => v,
        }
    }

    /// The one log line of a refusal: warn where an operator should look (another identity's
    /// session, a takeover that timed out, the store down), info otherwise.
    pub(crate) fn log(&self, peer: SocketAddr, client_id: &str, username: Option<&str>) {
        let code = self.connack_code(ProtocolVersion::V5);
        match self {
            Self::OtherIdentitySession { .. }
            | Self::TakeoverTimedOut
            | Self::StoreUnavailable
            | Self::ClusterUnavailable { .. } => {
                warn!(%peer, client_id, ?username, reason = %code, "connection refused: {self}");
            }
            _ => info!(%peer, client_id, ?username, reason = %code, "connection refused: {self}"),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnsupportedProtocol { level } => write!(f, "unsupported protocol level {level}"),
            Self::ClientIdNotValid => f.write_str("client identifier not valid"),
            Self::KeepAliveTooLong { asked, cap } => {
                write!(f, "keep alive {asked} s above max_keepalive {cap} s")
            }
            Self::BadAuthenticationMethod => f.write_str("authentication method not supported"),
            Self::WillRetainNotSupported => f.write_str("retained will but retain not available"),
            Self::WillTopicInvalid => f.write_str("will topic has too many levels"),
            Self::WillTopicReserved => f.write_str("will on a reserved ($) topic"),
            Self::WillTopicDenied { topic } => write!(f, "will topic {topic} denied by the ACL"),
            Self::NotAuthorized => f.write_str("not authorized by authentication"),
            Self::NoCertificateIdentity => {
                f.write_str("no client certificate identity for use_identity_as_username")
            }
            Self::BadCredentials {
                source_error: false,
            } => f.write_str("bad user name or password"),
            Self::BadCredentials { source_error: true } => {
                f.write_str("the credential source could not answer")
            }
            Self::Banned { ban } => write!(f, "banned ({ban})"),
            Self::AddressBlocked { secs_left } => {
                write!(
                    f,
                    "address blocked after failed logins ({secs_left} s left)"
                )
            }
            Self::BlockedWhileQueued => {
                f.write_str("address blocked after failed logins while the check waited")
            }
            Self::ServerBusy => f.write_str("server busy (password hashing queue full)"),
            Self::StoreUnavailable => {
                f.write_str("the store is unavailable after a disk error and this session needs it")
            }
            Self::OtherIdentitySession { identity, owner } => write!(
                f,
                "the client id's session belongs to another identity ({owner}, not {identity})"
            ),
            Self::TakeoverTimedOut => {
                f.write_str("session hand-off timed out (server unavailable)")
            }
            Self::ClusterUnavailable { detail } => {
                write!(f, "the cluster could not hand this session over: {detail}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use hermod_proto::{ConnectAck, Packet, encode_packet};

    /// The CONNACK bytes a refusal puts on the wire for a client of version `v`.
    fn wire(r: &Refusal, v: ProtocolVersion) -> Vec<u8> {
        let ack = ConnectAck {
            reason: r.connack_code(v),
            ..ConnectAck::default()
        };
        let mut w = BytesMut::new();
        encode_packet(&Packet::ConnectAck(ack), r.wire_version(v), &mut w).expect("encode");
        w.to_vec()
    }

    /// The reason byte (v5) and the return code (3.1.1) of every refusal.
    #[test]
    fn connack_codes_per_version() {
        let table = [
            (Refusal::UnsupportedProtocol { level: 7 }, 0x84, 1),
            (Refusal::ClientIdNotValid, 0x85, 2),
            (Refusal::KeepAliveTooLong { asked: 90, cap: 60 }, 0x85, 2),
            (Refusal::BadAuthenticationMethod, 0x8C, 3),
            (Refusal::WillRetainNotSupported, 0x9A, 3),
            (Refusal::WillTopicInvalid, 0x90, 3),
            (Refusal::WillTopicReserved, 0x87, 5),
            (Refusal::WillTopicDenied { topic: "t".into() }, 0x87, 5),
            (Refusal::NotAuthorized, 0x87, 5),
            (Refusal::NoCertificateIdentity, 0x87, 5),
            (
                Refusal::BadCredentials {
                    source_error: false,
                },
                0x86,
                5,
            ),
            (Refusal::BadCredentials { source_error: true }, 0x86, 5),
            (Refusal::Banned { ban: "b".into() }, 0x8A, 5),
            (Refusal::AddressBlocked { secs_left: 3 }, 0x8A, 5),
            (Refusal::BlockedWhileQueued, 0x8A, 5),
            (Refusal::ServerBusy, 0x89, 3),
            (Refusal::StoreUnavailable, 0x88, 3),
            (
                Refusal::OtherIdentitySession {
                    identity: "bob".into(),
                    owner: "alice".into(),
                },
                0x87,
                5,
            ),
            (Refusal::TakeoverTimedOut, 0x88, 3),
            (
                Refusal::ClusterUnavailable {
                    detail: "NATS away".into(),
                },
                0x88,
                3,
            ),
        ];
        for (r, v5, v311) in table {
            // v5: fixed header, length, flags, reason, empty properties.
            let expect_v5 = if matches!(r, Refusal::UnsupportedProtocol { .. }) {
                vec![0x20, 2, 0, v311]
            } else {
                vec![0x20, 3, 0, v5, 0]
            };
            assert_eq!(wire(&r, ProtocolVersion::V5), expect_v5, "{r} (v5)");
            assert_eq!(
                wire(&r, ProtocolVersion::V311),
                [0x20, 2, 0, v311],
                "{r} (3.1.1)"
            );
            assert_eq!(r.connack_code(ProtocolVersion::V5).0, v5, "{r}");
        }
    }
}
