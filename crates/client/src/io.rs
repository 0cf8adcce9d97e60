//! The buffers under a connection: cancel-safe decoding of reads, encoding and draining of writes.

use bytes::{Buf, BytesMut};
use hermod_proto::{Packet, ProtocolVersion, decode_packet, encode_packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ClientError;

/// Receive-side state shared by [`Connection`](crate::Connection) and
/// [`PacketReader`](crate::PacketReader).
#[derive(Debug)]
pub(crate) struct PacketBuf {
    buf: BytesMut,
    pub(crate) max_packet_size: usize,
}

impl PacketBuf {
    pub(crate) fn new(max_packet_size: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(8 * 1024),
            max_packet_size,
        }
    }

    pub(crate) fn decode(
        &mut self,
        version: ProtocolVersion,
    ) -> Result<Option<Packet>, ClientError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        Ok(decode_packet(&mut self.buf, version, self.max_packet_size)?)
    }

    pub(crate) async fn recv<R: tokio::io::AsyncRead + Unpin>(
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

/// Encodes `packet` onto the end of `buf`; on an encode error `buf` is left as it was.
pub(crate) fn encode_into(
    buf: &mut BytesMut,
    packet: &Packet,
    version: ProtocolVersion,
) -> Result<(), ClientError> {
    let before = buf.len();
    if let Err(e) = encode_packet(packet, version, buf) {
        buf.truncate(before);
        return Err(e.into());
    }
    Ok(())
}

/// Writes all of `buf` to `io`, then flushes. Cancel safe: bytes leave `buf` only once written.
pub(crate) async fn flush_buf<W: tokio::io::AsyncWrite + Unpin>(
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
