//! A small async MQTT client on tokio and `hermod-proto`.
//!
//! It is deliberately low level: a [`Connection`] sends and receives whole
//! [`Packet`](hermod_proto::Packet)s and leaves the protocol flows (acks, keep alive, retries) to
//! the caller. That is what `hermod pub` / `hermod sub`, the load generator and the broker's
//! integration tests need: full control over what goes on the wire, including malformed bytes via
//! [`Connection::send_raw`].
//!
//! # Cancel safety
//! [`Connection::recv`] keeps partially received bytes in an owned buffer and only ever awaits
//! `read_buf`, so it can sit in a `tokio::select!` branch: when another branch wins, no byte is
//! lost and the next `recv` continues where this one stopped. [`Connection::flush`] likewise only
//! removes bytes from its buffer once the socket accepted them.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), hermod_client::ClientError> {
//! use hermod_client::{connect, ConnectOptions};
//! let opts = ConnectOptions::new("demo-client");
//! let (mut conn, ack) = connect("127.0.0.1:1883", &opts).await?;
//! assert!(!ack.reason.is_error());
//! conn.disconnect().await?;
//! # Ok(()) }
//! ```

mod connect;
mod connection;
mod error;
mod io;
mod options;
mod packet_id;
mod texts;

pub use hermod_proto;

pub use connect::connect;
pub use connection::{Connection, PacketReader, PacketWriter};
pub use error::ClientError;
pub use options::{ConnectOptions, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_PACKET_SIZE};
pub use packet_id::PacketIdAllocator;
pub use texts::{packet_name, v3_return_code};

#[cfg(test)]
mod tests;
