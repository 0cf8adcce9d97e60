//! `hermod bench forwarder`: the ceiling for any broker on this machine.
//!
//! A bare single-threaded MQTT forwarder that parses just enough of the protocol to pass
//! messages on: CONNECT → CONNACK, SUBSCRIBE → SUBACK (exact topics, and `$share/GROUP/TOPIC`
//! served round-robin), PUBLISH → PUBACK / PUBREC (to the publisher) and a copy to each
//! subscriber at min(QoS, granted), PUBREC → PUBREL, PINGREQ → PINGRESP, DISCONNECT. Nothing
//! else: no wildcards, sessions, retained messages, authentication, limits, validation beyond
//! framing, nor flow control (the load generator's window is the only one). It runs on one
//! thread; each connection's output is one buffer that its writer flushes in one `write` per
//! wake-up, so a burst of deliveries costs one syscall.
//!
//! What a broker does on top of this (routing by filter, ACL checks, sessions, inflight windows,
//! durability) is what it costs; `bench/compare.sh` runs this beside the brokers so that each
//! scenario can be reported as a fraction of the ceiling, measured in the same run.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

/// One connection, as the router sees it.
struct Peer {
    /// Bytes to send, appended by whoever forwards to this peer.
    out: RefCell<Vec<u8>>,
    wake: Notify,
    v5: Cell<bool>,
    next_id: Cell<u16>,
    closed: Cell<bool>,
}

impl Peer {
    fn packet_id(&self) -> u16 {
        let id = self.next_id.get();
        self.next_id.set(if id == u16::MAX { 1 } else { id + 1 });
        id
    }
}

/// A subscriber and its granted QoS.
type Member = (Rc<Peer>, u8);

/// Subscribers of one exact topic: plain ones, and shared groups (members, next in turn).
#[derive(Default)]
struct Subscribers {
    plain: Vec<Member>,
    groups: HashMap<Vec<u8>, (Vec<Member>, usize)>,
}

type Topics = RefCell<HashMap<Vec<u8>, Subscribers>>;

/// Runs the forwarder on `host:port` until SIGINT or SIGTERM.
pub(super) fn serve(host: &str, port: u16) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::bind((host, port)).await?;
        eprintln!(
            "forwarder listening on {} (one thread; stop with Ctrl-C)",
            listener.local_addr()?
        );
        let topics: Rc<Topics> = Rc::default();
        let stop = stop_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    tokio::task::spawn_local(connection(stream, topics.clone()));
                }
                () = &mut stop => break,
            }
        }
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

async fn connection(stream: tokio::net::TcpStream, topics: Rc<Topics>) {
    let (mut rd, wr) = stream.into_split();
    let peer = Rc::new(Peer {
        out: RefCell::new(Vec::with_capacity(4096)),
        wake: Notify::new(),
        v5: Cell::new(false),
        next_id: Cell::new(1),
        closed: Cell::new(false),
    });
    let writer = tokio::task::spawn_local(write_loop(wr, peer.clone()));
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut woken: Vec<Rc<Peer>> = Vec::new();
    'read: loop {
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let mut at = 0;
        while let Some((header, body, len)) = frame(&buf[at..]) {
            at += len;
            if !handle(header, body, &peer, &topics, &mut woken) {
                break 'read;
            }
        }
        buf.drain(..at);
        for p in woken.drain(..) {
            p.wake.notify_one();
        }
    }
    peer.closed.set(true);
    peer.wake.notify_one();
    // Its subscriptions go with it.
    for subs in topics.borrow_mut().values_mut() {
        subs.plain.retain(|(p, _)| !Rc::ptr_eq(p, &peer));
        for (members, _) in subs.groups.values_mut() {
            members.retain(|(p, _)| !Rc::ptr_eq(p, &peer));
        }
    }
    let _ = writer.await;
}

async fn write_loop(mut wr: OwnedWriteHalf, peer: Rc<Peer>) {
    let mut spare = Vec::with_capacity(4096);
    loop {
        peer.wake.notified().await;
        loop {
            std::mem::swap(&mut spare, &mut *peer.out.borrow_mut());
            if spare.is_empty() {
                break;
            }
            if wr.write_all(&spare).await.is_err() {
                peer.closed.set(true);
                return;
            }
            spare.clear();
        }
        if peer.closed.get() {
            let _ = wr.shutdown().await;
            return;
        }
    }
}

/// `(first byte, body, whole length)` of the first complete packet in `b`.
fn frame(b: &[u8]) -> Option<(u8, &[u8], usize)> {
    let header = *b.first()?;
    let mut len = 0usize;
    let mut shift = 0;
    let mut i = 1;
    loop {
        let byte = *b.get(i)?;
        len |= usize::from(byte & 0x7f) << shift;
        i += 1;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            return None;
        }
    }
    let end = i.checked_add(len)?;
    Some((header, b.get(i..end)?, end))
}

/// A variable byte integer at `b[at..]`: `(value, bytes used)`.
fn varint(b: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut v = 0usize;
    for k in 0..4 {
        let byte = *b.get(at + k)?;
        v |= usize::from(byte & 0x7f) << (7 * k);
        if byte & 0x80 == 0 {
            return Some((v, k + 1));
        }
    }
    None
}

fn push_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut byte = (n & 0x7f) as u8;
        n >>= 7;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Handles one packet; false to close the connection.
fn handle(
    header: u8,
    body: &[u8],
    peer: &Rc<Peer>,
    topics: &Topics,
    woken: &mut Vec<Rc<Peer>>,
) -> bool {
    let v5 = peer.v5.get();
    match header >> 4 {
        1 => {
            // CONNECT: protocol name, then the level.
            let Some(name_len) = u16_at(body, 0) else {
                return false;
            };
            let level = body.get(2 + usize::from(name_len)).copied().unwrap_or(4);
            peer.v5.set(level == 5);
            let ack: &[u8] = if level == 5 {
                &[0x20, 3, 0, 0, 0]
            } else {
                &[0x20, 2, 0, 0]
            };
            peer.out.borrow_mut().extend_from_slice(ack);
            woken.push(peer.clone());
        }
        3 => publish(header, body, peer, topics, woken),
        4 | 7 => {} // PUBACK, PUBCOMP from a subscriber
        5 => {
            // PUBREC from a subscriber: PUBREL.
            if let Some(id) = u16_at(body, 0) {
                let [a, b] = id.to_be_bytes();
                peer.out.borrow_mut().extend_from_slice(&[0x62, 2, a, b]);
                woken.push(peer.clone());
            }
        }
        6 => {
            // PUBREL from a publisher: PUBCOMP.
            if let Some(id) = u16_at(body, 0) {
                let [a, b] = id.to_be_bytes();
                peer.out.borrow_mut().extend_from_slice(&[0x70, 2, a, b]);
                woken.push(peer.clone());
            }
        }
        8 => subscribe(body, peer, topics, woken),
        10 => {
            // UNSUBSCRIBE: acknowledged, subscriptions kept (the load generator does not
            // unsubscribe before it disconnects).
            if let Some(id) = u16_at(body, 0) {
                let [a, b] = id.to_be_bytes();
                let mut out = peer.out.borrow_mut();
                out.extend_from_slice(&[0xB0, 2, a, b]);
                if v5 {
                    out[1] = 3;
                    out.push(0);
                }
                woken.push(peer.clone());
            }
        }
        12 => {
            peer.out.borrow_mut().extend_from_slice(&[0xD0, 0]);
            woken.push(peer.clone());
        }
        14 => return false,
        _ => {}
    }
    true
}

fn subscribe(body: &[u8], peer: &Rc<Peer>, topics: &Topics, woken: &mut Vec<Rc<Peer>>) {
    let Some(id) = u16_at(body, 0) else { return };
    let mut at = 2;
    if peer.v5.get() {
        let Some((props, used)) = varint(body, at) else {
            return;
        };
        at += used + props;
    }
    let mut granted = Vec::new();
    let mut map = topics.borrow_mut();
    while let Some(len) = u16_at(body, at) {
        let start = at + 2;
        let end = start + usize::from(len);
        let (Some(filter), Some(&options)) = (body.get(start..end), body.get(end)) else {
            return;
        };
        let qos = (options & 3).min(2);
        match filter.strip_prefix(b"$share/") {
            Some(rest) => {
                if let Some(slash) = rest.iter().position(|&c| c == b'/') {
                    let (group, topic) = (&rest[..slash], &rest[slash + 1..]);
                    map.entry(topic.to_vec())
                        .or_default()
                        .groups
                        .entry(group.to_vec())
                        .or_default()
                        .0
                        .push((peer.clone(), qos));
                }
            }
            None => map
                .entry(filter.to_vec())
                .or_default()
                .plain
                .push((peer.clone(), qos)),
        }
        granted.push(qos);
        at = end + 1;
    }
    let mut out = peer.out.borrow_mut();
    out.push(0x90);
    let props = usize::from(peer.v5.get());
    push_len(&mut out, 2 + props + granted.len());
    out.extend_from_slice(&id.to_be_bytes());
    if props == 1 {
        out.push(0);
    }
    out.extend_from_slice(&granted);
    woken.push(peer.clone());
}

fn publish(header: u8, body: &[u8], from: &Rc<Peer>, topics: &Topics, woken: &mut Vec<Rc<Peer>>) {
    let qos = (header >> 1) & 3;
    let Some(topic_len) = u16_at(body, 0) else {
        return;
    };
    let topic_end = 2 + usize::from(topic_len);
    let Some(topic) = body.get(2..topic_end) else {
        return;
    };
    let mut at = topic_end;
    let mut id = None;
    if qos > 0 {
        id = u16_at(body, at);
        at += 2;
    }
    if from.v5.get() {
        let Some((props, used)) = varint(body, at) else {
            return;
        };
        at += used + props;
    }
    let Some(payload) = body.get(at..) else {
        return;
    };
    match (qos, id) {
        (1, Some(id)) => {
            let [a, b] = id.to_be_bytes();
            from.out.borrow_mut().extend_from_slice(&[0x40, 2, a, b]);
            woken.push(from.clone());
        }
        (2, Some(id)) => {
            let [a, b] = id.to_be_bytes();
            from.out.borrow_mut().extend_from_slice(&[0x50, 2, a, b]);
            woken.push(from.clone());
        }
        _ => {}
    }
    let mut map = topics.borrow_mut();
    let Some(subs) = map.get_mut(topic) else {
        return;
    };
    for (p, granted) in &subs.plain {
        deliver(p, topic, payload, qos.min(*granted), woken);
    }
    for (members, next) in subs.groups.values_mut() {
        if members.is_empty() {
            continue;
        }
        let (p, granted) = &members[*next % members.len()];
        *next = next.wrapping_add(1);
        deliver(p, topic, payload, qos.min(*granted), woken);
    }
}

fn deliver(to: &Rc<Peer>, topic: &[u8], payload: &[u8], qos: u8, woken: &mut Vec<Rc<Peer>>) {
    if to.closed.get() {
        return;
    }
    let v5 = to.v5.get();
    let len = 2 + topic.len() + if qos > 0 { 2 } else { 0 } + usize::from(v5) + payload.len();
    {
        let mut out = to.out.borrow_mut();
        let was_empty = out.is_empty();
        out.push(0x30 | (qos << 1));
        push_len(&mut out, len);
        out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        out.extend_from_slice(topic);
        if qos > 0 {
            out.extend_from_slice(&to.packet_id().to_be_bytes());
        }
        if v5 {
            out.push(0);
        }
        out.extend_from_slice(payload);
        if !was_empty {
            // Already woken for this batch.
            return;
        }
    }
    woken.push(to.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_variable_lengths() {
        assert_eq!(frame(&[0xC0, 0]), Some((0xC0, &[][..], 2)));
        assert_eq!(frame(&[0x30, 3, 0, 1]), None, "incomplete");
        let mut big = vec![0x30];
        push_len(&mut big, 200);
        assert_eq!(&big[1..], &[0xC8, 0x01]);
        big.extend(std::iter::repeat_n(7u8, 200));
        assert_eq!(frame(&big).map(|(_, b, n)| (b.len(), n)), Some((200, 203)));
        assert_eq!(varint(&[0xC8, 0x01], 0), Some((200, 2)));
    }
}
