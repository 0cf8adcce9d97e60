//! [`Config::validate`]: values that parse but cannot be used, each refused naming its key.

use std::net::SocketAddr;

use super::{Config, ConfigError, parse_duration};

impl Config {
    /// Checks values that parse but cannot be used.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            key: key.to_owned(),
            message,
        };
        if self.listeners.is_empty() {
            return Err(invalid(
                "listener",
                "no [[listener]] table: add one, e.g. [[listener]] bind = \"0.0.0.0:1883\"".into(),
            ));
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if let Err(e) = l.transport_settings(None, self.max_packet_size).validate() {
                return Err(invalid(&format!("listener[{i}]"), e.to_string()));
            }
            if l.handshake_timeout == Some(0) {
                return Err(invalid(
                    &format!("listener[{i}].handshake_timeout"),
                    "must be at least 1 second".into(),
                ));
            }
            if l.bind.parse::<SocketAddr>().is_err() && !is_host_and_port(&l.bind) {
                return Err(invalid(
                    &format!("listener[{i}].bind"),
                    format!(
                        "`{}` is not an address with a port, e.g. \"0.0.0.0:1883\"",
                        l.bind
                    ),
                ));
            }
        }
        if self.max_packet_size < 64 {
            return Err(invalid(
                "max_packet_size",
                "must be at least 64 bytes".into(),
            ));
        }
        if self.max_packet_size as usize > hermod_proto::MAX_REMAINING_LENGTH + 5 {
            return Err(invalid(
                "max_packet_size",
                "must be at most 268435460 bytes".into(),
            ));
        }
        if self.max_inflight_messages == 0 {
            return Err(invalid(
                "max_inflight_messages",
                "must be at least 1".into(),
            ));
        }
        if self.max_queued_messages == 0 {
            return Err(invalid("max_queued_messages", "must be at least 1".into()));
        }
        if self.max_topic_levels == 0 {
            return Err(invalid("max_topic_levels", "must be at least 1".into()));
        }
        if self.max_client_id_length < 23 {
            return Err(invalid(
                "max_client_id_length",
                "must be at least 23 (the spec's minimum)".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1".into()));
        }
        if self.connect_timeout == 0 {
            return Err(invalid(
                "connect_timeout",
                "must be at least 1 second".into(),
            ));
        }
        if let Some(s) = &self.persistent_client_expiration {
            parse_duration(s).map_err(|m| invalid("persistent_client_expiration", m))?;
        }
        let af = &self.auth_failures;
        parse_duration(&af.window).map_err(|m| invalid("auth_failures.window", m))?;
        parse_duration(&af.block).map_err(|m| invalid("auth_failures.block", m))?;
        if af.max > 0 && af.max_addresses == 0 {
            return Err(invalid(
                "auth_failures.max_addresses",
                "must be at least 1 (or set auth_failures.max = 0 to turn blocking off)".into(),
            ));
        }
        let admin = &self.admin;
        if admin.enabled {
            if admin.bind.parse::<SocketAddr>().is_err() && !is_host_and_port(&admin.bind) {
                return Err(invalid(
                    "admin.bind",
                    format!(
                        "`{}` is not an address with a port, e.g. \"127.0.0.1:18083\"",
                        admin.bind
                    ),
                ));
            }
            if admin.certfile.is_some() != admin.keyfile.is_some() {
                return Err(invalid(
                    "admin.certfile",
                    "certfile and keyfile go together (both for TLS, neither for plain HTTP)"
                        .into(),
                ));
            }
        }
        let ttl =
            parse_duration(&admin.token_expiry).map_err(|m| invalid("admin.token_expiry", m))?;
        if ttl.is_zero() {
            return Err(invalid(
                "admin.token_expiry",
                "must be at least 1 second".into(),
            ));
        }
        if let Some(bind) = &self.metrics.bind
            && bind.parse::<SocketAddr>().is_err()
            && !is_host_and_port(bind)
        {
            return Err(invalid(
                "metrics.bind",
                format!("`{bind}` is not an address with a port, e.g. \"0.0.0.0:9234\""),
            ));
        }
        Ok(())
    }
}

/// `host:port` with a host name (resolved when the listener binds, as Mosquitto does) and a
/// numeric port.
fn is_host_and_port(bind: &str) -> bool {
    bind.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && port.parse::<u16>().is_ok()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    })
}
