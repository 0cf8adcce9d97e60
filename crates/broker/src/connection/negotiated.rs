//! What CONNECT and the configuration settled for the life of a connection: protocol version,
//! flow control and size limits, topic aliases, keep alive, session expiry.

use std::time::Duration;

use hermod_proto::{Connect, ProtocolVersion};

use super::handshake::Accepted;
use crate::config::Config;

/// The terms of one connection, fixed at CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Negotiated {
    pub(super) version: ProtocolVersion,
    /// Outbound QoS 1/2 in flight allowed: min(client Receive Maximum, max_inflight_messages),
    /// at least 1.
    pub(super) receive_max: usize,
    /// The client's Maximum Packet Size: larger PUBLISH packets are not sent to it
    /// [MQTT-3.1.2-25]. `usize::MAX` when it set none.
    pub(super) client_max_packet: usize,
    /// Inbound topic aliases allowed (the Topic Alias Maximum announced in CONNACK; 0 before v5).
    pub(super) topic_alias_max: u16,
    /// Outbound topic aliases to use: the client's Topic Alias Maximum, at most
    /// `max_topic_alias`; 0 (none) before v5 or when the client announced none.
    pub(super) client_alias_max: u16,
    /// 1.5 × the keep alive in force; `None` when keep alive is 0.
    pub(super) keep_alive: Option<Duration>,
    /// Session expiry asked for, seconds (3.1.1: clean session 0, else never = `u32::MAX`).
    pub(super) session_expiry: u32,
    /// CONNECT had Session Expiry 0, so DISCONNECT may not set it [MQTT-3.14.2-2].
    pub(super) expiry_zero_at_connect: bool,
}

impl Negotiated {
    pub(super) fn new(connect: &Connect, accepted: &Accepted, cfg: &Config) -> Self {
        let version = connect.protocol;
        let props = &connect.properties;
        // v3 CONNECT has no properties: the decoder leaves them all unset.
        let receive_max = props
            .receive_maximum
            .unwrap_or(u16::MAX)
            .min(cfg.max_inflight_messages);
        // Session expiry: v3 clean session = 0, persistent = never (or
        // persistent_client_expiration); v5 from the property (0 by default; 0xFFFFFFFF = never).
        let session_expiry = if version.is_v5() {
            props.session_expiry_interval.unwrap_or(0)
        } else if connect.clean_start {
            0
        } else {
            u32::MAX
        };
        Self {
            version,
            receive_max: usize::from(receive_max).max(1),
            client_max_packet: props.maximum_packet_size.map_or(usize::MAX, |m| m as usize),
            topic_alias_max: if version.is_v5() {
                cfg.max_topic_alias
            } else {
                0
            },
            client_alias_max: if version.is_v5() {
                props
                    .topic_alias_maximum
                    .unwrap_or(0)
                    .min(cfg.max_topic_alias)
            } else {
                0
            },
            keep_alive: (accepted.keep_alive > 0)
                .then(|| Duration::from_millis(u64::from(accepted.keep_alive) * 1500)),
            session_expiry,
            expiry_zero_at_connect: session_expiry == 0,
        }
    }

    /// The session expiry asked for at CONNECT, in force: `None` = never.
    pub(super) fn expiry(&self, cfg: &Config) -> Option<Duration> {
        expiry(self.session_expiry, cfg)
    }
}

/// A session expiry interval (CONNECT or DISCONNECT), seconds, as a duration: 0 ends the session
/// with the connection; `u32::MAX` is never (or `persistent_client_expiration`).
pub(super) fn expiry(secs: u32, cfg: &Config) -> Option<Duration> {
    match secs {
        0 => Some(Duration::ZERO),
        u32::MAX => cfg.persistent_client_expiration(),
        s => Some(Duration::from_secs(u64::from(s))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiate(c: &Connect, keep_alive: u16, cfg: &Config) -> Negotiated {
        let accepted = Accepted {
            client_id: "c".into(),
            assigned: false,
            keep_alive,
            server_keep_alive: None,
        };
        Negotiated::new(c, &accepted, cfg)
    }

    #[test]
    fn terms_per_version() {
        let cfg = Config {
            max_inflight_messages: 20,
            max_topic_alias: 10,
            ..Config::default()
        };
        let mut c = Connect {
            protocol: ProtocolVersion::V311,
            clean_start: false,
            ..Connect::default()
        };
        let n = negotiate(&c, 0, &cfg);
        assert_eq!(
            (n.receive_max, n.client_max_packet, n.topic_alias_max),
            (20, usize::MAX, 0)
        );
        assert_eq!((n.keep_alive, n.session_expiry), (None, u32::MAX));
        assert!(!n.expiry_zero_at_connect);

        c.protocol = ProtocolVersion::V5;
        c.properties.receive_maximum = Some(5);
        c.properties.maximum_packet_size = Some(1000);
        let n = negotiate(&c, 10, &cfg);
        assert_eq!(
            (n.receive_max, n.client_max_packet, n.topic_alias_max),
            (5, 1000, 10)
        );
        assert_eq!(n.keep_alive, Some(Duration::from_secs(15)));
        assert!(n.expiry_zero_at_connect, "v5 session expiry defaults to 0");
        assert_eq!(n.expiry(&cfg), Some(Duration::ZERO));
    }
}
