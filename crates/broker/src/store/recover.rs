//! Opening a store: schema check, reading everything back, and repairing what a crash between
//! two related submissions can leave behind (the queue is the source of truth).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use redb::{Database, Durability, ReadableTable, ReadableTableMetadata};

use super::error::{db_err, decode_err};
use super::*;

/// Checks the schema, repairs inconsistencies and reads everything back, in one transaction.
pub(super) fn recover(db: &Database, file: &Path) -> Result<Recovered, StoreError> {
    let e = |err: redb::Error| db_err(file, err);
    let mut txn = db.begin_write().map_err(|x| e(x.into()))?;
    txn.set_durability(Durability::Immediate)
        .map_err(|x| e(x.into()))?;
    let mut rec = Recovered::default();
    {
        let mut meta = txn.open_table(META).map_err(|x| e(x.into()))?;
        let sessions = txn.open_table(SESSIONS).map_err(|x| e(x.into()))?;
        let mut messages = txn.open_table(MESSAGES).map_err(|x| e(x.into()))?;
        let mut refs = txn.open_table(MESSAGE_REFS).map_err(|x| e(x.into()))?;
        let mut queue = txn.open_table(QUEUE).map_err(|x| e(x.into()))?;
        let mut inflight = txn.open_table(INFLIGHT_IN).map_err(|x| e(x.into()))?;
        let retained = txn.open_table(RETAINED).map_err(|x| e(x.into()))?;
        let mut subscriptions = txn.open_table(SUBSCRIPTIONS).map_err(|x| e(x.into()))?;

        // Schema.
        let version = meta
            .get(SCHEMA_KEY)
            .map_err(|x| e(x.into()))?
            .map(|g| g.value());
        match version {
            None => {
                let mut empty = true;
                for n in [
                    sessions.len(),
                    messages.len(),
                    refs.len(),
                    queue.len(),
                    inflight.len(),
                    retained.len(),
                    subscriptions.len(),
                ] {
                    empty &= n.map_err(|x| e(x.into()))? == 0;
                }
                if !empty {
                    return Err(StoreError::Corrupt {
                        file: file.to_path_buf(),
                        detail: "no schema version recorded in a non-empty store".into(),
                    });
                }
                meta.insert(SCHEMA_KEY, SCHEMA_VERSION)
                    .map_err(|x| e(x.into()))?;
            }
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::UnsupportedSchema {
                    file: file.to_path_buf(),
                    found: v,
                    supported: SCHEMA_VERSION,
                });
            }
            Some(v) if v == SCHEMA_VERSION => {}
            // Version 1 kept subscriptions inside the session records: they move to rows below
            // (each record read back with subscriptions is rewritten without them).
            Some(1) => {
                meta.insert(SCHEMA_KEY, SCHEMA_VERSION)
                    .map_err(|x| e(x.into()))?;
            }
            // Versions before 1 never existed; later versions migrate older ones here.
            Some(v) => {
                return Err(StoreError::Corrupt {
                    file: file.to_path_buf(),
                    detail: format!("invalid schema version {v}"),
                });
            }
        }

        // Sessions.
        let mut known: HashSet<String> = HashSet::new();
        let mut inline: Vec<(String, SessionRecord)> = Vec::new();
        for item in sessions.iter().map_err(|x| e(x.into()))? {
            let (k, v) = item.map_err(|x| e(x.into()))?;
            let id = k.value().to_owned();
            let s = SessionRecord::decode(v.value()).map_err(|x| decode_err(file, x))?;
            known.insert(id.clone());
            if !s.subscriptions.is_empty() {
                inline.push((id.clone(), s.clone()));
            }
            rec.sessions.push((id, s));
        }
        drop(sessions);
        // Migration from schema 1: subscriptions kept inside a session record become rows.
        if !inline.is_empty() {
            let mut sessions = txn.open_table(SESSIONS).map_err(|x| e(x.into()))?;
            for (id, s) in &inline {
                for sub in &s.subscriptions {
                    subscriptions
                        .insert(
                            (id.as_str(), sub.filter.as_str()),
                            sub.encode_row().as_slice(),
                        )
                        .map_err(|x| e(x.into()))?;
                }
                let bare = SessionRecord {
                    subscriptions: Vec::new(),
                    ..s.clone()
                };
                sessions
                    .insert(id.as_str(), bare.encode().as_slice())
                    .map_err(|x| e(x.into()))?;
            }
            rec.repairs += inline.len();
        }
        // Subscriptions: one row each; rows of unknown sessions are removed.
        let mut rows: HashMap<String, Vec<SubscriptionRecord>> = HashMap::new();
        let mut drop_rows: Vec<(String, String)> = Vec::new();
        for item in subscriptions.iter().map_err(|x| e(x.into()))? {
            let (k, v) = item.map_err(|x| e(x.into()))?;
            let (client, filter) = k.value();
            if known.contains(client) {
                let sub = SubscriptionRecord::decode_row(filter, v.value())
                    .map_err(|x| decode_err(file, x))?;
                rows.entry(client.to_owned()).or_default().push(sub);
            } else {
                drop_rows.push((client.to_owned(), filter.to_owned()));
            }
        }
        rec.repairs += drop_rows.len();
        for (client, filter) in &drop_rows {
            subscriptions
                .remove((client.as_str(), filter.as_str()))
                .map_err(|x| e(x.into()))?;
        }
        for (id, s) in &mut rec.sessions {
            if let Some(subs) = rows.remove(id.as_str()) {
                s.subscriptions = subs;
            }
        }

        // Message ids.
        // Message ids, with their stored sizes (for the queues' byte limits).
        let mut message_ids: HashMap<u64, u32> = HashMap::new();
        for item in messages.iter().map_err(|x| e(x.into()))? {
            let (k, v) = item.map_err(|x| e(x.into()))?;
            let id = k.value();
            let len = v.value().len();
            rec.message_bytes += len as u64;
            rec.next_message_id = rec.next_message_id.max(id.saturating_add(1));
            message_ids.insert(id, u32::try_from(len).unwrap_or(u32::MAX));
        }

        // Queue: lengths, true reference counts, orphans.
        let mut counted: HashMap<u64, u32> = HashMap::new();
        let mut drop_entries: Vec<(String, u64)> = Vec::new();
        for item in queue.iter().map_err(|x| e(x.into()))? {
            let (k, v) = item.map_err(|x| e(x.into()))?;
            let (client, seq) = k.value();
            let entry = QueueEntry::decode(v.value()).map_err(|x| decode_err(file, x))?;
            let Some(&size) = message_ids
                .get(&entry.message_id)
                .filter(|_| known.contains(client))
            else {
                drop_entries.push((client.to_owned(), seq));
                continue;
            };
            *counted.entry(entry.message_id).or_default() += 1;
            match rec.queues.get_mut(client) {
                Some(q) => {
                    q.len += 1;
                    q.next_seq = seq.saturating_add(1);
                    q.sizes.push((seq, size));
                }
                None => {
                    rec.queues.insert(
                        client.to_owned(),
                        QueueInfo {
                            len: 1,
                            first_seq: seq,
                            next_seq: seq.saturating_add(1),
                            sizes: vec![(seq, size)],
                        },
                    );
                }
            }
        }
        rec.repairs += drop_entries.len();
        for (client, seq) in &drop_entries {
            queue
                .remove((client.as_str(), *seq))
                .map_err(|x| e(x.into()))?;
        }

        // Reference counts: the queue is the truth.
        let mut stored: HashMap<u64, u32> = HashMap::new();
        for item in refs.iter().map_err(|x| e(x.into()))? {
            let (k, v) = item.map_err(|x| e(x.into()))?;
            stored.insert(k.value(), v.value());
        }
        for id in message_ids.keys() {
            let want = counted.get(id).copied().unwrap_or(0);
            let have = stored.remove(id);
            if want == 0 {
                messages.remove(*id).map_err(|x| e(x.into()))?;
                refs.remove(*id).map_err(|x| e(x.into()))?;
                rec.repairs += 1;
            } else if have != Some(want) {
                refs.insert(*id, want).map_err(|x| e(x.into()))?;
                rec.repairs += 1;
            }
        }
        // Counts of messages that do not exist.
        for id in stored.keys() {
            refs.remove(*id).map_err(|x| e(x.into()))?;
            rec.repairs += 1;
        }

        // Inbound QoS 2.
        let mut drop_inflight: Vec<(String, u16)> = Vec::new();
        for item in inflight.iter().map_err(|x| e(x.into()))? {
            let (k, _) = item.map_err(|x| e(x.into()))?;
            let (client, pid) = k.value();
            if known.contains(client) {
                rec.inflight_in.push((client.to_owned(), pid));
            } else {
                drop_inflight.push((client.to_owned(), pid));
            }
        }
        rec.repairs += drop_inflight.len();
        for (client, pid) in &drop_inflight {
            inflight
                .remove((client.as_str(), *pid))
                .map_err(|x| e(x.into()))?;
        }

        // Retained.
        for item in retained.iter().map_err(|x| e(x.into()))? {
            let (k, v) = item.map_err(|x| e(x.into()))?;
            let m = MessageRecord::decode(v.value()).map_err(|x| decode_err(file, x))?;
            rec.retained.push((k.value().to_owned(), m));
        }

        // Services' documents (the table is created here on a store that has none yet).
        let kv = txn.open_table(KV).map_err(|x| e(x.into()))?;
        for item in kv.iter().map_err(|x| e(x.into()))? {
            let (k, v) = item.map_err(|x| e(x.into()))?;
            let (ns, key) = k.value();
            rec.kv
                .push((ns.to_owned(), key.to_owned(), v.value().to_vec()));
        }
    }
    txn.commit().map_err(|x| e(x.into()))?;
    Ok(rec)
}
