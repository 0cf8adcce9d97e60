//! End-to-end tests of Hermod's transports and access control: TLS with client certificates,
//! WebSocket and WSS, password files, ACLs, reload, HTTP and JWT auth, PROXY protocol, bans and bounded credential checks. Each
//! broker runs from a TOML file in a temporary folder (the configuration example), so
//! relative-path resolution is exercised too. Certificates are generated at run time (rcgen).

#![allow(unreachable_pub, missing_debug_implementations)]

mod harness;

mod acl;
mod banned;
mod flood;
mod hostile;
mod http_auth;
mod jwt;
mod passwords;
mod proxy;
mod reload;
mod tls;
mod tls_v1;
mod websocket;
