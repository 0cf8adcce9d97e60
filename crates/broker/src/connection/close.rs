//! The end of a connection: the closing DISCONNECT (v5), the will, and handing the session back
//! to the registry (offline, to a connection that took over, or ended).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hermod_proto::{
    Disconnect, DisconnectProperties, LastWill, Packet, PublishProperties, ReasonCode,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{debug, info};

use super::{Connection, End, durable};
use crate::auth::ClientIdentity;
use crate::message::{ClientId, Message};
use crate::metrics::DisconnectReason;
use crate::session::Owner;
use crate::session::registry::Detached;
use crate::shared::Will;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Connection<S> {
    /// Sends the closing DISCONNECT (v5), publishes or schedules the will, and gives the session
    /// back to the registry.
    pub(super) async fn finish(mut self, end: End) {
        let v5 = self.neg.version.is_v5();
        // The kick token also serves operators: if no other connection holds the client id, it
        // was not a takeover.
        // (A takeover by another node of the cluster leaves this connection the holder here.)
        let remote = self.shared.registry.taken_over_remotely(self.conn_id);
        let end = if matches!(end, End::TakenOver)
            && !remote
            && self.shared.registry.holder(&self.client_id) == Some(self.conn_id)
        {
            End::Kicked
        } else {
            end
        };
        let server_reason = match &end {
            End::Violation(code, _) => Some(*code),
            End::StoreFailed => Some(ReasonCode::UNSPECIFIED_ERROR),
            End::KeepAliveTimeout => Some(ReasonCode::KEEP_ALIVE_TIMEOUT),
            End::TakenOver => Some(ReasonCode::SESSION_TAKEN_OVER),
            End::Kicked => Some(ReasonCode::ADMINISTRATIVE_ACTION),
            End::Shutdown => Some(ReasonCode::SERVER_SHUTTING_DOWN),
            _ => None,
        };
        match &end {
            End::Violation(code, why) => {
                self.shared.metrics.protocol_error();
                info!(client_id = %self.client_id, peer = %self.peer(), reason = %code, "{why}; connection closed");
            }
            End::StoreFailed => {
                let reason = ReasonCode::UNSPECIFIED_ERROR;
                info!(client_id = %self.client_id, peer = %self.peer(), %reason, "store commit failed; connection closed");
            }
            End::Lost(e) => debug!(client_id = %self.client_id, error = ?e, "connection lost"),
            End::Kicked => {
                info!(client_id = %self.client_id, peer = %self.peer(), "disconnected by an operator")
            }
            other => debug!(client_id = %self.client_id, end = ?other, "connection closed"),
        }
        if v5 && let Some(reason) = server_reason {
            // Whatever was produced before the violation (acks of pipelined packets) goes first.
            let d = Disconnect {
                reason,
                properties: DisconnectProperties::default(),
            };
            self.write(&Packet::Disconnect(d));
            self.stats.bytes_sent(self.wbuf.len());
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                self.stream.write_all(&self.wbuf).await?;
                self.stream.flush().await
            })
            .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.shutdown()).await;
        let metrics = &self.shared.metrics;
        metrics.disconnected(disconnect_reason(&end));
        metrics.client_closed();
        metrics.flush(&mut self.stats);

        // Will: published on abnormal ends [MQTT-3.1.2-8]; discarded on DISCONNECT 0x00
        // [MQTT-3.1.2-10] and at server shutdown. On takeover, v5 publishes it (3.1.4, subject to
        // the will delay); for 3.1.1 Hermod does as Mosquitto does and discards it.
        let publish_will = match end {
            End::Normal | End::Shutdown => false,
            End::TakenOver => v5,
            End::NormalWithWill
            | End::Lost(_)
            | End::Violation(..)
            | End::StoreFailed
            | End::Kicked
            | End::KeepAliveTimeout => true,
        };
        let had_will = self.will.is_some();
        let mut will = self.will.take().filter(|_| publish_will);
        if matches!(end, End::TakenOver)
            && will
                .as_ref()
                .is_some_and(|w| w.properties.will_delay_interval.unwrap_or(0) > 0)
        {
            // The new connection for this client id already exists, which cancels a delayed will [MQTT-3.1.3-9].
            will = None;
        }

        let offline_record = self.durable.then(|| {
            crate::persist::session_record(&self.session, self.neg.version.level(), false)
        });
        // A will waiting for its delay is stored with the offline session, so that it is still
        // published (once) if the broker restarts in between; the record without it is written
        // back when it has been published.
        let delayed = will.as_ref().filter(|w| {
            let d = Duration::from_secs(u64::from(w.properties.will_delay_interval.unwrap_or(0)));
            !self.session.expiry.map_or(d, |e| d.min(e)).is_zero()
        });
        // In a cluster, the other nodes keep a delayed will (to publish when it is due if this
        // node dies meanwhile) and forget any other: this node publishes it now, or never.
        if had_will && let Some(b) = self.shared.router.backbone() {
            match delayed {
                Some(w) => {
                    let d = u64::from(w.properties.will_delay_interval.unwrap_or(0));
                    let d = self
                        .session
                        .expiry
                        .map_or(Duration::from_secs(d), |e| Duration::from_secs(d).min(e));
                    let message = crate::persist::will_message(
                        &crate::persist::will_record(w),
                        &self.client_id,
                        std::time::Instant::now(),
                    );
                    b.will_delayed(&self.client_id, &message, d);
                }
                None => b.will(&self.client_id, None),
            }
        }
        let (offline_record, will_clear) = match (offline_record, delayed) {
            (Some(rec), Some(w)) => {
                let mut with_will = rec.clone();
                with_will.will = Some(crate::persist::will_record(w));
                (Some(with_will), Some(rec))
            }
            (rec, _) => (rec, None),
        };
        let persistent_in_cluster = !self.internal
            && self.session.is_persistent()
            && self.shared.router.backbone().is_some();
        let session = self.session;
        session.handle.set_online(false);
        let expiry = session.expiry;
        let owner = session.owner.clone();
        // Shared-subscription deliveries this member has not finished go to another member.
        let mut session = session;
        let mut orphans = session.take_shared_inflight();
        orphans.extend(session.handle.take_shared());
        let auth = self.shared.auth.load();
        let gate = auth.filters_receive().then_some(&**auth);
        for d in orphans {
            // Handed to another member (its stored entry here is released in the same submission).
            crate::deliver::reroute_shared(
                &self.shared.router,
                self.shared.persistence.as_deref(),
                &self.client_id,
                d,
                gate,
            );
        }
        match self
            .shared
            .registry
            .detach(&self.client_id, self.conn_id, session)
        {
            Detached::Offline(Some(after)) => {
                durable::store_offline(&self.shared, &self.client_id, offline_record);
                self.shared
                    .arm_expiry(self.client_id.clone(), self.conn_id, after)
            }
            Detached::Offline(None) => {
                durable::store_offline(&self.shared, &self.client_id, offline_record)
            }
            Detached::HandedOver => {}
            Detached::Ended(s) => self.shared.end_session(s),
        }
        if persistent_in_cluster && let Some(b) = self.shared.router.backbone() {
            b.session_changed(&self.client_id);
        }
        if let Some(will) = will {
            let will_delay = will.properties.will_delay_interval.unwrap_or(0);
            let publisher = self.identity.clone();
            let mut will = will_to_publish(*will, &self.client_id, publisher, owner);
            will.peer = Some(self.origin.peer.ip());
            let delay = Duration::from_secs(u64::from(will_delay));
            let delay = expiry.map_or(delay, |e| delay.min(e));
            self.shared
                .schedule_will(&self.client_id, self.conn_id, will, delay, will_clear);
        }
        info!(client_id = %self.client_id, "client disconnected");
        self.shared
            .events
            .emit(|| crate::api::Event::ClientDisconnected {
                client_id: self.client_id.clone(),
                reason: end_name(&end).to_owned(),
            });
        if server_reason.is_some() && !matches!(end, End::Shutdown) {
            // The server ended it (DISCONNECT sent to v5 clients): let the client read it. Not
            // at shutdown, which must not wait for clients that keep their connection open.
            linger(&mut self.stream).await;
        }
    }
}

/// How long a connection the server closed keeps reading (and discarding) what the client
/// still sends, and how much of it.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1024 * 1024;

/// After the server has sent its last packet (DISCONNECT, a refusing CONNACK) and shut down its
/// write side: reads and discards the client's input until it closes too, for at most
/// [`LINGER`] and [`LINGER_BYTES`]. Closing a socket with unread input makes the kernel answer
/// with a reset, and a reset can destroy the reason code still on its way to the client (which
/// is typically still sending when the server ends the connection).
pub(super) async fn linger<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut buf = [0u8; 4096];
    let mut total = 0usize;
    let _ = tokio::time::timeout(LINGER, async {
        while total < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

/// The message a CONNECT's will becomes, published as `publisher`; it is published now, or after
/// min(will delay, session expiry) unless a new connection for the client id arrives first
/// [MQTT-3.1.3-9].
fn will_to_publish(
    will: LastWill,
    client_id: &ClientId,
    publisher: Arc<ClientIdentity>,
    owner: Owner,
) -> Will {
    let now = Instant::now();
    let props = will.properties;
    let message = Message {
        topic: will.topic.as_str().into(),
        payload: will.payload,
        qos: will.qos,
        retain: will.retain,
        properties: PublishProperties {
            payload_format_indicator: props.payload_format_indicator,
            message_expiry_interval: props.message_expiry_interval,
            content_type: props.content_type,
            response_topic: props.response_topic,
            correlation_data: props.correlation_data,
            user_properties: props.user_properties,
            ..PublishProperties::default()
        },
        publisher: Some(client_id.clone()),
        received_at: None,
        origin: None,
        expires_at: props
            .message_expiry_interval
            .map(|s| now + Duration::from_secs(u64::from(s))),
        settle: None,
    };
    Will {
        message,
        publisher,
        owner,
        peer: None,
    }
}

/// How a connection ended, for the counters.
fn disconnect_reason(end: &End) -> DisconnectReason {
    match end {
        End::Normal | End::NormalWithWill => DisconnectReason::Normal,
        End::Lost(_) => DisconnectReason::Lost,
        End::Violation(..) => DisconnectReason::ProtocolError,
        End::StoreFailed => DisconnectReason::StoreFailed,
        End::KeepAliveTimeout => DisconnectReason::Keepalive,
        End::TakenOver => DisconnectReason::TakenOver,
        End::Kicked => DisconnectReason::Kicked,
        End::Shutdown => DisconnectReason::Shutdown,
    }
}

/// How a connection ended, for the event stream.
fn end_name(end: &End) -> &'static str {
    match end {
        End::Normal => "normal",
        End::NormalWithWill => "normal with will",
        End::Lost(_) => "lost",
        End::Violation(..) => "protocol error",
        End::StoreFailed => "store failed",
        End::KeepAliveTimeout => "keep alive timeout",
        End::TakenOver => "taken over",
        End::Kicked => "kicked",
        End::Shutdown => "shutdown",
    }
}
