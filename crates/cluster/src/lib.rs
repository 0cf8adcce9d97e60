//! Hermod's scale-out: N broker nodes over a NATS JetStream cluster.
//!
//! Each node keeps MQTT (sessions, auth, ACL) in its own process; NATS carries messages between
//! nodes and JetStream keeps what must outlive a node. The design, as built, is in
//! `docs/cluster.md`.

pub mod config;
pub mod node;
pub mod sessions;
pub mod status;
pub mod subject;
pub mod wire;

pub use config::{ClusterConfig, ClusterConfigError};
pub use node::{Cluster, ClusterError, ClusterView};
pub use status::{ClusterStatus, NodeRecord};
