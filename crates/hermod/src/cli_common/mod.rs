//! What `hermod pub` and `hermod sub` share: the flags common to both (as in mosquitto's
//! `client_shared.c`), the CONNECT/CONNACK exchange with mosquitto's `-d` debug lines and error
//! messages, keep alive, and the strings mosquitto prints for reason codes.
//!
//! Flags are parsed by hand rather than by clap: mosquitto's error texts, its "last one wins"
//! rules and its `atoi` leniency ("-W x" is "Invalid timeout \"0\"") are part of what scripts see.

mod args;
mod connect;
mod session;
mod texts;

pub(crate) use args::{ArgIter, Common, ParseStop, Tool, atoi, report_parse_stop};
pub(crate) use connect::open_session;
pub(crate) use session::Session;
pub(crate) use texts::{MOSQ_ERR_CONN_LOST, MOSQ_ERR_TIMEOUT, mosq_strerror, reason_string};
