//! Wire helpers of the load generator.
//!
//! The handshakes (CONNECT/CONNACK, SUBSCRIBE/SUBACK) go through `hermod-client`'s
//! [`ConnectOptions`] and `hermod-proto`'s codec: they happen once per connection. The hot path
//! does not build [`Packet`] values: PUBLISH packets are written from a per-connection template
//! into a reused buffer, and incoming packets are scanned in place (fixed header, packet id, the
//! 8-byte timestamp at the start of the payload) without allocating.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::BytesMut;
use hermod_client::ConnectOptions;
use hermod_proto::{
    ConnectAck, Packet, ProtocolVersion, QoS, Subscribe, SubscribeProperties, SubscriptionOptions,
    decode_packet, encode_packet,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Largest packet accepted during the handshakes.
const MAX_HANDSHAKE_PACKET: usize = 1 << 20;

/// Opens a TCP connection to `addr`, from `bind` (port chosen by the kernel) when given.
pub(crate) async fn open(addr: SocketAddr, bind: Option<IpAddr>) -> io::Result<TcpStream> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = bind {
        // Without IP_BIND_ADDRESS_NO_PORT, bind() picks the port alone, scanning for one that is
        // free for every destination: slow with thousands in use or in TIME_WAIT, and capped at
        // the ephemeral range per source address.
        #[cfg(target_os = "linux")]
        if ip.is_ipv4() {
            bind_address_no_port(&sock);
        }
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = sock.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Lets connect() choose the source port for the whole 4-tuple (Linux 4.2+); best effort.
#[cfg(target_os = "linux")]
fn bind_address_no_port(sock: &TcpSocket) {
    use std::os::fd::AsRawFd;
    unsafe extern "C" {
        fn setsockopt(
            fd: i32,
            level: i32,
            name: i32,
            value: *const std::ffi::c_void,
            len: u32,
        ) -> i32;
    }
    const SOL_IP: i32 = 0;
    const IP_BIND_ADDRESS_NO_PORT: i32 = 24;
    let one: i32 = 1;
    // SAFETY: a valid open socket, and a pointer to a live i32 with its size.
    let _ = unsafe {
        setsockopt(
            sock.as_raw_fd(),
            SOL_IP,
            IP_BIND_ADDRESS_NO_PORT,
            (&raw const one).cast(),
            4,
        )
    };
}

/// Sends CONNECT and waits for a successful CONNACK. Bytes that arrive after the CONNACK stay in `rbuf`.
pub(crate) async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    opts: &ConnectOptions,
    rbuf: &mut BytesMut,
    timeout: Duration,
) -> anyhow::Result<ConnectAck> {
    let mut w = BytesMut::with_capacity(128);
    encode_packet(&opts.connect_packet(), opts.version, &mut w).context("encoding CONNECT")?;
    stream.write_all(&w).await.context("sending CONNECT")?;
    stream.flush().await.context("sending CONNECT")?;
    match read_packet(stream, rbuf, opts.version, timeout)
        .await
        .context("waiting for CONNACK")?
    {
        Packet::ConnectAck(ack) if ack.reason.is_error() => {
            bail!("connection refused: reason code {}", ack.reason)
        }
        Packet::ConnectAck(ack) => Ok(ack),
        other => bail!(
            "expected CONNACK, received {}",
            hermod_client::packet_name(&other)
        ),
    }
}

/// Subscribes to `filter` and waits for the SUBACK (packets that arrive before it are dropped).
pub(crate) async fn subscribe<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    version: ProtocolVersion,
    filter: &str,
    qos: QoS,
    timeout: Duration,
) -> anyhow::Result<()> {
    let sub = Packet::Subscribe(Subscribe {
        packet_id: std::num::NonZeroU16::MIN,
        filters: vec![(
            filter.to_owned(),
            SubscriptionOptions {
                qos,
                ..Default::default()
            },
        )],
        properties: SubscribeProperties::default(),
    });
    let mut w = BytesMut::with_capacity(64);
    encode_packet(&sub, version, &mut w).context("encoding SUBSCRIBE")?;
    stream.write_all(&w).await.context("sending SUBSCRIBE")?;
    stream.flush().await.context("sending SUBSCRIBE")?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match read_packet(stream, rbuf, version, left)
            .await
            .context("waiting for SUBACK")?
        {
            Packet::SubscribeAck(ack) => {
                return match ack.reasons.first() {
                    Some(r) if r.0 < 0x80 => Ok(()),
                    Some(r) => bail!("subscription to {filter:?} refused: reason code {r}"),
                    None => bail!("empty SUBACK"),
                };
            }
            _ => continue,
        }
    }
}

async fn read_packet<S: AsyncRead + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    version: ProtocolVersion,
    timeout: Duration,
) -> anyhow::Result<Packet> {
    let fut = async {
        loop {
            if !rbuf.is_empty()
                && let Some(p) = decode_packet(rbuf, version, MAX_HANDSHAKE_PACKET)?
            {
                return Ok(p);
            }
            rbuf.reserve(4096);
            if stream.read_buf(rbuf).await? == 0 {
                bail!("connection closed by the broker");
            }
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => bail!("timed out after {timeout:?}"),
    }
}

/// The bytes of one PUBLISH, minus packet id and payload, for a fixed topic, QoS and size.
#[derive(Debug, Clone)]
pub(crate) struct PublishTemplate {
    /// Fixed header, remaining length, topic.
    head: Vec<u8>,
    qos: u8,
    v5: bool,
    /// Publisher index written after the timestamp (`None`: payload too small for it).
    origin: Option<u32>,
    /// Payload bytes after the timestamp (and origin and sequence number).
    filler: Vec<u8>,
    /// Whole packet size.
    pub(crate) len: usize,
}

/// Size of the timestamp at the start of every payload.
pub(crate) const STAMP: usize = 8;
/// Timestamp, publisher index (u32) and sequence number (u32), when the payload has room.
pub(crate) const STAMP_SEQ: usize = 16;

impl PublishTemplate {
    /// A template for publisher number `origin`.
    pub(crate) fn new(
        topic: &str,
        qos: u8,
        version: ProtocolVersion,
        payload_size: usize,
        origin: u32,
    ) -> Self {
        let v5 = version.is_v5();
        let payload_size = payload_size.max(STAMP);
        let remaining =
            2 + topic.len() + if qos > 0 { 2 } else { 0 } + usize::from(v5) + payload_size;
        let mut head = Vec::with_capacity(8 + topic.len());
        head.push(0x30 | (qos << 1));
        hermod_proto::encode_remaining_length(remaining, &mut head)
            .expect("a bench PUBLISH is far below the remaining-length limit");
        let tl = topic.len() as u16;
        head.extend_from_slice(&tl.to_be_bytes());
        head.extend_from_slice(topic.as_bytes());
        // A recognisable, incompressible-enough pattern rather than zeros.
        let (origin, header) = if payload_size >= STAMP_SEQ {
            (Some(origin), STAMP_SEQ)
        } else {
            (None, STAMP)
        };
        let filler = (0..payload_size - header)
            .map(|i| b'a' + (i % 26) as u8)
            .collect();
        // head = fixed header byte + remaining-length varint + topic length + topic.
        let len = head.len() - (2 + topic.len()) + remaining;
        Self {
            head,
            qos,
            v5,
            origin,
            filler,
            len,
        }
    }

    /// Appends one PUBLISH with packet id `pkid` (ignored at QoS 0), timestamp `stamp_ns` and
    /// sequence number `seq`.
    #[inline]
    pub(crate) fn write(&self, out: &mut Vec<u8>, pkid: u16, stamp_ns: u64, seq: u32) {
        out.extend_from_slice(&self.head);
        if self.qos > 0 {
            out.extend_from_slice(&pkid.to_be_bytes());
        }
        if self.v5 {
            out.push(0);
        }
        out.extend_from_slice(&stamp_ns.to_be_bytes());
        if let Some(origin) = self.origin {
            out.extend_from_slice(&origin.to_be_bytes());
            out.extend_from_slice(&seq.to_be_bytes());
        }
        out.extend_from_slice(&self.filler);
    }
}

/// One packet scanned in place from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scanned {
    /// PUBLISH: QoS, packet id (0 at QoS 0), timestamp from the payload (None when the payload is shorter).
    Publish {
        qos: u8,
        pkid: u16,
        stamp: Option<u64>,
        /// Publisher index and sequence number, when the payload carries them.
        origin: Option<(u32, u32)>,
    },
    /// PUBACK, PUBREC, PUBREL or PUBCOMP (packet type 4..=7), with the v5 reason code (0 when absent).
    Ack { kind: u8, pkid: u16, reason: u8 },
    /// PINGRESP, SUBACK, UNSUBACK, DISCONNECT, ...: only the type.
    Other { kind: u8 },
}

/// Scans one packet at the front of `buf`. `Ok(None)`: not complete yet. `Ok(Some((packet, len)))`.
#[inline]
pub(crate) fn scan(buf: &[u8], v5: bool) -> Result<Option<(Scanned, usize)>, &'static str> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let (remaining, used) = match hermod_proto::decode_remaining_length(&buf[1..]) {
        Ok(Some(v)) => v,
        Ok(None) => return Ok(None),
        Err(_) => return Err("malformed remaining length"),
    };
    let i = 1 + used;
    let total = i + remaining;
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[i..total];
    let kind = first >> 4;
    let scanned = match kind {
        3 => {
            let qos = (first >> 1) & 3;
            if body.len() < 2 {
                return Err("short PUBLISH");
            }
            let tl = usize::from(u16::from_be_bytes([body[0], body[1]]));
            let mut p = 2 + tl;
            let mut pkid = 0;
            if qos > 0 {
                let id = body.get(p..p + 2).ok_or("short PUBLISH")?;
                pkid = u16::from_be_bytes([id[0], id[1]]);
                p += 2;
            }
            if v5 {
                let (plen, n) =
                    varint(body.get(p..).ok_or("short PUBLISH")?).ok_or("bad property length")?;
                p += n + plen;
            }
            let stamp = body.get(p..p + STAMP).map(|s| {
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                u64::from_be_bytes(a)
            });
            let origin = body.get(p + STAMP..p + STAMP_SEQ).map(|s| {
                (
                    u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
                    u32::from_be_bytes([s[4], s[5], s[6], s[7]]),
                )
            });
            Scanned::Publish {
                qos,
                pkid,
                stamp,
                origin,
            }
        }
        4..=7 => {
            if body.len() < 2 {
                return Err("short ack");
            }
            let pkid = u16::from_be_bytes([body[0], body[1]]);
            let reason = body.get(2).copied().unwrap_or(0);
            Scanned::Ack { kind, pkid, reason }
        }
        _ => Scanned::Other { kind },
    };
    Ok(Some((scanned, total)))
}

/// The remaining-length varint at the front of `b`; None if incomplete or malformed.
fn varint(b: &[u8]) -> Option<(usize, usize)> {
    hermod_proto::decode_remaining_length(b).ok().flatten()
}

/// A 4-byte ack packet (PUBACK 0x40, PUBREC 0x50, PUBREL 0x62, PUBCOMP 0x70).
#[inline]
pub(crate) fn put_ack(out: &mut Vec<u8>, first: u8, pkid: u16) {
    let id = pkid.to_be_bytes();
    out.extend_from_slice(&[first, 2, id[0], id[1]]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use hermod_proto::Publish;

    #[test]
    fn template_matches_the_codec() {
        for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
            for qos in 0..=2u8 {
                for size in [0usize, 8, 64, 300] {
                    let t = PublishTemplate::new("bench/3", qos, version, size, 5);
                    let mut out = Vec::new();
                    t.write(&mut out, 7, 0x0102_0304_0506_0708, 9);
                    assert_eq!(out.len(), t.len);
                    let mut b = BytesMut::from(&out[..]);
                    let Some(Packet::Publish(p)) =
                        decode_packet(&mut b, version, 1 << 20).expect("decodes")
                    else {
                        panic!("not a publish")
                    };
                    let Publish {
                        topic,
                        payload,
                        packet_id,
                        ..
                    } = p;
                    assert_eq!(topic, "bench/3");
                    assert_eq!(payload.len(), size.max(8));
                    assert_eq!(
                        packet_id.map(|x| x.get()),
                        if qos > 0 { Some(7) } else { None }
                    );
                    let (s, n) = scan(&out, version.is_v5())
                        .expect("scan")
                        .expect("complete");
                    assert_eq!(n, out.len());
                    assert_eq!(
                        s,
                        Scanned::Publish {
                            qos,
                            pkid: if qos > 0 { 7 } else { 0 },
                            stamp: Some(0x0102_0304_0506_0708),
                            origin: (size >= 16).then_some((5, 9)),
                        }
                    );
                    assert_eq!(scan(&out[..n - 1], version.is_v5()), Ok(None));
                }
            }
        }
    }

    #[test]
    fn scans_acks() {
        let mut out = Vec::new();
        put_ack(&mut out, 0x40, 513);
        assert_eq!(
            scan(&out, false),
            Ok(Some((
                Scanned::Ack {
                    kind: 4,
                    pkid: 513,
                    reason: 0
                },
                4
            )))
        );
    }
}
