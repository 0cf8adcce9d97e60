//! Acknowledgements of shared-group messages (QoS 1/2) to their JetStream consumer, sent when
//! the broker is done with each message rather than when it was queued for a member: a member
//! on a node that dies before the member acknowledged leaves the message unacknowledged in
//! JetStream, which gives it to another member (on any node) after the consumer's `ack_wait`,
//! `[cluster] shared_redelivery`.
//!
//! Each message handed to the broker carries a [`Settle`]; its outcome comes back here and
//! becomes the JetStream acknowledgement: [`Settled::Done`] an `Ack` (the member acknowledged
//! it, or the broker dropped it by policy and counted it), [`Settled::Returned`] a `Nak` (no
//! member here took it; redelivered at once, to any node). Messages still held are marked in
//! progress every third of `ack_wait`, so that a slow member's node keeps them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use hermod_broker::message::{Settle, Settled};
use tokio::sync::mpsc;
use tracing::debug;

/// How soon a message nobody here took is offered again.
const RETURN_DELAY: Duration = Duration::from_millis(200);

pub(super) enum AckOp {
    /// A message handed to the broker, named by its id.
    Held(u64, Box<jetstream::Message>),
    /// The broker is done with message `id`.
    Settled(u64, Settled),
}

/// The node's side of the acknowledgements: hands out [`Settle`]s.
#[derive(Debug)]
pub(crate) struct SharedAcks {
    tx: mpsc::UnboundedSender<AckOp>,
    next: AtomicU64,
    /// Messages handed to the broker and not yet settled.
    pub(crate) held: std::sync::Arc<AtomicU64>,
}

impl SharedAcks {
    pub(super) fn new() -> (Self, mpsc::UnboundedReceiver<AckOp>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let acks = Self {
            tx,
            next: AtomicU64::new(0),
            held: std::sync::Arc::default(),
        };
        (acks, rx)
    }

    /// Keeps `m` until the broker settles the message it carries: attach the returned
    /// [`Settle`] to that message.
    pub(super) fn track(&self, m: jetstream::Message) -> Settle {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.held.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send(AckOp::Held(id, Box::new(m)));
        let tx = self.tx.clone();
        Settle::new(move |outcome| {
            let _ = tx.send(AckOp::Settled(id, outcome));
        })
    }
}

/// Sends the acknowledgements, in the order the broker settled the messages.
pub(super) async fn shared_acks_task(
    ack_wait: Duration,
    held_count: std::sync::Arc<AtomicU64>,
    mut rx: mpsc::UnboundedReceiver<AckOp>,
) {
    let mut held: HashMap<u64, (Box<jetstream::Message>, Instant)> = HashMap::new();
    let every = ack_wait / 3;
    let mut progress = tokio::time::interval(every);
    progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            op = rx.recv() => match op {
                None => break,
                Some(AckOp::Held(id, m)) => {
                    held.insert(id, (m, Instant::now()));
                }
                Some(AckOp::Settled(id, outcome)) => {
                    let Some((m, _)) = held.remove(&id) else { continue };
                    held_count.fetch_sub(1, Ordering::Relaxed);
                    let kind = match outcome {
                        Settled::Done => AckKind::Ack,
                        Settled::Returned => AckKind::Nak(Some(RETURN_DELAY)),
                    };
                    if let Err(e) = m.ack_with(kind).await {
                        debug!(error = %e, "cluster: shared message ack not sent");
                    }
                }
            },
            _ = progress.tick() => {
                let now = Instant::now();
                for (m, since) in held.values_mut() {
                    if now.duration_since(*since) >= every {
                        *since = now;
                        if let Err(e) = m.ack_with(AckKind::Progress).await {
                            debug!(error = %e, "cluster: shared message progress not sent");
                        }
                    }
                }
            }
        }
    }
}
