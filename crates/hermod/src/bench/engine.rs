//! The per-connection driver: one task per connection reads, acknowledges, publishes and writes.
//!
//! The loop never builds a `Packet`: incoming bytes are scanned in place ([`wire::scan`]), PUBLISH
//! packets are written from a template into a reused buffer ([`wire::PublishTemplate`]), and up to
//! [`BATCH`] packets (plus any acks due) go out in one `write`. Counters are shared atomics
//! updated once per batch, not per message.
//!
//! Flow control, in the order it is applied to a publisher:
//! - the rate schedule (`--rate`): message `k` of a publisher is due at `offset + k * interval`,
//!   and its payload carries that *intended* time, so a stalled broker shows up as latency
//!   (no coordinated omission);
//! - the in-flight limit at QoS > 0: the broker's receive maximum (v5) and 65,535 packet ids;
//! - the window (`--window`): a semaphore of `window × fanout` delivery units shared by all
//!   publishers; a message takes `fanout` units, each delivery gives one back;
//! - the socket: at most [`MAX_PENDING`] bytes wait in the write buffer.
//!
//! The stream is a [`Transport`]: plain TCP, or TLS / WebSocket layers polled the same way.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use tokio::io::Interest;
use tokio::sync::{Semaphore, watch};

use super::transport::Transport;
use super::wire::{self, PublishTemplate, Scanned};

/// Messages encoded per loop turn at most.
pub(crate) const BATCH: usize = 64;
/// Bytes of unwritten data above which a publisher stops encoding.
const MAX_PENDING: usize = 128 * 1024;

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// Connecting and subscribing.
    Setup,
    /// Publishers publish.
    Run,
    /// Publishers stop; everyone keeps receiving and acknowledging.
    Drain,
    /// Every connection sends DISCONNECT and ends.
    Stop,
}

/// Counters shared by every connection, updated once per batch.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
    /// PUBACKs (QoS 1) and PUBCOMPs (QoS 2) received by publishers.
    pub(crate) acked: AtomicU64,
    /// Acks with a failure reason code (v5).
    pub(crate) nacked: AtomicU64,
    /// Connections currently established.
    pub(crate) connected: AtomicU64,
    pub(crate) connect_failed: AtomicU64,
    /// Connections lost or broken while running.
    pub(crate) errors: AtomicU64,
    /// Delivery units written off by the stall detector (losses at the tail of a stream).
    pub(crate) written_off: AtomicU64,
    /// Messages a subscriber saw skipped in a publisher's sequence (dropped by the broker).
    pub(crate) gaps: AtomicU64,
    /// Messages that arrived with an older sequence number than one already seen.
    pub(crate) reordered: AtomicU64,
}

/// What every connection task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Payload timestamps are nanoseconds since this instant.
    pub(crate) base: Instant,
    /// When publishing started, in nanoseconds since `base` (set before the phase turns to Run).
    pub(crate) run_start_ns: AtomicU64,
    pub(crate) counters: Counters,
    /// The window, in delivery units (`None`: no cap).
    pub(crate) window: Option<Semaphore>,
    /// Deliveries expected per published message.
    pub(crate) fanout: u32,
}

impl Shared {
    pub(crate) fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// What one connection does besides staying connected.
#[derive(Debug)]
pub(crate) struct Role {
    pub(crate) publish: Option<PublishRole>,
    /// Records latency of what it receives.
    pub(crate) subscriber: bool,
    /// Checks each publisher's sequence numbers (not for shared subscriptions, where every
    /// member sees only part of each sequence): a gap gives its window credits back at once.
    pub(crate) track_gaps: bool,
}

/// A publisher's topic and schedule.
#[derive(Debug)]
pub(crate) struct PublishRole {
    pub(crate) template: PublishTemplate,
    pub(crate) qos: u8,
    /// `Some((interval, offset))` in ns under `--rate`.
    pub(crate) schedule: Option<(f64, f64)>,
}

/// What a connection hands back when it ends.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) latency: Option<Histogram<u64>>,
    pub(crate) error: Option<String>,
}

/// An established connection: the stream, bytes read past the handshake, the broker's receive maximum.
#[derive(Debug)]
pub(crate) struct Established {
    pub(crate) stream: Transport,
    pub(crate) leftover: BytesMut,
    pub(crate) receive_maximum: u16,
}

/// A fresh latency histogram: 1 µs to 60 s in nanoseconds, 3 significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    #[allow(clippy::unwrap_used)] // constant, valid bounds
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).unwrap()
}

/// Packet ids in use by one publisher: a 65,536-bit map.
#[derive(Debug)]
struct IdMap {
    bits: Vec<u64>,
    next: u16,
    in_use: usize,
    cap: usize,
}

impl IdMap {
    fn new(cap: u16) -> Self {
        Self {
            bits: vec![0; 1024],
            next: 1,
            in_use: 0,
            cap: usize::from(cap.max(1)),
        }
    }
    fn free(&self) -> usize {
        self.cap.saturating_sub(self.in_use)
    }
    /// Caller checks `free() > 0` first.
    fn alloc(&mut self) -> u16 {
        loop {
            let id = self.next;
            self.next = if id == u16::MAX { 1 } else { id + 1 };
            let (w, b) = (usize::from(id) / 64, id % 64);
            if self.bits[w] & (1 << b) == 0 {
                self.bits[w] |= 1 << b;
                self.in_use += 1;
                return id;
            }
        }
    }
    fn release(&mut self, id: u16) -> bool {
        let (w, b) = (usize::from(id) / 64, id % 64);
        if self.bits[w] & (1 << b) != 0 {
            self.bits[w] &= !(1 << b);
            self.in_use -= 1;
            true
        } else {
            false
        }
    }
}

/// Runs one connection until the phase turns to Stop or the connection breaks.
pub(crate) async fn drive(
    conn: Established,
    v5: bool,
    role: Role,
    shared: Arc<Shared>,
    mut phase_rx: watch::Receiver<Phase>,
    keep_alive: Duration,
) -> Outcome {
    let mut outcome = Outcome::default();
    let result = drive_inner(
        conn,
        v5,
        &role,
        &shared,
        &mut phase_rx,
        keep_alive,
        &mut outcome,
    )
    .await;
    if let Err(e) = result
        && *phase_rx.borrow() != Phase::Stop
    {
        shared.counters.errors.fetch_add(1, Ordering::Relaxed);
        outcome.error = Some(e.to_string());
    }
    shared.counters.connected.fetch_sub(1, Ordering::Relaxed);
    outcome
}

#[allow(clippy::too_many_lines)]
async fn drive_inner(
    conn: Established,
    v5: bool,
    role: &Role,
    shared: &Shared,
    phase_rx: &mut watch::Receiver<Phase>,
    keep_alive: Duration,
    outcome: &mut Outcome,
) -> io::Result<()> {
    let Established {
        mut stream,
        leftover,
        receive_maximum,
    } = conn;
    let mut rbuf = vec![
        0u8;
        if role.subscriber || role.publish.is_some() {
            64 * 1024
        } else {
            256
        }
    ];
    let mut rlen = leftover.len().min(rbuf.len());
    rbuf[..rlen].copy_from_slice(&leftover[..rlen]);
    let mut wbuf: Vec<u8> = Vec::with_capacity(if role.publish.is_some() {
        MAX_PENDING + 8 * 1024
    } else {
        256
    });
    let mut wpos = 0usize;
    let mut ids = role
        .publish
        .as_ref()
        .filter(|p| p.qos > 0)
        .map(|_| IdMap::new(receive_maximum));
    if role.subscriber {
        outcome.latency = Some(new_histogram());
    }
    // Next sequence number expected from each publisher.
    let mut next_seq: Option<Vec<u32>> = role.track_gaps.then(Vec::new);
    let fanout = shared.fanout;
    let mut phase = *phase_rx.borrow();
    // Window credits (messages) taken but not yet used.
    let mut reserved: usize = 0;
    // Messages published by this connection (the rate schedule's index).
    let mut seq: u64 = 0;
    let mut turns: u32 = 0;
    let ping_every = if keep_alive.is_zero() {
        Duration::from_secs(3600)
    } else {
        keep_alive.mul_f64(0.75)
    };
    let ping = tokio::time::sleep(ping_every);
    tokio::pin!(ping);

    loop {
        // 1. Read what is there and act on it.
        loop {
            if rlen == rbuf.len() {
                let n = rbuf.len() * 2;
                rbuf.resize(n, 0);
            }
            let n = match stream.try_read(&mut rbuf[rlen..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed by the broker",
                    ));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            };
            let space = rbuf.len() - rlen;
            rlen += n;
            let consumed = process(
                &rbuf[..rlen],
                v5,
                shared,
                &mut ids,
                &mut outcome.latency,
                &mut next_seq,
                &mut wbuf,
            )?;
            rbuf.copy_within(consumed..rlen, 0);
            rlen -= consumed;
            if n < space {
                break;
            }
        }

        // 2. Publish what flow control allows.
        let mut blocked_on_window = false;
        let mut next_due: Option<tokio::time::Instant> = None;
        let mut more = false;
        let mut window_limited = false;
        if let (Some(p), Phase::Run) = (&role.publish, phase) {
            let mut n = if wbuf.len() - wpos > MAX_PENDING {
                0
            } else {
                BATCH
            };
            let run_start = shared.run_start_ns.load(Ordering::Relaxed);
            let now_ns = shared.now_ns();
            if let Some((interval, offset)) = p.schedule {
                let elapsed = now_ns.saturating_sub(run_start) as f64;
                let due_total = if elapsed < offset {
                    0
                } else {
                    ((elapsed - offset) / interval) as u64 + 1
                };
                let due = due_total.saturating_sub(seq) as usize;
                if due < n {
                    n = due;
                    let next_ns = run_start as f64 + offset + (seq + due as u64) as f64 * interval;
                    let wait = Duration::from_nanos((next_ns as u64).saturating_sub(now_ns));
                    next_due = Some(tokio::time::Instant::now() + wait);
                }
            }
            if let Some(ids) = &ids {
                n = n.min(ids.free());
            }
            if let Some(sem) = &shared.window
                && n > reserved
            {
                let want = n - reserved;
                let avail = sem.available_permits() / fanout as usize;
                let take = want.min(avail);
                if take > 0
                    && let Ok(permit) = sem.try_acquire_many((take as u32).saturating_mul(fanout))
                {
                    permit.forget();
                    reserved += take;
                }
                if reserved < n {
                    // Send what we have and come back: the next turn either finds more
                    // credits or waits for them.
                    n = reserved;
                    blocked_on_window = n == 0;
                    window_limited = true;
                }
            } else if shared.window.is_none() {
                reserved = n;
            }
            if n > 0 {
                wbuf.reserve(n * p.template.len);
                for _ in 0..n {
                    let pkid = ids.as_mut().map_or(0, IdMap::alloc);
                    let stamp = match p.schedule {
                        Some((interval, offset)) => {
                            (run_start as f64 + offset + seq as f64 * interval) as u64
                        }
                        None => now_ns,
                    };
                    p.template.write(&mut wbuf, pkid, stamp, seq as u32);
                    seq += 1;
                }
                reserved -= n;
                shared.counters.sent.fetch_add(n as u64, Ordering::Relaxed);
                more = n == BATCH || window_limited;
            }
        }

        // 3. Write what is buffered (acks and publishes together).
        while wpos < wbuf.len() {
            match stream.try_write(&wbuf[wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => wpos += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        stream.try_flush()?;
        if wpos == wbuf.len() {
            wbuf.clear();
            wpos = 0;
        } else if wpos > MAX_PENDING {
            wbuf.drain(..wpos);
            wpos = 0;
        }

        // 4. Wait for something to do.
        if more && wpos == 0 && !stream.wants_write() {
            turns = turns.wrapping_add(1);
            if turns.is_multiple_of(8) {
                tokio::task::yield_now().await;
            }
            if phase_rx.has_changed().unwrap_or(true) {
                phase = *phase_rx.borrow_and_update();
                if phase == Phase::Stop {
                    break;
                }
            }
            continue;
        }
        let interest = if wpos < wbuf.len() || stream.wants_write() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let window_wait = async {
            match &shared.window {
                Some(sem) if blocked_on_window => {
                    sem.acquire_many(fanout).await.ok().map(|p| p.forget())
                }
                _ => std::future::pending().await,
            }
        };
        let rate_wait = async {
            match next_due {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            r = phase_rx.changed() => {
                phase = if r.is_ok() { *phase_rx.borrow_and_update() } else { Phase::Stop };
                if phase == Phase::Stop {
                    break;
                }
            }
            r = stream.ready(interest) => { r?; }
            Some(()) = window_wait => { reserved += 1; }
            () = rate_wait => {}
            () = &mut ping => {
                wbuf.extend_from_slice(&[0xC0, 0x00]);
                ping.as_mut().reset(tokio::time::Instant::now() + ping_every);
            }
        }
    }
    // Best effort: say goodbye.
    let _ = stream.try_write(&[0xE0, 0x00]);
    let _ = stream.try_flush();
    Ok(())
}

/// Handles the whole packets at the front of `buf`; returns the bytes consumed.
fn process(
    buf: &[u8],
    v5: bool,
    shared: &Shared,
    ids: &mut Option<IdMap>,
    latency: &mut Option<Histogram<u64>>,
    next_seq: &mut Option<Vec<u32>>,
    wbuf: &mut Vec<u8>,
) -> io::Result<usize> {
    let mut gaps = 0u64;
    let mut reordered = 0u64;
    let mut pos = 0;
    let mut received = 0u64;
    let mut acked = 0u64;
    let mut nacked = 0u64;
    let mut now_ns = None;
    while let Some((packet, len)) =
        wire::scan(&buf[pos..], v5).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
    {
        pos += len;
        match packet {
            Scanned::Publish {
                qos,
                pkid,
                stamp,
                origin,
            } => {
                received += 1;
                if let (Some(next), Some((o, seq))) = (next_seq.as_mut(), origin)
                    && o < 1 << 20
                {
                    let o = o as usize;
                    if next.len() <= o {
                        next.resize(o + 1, 0);
                    }
                    if seq >= next[o] {
                        gaps += u64::from(seq - next[o]);
                        next[o] = seq.wrapping_add(1);
                    } else {
                        reordered += 1;
                    }
                }
                if let (Some(h), Some(stamp)) = (latency.as_mut(), stamp) {
                    let now = *now_ns.get_or_insert_with(|| shared.now_ns());
                    h.saturating_record(now.saturating_sub(stamp));
                }
                match qos {
                    1 => wire::put_ack(wbuf, 0x40, pkid),
                    2 => wire::put_ack(wbuf, 0x50, pkid),
                    _ => {}
                }
            }
            Scanned::Ack { kind, pkid, reason } => match kind {
                // PUBACK / PUBCOMP: the id is free again.
                4 | 7 => {
                    if let Some(ids) = ids.as_mut()
                        && ids.release(pkid)
                    {
                        if reason < 0x80 {
                            acked += 1;
                        } else {
                            nacked += 1;
                        }
                    }
                }
                // PUBREC: release it unless refused.
                5 => {
                    if reason < 0x80 {
                        wire::put_ack(wbuf, 0x62, pkid);
                    } else if let Some(ids) = ids.as_mut() {
                        ids.release(pkid);
                        nacked += 1;
                    }
                }
                // PUBREL (we are a QoS 2 subscriber): complete.
                _ => wire::put_ack(wbuf, 0x70, pkid),
            },
            Scanned::Other { kind: 14 } => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "DISCONNECT from the broker",
                ));
            }
            Scanned::Other { .. } => {}
        }
    }
    let c = &shared.counters;
    if received > 0 {
        c.received.fetch_add(received, Ordering::Relaxed);
        if gaps > 0 {
            c.gaps.fetch_add(gaps, Ordering::Relaxed);
        }
        if reordered > 0 {
            c.reordered.fetch_add(reordered, Ordering::Relaxed);
        }
        if let Some(sem) = &shared.window {
            sem.add_permits((received + gaps) as usize);
        }
    }
    if acked > 0 {
        c.acked.fetch_add(acked, Ordering::Relaxed);
    }
    if nacked > 0 {
        c.nacked.fetch_add(nacked, Ordering::Relaxed);
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_map_wraps_and_skips_ids_in_use() {
        let mut m = IdMap::new(3);
        assert_eq!((m.alloc(), m.alloc(), m.alloc()), (1, 2, 3));
        assert_eq!(m.free(), 0);
        assert!(m.release(2));
        assert!(!m.release(2));
        assert_eq!(m.alloc(), 4);
        let mut m = IdMap::new(u16::MAX);
        for _ in 0..65_534 {
            m.alloc();
        }
        assert!(m.release(7));
        assert_eq!(m.alloc(), 65_535);
        assert_eq!(m.alloc(), 7);
        assert_eq!(m.free(), 0);
    }
}
