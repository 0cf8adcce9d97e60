//! A connection task's own counters ([`Local`]): plain integers, flushed into the shards.

use std::time::Duration;

use hermod_proto::QoS;

use crate::api::DropReason;

use super::*;

/// A connection task's own counters: plain integers, added to the shared shards by
/// [`Metrics::flush`]. The counters are allocated at the first count and given back at each
/// flush: most connections are idle, and the ~110 counters would be a sixth of an idle
/// connection's memory (one small allocation per busy loop turn instead).
#[derive(Debug, Clone, Default)]
pub(crate) struct Local {
    pub(super) v: Option<Box<[u64; slot::FIXED]>>,
    pub(super) dirty: u128,
}

impl Local {
    #[inline]
    fn add(&mut self, i: usize, n: u64) {
        let v = self.v.get_or_insert_with(|| Box::new([0; slot::FIXED]));
        v[i] += n;
        self.dirty |= 1 << i;
    }

    /// A PUBLISH received with this QoS and payload size.
    #[inline]
    pub(crate) fn publish_received(&mut self, qos: QoS, payload: usize) {
        self.add(slot::MSG_RECEIVED + qos as usize, 1);
        self.add(slot::PUB_BYTES_RECEIVED, payload as u64);
    }

    /// A PUBLISH sent with this QoS and payload size.
    #[inline]
    pub(crate) fn publish_sent(&mut self, qos: QoS, payload: usize) {
        self.add(slot::MSG_SENT + qos as usize, 1);
        self.add(slot::PUB_BYTES_SENT, payload as u64);
    }

    /// A packet of type `t` (see [`packet_type`]) received.
    #[inline]
    pub(crate) fn packet_received(&mut self, t: usize) {
        self.add(slot::PACKETS_RECEIVED + (t & 15), 1);
    }

    /// A packet of type `t` sent.
    #[inline]
    pub(crate) fn packet_sent(&mut self, t: usize) {
        self.add(slot::PACKETS_SENT + (t & 15), 1);
    }

    #[inline]
    pub(crate) fn bytes_received(&mut self, n: usize) {
        self.add(slot::BYTES_RECEIVED, n as u64);
    }

    #[inline]
    pub(crate) fn bytes_sent(&mut self, n: usize) {
        if n > 0 {
            self.add(slot::BYTES_SENT, n as u64);
        }
    }

    /// An ACL check and its answer.
    #[inline]
    pub(crate) fn acl(&mut self, kind: AclKind, allowed: bool) {
        self.add(slot::ACL + kind as usize * 2 + usize::from(!allowed), 1);
    }

    /// A delivery dropped (the caller emits the event).
    #[inline]
    pub(crate) fn dropped(&mut self, reason: DropReason) {
        self.add(slot::DROPPED + drop_index(reason), 1);
    }

    /// Publish-to-deliver latency of one delivery.
    #[inline]
    pub(crate) fn latency(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.add(slot::LATENCY + bucket(ns), 1);
        self.add(slot::LATENCY + BOUNDS_NS.len() + 1, ns);
    }
}
