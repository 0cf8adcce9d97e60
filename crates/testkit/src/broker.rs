//! A broker in this process on OS-chosen ports, stopped on [`TestBroker::stop`] (or, less tidily,
//! on drop), built from a [`Config`] or from a TOML file in a temporary folder.

use std::cell::Cell;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use hermod_broker::api::BrokerHandle;
use hermod_broker::broker::Reloader;
use hermod_broker::metrics::{Metrics, MetricsSnapshot};
use hermod_broker::{Broker, Config};
use hermod_proto::{Connect, ConnectAck, ProtocolVersion};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::WAIT;
use crate::client::Client;

thread_local! {
    /// Panics raised by broker/codec code on this thread (a `#[tokio::test]` runs the broker's
    /// tasks on the test's own thread).
    static BROKER_PANICS: Cell<u32> = const { Cell::new(0) };
}

fn install_panic_counter() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let file = info
                .location()
                .map(|l| l.file().to_owned())
                .unwrap_or_default();
            if file.contains("broker/src") || file.contains("proto/src") {
                BROKER_PANICS.with(|c| c.set(c.get() + 1));
            }
            prev(info);
        }));
    });
}

/// Panics (in broker or codec code) seen on this test's thread so far.
pub fn broker_panics() -> u32 {
    BROKER_PANICS.with(Cell::get)
}

/// A fresh temporary folder.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hermod-test-")
        .tempdir()
        .expect("tempdir")
}

/// Writes `text` to `dir/name` (creating parent folders).
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&path, text).expect("write");
    path
}

/// A running broker.
pub struct TestBroker {
    /// The first listener's address.
    pub addr: SocketAddr,
    /// Every listener's address, in configuration order (see also [`TestBroker::addr`]).
    pub addrs: Vec<SocketAddr>,
    pub reloader: Reloader,
    /// The folder holding the configuration file ([`TestBroker::start_in`] only).
    pub dir: Option<tempfile::TempDir>,
    pub config_path: Option<PathBuf>,
    metrics: Arc<Metrics>,
    handle: BrokerHandle,
    stop_tx: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestBroker {
    /// [`Config::for_tests`] (one TCP listener on 127.0.0.1:0).
    pub async fn start() -> Self {
        Self::with(|_| {}).await
    }

    /// [`Config::for_tests`] changed by `f`.
    pub async fn with(f: impl FnOnce(&mut Config)) -> Self {
        let mut cfg = Config::for_tests();
        f(&mut cfg);
        let broker = Broker::bind(cfg).await.expect("broker binds");
        Self::run(broker, None, None)
    }

    /// Writes `config` as `dir/hermod.toml`, loads it with `Config::load` (so relative paths
    /// resolve against `dir`) and starts the broker, which can then reload it.
    pub async fn start_in(dir: tempfile::TempDir, config: &str) -> Self {
        let config_path = write(dir.path(), "hermod.toml", config);
        let cfg =
            Config::load(&config_path).unwrap_or_else(|e| panic!("config loads: {e}\n{config}"));
        let broker = Broker::bind_with_path(cfg, Some(config_path.clone()))
            .await
            .unwrap_or_else(|e| panic!("broker binds: {e}\n{config}"));
        Self::run(broker, Some(dir), Some(config_path))
    }

    fn run(broker: Broker, dir: Option<tempfile::TempDir>, config_path: Option<PathBuf>) -> Self {
        install_panic_counter();
        let addrs = broker.local_addrs();
        let metrics = broker.metrics();
        let handle = broker.handle();
        let reloader = broker.reloader();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(broker.run(async move {
            stop_rx.await.ok();
        }));
        Self {
            addr: addrs[0],
            addrs,
            reloader,
            dir,
            config_path,
            metrics,
            handle,
            stop_tx: Some(stop_tx),
            task: Some(task),
        }
    }

    /// The address of listener number `listener`.
    pub fn addr(&self, listener: usize) -> SocketAddr {
        self.addrs[listener]
    }

    /// The configuration folder (panics for a broker started from a `Config`).
    pub fn path(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("a broker started with start_in")
            .path()
    }

    /// Writes `text` to `name` in the configuration folder.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        write(self.path(), name, text)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// One value of a fresh snapshot of the counters.
    pub fn metric(&self, f: impl Fn(&MetricsSnapshot) -> u64) -> u64 {
        f(&self.metrics.snapshot())
    }

    /// The broker's API handle.
    pub fn handle(&self) -> &BrokerHandle {
        &self.handle
    }

    /// Waits (bounded) until `f(metrics)` holds.
    pub async fn wait_metric(&self, what: &str, f: impl Fn(&MetricsSnapshot) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !f(&self.metrics.snapshot()) {
            assert!(
                Instant::now() < deadline,
                "metric condition never held: {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A client connected over TCP to the first listener (clean start, CONNACK success).
    pub async fn client(&self, v: ProtocolVersion, id: &str) -> Client {
        Client::connect_id(self.addr, v, id).await
    }

    pub async fn connect_with(&self, c: Connect) -> (Client, ConnectAck) {
        Client::connect_with(self.addr, c).await
    }

    pub async fn tcp(&self, v: ProtocolVersion) -> Client {
        Client::tcp(self.addr, v).await
    }

    /// Stops the broker, checks that it shut down in time and that nothing in it panicked.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let r = tokio::time::timeout(Duration::from_secs(15), task).await;
            assert!(r.is_ok(), "broker did not stop within 15 s");
            assert!(r.expect("in time").is_ok(), "broker run task panicked");
        }
        assert_eq!(
            broker_panics(),
            0,
            "broker or codec code panicked during this test"
        );
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
    }
}
