//! One direction's bookkeeping: the messages waiting for an inflight slot on the target side,
//! the ones in flight there, and which source packet each one acknowledges when done.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU16;

use hermod_client::{ClientError, PacketWriter};
use hermod_proto::{Packet, PacketId, ProtocolVersion, Publish, PublishAck, QoS, encoded_len};
use tokio::io::AsyncWrite;

/// QoS 0 messages waiting beyond this many are dropped (QoS 1/2 are bounded by the receive
/// maximum the source was given).
const PENDING_CAP: usize = 10_000;

/// Encoded bytes a writer may hold before the loop stops moving messages into it.
const WRITE_CAP: usize = 1 << 20;

/// How to acknowledge a forwarded message where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) id: PacketId,
    /// 1: PUBACK; 2: PUBREC (its PUBREL is answered with PUBCOMP, statelessly).
    pub(crate) qos: QoS,
}

impl Origin {
    /// The acknowledgement to send back to the source.
    fn ack(self) -> Option<Packet> {
        match self.qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => Some(Packet::PublishAck(PublishAck::new(self.id))),
            QoS::ExactlyOnce => Some(Packet::PublishReceived(PublishAck::new(self.id))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// QoS 1, waiting for PUBACK.
    Ack,
    /// QoS 2, waiting for PUBREC.
    Rec,
    /// QoS 2, PUBREL sent, waiting for PUBCOMP.
    Comp,
}

/// QoS 2 packet ids a side still owes a PUBCOMP for when its connection failed: on the next
/// connection (if the session survived) they get a PUBREL before any new message takes them.
#[derive(Debug, Default)]
pub(crate) struct Carry {
    pub(crate) local: Vec<PacketId>,
    pub(crate) remote: Vec<PacketId>,
}

/// What happened to a message moved from one side to the other.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) done: u64,
    pub(crate) dropped: u64,
}

/// The sending half of one side, with its flow state.
#[derive(Debug)]
pub(crate) struct Side<W> {
    pub(crate) writer: PacketWriter<W>,
    version: ProtocolVersion,
    next_id: u16,
    inflight: HashMap<u16, (Option<Origin>, Stage)>,
    pending: VecDeque<(Publish, Option<Origin>)>,
    max_inflight: usize,
    max_packet: usize,
    max_qos: QoS,
    retain_available: bool,
}

impl<W: AsyncWrite + Unpin> Side<W> {
    pub(crate) fn new(writer: PacketWriter<W>, version: ProtocolVersion) -> Self {
        Self {
            writer,
            version,
            // 1 and 2 are the bridge's UNSUBSCRIBE and SUBSCRIBE at connect.
            next_id: 3,
            inflight: HashMap::new(),
            pending: VecDeque::new(),
            max_inflight: 100,
            max_packet: usize::MAX,
            max_qos: QoS::ExactlyOnce,
            retain_available: true,
        }
    }

    /// Applies the peer's CONNACK limits.
    pub(crate) fn limits(&mut self, ack: &hermod_proto::ConnectAck, default_inflight: u16) {
        let p = &ack.properties;
        self.max_inflight = usize::from(p.receive_maximum.unwrap_or(default_inflight).max(1));
        if let Some(max) = p.maximum_packet_size {
            self.max_packet = usize::try_from(max).unwrap_or(usize::MAX);
        }
        self.max_qos = match p.maximum_qos {
            Some(0) => QoS::AtMostOnce,
            Some(1) => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        };
        self.retain_available = p.retain_available != Some(0);
    }

    /// Takes over the QoS 2 ids of the previous connection: PUBREL for each if the session
    /// survived (`session_present`), else they are free.
    pub(crate) fn resume(&mut self, carried: Vec<PacketId>, session_present: bool) {
        if !session_present {
            return;
        }
        for id in carried {
            self.inflight.insert(id.get(), (None, Stage::Comp));
            self.queue(&Packet::PublishRelease(PublishAck::new(id)));
        }
    }

    /// The QoS 2 ids in flight, for [`Carry`].
    pub(crate) fn carry(&self) -> Vec<PacketId> {
        let mut ids: Vec<PacketId> = self
            .inflight
            .iter()
            .filter(|(_, (_, stage))| *stage != Stage::Ack)
            .filter_map(|(id, _)| NonZeroU16::new(*id))
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Queues a packet; an encode failure (cannot happen for the packets built here) is
    /// logged and the packet skipped.
    pub(crate) fn queue(&mut self, packet: &Packet) {
        if let Err(e) = self.writer.queue(packet) {
            tracing::warn!(error = %e, "bridge: packet not encoded");
        }
    }

    pub(crate) fn pending_write(&self) -> usize {
        self.writer.pending_write()
    }

    pub(crate) async fn flush(&mut self) -> Result<(), ClientError> {
        self.writer.flush().await
    }

    /// Adds a message to send, in order. False (dropped) for a QoS 0 message past the cap.
    pub(crate) fn push(&mut self, mut publish: Publish, origin: Option<Origin>) -> bool {
        if publish.qos == QoS::AtMostOnce && self.pending.len() >= PENDING_CAP {
            return false;
        }
        publish.qos = publish.qos.min(self.max_qos);
        publish.retain &= self.retain_available;
        self.pending.push_back((publish, origin));
        true
    }

    fn next_free_id(&mut self) -> Option<PacketId> {
        for _ in 0..u16::MAX {
            let id = self.next_id;
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            if !self.inflight.contains_key(&id) {
                return NonZeroU16::new(id);
            }
        }
        None
    }

    /// Moves waiting messages into the writer, in order, while inflight slots and buffer
    /// room last; acknowledgements owed to the source go to `source`.
    pub(crate) fn pump<S: AsyncWrite + Unpin>(&mut self, source: &mut Side<S>) -> Tally {
        let mut tally = Tally::default();
        while self.pending_write() < WRITE_CAP {
            let Some((publish, _)) = self.pending.front() else {
                break;
            };
            if publish.qos != QoS::AtMostOnce && self.inflight.len() >= self.max_inflight {
                break;
            }
            let Some((mut publish, origin)) = self.pending.pop_front() else {
                break;
            };
            let id = if publish.qos == QoS::AtMostOnce {
                None
            } else {
                let Some(id) = self.next_free_id() else {
                    self.pending.push_front((publish, origin));
                    break;
                };
                Some(id)
            };
            publish.packet_id = id;
            let packet = Packet::Publish(publish);
            if encoded_len(&packet, self.version) > self.max_packet
                || self.writer.queue(&packet).is_err()
            {
                tracing::warn!("bridge: message dropped (too large for the other side)");
                tally.dropped += 1;
                source.ack_origin(origin);
                continue;
            }
            match id {
                None => {
                    tally.done += 1;
                    source.ack_origin(origin);
                }
                Some(id) => {
                    let stage = if matches!(&packet, Packet::Publish(p) if p.qos == QoS::ExactlyOnce)
                    {
                        Stage::Rec
                    } else {
                        Stage::Ack
                    };
                    self.inflight.insert(id.get(), (origin, stage));
                }
            }
        }
        tally
    }

    fn ack_origin(&mut self, origin: Option<Origin>) {
        if let Some(ack) = origin.and_then(Origin::ack) {
            self.queue(&ack);
        }
    }

    /// Handles PUBACK / PUBREC / PUBCOMP from this side's peer; the source's acknowledgement
    /// goes to `source`. Unknown ids are ignored (answered with PUBREL for a PUBREC).
    pub(crate) fn on_ack<S: AsyncWrite + Unpin>(
        &mut self,
        packet: &Packet,
        source: &mut Side<S>,
    ) -> Tally {
        let mut tally = Tally::default();
        let settle = |ok: bool, tally: &mut Tally| {
            if ok {
                tally.done += 1;
            } else {
                tally.dropped += 1;
                tracing::warn!("bridge: message refused by the other side");
            }
        };
        match packet {
            Packet::PublishAck(a) => {
                if let Some((origin, Stage::Ack)) = self.inflight.get(&a.packet_id.get()).copied() {
                    self.inflight.remove(&a.packet_id.get());
                    settle(!a.reason.is_error(), &mut tally);
                    source.ack_origin(origin);
                }
            }
            Packet::PublishReceived(a) => {
                let id = a.packet_id.get();
                match self.inflight.get(&id).copied() {
                    Some((origin, Stage::Rec)) => {
                        settle(!a.reason.is_error(), &mut tally);
                        source.ack_origin(origin);
                        if a.reason.is_error() {
                            self.inflight.remove(&id);
                        } else {
                            self.inflight.insert(id, (None, Stage::Comp));
                            self.queue(&Packet::PublishRelease(PublishAck::new(a.packet_id)));
                        }
                    }
                    Some((_, Stage::Comp)) | None if !a.reason.is_error() => {
                        self.queue(&Packet::PublishRelease(PublishAck::new(a.packet_id)));
                    }
                    _ => {}
                }
            }
            Packet::PublishComplete(a) => {
                if let Some((_, Stage::Comp)) = self.inflight.get(&a.packet_id.get()) {
                    self.inflight.remove(&a.packet_id.get());
                }
            }
            _ => {}
        }
        tally
    }
}
