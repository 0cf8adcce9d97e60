//! One task per network connection: all I/O for one client.
//!
//! The loop reads packets (cancel-safe: partial bytes stay in `rbuf`), hands each to its handler,
//! pulls deliveries from the session's mailbox while the inflight window has room, and writes
//! everything produced in one pass with a single write (coalescing under load).
//!
//! One file per stage, as Mosquitto has one per handler: `establish` (CONNECT to CONNACK, with
//! `handshake` for the pure checks), `publish` (inbound PUBLISH and backpressure), `subscribe`
//! (SUBSCRIBE/UNSUBSCRIBE), `outbound` (deliveries to the client and re-sends), `durable` (the
//! store side of a session), `io` (socket reads and writes), `close` (the end: DISCONNECT, will,
//! session hand-back). This file holds the connection's state, its loop and the dispatch.

mod aliases;
mod close;
mod durable;
mod establish;
mod handshake;
mod io;
mod negotiated;
mod outbound;
mod publish;
mod refusal;
#[cfg(test)]
mod size_tests;
mod subscribe;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hermod_proto::{Disconnect, LastWill, Packet, PublishAck, ReasonCode, decode_packet};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::auth::{Action, ClientIdentity};
use crate::message::{ClientId, Delivery};
use crate::session::Session;
use crate::session::registry::ConnectionId;
use crate::shared::Shared;
use crate::store::Op;
use crate::transport::PeerInfo;

/// Flush once this much is buffered, so one slow socket cannot grow the write buffer without limit.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// How long a publisher waits for its busy subscribers' mailboxes to drain (all at once) before
/// marking the ones that did not stalled and going on (their messages are then dropped at the
/// limit and counted, for `session::mailbox::STALL_HOLD`). A subscriber task that merely had not
/// been scheduled drains within a few milliseconds.
const BACKPRESSURE_WAIT: Duration = Duration::from_millis(100);
/// How long a new connection waits for a displaced one to hand its session over.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

/// Why a connection ends. Decides the DISCONNECT sent (v5) and whether the will is published.
#[derive(Debug)]
enum End {
    /// DISCONNECT 0x00 from the client: the will is discarded [MQTT-3.1.2-10].
    Normal,
    /// DISCONNECT 0x04 from the client: publish the will.
    NormalWithWill,
    /// The peer closed or the socket failed without DISCONNECT.
    Lost(Option<std::io::Error>),
    /// A malformed packet or protocol violation: DISCONNECT with this reason (v5), then close.
    Violation(ReasonCode, String),
    /// A store commit an acknowledgement waited for failed, and the client (3.1.1) cannot be
    /// told no: closed as after a violation (will published), but not counted as one.
    StoreFailed,
    /// No packet within 1.5 × keep alive [MQTT-3.1.2-24].
    KeepAliveTimeout,
    /// Another connection with the same client id took over.
    TakenOver,
    /// An operator disconnected the client (`api::BrokerHandle::kick`): DISCONNECT 0x98 (v5),
    /// the will is published as for any end the client did not ask for; the session stays.
    Kicked,
    /// The broker is shutting down.
    Shutdown,
}

/// A packet kept until the HTTP authorizer answers (see `Connection::resolve_parked`).
enum Parked {
    /// With its topic (the alias resolved).
    Publish(hermod_proto::Publish, Arc<str>),
    Subscribe(hermod_proto::Subscribe),
}

/// Awaits `f` (an ACL answer, itself bounded by the auth timeout) unless the broker shuts down
/// or the connection is kicked meanwhile.
async fn acl_wait<F: std::future::Future>(
    shutdown: CancellationToken,
    kick: CancellationToken,
    f: F,
) -> Result<F::Output, End> {
    tokio::select! {
        biased;
        () = kick.cancelled() => Err(kicked(&shutdown)),
        out = f => Ok(out),
    }
}

/// Why a connection's `kick` token fired. It is a child of the broker's shutdown token, so one
/// wait covers both (a future less in each of the connection's waits, the idle one included):
/// the broker shutting down, else another connection (or an operator) taking the client id.
fn kicked(shutdown: &CancellationToken) -> End {
    if shutdown.is_cancelled() {
        End::Shutdown
    } else {
        End::TakenOver
    }
}

/// Runs one connection to its end. Never panics on input; errors end this connection only.
///
/// Not an `async fn`: an async fn's arguments stay in its future for its whole life (the
/// stream and `PeerInfo`, ~140 bytes), though CONNECT is the only step that needs them; here
/// they move into the boxed `establish` future at once and the future holds only its box.
pub(crate) fn run<S>(
    stream: S,
    info: PeerInfo,
    listener: usize,
    shared: Arc<Shared>,
) -> impl std::future::Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    // The task of an idle connection should hold little more than the connection itself: the
    // states it passes through once (CONNECT, the end) or rarely (below) are boxed, so the
    // task's future is sized by `serve`'s idle loop, not by its largest await (20 KiB → 1.3 KiB,
    // most of it the `Connection` itself).
    let establishing = Box::pin(establish::establish(stream, info, listener, shared));
    async move {
        let Some(mut conn) = establishing.await else {
            return;
        };
        let end = conn.serve().await;
        Box::pin(conn.finish(end)).await;
    }
}

struct Connection<S> {
    stream: S,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// What CONNECT settled: version, limits, keep alive, session expiry.
    neg: negotiated::Negotiated,
    shared: Arc<Shared>,
    conn_id: ConnectionId,
    /// The same `Arc` as the session's, the registry's key and the identity's.
    client_id: ClientId,
    session: Session,
    /// Boxed, as the other fields an idle connection seldom has (aliases, a parked packet): a
    /// will is a few hundred bytes inline, which every connection's task would carry.
    will: Option<Box<LastWill>>,
    /// Inbound topic aliases (v5), per connection [MQTT-3.3.2-7]; created at the first alias.
    /// Boxed: 8 bytes in every task instead of an empty map's 48.
    #[allow(clippy::box_collection)]
    topic_aliases: Option<Box<HashMap<u16, Arc<str>>>>,
    /// Outbound topic aliases, created at the first delivery to a client that allows them.
    out_aliases: Option<Box<aliases::OutAliases>>,
    /// Cancelled when another connection takes the client id over.
    kick: CancellationToken,
    /// Reused buffer for deliveries taken from the mailbox.
    batch: Vec<Delivery>,
    /// Who the client authenticated as, for ACL checks; the same `Arc` as the mailbox's reader.
    identity: Arc<ClientIdentity>,
    /// Bytes to make room for before the next read (adapts to the traffic; see `prepare_read`).
    read_size: usize,
    /// Bytes the last read returned.
    last_read: usize,
    /// Subscriber mailboxes that filled up while routing this client's messages: reading from
    /// this client pauses until they drain (bounded; see `session::mailbox`).
    busy: Vec<Arc<crate::session::mailbox::SessionHandle>>,
    /// A PUBLISH or SUBSCRIBE waiting for the HTTP authorizer's answer (not cached): reading
    /// from this client pauses until it is handled (within the auth timeout).
    parked: Option<Box<Parked>>,
    /// The session is persistent and a store is open: its QoS 1/2 deliveries, inbound QoS 2
    /// ids and record are written.
    durable: bool,
    /// Store commits the next acknowledgements wait for.
    pending_commits: Vec<crate::store::Commit>,
    /// Acknowledgements waiting for `pending_commits`, each with the number of commits it waits
    /// for (those since the previous one are its own).
    deferred: Vec<(Packet, usize)>,
    /// What the admin side sees of this connection (gauges kept current here).
    live: Arc<crate::session::live::Live>,
    /// This connection's counters, added to the broker's at each `flush`.
    stats: crate::metrics::Local,
    /// This client as the publisher of its messages (username, address); also where the
    /// connection finds its peer's address.
    origin: Arc<crate::message::Origin>,
    /// An internal connection (a rule, a bridge): deliveries carry their publisher's identity
    /// (see `api::internal`).
    internal: bool,
    /// When the last read returned: the receive time of the messages it brought (for the
    /// publish-to-deliver latency).
    read_at: Instant,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Connection<S> {
    async fn serve(&mut self) -> End {
        let shutdown = self.shared.shutdown.clone();
        let kick = self.kick.clone();
        let handle = self.session.handle.clone();
        // Requests from the admin side (subscribe on behalf of the client, list subscriptions).
        let live = self.live.clone();
        let mut deadline = self.neg.keep_alive.map(|k| tokio::time::Instant::now() + k);
        // Packets that arrived with CONNECT, in the same read, are already buffered.
        if let Err(end) = self.handle_input() {
            return end;
        }
        loop {
            if !self.pending_commits.is_empty()
                && let Err(end) = self.settle().await
            {
                return end;
            }
            self.maybe_load();
            let more = self.pump(Instant::now());
            self.live.set_inflight(self.session.inflight_out.len());
            if let Err(end) = self.flush().await {
                return end;
            }
            if self.parked.is_some() {
                // A packet waits for the HTTP authorizer: ask it, handle the packet, then go on
                // with the packets already buffered before reading more.
                if let Err(end) = Box::pin(self.resolve_parked()).await {
                    return end;
                }
                if let Err(end) = self.handle_input() {
                    return end;
                }
                continue;
            }
            if !self.busy.is_empty() {
                // Backpressure: wait for busy subscribers to drain, then go on with the packets
                // already buffered before reading more.
                if let Err(end) = Box::pin(self.wait_for_subscribers()).await {
                    return end;
                }
                if let Err(end) = self.handle_input() {
                    return end;
                }
                continue;
            }
            let room = self.session.inflight_out.len() < self.neg.receive_max;
            self.prepare_read();
            let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
            tokio::select! {
                biased;
                () = kick.cancelled() => return kicked(&shutdown),
                r = io::read_releasing(&mut self.stream, &mut self.rbuf, &mut self.wbuf, self.read_size) => match r {
                    Ok(0) => return End::Lost(None),
                    Ok(n) => {
                        self.note_read(n);
                        deadline = self.neg.keep_alive.map(|k| tokio::time::Instant::now() + k);
                        if let Err(end) = self.handle_input() {
                            return end;
                        }
                        // Take whatever else is already readable before writing, so that the
                        // answers to many packets go out in one write.
                        if let Err(end) = self.drain_readable() {
                            return end;
                        }
                    }
                    Err(e) => return End::Lost(Some(e)),
                },
                () = std::future::ready(()), if more => {}
                () = live.commands.ready() => {
                    for command in live.commands.take() {
                        if let Err(end) = Box::pin(self.on_command(command)).await {
                            return end;
                        }
                    }
                }
                () = handle.notified(), if room => {}
                () = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => return End::KeepAliveTimeout,
            }
        }
    }

    /// Decodes and handles the whole packets in the read buffer; stops early when a subscriber
    /// mailbox is busy (backpressure) or a packet waits for the HTTP authorizer, leaving the
    /// rest buffered.
    fn handle_input(&mut self) -> Result<(), End> {
        let max = self.shared.config.max_packet_size as usize;
        loop {
            if !self.busy.is_empty() || self.parked.is_some() {
                return Ok(());
            }
            match decode_packet(&mut self.rbuf, self.neg.version, max) {
                Ok(Some(packet)) => {
                    self.stats
                        .packet_received(crate::metrics::packet_type(&packet));
                    self.handle_packet(packet)?;
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(End::Violation(e.reason_code(), e.to_string())),
            }
        }
    }

    fn handle_packet(&mut self, packet: Packet) -> Result<(), End> {
        match packet {
            Packet::Publish(p) => self.on_publish(p),
            Packet::PublishAck(a) => {
                let done = self.session.on_publish_ack(a.packet_id);
                self.dequeue(done.and_then(|o| o.delivery.seq));
                Ok(())
            }
            Packet::PublishReceived(a) => {
                let (known, dropped) = self
                    .session
                    .on_publish_received(a.packet_id, a.reason.is_error());
                self.dequeue(dropped.and_then(|o| o.delivery.seq));
                if !a.reason.is_error() || !known {
                    let mut rel = PublishAck::new(a.packet_id);
                    if !known {
                        rel.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                    }
                    self.write(&Packet::PublishRelease(rel));
                }
                Ok(())
            }
            Packet::PublishRelease(a) => {
                let known = self.session.inflight_in.remove(&a.packet_id.get());
                if known && self.durable {
                    self.store_detached(vec![Op::DeleteInflightIn(
                        self.client_id.to_string(),
                        a.packet_id.get(),
                    )]);
                }
                let mut comp = PublishAck::new(a.packet_id);
                if !known {
                    comp.reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                }
                self.write(&Packet::PublishComplete(comp));
                Ok(())
            }
            Packet::PublishComplete(a) => {
                let done = self.session.on_publish_complete(a.packet_id);
                self.dequeue(done.and_then(|o| o.delivery.seq));
                Ok(())
            }
            Packet::Subscribe(s) => self.on_subscribe(s),
            Packet::Unsubscribe(u) => {
                self.on_unsubscribe(u);
                Ok(())
            }
            Packet::PingRequest => {
                self.write(&Packet::PingResponse);
                Ok(())
            }
            Packet::Disconnect(d) => self.on_disconnect(&d),
            Packet::Connect(_) => Err(violation(
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-3.1.0-2] second CONNECT",
            )),
            // No authentication method was accepted at CONNECT (one is refused there with
            // CONNACK 0x8C), so any AUTH is a protocol error [MQTT-4.12.0-1]; 0x8C is not a
            // DISCONNECT reason code (3.14.2.1).
            Packet::Auth(_) => Err(violation(
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-4.12.0-1] AUTH without an authentication method in CONNECT",
            )),
            Packet::ConnectAck(_)
            | Packet::SubscribeAck(_)
            | Packet::UnsubscribeAck(_)
            | Packet::PingResponse => Err(violation(
                ReasonCode::PROTOCOL_ERROR,
                "server-to-client packet sent by a client",
            )),
        }
    }

    /// Handles the packet kept for the HTTP authorizer: asks it (bounded by the auth timeout;
    /// a failure denies), which fills its cache, then handles the packet with the answer.
    /// Holds an `Arc` of the rules, no guard nor lock, while waiting.
    async fn resolve_parked(&mut self) -> Result<(), End> {
        let Some(parked) = self.parked.take().map(|p| *p) else {
            return Ok(());
        };
        let auth = self.shared.auth.load_full();
        let (identity, ip) = (self.identity.clone(), Some(self.peer().ip()));
        let (shutdown, kick) = (self.shared.shutdown.clone(), self.kick.clone());
        match parked {
            Parked::Publish(p, topic) => {
                let allowed = acl_wait(
                    shutdown,
                    kick,
                    auth.authorize_async(&identity, ip, Action::Publish(&topic)),
                )
                .await?;
                self.publish_decided(p, topic, allowed)
            }
            Parked::Subscribe(s) => {
                let mut filters: Vec<&str> = s
                    .filters
                    .iter()
                    .map(|(f, _)| f.as_str())
                    .filter(|f| hermod_proto::topic::validate_topic_filter(f).is_ok())
                    .collect();
                filters.sort_unstable();
                filters.dedup();
                let answers = acl_wait(
                    shutdown,
                    kick,
                    futures_util::future::join_all(
                        filters
                            .iter()
                            .map(|f| auth.authorize_async(&identity, ip, Action::Subscribe(f))),
                    ),
                )
                .await?;
                let decided: HashMap<String, bool> = filters
                    .into_iter()
                    .map(str::to_owned)
                    .zip(answers)
                    .collect();
                self.subscribe_decided(s, &decided)
            }
        }
    }

    fn on_disconnect(&mut self, d: &Disconnect) -> Result<(), End> {
        if let Some(expiry) = d.properties.session_expiry_interval {
            if self.neg.expiry_zero_at_connect && expiry != 0 {
                return Err(violation(
                    ReasonCode::PROTOCOL_ERROR,
                    "[MQTT-3.14.2-2] session expiry set on DISCONNECT after 0 on CONNECT",
                ));
            }
            self.session.expiry = negotiated::expiry(expiry, &self.shared.config);
        }
        if d.reason == ReasonCode::DISCONNECT_WITH_WILL {
            Err(End::NormalWithWill)
        } else {
            Err(End::Normal)
        }
    }
}

impl<S> Connection<S> {
    /// The client's address (from the PROXY header when there is one).
    fn peer(&self) -> SocketAddr {
        self.origin.peer
    }

    /// Counts a delivery to this client that is dropped, and reports it.
    fn drop_delivery(&mut self, reason: crate::api::DropReason, topic: &Arc<str>) {
        self.stats.dropped(reason);
        self.shared
            .events
            .emit(|| crate::api::Event::MessageDropped {
                client_id: Some(self.client_id.clone()),
                topic: topic.clone(),
                reason,
            });
    }
}

fn violation(code: ReasonCode, why: &str) -> End {
    End::Violation(code, why.to_owned())
}
