//! [`Connection`] and its split halves: whole packets in and out over one TCP stream.

use std::time::Duration;

use bytes::BytesMut;
use hermod_proto::{Disconnect, Packet, ProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, ToSocketAddrs};

use crate::io::{PacketBuf, encode_into, flush_buf};
use crate::{ClientError, DEFAULT_MAX_PACKET_SIZE};

/// One MQTT connection: packets in, packets out. Over TCP by default; any byte stream (TLS, an
/// in-process pipe into a broker) with [`Connection::over`].
#[derive(Debug)]
pub struct Connection<S = TcpStream> {
    stream: S,
    reader: PacketBuf,
    write_buf: BytesMut,
    version: ProtocolVersion,
}

impl Connection<TcpStream> {
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
        Self::over(stream, version)
    }

    /// The underlying stream (for socket options, addresses).
    #[must_use]
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Splits into a reading and a writing half that can live in different tasks.
    /// Anything already buffered on either side moves with its half.
    #[must_use]
    pub fn into_split(self) -> (PacketReader, PacketWriter) {
        let (r, w) = self.stream.into_split();
        Self::split_parts(self.reader, self.write_buf, self.version, r, w)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Wraps any connected byte stream (TLS, an in-process pipe) that will speak `version`.
    #[must_use]
    pub fn over(stream: S, version: ProtocolVersion) -> Self {
        Self {
            stream,
            reader: PacketBuf::new(DEFAULT_MAX_PACKET_SIZE),
            write_buf: BytesMut::with_capacity(8 * 1024),
            version,
        }
    }

    /// The underlying stream.
    #[must_use]
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// Splits a connection over any stream into a reading and a writing half
    /// ([`tokio::io::split`]; over TCP, [`Connection::into_split`] avoids its lock).
    #[must_use]
    pub fn split(self) -> (PacketReader<ReadHalf<S>>, PacketWriter<WriteHalf<S>>) {
        let (r, w) = tokio::io::split(self.stream);
        Self::split_parts(self.reader, self.write_buf, self.version, r, w)
    }

    fn split_parts<R, W>(
        reader: PacketBuf,
        write_buf: BytesMut,
        version: ProtocolVersion,
        r: R,
        w: W,
    ) -> (PacketReader<R>, PacketWriter<W>) {
        (
            PacketReader {
                half: r,
                reader,
                version,
            },
            PacketWriter {
                half: w,
                write_buf,
                version,
            },
        )
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

    /// Encodes `packet` into the write buffer without sending it. Call [`Connection::flush`]
    /// (or `send`) to put the buffered packets on the wire, several per syscall.
    ///
    /// # Errors
    /// [`ClientError::Encode`]; the buffer is left unchanged then.
    pub fn queue(&mut self, packet: &Packet) -> Result<(), ClientError> {
        encode_into(&mut self.write_buf, packet, self.version)
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
}

/// The reading half of a split [`Connection`].
#[derive(Debug)]
pub struct PacketReader<R = OwnedReadHalf> {
    half: R,
    reader: PacketBuf,
    version: ProtocolVersion,
}

impl<R: AsyncRead + Unpin> PacketReader<R> {
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
pub struct PacketWriter<W = OwnedWriteHalf> {
    half: W,
    write_buf: BytesMut,
    version: ProtocolVersion,
}

impl<W: AsyncWrite + Unpin> PacketWriter<W> {
    /// As [`Connection::queue`].
    ///
    /// # Errors
    /// As [`Connection::queue`].
    pub fn queue(&mut self, packet: &Packet) -> Result<(), ClientError> {
        encode_into(&mut self.write_buf, packet, self.version)
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
