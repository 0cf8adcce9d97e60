//! What the other nodes publish, on its way in: the one path from the backbone's bytes to the
//! broker that both the core QoS 0 subscriptions (`interest`) and the stream consumer for QoS
//! 1/2 (`stored`) take, so that both skip, count and hand on a message the same way.

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use hermod_broker::api::BrokerHandle;
use hermod_broker::message::Message;

use super::{Inner, unix_ms};
use crate::wire::{self, WireError};

/// Decodes one message from the backbone and hands it to the broker (`publish_remote`),
/// counted as received, unless this node sent it (the stream holds this node's own messages
/// too) or `wanted` declines it (neither counted). A message that does not decode is counted
/// as malformed and its error returned, for the caller to log with where it came from.
pub(super) async fn publish_remote(
    inner: &Inner,
    broker: &BrokerHandle,
    payload: Bytes,
    wanted: impl FnOnce(&Message) -> bool,
) -> Result<(), WireError> {
    match wire::decode(payload, Instant::now(), unix_ms()) {
        Ok(r) if r.node == inner.config.node => {}
        Ok(r) if !wanted(&r.message) => {}
        Ok(r) => {
            inner.counters.received.fetch_add(1, Ordering::Relaxed);
            broker.publish_remote(r.message).await;
        }
        Err(e) => {
            inner.counters.malformed.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
    }
    Ok(())
}
