//! Socket I/O of a connection: read sizing, encoding into the write buffer, flushing, and the
//! refusing CONNACK.

use bytes::BytesMut;
use hermod_proto::{ConnectAck, Packet, ProtocolVersion, ReasonCode, encode_packet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::warn;

use std::future::Future;
use std::task::Poll;

use super::{Connection, End, WRITE_HIGH_WATER, close};

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Connection<S> {
    /// Makes room for the next read. Idle connections are most of a broker's connections, so an
    /// empty read buffer that grew for a burst is given back, and reads start small (256 bytes)
    /// and grow with the traffic (the spare room doubles while reads fill it, up to 64 KiB).
    pub(super) fn prepare_read(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > 8 * 1024 && self.last_read < 1024 {
            self.rbuf = BytesMut::new();
            self.read_size = 256;
        }
        self.rbuf.reserve(self.read_size);
    }

    /// Records how much a read returned, to size the next one.
    pub(super) fn note_read(&mut self, n: usize) {
        self.last_read = n;
        self.read_at = std::time::Instant::now();
        self.stats.bytes_received(n);
        if n >= self.read_size {
            self.read_size = (self.read_size * 2).min(64 * 1024);
        } else if n < self.read_size / 4 {
            self.read_size = (self.read_size / 2).max(256);
        }
    }

    /// Reads and handles what the socket has ready without waiting (a few times at most).
    pub(super) fn drain_readable(&mut self) -> Result<(), End> {
        for _ in 0..8 {
            if !self.busy.is_empty() || !self.pending_commits.is_empty() || self.parked.is_some() {
                return Ok(());
            }
            self.prepare_read();
            let (stream, rbuf) = (&mut self.stream, &mut self.rbuf);
            let mut read = std::pin::pin!(stream.read_buf(rbuf));
            let waker = std::task::Waker::noop();
            match read
                .as_mut()
                .poll(&mut std::task::Context::from_waker(waker))
            {
                Poll::Ready(Ok(0)) => return Err(End::Lost(None)),
                Poll::Ready(Ok(n)) => {
                    self.note_read(n);
                    self.handle_input()?;
                }
                Poll::Ready(Err(e)) => return Err(End::Lost(Some(e))),
                Poll::Pending => return Ok(()),
            }
        }
        Ok(())
    }

    pub(super) fn write(&mut self, packet: &Packet) {
        self.stats.packet_sent(crate::metrics::packet_type(packet));
        if let Err(e) = encode_packet(packet, self.neg.version, &mut self.wbuf) {
            warn!(client_id = %self.client_id, error = %e, "packet could not be encoded; skipped");
        }
    }

    pub(super) async fn flush(&mut self) -> Result<(), End> {
        // The counters first: they are current before the client sees the answers.
        self.stats.bytes_sent(self.wbuf.len());
        self.shared.metrics.flush(&mut self.stats);
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let (stream, wbuf) = (&mut self.stream, &self.wbuf);
        // flush: TLS and WebSocket streams buffer until flushed (a WebSocket message is sent on flush).
        let mut write = std::pin::pin!(async move {
            stream.write_all(wbuf).await?;
            stream.flush().await
        });
        // Fast path: the socket usually takes it all at once; only a slow reader needs the
        // select (so that shutdown and takeover still get through while the write waits).
        let r = match std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
            Poll::Ready(r) => r,
            Poll::Pending => tokio::select! {
                r = &mut write => r,
                () = self.shared.shutdown.cancelled() => return Err(End::Shutdown),
                () = self.kick.cancelled() => return Err(End::TakenOver),
            },
        };
        self.wbuf.clear();
        if self.wbuf.capacity() > 4 * WRITE_HIGH_WATER {
            self.wbuf = BytesMut::new();
        }
        r.map_err(|e| End::Lost(Some(e)))
    }
}

/// Sends a refusing CONNACK and closes.
pub(super) async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    version: ProtocolVersion,
    reason: ReasonCode,
) {
    let mut w = BytesMut::new();
    let ack = ConnectAck {
        reason,
        ..ConnectAck::default()
    };
    let _ = encode_packet(&Packet::ConnectAck(ack), version, &mut w);
    let _ = stream.write_all(&w).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
    close::linger(stream).await;
}
