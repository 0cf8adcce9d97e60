//! One life of the link: connect the remote, then the local session, subscribe both, and
//! forward between them until either fails or the bridge is stopped.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hermod_broker::api::{BrokerHandle, InternalOptions};
use hermod_client::{ClientError, ConnectOptions, Connection, packet_name};
use hermod_proto::{
    Disconnect, Packet, ProtocolVersion, Publish, PublishAck, QoS, RetainHandling, Subscribe,
    SubscribeProperties, SubscriptionOptions, Unsubscribe,
};
use tokio::sync::watch;

use super::Counters;
use super::config::{BridgeConfig, BridgeProtocol, OnFull};
use super::flow::{Carry, Origin, Side, Tally};
use super::tls::Dialer;
use super::topic::{TopicMap, route_in, route_out};

/// The receive maximum the bridge gives both peers (QoS 1/2 messages in flight to it).
const RECEIVE_MAXIMUM: u16 = 100;
/// How long each CONNACK may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a clean stop waits for the DISCONNECTs to be written.
const STOP_FLUSH: Duration = Duration::from_secs(2);
/// How long a failed link still tries to write the acknowledgements it owes.
const DOWN_FLUSH: Duration = Duration::from_millis(500);

/// What a bridge's task works with.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) broker: BrokerHandle,
    pub(crate) config: BridgeConfig,
    pub(crate) maps: Vec<TopicMap>,
    pub(crate) dialer: Dialer,
    pub(crate) counters: std::sync::Arc<Counters>,
}

/// How a link ended.
#[derive(Debug)]
pub(crate) enum End {
    /// Failed or closed (why, for the log): reconnect after a backoff.
    Down(String),
    /// The bridge was stopped.
    Stop,
}

fn down(what: &str, e: impl std::fmt::Display) -> End {
    End::Down(format!("{what}: {e}"))
}

/// Connects and forwards until the link fails or `stop` changes; `on_up` is called once both
/// sides are connected and subscribed. QoS 2 ids still owed a PUBCOMP are left in `carry`.
pub(crate) async fn run(
    ctx: &Ctx,
    carry: &mut Carry,
    stop: &mut watch::Receiver<bool>,
    on_up: &mut (dyn FnMut() + Send),
) -> End {
    let config = &ctx.config;
    // Remote first: while it is away the local session stays offline and queues.
    let remote_version = match config.protocol_version {
        BridgeProtocol::Mqttv5 => ProtocolVersion::V5,
        BridgeProtocol::Mqttv311 => ProtocolVersion::V311,
    };
    let connecting = async {
        let stream = ctx.dialer.dial().await.map_err(|e| down("connect", e))?;
        let mut remote = Connection::over(stream, remote_version);
        let remote_ack = remote
            .handshake(&remote_options(config, remote_version))
            .await
            .map_err(|e| down("remote CONNECT", e))?;
        // Asked while the session is offline (a registry read, no round trip to a connection
        // task that may be busy sending us the messages it kept).
        let subscribed: Vec<String> = ctx
            .broker
            .client_subscriptions(&config.local_client_id())
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.filter)
            .collect();
        let options = InternalOptions {
            max_queued_messages: config.max_queued_messages,
            max_queued_bytes: config.max_queued_bytes,
            drop_oldest: config.on_full == OnFull::DropOldest,
        };
        let mut local = Connection::over(ctx.broker.connect_internal(options), ProtocolVersion::V5);
        let mut local_options = ConnectOptions::new(config.local_client_id())
            .version(ProtocolVersion::V5)
            .clean_start(false)
            .session_expiry(u32::MAX)
            .keep_alive(0);
        local_options.receive_maximum = Some(RECEIVE_MAXIMUM);
        local_options.connect_timeout = HANDSHAKE_TIMEOUT;
        let local_ack = local
            .handshake(&local_options)
            .await
            .map_err(|e| down("local CONNECT", e))?;
        Ok::<_, End>((remote, remote_ack, local, local_ack, subscribed))
    };
    let (remote, remote_ack, local, local_ack, subscribed) = tokio::select! {
        r = connecting => match r {
            Ok(v) => v,
            Err(end) => return end,
        },
        _ = stop.changed() => return End::Stop,
    };
    let (mut remote_rx, remote_tx) = remote.split();
    let (mut local_rx, local_tx) = local.split();
    let mut remote = Side::new(remote_tx, remote_version);
    let mut local = Side::new(local_tx, ProtocolVersion::V5);
    remote.limits(&remote_ack, RECEIVE_MAXIMUM);
    local.limits(&local_ack, RECEIVE_MAXIMUM);
    let carried = std::mem::take(carry);
    remote.resume(carried.remote, remote_ack.session_present);
    local.resume(carried.local, local_ack.session_present);

    let mut subacks = subscribe(ctx, subscribed, &mut local, &mut remote, remote_version);
    if subacks == 0 {
        on_up();
    }
    let keepalive = remote_ack
        .properties
        .server_keep_alive
        .unwrap_or(config.keepalive);
    let period = Duration::from_secs(u64::from(keepalive.max(2) / 2));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut last_rx = Instant::now();
    let counters = &ctx.counters;

    let end = loop {
        let out = remote.pump(&mut local);
        let inn = local.pump(&mut remote);
        count(counters, out, inn);
        tokio::select! {
            biased;
            _ = stop.changed() => break End::Stop,
            r = local.flush(), if local.pending_write() > 0 => {
                if let Err(e) = r { break down("local write", e); }
            }
            r = remote.flush(), if remote.pending_write() > 0 => {
                if let Err(e) = r { break down("remote write", e); }
            }
            r = local_rx.recv() => {
                let p = match received(r, "local") { Ok(p) => p, Err(end) => break end };
                let mut link = Pair { ctx, subacks: &mut subacks, on_up: &mut *on_up };
                if let Some(end) = link.handle(p, false, &mut local, &mut remote) { break end; }
            }
            r = remote_rx.recv() => {
                let p = match received(r, "remote") { Ok(p) => p, Err(end) => break end };
                last_rx = Instant::now();
                let mut link = Pair { ctx, subacks: &mut subacks, on_up: &mut *on_up };
                if let Some(end) = link.handle(p, true, &mut remote, &mut local) { break end; }
            }
            _ = ping.tick(), if keepalive > 0 => {
                if last_rx.elapsed() > period * 3 {
                    break down("remote", "keep alive timed out");
                }
                remote.queue(&Packet::PingRequest);
            }
        }
    };
    *carry = Carry {
        local: local.carry(),
        remote: remote.carry(),
    };
    let wait = if matches!(end, End::Stop) {
        // A clean stop: both sessions stay; what is unacknowledged is sent again next time.
        local.queue(&Packet::Disconnect(Disconnect::default()));
        remote.queue(&Packet::Disconnect(Disconnect::default()));
        STOP_FLUSH
    } else {
        // Down: no DISCONNECT (the local session goes offline as after a network failure),
        // but the acknowledgements already queued go out, so that what the other side took
        // is not sent again.
        DOWN_FLUSH
    };
    let _ = tokio::time::timeout(wait, async {
        let _ = tokio::join!(local.flush(), remote.flush());
    })
    .await;
    end
}

/// What handling a received packet needs besides the two sides.
struct Pair<'a> {
    ctx: &'a Ctx,
    subacks: &'a mut usize,
    on_up: &'a mut (dyn FnMut() + Send),
}

impl Pair<'_> {
    /// Handles one packet from `from` (`inbound`: the remote), whose messages go to `to`.
    /// `Some` ends the link.
    fn handle<F, T>(
        &mut self,
        p: Packet,
        inbound: bool,
        from: &mut Side<F>,
        to: &mut Side<T>,
    ) -> Option<End>
    where
        F: tokio::io::AsyncWrite + Unpin,
        T: tokio::io::AsyncWrite + Unpin,
    {
        let side = if inbound { "remote" } else { "local" };
        let counters = &self.ctx.counters;
        match p {
            Packet::Publish(p) if p.topic.is_empty() => {
                return Some(down(side, "a PUBLISH without topic (no alias was allowed)"));
            }
            Packet::Publish(p) => forward(&self.ctx.maps, p, inbound, to, from, counters),
            a @ (Packet::PublishAck(_)
            | Packet::PublishReceived(_)
            | Packet::PublishComplete(_)) => {
                // Acks from the remote finish messages sent out, from the local side messages in.
                let t = from.on_ack(&a, to);
                if inbound {
                    count(counters, t, Tally::default());
                } else {
                    count(counters, Tally::default(), t);
                }
            }
            Packet::PublishRelease(r) => {
                from.queue(&Packet::PublishComplete(PublishAck::new(r.packet_id)));
            }
            Packet::SubscribeAck(a) => {
                check_suback(self.ctx, side, &a.reasons);
                if *self.subacks > 0 {
                    *self.subacks -= 1;
                    if *self.subacks == 0 {
                        (self.on_up)();
                    }
                }
            }
            Packet::UnsubscribeAck(_) | Packet::PingResponse => {}
            Packet::Disconnect(d) => return Some(down(&format!("{side} DISCONNECT"), d.reason)),
            other => return Some(down(&format!("{side} sent"), packet_name(&other))),
        }
        None
    }
}

fn count(counters: &Counters, out: Tally, inn: Tally) {
    Counters::add(&counters.messages_out, out.done);
    Counters::add(&counters.messages_in, inn.done);
    Counters::add(&counters.messages_dropped, out.dropped + inn.dropped);
}

fn received(r: Result<Option<Packet>, ClientError>, side: &str) -> Result<Packet, End> {
    match r {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(End::Down(format!("{side} closed the connection"))),
        Err(e) => Err(down(side, e)),
    }
}

/// Maps a PUBLISH from `source` and queues it on `target` (`inbound`: remote → local).
fn forward<T, S>(
    maps: &[TopicMap],
    p: Publish,
    inbound: bool,
    target: &mut Side<T>,
    source: &mut Side<S>,
    counters: &Counters,
) where
    T: tokio::io::AsyncWrite + Unpin,
    S: tokio::io::AsyncWrite + Unpin,
{
    let origin = p.packet_id.map(|id| Origin { id, qos: p.qos });
    let route = if inbound {
        route_in(maps, &p.topic)
    } else {
        route_out(maps, &p.topic)
    };
    let accepted = match route {
        Some((map, topic)) => {
            let mut properties = p.properties;
            properties.subscription_identifiers.clear();
            properties.topic_alias = None;
            let out = Publish {
                dup: false,
                qos: p.qos.min(map.qos),
                retain: p.retain,
                topic,
                packet_id: None,
                payload: p.payload,
                properties,
            };
            target.push(out, origin)
        }
        None => false,
    };
    if !accepted {
        Counters::add(&counters.messages_dropped, 1);
        if let Some(ack) = origin.map(|o| match o.qos {
            QoS::ExactlyOnce => Packet::PublishReceived(PublishAck::new(o.id)),
            _ => Packet::PublishAck(PublishAck::new(o.id)),
        }) {
            source.queue(&ack);
        }
    }
}

fn check_suback(ctx: &Ctx, side: &str, reasons: &[hermod_proto::ReasonCode]) {
    if let Some(bad) = reasons.iter().find(|r| r.is_error()) {
        tracing::warn!(bridge = %ctx.config.name, side, reason = %bad,
            "bridge subscription refused");
    }
}

fn remote_options(config: &BridgeConfig, version: ProtocolVersion) -> ConnectOptions {
    let mut o = ConnectOptions::new(config.remote_client_id())
        .version(version)
        .clean_start(false)
        .keep_alive(config.keepalive);
    if version.is_v5() {
        o = o.session_expiry(u32::MAX);
        o.receive_maximum = Some(RECEIVE_MAXIMUM);
    }
    o.username.clone_from(&config.username);
    o.password = config.password.clone().map(Bytes::from);
    o.connect_timeout = HANDSHAKE_TIMEOUT;
    o
}

/// Sends the SUBSCRIBEs (and drops the local session's subscriptions no line asks for any
/// more); returns how many SUBACKs to wait for.
fn subscribe<L, R>(
    ctx: &Ctx,
    subscribed: Vec<String>,
    local: &mut Side<L>,
    remote: &mut Side<R>,
    remote_version: ProtocolVersion,
) -> usize
where
    L: tokio::io::AsyncWrite + Unpin,
    R: tokio::io::AsyncWrite + Unpin,
{
    let options = |qos: QoS, v5: bool| SubscriptionOptions {
        qos,
        no_local: v5,
        retain_as_published: v5,
        retain_handling: if v5 {
            RetainHandling::SendIfNew
        } else {
            RetainHandling::SendAtSubscribe
        },
    };
    let local_filters: Vec<(String, SubscriptionOptions)> = ctx
        .maps
        .iter()
        .filter(|m| m.direction.is_out())
        .map(|m| (m.local_filter(), options(m.qos, true)))
        .collect();
    let remote_filters: Vec<(String, SubscriptionOptions)> = ctx
        .maps
        .iter()
        .filter(|m| m.direction.is_in())
        .map(|m| (m.remote_filter(), options(m.qos, remote_version.is_v5())))
        .collect();
    let wanted: HashSet<&str> = local_filters.iter().map(|(f, _)| f.as_str()).collect();
    let stale: Vec<String> = subscribed
        .into_iter()
        .filter(|f| !wanted.contains(f.as_str()))
        .collect();
    let id = std::num::NonZeroU16::MIN;
    if !stale.is_empty() {
        local.queue(&Packet::Unsubscribe(Unsubscribe {
            packet_id: id,
            filters: stale,
            user_properties: Vec::new(),
        }));
    }
    let mut subacks = 0;
    for (side_filters, is_local) in [(local_filters, true), (remote_filters, false)] {
        if side_filters.is_empty() {
            continue;
        }
        let packet = Packet::Subscribe(Subscribe {
            packet_id: id.saturating_add(1),
            filters: side_filters,
            properties: SubscribeProperties::default(),
        });
        if is_local {
            local.queue(&packet);
        } else {
            remote.queue(&packet);
        }
        subacks += 1;
    }
    subacks
}
