//! Encoding of [`MessageRecord`] (queued and retained messages) and [`QueueEntry`].

use super::codec::{R, W};
use super::{DecodeError, MessageRecord, PublisherRecord, QueueEntry, QueueState};

/// A message record with its publisher: version 1 plus the publisher at the end. Written only
/// for messages that have one, so the others stay readable by builds before it; version 1
/// records decode without a publisher.
pub(super) const MESSAGE_V2: u8 = 2;

impl MessageRecord {
    /// Encodes the record.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut w = W::new(40 + self.topic.len() + self.payload.len() + self.properties.len());
        w.str(&self.topic);
        w.bytes(&self.payload);
        w.u8(self.qos);
        w.bool(self.retain);
        w.bytes(&self.properties);
        w.u64(self.received_at_unix_ms);
        w.opt_u64(self.expiry_at_unix_ms);
        // Without a publisher the record stays version 1, which every version reads.
        if let Some(p) = &self.publisher {
            w.0[0] = MESSAGE_V2;
            w.str(&p.client_id);
            w.opt_str(p.username.as_deref());
            w.opt_str(p.peer.as_deref());
        }
        w.0
    }

    /// Decodes a record written by [`MessageRecord::encode`].
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, version) = R::versioned(buf, "message", MESSAGE_V2)?;
        let mut m = MessageRecord {
            topic: r.string()?,
            payload: r.bytes()?,
            qos: r.u8()?,
            retain: r.bool()?,
            properties: r.bytes()?,
            received_at_unix_ms: r.u64()?,
            expiry_at_unix_ms: r.opt_u64()?,
            publisher: None,
        };
        // Version 1 ends here; version 2 adds the publisher.
        if version >= MESSAGE_V2 {
            m.publisher = Some(PublisherRecord {
                client_id: r.string()?,
                username: r.opt_string()?,
                peer: r.opt_string()?,
            });
        }
        r.finish()?;
        Ok(m)
    }
}

impl QueueEntry {
    /// Encodes the record.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut w = W::new(24 + self.subscription_ids.len() * 4);
        w.u64(self.message_id);
        w.u8(self.qos);
        w.bool(self.retain);
        w.u32(u32::try_from(self.subscription_ids.len()).unwrap_or(u32::MAX));
        for id in &self.subscription_ids {
            w.u32(*id);
        }
        match &self.shared {
            None => w.u8(0),
            Some((group, filter)) => {
                w.u8(1);
                w.str(group);
                w.str(filter);
            }
        }
        match self.state {
            QueueState::Queued => w.u8(0),
            QueueState::Sent { packet_id } => {
                w.u8(1);
                w.u16(packet_id);
            }
            QueueState::Released { packet_id } => {
                w.u8(2);
                w.u16(packet_id);
            }
        }
        w.0
    }

    /// Decodes a record written by [`QueueEntry::encode`].
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = R::new(buf, "queue entry")?;
        let message_id = r.u64()?;
        let qos = r.u8()?;
        let retain = r.bool()?;
        let n = r.count(4)?;
        let mut subscription_ids = Vec::with_capacity(n);
        for _ in 0..n {
            subscription_ids.push(r.u32()?);
        }
        let shared = if r.tag()? {
            Some((r.string()?, r.string()?))
        } else {
            None
        };
        let state = match r.u8()? {
            0 => QueueState::Queued,
            1 => QueueState::Sent {
                packet_id: r.u16()?,
            },
            2 => QueueState::Released {
                packet_id: r.u16()?,
            },
            x => return Err(r.err(&format!("invalid state {x}"))),
        };
        r.finish()?;
        Ok(QueueEntry {
            message_id,
            qos,
            retain,
            subscription_ids,
            shared,
            state,
        })
    }
}
