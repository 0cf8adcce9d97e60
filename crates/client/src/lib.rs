//! A small async MQTT client on tokio and `hermod-proto`.
//!
//! It is deliberately low level: a [`Connection`] sends and receives whole [`Packet`]s and leaves
//! the protocol flows (acks, keep alive, retries) to the caller. That is what `hermod pub` /
//! `hermod sub`, the load generator and the broker's integration tests need: full control over
//! what goes on the wire, including malformed bytes via [`Connection::send_raw`].
//!
//! # Cancel safety
//! [`Connection::recv`] keeps partially received bytes in an owned buffer and only ever awaits
//! `read_buf`, so it can sit in a `tokio::select!` branch: when another branch wins, no byte is
//! lost and the next `recv` continues where this one stopped. [`Connection::flush`] likewise only
//! removes bytes from its buffer once the socket accepted them.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), hermod_client::ClientError> {
//! use hermod_client::{connect, ConnectOptions};
//! let opts = ConnectOptions::new("demo-client");
//! let (mut conn, ack) = connect("127.0.0.1:1883", &opts).await?;
//! assert!(!ack.reason.is_error());
//! conn.disconnect().await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::num::NonZeroU16;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use hermod_proto::{
    ConnectAck, ConnectProperties, DecodeError, Disconnect, EncodeError, LastWill, Packet,
    PacketId, ProtocolVersion, ReasonCode, decode_packet, encode_packet,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, ToSocketAddrs};

pub use hermod_proto;

/// Largest packet accepted from the peer unless told otherwise: the protocol maximum (a
/// 268,435,455-byte remaining length plus a 5-byte fixed header).
pub const DEFAULT_MAX_PACKET_SIZE: usize = hermod_proto::MAX_REMAINING_LENGTH + 5;

/// How long [`connect`] waits for the CONNACK unless [`ConnectOptions::connect_timeout`] says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// the v5 codes by the codec; see [`v3_return_code`]).
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

/// The MQTT 3.x CONNACK return code for a (v5-valued) reason code, as the codec maps it:
/// 0x00→0, 0x84→1, 0x85→2, 0x88/0x89→3, 0x86→4, 0x87→5, any other failure→3.
#[must_use]
pub fn v3_return_code(reason: ReasonCode) -> u8 {
    match reason.0 {
        0x00 => 0,
        0x84 => 1,
        0x85 => 2,
        0x88 | 0x89 => 3,
        0x86 => 4,
        0x87 => 5,
        // Already a raw v3 code (a codec that passes them through).
        c @ 1..=5 => c,
        _ => 3,
    }
}

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
        conn.stream.set_nodelay(true)?;
    }
    let ack = conn.handshake(opts).await?;
    Ok((conn, ack))
}

/// One MQTT connection over TCP: packets in, packets out.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    reader: PacketBuf,
    write_buf: BytesMut,
    version: ProtocolVersion,
}

impl Connection {
    /// Opens a bare TCP connection that will speak `version`. Nothing is sent: use
    /// [`Connection::handshake`], or drive the exchange by hand with `send`/`recv`.
    ///
    /// # Errors
    /// The TCP connect failure.
    pub async fn open(
        addr: impl ToSocketAddrs,
        version: ProtocolVersion,
    ) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        Ok(Self::from_stream(stream, version))
    }

    /// Wraps an already connected stream.
    #[must_use]
    pub fn from_stream(stream: TcpStream, version: ProtocolVersion) -> Self {
        Self {
            stream,
            reader: PacketBuf::new(DEFAULT_MAX_PACKET_SIZE),
            write_buf: BytesMut::with_capacity(8 * 1024),
            version,
        }
    }

    /// Sends the CONNECT of `opts` and waits for the CONNACK (bounded by `opts.connect_timeout`).
    ///
    /// # Errors
    /// As [`connect`].
    pub async fn handshake(&mut self, opts: &ConnectOptions) -> Result<ConnectAck, ClientError> {
        self.version = opts.version;
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

    /// The protocol version used to encode and decode.
    #[must_use]
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// Changes the protocol version (e.g. after sending a CONNECT by hand).
    pub fn set_version(&mut self, version: ProtocolVersion) {
        self.version = version;
    }

    /// Changes the largest packet accepted from the peer.
    pub fn set_max_packet_size(&mut self, max: usize) {
        self.reader.max_packet_size = max;
    }

    /// The underlying stream (for socket options, addresses).
    #[must_use]
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Encodes `packet` into the write buffer without sending it. Call [`Connection::flush`]
    /// (or `send`) to put the buffered packets on the wire, several per syscall.
    ///
    /// # Errors
    /// [`ClientError::Encode`]; the buffer is left unchanged then.
    pub fn queue(&mut self, packet: &Packet) -> Result<(), ClientError> {
        let before = self.write_buf.len();
        if let Err(e) = encode_packet(packet, self.version, &mut self.write_buf) {
            self.write_buf.truncate(before);
            return Err(e.into());
        }
        Ok(())
    }

    /// Appends raw bytes to the write buffer (for malformed-input tests).
    pub fn queue_raw(&mut self, bytes: &[u8]) {
        self.write_buf.extend_from_slice(bytes);
    }

    /// Queues `packet` and flushes everything buffered.
    ///
    /// # Errors
    /// Encode or I/O errors.
    pub async fn send(&mut self, packet: &Packet) -> Result<(), ClientError> {
        self.queue(packet)?;
        self.flush().await
    }

    /// Sends raw bytes (after anything already buffered).
    ///
    /// # Errors
    /// I/O errors.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.queue_raw(bytes);
        self.flush().await
    }

    /// Writes out the write buffer. Cancel safe: bytes leave the buffer only once written.
    ///
    /// # Errors
    /// I/O errors (a zero-length write is reported as `WriteZero`).
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        flush_buf(&mut self.stream, &mut self.write_buf).await
    }

    /// Bytes queued but not yet written.
    #[must_use]
    pub fn pending_write(&self) -> usize {
        self.write_buf.len()
    }

    /// Receives the next packet. `Ok(None)` on a clean end of stream (the peer closed between
    /// packets). Cancel safe.
    ///
    /// # Errors
    /// Decode errors, I/O errors, and [`ClientError::Closed`] if the stream ends mid-packet.
    pub async fn recv(&mut self) -> Result<Option<Packet>, ClientError> {
        self.reader.recv(&mut self.stream, self.version).await
    }

    /// [`Connection::recv`] bounded by `timeout`.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] when nothing whole arrives in time (bytes already read are kept).
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Packet>, ClientError> {
        match tokio::time::timeout(timeout, self.recv()).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout),
        }
    }

    /// A packet already fully buffered, without reading the socket.
    ///
    /// # Errors
    /// Decode errors.
    pub fn try_recv_buffered(&mut self) -> Result<Option<Packet>, ClientError> {
        self.reader.decode(self.version)
    }

    /// Sends a normal DISCONNECT and shuts the write side down.
    ///
    /// # Errors
    /// Encode or I/O errors.
    pub async fn disconnect(&mut self) -> Result<(), ClientError> {
        self.disconnect_with(Disconnect::default()).await
    }

    /// Sends `disconnect` (reason and properties are dropped for v3) and shuts the write side down.
    ///
    /// # Errors
    /// Encode or I/O errors.
    pub async fn disconnect_with(&mut self, disconnect: Disconnect) -> Result<(), ClientError> {
        self.send(&Packet::Disconnect(disconnect)).await?;
        self.stream.shutdown().await?;
        Ok(())
    }

    /// Splits into a reading and a writing half that can live in different tasks.
    /// Anything already buffered on either side moves with its half.
    #[must_use]
    pub fn into_split(self) -> (PacketReader, PacketWriter) {
        let (r, w) = self.stream.into_split();
        (
            PacketReader {
                half: r,
                reader: self.reader,
                version: self.version,
            },
            PacketWriter {
                half: w,
                write_buf: self.write_buf,
                version: self.version,
            },
        )
    }
}

/// The reading half of a split [`Connection`].
#[derive(Debug)]
pub struct PacketReader {
    half: OwnedReadHalf,
    reader: PacketBuf,
    version: ProtocolVersion,
}

impl PacketReader {
    /// As [`Connection::recv`]. Cancel safe.
    ///
    /// # Errors
    /// As [`Connection::recv`].
    pub async fn recv(&mut self) -> Result<Option<Packet>, ClientError> {
        self.reader.recv(&mut self.half, self.version).await
    }

    /// As [`Connection::recv_timeout`].
    ///
    /// # Errors
    /// As [`Connection::recv_timeout`].
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Packet>, ClientError> {
        match tokio::time::timeout(timeout, self.recv()).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout),
        }
    }
}

/// The writing half of a split [`Connection`].
#[derive(Debug)]
pub struct PacketWriter {
    half: OwnedWriteHalf,
    write_buf: BytesMut,
    version: ProtocolVersion,
}

impl PacketWriter {
    /// As [`Connection::queue`].
    ///
    /// # Errors
    /// As [`Connection::queue`].
    pub fn queue(&mut self, packet: &Packet) -> Result<(), ClientError> {
        let before = self.write_buf.len();
        if let Err(e) = encode_packet(packet, self.version, &mut self.write_buf) {
            self.write_buf.truncate(before);
            return Err(e.into());
        }
        Ok(())
    }

    /// As [`Connection::send`].
    ///
    /// # Errors
    /// As [`Connection::send`].
    pub async fn send(&mut self, packet: &Packet) -> Result<(), ClientError> {
        self.queue(packet)?;
        self.flush().await
    }

    /// As [`Connection::send_raw`].
    ///
    /// # Errors
    /// I/O errors.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.write_buf.extend_from_slice(bytes);
        self.flush().await
    }

    /// As [`Connection::flush`].
    ///
    /// # Errors
    /// I/O errors.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        flush_buf(&mut self.half, &mut self.write_buf).await
    }

    /// Bytes queued but not yet written.
    #[must_use]
    pub fn pending_write(&self) -> usize {
        self.write_buf.len()
    }
}

/// Receive-side state shared by [`Connection`] and [`PacketReader`].
#[derive(Debug)]
struct PacketBuf {
    buf: BytesMut,
    max_packet_size: usize,
}

impl PacketBuf {
    fn new(max_packet_size: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(8 * 1024),
            max_packet_size,
        }
    }

    fn decode(&mut self, version: ProtocolVersion) -> Result<Option<Packet>, ClientError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        Ok(decode_packet(&mut self.buf, version, self.max_packet_size)?)
    }

    async fn recv<R: tokio::io::AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        version: ProtocolVersion,
    ) -> Result<Option<Packet>, ClientError> {
        loop {
            if let Some(p) = self.decode(version)? {
                return Ok(Some(p));
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(8 * 1024);
            }
            // read_buf is cancel safe: either it read bytes into the buffer or it did nothing.
            let n = io.read_buf(&mut self.buf).await?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ClientError::Closed)
                };
            }
        }
    }
}

async fn flush_buf<W: tokio::io::AsyncWrite + Unpin>(
    io: &mut W,
    buf: &mut BytesMut,
) -> Result<(), ClientError> {
    while !buf.is_empty() {
        let n = io.write(buf).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
        }
        buf.advance(n);
    }
    io.flush().await?;
    Ok(())
}

/// Hands out packet identifiers 1, 2, ... 65535, 1, ... skipping ids still in use.
#[derive(Debug, Clone)]
pub struct PacketIdAllocator {
    next: u16,
    in_use: std::collections::HashSet<u16>,
}

impl Default for PacketIdAllocator {
    fn default() -> Self {
        Self::new()
    }
}

impl PacketIdAllocator {
    /// Starts at 1.
    #[must_use]
    pub fn new() -> Self {
        Self {
            next: 1,
            in_use: std::collections::HashSet::new(),
        }
    }

    /// The next free id, marked in use; `None` when all 65535 are in use.
    pub fn allocate(&mut self) -> Option<PacketId> {
        if self.in_use.len() >= usize::from(u16::MAX) {
            return None;
        }
        loop {
            let id = self.next;
            self.next = if self.next == u16::MAX {
                1
            } else {
                self.next + 1
            };
            if self.in_use.insert(id) {
                return NonZeroU16::new(id);
            }
        }
    }

    /// Returns `id` to the pool; false if it was not in use.
    pub fn release(&mut self, id: PacketId) -> bool {
        self.in_use.remove(&id.get())
    }

    /// Ids currently in use.
    #[must_use]
    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }
}

/// The upper-case name of a packet's type, as mosquitto prints it ("PUBLISH", "PUBACK", ...).
#[must_use]
pub fn packet_name(packet: &Packet) -> &'static str {
    match packet {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnectAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PublishAck(_) => "PUBACK",
        Packet::PublishReceived(_) => "PUBREC",
        Packet::PublishRelease(_) => "PUBREL",
        Packet::PublishComplete(_) => "PUBCOMP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubscribeAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubscribeAck(_) => "UNSUBACK",
        Packet::PingRequest => "PINGREQ",
        Packet::PingResponse => "PINGRESP",
        Packet::Disconnect(_) => "DISCONNECT",
        Packet::Auth(_) => "AUTH",
    }
}

#[cfg(test)]
mod tests;
