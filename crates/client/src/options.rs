//! [`ConnectOptions`]: what goes in the CONNECT packet (builder included), plus client-side limits.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use hermod_proto::{ConnectProperties, LastWill, Packet, ProtocolVersion};

/// Largest packet accepted from the peer unless told otherwise: the protocol maximum (a
/// 268,435,455-byte remaining length plus a 5-byte fixed header).
pub const DEFAULT_MAX_PACKET_SIZE: usize = hermod_proto::MAX_REMAINING_LENGTH + 5;

/// How long [`connect`](fn@crate::connect) waits for the CONNACK unless
/// [`ConnectOptions::connect_timeout`] says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What to put in the CONNECT packet, plus client-side limits.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Protocol version to speak; also the version the connection decodes with.
    pub version: ProtocolVersion,
    /// May be empty: the server assigns one (v5 always; v3.1.1 only with clean start).
    pub client_id: String,
    /// v3 "clean session" / v5 "clean start".
    pub clean_start: bool,
    /// Keep alive in seconds; 0 disables it.
    pub keep_alive: u16,
    /// User name, if any.
    pub username: Option<String>,
    /// Password, if any. Never printed by `Debug`.
    pub password: Option<Bytes>,
    /// Last will.
    pub will: Option<LastWill>,
    /// v5 session expiry interval (shortcut for `properties.session_expiry_interval`; wins when set).
    pub session_expiry: Option<u32>,
    /// v5 receive maximum (shortcut for `properties.receive_maximum`; wins when set).
    pub receive_maximum: Option<u16>,
    /// Any other v5 CONNECT properties. Ignored for v3.
    pub properties: ConnectProperties,
    /// How long to wait for the CONNACK.
    pub connect_timeout: Duration,
    /// Largest packet accepted from the broker (decoder limit). Also sent as the v5 maximum
    /// packet size property when `properties.maximum_packet_size` is set.
    pub max_incoming_packet_size: usize,
    /// Set `TCP_NODELAY` on the socket (default true: the connection coalesces writes itself).
    pub nodelay: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            version: ProtocolVersion::V311,
            client_id: String::new(),
            clean_start: true,
            keep_alive: 60,
            username: None,
            password: None,
            will: None,
            session_expiry: None,
            receive_maximum: None,
            properties: ConnectProperties::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_incoming_packet_size: DEFAULT_MAX_PACKET_SIZE,
            nodelay: true,
        }
    }
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("version", &self.version)
            .field("client_id", &self.client_id)
            .field("clean_start", &self.clean_start)
            .field("keep_alive", &self.keep_alive)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<REDACTED>"))
            .field("will", &self.will)
            .field("session_expiry", &self.session_expiry)
            .field("receive_maximum", &self.receive_maximum)
            .field("properties", &self.properties)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_incoming_packet_size", &self.max_incoming_packet_size)
            .field("nodelay", &self.nodelay)
            .finish()
    }
}

impl ConnectOptions {
    /// Defaults (v3.1.1, clean start, keep alive 60) with this client id.
    #[must_use]
    pub fn new(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            ..Self::default()
        }
    }

    /// Sets the protocol version.
    #[must_use]
    pub fn version(mut self, version: ProtocolVersion) -> Self {
        self.version = version;
        self
    }

    /// Sets clean start / clean session.
    #[must_use]
    pub fn clean_start(mut self, clean: bool) -> Self {
        self.clean_start = clean;
        self
    }

    /// Sets the keep alive in seconds.
    #[must_use]
    pub fn keep_alive(mut self, secs: u16) -> Self {
        self.keep_alive = secs;
        self
    }

    /// Sets user name and password.
    #[must_use]
    pub fn credentials(mut self, username: impl Into<String>, password: Option<Bytes>) -> Self {
        self.username = Some(username.into());
        self.password = password;
        self
    }

    /// Sets the will.
    #[must_use]
    pub fn will(mut self, will: LastWill) -> Self {
        self.will = Some(will);
        self
    }

    /// Sets the v5 session expiry interval.
    #[must_use]
    pub fn session_expiry(mut self, secs: u32) -> Self {
        self.session_expiry = Some(secs);
        self
    }

    /// The CONNECT packet these options describe.
    #[must_use]
    pub fn connect_packet(&self) -> Packet {
        let mut properties = self.properties.clone();
        let mut will = self.will.clone();
        if self.version.is_v5() {
            if self.session_expiry.is_some() {
                properties.session_expiry_interval = self.session_expiry;
            }
            if self.receive_maximum.is_some() {
                properties.receive_maximum = self.receive_maximum;
            }
        } else {
            properties = ConnectProperties::default();
            if let Some(w) = will.as_mut() {
                w.properties = hermod_proto::WillProperties::default();
            }
        }
        Packet::Connect(Box::new(hermod_proto::Connect {
            protocol: self.version,
            clean_start: self.clean_start,
            keep_alive: self.keep_alive,
            client_id: self.client_id.clone(),
            will,
            username: self.username.clone(),
            password: self.password.clone(),
            properties,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_packet_drops_v5_fields_for_v3() {
        let mut opts = ConnectOptions::new("x").session_expiry(10);
        opts.receive_maximum = Some(5);
        let Packet::Connect(c) = opts.connect_packet() else {
            panic!()
        };
        assert_eq!(c.properties, ConnectProperties::default());
        let opts = opts.version(ProtocolVersion::V5);
        let Packet::Connect(c) = opts.connect_packet() else {
            panic!()
        };
        assert_eq!(c.properties.session_expiry_interval, Some(10));
        assert_eq!(c.properties.receive_maximum, Some(5));
        assert_eq!(c.protocol, ProtocolVersion::V5);
    }

    #[test]
    fn debug_redacts_password() {
        let opts = ConnectOptions::new("x").credentials("u", Some(Bytes::from_static(b"secret")));
        let s = format!("{opts:?}");
        assert!(!s.contains("secret"));
        assert!(s.contains("REDACTED"));
    }
}
