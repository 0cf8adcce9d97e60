//! The broker's side of the backbone ([`Backbone`]): what the broker calls, synchronously, on
//! every publish, subscribe, will and connect. It only queues work for the tasks, so that the
//! broker never waits on NATS.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use hermod_broker::api::{Backbone, Claim, MovedSession, Replay};
use hermod_broker::message::Message;
use hermod_broker::store::{Commit, StoreError};
use hermod_proto::QoS;

use super::out::Out;
use super::wills::WillOp;
use super::{Inner, unix_ms};
use crate::wire;

/// The broker's side of the backbone: cheap, synchronous, never blocks.
#[derive(Debug)]
pub(super) struct Hook(pub(super) Arc<Inner>);

/// Topics that stay on their node: `$SYS` (each node reports itself) and the broker's own
/// services (`$hermod/...`: shadows and presence run per node).
pub(super) fn node_local(topic: &str) -> bool {
    topic.starts_with("$SYS/") || topic == "$SYS" || topic.starts_with("$hermod/")
}

impl Backbone for Hook {
    fn forward(&self, message: &Arc<Message>) -> Option<Commit> {
        if node_local(&message.topic) {
            return None;
        }
        let inner = &self.0;
        let size = message.size();
        let queued = inner.queued_bytes.fetch_add(size, Ordering::Relaxed);
        if queued + size > inner.config.max_queued_bytes {
            inner.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            inner
                .counters
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
            return (message.qos != QoS::AtMostOnce).then(|| {
                Commit::failed(StoreError::Backbone {
                    detail: "the queue to NATS is full".into(),
                })
            });
        }
        let (done, commit) = if message.qos == QoS::AtMostOnce {
            (None, None)
        } else {
            let (tx, commit) = Commit::pending();
            (Some(tx), Some(commit))
        };
        let out = Out {
            message: message.clone(),
            size,
            done,
            retained_only: false,
        };
        if inner.out.send(out).is_err() {
            // The cluster has stopped.
            inner.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            return (message.qos != QoS::AtMostOnce).then(|| {
                Commit::failed(StoreError::Backbone {
                    detail: "the cluster service has stopped".into(),
                })
            });
        }
        commit
    }

    fn carries(&self, topic: &str) -> bool {
        !node_local(topic)
    }

    fn subscribed(&self, filter: &str) {
        self.0.change_interest(filter, true);
    }

    fn unsubscribed(&self, filter: &str) {
        self.0.change_interest(filter, false);
    }

    fn will(&self, client_id: &str, will: Option<&Message>) {
        let op = match will {
            Some(m) => WillOp::Put(
                client_id.to_owned(),
                wire::encode(m, &self.0.config.node, Instant::now(), unix_ms()),
            ),
            None => WillOp::Delete(client_id.to_owned()),
        };
        let _ = self.0.will_ops.send(op);
    }

    fn will_delayed(&self, client_id: &str, will: &Message, delay: std::time::Duration) {
        let due = unix_ms().saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        let bytes = wire::encode(will, &self.0.config.node, Instant::now(), unix_ms());
        let op = WillOp::Put(
            client_id.to_owned(),
            super::wills::delayed_value(due, &bytes),
        );
        let _ = self.0.will_ops.send(op);
    }

    fn connected(&self, client_id: &str) {
        let at = unix_ms();
        self.0
            .recent_connects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(client_id.to_owned(), at);
        let _ = self.0.connects.send((client_id.to_owned(), at));
        self.0.sessions.connected(client_id);
    }

    fn refuses(&self, filter: &str) -> bool {
        self.0.refuses_group(filter)
    }

    fn retained_deleted(&self, topic: &str) {
        if node_local(topic) {
            return;
        }
        let message = Arc::new(Message {
            topic: topic.into(),
            payload: bytes::Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: hermod_proto::PublishProperties::default(),
            publisher: None,
            received_at: None,
            origin: None,
            expires_at: None,
            settle: None,
        });
        // In the same ordered pipeline as retained messages published here.
        self.0
            .queued_bytes
            .fetch_add(message.size(), Ordering::Relaxed);
        let out = Out {
            size: message.size(),
            message,
            done: None,
            retained_only: true,
        };
        let _ = self.0.out.send(out);
    }

    fn session_changed(&self, client_id: &str) {
        self.0.sessions.changed(client_id);
    }

    fn claim(
        &self,
        client_id: &str,
        username: Option<&str>,
        clean_start: bool,
        persistent: bool,
    ) -> Claim {
        Box::pin(crate::sessions::claim(
            self.0.clone(),
            client_id.to_owned(),
            username.map(str::to_owned),
            clean_start,
            persistent,
        ))
    }

    fn replay(&self, client_id: &str, moved: &MovedSession, limit: usize) -> Replay {
        Box::pin(crate::sessions::replay(
            self.0.clone(),
            client_id.to_owned(),
            moved.clone(),
            limit,
        ))
    }
}
