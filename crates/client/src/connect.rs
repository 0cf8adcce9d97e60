//! Opening a session: TCP connect, socket options, CONNECT out, CONNACK in (or why not).

use hermod_proto::{ConnectAck, Packet};
use tokio::net::ToSocketAddrs;

use crate::{ClientError, ConnectOptions, Connection, packet_name};

/// Opens a TCP connection, sends CONNECT and waits for the CONNACK.
///
/// # Errors
/// [`ClientError::ConnectionRefused`] when the CONNACK carries a failure code (the connection is
/// dropped), [`ClientError::Timeout`] when no CONNACK arrives within
/// [`ConnectOptions::connect_timeout`], [`ClientError::Closed`] when the broker closes first,
/// [`ClientError::Protocol`] when the first packet is not a CONNACK, and I/O or codec errors.
pub async fn connect(
    addr: impl ToSocketAddrs,
    opts: &ConnectOptions,
) -> Result<(Connection, ConnectAck), ClientError> {
    let mut conn = Connection::open(addr, opts.version).await?;
    conn.set_max_packet_size(opts.max_incoming_packet_size);
    if opts.nodelay {
        conn.stream().set_nodelay(true)?;
    }
    let ack = conn.handshake(opts).await?;
    Ok((conn, ack))
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Connection<S> {
    /// Sends the CONNECT of `opts` and waits for the CONNACK (bounded by `opts.connect_timeout`).
    ///
    /// # Errors
    /// As [`connect`].
    pub async fn handshake(&mut self, opts: &ConnectOptions) -> Result<ConnectAck, ClientError> {
        self.set_version(opts.version);
        self.send(&opts.connect_packet()).await?;
        let packet = self.recv_timeout(opts.connect_timeout).await?;
        match packet {
            Some(Packet::ConnectAck(ack)) if ack.reason.is_error() => {
                Err(ClientError::ConnectionRefused { ack: Box::new(ack) })
            }
            Some(Packet::ConnectAck(ack)) => Ok(ack),
            Some(other) => Err(ClientError::Protocol(format!(
                "expected CONNACK, received {}",
                packet_name(&other)
            ))),
            None => Err(ClientError::Closed),
        }
    }
}
