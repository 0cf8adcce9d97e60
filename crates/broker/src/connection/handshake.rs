//! The CONNECT handshake: read the first packet within the connect timeout, check it, and decide
//! the CONNACK. Pure checks live in `check_connect` so they can be tested without a socket.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use bytes::BytesMut;
use hermod_proto::{Connect, DecodeError, Packet, ProtocolVersion, decode_packet};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::refusal::Refusal;
use crate::config::Config;

/// Why no session can be started.
#[derive(Debug)]
pub(crate) enum HandshakeError {
    /// Nothing (or not all of CONNECT) arrived within the connect timeout.
    Timeout,
    /// The peer closed, or the socket failed.
    Io(Option<std::io::Error>),
    /// The first packet was not CONNECT [MQTT-3.1.0-1].
    NotConnect,
    /// CONNECT could not be decoded.
    Decode(DecodeError),
}

/// Reads the first packet, which must be CONNECT.
pub(crate) async fn read_connect<S: AsyncRead + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    max_packet_size: usize,
    timeout: Duration,
) -> Result<Box<Connect>, HandshakeError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match decode_packet(rbuf, ProtocolVersion::V5, max_packet_size) {
            Ok(Some(Packet::Connect(c))) => return Ok(c),
            Ok(Some(_)) => return Err(HandshakeError::NotConnect),
            Ok(None) => {}
            Err(e) => return Err(HandshakeError::Decode(e)),
        }
        rbuf.reserve(1024);
        match tokio::time::timeout_at(deadline, stream.read_buf(rbuf)).await {
            Err(_) => return Err(HandshakeError::Timeout),
            Ok(Ok(0)) => return Err(HandshakeError::Io(None)),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(HandshakeError::Io(Some(e))),
        }
    }
}

/// What the checks decided for an acceptable CONNECT.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Accepted {
    /// The client id to use (assigned when the client sent none).
    pub(crate) client_id: String,
    /// Whether the server assigned it (v5 then returns it in CONNACK).
    pub(crate) assigned: bool,
    /// Keep alive in force, seconds (0 = none).
    pub(crate) keep_alive: u16,
    /// Set when the server overrides the client's keep alive (v5 Server Keep Alive).
    pub(crate) server_keep_alive: Option<u16>,
}

/// Checks a decoded CONNECT against the configuration. `Err` says why it is refused.
pub(crate) fn check_connect(c: &Connect, config: &Config) -> Result<Accepted, Refusal> {
    let v5 = c.protocol.is_v5();
    // Client identifier [MQTT-3.1.3-6/7/8] (3.1.1), 3.1.3.1 (5.0).
    let (client_id, assigned) = if c.client_id.is_empty() {
        match c.protocol {
            ProtocolVersion::V5 => (assign_client_id(), true),
            ProtocolVersion::V311 if c.clean_start => (assign_client_id(), true),
            // [MQTT-3.1.3-8]: zero-length id without clean session → 0x02; 3.1 requires 1-23 chars.
            _ => return Err(Refusal::ClientIdNotValid),
        }
    } else {
        (c.client_id.clone(), false)
    };
    if client_id.len() > config.max_client_id_length {
        return Err(Refusal::ClientIdNotValid);
    }
    // Enhanced authentication: no method is supported yet (4.12).
    if v5 && c.properties.authentication_method.is_some() {
        return Err(Refusal::BadAuthenticationMethod);
    }
    // Keep alive cap (Mosquitto's max_keepalive): v5 gets Server Keep Alive, v3 is refused
    // with 0x02 ("identifier rejected"), which is what Mosquitto answers.
    let mut keep_alive = c.keep_alive;
    let mut server_keep_alive = None;
    let cap = config.max_keepalive;
    if cap < u16::MAX && (keep_alive > cap || (v5 && keep_alive == 0)) {
        if v5 {
            keep_alive = cap;
            server_keep_alive = Some(cap);
        } else if keep_alive > cap {
            return Err(Refusal::KeepAliveTooLong {
                asked: keep_alive,
                cap,
            });
        }
    }
    if let Some(will) = &c.will {
        // `$` topics are the server's: no will goes there (nor to `$share/...`), except the
        // state topic a Mosquitto bridge keeps its own will on; the ACL is checked after
        // authentication.
        if will.topic.starts_with('$')
            && !hermod_proto::topic::matches("$SYS/broker/connection/+/state", &will.topic)
        {
            return Err(Refusal::WillTopicReserved);
        }
        if will.retain && !config.retain_available {
            return Err(Refusal::WillRetainNotSupported);
        }
        if will.topic.split('/').count() > config.max_topic_levels {
            return Err(Refusal::WillTopicInvalid);
        }
    }
    Ok(Accepted {
        client_id,
        assigned,
        keep_alive,
        server_keep_alive,
    })
}

/// A server-assigned client id: "hermod-" and 16 random hex digits (random keys of std's hasher,
/// which are seeded from the OS).
fn assign_client_id() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    format!("hermod-{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hermod_proto::LastWill;

    fn connect(v: ProtocolVersion, id: &str, clean: bool) -> Connect {
        Connect {
            protocol: v,
            client_id: id.into(),
            clean_start: clean,
            keep_alive: 60,
            ..Connect::default()
        }
    }

    #[test]
    fn empty_client_id_rules() {
        let cfg = Config::default();
        // [MQTT-3.1.3-6] server assigns an id for 3.1.1 with clean session
        let a = check_connect(&connect(ProtocolVersion::V311, "", true), &cfg).expect("accepted");
        assert!(a.assigned && a.client_id.starts_with("hermod-"));
        // [MQTT-3.1.3-8] 3.1.1 without clean session → 0x02 (mapped from 0x85)
        assert_eq!(
            check_connect(&connect(ProtocolVersion::V311, "", false), &cfg),
            Err(Refusal::ClientIdNotValid)
        );
        // 5.0 assigns whatever clean start says (3.1.3.1)
        assert!(
            check_connect(&connect(ProtocolVersion::V5, "", false), &cfg)
                .expect("v5")
                .assigned
        );
        // 3.1 requires an id
        assert!(check_connect(&connect(ProtocolVersion::V31, "", true), &cfg).is_err());
        let a = check_connect(&connect(ProtocolVersion::V311, "", true), &cfg).expect("a");
        let b = check_connect(&connect(ProtocolVersion::V311, "", true), &cfg).expect("b");
        assert_ne!(a.client_id, b.client_id, "assigned ids are unique");
    }

    #[test]
    fn keep_alive_cap() {
        let cfg = Config {
            max_keepalive: 30,
            ..Config::default()
        };
        let a = check_connect(&connect(ProtocolVersion::V5, "c", true), &cfg).expect("v5");
        assert_eq!((a.keep_alive, a.server_keep_alive), (30, Some(30)));
        assert!(check_connect(&connect(ProtocolVersion::V311, "c", true), &cfg).is_err());
        let mut c = connect(ProtocolVersion::V311, "c", true);
        c.keep_alive = 0;
        assert_eq!(check_connect(&c, &cfg).expect("ka 0").keep_alive, 0);
    }

    #[test]
    fn auth_method_is_refused() {
        let mut c = connect(ProtocolVersion::V5, "c", true);
        c.properties.authentication_method = Some("SCRAM-SHA-1".into());
        assert_eq!(
            check_connect(&c, &Config::default()),
            Err(Refusal::BadAuthenticationMethod)
        );
    }

    #[test]
    fn dollar_will_topics_are_refused() {
        let cfg = Config::default();
        for (topic, ok) in [
            ("$SYS/broker/uptime", false),
            ("$share/g/alice/cmd", false),
            ("$aws/things/x", false),
            ("$SYS/broker/connection/bridge-1/state", true),
            ("alice/status", true),
        ] {
            let mut c = connect(ProtocolVersion::V311, "c", true);
            c.will = Some(LastWill {
                topic: topic.into(),
                ..LastWill::default()
            });
            let got = check_connect(&c, &cfg);
            assert_eq!(got.is_ok(), ok, "{topic}: {got:?}");
            if !ok {
                assert_eq!(got, Err(Refusal::WillTopicReserved));
            }
        }
    }

    #[test]
    fn client_id_length_limit() {
        let cfg = Config {
            max_client_id_length: 23,
            ..Config::default()
        };
        assert!(
            check_connect(&connect(ProtocolVersion::V311, &"x".repeat(24), true), &cfg).is_err()
        );
        assert!(
            check_connect(&connect(ProtocolVersion::V311, &"x".repeat(23), true), &cfg).is_ok()
        );
    }
}
