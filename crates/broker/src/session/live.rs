//! What the operator can see of, and ask of, a connected client: facts fixed at CONNECT, a few
//! gauges the connection keeps current, and the command channel into its task.
//!
//! A connected session's state (subscriptions, inflight window) belongs to its connection task
//! and is never locked; the admin API asks the task for it through [`Command`]s, answered
//! between two packets. So an exact look-up costs one message to one task, never a scan.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use hermod_proto::{ProtocolVersion, ReasonCode, SubscriptionOptions};
use tokio::sync::{mpsc, oneshot};

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
    pub(crate) commands: mpsc::Sender<Command>,
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
