//! The byte writer ([`W`]) and reader ([`R`]) every record is built from: big-endian integers,
//! `u32`-length-prefixed strings and bytes, `0`/`1` option tags, and a leading version byte.

use super::DecodeError;
use bytes::Bytes;

/// The version byte every record starts with.
pub(super) const RECORD_V1: u8 = 1;

pub(super) struct W(pub(super) Vec<u8>);

impl W {
    pub(super) fn new(cap: usize) -> Self {
        let mut v = Vec::with_capacity(cap + 1);
        v.push(RECORD_V1);
        W(v)
    }
    pub(super) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(super) fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }
    pub(super) fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(super) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(super) fn bytes(&mut self, v: &[u8]) {
        // Values are bounded far below 4 GiB by MQTT (and by redb's 3 GiB value limit).
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.0.extend_from_slice(&v[..len as usize]);
    }
    pub(super) fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    pub(super) fn opt_u32(&mut self, v: Option<u32>) {
        match v {
            None => self.u8(0),
            Some(x) => {
                self.u8(1);
                self.u32(x);
            }
        }
    }
    pub(super) fn opt_str(&mut self, v: Option<&str>) {
        match v {
            None => self.u8(0),
            Some(x) => {
                self.u8(1);
                self.str(x);
            }
        }
    }
    pub(super) fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            None => self.u8(0),
            Some(x) => {
                self.u8(1);
                self.u64(x);
            }
        }
    }
}

pub(super) struct R<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> R<'a> {
    pub(super) fn new(buf: &'a [u8], what: &'static str) -> Result<Self, DecodeError> {
        Ok(Self::versioned(buf, what, RECORD_V1)?.0)
    }
    /// A reader for a record of version 1 up to `newest`; returns the version found.
    pub(super) fn versioned(
        buf: &'a [u8],
        what: &'static str,
        newest: u8,
    ) -> Result<(Self, u8), DecodeError> {
        let mut r = R { buf, what };
        let v = r.u8()?;
        if v == 0 || v > newest {
            return Err(r.err(&format!("unknown record version {v}")));
        }
        Ok((r, v))
    }
    pub(super) fn err(&self, detail: &str) -> DecodeError {
        DecodeError(format!("{} record: {detail}", self.what))
    }
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
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
    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    pub(super) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    pub(super) fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            x => Err(self.err(&format!("invalid bool {x}"))),
        }
    }
    pub(super) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub(super) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub(super) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub(super) fn len(&mut self) -> Result<usize, DecodeError> {
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
    pub(super) fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.len()?;
        Ok(Bytes::copy_from_slice(self.take(n)?))
    }
    pub(super) fn string(&mut self) -> Result<String, DecodeError> {
        let n = self.len()?;
        let s = self.take(n)?;
        std::str::from_utf8(s)
            .map(str::to_owned)
            .map_err(|_| self.err("invalid UTF-8"))
    }
    pub(super) fn tag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            x => Err(self.err(&format!("invalid option tag {x}"))),
        }
    }
    pub(super) fn opt_u32(&mut self) -> Result<Option<u32>, DecodeError> {
        Ok(if self.tag()? { Some(self.u32()?) } else { None })
    }
    pub(super) fn opt_string(&mut self) -> Result<Option<String>, DecodeError> {
        Ok(if self.tag()? {
            Some(self.string()?)
        } else {
            None
        })
    }
    pub(super) fn opt_u64(&mut self) -> Result<Option<u64>, DecodeError> {
        Ok(if self.tag()? { Some(self.u64()?) } else { None })
    }
    /// A count of items each at least `min_item` bytes long, checked against what is left.
    pub(super) fn count(&mut self, min_item: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item) > self.buf.len() {
            return Err(self.err(&format!(
                "count {n} exceeds the {} bytes left",
                self.buf.len()
            )));
        }
        Ok(n)
    }
    pub(super) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.err(&format!("{} trailing bytes", self.buf.len())))
        }
    }
}
