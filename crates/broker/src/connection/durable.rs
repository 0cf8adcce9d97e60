//! The connection's side of durable storage: session records, queue entries removed on
//! acknowledgement, acknowledgements held back until their store commit, and paging a stored
//! queue back into memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hermod_proto::{Packet, ReasonCode};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Connection, End, violation};
use crate::broker::Shared;
use crate::message::ClientId;
use crate::store::Op;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Connection<S> {
    /// Writes the session record (persistent sessions with a store only; not waited for).
    pub(super) fn persist_session(&self, online: bool) {
        if self.durable {
            let record =
                crate::persist::session_record(&self.session, self.version.level(), online);
            self.store_detached(vec![Op::PutSession(self.client_id.to_string(), record)]);
        }
    }

    /// Submits store ops without waiting for them.
    pub(super) fn store_detached(&self, ops: Vec<Op>) {
        if let Some(p) = &self.shared.router.persistence {
            p.submit_detached(ops);
        }
    }

    /// Submits store ops that the next acknowledgement must wait for.
    pub(super) fn store_awaited(&mut self, ops: Vec<Op>) {
        if let Some(p) = &self.shared.router.persistence {
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
    /// any (acks keep the order of their PUBLISH packets [MQTT-4.6.0-2]).
    pub(super) fn ack(&mut self, packet: Packet) {
        if self.pending_commits.is_empty() {
            self.write(&packet);
        } else {
            self.deferred.push(packet);
        }
    }

    /// Waits for the pending store commits, then writes the acknowledgements that waited for them.
    pub(super) async fn settle(&mut self) -> Result<(), End> {
        let shutdown = self.shared.shutdown.clone();
        for commit in std::mem::take(&mut self.pending_commits) {
            let r = tokio::select! {
                r = commit => r,
                () = shutdown.cancelled() => return Err(End::Shutdown),
            };
            if let Err(e) = r {
                tracing::error!(client_id = %self.client_id, error = %e, "store commit failed: not acknowledging");
                return Err(violation(
                    ReasonCode::UNSPECIFIED_ERROR,
                    "store commit failed",
                ));
            }
        }
        for packet in std::mem::take(&mut self.deferred) {
            self.write(&packet);
        }
        Ok(())
    }

    /// Starts paging the next part of the session's on-disk queue into memory, when the
    /// in-memory window has room and entries wait on disk.
    pub(super) fn maybe_load(&self) {
        let Some(p) = self.shared.router.persistence.clone() else {
            return;
        };
        let handle = self.session.handle.clone();
        let Some((from, n)) = handle.needs_load(256) else {
            return;
        };
        tokio::spawn(async move {
            let upto = handle.reserved_upto();
            // A barrier: every reservation below `upto` is committed once this resolves (the
            // writer commits in submission order), so a short page means "nothing more".
            if p.store.submit(Vec::new()).await.is_err() {
                handle.load_failed();
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
    if let (Some(record), Some(p)) = (record, &shared.router.persistence) {
        p.submit_detached(vec![Op::PutSession(client_id.to_string(), record)]);
    }
}
