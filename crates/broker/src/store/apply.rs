//! Applying [`Op`]s to the tables inside one write transaction: reference counting of stored
//! messages, and the bytes they take.

use super::error::{db_err, decode_err};
use super::*;
use redb::{ReadableTable, WriteTransaction};
use std::collections::{HashMap, HashSet};
use std::path::Path;

struct Tables<'t> {
    txn: &'t WriteTransaction,
    /// Opened at the first `PutKv`/`DeleteKv` only: most commits carry none.
    kv: Option<redb::Table<'t, (&'static str, &'static str), &'static [u8]>>,
    sessions: redb::Table<'t, &'static str, &'static [u8]>,
    messages: redb::Table<'t, u64, &'static [u8]>,
    refs: redb::Table<'t, u64, u32>,
    queue: redb::Table<'t, (&'static str, u64), &'static [u8]>,
    inflight: redb::Table<'t, (&'static str, u16), ()>,
    retained: redb::Table<'t, &'static str, &'static [u8]>,
    subscriptions: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    /// Change in stored message bytes by the ops applied so far.
    bytes_delta: i64,
}

/// Queue entries that are created and removed within one batch (`PutMessage` + `Enqueue` of a
/// delivery, then its `Dequeue` once acknowledged, all before the commit): neither is written,
/// nor the message when no other entry of the batch or the file needs it. Under load a
/// subscriber that keeps up (a rule, a bridge) acknowledges many deliveries before their batch
/// commits, and each would otherwise cost a message insert, a queue insert, a queue remove, a
/// reference-count update and a message delete in the same transaction.
///
/// Only a pair whose message is stored by a `PutMessage` earlier in the same batch is cancelled:
/// the reference it counted is then taken off that `PutMessage` (so its count is right with no
/// lookup), and a `PutMessage` left with no reference writes nothing. The plan depends on the
/// batch alone, so a batch retried after a disk error is applied the same way.
#[derive(Debug, Default)]
struct Cancelled {
    /// Indexes (in the batch's op order) of the ops not to apply.
    skip: HashSet<usize>,
    /// References to take off each message's `PutMessage`.
    refs: HashMap<u64, u32>,
}

fn cancelled(ops: &[&Op]) -> Cancelled {
    let mut stored: HashSet<u64> = HashSet::new();
    // (client, seq) -> (index of its Enqueue, message id, indexes of UpdateQueueEntry ops)
    let mut open: HashMap<(&str, u64), (usize, u64, Vec<usize>)> = HashMap::new();
    let mut out = Cancelled::default();
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::PutMessage(mid, _, refs) if *refs > 0 => {
                stored.insert(*mid);
            }
            Op::Enqueue(c, seq, entry) => {
                // A second Enqueue at the same place (not expected): both are applied as written.
                let key = (c.as_str(), *seq);
                if open.remove(&key).is_none() && stored.contains(&entry.message_id) {
                    open.insert(key, (i, entry.message_id, Vec::new()));
                }
            }
            Op::UpdateQueueEntry(c, seq, entry) => {
                if let Some(o) = open.get_mut(&(c.as_str(), *seq)) {
                    if o.1 == entry.message_id {
                        o.2.push(i);
                    } else {
                        // Not expected; applied as written.
                        open.remove(&(c.as_str(), *seq));
                    }
                }
            }
            Op::Dequeue(c, seq) => {
                if let Some((enqueue, mid, updates)) = open.remove(&(c.as_str(), *seq)) {
                    out.skip.insert(enqueue);
                    out.skip.extend(updates);
                    out.skip.insert(i);
                    *out.refs.entry(mid).or_default() += 1;
                }
            }
            // Anything else touching a session's queue as a whole ends the pairs open on it:
            // they are applied as written.
            Op::DeleteSession(c) | Op::PutSession(c, _) => {
                open.retain(|(client, _), _| client != c);
            }
            _ => {}
        }
    }
    out
}

/// Applies `ops` in one transaction; returns the change in stored message bytes and the number
/// of ops cancelled out (not applied: see [`Cancelled`]).
pub(super) fn apply_ops<'o>(
    txn: &WriteTransaction,
    file: &Path,
    ops: impl Iterator<Item = &'o Op>,
) -> Result<(i64, u64), StoreError> {
    let ops: Vec<&Op> = ops.collect();
    let plan = cancelled(&ops);
    let e = |err: redb::Error| db_err(file, err);
    let mut t = Tables {
        txn,
        kv: None,
        sessions: txn.open_table(SESSIONS).map_err(|x| e(x.into()))?,
        messages: txn.open_table(MESSAGES).map_err(|x| e(x.into()))?,
        refs: txn.open_table(MESSAGE_REFS).map_err(|x| e(x.into()))?,
        queue: txn.open_table(QUEUE).map_err(|x| e(x.into()))?,
        inflight: txn.open_table(INFLIGHT_IN).map_err(|x| e(x.into()))?,
        retained: txn.open_table(RETAINED).map_err(|x| e(x.into()))?,
        subscriptions: txn.open_table(SUBSCRIPTIONS).map_err(|x| e(x.into()))?,
        bytes_delta: 0,
    };
    let mut dropped_messages = 0u64;
    for (i, op) in ops.into_iter().enumerate() {
        if plan.skip.contains(&i) {
            continue;
        }
        match op {
            Op::PutMessage(mid, m, refs) => {
                let less = plan.refs.get(mid).copied().unwrap_or(0);
                if less > 0 && *refs <= less {
                    dropped_messages += 1;
                }
                put_message(&mut t, file, *mid, m, refs.saturating_sub(less))?;
            }
            _ => apply_op(&mut t, file, op)?,
        }
    }
    Ok((t.bytes_delta, plan.skip.len() as u64 + dropped_messages))
}

/// Stores message `mid` with `refs` references (nothing with none).
fn put_message(
    t: &mut Tables<'_>,
    file: &Path,
    mid: u64,
    m: &MessageRecord,
    refs: u32,
) -> Result<(), StoreError> {
    let e = |err: redb::StorageError| db_err(file, err);
    if refs == 0 {
        tracing::trace!(
            message_id = mid,
            "store: PutMessage with no reference left: not written"
        );
        return Ok(());
    }
    let encoded = m.encode();
    t.bytes_delta += encoded.len() as i64;
    if let Some(old) = t.messages.insert(mid, encoded.as_slice()).map_err(e)? {
        t.bytes_delta -= old.value().len() as i64;
    }
    t.refs.insert(mid, refs).map_err(e)?;
    Ok(())
}

fn apply_op(t: &mut Tables<'_>, file: &Path, op: &Op) -> Result<(), StoreError> {
    let e = |err: redb::StorageError| db_err(file, err);
    match op {
        Op::PutSession(id, s) => {
            for sub in &s.subscriptions {
                t.subscriptions
                    .insert(
                        (id.as_str(), sub.filter.as_str()),
                        sub.encode_row().as_slice(),
                    )
                    .map_err(e)?;
            }
            let bare = SessionRecord {
                subscriptions: Vec::new(),
                ..s.clone()
            };
            t.sessions
                .insert(id.as_str(), bare.encode().as_slice())
                .map_err(e)?;
        }
        Op::PutSubscription(id, sub) => {
            t.subscriptions
                .insert(
                    (id.as_str(), sub.filter.as_str()),
                    sub.encode_row().as_slice(),
                )
                .map_err(e)?;
        }
        Op::DeleteSubscription(id, filter) => {
            t.subscriptions
                .remove((id.as_str(), filter.as_str()))
                .map_err(e)?;
        }
        Op::DeleteSession(id) => {
            t.sessions.remove(id.as_str()).map_err(e)?;
            // Every (id, filter) key sorts before (id + "\0", ""): exactly this session's rows.
            let next = format!("{id}\0");
            t.subscriptions
                .retain_in((id.as_str(), "")..(next.as_str(), ""), |_, _| false)
                .map_err(e)?;
            let mut entries = Vec::new();
            for item in t
                .queue
                .range((id.as_str(), 0)..=(id.as_str(), u64::MAX))
                .map_err(e)?
            {
                let (k, v) = item.map_err(e)?;
                let entry = QueueEntry::decode(v.value()).map_err(|x| decode_err(file, x))?;
                entries.push((k.value().1, entry.message_id));
            }
            for (seq, message_id) in entries {
                t.queue.remove((id.as_str(), seq)).map_err(e)?;
                release(t, message_id).map_err(e)?;
            }
            t.inflight
                .retain_in((id.as_str(), 0)..=(id.as_str(), u16::MAX), |_, _| false)
                .map_err(e)?;
        }
        Op::PutMessage(mid, m, refs) => put_message(t, file, *mid, m, *refs)?,
        Op::Enqueue(id, seq, entry) => {
            if t.sessions.get(id.as_str()).map_err(e)?.is_none() {
                tracing::debug!(client_id = %id, seq, "store: Enqueue for unknown session ignored");
                release(t, entry.message_id).map_err(e)?;
                return Ok(());
            }
            if t.messages.get(entry.message_id).map_err(e)?.is_none() {
                tracing::warn!(
                    client_id = %id,
                    seq,
                    message_id = entry.message_id,
                    "store: Enqueue of an unknown message ignored"
                );
                return Ok(());
            }
            let old = t
                .queue
                .insert((id.as_str(), *seq), entry.encode().as_slice())
                .map_err(e)?
                .map(|g| QueueEntry::decode(g.value()));
            if let Some(old) = old {
                let old = old.map_err(|x| decode_err(file, x))?;
                // The same message at the same place: a batch retried after a disk error that
                // had in fact reached the file (its `PutMessage` already reset the count).
                if old.message_id != entry.message_id {
                    release(t, old.message_id).map_err(e)?;
                }
            }
        }
        Op::UpdateQueueEntry(id, seq, entry) => {
            let old = t
                .queue
                .get((id.as_str(), *seq))
                .map_err(e)?
                .map(|g| QueueEntry::decode(g.value()));
            let Some(old) = old else {
                tracing::debug!(client_id = %id, seq, "store: update of a missing queue entry ignored");
                return Ok(());
            };
            let old = old.map_err(|x| decode_err(file, x))?;
            if old.message_id != entry.message_id {
                // Not expected from the broker; keep the counts right anyway.
                if !acquire(t, entry.message_id).map_err(e)? {
                    tracing::warn!(
                        client_id = %id,
                        seq,
                        "store: update to an unknown message ignored"
                    );
                    return Ok(());
                }
                release(t, old.message_id).map_err(e)?;
            }
            t.queue
                .insert((id.as_str(), *seq), entry.encode().as_slice())
                .map_err(e)?;
        }
        Op::Dequeue(id, seq) => {
            let old = t
                .queue
                .remove((id.as_str(), *seq))
                .map_err(e)?
                .map(|g| QueueEntry::decode(g.value()));
            match old {
                None => {
                    tracing::debug!(client_id = %id, seq, "store: Dequeue of a missing entry ignored")
                }
                Some(old) => {
                    let old = old.map_err(|x| decode_err(file, x))?;
                    release(t, old.message_id).map_err(e)?;
                }
            }
        }
        Op::PutInflightIn(id, pid) => {
            t.inflight.insert((id.as_str(), *pid), ()).map_err(e)?;
        }
        Op::DeleteInflightIn(id, pid) => {
            t.inflight.remove((id.as_str(), *pid)).map_err(e)?;
        }
        Op::PutRetained(topic, m) => {
            t.retained
                .insert(topic.as_str(), m.encode().as_slice())
                .map_err(e)?;
        }
        Op::DeleteRetained(topic) => {
            t.retained.remove(topic.as_str()).map_err(e)?;
        }
        Op::PutKv(ns, key, value) => {
            kv_table(t, file)?
                .insert((ns.as_str(), key.as_str()), value.as_slice())
                .map_err(e)?;
        }
        Op::DeleteKv(ns, key) => {
            kv_table(t, file)?
                .remove((ns.as_str(), key.as_str()))
                .map_err(e)?;
        }
    }
    Ok(())
}

type KvTable<'t> = redb::Table<'t, (&'static str, &'static str), &'static [u8]>;

fn kv_table<'a, 't>(t: &'a mut Tables<'t>, file: &Path) -> Result<&'a mut KvTable<'t>, StoreError> {
    let table = match t.kv.take() {
        Some(table) => table,
        None => t
            .txn
            .open_table(KV)
            .map_err(|x| db_err(file, redb::Error::from(x)))?,
    };
    Ok(t.kv.insert(table))
}

/// Drops one reference to a message, deleting it at 0.
fn release(t: &mut Tables<'_>, message_id: u64) -> Result<(), redb::StorageError> {
    let n = t.refs.get(message_id)?.map(|g| g.value());
    match n {
        None => {
            tracing::debug!(message_id, "store: release of an unknown message ignored");
        }
        Some(0 | 1) => {
            t.refs.remove(message_id)?;
            if let Some(old) = t.messages.remove(message_id)? {
                t.bytes_delta -= old.value().len() as i64;
            }
        }
        Some(n) => {
            t.refs.insert(message_id, n - 1)?;
        }
    }
    Ok(())
}

/// Adds one reference to an existing message; false if it does not exist.
fn acquire(t: &mut Tables<'_>, message_id: u64) -> Result<bool, redb::StorageError> {
    let n = t.refs.get(message_id)?.map(|g| g.value());
    match n {
        None => Ok(false),
        Some(n) => {
            t.refs.insert(message_id, n.saturating_add(1))?;
            Ok(true)
        }
    }
}
