//! Encoding of [`SessionRecord`] (with its will) and of [`SubscriptionRecord`] rows.

use super::codec::{R, RECORD_V1, W};
use super::{DecodeError, SessionRecord, SubscriptionRecord, WillRecord};
use crate::session::Owner;

/// Session records since owners are stored: version 1 plus the owner at the end. Version 1
/// session records still decode, as [`Owner::Unknown`].
pub(super) const SESSION_V2: u8 = 2;

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
