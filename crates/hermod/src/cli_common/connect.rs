//! Opening a session: client id, CONNECT options from the flags, TCP connect, CONNACK.

use std::net::ToSocketAddrs;
use std::time::Duration;

use bytes::Bytes;
use hermod_client::{ClientError, ConnectOptions, Connection, v3_return_code};
use hermod_proto::{ConnectAck, LastWill, ProtocolVersion, ReasonCode};
use tokio::time::Instant;

use super::args::{Common, Tool};
use super::session::Session;
use super::texts::{
    MOSQ_ERR_CONN_LOST, MOSQ_ERR_PROTOCOL, MOSQ_ERR_TIMEOUT, connack_string, io_strerror,
    mosq_strerror, reason_string,
};

impl Common {
    /// The client id put in CONNECT: `-i`, `-I` + pid, or empty (the broker assigns one), except
    /// for MQTT 3.1 which cannot ask for that: libmosquitto then makes up `mosq-` + 18 characters.
    pub(crate) fn client_id(&self) -> String {
        if let Some(id) = &self.id {
            return id.clone();
        }
        if let Some(prefix) = &self.id_prefix {
            return format!("{prefix}{}", std::process::id());
        }
        if self.version == ProtocolVersion::V31 {
            return format!("mosq-{}", random_alnum(18));
        }
        String::new()
    }

    pub(crate) fn connect_options(&self, client_id: &str) -> ConnectOptions {
        let mut o = ConnectOptions::new(client_id)
            .version(self.version)
            .clean_start(self.clean_session)
            .keep_alive(self.keepalive);
        o.nodelay = self.nodelay;
        if let Some(u) = &self.username {
            o = o.credentials(
                u.clone(),
                self.password
                    .as_ref()
                    .map(|p| Bytes::from(p.clone().into_bytes())),
            );
        }
        if let Some(t) = &self.will_topic {
            o = o.will(LastWill {
                topic: t.clone(),
                payload: Bytes::from(self.will_payload.clone().unwrap_or_default().into_bytes()),
                qos: self.will_qos,
                retain: self.will_retain,
                properties: hermod_proto::WillProperties::default(),
            });
        }
        if self.version.is_v5() {
            o.session_expiry = self.session_expiry.filter(|s| *s != 0);
        }
        o
    }
}

/// Pseudo-random alphanumerics for a generated client id (uniqueness, not secrecy).
fn random_alnum(n: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    const CHARS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let state = std::collections::hash_map::RandomState::new();
    let mut out = String::with_capacity(n);
    for i in 0..n {
        let mut h = state.build_hasher();
        h.write_usize(i);
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let idx = usize::try_from(h.finish() % CHARS.len() as u64).unwrap_or(0);
        out.push(char::from(CHARS[idx]));
    }
    out
}

/// Connects, printing mosquitto's debug lines and error messages. `Err(exit code)` on failure.
pub(crate) async fn open_session(common: &Common, tool: Tool) -> Result<(Session, ConnectAck), u8> {
    let client_id = common.client_id();
    let opts = common.connect_options(&client_id);
    let mut session_debug_id = if client_id.is_empty() {
        "(null)".to_owned()
    } else {
        client_id.clone()
    };

    let addrs: Vec<std::net::SocketAddr> =
        match (common.host.as_str(), common.port).to_socket_addrs() {
            Ok(a) => a.collect(),
            Err(_) => {
                if !common.quiet {
                    eprintln!("Error: Lookup error.");
                }
                return Err(1);
            }
        };
    let mut conn = None;
    let mut last_err = None;
    for a in &addrs {
        match Connection::open(a, common.version).await {
            Ok(c) => {
                conn = Some(c);
                break;
            }
            Err(ClientError::Io(e)) => last_err = Some(e),
            Err(e) => last_err = Some(std::io::Error::other(e.to_string())),
        }
    }
    let Some(conn) = conn else {
        if !common.quiet {
            let msg = last_err.map_or_else(|| "Lookup error.".to_owned(), |e| io_strerror(&e));
            eprintln!("Error: {msg}");
        }
        return Err(1);
    };
    if common.nodelay {
        let _ = conn.stream().set_nodelay(true);
    }

    let mut session = Session {
        conn,
        debug_id: session_debug_id.clone(),
        debug: common.debug,
        quiet: common.quiet,
        version: common.version,
        keepalive: (common.keepalive > 0).then(|| Duration::from_secs(u64::from(common.keepalive))),
        last_out: Instant::now(),
        ping_sent: None,
    };
    session.dbg(format_args!("sending CONNECT"));
    let result = session.conn.handshake(&opts).await;
    session.last_out = Instant::now();
    match result {
        Ok(ack) => {
            if let Some(assigned) = &ack.properties.assigned_client_identifier {
                session_debug_id.clone_from(assigned);
                session.debug_id = session_debug_id;
            }
            session.dbg(format_args!("received CONNACK (0)"));
            if let Some(k) = ack.properties.server_keep_alive {
                session.keepalive = (k > 0).then(|| Duration::from_secs(u64::from(k)));
            }
            Ok((session, ack))
        }
        Err(ClientError::ConnectionRefused { ack }) => {
            Err(report_refused(&session, common, tool, &ack))
        }
        Err(ClientError::Timeout) => {
            session.err(format_args!("Error: {}", mosq_strerror(MOSQ_ERR_TIMEOUT)));
            Err(MOSQ_ERR_TIMEOUT)
        }
        Err(ClientError::Io(e)) => {
            session.err(format_args!("Error: {}", io_strerror(&e)));
            Err(1)
        }
        Err(ClientError::Closed) => {
            session.err(format_args!("Error: {}", mosq_strerror(MOSQ_ERR_CONN_LOST)));
            Err(MOSQ_ERR_CONN_LOST)
        }
        Err(_) => {
            session.err(format_args!("Error: {}", mosq_strerror(MOSQ_ERR_PROTOCOL)));
            Err(MOSQ_ERR_PROTOCOL)
        }
    }
}

/// Reports a refused CONNECT (CONNACK with an error) as mosquitto does; returns the exit code.
fn report_refused(session: &Session, common: &Common, tool: Tool, ack: &ConnectAck) -> u8 {
    let code = if common.version.is_v5() {
        ack.reason.0
    } else {
        v3_return_code(ack.reason)
    };
    session.dbg(format_args!("received CONNACK ({code})"));
    if common.version.is_v5() {
        if ack.reason == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION {
            session.err(format_args!(
                "Connection error: {}. Try connecting to an MQTT v5 broker, or use MQTT v3.x mode.",
                reason_string(code)
            ));
        } else {
            session.err(format_args!("Connection error: {}", reason_string(code)));
        }
    } else {
        session.err(format_args!("Connection error: {}", connack_string(code)));
    }
    if tool == Tool::Pub {
        let follow = if common.version.is_v5() {
            MOSQ_ERR_PROTOCOL
        } else {
            5
        };
        session.err(format_args!("Error: {}", mosq_strerror(follow)));
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v31_generates_an_id() {
        let c = Common {
            version: ProtocolVersion::V31,
            ..Common::default()
        };
        let id = c.client_id();
        assert!(id.starts_with("mosq-") && id.len() == 23, "{id}");
        let c = Common::default();
        assert_eq!(c.client_id(), "");
    }
}
