//! The connection's side of durable storage: session records, queue entries removed on
//! acknowledgement, acknowledgements held back until their store commit, and paging a stored
//! queue back into memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hermod_proto::{Packet, ReasonCode};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Connection, End};
use crate::message::ClientId;
use crate::shared::Shared;
use crate::store::{Op, StoreError};

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Connection<S> {
    /// Writes the session record (persistent sessions with a store only; not waited for).
    pub(super) fn persist_session(&self, online: bool) {
        if self.durable {
            let record =
                crate::persist::session_record(&self.session, self.neg.version.level(), online);
            self.store_detached(vec![Op::PutSession(self.client_id.to_string(), record)]);
        }
    }

    /// In a cluster, a persistent session's record follows its subscriptions and whether it
    /// is online (see [`crate::api::Backbone::session_changed`]).
    pub(super) fn session_changed(&self) {
        if !self.internal
            && self.session.is_persistent()
            && let Some(b) = self.shared.router.backbone()
        {
            b.session_changed(&self.client_id);
        }
    }

    /// Submits store ops without waiting for them.
    pub(super) fn store_detached(&self, ops: Vec<Op>) {
        if let Some(p) = &self.shared.persistence {
            p.submit_detached(ops);
        }
    }

    /// Submits store ops that the next acknowledgement must wait for.
    pub(super) fn store_awaited(&mut self, ops: Vec<Op>) {
        if let Some(p) = &self.shared.persistence {
            self.pending_commits.push(p.store.submit(ops));
        }
    }

    /// Removes an acknowledged (or dropped) stored delivery from the session's durable queue.
    pub(super) fn dequeue(&self, seq: Option<u64>) {
        if let Some(seq) = seq {
            self.store_detached(vec![Op::Dequeue(self.client_id.to_string(), seq)]);
        }
    }

    /// Queues a PUBACK/PUBREC: written now, or after the pending store commits when there are
    /// any (acks keep the order of their PUBLISH packets [MQTT-4.6.0-2]). The commits submitted
    /// since the previous ack are this one's: it reports their failure.
    pub(super) fn ack(&mut self, packet: Packet) {
        if self.pending_commits.is_empty() {
            self.write(&packet);
        } else {
            self.deferred.push((packet, self.pending_commits.len()));
        }
    }

    /// Waits for the pending store commits, then writes the acknowledgements that waited for them.
    ///
    /// An ack whose commit failed (a disk error, the store unavailable) never reports success:
    /// v5 sends it with 0x80 (unspecified error; a PUBREC 0x80 ends the QoS 2 flow, so its packet
    /// id is forgotten) and keeps the connection; v3.1.1 has no way to say no, so the
    /// connection is closed without it.
    pub(super) async fn settle(&mut self) -> Result<(), End> {
        let shutdown = self.shared.shutdown.clone();
        let mut failed = Vec::new();
        for (i, commit) in std::mem::take(&mut self.pending_commits)
            .into_iter()
            .enumerate()
        {
            let r = tokio::select! {
                r = commit => r,
                () = shutdown.cancelled() => return Err(End::Shutdown),
            };
            if let Err(e) = r {
                if matches!(e, StoreError::Unavailable { .. }) {
                    // The store logged the outage once; one line per publish would flood.
                    tracing::debug!(client_id = %self.client_id, error = %e, "store commit failed: not acknowledging");
                } else {
                    tracing::error!(client_id = %self.client_id, error = %e, "store commit failed: not acknowledging");
                }
                if !self.neg.version.is_v5() {
                    return Err(End::StoreFailed);
                }
                failed.push(i);
            }
        }
        let mut from = 0;
        for (mut packet, upto) in std::mem::take(&mut self.deferred) {
            if failed.iter().any(|i| (from..upto).contains(i)) {
                self.refuse_ack(&mut packet);
            }
            from = upto;
            self.write(&packet);
        }
        Ok(())
    }

    /// Turns a PUBACK/PUBREC into its v5 0x80 form (the message was not stored).
    fn refuse_ack(&mut self, packet: &mut Packet) {
        match packet {
            Packet::PublishAck(a) if !a.reason.is_error() => {
                a.reason = ReasonCode::UNSPECIFIED_ERROR
            }
            Packet::PublishReceived(a) if !a.reason.is_error() => {
                a.reason = ReasonCode::UNSPECIFIED_ERROR;
                // The flow ends here: the id is free again, in memory and (once the store
                // writes the queued `PutInflightIn`) on disk.
                let pid = a.packet_id.get();
                if self.session.inflight_in.remove(&pid) && self.durable {
                    self.store_detached(vec![Op::DeleteInflightIn(
                        self.client_id.to_string(),
                        pid,
                    )]);
                }
            }
            _ => {}
        }
    }

    /// Starts paging the next part of the session's on-disk queue into memory, when the
    /// in-memory window has room and entries wait on disk.
    pub(super) fn maybe_load(&self) {
        let Some(p) = self.shared.persistence.clone() else {
            return;
        };
        let handle = self.session.handle.clone();
        let Some((from, n)) = handle.needs_load(256) else {
            return;
        };
        tokio::spawn(async move {
            let upto = handle.reserved_upto();
            // A barrier: every reservation below `upto` is committed once this resolves (its
            // write was submitted before the barrier, and the writer commits in submission
            // order), so a short page means "nothing more".
            p.wait_for_reservations();
            if let Err(e) = p.store.submit(Vec::new()).await {
                if matches!(e, StoreError::Unavailable { .. }) {
                    // A disk error: try again once the store is back (or in a while), waking
                    // the connection so that it asks again.
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while !p.healthy() && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    handle.loaded(Vec::new(), None);
                } else {
                    handle.load_failed();
                }
                return;
            }
            let store = p.store.clone();
            let cid = handle.client_id.to_string();
            let res = tokio::task::spawn_blocking(move || {
                store.load_queue(&cid, Some(from.saturating_sub(1)), n)
            })
            .await;
            match res {
                Ok(Ok(entries)) => {
                    let complete = entries.len() < n;
                    let (now, now_ms) = (Instant::now(), crate::persist::unix_ms_now());
                    let page = entries
                        .iter()
                        .map(|(seq, e, m)| {
                            let message =
                                Arc::new(crate::persist::message_from_record(m, now, now_ms));
                            crate::persist::delivery_from_entry(*seq, e, message)
                        })
                        .collect();
                    handle.loaded(page, complete.then_some(upto));
                }
                Ok(Err(e)) => {
                    tracing::error!(client_id = %handle.client_id, error = %e, "cannot load queued messages");
                    handle.load_failed();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(_) => handle.load_failed(),
            }
        });
    }
}

/// Writes the record of a session that just went offline (with its disconnect time, so
/// expiry keeps counting across a restart).
pub(super) fn store_offline(
    shared: &Shared,
    client_id: &ClientId,
    record: Option<crate::store::SessionRecord>,
) {
    if let (Some(record), Some(p)) = (record, &shared.persistence) {
        p.submit_detached(vec![Op::PutSession(client_id.to_string(), record)]);
    }
}

/// Whether a CONNECT asks for a session that needs the store: a persistent one (v3.1.1 clean
/// session 0; v5 a session expiry), or possibly the resumption of one (clean start 0).
pub(super) fn needs_store(connect: &hermod_proto::Connect) -> bool {
    !connect.clean_start
        || (connect.protocol.is_v5()
            && connect.properties.session_expiry_interval.unwrap_or(0) != 0)
}

/// While a disk error keeps the store unavailable, a session that needs it is refused at
/// CONNECT (v5 0x88, v3.1.1 return code 3 "server unavailable") rather than given an empty
/// queue. True when this CONNECT is to be refused for it.
pub(super) fn store_down_for(shared: &Shared, connect: &hermod_proto::Connect) -> bool {
    let down = shared.persistence.as_ref().is_some_and(|p| !p.healthy());
    down && needs_store(connect)
}
