//! What the operator can see of, and ask of, a connected client: facts fixed at CONNECT, a few
//! gauges the connection keeps current, and the command channel into its task.
//!
//! A connected session's state (subscriptions, inflight window) belongs to its connection task
//! and is never locked; the admin API asks the task for it through [`Command`]s, answered
//! between two packets. So an exact look-up costs one message to one task, never a scan.
//!
//! The command queue is a [`Commands`] (a flag, a waker and a lock-free-when-idle queue), not a
//! tokio channel: a channel allocates a block of slots per connection (about 2 KiB, for a queue
//! that is almost always empty) and costs its `recv` poll on every pass of the connection's loop;
//! this costs one atomic load per pass and nothing in memory until a command arrives.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::SystemTime;

use futures_util::task::AtomicWaker;
use hermod_proto::{ProtocolVersion, ReasonCode, SubscriptionOptions};
use tokio::sync::oneshot;

use super::SubscriptionEntry;
use super::mailbox::SessionHandle;

/// Commands a connection task accepts, queued at most this deep (a full queue answers "busy").
pub(crate) const COMMAND_QUEUE: usize = 16;

/// A request to a connection task from the admin side.
#[derive(Debug)]
pub(crate) enum Command {
    /// Subscribe the client as if it had sent SUBSCRIBE (the subscribe ACL applies, retained
    /// messages are sent); answers with the SUBACK reason code it would have got (v5 value).
    Subscribe {
        filter: String,
        options: SubscriptionOptions,
        reply: oneshot::Sender<ReasonCode>,
    },
    /// Unsubscribe the client; answers whether the subscription existed.
    Unsubscribe {
        filter: String,
        reply: oneshot::Sender<bool>,
    },
    /// The session's subscriptions now.
    Subscriptions {
        reply: oneshot::Sender<Vec<(String, SubscriptionEntry)>>,
    },
    /// The session's subscriptions, and whether nothing is queued or in flight (as one
    /// consistent answer from the connection task, between two packets).
    State {
        reply: oneshot::Sender<(Vec<(String, SubscriptionEntry)>, bool)>,
    },
}

/// One connected client, as the registry shows it to the admin side.
#[derive(Debug)]
pub struct Live {
    pub(crate) peer: SocketAddr,
    pub(crate) protocol: ProtocolVersion,
    pub(crate) username: Option<Arc<str>>,
    pub(crate) connected_at: SystemTime,
    pub(crate) keep_alive: u16,
    pub(crate) clean_start: bool,
    /// Session expiry interval in seconds as negotiated (`None`: never expires).
    pub(crate) expiry_interval: Option<u64>,
    pub(crate) tls: bool,
    /// The session's mailbox (its queue length).
    pub(crate) handle: Arc<SessionHandle>,
    /// Outbound QoS 1/2 messages in flight, as of the connection's last pass.
    pub(crate) inflight: AtomicUsize,
    /// Subscriptions the session holds, as of the connection's last change.
    pub(crate) subscriptions: AtomicUsize,
    pub(crate) commands: Commands,
}

/// A connection's command queue: bounded ([`COMMAND_QUEUE`]), one consumer (the connection
/// task), woken through an [`AtomicWaker`].
#[derive(Debug, Default)]
pub(crate) struct Commands {
    queue: Mutex<VecDeque<Command>>,
    pending: AtomicBool,
    waker: AtomicWaker,
}

impl Commands {
    /// Queues a command and wakes the connection; gives it back when the queue is full.
    pub(crate) fn send(&self, command: Command) -> Result<(), Command> {
        {
            let mut q = self
                .queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if q.len() >= COMMAND_QUEUE {
                return Err(command);
            }
            q.push_back(command);
        }
        self.pending.store(true, Ordering::Release);
        self.waker.wake();
        Ok(())
    }

    /// Takes the queued commands (none: no lock taken).
    pub(crate) fn take(&self) -> VecDeque<Command> {
        if !self.pending.swap(false, Ordering::AcqRel) {
            return VecDeque::new();
        }
        std::mem::take(
            &mut *self
                .queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Resolves once a command is waiting (for the connection loop's `select!`).
    pub(crate) async fn ready(&self) {
        std::future::poll_fn(|cx| {
            if self.pending.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            if self.pending.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

impl Live {
    pub(crate) fn set_inflight(&self, n: usize) {
        self.inflight.store(n, Ordering::Relaxed);
    }

    pub(crate) fn set_subscriptions(&self, n: usize) {
        self.subscriptions.store(n, Ordering::Relaxed);
    }

    pub(crate) fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    pub(crate) fn subscriptions(&self) -> usize {
        self.subscriptions.load(Ordering::Relaxed)
    }
}
