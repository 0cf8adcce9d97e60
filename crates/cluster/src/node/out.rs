//! The ordered out pipeline: this node's publishes, queued by the hook, leave for NATS in the
//! order they were published (see the parent module's docs), and QoS 1/2 publishers are
//! acknowledged once JetStream has them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use async_nats::jetstream::message::PublishMessage as JsPublish;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use hermod_broker::message::Message;
use hermod_broker::store::StoreError;
use hermod_proto::QoS;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::{Inner, MAX_ACKS_IN_FLIGHT, RETAINED_BUCKET, retained_key, unix_ms};
use crate::{subject, wire};

/// One message on its way out.
#[derive(Debug)]
pub(super) struct Out {
    pub(super) message: Arc<Message>,
    pub(super) size: usize,
    pub(super) done: Option<oneshot::Sender<Result<(), StoreError>>>,
    /// Only the retained bucket, not the subscribers: an operator's delete (an empty retained
    /// message), which every node applies as a clear.
    pub(super) retained_only: bool,
}

type Acked = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Empties the out queue in order (see the module docs).
pub(super) async fn out_task(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Out>) {
    let mut acks: FuturesOrdered<Acked> = FuturesOrdered::new();
    loop {
        tokio::select! {
            biased;
            Some(()) = acks.next(), if !acks.is_empty() => {}
            out = rx.recv(), if acks.len() < MAX_ACKS_IN_FLIGHT => {
                let Some(out) = out else { break };
                inner.queued_bytes.fetch_sub(out.size, Ordering::Relaxed);
                if let Some(pending) = send(&inner, out).await {
                    acks.push_back(pending);
                }
            }
        }
    }
    while acks.next().await.is_some() {}
}

fn failed(inner: &Inner, done: Option<oneshot::Sender<Result<(), StoreError>>>, detail: String) {
    inner
        .counters
        .forward_failures
        .fetch_add(1, Ordering::Relaxed);
    if let Some(done) = done {
        let _ = done.send(Err(StoreError::Backbone { detail }));
    }
}

/// Sends one message; for QoS 1/2 and retained messages returns what completes it once
/// JetStream has acknowledged.
async fn send(inner: &Arc<Inner>, out: Out) -> Option<Acked> {
    let m = &out.message;
    let bytes = wire::encode(m, &inner.config.node, Instant::now(), unix_ms());
    let has_assets = inner.assets.borrow().is_some();
    let retained_ack = if m.retain {
        match has_assets {
            true => {
                let subject = format!("$KV.{RETAINED_BUCKET}.{}", retained_key(&m.topic));
                match inner
                    .js
                    .send_publish(subject, JsPublish::build().payload(bytes.clone()))
                    .await
                {
                    Ok(ack) => Some(ack),
                    Err(e) => {
                        warn!(topic = %m.topic, error = %e, "cluster: retained message not stored in NATS");
                        None
                    }
                }
            }
            false => None,
        }
    } else {
        None
    };
    if out.retained_only {
        return retained_ack.map(|ack| -> Acked {
            Box::pin(async move {
                let _ = ack.await;
            })
        });
    }
    if m.qos == QoS::AtMostOnce {
        let subject = subject::topic_to_subject("mq.0", &m.topic);
        match inner.client.publish(subject, bytes).await {
            Ok(()) => {
                inner.counters.forwarded[0].fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                inner
                    .counters
                    .dropped_nats_error
                    .fetch_add(1, Ordering::Relaxed);
                debug!(topic = %m.topic, error = %e, "cluster: QoS 0 message not forwarded");
            }
        }
        return retained_ack.map(|ack| -> Acked {
            Box::pin(async move {
                let _ = ack.await;
            })
        });
    }
    if !inner.ready.load(Ordering::Relaxed) {
        failed(inner, out.done, "JetStream is not ready".into());
        return None;
    }
    let stored = subject::topic_to_subject("mqs", &m.topic);
    let ack = match inner
        .js
        .send_publish(stored, JsPublish::build().payload(bytes.clone()))
        .await
    {
        Ok(ack) => ack,
        Err(e) => {
            failed(inner, out.done, format!("JetStream publish: {e}"));
            return None;
        }
    };
    let inner = inner.clone();
    let qos = m.qos as usize;
    Some(Box::pin(async move {
        let mut result = ack.await.map(|_| ()).map_err(|e| e.to_string());
        if let Some(r) = retained_ack {
            let r = r.await.map(|_| ()).map_err(|e| format!("retained: {e}"));
            result = result.and(r);
        }
        match result {
            Ok(()) => {
                inner.counters.forwarded[qos.min(2)].fetch_add(1, Ordering::Relaxed);
                if let Some(done) = out.done {
                    let _ = done.send(Ok(()));
                }
            }
            Err(e) => failed(&inner, out.done, format!("JetStream ack: {e}")),
        }
    }))
}
