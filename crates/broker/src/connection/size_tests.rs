//! What an idle connection's task holds inline (issue 14): a regression guard.
//!
//! Every connection's task is one allocation sized by its future, and most of a broker's
//! connections are idle, so each byte here is paid per connection (jemalloc rounds the task up
//! to its size class: 1,280 bytes at 1,056 bytes of `run` future; the step below is 1,024,
//! above it 1,536). See docs/performance.md, "Idle connections, second slice". The bounds are
//! the measurement plus a few percent: a field added inline, an `async fn` argument kept for
//! life or a large future awaited unboxed in the idle loop breaks them. Box what an idle
//! connection seldom has.

use std::sync::Arc;

use crate::shared::Shared;
use crate::transport::{MqttStream, PeerInfo};

use super::Connection;

/// The size of the future `f` returns, without calling it.
fn returned_size<A, B, C, D, R>(_: &impl FnOnce(A, B, C, D) -> R) -> usize {
    size_of::<R>()
}

/// As `returned_size`, for a one-argument function (a method taking `&mut self`).
fn returned_size1<A, R>(_: &impl FnOnce(A) -> R) -> usize {
    size_of::<R>()
}

/// The stream type every network connection runs with (`transport::Acceptor::accept`).
type S = Box<dyn MqttStream>;

#[test]
fn an_idle_connection_stays_small() {
    let run = returned_size::<S, PeerInfo, usize, Arc<Shared>, _>(&super::run::<S>);
    let serve = returned_size1::<&'static mut Connection<S>, _>(&Connection::<S>::serve);
    let conn = size_of::<Connection<S>>();
    println!("run future {run}, serve future {serve}, Connection {conn}");
    // Measured 1,056 / 416 / 624 (2026-12-03; the same in debug and release builds), down from
    // 1,792 / 488 / 1,136. The accept task adds ~100 bytes to `run` and tokio's task ~120, so
    // up to ~1,150 bytes of `run` the task stays in jemalloc's 1,280-byte class.
    assert!(conn <= 640, "Connection grew to {conn} bytes (bound 640)");
    assert!(
        serve <= 432,
        "serve's future grew to {serve} bytes (bound 432)"
    );
    assert!(
        run <= 1_088,
        "the connection future grew to {run} bytes (bound 1,088)"
    );
}
