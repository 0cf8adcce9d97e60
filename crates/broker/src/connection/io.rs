//! Socket I/O of a connection: read sizing, encoding into the write buffer, flushing, and the
//! refusing CONNACK.

use bytes::BytesMut;
use hermod_proto::{ConnectAck, Packet, ProtocolVersion, ReasonCode, encode_packet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tracing::warn;

use std::cell::RefCell;
use std::future::Future;
use std::task::{Context, Poll};

use super::{Connection, End, WRITE_HIGH_WATER, close};

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Connection<S> {
    /// Makes room for the next read. Idle connections are most of a broker's connections, so an
    /// empty read buffer that grew for a burst is given back, and reads start small (256 bytes)
    /// and grow with the traffic (the spare room doubles while reads fill it, up to 64 KiB). A
    /// buffer already given back (see [`read_releasing`]) stays so: the next read goes through
    /// the worker's scratch buffer.
    pub(super) fn prepare_read(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > 8 * 1024 && self.last_read < 1024 {
            self.rbuf = BytesMut::new();
            self.read_size = 256;
        }
        if self.rbuf.capacity() > 0 {
            self.rbuf.reserve(self.read_size);
        }
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
            let mut cx = Context::from_waker(std::task::Waker::noop());
            match poll_fill(&mut self.stream, &mut self.rbuf, self.read_size, &mut cx) {
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
                () = self.kick.cancelled() => return Err(super::kicked(&self.shared.shutdown)),
            },
        };
        self.wbuf.clear();
        if self.wbuf.capacity() > 4 * WRITE_HIGH_WATER {
            self.wbuf = BytesMut::new();
        }
        r.map_err(|e| End::Lost(Some(e)))
    }
}

thread_local! {
    /// Where a read lands when the connection holds no read buffer (one per worker thread, as
    /// large as the largest read asked of it, at most 64 KiB): what arrives is copied into the
    /// connection's buffer, so a connection waiting for its next packet holds none.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A write buffer at most this large is given back while the connection waits.
const KEEP_WBUF_ABOVE: usize = 4096;

/// The connection loop's read: resolves with the bytes read into `rbuf` (0 at end of stream).
///
/// An idle connection holds no buffers while it waits: when the read would wait with nothing
/// buffered, `rbuf` and `wbuf` (empty after every flush) are given back, and the read that
/// wakes it goes through the worker's scratch buffer and is copied into a new `rbuf`. A busy
/// connection keeps its buffer and reads straight into it (no copy) until its socket runs dry;
/// a partial packet is never copied. Works for any transport (TCP, TLS, WebSocket, in-process).
pub(super) fn read_releasing<'a, S: AsyncRead + Unpin + ?Sized>(
    stream: &'a mut S,
    rbuf: &'a mut BytesMut,
    wbuf: &'a mut BytesMut,
    read_size: usize,
) -> impl Future<Output = std::io::Result<usize>> + 'a {
    std::future::poll_fn(move |cx| {
        let r = poll_fill(stream, rbuf, read_size, cx);
        // A large write buffer is a busy connection's (a fan-out subscriber's, say), which
        // would only grow it again, doubling by doubling, at its next turn: it keeps it.
        if r.is_pending() && wbuf.is_empty() && (1..=KEEP_WBUF_ABOVE).contains(&wbuf.capacity()) {
            *wbuf = BytesMut::new();
        }
        r
    })
}

/// One read into `rbuf`: through the scratch buffer when `rbuf` holds no allocation, straight
/// into it otherwise; an empty `rbuf` is given back when the read would wait.
fn poll_fill<S: AsyncRead + Unpin + ?Sized>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    read_size: usize,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<usize>> {
    if rbuf.capacity() == 0 {
        let scratch = SCRATCH.with(|scratch| {
            // Never borrowed across an await, nor by the stream's own poll_read: the fallback
            // below only guards against a transport that would read through a connection.
            let Ok(mut scratch) = scratch.try_borrow_mut() else {
                return None;
            };
            if scratch.len() < read_size {
                scratch.resize(read_size, 0);
            }
            let mut buf = ReadBuf::new(&mut scratch[..read_size]);
            Some(
                match std::pin::Pin::new(&mut *stream).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) => {
                        let n = buf.filled().len();
                        if n > 0 {
                            rbuf.reserve(read_size.max(n));
                            rbuf.extend_from_slice(buf.filled());
                        }
                        Poll::Ready(Ok(n))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                },
            )
        });
        if let Some(r) = scratch {
            return r;
        }
        rbuf.reserve(read_size);
    }
    let r = std::pin::pin!(stream.read_buf(rbuf)).poll(cx);
    if r.is_pending() && rbuf.is_empty() {
        *rbuf = BytesMut::new();
    }
    r
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
