//! How much an idle connection holds (issue 14).

use std::sync::Arc;

use crate::shared::Shared;
use crate::transport::{MqttStream, PeerInfo};

use super::Connection;

/// The size of the future a function returns, without calling it.
fn returned_size<A, B, C, D, F, R>(_: &F) -> usize
where
    F: FnOnce(A, B, C, D) -> R,
{
    size_of::<R>()
}

fn returned_size1<A, F, R>(_: &F) -> usize
where
    F: FnOnce(A) -> R,
{
    size_of::<R>()
}

#[test]
fn print_sizes() {
    type S = Box<dyn MqttStream>;
    let run = super::run::<S>;
    println!(
        "run future: {}",
        returned_size::<S, PeerInfo, usize, Arc<Shared>, _, _>(&run)
    );
    let serve = Connection::<S>::serve;
    println!(
        "serve future: {}",
        returned_size1::<&'static mut Connection<S>, _, _>(&serve)
    );
    println!("Connection<Box<dyn>>: {}", size_of::<Connection<S>>());
    println!(
        "Connection<TcpStream>: {}",
        size_of::<Connection<tokio::net::TcpStream>>()
    );
    println!("TcpStream: {}", size_of::<tokio::net::TcpStream>());
    println!("Session: {}", size_of::<crate::session::Session>());
    println!("Negotiated: {}", size_of::<super::negotiated::Negotiated>());
    println!(
        "ClientIdentity: {}",
        size_of::<crate::auth::ClientIdentity>()
    );
    println!("metrics::Local: {}", size_of::<crate::metrics::Local>());
    println!("Live: {}", size_of::<crate::session::live::Live>());
    println!(
        "SessionHandle: {}",
        size_of::<crate::session::mailbox::SessionHandle>()
    );
    println!(
        "Option<LastWill>: {}",
        size_of::<Option<hermod_proto::LastWill>>()
    );
    println!("Option<Parked>: {}", size_of::<Option<super::Parked>>());
    println!("Origin: {}", size_of::<crate::message::Origin>());
    println!("End: {}", size_of::<super::End>());
    println!("PeerInfo: {}", size_of::<PeerInfo>());
    println!(
        "HashMap<u16,Arc<str>>: {}",
        size_of::<std::collections::HashMap<u16, Arc<str>>>()
    );
    println!(
        "Notified: {}",
        size_of::<tokio::sync::futures::Notified<'static>>()
    );
    println!("Sleep: {}", size_of::<tokio::time::Sleep>());
    println!(
        "CancellationToken fut: {}",
        size_of::<tokio_util::sync::WaitForCancellationFuture<'static>>()
    );
}
