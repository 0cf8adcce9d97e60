//! Wire primitives shared by every packet: the bounds-checked [`Reader`] used by decoding, and the
//! [`Sink`] abstraction used by encoding.
//!
//! Encoding is written once, generically over [`Sink`], and run twice: into a [`Counter`] to learn
//! the exact size (for the remaining length, the property length, `encoded_len` and a single
//! `reserve`), then into the `BytesMut`. One code path for both means `encoded_len` cannot drift
//! from what `encode_packet` writes.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::MAX_REMAINING_LENGTH;
use crate::error::{DecodeError, EncodeError};
use crate::types::PacketId;

/// Running out of bytes inside a packet whose remaining length is complete: the declared fields do
/// not fit in the declared length.
pub(crate) const TRUNCATED: DecodeError =
    DecodeError::Malformed("[2.1.4] field extends past the packet's remaining length");

/// Parses a variable byte integer (1.5.5) from the front of `bytes`.
///
/// `Ok(None)` when `bytes` ends before the integer does (the caller decides whether that means
/// "wait for more" or "truncated"); otherwise the value and the number of bytes it took.
/// Non-minimal encodings are accepted: the spec only obliges the *sender* to be minimal.
///
/// # Errors
/// A fourth byte with the continuation bit set.
pub(crate) fn parse_varint(bytes: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut value = 0usize;
    for (i, &b) in bytes.iter().take(4).enumerate() {
        value |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= 4 {
        return Err(DecodeError::Malformed(
            "[1.5.5] variable byte integer longer than 4 bytes",
        ));
    }
    Ok(None)
}

/// Decodes the remaining length (a variable byte integer, MQTT 5.0 §1.5.5 / 3.1.1 §2.2.3) from
/// the front of `bytes`: the value and how many bytes it took, or `Ok(None)` when `bytes` ends
/// before the integer does. Non-minimal encodings are accepted.
///
/// ```
/// assert_eq!(hermod_proto::decode_remaining_length(&[0xC1, 0x02]), Ok(Some((321, 2))));
/// assert_eq!(hermod_proto::decode_remaining_length(&[0x80]), Ok(None));
/// ```
///
/// # Errors
/// [`DecodeError::Malformed`] when the fourth byte still has the continuation bit set.
pub fn decode_remaining_length(bytes: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    parse_varint(bytes)
}

/// Appends the minimal encoding of `len` as a remaining length (variable byte integer, MQTT 5.0
/// §1.5.5) to `out`: 1 to 4 bytes, see [`remaining_length_len`].
///
/// ```
/// let mut out = Vec::new();
/// hermod_proto::encode_remaining_length(321, &mut out).unwrap();
/// assert_eq!(out, [0xC1, 0x02]);
/// ```
///
/// # Errors
/// [`EncodeError::TooLarge`] above [`MAX_REMAINING_LENGTH`] (nothing is written).
pub fn encode_remaining_length(len: usize, out: &mut impl BufMut) -> Result<(), EncodeError> {
    struct Out<'a, B>(&'a mut B);
    impl<B: BufMut> Sink for Out<'_, B> {
        fn put_u8(&mut self, v: u8) {
            self.0.put_u8(v);
        }
        fn put_u16(&mut self, v: u16) {
            self.0.put_u16(v);
        }
        fn put_u32(&mut self, v: u32) {
            self.0.put_u32(v);
        }
        fn put_slice(&mut self, v: &[u8]) {
            self.0.put_slice(v);
        }
    }
    put_varint(&mut Out(out), len)
}

/// Number of bytes [`encode_remaining_length`] writes for `len` (1 to 4, for `len` up to
/// [`MAX_REMAINING_LENGTH`]).
#[must_use]
pub const fn remaining_length_len(len: usize) -> usize {
    varint_len(len)
}

/// A cursor over one packet's body. Every read is bounds-checked and fails with [`TRUNCATED`];
/// binary reads are zero-copy slices of the packet's `Bytes`.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.buf.is_empty() {
            return Err(TRUNCATED);
        }
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        if self.buf.len() < 2 {
            return Err(TRUNCATED);
        }
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        if self.buf.len() < 4 {
            return Err(TRUNCATED);
        }
        Ok(self.buf.get_u32())
    }

    /// A variable byte integer inside the body (property length, property id, subscription id).
    pub(crate) fn varint(&mut self) -> Result<usize, DecodeError> {
        let (value, used) = parse_varint(&self.buf)?.ok_or(TRUNCATED)?;
        self.buf.advance(used);
        Ok(value)
    }

    /// The next `n` bytes, without copying. `n` is checked against what is present before any
    /// slicing, so an untrusted length never sizes an allocation.
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if self.buf.len() < n {
            return Err(TRUNCATED);
        }
        Ok(self.buf.split_to(n))
    }

    /// Everything left (the PUBLISH payload).
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Binary data (1.5.6): two-byte length, then that many bytes.
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// A UTF-8 encoded string (1.5.4). `str::from_utf8` rejects ill-formed sequences, overlong
    /// forms and encoded UTF-16 surrogates (U+D800..U+DFFF) [MQTT-1.5.4-1]; U+0000 is rejected
    /// separately [MQTT-1.5.4-2]. Other control characters and non-characters are allowed
    /// (the spec says a receiver *may* reject them, not must).
    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let raw = self.binary()?;
        let s = std::str::from_utf8(&raw).map_err(|_| {
            DecodeError::Malformed("[MQTT-1.5.4-1] string is not well-formed UTF-8")
        })?;
        if s.contains('\0') {
            return Err(DecodeError::Malformed(
                "[MQTT-1.5.4-2] string contains U+0000",
            ));
        }
        Ok(s.to_owned())
    }

    /// A packet identifier, which is never zero [MQTT-2.2.1-3].
    pub(crate) fn packet_id(&mut self) -> Result<PacketId, DecodeError> {
        PacketId::new(self.u16()?)
            .ok_or(DecodeError::Protocol("[MQTT-2.2.1-3] packet identifier 0"))
    }

    /// Ends a packet: bytes left after the declared fields make it malformed.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Malformed(
                "[2.1.4] bytes left over after the packet's fields",
            ))
        }
    }
}

/// Where encoded bytes go: a real buffer, or a [`Counter`] that only measures.
pub(crate) trait Sink {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_slice(&mut self, v: &[u8]);
}

impl Sink for BytesMut {
    fn put_u8(&mut self, v: u8) {
        BufMut::put_u8(self, v);
    }
    fn put_u16(&mut self, v: u16) {
        BufMut::put_u16(self, v);
    }
    fn put_u32(&mut self, v: u32) {
        BufMut::put_u32(self, v);
    }
    fn put_slice(&mut self, v: &[u8]) {
        BufMut::put_slice(self, v);
    }
}

/// A sink that counts bytes instead of writing them.
#[derive(Debug, Default)]
pub(crate) struct Counter(pub(crate) usize);

impl Sink for Counter {
    fn put_u8(&mut self, _: u8) {
        self.0 = self.0.saturating_add(1);
    }
    fn put_u16(&mut self, _: u16) {
        self.0 = self.0.saturating_add(2);
    }
    fn put_u32(&mut self, _: u32) {
        self.0 = self.0.saturating_add(4);
    }
    fn put_slice(&mut self, v: &[u8]) {
        self.0 = self.0.saturating_add(v.len());
    }
}

/// Runs an encoder into a [`Counter`] and returns the byte count.
pub(crate) fn measure(
    f: impl FnOnce(&mut Counter) -> Result<(), EncodeError>,
) -> Result<usize, EncodeError> {
    let mut c = Counter::default();
    f(&mut c)?;
    Ok(c.0)
}

/// Number of bytes the variable byte integer encoding of `v` takes (for `v` in range).
pub(crate) const fn varint_len(v: usize) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes a minimal variable byte integer.
///
/// # Errors
/// [`EncodeError::TooLarge`] above 268,435,455, the largest value four bytes can carry.
pub(crate) fn put_varint<S: Sink>(s: &mut S, mut v: usize) -> Result<(), EncodeError> {
    if v > MAX_REMAINING_LENGTH {
        return Err(EncodeError::TooLarge);
    }
    loop {
        // Truncation is the point: the low seven bits.
        #[allow(clippy::cast_possible_truncation)]
        let mut b = (v % 128) as u8;
        v /= 128;
        if v > 0 {
            b |= 0x80;
        }
        s.put_u8(b);
        if v == 0 {
            return Ok(());
        }
    }
}

/// Writes binary data with its two-byte length.
///
/// # Errors
/// [`EncodeError::FieldTooLong`] above 65,535 bytes.
pub(crate) fn put_binary<S: Sink>(s: &mut S, v: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(v.len()).map_err(|_| EncodeError::FieldTooLong)?;
    s.put_u16(len);
    s.put_slice(v);
    Ok(())
}

/// Writes a UTF-8 string with its two-byte length (same limit as [`put_binary`]).
pub(crate) fn put_string<S: Sink>(s: &mut S, v: &str) -> Result<(), EncodeError> {
    put_binary(s, v.as_bytes())
}
