//! Per-packet body codecs. Each module reads a packet body from a [`Reader`](crate::wire::Reader)
//! and writes it to a [`Sink`](crate::wire::Sink); the fixed header is handled by
//! [`decode`](crate::decode) and [`encode`](crate::encode).
//!
//! Reading and writing of a packet live side by side so the wire layout is stated in one place.

pub(crate) mod connect;
pub(crate) mod control;
pub(crate) mod publish;
pub(crate) mod subscribe;
