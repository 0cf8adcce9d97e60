//! QoS 1/2 in: the other nodes' messages read back from the JetStream stream, so that one
//! JetStream acknowledged reaches every interested node even if its publisher's node (or a NATS
//! server) dies right after.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;
use hermod_broker::api::BrokerHandle;
use hermod_broker::message::Message;
use tracing::debug;

use super::{Inner, PULL_EXPIRES, STREAM, inbound};
use crate::subject::{self, Interest};

/// Receives the QoS 1/2 messages of the other nodes from the stream: one ordered consumer (an
/// ephemeral, single-replica consumer that the client recreates after a gap), filtered on this
/// node's interests, starting after the last message it handed on. It lives on one NATS
/// server: when that server dies the consumer is recreated elsewhere, at once when this node's
/// connection was the one lost, after two missed heartbeats ([`PULL_EXPIRES`]) otherwise.
/// When the interests change the consumer is recreated from there with the new filters, so a
/// message stored while a subscription was being added is not missed once the interest is in
/// place. It starts at the stream's end: a node that starts does not replay history (offline
/// sessions on other nodes' behalf are the planned session replay's job).
pub(super) async fn stored_task(inner: Arc<Inner>, broker: BrokerHandle) {
    let mut assets = inner.assets.clone();
    if assets.wait_for(Option::is_some).await.is_err() {
        return;
    }
    let mut changed = inner.interest_changed.subscribe();
    let mut reconnected = inner.connected.subscribe();
    // The last message handed on, and the interests the consumer that delivered it served.
    let mut last: Option<u64> = None;
    let mut served: HashSet<Interest> = HashSet::new();
    loop {
        let mut stream = match inner.js.get_stream(STREAM).await {
            Ok(s) => s,
            Err(e) => {
                debug!(error = %e, "cluster: stream not reachable; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Where the stream ends now: a new interest starts after it (a new subscription does
        // not get what was published before it), the interests already served go on from
        // `last`, so messages up to `end` are handed on only for those.
        let end = match stream.info().await {
            Ok(info) => info.state.last_sequence,
            Err(e) => {
                debug!(error = %e, "cluster: stream info failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let start = last.map_or(end + 1, |seq| seq + 1);
        reconnected.mark_unchanged();
        let generation = *changed.borrow_and_update();
        let wanted = inner.wanted();
        let mut filters: Vec<String> = Vec::new();
        for i in &wanted {
            filters.extend(subject::interest_subjects(subject::STORED, i));
        }
        if !wanted.is_empty() && !wanted.contains(&Interest::All) {
            filters.extend(subject::always_subjects(subject::STORED));
        }
        if filters.is_empty() {
            // Nothing wanted: wait for a subscription (and start after what is there then).
            last = None;
            served.clear();
            inner.sessions.served.send_replace((generation, end));
            if changed.changed().await.is_err() {
                return;
            }
            continue;
        }
        let earlier = std::mem::replace(&mut served, wanted.clone());
        let old_only = move |topic: &str| {
            earlier.contains(&Interest::All)
                || earlier.contains(&subject::first_level_interest(topic))
        };
        let Ok(stream) = inner.js.get_stream(STREAM).await else {
            continue;
        };
        let config = jetstream::consumer::pull::OrderedConfig {
            filter_subjects: filters,
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            max_expires: PULL_EXPIRES,
            ..Default::default()
        };
        debug!(start, filters = ?config.filter_subjects, "cluster: stream consumer");
        let messages = match stream.create_consumer(config).await {
            Ok(c) => c.messages().await,
            Err(e) => {
                debug!(error = %e, "cluster: stream consumer not created; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                debug!(error = %e, "cluster: stream consumer failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        // Everything before `start` is behind this node: a consumer recreated before it handed
        // anything on starts here again, not at the stream's end then (which would skip what
        // was stored meanwhile).
        last = Some(start - 1);
        // For sessions that move (`crate::sessions`): from a fresh start everything up to
        // `end` is behind this node; the interests of `generation` are served from here on.
        if start == end + 1 {
            inner.sessions.position.fetch_max(end, Ordering::SeqCst);
        }
        inner.sessions.served.send_replace((generation, end));
        loop {
            tokio::select! {
                r = changed.changed() => {
                    if r.is_err() {
                        return;
                    }
                    break; // new filters, from `last`
                }
                r = reconnected.changed() => {
                    if r.is_err() {
                        return;
                    }
                    // The consumer (one replica) may have been on the server that was lost,
                    // and the client alone would take over half a minute to find out.
                    debug!(?last, "cluster: reconnected to NATS; recreating the stream consumer");
                    break;
                }
                m = messages.next() => {
                    match m {
                        Some(Ok(m)) => {
                            let seq = m.info().map(|i| i.stream_sequence).ok();
                            if let Some(seq) = seq {
                                last = Some(seq);
                                // Before it is routed: see `crate::sessions`.
                                inner.sessions.position.fetch_max(seq, Ordering::SeqCst);
                            }
                            // Stored before a new interest appeared: only for the old ones.
                            let wanted = |r: &Message| {
                                seq.is_none_or(|q| q > end) || old_only(&r.topic)
                            };
                            let payload = m.message.payload.clone();
                            let handed = inbound::publish_remote(&inner, &broker, payload, wanted);
                            if let Err(e) = handed.await {
                                debug!(error = %e, "cluster: malformed stored message ignored");
                            }
                        }
                        Some(Err(e)) => {
                            debug!(error = %e, "cluster: stream consumer error; recreating");
                            break;
                        }
                        None => break,
                    }
                }
            }
        }
    }
}
