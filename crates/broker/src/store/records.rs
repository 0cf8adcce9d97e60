//! The records the store keeps, and their binary encoding.
//!
//! Every value is a small hand-written, length-prefixed binary record that starts with a record
//! version byte (all `1` today). Integers are big-endian; strings and byte blocks are a `u32`
//! length followed by the bytes; `Option<T>` is a `0`/`1` tag followed by `T` when present;
//! `bool` is one byte, `0` or `1`. Decoding never panics: truncated input, trailing bytes, an
//! unknown record version or tag, invalid UTF-8, or an absurd length are [`DecodeError`]s, which
//! the store reports as [`StoreError::Corrupt`](super::StoreError::Corrupt).
//!
//! Why not serde_json: payloads and v5 property blocks are binary (JSON would write them as
//! arrays of numbers, about 4x the size), and a record is decoded on every queue page-in.

use crate::session::Owner;
use bytes::Bytes;
use std::fmt;

/// The version byte every record starts with.
const RECORD_V1: u8 = 1;
/// Session records since owners are stored: version 1 plus the owner at the end. Version 1
/// session records still decode, as [`Owner::Unknown`].
const SESSION_V2: u8 = 2;

/// A persistent session: what the broker needs to resume it after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Session Expiry Interval in seconds; `None` = never expires.
    pub expiry: Option<u32>,
    /// Wall-clock time (`SystemTime`, ms since the Unix epoch) the client disconnected;
    /// `None` while it is online.
    pub disconnected_at_unix_ms: Option<u64>,
    /// Protocol level of the last CONNECT (3, 4 or 5).
    pub protocol_level: u8,
    /// The session's subscriptions.
    pub subscriptions: Vec<SubscriptionRecord>,
    /// The will message, while one is pending.
    pub will: Option<WillRecord>,
    /// Who the session belongs to. Records written before owners were stored end after the
    /// will and decode as [`Owner::Unknown`] (claimed by the next client that connects).
    pub owner: Owner,
}

/// One subscription of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRecord {
    /// Topic filter as subscribed (including any `$share/group/` prefix).
    pub filter: String,
    /// Maximum QoS granted.
    pub qos: u8,
    /// v5 No Local.
    pub no_local: bool,
    /// v5 Retain As Published.
    pub retain_as_published: bool,
    /// v5 Retain Handling (0, 1 or 2).
    pub retain_handling: u8,
    /// v5 Subscription Identifier.
    pub subscription_id: Option<u32>,
}

/// A session's will message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WillRecord {
    /// Will topic.
    pub topic: String,
    /// Will payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: u8,
    /// Will retain flag.
    pub retain: bool,
    /// The encoded v5 will property block (opaque to the store).
    pub properties: Bytes,
    /// v5 Will Delay Interval in seconds.
    pub delay_secs: u32,
}

/// An application message kept for offline delivery, or as a retained message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// Topic name.
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// QoS as published.
    pub qos: u8,
    /// Retain flag as published.
    pub retain: bool,
    /// The encoded v5 property block (opaque to the store).
    pub properties: Bytes,
    /// Wall-clock receive time, ms since the Unix epoch.
    pub received_at_unix_ms: u64,
    /// Wall-clock expiry time (v5 Message Expiry Interval), ms since the Unix epoch.
    pub expiry_at_unix_ms: Option<u64>,
}

/// Delivery state of a queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueState {
    /// Not yet sent.
    Queued,
    /// PUBLISH sent with this packet id; awaiting PUBACK (QoS 1) or PUBREC (QoS 2).
    Sent {
        /// Packet identifier used.
        packet_id: u16,
    },
    /// QoS 2: PUBREC received and PUBREL sent; awaiting PUBCOMP.
    Released {
        /// Packet identifier used.
        packet_id: u16,
    },
}

/// One message queued for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// The message (key of the `messages` table).
    pub message_id: u64,
    /// Granted QoS.
    pub qos: u8,
    /// RETAIN flag to send.
    pub retain: bool,
    /// v5 Subscription Identifiers of the matching subscriptions.
    pub subscription_ids: Vec<u32>,
    /// Shared-subscription delivery: `(group, filter)`, so the broker can hand it to another
    /// member if this session goes away.
    pub shared: Option<(String, String)>,
    /// Delivery state.
    pub state: QueueState,
}

/// A record that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

// ---------------------------------------------------------------------------------------------
// Writer / reader primitives.

struct W(Vec<u8>);

impl W {
    fn new(cap: usize) -> Self {
        let mut v = Vec::with_capacity(cap + 1);
        v.push(RECORD_V1);
        W(v)
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        // Values are bounded far below 4 GiB by MQTT (and by redb's 3 GiB value limit).
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.0.extend_from_slice(&v[..len as usize]);
    }
    fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    fn opt_u32(&mut self, v: Option<u32>) {
        match v {
            None => self.u8(0),
            Some(x) => {
                self.u8(1);
                self.u32(x);
            }
        }
    }
    fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            None => self.u8(0),
            Some(x) => {
                self.u8(1);
                self.u64(x);
            }
        }
    }
}

struct R<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> R<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Result<Self, DecodeError> {
        Ok(Self::versioned(buf, what, RECORD_V1)?.0)
    }
    /// A reader for a record of version 1 up to `newest`; returns the version found.
    fn versioned(buf: &'a [u8], what: &'static str, newest: u8) -> Result<(Self, u8), DecodeError> {
        let mut r = R { buf, what };
        let v = r.u8()?;
        if v == 0 || v > newest {
            return Err(r.err(&format!("unknown record version {v}")));
        }
        Ok((r, v))
    }
    fn err(&self, detail: &str) -> DecodeError {
        DecodeError(format!("{} record: {detail}", self.what))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(self.err(&format!(
                "truncated (needed {n} bytes, {} left)",
                self.buf.len()
            )));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            x => Err(self.err(&format!("invalid bool {x}"))),
        }
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn len(&mut self) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        // A length can never exceed what is left; checking here also bounds allocations.
        if n > self.buf.len() {
            return Err(self.err(&format!(
                "length {n} exceeds the {} bytes left",
                self.buf.len()
            )));
        }
        Ok(n)
    }
    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.len()?;
        Ok(Bytes::copy_from_slice(self.take(n)?))
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        let n = self.len()?;
        let s = self.take(n)?;
        std::str::from_utf8(s)
            .map(str::to_owned)
            .map_err(|_| self.err("invalid UTF-8"))
    }
    fn tag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            x => Err(self.err(&format!("invalid option tag {x}"))),
        }
    }
    fn opt_u32(&mut self) -> Result<Option<u32>, DecodeError> {
        Ok(if self.tag()? { Some(self.u32()?) } else { None })
    }
    fn opt_u64(&mut self) -> Result<Option<u64>, DecodeError> {
        Ok(if self.tag()? { Some(self.u64()?) } else { None })
    }
    /// A count of items each at least `min_item` bytes long, checked against what is left.
    fn count(&mut self, min_item: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item) > self.buf.len() {
            return Err(self.err(&format!(
                "count {n} exceeds the {} bytes left",
                self.buf.len()
            )));
        }
        Ok(n)
    }
    fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.err(&format!("{} trailing bytes", self.buf.len())))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Records.

impl SessionRecord {
    /// Encodes the record.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut w = W::new(32 + self.subscriptions.len() * 32);
        w.0[0] = SESSION_V2;
        w.opt_u32(self.expiry);
        w.opt_u64(self.disconnected_at_unix_ms);
        w.u8(self.protocol_level);
        w.u32(u32::try_from(self.subscriptions.len()).unwrap_or(u32::MAX));
        for s in &self.subscriptions {
            w.str(&s.filter);
            w.u8(s.qos);
            w.bool(s.no_local);
            w.bool(s.retain_as_published);
            w.u8(s.retain_handling);
            w.opt_u32(s.subscription_id);
        }
        match &self.will {
            None => w.u8(0),
            Some(will) => {
                w.u8(1);
                w.str(&will.topic);
                w.bytes(&will.payload);
                w.u8(will.qos);
                w.bool(will.retain);
                w.bytes(&will.properties);
                w.u32(will.delay_secs);
            }
        }
        match &self.owner {
            Owner::Unknown => w.u8(0),
            Owner::Anonymous => w.u8(1),
            Owner::User(u) => {
                w.u8(2);
                w.str(u);
            }
        }
        w.0
    }

    /// Decodes a record written by [`SessionRecord::encode`].
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let (mut r, version) = R::versioned(buf, "session", SESSION_V2)?;
        let expiry = r.opt_u32()?;
        let disconnected_at_unix_ms = r.opt_u64()?;
        let protocol_level = r.u8()?;
        // filter len (4) + qos, no_local, rap, rh (4) + tag (1)
        let n = r.count(9)?;
        let mut subscriptions = Vec::with_capacity(n);
        for _ in 0..n {
            subscriptions.push(SubscriptionRecord {
                filter: r.string()?,
                qos: r.u8()?,
                no_local: r.bool()?,
                retain_as_published: r.bool()?,
                retain_handling: r.u8()?,
                subscription_id: r.opt_u32()?,
            });
        }
        let will = if r.tag()? {
            Some(WillRecord {
                topic: r.string()?,
                payload: r.bytes()?,
                qos: r.u8()?,
                retain: r.bool()?,
                properties: r.bytes()?,
                delay_secs: r.u32()?,
            })
        } else {
            None
        };
        let owner = if version == RECORD_V1 {
            Owner::Unknown
        } else {
            match r.u8()? {
                0 => Owner::Unknown,
                1 => Owner::Anonymous,
                2 => Owner::User(r.string()?.into()),
                x => return Err(r.err(&format!("invalid owner tag {x}"))),
            }
        };
        r.finish()?;
        Ok(SessionRecord {
            expiry,
            disconnected_at_unix_ms,
            protocol_level,
            subscriptions,
            will,
            owner,
        })
    }
}

impl MessageRecord {
    /// Encodes the record.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut w = W::new(40 + self.topic.len() + self.payload.len() + self.properties.len());
        w.str(&self.topic);
        w.bytes(&self.payload);
        w.u8(self.qos);
        w.bool(self.retain);
        w.bytes(&self.properties);
        w.u64(self.received_at_unix_ms);
        w.opt_u64(self.expiry_at_unix_ms);
        w.0
    }

    /// Decodes a record written by [`MessageRecord::encode`].
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = R::new(buf, "message")?;
        let m = MessageRecord {
            topic: r.string()?,
            payload: r.bytes()?,
            qos: r.u8()?,
            retain: r.bool()?,
            properties: r.bytes()?,
            received_at_unix_ms: r.u64()?,
            expiry_at_unix_ms: r.opt_u64()?,
        };
        r.finish()?;
        Ok(m)
    }
}

impl SubscriptionRecord {
    /// Encodes the record (a row of the `subscriptions` table; the filter is in the key, so it
    /// is not repeated here).
    #[must_use]
    pub fn encode_row(&self) -> Vec<u8> {
        let mut w = W::new(12);
        w.u8(self.qos);
        w.bool(self.no_local);
        w.bool(self.retain_as_published);
        w.u8(self.retain_handling);
        w.opt_u32(self.subscription_id);
        w.0
    }

    /// Decodes a row written by [`SubscriptionRecord::encode_row`] for `filter`.
    pub fn decode_row(filter: &str, buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = R::new(buf, "subscription")?;
        let s = SubscriptionRecord {
            filter: filter.to_owned(),
            qos: r.u8()?,
            no_local: r.bool()?,
            retain_as_published: r.bool()?,
            retain_handling: r.u8()?,
            subscription_id: r.opt_u32()?,
        };
        r.finish()?;
        Ok(s)
    }
}

impl QueueEntry {
    /// Encodes the record.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut w = W::new(24 + self.subscription_ids.len() * 4);
        w.u64(self.message_id);
        w.u8(self.qos);
        w.bool(self.retain);
        w.u32(u32::try_from(self.subscription_ids.len()).unwrap_or(u32::MAX));
        for id in &self.subscription_ids {
            w.u32(*id);
        }
        match &self.shared {
            None => w.u8(0),
            Some((group, filter)) => {
                w.u8(1);
                w.str(group);
                w.str(filter);
            }
        }
        match self.state {
            QueueState::Queued => w.u8(0),
            QueueState::Sent { packet_id } => {
                w.u8(1);
                w.u16(packet_id);
            }
            QueueState::Released { packet_id } => {
                w.u8(2);
                w.u16(packet_id);
            }
        }
        w.0
    }

    /// Decodes a record written by [`QueueEntry::encode`].
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = R::new(buf, "queue entry")?;
        let message_id = r.u64()?;
        let qos = r.u8()?;
        let retain = r.bool()?;
        let n = r.count(4)?;
        let mut subscription_ids = Vec::with_capacity(n);
        for _ in 0..n {
            subscription_ids.push(r.u32()?);
        }
        let shared = if r.tag()? {
            Some((r.string()?, r.string()?))
        } else {
            None
        };
        let state = match r.u8()? {
            0 => QueueState::Queued,
            1 => QueueState::Sent {
                packet_id: r.u16()?,
            },
            2 => QueueState::Released {
                packet_id: r.u16()?,
            },
            x => return Err(r.err(&format!("invalid state {x}"))),
        };
        r.finish()?;
        Ok(QueueEntry {
            message_id,
            qos,
            retain,
            subscription_ids,
            shared,
            state,
        })
    }
}

#[cfg(test)]
mod prop_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> SessionRecord {
        SessionRecord {
            expiry: Some(3600),
            disconnected_at_unix_ms: Some(1_700_000_000_123),
            protocol_level: 5,
            subscriptions: vec![
                SubscriptionRecord {
                    filter: "a/+/c".into(),
                    qos: 2,
                    no_local: true,
                    retain_as_published: false,
                    retain_handling: 2,
                    subscription_id: Some(268_435_455),
                },
                SubscriptionRecord {
                    filter: "$share/g/x/#".into(),
                    qos: 0,
                    no_local: false,
                    retain_as_published: true,
                    retain_handling: 0,
                    subscription_id: None,
                },
            ],
            will: Some(WillRecord {
                topic: "will/ü".into(),
                payload: Bytes::from_static(b"\x00gone\xff"),
                qos: 1,
                retain: true,
                properties: Bytes::from_static(&[0x01, 0x01]),
                delay_secs: 30,
            }),
            owner: Owner::User("alice".into()),
        }
    }

    fn message() -> MessageRecord {
        MessageRecord {
            topic: "t/1".into(),
            payload: Bytes::from(vec![7u8; 300]),
            qos: 2,
            retain: false,
            properties: Bytes::from_static(&[0x02, 0, 0, 0, 60]),
            received_at_unix_ms: 42,
            expiry_at_unix_ms: Some(60_042),
        }
    }

    fn entries() -> Vec<QueueEntry> {
        vec![
            QueueEntry {
                message_id: u64::MAX,
                qos: 1,
                retain: true,
                subscription_ids: vec![1, 2, 268_435_455],
                shared: None,
                state: QueueState::Queued,
            },
            QueueEntry {
                message_id: 0,
                qos: 2,
                retain: false,
                subscription_ids: vec![],
                shared: Some(("g".into(), "x/#".into())),
                state: QueueState::Sent { packet_id: 65535 },
            },
            QueueEntry {
                message_id: 9,
                qos: 2,
                retain: false,
                subscription_ids: vec![5],
                shared: None,
                state: QueueState::Released { packet_id: 1 },
            },
        ]
    }

    #[test]
    fn round_trips() {
        let s = session();
        assert_eq!(SessionRecord::decode(&s.encode()), Ok(s.clone()));
        let bare = SessionRecord {
            expiry: None,
            disconnected_at_unix_ms: None,
            protocol_level: 4,
            subscriptions: vec![],
            will: None,
            owner: Owner::Unknown,
        };
        assert_eq!(SessionRecord::decode(&bare.encode()), Ok(bare.clone()));
        for owner in [Owner::Anonymous, Owner::User("alice".into())] {
            let s = SessionRecord {
                owner,
                ..bare.clone()
            };
            assert_eq!(SessionRecord::decode(&s.encode()), Ok(s));
        }
        // An unknown owner tag is an error, not a silent "unknown".
        let mut bad = bare.encode();
        *bad.last_mut().expect("tag") = 7;
        assert!(SessionRecord::decode(&bad).is_err());
        // A version 1 record (written before owners were stored) decodes with an unknown owner.
        let mut v1 = bare.encode();
        v1[0] = RECORD_V1;
        v1.pop();
        assert_eq!(SessionRecord::decode(&v1), Ok(bare.clone()));
        let mut v1_alice = SessionRecord {
            owner: Owner::User("alice".into()),
            ..bare.clone()
        }
        .encode();
        v1_alice[0] = RECORD_V1;
        assert!(
            SessionRecord::decode(&v1_alice).is_err(),
            "v1 records end after the will"
        );
        let m = message();
        assert_eq!(MessageRecord::decode(&m.encode()), Ok(m.clone()));
        let m2 = MessageRecord {
            expiry_at_unix_ms: None,
            payload: Bytes::new(),
            properties: Bytes::new(),
            retain: true,
            ..m
        };
        assert_eq!(MessageRecord::decode(&m2.encode()), Ok(m2));
        for e in entries() {
            assert_eq!(QueueEntry::decode(&e.encode()), Ok(e));
        }
        for sub in session().subscriptions {
            assert_eq!(
                SubscriptionRecord::decode_row(&sub.filter, &sub.encode_row()),
                Ok(sub.clone())
            );
            let row = sub.encode_row();
            for cut in 0..row.len() {
                assert!(SubscriptionRecord::decode_row("f", &row[..cut]).is_err());
            }
        }
    }

    /// Every truncation and every single-byte corruption of a valid record decodes to an error
    /// or to some value, never a panic; truncations and trailing bytes are always errors.
    #[test]
    fn garbage_never_panics() {
        type Check = fn(&[u8]) -> bool;
        let session_ok: Check = |b| SessionRecord::decode(b).is_ok();
        let message_ok: Check = |b| MessageRecord::decode(b).is_ok();
        let entry_ok: Check = |b| QueueEntry::decode(b).is_ok();
        let mut blobs = vec![
            (session().encode(), session_ok),
            (message().encode(), message_ok),
        ];
        blobs.extend(entries().iter().map(|e| (e.encode(), entry_ok)));
        for (blob, ok) in &blobs {
            assert!(ok(blob));
            for cut in 0..blob.len() {
                assert!(!ok(&blob[..cut]), "truncated at {cut} decoded");
            }
            let mut long = blob.clone();
            long.push(0);
            assert!(!ok(&long), "trailing byte accepted");
            for i in 0..blob.len() {
                for flip in [0x01u8, 0x80, 0xff] {
                    let mut b = blob.clone();
                    b[i] ^= flip;
                    for check in [session_ok, message_ok, entry_ok] {
                        let _ = check(&b);
                    }
                }
            }
        }
        // A huge declared length does not allocate or panic.
        let mut b = vec![RECORD_V1];
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(MessageRecord::decode(&b).is_err());
        assert!(SessionRecord::decode(&[RECORD_V1, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(QueueEntry::decode(&[2]).is_err(), "unknown record version");
        assert!(QueueEntry::decode(&[]).is_err());
    }
}
