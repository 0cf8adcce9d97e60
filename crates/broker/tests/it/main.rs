//! Integration tests of the Hermod broker: one test binary, one module per feature.
//! Each test names the spec rule it checks; protocol-level tests run for 3.1.1 and 5.0
//! (`both_versions!`), like mosquitto's `do_test(proto_ver=4/5)`.

#![allow(unreachable_pub, missing_debug_implementations)]
#[macro_use]
mod harness;

mod api;
mod connect;
mod http_acl;
mod internal;
mod interop_rumqttc;
mod keepalive;
mod limits;
mod malformed;
mod metrics;
mod persistence;
mod publish_subscribe;
mod qos;
mod retained;
mod session;
mod shared_subs;
mod takeover;
mod things;
mod v5_properties;
mod will;
